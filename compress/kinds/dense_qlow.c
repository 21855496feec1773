/* dense_q2 (format "int2") and dense_q3 (format "int3"): weight-only 2- and
 * 3-bit weights, groups of 32 along k sharing an fp16 scale, codes in bit
 * planes (compress/kernels/quant_lowbit.h); fp32 activations, the float bias
 * in the model's flat parameters.  One implementation, two ops tables, so
 * that each kind's facts (format, weight_bits) are constants of its table.
 * Inference-only (see dense_q8.c).  4-bit layers stay dense_q4 (its own
 * nibble format and kernels). */
#include <string.h>

#include "../kernels/quant_lowbit.h"
#include "internal.h"

static int ql_setup(nn_layer *l, kd_err *e) { return compress_qsetup(l, 1, e); }

static int kind_bits(const nn_layer *l) { return l->ops->weight_bits; }

typedef struct {
    const quant_ql *q;
    const float *x, *b;
    float *y;
    int n, relu;
} ql_job;

static void ql_part(void *arg, int part, int nparts)
{
    const ql_job *j = arg;
    int r0 = (int)((long)j->q->m * part / nparts), r1 = (int)((long)j->q->m * (part + 1) / nparts);
    quant_ql_gemm_rows(j->q, j->x, j->n, j->b, j->y, r0, r1);
    if (j->relu) /* the rows this part wrote, while they are in its cache */
        compress_relu_rows(j->y, j->n, j->q->m, r0, r1);
}

static void ql_forward(nn_layer *l, const float *x, float *y, int n, const nn_ctx *c)
{
    const quant_ql *q = l->data;
    const int u = l->spec.units;
    if (!q) {
        for (int i = 0; i < n; i++)
            memcpy(y + (size_t)i * u, l->b, (size_t)u * sizeof *y);
        if (c->relu)
            compress_relu_rows(y, n, u, 0, u);
        return;
    }
    ql_job j = {.q = q, .x = x, .b = l->b, .y = y, .n = n, .relu = c->relu};
    double bytes = (double)q->m * q->nb * (2 + QUANT_QL_CODE_BYTES(q->bits)) * n;
    nn_team_run(nn_team_for(c->team, bytes), ql_part, &j);
}

static void ql_destroy(nn_layer *l)
{
    quant_ql_free(l->data);
    l->data = NULL;
}

int compress_ql_attach(nn_layer *l, quant_ql *q, kd_err *e)
{
    ql_destroy(l);
    l->data = q;
    if (q && (q->bits != kind_bits(l) || q->m != l->spec.units || q->k != (int)nn_shape_size(l->in))) {
        ql_destroy(l);
        return kd_err_set(e, KD_EFORMAT, "%d-bit weights of %d x %d do not fit layer %s", q->bits,
                          q->m, q->k, l->spec.name);
    }
    return KD_OK;
}

/* ---- payload: u32 rows, cols, group, bits; then per group (row-major) the
 * u16 fp16 scale and the code bytes (QUANT_QL_CODE_BYTES(bits)) ------------ */
static void ql_save(const nn_layer *l, kd_buf *b)
{
    const quant_ql *q = l->data;
    const int bits = kind_bits(l), m = l->spec.units, k = (int)nn_shape_size(l->in);
    const int nb = (k + QUANT_QL_GROUP - 1) / QUANT_QL_GROUP, cb = QUANT_QL_CODE_BYTES(bits);
    kd_buf_u32(b, (uint32_t)m);
    kd_buf_u32(b, (uint32_t)k);
    kd_buf_u32(b, QUANT_QL_GROUP);
    kd_buf_u32(b, (uint32_t)bits);
    int8_t zero[QUANT_QL_GROUP] = {0};
    uint8_t zc[16];
    quant_ql_encode(zero, bits, zc);
    for (size_t i = 0; i < (size_t)m * nb; i++) {
        uint16_t d = q ? q->d[i] : 0;
        kd_buf_put(b, &d, 2);
        kd_buf_put(b, q ? q->code + i * cb : zc, (size_t)cb);
    }
}

