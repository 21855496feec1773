/* A team of threads that split one int8 product by panels of rows.
 *
 * Why: at batch 1 the int8 MLP is bound by where its weights live.  Split by
 * panels, each core streams the same rows on every call, so each core's L2
 * keeps its own share (2.4 MB of int8 weights do not fit one 2 MB L2, half of
 * them do).  At batch 256 it simply doubles the arithmetic.
 *
 * Workers wait for a new job generation by spinning (a layer takes tens of
 * microseconds, far less than a sleep/wake round trip), then sleep on a
 * condition variable when no job came for a while. */
#include "qgemm_internal.h"

#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

/* Spin iterations (each a pause, ~10-100 ns) before a worker sleeps; past
 * TEAM_YIELD of them every wait also yields, so that on a busy machine a
 * spinning thread hands its core to the one it waits for. */
#define TEAM_SPIN 20000
#define TEAM_YIELD 256

static void team_pause(int i)
{
    if (i < TEAM_YIELD)
        _mm_pause();
    else
        sched_yield();
}

typedef struct {
    struct qgemm_team *t;
    int idx;
} team_arg;

struct qgemm_team {
    int n;       /* threads, the caller included */
    int started; /* workers running (n - 1 once set up) */
    pthread_t *th;
    team_arg *args;
    _Atomic unsigned gen; /* bumped once per job (and to quit) */
    _Atomic int pending;  /* workers still on the current job */
    _Atomic int sleepers; /* workers on (or about to wait on) cv */
    _Atomic int quit;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* the current job, written before gen is bumped */
    qgemm_isa isa;
    const qgemm_packed *w;
    const int8_t *x;
    int nx;
    const qgemm_epi *ep;
    void *y;
};

/* Thread idx's share of the panels: an even split in order. */
static void team_share(qgemm_team *t, int idx)
{
    int np = t->w->mp / 16;
    int pb = (int)((long)np * idx / t->n), pe = (int)((long)np * (idx + 1) / t->n);
    if (pb < pe)
        qgemm_run_part(t->isa, t->w, t->x, t->nx, t->ep, t->y, pb, pe);
}

/* Returns the generation after `seen` once it is published (or quit is set). */
static unsigned team_wait(qgemm_team *t, unsigned seen)
{
    for (int i = 0; i < TEAM_SPIN; i++) {
        unsigned g = atomic_load(&t->gen);
        if (g != seen)
            return g;
        team_pause(i);
    }
    atomic_fetch_add(&t->sleepers, 1);
    pthread_mutex_lock(&t->mu);
    while (atomic_load(&t->gen) == seen)
        pthread_cond_wait(&t->cv, &t->mu);
    pthread_mutex_unlock(&t->mu);
    atomic_fetch_sub(&t->sleepers, 1);
    return atomic_load(&t->gen);
}

static void *team_worker(void *arg)
{
    team_arg *a = arg;
    struct qgemm_team *t = a->t;
    unsigned seen = 0;
    for (;;) {
        seen = team_wait(t, seen);
        if (atomic_load(&t->quit))
            return NULL;
        team_share(t, a->idx);
        atomic_fetch_sub(&t->pending, 1);
    }
}

/* Publishes the job (or quit) and wakes sleepers.  A worker that counted
 * itself a sleeper after we read `sleepers` re-checks gen under the mutex and
 * sees the new one (all seq_cst), so no wake-up is lost. */
static void team_publish(qgemm_team *t)
{
    atomic_fetch_add(&t->gen, 1);
    if (atomic_load(&t->sleepers) > 0) {
        pthread_mutex_lock(&t->mu);
        pthread_cond_broadcast(&t->cv);
        pthread_mutex_unlock(&t->mu);
    }
}

void qgemm_team_free(qgemm_team *t)
{
    if (!t)
        return;
    atomic_store(&t->quit, 1);
    team_publish(t);
    for (int i = 0; i < t->started; i++)
        pthread_join(t->th[i], NULL);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    kd_free(t->th);
    kd_free(t->args);
    kd_free(t);
}

qgemm_team *qgemm_team_new(int nthreads, kd_err *e)
{
    if (nthreads < 1 || nthreads > 256) {
        kd_err_set(e, KD_ECONFIG, "qgemm team: %d threads, need 1..256", nthreads);
        return NULL;
    }
    qgemm_team *t = kd_calloc(1, sizeof *t);
    if (!t || !(t->th = kd_calloc((size_t)nthreads, sizeof *t->th)) ||
        !(t->args = kd_calloc((size_t)nthreads, sizeof *t->args))) {
        if (t)
            kd_free(t->th);
        kd_free(t);
        kd_err_set(e, KD_ENOMEM, "qgemm team: out of memory");
        return NULL;
    }
    t->n = nthreads;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    for (int i = 1; i < nthreads; i++) {
        t->args[i] = (team_arg){.t = t, .idx = i};
        int rc = pthread_create(&t->th[t->started], NULL, team_worker, &t->args[i]);
        if (rc) {
            qgemm_team_free(t);
            kd_err_set(e, KD_ERUNTIME, "qgemm team: cannot start thread %d of %d", i + 1,
                       nthreads);
            return NULL;
        }
        t->started++;
    }
    return t;
}

int qgemm_team_size(const qgemm_team *t) { return t ? t->n : 1; }

void qgemm_team_run(qgemm_team *t, qgemm_isa isa, const qgemm_packed *w, const int8_t *x, int n,
                    const qgemm_epi *ep, void *y)
{
    if (!t || t->n == 1) {
        qgemm_run(isa, w, x, n, ep, y);
        return;
    }
    t->isa = isa;
    t->w = w;
    t->x = x;
    t->nx = n;
    t->ep = ep;
    t->y = y;
    atomic_store(&t->pending, t->n - 1);
    team_publish(t);
    team_share(t, 0);
    for (int i = 0; atomic_load(&t->pending) > 0; i++)
        team_pause(i);
}
