/* One layer of an ONNX export.  nn's own kinds map one to one onto ONNX
 * ops; compressed kinds are read through their ops table only (format,
 * dequant, the payload as ops->save writes it):
 *   int8 (static)  QuantizeLinear(in) -> MatMulInteger -> + int32 bias ->
 *                  Cast -> Mul(in_scale * w_scale[r]) [-> QuantizeLinear(out)
 *                  -> DequantizeLinear(out) when kdbench outputs int8]: the
 *                  integer accumulators kdbench's int8 GEMM forms, then the
 *                  float rescale of its epilogue.  The activation codes enter
 *                  MatMulInteger as uint8 (kdbench's int8 code + 128 with the
 *                  zero point + 128: the same q - zero, the same clamp), the
 *                  uint8 x int8 form every runtime's integer kernels take;
 *   int8-dyn       DynamicQuantizeLinear -> MatMulInteger -> Cast ->
 *                  Mul(x_scale * w_scale[r]) -> Add(bias): kdbench's dynamic
 *                  codes are ONNX's uint8 ones shifted by 128 (same scale,
 *                  zero point + 128), so the accumulators are equal;
 *   csr-int8-static QuantizeLinear(in) -> MatMulInteger (its entries as a
 *                  dense int8 matrix, zeros included) -> Cast ->
 *                  Mul(in_scale * scale[r]) -> Add(bias): the static head and
 *                  the dynamic tail;
 *   csr-int8-dyn   int8-dyn's graph with the entries as a dense int8 matrix;
 *   csr-fp32, csr-shared(+huff), csr-int8, int4, int3, int2: their dequantized weights
 *                  (ops->dequant, what forward computes with) as a dense Gemm. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../onnx/build.h"
#include "internal.h"

enum { T_FLOAT = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT };

static const char *format_of(const nn_layer *l) { return l->ops->format ? l->ops->format : "fp32"; }

/* Formats written through their dequantized weights, and the int8 ones. */
static const char *const dense_formats[] = {"csr-fp32", "csr-shared", "csr-shared+huff",
                                            "csr-int8", "int4",       "int3",
                                            "int2"};

static int is_dense_format(const char *f)
{
    for (size_t k = 0; k < sizeof dense_formats / sizeof dense_formats[0]; k++)
        if (!strcmp(f, dense_formats[k]))
            return 1;
    return 0;
}

int ox_layer_check(const nn_model *m, int i, kd_err *e)
{
    const nn_layer *l = &m->layers[i];
    if (nn_layer_is_builtin(l))
        return KD_OK;
    const char *f = format_of(l);
    int q8 = !strcmp(f, "int8") || !strcmp(f, "int8-dyn") || !strcmp(f, "csr-int8-static") ||
             !strcmp(f, "csr-int8-dyn");
    if (l->spec.kind == NN_DENSE && l->ops->dense_like &&
        ((q8 && l->ops->save) || (is_dense_format(f) && l->ops->dequant)))
        return KD_OK;
    const char *why = !strcmp(f, "fp32-fakequant")
                          ? ": it simulates quantization for training; export the model a "
                            "quantize pass made from it (int8 or int4)"
                          : ": ONNX export knows fp32, int8, int8-dyn, int4, int3, int2, "
                            "csr-fp32, csr-int8, csr-int8-static, csr-int8-dyn, csr-shared and "
                            "csr-shared+huff";
    return kd_err_set(e, KD_ECONFIG,
                      "layer %d (%s): kind %s (format %s) cannot be exported to ONNX%s", i,
                      l->spec.name, l->ops->name, f, why);
}

/* ---- naming ------------------------------------------------------------------------ */

/* "NAME.suffix" for layer l's tensors and nodes. */
static const char *nm(char *buf, size_t n, const nn_layer *l, const char *suffix)
{
    snprintf(buf, n, "%s.%s", l->spec.name, suffix);
    return buf;
}

