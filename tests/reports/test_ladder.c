/* Ladders (issue 17): named, ordered rows kept in results.json's "ladders"
 * member, drawn on the accuracy-vs-size plot as one line through the rows in
 * the ladder's order (not by size), and tabled step by step: bytes, the
 * ratio to the first and to the previous step, accuracy and its change from
 * the first.  A step with no row is shown as such and warned about. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../kdtest.h"
#include "fixture.h"

static rep_ladder ladder(const char *name, int n, const char *const *steps)
{
    rep_ladder l;
    memset(&l, 0, sizeof l);
    snprintf(l.name, sizeof l.name, "%s", name);
    for (int i = 0; i < n; i++)
        snprintf(l.step[i], sizeof l.step[0], "%s", steps[i]);
    l.nsteps = n;
    return l;
}

/* The fixture's rows with two ladders: Deep Compression (sizes falling) and
 * one whose order is not the order of its sizes. */
static void write_ladder_run(const char *dir, const char *extra_step)
{
    static const char *const dc[] = {"teacher", "teacher/prune90", "small/distilled/int4"};
    static const char *const odd[] = {"teacher/prune90", "teacher/int8", "small/distilled/int4",
                                      NULL};
    const char *steps[4] = {odd[0], odd[1], odd[2], extra_step};
    rep_row rows[RFX_NROWS];
    rep_ladder l[2] = {ladder("Deep Compression", 3, dc),
                       ladder("odd | order", extra_step ? 4 : 3, steps)};
    kd_err e = {0};
    rfx_rows(rows);
    ck_assert_int_eq(rep_write_results_ladders(dir, "ladder", rows, RFX_NROWS, l, 2, &e), 0);
}

START_TEST(ladder_results_round_trip)
{
    char dir[256], path[600];
    kdt_tmpdir(dir, sizeof dir);
    write_ladder_run(dir, NULL);
    snprintf(path, sizeof path, "%s/results.json", dir);
    rep_ladder got[REP_MAX_LADDERS];
    int n = -1;
    kd_err e = {0};
    ck_assert_msg(rep_read_ladders(path, got, &n, &e) == 0, "%s", e.msg);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(got[0].name, "Deep Compression");
    ck_assert_int_eq(got[0].nsteps, 3);
    ck_assert_str_eq(got[0].step[1], "teacher/prune90");
    ck_assert_str_eq(got[1].name, "odd | order");
    ck_assert_str_eq(got[1].step[2], "small/distilled/int4");
    rep_row *rows;
    int nrows;
    ck_assert_int_eq(rep_read_results(path, NULL, 0, &rows, &nrows, &e), 0); /* still read */
    ck_assert_int_eq(nrows, RFX_NROWS);
    kd_free(rows);
    /* results written without ladders: none, and no member */
    rfx_write_run(dir, 0);
    ck_assert_int_eq(rep_read_ladders(path, got, &n, &e), 0);
    ck_assert_int_eq(n, 0);
    char *text = rfx_slurp(path);
    ck_assert_ptr_null(strstr(text, "ladders"));
    kd_free(text);
}
END_TEST

