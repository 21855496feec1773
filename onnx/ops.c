/* onnx/ops — the operators that extend the chain: each checks its node
 * against the live activation's shape and adds an nn layer (or folds into
 * the last one: a bias Add), in nn's layouts:
 *   Gemm/MatMul -> dense, W (units x fan_in) row-major: ONNX's B is (K x N),
 *                  transposed here unless transB = 1; alpha and beta folded in
 *   Conv        -> conv2d, W [filters][cin][k][k]: ONNX's own layout, copied
 *   BatchNormalization -> batchnorm: gamma, beta, running mean | var
 * Errors are plain: the walk (import.c) prefixes the node's name and type. */
#include <math.h>
#include <string.h>

#include "internal.h"

/* ---- inputs and outputs -------------------------------------------------------- */

ox_value *ox_in(ox_ctx *c, const Onnx__NodeProto *n, size_t i, kd_err *e)
{
    if (i >= n->n_input || !n->input[i][0]) {
        kd_err_set(e, KD_ECONFIG, "input %zu is missing", i);
        return NULL;
    }
    ox_value *v = ox_find(c, n->input[i]);
    if (!v)
        kd_err_set(e, KD_EFORMAT,
                   "input '%s' is produced by no earlier node, initializer or graph input "
                   "(dangling, or the graph is not in order)", n->input[i]);
    return v;
}

ox_value *ox_live_in(ox_ctx *c, const Onnx__NodeProto *n, size_t i, kd_err *e)
{
    ox_value *v = ox_in(c, n, i, e);
    if (!v)
        return NULL;
    if (v->kind != OX_LIVE) {
        kd_err_set(e, KD_ECONFIG, "input '%s' is a constant; kdbench runs it only on the data",
                   v->name);
        return NULL;
    }
    if (c->ended) {
        kd_err_set(e, KD_ECONFIG, "follows the Softmax, which must be the last node");
        return NULL;
    }
    if (v->step != c->step) {
        kd_err_set(e, KD_ECONFIG,
                   "reads '%s', an earlier activation than the latest: the graph is not a chain "
                   "(branches and skip connections are not supported)", v->name);
        return NULL;
    }
    return v;
}

ox_value *ox_const_in(ox_ctx *c, const Onnx__NodeProto *n, size_t i, ox_kind kind, kd_err *e)
{
    ox_value *v = ox_in(c, n, i, e);
    if (v && v->kind != kind) {
        kd_err_set(e, KD_ECONFIG, "input '%s' must be a constant %s tensor", v->name,
                   kind == OX_FLOAT ? "float" : "int64");
        return NULL;
    }
    return v;
}

/* Output 0 becomes the new live activation (the chain's rank and shape are set). */
int ox_set_live(ox_ctx *c, const Onnx__NodeProto *n, kd_err *e)
{
    if (n->n_output < 1)
        return kd_err_set(e, KD_EFORMAT, "has no output");
    for (size_t i = 1; i < n->n_output; i++)
        if (n->output[i][0])
            return kd_err_set(e, KD_ECONFIG, "its output %zu ('%s') is not supported", i,
                              n->output[i]);
    ox_value *v = ox_add(c, n->output[0], e);
    if (!v)
        return e->code;
    v->kind = OX_LIVE;
    v->step = ++c->step;
    v->rank = c->rank;
    return KD_OK;
}

/* ---- attributes of windows (Conv, MaxPool) -------------------------------------- */

/* stride and symmetric pad of a 2-D window: strides [s, s], pads [p, p, p, p],
 * dilations 1, auto_pad NOTSET or VALID: what nn's layers compute. */
