/* conv2d: gradient checks through the model, and the im2col + sgemm kernels
 * against a direct convolution written here in double precision (the
 * reference is the specification: y[b][f][oy][ox] = bias[f] + sum over
 * c, i, j of w[f][c][i][j] * x[b][c][oy*s-p+i][ox*s-p+j], zero outside). */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../kdtest.h"

typedef struct {
    int n, c, h, w, f, k, s, p, oh, ow;
} ref_geom;

static nn_layer_spec conv_spec(int f, int k, int s, int p)
{
    nn_layer_spec sp = {.kind = NN_CONV2D, .filters = f, .kernel = k, .stride = s, .pad = p};
    return sp;
}

static ref_geom ref_geom_of(int n, nn_shape in, const nn_layer_spec *sp)
{
    ref_geom g = {n, in.c, in.h, in.w, sp->filters, sp->kernel, sp->stride ? sp->stride : 1,
                  sp->pad, 0, 0};
    g.oh = (g.h + 2 * g.p - g.k) / g.s + 1;
    g.ow = (g.w + 2 * g.p - g.k) / g.s + 1;
    return g;
}

/* Index of input (b, c, iy, ix), or -1 in the padding. */
static long in_at(const ref_geom *g, int b, int c, int iy, int ix)
{
    if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w)
        return -1;
    return (((long)b * g->c + c) * g->h + iy) * g->w + ix;
}

static long out_at(const ref_geom *g, int b, int f, int oy, int ox)
{
    return (((long)b * g->f + f) * g->oh + oy) * g->ow + ox;
}

static long w_at(const ref_geom *g, int f, int c, int i, int j)
{
    return (((long)f * g->c + c) * g->k + i) * g->k + j;
}

/* Visits every (output, weight, input) triple of the convolution once;
 * mode 0: y += w*x; mode 1: dw += dy*x and dx += dy*w. */
static void ref_conv(const ref_geom *g, const float *x, const float *w, const float *dy,
                     double *y, double *dw, double *dx, int mode)
{
    for (int b = 0; b < g->n; b++)
        for (int f = 0; f < g->f; f++)
            for (int oy = 0; oy < g->oh; oy++)
                for (int ox = 0; ox < g->ow; ox++) {
                    long o = out_at(g, b, f, oy, ox);
                    for (int c = 0; c < g->c; c++)
                        for (int i = 0; i < g->k; i++)
                            for (int j = 0; j < g->k; j++) {
                                long xi = in_at(g, b, c, oy * g->s - g->p + i,
                                                ox * g->s - g->p + j);
                                long wi = w_at(g, f, c, i, j);
                                if (xi < 0)
                                    continue;
                                if (mode == 0) {
                                    y[o] += (double)w[wi] * x[xi];
                                } else {
                                    dw[wi] += (double)dy[o] * x[xi];
                                    dx[xi] += (double)dy[o] * w[wi];
                                }
                            }
                }
}

static void fill_normal(float *a, size_t n, nn_rng *r)
{
    for (size_t i = 0; i < n; i++)
        a[i] = nn_rng_normal(r);
}

static void expect_close(const char *what, const float *a, const double *ref, size_t n,
                         double tol)
{
    for (size_t i = 0; i < n; i++) /* test first: each passing ck_assert costs a syscall */
        if (!(fabs(a[i] - ref[i]) <= tol * (1 + fabs(ref[i]))))
            ck_abort_msg("%s[%zu]: got %.7g, reference %.7g", what, i, a[i], ref[i]);
}

/* Builds a one-layer model, runs forward and backward on random data and
 * compares y, dW, db and dx with the direct reference.  Backward runs twice:
 * gradients must accumulate (x2) and dx must not change, which also covers
 * the path that recomputes im2col (the first backward overwrote the columns). */
