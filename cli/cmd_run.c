/* kdbench run / kdbench check. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../config/config.h"
#include "../pipeline/pipeline.h"
#include "cli.h"

#define MAX_SETS 64

const char cli_run_usage[] =
    "usage: kdbench run CONFIG [--out DIR] [--threads N] [--set KEY=VALUE ...] [--resume] "
    "[--quiet]\n\n"
    "Runs an experiment end to end (try experiments/quick.yaml first: seconds):\n"
    "  1. validates CONFIG and the data's headers as `kdbench check` does (exit 2 at\n"
    "     FILE:LINE:COLUMN before anything trains);\n"
    "  2. trains the teacher (or loads `teacher.model`, or takes it from the cache);\n"
    "  3. trains each student twice per seed, from scratch and distilled from the\n"
    "     teacher, with the same seed, data order and budget, so the gain is measured;\n"
    "  4. runs each compression pipeline (prune, fine-tune, quantize, QAT ...) into a\n"
    "     variant stored in its real compressed format, and the sensitivity sweep;\n"
    "  5. measures every model the same way: test accuracy, bytes on disk, batch-1\n"
    "     latency p50/p99, batch-256 throughput;\n"
    "  6. writes results.json/.csv and the report (report/report.md, report.html, plots).\n"
    "Each job starts with \"[k/N] what (about MM:SS left)\" on stderr, with a progress bar\n"
    "on a terminal.  The run directory also keeps config.yaml, run.key, run.log, every\n"
    "model (.kdm) and checkpoint (.ckpt), metrics.jsonl.  A folder that already holds a\n"
    "run is moved aside to DIR.1 (DIR.2, ...) first, unless --resume continues it; one run\n"
    "at a time per folder: a second fails at once (exit 1) naming the first's pid.\n\n"
    "  --out DIR        run directory (default: runs/<name>)\n"
    "  --threads N      OpenBLAS threads, overrides the config's `threads` (0 = all cores)\n"
    "  --set KEY=VALUE  override any config key by its dotted path, e.g.\n"
    "                   --set teacher.train.epochs=1 --set teacher.layers.0.units=256\n"
    "                   (validated like the file; repeatable)\n"
    "  --resume         continue from the last completed epoch in the run directory;\n"
    "                   ends with the same numbers as an uninterrupted run; refused (exit 2,\n"
    "                   the keys named) when a setting that decides them changed since\n"
    "                   (anything but name, cache_dir, threads and report; or the thread\n"
    "                   count in use, or the data's content)\n"
    "  --quiet          no progress bar or log echo on stderr\n"
    "\nOn MPI ranks (a build with Open MPI): `mpirun -np N kdbench run CONFIG ...` runs\n"
    "the same experiment with the same flags; rank 0 owns the run directory, trains the\n"
    "teacher (on every rank with teacher.train.parallel: data) and hands each student\n"
    "mode x seed, variant x seed and the sensitivity sweep to whichever rank is free;\n"
    "the files are those one process writes, with the same numbers (timings aside).\n"
    "\nSIGINT, SIGTERM and SIGHUP stop the run at the next batch: \"interrupted; resume\n"
    "with --resume\" on stderr and in run.log, any plotting child stopped, exit status\n"
    "128 + the signal (130, 143, 129); a second signal ends it at once.\n"
    "\nexit status: 0 success, 1 runtime failure, 2 usage or config error\n";

const char cli_check_usage[] =
    "usage: kdbench check CONFIG [--set KEY=VALUE ...]\n\n"
    "Validates CONFIG as run does before it starts: every key, type and range, that the\n"
    "layer shapes chain (no weights are allocated), and the rules that need the data -\n"
    "class count against each model's outputs, sample size against data.shape, training\n"
    "samples against calibration - read from the data's headers and labels (a CSV file is\n"
    "read whole). Writes nothing. Errors are printed as FILE:LINE:COLUMN: message.\n"
    "\nexit status: 0 valid, 1 the data cannot be read, 2 invalid\n";

typedef struct {
    const char *config, *out;
    const char *sets[MAX_SETS];
    int nsets, threads, resume, quiet;
} run_args;

static int parse_args(const char *cmd, int argc, char **argv, run_args *a)
{
    static const struct option opts[] = {
        {"out", required_argument, 0, 'o'},   {"threads", required_argument, 0, 't'},
        {"set", required_argument, 0, 's'},   {"resume", no_argument, 0, 'r'},
        {"quiet", no_argument, 0, 'q'},       {0, 0, 0, 0},
    };
    int is_run = strcmp(cmd, "run") == 0, c;
    memset(a, 0, sizeof *a);
    a->threads = -1;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (c == 's') {
            if (a->nsets == MAX_SETS)
                return cli_usage_error(cmd, "at most %d --set overrides", MAX_SETS);
            a->sets[a->nsets++] = optarg;
        } else if (is_run && c == 'o') {
            a->out = optarg;
        } else if (is_run && c == 't') {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || end == optarg || v < 0 || v > 256)
                return cli_usage_error(cmd, "--threads takes a number from 0 to 256, not \"%s\"",
                                       optarg);
            a->threads = (int)v;
        } else if (is_run && c == 'r') {
            a->resume = 1;
        } else if (is_run && c == 'q') {
            a->quiet = 1;
        } else if (c == ':') {
            return cli_usage_error(cmd, "%s needs a value", argv[optind - 1]);
        } else {
            return cli_usage_error(cmd, "unknown option \"%s\"", argv[optind - 1]);
        }
    }
    if (optind != argc - 1)
        return cli_usage_error(cmd, optind >= argc ? "missing CONFIG" : "one CONFIG expected");
    a->config = argv[optind];
    struct stat st;
    if (stat(a->config, &st) != 0)
        return cli_usage_error(cmd, "CONFIG \"%s\": %s (the experiments are YAML files such as "
                               "experiments/quick.yaml)", a->config, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return cli_usage_error(cmd, "CONFIG \"%s\" is a directory; %s takes an experiment's YAML "
                               "file, e.g. experiments/quick.yaml", a->config, cmd);
    return 0;
}

int cli_cmd_check(int argc, char **argv)
{
    run_args a;
    int rc = parse_args("check", argc, argv, &a);
    if (rc)
        return rc;
    exp_spec *s = calloc(1, sizeof *s);
    kd_err e = {0};
    if (!s)
        return KD_EXIT_FAIL;
    if (pipeline_config_load(a.config, a.sets, a.nsets, s, &e) != KD_OK) {
        free(s);
        return cli_fail(&e);
    }
    if (s->teacher.model_path[0])
        printf("%s: valid (experiment \"%s\", teacher from %s", a.config, s->name,
               s->teacher.model_path);
    else
        printf("%s: valid (experiment \"%s\", teacher of %d layers", a.config, s->name,
               s->teacher.nlayers);
    printf(", %d student%s, %d compressed variant%s)\n", s->nstudents,
           s->nstudents == 1 ? "" : "s", s->nvariants, s->nvariants == 1 ? "" : "s");
    free(s);
    return KD_EXIT_OK;
}

/* The one piece of mutable global state: what a signal handler may touch.
 * The number of the signal that asked the run to stop, 0 until then. */
