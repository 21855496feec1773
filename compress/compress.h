/* compress — pruning passes and compressed layer kinds.
 *
 * Kinds: "dense_csr" (format "csr-fp32") stores a pruned dense layer as CSR
 * with fp32 values and the narrowest column index type that fits.  nn never
 * includes this header: callers pass compress_kinds() to nn_model_load_with.
 *
 * Quantized kinds (see "quantization" below): "dense_q8" (int8, static),
 * "dense_dq8" (int8, dynamic), "dense_q4" (int4 weight-only), "dense_csr_q8"
 * (sparse int8) and "dense_fq" (fake-quant, for QAT), with compress_quantize,
 * compress_qat_prepare and reports (weight bits, weights_hist.csv).
 *
 * Passes: unstructured magnitude pruning (layer-wise or one global
 * threshold, per-layer overrides by name or glob) with masks that keep pruned
 * weights at zero during fine-tuning; the AGP cubic schedule and a gradual
 * pruning driver over train_fit; structured pruning of dense neurons and conv
 * filters that returns a physically smaller model; sensitivity analysis.
 * Depends on util, nn, data, train. */
#ifndef KD_COMPRESS_H
#define KD_COMPRESS_H

#include <stdint.h>

#include "../data/data.h"
#include "../nn/nn.h"
#include "../train/train.h"
#include "kernels/kernels.h"

/* ---- compressed layer kinds ---------------------------------------------- */
extern const nn_layer_ops compress_dense_csr_ops;
/* compress's kinds for nn_model_load_with / nn_model_deserialize_with;
 * *n (when not NULL) gets their count.  A constant table: do not free. */
const nn_layer_ops *const *compress_kinds(int *n);
/* nn_model_load_with(path, compress_kinds) */
nn_model *compress_model_load(const char *path, kd_err *e);
/* The CSR matrix of a dense_csr layer or a shared-weights one (whose values
 * are codebook entries): a view; NULL for other kinds or an empty layer. */
const compress_csr *compress_layer_csr(const nn_layer *l);
/* The int8 entries of a csr-int8, csr-int8-static or csr-int8-dyn layer: a view; NULL for
 * other kinds or an empty layer. */
const quant_csr *compress_layer_qcsr(const nn_layer *l);
/* The bytes of a's dense_csr payload in a model file (header, structure and
 * values: what ops->save writes for it). */
size_t compress_csr_stored_bytes(const compress_csr *a);

/* ---- dense -> CSR conversion by measured speed ------------------------- */
typedef enum {
    COMPRESS_SPARSE_MEASURE = 0, /* CSR where faster at batch 1 AND batch 256 */
    COMPRESS_SPARSE_ALWAYS,      /* every dense layer (tests, file-size studies) */
    COMPRESS_SPARSE_NEVER,
    COMPRESS_SPARSE_SMALLER,     /* CSR where its bytes are fewer than the dense layer's */
    COMPRESS_SPARSE_LATENCY,     /* CSR where faster at batch 1 (batch 256 may be slower) */
} compress_sparse_policy;

typedef struct {
    compress_sparse_policy policy;
    int reps; /* timed repetitions per layer and batch size (default 20) */
} compress_sparse_opts;

/* MEASURE and LATENCY time each form in COMPRESS_SPARSE_ROUNDS interleaved
 * rounds (best of reps / rounds calls per round, median over the rounds), so
 * a busy moment cannot decide alone.  A CSR that stores fewer bytes than the
 * dense layer is kept unless dense is faster by more than
 * COMPRESS_SPARSE_MARGIN; a CSR that does not must be faster. */
#define COMPRESS_SPARSE_ROUNDS 5
#define COMPRESS_SPARSE_MARGIN 0.10

/* What was decided for one layer (only dense layers are filled; others
 * have converted = 0 and zero times). */
typedef struct {
    int converted;
    double sparsity;                  /* fraction of weights that are zero */
    double dense_us[2], sparse_us[2]; /* median forward time at batch 1, batch 256 */
    char why[96];                     /* the reason, e.g. "CSR 1.31x slower at batch 256" */
} compress_choice;

/* A new model equal to m except that dense layers become dense_csr where the
 * policy says so.  choices (m->nlayers entries, may be NULL) gets the
 * decision per layer.  m is not changed (its scratch may be reserved). */
nn_model *compress_to_sparse(nn_model *m, const compress_sparse_opts *o, compress_choice *choices,
                             kd_err *e);

/* ---- unstructured magnitude pruning -------------------------------------- */
/* A layer name or fnmatch(3) glob and the sparsity for the layers it matches;
 * the last matching override wins. */