static void check_against_ref(nn_shape in, nn_layer_spec sp, int n, uint64_t seed)
{
    kd_err e = {0};
    nn_model *m = nn_model_new(in, &sp, 1, NULL, &e);
    ck_assert_msg(m != NULL, "model: %s", e.msg);
    nn_model_init(m, seed);
    nn_layer *l = &m->layers[0];
    nn_rng r = nn_rng_stream(seed, NN_STREAM_TEST);
    fill_normal(l->b, l->nb, &r);
    ref_geom g = ref_geom_of(n, in, &sp);
    size_t nx = (size_t)n * nn_shape_size(in), ny = (size_t)n * nn_shape_size(l->out);
    ck_assert_int_eq(l->out.h, g.oh);
    ck_assert_int_eq(l->out.w, g.ow);
    float *x = malloc(nx * sizeof *x), *dy = malloc(ny * sizeof *dy);
    float *dx = malloc(nx * sizeof *dx);
    double *ry = calloc(ny, sizeof *ry), *rdw = calloc(l->nw, sizeof *rdw);
    double *rdx = calloc(nx, sizeof *rdx), *rdb = calloc(l->nb, sizeof *rdb);
    fill_normal(x, nx, &r);
    fill_normal(dy, ny, &r);
    nn_ctx c = {.train = 1};
    const float *y = nn_model_forward(m, x, n, &c);
    ck_assert_ptr_nonnull(y);
    for (size_t i = 0; i < ny; i++)
        ry[i] = l->b[(i / ((size_t)g.oh * g.ow)) % g.f];
    ref_conv(&g, x, l->w, NULL, ry, NULL, NULL, 0);
    expect_close("y", y, ry, ny, 1e-4);

    ref_conv(&g, x, l->w, dy, NULL, rdw, rdx, 1);
    for (size_t i = 0; i < ny; i++)
        rdb[i / ((size_t)g.oh * g.ow) % g.f] += dy[i];
    nn_model_zero_grad(m);
    for (int pass = 1; pass <= 2; pass++) {
        l->ops->backward(l, m->act[0], m->act[1], dy, dx, n, &c);
        expect_close("dx", dx, rdx, nx, 1e-4);
    }
    for (size_t i = 0; i < l->nw; i++)
        rdw[i] *= 2;
    for (size_t i = 0; i < l->nb; i++)
        rdb[i] *= 2;
    expect_close("dw", l->gw, rdw, l->nw, 1e-4);
    expect_close("db", l->gb, rdb, l->nb, 1e-4);
    free(x);
    free(dy);
    free(dx);
    free(ry);
    free(rdw);
    free(rdx);
    free(rdb);
    nn_model_free(m);
}

START_TEST(test_conv_gradcheck)
{
    nn_layer_spec p0 = conv_spec(3, 3, 0, 0), p1 = conv_spec(3, 3, 1, 1);
    nn_layer_spec s2 = conv_spec(3, 3, 2, 1), k1 = conv_spec(2, 1, 1, 0);
    nn_layer_spec rag = conv_spec(4, 3, 2, 1), big = conv_spec(2, 4, 3, 2);
    big.init = NN_INIT_XAVIER;
    kdt_gradcheck_layer(&p0, (nn_shape){2, 5, 5}, 2, 1, 1e-2, 2e-3);
    kdt_gradcheck_layer(&p1, (nn_shape){2, 5, 5}, 2, 1, 1e-2, 2e-3);
    kdt_gradcheck_layer(&s2, (nn_shape){2, 5, 5}, 2, 1, 1e-2, 2e-3);
    kdt_gradcheck_layer(&k1, (nn_shape){3, 4, 4}, 2, 0, 1e-2, 2e-3);
    kdt_gradcheck_layer(&rag, (nn_shape){3, 7, 6}, 2, 1, 1e-2, 2e-3);
    kdt_gradcheck_layer(&big, (nn_shape){2, 6, 7}, 3, 1, 1e-2, 2e-3);
}
END_TEST

/* Random shapes, strides and paddings; a config whose kernel exceeds the
 * padded input must be refused by setup instead. */
START_TEST(test_conv_random_vs_reference)
{
    nn_rng r = nn_rng_stream(2024, NN_STREAM_TEST);
    int checked = 0;
    for (int t = 0; t < 60; t++) {
        nn_shape in = {1 + (int)nn_rng_below(&r, 4), 1 + (int)nn_rng_below(&r, 9),
                       1 + (int)nn_rng_below(&r, 9)};
        nn_layer_spec sp = conv_spec(1 + (int)nn_rng_below(&r, 5), 1 + (int)nn_rng_below(&r, 4),
                                     (int)nn_rng_below(&r, 4), (int)nn_rng_below(&r, 3));
        int n = 1 + (int)nn_rng_below(&r, 3);
        if (sp.kernel > in.h + 2 * sp.pad || sp.kernel > in.w + 2 * sp.pad) {
            kd_err e = {0};
            ck_assert_ptr_null(nn_model_new(in, &sp, 1, NULL, &e));
            ck_assert_int_eq(e.code, KD_ECONFIG);
            continue;
        }
        check_against_ref(in, sp, n, 100 + (uint64_t)t);
        checked++;
    }
    ck_assert_int_ge(checked, 30);
}
END_TEST

/* The layer sizes of the benchmark CNN at a small batch, and a shape whose
 * batch columns exceed the cache budget (several chunks, im2col recomputed
 * in backward). */
START_TEST(test_conv_large_shapes)
{
    check_against_ref((nn_shape){1, 28, 28}, conv_spec(8, 3, 1, 1), 3, 1);
    check_against_ref((nn_shape){6, 14, 14}, conv_spec(5, 3, 1, 1), 4, 2);
    check_against_ref((nn_shape){4, 32, 32}, conv_spec(2, 5, 1, 2), 90, 3);
}
END_TEST

