/* reports' private shared header: gnuplot runner, plot drawing, CSV inputs.
 * Never included from outside reports/. */
#ifndef KD_REPORTS_INTERNAL_H
#define KD_REPORTS_INTERNAL_H

#include "reports.h"

/* ---- gnuplot.c ---- */
enum { REP_GP_OK, REP_GP_FAILED, REP_GP_MISSING, REP_GP_STOPPED };
typedef struct {
    const char *prog, *dir, *script;
    const char *suffix;  /* passed as gnuplot -e "suffix='...'" (ours: ".tmp.PID") */
    double timeout_s;
    const volatile sig_atomic_t *stop; /* may be NULL; non-zero: kill gnuplot, return */
} rep_gp_job;
/* Runs `prog -e "suffix='...'" script` in dir.  gnuplot never outlives the
 * call: it is killed at the timeout, when *stop becomes non-zero, and (Linux)
 * when this process dies.  REP_GP_OK, or why filled and REP_GP_FAILED (it ran
 * and failed, or timed out) / REP_GP_MISSING (not runnable) / REP_GP_STOPPED. */
int rep_gnuplot_run(const rep_gp_job *job, char *why, size_t n);

/* ---- text.c: the only ways text from a file leaves reports ---- */
/* 1 for a code point no output may carry as is: C0 and C1 controls (NEL
 * among them), DEL, U+2028/U+2029, bidi overrides and isolates, U+FEFF, and
 * REP_TEXT_BAD (a byte that is not valid UTF-8).  Each escaper writes '?'. */
#define REP_TEXT_BAD 0xFFFFFFFFu
int rep_text_unsafe(unsigned cp);
/* src cleaned as above, appended to b (text for a terminal or a log). */
void rep_text_put(kd_buf *b, const char *s);
/* A single-quoted gnuplot string literal (a quote inside becomes ’): the
 * only way a name reaches a gnuplot script. */
void rep_gp_str(kd_buf *b, const char *s);
/* A label for a gnuplot data file: "..." with a quote as ' (no escape
 * exists there), on one line. */
void rep_dat_str(kd_buf *b, const char *s);
/* Markdown text (a line or a table cell): syntax characters backslashed. */
void rep_md_esc(kd_buf *b, const char *s);

/* ---- plot.c ---- */
#define REP_MAX_PLOTS 24
typedef struct {
    char name[64];     /* file stem in plots/ */
    char title[160];
    char caption[400];
} rep_plot_made;

/* Draws plots into one folder and remembers which were drawn. */
typedef struct {
    char dir[4096];
    const char *gnuplot;
    double timeout_s;
    int enabled;       /* 0: only .dat and .gp are written */
    rep_warnings *w;
    const volatile sig_atomic_t *stop; /* from rep_report_opts */
    int missing;       /* gnuplot could not be run once: not tried again */
    char missing_why[400];
    rep_plot_made made[REP_MAX_PLOTS];
    int nmade;
} rep_plotter;

typedef struct {
    const char *name, *title, *caption;
    int width, height; /* pixels */
} rep_plot_spec;

void rep_plotter_init(rep_plotter *p, const char *dir, const rep_report_opts *o,
                      rep_warnings *w);
/* Adds the one summary line when gnuplot could not be run at all. */
void rep_plotter_finish(rep_plotter *p);
/* Writes s->name.dat (data) and s->name.gp (body wrapped so it renders both
 * PNG and SVG), runs gnuplot, records the plot when both files were made.
 * File-write errors and a stop request are returned; gnuplot failures are
 * warnings.  s->title may hold file-derived text (it is never written into
 * the script). */
int rep_plot_draw(rep_plotter *p, const rep_plot_spec *s, const kd_buf *data, const char *body,
                  kd_err *e);

/* ---- plot_scatter.c, labels.c ---- */
/* Accuracy vs size with the Pareto front, points grouped by role, or by source
 * (the name before '/') when comparing, and each ladder as a line through its
 * rows in order (steps with no measured row are skipped); accuracy vs
 * batch-1 latency. */
