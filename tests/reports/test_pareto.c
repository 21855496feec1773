/* The accuracy-vs-size Pareto front on hand-made cases, and the choice of the
 * comparison baseline. */
#include <check.h>
#include <string.h>

#include "../kdtest.h"
#include "fixture.h"

START_TEST(pareto_hand_made)
{
    /*        A     B     C     D     E     F     G     H     I */
    double size[] = {100, 200, 150, 300, 50, 400, -1, 200, 400};
    double acc[] = {0.80, 0.85, 0.79, 0.85, 0.70, 0.90, 0.99, 0.85, 0.89};
    /* C: A is smaller and better; D: B is as good and smaller; G: not
     * measured; H equals B (both stay); I: F is as small and better */
    int want[] = {1, 1, 0, 0, 1, 1, 0, 1, 0}, front[9];
    ck_assert_int_eq(rep_pareto(size, acc, 9, front), 5);
    for (int i = 0; i < 9; i++)
        ck_assert_msg(front[i] == want[i], "point %c: %d", 'A' + i, front[i]);
}
END_TEST

START_TEST(pareto_edges)
{
    int front[3];
    ck_assert_int_eq(rep_pareto(NULL, NULL, 0, front), 0);
    double s1[] = {10}, a1[] = {0.5};
    ck_assert_int_eq(rep_pareto(s1, a1, 1, front), 1);
    double s2[] = {10, 20, 30}, a2[] = {0.9, 0.8, -1}; /* the smallest is also the best */
    ck_assert_int_eq(rep_pareto(s2, a2, 3, front), 1);
    ck_assert(front[0] && !front[1] && !front[2]);
    double s3[] = {10, 20, 30}, a3[] = {0.7, 0.8, 0.9}; /* a strict trade-off: all */
    ck_assert_int_eq(rep_pareto(s3, a3, 3, front), 3);
}
END_TEST

START_TEST(baseline_choice)
{
    rep_row rows[4];
    rep_row_init(&rows[0], "a/small/distilled", "student");
    rep_row_init(&rows[1], "a/teacher", "teacher");
    rep_row_init(&rows[2], "b/teacher", "teacher");
    rep_row_init(&rows[3], "b/small/distilled", "student");
    ck_assert_int_eq(rep_compare_baseline(rows, 4, NULL), 1);      /* first teacher */
    ck_assert_int_eq(rep_compare_baseline(rows, 4, "b/teacher"), 2); /* exact */
    ck_assert_int_eq(rep_compare_baseline(rows, 4, "b"), 2);       /* a run's teacher */
    ck_assert_int_eq(rep_compare_baseline(rows, 4, "teacher"), -1); /* ambiguous suffix */
    ck_assert_int_eq(rep_compare_baseline(rows, 4, "nothing"), -1);
    rep_row_init(&rows[1], "a/teacher/int8", "compressed");
    ck_assert_int_eq(rep_compare_baseline(rows, 4, "int8"), 1);    /* unique suffix */
    ck_assert_int_eq(rep_compare_baseline(rows, 1, NULL), 0);      /* no teacher: first */
    ck_assert_int_eq(rep_compare_baseline(rows, 0, NULL), -1);
}
END_TEST

START_TEST(compare_table_and_csv)
{
    rep_row rows[RFX_NROWS];
    rfx_rows(rows);
    kd_buf b = {0};
    rep_compare_table(rows, RFX_NROWS, 1, REP_TABLE_CSV, &b); /* baseline: the scratch student */
    kd_buf_put(&b, "", 1);
    const char *csv = (const char *)b.p;
    ck_assert_ptr_nonnull(strstr(csv, "name,role,accuracy,delta_acc_pts,"));
    /* teacher vs scratch: +4.16 points, 2143812/204076 = 10.5049 x larger => 0.0952 */
    ck_assert_msg(strstr(csv, "teacher,teacher,0.8947,4.1600,535818,535818,2143812,0.0952,")
                  != NULL, "%s", csv);
    ck_assert_ptr_nonnull(strstr(csv, "small/scratch,student,0.8531,0.0000,"));
    kd_buf_free(&b);
    rep_compare_table(rows, RFX_NROWS, 0, REP_TABLE_MD, &b);
    kd_buf_put(&b, "", 1);
    ck_assert_ptr_nonnull(strstr((const char *)b.p, "| Δ vs baseline |"));
    ck_assert_ptr_nonnull(strstr((const char *)b.p, "| small/distilled/int4 | compressed | "
                                                     "84.52% | -4.95 pts | 50,890 |"));
    kd_buf_free(&b);
    rep_compare_table(rows, RFX_NROWS, 0, REP_TABLE_TEXT, &b);
    kd_buf_put(&b, "", 1);
    ck_assert_ptr_nonnull(strstr((const char *)b.p, "78.53×"));
    kd_buf_free(&b);
}
END_TEST

Suite *suite_reports_pareto(void)
{
    Suite *s = suite_create("reports_pareto");
    TCase *t = tcase_create("pareto");
    tcase_add_test(t, pareto_hand_made);
    tcase_add_test(t, pareto_edges);
    tcase_add_test(t, baseline_choice);
    tcase_add_test(t, compare_table_and_csv);
    suite_add_tcase(s, t);
    return s;
}
