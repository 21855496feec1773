/* The two plots made from results rows: accuracy vs size (with the Pareto
 * front) and accuracy vs batch-1 latency.  Axis ranges are computed here and
 * each point's name is placed where it collides least with the others. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MAX_GROUPS 8
#define WIDTH 960
#define HEIGHT 640
/* the plot area in pixels (the canvas less margins and the key below), and
 * one character of the labels' 9-point font */
#define AREA_W 850.0
#define AREA_H 470.0
#define CHAR_W 6.4
#define CHAR_H 14.0

static const char *const role_title[4] = {"teacher", "students", "compressed", "other"};
static const char *const colors[MAX_GROUPS] = {"#b2182b", "#2166ac", "#1b7837", "#762a83",
                                               "#e08214", "#35978f", "#8c510a", "#555555"};
static const int point_types[MAX_GROUPS] = {5, 7, 9, 13, 11, 15, 5, 7};
static const char *const ladder_colors[REP_MAX_LADDERS] = {
    "#ff7f00", "#984ea3", "#e7298a", "#a6761d", "#1f78b4", "#66a61e", "#e6ab02", "#000000"};

/* The legend's groups: roles (one run), or sources (the part of the name
 * before '/', when comparing runs); the last group takes any overflow. */
typedef struct {
    int n;
    char title[MAX_GROUPS][64];
} groups;

typedef struct {
    double x, y, x99; /* x: size or p50 latency; y: accuracy in percent */
    int row, group;
    double nx, ny;    /* in [0,1] plot coordinates */
} pt;

typedef struct {
    double lx0, lx1, y0, y1; /* log10 x range, y range */
} ranges;

/* The ladders drawn: each with two measured steps or more, as indices into
 * the points in the ladder's order. */
typedef struct {
    int n;
    const char *name[REP_MAX_LADDERS];
    int len[REP_MAX_LADDERS];
    int pt[REP_MAX_LADDERS][REP_LADDER_STEPS];
} lines;

static int role_group(const char *role)
{
    return !strcmp(role, "teacher") ? 0 : !strcmp(role, "student") ? 1
           : !strcmp(role, "compressed") ? 2 : 3;
}

static int group_of(groups *g, const rep_row *r, int by_source)
{
    if (!by_source) {
        int k = role_group(r->role);
        for (; g->n <= k; g->n++)
            snprintf(g->title[g->n], sizeof g->title[0], "%s", role_title[g->n]);
        return k;
    }
    char src[64];
    snprintf(src, sizeof src, "%.*s", (int)strcspn(r->name, "/"), r->name);
    for (int k = 0; k < g->n; k++)
        if (!strcmp(g->title[k], src))
            return k;
    if (g->n == MAX_GROUPS - 1)
        snprintf(g->title[g->n++], sizeof g->title[0], "others");
    if (g->n == MAX_GROUPS)
        return MAX_GROUPS - 1;
    snprintf(g->title[g->n], sizeof g->title[0], "%s", src);
    return g->n++;
}

static int by_x(const void *a, const void *b)
{
    const pt *p = a, *q = b;
    return p->x < q->x ? -1 : p->x > q->x ? 1 : p->row - q->row;
}

static int collect(const rep_row *rows, int n, int latency, int by_source, groups *g, pt *pts)
{
    int np = 0;
    memset(g, 0, sizeof *g);
    for (int i = 0; i < n && np < REP_DOC_MAXPTS; i++) {
        double x = latency ? rows[i].latency_us_b1_p50 : (double)rows[i].size_bytes;
        if (x > 0 && rows[i].accuracy >= 0)
            pts[np++] = (pt){x, 100 * rows[i].accuracy, latency ? rows[i].latency_us_b1_p99 : 0,
                             i, group_of(g, &rows[i], by_source), 0, 0};
    }
    qsort(pts, (size_t)np, sizeof *pts, by_x);
    return np;
}

/* margins around the points: room for labels, never less than a decade of
 * x or one accuracy point of y */
static ranges ranges_of(pt *pts, int np)
{
    ranges r = {INFINITY, -INFINITY, INFINITY, -INFINITY};
    for (int i = 0; i < np; i++) {
        double hi = fmax(pts[i].x, pts[i].x99);
        r.lx0 = fmin(r.lx0, log10(pts[i].x));
        r.lx1 = fmax(r.lx1, log10(hi));
        r.y0 = fmin(r.y0, pts[i].y);
        r.y1 = fmax(r.y1, pts[i].y);
    }
    double xs = fmax(r.lx1 - r.lx0, 1.0), ys = fmax(r.y1 - r.y0, 1.0);
    double xc = (r.lx0 + r.lx1) / 2, yc = (r.y0 + r.y1) / 2;
    r.lx0 = xc - xs * 0.65;
    r.lx1 = xc + xs * 0.65;
    r.y0 = yc - ys * 0.62;
    r.y1 = yc + ys * 0.62;
    for (int i = 0; i < np; i++) {
        pts[i].nx = (log10(pts[i].x) - r.lx0) / (r.lx1 - r.lx0);
        pts[i].ny = (pts[i].y - r.y0) / (r.y1 - r.y0);
    }
    return r;
}

