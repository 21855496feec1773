/* Optimisers against hand-computed steps on a 3-parameter model (dense 2->1:
 * w = (1, -2), b = 0.5), weight decay never on biases or batchnorm, and the
 * learning-rate schedules at chosen points. */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "../kdtest.h"

#define TOL 1e-6

static nn_model *tiny(void)
{
    nn_layer_spec sp = {.kind = NN_DENSE, .units = 1};
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){2, 1, 1}, &sp, 1, NULL, &e);
    ck_assert_ptr_nonnull(m);
    ck_assert_uint_eq(m->nparams, 3);
    nn_layer *l = &m->layers[0];
    l->w[0] = 1.0f;
    l->w[1] = -2.0f;
    l->b[0] = 0.5f;
    return m;
}

static void set_grads(nn_model *m, float g0, float g1, float gb)
{
    nn_layer *l = &m->layers[0];
    l->gw[0] = g0;
    l->gw[1] = g1;
    l->gb[0] = gb;
}

static void expect(const nn_model *m, double w0, double w1, double b)
{
    const nn_layer *l = &m->layers[0];
    ck_assert_double_eq_tol(l->w[0], w0, TOL);
    ck_assert_double_eq_tol(l->w[1], w1, TOL);
    ck_assert_double_eq_tol(l->b[0], b, TOL);
}

static nn_optim *opt(nn_opt_spec s, size_t n)
{
    kd_err e = {0};
    nn_optim *o = nn_optim_new(&s, n, &e);
    ck_assert_msg(o != NULL, "%s", e.msg);
    return o;
}

/* nn_optim_step_clear: the update of nn_optim_step, bit for bit, with the
 * gradients zeroed in the same pass; zero_grad then skips its pass, and a
 * backward (which accumulates) makes it zero them again. */
START_TEST(test_step_clear)
{
    const nn_opt_spec sgd = {.kind = NN_OPT_SGD, .lr = 0.1f, .momentum = 0.9f, .nesterov = 1,
                             .weight_decay = 0.01f};
    const nn_opt_spec adamw = {.kind = NN_OPT_ADAMW, .lr = 0.1f, .weight_decay = 0.01f};
    const nn_opt_spec *specs[2] = {&sgd, &adamw};
    for (int k = 0; k < 2; k++) {
        nn_model *a = tiny(), *b = tiny();
        nn_optim *oa = opt(*specs[k], a->nparams), *ob = opt(*specs[k], b->nparams);
        for (int step = 0; step < 3; step++) {
            set_grads(a, 0.1f * step - 0.2f, 0.3f, -0.05f);
            set_grads(b, 0.1f * step - 0.2f, 0.3f, -0.05f);
            nn_optim_step(oa, a, 0.1f);
            nn_optim_step_clear(ob, b, 0.1f);
            ck_assert_int_eq(b->grads_zero, 1);
            for (size_t i = 0; i < a->nparams; i++) {
                ck_assert(a->params[i] == b->params[i]);
                ck_assert(b->grads[i] == 0.0f);
            }
        }
        /* a backward sets gradients again: zero_grad must clear them */
        float x[2] = {1.0f, 2.0f}, dl[1] = {1.0f};
        nn_ctx c = {.train = 1};
        ck_assert_ptr_nonnull(nn_model_forward(b, x, 1, &c));
        nn_model_backward(b, dl, 1, &c);
        ck_assert_int_eq(b->grads_zero, 0);
        ck_assert(b->layers[0].gw[1] == 2.0f);
        nn_model_zero_grad(b);
        for (size_t i = 0; i < b->nparams; i++)
            ck_assert(b->grads[i] == 0.0f);
        nn_optim_free(oa);
        nn_optim_free(ob);
        nn_model_free(a);
        nn_model_free(b);
    }
}
END_TEST

