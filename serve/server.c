/* The HTTP server: libmicrohttpd daemon (a pool of polling threads), routing,
 * bearer keys, limits, drain.  A request that runs a model suspends its
 * connection and queues a job on the model's batcher; the worker fills the
 * answer and resumes the connection, so HTTP threads never block on a model
 * and any number of requests can be gathered into one batch.
 *
 * Model names may contain '/' (mlp128/distilled): the URL carries a name as
 * the path tail after /v2/models/ (metadata), before /infer (inference) or
 * before /ready; percent-encoding (%2F) is decoded by libmicrohttpd, so both
 * /v2/models/mlp128/distilled/infer and /v2/models/mlp128%2Fdistilled/infer
 * work.  No model name may end in /infer or /ready. */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>

#include "../compress/compress.h"
#include "internal.h"

typedef struct {
    char name[SERVE_NAME_MAX];
    nn_model *m;
    long long bytes;
    double accuracy;
    serve_metrics mx;
    serve_batcher *b;
} serve_entry;

struct serve_server {
    serve_opts o;
    char host[64];
    char *key, *shadow;
    serve_entry **models; /* each its own allocation: batchers point into them */
    int n, cap;
    struct MHD_Daemon *d;
    int port, started, stopped;
    pthread_mutex_t mu; /* guards inflight */
    pthread_cond_t cv;
    int inflight;
};

enum { ROUTE_NONE = 0, ROUTE_LIVE, ROUTE_READY, ROUTE_INDEX, ROUTE_META, ROUTE_MODEL_READY,
       ROUTE_INFER, ROUTE_PREDICT, ROUTE_METRICS };
enum { ST_READ = 0, ST_WAIT, ST_DONE };

/* One request, from its first handler call to the completion callback. */
typedef struct {
    serve_server *s;
    struct MHD_Connection *conn;
    double t0;
    int route, status;
    serve_entry *model;
    char why[256];
    kd_buf body;
    int too_big, state;
    serve_job job;
    char id[128];
} serve_req;

/* ---- setup ----------------------------------------------------------------------- */

serve_server *serve_server_new(const serve_opts *o, kd_err *e)
{
    const char *host = o->host ? o->host : "127.0.0.1";
    struct in_addr a;
    if (strlen(host) >= 64 || inet_pton(AF_INET, host, &a) != 1) {
        kd_err_set(e, KD_ECONFIG, "host \"%s\" is not an IPv4 address", host);
        return NULL;
    }
    if (o->port < 0 || o->port > 65535 || o->threads < 1 || o->threads > 256 ||
        o->compute_threads < 0 || o->compute_threads > 256 ||
        o->max_batch < 1 || o->max_batch > SERVE_MAX_ROWS || o->max_delay_us < 0 ||
        o->max_delay_us > 10000000 || o->max_queue < 1 || o->max_queue > 1000000 ||
        o->max_body < 64 || o->max_connections < 1 || o->timeout_s < 1) {
        kd_err_set(e, KD_ECONFIG, "a serve option is out of range (port 0-65535, threads 1-256, "
                                  "compute threads 0-256, "
                                  "max-batch 1-%d, max-delay-us 0-10000000, max-queue "
                                  "1-1000000, max-body >= 64, max-connections >= 1, timeout >= 1)",
                   SERVE_MAX_ROWS);
        return NULL;
    }
    serve_server *s = kd_calloc(1, sizeof *s);
    if (!s || (o->api_key && !(s->key = kd_strdup(o->api_key)))) {
        kd_free(s);
        kd_err_set(e, KD_ENOMEM, "out of memory");
        return NULL;
    }
    s->o = *o;
    snprintf(s->host, sizeof s->host, "%s", host);
    s->o.host = s->host;
    s->o.api_key = s->key;
    s->o.shadow = NULL;
    if (o->shadow && !(s->shadow = kd_strdup(o->shadow))) {
        kd_free(s->key);
        kd_free(s);
        kd_err_set(e, KD_ENOMEM, "out of memory");
        return NULL;
    }
    s->o.shadow = s->shadow;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    return s;
}

static int ends_with(const char *s, const char *t)
{
    size_t n = strlen(s), k = strlen(t);
    return n >= k && !strcmp(s + n - k, t);
}

static serve_entry *find_model(serve_server *s, const char *name, size_t len)
{
    for (int i = 0; i < s->n; i++)
        if (strlen(s->models[i]->name) == len && !memcmp(s->models[i]->name, name, len))
            return s->models[i];
    return NULL;
}

