/* The serving loadtest's files and its report section: serving.json and
 * serving.csv (one row per variant x concurrency x batching), read back into
 * a "Serving" section with a table and a plot of p99 latency against
 * throughput, one line per variant (and batching setting). */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* ---- writing ------------------------------------------------------------------ */

static void json_rows(kd_buf *b, const char *experiment, const rep_serving_row *r, int n)
{
    rep_bprintf(b, "{\"experiment\": ");
    rep_json_str(b, experiment ? experiment : "");
    rep_bprintf(b, ",\n \"rows\": [");
    for (int i = 0; i < n; i++) {
        rep_bprintf(b, "%s\n  {\"variant\": ", i ? "," : "");
        rep_json_str(b, r[i].variant);
        rep_bprintf(b, ", \"concurrency\": %d, \"batching\": \"%s\", \"requests\": %ld, "
                       "\"failures\": %ld, \"seconds\": ", r[i].concurrency,
                    r[i].batching ? "on" : "off", r[i].requests, r[i].failures);
        const char *keys[] = {"requests_per_s", "p50_ms", "p90_ms", "p99_ms"};
        const double v[] = {r[i].rps, r[i].p50_ms, r[i].p90_ms, r[i].p99_ms};
        rep_json_num(b, r[i].seconds);
        for (int k = 0; k < 4; k++) {
            rep_bprintf(b, ", \"%s\": ", keys[k]);
            rep_json_num(b, v[k]);
        }
        rep_bprintf(b, "}");
    }
    rep_bprintf(b, "\n ]}\n");
}

static void csv_rows(kd_buf *b, const rep_serving_row *r, int n)
{
    rep_bprintf(b, "variant,concurrency,batching,requests,failures,seconds,requests_per_s,"
                   "p50_ms,p90_ms,p99_ms\n");
    for (int i = 0; i < n; i++) {
        char clean[96];
        rep_text_clean(clean, sizeof clean, r[i].variant);
        rep_csv_str(b, clean);
        rep_bprintf(b, ",%d,%s,%ld,%ld,%.3f,%.1f,%.4f,%.4f,%.4f\n", r[i].concurrency,
                    r[i].batching ? "on" : "off", r[i].requests, r[i].failures, r[i].seconds,
                    r[i].rps, r[i].p50_ms, r[i].p90_ms, r[i].p99_ms);
    }
}

int rep_write_serving(const char *dir, const char *experiment, const rep_serving_row *rows,
                      int n, kd_err *e)
{
    char path[4400];
    kd_buf b = {0};
    csv_rows(&b, rows, n);
    snprintf(path, sizeof path, "%s/serving.csv", dir);
    int rc = b.failed ? kd_err_set(e, KD_ENOMEM, "out of memory")
                      : kd_write_atomic(path, b.p, b.len, e);
    b.len = 0;
    json_rows(&b, experiment, rows, n);
    snprintf(path, sizeof path, "%s/serving.json", dir);
    if (rc == KD_OK) /* the JSON last: its presence says the loadtest is done */
        rc = b.failed ? kd_err_set(e, KD_ENOMEM, "out of memory")
                      : kd_write_atomic(path, b.p, b.len, e);
    kd_buf_free(&b);
    return rc;
}

/* ---- reading -------------------------------------------------------------------- */

static double num_of(const rep_json *j, int obj, const char *key)
{
    int k = rep_json_get(j, obj, key);
    return k >= 0 && j->nodes[k].type == REP_JNUM ? j->nodes[k].num : NAN;
}

static int row_of(const rep_json *j, int o, rep_serving_row *r)
{
    int v = rep_json_get(j, o, "variant"), b = rep_json_get(j, o, "batching");
    if (v < 0 || j->nodes[v].type != REP_JSTR || !isfinite(num_of(j, o, "concurrency")))
        return -1;
    memset(r, 0, sizeof *r);
    snprintf(r->variant, sizeof r->variant, "%s", j->nodes[v].str);
    r->concurrency = (int)num_of(j, o, "concurrency");
    r->batching = b < 0 || j->nodes[b].type != REP_JSTR || strcmp(j->nodes[b].str, "off");
    double req = num_of(j, o, "requests"), fail = num_of(j, o, "failures");
    r->requests = isfinite(req) ? (long)req : 0;
    r->failures = isfinite(fail) ? (long)fail : 0;
    r->seconds = num_of(j, o, "seconds");
    r->rps = num_of(j, o, "requests_per_s");
    r->p50_ms = num_of(j, o, "p50_ms");
    r->p90_ms = num_of(j, o, "p90_ms");
    r->p99_ms = num_of(j, o, "p99_ms");
    return 0;
}