START_TEST(test_sgd_plain_and_decay)
{
    nn_model *m = tiny();
    nn_optim *o = opt((nn_opt_spec){.kind = NN_OPT_SGD, .lr = 0.1f}, m->nparams);
    set_grads(m, 0.1f, 0.2f, 0.3f);
    nn_optim_step(o, m, 0.1f); /* p -= 0.1 g */
    expect(m, 0.99, -2.02, 0.47);
    nn_optim_step(o, m, 0.5f); /* the lr argument is what counts */
    expect(m, 0.94, -2.12, 0.32);
    nn_optim_free(o);
    nn_model_free(m);
    /* L2 decay 0.1 on weights only: g_w = g + 0.1 w */
    m = tiny();
    o = opt((nn_opt_spec){.kind = NN_OPT_SGD, .lr = 0.1f, .weight_decay = 0.1f}, m->nparams);
    set_grads(m, 0.1f, 0.2f, 0.3f);
    nn_optim_step(o, m, 0.1f); /* w0: 1 - 0.1(0.1 + 0.1); w1: -2 - 0.1(0.2 - 0.2) */
    expect(m, 0.98, -2.0, 0.47);
    nn_optim_free(o);
    nn_model_free(m);
}
END_TEST

START_TEST(test_sgd_momentum)
{
    /* mu 0.9, constant g: m1 = g, m2 = 1.9 g; after two steps p0 - lr * 2.9 g */
    nn_model *m = tiny();
    nn_optim *o = opt((nn_opt_spec){.kind = NN_OPT_SGD, .momentum = 0.9f}, m->nparams);
    set_grads(m, 0.1f, 0.2f, 0.3f);
    nn_optim_step(o, m, 0.1f);
    expect(m, 0.99, -2.02, 0.47);
    nn_optim_step(o, m, 0.1f);
    expect(m, 1 - 0.029, -2 - 0.058, 0.5 - 0.087);
    nn_optim_free(o);
    nn_model_free(m);
    /* Nesterov: step1 = g + 0.9 g = 1.9 g; step2 = g + 0.9 * 1.9 g = 2.71 g */
    m = tiny();
    o = opt((nn_opt_spec){.kind = NN_OPT_SGD, .momentum = 0.9f, .nesterov = 1}, m->nparams);
    set_grads(m, 0.1f, 0.2f, 0.3f);
    nn_optim_step(o, m, 0.1f);
    expect(m, 1 - 0.019, -2 - 0.038, 0.5 - 0.057);
    nn_optim_step(o, m, 0.1f);
    expect(m, 1 - 0.0461, -2 - 0.0922, 0.5 - 0.1383);
    nn_optim_free(o);
    nn_model_free(m);
    /* momentum with decay 0.5 on w0 = 1, g = 0.1:
     * step 1: g' = 0.6, m = 0.6, w = 0.94;
     * step 2: g' = 0.1 + 0.47 = 0.57, m = 0.54 + 0.57 = 1.11, w = 0.829 */
    m = tiny();
    o = opt((nn_opt_spec){.kind = NN_OPT_SGD, .momentum = 0.9f, .weight_decay = 0.5f},
            m->nparams);
    set_grads(m, 0.1f, 0, 0.3f);
    nn_optim_step(o, m, 0.1f);
    expect(m, 0.94, -2 + 0.1, 0.47);
    nn_optim_step(o, m, 0.1f); /* w1: m = -1 * 0.9 + -0.95 = -1.85 → -1.9 + 0.185 */
    expect(m, 0.829, -1.715, 0.413);
    nn_optim_free(o);
    nn_model_free(m);
}
END_TEST

