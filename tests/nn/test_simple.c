/* relu, flatten and dropout: gradient checks, exact forward values, and
 * dropout's inverted scaling, drop fraction, eval identity and seeded masks. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../kdtest.h"

static nn_model *one_layer(nn_shape in, nn_layer_spec sp)
{
    kd_err e = {0};
    nn_model *m = nn_model_new(in, &sp, 1, NULL, &e);
    ck_assert_msg(m != NULL, "model: %s", e.msg);
    return m;
}

START_TEST(test_gradchecks)
{
    nn_layer_spec relu = {.kind = NN_RELU}, flat = {.kind = NN_FLATTEN};
    nn_layer_spec drop = {.kind = NN_DROPOUT, .rate = 0.4f};
    kdt_gradcheck_layer(&relu, (nn_shape){6, 1, 1}, 4, 1, 1e-3, 1e-3);
    kdt_gradcheck_layer(&relu, (nn_shape){2, 3, 3}, 2, 0, 1e-3, 1e-3);
    kdt_gradcheck_layer(&flat, (nn_shape){2, 3, 4}, 3, 1, 1e-2, 1e-3);
    kdt_gradcheck_layer(&drop, (nn_shape){5, 2, 2}, 4, 1, 1e-2, 1e-3);
    kdt_gradcheck_layer(&drop, (nn_shape){7, 1, 1}, 3, 0, 1e-2, 1e-3);
}
END_TEST

START_TEST(test_relu_values)
{
    nn_model *m = one_layer((nn_shape){6, 1, 1}, (nn_layer_spec){.kind = NN_RELU});
    const float x[6] = {-1.0f, 0.0f, 2.5f, -0.0f, 1e-30f, -1e30f};
    const float want[6] = {0, 0, 2.5f, 0, 1e-30f, 0};
    nn_ctx c = {.train = 1};
    const float *y = nn_model_forward(m, x, 1, &c);
    for (int i = 0; i < 6; i++)
        ck_assert_msg(y[i] == want[i] && !signbit(y[i]), "y[%d] = %g", i, (double)y[i]);
    float dy[6] = {1, 2, 3, 4, 5, 6}, dx[6];
    nn_layer *l = &m->layers[0];
    l->ops->backward(l, x, y, dy, dx, 1, &c);
    const float wantdx[6] = {0, 0, 3, 0, 5, 0};
    for (int i = 0; i < 6; i++)
        ck_assert(dx[i] == wantdx[i]);
    ck_assert_uint_eq(m->nparams, 0);
    ck_assert(nn_model_macs(m) == 0);
    nn_model_free(m);
}
END_TEST

START_TEST(test_flatten_shape)
{
    nn_model *m = one_layer((nn_shape){2, 3, 4}, (nn_layer_spec){.kind = NN_FLATTEN});
    ck_assert_int_eq(m->layers[0].out.c, 24);
    ck_assert_int_eq(m->layers[0].out.h, 1);
    ck_assert_int_eq(m->layers[0].out.w, 1);
    ck_assert_int_eq(m->nclasses, 24);
    float x[48];
    for (int i = 0; i < 48; i++)
        x[i] = (float)i - 20.5f;
    nn_ctx c = {0};
    const float *y = nn_model_forward(m, x, 2, &c);
    ck_assert(memcmp(x, y, sizeof x) == 0);
    nn_model_free(m);
}
END_TEST

/* n x 100 ones through dropout(rate) in train mode with rng seed */
static float *drop_ones(nn_model *m, int n, uint64_t seed, int train)
{
    size_t cnt = (size_t)n * 100;
    float *x = malloc(cnt * sizeof *x), *out = malloc(cnt * sizeof *out);
    for (size_t i = 0; i < cnt; i++)
        x[i] = 1.0f;
    nn_rng r = nn_rng_stream(seed, NN_STREAM_DROPOUT);
    nn_ctx c = {.train = train, .rng = &r};
    const float *y = nn_model_forward(m, x, n, &c);
    ck_assert_ptr_nonnull(y);
    memcpy(out, y, cnt * sizeof *out);
    free(x);
    return out;
}

