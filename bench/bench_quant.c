/* make bench: int8 integer kernels against fp32 OpenBLAS on a 784-1200-1200-10
 * MLP-shaped stack (ReLU between layers, float logits out): batch-1 latency
 * (median) and batch-256 throughput (best of several), as ratios measured in
 * this one run.  The int8 path includes quantizing the float input. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../compress/kernels/kernels.h"
#include "bench.h"
#include "../nn/nn.h"


#define QB_LAYERS 3
#define QB_BATCH 256
static const int qb_size[QB_LAYERS + 1] = {784, 1200, 1200, 10};

typedef struct {
    float *w[QB_LAYERS], *b[QB_LAYERS]; /* fp32 model */
    quant_dense *q[QB_LAYERS];          /* int8 model */
    quant_q4 *q4[QB_LAYERS];            /* int4 weight-only model */
    quant_csr *csr[QB_LAYERS];          /* 90%-pruned csr-int8 model */
    quant_params in;                    /* of the float input */
    nn_team *team;                   /* NULL: int8 on the calling thread */
    float *x;                           /* QB_BATCH inputs in [0, 1) */
    float *a[2];                        /* fp32 activations, ping-pong */
    int8_t *qa[3];                      /* int8 input and activations */
} qbench;

static void fp32_forward(qbench *b, int n, float *out)
{
    const float *x = b->x;
    for (int l = 0; l < QB_LAYERS; l++) {
        int k = qb_size[l], m = qb_size[l + 1];
        float *y = l == QB_LAYERS - 1 ? out : b->a[l % 2];
        for (int i = 0; i < n; i++)
            memcpy(y + (size_t)i * m, b->b[l], (size_t)m * sizeof *y);
        if (n == 1)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, m, k, 1.0f, b->w[l], k, x, 1, 1.0f, y, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, m, k, 1.0f, x, k, b->w[l],
                        k, 1.0f, y, m);
        if (l < QB_LAYERS - 1)
            for (size_t i = 0; i < (size_t)n * m; i++)
                y[i] = y[i] > 0.0f ? y[i] : 0.0f;
        x = y;
    }
}

static void int8_forward(qbench *b, qgemm_isa isa, int n, float *out)
{
    quant_quantize_s8(b->x, (size_t)n * qb_size[0], b->in, b->qa[0]);
    quant_dense_forward(b->q[0], isa, b->team, b->qa[0], n, b->qa[1]);
    quant_dense_forward(b->q[1], isa, b->team, b->qa[1], n, b->qa[2]);
    quant_dense_forward_f32(b->q[2], isa, b->team, b->qa[2], n, out);
}

/* fp32 activations through int4 or CSR int8 layers (ReLU between). */
static void float_act_forward(qbench *b, int csr, int n, float *out)
{
    const float *x = b->x;
    for (int l = 0; l < QB_LAYERS; l++) {
        int m = qb_size[l + 1];
        float *y = l == QB_LAYERS - 1 ? out : b->a[l % 2];
        if (csr)
            quant_csr_gemm(b->csr[l], x, n, b->b[l], y);
        else
            quant_q4_gemm(b->q4[l], x, n, b->b[l], y);
        if (l < QB_LAYERS - 1)
            for (size_t i = 0; i < (size_t)n * m; i++)
                y[i] = y[i] > 0.0f ? y[i] : 0.0f;
        x = y;
    }
}

/* The int4 model, and the CSR model of the weights with 90% of them zeroed. */
static int qbench_weight_only(qbench *b, kd_err *e)
{
    nn_rng r = nn_rng_stream(12, NN_STREAM_TEST);
    for (int l = 0; l < QB_LAYERS; l++) {
        int m = qb_size[l + 1], k = qb_size[l];
        b->q4[l] = quant_q4_pack(b->w[l], m, k, e);
        float *pr = kd_afloat((size_t)m * k);
        if (!b->q4[l] || !pr) {
            kd_afree(pr);
            return -1;
        }
        for (size_t i = 0; i < (size_t)m * k; i++)
            pr[i] = nn_rng_uniform(&r) < 0.1f ? b->w[l][i] : 0.0f;
        b->csr[l] = quant_csr_from_dense(pr, m, k, e);
        kd_afree(pr);
        if (!b->csr[l])
            return -1;
    }
    return 0;
}