int rep_read_serving(const char *path, rep_serving_row **rows, int *n, kd_err *e)
{
    uint8_t *text = NULL;
    size_t len = 0;
    rep_json j = {0};
    *rows = NULL;
    *n = 0;
    int rc = kd_read_file(path, REP_JSON_MAX_BYTES, &text, &len, e);
    if (rc == KD_OK)
        rc = rep_json_parse((const char *)text, len, path, &j, e);
    kd_free(text);
    int a = rc == KD_OK ? rep_json_get(&j, 0, "rows") : -1;
    if (rc == KD_OK && (a < 0 || j.nodes[a].type != REP_JARR))
        rc = kd_err_at(e, KD_EFORMAT, path, 0, 0, "no \"rows\" array");
    if (rc == KD_OK && !(*rows = kd_calloc((size_t)j.nodes[a].count + 1, sizeof **rows)))
        rc = kd_err_set(e, KD_ENOMEM, "out of memory");
    for (int k = rc == KD_OK ? j.nodes[a].first : -1; k >= 0; k = j.nodes[k].next)
        if (j.nodes[k].type != REP_JOBJ || row_of(&j, k, &(*rows)[*n]) != 0) {
            rc = kd_err_at(e, KD_EFORMAT, path, 0, 0, "row %d has no variant or concurrency",
                           *n + 1);
            break;
        } else
            ++*n;
    rep_json_free(&j);
    if (rc != KD_OK) {
        kd_free(*rows);
        *rows = NULL;
        *n = 0;
    }
    return rc;
}

/* ---- the report's section ------------------------------------------------------- */

void rep_serving_load(rep_doc *d, rep_warnings *w)
{
    char path[4400], buf[1200];
    kd_err e = {0};
    snprintf(path, sizeof path, "%s/serving.json", d->dir);
    if (access(path, F_OK) == 0 && rep_read_serving(path, &d->serving, &d->nserving, &e) != KD_OK)
        rep_warn(w, "serving section skipped: %s", kd_err_str(&e, buf, sizeof buf));
}

/* The series: one per variant and batching setting, in order of first appearance. */
static int series(const rep_doc *d, int *first, int max)
{
    int ns = 0;
    for (int i = 0; i < d->nserving; i++) {
        int seen = 0;
        for (int k = 0; k < ns && !seen; k++) {
            const rep_serving_row *a = &d->serving[first[k]], *b = &d->serving[i];
            seen = !strcmp(a->variant, b->variant) && a->batching == b->batching;
        }
        if (!seen && ns < max)
            first[ns++] = i;
    }
    return ns;
}

static int both_batching(const rep_doc *d)
{
    int on = 0, off = 0;
    for (int i = 0; i < d->nserving; i++)
        *(d->serving[i].batching ? &on : &off) += 1;
    return on && off;
}

