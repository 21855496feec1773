/* lowbit — 2-, 3- and 4-bit weights with a per-group fp16 scale (issue 17).
 *
 * The format: every row of an m x k matrix in groups of QUANT_QL_GROUP (32)
 * weights along k; a group is one fp16 scale d >= 0 and 32 signed levels q in
 * [-2^(b-1), 2^(b-1) - 1] (LSQ's Qn, Qp for signed weights), w ~ d * q.  A
 * level is stored as the unsigned code c = q + 2^(b-1) in bit planes, so that
 * AVX2 decodes a group with one variable shift and one mask per plane:
 *   plane A, 8 bytes: byte j holds bits 0-1 of the codes of weights j, j+8,
 *     j+16, j+24 in its bit pairs 0-1, 2-3, 4-5, 6-7;
 *   3 bits: plane H, 4 bytes: bit j (byte j/8, bit j%8) is bit 2 of code j;
 *   4 bits: plane B, 8 bytes laid out as A: bits 2-3 of the codes.
 * Weights past k are q = 0 (code 2^(b-1)); a loader refuses anything else.
 * Bytes per 32 weights: 2 + 4b, i.e. 2.5 (2 bits), 3.5 (3 bits) bits/weight.
 *
 * The kernels: quant_ql_gemm_ref is the float specification.  With AVX2 a
 * batch below QUANT_QL_PANEL_N runs on int8 arithmetic as q4x8 does (each
 * sample's activations rounded per 32-wide group to int8, q4x8.h), codes
 * decoded to bytes and multiplied by maddubs; quant_ql_rows_ref is that
 * path's specification.  Larger batches (and every batch at the scalar
 * level) dequantize 256-row panels for sgemm. */
#ifndef KD_COMPRESS_KERNELS_LOWBIT_H
#define KD_COMPRESS_KERNELS_LOWBIT_H

#include "kernels.h"

#define QUANT_QL_GROUP 32
#define QUANT_QL_PANEL_N 16
/* Bytes of one group's codes at b bits (2, 3, 4): 8, 12, 16. */
#define QUANT_QL_CODE_BYTES(b) ((b) * QUANT_QL_GROUP / 8)

typedef struct quant_ql {
    int bits;      /* 2, 3 or 4 */
    int m, k, nb;  /* nb = ceil(k / 32) groups per row */
    uint16_t *d;   /* m * nb fp16 scales, finite and >= 0 */
    uint8_t *code; /* m * nb * QUANT_QL_CODE_BYTES(bits) */
} quant_ql;

/* The signed range of b bits: qn = 2^(b-1) levels below zero, qp = 2^(b-1) - 1 above. */
static inline int quant_ql_qn(int bits) { return 1 << (bits - 1); }
static inline int quant_ql_qp(int bits) { return (1 << (bits - 1)) - 1; }

/* 32 levels (each in the bits' range) into a group's code bytes, and back. */
void quant_ql_encode(const int8_t *q, int bits, uint8_t *code);
void quant_ql_decode(const uint8_t *code, int bits, int8_t *q);

/* The one low-bit group quantizer, shared by PTQ and LSQ's deployment:
 * len <= 32 weights into *d and code (levels past len are 0).  step > 0
 * quantizes with that step (rounded to fp16 first: what is stored is what
 * is simulated); step <= 0 picks the scale of least squared error among
 * max|w| * t / qn, t in [0.30, 2.00] by 0.05 (round-to-nearest levels). */
void quant_ql_block(const float *w, int len, int bits, float step, uint16_t *d, uint8_t *code);

/* An m x k matrix (bits 2, 3 or 4): scales 0, every code the zero level.
 * NULL with e on a bad shape or bits, or no memory. */
quant_ql *quant_ql_new(int bits, int m, int k, kd_err *e);
/* Quantizes row-major w with quant_ql_block per group (step as there). */
quant_ql *quant_ql_pack(const float *w, int m, int k, int bits, float step, kd_err *e);
quant_ql *quant_ql_copy(const quant_ql *q, kd_err *e);
void quant_ql_free(quant_ql *q);
/* The dequantized m x k matrix. */
void quant_ql_unpack(const quant_ql *q, float *w);
/* Whether a loaded q is well formed: scales finite and >= 0, padding codes
 * at the zero level.  0 when not. */
int quant_ql_valid(const quant_ql *q);

/* y (n x m) = x (n x k) * dequant(W)^T + (b ? b : 0): the specification. */
void quant_ql_gemm_ref(const quant_ql *q, const float *x, int n, const float *b, float *y);
/* Rows [r0, r1) of one sample from its q4x8-quantized activations (xq, dx,
 * corr as q4x8_quantize_ref writes them): integer group sums, then
 * y[r] = b[r] + sum_g d_rg * (dx_g * sum_j c_rgj xq_j - corr_g * qn / 8). */
void quant_ql_rows_ref(const quant_ql *q, const int8_t *xq, const float *dx, const float *corr,
                       const float *b, float *y, int r0, int r1);
void quant_ql_rows_avx2(const quant_ql *q, const int8_t *xq, const float *dx, const float *corr,
                        const float *b, float *y, int r0, int r1);
/* Row r dequantized into out[0..k) (AVX2). */
void quant_ql_row_f32_avx2(const quant_ql *q, int r, float *out);
/* The fastest for kernels_isa(): rows [r0, r1) of y (n x m) for all n
 * samples (threads may split the rows).  At the avx2 level and n below
 * QUANT_QL_PANEL_N with k <= 4096 the int8 path (within max|x_g| / 254 per
 * weight of the float result), else 256-row dequantized panels and sgemm
 * (the float specification up to summation order; if the panel cannot be
 * allocated, the reference). */
void quant_ql_gemm_rows(const quant_ql *q, const float *x, int n, const float *b, float *y,
                        int r0, int r1);

#endif
