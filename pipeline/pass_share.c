/* Passes shared between variants (see pl_prefix in internal.h): which
 * passes two variants share, and the state kept after them. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

void pl_prefix_clear(pl_prefix *p)
{
    kd_free(p->kept);
    kd_free(p->buffers);
    nn_model_free(p->m);
    compress_mask_free(p->mask);
    memset(p, 0, sizeof *p);
}

static int same_source(const cfg_variant *a, const cfg_variant *b)
{
    if (a->source_kind != b->source_kind)
        return 0;
    if (a->source_kind == CFG_SRC_STUDENT)
        return a->source_student == b->source_student && a->source_scratch == b->source_scratch;
    return a->source_kind == CFG_SRC_TEACHER || !strcmp(a->source_path, b->source_path);
}

static int trains(const cfg_pass *p)
{
    return p->kind == CFG_PASS_FINETUNE || (p->kind == CFG_PASS_PRUNE && p->agp);
}

/* How many leading passes a and b share (same source; pruning and
 * fine-tuning only: their state is a float model and a mask); 0 unless
 * one of them trains. */
static int shared_passes(const cfg_variant *a, const cfg_variant *b)
{
    if (!same_source(a, b))
        return 0;
    int n = 0, train = 0;
    while (n < a->npasses && n < b->npasses &&
           (a->passes[n].kind == CFG_PASS_PRUNE || a->passes[n].kind == CFG_PASS_FINETUNE) &&
           cfg_pass_same(&a->passes[n], &b->passes[n]))
        train |= trains(&a->passes[n++]);
    return train ? n : 0;
}

int pl_prefix_wanted(const exp_spec *s, const cfg_variant *v, uint64_t seed)
{
    int most = 0;
    for (const cfg_variant *w = v + 1; w < s->variants + s->nvariants; w++)
        for (int k = 0; k < w->nseeds; k++)
            if (w->seeds[k] == seed) {
                int n = shared_passes(v, w);
                most = n > most ? n : most;
            }
    return most;
}

int pl_prefix_keep(pl_prefix *p, const cfg_variant *v, uint64_t seed, int n, const nn_model *m,
                   const compress_mask *mask, int sparse, kd_err *e)
{
    int reshaped = 0; /* neurons or filters removed: not the source's shape */
    for (int i = 0; i < n; i++)
        reshaped |= v->passes[i].kind == CFG_PASS_PRUNE && v->passes[i].method != CFG_PRUNE_MAGNITUDE;
    pl_prefix_clear(p);
    if (mask && !(p->mask = compress_mask_copy(mask, e)))
        return e->code;
    if (mask && !reshaped && mask->n == m->nparams) {
        size_t nk = 0;
        for (size_t i = 0; i < m->nparams; i++)
            nk += mask->keep[i] != 0;
        p->kept = kd_malloc((nk ? nk : 1) * sizeof *p->kept);
        p->buffers = kd_malloc((m->nbuffers ? m->nbuffers : 1) * sizeof *p->buffers);
        if (!p->kept || !p->buffers) {
            pl_prefix_clear(p);
            return kd_err_set(e, KD_ENOMEM, "out of memory");
        }
        for (size_t i = 0, k = 0; i < m->nparams; i++)
            if (mask->keep[i])
                p->kept[k++] = m->params[i];
        memcpy(p->buffers, m->buffers, m->nbuffers * sizeof *p->buffers);
    } else if ((p->m = nn_model_clone(m, e))) {
        nn_model_drop_grads(p->m); /* its takers' clones get their own */
    } else {
        pl_prefix_clear(p);
        return e->code;
    }
    p->v = v;
    p->seed = seed;
    p->npasses = n;
    p->sparse = sparse;
    return KD_OK;
}

int pl_prefix_fits(const pl_prefix *p, const cfg_variant *v, uint64_t seed)
{
    return p && p->v && p->seed == seed && shared_passes(p->v, v) >= p->npasses;
}

int pl_prefix_take(run_ctx *r, const pl_prefix *p, const cfg_variant *v, uint64_t seed,
                   const char *label, nn_model **m, compress_mask **mask, int *sparse, kd_err *e)
{
    if (p->m && !(*m = nn_model_clone(p->m, e)))
        return e->code;
    if (!p->m) { /* the source again, with the kept parameters put back */
        nn_model *s = *m;
        if (s->nparams != p->mask->n)
            return kd_err_set(e, KD_ERUNTIME, "%s: its source changed shape since %s ran", label,
                              p->v->name);
        for (size_t i = 0, k = 0; i < p->mask->n; i++)
            s->params[i] = p->mask->keep[i] ? p->kept[k++] : 0.0f;
        memcpy(s->buffers, p->buffers, s->nbuffers * sizeof *p->buffers);
    }
    if (p->mask && !(*mask = compress_mask_copy(p->mask, e)))
        return e->code;
    *sparse = p->sparse;
    for (int i = 0; i < p->npasses; i++) {
        char a[160], b[160];
        snprintf(a, sizeof a, "%s [pass %d]", p->v->name, i + 1);
        snprintf(b, sizeof b, "%s [pass %d]", v->name, i + 1);
        int rc = trains(&v->passes[i]) ? pl_curve_copy(r, a, seed, b, e) : KD_OK;
        if (rc != KD_OK)
            return rc;
    }
    kd_logf(&r->log, "%s: passes 1-%d are %s's (same source, seed and passes): taken from it",
            label, p->npasses, p->v->name);
    return pl_write_metrics(r, e);
}