START_TEST(test_dropout_statistics)
{
    const float rates[] = {0.1f, 0.3f, 0.5f, 0.9f};
    const int n = 1000; /* 100000 units */
    for (int t = 0; t < 4; t++) {
        float rate = rates[t];
        nn_model *m =
            one_layer((nn_shape){100, 1, 1}, (nn_layer_spec){.kind = NN_DROPOUT, .rate = rate});
        float *y = drop_ones(m, n, 1, 1);
        const float scale = 1.0f / (1.0f - rate);
        long zeros = 0;
        double sum = 0;
        for (int i = 0; i < n * 100; i++) {
            ck_assert_msg(y[i] == 0.0f || y[i] == scale, "y[%d] = %g", i, (double)y[i]);
            zeros += y[i] == 0.0f;
            sum += y[i];
        }
        /* binomial sd of the fraction <= 0.0016: 0.01 is > 6 sd */
        double frac = zeros / (n * 100.0), mean = sum / (n * 100.0);
        ck_assert_msg(fabs(frac - rate) < 0.01, "rate %g: dropped %g", (double)rate, frac);
        ck_assert_msg(fabs(mean - 1) < 0.01 * scale * 6, "rate %g: mean %g", (double)rate, mean);
        /* same rng => same mask; another seed => another mask */
        float *y2 = drop_ones(m, n, 1, 1), *y3 = drop_ones(m, n, 2, 1);
        ck_assert(memcmp(y, y2, sizeof(float) * n * 100) == 0);
        ck_assert(memcmp(y, y3, sizeof(float) * n * 100) != 0);
        /* eval mode is the identity */
        float *ye = drop_ones(m, n, 1, 0);
        for (int i = 0; i < n * 100; i++)
            ck_assert(ye[i] == 1.0f);
        free(y);
        free(y2);
        free(y3);
        free(ye);
        nn_model_free(m);
    }
}
END_TEST

START_TEST(test_dropout_backward_uses_mask)
{
    nn_model *m =
        one_layer((nn_shape){100, 1, 1}, (nn_layer_spec){.kind = NN_DROPOUT, .rate = 0.25f});
    float x[300], dy[300], dx[300];
    for (int i = 0; i < 300; i++) {
        x[i] = 1.0f + (float)i;
        dy[i] = 0.5f - (float)i;
    }
    nn_rng r = nn_rng_stream(3, NN_STREAM_DROPOUT);
    nn_ctx c = {.train = 1, .rng = &r};
    const float *y = nn_model_forward(m, x, 3, &c);
    nn_layer *l = &m->layers[0];
    l->ops->backward(l, x, y, dy, dx, 3, &c);
    int dropped = 0;
    for (int i = 0; i < 300; i++) {
        float mask = y[i] == 0.0f ? 0.0f : 1.0f / 0.75f;
        ck_assert(y[i] == x[i] * mask);
        ck_assert(dx[i] == dy[i] * mask);
        dropped += mask == 0.0f;
    }
    ck_assert(dropped > 30 && dropped < 120); /* 75 expected */
    /* rate 0 in train mode is the identity too */
    nn_model_free(m);
    m = one_layer((nn_shape){4, 1, 1}, (nn_layer_spec){.kind = NN_DROPOUT, .rate = 0});
    y = nn_model_forward(m, x, 2, &c);
    ck_assert(memcmp(y, x, 8 * sizeof *x) == 0);
    nn_model_free(m);
}
END_TEST

START_TEST(test_dropout_bad_rate)
{
    const float bad[] = {-0.1f, 1.0f, 1.5f, NAN};
    for (int i = 0; i < 4; i++) {
        nn_layer_spec sp = {.kind = NN_DROPOUT, .rate = bad[i]};
        kd_err e = {0};
        ck_assert_ptr_null(nn_model_new((nn_shape){4, 1, 1}, &sp, 1, NULL, &e));
        ck_assert_int_eq(e.code, KD_ECONFIG);
        ck_assert_str_eq(e.msg, "layer 0 (dropout): rate must be in [0, 1)");
    }
}
END_TEST

/* Training fuses dense -> in-place relu -> in-place dropout (forward in the
 * dense layer's epilogue, backward in one pass): the same function as the
 * three layers, checked against a reference in double, on one thread and on
 * a team of two (the dense layer splits there). */
