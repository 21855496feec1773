/* Plots from the optional CSV files compression stages write: per-layer
 * sparsity bars (sparsity.csv), sensitivity curves (sensitivity.csv) and
 * weight histograms before/after quantization (weights_hist.csv). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define CSV_MAX_BYTES (16 << 20)
#define CSV_MAX_COLS 8
#define MAX_KEYS 32

/* A parsed CSV: rows x ncols fields, each a view into text (modified in place). */
typedef struct {
    char *text;
    char *(*f)[CSV_MAX_COLS];
    int nrows, ncols;
} csv;

static void csv_free(csv *c)
{
    kd_free(c->text);
    kd_free(c->f);
}

/* splits one line in place; quoted fields may hold commas ("" is a quote) */
static int split_line(char *s, char **out, int max)
{
    int n = 0;
    for (;;) {
        char *start = s, *w = s;
        if (*s == '"') {
            for (s++; *s && !(*s == '"' && s[1] != '"'); s++) {
                if (*s == '"')
                    s++;
                *w++ = *s;
            }
            if (*s == '"')
                s++;
        } else {
            while (*s && *s != ',')
                *w++ = *s++;
        }
        char sep = *s;
        *w = 0;
        if (n == max)
            return -1;
        out[n++] = start;
        if (sep != ',')
            return n;
        s++;
    }
}

/* Reads path with exactly the header hdr (comma-separated). */
static int csv_read(const char *path, const char *hdr, csv *c, kd_err *e)
{
    size_t len;
    uint8_t *p;
    memset(c, 0, sizeof *c);
    int rc = kd_read_file(path, CSV_MAX_BYTES, &p, &len, e);
    if (rc != KD_OK)
        return rc;
    char *t = kd_realloc(p, len + 1);
    if (!t) {
        kd_free(p);
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    }
    t[len] = 0;
    c->text = t;
    int lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += t[i] == '\n';
    c->f = kd_calloc((size_t)lines, sizeof *c->f);
    if (!c->f)
        return csv_free(c), kd_err_set(e, KD_ENOMEM, "out of memory");
    char want[128];
    snprintf(want, sizeof want, "%s", hdr);
    char *hf[CSV_MAX_COLS], *wf[CSV_MAX_COLS];
    int nw = split_line(want, wf, CSV_MAX_COLS), line = 0;
    for (char *s = t, *next; s && *s; s = next, line++) {
        next = strchr(s, '\n');
        if (next)
            *next++ = 0;
        size_t ll = strlen(s);
        if (ll && s[ll - 1] == '\r') /* CRLF; a CR inside a field stays (and is escaped later) */
            s[ll - 1] = 0;
        if (!*s)
            continue;
        char **dst = line ? c->f[c->nrows] : hf;
        int nf = split_line(s, dst, CSV_MAX_COLS);
        if (nf != nw)
            return csv_free(c), kd_err_at(e, KD_EFORMAT, path, line + 1, 1,
                                          "%d fields, expected %d (%s)", nf, nw, hdr);
        if (!line)
            for (int k = 0; k < nw; k++)
                if (strcmp(hf[k], wf[k]))
                    return csv_free(c), kd_err_at(e, KD_EFORMAT, path, 1, 1,
                                                  "header should be \"%s\"", hdr);
        c->nrows += line > 0;
    }
    c->ncols = nw;
    return KD_OK;
}

static int num_field(const char *s, double *v)
{
    char *end;
    *v = strtod(s, &end);
    return end != s && !*end && isfinite(*v);
}

/* index of key in keys (added when new); -1 when full */
static int key_index(char keys[][96], int *n, const char *key)
{
    for (int i = 0; i < *n; i++)
        if (!strcmp(keys[i], key))
            return i;
    if (*n == MAX_KEYS)
        return -1;
    snprintf(keys[*n], 96, "%s", key);
    return (*n)++;
}

/* Loads run_dir/file when it exists, with header hdr or else (when not NULL)
 * the older header alt: 1 loaded, 0 absent or malformed (warned). */
