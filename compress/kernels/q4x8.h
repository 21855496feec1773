/* q4x8 — the int4 weight-only product at small batches on int8 arithmetic
 * (as ggml's Q4_0 x Q8_0): each sample's activations are quantized per
 * 32-wide group along k to int8 with a float scale, so that a block of 32
 * nibbles meets its 32 activations in one u8 x s8 multiply-add instead of
 * 32 int->float conversions.
 *
 * What it computes (the specification is the _ref functions):
 *   dx_g   = max|x[g]| / 127 (0 for an all-zero group),
 *   xq[j]  = round_half_even(x[j] * (127 / max|x[g]|)) in [-127, 127],
 *   corr_g = 8 * dx_g * sum_g xq  (the -8 of every nibble, folded out),
 *   y[r]   = b[r] + sum_g d_rg * (dx_g * sum_j nib_rgj * xq_j - corr_g).
 * Against the float specification quant_q4_gemm_ref it differs by at most
 * sum_g d_rg * dx_g / 2 * sum_j |nib_rgj - 8| (each |x - dx * xq| <= dx / 2)
 * plus float rounding: tests/compress/test_q4x8.c checks that bound. */
#ifndef KD_COMPRESS_KERNELS_Q4X8_H
#define KD_COMPRESS_KERNELS_Q4X8_H

#include "kernels.h"

/* Quantizes one sample x[0..k) into nb = ceil(k / 32) groups: xq (nb * 32
 * bytes, zero past k), dx and corr (nb floats each). */
void q4x8_quantize_ref(const float *x, int k, int8_t *xq, float *dx, float *corr);
void q4x8_quantize_avx2(const float *x, int k, int8_t *xq, float *dx, float *corr);

/* Rows [r0, r1) of one sample's output y (indexed by row) from its
 * quantized activations: the specification. */
void q4x8_rows_ref(const quant_q4 *q, const int8_t *xq, const float *dx, const float *corr,
                   const float *b, float *y, int r0, int r1);

/* The AVX2 GEMM: the n samples' activations are quantized once into records
 * laid out for the kernel (q4x8_prep_bytes(q, n) bytes), then chunks of
 * rows x sample tiles decode each pair of groups once per tile of 4 rows
 * (one quant_q4_quad) x 4 samples.  Per row and group, exactly the integer
 * sum of the specification (the -8 correction folded out in integers, not
 * floats), converted once and scaled by d * dx; the float steps differ from
 * q4x8_rows_ref in order only.  A sample's outputs are the same bits
 * whatever the batch around it and whatever the row range.  Needs q->quads
 * (quant_q4_build_quads). */
typedef struct q4x8_pair q4x8_pair;
size_t q4x8_prep_bytes(const quant_q4 *q, int n);
/* Samples [i0, i1) of x into p (laid out for all n); -1 without scratch. */
int q4x8_prep_avx2(const quant_q4 *q, const float *x, int i0, int i1, q4x8_pair *p);
/* Rows [r0, r1) of y (n x m) from prepared samples (q->quads built). */
void q4x8_gemm_prepped_avx2(const quant_q4 *q, const q4x8_pair *p, int n, const float *b,
                            float *y, int r0, int r1);

/* Rows [r0, r1) of y (n x m) = x (n x k) * dequant(W)^T + b through q4x8 on
 * the AVX2 kernels (the caller checks the CPU: AVX2, FMA, F16C): prep, then
 * the GEMM.  -1 (nothing written) when q->quads is NULL or the scratch
 * cannot be allocated (at batch 1 with k <= 4096 it lives on the stack). */
int q4x8_gemm_rows_avx2(const quant_q4 *q, const float *x, int n, const float *b, float *y,
                        int r0, int r1);

#endif
