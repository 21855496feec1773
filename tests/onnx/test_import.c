/* onnx/import: graphs built here (onnx/build) become nn models whose logits
 * match hand computations (Gemm with transB 0/1, alpha, beta; MatMul + Add;
 * Conv's weight layout; BatchNormalization; PyTorch's flatten forms); what
 * kdbench cannot run or what lies is refused naming the node, never a crash:
 * unknown ops, branches, dangling inputs and cycles, shapes that don't chain,
 * tensors whose bytes disagree with their shape, a 10 GB claimed tensor,
 * truncated files, wrong magic, every byte flipped. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../onnx/compose.h"
#include "../../onnx/import.h"
#include "../../onnx/internal.h"
#include "../kdtest.h"

#define F32 ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT
#define I64 ONNX__TENSOR_PROTO__DATA_TYPE__INT64

static const float *fwd(nn_model *m, const float *x, int n)
{
    nn_ctx c = {0};
    const float *y = nn_model_forward(m, x, n, &c);
    ck_assert_ptr_nonnull(y);
    return y;
}

static void expect_logits(nn_model *m, const float *x, const float *want, int k)
{
    ck_assert_int_eq(m->nclasses, k);
    const float *y = fwd(m, x, 1);
    for (int i = 0; i < k; i++)
        ck_assert_msg(fabsf(y[i] - want[i]) <= 1e-4f * (1 + fabsf(want[i])),
                      "logit %d: %g, expected %g", i, (double)y[i], (double)want[i]);
}

static nn_model *import(onnx_build *b, kd_err *e)
{
    Onnx__ModelProto *mp = onnx_build_model(b);
    ck_assert_ptr_nonnull(mp);
    return onnx_import(mp, 0, 1, e);
}

/* The import fails with code and a message containing each of the NULL-terminated words. */
static void expect_refused(onnx_build *b, int code, ...)
{
    kd_err e = {0};
    nn_model *m = import(b, &e);
    ck_assert_msg(!m, "imported a graph that should be refused");
    ck_assert_int_eq(e.code, code);
    va_list ap;
    va_start(ap, code);
    for (const char *w; (w = va_arg(ap, const char *));)
        ck_assert_msg(strstr(e.msg, w), "\"%s\" not in: %s", w, e.msg);
    va_end(ap);
    onnx_build_free(b);
}

/* x (N, 3) -> Gemm(B 3x2, C, alpha 2, beta 0.5) -> Gemm(transB: 2x2) -> Softmax */
static onnx_build *gemm_graph(void)
{
    static const float B[6] = {1, 2, 3, 4, 5, 6}, C[2] = {1, -1}, B2[4] = {1, 0, 1, 1};
    onnx_build *b = onnx_build_new(13);
    onnx_build_input(b, "x", (int64_t[]){-1, 3}, 2);
    onnx_build_weights(b, "B", (int64_t[]){3, 2}, 2, B);
    onnx_build_weights(b, "C", (int64_t[]){2}, 1, C);
    onnx_build_weights(b, "B2", (int64_t[]){2, 2}, 2, B2);
    Onnx__NodeProto *g = onnx_build_node(b, "Gemm", "fc1", "x,B,C", "h");
    onnx_build_attr_f(b, g, "alpha", 2);
    onnx_build_attr_f(b, g, "beta", 0.5f);
    g = onnx_build_node(b, "Gemm", "fc2", "h,B2", "z");
    onnx_build_attr_i(b, g, "transB", 1);
    onnx_build_node(b, "Softmax", "sm", "z", "p");
    onnx_build_output(b, "p");
    return b;
}

START_TEST(gemm_by_hand)
{
    onnx_build *b = gemm_graph();
    kd_err e = {0};
    nn_model *m = import(b, &e);
    ck_assert_msg(m, "%s", e.msg);
    ck_assert_int_eq(m->nlayers, 2); /* the softmax is dropped */
    /* x B = (22, 28); * 2 + 0.5 (1, -1) = (44.5, 55.5); B2 as (N x K): (44.5, 100) */
    expect_logits(m, (const float[]){1, 2, 3}, (const float[]){44.5f, 100}, 2);
    nn_model_free(m);
    onnx_build_free(b);
}
END_TEST

/* x (N,1,3,3) = 1..9 -> Conv(2 filters 2x2: diagonal, top-right; bias .5, -1) ->
 * MaxPool 2 -> Flatten -> Gemm(identity, transB) */
