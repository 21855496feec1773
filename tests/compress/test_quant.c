/* Quantization math: the fixed-point multiplier and requantization edge cases
 * (saturation, zero points, rounding ties, tiny and >= 1 multipliers, shifts),
 * parameters, (de)quantization, calibration observers and fake-quant/STE. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../compress/kernels/kernels.h"
#include "../kdtest.h"

START_TEST(test_multiplier_values)
{
    int32_t m, s;
    kd_err e = {0};
    ck_assert_int_eq(quant_multiplier(0.0, &m, &s, &e), 0);
    ck_assert(m == 0 && s == 0);
    ck_assert_int_eq(quant_multiplier(0.5, &m, &s, &e), 0);
    ck_assert(m == 1 << 30 && s == 0);
    ck_assert_int_eq(quant_multiplier(1.0, &m, &s, &e), 0);
    ck_assert(m == 1 << 30 && s == 1);
    ck_assert_int_eq(quant_multiplier(0.75, &m, &s, &e), 0);
    ck_assert(m == 1610612736 && s == 0);
    /* q rounds up to 2^31: halved, shift + 1 */
    ck_assert_int_eq(quant_multiplier(1.0 - ldexp(1.0, -40), &m, &s, &e), 0);
    ck_assert(m == 1 << 30 && s == 1);
    /* below 2^-32 every result is 0; just above, shift -31 */
    ck_assert_int_eq(quant_multiplier(ldexp(1.0, -33), &m, &s, &e), 0);
    ck_assert(m == 0 && s == 0);
    ck_assert_int_eq(quant_multiplier(ldexp(1.5, -32), &m, &s, &e), 0);
    ck_assert(m == 3 << 29 && s == -31);
    /* >= 2^31 saturates */
    ck_assert_int_eq(quant_multiplier(1e10, &m, &s, &e), 0);
    ck_assert(m == INT32_MAX && s == 30);
    ck_assert_int_eq(quant_multiplier(-0.5, &m, &s, &e), KD_ECONFIG);
    ck_assert_int_eq(quant_multiplier(NAN, &m, &s, &e), KD_ECONFIG);
    ck_assert_int_eq(quant_multiplier(INFINITY, &m, &s, &e), KD_ECONFIG);
}
END_TEST

/* mult * 2^(shift-31) represents M to 2^-31 relative, and applying it to x is
 * within one unit of x * M (two roundings of at most half a unit each). */
START_TEST(test_multiplier_accuracy)
{
    nn_rng r = nn_rng_stream(1, NN_STREAM_TEST);
    for (int t = 0; t < 20000; t++) {
        double M = ldexp(1.0 + nn_rng_uniform(&r), (int)nn_rng_below(&r, 40) - 31);
        int32_t m, s;
        quant_multiplier(M, &m, &s, NULL);
        double back = ldexp((double)m, s - 31);
        ck_assert_msg(fabs(back - M) <= M * ldexp(1.0, -30), "M %g -> %g", M, back);
        int32_t x = (int32_t)(nn_rng_u64(&r) >> 40) - (1 << 23);
        double want = (double)x * back;
        if (fabs(want) >= 2e9 || fabs(ldexp((double)x, s > 0 ? s : 0)) >= 2147483648.0)
            continue; /* the saturating left shift: tested below */
        int32_t got = quant_mul_by_mult(x, m, s);
        ck_assert_msg(fabs(got - want) <= 1.0, "x %d * %g: %d vs %f", x, M, got, want);
    }
}
END_TEST

