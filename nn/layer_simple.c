/* Parameter-free element-wise layers: relu, dropout, flatten. */
#include <string.h>

#include "nn.h"

static int same_shape_setup(nn_layer *l, kd_err *e)
{
    (void)e;
    l->out = l->in;
    l->nw = l->nb = l->nbuf = 0;
    return KD_OK;
}

static double no_macs(const nn_layer *l)
{
    (void)l;
    return 0;
}

/* ---- element-wise passes, split over c->team when large -------------------- */
typedef enum { EW_RELU, EW_RELU_BACK, EW_MUL, EW_MUL_RELU_BACK } ew_op;

typedef struct {
    ew_op op;
    const float *a, *b; /* relu: x; relu_back: y, dy; mul: x, mask; mul_relu_back: dy, mask */
    const float *y;     /* mul_relu_back: the ReLU's (and dropout's) output */
    float *out;
    size_t m;
} ew_job;

static void ew_range(const ew_job *j, size_t lo, size_t hi)
{
    const float *a = j->a, *b = j->b; /* no restrict: out may alias a or b (in place) */
    float *out = j->out;
    switch (j->op) {
    case EW_RELU:
        for (size_t i = lo; i < hi; i++)
            out[i] = a[i] > 0 ? a[i] : 0;
        break;
    case EW_RELU_BACK: /* y > 0 exactly where x > 0, so y may alias x */
        for (size_t i = lo; i < hi; i++)
            out[i] = a[i] > 0 ? b[i] : 0;
        break;
    case EW_MUL:
        for (size_t i = lo; i < hi; i++)
            out[i] = a[i] * b[i];
        break;
    case EW_MUL_RELU_BACK: /* EW_MUL then EW_RELU_BACK, value for value */
        for (size_t i = lo; i < hi; i++)
            out[i] = j->y[i] > 0 ? a[i] * b[i] : 0;
        break;
    }
}

static void ew_part(void *arg, int part, int nparts)
{
    const ew_job *j = arg;
    size_t lo, hi;
    nn_team_range(j->m, part, nparts, &lo, &hi);
    ew_range(j, lo, hi);
}

static void ew_run(const nn_ctx *c, ew_job j)
{
    if (c && j.m >= NN_SPLIT_MIN && nn_team_size(c->team) > 1)
        nn_team_run(c->team, ew_part, &j);
    else
        ew_range(&j, 0, j.m);
}

/* ---- relu ------------------------------------------------------------------ */
static void relu_forward(nn_layer *l, const float *x, float *y, int n, const nn_ctx *c)
{
    ew_run(c, (ew_job){EW_RELU, x, NULL, NULL, y, (size_t)n * nn_shape_size(l->in)});
}

/* uses y (> 0 exactly where x > 0), so it also works when y aliases x */
static void relu_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                          float *dx, int n, const nn_ctx *c)
{
    (void)x;
    if (dx)
        ew_run(c, (ew_job){EW_RELU_BACK, y, dy, NULL, dx, (size_t)n * nn_shape_size(l->in)});
}

const nn_layer_ops nn_relu_ops = {
    .name = "relu",
    .setup = same_shape_setup,
    .forward = relu_forward,
    .backward = relu_backward,
    .macs = no_macs,
    .inplace = 1,
};

/* ---- dropout ----------------------------------------------------------------
 * Inverted dropout: kept units are scaled by 1/(1-rate) at train time, so eval
 * is the identity.  The mask lives in priv; it is drawn from ctx->rng (the
 * DROPOUT stream) so a seed reproduces it. */
static int dropout_setup(nn_layer *l, kd_err *e)
{
    if (!(l->spec.rate >= 0 && l->spec.rate < 1))
        return kd_err_set(e, KD_ECONFIG, "rate must be in [0, 1)");
    return same_shape_setup(l, e);
}