/* A one-input, one-output node from cur to out; out becomes cur. */
static Onnx__NodeProto *step(ox *x, const char *op, const char *node, const char *out,
                             const char *const *extra, int nextra)
{
    const char *in[4] = {x->cur};
    for (int j = 0; j < nextra && j < 3; j++)
        in[1 + j] = extra[j];
    const char *o[1] = {out};
    Onnx__NodeProto *n = onnx_graph_node(x->g, op, node, in, 1 + nextra, o, 1);
    snprintf(x->cur, sizeof x->cur, "%s", out);
    x->last = n;
    return n;
}

void ox_flatten(ox *x, const char *name)
{
    if (x->rank == 2)
        return;
    char node[96], out[96];
    snprintf(node, sizeof node, "%s.flatten", name);
    snprintf(out, sizeof out, "%s.flat", name);
    onnx_node_int(x->g, step(x, "Flatten", node, out, NULL, 0), "axis", 1);
    x->rank = 2;
    x->shape = (nn_shape){(int)nn_shape_size(x->shape), 1, 1};
}

/* [N, F] back to [N, C, H, W] when a spatial layer follows a vector. */
static void to_rank4(ox *x, const nn_layer *l)
{
    if (x->rank == 4)
        return;
    char a[96], b[96], c[96];
    const int64_t dims[1] = {4}, shape[4] = {-1, l->in.c, l->in.h, l->in.w};
    onnx_graph_i64(x->g, nm(a, sizeof a, l, "shape"), dims, 1, shape);
    const char *extra[1] = {a};
    step(x, "Reshape", nm(b, sizeof b, l, "reshape"), nm(c, sizeof c, l, "in4"), extra, 1);
    x->rank = 4;
}

/* ---- nn's kinds -------------------------------------------------------------------------- */

/* Gemm(x, W[units, k], b, transB = 1): w NULL reads l->w; b NULL gives zeros. */
static int emit_gemm(ox *x, const nn_layer *l, const float *w, kd_err *e)
{
    const int64_t u = l->spec.units, k = (int64_t)nn_shape_size(l->in);
    const int64_t wd[2] = {u, k}, bd[1] = {u};
    float *zero = NULL;
    const float *b = l->b && l->nb == (size_t)u ? l->b : NULL;
    if (!b && !(b = zero = kd_calloc((size_t)u, sizeof *zero)))
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    char wn[96], bn[96], node[96], out[96];
    ox_flatten(x, l->spec.name);
    onnx_graph_f32(x->g, nm(wn, sizeof wn, l, "W"), wd, 2, w ? w : l->w);
    onnx_graph_f32(x->g, nm(bn, sizeof bn, l, "b"), bd, 1, b);
    kd_free(zero);
    const char *extra[2] = {wn, bn};
    onnx_node_int(x->g, step(x, "Gemm", nm(node, sizeof node, l, "gemm"),
                             nm(out, sizeof out, l, "out"), extra, 2),
                  "transB", 1);
    return KD_OK;
}

static void emit_conv(ox *x, const nn_layer *l)
{
    const nn_layer_spec *s = &l->spec;
    const int64_t f = s->filters, kk = s->kernel, st = s->stride ? s->stride : 1, p = s->pad;
    const int64_t wd[4] = {f, l->in.c, kk, kk}, bd[1] = {f};
    const int64_t ks[2] = {kk, kk}, strides[2] = {st, st}, pads[4] = {p, p, p, p};
    char wn[96], bn[96], node[96], out[96];
    to_rank4(x, l);
    onnx_graph_f32(x->g, nm(wn, sizeof wn, l, "W"), wd, 4, l->w);
    onnx_graph_f32(x->g, nm(bn, sizeof bn, l, "b"), bd, 1, l->b);
    const char *extra[2] = {wn, bn};
    Onnx__NodeProto *n =
        step(x, "Conv", nm(node, sizeof node, l, "conv"), nm(out, sizeof out, l, "out"), extra, 2);
    onnx_node_ints(x->g, n, "kernel_shape", ks, 2);
    onnx_node_ints(x->g, n, "strides", strides, 2);
    onnx_node_ints(x->g, n, "pads", pads, 4);
}

