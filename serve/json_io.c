/* Requests and answers as JSON, through cJSON.  Inputs are normalised the way
 * the model's own pipeline feeds it (data_batch): x' = (x - mean) / std, with
 * FP32 features in the model's float scale (pixels / 255 for image models)
 * and UINT8 raw pixels first divided by 255. */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <cJSON.h>

#include "internal.h"

/* ---- a per-thread arena for parsing --------------------------------------------
 * cJSON makes one node per value (784 for one image) and a string per key, each
 * a malloc, then frees them one by one: most of a small request's time.  Its
 * only allocator interface is process-wide (cJSON_InitHooks), so the hooks are
 * set once, and they bump-allocate from the calling thread's arena while that
 * thread is inside a parse (arena_begin/arena_end); anywhere else, and when
 * the arena is full, they are malloc and free.  free of an arena pointer is a
 * no-op; the arena is reset at arena_end and freed when its thread exits. */
#define ARENA_BYTES (512u << 10)
typedef struct {
    char *base;
    size_t used;
    int active;
} json_arena;

static _Thread_local json_arena *t_arena;
static pthread_key_t arena_key;
static pthread_once_t arena_once = PTHREAD_ONCE_INIT;

static void arena_destroy(void *p)
{
    json_arena *a = p;
    free(a->base);
    free(a);
}

static void *hook_malloc(size_t n)
{
    json_arena *a = t_arena;
    if (a && a->active) {
        size_t at = (a->used + 15) & ~(size_t)15;
        if (n <= ARENA_BYTES && at <= ARENA_BYTES - n) {
            a->used = at + n;
            return a->base + at;
        }
    }
    return malloc(n);
}

static void hook_free(void *p)
{
    json_arena *a = t_arena;
    if (a && (char *)p >= a->base && (char *)p < a->base + ARENA_BYTES)
        return;
    free(p);
}

static void arena_init(void)
{
    pthread_key_create(&arena_key, arena_destroy);
    cJSON_Hooks h = {hook_malloc, hook_free};
    cJSON_InitHooks(&h);
}

void serve_json_init(void) { pthread_once(&arena_once, arena_init); }

/* Parses go to this thread's arena from here on (made on first use; without
 * memory, they stay on malloc). */
static void arena_begin(void)
{
    serve_json_init();
    if (!t_arena) {
        json_arena *a = malloc(sizeof *a);
        if (!a || !(a->base = malloc(ARENA_BYTES))) {
            free(a);
            return;
        }
        a->used = 0;
        a->active = 0;
        t_arena = a;
        pthread_setspecific(arena_key, a);
    }
    t_arena->active = 1;
}

/* After the parse's cJSON_Delete: the arena is empty again. */
static void arena_end(void)
{
    if (t_arena) {
        t_arena->active = 0;
        t_arena->used = 0;
    }
}

