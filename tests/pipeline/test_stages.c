/* The run's job counter and its estimate of the time left (pipeline/stages.c). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../pipeline/internal.h"

static char *read_all(FILE *f)
{
    long n = ftell(f);
    char *s = calloc(1, (size_t)n + 1);
    ck_assert_ptr_nonnull(s);
    rewind(f);
    ck_assert_int_eq((long)fread(s, 1, (size_t)n, f), n);
    return s;
}

START_TEST(counter_and_time_left)
{
    double w[4] = {1, 1, 2, 0.5};
    run_ctx r;
    memset(&r, 0, sizeof r);
    r.job_work = w;
    r.njobs = 4;
    r.job = -1;
    r.log.file = tmpfile();
    ck_assert_ptr_nonnull(r.log.file);
    r.jobs_t0 = kd_now();
    ck_assert_str_eq(pl_stage_begin(&r, "teacher"), "[1/4] teacher");
    /* the first job took 10 s for 1 unit: 3.5 units are left, about 35 s */
    r.jobs_t0 = kd_now() - 10;
    ck_assert_str_eq(pl_stage_begin(&r, "%s/%s", "s", "scratch"), "[2/4] s/scratch");
    /* a job that turned out cheaper (a cached teacher) weighs what it cost */
    r.job_work[1] = 0.5;
    pl_stage_rework(&r, 1.5);
    ck_assert(r.job_work[1] == 1.5);
    r.jobs_t0 = kd_now() - 25;
    pl_stage_begin(&r, "p"); /* 2.5 units in 25 s: 2.5 left, about 25 s */
    pl_stage_begin(&r, "report");
    pl_stage_begin(&r, "more than planned"); /* stays at the last job */
    char *log = read_all(r.log.file);
    fclose(r.log.file);
    ck_assert_msg(strstr(log, "[1/4] teacher\n") != NULL, "%s", log);
    ck_assert_msg(strstr(log, "[2/4] s/scratch (about 00:35 left)\n") != NULL, "%s", log);
    ck_assert_msg(strstr(log, "[3/4] p (about 00:25 left)\n") != NULL, "%s", log);
    ck_assert_msg(strstr(log, "[4/4] report (about 00:0") != NULL, "%s", log);
    ck_assert_msg(strstr(log, "[4/4] more than planned") != NULL, "%s", log);
    free(log);
}
END_TEST

Suite *suite_pipeline_stages(void)
{
    Suite *s = suite_create("pipeline_stages");
    TCase *t = tcase_create("pipeline_stages");
    tcase_add_test(t, counter_and_time_left);
    suite_add_tcase(s, t);
    return s;
}
