/* The report's distillation section: per student, every distilled mode
 * against its scratch twin (the gain, paired seed by seed) and against plain
 * KD (the difference of means against their pooled sd), as one table, and a
 * dot plot per student of every mode's mean ± sd with its seeds.  Made from
 * the rows alone: <student>/scratch beside <student>/<mode> rows carrying
 * seed_list, accuracy_per_seed, method, standardize and epoch_seconds. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- reading the rows ------------------------------------------------------- */

static const char *row_str(const rep_row *r, const char *key)
{
    for (int i = 0; i < r->nextra; i++)
        if (!r->extra[i].is_num && !strcmp(r->extra[i].key, key))
            return r->extra[i].str;
    return NULL;
}

/* Up to REP_DISTILL_SEEDS whitespace-separated numbers of s into v; their count. */
static int parse_list(const char *s, double *v)
{
    int n = 0;
    while (s && *s && n < REP_DISTILL_SEEDS) {
        char *end;
        double x = strtod(s, &end);
        if (end == s)
            return n;
        v[n++] = x;
        s = end;
    }
    return n;
}

/* r's per-seed accuracies (points) and seeds into l; its mean and sd. */
static void seeds_of(const rep_row *r, rep_distill_line *l)
{
    double acc[REP_DISTILL_SEEDS];
    int na = parse_list(row_str(r, "accuracy_per_seed"), acc);
    int ns = parse_list(row_str(r, "seed_list"), l->seed);
    l->nseeds = na == ns ? na : 0; /* a list that does not match its seeds is not used */
    for (int i = 0; i < l->nseeds; i++)
        l->acc[i] = 100 * acc[i];
    if (!l->nseeds) { /* one figure: the row's mean and sd as they are */
        l->mean = r->accuracy >= 0 ? 100 * r->accuracy : NAN;
        double sd = rep_row_get_num(r, "accuracy_std");
        l->sd = sd >= 0 ? 100 * sd : NAN;
        return;
    }
    double m = 0, v = 0;
    for (int i = 0; i < l->nseeds; i++)
        m += l->acc[i];
    m /= l->nseeds;
    for (int i = 0; i < l->nseeds; i++)
        v += (l->acc[i] - m) * (l->acc[i] - m);
    l->mean = m;
    l->sd = l->nseeds > 1 ? sqrt(v / (l->nseeds - 1)) : 0;
}

/* Hinton KD as configured: method kd (or none: a row from before methods),
 * no standardization, no hint. */
static int plain_kd(const rep_row *r)
{
    const char *m = row_str(r, "method");
    return (m ? !strcmp(m, "kd") : rep_row_get_num(r, "temperature") >= 0) &&
           rep_row_get_num(r, "standardize") <= 0 && !row_str(r, "hint");
}

/* The paired gain of l over scratch line s: mean and sd of the per-seed
 * differences over the seeds both hold; without seed lists, the difference
 * of the means (no sd). */
static void paired_gain(rep_distill_line *l, const rep_distill_line *s)
{
    double d[REP_DISTILL_SEEDS];
    int n = 0;
    for (int i = 0; i < l->nseeds; i++)
        for (int j = 0; j < s->nseeds; j++)
            if (l->seed[i] == s->seed[j]) {
                d[n++] = l->acc[i] - s->acc[j];
                break;
            }
    l->npaired = n;
    l->gain = l->gain_sd = NAN;
    if (!n) {
        l->gain = l->mean - s->mean;
        return;
    }
    double m = 0, v = 0;
    for (int i = 0; i < n; i++)
        m += d[i];
    m /= n;
    for (int i = 0; i < n; i++)
        v += (d[i] - m) * (d[i] - m);
    l->gain = m;
    l->gain_sd = n > 1 ? sqrt(v / (n - 1)) : NAN;
}

/* l against plain KD line k: the difference of means and the pooled sd
 * sqrt(((n1-1) s1^2 + (n2-1) s2^2) / (n1 + n2 - 2)). */
static void against_kd(rep_distill_line *l, const rep_distill_line *k)
{
    l->vs_kd = l->mean - k->mean;
    int n1 = l->nseeds, n2 = k->nseeds;
    l->pooled_sd = n1 > 1 && n2 > 1 ? sqrt(((n1 - 1) * l->sd * l->sd + (n2 - 1) * k->sd * k->sd) /
                                           (n1 + n2 - 2))
                                    : NAN;
    l->beats_kd = isfinite(l->pooled_sd) && l->vs_kd > l->pooled_sd;
}