static onnx_build *conv_graph(int64_t group)
{
    static const float W[8] = {1, 0, 0, 1, 0, 1, 0, 0}, Bc[2] = {0.5f, -1}, I[4] = {1, 0, 0, 1};
    onnx_build *b = onnx_build_new(13);
    onnx_build_input(b, "x", (int64_t[]){1, 1, 3, 3}, 4);
    onnx_build_weights(b, "W", (int64_t[]){2, 1, 2, 2}, 4, W);
    onnx_build_weights(b, "Bc", (int64_t[]){2}, 1, Bc);
    onnx_build_weights(b, "I", (int64_t[]){2, 2}, 2, I);
    Onnx__NodeProto *n = onnx_build_node(b, "Conv", "conv", "x,W,Bc", "c");
    onnx_build_attr_ints(b, n, "kernel_shape", (int64_t[]){2, 2}, 2);
    onnx_build_attr_i(b, n, "group", group);
    n = onnx_build_node(b, "MaxPool", "pool", "c", "p");
    onnx_build_attr_ints(b, n, "kernel_shape", (int64_t[]){2, 2}, 2);
    onnx_build_node(b, "Flatten", "flat", "p", "f");
    n = onnx_build_node(b, "Gemm", "fc", "f,I", "z");
    onnx_build_attr_i(b, n, "transB", 1);
    onnx_build_output(b, "z");
    return b;
}

START_TEST(conv_layout_by_hand)
{
    onnx_build *b = conv_graph(1);
    kd_err e = {0};
    nn_model *m = import(b, &e);
    ck_assert_msg(m, "%s", e.msg);
    ck_assert_int_eq(m->layers[0].spec.kind, NN_CONV2D);
    ck_assert_int_eq(m->layers[0].out.h, 2);
    /* diagonal: x[i][j] + x[i+1][j+1] + .5 -> 6.5 8.5 12.5 14.5, max 14.5;
     * top-right tap: x[i][j+1] - 1 -> 1 2 4 5, max 5 */
    const float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    expect_logits(m, x, (const float[]){14.5f, 5}, 2);
    nn_model_free(m);
    onnx_build_free(b);
}
END_TEST

START_TEST(batchnorm_by_hand)
{
    onnx_build *b = onnx_build_new(13);
    onnx_build_input(b, "x", (int64_t[]){-1, 2}, 2);
    onnx_build_weights(b, "g", (int64_t[]){2}, 1, (const float[]){2, 1});
    onnx_build_weights(b, "be", (int64_t[]){2}, 1, (const float[]){0, 1});
    onnx_build_weights(b, "mu", (int64_t[]){2}, 1, (const float[]){1, 0});
    onnx_build_weights(b, "var", (int64_t[]){2}, 1, (const float[]){4, 1});
    onnx_build_weights(b, "I", (int64_t[]){2, 2}, 2, (const float[]){1, 0, 0, 1});
    Onnx__NodeProto *n = onnx_build_node(b, "BatchNormalization", "bn", "x,g,be,mu,var", "y");
    onnx_build_attr_f(b, n, "epsilon", 0);
    onnx_build_node(b, "MatMul", "mm", "y,I", "z");
    onnx_build_output(b, "z");
    kd_err e = {0};
    nn_model *m = import(b, &e);
    ck_assert_msg(m, "%s", e.msg);
    /* 2 (3 - 1) / 2 + 0 = 2; 1 (5 - 0) / 1 + 1 = 6 */
    expect_logits(m, (const float[]){3, 5}, (const float[]){2, 6}, 2);
    nn_model_free(m);
    onnx_build_free(b);
}
END_TEST

/* PyTorch's x.view(x.size(0), -1) and Linear as MatMul + Add, plus Dropout,
 * Identity and a Constant weight; opset 11 (Unsqueeze axes as an attribute)
 * and 13 (as an input). */
