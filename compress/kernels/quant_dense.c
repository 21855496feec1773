/* An int8 dense layer: conversion from float weights (per-channel symmetric
 * int8, int32 bias, per-row fixed-point multipliers), static int8 inference,
 * float-output inference for logits, and dynamic int8 with per-call activation
 * quantization. */
#include "kernels.h"
#include "kernels.h"

#include <math.h>
#include <string.h>

void quant_dense_free(quant_dense *d)
{
    if (!d)
        return;
    kd_free(d->w);
    kd_free(d->w_scale);
    kd_free(d->fbias);
    kd_free(d->bias);
    kd_free(d->mult);
    kd_free(d->shift);
    qgemm_packed_free(d->packed);
    kd_free(d);
}

static int dense_check(int m, int k, quant_params in, quant_params out, kd_err *e)
{
    if (m <= 0 || k <= 0 || k > QGEMM_KMAX)
        return kd_err_set(e, KD_ECONFIG, "quant_dense: bad shape %d x %d", m, k);
    if (!(in.scale > 0.0f) || !(out.scale > 0.0f) || !isfinite(in.scale) || !isfinite(out.scale))
        return kd_err_set(e, KD_ECONFIG, "quant_dense: scales must be finite and > 0");
    if (in.qmin < -128 || in.qmax > 127 || out.qmin < -128 || out.qmax > 127 ||
        in.zero < in.qmin || in.zero > in.qmax || out.zero < out.qmin || out.zero > out.qmax)
        return kd_err_set(e, KD_ECONFIG, "quant_dense: input and output must be int8");
    return 0;
}

/* Multipliers from the scales, and the packed weights. */
static int dense_derive(quant_dense *d, kd_err *e)
{
    for (int r = 0; r < d->m; r++) {
        double mr = (double)d->in.scale * d->w_scale[r] / d->out.scale;
        int rc = quant_multiplier(mr, &d->mult[r], &d->shift[r], e);
        if (rc)
            return rc;
    }
    d->packed = qgemm_pack(d->w, d->m, d->k, e);
    return d->packed ? 0 : e ? e->code : KD_ENOMEM;
}

/* A layer with every array allocated (contents unset), or NULL with e. */
static quant_dense *dense_alloc(int m, int k, quant_params in, quant_params out, int relu,
                                kd_err *e)
{
    if (dense_check(m, k, in, out, e))
        return NULL;
    quant_dense *d = kd_calloc(1, sizeof *d);
    if (!d) {
        kd_err_set(e, KD_ENOMEM, "quant_dense: out of memory");
        return NULL;
    }
    *d = (quant_dense){.m = m, .k = k, .in = in, .out = out, .relu = relu};
    d->w = kd_malloc((size_t)m * k);
    d->w_scale = kd_malloc((size_t)m * sizeof(float));
    d->fbias = kd_malloc((size_t)m * sizeof(float));
    d->bias = kd_malloc((size_t)m * sizeof(int32_t));
    d->mult = kd_malloc((size_t)m * sizeof(int32_t));
    d->shift = kd_malloc((size_t)m * sizeof(int32_t));
    if (!d->w || !d->w_scale || !d->fbias || !d->bias || !d->mult || !d->shift) {
        quant_dense_free(d);
        kd_err_set(e, KD_ENOMEM, "quant_dense: out of memory for %d x %d", m, k);
        return NULL;
    }
    return d;
}

quant_dense *quant_dense_new(const float *w, const float *b, int m, int k, int per_channel,
                             quant_params in, quant_params out, int relu, kd_err *e)
{
    quant_dense *d = dense_alloc(m, k, in, out, relu, e);
    if (!d)
        return NULL;
    quant_weights_s8(w, m, k, per_channel, d->w_scale, d->w);
    for (int r = 0; r < m; r++)
        d->fbias[r] = b ? b[r] : 0.0f;
    quant_bias_s32(d->fbias, m, in.scale, d->w_scale, d->bias);
    if (dense_derive(d, e)) {
        quant_dense_free(d);
        return NULL;
    }
    return d;
}

