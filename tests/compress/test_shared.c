/* The cluster pass: every fp32 dense layer becomes dense_csr_shared with at
 * most `clusters` distinct kept values, pruned zeros stay zero, each weight
 * takes its nearest centroid, outputs are those of the snapped weights, and
 * quantized layers or bad counts are refused. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../compress/internal.h"
#include "qtest.h"

static const int dense_idx[3] = {0, 2, 5}; /* qt_mlp: dense, relu, dense, relu, dropout, dense */

START_TEST(test_cluster_pass)
{
    nn_model *m = qt_mlp(40, 32, 24, 5, 31);
    kd_err e = {0};
    compress_prune_spec ps = {.sparsity = 0.7f};
    ck_assert_int_eq(compress_prune_magnitude(m, &ps, NULL, &e), KD_OK);
    compress_cluster_spec cs = {.clusters = 8, .init = (cluster_init)_i, .seed = 3};
    nn_model *q = compress_cluster(m, &cs, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    for (int d = 0; d < 3; d++) {
        const nn_layer *a = &m->layers[dense_idx[d]], *b = &q->layers[dense_idx[d]];
        ck_assert_str_eq(nn_layer_format(b), "csr-shared+huff");
        size_t mk = (size_t)a->spec.units * nn_shape_size(a->in);
        float *wa = malloc(sizeof(float) * mk), *wb = malloc(sizeof(float) * mk), book[64];
        compress_layer_weights(a, wa);
        b->ops->dequant(b, wb);
        int nb = 0;
        for (size_t i = 0; i < mk; i++) {
            ck_assert_int_eq(wa[i] == 0.0f, wb[i] == 0.0f); /* the pruned set is kept */
            int seen = wb[i] == 0.0f;
            for (int j = 0; j < nb && !seen; j++)
                seen = book[j] == wb[i];
            if (!seen) {
                ck_assert_int_lt(nb, 8);
                book[nb++] = wb[i];
            }
        }
        ck_assert_int_ge(nb, 2);
        for (size_t i = 0; i < mk; i++) /* nearest of the codebook */
            for (int j = 0; wa[i] != 0.0f && j < nb; j++)
                ck_assert_float_le(fabsf(wb[i] - wa[i]), fabsf(book[j] - wa[i]) + 1e-7f);
        ck_assert_mem_eq(a->b, b->b, sizeof(float) * a->nb);
        free(wa);
        free(wb);
    }
    /* outputs: those of m with the snapped weights (dequantized into a clone) */
    nn_model *ref = nn_model_clone(m, &e);
    for (int d = 0; d < 3; d++)
        q->layers[dense_idx[d]].ops->dequant(&q->layers[dense_idx[d]], ref->layers[dense_idx[d]].w);
    data_set t = qt_data(17, 40, 5, 32);
    nn_ctx c = {.train = 0};
    float y[17 * 5];
    memcpy(y, nn_model_forward(ref, t.xf, 17, &c), sizeof y);
    const float *z = nn_model_forward(q, t.xf, 17, &c);
    for (int i = 0; i < 17 * 5; i++)
        ck_assert_float_eq_tol(z[i], y[i], 1e-4f * (fabsf(y[i]) + 1.0f));
    data_set_free(&t);
    nn_model_free(ref);
    nn_model_free(q);
    nn_model_free(m);
}
END_TEST

START_TEST(test_cluster_refusals)
{
    nn_model *m = qt_mlp(10, 8, 6, 3, 33);
    kd_err e = {0};
    compress_cluster_spec cs = {.clusters = 1};
    ck_assert_ptr_null(compress_cluster(m, &cs, &e));
    ck_assert_int_eq(e.code, KD_ECONFIG);
    cs.clusters = 257;
    ck_assert_ptr_null(compress_cluster(m, &cs, &e));
    cs.clusters = 16;
    nn_model *q = qt_quantize(m, COMPRESS_Q_DYNAMIC8, NULL);
    ck_assert_ptr_null(compress_cluster(q, &cs, &e));
    ck_assert_msg(strstr(e.msg, "already quantized") != NULL, "%s", e.msg);
    nn_model *s = compress_cluster(m, &cs, &e); /* a shared layer is not clustered again */
    ck_assert_ptr_nonnull(s);
    ck_assert_ptr_null(compress_cluster(s, &cs, &e));
    nn_model_free(s);
    nn_model_free(q);
    nn_model_free(m);
}
END_TEST

/* compress_tie: after an SGD step and tie_apply, each centroid moved by
 * -lr/|members| times the sum of its members' gradients; pruned weights are
 * zero again; compress_cluster then keeps the tied values as the codebook. */
START_TEST(test_tie_step)
{
    nn_model *m = qt_mlp(30, 20, 12, 4, 35);
    kd_err e = {0};
    compress_prune_spec ps = {.sparsity = 0.6f};
    ck_assert_int_eq(compress_prune_magnitude(m, &ps, NULL, &e), KD_OK);
    compress_cluster_spec cs = {.clusters = 4, .init = CLUSTER_INIT_LINEAR};
    compress_tie *t = compress_tie_new(m, &cs, &e);
    ck_assert_msg(t != NULL, "%s", e.msg);
    nn_layer *l = &m->layers[0];
    size_t n = l->nw;
    float *w0 = malloc(sizeof(float) * n), *g = malloc(sizeof(float) * n);
    memcpy(w0, l->w, sizeof(float) * n);
    nn_rng r = nn_rng_stream(36, 1);
    const float lr = 0.1f;
    for (size_t j = 0; j < n; j++) {
        g[j] = nn_rng_normal(&r);
        l->w[j] -= lr * g[j]; /* pruned weights move too: the tie puts them back */
    }
    compress_tie_apply(t, m);
    for (size_t j = 0; j < n; j++) {
        if (w0[j] == 0.0f) {
            ck_assert_float_eq(l->w[j], 0.0f);
            continue;
        }
        double sum = 0.0;
        int members = 0;
        for (size_t i = 0; i < n; i++)
            if (w0[i] == w0[j]) {
                sum += g[i];
                members++;
            }
        double want = w0[j] - lr * sum / members;
        ck_assert_msg(fabs(l->w[j] - want) < 1e-5, "weight %zu: %g, want %g", j, l->w[j], want);
    }
    nn_model *q = compress_cluster(m, &cs, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    float *wq = malloc(sizeof(float) * n);
    q->layers[0].ops->dequant(&q->layers[0], wq);
    ck_assert_mem_eq(wq, l->w, sizeof(float) * n);
    free(wq);
    free(w0);
    free(g);
    nn_model_free(q);
    compress_tie_free(t);
    nn_model_free(m);
}
END_TEST

Suite *suite_compress_shared(void)
{
    Suite *s = suite_create("compress_shared");
    TCase *t = tcase_create("core");
    tcase_add_loop_test(t, test_cluster_pass, 0, 3); /* linear, k-means++, density */
    tcase_add_test(t, test_cluster_refusals);
    tcase_add_test(t, test_tie_step);
    suite_add_tcase(s, t);
    return s;
}
