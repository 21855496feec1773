/* kernels' private shared declarations; never included from outside compress/kernels/. */
#ifndef KD_COMPRESS_KERNELS_INTERNAL_H
#define KD_COMPRESS_KERNELS_INTERNAL_H

#include "kernels.h"

void compress_csr_transpose_block(const float *x, int cols, int nb, float *xt);

/* The byte panels' AVX2 kernel (quant_csr_s8_avx2.c): nslice slices whose
 * step counts are slice_at[i + 1] - slice_at[i], from the steps at win, nib,
 * val; nx samples (1..4) x + i xstride, each writing acc + i astride
 * [0 .. min(8 nslice, rows)). */
void quant_csr_s8_avx2(const uint32_t *slice_at, int nslice, const uint16_t *win,
                       const uint8_t *nib, const int8_t *val, const uint8_t *x, size_t xstride,
                       int nx, int32_t *acc, size_t astride, int rows);
void quant_csr_s8_out_avx2(const quant_csr_s8_epi *ep, const int32_t *acc, float *y, int r0,
                           int r1);

/* The AVX-512 kernels, chosen when kernels_isa() >= KD_ISA_AVX512. */
int compress_csr_have_avx512(void);
void compress_csr_matmul_avx512(const compress_csr *a, const float *bias, const float *x, float *y,
                                int n, float *scratch);

/* What the batch-1 panels are built from (panels.c, panels_avx2.c,
 * panels_order.c): a compress_csr's columns (a) or plain columns (col),
 * fp32 (val) or int8 (q) values, rowptr either way; int8's row scales; and,
 * when the rows are in panels_order.c's order, which row of the layer each
 * is (perm, copied by the builders; NULL: the same). */
typedef struct {
    int rows, cols;
    const uint32_t *rowptr;
    const compress_csr *a;
    const uint32_t *col;
    const float *val;
    const int8_t *q;
    const float *scale;
    const uint32_t *perm;
} compress_panels_src;

static inline uint32_t compress_panels_src_col(const compress_panels_src *a, uint32_t k)
{
    return a->a ? compress_csr_col(a->a, k) : a->col[k];
}

/* The row order (panels_order.c): rows sorted by non-zero count within
 * blocks of PANELS_ORDER_SLICES slices, kept when that saves 3% of the steps
 * `steps` counts (0 from it: out of memory).  Parts start on a block. */
#define PANELS_ORDER_SLICES 4
typedef struct {
    uint32_t *rowptr, *col, *perm;
    float *val, *scale;
    int8_t *q;
} compress_panels_order; /* the reordered arrays */
typedef int (*compress_panels_steps_fn)(const compress_panels_src *a, size_t *n);
/* *out = a with its rows in that order (arrays in o; out->perm = o->perm), or
 * *out = *a when the order saves too little.  Returns 0 on allocation failure. */
int compress_panels_order_rows(const compress_panels_src *a, int slice_rows,
                               compress_panels_steps_fn steps, compress_panels_src *out,
                               compress_panels_order *o);
void compress_panels_order_free(compress_panels_order *o);

/* The batch-1 panels for the avx2 kernel level (panels_avx2.c): slices of
 * 8 rows, windows of 8 columns.  panels.c builds them in place of its
 * AVX-512 layout when kernels_isa() is avx2 and runs them through
 * compress_panels_spmv / _part.  NULL on allocation failure. */
typedef struct compress_panels8 compress_panels8;
compress_panels8 *compress_panels8_new(const compress_panels_src *a, kd_err *e);
int compress_panels8_steps(const compress_panels_src *a, size_t *n); /* steps new would lay out */
void compress_panels8_free(compress_panels8 *p);
size_t compress_panels8_bytes(const compress_panels8 *p);
int compress_panels8_cols(const compress_panels8 *p);
void compress_panels8_spmv_part(const compress_panels8 *p, const float *bias, const float *x,
                                float *y, int part, int nparts, int relu);

/* AVX2 + FMA batched kernels (csr_avx2.c): blocks of CSR_NB transposed
 * samples, one broadcast and four FMAs per non-zero.  Batch 1 falls back to
 * compress_csr_matmul_portable (vgatherdps lost to it). */
void compress_csr_matmul_avx2(const compress_csr *a, const float *bias, const float *x, float *y,
                              int n, float *scratch);

/* ---- qgemm: the scalar output stage, the one definition every SIMD epilogue
 * must reproduce bit for bit ---- */

/* The kernels on panels [pb, pe) only (rows 16 pb .. 16 pe - 1 that exist):
 * how a team splits one product across threads. */
void qgemm_run_part(qgemm_isa isa, const qgemm_packed *w, const int8_t *x, int n,
                    const qgemm_epi *ep, void *y, int pb, int pe);
void qgemm_scalar_part(const qgemm_packed *w, const int8_t *x, int n, const qgemm_epi *ep,
                       void *y, int pb, int pe);
void qgemm_avx2_part(const qgemm_packed *w, const int8_t *x, int n, const qgemm_epi *ep,
                     void *y, int pb, int pe);
void qgemm_avxvnni_part(const qgemm_packed *w, const int8_t *x, int n, const qgemm_epi *ep,
                        void *y, int pb, int pe);
void qgemm_vnni512_part(const qgemm_packed *w, const int8_t *x, int n, const qgemm_epi *ep,
                        void *y, int pb, int pe);

/* The AVX2 output stage for raw accumulators sum x w of rows r0 .. r0+7 of
 * sample i (AVX2 machines only); shared with the AVX-VNNI kernel. */
void qgemm_avx2_epilogue8(const qgemm_packed *p, const qgemm_epi *ep, const int32_t *raw,
                          int r0, int i, void *y);

/* acc + bias[r] - x_zero * row_sum, in two's-complement int32 (wrapping, as the
 * SIMD adds do; exact whenever the true value fits, e.g. k <= 65536). */
static inline int32_t qgemm_corrected(const qgemm_epi *ep, int32_t acc, int32_t row_sum, int r)
{
    uint32_t v = (uint32_t)acc - (uint32_t)ep->x_zero * (uint32_t)row_sum;
    if (ep->bias)
        v += (uint32_t)ep->bias[r];
    return (int32_t)v;
}

/* Writes output (i, r) of an n x m result from the raw accumulator. */
static inline void qgemm_store1(const qgemm_epi *ep, int32_t acc, int32_t row_sum, int r,
                                void *y, size_t idx)
{
    int32_t a = qgemm_corrected(ep, acc, row_sum, r);
    if (ep->out_f32) {
        float s = ep->x_scale * ep->w_scale[r];
        float v = (float)a * s;
        v = ep->fbias ? v + ep->fbias[r] : v;
        ((float *)y)[idx] = ep->relu && !(v > 0) ? 0.0f : v;
    } else {
        ((int8_t *)y)[idx] =
            (int8_t)quant_requant(a, ep->mult[r], ep->shift[r], ep->y_zero, ep->lo, ep->hi);
    }
}

#endif
