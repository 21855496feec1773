/* results.json and results.csv: one row per model variant. */
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "reports.h"

void rep_row_init(rep_row *r, const char *name, const char *role)
{
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(r->role, sizeof r->role, "%s", role);
    r->params = r->nonzero_params = r->size_bytes = -1;
    r->accuracy = r->latency_us_b1_p50 = r->latency_us_b1_p99 = -1;
    r->throughput_b256 = r->train_seconds = r->macs = -1;
}

static int extra_slot(rep_row *r, const char *key)
{
    for (int i = 0; i < r->nextra; i++)
        if (strcmp(r->extra[i].key, key) == 0)
            return i;
    if (r->nextra == REP_MAX_EXTRA)
        return -1;
    snprintf(r->extra[r->nextra].key, sizeof r->extra[0].key, "%s", key);
    return r->nextra++;
}

void rep_row_num(rep_row *r, const char *key, double v)
{
    int i = extra_slot(r, key);
    if (i >= 0) {
        r->extra[i].num = v;
        r->extra[i].is_num = 1;
    }
}

double rep_row_get_num(const rep_row *r, const char *key)
{
    for (int i = 0; i < r->nextra; i++)
        if (r->extra[i].is_num && !strcmp(r->extra[i].key, key))
            return r->extra[i].num;
    return -1;
}

void rep_row_str(rep_row *r, const char *key, const char *v)
{
    int i = extra_slot(r, key);
    if (i >= 0) {
        snprintf(r->extra[i].str, sizeof r->extra[0].str, "%s", v);
        r->extra[i].is_num = 0;
    }
}

void rep_bprintf(kd_buf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        kd_buf_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

void rep_json_str(kd_buf *b, const char *s)
{
    kd_buf_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            rep_bprintf(b, "\\%c", c);
        else if (c < 0x20)
            rep_bprintf(b, "\\u%04x", c);
        else
            kd_buf_put(b, s, 1);
    }
    kd_buf_put(b, "\"", 1);
}

/* a number, or null when not measured (< 0 or not finite) */
static void num(kd_buf *b, double v, int is_int)
{
    if (!isfinite(v) || v < 0)
        rep_bprintf(b, "null");
    else if (is_int)
        rep_bprintf(b, "%.0f", v);
    else
        rep_bprintf(b, "%.6g", v);
}

#define NFIXED 11
static const char *const fixed_keys[NFIXED] = {
    "name", "role", "params", "nonzero_params", "size_bytes", "accuracy", "latency_us_b1_p50",
    "latency_us_b1_p99", "throughput_b256", "train_seconds", "macs"};

static void fixed_vals(const rep_row *r, double v[NFIXED])
{
    v[2] = (double)r->params;
    v[3] = (double)r->nonzero_params;
    v[4] = (double)r->size_bytes;
    v[5] = r->accuracy;
    v[6] = r->latency_us_b1_p50;
    v[7] = r->latency_us_b1_p99;
    v[8] = r->throughput_b256;
    v[9] = r->train_seconds;
    v[10] = r->macs;
}

static void json_row(kd_buf *b, const rep_row *r)
{
    double v[NFIXED];
    fixed_vals(r, v);
    rep_bprintf(b, "    {\"name\": ");
    rep_json_str(b, r->name);
    rep_bprintf(b, ", \"role\": ");
    rep_json_str(b, r->role);
    for (int k = 2; k < NFIXED; k++) {
        rep_bprintf(b, ", \"%s\": ", fixed_keys[k]);
        num(b, v[k], k <= 4);
    }
    for (int i = 0; i < r->nextra; i++) {
        rep_bprintf(b, ", ");
        rep_json_str(b, r->extra[i].key);
        rep_bprintf(b, ": ");
        if (r->extra[i].is_num)
            num(b, r->extra[i].num, 0);
        else
            rep_json_str(b, r->extra[i].str);
    }
    rep_bprintf(b, "}");
}

static void csv_num(kd_buf *b, double v, int is_int)
{
    if (isfinite(v) && v >= 0)
        rep_bprintf(b, is_int ? "%.0f" : "%.6g", v);
}