static int window_attrs(const Onnx__NodeProto *n, int *stride, int *pad, kd_err *e)
{
    int64_t v[8];
    const Onnx__AttributeProto *ap = ox_attr(n, "auto_pad");
    if (ap && ap->has_s && !(ap->s.len == 0 || (ap->s.len == 6 && !memcmp(ap->s.data, "NOTSET", 6)) ||
                             (ap->s.len == 5 && !memcmp(ap->s.data, "VALID", 5))))
        return kd_err_set(e, KD_ECONFIG, "auto_pad %.*s is not supported (explicit pads only)",
                          (int)(ap->s.len > 32 ? 32 : ap->s.len), (const char *)ap->s.data);
    int k = ox_attr_ints(n, "dilations", v, 8);
    for (int i = 0; i < k; i++)
        if (v[i] != 1)
            return kd_err_set(e, KD_ECONFIG, "dilations other than 1 are not supported");
    k = ox_attr_ints(n, "strides", v, 8);
    if (k < 0 || (k && (k != 2 || v[0] != v[1] || v[0] < 1 || v[0] > 256)))
        return kd_err_set(e, KD_ECONFIG, "strides must be two equal values in [1, 256]");
    *stride = k ? (int)v[0] : 1;
    k = ox_attr_ints(n, "pads", v, 8);
    if (k < 0 || (k && (k != 4 || v[0] != v[1] || v[0] != v[2] || v[0] != v[3] || v[0] < 0 ||
                        v[0] > 256)))
        return kd_err_set(e, KD_ECONFIG, "pads must be four equal values in [0, 256]");
    *pad = k ? (int)v[0] : 0;
    return KD_OK;
}

/* output size of a window k, stride s, pad p over in; -1 when it does not fit */
static int window_out(int in, int k, int s, int p)
{
    return in + 2 * p < k ? -1 : (in + 2 * p - k) / s + 1;
}

/* ---- dense: Gemm, MatMul ------------------------------------------------------------ */

/* A dense layer from B (K x N, or N x K when tb) times alpha; bias (size N or
 * 1, broadcast) times beta, or zeros. */
static int dense_add(ox_ctx *c, const Onnx__NodeProto *n, const ox_value *b, int tb, float alpha,
                     const ox_value *bias, float beta, kd_err *e)
{
    if (c->rank != 2)
        return kd_err_set(e, KD_ECONFIG, "input must be a matrix (N x features): flatten first");
    if (b->rank != 2)
        return kd_err_set(e, KD_ECONFIG, "weights '%s' must be a matrix", b->name);
    int64_t K = tb ? b->dims[1] : b->dims[0], N = tb ? b->dims[0] : b->dims[1];
    size_t fan_in = nn_shape_size(c->shape);
    if (K != (int64_t)fan_in)
        return kd_err_set(e, KD_ECONFIG, "weights '%s' take %lld inputs; the input has %zu",
                          b->name, (long long)K, fan_in);
    if (N < 1 || N > (1 << 24))
        return kd_err_set(e, KD_ECONFIG, "%lld outputs is out of range", (long long)N);
    if (bias && !(bias->n == (size_t)N || bias->n == 1))
        return kd_err_set(e, KD_ECONFIG, "bias '%s' has %zu values for %lld outputs", bias->name,
                          bias->n, (long long)N);
    nn_layer_spec s = {.kind = NN_DENSE, .units = (int)N};
    ox_layer *l = ox_layer_add(c, &s, (size_t)N * K, (size_t)N, 0, e);
    if (!l)
        return e->code;
    for (int64_t u = 0; u < N; u++)
        for (int64_t k = 0; k < K; k++)
            l->w[u * K + k] = alpha * (tb ? b->f[u * K + k] : b->f[k * N + u]);
    for (int64_t u = 0; bias && u < N; u++)
        l->b[u] = beta * bias->f[bias->n == 1 ? 0 : u];
    c->shape = (nn_shape){(int)N, 1, 1};
    c->bias_layer = c->nlayers - 1;
    return ox_set_live(c, n, e);
}

static int op_gemm(ox_ctx *c, const Onnx__NodeProto *n, kd_err *e)
{
    ox_value *b, *bias = NULL;
    if (!ox_live_in(c, n, 0, e) || !(b = ox_const_in(c, n, 1, OX_FLOAT, e)))
        return e->code;
    if (n->n_input > 2 && n->input[2][0] && !(bias = ox_const_in(c, n, 2, OX_FLOAT, e)))
        return e->code;
    if (ox_attr_i(n, "transA", 0))
        return kd_err_set(e, KD_ECONFIG, "transA = 1 is not supported");
    int64_t tb = ox_attr_i(n, "transB", 0);
    if (tb != 0 && tb != 1)
        return kd_err_set(e, KD_EFORMAT, "transB must be 0 or 1");
    return dense_add(c, n, b, (int)tb, ox_attr_f(n, "alpha", 1), bias, ox_attr_f(n, "beta", 1), e);
}

