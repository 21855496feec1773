/* maxpool2d: gradient checks, forward/backward against a naive reference
 * (first maximum in row-major window order wins ties), shapes and errors. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../kdtest.h"

static nn_layer_spec pool_spec(int k, int s)
{
    nn_layer_spec sp = {.kind = NN_MAXPOOL2D, .kernel = k, .stride = s};
    return sp;
}

/* Naive pooling: y and the flat input index of each output's first maximum. */
static void ref_pool(nn_shape in, int n, int k, int s, const float *x, float *y, long *arg)
{
    int oh = (in.h - k) / s + 1, ow = (in.w - k) / s + 1;
    long o = 0;
    for (int b = 0; b < n; b++)
        for (int c = 0; c < in.c; c++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++, o++) {
                    long best = -1;
                    for (int i = 0; i < k; i++)
                        for (int j = 0; j < k; j++) {
                            long row = ((long)b * in.c + c) * in.h + oy * s + i;
                            long at = row * in.w + ox * s + j;
                            if (best < 0 || x[at] > x[best])
                                best = at;
                        }
                    y[o] = x[best];
                    arg[o] = best;
                }
}

/* Forward and backward of a one-layer model against ref_pool. */
static void check_against_ref(nn_shape in, int k, int s, int n, const float *x)
{
    kd_err e = {0};
    nn_layer_spec sp = pool_spec(k, s);
    nn_model *m = nn_model_new(in, &sp, 1, NULL, &e);
    ck_assert_msg(m != NULL, "model: %s", e.msg);
    nn_layer *l = &m->layers[0];
    int st = s ? s : k;
    ck_assert_int_eq(l->out.h, (in.h - k) / st + 1);
    ck_assert_int_eq(l->out.w, (in.w - k) / st + 1);
    size_t nx = (size_t)n * nn_shape_size(in), ny = (size_t)n * nn_shape_size(l->out);
    float *ry = malloc(ny * sizeof *ry), *dy = malloc(ny * sizeof *dy);
    float *dx = malloc(nx * sizeof *dx), *rdx = calloc(nx, sizeof *rdx);
    long *arg = malloc(ny * sizeof *arg);
    ref_pool(in, n, k, st, x, ry, arg);
    nn_ctx c = {.train = 1};
    const float *y = nn_model_forward(m, x, n, &c);
    ck_assert_ptr_nonnull(y);
    ck_assert_msg(memcmp(y, ry, ny * sizeof *y) == 0, "pool forward differs from reference");
    for (size_t i = 0; i < ny; i++) {
        dy[i] = (float)(i % 7) - 3.0f;
        rdx[arg[i]] += dy[i];
    }
    memset(dx, 0xff, nx * sizeof *dx); /* NaNs: backward must write every element */
    l->ops->backward(l, m->act[0], m->act[1], dy, dx, n, &c);
    ck_assert_msg(memcmp(dx, rdx, nx * sizeof *dx) == 0, "pool backward differs from reference");
    free(ry);
    free(dy);
    free(dx);
    free(rdx);
    free(arg);
    nn_model_free(m);
}

START_TEST(test_pool_gradcheck)
{
    nn_layer_spec p2 = pool_spec(2, 0), p3 = pool_spec(3, 2), p2s1 = pool_spec(2, 1);
    kdt_gradcheck_layer(&p2, (nn_shape){2, 6, 6}, 2, 1, 1e-3, 1e-3);
    kdt_gradcheck_layer(&p3, (nn_shape){2, 7, 7}, 2, 1, 1e-3, 1e-3);
    kdt_gradcheck_layer(&p2, (nn_shape){3, 7, 6}, 2, 0, 1e-3, 1e-3);
    kdt_gradcheck_layer(&p2s1, (nn_shape){1, 5, 4}, 2, 1, 1e-3, 1e-3);
}
END_TEST

