/* The experiment schema: walks the node tree into an exp_spec, filling every
 * default and refusing anything unknown, mistyped or out of range.  Layers
 * are in layers.c.  README.md (Config reference) lists every key; keep it in step. */
#include <string.h>

#include "../data/data.h"
#include "internal.h"

/* Ranges: closed [lo, hi], or open at one end. */
#define CLOSED(lo, hi) ((cfg_range){(lo), (hi), 0, 0})
#define LO_OPEN(lo, hi) ((cfg_range){(lo), (hi), 1, 0})
#define HI_OPEN(lo, hi) ((cfg_range){(lo), (hi), 0, 1})

#define MAX_DIM 65536
#define MAX_SAMPLE (1 << 26)

static int walk_name(cfg_ctx *c, const cfg_node *root, exp_spec *s)
{
    int rc = cfg_str(c, root, "", "name", 1, s->name, sizeof s->name);
    if (rc != KD_OK)
        return rc;
    const cfg_node *v = cfg_map_get(root, "name");
    if (!cfg_name_ok(s->name))
        return cfg_err(c, v, "name", "\"%.64s\" may use only letters, digits, '_', '.', '-'",
                       s->name);
    if (!strcmp(s->name, ".") || !strcmp(s->name, ".."))
        return cfg_err(c, v, "name", "\"%s\" cannot name a run folder", s->name);
    return KD_OK;
}

/* ---- data ---------------------------------------------------------------------- */
static const char *const dataset_names[] = {"fashion-mnist", "idx", "csv"};

static const char *const data_keys[3][10] = {
    [CFG_DATA_FASHION] = {"dataset", "dir", "shape", "val_fraction", "train_subset", "test_subset",
                          NULL},
    [CFG_DATA_IDX] = {"dataset", "train_images", "train_labels", "test_images", "test_labels",
                      "shape", "val_fraction", "train_subset", "test_subset", NULL},
    [CFG_DATA_CSV] = {"dataset", "train_csv", "test_csv", "shape", "val_fraction", "train_subset",
                      "test_subset", NULL},
};

/* A non-empty path. */
static int walk_path(cfg_ctx *c, const cfg_node *m, const char *key, int req, char *out)
{
    int rc = cfg_str(c, m, "data", key, req, out, CFG_PATH_MAX);
    if (rc == KD_OK && cfg_map_get(m, key) && !out[0]) {
        return cfg_err_key(c, m, key, "data", "must not be empty");
    }
    return rc;
}

/* `shape: [c, h, w]` */
static int walk_shape(cfg_ctx *c, const cfg_node *m, int req, nn_shape *out)
{
    const cfg_node *v = cfg_map_get(m, "shape");
    if (!v)
        return req ? cfg_missing(c, m, "data", "shape") : KD_OK;
    if (v->kind != CFG_SEQ || v->n != 3)
        return cfg_err(c, v, "data.shape", "expected a list of three integers [c, h, w]");
    int d[3];
    for (int i = 0; i < 3; i++) {
        char p[32];
        snprintf(p, sizeof p, "data.shape[%d]", i);
        int rc = cfg_int_node(c, v->kid[i], p, 1, MAX_DIM, &d[i]);
        if (rc != KD_OK)
            return rc;
    }
    if ((long long)d[0] * d[1] * d[2] > MAX_SAMPLE)
        return cfg_err(c, v, "data.shape", "more than %d values per sample", MAX_SAMPLE);
    *out = (nn_shape){d[0], d[1], d[2]};
    return KD_OK;
}