typedef struct {
    char pattern[64];
    float sparsity;
} compress_override;

typedef enum { COMPRESS_LAYERWISE = 0, COMPRESS_GLOBAL } compress_scope;

/* Prunable layers are dense and conv2d weights (never biases or batchnorm).
 * LAYERWISE: each prunable layer loses round(s * weights) of its smallest
 * |w|.  GLOBAL: one threshold over all prunable layers not named by an
 * override (round(s * their weights) in all); overridden layers are pruned
 * layer-wise at their own sparsity.  Ties are broken by position, so the
 * number of zeros is exactly the one requested. */
/* block > 1: weights are pruned in blocks of `block` consecutive rows (output
 * units) of one column, scored by their root mean square (single weights
 * by |w|); round(s * blocks) whole
 * blocks go (the last row-block of a layer may be shorter).  A block of 8
 * rows is one step of the AVX2 batch-1 panels (16 of the AVX-512 ones), so
 * each step holds 8 non-zeros instead of ~4 (compress/kernels/panels_avx2.c). */
#define COMPRESS_BLOCK_MAX 64
typedef struct {
    compress_scope scope;
    float sparsity; /* [0, 1) */
    int block;      /* rows per block; 0 or 1: single weights */
    const compress_override *overrides;
    int noverrides;
} compress_prune_spec;

/* Checks sparsities in [0, 1) and that every override matches a prunable
 * layer of m (KD_ECONFIG naming the pattern otherwise). */
int compress_prune_check(const nn_model *m, const compress_prune_spec *s, kd_err *e);
/* The sparsity s gives layer i (-1 if i is not prunable). */
float compress_layer_sparsity(const nn_model *m, const compress_prune_spec *s, int i);

/* A mask over m->params: keep[i] = 0 for a pruned parameter. */
typedef struct {
    size_t n;
    uint8_t *keep;
} compress_mask;
/* All ones over m's parameters; NULL on allocation failure. */
compress_mask *compress_mask_new(const nn_model *m, kd_err *e);
/* A copy of k; NULL on allocation failure. */
compress_mask *compress_mask_copy(const compress_mask *k, kd_err *e);
void compress_mask_free(compress_mask *k);
/* Zeroes the pruned parameters of m (call after every optimiser step). */
void compress_mask_apply(const compress_mask *k, nn_model *m);

/* Prunes m in place to s (checked first); mask (may be NULL) is set to the
 * result (previously pruned weights are zero, so they stay pruned). */
int compress_prune_magnitude(nn_model *m, const compress_prune_spec *s, compress_mask *mask,
                             kd_err *e);

/* ---- gradual pruning (AGP, Zhu & Gupta 2017) ----------------------------- */
/* s_t = s_f + (s_i - s_f) (1 - t/n)^3, t clamped to [0, n]; n <= 0 gives s_f. */
float compress_agp(float s_i, float s_f, double t, double n);

typedef struct {
    compress_prune_spec prune; /* the final sparsities (and scope, overrides) */
    float initial_sparsity;    /* s_i (0 = start dense) */
    int prune_epochs;          /* the ramp lasts this many epochs (<= o->epochs) */
    int every;                 /* prune every this many optimiser steps (0 = a
                                  hundredth of the ramp; the mask holds between) */
} compress_agp_spec;

/* Fine-tunes m with train_fit for o->epochs while raising every layer's
 * sparsity from s_i to its final value on the AGP schedule over the first
 * prune_epochs epochs (then fixed); the mask is applied after every step so
 * pruned weights stay zero.  h may be NULL (its loss and callbacks are kept).
 * mask (may be NULL) gets the final mask.  Ends at exactly the final sparsity. */
int compress_prune_gradual(nn_model *m, const compress_agp_spec *g, const train_opts *o,
                           const data_set *tr, const data_set *val, const train_hooks *h,
                           compress_mask *mask, kd_err *e);

/* ---- structured pruning ---------------------------------------------------- */
typedef enum { COMPRESS_NORM_L1 = 1, COMPRESS_NORM_L2 = 2 } compress_norm;
/* What structured pruning removes (may be or-ed). */
typedef enum { COMPRESS_NEURONS = 1, COMPRESS_FILTERS = 2 } compress_units;

/* A new, smaller model: from every dense layer (units has NEURONS) and conv2d
 * layer (units has FILTERS) whose output feeds another dense or conv2d
 * layer, removes round(s * units) neurons (filters) of smallest L1/L2 weight
 * norm (at least one stays), and removes the matching inputs of the next
 * dense/conv2d layer and channels of any batchnorm between (through relu,
 * dropout, maxpool2d, flatten).  m is not changed.  KD_ECONFIG errors:
 * s->scope GLOBAL; no layer of the selected kind can shrink (filter pruning
 * on an MLP); an override that matches no layer of the selected kind, or
 * names one that cannot shrink (the output layer) with a sparsity > 0. */
