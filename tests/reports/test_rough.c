/* The report's rough edges (issue 13, item 4), held by what the report
 * writes: the plots' .gp scripts and .dat files (written with or without
 * gnuplot), the tables' cells and widths in report.md and report.html. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../reports/internal.h"
#include "../kdtest.h"
#include "fixture.h"

static void put(const char *dir, const char *name, const char *text)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    kdt_write(path, text, strlen(text));
}

/* The report of dir, written with plots (their captions reach report.md only
 * when drawn) or without: the .dat and .gp files are written either way. */
static void report_with(const char *dir, int plots)
{
    rep_warnings w = {0};
    kd_err e = {0};
    rep_report_opts o = {.format = REP_FMT_BOTH, .plots = plots, .timeout_s = 60};
    ck_assert_msg(rep_report_write(dir, &o, &w, &e) == 0, "%s", e.msg);
    ck_assert_msg(w.n == 0, "warning: %s", w.msg[0]);
}

static void report(const char *dir) { report_with(dir, 0); }

static char *file(const char *dir, const char *name)
{
    char path[700];
    snprintf(path, sizeof path, "%s/report/%s", dir, name);
    return rfx_slurp(path);
}

static int count(const char *s, const char *what)
{
    int n = 0;
    for (; (s = strstr(s, what)); s += strlen(what))
        n++;
    return n;
}

/* sensitivity.csv is measured on the validation split: the axis says so */
START_TEST(sensitivity_says_validation)
{
    char dir[256];
    kdt_tmpdir(dir, sizeof dir);
    rfx_write_run(dir, 1);
    int have = rfx_have_gnuplot();
    report_with(dir, have);
    char *gp = file(dir, "plots/sensitivity.gp"), *md = file(dir, "report.md");
    ck_assert_msg(strstr(gp, "set ylabel 'Validation accuracy (%)'"), "%s", gp);
    ck_assert_ptr_null(strstr(gp, "Test accuracy"));
    ck_assert_msg(strstr(gp, "set offsets graph 0.03"), "%s", gp); /* no point on the border */
    ck_assert(!have || strstr(md, "Validation accuracy (test accuracy when"));
    kd_free(gp);
    kd_free(md);
}
END_TEST

/* weights_hist: one panel per variant, log counts, exact zeros left out and
 * their share named in the panel's title */
START_TEST(weights_hist_small_multiples)
{
    char dir[256];
    kdt_tmpdir(dir, sizeof dir);
    rfx_write_run(dir, 1);
    int have = rfx_have_gnuplot();
    put(dir, "weights_hist.csv", "variant,layer,bin_lo,bin_hi,count,zeros\n"
                                 "teacher,dense1,-0.5,0,100,0\n"
                                 "teacher,dense1,0,0.5,100,0\n"
                                 "teacher/prune90,dense1,-0.5,0,10,180\n"
                                 "teacher/prune90,dense1,0,0.5,10,180\n"
                                 "teacher/int8,dense1,-0.5,0,99,2\n"
                                 "teacher/int8,dense1,0,0.5,99,2\n");
    report_with(dir, have);
    char *gp = file(dir, "plots/weights_hist.gp"), *md = file(dir, "report.md");
    ck_assert_msg(strstr(gp, "set logscale y"), "%s", gp);
    ck_assert_msg(strstr(gp, "set multiplot layout 1,3"), "%s", gp); /* three variants */
    ck_assert_int_eq(count(gp, "  set title "), 3);
    ck_assert_msg(strstr(gp, "set title 'teacher/prune90 (90.0% exact zeros not shown)'"), "%s",
                  gp);
    ck_assert_msg(strstr(gp, "set title 'teacher (no exact zeros)'"), "%s", gp);
    ck_assert(!have || strstr(md, "Exact zeros are left out"));
    kd_free(gp);
    kd_free(md);
    /* an older file without the zero count: still drawn, and it says zeros are in */
    rfx_write_run(dir, 1);
    report_with(dir, have);
    gp = file(dir, "plots/weights_hist.gp");
    md = file(dir, "report.md");
    ck_assert_msg(strstr(gp, "set logscale y"), "%s", gp);
    ck_assert_msg(strstr(gp, "set title 'teacher/int8'"), "%s", gp); /* no zero count */
    ck_assert(!have || strstr(md, "exact zeros included"));
    kd_free(gp);
    kd_free(md);
}
END_TEST