static int load(rep_plotter *p, const char *run_dir, const char *file, const char *hdr,
                const char *alt, csv *c)
{
    char path[4400];
    kd_err e = {0}, e2 = {0};
    snprintf(path, sizeof path, "%s/%s", run_dir, file);
    if (access(path, F_OK) != 0)
        return 0;
    if (csv_read(path, hdr, c, &e) == KD_OK || (alt && csv_read(path, alt, c, &e2) == KD_OK))
        return 1;
    char buf[1200];
    rep_warn(p->w, "%s skipped: %s", file, kd_err_str(&e, buf, sizeof buf));
    return 0;
}

/* ---- sparsity bars ----------------------------------------------------------- */
/* 1 when the variant's zeros are pruning: its results row names a magnitude
 * pruning pass.  A row without passes (an older or foreign run) counts when
 * its weights are not quantized; a variant without a row does not count. */
static int pruned(const rep_row *rows, int nrows, const char *variant)
{
    for (int i = 0; i < nrows; i++) {
        if (strcmp(rows[i].name, variant))
            continue;
        for (int j = 0; j < rows[i].nextra; j++)
            if (!strcmp(rows[i].extra[j].key, "passes"))
                return strstr(rows[i].extra[j].str, "prune(layer") ||
                       strstr(rows[i].extra[j].str, "prune(global");
        double bits = rep_row_get_num(&rows[i], "weight_bits");
        return strcmp(rows[i].role, "teacher") && strcmp(rows[i].role, "student") &&
               (bits < 0 || bits >= 32);
    }
    return 0;
}

static int plot_sparsity(rep_plotter *p, const csv *c, const rep_row *rows, int nrows,
                         kd_err *e)
{
    char variants[MAX_KEYS][96], layers[MAX_KEYS][96];
    int nv = 0, nl = 0;
    double s[MAX_KEYS][MAX_KEYS];
    for (int i = 0; i < MAX_KEYS; i++)
        for (int j = 0; j < MAX_KEYS; j++)
            s[i][j] = -1;
    for (int r = 0; r < c->nrows; r++) {
        double np, nz;
        if (!pruned(rows, nrows, c->f[r][0]))
            continue; /* a quantized variant's rounding zeros are not pruning */
        int v = key_index(variants, &nv, c->f[r][0]), l = key_index(layers, &nl, c->f[r][1]);
        if (v >= 0 && l >= 0 && num_field(c->f[r][2], &np) && num_field(c->f[r][3], &nz) &&
            np > 0)
            s[l][v] = 100 * (1 - nz / np);
    }
    if (!nv)
        return KD_OK;
    kd_buf dat = {0}, body = {0};
    rep_bprintf(&dat, "layer");
    for (int v = 0; v < nv; v++) {
        rep_bprintf(&dat, " ");
        rep_dat_str(&dat, variants[v]);
    }
    for (int l = 0; l < nl; l++) {
        rep_bprintf(&dat, "\n");
        rep_dat_str(&dat, layers[l]);
        for (int v = 0; v < nv; v++)
            s[l][v] < 0 ? rep_bprintf(&dat, " ?") : rep_bprintf(&dat, " %.4g", s[l][v]);
    }
    rep_bprintf(&dat, "\n");
    rep_bprintf(&body, "  set datafile missing '?'\n"
                       "  set title 'Per-layer sparsity of the pruned variants'\n"
                       "  set xlabel 'Layer'\n  set ylabel 'Weights that are zero (%%)'\n"
                       "  set yrange [0:105]\n  set grid ytics lc rgb '#dddddd'\n"
                       "  set style data histograms\n  set style histogram clustered gap 1\n"
                       "  set style fill solid 0.85 border rgb '#333333'\n"
                       "  set boxwidth 0.9\n"
                       /* beside the plot: below it, it met the x label */
                       "  set key outside right top vertical\n"
                       "%s"
                       "  plot for [i=2:%d] 'sparsity.dat' using i:xtic(1) title columnheader(i)\n",
                nl > 6 ? "  set xtics rotate by -30 left\n" : "", nv + 1);
    kd_buf_put(&body, "", 1);
    rep_plot_spec sp = {"sparsity", "Per-layer sparsity",
                        "Share of each layer's parameters that are zero, for the pruned "
                        "variants only (those with a magnitude pruning pass): a quantized "
                        "variant's weights that round to zero are not pruning and are not "
                        "shown. A variant quantized after pruning counts both.",
                        1000, 560};
    int rc = body.failed ? kd_err_set(e, KD_ENOMEM, "out of memory")
                         : rep_plot_draw(p, &sp, &dat, (const char *)body.p, e);
    kd_buf_free(&dat);
    kd_buf_free(&body);
    return rc;
}

