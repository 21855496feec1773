/* Quantized layer kinds against float references of the same quantized math
 * (named tolerances below), on ragged shapes and batches 1, 3 and 17; a
 * whole MLP quantized vs fp32 (argmax agreement); overrides and bad specs;
 * weight bits; weights_hist.csv. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../compress/internal.h"
#include "qtest.h"
#include "../../compress/kernels/cpu.h"

/* Float accumulation vs exact int32: relative to the sum of |terms|. */
#define TOL_ACC 1e-5
/* An int8 output may differ from the float simulation by one step of its
 * scale (fixed-point vs float rounding); a float output by half an input
 * step times the weight scale (the bias rounded to int32). */
#define TOL_STEPS 1.0

enum { IN = 37, H1 = 19, H2 = 23, OUT = 5 };
static const int dense_at[3] = {0, 2, 5}; /* qt_mlp's dense layers */

/* Input range of each layer of m over calib (as compress_quantize
 * calibrates with min/max): lo[i], hi[i]. */
static void ranges(nn_model *m, const data_set *d, float *lo, float *hi)
{
    nn_ctx c = {.train = 0};
    ck_assert_ptr_nonnull(nn_model_forward(m, d->xf, d->n, &c));
    for (int i = 0; i < m->nlayers; i++) {
        quant_minmax mm;
        quant_minmax_init(&mm);
        quant_minmax_update(&mm, m->act[i], (size_t)d->n * nn_shape_size(m->layers[i].in));
        lo[i] = mm.lo;
        hi[i] = mm.hi;
    }
}

/* The effective float weights a kind computes with, from the fp32 ones. */
static void ref_weights(const nn_layer *l, compress_qmode mode, int per_channel, float *w,
                        float *ws)
{
    int m = l->spec.units, k = (int)nn_shape_size(l->in);
    if (mode == COMPRESS_Q_INT4) {
        kd_err e = {0};
        quant_q4 *q = quant_q4_pack(l->w, m, k, &e);
        quant_q4_unpack(q, w);
        quant_q4_free(q);
        return;
    }
    int8_t *q = malloc((size_t)m * k);
    quant_weights_s8(l->w, m, k, per_channel, ws, q);
    for (int r = 0; r < m; r++)
        for (int c = 0; c < k; c++)
            w[(size_t)r * k + c] = (float)q[(size_t)r * k + c] * ws[r];
    free(q);
}

typedef struct {
    compress_qmode mode;
    int per_channel;
    const float *lo, *hi;
} ref_ctx;

/* int4 on AVX2 runs q4x8 at every batch, whose activations are rounded per
 * 32-wide group to max|x_g| / 127 steps: |w| * max|x_g| / 254 per term. */
static double q4x8_slack(const float *w, const float *x, int k)
{
    if (kernels_isa() < KD_ISA_AVX2)
        return 0.0;
    double slack = 0.0;
    for (int g = 0; g < k; g += QUANT_Q4_GROUP) {
        double amax = 0.0, wsum = 0.0;
        for (int c = g; c < k && c < g + QUANT_Q4_GROUP; c++) {
            amax = fmax(amax, fabs(x[c]));
            wsum += fabs(w[c]);
        }
        slack += wsum * amax / 254.0;
    }
    return slack * (1.0 + 1e-4);
}

/* Checks q's dense layer i (input q->act[i], output q->act[i+1]) against
 * the float simulation from m's fp32 weights. */
