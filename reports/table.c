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

static void results_row(const rep_row *r, const rep_row *b, char cell[][REP_TCELL])
{
    int c = 0;
    snprintf(cell[c++], REP_TCELL, "%s", r->name);
    snprintf(cell[c++], REP_TCELL, "%s", r->role);
    rep_fmt_pct(cell[c], REP_TCELL, r->accuracy);
    double sd = rep_row_get_num(r, "accuracy_std");
    if (r->accuracy >= 0 && sd >= 0) /* several seeds: mean ± std */
        snprintf(cell[c] + strlen(cell[c]), REP_TCELL - strlen(cell[c]), " ± %.2f", 100 * sd);
    c++;
    if (b && b != r && b->accuracy >= 0 && r->accuracy >= 0)
        snprintf(cell[c], REP_TCELL, "%+.2f pts", 100 * (r->accuracy - b->accuracy));
    else
        snprintf(cell[c], REP_TCELL, DASH);
    c++;
    rep_fmt_count(cell[c++], REP_TCELL, (double)r->params);
    rep_fmt_count(cell[c++], REP_TCELL, (double)r->nonzero_params);
    rep_fmt_count(cell[c++], REP_TCELL, (double)r->size_bytes);
    ratio(cell[c++], REP_TCELL, b ? (double)b->size_bytes : -1, (double)r->size_bytes);
    ratio(cell[c++], REP_TCELL, b ? b->latency_us_b1_p50 : -1, r->latency_us_b1_p50);
    fmt_num(cell[c++], REP_TCELL, "%.1f", r->latency_us_b1_p50);
    fmt_num(cell[c++], REP_TCELL, "%.1f", r->latency_us_b1_p99);
    rep_fmt_count(cell[c++], REP_TCELL, r->throughput_b256);
}

int rep_results_table(const rep_row *rows, int n, int base, const char *base_label,
                      rep_table *t, kd_err *e)
{
    static const char *const head[] = {
        "Variant", "Role", "Accuracy", "Δ acc.", "Params", "Non-zeros", "Bytes",
        "Compression", "Speed-up", "p50 (µs)", "p99 (µs)", "Samples/s (b256)"};
    static const char *const delta_head[] = {"Δ vs teacher", "Δ vs baseline"};
    int rc = rep_table_init(t, n, e);
    if (rc != KD_OK)
        return rc;
    t->ncols = (int)(sizeof head / sizeof head[0]);
    for (int c = 0; c < t->ncols; c++) {
        t->head[c] = head[c];
        t->right[c] = c >= 2;
    }
    t->head[3] = delta_head[base_label && strcmp(base_label, "teacher") ? 1 : 0];
    for (int i = 0; i < n; i++)
        results_row(&rows[i], base >= 0 && base < n ? &rows[base] : NULL, t->cell[i]);
    return KD_OK;
}

int rep_extras_table(const rep_row *rows, int n, rep_table *t, char keys[][32], kd_err *e)
{
    int nk = 0, rc = rep_table_init(t, n, e);
    if (rc != KD_OK)
        return rc;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < rows[i].nextra && nk < REP_TCOLS - 1; j++) {
            int seen = 0;
            for (int k = 0; k < nk && !seen; k++)
                seen = !strcmp(keys[k], rows[i].extra[j].key);
            if (!seen && strcmp(rows[i].extra[j].key, "accuracy_std"))
                snprintf(keys[nk++], 32, "%s", rows[i].extra[j].key);
        }
    t->ncols = nk ? nk + 1 : 0;
    t->head[0] = "Variant";
    for (int k = 0; k < nk; k++)
        t->head[k + 1] = keys[k];
    for (int k = 0; k < nk; k++) /* numbers right-aligned; a string anywhere: left */
        t->right[k + 1] = 1;
    for (int i = 0; i < n; i++) {
        snprintf(t->cell[i][0], REP_TCELL, "%s", rows[i].name);
        for (int k = 0; k < nk; k++) {
            char *cell = t->cell[i][k + 1];
            snprintf(cell, REP_TCELL, DASH);
            for (int j = 0; j < rows[i].nextra; j++) {
                if (strcmp(rows[i].extra[j].key, keys[k]))
                    continue;
                if (rows[i].extra[j].is_num) {
                    fmt_num(cell, REP_TCELL, "%.6g", rows[i].extra[j].num);
                } else {
                    snprintf(cell, REP_TCELL, "%s", rows[i].extra[j].str);
                    t->right[k + 1] = 0;
                }
            }
        }
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
