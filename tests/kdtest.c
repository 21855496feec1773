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
