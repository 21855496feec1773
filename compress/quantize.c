/* Post-training quantization of a model (compress_quantize) and the rules it
 * shares with QAT: which bits each dense layer gets, and checks of the spec.
 * Static int8 needs every dense_q8 input's range: from a trained dense_fq
 * layer, else from calibration batches (quant_minmax or quant_hist). */
#include <fnmatch.h>
#include <math.h>
#include <cblas.h>
#include <string.h>

#include "internal.h"
#include "kernels/quant_lowbit.h"

enum { HIST_BINS = 2048 };

/* What a layer becomes. */
typedef enum { Q_KEEP = 0, Q_FP32, Q_S8, Q_D8, Q_4, Q_CSR8, Q_2, Q_3, Q_CSRS8, Q_CSRD8 } qkind;

/* Weight-only kinds below 8 bits (bias correction applies to them). */
static int low_bits(qkind k) { return k == Q_4 || k == Q_2 || k == Q_3; }

int compress_is_dense_like(const nn_layer *l)
{
    return l->spec.kind == NN_DENSE && (nn_layer_is_builtin(l) || l->ops->dense_like);
}

/* Bits per stored weight (nn's kinds: 32). */
static int weight_bits(const nn_layer *l)
{
    return l->ops->weight_bits ? l->ops->weight_bits : 32;
}

/* Layers quantization converts: dense-shaped with fp32 weights (dense,
 * dense_csr, dense_fq). */
static int convertible(const nn_layer *l)
{
    return compress_is_dense_like(l) && weight_bits(l) == 32;
}

int compress_quant_bits(const nn_model *m, const compress_quant_spec *s, int i)
{
    if (i < 0 || i >= m->nlayers || !convertible(&m->layers[i]))
        return 0;
    int bits = s->mode != COMPRESS_Q_INT4 ? 8 : s->wbits ? s->wbits : 4;
    for (int j = 0; j < s->noverrides; j++)
        if (fnmatch(s->overrides[j].pattern, m->layers[i].spec.name, 0) == 0)
            bits = s->overrides[j].bits;
    return bits;
}

int compress_quant_check(const nn_model *m, const compress_quant_spec *s, kd_err *e)
{
    if ((unsigned)s->mode > COMPRESS_Q_INT4 || (unsigned)s->calib > COMPRESS_CALIB_PERCENTILE ||
        (unsigned)s->rounding > COMPRESS_ROUND_GPTQ)
        return kd_err_set(e, KD_ECONFIG, "unknown quantization mode, calibration or rounding");
    if (s->rounding == COMPRESS_ROUND_GPTQ && !(s->damp > 0.0f && s->damp <= 1.0f))
        return kd_err_set(e, KD_ECONFIG, "gptq damping %g outside (0, 1]", (double)s->damp);
    if (s->calib == COMPRESS_CALIB_PERCENTILE && !(s->percentile > 0.0f && s->percentile <= 100.0f))
        return kd_err_set(e, KD_ECONFIG, "percentile %g is outside (0, 100]", (double)s->percentile);
    if (s->wbits != 0 && (s->wbits < 2 || s->wbits > 4))
        return kd_err_set(e, KD_ECONFIG, "weight bits %d not in {4, 3, 2}", s->wbits);
    if (s->group != 0 && s->group != QUANT_Q4_GROUP)
        return kd_err_set(e, KD_ECONFIG, "int4 group %d: only %d is supported", s->group,
                          QUANT_Q4_GROUP);
    for (int j = 0; j < s->noverrides; j++) {
        const compress_qoverride *o = &s->overrides[j];
        if (o->bits != 32 && o->bits != 8 && (o->bits < 2 || o->bits > 4))
            return kd_err_set(e, KD_ECONFIG, "override \"%s\": bits %d not in {32, 8, 4, 3, 2}",
                              o->pattern, o->bits);
        int hit = 0;
        for (int i = 0; i < m->nlayers && !hit; i++)
            hit = convertible(&m->layers[i]) && fnmatch(o->pattern, m->layers[i].spec.name, 0) == 0;
        if (!hit)
            return kd_err_set(e, KD_ECONFIG, "override \"%s\" matches no dense layer", o->pattern);
    }
    for (int i = 0; i < m->nlayers; i++) {
        const nn_layer *l = &m->layers[i];
        int bits = compress_quant_bits(m, s, i);
        if ((bits == 2 || bits == 3) && l->ops->sparse)
            return kd_err_set(e, KD_ECONFIG, "layer %s is stored sparse (%s): %d-bit weights are "
                              "stored dense (int%d has no sparse form); use bits 8 or 4 (csr-int8)",
                              l->spec.name, nn_layer_format(l), bits, bits);
    }
    return KD_OK;
}