/* One line of row i (of student prefix plen chars long; scratch row si). */
static void line_of(const rep_row *rows, int i, int si, size_t plen, rep_distill_line *l)
{
    const rep_row *r = &rows[i];
    memset(l, 0, sizeof *l);
    l->row = i;
    l->scratch = i == si;
    snprintf(l->student, sizeof l->student, "%.*s", (int)plen, r->name);
    snprintf(l->mode, sizeof l->mode, "%s", r->name + plen + 1);
    seeds_of(r, l);
    double es = rep_row_get_num(r, "epoch_seconds");
    double e0 = rep_row_get_num(&rows[si], "epoch_seconds");
    l->epoch_ratio = es > 0 && e0 > 0 ? es / e0 : NAN;
    l->vs_kd = l->pooled_sd = l->gain = l->gain_sd = NAN;
}

/* One student's lines from scratch row si: scratch first, then the other
 * student rows <student>/<mode> in row order.  Returns the count (<= max). */
static int student_lines(const rep_row *rows, int n, int si, rep_distill_line *out, int max)
{
    size_t plen = strlen(rows[si].name) - strlen("/scratch");
    int nl = 1, kd = -1;
    line_of(rows, si, si, plen, &out[0]);
    for (int i = 0; i < n && nl < max; i++) {
        const rep_row *r = &rows[i];
        if (i == si || strncmp(r->name, rows[si].name, plen) || r->name[plen] != '/' ||
            strchr(r->name + plen + 1, '/') || strcmp(r->role, "student"))
            continue; /* not one of this student's modes */
        rep_distill_line *l = &out[nl++];
        line_of(rows, i, si, plen, l);
        paired_gain(l, &out[0]);
        if (kd < 0 && plain_kd(r))
            kd = nl - 1;
    }
    for (int k = 1; k < nl && kd >= 0; k++) {
        out[k].kd_ref = k == kd;
        if (k != kd)
            against_kd(&out[k], &out[kd]);
    }
    return nl;
}

int rep_distill_lines(const rep_row *rows, int n, rep_distill_line *out, int max)
{
    int nl = 0;
    for (int i = 0; i < n && nl < max; i++) {
        const char *s = strrchr(rows[i].name, '/');
        if (!s || strcmp(s, "/scratch") || strcmp(rows[i].role, "student") ||
            strchr(rows[i].name, '/') != s)
            continue;
        int k = student_lines(rows, n, i, out + nl, max - nl);
        nl += k > 1 ? k : 0; /* a scratch row with no distilled mode is no comparison */
    }
    return nl;
}
/* ---- the dot plot ------------------------------------------------------------ */

#define PLOT_SPAN 10.0 /* points below scratch the axis shows at most */

/* "distill_" and the student's name as [A-Za-z0-9_-], numbered when an
 * earlier student gave the same stem */
static void plot_stem(const rep_distill_line *l, int nl, int k, char *name, size_t n)
{
    snprintf(name, n, "distill_%.48s", l[k].student);
    for (char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '_'))
            *c = '_';
    int same = 0;
    for (int j = 0; j < k && j < nl; j++)
        if (l[j].scratch) {
            char prev[64];
            plot_stem(l, nl, j, prev, sizeof prev);
            same += !strcmp(prev, name);
        }
    if (same)
        snprintf(name + strlen(name), n - strlen(name), "-%d", k + 1);
}

/* Lines l[0..m) of one student: the means with ± sd error bars, each seed
 * as a small open dot beside them, the scratch mean as a dashed line. */