/* A ladders member that is not [{name: string, rows: [2..16 strings]}] is refused. */
START_TEST(ladder_results_malformed)
{
    static const char *const bad[] = {
        "\"ladders\": {}",
        "\"ladders\": [{\"rows\": [\"a\", \"b\"]}]",
        "\"ladders\": [{\"name\": 3, \"rows\": [\"a\", \"b\"]}]",
        "\"ladders\": [{\"name\": \"L\", \"rows\": [\"a\"]}]",
        "\"ladders\": [{\"name\": \"L\", \"rows\": [\"a\", 2]}]",
        "\"ladders\": [{\"name\": \"L\"}]",
        "\"ladders\": [1]",
        "\"ladders\": [{\"name\": \"L\", \"rows\": [\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\","
        "\"h\",\"i\",\"j\",\"k\",\"l\",\"m\",\"n\",\"o\",\"p\",\"q\"]}]",
        "\"ladders\": [{\"name\":\"1\",\"rows\":[\"a\",\"b\"]},{\"name\":\"2\",\"rows\":[\"a\","
        "\"b\"]},{\"name\":\"3\",\"rows\":[\"a\",\"b\"]},{\"name\":\"4\",\"rows\":[\"a\",\"b\"]},"
        "{\"name\":\"5\",\"rows\":[\"a\",\"b\"]},{\"name\":\"6\",\"rows\":[\"a\",\"b\"]},"
        "{\"name\":\"7\",\"rows\":[\"a\",\"b\"]},{\"name\":\"8\",\"rows\":[\"a\",\"b\"]},"
        "{\"name\":\"9\",\"rows\":[\"a\",\"b\"]}]",
    };
    char dir[256], path[600], text[2048];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/results.json", dir);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int k = snprintf(text, sizeof text, "{\"experiment\": \"x\", %s, \"rows\": []}", bad[i]);
        kdt_write(path, text, (size_t)k);
        rep_ladder got[REP_MAX_LADDERS];
        int n = -1;
        kd_err e = {0};
        ck_assert_msg(rep_read_ladders(path, got, &n, &e) == KD_EFORMAT, "case %zu", i);
        ck_assert_msg(strstr(e.msg, "ladder"), "case %zu: %s", i, e.msg);
        ck_assert_int_eq(n, 0);
    }
}
END_TEST

/* block k of a gnuplot data file (blocks end with two blank lines) */
static char *dat_block(char *dat, int k)
{
    char *p = dat;
    for (int i = 0; i < k && p; i++) {
        p = strstr(p, "\n\n\n");
        p = p ? p + 3 : NULL;
    }
    ck_assert_ptr_nonnull(p);
    char *end = strstr(p, "\n\n\n");
    if (end)
        end[1] = 0;
    return p;
}

/* the data block drawn with title 'title', as text */
static char *ladder_block(const char *gp, char *dat, const char *title)
{
    char want[200];
    snprintf(want, sizeof want, "with linespoints");
    const char *t = strstr(gp, title);
    ck_assert_msg(t != NULL, "no %s in the script:\n%s", title, gp);
    const char *line = t;
    while (line > gp && line[-1] != '\n')
        line--;
    ck_assert_msg(strstr(line, want) && strstr(line, want) < t, "not a line: %.200s", line);
    const char *idx = strstr(line, " index ");
    ck_assert_msg(idx && idx < t, "no index: %.200s", line);
    return dat_block(dat, atoi(idx + 7));
}

START_TEST(ladder_plot_in_row_order)
{
    char dir[256], path[700];
    kdt_tmpdir(dir, sizeof dir);
    write_ladder_run(dir, NULL);
    rep_warnings w = {0};
    kd_err e = {0};
    rep_report_opts o = {.format = REP_FMT_MD, .plots = 0}; /* the .dat and .gp only */
    ck_assert_msg(rep_report_write(dir, &o, &w, &e) == 0, "%s", e.msg);
    snprintf(path, sizeof path, "%s/report/plots/acc_size.gp", dir);
    char *gp = rfx_slurp(path);
    snprintf(path, sizeof path, "%s/report/plots/acc_size.dat", dir);
    char *dat = rfx_slurp(path), *dat2 = rfx_slurp(path);
    ck_assert_ptr_nonnull(strstr(gp, "set logscale x")); /* the axis stays logarithmic */
    /* six key entries (three roles, the front, two ladders): two rows of four, and
     * the margin below grows so the key stays off the axis label */
    ck_assert_ptr_nonnull(strstr(gp, "horizontal maxcols 4 "));
    ck_assert_ptr_nonnull(strstr(gp, "set bmargin 7.0\n"));
    char *b = ladder_block(gp, dat, "title 'Deep Compression'");
    ck_assert_msg(!strcmp(b, "2.14381e+06 89.47\n281000 88.1\n27300 84.52\n"), "%s", b);
    b = ladder_block(gp, dat2, "title 'odd | order'"); /* the ladder's order, not by size */
    ck_assert_msg(!strcmp(b, "281000 88.1\n540100 89.41\n27300 84.52\n"), "%s", b);
    /* drawn after (on top of) the points: the role groups come first */
    ck_assert_ptr_nonnull(strstr(gp, "title 'compressed'"));
    ck_assert(strstr(gp, "title 'compressed'") < strstr(gp, "title 'Deep Compression'"));
    kd_free(gp);
    kd_free(dat);
    kd_free(dat2);
}
END_TEST

