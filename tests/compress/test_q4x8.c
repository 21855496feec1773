/* q4x8 (int4 weights x per-group int8 activations, compress/kernels/q4x8.h):
 * the AVX2 quantizer bit-exact against its reference; the AVX2 GEMM within
 * Q4X8_TOL of the reference rows (float sums in another order), bit-exact
 * where the scales are powers of two (then only the integer sums count),
 * its row parts equal to the whole and each sample's outputs equal to that
 * sample run alone (batch 1 and batch 256 compute one function); and the
 * dispatched quant_q4_gemm at every ISA level within the activation-rounding
 * bound of the float specification quant_q4_gemm_ref, on ragged shapes: k
 * below, at and past a group, odd group counts, m not a multiple of the
 * 4-row tile, n = 1, 3, 15, 16, 17, 40, 256, all-zero rows and samples, k
 * past the kernel's stack scratch. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../compress/kernels/cpu.h"
#include "../../compress/kernels/q4x8.h"
#include "../kdtest.h"

/* float summation order: relative to the sum of absolute terms */
#define Q4X8_TOL 1e-5

#define G QUANT_Q4_GROUP

typedef struct {
    int m, k, n;
} shape;
static const shape shapes[] = {{1, 1, 1},     {7, 31, 3},   {5, 33, 15},  {9, 45, 1},
                               {3, 64, 5},    {13, 100, 1}, {6, 96, 16},  {10, 784, 3},
                               {33, 257, 40}, {6, 95, 17},  {11, 130, 256}, {37, 200, 17}};

/* Normal values, with row 1 of w and sample 0's second group all zero. */
static float *rand_f(nn_rng *r, int rows, int cols, float sd, int zero_row)
{
    float *p = malloc((size_t)rows * cols * sizeof *p);
    for (size_t i = 0; i < (size_t)rows * cols; i++)
        p[i] = sd * nn_rng_normal(r);
    if (zero_row >= 0 && zero_row < rows)
        memset(p + (size_t)zero_row * cols, 0, (size_t)cols * sizeof *p);
    return p;
}

static int nib(const quant_block_q4 *b, int j)
{
    int byte = b->q[j % (G / 2)];
    return j < G / 2 ? byte & 15 : byte >> 4;
}

/* The activation-rounding bound of one output against the float spec:
 * sum over groups of d * (max|x_g| / 254) * sum |nib - 8| (+ float slack). */
static double x8_bound(const quant_q4 *q, const float *x, int r)
{
    double bound = 0.0, mag = 1e-6;
    for (int g = 0; g < q->nb; g++) {
        const quant_block_q4 *bl = &q->blocks[(size_t)r * q->nb + g];
        double amax = 0.0, wsum = 0.0, d = quant_f16_to_f32(bl->d);
        for (int j = 0; j < G && g * G + j < q->k; j++) {
            amax = fmax(amax, fabs(x[g * G + j]));
            wsum += abs(nib(bl, j) - 8);
            mag += d * abs(nib(bl, j) - 8) * fabs(x[g * G + j]);
        }
        bound += d * amax / 254.0 * wsum;
    }
    return bound * (1.0 + 1e-4) + Q4X8_TOL * mag;
}

START_TEST(quantize_avx2_is_ref)
{
    if (!kernels_isa_supported(KD_ISA_AVX2))
        KDT_SKIP("the host has no AVX2");
    nn_rng r = nn_rng_stream(11, NN_STREAM_TEST);
    const int ks[] = {1, 5, 31, 32, 33, 64, 100, 784, 1200};
    for (size_t t = 0; t < sizeof ks / sizeof *ks; t++) {
        int k = ks[t], nb = (k + G - 1) / G;
        float *x = rand_f(&r, 1, k, 1.5f, -1);
        if (k > G) /* an all-zero group */
            memset(x + G, 0, (size_t)(k - G < G ? k - G : G) * sizeof *x);
        x[0] = 0.5f; /* ties in the scaled domain happen with exact halves */
        int8_t *qa = malloc((size_t)nb * G), *qb = malloc((size_t)nb * G);
        float *fa = malloc((size_t)nb * 2 * sizeof *fa), *fb = malloc((size_t)nb * 2 * sizeof *fb);
        memset(qb, 0x55, (size_t)nb * G); /* padding must be written, not left */
        q4x8_quantize_ref(x, k, qa, fa, fa + nb);
        q4x8_quantize_avx2(x, k, qb, fb, fb + nb);
        ck_assert_msg(memcmp(qa, qb, (size_t)nb * G) == 0, "codes differ at k = %d", k);
        ck_assert_msg(memcmp(fa, fb, (size_t)nb * 2 * sizeof *fa) == 0, "scales differ at k = %d", k);
        for (int j = 0; j < nb * G; j++) {
            ck_assert(qa[j] >= -127 && qa[j] <= 127);
            if (j >= k)
                ck_assert_int_eq(qa[j], 0);
        }
        free(x), free(qa), free(qb), free(fa), free(fb);
    }
}
END_TEST

