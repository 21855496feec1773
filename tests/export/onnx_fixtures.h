/* The models and data of the ONNX export suite (header-only, static):
 * NS Fashion-MNIST test images plus NCAL for calibration, and eleven
 * models on 28 x 28 inputs covering every kind export_onnx writes. */
#ifndef KD_TEST_EXPORT_ONNX_FIXTURES_H
#define KD_TEST_EXPORT_ONNX_FIXTURES_H

#include <stdio.h>
#include <string.h>

#include "../../export/export.h"
#include "../compress/qtest.h"

#define NS 500 /* samples compared with ONNX Runtime */
#define NCAL 256 /* calibration samples (after the compared ones) */
#define ORT_WEB_VERSION "1.20.1"

/* ---- data: Fashion-MNIST's first NS + NCAL test images ------------------------- */

/* verbose: say where the images came from. */
static inline data_set images(int verbose)
{
    data_set d;
    kd_err e = {0};
    if (data_idx_load(DATA_FASHION_DIR "/t10k-images-idx3-ubyte.gz",
                      DATA_FASHION_DIR "/t10k-labels-idx1-ubyte.gz", NS + NCAL, &d, &e) == KD_OK) {
        if (verbose)
            fprintf(stderr, "onnx export: Fashion-MNIST: the first %d test images compared, "
                            "the next %d calibrate the int8 models\n", NS, NCAL);
        return d;
    }
    if (verbose)
        fprintf(stderr, "onnx export: no Fashion-MNIST (%s): random 28x28 bytes instead\n", e.msg);
    d = (data_set){.n = NS + NCAL, .shape = {1, 28, 28}, .nclasses = 10};
    d.x8 = kd_malloc((size_t)d.n * 784);
    d.y = kd_calloc((size_t)d.n, 1);
    ck_assert(d.x8 && d.y);
    nn_rng r = nn_rng_stream(1, NN_STREAM_DATA);
    for (size_t i = 0; i < (size_t)d.n * 784; i++)
        d.x8[i] = (uint8_t)nn_rng_below(&r, 256);
    return d;
}

/* The calibration samples: a view into d (not to be freed). */
static inline data_set calib_of(const data_set *d)
{
    return (data_set){.n = NCAL, .shape = d->shape, .nclasses = d->nclasses,
                      .x8 = d->x8 + (size_t)NS * 784, .y = d->y + NS};
}

/* ---- models on 28 x 28 inputs --------------------------------------------------------- */

static inline void standardize(nn_model *m)
{
    m->in_mean = 0.2860f; /* Fashion-MNIST's */
    m->in_std = 0.3530f;
}

static inline nn_model *mlp(uint64_t seed)
{
    nn_model *m = qt_mlp(784, 64, 32, 10, seed);
    standardize(m);
    return m;
}

static inline nn_model *build(nn_shape in, const nn_layer_spec *s, int n, uint64_t seed)
{
    kd_err e = {0};
    nn_model *m = nn_model_new(in, s, n, NULL, &e);
    ck_assert_msg(m != NULL, "%s", e.msg);
    nn_model_init(m, seed);
    nn_rng r = nn_rng_stream(seed, NN_STREAM_TEST);
    for (int i = 0; i < m->nlayers; i++) {
        nn_layer *l = &m->layers[i];
        for (size_t j = 0; j < l->nb; j++) /* biases, and batchnorm's beta */
            l->b[j] = 0.1f * nn_rng_normal(&r);
        for (int c = 0; l->spec.kind == NN_BATCHNORM && c < l->in.c; c++) {
            l->w[c] = 1.0f + 0.3f * nn_rng_normal(&r);
            l->buf[c] = 0.1f * nn_rng_normal(&r);
            l->buf[l->in.c + c] = 0.5f + nn_rng_uniform(&r);
        }
    }
    standardize(m);
    return m;
}

/* dense -> batchnorm over features (a rank-2 BatchNormalization) -> relu -> dense */
static inline nn_model *mlp_bn(uint64_t seed)
{
    const nn_layer_spec s[] = {{.kind = NN_DENSE, .units = 48}, {.kind = NN_BATCHNORM},
                               {.kind = NN_RELU}, {.kind = NN_DENSE, .units = 10}};
    return build((nn_shape){784, 1, 1}, s, 4, seed);
}

