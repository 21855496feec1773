/* kdbench report / kdbench compare: reports from result files, and variants
 * from several runs or model files side by side. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../compress/compress.h"
#include "../measure/measure.h"
#include "../pipeline/pipeline.h"
#include "../reports/reports.h"
#include "cli.h"
#include "compare.h"

#define MAX_SOURCES 64
#define MAX_ROWS 1024

const char cli_report_usage[] =
    "usage: kdbench report RUN_DIR [--format md|html|both] [--no-plots] [--gnuplot PROG]\n"
    "                      [--timeout S]\n\n"
    "Regenerates RUN_DIR/report/ from the result files alone (results.json, and when present\n"
    "metrics.jsonl, env.json, sparsity.csv, sensitivity.csv, weights_hist.csv): report.md, a\n"
    "self-contained report.html, and plots/ with each plot's .png, .svg, .dat and .gp.\n\n"
    "  --format F     md, html or both (default: both)\n"
    "  --no-plots     tables only; the .dat and .gp files are still written\n"
    "  --gnuplot PROG the gnuplot program (default: gnuplot from PATH)\n"
    "  --timeout S    seconds allowed per plot (default: 30)\n\n"
    "A plot that cannot be drawn is reported on one line and the tables are still written.\n"
    "\nexit status: 0 success, 1 runtime failure, 2 usage error\n";

const char cli_compare_usage[] =
    "usage: kdbench compare RUN_DIR|MODEL ... [--baseline NAME] [--csv] [--out DIR]\n"
    "                       [--data DIR | --images F --labels F | --csv-data F]\n"
    "                       [--allow-different-data] [--threads N] [--no-plots]\n"
    "                       [--gnuplot PROG]\n\n"
    "Puts the variants of several runs (their results.json) and model files (.kdm, evaluated\n"
    "on the spot) side by side, with accuracy, size and latency deltas against a baseline.\n"
    "Prints the table and writes DIR/compare.md, DIR/compare.csv and the combined plot\n"
    "DIR/plots/acc_size.{png,svg,dat,gp}.  With several sources, variants are named\n"
    "SOURCE/VARIANT (SOURCE: the run folder's or model file's name).  Sources measured on\n"
    "different test sets (samples or crc32 of run.key's data_loaded.test, or of the set\n"
    "the model files were evaluated on) are listed and refused (exit 2).\n\n"
    "  --baseline NAME  a variant name, a unique VARIANT suffix, or a SOURCE (its teacher)\n"
    "                   (default: the first teacher, else the first variant); a suffix\n"
    "                   several variants share is refused with their names\n"
    "  --csv            print CSV instead of the aligned table\n"
    "  --out DIR        where compare.md, compare.csv and plots/ go (default: compare)\n"
    "  --data DIR       test set for MODEL files (default: " DATA_FASHION_DIR ")\n"
    "  --images F --labels F  test set for MODEL files as an IDX pair (raw or .gz)\n"
    "  --csv-data F     test set for MODEL files as CSV (label, then features)\n"
    "  --allow-different-data  compare sources measured on different test sets\n"
    "                   (a warning instead of a refusal)\n"
    "  --threads N      OpenBLAS threads for MODEL files (default 0 = all cores)\n"
    "  --no-plots       no gnuplot; --gnuplot PROG: the program (default: gnuplot)\n"
    "\nexit status: 0 success, 1 runtime failure, 2 usage error\n";

/* ---- signals: SIGINT/SIGTERM/SIGHUP stop the plotting, whose gnuplot is killed
 * and waited for; the command then exits 128 + the signal. ---- */

/* the signal caught, 0 none: a handler can reach nothing but a static */
static volatile sig_atomic_t caught;

static void on_signal(int sig)
{
    caught = sig;
}

static const int stop_sigs[3] = {SIGINT, SIGTERM, SIGHUP};

static void catch_signals(struct sigaction old[3])
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: a blocked poll returns at once */
    sigemptyset(&sa.sa_mask);
    caught = 0;
    for (int i = 0; i < 3; i++)
        sigaction(stop_sigs[i], &sa, &old[i]);
}

static void restore_signals(const struct sigaction old[3])
{
    for (int i = 0; i < 3; i++)
        sigaction(stop_sigs[i], &old[i], NULL);
}

/* the exit status after an interruption, with one line on stderr */
static int interrupted(const char *cmd, const char *what)
{
    fprintf(stderr, "kdbench %s: interrupted by signal %d; %s\n", cmd, (int)caught, what);
    return 128 + (int)caught;
}