START_TEST(ladder_table)
{
    char dir[256], path[700];
    kdt_tmpdir(dir, sizeof dir);
    write_ladder_run(dir, "teacher/gone");
    rep_warnings w = {0};
    kd_err e = {0};
    rep_report_opts o = {.format = REP_FMT_BOTH, .plots = 0};
    ck_assert_msg(rep_report_write(dir, &o, &w, &e) == 0, "%s", e.msg);
    snprintf(path, sizeof path, "%s/report/report.md", dir);
    char *md = rfx_slurp(path);
    snprintf(path, sizeof path, "%s/report/report.html", dir);
    char *html = rfx_slurp(path);
    static const char *const want[] = {
        "## Ladders\n",
        "\n### Deep Compression\n\n",
        "| Step | Variant | Format | Bytes | vs first | vs previous | Accuracy | Δ vs first |",
        "| 1 | teacher | fp32 | 2,143,812 | 1.00× | – | 89.47% | – |",
        "| 2 | teacher/prune90 | – | 281,000 | 7.63× | 7.63× | 88.10% | -1.37 pts |",
        "| 3 | small/distilled/int4 | int4 | 27,300 | 78.53× | 10.29× | 84.52% | -4.95 pts |",
        "\n### odd \\| order\n\n", /* markdown-escaped */
        "| 2 | teacher/int8 | – | 540,100 | 0.52× | 0.52× | 89.41% | +1.31 pts |",
        "| 4 | teacher/gone | – | – | – | – | – | – |",
        "Ladder Deep Compression: teacher to small/distilled/int4, 78.53× smaller, -4.95 points",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        ck_assert_msg(strstr(md, want[i]), "md lacks \"%s\"", want[i]);
    ck_assert_ptr_nonnull(strstr(html, "<h3>odd | order</h3>"));
    ck_assert_ptr_nonnull(strstr(html, "<td class=\"n\">78.53×</td><td class=\"n\">10.29×"
                                       "</td>"));
    int warned = 0;
    for (int i = 0; i < w.n; i++)
        warned |= strstr(w.msg[i], "odd | order") && strstr(w.msg[i], "\"teacher/gone\"") != NULL;
    ck_assert_msg(warned, "no warning about the missing step (%d warnings)", w.n);
    kd_free(md);
    kd_free(html);
}
END_TEST

/* kdbench compare draws each source's ladders, named after the source. */
START_TEST(ladder_compare)
{
    char dir[256], run[400], out[400], path[700];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(run, sizeof run, "%s/runA", dir);
    ck_assert_int_eq(mkdir(run, 0755), 0);
    write_ladder_run(run, NULL);
    snprintf(out, sizeof out, "%s/cmp", dir);
    char buf[16384];
    int rc = kdt_kdbench(buf, sizeof buf, "compare %s %s --out %s --no-plots", run, run, out);
    ck_assert_msg(rc == 0, "%s", buf);
    snprintf(path, sizeof path, "%s/plots/acc_size.gp", out);
    char *gp = rfx_slurp(path);
    snprintf(path, sizeof path, "%s/plots/acc_size.dat", out);
    char *dat = rfx_slurp(path);
    char *b = ladder_block(gp, dat, "title 'runA: Deep Compression'");
    ck_assert_msg(!strcmp(b, "2.14381e+06 89.47\n281000 88.1\n27300 84.52\n"), "%s", b);
    kd_free(gp);
    kd_free(dat);
}
END_TEST

Suite *suite_reports_ladder(void)
{
    Suite *s = suite_create("reports_ladder");
    TCase *t = tcase_create("ladder");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, ladder_results_round_trip);
    tcase_add_test(t, ladder_results_malformed);
    tcase_add_test(t, ladder_plot_in_row_order);
    tcase_add_test(t, ladder_table);
    tcase_add_test(t, ladder_compare);
    suite_add_tcase(s, t);
    return s;
}
