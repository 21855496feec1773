/* The load tester: C threads, each with its own keep-alive connection, send
 * batch-1 requests to one model until N requests or S seconds, whichever
 * comes first; latency percentiles over every answered request. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "../reports/reports.h"
#include "internal.h"

typedef struct {
    const serve_load_opts *o;
    const char *path, *headers;
    const kd_buf *body; /* nbody request bodies, sent round-robin */
    int nbody;
    long *issued; /* shared, atomic */
    double until;
    double *lat; /* this thread's latencies (ms) */
    long nlat, cap, ok, failed;
    kd_err err;
} load_thread;

static void *load_run(void *arg)
{
    load_thread *t = arg;
    serve_client *c = serve_client_new(t->o->host, t->o->port, 10, &t->err);
    kd_buf ans = {0};
    while (c) {
        long k = __atomic_fetch_add(t->issued, 1, __ATOMIC_RELAXED);
        if ((t->o->requests > 0 && k >= t->o->requests) || kd_now() >= t->until)
            break;
        int status = 0;
        const kd_buf *body = &t->body[k % t->nbody];
        double t0 = kd_now();
        if (serve_client_request(c, "POST", t->path, t->headers, (const char *)body->p,
                                 body->len, &status, &ans, &t->err) != KD_OK ||
            status != 200) {
            t->failed++;
            continue;
        }
        if (t->nlat == t->cap) {
            long cap = t->cap ? 2 * t->cap : 4096;
            double *p = kd_realloc(t->lat, (size_t)cap * sizeof *p);
            if (!p)
                break;
            t->lat = p;
            t->cap = cap;
        }
        t->lat[t->nlat++] = (kd_now() - t0) * 1e3;
        t->ok++;
    }
    kd_buf_free(&ans);
    serve_client_free(c);
    return NULL;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const double *v, long n, double p)
{
    if (n == 0)
        return NAN;
    long i = (long)ceil(p / 100.0 * (double)n) - 1;
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

/* One model's run into row. */
static int load_one(const serve_load_opts *o, const char *path, const char *headers,
                    const kd_buf *body, int nbody, serve_load_row *row, kd_err *e)
{
    int nt = o->concurrency;
    load_thread *t = kd_calloc((size_t)nt, sizeof *t);
    pthread_t *th = kd_calloc((size_t)nt, sizeof *th);
    long issued = 0;
    if (!t || !th) {
        kd_free(t);
        kd_free(th);
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    }
    double t0 = kd_now();
    int started = 0;
    for (int i = 0; i < nt; i++) {
        t[i] = (load_thread){.o = o, .path = path, .headers = headers, .body = body,
                             .nbody = nbody, .issued = &issued, .until = t0 + o->seconds};
        if (pthread_create(&th[i], NULL, load_run, &t[i]) != 0)
            break;
        started++;
    }
    long total = 0;
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        total += t[i].nlat;
    }
    double secs = kd_now() - t0;
    double *all = kd_calloc((size_t)(total ? total : 1), sizeof *all);
    long at = 0;
    row->ok = row->failed = 0;
    for (int i = 0; i < started; i++) {
        if (all && t[i].nlat > 0) /* a client that got no request has no lat (NULL) */
            memcpy(all + at, t[i].lat, (size_t)t[i].nlat * sizeof *all);
        at += t[i].nlat;
        row->ok += t[i].ok;
        row->failed += t[i].failed;
        if (t[i].err.msg[0] && row->ok == 0 && e)
            *e = t[i].err;
        kd_free(t[i].lat);
    }
    int rc = started == nt && all ? KD_OK : kd_err_set(e, KD_ERUNTIME, "cannot start threads");
    if (rc == KD_OK && row->ok == 0)
        rc = e && e->msg[0] ? KD_EIO : kd_err_set(e, KD_EIO, "no request succeeded");
    if (all)
        qsort(all, (size_t)total, sizeof *all, cmp_dbl);
    row->seconds = secs;
    row->rps = (double)row->ok / secs;
    row->p50_ms = all ? pct(all, total, 50) : NAN;
    row->p90_ms = all ? pct(all, total, 90) : NAN;
    row->p99_ms = all ? pct(all, total, 99) : NAN;
    kd_free(all);
    kd_free(t);
    kd_free(th);
    return rc;
}

