/* kdbench run / kdbench check. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../config/config.h"
#include "../pipeline/pipeline.h"
#include "cli.h"

#define MAX_SETS 64

const char cli_run_usage[] =
    "usage: kdbench run CONFIG [--out DIR] [--threads N] [--set KEY=VALUE ...] [--resume] "
    "[--quiet]\n\n"
    "Validates CONFIG, loads the data, trains the teacher (progress on stderr), evaluates it\n"
    "and writes the run directory: config.yaml, run.log, teacher.kdm, teacher.ckpt,\n"
    "metrics.jsonl, results.json, results.csv.\n\n"
    "  --out DIR        run directory (default: runs/<name>)\n"
    "  --threads N      OpenBLAS threads, overrides the config's `threads` (0 = all cores)\n"
    "  --set KEY=VALUE  override any config key by its dotted path, e.g.\n"
    "                   --set teacher.train.epochs=1 --set teacher.layers.0.units=256\n"
    "                   (validated like the file; repeatable)\n"
    "  --resume         continue from the last completed epoch in the run directory;\n"
    "                   ends with the same numbers as an uninterrupted run\n"
    "  --quiet          no progress bar or log echo on stderr\n"
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
    printf("%s: valid (experiment \"%s\", teacher of %d layers)\n", a.config, s->name,
           s->teacher.nlayers);
    free(s);
    return KD_EXIT_OK;
}

int cli_cmd_run(int argc, char **argv)
{
    run_args a;
    int rc = parse_args("run", argc, argv, &a);
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
    if (a.threads >= 0)
        s->threads = a.threads;
    pipeline_opts po = {.out_dir = a.out, .resume = a.resume, .quiet = a.quiet,
                        .progress = stderr};
    rc = pipeline_run(s, &po, &e) == KD_OK ? KD_EXIT_OK : cli_fail(&e);
    free(s);
    return rc;
}
