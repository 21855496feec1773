/* kdbench report / compare end to end through the binary ($KD_BIN, set by
 * make test): exit statuses, files written, warnings, model files evaluated. */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../compress/compress.h"
#include "../kdtest.h"
#include "fixture.h"


static long long size_of(const char *dir, const char *name)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return kd_file_size(path);
}

START_TEST(cmd_report_usage)
{
    char out[8192], dir[256];
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "report --help"), 0);
    ck_assert_ptr_nonnull(strstr(out, "usage: kdbench report"));
    ck_assert_ptr_nonnull(strstr(out, "default: both"));
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "compare --help"), 0);
    ck_assert_ptr_nonnull(strstr(out, "usage: kdbench compare"));
    ck_assert_ptr_nonnull(strstr(out, "default: compare"));
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "--help"), 0);
    ck_assert_ptr_nonnull(strstr(out, "report"));
    ck_assert_ptr_nonnull(strstr(out, "compare"));
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "report"), 2);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "report a b"), 2);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "report x --format pdf"), 2);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "report x --timeout -1"), 2);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "report x --bogus"), 2);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "compare"), 2);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "compare x --threads many"), 2);
    kdt_tmpdir(dir, sizeof dir);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "report %s/none", dir), 1); /* no results.json */
    ck_assert_ptr_nonnull(strstr(out, "results.json"));
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "compare %s/none", dir), 1);
}
END_TEST

START_TEST(cmd_report_writes_report)
{
    char out[8192], dir[256];
    kdt_tmpdir(dir, sizeof dir);
    rfx_write_run(dir, 1);
    ck_assert_msg(kdt_kdbench(out, sizeof out, "report %s --format md --gnuplot %s/no-gnuplot", dir,
                     dir) == 0, "%s", out);
    /* one warning line, and the tables still there */
    ck_assert_ptr_nonnull(strstr(out, "kdbench report: warning: plots not drawn: cannot run"));
    int warnings = 0;
    for (const char *w = out; (w = strstr(w, "warning:")); w++)
        warnings++;
    ck_assert_int_eq(warnings, 1);
    ck_assert_int_gt(size_of(dir, "report/report.md"), 1000);
    ck_assert_int_lt(size_of(dir, "report/report.html"), 0);
    if (!rfx_have_gnuplot())
        KDT_SKIP("gnuplot not found");
    ck_assert_msg(kdt_kdbench(out, sizeof out, "report %s", dir) == 0, "%s", out);
    ck_assert_ptr_null(strstr(out, "warning"));
    ck_assert_int_gt(size_of(dir, "report/report.html"), 1000);
    ck_assert_int_gt(size_of(dir, "report/plots/acc_size.png"), 1000);
}
END_TEST

/* a tiny model and test set, so compare evaluates a MODEL file for real */
static void tiny_model(const char *dir)
{
    nn_layer_spec sp[1] = {{.kind = NN_DENSE, .units = 3}};
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){4, 1, 1}, sp, 1, NULL, &e);
    ck_assert_ptr_nonnull(m);
    nn_model_init(m, 7);
    char path[400], csv[2048];
    snprintf(path, sizeof path, "%s/tiny.kdm", dir);
    ck_assert_int_eq(nn_model_save(m, path, &e), 0);
    /* the same as a compressed kind (CSR), which compare must load too */
    compress_sparse_opts all = {.policy = COMPRESS_SPARSE_ALWAYS};
    nn_model *c = compress_to_sparse(m, &all, NULL, &e);
    ck_assert_ptr_nonnull(c);
    snprintf(path, sizeof path, "%s/tiny_csr.kdm", dir);
    ck_assert_int_eq(nn_model_save(c, path, &e), 0);
    nn_model_free(c);
    nn_model_free(m);
    size_t n = 0;
    for (int i = 0; i < 30; i++)
        n += (size_t)snprintf(csv + n, sizeof csv - n, "%d,%d,%d,%d,%d\n", i % 3, i, 2 * i % 7,
                              i % 5, 3);
    snprintf(path, sizeof path, "%s/test.csv", dir);
    kdt_write(path, csv, n);
}

START_TEST(cmd_compare_runs_and_models)
{
    char out[16384], dir[256], a[300], b[300], cmp[300];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(a, sizeof a, "%s/runA", dir);
    snprintf(b, sizeof b, "%s/runB", dir);
    snprintf(cmp, sizeof cmp, "%s/cmp", dir);
    kd_err e = {0};
    ck_assert_int_eq(kd_mkdirs(a, &e), 0);
    ck_assert_int_eq(kd_mkdirs(b, &e), 0);
    rfx_write_run(a, 0);
    rfx_write_run(b, 0);
    tiny_model(dir);
    ck_assert_msg(kdt_kdbench(out, sizeof out,
                     "compare %s %s %s/tiny.kdm %s/tiny_csr.kdm --csv-data %s/test.csv "
                     "--threads 1 --baseline runB --out %s --no-plots", a, b, dir, dir, dir, cmp) == 0,
                  "%s", out);
    ck_assert_ptr_nonnull(strstr(out, "tiny_csr"));
    ck_assert_ptr_nonnull(strstr(out, "baseline: runB/teacher"));
    ck_assert_ptr_nonnull(strstr(out, "runA/small/distilled"));
    ck_assert_ptr_nonnull(strstr(out, "tiny"));
    ck_assert_int_gt(size_of(cmp, "compare.md"), 500);
    ck_assert_int_gt(size_of(cmp, "compare.csv"), 500);
    ck_assert_int_gt(size_of(cmp, "plots/acc_size.dat"), 100);
    ck_assert_msg(kdt_kdbench(out, sizeof out, "compare %s %s --csv --out %s --no-plots", a, b, cmp) == 0,
                  "%s", out);
    ck_assert_ptr_nonnull(strstr(out, "name,role,accuracy,delta_acc_pts,"));
    ck_assert_ptr_nonnull(strstr(out, "runB/teacher,teacher,0.8947,0.0000,"));
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "compare %s --baseline nope --out %s", a, cmp), 2);
    ck_assert_ptr_nonnull(strstr(out, "nope"));
}
END_TEST

Suite *suite_reports_cli(void)
{
    Suite *s = suite_create("reports_cli");
    TCase *t = tcase_create("cli");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, cmd_report_usage);
    tcase_add_test(t, cmd_report_writes_report);
    tcase_add_test(t, cmd_compare_runs_and_models);
    suite_add_tcase(s, t);
    return s;
}
