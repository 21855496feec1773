/* kernels — compress's formats and their kernels, the one public header of
 * compress/kernels/: quantization parameters, calibration observers,
 * TFLite-style fixed-point requantization, int8 GEMM/GEMV (scalar reference,
 * AVX2, AVX-VNNI, AVX-512 VNNI, optional thread teams), dynamic int8, int4
 * weight-only, sparse CSR int8, fp32 CSR and its panels, fake-quant for QAT.
 *
 * No layer kinds and no file formats (those are compress/kinds/).  Every
 * format is a plain struct and every kernel has a scalar `_ref` twin that is
 * its specification; tests compare them.  Kernels dispatch at run time on the
 * one CPU probe (cpu.h: kernels_isa(), capped by KD_ISA).  Depends on util and
 * nn (its thread team); no global mutable state besides the probe's cache. */
#ifndef KD_COMPRESS_KERNELS_H
#define KD_COMPRESS_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "../../nn/nn.h"
#include "../../util/util.h"
#include "cpu.h"

/* ==== quantization parameters ============================================== */

/* An affine quantizer q = clamp(round(x / scale) + zero, qmin, qmax),
 * x ~ (q - zero) * scale.  round() is half away from zero. */
typedef struct {
    float scale;
    int32_t zero;
    int32_t qmin, qmax;
} quant_params;

typedef enum {
    QUANT_S8,  /* activations in [-128, 127] */
    QUANT_U8,  /* activations in [0, 255] */
} quant_type;

/* Asymmetric per-tensor parameters covering [lo, hi] (widened to include 0 so
 * that 0.0 is exact).  A degenerate range (lo == hi == 0) gives scale 1.
 * Non-finite bounds are treated as 0. */
quant_params quant_params_asym(float lo, float hi, quant_type t);

/* Symmetric int8 weight scales for an m x k row-major matrix: per_channel gives
 * scale[r] = max|w[r,:]| / 127 (one scale per output row), otherwise every
 * scale[r] is the tensor's max|w| / 127.  An all-zero row gets scale 1.
 * q receives round(w / scale[r]) clamped to [-127, 127] (never -128, so that the
 * AVX2 maddubs trick cannot saturate; see qgemm_avx2.c). */
void quant_weights_s8(const float *w, int m, int k, int per_channel, float *scale, int8_t *q);

/* q[i] = clamp(round(x[i] / p.scale) + p.zero, p.qmin, p.qmax) as int8 or
 * uint8, computed in float: the float quotient rounded half away from zero;
 * NaN gives qmin.  _ref is the specification; quant_quantize_s8 uses AVX2
 * when the CPU has it and gives identical results. */
void quant_quantize_s8_ref(const float *x, size_t n, quant_params p, int8_t *q);
void quant_quantize_s8(const float *x, size_t n, quant_params p, int8_t *q);
void quant_quantize_u8(const float *x, size_t n, quant_params p, uint8_t *q);
/* x[i] = (q[i] - p.zero) * p.scale */
void quant_dequantize_s8(const int8_t *q, size_t n, quant_params p, float *x);

/* Bias in int32 at scale s_in * w_scale[r]: round(b[r] / (s_in * w_scale[r])),
 * saturated to the int32 range. */
void quant_bias_s32(const float *b, int m, float s_in, const float *w_scale, int32_t *out);

/* ==== fixed-point requantization (TFLite / gemmlowp semantics) ============= */

/* M = mult * 2^(shift - 31) with mult in [2^30, 2^31) (or 0).  As TFLite's
 * QuantizeMultiplier: M < 2^-32 gives mult = 0 (every result is 0); M >= 2^31
 * saturates to shift 30, mult 2^31 - 1.  Returns KD_ECONFIG for M < 0 or NaN. */
int quant_multiplier(double m, int32_t *mult, int32_t *shift, kd_err *e);

/* SaturatingRoundingDoublingHighMul: round(a * b / 2^31) with ties toward
 * +infinity; the single overflow case a = b = INT32_MIN gives INT32_MAX.
 * Equal to (a*b + 2^30) >> 31 (arithmetic) for every other input. */
static inline int32_t quant_srdhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN)
        return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* RoundingDivideByPOT: x / 2^e rounded to nearest, ties away from zero; 0 <= e <= 31. */
static inline int32_t quant_rdbpot(int32_t x, int e)
{
    int32_t mask = (int32_t)(((int64_t)1 << e) - 1);
    int32_t rem = x & mask;
    int32_t thr = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (rem > thr ? 1 : 0);
}

