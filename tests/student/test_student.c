/* Distillation: the KD loss against hand-computed values and its gradient
 * (the T^2 factor and the temperature in the backward pass are the classic
 * bugs), the hint loss, and a whole distilled step (soft targets + hint
 * through the adapter) against central differences. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../student/student.h"
#include "../kdtest.h"

/* s = [0, 0], t = [ln 3, 0]: at T = 2, softmax(t/T) = [0.633975, 0.366025]
 * and KL = 0.0363408, so alpha = 1 gives T^2 KL = 0.145363 and a gradient of
 * T (ps - pt) = [-0.267949, 0.267949]. */
START_TEST(kd_hand_computed)
{
    const float s[2] = {0, 0}, t[2] = {(float)log(3.0), 0};
    const uint8_t y[1] = {0};
    float ds[2];
    float l = student_kd_loss(s, t, y, 1, 2, 2.0f, 1.0f, ds);
    ck_assert_double_eq_tol(l, 0.145363, 2e-6);
    ck_assert_double_eq_tol(ds[0], -0.267949, 2e-6);
    ck_assert_double_eq_tol(ds[1], 0.267949, 2e-6);
    /* alpha = 0.5 adds half of CE = ln 2 and half of (softmax - onehot) */
    l = student_kd_loss(s, t, y, 1, 2, 2.0f, 0.5f, ds);
    ck_assert_double_eq_tol(l, 0.5 * 0.145363 + 0.5 * log(2.0), 2e-6);
    ck_assert_double_eq_tol(ds[0], -0.383975, 2e-6);
    ck_assert_double_eq_tol(ds[1], 0.383975, 2e-6);
    /* T = 1: KL = 0.75 ln 1.5 + 0.25 ln 0.5 = 0.130812 */
    l = student_kd_loss(s, t, y, 1, 2, 1.0f, 1.0f, NULL);
    ck_assert_double_eq_tol(l, 0.130812, 2e-6);
    /* alpha = 0 is plain cross-entropy, whatever the teacher says */
    l = student_kd_loss(s, t, y, 1, 2, 7.0f, 0.0f, ds);
    ck_assert_double_eq_tol(l, log(2.0), 1e-6);
    ck_assert_double_eq_tol(ds[0], -0.5, 1e-7);
    /* identical logits: no soft loss, no soft gradient */
    l = student_kd_loss(t, t, y, 1, 2, 3.0f, 1.0f, ds);
    ck_assert_double_eq_tol(l, 0, 1e-7);
    ck_assert_double_eq_tol(ds[0], 0, 1e-7);
}
END_TEST

/* Central differences in double through the float loss, on random rows,
 * several temperatures and alphas. */
START_TEST(kd_gradient_numeric)
{
    enum { N = 5, K = 7 };
    nn_rng r = nn_rng_stream(3, NN_STREAM_TEST);
    const float temps[] = {1, 2.5f, 4, 10}, alphas[] = {0, 0.3f, 0.9f, 1};
    float s[N * K], t[N * K], ds[N * K];
    uint8_t y[N];
    for (int ti = 0; ti < 4; ti++)
        for (int ai = 0; ai < 4; ai++) {
            for (int i = 0; i < N * K; i++) {
                s[i] = 3 * nn_rng_normal(&r);
                t[i] = 3 * nn_rng_normal(&r);
            }
            for (int i = 0; i < N; i++)
                y[i] = (uint8_t)nn_rng_below(&r, K);
            student_kd_loss(s, t, y, N, K, temps[ti], alphas[ai], ds);
            for (int i = 0; i < N * K; i++) {
                const float h = 1e-2f, keep = s[i];
                s[i] = keep + h;
                double up = student_kd_loss(s, t, y, N, K, temps[ti], alphas[ai], NULL);
                s[i] = keep - h;
                double dn = student_kd_loss(s, t, y, N, K, temps[ti], alphas[ai], NULL);
                s[i] = keep;
                double num = (up - dn) / (2 * h);
                ck_assert_msg(fabs(num - ds[i]) <= 2e-3 * (1 + fabs(num)),
                              "T=%g alpha=%g [%d]: analytic %g numeric %g", temps[ti],
                              alphas[ai], i, ds[i], num);
            }
        }
}
END_TEST

START_TEST(kd_extreme_logits_finite)
{
    const float s[3] = {1e4f, -1e4f, 0}, t[3] = {-1e4f, 1e4f, 0};
    const uint8_t y[1] = {2};
    float ds[3];
    float l = student_kd_loss(s, t, y, 1, 3, 0.5f, 0.7f, ds);
    ck_assert(isfinite(l) && l > 0);
    for (int j = 0; j < 3; j++)
        ck_assert(isfinite(ds[j]));
}
END_TEST

