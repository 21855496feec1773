/* Comparing variants from several runs or model files: one table with deltas
 * against a baseline, as text, markdown or CSV, and a combined plot. */
#include <math.h>
#include <string.h>

#include "internal.h"

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a > b && s[a - b - 1] == '/' && !strcmp(s + a - b, suffix);
}

static int starts_with_dir(const char *s, const char *prefix)
{
    size_t b = strlen(prefix);
    return !strncmp(s, prefix, b) && s[b] == '/';
}

int rep_compare_baseline(const rep_row *rows, int n, const char *name)
{
    if (!name) {
        for (int i = 0; i < n; i++)
            if (!strcmp(rows[i].role, "teacher"))
                return i;
        return n > 0 ? 0 : -1;
    }
    for (int i = 0; i < n; i++)
        if (!strcmp(rows[i].name, name))
            return i;
    int found = -1, count = 0;
    for (int i = 0; i < n; i++)
        if (ends_with(rows[i].name, name)) {
            found = found < 0 ? i : found;
            count++;
        }
    if (count == 1)
        return found;
    /* a run's label: its teacher */
    for (int i = 0; i < n; i++)
        if (starts_with_dir(rows[i].name, name) && !strcmp(rows[i].role, "teacher"))
            return i;
    return -1;
}

static void csv_num(kd_buf *b, double v, const char *fmt)
{
    kd_buf_put(b, ",", 1);
    if (v >= 0 && isfinite(v))
        rep_bprintf(b, fmt, v);
}

/* a name from a results file: cleaned, since the CSV is also printed */
static void csv_text(kd_buf *b, const char *s)
{
    char clean[256];
    rep_text_clean(clean, sizeof clean, s);
    rep_csv_str(b, clean);
}

static double ratio(double num, double den)
{
    return num > 0 && den > 0 ? num / den : -1;
}

/* raw numbers (no units, separators or rounding), for spreadsheets */
static void compare_csv(const rep_row *rows, int n, int base, kd_buf *b)
{
    const rep_row *s = base >= 0 && base < n ? &rows[base] : NULL;
    rep_bprintf(b, "name,role,accuracy,delta_acc_pts,params,nonzero_params,size_bytes,"
                   "compression,speedup,latency_us_b1_p50,latency_us_b1_p99,throughput_b256,"
                   "baseline\n");
    for (int i = 0; i < n; i++) {
        const rep_row *r = &rows[i];
        csv_text(b, r->name);
        kd_buf_put(b, ",", 1);
        csv_text(b, r->role);
        csv_num(b, r->accuracy, "%.6g");
        kd_buf_put(b, ",", 1);
        if (s && r->accuracy >= 0 && s->accuracy >= 0)
            rep_bprintf(b, "%.4f", 100 * (r->accuracy - s->accuracy));
        csv_num(b, (double)r->params, "%.0f");
        csv_num(b, (double)r->nonzero_params, "%.0f");
        csv_num(b, (double)r->size_bytes, "%.0f");
        csv_num(b, s ? ratio((double)s->size_bytes, (double)r->size_bytes) : -1, "%.4f");
        csv_num(b, s ? ratio(s->latency_us_b1_p50, r->latency_us_b1_p50) : -1, "%.4f");
        csv_num(b, r->latency_us_b1_p50, "%.6g");
        csv_num(b, r->latency_us_b1_p99, "%.6g");
        csv_num(b, r->throughput_b256, "%.6g");
        kd_buf_put(b, ",", 1);
        csv_text(b, s ? s->name : "");
        kd_buf_put(b, "\n", 1);
    }
}

void rep_compare_table(const rep_row *rows, int n, int baseline, int style, kd_buf *out)
{
    if (style == REP_TABLE_CSV) {
        compare_csv(rows, n, baseline, out);
        return;
    }
    /* a terminal gets one table; a page two, each a page wide */
    int first = style == REP_TABLE_TEXT ? REP_RT_ALL : REP_RT_ACCURACY;
    int last = style == REP_TABLE_TEXT ? REP_RT_ALL : REP_RT_SPEED;
    for (int part = first; part <= last; part++) {
        rep_table t;
        kd_err e;
        if (rep_results_table(rows, n, baseline, "baseline", part, &t, &e) != KD_OK) {
            out->failed = 1;
            return;
        }
        if (part > first)
            kd_buf_put(out, "\n", 1);
        rep_table_render(&t, style, out);
        rep_table_free(&t);
    }
}

static int write_buf(const char *dir, const char *name, kd_buf *b, kd_err *e)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = b->failed ? kd_err_set(e, KD_ENOMEM, "out of memory")
                       : kd_write_atomic(path, b->p, b->len, e);
    kd_buf_free(b);
    return rc;
}

int rep_compare_write(const char *out_dir, const rep_row *rows, int n, int baseline,
                      int by_source, const rep_ladder *ladders, int nladders,
                      const rep_report_opts *o, rep_warnings *w, kd_err *e)
{
    char pdir[4400];
    snprintf(pdir, sizeof pdir, "%s/plots", out_dir);
    int rc = kd_mkdirs(pdir, e);
    if (rc != KD_OK)
        return rc;
    rep_plotter *p = kd_calloc(1, sizeof *p);
    if (!p)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    rep_plotter_init(p, pdir, o, w);
    rc = rep_plot_acc_size(p, rows, n, by_source, ladders, nladders, e);
    rep_plotter_finish(p);
    kd_buf b = {0};
    if (rc == KD_OK) {
        rep_bprintf(&b, "# kdbench comparison\n\nBaseline: **");
        rep_md_esc(&b, baseline >= 0 && baseline < n ? rows[baseline].name : "none");
        rep_bprintf(&b, "**. Δ is in accuracy points; compression and speed-up are the "
                        "baseline's bytes and batch-1 p50 latency divided by the variant's.\n\n");
        rep_compare_table(rows, n, baseline, REP_TABLE_MD, &b);
        if (p->nmade)
            rep_bprintf(&b, "\n![Accuracy vs model size](plots/acc_size.png)\n");
        rc = write_buf(out_dir, "compare.md", &b, e);
    }
    if (rc == KD_OK) {
        compare_csv(rows, n, baseline, &b);
        rc = write_buf(out_dir, "compare.csv", &b, e);
    }
    kd_buf_free(&b);
    kd_free(p);
    return rc;
}