static volatile sig_atomic_t stop_signal;

/* Async-signal-safe: only records the signal.  SA_RESETHAND restores the
 * default action, so a second signal ends the process at once. */
static void on_stop_signal(int sig)
{
    stop_signal = sig;
}

static void catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESETHAND | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

/* Under mpirun every rank runs this; only rank 0 prints an error (the other
 * ranks get rank 0's status with no message, or failed identically on the
 * same config), and every rank exits with the same status. */
static int run_fail(const dist_comm *d, const kd_err *e)
{
    if (dist_rank(d) == 0 || e->msg[0] == 0)
        return dist_rank(d) == 0 ? cli_fail(e) : e->code == KD_ECONFIG ? KD_EXIT_USAGE
                                                                       : KD_EXIT_FAIL;
    /* this rank's own failure (its data, MPI): said once, with the rank */
    char buf[2048];
    fprintf(stderr, "kdbench (rank %d): %s\n", dist_rank(d), kd_err_str(e, buf, sizeof buf));
    return e->code == KD_ECONFIG ? KD_EXIT_USAGE : KD_EXIT_FAIL;
}

static int run_spec(run_args *a, dist_comm *d)
{
    exp_spec *s = calloc(1, sizeof *s);
    kd_err e = {0};
    if (!s)
        return KD_EXIT_FAIL;
    int rc;
    if (pipeline_config_load(a->config, a->sets, a->nsets, s, &e) != KD_OK) {
        /* every rank reads the same file: rank 0 says it, all exit 2 */
        free(s);
        return dist_rank(d) == 0 ? cli_fail(&e) : e.code == KD_ECONFIG ? KD_EXIT_USAGE
                                                                         : KD_EXIT_FAIL;
    }
    if (a->threads >= 0)
        s->threads = a->threads;
    pipeline_opts po = {.out_dir = a->out, .resume = a->resume,
                        .quiet = a->quiet || dist_rank(d) != 0, /* progress on rank 0 only */
                        .progress = stderr, .cancel = &stop_signal, .dist = d};
    catch_stop_signals();
    rc = pipeline_run(s, &po, &e) == KD_OK ? KD_EXIT_OK : run_fail(d, &e);
    if (rc != KD_EXIT_OK && e.code == KD_ECANCELED && stop_signal)
        rc = 128 + stop_signal;
    free(s);
    return rc;
}

int cli_cmd_run(int argc, char **argv)
{
    run_args a;
    kd_err e = {0};
    /* one process, or a rank of `mpirun -np N kdbench run ...` */
    dist_comm *d = dist_open(&argc, &argv, &e);
    if (e.code != KD_OK)
        return cli_fail(&e);
    int rc = parse_args("run", argc, argv, &a);
    if (rc == 0)
        rc = run_spec(&a, d);
    dist_close(d);
    return rc;
}