static int walk_data_files(cfg_ctx *c, const cfg_node *m, cfg_data *d)
{
    int rc = KD_OK;
    if (d->kind == CFG_DATA_FASHION) {
        rc = walk_path(c, m, "dir", 0, d->dir);
    } else if (d->kind == CFG_DATA_IDX) {
        if ((rc = walk_path(c, m, "train_images", 1, d->train_images)) == KD_OK &&
            (rc = walk_path(c, m, "train_labels", 1, d->train_labels)) == KD_OK &&
            (rc = walk_path(c, m, "test_images", 1, d->test_images)) == KD_OK)
            rc = walk_path(c, m, "test_labels", 1, d->test_labels);
    } else {
        if ((rc = walk_path(c, m, "train_csv", 1, d->train_csv)) == KD_OK)
            rc = walk_path(c, m, "test_csv", 1, d->test_csv);
    }
    return rc;
}

long cfg_train_samples(const cfg_ctx *c, const cfg_data *d)
{
    if (c->facts && c->facts->ntrain > 0)
        return c->facts->ntrain;
    if (c->facts || d->kind != CFG_DATA_FASHION)
        return 0;
    long n = d->train_subset > 0 && d->train_subset < 60000 ? d->train_subset : 60000;
    return n - (long)((double)n * d->val_fraction + 0.5); /* as data_split rounds */
}

int cfg_data_classes(const cfg_ctx *c, const cfg_data *d)
{
    if (c->facts && c->facts->nclasses > 0)
        return c->facts->nclasses;
    return !c->facts && d->kind == CFG_DATA_FASHION ? 10 : 0;
}

/* What the data files say against the data section (m NULL: no section). */
static int check_data_facts(cfg_ctx *c, const cfg_node *root, const cfg_node *m, const cfg_data *d)
{
    const cfg_data_facts *f = c->facts;
    const size_t want = nn_shape_size(d->shape);
    const cfg_node *at = m ? m : root;
    const char *path = m ? "data" : "";
    if (!f)
        return KD_OK;
    for (int t = 0; t < 2; t++) {
        size_t got = t ? f->test_values : f->train_values;
        if (got && got != want)
            return cfg_err_key(c, at, m ? "shape" : "data", path,
                               "the %s data has %zu values per sample; data.shape [%d, %d, %d] "
                               "has %zu",
                               t ? "test" : "training", got, d->shape.c, d->shape.h, d->shape.w,
                               want);
    }
    if (f->train_values && f->ntrain < 1) /* read, and nothing left to train on */
        return cfg_err_key(c, at, m ? "val_fraction" : "data", path,
                           "leaves no training samples (the validation split takes them all)");
    return KD_OK;
}

static int walk_data(cfg_ctx *c, const cfg_node *root, cfg_data *d)
{
    d->kind = CFG_DATA_FASHION;
    snprintf(d->dir, sizeof d->dir, "%s", DATA_FASHION_DIR);
    d->shape = (nn_shape){1, 28, 28};
    d->val_fraction = 0.1f;
    const cfg_node *m;
    int rc = cfg_section(c, root, "", "data", 0, &m);
    if (rc != KD_OK || !m)
        return rc != KD_OK ? rc : check_data_facts(c, root, NULL, d);
    d->pos = cfg_key_pos(root, "data");
    int kind = 0;
    if ((rc = cfg_enum(c, m, "data", "dataset", 0, dataset_names, 3, &kind)) != KD_OK)
        return rc;
    d->kind = (cfg_data_kind)kind;
    if (d->kind != CFG_DATA_FASHION)
        d->dir[0] = 0;
    char what[64];
    snprintf(what, sizeof what, "dataset %s", dataset_names[kind]);
    if ((rc = cfg_check_keys(c, m, "data", data_keys[kind], what)) != KD_OK ||
        (rc = walk_data_files(c, m, d)) != KD_OK ||
        (rc = walk_shape(c, m, d->kind != CFG_DATA_FASHION, &d->shape)) != KD_OK)
        return rc;
    const cfg_node *sv = cfg_map_get(m, "shape");
    if (sv && sv->src < 0)
        d->shape_pos = (cfg_pos){sv->line, sv->col};
    if (d->kind == CFG_DATA_FASHION && nn_shape_size(d->shape) != 784)
        return cfg_err_key(c, m, "shape", "data",
                           "fashion-mnist images have 784 pixels; [%d, %d, %d] has %zu", d->shape.c,
                           d->shape.h, d->shape.w, nn_shape_size(d->shape));
    if ((rc = cfg_float(c, m, "data", "val_fraction", 0, CLOSED(0, 0.9), &d->val_fraction)) ||
        (rc = cfg_int(c, m, "data", "train_subset", 0, 0, 0x7fffffff, &d->train_subset)))
        return rc;
    if ((rc = cfg_int(c, m, "data", "test_subset", 0, 0, 0x7fffffff, &d->test_subset)))
        return rc;
    return check_data_facts(c, root, m, d);
}

