/* Shared helpers: temp folders, fixtures, and the layer gradient check. */
#include "kdtest.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

const char *kdt_tmpdir(char *buf, size_t n)
{
    const char *base = getenv("TMPDIR");
    snprintf(buf, n, "%s/kdtest-XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(buf));
    return buf;
}

void kdt_write(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    fclose(f);
}

const char *kdt_bin(void)
{
    const char *b = getenv("KD_BIN");
    return b && *b ? b : "bin/kdbench";
}

int kdt_kdbench(char *out, size_t out_n, const char *fmt, ...)
{
    char args[4096], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", kdt_bin(), args);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t n = fread(out, 1, out_n - 1, p);
    out[n] = 0;
    char sink[4096];
    while (fread(sink, 1, sizeof sink, p) > 0)
        ;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* loss = sum(y .* r), so dL/dy = r */
static double loss_of(nn_model *m, const float *x, int n, const float *r, const nn_ctx *c,
                      uint64_t drop_seed)
{
    nn_rng rng = nn_rng_stream(drop_seed, NN_STREAM_DROPOUT);
    nn_ctx cc = *c;
    cc.rng = &rng;
    const float *y = nn_model_forward(m, x, n, &cc);
    size_t ny = (size_t)n * nn_shape_size(m->layers[m->nlayers - 1].out);
    double s = 0;
    for (size_t i = 0; i < ny; i++)
        s += (double)y[i] * r[i];
    return s;
}

static void check_close(const char *what, size_t i, double a, double num, double tol)
{
    double err = fabs(a - num);
    if (err > tol * (1 + fabs(a) + fabs(num)))
        ck_abort_msg("gradcheck %s[%zu]: analytic %.6g numeric %.6g", what, i, a, num);
}

void kdt_gradcheck_layer(const nn_layer_spec *spec, nn_shape in, int n, int train, double h,
                         double tol)
{
    kd_err e = {0};
    nn_model *m = nn_model_new(in, spec, 1, NULL, &e);
    ck_assert_msg(m != NULL, "model: %s", e.msg);
    nn_model_init(m, 7);
    nn_rng r = nn_rng_stream(11, NN_STREAM_TEST);
    /* perturb every parameter so biases and bn gamma/beta are not trivial */
    for (size_t i = 0; i < m->nparams; i++)
        m->params[i] += 0.1f * nn_rng_normal(&r);
    size_t nx = (size_t)n * nn_shape_size(in);
    size_t ny = (size_t)n * nn_shape_size(m->layers[0].out);
    float *x = malloc(nx * sizeof *x), *ry = malloc(ny * sizeof *ry);
    for (size_t i = 0; i < nx; i++)
        x[i] = nn_rng_normal(&r);
    for (size_t i = 0; i < ny; i++)
        ry[i] = nn_rng_normal(&r);
    nn_ctx c = {.train = train};
    const uint64_t ds = 99;

    /* analytic */
    nn_model_zero_grad(m);
    loss_of(m, x, n, ry, &c, ds);
    float *dx = malloc(nx * sizeof *dx);
    nn_rng rng = nn_rng_stream(ds, NN_STREAM_DROPOUT);
    nn_ctx cc = c;
    cc.rng = &rng;
    nn_model_forward(m, x, n, &cc);
    nn_model_zero_grad(m);
    /* nn_model_backward skips dx of the first layer; call the layer directly */
    nn_layer *l = &m->layers[0];
    l->ops->backward(l, m->act[0], m->act[1], ry, dx, n, &cc);
    float *gp = malloc((m->nparams ? m->nparams : 1) * sizeof *gp);
    memcpy(gp, m->grads, m->nparams * sizeof *gp);
    /* batchnorm running stats change at each train forward; restore them each time */
    float *buf0 = malloc((m->nbuffers ? m->nbuffers : 1) * sizeof *buf0);
    memcpy(buf0, m->buffers, m->nbuffers * sizeof *buf0);

    for (size_t i = 0; i < nx; i++) {
        float keep = x[i];
        x[i] = keep + (float)h;
        double lp = loss_of(m, x, n, ry, &c, ds);
        x[i] = keep - (float)h;
        double lm = loss_of(m, x, n, ry, &c, ds);
        x[i] = keep;
        memcpy(m->buffers, buf0, m->nbuffers * sizeof *buf0);
        check_close("dx", i, dx[i], (lp - lm) / (2 * h), tol);
    }
    for (size_t i = 0; i < m->nparams; i++) {
        float keep = m->params[i];
        m->params[i] = keep + (float)h;
        double lp = loss_of(m, x, n, ry, &c, ds);
        m->params[i] = keep - (float)h;
        double lm = loss_of(m, x, n, ry, &c, ds);
        m->params[i] = keep;
        memcpy(m->buffers, buf0, m->nbuffers * sizeof *buf0);
        check_close("dparam", i, gp[i], (lp - lm) / (2 * h), tol);
    }
    free(x);
    free(ry);
    free(dx);
    free(gp);
    free(buf0);
    nn_model_free(m);
}

/* ---- skips and kernel paths ---------------------------------------------------- */

#include <fcntl.h>
#include <unistd.h>

#include "../compress/kernels/cpu.h"

_Static_assert(KDT_NISA == KD_ISA_N, "kdtest's level count");

static void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char *fmt, ...)
{
    const char *path = getenv("KDT_LOG");
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (!path || !*path || n < 0)
        return;
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600);
    if (fd < 0)
        return;
    ssize_t w = write(fd, line, (size_t)n); /* one write: O_APPEND keeps lines whole */
    (void)w;
    close(fd);
}