static int op_matmul(ox_ctx *c, const Onnx__NodeProto *n, kd_err *e)
{
    ox_value *b;
    if (!ox_live_in(c, n, 0, e) || !(b = ox_const_in(c, n, 1, OX_FLOAT, e)))
        return e->code;
    return dense_add(c, n, b, 0, 1, NULL, 1, e);
}

/* A constant added to a dense or conv layer's output folds into its bias. */
static int op_add(ox_ctx *c, const Onnx__NodeProto *n, kd_err *e)
{
    ox_value *a = ox_in(c, n, 0, e), *b = a ? ox_in(c, n, 1, e) : NULL;
    if (!b)
        return e->code;
    int swap = a->kind != OX_LIVE;
    ox_value *k = swap ? a : b;
    if (!ox_live_in(c, n, swap ? 1 : 0, e) || !(k = ox_const_in(c, n, swap ? 0 : 1, OX_FLOAT, e)))
        return e->code;
    if (c->bias_layer < 0)
        return kd_err_set(e, KD_ECONFIG,
                          "only a constant bias added to a Gemm, MatMul or Conv output is supported");
    ox_layer *l = &c->layers[c->bias_layer];
    size_t ch = l->nb;
    /* per output: [N] or [1, N] after a dense layer; [C,1,1] or [1,C,1,1] after a conv */
    int ok = k->n == 1;
    if (!ok && k->n == ch) {
        int64_t lead = 1;
        for (int i = 0; i < k->rank; i++)
            if (k->dims[i] != 1) {
                lead = k->rank - i;
                break;
            }
        ok = l->spec.kind == NN_DENSE ? lead == 1 : lead == 3;
    }
    if (!ok)
        return kd_err_set(e, KD_ECONFIG, "'%s' (%zu values) is not a bias of the %zu outputs",
                          k->name, k->n, ch);
    for (size_t u = 0; u < ch; u++)
        l->b[u] += k->f[k->n == 1 ? 0 : u];
    if (ox_set_live(c, n, e) != KD_OK)
        return e->code;
    c->bias_layer = (int)(l - c->layers);
    return KD_OK;
}

/* ---- conv, batchnorm, pooling --------------------------------------------------- */

static int op_conv(ox_ctx *c, const Onnx__NodeProto *n, kd_err *e)
{
    ox_value *w, *bias = NULL;
    int stride, pad;
    if (!ox_live_in(c, n, 0, e) || !(w = ox_const_in(c, n, 1, OX_FLOAT, e)))
        return e->code;
    if (n->n_input > 2 && n->input[2][0] && !(bias = ox_const_in(c, n, 2, OX_FLOAT, e)))
        return e->code;
    if (c->rank != 4)
        return kd_err_set(e, KD_ECONFIG, "input must be a 4-D NCHW tensor");
    if (ox_attr_i(n, "group", 1) != 1)
        return kd_err_set(e, KD_ECONFIG, "group != 1 is not supported");
    if (window_attrs(n, &stride, &pad, e) != KD_OK)
        return e->code;
    if (w->rank != 4 || w->dims[2] != w->dims[3] || w->dims[2] < 1 || w->dims[2] > 256)
        return kd_err_set(e, KD_ECONFIG, "weights '%s' must be [filters, channels, k, k] "
                          "(square, k <= 256)", w->name);
    int64_t ks[2], F = w->dims[0], k = w->dims[2];
    int nk = ox_attr_ints(n, "kernel_shape", ks, 2);
    if (nk < 0 || (nk && (nk != 2 || ks[0] != k || ks[1] != k)))
        return kd_err_set(e, KD_EFORMAT, "kernel_shape disagrees with the weights");
    if (w->dims[1] != c->shape.c)
        return kd_err_set(e, KD_ECONFIG, "weights '%s' take %lld channels; the input has %d",
                          w->name, (long long)w->dims[1], c->shape.c);
    if (F < 1 || F > 65536 || (bias && bias->n != (size_t)F))
        return kd_err_set(e, KD_ECONFIG, "%lld filters (bias of %zu) is out of range",
                          (long long)F, bias ? bias->n : (size_t)F);
    int oh = window_out(c->shape.h, (int)k, stride, pad), ow = window_out(c->shape.w, (int)k, stride, pad);
    if (oh < 1 || ow < 1)
        return kd_err_set(e, KD_ECONFIG, "kernel %lld does not fit the padded input %dx%d",
                          (long long)k, c->shape.h + 2 * pad, c->shape.w + 2 * pad);
    nn_layer_spec s = {.kind = NN_CONV2D, .filters = (int)F, .kernel = (int)k, .stride = stride,
                       .pad = pad};
    ox_layer *l = ox_layer_add(c, &s, w->n, (size_t)F, 0, e);
    if (!l)
        return e->code;
    memcpy(l->w, w->f, w->n * sizeof *l->w); /* [F][C][k][k] in both */
    if (bias)
        memcpy(l->b, bias->f, (size_t)F * sizeof *l->b);
    c->shape = (nn_shape){(int)F, oh, ow};
    c->bias_layer = c->nlayers - 1;
    return ox_set_live(c, n, e);
}

