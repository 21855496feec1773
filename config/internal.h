/* config internals: a small YAML node tree built from libyaml events, the
 * error helpers that name keys by dotted path, and typed reads with ranges.
 * Never included from outside config/. */
#ifndef KD_CONFIG_INTERNAL_H
#define KD_CONFIG_INTERNAL_H

#include <stddef.h>

#include "config.h"

/* Limits that keep hostile input cheap to refuse. */
#define CFG_MAX_INPUT (1u << 20)  /* bytes of YAML */
#define CFG_MAX_DEPTH 32          /* nested collections */
#define CFG_MAX_SCALAR 4096       /* bytes in one scalar */
#define CFG_MAX_NODES 100000      /* nodes in the tree, overrides included */
#define CFG_MAX_PARAMS (1u << 26) /* trainable parameters in one model */

/* ---- the node tree (tree.c) ----------------------------------------------- */
typedef enum { CFG_MAP, CFG_SEQ, CFG_SCALAR } cfg_kind;

typedef struct cfg_node cfg_node;
struct cfg_node {
    cfg_kind kind;
    int line, col; /* 1-based, of the node's first character */
    int src;       /* -1: the file; i >= 0: overrides[i] */
    int plain;     /* scalar: written without quotes (so it may be a number or bool) */
    char *s;       /* scalar: the value, NUL-terminated (contains no NUL) */
    size_t len;
    /* sequence: n items; mapping: n = 2 * pairs, kid[2i] the key (a scalar),
     * kid[2i+1] its value */
    cfg_node **kid;
    int n, cap;
};

/* Everything one load needs; no global state. */
typedef struct {
    const char *file;       /* name used in messages */
    const char *const *ovr; /* the overrides, for messages */
    const cfg_data_facts *facts; /* what the data files say; NULL: not read */
    long nnodes;            /* nodes allocated so far */
    kd_err *e;
} cfg_ctx;

/* Parses text into a new tree (*root; free with cfg_node_free).  src < 0: a
 * whole file whose one document must be a mapping; src >= 0: the value of
 * overrides[src] (any node).  Returns 0, KD_ECONFIG or KD_ENOMEM. */
int cfg_parse(cfg_ctx *c, const char *text, size_t len, int src, cfg_node **root);
/* A new node with no value; NULL (and c->e set) when out of memory or over
 * CFG_MAX_NODES. */
cfg_node *cfg_node_new(cfg_ctx *c, cfg_kind k, int line, int col, int src);
/* Appends kid to a sequence or mapping; on failure kid is NOT freed. */
int cfg_node_push(cfg_ctx *c, cfg_node *parent, cfg_node *kid);
/* Sets a scalar's value to a copy of s[0..len). */
int cfg_node_set(cfg_ctx *c, cfg_node *n, const char *s, size_t len);
void cfg_node_free(cfg_node *n); /* accepts NULL */
/* Index i of the first pair of map whose key is key (value kid[2i+1]), or -1. */
int cfg_map_find(const cfg_node *map, const char *key);
/* The value of key in map, or NULL. */
const cfg_node *cfg_map_get(const cfg_node *map, const char *key);

/* ---- errors and typed reads (value.c) ------------------------------------- */
/* Reports "PATH: message" at node at (its file position, or "--set" and the
 * quoted override when the node came from one).  Returns KD_ECONFIG. */