static void print_warnings(const char *cmd, const rep_warnings *w)
{
    for (int i = 0; i < w->n; i++)
        fprintf(stderr, "kdbench %s: warning: %s\n", cmd, w->msg[i]);
}

static int parse_format(const char *s)
{
    return !strcmp(s, "md") ? REP_FMT_MD : !strcmp(s, "html") ? REP_FMT_HTML
           : !strcmp(s, "both") ? REP_FMT_BOTH : 0;
}

static int parse_timeout(const char *cmd, const char *s, double *out)
{
    char *end;
    *out = strtod(s, &end);
    if (*end || end == s || !(*out > 0 && *out <= 3600))
        return cli_usage_error(cmd, "--timeout takes seconds from 0 to 3600, not \"%s\"", s);
    return 0;
}

int cli_cmd_report(int argc, char **argv)
{
    static const struct option opts[] = {
        {"format", required_argument, 0, 'f'}, {"no-plots", no_argument, 0, 'n'},
        {"gnuplot", required_argument, 0, 'g'}, {"timeout", required_argument, 0, 't'},
        {0, 0, 0, 0},
    };
    rep_report_opts o = {.format = REP_FMT_BOTH, .plots = 1, .timeout_s = 30};
    int c, rc;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (c == 'f' && !(o.format = parse_format(optarg)))
            return cli_usage_error("report", "--format is md, html or both, not \"%s\"", optarg);
        else if (c == 'n')
            o.plots = 0;
        else if (c == 'g')
            o.gnuplot = optarg;
        else if (c == 't' && (rc = parse_timeout("report", optarg, &o.timeout_s)))
            return rc;
        else if (c == ':')
            return cli_usage_error("report", "%s needs a value", argv[optind - 1]);
        else if (c == '?')
            return cli_usage_error("report", "unknown option \"%s\"", argv[optind - 1]);
    }
    if (optind != argc - 1)
        return cli_usage_error("report", optind >= argc ? "missing RUN_DIR"
                                                        : "one RUN_DIR expected");
    kd_err e = {0};
    rep_warnings w = {0};
    const char *dir = argv[optind];
    struct sigaction old[3];
    catch_signals(old);
    o.stop = &caught;
    rc = rep_report_write(dir, &o, &w, &e);
    restore_signals(old);
    print_warnings("report", &w);
    if (caught)
        return interrupted("report", "the report is incomplete; run kdbench report again");
    if (rc != KD_OK)
        return cli_fail(&e);
    printf("report: %s/report/%s%s%s\n", dir, o.format & REP_FMT_MD ? "report.md" : "",
           o.format == REP_FMT_BOTH ? ", report.html" : "",
           o.format == REP_FMT_HTML ? "report.html" : "");
    return KD_EXIT_OK;
}

/* ---- compare ------------------------------------------------------------------- */

typedef struct {
    const char *srcs[MAX_SOURCES];
    int nsrc, csv, threads, allow_diff;
    const char *baseline, *out, *data, *images, *labels, *csv_data;
    rep_report_opts ro;
    cli_testset sets[MAX_SOURCES]; /* the test set behind each source */
    rep_ladder ladders[REP_MAX_LADDERS]; /* the runs' ladders, named like their rows */
    int nladders, ladders_left;
} compare_args;

static int compare_parse(int argc, char **argv, compare_args *a)
{
    static const struct option opts[] = {
        {"baseline", required_argument, 0, 'b'}, {"csv", no_argument, 0, 'c'},
        {"out", required_argument, 0, 'o'},      {"data", required_argument, 0, 'd'},
        {"threads", required_argument, 0, 't'},  {"no-plots", no_argument, 0, 'n'},
        {"gnuplot", required_argument, 0, 'g'},  {"csv-data", required_argument, 0, 'v'},
        {"images", required_argument, 0, 'i'},   {"labels", required_argument, 0, 'l'},
        {"allow-different-data", no_argument, 0, 'A'}, {0, 0, 0, 0},
    };
    int c;
    memset(a, 0, sizeof *a);
    a->out = "compare";
    a->data = DATA_FASHION_DIR;
    a->ro = (rep_report_opts){.format = REP_FMT_MD, .plots = 1, .timeout_s = 30};
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'b': a->baseline = optarg; break;
        case 'c': a->csv = 1; break;
        case 'o': a->out = optarg; break;
        case 'd': a->data = optarg; break;
        case 'v': a->csv_data = optarg; break;
        case 'i': a->images = optarg; break;
        case 'l': a->labels = optarg; break;
        case 'A': a->allow_diff = 1; break;
        case 'n': a->ro.plots = 0; break;
        case 'g': a->ro.gnuplot = optarg; break;
        case 't':
            a->threads = (int)strtol(optarg, &end, 10);
            if (*end || end == optarg || a->threads < 0 || a->threads > 256)
                return cli_usage_error("compare", "--threads takes 0 to 256, not \"%s\"", optarg);
            break;
        case ':': return cli_usage_error("compare", "%s needs a value", argv[optind - 1]);
        default: return cli_usage_error("compare", "unknown option \"%s\"", argv[optind - 1]);
        }
    }
    if (!a->images != !a->labels)
        return cli_usage_error("compare", "--images and --labels go together");
    for (; optind < argc; optind++) {
        if (a->nsrc == MAX_SOURCES)
            return cli_usage_error("compare", "at most %d sources", MAX_SOURCES);
        a->srcs[a->nsrc++] = argv[optind];
    }
    return a->nsrc ? 0 : cli_usage_error("compare", "at least one RUN_DIR or MODEL expected");
}