/* kdbench's pooling has no padding and keeps whole windows (floor). */
static void emit_pool(ox *x, const nn_layer *l)
{
    const int64_t kk = l->spec.kernel, st = l->spec.stride ? l->spec.stride : l->spec.kernel;
    const int64_t ks[2] = {kk, kk}, strides[2] = {st, st};
    char node[96], out[96];
    to_rank4(x, l);
    Onnx__NodeProto *n =
        step(x, "MaxPool", nm(node, sizeof node, l, "pool"), nm(out, sizeof out, l, "out"), NULL, 0);
    onnx_node_ints(x->g, n, "kernel_shape", ks, 2);
    onnx_node_ints(x->g, n, "strides", strides, 2);
}

/* Eval-mode batchnorm from the running statistics (buf: mean[C], var[C]). */
static void emit_bn(ox *x, const nn_layer *l)
{
    const int C = l->in.c;
    const int64_t d[1] = {C};
    char g[96], b[96], mu[96], var[96], node[96], out[96];
    onnx_graph_f32(x->g, nm(g, sizeof g, l, "scale"), d, 1, l->w);
    onnx_graph_f32(x->g, nm(b, sizeof b, l, "bias"), d, 1, l->b);
    onnx_graph_f32(x->g, nm(mu, sizeof mu, l, "mean"), d, 1, l->buf);
    onnx_graph_f32(x->g, nm(var, sizeof var, l, "var"), d, 1, l->buf + C);
    const char *extra[4] = {g, b, mu, var};
    const char *in[5] = {x->cur, extra[0], extra[1], extra[2], extra[3]};
    const char *o[1] = {nm(out, sizeof out, l, "out")};
    Onnx__NodeProto *n =
        onnx_graph_node(x->g, "BatchNormalization", nm(node, sizeof node, l, "bn"), in, 5, o, 1);
    onnx_node_float(x->g, n, "epsilon", l->spec.eps > 0 ? l->spec.eps : 1e-5f);
    snprintf(x->cur, sizeof x->cur, "%s", o[0]);
    x->last = n;
}

/* ---- int8 ------------------------------------------------------------------------------ */

/* x_q -> MatMulInteger(W^T, zero) -> acc (int32): the weights transposed
 * to ONNX's [k, m] (MatMul's B), int8 as stored. */
static int emit_matmul_integer(ox *x, const nn_layer *l, const export_q8 *q, const char *xq,
                               const char *zero, kd_err *e)
{
    int8_t *wt = kd_malloc((size_t)q->m * q->k);
    if (!wt)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    for (size_t r = 0; r < q->m; r++)
        for (size_t c = 0; c < q->k; c++)
            wt[c * q->m + r] = q->w[r * q->k + c];
    const int64_t wd[2] = {q->k, q->m};
    char wn[96], node[96], out[96];
    onnx_graph_i8(x->g, nm(wn, sizeof wn, l, "W_q"), wd, 2, wt);
    kd_free(wt);
    const char *in[3] = {xq, wn, zero}, *o[1] = {nm(out, sizeof out, l, "acc")};
    x->last = onnx_graph_node(x->g, "MatMulInteger", nm(node, sizeof node, l, "matmul"), in, 3,
                              o, 1);
    snprintf(x->cur, sizeof x->cur, "%s", o[0]);
    return KD_OK;
}

static void emit_cast_float(ox *x, const nn_layer *l)
{
    char node[96], out[96];
    onnx_node_int(x->g, step(x, "Cast", nm(node, sizeof node, l, "cast"),
                             nm(out, sizeof out, l, "acc_f"), NULL, 0),
                  "to", T_FLOAT);
}

/* Static: the calibrated input parameters, the int32 bias in the
 * accumulator, the float rescale; an int8 output is requantized with the
 * output parameters and dequantized for the next layer, as kdbench does. */
