/* Sparse vs dense on the MLP 784-1200-1200-10 with random weights, magnitude
 * pruned (layer-wise) to 50/80/90/95%: batch-1 latency p50 and batch-256
 * time of kdbench's dense path (OpenBLAS sgemv/sgemm) and of every dense
 * layer as CSR, the ratios, the file size ratio, which layers the measured
 * conversion keeps dense; then structured 50% neuron pruning. */
#include <stdio.h>
#include <stdlib.h>

#include "../compress/compress.h"
#include "../measure/measure.h"
#include "bench.h"

static double b256_us(nn_model *m, const float *x)
{
    nn_ctx c = {.train = 0};
    kd_err e = {0};
    nn_model_reserve(m, 256, &e);
    nn_model_forward(m, x, 256, &c);
    double best = 1e30;
    for (int r = 0; r < 20; r++) {
        double t0 = kd_now();
        nn_model_forward(m, x, 256, &c);
        double t = (kd_now() - t0) * 1e6;
        best = t < best ? t : best;
    }
    return best;
}

static long long saved_size(const nn_model *m, const char *path)
{
    kd_err e = {0};
    return nn_model_save(m, path, &e) == KD_OK ? kd_file_size(path) : -1;
}

static void one_sparsity(const nn_model *dense, float s, const float *x, double d1, double d256,
                         long long dbytes)
{
    kd_err e = {0};
    nn_model *m = nn_model_clone(dense, &e);
    compress_prune_spec ps = {.scope = COMPRESS_LAYERWISE, .sparsity = s};
    compress_prune_magnitude(m, &ps, NULL, &e);
    compress_sparse_opts all = {.policy = COMPRESS_SPARSE_ALWAYS};
    compress_sparse_opts meas = {.policy = COMPRESS_SPARSE_MEASURE};
    compress_choice ch[8];
    nn_model *sp = compress_to_sparse(m, &all, NULL, &e);
    nn_model *auto_m = compress_to_sparse(m, &meas, ch, &e);
    double p50, p99;
    measure_latency(sp, x, 5000, 500, &p50, &p99, &e);
    double s256 = b256_us(sp, x);
    long long sbytes = saved_size(sp, "/tmp/kdbench-bench-sparse.kdm");
    printf("sparsity %.2f  CSR batch-1 p50 %7.1f us (dense/CSR %5.2fx)  batch-256 %8.0f us "
           "(dense/CSR %5.2fx)  file %.3fx fp32  measured choice:",
           (double)s, p50, d1 / p50, s256, d256 / s256, (double)sbytes / (double)dbytes);
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i].spec.kind == NN_DENSE && nn_layer_is_builtin(&m->layers[i]))
            printf(" %s=%s", m->layers[i].spec.name, ch[i].converted ? "csr" : "dense");
    printf("\n    per layer alone, best of 20 (dense/CSR us, batch 1 | batch 256):");
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i].spec.kind == NN_DENSE && nn_layer_is_builtin(&m->layers[i]))
            printf(" %s %.1f/%.1f | %.0f/%.0f", m->layers[i].spec.name, ch[i].dense_us[0],
                   ch[i].sparse_us[0], ch[i].dense_us[1], ch[i].sparse_us[1]);
    printf("\n");
    nn_model_free(auto_m);
    nn_model_free(sp);
    nn_model_free(m);
}

/* Structured 50% neuron pruning: a physically smaller dense model. */
static void structured_half(const nn_model *dense, const float *x, double d1, double d256)
{
    kd_err e = {0};
    compress_prune_spec ps = {.sparsity = 0.5f};
    nn_model *m = compress_prune_structured(dense, &ps, COMPRESS_NEURONS, COMPRESS_NORM_L2, &e);
    if (!m) {
        fprintf(stderr, "bench: %s\n", e.msg);
        return;
    }
    double p50, p99;
    measure_latency(m, x, 5000, 500, &p50, &p99, &e);
    double t256 = b256_us(m, x);
    printf("structured 50%% neurons (784-%d-%d-10): MACs %.2fx, batch-1 p50 %.1f us (dense/pruned "
           "%.2fx), batch-256 %.0f us (%.2fx)\n", m->layers[0].spec.units, m->layers[2].spec.units,
           nn_model_macs(m) / nn_model_macs(dense), p50, d1 / p50, t256, d256 / t256);
    nn_model_free(m);
}

void bench_sparse(void)
{
    const nn_layer_spec mlp[] = {
        {.kind = NN_DENSE, .units = 1200}, {.kind = NN_RELU}, {.kind = NN_DENSE, .units = 1200},
        {.kind = NN_RELU}, {.kind = NN_DENSE, .units = 10}};
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){1, 28, 28}, mlp, 5, NULL, &e);
    if (!m) {
        fprintf(stderr, "bench: %s\n", e.msg);
        exit(1);
    }
    nn_model_init(m, 1);
    float *x = kd_afloat(256 * 784);
    nn_rng r = nn_rng_stream(3, NN_STREAM_TEST);
    for (int i = 0; i < 256 * 784; i++)
        x[i] = nn_rng_normal(&r);
    double d1, d99;
    measure_latency(m, x, 5000, 500, &d1, &d99, &e);
    double d256 = b256_us(m, x);
    long long dbytes = saved_size(m, "/tmp/kdbench-bench-dense.kdm");
    printf("MLP 784-1200-1200-10 dense fp32: batch-1 p50 %.1f us, batch-256 %.0f us, file %lld "
           "bytes\n", d1, d256, dbytes);
    const float sp[] = {0.5f, 0.8f, 0.9f, 0.95f};
    for (int i = 0; i < 4; i++)
        one_sparsity(m, sp[i], x, d1, d256, dbytes);
    structured_half(m, x, d1, d256);
    remove("/tmp/kdbench-bench-sparse.kdm");
    remove("/tmp/kdbench-bench-dense.kdm");
    kd_afree(x);
    nn_model_free(m);
}
