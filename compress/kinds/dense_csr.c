/* dense_csr: a dense layer whose weights are a CSR matrix (l->data) and whose
 * bias stays in the model's flat parameters.  Same function as nn's dense:
 * y = x W^T + b.  Backward writes dx and the bias gradient only: the sparse
 * weights are frozen (fine-tuning happens on the masked dense model). */
#include <math.h>
#include <string.h>

#include "internal.h"

int kcsr_setup(nn_layer *l, kd_err *e)
{
    if (l->spec.units < 1)
        return kd_err_set(e, KD_ECONFIG, "units must be >= 1");
    size_t fan_in = nn_shape_size(l->in);
    if (fan_in < 1 || fan_in > (1u << 26))
        return kd_err_set(e, KD_ECONFIG, "input of %zu features is out of range", fan_in);
    l->out = (nn_shape){l->spec.units, 1, 1};
    l->nw = 0;
    l->nb = (size_t)l->spec.units;
    l->nbuf = 0;
    return KD_OK;
}

/* Scratch: the batched kernels' transposed block, one per thread of the
 * team (nscratch), and the batch-1 panels (AVX2 and AVX-512 CPUs) with the CSR they
 * were built from, so a payload replaced after reserve is never run through
 * stale panels. */
typedef struct {
    float *scratch;
    int nscratch;
    compress_panels *panels;
    const compress_csr *src;
} csr_priv;

void kcsr_release(nn_layer *l)
{
    csr_priv *p = l->priv;
    if (p) {
        kd_afree(p->scratch);
        compress_panels_free(p->panels);
        kd_free(p);
    }
    l->priv = NULL;
    l->max_batch = 0;
}

int kcsr_reserve(nn_layer *l, int max_batch, kd_err *e)
{
    kcsr_release(l);
    csr_priv *p = kd_calloc(1, sizeof *p);
    if (!p)
        return kd_err_set(e, KD_ENOMEM, "out of memory for sparse scratch");
    l->priv = p;
    p->nscratch = nn_threads() < NN_TEAM_MAX ? nn_threads() : NN_TEAM_MAX;
    if (max_batch > 1 &&
        !(p->scratch = kd_afloat(nn_shape_size(l->in) * CSR_NB * (size_t)p->nscratch)))
        return kd_err_set(e, KD_ENOMEM, "out of memory for sparse scratch");
    if (l->data && compress_panels_supported()) {
        if (!(p->panels = compress_panels_new(l->data, COMPRESS_PANELS_AUTO, e)))
            return KD_ENOMEM;
        p->src = l->data;
    }
    l->max_batch = max_batch;
    return KD_OK;
}

/* One forward split across the team: batch 1 by rows of the panels, batches
 * by samples (each part with its own scratch block). */
typedef struct {
    const nn_layer *l;
    const csr_priv *p;
    const float *x;
    float *y;
    int n, relu;
} csr_job;

static void csr_part(void *arg, int part, int nparts)
{
    const csr_job *j = arg;
    const compress_csr *a = j->l->data;
    if (j->n == 1) {
        compress_panels_spmv_part_relu(j->p->panels, j->l->b, j->x, j->y, part, nparts, j->relu);
        return;
    }
    int np = nparts < j->p->nscratch ? nparts : j->p->nscratch;
    if (part >= np)
        return;
    int i0 = (int)((long)j->n * part / np), i1 = (int)((long)j->n * (part + 1) / np);
    size_t cols = (size_t)a->cols, u = (size_t)a->rows;
    if (i0 < i1)
        compress_csr_matmul(a, j->l->b, j->x + (size_t)i0 * cols, j->y + (size_t)i0 * u, i1 - i0,
                            j->p->scratch + (size_t)part * cols * CSR_NB);
    if (i0 < i1 && j->relu)
        compress_relu_rows(j->y + (size_t)i0 * u, i1 - i0, (int)u, 0, (int)u);
}