static int emit_q8_static(ox *x, const nn_layer *l, const export_q8 *q, kd_err *e)
{
    char sn[96], zn[96], bn[96], scn[96], node[96], out[96];
    const int64_t md[1] = {q->m};
    float *sc = kd_malloc((size_t)q->m * sizeof *sc);
    if (!sc)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    for (size_t r = 0; r < q->m; r++)
        sc[r] = q->in_scale * q->w_scale[r]; /* the epilogue's float product */
    onnx_graph_scalar_f32(x->g, nm(sn, sizeof sn, l, "x_scale"), q->in_scale);
    onnx_graph_scalar_u8(x->g, nm(zn, sizeof zn, l, "x_zero"), (uint8_t)(q->in_zero + 128));
    onnx_graph_i32(x->g, nm(bn, sizeof bn, l, "bias_q"), md, 1, q->bias);
    onnx_graph_f32(x->g, nm(scn, sizeof scn, l, "scale"), md, 1, sc);
    kd_free(sc);
    const char *qa[2] = {sn, zn};
    char xq[96];
    step(x, "QuantizeLinear", nm(node, sizeof node, l, "quantize"), nm(xq, sizeof xq, l, "x_q"),
         qa, 2);
    if (emit_matmul_integer(x, l, q, xq, zn, e))
        return KD_ENOMEM;
    const char *b1[1] = {bn}, *s1[1] = {scn};
    step(x, "Add", nm(node, sizeof node, l, "add_bias"), nm(out, sizeof out, l, "acc_b"), b1, 1);
    emit_cast_float(x, l);
    int s8 = q->flags & 1;
    step(x, "Mul", nm(node, sizeof node, l, "rescale"), nm(out, sizeof out, l, s8 ? "y" : "out"),
         s1, 1);
    if (s8) {
        char osn[96], ozn[96];
        onnx_graph_scalar_f32(x->g, nm(osn, sizeof osn, l, "y_scale"), q->out_scale);
        onnx_graph_scalar_i8(x->g, nm(ozn, sizeof ozn, l, "y_zero"), (int8_t)q->out_zero);
        const char *oa[2] = {osn, ozn};
        step(x, "QuantizeLinear", nm(node, sizeof node, l, "requantize"),
             nm(out, sizeof out, l, "y_q"), oa, 2);
        step(x, "DequantizeLinear", nm(node, sizeof node, l, "dequantize"),
             nm(out, sizeof out, l, "out"), oa, 2);
    }
    return KD_OK;
}

/* Dynamic: per-call range (DynamicQuantizeLinear over the whole input, as
 * kdbench takes one range per batch), float bias after the rescale. */
static int emit_q8_dynamic(ox *x, const nn_layer *l, const export_q8 *q, kd_err *e)
{
    char wsn[96], bn[96], node[96], xq[96], xs[96], xz[96], sc[96], out[96];
    const int64_t md[1] = {q->m};
    float *b = kd_calloc(q->m, sizeof *b);
    if (!b)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    if (l->b && l->nb == q->m)
        memcpy(b, l->b, q->m * sizeof *b);
    onnx_graph_f32(x->g, nm(wsn, sizeof wsn, l, "w_scale"), md, 1, q->w_scale);
    onnx_graph_f32(x->g, nm(bn, sizeof bn, l, "b"), md, 1, b);
    kd_free(b);
    const char *in[1] = {x->cur};
    const char *o3[3] = {nm(xq, sizeof xq, l, "x_q"), nm(xs, sizeof xs, l, "x_scale"),
                         nm(xz, sizeof xz, l, "x_zero")};
    onnx_graph_node(x->g, "DynamicQuantizeLinear", nm(node, sizeof node, l, "quantize"), in, 1,
                    o3, 3);
    const char *si[2] = {xs, wsn}, *so[1] = {nm(sc, sizeof sc, l, "scale")};
    onnx_graph_node(x->g, "Mul", nm(node, sizeof node, l, "scale_mul"), si, 2, so, 1);
    if (emit_matmul_integer(x, l, q, xq, xz, e))
        return KD_ENOMEM;
    emit_cast_float(x, l);
    const char *s1[1] = {sc}, *b1[1] = {bn};
    step(x, "Mul", nm(node, sizeof node, l, "rescale"), nm(out, sizeof out, l, "y"), s1, 1);
    step(x, "Add", nm(node, sizeof node, l, "add_bias"), nm(out, sizeof out, l, "out"), b1, 1);
    return KD_OK;
}