/* variants with layers of their own, more layers than a panel shows, and a
 * layer of nothing but zeros: every panel is valid gnuplot */
START_TEST(weights_hist_sparse_panels)
{
    if (!rfx_have_gnuplot())
        KDT_SKIP("gnuplot not found");
    char dir[256], line[200];
    kdt_tmpdir(dir, sizeof dir);
    rfx_write_run(dir, 0);
    kd_buf b = {0};
    rep_bprintf(&b, "variant,layer,bin_lo,bin_hi,count,zeros\n");
    for (int v = 0; v < 3; v++)
        for (int l = 0; l < 8; l++) {
            snprintf(line, sizeof line, "v%d,l%d,-0.1,0,%d,0\nv%d,l%d,0,0.1,%d,0\n", v,
                     v * 8 + l, v == 2 ? 0 : 5, v, v * 8 + l, v == 2 ? 0 : 7);
            rep_bprintf(&b, "%s", line);
        }
    kd_buf_put(&b, "", 1);
    put(dir, "weights_hist.csv", (const char *)b.p);
    kd_buf_free(&b);
    report_with(dir, 1); /* no warning: gnuplot drew it */
    char *gp = file(dir, "plots/weights_hist.gp");
    ck_assert_int_eq(count(gp, "with boxes fs transparent solid 0.35 lt"), 6 + 6 + 12);
    kd_free(gp);
}
END_TEST

/* no table line of report.md holds more than max columns */
static void md_widths(const char *md, int max)
{
    for (const char *s = md; *s;) {
        size_t k = strcspn(s, "\n");
        if (*s == '|') {
            int bars = 0;
            for (size_t i = 0; i < k; i++)
                bars += s[i] == '|' && (i == 0 || s[i - 1] != '\\');
            ck_assert_msg(bars - 1 <= max, "%d columns: %.*s", bars - 1, (int)k, s);
        }
        s += k + (s[k] == '\n');
    }
}

static void html_widths(const char *html, int max)
{
    for (const char *s = html; (s = strstr(s, "<tr>")); s++) {
        const char *end = strstr(s, "</tr>");
        ck_assert_ptr_nonnull(end);
        int cells = 0;
        for (const char *c = s; c < end; c++)
            cells += !strncmp(c, "<td", 3) || !strncmp(c, "<th>", 4);
        ck_assert_msg(cells <= max, "%d cells: %.*s", cells, (int)(end - s), s);
    }
}

/* the results table is split so each part fits a page; throughput is shown */
START_TEST(tables_fit_the_page)
{
    char dir[256];
    kdt_tmpdir(dir, sizeof dir);
    rfx_write_run(dir, 1);
    report(dir);
    char *md = file(dir, "report.md"), *html = file(dir, "report.html");
    md_widths(md, 8);
    html_widths(html, 8);
    ck_assert_ptr_nonnull(strstr(md, "| Variant | p50 (µs) | p99 (µs) | Speed-up | "
                                     "Samples/s (b256) |"));
    ck_assert_ptr_nonnull(strstr(md, "| teacher | 118.2 | 160.5 | 1.00× | 41,200 |"));
    ck_assert_ptr_nonnull(strstr(html, "<th>Samples/s (b256)</th>"));
    kd_free(md);
    kd_free(html);
}
END_TEST

static const char *cell(const rep_table *t, int row, const char *head)
{
    for (int c = 0; c < t->ncols; c++)
        if (!strcmp(t->head[c], head))
            return t->cell[row][c];
    ck_abort_msg("no column %s", head);
    return NULL;
}

