/* make bench, training part (issue 12): the teacher MLP's training speed
 * against the GEMM ceiling of the same shapes, the share of its CPU time
 * spent in the kernel, and the epochs of masked (AGP) and quantization-aware
 * fine-tuning and of a distilled student against the plain epochs they
 * replace -- all ratios of times taken in this one run, so a loaded machine
 * moves both sides alike. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../compress/compress.h"
#include "../student/student.h"
#include "../train/train.h"
#include "bench.h"

#define BATCH 128
#define NSAMPLES_TORCH (BATCH * 100) /* bench.c's synthetic set */

/* One GEMM of the training step, replayed alone for the ceiling. */
typedef struct {
    int m, n, k;
} gemm;

static double time_gemms(const gemm *g, int ng, int reps)
{
    size_t maxa = 0, maxb = 0, maxc = 0;
    for (int i = 0; i < ng; i++) {
        size_t a = (size_t)g[i].m * g[i].k, b = (size_t)g[i].k * g[i].n, c = (size_t)g[i].m * g[i].n;
        maxa = a > maxa ? a : maxa;
        maxb = b > maxb ? b : maxb;
        maxc = c > maxc ? c : maxc;
    }
    float *A = kd_afloat(maxa), *B = kd_afloat(maxb), *C = kd_afloat(maxc);
    for (size_t i = 0; i < maxa; i++)
        A[i] = 0.01f * (float)(i % 97);
    for (size_t i = 0; i < maxb; i++)
        B[i] = 0.01f * (float)(i % 89);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = kd_now();
        for (int i = 0; i < ng; i++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g[i].m, g[i].n, g[i].k, 1.0f, A,
                        g[i].k, B, g[i].n, 0.0f, C, g[i].n);
        double t = kd_now() - t0;
        best = t < best ? t : best;
    }
    kd_afree(A);
    kd_afree(B);
    kd_afree(C);
    return best;
}

/* The GEMMs a training step of m at batch n performs: forward, weight
 * gradient, input gradient (not for the first layer). */
static int step_gemms(const nn_model *m, int n, gemm *g)
{
    int ng = 0;
    for (int i = 0; i < m->nlayers; i++) {
        const nn_layer *l = &m->layers[i];
        if (l->spec.kind == NN_DENSE) {
            int k = (int)nn_shape_size(l->in), u = l->spec.units;
            g[ng++] = (gemm){n, u, k};
            g[ng++] = (gemm){u, k, n};
            if (i > 0)
                g[ng++] = (gemm){n, k, u};
        } else if (l->spec.kind == NN_CONV2D) {
            int f = l->spec.filters, ckk = l->in.c * l->spec.kernel * l->spec.kernel;
            int p = n * l->out.h * l->out.w;
            g[ng++] = (gemm){f, p, ckk};
            g[ng++] = (gemm){f, ckk, p};
            if (i > 0)
                g[ng++] = (gemm){ckk, p, f};
        }
    }
    return ng;
}

static double cpu_seconds(int sys)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    const struct timeval *t = sys ? &ru.ru_stime : &ru.ru_utime;
    return (double)t->tv_sec + 1e-6 * (double)t->tv_usec;
}

static train_opts sgd_opts(int epochs)
{
    return (train_opts){.epochs = epochs, .batch_size = BATCH, .seed = 1,
                        .opt = {.kind = NN_OPT_SGD, .lr = 0.01f, .momentum = 0.9f,
                                .nesterov = 1, .weight_decay = 5e-4f}};
}

/* The fastest epoch after the first of `epochs` epochs of m on d under hooks
 * h (NULL: plain); the first epoch warms caches and the OpenBLAS buffers. */
