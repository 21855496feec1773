/* YAML text -> a small node tree, through libyaml's event API.  Only plain
 * data survives: anchors, aliases and tags are refused, and every limit in
 * internal.h is checked as events arrive, so hostile input costs little. */
#include <string.h>
#include <yaml.h>

#include "internal.h"

/* ---- nodes ------------------------------------------------------------------ */
cfg_node *cfg_node_new(cfg_ctx *c, cfg_kind k, int line, int col, int src)
{
    if (c->nnodes >= CFG_MAX_NODES) {
        cfg_err_src(c, src, line, col, "more than %d YAML nodes; not a config file", CFG_MAX_NODES);
        return NULL;
    }
    cfg_node *n = kd_calloc(1, sizeof *n);
    if (!n) {
        cfg_nomem(c);
        return NULL;
    }
    c->nnodes++;
    n->kind = k;
    n->line = line;
    n->col = col;
    n->src = src;
    n->plain = 1;
    return n;
}

int cfg_node_push(cfg_ctx *c, cfg_node *parent, cfg_node *kid)
{
    if (parent->n == parent->cap) {
        int ncap = parent->cap ? parent->cap * 2 : 4;
        cfg_node **k = kd_realloc(parent->kid, (size_t)ncap * sizeof *k);
        if (!k)
            return cfg_nomem(c);
        parent->kid = k;
        parent->cap = ncap;
    }
    parent->kid[parent->n++] = kid;
    return KD_OK;
}

int cfg_node_set(cfg_ctx *c, cfg_node *n, const char *s, size_t len)
{
    char *p = kd_malloc(len + 1);
    if (!p)
        return cfg_nomem(c);
    memcpy(p, s, len);
    p[len] = 0;
    kd_free(n->s);
    n->s = p;
    n->len = len;
    return KD_OK;
}

/* recursion is bounded: parsing refuses depth > CFG_MAX_DEPTH, and an
 * override value can add at most that much again */
void cfg_node_free(cfg_node *n)
{
    if (!n)
        return;
    for (int i = 0; i < n->n; i++)
        cfg_node_free(n->kid[i]);
    kd_free(n->kid);
    kd_free(n->s);
    kd_free(n);
}

int cfg_map_find(const cfg_node *map, const char *key)
{
    if (!map || map->kind != CFG_MAP)
        return -1;
    for (int i = 0; i + 1 < map->n; i += 2)
        if (strcmp(map->kid[i]->s, key) == 0)
            return i / 2;
    return -1;
}

const cfg_node *cfg_map_get(const cfg_node *map, const char *key)
{
    int i = cfg_map_find(map, key);
    return i < 0 ? NULL : map->kid[2 * i + 1];
}

/* ---- parsing ------------------------------------------------------------------ */
typedef struct {
    cfg_ctx *c;
    int src;
    const char *text;
    size_t len;
    cfg_node *root;
    cfg_node *stack[CFG_MAX_DEPTH];
    int depth;
    int docs;
} builder;

static int err_at(builder *b, yaml_mark_t m, const char *fmt, const char *arg)
{
    return cfg_err_src(b->c, b->src, (int)m.line + 1, (int)m.column + 1, fmt, arg);
}

/* Line and column of a byte offset (reader errors carry only the offset). */
static void offset_pos(const char *t, size_t len, size_t off, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (t[i] == '\n') {
            ++*line;
            *col = 1;
        } else if (((unsigned char)t[i] & 0xC0) != 0x80) {
            ++*col;
        }
    }
}

static int syntax_error(builder *b, const yaml_parser_t *p)
{
    if (p->error == YAML_MEMORY_ERROR)
        return cfg_nomem(b->c);
    const char *prob = p->problem ? p->problem : "malformed YAML";
    if (p->error == YAML_READER_ERROR) {
        int line, col;
        offset_pos(b->text, b->len, p->problem_offset, &line, &col);
        if (p->problem_value >= 0)
            return cfg_err_src(b->c, b->src, line, col, "invalid input: %s (#%X)", prob,
                               (unsigned)p->problem_value);
        return cfg_err_src(b->c, b->src, line, col, "invalid input: %s", prob);
    }
    int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
    if (p->context)
        return cfg_err_src(b->c, b->src, line, col,
                           "YAML syntax error: %s (%s that starts at line %d)", prob, p->context,
                           (int)p->context_mark.line + 1);
    return cfg_err_src(b->c, b->src, line, col, "YAML syntax error: %s", prob);
}

/* Attaches a finished or opened node to the collection on top of the stack
 * (or makes it the root); on failure n is freed. */