static int plot_student(rep_plotter *p, const rep_distill_line *l, int m, const char *name,
                        kd_err *e)
{
    kd_buf dat = {0}, body = {0};
    /* a diverged mode would squash the others into a line: the axis stops
     * PLOT_SPAN points below scratch and the mode's label gives its mean */
    double lo = l[0].mean, hi = l[0].mean;
    for (int k = 0; k < m; k++) {
        double sd = isfinite(l[k].sd) ? l[k].sd : 0;
        if (l[k].mean - sd >= l[0].mean - PLOT_SPAN && l[k].mean - sd < lo)
            lo = l[k].mean - sd;
        hi = l[k].mean + sd > hi ? l[k].mean + sd : hi;
    }
    rep_bprintf(&dat, "# x mean(%%) sd(%%) mode\n");
    for (int k = 0; k < m; k++) {
        char label[96];
        if (l[k].mean < lo)
            snprintf(label, sizeof label, "%.60s (%.1f, below)", l[k].mode, l[k].mean);
        else
            snprintf(label, sizeof label, "%s", l[k].mode);
        rep_bprintf(&dat, "%d %.6g %.6g ", k + 1, l[k].mean, isfinite(l[k].sd) ? l[k].sd : 0);
        rep_dat_str(&dat, label);
        rep_bprintf(&dat, "\n");
    }
    rep_bprintf(&dat, "\n\n# x accuracy(%%) of one seed\n");
    for (int k = 0; k < m; k++)
        for (int i = 0; i < l[k].nseeds; i++)
            rep_bprintf(&dat, "%.6g %.6g\n", k + 1 + 0.12, l[k].acc[i]);
    if (!l[0].nseeds && m) /* no seeds anywhere: one point gnuplot can skip */
        rep_bprintf(&dat, "? ?\n");
    char title[200];
    snprintf(title, sizeof title, "Distillation: %.96s, every mode against scratch", l[0].student);
    rep_bprintf(&body, "  set datafile missing '?'\n  set title ");
    rep_gp_str(&body, title);
    rep_bprintf(&body, " font ',13'\n  set grid ytics lc rgb '#dddddd'\n"
                       "  set xlabel 'Mode'\n  set ylabel 'Test accuracy (%%)'\n  set xrange [0.5:%d.5]\n"
                       "  set yrange [%.6g:%.6g]\n"
                       "  set offsets 0, 0, graph 0.08, graph 0.08\n  set format y '%%g'\n"
                       "  set bmargin 6\n  set key at screen 0.5, 0.01 center bottom horizontal font ',10'\n"
                       "  set xtics rotate by -20\n"
                       "  plot '%s.dat' index 0 using 1:2:3:xtic(4) with yerrorbars pt 7 ps 1.3 "
                       "lc rgb '#2166ac' title 'mean ± sd over the seeds', \\\n"
                       "    '%s.dat' index 1 using 1:2 with points pt 6 ps 0.7 lc rgb '#4d4d4d' "
                       "title 'one seed', \\\n"
                       "    %.6g with lines dt 2 lc rgb '#e08214' title 'scratch mean'\n",
                m, lo - 0.1 * (hi - lo + 0.1), hi + 0.1 * (hi - lo + 0.1), name, name, l[0].mean);
    kd_buf_put(&body, "", 1);
    rep_plot_spec s = {name, title,
                       "Test accuracy of the scratch student and of each distilled mode: the "
                       "mean over the seeds with ± one sample sd, each seed as an open dot; "
                       "every mode is trained with the same seeds, data order and budget as "
                       "scratch.",
                       900, 560};
    int rc = body.failed ? kd_err_set(e, KD_ENOMEM, "out of memory")
                         : rep_plot_draw(p, &s, &dat, (const char *)body.p, e);
    kd_buf_free(&dat);
    kd_buf_free(&body);
    return rc;
}

int rep_plot_distill(rep_plotter *p, const rep_row *rows, int n, kd_err *e)
{
    rep_distill_line *l = kd_calloc(REP_DISTILL_LINES, sizeof *l);
    if (!l)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    int nl = rep_distill_lines(rows, n, l, REP_DISTILL_LINES), rc = KD_OK;
    for (int k = 0; k < nl && rc == KD_OK; k++) {
        if (!l[k].scratch)
            continue;
        int m = 1;
        while (k + m < nl && !l[k + m].scratch)
            m++;
        char name[64];
        plot_stem(l, nl, k, name, sizeof name);
        rc = plot_student(p, l + k, m, name, e);
    }
    kd_free(l);
    return rc;
}

/* ---- the section ------------------------------------------------------------- */

static void fmt_pm(char *c, size_t n, double m, double sd, int sign)
{
    if (!isfinite(m))
        snprintf(c, n, "–");
    else if (isfinite(sd))
        snprintf(c, n, sign ? "%+.2f ± %.2f" : "%.2f ± %.2f", m, sd);
    else
        snprintf(c, n, sign ? "%+.2f" : "%.2f", m);
}

static void table_row(const rep_distill_line *l, char (*c)[REP_TCELL])
{
    snprintf(c[0], REP_TCELL, "%s", l->student);
    snprintf(c[1], REP_TCELL, "%s", l->mode);
    snprintf(c[2], REP_TCELL, "%d", l->nseeds ? l->nseeds : 1);
    fmt_pm(c[3], REP_TCELL, l->mean, l->nseeds > 1 ? l->sd : NAN, 0);
    if (l->scratch)
        snprintf(c[4], REP_TCELL, "(reference)");
    else
        fmt_pm(c[4], REP_TCELL, l->gain, l->gain_sd, 1);
    if (l->kd_ref || l->scratch || !isfinite(l->vs_kd))
        snprintf(c[5], REP_TCELL, l->kd_ref ? "(plain KD)" : "–");
    else if (isfinite(l->pooled_sd))
        snprintf(c[5], REP_TCELL, "%+.2f (%.2f)", l->vs_kd, l->pooled_sd);
    else
        snprintf(c[5], REP_TCELL, "%+.2f (–)", l->vs_kd);
    snprintf(c[6], REP_TCELL, "%s", l->scratch || l->kd_ref || !isfinite(l->pooled_sd) ? "–"
                                    : l->beats_kd ? "yes" : "no");
    if (isfinite(l->epoch_ratio))
        snprintf(c[7], REP_TCELL, "%.2f", l->epoch_ratio);
    else
        snprintf(c[7], REP_TCELL, "–");
}