static int ql_load(nn_layer *l, kd_rd *r, kd_err *e)
{
    uint32_t m = kd_rd_u32(r), k = kd_rd_u32(r), g = kd_rd_u32(r), bits = kd_rd_u32(r);
    if (!r->ok)
        return kd_err_set(e, KD_EFORMAT, "truncated low-bit header");
    if (m != (uint32_t)l->spec.units || k != nn_shape_size(l->in) || g != QUANT_QL_GROUP ||
        bits != (uint32_t)kind_bits(l))
        return kd_err_set(e, KD_EFORMAT, "%s payload of %u x %u (group %u, %u bits) does not "
                          "match the layer", l->ops->format, m, k, g, bits);
    quant_ql *q = quant_ql_new((int)bits, (int)m, (int)k, e);
    if (!q)
        return e->code;
    const size_t groups = (size_t)m * q->nb, cb = (size_t)QUANT_QL_CODE_BYTES(bits);
    if (groups * (2 + cb) != r->len - r->pos) {
        quant_ql_free(q);
        return kd_err_set(e, KD_EFORMAT, "%s payload of %zu bytes, %zu expected", l->ops->format,
                          r->len - r->pos, groups * (2 + cb));
    }
    for (size_t i = 0; i < groups; i++) {
        kd_rd_get(r, &q->d[i], 2);
        kd_rd_get(r, q->code + i * cb, cb);
    }
    if (!r->ok || !quant_ql_valid(q)) {
        quant_ql_free(q);
        return kd_err_set(e, KD_EFORMAT, "%s payload: bad scale or non-zero padding",
                          l->ops->format);
    }
    return compress_ql_attach(l, q, e);
}

static int ql_copy(nn_layer *dst, const nn_layer *src, kd_err *e)
{
    if (!src->data)
        return KD_OK;
    quant_ql *q = quant_ql_copy(src->data, e);
    return q ? compress_ql_attach(dst, q, e) : e->code;
}

static void ql_dequant(const nn_layer *l, float *w)
{
    if (l->data)
        quant_ql_unpack(l->data, w);
    else
        memset(w, 0, (size_t)l->spec.units * nn_shape_size(l->in) * sizeof *w);
}

static void ql_count(const nn_layer *l, size_t *weights, size_t *nonzero)
{
    const quant_ql *q = l->data;
    *weights = (size_t)l->spec.units * nn_shape_size(l->in);
    *nonzero = 0;
    const size_t cb = q ? (size_t)QUANT_QL_CODE_BYTES(q->bits) : 0;
    int8_t lv[QUANT_QL_GROUP];
    for (size_t i = 0; q && i < (size_t)q->m * q->nb; i++) {
        int g = (int)(i % q->nb), len = q->k - g * QUANT_QL_GROUP;
        len = len < QUANT_QL_GROUP ? len : QUANT_QL_GROUP;
        quant_ql_decode(q->code + i * cb, q->bits, lv);
        for (int j = 0; j < len; j++)
            *nonzero += lv[j] != 0 && q->d[i] != 0;
    }
}

#define QL_OPS(NAME, FORMAT, BITS)                                                              \
    {                                                                                          \
        .name = NAME, .setup = ql_setup, .release = compress_qrelease, .forward = ql_forward,   \
        .threaded = 1, .fuses_relu = 1, .backward = compress_qbackward,                        \
        .macs = compress_qmacs,                                                                \
        .format = FORMAT, .weight_bits = BITS, .dense_like = 1, .dequant = ql_dequant,          \
        .save = ql_save, .load = ql_load, .copy = ql_copy, .destroy = ql_destroy,               \
        .count = ql_count,                                                                     \
    }

const nn_layer_ops compress_dense_q2_ops = QL_OPS("dense_q2", "int2", 2);
const nn_layer_ops compress_dense_q3_ops = QL_OPS("dense_q3", "int3", 3);
