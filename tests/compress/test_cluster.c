/* Weight sharing's building blocks: 1-D k-means and the entropy coder. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../compress/kernels/kernels.h"
#include "../kdtest.h"

START_TEST(test_kmeans_finds_groups)
{
    const float at[3] = {-1.0f, 0.5f, 2.0f};
    enum { N = 3000 };
    float *v = malloc(sizeof(float) * N), c[CLUSTER_MAX];
    double mean[3] = {0, 0, 0};
    nn_rng r = nn_rng_stream(3, 1);
    for (int i = 0; i < N; i++) {
        v[i] = at[i % 3] + 0.01f * nn_rng_normal(&r);
        mean[i % 3] += v[i] / (N / 3);
    }
    for (int init = 0; init < 3; init++) {
        kd_err e = {0};
        int k = cluster_kmeans_1d(v, N, 3, (cluster_init)init, 7, c, &e);
        ck_assert_msg(k == 3, "init %d: %d clusters (%s)", init, k, e.msg);
        for (int j = 0; j < 3; j++)
            ck_assert_msg(fabs(c[j] - mean[j]) < 1e-5, "init %d: centroid %d at %g, mean %g",
                          init, j, c[j], mean[j]);
    }
    /* more clusters than distinct values: the empty ones are dropped */
    float two[6] = {1, 1, 1, 3, 3, 3};
    kd_err e = {0};
    ck_assert_int_eq(cluster_kmeans_1d(two, 6, 16, CLUSTER_INIT_LINEAR, 1, c, &e), 2);
    ck_assert_float_eq(c[0], 1.0f);
    ck_assert_float_eq(c[1], 3.0f);
    /* the same seed gives the same k-means++ centroids */
    float c2[CLUSTER_MAX];
    int k1 = cluster_kmeans_1d(v, N, 16, CLUSTER_INIT_KMEANSPP, 5, c, &e);
    int k2 = cluster_kmeans_1d(v, N, 16, CLUSTER_INIT_KMEANSPP, 5, c2, &e);
    ck_assert_int_eq(k1, k2);
    ck_assert_int_eq(memcmp(c, c2, sizeof(float) * k1), 0);
    free(v);
}
END_TEST

START_TEST(test_kmeans_bad_input)
{
    float v[4] = {0, 1, 2, NAN}, c[CLUSTER_MAX];
    kd_err e = {0};
    ck_assert_int_lt(cluster_kmeans_1d(v, 3, 1, CLUSTER_INIT_LINEAR, 0, c, &e), 0);
    ck_assert_int_lt(cluster_kmeans_1d(v, 3, 257, CLUSTER_INIT_LINEAR, 0, c, &e), 0);
    ck_assert_int_lt(cluster_kmeans_1d(v, 0, 4, CLUSTER_INIT_LINEAR, 0, c, &e), 0);
    ck_assert_int_lt(cluster_kmeans_1d(v, 4, 4, CLUSTER_INIT_LINEAR, 0, c, &e), 0);
    ck_assert_int_eq(e.code, KD_EFORMAT);
}
END_TEST

START_TEST(test_nearest)
{
    const float c[4] = {-1.0f, 0.0f, 0.5f, 4.0f};
    ck_assert_int_eq(cluster_nearest(-9.0f, c, 4), 0);
    ck_assert_int_eq(cluster_nearest(-0.4f, c, 4), 1);
    ck_assert_int_eq(cluster_nearest(0.25f, c, 4), 1); /* a tie goes to the lower */
    ck_assert_int_eq(cluster_nearest(0.3f, c, 4), 2);
    ck_assert_int_eq(cluster_nearest(2.3f, c, 4), 3);
    ck_assert_int_eq(cluster_nearest(99.0f, c, 4), 3);
}
END_TEST