/* q's m, k and w: a's entries as a dense int8 matrix (zeros included). */
static int qcsr_dense(const export_qcsr *a, export_q8 *q, kd_err *e)
{
    q->m = a->m;
    q->k = a->k;
    if (!(q->w = kd_calloc((size_t)a->m * a->k + 1, 1)))
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    for (uint32_t row = 0; row < a->m; row++) {
        int col = 0;
        for (int32_t j = a->rp[row]; j < a->rp[row + 1]; j++) {
            col += a->delta[j];
            q->w[(size_t)row * a->k + (size_t)col] = a->val[j];
        }
    }
    return KD_OK;
}

/* csr-int8-static: the static quantizer, the entries as a dense int8
 * MatMulInteger, then the float rescale and bias of the dynamic tail. */
static int emit_qcsr_s8(ox *x, const nn_layer *l, const char *what, kd_err *e)
{
    export_qcsr a;
    export_q8 q = {0};
    int rc = export_qcsr_s8_read(l, what, &q.in_scale, &q.in_zero, &a, e);
    if (rc)
        return rc;
    float *sc = kd_malloc(((size_t)a.m + 1) * sizeof *sc), *bias = kd_calloc(a.m + 1, sizeof *bias);
    if ((rc = qcsr_dense(&a, &q, e)) != KD_OK)
        goto out;
    if (!sc || !bias) {
        rc = kd_err_set(e, KD_ENOMEM, "out of memory");
        goto out;
    }
    for (uint32_t row = 0; row < a.m; row++)
        sc[row] = q.in_scale * a.scale[row]; /* the epilogue's float product */
    if (l->b && l->nb == a.m)
        memcpy(bias, l->b, a.m * sizeof *bias);
    char sn[96], zn[96], scn[96], bn[96], node[96], xq[96], out[96];
    const int64_t md[1] = {q.m};
    ox_flatten(x, l->spec.name);
    onnx_graph_scalar_f32(x->g, nm(sn, sizeof sn, l, "x_scale"), q.in_scale);
    onnx_graph_scalar_u8(x->g, nm(zn, sizeof zn, l, "x_zero"), (uint8_t)(q.in_zero + 128));
    onnx_graph_f32(x->g, nm(scn, sizeof scn, l, "scale"), md, 1, sc);
    onnx_graph_f32(x->g, nm(bn, sizeof bn, l, "b"), md, 1, bias);
    const char *qa[2] = {sn, zn};
    step(x, "QuantizeLinear", nm(node, sizeof node, l, "quantize"), nm(xq, sizeof xq, l, "x_q"),
         qa, 2);
    if ((rc = emit_matmul_integer(x, l, &q, xq, zn, e)) != KD_OK)
        goto out;
    emit_cast_float(x, l);
    const char *s1[1] = {scn}, *b1[1] = {bn};
    step(x, "Mul", nm(node, sizeof node, l, "rescale"), nm(out, sizeof out, l, "y"), s1, 1);
    step(x, "Add", nm(node, sizeof node, l, "add_bias"), nm(out, sizeof out, l, "out"), b1, 1);
    if (x->notes)
        x->notes->int8++;
out:
    kd_free(q.w);
    kd_free(sc);
    kd_free(bias);
    export_qcsr_free(&a);
    return rc;
}

/* csr-int8-dyn: int8-dyn's graph (its per-call quantizer, the rescale by
 * x_scale * scale[r], the float bias) over the entries as a dense matrix. */