#define SEG_STEPS 10
#define MAX_OBST (REP_DOC_MAXPTS * 12 + REP_MAX_LADDERS * REP_LADDER_STEPS * SEG_STEPS)

/* the segment from a to b as small boxes */
static int segment(const pt *a, const pt *b, double dx, double dy, rep_box *o)
{
    for (int k = 1; k < SEG_STEPS; k++) {
        double t = (double)k / SEG_STEPS;
        double x = a->nx + t * (b->nx - a->nx), y = a->ny + t * (b->ny - a->ny);
        o[k - 1] = (rep_box){x - dx / 3, y - dy / 3, x + dx / 3, y + dy / 3};
    }
    return SEG_STEPS - 1;
}

/* what labels must not cover: the points, the latency bars, the segments of
 * the front and of the ladders */
static int obstacles(const pt *pts, int np, const int *front, const lines *ln, ranges r,
                     rep_box *o)
{
    int n = 0;
    double dx = 1.2 * CHAR_W / AREA_W, dy = 1.2 * CHAR_W / AREA_H;
    int prev = -1;
    for (int i = 0; i < np; i++) {
        o[n++] = (rep_box){pts[i].nx - dx, pts[i].ny - dy, pts[i].nx + dx, pts[i].ny + dy};
        if (pts[i].x99 > pts[i].x) { /* a latency bar */
            double x99 = (log10(pts[i].x99) - r.lx0) / (r.lx1 - r.lx0);
            o[n++] = (rep_box){pts[i].nx, pts[i].ny - dy / 2, x99, pts[i].ny + dy / 2};
        }
        if (front && front[i]) {
            if (prev >= 0)
                n += segment(&pts[prev], &pts[i], dx, dy, o + n);
            prev = i;
        }
    }
    for (int l = 0; ln && l < ln->n; l++)
        for (int k = 1; k < ln->len[l]; k++)
            n += segment(&pts[ln->pt[l][k - 1]], &pts[ln->pt[l][k]], dx, dy, o + n);
    return n;
}

/* the labels as three blocks (left-aligned, right-aligned, centred) */
static void label_blocks(const rep_row *rows, const pt *pts, int np, const int *front,
                         const lines *ln, ranges r, kd_buf *dat, kd_buf *cmd, int *block,
                         const char *file)
{
    rep_box *obst = kd_calloc(MAX_OBST, sizeof *obst);
    if (!obst) {
        dat->failed = 1;
        return;
    }
    int nobst = obstacles(pts, np, front, ln, r, obst);
    double px[REP_DOC_MAXPTS], py[REP_DOC_MAXPTS], lx[REP_DOC_MAXPTS], ly[REP_DOC_MAXPTS];
    int len[REP_DOC_MAXPTS], align[REP_DOC_MAXPTS];
    for (int i = 0; i < np; i++) {
        px[i] = pts[i].nx;
        py[i] = pts[i].ny;
        len[i] = (int)strlen(rows[pts[i].row].name);
    }
    rep_place_labels(px, py, len, np, CHAR_W / AREA_W, CHAR_H / AREA_H, obst, nobst, lx, ly,
                     align);
    kd_free(obst);
    static const int aligns[3] = {1, -1, 0};
    static const char *const just[3] = {"left", "right", "center"};
    for (int a = 0; a < 3; a++) {
        int any = 0;
        for (int i = 0; i < np; i++)
            if (align[i] == aligns[a]) {
                rep_bprintf(dat, "%.6g %.6g ", pow(10, r.lx0 + lx[i] * (r.lx1 - r.lx0)),
                            r.y0 + ly[i] * (r.y1 - r.y0));
                rep_dat_str(dat, rows[pts[i].row].name);
                rep_bprintf(dat, "\n");
                any = 1;
            }
        if (!any)
            continue;
        rep_bprintf(dat, "\n\n");
        rep_bprintf(cmd, ", \\\n    '%s' index %d using 1:2:3 with labels %s font ',9' "
                         "tc rgb '#333333' notitle", file, (*block)++, just[a]);
    }
}

/* each ladder: a solid line through its steps in order, open circles on
 * its points, a key entry with its name */
