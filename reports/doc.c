/* Rendering one run's report as markdown and as a self-contained HTML page:
 * the same sections, tables and summary lines in both. */
#include <string.h>

#include "internal.h"

#define SVG_MAX_BYTES (8 << 20)

static const char *const env_keys[] = {"CPU", "Cores", "BLAS threads", "BLAS", "Libraries",
                                       "kdbench", "Git commit", "Compiler", "OS", "Date"};
#define NENV (int)(sizeof env_keys / sizeof env_keys[0])

static void env_values(const rep_env *v, char out[NENV][160])
{
    snprintf(out[0], 160, "%s", v->cpu);
    snprintf(out[1], 160, "%d", v->cores);
    snprintf(out[2], 160, "%d", v->threads);
    snprintf(out[3], 160, "%s", v->blas);
    snprintf(out[4], 160, "%s", v->libs);
    snprintf(out[5], 160, "%s", v->version);
    snprintf(out[6], 160, "%s", v->git);
    snprintf(out[7], 160, "%s", v->compiler);
    snprintf(out[8], 160, "%s", v->os);
    snprintf(out[9], 160, "%s", v->date);
}

/* "### title" in markdown, <h3> in HTML */
static void subhead(kd_buf *b, int style, const char *title)
{
    if (style == REP_TABLE_MD)
        rep_bprintf(b, "\n### %s\n\n", title);
    else
        rep_bprintf(b, "<h3>%s</h3>\n", title);
}

/* The results in two tables a page wide (accuracy and size; speed), then the
 * variant details, one narrow table per theme. */
static int tables(const rep_doc *d, int style, kd_buf *b, kd_err *e)
{
    rep_table t;
    static const char *const part_title[] = {"Accuracy and size", "Speed"};
    for (int part = REP_RT_ACCURACY; part <= REP_RT_SPEED; part++) {
        int rc = rep_results_table(d->rows, d->nrows, d->teacher, "teacher", part, &t, e);
        if (rc != KD_OK)
            return rc;
        subhead(b, style, part_title[part - REP_RT_ACCURACY]);
        rep_table_render(&t, style, b);
        rep_table_free(&t);
    }
    rep_detail_group g[REP_DETAIL_MAX];
    int ng = rep_detail_groups(d->rows, d->nrows, g);
    for (int i = 0; i < ng; i++) {
        int rc = rep_detail_table(d->rows, d->nrows, &g[i], &t, e);
        if (rc != KD_OK)
            return rc;
        char title[96];
        snprintf(title, sizeof title, "Variant details: %.47s", g[i].title);
        subhead(b, style, title); /* ours: no escaping needed */
        rep_table_render(&t, style, b);
        rep_table_free(&t);
    }
    return KD_OK;
}

static const char table_note[] =
    "Accuracy is on the test set (mean ± standard deviation in points when a row averages "
    "several seeds); Δ is in percentage points against the teacher. Bytes are the size of the "
    "model file on disk; compression and speed-up are the teacher's bytes and batch-1 p50 "
    "latency divided by the variant's. Latency is measured at batch 1 (p50, p99); throughput "
    "at batch 256. Shares (sparsity, latency spread) are percentages.";

/* ---- markdown ------------------------------------------------------------------- */

static void md_env(const rep_doc *d, kd_buf *b)
{
    rep_bprintf(b, "\n## Environment\n\n");
    if (!d->has_env) {
        rep_bprintf(b, "No env.json in the run directory.\n");
        return;
    }
    char v[NENV][160];
    env_values(&d->env, v);
    for (int i = 0; i < NENV; i++)
        if (v[i][0] && strcmp(v[i], "0")) {
            rep_bprintf(b, "- **%s**: ", env_keys[i]);
            rep_md_esc(b, v[i]);
            rep_bprintf(b, "\n");
        }
}