/* the source's label: its last path component, without a .kdm extension */
static void label_of(const char *src, char *out, size_t n)
{
    size_t len = strlen(src);
    while (len > 1 && src[len - 1] == '/')
        len--;
    size_t start = len;
    while (start > 0 && src[start - 1] != '/')
        start--;
    size_t k = len - start;
    if (k > 4 && !strncmp(src + len - 4, ".kdm", 4))
        k -= 4;
    snprintf(out, n, "%.*s", (int)k, src + start);
}

static int eval_model(const char *path, const compare_args *a, rep_row *row, cli_testset *set,
                      kd_err *e)
{
    nn_model *m = compress_model_load(path, e); /* compressed variants too */
    if (!m)
        return e->code;
    data_set d = {0};
    measure_result r;
    int rc = pipeline_load_eval_data(a->data, a->images, a->labels, a->csv_data, m->in, &d, e);
    if (rc == KD_OK) {
        cli_testset_of_data(&d, a->data, a->images, a->csv_data, set);
        rc = measure_model(m, &d, path, NULL, &r, e);
    }
    if (rc == KD_OK) {
        row->params = (long long)r.params;
        row->nonzero_params = (long long)r.nonzero_params;
        row->size_bytes = r.size_bytes;
        row->accuracy = r.accuracy;
        row->latency_us_b1_p50 = r.latency_us_b1_p50;
        row->latency_us_b1_p99 = r.latency_us_b1_p99;
        row->throughput_b256 = r.throughput_b256;
        row->macs = r.macs;
    }
    data_set_free(&d);
    nn_model_free(m);
    return rc;
}

/* The run's ladders (results.json), their names and steps prefixed like its
 * rows; a malformed member or one past REP_MAX_LADDERS is a warning. */
static void add_ladders(compare_args *a, const char *path, const char *label)
{
    rep_ladder got[REP_MAX_LADDERS];
    int ng = 0;
    kd_err e = {0};
    char buf[1200], clean[1200];
    if (rep_read_ladders(path, got, &ng, &e) != KD_OK) {
        rep_text_clean(clean, sizeof clean, kd_err_str(&e, buf, sizeof buf));
        fprintf(stderr, "kdbench compare: warning: ladders skipped: %s\n", clean);
        return;
    }
    for (int i = 0; i < ng; i++) {
        if (a->nladders == REP_MAX_LADDERS) {
            a->ladders_left++;
            continue;
        }
        rep_ladder *l = &a->ladders[a->nladders++];
        *l = got[i];
        if (a->nsrc < 2)
            continue;
        snprintf(l->name, sizeof l->name, "%.20s: %.40s", label, got[i].name);
        for (int k = 0; k < l->nsteps; k++) /* as add_source names the rows */
            snprintf(l->step[k], sizeof l->step[k], "%.40s/%.50s", label, got[i].step[k]);
    }
}

