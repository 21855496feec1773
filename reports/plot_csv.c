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

/* Loads run_dir/file when it exists: 1 loaded, 0 absent or malformed (warned). */
static int load(rep_plotter *p, const char *run_dir, const char *file, const char *hdr, csv *c)
{
    char path[4400];
    kd_err e = {0};
    snprintf(path, sizeof path, "%s/%s", run_dir, file);
    if (access(path, F_OK) != 0)
        return 0;
    if (csv_read(path, hdr, c, &e) == KD_OK)
        return 1;
    char buf[1200];
    rep_warn(p->w, "%s skipped: %s", file, kd_err_str(&e, buf, sizeof buf));
    return 0;
}

/* ---- sparsity bars ----------------------------------------------------------- */
static int plot_sparsity(rep_plotter *p, const csv *c, kd_err *e)
{
    char variants[MAX_KEYS][96], layers[MAX_KEYS][96];
    int nv = 0, nl = 0;
    double s[MAX_KEYS][MAX_KEYS];
    for (int i = 0; i < MAX_KEYS; i++)
        for (int j = 0; j < MAX_KEYS; j++)
            s[i][j] = -1;
    for (int r = 0; r < c->nrows; r++) {
        double np, nz;
        int v = key_index(variants, &nv, c->f[r][0]), l = key_index(layers, &nl, c->f[r][1]);
        if (v >= 0 && l >= 0 && num_field(c->f[r][2], &np) && num_field(c->f[r][3], &nz) &&
            np > 0)
            s[l][v] = 100 * (1 - nz / np);
    }
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
                       "  set boxwidth 0.9\n  set key below center horizontal\n"
                       "%s"
                       "  plot for [i=2:%d] 'sparsity.dat' using i:xtic(1) title columnheader(i)\n",
                nl > 6 ? "  set xtics rotate by -30 left\n" : "", nv + 1);
    kd_buf_put(&body, "", 1);
    rep_plot_spec sp = {"sparsity", "Per-layer sparsity",
                        "Share of each layer's parameters that are zero, per pruned variant.",
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
                       "  set ylabel 'Test accuracy (%%)'\n"
                       "  set grid lc rgb '#dddddd'\n  set key bottom left box opaque\n");
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
                        "Test accuracy when a single layer is pruned to the given sparsity and "
                        "the others are left dense: flat curves mark layers that can be pruned "
                        "hard.", 960, 600};
    int rc = body.failed ? kd_err_set(e, KD_ENOMEM, "out of memory")
                         : rep_plot_draw(p, &sp, &dat, (const char *)body.p, e);
    kd_buf_free(&dat);
    kd_buf_free(&body);
    return rc;
}

/* ---- weight histograms -------------------------------------------------------- */
#define HIST_MAX_LAYERS 6

static void hist_panel(kd_buf *body, const char *layer, int first_block, int nv,
                       char variants[][96])
{
    rep_bprintf(body, "  set title ");
    rep_gp_str(body, layer);
    rep_bprintf(body, "\n");
    for (int v = 0; v < nv; v++) {
        rep_bprintf(body, "%s'weights_hist.dat' index %d using 1:2:3 with boxes "
                          "fs transparent solid 0.45 noborder title ",
                    v ? ", \\\n    " : "  plot ", first_block + v);
        rep_gp_str(body, variants[v]);
    }
    rep_bprintf(body, "\n");
}

static int plot_hist(rep_plotter *p, const csv *c, kd_err *e)
{
    char variants[MAX_KEYS][96], layers[MAX_KEYS][96];
    int nv = 0, nl = 0;
    for (int r = 0; r < c->nrows; r++) {
        key_index(variants, &nv, c->f[r][0]);
        key_index(layers, &nl, c->f[r][1]);
    }
    if (nl > HIST_MAX_LAYERS)
        nl = HIST_MAX_LAYERS;
    int cols = nl < 3 ? nl : 3, rows = (nl + cols - 1) / cols;
    kd_buf dat = {0}, body = {0};
    rep_bprintf(&body, "  set multiplot layout %d,%d title 'Weight histograms before and after "
                       "quantization' font ',13'\n"
                       "  set xlabel 'Weight value'\n  set ylabel 'Count'\n"
                       "  set key top right font ',9'\n  set grid lc rgb '#eeeeee'\n",
                rows, cols);
    for (int l = 0; l < nl; l++) {
        for (int v = 0; v < nv; v++) {
            for (int r = 0; r < c->nrows; r++) {
                double lo, hi, n;
                if (!strcmp(c->f[r][0], variants[v]) && !strcmp(c->f[r][1], layers[l]) &&
                    num_field(c->f[r][2], &lo) && num_field(c->f[r][3], &hi) &&
                    num_field(c->f[r][4], &n))
                    rep_bprintf(&dat, "%.6g %.6g %.6g\n", (lo + hi) / 2, n, hi - lo);
            }
            rep_bprintf(&dat, "0 0 0\n\n\n"); /* never an empty block */
        }
        hist_panel(&body, layers[l], l * nv, nv, variants);
    }
    rep_bprintf(&body, "  unset multiplot\n");
    kd_buf_put(&body, "", 1);
    rep_plot_spec sp = {"weights_hist", "Weight histograms",
                        "Distribution of each layer's weights for every variant in "
                        "weights_hist.csv (first six layers): quantization collapses the "
                        "continuous distribution onto a few levels.",
                        cols * 440, rows * 380 + 40};
    int rc = body.failed ? kd_err_set(e, KD_ENOMEM, "out of memory")
                         : rep_plot_draw(p, &sp, &dat, (const char *)body.p, e);
    kd_buf_free(&dat);
    kd_buf_free(&body);
    return rc;
}

int rep_plot_csvs(rep_plotter *p, const char *run_dir, kd_err *e)
{
    csv c;
    int rc = KD_OK;
    if (load(p, run_dir, "sparsity.csv", "variant,layer,params,nonzero", &c)) {
        rc = c.nrows ? plot_sparsity(p, &c, e) : KD_OK;
        csv_free(&c);
    }
    if (rc == KD_OK && load(p, run_dir, "sensitivity.csv", "layer,sparsity,accuracy", &c)) {
        rc = c.nrows ? plot_sensitivity(p, &c, e) : KD_OK;
        csv_free(&c);
    }
    if (rc == KD_OK &&
        load(p, run_dir, "weights_hist.csv", "variant,layer,bin_lo,bin_hi,count", &c)) {
        rc = c.nrows ? plot_hist(p, &c, e) : KD_OK;
        csv_free(&c);
    }
    return rc;
}