void kcsr_forward(nn_layer *l, const float *x, float *y, int n, const nn_ctx *c)
{
    const compress_csr *a = l->data;
    csr_priv *p = l->priv;
    const int u = l->spec.units;
    csr_job j = {.l = l, .p = p, .x = x, .y = y, .n = n, .relu = c->relu};
    /* 10 bytes a non-zero (the AVX2 panels; fp32 CSR reads 6-8) */
    nn_team *t = a ? nn_team_for(c->team, 10.0 * a->nnz * n) : NULL;
    if (!a) {
        for (int i = 0; i < n; i++)
            memcpy(y + (size_t)i * u, l->b, (size_t)u * sizeof *y);
        if (c->relu)
            compress_relu_rows(y, n, u, 0, u);
    } else if (n == 1 && p && p->panels && p->src == a) {
        nn_team_run(t, csr_part, &j);
    } else if (n > 1 && p && p->scratch && nn_team_size(t) > 1) {
        nn_team_run(t, csr_part, &j);
    } else {
        compress_csr_matmul(a, l->b, x, y, n, p ? p->scratch : NULL);
        if (c->relu)
            compress_relu_rows(y, n, u, 0, u);
    }
}

void kcsr_backward(nn_layer *l, const float *x, const float *y, const float *dy, float *dx,
                         int n, const nn_ctx *c)
{
    (void)x;
    (void)y;
    (void)c;
    const compress_csr *a = l->data;
    const int u = l->spec.units, k = (int)nn_shape_size(l->in);
    for (int i = 0; i < n; i++) {
        const float *dyi = dy + (size_t)i * u;
        for (int j = 0; j < u; j++)
            l->gb[j] += dyi[j];
        if (!dx)
            continue;
        float *dxi = dx + (size_t)i * k;
        memset(dxi, 0, (size_t)k * sizeof *dxi);
        for (int r = 0; a && r < a->rows; r++) /* dx += dy_r * row r of W */
            for (uint32_t q = a->rowptr[r]; q < a->rowptr[r + 1]; q++)
                dxi[compress_csr_col(a, q)] += dyi[r] * a->val[q];
    }
}

double kcsr_macs(const nn_layer *l)
{
    const compress_csr *a = l->data;
    return a ? (double)a->nnz : 0.0;
}

/* ---- payload: u32 rows, cols, nnz, then a u32 that says the form.
 * KCSR_FORM_GAPS | h (h in [1, KCSR_GROUP_MAX]): u32 structure bytes, the
 * structure (csr_structure.c: rows in groups of h with the same columns,
 * per group a count, per column a gap byte), then the nnz f32 values row by
 * row.  The gaps take a byte a non-zero at 90% sparsity where the column
 * indices took 2 (1,469,982 -> 1,221,695 bytes for make run's agp90), and
 * rows pruned in blocks of h share theirs (agp90b8: 1,496,310 -> 1,040,687).
 * Files written before (2026-11-30) have the form 1, 2 or 4: the bytes of a
 * column index, then rowptr[rows + 1] (u32), val[nnz], col[nnz]; both load.
 * Values stay raw fp32: deflate takes 10-13% off agp90's (their exponent
 * bytes), left to csr-shared+huff, the rung of Deep Compression's ladder
 * that codes. ---- */
#define KCSR_FORM_GAPS 0x10000u

static int csr_index_bytes(uint32_t cols) { return cols <= 256 ? 1 : cols <= 65536 ? 2 : 4; }

size_t compress_csr_stored_bytes(const compress_csr *a)
{
    kd_buf st = {0};
    int ok = kcsr_structure_put(a, kcsr_group_rows(a), &st) == KD_OK;
    size_t n = 5 * 4 + st.len + (size_t)a->nnz * sizeof *a->val;
    kd_buf_free(&st);
    return ok ? n : SIZE_MAX;
}

