/* What compress_quantize holds at once (issue 12: peak memory), counted by
 * the allocation hook (kd_alloc_track) on this thread: GPTQ's k x k Gram
 * matrices are made one layer at a time, and its inverse factor is the only
 * other k x k matrix alongside. */
#include <check.h>

#include "../../compress/compress.h"
#include "../kdtest.h"
#include "qtest.h"

enum { K = 512 }; /* every dense layer's input width: a Gram matrix is K*K doubles */

START_TEST(gptq_holds_one_gram_matrix)
{
    nn_model *m = qt_mlp(K, K, K, 10, 3); /* dense K->K, K->K, K->10 */
    data_set d = qt_data(256, K, 10, 4);
    compress_quant_spec s = {.mode = COMPRESS_Q_INT4, .per_channel = 1, .calib_batches = 2,
                             .rounding = COMPRESS_ROUND_GPTQ, .damp = 0.01f};
    kd_err e = {0};
    /* the calibration's batch buffers made beforehand: not counted below */
    ck_assert_int_eq(nn_model_reserve(m, COMPRESS_CALIB_BATCH, &e), KD_OK);
    kd_alloc_track(1);
    nn_model *q = compress_quantize(m, &s, &d, &e);
    long long peak = kd_alloc_peak();
    kd_alloc_track(0);
    ck_assert_msg(q != NULL, "%s", e.msg);
    const double gram = (double)K * K * sizeof(double);
    /* one Gram matrix and the factor, plus the layer's weights twice (half a
     * matrix each) and a batch of inputs as doubles (a quarter): 3.25; before:
     * the three Gram matrices, the factor and a permuted copy of the matrix
     * besides (6.25) */
    ck_assert_msg(peak < 4.0 * gram, "compress_quantize held %.2f MB at once, %.2f Gram matrices",
                  peak / 1e6, peak / gram);
    ck_assert_msg(peak > 2.0 * gram, "the count missed GPTQ's matrices: %.2f MB", peak / 1e6);
    nn_model_free(q);
    nn_model_free(m);
    data_set_free(&d);
}
END_TEST

/* The count itself: a block held, then freed, then a smaller one. */
START_TEST(alloc_peak_counts_what_is_held)
{
    kd_alloc_track(1);
    float *a = kd_afloat(1 << 20);
    char *b = kd_malloc(1000);
    kd_free(b);
    kd_afree(a);
    char *c = kd_calloc(1, 1 << 16);
    c = kd_realloc(c, 1 << 18);
    long long peak = kd_alloc_peak();
    kd_free(c);
    kd_alloc_track(0);
    ck_assert_msg(peak >= (4 << 20) + 1000 && peak < (4 << 20) + (1 << 16),
                  "peak %lld bytes", peak);
}
END_TEST

Suite *suite_compress_quant_memory(void)
{
    Suite *s = suite_create("compress_quant_memory");
    TCase *t = tcase_create("compress_quant_memory");
    tcase_add_test(t, gptq_holds_one_gram_matrix);
    tcase_add_test(t, alloc_peak_counts_what_is_held);
    suite_add_tcase(s, t);
    return s;
}