/* ---- train ---------------------------------------------------------------------- */
static const char *const opt_names[] = {"sgd", "adamw"};
static const char *const opt_keys[2][8] = {
    [NN_OPT_SGD] = {"kind", "lr", "momentum", "nesterov", "weight_decay", NULL},
    [NN_OPT_ADAMW] = {"kind", "lr", "weight_decay", "beta1", "beta2", "eps", NULL},
};

static int walk_opt(cfg_ctx *c, const cfg_node *train, const char *tpath, nn_opt_spec *o)
{
    char path[96];
    cfg_path(path, sizeof path, tpath, "optimizer");
    const cfg_node *m;
    int rc = cfg_section(c, train, tpath, "optimizer", 1, &m), kind = NN_OPT_SGD;
    if (rc != KD_OK || (rc = cfg_enum(c, m, path, "kind", 0, opt_names, 2, &kind)) != KD_OK)
        return rc;
    char what[32];
    snprintf(what, sizeof what, "optimizer kind %s", opt_names[kind]);
    if ((rc = cfg_check_keys(c, m, path, opt_keys[kind], what)) != KD_OK)
        return rc;
    memset(o, 0, sizeof *o);
    o->kind = (nn_opt_kind)kind;
    if ((rc = cfg_float(c, m, path, "lr", 1, LO_OPEN(0, 10), &o->lr)) ||
        (rc = cfg_float(c, m, path, "weight_decay", 0, CLOSED(0, 1), &o->weight_decay)))
        return rc;
    if (o->kind == NN_OPT_SGD) {
        o->momentum = 0.9f;
        if ((rc = cfg_float(c, m, path, "momentum", 0, HI_OPEN(0, 1), &o->momentum)))
            return rc;
        return cfg_bool(c, m, path, "nesterov", &o->nesterov);
    }
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->eps = 1e-8f;
    if ((rc = cfg_float(c, m, path, "beta1", 0, HI_OPEN(0, 1), &o->beta1)) ||
        (rc = cfg_float(c, m, path, "beta2", 0, HI_OPEN(0, 1), &o->beta2)))
        return rc;
    return cfg_float(c, m, path, "eps", 0, LO_OPEN(0, 1), &o->eps);
}

static const char *const sched_names[] = {"constant", "step", "cosine"};
static const char *const sched_keys[3][6] = {
    [NN_SCHED_CONSTANT] = {"kind", "warmup_epochs", NULL},
    [NN_SCHED_STEP] = {"kind", "warmup_epochs", "step_epochs", "gamma", NULL},
    [NN_SCHED_COSINE] = {"kind", "warmup_epochs", "min_lr", NULL},
};