static double epoch_seconds(nn_model *m, const data_set *d, int epochs, const train_hooks *h)
{
    train_opts o = sgd_opts(epochs);
    train_state st;
    kd_err e = {0};
    double best = -1;
    if (train_state_init(&st, m, &o, &e) == KD_OK && train_fit(&st, &o, d, NULL, h, &e) == KD_OK)
        for (int i = 1; i < st.epochs_done; i++)
            best = best < 0 || st.history[i].seconds < best ? st.history[i].seconds : best;
    if (best < 0)
        fprintf(stderr, "bench: training failed: %s\n", e.msg);
    train_state_free(&st);
    return best;
}

typedef struct {
    double best; /* fastest epoch after the first; -1 before */
    int seen;
} epoch_log;

static int log_epoch(void *ctx, const train_state *st, const train_epoch *ep, kd_err *e)
{
    (void)st;
    (void)e;
    epoch_log *l = ctx;
    if (l->seen++ > 0 && (l->best < 0 || ep->seconds < l->best))
        l->best = ep->seconds;
    return KD_OK;
}

/* AGP over the first epoch (a re-prune every 16 steps: fashion_mlp.yaml's
 * agp90, 4 ramp epochs of 422 steps over 100 prunings), masks held after:
 * the fastest held-mask epoch. */
static double masked_epoch(const nn_model *m, const data_set *d)
{
    kd_err e = {0};
    nn_model *c = nn_model_clone(m, &e);
    compress_agp_spec g = {.prune = {.scope = COMPRESS_LAYERWISE, .sparsity = 0.9f},
                           .initial_sparsity = 0.5f, .prune_epochs = 1, .every = 16};
    train_opts o = sgd_opts(3);
    epoch_log l = {.best = -1};
    train_hooks h = {.quiet = 1, .on_epoch = log_epoch, .cb_ctx = &l};
    if (!c || compress_prune_gradual(c, &g, &o, d, NULL, &h, NULL, &e) != KD_OK)
        fprintf(stderr, "bench: AGP failed: %s\n", e.msg);
    nn_model_free(c);
    return l.best;
}

static double qat_epoch(const nn_model *m, const data_set *d, compress_qmode mode)
{
    kd_err e = {0};
    compress_quant_spec qs = {.mode = mode, .per_channel = 1, .calib_batches = 4};
    nn_model *q = compress_qat_prepare(m, &qs, &e);
    double t = q ? epoch_seconds(q, d, 3, NULL) : -1;
    if (!q)
        fprintf(stderr, "bench: QAT failed: %s\n", e.msg);
    nn_model_free(q);
    return t;
}

/* The student of fashion_mlp.yaml (784-128-10) from scratch and distilled
 * from m's logits (cached first, as the pipeline does): fastest epochs. */
static void student_epochs(nn_model *teacher, const data_set *d, double *scratch, double *kd)
{
    const nn_layer_spec s[] = {{.kind = NN_FLATTEN}, {.kind = NN_DENSE, .units = 128},
                               {.kind = NN_RELU}, {.kind = NN_DENSE, .units = 10}};
    kd_err e = {0};
    nn_model *a = nn_model_new((nn_shape){1, 28, 28}, s, 4, NULL, &e);
    nn_model *b = nn_model_new((nn_shape){1, 28, 28}, s, 4, NULL, &e);
    float *tl = student_teacher_logits(teacher, d, 256, &e);
    student_distill_opts dopt = {.temperature = 4, .alpha = 0.9f, .student_tap = -1,
                                 .teacher_tap = -1};
    train_opts o = sgd_opts(4);
    student_distiller *dd = a && b && tl ? student_distiller_new(b, teacher, tl, d, &dopt, &o.opt,
                                                                 BATCH, 1, &e)
                                         : NULL;
    *scratch = *kd = -1;
    if (dd) {
        nn_model_init(a, 2);
        nn_model_init(b, 2);
        train_hooks h = {.quiet = 1};
        student_distiller_hooks(dd, &h);
        *scratch = epoch_seconds(a, d, 4, NULL);
        *kd = epoch_seconds(b, d, 4, &h);
    } else {
        fprintf(stderr, "bench: distillation failed: %s\n", e.msg);
    }
    student_distiller_free(dd);
    kd_afree(tl);
    nn_model_free(a);
    nn_model_free(b);
}

