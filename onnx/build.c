/* onnx/build — building a ModelProto in protobuf-c's structs.  Everything
 * the model points to (strings, arrays, messages) comes from one arena owned
 * by the onnx_graph, so the model is freed at once and no partly built
 * message ever needs unwinding. */
#include "build.h"

#include <stddef.h>
#include <string.h>

/* ---- the arena: one kd_malloc per block, chained ----------------------------- */

typedef union arena_hdr {
    union arena_hdr *next;
    max_align_t align;
} arena_hdr;

/* A growing array of message pointers (nodes, initializers, ...). */
typedef struct {
    void **p;
    size_t n, cap;
} ptr_list;

struct onnx_graph {
    arena_hdr *blocks;
    int failed;
    Onnx__ModelProto model;
    Onnx__GraphProto graph;
    Onnx__OperatorSetIdProto opset;
    Onnx__OperatorSetIdProto *opsets[1];
    ptr_list nodes, inits, inputs, outputs, meta;
};

static void *arena_alloc(onnx_graph *g, size_t n)
{
    if (g->failed || n > SIZE_MAX - sizeof(arena_hdr)) {
        g->failed = 1;
        return NULL;
    }
    arena_hdr *h = kd_malloc(sizeof *h + n);
    if (!h) {
        g->failed = 1;
        return NULL;
    }
    h->next = g->blocks;
    g->blocks = h;
    memset(h + 1, 0, n);
    return h + 1;
}

static char *arena_str(onnx_graph *g, const char *s)
{
    size_t n = strlen(s) + 1;
    char *c = arena_alloc(g, n);
    if (c)
        memcpy(c, s, n);
    return c;
}

static void *arena_dup(onnx_graph *g, const void *p, size_t n)
{
    void *c = arena_alloc(g, n ? n : 1);
    if (c && n)
        memcpy(c, p, n);
    return c;
}

/* The lists into the graph's fields (after every addition). */
static void sync(onnx_graph *g)
{
    g->graph.n_node = g->nodes.n;
    g->graph.node = (Onnx__NodeProto **)g->nodes.p;
    g->graph.n_initializer = g->inits.n;
    g->graph.initializer = (Onnx__TensorProto **)g->inits.p;
    g->graph.n_input = g->inputs.n;
    g->graph.input = (Onnx__ValueInfoProto **)g->inputs.p;
    g->graph.n_output = g->outputs.n;
    g->graph.output = (Onnx__ValueInfoProto **)g->outputs.p;
    g->model.n_metadata_props = g->meta.n;
    g->model.metadata_props = (Onnx__StringStringEntryProto **)g->meta.p;
}

/* Appends p (NULL: the failure is already recorded) to l; the list's array
 * doubles in the arena (the old one stays until the graph is freed). */
static void list_add(onnx_graph *g, ptr_list *l, void *p)
{
    if (!p)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        void **np = arena_alloc(g, cap * sizeof *np);
        if (!np)
            return;
        if (l->n)
            memcpy(np, l->p, l->n * sizeof *np);
        l->p = np;
        l->cap = cap;
    }
    l->p[l->n++] = p;
    sync(g);
}

onnx_graph *onnx_graph_new(const char *name, int64_t ir_version, int64_t opset, kd_err *e)
{
    onnx_graph *g = kd_calloc(1, sizeof *g);
    if (!g) {
        kd_err_set(e, KD_ENOMEM, "onnx: out of memory");
        return NULL;
    }
    onnx__model_proto__init(&g->model);
    onnx__graph_proto__init(&g->graph);
    onnx__operator_set_id_proto__init(&g->opset);
    g->opset.domain = arena_str(g, "");
    g->opset.has_version = 1;
    g->opset.version = opset;
    g->opsets[0] = &g->opset;
    g->model.has_ir_version = 1;
    g->model.ir_version = ir_version;
    g->model.n_opset_import = 1;
    g->model.opset_import = g->opsets;
    g->graph.name = arena_str(g, name);
    g->model.graph = &g->graph;
    if (g->failed) {
        onnx_graph_free(g);
        kd_err_set(e, KD_ENOMEM, "onnx: out of memory");
        return NULL;
    }
    return g;
}

void onnx_graph_free(onnx_graph *g)
{
    if (!g)
        return;
    for (arena_hdr *h = g->blocks, *next; h; h = next) {
        next = h->next;
        kd_free(h);
    }
    kd_free(g);
}

/* ---- tensors ------------------------------------------------------------------- */

static size_t dims_count(const int64_t *dims, int nd)
{
    size_t n = 1;
    for (int i = 0; i < nd; i++)
        n *= (size_t)dims[i];
    return n;
}

