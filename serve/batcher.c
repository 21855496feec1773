/* Dynamic batching: one worker thread per model gathers queued requests into
 * one forward.  The worker takes whatever is queued (up to max_batch rows);
 * with max_delay_us > 0 a batch that is not full waits that long after its
 * oldest request for more.  A full queue refuses at once (the server answers
 * 429), so no request waits without bound. */
#include <errno.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include "internal.h"

struct serve_batcher {
    nn_model *m;
    serve_metrics *mx;
    int max_batch, max_delay_us, max_queue;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    serve_job **q; /* ring of max_queue */
    int head, count;
    int stopping, started;
    int busy;    /* a forward runs (the worker's, or a caller's: serve_batcher_try_run) */
    int isolate; /* the model's answers depend on the batch: one forward per request */
    pthread_t thread;
    serve_batcher *shadow; /* NULL, or where every request is also run */
    nn_team *team;         /* NULL, or the model's own team (compute_threads > 1) */
    /* the worker's own buffers, for max_batch rows */
    float *x;
    int xcap;
};

serve_batcher *serve_batcher_new(nn_model *m, int max_batch, int max_delay_us, int max_queue,
                                 int compute_threads, serve_metrics *mx, kd_err *e)
{
    serve_batcher *b = kd_calloc(1, sizeof *b);
    if (!b || !(b->q = kd_calloc((size_t)max_queue, sizeof *b->q))) {
        kd_free(b);
        kd_err_set(e, KD_ENOMEM, "out of memory for a queue of %d", max_queue);
        return NULL;
    }
    if (compute_threads > 1 && !(b->team = nn_team_new(compute_threads, e))) {
        kd_free(b->q);
        kd_free(b);
        return NULL;
    }
    b->m = m;
    b->mx = mx;
    b->max_batch = max_batch;
    b->max_delay_us = max_delay_us;
    b->max_queue = max_queue;
    pthread_mutex_init(&b->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    return b;
}

/* Queues j if fewer than cap jobs wait. */
static int submit_below(serve_batcher *b, serve_job *j, int cap)
{
    pthread_mutex_lock(&b->mu);
    int ok = !b->stopping && b->started && b->count < cap;
    if (ok) {
        b->q[(b->head + b->count) % b->max_queue] = j;
        b->count++;
        pthread_cond_signal(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
    return ok ? 0 : -1;
}

int serve_batcher_submit(serve_batcher *b, serve_job *j)
{
    return submit_below(b, j, b->max_queue);
}


/* Rows of the queued jobs that fit one batch (at least the first job). */
static int queued_fit(const serve_batcher *b, int *njobs)
{
    int rows = 0, k = 0;
    while (k < b->count) {
        int r = b->q[(b->head + k) % b->max_queue]->rows;
        if (k > 0 && rows + r > b->max_batch)
            break;
        rows += r;
        k++;
        if (rows >= b->max_batch)
            break;
    }
    *njobs = k;
    return rows;
}

static void softmax_rows(const float *z, int rows, int k, float *p)
{
    for (int r = 0; r < rows; r++) {
        const float *zr = z + (size_t)r * k;
        float *pr = p + (size_t)r * k, mx = zr[0], s = 0;
        for (int i = 1; i < k; i++)
            mx = zr[i] > mx ? zr[i] : mx;
        for (int i = 0; i < k; i++)
            s += pr[i] = expf(zr[i] - mx);
        for (int i = 0; i < k; i++)
            pr[i] /= s;
    }
}

/* Waits (mutex held) until a batch is ready or the batcher stops with an
 * empty queue (returns 0 then). */
static int wait_batch(serve_batcher *b, serve_job **jobs, int *njobs)
{
    while ((b->count == 0 || b->busy) && !(b->stopping && !b->busy))
        pthread_cond_wait(&b->cv, &b->mu);
    if (b->count == 0)
        return 0;
    if (b->max_delay_us > 0 && !b->stopping) {
        double until = b->q[b->head]->t_submit + b->max_delay_us * 1e-6;
        int k;
        while (!b->stopping && queued_fit(b, &k) < b->max_batch && k == b->count) {
            double left = until - kd_now();
            if (left <= 0)
                break;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            long long ns = ts.tv_nsec + (long long)(left * 1e9);
            ts.tv_sec += ns / 1000000000;
            ts.tv_nsec = ns % 1000000000;
            pthread_cond_timedwait(&b->cv, &b->mu, &ts);
        }
    }
    queued_fit(b, njobs);
    for (int i = 0; i < *njobs; i++)
        jobs[i] = b->q[(b->head + i) % b->max_queue];
    b->head = (b->head + *njobs) % b->max_queue;
    b->count -= *njobs;
    b->busy = 1;
    return 1;
}

/* The forward is free again: the worker may take what queued meanwhile. */
static void release(serve_batcher *b)
{
    pthread_mutex_lock(&b->mu);
    b->busy = 0;
    if (b->count || b->stopping) /* the worker waits for the forward to be free */
        pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

/* ---- shadow ------------------------------------------------------------------
 * A copy of a request run on the shadow model after the request is answered;
 * its done compares classes and counts agreement in the primary's metrics. */
typedef struct {
    serve_job job;
    serve_metrics *mx; /* the primary model's */
    int *cls;          /* the primary model's classes */
    int k;             /* the shadow's classes per row */
} shadow_job;

static void shadow_free(shadow_job *s)
{
    kd_afree(s->job.x);
    kd_free(s->job.probs);
    kd_free(s->cls);
    kd_free(s);
}

static void shadow_done(serve_job *j)
{
    shadow_job *s = (shadow_job *)j;
    int agree = 0;
    if (!isnan(j->probs[0]))
        for (int r = 0; r < j->rows; r++) {
            int c;
            serve_argmax(j->probs + (size_t)r * s->k, 1, s->k, &c);
            agree += c == s->cls[r];
        }
    serve_metrics_shadow(s->mx, j->rows, agree);
    shadow_free(s);
}

/* A shadow copy of j (answered by b's model), or NULL when out of memory. */
static shadow_job *shadow_copy(const serve_batcher *b, const serve_job *j)
{
    const size_t in = nn_shape_size(b->m->in);
    shadow_job *s = kd_calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->k = b->shadow->m->nclasses;
    s->mx = b->mx;
    s->job.rows = j->rows;
    s->job.x = kd_afloat((size_t)j->rows * in);
    s->job.probs = kd_malloc((size_t)j->rows * (size_t)s->k * sizeof(float));
    s->cls = kd_malloc((size_t)j->rows * sizeof(int));
    if (!s->job.x || !s->job.probs || !s->cls) {
        shadow_free(s);
        return NULL;
    }
    memcpy(s->job.x, j->x, (size_t)j->rows * in * sizeof(float));
    serve_argmax(j->probs, j->rows, b->m->nclasses, s->cls);
    s->job.done = shadow_done;
    return s;
}

void serve_batcher_shadow(serve_batcher *b, serve_batcher *shadow) { b->shadow = shadow; }

/* One batch: gather the inputs, one forward, softmax into each job. */
static void run_batch(serve_batcher *b, serve_job **jobs, int njobs, double *queue_s)
{
    const size_t in = nn_shape_size(b->m->in);
    const int k = b->m->nclasses;
    int rows = 0;
    double t0 = kd_now();
    for (int i = 0; i < njobs; i++) {
        queue_s[i] = t0 - jobs[i]->t_submit;
        rows += jobs[i]->rows;
    }
    const float *x = jobs[0]->x;
    if (njobs > 1 && !b->isolate) { /* a lone job is run from its own buffer */
        if (rows > b->xcap) {
            kd_afree(b->x);
            b->xcap = 0;
            if ((b->x = kd_afloat((size_t)rows * in)))
                b->xcap = rows;
        }
        if (b->x) {
            for (int i = 0, r = 0; i < njobs; r += jobs[i]->rows, i++)
                memcpy(b->x + (size_t)r * in, jobs[i]->x,
                       (size_t)jobs[i]->rows * in * sizeof(float));
            x = b->x;
        }
    }
    nn_ctx c = {.team = b->team};
    const float *z = NULL;
    if (x == jobs[0]->x && njobs > 1) { /* isolated, or no memory to gather: one at a time */
        for (int i = 0; i < njobs; i++)
            if ((z = nn_model_forward(b->m, jobs[i]->x, jobs[i]->rows, &c)))
                softmax_rows(z, jobs[i]->rows, k, jobs[i]->probs);
    } else if ((z = nn_model_forward(b->m, x, rows, &c))) {
        for (int i = 0, r = 0; i < njobs; r += jobs[i]->rows, i++)
            softmax_rows(z + (size_t)r * k, jobs[i]->rows, k, jobs[i]->probs);
    }
    if (!z) /* out of memory in forward: a NaN answer is refused by the server (500) */
        for (int i = 0; i < njobs; i++)
            jobs[i]->probs[0] = NAN;
    serve_metrics_batch(b->mx, queue_s, njobs, rows, kd_now() - t0);
    /* shadow copies are made before done: a job may be freed from there on */
    shadow_job **sh = b->shadow && z ? kd_calloc((size_t)njobs, sizeof *sh) : NULL;
    for (int i = 0; sh && i < njobs; i++)
        sh[i] = shadow_copy(b, jobs[i]);
    for (int i = 0; i < njobs; i++)
        jobs[i]->done(jobs[i]);
    for (int i = 0; sh && i < njobs; i++) {
        if (!sh[i])
            continue;
        sh[i]->job.t_submit = kd_now();
        /* shadow copies take at most half the shadow's queue: its own
         * requests are not refused (429) for them */
        if (submit_below(b->shadow, &sh[i]->job, (b->shadow->max_queue + 1) / 2) != 0)
            shadow_free(sh[i]); /* not compared */
    }
    kd_free(sh);
}

static void *worker(void *arg)
{
    serve_batcher *b = arg;
    serve_job **jobs = kd_calloc((size_t)b->max_queue, sizeof *jobs);
    double *queue_s = kd_calloc((size_t)b->max_queue, sizeof *queue_s);
    for (;;) {
        int njobs = 0;
        pthread_mutex_lock(&b->mu);
        int more = jobs && queue_s ? wait_batch(b, jobs, &njobs) : 0;
        pthread_mutex_unlock(&b->mu);
        if (!more)
            break;
        run_batch(b, jobs, njobs, queue_s);
        release(b);
    }
    kd_free(jobs);
    kd_free(queue_s);
    return NULL;
}

/* Whether a row's answer depends on the other rows of its batch beyond
 * rounding: two rows of very different scale run together and alone (a
 * kind that quantizes its input per call over the whole batch, int8-dyn,
 * does; fp32 GEMMs differ in the last bits only).  Such a model runs each
 * request as its own forward, so no request's answer depends on another's. */
static int batch_dependent(nn_model *m)
{
    const size_t in = nn_shape_size(m->in);
    const int k = m->nclasses;
    float *x = kd_afloat(2 * in), *zb = kd_afloat(2 * (size_t)k);
    int dep = 0;
    nn_ctx c = {0};
    nn_rng r = nn_rng_stream(7, NN_STREAM_TEST);
    const float *z;
    if (x && zb && nn_model_reserve(m, 2, NULL) == KD_OK) {
        for (size_t i = 0; i < 2 * in; i++)
            x[i] = nn_rng_normal(&r) * (i < in ? 1.0f : 30.0f);
        if ((z = nn_model_forward(m, x, 2, &c)))
            memcpy(zb, z, 2 * (size_t)k * sizeof *zb);
        for (int row = 0; z && row < 2; row++)
            if ((z = nn_model_forward(m, x + row * in, 1, &c)))
                for (int j = 0; j < k; j++)
                    dep |= fabsf(z[j] - zb[row * k + j]) > 1e-4f * (1 + fabsf(z[j]));
    }
    kd_afree(x);
    kd_afree(zb);
    return dep;
}

int serve_batcher_isolated(const serve_batcher *b) { return b->isolate; }

int serve_batcher_start(serve_batcher *b, kd_err *e)
{
    /* a worker per model: batch-1 work stays on it, unless it has a team */
    b->m->b1_threads = b->team ? 0 : 1;
    b->isolate = b->max_batch > 1 && batch_dependent(b->m);
    if (nn_model_reserve(b->m, b->max_batch, e) != KD_OK)
        return e ? e->code : KD_ENOMEM;
    b->started = 1;
    if (pthread_create(&b->thread, NULL, worker, b) != 0) {
        b->started = 0;
        return kd_err_set(e, KD_ERUNTIME, "cannot start a model worker thread");
    }
    return KD_OK;
}

void serve_batcher_stop(serve_batcher *b)
{
    pthread_mutex_lock(&b->mu);
    int join = b->started && !b->stopping;
    b->stopping = 1;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    if (join)
        pthread_join(b->thread, NULL);
}

void serve_batcher_free(serve_batcher *b)
{
    if (!b)
        return;
    serve_batcher_stop(b);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    kd_afree(b->x);
    kd_free(b->q);
    nn_team_free(b->team);
    kd_free(b);
}

int serve_batcher_try_run(serve_batcher *b, serve_job *j)
{
    pthread_mutex_lock(&b->mu);
    /* with max_delay_us, a lone request waits for company instead */
    int mine = b->max_delay_us == 0 && b->started && !b->stopping && !b->busy && b->count == 0;
    if (mine)
        b->busy = 1;
    pthread_mutex_unlock(&b->mu);
    if (!mine)
        return 0;
    double queue_s;
    run_batch(b, &j, 1, &queue_s);
    release(b);
    return 1;
}