/* MultiplyByQuantizedMultiplier: x * mult * 2^(shift-31) with TFLite's double
 * rounding.  A positive shift is applied first as a left shift that saturates
 * to the int32 range (TFLite lets it wrap, which is undefined behaviour). */
static inline int32_t quant_mul_by_mult(int32_t x, int32_t mult, int32_t shift)
{
    if (shift > 0) {
        int64_t v = (int64_t)x * ((int64_t)1 << shift);
        x = v > INT32_MAX ? INT32_MAX : v < INT32_MIN ? INT32_MIN : (int32_t)v;
    }
    return quant_rdbpot(quant_srdhm(x, mult), shift > 0 ? 0 : -shift);
}

/* The whole output stage: clamp(zero + mul_by_mult(acc), lo, hi). */
static inline int32_t quant_requant(int32_t acc, int32_t mult, int32_t shift, int32_t zero,
                                    int32_t lo, int32_t hi)
{
    int32_t v = quant_mul_by_mult(acc, mult, shift);
    int64_t y = (int64_t)v + zero;
    return y < lo ? lo : y > hi ? hi : (int32_t)y;
}

/* ==== calibration observers ================================================= */

/* Running min/max over every finite value seen (NaN and inf are skipped). */
typedef struct {
    float lo, hi;
    size_t count;
} quant_minmax;
void quant_minmax_init(quant_minmax *o);
void quant_minmax_update(quant_minmax *o, const float *x, size_t n);

/* A fixed-size histogram over [-range, range] whose range doubles (merging
 * bins pairwise) when a value falls outside, so memory stays nbins counters
 * however many batches are seen.  Also tracks the exact min and max. */
typedef struct {
    int nbins;
    double range;
    uint64_t *bins;
    uint64_t count;
    quant_minmax mm;
} quant_hist;
/* nbins a multiple of 4, >= 16; NULL with e filled on bad size or allocation failure. */
quant_hist *quant_hist_new(int nbins, kd_err *e);
void quant_hist_free(quant_hist *h);
void quant_hist_update(quant_hist *h, const float *x, size_t n);
/* The [lo, hi] that clips (1 - pct/100) of the mass off each tail, linearly
 * interpolated inside a bin and never wider than the observed min/max.
 * pct in (0, 100]; 100 gives the exact min/max.  Empty histogram: [0, 0]. */
void quant_hist_range(const quant_hist *h, double pct, float *lo, float *hi);

/* ==== int8 GEMM: Y = out(X(n x k) * W(m x k)^T + bias) ===================== */

/* What to do with each int32 accumulator acc[i][r] = sum_c x[i,c] * w[r,c].
 * acc' = acc + bias[r] - x_zero * row_sum[r]   (bias NULL = 0), then
 *   requantize: y = clamp(y_zero + mul_by_mult(acc', mult[r], shift[r]), lo, hi)
 *               written as int8;  lo = max(-128, y_zero) fuses ReLU;
 *   dequantize: y = acc' * x_scale * w_scale[r] + (fbias ? fbias[r] : 0) as float. */
typedef struct {
    const int32_t *bias;
    int32_t x_zero;
    int out_f32;
    const int32_t *mult, *shift;
    int32_t y_zero, lo, hi;
    const float *w_scale;
    float x_scale;
    const float *fbias;
    int relu; /* out_f32: y = max(0, y) (NaN -> 0), each part on its rows */
} qgemm_epi;

/* The specification: plain row-major W (m x k), X (n x k), Y (n x m) of int8
 * (requantize) or float (dequantize).  shift[r] in [-31, 30], mult[r] >= 0,
 * k <= QGEMM_KMAX; W's entries in [-127, 127] (the AVX2 kernel relies on it). */
void qgemm_ref(const int8_t *w, int m, int k, const int8_t *x, int n, const qgemm_epi *ep,
               void *y);

/* Packed weights for the fast kernels.  Rows come in panels of 16; a panel is
 * kp/4 blocks of 64 bytes, block g holding w[r][4g..4g+3] for its 16 rows r,
 * row-major inside the block (the VNNI dpbusd operand order).  m is padded to a
 * multiple of 16 and k to a multiple of 4 with zero weights; 64-byte aligned. */
typedef struct {
    int8_t q[16][4];
} qgemm_block;
_Static_assert(sizeof(qgemm_block) == 64, "qgemm block is one cache line");

typedef struct {
    int m, k;         /* logical shape */
    int mp, kp;       /* padded: mp = round_up(m, 16), kp = round_up(k, 4) */
    qgemm_block *w;   /* (mp / 16) panels of (kp / 4) blocks */
    int32_t *row_sum; /* mp entries: sum of row r's weights, 0 in padding rows */
} qgemm_packed;

