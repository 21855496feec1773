/* GPTQ int4 rounding (quant_q4_gptq) against a brute-force reference of the
 * same algorithm on tiny layers, and against round-to-nearest on the error
 * it is meant to reduce: || (W - Q) X^T ||^2 over the calibration inputs. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../compress/kernels/kernels.h"
#include "../kdtest.h"

/* Inputs with correlated columns (what makes GPTQ differ from rounding):
 * x = z A with z standard normal, A random; Gram h = X^T X / n. */
static void make_inputs(int n, int k, uint64_t seed, float *x, double *h)
{
    nn_rng r = nn_rng_stream(seed, 1);
    float *a = malloc(sizeof(float) * (size_t)k * (size_t)k), *z = malloc(sizeof(float) * (size_t)(k));
    for (int i = 0; i < k * k; i++)
        a[i] = nn_rng_normal(&r) * (i % (k + 1) == 0 ? 1.0f : 0.4f);
    for (int s = 0; s < n; s++) {
        for (int j = 0; j < k; j++)
            z[j] = nn_rng_normal(&r);
        for (int c = 0; c < k; c++) {
            float v = 0.0f;
            for (int j = 0; j < k; j++)
                v += z[j] * a[j * k + c];
            x[(size_t)s * k + c] = v;
        }
    }
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) {
            double t = 0.0;
            for (int s = 0; s < n; s++)
                t += (double)x[(size_t)s * k + i] * x[(size_t)s * k + j];
            h[(size_t)i * k + j] = t / n;
        }
    free(a);
    free(z);
}

/* Inverse of the sub-matrix of a (k x k) on the indices f[0..nf) by
 * Gauss-Jordan, into inv (nf x nf). */
static void sub_inverse(const double *a, int k, const int *f, int nf, double *inv)
{
    size_t w = 2 * (size_t)(nf > 0 ? nf : 1);
    double *t = malloc(sizeof(double) * w * w / 2);
    for (int i = 0; i < nf; i++)
        for (int j = 0; j < 2 * nf; j++)
            t[i * 2 * nf + j] = j < nf ? a[(size_t)f[i] * k + f[j]] : (j - nf == i);
    for (int c = 0; c < nf; c++) {
        int p = c;
        for (int i = c + 1; i < nf; i++)
            if (fabs(t[i * 2 * nf + c]) > fabs(t[p * 2 * nf + c]))
                p = i;
        for (int j = 0; j < 2 * nf; j++) {
            double s = t[c * 2 * nf + j];
            t[c * 2 * nf + j] = t[p * 2 * nf + j];
            t[p * 2 * nf + j] = s;
        }
        double d = t[c * 2 * nf + c];
        for (int j = 0; j < 2 * nf; j++)
            t[c * 2 * nf + j] /= d;
        for (int i = 0; i < nf; i++)
            if (i != c) {
                double m = t[i * 2 * nf + c];
                for (int j = 0; j < 2 * nf; j++)
                    t[i * 2 * nf + j] -= m * t[c * 2 * nf + j];
            }
    }
    for (int i = 0; i < nf; i++)
        for (int j = 0; j < nf; j++)
            inv[i * nf + j] = t[i * 2 * nf + nf + j];
    free(t);
}

/* The OBQ/OBS update spelled out: each row, columns in order; before
 * column j the inverse of the damped Gram matrix restricted to the columns
 * not yet rounded is recomputed from scratch, and the error of column j is
 * spread by its row: w_c -= (w_j - q_j) * Hinv_jc / Hinv_jj.  Writes the
 * dequantized weights. */
