/* The run report: RUN_DIR/report/report.md and report.html, made from the
 * result files alone (results.json, metrics.jsonl, env.json, the CSVs). */
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

void rep_warn(rep_warnings *w, const char *fmt, ...)
{
    if (!w || w->n >= REP_MAX_WARN)
        return;
    va_list ap;
    va_start(ap, fmt);
    char raw[sizeof w->msg[0]];
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    /* names, paths and gnuplot's own messages: printed to a terminal later */
    rep_text_clean(w->msg[w->n++], sizeof w->msg[0], raw);
}

static int find_row(const rep_doc *d, const char *name)
{
    for (int i = 0; i < d->nrows; i++)
        if (!strcmp(d->rows[i].name, name))
            return i;
    return -1;
}

static void optional_inputs(rep_doc *d, rep_warnings *w)
{
    char path[4400], buf[1200];
    kd_err e = {0};
    snprintf(path, sizeof path, "%s/metrics.jsonl", d->dir);
    if (access(path, F_OK) == 0 && rep_read_metrics(path, &d->m, &d->nm, &e) != KD_OK)
        rep_warn(w, "training curves skipped: %s", kd_err_str(&e, buf, sizeof buf));
    snprintf(path, sizeof path, "%s/env.json", d->dir);
    if (access(path, F_OK) == 0) {
        d->has_env = rep_read_env(path, &d->env, &e) == KD_OK;
        if (!d->has_env)
            rep_warn(w, "environment skipped: %s", kd_err_str(&e, buf, sizeof buf));
    }
}

/* Latency figures a reader should doubt: the host was loaded while they
 * were measured (1-minute load average above its cores), or a row's batch-1
 * repeats spread by more than REP_SPREAD_WARN of their median. */
#define REP_SPREAD_WARN 0.25
static void latency_notes(const rep_doc *d, rep_warnings *w)
{
    double load = -1;
    int nspread = 0, first = -1;
    for (int i = 0; i < d->nrows; i++) {
        double l = rep_row_get_num(&d->rows[i], "host_load");
        load = l > load ? l : load;
        if (rep_row_get_num(&d->rows[i], "latency_b1_spread") > REP_SPREAD_WARN && nspread++ == 0)
            first = i;
    }
    if (d->has_env && d->env.cores > 0 && load > d->env.cores)
        rep_warn(w, "the host was loaded while latencies were measured (load average up to %.1f "
                 "on %d cores): ratios within this run hold better than absolute figures", load,
                 d->env.cores);
    if (nspread)
        rep_warn(w, "batch-1 latency varied by more than %.0f%% between repeats for %d row%s "
                 "(first: %s): those figures are uncertain", 100 * REP_SPREAD_WARN, nspread,
                 nspread == 1 ? "" : "s", first >= 0 ? d->rows[first].name : "");
}

static int load_doc(rep_doc *d, const char *run_dir, rep_warnings *w, kd_err *e)
{
    char path[4400];
    memset(d, 0, sizeof *d);
    snprintf(d->dir, sizeof d->dir, "%s", run_dir);
    snprintf(path, sizeof path, "%s/results.json", run_dir);
    int rc = rep_read_results(path, d->experiment, sizeof d->experiment, &d->rows, &d->nrows, e);
    if (rc != KD_OK)
        return rc;
    d->teacher = -1;
    for (int i = 0; i < d->nrows && d->teacher < 0; i++)
        if (!strcmp(d->rows[i].role, "teacher"))
            d->teacher = i;
    optional_inputs(d, w);
    rep_ladder_load(d, w);
    rep_serving_load(d, w);
    latency_notes(d, w);
    return KD_OK;
}

static void free_doc(rep_doc *d)
{
    kd_free(d->rows);
    kd_free(d->m);
    kd_free(d->serving);
}

/* ---- summary lines ------------------------------------------------------------ */

static void add_line(rep_doc *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_line(rep_doc *d, const char *fmt, ...)
{
    if (d->nsum >= REP_DOC_LINES)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->sum[d->nsum++], sizeof d->sum[0], fmt, ap);
    va_end(ap);
}

static void front_line(rep_doc *d, const double *sx, const double *sy, const int *idx, int np)
{
    int front[REP_DOC_MAXPTS];
    char line[sizeof d->sum[0]] = "";
    rep_pareto(sx, sy, np, front);
    for (int i = 0; i < np; i++) /* idx is sorted by size */
        if (front[i])
            snprintf(line + strlen(line), sizeof line - strlen(line), "%s%s",
                     line[0] ? ", " : "", d->rows[idx[i]].name);
    add_line(d, "Pareto front (accuracy vs size, smallest first): %s", line);
}

static void sorted_points(const rep_doc *d, double *sx, double *sy, int *idx, int *np)
{
    *np = 0;
    for (int i = 0; i < d->nrows && *np < REP_DOC_MAXPTS; i++) {
        const rep_row *r = &d->rows[i];
        if (r->size_bytes <= 0 || r->accuracy < 0)
            continue;
        int k = (*np)++;
        while (k > 0 && sx[k - 1] > (double)r->size_bytes) {
            sx[k] = sx[k - 1];
            sy[k] = sy[k - 1];
            idx[k] = idx[k - 1];
            k--;
        }
        sx[k] = (double)r->size_bytes;
        sy[k] = r->accuracy;
        idx[k] = i;
    }
}