static void ladder_blocks(const pt *pts, const lines *ln, const char *file, int *block,
                          kd_buf *dat, kd_buf *cmd)
{
    for (int l = 0; ln && l < ln->n; l++) {
        for (int k = 0; k < ln->len[l]; k++)
            rep_bprintf(dat, "%.6g %.6g\n", pts[ln->pt[l][k]].x, pts[ln->pt[l][k]].y);
        rep_bprintf(dat, "\n\n");
        rep_bprintf(cmd, ", \\\n    '%s' index %d using 1:2 with linespoints lw 2.5 pt 6 ps 2.2 "
                         "lc rgb '%s' title ", file, (*block)++, ladder_colors[l]);
        rep_gp_str(cmd, ln->name[l]);
    }
}

/* Data blocks, one per role group present, the Pareto front (when front is
 * not NULL), the ladders (ln may be NULL) and the labels; the plot command in cmd. */
static void blocks(const rep_row *rows, const pt *pts, int np, const int *front,
                   const lines *ln, ranges r, const groups *gr, const char *file, int latency,
                   kd_buf *dat, kd_buf *cmd)
{
    int block = 0;
    rep_bprintf(cmd, "  plot 1/0 notitle");
    for (int g = 0; g < gr->n; g++) {
        int any = 0;
        for (int i = 0; i < np; i++)
            if (pts[i].group == g) {
                rep_bprintf(dat, "%.6g %.6g %.6g\n", pts[i].x, pts[i].y,
                            fmax(pts[i].x99, pts[i].x));
                any = 1;
            }
        if (!any)
            continue;
        rep_bprintf(dat, "\n\n");
        rep_bprintf(cmd, ", \\\n    '%s' index %d using %s pt %d ps 1.5 lc rgb '%s' title ", file,
                    block++, latency ? "1:2:1:3 with xerrorbars" : "1:2 with points",
                    point_types[g], colors[g]);
        rep_gp_str(cmd, gr->title[g]);
    }
    if (front) {
        for (int i = 0; i < np; i++)
            if (front[i])
                rep_bprintf(dat, "%.6g %.6g\n", pts[i].x, pts[i].y);
        rep_bprintf(dat, "\n\n");
        rep_bprintf(cmd, ", \\\n    '%s' index %d using 1:2 with lines dt 2 lw 1.5 "
                         "lc rgb '#777777' title 'Pareto front'", file, block++);
    }
    ladder_blocks(pts, ln, file, &block, dat, cmd); /* over the points and the front */
    label_blocks(rows, pts, np, front, ln, r, dat, cmd, &block, file);
    rep_bprintf(cmd, "\n");
}

/* Under three decades gnuplot's log axis labels one or two powers of ten at
 * most: label 1-2-5 steps instead. */
static void log_tics(kd_buf *b, ranges r)
{
    if (r.lx1 - r.lx0 >= 3)
        return;
    static const double steps[3] = {1, 2, 5};
    int n = 0;
    rep_bprintf(b, "  set xtics (");
    for (int k = (int)floor(r.lx0); k <= (int)ceil(r.lx1); k++)
        for (int i = 0; i < 3; i++) {
            double v = steps[i] * pow(10, k);
            if (log10(v) >= r.lx0 && log10(v) <= r.lx1)
                rep_bprintf(b, "%s%.6g", n++ ? ", " : "", v);
        }
    rep_bprintf(b, ")\n");
}

/* The key below the plot: its columns (as many of at most four as the
 * longest title allows) and rows; the bottom margin grows with the rows so
 * the key never covers the axis label. */
#define KEY_CHAR_W 7.5 /* pixels per character of the 11-point key */
static void key_layout(const groups *g, const int *front, const lines *ln, int *cols, int *nrows)
{
    int n = g->n + (front != NULL), longest = front ? 12 : 0;
    for (int k = 0; k < g->n; k++)
        longest = (int)fmax(longest, (double)strlen(g->title[k]));
    for (int l = 0; ln && l < ln->n; l++, n++)
        longest = (int)fmax(longest, (double)strlen(ln->name[l]));
    *cols = (int)((WIDTH - 40) / ((longest + 8) * KEY_CHAR_W));
    *cols = *cols < 1 ? 1 : *cols > 4 ? 4 : *cols;
    *nrows = n ? (n + *cols - 1) / *cols : 1;
}

