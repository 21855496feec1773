/* Batch normalisation over NCHW: per channel across n*h*w values, which for a
 * feature vector (h = w = 1) is per feature across the batch.
 *   w = gamma (C), b = beta (C), buf = running mean (C) | running var (C).
 * Train mode normalises with the batch mean and biased variance and moves the
 * running stats by momentum (the running variance uses the unbiased estimate,
 * as PyTorch does); eval mode normalises with the running stats.  Forward
 * saves the mean and 1/std it used, and backward recomputes xhat from x
 * rather than storing a batch-sized copy. */
#include <math.h>
#include <string.h>

#include "nn.h"

typedef struct {
    double *mean, *invstd; /* per channel, as used by the last forward */
    double *s1, *s2;       /* per-channel accumulators */
} bn_priv;

static int bn_setup(nn_layer *l, kd_err *e)
{
    if (!(l->spec.eps >= 0 && l->spec.eps < 1))
        return kd_err_set(e, KD_ECONFIG, "eps must be in [0, 1) (0 = default 1e-5)");
    if (!(l->spec.momentum >= 0 && l->spec.momentum <= 1))
        return kd_err_set(e, KD_ECONFIG, "momentum must be in [0, 1] (0 = default 0.1)");
    l->out = l->in;
    l->nw = l->nb = (size_t)l->in.c;
    l->nbuf = 2 * (size_t)l->in.c;
    return KD_OK;
}

static void bn_init(nn_layer *l, nn_rng *r)
{
    (void)r;
    size_t c = (size_t)l->in.c;
    for (size_t i = 0; i < c; i++) {
        l->w[i] = 1;
        l->b[i] = 0;
        l->buf[i] = 0;
        l->buf[c + i] = 1;
    }
}

static void bn_release(nn_layer *l)
{
    kd_free(l->priv);
    l->priv = NULL;
    l->max_batch = 0;
}

/* Scratch is per channel only, so it does not grow with the batch. */
static int bn_reserve(nn_layer *l, int max_batch, kd_err *e)
{
    bn_release(l);
    size_t c = (size_t)l->in.c;
    bn_priv *p = kd_malloc(sizeof *p + 4 * c * sizeof(double));
    if (!p)
        return kd_err_set(e, KD_ENOMEM, "out of memory for batchnorm scratch");
    p->mean = (double *)(p + 1);
    p->invstd = p->mean + c;
    p->s1 = p->invstd + c;
    p->s2 = p->s1 + c;
    l->priv = p;
    l->max_batch = max_batch;
    return KD_OK;
}

/* ---- per-channel sums over NCHW ----------------------------------------------
 * Sums run in 8 float lanes per (sample, channel) row and are added into
 * double per row: the lanes vectorise without -ffast-math (one running double
 * sum is a long dependency chain), and a float lane only sums a row's share.
 * The layer is memory-bound on conv-sized inputs, so forward and backward
 * each read their inputs in one pass for the sums and one for the output. */
enum { LANES = 8 };

/* *t1 += sum (a[i] - ma), *t2 += sum (a[i] - ma) * (b[i] - mb) over one row */
static void row_sums(const float *a, float ma, const float *b, float mb, int S, double *t1,
                     double *t2)
{
    float l1[LANES] = {0}, l2[LANES] = {0};
    int i = 0;
    for (; i + LANES <= S; i += LANES)
        for (int k = 0; k < LANES; k++) {
            l1[k] += a[i + k] - ma;
            l2[k] += (a[i + k] - ma) * (b[i + k] - mb);
        }
    double s1 = 0, s2 = 0;
    for (; i < S; i++) {
        s1 += a[i] - ma;
        s2 += (a[i] - ma) * (b[i] - mb);
    }
    for (int k = 0; k < LANES; k++) {
        s1 += l1[k];
        s2 += l2[k];
    }
    *t1 += s1;
    *t2 += s2;
}

/* Over the batch and pixels of each channel c, with m = mean[c]:
 *   s1[c] = sum (a - sa*m),  s2[c] = sum (a - sa*m) * (b - m)
 * (sa = 1 shifts a too). Loops run in memory order. */
static void channel_sums(const nn_layer *l, bn_priv *p, const float *a, int sa, const float *b,
                         int n)
{
    const int C = l->in.c, S = l->in.h * l->in.w;
    memset(p->s1, 0, (size_t)C * sizeof *p->s1);
    memset(p->s2, 0, (size_t)C * sizeof *p->s2);
    for (int s = 0; s < n; s++) {
        const float *as = a + (size_t)s * C * S, *bs = b + (size_t)s * C * S;
        for (int c = 0; c < C; c++) {
            float m = (float)p->mean[c];
            row_sums(as + (size_t)c * S, sa ? m : 0, bs + (size_t)c * S, m, S, &p->s1[c],
                     &p->s2[c]);
        }
    }
}

