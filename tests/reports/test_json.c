/* The JSON reader and the result-file readers: valid documents, every kind of
 * malformed or truncated input refused with an error (never a crash), round
 * trips of results.json, metrics.jsonl and env.json. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../kdtest.h"
#include "fixture.h"

static int parse(const char *s, rep_json *j, kd_err *e)
{
    return rep_json_parse(s, strlen(s), "t.json", j, e);
}

START_TEST(json_valid)
{
    const char *s = "{\"a\": [1, -2.5e3, 0, 0.125, true, false, null],\n"
                    " \"s\": \"q\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\", \"o\": {}, "
                    "\"e\": []}";
    rep_json j;
    kd_err e = {0};
    ck_assert_int_eq(parse(s, &j, &e), 0);
    int a = rep_json_get(&j, 0, "a");
    ck_assert_int_ge(a, 0);
    ck_assert_int_eq(j.nodes[a].type, REP_JARR);
    ck_assert_int_eq(j.nodes[a].count, 7);
    int c = j.nodes[a].first;
    double want[4] = {1, -2500, 0, 0.125};
    for (int i = 0; i < 4; i++, c = j.nodes[c].next)
        ck_assert(j.nodes[c].type == REP_JNUM && j.nodes[c].num == want[i]);
    ck_assert(j.nodes[c].type == REP_JBOOL && j.nodes[c].num == 1);
    c = j.nodes[c].next;
    ck_assert(j.nodes[c].type == REP_JBOOL && j.nodes[c].num == 0);
    ck_assert_int_eq(j.nodes[j.nodes[c].next].type, REP_JNULL);
    int k = rep_json_get(&j, 0, "s");
    ck_assert_str_eq(j.nodes[k].str, "q\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80");
    ck_assert_int_eq(j.nodes[rep_json_get(&j, 0, "o")].count, 0);
    ck_assert_int_eq(rep_json_get(&j, 0, "missing"), -1);
    ck_assert_int_eq(rep_json_get(&j, a, "x"), -1); /* not an object */
    rep_json_free(&j);
    rep_json_free(&j); /* twice is safe */
}
END_TEST

START_TEST(json_malformed_refused)
{
    static const char *const bad[] = {
        "", " ", "{", "}", "[", "[1,]", "[1 2]", "{\"a\":}", "{\"a\" 1}", "{1: 2}",
        "{\"a\": 1,}", "[]]", "01", "1.", "-", "+1", ".5", "1e", "1e+", "0x10", "NaN",
        "Infinity", "1e999", "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\u12g4\"", "\"\\ud800\"",
        "\"\\ude00\"", "\"\\ud800\\u0041\"", "\"\\u0000\"", "\"a\tb\"", "tru", "nul", "falsy",
        "{\"a\": 1} x", "[1] [2]", "{\"a\":1}}", "'a'", "[1,\n2,\n]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rep_json j;
        kd_err e = {0};
        ck_assert_msg(parse(bad[i], &j, &e) == KD_EFORMAT, "accepted: %s", bad[i]);
        ck_assert_str_eq(e.file, "t.json");
        ck_assert_msg(strstr(e.msg, "JSON") != NULL, "message: %s", e.msg);
        ck_assert_ptr_null(j.nodes);
        rep_json_free(&j);
    }
    /* the position of the error is reported as line:column */
    rep_json j;
    kd_err e = {0};
    ck_assert_int_eq(parse("[1,\n2,\n]", &j, &e), KD_EFORMAT);
    ck_assert_int_eq(e.line, 3);
    ck_assert_int_eq(e.col, 1);
    /* a NUL byte inside the text */
    ck_assert_int_eq(rep_json_parse("[1,\0 2]", 7, NULL, &j, &e), KD_EFORMAT);
}
END_TEST

START_TEST(json_every_truncation_refused)
{
    const char *s = "{\"experiment\": \"x\", \"rows\": [{\"name\": \"t\\u00e9\", \"a\": "
                    "[1.5e-3, null, true]}, {}]}";
    size_t n = strlen(s);
    for (size_t k = 0; k < n; k++) {
        rep_json j;
        kd_err e = {0};
        ck_assert_msg(rep_json_parse(s, k, NULL, &j, &e) == KD_EFORMAT, "prefix %zu accepted",
                      k);
    }
}
END_TEST

/* random byte edits of a valid document: an error or a parse, never a crash
 * (run under ASan by make asan) */
