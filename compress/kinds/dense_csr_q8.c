/* dense_csr_q8 (format "csr-int8"): a pruned dense layer whose non-zeros are
 * int8 with a symmetric scale per row and one-byte delta-coded columns
 * (quant_csr); fp32 activations, the float bias in the model's flat
 * parameters.  Inference-only (see dense_q8.c).  Files hold the entries
 * deflate-coded (zlib), inflated at load.  At batch 1 on AVX2 and AVX-512 CPUs the
 * layer runs int8 panels (panels.c) built at reserve; batches and other
 * CPUs run quant_csr_gemm. */
#include <math.h>
#include <string.h>


#include "internal.h"

static int qcsr_setup(nn_layer *l, kd_err *e) { return compress_qsetup(l, 1, e); }

/* Scratch: the batch-1 int8 panels (AVX2 and AVX-512 CPUs) with the payload they
 * were built from, so a payload replaced after reserve never runs through
 * stale panels (attach also drops them: a new payload may reuse the old
 * one's address). */
typedef struct {
    compress_panels *panels;
    const quant_csr *src;
} qcsr_priv;

static void qcsr_release(nn_layer *l)
{
    qcsr_priv *p = l->priv;
    if (p) {
        compress_panels_free(p->panels);
        kd_free(p);
    }
    l->priv = NULL;
    l->max_batch = 0;
}

static int qcsr_reserve(nn_layer *l, int max_batch, kd_err *e)
{
    qcsr_release(l);
    qcsr_priv *p = kd_calloc(1, sizeof *p);
    if (!p)
        return kd_err_set(e, KD_ENOMEM, "out of memory for int8 CSR scratch");
    l->priv = p;
    if (l->data && compress_panels_supported()) {
        if (!(p->panels = compress_panels_new_q8(l->data, e)))
            return KD_ENOMEM;
        p->src = l->data;
    }
    l->max_batch = max_batch;
    return KD_OK;
}

/* One forward split across the team: batch 1 by slices of the panels (or,
 * without them, by rows cut where the parts hold about equal entries),
 * batches by samples. */
typedef struct {
    const quant_csr *q;
    const compress_panels *panels;
    const float *x, *b;
    float *y;
    int n, relu;
} qcsr_job;

