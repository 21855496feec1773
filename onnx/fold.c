/* onnx/fold — operators computed once at load: Constant, and the shape
 * arithmetic PyTorch writes for x.view(x.size(0), -1) (Shape -> Gather ->
 * Unsqueeze -> Concat -> Reshape).  The batch size is unknown at load: Shape
 * gives it as OX_BATCH, which only Reshape may consume. */
#include <string.h>

#include "internal.h"

/* A new constant output 0 of kind, rank and n values (allocated). */
static ox_value *const_out(ox_ctx *c, const Onnx__NodeProto *n, ox_kind kind, size_t count,
                           kd_err *e)
{
    if (n->n_output != 1) {
        kd_err_set(e, KD_EFORMAT, "must have one output");
        return NULL;
    }
    size_t bytes = (count ? count : 1) * (kind == OX_FLOAT ? sizeof(float) : sizeof(int64_t));
    ox_value *v = ox_fold_budget(c, bytes, e) == KD_OK ? ox_add(c, n->output[0], e) : NULL;
    if (!v)
        return NULL;
    v->kind = kind;
    v->n = count;
    void *p = kd_malloc(bytes);
    if (!p) {
        kd_err_set(e, KD_ENOMEM, "out of memory for %zu values", count);
        return NULL;
    }
    if (kind == OX_FLOAT)
        v->f = p;
    else
        v->i = p;
    return v;
}

static int op_constant(ox_ctx *c, const Onnx__NodeProto *n, kd_err *e)
{
    const Onnx__AttributeProto *a;
    ox_value *v;
    if ((a = ox_attr(n, "value")) && a->t) {
        if (n->n_output != 1 || !(v = ox_add(c, n->output[0], e)))
            return n->n_output != 1 ? kd_err_set(e, KD_EFORMAT, "must have one output") : e->code;
        return ox_tensor_decode(a->t, "its value", v, e);
    }
    if ((a = ox_attr(n, "value_float")) && a->has_f) {
        if (!(v = const_out(c, n, OX_FLOAT, 1, e)))
            return e->code;
        v->f[0] = a->f;
    } else if ((a = ox_attr(n, "value_int")) && a->has_i) {
        if (!(v = const_out(c, n, OX_INT, 1, e)))
            return e->code;
        v->i[0] = a->i;
    } else if ((a = ox_attr(n, "value_floats")) || (a = ox_attr(n, "value_ints"))) {
        int is_f = !strcmp(a->name, "value_floats");
        size_t k = is_f ? a->n_floats : a->n_ints;
        if (!(v = const_out(c, n, is_f ? OX_FLOAT : OX_INT, k, e)))
            return e->code;
        if (k) /* an empty list has no array (memcpy from NULL is undefined even for 0 bytes) */
            memcpy(is_f ? (void *)v->f : (void *)v->i, is_f ? (void *)a->floats : (void *)a->ints,
                   k * (is_f ? sizeof(float) : sizeof(int64_t)));
        v->rank = 1;
        v->dims[0] = (int64_t)k;
    } else {
        return kd_err_set(e, KD_ECONFIG, "only a tensor, float(s) or int(s) value is supported");
    }
    return KD_OK;
}

/* Shape of the live activation: [batch, C(, H, W)], sliced by start/end. */
static int op_shape(ox_ctx *c, const Onnx__NodeProto *n, kd_err *e)
{
    if (!ox_live_in(c, n, 0, e))
        return e->code;
    int64_t d[4] = {OX_BATCH, c->shape.c, c->shape.h, c->shape.w}, r = c->rank;
    int64_t lo = ox_attr_i(n, "start", 0), hi = ox_attr_i(n, "end", r);
    lo = lo < 0 ? lo + r : lo;
    hi = hi < 0 ? hi + r : hi;
    lo = lo < 0 ? 0 : lo > r ? r : lo;
    hi = hi < lo ? lo : hi > r ? r : hi;
    ox_value *v = const_out(c, n, OX_INT, (size_t)(hi - lo), e);
    if (!v)
        return e->code;
    memcpy(v->i, d + lo, (size_t)(hi - lo) * sizeof *v->i);
    v->rank = 1;
    v->dims[0] = hi - lo;
    return KD_OK;
}

