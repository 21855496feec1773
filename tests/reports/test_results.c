/* results.json and results.csv, byte for byte, on two hand-made rows:
 * numbers, null/empty for unmeasured values, extra keys as the union of
 * columns, JSON escaping and CSV quoting. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../reports/reports.h"
#include "../kdtest.h"

static char *read_text(const char *dir, const char *name)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    uint8_t *p;
    size_t n;
    kd_err e = {0};
    ck_assert_msg(kd_read_file(path, 1 << 20, &p, &n, &e) == KD_OK, "%s", e.msg);
    char *s = calloc(1, n + 1);
    memcpy(s, p, n);
    kd_free(p);
    return s;
}

static void remove_results(const char *dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/results.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/results.csv", dir);
    unlink(path);
    rmdir(dir);
}

static void two_rows(rep_row r[2])
{
    rep_row_init(&r[0], "teacher \"big\"\\x", "teacher");
    r[0].params = 12345678901LL;
    r[0].nonzero_params = 1200;
    r[0].size_bytes = 5000;
    r[0].accuracy = 0.91234567;
    r[0].latency_us_b1_p50 = 12.5;
    r[0].latency_us_b1_p99 = 30;
    r[0].throughput_b256 = 1e6;
    r[0].train_seconds = 3.25;
    r[0].macs = 101770;
    rep_row_num(&r[0], "temperature", 4);
    rep_row_str(&r[0], "source", "scratch, v1");
    rep_row_str(&r[0], "note", "tab\there\nnew \"q\"\x01");
    rep_row_init(&r[1], "student,small", "student");
    r[1].accuracy = 0.5;
    r[1].train_seconds = NAN; /* not finite: unmeasured too */
    rep_row_num(&r[1], "alpha", 0.7);
    rep_row_num(&r[1], "temperature", -1);
    rep_row_num(&r[1], "k,\"1\"", INFINITY);
}

START_TEST(test_results_json)
{
    char dir[256];
    kdt_tmpdir(dir, sizeof dir);
    rep_row r[2];
    two_rows(r);
    kd_err e = {0};
    ck_assert_int_eq(rep_write_results(dir, "exp \"1\"\n", r, 2, &e), KD_OK);
    char *s = read_text(dir, "results.json");
    const char *want =
        "{\n"
        "  \"experiment\": \"exp \\\"1\\\"\\u000a\",\n"
        "  \"rows\": [\n"
        "    {\"name\": \"teacher \\\"big\\\"\\\\x\", \"role\": \"teacher\", "
        "\"params\": 12345678901, \"nonzero_params\": 1200, \"size_bytes\": 5000, "
        "\"accuracy\": 0.912346, \"latency_us_b1_p50\": 12.5, \"latency_us_b1_p99\": 30, "
        "\"throughput_b256\": 1e+06, \"train_seconds\": 3.25, \"macs\": 101770, "
        "\"temperature\": 4, \"source\": \"scratch, v1\", "
        "\"note\": \"tab\\u0009here\\u000anew \\\"q\\\"\\u0001\"},\n"
        "    {\"name\": \"student,small\", \"role\": \"student\", \"params\": null, "
        "\"nonzero_params\": null, \"size_bytes\": null, \"accuracy\": 0.5, "
        "\"latency_us_b1_p50\": null, \"latency_us_b1_p99\": null, \"throughput_b256\": null, "
        "\"train_seconds\": null, \"macs\": null, \"alpha\": 0.7, \"temperature\": null, "
        "\"k,\\\"1\\\"\": null}\n"
        "  ]\n"
        "}\n";
    ck_assert_str_eq(s, want);
    free(s);
    remove_results(dir);
}
END_TEST

START_TEST(test_results_csv)
{
    char dir[256];
    kdt_tmpdir(dir, sizeof dir);
    rep_row r[2];
    two_rows(r);
    kd_err e = {0};
    ck_assert_int_eq(rep_write_results(dir, "x", r, 2, &e), KD_OK);
    char *s = read_text(dir, "results.csv");
    const char *want =
        "name,role,params,nonzero_params,size_bytes,accuracy,latency_us_b1_p50,"
        "latency_us_b1_p99,throughput_b256,train_seconds,macs,"
        "temperature,source,note,alpha,\"k,\"\"1\"\"\"\n"
        "\"teacher \"\"big\"\"\\x\",teacher,12345678901,1200,5000,0.912346,12.5,30,1e+06,3.25,"
        "101770,4,\"scratch, v1\",\"tab\there\nnew \"\"q\"\"\x01\",,\n"
        "\"student,small\",student,,,,0.5,,,,,,,,,0.7,\n";
    ck_assert_str_eq(s, want);
    free(s);
    remove_results(dir);
}
END_TEST

START_TEST(test_results_edges)
{
    char dir[256];
    kdt_tmpdir(dir, sizeof dir);
    kd_err e = {0};
    /* no rows */
    ck_assert_int_eq(rep_write_results(dir, "empty", NULL, 0, &e), KD_OK);
    char *s = read_text(dir, "results.json");
    ck_assert_str_eq(s, "{\n  \"experiment\": \"empty\",\n  \"rows\": [\n  ]\n}\n");
    free(s);
    s = read_text(dir, "results.csv");
    ck_assert_str_eq(s, "name,role,params,nonzero_params,size_bytes,accuracy,"
                        "latency_us_b1_p50,latency_us_b1_p99,throughput_b256,train_seconds,"
                        "macs\n");
    free(s);
    /* extras: a key set twice keeps one slot and the last value; the table
     * holds REP_MAX_EXTRA keys and ignores more */
    rep_row r;
    rep_row_init(&r, "m", "compressed");
    rep_row_num(&r, "a", 1);
    rep_row_str(&r, "a", "now a string");
    ck_assert_int_eq(r.nextra, 1);
    ck_assert_int_eq(r.extra[0].is_num, 0);
    ck_assert_str_eq(r.extra[0].str, "now a string");
    for (int i = 0; i < REP_MAX_EXTRA + 5; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        rep_row_num(&r, k, i);
    }
    ck_assert_int_eq(r.nextra, REP_MAX_EXTRA);
    ck_assert_str_eq(r.extra[REP_MAX_EXTRA - 1].key, "k22");
    /* unmeasured by default */
    ck_assert(r.params == -1 && r.accuracy == -1 && r.macs == -1);
    /* a folder that does not exist */
    char missing[600];
    snprintf(missing, sizeof missing, "%s/nope", dir);
    ck_assert_int_eq(rep_write_results(missing, "x", &r, 1, &e), KD_EIO);
    remove_results(dir);
}
END_TEST

START_TEST(test_json_str_and_bprintf)
{
    kd_buf b = {0};
    rep_json_str(&b, "a\"b\\c\x1f\x7f/\xc3\xa9");
    rep_bprintf(&b, "|%d|%s", 42, "ok");
    kd_buf_put(&b, "", 1);
    ck_assert_str_eq((char *)b.p, "\"a\\\"b\\\\c\\u001f\x7f/\xc3\xa9\"|42|ok");
    kd_buf_free(&b);
}
END_TEST

Suite *suite_reports_results(void)
{
    Suite *s = suite_create("reports_results");
    TCase *t = tcase_create("results");
    tcase_add_test(t, test_results_json);
    tcase_add_test(t, test_results_csv);
    tcase_add_test(t, test_results_edges);
    tcase_add_test(t, test_json_str_and_bprintf);
    suite_add_tcase(s, t);
    return s;
}