static qkind decide(const nn_model *m, const compress_quant_spec *s, int i)
{
    const nn_layer *l = &m->layers[i];
    int bits = compress_quant_bits(m, s, i);
    if (bits == 0)
        return Q_KEEP;
    if (bits == 32)
        return l->ops->trainable ? Q_FP32 : Q_KEEP; /* dense_fq -> plain dense */
    if (bits == 2 || bits == 3) /* dense only (compress_quant_check) */
        return bits == 2 ? Q_2 : Q_3;
    if (l->ops->sparse) { /* int8 activations only when asked (sparse_static) */
        if (bits != 8 || !s->sparse_static)
            return Q_CSR8;
        return s->mode == COMPRESS_Q_DYNAMIC8 ? Q_CSRD8 : Q_CSRS8;
    }
    if (bits == 4)
        return Q_4;
    return s->mode == COMPRESS_Q_DYNAMIC8 ? Q_D8 : Q_S8;
}

/* ---- activation ranges ------------------------------------------------------ */

static int calib_check(const nn_model *m, const compress_quant_spec *s, const data_set *d,
                       kd_err *e)
{
    if (!d)
        return kd_err_set(e, KD_ECONFIG, "static int8, gptq and bias correction need "
                          "calibration data");
    if (s->calib_batches < 1 ||
        (long)(s->calib_batches - 1) * COMPRESS_CALIB_BATCH >= (long)d->n)
        return kd_err_set(e, KD_ECONFIG, "%d calibration batches of %d: the data has %d samples",
                          s->calib_batches, COMPRESS_CALIB_BATCH, d->n);
    if (nn_shape_size(d->shape) != nn_shape_size(m->in))
        return kd_err_set(e, KD_ECONFIG, "calibration samples of %zu values, the model takes %zu",
                          nn_shape_size(d->shape), nn_shape_size(m->in));
    return KD_OK;
}

/* Runs m (eval mode) over the calibration batches of d, calling observe
 * after each forward (m->act holds every layer's input). */
typedef int (*observe_fn)(void *ctx, const nn_model *m, int n, kd_err *e);
static int calib_forward(nn_model *m, const compress_quant_spec *s, const data_set *d,
                         observe_fn observe, void *ctx, kd_err *e)
{
    int rc = calib_check(m, s, d, e);
    if (rc != KD_OK)
        return rc;
    const int bs = COMPRESS_CALIB_BATCH;
    float *x = kd_afloat((size_t)bs * nn_shape_size(m->in));
    int *idx = kd_malloc(bs * sizeof *idx);
    rc = x && idx ? nn_model_reserve(m, bs, e)
                  : kd_err_set(e, KD_ENOMEM, "out of memory for calibration");
    nn_ctx ctx_eval = {.train = 0};
    for (int b = 0; rc == KD_OK && b < s->calib_batches; b++) {
        int n = d->n - b * bs < bs ? d->n - b * bs : bs;
        for (int j = 0; j < n; j++)
            idx[j] = b * bs + j;
        data_batch(d, idx, n, m->in_mean, m->in_std, x, NULL);
        if (!nn_model_forward(m, x, n, &ctx_eval))
            rc = kd_err_set(e, KD_ENOMEM, "out of memory for calibration");
        else
            rc = observe(ctx, m, n, e);
    }
    kd_afree(x);
    kd_free(idx);
    return rc;
}

typedef struct {
    const int *need;
    int pct;
    quant_hist **h;
    quant_minmax *mm;
} range_obs;

static int observe_ranges(void *ctx, const nn_model *m, int n, kd_err *e)
{
    (void)e;
    range_obs *o = ctx;
    for (int i = 0; i < m->nlayers; i++) {
        size_t nx = (size_t)n * nn_shape_size(m->layers[i].in);
        if (o->need[i] && o->pct)
            quant_hist_update(o->h[i], m->act[i], nx);
        else if (o->need[i])
            quant_minmax_update(&o->mm[i], m->act[i], nx);
    }
    return KD_OK;
}

