/* RNG streams: reproducibility, stream independence, nn_rng_below's range and
 * uniformity (chi-square bounds loose enough for a good generator, tight
 * enough for a broken one), shuffles, and the normal's moments. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../kdtest.h"

/* Pearson chi-square of counts against equal expected counts. */
static double chi2(const long *count, int k, long total)
{
    double exp_ = (double)total / k, s = 0;
    for (int i = 0; i < k; i++)
        s += (count[i] - exp_) * (count[i] - exp_) / exp_;
    return s;
}

START_TEST(test_same_seed_same_sequence)
{
    nn_rng a = nn_rng_stream(42, NN_STREAM_SHUFFLE), b = nn_rng_stream(42, NN_STREAM_SHUFFLE);
    for (int i = 0; i < 1000; i++)
        ck_assert(nn_rng_u64(&a) == nn_rng_u64(&b));
    /* a copy continues the same sequence */
    nn_rng c = a;
    ck_assert(nn_rng_u64(&a) == nn_rng_u64(&c));
}
END_TEST

START_TEST(test_streams_and_seeds_differ)
{
    const uint64_t streams[] = {NN_STREAM_INIT, NN_STREAM_SHUFFLE, NN_STREAM_DROPOUT,
                                NN_STREAM_SPLIT, NN_STREAM_DATA, NN_STREAM_TEST,
                                NN_STREAM_SHUFFLE | (1u << 8), NN_STREAM_SHUFFLE | (2u << 8)};
    const int ns = sizeof streams / sizeof *streams;
    uint64_t first[2][8][64];
    for (int seed = 0; seed < 2; seed++)
        for (int s = 0; s < ns; s++) {
            nn_rng r = nn_rng_stream((uint64_t)seed, streams[s]);
            for (int i = 0; i < 64; i++)
                first[seed][s][i] = nn_rng_u64(&r);
        }
    /* no two (seed, stream) pairs share any of their first 64 outputs */
    for (int a = 0; a < 2 * ns; a++)
        for (int b = a + 1; b < 2 * ns; b++)
            for (int i = 0; i < 64; i++)
                for (int j = 0; j < 64; j++)
                    ck_assert_msg(first[a / ns][a % ns][i] != first[b / ns][b % ns][j],
                                  "pairs %d and %d share an output", a, b);
    /* seed 0 stream 0 is not a degenerate all-zero state */
    nn_rng z = nn_rng_stream(0, 0);
    ck_assert(nn_rng_u64(&z) != 0 || nn_rng_u64(&z) != 0);
}
END_TEST

START_TEST(test_below_range_and_uniform)
{
    nn_rng r = nn_rng_stream(7, NN_STREAM_TEST);
    const uint32_t ns[] = {1, 2, 3, 7, 10, 1000, 0x80000001u, 0xffffffffu};
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++)
        for (int i = 0; i < 2000; i++)
            ck_assert_uint_lt(nn_rng_below(&r, ns[k]), ns[k]);
    /* 10 buckets, 100k draws: chi-square with 9 dof has mean 9; 40 is p ~ 1e-5 */
    long count[10] = {0};
    for (int i = 0; i < 100000; i++)
        count[nn_rng_below(&r, 10)]++;
    double c = chi2(count, 10, 100000);
    ck_assert_msg(c < 40, "chi2 %.1f", c);
    /* successive pairs over 10x10 cells (99 dof, mean 99, sd 14) */
    long pairs[100] = {0};
    for (int i = 0; i < 100000; i++) {
        uint32_t a = nn_rng_below(&r, 10), b = nn_rng_below(&r, 10);
        pairs[a * 10 + b]++;
    }
    c = chi2(pairs, 100, 100000);
    ck_assert_msg(c < 185, "pair chi2 %.1f", c);
    /* a large n where a modulo would be biased: the top half must get its share */
    long top = 0;
    const uint32_t big = 0xC0000000u; /* 3 * 2^30 */
    for (int i = 0; i < 100000; i++)
        top += nn_rng_below(&r, big) >= big / 2;
    ck_assert_msg(labs(top - 50000) < 1000, "top half %ld of 100000", top);
}
END_TEST

START_TEST(test_uniform_float)
{
    nn_rng r = nn_rng_stream(3, NN_STREAM_TEST);
    double s = 0;
    long count[16] = {0};
    for (int i = 0; i < 100000; i++) {
        float u = nn_rng_uniform(&r);
        ck_assert(u >= 0.0f && u < 1.0f);
        s += u;
        count[(int)(u * 16)]++;
    }
    ck_assert_msg(fabs(s / 100000 - 0.5) < 0.005, "mean %g", s / 100000);
    ck_assert_msg(chi2(count, 16, 100000) < 55, "chi2 %.1f", chi2(count, 16, 100000));
}
END_TEST

