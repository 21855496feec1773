/* onnx/build — ModelProto assembly in an arena (see build.h). */
#include "compose.h"

#include <string.h>

struct onnx_build {
    void **blocks; /* every allocation, freed together */
    size_t nblocks, capblocks;
    int failed;
    Onnx__ModelProto model;
    Onnx__GraphProto graph;
    Onnx__OperatorSetIdProto opset, *opsets[1];
};

static void *ar(onnx_build *b, size_t n)
{
    if (b->failed)
        return NULL;
    if (b->nblocks == b->capblocks) {
        size_t cap = b->capblocks ? 2 * b->capblocks : 64;
        void **p = kd_realloc(b->blocks, cap * sizeof *p);
        if (!p) {
            b->failed = 1;
            return NULL;
        }
        b->blocks = p;
        b->capblocks = cap;
    }
    void *p = kd_calloc(1, n ? n : 1);
    if (!p) {
        b->failed = 1;
        return NULL;
    }
    b->blocks[b->nblocks++] = p;
    return p;
}

static char *ar_str(onnx_build *b, const char *s, size_t len)
{
    char *p = ar(b, len + 1);
    if (p)
        memcpy(p, s, len);
    return p;
}

/* Appends item to the pointer array *arr of *n items (grown in the arena). */
static void push(onnx_build *b, void ***arr, size_t *n, void *item)
{
    if (!item || b->failed)
        return;
    void **p = ar(b, (*n + 1) * sizeof *p);
    if (!p)
        return;
    if (*n)
        memcpy(p, *arr, *n * sizeof *p);
    p[(*n)++] = item;
    *arr = p;
}

onnx_build *onnx_build_new(int64_t opset)
{
    onnx_build *b = kd_calloc(1, sizeof *b);
    if (!b)
        return NULL;
    onnx__model_proto__init(&b->model);
    onnx__graph_proto__init(&b->graph);
    onnx__operator_set_id_proto__init(&b->opset);
    b->model.has_ir_version = 1;
    b->model.ir_version = 8;
    b->model.producer_name = "kdbench";
    b->opset.domain = "";
    b->opset.has_version = 1;
    b->opset.version = opset;
    b->opsets[0] = &b->opset;
    b->model.n_opset_import = 1;
    b->model.opset_import = b->opsets;
    b->graph.name = "graph";
    b->model.graph = &b->graph;
    return b;
}

void onnx_build_free(onnx_build *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->nblocks; i++)
        kd_free(b->blocks[i]);
    kd_free(b->blocks);
    kd_free(b);
}

static Onnx__ValueInfoProto *value_info(onnx_build *b, const char *name)
{
    Onnx__ValueInfoProto *v = ar(b, sizeof *v);
    Onnx__TypeProto *t = ar(b, sizeof *t);
    Onnx__TypeProto__Tensor *tt = ar(b, sizeof *tt);
    if (!v || !t || !tt)
        return NULL;
    onnx__value_info_proto__init(v);
    onnx__type_proto__init(t);
    onnx__type_proto__tensor__init(tt);
    v->name = ar_str(b, name, strlen(name));
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    t->tensor_type = tt;
    v->type = t;
    return v;
}

void onnx_build_input(onnx_build *b, const char *name, const int64_t *dims, int rank)
{
    Onnx__ValueInfoProto *v = value_info(b, name);
    Onnx__TensorShapeProto *s = ar(b, sizeof *s);
    if (!v || !s)
        return;
    onnx__tensor_shape_proto__init(s);
    for (int i = 0; i < rank; i++) {
        Onnx__TensorShapeProto__Dimension *d = ar(b, sizeof *d);
        if (!d)
            return;
        onnx__tensor_shape_proto__dimension__init(d);
        if (dims[i] < 0) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = "N";
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i];
        }
        push(b, (void ***)&s->dim, &s->n_dim, d);
    }
    v->type->tensor_type->shape = s;
    push(b, (void ***)&b->graph.input, &b->graph.n_input, v);
}

void onnx_build_output(onnx_build *b, const char *name)
{
    push(b, (void ***)&b->graph.output, &b->graph.n_output, value_info(b, name));
}

Onnx__TensorProto *onnx_build_tensor(onnx_build *b, const char *name, int type,
                                     const int64_t *dims, int rank, const void *data, size_t count)
{
    Onnx__TensorProto *t = ar(b, sizeof *t);
    int64_t *d = ar(b, (size_t)rank * sizeof *d);
    size_t esz = type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT ? sizeof(float) : sizeof(int64_t);
    void *v = data ? ar(b, count * esz) : NULL;
    if (!t || !d || (data && !v))
        return NULL;
    onnx__tensor_proto__init(t);
    t->name = ar_str(b, name, strlen(name));
    t->has_data_type = 1;
    t->data_type = type;
    if (rank)
        memcpy(d, dims, (size_t)rank * sizeof *d);
    t->n_dims = (size_t)rank;
    t->dims = d;
    if (data)
        memcpy(v, data, count * esz);
    if (data && esz == sizeof(float)) {
        t->n_float_data = count;
        t->float_data = v;
    } else if (data) {
        t->n_int64_data = count;
        t->int64_data = v;
    }
    return t;
}

