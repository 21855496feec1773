/* The training loop: shuffle, batch, forward, loss, backward, step, validate. */
#include <string.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "train.h"

int train_state_init(train_state *st, nn_model *m, const train_opts *o, kd_err *e)
{
    memset(st, 0, sizeof *st);
    st->model = m;
    st->opt = nn_optim_new(&o->opt, m->nparams, e);
    return st->opt ? KD_OK : KD_ENOMEM;
}

void train_state_free(train_state *st)
{
    nn_optim_free(st->opt);
    kd_free(st->history);
    st->opt = NULL;
    st->history = NULL;
}

/* Scratch for one batch: inputs, labels, dlogits. */
typedef struct {
    float *x, *dl;
    uint8_t *y;
} batch_buf;

static int batch_alloc(batch_buf *b, int n, size_t in_size, int k)
{
    b->x = kd_afloat((size_t)n * in_size);
    b->dl = kd_afloat((size_t)n * k);
    b->y = kd_malloc((size_t)n);
    return b->x && b->dl && b->y ? KD_OK : KD_ENOMEM;
}

static void batch_free(batch_buf *b)
{
    kd_afree(b->x);
    kd_afree(b->dl);
    kd_free(b->y);
}

int train_evaluate(nn_model *m, const data_set *d, int batch, double *loss, double *acc,
                   kd_err *e)
{
    if (batch < 1) /* would never advance */
        return kd_err_set(e, KD_ECONFIG, "batch size %d; it must be >= 1", batch);
    if (d->nclasses > m->nclasses)
        return kd_err_set(e, KD_ERUNTIME, "data has %d classes, the model outputs %d",
                          d->nclasses, m->nclasses);
    if (nn_shape_size(d->shape) != nn_shape_size(m->in))
        return kd_err_set(e, KD_ERUNTIME, "data has %zu features per sample, the model takes %zu",
                          nn_shape_size(d->shape), nn_shape_size(m->in));
    batch_buf b = {0};
    int *idx = kd_malloc((size_t)batch * sizeof *idx);
    if (!idx || batch_alloc(&b, batch, nn_shape_size(m->in), m->nclasses) != KD_OK ||
        nn_model_reserve(m, batch, e) != KD_OK) {
        kd_free(idx);
        batch_free(&b);
        return kd_err_set(e, KD_ENOMEM, "out of memory for evaluation");
    }
    nn_ctx c = {.train = 0};
    double total = 0;
    long correct = 0;
    for (int s = 0; s < d->n; s += batch) {
        int n = d->n - s < batch ? d->n - s : batch;
        for (int i = 0; i < n; i++)
            idx[i] = s + i;
        data_batch(d, idx, n, m->in_mean, m->in_std, b.x, b.y);
        const float *z = nn_model_forward(m, b.x, n, &c);
        total += (double)nn_softmax_xent(z, b.y, n, m->nclasses, NULL) * n;
        correct += nn_count_correct(z, b.y, n, m->nclasses);
    }
    if (loss)
        *loss = d->n ? total / d->n : 0;
    if (acc)
        *acc = d->n ? (double)correct / d->n : 0;
    kd_free(idx);
    batch_free(&b);
    return KD_OK;
}

static float default_loss(void *ctx, const float *logits, const uint8_t *labels, const int *idx,
                          int n, int k, float *dlogits)
{
    (void)ctx;
    (void)idx;
    return nn_softmax_xent(logits, labels, n, k, dlogits);
}

/* One epoch over tr in the epoch's seeded order; fills ep's training fields.
 * Fails only when the on_step hook does. */
static int run_epoch(train_state *st, const train_opts *o, const data_set *tr,
                     const train_hooks *h, int *perm, batch_buf *b, train_epoch *ep, kd_err *e)
{
    nn_model *m = st->model;
    const int ep0 = st->epochs_done, bs = o->batch_size, k = m->nclasses;
    const long nb = (tr->n + bs - 1) / bs;
    for (int i = 0; i < tr->n; i++)
        perm[i] = i;
    /* streams derived from (seed, epoch): a resumed run draws the same numbers */
    nn_rng shuf = nn_rng_stream(o->seed, NN_STREAM_SHUFFLE | ((uint64_t)(ep0 + 1) << 8));
    nn_rng drop = nn_rng_stream(o->seed, NN_STREAM_DROPOUT | ((uint64_t)(ep0 + 1) << 8));
    nn_rng_shuffle(&shuf, perm, tr->n);
    nn_ctx c = {.train = 1, .rng = &drop};
    train_loss_fn lossf = h && h->loss ? h->loss : default_loss;
    if (h && h->begin_epoch)
        h->begin_epoch(h->loss_ctx, ep0 + 1);
    kd_progress pg;
    char label[64];
    snprintf(label, sizeof label, "%s epoch %d/%d", h && h->label ? h->label : "train", ep0 + 1,
             o->epochs);
    kd_progress_start(&pg, h ? h->progress : NULL, h ? h->quiet : 1, label, nb);
    double t0 = kd_now(), total = 0, lr = 0;
    long correct = 0;
    for (long bi = 0; bi < nb; bi++) {
        if (h && h->cancel && *h->cancel) {
            kd_progress_end(&pg, NULL);
            return kd_err_set(e, KD_ECANCELED, "interrupted; resume with --resume");
        }
        int s = (int)(bi * bs), n = tr->n - s < bs ? tr->n - s : bs, lo = 0, hi = n;
        if (h && h->shard) /* data-parallel: this process's share of the batch */
            h->shard(h->par_ctx, n, &lo, &hi);
        double stats[2] = {0, 0};
        nn_model_zero_grad(m);
        if (hi > lo) {
            const int nl = hi - lo;
            data_batch(tr, perm + s + lo, nl, m->in_mean, m->in_std, b->x, b->y);
            const float *z = nn_model_forward(m, b->x, nl, &c);
            float l = lossf(h ? h->loss_ctx : NULL, z, b->y, perm + s + lo, nl, k, b->dl);
            stats[0] = (double)l * nl;
            stats[1] = nn_count_correct(z, b->y, nl, k);
            if (h && h->dtap)
                nn_model_backward_ex(m, b->dl, h->tap, h->dtap, NULL, nl, &c);
            else
                nn_model_backward(m, b->dl, nl, &c);
        }
        if (h && h->reduce) {
            int rc = h->reduce(h->par_ctx, m, hi - lo, n, stats, e);
            if (rc != KD_OK) {
                kd_progress_end(&pg, NULL);
                return rc;
            }
        }
        total += stats[0];
        correct += (long)stats[1];
        lr = nn_sched_lr(&o->sched, o->opt.lr, ep0 + (double)bi / nb, o->epochs);
        nn_optim_step_clear(st->opt, m, (float)lr); /* the next zero_grad: free */
        int rc = h && h->on_step ? h->on_step(h->step_ctx, m, (float)lr, e) : KD_OK;
        if (rc != KD_OK) {
            kd_progress_end(&pg, NULL);
            return rc;
        }
        char extra[48];
        snprintf(extra, sizeof extra, "loss %.4f", total / (s + n));
        kd_progress_update(&pg, bi + 1, extra, (double)bs);
    }
    ep->epoch = ep0 + 1;
    ep->seconds = kd_now() - t0;
    ep->loss = total / tr->n;
    ep->train_acc = (double)correct / tr->n;
    ep->lr = lr;
    ep->samples_per_s = ep->seconds > 0 ? tr->n / ep->seconds : 0;
    kd_progress_end(&pg, NULL);
    return KD_OK;
}