/* Longest k: 65536 * 128 * 127 still fits the int32 accumulators. */
#define QGEMM_KMAX 65536
/* Packs a row-major m x k int8 matrix (k <= QGEMM_KMAX); NULL with e on bad
 * shape or no memory. */
qgemm_packed *qgemm_pack(const int8_t *w, int m, int k, kd_err *e);
void qgemm_packed_free(qgemm_packed *p);
/* Element (r, c) of the packed matrix (tests, portable kernel). */
static inline int8_t qgemm_packed_at(const qgemm_packed *p, int r, int c)
{
    return p->w[(size_t)(r / 16) * (p->kp / 4) + c / 4].q[r % 16][c % 4];
}

typedef enum {
    QGEMM_SCALAR = 0, /* portable C over the packed layout */
    QGEMM_AVX2,       /* sign trick + _mm256_maddubs_epi16 + _mm256_madd_epi16 */
    QGEMM_AVXVNNI,    /* 256-bit vpdpbusd (AVX-VNNI, e.g. Alder Lake) with the +128 offset */
    QGEMM_VNNI512,    /* _mm512_dpbusd_epi32 with the +128 activation offset */
    QGEMM_NISA
} qgemm_isa;

/* Whether the kernels may run isa now (the probe: the host capped by KD_ISA
 * and kernels_isa_force), and the fastest such one. */
int qgemm_isa_supported(qgemm_isa isa);
qgemm_isa qgemm_isa_best(void);
const char *qgemm_isa_name(qgemm_isa isa);

/* Y = out(X * W^T) with the packed W on the given kernel (must be supported).
 * n == 1 is the GEMV path.  X is n x k int8, Y n x m int8 or float per ep.
 * Single-threaded.  The VNNI kernel allocates 8 * kp bytes of scratch per
 * call when n >= 8 (without it, a slower path gives the same result). */
void qgemm_run(qgemm_isa isa, const qgemm_packed *w, const int8_t *x, int n,
               const qgemm_epi *ep, void *y);
void qgemm_scalar(const qgemm_packed *w, const int8_t *x, int n, const qgemm_epi *ep, void *y);
void qgemm_avx2(const qgemm_packed *w, const int8_t *x, int n, const qgemm_epi *ep, void *y);
void qgemm_avxvnni(const qgemm_packed *w, const int8_t *x, int n, const qgemm_epi *ep, void *y);
void qgemm_vnni512(const qgemm_packed *w, const int8_t *x, int n, const qgemm_epi *ep, void *y);

/* qgemm_run split across team t (nn's thread team) by panels of rows, so at
 * batch 1 every core keeps its share of the weights in its own cache.  It
 * pays only when the team's threads get cores of their own: on a machine
 * busy with other work it can be slower than one thread, so measure both.
 * t NULL (or of 1 thread) runs on the caller only. */
void qgemm_team_run(nn_team *t, qgemm_isa isa, const qgemm_packed *w, const int8_t *x, int n,
                    const qgemm_epi *ep, void *y);

/* ==== an int8 dense layer (static PTQ and dynamic) ========================= */

/* One dense layer y = act(x W^T + b) converted to int8: per-channel (or
 * per-tensor) symmetric weights, int32 bias, per-row requantization. */
typedef struct {
    int m, k;
    int8_t *w;          /* m x k row-major: the stored form */
    float *w_scale;     /* m */
    float *fbias;       /* m: the float bias, for dynamic and float-output use */
    int32_t *bias;      /* m: at scale in.scale * w_scale[r] */
    int32_t *mult, *shift;
    quant_params in, out;
    int relu;
    qgemm_packed *packed;
} quant_dense;

/* Quantizes w (m x k) and b (m, may be NULL) for input/output parameters in
 * and out (int8 ones: qmin -128, qmax 127).  relu fuses max(0, .) into the
 * clamp.  NULL with e on bad arguments or no memory. */
quant_dense *quant_dense_new(const float *w, const float *b, int m, int k, int per_channel,
                             quant_params in, quant_params out, int relu, kd_err *e);
/* The same from already-quantized data (e.g. a model file): copies wq (m x k,
 * in [-127, 127]), w_scale (m, finite > 0) and bias (m, at in.scale *
 * w_scale[r]; NULL = 0).  KD_EFORMAT on out-of-range data. */
quant_dense *quant_dense_from_q(const int8_t *wq, const float *w_scale, const int32_t *bias,
                                int m, int k, quant_params in, quant_params out, int relu,
                                kd_err *e);