START_TEST(test_conv_setup_errors)
{
    kd_err e = {0};
    nn_layer_spec sp = conv_spec(3, 6, 1, 0);
    ck_assert_ptr_null(nn_model_new((nn_shape){1, 5, 5}, &sp, 1, NULL, &e));
    ck_assert_int_eq(e.code, KD_ECONFIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "kernel"));
    sp.pad = 1; /* 7x7 padded: fits, one output pixel */
    nn_model *m = nn_model_new((nn_shape){1, 5, 5}, &sp, 1, NULL, &e);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(m->layers[0].out.h, 2);
    nn_model_free(m);
    sp = conv_spec(0, 3, 1, 0);
    ck_assert_ptr_null(nn_model_new((nn_shape){1, 5, 5}, &sp, 1, NULL, &e));
    ck_assert_ptr_nonnull(strstr(e.msg, "filters"));
    sp = conv_spec(2, 3, -1, 0);
    ck_assert_ptr_null(nn_model_new((nn_shape){1, 5, 5}, &sp, 1, NULL, &e));
    sp = conv_spec(2, 3, 1, -1);
    ck_assert_ptr_null(nn_model_new((nn_shape){1, 5, 5}, &sp, 1, NULL, &e));
    sp = conv_spec(4096, 3, 1, 1); /* refused before any allocation */
    ck_assert_ptr_null(nn_model_new((nn_shape){8, 4000, 4000}, &sp, 1, NULL, &e));
    ck_assert_ptr_nonnull(strstr(e.msg, "too large"));
}
END_TEST

/* Shapes, counts, He init statistics, zero biases, and a reserve that grows. */
START_TEST(test_conv_shapes_init_reserve)
{
    kd_err e = {0};
    nn_layer_spec sp = conv_spec(32, 3, 2, 1);
    nn_model *m = nn_model_new((nn_shape){16, 15, 15}, &sp, 1, NULL, &e);
    ck_assert_ptr_nonnull(m);
    nn_layer *l = &m->layers[0];
    ck_assert_int_eq(l->out.c, 32);
    ck_assert_int_eq(l->out.h, 8);
    ck_assert_int_eq(l->out.w, 8);
    ck_assert_uint_eq(l->nw, 32 * 16 * 9);
    ck_assert_uint_eq(l->nb, 32);
    ck_assert(fabs(nn_model_macs(m) - 32.0 * 16 * 9 * 64) < 0.5);
    nn_model_init(m, 5);
    double ss = 0;
    for (size_t i = 0; i < l->nw; i++)
        ss += (double)l->w[i] * l->w[i];
    double sd = sqrt(ss / (double)l->nw), want = sqrt(2.0 / (16 * 9));
    ck_assert_msg(fabs(sd - want) < 0.1 * want, "He std %g, want %g", sd, want);
    for (size_t i = 0; i < l->nb; i++)
        ck_assert(l->b[i] == 0.0f);
    ck_assert_int_eq(nn_model_reserve(m, 2, &e), KD_OK);
    ck_assert_int_eq(l->ops->reserve(l, 9, &e), KD_OK); /* grows without a release */
    ck_assert_int_eq(l->max_batch, 9);
    nn_model_free(m);
}
END_TEST

/* Every allocation failure inside reserve is reported and leaks nothing
 * (the asan build checks the leaks); the layer then still works. */
START_TEST(test_conv_reserve_alloc_failures)
{
    kd_err e = {0};
    nn_layer_spec sp = conv_spec(4, 3, 1, 1);
    nn_model *m = nn_model_new((nn_shape){2, 6, 6}, &sp, 1, NULL, &e);
    ck_assert_ptr_nonnull(m);
    int failures = 0;
    for (long k = 0; k < 50; k++) {
        kd_alloc_fail_after(k);
        int rc = nn_model_reserve(m, 3, &e);
        kd_alloc_fail_after(-1);
        if (rc == KD_OK)
            break;
        ck_assert_int_eq(rc, KD_ENOMEM);
        failures++;
    }
    ck_assert_int_ge(failures, 3);
    nn_model_free(m);
    check_against_ref((nn_shape){2, 6, 6}, sp, 3, 4);
}
END_TEST

Suite *suite_nn_conv2d(void)
{
    Suite *s = suite_create("nn_conv2d");
    TCase *tc = tcase_create("conv2d");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_conv_gradcheck);
    tcase_add_test(tc, test_conv_random_vs_reference);
    tcase_add_test(tc, test_conv_large_shapes);
    tcase_add_test(tc, test_conv_setup_errors);
    tcase_add_test(tc, test_conv_shapes_init_reserve);
    tcase_add_test(tc, test_conv_reserve_alloc_failures);
    suite_add_tcase(s, tc);
    return s;
}