/* Output ranges of each layer on the calibration batch give the int8 model. */
static int qbench_convert(qbench *b, kd_err *e)
{
    float *out = kd_afloat((size_t)QB_BATCH * 10);
    fp32_forward(b, QB_BATCH, out);
    const float *act[QB_LAYERS] = {b->a[0], b->a[1], out};
    quant_params in = b->in;
    for (int l = 0; l < QB_LAYERS; l++) {
        quant_minmax mm;
        quant_minmax_init(&mm);
        quant_minmax_update(&mm, act[l], (size_t)QB_BATCH * qb_size[l + 1]);
        quant_params outp = quant_params_asym(mm.lo, mm.hi, QUANT_S8);
        b->q[l] = quant_dense_new(b->w[l], b->b[l], qb_size[l + 1], qb_size[l], 1, in, outp,
                                  l < QB_LAYERS - 1, e);
        if (!b->q[l])
            break;
        in = outp;
    }
    kd_afree(out);
    return b->q[QB_LAYERS - 1] ? 0 : -1;
}

static int qbench_init(qbench *b, kd_err *e)
{
    memset(b, 0, sizeof *b);
    nn_rng r = nn_rng_stream(11, NN_STREAM_TEST);
    for (int l = 0; l < QB_LAYERS; l++) {
        size_t nw = (size_t)qb_size[l] * qb_size[l + 1];
        b->w[l] = kd_afloat(nw);
        b->b[l] = kd_afloat((size_t)qb_size[l + 1]);
        nn_fill_he(b->w[l], nw, qb_size[l], &r);
        for (int i = 0; i < qb_size[l + 1]; i++)
            b->b[l][i] = 0.01f * nn_rng_normal(&r);
    }
    b->x = kd_afloat((size_t)QB_BATCH * qb_size[0]);
    for (size_t i = 0; i < (size_t)QB_BATCH * qb_size[0]; i++)
        b->x[i] = nn_rng_uniform(&r);
    for (int i = 0; i < 2; i++)
        b->a[i] = kd_afloat((size_t)QB_BATCH * 1200);
    for (int i = 0; i < 3; i++)
        b->qa[i] = (int8_t *)kd_afloat((size_t)QB_BATCH * 1200 / 4);
    b->in = quant_params_asym(0.0f, 1.0f, QUANT_S8);
    return qbench_convert(b, e) ? -1 : qbench_weight_only(b, e);
}