/* The server's models (names and input sizes) from GET /v2/models. */
static int index_of(const serve_load_opts *o, const char *headers, char (**names)[SERVE_NAME_MAX],
                    int **sizes, int *n, kd_err *e)
{
    serve_client *c = serve_client_new(o->host, o->port, 10, e);
    kd_buf ans = {0};
    int status = 0, rc = c ? serve_client_request(c, "GET", "/v2/models", headers, NULL, 0,
                                                   &status, &ans, e)
                           : KD_EIO;
    serve_client_free(c);
    if (rc == KD_OK && status != 200)
        rc = kd_err_set(e, KD_EIO, "GET /v2/models answered %d: %s", status, (char *)ans.p);
    cJSON *j = rc == KD_OK ? cJSON_Parse((const char *)ans.p) : NULL;
    kd_buf_free(&ans);
    const cJSON *models = cJSON_GetObjectItemCaseSensitive(j, "models"), *m;
    int k = cJSON_GetArraySize(models);
    *names = kd_calloc((size_t)(k ? k : 1), sizeof **names);
    *sizes = kd_calloc((size_t)(k ? k : 1), sizeof **sizes);
    *n = 0;
    cJSON_ArrayForEach(m, models) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(m, "name");
        const cJSON *in = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(m, "inputs"), 0);
        const cJSON *size = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(in, "shape"), 1);
        if (!*names || !*sizes || !cJSON_IsString(name) || !cJSON_IsNumber(size))
            continue;
        snprintf((*names)[*n], SERVE_NAME_MAX, "%s", name->valuestring);
        (*sizes)[(*n)++] = size->valueint;
    }
    cJSON_Delete(j);
    if (rc == KD_OK && *n == 0)
        rc = kd_err_set(e, KD_EIO, "the server lists no model");
    return rc;
}

/* A batch-1 body of size pixels: px, or deterministic random ones when NULL. */
static void make_body(kd_buf *b, int predict, int size, const uint8_t *px)
{
    nn_rng r = nn_rng_stream(1, NN_STREAM_TEST);
    b->len = 0;
    rep_bprintf(b, predict ? "{\"input\":[[" : "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,%d],"
                                               "\"datatype\":\"UINT8\",\"data\":[", size);
    for (int i = 0; i < size; i++) {
        unsigned v = px ? px[i] : nn_rng_below(&r, 256);
        if (predict)
            rep_bprintf(b, "%s%.4f", i ? "," : "", v / 255.0);
        else
            rep_bprintf(b, "%s%u", i ? "," : "", v);
    }
    rep_bprintf(b, predict ? "]]}" : "]}]}");
}

int serve_loadtest(const serve_load_opts *o, serve_load_row **rows, int *nrows, kd_err *e)
{
    char headers[600] = "";
    if (o->api_key)
        snprintf(headers, sizeof headers, "Authorization: Bearer %.500s\r\n", o->api_key);
    char(*names)[SERVE_NAME_MAX] = NULL;
    int *sizes = NULL, n = 0;
    int rc = index_of(o, headers, &names, &sizes, &n, e);
    if (rc == KD_OK && (o->model || o->predict)) { /* one model: the named or the default */
        int k = 0;
        while (o->model && k < n && strcmp(names[k], o->model))
            k++;
        if (k == n)
            rc = kd_err_set(e, KD_ECONFIG, "the server has no model \"%s\"", o->model);
        else {
            memmove(names[0], names[k], SERVE_NAME_MAX);
            sizes[0] = sizes[k];
            n = 1;
        }
    }
    *rows = rc == KD_OK ? kd_calloc((size_t)n, sizeof **rows) : NULL;
    if (rc == KD_OK && !*rows)
        rc = kd_err_set(e, KD_ENOMEM, "out of memory");
    kd_buf body[SERVE_LOAD_BODIES] = {{0}};
    for (int i = 0; rc == KD_OK && i < n; i++) {
        char path[SERVE_NAME_MAX + 32];
        snprintf(path, sizeof path, o->predict ? "/predict" : "/v2/models/%s/infer", names[i]);
        int real = o->images && o->nimages > 0 && (size_t)sizes[i] == o->image_size;
        int nb = real ? (o->nimages < SERVE_LOAD_BODIES ? o->nimages : SERVE_LOAD_BODIES) : 1, bad = 0;
        for (int k = 0; k < nb; k++) {
            make_body(&body[k], o->predict, sizes[i], real ? o->images + k * o->image_size : NULL);
            bad |= body[k].failed;
        }
        snprintf((*rows)[i].model, SERVE_NAME_MAX, "%s", names[i]);
        rc = bad ? kd_err_set(e, KD_ENOMEM, "out of memory")
                 : load_one(o, path, headers, body, nb, &(*rows)[i], e);
        if (rc != KD_OK)
            kd_err_prefix(e, "%s", names[i]);
    }
    for (int k = 0; k < SERVE_LOAD_BODIES; k++)
        kd_buf_free(&body[k]);
    kd_free(names);
    kd_free(sizes);
    if (rc != KD_OK) {
        kd_free(*rows);
        *rows = NULL;
        return rc;
    }
    *nrows = n;
    return KD_OK;
}