int rep_plot_acc_size(rep_plotter *p, const rep_row *rows, int n, int by_source,
                      const rep_ladder *ladders, int nladders, kd_err *e);
int rep_plot_acc_latency(rep_plotter *p, const rep_row *rows, int n, kd_err *e);
/* Something a label should not cover, in [0,1] plot coordinates. */
typedef struct {
    double x0, y0, x1, y1;
} rep_box;
/* Places the labels of n points (px, py in [0,1] plot coordinates; len
 * characters of cw x ch each) where they overlap least with each other, the
 * nobst obstacles (points, bars, lines) and the border; returns each label's
 * anchor (lx, ly) and alignment (1 left-aligned at the anchor, -1 right, 0 centred). */
void rep_place_labels(const double *px, const double *py, const int *len, int n, double cw,
                      double ch, const rep_box *obst, int nobst, double *lx, double *ly,
                      int *align);

/* ---- plot_curves.c ---- */
/* One training-curves plot per model group (teacher; each student's scratch
 * vs distilled): loss and validation accuracy per epoch. */
int rep_plot_curves(rep_plotter *p, const rep_metric *m, int n, kd_err *e);

/* ---- plot_csv.c ---- */
/* Sparsity bars (of the variants rows show were pruned), sensitivity curves,
 * weight histograms from the optional CSV files in run_dir (a malformed file
 * is a warning, not an error). */
int rep_plot_csvs(rep_plotter *p, const char *run_dir, const rep_row *rows, int nrows,
                  kd_err *e);

/* ---- distill_section.c: the distillation section ---- */
#define REP_DISTILL_SEEDS 32
#define REP_DISTILL_LINES 64
/* One student row of a distillation comparison: <student>/scratch, or one
 * of its modes <student>/<mode>.  Accuracies in points; NAN: not known. */
typedef struct {
    char student[96], mode[64];
    int row, scratch;             /* index in rows; 1 for the scratch line */
    int nseeds;                   /* per-seed figures read (0: only the row's mean) */
    double seed[REP_DISTILL_SEEDS], acc[REP_DISTILL_SEEDS];
    double mean, sd;
    int npaired;                  /* seeds shared with scratch */
    double gain, gain_sd;         /* mean, sd of the per-seed (mode - scratch) */
    int kd_ref;                   /* this line is the student's plain KD */
    double vs_kd, pooled_sd;      /* mean - plain KD's mean; pooled sd of the two */
    int beats_kd;                 /* vs_kd > pooled_sd (both over 2 seeds or more) */
    double epoch_ratio;           /* epoch_seconds / scratch's */
} rep_distill_line;
/* Every student that has a scratch row and at least one other mode: its
 * scratch line then its modes, in row order; plain KD is the first mode with
 * method kd (or none, as rows before methods), no standardize, no hint.
 * Returns the number of lines written (at most max). */
int rep_distill_lines(const rep_row *rows, int n, rep_distill_line *out, int max);
/* One dot plot per such student: distill_<student>. */
int rep_plot_distill(rep_plotter *p, const rep_row *rows, int n, kd_err *e);

/* ---- table.c: one table model rendered as text, markdown, HTML or CSV ---- */
#define REP_TCOLS 16
#define REP_TCELL 96
typedef struct {
    int ncols, nrows;
    const char *head[REP_TCOLS];
    int right[REP_TCOLS];               /* right-aligned (numbers) */
    char (*cell)[REP_TCOLS][REP_TCELL]; /* nrows rows */
} rep_table;

/* Allocates nrows empty rows; 0 or KD_ENOMEM. */
int rep_table_init(rep_table *t, int nrows, kd_err *e);
void rep_table_free(rep_table *t);
void rep_table_render(const rep_table *t, int style, kd_buf *out); /* REP_TABLE_* or HTML */
#define REP_TABLE_HTML 3
/* The results table: accuracy (± sd over several seeds), delta vs rows[base]
 * (points), params, non-zeros, bytes, compression vs base (REP_RT_ACCURACY);
 * batch-1 latency p50/p99, speed-up vs base, throughput (REP_RT_SPEED); or
 * every column in one table (REP_RT_ALL, for a terminal).  base < 0: no deltas. */