/* A tensor with its dims and raw_data of `bytes` bytes (filled by the caller). */
static Onnx__TensorProto *tensor_new(onnx_graph *g, const char *name, int type,
                                     const int64_t *dims, int nd, size_t elem, uint8_t **raw)
{
    Onnx__TensorProto *t = arena_alloc(g, sizeof *t);
    if (!t)
        return NULL;
    onnx__tensor_proto__init(t);
    size_t count = dims_count(dims, nd), bytes = count * elem;
    t->name = arena_str(g, name);
    t->has_data_type = 1;
    t->data_type = type;
    t->n_dims = (size_t)nd;
    t->dims = arena_dup(g, dims, (size_t)nd * sizeof *dims);
    t->has_raw_data = 1;
    t->raw_data.len = bytes;
    t->raw_data.data = arena_alloc(g, bytes ? bytes : 1);
    *raw = t->raw_data.data;
    return g->failed ? NULL : t;
}

/* Values as little-endian bytes, whatever the host's order. */
static void put_le(uint8_t *p, uint64_t v, size_t bytes)
{
    for (size_t b = 0; b < bytes; b++)
        p[b] = (uint8_t)(v >> (8 * b));
}

void onnx_graph_f32(onnx_graph *g, const char *name, const int64_t *dims, int nd, const float *v)
{
    uint8_t *raw;
    Onnx__TensorProto *t = tensor_new(g, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, dims, nd,
                                      4, &raw);
    for (size_t i = 0, n = dims_count(dims, nd); t && i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        put_le(raw + 4 * i, u, 4);
    }
    list_add(g, &g->inits, t);
}

void onnx_graph_i8(onnx_graph *g, const char *name, const int64_t *dims, int nd, const int8_t *v)
{
    uint8_t *raw;
    Onnx__TensorProto *t = tensor_new(g, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT8, dims, nd,
                                      1, &raw);
    if (t)
        memcpy(raw, v, dims_count(dims, nd));
    list_add(g, &g->inits, t);
}

void onnx_graph_i32(onnx_graph *g, const char *name, const int64_t *dims, int nd,
                    const int32_t *v)
{
    uint8_t *raw;
    Onnx__TensorProto *t = tensor_new(g, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT32, dims, nd,
                                      4, &raw);
    for (size_t i = 0, n = dims_count(dims, nd); t && i < n; i++)
        put_le(raw + 4 * i, (uint32_t)v[i], 4);
    list_add(g, &g->inits, t);
}

void onnx_graph_i64(onnx_graph *g, const char *name, const int64_t *dims, int nd,
                    const int64_t *v)
{
    uint8_t *raw;
    Onnx__TensorProto *t = tensor_new(g, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, dims, nd,
                                      8, &raw);
    for (size_t i = 0, n = dims_count(dims, nd); t && i < n; i++)
        put_le(raw + 8 * i, (uint64_t)v[i], 8);
    list_add(g, &g->inits, t);
}

void onnx_graph_scalar_f32(onnx_graph *g, const char *name, float v)
{
    onnx_graph_f32(g, name, NULL, 0, &v);
}

void onnx_graph_scalar_i8(onnx_graph *g, const char *name, int8_t v)
{
    onnx_graph_i8(g, name, NULL, 0, &v);
}

void onnx_graph_scalar_u8(onnx_graph *g, const char *name, uint8_t v)
{
    uint8_t *raw;
    Onnx__TensorProto *t = tensor_new(g, name, ONNX__TENSOR_PROTO__DATA_TYPE__UINT8, NULL, 0,
                                      1, &raw);
    if (t)
        raw[0] = v;
    list_add(g, &g->inits, t);
}

/* ---- graph inputs and outputs ------------------------------------------------------ */

static Onnx__ValueInfoProto *value_info(onnx_graph *g, const char *name, int elem,
                                        const int64_t *dims, int nd)
{
    Onnx__ValueInfoProto *vi = arena_alloc(g, sizeof *vi);
    Onnx__TypeProto *tp = arena_alloc(g, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = arena_alloc(g, sizeof *tt);
    Onnx__TensorShapeProto *sh = arena_alloc(g, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dv = arena_alloc(g, (size_t)(nd ? nd : 1) * sizeof *dv);
    if (!vi || !tp || !tt || !sh || !dv)
        return NULL;
    onnx__value_info_proto__init(vi);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    for (int i = 0; i < nd; i++) {
        Onnx__TensorShapeProto__Dimension *d = arena_alloc(g, sizeof *d);
        if (!d)
            return NULL;
        onnx__tensor_shape_proto__dimension__init(d);
        if (dims[i] == ONNX_DIM_N) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = arena_str(g, "N");
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i];
        }
        dv[i] = d;
    }
    sh->n_dim = (size_t)nd;
    sh->dim = dv;
    tt->has_elem_type = 1;
    tt->elem_type = elem;
    tt->shape = sh;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    vi->name = arena_str(g, name);
    vi->type = tp;
    return g->failed ? NULL : vi;
}

