/* reports — result files (results.json, results.csv) and, later, tables and
 * plots.  Depends on util only: it sees rows, never models or data. */
#ifndef KD_REPORTS_H
#define KD_REPORTS_H

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

/* Writes dir/results.json ({"experiment": ..., "rows": [...]}) and
 * dir/results.csv (one header line; the union of every row's extra keys as
 * columns), each atomically. */
int rep_write_results(const char *dir, const char *experiment, const rep_row *rows, int n,
                      kd_err *e);

/* JSON string escaping into a kd_buf (shared by every JSON writer). */
void rep_json_str(kd_buf *b, const char *s);
/* printf into a kd_buf. */
void rep_bprintf(kd_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