START_TEST(hint_loss_value_and_gradient)
{
    const float a[4] = {1, 2, 3, 4}, t[4] = {0, 2, 5, 3};
    float da[4];
    /* mean of (1, 0, 4, 1) = 1.5, times weight 2 */
    ck_assert_double_eq_tol(student_hint_loss(a, t, 4, 2.0f, da), 3.0, 1e-6);
    const float want[4] = {1, 0, -2, 1}; /* 2 * 2 (a - t) / 4 */
    for (int i = 0; i < 4; i++)
        ck_assert_double_eq_tol(da[i], want[i], 1e-6);
}
END_TEST

/* ---- a whole distilled step --------------------------------------------------- */
enum { DN = 24, DB = 6 };

static void tiny_data(data_set *d)
{
    memset(d, 0, sizeof *d);
    d->n = DN;
    d->shape = (nn_shape){1, 4, 4};
    d->nclasses = 3;
    d->x8 = kd_malloc(DN * 16);
    d->y = kd_malloc(DN);
    nn_rng r = nn_rng_stream(5, NN_STREAM_TEST);
    for (int i = 0; i < DN * 16; i++)
        d->x8[i] = (uint8_t)nn_rng_below(&r, 256);
    for (int i = 0; i < DN; i++)
        d->y[i] = (uint8_t)(i % 3);
}

static nn_model *build(const nn_layer_spec *sp, int n, uint64_t seed)
{
    kd_err e;
    nn_model *m = nn_model_new((nn_shape){1, 4, 4}, sp, n, NULL, &e);
    ck_assert_msg(m != NULL, "%s", e.msg);
    nn_model_init(m, seed);
    data_set d;
    tiny_data(&d);
    data_stats(&d, &m->in_mean, &m->in_std);
    data_set_free(&d);
    return m;
}

/* loss of the student on batch idx through the hook, after a forward */
static double hook_loss(train_hooks *h, nn_model *s, const data_set *d, const int *idx,
                        float *x, float *dl, uint8_t *y)
{
    data_batch(d, idx, DB, s->in_mean, s->in_std, x, y);
    nn_ctx c = {.train = 1};
    const float *z = nn_model_forward(s, x, DB, &c);
    return h->loss(h->loss_ctx, z, y, idx, DB, s->nclasses, dl);
}

START_TEST(distill_step_gradient_with_hint)
{
    const nn_layer_spec ts[] = {{.kind = NN_CONV2D, .filters = 3, .kernel = 3, .pad = 1},
                                {.kind = NN_RELU},
                                {.kind = NN_FLATTEN},
                                {.kind = NN_DENSE, .units = 3}};
    const nn_layer_spec ss[] = {{.kind = NN_CONV2D, .filters = 2, .kernel = 3, .pad = 1},
                                {.kind = NN_RELU},
                                {.kind = NN_FLATTEN},
                                {.kind = NN_DENSE, .units = 3}};
    nn_model *t = build(ts, 4, 1), *s = build(ss, 4, 2);
    data_set d;
    tiny_data(&d);
    kd_err e;
    float *tl = student_teacher_logits(t, &d, 5, &e); /* ragged last batch on purpose */
    ck_assert_ptr_nonnull(tl);
    student_distill_opts o = {.temperature = 3, .alpha = 0.6f, .student_tap = 1,
                              .teacher_tap = 1, .hint_weight = 0.5f};
    nn_opt_spec opt = {.kind = NN_OPT_SGD, .lr = 0.1f};
    student_distiller *dd = student_distiller_new(s, t, tl, &d, &o, &opt, DB, 9, &e);
    ck_assert_msg(dd != NULL, "%s", e.msg);
    /* the adapter between two 4x4 maps is a 1x1 convolution */
    ck_assert_int_eq(student_distiller_adapter(dd)->layers[0].spec.kind, NN_CONV2D);
    train_hooks h = {0};
    student_distiller_hooks(dd, &h);
    ck_assert_ptr_nonnull(h.dtap);
    ck_assert_int_eq(nn_model_reserve(s, DB, &e), KD_OK);
    int idx[DB] = {3, 17, 0, 22, 9, 11};
    float x[DB * 16], dl[DB * 3];
    uint8_t y[DB];
    hook_loss(&h, s, &d, idx, x, dl, y);
    nn_ctx c = {.train = 1};
    nn_model_zero_grad(s);
    nn_model_backward_ex(s, dl, h.tap, h.dtap, NULL, DB, &c);
    float *g = malloc(s->nparams * sizeof *g);
    memcpy(g, s->grads, s->nparams * sizeof *g);
    for (size_t i = 0; i < s->nparams; i++) {
        const float hh = 1e-2f, keep = s->params[i];
        s->params[i] = keep + hh;
        double up = hook_loss(&h, s, &d, idx, x, dl, y);
        s->params[i] = keep - hh;
        double dn = hook_loss(&h, s, &d, idx, x, dl, y);
        s->params[i] = keep;
        double num = (up - dn) / (2 * hh);
        ck_assert_msg(fabs(num - g[i]) <= 3e-3 * (1 + fabs(num)),
                      "param %zu: analytic %g numeric %g", i, g[i], num);
    }
    free(g);
    student_distiller_free(dd);
    kd_afree(tl);
    nn_model_free(s);
    nn_model_free(t);
    data_set_free(&d);
}
END_TEST

