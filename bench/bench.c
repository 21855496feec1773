/* make bench: training speed against the GEMM ceiling, batch-1 latency against
 * sgemv, batch-256 throughput, and a run's peak memory.  Prints ratios measured
 * in this one run; never linked into kdbench. */
#include <cblas.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../measure/measure.h"
#include "../train/train.h"
#include "bench.h"

#define BATCH 128
#define NSAMPLES (BATCH * 100)

static nn_model *build(const nn_layer_spec *s, int n)
{
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){1, 28, 28}, s, n, NULL, &e);
    if (!m) {
        fprintf(stderr, "bench: %s\n", e.msg);
        exit(1);
    }
    nn_model_init(m, 1);
    return m;
}

static data_set synthetic(int n)
{
    data_set d = {.n = n, .shape = {1, 28, 28}, .nclasses = 10};
    nn_rng r = nn_rng_stream(5, NN_STREAM_TEST);
    d.x8 = malloc((size_t)n * 784);
    d.y = malloc((size_t)n);
    for (size_t i = 0; i < (size_t)n * 784; i++)
        d.x8[i] = (uint8_t)nn_rng_below(&r, 256);
    for (int i = 0; i < n; i++)
        d.y[i] = (uint8_t)nn_rng_below(&r, 10);
    return d;
}

static void bench_inference(const char *name, nn_model *m, const data_set *d)
{
    measure_result r;
    kd_err e = {0};
    measure_opts mo = {.latency_reps = 5000, .warmup = 500, .throughput_reps = 50};
    measure_model(m, d, NULL, &mo, &r, &e);
    printf("%-4s batch-1 latency p50 %.1f us p99 %.1f us; batch-256 %.0f samples/s\n", name,
           r.latency_us_b1_p50, r.latency_us_b1_p99, r.throughput_b256);
}

/* The sgemv calls of an MLP's batch-1 forward, alone. */
static void bench_sgemv_ceiling(nn_model *m, const data_set *d)
{
    measure_result r;
    kd_err e = {0};
    measure_opts mo = {.latency_reps = 5000, .warmup = 500, .throughput_reps = 1};
    measure_model(m, d, NULL, &mo, &r, &e);
    float *x = kd_afloat(2048), *y = kd_afloat(2048);
    double *t = malloc(5000 * sizeof *t);
    for (int rep = 0; rep < 5500; rep++) {
        double t0 = kd_now();
        for (int i = 0; i < m->nlayers; i++) {
            const nn_layer *l = &m->layers[i];
            if (l->spec.kind == NN_DENSE)
                cblas_sgemv(CblasRowMajor, CblasNoTrans, l->spec.units,
                            (int)nn_shape_size(l->in), 1.0f, l->w, (int)nn_shape_size(l->in),
                            x, 1, 0.0f, y, 1);
        }
        if (rep >= 500)
            t[rep - 500] = (kd_now() - t0) * 1e6;
    }
    for (int i = 1; i < 5000; i++) /* insertion sort is fine for a one-off */
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double s = t[j];
            t[j] = t[j - 1];
            t[j - 1] = s;
        }
    printf("MLP  batch-1 p50 %.1f us vs sgemv alone %.1f us: ratio %.2f (goal <= 1.2)\n",
           r.latency_us_b1_p50, t[2500], r.latency_us_b1_p50 / t[2500]);
    free(t);
    kd_afree(x);
    kd_afree(y);
}

/* issue 12's target for make run's experiment (the data alone: 55 MB) */
#define PEAK_GOAL_MB 150.0

/* The run's own peak RSS (wait4 on it alone: RUSAGE_CHILDREN would report
 * the largest child so far, the PyTorch peer's 500 MB when it ran). */
static void bench_peak_memory(void)
{
    const char *bin = getenv("KD_BIN") ? getenv("KD_BIN") : "bin/kdbench";
    char *const args[] = {(char *)bin, "run", "experiments/fashion_mlp.yaml", "--quiet",
                          "--out", "/tmp/kdbench-bench-run", "--set", "teacher.train.epochs=1",
                          NULL};
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, STDOUT_FILENO);
        execv(bin, args);
        _exit(127);
    }
    struct rusage ru = {0};
    int status = 0;
    int ok = pid > 0 && wait4(pid, &status, 0, &ru) == pid && WIFEXITED(status) &&
             WEXITSTATUS(status) == 0;
    double mb = ru.ru_maxrss / 1024.0;
    printf("peak memory of `kdbench run experiments/fashion_mlp.yaml` (teacher 1 epoch): "
           "%.1f MB, %.2fx the goal of %.0f MB (goal <= 1.0)%s\n",
           mb, mb / PEAK_GOAL_MB, PEAK_GOAL_MB, ok ? "" : " (run failed)");
}

