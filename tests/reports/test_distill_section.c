/* reports/distill_section.c: each mode's gain over scratch paired seed by
 * seed, its difference from plain KD against the pooled sd, the epoch-time
 * ratio, and the section and dot plot they make in a report. */
#include <check.h>
#include <math.h>
#include <string.h>

#include "../../reports/internal.h"
#include "../kdtest.h"
#include "fixture.h"

#define TOL 1e-6

static void student(rep_row *r, const char *name, const char *seeds, const char *acc,
                    double mean, double epoch_s)
{
    rep_row_init(r, name, "student");
    r->accuracy = mean;
    rep_row_str(r, "seed_list", seeds);
    rep_row_str(r, "accuracy_per_seed", acc);
    if (epoch_s > 0)
        rep_row_num(r, "epoch_seconds", epoch_s);
}

/* mlp: scratch 89.0 ± 0.2; kd 89.5 ± 0.1 (+0.5 ± 0.1); kd-std 89.5 ± 0.1
 * (+0.5 ± 0.265, level with kd); dist 89.97 ± 0.115 (seeds listed 3 1 2:
 * +0.967 ± 0.115, +0.467 over kd with pooled sd 0.108: beats it).  Around
 * them: a teacher, a compressed variant and a student without scratch. */
static int rows_fixture(rep_row *rows)
{
    int n = 0;
    rep_row_init(&rows[n++], "teacher", "teacher");
    student(&rows[n++], "mlp/scratch", "1 2 3", "0.8900 0.8920 0.8880", 0.89, 2.0);
    student(&rows[n], "mlp/kd", "1 2 3", "0.8950 0.8960 0.8940", 0.895, 2.4);
    rep_row_str(&rows[n], "method", "kd");
    rep_row_num(&rows[n++], "temperature", 4);
    student(&rows[n], "mlp/kd-std", "1 2 3", "0.8960 0.8940 0.8950", 0.895, 2.2);
    rep_row_str(&rows[n], "method", "kd");
    rep_row_num(&rows[n++], "standardize", 1);
    student(&rows[n], "mlp/dist", "3 1 2", "0.8990 0.8990 0.9010", 0.8997, 0);
    rep_row_str(&rows[n++], "method", "dist");
    rep_row_init(&rows[n], "mlp/kd/int8", "compressed");
    rows[n++].accuracy = 0.5;
    student(&rows[n++], "lonely/kd", "1", "0.8", 0.8, 1);
    return n;
}

START_TEST(distill_lines_paired_and_pooled)
{
    rep_row rows[8];
    int n = rows_fixture(rows);
    rep_distill_line l[8];
    ck_assert_int_eq(rep_distill_lines(rows, n, l, 8), 4);
    ck_assert(l[0].scratch && !strcmp(l[0].student, "mlp") && !strcmp(l[0].mode, "scratch"));
    ck_assert(fabs(l[0].mean - 89.0) < TOL && fabs(l[0].sd - 0.2) < TOL);
    /* kd: the reference */
    ck_assert(!strcmp(l[1].mode, "kd") && l[1].kd_ref && !l[1].beats_kd);
    ck_assert(fabs(l[1].gain - 0.5) < TOL && fabs(l[1].gain_sd - 0.1) < TOL);
    ck_assert_int_eq(l[1].npaired, 3);
    ck_assert(fabs(l[1].epoch_ratio - 1.2) < TOL);
    ck_assert(isnan(l[1].vs_kd));
    /* standardized kd is not plain KD: compared to it, level */
    ck_assert(!strcmp(l[2].mode, "kd-std") && !l[2].kd_ref);
    ck_assert(fabs(l[2].gain - 0.5) < TOL && fabs(l[2].gain_sd - sqrt(0.07)) < TOL);
    ck_assert(fabs(l[2].vs_kd) < TOL && fabs(l[2].pooled_sd - 0.1) < TOL && !l[2].beats_kd);
    /* dist: paired by seed, not by position */
    ck_assert(!strcmp(l[3].mode, "dist"));
    ck_assert(fabs(l[3].gain - 2.9 / 3) < TOL && fabs(l[3].gain_sd - sqrt(0.04 / 3)) < TOL);
    ck_assert(fabs(l[3].vs_kd - (89.9 + 90.1 + 89.9) / 3 + 89.5) < TOL);
    ck_assert(fabs(l[3].pooled_sd - sqrt((2 * 0.01 + 2 * 0.04 / 3) / 4)) < TOL);
    ck_assert(l[3].beats_kd);
    ck_assert(isnan(l[3].epoch_ratio)); /* no epoch_seconds */
}
END_TEST

/* A run from before methods: <student>/distilled with temperature and no
 * method is plain KD; one seed gives a gain without sd and no pooled sd. */
START_TEST(distill_lines_legacy_and_one_seed)
{
    rep_row rows[4];
    student(&rows[0], "old/scratch", "7", "0.8500", 0.85, 1);
    student(&rows[1], "old/distilled", "7", "0.8600", 0.86, 1);
    rep_row_num(&rows[1], "temperature", 4);
    student(&rows[2], "old/dkd", "7", "0.8700", 0.87, 1);
    rep_row_str(&rows[2], "method", "dkd");
    rep_distill_line l[4];
    ck_assert_int_eq(rep_distill_lines(rows, 3, l, 4), 3);
    ck_assert(l[1].kd_ref && fabs(l[1].gain - 1.0) < TOL && isnan(l[1].gain_sd));
    ck_assert(fabs(l[2].vs_kd - 1.0) < TOL && isnan(l[2].pooled_sd) && !l[2].beats_kd);
    /* seed lists that do not match: the row's mean, unpaired */
    rep_row_str(&rows[2], "seed_list", "7 8");
    ck_assert_int_eq(rep_distill_lines(rows, 3, l, 4), 3);
    ck_assert_int_eq(l[2].nseeds, 0);
    ck_assert_int_eq(l[2].npaired, 0);
    ck_assert(fabs(l[2].gain - 2.0) < TOL && isnan(l[2].gain_sd));
    /* a scratch row alone is no comparison */
    ck_assert_int_eq(rep_distill_lines(rows, 1, l, 4), 0);
}
END_TEST

