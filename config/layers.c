/* `layers:` — a list of {type: ..., ...} mappings into nn_layer_spec, each
 * type with its own keys; then the shapes are chained by nn itself
 * (nn_model_new_shapes: no parameters are allocated), and its complaint is re-reported at the
 * offending item. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

const char *const cfg_init_names[3] = {"auto", "he", "xavier"};

#define MAX_UNITS 65536
#define MAX_WINDOW 256

static const char *const layer_keys[NN_KIND_COUNT][8] = {
    [NN_DENSE] = {"type", "name", "units", "init", NULL},
    [NN_CONV2D] = {"type", "name", "filters", "kernel", "stride", "pad", "init", NULL},
    [NN_MAXPOOL2D] = {"type", "name", "kernel", "stride", NULL},
    [NN_RELU] = {"type", "name", NULL},
    [NN_DROPOUT] = {"type", "name", "rate", NULL},
    [NN_FLATTEN] = {"type", "name", NULL},
    [NN_BATCHNORM] = {"type", "name", "eps", "momentum", NULL},
};

static int walk_layer_name(cfg_ctx *c, const cfg_node *m, const char *path, nn_layer_spec *l)
{
    int rc = cfg_str(c, m, path, "name", 0, l->name, sizeof l->name);
    if (rc != KD_OK || !cfg_map_get(m, "name"))
        return rc;
    if (!cfg_name_ok(l->name)) {
        return cfg_err_key(c, m, "name", path, "\"%s\" may use only letters, digits, '_', '.', '-'",
                           l->name);
    }
    return KD_OK;
}

/* The keys of one kind, defaults filled (stride, eps, momentum made explicit). */
static int walk_layer_fields(cfg_ctx *c, const cfg_node *m, const char *path, nn_layer_spec *l)
{
    int rc = KD_OK, init = NN_INIT_AUTO;
    switch (l->kind) {
    case NN_DENSE:
        rc = cfg_int(c, m, path, "units", 1, 1, MAX_UNITS, &l->units);
        break;
    case NN_CONV2D:
        l->stride = 1;
        if ((rc = cfg_int(c, m, path, "filters", 1, 1, MAX_UNITS, &l->filters)) ||
            (rc = cfg_int(c, m, path, "kernel", 1, 1, MAX_WINDOW, &l->kernel)) ||
            (rc = cfg_int(c, m, path, "stride", 0, 1, MAX_WINDOW, &l->stride)))
            break;
        rc = cfg_int(c, m, path, "pad", 0, 0, MAX_WINDOW, &l->pad);
        break;
    case NN_MAXPOOL2D:
        if ((rc = cfg_int(c, m, path, "kernel", 1, 1, MAX_WINDOW, &l->kernel)))
            break;
        l->stride = l->kernel;
        rc = cfg_int(c, m, path, "stride", 0, 1, MAX_WINDOW, &l->stride);
        break;
    case NN_DROPOUT:
        rc = cfg_float(c, m, path, "rate", 1, (cfg_range){0, 1, 0, 1}, &l->rate);
        break;
    case NN_BATCHNORM:
        l->eps = 1e-5f;
        l->momentum = 0.1f;
        if ((rc = cfg_float(c, m, path, "eps", 0, (cfg_range){0, 1, 1, 0}, &l->eps)))
            break;
        rc = cfg_float(c, m, path, "momentum", 0, (cfg_range){0, 1, 1, 0}, &l->momentum);
        break;
    default:
        break;
    }
    if (rc == KD_OK && (l->kind == NN_DENSE || l->kind == NN_CONV2D)) {
        rc = cfg_enum(c, m, path, "init", 0, cfg_init_names, 3, &init);
        l->init = (nn_init)init;
    }
    return rc;
}

static int walk_layer(cfg_ctx *c, const cfg_node *m, const char *path, nn_layer_spec *l)
{
    if (m->kind != CFG_MAP)
        return cfg_err(c, m, path, "expected a mapping like {type: dense, units: 10}");
    const char *kinds[NN_KIND_COUNT];
    for (int k = 0; k < NN_KIND_COUNT; k++)
        kinds[k] = nn_kind_name((nn_kind)k);
    int kind = 0;
    int rc = cfg_enum(c, m, path, "type", 1, kinds, NN_KIND_COUNT, &kind);
    if (rc != KD_OK)
        return rc;
    char what[48];
    snprintf(what, sizeof what, "layer type %s", kinds[kind]);
    if ((rc = cfg_check_keys(c, m, path, layer_keys[kind], what)) != KD_OK)
        return rc;
    memset(l, 0, sizeof *l);
    l->kind = (nn_kind)kind;
    if ((rc = walk_layer_name(c, m, path, l)) != KD_OK)
        return rc;
    return walk_layer_fields(c, m, path, l);
}

