/* A team of threads that run one job split in parts (nn_team_run).
 *
 * Why one team per model: layers that do not call OpenBLAS (int8, sparse)
 * split their work across the cores OpenBLAS would use.  One team per layer
 * meant a spinning worker per layer, and on a 2-core machine three of them
 * fought over the cores between calls; a model owns one team and lends it to
 * its layers through nn_ctx.
 *
 * Workers wait for a new job generation by spinning (a layer takes tens of
 * microseconds, far less than a sleep/wake round trip), then sleep on a
 * condition variable when no job came for a while; the caller waits for the
 * parts the same way (spin, then sleep on done_cv). */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TEAM_CPU_PAUSE() _mm_pause()
#else
#define TEAM_CPU_PAUSE() ((void)0)
#endif

#include "nn.h"

/* A waiting thread spins (a pause per turn) for up to TEAM_SPIN_NS, then
 * sleeps on a condition variable.  No sched_yield: on 2 cores a yielding
 * spinner turned 17-25% of a training run into kernel time (issue 12), while
 * the gaps between the jobs of a training step are a few microseconds and the
 * gap between steps (loss, next batch) well under the spin window. */
#define TEAM_SPIN_NS 200000L

static long team_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* vDSO: no system call */
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Pauses once; returns 0 once the spin window that began at *t0 is over
 * (the clock is read every 64 turns; *t0 = 0 starts the window). */
static int team_spin(int i, long *t0)
{
    TEAM_CPU_PAUSE();
    if (i % 64)
        return 1;
    long now = team_now_ns();
    if (!*t0)
        *t0 = now;
    return now - *t0 < TEAM_SPIN_NS;
}

typedef struct {
    struct nn_team *t;
    int idx;
} team_arg;

struct nn_team {
    int n;       /* threads, the caller included */
    int started; /* workers running (n - 1 once set up) */
    pthread_t *th;
    team_arg *args;
    _Atomic unsigned gen; /* bumped once per job (and to quit) */
    _Atomic int pending;  /* workers still on the current job */
    _Atomic int sleepers; /* workers on (or about to wait on) cv */
    _Atomic int quit;
    _Atomic int waiting;  /* the caller sleeps (or is about to) on done_cv */
    pthread_mutex_t mu;
    pthread_cond_t cv, done_cv;
    /* the current job, written before gen is bumped */
    nn_team_fn fn;
    void *arg;
    unsigned long jobs; /* split jobs run (the caller's, one at a time) */
};

/* Returns the generation after `seen` once it is published (or quit is set). */
static unsigned team_wait(nn_team *t, unsigned seen)
{
    long t0 = 0;
    for (int i = 0;; i++) {
        unsigned g = atomic_load(&t->gen);
        if (g != seen)
            return g;
        if (!team_spin(i, &t0))
            break;
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
    nn_team *t = a->t;
    unsigned seen = 0;
    for (;;) {
        seen = team_wait(t, seen);
        if (atomic_load(&t->quit))
            return NULL;
        t->fn(t->arg, a->idx, t->n);
        /* the last part wakes a sleeping caller (see team_join) */
        if (atomic_fetch_sub(&t->pending, 1) == 1 && atomic_load(&t->waiting)) {
            pthread_mutex_lock(&t->mu);
            pthread_cond_signal(&t->done_cv);
            pthread_mutex_unlock(&t->mu);
        }
    }
}

/* Publishes the job (or quit) and wakes sleepers.  A worker that counted
 * itself a sleeper after we read `sleepers` re-checks gen under the mutex and
 * sees the new one (all seq_cst), so no wake-up is lost. */
static void team_publish(nn_team *t)
{
    atomic_fetch_add(&t->gen, 1);
    if (atomic_load(&t->sleepers) > 0) {
        pthread_mutex_lock(&t->mu);
        pthread_cond_broadcast(&t->cv);
        pthread_mutex_unlock(&t->mu);
    }
}

void nn_team_free(nn_team *t)
{
    if (!t)
        return;
    atomic_store(&t->quit, 1);
    team_publish(t);
    for (int i = 0; i < t->started; i++)
        pthread_join(t->th[i], NULL);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    pthread_cond_destroy(&t->done_cv);
    kd_free(t->th);
    kd_free(t->args);
    kd_free(t);
}

nn_team *nn_team_new(int nthreads, kd_err *e)
{
    if (nthreads < 1 || nthreads > NN_TEAM_MAX) {
        kd_err_set(e, KD_ECONFIG, "thread team: %d threads, need 1..%d", nthreads, NN_TEAM_MAX);
        return NULL;
    }
    nn_team *t = kd_calloc(1, sizeof *t);
    if (!t || !(t->th = kd_calloc((size_t)nthreads, sizeof *t->th)) ||
        !(t->args = kd_calloc((size_t)nthreads, sizeof *t->args))) {
        if (t)
            kd_free(t->th);
        kd_free(t);
        kd_err_set(e, KD_ENOMEM, "thread team: out of memory");
        return NULL;
    }
    t->n = nthreads;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    pthread_cond_init(&t->done_cv, NULL);
    for (int i = 1; i < nthreads; i++) {
        t->args[i] = (team_arg){.t = t, .idx = i};
        int rc = pthread_create(&t->th[t->started], NULL, team_worker, &t->args[i]);
        if (rc) {
            nn_team_free(t);
            kd_err_set(e, KD_ERUNTIME, "thread team: cannot start thread %d of %d", i + 1,
                       nthreads);
            return NULL;
        }
        t->started++;
    }
    return t;
}

int nn_team_size(const nn_team *t) { return t ? t->n : 1; }

unsigned long nn_team_jobs(const nn_team *t) { return t ? t->jobs : 0; }

/* Waits until every worker finished its part.  A worker that takes the
 * pending count to zero after we set `waiting` signals under the mutex, and
 * we re-check pending under it (all seq_cst), so no wake-up is lost. */
static void team_join(nn_team *t)
{
    long t0 = 0;
    for (int i = 0; atomic_load(&t->pending) > 0; i++)
        if (!team_spin(i, &t0)) {
            atomic_store(&t->waiting, 1);
            pthread_mutex_lock(&t->mu);
            while (atomic_load(&t->pending) > 0)
                pthread_cond_wait(&t->done_cv, &t->mu);
            pthread_mutex_unlock(&t->mu);
            atomic_store(&t->waiting, 0);
            return;
        }
}

void nn_team_run(nn_team *t, nn_team_fn fn, void *arg)
{
    if (!t || t->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    t->fn = fn;
    t->arg = arg;
    t->jobs++;
    atomic_store(&t->pending, t->n - 1);
    team_publish(t);
    fn(arg, 0, t->n);
    team_join(t);
}

nn_team *nn_team_for(nn_team *t, double bytes)
{
    return bytes >= NN_TEAM_SPLIT_BYTES ? t : NULL;
}

void nn_team_range(size_t n, int part, int nparts, size_t *lo, size_t *hi)
{
    size_t blocks = (n + 15) / 16; /* 64-byte blocks of floats: parts share no cache line */
    *lo = blocks * (size_t)part / (size_t)nparts * 16;
    *hi = blocks * (size_t)(part + 1) / (size_t)nparts * 16;
    *lo = *lo < n ? *lo : n;
    *hi = *hi < n ? *hi : n;
}