/* Appends the source's rows to rows[*n]; names prefixed with its label when asked. */
static int add_source(compare_args *a, int k, rep_row *rows, int *n, kd_err *e)
{
    char label[128], path[4200];
    const char *src = a->srcs[k];
    struct stat st;
    label_of(src, label, sizeof label);
    if (stat(src, &st) != 0)
        return kd_err_at(e, KD_EIO, src, 0, 0, "no such run directory or model file");
    if (!S_ISDIR(st.st_mode)) {
        if (*n == MAX_ROWS)
            return kd_err_set(e, KD_ECONFIG, "more than %d variants", MAX_ROWS);
        rep_row_init(&rows[*n], label, "model");
        rep_row_str(&rows[*n], "source", src);
        int rc = eval_model(src, a, &rows[*n], &a->sets[k], e);
        *n += rc == KD_OK;
        return rc;
    }
    rep_row *got;
    int ng;
    cli_testset_of_run(src, &a->sets[k]);
    snprintf(path, sizeof path, "%s/results.json", src);
    int rc = rep_read_results(path, NULL, 0, &got, &ng, e);
    if (rc == KD_OK)
        add_ladders(a, path, label);
    for (int i = 0; rc == KD_OK && i < ng; i++) {
        if (*n == MAX_ROWS) {
            rc = kd_err_set(e, KD_ECONFIG, "more than %d variants", MAX_ROWS);
            break;
        }
        rows[*n] = got[i];
        if (a->nsrc > 1)
            snprintf(rows[*n].name, sizeof rows[0].name, "%.40s/%.50s", label, got[i].name);
        (*n)++;
    }
    kd_free(got); /* NULL when the read failed */
    return rc;
}

int cli_cmd_compare(int argc, char **argv)
{
    compare_args a;
    int rc = compare_parse(argc, argv, &a), n = 0;
    if (rc)
        return rc;
    for (int i = 0; i < a.nsrc; i++) { /* a checkpoint is named with its model file */
        struct stat st;
        if (stat(a.srcs[i], &st) == 0 && !S_ISDIR(st.st_mode) &&
            (rc = cli_model_arg("compare", a.srcs[i])))
            return rc;
    }
    nn_set_threads(a.threads);
    rep_row *rows = kd_calloc(MAX_ROWS, sizeof *rows);
    kd_err e = {0};
    if (!rows)
        return KD_EXIT_FAIL;
    for (int i = 0; i < a.nsrc && rc == KD_OK; i++)
        rc = add_source(&a, i, rows, &n, &e);
    if (rc == KD_OK && n == 0) /* nothing to compare, nor a baseline to look for */
        rc = kd_err_set(&e, KD_EFORMAT, "no variants to compare: %s %s no rows",
                        a.nsrc == 1 ? a.srcs[0] : "the sources",
                        a.nsrc == 1 ? "has" : "have");
    if (rc == KD_OK && (rc = cli_testsets_check(a.srcs, a.sets, a.nsrc, a.allow_diff))) {
        kd_free(rows);
        return rc;
    }
    int base = rc == KD_OK ? rep_compare_baseline(rows, n, a.baseline) : 0;
    if (rc == KD_OK && base < 0) {
        char list[1024];
        int k = cli_baseline_candidates(rows, n, a.baseline, list, sizeof list);
        kd_free(rows);
        if (k > 1)
            return cli_usage_error("compare", "--baseline \"%s\" is ambiguous: %d variants end "
                                   "with it (%s); name one as SOURCE/VARIANT", a.baseline, k, list);
        return cli_usage_error("compare", "--baseline \"%s\" matches no variant", a.baseline);
    }
    rep_warnings w = {0};
    struct sigaction old[3];
    catch_signals(old);
    a.ro.stop = &caught;
    if (rc == KD_OK)
        rc = rep_compare_write(a.out, rows, n, base, a.nsrc > 1, a.ladders, a.nladders, &a.ro,
                               &w, &e);
    if (a.ladders_left)
        rep_warn(&w, "%d ladder%s not drawn (at most %d on one plot)", a.ladders_left,
                 a.ladders_left == 1 ? "" : "s", REP_MAX_LADDERS);
    restore_signals(old);
    if (caught) {
        kd_free(rows);
        return interrupted("compare", "the comparison is incomplete");
    }
    if (rc == KD_OK) {
        kd_buf b = {0};
        rep_compare_table(rows, n, base, a.csv ? REP_TABLE_CSV : REP_TABLE_TEXT, &b);
        char shown[sizeof rows[0].name];
        rep_text_clean(shown, sizeof shown, rows[base].name); /* for the terminal */
        if (!a.csv)
            printf("baseline: %s\n\n", shown);
        fwrite(b.p, 1, b.len, stdout);
        if (!a.csv)
            printf("\nwritten: %s/compare.md, %s/compare.csv, %s/plots/\n", a.out, a.out, a.out);
        kd_buf_free(&b);
    }
    print_warnings("compare", &w);
    kd_free(rows);
    return rc == KD_OK ? KD_EXIT_OK : cli_fail(&e);
}
