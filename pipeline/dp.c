/* Data-parallel teacher training (`teacher.train.parallel: data` under
 * mpirun): every rank trains the same model on its shard of every batch
 * (contiguous: rank r takes samples [n r / N, n (r + 1) / N)); after
 * backward each rank's gradient, weighted by its share, is summed over the
 * ranks — in rank order on rank 0 then broadcast (`reduce: ordered`, the
 * default: bit-identical run after run for a given N), or by MPI_Allreduce
 * (`reduce: fast`) — so every rank takes the same optimiser step.  The
 * state starts identical: rank 0 broadcasts it as a checkpoint (fresh,
 * resumed or from the cache).  One process differs only in the float
 * summation order of the gradient (and batch norm sees the shard's batch). */
#include <unistd.h>

#include "spread.h"

typedef struct {
    dist_comm *d;
    int fast;
    const volatile sig_atomic_t *cancel;
} dp_ctx;

static void dp_shard(void *ctx, int n, int *lo, int *hi)
{
    const dp_ctx *p = ctx;
    long long r = dist_rank(p->d), size = dist_size(p->d);
    *lo = (int)(n * r / size);
    *hi = (int)(n * (r + 1) / size);
}

static int dp_reduce(void *ctx, nn_model *m, int n_local, int n, double *stats, kd_err *e)
{
    const dp_ctx *p = ctx;
    /* each rank's loss is a mean over its n_local samples: weighted by its
     * share, the sum is the mean over the whole batch */
    const float w = (float)n_local / (float)n;
    m->grads_zero = 0; /* the sum of the other ranks' lands in grads */
    for (size_t i = 0; i < m->nparams; i++)
        m->grads[i] *= w;
    int rc = p->fast ? dist_sum_fast(p->d, m->grads, m->nparams, e)
                     : dist_sum_ordered(p->d, m->grads, m->nparams, e);
    /* the batch's loss and hits, and whether any rank was asked to stop: all
     * ranks leave at the same batch */
    double v[3] = {stats[0], stats[1], p->cancel && *p->cancel ? 1 : 0};
    if (rc == KD_OK)
        rc = dist_sum_double(p->d, v, 3, e);
    if (rc != KD_OK)
        return rc;
    stats[0] = v[0];
    stats[1] = v[1];
    return v[2] > 0 ? kd_err_set(e, KD_ECANCELED, "interrupted; resume with --resume") : KD_OK;
}

int pl_dp_hooks(dist_comm *d, int fast, const volatile sig_atomic_t *cancel, train_hooks *h,
                void **ctx, kd_err *e)
{
    dp_ctx *p = kd_calloc(1, sizeof *p);
    if (!p)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    *p = (dp_ctx){.d = d, .fast = fast, .cancel = cancel};
    h->shard = dp_shard;
    h->reduce = dp_reduce;
    h->par_ctx = p;
    h->cancel = NULL; /* the reduce stops every rank at the same batch */
    *ctx = p;
    return KD_OK;
}

int pl_dp_on(const exp_spec *spec, const dist_comm *d)
{
    return spec->teacher.train.parallel && !spec->teacher.model_path[0] && dist_size(d) > 1;
}

/* [i32 status][checkpoint bytes] from rank 0 to all */
static int bcast_state(run_ctx *r, const train_state *st, int status, kd_err *e)
{
    kd_buf b = {0};
    uint8_t *ck = NULL;
    size_t len = 0;
    char path[PL_PATH];
    if (status == KD_OK) {
        pl_path(r, "teacher.dp.ckpt", path, sizeof path);
        if ((status = train_checkpoint_save(st, path, e)) == KD_OK)
            status = kd_read_file(path, (size_t)1 << 31, &ck, &len, e);
        unlink(path);
    }
    kd_buf_u32(&b, (uint32_t)status);
    kd_buf_put(&b, ck, len);
    kd_free(ck);
    if (b.failed) {
        kd_buf_free(&b);
        kd_buf_u32(&b, (uint32_t)(status = kd_err_set(e, KD_ENOMEM, "out of memory")));
    }
    void *p = b.p;
    size_t n = b.len;
    kd_err be;
    int rc = dist_bcast(r->o->dist, &p, &n, 0, &be);
    kd_buf_free(&b);
    r->dp_sent = 1;
    r->workers_gone = status != KD_OK; /* they return with it */
    if (rc != KD_OK && status == KD_OK)
        *e = be;
    return status != KD_OK ? status : rc;
}

int pl_dp_start(run_ctx *r, const train_state *st, train_hooks *h, void **ctx, kd_err *e)
{
    const int fast = r->spec->teacher.train.reduce_fast, n = dist_size(r->o->dist);
    int rc = pl_dp_hooks(r->o->dist, fast, r->o->cancel, h, ctx, e);
    if ((rc = bcast_state(r, st, rc, e)) != KD_OK) { /* the others learn it too */
        kd_free(*ctx);
        *ctx = NULL;
        return rc;
    }
    kd_logf(&r->log, "teacher: data-parallel on %d ranks, each on 1/%d of every batch; "
            "gradients summed %s", n, n, fast ? "by MPI_Allreduce" : "in rank order (deterministic)");
    return KD_OK;
}

void pl_dp_abort(run_ctx *r, const kd_err *e)
{
    char buf[1200];
    pl_warn(r, "error: %s; ending every rank", kd_err_str(e, buf, sizeof buf));
    dist_abort(r->o->dist, 1);
}

void pl_dp_fail(run_ctx *r, int rc)
{
    kd_err e;
    if (pl_dp_on(r->spec, r->o->dist) && !r->dp_sent)
        bcast_state(r, NULL, rc != KD_OK ? rc : KD_ERUNTIME, &e);
}

int pl_dp_worker(pl_worker *w, const exp_spec *spec, dist_comm *d, kd_err *e)
{
    void *p = NULL;
    size_t n = 0;
    int rc = dist_bcast(d, &p, &n, 0, e);
    kd_rd rd = {.p = p, .len = n, .ok = 1};
    int status = rc == KD_OK ? (int)kd_rd_u32(&rd) : rc;
    if (rc == KD_OK && status != KD_OK) {
        kd_free(p);
        *e = (kd_err){.code = status}; /* rank 0 failed and says why */
        return status;
    }
    train_opts to = teacher_train_opts(&spec->teacher, spec->seed);
    train_state st = {0};
    char path[PL_PATH];
    pl_path(&w->r, "teacher.dp.ckpt", path, sizeof path);
    if (rc == KD_OK && !rd.ok)
        rc = kd_err_set(e, KD_EFORMAT, "MPI: a malformed teacher state");
    if (rc == KD_OK && !w->failed.code)
        rc = kd_write_atomic(path, rd.p + rd.pos, rd.len - rd.pos, e);
    else if (rc == KD_OK)
        *e = w->failed, rc = e->code;
    kd_free(p);
    if (rc == KD_OK)
        rc = train_checkpoint_load(path, &to, &st, e);
    unlink(path);
    if (rc != KD_OK) /* rank 0 is training and waits for this rank's gradients */
        return rc;
    train_hooks h = {.quiet = 1};
    void *c = NULL;
    if ((rc = pl_dp_hooks(d, spec->teacher.train.reduce_fast, w->opts.cancel, &h, &c, e)) == KD_OK)
        rc = train_fit(&st, &to, &w->r.train, &w->r.val, &h, e);
    kd_free(c);
    nn_model_free(st.model);
    train_state_free(&st);
    return rc;
}