int serve_server_add(serve_server *s, const char *name, nn_model *m, long long bytes,
                     double accuracy, kd_err *e)
{
    int rc = KD_OK;
    if (s->started)
        rc = kd_err_set(e, KD_ERUNTIME, "models are added before the server starts");
    else if (!name[0] || strlen(name) >= SERVE_NAME_MAX || ends_with(name, "/infer") ||
             ends_with(name, "/ready") || name[0] == '/' || strchr(name, '"'))
        rc = kd_err_set(e, KD_ECONFIG, "\"%s\" cannot be a model name", name);
    else if (find_model(s, name, strlen(name)))
        rc = kd_err_set(e, KD_ECONFIG, "two models are named \"%s\"", name);
    else if (m->nclasses < 1 || nn_shape_size(m->in) < 1)
        rc = kd_err_set(e, KD_EFORMAT, "model \"%s\" has no input or no output", name);
    if (rc == KD_OK && s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 8;
        serve_entry **p = kd_realloc(s->models, (size_t)cap * sizeof *p);
        if (!p)
            rc = kd_err_set(e, KD_ENOMEM, "out of memory");
        else {
            s->models = p;
            s->cap = cap;
        }
    }
    serve_entry *en = NULL;
    if (rc == KD_OK && !(en = kd_calloc(1, sizeof *en)))
        rc = kd_err_set(e, KD_ENOMEM, "out of memory");
    if (rc != KD_OK || !en) {
        nn_model_free(m);
        return rc;
    }
    snprintf(en->name, sizeof en->name, "%s", name);
    en->m = m;
    en->bytes = bytes;
    en->accuracy = accuracy;
    serve_metrics_init(&en->mx);
    if (!(en->b = serve_batcher_new(m, s->o.max_batch, s->o.max_delay_us, s->o.max_queue,
                                    s->o.compute_threads, &en->mx, e))) {
        serve_metrics_destroy(&en->mx);
        nn_model_free(m);
        kd_free(en);
        return e ? e->code : KD_ENOMEM;
    }
    s->models[s->n++] = en;
    return KD_OK;
}

int serve_server_add_sources(serve_server *s, const serve_source *src, int n, kd_err *e)
{
    for (int i = 0; i < n; i++) {
        nn_model *m = compress_model_load(src[i].path, e);
        if (!m)
            return e ? e->code : KD_EFORMAT;
        nn_model_drop_grads(m); /* served: only run, never trained */
        int rc = serve_server_add(s, src[i].name, m, kd_file_size(src[i].path), src[i].accuracy, e);
        if (rc != KD_OK) {
            kd_err_prefix(e, "%s", src[i].path);
            return rc;
        }
    }
    return KD_OK;
}

int serve_server_port(const serve_server *s) { return s->port; }

/* ---- answers ---------------------------------------------------------------------- */

static enum MHD_Result answer(serve_req *r, int status, const char *type, const char *text,
                              size_t len)
{
    struct MHD_Response *res =
        MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!res)
        return MHD_NO;
    MHD_add_response_header(res, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (status == 401)
        MHD_add_response_header(res, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (status == 405)
        MHD_add_response_header(res, MHD_HTTP_HEADER_ALLOW,
                                r->route == ROUTE_PREDICT || r->route == ROUTE_INFER ? "POST"
                                                                                     : "GET");
    r->status = status;
    /* counted before the client can see the answer (a later /metrics shows it) */
    if (r->model && r->route != ROUTE_META && r->route != ROUTE_MODEL_READY)
        serve_metrics_request(&r->model->mx, status < 200 || status > 299, kd_now() - r->t0);
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)status, res);
    MHD_destroy_response(res);
    return ok;
}

/* Answers a JSON string made by json_io (NULL: out of memory, 500). */
static enum MHD_Result answer_json(serve_req *r, int status, char *json)
{
    static const char oom[] = "{\"error\":\"out of memory\"}";
    if (!json)
        return answer(r, 500, "application/json", oom, sizeof oom - 1);
    enum MHD_Result ok = answer(r, status, "application/json", json, strlen(json));
    serve_json_free(json);
    return ok;
}

static enum MHD_Result answer_error(serve_req *r, int status, const char *msg)
{
    return answer_json(r, status, serve_json_error(msg));
}

static serve_model_info info_of(const serve_entry *en)
{
    return (serve_model_info){en->name, en->m, en->bytes, en->accuracy,
                              serve_batcher_isolated(en->b)};
}

