/* cli's compare helpers (compare_data.c): the test set behind each source and
 * the candidates of an ambiguous --baseline.  Only cli/ includes this. */
#ifndef KD_CLI_COMPARE_H
#define KD_CLI_COMPARE_H

#include "../data/data.h"
#include "../reports/reports.h"
#include "cli.h"

/* The test set a source was measured on: known only when recorded. */
typedef struct {
    char name[2100]; /* where it came from, e.g. "fashion-mnist t10k in DIR", a CSV path */
    int n;           /* samples */
    uint32_t crc;    /* pipeline_data_crc of the set */
    int known;
} cli_testset;

/* A run directory's test set, from its run.key (data.* and data_loaded.test);
 * t->known = 0 when the file or the line is missing. */
void cli_testset_of_run(const char *dir, cli_testset *t);
/* The test set d loaded for model files from --data DIR, --images or --csv-data. */
void cli_testset_of_data(const data_set *d, const char *dir, const char *images, const char *csv,
                         cli_testset *t);
/* Sources whose known test sets differ (samples or crc32) are listed on
 * stderr; returns KD_EXIT_USAGE then, unless allow (a warning instead); 0
 * otherwise (a warning names any source whose test set is unknown). */
int cli_testsets_check(const char *const *srcs, const cli_testset *sets, int n, int allow);
/* How many rows --baseline name matches as a "/name" suffix; their names,
 * cleaned for the terminal, comma-separated into list (cut at cap). */
int cli_baseline_candidates(const rep_row *rows, int n, const char *name, char *list, size_t cap);

#endif