START_TEST(test_srdhm_rdbpot)
{
    ck_assert_int_eq(quant_srdhm(INT32_MIN, INT32_MIN), INT32_MAX); /* the one overflow */
    ck_assert_int_eq(quant_srdhm(INT32_MAX, INT32_MAX), INT32_MAX - 1);
    ck_assert_int_eq(quant_srdhm(1, 1 << 30), 1);    /* 0.5 -> 1 */
    ck_assert_int_eq(quant_srdhm(-1, 1 << 30), 0);   /* -0.5 -> 0: ties toward +inf */
    ck_assert_int_eq(quant_srdhm(-3, 1 << 30), -1);  /* -1.5 -> -1 */
    ck_assert_int_eq(quant_srdhm(3, 1 << 30), 2);
    ck_assert_int_eq(quant_srdhm(INT32_MIN, 1 << 30), -(1 << 30));
    ck_assert_int_eq(quant_rdbpot(5, 1), 3); /* 2.5 -> 3: ties away from zero */
    ck_assert_int_eq(quant_rdbpot(-5, 1), -3);
    ck_assert_int_eq(quant_rdbpot(3, 1), 2);
    ck_assert_int_eq(quant_rdbpot(-3, 1), -2);
    ck_assert_int_eq(quant_rdbpot(7, 2), 2); /* 1.75 */
    ck_assert_int_eq(quant_rdbpot(-6, 2), -2); /* -1.5 */
    ck_assert_int_eq(quant_rdbpot(-5, 2), -1); /* -1.25 */
    ck_assert_int_eq(quant_rdbpot(12345, 0), 12345);
    ck_assert_int_eq(quant_rdbpot(INT32_MAX, 31), 1);
    ck_assert_int_eq(quant_rdbpot(INT32_MIN, 31), -1);
    ck_assert_int_eq(quant_rdbpot(-1, 31), 0);
}
END_TEST

START_TEST(test_requant_saturation_and_zero_point)
{
    int32_t m, s;
    quant_multiplier(0.01, &m, &s, NULL);
    ck_assert_int_eq(quant_requant(1 << 30, m, s, 0, -128, 127), 127);
    ck_assert_int_eq(quant_requant(-(1 << 30), m, s, 0, -128, 127), -128);
    ck_assert_int_eq(quant_requant(0, m, s, -7, -128, 127), -7);
    ck_assert_int_eq(quant_requant(1000, m, s, -7, -128, 127), 3);   /* 10 - 7 */
    ck_assert_int_eq(quant_requant(-1000, m, s, -7, -7, 127), -7);   /* fused ReLU */
    ck_assert_int_eq(quant_requant(-1000, m, s, 120, -128, 127), 110);
    ck_assert_int_eq(quant_requant(1000, m, s, 120, -128, 127), 127);
    ck_assert_int_eq(quant_requant(INT32_MAX, INT32_MAX, 30, 127, -128, 127), 127);
    ck_assert_int_eq(quant_requant(INT32_MIN, INT32_MAX, 30, -128, -128, 127), -128);
    /* M >= 1: a saturating left shift, never a wrap */
    quant_multiplier(4.0, &m, &s, NULL);
    ck_assert_int_eq(s, 3);
    ck_assert_int_eq(quant_mul_by_mult(INT32_MAX, m, s), 1 << 30);
    ck_assert_int_eq(quant_mul_by_mult(INT32_MIN, m, s), -(1 << 30));
    ck_assert_int_eq(quant_mul_by_mult(-20, m, s), -80);
    quant_multiplier(1.0, &m, &s, NULL);
    for (int x = -300; x <= 300; x++)
        ck_assert_int_eq(quant_mul_by_mult(x, m, s), x);
    /* M < 2^-32: everything is 0 */
    quant_multiplier(1e-12, &m, &s, NULL);
    ck_assert_int_eq(quant_requant(INT32_MAX, m, s, 5, -128, 127), 5);
}
END_TEST

/* ---- parameters ------------------------------------------------------------------ */