static onnx_build *torch_graph(int opset)
{
    onnx_build *b = onnx_build_new(opset);
    onnx_build_input(b, "x", (int64_t[]){-1, 1, 2, 2}, 4);
    float W[12];
    for (int i = 0; i < 12; i++)
        W[i] = (float)(i % 5) - 1; /* (4 x 3): K x N */
    Onnx__NodeProto *n = onnx_build_node(b, "Constant", "Wc", "", "W");
    onnx_build_attr_t(b, n, "value", onnx_build_tensor(b, "", F32, (int64_t[]){4, 3}, 2, W, 12));
    onnx_build_weights(b, "bias", (int64_t[]){3}, 1, (const float[]){0.5f, -0.5f, 2});
    onnx_build_node(b, "Relu", "relu", "x", "r");
    onnx_build_node(b, "Shape", "shape", "r", "s");
    n = onnx_build_node(b, "Constant", "c0", "", "zero");
    onnx_build_attr_t(b, n, "value", onnx_build_tensor(b, "", I64, NULL, 0, (int64_t[]){0}, 1));
    n = onnx_build_node(b, "Gather", "gather", "s,zero", "batch");
    onnx_build_attr_i(b, n, "axis", 0);
    if (opset >= 13) {
        n = onnx_build_node(b, "Constant", "c1", "", "axes");
        onnx_build_attr_ints(b, n, "value_ints", (int64_t[]){0}, 1);
        onnx_build_node(b, "Unsqueeze", "unsq", "batch,axes", "b1");
    } else {
        n = onnx_build_node(b, "Unsqueeze", "unsq", "batch", "b1");
        onnx_build_attr_ints(b, n, "axes", (int64_t[]){0}, 1);
    }
    n = onnx_build_node(b, "Constant", "c2", "", "minus1");
    onnx_build_attr_t(b, n, "value", onnx_build_tensor(b, "", I64, (int64_t[]){1}, 1, (int64_t[]){-1}, 1));
    n = onnx_build_node(b, "Concat", "cat", "b1,minus1", "target");
    onnx_build_attr_i(b, n, "axis", 0);
    onnx_build_node(b, "Reshape", "reshape", "r,target", "flat");
    onnx_build_node(b, "MatMul", "mm", "flat,W", "mmo");
    onnx_build_node(b, "Add", "add", "bias,mmo", "lin"); /* the bias first: either order */
    onnx_build_node(b, "Dropout", "drop", "lin", "d");
    onnx_build_node(b, "Identity", "id", "d", "z");
    onnx_build_node(b, "Softmax", "sm", "z", "p");
    onnx_build_output(b, "p");
    return b;
}

START_TEST(torch_forms)
{
    for (int opset = 11; opset <= 13; opset += 2) {
        onnx_build *b = torch_graph(opset);
        kd_err e = {0};
        nn_model *m = import(b, &e);
        ck_assert_msg(m, "opset %d: %s", opset, e.msg);
        ck_assert_int_eq(m->nlayers, 3); /* relu, flatten, dense */
        ck_assert_int_eq(m->layers[2].spec.kind, NN_DENSE);
        const float x[4] = {1, -2, 3, 0.5f}; /* relu: 1 0 3 .5 */
        float want[3];
        for (int u = 0; u < 3; u++) {
            const float r[4] = {1, 0, 3, 0.5f}, bias[3] = {0.5f, -0.5f, 2};
            want[u] = bias[u];
            for (int k = 0; k < 4; k++)
                want[u] += r[k] * ((float)((k * 3 + u) % 5) - 1);
        }
        expect_logits(m, x, want, 3);
        nn_model_free(m);
        onnx_build_free(b);
    }
}
END_TEST

START_TEST(preprocessing_carried)
{
    onnx_build *b = gemm_graph();
    kd_err e = {0};
    nn_model *m = onnx_import(onnx_build_model(b), 0.25f, 0.5f, &e);
    ck_assert_msg(m, "%s", e.msg);
    ck_assert_float_eq(m->in_mean, 0.25f);
    ck_assert_float_eq(m->in_std, 0.5f);
    nn_model_free(m);
    ck_assert_ptr_null(onnx_import(onnx_build_model(b), 0, 0, &e));
    ck_assert_int_eq(e.code, KD_ECONFIG);
    onnx_build_free(b);
}
END_TEST

/* ---- refused --------------------------------------------------------------------- */

