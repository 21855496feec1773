/* Ladders: rows named in order in results.json's "ladders" member (from the
 * config's report.ladders), read back for the report, which draws each as a
 * line on the accuracy-vs-size plot (plot_scatter.c) and tables it here step
 * by step: bytes, the ratio to the first and to the previous step, accuracy
 * and its change from the first step. */
#include <string.h>

#include "internal.h"

#define DASH "\xE2\x80\x93" /* – */

/* ---- reading -------------------------------------------------------------------- */

static int ladder_of(const rep_json *j, int o, rep_ladder *l)
{
    int kn = rep_json_get(j, o, "name"), kr = rep_json_get(j, o, "rows");
    if (kn < 0 || j->nodes[kn].type != REP_JSTR || kr < 0 || j->nodes[kr].type != REP_JARR ||
        j->nodes[kr].count < 2 || j->nodes[kr].count > REP_LADDER_STEPS)
        return -1;
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", j->nodes[kn].str);
    for (int c = j->nodes[kr].first; c >= 0; c = j->nodes[c].next) {
        if (j->nodes[c].type != REP_JSTR)
            return -1;
        snprintf(l->step[l->nsteps++], sizeof l->step[0], "%s", j->nodes[c].str);
    }
    return 0;
}

static int ladders_from(const rep_json *j, const char *path, rep_ladder *out, int *n, kd_err *e)
{
    int a = rep_json_get(j, 0, "ladders");
    if (a < 0)
        return KD_OK;
    if (j->nodes[a].type != REP_JARR || j->nodes[a].count > REP_MAX_LADDERS)
        return kd_err_at(e, KD_EFORMAT, path, 0, 0, "results: \"ladders\" is not a list of at "
                         "most %d ladders", REP_MAX_LADDERS);
    for (int c = j->nodes[a].first; c >= 0; c = j->nodes[c].next) {
        if (j->nodes[c].type != REP_JOBJ || ladder_of(j, c, &out[*n]) != 0) {
            int k = *n + 1;
            *n = 0;
            return kd_err_at(e, KD_EFORMAT, path, 0, 0, "results: ladder %d is not {\"name\": "
                             "string, \"rows\": [2 to %d row names]}", k, REP_LADDER_STEPS);
        }
        ++*n;
    }
    return KD_OK;
}

int rep_read_ladders(const char *path, rep_ladder *out, int *n, kd_err *e)
{
    uint8_t *text = NULL;
    size_t len = 0;
    rep_json j = {0};
    *n = 0;
    int rc = kd_read_file(path, REP_JSON_MAX_BYTES, &text, &len, e);
    if (rc == KD_OK)
        rc = rep_json_parse((const char *)text, len, path, &j, e);
    kd_free(text);
    if (rc == KD_OK && j.nodes[0].type != REP_JOBJ)
        rc = kd_err_at(e, KD_EFORMAT, path, 1, 1, "results: not a JSON object");
    if (rc == KD_OK)
        rc = ladders_from(&j, path, out, n, e);
    rep_json_free(&j);
    return rc;
}

/* ---- the report's side ------------------------------------------------------------ */

/* index of the row named name, or -1 */
static int row_named(const rep_doc *d, const char *name)
{
    for (int i = 0; i < d->nrows; i++)
        if (!strcmp(d->rows[i].name, name))
            return i;
    return -1;
}

void rep_ladder_load(rep_doc *d, rep_warnings *w)
{
    char path[4400], buf[1200];
    kd_err e = {0};
    snprintf(path, sizeof path, "%s/results.json", d->dir);
    if (rep_read_ladders(path, d->ladders, &d->nladders, &e) != KD_OK) {
        rep_warn(w, "ladders skipped: %s", kd_err_str(&e, buf, sizeof buf));
        return;
    }
    for (int i = 0; i < d->nladders; i++)
        for (int k = 0; k < d->ladders[i].nsteps; k++)
            if (row_named(d, d->ladders[i].step[k]) < 0)
                rep_warn(w, "ladder %s: step %d names no row of results.json (\"%s\")",
                         d->ladders[i].name, k + 1, d->ladders[i].step[k]);
}

/* a row with both a size and an accuracy */
static const rep_row *measured(const rep_doc *d, const char *name)
{
    int i = row_named(d, name);
    const rep_row *r = i >= 0 ? &d->rows[i] : NULL;
    return r && r->size_bytes > 0 && r->accuracy >= 0 ? r : NULL;
}