static const char *const usage =
    "usage: kdbench-bench [PART]\n"
    "Benchmarks of kdbench, printed as ratios measured in this one run.\n"
    "With no PART, every part below in turn (what `make bench` runs).\n"
    "  train      issue 12: MLP/CNN training against the GEMM ceiling, epoch ratios\n"
    "  qat        QAT and held-mask epochs against a plain epoch (part of train)\n"
    "  sparse     pruned MLP: CSR against dense\n"
    "  formats    issue 11: each compressed format against fp32, per kernel path\n"
    "  qmodels    the quantized kernels and models against fp32\n"
    "  qaccuracy  accuracy of the quantized variants of a trained MLP (Fashion-MNIST)\n"
    "  serve      kdbench serve under load, in process\n"
    "  memory     issue 12: peak RSS of make run's experiment (teacher 1 epoch) against 150 MB\n"
    "Environment: KD_THREADS (default: all cores), KD_ISA (scalar|avx2|avx512),\n"
    "KD_BIN (the kdbench binary for the peak-memory run).\n";

int main(int argc, char **argv)
{
    const char *part = argc > 1 ? argv[1] : "";
    static const char *const parts[] = {"", "train", "qat", "sparse", "formats", "qmodels",
                                        "qaccuracy", "serve", "memory"};
    int known = 0;
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++)
        known |= strcmp(part, parts[i]) == 0;
    if (argc > 1 && (!strcmp(part, "--help") || !strcmp(part, "-h"))) {
        fputs(usage, stdout);
        return 0;
    }
    if (argc > 2 || !known) {
        fprintf(stderr, "kdbench-bench: unknown part '%s'\n%s", argc > 2 ? argv[2] : part, usage);
        return 2;
    }
    int threads = nn_set_threads(getenv("KD_THREADS") ? atoi(getenv("KD_THREADS")) : 0);
    printf("kdbench bench: %d threads, %s, batch %d\n", threads, nn_blas_info(), BATCH);
    if (strcmp(part, "sparse") == 0) { /* kdbench-bench sparse: that part alone */
        bench_sparse();
        return 0;
    }
    if (strcmp(part, "formats") == 0) { /* issue 11's table for this host */
        bench_formats();
        return 0;
    }
    if (strcmp(part, "qaccuracy") == 0) {
        bench_qaccuracy();
        return 0;
    }
    if (strcmp(part, "memory") == 0) { /* a whole run: minutes */
        bench_peak_memory();
        return 0;
    }
    if (strcmp(part, "serve") == 0) { /* kdbench serve under load */
        bench_serve();
        return 0;
    }
    if (strcmp(part, "qmodels") == 0) { /* the quantized kernels and models */
        bench_quant();
        bench_qmodels();
        return 0;
    }
    const nn_layer_spec mlp[] = {
        {.kind = NN_FLATTEN}, {.kind = NN_DENSE, .units = 1200}, {.kind = NN_RELU},
        {.kind = NN_DROPOUT, .rate = 0.3f}, {.kind = NN_DENSE, .units = 1200},
        {.kind = NN_RELU}, {.kind = NN_DROPOUT, .rate = 0.3f}, {.kind = NN_DENSE, .units = 10}};
    const nn_layer_spec cnn[] = {
        {.kind = NN_CONV2D, .filters = 32, .kernel = 3, .pad = 1}, {.kind = NN_BATCHNORM},
        {.kind = NN_RELU}, {.kind = NN_MAXPOOL2D, .kernel = 2},
        {.kind = NN_CONV2D, .filters = 64, .kernel = 3, .pad = 1}, {.kind = NN_BATCHNORM},
        {.kind = NN_RELU}, {.kind = NN_MAXPOOL2D, .kernel = 2}, {.kind = NN_FLATTEN},
        {.kind = NN_DENSE, .units = 256}, {.kind = NN_RELU}, {.kind = NN_DROPOUT, .rate = 0.4f},
        {.kind = NN_DENSE, .units = 10}};
    data_set d = synthetic(NSAMPLES);
    nn_model *m = build(mlp, 8), *c = build(cnn, 13);
    if (strcmp(part, "qat") == 0) { /* the fine-tuning epochs alone */
        bench_train_qat(m, &d);
        return 0;
    }
    if (strcmp(part, "train") == 0) { /* issue 12's ratios alone */
        bench_torch_peer(bench_train(m, &d), threads);
        bench_train_cnn(c, &d);
        return 0;
    }
    bench_torch_peer(bench_train(m, &d), threads);
    bench_train_cnn(c, &d);
    bench_inference("MLP", m, &d);
    bench_sgemv_ceiling(m, &d);
    bench_inference("CNN", c, &d);
    bench_sparse();
    bench_quant();
    bench_qmodels();
    bench_formats();
    bench_serve();
    bench_peak_memory();
    nn_model_free(m);
    nn_model_free(c);
    free(d.x8);
    free(d.y);
    return 0;
}
