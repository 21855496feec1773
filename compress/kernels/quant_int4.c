/* Weight-only int4: groups of 32 weights along k share an fp16 scale, two
 * weights per byte.  The GEMM dequantizes inside the kernel (fp32 activations
 * and outputs) in the float kernels here; with AVX2 the product runs q4x8
 * (q4x8.h), and these are its fallbacks. */
#include "kernels.h"
#include "q4x8.h"
#include "avx2_inline.h"

#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

#define G QUANT_Q4_GROUP

/* ---- fp16 ------------------------------------------------------------------------------ */

float quant_f16_to_f32(uint16_t h)
{
    int exp = (h >> 10) & 31, man = h & 1023;
    float f = exp == 0    ? ldexpf((float)man, -24)
              : exp == 31 ? (man ? NAN : INFINITY)
                          : ldexpf((float)(man | 1024), exp - 25);
    return h & 0x8000 ? -f : f;
}

uint16_t quant_f32_to_f16(float f)
{
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    float a = fabsf(f);
    if (isnan(f))
        return 0x7e00;
    if (a >= 65504.0f)
        return sign | 0x7bff;
    if (a < ldexpf(1.0f, -14)) /* subnormal: multiples of 2^-24 */
        return sign | (uint16_t)lrintf(a * 16777216.0f);
    int e;
    float m = frexpf(a, &e);                 /* a = m * 2^e, m in [0.5, 1) */
    long mant = lrintf(ldexpf(m, 11)) - 1024; /* 10 bits, nearest even */
    if (mant == 1024) {                       /* rounded up to the next power of two */
        mant = 0;
        e++;
    }
    return sign | (uint16_t)((e + 14) << 10 | mant);
}

/* The kernels' version: normal halves and zero inline (every scale that
 * quant_q4_pack writes), anything else through the general conversion. */
static inline __attribute__((always_inline)) float f16_scale(uint16_t h)
{
    int exp = (h >> 10) & 31;
    if (exp > 0 && exp < 31) { /* rebias the exponent: 15 -> 127 */
        uint32_t b = (uint32_t)(h & 0x8000) << 16 | ((uint32_t)(h & 0x7fff) + 0x1c000) << 13;
        float f;
        memcpy(&f, &b, sizeof f);
        return f;
    }
    return h == 0 ? 0.0f : quant_f16_to_f32(h);
}

/* ---- packing ----------------------------------------------------------------------------- */

void quant_q4_block(const float *src, int len, quant_block_q4 *out)
{
    float amax = 0.0f;
    for (int j = 0; j < len; j++)
        amax = fmaxf(amax, fabsf(src[j]));
    float d = amax / 7.0f;
    if (d > 0.0f && d < ldexpf(1.0f, -14))
        d = ldexpf(1.0f, -14); /* the smallest normal fp16 */
    out->d = quant_f32_to_f16(d);
    d = quant_f16_to_f32(out->d);
    uint8_t nib[G];
    for (int j = 0; j < G; j++) {
        float v = j < len && d > 0.0f ? roundf(src[j] / d) : 0.0f;
        v = v < -8.0f ? -8.0f : v > 7.0f ? 7.0f : v;
        nib[j] = (uint8_t)((int)v + 8);
    }
    for (int j = 0; j < G / 2; j++)
        out->q[j] = (uint8_t)(nib[j] | nib[j + G / 2] << 4);
}

quant_q4 *quant_q4_pack(const float *w, int m, int k, kd_err *e)
{
    if (m <= 0 || k <= 0 || m > (1 << 24) || k > (1 << 24) || (double)m * k > 1e10) {
        kd_err_set(e, KD_ECONFIG, "int4 pack: bad shape %d x %d", m, k);
        return NULL;
    }
    int nb = (k + G - 1) / G;
    quant_q4 *q = kd_calloc(1, sizeof *q);
    quant_block_q4 *bl = kd_calloc((size_t)m * nb, sizeof *bl);
    if (!q || !bl) {
        kd_free(q);
        kd_free(bl);
        kd_err_set(e, KD_ENOMEM, "int4 pack: out of memory for %d x %d", m, k);
        return NULL;
    }
    *q = (quant_q4){.m = m, .k = k, .nb = nb, .blocks = bl};
    for (int r = 0; r < m; r++)
        for (int b = 0; b < nb; b++) {
            int len = k - b * G < G ? k - b * G : G;
            quant_q4_block(w + (size_t)r * k + (size_t)b * G, len, &bl[(size_t)r * nb + b]);
        }
    if (quant_q4_build_quads(q, e) != KD_OK) {
        quant_q4_free(q);
        return NULL;
    }
    return q;
}

void quant_q4_free(quant_q4 *q)
{
    if (!q)
        return;
    kd_free(q->quads);
    kd_afree(q->vert);
    kd_free(q->vert_d);
    kd_free(q->blocks);
    kd_free(q);
}

