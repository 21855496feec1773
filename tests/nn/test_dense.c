/* dense: forward and backward against naive loops on ragged shapes (both the
 * sgemv path at batch 1 and sgemm), the shared gradient check, He and Xavier
 * initialisation statistics, setup errors and MAC counts. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../kdtest.h"

static nn_model *dense_model(nn_shape in, int units, nn_init init)
{
    nn_layer_spec sp = {.kind = NN_DENSE, .units = units, .init = init};
    kd_err e = {0};
    nn_model *m = nn_model_new(in, &sp, 1, NULL, &e);
    ck_assert_msg(m != NULL, "model: %s", e.msg);
    return m;
}

static void fill_normal(float *p, size_t n, uint64_t seed)
{
    nn_rng r = nn_rng_stream(seed, NN_STREAM_TEST);
    for (size_t i = 0; i < n; i++)
        p[i] = nn_rng_normal(&r);
}

static void assert_close(const char *what, const float *got, const double *want,
                         const double *mag, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs(got[i] - want[i]) <= 1e-5 * (1 + mag[i]),
                      "%s[%zu]: %.8g, want %.8g", what, i, (double)got[i], want[i]);
}

/* y[i][j] = b[j] + sum_k x[i][k] W[j][k], in double; mag = sum of |terms| */
static void naive_forward(const nn_layer *l, const float *x, int n, double *y, double *mag)
{
    const int k = (int)nn_shape_size(l->in), u = l->spec.units;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < u; j++) {
            double s = l->b[j], a = fabs(l->b[j]);
            for (int t = 0; t < k; t++) {
                s += (double)x[i * k + t] * l->w[j * k + t];
                a += fabs((double)x[i * k + t] * l->w[j * k + t]);
            }
            y[i * u + j] = s;
            mag[i * u + j] = a;
        }
}

/* gw = 2 dy^T x and gb = 2 colsum(dy) (two accumulated calls), dx = dy W */
static void check_backward(const nn_layer *l, const float *x, const float *dy, const float *dx,
                           int n, double *want, double *mag)
{
    const int k = (int)nn_shape_size(l->in), units = l->spec.units;
    for (int j = 0; j < units; j++) /* gw[j][t] = 2 sum_i dy[i][j] x[i][t] */
        for (int t = 0; t < k; t++) {
            double s = 0, a = 0;
            for (int i = 0; i < n; i++) {
                s += 2.0 * dy[i * units + j] * x[i * k + t];
                a += fabs(2.0 * dy[i * units + j] * x[i * k + t]);
            }
            want[j * k + t] = s;
            mag[j * k + t] = a;
        }
    assert_close("gw", l->gw, want, mag, (size_t)units * k);
    for (int j = 0; j < units; j++) {
        double s = 0, a = 0;
        for (int i = 0; i < n; i++) {
            s += 2.0 * dy[i * units + j];
            a += fabs(2.0 * dy[i * units + j]);
        }
        want[j] = s;
        mag[j] = a;
    }
    assert_close("gb", l->gb, want, mag, (size_t)units);
    for (int i = 0; i < n; i++) /* dx[i][t] = sum_j dy[i][j] W[j][t] */
        for (int t = 0; t < k; t++) {
            double s = 0, a = 0;
            for (int j = 0; j < units; j++) {
                s += (double)dy[i * units + j] * l->w[j * k + t];
                a += fabs((double)dy[i * units + j] * l->w[j * k + t]);
            }
            want[i * k + t] = s;
            mag[i * k + t] = a;
        }
    assert_close("dx", dx, want, mag, (size_t)n * k);
}

