/* serve — models behind an HTTP API (libmicrohttpd, JSON by cJSON): POST
 * /predict, a KServe/Triton v2 protocol subset, Prometheus /metrics, bearer
 * keys, per-model dynamic batching; a small keep-alive HTTP client and the
 * load tester built on it.  Uses nn and compress (model files with every
 * compressed kind), never pipeline.  Errors come back as kd_err; only cli/
 * prints. */
#ifndef KD_SERVE_H
#define KD_SERVE_H

#include <stddef.h>

#include "../nn/nn.h"

/* ---- models to serve ---------------------------------------------------------- */
#define SERVE_NAME_MAX 128

/* One model found on the command line or in a run directory. */
typedef struct {
    char name[SERVE_NAME_MAX]; /* "teacher", "mlp128/distilled", "prune90_int8", ... */
    char path[1024];
    double accuracy; /* from the run's results.json; < 0 when unknown */
} serve_source;

/* Resolves the command line's operands into models: each operand is a .kdm
 * file (named by its base name without .kdm) or a run directory (teacher.kdm
 * as "teacher", students/S/MODE-seedN.kdm as "S/MODE" for the first seed in
 * name order and "S/MODE-seedN" for the others, compressed/X.kdm as "X"),
 * with accuracies from a run's results.json when it has them.  *out is a new
 * array of *n (kd_free it).  KD_ECONFIG for an operand that is neither, a
 * folder with no model, or a name given twice. */
int serve_sources(const char *const *args, int nargs, serve_source **out, int *n, kd_err *e);

/* ---- the server ------------------------------------------------------------------ */
typedef struct {
    const char *host;    /* IPv4 address to bind; NULL = 127.0.0.1 */
    int port;            /* 0 = an ephemeral port (serve_server_port tells which) */
    int threads;         /* HTTP threads (libmicrohttpd's pool) >= 1 */
    int compute_threads; /* per model: a team of this many for its threaded (compressed)
                          * layers; 0 or 1 = the model's worker alone.  OpenBLAS's own
                          * thread count is the caller's (serve never changes it while
                          * it runs): keep it at 1 (nn_set_threads) so two pools do not
                          * compete, and so concurrent forwards never resize it */
    int max_batch;       /* rows per forward >= 1 (1 = batching off) */
    int max_delay_us;    /* how long a batch waits for more requests (0 = only what queued) */
    int max_queue;       /* requests queued per model before 429 >= 1 */
    size_t max_body;     /* request body limit in bytes (413 above) */
    int max_connections; /* open connections at once (more wait in the listen queue) */
    int timeout_s;       /* an idle or stalled connection is closed after this (>= 1) */
    const char *api_key; /* NULL = no access control; else every endpoint but health */
    const char *shadow;  /* NULL, or a served model every other model's requests also
                          * run on, off their path; /metrics gives each model's
                          * agreement (same class) with it */
} serve_opts;

/* The defaults printed by --help. */
#define SERVE_DEFAULT_OPTS                                                                         \
    {.host = "127.0.0.1", .port = 8080, .threads = 2, .compute_threads = 1, .max_batch = 64,    \
     .max_delay_us = 0,                                                                            \
     .max_queue = 1024, .max_body = 8u << 20, .max_connections = 1000, .timeout_s = 10}

typedef struct serve_server serve_server;

/* A server with no model yet; copies o (and its strings).  KD_ECONFIG on a bad option. */
serve_server *serve_server_new(const serve_opts *o, kd_err *e);
/* Adds a model under name; takes ownership of m, even on failure.  bytes is
 * its file's size (for metadata and /metrics); accuracy < 0 when unknown.
 * The first model added is the default one (/predict).  Before start only. */
int serve_server_add(serve_server *s, const char *name, nn_model *m, long long bytes,
                     double accuracy, kd_err *e);
/* Loads every source with compress's kinds (CRC and shapes verified) and
 * adds it; an error names the file. */
int serve_server_add_sources(serve_server *s, const serve_source *src, int n, kd_err *e);
/* Starts the model workers and the HTTP daemon (binds the port). */
int serve_server_start(serve_server *s, kd_err *e);
/* The bound port (after start). */
int serve_server_port(const serve_server *s);
/* Drains: stops accepting, lets in-flight requests finish (at most
 * drain_s seconds), stops the workers and the daemon.  Safe to call twice. */
void serve_server_stop(serve_server *s, double drain_s);
void serve_server_free(serve_server *s); /* stops it first; accepts NULL */

/* ---- the client --------------------------------------------------------------------
 * One HTTP/1.1 connection with keep-alive, reconnected when the server closes
 * it; blocking, with a timeout on every send and receive.  One thread at a time. */
typedef struct serve_client serve_client;
serve_client *serve_client_new(const char *host, int port, double timeout_s, kd_err *e);
void serve_client_free(serve_client *c); /* accepts NULL */
/* Sends METHOD PATH with body (may be NULL) and the extra header lines in
 * headers ("Name: value\r\n"..., may be NULL); *status gets the status code
 * and body (may be NULL) the answer's body, NUL-terminated (kd_buf_free it).
 * KD_EIO on a connection or protocol failure. */
int serve_client_request(serve_client *c, const char *method, const char *path,
                         const char *headers, const char *body, size_t blen, int *status,
                         kd_buf *answer, kd_err *e);

/* ---- the load tester --------------------------------------------------------------- */
typedef struct {
    const char *host;
    int port;
    const char *model;   /* NULL = every model in the server's index, in turn */
    const char *api_key; /* NULL = none */
    int concurrency;     /* client threads, each with its own keep-alive connection */
    long requests;       /* per model; 0 = bounded by seconds alone */
    double seconds;      /* per model; the run stops at whichever comes first */
    int predict;         /* 1: POST /predict (default model) instead of v2 infer */
    /* NULL, or nimages images of image_size pixels each, sent round-robin (at
     * most SERVE_LOAD_BODIES of them) to a model whose input size is
     * image_size; other models, and no images, get fixed random pixels */
    const uint8_t *images;
    int nimages;
    size_t image_size;
} serve_load_opts;
#define SERVE_LOAD_BODIES 256

typedef struct {
    char model[SERVE_NAME_MAX];
    long ok, failed;
    double seconds, rps;
    double p50_ms, p90_ms, p99_ms;
} serve_load_row;

/* Runs the load; *rows is a new array of *nrows (kd_free it), one per model. */
int serve_loadtest(const serve_load_opts *o, serve_load_row **rows, int *nrows, kd_err *e);

#endif
