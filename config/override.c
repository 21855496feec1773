/* --set overrides: "a.b.c=value" edits the node tree before the schema walk,
 * so an override is validated exactly like the file (and its errors quote it).
 * Path steps are keys or list indexes: teacher.layers.0.units or
 * teacher.layers[0].units.  The value is a plain scalar taken verbatim, or,
 * when it starts with [ { " or ', a YAML flow value ("data.shape=[3,32,32]"). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MAX_STEPS 16

typedef struct {
    const char *key; /* NULL for an index */
    size_t klen;
    long index;
} step;

static int all_digits(const char *s, size_t n)
{
    if (n == 0 || n > 6)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* Splits s[0..len) into steps; 0 or -1 when malformed. */
static int split_path(const char *s, size_t len, step *st, int *n)
{
    size_t i = 0;
    *n = 0;
    while (i < len) {
        if (*n == MAX_STEPS)
            return -1;
        step *t = &st[(*n)++];
        if (s[i] == '[') {
            size_t j = ++i;
            while (j < len && s[j] != ']')
                j++;
            if (j == len || !all_digits(s + i, j - i) || *n == 1)
                return -1;
            t->key = NULL;
            t->index = strtol(s + i, NULL, 10);
            i = j + 1;
        } else {
            size_t j = i;
            while (j < len && s[j] != '.' && s[j] != '[')
                j++;
            if (j == i)
                return -1;
            t->key = all_digits(s + i, j - i) && *n > 1 ? NULL : s + i;
            t->klen = j - i;
            t->index = t->key ? -1 : strtol(s + i, NULL, 10);
            i = j;
        }
        if (i < len && s[i] == '.' && ++i == len)
            return -1; /* trailing dot */
    }
    return *n > 0 ? 0 : -1;
}

/* Valid UTF-8 (shortest forms, no surrogates) without control characters
 * (C0, DEL, C1 with NEL, U+2028, U+2029):
 * argv never passed through libyaml's checks. */
static int text_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned cp = *p, extra = 0;
        if (cp < 0x20 || cp == 0x7F)
            return 0;
        if (cp >= 0xF0 && cp < 0xF5)
            extra = 3, cp &= 0x07;
        else if (cp >= 0xE0 && cp < 0xF0)
            extra = 2, cp &= 0x0F;
        else if (cp >= 0xC2 && cp < 0xE0)
            extra = 1, cp &= 0x1F;
        else if (cp >= 0x80)
            return 0;
        p++;
        for (unsigned k = 0; k < extra; k++, p++) {
            if ((*p & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (*p & 0x3F);
        }
        if ((extra == 2 && (cp < 0x800 || (cp >= 0xD800 && cp < 0xE000))) ||
            (extra == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        if ((cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029)
            return 0; /* C1 controls (NEL, CSI) and the Unicode line breaks */
    }
    return 1;
}

static int make_value(cfg_ctx *c, int i, const char *v, cfg_node **out)
{
    if (strchr("[{\"'", v[0]) && v[0])
        return cfg_parse(c, v, strlen(v), i, out);
    size_t len = strlen(v);
    if (len > CFG_MAX_SCALAR)
        return cfg_err_src(c, i, 0, 0, "value longer than %d bytes", CFG_MAX_SCALAR);
    cfg_node *n = cfg_node_new(c, CFG_SCALAR, 0, 0, i);
    if (!n)
        return c->e->code;
    int rc = cfg_node_set(c, n, v, len);
    if (rc != KD_OK) {
        cfg_node_free(n);
        return rc;
    }
    *out = n;
    return KD_OK;
}

static void show_step(char *buf, size_t n, const step *t)
{
    size_t l = strlen(buf);
    if (t->key)
        snprintf(buf + l, n - l, "%s%.*s", l ? "." : "", (int)(t->klen > 64 ? 64 : t->klen),
                 t->key);
    else
        snprintf(buf + l, n - l, "[%ld]", t->index);
}

/* Error for a step that does not fit the node it meets. */
static int step_error(cfg_ctx *c, int i, const cfg_node *at, const step *t, const char *shown)
{
    if (t->key && at->kind == CFG_MAP) {
        const char *keys[64];
        int nk = 0;
        for (int k = 0; k + 1 < at->n && nk < 64; k += 2)
            keys[nk++] = at->kid[k]->s;
        char word[65];
        snprintf(word, sizeof word, "%.*s", (int)(t->klen > 64 ? 64 : t->klen), t->key);
        const char *s = cfg_suggest(word, keys, nk);
        if (s)
            return cfg_err_src(c, i, 0, 0, "%s: no such key (did you mean \"%s\"?)", shown, s);
        return cfg_err_src(c, i, 0, 0, "%s: no such key", shown);
    }
    if (!t->key && at->kind == CFG_SEQ)
        return cfg_err_src(c, i, 0, 0, "%s: index out of range (the list has %d items)", shown,
                           at->n);
    return cfg_err_src(c, i, 0, 0, "%s: %s", shown,
                       at->kind == CFG_SEQ   ? "is inside a list: use an index"
                       : at->kind == CFG_MAP ? "is inside a mapping: use a key"
                                             : "is inside a scalar value");
}

/* The slot in parent that step t names, or NULL (map: the value slot). */
static cfg_node **find_slot(cfg_node *parent, const step *t)
{
    if (parent->kind == CFG_MAP && t->key) {
        for (int k = 0; k + 1 < parent->n; k += 2)
            if (strlen(parent->kid[k]->s) == t->klen && !memcmp(parent->kid[k]->s, t->key, t->klen))
                return &parent->kid[k + 1];
        return NULL;
    }
    if (parent->kind == CFG_SEQ && !t->key && t->index < parent->n)
        return &parent->kid[t->index];
    return NULL;
}

/* Adds key t with value v to map (takes ownership of v, even on failure). */
static int add_key(cfg_ctx *c, cfg_node *map, const step *t, cfg_node *v, int i)
{
    cfg_node *k = cfg_node_new(c, CFG_SCALAR, 0, 0, i);
    int rc = k ? cfg_node_set(c, k, t->key, t->klen) : c->e->code;
    if (rc == KD_OK && (rc = cfg_node_push(c, map, k)) == KD_OK) {
        k = NULL;
        if ((rc = cfg_node_push(c, map, v)) == KD_OK)
            return KD_OK;
        /* keep the mapping's pairs whole */
        cfg_node_free(map->kid[--map->n]);
    }
    cfg_node_free(k);
    cfg_node_free(v);
    return rc;
}

int cfg_override(cfg_ctx *c, cfg_node *root, int i)
{
    const char *o = c->ovr[i], *eq = strchr(o, '=');
    step st[MAX_STEPS];
    int n;
    if (!text_ok(o))
        return cfg_err_src(c, i, 0, 0, "not valid UTF-8 text (or has control characters)");
    if (!eq || split_path(o, (size_t)(eq - o), st, &n) != 0)
        return cfg_err_src(c, i, 0, 0, "expected KEY=VALUE with KEY like teacher.train.epochs");
    char shown[256] = "";
    cfg_node *cur = root;
    for (int k = 0; k + 1 < n; k++) {
        show_step(shown, sizeof shown, &st[k]);
        cfg_node **slot = find_slot(cur, &st[k]);
        if (!slot && cur->kind == CFG_MAP && st[k].key && st[k + 1].key) {
            /* a section the file lacks ("report.plots=false" without a
             * report:) is created empty; the schema walk then checks its
             * name and keys like the file's own */
            cfg_node *m = cfg_node_new(c, CFG_MAP, 0, 0, i);
            int rc = m ? add_key(c, cur, &st[k], m, i) : c->e->code;
            if (rc != KD_OK)
                return rc;
            slot = find_slot(cur, &st[k]);
        }
        if (!slot)
            return step_error(c, i, cur, &st[k], shown);
        cur = *slot;
    }
    show_step(shown, sizeof shown, &st[n - 1]);
    cfg_node **slot = find_slot(cur, &st[n - 1]);
    if (!slot && !(cur->kind == CFG_MAP && st[n - 1].key))
        return step_error(c, i, cur, &st[n - 1], shown);
    cfg_node *v = NULL;
    int rc = make_value(c, i, eq + 1, &v);
    if (rc != KD_OK)
        return rc;
    if (!slot)
        return add_key(c, cur, &st[n - 1], v, i);
    cfg_node_free(*slot);
    *slot = v;
    return KD_OK;
}
