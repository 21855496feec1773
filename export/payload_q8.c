/* The int8 and int8-dyn payload as compress/kinds/dense_q8.c's q8_save
 * writes it, read once for both exports (C and ONNX):
 * u32 rows, cols, flags (1 int8 output, 2 relu); f32 in scale, i32 in zero,
 * f32 out scale, i32 out zero; f32 w_scale[rows]; i32 bias[rows];
 * int8 w[rows * cols]. */
#include <math.h>
#include <string.h>
#include <zlib.h>

#include "../compress/compress.h"
#include "internal.h"

void export_q8_free(export_q8 *q)
{
    kd_free(q->w_scale);
    kd_free(q->bias);
    kd_free(q->row_sum);
    kd_free(q->mult);
    kd_free(q->shift);
    kd_free(q->w);
    memset(q, 0, sizeof *q);
}

static int bad(const nn_layer *l, const char *what, const char *why, kd_err *e)
{
    return kd_err_set(e, KD_EFORMAT, "%s: %s payload: %s", what, l->ops->name, why);
}

static int q8_parse(const nn_layer *l, const char *what, kd_rd *r, export_q8 *q, kd_err *e)
{
    q->m = kd_rd_u32(r);
    q->k = kd_rd_u32(r);
    q->flags = kd_rd_u32(r);
    q->in_scale = kd_rd_f32(r);
    q->in_zero = (int32_t)kd_rd_u32(r);
    q->out_scale = kd_rd_f32(r);
    q->out_zero = (int32_t)kd_rd_u32(r);
    if (!r->ok || q->m != (uint32_t)l->spec.units || q->k != nn_shape_size(l->in) ||
        q->flags > 3 || r->len - r->pos != (uint64_t)q->m * (8 + q->k))
        return bad(l, what, "sizes do not match the layer", e);
    size_t m = q->m;
    q->w_scale = kd_malloc(m * 4);
    q->bias = kd_malloc(m * 4);
    q->row_sum = kd_calloc(m, 4);
    q->mult = kd_calloc(m, 4);
    q->shift = kd_calloc(m, 4);
    q->w = kd_malloc(m * q->k);
    if (!q->w_scale || !q->bias || !q->row_sum || !q->mult || !q->shift || !q->w)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    for (size_t j = 0; j < m; j++)
        q->w_scale[j] = kd_rd_f32(r);
    for (size_t j = 0; j < m; j++)
        q->bias[j] = (int32_t)kd_rd_u32(r);
    kd_rd_get(r, q->w, m * q->k);
    for (size_t row = 0; row < m; row++)
        for (size_t c = 0; c < q->k; c++)
            q->row_sum[row] += q->w[row * q->k + c];
    /* the multipliers as the kind derives them at load (dense_derive) */
    for (size_t row = 0; (q->flags & 1) && row < m; row++) {
        double mr = (double)q->in_scale * q->w_scale[row] / q->out_scale;
        if (quant_multiplier(mr, &q->mult[row], &q->shift[row], e))
            return KD_EFORMAT;
    }
    return r->ok ? KD_OK : bad(l, what, "truncated", e);
}

/* l's payload as ops->save writes it, into b (kd_buf_free it either way). */
static int payload_of(const nn_layer *l, const char *what, kd_buf *b, kd_err *e)
{
    *b = (kd_buf){0};
    l->ops->save(l, b);
    return b->failed ? kd_err_set(e, KD_ENOMEM, "%s: out of memory for its payload", what) : KD_OK;
}

int export_q8_read(const nn_layer *l, const char *what, export_q8 *q, kd_err *e)
{
    memset(q, 0, sizeof *q);
    kd_buf b;
    int rc = payload_of(l, what, &b, e);
    kd_rd r = {.p = b.p, .len = b.len, .ok = 1};
    if (rc == KD_OK)
        rc = q8_parse(l, what, &r, q, e);
    kd_buf_free(&b);
    if (rc)
        export_q8_free(q);
    return rc;
}

/* ---- csr-int8: u32 rows, cols, nnz; four zlib streams (u32 raw length, u32
 * coded length, bytes): entries per row (u16 when cols <= 65535, else u32),
 * delta[nnz], val[nnz], scale[rows] f32 (compress/kinds/dense_csr_q8.c) ---------- */

void export_qcsr_free(export_qcsr *a)
{
    kd_free(a->delta);
    kd_free(a->val);
    kd_free(a->scale);
    kd_free(a->rp);
    kd_free(a->row_sum);
    memset(a, 0, sizeof *a);
}

