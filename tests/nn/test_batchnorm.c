/* batchnorm: gradient checks in train mode (vector and spatial inputs) and
 * eval mode, the normalised statistics, the running-stat update (unbiased
 * variance, momentum), eval-mode use of the running stats, and setup errors. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../kdtest.h"

static nn_layer_spec bn_spec(float eps, float momentum)
{
    nn_layer_spec sp = {.kind = NN_BATCHNORM, .eps = eps, .momentum = momentum};
    return sp;
}

static nn_model *bn_model(nn_shape in, nn_layer_spec sp)
{
    kd_err e = {0};
    nn_model *m = nn_model_new(in, &sp, 1, NULL, &e);
    ck_assert_msg(m != NULL, "model: %s", e.msg);
    nn_model_init(m, 1);
    return m;
}

/* Per channel c over n samples: mean and biased variance of x, in double. */
static void channel_stats(nn_shape in, int n, const float *x, int c, double *mean, double *var)
{
    size_t S = (size_t)in.h * in.w;
    double s1 = 0, s2 = 0, M = (double)n * S;
    for (int b = 0; b < n; b++)
        for (size_t i = 0; i < S; i++)
            s1 += x[((size_t)b * in.c + c) * S + i];
    *mean = s1 / M;
    for (int b = 0; b < n; b++)
        for (size_t i = 0; i < S; i++) {
            double d = x[((size_t)b * in.c + c) * S + i] - *mean;
            s2 += d * d;
        }
    *var = s2 / M;
}

static float *random_input(size_t nx, float mean, float sd, uint64_t seed)
{
    nn_rng r = nn_rng_stream(seed, NN_STREAM_TEST);
    float *x = malloc(nx * sizeof *x);
    for (size_t i = 0; i < nx; i++)
        x[i] = mean + sd * nn_rng_normal(&r);
    return x;
}

START_TEST(test_bn_gradcheck)
{
    nn_layer_spec sp = bn_spec(0, 0);
    kdt_gradcheck_layer(&sp, (nn_shape){5, 1, 1}, 4, 1, 1e-2, 5e-3);
    kdt_gradcheck_layer(&sp, (nn_shape){3, 4, 5}, 3, 1, 1e-2, 5e-3);
    kdt_gradcheck_layer(&sp, (nn_shape){2, 3, 3}, 2, 0, 1e-2, 5e-3);
    kdt_gradcheck_layer(&sp, (nn_shape){6, 1, 1}, 3, 0, 1e-2, 5e-3);
    nn_layer_spec big_eps = bn_spec(0.5f, 0.3f);
    kdt_gradcheck_layer(&big_eps, (nn_shape){2, 2, 3}, 2, 1, 1e-2, 5e-3);
}
END_TEST

/* Train forward with gamma = 1, beta = 0: each channel comes out with mean 0
 * and variance var/(var+eps); running stats move by momentum 0.1 towards the
 * batch mean and the unbiased batch variance. */
static void check_train_stats(nn_shape in, int n, float mean, float sd)
{
    nn_model *m = bn_model(in, bn_spec(0, 0));
    nn_layer *l = &m->layers[0];
    ck_assert_uint_eq(l->nw, (size_t)in.c);
    ck_assert_uint_eq(l->nb, (size_t)in.c);
    ck_assert_uint_eq(l->nbuf, 2 * (size_t)in.c);
    size_t nx = (size_t)n * nn_shape_size(in), M = (size_t)n * in.h * in.w;
    float *x = random_input(nx, mean, sd, 5);
    nn_ctx c = {.train = 1};
    const float *y = nn_model_forward(m, x, n, &c);
    ck_assert_ptr_nonnull(y);
    /* float x resolves the mean only to |mean|*FLT_EPSILON; in units of std: */
    const double q = fabs(mean) * FLT_EPSILON / sd;
    for (int ch = 0; ch < in.c; ch++) {
        double xm, xv, ym, yv;
        channel_stats(in, n, x, ch, &xm, &xv);
        channel_stats(in, n, y, ch, &ym, &yv);
        ck_assert_msg(fabs(ym) < 2e-5 + q, "channel %d: mean %g", ch, ym);
        ck_assert_msg(fabs(yv - xv / (xv + 1e-5)) < 2e-4 + 2 * q, "channel %d: var %g", ch, yv);
        double want_mean = 0.1 * xm, want_var = 0.9 + 0.1 * xv * M / (M - 1.0);
        ck_assert_msg(fabs(l->buf[ch] - want_mean) < 1e-5 * (1 + fabs(want_mean)),
                      "running mean %g, want %g",
                      l->buf[ch], want_mean);
        ck_assert_msg(fabs(l->buf[in.c + ch] - want_var) < 1e-4, "running var %g, want %g",
                      l->buf[in.c + ch], want_var);
    }
    free(x);
    nn_model_free(m);
}