static enum MHD_Result answer_index(serve_req *r)
{
    serve_server *s = r->s;
    serve_model_info *i = kd_calloc((size_t)s->n, sizeof *i);
    if (!i)
        return answer_json(r, 500, NULL);
    for (int k = 0; k < s->n; k++)
        i[k] = info_of(s->models[k]);
    char *j = serve_json_index(i, s->n);
    kd_free(i);
    return answer_json(r, 200, j);
}

static enum MHD_Result answer_metrics(serve_req *r)
{
    serve_server *s = r->s;
    serve_metrics_row *rows = kd_calloc((size_t)s->n, sizeof *rows);
    if (!rows)
        return answer_json(r, 500, NULL);
    for (int k = 0; k < s->n; k++)
        rows[k] = (serve_metrics_row){s->models[k]->name, &s->models[k]->mx, s->models[k]->bytes};
    kd_buf b = {0};
    serve_metrics_text(&b, rows, s->n);
    kd_free(rows);
    enum MHD_Result ok = b.failed ? answer_json(r, 500, NULL)
                                  : answer(r, 200, "text/plain; version=0.0.4", (char *)b.p, b.len);
    kd_buf_free(&b);
    return ok;
}

/* ---- routing and access ------------------------------------------------------------- */

/* Constant-time in the key's content: every byte of the key is compared
 * whatever the offered value. */
static int key_ok(const char *key, const char *offered)
{
    size_t nk = strlen(key), no = offered ? strlen(offered) : 0;
    unsigned char d = offered == NULL || no != nk;
    for (size_t i = 0; i < nk; i++)
        d |= (unsigned char)(key[i] ^ (i < no ? offered[i] : 0));
    return d == 0;
}

/* Sets r->route and r->model from method and url; an error sets r->status
 * and r->why (answered once the body is read). */
static void route(serve_req *r, const char *url, const char *method)
{
    static const char models[] = "/v2/models/";
    serve_server *s = r->s;
    int post = !strcmp(method, "POST"), get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    int want_post = 0;
    if (!strcmp(url, "/v2/health/live"))
        r->route = ROUTE_LIVE;
    else if (!strcmp(url, "/v2/health/ready"))
        r->route = ROUTE_READY;
    else if (!strcmp(url, "/v2/models") || !strcmp(url, "/v2/models/"))
        r->route = ROUTE_INDEX;
    else if (!strcmp(url, "/metrics"))
        r->route = ROUTE_METRICS;
    else if (!strcmp(url, "/predict")) {
        r->route = ROUTE_PREDICT;
        r->model = s->models[0];
        want_post = 1;
    } else if (!strncmp(url, models, sizeof models - 1)) {
        const char *name = url + sizeof models - 1;
        size_t len = strlen(name);
        if ((r->model = find_model(s, name, len)))
            r->route = ROUTE_META;
        else if (ends_with(name, "/infer") && (r->model = find_model(s, name, len - 6))) {
            r->route = ROUTE_INFER;
            want_post = 1;
        } else if (ends_with(name, "/ready") && (r->model = find_model(s, name, len - 6)))
            r->route = ROUTE_MODEL_READY;
        else {
            r->status = 404;
            snprintf(r->why, sizeof r->why, "no model named \"%.*s\"",
                     (int)(ends_with(name, "/infer") || ends_with(name, "/ready") ? len - 6 : len),
                     name);
            return;
        }
    } else {
        r->status = 404;
        snprintf(r->why, sizeof r->why, "no such path: %.160s", url);
        return;
    }
    if (want_post ? !post : !get) {
        r->status = 405;
        snprintf(r->why, sizeof r->why, "%s %s: method not allowed (use %s)", method, url,
                 want_post ? "POST" : "GET");
        return;
    }
    if (s->key && r->route != ROUTE_LIVE && r->route != ROUTE_READY) {
        const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                    MHD_HTTP_HEADER_AUTHORIZATION);
        if (!key_ok(s->key, h && !strncmp(h, "Bearer ", 7) ? h + 7 : NULL)) {
            r->status = 401;
            snprintf(r->why, sizeof r->why, "missing or wrong key (Authorization: Bearer KEY)");
        }
    }
}

/* ---- running a model ---------------------------------------------------------------- */

static void inline_done(serve_job *j) { (void)j; }

static void job_done(serve_job *j)
{
    serve_req *r = j->arg;
    __atomic_store_n(&r->state, ST_DONE, __ATOMIC_RELEASE);
    MHD_resume_connection(r->conn); /* the last touch: r may be answered from here on */
}