static void check_shape(nn_shape in, int units, int n)
{
    nn_model *m = dense_model(in, units, NN_INIT_AUTO);
    nn_layer *l = &m->layers[0];
    const int k = (int)nn_shape_size(in);
    fill_normal(m->params, m->nparams, (uint64_t)(k * 131 + units));
    float *x = malloc(sizeof(float) * n * k), *dy = malloc(sizeof(float) * n * units);
    float *dx = malloc(sizeof(float) * n * k);
    fill_normal(x, (size_t)n * k, 1);
    fill_normal(dy, (size_t)n * units, 2);
    size_t big = (size_t)(n > units ? n : units) * (k > units ? k : units) + (size_t)n * units;
    double *want = malloc(sizeof(double) * big), *mag = malloc(sizeof(double) * big);
    nn_ctx c = {.train = 1};

    const float *y = nn_model_forward(m, x, n, &c);
    ck_assert_ptr_nonnull(y);
    naive_forward(l, x, n, want, mag);
    assert_close("y", y, want, mag, (size_t)n * units);

    /* backward twice: gradients accumulate (2x), dx is overwritten */
    nn_model_zero_grad(m);
    memset(dx, 0x7f, sizeof(float) * n * k);
    l->ops->backward(l, x, y, dy, dx, n, &c);
    l->ops->backward(l, x, y, dy, dx, n, &c);
    check_backward(l, x, dy, dx, n, want, mag);
    free(x);
    free(dy);
    free(dx);
    free(want);
    free(mag);
    nn_model_free(m);
}

START_TEST(test_forward_backward_naive)
{
    const int batches[] = {1, 3, 17};
    const nn_shape ins[] = {{5, 1, 1}, {1, 1, 13}, {2, 3, 5}, {33, 1, 1}, {70, 1, 1}};
    const int outs[] = {1, 2, 10, 33};
    for (size_t b = 0; b < 3; b++)
        for (size_t i = 0; i < sizeof ins / sizeof *ins; i++)
            for (size_t o = 0; o < sizeof outs / sizeof *outs; o++)
                check_shape(ins[i], outs[o], batches[b]);
}
END_TEST

/* Split across a team (eval mode, OpenBLAS serial as in a model with a
 * team): the same outputs as the naive product, for layers big enough to be
 * split, ragged unit counts included. */
START_TEST(test_forward_on_team)
{
    const int units[] = {300, 257, 1000};
    for (int nt = 2; nt <= 3; nt++) {
        kd_err e = {0};
        nn_team *team = nn_team_new(nt, &e);
        ck_assert_ptr_nonnull(team);
        for (size_t o = 0; o < 3; o++)
            for (int n = 1; n <= 5; n += 4) {
                nn_model *m = dense_model((nn_shape){300, 1, 1}, units[o], NN_INIT_AUTO);
                nn_model_init(m, 3);
                nn_layer *l = &m->layers[0];
                fill_normal(l->b, l->nb, 4);
                size_t ny = (size_t)n * units[o];
                float *x = malloc((size_t)n * 300 * sizeof *x), *y = malloc(ny * sizeof *y);
                double *want = malloc(ny * sizeof *want), *mag = malloc(ny * sizeof *mag);
                fill_normal(x, (size_t)n * 300, 5);
                nn_ctx c = {.train = 0, .team = team};
                int blas = nn_blas_serial_begin();
                l->ops->forward(l, x, y, n, &c);
                nn_blas_serial_end(blas);
                naive_forward(l, x, n, want, mag);
                assert_close("team forward", y, want, mag, ny);
                free(x), free(y), free(want), free(mag);
                nn_model_free(m);
            }
        nn_team_free(team);
    }
}
END_TEST

START_TEST(test_gradcheck)
{
    nn_layer_spec sp = {.kind = NN_DENSE, .units = 4};
    kdt_gradcheck_layer(&sp, (nn_shape){5, 1, 1}, 3, 1, 1e-2, 2e-3);
    kdt_gradcheck_layer(&sp, (nn_shape){2, 2, 3}, 1, 0, 1e-2, 2e-3);
    sp.units = 1;
    kdt_gradcheck_layer(&sp, (nn_shape){7, 1, 1}, 5, 1, 1e-2, 2e-3);
}
END_TEST

