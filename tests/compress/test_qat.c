/* Quantization-aware training: dense_fq models train with train_fit as they
 * are; converted to integers they compute what their fake-quant eval
 * forward computed, within one quantization step per output (int8) or
 * float rounding (int4, whose fake quant is quant_q4_pack's exactly); the
 * straight-through estimator zeroes the input gradient where the input was
 * clipped. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../compress/kernels/cpu.h"
#include "../../compress/kernels/kernels.h"
#include "../../train/train.h"
#include "qtest.h"

enum { IN = 12, OUT = 3, N = 96 };
static const int dense_at[3] = {0, 2, 5};

static nn_model *trained_fq(compress_qmode mode, const data_set *d)
{
    nn_model *m = qt_mlp(IN, 16, 10, OUT, 31);
    compress_quant_spec s = {.mode = mode, .per_channel = 1};
    kd_err e = {0};
    nn_model *fq = compress_qat_prepare(m, &s, &e);
    ck_assert_msg(fq != NULL, "%s", e.msg);
    nn_model_free(m);
    for (int i = 0; i < 3; i++)
        ck_assert_str_eq(nn_layer_format(&fq->layers[dense_at[i]]), "fp32-fakequant");
    train_opts o = {.epochs = 3, .batch_size = 32, .seed = 5,
                    .opt = {.kind = NN_OPT_SGD, .lr = 0.05f, .momentum = 0.9f}};
    train_state st;
    ck_assert_int_eq(train_state_init(&st, fq, &o, &e), KD_OK);
    train_hooks h = {.quiet = 1};
    ck_assert_msg(train_fit(&st, &o, d, NULL, &h, &e) == KD_OK, "%s", e.msg);
    ck_assert(st.history[2].loss < st.history[0].loss);
    train_state_free(&st);
    return fq;
}

/* Layer by layer on the integer model's own inputs: the fq layer's eval
 * output, relu'd and fake-quantized to the next layer's range where the
 * integer layer requantizes, within one step (or float rounding). */
START_TEST(test_qat_static8_converts)
{
    data_set d = qt_data(N, IN, OUT, 32);
    nn_model *fq = trained_fq(COMPRESS_Q_STATIC8, &d);
    compress_quant_spec s = {.mode = COMPRESS_Q_STATIC8, .per_channel = 1};
    kd_err e = {0};
    nn_model *q = compress_quantize(fq, &s, NULL, &e); /* learned ranges: no calibration */
    ck_assert_msg(q != NULL, "%s", e.msg);
    ck_assert_str_eq(nn_layer_format(&q->layers[0]), "int8");
    nn_ctx c = {.train = 0};
    const int n = 17;
    ck_assert_ptr_nonnull(nn_model_forward(q, d.xf, n, &c));
    ck_assert_ptr_nonnull(nn_model_forward(fq, d.xf, n, &c)); /* reserves fq's scratch */
    for (int di = 0; di < 3; di++) {
        int i = dense_at[di], u = q->layers[i].spec.units;
        nn_layer *l = &fq->layers[i];
        float *y = malloc(sizeof(float) * n * u);
        l->ops->forward(l, q->act[i], y, n, &c);
        float step = 0.0f;
        if (di < 2) {
            const float *b = fq->layers[dense_at[di + 1]].buf;
            quant_params p = quant_params_asym(b[0], b[1], QUANT_S8);
            for (int j = 0; j < n * u; j++)
                y[j] = y[j] > 0 ? y[j] : 0;
            quant_fake_forward(y, 1, n * u, &p.scale, &p.zero, 0, -128, 127, y);
            step = p.scale;
        }
        for (int j = 0; j < n * u; j++)
            ck_assert_msg(fabsf(q->act[i + 1][j] - y[j]) <= step + 1e-3f * (1 + fabsf(y[j])),
                          "layer %d [%d]: %g vs %g (step %g)", i, j, q->act[i + 1][j], y[j], step);
        free(y);
    }
    nn_model_free(q);
    nn_model_free(fq);
    data_set_free(&d);
}
END_TEST

/* int4: the same weights, float activations both ways (the int4 model at the
 * scalar level, whose kernel is the float specification; with AVX2 the
 * kernel rounds activations to int8, bounded in test_q4x8.c): float
 * rounding only. */