START_TEST(refuses_unsupported)
{
    onnx_build *b = gemm_graph();
    onnx_build_node(b, "Sigmoid", "weird", "p", "q");
    expect_refused(b, KD_ECONFIG, "node 'weird' (Sigmoid)", "not supported", NULL);

    expect_refused(conv_graph(2), KD_ECONFIG, "node 'conv' (Conv)", "group", NULL);

    b = onnx_build_new(13);
    onnx_build_input(b, "x", (int64_t[]){-1, 1, 4, 4}, 4);
    Onnx__NodeProto *n = onnx_build_node(b, "MaxPool", "pool", "x", "y");
    onnx_build_attr_ints(b, n, "kernel_shape", (int64_t[]){2, 2}, 2);
    onnx_build_attr_ints(b, n, "pads", (int64_t[]){1, 1, 1, 1}, 4);
    onnx_build_output(b, "y");
    expect_refused(b, KD_ECONFIG, "node 'pool' (MaxPool)", "pad", NULL);

    /* a softmax in the middle */
    b = gemm_graph();
    onnx_build_node(b, "Relu", "after", "p", "q");
    expect_refused(b, KD_ECONFIG, "node 'after' (Relu)", "Softmax", NULL);

    /* a reshape that is not a flatten */
    b = onnx_build_new(13);
    onnx_build_input(b, "x", (int64_t[]){-1, 4}, 2);
    onnx_build_initializer(b, onnx_build_tensor(b, "s", I64, (int64_t[]){3}, 1,
                                                (int64_t[]){-1, 2, 2}, 3));
    onnx_build_node(b, "Reshape", "rs", "x,s", "y");
    onnx_build_output(b, "y");
    expect_refused(b, KD_ECONFIG, "node 'rs' (Reshape)", "flatten", NULL);

    /* a foreign domain */
    b = gemm_graph();
    Onnx__ModelProto *mp = onnx_build_model(b);
    mp->graph->node[0]->domain = "com.microsoft";
    expect_refused(b, KD_ECONFIG, "node 'fc1'", "com.microsoft.Gemm", NULL);
}
END_TEST

START_TEST(refuses_non_chains)
{
    /* a branch: two nodes read the same activation */
    onnx_build *b = onnx_build_new(13);
    onnx_build_input(b, "x", (int64_t[]){-1, 3}, 2);
    onnx_build_node(b, "Relu", "a", "x", "ya");
    onnx_build_node(b, "Relu", "b", "ya", "yb");
    onnx_build_node(b, "Relu", "c", "ya", "yc");
    onnx_build_output(b, "yc");
    expect_refused(b, KD_ECONFIG, "node 'c' (Relu)", "not a chain", NULL);

    /* a dangling input */
    b = onnx_build_new(13);
    onnx_build_input(b, "x", (int64_t[]){-1, 3}, 2);
    onnx_build_node(b, "Relu", "a", "nowhere", "y");
    onnx_build_output(b, "y");
    expect_refused(b, KD_EFORMAT, "node 'a' (Relu)", "'nowhere'", "dangling", NULL);

    /* a cycle: a reads b's output, b reads a's */
    b = onnx_build_new(13);
    onnx_build_input(b, "x", (int64_t[]){-1, 3}, 2);
    onnx_build_node(b, "Relu", "a", "yb", "ya");
    onnx_build_node(b, "Relu", "b", "ya", "yb");
    onnx_build_output(b, "yb");
    expect_refused(b, KD_EFORMAT, "node 'a' (Relu)", "'yb'", NULL);

    /* the output is not the end of the chain */
    b = gemm_graph();
    onnx_build_model(b)->graph->output[0]->name = "h";
    expect_refused(b, KD_ECONFIG, "'h'", "not the end", NULL);

    /* an add of two activations (a residual) */
    b = onnx_build_new(13);
    onnx_build_input(b, "x", (int64_t[]){-1, 3}, 2);
    onnx_build_node(b, "Relu", "a", "x", "ya");
    onnx_build_node(b, "Add", "res", "ya,x", "y");
    onnx_build_output(b, "y");
    expect_refused(b, KD_ECONFIG, "node 'res' (Add)", NULL);
}
END_TEST

