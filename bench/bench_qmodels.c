/* make bench (or `kdbench-bench qmodels`): the quantized layer kinds as whole
 * models, through nn_model_forward exactly as measure runs them, on the
 * 784-1200-1200-10 MLP with random weights: batch-1 latency (median),
 * batch-256 throughput (best run), model file bytes, argmax agreement with
 * fp32 — each as a ratio to kdbench's own fp32 dense layers, this run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../compress/compress.h"
#include "../compress/kernels/kernels.h"
#include "bench.h"

enum { QM_BATCH = 256, QM_IN = 784, QM_OUT = 10, QM_REPS = 300 };

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median microseconds at batch 1, or best samples/s at QM_BATCH. */
static double qm_time(nn_model *m, const float *x, int n)
{
    int reps = n == 1 ? QM_REPS : 12;
    double *t = malloc((size_t)reps * sizeof *t);
    nn_ctx c = {.train = 0};
    /* untimed first: 0.25 s, so that OpenBLAS's idle threads (busy-waiting
     * ~0.1 s after the previous model's calls) are asleep, as in measure */
    for (double t_end = kd_now() + 0.25; kd_now() < t_end;)
        nn_model_forward(m, x, n, &c);
    for (int r = -reps / 10 - 1; r < reps; r++) {
        double t0 = kd_now();
        nn_model_forward(m, x, n, &c);
        if (r >= 0)
            t[r] = kd_now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_d);
    double v = n == 1 ? t[reps / 2] * 1e6 : n / t[0];
    free(t);
    return v;
}

static double qm_agree(nn_model *a, nn_model *b, const float *x)
{
    nn_ctx c = {.train = 0};
    float *ya = malloc(sizeof(float) * QM_BATCH * QM_OUT);
    memcpy(ya, nn_model_forward(a, x, QM_BATCH, &c), sizeof(float) * QM_BATCH * QM_OUT);
    const float *yb = nn_model_forward(b, x, QM_BATCH, &c);
    int same = 0;
    for (int i = 0; i < QM_BATCH; i++) {
        int ia = 0, ib = 0;
        for (int j = 1; j < QM_OUT; j++) {
            ia = ya[i * QM_OUT + j] > ya[i * QM_OUT + ia] ? j : ia;
            ib = yb[i * QM_OUT + j] > yb[i * QM_OUT + ib] ? j : ib;
        }
        same += ia == ib;
    }
    free(ya);
    return (double)same / QM_BATCH;
}

static long long qm_bytes(const nn_model *m)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/kdbench-qm-%d.kdm", (int)getpid());
    kd_err e = {0};
    long long n = nn_model_save(m, path, &e) == KD_OK ? kd_file_size(path) : -1;
    unlink(path);
    return n;
}

/* The variants: fp32, int8, int8-dyn, int4, and 90%-pruned csr-fp32 / csr-int8. */
static int qm_variants(nn_model *m, const data_set *calib, nn_model **v, kd_err *e)
{
    const compress_qmode modes[3] = {COMPRESS_Q_STATIC8, COMPRESS_Q_DYNAMIC8, COMPRESS_Q_INT4};
    for (int i = 0; i < 3; i++) {
        compress_quant_spec s = {.mode = modes[i], .per_channel = 1, .calib_batches = 2};
        if (!(v[i] = compress_quantize(m, &s, calib, e)))
            return e->code;
    }
    nn_model *p = nn_model_clone(m, e);
    compress_prune_spec ps = {.sparsity = 0.9f};
    compress_sparse_opts all = {.policy = COMPRESS_SPARSE_ALWAYS};
    if (!p || compress_prune_magnitude(p, &ps, NULL, e) != KD_OK ||
        !(v[3] = compress_to_sparse(p, &all, NULL, e))) {
        nn_model_free(p);
        return e->code;
    }
    nn_model_free(p);
    compress_quant_spec s8 = {.mode = COMPRESS_Q_STATIC8, .per_channel = 1};
    v[4] = compress_quantize(v[3], &s8, NULL, e);
    return v[4] ? KD_OK : e->code;
}

void bench_qmodels(void)
{
    const nn_layer_spec mlp[] = {{.kind = NN_DENSE, .units = 1200}, {.kind = NN_RELU},
                                 {.kind = NN_DENSE, .units = 1200}, {.kind = NN_RELU},
                                 {.kind = NN_DENSE, .units = QM_OUT}};
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){QM_IN, 1, 1}, mlp, 5, NULL, &e);
    data_set calib = {.n = QM_BATCH, .shape = {QM_IN, 1, 1}, .nclasses = QM_OUT};
    calib.xf = kd_malloc(sizeof(float) * QM_BATCH * QM_IN);
    nn_model *v[5] = {0};
    if (!m || !calib.xf) {
        printf("quantized models: out of memory\n");
        goto out;
    }
    nn_model_init(m, 1);
    nn_rng r = nn_rng_stream(2, NN_STREAM_TEST);
    for (int i = 0; i < QM_BATCH * QM_IN; i++) /* pixel-like: [0, 1), then standardised */
        calib.xf[i] = (nn_rng_uniform(&r) - 0.5f) * 3.4f;
    if (qm_variants(m, &calib, v, &e) != KD_OK) {
        printf("quantized models: %s\n", e.msg);
        goto out;
    }
    double f1 = qm_time(m, calib.xf, 1), f256 = qm_time(m, calib.xf, QM_BATCH);
    long long fb = qm_bytes(m);
    printf("quantized models, 784-1200-1200-10 MLP, nn_model_forward, int8 kernel %s:\n"
           "  %-10s b1 %7.1f us          b256 %8.0f/s          file %8lld B\n",
           qgemm_isa_name(qgemm_isa_best()), "fp32", f1, f256, fb);
    const char *names[5] = {"int8", "int8-dyn", "int4", "csr-fp32", "csr-int8"};
    for (int i = 0; i < 5; i++) {
        double t1 = qm_time(v[i], calib.xf, 1), t256 = qm_time(v[i], calib.xf, QM_BATCH);
        long long b = qm_bytes(v[i]);
        printf("  %-10s b1 %7.1f us (%4.2fx) b256 %8.0f/s (%4.2fx) file %8lld B (%.3fx) "
               "argmax=fp32 %.3f\n", names[i], t1, f1 / t1, t256, t256 / f256, b,
               (double)b / (double)fb, qm_agree(i == 4 ? v[3] : m, v[i], calib.xf));
    }
out:
    for (int i = 0; i < 5; i++)
        nn_model_free(v[i]);
    nn_model_free(m);
    data_set_free(&calib);
}