START_TEST(test_params_asym)
{
    quant_params p = quant_params_asym(0.0f, 1.0f, QUANT_S8);
    ck_assert_float_eq_tol(p.scale, 1.0f / 255.0f, 1e-9f);
    ck_assert_int_eq(p.zero, -128);
    p = quant_params_asym(0.0f, 2.0f, QUANT_U8);
    ck_assert_int_eq(p.zero, 0);
    ck_assert_int_eq(p.qmax, 255);
    p = quant_params_asym(1.0f, 2.0f, QUANT_S8); /* widened to include 0 */
    ck_assert_int_eq(p.zero, -128);
    p = quant_params_asym(-3.0f, -1.0f, QUANT_S8);
    ck_assert_int_eq(p.zero, 127);
    p = quant_params_asym(0.0f, 0.0f, QUANT_S8);
    ck_assert(p.scale == 1.0f && p.zero == 0);
    p = quant_params_asym(NAN, INFINITY, QUANT_U8);
    ck_assert(p.scale == 1.0f && p.zero == 0);
    nn_rng r = nn_rng_stream(2, NN_STREAM_TEST);
    for (int t = 0; t < 200; t++) { /* 0.0 is exact; the range is covered */
        float lo = -5.0f * nn_rng_uniform(&r), hi = 5.0f * nn_rng_uniform(&r) + 1e-3f;
        p = quant_params_asym(lo, hi, t % 2 ? QUANT_U8 : QUANT_S8);
        float z = 0.0f, back, ends[2] = {lo, hi};
        int8_t q;
        uint8_t qu[2];
        if (t % 2 == 0) {
            quant_quantize_s8(&z, 1, p, &q);
            quant_dequantize_s8(&q, 1, p, &back);
            ck_assert(back == 0.0f);
        } else {
            quant_quantize_u8(ends, 2, p, qu);
            ck_assert_float_eq_tol((qu[0] - p.zero) * p.scale, lo, p.scale);
            ck_assert_float_eq_tol((qu[1] - p.zero) * p.scale, hi, p.scale);
        }
    }
}
END_TEST

START_TEST(test_weights_and_bias)
{
    float w[3 * 4] = {0.5f, -1.0f, 0.25f, 0.0f, 0, 0, 0, 0, 2.0f, 1.0f, -2.0f, 0.01f};
    float sc[3];
    int8_t q[12];
    quant_weights_s8(w, 3, 4, 1, sc, q);
    ck_assert_float_eq_tol(sc[0], 1.0f / 127.0f, 1e-9f);
    ck_assert_float_eq(sc[1], 1.0f); /* all-zero row */
    ck_assert_int_eq(q[1], -127);
    ck_assert_int_eq(q[0], 64); /* 63.5 rounds away from zero */
    ck_assert_int_eq(q[8], 127);
    ck_assert_int_eq(q[10], -127); /* symmetric: never -128 */
    ck_assert_int_eq(q[4], 0);
    quant_weights_s8(w, 3, 4, 0, sc, q);
    ck_assert(sc[0] == sc[1] && sc[1] == sc[2]);
    ck_assert_float_eq_tol(sc[0], 2.0f / 127.0f, 1e-9f);
    ck_assert_int_eq(q[1], -64);
    float b[2] = {1.0f, -1e30f}, ws[2] = {0.5f, 0.5f};
    int32_t b32[2];
    quant_bias_s32(b, 2, 0.01f, ws, b32);
    ck_assert_int_eq(b32[0], 200);
    ck_assert_int_eq(b32[1], INT32_MIN); /* saturated */
}
END_TEST

START_TEST(test_quantize_round_trip)
{
    quant_params p = quant_params_asym(-2.0f, 3.0f, QUANT_S8);
    float x[7] = {-2.0f, -1.3f, 0.0f, 0.7f, 3.0f, 100.0f, -100.0f}, y[7];
    int8_t q[7];
    quant_quantize_s8(x, 7, p, q);
    quant_dequantize_s8(q, 7, p, y);
    for (int i = 0; i < 5; i++)
        ck_assert_float_eq_tol(y[i], x[i], p.scale * 0.5f + 1e-6f);
    ck_assert_int_eq(q[5], 127);
    ck_assert_int_eq(q[6], -128);
}
END_TEST