static void check_layer(const ref_ctx *rc, nn_model *m, nn_model *q, int di, int n)
{
    int i = dense_at[di], next = di < 2 ? dense_at[di + 1] : -1;
    const nn_layer *l = &m->layers[i];
    int u = l->spec.units, k = (int)nn_shape_size(l->in);
    float *w = malloc(sizeof(float) * u * k), *ws = malloc(sizeof(float) * u);
    float *x = malloc(sizeof(float) * n * k);
    ref_weights(l, rc->mode, rc->per_channel, w, ws);
    quant_params in = {0}, out = {0};
    memcpy(x, q->act[i], sizeof(float) * n * k);
    if (rc->mode != COMPRESS_Q_INT4) {
        quant_minmax mm;
        quant_minmax_init(&mm);
        quant_minmax_update(&mm, x, (size_t)n * k);
        in = rc->mode == COMPRESS_Q_STATIC8 ? quant_params_asym(rc->lo[i], rc->hi[i], QUANT_S8)
                                            : quant_params_asym(mm.lo, mm.hi, QUANT_S8);
        quant_fake_forward(x, 1, n * k, &in.scale, &in.zero, 0, -128, 127, x);
    }
    int s8 = rc->mode == COMPRESS_Q_STATIC8 && next >= 0;
    if (s8)
        out = quant_params_asym(rc->lo[next], rc->hi[next], QUANT_S8);
    for (int s = 0; s < n; s++)
        for (int r = 0; r < u; r++) {
            double acc = l->b[r], terms = fabs(l->b[r]);
            for (int c = 0; c < k; c++) {
                double t = (double)x[s * k + c] * w[(size_t)r * k + c];
                acc += t;
                terms += fabs(t);
            }
            double ref = next >= 0 && acc < 0 ? 0.0 : acc, tol = TOL_ACC * terms + 1e-6;
            if (rc->mode == COMPRESS_Q_INT4)
                tol += q4x8_slack(w + (size_t)r * k, x + (size_t)s * k, k);
            if (s8) {
                float f = (float)ref;
                quant_fake_forward(&f, 1, 1, &out.scale, &out.zero, 0, -128, 127, &f);
                ref = f;
                tol += TOL_STEPS * out.scale;
            } else if (rc->mode == COMPRESS_Q_STATIC8) {
                tol += 0.5 * in.scale * ws[r];
            }
            double got = q->act[i + 1][s * u + r];
            ck_assert_msg(fabs(got - ref) <= tol, "mode %d layer %d batch %d [%d,%d]: %g vs %g "
                          "(tol %g)", rc->mode, i, n, s, r, got, ref, tol);
        }
    free(w);
    free(ws);
    free(x);
}

