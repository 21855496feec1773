/* 2/3/4-bit weights (compress/kernels/quant_lowbit.h): code round trips for
 * every level at every position; packing on exact grids at odd lengths and
 * group edges; the least-squares group scale never worse than max-abs; the
 * AVX2 rows within float-order tolerance of their integer reference (bit
 * exact on power-of-two scales); the dispatched GEMM at every ISA level
 * within the activation-rounding bound of the float specification; loads
 * refusing bad scales and padding; LSQ's step gradient against finite
 * differences of its straight-through surrogate. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../compress/kernels/q4x8.h"
#include "../../compress/kernels/quant_lowbit.h"
#include "qtest.h"

#define G QUANT_QL_GROUP
#define QL_TOL 1e-5

static float *rand_f(nn_rng *r, size_t n, float sd)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = sd * nn_rng_normal(r);
    return p;
}

START_TEST(codes_round_trip)
{
    nn_rng r = nn_rng_stream(31, NN_STREAM_TEST);
    for (int bits = 2; bits <= 4; bits++) {
        const int qn = quant_ql_qn(bits), qp = quant_ql_qp(bits);
        for (int t = 0; t < 200; t++) {
            int8_t q[G], back[G];
            uint8_t code[16];
            for (int j = 0; j < G; j++) /* every level at every position over the trials */
                q[j] = (int8_t)(t < 2 * (qn + qp + 1) ? ((j + t) % (qn + qp + 1)) - qn
                                                      : (int)nn_rng_below(&r, qn + qp + 1) - qn);
            memset(code, 0xa5, sizeof code);
            quant_ql_encode(q, bits, code);
            quant_ql_decode(code, bits, back);
            ck_assert_mem_eq(q, back, sizeof q);
            for (int j = QUANT_QL_CODE_BYTES(bits); j < 16; j++) /* nothing written past */
                ck_assert_uint_eq(code[j], 0xa5);
        }
    }
}
END_TEST

/* Weights on the grid d * q (d a power of two, every level used, the group
 * maximum present): pack with that step and unpack give them back exactly,
 * at lengths that end inside, at and past group edges; padding is level 0. */
START_TEST(pack_unpack_exact)
{
    nn_rng r = nn_rng_stream(32, NN_STREAM_TEST);
    const int ks[] = {1, 7, 31, 32, 33, 63, 64, 65, 100, 257};
    for (int bits = 2; bits <= 4; bits++)
        for (size_t t = 0; t < sizeof ks / sizeof *ks; t++) {
            const int m = 3, k = ks[t], qn = quant_ql_qn(bits), qp = quant_ql_qp(bits);
            float *w = malloc((size_t)m * k * sizeof *w), *back = malloc((size_t)m * k * sizeof *back);
            for (int i = 0; i < m * k; i++)
                w[i] = 0.125f * (float)((int)nn_rng_below(&r, qn + qp + 1) - qn);
            kd_err e = {0};
            quant_ql *q = quant_ql_pack(w, m, k, bits, 0.125f, &e);
            ck_assert_msg(q != NULL, "%s", e.msg);
            ck_assert_int_eq(q->nb, (k + G - 1) / G);
            quant_ql_unpack(q, back);
            ck_assert_mem_eq(w, back, (size_t)m * k * sizeof *w);
            ck_assert(quant_ql_valid(q));
            int8_t lv[G];
            quant_ql_decode(q->code + ((size_t)q->nb - 1) * QUANT_QL_CODE_BYTES(bits), bits, lv);
            for (int j = k - (q->nb - 1) * G; j < G; j++)
                ck_assert_int_eq(lv[j], 0);
            /* the searched scale finds a grid too (the max level's scale is a candidate) */
            quant_ql *s = quant_ql_pack(w, m, k, bits, 0.0f, &e);
            quant_ql_unpack(s, back);
            for (int i = 0; i < m * k; i++)
                ck_assert_msg(fabsf(back[i] - w[i]) <= 0.0625f + 1e-6f, "bits %d k %d at %d: %g vs %g",
                              bits, k, i, back[i], w[i]);
            quant_ql_free(s);
            quant_ql_free(q);
            free(w), free(back);
        }
}
END_TEST