static enum MHD_Result finish_model(serve_req *r);

/* Parses the body into a job and runs it at once when its model is idle, else
 * queues it; answers at once on an error. */
static enum MHD_Result submit(serve_req *r)
{
    serve_entry *en = r->model;
    serve_input_spec spec = {en->m->in, en->m->in_mean, en->m->in_std};
    const char *body = r->body.p ? (const char *)r->body.p : "";
    int rows = 0, st = r->route == ROUTE_PREDICT
                           ? serve_json_predict_in(body, r->body.len, &spec, &r->job.x, &rows,
                                                   r->why, sizeof r->why)
                           : serve_json_infer_in(body, r->body.len, &spec, &r->job.x, &rows, r->id,
                                                 sizeof r->id, r->why, sizeof r->why);
    if (st)
        return answer_error(r, st, r->why);
    r->job.rows = rows;
    if (!(r->job.probs = kd_malloc((size_t)rows * (size_t)en->m->nclasses * sizeof(float))))
        return answer_error(r, 500, "out of memory");
    r->job.arg = r;
    r->job.t_submit = kd_now();
    r->job.done = inline_done;
    if (serve_batcher_try_run(en->b, &r->job)) /* the model was idle: answered here */
        return finish_model(r);
    r->job.done = job_done;
    r->state = ST_WAIT;
    MHD_suspend_connection(r->conn); /* before submit: resume must follow suspend */
    if (serve_batcher_submit(en->b, &r->job) != 0) {
        r->state = ST_READ;
        r->status = 429;
        MHD_resume_connection(r->conn);
    }
    return MHD_YES;
}

static enum MHD_Result finish_model(serve_req *r)
{
    const int k = r->model->m->nclasses;
    if (isnan(r->job.probs[0]))
        return answer_error(r, 500, "the model could not run (out of memory)");
    if (r->route == ROUTE_PREDICT)
        return answer_json(r, 200, serve_json_predict_out(r->job.probs, r->job.rows, k));
    return answer_json(r, 200,
                       serve_json_infer_out(r->model->name, r->id, r->job.probs, r->job.rows, k));
}

/* The request is complete (body read): answer it, or queue it on its model. */
static enum MHD_Result dispatch(serve_req *r)
{
    serve_server *s = r->s;
    if (r->too_big) {
        snprintf(r->why, sizeof r->why, "the body is over %zu bytes", s->o.max_body);
        return answer_error(r, 413, r->why);
    }
    if (r->status)
        return answer_error(r, r->status,
                            r->status == 429 ? "the model's queue is full; retry later" : r->why);
    static const char live[] = "{\"live\":true}", ready[] = "{\"ready\":true}";
    static const char unready[] = "{\"ready\":false}";
    switch (r->route) {
    case ROUTE_LIVE: return answer(r, 200, "application/json", live, sizeof live - 1);
    case ROUTE_READY:
    case ROUTE_MODEL_READY:
        if (__atomic_load_n(&s->stopped, __ATOMIC_ACQUIRE))
            return answer(r, 503, "application/json", unready, sizeof unready - 1);
        return answer(r, 200, "application/json", ready, sizeof ready - 1);
    case ROUTE_INDEX: return answer_index(r);
    case ROUTE_METRICS: return answer_metrics(r);
    case ROUTE_META: {
        serve_model_info i = info_of(r->model);
        return answer_json(r, 200, serve_json_model_meta(&i));
    }
    default: return submit(r);
    }
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
    (void)version;
    serve_server *s = cls;
    serve_req *r = *con_cls;
    if (!r) {
        if (!(r = kd_calloc(1, sizeof *r)))
            return MHD_NO;
        r->s = s;
        r->conn = conn;
        r->t0 = kd_now();
        *con_cls = r;
        pthread_mutex_lock(&s->mu);
        s->inflight++;
        pthread_mutex_unlock(&s->mu);
        route(r, url, method);
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->o.max_body) { /* refuse before reading it */
            r->too_big = 1;
            return dispatch(r);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!r->too_big && r->body.len + *upload_size > s->o.max_body)
            r->too_big = 1;
        if (!r->too_big && !r->status)
            kd_buf_put(&r->body, upload, *upload_size);
        r->too_big |= r->body.failed;
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->state == ST_DONE)
        return finish_model(r);
    if (r->state == ST_WAIT) /* not expected: suspended connections are not called */
        return MHD_YES;
    if (r->status == 413)
        return MHD_YES; /* answered at the first call */
    kd_buf_put(&r->body, "", 1); /* a NUL after the body for the parser */
    if (!r->body.failed)
        r->body.len--;
    return dispatch(r);
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    (void)toe;
    serve_server *s = cls;
    serve_req *r = *con_cls;
    if (!r)
        return;
    kd_buf_free(&r->body);
    kd_afree(r->job.x);
    kd_free(r->job.probs);
    kd_free(r);
    *con_cls = NULL;
    pthread_mutex_lock(&s->mu);
    if (--s->inflight == 0)
        pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* ---- start and stop ------------------------------------------------------------------ */