static char *slurp(const char *dir, const char *name)
{
    char path[700];
    snprintf(path, sizeof path, "%s/report/%s", dir, name);
    return rfx_slurp(path);
}

/* The section in markdown and HTML, and the plot's data and script (drawn
 * when gnuplot is here). */
START_TEST(distill_section_in_report)
{
    char dir[256], path[700];
    kdt_tmpdir(dir, sizeof dir);
    rep_row rows[8];
    int n = rows_fixture(rows);
    kd_err e = {0};
    ck_assert_int_eq(rep_write_results(dir, "d", rows, n, &e), 0);
    rep_warnings w = {0};
    rep_report_opts o = {.format = REP_FMT_BOTH, .plots = rfx_have_gnuplot(), .timeout_s = 60};
    ck_assert_msg(rep_report_write(dir, &o, &w, &e) == 0, "%s", e.msg);
    char *md = slurp(dir, "report.md"), *html = slurp(dir, "report.html");
    ck_assert_ptr_nonnull(strstr(md, "\n## Distillation\n"));
    ck_assert_msg(strstr(md, "| mlp | kd | 3 | 89.50 ± 0.10 | +0.50 ± 0.10 | (plain KD) | – | 1.20 |"), "%s", md);
    ck_assert_ptr_nonnull(strstr(md, "| mlp | dist | 3 | 89.97 ± 0.12 | +0.97 ± 0.12 | +0.47 (0.11) | "
                                     "yes | – |"));
    ck_assert_ptr_nonnull(strstr(md, "| mlp | kd-std | 3 | 89.50 ± 0.10 | +0.50 ± 0.26 | +0.00 (0.10) | "
                                     "no | 1.10 |"));
    ck_assert_ptr_nonnull(strstr(md, "- mlp: best other mode dist, +0.47 points against plain KD "
                                     "(pooled sd 0.11): beats it by more than one pooled sd; "
                                     "plain KD +0.50 over scratch"));
    char *sec = strstr(md, "\n## Distillation\n"), *end = strstr(sec, "\n## Environment");
    ck_assert_ptr_nonnull(end);
    *end = 0; /* the section only: the results table above lists every row */
    ck_assert_ptr_null(strstr(sec, "| lonely"));
    ck_assert_ptr_null(strstr(sec, "int8"));
    ck_assert_ptr_null(strstr(sec, "| teacher"));
    ck_assert_ptr_nonnull(strstr(html, "<h2>Distillation</h2>"));
    ck_assert_ptr_nonnull(strstr(html, "<td>dist</td>"));
    char *dat = slurp(dir, "plots/distill_mlp.dat"), *gp = slurp(dir, "plots/distill_mlp.gp");
    ck_assert_msg(strstr(dat, "1 89 0.2 \"scratch\"") && strstr(dat, "4 89.9667 0.11547 \"dist\""),
                  "%s", dat);
    ck_assert_ptr_nonnull(strstr(dat, "4.12 89.9\n"));
    ck_assert_ptr_nonnull(strstr(gp, "with yerrorbars"));
    ck_assert_ptr_nonnull(strstr(gp, "89 with lines dt 2"));
    kd_free(md);
    kd_free(html);
    kd_free(dat);
    kd_free(gp);
    if (!o.plots)
        KDT_SKIP("gnuplot not found: distill_mlp.png not drawn");
    snprintf(path, sizeof path, "%s/report/plots/distill_mlp.png", dir);
    ck_assert_msg(kd_file_size(path) > 1000, "no %s", path);
    ck_assert_msg(w.n == 0, "warning: %s", w.msg[0]);
}
END_TEST

/* A run without a scratch/distilled pair has no section. */
START_TEST(distill_section_absent)
{
    char dir[256];
    kdt_tmpdir(dir, sizeof dir);
    rep_row rows[2];
    rep_row_init(&rows[0], "teacher", "teacher");
    student(&rows[1], "s/scratch", "1", "0.8", 0.8, 1);
    kd_err e = {0};
    ck_assert_int_eq(rep_write_results(dir, "d", rows, 2, &e), 0);
    rep_report_opts o = {.format = REP_FMT_MD, .plots = 0};
    ck_assert_int_eq(rep_report_write(dir, &o, NULL, &e), 0);
    char *md = slurp(dir, "report.md");
    ck_assert_ptr_null(strstr(md, "Distillation"));
    kd_free(md);
}
END_TEST

Suite *suite_reports_distill(void)
{
    Suite *s = suite_create("reports_distill");
    TCase *tc = tcase_create("distill");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, distill_lines_paired_and_pooled);
    tcase_add_test(tc, distill_lines_legacy_and_one_seed);
    tcase_add_test(tc, distill_section_in_report);
    tcase_add_test(tc, distill_section_absent);
    suite_add_tcase(s, tc);
    return s;
}
