/* dense_csr_q8 (format "csr-int8"): a pruned dense layer whose non-zeros are
 * int8 with a symmetric scale per row and one-byte delta-coded columns
 * (quant_csr); fp32 activations, the float bias in the model's flat
 * parameters.  Inference-only (see layer_q8.c). */
#include <math.h>
#include <string.h>

#include "internal.h"

static int qcsr_setup(nn_layer *l, kd_err *e) { return compress_qsetup(l, 1, e); }

static void qcsr_forward(nn_layer *l, const float *x, float *y, int n, const nn_ctx *c)
{
    (void)c;
    const quant_csr *q = l->data;
    const int u = l->spec.units;
    if (q) {
        quant_csr_gemm(q, x, n, l->b, y);
        return;
    }
    for (int i = 0; i < n; i++)
        memcpy(y + (size_t)i * u, l->b, (size_t)u * sizeof *y);
}

static double qcsr_macs(const nn_layer *l)
{
    const quant_csr *q = l->data;
    return q ? (double)q->nnz : 0.0;
}

static void qcsr_destroy(nn_layer *l)
{
    quant_csr_free(l->data);
    l->data = NULL;
}

int compress_qcsr_attach(nn_layer *l, quant_csr *q, kd_err *e)
{
    (void)e;
    qcsr_destroy(l);
    l->data = q;
    return KD_OK;
}

/* ---- payload: u32 rows, cols, nnz; i32 row_ptr[rows + 1]; u8 delta[nnz];
 * i8 val[nnz]; f32 scale[rows] ---------------------------------------------- */
static void qcsr_save(const nn_layer *l, kd_buf *b)
{
    const quant_csr *q = l->data;
    int m = l->spec.units;
    kd_buf_u32(b, (uint32_t)m);
    kd_buf_u32(b, (uint32_t)nn_shape_size(l->in));
    kd_buf_u32(b, q ? (uint32_t)q->nnz : 0);
    for (int r = 0; r <= m; r++)
        kd_buf_u32(b, q ? (uint32_t)q->row_ptr[r] : 0);
    if (q) {
        kd_buf_put(b, q->delta, (size_t)q->nnz);
        kd_buf_put(b, q->val, (size_t)q->nnz);
    }
    for (int r = 0; r < m; r++)
        kd_buf_f32(b, q ? q->scale[r] : 1.0f);
}

/* Offsets from 0 to nnz, never decreasing; every column (running sum of
 * deltas in a row) below k and ascending after a row's first entry; values
 * in [-127, 127]; scales finite and > 0. */
static int qcsr_valid(const quant_csr *q, kd_err *e)
{
    if (q->row_ptr[0] != 0 || q->row_ptr[q->m] != q->nnz)
        return kd_err_set(e, KD_EFORMAT, "int8 CSR: row offsets do not span the entries");
    for (int r = 0; r < q->m; r++) {
        if (q->row_ptr[r + 1] < q->row_ptr[r] || q->row_ptr[r + 1] > q->nnz)
            return kd_err_set(e, KD_EFORMAT, "int8 CSR: row offsets out of order at row %d", r);
        if (!isfinite(q->scale[r]) || !(q->scale[r] > 0.0f))
            return kd_err_set(e, KD_EFORMAT, "int8 CSR: bad scale at row %d", r);
    }
    for (int r = 0; r < q->m; r++) {
        long col = 0;
        for (int32_t j = q->row_ptr[r]; j < q->row_ptr[r + 1]; j++) {
            col += q->delta[j];
            if (col >= q->k || (j > q->row_ptr[r] && q->delta[j] == 0) || q->val[j] == INT8_MIN)
                return kd_err_set(e, KD_EFORMAT, "int8 CSR: row %d: bad column or value", r);
        }
    }
    return KD_OK;
}

static int qcsr_load(nn_layer *l, kd_rd *r, kd_err *e)
{
    uint32_t m = kd_rd_u32(r), k = kd_rd_u32(r), nnz = kd_rd_u32(r);
    if (!r->ok)
        return kd_err_set(e, KD_EFORMAT, "truncated int8 CSR header");
    if (m != (uint32_t)l->spec.units || k != nn_shape_size(l->in) || nnz > INT32_MAX)
        return kd_err_set(e, KD_EFORMAT, "int8 CSR payload of %u x %u does not match the layer",
                          m, k);
    uint64_t need = ((uint64_t)m + 1) * 4 + (uint64_t)nnz * 2 + (uint64_t)m * 4;
    if (need != r->len - r->pos)
        return kd_err_set(e, KD_EFORMAT, "int8 CSR payload of %zu bytes, %llu expected",
                          r->len - r->pos, (unsigned long long)need);
    quant_csr *q = kd_calloc(1, sizeof *q);
    if (q) {
        *q = (quant_csr){.m = (int)m, .k = (int)k, .nnz = (int32_t)nnz};
        q->row_ptr = kd_malloc(((size_t)m + 1) * sizeof *q->row_ptr);
        q->delta = kd_malloc(nnz ? nnz : 1);
        q->val = kd_malloc(nnz ? nnz : 1);
        q->scale = kd_malloc((size_t)m * sizeof *q->scale);
    }
    if (!q || !q->row_ptr || !q->delta || !q->val || !q->scale) {
        quant_csr_free(q);
        return kd_err_set(e, KD_ENOMEM, "out of memory for int8 CSR");
    }
    kd_rd_get(r, q->row_ptr, ((size_t)m + 1) * sizeof *q->row_ptr);
    kd_rd_get(r, q->delta, nnz);
    kd_rd_get(r, q->val, nnz);
    kd_rd_get(r, q->scale, (size_t)m * sizeof *q->scale);
    if (!r->ok || qcsr_valid(q, e) != KD_OK) {
        quant_csr_free(q);
        return r->ok ? KD_EFORMAT : kd_err_set(e, KD_EFORMAT, "truncated int8 CSR payload");
    }
    return compress_qcsr_attach(l, q, e);
}

static int qcsr_copy(nn_layer *dst, const nn_layer *src, kd_err *e)
{
    if (!src->data)
        return KD_OK;
    kd_buf b = {0};
    qcsr_save(src, &b);
    kd_rd r = {.p = b.p, .len = b.len, .ok = 1};
    int rc = b.failed ? kd_err_set(e, KD_ENOMEM, "out of memory") : qcsr_load(dst, &r, e);
    kd_buf_free(&b);
    return rc;
}

static void qcsr_count(const nn_layer *l, size_t *weights, size_t *nonzero)
{
    const quant_csr *q = l->data;
    *weights = (size_t)l->spec.units * nn_shape_size(l->in);
    *nonzero = 0;
    for (int32_t j = 0; q && j < q->nnz; j++)
        *nonzero += q->val[j] != 0;
}

const nn_layer_ops compress_dense_csr_q8_ops = {
    .name = "dense_csr_q8",
    .setup = qcsr_setup,
    .forward = qcsr_forward,
    .backward = compress_qbackward,
    .macs = qcsr_macs,
    .format = "csr-int8",
    .save = qcsr_save,
    .load = qcsr_load,
    .copy = qcsr_copy,
    .destroy = qcsr_destroy,
    .count = qcsr_count,
};
