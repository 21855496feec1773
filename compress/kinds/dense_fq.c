/* dense_fq (format "fp32-fakequant"): nn's dense layer with quantization
 * simulated in the forward pass, for quantization-aware training.  Weights
 * and bias stay in the model's flat parameters (nn's optimisers and
 * train_fit see an ordinary dense layer); the payload only says what to
 * simulate (compress_fq).  Forward: the weights are fake-quantized exactly as
 * compress_quantize will quantize them (8 bits: quant_weights_s8; 4 bits:
 * quant_q4_pack's groups and fp16 scales) and, for int8 activations, the
 * input is fake-quantized per tensor: with the range tracked by an EMA of
 * batch min/max in train mode and frozen in eval (static), or from the batch
 * itself (dynamic).  Backward: the straight-through estimator — the weight
 * gradient passes unchanged (a max-abs scale never clips a weight) and the
 * input gradient is zeroed where the input was clipped (quant_fake_backward). */
#include <math.h>
#include <string.h>

#include "internal.h"

#define FQ_EMA 0.1f /* weight of a new batch's min/max in the running range */

typedef struct {
    float *wq, *scale, *xq;
    quant_params act; /* of the last forward's input */
    int act_on;
} fq_priv;

static int fq_setup(nn_layer *l, kd_err *e)
{
    int rc = nn_dense_ops.setup(l, e);
    l->nbuf = COMPRESS_FQ_NBUF;
    return rc;
}

static void fq_init(nn_layer *l, nn_rng *r) { nn_dense_ops.init(l, r); }

static void fq_release(nn_layer *l)
{
    fq_priv *p = l->priv;
    if (p) {
        kd_afree(p->wq);
        kd_afree(p->xq);
        kd_free(p->scale);
        kd_free(p);
    }
    l->priv = NULL;
    l->max_batch = 0;
}

static int fq_reserve(nn_layer *l, int max_batch, kd_err *e)
{
    fq_release(l);
    size_t k = nn_shape_size(l->in), m = (size_t)l->spec.units;
    fq_priv *p = kd_calloc(1, sizeof *p);
    if (p) {
        p->wq = kd_afloat(m * k);
        p->xq = kd_afloat((size_t)max_batch * k);
        p->scale = kd_malloc(m * sizeof *p->scale);
    }
    l->priv = p;
    if (!p || !p->wq || !p->xq || !p->scale)
        return kd_err_set(e, KD_ENOMEM, "out of memory for fake-quant scratch");
    l->max_batch = max_batch;
    return KD_OK;
}

/* The weights forward computes with, rows split over a team: int4 groups as
 * quant_q4_pack stores them, int8 as quant_weights_s8 quantizes them (the
 * same bits: compress/kernels/fakequant.c), so QAT simulates PTQ exactly.
 * int8 runs two phases: the row maxima (the scales; per tensor, their max),
 * then the rows. */
typedef struct {
    const nn_layer *l;
    float *w, *scale;
    int phase; /* 0: copy / int4 / int8 rows; 1: int8 row maxima */
} fq_rows_job;

static void fq_rows_part(void *arg, int part, int nparts)
{
    const fq_rows_job *j = arg;
    const nn_layer *l = j->l;
    const compress_fq *f = l->data;
    const int m = l->spec.units, k = (int)nn_shape_size(l->in);
    const int r0 = m * part / nparts, r1 = m * (part + 1) / nparts;
    if (j->phase == 1) {
        quant_absmax_rows(l->w, k, r0, r1, j->scale);
        if (f->per_channel)
            for (int r = r0; r < r1; r++)
                j->scale[r] = j->scale[r] > 0.0f ? j->scale[r] / 127.0f : 1.0f;
    } else if (!f) {
        memcpy(j->w + (size_t)r0 * k, l->w + (size_t)r0 * k, (size_t)(r1 - r0) * k * sizeof *j->w);
    } else if (f->wbits == 4) {
        quant_fake_q4_rows(l->w, k, r0, r1, j->w);
    } else {
        quant_fake_s8_rows(l->w, k, r0, r1, j->scale, j->w);
    }
}