static int is_permutation(const int *a, int n)
{
    char *seen = calloc((size_t)n + 1, 1);
    int ok = 1;
    for (int i = 0; i < n; i++) {
        if (a[i] < 0 || a[i] >= n || seen[a[i]])
            ok = 0;
        else
            seen[a[i]] = 1;
    }
    free(seen);
    return ok;
}

START_TEST(test_shuffle)
{
    enum { N = 500 };
    int a[N], b[N], c[N];
    for (int i = 0; i < N; i++)
        a[i] = b[i] = c[i] = i;
    nn_rng r1 = nn_rng_stream(9, NN_STREAM_SHUFFLE), r2 = nn_rng_stream(9, NN_STREAM_SHUFFLE);
    nn_rng r3 = nn_rng_stream(10, NN_STREAM_SHUFFLE);
    nn_rng_shuffle(&r1, a, N);
    nn_rng_shuffle(&r2, b, N);
    nn_rng_shuffle(&r3, c, N);
    ck_assert(is_permutation(a, N));
    ck_assert(is_permutation(c, N));
    ck_assert(memcmp(a, b, sizeof a) == 0);
    ck_assert(memcmp(a, c, sizeof a) != 0);
    int fixed = 0;
    for (int i = 0; i < N; i++)
        fixed += a[i] == i;
    ck_assert_int_lt(fixed, 10); /* expected 1 */
    /* degenerate sizes */
    int one = 5;
    nn_rng_shuffle(&r1, &one, 1);
    ck_assert_int_eq(one, 5);
    nn_rng_shuffle(&r1, NULL, 0);
    /* every permutation of 3 equally often (Fisher-Yates, not Sattolo):
     * 6 cells, 5 dof, 30 is p ~ 2e-5 */
    long count[6] = {0};
    for (int t = 0; t < 60000; t++) {
        int p[3] = {0, 1, 2};
        nn_rng_shuffle(&r1, p, 3);
        count[p[0] * 2 + (p[1] > p[2])]++;
    }
    ck_assert_msg(chi2(count, 6, 60000) < 30, "chi2 %.1f", chi2(count, 6, 60000));
}
END_TEST

/* The dropout mask is the stream's draws, two per u64 (low half first), each
 * kept (scale) at or above the threshold: checked draw by draw, odd length. */
START_TEST(test_keep_mask_is_the_stream)
{
    enum { M = 1001 };
    static float mask[M];
    const uint32_t thresh = (uint32_t)(0.3 * 4294967296.0);
    nn_rng a = nn_rng_stream(7, 3), b = a;
    nn_rng_keep_mask(&a, mask, M, thresh, 1.25f);
    int kept = 0;
    for (int i = 0; i < M; i += 2) {
        uint64_t x = nn_rng_u64(&b);
        for (int h = 0; h < 2 && i + h < M; h++) {
            uint32_t u = h ? (uint32_t)(x >> 32) : (uint32_t)x;
            ck_assert_float_eq(mask[i + h], u >= thresh ? 1.25f : 0.0f);
            ck_assert(!signbit(mask[i + h]));
            kept += mask[i + h] != 0;
        }
    }
    ck_assert_uint_eq(nn_rng_u64(&a), nn_rng_u64(&b)); /* the stream advanced alike */
    ck_assert_int_gt(kept, 600); /* about 70% kept */
    ck_assert_int_lt(kept, 800);
}
END_TEST

START_TEST(test_normal_moments)
{
    nn_rng r = nn_rng_stream(5, NN_STREAM_TEST);
    const int n = 100000;
    double s = 0, s2 = 0, s4 = 0;
    long within1 = 0;
    for (int i = 0; i < n; i++) {
        double x = nn_rng_normal(&r);
        ck_assert(isfinite(x));
        s += x;
        s2 += x * x;
        s4 += x * x * x * x;
        within1 += fabs(x) < 1;
    }
    double mean = s / n, var = s2 / n - mean * mean;
    /* 6 standard errors: 0.019 for the mean, 0.027 for the variance */
    ck_assert_msg(fabs(mean) < 0.02, "mean %g", mean);
    ck_assert_msg(fabs(var - 1) < 0.03, "var %g", var);
    ck_assert_msg(fabs(s4 / n - 3) < 0.15, "fourth moment %g", s4 / n); /* not uniform */
    ck_assert_msg(fabs((double)within1 / n - 0.6827) < 0.01, "P(|x|<1) %g",
                  (double)within1 / n);
}
END_TEST

Suite *suite_nn_rng(void)
{
    Suite *s = suite_create("nn_rng");
    TCase *t = tcase_create("rng");
    tcase_add_test(t, test_same_seed_same_sequence);
    tcase_add_test(t, test_streams_and_seeds_differ);
    tcase_add_test(t, test_below_range_and_uniform);
    tcase_add_test(t, test_uniform_float);
    tcase_add_test(t, test_shuffle);
    tcase_add_test(t, test_normal_moments);
    tcase_add_test(t, test_keep_mask_is_the_stream);
    suite_add_tcase(s, t);
    return s;
}
