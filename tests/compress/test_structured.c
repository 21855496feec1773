/* Structured pruning: the physically smaller model gives the same outputs
 * as the dense model with the removed neurons / filters masked out (weights,
 * biases and batchnorm gamma/beta zeroed), for an MLP with batchnorm between
 * dense layers and a CNN with batchnorm, maxpool and flatten; bad requests. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../compress/compress.h"
#include "../kdtest.h"

static nn_model *build(nn_shape in, const nn_layer_spec *s, int n, uint64_t seed)
{
    kd_err e = {0};
    nn_model *m = nn_model_new(in, s, n, NULL, &e);
    ck_assert_msg(m != NULL, "%s", e.msg);
    nn_model_init(m, seed);
    nn_rng r = nn_rng_stream(seed, NN_STREAM_TEST);
    for (size_t i = 0; i < m->nparams; i++) /* non-trivial biases and bn parameters */
        m->params[i] += 0.05f * nn_rng_normal(&r);
    for (int i = 0; i < m->nlayers; i++) { /* running stats: mean ~ N(0,.1), var in [.5,1.5) */
        nn_layer *l = &m->layers[i];
        for (size_t c = 0; c < l->nbuf / 2; c++) {
            l->buf[c] = 0.1f * nn_rng_normal(&r);
            l->buf[l->nbuf / 2 + c] = 0.5f + nn_rng_uniform(&r);
        }
    }
    return m;
}

/* Indices of the n rows of l with the smallest norm (ties: higher index
 * goes first, matching "keep the lower index"). */
static void smallest_rows(const nn_layer *l, compress_norm norm, int n, int *out)
{
    int units = l->out.c;
    size_t len = l->nw / (size_t)units;
    double *s = malloc((size_t)units * sizeof *s);
    int *used = calloc((size_t)units, sizeof *used);
    for (int u = 0; u < units; u++) {
        s[u] = 0;
        for (size_t k = 0; k < len; k++) {
            double w = l->w[(size_t)u * len + k];
            s[u] += norm == COMPRESS_NORM_L1 ? fabs(w) : w * w;
        }
    }
    for (int j = 0; j < n; j++) {
        int best = -1;
        for (int u = units - 1; u >= 0; u--)
            if (!used[u] && (best < 0 || s[u] < s[best]))
                best = u;
        used[best] = 1;
        out[j] = best;
    }
    free(s);
    free(used);
}

/* Zeroes the removed rows of layer i (and bias) and, when bn >= 0, the
 * batchnorm's gamma and beta of those channels. */
static void mask_rows(nn_model *m, int i, int bn, compress_norm norm, int n)
{
    nn_layer *l = &m->layers[i];
    int *rows = malloc((size_t)n * sizeof *rows);
    smallest_rows(l, norm, n, rows);
    size_t len = l->nw / (size_t)l->out.c;
    for (int j = 0; j < n; j++) {
        memset(l->w + (size_t)rows[j] * len, 0, len * sizeof(float));
        l->b[rows[j]] = 0;
        if (bn >= 0) {
            m->layers[bn].w[rows[j]] = 0;
            m->layers[bn].b[rows[j]] = 0;
        }
    }
    free(rows);
}

static void assert_same_outputs(nn_model *a, nn_model *b, int n)
{
    size_t in = nn_shape_size(a->in);
    nn_rng r = nn_rng_stream(17, NN_STREAM_TEST);
    float *x = malloc((size_t)n * in * sizeof *x), *ya = malloc((size_t)n * a->nclasses * 4);
    for (size_t i = 0; i < (size_t)n * in; i++)
        x[i] = nn_rng_normal(&r);
    nn_ctx c = {.train = 0};
    memcpy(ya, nn_model_forward(a, x, n, &c), (size_t)n * a->nclasses * sizeof *ya);
    const float *yb = nn_model_forward(b, x, n, &c);
    for (int i = 0; i < n * a->nclasses; i++)
        ck_assert_msg(fabsf(ya[i] - yb[i]) <= 1e-4f * (1 + fabsf(ya[i])), "[%d] %g vs %g", i,
                      (double)ya[i], (double)yb[i]);
    free(x);
    free(ya);
}

START_TEST(test_neurons_with_batchnorm)
{
    const nn_layer_spec s[] = {{.kind = NN_DENSE, .units = 10}, {.kind = NN_BATCHNORM},
                               {.kind = NN_RELU},  {.kind = NN_DROPOUT, .rate = 0.3f},
                               {.kind = NN_DENSE, .units = 9}, {.kind = NN_RELU},
                               {.kind = NN_DENSE, .units = 3}};
    for (int norm = COMPRESS_NORM_L1; norm <= COMPRESS_NORM_L2; norm++) {
        nn_model *m = build((nn_shape){7, 1, 1}, s, 7, 1), *masked = build((nn_shape){7, 1, 1}, s, 7, 1);
        kd_err e = {0};
        compress_prune_spec ps = {.sparsity = 0.5f};
        nn_model *p = compress_prune_structured(m, &ps, COMPRESS_NEURONS, (compress_norm)norm, &e);
        ck_assert_msg(p != NULL, "%s", e.msg);
        ck_assert_int_eq(p->layers[0].spec.units, 5);
        ck_assert_int_eq(p->layers[1].in.c, 5);
        ck_assert_int_eq(p->layers[4].spec.units, 4); /* round(4.5) = 5 removed */
        ck_assert_int_eq(p->layers[6].spec.units, 3); /* the output layer stays */
        ck_assert(nn_model_macs(p) < 0.55 * nn_model_macs(m));
        mask_rows(masked, 0, 1, (compress_norm)norm, 5);
        mask_rows(masked, 4, -1, (compress_norm)norm, 5);
        assert_same_outputs(masked, p, 1);
        assert_same_outputs(masked, p, 9);
        nn_model_free(p);
        nn_model_free(m);
        nn_model_free(masked);
    }
}
END_TEST