static int dropout_reserve(nn_layer *l, int max_batch, kd_err *e)
{
    kd_afree(l->priv);
    l->priv = kd_afloat((size_t)max_batch * nn_shape_size(l->in));
    if (!l->priv)
        return kd_err_set(e, KD_ENOMEM, "out of memory for dropout mask");
    l->max_batch = max_batch;
    return KD_OK;
}

static void dropout_release(nn_layer *l)
{
    kd_afree(l->priv);
    l->priv = NULL;
}

/* Whether dropout does anything in this call (else it is the identity). */
static int dropout_active(const nn_layer *l, const nn_ctx *c)
{
    return c->train && l->spec.rate > 0 && c->rng;
}

const float *nn_dropout_draw(nn_layer *l, int n, const nn_ctx *c)
{
    if (!dropout_active(l, c))
        return NULL;
    size_t m = (size_t)n * nn_shape_size(l->in);
    float *mask = l->priv, scale = 1.0f / (1.0f - l->spec.rate);
    uint32_t thresh = (uint32_t)((double)l->spec.rate * 4294967296.0);
    /* the draws are one stream, in order (a seed reproduces them) */
    nn_rng_keep_mask(c->rng, mask, m, thresh, scale);
    return mask;
}

static void dropout_forward(nn_layer *l, const float *x, float *y, int n, const nn_ctx *c)
{
    size_t m = (size_t)n * nn_shape_size(l->in);
    const float *mask = nn_dropout_draw(l, n, c);
    if (!mask) {
        if (y != x)
            memmove(y, x, m * sizeof *y);
        return;
    }
    ew_run(c, (ew_job){EW_MUL, x, mask, NULL, y, m}); /* the product splits */
}

void nn_dropout_relu_backward(const nn_layer *l, const float *y, const float *dy, float *dx,
                              int n, const nn_ctx *c)
{
    size_t m = (size_t)n * nn_shape_size(l->in);
    if (!dx)
        return;
    if (!dropout_active(l, c))
        ew_run(c, (ew_job){EW_RELU_BACK, y, dy, NULL, dx, m});
    else
        ew_run(c, (ew_job){EW_MUL_RELU_BACK, dy, l->priv, y, dx, m});
}

static void dropout_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                             float *dx, int n, const nn_ctx *c)
{
    (void)x;
    (void)y;
    if (!dx)
        return;
    size_t m = (size_t)n * nn_shape_size(l->in);
    if (!dropout_active(l, c)) {
        if (dx != dy)
            memmove(dx, dy, m * sizeof *dx);
        return;
    }
    ew_run(c, (ew_job){EW_MUL, dy, l->priv, NULL, dx, m});
}

const nn_layer_ops nn_dropout_ops = {
    .name = "dropout",
    .setup = dropout_setup,
    .reserve = dropout_reserve,
    .release = dropout_release,
    .forward = dropout_forward,
    .backward = dropout_backward,
    .macs = no_macs,
    .inplace = 1,
};

/* ---- flatten: a new shape over the same bytes ------------------------------- */
static int flatten_setup(nn_layer *l, kd_err *e)
{
    (void)e;
    l->out = (nn_shape){(int)nn_shape_size(l->in), 1, 1};
    l->nw = l->nb = l->nbuf = 0;
    return KD_OK;
}

static void copy_forward(nn_layer *l, const float *x, float *y, int n, const nn_ctx *c)
{
    (void)c;
    if (y != x)
        memmove(y, x, (size_t)n * nn_shape_size(l->in) * sizeof *y);
}

static void copy_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                          float *dx, int n, const nn_ctx *c)
{
    (void)x;
    (void)y;
    (void)c;
    if (dx && dx != dy)
        memmove(dx, dy, (size_t)n * nn_shape_size(l->in) * sizeof *dx);
}

const nn_layer_ops nn_flatten_ops = {
    .name = "flatten",
    .setup = flatten_setup,
    .forward = copy_forward,
    .backward = copy_backward,
    .macs = no_macs,
    .inplace = 1,
};