START_TEST(test_bn_train_stats)
{
    check_train_stats((nn_shape){7, 1, 1}, 16, 3.0f, 2.0f); /* per feature over the batch */
    check_train_stats((nn_shape){3, 5, 4}, 4, 3.0f, 2.0f);  /* per channel over n*h*w */
    /* |mean| >> std: the variance must not cancel */
    check_train_stats((nn_shape){2, 6, 6}, 5, 1000.0f, 0.5f);
}
END_TEST

/* A non-default momentum, repeated steps: running = (1-m)*running + m*batch. */
START_TEST(test_bn_momentum)
{
    nn_shape in = {2, 3, 3};
    nn_model *m = bn_model(in, bn_spec(0, 0.5f));
    nn_layer *l = &m->layers[0];
    float *x = random_input(4 * nn_shape_size(in), -1.0f, 0.5f, 9);
    nn_ctx c = {.train = 1};
    double rm = 0, rv = 1, xm, xv;
    channel_stats(in, 4, x, 1, &xm, &xv);
    for (int step = 0; step < 3; step++) {
        nn_model_forward(m, x, 4, &c);
        rm = 0.5 * rm + 0.5 * xm;
        rv = 0.5 * rv + 0.5 * xv * 36 / 35;
        ck_assert(fabs(l->buf[1] - rm) < 1e-5);
        ck_assert(fabs(l->buf[in.c + 1] - rv) < 1e-5);
    }
    free(x);
    nn_model_free(m);
}
END_TEST

/* Eval forward: y = gamma*(x - rm)/sqrt(rv + eps) + beta, and no stat updates. */
START_TEST(test_bn_eval_uses_running_stats)
{
    nn_shape in = {3, 2, 2};
    const float eps = 1e-3f;
    nn_model *m = bn_model(in, bn_spec(eps, 0));
    nn_layer *l = &m->layers[0];
    const float gamma[3] = {0.5f, 2.0f, -1.0f}, beta[3] = {0.1f, -0.2f, 0.3f};
    const float rm[3] = {1.0f, -2.0f, 0.5f}, rv[3] = {4.0f, 0.25f, 1.0f};
    memcpy(l->w, gamma, sizeof gamma);
    memcpy(l->b, beta, sizeof beta);
    memcpy(l->buf, rm, sizeof rm);
    memcpy(l->buf + 3, rv, sizeof rv);
    int n = 2;
    float *x = random_input((size_t)n * nn_shape_size(in), 0.0f, 3.0f, 13);
    nn_ctx c = {.train = 0};
    const float *y = nn_model_forward(m, x, n, &c);
    for (int i = 0; i < n * 12; i++) {
        int ch = (i / 4) % 3;
        double want = gamma[ch] * (x[i] - rm[ch]) / sqrt(rv[ch] + (double)eps) + beta[ch];
        ck_assert_msg(fabs(y[i] - want) < 1e-5 * (1 + fabs(want)), "y[%d] %g want %g", i, y[i],
                      want);
    }
    ck_assert(memcmp(l->buf, rm, sizeof rm) == 0 && memcmp(l->buf + 3, rv, sizeof rv) == 0);
    free(x);
    nn_model_free(m);
}
END_TEST

START_TEST(test_bn_init_and_errors)
{
    nn_model *m = bn_model((nn_shape){4, 3, 3}, bn_spec(0, 0));
    nn_layer *l = &m->layers[0];
    for (int i = 0; i < 4; i++) {
        ck_assert(l->w[i] == 1.0f && l->b[i] == 0.0f);
        ck_assert(l->buf[i] == 0.0f && l->buf[4 + i] == 1.0f);
    }
    ck_assert_int_eq(l->out.c, 4);
    ck_assert_int_eq(l->out.h, 3);
    nn_model_free(m);
    kd_err e = {0};
    nn_layer_spec sp = bn_spec(-1e-3f, 0);
    ck_assert_ptr_null(nn_model_new((nn_shape){4, 1, 1}, &sp, 1, NULL, &e));
    ck_assert_int_eq(e.code, KD_ECONFIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "eps"));
    sp = bn_spec(0, 1.5f);
    ck_assert_ptr_null(nn_model_new((nn_shape){4, 1, 1}, &sp, 1, NULL, &e));
    ck_assert_ptr_nonnull(strstr(e.msg, "momentum"));
}
END_TEST

Suite *suite_nn_batchnorm(void)
{
    Suite *s = suite_create("nn_batchnorm");
    TCase *tc = tcase_create("batchnorm");
    tcase_add_test(tc, test_bn_gradcheck);
    tcase_add_test(tc, test_bn_train_stats);
    tcase_add_test(tc, test_bn_momentum);
    tcase_add_test(tc, test_bn_eval_uses_running_stats);
    tcase_add_test(tc, test_bn_init_and_errors);
    suite_add_tcase(s, tc);
    return s;
}