/* Squared error of the least-squares scale <= that of the max-abs one. */
START_TEST(block_scale_beats_maxabs)
{
    nn_rng r = nn_rng_stream(33, NN_STREAM_TEST);
    for (int bits = 2; bits <= 4; bits++)
        for (int t = 0; t < 100; t++) {
            float *w = rand_f(&r, G, 0.1f);
            uint16_t d;
            uint8_t code[16];
            int8_t lv[G];
            quant_ql_block(w, G, bits, 0.0f, &d, code);
            quant_ql_decode(code, bits, lv);
            double e1 = 0.0, e2 = 0.0, amax = 0.0;
            for (int j = 0; j < G; j++)
                amax = fmax(amax, fabs(w[j]));
            float dm = quant_f16_to_f32(quant_f32_to_f16((float)amax / (float)quant_ql_qn(bits)));
            for (int j = 0; j < G; j++) {
                e1 += pow(w[j] - quant_f16_to_f32(d) * lv[j], 2);
                float v = roundf(w[j] / dm);
                v = fminf(fmaxf(v, (float)-quant_ql_qn(bits)), (float)quant_ql_qp(bits));
                e2 += pow(w[j] - dm * v, 2);
            }
            ck_assert_msg(e1 <= e2 * (1 + 1e-6), "bits %d: %g > %g", bits, e1, e2);
            free(w);
        }
}
END_TEST

typedef struct {
    int m, k, n;
} shape;
static const shape shapes[] = {{1, 1, 1},  {7, 31, 3},   {5, 33, 15},   {9, 45, 1},
                               {3, 64, 5}, {13, 100, 1}, {6, 96, 16},   {10, 784, 3},
                               {6, 95, 17}, {11, 130, 40}, {5, 4200, 2}};

/* The activation-rounding bound of output (i, r) against the float spec. */
static double bound(const quant_ql *q, const float *x, int r)
{
    double b = 0.0, mag = 1e-6;
    int8_t lv[G];
    for (int g = 0; g < q->nb; g++) {
        size_t gi = (size_t)r * q->nb + g;
        quant_ql_decode(q->code + gi * QUANT_QL_CODE_BYTES(q->bits), q->bits, lv);
        double amax = 0.0, lsum = 0.0, d = quant_f16_to_f32(q->d[gi]);
        for (int j = 0; j < G && g * G + j < q->k; j++) {
            amax = fmax(amax, fabs(x[g * G + j]));
            lsum += abs(lv[j]);
            mag += d * abs(lv[j]) * fabs(x[g * G + j]);
        }
        b += d * amax / 254.0 * lsum;
    }
    return b * (1 + 1e-4) + QL_TOL * mag;
}

START_TEST(gemm_every_isa_vs_spec)
{
    KDT_ISA_BEGIN(_i);
    nn_rng r = nn_rng_stream(34, NN_STREAM_TEST);
    for (int bits = 2; bits <= 4; bits++)
        for (size_t t = 0; t < sizeof shapes / sizeof *shapes; t++) {
            shape s = shapes[t];
            float *w = rand_f(&r, (size_t)s.m * s.k, 0.3f), *x = rand_f(&r, (size_t)s.n * s.k, 1.0f);
            float *b = rand_f(&r, (size_t)s.m, 0.1f);
            float *ya = malloc((size_t)s.n * s.m * sizeof *ya), *yb = malloc((size_t)s.n * s.m * sizeof *yb);
            quant_ql *q = quant_ql_pack(w, s.m, s.k, bits, 0.0f, NULL);
            quant_ql_gemm_ref(q, x, s.n, b, ya);
            quant_ql_gemm_rows(q, x, s.n, b, yb, 0, s.m / 2); /* two parts: rows split */
            quant_ql_gemm_rows(q, x, s.n, b, yb, s.m / 2, s.m);
            for (int i = 0; i < s.n; i++)
                for (int j = 0; j < s.m; j++) {
                    size_t at = (size_t)i * s.m + j;
                    ck_assert_msg(fabs((double)ya[at] - yb[at]) <= bound(q, x + (size_t)i * s.k, j) + 1e-5 * fabs(ya[at]),
                                  "isa %d bits %d %dx%d n=%d (%d,%d): %g vs %g", _i, bits, s.m,
                                  s.k, s.n, i, j, ya[at], yb[at]);
                }
            quant_ql_free(q);
            free(w), free(x), free(b), free(ya), free(yb);
        }
}
END_TEST

