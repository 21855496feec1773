/* nn_model: shape errors name the layer, clones, counts (nonzero params,
 * MACs), lookup by name and kind, a whole-model gradient check through the
 * in-place layer chain, and allocation failures in new and reserve. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../kdtest.h"

static void expect_bad(nn_shape in, const nn_layer_spec *sp, int n, int bad, const char *msg)
{
    kd_err e = {0};
    int b = 1234;
    nn_model *m = nn_model_new(in, sp, n, &b, &e);
    ck_assert_ptr_null(m);
    ck_assert_int_eq(e.code, KD_ECONFIG);
    ck_assert_int_eq(b, bad);
    ck_assert_str_eq(e.msg, msg);
}

START_TEST(test_shape_errors_name_layer)
{
    nn_shape in = {1, 4, 4};
    nn_layer_spec a[2] = {{.kind = NN_CONV2D, .filters = 2, .kernel = 3},
                          {.kind = NN_MAXPOOL2D, .kernel = 5}};
    expect_bad(in, a, 2, 1, "layer 1 (maxpool2d): kernel 5 is larger than the input 2x2");
    nn_layer_spec b[3] = {{.kind = NN_DENSE, .units = 4}, {.kind = NN_RELU},
                          {.kind = NN_DENSE, .units = 0}};
    expect_bad(in, b, 3, 2, "layer 2 (dense): units must be >= 1");
    nn_layer_spec c[2] = {{.kind = NN_DENSE, .units = 4, .name = "a"},
                          {.kind = NN_RELU, .name = "a"}};
    expect_bad(in, c, 2, 1, "layer 1: name \"a\" is used twice");
    /* an explicit name that an automatic one repeats */
    nn_layer_spec d[2] = {{.kind = NN_DENSE, .units = 4, .name = "dense2"},
                          {.kind = NN_DENSE, .units = 2}};
    expect_bad(in, d, 2, 1, "layer 1: name \"dense2\" is used twice");
    nn_layer_spec k[2] = {{.kind = NN_RELU}, {.kind = (nn_kind)99}};
    expect_bad(in, k, 2, 1, "layer 1 (?): unknown kind 99");
    expect_bad(in, b, 0, -1, "a model needs at least one layer");
    expect_bad((nn_shape){0, 4, 4}, b, 1, -1, "input shape must be positive");
    /* bad_layer may be NULL */
    kd_err e = {0};
    ck_assert_ptr_null(nn_model_new(in, a, 2, NULL, &e));
    ck_assert_ptr_null(nn_model_new(in, a, 2, NULL, NULL));
    nn_model_free(NULL);
}
END_TEST

/* conv(2,k2) relu dropout flatten dense(5) relu batchnorm dense(3) on (2,3,3):
 * relu, dropout and flatten run in place over the conv output */
static const nn_layer_spec NET[] = {
    {.kind = NN_CONV2D, .filters = 2, .kernel = 2}, {.kind = NN_RELU},
    {.kind = NN_DROPOUT, .rate = 0.3f},             {.kind = NN_FLATTEN},
    {.kind = NN_DENSE, .units = 5},                 {.kind = NN_RELU},
    {.kind = NN_BATCHNORM},                         {.kind = NN_DENSE, .units = 3},
};
#define NET_N ((int)(sizeof NET / sizeof *NET))
static const nn_shape NET_IN = {2, 3, 3};

static nn_model *net(uint64_t seed)
{
    kd_err e = {0};
    nn_model *m = nn_model_new(NET_IN, NET, NET_N, NULL, &e);
    ck_assert_msg(m != NULL, "%s", e.msg);
    nn_model_init(m, seed);
    return m;
}

static float *randn(size_t n, uint64_t seed)
{
    nn_rng r = nn_rng_stream(seed, NN_STREAM_TEST);
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = nn_rng_normal(&r);
    return x;
}

