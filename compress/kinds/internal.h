/* The kinds' private shared declarations; never included from outside
 * compress/kinds/. */
#ifndef KD_COMPRESS_KINDS_INTERNAL_H
#define KD_COMPRESS_KINDS_INTERNAL_H

#include "../internal.h"

/* Setup of a dense-shaped quantized kind: weights in the payload, the bias
 * in the flat parameters when bias != 0. */
int compress_qsetup(nn_layer *l, int bias, kd_err *e);
/* Inference-only backward: bias gradient (when the bias is flat), dx = 0. */
void compress_qbackward(nn_layer *l, const float *x, const float *y, const float *dy, float *dx,
                        int n, const nn_ctx *c);
double compress_qmacs(const nn_layer *l);
void compress_qrelease(nn_layer *l); /* kd_free(l->priv) */
/* ops->copy through the payload: src's save read back by dst's load (the
 * kinds whose payload has no copy of its own: csr-int8, csr-int8-static,
 * csr-int8-dyn). */
int compress_copy_via_payload(nn_layer *dst, const nn_layer *src, kd_err *e);

/* dense_csr's runtime (l->data a compress_csr, the bias flat), shared with
 * dense_csr_shared, whose layers are such a CSR whose values come from a
 * small codebook and differ only in how they are stored (dense_csr.c). */
/* The fused ReLU (nn_ctx.relu, ops->fuses_relu) on what one part wrote:
 * y[i * m + r] = y > 0 ? y : 0 (NaN -> 0, as nn's relu) for samples
 * [0, n) and rows [r0, r1). */
static inline void compress_relu_rows(float *y, int n, int m, int r0, int r1)
{
    for (int i = 0; i < n; i++)
        for (float *v = y + (size_t)i * m + r0, *e = v + (r1 - r0); v < e; v++)
            *v = *v > 0 ? *v : 0.0f;
}

int kcsr_setup(nn_layer *l, kd_err *e);
int kcsr_reserve(nn_layer *l, int max_batch, kd_err *e);
void kcsr_release(nn_layer *l);
void kcsr_forward(nn_layer *l, const float *x, float *y, int n, const nn_ctx *c);
void kcsr_backward(nn_layer *l, const float *x, const float *y, const float *dy, float *dx,
                   int n, const nn_ctx *c);
double kcsr_macs(const nn_layer *l);
int kcsr_copy(nn_layer *dst, const nn_layer *src, kd_err *e);
void kcsr_destroy(nn_layer *l);
void kcsr_count(const nn_layer *l, size_t *weights, size_t *nonzero);
void kcsr_dequant(const nn_layer *l, float *w);
/* A CSR's checks on load: offsets span the non-zeros in order, columns
 * ascend within a row below cols, values finite (KD_EFORMAT naming it). */
int kcsr_valid(const compress_csr *a, kd_err *e);

/* A CSR's columns as a byte stream, rows in groups of h with the same
 * columns (csr_structure.c, which has the format).  group_rows: the largest
 * h <= KCSR_GROUP_MAX whose aligned groups share their columns (1 when
 * none).  put appends a's structure (KD_ENOMEM when st failed); get fills
 * a's offsets and columns (a allocated for its nnz) from st[0..n), every
 * count, gap and column checked, KD_EFORMAT naming the row. */
#define KCSR_GROUP_MAX COMPRESS_BLOCK_MAX
int kcsr_group_rows(const compress_csr *a);
int kcsr_structure_put(const compress_csr *a, int h, kd_buf *st);
int kcsr_structure_get(compress_csr *a, int h, const uint8_t *st, size_t n, kd_err *e);

/* csr-int8's payload (dense_csr_q8.c), shared with csr-int8-static
 * (dense_csr_s8.c): put appends rows x cols entries in their deflate
 * streams; get reads and checks them (KD_EFORMAT naming what is wrong),
 * leaving r after the payload (the caller refuses stray bytes). */
void compress_qcsr_put(const quant_csr *q, int rows, int cols, kd_buf *b);
int compress_qcsr_get(kd_rd *r, int rows, int cols, quant_csr **out, kd_err *e);
/* The first row of part `part` of nparts when a layer's rows are split
 * into parts of about equal entries (the first row r with row_ptr[r] >=
 * nnz * part / nparts). */
int compress_qcsr_row_start(const quant_csr *q, int part, int nparts);
/* Their ops' count (entries that are not 0) and dequant (scale * value) of
 * layer l whose payload holds q (NULL: none yet). */
void compress_qcsr_count(const quant_csr *q, const nn_layer *l, size_t *weights, size_t *nonzero);
void compress_qcsr_dequant(const quant_csr *q, const nn_layer *l, float *w);
#endif