/* Weight j of a block as a signed value in [-8, 7]. */
static inline int q4_at(const quant_block_q4 *b, int j)
{
    int byte = b->q[j % (G / 2)];
    return (j < G / 2 ? byte & 15 : byte >> 4) - 8;
}

void quant_q4_block_dequant(const quant_block_q4 *b, int len, float *out)
{
    float d = f16_scale(b->d);
    for (int j = 0; j < len; j++)
        out[j] = d * (float)q4_at(b, j);
}

void quant_q4_unpack(const quant_q4 *q, float *w)
{
    for (int r = 0; r < q->m; r++)
        for (int c = 0; c < q->k; c++) {
            const quant_block_q4 *b = &q->blocks[(size_t)r * q->nb + c / G];
            w[(size_t)r * q->k + c] = f16_scale(b->d) * (float)q4_at(b, c % G);
        }
}

/* Rows [r0, r1) of the reference product. */
static void q4_ref_rows(const quant_q4 *q, const float *x, int n, const float *b, float *y, int r0,
                        int r1)
{
    for (int i = 0; i < n; i++)
        for (int r = r0; r < r1; r++) {
            float acc = b ? b[r] : 0.0f;
            for (int bi = 0; bi < q->nb; bi++) {
                const quant_block_q4 *bl = &q->blocks[(size_t)r * q->nb + bi];
                const float *xs = x + (size_t)i * q->k + (size_t)bi * G;
                int len = q->k - bi * G < G ? q->k - bi * G : G;
                float s = 0.0f;
                for (int j = 0; j < len; j++)
                    s += (float)q4_at(bl, j) * xs[j];
                acc += f16_scale(bl->d) * s;
            }
            y[(size_t)i * q->m + r] = acc;
        }
}

void quant_q4_gemm_ref(const quant_q4 *q, const float *x, int n, const float *b, float *y)
{
    q4_ref_rows(q, x, n, b, y, 0, q->m);
}

/* ---- AVX2 ---------------------------------------------------------------------------- */

#define AVX2 __attribute__((target("avx2,fma")))
#define INL static inline __attribute__((always_inline)) AVX2

