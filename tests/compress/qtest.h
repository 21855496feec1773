/* Shared fixtures of the quantized-layer suites (header-only, static). */
#ifndef KD_TEST_QTEST_H
#define KD_TEST_QTEST_H

#include <check.h>
#include <string.h>

#include "../../compress/compress.h"
#include "../kdtest.h"

/* An MLP in -> h1 -> h2 -> out with relu between, random He weights and
 * small random biases; in_mean 0, in_std 1. */
static inline nn_model *qt_mlp(int in, int h1, int h2, int out, uint64_t seed)
{
    const nn_layer_spec s[] = {{.kind = NN_DENSE, .units = h1}, {.kind = NN_RELU},
                               {.kind = NN_DENSE, .units = h2}, {.kind = NN_RELU},
                               {.kind = NN_DROPOUT, .rate = 0.1f},
                               {.kind = NN_DENSE, .units = out}};
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){in, 1, 1}, s, 6, NULL, &e);
    ck_assert_msg(m != NULL, "%s", e.msg);
    nn_model_init(m, seed);
    nn_rng r = nn_rng_stream(seed, NN_STREAM_TEST);
    for (int i = 0; i < m->nlayers; i++)
        for (size_t j = 0; j < m->layers[i].nb; j++)
            m->layers[i].b[j] = 0.1f * nn_rng_normal(&r);
    return m;
}

/* n samples of k floats around one of nclasses random centres (the label). */
static inline data_set qt_data(int n, int k, int nclasses, uint64_t seed)
{
    data_set d = {.n = n, .shape = {k, 1, 1}, .nclasses = nclasses};
    d.xf = kd_malloc((size_t)n * k * sizeof *d.xf);
    d.y = kd_malloc((size_t)n);
    float *mu = kd_malloc((size_t)nclasses * k * sizeof *mu);
    ck_assert(d.xf && d.y && mu);
    nn_rng r = nn_rng_stream(seed, NN_STREAM_DATA);
    for (int i = 0; i < nclasses * k; i++)
        mu[i] = nn_rng_normal(&r);
    for (int i = 0; i < n; i++) {
        d.y[i] = (uint8_t)nn_rng_below(&r, (uint32_t)nclasses);
        for (int j = 0; j < k; j++)
            d.xf[(size_t)i * k + j] = mu[d.y[i] * k + j] + 0.5f * nn_rng_normal(&r);
    }
    kd_free(mu);
    return d;
}

static inline nn_model *qt_quantize(nn_model *m, compress_qmode mode, const data_set *calib)
{
    compress_quant_spec s = {.mode = mode, .per_channel = 1, .calib_batches = 1};
    kd_err e = {0};
    nn_model *q = compress_quantize(m, &s, calib, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    return q;
}

/* m with int2 / int3 weights (dense_q2 / dense_q3, compress_quantize's
 * wbits); m is freed. */
static inline nn_model *qt_lowbit(nn_model *m, int bits)
{
    kd_err e = {0};
    compress_quant_spec s = {.mode = COMPRESS_Q_INT4, .wbits = bits};
    nn_model *q = compress_quantize(m, &s, NULL, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    nn_model_free(m);
    return q;
}

#endif