nn_model *compress_prune_structured(const nn_model *m, const compress_prune_spec *s,
                                    compress_units units, compress_norm norm, kd_err *e);

/* ---- sensitivity analysis ---------------------------------------------------- */
typedef struct {
    char layer[32];
    float sparsity;
    double accuracy;
} compress_sens_row;

/* For each prunable layer alone and each sparsity, the accuracy on d of a
 * copy of m with that layer magnitude-pruned.  *rows (kd_free it) gets
 * nprunable * ns rows, layer by layer. */
int compress_sensitivity(const nn_model *m, const data_set *d, const float *sparsities, int ns,
                         compress_sens_row **rows, int *nrows, kd_err *e);
/* RUN_DIR/sensitivity.csv: layer,sparsity,accuracy (atomic). */
int compress_write_sensitivity_csv(const char *run_dir, const compress_sens_row *rows, int n,
                                   kd_err *e);
/* RUN_DIR/sparsity.csv: variant,layer,params,nonzero for every layer with
 * weights of every model (atomic). */
int compress_write_sparsity_csv(const char *run_dir, const char *const *variants,
                                const nn_model *const *models, int n, kd_err *e);

/* ---- quantization (issue 5) -------------------------------------------------
 * Kinds (all registered in compress_kinds(), so model files round-trip):
 *   "dense_q8"     format "int8":      static int8; int8 weights (symmetric, per
 *                  channel or tensor), input quantized per tensor with calibrated
 *                  parameters, int8 x int8 -> int32, requantized by a fixed-point
 *                  multiplier (TFLite) to the next quantized layer's input
 *                  parameters with ReLU fused as the clamp, or dequantized to float
 *                  when the consumer is not a dense_q8 (logits, batchnorm, ...).
 *   "dense_dq8"    format "int8-dyn":  int8 weights, input quantized per call.
 *   "dense_q4"     format "int4":      weight-only int4, 32-weight groups, fp16
 *                  scales, fp32 activations.
 *   "dense_csr_q8" format "csr-int8":  a pruned layer's non-zeros as int8.
 *   "dense_fq"     format "fp32-fakequant": trainable dense layer that simulates
 *                  the quantization (QAT).
 *   "dense_csr_shared" format "csr-shared+huff": a pruned layer whose kept
 *                  weights share a codebook of <= 256 values (compress_cluster),
 *                  stored as the codebook and Huffman-coded gaps and indices,
 *                  run as csr-fp32.
 *   "dense_csr_shared_raw" format "csr-shared": the same without entropy
 *                  coding (indices at ceil(log2 k) bits, gaps as bytes).
 *   "dense_q2", "dense_q3" formats "int2", "int3": weight-only 2- and 3-bit
 *                  weights, 32-weight groups with fp16 scales, codes in bit
 *                  planes (kernels/quant_lowbit.h); dense layers only.
 *   "dense_lsq"    format "fp32-lsq": trainable dense layer whose 2/3-bit
 *                  weights and step size are learned by LSQ (QAT).
 *   "dense_csr_s8" format "csr-int8-static": csr-int8's entries with the
 *                  input quantized to int8 by calibrated parameters (static,
 *                  as "int8"); int32 sums, float output.
 *   "dense_csr_d8" format "csr-int8-dyn": the same with the input quantized
 *                  per call from its own range (dynamic, as "int8-dyn").
 * The quantized kinds are for inference: backward gives bias gradients only and
 * dx = 0.  conv2d layers stay fp32 in every mode. */
extern const nn_layer_ops compress_dense_q8_ops, compress_dense_dq8_ops, compress_dense_q4_ops,
    compress_dense_csr_q8_ops, compress_dense_fq_ops, compress_dense_csr_shared_ops,
    compress_dense_q2_ops, compress_dense_q3_ops, compress_dense_lsq_ops,
    compress_dense_csr_shared_raw_ops, compress_dense_csr_s8_ops, compress_dense_csr_d8_ops;

typedef enum { COMPRESS_Q_STATIC8 = 0, COMPRESS_Q_DYNAMIC8, COMPRESS_Q_INT4 } compress_qmode;
typedef enum { COMPRESS_CALIB_MINMAX = 0, COMPRESS_CALIB_PERCENTILE } compress_calib;
/* How 4-bit weights are rounded: each to its nearest level, or by GPTQ
 * (quant_q4_gptq: errors pushed onto the columns not yet rounded, through
 * the inverse Gram matrix of the layer's inputs on the calibration data). */