/* Observes the inputs of the layers with need[i] over the calibration
 * batches; lo[i], hi[i] get their ranges. */
static int calibrate(nn_model *m, const compress_quant_spec *s, const data_set *d,
                     const int *need, float *lo, float *hi, kd_err *e)
{
    const int L = m->nlayers;
    range_obs o = {.need = need, .pct = s->calib == COMPRESS_CALIB_PERCENTILE,
                   .h = kd_calloc((size_t)L, sizeof *o.h), .mm = kd_calloc((size_t)L, sizeof *o.mm)};
    int rc = o.h && o.mm ? KD_OK : kd_err_set(e, KD_ENOMEM, "out of memory for calibration");
    for (int i = 0; rc == KD_OK && i < L; i++) {
        quant_minmax_init(&o.mm[i]);
        if (need[i] && o.pct && !(o.h[i] = quant_hist_new(HIST_BINS, e)))
            rc = KD_ENOMEM;
    }
    if (rc == KD_OK)
        rc = calib_forward(m, s, d, observe_ranges, &o, e);
    for (int i = 0; rc == KD_OK && i < L; i++) {
        if (need[i] && o.pct)
            quant_hist_range(o.h[i], s->percentile, &lo[i], &hi[i]);
        else if (need[i])
            lo[i] = o.mm[i].lo, hi[i] = o.mm[i].hi;
    }
    for (int i = 0; o.h && i < L; i++)
        quant_hist_free(o.h[i]);
    kd_free(o.h);
    kd_free(o.mm);
    return rc;
}

/* Ranges of every Q_S8 and Q_CSRS8 layer's input: trained dense_fq ranges
 * first, then one calibration pass for the rest. */
static int ranges(nn_model *m, const compress_quant_spec *s, const data_set *d, const qkind *k,
                  float *lo, float *hi, kd_err *e)
{
    int *need = kd_calloc((size_t)m->nlayers, sizeof *need), any = 0;
    if (!need)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    for (int i = 0; i < m->nlayers; i++)
        if ((k[i] == Q_S8 || k[i] == Q_CSRS8) &&
            !compress_fq_range(&m->layers[i], &lo[i], &hi[i]))
            any = need[i] = 1;
    int rc = any ? calibrate(m, s, d, need, lo, hi, e) : KD_OK;
    kd_free(need);
    return rc;
}

/* GPTQ: the Gram matrix X^T X / n of one 4-bit layer's inputs over the
 * calibration batches (k x k doubles).  Made for each layer just before it
 * is rounded and freed right after, so that one is held at a time, not one
 * per layer (3 for the default teacher: 28 MB, issue 12); the forward passes
 * are the same each time, so are the sums. */
typedef struct {
    int layer;
    double *h;
    double *xd; /* one batch of the layer's inputs as doubles */
    long total;
} gram_obs;

static int observe_gram(void *ctx, const nn_model *m, int n, kd_err *e)
{
    (void)e;
    gram_obs *o = ctx;
    int ki = (int)nn_shape_size(m->layers[o->layer].in);
    for (size_t j = 0; j < (size_t)n * ki; j++)
        o->xd[j] = m->act[o->layer][j];
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, ki, n, 1.0, o->xd, ki, 1.0, o->h, ki);
    o->total += n;
    return KD_OK;
}

/* Layer i's Gram matrix (the caller frees it), or NULL with e set. */
static double *gram_of(nn_model *m, const compress_quant_spec *s, const data_set *d, int i,
                       kd_err *e)
{
    size_t ki = nn_shape_size(m->layers[i].in);
    gram_obs o = {.layer = i, .h = kd_calloc(ki * ki, sizeof *o.h),
                  .xd = kd_malloc((size_t)COMPRESS_CALIB_BATCH * ki * sizeof *o.xd)};
    int rc = !o.h ? kd_err_set(e, KD_ENOMEM, "out of memory for a %zu x %zu Gram matrix", ki, ki)
             : o.xd ? calib_forward(m, s, d, observe_gram, &o, e)
                    : kd_err_set(e, KD_ENOMEM, "out of memory for calibration");
    kd_free(o.xd);
    if (rc != KD_OK) {
        kd_free(o.h);
        return NULL;
    }
    for (size_t r = 0; r < ki; r++)
        for (size_t c = r; c < ki; c++)
            o.h[c * ki + r] = o.h[r * ki + c] /= (double)o.total;
    return o.h;
}