/* Denormal floats flushed to zero on this thread while training, then the
 * caller's mode restored.  Why: a momentum that decays with no gradient left
 * (weights pruned in the middle of a run) crosses the denormal range, where
 * each x86 operation takes ~100 cycles: measured, the epochs after an AGP
 * ramp ran 1.3-2x slower.  Values below 1e-38 change no result that matters. */
typedef struct {
    unsigned csr;
} fpmode;

static fpmode fpmode_flush(void)
{
    fpmode f = {0};
#if defined(__SSE__)
    f.csr = _mm_getcsr();
    _mm_setcsr(f.csr | 0x8040); /* FTZ (bit 15) and DAZ (bit 6) */
#endif
    return f;
}

static void fpmode_restore(fpmode f)
{
#if defined(__SSE__)
    _mm_setcsr(f.csr);
#else
    (void)f;
#endif
}

static int fit(train_state *st, const train_opts *o, const data_set *tr, const data_set *val,
               const train_hooks *h, kd_err *e);

int train_fit(train_state *st, const train_opts *o, const data_set *tr, const data_set *val,
              const train_hooks *h, kd_err *e)
{
    fpmode f = fpmode_flush();
    /* one pool: the model's team with OpenBLAS serial inside (nn.h) */
    int team = nn_model_train_team_begin(st->model);
    int rc = fit(st, o, tr, val, h, e);
    nn_model_train_team_end(st->model, team);
    fpmode_restore(f);
    return rc;
}

static int fit(train_state *st, const train_opts *o, const data_set *tr, const data_set *val,
               const train_hooks *h, kd_err *e)
{
    nn_model *m = st->model;
    if (o->batch_size < 1) /* divides the set into batches */
        return kd_err_set(e, KD_ECONFIG, "batch size %d; it must be >= 1", o->batch_size);
    if (tr->n < 1)
        return kd_err_set(e, KD_ERUNTIME, "the training set is empty");
    if (nn_shape_size(tr->shape) != nn_shape_size(m->in))
        return kd_err_set(e, KD_ERUNTIME, "data has %zu features per sample, the model takes %zu",
                          nn_shape_size(tr->shape), nn_shape_size(m->in));
    if (tr->nclasses > m->nclasses || (val && val->n && val->nclasses > m->nclasses))
        return kd_err_set(e, KD_ERUNTIME, "data has %d classes, the model outputs %d",
                          tr->nclasses, m->nclasses);
    if (st->epochs_done == 0)
        data_stats(tr, &m->in_mean, &m->in_std);
    batch_buf b = {0};
    int *perm = kd_malloc((size_t)tr->n * sizeof *perm);
    int rc = KD_OK;
    if (!perm || batch_alloc(&b, o->batch_size, nn_shape_size(m->in), m->nclasses) != KD_OK ||
        nn_model_reserve(m, o->batch_size, e) != KD_OK) {
        rc = kd_err_set(e, KD_ENOMEM, "out of memory for training");
        goto out;
    }
    while (st->epochs_done < o->epochs) {
        train_epoch ep = {0};
        if ((rc = run_epoch(st, o, tr, h, perm, &b, &ep, e)) != KD_OK)
            goto out;
        ep.val_loss = ep.val_acc = -1;
        if (val && val->n > 0 &&
            (rc = train_evaluate(m, val, 256, &ep.val_loss, &ep.val_acc, e)) != KD_OK)
            goto out;
        train_epoch *hist = kd_realloc(st->history, (size_t)(st->epochs_done + 1) * sizeof *hist);
        if (!hist) {
            rc = kd_err_set(e, KD_ENOMEM, "out of memory");
            goto out;
        }
        st->history = hist;
        hist[st->epochs_done++] = ep;
        st->seconds += ep.seconds;
        if (h && h->on_epoch && (rc = h->on_epoch(h->cb_ctx, st, &ep, e)) != KD_OK)
            goto out;
    }
out:
    kd_free(perm);
    batch_free(&b);
    return rc;
}