/* mean ± sd only over several seeds */
START_TEST(one_seed_no_sd)
{
    rep_row rows[3];
    rep_row_init(&rows[0], "one", "student");
    rows[0].accuracy = 0.8882;
    rep_row_num(&rows[0], "seeds", 1);
    rep_row_num(&rows[0], "accuracy_std", 0);
    rep_row_init(&rows[1], "three", "student");
    rows[1].accuracy = 0.8900;
    rep_row_num(&rows[1], "seeds", 3);
    rep_row_num(&rows[1], "accuracy_std", 0.0123);
    rep_row_init(&rows[2], "plain", "compressed");
    rows[2].accuracy = 0.8;
    rep_table t;
    kd_err e;
    ck_assert_int_eq(rep_results_table(rows, 3, -1, NULL, REP_RT_ACCURACY, &t, &e), 0);
    ck_assert_str_eq(cell(&t, 0, "Accuracy"), "88.82%");
    ck_assert_str_eq(cell(&t, 1, "Accuracy"), "89.00% ± 1.23");
    ck_assert_str_eq(cell(&t, 2, "Accuracy"), "80.00%");
    rep_table_free(&t);
}
END_TEST

/* variant details: fractions as percentages, every key shown (none dropped
 * past a column limit), no table wider than the page */
START_TEST(details_percent_and_complete)
{
    char dir[256];
    kdt_tmpdir(dir, sizeof dir);
    rep_row rows[2];
    rep_row_init(&rows[0], "s/scratch", "student");
    rows[0].accuracy = 0.8882;
    rep_row_num(&rows[0], "seeds", 2);
    rep_row_str(&rows[0], "accuracy_per_seed", "0.8882 0.8901");
    rep_row_num(&rows[0], "latency_b1_spread", 0.0247923);
    rep_row_init(&rows[1], "p", "compressed");
    rows[1].accuracy = 0.897;
    rep_row_num(&rows[1], "sparsity", 0.898092);
    char key[32];
    for (int i = 0; i < 18; i++) { /* more keys than one table can hold */
        snprintf(key, sizeof key, "k%02d", i);
        rep_row_num(&rows[1], key, i);
    }
    kd_err e = {0};
    ck_assert_int_eq(rep_write_results(dir, "x", rows, 2, &e), 0);
    report(dir);
    char *md = file(dir, "report.md"), *html = file(dir, "report.html");
    md_widths(md, 8);
    html_widths(html, 8);
    ck_assert_msg(strstr(md, "| 89.81% |"), "%s", md);           /* sparsity */
    ck_assert_msg(strstr(md, "| 2.48% |"), "%s", md);            /* latency spread */
    ck_assert_msg(strstr(md, "| 88.82% 89.01% |"), "%s", md);    /* per-seed list */
    ck_assert_ptr_null(strstr(md, "0.898"));
    for (int i = 0; i < 18; i++) {
        snprintf(key, sizeof key, " k%02d |", i);
        ck_assert_msg(strstr(md, key), "key k%02d dropped", i);
    }
    kd_free(md);
    kd_free(html);
}
END_TEST

/* the sparsity plot shows pruned variants only: a quantized variant's
 * rounding zeros are not pruning */
START_TEST(sparsity_pruned_only)
{
    char dir[256];
    kdt_tmpdir(dir, sizeof dir);
    rep_row rows[4];
    rep_row_init(&rows[0], "teacher", "teacher");
    rep_row_init(&rows[1], "agp", "compressed");
    rep_row_str(&rows[1], "passes", "prune(layer,0.90,agp,8)");
    rep_row_init(&rows[2], "q4", "compressed");
    rep_row_str(&rows[2], "passes", "quantize(int4,weights)");
    rep_row_init(&rows[3], "prune_q", "compressed");
    rep_row_str(&rows[3], "passes", "prune(global,0.80,oneshot)+quantize(int8,static,minmax)");
    for (int i = 0; i < 4; i++)
        rows[i].accuracy = 0.9;
    kd_err e = {0};
    ck_assert_int_eq(rep_write_results(dir, "x", rows, 4, &e), 0);
    put(dir, "sparsity.csv", "variant,layer,params,nonzero\n"
                             "teacher,d1,100,100\nagp,d1,100,10\nq4,d1,100,86\n"
                             "prune_q,d1,100,20\n");
    int have = rfx_have_gnuplot();
    report_with(dir, have);
    char *dat = file(dir, "plots/sparsity.dat"), *md = file(dir, "report.md");
    ck_assert_msg(!strncmp(dat, "layer \"agp\" \"prune_q\"\n", 22), "%s", dat);
    ck_assert_ptr_null(strstr(dat, "q4\""));
    kd_free(dat);
    dat = file(dir, "plots/sparsity.gp"); /* the key clear of the x label */
    ck_assert_msg(strstr(dat, "set key outside right"), "%s", dat);
    ck_assert(!have || strstr(md, "for the pruned variants only"));
    kd_free(dat);
    kd_free(md);
}
END_TEST