static int gain_table(const rep_distill_line *l, int nl, rep_table *t, kd_err *e)
{
    static const char *const head[] = {
        "student", "mode", "seeds", "accuracy % (mean ± sd)", "gain over scratch (paired, ± sd)",
        "vs plain KD (pooled sd)", "beats KD by > 1 pooled sd", "epoch time × scratch"};
    int rc = rep_table_init(t, nl, e);
    if (rc != KD_OK)
        return rc;
    t->ncols = 8; /* a page wide, as every table of the report */
    for (int j = 0; j < t->ncols; j++) {
        t->head[j] = head[j];
        t->right[j] = j >= 2 && j != 6;
    }
    for (int k = 0; k < nl; k++)
        table_row(&l[k], t->cell[k]);
    return KD_OK;
}

/* One verdict per student: its best mode other than plain KD, and whether it
 * beats plain KD by more than one pooled sd. */
static void verdict(const rep_distill_line *l, int m, char *out, size_t n)
{
    int best = -1, kd = -1;
    for (int k = 1; k < m; k++) {
        if (l[k].kd_ref)
            kd = k;
        else if (isfinite(l[k].vs_kd) && (best < 0 || l[k].mean > l[best].mean))
            best = k;
    }
    if (kd < 0)
        snprintf(out, n, "%s: no plain KD mode to compare against", l[0].student);
    else if (best < 0)
        snprintf(out, n, "%s: plain KD only (%+.2f points over scratch)", l[0].student,
                 l[kd].gain);
    else if (!isfinite(l[best].pooled_sd))
        snprintf(out, n, "%s: best other mode %s, %+.2f points against plain KD (one seed: no "
                 "pooled sd); plain KD %+.2f over scratch", l[0].student, l[best].mode,
                 l[best].vs_kd, l[kd].gain);
    else
        snprintf(out, n, "%s: best other mode %s, %+.2f points against plain KD (pooled sd "
                 "%.2f): %s; plain KD %+.2f over scratch", l[0].student, l[best].mode,
                 l[best].vs_kd, l[best].pooled_sd,
                 l[best].beats_kd ? "beats it by more than one pooled sd"
                                  : "not more than one pooled sd", l[kd].gain);
}

static const char section_note[] =
    "Accuracy in percent (mean ± sample sd over the seeds). The gain over scratch is the mean "
    "± sd of the per-seed differences (each mode against the scratch student of the same seed, "
    "data order and budget). Against plain KD (Hinton, no standardization): the difference of "
    "the means, the pooled sd of the two rows' seeds, and whether the difference exceeds it. "
    "Epoch time is the mode's mean epoch against scratch's, as measured during the run.";

int rep_distill_section(const rep_doc *d, int style, kd_buf *b, kd_err *e)
{
    rep_distill_line *l = kd_calloc(REP_DISTILL_LINES, sizeof *l);
    if (!l)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    int nl = rep_distill_lines(d->rows, d->nrows, l, REP_DISTILL_LINES);
    rep_table t;
    int rc = nl ? gain_table(l, nl, &t, e) : KD_OK;
    if (nl && rc == KD_OK) {
        rep_bprintf(b, style == REP_TABLE_MD ? "\n## Distillation\n\n" : "<h2>Distillation</h2>\n");
        rep_table_render(&t, style, b);
        rep_table_free(&t);
        rep_bprintf(b, style == REP_TABLE_MD ? "\n%s\n\n" : "<p class=\"note\">%s</p>\n<ul>\n",
                    section_note);
        for (int k = 0; k < nl; k++) {
            if (!l[k].scratch)
                continue;
            int m = 1;
            while (k + m < nl && !l[k + m].scratch)
                m++;
            char v[512];
            verdict(l + k, m, v, sizeof v);
            rep_bprintf(b, style == REP_TABLE_MD ? "- " : "<li>");
            if (style == REP_TABLE_MD)
                rep_md_esc(b, v);
            else
                rep_html_esc(b, v);
            rep_bprintf(b, style == REP_TABLE_MD ? "\n" : "</li>\n");
        }
        if (style != REP_TABLE_MD)
            rep_bprintf(b, "</ul>\n");
    }
    kd_free(l);
    return rc == KD_OK && b->failed ? kd_err_set(e, KD_ENOMEM, "out of memory") : rc;
}
