/* dense_q4 (format "int4"): weight-only int4, groups of 32 weights along k
 * sharing an fp16 scale, two weights per byte (quant_q4); fp32 activations,
 * the float bias in the model's flat parameters.  The GEMM dequantizes
 * inside the kernel (quant_q4_gemm).  Inference-only (see dense_q8.c). */
#include <string.h>

#include "internal.h"

static int q4_setup(nn_layer *l, kd_err *e) { return compress_qsetup(l, 1, e); }

/* Split by rows across the model's team.  Batches above one sample with
 * q4x8 (AVX2) first quantize every sample's activations once into the
 * layer's scratch, split by samples, then split the rows; at batch 1 each
 * part quantizes the one sample itself, which is cheaper than a second
 * barrier. */
typedef struct {
    const quant_q4 *q;
    const float *x, *b;
    float *y;
    void *prep;
    int n, relu;
} q4_job;

static void q4_part(void *arg, int part, int nparts)
{
    const q4_job *j = arg;
    int r0 = (int)((long)j->q->m * part / nparts), r1 = (int)((long)j->q->m * (part + 1) / nparts);
    if (j->prep)
        quant_q4_gemm_prepped(j->q, j->prep, j->n, j->b, j->y, r0, r1);
    else
        quant_q4_gemm_rows(j->q, j->x, j->n, j->b, j->y, r0, r1);
    if (j->relu)
        compress_relu_rows(j->y, j->n, j->q->m, r0, r1);
}

static void q4_prep_part(void *arg, int part, int nparts)
{
    const q4_job *j = arg;
    quant_q4_prep(j->q, j->x, (int)((long)j->n * part / nparts),
                  (int)((long)j->n * (part + 1) / nparts), j->prep);
}

/* Scratch for the prepared activations of max_batch samples (none when
 * this CPU level has no q4x8). */
static int q4_reserve(nn_layer *l, int max_batch, kd_err *e)
{
    compress_qrelease(l);
    size_t bytes = quant_q4_prep_bytes((int)nn_shape_size(l->in), max_batch);
    if (bytes && !(l->priv = kd_malloc(bytes)))
        return kd_err_set(e, KD_ENOMEM, "out of memory for int4 scratch (%zu bytes)", bytes);
    l->max_batch = max_batch;
    return KD_OK;
}

static void q4_forward(nn_layer *l, const float *x, float *y, int n, const nn_ctx *c)
{
    const quant_q4 *q = l->data;
    const int u = l->spec.units;
    if (!q) {
        for (int i = 0; i < n; i++)
            memcpy(y + (size_t)i * u, l->b, (size_t)u * sizeof *y);
        if (c->relu)
            compress_relu_rows(y, n, u, 0, u);
        return;
    }
    q4_job j = {.q = q, .x = x, .b = l->b, .y = y, .n = n, .relu = c->relu};
    nn_team *t = nn_team_for(c->team, (double)q->m * q->nb * sizeof *q->blocks * n);
    /* the level is asked again: a test may force a lower one after reserve */
    if (n > 1 && l->priv && n <= l->max_batch && quant_q4_prep_bytes(q->k, n)) {
        j.prep = l->priv;
        nn_team_run(t, q4_prep_part, &j);
    }
    nn_team_run(t, q4_part, &j);
}

static void q4_destroy(nn_layer *l)
{
    quant_q4_free(l->data);
    l->data = NULL;
}

int compress_q4_attach(nn_layer *l, quant_q4 *q, kd_err *e)
{
    if (!q->quads) { /* loaded or copied: the kernels' regrouped copy */
        int rc = quant_q4_build_quads(q, e);
        if (rc != KD_OK) {
            quant_q4_free(q);
            return rc;
        }
    }
    q4_destroy(l);
    l->data = q;
    return KD_OK;
}

/* ---- payload: u32 rows, cols, group; rows x ceil(cols / group) blocks of
 * 18 bytes (u16 fp16 scale, 16 bytes of nibbles) ------------------------- */
static void q4_save(const nn_layer *l, kd_buf *b)
{
    const quant_q4 *q = l->data;
    int m = l->spec.units, k = (int)nn_shape_size(l->in), nb = (k + QUANT_Q4_GROUP - 1) / QUANT_Q4_GROUP;
    kd_buf_u32(b, (uint32_t)m);
    kd_buf_u32(b, (uint32_t)k);
    kd_buf_u32(b, QUANT_Q4_GROUP);
    quant_block_q4 zero = {.d = 0};
    memset(zero.q, 0x88, sizeof zero.q);
    for (size_t i = 0; i < (size_t)m * nb; i++) {
        const quant_block_q4 *bl = q ? &q->blocks[i] : &zero;
        kd_buf_put(b, &bl->d, 2);
        kd_buf_put(b, bl->q, sizeof bl->q);
    }
}

