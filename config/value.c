/* Errors that name the key by dotted path, and typed reads of scalars with
 * strict YAML-ish rules: integers reject 1.5, floats reject nan/inf, bools
 * are true/false, quoted text is always a string. */
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

/* ---- errors ------------------------------------------------------------------- */
static int verr(cfg_ctx *c, int src, int line, int col, const char *fmt, va_list ap)
{
    char msg[sizeof c->e->msg];
    int n = src >= 0 ? snprintf(msg, sizeof msg, "--set %.200s: ", c->ovr[src]) : 0;
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    /* keys and values quoted from the input must not drive the terminal */
    for (unsigned char *p = (unsigned char *)msg; *p; p++)
        if (*p < 0x20 || *p == 0x7F)
            *p = '?';
        else if (p[0] == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F) /* C1: NEL, CSI ... */
            p[0] = p[1] = '?';
        else if (p[0] == 0xE2 && p[1] == 0x80 && (p[2] == 0xA8 || p[2] == 0xA9))
            p[0] = p[1] = p[2] = '?'; /* U+2028, U+2029 */
    if (src >= 0)
        return kd_err_at(c->e, KD_ECONFIG, "--set", 0, 0, "%s", msg);
    return kd_err_at(c->e, KD_ECONFIG, c->file, line, col, "%s", msg);
}

int cfg_err_src(cfg_ctx *c, int src, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr(c, src, line, col, fmt, ap);
    va_end(ap);
    return KD_ECONFIG;
}