static void check_mode(compress_qmode mode, int per_channel)
{
    nn_model *m = qt_mlp(IN, H1, H2, OUT, 5);
    data_set d = qt_data(40, IN, OUT, 6);
    float lo[6], hi[6];
    ranges(m, &d, lo, hi);
    compress_quant_spec s = {.mode = mode, .per_channel = per_channel, .calib_batches = 1};
    kd_err e = {0};
    nn_model *q = compress_quantize(m, &s, &d, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    const char *fmt = mode == COMPRESS_Q_STATIC8    ? "int8"
                      : mode == COMPRESS_Q_DYNAMIC8 ? "int8-dyn"
                                                    : "int4";
    for (int di = 0; di < 3; di++)
        ck_assert_str_eq(nn_layer_format(&q->layers[dense_at[di]]), fmt);
    ref_ctx rc = {.mode = mode, .per_channel = per_channel, .lo = lo, .hi = hi};
    /* 1800 samples: big enough for the conversions to be split too */
    const int batches[4] = {1, 3, 17, 1800};
    /* on the calling thread and split across teams of 2 and 3 */
    for (int nt = 1; nt <= 3; nt++) {
        nn_team *team = nn_team_new(nt, &e);
        nn_ctx c = {.train = 0, .team = team};
        for (int b = 0; b < 4; b++) {
            int n = batches[b];
            data_set t = qt_data(n, IN, OUT, 100 + (uint64_t)n); /* partly outside the calibration */
            for (int j = 0; j < n * IN; j++)
                t.xf[j] *= 1.3f;
            ck_assert_ptr_nonnull(nn_model_forward(q, t.xf, n, &c));
            for (int di = 0; di < 3; di++)
                check_layer(&rc, m, q, di, n);
            data_set_free(&t);
        }
        nn_team_free(team);
    }
    nn_model_free(q);
    nn_model_free(m);
    data_set_free(&d);
}

START_TEST(test_static8_vs_reference)
{
    KDT_ISA_BEGIN(_i);
    check_mode(COMPRESS_Q_STATIC8, 1);
}
END_TEST
START_TEST(test_static8_per_tensor)
{
    KDT_ISA_BEGIN(_i);
    check_mode(COMPRESS_Q_STATIC8, 0);
}
END_TEST
START_TEST(test_dynamic8_vs_reference)
{
    KDT_ISA_BEGIN(_i);
    check_mode(COMPRESS_Q_DYNAMIC8, 1);
}
END_TEST
START_TEST(test_int4_vs_reference)
{
    KDT_ISA_BEGIN(_i);
    check_mode(COMPRESS_Q_INT4, 1);
}
END_TEST

/* A pruned model stored as CSR becomes csr-int8 and computes with the
 * int8 CSR reference's weights, on one thread or split across a team. */
START_TEST(test_csr_int8_vs_reference)
{
    KDT_ISA_BEGIN(_i);
    nn_model *m = qt_mlp(IN, H1, H2, OUT, 7);
    kd_err e = {0};
    compress_prune_spec ps = {.sparsity = 0.7f};
    ck_assert_int_eq(compress_prune_magnitude(m, &ps, NULL, &e), KD_OK);
    compress_sparse_opts all = {.policy = COMPRESS_SPARSE_ALWAYS};
    nn_model *sp = compress_to_sparse(m, &all, NULL, &e);
    ck_assert_msg(sp != NULL, "%s", e.msg);
    nn_model *q = qt_quantize(sp, COMPRESS_Q_STATIC8, NULL); /* no calibration needed */
    ck_assert_str_eq(nn_layer_format(&q->layers[2]), "csr-int8");
    size_t nz_m, nz_q;
    nn_model_params(m, &nz_m);
    ck_assert_uint_eq(nn_model_params(q, &nz_q), nn_model_params(m, NULL));
    ck_assert_uint_le(nz_q, nz_m);
    ck_assert_int_eq(compress_model_weight_bits(q), 8);
    const int batches[3] = {1, 3, 17};
    /* on the calling thread and split across teams of 2 and 3 */
    for (int nt = 1; nt <= 3; nt++) {
        nn_team *team = nn_team_new(nt, &e);
        nn_ctx c = {.train = 0, .team = team};
        for (int b = 0; b < 3; b++) {
            int n = batches[b];
            data_set t = qt_data(n, IN, OUT, 200 + (uint64_t)n);
            ck_assert_ptr_nonnull(nn_model_forward(q, t.xf, n, &c));
            for (int di = 0; di < 3; di++) {
                int i = dense_at[di];
                const nn_layer *l = &m->layers[i];
                int u = l->spec.units, k = (int)nn_shape_size(l->in);
                quant_csr *ref = quant_csr_from_dense(l->w, u, k, &e);
                float *y = malloc(sizeof(float) * n * u);
                quant_csr_gemm_ref(ref, q->act[i], n, l->b, y);
                for (int j = 0; j < n * u; j++) {
                    float want = di < 2 && y[j] < 0 ? 0.0f : y[j];
                    ck_assert_msg(fabsf(q->act[i + 1][j] - want) <= 1e-5f * (1 + fabsf(want)),
                                  "layer %d: %g vs %g", i, q->act[i + 1][j], want);
                }
                free(y);
                quant_csr_free(ref);
            }
            data_set_free(&t);
        }
        nn_team_free(team);
    }
    nn_model_free(q);
    nn_model_free(sp);
    nn_model_free(m);
}
END_TEST

/* A csr-int8 payload replaced after reserve (attach) is computed with the
 * new weights at batch 1, never through the panels of the old one, on one
 * thread or a team of 2. */
START_TEST(test_csr_int8_payload_replaced)
{
    KDT_ISA_BEGIN(_i);
    nn_model *m = qt_mlp(IN, H1, H2, OUT, 9);
    kd_err e = {0};
    compress_prune_spec ps = {.sparsity = 0.7f};
    ck_assert_int_eq(compress_prune_magnitude(m, &ps, NULL, &e), KD_OK);
    compress_sparse_opts all = {.policy = COMPRESS_SPARSE_ALWAYS};
    nn_model *sp = compress_to_sparse(m, &all, NULL, &e);
    ck_assert_msg(sp != NULL, "%s", e.msg);
    nn_model *q = qt_quantize(sp, COMPRESS_Q_STATIC8, NULL);
    const nn_layer *d = &m->layers[2];
    nn_layer *l = &q->layers[2];
    ck_assert_str_eq(nn_layer_format(l), "csr-int8");
    const int u = d->spec.units, k = (int)nn_shape_size(d->in);
    float *w2 = malloc(sizeof(float) * u * k), *y = malloc(sizeof(float) * u);
    for (int i = 0; i < u * k; i++) /* other weights, another sparsity pattern */
        w2[i] = d->w[i] != 0.0f ? -2.0f * d->w[i] : (i % 5 == 0 ? 0.3f : 0.0f);
    for (int nt = 1; nt <= 2; nt++) {
        nn_team *team = nn_team_new(nt, &e);
        nn_ctx c = {.train = 0, .team = team};
        data_set t = qt_data(1, IN, OUT, 300 + (uint64_t)nt);
        ck_assert_ptr_nonnull(nn_model_forward(q, t.xf, 1, &c)); /* reserves: panels built */
        quant_csr *nq = quant_csr_from_dense(w2, u, k, &e), *ref = quant_csr_from_dense(w2, u, k, &e);
        ck_assert_int_eq(compress_qcsr_attach(l, nq, &e), KD_OK);
        ck_assert_ptr_nonnull(nn_model_forward(q, t.xf, 1, &c));
        quant_csr_gemm_ref(ref, q->act[2], 1, l->b, y);
        for (int j = 0; j < u; j++) {
            float want = y[j] < 0 ? 0.0f : y[j]; /* relu follows */
            ck_assert_msg(fabsf(q->act[3][j] - want) <= 1e-5f * (1 + fabsf(want)),
                          "team %d row %d: %g vs %g", nt, j, q->act[3][j], want);
        }
        quant_csr_free(ref);
        data_set_free(&t);
        nn_team_free(team);
        for (int i = 0; i < u * k; i++) /* flip again for the next round */
            w2[i] = -w2[i];
    }
    free(w2), free(y);
    nn_model_free(q);
    nn_model_free(sp);
    nn_model_free(m);
}
END_TEST

static double agreement(nn_model *a, nn_model *b, const data_set *d)
{
    nn_ctx c = {.train = 0};
    int k = a->nclasses, same = 0;
    float *ya = malloc(sizeof(float) * d->n * k);
    memcpy(ya, nn_model_forward(a, d->xf, d->n, &c), sizeof(float) * d->n * k);
    const float *yb = nn_model_forward(b, d->xf, d->n, &c);
    for (int i = 0; i < d->n; i++) {
        int ia = 0, ib = 0;
        for (int j = 1; j < k; j++) {
            ia = ya[i * k + j] > ya[i * k + ia] ? j : ia;
            ib = yb[i * k + j] > yb[i * k + ib] ? j : ib;
        }
        same += ia == ib;
    }
    free(ya);
    return (double)same / d->n;
}

/* A whole small MLP: the quantized argmax agrees with fp32 on most inputs. */
START_TEST(test_mlp_argmax_agreement)
{
    KDT_ISA_BEGIN(_i);
    nn_model *m = qt_mlp(64, 96, 48, 10, 9);
    data_set calib = qt_data(256, 64, 10, 10), test = qt_data(300, 64, 10, 11);
    const compress_qmode modes[3] = {COMPRESS_Q_STATIC8, COMPRESS_Q_DYNAMIC8, COMPRESS_Q_INT4};
    const double need[3] = {0.95, 0.95, 0.85};
    for (int i = 0; i < 3; i++) {
        compress_quant_spec s = {.mode = modes[i], .per_channel = 1, .calib_batches = 2};
        kd_err e = {0};
        nn_model *q = compress_quantize(m, &s, &calib, &e);
        ck_assert_msg(q != NULL, "%s", e.msg);
        double a = agreement(m, q, &test);
        ck_assert_msg(a >= need[i], "mode %d: argmax agreement %.3f", i, a);
        nn_model_free(q);
    }
    /* percentile calibration too */
    compress_quant_spec s = {.mode = COMPRESS_Q_STATIC8, .per_channel = 1, .calib_batches = 2,
                             .calib = COMPRESS_CALIB_PERCENTILE, .percentile = 99.99f};
    kd_err e = {0};
    nn_model *q = compress_quantize(m, &s, &calib, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    ck_assert_msg(agreement(m, q, &test) >= 0.95, "percentile");
    nn_model_free(q);
    nn_model_free(m);
    data_set_free(&calib);
    data_set_free(&test);
}
END_TEST

START_TEST(test_overrides)
{
    nn_model *m = qt_mlp(IN, H1, H2, OUT, 12);
    data_set d = qt_data(40, IN, OUT, 13);
    compress_qoverride ov[2] = {{"dense1", 32}, {"dense3", 32}};
    compress_quant_spec s = {.mode = COMPRESS_Q_STATIC8, .per_channel = 1, .calib_batches = 1,
                             .overrides = ov, .noverrides = 2};
    kd_err e = {0};
    nn_model *q = compress_quantize(m, &s, &d, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    ck_assert_ptr_eq(q->layers[0].ops, &nn_dense_ops);
    ck_assert_ptr_eq(q->layers[2].ops, &compress_dense_q8_ops);
    ck_assert_ptr_eq(q->layers[5].ops, &nn_dense_ops);
    ck_assert_mem_eq(q->layers[0].w, m->layers[0].w, m->layers[0].nw * sizeof(float));
    nn_model_free(q);
    /* int4 with a glob keeping the middle at 8 bits: static int8 (calibrated) */
    compress_qoverride mid = {"dense[2]", 8};
    s = (compress_quant_spec){.mode = COMPRESS_Q_INT4, .calib_batches = 1, .overrides = &mid,
                              .noverrides = 1};
    q = compress_quantize(m, &s, &d, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    ck_assert_str_eq(nn_layer_format(&q->layers[0]), "int4");
    ck_assert_str_eq(nn_layer_format(&q->layers[2]), "int8");
    ck_assert_str_eq(nn_layer_format(&q->layers[5]), "int4");
    nn_model_free(q);
    /* refused: a glob matching nothing, bits 6, static int8 without data,
     * more calibration batches than the data holds, a bad group */
    compress_qoverride none = {"conv*", 32}, six = {"dense1", 6};
    compress_quant_spec bad[5] = {
        {.mode = COMPRESS_Q_STATIC8, .calib_batches = 1, .overrides = &none, .noverrides = 1},
        {.mode = COMPRESS_Q_STATIC8, .calib_batches = 1, .overrides = &six, .noverrides = 1},
        {.mode = COMPRESS_Q_STATIC8, .calib_batches = 1},
        {.mode = COMPRESS_Q_STATIC8, .calib_batches = 2},
        {.mode = COMPRESS_Q_INT4, .group = 64},
    };
    for (int i = 0; i < 5; i++) {
        ck_assert_ptr_null(compress_quantize(m, &bad[i], i == 2 ? NULL : &d, &e));
        ck_assert_int_eq(e.code, KD_ECONFIG);
    }
    ck_assert_ptr_nonnull(strstr(e.msg, "group"));
    ck_assert_ptr_null(compress_quantize(m, &bad[0], &d, &e));
    ck_assert_ptr_nonnull(strstr(e.msg, "conv*"));
    nn_model_free(m);
    data_set_free(&d);
}
END_TEST

/* conv2d layers stay fp32; the dense layer after them is quantized. */
START_TEST(test_conv_stays_fp32)
{
    const nn_layer_spec sp[] = {{.kind = NN_CONV2D, .filters = 3, .kernel = 3},
                                {.kind = NN_RELU},
                                {.kind = NN_FLATTEN},
                                {.kind = NN_DENSE, .units = 4}};
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){1, 6, 6}, sp, 4, NULL, &e);
    ck_assert_msg(m != NULL, "%s", e.msg);
    nn_model_init(m, 3);
    data_set d = qt_data(20, 36, 4, 4);
    d.shape = (nn_shape){1, 6, 6};
    nn_model *q = qt_quantize(m, COMPRESS_Q_STATIC8, &d);
    ck_assert_ptr_eq(q->layers[0].ops, &nn_conv2d_ops);
    ck_assert_str_eq(nn_layer_format(&q->layers[3]), "int8");
    ck_assert_int_eq(compress_model_weight_bits(q), 8); /* 144 int8 vs 27 fp32 weights */
    ck_assert(agreement(m, q, &d) >= 0.9);
    nn_model_free(q);
    nn_model_free(m);
    data_set_free(&d);
}
END_TEST

/* Every kind states its facts, so no caller needs its ops pointer; nn's own
 * kinds are told apart by nn_layer_is_builtin. */
START_TEST(test_kind_facts)
{
    int n = 0;
    const nn_layer_ops *const *k = compress_kinds(&n);
    ck_assert_int_ge(n, 6);
    for (int i = 0; i < n; i++) {
        ck_assert_msg(k[i]->format && k[i]->dequant && k[i]->dense_like, "%s", k[i]->name);
        int b = k[i]->weight_bits;
        ck_assert_msg(b == 32 || b == 8 || (b >= 2 && b <= 4), "%s: %d bits", k[i]->name, b);
        ck_assert_msg(!k[i]->sparse || !k[i]->trainable, "%s", k[i]->name);
    }
    ck_assert_int_eq(compress_dense_q4_ops.weight_bits, 4);
    ck_assert_int_eq(compress_dense_q3_ops.weight_bits, 3);
    ck_assert_int_eq(compress_dense_q2_ops.weight_bits, 2);
    ck_assert(compress_dense_csr_ops.sparse && compress_dense_csr_q8_ops.sparse);
    ck_assert(compress_dense_fq_ops.trainable);
    nn_model *m = qt_mlp(8, 6, 5, 3, 9);
    ck_assert(nn_layer_is_builtin(&m->layers[0]) && nn_layer_is_builtin(&m->layers[1]));
    nn_layer fake = m->layers[0];
    fake.ops = &compress_dense_csr_ops;
    ck_assert(!nn_layer_is_builtin(&fake));
    nn_model_free(m);
}
END_TEST

START_TEST(test_weight_bits)
{
    nn_model *m = qt_mlp(IN, 60, H2, OUT, 14);
    data_set d = qt_data(40, IN, OUT, 15);
    ck_assert_int_eq(compress_model_weight_bits(m), 32);
    nn_model *q8 = qt_quantize(m, COMPRESS_Q_STATIC8, &d), *q4 = qt_quantize(m, COMPRESS_Q_INT4, NULL),
             *d8 = qt_quantize(m, COMPRESS_Q_DYNAMIC8, NULL);
    ck_assert_int_eq(compress_model_weight_bits(q8), 8);
    ck_assert_int_eq(compress_model_weight_bits(d8), 8);
    ck_assert_int_eq(compress_model_weight_bits(q4), 4);
    /* the biggest layer (37 x 60) at fp32 outweighs the rest at int4 */
    compress_qoverride ov = {"dense1", 32};
    compress_quant_spec s = {.mode = COMPRESS_Q_INT4, .overrides = &ov, .noverrides = 1};
    kd_err e = {0};
    nn_model *mix = compress_quantize(m, &s, NULL, &e);
    ck_assert_int_eq(compress_model_weight_bits(mix), 32);
    nn_model_free(mix);
    nn_model_free(q8);
    nn_model_free(q4);
    nn_model_free(d8);
    nn_model_free(m);
    data_set_free(&d);
}
END_TEST

START_TEST(test_weights_hist)
{
    char dir[256], path[512];
    kdt_tmpdir(dir, sizeof dir);
    nn_model *m = qt_mlp(IN, H1, H2, OUT, 16);
    nn_model *q4 = qt_quantize(m, COMPRESS_Q_INT4, NULL);
    const char *names[2] = {"fp32", "int4"};
    const nn_model *models[2] = {m, q4};
    kd_err e = {0};
    int first = 0; /* the fp32 model's first dense layer: five pruned weights */
    while (!m->layers[first].nw)
        first++;
    for (int i = 0; i < 5; i++)
        m->layers[first].w[7 * i] = 0.0f;
    ck_assert_int_eq(compress_write_weights_hist(dir, names, models, 2, 8, &e), KD_OK);
    snprintf(path, sizeof path, "%s/weights_hist.csv", dir);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char line[256];
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_str_eq(line, "variant,layer,bin_lo,bin_hi,count,zeros\n");
    long sum[2][3] = {{0}}, rows = 0;
    float first_lo = 0, prev_hi = 0;
    while (fgets(line, sizeof line, f)) {
        char v[16], l[16];
        float lo, hi;
        long c, z;
        ck_assert_int_eq(sscanf(line, "%15[^,],%15[^,],%f,%f,%ld,%ld", v, l, &lo, &hi, &c, &z),
                         6);
        int vi = strcmp(v, "int4") == 0, li = l[5] - '1';
        ck_assert(li >= 0 && li < 3);
        if (rows % 8 == 0)
            first_lo = lo;
        else
            ck_assert(fabsf(lo - prev_hi) <= 1e-6f * (1 + fabsf(lo)));
        ck_assert(lo <= hi && c >= 0);
        prev_hi = hi;
        sum[vi][li] += c + (rows % 8 == 0 ? z : 0); /* zeros: once per layer */
        if (!vi && !li) /* exact zeros are counted apart, not binned */
            ck_assert_int_eq(z, 5);
        rows++;
        (void)first_lo;
    }
    fclose(f);
    ck_assert_int_eq(rows, 2 * 3 * 8);
    const long want[3] = {IN * H1, H1 * H2, H2 * OUT};
    for (int v = 0; v < 2; v++)
        for (int li = 0; li < 3; li++)
            ck_assert_int_eq(sum[v][li], want[li]);
    ck_assert_int_eq(compress_write_weights_hist(dir, names, models, 2, 0, &e), KD_ECONFIG);
    nn_model_free(q4);
    nn_model_free(m);
}
END_TEST

/* With q4x8 (AVX2 and up), a sample's int4 outputs are the same bits alone
 * (one thread) and inside a batch split across a team of 2 (which quantizes the batch's activations
 * once, split by samples, then splits the rows). */
START_TEST(test_int4_batch_invariant)
{
    KDT_ISA_BEGIN(_i);
    nn_model *m = qt_mlp(IN, H1, H2, OUT, 5);
    nn_model *q = qt_quantize(m, COMPRESS_Q_INT4, NULL);
    const int n = 19;
    data_set t = qt_data(n, IN, OUT, 77);
    kd_err e = {0};
    nn_team *team = nn_team_new(2, &e);
    ck_assert_ptr_nonnull(team);
    nn_ctx c2 = {.train = 0, .team = team}, c1 = {.train = 0};
    const float *yb = nn_model_forward(q, t.xf, n, &c2);
    ck_assert_ptr_nonnull(yb);
    float *all = malloc(sizeof(float) * n * OUT);
    memcpy(all, yb, sizeof(float) * n * OUT);
    for (int s = 0; s < n; s++) {
        const float *y1 = nn_model_forward(q, t.xf + (size_t)s * IN, 1, &c1);
        ck_assert_ptr_nonnull(y1);
        if (kernels_isa() >= KD_ISA_AVX2) /* q4x8 */
            ck_assert_msg(memcmp(y1, all + (size_t)s * OUT, sizeof(float) * OUT) == 0,
                          "sample %d: alone %g, in the batch %g", s, y1[0], all[(size_t)s * OUT]);
        else /* the float specification: sgemm panels from 16 samples, summed in another order */
            for (int r = 0; r < OUT; r++)
                ck_assert_float_eq_tol(y1[r], all[(size_t)s * OUT + r],
                                       1e-4f * fabsf(y1[r]) + 1e-5f);
    }
    free(all);
    nn_team_free(team);
    data_set_free(&t);
    nn_model_free(q);
    nn_model_free(m);
}
END_TEST

/* GPTQ rounding (int4): needs calibration data, gives int4 layers, and its
 * logits on the calibration samples are closer to fp32 than nearest
 * rounding's. */
START_TEST(test_int4_gptq_model)
{
    nn_model *m = qt_mlp(IN, H1, H2, OUT, 5);
    data_set d = qt_data(512, IN, OUT, 6);
    compress_quant_spec s = {.mode = COMPRESS_Q_INT4, .per_channel = 1, .calib_batches = 4,
                             .rounding = COMPRESS_ROUND_GPTQ, .damp = 0.01f};
    kd_err e = {0};
    ck_assert_ptr_null(compress_quantize(m, &s, NULL, &e));
    ck_assert_int_eq(e.code, KD_ECONFIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "calibration data"));
    s.damp = 0.0f;
    ck_assert_ptr_null(compress_quantize(m, &s, &d, &e));
    s.damp = 0.01f;
    nn_model *g = compress_quantize(m, &s, &d, &e);
    ck_assert_msg(g != NULL, "%s", e.msg);
    s.rounding = COMPRESS_ROUND_NEAREST;
    nn_model *r = compress_quantize(m, &s, &d, &e);
    ck_assert_ptr_nonnull(r);
    for (int di = 0; di < 3; di++)
        ck_assert_str_eq(nn_layer_format(&g->layers[dense_at[di]]), "int4");
    nn_ctx c = {.train = 0};
    const int n = 256;
    float *ref = malloc(sizeof(float) * n * OUT);
    memcpy(ref, nn_model_forward(m, d.xf, n, &c), sizeof(float) * n * OUT);
    double err[2] = {0, 0};
    nn_model *qs[2] = {g, r};
    for (int v = 0; v < 2; v++) {
        const float *y = nn_model_forward(qs[v], d.xf, n, &c);
        for (int i = 0; i < n * OUT; i++)
            err[v] += ((double)y[i] - ref[i]) * ((double)y[i] - ref[i]);
    }
    ck_assert_msg(err[0] < 0.8 * err[1], "gptq logit error %g, nearest %g", err[0], err[1]);
    free(ref);
    nn_model_free(g);
    nn_model_free(r);
    nn_model_free(m);
    data_set_free(&d);
}
END_TEST

Suite *suite_compress_qlayers(void)
{
    Suite *s = suite_create("compress_qlayers");
    TCase *t = tcase_create("core");
    KDT_ISA_LOOP(t, test_static8_vs_reference);
    KDT_ISA_LOOP(t, test_static8_per_tensor);
    KDT_ISA_LOOP(t, test_dynamic8_vs_reference);
    KDT_ISA_LOOP(t, test_int4_vs_reference);
    KDT_ISA_LOOP(t, test_int4_batch_invariant);
    KDT_ISA_LOOP(t, test_csr_int8_vs_reference);
    KDT_ISA_LOOP(t, test_csr_int8_payload_replaced);
    KDT_ISA_LOOP(t, test_mlp_argmax_agreement);
    tcase_add_test(t, test_int4_gptq_model);
    tcase_add_test(t, test_overrides);
    tcase_add_test(t, test_conv_stays_fp32);
    tcase_add_test(t, test_kind_facts);
    tcase_add_test(t, test_weight_bits);
    tcase_add_test(t, test_weights_hist);
    suite_add_tcase(s, t);
    return s;
}