static void md_plots(const rep_doc *d, kd_buf *b)
{
    rep_bprintf(b, "\n## Plots\n\n");
    if (!d->plots.nmade)
        rep_bprintf(b, "No plots were drawn (see Notes).\n");
    for (int i = 0; i < d->plots.nmade; i++) {
        const rep_plot_made *p = &d->plots.made[i];
        rep_bprintf(b, "### ");
        rep_md_esc(b, p->title);
        rep_bprintf(b, "\n\n![");
        rep_md_esc(b, p->title);
        rep_bprintf(b, "](plots/%s.png)\n\n", p->name); /* name: [A-Za-z0-9_-] */
        rep_md_esc(b, p->caption);
        rep_bprintf(b, "  \n");
        rep_bprintf(b, "Files: [SVG](plots/%s.svg) · [data](plots/%s.dat) · "
                       "[gnuplot script](plots/%s.gp)\n\n", p->name, p->name, p->name);
    }
}

/* "- text" with the text escaped: names and paths from the run directory */
static void md_item(kd_buf *b, const char *text)
{
    rep_bprintf(b, "- ");
    rep_md_esc(b, text);
    rep_bprintf(b, "\n");
}

int rep_doc_md(const rep_doc *d, kd_buf *b, kd_err *e)
{
    rep_bprintf(b, "# kdbench report: ");
    rep_md_esc(b, d->experiment[0] ? d->experiment : "(unnamed)");
    rep_bprintf(b, "\n\n## Summary\n\n");
    for (int i = 0; i < d->nsum; i++)
        md_item(b, d->sum[i]);
    rep_bprintf(b, "\n## Results\n\n");
    int rc = tables(d, REP_TABLE_MD, b, e);
    if (rc != KD_OK)
        return rc;
    rep_bprintf(b, "\n%s\n", table_note);
    if ((rc = rep_ladder_section(d, REP_TABLE_MD, b, e)) != KD_OK ||
        (rc = rep_distill_section(d, REP_TABLE_MD, b, e)) != KD_OK ||
        (rc = rep_serving_section(d, REP_TABLE_MD, b, e)) != KD_OK)
        return rc;
    md_env(d, b);
    md_plots(d, b);
    if (d->w && d->w->n) {
        rep_bprintf(b, "## Notes\n\n");
        for (int i = 0; i < d->w->n; i++)
            md_item(b, d->w->msg[i]);
    }
    return b->failed ? kd_err_set(e, KD_ENOMEM, "out of memory") : KD_OK;
}

/* ---- HTML ------------------------------------------------------------------------ */

static const char css[] =
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;"
    "max-width:1200px;padding:0 1em;color:#222;line-height:1.45}"
    "h1{font-size:1.6em;border-bottom:2px solid #ddd;padding-bottom:.3em}"
    "h2{font-size:1.3em;margin-top:1.8em;border-bottom:1px solid #eee}"
    "table{border-collapse:collapse;font-size:.9em;margin:.8em 0;display:block;overflow-x:auto}"
    "th,td{padding:.35em .7em;border-bottom:1px solid #e4e4e4;vertical-align:top}"
    "th,td.n{white-space:nowrap}td{max-width:28em;overflow-wrap:anywhere}"
    "th{background:#f4f4f4;text-align:left}td.n{text-align:right;"
    "font-variant-numeric:tabular-nums}tr:hover td{background:#fafafa}"
    "figure{margin:1.5em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}"
    "figcaption{color:#555;font-size:.9em}.files{font-size:.85em;color:#777}"
    ".note{color:#555;font-size:.9em}dl{display:grid;grid-template-columns:max-content auto;"
    "gap:.2em 1em}dt{font-weight:600}dd{margin:0}";

static void base64(kd_buf *b, const uint8_t *p, size_t n)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        char q[4] = {tab[v >> 18], tab[(v >> 12) & 63], i + 1 < n ? tab[(v >> 6) & 63] : '=',
                     i + 2 < n ? tab[v & 63] : '='};
        kd_buf_put(b, q, 4);
    }
}

/* the SVG as a data: URI, so the page needs no other file; the PNG beside
 * it when the SVG cannot be read */