static int walk_sched(cfg_ctx *c, const cfg_node *train, const char *tpath, float lr,
                      nn_sched_spec *s)
{
    char path[96];
    cfg_path(path, sizeof path, tpath, "schedule");
    memset(s, 0, sizeof *s);
    const cfg_node *m;
    int rc = cfg_section(c, train, tpath, "schedule", 0, &m), kind = NN_SCHED_CONSTANT;
    if (rc != KD_OK || !m)
        return rc;
    if ((rc = cfg_enum(c, m, path, "kind", 0, sched_names, 3, &kind)) != KD_OK)
        return rc;
    char what[32];
    snprintf(what, sizeof what, "schedule kind %s", sched_names[kind]);
    if ((rc = cfg_check_keys(c, m, path, sched_keys[kind], what)) != KD_OK)
        return rc;
    s->kind = (nn_sched_kind)kind;
    if ((rc = cfg_float(c, m, path, "warmup_epochs", 0, CLOSED(0, 10000), &s->warmup_epochs)))
        return rc;
    if (s->kind == NN_SCHED_STEP) {
        s->gamma = 0.1f;
        if ((rc = cfg_int(c, m, path, "step_epochs", 1, 1, 10000, &s->step_epochs)))
            return rc;
        return cfg_float(c, m, path, "gamma", 0, LO_OPEN(0, 1), &s->gamma);
    }
    if (s->kind == NN_SCHED_COSINE) {
        if ((rc = cfg_float(c, m, path, "min_lr", 0, CLOSED(0, 10), &s->min_lr)))
            return rc;
        if (s->min_lr > lr) {
            return cfg_err_key(c, m, "min_lr", path, "%g is above the optimizer's lr %g",
                               (double)s->min_lr, (double)lr);
        }
    }
    return KD_OK;
}

static int walk_train(cfg_ctx *c, const cfg_node *model, const char *mpath, cfg_train *t)
{
    static const char *const keys[] = {"epochs",   "batch_size", "optimizer", "schedule",
                                       "parallel", "reduce",     NULL};
    static const char *const par[] = {"none", "data"}, *const red[] = {"ordered", "fast"};
    char path[64];
    cfg_path(path, sizeof path, mpath, "train");
    const cfg_node *m;
    int rc = cfg_section(c, model, mpath, "train", 1, &m);
    if (rc != KD_OK || (rc = cfg_check_keys(c, m, path, keys, NULL)) != KD_OK)
        return rc;
    t->pos = cfg_key_pos(model, "train");
    t->batch_size = 128;
    if ((rc = cfg_int(c, m, path, "epochs", 1, 1, 10000, &t->epochs)) ||
        (rc = cfg_int(c, m, path, "batch_size", 0, 1, 65536, &t->batch_size)) ||
        (rc = cfg_enum(c, m, path, "parallel", 0, par, 2, &t->parallel)) ||
        (rc = cfg_enum(c, m, path, "reduce", 0, red, 2, &t->reduce_fast)) ||
        (rc = walk_opt(c, m, path, &t->opt)))
        return rc;
    const char *only = cfg_map_get(m, "parallel") ? "parallel"
                       : cfg_map_get(m, "reduce") ? "reduce" : NULL;
    if (only && strcmp(mpath, "teacher") != 0) /* one long job; students are many jobs */
        return cfg_err_key(c, m, only, path, "data-parallel training is for the teacher "
                           "(students and variants are spread over ranks as whole jobs)");
    return walk_sched(c, m, path, t->opt.lr, &t->sched);
}

/* ---- models and the whole experiment ---------------------------------------------- */
int cfg_walk_model(cfg_ctx *c, const cfg_node *m, const char *path, const cfg_data *d,
                   cfg_model *out)
{
    int rc = cfg_walk_layers(c, m, path, d, out);
    return rc != KD_OK ? rc : walk_train(c, m, path, &out->train);
}

/* `teacher: {onnx: PATH, input_mean: M, input_std: S}`: an imported ONNX
 * model, with the preprocessing it was trained with. */
