/* onnx/tensor — named values of an import, tensors decoded from a file
 * (initializers and Constant nodes), node attributes. */
#include <math.h>
#include <string.h>

#include "internal.h"

ox_value *ox_find(ox_ctx *c, const char *name)
{
    if (!name)
        return NULL;
    for (int i = c->nv - 1; i >= 0; i--)
        if (!strcmp(c->v[i]->name, name))
            return c->v[i];
    return NULL;
}

ox_value *ox_add(ox_ctx *c, const char *name, kd_err *e)
{
    if (!name || !name[0]) {
        kd_err_set(e, KD_EFORMAT, "a value has no name");
        return NULL;
    }
    if (ox_find(c, name)) {
        kd_err_set(e, KD_EFORMAT, "value '%s' is defined twice", name);
        return NULL;
    }
    if (c->nv == c->capv) {
        int cap = c->capv ? 2 * c->capv : 64;
        ox_value **v = kd_realloc(c->v, (size_t)cap * sizeof *v);
        if (!v) {
            kd_err_set(e, KD_ENOMEM, "out of memory for %d values", cap);
            return NULL;
        }
        c->v = v;
        c->capv = cap;
    }
    /* one block per value: pointers to values stay valid as more are added */
    ox_value *v = kd_calloc(1, sizeof *v);
    if (!v) {
        kd_err_set(e, KD_ENOMEM, "out of memory for a value");
        return NULL;
    }
    c->v[c->nv++] = v;
    v->name = name;
    return v;
}

void ox_values_free(ox_ctx *c)
{
    for (int i = 0; i < c->nv; i++) {
        kd_free(c->v[i]->f);
        kd_free(c->v[i]->i);
        kd_free(c->v[i]);
    }
    kd_free(c->v);
    c->v = NULL;
    c->nv = c->capv = 0;
}

int ox_fold_budget(ox_ctx *c, size_t bytes, kd_err *e)
{
    if (bytes > OX_MAX_FOLDED - c->folded)
        return kd_err_set(e, KD_EFORMAT, "constants made at load exceed %zu bytes",
                          OX_MAX_FOLDED);
    c->folded += bytes;
    return KD_OK;
}

/* ---- tensors ------------------------------------------------------------------- */

static int dims_of(const Onnx__TensorProto *t, const char *what, ox_value *v, kd_err *e)
{
    if (t->n_dims > OX_MAX_RANK)
        return kd_err_set(e, KD_EFORMAT, "%s has %zu dimensions (at most %d)", what, t->n_dims,
                          OX_MAX_RANK);
    size_t n = 1;
    for (size_t i = 0; i < t->n_dims; i++) {
        int64_t d = t->dims[i];
        if (d < 0)
            return kd_err_set(e, KD_EFORMAT, "%s has a negative dimension (%lld)", what,
                              (long long)d);
        /* the product is checked before it can overflow */
        if (d > 0 && n > OX_MAX_ELEMS / (size_t)d)
            return kd_err_set(e, KD_EFORMAT, "%s claims more than %zu values (dimensions too large)",
                              what, OX_MAX_ELEMS);
        n *= (size_t)d;
        v->dims[i] = d;
    }
    v->rank = (int)t->n_dims;
    v->n = n;
    return KD_OK;
}

static uint64_t le_u64(const uint8_t *p, int bytes)
{
    uint64_t x = 0;
    for (int i = bytes - 1; i >= 0; i--)
        x = x << 8 | p[i];
    return x;
}