/* curves: y ticks never print the same label twice (no %.0f on fractional
 * steps), the key sits outside the plot area, epochs are padded off the border */
START_TEST(curves_ticks_and_key)
{
    char dir[256];
    kdt_tmpdir(dir, sizeof dir);
    rfx_write_run(dir, 1);
    put(dir, "metrics.jsonl",
        "{\"model\": \"v [pass 2]\", \"epoch\": 1, \"loss\": 0.35, \"train_acc\": 0.901, "
        "\"val_loss\": 0.306, \"val_acc\": 0.8955}\n"
        "{\"model\": \"v [pass 2]\", \"epoch\": 2, \"loss\": 0.23, \"train_acc\": 0.9105, "
        "\"val_loss\": 0.303, \"val_acc\": 0.8975}\n");
    report(dir);
    char *gp = file(dir, "plots/curves_v__pass_2_.gp");
    ck_assert_ptr_null(strstr(gp, "%.0f"));
    ck_assert_msg(strstr(gp, "set format y '%g'"), "%s", gp);
    ck_assert_ptr_null(strstr(gp, "set key top right"));
    ck_assert_ptr_null(strstr(gp, "set key bottom right"));
    ck_assert_msg(strstr(gp, "set key at screen"), "%s", gp);
    ck_assert_msg(strstr(gp, "set xrange [0.7:2.3]"), "%s", gp);
    /* training values are points too: a one-epoch pass still shows them */
    ck_assert_msg(strstr(gp, "using 1:2 with linespoints dt 2 pt 6"), "%s", gp);
    /* one model: the key names the line, not the model again */
    ck_assert_ptr_null(strstr(gp, "title 'v [pass 2] training"));
    kd_free(gp);
}
END_TEST

/* sizes and latencies within a decade: the log axes get 1-2-5 labels, not one */
START_TEST(scatter_ticks_within_a_decade)
{
    char dir[256];
    kdt_tmpdir(dir, sizeof dir);
    rep_row rows[3];
    const double size[3] = {52000, 100000, 310000}, p50[3] = {0.6, 1.1, 1.3};
    for (int i = 0; i < 3; i++) {
        rep_row_init(&rows[i], i ? "v" : "teacher", i ? "compressed" : "teacher");
        rows[i].size_bytes = (long long)size[i];
        rows[i].accuracy = 0.8 + 0.01 * i;
        rows[i].latency_us_b1_p50 = p50[i];
        rows[i].latency_us_b1_p99 = p50[i] * 1.2;
    }
    kd_err e = {0};
    ck_assert_int_eq(rep_write_results(dir, "x", rows, 3, &e), 0);
    report(dir);
    char *gp = file(dir, "plots/acc_size.gp");
    ck_assert_msg(strstr(gp, "set xtics (50000, 100000, 200000, 500000)"), "%s", gp);
    kd_free(gp);
    gp = file(dir, "plots/acc_latency.gp");
    ck_assert_msg(strstr(gp, "set xtics (0.5, 1, 2)"), "%s", gp);
    kd_free(gp);
}
END_TEST

Suite *suite_reports_rough(void)
{
    Suite *s = suite_create("reports_rough");
    TCase *t = tcase_create("rough");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, sensitivity_says_validation);
    tcase_add_test(t, weights_hist_small_multiples);
    tcase_add_test(t, weights_hist_sparse_panels);
    tcase_add_test(t, tables_fit_the_page);
    tcase_add_test(t, one_seed_no_sd);
    tcase_add_test(t, details_percent_and_complete);
    tcase_add_test(t, sparsity_pruned_only);
    tcase_add_test(t, curves_ticks_and_key);
    tcase_add_test(t, scatter_ticks_within_a_decade);
    suite_add_tcase(s, t);
    return s;
}