int cfg_err(cfg_ctx *c, const cfg_node *at, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Same with an explicit source and position. */
int cfg_err_src(cfg_ctx *c, int src, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* An error about map's key (path names map): at the key's value when it is
 * given, else at map itself, saying the value used is the default (a
 * defaulted key has no node of its own).  Returns KD_ECONFIG. */
int cfg_err_key(cfg_ctx *c, const cfg_node *map, const char *key, const char *path, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));
int cfg_nomem(cfg_ctx *c);
/* Writes "path.key" (or "key" when path is "") into buf. */
const char *cfg_path(char *buf, size_t n, const char *path, const char *key);
/* s is non-empty and only [A-Za-z0-9_.-] (names of runs and layers). */
int cfg_name_ok(const char *s);
/* Closest of cands[0..n) to word within a small edit distance, or NULL. */
const char *cfg_suggest(const char *word, const char *const *cands, int n);

/* Checks that every key of map is listed in keys
 * (NULL-terminated) and appears once.  what ("layer type conv2d") is named in
 * the unknown-key message when not NULL. */
int cfg_check_keys(cfg_ctx *c, const cfg_node *map, const char *path, const char *const *keys,
                   const char *what);
/* A required key is absent from map: reported at the mapping. */
int cfg_missing(cfg_ctx *c, const cfg_node *map, const char *path, const char *key);

/* A numeric interval; open ends exclude the bound. */
typedef struct {
    double lo, hi;
    int lo_open, hi_open;
} cfg_range;

/* Typed reads of map[key] (path names map).  When the key is absent: an
 * error if req, else *out keeps its value (the default).  Each returns 0 or
 * KD_ECONFIG. */
int cfg_int(cfg_ctx *c, const cfg_node *map, const char *path, const char *key, int req,
            long long lo, long long hi, int *out);
int cfg_u64(cfg_ctx *c, const cfg_node *map, const char *path, const char *key, uint64_t *out);
int cfg_float(cfg_ctx *c, const cfg_node *map, const char *path, const char *key, int req,
              cfg_range r, float *out);
int cfg_bool(cfg_ctx *c, const cfg_node *map, const char *path, const char *key, int *out);
/* A string of at most cap-1 bytes. */
int cfg_str(cfg_ctx *c, const cfg_node *map, const char *path, const char *key, int req, char *out,
            size_t cap);
/* One of names[0..n) (the index into *out). */
int cfg_enum(cfg_ctx *c, const cfg_node *map, const char *path, const char *key, int req,
             const char *const *names, int n, int *out);
/* The value of key as a mapping (NULL when absent and not req: *out = NULL). */
int cfg_section(cfg_ctx *c, const cfg_node *map, const char *path, const char *key, int req,
                const cfg_node **out);
/* Position of key's key node in map ({0,0} when absent). */
cfg_pos cfg_key_pos(const cfg_node *map, const char *key);
/* The value as a float in r (sequence items; p names it). */
int cfg_float_node(cfg_ctx *c, const cfg_node *v, const char *p, cfg_range r, float *out);
/* The value as an integer in [lo, hi] (used for sequence items). */
int cfg_int_node(cfg_ctx *c, const cfg_node *v, const char *path, long long lo, long long hi,
                 int *out);

/* `seeds: [1, 2, 3]` in map: 1 to CFG_MAX_SEEDS distinct integers in
 * [0, 2^31) into seeds[0..*nseeds); absent: just dflt. */
int cfg_seeds(cfg_ctx *c, const cfg_node *map, const char *path, uint64_t dflt,
              uint64_t *seeds, int *nseeds);

/* ---- the schema (schema.c, layers.c) -------------------------------------- */
/* Training samples after the validation split: from the data's facts, else
 * computed for fashion-mnist (60,000 images); 0 when unknown. */
long cfg_train_samples(const cfg_ctx *c, const cfg_data *d);
/* The data's class count (facts, or 10 for fashion-mnist); 0 when unknown. */
int cfg_data_classes(const cfg_ctx *c, const cfg_data *d);
int cfg_walk(cfg_ctx *c, const cfg_node *root, exp_spec *s);
/* teacher/student `layers:` list into m (needs the data shape). */
int cfg_walk_layers(cfg_ctx *c, const cfg_node *map, const char *path, const cfg_data *d,
                    cfg_model *m);
/* A model section's `layers:` and `train:` (map is the section's mapping). */
int cfg_walk_model(cfg_ctx *c, const cfg_node *map, const char *path, const cfg_data *d,
                   cfg_model *out);
/* A student's distillation modes (distill.c): from the `distill` mapping dm
 * (NULL: one kd mode with its defaults) into st->modes. */
int cfg_walk_distill_modes(cfg_ctx *c, const cfg_node *dm, const char *path, cfg_student *st);
/* The distillation method names, "kd", "dkd", "dist", by cfg_method. */
extern const char *const cfg_distill_methods[3];
/* The optional `students:` list (students.c); needs s->data and s->teacher. */
int cfg_walk_students(cfg_ctx *c, const cfg_node *root, exp_spec *s);
/* The optional `compress:` list and `sensitivity:` (compress.c); needs the
 * teacher and students walked. */
int cfg_walk_compress(cfg_ctx *c, const cfg_node *root, exp_spec *s);
/* The optional `serve:` section (serve.c); needs the students and variants
 * walked (model names are checked against them).  Its YAML (dump). */
int cfg_walk_serve(cfg_ctx *c, const cfg_node *root, exp_spec *s);
void cfg_dump_serve(const cfg_serve *s, FILE *f);
/* The `report:` section (report.c), ladders included; needs the students
 * and variants walked (row names are checked against them).  Its YAML. */
int cfg_walk_report(cfg_ctx *c, const cfg_node *root, exp_spec *s);
void cfg_dump_report(const cfg_report *r, FILE *f);
/* The names results.json gives the run's rows, in the order rows are
 * written: teacher, STUDENT/scratch and STUDENT/MODE per student, then each
 * compress variant (sweeps expanded, e.g. "prune/s0.9").  Returns how many
 * were written to out (at most cap; CFG_MAX_ROWS holds them all). */
#define CFG_MAX_ROWS (1 + CFG_MAX_STUDENTS * (1 + CFG_MAX_MODES) + CFG_MAX_VARIANTS)
int cfg_row_names(const exp_spec *s, char (*out)[CFG_ROW_NAME], int cap);
/* A prune or quantize pass against its source's layers (compress_layers.c):
 * the pass applies, each override matches a layer it can change, and
 * structured pruning is not asked to shrink an output layer. */
int cfg_check_prune_layers(cfg_ctx *c, const cfg_node *pm, const char *path, const cfg_data *d,
                           const cfg_model *src, const cfg_pass *ps);
int cfg_check_quant_layers(cfg_ctx *c, const cfg_node *pm, const char *path, const cfg_data *d,
                           const cfg_model *src, const cfg_pass *ps);
/* Pass types and pruning methods by their YAML names (compress.c). */
extern const char *const cfg_pass_names[5];
extern const char *const cfg_method_names[3];
/* The `compress:` pipelines (one item per variant) and `sensitivity:` as YAML
 * (dump_compress.c). */
void cfg_dump_compress(const exp_spec *s, FILE *f);
/* YAML output helpers (dump.c): a float that reads back exactly; a
 * double-quoted string that survives any content. */
void cfg_put_float(FILE *f, float v);
void cfg_put_str(FILE *f, const char *s);
/* Layer kinds and inits by their YAML names. */
extern const char *const cfg_init_names[3];

/* ---- overrides (override.c) ---------------------------------------------- */
/* Applies overrides[i] ("a.b.c=value") to the tree. */
int cfg_override(cfg_ctx *c, cfg_node *root, int i);

#endif
