/* `report:` — the run report's format, plots and ladders:
 *   report: {format: both, plots: true, timeout: 30,
 *            ladders: [{name: Deep Compression,
 *                       rows: [teacher, pruned90, shared90_8_uncoded, shared90_8]}]}
 * A ladder's rows are names of result rows, checked against the run's rows
 * with a did-you-mean, so a typo stops the run before anything trains. */
#include <string.h>

#include "internal.h"

int cfg_row_names(const exp_spec *s, char (*out)[CFG_ROW_NAME], int cap)
{
    int n = 0;
    if (n < cap)
        snprintf(out[n++], CFG_ROW_NAME, "teacher");
    for (int i = 0; i < s->nstudents; i++) {
        const cfg_student *st = &s->students[i];
        if (n < cap)
            snprintf(out[n++], CFG_ROW_NAME, "%s/scratch", st->name);
        for (int k = 0; k < st->nmodes && n < cap; k++)
            snprintf(out[n++], CFG_ROW_NAME, "%s/%s", st->name, st->modes[k].name);
    }
    for (int i = 0; i < s->nvariants && n < cap; i++)
        snprintf(out[n++], CFG_ROW_NAME, "%s", s->variants[i].name);
    return n;
}

/* v names one of the run's rows, not yet listed in l->rows[0..i). */
static int ladder_row(cfg_ctx *c, const exp_spec *s, const cfg_node *v, const char *p,
                      cfg_ladder *l, int i)
{
    if (v->kind != CFG_SCALAR || !v->len || v->len >= CFG_ROW_NAME)
        return cfg_err(c, v, p, "expected a row name (teacher, STUDENT/scratch, STUDENT/MODE "
                       "or a compress variant)");
    char names[CFG_MAX_ROWS][CFG_ROW_NAME];
    const char *cand[CFG_MAX_ROWS];
    int n = cfg_row_names(s, names, CFG_MAX_ROWS), found = 0;
    for (int k = 0; k < n; k++) {
        cand[k] = names[k];
        found |= !strcmp(v->s, names[k]);
    }
    if (!found) {
        const char *sug = cfg_suggest(v->s, cand, n);
        return cfg_err(c, v, p, "no row \"%.64s\" in this run (%s%s%srows are teacher, "
                       "STUDENT/scratch, STUDENT/MODE and the compress variants)", v->s,
                       sug ? "did you mean \"" : "", sug ? sug : "", sug ? "\"?; " : "");
    }
    for (int k = 0; k < i; k++)
        if (!strcmp(l->rows[k], v->s))
            return cfg_err(c, v, p, "\"%s\" is already step %d of this ladder (a ladder "
                           "visits each row once)", v->s, k + 1);
    snprintf(l->rows[i], CFG_ROW_NAME, "%s", v->s);
    return KD_OK;
}

static int walk_ladder(cfg_ctx *c, const cfg_node *it, const char *path, const exp_spec *s,
                       cfg_report *r, int i)
{
    static const char *const keys[] = {"name", "rows", NULL};
    cfg_ladder *l = &r->ladders[i];
    if (it->kind != CFG_MAP)
        return cfg_err(c, it, path, "expected a mapping {name: NAME, rows: [ROW, ROW, ...]}");
    l->pos = it->src < 0 ? (cfg_pos){it->line, it->col} : (cfg_pos){0, 0};
    int rc = cfg_check_keys(c, it, path, keys, "a ladder");
    if (rc != KD_OK || (rc = cfg_str(c, it, path, "name", 1, l->name, sizeof l->name)))
        return rc;
    char p[128];
    const cfg_node *nv = cfg_map_get(it, "name"), *v = cfg_map_get(it, "rows");
    if (!l->name[0])
        return cfg_err(c, nv, cfg_path(p, sizeof p, path, "name"), "must not be empty");
    for (int k = 0; k < i; k++)
        if (!strcmp(r->ladders[k].name, l->name))
            return cfg_err(c, nv, cfg_path(p, sizeof p, path, "name"),
                           "\"%s\" is already the name of report.ladders[%d]", l->name, k);
    if (!v)
        return cfg_missing(c, it, path, "rows");
    cfg_path(p, sizeof p, path, "rows");
    if (v->kind != CFG_SEQ || v->n < 2 || v->n > CFG_LADDER_STEPS)
        return cfg_err(c, v, p, "expected a list of 2 to %d row names, in the ladder's order",
                       CFG_LADDER_STEPS);
    for (int k = 0; k < v->n; k++) {
        char q[160];
        snprintf(q, sizeof q, "%s[%d]", p, k);
        if ((rc = ladder_row(c, s, v->kid[k], q, l, k)) != KD_OK)
            return rc;
        l->nrows = k + 1;
    }
    return KD_OK;
}

static int walk_ladders(cfg_ctx *c, const cfg_node *m, const exp_spec *s, cfg_report *r)
{
    const cfg_node *v = cfg_map_get(m, "ladders");
    if (!v)
        return KD_OK;
    if (v->kind != CFG_SEQ || v->n > CFG_MAX_LADDERS)
        return cfg_err(c, v, "report.ladders", "expected a list of at most %d ladders, each "
                       "{name: NAME, rows: [ROW, ROW, ...]}", CFG_MAX_LADDERS);
    for (int i = 0; i < v->n; i++) {
        char path[64];
        snprintf(path, sizeof path, "report.ladders[%d]", i);
        int rc = walk_ladder(c, v->kid[i], path, s, r, i);
        if (rc != KD_OK)
            return rc;
        r->nladders = i + 1;
    }
    return KD_OK;
}

int cfg_walk_report(cfg_ctx *c, const cfg_node *root, exp_spec *s)
{
    static const char *const keys[] = {"format", "plots", "timeout", "ladders", NULL};
    static const char *const formats[] = {"md", "html", "both"};
    cfg_report *r = &s->report;
    memset(r, 0, sizeof *r);
    r->format = 3;
    r->plots = 1;
    r->timeout = 30;
    const cfg_node *m;
    int rc = cfg_section(c, root, "", "report", 0, &m), f = 2;
    if (rc != KD_OK || !m || (rc = cfg_check_keys(c, m, "report", keys, NULL)) != KD_OK)
        return rc;
    if ((rc = cfg_enum(c, m, "report", "format", 0, formats, 3, &f)) ||
        (rc = cfg_bool(c, m, "report", "plots", &r->plots)))
        return rc;
    r->format = f + 1;
    if ((rc = cfg_float(c, m, "report", "timeout", 0, (cfg_range){0, 3600, 1, 0}, &r->timeout)))
        return rc;
    return walk_ladders(c, m, s, r);
}

void cfg_dump_report(const cfg_report *r, FILE *f)
{
    static const char *const formats[] = {"", "md", "html", "both"};
    fprintf(f, "report:\n  format: %s\n  plots: %s\n  timeout: ", formats[r->format],
            r->plots ? "true" : "false");
    cfg_put_float(f, r->timeout);
    fputc('\n', f);
    if (r->nladders)
        fputs("  ladders:\n", f);
    for (int i = 0; i < r->nladders; i++) {
        fputs("    - name: ", f);
        cfg_put_str(f, r->ladders[i].name);
        fputs("\n      rows: [", f);
        for (int k = 0; k < r->ladders[i].nrows; k++) {
            fputs(k ? ", " : "", f);
            cfg_put_str(f, r->ladders[i].rows[k]);
        }
        fputs("]\n", f);
    }
}