static int draw(rep_plotter *p, const rep_plot_spec *s, const rep_row *rows, pt *pts, int np,
                const groups *g, const int *front, const lines *ln, int latency, kd_err *e)
{
    int cols, krows;
    key_layout(g, front, ln, &cols, &krows);
    kd_buf dat = {0}, body = {0};
    char file[80];
    ranges r = ranges_of(pts, np);
    snprintf(file, sizeof file, "%s.dat", s->name);
    rep_bprintf(&body, "  set title '%s'\n  set xlabel '%s'\n  set ylabel 'Test accuracy (%%)'\n"
                       "  set logscale x\n  set xrange [%.6g:%.6g]\n  set yrange [%.6g:%.6g]\n"
                       "  set format y '%%.1f'\n  set grid xtics mxtics ytics lc rgb '#e4e4e4'\n"
                       "  set key at screen 0.5, 0.01 center bottom horizontal maxcols %d "
                       "spacing 1.2\n  set bmargin %.1f\n",
                latency ? "Accuracy vs batch-1 latency (bars reach p99)"
                : front ? "Accuracy vs model size (dashed: Pareto front)"
                        : "Accuracy vs model size",
                latency ? "Batch-1 latency, p50 (µs, log scale)"
                        : "Model file size (bytes, log scale)",
                pow(10, r.lx0), pow(10, r.lx1), r.y0, r.y1, cols, 4.0 + 1.5 * krows);
    if (!latency)
        rep_bprintf(&body, "  set format x '%%.0s %%cB'\n");
    log_tics(&body, r);
    blocks(rows, pts, np, front, ln, r, g, file, latency, &dat, &body);
    kd_buf_put(&body, "", 1);
    int rc = body.failed ? kd_err_set(e, KD_ENOMEM, "out of memory")
                         : rep_plot_draw(p, s, &dat, (const char *)body.p, e);
    kd_buf_free(&dat);
    kd_buf_free(&body);
    return rc;
}

/* the points of each ladder's steps that have one (a row named by the step
 * and measured), in the ladder's order */
static void ladder_lines(const rep_row *rows, int n, const pt *pts, int np, const rep_ladder *l,
                         int nl, lines *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < nl && i < REP_MAX_LADDERS; i++) {
        int k = out->n, m = 0;
        for (int s = 0; s < l[i].nsteps && s < REP_LADDER_STEPS; s++) {
            int row = -1;
            for (int j = 0; j < n && row < 0; j++)
                row = strcmp(rows[j].name, l[i].step[s]) ? -1 : j;
            for (int q = 0; row >= 0 && q < np; q++)
                if (pts[q].row == row) {
                    out->pt[k][m++] = q;
                    break;
                }
        }
        if (m >= 2) { /* a line needs two points */
            out->name[k] = l[i].name;
            out->len[k] = m;
            out->n++;
        }
    }
}

int rep_plot_acc_size(rep_plotter *p, const rep_row *rows, int n, int by_source,
                      const rep_ladder *ladders, int nladders, kd_err *e)
{
    pt *pts = kd_calloc(REP_DOC_MAXPTS, sizeof *pts);
    if (!pts)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    groups g;
    int np = collect(rows, n, 0, by_source, &g, pts), rc = KD_OK;
    double sx[REP_DOC_MAXPTS], sy[REP_DOC_MAXPTS];
    int front[REP_DOC_MAXPTS];
    for (int i = 0; i < np; i++) {
        sx[i] = pts[i].x;
        sy[i] = pts[i].y;
    }
    int nfront = rep_pareto(sx, sy, np, front);
    lines *ln = kd_calloc(1, sizeof *ln);
    if (!ln) {
        kd_free(pts);
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    }
    ladder_lines(rows, n, pts, np, ladders, nladders, ln);
    rep_plot_spec s = {"acc_size", "Accuracy vs model size",
                       ln->n ? "Test accuracy against the size of the model file on disk (log "
                               "scale). The dashed line joins the Pareto front: no other variant "
                               "is both smaller and more accurate. Each solid line is a ladder "
                               "(report.ladders) through its steps in order."
                             : "Test accuracy against the size of the model file on disk (log "
                               "scale). The dashed line joins the Pareto front: no other variant "
                               "is both smaller and more accurate.", WIDTH, HEIGHT};
    if (np > 0) /* a front is drawn when it has two points */
        rc = draw(p, &s, rows, pts, np, &g, nfront > 1 ? front : NULL, ln, 0, e);
    kd_free(ln);
    kd_free(pts);
    return rc;
}

int rep_plot_acc_latency(rep_plotter *p, const rep_row *rows, int n, kd_err *e)
{
    pt *pts = kd_calloc(REP_DOC_MAXPTS, sizeof *pts);
    if (!pts)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    groups g;
    int np = collect(rows, n, 1, 0, &g, pts), rc = KD_OK;
    rep_plot_spec s = {"acc_latency", "Accuracy vs batch-1 latency",
                       "Test accuracy against the measured batch-1 latency: the point is the "
                       "median (p50), the bar reaches the 99th percentile.", WIDTH, HEIGHT};
    if (np > 0)
        rc = draw(p, &s, rows, pts, np, &g, NULL, NULL, 1, e);
    kd_free(pts);
    return rc;
}
