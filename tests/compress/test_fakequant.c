/* fakequant.c (QAT's per-step passes): at every ISA level the dispatched
 * kernels give the bits of their _refs, and the _refs are PTQ's quantizers
 * (quant_weights_s8, quant_q4_block) — on ragged rows, exact ties, all-zero
 * rows and groups, tiny and huge ranges, and (int8, activations) NaN/inf. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../compress/kernels/kernels.h"
#include "../kdtest.h"

static const int ks[] = {1, 5, 8, 9, 31, 32, 33, 64, 100, 784};

/* Rows of mixed content: random, exact ties of the int4 step (a row of
 * j/2 in [-7, 7]: step 1), zeros, tiny and huge magnitudes. */
static float *weights(nn_rng *r, int m, int k, int specials)
{
    float *w = malloc((size_t)m * k * sizeof *w);
    for (int i = 0; i < m; i++)
        for (int c = 0; c < k; c++) {
            float u = nn_rng_uniform(r) - 0.5f, *x = &w[(size_t)i * k + c];
            switch (i % 6) {
            case 1: *x = (float)((c % 29) - 14) * 0.5f; break;
            case 2: *x = 0.0f; break;
            case 3: *x = u * 1e-7f; break;
            case 4: *x = u * (i % 12 == 4 ? 1e6f : 3e4f); break;
            default: *x = u * 0.2f; break;
            }
        }
    if (specials && m * k > 7) {
        w[3] = NAN;
        w[m * k - 2] = INFINITY;
        w[m * k / 2] = -INFINITY;
    }
    return w;
}

static void same_bits(const float *a, const float *b, size_t n, const char *what, int k)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(memcmp(&a[i], &b[i], sizeof *a) == 0, "%s %s k=%d at %zu: ref %a got %a",
                      kernels_isa_label(), what, k, i, (double)a[i], (double)b[i]);
}

START_TEST(s8_rows_are_ptq)
{
    KDT_ISA_BEGIN(_i);
    nn_rng r = nn_rng_stream(31, NN_STREAM_TEST);
    for (size_t t = 0; t < sizeof ks / sizeof *ks; t++)
        for (int specials = 0; specials < 2; specials++) {
            int m = 13, k = ks[t];
            float *w = weights(&r, m, k, specials), *sc = malloc(m * sizeof *sc);
            float *mx = malloc(m * sizeof *mx), *ref = malloc((size_t)m * k * sizeof *ref);
            float *got = malloc((size_t)m * k * sizeof *got);
            int8_t *q = malloc((size_t)m * k);
            /* PTQ's quantizer, dequantized: the spec of both kernels */
            quant_weights_s8(w, m, k, 1, sc, q);
            for (size_t i = 0; i < (size_t)m * k; i++)
                ref[i] = (float)q[i] * sc[i / k];
            quant_absmax_rows(w, k, 0, m, mx);
            for (int i = 0; i < m; i++)
                ck_assert_float_eq(mx[i] > 0 ? mx[i] / 127.0f : 1.0f, sc[i]);
            quant_fake_s8_rows(w, k, 0, m, sc, got);
            same_bits(ref, got, (size_t)m * k, "fake_s8", k);
            quant_fake_s8_rows_ref(w, k, 0, m, sc, got);
            same_bits(ref, got, (size_t)m * k, "fake_s8_ref", k);
            free(w), free(sc), free(mx), free(ref), free(got), free(q);
        }
}
END_TEST

START_TEST(q4_rows_are_ptq)
{
    KDT_ISA_BEGIN(_i);
    nn_rng r = nn_rng_stream(32, NN_STREAM_TEST);
    for (size_t t = 0; t < sizeof ks / sizeof *ks; t++) {
        int m = 12, k = ks[t];
        float *w = weights(&r, m, k, 0);
        w[0] = 7.0f * 65504.0f * 1.01f; /* a scale past fp16's range: saturated */
        float *ref = malloc((size_t)m * k * sizeof *ref), *got = malloc((size_t)m * k * sizeof *got);
        kd_err e = {0};
        quant_q4 *p = quant_q4_pack(w, m, k, &e);
        ck_assert_msg(p, "%s", e.msg);
        quant_q4_unpack(p, ref);
        quant_fake_q4_rows(w, k, 0, m, got);
        same_bits(ref, got, (size_t)m * k, "fake_q4", k);
        /* rows split anywhere give the same bits */
        quant_fake_q4_rows(w, k, 0, m / 3, got);
        quant_fake_q4_rows(w, k, m / 3, m, got);
        same_bits(ref, got, (size_t)m * k, "fake_q4 split", k);
        quant_q4_free(p);
        free(w), free(ref), free(got);
    }
}
END_TEST

START_TEST(act_is_ref)
{
    KDT_ISA_BEGIN(_i);
    nn_rng r = nn_rng_stream(33, NN_STREAM_TEST);
    const size_t ns[] = {0, 1, 3, 4, 5, 17, 1000, 4099};
    for (size_t t = 0; t < sizeof ns / sizeof *ns; t++)
        for (int range = 0; range < 3; range++) {
            size_t n = ns[t];
            float *x = malloc((n + 1) * sizeof *x), *dy = malloc((n + 1) * sizeof *dy);
            float *a = malloc((n + 1) * sizeof *a), *b = malloc((n + 1) * sizeof *b);
            for (size_t i = 0; i < n; i++) {
                x[i] = (nn_rng_uniform(&r) - 0.3f) * 8.0f;
                dy[i] = nn_rng_uniform(&r) + 0.5f;
            }
            /* range 0 covers x; 1 clips it (codes past qmin/qmax); 2 is degenerate */
            quant_params p = range == 0   ? quant_params_asym(-2.4f, 5.6f, QUANT_S8)
                             : range == 1 ? quant_params_asym(-1.0f, 1.5f, QUANT_S8)
                                          : quant_params_asym(0.0f, 0.0f, QUANT_S8);
            for (size_t i = 0; i + 3 < n; i += 7) /* exact ties of the step, and specials */
                x[i] = ((float)((int)(i % 40) - 20) + 0.5f) * p.scale;
            if (n > 9)
                x[2] = NAN, x[5] = INFINITY, x[8] = -INFINITY;
            quant_fake_forward(x, 1, (int)n, &p.scale, &p.zero, 0, p.qmin, p.qmax, a);
            quant_fake_act_forward(x, n, p, b);
            same_bits(a, b, n, "act forward", (int)n);
            quant_fake_backward(x, dy, 1, (int)n, &p.scale, &p.zero, 0, p.qmin, p.qmax, a);
            memcpy(b, dy, n * sizeof *b); /* in place, as dense_fq calls it */
            quant_fake_act_backward(x, b, n, p, b);
            same_bits(a, b, n, "act backward", (int)n);
            free(x), free(dy), free(a), free(b);
        }
}
END_TEST

Suite *suite_compress_fakequant(void)
{
    Suite *s = suite_create("compress_fakequant");
    TCase *tc = tcase_create("fakequant");
    KDT_ISA_LOOP(tc, s8_rows_are_ptq);
    KDT_ISA_LOOP(tc, q4_rows_are_ptq);
    KDT_ISA_LOOP(tc, act_is_ref);
    suite_add_tcase(s, tc);
    return s;
}
