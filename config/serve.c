/* `serve:` — kdbench serve's settings (the same keys as its flags) and the
 * serving loadtest that ends kdbench run:
 *   serve: {max_batch: 64, loadtest: true, concurrency: [1, 8, 64],
 *           requests: 2000, seconds: 1, models: [teacher, prune90_int8]}
 * Model names (models, shadow) are checked against the run's variants with a
 * did-you-mean, so a typo stops the run before anything trains. */
#include <arpa/inet.h>
#include <string.h>

#include "internal.h"

static const char *const batching_names[] = {"on", "off", "both"};

const char *config_serve_batching(int b) { return batching_names[b]; }

void config_serve_defaults(cfg_serve *s)
{
    *s = (cfg_serve){.port = 8080, .threads = 2, .compute_threads = 1, .max_batch = 64,
                     .max_queue = 1024, .max_body = 8 << 20, .max_connections = 1000,
                     .timeout = 10, .concurrency = {1, 8, 64}, .nconcurrency = 3,
                     .requests = 2000, .seconds = 1};
    snprintf(s->host, sizeof s->host, "127.0.0.1");
}

/* The names kdbench serve gives a run's models: its rows' names (teacher,
 * STUDENT/scratch, STUDENT/MODE, then each variant), a variant's with '/' as
 * '_' (its file's name). */
static int served_names(const exp_spec *s, char (*out)[CFG_SERVE_NAME], int cap)
{
    _Static_assert(CFG_SERVE_NAME == CFG_ROW_NAME, "a served name is a row name");
    int n = cfg_row_names(s, out, cap);
    for (int i = n - s->nvariants; i < n; i++)
        for (char *p = out[i]; *p; p++)
            *p = *p == '/' ? '_' : *p;
    return n;
}

/* v names a model the run serves ('/' in a variant's name may stay); the
 * served name into out.  No spec: any non-empty name. */
static int model_name(cfg_ctx *c, const exp_spec *s, const cfg_node *v, const char *p, char *out)
{
    if (v->kind != CFG_SCALAR || !v->len || v->len >= CFG_SERVE_NAME)
        return cfg_err(c, v, p, "expected a model name (teacher, STUDENT/MODE or a variant)");
    snprintf(out, CFG_SERVE_NAME, "%s", v->s);
    if (!s)
        return KD_OK;
    enum { CAP = CFG_MAX_ROWS };
    char names[CAP][CFG_SERVE_NAME], flat[CFG_SERVE_NAME];
    const char *cand[CAP];
    int n = served_names(s, names, CAP);
    for (int i = 0; i < s->nvariants; i++) /* a variant named as in results.json */
        if (!strcmp(v->s, s->variants[i].name))
            snprintf(out, CFG_SERVE_NAME, "%s", names[n - s->nvariants + i]);
    snprintf(flat, sizeof flat, "%s", out);
    for (int i = 0; i < n; i++) {
        if (!strcmp(flat, names[i]))
            return KD_OK;
        cand[i] = names[i];
    }
    const char *sug = cfg_suggest(v->s, cand, n);
    return cfg_err(c, v, p, "no model \"%.64s\" in this run (%s%s%steacher, STUDENT/scratch, "
                   "STUDENT/MODE or a compress variant)", v->s, sug ? "did you mean \"" : "",
                   sug ? sug : "", sug ? "\"?; " : "");
}

static int walk_lists(cfg_ctx *c, const cfg_node *m, const exp_spec *s, cfg_serve *o)
{
    const cfg_node *v = cfg_map_get(m, "concurrency");
    if (v && (v->kind != CFG_SEQ || v->n < 1 || v->n > CFG_MAX_CONC))
        return cfg_err(c, v, "serve.concurrency", "expected a list of 1 to %d levels, e.g. "
                       "[1, 8, 64]", CFG_MAX_CONC);
    for (int i = 0; v && i < v->n; i++) {
        char q[64];
        snprintf(q, sizeof q, "serve.concurrency[%d]", i);
        int rc = cfg_int_node(c, v->kid[i], q, 1, 1024, &o->concurrency[i]);
        if (rc != KD_OK)
            return rc;
        o->nconcurrency = i + 1;
    }
    v = cfg_map_get(m, "models");
    if (v && (v->kind != CFG_SEQ || v->n < 1 || v->n > CFG_MAX_SERVE_MODELS))
        return cfg_err(c, v, "serve.models", "expected a list of 1 to %d model names",
                       CFG_MAX_SERVE_MODELS);
    for (int i = 0; v && i < v->n; i++) {
        char q[64];
        snprintf(q, sizeof q, "serve.models[%d]", i);
        int rc = model_name(c, s, v->kid[i], q, o->models[i]);
        for (int j = 0; rc == KD_OK && j < i; j++)
            if (!strcmp(o->models[j], o->models[i]))
                rc = cfg_err(c, v->kid[i], q, "\"%s\" is listed twice", o->models[i]);
        if (rc != KD_OK)
            return rc;
        o->nmodels = i + 1;
    }
    v = cfg_map_get(m, "shadow");
    return v ? model_name(c, s, v, "serve.shadow", o->shadow) : KD_OK;
}

