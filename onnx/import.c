/* onnx/import — the walk over an ONNX graph (see import.h): initializers as
 * constants, the one data input as the live activation, then every node in
 * file order through its operator (ops.c, fold.c); the layers collected
 * become an nn model. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "import.h"
#include "internal.h"

/* ---- layers ----------------------------------------------------------------------- */

ox_layer *ox_layer_add(ox_ctx *c, const nn_layer_spec *spec, size_t nw, size_t nb, size_t nbuf,
                       kd_err *e)
{
    if (c->nlayers == OX_MAX_LAYERS) {
        kd_err_set(e, KD_ECONFIG, "the model has more than %d layers", OX_MAX_LAYERS);
        return NULL;
    }
    ox_layer *l = &c->layers[c->nlayers];
    memset(l, 0, sizeof *l);
    l->spec = *spec;
    l->nw = nw;
    l->nb = nb;
    l->nbuf = nbuf;
    if ((nw && !(l->w = kd_calloc(nw, sizeof *l->w))) || (nb && !(l->b = kd_calloc(nb, sizeof *l->b))) ||
        (nbuf && !(l->buf = kd_calloc(nbuf, sizeof *l->buf)))) {
        kd_free(l->w);
        kd_free(l->b);
        kd_free(l->buf);
        kd_err_set(e, KD_ENOMEM, "out of memory for a layer of %zu weights", nw);
        return NULL;
    }
    c->nlayers++;
    return l;
}

void ox_layers_free(ox_ctx *c)
{
    for (int i = 0; i < c->nlayers; i++) {
        kd_free(c->layers[i].w);
        kd_free(c->layers[i].b);
        kd_free(c->layers[i].buf);
    }
    c->nlayers = 0;
}

/* ---- the graph's ends ---------------------------------------------------------------- */

static int is_initializer(const Onnx__GraphProto *g, const char *name)
{
    for (size_t i = 0; i < g->n_initializer; i++)
        if (g->initializer[i]->name && !strcmp(g->initializer[i]->name, name))
            return 1;
    return 0;
}

/* The data input: float, (N, features) or (N, C, H, W), every dimension but
 * the batch fixed. */
static int data_input(ox_ctx *c, const Onnx__ValueInfoProto *in, kd_err *e)
{
    const Onnx__TypeProto *t = in->type;
    const Onnx__TypeProto__Tensor *tt =
        t && t->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ? t->tensor_type : NULL;
    if (!tt || !tt->shape || (tt->has_elem_type && tt->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT))
        return kd_err_set(e, KD_ECONFIG, "input '%s' must be a float tensor with a shape", in->name);
    size_t r = tt->shape->n_dim;
    if (r != 2 && r != 4)
        return kd_err_set(e, KD_ECONFIG, "input '%s' has %zu dimensions; (N, features) or "
                          "(N, C, H, W) is supported", in->name, r);
    int64_t d[4] = {1, 1, 1, 1};
    for (size_t i = 0; i < r; i++) {
        const Onnx__TensorShapeProto__Dimension *dm = tt->shape->dim[i];
        int fixed = dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        d[i] = fixed ? dm->dim_value : -1;
        if (i > 0 && (!fixed || d[i] < 1 || d[i] > (1 << 24)))
            return kd_err_set(e, KD_ECONFIG, "input '%s': dimension %zu must be fixed, in "
                              "[1, 2^24]", in->name, i);
    }
    if (d[1] * d[2] * d[3] > (1 << 26))
        return kd_err_set(e, KD_ECONFIG, "input '%s' has too many values per sample", in->name);
    c->batch = d[0] > 0 ? d[0] : -1;
    c->rank = (int)r;
    c->shape = c->in = (nn_shape){(int)d[1], (int)d[2], (int)d[3]};
    ox_value *v = ox_add(c, in->name, e);
    if (!v)
        return e->code;
    v->kind = OX_LIVE;
    v->rank = (int)r;
    v->step = c->step = 0;
    return KD_OK;
}

static int graph_start(ox_ctx *c, const Onnx__GraphProto *g, kd_err *e)
{
    if (g->n_node > OX_MAX_NODES)
        return kd_err_set(e, KD_ECONFIG, "the graph has %zu nodes (at most %d)", g->n_node,
                          OX_MAX_NODES);
    for (size_t i = 0; i < g->n_initializer; i++) {
        const Onnx__TensorProto *t = g->initializer[i];
        char what[300];
        snprintf(what, sizeof what, "initializer '%.200s'", t->name ? t->name : "");
        ox_value *v = ox_add(c, t->name, e);
        if (!v || ox_tensor_decode(t, what, v, e) != KD_OK)
            return e->code;
    }
    const Onnx__ValueInfoProto *data = NULL;
    for (size_t i = 0; i < g->n_input; i++) {
        if (!g->input[i]->name || is_initializer(g, g->input[i]->name))
            continue; /* older exports list initializers as inputs too */
        if (data)
            return kd_err_set(e, KD_ECONFIG, "the graph has more than one input ('%s', '%s')",
                              data->name, g->input[i]->name);
        data = g->input[i];
    }
    if (!data)
        return kd_err_set(e, KD_ECONFIG, "the graph has no data input");
    return data_input(c, data, e);
}

