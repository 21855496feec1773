/* compress's private shared declarations; never included from outside compress/. */
#ifndef KD_COMPRESS_INTERNAL_H
#define KD_COMPRESS_INTERNAL_H

#include "compress.h"

/* Samples per block of the batched kernels (scratch is cols x CSR_NB). */
#define CSR_NB 32

/* A CSR of rows x cols with room for nnz entries, rowptr zeroed. */
compress_csr *compress_csr_alloc(int rows, int cols, uint32_t nnz, kd_err *e);
compress_csr *compress_csr_copy(const compress_csr *a, kd_err *e);
void compress_csr_transpose_block(const float *x, int cols, int nb, float *xt);

/* Runtime CPU dispatch: the AVX-512 kernels when the CPU has AVX-512F/BW. */
int compress_csr_have_avx512(void);
void compress_csr_matmul_avx512(const compress_csr *a, const float *bias, const float *x, float *y,
                                int n, float *scratch);

/* Is layer l a plain fp32 dense layer / conv2d (nn's own ops)? */
int compress_is_dense(const nn_layer *l);
int compress_is_conv(const nn_layer *l);
/* A prunable layer: dense or conv2d with fp32 weights. */
int compress_is_prunable(const nn_layer *l);

#endif
