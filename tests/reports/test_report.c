/* Report generation on fixture run directories: the tables hold the numbers
 * of results.json, every plot is a valid PNG and SVG with its .dat and .gp,
 * the HTML is self-contained, and a missing, failing or hanging gnuplot
 * leaves the tables written with one clear line. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../kdtest.h"
#include "fixture.h"

static const char *const plots[] = {"acc_size", "acc_latency", "curves_teacher", "curves_small",
                                    "distill_small", "sparsity", "sensitivity", "weights_hist"};
#define NPLOTS (int)(sizeof plots / sizeof plots[0])

static int exists(const char *dir, const char *name, const char *ext)
{
    char path[700];
    snprintf(path, sizeof path, "%s/report/plots/%s.%s", dir, name, ext);
    return kd_file_size(path) > 0;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* the 8-byte signature, then an IHDR chunk of 13 bytes with a sane size */
static void check_png(const char *path)
{
    uint8_t *p;
    size_t n;
    kd_err e;
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    ck_assert_msg(kd_read_file(path, 16 << 20, &p, &n, &e) == 0, "no %s", path);
    ck_assert_msg(n > 33 && !memcmp(p, sig, 8), "%s: not a PNG", path);
    ck_assert_msg(be32(p + 8) == 13 && !memcmp(p + 12, "IHDR", 4), "%s: no IHDR", path);
    uint32_t w = be32(p + 16), h = be32(p + 20);
    ck_assert_msg(w >= 400 && w <= 4000 && h >= 300 && h <= 4000, "%s: %ux%u", path, w, h);
    kd_free(p);
}

static void check_svg(const char *path)
{
    char *s = rfx_slurp(path);
    ck_assert_msg(strstr(s, "<svg") != NULL, "%s: no <svg", path);
    char *end = strstr(s, "</svg>");
    ck_assert_msg(end != NULL, "%s: no </svg>", path);
    ck_assert_msg(strspn(end + 6, " \r\n") == strlen(end + 6), "%s: text after </svg>", path);
    kd_free(s);
}

static char *report_file(const char *dir, const char *name)
{
    char path[700];
    snprintf(path, sizeof path, "%s/report/%s", dir, name);
    return rfx_slurp(path);
}