static void csr_save(const nn_layer *l, kd_buf *b)
{
    const compress_csr *a = l->data;
    int h = kcsr_group_rows(a);
    kd_buf st = {0};
    kd_buf_u32(b, (uint32_t)l->spec.units);
    kd_buf_u32(b, (uint32_t)nn_shape_size(l->in));
    kd_buf_u32(b, a ? a->nnz : 0);
    kd_buf_u32(b, KCSR_FORM_GAPS | (uint32_t)h);
    if (!a) { /* an empty layer: every group's count 0 */
        for (int r = 0; r < l->spec.units; r += h)
            kd_buf_put(&st, &(uint8_t){0}, 1);
    } else if (kcsr_structure_put(a, h, &st) != KD_OK) {
        b->failed = 1;
    }
    kd_buf_u32(b, (uint32_t)st.len);
    kd_buf_put(b, st.p, st.len);
    if (a)
        kd_buf_put(b, a->val, (size_t)a->nnz * sizeof *a->val);
    kd_buf_free(&st);
}

/* Offsets start at 0, never decrease, end at nnz (all checked before any
 * column is read); columns ascend within a row and stay below cols; values
 * are finite. */
int kcsr_valid(const compress_csr *a, kd_err *e)
{
    for (uint32_t k = 0; k < a->nnz; k++)
        if (!isfinite(a->val[k]))
            return kd_err_set(e, KD_EFORMAT, "non-finite value at non-zero %u", k);
    if (a->rowptr[0] != 0 || a->rowptr[a->rows] != a->nnz)
        return kd_err_set(e, KD_EFORMAT, "row offsets do not span the non-zeros");
    for (int r = 0; r < a->rows; r++)
        if (a->rowptr[r + 1] < a->rowptr[r] || a->rowptr[r + 1] > a->nnz)
            return kd_err_set(e, KD_EFORMAT, "row offsets out of order at row %d", r);
    for (int r = 0; r < a->rows; r++)
        for (uint32_t k = a->rowptr[r]; k < a->rowptr[r + 1]; k++) {
            uint32_t c = compress_csr_col(a, k);
            if (c >= (uint32_t)a->cols || (k > a->rowptr[r] && c <= compress_csr_col(a, k - 1)))
                return kd_err_set(e, KD_EFORMAT, "row %d: column %u out of order or range", r, c);
        }
    return KD_OK;
}

/* The rows and columns of a (allocated for its nnz) from r, in the form
 * the payload names. */
static int csr_get_structure(compress_csr *a, uint32_t form, kd_rd *r, kd_err *e)
{
    if (!(form & KCSR_FORM_GAPS)) { /* the form of files before 2026-11-30 */
        kd_rd_get(r, a->rowptr, ((size_t)a->rows + 1) * sizeof *a->rowptr);
        kd_rd_get(r, a->val, (size_t)a->nnz * sizeof *a->val);
        kd_rd_get(r, a->col, (size_t)a->nnz * form);
        return r->ok ? KD_OK : kd_err_set(e, KD_EFORMAT, "truncated sparse payload");
    }
    uint32_t nst = kd_rd_u32(r);
    if (!r->ok || nst > r->len - r->pos)
        return kd_err_set(e, KD_EFORMAT, "sparse structure of %u bytes, %zu left", nst,
                          r->ok ? r->len - r->pos : 0);
    int rc = kcsr_structure_get(a, (int)(form & ~KCSR_FORM_GAPS), r->p + r->pos, nst, e);
    if (rc != KD_OK) {
        kd_err_prefix(e, "sparse structure");
        return rc;
    }
    r->pos += nst;
    kd_rd_get(r, a->val, (size_t)a->nnz * sizeof *a->val);
    return r->ok ? KD_OK : kd_err_set(e, KD_EFORMAT, "truncated sparse values");
}