/* nn's messages start "layer 3 (dense): " or "layer 3: "; our path says that. */
static const char *strip_layer_prefix(const char *msg)
{
    if (strncmp(msg, "layer ", 6) != 0)
        return msg;
    const char *s = msg + 6;
    char *end;
    (void)strtol(s, &end, 10);
    if (end == s)
        return msg;
    s = end;
    if (*s == ' ' && s[1] == '(' && (s = strchr(s, ')')) != NULL)
        s++;
    return s && s[0] == ':' && s[1] == ' ' ? s + 2 : msg;
}

/* Total trainable parameters, from each kind's setup on a scratch layer (no
 * allocation), so an absurd model is refused before run allocates it.
 * Stops quietly at a shape error: nn_model_new_shapes reports that one. */
static int count_params(const cfg_model *m, nn_shape s, int *over)
{
    size_t total = 0;
    for (int i = 0; i < m->nlayers; i++) {
        nn_layer l;
        memset(&l, 0, sizeof l);
        l.spec = m->layers[i];
        l.in = s;
        l.ops = nn_layer_ops_of(l.spec.kind);
        kd_err ignored;
        if (!l.ops || l.ops->setup(&l, &ignored) != KD_OK)
            return 0;
        total += l.nw + l.nb;
        if (total > CFG_MAX_PARAMS) {
            *over = i;
            return 1;
        }
        s = l.out;
    }
    return 0;
}

static int check_model(cfg_ctx *c, const cfg_node *seq, const char *path, const cfg_data *d,
                       cfg_model *m)
{
    char p[96];
    int bad = -1;
    if (count_params(m, d->shape, &bad)) {
        snprintf(p, sizeof p, "%s[%d]", path, bad);
        return cfg_err(c, seq->kid[bad], p, "the model would have more than %u parameters",
                       CFG_MAX_PARAMS);
    }
    nn_model *nm = nn_model_new_shapes(d->shape, m->layers, m->nlayers, &bad, c->e);
    if (!nm) {
        if (c->e->code != KD_ECONFIG)
            return c->e->code;
        char msg[sizeof c->e->msg];
        memcpy(msg, c->e->msg, sizeof msg);
        if (bad < 0 || bad >= m->nlayers)
            return cfg_err(c, seq, path, "%s", msg);
        snprintf(p, sizeof p, "%s[%d]", path, bad);
        return cfg_err(c, seq->kid[bad], p, "%s", strip_layer_prefix(msg));
    }
    m->nclasses = nm->nclasses;
    nn_model_free(nm);
    /* for idx and csv the class count is known once the data's labels are
     * read (the facts); training needs an output per class, and fashion-mnist
     * without facts is held to exactly its 10 */
    int want = cfg_data_classes(c, d);
    int bad_fashion = !c->facts && d->kind == CFG_DATA_FASHION && m->nclasses != want;
    if (want && (bad_fashion || m->nclasses < want)) {
        snprintf(p, sizeof p, "%s[%d]", path, m->nlayers - 1);
        return cfg_err(c, seq->kid[m->nlayers - 1], p,
                       "the model ends with %d outputs but %s has %d classes", m->nclasses,
                       d->kind == CFG_DATA_FASHION ? "fashion-mnist" : "the data", want);
    }
    return KD_OK;
}

static int check_unique_names(cfg_ctx *c, const cfg_node *seq, const char *path, cfg_model *m)
{
    for (int i = 0; i < m->nlayers; i++)
        for (int j = 0; m->layers[i].name[0] && j < i; j++)
            if (!strcmp(m->layers[i].name, m->layers[j].name)) {
                char p[96];
                snprintf(p, sizeof p, "%s[%d].name", path, i);
                return cfg_err(c, cfg_map_get(seq->kid[i], "name"), p,
                               "\"%s\" is already the name of %s[%d]", m->layers[i].name, path, j);
            }
    return KD_OK;
}

int cfg_walk_layers(cfg_ctx *c, const cfg_node *map, const char *mpath, const cfg_data *d,
                    cfg_model *m)
{
    char path[64];
    cfg_path(path, sizeof path, mpath, "layers");
    const cfg_node *seq = cfg_map_get(map, "layers");
    if (!seq)
        return cfg_missing(c, map, mpath, "layers");
    if (seq->kind != CFG_SEQ)
        return cfg_err(c, seq, path, "expected a list of layers");
    if (seq->n < 1 || seq->n > CFG_MAX_LAYERS)
        return cfg_err(c, seq, path, "must have 1 to %d layers, not %d", CFG_MAX_LAYERS, seq->n);
    m->nlayers = seq->n;
    for (int i = 0; i < seq->n; i++) {
        char p[96];
        snprintf(p, sizeof p, "%s[%d]", path, i);
        const cfg_node *it = seq->kid[i];
        m->layer_pos[i] = it->src < 0 ? (cfg_pos){it->line, it->col} : (cfg_pos){0, 0};
        int rc = walk_layer(c, it, p, &m->layers[i]);
        if (rc != KD_OK)
            return rc;
    }
    int rc = check_unique_names(c, seq, path, m);
    return rc != KD_OK ? rc : check_model(c, seq, path, d, m);
}
