/* measure: the same numbers as train_evaluate and the file system, counts
 * from the model, and latency percentiles that are ordered and positive
 * (no timing thresholds). */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../measure/measure.h"
#include "../../train/train.h"
#include "../kdtest.h"

/* 50 uint8 samples of shape (1,3,3), 4 classes, pseudo-random */
static void make_set(data_set *d, int n)
{
    memset(d, 0, sizeof *d);
    d->n = n;
    d->shape = (nn_shape){1, 3, 3};
    d->nclasses = 4;
    d->x8 = kd_malloc((size_t)n * 9);
    d->y = kd_malloc((size_t)n);
    nn_rng r = nn_rng_stream(8, NN_STREAM_DATA);
    for (int i = 0; i < n * 9; i++)
        d->x8[i] = (uint8_t)nn_rng_below(&r, 256);
    for (int i = 0; i < n; i++)
        d->y[i] = (uint8_t)nn_rng_below(&r, 4);
}

static nn_model *small_cnn(void)
{
    nn_layer_spec sp[4] = {{.kind = NN_CONV2D, .filters = 3, .kernel = 2},
                           {.kind = NN_RELU},
                           {.kind = NN_FLATTEN},
                           {.kind = NN_DENSE, .units = 4}};
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){1, 3, 3}, sp, 4, NULL, &e);
    ck_assert_msg(m != NULL, "%s", e.msg);
    nn_model_init(m, 2);
    m->in_mean = 0.5f;
    m->in_std = 0.3f;
    return m;
}

static const measure_opts QUICK = {.latency_reps = 31, .warmup = 3, .throughput_reps = 2};

START_TEST(test_measure_model)
{
    char dir[256], path[512];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/m.kdbm", dir);
    data_set d;
    make_set(&d, 50);
    nn_model *m = small_cnn();
    m->layers[3].w[0] = 0; /* one zero weight; biases are zero */
    kd_err e = {0};
    ck_assert_int_eq(nn_model_save(m, path, &e), KD_OK);
    measure_result r;
    ck_assert_msg(measure_model(m, &d, path, &QUICK, &r, &e) == KD_OK, "%s", e.msg);
    double loss, acc;
    ck_assert_int_eq(train_evaluate(m, &d, 256, &loss, &acc, &e), KD_OK);
    ck_assert(r.accuracy == acc);
    ck_assert(r.loss == loss);
    ck_assert(r.size_bytes == kd_file_size(path));
    ck_assert_int_gt(r.size_bytes, (long long)(m->nparams * sizeof(float)));
    ck_assert_uint_eq(r.params, m->nparams);
    ck_assert_uint_eq(r.params, 3 * 4 + 3 + 12 * 4 + 4);
    ck_assert_uint_eq(r.nonzero_params, 3 * 4 + 12 * 4 - 1);
    ck_assert(r.macs == 12.0 * 4 + 48); /* conv 12 weights x 2x2 outputs, dense 48 */
    ck_assert(r.latency_us_b1_p50 > 0);
    ck_assert(r.latency_us_b1_p99 >= r.latency_us_b1_p50);
    ck_assert(r.throughput_b256 > 0 && isfinite(r.throughput_b256));
    /* without a file: size -1; a missing file is an error */
    ck_assert_int_eq(measure_model(m, &d, NULL, &QUICK, &r, &e), KD_OK);
    ck_assert_int_eq(r.size_bytes, -1);
    ck_assert(r.accuracy == acc);
    char none[600];
    snprintf(none, sizeof none, "%s/none.kdbm", dir);
    ck_assert_int_eq(measure_model(m, &d, none, &QUICK, &r, &e), KD_EIO);
    ck_assert_str_eq(e.file, none);
    /* data the model cannot take */
    d.nclasses = 9;
    ck_assert_int_eq(measure_model(m, &d, path, &QUICK, &r, &e), KD_ERUNTIME);
    nn_model_free(m);
    data_set_free(&d);
    unlink(path);
    rmdir(dir);
}
END_TEST