void onnx_build_initializer(onnx_build *b, Onnx__TensorProto *t)
{
    push(b, (void ***)&b->graph.initializer, &b->graph.n_initializer, t);
}

void onnx_build_weights(onnx_build *b, const char *name, const int64_t *dims, int rank,
                        const float *data)
{
    size_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= (size_t)dims[i];
    onnx_build_initializer(
        b, onnx_build_tensor(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, dims, rank, data, n));
}

/* "a,b,,c" -> names into *arr / *n */
static void names(onnx_build *b, const char *list, char ***arr, size_t *n)
{
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        push(b, (void ***)arr, n, ar_str(b, p, len));
        p = end ? end + 1 : p + len;
    }
}

Onnx__NodeProto *onnx_build_node(onnx_build *b, const char *op, const char *name,
                                 const char *inputs, const char *outputs)
{
    Onnx__NodeProto *n = ar(b, sizeof *n);
    if (!n)
        return NULL;
    onnx__node_proto__init(n);
    n->op_type = ar_str(b, op, strlen(op));
    n->name = ar_str(b, name, strlen(name));
    names(b, inputs, &n->input, &n->n_input);
    names(b, outputs, &n->output, &n->n_output);
    push(b, (void ***)&b->graph.node, &b->graph.n_node, n);
    return b->failed ? NULL : n;
}

static Onnx__AttributeProto *attr(onnx_build *b, Onnx__NodeProto *n, const char *key, int type)
{
    Onnx__AttributeProto *a = n ? ar(b, sizeof *a) : NULL;
    if (!a)
        return NULL;
    onnx__attribute_proto__init(a);
    a->name = ar_str(b, key, strlen(key));
    a->has_type = 1;
    a->type = type;
    push(b, (void ***)&n->attribute, &n->n_attribute, a);
    return b->failed ? NULL : a;
}

void onnx_build_attr_i(onnx_build *b, Onnx__NodeProto *n, const char *key, int64_t v)
{
    Onnx__AttributeProto *a = attr(b, n, key, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a) {
        a->has_i = 1;
        a->i = v;
    }
}

void onnx_build_attr_f(onnx_build *b, Onnx__NodeProto *n, const char *key, float v)
{
    Onnx__AttributeProto *a = attr(b, n, key, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a) {
        a->has_f = 1;
        a->f = v;
    }
}

void onnx_build_attr_ints(onnx_build *b, Onnx__NodeProto *n, const char *key, const int64_t *v,
                          int count)
{
    Onnx__AttributeProto *a = attr(b, n, key, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    int64_t *p = a ? ar(b, (size_t)count * sizeof *p) : NULL;
    if (!p)
        return;
    memcpy(p, v, (size_t)count * sizeof *p);
    a->n_ints = (size_t)count;
    a->ints = p;
}

void onnx_build_attr_s(onnx_build *b, Onnx__NodeProto *n, const char *key, const char *s)
{
    Onnx__AttributeProto *a = attr(b, n, key, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    if (a && (a->s.data = (uint8_t *)ar_str(b, s, strlen(s)))) {
        a->has_s = 1;
        a->s.len = strlen(s);
    }
}

void onnx_build_attr_t(onnx_build *b, Onnx__NodeProto *n, const char *key, Onnx__TensorProto *t)
{
    Onnx__AttributeProto *a = t ? attr(b, n, key, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR) : NULL;
    if (a)
        a->t = t;
}

Onnx__ModelProto *onnx_build_model(onnx_build *b)
{
    return b->failed ? NULL : &b->model;
}

int onnx_build_pack(onnx_build *b, uint8_t **out, size_t *n, kd_err *e)
{
    if (b->failed)
        return kd_err_set(e, KD_ENOMEM, "onnx: out of memory building a model");
    *n = onnx__model_proto__get_packed_size(&b->model);
    if (!(*out = kd_malloc(*n ? *n : 1)))
        return kd_err_set(e, KD_ENOMEM, "onnx: out of memory serializing %zu bytes", *n);
    onnx__model_proto__pack(&b->model, *out);
    return KD_OK;
}

int onnx_build_write(onnx_build *b, const char *path, kd_err *e)
{
    if (b->failed)
        return kd_err_set(e, KD_ENOMEM, "onnx: out of memory building a model");
    return onnx_model_write(path, &b->model, e);
}