static void gptq_reference(const float *w, int m, int k, const double *h, double damp,
                           int act_order, float *out)
{
    double *hd = malloc(sizeof(double) * (size_t)k * (size_t)k), mean = 0.0;
    memcpy(hd, h, sizeof(double) * k * k);
    for (int j = 0; j < k; j++)
        mean += h[(size_t)j * k + j] / k;
    for (int j = 0; j < k; j++)
        hd[(size_t)j * k + j] += damp * mean;
    int *f = malloc(sizeof(int) * (size_t)(k)), *order = malloc(sizeof(int) * (size_t)(k));
    for (int j = 0; j < k; j++)
        order[j] = j;
    for (int a = 0; act_order && a < k; a++) { /* selection of the largest h_jj left, */
        int best = a;                          /* the lowest index among equals */
        for (int c = a + 1; c < k; c++)
            if (h[(size_t)order[c] * k + order[c]] > h[(size_t)order[best] * k + order[best]] ||
                (h[(size_t)order[c] * k + order[c]] == h[(size_t)order[best] * k + order[best]] &&
                 order[c] < order[best]))
                best = c;
        int t = order[a];
        order[a] = order[best];
        order[best] = t;
    }
    double *inv = malloc(sizeof(double) * (size_t)k * (size_t)k), *wr = malloc(sizeof(double) * (size_t)(k));
    float *scale = malloc(sizeof(float) * ((k + QUANT_Q4_GROUP - 1) / QUANT_Q4_GROUP));
    for (int r = 0; r < m; r++) {
        for (int c = 0; c < k; c++)
            wr[c] = w[(size_t)r * k + c];
        for (int g0 = 0; g0 < k; g0 += QUANT_Q4_GROUP) { /* static scales (act_order) */
            int len = k - g0 < QUANT_Q4_GROUP ? k - g0 : QUANT_Q4_GROUP;
            float g[QUANT_Q4_GROUP];
            for (int c = 0; c < len; c++)
                g[c] = (float)wr[g0 + c];
            quant_block_q4 b;
            quant_q4_block(g, len, &b);
            scale[g0 / QUANT_Q4_GROUP] = quant_f16_to_f32(b.d);
        }
        for (int j = 0; j < k; j++) {
            int col = order[j];
            if (!act_order && col % QUANT_Q4_GROUP == 0) { /* scales from updated weights */
                int len = k - col < QUANT_Q4_GROUP ? k - col : QUANT_Q4_GROUP;
                float g[QUANT_Q4_GROUP];
                for (int c = 0; c < len; c++)
                    g[c] = (float)wr[col + c];
                quant_block_q4 b;
                quant_q4_block(g, len, &b);
                scale[col / QUANT_Q4_GROUP] = quant_f16_to_f32(b.d);
            }
            float d = scale[col / QUANT_Q4_GROUP];
            int nf = k - j;
            for (int c = 0; c < nf; c++)
                f[c] = order[j + c];
            sub_inverse(hd, k, f, nf, inv);
            float v = d > 0.0f ? roundf((float)wr[col] / d) : 0.0f;
            v = v < -8.0f ? -8.0f : v > 7.0f ? 7.0f : v;
            double q = (double)d * v, e = (wr[col] - q) / inv[0];
            for (int c = 1; c < nf; c++)
                wr[f[c]] -= e * inv[c];
            out[(size_t)r * k + col] = (float)q;
        }
    }
    free(hd);
    free(f);
    free(order);
    free(inv);
    free(wr);
    free(scale);
}

/* sum over samples and rows of ((W - Q) x)^2 */
static double output_error(const float *w, const float *q, int m, int k, const float *x, int n)
{
    double t = 0.0;
    for (int s = 0; s < n; s++)
        for (int r = 0; r < m; r++) {
            double d = 0.0;
            for (int c = 0; c < k; c++)
                d += ((double)w[(size_t)r * k + c] - q[(size_t)r * k + c]) * x[(size_t)s * k + c];
            t += d * d;
        }
    return t;
}

START_TEST(test_gptq_matches_reference)
{
    const int m = 3, k = 40, n = 200; /* two groups, the second of 8 */
    float *x = malloc(sizeof(float) * (size_t)n * (size_t)k), *w = malloc(sizeof(float) * (size_t)m * (size_t)k);
    float *want = malloc(sizeof(float) * (size_t)m * (size_t)k), *got = malloc(sizeof(float) * (size_t)m * (size_t)k);
    double *h = malloc(sizeof(double) * (size_t)k * (size_t)k);
    for (uint64_t seed = 1; seed <= 6; seed++) {
        int ao = seed > 3; /* act-order on the last three */
        make_inputs(n, k, seed, x, h);
        nn_rng r = nn_rng_stream(seed + 100, 1);
        for (int i = 0; i < m * k; i++)
            w[i] = 0.2f * nn_rng_normal(&r);
        kd_err e = {0};
        quant_q4 *q = quant_q4_gptq(w, m, k, h, 0.01f, ao, &e);
        ck_assert_msg(q != NULL, "%s", e.msg);
        quant_q4_unpack(q, got);
        gptq_reference(w, m, k, h, 0.01, ao, want);
        int differ = 0;
        for (int i = 0; i < m * k; i++)
            differ += fabsf(got[i] - want[i]) > 1e-6f * (fabsf(want[i]) + 1e-3f);
        /* float weights here, doubles in the reference: a tie may round apart */
        ck_assert_msg(differ <= 1, "seed %d (act_order %d): %d of %d weights differ from the "
                      "reference", (int)seed, ao, differ, m * k);
        quant_q4_free(q);
    }
    free(x);
    free(w);
    free(want);
    free(got);
    free(h);
}
END_TEST