enum { REP_RT_ALL, REP_RT_ACCURACY, REP_RT_SPEED };
int rep_results_table(const rep_row *rows, int n, int base, const char *base_label, int part,
                      rep_table *t, kd_err *e);
/* ---- details.c: the extras of every row, as tables a page wide ---- */
#define REP_DETAIL_COLS 6 /* keys per table, besides the variant's name */
#define REP_DETAIL_MAX 8
typedef struct {
    char title[48];
    int nkeys;
    char keys[REP_DETAIL_COLS][32];
} rep_detail_group;
/* Sorts every extra key of rows (accuracy_std aside: it is in the results
 * table) into groups of at most REP_DETAIL_COLS: known keys by theme
 * (training, seeds, compression, measurement), the others in order of first
 * appearance.  Returns the number of groups (at most REP_DETAIL_MAX; keys
 * beyond are left out). */
int rep_detail_groups(const rep_row *rows, int n, rep_detail_group *g);
/* The table of group g: the rows that hold any of its keys; fractions
 * (sparsity, latency spread, accuracies) as percentages. */
int rep_detail_table(const rep_row *rows, int n, const rep_detail_group *g, rep_table *t,
                     kd_err *e);
/* Number formatting shared by the tables and the summary. */
void rep_fmt_count(char *buf, size_t n, double v); /* 1,234,567 or "–" */
void rep_fmt_pct(char *buf, size_t n, double acc);  /* 0.8912 -> "89.12%" or "–" */
/* Escapes text for HTML into b (text.c). */
void rep_html_esc(kd_buf *b, const char *s);

/* ---- report.c / doc.c: one run's report ---- */
#define REP_DOC_LINES 24
#define REP_DOC_MAXPTS 256
typedef struct {
    char dir[4096];
    char experiment[128];
    rep_row *rows;
    int nrows, teacher; /* teacher: index of the first teacher row, or -1 */
    rep_metric *m;
    int nm;
    rep_env env;
    int has_env;
    rep_plotter plots;
    rep_serving_row *serving; /* serving.json's rows (owned), or NULL */
    int nserving;
    rep_ladder ladders[REP_MAX_LADDERS]; /* results.json's ladders */
    int nladders;
    char sum[REP_DOC_LINES][512]; /* summary lines, plain text */
    int nsum;
    const rep_warnings *w;
} rep_doc;
/* Renders d as markdown / as a self-contained HTML page (SVG plots inlined)
 * into b. */
int rep_doc_md(const rep_doc *d, kd_buf *b, kd_err *e);
int rep_doc_html(const rep_doc *d, kd_buf *b, kd_err *e);
/* The "Distillation" section (distill_section.c): the gain table and one
 * verdict per student, in REP_TABLE_MD or REP_TABLE_HTML; nothing when no
 * student has a scratch row beside a distilled one. */
int rep_distill_section(const rep_doc *d, int style, kd_buf *b, kd_err *e);

/* ---- ladder.c: the Ladders section ---- */
/* Reads results.json's ladders into d (a malformed member is a warning);
 * warns once per step that names no row. */
void rep_ladder_load(rep_doc *d, rep_warnings *w);
/* One summary line per ladder: first to last measured step, size ratio and
 * accuracy change, into line (empty when fewer than two steps were measured). */
void rep_ladder_summary(const rep_doc *d, int i, char *line, size_t n);
/* "## Ladders": per ladder its name and a table of its steps (markdown or
 * HTML); nothing without ladders. */
int rep_ladder_section(const rep_doc *d, int style, kd_buf *b, kd_err *e);

/* ---- serving.c: the Serving section (from serving.json) ---- */
/* Reads d->dir/serving.json when there is one (a bad one is a warning). */
void rep_serving_load(rep_doc *d, rep_warnings *w);
/* The p99-vs-throughput plot (stem "serving"); nothing without rows. */
int rep_serving_plot(rep_doc *d, rep_plotter *p, kd_err *e);
/* "## Serving" with its table and note (markdown or HTML); nothing without rows. */
int rep_serving_section(const rep_doc *d, int style, kd_buf *b, kd_err *e);

#endif