static int graph_end(ox_ctx *c, const Onnx__GraphProto *g, kd_err *e)
{
    if (g->n_output != 1 || !g->output[0]->name)
        return kd_err_set(e, KD_ECONFIG, "the graph has %zu outputs; one (the logits or their "
                          "softmax) is supported", g->n_output);
    const char *name = g->output[0]->name;
    ox_value *v = ox_find(c, name);
    int last = v && v->kind == OX_LIVE && v->step == c->step;
    if (!last && !(c->softmax_out && !strcmp(name, c->softmax_out)))
        return kd_err_set(e, KD_ECONFIG, "the output '%s' is not the end of the chain of nodes",
                          name);
    if (c->nlayers == 0 || c->rank != 2)
        return kd_err_set(e, KD_ECONFIG, "the output must be (N, classes) after at least one "
                          "layer");
    return KD_OK;
}

/* ---- the walk -------------------------------------------------------------------------- */

static int64_t default_opset(const Onnx__ModelProto *m)
{
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = m->opset_import[i];
        if ((!o->domain || !o->domain[0] || !strcmp(o->domain, "ai.onnx")) && o->has_version)
            return o->version;
    }
    return 1;
}

static int walk_node(ox_ctx *c, const Onnx__NodeProto *n, size_t idx, kd_err *e)
{
    char who[200];
    snprintf(who, sizeof who, "node '%.100s' (%.60s)", n->name && n->name[0] ? n->name : "",
             n->op_type ? n->op_type : "?");
    if (!n->name || !n->name[0]) /* unnamed: say where it is */
        snprintf(who, sizeof who, "node #%zu (%.60s)", idx, n->op_type ? n->op_type : "?");
    int foreign = n->domain && n->domain[0] && strcmp(n->domain, "ai.onnx");
    ox_op_fn fn = foreign ? NULL : ox_op_find(n->op_type);
    int rc = fn ? fn(c, n, e)
                : kd_err_set(e, KD_ECONFIG,
                             "operator %s%s%s is not supported (kdbench imports Gemm, MatMul, Add, "
                             "Conv, BatchNormalization, Relu, MaxPool, Flatten, Reshape, Dropout, "
                             "Identity, a final Softmax and constant shape arithmetic)",
                             foreign ? n->domain : "", foreign ? "." : "",
                             n->op_type ? n->op_type : "?");
    if (rc != KD_OK)
        kd_err_prefix(e, "%s", who);
    return rc;
}

/* The collected layers as an nn model (shapes checked again by nn). */
static nn_model *build(ox_ctx *c, float mean, float std, kd_err *e)
{
    nn_layer_spec specs[OX_MAX_LAYERS];
    for (int i = 0; i < c->nlayers; i++)
        specs[i] = c->layers[i].spec;
    int bad = -1;
    nn_model *m = nn_model_new(c->in, specs, c->nlayers, &bad, e);
    if (!m)
        return NULL;
    for (int i = 0; i < c->nlayers; i++) {
        nn_layer *l = &m->layers[i];
        const ox_layer *o = &c->layers[i];
        if (l->nw != o->nw || l->nb != o->nb || l->nbuf != o->nbuf) {
            kd_err_set(e, KD_ECONFIG, "layer %d (%s): nn's shapes disagree with the graph's", i,
                       l->spec.name);
            nn_model_free(m);
            return NULL;
        }
        if (o->nw)
            memcpy(l->w, o->w, o->nw * sizeof *l->w);
        if (o->nb)
            memcpy(l->b, o->b, o->nb * sizeof *l->b);
        if (o->nbuf)
            memcpy(l->buf, o->buf, o->nbuf * sizeof *l->buf);
    }
    m->in_mean = mean;
    m->in_std = std;
    return m;
}

nn_model *onnx_import(const Onnx__ModelProto *m, float mean, float std, kd_err *e)
{
    if (!isfinite(mean) || !isfinite(std) || !(std > 0)) {
        kd_err_set(e, KD_ECONFIG, "onnx: input mean %g and std %g must be finite, std > 0",
                   (double)mean, (double)std);
        return NULL;
    }
    if (!m->graph) {
        kd_err_set(e, KD_EFORMAT, "onnx: the model has no graph (not an ONNX model?)");
        return NULL;
    }
    ox_ctx *c = kd_calloc(1, sizeof *c);
    if (!c) {
        kd_err_set(e, KD_ENOMEM, "onnx: out of memory");
        return NULL;
    }
    c->model = m;
    c->opset = default_opset(m);
    c->bias_layer = -1;
    const Onnx__GraphProto *g = m->graph;
    int rc = graph_start(c, g, e);
    for (size_t i = 0; rc == KD_OK && i < g->n_node; i++)
        rc = walk_node(c, g->node[i], i, e);
    if (rc == KD_OK)
        rc = graph_end(c, g, e);
    nn_model *out = rc == KD_OK ? build(c, mean, std, e) : NULL;
    if (!out)
        kd_err_prefix(e, "onnx");
    ox_values_free(c);
    ox_layers_free(c);
    kd_free(c);
    return out;
}

nn_model *onnx_import_file(const char *path, float mean, float std, kd_err *e)
{
    onnx_file *f = onnx_file_read(path, e);
    if (!f)
        return NULL;
    nn_model *m = onnx_import(onnx_file_model(f), mean, std, e);
    onnx_file_free(f);
    if (!m && e)
        snprintf(e->file, sizeof e->file, "%s", path);
    return m;
}

int onnx_is_onnx_path(const char *path)
{
    size_t n = path ? strlen(path) : 0;
    return n > 5 && !strcasecmp(path + n - 5, ".onnx");
}