typedef enum { COMPRESS_ROUND_NEAREST = 0, COMPRESS_ROUND_GPTQ } compress_rounding;
/* A layer name or fnmatch(3) glob and the weight bits of the dense layers it
 * matches (the last matching override wins): 32 keeps fp32, 8 int8, 4 int4,
 * 3 int3, 2 int2. */
typedef struct {
    char pattern[64];
    int bits;
} compress_qoverride;

/* Samples per calibration batch. */
#define COMPRESS_CALIB_BATCH 128

typedef struct {
    compress_qmode mode;
    int per_channel;       /* int8 weights per output channel (1) or per tensor (0) */
    compress_calib calib;  /* static int8: how activation ranges are calibrated */
    float percentile;      /* CALIB_PERCENTILE: in (0, 100], e.g. 99.99 */
    int calib_batches;     /* static int8: the first calib_batches batches of 128 */
    int group;             /* INT4: group size along k; 0 or 32 (the only one) */
    compress_rounding rounding; /* 4-bit layers */
    float damp;            /* GPTQ: damping, a fraction of mean(diag H), in (0, 1] */
    int act_order;         /* GPTQ: columns by decreasing input energy, static group scales */
    int wbits;             /* INT4 mode: the weight bits, 4 (0 means 4), 3 or 2 */
    int bias_correction;   /* 2/3/4-bit layers: bias -= mean output error on calib */
    int sparse_static;     /* STATIC8 / DYNAMIC8: 8-bit sparse layers quantize their
                            * input too (csr-int8-static / csr-int8-dyn; else
                            * csr-int8, fp32 activations) */
    const compress_qoverride *overrides;
    int noverrides;
} compress_quant_spec;

/* Checks s against m: mode, wbits, override bits in {32, 8, 4, 3, 2}, every
 * override matching a dense layer (dense, dense_csr, dense_fq, dense_lsq),
 * group, percentile; a layer given 2 or 3 bits must be stored dense (a CSR
 * layer cannot hold them).  KD_ECONFIG naming the problem. */
int compress_quant_check(const nn_model *m, const compress_quant_spec *s, kd_err *e);
/* The weight bits s gives layer i (32, 8, 4, 3 or 2), or 0 if i is not a dense layer. */
int compress_quant_bits(const nn_model *m, const compress_quant_spec *s, int i);

/* A new model equal to m with its dense (and dense_csr, dense_fq) layers
 * replaced by quantized kinds per layer bits (compress_quant_bits):
 *   8 bits: dense_q8 in STATIC8 (and INT4) mode, dense_dq8 in DYNAMIC8 mode;
 *   4 bits: dense_q4;  32 bits: fp32 (a dense_fq layer becomes plain dense);
 *   a dense_csr layer becomes dense_csr_q8 at 8 or 4 bits (no sparse int4).
 * dense_q8 input ranges come from a trained dense_fq layer's EMA range, else
 * from calibrating m (eval mode) on the first calib_batches * 128 samples of
 * calib (min/max or percentile); with rounding GPTQ, the 4-bit layers'
 * input Gram matrices come from the same batches (inputs of the fp32 model
 * m, not of the partly quantized one).  KD_ECONFIG when a layer needs
 * calibration and calib is NULL, calib_batches < 1 or more batches than
 * calib holds, or calib's sample shape differs from m's input.  calib may be
 * NULL otherwise.  m is not changed (its scratch may be reserved). */
nn_model *compress_quantize(nn_model *m, const compress_quant_spec *s, const data_set *calib,
                            kd_err *e);

/* A new trainable model equal to m whose dense layers (bits != 32 by s)
 * become dense_fq: weights fake-quantized to their bits (8: per channel per
 * s->per_channel; 4: int4 groups), inputs of 8-bit layers fake-quantized per
 * tensor (STATIC8 and INT4 modes: EMA range of batch min/max in train mode,
 * frozen in eval; DYNAMIC8: each batch's own range).  Parameters stay in the
 * flat buffer, so nn's optimisers and train_fit work unchanged; other layers
 * (conv2d, dense_csr, ...) are copied as they are.  m is not changed. */
nn_model *compress_qat_prepare(const nn_model *m, const compress_quant_spec *s, kd_err *e);

/* LSQ (compress/lsq.c): like compress_qat_prepare, but the dense layers that
 * s gives 2 or 3 bits become dense_lsq (weights and a per-layer step trained,
 * the step started at the least-squares step); 8- and 4-bit layers become
 * dense_fq.  compress_quantize then stores the learned levels exactly. */