START_TEST(test_names_find_kinds)
{
    nn_model *m = net(1);
    static const char *const names[NET_N] = {"conv1", "relu1",  "drop1", "flatten1",
                                             "dense1", "relu2", "bn1",   "dense2"};
    for (int i = 0; i < NET_N; i++) {
        ck_assert_str_eq(m->layers[i].spec.name, names[i]);
        ck_assert_int_eq(nn_model_find(m, names[i]), i);
    }
    ck_assert_int_eq(nn_model_find(m, "dense3"), -1);
    ck_assert_int_eq(nn_model_find(m, ""), -1);
    ck_assert_int_eq(m->nclasses, 3);
    nn_model_free(m);
    for (int k = 0; k < NN_KIND_COUNT; k++) {
        nn_kind got = NN_KIND_COUNT;
        ck_assert_int_eq(nn_kind_from_name(nn_kind_name((nn_kind)k), &got), 0);
        ck_assert_int_eq(got, k);
        ck_assert_ptr_eq(nn_layer_ops_of((nn_kind)k)->name, nn_kind_name((nn_kind)k));
    }
    nn_kind got = NN_DENSE;
    ck_assert_int_eq(nn_kind_from_name("Dense", &got), -1);
    ck_assert_int_eq(nn_kind_from_name("", &got), -1);
    ck_assert_int_eq(nn_kind_from_name("dense ", &got), -1);
    ck_assert_int_eq(got, NN_DENSE);
    ck_assert_str_eq(nn_kind_name(NN_CONV2D), "conv2d");
    ck_assert_str_eq(nn_kind_name((nn_kind)99), "?");
    ck_assert_ptr_null(nn_layer_ops_of((nn_kind)99));
}
END_TEST

START_TEST(test_counts)
{
    /* (1,8,8): conv 4x3x3 pad 1 -> 4x8x8: 36*64 MACs; pool 2 -> 4x4x4;
     * dense 64 -> 10: 640 MACs */
    nn_layer_spec sp[6] = {{.kind = NN_CONV2D, .filters = 4, .kernel = 3, .pad = 1},
                           {.kind = NN_BATCHNORM}, {.kind = NN_RELU},
                           {.kind = NN_MAXPOOL2D, .kernel = 2}, {.kind = NN_FLATTEN},
                           {.kind = NN_DENSE, .units = 10}};
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){1, 8, 8}, sp, 6, NULL, &e);
    ck_assert_ptr_nonnull(m);
    ck_assert(nn_model_macs(m) == 2304.0 + 640.0);
    ck_assert_uint_eq(m->nparams, (36 + 4) + (4 + 4) + (640 + 10));
    ck_assert_uint_eq(m->nbuffers, 8);
    ck_assert_uint_eq(nn_model_nonzero_params(m), 0); /* zero until init */
    nn_model_init(m, 3);
    /* weights and bn gamma are nonzero, biases and beta zero */
    ck_assert_uint_eq(nn_model_nonzero_params(m), 36 + 4 + 640);
    m->layers[0].w[0] = 0;
    m->layers[5].w[17] = 0;
    m->layers[5].b[3] = 0.5f;
    ck_assert_uint_eq(nn_model_nonzero_params(m), 36 + 4 + 640 - 2 + 1);
    nn_model_free(m);
}
END_TEST

START_TEST(test_clone_identical)
{
    nn_model *m = net(5);
    m->in_mean = 0.25f;
    m->in_std = 2.0f;
    const int n = 6;
    size_t nx = (size_t)n * nn_shape_size(NET_IN);
    float *x = randn(nx, 1);
    nn_rng r = nn_rng_stream(1, NN_STREAM_DROPOUT);
    nn_ctx train = {.train = 1, .rng = &r}, eval = {0};
    for (int i = 0; i < 3; i++) /* move the bn running stats off their init */
        nn_model_forward(m, x, n, &train);
    kd_err e = {0};
    nn_model *c = nn_model_clone(m, &e);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_ne(c->params, m->params);
    ck_assert(c->in_mean == 0.25f && c->in_std == 2.0f);
    ck_assert(memcmp(c->buffers, m->buffers, m->nbuffers * sizeof(float)) == 0);
    float *ym = malloc(n * 3 * sizeof *ym);
    memcpy(ym, nn_model_forward(m, x, n, &eval), n * 3 * sizeof *ym);
    const float *yc = nn_model_forward(c, x, n, &eval);
    ck_assert(memcmp(ym, yc, n * 3 * sizeof *ym) == 0);
    for (int i = 0; i < NET_N; i++)
        ck_assert_str_eq(c->layers[i].spec.name, m->layers[i].spec.name);
    /* independent: changing the original leaves the clone */
    for (size_t i = 0; i < m->nparams; i++)
        m->params[i] = 0;
    yc = nn_model_forward(c, x, n, &eval);
    ck_assert(memcmp(ym, yc, n * 3 * sizeof *ym) == 0);
    free(x);
    free(ym);
    nn_model_free(c);
    nn_model_free(m);
}
END_TEST