int cfg_err(cfg_ctx *c, const cfg_node *at, const char *path, const char *fmt, ...)
{
    assert(at != NULL); /* a defaulted key has no node: use cfg_err_key */
    char msg[sizeof c->e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cfg_err_src(c, at->src, at->line, at->col, "%s: %s", path, msg);
}

int cfg_err_key(cfg_ctx *c, const cfg_node *map, const char *key, const char *path, const char *fmt,
                ...)
{
    char msg[sizeof c->e->msg], p[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cfg_path(p, sizeof p, path, key);
    const cfg_node *v = cfg_map_get(map, key);
    if (v)
        return cfg_err(c, v, p, "%s", msg);
    /* the value is the default: the mapping that left the key out is where to add it */
    return cfg_err(c, map, p, "%s (%s is not given: this is its default)", msg, key);
}

int cfg_nomem(cfg_ctx *c)
{
    return kd_err_at(c->e, KD_ENOMEM, c->file, 0, 0, "out of memory");
}

const char *cfg_path(char *buf, size_t n, const char *path, const char *key)
{
    snprintf(buf, n, "%s%s%.64s", path, path[0] ? "." : "", key);
    return buf;
}

int cfg_name_ok(const char *s)
{
    static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-";
    return s[0] && strspn(s, ok) == strlen(s);
}

/* ---- did you mean ---------------------------------------------------------------- */
const char *cfg_suggest(const char *word, const char *const *cands, int n)
{
    return kd_suggest(word, cands, n);
}

/* ---- keys ------------------------------------------------------------------------ */
int cfg_check_keys(cfg_ctx *c, const cfg_node *map, const char *path, const char *const *keys,
                   const char *what)
{
    int nk = 0;
    while (keys[nk])
        nk++;
    char p[256];
    for (int i = 0; i + 1 < map->n; i += 2) {
        const cfg_node *k = map->kid[i];
        int known = 0;
        for (int j = 0; j < nk && !known; j++)
            known = strcmp(k->s, keys[j]) == 0;
        cfg_path(p, sizeof p, path, k->s[0] ? k->s : "\"\"");
        if (!known) {
            const char *s = cfg_suggest(k->s, keys, nk);
            return cfg_err(c, k, p, "unknown key%s%s%s%s%s", what ? " for " : "", what ? what : "",
                           s ? " (did you mean \"" : "", s ? s : "", s ? "\"?)" : "");
        }
        for (int j = 0; j < i; j += 2)
            if (strcmp(map->kid[j]->s, k->s) == 0) {
                if (map->kid[j]->src < 0)
                    return cfg_err(c, k, p, "duplicate key (first at line %d)", map->kid[j]->line);
                return cfg_err(c, k, p, "duplicate key");
            }
    }
    return KD_OK;
}

int cfg_missing(cfg_ctx *c, const cfg_node *map, const char *path, const char *key)
{
    char p[256];
    return cfg_err(c, map, cfg_path(p, sizeof p, path, key), "required key is missing");
}

cfg_pos cfg_key_pos(const cfg_node *map, const char *key)
{
    int i = cfg_map_find(map, key);
    if (i < 0 || map->kid[2 * i]->src >= 0)
        return (cfg_pos){0, 0};
    return (cfg_pos){map->kid[2 * i]->line, map->kid[2 * i]->col};
}

/* ---- scalars --------------------------------------------------------------------- */
static int is_null(const cfg_node *v)
{
    return v->kind == CFG_SCALAR && v->plain &&
           (v->len == 0 || !strcmp(v->s, "~") || !strcmp(v->s, "null") || !strcmp(v->s, "Null") ||
            !strcmp(v->s, "NULL"));
}

/* The common "expected X, got Y" error. */
static int bad_type(cfg_ctx *c, const cfg_node *v, const char *path, const char *want)
{
    if (v->kind == CFG_MAP)
        return cfg_err(c, v, path, "expected %s, got a mapping", want);
    if (v->kind == CFG_SEQ)
        return cfg_err(c, v, path, "expected %s, got a list", want);
    if (is_null(v))
        return cfg_err(c, v, path, "has no value (expected %s)", want);
    if (!v->plain)
        return cfg_err(c, v, path, "expected %s, got the quoted string \"%.64s\"", want, v->s);
    return cfg_err(c, v, path, "expected %s, got \"%.64s\"", want, v->s);
}

/* Looks up key; *v = NULL when absent (an error if req). */
static int lookup(cfg_ctx *c, const cfg_node *map, const char *path, const char *key, int req,
                  const cfg_node **v, char *p, size_t np)
{
    cfg_path(p, np, path, key);
    *v = cfg_map_get(map, key);
    if (!*v && req)
        return cfg_missing(c, map, path, key);
    return KD_OK;
}

/* [-+]?digits, nothing else */
static int int_syntax(const char *s)
{
    if (*s == '-' || *s == '+')
        s++;
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

int cfg_int_node(cfg_ctx *c, const cfg_node *v, const char *path, long long lo, long long hi,
                 int *out)
{
    if (v->kind != CFG_SCALAR || !v->plain || !int_syntax(v->s))
        return bad_type(c, v, path, "an integer");
    errno = 0;
    long long x = strtoll(v->s, NULL, 10);
    if (errno == ERANGE || x < lo)
        return cfg_err(c, v, path, "must be >= %lld, got %.64s", lo, v->s);
    if (x > hi)
        return cfg_err(c, v, path, "must be <= %lld, got %.64s", hi, v->s);
    *out = (int)x;
    return KD_OK;
}

int cfg_int(cfg_ctx *c, const cfg_node *map, const char *path, const char *key, int req,
            long long lo, long long hi, int *out)
{
    char p[256];
    const cfg_node *v;
    int rc = lookup(c, map, path, key, req, &v, p, sizeof p);
    if (rc != KD_OK || !v)
        return rc;
    return cfg_int_node(c, v, p, lo, hi, out);
}

int cfg_u64(cfg_ctx *c, const cfg_node *map, const char *path, const char *key, uint64_t *out)
{
    char p[256];
    const cfg_node *v;
    int rc = lookup(c, map, path, key, 0, &v, p, sizeof p);
    if (rc != KD_OK || !v)
        return rc;
    if (v->kind != CFG_SCALAR || !v->plain || !int_syntax(v->s))
        return bad_type(c, v, p, "a non-negative integer");
    if (v->s[0] == '-')
        return cfg_err(c, v, p, "must be >= 0, got %.64s", v->s);
    errno = 0;
    unsigned long long x = strtoull(v->s, NULL, 10);
    if (errno == ERANGE)
        return cfg_err(c, v, p, "must be < 2^64, got %.64s", v->s);
    *out = (uint64_t)x;
    return KD_OK;
}

/* decimal only: [-+]?(d+(.d*)?|.d+)([eE][-+]?d+)? */
static int float_syntax(const char *s)
{
    int digits = 0;
    if (*s == '-' || *s == '+')
        s++;
    for (; *s >= '0' && *s <= '9'; s++)
        digits++;
    if (*s == '.')
        for (s++; *s >= '0' && *s <= '9'; s++)
            digits++;
    if (!digits)
        return 0;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '-' || *s == '+')
            s++;
        if (*s < '0' || *s > '9')
            return 0;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    return *s == 0;
}

static int is_nonfinite_word(const char *s)
{
    if (*s == '-' || *s == '+')
        s++;
    if (*s == '.')
        s++;
    return !strcasecmp(s, "inf") || !strcasecmp(s, "nan") || !strcasecmp(s, "infinity");
}

static int out_of_range(cfg_ctx *c, const cfg_node *v, const char *p, double x, cfg_range r)
{
    if (r.lo_open ? !(x > r.lo) : !(x >= r.lo))
        return cfg_err(c, v, p, "must be %s %g, got %.64s", r.lo_open ? ">" : ">=", r.lo, v->s);
    if (r.hi_open ? !(x < r.hi) : !(x <= r.hi))
        return cfg_err(c, v, p, "must be %s %g, got %.64s", r.hi_open ? "<" : "<=", r.hi, v->s);
    return KD_OK;
}

int cfg_float_node(cfg_ctx *c, const cfg_node *v, const char *p, cfg_range r, float *out)
{
    if (v->kind == CFG_SCALAR && v->plain && is_nonfinite_word(v->s))
        return cfg_err(c, v, p, "must be a finite number, got %.64s", v->s);
    if (v->kind != CFG_SCALAR || !v->plain || !float_syntax(v->s))
        return bad_type(c, v, p, "a number");
    double x = strtod(v->s, NULL);
    if (!isfinite(x) || fabs(x) > 3.0e38)
        return cfg_err(c, v, p, "number %.64s is too large", v->s);
    /* check the value actually stored: 0.999999999 rounds to 1.0f */
    x = (float)x;
    int rc = out_of_range(c, v, p, x, r);
    if (rc != KD_OK)
        return rc;
    *out = (float)x;
    return KD_OK;
}

int cfg_float(cfg_ctx *c, const cfg_node *map, const char *path, const char *key, int req,
              cfg_range r, float *out)
{
    char p[256];
    const cfg_node *v;
    int rc = lookup(c, map, path, key, req, &v, p, sizeof p);
    if (rc != KD_OK || !v)
        return rc;
    return cfg_float_node(c, v, p, r, out);
}

int cfg_bool(cfg_ctx *c, const cfg_node *map, const char *path, const char *key, int *out)
{
    char p[256];
    const cfg_node *v;
    int rc = lookup(c, map, path, key, 0, &v, p, sizeof p);
    if (rc != KD_OK || !v)
        return rc;
    if (v->kind == CFG_SCALAR && v->plain && !strcmp(v->s, "true"))
        *out = 1;
    else if (v->kind == CFG_SCALAR && v->plain && !strcmp(v->s, "false"))
        *out = 0;
    else
        return bad_type(c, v, p, "true or false");
    return KD_OK;
}

int cfg_str(cfg_ctx *c, const cfg_node *map, const char *path, const char *key, int req, char *out,
            size_t cap)
{
    char p[256];
    const cfg_node *v;
    int rc = lookup(c, map, path, key, req, &v, p, sizeof p);
    if (rc != KD_OK || !v)
        return rc;
    if (v->kind != CFG_SCALAR || is_null(v))
        return bad_type(c, v, p, "a string");
    if (v->len >= cap)
        return cfg_err(c, v, p, "longer than %zu bytes", cap - 1);
    memcpy(out, v->s, v->len + 1);
    return KD_OK;
}

int cfg_enum(cfg_ctx *c, const cfg_node *map, const char *path, const char *key, int req,
             const char *const *names, int n, int *out)
{
    char p[256];
    const cfg_node *v;
    int rc = lookup(c, map, path, key, req, &v, p, sizeof p);
    if (rc != KD_OK || !v)
        return rc;
    char list[256] = "";
    for (int i = 0; i < n; i++) {
        if (v->kind == CFG_SCALAR && !strcmp(v->s, names[i])) {
            *out = i;
            return KD_OK;
        }
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", names[i]);
    }
    if (v->kind != CFG_SCALAR || is_null(v))
        return bad_type(c, v, p, "a string");
    const char *s = cfg_suggest(v->s, names, n);
    if (s)
        return cfg_err(c, v, p, "unknown value \"%.64s\" (did you mean \"%s\"?; one of: %s)", v->s,
                       s, list);
    return cfg_err(c, v, p, "unknown value \"%.64s\" (one of: %s)", v->s, list);
}

int cfg_section(cfg_ctx *c, const cfg_node *map, const char *path, const char *key, int req,
                const cfg_node **out)
{
    char p[256];
    const cfg_node *v;
    *out = NULL;
    int rc = lookup(c, map, path, key, req, &v, p, sizeof p);
    if (rc != KD_OK || !v)
        return rc;
    if (v->kind != CFG_MAP)
        return bad_type(c, v, p, "a mapping");
    *out = v;
    return KD_OK;
}

/* Shared by students and compress pipelines, so both refuse the same inputs
 * with the same words. */
int cfg_seeds(cfg_ctx *c, const cfg_node *map, const char *path, uint64_t dflt,
              uint64_t *seeds, int *nseeds)
{
    const cfg_node *v = cfg_map_get(map, "seeds");
    *nseeds = 1;
    seeds[0] = dflt;
    if (!v)
        return KD_OK;
    char p[128];
    cfg_path(p, sizeof p, path, "seeds");
    if (v->kind != CFG_SEQ || v->n < 1 || v->n > CFG_MAX_SEEDS)
        return cfg_err(c, v, p, "expected a list of 1 to %d seeds, e.g. [1, 2, 3]", CFG_MAX_SEEDS);
    for (int i = 0; i < v->n; i++) {
        char q[160];
        int s;
        snprintf(q, sizeof q, "%s[%d]", p, i);
        int rc = cfg_int_node(c, v->kid[i], q, 0, 0x7fffffff, &s);
        if (rc != KD_OK)
            return rc;
        for (int j = 0; j < i; j++)
            if (seeds[j] == (uint64_t)s)
                return cfg_err(c, v->kid[i], q, "seed %d is listed twice", s);
        seeds[i] = (uint64_t)s;
    }
    *nseeds = v->n;
    return KD_OK;
}