static void qbench_free(qbench *b)
{
    for (int l = 0; l < QB_LAYERS; l++) {
        kd_afree(b->w[l]);
        kd_afree(b->b[l]);
        quant_dense_free(b->q[l]);
        quant_q4_free(b->q4[l]);
        quant_csr_free(b->csr[l]);
    }
    kd_afree(b->x);
    for (int i = 0; i < 2; i++)
        kd_afree(b->a[i]);
    for (int i = 0; i < 3; i++)
        kd_afree(b->qa[i]);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

enum { QB_FP32 = -1, QB_INT4 = -2, QB_CSR = -3 };

/* isa >= 0: int8 on that kernel, else a QB_ model.  Batch 1: median
 * microseconds; batch 256: samples per second (best run). */
static double qb_time(qbench *b, int isa, int n, int reps)
{
    float *out = kd_afloat((size_t)n * 10);
    double *t = malloc((size_t)reps * sizeof *t);
    for (int r = -reps / 10; r < reps; r++) {
        double t0 = kd_now();
        if (isa == QB_FP32)
            fp32_forward(b, n, out);
        else if (isa < 0)
            float_act_forward(b, isa == QB_CSR, n, out);
        else
            int8_forward(b, (qgemm_isa)isa, n, out);
        if (r >= 0)
            t[r] = kd_now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    double v = n == 1 ? t[reps / 2] * 1e6 : n / t[0];
    free(t);
    kd_afree(out);
    return v;
}

/* How often the int8 model's argmax agrees with fp32 on the 256 inputs. */
static double qb_agreement(qbench *b)
{
    float *f = kd_afloat(QB_BATCH * 10), *q = kd_afloat(QB_BATCH * 10);
    fp32_forward(b, QB_BATCH, f);
    int8_forward(b, qgemm_isa_best(), QB_BATCH, q);
    int same = 0;
    for (int i = 0; i < QB_BATCH; i++) {
        int af = 0, aq = 0;
        for (int c = 1; c < 10; c++) {
            af = f[i * 10 + c] > f[i * 10 + af] ? c : af;
            aq = q[i * 10 + c] > q[i * 10 + aq] ? c : aq;
        }
        same += af == aq;
    }
    kd_afree(f);
    kd_afree(q);
    return (double)same / QB_BATCH;
}

/* int4 (its batch path uses sgemm, threaded as OpenBLAS is) and CSR rows. */
static void qb_report_weight_only(qbench *b, double f1, double f256)
{
    const char *name[2] = {"int4 (w-only)", "csr-int8 scalar"};
    for (int v = 0; v < 2; v++) {
        int kind = v ? QB_CSR : QB_INT4;
        double q1 = qb_time(b, kind, 1, 500), q256 = qb_time(b, kind, QB_BATCH, 10);
        printf("quant %-24s batch-1 %7.1f us (%.2fx fp32-1t)   batch-256 %8.0f samples/s "
               "(%.2fx fp32-1t)\n",
               name[v], q1, f1 / q1, q256, q256 / f256);
    }
}

/* The best int8 kernel split across a team as large as OpenBLAS's thread
 * count, against fp32 on those threads. */
static void qb_report_team(qbench *b, int threads, double f1n, double f256n)
{
    if (threads < 2)
        return;
    b->team = nn_team_new(threads, NULL);
    if (!b->team)
        return;
    qgemm_isa isa = qgemm_isa_best();
    double q1 = qb_time(b, isa, 1, 2000), q256 = qb_time(b, isa, QB_BATCH, 22);
    printf("quant int8 %-12s (%d threads): batch-1 %7.1f us (%.2fx fp32-%dt)   batch-256 %8.0f "
           "samples/s (%.2fx fp32-%dt)\n",
           qgemm_isa_name(isa), threads, q1, f1n / q1, threads, q256, q256 / f256n, threads);
    nn_team_free(b->team);
    b->team = NULL;
}

static void qb_report(qbench *b, int threads)
{
    nn_set_threads(1);
    double f1 = qb_time(b, QB_FP32, 1, 2000), f256 = qb_time(b, QB_FP32, QB_BATCH, 20);
    printf("quant fp32 (OpenBLAS, 1 thread):   batch-1 %7.1f us   batch-256 %8.0f samples/s\n",
           f1, f256);
    qb_report_weight_only(b, f1, f256);
    nn_set_threads(threads);
    double f1n = qb_time(b, QB_FP32, 1, 2000), f256n = qb_time(b, QB_FP32, QB_BATCH, 20);
    printf("quant fp32 (OpenBLAS, %d threads):  batch-1 %7.1f us   batch-256 %8.0f samples/s\n",
           threads, f1n, f256n);
    for (int isa = 0; isa < QGEMM_NISA; isa++) {
        if (!qgemm_isa_supported((qgemm_isa)isa))
            continue;
        int reps = isa == QGEMM_SCALAR ? 20 : 2000;
        double q1 = qb_time(b, isa, 1, reps), q256 = qb_time(b, isa, QB_BATCH, reps / 100 + 2);
        printf("quant int8 %-12s (1 thread): batch-1 %7.1f us (%.2fx fp32-1t)   batch-256 %8.0f "
               "samples/s (%.2fx fp32-1t, %.2fx fp32-%dt)\n",
               qgemm_isa_name((qgemm_isa)isa), q1, f1 / q1, q256, q256 / f256, q256 / f256n,
               threads);
    }
    qb_report_team(b, threads, f1n, f256n);
}

void bench_quant(void)
{
    qbench b;
    kd_err e = {0};
    int threads = openblas_get_num_threads(); /* as bench's main set it; restored below */
    if (qbench_init(&b, &e)) {
        printf("quant bench: %s\n", e.msg);
        qbench_free(&b);
        return;
    }
    printf("quant: 784-1200-1200-10 stack, best int8 kernel %s, int8 argmax agrees with fp32 "
           "on %.1f%% of 256 inputs\n",
           qgemm_isa_name(qgemm_isa_best()), 100.0 * qb_agreement(&b));
    qb_report(&b, threads);
    qbench_free(&b);
}
