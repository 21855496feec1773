/* 2/3/4-bit weights with per-group fp16 scales (quant_lowbit.h): packing,
 * the scalar specifications, and the dispatching driver. */
#include "quant_lowbit.h"
#include "q4x8.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#define G QUANT_QL_GROUP

/* ---- codes ---------------------------------------------------------------------------- */

void quant_ql_encode(const int8_t *q, int bits, uint8_t *code)
{
    const int off = quant_ql_qn(bits);
    memset(code, 0, (size_t)QUANT_QL_CODE_BYTES(bits));
    for (int j = 0; j < G; j++) {
        int c = q[j] + off, s = 2 * (j / 8);
        code[j % 8] |= (uint8_t)((c & 3) << s);
        if (bits == 3)
            code[8 + j / 8] |= (uint8_t)((c >> 2 & 1) << (j % 8));
        else if (bits == 4)
            code[8 + j % 8] |= (uint8_t)((c >> 2 & 3) << s);
    }
}

void quant_ql_decode(const uint8_t *code, int bits, int8_t *q)
{
    const int off = quant_ql_qn(bits);
    for (int j = 0; j < G; j++) {
        int s = 2 * (j / 8), c = code[j % 8] >> s & 3;
        if (bits == 3)
            c |= (code[8 + j / 8] >> (j % 8) & 1) << 2;
        else if (bits == 4)
            c |= (code[8 + j % 8] >> s & 3) << 2;
        q[j] = (int8_t)(c - off);
    }
}

/* ---- the group quantizer ---------------------------------------------------------------- */

/* Levels of w[0..len) at step d (> 0) and their squared error. */
static double levels(const float *w, int len, int bits, float d, int8_t *q)
{
    const float lo = (float)-quant_ql_qn(bits), hi = (float)quant_ql_qp(bits);
    double err = 0.0;
    for (int j = 0; j < len; j++) {
        float v = roundf(w[j] / d);
        v = v < lo ? lo : v > hi ? hi : v;
        q[j] = (int8_t)v;
        double r = (double)w[j] - (double)v * d;
        err += r * r;
    }
    for (int j = len; j < G; j++)
        q[j] = 0;
    return err;
}

/* A positive step as stored: fp16, kept in its normal range. */
static uint16_t step_f16(float d)
{
    if (d < ldexpf(1.0f, -14))
        d = ldexpf(1.0f, -14);
    return quant_f32_to_f16(d);
}

void quant_ql_block(const float *w, int len, int bits, float step, uint16_t *d, uint8_t *code)
{
    int8_t q[G], best[G];
    float amax = 0.0f;
    for (int j = 0; j < len; j++)
        amax = fmaxf(amax, fabsf(w[j]));
    uint16_t hd = 0;
    memset(best, 0, sizeof best);
    if (step > 0.0f) {
        hd = step_f16(step);
        levels(w, len, bits, quant_f16_to_f32(hd), best);
    } else if (amax > 0.0f) {
        double emin = INFINITY;
        for (int t = 30; t <= 200; t += 5) {
            uint16_t h = step_f16(amax * (float)t / 100.0f / (float)quant_ql_qn(bits));
            double err = levels(w, len, bits, quant_f16_to_f32(h), q);
            if (err < emin) {
                emin = err;
                hd = h;
                memcpy(best, q, sizeof q);
            }
        }
    }
    *d = hd;
    quant_ql_encode(best, bits, code);
}

/* ---- matrices ---------------------------------------------------------------------------- */