START_TEST(test_qat_int4_converts)
{
    data_set d = qt_data(N, IN, OUT, 33);
    nn_model *fq = trained_fq(COMPRESS_Q_INT4, &d);
    compress_quant_spec s = {.mode = COMPRESS_Q_INT4};
    kd_err e = {0};
    nn_model *q = compress_quantize(fq, &s, NULL, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    ck_assert_str_eq(nn_layer_format(&q->layers[2]), "int4");
    nn_ctx c = {.train = 0};
    float *y = malloc(sizeof(float) * N * OUT);
    memcpy(y, nn_model_forward(fq, d.xf, N, &c), sizeof(float) * N * OUT);
    kd_isa was = kernels_isa_force(KD_ISA_SCALAR);
    const float *yq = nn_model_forward(q, d.xf, N, &c);
    kernels_isa_force(was);
    for (int j = 0; j < N * OUT; j++)
        ck_assert_msg(fabsf(yq[j] - y[j]) <= 1e-4f * (1 + fabsf(y[j])), "%g vs %g", yq[j], y[j]);
    free(y);
    nn_model_free(q);
    nn_model_free(fq);
    data_set_free(&d);
}
END_TEST

/* QAT simulates PTQ's int4 bit for bit: a dense_fq layer's fake-quantized
 * weights are dequant(quant_q4_pack(its raw weights)), on random weights of
 * every magnitude (groups under fp16's smallest normal scale included) and
 * rows of k = 45, not a multiple of the 32-weight group. */
START_TEST(test_qat_int4_equals_ptq)
{
    enum { K = 45 };
    nn_model *m = qt_mlp(K, 40, 10, OUT, 41);
    nn_rng r = nn_rng_stream(42, NN_STREAM_TEST);
    for (size_t j = 0; j < m->layers[0].nw; j++) /* magnitudes from 1e-9 to 1e3 */
        m->layers[0].w[j] = nn_rng_normal(&r) * powf(10.0f, -9.0f + 12.0f * nn_rng_uniform(&r));
    compress_quant_spec s = {.mode = COMPRESS_Q_INT4};
    kd_err e = {0};
    nn_model *fq = compress_qat_prepare(m, &s, &e);
    ck_assert_msg(fq != NULL, "%s", e.msg);
    nn_model *q = compress_quantize(fq, &s, NULL, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    for (int di = 0; di < 3; di++) {
        const nn_layer *l = &fq->layers[dense_at[di]], *lq = &q->layers[dense_at[di]];
        int u = l->spec.units, k = (int)nn_shape_size(l->in);
        ck_assert_ptr_nonnull(l->ops->dequant);
        ck_assert_ptr_nonnull(lq->ops->dequant);
        float *wf = malloc(sizeof(float) * u * k), *wp = malloc(sizeof(float) * u * k);
        float *wq = malloc(sizeof(float) * u * k);
        l->ops->dequant(l, wf);
        quant_q4 *p4 = quant_q4_pack(l->w, u, k, &e);
        ck_assert_ptr_nonnull(p4);
        quant_q4_unpack(p4, wp);
        lq->ops->dequant(lq, wq);
        for (int j = 0; j < u * k; j++) {
            ck_assert_msg(memcmp(&wf[j], &wp[j], sizeof wf[j]) == 0,
                          "layer %d weight %d: qat %a ptq %a", dense_at[di], j, (double)wf[j],
                          (double)wp[j]);
            ck_assert(memcmp(&wq[j], &wp[j], sizeof wq[j]) == 0);
        }
        quant_q4_free(p4);
        free(wf), free(wp), free(wq);
    }
    nn_model_free(q);
    nn_model_free(fq);
    nn_model_free(m);
}
END_TEST

/* Dynamic: same argmax nearly everywhere. Overrides: fp32 layers stay dense. */
START_TEST(test_qat_dynamic_and_overrides)
{
    data_set d = qt_data(N, IN, OUT, 34);
    nn_model *fq = trained_fq(COMPRESS_Q_DYNAMIC8, &d);
    compress_quant_spec s = {.mode = COMPRESS_Q_DYNAMIC8, .per_channel = 1};
    kd_err e = {0};
    nn_model *q = compress_quantize(fq, &s, NULL, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    nn_ctx c = {.train = 0};
    float *y = malloc(sizeof(float) * N * OUT);
    memcpy(y, nn_model_forward(fq, d.xf, N, &c), sizeof(float) * N * OUT);
    const float *yq = nn_model_forward(q, d.xf, N, &c);
    int same = 0;
    for (int i = 0; i < N; i++) {
        int a = 0, b = 0;
        for (int j = 1; j < OUT; j++) {
            a = y[i * OUT + j] > y[i * OUT + a] ? j : a;
            b = yq[i * OUT + j] > yq[i * OUT + b] ? j : b;
        }
        same += a == b;
    }
    ck_assert_int_ge(same, N * 95 / 100);
    free(y);
    nn_model_free(q);
    /* keep the last layer fp32: it stays nn's dense in QAT and after */
    nn_model *m = qt_mlp(IN, 16, 10, OUT, 35);
    compress_qoverride ov = {"dense3", 32};
    s = (compress_quant_spec){.mode = COMPRESS_Q_STATIC8, .overrides = &ov, .noverrides = 1};
    nn_model *f2 = compress_qat_prepare(m, &s, &e);
    ck_assert_ptr_eq(f2->layers[5].ops, &nn_dense_ops);
    ck_assert_ptr_eq(f2->layers[2].ops, &compress_dense_fq_ops);
    /* untrained ranges: static int8 then needs calibration data */
    ck_assert_ptr_null(compress_quantize(f2, &s, NULL, &e));
    ck_assert_int_eq(e.code, KD_ECONFIG);
    nn_model *q2 = compress_quantize(f2, &(compress_quant_spec){.mode = COMPRESS_Q_STATIC8,
        .calib_batches = 1, .overrides = &ov, .noverrides = 1}, &d, &e);
    ck_assert_msg(q2 != NULL, "%s", e.msg);
    ck_assert_ptr_eq(q2->layers[5].ops, &nn_dense_ops);
    ck_assert_mem_eq(q2->layers[5].w, m->layers[5].w, m->layers[5].nw * sizeof(float));
    ck_assert_str_eq(nn_layer_format(&q2->layers[0]), "int8");
    nn_model_free(q2);
    nn_model_free(f2);
    nn_model_free(m);
    nn_model_free(fq);
    data_set_free(&d);
}
END_TEST

/* Straight-through estimator: with a range narrower than the batch, dx is
 * exactly 0 where the input was clipped and not elsewhere; dW flows. */
START_TEST(test_ste_backward)
{
    const nn_layer_spec sp = {.kind = NN_DENSE, .units = 4, .ops = &compress_dense_fq_ops};
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){6, 1, 1}, &sp, 1, NULL, &e);
    ck_assert_msg(m != NULL, "%s", e.msg);
    nn_model_init(m, 3);
    compress_quant_spec s = {.mode = COMPRESS_Q_STATIC8, .per_channel = 1};
    nn_model *f = compress_qat_prepare(m, &s, &e); /* dense_fq -> not converted again */
    ck_assert_ptr_nonnull(f);
    nn_model_free(f);
    nn_model *plain = nn_model_new((nn_shape){6, 1, 1}, &(nn_layer_spec){.kind = NN_DENSE,
                                   .units = 4}, 1, NULL, &e);
    nn_model_init(plain, 3);
    f = compress_qat_prepare(plain, &s, &e);
    nn_layer *l = &f->layers[0];
    l->buf[0] = -0.5f, l->buf[1] = 0.5f, l->buf[2] = 1.0f; /* seen, narrow */
    float x[2 * 6], dy[2 * 4], dx[2 * 6];
    nn_rng r = nn_rng_stream(4, NN_STREAM_TEST);
    for (int i = 0; i < 12; i++)
        x[i] = 2.0f * nn_rng_normal(&r);
    for (int i = 0; i < 8; i++)
        dy[i] = nn_rng_normal(&r);
    nn_ctx c = {.train = 1};
    nn_model_zero_grad(f);
    ck_assert_ptr_nonnull(nn_model_forward(f, x, 2, &c));
    float lo = l->buf[0], hi = l->buf[1];
    quant_params p = quant_params_asym(lo, hi, QUANT_S8);
    nn_model_backward_ex(f, dy, -1, NULL, dx, 2, &c);
    int clipped = 0, passed = 0;
    for (int i = 0; i < 12; i++) {
        float q = roundf(x[i] / p.scale) + (float)p.zero;
        if (q < -128 || q > 127) {
            ck_assert(dx[i] == 0.0f);
            clipped++;
        } else {
            passed += dx[i] != 0.0f;
        }
    }
    ck_assert(clipped > 0 && passed > 0);
    float g = 0;
    for (size_t i = 0; i < l->nw; i++)
        g += fabsf(l->gw[i]);
    ck_assert(g > 0);
    nn_model_free(f);
    nn_model_free(plain);
    nn_model_free(m);
}
END_TEST

Suite *suite_compress_qat(void)
{
    Suite *s = suite_create("compress_qat");
    TCase *t = tcase_create("core");
    tcase_add_test(t, test_qat_static8_converts);
    tcase_add_test(t, test_qat_int4_converts);
    tcase_add_test(t, test_qat_int4_equals_ptq);
    tcase_add_test(t, test_qat_dynamic_and_overrides);
    tcase_add_test(t, test_ste_backward);
    suite_add_tcase(s, t);
    return s;
}