/* y = (x - mean) * gamma*invstd + beta; subtracting first keeps y accurate
 * when |mean| >> std (x*scale + shift would cancel). */
static void affine(const nn_layer *l, const bn_priv *p, const float *x, float *y, int n)
{
    const int C = l->in.c, S = l->in.h * l->in.w;
    for (int s = 0; s < n; s++)
        for (int c = 0; c < C; c++) {
            size_t o = ((size_t)s * C + c) * S;
            float m = (float)p->mean[c], sc = (float)(l->w[c] * p->invstd[c]), b = l->b[c];
            for (int i = 0; i < S; i++)
                y[o + i] = (x[o + i] - m) * sc + b;
        }
}

static float bn_eps(const nn_layer *l) { return l->spec.eps > 0 ? l->spec.eps : 1e-5f; }

/* Batch statistics of x into mean/invstd, and the running-stat update.  One
 * pass, shifted by the channel's first value so that var = E[d^2] - E[d]^2
 * (d = x - shift) does not cancel catastrophically when |mean| >> std. */
static void batch_stats(nn_layer *l, bn_priv *p, const float *x, int n)
{
    const int C = l->in.c, S = l->in.h * l->in.w;
    const double M = (double)n * S;
    const double mom = l->spec.momentum > 0 ? l->spec.momentum : 0.1;
    for (int c = 0; c < C; c++)
        p->mean[c] = x[(size_t)c * S];
    channel_sums(l, p, x, 1, x, n);
    for (int c = 0; c < C; c++) {
        double md = p->s1[c] / M, var = p->s2[c] / M - md * md;
        var = var > 0 ? var : 0;
        double unbiased = M > 1 ? var * M / (M - 1) : var;
        p->mean[c] += md;
        p->invstd[c] = 1.0 / sqrt(var + bn_eps(l));
        l->buf[c] = (float)((1 - mom) * l->buf[c] + mom * p->mean[c]);
        l->buf[C + c] = (float)((1 - mom) * l->buf[C + c] + mom * unbiased);
    }
}

static void bn_forward(nn_layer *l, const float *x, float *y, int n, const nn_ctx *c)
{
    bn_priv *p = l->priv;
    const int C = l->in.c;
    if (c->train) {
        batch_stats(l, p, x, n);
    } else {
        for (int i = 0; i < C; i++) {
            p->mean[i] = l->buf[i];
            p->invstd[i] = 1.0 / sqrt((double)l->buf[C + i] + bn_eps(l));
        }
    }
    affine(l, p, x, y, n);
}

/* dbeta = sum dy, dgamma = sum dy*xhat.  Train mode (statistics depend on x):
 * dx = gamma*invstd * (dy - dbeta/M - xhat*dgamma/M); eval: dx = gamma*invstd*dy. */
static void bn_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                        float *dx, int n, const nn_ctx *c)
{
    (void)y;
    bn_priv *p = l->priv;
    const int C = l->in.c, S = l->in.h * l->in.w;
    const double M = (double)n * S;
    channel_sums(l, p, dy, 0, x, n);
    for (int i = 0; i < C; i++) {
        p->s2[i] *= p->invstd[i]; /* sum dy * xhat */
        l->gb[i] += (float)p->s1[i];
        l->gw[i] += (float)p->s2[i];
    }
    if (!dx)
        return;
    for (int s = 0; s < n; s++)
        for (int ch = 0; ch < C; ch++) {
            size_t o = ((size_t)s * C + ch) * S;
            float k = (float)(l->w[ch] * p->invstd[ch]), m = (float)p->mean[ch];
            float is = (float)p->invstd[ch];
            float db = c->train ? (float)(p->s1[ch] / M) : 0;
            float dg = c->train ? (float)(p->s2[ch] / M) : 0;
            for (int i = 0; i < S; i++)
                dx[o + i] = k * (dy[o + i] - db - (x[o + i] - m) * is * dg);
        }
}

static double bn_macs(const nn_layer *l)
{
    (void)l;
    return 0;
}

const nn_layer_ops nn_batchnorm_ops = {
    .name = "batchnorm",
    .setup = bn_setup,
    .init = bn_init,
    .reserve = bn_reserve,
    .release = bn_release,
    .forward = bn_forward,
    .backward = bn_backward,
    .macs = bn_macs,
};