/* The AVX2 rows against their integer reference: within float-order
 * tolerance in general, bit-exact on power-of-two scales. */
START_TEST(rows_avx2_vs_ref)
{
    if (!kernels_isa_supported(KD_ISA_AVX2))
        KDT_SKIP("the host has no AVX2");
    nn_rng r = nn_rng_stream(35, NN_STREAM_TEST);
    for (int bits = 2; bits <= 4; bits++)
        for (int exact = 0; exact < 2; exact++) {
            const int m = 9, k = 257, nb = (k + G - 1) / G, qn = quant_ql_qn(bits);
            float *w = rand_f(&r, (size_t)m * k, 0.3f), *x = rand_f(&r, k, 1.0f);
            if (exact) {
                for (int i = 0; i < m * k; i++)
                    w[i] = 0.125f * (float)((int)nn_rng_below(&r, 2 * qn) - qn);
                for (int i = 0; i < k; i++) /* steps of 1/64, 127/64 in every group */
                    x[i] = (i % G == 0 ? 127 : (int)nn_rng_below(&r, 255) - 127) / 64.0f;
            }
            quant_ql *q = quant_ql_pack(w, m, k, bits, exact ? 0.125f : 0.0f, NULL);
            int8_t xq[9 * G];
            float dx[9], corr[9], ya[9], yb[9];
            q4x8_quantize_ref(x, k, xq, dx, corr);
            quant_ql_rows_ref(q, xq, dx, corr, NULL, ya, 0, m);
            quant_ql_rows_avx2(q, xq, dx, corr, NULL, yb, 0, m);
            for (int j = 0; j < m; j++) {
                double mag = 1e-6;
                for (int g = 0; g < nb; g++)
                    mag += quant_f16_to_f32(q->d[(size_t)j * nb + g]) * dx[g] * 127.0 * 2 * qn * G;
                if (exact)
                    ck_assert_msg(ya[j] == yb[j], "bits %d row %d: %.9g vs %.9g", bits, j, ya[j], yb[j]);
                else
                    ck_assert_msg(fabs(ya[j] - yb[j]) <= QL_TOL * mag, "bits %d row %d", bits, j);
            }
            quant_ql_free(q);
            free(w), free(x);
        }
}
END_TEST

/* ---- LSQ ------------------------------------------------------------------ */

/* L(s) = sum_i c_i * w_hat_i(s) with w_hat on LSQ's straight-through
 * surrogate around s0: inside the range s * (round(w/s0) + w/s - w/s0),
 * clipped: s * -Qn or s * Qp.  Its derivative at s0 is LSQ's step gradient
 * before the scale g. */
static double surrogate(const float *w, const float *c, int n, int bits, double s0, double s)
{
    const double qn = quant_ql_qn(bits), qp = quant_ql_qp(bits);
    double L = 0.0;
    for (int i = 0; i < n; i++) {
        double v0 = w[i] / s0, wh;
        if (v0 < -qn)
            wh = -qn * s;
        else if (v0 > qp)
            wh = qp * s;
        else
            wh = s * (round(v0) + w[i] / s - v0);
        L += c[i] * wh;
    }
    return L;
}