/* The stored values (float_data / int64_data, or raw_data) against n. */
static int data_of(const Onnx__TensorProto *t, const char *what, ox_value *v, kd_err *e)
{
    int is_f = v->kind == OX_FLOAT;
    size_t esz = is_f ? 4 : 8, have = is_f ? t->n_float_data : t->n_int64_data;
    if (t->has_raw_data && have)
        return kd_err_set(e, KD_EFORMAT, "%s has both raw_data and typed data", what);
    if (t->has_raw_data ? t->raw_data.len != v->n * esz : have != v->n)
        return kd_err_set(e, KD_EFORMAT,
                          "%s: %zu bytes of data for a shape of %zu values (%zu bytes expected)",
                          what, t->has_raw_data ? t->raw_data.len : have * esz, v->n, v->n * esz);
    void *p = kd_malloc((v->n ? v->n : 1) * esz);
    if (!p)
        return kd_err_set(e, KD_ENOMEM, "%s: out of memory for %zu values", what, v->n);
    if (is_f)
        v->f = p;
    else
        v->i = p;
    for (size_t k = 0; k < v->n; k++) {
        if (!t->has_raw_data) {
            if (is_f && !isfinite(v->f[k] = t->float_data[k]))
                return kd_err_set(e, KD_EFORMAT, "%s has a value that is not finite", what);
            else if (!is_f)
                v->i[k] = t->int64_data[k];
            continue;
        }
        uint64_t x = le_u64(t->raw_data.data + k * esz, (int)esz); /* little-endian on any host */
        if (is_f) {
            uint32_t u = (uint32_t)x;
            memcpy(&v->f[k], &u, 4);
            if (!isfinite(v->f[k]))
                return kd_err_set(e, KD_EFORMAT, "%s has a value that is not finite", what);
        } else {
            v->i[k] = (int64_t)x;
        }
    }
    return KD_OK;
}

int ox_tensor_decode(const Onnx__TensorProto *t, const char *what, ox_value *v, kd_err *e)
{
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return kd_err_set(e, KD_ECONFIG, "%s: external data files are not supported", what);
    if (t->segment)
        return kd_err_set(e, KD_ECONFIG, "%s: segmented tensors are not supported", what);
    int dt = t->has_data_type ? t->data_type : 0;
    if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
        v->kind = OX_FLOAT;
    else if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT64)
        v->kind = OX_INT;
    else
        return kd_err_set(e, KD_ECONFIG, "%s: element type %d is not supported (float or int64)",
                          what, dt);
    int rc = dims_of(t, what, v, e);
    return rc != KD_OK ? rc : data_of(t, what, v, e);
}

int ox_ints(const ox_value *v, int64_t *out, int cap, const char *what, kd_err *e)
{
    if (v->kind != OX_INT || v->rank > 1 || v->n > (size_t)cap)
        return kd_err_set(e, KD_ECONFIG, "%s must be a constant list of at most %d int64", what,
                          cap);
    if (v->n) /* an empty value may have no array: memcpy from NULL is undefined */
        memcpy(out, v->i, v->n * sizeof *out);
    return KD_OK;
}

/* ---- attributes ------------------------------------------------------------------ */

const Onnx__AttributeProto *ox_attr(const Onnx__NodeProto *n, const char *name)
{
    for (size_t i = 0; i < n->n_attribute; i++)
        if (n->attribute[i]->name && !strcmp(n->attribute[i]->name, name))
            return n->attribute[i];
    return NULL;
}

int64_t ox_attr_i(const Onnx__NodeProto *n, const char *name, int64_t dflt)
{
    const Onnx__AttributeProto *a = ox_attr(n, name);
    return a && a->has_i ? a->i : dflt;
}

float ox_attr_f(const Onnx__NodeProto *n, const char *name, float dflt)
{
    const Onnx__AttributeProto *a = ox_attr(n, name);
    return a && a->has_f ? a->f : dflt;
}

int ox_attr_ints(const Onnx__NodeProto *n, const char *name, int64_t *out, int cap)
{
    const Onnx__AttributeProto *a = ox_attr(n, name);
    if (!a)
        return 0;
    if (a->n_ints > (size_t)cap)
        return -1;
    if (a->n_ints) /* protobuf-c leaves an empty list's array NULL */
        memcpy(out, a->ints, a->n_ints * sizeof *out);
    return (int)a->n_ints;
}
