/* A small, strict, bounded JSON reader (RFC 8259): the whole text becomes a
 * flat array of nodes; decoded strings live in one arena no larger than the
 * input.  Depth, node count and input size are bounded, so hostile input can
 * only produce an error, never a crash or unbounded allocation. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reports.h"

#define JSON_MAX_DEPTH 64

typedef struct {
    const char *s;
    size_t len, pos;
    const char *path;
    rep_json *j;
    size_t arena_used;
    kd_err *e;
} jparser;

static int jfail(jparser *p, const char *what)
{
    int line = 1, col = 1;
    for (size_t i = 0; i < p->pos && i < p->len; i++) {
        if (p->s[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    return kd_err_at(p->e, KD_EFORMAT, p->path ? p->path : "", line, col, "JSON: %s", what);
}

static void skip_ws(jparser *p)
{
    while (p->pos < p->len && strchr(" \t\r\n", p->s[p->pos]) && p->s[p->pos])
        p->pos++;
}

static int new_node(jparser *p, int type, int parent)
{
    rep_json *j = p->j;
    if (j->n == j->cap) {
        if (j->cap >= REP_JSON_MAX_NODES)
            return -1;
        int cap = j->cap ? j->cap * 2 : 64;
        rep_jnode *nn = kd_realloc(j->nodes, (size_t)cap * sizeof *nn);
        if (!nn)
            return -2;
        j->nodes = nn;
        j->cap = cap;
    }
    rep_jnode *x = &j->nodes[j->n];
    memset(x, 0, sizeof *x);
    x->type = type;
    x->first = x->next = x->last = -1;
    x->parent = parent;
    if (parent >= 0) {
        rep_jnode *par = &j->nodes[parent];
        if (par->last >= 0)
            j->nodes[par->last].next = j->n;
        else
            par->first = j->n;
        par->last = j->n;
        par->count++;
    }
    return j->n++;
}

static int put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int hex4(jparser *p, unsigned *out)
{
    unsigned v = 0;
    if (p->len - p->pos < 4)
        return jfail(p, "truncated \\u escape");
    for (int i = 0; i < 4; i++) {
        char c = p->s[p->pos++];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return jfail(p, "bad hex digit in \\u escape");
        v = v * 16 + (unsigned)d;
    }
    *out = v;
    return KD_OK;
}

/* \uXXXX, with surrogate pairs; writes UTF-8 at o, returns bytes or < 0 */
static int unicode_escape(jparser *p, char *o)
{
    unsigned cp, lo;
    if (hex4(p, &cp) != KD_OK)
        return -1;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return jfail(p, "lone low surrogate"), -1;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
            return jfail(p, "high surrogate without its pair"), -1;
        p->pos += 2;
        if (hex4(p, &lo) != KD_OK)
            return -1;
        if (lo < 0xDC00 || lo > 0xDFFF)
            return jfail(p, "bad surrogate pair"), -1;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    if (cp == 0)
        return jfail(p, "\\u0000 is not allowed"), -1;
    return put_utf8(o, cp);
}

/* Decodes the string at p->pos (after the opening quote) into the arena. */
static int parse_string(jparser *p, char **out)
{
    char *o = p->j->arena + p->arena_used, *start = o;
    for (;;) {
        if (p->pos >= p->len)
            return jfail(p, "unterminated string");
        unsigned char c = (unsigned char)p->s[p->pos++];
        if (c == '"')
            break;
        if (c < 0x20)
            return jfail(p, "control character in string");
        if (c != '\\') {
            *o++ = (char)c;
            continue;
        }
        if (p->pos >= p->len)
            return jfail(p, "unterminated string");
        char esc = p->s[p->pos++];
        const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
        const char *k = esc ? strchr(from, esc) : NULL;
        if (k) {
            *o++ = to[k - from];
        } else if (esc == 'u') {
            int w = unicode_escape(p, o);
            if (w < 0)
                return KD_EFORMAT;
            o += w;
        } else {
            return jfail(p, "bad escape in string");
        }
    }
    *o++ = 0;
    p->arena_used += (size_t)(o - start);
    *out = start;
    return KD_OK;
}

