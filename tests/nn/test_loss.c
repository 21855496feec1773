/* softmax cross-entropy against hand-computed values, extreme logits, the
 * gradient against central differences, and argmax counting. */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "../kdtest.h"

#define LN2 0.6931471805599453
/* logits (1, 2, 3): log-sum-exp 3.40760596444438, softmax below */
#define LSE123 3.40760596444438
static const double SM123[3] = {0.09003057317038046, 0.24472847105479767, 0.6652409557748219};

START_TEST(test_hand_values)
{
    float z[2] = {0, 0}, d[2];
    uint8_t y0 = 0;
    ck_assert_double_eq_tol(nn_softmax_xent(z, &y0, 1, 2, d), LN2, 1e-6);
    ck_assert_double_eq_tol(d[0], -0.5, 1e-7);
    ck_assert_double_eq_tol(d[1], 0.5, 1e-7);
    /* two rows of (1, 2, 3), labels 2 and 0: mean of the two losses; d /= 2 */
    float z2[6] = {1, 2, 3, 1, 2, 3}, d2[6];
    uint8_t y2[2] = {2, 0};
    double want = ((LSE123 - 3) + (LSE123 - 1)) / 2;
    ck_assert_double_eq_tol(nn_softmax_xent(z2, y2, 2, 3, d2), want, 1e-6);
    for (int j = 0; j < 3; j++) {
        ck_assert_double_eq_tol(d2[j], (SM123[j] - (j == 2)) / 2, 1e-7);
        ck_assert_double_eq_tol(d2[3 + j], (SM123[j] - (j == 0)) / 2, 1e-7);
    }
    /* shifting the logits changes nothing; no dlogits is fine */
    float z3[3] = {101, 102, 103};
    uint8_t y1 = 1;
    ck_assert_double_eq_tol(nn_softmax_xent(z3, &y1, 1, 3, NULL), LSE123 - 2, 1e-5);
}
END_TEST

START_TEST(test_huge_logits)
{
    float z[3] = {1e4f, 0, -1e4f}, d[3];
    uint8_t y = 1;
    float l = nn_softmax_xent(z, &y, 1, 3, d);
    ck_assert(isfinite(l));
    ck_assert_double_eq_tol(l, 1e4, 1e-2);
    ck_assert_double_eq_tol(d[0], 1, 1e-6);
    ck_assert_double_eq_tol(d[1], -1, 1e-6);
    ck_assert_double_eq_tol(d[2], 0, 1e-6);
    y = 0; /* confident and right: loss 0 */
    ck_assert_double_eq_tol(nn_softmax_xent(z, &y, 1, 3, d), 0, 1e-6);
    float t[2] = {1e4f, 1e4f}, n2[2] = {-1e4f, -1e4f};
    ck_assert_double_eq_tol(nn_softmax_xent(t, &y, 1, 2, d), LN2, 1e-6);
    ck_assert_double_eq_tol(nn_softmax_xent(n2, &y, 1, 2, d), LN2, 1e-6);
    ck_assert(isfinite(d[0]) && isfinite(d[1]));
    float big[4] = {3e38f, -3e38f, 3e38f, 0}, d4[4];
    ck_assert_double_eq_tol(nn_softmax_xent(big, &y, 1, 4, d4), LN2, 1e-6);
    for (int j = 0; j < 4; j++)
        ck_assert(isfinite(d4[j]));
    ck_assert_double_eq_tol(d4[0], -0.5, 1e-7);
    ck_assert_double_eq_tol(d4[2], 0.5, 1e-7);
}
END_TEST

START_TEST(test_gradient_numeric)
{
    enum { N = 5, K = 7 };
    float z[N * K], d[N * K];
    uint8_t y[N] = {0, 6, 3, 3, 1};
    nn_rng r = nn_rng_stream(1, NN_STREAM_TEST);
    for (int i = 0; i < N * K; i++)
        z[i] = 3 * nn_rng_normal(&r);
    nn_softmax_xent(z, y, N, K, d);
    for (int i = 0; i < N; i++) {
        double s = 0;
        for (int j = 0; j < K; j++)
            s += d[i * K + j];
        ck_assert_double_eq_tol(s, 0, 1e-6); /* each row sums to zero */
    }
    const float h = 1e-2f;
    for (int i = 0; i < N * K; i++) {
        float keep = z[i];
        z[i] = keep + h;
        double lp = nn_softmax_xent(z, y, N, K, NULL);
        z[i] = keep - h;
        double lm = nn_softmax_xent(z, y, N, K, NULL);
        z[i] = keep;
        double num = (lp - lm) / (2.0 * h);
        ck_assert_msg(fabs(num - d[i]) < 1e-4, "d[%d] %g numeric %g", i, (double)d[i], num);
    }
}
END_TEST

START_TEST(test_count_correct)
{
    const float z[5 * 3] = {
        0.1f, 0.7f, 0.2f,  /* argmax 1 */
        5, -1, 4,          /* 0 */
        -3, -2, -1,        /* 2 */
        1, 1, 0,           /* tie: the first wins */
        0, 2, 2,           /* tie: 1 */
    };
    const uint8_t all_right[5] = {1, 0, 2, 0, 1};
    const uint8_t some[5] = {1, 1, 2, 1, 2};
    const uint8_t none[5] = {0, 2, 0, 1, 0};
    ck_assert_int_eq(nn_count_correct(z, all_right, 5, 3), 5);
    ck_assert_int_eq(nn_count_correct(z, some, 5, 3), 2);
    ck_assert_int_eq(nn_count_correct(z, none, 5, 3), 0);
    ck_assert_int_eq(nn_count_correct(z, all_right, 0, 3), 0);
    ck_assert_int_eq(nn_count_correct(z + 3, all_right + 1, 2, 3), 2);
}
END_TEST

Suite *suite_nn_loss(void)
{
    Suite *s = suite_create("nn_loss");
    TCase *t = tcase_create("loss");
    tcase_add_test(t, test_hand_values);
    tcase_add_test(t, test_huge_logits);
    tcase_add_test(t, test_gradient_numeric);
    tcase_add_test(t, test_count_correct);
    suite_add_tcase(s, t);
    return s;
}
