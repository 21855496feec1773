/* Gradual magnitude pruning on the AGP cubic schedule (Zhu & Gupta 2017,
 * "To prune, or not to prune"): the sparsity rises quickly while there are
 * many redundant weights and slowly near the target, and the network
 * recovers in between.  Runs inside train_fit through the on_step hook: every
 * `every` steps the model is re-pruned to the schedule's sparsity (pruned
 * weights are already zero, so they stay pruned), and between prunings the
 * mask is re-applied after each optimiser step. */
#include <math.h>
#include <string.h>

#include "internal.h"

float compress_agp(float s_i, float s_f, double t, double n)
{
    if (n <= 0 || t >= n)
        return s_f;
    if (t < 0)
        t = 0;
    double r = 1.0 - t / n;
    return (float)(s_f + (s_i - s_f) * r * r * r);
}

typedef struct {
    const compress_agp_spec *g;
    compress_mask *mask;
    long step, total, every;
    compress_override *ov; /* the overrides at the current step */
    const train_hooks *user;
} agp_ctx;

/* Prunes m to the schedule's sparsities at step t (per layer: from
 * min(s_i, s_final) to s_final). */
static int prune_at(agp_ctx *a, nn_model *m, long t, kd_err *e)
{
    const compress_prune_spec *f = &a->g->prune;
    float si = a->g->initial_sparsity;
    compress_prune_spec cur = *f;
    cur.sparsity = compress_agp(fminf(si, f->sparsity), f->sparsity, (double)t, (double)a->total);
    for (int j = 0; j < f->noverrides; j++) {
        a->ov[j] = f->overrides[j];
        float sf = f->overrides[j].sparsity;
        a->ov[j].sparsity = compress_agp(fminf(si, sf), sf, (double)t, (double)a->total);
    }
    cur.overrides = a->ov;
    return compress_prune_magnitude(m, &cur, a->mask, e);
}

static int agp_on_step(void *ctx, nn_model *m, float lr, kd_err *e)
{
    agp_ctx *a = ctx;
    long t = ++a->step;
    int rc;
    if (t <= a->total && (t % a->every == 0 || t == a->total))
        rc = prune_at(a, m, t, e);
    else {
        compress_mask_apply(a->mask, m);
        rc = KD_OK;
    }
    if (rc == KD_OK && a->user && a->user->on_step)
        rc = a->user->on_step(a->user->step_ctx, m, lr, e);
    return rc;
}

static int check_gradual(const nn_model *m, const compress_agp_spec *g, const train_opts *o,
                         const data_set *tr, kd_err *e)
{
    int rc = compress_prune_check(m, &g->prune, e);
    if (rc != KD_OK)
        return rc;
    if (!(g->initial_sparsity >= 0 && g->initial_sparsity < 1))
        return kd_err_set(e, KD_ECONFIG, "initial sparsity %g is outside [0, 1)",
                          (double)g->initial_sparsity);
    if (g->prune_epochs < 1 || g->prune_epochs > o->epochs)
        return kd_err_set(e, KD_ECONFIG, "pruning over %d epochs needs 1 to %d (the fine-tuning "
                          "epochs)", g->prune_epochs, o->epochs);
    if (tr->n < 1 || o->batch_size < 1)
        return kd_err_set(e, KD_ERUNTIME, "no training batches");
    return KD_OK;
}

int compress_prune_gradual(nn_model *m, const compress_agp_spec *g, const train_opts *o,
                           const data_set *tr, const data_set *val, const train_hooks *h,
                           compress_mask *mask, kd_err *e)
{
    int rc = check_gradual(m, g, o, tr, e);
    if (rc != KD_OK)
        return rc;
    agp_ctx a = {.g = g, .user = h};
    a.total = (long)g->prune_epochs * ((tr->n + o->batch_size - 1) / o->batch_size);
    /* a re-prune costs about a training step on the MLP: ~100 over the ramp */
    a.every = g->every > 0 ? g->every : (a.total / 100 > 1 ? a.total / 100 : 1);
    a.mask = mask ? mask : compress_mask_new(m, e);
    a.ov = kd_calloc((size_t)g->prune.noverrides + 1, sizeof *a.ov);
    train_state st = {0};
    if (!a.mask || !a.ov) {
        rc = a.mask ? kd_err_set(e, KD_ENOMEM, "out of memory") : KD_ENOMEM;
        goto out;
    }
    if (a.mask->n != m->nparams) {
        rc = kd_err_set(e, KD_ERUNTIME, "the mask is for another model");
        goto out;
    }
    train_hooks hk = h ? *h : (train_hooks){.quiet = 1};
    hk.on_step = agp_on_step;
    hk.step_ctx = &a;
    if ((rc = prune_at(&a, m, 0, e)) == KD_OK && (rc = train_state_init(&st, m, o, e)) == KD_OK)
        rc = train_fit(&st, o, tr, val, &hk, e);
    /* exactly the final sparsity, whatever the step count was */
    if (rc == KD_OK)
        rc = prune_at(&a, m, a.total, e);
out:
    train_state_free(&st);
    if (a.mask != mask)
        compress_mask_free(a.mask);
    kd_free(a.ov);
    return rc;
}