/* The GEMM on rows [0, r0) and [r0, m) of every sample at once. */
static void gemm_parts(const quant_q4 *q, const float *x, int n, const float *b, float *y, int r0)
{
    ck_assert_int_eq(q4x8_gemm_rows_avx2(q, x, n, b, y, 0, r0), 0);
    ck_assert_int_eq(q4x8_gemm_rows_avx2(q, x, n, b, y, r0, q->m), 0);
}

START_TEST(gemm_avx2_vs_ref)
{
    KDT_ISA_BEGIN(_i); /* avx2 and avx512 (VNNI where the CPU has it) */
    nn_rng r = nn_rng_stream(12, NN_STREAM_TEST);
    for (size_t t = 0; t < sizeof shapes / sizeof *shapes; t++) {
        shape s = shapes[t];
        float *w = rand_f(&r, s.m, s.k, 0.3f, 1), *x = rand_f(&r, s.n, s.k, 1.0f, 0);
        float *b = rand_f(&r, 1, s.m, 0.1f, -1);
        quant_q4 *q = quant_q4_pack(w, s.m, s.k, NULL);
        int nb = q->nb;
        size_t ny = (size_t)s.n * s.m;
        int8_t *xq = malloc((size_t)nb * G);
        float *f = malloc((size_t)nb * 2 * sizeof *f), *ya = malloc((size_t)s.m * sizeof *ya);
        float *whole = malloc(ny * sizeof *whole), *part = malloc(ny * sizeof *part);
        float *one = malloc((size_t)s.m * sizeof *one);
        gemm_parts(q, x, s.n, b, whole, 0);
        for (int r0 = 1; r0 < s.m; r0 += s.m > 6 ? s.m / 3 : 1) { /* parts equal the whole */
            gemm_parts(q, x, s.n, b, part, r0);
            ck_assert_msg(memcmp(whole, part, ny * sizeof *part) == 0, "%dx%d n=%d split at %d",
                          s.m, s.k, s.n, r0);
        }
        for (int i = 0; i < s.n; i++) {
            const float *xi = x + (size_t)i * s.k, *yi = whole + (size_t)i * s.m;
            ck_assert_int_eq(q4x8_gemm_rows_avx2(q, xi, 1, b, one, 0, s.m), 0);
            ck_assert_msg(memcmp(one, yi, (size_t)s.m * sizeof *one) == 0,
                          "%dx%d n=%d: sample %d alone differs from it in the batch", s.m, s.k,
                          s.n, i);
            q4x8_quantize_ref(xi, s.k, xq, f, f + nb);
            q4x8_rows_ref(q, xq, f, f + nb, b, ya, 0, s.m);
            for (int j = 0; j < s.m; j++) {
                double mag = 1e-6 + fabs(b[j]);
                for (int g = 0; g < nb; g++) {
                    const quant_block_q4 *bl = &q->blocks[(size_t)j * nb + g];
                    for (int c = 0; c < G; c++)
                        mag += quant_f16_to_f32(bl->d) * f[g] *
                               fabs((double)(nib(bl, c) - 8) * xq[g * G + c]);
                }
                ck_assert_msg(fabs((double)ya[j] - yi[j]) <= Q4X8_TOL * mag,
                              "%dx%d n=%d (%d, %d): ref %g avx2 %g", s.m, s.k, s.n, i, j, ya[j],
                              yi[j]);
                if (i == 0) /* sample 0 is all zero: the bias exactly */
                    ck_assert(yi[j] == b[j]);
            }
        }
        quant_q4_free(q);
        free(w), free(x), free(b), free(xq), free(f), free(ya), free(whole), free(part), free(one);
    }
}
END_TEST