/* Reference backward for m's last training batch: the same layers run one by
 * one through separate buffers (nothing in place) on a clone; returns its
 * gradients (caller frees). */
static float *reference_grads(const nn_model *m, const float *x, const float *dl, int n,
                              uint64_t dseed)
{
    kd_err e = {0};
    nn_model *c = nn_model_clone(m, &e);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(nn_model_reserve(c, n, &e), KD_OK); /* layer scratch only */
    nn_rng r = nn_rng_stream(dseed, NN_STREAM_DROPOUT);
    nn_ctx ctx = {.train = 1, .rng = &r};
    float **a = calloc((size_t)c->nlayers + 1, sizeof *a);
    a[0] = (float *)x;
    for (int i = 0; i < c->nlayers; i++) {
        nn_layer *l = &c->layers[i];
        a[i + 1] = malloc((size_t)n * nn_shape_size(l->out) * sizeof(float));
        l->ops->forward(l, a[i], a[i + 1], n, &ctx);
    }
    nn_model_zero_grad(c);
    float *dy = malloc((size_t)n * c->nclasses * sizeof *dy);
    memcpy(dy, dl, (size_t)n * c->nclasses * sizeof *dy);
    for (int i = c->nlayers - 1; i >= 0; i--) {
        nn_layer *l = &c->layers[i];
        float *dx = malloc((size_t)n * nn_shape_size(l->in) * sizeof *dx);
        l->ops->backward(l, a[i], a[i + 1], dy, dx, n, &ctx);
        free(dy);
        dy = dx;
    }
    free(dy);
    for (int i = 1; i <= c->nlayers; i++)
        free(a[i]);
    free(a);
    float *g = malloc(c->nparams * sizeof *g);
    memcpy(g, c->grads, c->nparams * sizeof *g);
    nn_model_free(c);
    return g;
}

/* mean softmax cross-entropy of the whole model, train mode, fixed dropout mask */
static double model_loss(nn_model *m, const float *x, const uint8_t *y, int n, float *dl)
{
    nn_rng r = nn_rng_stream(77, NN_STREAM_DROPOUT);
    nn_ctx c = {.train = 1, .rng = &r};
    const float *z = nn_model_forward(m, x, n, &c);
    return nn_softmax_xent(z, y, n, m->nclasses, dl);
}

/* analytic gradients of model_loss via nn_model_backward (caller frees) */
static float *model_grads(nn_model *m, const float *x, const uint8_t *y, int n)
{
    float *dl = malloc((size_t)n * m->nclasses * sizeof *dl);
    model_loss(m, x, y, n, dl);
    nn_rng r = nn_rng_stream(77, NN_STREAM_DROPOUT);
    nn_ctx c = {.train = 1, .rng = &r};
    nn_model_zero_grad(m);
    nn_model_backward(m, dl, n, &c);
    float *g = malloc(m->nparams * sizeof *g);
    memcpy(g, m->grads, m->nparams * sizeof *g);
    /* the in-place chain gives the same gradients as separate buffers */
    float *ref = reference_grads(m, x, dl, n, 77);
    for (size_t i = 0; i < m->nparams; i++)
        ck_assert_msg(fabs(g[i] - ref[i]) <= 1e-5 * (1e-3 + fabs(ref[i])),
                      "param %zu: model %g, layer by layer %g", i, (double)g[i],
                      (double)ref[i]);
    free(ref);
    free(dl);
    return g;
}

START_TEST(test_model_backward_inplace_chain)
{
    nn_model *m = net(11);
    nn_rng pr = nn_rng_stream(4, NN_STREAM_TEST);
    for (size_t i = 0; i < m->nparams; i++) /* nonzero biases, bn gamma != 1 */
        m->params[i] += 0.2f * nn_rng_normal(&pr);
    const int n = 4;
    size_t nx = (size_t)n * nn_shape_size(NET_IN);
    float *x = randn(nx, 2), *x0 = malloc(nx * sizeof *x0);
    memcpy(x0, x, nx * sizeof *x0);
    const uint8_t y[4] = {0, 2, 1, 2};
    ck_assert(m->layers[1].ops->inplace && m->layers[2].ops->inplace);
    float *g = model_grads(m, x, y, n);
    ck_assert(memcmp(x, x0, nx * sizeof *x) == 0); /* the caller's input is not touched */
    free(g);
    free(x);
    free(x0);
    nn_model_free(m);
}
END_TEST