static void comma(char *buf, size_t n, long long v)
{
    char d[32];
    int len = snprintf(d, sizeof d, "%lld", v), o = 0;
    for (int i = 0; i < len && (size_t)o + 2 < n; i++) {
        if (i && (len - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = d[i];
    }
    buf[o] = 0;
}

/* each row of the markdown and HTML tables carries the numbers of the JSON */
static void check_tables(const char *dir)
{
    char path[600], exp[64], line[512], a[32], b[32], c[32];
    rep_row *rows;
    int n;
    kd_err e = {0};
    snprintf(path, sizeof path, "%s/results.json", dir);
    ck_assert_int_eq(rep_read_results(path, exp, sizeof exp, &rows, &n, &e), 0);
    char *md = report_file(dir, "report.md"), *html = report_file(dir, "report.html");
    for (int i = 0; i < n; i++) {
        const rep_row *r = &rows[i];
        comma(a, sizeof a, r->params);
        comma(b, sizeof b, r->nonzero_params);
        comma(c, sizeof c, r->size_bytes);
        snprintf(line, sizeof line, "| %s | %s | %.2f%% | ", r->name, r->role, 100 * r->accuracy);
        ck_assert_msg(strstr(md, line) != NULL, "md lacks \"%s\"", line);
        snprintf(line, sizeof line, " | %s | %s | %s | ", a, b, c);
        ck_assert_msg(strstr(md, line) != NULL, "md lacks \"%s\"", line);
        snprintf(line, sizeof line, " | %.1f | ", r->latency_us_b1_p50);
        ck_assert_msg(strstr(md, line) != NULL, "md lacks \"%s\"", line);
        snprintf(line, sizeof line, "<td>%s</td><td>%s</td><td class=\"n\">%.2f%%</td>", r->name,
                 r->role, 100 * r->accuracy);
        ck_assert_msg(strstr(html, line) != NULL, "html lacks \"%s\"", line);
        snprintf(line, sizeof line, "<td class=\"n\">%s</td><td class=\"n\">%s</td>"
                                    "<td class=\"n\">%s</td>", a, b, c);
        ck_assert_msg(strstr(html, line) != NULL, "html lacks \"%s\"", line);
    }
    /* the distilled student against the teacher, and a compression ratio */
    ck_assert_ptr_nonnull(strstr(md, "| small/distilled | student | 86.62% | -2.85 pts |"));
    ck_assert_ptr_nonnull(strstr(md, "| 78.53× |"));
    ck_assert_ptr_nonnull(strstr(md, "distilled 86.62% vs scratch 85.31% (+1.31 points)"));
    ck_assert_ptr_nonnull(strstr(md, "Pareto front (accuracy vs size, smallest first): "
                                     "small/distilled/int4, small/distilled, teacher/prune90, "
                                     "teacher/int8, teacher"));
    ck_assert_ptr_nonnull(strstr(md, "## Environment"));
    /* extras, grouped by theme */
    ck_assert_ptr_nonnull(strstr(md, "| Variant | epochs | teacher | temperature | alpha |"));
    ck_assert_ptr_nonnull(strstr(md, "| Variant | source | sparsity | format | weight\\_bits |"));
    ck_assert_ptr_nonnull(strstr(md, "| teacher/prune90 | teacher | 90.00% | – | – |"));
    kd_free(md);
    kd_free(html);
    kd_free(rows);
}

START_TEST(report_full)
{
    if (!rfx_have_gnuplot()) /* make test installs gnuplot-nox; the degraded path is tested below */
        KDT_SKIP("gnuplot not found");
    char dir[256], path[700];
    kdt_tmpdir(dir, sizeof dir);
    rfx_write_run(dir, 1);
    rep_warnings w = {0};
    kd_err e = {0};
    rep_report_opts o = {.format = REP_FMT_BOTH, .plots = 1, .timeout_s = 60};
    ck_assert_msg(rep_report_write(dir, &o, &w, &e) == 0, "%s", e.msg);
    ck_assert_msg(w.n == 0, "warning: %s", w.msg[0]);
    for (int i = 0; i < NPLOTS; i++) {
        snprintf(path, sizeof path, "%s/report/plots/%s.png", dir, plots[i]);
        check_png(path);
        snprintf(path, sizeof path, "%s/report/plots/%s.svg", dir, plots[i]);
        check_svg(path);
        ck_assert_msg(exists(dir, plots[i], "dat") && exists(dir, plots[i], "gp"), "%s",
                      plots[i]);
        /* titled, both axes labelled */
        snprintf(path, sizeof path, "%s/report/plots/%s.gp", dir, plots[i]);
        char *gp = rfx_slurp(path);
        ck_assert_msg(strstr(gp, "set title") || strstr(gp, "multiplot layout"), "%s", path);
        ck_assert_msg(strstr(gp, "set xlabel '") && strstr(gp, "set ylabel '"), "%s", path);
        kd_free(gp);
    }
    check_tables(dir);
    char *html = report_file(dir, "report.html");
    /* self-contained: every plot inline, nothing fetched */
    int inline_svgs = 0;
    for (const char *s = html; (s = strstr(s, "data:image/svg+xml;base64,")); s++)
        inline_svgs++;
    ck_assert_int_eq(inline_svgs, NPLOTS);
    ck_assert_ptr_null(strstr(html, "src=\"http"));
    ck_assert_ptr_null(strstr(html, "href=\"http"));
    ck_assert_ptr_null(strstr(html, "<link"));
    ck_assert_ptr_nonnull(strstr(html, "</html>"));
    kd_free(html);
    char *md = report_file(dir, "report.md");
    ck_assert_ptr_nonnull(strstr(md, "![Accuracy vs model size](plots/acc_size.png)"));
    kd_free(md);
    /* the kept script re-runs on its own, in its folder */
    snprintf(path, sizeof path, "cd %s/report/plots && rm acc_size.png && gnuplot acc_size.gp",
             dir);
    ck_assert_int_eq(system(path), 0);
    snprintf(path, sizeof path, "%s/report/plots/acc_size.png", dir);
    check_png(path);
}
END_TEST

/* gnuplot missing: tables written, one line naming the cause, .dat/.gp kept */
static void check_degraded(const char *dir, const rep_warnings *w)
{
    ck_assert_int_eq(w->n, 1);
    ck_assert_msg(strstr(w->msg[0], "plots not drawn") && strstr(w->msg[0], "cannot run") &&
                      strstr(w->msg[0], ".gp"), "%s", w->msg[0]);
    ck_assert(exists(dir, "acc_size", "dat") && exists(dir, "acc_size", "gp"));
    ck_assert(!exists(dir, "acc_size", "png") && !exists(dir, "acc_size", "svg"));
    check_tables(dir);
    char *md = report_file(dir, "report.md");
    ck_assert_ptr_nonnull(strstr(md, "## Notes"));
    ck_assert_ptr_nonnull(strstr(md, "No plots were drawn"));
    kd_free(md);
}

/* Latency figures measured on a loaded host, or spread between repeats, are
 * flagged under Notes; a quiet run says nothing. */
START_TEST(report_flags_doubtful_latency)
{
    char dir[256], path[700];
    for (int loaded = 0; loaded <= 1; loaded++) {
        kdt_tmpdir(dir, sizeof dir);
        rep_row rows[RFX_NROWS];
        kd_err e = {0};
        rfx_rows(rows);
        for (int i = 0; i < RFX_NROWS; i++) {
            rep_row_num(&rows[i], "host_load", loaded ? 9.5 : 0.2);
            rep_row_num(&rows[i], "latency_b1_spread", loaded && i == 1 ? 0.6 : 0.02);
        }
        ck_assert_int_eq(rep_write_results(dir, "fixture", rows, RFX_NROWS, &e), 0);
        rep_env env;
        rep_env_detect(&env);
        env.cores = 2;
        ck_assert_int_eq(rep_write_env(dir, &env, &e), 0);
        rep_warnings w = {0};
        rep_report_opts o = {.format = REP_FMT_MD, .plots = 0};
        ck_assert_msg(rep_report_write(dir, &o, &w, &e) == 0, "%s", e.msg);
        snprintf(path, sizeof path, "%s/report/report.md", dir);
        char *md = rfx_slurp(path);
        ck_assert_int_eq(strstr(md, "the host was loaded") != NULL, loaded);
        ck_assert_int_eq(strstr(md, "varied by more than 25%") != NULL, loaded);
        if (loaded)
            ck_assert_ptr_nonnull(strstr(md, "load average up to 9.5 on 2 cores"));
        free(md);
    }
}
END_TEST

START_TEST(report_gnuplot_missing_option)
{
    char dir[256];
    kdt_tmpdir(dir, sizeof dir);
    rfx_write_run(dir, 1);
    rep_warnings w = {0};
    kd_err e = {0};
    rep_report_opts o = {.plots = 1, .gnuplot = "/nonexistent/gnuplot"};
    ck_assert_int_eq(rep_report_write(dir, &o, &w, &e), 0);
    check_degraded(dir, &w);
}
END_TEST

START_TEST(report_gnuplot_not_on_path)
{
    char dir[256], empty[256];
    kdt_tmpdir(dir, sizeof dir);
    kdt_tmpdir(empty, sizeof empty);
    rfx_write_run(dir, 1);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) { /* PATH changed in a child only */
        rep_warnings w = {0};
        kd_err e = {0};
        setenv("PATH", empty, 1);
        int rc = rep_report_write(dir, NULL, &w, &e);
        _exit(rc == 0 && w.n == 1 && strstr(w.msg[0], "cannot run \"gnuplot\"") ? 0 : 1);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    rep_warnings w = {0};
    snprintf(w.msg[0], sizeof w.msg[0], "plots not drawn: cannot run \"gnuplot\" (.gp)");
    w.n = 1;
    check_degraded(dir, &w);
}
END_TEST

START_TEST(report_gnuplot_fails_or_hangs)
{
    char dir[256], prog[400];
    kdt_tmpdir(dir, sizeof dir);
    rfx_write_run(dir, 0); /* results only: three plots */
    rep_warnings w = {0};
    kd_err e = {0};
    snprintf(prog, sizeof prog, "%s/fakeplot", dir);
    const char *fail = "#!/bin/sh\necho 'line 0: unknown terminal type' >&2\nexit 3\n";
    kdt_write(prog, fail, strlen(fail));
    chmod(prog, 0755);
    rep_report_opts o = {.format = REP_FMT_MD, .plots = 1, .gnuplot = prog};
    ck_assert_int_eq(rep_report_write(dir, &o, &w, &e), 0);
    ck_assert_int_eq(w.n, 3); /* one line per plot, naming it and the cause */
    ck_assert_msg(strstr(w.msg[0], "plot acc_size") && strstr(w.msg[0], "exit 3") &&
                      strstr(w.msg[0], "unknown terminal type"), "%s", w.msg[0]);
    ck_assert_ptr_nonnull(strstr(w.msg[1], "plot acc_latency"));
    ck_assert_ptr_nonnull(strstr(w.msg[2], "plot distill_small"));
    {
        char path[600];
        snprintf(path, sizeof path, "%s/report/report.md", dir);
        ck_assert_int_gt(kd_file_size(path), 100);
        snprintf(path, sizeof path, "%s/report/report.html", dir);
        ck_assert_int_lt(kd_file_size(path), 0); /* md only */
    }
    const char *hang = "#!/bin/sh\nexec sleep 20\n";
    kdt_write(prog, hang, strlen(hang));
    memset(&w, 0, sizeof w);
    o.timeout_s = 0.3;
    ck_assert_int_eq(rep_report_write(dir, &o, &w, &e), 0);
    ck_assert_int_eq(w.n, 3);
    ck_assert_msg(strstr(w.msg[0], "did not finish"), "%s", w.msg[0]);
}
END_TEST

START_TEST(report_needs_results)
{
    char dir[256], path[300];
    kdt_tmpdir(dir, sizeof dir);
    rep_warnings w = {0};
    kd_err e = {0};
    ck_assert_int_eq(rep_report_write(dir, NULL, &w, &e), KD_EIO);
    snprintf(path, sizeof path, "%s/results.json", dir);
    kdt_write(path, "{\"rows\": [", 10);
    ck_assert_int_eq(rep_report_write(dir, NULL, &w, &e), KD_EFORMAT);
    ck_assert_ptr_nonnull(strstr(e.file, "results.json"));
    /* a malformed optional file is a warning, not an error */
    rfx_write_run(dir, 0);
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    kdt_write(path, "{\"model\": 1}\n", 13);
    snprintf(path, sizeof path, "%s/sparsity.csv", dir);
    kdt_write(path, "variant,layer\nx,y\n", 18);
    rep_report_opts o = {.plots = 0};
    ck_assert_int_eq(rep_report_write(dir, &o, &w, &e), 0);
    ck_assert_int_eq(w.n, 2);
    ck_assert_ptr_nonnull(strstr(w.msg[0], "training curves skipped"));
    ck_assert_ptr_nonnull(strstr(w.msg[1], "sparsity.csv skipped"));
}
END_TEST

START_TEST(compare_writes_files)
{
    char dir[256], path[400];
    rep_row rows[RFX_NROWS];
    kdt_tmpdir(dir, sizeof dir);
    rfx_rows(rows);
    rep_warnings w = {0};
    kd_err e = {0};
    rep_report_opts o = {.plots = 0};
    ck_assert_int_eq(rep_compare_write(dir, rows, RFX_NROWS, 0, 0, NULL, 0, &o, &w, &e), 0);
    snprintf(path, sizeof path, "%s/compare.md", dir);
    char *md = rfx_slurp(path);
    ck_assert_ptr_nonnull(strstr(md, "Baseline: **teacher**"));
    ck_assert_ptr_nonnull(strstr(md, "| teacher/int8 | compressed | 89.41% | -0.06 pts |"));
    kd_free(md);
    snprintf(path, sizeof path, "%s/compare.csv", dir);
    ck_assert_int_gt(kd_file_size(path), 100);
    snprintf(path, sizeof path, "%s/plots/acc_size.gp", dir);
    ck_assert_int_gt(kd_file_size(path), 100);
}
END_TEST

Suite *suite_reports_report(void)
{
    Suite *s = suite_create("reports_report");
    TCase *t = tcase_create("report");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, report_full);
    tcase_add_test(t, report_gnuplot_missing_option);
    tcase_add_test(t, report_flags_doubtful_latency);
    tcase_add_test(t, report_gnuplot_not_on_path);
    tcase_add_test(t, report_gnuplot_fails_or_hangs);
    tcase_add_test(t, report_needs_results);
    tcase_add_test(t, compare_writes_files);
    suite_add_tcase(s, t);
    return s;
}
