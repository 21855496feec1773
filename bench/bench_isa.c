/* make bench (or `kdbench-bench formats`): issue 11's table for this host.
 * The 784-1200-1200-10 MLP (random weights) converted to each compressed
 * format through the public passes -- csr-fp32 and csr-int8 from a copy
 * pruned 90% per layer by magnitude (weight by weight, and in blocks of 8
 * rows: prune's block: 8), csr-int8-static and csr-int8-dyn (the
 * weight-by-weight copy with its inputs quantized too, calibrated or per
 * call), int8 static (calibrated on random
 * inputs), int4 weight-only, dynamic int8 -- timed against kdbench's own
 * fp32 at each kernel level the host runs (its best, or KD_ISA's cap, then
 * down to avx2, forced), on 2 threads (KD_BENCH_FORMATS_THREADS overrides).  Batch 1: measure_latency's p50 (its warm-up rule); batch 256:
 * samples/s as measure times it (one untimed forward, then BI_TPUT_REPS).
 * Each time is the median of BI_ROUNDS interleaved rounds (the host may
 * be shared) and each ratio the median of the rounds' ratios, each round's
 * format against that round's fp32: a host whose speed drifts between
 * minutes moved a ratio of medians by up to 10% between two runs.  The variants are converted after the level is forced, so
 * their kernels and batch-1 panels are the level's.  dense fp32 runs
 * OpenBLAS, whose own dispatch ignores the level.  A streaming read gives
 * the bandwidth that bounds batch 1 (bytes read / bandwidth). */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../compress/compress.h"
#include "../compress/kernels/cpu.h"
#include "../compress/kernels/kernels.h"
#include "../measure/measure.h"
#include "../reports/reports.h"
#include "bench.h"

enum { BI_IN = 784, BI_OUT = 10, BI_BATCH = 256, BI_ROUNDS = 7, BI_LAT_REPS = 1000,
       BI_WARMUP = 200, BI_TPUT_REPS = 20, BI_NFMT = 10 };

/* issue 11's targets: batch-1 and batch-256 speed-up over fp32 */
static const struct {
    const char *name;
    double b1, b256;
} bi_fmt[BI_NFMT] = {
    {"fp32", 0, 0},         {"csr-fp32 90%", 5, 1.5}, {"csr-int8 90%", 6, 1.5},
    {"int8 static", 4, 2},  {"int4 w-only", 3, 1},    {"dynamic int8", 2.5, 1.5},
    /* the same 90% pruned in blocks of 8 rows (prune's block: 8), held to
     * the targets of the weight-by-weight rows */
    {"csr-fp32 b8", 5, 1.5}, {"csr-int8 b8", 6, 1.5},
    /* the weight-by-weight 90% with its inputs quantized too (csr-int8-static:
     * quantize's sparse_activations: int8), held to csr-int8's targets */
    {"csr-int8-static", 6, 1.5},
    /* the same with its inputs quantized per call (csr-int8-dyn: a dynamic
     * quantize pass with sparse_activations: int8), csr-int8's targets too */
    {"csr-int8-dyn", 6, 1.5},
};

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return v[n / 2];
}

/* ---- bandwidth: a streaming read on 2 threads -------------------------------------- */
typedef struct {
    const float *p;
    size_t n;
    int reps;
    float sum;
} bi_read;

__attribute__((target("avx2"))) static void *bi_read_run(void *arg)
{
    bi_read *r = arg;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (int k = 0; k < r->reps; k++)
        for (size_t i = 0; i + 32 <= r->n; i += 32) {
            s0 = _mm256_add_ps(s0, _mm256_load_ps(r->p + i));
            s1 = _mm256_add_ps(s1, _mm256_load_ps(r->p + i + 8));
            s2 = _mm256_add_ps(s2, _mm256_load_ps(r->p + i + 16));
            s3 = _mm256_add_ps(s3, _mm256_load_ps(r->p + i + 24));
        }
    float out[8];
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    r->sum = out[0] + out[7];
    return NULL;
}