nn_model *compress_lsq_prepare(const nn_model *m, const compress_quant_spec *s, kd_err *e);
/* LSQ's pieces (kinds/dense_lsq.c), exposed for tests:
 * the step as stored (fp16 of |s|, kept normal); the fake-quantized weights
 * s * clamp(round(w/s), -Qn, Qp); the step of least squared error among
 * mean|w| * t, t in [0.1, 4]; and the backward: gw += dL/dw_hat where
 * w/s is in range, *gstep += g * sum dL/dw_hat * (round(w/s) - w/s | -Qn |
 * Qp), g = 1 / sqrt(n * Qp). */
float compress_lsq_step_of(float s);
void compress_lsq_fake(const float *w, size_t n, int bits, float step, float *out);
float compress_lsq_step_init(const float *w, size_t n, int bits);
void compress_lsq_grad(const float *w, size_t n, int bits, float step, const float *gwq, float *gw,
                       float *gstep);

/* Weight bits of the model's weight layers, the majority weighted by weight
 * count (32, 8, 4, 3 or 2; dense_fq and dense_lsq count as 32: they store
 * fp32), for reports. */
int compress_model_weight_bits(const nn_model *m);
/* RUN_DIR/weights_hist.csv (header variant,layer,bin_lo,bin_hi,count,zeros),
 * atomically: per dense-shaped layer of each model, a histogram of its
 * weights as the layer computes with them (dequantized for quantized kinds,
 * fake-quantized for dense_fq), nbins (>= 1) equal bins over the [min, max]
 * of its non-zero weights; exact zeros (pruned or rounded) are not binned:
 * every row of the layer gives their number in zeros. */
int compress_write_weights_hist(const char *run_dir, const char *const *variants,
                                const nn_model *const *models, int n, int nbins, kd_err *e);

/* sparsity.csv and weights_hist.csv built one model at a time, so that a run
 * need not hold every variant until the end: init, add each model in order
 * (it may be freed right after), write (both files, the same bytes as the
 * two writers above on the same models), free.  Free accepts a zeroed or
 * failed table. */
typedef struct {
    kd_buf sparsity, hist;
    uint64_t *cnt; /* histogram scratch [nbins] */
    int nbins;
} compress_tables;
int compress_tables_init(compress_tables *t, int nbins, kd_err *e);
int compress_tables_add(compress_tables *t, const char *variant, const nn_model *m, kd_err *e);
/* Writes RUN_DIR/sparsity.csv and RUN_DIR/weights_hist.csv (atomically). */
int compress_tables_write(compress_tables *t, const char *run_dir, kd_err *e);
void compress_tables_free(compress_tables *t);

/* ==== weight sharing (Deep Compression) ===================================== */

typedef struct {
    int clusters;      /* codebook entries per layer, 2..256 */
    cluster_init init; /* linear (Han's best), k-means++ (seeded), density */
    uint64_t seed;     /* k-means++ */
    int uncoded;       /* store as dense_csr_shared_raw ("csr-shared": indices bit-packed,
                          gaps as bytes, no entropy coding) for the ladder's middle rung */
} compress_cluster_spec;

/* A new model equal to m whose fp32 dense-like layers (dense, dense_csr)
 * become dense_csr_shared: each layer's non-zero weights clustered by 1-D
 * k-means into at most s->clusters values and replaced by their nearest
 * centroid (zeros, i.e. pruned weights, stay zero and out of the codebook).
 * Quantized layers are refused (KD_ECONFIG naming the layer); other layers
 * are copied.  m is not changed. */
nn_model *compress_cluster(const nn_model *m, const compress_cluster_spec *s, kd_err *e);
/* compress_cluster's refusals without the work (clusters outside [2, 256], an
 * unknown init, a layer already quantized or shared): checks before training. */
int compress_cluster_check(const nn_model *m, const compress_cluster_spec *s, kd_err *e);

/* Fine-tuning the shared values: compress_tie_new clusters m's trainable
 * fp32 dense layers in place (non-zero weights snapped to their k-means
 * centroid, the assignment kept); compress_tie_apply, after each optimizer
 * step, sets every centroid to the mean of its members' values and the
 * members to it, and pruned (zero) weights back to zero.  With SGD a
 * centroid then moves by -lr/|members| times the sum of its members'
 * gradients.  A layer with at most `clusters` distinct values is kept as it
 * is by compress_cluster, so the tied values become the codebook. */
typedef struct compress_tie compress_tie;
compress_tie *compress_tie_new(nn_model *m, const compress_cluster_spec *s, kd_err *e);
void compress_tie_apply(compress_tie *t, nn_model *m);
void compress_tie_free(compress_tie *t);

#endif