/* A smooth chain (no relu kinks), numerically: conv, dropout and flatten in
 * place over the conv output, then dense, batchnorm, dense. */
START_TEST(test_model_gradcheck_smooth_chain)
{
    const nn_layer_spec sp[] = {
        {.kind = NN_CONV2D, .filters = 2, .kernel = 2}, {.kind = NN_DROPOUT, .rate = 0.3f},
        {.kind = NN_FLATTEN}, {.kind = NN_DENSE, .units = 5}, {.kind = NN_BATCHNORM},
        {.kind = NN_DENSE, .units = 3}};
    kd_err e = {0};
    nn_model *m = nn_model_new(NET_IN, sp, 6, NULL, &e);
    ck_assert_ptr_nonnull(m);
    nn_model_init(m, 3);
    nn_rng pr = nn_rng_stream(4, NN_STREAM_TEST);
    for (size_t i = 0; i < m->nparams; i++)
        m->params[i] += 0.2f * nn_rng_normal(&pr);
    const int n = 4;
    float *x = randn((size_t)n * nn_shape_size(NET_IN), 2);
    const uint8_t y[4] = {0, 2, 1, 2};
    float *g = model_grads(m, x, y, n);
    int nonzero = 0;
    for (size_t i = 0; i < m->nparams; i++) {
        float keep = m->params[i];
        const float h = 1e-2f;
        m->params[i] = keep + h;
        double lp = model_loss(m, x, y, n, NULL);
        m->params[i] = keep - h;
        double lm = model_loss(m, x, y, n, NULL);
        m->params[i] = keep;
        double num = (lp - lm) / (2.0 * h);
        ck_assert_msg(fabs(num - g[i]) <= 5e-3 * (1e-2 + fabs(num) + fabs(g[i])),
                      "param %zu: analytic %g numeric %g", i, (double)g[i], num);
        nonzero += fabs(g[i]) > 1e-4;
    }
    ck_assert_int_gt(nonzero, (int)m->nparams / 2);
    free(x);
    free(g);
    nn_model_free(m);
}
END_TEST

START_TEST(test_alloc_failures)
{
    /* nn_model_new: every failing allocation returns NULL with ENOMEM */
    long k;
    for (k = 0; k < 100; k++) {
        kd_err e = {0};
        kd_alloc_fail_after(k);
        nn_model *m = nn_model_new(NET_IN, NET, NET_N, NULL, &e);
        kd_alloc_fail_after(-1);
        if (m) {
            nn_model_free(m);
            break;
        }
        ck_assert_int_eq(e.code, KD_ENOMEM);
    }
    ck_assert_int_gt(k, 0);
    ck_assert_int_lt(k, 100);
    /* reserve: failures report ENOMEM and leave a model that still works */
    nn_model *m = net(2);
    float *x = randn(8 * nn_shape_size(NET_IN), 3);
    nn_ctx c = {0};
    for (k = 0; k < 100; k++) {
        kd_err e = {0};
        kd_alloc_fail_after(k);
        int rc = nn_model_reserve(m, 8, &e);
        kd_alloc_fail_after(-1);
        if (rc == KD_OK)
            break;
        ck_assert_int_eq(rc, KD_ENOMEM);
        ck_assert_int_eq(m->cap, 0);
        kd_alloc_fail_after(0);
        ck_assert_ptr_null(nn_model_forward(m, x, 8, &c)); /* cannot reserve */
        kd_alloc_fail_after(-1);
    }
    ck_assert_int_gt(k, 0);
    ck_assert_ptr_nonnull(nn_model_forward(m, x, 8, &c));
    ck_assert_int_eq(m->cap, 8);
    ck_assert_ptr_nonnull(nn_model_forward(m, x, 3, &c)); /* smaller batch: no new reserve */
    ck_assert_int_eq(m->cap, 8);
    nn_model_free(m);
    /* an empty batch on a fresh model: no crash, batchnorm stats untouched */
    m = net(2);
    float *buf0 = malloc(m->nbuffers * sizeof *buf0);
    memcpy(buf0, m->buffers, m->nbuffers * sizeof *buf0);
    nn_rng r = nn_rng_stream(1, NN_STREAM_DROPOUT);
    nn_ctx tc = {.train = 1, .rng = &r};
    ck_assert_ptr_nonnull(nn_model_forward(m, x, 0, &tc));
    ck_assert(memcmp(buf0, m->buffers, m->nbuffers * sizeof *buf0) == 0);
    free(buf0);
    free(x);
    nn_model_free(m);
}
END_TEST

