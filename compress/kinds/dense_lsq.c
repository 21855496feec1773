/* dense_lsq (format "fp32-lsq"): a dense layer trained through 2-, 3- or
 * 4-bit weights with a learned step size (LSQ, Esser et al., ICLR 2020).
 * The flat weights are the units x fan_in fp32 weights followed by ONE step
 * s (so nn's optimisers train it with the weights); the bias follows as in
 * nn's dense layer.  Forward uses w_hat = s * clamp(round(w / s), -Qn, Qp)
 * with s rounded to fp16 exactly as quant_ql_block stores it, so that
 * compress_quantize deploys the same levels (quant_ql_pack with this step).
 * Backward (LSQ's estimators):
 *   dL/dw = dL/dw_hat where -Qn <= w/s <= Qp, else 0 (straight through);
 *   dL/ds = g * sum_i dL/dw_hat_i * (round(w_i/s) - w_i/s inside,
 *           -Qn below, Qp above), g = 1 / sqrt(N * Qp), N = units * fan_in.
 * The payload is the bits (u32). */
#include <math.h>
#include <string.h>

#include "../kernels/quant_lowbit.h"
#include "internal.h"

typedef struct {
    float *wq, *gwq;
} lsq_priv;

static size_t nweights(const nn_layer *l) { return (size_t)l->spec.units * nn_shape_size(l->in); }

static int lsq_setup(nn_layer *l, kd_err *e)
{
    int rc = nn_dense_ops.setup(l, e);
    l->nw += 1; /* the step */
    return rc;
}

static void lsq_init(nn_layer *l, nn_rng *r)
{
    nn_layer t = *l;
    t.nw = nweights(l);
    nn_dense_ops.init(&t, r);
    l->w[t.nw] = compress_lsq_step_init(l->w, t.nw, l->data ? *(const int *)l->data : 2);
}

static void lsq_release(nn_layer *l)
{
    lsq_priv *p = l->priv;
    if (p) {
        kd_afree(p->wq);
        kd_afree(p->gwq);
        kd_free(p);
    }
    l->priv = NULL;
    l->max_batch = 0;
}

static int lsq_reserve(nn_layer *l, int max_batch, kd_err *e)
{
    lsq_release(l);
    lsq_priv *p = kd_calloc(1, sizeof *p);
    if (p) {
        p->wq = kd_afloat(nweights(l));
        p->gwq = kd_afloat(nweights(l));
    }
    l->priv = p;
    if (!p || !p->wq || !p->gwq)
        return kd_err_set(e, KD_ENOMEM, "out of memory for LSQ scratch");
    l->max_batch = max_batch;
    return KD_OK;
}

float compress_lsq_step_of(float s)
{
    uint16_t h;
    uint8_t code[16];
    float one = 0.0f;
    quant_ql_block(&one, 1, 2, fabsf(s) > 0.0f ? fabsf(s) : 1e-8f, &h, code);
    return quant_f16_to_f32(h);
}

void compress_lsq_fake(const float *w, size_t n, int bits, float step, float *out)
{
    const float d = compress_lsq_step_of(step), lo = (float)-quant_ql_qn(bits),
                hi = (float)quant_ql_qp(bits);
    for (size_t i = 0; i < n; i++) {
        float v = roundf(w[i] / d) + 0.0f; /* -0 -> +0: as the stored level 0 decodes */
        out[i] = d * (v < lo ? lo : v > hi ? hi : v);
    }
}

float compress_lsq_step_init(const float *w, size_t n, int bits)
{
    double mean = 0.0;
    for (size_t i = 0; i < n; i++)
        mean += fabsf(w[i]);
    mean = n ? mean / (double)n : 0.0;
    if (!(mean > 0.0))
        return 1e-3f;
    /* the step of least squared error among mean|w| * t, t in [0.1, 4] */
    const float lo = (float)-quant_ql_qn(bits), hi = (float)quant_ql_qp(bits);
    double best = INFINITY;
    float bs = (float)mean;
    for (int t = 10; t <= 400; t += 5) {
        float s = (float)(mean * t / 100.0), d = compress_lsq_step_of(s);
        double err = 0.0;
        for (size_t i = 0; i < n; i++) {
            float v = roundf(w[i] / d);
            v = v < lo ? lo : v > hi ? hi : v;
            err += ((double)w[i] - (double)v * d) * ((double)w[i] - (double)v * d);
        }
        if (err < best) {
            best = err;
            bs = s;
        }
    }
    return bs;
}

static int bits_of(const nn_layer *l) { return l->data ? *(const int *)l->data : 2; }