static int uses_gptq(const compress_quant_spec *s, const qkind *k, int i)
{
    return k[i] == Q_4 && s->rounding == COMPRESS_ROUND_GPTQ;
}

/* Whether GPTQ can calibrate on d (before any layer is built, so that the
 * error is the same as when every Gram matrix was made up front). */
static int grams_check(const nn_model *m, const compress_quant_spec *s, const data_set *d,
                       const qkind *k, kd_err *e)
{
    for (int i = 0; i < m->nlayers; i++)
        if (uses_gptq(s, k, i))
            return calib_check(m, s, d, e);
    return KD_OK;
}

/* Bias correction: mu[i] = the mean input of every low-bit layer i over the
 * calibration batches (inputs of the fp32 model m, as for GPTQ), so that
 * b' = b + (W - W_q) mu removes the layer's mean output error there. */
typedef struct {
    double **mu;
    long total;
} mean_obs;

static int observe_means(void *ctx, const nn_model *m, int n, kd_err *e)
{
    (void)e;
    mean_obs *o = ctx;
    for (int i = 0; i < m->nlayers; i++) {
        size_t ki = o->mu[i] ? nn_shape_size(m->layers[i].in) : 0;
        for (size_t j = 0; j < (size_t)n * ki; j++)
            o->mu[i][j % ki] += m->act[i][j];
    }
    o->total += n;
    return KD_OK;
}

static int means(nn_model *m, const compress_quant_spec *s, const data_set *d, const qkind *k,
                 double **mu, kd_err *e)
{
    int any = 0;
    for (int i = 0; i < m->nlayers && s->bias_correction; i++)
        if (low_bits(k[i])) {
            any = 1;
            if (!(mu[i] = kd_calloc(nn_shape_size(m->layers[i].in), sizeof **mu)))
                return kd_err_set(e, KD_ENOMEM, "out of memory for bias correction");
        }
    if (!any)
        return KD_OK;
    mean_obs o = {.mu = mu};
    int rc = calib_forward(m, s, d, observe_means, &o, e);
    for (int i = 0; rc == KD_OK && i < m->nlayers; i++)
        for (size_t c = 0; mu[i] && c < nn_shape_size(m->layers[i].in); c++)
            mu[i][c] /= (double)o.total;
    return rc;
}

/* dst->b += (w - dequant(dst)) mu: the mean output error on the calibration data. */
static int correct_bias(nn_layer *dst, const float *w, const double *mu, kd_err *e)
{
    const int u = dst->spec.units, kin = (int)nn_shape_size(dst->in);
    float *wq = kd_malloc((size_t)u * kin * sizeof *wq);
    if (!wq)
        return kd_err_set(e, KD_ENOMEM, "out of memory for bias correction");
    dst->ops->dequant(dst, wq);
    for (int r = 0; r < u && dst->nb; r++) {
        double err = 0.0;
        for (int c = 0; c < kin; c++)
            err += ((double)w[(size_t)r * kin + c] - wq[(size_t)r * kin + c]) * mu[c];
        dst->b[r] += (float)err;
    }
    kd_free(wq);
    return KD_OK;
}

/* ---- building the layers ---------------------------------------------------- */

/* The layer after i that consumes its output through relu, dropout and
 * flatten only (*relu set if a relu is among them), or -1. */
static int consumer(const nn_model *m, int i, int *relu)
{
    *relu = 0;
    for (int j = i + 1; j < m->nlayers; j++) {
        const nn_layer *l = &m->layers[j];
        if (compress_is_builtin(l, NN_RELU))
            *relu = 1;
        else if (!compress_is_builtin(l, NN_DROPOUT) && !compress_is_builtin(l, NN_FLATTEN))
            return j;
    }
    return -1;
}

