/* The int8 and int8-dyn payload as compress/kinds/dense_q8.c's q8_save
 * writes it, read once for both exports (C and ONNX):
 * u32 rows, cols, flags (1 int8 output, 2 relu); f32 in scale, i32 in zero,
 * f32 out scale, i32 out zero; f32 w_scale[rows]; i32 bias[rows];
 * int8 w[rows * cols]. */
#include <string.h>

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

int export_q8_read(const nn_layer *l, const char *what, export_q8 *q, kd_err *e)
{
    memset(q, 0, sizeof *q);
    kd_buf b = {0};
    l->ops->save(l, &b);
    if (b.failed) {
        kd_buf_free(&b);
        return kd_err_set(e, KD_ENOMEM, "%s: out of memory for its payload", what);
    }
    kd_rd r = {.p = b.p, .len = b.len, .ok = 1};
    int rc = q8_parse(l, what, &r, q, e);
    kd_buf_free(&b);
    if (rc)
        export_q8_free(q);
    return rc;
}