START_TEST(teacher_logits_match_forward)
{
    const nn_layer_spec ts[] = {{.kind = NN_FLATTEN}, {.kind = NN_DENSE, .units = 3}};
    nn_model *t = build(ts, 2, 4);
    data_set d;
    tiny_data(&d);
    kd_err e;
    float *tl = student_teacher_logits(t, &d, 7, &e);
    ck_assert_ptr_nonnull(tl);
    int idx[1];
    float x[16];
    nn_ctx c = {.train = 0};
    for (int i = 0; i < DN; i++) {
        idx[0] = i;
        data_batch(&d, idx, 1, t->in_mean, t->in_std, x, NULL);
        const float *z = nn_model_forward(t, x, 1, &c);
        for (int j = 0; j < 3; j++)
            ck_assert_float_eq_tol(tl[i * 3 + j], z[j], 1e-5f);
    }
    kd_afree(tl);
    nn_model_free(t);
    data_set_free(&d);
}
END_TEST

START_TEST(distiller_refuses_mismatch)
{
    const nn_layer_spec a[] = {{.kind = NN_FLATTEN}, {.kind = NN_DENSE, .units = 3}};
    const nn_layer_spec b[] = {{.kind = NN_FLATTEN}, {.kind = NN_DENSE, .units = 4}};
    nn_model *t = build(b, 2, 1), *s = build(a, 2, 2);
    data_set d;
    tiny_data(&d);
    float tl[DN * 4] = {0};
    student_distill_opts o = {.temperature = 2, .alpha = 0.5f, .student_tap = -1};
    nn_opt_spec opt = {.kind = NN_OPT_SGD, .lr = 0.1f};
    kd_err e;
    ck_assert_ptr_null(student_distiller_new(s, t, tl, &d, &o, &opt, 4, 1, &e));
    ck_assert_int_eq(e.code, KD_ECONFIG);
    nn_model_free(s);
    nn_model_free(t);
    data_set_free(&d);
}
END_TEST

START_TEST(adapter_shapes)
{
    nn_layer_spec a;
    kd_err e;
    /* same height and width: 1x1 convolution to the teacher's channels */
    ck_assert_int_eq(nn_adapter_spec((nn_shape){8, 14, 14}, (nn_shape){64, 14, 14}, &a, &e), 0);
    ck_assert_int_eq(a.kind, NN_CONV2D);
    ck_assert_int_eq(a.filters, 64);
    ck_assert_int_eq(a.kernel, 1);
    /* vectors: dense to the teacher's size */
    ck_assert_int_eq(nn_adapter_spec((nn_shape){128, 1, 1}, (nn_shape){1200, 1, 1}, &a, &e), 0);
    ck_assert_int_eq(a.kind, NN_DENSE);
    ck_assert_int_eq(a.units, 1200);
    /* a map to a map of another size through a dense of 3136 x 12544 weights: refused */
    ck_assert_int_eq(nn_adapter_spec((nn_shape){16, 14, 14}, (nn_shape){64, 14, 13}, &a, &e),
                     KD_ECONFIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "would have"));
}
END_TEST

Suite *suite_student(void)
{
    Suite *s = suite_create("student");
    TCase *t = tcase_create("student");
    tcase_add_test(t, kd_hand_computed);
    tcase_add_test(t, kd_gradient_numeric);
    tcase_add_test(t, kd_extreme_logits_finite);
    tcase_add_test(t, hint_loss_value_and_gradient);
    tcase_add_test(t, distill_step_gradient_with_hint);
    tcase_add_test(t, teacher_logits_match_forward);
    tcase_add_test(t, distiller_refuses_mismatch);
    tcase_add_test(t, adapter_shapes);
    suite_add_tcase(s, t);
    return s;
}