/* Every model but the shadow also runs on it. */
static int shadow_setup(serve_server *s, kd_err *e)
{
    serve_entry *sh = find_model(s, s->shadow, strlen(s->shadow));
    if (!sh)
        return kd_err_set(e, KD_ECONFIG, "--shadow %s: no model of that name", s->shadow);
    for (int i = 0; i < s->n; i++) {
        serve_entry *en = s->models[i];
        if (en == sh)
            continue;
        if (nn_shape_size(en->m->in) != nn_shape_size(sh->m->in))
            return kd_err_set(e, KD_ECONFIG, "--shadow %s: its input size differs from %s's",
                              s->shadow, en->name);
        serve_batcher_shadow(en->b, sh->b);
    }
    return KD_OK;
}

/* New connections once stop has begun are closed as they are accepted.  Not
 * MHD_quiesce_daemon: in libmicrohttpd 0.9.75 (Debian 12) it and a pool
 * worker's epoll loop both take the listen socket out of the worker's epoll
 * set, and the loser's ENOENT is a panic (abort); seen in CI at the end of a
 * test, and about once in 500 stops under connection churn here.  The poll
 * loop has no such race but serves ~12% fewer small requests a second. */
static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t len)
{
    (void)addr;
    (void)len;
    serve_server *s = cls;
    return __atomic_load_n(&s->stopped, __ATOMIC_ACQUIRE) ? MHD_NO : MHD_YES;
}

int serve_server_start(serve_server *s, kd_err *e)
{
    if (s->n == 0)
        return kd_err_set(e, KD_ECONFIG, "no model to serve");
    serve_json_init();
    if (s->shadow && shadow_setup(s, e) != KD_OK)
        return e ? e->code : KD_ECONFIG;
    for (int i = 0; i < s->n; i++)
        if (serve_batcher_start(s->models[i]->b, e) != KD_OK) {
            kd_err_prefix(e, "model %s", s->models[i]->name);
            return e ? e->code : KD_ERUNTIME;
        }
    s->started = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->o.port)};
    inet_pton(AF_INET, s->host, &a.sin_addr);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ITC;
    s->d = MHD_start_daemon(
        flags, 0, accept_policy, s, handler, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)s->o.threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)s->o.max_connections, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->o.timeout_s,
        MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
        /* each connection's memory pool (headers, read buffer) is zeroed at every
         * request: 16 KiB, not the default 32, is ample for our headers */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16384,
        MHD_OPTION_END);
    if (!s->d)
        return kd_err_set(e, KD_ERUNTIME, "cannot listen on %s:%d (in use, or not allowed)",
                          s->host, s->o.port);
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = i ? i->port : s->o.port;
    return KD_OK;
}

void serve_server_stop(serve_server *s, double drain_s)
{
    if (__atomic_exchange_n(&s->stopped, 1, __ATOMIC_ACQ_REL))
        return;
    if (s->d) { /* accept_policy refuses new connections from here on */
        double until = kd_now() + drain_s;
        pthread_mutex_lock(&s->mu);
        while (s->inflight > 0 && kd_now() < until) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 10000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        }
        pthread_mutex_unlock(&s->mu);
    }
    /* workers finish what is queued (resuming every suspended connection) */
    for (int i = 0; i < s->n; i++)
        serve_batcher_stop(s->models[i]->b);
    if (s->d)
        MHD_stop_daemon(s->d);
    s->d = NULL;
}

void serve_server_free(serve_server *s)
{
    if (!s)
        return;
    serve_server_stop(s, 0);
    for (int i = 0; i < s->n; i++) {
        serve_batcher_free(s->models[i]->b);
        serve_metrics_destroy(&s->models[i]->mx);
        nn_model_free(s->models[i]->m);
        kd_free(s->models[i]);
    }
    kd_free(s->models);
    kd_free(s->key);
    kd_free(s->shadow);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    kd_free(s);
}