quant_ql *quant_ql_new(int bits, int m, int k, kd_err *e)
{
    if (bits < 2 || bits > 4 || m <= 0 || k <= 0 || m > (1 << 24) || k > (1 << 24) ||
        (double)m * k > 1e10) {
        kd_err_set(e, KD_ECONFIG, "low-bit pack: bad shape %d x %d or bits %d", m, k, bits);
        return NULL;
    }
    int nb = (k + G - 1) / G;
    size_t groups = (size_t)m * nb, cb = (size_t)QUANT_QL_CODE_BYTES(bits);
    quant_ql *q = kd_calloc(1, sizeof *q);
    if (q) {
        *q = (quant_ql){.bits = bits, .m = m, .k = k, .nb = nb};
        q->d = kd_calloc(groups, sizeof *q->d);
        q->code = kd_malloc(groups * cb);
    }
    if (!q || !q->d || !q->code) {
        quant_ql_free(q);
        kd_err_set(e, KD_ENOMEM, "out of memory for %d x %d %d-bit weights", m, k, bits);
        return NULL;
    }
    int8_t zero[G] = {0};
    uint8_t zc[16];
    quant_ql_encode(zero, bits, zc);
    for (size_t i = 0; i < groups; i++)
        memcpy(q->code + i * cb, zc, cb);
    return q;
}

quant_ql *quant_ql_pack(const float *w, int m, int k, int bits, float step, kd_err *e)
{
    quant_ql *q = quant_ql_new(bits, m, k, e);
    const size_t cb = (size_t)QUANT_QL_CODE_BYTES(bits);
    for (int r = 0; q && r < m; r++)
        for (int g = 0; g < q->nb; g++) {
            size_t i = (size_t)r * q->nb + g;
            int len = k - g * G < G ? k - g * G : G;
            quant_ql_block(w + (size_t)r * k + (size_t)g * G, len, bits, step, &q->d[i],
                           q->code + i * cb);
        }
    return q;
}

quant_ql *quant_ql_copy(const quant_ql *s, kd_err *e)
{
    quant_ql *q = quant_ql_new(s->bits, s->m, s->k, e);
    if (q) {
        size_t groups = (size_t)s->m * s->nb;
        memcpy(q->d, s->d, groups * sizeof *q->d);
        memcpy(q->code, s->code, groups * QUANT_QL_CODE_BYTES(s->bits));
    }
    return q;
}

void quant_ql_free(quant_ql *q)
{
    if (!q)
        return;
    kd_free(q->d);
    kd_free(q->code);
    kd_free(q);
}

/* Row r dequantized into out[0..k). */
static void row_f32_ref(const quant_ql *q, int r, float *out)
{
    const size_t cb = (size_t)QUANT_QL_CODE_BYTES(q->bits);
    int8_t lv[G];
    for (int g = 0; g < q->nb; g++) {
        size_t i = (size_t)r * q->nb + g;
        int len = q->k - g * G < G ? q->k - g * G : G;
        float d = quant_f16_to_f32(q->d[i]);
        quant_ql_decode(q->code + i * cb, q->bits, lv);
        for (int j = 0; j < len; j++)
            out[(size_t)g * G + j] = d * (float)lv[j];
    }
}

void quant_ql_unpack(const quant_ql *q, float *w)
{
    for (int r = 0; r < q->m; r++)
        row_f32_ref(q, r, w + (size_t)r * q->k);
}

int quant_ql_valid(const quant_ql *q)
{
    const size_t cb = (size_t)QUANT_QL_CODE_BYTES(q->bits);
    const int tail = q->k - (q->nb - 1) * G;
    int8_t lv[G];
    for (int r = 0; r < q->m; r++)
        for (int g = 0; g < q->nb; g++) {
            size_t i = (size_t)r * q->nb + g;
            if (q->d[i] & 0x8000 || (q->d[i] >> 10 & 31) == 31)
                return 0;
            if (g < q->nb - 1 || tail == G)
                continue;
            quant_ql_decode(q->code + i * cb, q->bits, lv);
            for (int j = tail; j < G; j++)
                if (lv[j] != 0)
                    return 0;
        }
    return 1;
}

/* ---- the specifications ------------------------------------------------------------------- */