void quant_dense_free(quant_dense *d);
/* The epilogue that requantizes to out (int8 Y), or dequantizes (float Y). */
qgemm_epi quant_dense_epi_s8(const quant_dense *d);
qgemm_epi quant_dense_epi_f32(const quant_dense *d);
/* y (n x m int8) = the layer on x (n x k int8, quantized with d->in), on
 * kernel isa, split across team (NULL: the calling thread only). */
void quant_dense_forward(const quant_dense *d, qgemm_isa isa, nn_team *team, const int8_t *x,
                         int n, int8_t *y);
/* y (n x m float logits) = dequantized accumulators + float bias. */
void quant_dense_forward_f32(const quant_dense *d, qgemm_isa isa, nn_team *team,
                             const int8_t *x, int n, float *y);

/* Dynamic int8: quantizes x (n x k float) per call with asymmetric int8
 * parameters from its min/max, runs the int8 GEMM and dequantizes with the
 * float bias (and ReLU when d->relu) into y (n x m float).  d->in and d->out
 * are ignored.  KD_ENOMEM when the scratch cannot be allocated. */
int quant_dynamic_forward(const quant_dense *d, qgemm_isa isa, nn_team *team, const float *x,
                          int n, float *y, kd_err *e);

/* ==== int4 weight-only ====================================================== */

/* IEEE half precision, stored as bits: the int4 group scale. */
uint16_t quant_f32_to_f16(float f); /* round to nearest even; saturates to +-65504 */
float quant_f16_to_f32(uint16_t h); /* exact, including subnormals, inf and NaN */

/* 32 weights of one row sharing an fp16 scale: w ~ d * (nibble - 8).  Byte j
 * holds weight j in its low nibble and weight j + 16 in its high nibble.
 * 18 bytes per 32 weights: 0.14x the fp32 bytes (a float scale would be 0.156x). */
#define QUANT_Q4_GROUP 32
typedef struct {
    uint16_t d; /* fp16 bits of the scale, >= 0 */
    uint8_t q[QUANT_Q4_GROUP / 2];
} quant_block_q4;
_Static_assert(sizeof(quant_block_q4) == 18, "q4 block");

/* The same bytes as eight blocks, regrouped for the q4x8 kernels: rows in
 * fours, groups in pairs.  Row t's nibbles of groups 2p and 2p+1 are q[t]
 * (16 bytes each, as in the blocks); d holds the 4 rows' scales of group
 * 2p, then of 2p+1, so that one 128-bit load gives all 8.  Rows past m and
 * a group past nb have nibbles 8 (weight 0) and scale 0. */
typedef struct {
    uint8_t q[4][QUANT_Q4_GROUP];
    uint16_t d[8];
} quant_q4_quad;
_Static_assert(sizeof(quant_q4_quad) == 8 * sizeof(quant_block_q4), "q4 quad");

typedef struct {
    int m, k;
    int nb;                 /* blocks per row: ceil(k / 32); padding weights are 0 */
    quant_block_q4 *blocks; /* m x nb: the stored form, the specification's input */
    /* ceil(m / 4) x ceil(nb / 2): the blocks regrouped for the q4x8 kernels
     * (a copy: the model holds the int4 bytes twice in memory, once on disk).
     * Built by quant_q4_pack and quant_q4_build_quads; NULL before, and then
     * the float kernels run.  Whoever changes blocks rebuilds it. */
    quant_q4_quad *quads;
    /* ceil(m / 8) x nb records of 128 bytes, and their scales (8 a record):
     * batch 1 on AVX2 without VNNI (q4x8.c's vert_panels), where summing a
     * quad's rows horizontally costs more than the products.  Built, rebuilt
     * and freed with quads (a third copy of the int4 bytes in memory). */
    uint8_t *vert;
    uint16_t *vert_d;
} quant_q4;

/* (Re)builds q->quads and q->vert from q->blocks.  KD_ENOMEM with e (quads
 * NULL, or vert NULL: the kernels then keep to the quads). */
int quant_q4_build_quads(quant_q4 *q, kd_err *e);

/* Quantizes a row-major m x k matrix: d = fp16(max|w| / 7) per group (kept in
 * fp16's normal range), nibble = clamp(round(w / d), -8, 7) + 8.  NULL with e
 * on bad shape or no memory. */
quant_q4 *quant_q4_pack(const float *w, int m, int k, kd_err *e);
/* The same format rounded by GPTQ (compress/kernels/quant_gptq.c): columns
 * in order, each rounding error pushed onto the columns not yet rounded
 * through the inverse of h (k x k, row-major: the layer inputs' Gram matrix
 * X^T X / n) damped by damp * mean(diag h), damp in (0, 1] (typically 0.01).
 * Group scales follow quant_q4_block on the updated weights; with act_order
 * the columns go by decreasing h_jj and the scales are fixed first, from w.
 * NULL with e on a bad shape or damping, no memory, or an h that stays
 * indefinite. */