/* Held-mask and QAT epochs against a plain epoch of plain seconds. */
static void finetune_ratios(const nn_model *m, const data_set *d, double plain)
{
    double agp = masked_epoch(m, d), q4 = qat_epoch(m, d, COMPRESS_Q_INT4);
    double q8 = qat_epoch(m, d, COMPRESS_Q_STATIC8);
    printf("MLP  epoch ratios to a plain epoch (%.2f s): held-mask after AGP %.2f (goal <= 1.15); "
           "QAT int4 %.2f, int8 %.2f (goal <= 1.5)\n",
           plain, agp / plain, q4 / plain, q8 / plain);
}

void bench_train_qat(nn_model *m, const data_set *d)
{
    finetune_ratios(m, d, epoch_seconds(m, d, 3, NULL));
}

double bench_train(nn_model *m, const data_set *d)
{
    gemm g[64];
    int ng = step_gemms(m, BATCH, g);
    double u0 = cpu_seconds(0), s0 = cpu_seconds(1);
    double plain = epoch_seconds(m, d, 3, NULL);
    double user = cpu_seconds(0) - u0, sys = cpu_seconds(1) - s0;
    double ceiling = BATCH / time_gemms(g, ng, 20), rate = d->n / plain;
    printf("MLP  training %8.0f samples/s   GEMMs alone %8.0f samples/s   ratio %.2f (goal >= 0.80)\n",
           rate, ceiling, rate / ceiling);
    printf("MLP  training: kernel (sys) time %.1f%% of its CPU time (goal <= 5%%)\n",
           100 * sys / (user + sys > 0 ? user + sys : 1));
    finetune_ratios(m, d, plain);
    double sc, kd;
    student_epochs(m, d, &sc, &kd);
    printf("student 784-128-10: distilled epoch / scratch epoch %.2f (%.3f s / %.3f s; goal <= 1.3)\n",
           kd / sc, kd, sc);
    return rate;
}

void bench_torch_peer(double rate, int threads)
{
    const char *py = "/usr/bin/python3", *script = "bench/torch_peer.py";
    if (access(py, X_OK) != 0 || access(script, R_OK) != 0) {
        printf("PyTorch peer: skipped (%s not found)\n", access(py, X_OK) ? py : script);
        return;
    }
    char cmd[512], line[512] = "";
    snprintf(cmd, sizeof cmd, "%s %s %d %d 2>&1", py, script, threads, NSAMPLES_TORCH);
    FILE *f = popen(cmd, "r");
    double peer = 0;
    char blas[128] = "?";
    while (f && fgets(line, sizeof line, f)) {
        if (sscanf(line, "torch_peer samples_per_s=%lf threads=%*d blas=%127s", &peer, blas) == 2)
            break;
        if (strncmp(line, "torch_peer skip:", 16) == 0) {
            printf("PyTorch peer: skipped (%s)\n", line + 17);
            pclose(f);
            return;
        }
    }
    if (f)
        pclose(f);
    if (peer <= 0) {
        printf("PyTorch peer: skipped (no figure from %s: %s)\n", script, line);
        return;
    }
    printf("MLP  training: kdbench %.0f samples/s, PyTorch %.0f (%s): ratio %.2f (goal >= 1.5)\n",
           rate, peer, blas, rate / peer);
}

void bench_train_cnn(nn_model *m, const data_set *d)
{
    gemm g[64];
    int ng = step_gemms(m, BATCH, g);
    double t = epoch_seconds(m, d, 2, NULL);
    double ceiling = BATCH / time_gemms(g, ng, 20), rate = d->n / t;
    printf("CNN  training %8.0f samples/s   GEMMs alone %8.0f samples/s   ratio %.2f\n", rate,
           ceiling, rate / ceiling);
}