static void ref_rows(const quant_ql *q, const float *x, int n, const float *b, float *y, int r0,
                     int r1)
{
    const size_t cb = (size_t)QUANT_QL_CODE_BYTES(q->bits);
    int8_t lv[G];
    for (int i = 0; i < n; i++)
        for (int r = r0; r < r1; r++) {
            const float *xs = x + (size_t)i * q->k;
            float acc = b ? b[r] : 0.0f;
            for (int g = 0; g < q->nb; g++) {
                size_t gi = (size_t)r * q->nb + g;
                int len = q->k - g * G < G ? q->k - g * G : G;
                quant_ql_decode(q->code + gi * cb, q->bits, lv);
                float s = 0.0f;
                for (int j = 0; j < len; j++)
                    s += (float)lv[j] * xs[(size_t)g * G + j];
                acc += quant_f16_to_f32(q->d[gi]) * s;
            }
            y[(size_t)i * q->m + r] = acc;
        }
}

void quant_ql_gemm_ref(const quant_ql *q, const float *x, int n, const float *b, float *y)
{
    ref_rows(q, x, n, b, y, 0, q->m);
}

void quant_ql_rows_ref(const quant_ql *q, const int8_t *xq, const float *dx, const float *corr,
                       const float *b, float *y, int r0, int r1)
{
    const size_t cb = (size_t)QUANT_QL_CODE_BYTES(q->bits);
    const float cf = (float)quant_ql_qn(q->bits) / 8.0f; /* corr carries q4x8's offset 8 */
    int8_t lv[G];
    for (int r = r0; r < r1; r++) {
        float acc = 0.0f, cs = 0.0f;
        for (int g = 0; g < q->nb; g++) {
            size_t gi = (size_t)r * q->nb + g;
            quant_ql_decode(q->code + gi * cb, q->bits, lv);
            int32_t s = 0;
            for (int j = 0; j < G; j++)
                s += (lv[j] + quant_ql_qn(q->bits)) * xq[g * G + j];
            float d = quant_f16_to_f32(q->d[gi]);
            acc += d * dx[g] * (float)s;
            cs += d * corr[g] * cf;
        }
        y[r] = acc - cs + (b ? b[r] : 0.0f);
    }
}

/* ---- the driver ------------------------------------------------------------------------------ */

enum { QL_STACK_GROUPS = 128, QL_PANEL_ROWS = 256 };

/* Panels of dequantized rows for sgemm; -1 (nothing written) without memory. */
static int gemm_panels(const quant_ql *q, const float *x, int n, const float *b, float *y, int r0,
                       int r1, int avx2)
{
    float *panel = kd_afloat((size_t)QL_PANEL_ROWS * q->k);
    if (!panel)
        return -1;
    for (int p0 = r0; p0 < r1; p0 += QL_PANEL_ROWS) {
        int rows = r1 - p0 < QL_PANEL_ROWS ? r1 - p0 : QL_PANEL_ROWS;
        for (int r = 0; r < rows; r++)
            (avx2 ? quant_ql_row_f32_avx2 : row_f32_ref)(q, p0 + r, panel + (size_t)r * q->k);
        for (int i = 0; i < n; i++)
            for (int r = 0; r < rows; r++)
                y[(size_t)i * q->m + p0 + r] = b ? b[p0 + r] : 0.0f;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, q->k, 1.0f, x, q->k, panel,
                    q->k, 1.0f, y + p0, q->m);
    }
    kd_afree(panel);
    return 0;
}

void quant_ql_gemm_rows(const quant_ql *q, const float *x, int n, const float *b, float *y,
                        int r0, int r1)
{
    int avx2 = kernels_isa() >= KD_ISA_AVX2;
    if (avx2 && n < QUANT_QL_PANEL_N && q->nb <= QL_STACK_GROUPS) {
        int8_t xq[QL_STACK_GROUPS * G];
        float dx[QL_STACK_GROUPS], corr[QL_STACK_GROUPS];
        for (int i = 0; i < n; i++) {
            q4x8_quantize_avx2(x + (size_t)i * q->k, q->k, xq, dx, corr);
            quant_ql_rows_avx2(q, xq, dx, corr, b, y + (size_t)i * q->m, r0, r1);
        }
        return;
    }
    if (gemm_panels(q, x, n, b, y, r0, r1, avx2) != 0)
        ref_rows(q, x, n, b, y, r0, r1);
}