/* Layer i's dense weights (units x fan_in) into a new array (kd_free it). */
static float *dense_weights(const nn_layer *l, kd_err *e)
{
    size_t mk = (size_t)l->spec.units * nn_shape_size(l->in);
    float *w = kd_calloc(mk ? mk : 1, sizeof *w);
    if (!w) {
        kd_err_set(e, KD_ENOMEM, "out of memory for %zu weights", mk);
        return NULL;
    }
    if (l->ops->trainable) /* dense_fq's raw weights: quantized below as it simulated */
        memcpy(w, l->w, mk * sizeof *w);
    else
        compress_layer_weights(l, w);
    return w;
}

static int build_s8(const nn_model *src, int i, const qkind *k, const float *lo, const float *hi,
                    int per_channel, const float *w, nn_layer *dst, kd_err *e)
{
    const nn_layer *l = &src->layers[i];
    quant_params in = quant_params_asym(lo[i], hi[i], QUANT_S8);
    quant_params out = quant_params_asym(0.0f, 0.0f, QUANT_S8);
    int relu, j = consumer(src, i, &relu), s8 = j >= 0 && k[j] == Q_S8;
    if (s8)
        out = quant_params_asym(lo[j], hi[j], QUANT_S8);
    quant_dense *d = quant_dense_new(w, l->b, l->spec.units, (int)nn_shape_size(l->in),
                                     per_channel, in, out, s8 && relu, e);
    return d ? compress_q8_attach(dst, d, s8, e) : KD_ENOMEM;
}

static int build_layer(const nn_model *src, int i, const qkind *k, const float *lo,
                       const float *hi, const compress_quant_spec *s, const double *gram,
                       const double *mu, nn_layer *dst, kd_err *e)
{
    const nn_layer *l = &src->layers[i];
    const int u = l->spec.units, kin = (int)nn_shape_size(l->in);
    float *w = dense_weights(l, e);
    if (!w)
        return KD_ENOMEM;
    int rc = KD_OK;
    if (k[i] == Q_S8) {
        rc = build_s8(src, i, k, lo, hi, s->per_channel, w, dst, e);
    } else if (k[i] == Q_D8) {
        quant_params z = quant_params_asym(0.0f, 0.0f, QUANT_S8);
        quant_dense *d = quant_dense_new(w, NULL, u, kin, s->per_channel, z, z, 0, e);
        rc = d ? compress_q8_attach(dst, d, 0, e) : KD_ENOMEM;
    } else if (k[i] == Q_4) {
        quant_q4 *q = gram ? quant_q4_gptq(w, u, kin, gram, s->damp, s->act_order, e)
                           : quant_q4_pack(w, u, kin, e);
        rc = q ? compress_q4_attach(dst, q, e) : KD_ENOMEM;
    } else if (k[i] == Q_2 || k[i] == Q_3) {
        float step = 0.0f; /* a trained LSQ layer's step, else the least-squares one per group */
        int lb = compress_lsq_bits(l, &step), bits = k[i] == Q_2 ? 2 : 3;
        quant_ql *q = quant_ql_pack(w, u, kin, bits, lb == bits ? step : 0.0f, e);
        rc = q ? compress_ql_attach(dst, q, e) : KD_ENOMEM;
    } else if (k[i] == Q_CSR8) {
        quant_csr *q = quant_csr_from_dense(w, u, kin, e);
        rc = q ? compress_qcsr_attach(dst, q, e) : KD_ENOMEM;
    } else if (k[i] == Q_CSRS8) {
        quant_csr *q = quant_csr_from_dense(w, u, kin, e);
        quant_params in = quant_params_asym(lo[i], hi[i], QUANT_S8);
        rc = q ? compress_qcsr_s8_attach(dst, q, in, e) : KD_ENOMEM;
    } else if (k[i] == Q_CSRD8) {
        quant_csr *q = quant_csr_from_dense(w, u, kin, e);
        rc = q ? compress_qcsr_d8_attach(dst, q, e) : KD_ENOMEM;
    } else { /* Q_FP32 from dense_fq: the raw float weights */
        memcpy(dst->w, w, dst->nw * sizeof *w);
    }
    if (rc == KD_OK && dst->nb)
        memcpy(dst->b, l->b, dst->nb * sizeof *dst->b);
    if (rc == KD_OK && mu)
        rc = correct_bias(dst, w, mu, e);
    kd_free(w);
    return rc;
}