/* conv (pad 1) -> batchnorm -> relu -> maxpool -> conv (stride 2) -> relu ->
 * maxpool (stride 1) -> flatten -> dropout -> dense, on 1 x 28 x 28 */
static inline nn_model *cnn(uint64_t seed)
{
    const nn_layer_spec s[] = {
        {.kind = NN_CONV2D, .filters = 4, .kernel = 3, .pad = 1}, {.kind = NN_BATCHNORM},
        {.kind = NN_RELU}, {.kind = NN_MAXPOOL2D, .kernel = 2},
        {.kind = NN_CONV2D, .filters = 6, .kernel = 3, .stride = 2}, {.kind = NN_RELU},
        {.kind = NN_MAXPOOL2D, .kernel = 2, .stride = 1}, {.kind = NN_FLATTEN},
        {.kind = NN_DROPOUT, .rate = 0.2f}, {.kind = NN_DENSE, .units = 24}, {.kind = NN_RELU},
        {.kind = NN_DENSE, .units = 10}};
    return build((nn_shape){1, 28, 28}, s, 12, seed);
}

/* a 1x1 conv over a vector input (the graph reshapes [N, 784] to
 * [N, 784, 1, 1]) -> relu -> dense */
static inline nn_model *conv_on_vector(uint64_t seed)
{
    const nn_layer_spec s[] = {{.kind = NN_CONV2D, .filters = 8, .kernel = 1},
                               {.kind = NN_RELU}, {.kind = NN_DENSE, .units = 10}};
    return build((nn_shape){784, 1, 1}, s, 3, seed);
}

