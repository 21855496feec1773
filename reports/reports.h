/* reports — result files (results.json, results.csv) and, later, tables and
 * plots.  Depends on util only: it sees rows, never models or data. */
#ifndef KD_REPORTS_H
#define KD_REPORTS_H

#include <signal.h>
#include <stdio.h>

#include "../util/util.h"

#define REP_MAX_EXTRA 24

/* One model variant.  Numbers < 0 mean "not measured" and are written as null. */
typedef struct {
    char name[96];
    char role[16]; /* teacher | student | compressed */
    long long params, nonzero_params, size_bytes;
    double accuracy, latency_us_b1_p50, latency_us_b1_p99, throughput_b256, train_seconds;
    double macs;
    /* later stages add fields (source, passes, temperature ...) without
     * changing this struct: key/value pairs, numbers or strings */
    int nextra;
    struct {
        char key[32];
        char str[160];
        double num;
        int is_num;
    } extra[REP_MAX_EXTRA];
} rep_row;

void rep_row_init(rep_row *r, const char *name, const char *role);
void rep_row_num(rep_row *r, const char *key, double v);
void rep_row_str(rep_row *r, const char *key, const char *v);
/* The number under key, or -1 when the row has none. */
double rep_row_get_num(const rep_row *r, const char *key);

/* Writes dir/results.json ({"experiment": ..., "rows": [...]}) and
 * dir/results.csv (one header line; the union of every row's extra keys as
 * columns), each atomically. */
int rep_write_results(const char *dir, const char *experiment, const rep_row *rows, int n,
                      kd_err *e);

/* ---- ladders (ladder.c) ------------------------------------------------------
 * A ladder: rows named in order (Deep Compression's pruned, + shared, +
 * coded), kept as results.json's "ladders" member, drawn as one line on the
 * accuracy-vs-size plot and tabled step by step in the report. */
#define REP_MAX_LADDERS 8
#define REP_LADDER_STEPS 16
typedef struct {
    char name[64];
    int nsteps;                      /* 2..REP_LADDER_STEPS */
    char step[REP_LADDER_STEPS][96]; /* row names (rep_row.name), in the ladder's order */
} rep_ladder;

/* rep_write_results with the ladders as results.json's "ladders" member,
 * [{"name": ..., "rows": [...]}, ...] (nladders 0: no member). */
int rep_write_results_ladders(const char *dir, const char *experiment, const rep_row *rows, int n,
                              const rep_ladder *ladders, int nladders, kd_err *e);
/* Reads the "ladders" member of a results.json into out[0..*n) (at most
 * REP_MAX_LADDERS; no member: *n = 0).  Anything but a list of {"name":
 * string, "rows": [2..REP_LADDER_STEPS strings]} is KD_EFORMAT, *n = 0. */
int rep_read_ladders(const char *path, rep_ladder *out, int *n, kd_err *e);

/* JSON string escaping into a kd_buf (shared by every JSON writer). */
void rep_json_str(kd_buf *b, const char *s);
/* A JSON number (%.6g), or null for NaN and inf (which JSON cannot hold). */
void rep_json_num(kd_buf *b, double v);
/* Copies src into dst[n] with what no output may carry as is (control
 * characters, NEL, U+2028/U+2029, bidi controls, invalid UTF-8) as '?', cut
 * only between characters; returns the length written (text.c). */
size_t rep_text_clean(char *dst, size_t n, const char *src);
/* A CSV field, every byte kept: quoted when it holds , " CR or LF, quotes
 * doubled (text.c).  Clean foreign text first (rep_text_clean) when the CSV
 * may be printed. */