static int csr_load(nn_layer *l, kd_rd *r, kd_err *e)
{
    uint32_t rows = kd_rd_u32(r), cols = kd_rd_u32(r), nnz = kd_rd_u32(r), form = kd_rd_u32(r);
    uint32_t h = form & ~KCSR_FORM_GAPS, ib = (uint32_t)csr_index_bytes(cols);
    if (!r->ok)
        return kd_err_set(e, KD_EFORMAT, "truncated sparse header");
    int form_ok = form & KCSR_FORM_GAPS ? h >= 1 && h <= KCSR_GROUP_MAX : form == ib;
    if (rows != (uint32_t)l->spec.units || cols != nn_shape_size(l->in) || !form_ok ||
        (uint64_t)nnz > (uint64_t)rows * cols)
        return kd_err_set(e, KD_EFORMAT, "sparse header (%u x %u, %u non-zeros, form %#x) "
                          "does not match the layer", rows, cols, nnz, form);
    /* the bytes left bound the allocation: exact for the old form, the
     * values alone (4 a non-zero) for the gaps */
    uint64_t left = r->len - r->pos, need = ((uint64_t)rows + 1) * 4 + (uint64_t)nnz * (4 + ib);
    if (form & KCSR_FORM_GAPS ? (uint64_t)nnz * 4 > left : need != left)
        return kd_err_set(e, KD_EFORMAT, "sparse payload of %llu bytes for %u non-zeros",
                          (unsigned long long)left, nnz);
    compress_csr *a = compress_csr_alloc((int)rows, (int)cols, nnz, e);
    if (!a)
        return KD_ENOMEM;
    int rc = csr_get_structure(a, form, r, e);
    if (rc == KD_OK && r->pos != r->len)
        rc = kd_err_set(e, KD_EFORMAT, "sparse payload: %zu bytes after the values",
                        r->len - r->pos);
    if (rc != KD_OK || (rc = kcsr_valid(a, e)) != KD_OK) {
        compress_csr_free(a);
        return rc;
    }
    compress_csr_free(l->data);
    l->data = a;
    return KD_OK;
}

int kcsr_copy(nn_layer *dst, const nn_layer *src, kd_err *e)
{
    compress_csr *a = src->data ? compress_csr_copy(src->data, e) : NULL;
    if (src->data && !a)
        return KD_ENOMEM;
    compress_csr_free(dst->data);
    dst->data = a;
    return KD_OK;
}

void kcsr_destroy(nn_layer *l)
{
    compress_csr_free(l->data);
    l->data = NULL;
}

void kcsr_count(const nn_layer *l, size_t *weights, size_t *nonzero)
{
    const compress_csr *a = l->data;
    *weights = (size_t)l->spec.units * nn_shape_size(l->in);
    *nonzero = 0;
    for (uint32_t k = 0; a && k < a->nnz; k++)
        *nonzero += a->val[k] != 0.0f;
}

void kcsr_dequant(const nn_layer *l, float *w)
{
    const size_t mk = (size_t)l->spec.units * nn_shape_size(l->in);
    memset(w, 0, mk * sizeof *w);
    const compress_csr *a = l->data;
    const size_t k = nn_shape_size(l->in);
    for (int r = 0; a && r < a->rows; r++)
        for (uint32_t j = a->rowptr[r]; j < a->rowptr[r + 1]; j++)
            w[(size_t)r * k + compress_csr_col(a, j)] = a->val[j];
}

const nn_layer_ops compress_dense_csr_ops = {
    .name = "dense_csr",
    .setup = kcsr_setup,
    .reserve = kcsr_reserve,
    .release = kcsr_release,
    .forward = kcsr_forward,
    .threaded = 1,
    .fuses_relu = 1,
    .backward = kcsr_backward,
    .macs = kcsr_macs,
    .format = "csr-fp32",
    .weight_bits = 32,
    .sparse = 1,
    .dense_like = 1,
    .dequant = kcsr_dequant,
    .save = csr_save,
    .load = csr_load,
    .copy = kcsr_copy,
    .destroy = kcsr_destroy,
    .count = kcsr_count,
};

const compress_csr *compress_layer_csr(const nn_layer *l)
{
    return l->ops == &compress_dense_csr_ops || l->ops == &compress_dense_csr_shared_ops ||
                   l->ops == &compress_dense_csr_shared_raw_ops
               ? l->data
               : NULL;
}