/* q4x8_gemm_rows_avx2 on the n samples of x equals the specification
 * (q4x8_quantize_ref + q4x8_rows_ref) bit for bit; d0, when not 0, is every
 * sample's first group scale. */
static void avx2_equals_spec(const quant_q4 *q, const float *x, shape s, float d0)
{
    int nb = q->nb;
    int8_t *xq = malloc((size_t)nb * G);
    float *f = malloc((size_t)nb * 2 * sizeof *f), *ya = malloc((size_t)s.m * sizeof *ya);
    float *y = malloc((size_t)s.n * s.m * sizeof *y);
    ck_assert_int_eq(q4x8_gemm_rows_avx2(q, x, s.n, NULL, y, 0, s.m), 0);
    for (int i = 0; i < s.n; i++) {
        q4x8_quantize_ref(x + (size_t)i * s.k, s.k, xq, f, f + nb);
        if (d0 != 0)
            ck_assert_float_eq(f[0], d0);
        q4x8_rows_ref(q, xq, f, f + nb, NULL, ya, 0, s.m);
        for (int j = 0; j < s.m; j++)
            ck_assert_msg(ya[j] == y[(size_t)i * s.m + j], "%dx%d (%d, %d): ref %.9g avx2 %.9g",
                          s.m, s.k, i, j, ya[j], y[(size_t)i * s.m + j]);
    }
    free(xq), free(f), free(ya), free(y);
}

/* Scales that are powers of two (weights' d = 2^-3, every group's max|x| =
 * 127 * 2^-6, activations on that grid) make every float step exact: the
 * GEMM then equals the reference bit for bit, so its integer sums and the
 * -8 correction are the specification's exactly. */
START_TEST(gemm_avx2_exact_integer_sums)
{
    KDT_ISA_BEGIN(_i); /* avx2 and avx512 (VNNI where the CPU has it) */
    nn_rng r = nn_rng_stream(15, NN_STREAM_TEST);
    const shape ss[] = {{7, 95, 17}, {9, 64, 3}, {5, 257, 40}};
    for (size_t t = 0; t < sizeof ss / sizeof *ss; t++) {
        shape s = ss[t];
        float *w = malloc((size_t)s.m * s.k * sizeof *w), *x = malloc((size_t)s.n * s.k * sizeof *x);
        for (int i = 0; i < s.m * s.k; i++) /* in [-7, 7], 7 in every group: d = 1/8 */
            w[i] = (i % s.k % G == 0 ? 7 : (int)(nn_rng_uniform(&r) * 15) - 7) / 8.0f;
        for (int i = 0; i < s.n * s.k; i++) /* steps of 1/64, max 127/64 in every group */
            x[i] = (i % s.k % G == 0 ? 127 : (int)(nn_rng_uniform(&r) * 255) - 127) / 64.0f;
        quant_q4 *q = quant_q4_pack(w, s.m, s.k, NULL);
        ck_assert_float_eq(quant_f16_to_f32(q->blocks[0].d), 0.125f);
        avx2_equals_spec(q, x, s, 1.0f / 64.0f);
        quant_q4_free(q);
        free(w), free(x);
    }
}
END_TEST

/* The integer sums at their largest: every nibble 15 (w = 7 d) against
 * every activation at +-127, so each int16 stage of the AVX2 sums reaches
 * its bound (7620, 15240, 30480) and an overflow would show; scales are
 * powers of two, so the result must equal the specification's bits.
 * Sample 0 is all positive, sample 1 all negative, sample 2 alternates by
 * group; k = 160 is five groups (an odd count) and m = 6 a ragged quad. */
