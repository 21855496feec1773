/* dist/ on 2 ranks: point to point, broadcast, the two sums (the ordered
 * one equal bit for bit to adding the ranks' vectors in rank order). */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "../kdtest.h"
#include "mpitest.h"

START_TEST(two_ranks)
{
    ck_assert_int_eq(dist_size(kdt_mpi()), 2);
    ck_assert(dist_built_with_mpi());
    ck_assert(dist_launched());
}
END_TEST

START_TEST(send_recv_and_probe)
{
    dist_comm *d = kdt_mpi();
    kd_err e;
    int rank = dist_rank(d), other = 1 - rank, ready = 1;
    ck_assert_int_eq(dist_probe(d, other, 77, &ready, &e), KD_OK);
    ck_assert_int_eq(ready, 0); /* nothing sent yet */
    ck_assert_int_eq(dist_barrier(d, &e), KD_OK);
    char msg[64];
    snprintf(msg, sizeof msg, "from rank %d", rank);
    ck_assert_int_eq(dist_send(d, other, 77, msg, strlen(msg) + 1, &e), KD_OK);
    void *p = NULL;
    size_t n = 0;
    int src = -1, tag = -1;
    ck_assert_int_eq(dist_recv(d, -1, -1, &p, &n, &src, &tag, &e), KD_OK);
    ck_assert_int_eq(src, other);
    ck_assert_int_eq(tag, 77);
    snprintf(msg, sizeof msg, "from rank %d", other);
    ck_assert_str_eq(p, msg);
    ck_assert_uint_eq(n, strlen(msg) + 1);
    kd_free(p);
    /* an empty message is a message */
    ck_assert_int_eq(dist_send(d, other, 78, NULL, 0, &e), KD_OK);
    ck_assert_int_eq(dist_recv(d, other, 78, &p, &n, NULL, NULL, &e), KD_OK);
    ck_assert_uint_eq(n, 0);
    kd_free(p);
}
END_TEST

START_TEST(bcast_bytes_and_floats)
{
    dist_comm *d = kdt_mpi();
    kd_err e;
    char root_msg[] = "the teacher's bytes";
    void *p = dist_rank(d) == 0 ? root_msg : NULL;
    size_t n = dist_rank(d) == 0 ? sizeof root_msg : 0;
    ck_assert_int_eq(dist_bcast(d, &p, &n, 0, &e), KD_OK);
    ck_assert_uint_eq(n, sizeof root_msg);
    ck_assert_str_eq(p, root_msg);
    if (dist_rank(d) != 0)
        kd_free(p);
    float x[3] = {0};
    if (dist_rank(d) == 1)
        x[0] = 1.5f, x[1] = -2, x[2] = 3;
    ck_assert_int_eq(dist_bcast_floats(d, x, 3, 1, &e), KD_OK);
    ck_assert(x[0] == 1.5f && x[1] == -2 && x[2] == 3);
}
END_TEST

/* Values whose float sum depends on the order, so an ordered sum that is
 * not rank 0 + rank 1 would show. */
static void fill(float *x, int n, int rank)
{
    for (int i = 0; i < n; i++)
        x[i] = (rank ? 1e-3f : 1.0f) * (float)((i * 2654435761u) % 1000) / 7.0f + rank * 1e7f;
}

START_TEST(sums)
{
    dist_comm *d = kdt_mpi();
    kd_err e;
    enum { N = 1000 };
    float x[N], y[N], a[N], b[N];
    fill(x, N, dist_rank(d));
    memcpy(y, x, sizeof x);
    fill(a, N, 0);
    fill(b, N, 1);
    ck_assert_int_eq(dist_sum_ordered(d, x, N, &e), KD_OK);
    for (int i = 0; i < N; i++) {
        float want = a[i] + b[i];
        ck_assert_msg(x[i] == want, "element %d: %.9g, rank 0 + rank 1 is %.9g", i, x[i], want);
    }
    ck_assert_int_eq(dist_sum_fast(d, y, N, &e), KD_OK);
    for (int i = 0; i < N; i++)
        ck_assert_float_eq_tol(y[i], a[i] + b[i], 1e-6f * (1 + fabsf(a[i] + b[i])));
    int k = dist_rank(d) + 1;
    ck_assert_int_eq(dist_sum_int(d, &k, &e), KD_OK);
    ck_assert_int_eq(k, 3);
    double v[2] = {0.5, (double)dist_rank(d)};
    ck_assert_int_eq(dist_sum_double(d, v, 2, &e), KD_OK);
    ck_assert(v[0] == 1.0 && v[1] == 1.0);
}
END_TEST

/* The single-process face of the same calls: what the rest of the code sees
 * in a run without mpirun. */
START_TEST(null_comm_is_one_process)
{
    kd_err e;
    float x[2] = {1, 2};
    ck_assert_int_eq(dist_rank(NULL), 0);
    ck_assert_int_eq(dist_size(NULL), 1);
    ck_assert_int_eq(dist_sum_ordered(NULL, x, 2, &e), KD_OK);
    ck_assert(x[0] == 1 && x[1] == 2);
    ck_assert_int_eq(dist_send(NULL, 1, 1, x, 1, &e), KD_ERUNTIME);
}
END_TEST

Suite *suite_mpi_dist(void)
{
    Suite *s = suite_create("mpi_dist");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, two_ranks);
    tcase_add_test(tc, send_recv_and_probe);
    tcase_add_test(tc, bcast_bytes_and_floats);
    tcase_add_test(tc, sums);
    tcase_add_test(tc, null_comm_is_one_process);
    suite_add_tcase(s, tc);
    return s;
}