static int walk_onnx(cfg_ctx *c, const cfg_node *m, cfg_model *out)
{
    const cfg_node *v = cfg_map_get(m, "onnx");
    int rc;
    out->input_mean = 0;
    out->input_std = 1;
    if ((rc = cfg_str(c, m, "teacher", "onnx", 1, out->model_path, sizeof out->model_path)) ||
        (rc = cfg_float(c, m, "teacher", "input_mean", 0, (cfg_range){-1e6, 1e6, 0, 0},
                        &out->input_mean)) ||
        (rc = cfg_float(c, m, "teacher", "input_std", 0, (cfg_range){0, 1e6, 1, 0},
                        &out->input_std)))
        return rc;
    if (!out->model_path[0])
        return cfg_err(c, v, "teacher.onnx", "must not be empty");
    out->model_pos = (cfg_pos){v->line, v->col};
    out->onnx = 1;
    return KD_OK;
}

/* `teacher:` is layers + train, `model: PATH` (a saved model file), or
 * `onnx: PATH` (an ONNX model), the files checked against the data once the
 * data is loaded. */
static int walk_teacher(cfg_ctx *c, const cfg_node *root, const cfg_data *d, cfg_model *out)
{
    static const char *const keys[] = {"layers", "train", "model", "onnx", "input_mean",
                                       "input_std", NULL};
    const cfg_node *m;
    int rc = cfg_section(c, root, "", "teacher", 1, &m);
    if (rc != KD_OK || (rc = cfg_check_keys(c, m, "teacher", keys, NULL)) != KD_OK)
        return rc;
    out->pos = cfg_key_pos(root, "teacher");
    const char *file = cfg_map_get(m, "onnx") ? "onnx" : cfg_map_get(m, "model") ? "model" : NULL;
    for (int i = 0; file && i < 4; i++) /* a file excludes layers, train and the other file */
        if (strcmp(keys[i], file) && cfg_map_get(m, keys[i]))
            return cfg_err_key(c, m, keys[i], "teacher",
                               "teacher.%s (%s) and teacher.%s exclude each other", file,
                               strcmp(file, "onnx") ? "a saved teacher" : "an ONNX teacher",
                               keys[i]);
    for (int i = 4; i < 6 && (!file || strcmp(file, "onnx")); i++)
        if (cfg_map_get(m, keys[i]))
            return cfg_err_key(c, m, keys[i], "teacher",
                               "goes with teacher.onnx (a model of kdbench carries its "
                               "own preprocessing)");
    if (!file)
        return cfg_walk_model(c, m, "teacher", d, out);
    if (!strcmp(file, "onnx"))
        return walk_onnx(c, m, out);
    const cfg_node *mv = cfg_map_get(m, "model");
    if ((rc = cfg_str(c, m, "teacher", "model", 1, out->model_path, sizeof out->model_path)))
        return rc;
    if (!out->model_path[0])
        return cfg_err(c, mv, "teacher.model", "must not be empty");
    out->model_pos = (cfg_pos){mv->line, mv->col};
    return KD_OK;
}

int cfg_walk(cfg_ctx *c, const cfg_node *root, exp_spec *s)
{
    static const char *const keys[] = {"name",     "seed",     "threads",     "cache_dir",
                                       "data",     "teacher",  "students",    "compress",
                                       "sensitivity", "report", "serve", NULL};
    int rc = cfg_check_keys(c, root, "", keys, NULL);
    if (rc != KD_OK || (rc = walk_name(c, root, s)) != KD_OK)
        return rc;
    s->seed = 1;
    s->threads = 0;
    snprintf(s->cache_dir, sizeof s->cache_dir, "runs/cache");
    if ((rc = cfg_u64(c, root, "", "seed", &s->seed)) ||
        (rc = cfg_int(c, root, "", "threads", 0, 0, 256, &s->threads)) ||
        (rc = cfg_str(c, root, "", "cache_dir", 0, s->cache_dir, sizeof s->cache_dir)) ||
        (rc = walk_data(c, root, &s->data)) || (rc = walk_teacher(c, root, &s->data, &s->teacher)) ||
        (rc = cfg_walk_students(c, root, s)) || (rc = cfg_walk_compress(c, root, s)) ||
        (rc = cfg_walk_report(c, root, s)))
        return rc;
    return cfg_walk_serve(c, root, s);
}