/* Gather along axis 0 of a list of int64 with constant indices. */
static int op_gather(ox_ctx *c, const Onnx__NodeProto *n, kd_err *e)
{
    ox_value *d, *ix;
    if (!(d = ox_const_in(c, n, 0, OX_INT, e)) || !(ix = ox_const_in(c, n, 1, OX_INT, e)))
        return e->code;
    int64_t axis = ox_attr_i(n, "axis", 0);
    if (d->rank != 1 || (axis != 0 && axis != -1) || ix->rank > 1)
        return kd_err_set(e, KD_ECONFIG, "only a gather from a list of int64 (a shape) is "
                          "supported");
    int64_t len = (int64_t)d->n;
    ox_value *v = const_out(c, n, OX_INT, ix->n, e);
    if (!v)
        return e->code;
    v->rank = ix->rank;
    v->dims[0] = (int64_t)ix->n;
    for (size_t k = 0; k < ix->n; k++) {
        int64_t j = ix->i[k] < 0 ? ix->i[k] + len : ix->i[k];
        if (j < 0 || j >= len)
            return kd_err_set(e, KD_EFORMAT, "index %lld is out of range [0, %lld)",
                              (long long)ix->i[k], (long long)len);
        v->i[k] = d->i[j];
    }
    return KD_OK;
}

/* Unsqueeze of a constant: axes from the attribute (opset < 13) or input 1. */
static int op_unsqueeze(ox_ctx *c, const Onnx__NodeProto *n, kd_err *e)
{
    ox_value *x = ox_in(c, n, 0, e), *ax;
    int64_t axes[OX_MAX_RANK];
    int na = ox_attr_ints(n, "axes", axes, OX_MAX_RANK);
    if (!x)
        return e->code;
    if (x->kind == OX_LIVE)
        return kd_err_set(e, KD_ECONFIG, "only an unsqueeze of a constant is supported");
    if (na == 0 && n->n_input > 1) {
        if (!(ax = ox_const_in(c, n, 1, OX_INT, e)) ||
            ox_ints(ax, axes, OX_MAX_RANK, "axes", e) != KD_OK)
            return e->code;
        na = (int)ax->n;
    }
    int r = x->rank + na;
    if (na <= 0 || r > OX_MAX_RANK)
        return kd_err_set(e, KD_ECONFIG, "needs 1 to %d axes", OX_MAX_RANK - x->rank);
    int one[OX_MAX_RANK] = {0};
    for (int k = 0; k < na; k++) {
        int64_t a = axes[k] < 0 ? axes[k] + r : axes[k];
        if (a < 0 || a >= r || one[a])
            return kd_err_set(e, KD_EFORMAT, "axis %lld is out of range or repeated",
                              (long long)axes[k]);
        one[a] = 1;
    }
    ox_value *v = const_out(c, n, x->kind, x->n, e);
    if (!v)
        return e->code;
    if (x->n)
        memcpy(x->kind == OX_FLOAT ? (void *)v->f : (void *)v->i,
               x->kind == OX_FLOAT ? (void *)x->f : (void *)x->i,
               x->n * (x->kind == OX_FLOAT ? sizeof(float) : sizeof(int64_t)));
    v->rank = r;
    for (int k = 0, j = 0; k < r; k++)
        v->dims[k] = one[k] ? 1 : x->dims[j++];
    return KD_OK;
}

/* Concat of constant int64 lists along axis 0. */
static int op_concat(ox_ctx *c, const Onnx__NodeProto *n, kd_err *e)
{
    int64_t axis = ox_attr_i(n, "axis", 0);
    size_t total = 0;
    if (n->n_input < 1 || (axis != 0 && axis != -1))
        return kd_err_set(e, KD_ECONFIG, "only a concat of int64 lists (a shape) is supported");
    for (size_t k = 0; k < n->n_input; k++) {
        ox_value *x = ox_const_in(c, n, k, OX_INT, e);
        if (!x)
            return e->code;
        if (x->rank != 1 || x->n > OX_MAX_RANK)
            return kd_err_set(e, KD_ECONFIG, "only a concat of int64 lists (a shape) is supported");
        total += x->n;
    }
    ox_value *v = const_out(c, n, OX_INT, total, e);
    if (!v)
        return e->code;
    v->rank = 1;
    v->dims[0] = (int64_t)total;
    for (size_t k = 0, at = 0; k < n->n_input; k++) {
        const ox_value *x = ox_find(c, n->input[k]);
        if (x->n)
            memcpy(v->i + at, x->i, x->n * sizeof *v->i);
        at += x->n;
    }
    return KD_OK;
}

ox_op_fn ox_fold_find(const char *op_type)
{
    static const struct {
        const char *name;
        ox_op_fn fn;
    } ops[] = {
        {"Constant", op_constant}, {"Shape", op_shape},   {"Gather", op_gather},
        {"Unsqueeze", op_unsqueeze}, {"Concat", op_concat},
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (!strcmp(ops[i].name, op_type))
            return ops[i].fn;
    return NULL;
}
