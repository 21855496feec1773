/* Tables: the results and extras tables are built once as cells of text, then
 * rendered as aligned text, markdown, HTML or CSV, so every format shows the
 * same numbers. */
#include <math.h>
#include <string.h>

#include "internal.h"

#define DASH "–"

int rep_table_init(rep_table *t, int nrows, kd_err *e)
{
    memset(t, 0, sizeof *t);
    t->cell = kd_calloc(nrows > 0 ? (size_t)nrows : 1, sizeof *t->cell);
    if (!t->cell)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    t->nrows = nrows;
    return KD_OK;
}

void rep_table_free(rep_table *t)
{
    kd_free(t->cell);
    t->cell = NULL;
}

void rep_fmt_count(char *buf, size_t n, double v)
{
    if (!(v >= 0) || !isfinite(v)) {
        snprintf(buf, n, DASH);
        return;
    }
    char digits[32], out[48];
    snprintf(digits, sizeof digits, "%.0f", v);
    size_t len = strlen(digits), o = 0;
    for (size_t i = 0; i < len && o + 2 < sizeof out; i++) {
        if (i && (len - i) % 3 == 0)
            out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = 0;
    snprintf(buf, n, "%s", out);
}

void rep_fmt_pct(char *buf, size_t n, double acc)
{
    if (acc < 0)
        snprintf(buf, n, DASH);
    else
        snprintf(buf, n, "%.2f%%", 100 * acc);
}

static void fmt_num(char *buf, size_t n, const char *fmt, double v)
{
    if (v < 0 || !isfinite(v))
        snprintf(buf, n, DASH);
    else
        snprintf(buf, n, fmt, v);
}

static void ratio(char *buf, size_t n, double num, double den)
{
    if (num > 0 && den > 0)
        snprintf(buf, n, "%.2f×", num / den);
    else
        snprintf(buf, n, DASH);
}

/* mean ± sd only when the row averages several seeds (a "seeds" of 1 has sd 0) */
static void accuracy_cell(const rep_row *r, char *cell)
{
    rep_fmt_pct(cell, REP_TCELL, r->accuracy);
    double sd = rep_row_get_num(r, "accuracy_std"), seeds = rep_row_get_num(r, "seeds");
    if (r->accuracy >= 0 && sd >= 0 && !(seeds >= 0 && seeds < 2))
        snprintf(cell + strlen(cell), REP_TCELL - strlen(cell), " ± %.2f", 100 * sd);
}

/* the columns of each part, by number: see head[] below */
static const int part_cols[3][13] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, -1}, /* REP_RT_ALL */
    {0, 1, 2, 3, 4, 5, 6, 7, -1},               /* REP_RT_ACCURACY */
    {0, 9, 10, 8, 11, -1},                      /* REP_RT_SPEED */
};

static void results_cell(const rep_row *r, const rep_row *b, int col, char *cell)
{
    switch (col) {
    case 0: snprintf(cell, REP_TCELL, "%s", r->name); break;
    case 1: snprintf(cell, REP_TCELL, "%s", r->role); break;
    case 2: accuracy_cell(r, cell); break;
    case 3:
        if (b && b != r && b->accuracy >= 0 && r->accuracy >= 0)
            snprintf(cell, REP_TCELL, "%+.2f pts", 100 * (r->accuracy - b->accuracy));
        else
            snprintf(cell, REP_TCELL, DASH);
        break;
    case 4: rep_fmt_count(cell, REP_TCELL, (double)r->params); break;
    case 5: rep_fmt_count(cell, REP_TCELL, (double)r->nonzero_params); break;
    case 6: rep_fmt_count(cell, REP_TCELL, (double)r->size_bytes); break;
    case 7: ratio(cell, REP_TCELL, b ? (double)b->size_bytes : -1, (double)r->size_bytes); break;
    case 8: ratio(cell, REP_TCELL, b ? b->latency_us_b1_p50 : -1, r->latency_us_b1_p50); break;
    case 9: fmt_num(cell, REP_TCELL, "%.1f", r->latency_us_b1_p50); break;
    case 10: fmt_num(cell, REP_TCELL, "%.1f", r->latency_us_b1_p99); break;
    default: rep_fmt_count(cell, REP_TCELL, r->throughput_b256); break;
    }
}

