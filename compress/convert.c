/* Dense -> CSR conversion of a model, layer by layer, by measured speed: a
 * layer becomes dense_csr when its CSR forward keeps up with nn's dense
 * forward (OpenBLAS sgemv / sgemm) at batch 1 and at batch 256 (within a
 * margin when CSR is the smaller storage), so a lightly pruned layer is never
 * made slower, and every layer's choice comes with its reason. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum { BIG_BATCH = 256 };

static double best_us(nn_layer *l, const float *x, float *y, int n, int reps, nn_team *team)
{
    nn_ctx c = {.train = 0, .team = team};
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = kd_now();
        l->ops->forward(l, x, y, n, &c);
        double t = (kd_now() - t0) * 1e6;
        best = t < best ? t : best;
    }
    return best;
}

static int cmp_double(const void *a, const void *b)
{
    double u = *(const double *)a, v = *(const double *)b;
    return (u > v) - (u < v);
}

/* Dense layer d and its CSR twin s at batch n, interleaved: the median over
 * the rounds of each one's best time in the round. */
static void time_pair(nn_layer *d, nn_layer *s, const float *x, float *y, int n, int reps,
                      nn_team *team, double *d_us, double *s_us)
{
    double td[COMPRESS_SPARSE_ROUNDS], ts[COMPRESS_SPARSE_ROUNDS];
    int per = (reps + COMPRESS_SPARSE_ROUNDS - 1) / COMPRESS_SPARSE_ROUNDS;
    best_us(d, x, y, n, 1, team); /* warm the caches */
    best_us(s, x, y, n, 1, team);
    for (int k = 0; k < COMPRESS_SPARSE_ROUNDS; k++) {
        td[k] = best_us(d, x, y, n, per, team);
        ts[k] = best_us(s, x, y, n, per, team);
    }
    qsort(td, COMPRESS_SPARSE_ROUNDS, sizeof *td, cmp_double);
    qsort(ts, COMPRESS_SPARSE_ROUNDS, sizeof *ts, cmp_double);
    *d_us = td[COMPRESS_SPARSE_ROUNDS / 2];
    *s_us = ts[COMPRESS_SPARSE_ROUNDS / 2];
}

/* Times layer l dense and as CSR a at batch 1 and BIG_BATCH into ch. */
static int time_layer(nn_layer *l, compress_csr *a, int reps, compress_choice *ch, kd_err *e)
{
    size_t in = nn_shape_size(l->in), out = (size_t)l->spec.units;
    float *x = kd_afloat(BIG_BATCH * in), *y = kd_afloat(BIG_BATCH * out);
    nn_layer t = *l;
    t.ops = &compress_dense_csr_ops;
    t.data = a;
    t.priv = NULL;
    int rc = x && y ? t.ops->reserve(&t, BIG_BATCH, e) : KD_ENOMEM;
    /* the team the layer will get from its model (none: one thread) */
    nn_team *team = nn_threads() > 1 ? nn_team_new(nn_threads(), NULL) : NULL;
    if (rc == KD_OK) {
        nn_rng r = nn_rng_stream(1, NN_STREAM_TEST);
        for (size_t i = 0; i < BIG_BATCH * in; i++)
            x[i] = nn_rng_normal(&r);
        const int n[2] = {1, BIG_BATCH};
        /* as in the model the layer ends up in: with a team, the only pool */
        int blas = team ? nn_blas_serial_begin() : 0;
        for (int j = 0; j < 2; j++)
            time_pair(l, &t, x, y, n[j], reps, team, &ch->dense_us[j], &ch->sparse_us[j]);
        if (team)
            nn_blas_serial_end(blas);
    } else if (rc == KD_ENOMEM) {
        kd_err_set(e, KD_ENOMEM, "out of memory for timing");
    }
    nn_team_free(team);
    t.ops->release(&t);
    kd_afree(x);
    kd_afree(y);
    return rc;
}

/* Whether CSR passes the timing test at batch j (see COMPRESS_SPARSE_MARGIN);
 * otherwise why[] says by how much it lost. */
static int csr_wins(compress_choice *ch, int j, int smaller)
{
    double d = ch->dense_us[j], s = ch->sparse_us[j];
    if (smaller ? s <= d * (1 + COMPRESS_SPARSE_MARGIN) : s < d)
        return 1;
    snprintf(ch->why, sizeof ch->why, "kept dense: CSR %.2fx slower at batch %d (%.1f vs %.1f us)",
             d > 0 ? s / d : 0, j ? BIG_BATCH : 1, s, d);
    return 0;
}