/* Training's team (nn_model_train_team_begin): dense GEMMs, element-wise
 * passes, zero_grad and the optimiser split over two threads give the
 * gradients and the updated parameters of the one-thread run (to float
 * rounding: OpenBLAS's blocking may differ between a part and the whole),
 * and a model with a conv2d layer gets no team. */
static nn_model *team_mlp(void)
{
    const nn_layer_spec s[] = {{.kind = NN_DENSE, .units = 256}, {.kind = NN_RELU},
                               {.kind = NN_DROPOUT, .rate = 0.25f}, {.kind = NN_DENSE, .units = 300},
                               {.kind = NN_RELU}, {.kind = NN_DENSE, .units = 10}};
    nn_model *m = nn_model_new((nn_shape){300, 1, 1}, s, 6, NULL, NULL);
    ck_assert_ptr_nonnull(m);
    nn_model_init(m, 7);
    return m;
}

static void team_step(nn_model *m, int use_team)
{
    const int n = 160;
    float *x = kd_afloat((size_t)n * 300), *dl = kd_afloat((size_t)n * 10);
    for (int i = 0; i < n * 300; i++)
        x[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    for (int i = 0; i < n * 10; i++)
        dl[i] = (float)((i * 13) % 7) / 7.0f - 0.4f;
    int made = use_team ? nn_model_train_team_begin(m) : 0;
    ck_assert_int_eq(made, use_team);
    ck_assert_int_eq(nn_team_size(m->team), use_team ? 2 : 1);
    nn_rng r = nn_rng_stream(3, NN_STREAM_DROPOUT);
    nn_ctx c = {.train = 1, .rng = &r};
    nn_opt_spec os = {.kind = NN_OPT_SGD, .lr = 0.1f, .momentum = 0.9f, .weight_decay = 1e-3f};
    nn_optim *o = nn_optim_new(&os, m->nparams, NULL);
    for (int step = 0; step < 1; step++) { /* one: later steps amplify rounding through relu */
        nn_model_forward(m, x, n, &c);
        nn_model_zero_grad(m);
        nn_model_backward(m, dl, n, &c);
        nn_optim_step(o, m, 0.1f);
    }
    nn_model_train_team_end(m, made);
    ck_assert_ptr_null(m->team);
    nn_optim_free(o);
    kd_afree(x);
    kd_afree(dl);
}

START_TEST(test_train_team_matches_serial)
{
    nn_set_threads(2);
    nn_model *a = team_mlp(), *b = team_mlp();
    team_step(a, 0);
    team_step(b, 1);
    for (size_t i = 0; i < a->nparams; i++) {
        ck_assert_msg(fabsf(a->grads[i] - b->grads[i]) <= 1e-5f * (1 + fabsf(a->grads[i])),
                      "grad %zu: %g vs %g", i, (double)a->grads[i], (double)b->grads[i]);
        ck_assert_msg(fabsf(a->params[i] - b->params[i]) <= 1e-5f * (1 + fabsf(a->params[i])),
                      "param %zu: %g vs %g", i, (double)a->params[i], (double)b->params[i]);
    }
    nn_model_free(a);
    nn_model_free(b);
    const nn_layer_spec cs[] = {{.kind = NN_CONV2D, .filters = 4, .kernel = 3},
                                {.kind = NN_FLATTEN}, {.kind = NN_DENSE, .units = 10}};
    nn_model *c = nn_model_new((nn_shape){1, 8, 8}, cs, 3, NULL, NULL);
    ck_assert_int_eq(nn_model_train_team_begin(c), 0);
    ck_assert_ptr_null(c->team);
    nn_model_free(c);
}
END_TEST

Suite *suite_nn_model(void)
{
    Suite *s = suite_create("nn_model");
    TCase *t = tcase_create("model");
    tcase_add_test(t, test_shape_errors_name_layer);
    tcase_add_test(t, test_names_find_kinds);
    tcase_add_test(t, test_counts);
    tcase_add_test(t, test_clone_identical);
    tcase_add_test(t, test_model_backward_inplace_chain);
    tcase_add_test(t, test_model_gradcheck_smooth_chain);
    tcase_add_test(t, test_alloc_failures);
    tcase_add_test(t, test_train_team_matches_serial);
    suite_add_tcase(s, t);
    return s;
}