/* The fast quantizer is bit-identical to the reference, ties and specials too. */
START_TEST(test_quantize_fast_equals_ref)
{
    KDT_ISA_BEGIN(_i);
    nn_rng r = nn_rng_stream(9, NN_STREAM_TEST);
    enum { N = 4133 };
    static float x[N];
    static int8_t a[N], b[N];
    quant_params p = quant_params_asym(-1.7f, 2.3f, QUANT_S8);
    p.scale = 0.25f; /* exact ties below */
    for (int i = 0; i < N; i++) {
        switch (i % 5) {
        case 0: x[i] = 40.0f * (nn_rng_uniform(&r) - 0.5f); break;
        case 1: x[i] = 0.25f * ((float)((int)nn_rng_below(&r, 600) - 300) + 0.5f); break;
        case 2: x[i] = nextafterf(0.125f * (float)((int)nn_rng_below(&r, 200) - 100), 0.0f); break;
        case 3: x[i] = nn_rng_normal(&r) * 1e6f; break;
        default: x[i] = (float)((int)nn_rng_below(&r, 9) - 4) * 0.125f; break;
        }
    }
    x[7] = NAN, x[8] = INFINITY, x[9] = -INFINITY, x[10] = -0.0f, x[11] = 3e38f;
    quant_quantize_s8_ref(x, N, p, a);
    quant_quantize_s8(x, N, p, b);
    for (int i = 0; i < N; i++)
        ck_assert_msg(a[i] == b[i], "x %a: ref %d fast %d", (double)x[i], a[i], b[i]);
    ck_assert_int_eq(a[7], p.qmin);
    ck_assert_int_eq(a[8], p.qmax);
    float tie = 0.375f; /* 1.5 steps: away from zero */
    quant_params z0 = {.scale = 0.25f, .zero = 0, .qmin = -128, .qmax = 127};
    quant_quantize_s8(&tie, 1, z0, a);
    ck_assert_int_eq(a[0], 2);
    tie = -0.375f;
    quant_quantize_s8(&tie, 1, z0, a);
    ck_assert_int_eq(a[0], -2);
}
END_TEST

/* ---- observers ---------------------------------------------------------------------- */

START_TEST(test_minmax_observer)
{
    quant_minmax o;
    quant_minmax_init(&o);
    float a[3] = {0.5f, -2.0f, NAN}, b[2] = {7.25f, INFINITY};
    quant_minmax_update(&o, a, 3);
    quant_minmax_update(&o, b, 2);
    ck_assert(o.lo == -2.0f && o.hi == 7.25f);
    ck_assert_int_eq(o.count, 3);
}
END_TEST

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Percentile clips a single far outlier that min-max keeps; counts survive
 * the range doubling; quantiles match exact sorted ones within two bins. */
START_TEST(test_hist_percentile)
{
    kd_err e = {0};
    quant_hist *h = quant_hist_new(2048, &e);
    ck_assert_ptr_nonnull(h);
    nn_rng r = nn_rng_stream(3, NN_STREAM_TEST);
    enum { B = 1000, NB = 50 };
    float *all = malloc((B * NB + 1) * sizeof *all);
    for (int t = 0; t < NB; t++) {
        for (int i = 0; i < B; i++)
            all[t * B + i] = 0.1f + 0.3f * nn_rng_normal(&r);
        quant_hist_update(h, all + t * B, B);
    }
    float lo, hi, out = 40.0f;
    all[B * NB] = out;
    quant_hist_update(h, &out, 1); /* one outlier: the range doubles several times */
    uint64_t total = 0;
    for (int b = 0; b < h->nbins; b++)
        total += h->bins[b];
    ck_assert_int_eq(total, B * NB + 1);
    quant_hist_range(h, 100.0, &lo, &hi);
    ck_assert(hi == 40.0f);
    quant_hist_range(h, 99.9, &lo, &hi);
    qsort(all, B * NB + 1, sizeof *all, cmp_float);
    double bin = 2.0 * h->range / h->nbins;
    float want_lo = all[(int)(0.001 * (B * NB + 1))], want_hi = all[(int)(0.999 * (B * NB + 1))];
    ck_assert_msg(fabs(hi - want_hi) <= 2 * bin && fabs(lo - want_lo) <= 2 * bin,
                  "[%g, %g] vs [%g, %g], bin %g", lo, hi, want_lo, want_hi, bin);
    ck_assert(hi < 2.0f); /* the outlier is clipped */
    free(all);
    quant_hist_free(h);
    quant_hist_free(NULL);
}
END_TEST