static void html_figure(const rep_doc *d, const rep_plot_made *p, kd_buf *b)
{
    char path[4400];
    uint8_t *svg = NULL;
    size_t n = 0;
    kd_err e;
    snprintf(path, sizeof path, "%s/%s.svg", d->plots.dir, p->name);
    rep_bprintf(b, "<figure id=\"%s\">\n<img alt=\"", p->name);
    rep_html_esc(b, p->title);
    if (kd_read_file(path, SVG_MAX_BYTES, &svg, &n, &e) == KD_OK) {
        rep_bprintf(b, "\" src=\"data:image/svg+xml;base64,");
        base64(b, svg, n);
    } else {
        rep_bprintf(b, "\" src=\"plots/%s.png", p->name);
    }
    kd_free(svg);
    rep_bprintf(b, "\">\n<figcaption><b>");
    rep_html_esc(b, p->title);
    rep_bprintf(b, ".</b> ");
    rep_html_esc(b, p->caption);
    rep_bprintf(b, "<br><span class=\"files\">Files beside this report: plots/%s.png, "
                   ".svg, .dat (data), .gp (gnuplot script)</span></figcaption>\n</figure>\n",
                p->name);
}

static void html_env(const rep_doc *d, kd_buf *b)
{
    rep_bprintf(b, "<h2>Environment</h2>\n");
    if (!d->has_env) {
        rep_bprintf(b, "<p class=\"note\">No env.json in the run directory.</p>\n");
        return;
    }
    char v[NENV][160];
    env_values(&d->env, v);
    rep_bprintf(b, "<dl>\n");
    for (int i = 0; i < NENV; i++)
        if (v[i][0] && strcmp(v[i], "0")) {
            rep_bprintf(b, "<dt>%s</dt><dd>", env_keys[i]);
            rep_html_esc(b, v[i]);
            rep_bprintf(b, "</dd>\n");
        }
    rep_bprintf(b, "</dl>\n");
}

static void html_list(kd_buf *b, const char (*lines)[512], int n)
{
    rep_bprintf(b, "<ul>\n");
    for (int i = 0; i < n; i++) {
        rep_bprintf(b, "<li>");
        rep_html_esc(b, lines[i]);
        rep_bprintf(b, "</li>\n");
    }
    rep_bprintf(b, "</ul>\n");
}

int rep_doc_html(const rep_doc *d, kd_buf *b, kd_err *e)
{
    const char *name = d->experiment[0] ? d->experiment : "(unnamed)";
    rep_bprintf(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                   "<title>kdbench report: ");
    rep_html_esc(b, name);
    rep_bprintf(b, "</title>\n<style>");
    kd_buf_put(b, css, sizeof css - 1); /* longer than rep_bprintf's line */
    rep_bprintf(b, "</style>\n</head>\n<body>\n<h1>kdbench report: ");
    rep_html_esc(b, name);
    rep_bprintf(b, "</h1>\n<h2>Summary</h2>\n");
    html_list(b, (const char (*)[512])d->sum, d->nsum);
    rep_bprintf(b, "<h2>Results</h2>\n");
    int rc = tables(d, REP_TABLE_HTML, b, e);
    if (rc != KD_OK)
        return rc;
    rep_bprintf(b, "<p class=\"note\">%s</p>\n", table_note);
    if ((rc = rep_ladder_section(d, REP_TABLE_HTML, b, e)) != KD_OK ||
        (rc = rep_distill_section(d, REP_TABLE_HTML, b, e)) != KD_OK ||
        (rc = rep_serving_section(d, REP_TABLE_HTML, b, e)) != KD_OK)
        return rc;
    html_env(d, b);
    rep_bprintf(b, "<h2>Plots</h2>\n");
    if (!d->plots.nmade)
        rep_bprintf(b, "<p class=\"note\">No plots were drawn (see Notes).</p>\n");
    for (int i = 0; i < d->plots.nmade; i++)
        html_figure(d, &d->plots.made[i], b);
    if (d->w && d->w->n) {
        rep_bprintf(b, "<h2>Notes</h2>\n<ul>\n");
        for (int i = 0; i < d->w->n; i++) {
            rep_bprintf(b, "<li>");
            rep_html_esc(b, d->w->msg[i]);
            rep_bprintf(b, "</li>\n");
        }
        rep_bprintf(b, "</ul>\n");
    }
    rep_bprintf(b, "</body>\n</html>\n");
    return b->failed ? kd_err_set(e, KD_ENOMEM, "out of memory") : KD_OK;
}