START_TEST(test_latency_percentiles)
{
    nn_model *m = small_cnn();
    float x[9] = {0.1f, -0.2f, 0.3f, 0, 1, 2, -1, 0.5f, 0.25f};
    kd_err e = {0};
    /* every repetition count, including the smallest, keeps p99 >= p50 > 0 */
    for (int reps = 1; reps <= 12; reps++) {
        double p50 = -1, p99 = -1;
        ck_assert_int_eq(measure_latency(m, x, reps, 0, &p50, &p99, &e), KD_OK);
        ck_assert_msg(p50 > 0 && p99 >= p50, "reps %d: p50 %g p99 %g", reps, p50, p99);
    }
    double p50, p99;
    ck_assert_int_eq(measure_latency(m, x, 0, 0, &p50, &p99, &e), KD_ECONFIG);
    ck_assert_int_eq(measure_latency(m, x, -5, 0, &p50, &p99, &e), KD_ECONFIG);
    kd_alloc_fail_after(0);
    int rc = measure_latency(m, x, 10, 0, &p50, &p99, &e);
    kd_alloc_fail_after(-1);
    ck_assert_int_eq(rc, KD_ENOMEM);
    nn_model_free(m);
}
END_TEST

START_TEST(test_measure_empty_set)
{
    /* an empty test set: accuracy 0, still timed on zero inputs */
    data_set d;
    make_set(&d, 1);
    d.n = 0;
    nn_model *m = small_cnn();
    measure_result r;
    kd_err e = {0};
    ck_assert_int_eq(measure_model(m, &d, NULL, &QUICK, &r, &e), KD_OK);
    ck_assert(r.accuracy == 0 && r.loss == 0);
    ck_assert(r.latency_us_b1_p99 >= r.latency_us_b1_p50 && r.latency_us_b1_p50 > 0);
    nn_model_free(m);
    data_set_free(&d);
}
END_TEST

/* The pick between one thread and all: both figures kept, the kept one is
 * never slower than one thread, and the model computes the same logits
 * whichever count it keeps. */
START_TEST(test_latency_pick)
{
    nn_model *m = small_cnn();
    int prev = nn_threads();
    nn_set_threads(2);
    float x[9], y0[4];
    for (int i = 0; i < 9; i++)
        x[i] = 0.1f * (float)i - 0.3f;
    nn_ctx c = {.train = 0};
    memcpy(y0, nn_model_forward(m, x, 1, &c), sizeof y0);
    measure_result r = {0};
    kd_err e = {0};
    ck_assert_int_eq(measure_latency_pick(m, x, 60, 2, &r, &e), KD_OK);
    ck_assert(r.threads_b1 == 1 || r.threads_b1 == 2);
    ck_assert_int_eq(m->b1_threads == 1, r.threads_b1 == 1);
    ck_assert(r.latency_us_b1_p50 > 0 && r.latency_us_b1_p50_1t > 0);
    ck_assert(r.latency_us_b1_p50 <= r.latency_us_b1_p50_1t);
    ck_assert(r.latency_us_b1_p99 >= r.latency_us_b1_p50);
    ck_assert(r.latency_b1_spread >= 0);
    for (int t = 0; t <= 1; t++) {
        m->b1_threads = t;
        const float *y = nn_model_forward(m, x, 1, &c);
        for (int k = 0; k < 4; k++)
            ck_assert_float_eq_tol(y[k], y0[k], 1e-6f);
    }
    ck_assert_int_eq(measure_latency_pick(m, x, 0, 0, &r, &e), KD_ECONFIG);
    nn_set_threads(prev);
    nn_model_free(m);
}
END_TEST

Suite *suite_measure(void)
{
    Suite *s = suite_create("measure");
    TCase *t = tcase_create("measure");
    tcase_add_test(t, test_measure_model);
    tcase_add_test(t, test_latency_percentiles);
    tcase_add_test(t, test_latency_pick);
    tcase_add_test(t, test_measure_empty_set);
    suite_add_tcase(s, t);
    return s;
}
