/* Reading result files back: results.json and metrics.jsonl. */
#include <string.h>

#include "reports.h"

#define RESULTS_MAX_BYTES (16 << 20)

static int read_text(const char *path, size_t max, char **text, size_t *len, kd_err *e)
{
    uint8_t *p = NULL;
    int rc = kd_read_file(path, max, &p, len, e);
    *text = rc == KD_OK ? (char *)p : NULL;
    return rc;
}

/* a fixed numeric member: number, or null (-1); anything else is an error */
static int fixed_num(const rep_json *j, int row, const char *key, double *out, const char *path,
                     kd_err *e)
{
    int k = rep_json_get(j, row, key);
    *out = -1;
    if (k < 0 || j->nodes[k].type == REP_JNULL)
        return KD_OK;
    if (j->nodes[k].type != REP_JNUM)
        return kd_err_at(e, KD_EFORMAT, path, 0, 0, "results: \"%s\" is not a number", key);
    *out = j->nodes[k].num;
    return KD_OK;
}

static int is_fixed(const char *key)
{
    static const char *const keys[] = {"name", "role", "params", "nonzero_params", "size_bytes",
                                       "accuracy", "latency_us_b1_p50", "latency_us_b1_p99",
                                       "throughput_b256", "train_seconds", "macs"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strcmp(keys[i], key))
            return 1;
    return 0;
}

static void row_extras(const rep_json *j, int row, rep_row *r)
{
    for (int c = j->nodes[row].first; c >= 0; c = j->nodes[c].next) {
        const rep_jnode *x = &j->nodes[c];
        if (is_fixed(x->key))
            continue;
        if (x->type == REP_JNUM || x->type == REP_JNULL)
            rep_row_num(r, x->key, x->type == REP_JNUM ? x->num : -1);
        else if (x->type == REP_JSTR)
            rep_row_str(r, x->key, x->str);
        else if (x->type == REP_JBOOL)
            rep_row_str(r, x->key, x->num ? "true" : "false");
    }
}

static int parse_row(const rep_json *j, int row, rep_row *r, const char *path, kd_err *e)
{
    int kn = rep_json_get(j, row, "name"), kr = rep_json_get(j, row, "role");
    if (j->nodes[row].type != REP_JOBJ || kn < 0 || j->nodes[kn].type != REP_JSTR)
        return kd_err_at(e, KD_EFORMAT, path, 0, 0, "results: a row without a \"name\" string");
    rep_row_init(r, j->nodes[kn].str,
                 kr >= 0 && j->nodes[kr].type == REP_JSTR ? j->nodes[kr].str : "");
    double v[9];
    const char *keys[9] = {"params", "nonzero_params", "size_bytes", "accuracy",
                           "latency_us_b1_p50", "latency_us_b1_p99", "throughput_b256",
                           "train_seconds", "macs"};
    for (int i = 0; i < 9; i++)
        if (fixed_num(j, row, keys[i], &v[i], path, e) != KD_OK)
            return KD_EFORMAT;
    for (int i = 0; i < 3; i++) /* counts: negative is "not measured"; no more than 2^53 */
        if (v[i] > 9007199254740992.0)
            return kd_err_at(e, KD_EFORMAT, path, 0, 0,
                             "results: row \"%.40s\": %s %g is not a count", r->name, keys[i],
                             v[i]);
    r->params = v[0] < 0 ? -1 : (long long)v[0];
    r->nonzero_params = v[1] < 0 ? -1 : (long long)v[1];
    r->size_bytes = v[2] < 0 ? -1 : (long long)v[2];
    r->accuracy = v[3];
    r->latency_us_b1_p50 = v[4];
    r->latency_us_b1_p99 = v[5];
    r->throughput_b256 = v[6];
    r->train_seconds = v[7];
    r->macs = v[8];
    row_extras(j, row, r);
    return KD_OK;
}