START_TEST(gemm_avx2_extreme_sums)
{
    KDT_ISA_BEGIN(_i); /* avx2 and avx512 (VNNI where the CPU has it) */
    shape s = {6, 160, 3};
    float *w = malloc((size_t)s.m * s.k * sizeof *w), *x = malloc((size_t)s.n * s.k * sizeof *x);
    for (int i = 0; i < s.m * s.k; i++)
        w[i] = 7.0f / 8.0f;
    for (int i = 0; i < s.n; i++)
        for (int c = 0; c < s.k; c++)
            x[i * s.k + c] = (i == 0 || (i == 2 && c / G % 2 == 0) ? 127 : -127) / 64.0f;
    quant_q4 *q = quant_q4_pack(w, s.m, s.k, NULL);
    ck_assert_int_eq(q->blocks[0].q[0], 0xff); /* nibbles 15 */
    avx2_equals_spec(q, x, s, 0);
    quant_q4_free(q);
    free(w), free(x);
}
END_TEST

/* The VNNI kernel (dpbusd) and the AVX2 one (maddubs + madd) reach the
 * same integers and then take the same float steps: the same bits. */
START_TEST(gemm_vnni_is_avx2)
{
    kd_isa was = kernels_isa_force(KD_ISA_AVX512);
    if (!kernels_has_vnni512()) {
        kernels_isa_force(was);
        KDT_SKIP("the host has no AVX-512 VNNI");
    }
    nn_rng r = nn_rng_stream(16, NN_STREAM_TEST);
    const shape ss[] = {{7, 95, 17}, {13, 784, 1}, {37, 200, 40}};
    for (size_t t = 0; t < sizeof ss / sizeof *ss; t++) {
        shape s = ss[t];
        float *w = rand_f(&r, s.m, s.k, 0.3f, 1), *x = rand_f(&r, s.n, s.k, 1.0f, 0);
        float *b = rand_f(&r, 1, s.m, 0.1f, -1);
        size_t ny = (size_t)s.n * s.m;
        float *ya = malloc(ny * sizeof *ya), *yv = malloc(ny * sizeof *yv);
        quant_q4 *q = quant_q4_pack(w, s.m, s.k, NULL);
        kernels_isa_force(KD_ISA_AVX512);
        ck_assert_int_eq(q4x8_gemm_rows_avx2(q, x, s.n, b, yv, 0, s.m), 0);
        kernels_isa_force(KD_ISA_AVX2);
        ck_assert(!kernels_has_vnni512());
        ck_assert_int_eq(q4x8_gemm_rows_avx2(q, x, s.n, b, ya, 0, s.m), 0);
        ck_assert_msg(memcmp(ya, yv, ny * sizeof *ya) == 0, "%dx%d n=%d", s.m, s.k, s.n);
        quant_q4_free(q);
        free(w), free(x), free(b), free(ya), free(yv);
    }
    kernels_isa_force(was);
}
END_TEST

/* The dispatched product at this level against the float specification. */
static void check_dispatch(nn_rng *r, shape s)
{
    float *w = rand_f(r, s.m, s.k, 0.3f, 1), *x = rand_f(r, s.n, s.k, 1.0f, 0);
    float *b = rand_f(r, 1, s.m, 0.1f, -1);
    size_t ny = (size_t)s.n * s.m;
    float *want = malloc(ny * sizeof *want), *got = malloc(ny * sizeof *got);
    quant_q4 *q = quant_q4_pack(w, s.m, s.k, NULL);
    quant_q4_gemm_ref(q, x, s.n, b, want);
    quant_q4_gemm(q, x, s.n, b, got);
    for (int i = 0; i < s.n; i++)
        for (int j = 0; j < s.m; j++) {
            size_t at = (size_t)i * s.m + j;
            double bound = x8_bound(q, x + (size_t)i * s.k, j);
            ck_assert_msg(fabs((double)want[at] - got[at]) <= bound,
                          "%s %dx%d n=%d (%d, %d): spec %g got %g bound %g",
                          kernels_isa_label(), s.m, s.k, s.n, i, j, want[at], got[at], bound);
            if (i == 0) /* sample 0 is all zero: the bias exactly */
                ck_assert(got[at] == b[j]);
        }
    quant_q4_free(q);
    free(w), free(x), free(b), free(want), free(got);
}