START_TEST(test_filters_through_pool_and_flatten)
{
    const nn_layer_spec s[] = {
        {.kind = NN_CONV2D, .filters = 6, .kernel = 3, .pad = 1}, {.kind = NN_BATCHNORM},
        {.kind = NN_RELU}, {.kind = NN_MAXPOOL2D, .kernel = 2},
        {.kind = NN_CONV2D, .filters = 4, .kernel = 3, .pad = 1}, {.kind = NN_RELU},
        {.kind = NN_FLATTEN}, {.kind = NN_DENSE, .units = 8}, {.kind = NN_RELU},
        {.kind = NN_DENSE, .units = 3}};
    nn_shape in = {2, 8, 8};
    nn_model *m = build(in, s, 10, 2), *masked = build(in, s, 10, 2);
    kd_err e = {0};
    compress_override ov[] = {{"conv2", 0.25f}, {"dense1", 0.0f}};
    compress_prune_spec ps = {.sparsity = 0.5f, .overrides = ov, .noverrides = 2};
    nn_model *p = compress_prune_structured(m, &ps, COMPRESS_FILTERS | COMPRESS_NEURONS,
                                            COMPRESS_NORM_L2, &e);
    ck_assert_msg(p != NULL, "%s", e.msg);
    ck_assert_int_eq(p->layers[0].spec.filters, 3);
    ck_assert_int_eq(p->layers[4].spec.filters, 3);
    ck_assert_int_eq(p->layers[7].in.c, 3 * 4 * 4);
    ck_assert_int_eq(p->layers[7].spec.units, 8);
    mask_rows(masked, 0, 1, COMPRESS_NORM_L2, 3);
    mask_rows(masked, 4, -1, COMPRESS_NORM_L2, 1);
    assert_same_outputs(masked, p, 1);
    assert_same_outputs(masked, p, 5);
    ck_assert(fabs(p->in_std - m->in_std) == 0);
    nn_model_free(p);
    /* neurons only: the convolutions keep their filters; an override naming
     * a conv layer is then an error */
    compress_prune_spec dense_only = {.sparsity = 0.5f};
    p = compress_prune_structured(m, &dense_only, COMPRESS_NEURONS, COMPRESS_NORM_L2, &e);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(p->layers[0].spec.filters, 6);
    ck_assert_int_eq(p->layers[4].spec.filters, 4);
    ck_assert_int_eq(p->layers[7].spec.units, 4);
    nn_model_free(p);
    ck_assert_ptr_null(compress_prune_structured(m, &ps, COMPRESS_NEURONS, COMPRESS_NORM_L2, &e));
    ck_assert_ptr_nonnull(strstr(e.msg, "conv2"));
    nn_model_free(m);
    nn_model_free(masked);
}
END_TEST

START_TEST(test_bad_requests)
{
    const nn_layer_spec s[] = {{.kind = NN_DENSE, .units = 6}, {.kind = NN_RELU},
                               {.kind = NN_DENSE, .units = 3}};
    nn_model *m = build((nn_shape){4, 1, 1}, s, 3, 3);
    kd_err e = {0};
    compress_override ov = {"dense2", 0.5f};
    compress_prune_spec ps = {.sparsity = 0.5f, .overrides = &ov, .noverrides = 1};
    ck_assert_ptr_null(compress_prune_structured(m, &ps, COMPRESS_NEURONS, COMPRESS_NORM_L1, &e));
    ck_assert_ptr_nonnull(strstr(e.msg, "dense2"));
    snprintf(ov.pattern, sizeof ov.pattern, "conv*");
    ck_assert_ptr_null(compress_prune_structured(m, &ps, COMPRESS_NEURONS, COMPRESS_NORM_L1, &e));
    ck_assert_int_eq(e.code, KD_ECONFIG);
    compress_prune_spec glob = {.scope = COMPRESS_GLOBAL, .sparsity = 0.5f};
    ck_assert_ptr_null(compress_prune_structured(m, &glob, COMPRESS_NEURONS, COMPRESS_NORM_L1, &e));
    compress_prune_spec all = {.sparsity = 0.99f}; /* at least one neuron stays */
    nn_model *p = compress_prune_structured(m, &all, COMPRESS_NEURONS, COMPRESS_NORM_L1, &e);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(p->layers[0].spec.units, 1);
    nn_model_free(p);
    /* filter pruning on an MLP does not apply */
    ck_assert_ptr_null(compress_prune_structured(m, &all, COMPRESS_FILTERS, COMPRESS_NORM_L1, &e));
    ck_assert_int_eq(e.code, KD_ECONFIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "filter pruning does not apply"));
    nn_model_free(m);
}
END_TEST

Suite *suite_compress_structured(void)
{
    Suite *s = suite_create("compress_structured");
    TCase *t = tcase_create("structured");
    tcase_add_test(t, test_neurons_with_batchnorm);
    tcase_add_test(t, test_filters_through_pool_and_flatten);
    tcase_add_test(t, test_bad_requests);
    suite_add_tcase(s, t);
    return s;
}
