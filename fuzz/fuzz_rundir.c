/* Run directories, as `kdbench report` and `kdbench compare` read them.
 * Input: the files of a run directory separated by FUZZ_SEP bytes, in the
 * order of FILES below (a missing part: the file is absent).  The readers
 * run on their own, then the whole report (markdown and HTML, plots off:
 * the .dat and .gp files are still written) and the comparison. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../reports/reports.h"
#include "fuzz.h"

static const char *const FILES[] = {"results.json",  "metrics.jsonl",   "env.json",
                                    "sparsity.csv",  "sensitivity.csv", "weights_hist.csv",
                                    "results.csv"};
#define NFILES ((int)(sizeof FILES / sizeof *FILES))

static void compare(const char *dir, const rep_row *rows, int n, const rep_ladder *lad, int nl)
{
    kd_buf b = {0};
    int base = rep_compare_baseline(rows, n, NULL);
    if (base < 0 || base >= n)
        return;
    for (int style = REP_TABLE_TEXT; style <= REP_TABLE_CSV; style++)
        rep_compare_table(rows, n, base, style, &b);
    kd_buf_free(&b);
    rep_compare_baseline(rows, n, "teacher");
    char out[600];
    snprintf(out, sizeof out, "%s/compare", dir);
    rep_report_opts o = {.format = REP_FMT_BOTH, .plots = 0};
    kd_err e = {0};
    rep_compare_write(out, rows, n, base, 1, lad, nl, &o, NULL, &e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char dir[512];
    if (!dir[0])
        fuzz_path(dir, sizeof dir, "run");
    (void)mkdir(dir, 0755);
    const uint8_t *part[NFILES];
    size_t len[NFILES];
    int n = fuzz_split(data, size, part, len, NFILES);
    char path[600];
    for (int i = 0; i < NFILES; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, FILES[i]);
        if (i < n)
            fuzz_write(path, part[i], len[i]);
        else
            unlink(path);
    }
    kd_err e = {0};
    char exp[128];
    rep_row *rows = NULL;
    int nrows = 0;
    snprintf(path, sizeof path, "%s/results.json", dir);
    rep_ladder lad[REP_MAX_LADDERS];
    int nl = 0;
    if (rep_read_ladders(path, lad, &nl, &e) != KD_OK)
        nl = 0;
    if (rep_read_results(path, exp, sizeof exp, &rows, &nrows, &e) == KD_OK) {
        compare(dir, rows, nrows, lad, nl);
        kd_free(rows);
    }
    rep_metric *mt = NULL;
    int nm = 0;
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    if (rep_read_metrics(path, &mt, &nm, &e) == KD_OK)
        kd_free(mt);
    rep_env env;
    snprintf(path, sizeof path, "%s/env.json", dir);
    rep_read_env(path, &env, &e);
    rep_report_opts o = {.format = REP_FMT_BOTH, .plots = 0};
    rep_warnings w = {0};
    rep_report_write(dir, &o, &w, &e);
    return 0;
}