static void fq_run(fq_rows_job *j, nn_team *team)
{
    if (j->l->nw >= NN_SPLIT_MIN)
        nn_team_run(team, fq_rows_part, j);
    else
        fq_rows_part(j, 0, 1);
}

/* The fake-quantized weights into w (scale: m floats of scratch), rows split
 * over team (NULL: the caller alone; each row is computed the same way
 * either way).  Run once per forward. */
static void fq_weights(const nn_layer *l, float *w, float *scale, nn_team *team)
{
    const compress_fq *f = l->data;
    fq_rows_job j = {.l = l, .w = w, .scale = scale, .phase = 1};
    if (f && f->wbits != 4) {
        fq_run(&j, team);
        if (!f->per_channel) {
            float mx = 0.0f;
            for (int r = 0; r < l->spec.units; r++)
                mx = fmaxf(mx, scale[r]);
            for (int r = 0; r < l->spec.units; r++)
                scale[r] = mx > 0.0f ? mx / 127.0f : 1.0f;
        }
    }
    j.phase = 0;
    fq_run(&j, team);
}

static void fq_dequant(const nn_layer *l, float *w)
{
    float *scale = kd_malloc((size_t)l->spec.units * sizeof *scale);
    if (scale)
        fq_weights(l, w, scale, NULL);
    else /* no memory: the raw weights, rather than nothing */
        memcpy(w, l->w, l->nw * sizeof *w);
    kd_free(scale);
}

/* The input's quantizer: the EMA range (updated in train mode) or, for
 * dynamic layers and a static layer that never saw a training batch, the
 * batch's own range (finite values only). */
static quant_params fq_act(nn_layer *l, const float *x, size_t nx, const nn_ctx *c)
{
    const compress_fq *f = l->data;
    float lo = INFINITY, hi = -INFINITY;
    float *b = l->buf;
    int use_ema = f->act == COMPRESS_FQ_ACT_STATIC && (c->train || b[COMPRESS_FQ_SEEN] != 0.0f);
    if (!use_ema || c->train)
        kernels_minmax_team(c->team, x, nx, &lo, &hi);
    if (use_ema && c->train && lo <= hi) {
        int seen = b[COMPRESS_FQ_SEEN] != 0.0f;
        b[COMPRESS_FQ_LO] = seen ? b[COMPRESS_FQ_LO] + FQ_EMA * (lo - b[COMPRESS_FQ_LO]) : lo;
        b[COMPRESS_FQ_HI] = seen ? b[COMPRESS_FQ_HI] + FQ_EMA * (hi - b[COMPRESS_FQ_HI]) : hi;
        b[COMPRESS_FQ_SEEN] = 1.0f;
    }
    if (use_ema)
        return quant_params_asym(b[COMPRESS_FQ_LO], b[COMPRESS_FQ_HI], QUANT_S8);
    return quant_params_asym(lo, hi, QUANT_S8);
}

static void fq_forward(nn_layer *l, const float *x, float *y, int n, const nn_ctx *c)
{
    const compress_fq *f = l->data;
    fq_priv *p = l->priv;
    size_t nx = (size_t)n * nn_shape_size(l->in);
    fq_weights(l, p->wq, p->scale, c->team);
    p->act_on = f && f->act != COMPRESS_FQ_ACT_NONE;
    if (p->act_on) {
        p->act = fq_act(l, x, nx, c);
        quant_fake_act_forward(x, nx, p->act, p->xq);
    }
    nn_layer t = *l;
    t.w = p->wq;
    nn_dense_ops.forward(&t, p->act_on ? p->xq : x, y, n, c);
}