static inline nn_model *quantized(nn_model *m, compress_qmode mode, int per_channel, const data_set *d)
{
    data_set cal = calib_of(d);
    compress_quant_spec s = {.mode = mode, .per_channel = per_channel, .calib_batches = 1};
    kd_err e = {0};
    nn_model *q = compress_quantize(m, &s, &cal, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    nn_model_free(m);
    return q;
}

/* m pruned to 80% and stored as CSR (m is freed). */
static inline nn_model *sparse(nn_model *m)
{
    kd_err e = {0};
    compress_prune_spec ps = {.sparsity = 0.8f};
    ck_assert_int_eq(compress_prune_magnitude(m, &ps, NULL, &e), KD_OK);
    compress_sparse_opts o = {.policy = COMPRESS_SPARSE_ALWAYS};
    nn_model *s = compress_to_sparse(m, &o, NULL, &e);
    ck_assert_msg(s != NULL, "%s", e.msg);
    nn_model_free(m);
    return s;
}

static inline nn_model *shared(nn_model *m, int uncoded)
{
    kd_err e = {0};
    compress_prune_spec ps = {.sparsity = 0.7f};
    ck_assert_int_eq(compress_prune_magnitude(m, &ps, NULL, &e), KD_OK);
    compress_cluster_spec cs = {.clusters = 16, .uncoded = uncoded};
    nn_model *q = compress_cluster(m, &cs, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    nn_model_free(m);
    return q;
}

typedef enum { K_FLOAT, K_INT8 } cmp_kind;

static inline nn_model *m_fp32(const data_set *d) { (void)d; return mlp(1); }
static inline nn_model *m_fp32_bn(const data_set *d) { (void)d; return mlp_bn(2); }
static inline nn_model *m_cnn(const data_set *d) { (void)d; return cnn(3); }
static inline nn_model *m_conv_vec(const data_set *d) { (void)d; return conv_on_vector(12); }
static inline nn_model *m_pruned(const data_set *d) { (void)d; return sparse(mlp(4)); }
static inline nn_model *m_shared(const data_set *d) { (void)d; return shared(mlp(5), 0); }
static inline nn_model *m_shared_raw(const data_set *d) { (void)d; return shared(mlp(13), 1); }
/* int2 / int3 weights (dense_q2 / dense_q3), written dequantized */
static inline nn_model *m_int2(const data_set *d) { (void)d; return qt_lowbit(mlp(14), 2); }
static inline nn_model *m_int3(const data_set *d) { (void)d; return qt_lowbit(mlp(15), 3); }
static inline nn_model *m_int8(const data_set *d) { return quantized(mlp(6), COMPRESS_Q_STATIC8, 1, d); }
static inline nn_model *m_int8_tensor(const data_set *d)
{
    return quantized(mlp(7), COMPRESS_Q_STATIC8, 0, d);
}
static inline nn_model *m_int8_dyn(const data_set *d) { return quantized(mlp(8), COMPRESS_Q_DYNAMIC8, 1, d); }
static inline nn_model *m_int8_cnn(const data_set *d) { return quantized(cnn(9), COMPRESS_Q_STATIC8, 1, d); }
static inline nn_model *m_csr_int8(const data_set *d)
{
    return quantized(sparse(mlp(10)), COMPRESS_Q_STATIC8, 1, d);
}
static inline nn_model *m_int4(const data_set *d) { return quantized(mlp(11), COMPRESS_Q_INT4, 1, d); }
/* csr-int8 with its inputs quantized too (sparse_static) */
static inline nn_model *m_csr_int8_static(const data_set *d)
{
    nn_model *m = sparse(mlp(16));
    data_set cal = calib_of(d);
    compress_quant_spec s = {.mode = COMPRESS_Q_STATIC8, .per_channel = 1, .calib_batches = 1,
                             .sparse_static = 1};
    kd_err e = {0};
    nn_model *q = compress_quantize(m, &s, &cal, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    nn_model_free(m);
    return q;
}
/* the same with its inputs quantized per call (csr-int8-dyn) */
static inline nn_model *m_csr_int8_dyn(const data_set *d)
{
    (void)d;
    nn_model *m = sparse(mlp(17));
    compress_quant_spec s = {.mode = COMPRESS_Q_DYNAMIC8, .per_channel = 1, .sparse_static = 1};
    kd_err e = {0};
    nn_model *q = compress_quantize(m, &s, NULL, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    nn_model_free(m);
    return q;
}

/* Each export: a layer whose format must be as named, how to compare, and
 * an op its graph must hold. */
static const struct {
    const char *name;
    nn_model *(*make)(const data_set *d);
    int layer;
    const char *format, *op;
    cmp_kind cmp;
} models[] = {
    {"fp32", m_fp32, 0, "fp32", "Gemm", K_FLOAT},
    {"fp32_bn", m_fp32_bn, 1, "fp32", "BatchNormalization", K_FLOAT},
    {"cnn", m_cnn, 0, "fp32", "Conv", K_FLOAT},
    {"conv_vec", m_conv_vec, 0, "fp32", "Reshape", K_FLOAT},
    {"pruned", m_pruned, 0, "csr-fp32", "Gemm", K_FLOAT},
    {"shared", m_shared, 0, "csr-shared+huff", "Gemm", K_FLOAT},
    {"shared_raw", m_shared_raw, 0, "csr-shared", "Gemm", K_FLOAT},
    {"int8", m_int8, 2, "int8", "MatMulInteger", K_INT8},
    {"int8_tensor", m_int8_tensor, 0, "int8", "QuantizeLinear", K_INT8},
    {"int8_dyn", m_int8_dyn, 0, "int8-dyn", "DynamicQuantizeLinear", K_INT8},
    {"int8_cnn", m_int8_cnn, 9, "int8", "MaxPool", K_INT8},
    {"csr_int8", m_csr_int8, 0, "csr-int8", "Gemm", K_FLOAT},
    {"int4", m_int4, 0, "int4", "Gemm", K_FLOAT},
    {"int2", m_int2, 0, "int2", "Gemm", K_FLOAT},
    {"int3", m_int3, 0, "int3", "Gemm", K_FLOAT},
    {"csr_int8_static", m_csr_int8_static, 0, "csr-int8-static", "MatMulInteger", K_INT8},
    {"csr_int8_dyn", m_csr_int8_dyn, 0, "csr-int8-dyn", "DynamicQuantizeLinear", K_INT8},
};
#define NMODELS (int)(sizeof models / sizeof models[0])

/* Builds model j, checks its format and exports it to dir/NAME.onnx. */
static inline nn_model *export_one(int j, const data_set *d, const char *dir)
{
    nn_model *m = models[j].make(d);
    ck_assert_str_eq(nn_layer_format(&m->layers[models[j].layer]), models[j].format);
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.onnx", dir, models[j].name);
    kd_err e = {0};
    export_onnx_notes notes;
    ck_assert_msg(export_onnx(m, path, models[j].name, &notes, &e) == KD_OK, "%s: %s",
                  models[j].name, e.msg);
    return m;
}

#endif