static int op_batchnorm(ox_ctx *c, const Onnx__NodeProto *n, kd_err *e)
{
    ox_value *p[4];
    if (!ox_live_in(c, n, 0, e))
        return e->code;
    for (int i = 0; i < 4; i++)
        if (!(p[i] = ox_const_in(c, n, (size_t)i + 1, OX_FLOAT, e)))
            return e->code;
    if (ox_attr_i(n, "training_mode", 0) || !ox_attr_i(n, "spatial", 1))
        return kd_err_set(e, KD_ECONFIG, "only inference mode (training_mode 0, spatial 1) is "
                          "supported");
    size_t C = (size_t)c->shape.c;
    for (int i = 0; i < 4; i++)
        if (p[i]->n != C)
            return kd_err_set(e, KD_ECONFIG, "'%s' has %zu values for %zu channels", p[i]->name,
                              p[i]->n, C);
    for (size_t i = 0; i < C; i++)
        if (!(p[3]->f[i] >= 0))
            return kd_err_set(e, KD_ECONFIG, "variance '%s' has a negative value", p[3]->name);
    float eps = ox_attr_f(n, "epsilon", 1e-5f), mom = ox_attr_f(n, "momentum", 0.9f);
    if (!(eps >= 0 && eps < 1) || !(mom >= 0 && mom <= 1))
        return kd_err_set(e, KD_ECONFIG, "epsilon must be in [0, 1) and momentum in [0, 1]");
    /* nn's 0 means "default": an exact 0 becomes the smallest float */
    nn_layer_spec s = {.kind = NN_BATCHNORM, .eps = eps > 0 ? eps : 1e-38f,
                       .momentum = 1 - mom > 0 ? 1 - mom : 1e-7f}; /* ONNX weighs the old stats */
    ox_layer *l = ox_layer_add(c, &s, C, C, 2 * C, e);
    if (!l)
        return e->code;
    memcpy(l->w, p[0]->f, C * sizeof *l->w);
    memcpy(l->b, p[1]->f, C * sizeof *l->b);
    memcpy(l->buf, p[2]->f, C * sizeof *l->buf);
    memcpy(l->buf + C, p[3]->f, C * sizeof *l->buf);
    c->bias_layer = -1;
    return ox_set_live(c, n, e);
}

