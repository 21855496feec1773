/* Accuracy, size, latency and throughput, measured the same way for every variant. */
#include <stdlib.h>
#include <string.h>

#include "../train/train.h"
#include "measure.h"

/* Seconds of warm-up before timing (see measure_latency). */
#define MEASURE_SETTLE_S 0.25

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int measure_latency(nn_model *m, const float *x, int reps, int warmup, double *p50, double *p99,
                    kd_err *e)
{
    if (reps < 1)
        return kd_err_set(e, KD_ECONFIG, "latency needs at least one timed repetition");
    double *t = kd_malloc((size_t)reps * sizeof *t);
    if (!t || nn_model_reserve(m, 1, e) != KD_OK) {
        kd_free(t);
        return kd_err_set(e, KD_ENOMEM, "out of memory for latency");
    }
    nn_ctx c = {.train = 0};
    /* Warm up for `warmup` calls and at least MEASURE_SETTLE_S: after an
     * OpenBLAS call its idle threads busy-wait ~0.1 s (2^28 cycles) before
     * sleeping, so a model with its own thread team timed at once competes
     * with them (measured: int8 at batch 1 77 us instead of 15 us). */
    double t_end = kd_now() + MEASURE_SETTLE_S;
    for (int i = 0; i < warmup || (warmup > 0 && kd_now() < t_end); i++)
        nn_model_forward(m, x, 1, &c);
    for (int i = 0; i < reps; i++) {
        double t0 = kd_now();
        nn_model_forward(m, x, 1, &c);
        t[i] = (kd_now() - t0) * 1e6;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    /* both as index (reps-1)*p, so p99 >= p50 for every reps (reps/2 was not, at 2) */
    *p50 = t[(reps - 1) / 2];
    *p99 = t[(int)((reps - 1) * 0.99)];
    kd_free(t);
    return KD_OK;
}

double measure_host_load(void)
{
    FILE *f = fopen("/proc/loadavg", "r");
    double l = -1;
    if (f && fscanf(f, "%lf", &l) != 1)
        l = -1;
    if (f)
        fclose(f);
    return l;
}

static double median_of(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* One round's block of calls at the model's current b1_threads: a few
 * untimed calls first (a team asleep since the other block wakes up), then
 * `reps` timed calls into t. */
static void time_block(nn_model *m, const float *x, int reps, double *t)
{
    nn_ctx c = {.train = 0};
    for (int i = 0; i < 3 + reps / 10; i++)
        nn_model_forward(m, x, 1, &c);
    for (int i = 0; i < reps; i++) {
        double t0 = kd_now();
        nn_model_forward(m, x, 1, &c);
        t[i] = (kd_now() - t0) * 1e6;
    }
}

int measure_latency_pick(nn_model *m, const float *x, int reps, int warmup, measure_result *r,
                         kd_err *e)
{
    if (reps < 1)
        return kd_err_set(e, KD_ECONFIG, "latency needs at least one timed repetition");
    const int nt = nn_threads() > 1 ? 2 : 1; /* configurations: one thread, all */
    const int rounds = reps >= 10 * MEASURE_ROUNDS ? MEASURE_ROUNDS : 1;
    const int per = (reps + rounds - 1) / rounds;
    double *t = kd_malloc((size_t)nt * rounds * per * sizeof *t);
    double med[2][MEASURE_ROUNDS], p50[2];
    if (!t || nn_model_reserve(m, 1, e) != KD_OK) {
        kd_free(t);
        return kd_err_set(e, KD_ENOMEM, "out of memory for latency");
    }
    /* the settle rule of measure_latency, on the configuration timed first */
    m->b1_threads = 0;
    nn_ctx c = {.train = 0};
    double t_end = kd_now() + MEASURE_SETTLE_S;
    for (int i = 0; i < warmup || (warmup > 0 && kd_now() < t_end); i++)
        nn_model_forward(m, x, 1, &c);
    for (int k = 0; k < rounds; k++)
        for (int j = 0; j < nt; j++) { /* j = 0: all threads, 1: one (when nt = 2) */
            m->b1_threads = nt == 2 && j == 1 ? 1 : 0;
            double *b = t + ((size_t)j * rounds + k) * per;
            time_block(m, x, per, b);
            med[j][k] = median_of(b, per); /* sorts the block in place: p99 needs no order */
        }
    for (int j = 0; j < nt; j++) {
        double tmp[MEASURE_ROUNDS];
        memcpy(tmp, med[j], (size_t)rounds * sizeof *tmp);
        p50[j] = median_of(tmp, rounds);
    }
    /* all threads only when they pay by the margin; the one-thread figure wins ties */
    int keep = nt == 2 && !(p50[0] < (1.0 - MEASURE_MARGIN) * p50[1]) ? 1 : 0;
    m->b1_threads = nt == 2 && keep == 1 ? 1 : 0;
    r->threads_b1 = m->b1_threads == 1 ? 1 : nn_threads();
    r->latency_us_b1_p50 = p50[keep];
    r->latency_us_b1_p50_1t = p50[nt - 1];
    double lo = med[keep][0], hi = lo;
    for (int k = 1; k < rounds; k++) {
        lo = med[keep][k] < lo ? med[keep][k] : lo;
        hi = med[keep][k] > hi ? med[keep][k] : hi;
    }
    r->latency_b1_spread = p50[keep] > 0 ? (hi - lo) / p50[keep] : 0;
    double *all = t + (size_t)keep * rounds * per;
    const int na = rounds * per;
    qsort(all, (size_t)na, sizeof *all, cmp_double);
    r->latency_us_b1_p99 = all[(int)((na - 1) * 0.99)];
    if (r->latency_us_b1_p99 < r->latency_us_b1_p50)
        r->latency_us_b1_p99 = r->latency_us_b1_p50;
    kd_free(t);
    return KD_OK;
}

static int measure_speed(nn_model *m, const data_set *test, const measure_opts *o,
                         measure_result *r, kd_err *e)
{
    const int bs = 256;
    size_t in = nn_shape_size(m->in);
    float *x = kd_afloat((size_t)bs * in);
    uint8_t *y = kd_malloc(bs);
    int *idx = kd_malloc(bs * sizeof *idx);
    int rc = KD_OK;
    if (!x || !y || !idx) {
        rc = kd_err_set(e, KD_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < bs; i++)
        idx[i] = test->n ? i % test->n : 0;
    if (test->n)
        data_batch(test, idx, bs, m->in_mean, m->in_std, x, y);
    r->host_load = measure_host_load();
    rc = measure_latency_pick(m, x, o->latency_reps, o->warmup, r, e);
    if (rc != KD_OK || (rc = nn_model_reserve(m, bs, e)) != KD_OK)
        goto out;
    /* throughput: the median of up to MEASURE_ROUNDS rounds' rates */
    nn_ctx c = {.train = 0};
    nn_model_forward(m, x, bs, &c); /* warm-up */
    const int rounds = o->throughput_reps >= MEASURE_ROUNDS ? MEASURE_ROUNDS : 1;
    const int per = (o->throughput_reps + rounds - 1) / rounds;
    double rate[MEASURE_ROUNDS];
    for (int k = 0; k < rounds; k++) {
        double t0 = kd_now();
        for (int i = 0; i < per; i++)
            nn_model_forward(m, x, bs, &c);
        double dt = kd_now() - t0;
        rate[k] = dt > 0 ? (double)bs * per / dt : 0;
    }
    r->throughput_b256 = median_of(rate, rounds);
out:
    kd_afree(x);
    kd_free(y);
    kd_free(idx);
    return rc;
}

int measure_model(nn_model *m, const data_set *test, const char *path, const measure_opts *opts,
                  measure_result *r, kd_err *e)
{
    measure_opts o = {.latency_reps = 2000, .warmup = 200, .throughput_reps = 20};
    if (opts)
        o = *opts;
    memset(r, 0, sizeof *r);
    /* logical weights, compressed payloads included */
    r->params = nn_model_params(m, &r->nonzero_params);
    r->macs = nn_model_macs(m);
    r->size_bytes = path ? kd_file_size(path) : -1;
    if (path && r->size_bytes < 0)
        return kd_err_at(e, KD_EIO, path, 0, 0, "cannot stat the model file");
    int rc = train_evaluate(m, test, 256, &r->loss, &r->accuracy, e);
    if (rc == KD_OK)
        rc = measure_speed(m, test, &o, r, e);
    return rc;
}