int rep_results_table(const rep_row *rows, int n, int base, const char *base_label, int part,
                      rep_table *t, kd_err *e)
{
    static const char *const head[] = {
        "Variant", "Role", "Accuracy", "Δ acc.", "Params", "Non-zeros", "Bytes",
        "Compression", "Speed-up", "p50 (µs)", "p99 (µs)", "Samples/s (b256)"};
    static const char *const delta_head[] = {"Δ vs teacher", "Δ vs baseline"};
    int rc = rep_table_init(t, n, e);
    if (rc != KD_OK)
        return rc;
    const int *cols = part_cols[part >= REP_RT_ALL && part <= REP_RT_SPEED ? part : REP_RT_ALL];
    const rep_row *b = base >= 0 && base < n ? &rows[base] : NULL;
    for (t->ncols = 0; cols[t->ncols] >= 0; t->ncols++) {
        int c = cols[t->ncols];
        t->head[t->ncols] = c == 3 ? delta_head[base_label && strcmp(base_label, "teacher") ? 1 : 0]
                                   : head[c];
        t->right[t->ncols] = c >= 2;
        for (int i = 0; i < n; i++)
            results_cell(&rows[i], b, c, t->cell[i][t->ncols]);
    }
    return KD_OK;
}

/* ---- rendering ------------------------------------------------------------------ */

/* display width in characters (UTF-8 continuation bytes do not count) */
static int width(const char *s)
{
    int w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

/* for a terminal: unsafe characters as '?' (the width counts them as one) */
static void padded(kd_buf *b, const char *s, int w, int right)
{
    char clean[REP_TCELL];
    rep_text_clean(clean, sizeof clean, s);
    int pad = w - width(clean);
    if (right)
        for (int i = 0; i < pad; i++)
            kd_buf_put(b, " ", 1);
    kd_buf_put(b, clean, strlen(clean));
    if (!right)
        for (int i = 0; i < pad; i++)
            kd_buf_put(b, " ", 1);
}

static void render_text(const rep_table *t, kd_buf *b)
{
    int w[REP_TCOLS];
    for (int c = 0; c < t->ncols; c++) {
        w[c] = width(t->head[c]);
        for (int r = 0; r < t->nrows; r++) {
            char clean[REP_TCELL];
            rep_text_clean(clean, sizeof clean, t->cell[r][c]);
            w[c] = width(clean) > w[c] ? width(clean) : w[c];
        }
    }
    for (int r = -1; r < t->nrows; r++) {
        for (int c = 0; c < t->ncols; c++) {
            if (c)
                kd_buf_put(b, "  ", 2);
            padded(b, r < 0 ? t->head[c] : t->cell[r][c], w[c], t->right[c]);
        }
        kd_buf_put(b, "\n", 1);
    }
}

static void render_md(const rep_table *t, kd_buf *b)
{
    for (int r = -2; r < t->nrows; r++) {
        kd_buf_put(b, "|", 1);
        for (int c = 0; c < t->ncols; c++) {
            kd_buf_put(b, " ", 1);
            if (r == -2)
                rep_md_esc(b, t->head[c]);
            else if (r == -1)
                rep_bprintf(b, t->right[c] ? "--:" : ":--");
            else
                rep_md_esc(b, t->cell[r][c]);
            kd_buf_put(b, " |", 2);
        }
        kd_buf_put(b, "\n", 1);
    }
}

static void render_html(const rep_table *t, kd_buf *b)
{
    rep_bprintf(b, "<table>\n<thead><tr>");
    for (int c = 0; c < t->ncols; c++) {
        rep_bprintf(b, "<th>");
        rep_html_esc(b, t->head[c]);
        rep_bprintf(b, "</th>");
    }
    rep_bprintf(b, "</tr></thead>\n<tbody>\n");
    for (int r = 0; r < t->nrows; r++) {
        rep_bprintf(b, "<tr>");
        for (int c = 0; c < t->ncols; c++) {
            rep_bprintf(b, t->right[c] ? "<td class=\"n\">" : "<td>");
            rep_html_esc(b, t->cell[r][c]);
            rep_bprintf(b, "</td>");
        }
        rep_bprintf(b, "</tr>\n");
    }
    rep_bprintf(b, "</tbody>\n</table>\n");
}

static void render_csv(const rep_table *t, kd_buf *b)
{
    for (int r = -1; r < t->nrows; r++) {
        for (int c = 0; c < t->ncols; c++) {
            if (c)
                kd_buf_put(b, ",", 1);
            char s[REP_TCELL];
            rep_text_clean(s, sizeof s, r < 0 ? t->head[c] : t->cell[r][c]);
            rep_csv_str(b, strcmp(s, DASH) ? s : "");
        }
        kd_buf_put(b, "\n", 1);
    }
}

void rep_table_render(const rep_table *t, int style, kd_buf *out)
{
    if (style == REP_TABLE_TEXT)
        render_text(t, out);
    else if (style == REP_TABLE_MD)
        render_md(t, out);
    else if (style == REP_TABLE_HTML)
        render_html(t, out);
    else
        render_csv(t, out);
}