/* The section (absent: defaults) into o; s gives the run's model names, or NULL. */
static int walk_serve(cfg_ctx *c, const cfg_node *root, const exp_spec *s, cfg_serve *o)
{
    static const char *const keys[] = {
        "port",      "host",     "threads",     "compute_threads", "api_key_file", "max_batch",
        "max_delay_us", "max_queue", "max_body", "max_connections", "timeout", "shadow",
        "loadtest",  "concurrency", "requests", "seconds", "batching", "models", NULL};
    config_serve_defaults(o);
    const cfg_node *m;
    int rc = cfg_section(c, root, "", "serve", 0, &m), b = 0;
    if (rc != KD_OK || !m || (rc = cfg_check_keys(c, m, "serve", keys, NULL)) != KD_OK)
        return rc;
    o->pos = cfg_key_pos(root, "serve");
    const char *p = "serve";
    if ((rc = cfg_int(c, m, p, "port", 0, 0, 65535, &o->port)) ||
        (rc = cfg_str(c, m, p, "host", 0, o->host, sizeof o->host)) ||
        (rc = cfg_int(c, m, p, "threads", 0, 1, 256, &o->threads)) ||
        (rc = cfg_int(c, m, p, "compute_threads", 0, 1, 256, &o->compute_threads)) ||
        (rc = cfg_str(c, m, p, "api_key_file", 0, o->api_key_file, sizeof o->api_key_file)) ||
        (rc = cfg_int(c, m, p, "max_batch", 0, 1, 4096, &o->max_batch)) ||
        (rc = cfg_int(c, m, p, "max_delay_us", 0, 0, 10000000, &o->max_delay_us)) ||
        (rc = cfg_int(c, m, p, "max_queue", 0, 1, 1000000, &o->max_queue)) ||
        (rc = cfg_int(c, m, p, "max_body", 0, 64, 1 << 30, &o->max_body)) ||
        (rc = cfg_int(c, m, p, "max_connections", 0, 1, 1000000, &o->max_connections)) ||
        (rc = cfg_int(c, m, p, "timeout", 0, 1, 3600, &o->timeout)) ||
        (rc = cfg_bool(c, m, p, "loadtest", &o->loadtest)) ||
        (rc = cfg_int(c, m, p, "requests", 0, 1, 10000000, &o->requests)) ||
        (rc = cfg_float(c, m, p, "seconds", 0, (cfg_range){0, 600, 1, 0}, &o->seconds)) ||
        (rc = cfg_enum(c, m, p, "batching", 0, batching_names, 3, &b)))
        return rc;
    o->batching = b;
    struct in_addr a;
    if (inet_pton(AF_INET, o->host, &a) != 1)
        return cfg_err(c, cfg_map_get(m, "host"), "serve.host",
                       "\"%.64s\" is not an IPv4 address (e.g. 127.0.0.1)", o->host);
    if (cfg_map_get(m, "api_key_file") && !o->api_key_file[0])
        return cfg_err(c, cfg_map_get(m, "api_key_file"), "serve.api_key_file",
                       "must not be empty");
    return walk_lists(c, m, s, o);
}

int cfg_walk_serve(cfg_ctx *c, const cfg_node *root, exp_spec *s)
{
    return walk_serve(c, root, s, &s->serve);
}

int config_load_serve(const char *path, cfg_serve *out, kd_err *e)
{
    uint8_t *text = NULL;
    size_t len = 0;
    config_serve_defaults(out);
    int rc = kd_read_file(path, CFG_MAX_INPUT + 1, &text, &len, e);
    if (rc == KD_EFORMAT)
        return kd_err_at(e, KD_ECONFIG, path, 0, 0,
                         "larger than %u bytes; not an experiment config", CFG_MAX_INPUT);
    if (rc != KD_OK)
        return rc;
    kd_err local;
    cfg_ctx c = {.file = path, .e = e ? e : &local};
    cfg_node *root = NULL;
    rc = cfg_parse(&c, (const char *)text, len, -1, &root);
    if (rc == KD_OK)
        rc = walk_serve(&c, root, NULL, out);
    cfg_node_free(root);
    kd_free(text);
    if (rc != KD_OK)
        config_serve_defaults(out);
    return rc;
}

/* ---- dump ------------------------------------------------------------------------ */

void cfg_dump_serve(const cfg_serve *s, FILE *f)
{
    fprintf(f, "serve:\n  port: %d\n  host: ", s->port);
    cfg_put_str(f, s->host);
    fprintf(f, "\n  threads: %d\n  compute_threads: %d\n", s->threads, s->compute_threads);
    if (s->api_key_file[0]) {
        fputs("  api_key_file: ", f);
        cfg_put_str(f, s->api_key_file);
        fputc('\n', f);
    }
    fprintf(f, "  max_batch: %d\n  max_delay_us: %d\n  max_queue: %d\n  max_body: %d\n"
               "  max_connections: %d\n  timeout: %d\n", s->max_batch, s->max_delay_us,
            s->max_queue, s->max_body, s->max_connections, s->timeout);
    if (s->shadow[0]) {
        fputs("  shadow: ", f);
        cfg_put_str(f, s->shadow);
        fputc('\n', f);
    }
    fprintf(f, "  loadtest: %s\n  concurrency: [", s->loadtest ? "true" : "false");
    for (int i = 0; i < s->nconcurrency; i++)
        fprintf(f, "%s%d", i ? ", " : "", s->concurrency[i]);
    fprintf(f, "]\n  requests: %d\n  seconds: ", s->requests);
    cfg_put_float(f, s->seconds);
    fprintf(f, "\n  batching: %s\n", batching_names[s->batching]);
    if (s->nmodels) {
        fputs("  models: [", f);
        for (int i = 0; i < s->nmodels; i++) {
            fputs(i ? ", " : "", f);
            cfg_put_str(f, s->models[i]);
        }
        fputs("]\n", f);
    }
}