START_TEST(dispatch_vs_spec)
{
    KDT_ISA_BEGIN(_i);
    nn_rng r = nn_rng_stream(13, NN_STREAM_TEST);
    for (size_t t = 0; t < sizeof shapes / sizeof *shapes; t++)
        check_dispatch(&r, shapes[t]);
    check_dispatch(&r, (shape){5, 4100, 2}); /* past the stack scratch: allocated */
    check_dispatch(&r, (shape){6, 4200, 1});
}
END_TEST

START_TEST(dispatch_scratch_failure)
{
    KDT_ISA_BEGIN(_i);
    nn_rng r = nn_rng_stream(14, NN_STREAM_TEST);
    const shape ss[] = {{4, 4200, 1}, {5, 100, 20}}; /* the quantizer's, the records' scratch */
    for (size_t t = 0; t < sizeof ss / sizeof *ss; t++) {
        shape s = ss[t];
        float *w = rand_f(&r, s.m, s.k, 0.3f, -1), *x = rand_f(&r, s.n, s.k, 1.0f, -1);
        float *want = malloc((size_t)s.n * s.m * sizeof *want);
        float *got = malloc((size_t)s.n * s.m * sizeof *got);
        quant_q4 *q = quant_q4_pack(w, s.m, s.k, NULL);
        quant_q4_gemm_ref(q, x, s.n, NULL, want);
        kd_alloc_fail_after(0); /* no scratch: the float kernel, no crash, same numbers */
        quant_q4_gemm(q, x, s.n, NULL, got);
        kd_alloc_fail_after(-1);
        for (int i = 0; i < s.n; i++)
            for (int j = 0; j < s.m; j++)
                ck_assert_msg(fabs((double)want[i * s.m + j] - got[i * s.m + j]) <=
                                  x8_bound(q, x + (size_t)i * s.k, j),
                              "n=%d (%d, %d)", s.n, i, j);
        quant_q4_free(q);
        free(w), free(x), free(want), free(got);
    }
}
END_TEST

/* quant_q4_build_quads regroups the blocks' bytes unchanged: row 4Q + t's
 * groups 2p, 2p+1 in quad (Q, p), padding rows and a missing odd group as
 * nibbles 8 with scale 0; on ragged m (not a multiple of 4) and odd nb. */
START_TEST(quads_regroup_blocks)
{
    nn_rng r = nn_rng_stream(17, NN_STREAM_TEST);
    const shape ss[] = {{1, 1, 1}, {5, 33, 1}, {6, 96, 1}, {9, 200, 1}, {4, 64, 1}};
    for (size_t t = 0; t < sizeof ss / sizeof *ss; t++) {
        shape s = ss[t];
        float *w = rand_f(&r, s.m, s.k, 0.3f, 1);
        quant_q4 *q = quant_q4_pack(w, s.m, s.k, NULL);
        ck_assert_ptr_nonnull(q->quads);
        int nq = (s.m + 3) / 4, np = (q->nb + 1) / 2;
        for (int Q = 0; Q < nq; Q++)
            for (int p = 0; p < np; p++)
                for (int tr = 0; tr < 4; tr++)
                    for (int h = 0; h < 2; h++) {
                        const quant_q4_quad *o = &q->quads[(size_t)Q * np + p];
                        int row = 4 * Q + tr, g = 2 * p + h;
                        if (row < s.m && g < q->nb) {
                            const quant_block_q4 *bl = &q->blocks[(size_t)row * q->nb + g];
                            ck_assert(memcmp(o->q[tr] + 16 * h, bl->q, 16) == 0);
                            ck_assert_uint_eq(o->d[4 * h + tr], bl->d);
                        } else {
                            for (int j = 0; j < 16; j++)
                                ck_assert_uint_eq(o->q[tr][16 * h + j], 0x88);
                            ck_assert_uint_eq(o->d[4 * h + tr], 0);
                        }
                    }
        quant_q4_free(q);
        free(w);
    }
}
END_TEST

/* Without the regrouped copy (a quant_q4 built by hand) q4x8 declines and
 * quant_q4_gemm runs the float kernels: still within the bound. */