/* The 32 weights of a block as four vectors of 8 floats (unscaled). */
INL void q4_unpack8x4(const quant_block_q4 *b, __m256 w[4])
{
    __m128i raw = _mm_loadu_si128((const __m128i *)b->q), m4 = _mm_set1_epi8(15);
    __m128i eight = _mm_set1_epi8(8);
    __m128i lo = _mm_sub_epi8(_mm_and_si128(raw, m4), eight);
    __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), eight);
    w[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
    w[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
    w[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
    w[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
}

/* x[0..len) of a block as four vectors, zero past len (masked loads). */
INL void x_load8x4(const float *x, int len, __m256 v[4])
{
    if (len >= G) {
        for (int c = 0; c < 4; c++)
            v[c] = _mm256_loadu_ps(x + 8 * c);
        return;
    }
    for (int c = 0; c < 4; c++) {
        int left = len - 8 * c;
        __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), idx);
        v[c] = left > 0 ? _mm256_maskload_ps(x + 8 * c, mask) : _mm256_setzero_ps();
    }
}

/* acc += scale * <w, x> for one block whose x lanes are loaded. */
INL __m256 q4_dot(const __m256 w[4], const __m256 xv[4], __m256 sc, __m256 acc)
{
    __m256 d = _mm256_add_ps(_mm256_mul_ps(w[0], xv[0]), _mm256_mul_ps(w[1], xv[1]));
    d = _mm256_add_ps(d, _mm256_add_ps(_mm256_mul_ps(w[2], xv[2]), _mm256_mul_ps(w[3], xv[3])));
    return _mm256_fmadd_ps(sc, d, acc);
}

/* Row r for samples i0 .. i0+ns-1 (ns <= 4): full blocks, then the ragged one. */
INL void q4_row(const quant_q4 *q, int r, const float *x, int i0, int ns, const float *b,
                float *y)
{
    const int k = q->k, nfull = k / G;
    const quant_block_q4 *row = q->blocks + (size_t)r * q->nb;
    const float *xs[4];
    __m256 acc[4];
    for (int s = 0; s < ns; s++) {
        xs[s] = x + (size_t)(i0 + s) * k;
        acc[s] = _mm256_setzero_ps();
    }
    for (int bi = 0; bi < nfull; bi++) {
        __m256 w[4], sc = _mm256_set1_ps(f16_scale(row[bi].d));
        q4_unpack8x4(&row[bi], w);
        for (int s = 0; s < ns; s++) {
            const float *xp = xs[s] + (size_t)bi * G;
            __m256 xv[4] = {_mm256_loadu_ps(xp), _mm256_loadu_ps(xp + 8),
                            _mm256_loadu_ps(xp + 16), _mm256_loadu_ps(xp + 24)};
            acc[s] = q4_dot(w, xv, sc, acc[s]);
        }
    }
    if (nfull < q->nb) {
        __m256 w[4], sc = _mm256_set1_ps(f16_scale(row[nfull].d));
        q4_unpack8x4(&row[nfull], w);
        for (int s = 0; s < ns; s++) {
            __m256 xv[4];
            x_load8x4(xs[s] + (size_t)nfull * G, k - nfull * G, xv);
            acc[s] = q4_dot(w, xv, sc, acc[s]);
        }
    }
    for (int s = 0; s < ns; s++)
        y[(size_t)(i0 + s) * q->m + r] = kq_hsum8_ps(acc[s]) + (b ? b[r] : 0.0f);
}

static AVX2 void q4_rows_avx2(const quant_q4 *q, const float *x, int n, const float *b, float *y,
                              int r0, int r1)
{
    for (int r = r0; r < r1; r++) {
        int i = 0;
        for (; i + 4 <= n; i += 4)
            q4_row(q, r, x, i, 4, b, y);
        for (; i < n; i++)
            q4_row(q, r, x, i, 1, b, y);
    }
}

AVX2 void quant_q4_gemm_avx2(const quant_q4 *q, const float *x, int n, const float *b, float *y)
{
    q4_rows_avx2(q, x, n, b, y, 0, q->m);
}



/* ---- large batches: dequantize a panel of rows, then sgemm ------------------------- */

/* Row r dequantized into out[0..k). */
static AVX2 void q4_row_f32(const quant_q4 *q, int r, float *out)
{
    float tmp[G];
    for (int bi = 0; bi < q->nb; bi++) {
        const quant_block_q4 *bl = &q->blocks[(size_t)r * q->nb + bi];
        __m256 w[4], sc = _mm256_set1_ps(f16_scale(bl->d));
        q4_unpack8x4(bl, w);
        int len = q->k - bi * G < G ? q->k - bi * G : G;
        float *dst = len == G ? out + (size_t)bi * G : tmp;
        for (int c = 0; c < 4; c++)
            _mm256_storeu_ps(dst + 8 * c, _mm256_mul_ps(w[c], sc));
        if (dst == tmp)
            memcpy(out + (size_t)bi * G, tmp, (size_t)len * sizeof *tmp);
    }
}

/* Row r dequantized into out[0..k) without SIMD. */
static void q4_row_f32_ref(const quant_q4 *q, int r, float *out)
{
    for (int bi = 0; bi < q->nb; bi++) {
        int len = q->k - bi * G < G ? q->k - bi * G : G;
        quant_q4_block_dequant(&q->blocks[(size_t)r * q->nb + bi], len, out + (size_t)bi * G);
    }
}

/* Batches n >= Q4_PANEL_MIN_N without q4x8 (the scalar level, or no scratch
 * for it): 256-row panels dequantized once and multiplied by sgemm (the
 * float specification up to summation order).  Returns -1 (nothing
 * written) when the panel cannot be allocated. */
#define Q4_PANEL_ROWS 256
#define Q4_PANEL_MIN_N 16
static int q4_gemm_panels(const quant_q4 *q, const float *x, int n, const float *b, float *y,
                          int first, int end, int avx2)
{
    float *panel = kd_afloat((size_t)Q4_PANEL_ROWS * q->k);
    if (!panel)
        return -1;
    for (int r0 = first; r0 < end; r0 += Q4_PANEL_ROWS) {
        int rows = end - r0 < Q4_PANEL_ROWS ? end - r0 : Q4_PANEL_ROWS;
        for (int r = 0; r < rows; r++)
            (avx2 ? q4_row_f32 : q4_row_f32_ref)(q, r0 + r, panel + (size_t)r * q->k);
        for (int i = 0; i < n; i++)
            for (int r = 0; r < rows; r++)
                y[(size_t)i * q->m + r0 + r] = b ? b[r0 + r] : 0.0f;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, q->k, 1.0f, x, q->k,
                    panel, q->k, 1.0f, y + r0, q->m);
    }
    kd_afree(panel);
    return 0;
}

/* With AVX2, every batch runs q4x8 (int8 arithmetic, activations rounded per
 * group); without it, or when q4x8 has no scratch, the float specification:
 * dequantized panels for sgemm at n >= Q4_PANEL_MIN_N if a panel can be had,
 * else the reference (scalar level) or the float AVX2 kernel. */
void quant_q4_gemm(const quant_q4 *q, const float *x, int n, const float *b, float *y)
{
    quant_q4_gemm_rows(q, x, n, b, y, 0, q->m);
}

void quant_q4_gemm_rows(const quant_q4 *q, const float *x, int n, const float *b, float *y,
                        int r0, int r1)
{
    int avx2 = kernels_isa() >= KD_ISA_AVX2;
    if (avx2 && !q4x8_gemm_rows_avx2(q, x, n, b, y, r0, r1))
        return;
    if (n >= Q4_PANEL_MIN_N && !q4_gemm_panels(q, x, n, b, y, r0, r1, avx2))
        return;
    if (avx2)
        q4_rows_avx2(q, x, n, b, y, r0, r1);
    else
        q4_ref_rows(q, x, n, b, y, r0, r1);
}