START_TEST(test_gptq_beats_nearest)
{
    const int m = 24, k = 96, n = 400;
    float *x = malloc(sizeof(float) * (size_t)n * (size_t)k), *w = malloc(sizeof(float) * (size_t)m * (size_t)k);
    float *qn = malloc(sizeof(float) * (size_t)m * (size_t)k), *qg = malloc(sizeof(float) * (size_t)m * (size_t)k);
    double *h = malloc(sizeof(double) * (size_t)k * (size_t)k);
    make_inputs(n, k, 9, x, h);
    nn_rng r = nn_rng_stream(10, 1);
    for (int i = 0; i < m * k; i++)
        w[i] = 0.1f * nn_rng_normal(&r);
    kd_err e = {0};
    quant_q4 *a = quant_q4_pack(w, m, k, &e), *b = quant_q4_gptq(w, m, k, h, 0.01f, _i, &e);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    quant_q4_unpack(a, qn);
    quant_q4_unpack(b, qg);
    double en = output_error(w, qn, m, k, x, n), eg = output_error(w, qg, m, k, x, n);
    ck_assert_msg(eg < 0.75 * en, "GPTQ (act_order %d) output error %g, nearest %g", _i, eg, en);
    quant_q4_free(a);
    quant_q4_free(b);
    free(x);
    free(w);
    free(qn);
    free(qg);
    free(h);
}
END_TEST

START_TEST(test_gptq_bad_input)
{
    const int m = 2, k = 8;
    float w[16] = {0.5f, -0.25f, 0.1f, 0.0f, 0.3f, 0.2f, -0.7f, 0.05f,
                   0.1f, 0.2f,   0.3f, 0.4f, 0.5f, 0.6f, 0.7f,  0.8f};
    double h[64] = {0};
    for (int j = 0; j < k; j++)
        h[j * k + j] = j == 3 ? 0.0 : 1.0; /* input 3 is never non-zero */
    kd_err e = {0};
    ck_assert_ptr_null(quant_q4_gptq(w, m, k, h, 0.0f, 0, &e));
    ck_assert_int_eq(e.code, KD_ECONFIG);
    ck_assert_ptr_null(quant_q4_gptq(w, m, k, h, NAN, 0, &e));
    quant_q4 *q = quant_q4_gptq(w, m, k, h, 0.01f, 0, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    float out[16];
    quant_q4_unpack(q, out);
    ck_assert_float_eq(out[3], 0.0f);  /* a dead input's weight is dropped */
    ck_assert_float_eq(out[11], 0.0f);
    /* with an identity Gram matrix (uncorrelated inputs) GPTQ is rounding */
    float near[16];
    quant_q4 *p = quant_q4_pack(w, m, k, &e);
    quant_q4_unpack(p, near);
    for (int i = 0; i < 16; i++)
        if (i % k != 3)
            ck_assert_float_eq_tol(out[i], near[i], 1e-6f);
    quant_q4_free(q);
    quant_q4_free(p);
}
END_TEST

Suite *suite_compress_gptq(void)
{
    Suite *s = suite_create("compress_gptq");
    TCase *t = tcase_create("core");
    tcase_add_test(t, test_gptq_matches_reference);
    tcase_add_loop_test(t, test_gptq_beats_nearest, 0, 2);
    tcase_add_test(t, test_gptq_bad_input);
    suite_add_tcase(s, t);
    return s;
}