/* A scale is a finite, non-negative fp16; weights past k are zero (nibble 8). */
static int block_ok(const quant_block_q4 *bl, int len)
{
    if (bl->d & 0x8000 || (bl->d >> 10 & 31) == 31)
        return 0;
    for (int j = len; j < QUANT_Q4_GROUP; j++) {
        int byte = bl->q[j % (QUANT_Q4_GROUP / 2)];
        if ((j < QUANT_Q4_GROUP / 2 ? byte & 15 : byte >> 4) != 8)
            return 0;
    }
    return 1;
}

static int q4_load(nn_layer *l, kd_rd *r, kd_err *e)
{
    uint32_t m = kd_rd_u32(r), k = kd_rd_u32(r), g = kd_rd_u32(r);
    if (!r->ok)
        return kd_err_set(e, KD_EFORMAT, "truncated int4 header");
    if (m != (uint32_t)l->spec.units || k != nn_shape_size(l->in) || g != QUANT_Q4_GROUP)
        return kd_err_set(e, KD_EFORMAT, "int4 payload of %u x %u (group %u) does not match the "
                          "layer", m, k, g);
    uint32_t nb = (k + g - 1) / g;
    if ((uint64_t)m * nb * 18 != r->len - r->pos)
        return kd_err_set(e, KD_EFORMAT, "int4 payload of %zu bytes, %llu expected",
                          r->len - r->pos, (unsigned long long)m * nb * 18);
    quant_q4 *q = kd_calloc(1, sizeof *q);
    quant_block_q4 *bl = kd_calloc((size_t)m * nb, sizeof *bl);
    if (!q || !bl) {
        kd_free(q);
        kd_free(bl);
        return kd_err_set(e, KD_ENOMEM, "out of memory for int4 weights");
    }
    *q = (quant_q4){.m = (int)m, .k = (int)k, .nb = (int)nb, .blocks = bl};
    int ok = 1;
    for (size_t i = 0; i < (size_t)m * nb; i++) {
        kd_rd_get(r, &bl[i].d, 2);
        kd_rd_get(r, bl[i].q, sizeof bl[i].q);
        uint32_t bi = (uint32_t)(i % nb), len = k - bi * g < g ? k - bi * g : g;
        ok &= block_ok(&bl[i], (int)len);
    }
    if (!r->ok || !ok) {
        quant_q4_free(q);
        return kd_err_set(e, KD_EFORMAT, "int4 payload: bad scale or non-zero padding");
    }
    return compress_q4_attach(l, q, e);
}

static int q4_copy(nn_layer *dst, const nn_layer *src, kd_err *e)
{
    const quant_q4 *s = src->data;
    if (!s)
        return KD_OK;
    quant_q4 *q = kd_calloc(1, sizeof *q);
    quant_block_q4 *bl = kd_malloc((size_t)s->m * s->nb * sizeof *bl);
    if (!q || !bl) {
        kd_free(q);
        kd_free(bl);
        return kd_err_set(e, KD_ENOMEM, "out of memory for int4 weights");
    }
    *q = *s;
    q->blocks = bl;
    q->quads = NULL; /* compress_q4_attach builds the copy's own */
    q->vert = NULL;
    q->vert_d = NULL;
    memcpy(bl, s->blocks, (size_t)s->m * s->nb * sizeof *bl);
    return compress_q4_attach(dst, q, e);
}

static void q4_count(const nn_layer *l, size_t *weights, size_t *nonzero)
{
    const quant_q4 *q = l->data;
    *weights = (size_t)l->spec.units * nn_shape_size(l->in);
    *nonzero = 0;
    for (int r = 0; q && r < q->m; r++)
        for (int c = 0; c < q->k; c++) {
            const quant_block_q4 *bl = &q->blocks[(size_t)r * q->nb + c / QUANT_Q4_GROUP];
            int j = c % QUANT_Q4_GROUP, byte = bl->q[j % (QUANT_Q4_GROUP / 2)];
            int v = (j < QUANT_Q4_GROUP / 2 ? byte & 15 : byte >> 4) - 8;
            *nonzero += v != 0 && bl->d != 0;
        }
}

static void q4_dequant(const nn_layer *l, float *w)
{
    if (l->data)
        quant_q4_unpack(l->data, w);
    else
        memset(w, 0, (size_t)l->spec.units * nn_shape_size(l->in) * sizeof *w);
}

const nn_layer_ops compress_dense_q4_ops = {
    .name = "dense_q4",
    .setup = q4_setup,
    .reserve = q4_reserve,
    .release = compress_qrelease,
    .forward = q4_forward,
    .fuses_relu = 1,
    .threaded = 1,
    .backward = compress_qbackward,
    .macs = compress_qmacs,
    .format = "int4",
    .weight_bits = 4,
    .dense_like = 1,
    .dequant = q4_dequant,
    .save = q4_save,
    .load = q4_load,
    .copy = q4_copy,
    .destroy = q4_destroy,
    .count = q4_count,
};