void rep_csv_str(kd_buf *b, const char *s);
/* printf into a kd_buf. */
void rep_bprintf(kd_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- JSON reader (json.c) ------------------------------------------------
 * Strict RFC 8259, bounded: at most REP_JSON_MAX_BYTES of text, nesting 64,
 * REP_JSON_MAX_NODES values.  The document is a flat array of nodes; node 0
 * is the root.  Malformed or truncated text is an error with line:column. */
#define REP_JSON_MAX_BYTES (16 << 20)
#define REP_JSON_MAX_NODES (1 << 20)
enum { REP_JNULL, REP_JBOOL, REP_JNUM, REP_JSTR, REP_JARR, REP_JOBJ };
typedef struct {
    int type;
    double num;         /* numbers; booleans as 0/1 */
    const char *str;    /* strings (decoded UTF-8); a view into the document */
    const char *key;    /* member name when the parent is an object, else NULL */
    int parent, first, last, next, count; /* indices, -1 none; count: children */
} rep_jnode;
typedef struct {
    rep_jnode *nodes;
    int n, cap;
    char *arena;
} rep_json;

/* Parses len bytes of text (path only names errors; may be NULL) into out.
 * On failure out is left empty (rep_json_free is still safe). */
int rep_json_parse(const char *text, size_t len, const char *path, rep_json *out, kd_err *e);
/* Frees j's storage; accepts an empty or zeroed j. */
void rep_json_free(rep_json *j);
/* Index of the member key of object obj, or -1 (absent, or obj not an object). */
int rep_json_get(const rep_json *j, int obj, const char *key);

/* ---- reading result files back (read.c) ----------------------------------- */
/* One line of metrics.jsonl: one epoch of one model's training. */
typedef struct {
    char model[96];
    int epoch;
    double loss, train_acc, val_loss, val_acc, lr, seconds, samples_per_s;
} rep_metric;

/* Reads dir-less path results.json: experiment name (may be NULL) and rows
 * (*rows new, kd_free it).  null numbers become -1 (not measured); unknown
 * members become extras (numbers, strings, booleans as "true"/"false"). */
int rep_read_results(const char *path, char *experiment, size_t exp_n, rep_row **rows,
                     int *nrows, kd_err *e);
/* Reads metrics.jsonl (one object per line; blank lines skipped) into *out
 * (new, kd_free it). */
int rep_read_metrics(const char *path, rep_metric **out, int *n, kd_err *e);

/* ---- environment (env.c) ------------------------------------------------- */
typedef struct {
    char cpu[128];       /* model name from /proc/cpuinfo */
    int cores;           /* online processors */
    int threads;         /* BLAS threads used by the run; 0 unknown */
    char blas[128];      /* BLAS library and config (from nn_blas_info) */
    char libs[160];      /* other libraries and versions, e.g. "zlib 1.2.13, libyaml 0.2.5" */
    char version[32];    /* kdbench version */
    char git[48];        /* commit the binary was built from, or "" */
    char compiler[96];
    char os[128];        /* uname: system, release, machine */
    char date[40];       /* ISO 8601 UTC */
} rep_env;

/* Fills what can be found without nn: cpu, cores, compiler, os, date, libs
 * (zlib), git (when built with -DKD_GIT_COMMIT=...).  The caller sets threads,
 * blas and version, and may append to libs. */
void rep_env_detect(rep_env *env);
/* Writes dir/env.json atomically. */
int rep_write_env(const char *dir, const rep_env *env, kd_err *e);
/* Reads an env.json written by rep_write_env; missing members stay empty. */
int rep_read_env(const char *path, rep_env *env, kd_err *e);

/* ---- Pareto front (pareto.c) ------------------------------------------------ */
/* Marks on_front[i] = 1 for every point that no other point dominates, where
 * smaller size and higher accuracy are better (a point dominates another when
 * it is no worse in both and better in one; equal points are all on the front).
 * Points with size <= 0 or accuracy < 0 (not measured) are never on it.
 * Returns the number of points on the front. */
int rep_pareto(const double *size, const double *acc, int n, int *on_front);

/* ---- serving.json / serving.csv (serving.c) ---------------------------------
 * The serving loadtest kdbench run ends with: per variant, concurrency level
 * and batching setting, what batch-1 requests over loopback HTTP measured. */
typedef struct {
    char variant[96];
    int concurrency;
    int batching; /* 1 on (max_batch > 1), 0 off */
    long requests, failures;
    double seconds, rps, p50_ms, p90_ms, p99_ms;
} rep_serving_row;

/* Writes dir/serving.json ({"experiment", "rows": [...]}) and dir/serving.csv,
 * each atomically. */
int rep_write_serving(const char *dir, const char *experiment, const rep_serving_row *rows,
                      int n, kd_err *e);
/* Reads a serving.json back (*rows new, kd_free it). */
int rep_read_serving(const char *path, rep_serving_row **rows, int *n, kd_err *e);

/* ---- report (report.c) and comparison (compare.c) --------------------------- */
enum { REP_FMT_MD = 1, REP_FMT_HTML = 2, REP_FMT_BOTH = 3 };

#define REP_MAX_WARN 16
/* Non-fatal problems (a plot not drawn and why), one line each, for the caller to print. */
typedef struct {
    int n;
    char msg[REP_MAX_WARN][400];
} rep_warnings;

typedef struct {
    int format;            /* REP_FMT_* (0 = both) */
    int plots;             /* draw plots with gnuplot (tables are always written) */
    const char *gnuplot;   /* program name or path; NULL = "gnuplot" from PATH */
    double timeout_s;      /* per plot; <= 0 = 30 s */
    /* may be NULL; set non-zero (from a signal handler) to stop: the running
     * gnuplot is killed and waited for, its temp files removed, and the
     * report returns KD_ERUNTIME "interrupted ..." */
    const volatile sig_atomic_t *stop;
} rep_report_opts;

/* Writes RUN_DIR/report/: report.md and/or report.html, plots/ with each plot's
 * .dat, .gp, .png and .svg.  Reads results.json (required), metrics.jsonl,
 * env.json, sparsity.csv, sensitivity.csv, weights_hist.csv, serving.json
 * (each optional; serving.json adds a Serving section).
 * A plot that cannot be drawn adds a line to w (may be NULL) and is not an
 * error; a missing or malformed results.json is.  o may be NULL (defaults). */
int rep_report_write(const char *run_dir, const rep_report_opts *o, rep_warnings *w, kd_err *e);

/* Appends a line to w (printf-style); drops it when w is full or NULL. */
void rep_warn(rep_warnings *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

enum { REP_TABLE_TEXT, REP_TABLE_MD, REP_TABLE_CSV };
/* The comparison table of n rows with deltas against rows[baseline] (accuracy
 * in points, size and latency as ratios), appended to out as aligned text,
 * markdown or CSV. */
void rep_compare_table(const rep_row *rows, int n, int baseline, int style, kd_buf *out);
/* Index of the baseline: the row named name (exact, or a unique row whose name
 * ends in "/name" or starts with "name/" when it is a teacher), the first teacher
 * when name is NULL, else 0; -1 when name matches nothing. */
int rep_compare_baseline(const rep_row *rows, int n, const char *name);
/* Writes out_dir/compare.md, compare.csv and plots/acc_size.{dat,gp,png,svg}
 * (the combined accuracy-vs-size plot, its points coloured by role, or by
 * source when by_source: names are "SOURCE/VARIANT"; each ladder a line
 * through the rows its steps name; failures go to w). */
int rep_compare_write(const char *out_dir, const rep_row *rows, int n, int baseline,
                      int by_source, const rep_ladder *ladders, int nladders,
                      const rep_report_opts *o, rep_warnings *w, kd_err *e);

#endif