quant_q4 *quant_q4_gptq(const float *w, int m, int k, const double *h, float damp, int act_order,
                        kd_err *e);
/* The one int4 group quantizer, shared by PTQ (quant_q4_pack) and QAT
 * (dense_fq's fake quant): len <= 32 weights into out (the rest are 0). */
void quant_q4_block(const float *w, int len, quant_block_q4 *out);
/* The first len weights of block b, dequantized: d * (nibble - 8). */
void quant_q4_block_dequant(const quant_block_q4 *b, int len, float *out);
void quant_q4_free(quant_q4 *q);
/* Writes the dequantized m x k matrix. */
void quant_q4_unpack(const quant_q4 *q, float *w);
/* y (n x m) = x (n x k float) * dequant(W)^T + (b ? b : 0). */
void quant_q4_gemm_ref(const quant_q4 *q, const float *x, int n, const float *b, float *y);
void quant_q4_gemm_avx2(const quant_q4 *q, const float *x, int n, const float *b, float *y);
/* The fastest supported: with AVX2, q4x8 at every batch (each sample's
 * activations rounded to int8 per 32-wide group, compress/kernels/q4x8.h:
 * within max|x_g| / 254 per weight of the float result; a sample's outputs
 * do not depend on the batch); without AVX2, or without q4x8's scratch, the
 * float specification (from 16 samples, 256-row panels dequantized to fp32
 * for OpenBLAS sgemm). */
void quant_q4_gemm(const quant_q4 *q, const float *x, int n, const float *b, float *y);
/* Rows [r0, r1) of quant_q4_gemm (y holds all m outputs per sample): the
 * same numbers, so threads may split the rows. */
void quant_q4_gemm_rows(const quant_q4 *q, const float *x, int n, const float *b, float *y,
                        int r0, int r1);
/* The same product in two steps, so that a team quantizes each sample's
 * activations once (split by samples) and then splits the rows: scratch of
 * quant_q4_prep_bytes(k, n) bytes, which is 0 when this level has no q4x8
 * (no AVX2, or k > 4096): then use quant_q4_gemm_rows.  Same bits as it.
 * q->quads must be built (as every attached layer's is). */
size_t quant_q4_prep_bytes(int k, int n);
void quant_q4_prep(const quant_q4 *q, const float *x, int i0, int i1, void *scratch);
void quant_q4_gemm_prepped(const quant_q4 *q, const void *scratch, int n, const float *b,
                           float *y, int r0, int r1);

/* ==== weight sharing (compress/kernels/cluster.c) ============================ */

#define CLUSTER_MAX 256
typedef enum { CLUSTER_INIT_LINEAR = 0, CLUSTER_INIT_KMEANSPP, CLUSTER_INIT_DENSITY } cluster_init;

/* One-dimensional k-means (Lloyd, to convergence or 100 iterations) of the n
 * finite values v into at most k in [2, 256] centroids, initialised evenly
 * over [min, max] (linear), by k-means++ (seeded) or at quantiles (density).
 * Writes the distinct centroids ascending and returns how many (<= k: empty
 * clusters are dropped); < 0 with e on bad arguments or no memory. */
int cluster_kmeans_1d(const float *v, size_t n, int k, cluster_init init, uint64_t seed,
                      float *centroids, kd_err *e);
/* The index of the centroid nearest v in c[0..k) ascending (ties: lower). */
int cluster_nearest(float v, const float *c, int k);

/* The distinct values of v[0..n) (sorted in place) into book, ascending,
 * when there are at most k of them; 0 otherwise. */
int cluster_distinct(float *v, size_t n, int k, float *book);

/* Entropy coding of a byte stream (zlib: Huffman only, as Deep Compression
 * codes its indices, or with LZ77 matches where they code smaller -- rows
 * pruned in blocks repeat their deltas): encode appends u32 n, u32 coded
 * length and the coded bytes (b->failed on no memory).  decode reads one stream from r into dst,
 * which must take exactly n bytes: another declared length, a stream past
 * r's end, corrupt data, an early or late end, or stray bytes are KD_EFORMAT
 * naming `what`. */
void entropy_encode(kd_buf *b, const void *src, size_t n);
int entropy_decode(kd_rd *r, void *dst, size_t n, const char *what, kd_err *e);

/* ==== sparse int8 (CSR) ===================================================== */