static int decide_policy(compress_sparse_policy p, int smaller, compress_choice *ch)
{
    int conv;
    if (p == COMPRESS_SPARSE_ALWAYS)
        conv = 1;
    else if (p == COMPRESS_SPARSE_SMALLER) {
        if (!(conv = smaller))
            snprintf(ch->why, sizeof ch->why, "kept dense: CSR would not be smaller");
    } else if (p == COMPRESS_SPARSE_LATENCY)
        conv = csr_wins(ch, 0, smaller);
    else
        conv = csr_wins(ch, 0, smaller) && csr_wins(ch, 1, smaller);
    if (conv && ch->sparse_us[0] > 0)
        snprintf(ch->why, sizeof ch->why, "csr: %.2fx dense's speed at batch 1, %.2fx at batch %d",
                 ch->dense_us[0] / ch->sparse_us[0], ch->dense_us[1] / ch->sparse_us[1],
                 BIG_BATCH);
    else if (conv)
        snprintf(ch->why, sizeof ch->why, "csr (%s)", p == COMPRESS_SPARSE_ALWAYS ? "always" : "smaller");
    return conv;
}

/* Decides layer i: fills ch and, when converting, *out gets the CSR. */
static int decide(nn_model *m, int i, const compress_sparse_opts *o, compress_choice *ch,
                  compress_csr **out, kd_err *e)
{
    nn_layer *l = &m->layers[i];
    memset(ch, 0, sizeof *ch);
    *out = NULL;
    if (!compress_is_dense(l))
        return KD_OK;
    size_t nz = 0;
    for (size_t k = 0; k < l->nw; k++)
        nz += l->w[k] != 0.0f;
    ch->sparsity = 1.0 - (double)nz / (double)l->nw;
    if (o->policy == COMPRESS_SPARSE_NEVER)
        return KD_OK;
    compress_csr *a = compress_csr_from_dense(l->w, l->spec.units, (int)nn_shape_size(l->in), e);
    if (!a)
        return KD_ENOMEM;
    int rc = KD_OK;
    if (o->policy == COMPRESS_SPARSE_MEASURE || o->policy == COMPRESS_SPARSE_LATENCY)
        rc = time_layer(l, a, o->reps > 0 ? o->reps : 20, ch, e);
    /* the CSR payload's bytes against the dense weights' */
    int smaller = compress_csr_stored_bytes(a) < 4 * l->nw;
    if (rc == KD_OK)
        ch->converted = decide_policy(o->policy, smaller, ch);
    if (rc == KD_OK && ch->converted)
        *out = a;
    else
        compress_csr_free(a);
    return rc;
}

/* Copies layer src's parameters, buffers and payload (or the new CSR a,
 * taken) into dst. */
static int fill_layer(nn_layer *dst, const nn_layer *src, compress_csr *a, kd_err *e)
{
    if (a)
        dst->data = a;
    else if (dst->nw)
        memcpy(dst->w, src->w, dst->nw * sizeof *dst->w);
    if (dst->nb)
        memcpy(dst->b, src->b, dst->nb * sizeof *dst->b);
    if (dst->nbuf)
        memcpy(dst->buf, src->buf, dst->nbuf * sizeof *dst->buf);
    if (!a && src->ops->copy && src->data)
        return src->ops->copy(dst, src, e);
    return KD_OK;
}

nn_model *compress_to_sparse(nn_model *m, const compress_sparse_opts *o, compress_choice *choices,
                             kd_err *e)
{
    compress_sparse_opts def = {0};
    o = o ? o : &def;
    compress_csr **csr = kd_calloc((size_t)m->nlayers, sizeof *csr);
    nn_layer_spec *specs = kd_calloc((size_t)m->nlayers, sizeof *specs);
    nn_model *s = NULL;
    if (!csr || !specs) {
        kd_err_set(e, KD_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < m->nlayers; i++) {
        compress_choice ch;
        if (decide(m, i, o, &ch, &csr[i], e) != KD_OK)
            goto out;
        if (choices)
            choices[i] = ch;
        specs[i] = m->layers[i].spec;
        if (csr[i])
            specs[i].ops = &compress_dense_csr_ops;
    }
    if (!(s = nn_model_new(m->in, specs, m->nlayers, NULL, e)))
        goto out;
    for (int i = 0; i < m->nlayers; i++) {
        int rc = fill_layer(&s->layers[i], &m->layers[i], csr[i], e);
        csr[i] = NULL;
        if (rc != KD_OK) {
            nn_model_free(s);
            s = NULL;
            goto out;
        }
    }
    s->in_mean = m->in_mean;
    s->in_std = m->in_std;
out:
    for (int i = 0; csr && i < m->nlayers; i++)
        compress_csr_free(csr[i]);
    kd_free(csr);
    kd_free(specs);
    return s;
}
