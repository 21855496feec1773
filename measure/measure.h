/* measure — the same measurements for every variant: test accuracy, bytes on
 * disk, batch-1 latency percentiles and batch-256 throughput, all measured.
 * Depends on util, nn, data, train. */
#ifndef KD_MEASURE_H
#define KD_MEASURE_H

#include "../data/data.h"
#include "../nn/nn.h"

typedef struct {
    double accuracy;        /* test set, eval mode */
    double loss;
    size_t params, nonzero_params;
    long long size_bytes;   /* bytes of the model file on disk */
    double latency_us_b1_p50, latency_us_b1_p99;
    double throughput_b256; /* samples per second */
    double macs;            /* per sample */
    /* batch 1 on one thread (latency_us_b1_p50 is at threads_b1, which the
     * model keeps: m->b1_threads), the relative spread (max - min) / median of
     * the repeats' medians behind latency_us_b1_p50, and the host's 1-minute
     * load average when measured (-1 if unknown) */
    double latency_us_b1_p50_1t, latency_b1_spread, host_load;
    int threads_b1;
} measure_result;

typedef struct {
    int latency_reps;   /* batch-1 timed repetitions (default 2000) */
    int warmup;         /* untimed repetitions first (default 200), for 0.25 s at least when > 0 */
    int throughput_reps;/* batch-256 timed repetitions (default 20) */
} measure_opts;

/* Measures m on test (accuracy) and its file at path (size); latency and
 * throughput on samples from test.  opts may be NULL for defaults. */
int measure_model(nn_model *m, const data_set *test, const char *path, const measure_opts *opts,
                  measure_result *r, kd_err *e);

/* Batch-1 latency percentiles alone (p in [0,1]) of m as it is configured;
 * used by bench too. */
int measure_latency(nn_model *m, const float *x, int reps, int warmup, double *p50, double *p99,
                    kd_err *e);

/* Batch-1 latency at one thread and at all of nn_threads(), measured in
 * MEASURE_ROUNDS interleaved rounds of reps / rounds calls each: each
 * figure is the median of its rounds' medians.  The model keeps
 * (m->b1_threads) the count that is faster by MEASURE_MARGIN, else one
 * thread, so more threads never make batch 1 slower; r gets both figures,
 * the kept one's p50, p99 (over all its calls) and spread, and threads_b1. */
#define MEASURE_ROUNDS 5
#define MEASURE_MARGIN 0.05
int measure_latency_pick(nn_model *m, const float *x, int reps, int warmup, measure_result *r,
                         kd_err *e);
/* The 1-minute load average (/proc/loadavg), -1 when unknown. */
double measure_host_load(void);

#endif