void rep_ladder_summary(const rep_doc *d, int i, char *line, size_t n)
{
    const rep_ladder *l = &d->ladders[i];
    const rep_row *first = NULL, *last = NULL;
    for (int k = 0; k < l->nsteps; k++) {
        const rep_row *r = measured(d, l->step[k]);
        first = first ? first : r;
        last = r ? r : last;
    }
    line[0] = 0;
    if (first && last && first != last)
        snprintf(line, n, "Ladder %s: %s to %s, %.2f× smaller, %+.2f points", l->name,
                 first->name, last->name, (double)first->size_bytes / (double)last->size_bytes,
                 100 * (last->accuracy - first->accuracy));
}

static void ratio(char *cell, const rep_row *num, const rep_row *den)
{
    if (num && den && num->size_bytes > 0 && den->size_bytes > 0)
        snprintf(cell, REP_TCELL, "%.2f×", (double)num->size_bytes / (double)den->size_bytes);
    else
        snprintf(cell, REP_TCELL, DASH);
}

static void step_cells(const rep_row *r, const rep_row *first, const rep_row *prev, int k,
                       char (*cell)[REP_TCELL])
{
    const char *fmt = NULL;
    for (int i = 0; r && i < r->nextra; i++)
        if (!r->extra[i].is_num && !strcmp(r->extra[i].key, "format"))
            fmt = r->extra[i].str;
    snprintf(cell[2], REP_TCELL, "%s", fmt && fmt[0] ? fmt : DASH);
    rep_fmt_count(cell[3], REP_TCELL, r ? (double)r->size_bytes : -1);
    ratio(cell[4], first, r);
    if (k > 0)
        ratio(cell[5], prev, r);
    else
        snprintf(cell[5], REP_TCELL, DASH);
    rep_fmt_pct(cell[6], REP_TCELL, r ? r->accuracy : -1);
    if (k > 0 && r && first && r->accuracy >= 0 && first->accuracy >= 0)
        snprintf(cell[7], REP_TCELL, "%+.2f pts", 100 * (r->accuracy - first->accuracy));
    else
        snprintf(cell[7], REP_TCELL, DASH);
}

/* One row per step; ratios and the change are against the first and the
 * previous step as listed (a missing step has none, and the next step's
 * "previous" is the missing one: its cells say so). */
static int ladder_table(const rep_doc *d, const rep_ladder *l, rep_table *t, kd_err *e)
{
    static const char *const head[] = {"Step",     "Variant",     "Format",   "Bytes",
                                       "vs first", "vs previous", "Accuracy", "Δ vs first"};
    int rc = rep_table_init(t, l->nsteps, e);
    if (rc != KD_OK)
        return rc;
    t->ncols = 8;
    for (int c = 0; c < 8; c++) {
        t->head[c] = head[c];
        t->right[c] = c == 0 || c >= 3;
    }
    const rep_row *first = NULL, *prev = NULL;
    for (int k = 0; k < l->nsteps; k++) {
        int i = row_named(d, l->step[k]);
        const rep_row *r = i >= 0 ? &d->rows[i] : NULL;
        first = k == 0 ? r : first;
        snprintf(t->cell[k][0], REP_TCELL, "%d", k + 1);
        snprintf(t->cell[k][1], REP_TCELL, "%s", l->step[k]);
        step_cells(r, first, prev, k, t->cell[k]);
        prev = r;
    }
    return KD_OK;
}

static const char ladder_note[] =
    "Each ladder's steps in the order the config lists them (report.ladders). vs first and "
    "vs previous are that step's bytes divided by this one's (4.00× is four times smaller); "
    "Δ is in accuracy points against the first step. The accuracy-vs-size plot draws each "
    "ladder as a line through its steps.";

int rep_ladder_section(const rep_doc *d, int style, kd_buf *b, kd_err *e)
{
    if (!d->nladders)
        return KD_OK;
    rep_bprintf(b, style == REP_TABLE_MD ? "\n## Ladders\n" : "<h2>Ladders</h2>\n");
    for (int i = 0; i < d->nladders; i++) {
        rep_table t;
        int rc = ladder_table(d, &d->ladders[i], &t, e);
        if (rc != KD_OK)
            return rc;
        if (style == REP_TABLE_MD) {
            rep_bprintf(b, "\n### ");
            rep_md_esc(b, d->ladders[i].name);
            rep_bprintf(b, "\n\n");
        } else {
            rep_bprintf(b, "<h3>");
            rep_html_esc(b, d->ladders[i].name);
            rep_bprintf(b, "</h3>\n");
        }
        rep_table_render(&t, style, b);
        rep_table_free(&t);
    }
    if (style == REP_TABLE_MD)
        rep_bprintf(b, "\n%s\n", ladder_note);
    else
        rep_bprintf(b, "<p class=\"note\">%s</p>\n", ladder_note);
    return KD_OK;
}