/* Non-zeros of a pruned m x k matrix as int8 with a symmetric scale per row,
 * columns delta-coded in one byte (as Deep Compression's relative indices):
 * entry j of row r (j in [row_ptr[r], row_ptr[r+1])) sits at column
 * col_j = col_{j-1} + delta[j], with col = 0 before a row's first entry, and
 * w[r, col_j] ~ scale[r] * val[j].  A gap over 255 columns is bridged by
 * filler entries of value 0, so an entry costs 2 bytes in memory (vs 5 with
 * int32 columns); files deflate the row lengths, deltas, values and scales
 * (kinds/dense_csr_q8.c), ~1.5 bytes per entry on the 90%-pruned MLP. */
typedef struct {
    int m, k;
    int32_t nnz;      /* stored entries, fillers included */
    int32_t *row_ptr; /* m + 1 */
    uint8_t *delta;   /* nnz */
    int8_t *val;      /* nnz */
    float *scale;     /* m */
} quant_csr;

/* Keeps the exact-zero entries out (an entry that rounds to 0 is kept with
 * value 0); NULL with e on bad shape or no memory. */
quant_csr *quant_csr_from_dense(const float *w, int m, int k, kd_err *e);
void quant_csr_free(quant_csr *c);
/* Bytes of the in-memory format (row_ptr, delta, val, scale); files store
 * less (deflate-coded, see kinds/dense_csr_q8.c). */
size_t quant_csr_bytes(const quant_csr *c);
/* y (n x m) = x (n x k float) * dequant(W)^T + (b ? b : 0). */
void quant_csr_gemm_ref(const quant_csr *c, const float *x, int n, const float *b, float *y);
/* Fast: from 16 samples on, transposes x into scratch (n x k floats) and runs
 * one vector axpy per entry; without scratch, the per-sample path. */
void quant_csr_gemm(const quant_csr *c, const float *x, int n, const float *b, float *y);
/* Its batched path at the avx2 kernel level (kernels/csr_avx2.c): blocks of
 * 32 transposed samples, one broadcast and four FMAs per entry; -1 (nothing
 * written) when its scratch cannot be allocated. */
int quant_csr_gemm_avx2(const quant_csr *c, const float *x, int n, const float *b, float *y);
/* Rows [r0, r1) of the batch-1 product (y holds all m outputs): the same
 * numbers as quant_csr_gemm at n = 1, so threads may split the rows. */
void quant_csr_gemv_rows(const quant_csr *c, const float *x, const float *b, float *y, int r0,
                         int r1);

/* ==== sparse int8 x int8 (csr-int8-static, csr-int8-dyn) ================== */

/* acc[r] = sum over row r's entries of val * xu[col] (exact int32), rows
 * [r0, r1): the specification of the panels below.  xu holds the k int8
 * activation codes + 128 as unsigned bytes (quant_csr_s8_codes); k <=
 * QGEMM_KMAX keeps the sums in range. */
void quant_csr_s8_ref(const quant_csr *q, const uint8_t *xu, int32_t *acc, int r0, int r1);
/* xu[i] = x[i] + 128 (the codes the kernels take). */
void quant_csr_s8_codes(const int8_t *x, size_t n, uint8_t *xu);

/* The output stage: y[r] = (float)(acc[r] - zr[r]) * cs[r] + (b ? b[r] : 0),
 * then max(y, 0) when relu, for rows [r0, r1).  zr[r] = (zero + 128) * (sum
 * of row r's values) mod 2^32 and the difference is taken mod 2^32: it is
 * sum(val * (x - zero)), within +-255 * 127 * QGEMM_KMAX, so exact.  A
 * multiply then an add (no FMA): the same bits at every kernel level. */
typedef struct {
    const int32_t *zr;
    const float *cs; /* s_in * scale[r] */
    const float *b;  /* or NULL */
    int relu;
} quant_csr_s8_epi;
void quant_csr_s8_out_ref(const quant_csr_s8_epi *ep, const int32_t *acc, float *y, int r0,
                          int r1);
void quant_csr_s8_out(const quant_csr_s8_epi *ep, const int32_t *acc, float *y, int r0, int r1);

/* The byte panels (quant_csr_s8.c: slices of 8 rows, windows of 16 columns,
 * up to 4 entries a row a step), run by an AVX2 kernel: the same sums as
 * the reference.  xu must be readable QUANT_CSR_S8_PAD bytes past its k
 * codes (layers under 16 columns read them; their values do not matter). */