static void moments(const float *w, size_t n, double *mean, double *var, double *maxabs)
{
    double s = 0, s2 = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        s += w[i];
        s2 += (double)w[i] * w[i];
        mx = fabs(w[i]) > mx ? fabs(w[i]) : mx;
    }
    *mean = s / n;
    *var = s2 / n - *mean * *mean;
    *maxabs = mx;
}

START_TEST(test_init_variance)
{
    /* 200 inputs, 100 units: 20000 weights, variance known within ~1% */
    const nn_init inits[] = {NN_INIT_AUTO, NN_INIT_HE, NN_INIT_XAVIER};
    for (int t = 0; t < 3; t++) {
        nn_model *m = dense_model((nn_shape){200, 1, 1}, 100, inits[t]);
        for (size_t i = 0; i < m->nparams; i++)
            m->params[i] = 5; /* init must overwrite biases too */
        nn_model_init(m, 1234);
        nn_layer *l = &m->layers[0];
        double mean, var, mx;
        moments(l->w, l->nw, &mean, &var, &mx);
        double want = inits[t] == NN_INIT_XAVIER ? 2.0 / 300 : 2.0 / 200;
        ck_assert_msg(fabs(var / want - 1) < 0.05, "init %d: var %g want %g", t, var, want);
        ck_assert_msg(fabs(mean) < 0.005, "init %d: mean %g", t, mean);
        if (inits[t] == NN_INIT_XAVIER) /* uniform on [-a, a], a = sqrt(6/300) */
            ck_assert_double_le(mx, sqrt(6.0 / 300) + 1e-6);
        else /* normal: some beyond 3 sd */
            ck_assert_double_gt(mx, 3 * sqrt(want));
        for (size_t j = 0; j < l->nb; j++)
            ck_assert(l->b[j] == 0.0f);
        /* the same seed gives the same weights, another seed others */
        float *w1 = malloc(l->nw * sizeof *w1);
        memcpy(w1, l->w, l->nw * sizeof *w1);
        nn_model_init(m, 1234);
        ck_assert(memcmp(w1, l->w, l->nw * sizeof *w1) == 0);
        nn_model_init(m, 1235);
        ck_assert(memcmp(w1, l->w, l->nw * sizeof *w1) != 0);
        free(w1);
        nn_model_free(m);
    }
}
END_TEST

START_TEST(test_setup_and_macs)
{
    nn_model *m = dense_model((nn_shape){3, 4, 5}, 7, NN_INIT_AUTO);
    ck_assert_int_eq(m->layers[0].out.c, 7);
    ck_assert_int_eq(m->layers[0].out.h, 1);
    ck_assert_uint_eq(m->nparams, 60 * 7 + 7);
    ck_assert_int_eq(m->nclasses, 7);
    ck_assert(nn_model_macs(m) == 420.0);
    nn_model_free(m);
    nn_layer_spec sp = {.kind = NN_DENSE, .units = 0};
    kd_err e = {0};
    int bad = 5;
    ck_assert_ptr_null(nn_model_new((nn_shape){3, 1, 1}, &sp, 1, &bad, &e));
    ck_assert_int_eq(e.code, KD_ECONFIG);
    ck_assert_int_eq(bad, 0);
    ck_assert_str_eq(e.msg, "layer 0 (dense): units must be >= 1");
}
END_TEST

Suite *suite_nn_dense(void)
{
    Suite *s = suite_create("nn_dense");
    TCase *t = tcase_create("dense");
    tcase_add_test(t, test_forward_backward_naive);
    tcase_add_test(t, test_forward_on_team);
    tcase_add_test(t, test_gradcheck);
    tcase_add_test(t, test_init_variance);
    tcase_add_test(t, test_setup_and_macs);
    suite_add_tcase(s, t);
    return s;
}