int compress_copy_layer(nn_layer *dst, const nn_layer *src, kd_err *e)
{
    if (dst->nw == src->nw && dst->nw)
        memcpy(dst->w, src->w, dst->nw * sizeof *dst->w);
    if (dst->nb == src->nb && dst->nb)
        memcpy(dst->b, src->b, dst->nb * sizeof *dst->b);
    if (dst->nbuf == src->nbuf && dst->nbuf)
        memcpy(dst->buf, src->buf, dst->nbuf * sizeof *dst->buf);
    if (dst->ops == src->ops && src->ops->copy && src->data)
        return src->ops->copy(dst, src, e);
    return KD_OK;
}

static const nn_layer_ops *ops_of(qkind k, const nn_layer *l)
{
    static const nn_layer_ops *const table[] = {
        [Q_FP32] = &nn_dense_ops,           [Q_S8] = &compress_dense_q8_ops,
        [Q_D8] = &compress_dense_dq8_ops,   [Q_4] = &compress_dense_q4_ops,
        [Q_CSR8] = &compress_dense_csr_q8_ops, [Q_2] = &compress_dense_q2_ops,
        [Q_3] = &compress_dense_q3_ops,     [Q_CSRS8] = &compress_dense_csr_s8_ops,
        [Q_CSRD8] = &compress_dense_csr_d8_ops,
    };
    return k == Q_KEEP ? l->spec.ops : table[k];
}

/* What assemble's layers are built from. */
typedef struct {
    const qkind *k;
    const float *lo, *hi;
    const compress_quant_spec *s;
    double *const *mu;
    nn_model *src;        /* m, run for the Gram matrices of gptq */
    const data_set *calib;
} build_ctx;

static int fill_layer(const void *ctx, const nn_model *m, int i, nn_layer *dst, kd_err *e)
{
    const build_ctx *b = ctx;
    if (b->k[i] == Q_KEEP)
        return compress_copy_layer(dst, &m->layers[i], e);
    double *gram = NULL;
    if (uses_gptq(b->s, b->k, i) && !(gram = gram_of(b->src, b->s, b->calib, i, e)))
        return e->code;
    int rc = build_layer(m, i, b->k, b->lo, b->hi, b->s, gram, b->mu[i], dst, e);
    kd_free(gram);
    return rc;
}

/* The new model's layers from k, lo, hi (and the Gram matrices of gptq,
 * made from calib one layer at a time). */
static nn_model *assemble(nn_model *m, const qkind *k, const float *lo, const float *hi,
                          const compress_quant_spec *s, const data_set *calib, double *const *mu,
                          kd_err *e)
{
    const nn_layer_ops **ops = compress_ops_new(m, e);
    if (!ops)
        return NULL;
    for (int i = 0; i < m->nlayers; i++)
        ops[i] = ops_of(k[i], &m->layers[i]);
    build_ctx b = {.k = k, .lo = lo, .hi = hi, .s = s, .mu = mu, .src = m, .calib = calib};
    nn_model *q = compress_remodel(m, ops, fill_layer, &b, e);
    kd_free(ops);
    return q;
}

nn_model *compress_quantize(nn_model *m, const compress_quant_spec *s, const data_set *calib,
                            kd_err *e)
{
    if (compress_quant_check(m, s, e) != KD_OK)
        return NULL;
    qkind *k = kd_calloc((size_t)m->nlayers, sizeof *k);
    float *lo = kd_calloc((size_t)m->nlayers * 2, sizeof *lo);
    double **mu = kd_calloc((size_t)m->nlayers, sizeof *mu);
    nn_model *q = NULL;
    if (!k || !lo || !mu) {
        kd_err_set(e, KD_ENOMEM, "out of memory");
    } else {
        for (int i = 0; i < m->nlayers; i++)
            k[i] = decide(m, s, i);
        if (ranges(m, s, calib, k, lo, lo + m->nlayers, e) == KD_OK &&
            grams_check(m, s, calib, k, e) == KD_OK && means(m, s, calib, k, mu, e) == KD_OK)
            q = assemble(m, k, lo, lo + m->nlayers, s, calib, mu, e);
    }
    for (int i = 0; mu && i < m->nlayers; i++)
        kd_free(mu[i]);
    kd_free(mu);
    kd_free(k);
    kd_free(lo);
    return q;
}