#define QUANT_CSR_S8_WIN 16
#define QUANT_CSR_S8_PAD 16
typedef struct quant_csr_s8_panels quant_csr_s8_panels;
/* NULL with e: no memory, or k > QGEMM_KMAX. */
quant_csr_s8_panels *quant_csr_s8_panels_new(const quant_csr *q, kd_err *e);
void quant_csr_s8_panels_free(quant_csr_s8_panels *p);
size_t quant_csr_s8_panels_bytes(const quant_csr_s8_panels *p);
/* The rows [*r0, *r1) part `part` of nparts computes (about equal steps;
 * parts start on an even slice, so no two write one 64-byte line of acc). */
void quant_csr_s8_panels_rows(const quant_csr_s8_panels *p, int part, int nparts, int *r0,
                              int *r1);
/* acc[r] for those rows, for nx samples: sample i's codes at
 * xu + i xstride, its sums at acc + i astride.  The steps are read once for
 * every QUANT_CSR_S8_NX samples.  Only at kernel level avx2 and above. */
#define QUANT_CSR_S8_NX 4
void quant_csr_s8_panels_run(const quant_csr_s8_panels *p, const uint8_t *xu, size_t xstride,
                             int nx, int32_t *acc, size_t astride, int part, int nparts);

/* ==== fake-quant for QAT ===================================================== */

/* y = (clamp(round(x / s) + z, qmin, qmax) - z) * s, over rows x cols with
 * per-row scale[r] and zero[r] (per_row) or scale[0], zero[0] for all.
 * zero may be NULL (all 0).  y may alias x. */
void quant_fake_forward(const float *x, int rows, int cols, const float *scale,
                        const int32_t *zero, int per_row, int32_t qmin, int32_t qmax, float *y);
/* Straight-through estimator: dx = dy where round(x / s) + z lies in
 * [qmin, qmax], else 0.  Same parameter conventions; dx may alias dy. */
void quant_fake_backward(const float *x, const float *dy, int rows, int cols,
                         const float *scale, const int32_t *zero, int per_row, int32_t qmin,
                         int32_t qmax, float *dx);

/* QAT's per-step passes (fakequant.c), rows [r0, r1) of an m x k matrix at a
 * time so a layer can split them over its team; each dispatched kernel gives
 * the bits of its _ref.  absmax: mx[r] = max |w[r,:]| (NaN ignored, as
 * fmaxf).  fake_s8: out = clamp(round(w / scale[r]), -127, 127) * scale[r] in
 * double as quant_weights_s8 (NaN codes as 0).  fake_q4: each 32-group
 * through quant_q4_block and quant_q4_block_dequant.  act: quant_fake_forward
 * and quant_fake_backward over n values with one (scale, zero). */
void quant_absmax_rows_ref(const float *w, int k, int r0, int r1, float *mx);
void quant_absmax_rows(const float *w, int k, int r0, int r1, float *mx);
void quant_fake_s8_rows_ref(const float *w, int k, int r0, int r1, const float *scale, float *out);
void quant_fake_s8_rows(const float *w, int k, int r0, int r1, const float *scale, float *out);
void quant_fake_q4_rows_ref(const float *w, int k, int r0, int r1, float *out);
void quant_fake_q4_rows(const float *w, int k, int r0, int r1, float *out);
void quant_fake_act_forward(const float *x, size_t n, quant_params p, float *y);
void quant_fake_act_backward(const float *x, const float *dy, size_t n, quant_params p, float *dx);

/* ==== CSR matrices (fp32) ================================================== */
typedef struct {
    int rows, cols;
    uint32_t nnz;
    int idx_bytes;    /* 1, 2 or 4: the narrowest type holding cols - 1 */
    uint32_t *rowptr; /* rows + 1 offsets into val / col */
    float *val;       /* nnz values */
    void *col;        /* nnz column indices, idx_bytes each, ascending per row */
} compress_csr;

/* CSR of the non-zeros of w (rows x cols, row-major).  NULL on allocation
 * failure (e says so).  Free with compress_csr_free (accepts NULL). */
compress_csr *compress_csr_from_dense(const float *w, int rows, int cols, kd_err *e);
void compress_csr_free(compress_csr *a);
/* Column index k of a (whatever idx_bytes is). */
uint32_t compress_csr_col(const compress_csr *a, uint32_t k);
/* Sets column index k of a to c (< a->cols). */
void compress_csr_set_col(compress_csr *a, uint32_t k, uint32_t c);

/* Y (n x rows) = X (n x cols) A^T + bias, X and Y row-major; bias may be
 * NULL.  The reference kernel is the specification: one row at a time,
 * non-zeros in order, float accumulation. */
void compress_csr_matmul_ref(const compress_csr *a, const float *bias, const float *x, float *y,
                             int n);