static int bad(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(char *why, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return 400;
}

static cJSON *parse(const char *body, size_t len, char *why, size_t nwhy)
{
    cJSON *j = cJSON_ParseWithLength(body, len);
    if (!j)
        bad(why, nwhy, "malformed JSON near byte %ld",
            cJSON_GetErrorPtr() ? (long)(cJSON_GetErrorPtr() - body) : 0L);
    else if (!cJSON_IsObject(j)) {
        bad(why, nwhy, "the body must be a JSON object");
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* One value into x[i]: finite, and for UINT8 an integer in [0, 255]. */
static int value(const cJSON *v, int u8, const serve_input_spec *s, float *x, size_t i,
                 char *why, size_t nwhy)
{
    if (!cJSON_IsNumber(v))
        return bad(why, nwhy, "value %zu is not a number", i);
    double d = v->valuedouble;
    if (!isfinite(d) || !isfinite((float)d))
        return bad(why, nwhy, "value %zu is not finite", i);
    if (u8) {
        if (d < 0 || d > 255 || d != floor(d))
            return bad(why, nwhy, "value %zu (%g) is not a UINT8", i, d);
        d /= 255.0;
    }
    x[i] = (float)(((float)d - s->mean) / s->std);
    return 0;
}

static float *alloc_rows(int rows, const serve_input_spec *s, char *why, size_t nwhy)
{
    float *x = kd_afloat((size_t)rows * nn_shape_size(s->in));
    if (!x)
        bad(why, nwhy, "out of memory for %d rows", rows);
    return x;
}

int serve_json_predict_in(const char *body, size_t len, const serve_input_spec *s, float **x,
                          int *rows, char *why, size_t nwhy)
{
    *x = NULL;
    arena_begin();
    cJSON *j = parse(body, len, why, nwhy);
    if (!j) {
        arena_end();
        return 400;
    }
    const size_t size = nn_shape_size(s->in);
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(j, "input");
    int n = cJSON_IsArray(in) ? cJSON_GetArraySize(in) : 0, rc = 0;
    if (!cJSON_IsArray(in))
        rc = bad(why, nwhy, "\"input\" must be an array of rows");
    else if (n < 1 || n > SERVE_MAX_ROWS)
        rc = bad(why, nwhy, "\"input\" has %d rows; 1 to %d accepted", n, SERVE_MAX_ROWS);
    else if (!(*x = alloc_rows(n, s, why, nwhy)))
        rc = 500;
    int r = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, in) {
        if (rc)
            break;
        if (!cJSON_IsArray(row) || (size_t)cJSON_GetArraySize(row) != size) {
            rc = bad(why, nwhy, "row %d must be an array of %zu numbers", r, size);
            break;
        }
        size_t i = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, row) {
            if ((rc = value(v, 0, s, *x + (size_t)r * size, i, why, nwhy)))
                break;
            i++;
        }
        r++;
    }
    cJSON_Delete(j);
    arena_end();
    if (rc) {
        kd_afree(*x);
        *x = NULL;
        return rc;
    }
    *rows = n;
    return 0;
}

/* Flattens data (a flat or nested array) into x, exactly count values. */
static int flatten(const cJSON *a, int u8, const serve_input_spec *s, float *x, size_t count,
                   size_t *at, int depth, char *why, size_t nwhy)
{
    if (depth > 5)
        return bad(why, nwhy, "\"data\" is nested too deeply");
    const cJSON *v;
    cJSON_ArrayForEach(v, a) {
        int rc;
        if (cJSON_IsArray(v))
            rc = flatten(v, u8, s, x, count, at, depth + 1, why, nwhy);
        else if (*at >= count)
            rc = bad(why, nwhy, "\"data\" has more values than its shape (%zu)", count);
        else {
            rc = value(v, u8, s, x, *at, why, nwhy);
            ++*at;
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* The tensor's shape: [rows, d1, ...] with d1 * ... = the input size. */
static int shape_rows(const cJSON *shape, size_t size, int *rows, char *why, size_t nwhy)
{
    int nd = cJSON_IsArray(shape) ? cJSON_GetArraySize(shape) : 0;
    if (nd < 2 || nd > 4)
        return bad(why, nwhy, "\"shape\" must be [batch, %zu] (or [batch, C, H, W])", size);
    double prod = 1;
    int i = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, shape) {
        if (!cJSON_IsNumber(d) || d->valuedouble < 1 || d->valuedouble != floor(d->valuedouble) ||
            d->valuedouble > SERVE_MAX_ROWS * 1e6)
            return bad(why, nwhy, "\"shape\"[%d] is not a positive integer", i);
        if (i == 0)
            *rows = (int)fmin(d->valuedouble, SERVE_MAX_ROWS + 1.0);
        else
            prod *= d->valuedouble;
        i++;
    }
    if (prod != (double)size)
        return bad(why, nwhy, "\"shape\" has %.0f values per row; the model takes %zu", prod, size);
    if (*rows > SERVE_MAX_ROWS)
        return bad(why, nwhy, "batch over %d rows", SERVE_MAX_ROWS);
    return 0;
}

static int infer_tensor(const cJSON *t, const serve_input_spec *s, float **x, int *rows,
                        char *why, size_t nwhy)
{
    const size_t size = nn_shape_size(s->in);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(t, "datatype");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(t, "data");
    if (!cJSON_IsString(name) || strcmp(name->valuestring, "input"))
        return bad(why, nwhy, "the input tensor must be named \"input\"");
    if (!cJSON_IsString(dt) ||
        (strcmp(dt->valuestring, "FP32") && strcmp(dt->valuestring, "UINT8")))
        return bad(why, nwhy, "\"datatype\" must be FP32 or UINT8");
    int rc = shape_rows(cJSON_GetObjectItemCaseSensitive(t, "shape"), size, rows, why, nwhy);
    if (rc)
        return rc;
    if (!cJSON_IsArray(data))
        return bad(why, nwhy, "\"data\" must be an array");
    if (!(*x = alloc_rows(*rows, s, why, nwhy)))
        return 500;
    size_t count = (size_t)*rows * size, at = 0;
    rc = flatten(data, !strcmp(dt->valuestring, "UINT8"), s, *x, count, &at, 0, why, nwhy);
    if (!rc && at != count)
        rc = bad(why, nwhy, "\"data\" has %zu values; its shape says %zu", at, count);
    return rc;
}

int serve_json_infer_in(const char *body, size_t len, const serve_input_spec *s, float **x,
                        int *rows, char *id, size_t nid, char *why, size_t nwhy)
{
    *x = NULL;
    id[0] = 0;
    arena_begin();
    cJSON *j = parse(body, len, why, nwhy);
    if (!j) {
        arena_end();
        return 400;
    }
    const cJSON *jid = cJSON_GetObjectItemCaseSensitive(j, "id");
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(j, "inputs");
    int rc = 0;
    if (jid && (!cJSON_IsString(jid) || strlen(jid->valuestring) >= nid))
        rc = bad(why, nwhy, "\"id\" must be a string under %zu bytes", nid);
    else if (!cJSON_IsArray(inputs) || cJSON_GetArraySize(inputs) != 1 ||
             !cJSON_IsObject(cJSON_GetArrayItem(inputs, 0)))
        rc = bad(why, nwhy, "\"inputs\" must hold one tensor object");
    else {
        if (jid)
            snprintf(id, nid, "%s", jid->valuestring);
        rc = infer_tensor(cJSON_GetArrayItem(inputs, 0), s, x, rows, why, nwhy);
    }
    cJSON_Delete(j);
    arena_end();
    if (rc) {
        kd_afree(*x);
        *x = NULL;
    }
    return rc;
}

/* ---- answers -------------------------------------------------------------------- */

void serve_argmax(const float *p, int rows, int k, int *cls)
{
    for (int r = 0; r < rows; r++) {
        const float *pr = p + (size_t)r * k;
        int best = 0;
        for (int i = 1; i < k; i++)
            best = pr[i] > pr[best] ? i : best;
        cls[r] = best;
    }
}

static char *print_free(cJSON *j)
{
    char *s = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    return s;
}

/* rows x k probabilities as one raw JSON array (nested: one array per row),
 * each as %.9g (a float read back exactly): cJSON would print each number
 * twice over and read it back to choose a width.  NULL when out of memory. */
static cJSON *probs_raw(const float *p, int rows, int k, int nested)
{
    kd_buf b = {0};
    kd_buf_put(&b, "[", 1);
    for (int r = 0; r < rows; r++) {
        if (nested)
            kd_buf_put(&b, r ? ",[" : "[", r ? 2 : 1);
        for (int i = 0; i < k; i++) {
            char num[32];
            int n = snprintf(num + 1, sizeof num - 1, "%.9g", (double)p[(size_t)r * k + i]);
            num[0] = ',';
            int first = i == 0 && (nested || r == 0);
            kd_buf_put(&b, num + first, (size_t)n + !first);
        }
        if (nested)
            kd_buf_put(&b, "]", 1);
    }
    kd_buf_put(&b, "]", 2); /* with the NUL */
    cJSON *j = b.failed ? NULL : cJSON_CreateRaw((const char *)b.p);
    kd_buf_free(&b);
    return j;
}

/* Adds rows x k probabilities (nested when nested, else flat) and their
 * classes under the given keys; 0 or -1 (out of memory). */
static int add_probs(cJSON *o, const char *pkey, const char *ckey, const float *p, int rows,
                     int k, int nested)
{
    cJSON *pa = probs_raw(p, rows, k, nested);
    if (!pa || !cJSON_AddItemToObject(o, pkey, pa)) {
        cJSON_Delete(pa);
        return -1;
    }
    cJSON *ca = cJSON_AddArrayToObject(o, ckey);
    if (!ca)
        return -1;
    for (int r = 0; r < rows; r++) {
        int c;
        serve_argmax(p + (size_t)r * k, 1, k, &c);
        if (!cJSON_AddItemToArray(ca, cJSON_CreateNumber(c)))
            return -1;
    }
    return 0;
}

char *serve_json_predict_out(const float *probs, int rows, int k)
{
    cJSON *o = cJSON_CreateObject();
    if (o && add_probs(o, "prediction", "class", probs, rows, k, 1)) {
        cJSON_Delete(o);
        return NULL;
    }
    return print_free(o);
}

static cJSON *tensor(const char *name, const char *dt, int rows, int k)
{
    cJSON *t = cJSON_CreateObject();
    cJSON *shape = cJSON_AddArrayToObject(t, "shape");
    if (!cJSON_AddStringToObject(t, "name", name) || !cJSON_AddStringToObject(t, "datatype", dt) ||
        !shape || !cJSON_AddItemToArray(shape, cJSON_CreateNumber(rows)) ||
        (k > 0 && !cJSON_AddItemToArray(shape, cJSON_CreateNumber(k)))) {
        cJSON_Delete(t);
        return NULL;
    }
    return t;
}

char *serve_json_infer_out(const char *model, const char *id, const float *probs, int rows,
                           int k)
{
    cJSON *o = cJSON_CreateObject(), *outs = cJSON_AddArrayToObject(o, "outputs");
    cJSON *tp = tensor("probabilities", "FP32", rows, k), *tc = tensor("class", "INT64", rows, 0);
    cJSON *tmp = cJSON_CreateObject();
    int ok = o && outs && tp && tc && tmp && cJSON_AddStringToObject(o, "model_name", model) &&
             (!id[0] || cJSON_AddStringToObject(o, "id", id)) &&
             add_probs(tmp, "p", "c", probs, rows, k, 0) == 0;
    if (ok) { /* move the flat arrays into the two tensors */
        cJSON_AddItemToObject(tp, "data", cJSON_DetachItemFromObject(tmp, "p"));
        cJSON_AddItemToObject(tc, "data", cJSON_DetachItemFromObject(tmp, "c"));
        cJSON_AddItemToArray(outs, tp);
        cJSON_AddItemToArray(outs, tc);
        tp = tc = NULL;
    }
    cJSON_Delete(tmp);
    cJSON_Delete(tp);
    cJSON_Delete(tc);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return print_free(o);
}

char *serve_json_error(const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    if (o && !cJSON_AddStringToObject(o, "error", msg)) {
        cJSON_Delete(o);
        return NULL;
    }
    return print_free(o);
}

static cJSON *meta(const serve_model_info *i)
{
    const nn_model *m = i->m;
    cJSON *o = cJSON_CreateObject(), *ins = cJSON_AddArrayToObject(o, "inputs");
    cJSON *outs = cJSON_AddArrayToObject(o, "outputs");
    cJSON *ti = tensor("input", "FP32", -1, (int)nn_shape_size(m->in));
    cJSON *tp = tensor("probabilities", "FP32", -1, m->nclasses);
    cJSON *tc = tensor("class", "INT64", -1, 0);
    const char *fmt = "fp32";
    for (int l = 0; l < m->nlayers; l++) /* the first weight layer's storage format */
        if (strcmp(nn_layer_format(&m->layers[l]), "-")) {
            fmt = nn_layer_format(&m->layers[l]);
            break;
        }
    int ok = o && ins && outs && ti && tp && tc && cJSON_AddStringToObject(o, "name", i->name) &&
             cJSON_AddStringToObject(o, "platform", "kdbench") &&
             cJSON_AddStringToObject(o, "format", fmt) &&
             cJSON_AddStringToObject(o, "batching", i->isolated ? "per-request" : "shared") &&
             cJSON_AddNumberToObject(o, "bytes", (double)i->bytes) &&
             cJSON_AddNumberToObject(o, "parameters", (double)nn_model_params(m, NULL)) &&
             (i->accuracy < 0 || cJSON_AddNumberToObject(o, "accuracy", i->accuracy));
    if (ok) {
        cJSON_AddItemToArray(ins, ti);
        cJSON_AddItemToArray(outs, tp);
        cJSON_AddItemToArray(outs, tc);
        return o;
    }
    cJSON_Delete(ti);
    cJSON_Delete(tp);
    cJSON_Delete(tc);
    cJSON_Delete(o);
    return NULL;
}

char *serve_json_model_meta(const serve_model_info *i) { return print_free(meta(i)); }

char *serve_json_index(const serve_model_info *i, int n)
{
    cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "models");
    for (int k = 0; a && k < n; k++) {
        cJSON *mi = meta(&i[k]);
        if (!mi || !cJSON_AddItemToArray(a, mi)) {
            cJSON_Delete(mi);
            a = NULL;
        }
    }
    if (!a) {
        cJSON_Delete(o);
        return NULL;
    }
    return print_free(o);
}

void serve_json_free(char *s) { cJSON_free(s); }
