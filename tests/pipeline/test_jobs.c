/* The run cut into jobs for MPI ranks (pipeline/jobs.c): dependencies and
 * the priority rank 0 hands ready jobs out by. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "../../pipeline/internal.h"

/* Student s (scratch + one distilled mode, one seed); variant v from s's
 * distilled model; variant w from the teacher.  Weights (the stages' list,
 * teacher first): s/scratch 1, s/distilled 2, v 4, w 3. */
START_TEST(priority_is_cost_plus_the_longest_chain_waiting)
{
    exp_spec *s = calloc(1, sizeof *s);
    ck_assert_ptr_nonnull(s);
    s->nstudents = 1;
    s->students[0].nmodes = 1;
    s->students[0].nseeds = 1;
    s->students[0].teacher_student = -1;
    s->nvariants = 2;
    s->variants[0].source_kind = CFG_SRC_STUDENT;
    s->variants[0].source_student = 0;
    s->variants[0].nseeds = 1;
    s->variants[1].source_kind = CFG_SRC_TEACHER;
    s->variants[1].nseeds = 1;
    double w[] = {9, 1, 2, 4, 3, 0.2}; /* teacher, the 4 jobs, the report */
    run_ctx r;
    memset(&r, 0, sizeof r);
    r.spec = s;
    r.job_work = w;
    r.njobs = 6;
    kd_err e;
    ck_assert_int_eq(pl_jobs_plan(&r, &e), KD_OK);
    ck_assert_int_eq(r.npj, 4);
    ck_assert_int_eq(r.jobs[2].dep, 1); /* v waits for s/distilled */
    ck_assert(r.jobs[0].prio == 1);     /* s/scratch: nothing waits for it */
    ck_assert(r.jobs[1].prio == 6);     /* s/distilled 2 + v 4 */
    ck_assert(r.jobs[2].prio == 4);
    ck_assert(r.jobs[3].prio == 3);
    pl_jobs_free(&r);
    /* a worker's plan has no weights: every priority 0, the list's order */
    memset(&r, 0, sizeof r);
    r.spec = s;
    ck_assert_int_eq(pl_jobs_plan(&r, &e), KD_OK);
    for (int i = 0; i < r.npj; i++)
        ck_assert(r.jobs[i].prio == 0);
    pl_jobs_free(&r);
    free(s);
}
END_TEST

Suite *suite_pipeline_jobs(void)
{
    Suite *s = suite_create("pipeline_jobs");
    TCase *t = tcase_create("pipeline_jobs");
    tcase_add_test(t, priority_is_cost_plus_the_longest_chain_waiting);
    suite_add_tcase(s, t);
    return s;
}
