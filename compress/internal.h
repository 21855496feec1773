/* compress's private shared declarations (passes and kinds); never included
 * from outside compress/. */
#ifndef KD_COMPRESS_INTERNAL_H
#define KD_COMPRESS_INTERNAL_H

#include "compress.h"
#include "kernels/kernels.h"

/* Is layer l nn's own layer of kind k (not a compressed kind)? */
int compress_is_builtin(const nn_layer *l, nn_kind k);
/* Is layer l a plain fp32 dense layer / conv2d (nn's own ops)? */
int compress_is_dense(const nn_layer *l);
int compress_is_conv(const nn_layer *l);
/* A prunable layer: dense or conv2d with fp32 weights. */
int compress_is_prunable(const nn_layer *l);

/* ---- quantized dense kinds (kinds/) ---- */
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

/* Sets l's payload (dense_q8 or dense_dq8) to d, taken even on failure. */
int compress_q8_attach(nn_layer *l, quant_dense *d, int out_s8, kd_err *e);
/* The same for dense_q4 / dense_csr_q8 / dense_fq payloads. */
int compress_q4_attach(nn_layer *l, quant_q4 *q, kd_err *e);
int compress_qcsr_attach(nn_layer *l, quant_csr *q, kd_err *e);
/* dense_csr_s8: q and the input's quantizer in, q taken even on failure. */
int compress_qcsr_s8_attach(nn_layer *l, quant_csr *q, quant_params in, kd_err *e);
/* dense_csr_d8: q (the input is quantized per call), taken even on failure. */
int compress_qcsr_d8_attach(nn_layer *l, quant_csr *q, kd_err *e);
/* dense_csr_shared's payload: a CSR of at most CLUSTER_MAX distinct values. */
int compress_shared_attach(nn_layer *l, compress_csr *a, kd_err *e);
int compress_fq_attach(nn_layer *l, compress_fq f, kd_err *e);
/* dense_q2 / dense_q3: q's bits must be the kind's and its shape the
 * layer's (KD_EFORMAT otherwise); q is taken even on failure. */
struct quant_ql;
int compress_ql_attach(nn_layer *l, struct quant_ql *q, kd_err *e);
/* dense_lsq: its bits (2, 3 or 4). */
int compress_lsq_attach(nn_layer *l, int bits, kd_err *e);
/* A dense_lsq layer's bits and *step (its learned step), or 0 for another kind. */
int compress_lsq_bits(const nn_layer *l, float *step);
/* A trained static dense_fq layer's frozen input range: 1 and *lo, *hi, or
 * 0 (another kind, dynamic, or never trained). */
int compress_fq_range(const nn_layer *l, float *lo, float *hi);
/* Any dense-shaped layer (nn's dense, or a kind with ops->dense_like). */
int compress_is_dense_like(const nn_layer *l);
/* Copies src's flat parameters, buffers and payload (when dst has the same
 * sizes and kind) into dst. */
int compress_copy_layer(nn_layer *dst, const nn_layer *src, kd_err *e);

/* A model like m (input, layer specs, normalisation) whose layer i has kind
 * ops[i] (NULL: m's own), each filled by fill(ctx, m, i, dst, e); an error is
 * prefixed with the layer's index and name (compress/remodel.c). */
typedef int (*compress_fill_fn)(const void *ctx, const nn_model *m, int i, nn_layer *dst,
                                kd_err *e);
nn_model *compress_remodel(const nn_model *m, const nn_layer_ops *const *ops,
                           compress_fill_fn fill, const void *ctx, kd_err *e);
/* A zeroed table of m->nlayers kinds for compress_remodel (kd_free it); NULL
 * with e set when out of memory. */
const nn_layer_ops **compress_ops_new(const nn_model *m, kd_err *e);
/* Its weights as it computes with them (ops->dequant, else the flat fp32
 * weights), units x fan_in floats. */
void compress_layer_weights(const nn_layer *l, float *w);

/* ---- the run-directory tables (sensitivity.c, qweights.c, tables.c) ---- */
#define COMPRESS_SPARSITY_HEADER "variant,layer,params,nonzero\n"
#define COMPRESS_HIST_HEADER "variant,layer,bin_lo,bin_hi,count,zeros\n"
#define COMPRESS_HIST_MAX_BINS (1 << 20)
/* Writes b to dir/name atomically; frees b either way. */
int compress_write_table(const char *dir, const char *name, kd_buf *b, kd_err *e);
/* sparsity.csv's rows of one model (no header), appended to b. */
void compress_sparsity_rows(kd_buf *b, const char *variant, const nn_model *m);
/* weights_hist.csv's rows of one model (no header), appended to b; cnt is
 * scratch of nbins counters.  0 or KD_ENOMEM (e set). */
int compress_weights_hist_rows(kd_buf *b, const char *variant, const nn_model *m, int nbins,
                               uint64_t *cnt, kd_err *e);

#endif
