/* compress's private shared declarations; never included from outside compress/. */
#ifndef KD_COMPRESS_INTERNAL_H
#define KD_COMPRESS_INTERNAL_H

#include "compress.h"
#include "quant.h"

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

/* The int8 panels of q (panels.c): y = scale * (Q x) + bias through
 * compress_panels_spmv / _part, the values kept int8.  Needs
 * compress_panels_supported(); NULL on allocation failure. */
compress_panels *compress_panels_new_q8(const quant_csr *q, kd_err *e);

/* The batch-1 panels for the avx2 kernel level (kernels/panels_avx2.c):
 * slices of 8 rows, panels of 8 columns.  panels.c builds them in place of
 * its AVX-512 layout when kernels_isa() is avx2, from a compress_csr (a) or
 * decoded int8 entries (col, q, with scale), and runs them through
 * compress_panels_spmv / _part.  NULL on allocation failure. */
typedef struct compress_panels8 compress_panels8;
typedef struct {
    int rows, cols;
    const uint32_t *rowptr;
    const compress_csr *a; /* fp32 values and columns, or NULL */
    const uint32_t *col;   /* int8 flavour: columns, */
    const int8_t *q;       /* values */
    const float *scale;    /* and rows row scales */
} compress_panels8_src;
compress_panels8 *compress_panels8_new(const compress_panels8_src *a, kd_err *e);
void compress_panels8_free(compress_panels8 *p);
size_t compress_panels8_bytes(const compress_panels8 *p);
void compress_panels8_spmv_part(const compress_panels8 *p, const float *bias, const float *x,
                                float *y, int part, int nparts);

/* AVX2 + FMA batched kernels (kernels/csr_avx2.c): blocks of CSR_NB
 * transposed samples, one broadcast and four FMAs per non-zero.  Batch 1
 * falls back to compress_csr_matmul_portable (vgatherdps lost to it). */
void compress_csr_matmul_avx2(const compress_csr *a, const float *bias, const float *x, float *y,
                              int n, float *scratch);

/* Is layer l a plain fp32 dense layer / conv2d (nn's own ops)? */
int compress_is_dense(const nn_layer *l);
int compress_is_conv(const nn_layer *l);
/* A prunable layer: dense or conv2d with fp32 weights. */
int compress_is_prunable(const nn_layer *l);

/* ---- quantized dense kinds (layer_q8.c, layer_q4.c, layer_qcsr.c, layer_fq.c) ---- */
/* The payload of dense_q8 / dense_dq8: the int8 layer and whether it
 * requantizes to int8 (1) or dequantizes to float (0). */
typedef struct {
    quant_dense *d;
    int out_s8;
} compress_q8;
/* The payload of dense_fq: what its forward simulates. */
typedef struct {
    int wbits;       /* 8 or 4 */
    int per_channel; /* 8 bits: per output row (1) or per tensor */
    int act;         /* COMPRESS_FQ_ACT_* */
} compress_fq;
enum { COMPRESS_FQ_ACT_NONE = 0, COMPRESS_FQ_ACT_STATIC = 1, COMPRESS_FQ_ACT_DYNAMIC = 2 };
/* dense_fq's buffers: EMA low, high, and 1 once a batch was seen. */
enum { COMPRESS_FQ_LO = 0, COMPRESS_FQ_HI = 1, COMPRESS_FQ_SEEN = 2, COMPRESS_FQ_NBUF = 3 };

/* Setup of a dense-shaped quantized kind: weights in the payload, the bias
 * in the flat parameters when bias != 0. */
int compress_qsetup(nn_layer *l, int bias, kd_err *e);
/* Inference-only backward: bias gradient (when the bias is flat), dx = 0. */
void compress_qbackward(nn_layer *l, const float *x, const float *y, const float *dy, float *dx,
                        int n, const nn_ctx *c);
double compress_qmacs(const nn_layer *l);
void compress_qrelease(nn_layer *l); /* kd_free(l->priv) */
/* Sets l's payload (dense_q8 or dense_dq8) to d, taken even on failure. */
int compress_q8_attach(nn_layer *l, quant_dense *d, int out_s8, kd_err *e);
/* The same for dense_q4 / dense_csr_q8 / dense_fq payloads. */
int compress_q4_attach(nn_layer *l, quant_q4 *q, kd_err *e);
int compress_qcsr_attach(nn_layer *l, quant_csr *q, kd_err *e);
int compress_fq_attach(nn_layer *l, compress_fq f, kd_err *e);
/* The fake-quantized weights of a dense_fq layer (m x k) into w. */
void compress_fq_weights(const nn_layer *l, float *w);
/* Any dense-shaped layer (dense, dense_csr and the quantized kinds). */
int compress_is_dense_like(const nn_layer *l);
/* Copies src's flat parameters, buffers and payload (when dst has the same
 * sizes and kind) into dst. */
int compress_copy_layer(nn_layer *dst, const nn_layer *src, kd_err *e);
/* Its weights as it computes with them (dequantized), units x fan_in floats. */
void compress_layer_weights(const nn_layer *l, float *w);

#endif