START_TEST(test_hist_errors_and_edges)
{
    kd_err e = {0};
    ck_assert_ptr_null(quant_hist_new(18, &e));
    ck_assert_int_eq(e.code, KD_ECONFIG);
    ck_assert_ptr_null(quant_hist_new(8, &e));
    kd_alloc_fail_after(1);
    ck_assert_ptr_null(quant_hist_new(64, &e));
    ck_assert_int_eq(e.code, KD_ENOMEM);
    kd_alloc_fail_after(-1);
    quant_hist *h = quant_hist_new(64, &e);
    float lo, hi, z[4] = {0, 0, 0, 0}, c[2] = {-3.0f, 0.5f};
    quant_hist_range(h, 99.0, &lo, &hi);
    ck_assert(lo == 0.0f && hi == 0.0f);
    quant_hist_update(h, z, 4); /* all zero: no range yet */
    quant_hist_range(h, 99.0, &lo, &hi);
    ck_assert(lo == 0.0f && hi == 0.0f);
    quant_hist_update(h, c, 2);
    quant_hist_range(h, 99.99, &lo, &hi);
    ck_assert(lo >= -3.0f && hi <= 0.5f && lo < -2.5f && hi > 0.4f);
    quant_hist_free(h);
}
END_TEST

/* ---- fake quant ----------------------------------------------------------------------- */

START_TEST(test_fake_quant)
{
    float x[2 * 5] = {-1.0f, -0.26f, 0.0f, 0.51f, 9.0f, -1.0f, -0.26f, 0.0f, 0.51f, 9.0f}, y[10];
    float sc[2] = {0.5f, 0.25f};
    int32_t z[2] = {0, 2};
    quant_fake_forward(x, 2, 5, sc, z, 1, -4, 3, y);
    const float want[10] = {-1.0f, -0.5f, 0.0f, 0.5f, 1.5f, -1.0f, -0.25f, 0.0f, 0.25f, 0.25f};
    for (int i = 0; i < 10; i++)
        ck_assert_msg(y[i] == want[i], "fake quant %d: %g vs %g", i, y[i], want[i]);
    /* per-tensor uses scale[0], zero[0] everywhere; NULL zero is 0 */
    quant_fake_forward(x, 2, 5, sc, NULL, 0, -128, 127, y);
    ck_assert(y[9] == 9.0f && y[6] == -0.5f);
    float dy[10], dx[10];
    for (int i = 0; i < 10; i++)
        dy[i] = (float)(i + 1);
    quant_fake_backward(x, dy, 2, 5, sc, z, 1, -4, 3, dx);
    /* row 0: codes -2, -1, 0, 1 pass, 18 is blocked; row 1: codes -2, 1, 2 pass,
     * 4 and 38 are above qmax 3 */
    const float wantd[10] = {1, 2, 3, 4, 0, 6, 7, 8, 0, 0};
    for (int i = 0; i < 10; i++)
        ck_assert_msg(dx[i] == wantd[i], "STE %d: %g vs %g", i, dx[i], wantd[i]);
    float edge[2] = {-2.0f, 1.5f}, de[2], one[2] = {1, 1}; /* codes exactly -4 and 3 pass */
    quant_fake_backward(edge, one, 1, 2, sc, NULL, 0, -4, 3, de);
    ck_assert(de[0] == 1.0f && de[1] == 1.0f);
    edge[0] = -2.3f; /* code -5 */
    quant_fake_backward(edge, one, 1, 2, sc, NULL, 0, -4, 3, de);
    ck_assert(de[0] == 0.0f);
}
END_TEST

Suite *suite_compress_quant(void)
{
    Suite *s = suite_create("compress_quant");
    TCase *tc = tcase_create("quant");
    tcase_add_test(tc, test_multiplier_values);
    tcase_add_test(tc, test_multiplier_accuracy);
    tcase_add_test(tc, test_srdhm_rdbpot);
    tcase_add_test(tc, test_requant_saturation_and_zero_point);
    tcase_add_test(tc, test_params_asym);
    tcase_add_test(tc, test_weights_and_bias);
    tcase_add_test(tc, test_quantize_round_trip);
    KDT_ISA_LOOP(tc, test_quantize_fast_equals_ref);
    tcase_add_test(tc, test_minmax_observer);
    tcase_add_test(tc, test_hist_percentile);
    tcase_add_test(tc, test_hist_errors_and_edges);
    tcase_add_test(tc, test_fake_quant);
    suite_add_tcase(s, tc);
    return s;
}