START_TEST(json_mutations_never_crash)
{
    const char *s = "{\"experiment\": \"x\", \"rows\": [{\"name\": \"t\\u00e9\", \"a\": "
                    "[1.5e-3, null, true, false, -0.25]}, {\"b\": {\"c\": [[], {}]}}]}";
    size_t n = strlen(s);
    char buf[256];
    uint64_t x = 88172645463325252ull;
    static const char alphabet[] = "{}[]\",:\\u0123456789.eE+-tfnrl \n\x01\xc3";
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, s, n);
        size_t len = n;
        for (int k = 0; k < 1 + it % 4; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t at = (size_t)(x % len);
            if (x >> 40 & 1)
                buf[at] = alphabet[(x >> 20) % (sizeof alphabet - 1)];
            else
                len = at + 1; /* truncate */
        }
        rep_json j;
        kd_err e = {0};
        int rc = rep_json_parse(buf, len, NULL, &j, &e);
        ck_assert(rc == 0 || rc == KD_EFORMAT);
        rep_json_free(&j);
    }
}
END_TEST

START_TEST(json_depth_bounded)
{
    char s[400];
    memset(s, '[', 200);
    memset(s + 200, ']', 200);
    rep_json j;
    kd_err e = {0};
    ck_assert_int_eq(rep_json_parse(s, 400, NULL, &j, &e), KD_EFORMAT);
    ck_assert_ptr_nonnull(strstr(e.msg, "deep"));
    ck_assert_int_eq(rep_json_parse(s + 150, 100, NULL, &j, &e), 0); /* 50 deep is fine */
    rep_json_free(&j);
}
END_TEST

START_TEST(json_allocation_failures_clean)
{
    const char *s = "{\"rows\": [[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,"
                    "24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,"
                    "48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69,70]]}";
    int ok = 0;
    for (long n = 0; n < 20 && !ok; n++) {
        rep_json j;
        kd_err e = {0};
        kd_alloc_fail_after(n);
        int rc = parse(s, &j, &e);
        kd_alloc_fail_after(-1);
        ck_assert(rc == 0 || rc == KD_ENOMEM);
        ok = rc == 0;
        rep_json_free(&j);
    }
    ck_assert(ok);
}
END_TEST

START_TEST(results_round_trip)
{
    char dir[256], path[300], name[64];
    rep_row rows[RFX_NROWS], *got;
    int n;
    kd_err e = {0};
    kdt_tmpdir(dir, sizeof dir);
    rfx_write_run(dir, 0);
    rfx_rows(rows);
    snprintf(path, sizeof path, "%s/results.json", dir);
    ck_assert_int_eq(rep_read_results(path, name, sizeof name, &got, &n, &e), 0);
    ck_assert_str_eq(name, "fixture");
    ck_assert_int_eq(n, RFX_NROWS);
    for (int i = 0; i < n; i++) {
        ck_assert_str_eq(got[i].name, rows[i].name);
        ck_assert_str_eq(got[i].role, rows[i].role);
        ck_assert_int_eq(got[i].params, rows[i].params);
        ck_assert_int_eq(got[i].nonzero_params, rows[i].nonzero_params);
        ck_assert_int_eq(got[i].size_bytes, rows[i].size_bytes);
        ck_assert_double_eq_tol(got[i].accuracy, rows[i].accuracy, 1e-9);
        ck_assert_double_eq_tol(got[i].latency_us_b1_p50, rows[i].latency_us_b1_p50, 1e-9);
        ck_assert_double_eq_tol(got[i].latency_us_b1_p99, rows[i].latency_us_b1_p99, 1e-9);
        ck_assert_double_eq(got[i].train_seconds, -1); /* null */
        ck_assert_int_eq(got[i].nextra, rows[i].nextra);
        for (int k = 0; k < rows[i].nextra; k++) {
            ck_assert_str_eq(got[i].extra[k].key, rows[i].extra[k].key);
            ck_assert_int_eq(got[i].extra[k].is_num, rows[i].extra[k].is_num);
            if (rows[i].extra[k].is_num)
                ck_assert_double_eq_tol(got[i].extra[k].num, rows[i].extra[k].num, 1e-9);
            else
                ck_assert_str_eq(got[i].extra[k].str, rows[i].extra[k].str);
        }
    }
    kd_free(got);
}
END_TEST