START_TEST(no_quads_float_path)
{
    KDT_ISA_BEGIN(_i);
    nn_rng r = nn_rng_stream(18, NN_STREAM_TEST);
    shape s = {7, 95, 3};
    float *w = rand_f(&r, s.m, s.k, 0.3f, -1), *x = rand_f(&r, s.n, s.k, 1.0f, -1);
    float *want = malloc((size_t)s.n * s.m * sizeof *want);
    float *got = malloc((size_t)s.n * s.m * sizeof *got);
    quant_q4 *q = quant_q4_pack(w, s.m, s.k, NULL);
    kd_free(q->quads);
    q->quads = NULL;
    ck_assert_int_eq(q4x8_gemm_rows_avx2(q, x, s.n, NULL, got, 0, s.m), -1);
    quant_q4_gemm_ref(q, x, s.n, NULL, want);
    quant_q4_gemm(q, x, s.n, NULL, got);
    for (int i = 0; i < s.n * s.m; i++)
        ck_assert(fabs((double)want[i] - got[i]) <= x8_bound(q, x + (size_t)(i / s.m) * s.k, i % s.m));
    ck_assert_int_eq(quant_q4_build_quads(q, NULL), KD_OK); /* and back */
    ck_assert_int_eq(q4x8_gemm_rows_avx2(q, x, s.n, NULL, got, 0, s.m), 0);
    quant_q4_free(q);
    free(w), free(x), free(want), free(got);
}
END_TEST

/* GPTQ rewrites the blocks after quant_q4_pack built the regrouped copy:
 * the copy it returns is the one its final blocks give (a stale one would
 * run the round-to-nearest weights). */
START_TEST(gptq_quads_follow_blocks)
{
    nn_rng r = nn_rng_stream(19, NN_STREAM_TEST);
    int m = 6, k = 70, n = 64;
    float *w = rand_f(&r, m, k, 0.3f, -1), *x = rand_f(&r, n, k, 1.0f, -1);
    double *h = calloc((size_t)k * k, sizeof *h);
    for (int i = 0; i < n; i++)
        for (int a = 0; a < k; a++)
            for (int b = 0; b < k; b++)
                h[(size_t)a * k + b] += (double)x[i * k + a] * x[i * k + b] / n;
    quant_q4 *q = quant_q4_gptq(w, m, k, h, 0.01f, 0, NULL);
    ck_assert_ptr_nonnull(q);
    size_t bytes = (size_t)((m + 3) / 4) * ((q->nb + 1) / 2) * sizeof *q->quads;
    quant_q4_quad *got = malloc(bytes);
    memcpy(got, q->quads, bytes);
    ck_assert_int_eq(quant_q4_build_quads(q, NULL), KD_OK);
    ck_assert_msg(memcmp(got, q->quads, bytes) == 0, "gptq left a stale regrouped copy");
    quant_q4_free(q);
    free(w), free(x), free(h), free(got);
}
END_TEST

Suite *suite_compress_q4x8(void)
{
    Suite *s = suite_create("compress_q4x8");
    TCase *tc = tcase_create("q4x8");
    tcase_add_test(tc, quantize_avx2_is_ref);
    tcase_add_loop_test(tc, gemm_avx2_vs_ref, KD_ISA_AVX2, KDT_NISA);
    tcase_add_loop_test(tc, gemm_avx2_exact_integer_sums, KD_ISA_AVX2, KDT_NISA);
    tcase_add_loop_test(tc, gemm_avx2_extreme_sums, KD_ISA_AVX2, KDT_NISA);
    tcase_add_test(tc, gemm_vnni_is_avx2);
    tcase_add_test(tc, quads_regroup_blocks);
    tcase_add_loop_test(tc, no_quads_float_path, KD_ISA_AVX2, KDT_NISA);
    tcase_add_test(tc, gptq_quads_follow_blocks);
    KDT_ISA_LOOP(tc, dispatch_vs_spec);
    KDT_ISA_LOOP(tc, dispatch_scratch_failure);
    suite_add_tcase(s, tc);
    return s;
}