START_TEST(refuses_lying_tensors)
{
    /* shapes that don't chain: 5 inputs expected, 3 given */
    onnx_build *b = onnx_build_new(13);
    onnx_build_input(b, "x", (int64_t[]){-1, 3}, 2);
    float w[10] = {0};
    onnx_build_weights(b, "W", (int64_t[]){5, 2}, 2, w);
    onnx_build_node(b, "MatMul", "mm", "x,W", "y");
    onnx_build_output(b, "y");
    expect_refused(b, KD_ECONFIG, "node 'mm' (MatMul)", "take 5 inputs", "has 3", NULL);

    /* raw_data of 10 bytes for 3 floats */
    b = gemm_graph();
    Onnx__TensorProto *t = onnx_build_model(b)->graph->initializer[1];
    static uint8_t raw[10];
    t->n_float_data = 0;
    t->has_raw_data = 1;
    t->raw_data = (ProtobufCBinaryData){sizeof raw, raw};
    expect_refused(b, KD_EFORMAT, "initializer 'C'", "10 bytes", NULL);

    /* float_data with fewer values than the shape */
    b = gemm_graph();
    onnx_build_model(b)->graph->initializer[0]->n_float_data = 5;
    expect_refused(b, KD_EFORMAT, "initializer 'B'", "6 values", NULL);

    /* a claimed 10 GB tensor with no data: refused before any allocation */
    b = gemm_graph();
    onnx_build_initializer(b, onnx_build_tensor(b, "huge", F32, (int64_t[]){50000, 50000}, 2,
                                                NULL, 0));
    expect_refused(b, KD_EFORMAT, "'huge'", "claims more than", NULL);
    b = gemm_graph();
    onnx_build_initializer(b, onnx_build_tensor(b, "wrap", F32,
                                                (int64_t[]){1LL << 40, 1LL << 40, 1LL << 40}, 3,
                                                NULL, 0));
    expect_refused(b, KD_EFORMAT, "'wrap'", "claims more than", NULL);

    /* a value defined twice */
    b = gemm_graph();
    onnx_build_weights(b, "B", (int64_t[]){1}, 1, (const float[]){1});
    expect_refused(b, KD_EFORMAT, "'B' is defined twice", NULL);

    /* a weight that is not finite */
    b = gemm_graph();
    onnx_build_model(b)->graph->initializer[0]->float_data[2] = NAN;
    expect_refused(b, KD_EFORMAT, "initializer 'B'", "not finite", NULL);

    /* an input that is not (N, features) or (N, C, H, W) */
    b = onnx_build_new(13);
    onnx_build_input(b, "x", (int64_t[]){-1, 3, 4}, 3);
    onnx_build_node(b, "Relu", "a", "x", "y");
    onnx_build_output(b, "y");
    expect_refused(b, KD_ECONFIG, "input 'x' has 3 dimensions", NULL);
}
END_TEST

/* ---- files ------------------------------------------------------------------------ */

static void pack(onnx_build *b, uint8_t **p, size_t *n)
{
    kd_err e = {0};
    ck_assert_int_eq(onnx_build_pack(b, p, n, &e), KD_OK);
}

/* Parsed and imported: refused with a message, or a model that runs. */
static int try_bytes(const uint8_t *p, size_t n)
{
    kd_err e = {0};
    onnx_file *f = onnx_file_unpack(p, n, 0, &e);
    if (!f) {
        ck_assert_msg(e.msg[0], "refused without a message");
        return 0;
    }
    nn_model *m = onnx_import(onnx_file_model(f), 0, 1, &e);
    onnx_file_free(f);
    if (!m) {
        ck_assert_msg(e.msg[0], "refused without a message");
        return 0;
    }
    float x[64] = {0};
    ck_assert_int_le((int)nn_shape_size(m->in), 64);
    for (size_t i = 0; i < nn_shape_size(m->in); i++)
        x[i] = (float)i * 0.1f;
    fwd(m, x, 1);
    nn_model_free(m);
    return 1;
}

START_TEST(truncated_and_wrong_magic)
{
    onnx_build *b = torch_graph(13);
    uint8_t *p;
    size_t n;
    pack(b, &p, &n);
    ck_assert_int_eq(try_bytes(p, n), 1);
    int loaded = 0;
    for (size_t k = 0; k < n; k++)
        loaded += try_bytes(p, k);
    ck_assert_int_lt(loaded, 2); /* nearly every prefix is refused */
    /* a kdbench model file, and text */
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){3, 1, 1}, &(nn_layer_spec){.kind = NN_DENSE, .units = 2},
                               1, NULL, &e);
    kd_buf kb = {0};
    nn_model_serialize(m, &kb);
    ck_assert_int_eq(try_bytes(kb.p, kb.len), 0);
    const char *text = "name: not an onnx file\n";
    ck_assert_int_eq(try_bytes((const uint8_t *)text, strlen(text)), 0);
    kd_buf_free(&kb);
    nn_model_free(m);
    kd_free(p);
    onnx_build_free(b);
}
END_TEST