static void best_lines(rep_doc *d)
{
    int best = -1, small = -1;
    const rep_row *t = d->teacher >= 0 ? &d->rows[d->teacher] : NULL;
    for (int i = 0; i < d->nrows; i++) {
        const rep_row *r = &d->rows[i];
        if (r->accuracy >= 0 && (best < 0 || r->accuracy > d->rows[best].accuracy))
            best = i;
        if (t && r->accuracy >= 0 && t->accuracy - r->accuracy <= 0.01 && r->size_bytes > 0 &&
            (small < 0 || r->size_bytes < d->rows[small].size_bytes))
            small = i;
    }
    char a[32], b[32];
    if (best >= 0) {
        rep_fmt_pct(a, sizeof a, d->rows[best].accuracy);
        add_line(d, "Most accurate: %s (%s)", d->rows[best].name, a);
    }
    if (t && small >= 0 && small != d->teacher) {
        const rep_row *r = &d->rows[small];
        rep_fmt_pct(a, sizeof a, r->accuracy);
        rep_fmt_count(b, sizeof b, (double)r->size_bytes);
        add_line(d, "Smallest within 1 point of the teacher: %s (%s, %s bytes, %.1f× smaller)",
                 r->name, a, b, (double)t->size_bytes / (double)r->size_bytes);
    }
}

static void distill_lines(rep_doc *d)
{
    for (int i = 0; i < d->nrows; i++) {
        const char *n = d->rows[i].name, *slash = strrchr(n, '/');
        if (!slash || strcmp(slash, "/distilled"))
            continue;
        char scratch[128];
        snprintf(scratch, sizeof scratch, "%.*s/scratch", (int)(slash - n), n);
        int s = find_row(d, scratch);
        const rep_row *dr = &d->rows[i];
        if (s < 0 || dr->accuracy < 0 || d->rows[s].accuracy < 0)
            continue;
        char a[32], b[32];
        rep_fmt_pct(a, sizeof a, dr->accuracy);
        rep_fmt_pct(b, sizeof b, d->rows[s].accuracy);
        add_line(d, "Distillation, %.*s: distilled %s vs scratch %s (%+.2f points)",
                 (int)(slash - n), n, a, b, 100 * (dr->accuracy - d->rows[s].accuracy));
    }
}

static void summary(rep_doc *d)
{
    double sx[REP_DOC_MAXPTS], sy[REP_DOC_MAXPTS];
    int idx[REP_DOC_MAXPTS], np;
    add_line(d, "Experiment: %s, %d variant%s (from %s/results.json)",
             d->experiment[0] ? d->experiment : "(unnamed)", d->nrows, d->nrows == 1 ? "" : "s",
             d->dir);
    if (d->teacher >= 0) {
        char a[32], b[32];
        rep_fmt_pct(a, sizeof a, d->rows[d->teacher].accuracy);
        rep_fmt_count(b, sizeof b, (double)d->rows[d->teacher].size_bytes);
        add_line(d, "Teacher: %s test accuracy, %s bytes", a, b);
    }
    best_lines(d);
    distill_lines(d);
    for (int i = 0; i < d->nladders; i++) {
        char line[sizeof d->sum[0]];
        rep_ladder_summary(d, i, line, sizeof line);
        if (line[0])
            add_line(d, "%s", line);
    }
    sorted_points(d, sx, sy, idx, &np);
    if (np > 1)
        front_line(d, sx, sy, idx, np);
}

/* ---- the whole report ------------------------------------------------------------ */

static int write_out(const rep_doc *d, const char *name, kd_buf *b, kd_err *e)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/report/%s", d->dir, name);
    int rc = b->failed ? kd_err_set(e, KD_ENOMEM, "out of memory")
                       : kd_write_atomic(path, b->p, b->len, e);
    kd_buf_free(b);
    return rc;
}

static int draw_plots(rep_doc *d, const rep_report_opts *o, rep_warnings *w, kd_err *e)
{
    char pdir[4400];
    snprintf(pdir, sizeof pdir, "%s/report/plots", d->dir);
    int rc = kd_mkdirs(pdir, e);
    if (rc != KD_OK)
        return rc;
    rep_plotter_init(&d->plots, pdir, o, w);
    if ((rc = rep_plot_acc_size(&d->plots, d->rows, d->nrows, 0, d->ladders, d->nladders, e)) == KD_OK &&
        (rc = rep_plot_acc_latency(&d->plots, d->rows, d->nrows, e)) == KD_OK &&
        (rc = rep_plot_curves(&d->plots, d->m, d->nm, e)) == KD_OK &&
        (rc = rep_plot_distill(&d->plots, d->rows, d->nrows, e)) == KD_OK &&
        (rc = rep_plot_csvs(&d->plots, d->dir, d->rows, d->nrows, e)) == KD_OK)
        rc = rep_serving_plot(d, &d->plots, e);
    rep_plotter_finish(&d->plots);
    return rc;
}

int rep_report_write(const char *run_dir, const rep_report_opts *o, rep_warnings *w, kd_err *e)
{
    rep_report_opts def = {.format = REP_FMT_BOTH, .plots = 1};
    rep_doc *d = kd_calloc(1, sizeof *d);
    if (!d)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    if (!o)
        o = &def;
    int fmt = o->format ? o->format : REP_FMT_BOTH;
    int rc = load_doc(d, run_dir, w, e);
    if (rc == KD_OK)
        rc = draw_plots(d, o, w, e);
    if (rc == KD_OK) {
        summary(d);
        d->w = w;
    }
    kd_buf b = {0};
    if (rc == KD_OK && (fmt & REP_FMT_MD) && (rc = rep_doc_md(d, &b, e)) == KD_OK)
        rc = write_out(d, "report.md", &b, e);
    if (rc == KD_OK && (fmt & REP_FMT_HTML) && (rc = rep_doc_html(d, &b, e)) == KD_OK)
        rc = write_out(d, "report.html", &b, e);
    kd_buf_free(&b);
    free_doc(d);
    kd_free(d);
    return rc;
}