static int inflate_next(const nn_layer *l, const char *what, kd_rd *r, void *dst, size_t n,
                        kd_err *e)
{
    uint32_t raw = kd_rd_u32(r), coded = kd_rd_u32(r);
    if (!r->ok || raw != n || coded > r->len - r->pos)
        return bad(l, what, "stream sizes do not match", e);
    uLongf out = (uLongf)n;
    uint8_t spare;
    if (uncompress(n ? dst : &spare, &out, r->p + r->pos, coded) != Z_OK || out != n)
        return bad(l, what, "corrupt stream", e);
    r->pos += coded;
    return KD_OK;
}

int export_qcsr_parse(const nn_layer *l, const char *what, kd_rd *r, export_qcsr *a, kd_err *e)
{
    memset(a, 0, sizeof *a);
    uint32_t m = kd_rd_u32(r), k = kd_rd_u32(r), nnz = kd_rd_u32(r);
    if (!r->ok || m != (uint32_t)l->spec.units || k != nn_shape_size(l->in) ||
        nnz > (uint64_t)m * k || nnz > INT32_MAX)
        return bad(l, what, "sizes do not match the layer", e);
    *a = (export_qcsr){.m = m, .k = k, .nnz = nnz};
    size_t w = k <= 65535 ? 2 : 4;
    uint8_t *rows = kd_malloc(m * w);
    a->delta = kd_malloc((size_t)nnz + 1);
    a->val = kd_malloc((size_t)nnz + 1);
    a->scale = kd_malloc((size_t)m * 4);
    a->rp = kd_malloc(((size_t)m + 1) * 4);
    a->row_sum = kd_calloc((size_t)m + 1, 4);
    int rc = rows && a->delta && a->val && a->scale && a->rp && a->row_sum
                 ? KD_OK
                 : kd_err_set(e, KD_ENOMEM, "out of memory");
    if (rc == KD_OK && (inflate_next(l, what, r, rows, m * w, e) ||
                        inflate_next(l, what, r, a->delta, nnz, e) ||
                        inflate_next(l, what, r, a->val, nnz, e) ||
                        inflate_next(l, what, r, a->scale, (size_t)m * 4, e)))
        rc = KD_EFORMAT;
    int64_t at = 0;
    for (uint32_t row = 0; rc == KD_OK && row < m; row++) {
        uint32_t n = 0;
        if (w == 2) {
            uint16_t v;
            memcpy(&v, rows + row * w, 2);
            n = v;
        } else {
            memcpy(&n, rows + row * w, 4);
        }
        a->rp[row] = (int32_t)at;
        at += n;
        if (at > nnz)
            break;
    }
    if (rc == KD_OK && at != nnz)
        rc = bad(l, what, "row lengths do not add up to the entries", e);
    if (rc == KD_OK)
        a->rp[m] = (int32_t)at;
    for (uint32_t row = 0; rc == KD_OK && row < m; row++) {
        uint32_t sum = 0;
        for (int32_t j = a->rp[row]; j < a->rp[row + 1]; j++)
            sum += (uint32_t)(int32_t)a->val[j];
        a->row_sum[row] = (int32_t)sum;
    }
    kd_free(rows);
    if (rc)
        export_qcsr_free(a);
    return rc;
}

int export_qcsr_s8_parse(const nn_layer *l, const char *what, kd_rd *r, float *xs, int32_t *xz,
                         export_qcsr *a, kd_err *e)
{
    memset(a, 0, sizeof *a);
    *xs = kd_rd_f32(r);
    *xz = (int32_t)kd_rd_u32(r);
    if (!r->ok || !isfinite(*xs) || !(*xs > 0.0f) || *xz < -128 || *xz > 127)
        return bad(l, what, "bad input scale or zero point", e);
    return export_qcsr_parse(l, what, r, a, e);
}

/* l's own payload (ops->save) parsed as csr-int8-static's (xs != NULL) or
 * as csr-int8's. */
static int qcsr_read(const nn_layer *l, const char *what, float *xs, int32_t *xz,
                     export_qcsr *a, kd_err *e)
{
    memset(a, 0, sizeof *a);
    kd_buf b;
    int rc = payload_of(l, what, &b, e);
    kd_rd r = {.p = b.p, .len = b.len, .ok = 1};
    if (rc == KD_OK)
        rc = xs ? export_qcsr_s8_parse(l, what, &r, xs, xz, a, e)
                : export_qcsr_parse(l, what, &r, a, e);
    kd_buf_free(&b);
    return rc;
}

int export_qcsr_s8_read(const nn_layer *l, const char *what, float *xs, int32_t *xz,
                        export_qcsr *a, kd_err *e)
{
    return qcsr_read(l, what, xs, xz, a, e);
}

int export_qcsr_read(const nn_layer *l, const char *what, export_qcsr *a, kd_err *e)
{
    return qcsr_read(l, what, NULL, NULL, a, e);
}
