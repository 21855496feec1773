/* Thread teams: every part of every job runs exactly once, on as many
 * distinct threads as the team has, job after job (1,000 back to back) and
 * after the workers went to sleep; a NULL team runs the one part on the
 * caller; a bad size or no memory is an error, not a crash. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "../kdtest.h"

typedef struct {
    _Atomic int runs[8];
    pthread_t who[8];
    int nparts;
} job;

static void record(void *arg, int part, int nparts)
{
    job *j = arg;
    j->nparts = nparts;
    atomic_fetch_add(&j->runs[part], 1);
    j->who[part] = pthread_self();
}

static void run_once(nn_team *t, int expect_parts)
{
    job j;
    memset(&j, 0, sizeof j);
    nn_team_run(t, record, &j);
    ck_assert_int_eq(j.nparts, expect_parts);
    for (int p = 0; p < expect_parts; p++) {
        ck_assert_int_eq(atomic_load(&j.runs[p]), 1);
        for (int q = 0; q < p; q++)
            ck_assert_msg(!pthread_equal(j.who[p], j.who[q]), "parts %d and %d on one thread",
                          q, p);
    }
    ck_assert(pthread_equal(j.who[0], pthread_self())); /* the caller does part 0 */
}

START_TEST(test_team_parts)
{
    for (int n = 1; n <= 4; n++) {
        kd_err e = {0};
        nn_team *t = nn_team_new(n, &e);
        ck_assert_msg(t != NULL, "%s", e.msg);
        ck_assert_int_eq(nn_team_size(t), n);
        for (int i = 0; i < 1000; i++)
            run_once(t, n);
        usleep(30000); /* past the spin: the workers sleep, and wake for the next job */
        run_once(t, n);
        nn_team_free(t);
    }
    run_once(NULL, 1);
    ck_assert_int_eq(nn_team_size(NULL), 1);
}
END_TEST

/* The caller's own wait: a part that outlasts the spin window makes the
 * caller sleep on the done condition; it must wake for that part, every time. */
static void slow_part(void *arg, int part, int nparts)
{
    (void)nparts;
    if (part == 1)
        usleep(3000); /* > the 200 us spin */
    atomic_fetch_add((_Atomic int *)arg, 1);
}

START_TEST(test_team_caller_sleeps)
{
    nn_team *t = nn_team_new(2, NULL);
    ck_assert_ptr_nonnull(t);
    for (int i = 0; i < 50; i++) {
        _Atomic int done = 0;
        nn_team_run(t, slow_part, &done);
        ck_assert_int_eq(atomic_load(&done), 2);
    }
    nn_team_free(t);
}
END_TEST

/* nn_team_range: the parts tile [0, n) in order, start on 16-float blocks,
 * and are the same for the same counts. */
START_TEST(test_team_range)
{
    const size_t ns[] = {0, 1, 15, 16, 17, 1000, 153600};
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
        for (int np = 1; np <= 5; np++) {
            size_t next = 0;
            for (int p = 0; p < np; p++) {
                size_t lo, hi;
                nn_team_range(ns[a], p, np, &lo, &hi);
                ck_assert_uint_eq(lo, next);
                ck_assert(hi >= lo && hi <= ns[a]);
                ck_assert(lo % 16 == 0 || lo == ns[a]);
                next = hi;
            }
            ck_assert_uint_eq(next, ns[a]);
        }
}
END_TEST

START_TEST(test_team_errors)
{
    kd_err e = {0};
    ck_assert_ptr_null(nn_team_new(0, &e));
    ck_assert_int_eq(e.code, KD_ECONFIG);
    ck_assert_ptr_null(nn_team_new(NN_TEAM_MAX + 1, &e));
    for (long n = 0; n < 3; n++) {
        kd_alloc_fail_after(n);
        ck_assert_ptr_null(nn_team_new(2, &e));
        ck_assert_int_eq(e.code, KD_ENOMEM);
    }
    kd_alloc_fail_after(-1);
    nn_team_free(NULL);
}
END_TEST

Suite *suite_nn_team(void)
{
    Suite *s = suite_create("nn_team");
    TCase *t = tcase_create("team");
    tcase_add_test(t, test_team_parts);
    tcase_add_test(t, test_team_errors);
    tcase_add_test(t, test_team_caller_sleeps);
    tcase_add_test(t, test_team_range);
    suite_add_tcase(s, t);
    return s;
}