static int attach(builder *b, cfg_node *n, yaml_mark_t m)
{
    if (b->depth == 0) {
        if (b->root) { /* cannot happen with one document, but stay safe */
            cfg_node_free(n);
            return err_at(b, m, "%s", "more than one top-level node");
        }
        if (b->src < 0 && n->kind != CFG_MAP) {
            cfg_node_free(n);
            return err_at(b, m, "%s", "the document must be a mapping of keys (like `name: x`)");
        }
        b->root = n;
        return KD_OK;
    }
    cfg_node *p = b->stack[b->depth - 1];
    if (p->kind == CFG_MAP && p->n % 2 == 0 && n->kind != CFG_SCALAR) {
        cfg_node_free(n);
        return err_at(b, m, "%s", "a mapping key must be a plain scalar, not a collection");
    }
    int rc = cfg_node_push(b->c, p, n);
    if (rc != KD_OK)
        cfg_node_free(n);
    return rc;
}

static int check_props(builder *b, yaml_mark_t m, const yaml_char_t *anchor, const yaml_char_t *tag)
{
    if (anchor)
        return err_at(b, m, "%s", "anchors and aliases are not supported");
    if (tag)
        return err_at(b, m, "tag \"%.64s\" is not supported", (const char *)tag);
    return KD_OK;
}

static int on_scalar(builder *b, const yaml_event_t *ev)
{
    yaml_mark_t m = ev->start_mark;
    int rc = check_props(b, m, ev->data.scalar.anchor, ev->data.scalar.tag);
    if (rc != KD_OK)
        return rc;
    size_t len = ev->data.scalar.length;
    const char *v = (const char *)ev->data.scalar.value;
    if (len > CFG_MAX_SCALAR)
        return cfg_err_src(b->c, b->src, (int)m.line + 1, (int)m.column + 1,
                           "scalar of %zu bytes is longer than the limit of %d", len,
                           CFG_MAX_SCALAR);
    if (memchr(v, 0, len))
        return err_at(b, m, "%s", "scalar contains a NUL byte");
    cfg_node *n = cfg_node_new(b->c, CFG_SCALAR, (int)m.line + 1, (int)m.column + 1, b->src);
    if (!n)
        return b->c->e->code;
    n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    if ((rc = cfg_node_set(b->c, n, v, len)) != KD_OK) {
        cfg_node_free(n);
        return rc;
    }
    return attach(b, n, m);
}

static int on_start(builder *b, const yaml_event_t *ev, cfg_kind k)
{
    yaml_mark_t m = ev->start_mark;
    int rc = k == CFG_MAP
                 ? check_props(b, m, ev->data.mapping_start.anchor, ev->data.mapping_start.tag)
                 : check_props(b, m, ev->data.sequence_start.anchor, ev->data.sequence_start.tag);
    if (rc != KD_OK)
        return rc;
    if (b->depth == CFG_MAX_DEPTH)
        return cfg_err_src(b->c, b->src, (int)m.line + 1, (int)m.column + 1,
                           "nesting deeper than %d levels", CFG_MAX_DEPTH);
    cfg_node *n = cfg_node_new(b->c, k, (int)m.line + 1, (int)m.column + 1, b->src);
    if (!n)
        return b->c->e->code;
    if ((rc = attach(b, n, m)) != KD_OK)
        return rc;
    b->stack[b->depth++] = n;
    return KD_OK;
}

/* One event; *done set at the end of the stream. */
static int on_event(builder *b, const yaml_event_t *ev, int *done)
{
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++b->docs > 1)
            return err_at(b, ev->start_mark, "%s",
                          "more than one YAML document; a config is one mapping");
        return KD_OK;
    case YAML_SCALAR_EVENT:
        return on_scalar(b, ev);
    case YAML_SEQUENCE_START_EVENT:
        return on_start(b, ev, CFG_SEQ);
    case YAML_MAPPING_START_EVENT:
        return on_start(b, ev, CFG_MAP);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        b->depth--;
        return KD_OK;
    case YAML_ALIAS_EVENT:
        return err_at(b, ev->start_mark, "%s", "aliases are not supported");
    case YAML_STREAM_END_EVENT:
        *done = 1;
        return KD_OK;
    default:
        return KD_OK;
    }
}

int cfg_parse(cfg_ctx *c, const char *text, size_t len, int src, cfg_node **root)
{
    *root = NULL;
    if (len > CFG_MAX_INPUT)
        return cfg_err_src(c, src, 0, 0, "input of %zu bytes is larger than the limit of %u", len,
                           CFG_MAX_INPUT);
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p))
        return cfg_nomem(c);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    yaml_parser_set_encoding(&p, YAML_UTF8_ENCODING);
    builder b = {.c = c, .src = src, .text = text, .len = len};
    int rc = KD_OK, done = 0;
    while (rc == KD_OK && !done) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            rc = syntax_error(&b, &p);
            break;
        }
        rc = on_event(&b, &ev, &done);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    if (rc == KD_OK && !b.root)
        rc = cfg_err_src(c, src, src < 0 ? 1 : 0, src < 0 ? 1 : 0, "%s",
                         src < 0 ? "empty document: expected a mapping of keys" : "empty value");
    if (rc != KD_OK) {
        cfg_node_free(b.root);
        return rc;
    }
    *root = b.root;
    return KD_OK;
}