START_TEST(test_pool_random_vs_reference)
{
    nn_rng r = nn_rng_stream(77, NN_STREAM_TEST);
    for (int t = 0; t < 40; t++) {
        nn_shape in = {1 + (int)nn_rng_below(&r, 3), 1 + (int)nn_rng_below(&r, 10),
                       1 + (int)nn_rng_below(&r, 10)};
        int k = 1 + (int)nn_rng_below(&r, 3), s = (int)nn_rng_below(&r, 4);
        int n = 1 + (int)nn_rng_below(&r, 3);
        if (k > in.h || k > in.w)
            continue;
        size_t nx = (size_t)n * nn_shape_size(in);
        float *x = malloc(nx * sizeof *x);
        for (size_t i = 0; i < nx; i++) /* coarse values: plenty of ties */
            x[i] = (float)nn_rng_below(&r, 5);
        check_against_ref(in, k, s, n, x);
        free(x);
    }
    /* the 2x2 stride-2 fast path on a larger plane, odd width, many ties */
    nn_shape in = {4, 14, 13};
    size_t nx = 3 * nn_shape_size(in);
    float *x = malloc(nx * sizeof *x);
    for (size_t i = 0; i < nx; i++)
        x[i] = (float)nn_rng_below(&r, 3) - 1.0f;
    check_against_ref(in, 2, 2, 3, x);
    free(x);
}
END_TEST

/* On a constant input every window ties: the gradient goes to its first element. */
START_TEST(test_pool_ties_first_max)
{
    float x[2 * 16], dy[2 * 4], dx[2 * 16];
    for (int i = 0; i < 32; i++)
        x[i] = 1.5f;
    for (int i = 0; i < 8; i++)
        dy[i] = (float)(i + 1);
    kd_err e = {0};
    nn_layer_spec sp = pool_spec(2, 0);
    nn_model *m = nn_model_new((nn_shape){2, 4, 4}, &sp, 1, NULL, &e);
    ck_assert_ptr_nonnull(m);
    nn_ctx c = {.train = 0};
    nn_model_forward(m, x, 1, &c);
    nn_layer *l = &m->layers[0];
    l->ops->backward(l, x, m->act[1], dy, dx, 1, &c);
    static const int first[4] = {0, 2, 8, 10};
    for (int ch = 0; ch < 2; ch++)
        for (int i = 0; i < 16; i++) {
            float want = 0;
            for (int q = 0; q < 4; q++)
                if (first[q] == i)
                    want = dy[ch * 4 + q];
            ck_assert_float_eq(dx[ch * 16 + i], want);
        }
    nn_model_free(m);
}
END_TEST

START_TEST(test_pool_shapes_and_errors)
{
    kd_err e = {0};
    nn_layer_spec sp = pool_spec(3, 2);
    nn_model *m = nn_model_new((nn_shape){4, 8, 9}, &sp, 1, NULL, &e);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(m->layers[0].out.c, 4);
    ck_assert_int_eq(m->layers[0].out.h, 3); /* floor((8-3)/2)+1 */
    ck_assert_int_eq(m->layers[0].out.w, 4);
    ck_assert_uint_eq(m->nparams, 0);
    ck_assert(nn_model_macs(m) == 0);
    nn_model_free(m);
    sp = pool_spec(5, 0);
    ck_assert_ptr_null(nn_model_new((nn_shape){1, 4, 8}, &sp, 1, NULL, &e));
    ck_assert_int_eq(e.code, KD_ECONFIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "kernel"));
    sp = pool_spec(0, 0);
    ck_assert_ptr_null(nn_model_new((nn_shape){1, 4, 4}, &sp, 1, NULL, &e));
    sp = pool_spec(2, -1);
    ck_assert_ptr_null(nn_model_new((nn_shape){1, 4, 4}, &sp, 1, NULL, &e));
}
END_TEST

Suite *suite_nn_maxpool2d(void)
{
    Suite *s = suite_create("nn_maxpool2d");
    TCase *tc = tcase_create("maxpool2d");
    tcase_add_test(tc, test_pool_gradcheck);
    tcase_add_test(tc, test_pool_random_vs_reference);
    tcase_add_test(tc, test_pool_ties_first_max);
    tcase_add_test(tc, test_pool_shapes_and_errors);
    suite_add_tcase(s, tc);
    return s;
}