START_TEST(every_byte_flipped)
{
    onnx_build *b = conv_graph(1);
    uint8_t *p;
    size_t n;
    pack(b, &p, &n);
    int loaded = 0;
    for (size_t k = 0; k < n; k++) {
        p[k] ^= 0xff;
        loaded += try_bytes(p, n);
        p[k] ^= 0xff;
    }
    ck_assert_int_eq(try_bytes(p, n), 1);
    ck_assert_int_lt(loaded, (int)n); /* most flips are caught */
    kd_free(p);
    onnx_build_free(b);
}
END_TEST

START_TEST(file_errors_name_the_path)
{
    char dir[512], path[600];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/missing.onnx", dir);
    kd_err e = {0};
    ck_assert_ptr_null(onnx_import_file(path, 0, 1, &e));
    ck_assert_int_eq(e.code, KD_EIO);
    snprintf(path, sizeof path, "%s/conv.onnx", dir);
    onnx_build *b = conv_graph(2);
    ck_assert_int_eq(onnx_build_write(b, path, &e), KD_OK);
    ck_assert_ptr_null(onnx_import_file(path, 0, 1, &e));
    ck_assert_str_eq(e.file, path);
    ck_assert_ptr_nonnull(strstr(e.msg, "node 'conv' (Conv)"));
    ck_assert_int_eq(onnx_is_onnx_path(path), 1);
    ck_assert_int_eq(onnx_is_onnx_path("x.ONNX"), 1);
    ck_assert_int_eq(onnx_is_onnx_path("x.kdm"), 0);
    ck_assert_int_eq(onnx_is_onnx_path(".onnx"), 0);
    onnx_build_free(b);
}
END_TEST

/* Copies of constants (Identity, Unsqueeze ...) count against one budget:
 * a file cannot make the import copy one tensor without end. */
START_TEST(folding_budget)
{
    ox_ctx c = {0};
    kd_err e = {0};
    ck_assert_int_eq(ox_fold_budget(&c, OX_MAX_FOLDED - 8, &e), KD_OK);
    ck_assert_int_eq(ox_fold_budget(&c, 8, &e), KD_OK);
    ck_assert_int_eq(ox_fold_budget(&c, 1, &e), KD_EFORMAT);
    ck_assert_int_eq(ox_fold_budget(&c, SIZE_MAX, &e), KD_EFORMAT);
    ck_assert_ptr_nonnull(strstr(e.msg, "constants made at load"));
}
END_TEST

/* Every allocation of an import made to fail in turn: an error (no memory),
 * never a crash or a leak (make asan). */
START_TEST(allocation_failures)
{
    onnx_build *b = torch_graph(13);
    uint8_t *p;
    size_t n;
    pack(b, &p, &n);
    int ok = 0;
    for (long k = 0; k < 400 && !ok; k++) {
        kd_err e = {0};
        kd_alloc_fail_after(k);
        onnx_file *f = onnx_file_unpack(p, n, 0, &e);
        nn_model *m = f ? onnx_import(onnx_file_model(f), 0, 1, &e) : NULL;
        kd_alloc_fail_after(-1);
        ok = m != NULL;
        if (!m)
            ck_assert_msg(e.code == KD_ENOMEM || e.code == KD_EFORMAT, "step %ld: %d %s", k,
                          e.code, e.msg);
        nn_model_free(m);
        onnx_file_free(f);
    }
    ck_assert_msg(ok, "never imported within 400 allocations");
    kd_free(p);
    onnx_build_free(b);
}
END_TEST

Suite *suite_onnx_import(void)
{
    Suite *s = suite_create("onnx_import");
    TCase *t = tcase_create("import");
    tcase_add_test(t, gemm_by_hand);
    tcase_add_test(t, conv_layout_by_hand);
    tcase_add_test(t, batchnorm_by_hand);
    tcase_add_test(t, torch_forms);
    tcase_add_test(t, preprocessing_carried);
    tcase_add_test(t, refuses_unsupported);
    tcase_add_test(t, refuses_non_chains);
    tcase_add_test(t, refuses_lying_tensors);
    tcase_add_test(t, truncated_and_wrong_magic);
    tcase_add_test(t, every_byte_flipped);
    tcase_add_test(t, file_errors_name_the_path);
    tcase_add_test(t, allocation_failures);
    tcase_add_test(t, folding_budget);
    tcase_set_timeout(t, 60);
    suite_add_tcase(s, t);
    return s;
}