/* ---- sensitivity curves ---------------------------------------------------------- */
static int plot_sensitivity(rep_plotter *p, const csv *c, kd_err *e)
{
    char layers[MAX_KEYS][96];
    int nl = 0;
    double smax = 0, amax = 0, v;
    for (int r = 0; r < c->nrows; r++) {
        key_index(layers, &nl, c->f[r][0]);
        if (num_field(c->f[r][1], &v))
            smax = fmax(smax, v);
        if (num_field(c->f[r][2], &v))
            amax = fmax(amax, v);
    }
    /* fractions become percent; values already in percent are kept */
    double ss = smax <= 1 ? 100 : 1, as = amax <= 1 ? 100 : 1;
    kd_buf dat = {0}, body = {0};
    rep_bprintf(&body, "  set title 'Sensitivity: accuracy when one layer alone is pruned'\n"
                       "  set xlabel 'Sparsity of the layer (%%)'\n"
                       "  set ylabel 'Validation accuracy (%%)'\n"
                       "  set grid lc rgb '#dddddd'\n  set key bottom left box opaque\n"
                       /* no point on the border */
                       "  set offsets graph 0.03, graph 0.03, graph 0.05, graph 0.05\n");
    for (int l = 0; l < nl; l++) {
        rep_bprintf(&dat, "# ");
        rep_dat_str(&dat, layers[l]);
        rep_bprintf(&dat, "\n");
        for (int r = 0; r < c->nrows; r++) {
            double x, y;
            if (!strcmp(c->f[r][0], layers[l]) && num_field(c->f[r][1], &x) &&
                num_field(c->f[r][2], &y))
                rep_bprintf(&dat, "%.6g %.6g\n", x * ss, y * as);
        }
        rep_bprintf(&dat, "\n\n");
        rep_bprintf(&body, "%s'sensitivity.dat' index %d using 1:2 with linespoints pt 7 "
                           "ps 0.9 title ",
                    l ? ", \\\n    " : "  plot ", l);
        rep_gp_str(&body, layers[l]);
    }
    rep_bprintf(&body, "\n");
    kd_buf_put(&body, "", 1);
    rep_plot_spec sp = {"sensitivity", "Pruning sensitivity per layer",
                        "Validation accuracy (test accuracy when the run holds out no "
                        "validation split) when a single layer is pruned to the given sparsity "
                        "and the others are left dense: flat curves mark layers that can be "
                        "pruned hard.", 960, 600};
    int rc = body.failed ? kd_err_set(e, KD_ENOMEM, "out of memory")
                         : rep_plot_draw(p, &sp, &dat, (const char *)body.p, e);
    kd_buf_free(&dat);
    kd_buf_free(&body);
    return rc;
}

/* ---- weight histograms -------------------------------------------------------- */
/* Small multiples: one panel per variant (its layers overlaid, one colour per
 * layer), counts on a log scale, so neither a pruned variant's zeros nor nine
 * overlapping series hide the shapes.  A file with the zeros column (written
 * since exact zeros are counted apart) has them left out, and each panel's
 * title gives their share; an older file has them in its bins. */
#define HIST_MAX_LAYERS 6
#define HIST_MAX_PANELS 12