/* Round trips on adversarial distributions, and the size of a 4-bit stream. */
START_TEST(test_entropy_round_trips)
{
    enum { N = 100000 };
    uint8_t *src = malloc(N), *back = malloc(N);
    nn_rng r = nn_rng_stream(11, 1);
    for (int kind = 0; kind < 6; kind++) {
        size_t n = kind == 4 ? 0 : N;
        for (size_t i = 0; i < n; i++)
            src[i] = kind == 0 ? 0                              /* all one symbol */
                     : kind == 1 ? (uint8_t)i                   /* all 256 symbols, uniform */
                     : kind == 2 ? (uint8_t)nn_rng_below(&r, 256) /* random bytes */
                     : kind == 5 && i >= 250 ? src[i - 250] /* 4-bit symbols, repeating */
                                 : (uint8_t)nn_rng_below(&r, 16); /* 4-bit symbols */
        kd_buf b = {0};
        kd_err e = {0};
        entropy_encode(&b, src, n);
        ck_assert(!b.failed);
        kd_rd rd = {.p = b.p, .len = b.len, .ok = 1};
        ck_assert_msg(entropy_decode(&rd, back, n, "test", &e) == KD_OK, "kind %d: %s", kind, e.msg);
        ck_assert_int_eq(rd.pos, b.len);
        ck_assert_int_eq(memcmp(src, back, n), 0);
        if (kind == 0) /* Huffman's floor: one bit a symbol */
            ck_assert_msg(b.len <= N / 8 + 64, "one symbol coded in %zu bytes", b.len);
        if (kind == 3)                         /* 4 bits of entropy a byte */
            ck_assert_msg(b.len < N / 2 + N / 50, "4-bit stream coded in %zu bytes", b.len);
        if (kind == 5) /* 250 bytes repeated (rows pruned in blocks): LZ77's matches */
            ck_assert_msg(b.len < N / 20, "a repeating stream coded in %zu bytes", b.len);
        /* asking for another length is refused */
        if (n) {
            kd_rd r2 = {.p = b.p, .len = b.len, .ok = 1};
            ck_assert_int_eq(entropy_decode(&r2, back, n - 1, "test", &e), KD_EFORMAT);
            kd_rd r3 = {.p = b.p, .len = b.len - 1, .ok = 1}; /* truncated */
            ck_assert_int_eq(entropy_decode(&r3, back, n, "test", &e), KD_EFORMAT);
        }
        kd_buf_free(&b);
    }
    free(src);
    free(back);
}
END_TEST

/* Every byte of a small coded stream flipped: refused or decoded to exactly
 * the asked length, never past the buffer (ASan watches). */
START_TEST(test_entropy_byte_flips)
{
    uint8_t src[300], back[300];
    for (int i = 0; i < 300; i++)
        src[i] = (uint8_t)(i * 7 % 13);
    kd_buf b = {0};
    kd_err e = {0};
    entropy_encode(&b, src, sizeof src);
    ck_assert(!b.failed);
    int refused = 0;
    for (size_t i = 0; i < b.len; i++)
        for (int bit = 0; bit < 8; bit += 3) {
            b.p[i] ^= (uint8_t)(1 << bit);
            kd_rd rd = {.p = b.p, .len = b.len, .ok = 1};
            refused += entropy_decode(&rd, back, sizeof back, "test", &e) != KD_OK;
            b.p[i] ^= (uint8_t)(1 << bit);
        }
    ck_assert_int_gt(refused, 0);
    kd_buf_free(&b);
}
END_TEST

Suite *suite_compress_cluster(void)
{
    Suite *s = suite_create("compress_cluster");
    TCase *t = tcase_create("core");
    tcase_add_test(t, test_kmeans_finds_groups);
    tcase_add_test(t, test_kmeans_bad_input);
    tcase_add_test(t, test_nearest);
    tcase_add_test(t, test_entropy_round_trips);
    tcase_add_test(t, test_entropy_byte_flips);
    suite_add_tcase(s, t);
    return s;
}