quant_dense *quant_dense_from_q(const int8_t *wq, const float *w_scale, const int32_t *bias,
                                int m, int k, quant_params in, quant_params out, int relu,
                                kd_err *e)
{
    quant_dense *d = dense_alloc(m, k, in, out, relu, e);
    if (!d)
        return NULL;
    int bad = 0;
    for (size_t i = 0; i < (size_t)m * k; i++)
        bad |= wq[i] == INT8_MIN;
    for (int r = 0; r < m; r++)
        bad |= !(w_scale[r] > 0.0f) || !isfinite(w_scale[r]);
    if (bad) {
        quant_dense_free(d);
        kd_err_set(e, KD_EFORMAT,
                   "quant_dense: weights must be in [-127, 127] with finite positive scales");
        return NULL;
    }
    memcpy(d->w, wq, (size_t)m * k);
    memcpy(d->w_scale, w_scale, (size_t)m * sizeof *w_scale);
    for (int r = 0; r < m; r++) {
        d->bias[r] = bias ? bias[r] : 0;
        d->fbias[r] = (float)((double)d->bias[r] * in.scale * w_scale[r]);
    }
    if (dense_derive(d, e)) {
        quant_dense_free(d);
        return NULL;
    }
    return d;
}

/* ---- inference ------------------------------------------------------------------- */

qgemm_epi quant_dense_epi_s8(const quant_dense *d)
{
    int32_t lo = d->relu && d->out.zero > d->out.qmin ? d->out.zero : d->out.qmin;
    return (qgemm_epi){.bias = d->bias, .x_zero = d->in.zero, .mult = d->mult,
                       .shift = d->shift, .y_zero = d->out.zero, .lo = lo, .hi = d->out.qmax};
}

qgemm_epi quant_dense_epi_f32(const quant_dense *d)
{
    return (qgemm_epi){.bias = d->bias, .x_zero = d->in.zero, .out_f32 = 1,
                       .w_scale = d->w_scale, .x_scale = d->in.scale};
}

void quant_dense_forward(const quant_dense *d, qgemm_isa isa, nn_team *team, const int8_t *x,
                         int n, int8_t *y)
{
    qgemm_epi ep = quant_dense_epi_s8(d);
    qgemm_team_run(team, isa, d->packed, x, n, &ep, y);
}

void quant_dense_forward_f32(const quant_dense *d, qgemm_isa isa, nn_team *team,
                             const int8_t *x, int n, float *y)
{
    qgemm_epi ep = quant_dense_epi_f32(d);
    qgemm_team_run(team, isa, d->packed, x, n, &ep, y);
}

int quant_dynamic_forward(const quant_dense *d, qgemm_isa isa, nn_team *team, const float *x,
                          int n, float *y, kd_err *e)
{
    size_t nx = (size_t)n * d->k;
    int8_t *xq = kd_malloc(nx);
    if (!xq)
        return kd_err_set(e, KD_ENOMEM, "dynamic int8: out of memory for %d x %d", n, d->k);
    float lo = INFINITY, hi = -INFINITY;
    kernels_minmax_team(team, x, nx, &lo, &hi);
    quant_params p = quant_params_asym(lo, hi, QUANT_S8);
    quant_quantize_s8(x, nx, p, xq);
    qgemm_epi ep = {.x_zero = p.zero, .out_f32 = 1, .w_scale = d->w_scale,
                    .x_scale = p.scale, .fbias = d->fbias};
    qgemm_team_run(team, isa, d->packed, xq, n, &ep, y);
    if (d->relu)
        for (size_t i = 0; i < (size_t)n * d->m; i++)
            y[i] = y[i] > 0.0f ? y[i] : 0.0f;
    kd_free(xq);
    return 0;
}