static void fused_chain_case(int team)
{
    enum { N = 4, IN = 300, H = 256, OUT = 3 };
    const float rate = 0.5f;
    nn_layer_spec sp[] = {{.kind = NN_DENSE, .units = H}, {.kind = NN_RELU},
                          {.kind = NN_DROPOUT, .rate = rate}, {.kind = NN_DENSE, .units = OUT}};
    kd_err e = {0};
    nn_set_threads(team ? 2 : 1);
    nn_model *m = nn_model_new((nn_shape){IN, 1, 1}, sp, 4, NULL, &e);
    ck_assert_msg(m != NULL, "%s", e.msg);
    nn_model_init(m, 3);
    int made = team ? nn_model_train_team_begin(m) : 0;
    ck_assert_int_eq(made, team);
    static float x[N * IN], mask[N * H], dlog[N * OUT];
    static double h[N * H], dh[N * H];
    for (int i = 0; i < N * IN; i++)
        x[i] = (float)((i * 37 % 101) - 50) / 50.0f;
    for (int i = 0; i < N * OUT; i++)
        dlog[i] = (float)(i % 5) - 2.0f;
    nn_rng r = nn_rng_stream(9, NN_STREAM_DROPOUT), r0 = r;
    nn_rng_keep_mask(&r0, mask, N * H, (uint32_t)((double)rate * 4294967296.0),
                     1.0f / (1.0f - rate));
    nn_ctx c = {.train = 1, .rng = &r};
    nn_model_zero_grad(m);
    const float *y = nn_model_forward(m, x, N, &c);
    ck_assert_ptr_nonnull(y);
    ck_assert_uint_eq(nn_rng_u64(&r), nn_rng_u64(&r0)); /* the draws: the same, in order */
    const nn_layer *d1 = &m->layers[0], *d2 = &m->layers[3];
    int kept = 0;
    for (int i = 0; i < N; i++) {
        for (int u = 0; u < H; u++) {
            double z = d1->b[u];
            for (int k = 0; k < IN; k++)
                z += (double)x[i * IN + k] * d1->w[u * IN + k];
            h[i * H + u] = (z > 0 ? z : 0) * mask[i * H + u];
            kept += h[i * H + u] != 0;
        }
        for (int o = 0; o < OUT; o++) {
            double v = d2->b[o];
            for (int u = 0; u < H; u++)
                v += h[i * H + u] * d2->w[o * H + u];
            ck_assert_msg(fabs(y[i * OUT + o] - v) <= 1e-4 * (1 + fabs(v)), "team %d: y %g vs %g",
                          team, (double)y[i * OUT + o], v);
        }
    }
    ck_assert_int_gt(kept, N * H / 5); /* the ReLU and the mask both bit */
    ck_assert_int_lt(kept, N * H / 2);
    nn_model_backward(m, dlog, N, &c);
    for (int i = 0; i < N; i++)
        for (int u = 0; u < H; u++) {
            double g = 0;
            for (int o = 0; o < OUT; o++)
                g += (double)dlog[i * OUT + o] * d2->w[o * H + u];
            dh[i * H + u] = h[i * H + u] > 0 ? g * mask[i * H + u] : 0;
        }
    for (int u = 0; u < H; u += 7)
        for (int k = 0; k < IN; k += 13) {
            double g = 0;
            for (int i = 0; i < N; i++)
                g += dh[i * H + u] * x[i * IN + k];
            float got = d1->gw[u * IN + k];
            ck_assert_msg(fabs(got - g) <= 1e-4 * (1 + fabs(g)), "team %d: gw %g vs %g", team,
                          (double)got, g);
        }
    nn_model_train_team_end(m, made);
    nn_model_free(m);
    nn_set_threads(1);
}

START_TEST(test_fused_dense_relu_dropout)
{
    fused_chain_case(0);
    fused_chain_case(1);
}
END_TEST

Suite *suite_nn_simple(void)
{
    Suite *s = suite_create("nn_simple");
    TCase *t = tcase_create("simple");
    tcase_add_test(t, test_gradchecks);
    tcase_add_test(t, test_relu_values);
    tcase_add_test(t, test_flatten_shape);
    tcase_add_test(t, test_dropout_statistics);
    tcase_add_test(t, test_dropout_backward_uses_mask);
    tcase_add_test(t, test_dropout_bad_rate);
    tcase_add_test(t, test_fused_dense_relu_dropout);
    suite_add_tcase(s, t);
    return s;
}