typedef struct {
    char variants[MAX_KEYS][96], layers[MAX_KEYS][96];
    int nv, nl, has_zeros, nv_all; /* nv_all: before the panel limit */
    double zeros[MAX_KEYS], total[MAX_KEYS]; /* per variant */
    char shown[MAX_KEYS][MAX_KEYS]; /* [v][l]: drawn (a bin of it holds weights) */
} hist_info;

static void hist_scan(const csv *c, hist_info *h)
{
    memset(h, 0, sizeof *h);
    h->has_zeros = c->ncols == 6;
    char seen[MAX_KEYS][MAX_KEYS] = {{0}};
    int per_variant[MAX_KEYS] = {0};
    for (int r = 0; r < c->nrows; r++) {
        int v = key_index(h->variants, &h->nv, c->f[r][0]);
        int l = key_index(h->layers, &h->nl, c->f[r][1]);
        double n, z;
        if (v < 0 || l < 0)
            continue;
        if (num_field(c->f[r][4], &n)) {
            h->total[v] += n;
            if (n > 0 && !h->shown[v][l] && per_variant[v] < HIST_MAX_LAYERS)
                h->shown[v][l] = 1, per_variant[v]++;
        }
        if (h->has_zeros && !seen[v][l] && num_field(c->f[r][5], &z)) {
            h->zeros[v] += z; /* the same on every row of a layer: once */
            h->total[v] += z;
            seen[v][l] = 1;
        }
    }
    h->nv_all = h->nv;
    h->nv = h->nv < HIST_MAX_PANELS ? h->nv : HIST_MAX_PANELS;
}

/* block v * nl + l: bin centre, count (? when empty: nothing on a log axis), width */
static void hist_data(const csv *c, const hist_info *h, kd_buf *dat)
{
    for (int v = 0; v < h->nv; v++)
        for (int l = 0; l < h->nl; l++) {
            for (int r = 0; r < c->nrows && h->shown[v][l]; r++) {
                double lo, hi, n;
                if (!strcmp(c->f[r][0], h->variants[v]) && !strcmp(c->f[r][1], h->layers[l]) &&
                    num_field(c->f[r][2], &lo) && num_field(c->f[r][3], &hi) &&
                    num_field(c->f[r][4], &n))
                    n > 0 ? rep_bprintf(dat, "%.6g %.6g %.6g\n", (lo + hi) / 2, n, hi - lo)
                          : rep_bprintf(dat, "%.6g ? %.6g\n", (lo + hi) / 2, hi - lo);
            }
            rep_bprintf(dat, "0 ? 0\n\n\n"); /* never an empty block */
        }
}

/* Only the blocks that hold weights are plotted (a panel of nothing but
 * missing points is an error in gnuplot); the first panel carries the one
 * key: every drawn layer's colour. */
static void hist_panel(kd_buf *body, const hist_info *h, int v)
{
    char title[200];
    if (!h->has_zeros)
        snprintf(title, sizeof title, "%s", h->variants[v]);
    else if (h->zeros[v] > 0 && h->total[v] > 0)
        snprintf(title, sizeof title, "%s (%.1f%% exact zeros not shown)", h->variants[v],
                 100 * h->zeros[v] / h->total[v]);
    else
        snprintf(title, sizeof title, "%s (no exact zeros)", h->variants[v]);
    rep_bprintf(body, "  set title ");
    rep_gp_str(body, title);
    int any = 0;
    for (int l = 0; l < h->nl; l++)
        any |= h->shown[v][l];
    rep_bprintf(body, " font ',10'\n");
    if (!any) /* nothing but zeros: an empty panel needs ranges of its own */
        rep_bprintf(body, "  set xrange [-1:1]\n  set yrange [0.7:10]\n");
    rep_bprintf(body, "  plot NaN notitle");
    for (int l = 0; l < h->nl; l++)
        if (h->shown[v][l])
            rep_bprintf(body, ", \\\n    'weights_hist.dat' index %d using 1:2:3 with boxes "
                              "fs transparent solid 0.35 lt %d notitle",
                        v * h->nl + l, l + 1);
    for (int l = 0; l < h->nl && v == 0; l++) {
        int used = 0;
        for (int k = 0; k < h->nv; k++)
            used |= h->shown[k][l];
        if (!used)
            continue;
        rep_bprintf(body, ", \\\n    NaN with boxes fs transparent solid 0.35 lt %d title ",
                    l + 1);
        rep_gp_str(body, h->layers[l]);
    }
    rep_bprintf(body, "\n");
    if (!any)
        rep_bprintf(body, "  set autoscale x\n  set yrange [0.7:*]\n");
    if (v == 0)
        rep_bprintf(body, "  unset key\n");
}

