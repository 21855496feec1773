/* Fixtures shared by the reports suites: a realistic run directory. */
#ifndef KD_REPORTS_FIXTURE_H
#define KD_REPORTS_FIXTURE_H

#include "../../reports/reports.h"

#define RFX_NROWS 6
/* The rows written to results.json (teacher, a student pair, three compressed). */
void rfx_rows(rep_row rows[RFX_NROWS]);
/* Writes dir/results.json and .csv; with optional != 0 also metrics.jsonl,
 * env.json, sparsity.csv, sensitivity.csv and weights_hist.csv. */
void rfx_write_run(const char *dir, int optional);
/* Reads a whole text file (NUL-terminated, kd_free it); fails the test if absent. */
char *rfx_slurp(const char *path);
/* 1 when gnuplot can be run from PATH. */
int rfx_have_gnuplot(void);

#endif