static void lsq_forward(nn_layer *l, const float *x, float *y, int n, const nn_ctx *c)
{
    lsq_priv *p = l->priv;
    const size_t nw = nweights(l);
    compress_lsq_fake(l->w, nw, bits_of(l), l->w[nw], p->wq);
    nn_layer t = *l;
    t.w = p->wq;
    t.nw = nw;
    nn_dense_ops.forward(&t, x, y, n, c);
}

void compress_lsq_grad(const float *w, size_t n, int bits, float step, const float *gwq, float *gw,
                       float *gstep)
{
    const float d = compress_lsq_step_of(step);
    const float qn = (float)quant_ql_qn(bits), qp = (float)quant_ql_qp(bits);
    const double g = 1.0 / sqrt((double)n * qp);
    double gs = 0.0;
    for (size_t i = 0; i < n; i++) {
        float v = w[i] / d;
        if (v < -qn) {
            gs += -qn * (double)gwq[i];
        } else if (v > qp) {
            gs += qp * (double)gwq[i];
        } else {
            gs += ((double)roundf(v) - v) * gwq[i];
            gw[i] += gwq[i];
        }
    }
    *gstep += (float)(g * gs);
}

static void lsq_backward(nn_layer *l, const float *x, const float *y, const float *dy, float *dx,
                         int n, const nn_ctx *c)
{
    lsq_priv *p = l->priv;
    const size_t nw = nweights(l);
    memset(p->gwq, 0, nw * sizeof *p->gwq);
    nn_layer t = *l;
    t.w = p->wq; /* from the forward on this batch */
    t.nw = nw;
    t.gw = p->gwq;
    nn_dense_ops.backward(&t, x, y, dy, dx, n, c);
    compress_lsq_grad(l->w, nw, bits_of(l), l->w[nw], p->gwq, l->gw, &l->gw[nw]);
}

static void lsq_dequant(const nn_layer *l, float *w)
{
    const size_t nw = nweights(l);
    compress_lsq_fake(l->w, nw, bits_of(l), l->w[nw], w);
}

int compress_lsq_attach(nn_layer *l, int bits, kd_err *e)
{
    if (bits < 2 || bits > 4)
        return kd_err_set(e, KD_ECONFIG, "LSQ weights of %d bits: 2, 3 or 4", bits);
    int *p = kd_malloc(sizeof *p);
    if (!p)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    *p = bits;
    kd_free(l->data);
    l->data = p;
    return KD_OK;
}

int compress_lsq_bits(const nn_layer *l, float *step)
{
    if (l->ops != &compress_dense_lsq_ops || !l->data)
        return 0;
    *step = l->w[nweights(l)];
    return bits_of(l);
}

static void lsq_save(const nn_layer *l, kd_buf *b) { kd_buf_u32(b, (uint32_t)bits_of(l)); }

static int lsq_load(nn_layer *l, kd_rd *r, kd_err *e)
{
    uint32_t bits = kd_rd_u32(r);
    if (!r->ok || r->pos != r->len)
        return kd_err_set(e, KD_EFORMAT, "LSQ payload of %zu bytes, 4 expected", r->len);
    float s = l->w[nweights(l)];
    if (bits < 2 || bits > 4 || !isfinite(s) || !(s > 0.0f))
        return kd_err_set(e, KD_EFORMAT, "LSQ layer: bad bits %u or step %g", bits, (double)s);
    return compress_lsq_attach(l, (int)bits, e);
}

static int lsq_copy(nn_layer *dst, const nn_layer *src, kd_err *e)
{
    return src->data ? compress_lsq_attach(dst, bits_of(src), e) : KD_OK;
}

static void lsq_destroy(nn_layer *l)
{
    kd_free(l->data);
    l->data = NULL;
}

static void lsq_count(const nn_layer *l, size_t *weights, size_t *nonzero)
{
    (void)l;
    *weights = *nonzero = 0; /* flat parameters, counted by nn */
}

const nn_layer_ops compress_dense_lsq_ops = {
    .name = "dense_lsq",
    .setup = lsq_setup,
    .init = lsq_init,
    .reserve = lsq_reserve,
    .release = lsq_release,
    .forward = lsq_forward,
    .backward = lsq_backward,
    .macs = compress_qmacs,
    .format = "fp32-lsq",
    .weight_bits = 32,
    .trainable = 1,
    .dense_like = 1,
    .dequant = lsq_dequant,
    .save = lsq_save,
    .load = lsq_load,
    .copy = lsq_copy,
    .destroy = lsq_destroy,
    .count = lsq_count,
};
