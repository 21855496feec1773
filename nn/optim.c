/* Optimisers (SGD with momentum/Nesterov/L2, AdamW) and learning-rate schedules. */
#include <math.h>
#include <string.h>

#include "nn.h"

nn_optim *nn_optim_new(const nn_opt_spec *s, size_t nparams, kd_err *e)
{
    nn_optim *o = kd_calloc(1, sizeof *o);
    if (!o) {
        kd_err_set(e, KD_ENOMEM, "out of memory");
        return NULL;
    }
    o->spec = *s;
    if (o->spec.beta1 == 0)
        o->spec.beta1 = 0.9f;
    if (o->spec.beta2 == 0)
        o->spec.beta2 = 0.999f;
    if (o->spec.eps == 0)
        o->spec.eps = 1e-8f;
    o->n = nparams;
    o->m = kd_afloat(nparams);
    o->v = s->kind == NN_OPT_ADAMW ? kd_afloat(nparams) : NULL;
    if (!o->m || (s->kind == NN_OPT_ADAMW && !o->v)) {
        nn_optim_free(o);
        kd_err_set(e, KD_ENOMEM, "out of memory for optimiser state");
        return NULL;
    }
    return o;
}

void nn_optim_free(nn_optim *o)
{
    if (!o)
        return;
    kd_afree(o->m);
    kd_afree(o->v);
    kd_free(o);
}

/* SGD as in PyTorch: g += wd*p; m = mu*m + g; step = nesterov ? g + mu*m : m.
 * With clear, each g is zeroed once read (the same pass). */
static void sgd_range(nn_optim *o, float *restrict p, float *restrict g, float *restrict mom,
                      size_t n, float lr, float wd, int clear)
{
    const float mu = o->spec.momentum;
    /* one branch-free loop per case, so each vectorizes (same arithmetic) */
    if (!(mu > 0)) {
        for (size_t i = 0; i < n; i++)
            p[i] -= lr * (g[i] + wd * p[i]);
    } else if (o->spec.nesterov) {
        for (size_t i = 0; i < n; i++) {
            float gi = g[i] + wd * p[i];
            mom[i] = mu * mom[i] + gi;
            p[i] -= lr * (gi + mu * mom[i]);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            mom[i] = mu * mom[i] + (g[i] + wd * p[i]);
            p[i] -= lr * mom[i];
        }
    }
    if (clear) /* the block is still in cache */
        memset(g, 0, n * sizeof *g);
}

/* AdamW (Loshchilov & Hutter): decoupled decay p -= lr*wd*p */
static void adamw_range(nn_optim *o, float *p, float *g, float *m1, float *v, size_t n, float lr,
                        float wd, float c1, float c2, int clear)
{
    const float b1 = o->spec.beta1, b2 = o->spec.beta2, eps = o->spec.eps;
    for (size_t i = 0; i < n; i++) {
        m1[i] = b1 * m1[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        float mh = m1[i] / c1, vh = v[i] / c2;
        p[i] -= lr * (mh / (sqrtf(vh) + eps) + wd * p[i]);
    }
    if (clear)
        memset(g, 0, n * sizeof *g);
}

typedef struct {
    nn_optim *o;
    nn_model *m;
    float lr, c1, c2;
    int clear;
} step_job;

/* The update of part `part` of every parameter range (each element's
 * arithmetic is the same however the ranges are split). */
static void step_part(void *arg, int part, int nparts)
{
    const step_job *j = arg;
    nn_optim *o = j->o;
    nn_model *m = j->m;
    for (int i = 0; i < m->nlayers; i++) {
        nn_layer *l = &m->layers[i];
        /* decay conv/dense weights only: not biases, not batchnorm's gamma/beta */
        int decay_w = l->spec.kind == NN_DENSE || l->spec.kind == NN_CONV2D;
        for (int w = 0; w < 2; w++) {
            float *p = w ? l->b : l->w, *g = w ? l->gb : l->gw;
            size_t n = w ? l->nb : l->nw, lo, hi;
            nn_team_range(n, part, nparts, &lo, &hi);
            if (hi <= lo)
                continue;
            size_t off = (size_t)(p - m->params) + lo;
            float wd = (!w && decay_w) ? o->spec.weight_decay : 0.0f;
            if (o->spec.kind == NN_OPT_ADAMW)
                adamw_range(o, p + lo, g + lo, o->m + off, o->v + off, hi - lo, j->lr, wd, j->c1,
                            j->c2, j->clear);
            else
                sgd_range(o, p + lo, g + lo, o->m + off, hi - lo, j->lr, wd, j->clear);
        }
    }
}

static void optim_step(nn_optim *o, nn_model *m, float lr, int clear)
{
    o->step++;
    step_job j = {.o = o, .m = m, .lr = lr, .clear = clear};
    j.c1 = 1 - powf(o->spec.beta1, (float)o->step);
    j.c2 = 1 - powf(o->spec.beta2, (float)o->step);
    if (m->nparams >= NN_SPLIT_MIN) /* m's team, when it has one (training) */
        nn_team_run(m->team, step_part, &j);
    else
        step_part(&j, 0, 1);
    if (clear) /* every range of every layer: all of m->grads */
        m->grads_zero = 1;
}

void nn_optim_step(nn_optim *o, nn_model *m, float lr) { optim_step(o, m, lr, 0); }

void nn_optim_step_clear(nn_optim *o, nn_model *m, float lr) { optim_step(o, m, lr, 1); }

float nn_sched_lr(const nn_sched_spec *s, float base_lr, double epoch, int total_epochs)
{
    if (s->warmup_epochs > 0 && epoch < s->warmup_epochs)
        return base_lr * (float)((epoch + 1e-9) / s->warmup_epochs);
    switch (s->kind) {
    case NN_SCHED_STEP: {
        int k = s->step_epochs > 0 ? (int)(epoch / s->step_epochs) : 0;
        return base_lr * powf(s->gamma > 0 ? s->gamma : 0.1f, (float)k);
    }
    case NN_SCHED_COSINE: {
        double span = total_epochs - s->warmup_epochs;
        double t = span > 0 ? (epoch - s->warmup_epochs) / span : 1;
        t = t < 0 ? 0 : t > 1 ? 1 : t;
        return s->min_lr + (base_lr - s->min_lr) * (float)(0.5 * (1 + cos(M_PI * t)));
    }
    default:
        return base_lr;
    }
}