/* Floats of scratch compress_csr_matmul needs for batches of n (0 for n == 1). */
size_t compress_csr_scratch(const compress_csr *a, int n);
/* The fast kernel: same result as the reference up to float reassociation
 * (|diff| <= 1e-5 * sum |a_ij x_j| per output).  Batch 1 is an unrolled
 * SpMV; batches transpose X in blocks into scratch (64-byte aligned, size
 * from compress_csr_scratch) and run every row over a block at once. */
void compress_csr_matmul(const compress_csr *a, const float *bias, const float *x, float *y, int n,
                         float *scratch);
/* The baseline-x86-64 fast kernel compress_csr_matmul runs on CPUs without
 * AVX-512 (exposed so tests and benchmarks cover it on any machine). */
void compress_csr_matmul_portable(const compress_csr *a, const float *bias, const float *x,
                                  float *y, int n, float *scratch);

/* The batch-1 layout for AVX2 and AVX-512 CPUs (panels.c; at the avx2
 * kernel level the 8-row layout of panels_avx2.c, which ignores the layout
 * argument): built from a CSR, it runs y = A x + bias without gathers.
 * Layers build it when they reserve their scratch, at the kernel level in
 * use then; the file keeps plain CSR.  compress_panels_new needs
 * compress_panels_supported() (the caller checks); NULL on allocation
 * failure.  AUTO stores values padded unless that exceeds 1 MB (then
 * compact), and at the AVX-512 level takes the 8-row layout where that
 * needs far fewer steps (rows pruned in blocks of 8); tests force each. */
typedef struct compress_panels compress_panels;
typedef enum {
    COMPRESS_PANELS_AUTO = 0,
    COMPRESS_PANELS_PADDED,
    COMPRESS_PANELS_COMPACT,
    /* or'ed with one of the above: rows in the file's order even where
     * sorting them by length would save steps (comparisons, tests) */
    COMPRESS_PANELS_FILE_ORDER = 8,
} compress_panels_layout;
int compress_panels_supported(void);
compress_panels *compress_panels_new(const compress_csr *a, compress_panels_layout layout,
                                     kd_err *e);
void compress_panels_free(compress_panels *p);
/* Bytes of p's arrays (what its batch-1 kernel reads). */
size_t compress_panels_bytes(const compress_panels *p);
/* 1 when p's slices take the rows sorted by non-zero count (kept where that
 * saves 3% of the steps: rows of uneven length, as a trained layer has). */
int compress_panels_row_ordered(const compress_panels *p);
void compress_panels_spmv(const compress_panels *p, const float *bias, const float *x, float *y);
/* Part `part` of nparts of the same product (rows cut where the parts get
 * about equal work): the parts of one product may run on different threads
 * at once, and together write all of y. */
void compress_panels_spmv_part(const compress_panels *p, const float *bias, const float *x,
                               float *y, int part, int nparts);
/* The same with relu != 0: y = max(0, A x + bias) (NaN -> 0, as nn's relu),
 * applied as each part stores its rows, so a ReLU after the layer costs no
 * pass of its own and no cache line changes core. */
void compress_panels_spmv_part_relu(const compress_panels *p, const float *bias, const float *x,
                                    float *y, int part, int nparts, int relu);

/* A CSR of rows x cols with room for nnz entries, rowptr zeroed. */
compress_csr *compress_csr_alloc(int rows, int cols, uint32_t nnz, kd_err *e);
compress_csr *compress_csr_copy(const compress_csr *a, kd_err *e);
/* Samples per block of the batched kernels (scratch is cols x CSR_NB). */
#define CSR_NB 32

/* The int8 panels of q (panels.c): y = scale * (Q x) + bias through
 * compress_panels_spmv / _part, the values kept int8.  Needs
 * compress_panels_supported(); NULL on allocation failure. */
compress_panels *compress_panels_new_q8(const quant_csr *q, kd_err *e);

/* ==== the range of a float array for dynamic int8 (minmax.c) ============== */
/* The smallest and largest finite value (NaN and +-inf are skipped, as
 * quant_minmax_update does).  *lo and *hi are updated in place: start them
 * at +inf and -inf; they stay so when nothing is finite.  Equal as numbers
 * to the reference (a zero's sign may differ: no quantizer tells them apart). */
void kernels_minmax_ref(const float *x, size_t n, float *lo, float *hi);
void kernels_minmax_avx2(const float *x, size_t n, float *lo, float *hi);
/* The fastest for kernels_isa(). */
void kernels_minmax(const float *x, size_t n, float *lo, float *hi);
/* The same split across team t (NULL: the caller) when n is large enough
 * for the hand-off to pay. */
void kernels_minmax_team(nn_team *t, const float *x, size_t n, float *lo, float *hi);

#endif