START_TEST(test_adamw_two_steps)
{
    /* defaults beta 0.9/0.999, eps 1e-8; values from the formula in double:
     * w0 (g 0.1 then 0.3, wd 0): 0.900000010, 0.808221902 */
    nn_model *m = tiny();
    nn_optim *o = opt((nn_opt_spec){.kind = NN_OPT_ADAMW}, m->nparams);
    ck_assert(o->spec.beta1 == 0.9f && o->spec.beta2 == 0.999f && o->spec.eps == 1e-8f);
    ck_assert_ptr_nonnull(o->v);
    set_grads(m, 0.1f, 0.2f, -0.3f);
    nn_optim_step(o, m, 0.1f); /* step 1 is lr * sign(g) */
    expect(m, 0.9, -2.1, 0.6);
    set_grads(m, 0.3f, -0.1f, -0.3f);
    nn_optim_step(o, m, 0.1f);
    /* w1 (g 0.2 then -0.1): m = 0.018 - 0.01, v = 0.00003996 + 0.00001,
     * corrections 0.19 and 0.001999 */
    expect(m, 0.8082219022, -2.1 - 0.1 * (0.008 / 0.19) / sqrt(0.00004996 / 0.001999), 0.7);
    ck_assert_int_eq(o->step, 2);
    nn_optim_free(o);
    nn_model_free(m);
    /* decoupled decay 0.01: w0 0.899000010, 0.806322902; bias not decayed */
    m = tiny();
    o = opt((nn_opt_spec){.kind = NN_OPT_ADAMW, .weight_decay = 0.01f}, m->nparams);
    set_grads(m, 0.1f, 0, 0.3f);
    nn_optim_step(o, m, 0.1f);
    ck_assert_double_eq_tol(m->layers[0].w[0], 0.89900001, TOL);
    ck_assert_double_eq_tol(m->layers[0].w[1], -2 * (1 - 0.001), TOL); /* g = 0: decay only */
    ck_assert_double_eq_tol(m->layers[0].b[0], 0.4, TOL);
    set_grads(m, 0.3f, 0, 0.3f);
    nn_optim_step(o, m, 0.1f);
    ck_assert_double_eq_tol(m->layers[0].w[0], 0.8063229022, TOL);
    ck_assert_double_eq_tol(m->layers[0].b[0], 0.3, TOL);
    nn_optim_free(o);
    nn_model_free(m);
}
END_TEST

/* dense(2->2) -> batchnorm: with zero gradients only the dense weights move */
static void decay_only_weights(nn_opt_kind kind)
{
    nn_layer_spec sp[2] = {{.kind = NN_DENSE, .units = 2}, {.kind = NN_BATCHNORM}};
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){2, 1, 1}, sp, 2, NULL, &e);
    ck_assert_ptr_nonnull(m);
    for (size_t i = 0; i < m->nparams; i++)
        m->params[i] = 1.0f + (float)i;
    nn_model_zero_grad(m);
    nn_optim *o = opt((nn_opt_spec){.kind = kind, .momentum = 0.9f, .weight_decay = 0.5f},
                      m->nparams);
    nn_optim_step(o, m, 0.1f);
    nn_layer *d = &m->layers[0], *bn = &m->layers[1];
    for (size_t i = 0; i < d->nw; i++) /* both decay to p (1 - lr wd) here */
        ck_assert_double_eq_tol(d->w[i], (1.0 + i) * 0.95, TOL);
    for (size_t i = 0; i < d->nb; i++)
        ck_assert(d->b[i] == 1.0f + (float)(d->nw + i));
    size_t off = d->nw + d->nb;
    for (size_t i = 0; i < bn->nw; i++)
        ck_assert(bn->w[i] == 1.0f + (float)(off + i));
    for (size_t i = 0; i < bn->nb; i++)
        ck_assert(bn->b[i] == 1.0f + (float)(off + bn->nw + i));
    nn_optim_free(o);
    nn_model_free(m);
}

START_TEST(test_decay_skips_bias_and_bn)
{
    decay_only_weights(NN_OPT_SGD);
    decay_only_weights(NN_OPT_ADAMW);
}
END_TEST

