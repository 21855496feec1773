/* The serving loadtest that ends a run (`serve: {loadtest: true}`): the run's
 * variants served in-process on 127.0.0.1 at an ephemeral port with serve's
 * own server, each loaded in turn at each concurrency level with batch-1 v2
 * requests (the test set's images, round-robin), bounded by serve.requests
 * and serve.seconds per cell; serving.json and serving.csv in the run folder.
 * A resumed run that already has serving.json keeps it. */
#include <string.h>
#include <unistd.h>

#include "../serve/serve.h"
#include "internal.h"

/* The run's served models, narrowed to serve.models (in that order) when listed. */
static int served(const run_ctx *r, serve_source **src, int *n, kd_err *e)
{
    const cfg_serve *c = &r->spec->serve;
    const char *dir = r->dir;
    int rc = serve_sources(&dir, 1, src, n, e);
    if (rc != KD_OK || !c->nmodels)
        return rc;
    serve_source *all = *src;
    int k = 0;
    for (int i = 0; i < c->nmodels && rc == KD_OK; i++) {
        int j = 0;
        while (j < *n && strcmp(all[j].name, c->models[i]))
            j++;
        if (j == *n)
            rc = kd_err_set(e, KD_ECONFIG, "serve.models: the run has no model \"%s\"",
                            c->models[i]);
        else {
            serve_source t = all[k];
            all[k++] = all[j];
            all[j] = t;
        }
    }
    *n = k;
    return rc;
}

/* One server (batching on or off) for each model in turn, and every level on
 * it: one model in memory at a time, not all of them at once (issue 12:
 * the teacher alone is 10 MB; each cell measures one model either way). */
static int serve_cells(run_ctx *r, const serve_source *src, int n, int batching,
                       rep_serving_row *out, int *nout, kd_err *e)
{
    const cfg_serve *c = &r->spec->serve;
    serve_opts so = {.host = "127.0.0.1", .port = 0, .threads = c->threads,
                     .compute_threads = c->compute_threads,
                     .max_batch = batching ? c->max_batch : 1, .max_delay_us = c->max_delay_us,
                     .max_queue = c->max_queue, .max_body = (size_t)c->max_body,
                     .max_connections = c->max_connections, .timeout_s = c->timeout};
    const data_set *t = &r->test;
    size_t isz = nn_shape_size(t->shape);
    int rc = KD_OK;
    for (int i = 0; rc == KD_OK && i < n; i++) {
        serve_server *s = serve_server_new(&so, e);
        rc = s ? serve_server_add_sources(s, &src[i], 1, e) : e->code;
        if (rc == KD_OK)
            rc = serve_server_start(s, e);
        for (int k = 0; rc == KD_OK && k < c->nconcurrency; k++) {
            serve_load_opts lo = {.host = "127.0.0.1", .port = serve_server_port(s),
                                  .model = src[i].name, .concurrency = c->concurrency[k],
                                  .requests = c->requests, .seconds = c->seconds,
                                  .images = t->x8, .nimages = t->x8 ? t->n : 0,
                                  .image_size = isz};
            serve_load_row *row = NULL;
            int nr = 0;
            if ((rc = pl_cancelled(r, e)) != KD_OK ||
                (rc = serve_loadtest(&lo, &row, &nr, e)) != KD_OK)
                break;
            rep_serving_row *o = &out[(*nout)++];
            *o = (rep_serving_row){.concurrency = c->concurrency[k], .batching = so.max_batch > 1,
                                   .requests = row->ok, .failures = row->failed,
                                   .seconds = row->seconds, .rps = row->rps,
                                   .p50_ms = row->p50_ms, .p90_ms = row->p90_ms,
                                   .p99_ms = row->p99_ms};
            snprintf(o->variant, sizeof o->variant, "%.95s", src[i].name);
            kd_logf(&r->log, "serving %s, %d client%s, batching %s: %.0f requests/s, p99 %.2f ms"
                    "%s", o->variant, o->concurrency, o->concurrency == 1 ? "" : "s",
                    o->batching ? "on" : "off", o->rps, o->p99_ms,
                    o->failures ? " (with failures)" : "");
            kd_free(row);
        }
        serve_server_free(s);
    }
    return rc;
}

int pl_stage_serving(run_ctx *r, kd_err *e)
{
    const cfg_serve *c = &r->spec->serve;
    char path[PL_PATH];
    pl_path(r, "serving.json", path, sizeof path);
    if (r->o->resume && access(path, F_OK) == 0) {
        kd_logf(&r->log, "serving: %s is there already; not measured again", path);
        return KD_OK;
    }
    pl_stage_begin(r, "serving loadtest");
    serve_source *src = NULL;
    int n = 0, rc = served(r, &src, &n, e);
    int passes = c->batching == 2 ? 2 : 1;
    rep_serving_row *rows =
        rc == KD_OK ? kd_calloc((size_t)(n * c->nconcurrency * passes) + 1, sizeof *rows) : NULL;
    int nrows = 0;
    if (rc == KD_OK && !rows)
        rc = kd_err_set(e, KD_ENOMEM, "out of memory");
    /* both: unbatched first, then batched, on two servers; OpenBLAS serial
     * meanwhile (each model's worker is its thread; serve.h) */
    nn_set_threads(1);
    for (int p = 0; rc == KD_OK && p < passes; p++)
        rc = serve_cells(r, src, n, c->batching == 1 ? 0 : c->batching == 2 ? p : 1, rows,
                         &nrows, e);
    nn_set_threads(r->threads);
    if (rc == KD_OK)
        rc = rep_write_serving(r->dir, r->spec->name, rows, nrows, e);
    if (rc == KD_OK)
        kd_logf(&r->log, "serving: %s/serving.json, %s/serving.csv", r->dir, r->dir);
    else if (rc != KD_ECANCELED)
        kd_err_prefix(e, "serving loadtest");
    kd_free(rows);
    kd_free(src);
    return rc;
}
