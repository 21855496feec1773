/* Variant details: the rows' extra keys (what each stage adds: epochs, seeds,
 * passes, formats, measurement facts) as several narrow tables grouped by
 * theme, so no key is dropped and no table is wider than a page. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define DASH "–"

static const struct {
    const char *title;
    const char *keys[REP_DETAIL_COLS + 1];
} themes[] = {
    {"Training", {"epochs", "epoch_seconds", "teacher", "temperature", "alpha", "hint", NULL}},
    {"Seeds", {"seeds", "seed_list", "accuracy_per_seed", NULL}},
    {"Compression", {"source", "passes", "sparsity", "format", "weight_bits", "kept_dense", NULL}},
    {"Measurement",
     {"isa", "threads_b1", "latency_us_b1_p50_1t", "latency_b1_spread", "host_load", NULL}},
};
#define NTHEMES (int)(sizeof themes / sizeof themes[0])

/* keys whose values are fractions: shown as percentages like every other
 * share in the report */
static int is_fraction(const char *key)
{
    static const char *const f[] = {"sparsity", "latency_b1_spread", "accuracy_per_seed",
                                    "accuracy_std"};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (!strcmp(key, f[i]))
            return 1;
    return 0;
}

static int has_key(const rep_row *rows, int n, const char *key)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < rows[i].nextra; j++)
            if (!strcmp(rows[i].extra[j].key, key))
                return 1;
    return 0;
}

static int themed(const char *key)
{
    for (int t = 0; t < NTHEMES; t++)
        for (int k = 0; themes[t].keys[k]; k++)
            if (!strcmp(themes[t].keys[k], key))
                return 1;
    return !strcmp(key, "accuracy_std"); /* shown beside the accuracy */
}

static void add_key(rep_detail_group *g, const char *key)
{
    snprintf(g->keys[g->nkeys++], sizeof g->keys[0], "%s", key);
}

int rep_detail_groups(const rep_row *rows, int n, rep_detail_group *g)
{
    int ng = 0;
    for (int t = 0; t < NTHEMES && ng < REP_DETAIL_MAX; t++) {
        rep_detail_group *cur = &g[ng];
        memset(cur, 0, sizeof *cur);
        snprintf(cur->title, sizeof cur->title, "%s", themes[t].title);
        for (int k = 0; themes[t].keys[k]; k++)
            if (has_key(rows, n, themes[t].keys[k]))
                add_key(cur, themes[t].keys[k]);
        ng += cur->nkeys > 0;
    }
    int nother = 0; /* the rest, in order of first appearance */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < rows[i].nextra; j++) {
            const char *key = rows[i].extra[j].key;
            int seen = themed(key);
            for (int q = 0; q < ng && !seen; q++)
                for (int k = 0; k < g[q].nkeys && !seen; k++)
                    seen = !strcmp(g[q].keys[k], key);
            if (seen)
                continue;
            if (ng == REP_DETAIL_MAX && g[ng - 1].nkeys == REP_DETAIL_COLS)
                return ng;
            if (!nother || g[ng - 1].nkeys == REP_DETAIL_COLS) {
                memset(&g[ng], 0, sizeof g[ng]);
                snprintf(g[ng].title, sizeof g[ng].title, nother ? "Other (%d)" : "Other",
                         nother + 1);
                nother++;
                ng++;
            }
            add_key(&g[ng - 1], key);
        }
    return ng;
}

/* "0.8882 0.8901" -> "88.82% 89.01%"; a word that is not a number stays */
static void pct_list(char *cell, const char *s)
{
    size_t o = 0;
    cell[0] = 0;
    while (*s && o + 1 < REP_TCELL) {
        size_t k = strcspn(s, " ");
        char word[64], *end;
        snprintf(word, sizeof word, "%.*s", (int)(k < 63 ? k : 63), s);
        double v = strtod(word, &end);
        int w = end != word && !*end && isfinite(v)
                    ? snprintf(cell + o, REP_TCELL - o, "%s%.2f%%", o ? " " : "", 100 * v)
                    : snprintf(cell + o, REP_TCELL - o, "%s%s", o ? " " : "", word);
        o += w > 0 ? (size_t)w : 0;
        if (o >= REP_TCELL)
            o = REP_TCELL - 1;
        s += k;
        s += strspn(s, " ");
    }
}

/* the cell of key in row r; 0 when the row has no such key */
static int detail_cell(const rep_row *r, const char *key, char *cell, int *text)
{
    for (int j = 0; j < r->nextra; j++) {
        if (strcmp(r->extra[j].key, key))
            continue;
        double v = r->extra[j].num;
        if (!r->extra[j].is_num) {
            *text = 1;
            if (is_fraction(key))
                pct_list(cell, r->extra[j].str);
            else
                snprintf(cell, REP_TCELL, "%s", r->extra[j].str);
        } else if (v < 0 || !isfinite(v)) {
            snprintf(cell, REP_TCELL, DASH);
        } else {
            snprintf(cell, REP_TCELL, is_fraction(key) ? "%.2f%%" : "%.6g",
                     is_fraction(key) ? 100 * v : v);
        }
        return 1;
    }
    return 0;
}

int rep_detail_table(const rep_row *rows, int n, const rep_detail_group *g, rep_table *t,
                     kd_err *e)
{
    int rc = rep_table_init(t, n, e);
    if (rc != KD_OK)
        return rc;
    t->ncols = g->nkeys + 1;
    t->head[0] = "Variant";
    for (int k = 0; k < g->nkeys; k++) {
        t->head[k + 1] = g->keys[k];
        t->right[k + 1] = 1; /* numbers right-aligned; a string anywhere: left */
    }
    int out = 0;
    for (int i = 0; i < n; i++) {
        int any = 0;
        snprintf(t->cell[out][0], REP_TCELL, "%s", rows[i].name);
        for (int k = 0; k < g->nkeys; k++) {
            int text = 0;
            char *cell = t->cell[out][k + 1];
            if (detail_cell(&rows[i], g->keys[k], cell, &text))
                any = 1;
            else
                snprintf(cell, REP_TCELL, DASH);
            if (text)
                t->right[k + 1] = 0;
        }
        out += any;
    }
    t->nrows = out;
    return KD_OK;
}