void onnx_graph_input(onnx_graph *g, const char *name, int elem, const int64_t *dims, int nd)
{
    list_add(g, &g->inputs, value_info(g, name, elem, dims, nd));
}

void onnx_graph_output(onnx_graph *g, const char *name, int elem, const int64_t *dims, int nd)
{
    list_add(g, &g->outputs, value_info(g, name, elem, dims, nd));
}

/* ---- nodes and attributes ------------------------------------------------------------ */

static char **str_array(onnx_graph *g, const char *const *s, int n)
{
    char **a = arena_alloc(g, (size_t)(n ? n : 1) * sizeof *a);
    for (int i = 0; a && i < n; i++)
        a[i] = arena_str(g, s[i]);
    return a;
}

Onnx__NodeProto *onnx_graph_node(onnx_graph *g, const char *op_type, const char *name,
                                 const char *const *in, int nin, const char *const *out,
                                 int nout)
{
    Onnx__NodeProto *n = arena_alloc(g, sizeof *n);
    if (!n)
        return NULL;
    onnx__node_proto__init(n);
    n->op_type = arena_str(g, op_type);
    n->name = arena_str(g, name);
    n->n_input = (size_t)nin;
    n->input = str_array(g, in, nin);
    n->n_output = (size_t)nout;
    n->output = str_array(g, out, nout);
    if (g->failed)
        return NULL;
    list_add(g, &g->nodes, n);
    return g->failed ? NULL : n;
}

/* A new attribute of node n (its attribute array grows by one). */
static Onnx__AttributeProto *attr_add(onnx_graph *g, Onnx__NodeProto *n, const char *key,
                                      Onnx__AttributeProto__AttributeType type)
{
    if (!n)
        return NULL;
    Onnx__AttributeProto *a = arena_alloc(g, sizeof *a);
    Onnx__AttributeProto **arr = arena_alloc(g, (n->n_attribute + 1) * sizeof *arr);
    if (!a || !arr)
        return NULL;
    onnx__attribute_proto__init(a);
    a->name = arena_str(g, key);
    a->has_type = 1;
    a->type = type;
    if (n->n_attribute)
        memcpy(arr, n->attribute, n->n_attribute * sizeof *arr);
    arr[n->n_attribute++] = a;
    n->attribute = arr;
    return a;
}

void onnx_node_int(onnx_graph *g, Onnx__NodeProto *n, const char *key, int64_t v)
{
    Onnx__AttributeProto *a = attr_add(g, n, key, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a) {
        a->has_i = 1;
        a->i = v;
    }
}

void onnx_node_ints(onnx_graph *g, Onnx__NodeProto *n, const char *key, const int64_t *v,
                    int count)
{
    Onnx__AttributeProto *a = attr_add(g, n, key, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    if (a) {
        a->n_ints = (size_t)count;
        a->ints = arena_dup(g, v, (size_t)count * sizeof *v);
    }
}

void onnx_node_float(onnx_graph *g, Onnx__NodeProto *n, const char *key, float v)
{
    Onnx__AttributeProto *a = attr_add(g, n, key, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a) {
        a->has_f = 1;
        a->f = v;
    }
}

void onnx_node_rename_output(onnx_graph *g, Onnx__NodeProto *n, int i, const char *name)
{
    if (n && i >= 0 && (size_t)i < n->n_output)
        n->output[i] = arena_str(g, name);
}

/* ---- model text ---------------------------------------------------------------------- */

void onnx_graph_producer(onnx_graph *g, const char *name, const char *version)
{
    g->model.producer_name = arena_str(g, name);
    g->model.producer_version = arena_str(g, version);
}

void onnx_graph_doc(onnx_graph *g, const char *doc)
{
    g->model.doc_string = arena_str(g, doc);
}

void onnx_graph_meta(onnx_graph *g, const char *key, const char *value)
{
    Onnx__StringStringEntryProto *p = arena_alloc(g, sizeof *p);
    if (!p)
        return;
    onnx__string_string_entry_proto__init(p);
    p->key = arena_str(g, key);
    p->value = arena_str(g, value);
    list_add(g, &g->meta, g->failed ? NULL : p);
}

const Onnx__ModelProto *onnx_graph_model(const onnx_graph *g)
{
    return &g->model;
}

int onnx_graph_check(const onnx_graph *g, kd_err *e)
{
    return g->failed ? kd_err_set(e, KD_ENOMEM, "onnx: out of memory building the model") : KD_OK;
}

int onnx_graph_write(const onnx_graph *g, const char *path, kd_err *e)
{
    if (onnx_graph_check(g, e))
        return KD_ENOMEM;
    return onnx_model_write(path, onnx_graph_model(g), e);
}
