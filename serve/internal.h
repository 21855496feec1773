/* serve's private header: metrics, the per-model batcher, JSON in and out.
 * Never included from outside serve/. */
#ifndef KD_SERVE_INTERNAL_H
#define KD_SERVE_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "serve.h"

/* Rows one request may carry (the body limit bounds it too). */
#define SERVE_MAX_ROWS 4096

/* ---- metrics (metrics.c) ------------------------------------------------------
 * Counters and histograms of one model, under its own mutex (written by the
 * HTTP threads and the model's worker, read by /metrics). */
#define SERVE_LAT_NB 14  /* latency buckets, seconds, plus +Inf */
#define SERVE_BATCH_NB 9 /* batch-size buckets, rows, plus +Inf */
typedef struct {
    uint64_t le[16]; /* per bucket (not cumulative); the last is +Inf */
    uint64_t n;
    double sum;
} serve_hist;

typedef struct {
    pthread_mutex_t mu;
    uint64_t requests, failures;
    serve_hist request_s, queue_s, compute_s, batch_rows;
    uint64_t shadow_runs, shadow_agree; /* rows compared with the shadow model */
} serve_metrics;

void serve_metrics_init(serve_metrics *m);
void serve_metrics_destroy(serve_metrics *m);
/* One answered request: failed when its status is not 2xx. */
void serve_metrics_request(serve_metrics *m, int failed, double seconds);
/* One forward of rows rows gathered from njobs requests, each queued queue_s[i]. */
void serve_metrics_batch(serve_metrics *m, const double *queue_s, int njobs, int rows,
                         double compute_s);
void serve_metrics_shadow(serve_metrics *m, int rows, int agree);

/* One model's lines for the exposition. */
typedef struct {
    const char *name;
    serve_metrics *m;
    long long bytes;
} serve_metrics_row;
/* Appends the Prometheus text exposition (format 0.0.4) of every model to b. */
void serve_metrics_text(kd_buf *b, const serve_metrics_row *rows, int n);

/* ---- batcher (batcher.c) ------------------------------------------------------------
 * One worker thread owns one model (forward is not re-entrant) and runs the
 * jobs queued for it, gathered into batches of at most max_batch rows (a
 * larger job runs alone). */
typedef struct serve_job serve_job;
struct serve_job {
    float *x;     /* rows x input size, normalised; owned by the submitter */
    int rows;
    float *probs; /* rows x nclasses: the worker writes the softmax here */
    double t_submit;
    /* Called by the worker once probs is written; the job's last touch by the
     * batcher (the submitter may free it from here on). */
    void (*done)(serve_job *j);
    void *arg;
};

typedef struct serve_batcher serve_batcher;
/* m and mx are borrowed and must outlive the batcher.  compute_threads > 1:
 * the batcher owns a team of that many for m's threaded layers. */
serve_batcher *serve_batcher_new(nn_model *m, int max_batch, int max_delay_us, int max_queue,
                                 int compute_threads, serve_metrics *mx, kd_err *e);
/* Starts the worker.  A model whose answers depend on the rest of the batch
 * (found by running two rows together and alone) runs one forward per
 * request (serve_batcher_isolated says so). */
int serve_batcher_start(serve_batcher *b, kd_err *e);
int serve_batcher_isolated(const serve_batcher *b);
/* After each batch, b also queues a copy of every request on shadow (same
 * input size), off the requests' path (dropped when shadow's queue is half
 * full, so the shadow's own requests keep their room), and counts in b's
 * metrics how many rows got the same class.
 * Before start. */
void serve_batcher_shadow(serve_batcher *b, serve_batcher *shadow);
/* Runs j at once on the calling thread when the model is idle, nothing is
 * queued and max_delay_us is 0 (no hand-over to the worker, no waiting: a lone request gains
 * nothing from a batch), calling j->done before it returns 1; else 0 and j
 * is untouched (queue it).  Requests that arrive meanwhile queue and are
 * batched by the worker once this forward ends. */
int serve_batcher_try_run(serve_batcher *b, serve_job *j);
/* Queues j: 0, or -1 when the queue is full or the batcher stops (429). */
int serve_batcher_submit(serve_batcher *b, serve_job *j);
/* Runs everything queued, then joins the worker; later submits fail. */
void serve_batcher_stop(serve_batcher *b);
void serve_batcher_free(serve_batcher *b); /* stops it; accepts NULL */

/* ---- JSON in and out (json_io.c) ----------------------------------------------------
 * Parsers return 0 or an HTTP status (400) with the reason in why. */
typedef struct {
    nn_shape in;
    float mean, std;
} serve_input_spec;

/* Sets cJSON's allocation hooks once (parses use a per-thread arena; see
 * json_io.c); called before the server's threads start.  Idempotent. */
void serve_json_init(void);
/* {"input": [[f, ...], ...]} -> *x (rows x size, normalised; kd_free it). */
int serve_json_predict_in(const char *body, size_t len, const serve_input_spec *s, float **x,
                          int *rows, char *why, size_t nwhy);
/* v2 {"id"?, "inputs": [{"name", "shape", "datatype": FP32|UINT8, "data"}]} ->
 * *x as above; id (may be "") copied into id. */
int serve_json_infer_in(const char *body, size_t len, const serve_input_spec *s, float **x,
                        int *rows, char *id, size_t nid, char *why, size_t nwhy);
/* Answers: new strings (serve_json_free them), NULL when out of memory. */
char *serve_json_predict_out(const float *probs, int rows, int k);
char *serve_json_infer_out(const char *model, const char *id, const float *probs, int rows,
                           int k);
char *serve_json_error(const char *msg);
typedef struct {
    const char *name;
    const nn_model *m;
    long long bytes;
    double accuracy;
    int isolated; /* 1: one forward per request (batch-dependent kind) */
} serve_model_info;
char *serve_json_model_meta(const serve_model_info *i);
char *serve_json_index(const serve_model_info *i, int n);
void serve_json_free(char *s);
/* The argmax of each of rows rows of k values into cls. */
void serve_argmax(const float *p, int rows, int k, int *cls);

#endif