int compress_qcsr_row_start(const quant_csr *q, int part, int nparts)
{
    if (part >= nparts)
        return q->m;
    int64_t want = (int64_t)q->nnz * part / nparts;
    int lo = 0, hi = q->m; /* first row r with row_ptr[r] >= want */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (q->row_ptr[mid] < want)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void qcsr_part(void *arg, int part, int nparts)
{
    const qcsr_job *j = arg;
    const quant_csr *q = j->q;
    if (j->n == 1 && j->panels) {
        compress_panels_spmv_part_relu(j->panels, j->b, j->x, j->y, part, nparts, j->relu);
        return;
    }
    if (j->n == 1) {
        int r0 = part ? compress_qcsr_row_start(q, part, nparts) : 0,
            r1 = compress_qcsr_row_start(q, part + 1, nparts);
        quant_csr_gemv_rows(q, j->x, j->b, j->y, r0, r1);
        if (j->relu)
            compress_relu_rows(j->y, 1, q->m, r0, r1);
        return;
    }
    int i0 = (int)((long)j->n * part / nparts), i1 = (int)((long)j->n * (part + 1) / nparts);
    if (i0 < i1)
        quant_csr_gemm(q, j->x + (size_t)i0 * q->k, i1 - i0, j->b, j->y + (size_t)i0 * q->m);
    if (i0 < i1 && j->relu)
        compress_relu_rows(j->y + (size_t)i0 * q->m, i1 - i0, q->m, 0, q->m);
}

static void qcsr_forward(nn_layer *l, const float *x, float *y, int n, const nn_ctx *c)
{
    const quant_csr *q = l->data;
    const qcsr_priv *p = l->priv;
    const int u = l->spec.units;
    if (q) {
        qcsr_job j = {.q = q, .x = x, .b = l->b, .y = y, .n = n, .relu = c->relu};
        if (n == 1 && p && p->panels && p->src == q)
            j.panels = p->panels;
        nn_team *t = nn_team_for(c->team, 4.0 * q->nnz * n); /* ~4 bytes a non-zero */
        if (nn_team_size(t) > 1) {
            nn_team_run(t, qcsr_part, &j);
        } else if (j.panels) {
            compress_panels_spmv_part_relu(j.panels, l->b, x, y, 0, 1, c->relu);
        } else {
            quant_csr_gemm(q, x, n, l->b, y);
            if (c->relu)
                compress_relu_rows(y, n, u, 0, u);
        }
        return;
    }
    for (int i = 0; i < n; i++)
        memcpy(y + (size_t)i * u, l->b, (size_t)u * sizeof *y);
    if (c->relu)
        compress_relu_rows(y, n, u, 0, u);
}

static double qcsr_macs(const nn_layer *l)
{
    const quant_csr *q = l->data;
    return q ? (double)q->nnz : 0.0;
}

static void qcsr_destroy(nn_layer *l)
{
    qcsr_priv *p = l->priv;
    if (p) { /* the panels belong to this payload */
        compress_panels_free(p->panels);
        p->panels = NULL;
        p->src = NULL;
    }
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

/* ---- payload: u32 rows, cols, nnz; then four deflate streams (zlib format),
 * each u32 raw length, u32 coded length, bytes: the entries of each row (u16
 * when cols <= 65535, else u32: a row has at most cols entries), delta[nnz],
 * val[nnz], scale[rows] (f32).  This is Deep Compression's Huffman stage: on
 * the 90%-pruned MLP a delta takes ~4.5 bits and a value ~7.3 instead of 8
 * each.  The streams stay apart because deltas and values have different
 * statistics; load inflates them into the runtime quant_csr, so the kernels
 * never see zlib (the coder is kernels.h's entropy_encode).  Z_HUFFMAN_ONLY
 * coded smallest on that model (LZ77 matches only add cost on these
 * near-i.i.d. bytes): 366,879 stream bytes against
 * 369,209 (Z_FILTERED) and 382,079 (Z_DEFAULT_STRATEGY) at level 9; rows
 * pruned in blocks repeat their deltas, where Z_FILTERED's matches win
 * (the coder keeps the smaller): 392,650 -> 271,226 bytes in blocks of 8. */
/* Deflate never codes more than 1032 output bytes per input byte, so a raw
 * length beyond that is a lie caught before allocating for it. */
#define QCSR_ZMAX_RATIO 1032u

static int qcsr_rowlen_bytes(int k) { return k <= UINT16_MAX ? 2 : 4; }

void compress_qcsr_put(const quant_csr *q, int m, int k, kd_buf *b)
{
    const int w = qcsr_rowlen_bytes(k);
    kd_buf_u32(b, (uint32_t)m);
    kd_buf_u32(b, (uint32_t)k);
    kd_buf_u32(b, q ? (uint32_t)q->nnz : 0);
    uint8_t *rows = kd_calloc((size_t)m, (size_t)w);
    float *ones = q ? NULL : kd_malloc((size_t)m * sizeof *ones);
    if (!rows || (!q && !ones)) {
        b->failed = 1;
    } else {
        for (int r = 0; q && r < m; r++) {
            uint32_t len = (uint32_t)(q->row_ptr[r + 1] - q->row_ptr[r]);
            if (w == 2) {
                uint16_t v = (uint16_t)len;
                memcpy(rows + (size_t)r * 2, &v, 2);
            } else {
                memcpy(rows + (size_t)r * 4, &len, 4);
            }
        }
        for (int r = 0; !q && r < m; r++)
            ones[r] = 1.0f;
        size_t nnz = q ? (size_t)q->nnz : 0;
        entropy_encode(b, rows, (size_t)m * w);
        entropy_encode(b, q ? q->delta : NULL, nnz);
        entropy_encode(b, q ? q->val : NULL, nnz);
        entropy_encode(b, q ? q->scale : ones, (size_t)m * sizeof(float));
    }
    kd_free(rows);
    kd_free(ones);
}

static void qcsr_save(const nn_layer *l, kd_buf *b)
{
    compress_qcsr_put(l->data, l->spec.units, (int)nn_shape_size(l->in), b);
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

/* The next stream into dst (exactly n bytes), errors named as int8 CSR's. */
static int qcsr_get_stream(kd_rd *r, void *dst, size_t n, const char *what, kd_err *e)
{
    int rc = entropy_decode(r, dst, n, what, e);
    if (rc != KD_OK)
        kd_err_prefix(e, "int8 CSR");
    return rc;
}

int compress_qcsr_get(kd_rd *r, int want_m, int want_k, quant_csr **out, kd_err *e)
{
    uint32_t m = kd_rd_u32(r), k = kd_rd_u32(r), nnz = kd_rd_u32(r);
    *out = NULL;
    if (!r->ok)
        return kd_err_set(e, KD_EFORMAT, "truncated int8 CSR header");
    if (m != (uint32_t)want_m || k != (uint32_t)want_k || nnz > INT32_MAX)
        return kd_err_set(e, KD_EFORMAT, "int8 CSR payload of %u x %u does not match the layer",
                          m, k);
    /* a row holds at most k entries (columns ascend after its first) */
    if (nnz > (uint64_t)m * k || nnz > (uint64_t)(r->len - r->pos) * QCSR_ZMAX_RATIO)
        return kd_err_set(e, KD_EFORMAT, "int8 CSR: %u entries cannot fit %u x %u in %zu bytes",
                          nnz, m, k, r->len - r->pos);
    const size_t w = (size_t)qcsr_rowlen_bytes((int)k);
    quant_csr *q = kd_calloc(1, sizeof *q);
    uint8_t *rows = kd_malloc((size_t)m * w);
    if (q) {
        *q = (quant_csr){.m = (int)m, .k = (int)k, .nnz = (int32_t)nnz};
        q->row_ptr = kd_malloc(((size_t)m + 1) * sizeof *q->row_ptr);
        q->delta = kd_malloc(nnz ? nnz : 1);
        q->val = kd_malloc(nnz ? nnz : 1);
        q->scale = kd_malloc((size_t)m * sizeof *q->scale);
    }
    int rc = KD_OK;
    if (!q || !rows || !q->row_ptr || !q->delta || !q->val || !q->scale)
        rc = kd_err_set(e, KD_ENOMEM, "out of memory for int8 CSR");
    if (rc == KD_OK)
        rc = qcsr_get_stream(r, rows, (size_t)m * w, "row length", e);
    if (rc == KD_OK) { /* row lengths to offsets; qcsr_valid checks they end at nnz */
        int64_t at = 0;
        q->row_ptr[0] = 0;
        for (uint32_t i = 0; i < m; i++) {
            uint32_t len = 0;
            memcpy(&len, rows + i * w, w); /* little-endian: a u16 fills the low half */
            at += len;
            if (len > k || at > (int64_t)nnz) {
                rc = kd_err_set(e, KD_EFORMAT, "int8 CSR: row %u has %u entries, too many", i,
                                len);
                break;
            }
            q->row_ptr[i + 1] = (int32_t)at;
        }
    }
    kd_free(rows);
    if (rc == KD_OK)
        rc = qcsr_get_stream(r, q->delta, nnz, "column delta", e);
    if (rc == KD_OK)
        rc = qcsr_get_stream(r, q->val, nnz, "value", e);
    if (rc == KD_OK)
        rc = qcsr_get_stream(r, q->scale, (size_t)m * sizeof *q->scale, "scale", e);
    if (rc == KD_OK)
        rc = qcsr_valid(q, e);
    if (rc != KD_OK) {
        quant_csr_free(q);
        return rc;
    }
    *out = q;
    return KD_OK;
}

static int qcsr_load(nn_layer *l, kd_rd *r, kd_err *e)
{
    quant_csr *q;
    int rc = compress_qcsr_get(r, l->spec.units, (int)nn_shape_size(l->in), &q, e);
    if (rc == KD_OK && r->pos != r->len) {
        quant_csr_free(q);
        return kd_err_set(e, KD_EFORMAT, "int8 CSR: %zu stray bytes after the payload",
                          r->len - r->pos);
    }
    return rc == KD_OK ? compress_qcsr_attach(l, q, e) : rc;
}

void compress_qcsr_count(const quant_csr *q, const nn_layer *l, size_t *weights, size_t *nonzero)
{
    *weights = (size_t)l->spec.units * nn_shape_size(l->in);
    *nonzero = 0;
    for (int32_t j = 0; q && j < q->nnz; j++)
        *nonzero += q->val[j] != 0;
}

void compress_qcsr_dequant(const quant_csr *q, const nn_layer *l, float *w)
{
    const size_t mk = (size_t)l->spec.units * nn_shape_size(l->in);
    memset(w, 0, mk * sizeof *w);
    for (int r = 0; q && r < q->m; r++) {
        int col = 0;
        for (int32_t j = q->row_ptr[r]; j < q->row_ptr[r + 1]; j++) {
            col += q->delta[j];
            w[(size_t)r * q->k + col] = q->scale[r] * (float)q->val[j];
        }
    }
}

static void qcsr_count(const nn_layer *l, size_t *weights, size_t *nonzero)
{
    compress_qcsr_count(l->data, l, weights, nonzero);
}

static void qcsr_dequant(const nn_layer *l, float *w) { compress_qcsr_dequant(l->data, l, w); }

const nn_layer_ops compress_dense_csr_q8_ops = {
    .name = "dense_csr_q8",
    .setup = qcsr_setup,
    .reserve = qcsr_reserve,
    .release = qcsr_release,
    .forward = qcsr_forward,
    .fuses_relu = 1,
    .threaded = 1,
    .backward = compress_qbackward,
    .macs = qcsr_macs,
    .format = "csr-int8",
    .weight_bits = 8,
    .sparse = 1,
    .dense_like = 1,
    .dequant = qcsr_dequant,
    .save = qcsr_save,
    .load = qcsr_load,
    .copy = compress_copy_via_payload,
    .destroy = qcsr_destroy,
    .count = qcsr_count,
};