static int results_from(const rep_json *j, const char *path, char *experiment, size_t exp_n,
                        rep_row **rows, int *nrows, kd_err *e)
{
    int kx = rep_json_get(j, 0, "experiment"), kr = rep_json_get(j, 0, "rows");
    if (kr < 0 || j->nodes[kr].type != REP_JARR)
        return kd_err_at(e, KD_EFORMAT, path, 0, 0, "results: no \"rows\" array");
    if (experiment && exp_n)
        snprintf(experiment, exp_n, "%s",
                 kx >= 0 && j->nodes[kx].type == REP_JSTR ? j->nodes[kx].str : "");
    int n = j->nodes[kr].count;
    *rows = kd_calloc(n ? (size_t)n : 1, sizeof **rows);
    if (!*rows)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    int i = 0;
    for (int c = j->nodes[kr].first; c >= 0; c = j->nodes[c].next, i++)
        if (parse_row(j, c, &(*rows)[i], path, e) != KD_OK) {
            kd_free(*rows);
            *rows = NULL;
            return KD_EFORMAT;
        }
    *nrows = n;
    return KD_OK;
}

int rep_read_results(const char *path, char *experiment, size_t exp_n, rep_row **rows,
                     int *nrows, kd_err *e)
{
    char *text;
    size_t len;
    rep_json j;
    *rows = NULL;
    *nrows = 0;
    int rc = read_text(path, RESULTS_MAX_BYTES, &text, &len, e);
    if (rc != KD_OK)
        return rc;
    rc = rep_json_parse(text, len, path, &j, e);
    kd_free(text);
    if (rc != KD_OK)
        return rc;
    if (j.nodes[0].type != REP_JOBJ)
        rc = kd_err_at(e, KD_EFORMAT, path, 1, 1, "results: not a JSON object");
    else
        rc = results_from(&j, path, experiment, exp_n, rows, nrows, e);
    rep_json_free(&j);
    return rc;
}

static double member_num(const rep_json *j, const char *key)
{
    int k = rep_json_get(j, 0, key);
    return k >= 0 && j->nodes[k].type == REP_JNUM ? j->nodes[k].num : -1;
}

static int metric_line(const char *s, size_t len, const char *path, int line, rep_metric *m,
                       kd_err *e)
{
    rep_json j;
    int rc = rep_json_parse(s, len, path, &j, e);
    if (rc != KD_OK) {
        e->line = line;
        return rc;
    }
    int km = rep_json_get(&j, 0, "model");
    if (km < 0 || j.nodes[km].type != REP_JSTR) {
        rep_json_free(&j);
        return kd_err_at(e, KD_EFORMAT, path, line, 1, "metrics: no \"model\" string");
    }
    memset(m, 0, sizeof *m);
    snprintf(m->model, sizeof m->model, "%s", j.nodes[km].str);
    double ep = member_num(&j, "epoch"); /* (int) of a number out of range is undefined */
    m->epoch = ep >= -1 && ep <= 1e9 ? (int)ep : -1;
    m->loss = member_num(&j, "loss");
    m->train_acc = member_num(&j, "train_acc");
    m->val_loss = member_num(&j, "val_loss");
    m->val_acc = member_num(&j, "val_acc");
    m->lr = member_num(&j, "lr");
    m->seconds = member_num(&j, "seconds");
    m->samples_per_s = member_num(&j, "samples_per_s");
    rep_json_free(&j);
    return KD_OK;
}

int rep_read_metrics(const char *path, rep_metric **out, int *n, kd_err *e)
{
    char *text;
    size_t len;
    *out = NULL;
    *n = 0;
    int rc = read_text(path, RESULTS_MAX_BYTES, &text, &len, e);
    if (rc != KD_OK)
        return rc;
    int lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    *out = kd_calloc((size_t)lines, sizeof **out);
    if (!*out) {
        kd_free(text);
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    }
    size_t pos = 0;
    for (int line = 1; pos < len && rc == KD_OK; line++) {
        size_t end = pos;
        while (end < len && text[end] != '\n')
            end++;
        size_t k = pos;
        while (k < end && text[k] && strchr(" \t\r", text[k]))
            k++;
        if (k < end)
            rc = metric_line(text + pos, end - pos, path, line, &(*out)[(*n)++], e);
        pos = end + 1;
    }
    kd_free(text);
    if (rc != KD_OK) {
        kd_free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}