START_TEST(test_optim_alloc_failure)
{
    kd_err e = {0};
    nn_opt_spec s = {.kind = NN_OPT_ADAMW};
    for (long k = 0; k < 3; k++) {
        kd_alloc_fail_after(k);
        nn_optim *o = nn_optim_new(&s, 100, &e);
        kd_alloc_fail_after(-1);
        ck_assert_ptr_null(o);
        ck_assert_int_eq(e.code, KD_ENOMEM);
    }
    nn_optim *o = nn_optim_new(&s, 100, &e);
    ck_assert_ptr_nonnull(o);
    nn_optim_free(o);
    nn_optim_free(NULL);
}
END_TEST

START_TEST(test_schedules)
{
    const float base = 0.1f;
    nn_sched_spec c = {.kind = NN_SCHED_CONSTANT};
    ck_assert(nn_sched_lr(&c, base, 0, 10) == base);
    ck_assert(nn_sched_lr(&c, base, 9.9, 10) == base);
    /* step: x0.5 every 2 epochs */
    nn_sched_spec st = {.kind = NN_SCHED_STEP, .step_epochs = 2, .gamma = 0.5f};
    ck_assert_double_eq_tol(nn_sched_lr(&st, base, 0, 10), 0.1, TOL);
    ck_assert_double_eq_tol(nn_sched_lr(&st, base, 1.99, 10), 0.1, TOL);
    ck_assert_double_eq_tol(nn_sched_lr(&st, base, 2.0, 10), 0.05, TOL);
    ck_assert_double_eq_tol(nn_sched_lr(&st, base, 4.5, 10), 0.025, TOL);
    st.gamma = 0; /* default gamma 0.1 */
    ck_assert_double_eq_tol(nn_sched_lr(&st, base, 2.0, 10), 0.01, TOL);
    /* cosine from 0.1 to 0.01 over 10 epochs */
    nn_sched_spec co = {.kind = NN_SCHED_COSINE, .min_lr = 0.01f};
    ck_assert_double_eq_tol(nn_sched_lr(&co, base, 0, 10), 0.1, TOL);
    ck_assert_double_eq_tol(nn_sched_lr(&co, base, 2.5, 10), 0.0868198052, TOL);
    ck_assert_double_eq_tol(nn_sched_lr(&co, base, 5, 10), 0.055, TOL);
    ck_assert_double_eq_tol(nn_sched_lr(&co, base, 10, 10), 0.01, TOL);
    ck_assert_double_eq_tol(nn_sched_lr(&co, base, 12, 10), 0.01, TOL); /* clamped */
    /* warm-up over 2 epochs, then cosine over the remaining 8 */
    co.warmup_epochs = 2;
    ck_assert_double_lt(nn_sched_lr(&co, base, 0, 10), 1e-6);
    ck_assert_double_eq_tol(nn_sched_lr(&co, base, 0.5, 10), 0.025, TOL);
    ck_assert_double_eq_tol(nn_sched_lr(&co, base, 1, 10), 0.05, TOL);
    ck_assert_double_eq_tol(nn_sched_lr(&co, base, 2, 10), 0.1, TOL);
    ck_assert_double_eq_tol(nn_sched_lr(&co, base, 6, 10), 0.055, TOL);
    ck_assert_double_eq_tol(nn_sched_lr(&co, base, 10, 10), 0.01, TOL);
    /* warm-up with a constant schedule */
    c.warmup_epochs = 4;
    ck_assert_double_eq_tol(nn_sched_lr(&c, base, 3, 10), 0.075, TOL);
    ck_assert(nn_sched_lr(&c, base, 4, 10) == base);
}
END_TEST

Suite *suite_nn_optim(void)
{
    Suite *s = suite_create("nn_optim");
    TCase *t = tcase_create("optim");
    tcase_add_test(t, test_sgd_plain_and_decay);
    tcase_add_test(t, test_sgd_momentum);
    tcase_add_test(t, test_adamw_two_steps);
    tcase_add_test(t, test_decay_skips_bias_and_bn);
    tcase_add_test(t, test_optim_alloc_failure);
    tcase_add_test(t, test_schedules);
    tcase_add_test(t, test_step_clear);
    suite_add_tcase(s, t);
    return s;
}
