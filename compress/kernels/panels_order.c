/* The row order of the batch-1 panels.  A slice of the panels costs, in
 * each panel (AVX-512) or window (avx2), as many steps as its row with the
 * most non-zeros there has.  The rows of a trained layer differ a lot (make
 * run's agp90: 16 to 242 non-zeros a row in dense1), so slices that mix
 * short and long rows are mostly padding.  Rows sorted by non-zero count
 * (most first) within blocks of PANELS_ORDER_SLICES slices fill the lanes
 * better: agp90 at 90%, lanes per non-zero 2.44 -> 2.17 (dense1) and 2.13 ->
 * 2.02 (dense2) in the avx2 layout, 2.70 -> 2.23 and 2.23 -> 2.02 in the
 * AVX-512 one; a layer pruned at random gains little and keeps its order.
 * The order is kept when it saves ORDER_MIN_GAIN of the steps; the kernels
 * then read the bias and write y through perm.  A block is whole 64-byte
 * lines of y and parts start on a block, so two parts never write the same
 * line. */
#include <stdlib.h>

#include "internal.h"

#define ORDER_MIN_GAIN 0.03

typedef struct {
    uint32_t row, len;
} row_len;

static int longer_first(const void *a, const void *b)
{
    const row_len *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row); /* ties: the file's order */
}

/* The rows of a in slice order: by non-zero count within blocks of `block`
 * rows.  NULL on allocation failure. */
static uint32_t *row_order(const compress_panels_src *a, int block)
{
    uint32_t *perm = kd_malloc((size_t)a->rows * sizeof *perm);
    row_len *rl = kd_malloc((size_t)a->rows * sizeof *rl);
    if (perm && rl) {
        for (int r = 0; r < a->rows; r++)
            rl[r] = (row_len){(uint32_t)r, a->rowptr[r + 1] - a->rowptr[r]};
        for (int r = 0; r < a->rows; r += block)
            qsort(rl + r, (size_t)(a->rows - r < block ? a->rows - r : block), sizeof *rl,
                  longer_first);
        for (int r = 0; r < a->rows; r++)
            perm[r] = rl[r].row;
    } else {
        kd_free(perm);
        perm = NULL;
    }
    kd_free(rl);
    return perm;
}

void compress_panels_order_free(compress_panels_order *o)
{
    kd_free(o->rowptr);
    kd_free(o->col);
    kd_free(o->perm);
    kd_free(o->val);
    kd_free(o->scale);
    kd_free(o->q);
    *o = (compress_panels_order){0};
}

/* *out = a with row i = a's row o->perm[i] (scale alike), its arrays in o.
 * Returns 0 on allocation failure. */
static int permute(const compress_panels_src *a, compress_panels_order *o,
                   compress_panels_src *out)
{
    size_t nnz = a->rowptr[a->rows];
    o->rowptr = kd_malloc(((size_t)a->rows + 1) * sizeof *o->rowptr);
    o->col = kd_malloc((nnz ? nnz : 1) * sizeof *o->col);
    if (a->q)
        o->q = kd_malloc(nnz ? nnz : 1);
    else
        o->val = kd_malloc((nnz ? nnz : 1) * sizeof *o->val);
    if (a->scale)
        o->scale = kd_malloc((size_t)a->rows * sizeof *o->scale);
    if (!o->rowptr || !o->col || (a->q ? !o->q : !o->val) || (a->scale && !o->scale))
        return 0;
    uint32_t n = 0;
    for (int i = 0; i < a->rows; i++) {
        uint32_t r = o->perm[i];
        o->rowptr[i] = n;
        for (uint32_t k = a->rowptr[r]; k < a->rowptr[r + 1]; k++, n++) {
            o->col[n] = compress_panels_src_col(a, k);
            if (a->q)
                o->q[n] = a->q[k];
            else
                o->val[n] = a->val[k];
        }
        if (a->scale)
            o->scale[i] = a->scale[r];
    }
    o->rowptr[a->rows] = n;
    *out = (compress_panels_src){.rows = a->rows, .cols = a->cols, .rowptr = o->rowptr,
                                 .col = o->col, .val = o->val, .q = o->q, .scale = o->scale,
                                 .perm = o->perm};
    return 1;
}

int compress_panels_order_rows(const compress_panels_src *a, int slice_rows,
                               compress_panels_steps_fn steps, compress_panels_src *out,
                               compress_panels_order *o)
{
    *o = (compress_panels_order){0};
    *out = *a;
    if (a->rows <= slice_rows) /* one slice: no order to choose */
        return 1;
    compress_panels_src ord;
    size_t before = 0, after = 0;
    if (!(o->perm = row_order(a, PANELS_ORDER_SLICES * slice_rows)) || !permute(a, o, &ord) ||
        !steps(a, &before) || !steps(&ord, &after)) {
        compress_panels_order_free(o);
        return 0;
    }
    if ((double)after <= (1.0 - ORDER_MIN_GAIN) * (double)before)
        *out = ord;
    else
        compress_panels_order_free(o);
    return 1;
}