static void write_csv(kd_buf *b, const rep_row *rows, int n)
{
    /* columns: the fixed ones, then every extra key in order of first use */
    char keys[REP_MAX_EXTRA * 8][32];
    int nk = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < rows[i].nextra; j++) {
            int seen = 0;
            for (int k = 0; k < nk && !seen; k++)
                seen = strcmp(keys[k], rows[i].extra[j].key) == 0;
            if (!seen && nk < (int)(sizeof keys / sizeof keys[0]))
                memcpy(keys[nk++], rows[i].extra[j].key, 32);
        }
    for (int k = 0; k < NFIXED; k++)
        rep_bprintf(b, "%s%s", k ? "," : "", fixed_keys[k]);
    for (int k = 0; k < nk; k++) {
        kd_buf_put(b, ",", 1);
        rep_csv_str(b, keys[k]);
    }
    rep_bprintf(b, "\n");
    for (int i = 0; i < n; i++) {
        const rep_row *r = &rows[i];
        double v[NFIXED];
        fixed_vals(r, v);
        rep_csv_str(b, r->name);
        kd_buf_put(b, ",", 1);
        rep_csv_str(b, r->role);
        for (int k = 2; k < NFIXED; k++) {
            rep_bprintf(b, ",");
            csv_num(b, v[k], k <= 4);
        }
        for (int k = 0; k < nk; k++) {
            rep_bprintf(b, ",");
            for (int j = 0; j < r->nextra; j++)
                if (strcmp(r->extra[j].key, keys[k]) == 0) {
                    if (r->extra[j].is_num)
                        csv_num(b, r->extra[j].num, 0);
                    else
                        rep_csv_str(b, r->extra[j].str);
                }
        }
        rep_bprintf(b, "\n");
    }
}

/* "ladders": [{"name": ..., "rows": [...]}, ...], on one line each */
static void json_ladders(kd_buf *b, const rep_ladder *l, int n)
{
    rep_bprintf(b, ",\n  \"ladders\": [");
    for (int i = 0; i < n; i++) {
        rep_bprintf(b, "%s\n    {\"name\": ", i ? "," : "");
        rep_json_str(b, l[i].name);
        rep_bprintf(b, ", \"rows\": [");
        for (int k = 0; k < l[i].nsteps; k++) {
            if (k)
                kd_buf_put(b, ", ", 2);
            rep_json_str(b, l[i].step[k]);
        }
        rep_bprintf(b, "]}");
    }
    rep_bprintf(b, "\n  ]");
}

int rep_write_results(const char *dir, const char *experiment, const rep_row *rows, int n,
                      kd_err *e)
{
    return rep_write_results_ladders(dir, experiment, rows, n, NULL, 0, e);
}

int rep_write_results_ladders(const char *dir, const char *experiment, const rep_row *rows, int n,
                              const rep_ladder *ladders, int nladders, kd_err *e)
{
    char path[4096];
    kd_buf b = {0};
    rep_bprintf(&b, "{\n  \"experiment\": ");
    rep_json_str(&b, experiment);
    if (nladders > 0)
        json_ladders(&b, ladders, nladders);
    rep_bprintf(&b, ",\n  \"rows\": [\n");
    for (int i = 0; i < n; i++) {
        json_row(&b, &rows[i]);
        rep_bprintf(&b, i + 1 < n ? ",\n" : "\n");
    }
    rep_bprintf(&b, "  ]\n}\n");
    snprintf(path, sizeof path, "%s/results.json", dir);
    int rc = b.failed ? kd_err_set(e, KD_ENOMEM, "out of memory")
                      : kd_write_atomic(path, b.p, b.len, e);
    kd_buf_free(&b);
    if (rc != KD_OK)
        return rc;
    write_csv(&b, rows, n);
    snprintf(path, sizeof path, "%s/results.csv", dir);
    rc = b.failed ? kd_err_set(e, KD_ENOMEM, "out of memory")
                  : kd_write_atomic(path, b.p, b.len, e);
    kd_buf_free(&b);
    return rc;
}
