/* Data-parallel training on 2 ranks (pipeline/dp.c's hooks in train/'s
 * loop): each rank's share of a batch, reduced, is the whole batch's
 * gradient within float tolerance; the ranks stay bit-identical; the
 * ordered reduction gives the same bits run after run; two epochs of SGD
 * land where one process lands, within tolerance. */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "../../pipeline/internal.h"
#include "../kdtest.h"
#include "mpitest.h"

/* n samples of 4 features in 3 classes, the same on every rank */
static void make_set(data_set *d, int n)
{
    memset(d, 0, sizeof *d);
    d->n = n;
    d->shape = (nn_shape){4, 1, 1};
    d->nclasses = 3;
    d->y = kd_malloc((size_t)n);
    d->xf = kd_malloc((size_t)n * 4 * sizeof *d->xf);
    nn_rng r = nn_rng_stream(5, NN_STREAM_DATA);
    for (int i = 0; i < n; i++) {
        int c = (int)nn_rng_below(&r, 3);
        d->y[i] = (uint8_t)c;
        for (int j = 0; j < 4; j++)
            d->xf[i * 4 + j] = 0.6f * nn_rng_normal(&r) + (j == c ? 2.0f : 0);
    }
}

static nn_model *mlp(void)
{
    nn_layer_spec sp[3] = {{.kind = NN_DENSE, .units = 16}, {.kind = NN_RELU},
                           {.kind = NN_DENSE, .units = 3}};
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){4, 1, 1}, sp, 3, NULL, &e);
    ck_assert_msg(m != NULL, "%s", e.msg);
    nn_model_init(m, 17);
    return m;
}

static void assert_close(const float *a, const float *b, size_t n, double tol, const char *what)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs((double)a[i] - b[i]) <= tol * (1 + fabs((double)a[i])),
                      "%s %zu: %.9g vs %.9g", what, i, (double)a[i], (double)b[i]);
}

/* rank 0's floats equal bit for bit on every rank */
static void assert_same_on_ranks(const float *x, size_t n)
{
    kd_err e;
    float *y = kd_malloc(n * sizeof *y);
    memcpy(y, x, n * sizeof *y);
    ck_assert_int_eq(dist_bcast_floats(kdt_mpi(), y, n, 0, &e), KD_OK);
    ck_assert_msg(memcmp(x, y, n * sizeof *y) == 0, "rank %d differs from rank 0",
                  dist_rank(kdt_mpi()));
    kd_free(y);
}

/* The full batch's gradient in one process (softmax cross-entropy). */
static void full_grad(nn_model *m, const data_set *d, float *g)
{
    int n = d->n;
    float *dl = kd_malloc((size_t)n * 3 * sizeof *dl);
    nn_ctx c = {.train = 1};
    const float *z = nn_model_forward(m, d->xf, n, &c);
    nn_softmax_xent(z, d->y, n, 3, dl);
    nn_model_zero_grad(m);
    nn_model_backward(m, dl, n, &c);
    memcpy(g, m->grads, m->nparams * sizeof *g);
    kd_free(dl);
}

START_TEST(shards_reduced_equal_the_whole_batch)
{
    for (int fast = 0; fast < 2; fast++) {
        data_set d;
        make_set(&d, 13); /* odd: the shards are 6 and 7 */
        nn_model *m = mlp();
        float *g = kd_malloc(m->nparams * sizeof *g);
        full_grad(m, &d, g);
        train_hooks h = {0};
        void *ctx = NULL;
        kd_err e;
        ck_assert_int_eq(pl_dp_hooks(kdt_mpi(), fast, NULL, &h, &ctx, &e), KD_OK);
        int lo, hi;
        h.shard(h.par_ctx, d.n, &lo, &hi);
        ck_assert_int_eq(hi - lo, dist_rank(kdt_mpi()) == 0 ? 6 : 7);
        float *dl = kd_malloc((size_t)(hi - lo) * 3 * sizeof *dl);
        nn_ctx c = {.train = 1};
        const float *z = nn_model_forward(m, d.xf + lo * 4, hi - lo, &c);
        double stats[2] = {nn_softmax_xent(z, d.y + lo, hi - lo, 3, dl) * (hi - lo),
                           nn_count_correct(z, d.y + lo, hi - lo, 3)};
        nn_model_zero_grad(m);
        nn_model_backward(m, dl, hi - lo, &c);
        ck_assert_int_eq(h.reduce(h.par_ctx, m, hi - lo, d.n, stats, &e), KD_OK);
        assert_close(g, m->grads, m->nparams, 1e-5, fast ? "fast: gradient" : "ordered: gradient");
        assert_same_on_ranks(m->grads, m->nparams);
        kd_free(ctx);
        kd_free(dl);
        kd_free(g);
        nn_model_free(m);
        data_set_free(&d);
    }
}
END_TEST

/* Two epochs of SGD, batch 10 over 37 samples (a short last batch). */
static nn_model *train_two_epochs(dist_comm *d, int fast)
{
    data_set tr;
    make_set(&tr, 37);
    nn_model *m = mlp();
    train_opts o = {.epochs = 2, .batch_size = 10, .seed = 3};
    o.opt = (nn_opt_spec){.kind = NN_OPT_SGD, .lr = 0.1f, .momentum = 0.9f};
    o.sched = (nn_sched_spec){.kind = NN_SCHED_CONSTANT};
    train_state st;
    train_hooks h = {.quiet = 1};
    void *ctx = NULL;
    kd_err e;
    if (d)
        ck_assert_int_eq(pl_dp_hooks(d, fast, NULL, &h, &ctx, &e), KD_OK);
    ck_assert_int_eq(train_state_init(&st, m, &o, &e), KD_OK);
    ck_assert_msg(train_fit(&st, &o, &tr, NULL, &h, &e) == KD_OK, "%s", e.msg);
    train_state_free(&st);
    kd_free(ctx);
    data_set_free(&tr);
    return m;
}

START_TEST(training_matches_one_process_and_repeats_bit_for_bit)
{
    nn_model *one = train_two_epochs(NULL, 0);
    nn_model *a = train_two_epochs(kdt_mpi(), 0), *b = train_two_epochs(kdt_mpi(), 0);
    nn_model *f = train_two_epochs(kdt_mpi(), 1);
    ck_assert_msg(memcmp(a->params, b->params, a->nparams * sizeof *a->params) == 0,
                  "the ordered reduction is not bit-identical run after run");
    assert_same_on_ranks(a->params, a->nparams);
    assert_same_on_ranks(f->params, f->nparams);
    assert_close(one->params, a->params, one->nparams, 1e-4, "ordered vs one process");
    assert_close(one->params, f->params, one->nparams, 1e-4, "fast vs one process");
    nn_model_free(one);
    nn_model_free(a);
    nn_model_free(b);
    nn_model_free(f);
}
END_TEST

Suite *suite_mpi_dp(void)
{
    Suite *s = suite_create("mpi_dp");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, shards_reduced_equal_the_whole_batch);
    tcase_add_test(tc, training_matches_one_process_and_repeats_bit_for_bit);
    suite_add_tcase(s, tc);
    return s;
}