/* GB/s reading `bytes` (split over 2 threads) reps times, best of 5; 0 when
 * the buffer cannot be had or the host lacks AVX2. */
static double bi_bandwidth(size_t bytes, int reps)
{
    size_t n = bytes / sizeof(float) / 64 * 64;
    float *buf = kd_afloat(n);
    if (!buf || !kernels_isa_supported(KD_ISA_AVX2)) {
        kd_afree(buf);
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        buf[i] = (float)(i & 7);
    double best = 0;
    for (int t = 0; t < 5; t++) {
        bi_read r[2] = {{buf, n / 2, reps, 0}, {buf + n / 2, n / 2, reps, 0}};
        pthread_t th;
        double t0 = kd_now();
        int two = pthread_create(&th, NULL, bi_read_run, &r[1]) == 0;
        bi_read_run(&r[0]);
        if (two)
            pthread_join(th, NULL);
        else /* no second thread: this one reads both halves */
            bi_read_run(&r[1]);
        double gbs = (double)n * sizeof(float) * reps / (kd_now() - t0) / 1e9;
        best = gbs > best ? gbs : best;
    }
    kd_afree(buf);
    return best;
}

/* ---- the variants and their timings ------------------------------------------------- */

/* m pruned 90% per layer (in blocks of `block` rows), as CSR (*csr), CSR
 * with int8 values (*q8) and, when s8 is not NULL, that with its inputs
 * quantized too (*s8, calibrated on calib; *d8 per call). */
static int bi_sparse(nn_model *m, int block, const data_set *calib, nn_model **csr, nn_model **q8,
                     nn_model **s8, nn_model **d8, kd_err *e)
{
    nn_model *p = nn_model_clone(m, e);
    compress_prune_spec ps = {.scope = COMPRESS_LAYERWISE, .sparsity = 0.9f, .block = block};
    compress_sparse_opts all = {.policy = COMPRESS_SPARSE_ALWAYS};
    if (!p || compress_prune_magnitude(p, &ps, NULL, e) != KD_OK ||
        !(*csr = compress_to_sparse(p, &all, NULL, e))) {
        nn_model_free(p);
        return e->code;
    }
    nn_model_free(p);
    compress_quant_spec qs = {.mode = COMPRESS_Q_STATIC8, .per_channel = 1, .calib_batches = 2};
    if (!(*q8 = compress_quantize(*csr, &qs, NULL, e)))
        return e->code;
    if (!s8)
        return KD_OK;
    qs.sparse_static = 1;
    if (!(*s8 = compress_quantize(*csr, &qs, calib, e)))
        return e->code;
    qs.mode = COMPRESS_Q_DYNAMIC8;
    return (*d8 = compress_quantize(*csr, &qs, NULL, e)) ? KD_OK : e->code;
}

/* fp32 m's variants in bi_fmt order (v[0] = m itself, not owned); KD_OK or
 * e's code with the ones made so far in v. */
static int bi_variants(nn_model *m, const data_set *calib, nn_model **v, kd_err *e)
{
    v[0] = m;
    if (bi_sparse(m, 1, calib, &v[1], &v[2], &v[8], &v[9], e) != KD_OK)
        return e->code;
    const compress_qmode modes[3] = {COMPRESS_Q_STATIC8, COMPRESS_Q_INT4, COMPRESS_Q_DYNAMIC8};
    for (int i = 0; i < 3; i++) {
        compress_quant_spec s = {.mode = modes[i], .per_channel = 1, .calib_batches = 2};
        if (!(v[3 + i] = compress_quantize(m, &s, calib, e)))
            return e->code;
    }
    return bi_sparse(m, 8, calib, &v[6], &v[7], NULL, NULL, e);
}

/* Batch-256 samples/s, timed as measure times it. */
static double bi_throughput(nn_model *m, const float *x, kd_err *e)
{
    if (nn_model_reserve(m, BI_BATCH, e) != KD_OK)
        return 0;
    nn_ctx c = {.train = 0};
    nn_model_forward(m, x, BI_BATCH, &c); /* warm-up */
    double t0 = kd_now();
    for (int i = 0; i < BI_TPUT_REPS; i++)
        nn_model_forward(m, x, BI_BATCH, &c);
    double dt = kd_now() - t0;
    return dt > 0 ? (double)BI_BATCH * BI_TPUT_REPS / dt : 0;
}

/* Bytes a batch-1 forward of m reads for its dense layers' weights at the
 * kernel level in use, as each format's kernel holds them: fp32 weights and
 * bias; the panels of csr-fp32 and csr-int8 (padding and indices
 * included; the CSR arrays without panels); csr-int8-static's and -dyn's byte panels;
 * int8's bytes with a float scale and bias a row; int4's 18 bytes per 32
 * weights and a float bias a row.  Activations, scratch and the other
 * layers are left out: the limit they set is a floor. */
static double bi_b1_bytes(const nn_model *m)
{
    double b = 0;
    for (int i = 0; i < m->nlayers; i++) {
        const nn_layer *l = &m->layers[i];
        if (l->spec.kind != NN_DENSE)
            continue;
        double rows = l->spec.units, k = (double)nn_shape_size(l->in);
        const char *f = l->ops->format ? l->ops->format : "fp32";
        const compress_csr *a = compress_layer_csr(l);
        const quant_csr *q = compress_layer_qcsr(l);
        kd_err e = {0};
        if (a) {
            compress_panels *p =
                compress_panels_supported() ? compress_panels_new(a, COMPRESS_PANELS_AUTO, &e) : NULL;
            b += p ? (double)compress_panels_bytes(p)
                   : (double)a->nnz * (4 + a->idx_bytes) + 4.0 * (a->rows + 1);
            compress_panels_free(p);
        } else if (q && (strcmp(f, "csr-int8-static") == 0 || strcmp(f, "csr-int8-dyn") == 0)) {
            quant_csr_s8_panels *p =
                kernels_isa() >= KD_ISA_AVX2 ? quant_csr_s8_panels_new(q, &e) : NULL;
            b += p ? (double)quant_csr_s8_panels_bytes(p) : (double)quant_csr_bytes(q);
            quant_csr_s8_panels_free(p);
        } else if (q) {
            compress_panels *p = compress_panels_supported() ? compress_panels_new_q8(q, &e) : NULL;
            b += p ? (double)compress_panels_bytes(p) : (double)quant_csr_bytes(q);
            compress_panels_free(p);
        } else if (l->ops->weight_bits == 4) {
            b += rows * ((k + 31) / 32) * 18 + 4 * rows;
        } else if (l->ops->weight_bits == 8) {
            b += rows * k + 8 * rows;
        } else {
            b += 4 * (rows * k + rows);
        }
    }
    return b;
}

/* Where a batch-1 figure goes: each dense layer alone (its input from one
 * forward, its output to a scratch row, so no layer sees another's
 * effects), best of BI_LAYER_REPS, on the calling thread and split over the
 * model's team (fp32: OpenBLAS's own threads), then the whole model on one
 * thread (median).  The team column against the table's figure is what the
 * hand-offs, the caches and the layer boundaries add. */
static void bi_layers(nn_model *m, const float *x, const char *name)
{
    enum { BI_LAYER_REPS = 300, BI_MAX_UNITS = 4096 };
    static float out[BI_MAX_UNITS];
    nn_ctx c = {.train = 0};
    if (nn_model_reserve(m, 1, NULL) != KD_OK)
        return;
    m->b1_threads = 1;
    double t1[BI_LAYER_REPS], sum[2] = {0, 0};
    for (int r = 0; r < BI_LAYER_REPS; r++) {
        double t0 = kd_now();
        nn_model_forward(m, x, 1, &c);
        t1[r] = (kd_now() - t0) * 1e6;
    }
    m->b1_threads = 0;
    printf("  %-15s", name);
    for (int i = 0; i < m->nlayers; i++) {
        nn_layer *l = &m->layers[i];
        if (l->spec.kind != NN_DENSE || l->spec.units > BI_MAX_UNITS)
            continue;
        double best[2] = {1e30, 1e30};
        for (int t = 0; t < 2; t++) {
            nn_ctx lc = {.train = 0, .team = t ? m->team : NULL};
            int blas = t ? 0 : nn_blas_serial_begin(); /* fp32's 1-thread column too */
            for (int r = 0; r < BI_LAYER_REPS; r++) {
                double t0 = kd_now();
                l->ops->forward(l, m->act[i], out, 1, &lc);
                double d = (kd_now() - t0) * 1e6;
                best[t] = d < best[t] ? d : best[t];
            }
            if (!t)
                nn_blas_serial_end(blas);
            sum[t] += best[t];
        }
        printf(" %s %.1f/%.1f", l->spec.name, best[0], best[1]);
    }
    printf("; sum %.1f/%.1f us; model on 1 thread %.1f us\n", sum[0], sum[1],
           median(t1, BI_LAYER_REPS));
}

static void bi_level(nn_model *m, const data_set *calib, double bw)
{
    kd_err e = {0};
    nn_model *v[BI_NFMT] = {0};
    double b1[BI_NFMT][BI_ROUNDS], b256[BI_NFMT][BI_ROUNDS];
    if (bi_variants(m, calib, v, &e) != KD_OK) {
        printf("formats: %s\n", e.msg);
        goto out;
    }
    for (int r = 0; r < BI_ROUNDS; r++) /* interleaved: each round times every format */
        for (int f = 0; f < BI_NFMT; f++) {
            double p99;
            if (measure_latency(v[f], calib->xf, BI_LAT_REPS, BI_WARMUP, &b1[f][r], &p99, &e) !=
                KD_OK) {
                printf("formats: %s\n", e.msg);
                goto out;
            }
            b256[f][r] = bi_throughput(v[f], calib->xf, &e);
        }
    /* the limit's rate: the faster of the cache-resident read and what
     * OpenBLAS's batch-1 fp32 itself reads (on a Zen 3 the read measured
     * 62-77 GB/s, fp32 ~93: limits at the read alone were below fp32's time) */
    double bytes[BI_NFMT];
    for (int f = 0; f < BI_NFMT; f++)
        bytes[f] = bi_b1_bytes(v[f]);
    double t1_fp32 = median(b1[0], BI_ROUNDS), own = t1_fp32 > 0 ? bytes[0] * 1e-3 / t1_fp32 : 0;
    const char *src = "cache-resident read";
    if (own > bw) {
        bw = own;
        src = "fp32's own read, above the cache-resident read";
    }
    printf("  %-15s %10s %7s %6s %6s %14s %7s %6s  %s\n", "format", "batch-1 us", "x fp32",
           "target", "limit", "batch-256 /s", "x fp32", "target", "met?");
    for (int f = 0; f < BI_NFMT; f++) {
        double t1 = median(b1[f], BI_ROUNDS), t256 = median(b256[f], BI_ROUNDS);
        double r1[BI_ROUNDS], r256[BI_ROUNDS];
        for (int r = 0; r < BI_ROUNDS; r++) {
            r1[r] = b1[0][r] / b1[f][r];
            r256[r] = b256[f][r] / b256[0][r];
        }
        double x1 = median(r1, BI_ROUNDS), x256 = median(r256, BI_ROUNDS);
        if (f == 0) {
            printf("  %-15s %10.1f %7s %6s %6s %14.0f %7s %6s\n", bi_fmt[f].name, t1, "1.00", "-",
                   "1.00x", t256, "1.00", "-");
            continue;
        }
        int ok1 = x1 >= bi_fmt[f].b1, ok256 = x256 >= bi_fmt[f].b256;
        /* the batch-1 speed-up the bytes alone allow: fp32's time over
         * this format's bytes at the limit's rate */
        double lim = bytes[f] > 0 && bw > 0 ? t1_fp32 / (bytes[f] * 1e-3 / bw) : 0;
        printf("  %-15s %10.1f %6.2fx %5.1fx %5.2fx %14.0f %6.2fx %5.1fx  %s%s\n", bi_fmt[f].name,
               t1, x1, bi_fmt[f].b1, lim, t256, x256, bi_fmt[f].b256,
               ok1 && ok256 ? "yes" : ok1 ? "no (batch 256)" : ok256 ? "no (batch 1)" : "no",
               !ok1 && lim < bi_fmt[f].b1 ? ": batch-1 target above the limit" : "");
    }
    printf("  dense layers at batch 1 alone, best of 300 (1 thread / split), then the whole "
           "model on 1 thread:\n");
    for (int f = 0; f < BI_NFMT; f++)
        bi_layers(v[f], calib->xf, bi_fmt[f].name);
    printf("  batch-1 bytes of the weights each kernel reads, and their time at %.0f GB/s (%s):",
           bw, src);
    for (int f = 0; f < BI_NFMT; f++)
        printf("%s %s %.2f MB %.1f us", f ? ";" : "", bi_fmt[f].name, bytes[f] * 1e-6,
               bw > 0 ? bytes[f] * 1e-3 / bw : 0);
    printf("\n");
out:
    for (int f = 1; f < BI_NFMT; f++)
        nn_model_free(v[f]);
}

void bench_formats(void)
{
    const nn_layer_spec mlp[] = {{.kind = NN_DENSE, .units = 1200}, {.kind = NN_RELU},
                                 {.kind = NN_DENSE, .units = 1200}, {.kind = NN_RELU},
                                 {.kind = NN_DENSE, .units = BI_OUT}};
    int threads_before = nn_threads();
    const char *kt = getenv("KD_BENCH_FORMATS_THREADS"); /* default 2, as issue 11 measures */
    nn_set_threads(kt && atoi(kt) > 0 ? atoi(kt) : 2);
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){BI_IN, 1, 1}, mlp, 5, NULL, &e);
    data_set calib = {.n = BI_BATCH, .shape = {BI_IN, 1, 1}, .nclasses = BI_OUT};
    calib.xf = kd_malloc(sizeof(float) * BI_BATCH * BI_IN);
    if (!m || !calib.xf) {
        printf("formats: out of memory\n");
        goto out;
    }
    nn_model_init(m, 1);
    nn_rng r = nn_rng_stream(3, NN_STREAM_TEST);
    for (int i = 0; i < BI_BATCH * BI_IN; i++) /* pixel-like, standardised */
        calib.xf[i] = (nn_rng_uniform(&r) - 0.5f) * 3.4f;
    rep_env env;
    rep_env_detect(&env);
    double dram = bi_bandwidth((size_t)256 << 20, 1), l3 = bi_bandwidth((size_t)4 << 20, 32);
    printf("formats, 784-1200-1200-10 MLP, %d threads, CPU %s, host kernel path %s; dense fp32 "
           "is OpenBLAS (its own dispatch, any level); streaming read (2 threads): %.1f GB/s from "
           "memory (256 MB), %.1f GB/s cache-resident (4 MB); times: medians of %d interleaved "
           "rounds, x fp32: the median of the rounds' ratios\n",
           nn_threads(), env.cpu[0] ? env.cpu : "?", kernels_isa_label(), dram, l3, BI_ROUNDS);
    for (int lv = (int)kernels_isa(); lv >= (int)KD_ISA_AVX2; lv--) { /* KD_ISA caps it */
        kd_isa before = kernels_isa_force((kd_isa)lv);
        printf(" kernel path %s%s\n", kernels_isa_label(),
               lv < (int)kernels_isa_host() ? " (forced)" : "");
        bi_level(m, &calib, l3);
        kernels_isa_force(before);
    }
out:
    nn_model_free(m);
    data_set_free(&calib);
    nn_set_threads(threads_before);
}