static int op_maxpool(ox_ctx *c, const Onnx__NodeProto *n, kd_err *e)
{
    int stride, pad;
    int64_t ks[2];
    if (!ox_live_in(c, n, 0, e))
        return e->code;
    if (c->rank != 4)
        return kd_err_set(e, KD_ECONFIG, "input must be a 4-D NCHW tensor");
    if (window_attrs(n, &stride, &pad, e) != KD_OK)
        return e->code;
    if (ox_attr_ints(n, "kernel_shape", ks, 2) != 2 || ks[0] != ks[1] || ks[0] < 1 || ks[0] > 256)
        return kd_err_set(e, KD_ECONFIG, "kernel_shape must be two equal values in [1, 256]");
    if (pad || ox_attr_i(n, "ceil_mode", 0))
        return kd_err_set(e, KD_ECONFIG, "padding and ceil_mode are not supported");
    int k = (int)ks[0], oh = window_out(c->shape.h, k, stride, 0),
        ow = window_out(c->shape.w, k, stride, 0);
    if (oh < 1 || ow < 1)
        return kd_err_set(e, KD_ECONFIG, "window %d is larger than the input %dx%d", k,
                          c->shape.h, c->shape.w);
    nn_layer_spec s = {.kind = NN_MAXPOOL2D, .kernel = k, .stride = stride};
    if (!ox_layer_add(c, &s, 0, 0, 0, e))
        return e->code;
    c->shape = (nn_shape){c->shape.c, oh, ow};
    c->bias_layer = -1;
    return ox_set_live(c, n, e);
}

/* ---- element-wise and shape ---------------------------------------------------------- */

static int op_relu(ox_ctx *c, const Onnx__NodeProto *n, kd_err *e)
{
    nn_layer_spec s = {.kind = NN_RELU};
    if (!ox_live_in(c, n, 0, e) || !ox_layer_add(c, &s, 0, 0, 0, e))
        return e->code;
    c->bias_layer = -1;
    return ox_set_live(c, n, e);
}

/* (N, C, H, W) -> (N, C*H*W): nn's flatten; a matrix stays as it is. */
static int flatten_to_matrix(ox_ctx *c, const Onnx__NodeProto *n, kd_err *e)
{
    if (c->rank == 4) {
        nn_layer_spec s = {.kind = NN_FLATTEN};
        if (!ox_layer_add(c, &s, 0, 0, 0, e))
            return e->code;
        c->shape = (nn_shape){(int)nn_shape_size(c->shape), 1, 1};
        c->rank = 2;
        c->bias_layer = -1;
    }
    return ox_set_live(c, n, e);
}

static int op_flatten(ox_ctx *c, const Onnx__NodeProto *n, kd_err *e)
{
    if (!ox_live_in(c, n, 0, e))
        return e->code;
    int64_t axis = ox_attr_i(n, "axis", 1);
    if (axis < 0)
        axis += c->rank;
    if (axis != 1)
        return kd_err_set(e, KD_ECONFIG, "only axis 1 (keep the batch) is supported");
    return flatten_to_matrix(c, n, e);
}

/* Only a flatten: the target is [batch, -1 or C*H*W] where batch is the
 * folded batch size (Shape -> Gather), 0 (copy), the input's fixed batch, or
 * -1 beside an explicit size. */
static int op_reshape(ox_ctx *c, const Onnx__NodeProto *n, kd_err *e)
{
    ox_value *t;
    int64_t d[OX_MAX_RANK];
    if (!ox_live_in(c, n, 0, e) || !(t = ox_const_in(c, n, 1, OX_INT, e)) ||
        ox_ints(t, d, OX_MAX_RANK, "the target shape", e) != KD_OK)
        return e->code;
    int64_t size = (int64_t)nn_shape_size(c->shape), zero_ok = !ox_attr_i(n, "allowzero", 0);
    int ok = t->n == 2 && (d[1] == -1 || d[1] == size);
    if (ok)
        ok = d[0] == OX_BATCH || (d[0] == 0 && zero_ok) || (d[0] == -1 && d[1] == size) ||
             (c->batch > 0 && d[0] == c->batch && d[1] == -1) || (d[0] == 1 && d[1] == size);
    if (!ok) {
        char s[128] = "";
        size_t len = 0;
        for (size_t i = 0; i < t->n && i < 6 && len < sizeof s; i++)
            len += (size_t)snprintf(s + len, sizeof s - len, "%s%lld", i ? ", " : "",
                                    d[i] == OX_BATCH ? -2LL : (long long)d[i]);
        return kd_err_set(e, KD_ECONFIG,
                          "reshape to [%s] is not a flatten to (batch, %lld); only flattening "
                          "reshapes are supported", s, (long long)size);
    }
    return flatten_to_matrix(c, n, e);
}