START_TEST(results_malformed_refused)
{
    static const char *const bad[] = {
        "[]", "{\"rows\": {}}", "{\"experiment\": \"x\"}", "{\"rows\": [1]}",
        "{\"rows\": [{\"role\": \"teacher\"}]}", "{\"rows\": [{\"name\": 3}]}",
        "{\"rows\": [{\"name\": \"t\", \"accuracy\": \"high\"}]}",
        "{\"rows\": [{\"name\": \"t\", \"params\": [1]}]}", "{\"rows\": [{\"name\": \"t\"}",
        /* a count no long long holds (fuzz_rundir: UB in the conversion) */
        "{\"rows\": [{\"name\": \"t\", \"size_bytes\": 4.44444e+23}]}",
        "{\"rows\": [{\"name\": \"t\", \"params\": 1e300}]}",
    };
    char dir[256], path[300];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/results.json", dir);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rep_row *rows = (rep_row *)1;
        int n = 7;
        kd_err e = {0};
        kdt_write(path, bad[i], strlen(bad[i]));
        ck_assert_msg(rep_read_results(path, NULL, 0, &rows, &n, &e) == KD_EFORMAT,
                      "accepted: %s", bad[i]);
        ck_assert_ptr_null(rows);
        ck_assert_int_eq(n, 0);
    }
    rep_row *rows;
    int n;
    kd_err e = {0};
    snprintf(path, sizeof path, "%s/none.json", dir);
    ck_assert_int_eq(rep_read_results(path, NULL, 0, &rows, &n, &e), KD_EIO);
    /* unknown members become extras; booleans as strings */
    snprintf(path, sizeof path, "%s/results.json", dir);
    const char *ok = "{\"rows\": [{\"name\": \"t\", \"role\": \"teacher\", \"accuracy\": null,"
                     " \"flag\": true, \"list\": [1], \"seeds\": 3}]}";
    kdt_write(path, ok, strlen(ok));
    ck_assert_int_eq(rep_read_results(path, NULL, 0, &rows, &n, &e), 0);
    ck_assert_int_eq(n, 1);
    ck_assert_double_eq(rows[0].accuracy, -1);
    ck_assert_int_eq(rows[0].nextra, 2);
    ck_assert_str_eq(rows[0].extra[0].str, "true");
    ck_assert_double_eq(rows[0].extra[1].num, 3);
    kd_free(rows);
}
END_TEST

START_TEST(metrics_read)
{
    char dir[256], path[300];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    const char *text = "{\"model\": \"teacher\", \"epoch\": 1, \"loss\": 0.5, \"val_acc\": 0.8}\n"
                       "\n"
                       "{\"model\": \"s/distilled\", \"epoch\": 2, \"loss\": 0.25}\n";
    kdt_write(path, text, strlen(text));
    rep_metric *m;
    int n;
    kd_err e = {0};
    ck_assert_int_eq(rep_read_metrics(path, &m, &n, &e), 0);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(m[1].model, "s/distilled");
    ck_assert_int_eq(m[1].epoch, 2);
    ck_assert_double_eq(m[0].val_acc, 0.8);
    ck_assert_double_eq(m[1].val_acc, -1); /* absent */
    kd_free(m);
    const char *bad = "{\"model\": \"teacher\", \"epoch\": 1}\n{\"model\": \"x\", \"epoch\": \n";
    kdt_write(path, bad, strlen(bad));
    ck_assert_int_eq(rep_read_metrics(path, &m, &n, &e), KD_EFORMAT);
    ck_assert_int_eq(e.line, 2);
    ck_assert_ptr_null(m);
    const char *nomodel = "{\"epoch\": 1}\n";
    kdt_write(path, nomodel, strlen(nomodel));
    ck_assert_int_eq(rep_read_metrics(path, &m, &n, &e), KD_EFORMAT);
}
END_TEST

START_TEST(env_round_trip)
{
    char dir[256], path[300];
    rep_env env, got;
    kd_err e = {0};
    kdt_tmpdir(dir, sizeof dir);
    rep_env_detect(&env);
    ck_assert_int_gt(env.cores, 0);
    ck_assert_int_eq((int)strlen(env.date), 20); /* 2026-01-02T03:04:05Z */
    ck_assert_ptr_nonnull(strstr(env.compiler, "."));
    env.threads = 3;
    snprintf(env.blas, sizeof env.blas, "Open\"BLAS\"\n");
    ck_assert_int_eq(rep_write_env(dir, &env, &e), 0);
    snprintf(path, sizeof path, "%s/env.json", dir);
    ck_assert_int_eq(rep_read_env(path, &got, &e), 0);
    ck_assert_str_eq(got.cpu, env.cpu);
    ck_assert_str_eq(got.blas, env.blas);
    ck_assert_str_eq(got.libs, env.libs);
    ck_assert_ptr_nonnull(strstr(got.libs, "zlib 1."));
    ck_assert_str_eq(got.date, env.date);
    ck_assert_int_eq(got.threads, 3);
    ck_assert_int_eq(got.cores, env.cores);
    kdt_write(path, "[1]", 3);
    ck_assert_int_eq(rep_read_env(path, &got, &e), KD_EFORMAT);
}
END_TEST

Suite *suite_reports_json(void)
{
    Suite *s = suite_create("reports_json");
    TCase *t = tcase_create("json");
    tcase_add_test(t, json_valid);
    tcase_add_test(t, json_malformed_refused);
    tcase_add_test(t, json_every_truncation_refused);
    tcase_add_test(t, json_mutations_never_crash);
    tcase_add_test(t, json_depth_bounded);
    tcase_add_test(t, json_allocation_failures_clean);
    tcase_add_test(t, results_round_trip);
    tcase_add_test(t, results_malformed_refused);
    tcase_add_test(t, metrics_read);
    tcase_add_test(t, env_round_trip);
    suite_add_tcase(s, t);
    return s;
}