static int plot_hist(rep_plotter *p, const csv *c, kd_err *e)
{
    hist_info *h = kd_calloc(1, sizeof *h);
    if (!h)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    hist_scan(c, h);
    int nv = h->nv, cols = nv <= 3 ? nv : nv == 4 ? 2 : nv <= 9 ? 3 : 4;
    int rows = (nv + cols - 1) / cols;
    kd_buf dat = {0}, body = {0};
    hist_data(c, h, &dat);
    rep_bprintf(&body, "  set multiplot layout %d,%d title 'Weight histograms per variant "
                       "(count on a log scale; exact zeros %s)' font ',13'\n"
                       "  set xlabel 'Weight value'\n  set ylabel 'Count'\n"
                       "  set logscale y\n  set yrange [0.7:*]\n  set format y '%%.0s%%c'\n"
                       "  set xtics font ',9'\n  set ytics font ',9'\n"
                       "  set grid ytics lc rgb '#eeeeee'\n  set bmargin 4.5\n"
                       "  set key at screen 0.5, 0.005 center bottom horizontal font ',10'\n",
                rows, cols, h->has_zeros ? "left out" : "included");
    for (int v = 0; v < nv; v++)
        hist_panel(&body, h, v);
    rep_bprintf(&body, "  unset multiplot\n");
    kd_buf_put(&body, "", 1);
    char caption[400];
    snprintf(caption, sizeof caption,
             "Distribution of each layer's weights as the variant computes with them "
             "(dequantized), one panel per variant%s, counts on a log scale: quantization "
             "collapses the distribution onto a few levels. %s",
             h->nv_all > nv ? " (the first twelve)" : "",
             h->has_zeros ? "Exact zeros are left out (pruned weights, and weights rounded to "
                            "zero); each panel's title gives their share."
                          : "This weights_hist.csv has no zero count: exact zeros included.");
    rep_plot_spec sp = {"weights_hist", "Weight histograms", caption, cols * 420,
                        rows * 300 + 90};
    int rc = body.failed ? kd_err_set(e, KD_ENOMEM, "out of memory")
                         : rep_plot_draw(p, &sp, &dat, (const char *)body.p, e);
    kd_buf_free(&dat);
    kd_buf_free(&body);
    kd_free(h);
    return rc;
}

int rep_plot_csvs(rep_plotter *p, const char *run_dir, const rep_row *rows, int nrows,
                  kd_err *e)
{
    csv c;
    int rc = KD_OK;
    if (load(p, run_dir, "sparsity.csv", "variant,layer,params,nonzero", NULL, &c)) {
        rc = c.nrows ? plot_sparsity(p, &c, rows, nrows, e) : KD_OK;
        csv_free(&c);
    }
    if (rc == KD_OK && load(p, run_dir, "sensitivity.csv", "layer,sparsity,accuracy", NULL, &c)) {
        rc = c.nrows ? plot_sensitivity(p, &c, e) : KD_OK;
        csv_free(&c);
    }
    if (rc == KD_OK &&
        load(p, run_dir, "weights_hist.csv", "variant,layer,bin_lo,bin_hi,count,zeros",
             "variant,layer,bin_lo,bin_hi,count", &c)) {
        rc = c.nrows ? plot_hist(p, &c, e) : KD_OK;
        csv_free(&c);
    }
    return rc;
}