START_TEST(lsq_step_gradient)
{
    nn_rng r = nn_rng_stream(36, NN_STREAM_TEST);
    for (int bits = 2; bits <= 4; bits++)
        for (int t = 0; t < 10; t++) {
            const int n = 500;
            float *w = rand_f(&r, n, 0.2f), *c = rand_f(&r, n, 1.0f);
            float *gw = calloc(n, sizeof *gw), gs = 0.0f;
            float s = compress_lsq_step_of(compress_lsq_step_init(w, n, bits) * (0.7f + 0.1f * t));
            compress_lsq_grad(w, n, bits, s, c, gw, &gs);
            const double h = 1e-3 * s;
            double fd = (surrogate(w, c, n, bits, s, s + h) - surrogate(w, c, n, bits, s, s - h)) / (2 * h);
            double g = 1.0 / sqrt((double)n * quant_ql_qp(bits));
            ck_assert_msg(fabs(gs - g * fd) <= 1e-4 * (1 + fabs(g * fd)), "bits %d: %g vs %g", bits,
                          (double)gs, g * fd);
            /* weights: straight through inside the range, 0 outside */
            for (int i = 0; i < n; i++) {
                float v = w[i] / s;
                int in = v >= -quant_ql_qn(bits) && v <= quant_ql_qp(bits);
                ck_assert(gw[i] == (in ? c[i] : 0.0f));
            }
            free(w), free(c), free(gw);
        }
}
END_TEST

/* The layer's backward gives the same step gradient as the formula on
 * dL/dw_hat = dy^T x, and its forward equals x w_hat^T + b. */
START_TEST(lsq_layer_backward)
{
    nn_model *m = qt_mlp(40, 8, 6, 3, 37);
    compress_quant_spec s = {.mode = COMPRESS_Q_INT4, .wbits = 2};
    kd_err e = {0};
    nn_model *q = compress_lsq_prepare(m, &s, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    ck_assert_str_eq(nn_layer_format(&q->layers[0]), "fp32-lsq");
    data_set d = qt_data(5, 40, 3, 38);
    nn_layer *l = &q->layers[0];
    const int n = 5, u = 8, k = 40;
    nn_ctx c = {.train = 1};
    ck_assert_int_eq(nn_model_reserve(q, n, &e), KD_OK);
    float y[5 * 8], dy[5 * 8], dx[5 * 40];
    nn_rng r = nn_rng_stream(39, NN_STREAM_TEST);
    for (int i = 0; i < n * u; i++)
        dy[i] = nn_rng_normal(&r);
    memset(q->grads, 0, q->nparams * sizeof *q->grads);
    l->ops->forward(l, d.xf, y, n, &c);
    l->ops->backward(l, d.xf, y, dy, dx, n, &c);
    float wq[8 * 40], gwq[8 * 40] = {0}, gw[8 * 40] = {0}, gs = 0.0f;
    compress_lsq_fake(l->w, (size_t)u * k, 2, l->w[u * k], wq);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < u; j++) {
            double acc = l->b[j];
            for (int c2 = 0; c2 < k; c2++) {
                acc += (double)wq[j * k + c2] * d.xf[i * k + c2];
                gwq[j * k + c2] += dy[i * u + j] * d.xf[i * k + c2];
            }
            ck_assert(fabs(acc - y[i * u + j]) <= 1e-4 * (1 + fabs(acc)));
        }
    compress_lsq_grad(l->w, (size_t)u * k, 2, l->w[u * k], gwq, gw, &gs);
    ck_assert(fabsf(gs - l->gw[u * k]) <= 1e-4f * (1 + fabsf(gs)));
    for (int i = 0; i < u * k; i++)
        ck_assert(fabsf(gw[i] - l->gw[i]) <= 1e-4f * (1 + fabsf(gw[i])));
    /* deployment stores exactly the simulated weights */
    compress_quant_spec s2 = {.mode = COMPRESS_Q_INT4, .wbits = 2};
    nn_model *p = compress_quantize(q, &s2, NULL, &e);
    ck_assert_msg(p != NULL, "%s", e.msg);
    ck_assert_str_eq(nn_layer_format(&p->layers[0]), "int2");
    ck_assert_int_eq(compress_model_weight_bits(p), 2); /* was 4: int2 counted as int4 */
    ck_assert_int_eq(compress_model_weight_bits(q), 32);
    float wp[8 * 40];
    p->layers[0].ops->dequant(&p->layers[0], wp);
    ck_assert_mem_eq(wp, wq, sizeof wp);
    nn_model_free(p);
    data_set_free(&d);
    nn_model_free(q);
    nn_model_free(m);
}
END_TEST

/* ---- quantize: refusals and bias correction --------------------------------- */