/* Dropout (at inference) and Identity: the output is the input. */
static int op_identity(ox_ctx *c, const Onnx__NodeProto *n, kd_err *e)
{
    ox_value *x = ox_in(c, n, 0, e), *y;
    if (!x)
        return e->code;
    if (!strcmp(n->op_type, "Dropout") && n->n_input > 2 && n->input[2][0]) {
        ox_value *t = ox_const_in(c, n, 2, OX_INT, e); /* training_mode */
        if (!t || t->n != 1 || t->i[0])
            return t ? kd_err_set(e, KD_ECONFIG, "only inference mode is supported") : e->code;
    }
    if (x->kind == OX_LIVE && !ox_live_in(c, n, 0, e))
        return e->code;
    for (size_t i = 1; i < n->n_output; i++)
        if (n->output[i][0])
            return kd_err_set(e, KD_ECONFIG, "its output %zu ('%s') is not supported", i,
                              n->output[i]);
    if (n->n_output < 1 || !(y = ox_add(c, n->output[0], e)))
        return n->n_output < 1 ? kd_err_set(e, KD_EFORMAT, "has no output") : e->code;
    const char *name = y->name;
    *y = *x; /* the same activation, or a copy of the constant */
    y->name = name;
    y->f = NULL;
    y->i = NULL;
    size_t bytes = x->n * (x->kind == OX_FLOAT ? sizeof(float) : sizeof(int64_t));
    if (x->kind != OX_LIVE && ox_fold_budget(c, bytes, e) != KD_OK)
        return e->code;
    if (x->kind == OX_FLOAT && !(y->f = kd_malloc(bytes ? bytes : 1)))
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    if (x->kind == OX_INT && !(y->i = kd_malloc(bytes ? bytes : 1)))
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    if (x->kind != OX_LIVE && bytes)
        memcpy(x->kind == OX_FLOAT ? (void *)y->f : (void *)y->i,
               x->kind == OX_FLOAT ? (void *)x->f : (void *)x->i, bytes);
    return KD_OK;
}

/* Softmax at the end: dropped, since distillation needs the logits. */
static int op_softmax(ox_ctx *c, const Onnx__NodeProto *n, kd_err *e)
{
    if (!ox_live_in(c, n, 0, e))
        return e->code;
    int64_t axis = ox_attr_i(n, "axis", c->opset < 13 ? 1 : -1);
    if (c->rank != 2 || (axis != 1 && axis != -1))
        return kd_err_set(e, KD_ECONFIG, "only a softmax over the classes of (N, classes) is "
                          "supported");
    ox_value *y;
    if (n->n_output != 1 || !(y = ox_add(c, n->output[0], e)))
        return n->n_output != 1 ? kd_err_set(e, KD_EFORMAT, "must have one output") : e->code;
    y->kind = OX_LIVE;
    y->step = c->step;
    c->softmax_out = n->output[0];
    c->ended = 1;
    return KD_OK;
}

/* ---- the table ------------------------------------------------------------------- */

ox_op_fn ox_op_find(const char *op_type)
{
    static const struct {
        const char *name;
        ox_op_fn fn;
    } ops[] = {
        {"Gemm", op_gemm},           {"MatMul", op_matmul},   {"Add", op_add},
        {"Conv", op_conv},           {"BatchNormalization", op_batchnorm},
        {"MaxPool", op_maxpool},     {"Relu", op_relu},       {"Flatten", op_flatten},
        {"Reshape", op_reshape},     {"Dropout", op_identity}, {"Identity", op_identity},
        {"Softmax", op_softmax},
    };
    for (size_t i = 0; op_type && i < sizeof ops / sizeof ops[0]; i++)
        if (!strcmp(ops[i].name, op_type))
            return ops[i].fn;
    return op_type ? ox_fold_find(op_type) : NULL;
}