int rep_serving_plot(rep_doc *d, rep_plotter *p, kd_err *e)
{
    enum { MAXS = 48 };
    int first[MAXS], ns = series(d, first, MAXS), both = both_batching(d);
    if (!ns)
        return KD_OK;
    kd_buf dat = {0}, body = {0};
    rep_bprintf(&body, "set title 'Serving: p99 latency vs throughput (batch-1 requests)' "
                       "font ',13'\nset grid lc rgb '#dddddd'\nset xlabel 'Requests/s'\n"
                       "set ylabel 'p99 latency (ms)'\nset logscale y\nset format y '%%g'\n"
                       "set key outside right top font ',10'\n");
    for (int k = 0; k < ns; k++) {
        const rep_serving_row *s0 = &d->serving[first[k]];
        rep_bprintf(&dat, "# ");
        rep_text_put(&dat, s0->variant);
        rep_bprintf(&dat, " (batching %s): concurrency requests_per_s p99_ms\n",
                    s0->batching ? "on" : "off");
        for (int i = 0; i < d->nserving; i++) {
            const rep_serving_row *r = &d->serving[i];
            if (!strcmp(r->variant, s0->variant) && r->batching == s0->batching &&
                isfinite(r->rps) && isfinite(r->p99_ms) && r->p99_ms > 0)
                rep_bprintf(&dat, "%d %.6g %.6g\n", r->concurrency, r->rps, r->p99_ms);
        }
        rep_bprintf(&dat, "\n\n");
        char t[160];
        snprintf(t, sizeof t, "%s%s", s0->variant,
                 both ? (s0->batching ? " (batched)" : " (unbatched)") : "");
        int vi = 0; /* the variant's colour: its batched and unbatched lines share it */
        while (strcmp(d->serving[first[vi]].variant, s0->variant))
            vi++;
        rep_bprintf(&body, "%s'serving.dat' index %d using 2:3 with linespoints pt 7 ps 0.8 "
                           "lc %d %stitle ", k ? ", \\\n    " : "plot ", k, vi + 1,
                    both && !s0->batching ? "dt 2 " : "");
        rep_gp_str(&body, t);
    }
    rep_bprintf(&body, "\n");
    kd_buf_put(&body, "", 1);
    rep_plot_spec s = {"serving", "Serving: p99 latency vs throughput",
                       "Each point is one concurrency level (clients, each with one keep-alive "
                       "connection, sending batch-1 requests over loopback HTTP); one line per "
                       "variant. Further right is more requests/s, lower is a shorter tail.",
                       1100, 600};
    int rc = body.failed || dat.failed ? kd_err_set(e, KD_ENOMEM, "out of memory")
                                       : rep_plot_draw(p, &s, &dat, (const char *)body.p, e);
    kd_buf_free(&dat);
    kd_buf_free(&body);
    return rc;
}

static int serving_table(const rep_doc *d, rep_table *t, kd_err *e)
{
    static const char *const head[] = {"Variant", "Clients", "Batching", "Requests/s",
                                       "p50 ms", "p90 ms", "p99 ms", "Failures"};
    int rc = rep_table_init(t, d->nserving, e);
    if (rc != KD_OK)
        return rc;
    t->ncols = 8;
    for (int c = 0; c < 8; c++) {
        t->head[c] = head[c];
        t->right[c] = c == 1 || c > 2;
    }
    for (int i = 0; i < d->nserving; i++) {
        const rep_serving_row *r = &d->serving[i];
        char(*row)[REP_TCELL] = t->cell[i];
        rep_text_clean(row[0], REP_TCELL, r->variant);
        snprintf(row[1], REP_TCELL, "%d", r->concurrency);
        snprintf(row[2], REP_TCELL, "%s", r->batching ? "on" : "off");
        rep_fmt_count(row[3], REP_TCELL, isfinite(r->rps) ? round(r->rps) : -1);
        const double v[] = {r->p50_ms, r->p90_ms, r->p99_ms};
        for (int k = 0; k < 3; k++)
            snprintf(row[4 + k], REP_TCELL, isfinite(v[k]) ? "%.2f" : "–", v[k]);
        snprintf(row[7], REP_TCELL, "%ld", r->failures);
    }
    return KD_OK;
}

static const char serving_note[] =
    "The run's variants served in-process over loopback HTTP (kdbench serve's code, v2 infer "
    "with UINT8 test-set images, one per request), each loaded in turn at each concurrency "
    "level for a bounded number of requests and seconds. Figures share the host with "
    "whatever else ran: compare rows within this table.";

int rep_serving_section(const rep_doc *d, int style, kd_buf *b, kd_err *e)
{
    if (!d->nserving)
        return KD_OK;
    rep_table t;
    int rc = serving_table(d, &t, e);
    if (rc != KD_OK)
        return rc;
    if (style == REP_TABLE_MD)
        rep_bprintf(b, "\n## Serving\n\n");
    else
        rep_bprintf(b, "<h2>Serving</h2>\n");
    rep_table_render(&t, style, b);
    rep_table_free(&t);
    if (style == REP_TABLE_MD)
        rep_bprintf(b, "\n%s Files: serving.json, serving.csv; the plot is under Plots "
                       "(plots/serving.png).\n", serving_note);
    else
        rep_bprintf(b, "<p class=\"note\">%s Files: serving.json, serving.csv; the plot is "
                       "under Plots.</p>\n", serving_note);
    return KD_OK;
}