START_TEST(refusals)
{
    nn_model *m = qt_mlp(40, 8, 6, 3, 40);
    kd_err e = {0};
    compress_quant_spec s = {.mode = COMPRESS_Q_INT4, .wbits = 5};
    ck_assert_ptr_null(compress_quantize(m, &s, NULL, &e));
    ck_assert_int_eq(e.code, KD_ECONFIG);
    /* a CSR layer cannot hold 2 bits */
    compress_prune_spec ps = {.sparsity = 0.5f};
    ck_assert_int_eq(compress_prune_magnitude(m, &ps, NULL, &e), KD_OK);
    compress_sparse_opts all = {.policy = COMPRESS_SPARSE_ALWAYS};
    nn_model *sp = compress_to_sparse(m, &all, NULL, &e);
    s.wbits = 2;
    e = (kd_err){0};
    ck_assert_ptr_null(compress_quantize(sp, &s, NULL, &e));
    ck_assert_int_eq(e.code, KD_ECONFIG);
    ck_assert_msg(strstr(e.msg, "stored sparse") != NULL, "%s", e.msg);
    /* bias correction needs calibration data */
    s.wbits = 4;
    s.bias_correction = 1;
    s.calib_batches = 1;
    e = (kd_err){0};
    ck_assert_ptr_null(compress_quantize(m, &s, NULL, &e));
    ck_assert_int_eq(e.code, KD_ECONFIG);
    nn_model_free(sp);
    nn_model_free(m);
}
END_TEST

/* After bias correction every low-bit layer's mean output on the
 * calibration data equals the fp32 layer's (same inputs); without it the
 * error is larger. */
START_TEST(bias_correction_mean_error)
{
    nn_model *m = qt_mlp(64, 32, 16, 3, 41);
    data_set d = qt_data(128, 64, 3, 42);
    for (int wb = 2; wb <= 4; wb++) {
        double err[2];
        for (int bc = 0; bc < 2; bc++) {
            compress_quant_spec s = {.mode = COMPRESS_Q_INT4, .wbits = wb, .bias_correction = bc,
                                     .calib_batches = 1};
            kd_err e = {0};
            nn_model *q = compress_quantize(m, &s, &d, &e);
            ck_assert_msg(q != NULL, "%s", e.msg);
            /* layer 0 (same inputs in both): mean output error over the batch */
            const int u = 32;
            nn_layer *a = &m->layers[0], *b = &q->layers[0];
            float *ya = malloc(sizeof(float) * 128 * u), *yb = malloc(sizeof(float) * 128 * u);
            nn_ctx c = {.train = 0};
            ck_assert_int_eq(nn_model_reserve(m, 128, &e), KD_OK);
            ck_assert_int_eq(nn_model_reserve(q, 128, &e), KD_OK);
            a->ops->forward(a, d.xf, ya, 128, &c);
            b->ops->forward(b, d.xf, yb, 128, &c);
            err[bc] = 0.0;
            for (int j = 0; j < u; j++) {
                double me = 0.0;
                for (int i = 0; i < 128; i++)
                    me += (double)yb[i * u + j] - ya[i * u + j];
                err[bc] += fabs(me / 128);
            }
            free(ya), free(yb);
            nn_model_free(q);
        }
        ck_assert_msg(err[1] <= 0.02 * err[0] + 1e-3, "bits %d: mean error %g corrected, %g not",
                      wb, err[1], err[0]);
    }
    data_set_free(&d);
    nn_model_free(m);
}
END_TEST

Suite *suite_compress_lowbit(void)
{
    Suite *s = suite_create("compress_lowbit");
    TCase *t = tcase_create("lowbit");
    tcase_add_test(t, codes_round_trip);
    tcase_add_test(t, pack_unpack_exact);
    tcase_add_test(t, block_scale_beats_maxabs);
    KDT_ISA_LOOP(t, gemm_every_isa_vs_spec);
    tcase_add_test(t, rows_avx2_vs_ref);
    tcase_add_test(t, lsq_step_gradient);
    tcase_add_test(t, lsq_layer_backward);
    tcase_add_test(t, refusals);
    tcase_add_test(t, bias_correction_mean_error);
    suite_add_tcase(s, t);
    return s;
}