/* The level a looped test forced (each test runs in its own process), so
 * that a skip inside it counts against that level: -1 outside a loop. */
static int cur_level = -1;

void kdt_skip_at(const char *test, const char *fmt, ...)
{
    char why[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    fprintf(stderr, "SKIP %s: %s\n", test, why);
    if (cur_level >= 0) /* "unran" undoes the level's "ran" line */
        log_line("unran %s %s", test, kernels_isa_name((kd_isa)cur_level));
    log_line("skip %s%s%s", test, cur_level >= 0 ? " " : "",
             cur_level >= 0 ? kernels_isa_name((kd_isa)cur_level) : "");
}

int kdt_isa_begin(const char *test, int i)
{
    kernels_isa_force(KD_ISA_N);
    kd_isa top = kernels_isa(); /* the host's, or lower under KD_ISA */
    if (i > (int)top) {
        const char *name = kernels_isa_name((kd_isa)i);
        if (kernels_isa_supported((kd_isa)i))
            fprintf(stderr, "SKIP %s [%s]: KD_ISA caps the kernels at %s\n", test, name,
                    kernels_isa_name(top));
        else
            fprintf(stderr, "SKIP %s [%s]: this CPU has no %s (widest: %s)\n", test, name, name,
                    kernels_isa_name(kernels_isa_host()));
        log_line("skip %s %s", test, name);
        return 0;
    }
    kernels_isa_force((kd_isa)i);
    cur_level = i;
    log_line("ran %s %s", test, kernels_isa_name((kd_isa)i));
    return 1;
}

void kdt_log_open(void)
{
    char path[] = "/tmp/kdtest-log-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return;
    close(fd);
    setenv("KDT_LOG", path, 1);
}

void kdt_log_summary(int run, int failed)
{
    const char *path = getenv("KDT_LOG");
    FILE *f = path && *path ? fopen(path, "r") : NULL;
    int skipped = 0, ran_isa[KDT_NISA] = {0}, skip_isa[KDT_NISA] = {0};
    char line[512], kind[8], test[400], isa[16];
    while (f && fgets(line, sizeof line, f)) {
        int k = sscanf(line, "%7s %399s %15s", kind, test, isa);
        int is_skip = k >= 2 && strcmp(kind, "skip") == 0;
        int unran = k >= 2 && strcmp(kind, "unran") == 0;
        skipped += is_skip;
        kd_isa l;
        if (k == 3 && kernels_isa_parse(isa, &l) == 0)
            (is_skip ? skip_isa : ran_isa)[l] += unran ? -1 : 1;
    }
    if (f)
        fclose(f);
    if (path && *path)
        unlink(path);
    printf("kdtest: kernel paths (host %s):", kernels_isa_name(kernels_isa_host()));
    for (int i = 0; i < KDT_NISA; i++)
        printf("%s %s ran %d, skipped %d", i ? ";" : "", kernels_isa_name((kd_isa)i), ran_isa[i],
               skip_isa[i]);
    printf("\nkdtest: %d passed, %d failed, %d skipped\n", run - failed - skipped, failed, skipped);
}

void kdt_write_idx(const char *dir, const char *name, int n, int nclasses)
{
    char path[600];
    uint8_t *b = calloc(1, 16 + (size_t)n * 16);
    ck_assert_ptr_nonnull(b);
    const uint8_t ih[16] = {0, 0, 8, 3, 0, 0, (uint8_t)(n >> 8), (uint8_t)n,
                            0, 0, 0, 4, 0, 0, 0, 4};
    memcpy(b, ih, 16);
    for (int i = 0; i < n * 16; i++)
        b[16 + i] = (uint8_t)(i * 37);
    snprintf(path, sizeof path, "%s/%s-images", dir, name);
    kdt_write(path, b, 16 + (size_t)n * 16);
    const uint8_t lh[8] = {0, 0, 8, 1, 0, 0, (uint8_t)(n >> 8), (uint8_t)n};
    memcpy(b, lh, 8);
    for (int i = 0; i < n; i++)
        b[8 + i] = (uint8_t)(i % nclasses);
    snprintf(path, sizeof path, "%s/%s-labels", dir, name);
    kdt_write(path, b, 8 + (size_t)n);
    free(b);
}