static int emit_qcsr_d8(ox *x, const nn_layer *l, const char *what, kd_err *e)
{
    export_qcsr a;
    export_q8 q = {0};
    int rc = export_qcsr_read(l, what, &a, e);
    if (rc)
        return rc;
    if ((rc = qcsr_dense(&a, &q, e)) == KD_OK) {
        q.w_scale = a.scale; /* a's: not freed through q */
        ox_flatten(x, l->spec.name);
        rc = emit_q8_dynamic(x, l, &q, e);
    }
    if (rc == KD_OK && x->notes)
        x->notes->int8_dyn++;
    kd_free(q.w);
    export_qcsr_free(&a);
    return rc;
}

/* ---- compressed kinds ---------------------------------------------------------------------- */

static void note_name(char *list, size_t n, const char *name)
{
    size_t used = strlen(list);
    if (used && used + strlen(name) + 2 >= n - 4) {
        if (!strstr(list, "..."))
            snprintf(list + used, n - used, ", ...");
        return;
    }
    snprintf(list + used, n - used, "%s%s", used ? ", " : "", name);
}

static int emit_compressed(ox *x, const nn_layer *l, int i, kd_err *e)
{
    const char *f = format_of(l);
    char what[64];
    snprintf(what, sizeof what, "layer %d (%s)", i, l->spec.name);
    if (!strcmp(f, "csr-int8-static"))
        return emit_qcsr_s8(x, l, what, e);
    if (!strcmp(f, "csr-int8-dyn"))
        return emit_qcsr_d8(x, l, what, e);
    int dynamic = !strcmp(f, "int8-dyn");
    if (dynamic || !strcmp(f, "int8")) {
        export_q8 q;
        int rc = export_q8_read(l, what, &q, e);
        if (rc == KD_OK) {
            ox_flatten(x, l->spec.name);
            rc = dynamic ? emit_q8_dynamic(x, l, &q, e) : emit_q8_static(x, l, &q, e);
        }
        export_q8_free(&q);
        if (rc == KD_OK && x->notes)
            (*(dynamic ? &x->notes->int8_dyn : &x->notes->int8))++;
        return rc;
    }
    size_t mk = (size_t)l->spec.units * nn_shape_size(l->in);
    float *w = kd_malloc(mk * sizeof *w);
    if (!w)
        return kd_err_set(e, KD_ENOMEM, "%s: out of memory for %zu weights", what, mk);
    l->ops->dequant(l, w);
    int rc = emit_gemm(x, l, w, e);
    kd_free(w);
    if (rc == KD_OK && x->notes) {
        int q4 = !strcmp(f, "int4");
        export_onnx_notes *n = x->notes;
        (*(q4 ? &n->int4 : &n->densified))++;
        if (q4)
            note_name(n->int4_names, sizeof n->int4_names, l->spec.name);
        else
            note_name(n->densified_names, sizeof n->densified_names, l->spec.name);
    }
    return rc;
}

int ox_layer(ox *x, const nn_model *m, int i, kd_err *e)
{
    const nn_layer *l = &m->layers[i];
    int rc = KD_OK;
    char node[96], out[96];
    if (!nn_layer_is_builtin(l))
        rc = emit_compressed(x, l, i, e);
    else
        switch (l->spec.kind) {
        case NN_DENSE: rc = emit_gemm(x, l, NULL, e); break;
        case NN_CONV2D: emit_conv(x, l); break;
        case NN_MAXPOOL2D: emit_pool(x, l); break;
        case NN_BATCHNORM: emit_bn(x, l); break;
        case NN_RELU:
            step(x, "Relu", nm(node, sizeof node, l, "relu"), nm(out, sizeof out, l, "out"), NULL,
                 0);
            break;
        case NN_FLATTEN: ox_flatten(x, l->spec.name); break;
        case NN_DROPOUT: /* identity at inference */
        default: break;
        }
    if (rc == KD_OK)
        x->shape = l->out;
    return rc;
}