static void fq_backward(nn_layer *l, const float *x, const float *y, const float *dy, float *dx,
                        int n, const nn_ctx *c)
{
    fq_priv *p = l->priv;
    nn_layer t = *l;
    t.w = p->wq; /* from the forward on this batch; gradients go to l->gw, l->gb */
    nn_dense_ops.backward(&t, p->act_on ? p->xq : x, y, dy, dx, n, c);
    if (dx && p->act_on)
        quant_fake_act_backward(x, dx, (size_t)n * nn_shape_size(l->in), p->act, dx);
}

/* ---- payload: u32 weight bits, per channel, activation mode ------------- */
static void fq_save(const nn_layer *l, kd_buf *b)
{
    const compress_fq *f = l->data;
    kd_buf_u32(b, f ? (uint32_t)f->wbits : 8);
    kd_buf_u32(b, f ? (uint32_t)f->per_channel : 1);
    kd_buf_u32(b, f ? (uint32_t)f->act : 0);
}

int compress_fq_attach(nn_layer *l, compress_fq f, kd_err *e)
{
    compress_fq *p = kd_malloc(sizeof *p);
    if (!p)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    *p = f;
    kd_free(l->data);
    l->data = p;
    return KD_OK;
}

static int fq_load(nn_layer *l, kd_rd *r, kd_err *e)
{
    compress_fq f;
    f.wbits = (int)kd_rd_u32(r);
    f.per_channel = (int)kd_rd_u32(r);
    f.act = (int)kd_rd_u32(r);
    if (!r->ok || r->pos != r->len)
        return kd_err_set(e, KD_EFORMAT, "fake-quant payload of %zu bytes, 12 expected", r->len);
    if ((f.wbits != 8 && f.wbits != 4) || (unsigned)f.per_channel > 1 ||
        (unsigned)f.act > COMPRESS_FQ_ACT_DYNAMIC)
        return kd_err_set(e, KD_EFORMAT, "fake-quant payload: bad bits or modes");
    const float *b = l->buf;
    if (!isfinite(b[COMPRESS_FQ_LO]) || !isfinite(b[COMPRESS_FQ_HI]) ||
        b[COMPRESS_FQ_LO] > b[COMPRESS_FQ_HI] ||
        (b[COMPRESS_FQ_SEEN] != 0.0f && b[COMPRESS_FQ_SEEN] != 1.0f))
        return kd_err_set(e, KD_EFORMAT, "fake-quant layer: bad activation range");
    return compress_fq_attach(l, f, e);
}

static int fq_copy(nn_layer *dst, const nn_layer *src, kd_err *e)
{
    return src->data ? compress_fq_attach(dst, *(const compress_fq *)src->data, e) : KD_OK;
}

static void fq_destroy(nn_layer *l)
{
    kd_free(l->data);
    l->data = NULL;
}

int compress_fq_range(const nn_layer *l, float *lo, float *hi)
{
    const compress_fq *f = l->data;
    if (l->ops != &compress_dense_fq_ops || !f || f->act != COMPRESS_FQ_ACT_STATIC ||
        l->buf[COMPRESS_FQ_SEEN] == 0.0f)
        return 0;
    *lo = l->buf[COMPRESS_FQ_LO];
    *hi = l->buf[COMPRESS_FQ_HI];
    return 1;
}

static void fq_count(const nn_layer *l, size_t *weights, size_t *nonzero)
{
    (void)l;
    *weights = *nonzero = 0; /* the weights are flat parameters, counted by nn */
}

const nn_layer_ops compress_dense_fq_ops = {
    .name = "dense_fq",
    .setup = fq_setup,
    .init = fq_init,
    .reserve = fq_reserve,
    .release = fq_release,
    .forward = fq_forward,
    .backward = fq_backward,
    .macs = compress_qmacs,
    .format = "fp32-fakequant",
    .weight_bits = 32,
    .trainable = 1,
    .dense_like = 1,
    .dequant = fq_dequant,
    .save = fq_save,
    .load = fq_load,
    .copy = fq_copy,
    .destroy = fq_destroy,
    .count = fq_count,
};