static int parse_number(jparser *p, double *out)
{
    size_t i = p->pos;
    const char *s = p->s;
    if (i < p->len && s[i] == '-')
        i++;
    if (i >= p->len || !(s[i] >= '0' && s[i] <= '9'))
        return jfail(p, "bad number");
    if (s[i] == '0' && i + 1 < p->len && s[i + 1] >= '0' && s[i + 1] <= '9')
        return jfail(p, "leading zero in number");
    while (i < p->len && s[i] >= '0' && s[i] <= '9')
        i++;
    if (i < p->len && s[i] == '.') {
        if (++i >= p->len || !(s[i] >= '0' && s[i] <= '9'))
            return jfail(p, "bad fraction in number");
        while (i < p->len && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < p->len && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= p->len || !(s[i] >= '0' && s[i] <= '9'))
            return jfail(p, "bad exponent in number");
        while (i < p->len && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    char tmp[64];
    if (i - p->pos >= sizeof tmp)
        return jfail(p, "number too long");
    memcpy(tmp, s + p->pos, i - p->pos);
    tmp[i - p->pos] = 0;
    errno = 0;
    *out = strtod(tmp, NULL);
    if (!isfinite(*out))
        return jfail(p, "number out of range");
    p->pos = i;
    return KD_OK;
}

static int parse_value(jparser *p, int parent, int depth, int *idx);

static int add_node(jparser *p, int type, int parent, int *idx)
{
    *idx = new_node(p, type, parent);
    if (*idx == -1)
        return jfail(p, "too many values");
    if (*idx == -2)
        return kd_err_set(p->e, KD_ENOMEM, "out of memory");
    return KD_OK;
}

/* '[' or '{' already consumed; node idx created */
static int parse_container(jparser *p, int idx, int is_obj, int depth)
{
    char close = is_obj ? '}' : ']';
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        return KD_OK;
    }
    for (;;) {
        char *key = NULL;
        int child, rc;
        skip_ws(p);
        if (is_obj) {
            if (p->pos >= p->len || p->s[p->pos] != '"')
                return jfail(p, p->pos >= p->len ? "truncated object" : "expected a key string");
            p->pos++;
            if ((rc = parse_string(p, &key)) != KD_OK)
                return rc;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':')
                return jfail(p, "expected ':' after key");
            p->pos++;
        }
        if ((rc = parse_value(p, idx, depth + 1, &child)) != KD_OK)
            return rc;
        p->j->nodes[child].key = key;
        skip_ws(p);
        if (p->pos >= p->len)
            return jfail(p, is_obj ? "truncated object" : "truncated array");
        char c = p->s[p->pos++];
        if (c == close)
            return KD_OK;
        if (c != ',')
            return jfail(p, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int parse_literal(jparser *p, const char *word)
{
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return jfail(p, "unexpected character");
    p->pos += n;
    return KD_OK;
}

static int parse_value(jparser *p, int parent, int depth, int *idx)
{
    int rc;
    if (depth > JSON_MAX_DEPTH)
        return jfail(p, "nested too deeply");
    skip_ws(p);
    if (p->pos >= p->len)
        return jfail(p, "unexpected end of input");
    char c = p->s[p->pos];
    if (c == '{' || c == '[') {
        p->pos++;
        if ((rc = add_node(p, c == '{' ? REP_JOBJ : REP_JARR, parent, idx)) != KD_OK)
            return rc;
        return parse_container(p, *idx, c == '{', depth);
    }
    if (c == '"') {
        p->pos++;
        if ((rc = add_node(p, REP_JSTR, parent, idx)) != KD_OK)
            return rc;
        char *s;
        if ((rc = parse_string(p, &s)) != KD_OK)
            return rc;
        p->j->nodes[*idx].str = s;
        return KD_OK;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        double v = 0;
        if ((rc = parse_number(p, &v)) != KD_OK || (rc = add_node(p, REP_JNUM, parent, idx)))
            return rc;
        p->j->nodes[*idx].num = v;
        return KD_OK;
    }
    int type = c == 'n' ? REP_JNULL : REP_JBOOL;
    const char *word = c == 'n' ? "null" : c == 't' ? "true" : c == 'f' ? "false" : NULL;
    if (!word)
        return jfail(p, "unexpected character");
    if ((rc = parse_literal(p, word)) != KD_OK || (rc = add_node(p, type, parent, idx)))
        return rc;
    p->j->nodes[*idx].num = c == 't';
    return KD_OK;
}

int rep_json_parse(const char *text, size_t len, const char *path, rep_json *out, kd_err *e)
{
    memset(out, 0, sizeof *out);
    if (len > REP_JSON_MAX_BYTES)
        return kd_err_at(e, KD_EFORMAT, path ? path : "", 0, 0, "JSON: larger than %d bytes",
                         REP_JSON_MAX_BYTES);
    if (memchr(text, 0, len))
        return kd_err_at(e, KD_EFORMAT, path ? path : "", 0, 0, "JSON: NUL byte in text");
    out->arena = kd_malloc(len + 1);
    if (!out->arena)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    jparser p = {.s = text, .len = len, .path = path, .j = out, .e = e};
    int root, rc = parse_value(&p, -1, 0, &root);
    if (rc == KD_OK) {
        skip_ws(&p);
        if (p.pos != len)
            rc = jfail(&p, "text after the value");
    }
    if (rc != KD_OK)
        rep_json_free(out);
    return rc;
}

void rep_json_free(rep_json *j)
{
    if (!j)
        return;
    kd_free(j->nodes);
    kd_free(j->arena);
    memset(j, 0, sizeof *j);
}

int rep_json_get(const rep_json *j, int obj, const char *key)
{
    if (obj < 0 || obj >= j->n || j->nodes[obj].type != REP_JOBJ)
        return -1;
    for (int c = j->nodes[obj].first; c >= 0; c = j->nodes[c].next)
        if (strcmp(j->nodes[c].key, key) == 0)
            return c;
    return -1;
}

void rep_json_num(kd_buf *b, double v)
{
    if (isfinite(v))
        rep_bprintf(b, "%.6g", v);
    else
        rep_bprintf(b, "null");
}
