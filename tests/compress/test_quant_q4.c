/* int4 weight-only and sparse CSR int8: packing round trips, nibble layout,
 * the fast kernels against their references on ragged shapes (within
 * Q4_TOL / CSR_TOL of the sum of absolute terms: float sums in another
 * order), and the references against float math on dequantized weights. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../compress/kernels/kernels.h"
#include "../kdtest.h"

#define Q4_TOL 1e-5
#define CSR_TOL 1e-5

typedef struct {
    int m, k, n;
} shape;
static const shape shapes[] = {{1, 1, 1},   {7, 31, 3},  {5, 33, 17}, {9, 45, 4},
                               {3, 64, 5},  {13, 100, 1}, {10, 784, 3}, {33, 257, 17}};

static float *rand_f(nn_rng *r, size_t n, float sd)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = sd * nn_rng_normal(r);
    return p;
}

/* |got - want| <= tol * sum_c |w[r,c] x[i,c]| (+ tiny) for every output. */
static void check_close(const char *what, const float *want, const float *got, const float *w,
                        const float *x, shape s, double tol)
{
    for (int i = 0; i < s.n; i++)
        for (int r = 0; r < s.m; r++) {
            double mag = 1e-6;
            for (int c = 0; c < s.k; c++)
                mag += fabs((double)w[(size_t)r * s.k + c] * x[(size_t)i * s.k + c]);
            size_t at = (size_t)i * s.m + r;
            ck_assert_msg(fabs((double)want[at] - got[at]) <= tol * mag,
                          "%s %dx%dx%d at (%d,%d): %g vs %g", what, s.m, s.k, s.n, i, r,
                          want[at], got[at]);
        }
}

/* y = x w^T + b in double on a plain float matrix. */
static void gemm_d(const float *w, const float *x, const float *b, shape s, float *y)
{
    for (int i = 0; i < s.n; i++)
        for (int r = 0; r < s.m; r++) {
            double acc = b ? b[r] : 0.0;
            for (int c = 0; c < s.k; c++)
                acc += (double)w[(size_t)r * s.k + c] * x[(size_t)i * s.k + c];
            y[(size_t)i * s.m + r] = (float)acc;
        }
}

/* Every finite half survives f16 -> f32 -> f16; rounding is to nearest even. */
START_TEST(test_f16_conversions)
{
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00)
            continue; /* inf and NaN below */
        float f = quant_f16_to_f32((uint16_t)h);
        ck_assert_msg(quant_f32_to_f16(f) == h, "half %#x -> %g -> %#x", h, f,
                      quant_f32_to_f16(f));
    }
    ck_assert_int_eq(quant_f32_to_f16(1.0f), 0x3c00);
    ck_assert_int_eq(quant_f32_to_f16(-2.0f), 0xc000);
    ck_assert_int_eq(quant_f32_to_f16(0.1f), 0x2e66);
    ck_assert_int_eq(quant_f32_to_f16(1e6f), 0x7bff);
    ck_assert_int_eq(quant_f32_to_f16(ldexpf(1.0f, -24)), 1);
    ck_assert_int_eq(quant_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00); /* tie to even */
    ck_assert_int_eq(quant_f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)), 0x3c02);
    ck_assert(isinf(quant_f16_to_f32(0x7c00)) && isnan(quant_f16_to_f32(0x7e00)));
    ck_assert(isnan(quant_f16_to_f32(quant_f32_to_f16(NAN))));
}
END_TEST

START_TEST(test_q4_round_trip)
{
    enum { M = 3, K = 45 }; /* two groups per row, the second ragged */
    float w[M * K], back[M * K];
    nn_rng r = nn_rng_stream(4, NN_STREAM_TEST);
    for (int i = 0; i < M * K; i++) /* on the grid: scale 0.5 per group, codes -7..7 */
        w[i] = 0.5f * (float)((int)nn_rng_below(&r, 15) - 7);
    for (int rr = 0; rr < M; rr++) {
        w[rr * K] = 3.5f;       /* each group's max is 7 steps */
        w[rr * K + 32] = -3.5f;
    }
    kd_err e = {0};
    quant_q4 *q = quant_q4_pack(w, M, K, &e);
    ck_assert_ptr_nonnull(q);
    ck_assert_int_eq(q->nb, 2);
    quant_q4_unpack(q, back);
    ck_assert(memcmp(w, back, sizeof w) == 0);
    /* byte j: weight j low nibble, weight j+16 high nibble, stored as code + 8 */
    const quant_block_q4 *b = &q->blocks[0];
    ck_assert_int_eq(b->q[3] & 15, (int)lrintf(w[3] / 0.5f) + 8);
    ck_assert_int_eq(b->q[3] >> 4, (int)lrintf(w[19] / 0.5f) + 8);
    ck_assert_int_eq(q->blocks[1].q[13], 8 | 8 << 4); /* padding past k is code 0 */
    quant_q4_free(q);
    quant_q4_free(NULL);
}
END_TEST

START_TEST(test_q4_error_bound)
{
    nn_rng r = nn_rng_stream(5, NN_STREAM_TEST);
    enum { M = 9, K = 77 };
    float *w = rand_f(&r, M * K, 1.0f), back[M * K];
    quant_q4 *q = quant_q4_pack(w, M, K, NULL);
    quant_q4_unpack(q, back);
    for (int i = 0; i < M * K; i++) {
        float sc = quant_f16_to_f32(q->blocks[(i / K) * q->nb + (i % K) / 32].d);
        ck_assert_msg(fabsf(w[i] - back[i]) <= 0.5f * sc * 1.0001f, "q4 error at %d", i);
    }
    quant_q4_free(q);
    free(w);
    kd_err e = {0};
    ck_assert_ptr_null(quant_q4_pack(back, 0, 3, &e));
    ck_assert_int_eq(e.code, KD_ECONFIG);
    kd_alloc_fail_after(1);
    ck_assert_ptr_null(quant_q4_pack(back, 3, 3, &e));
    ck_assert_int_eq(e.code, KD_ENOMEM);
    kd_alloc_fail_after(-1);
}
END_TEST

START_TEST(test_q4_gemm_kernels)
{
    KDT_ISA_BEGIN(_i);
    nn_rng r = nn_rng_stream(6, NN_STREAM_TEST);
    for (size_t t = 0; t < sizeof shapes / sizeof *shapes; t++) {
        shape s = shapes[t];
        float *w = rand_f(&r, (size_t)s.m * s.k, 0.3f), *x = rand_f(&r, (size_t)s.n * s.k, 1.0f);
        float *b = rand_f(&r, s.m, 0.1f), *deq = malloc((size_t)s.m * s.k * sizeof *deq);
        size_t ny = (size_t)s.n * s.m;
        float *want = malloc(ny * 4), *ref = malloc(ny * 4), *got = malloc(ny * 4);
        quant_q4 *q = quant_q4_pack(w, s.m, s.k, NULL);
        quant_q4_unpack(q, deq);
        gemm_d(deq, x, b, s, want);
        quant_q4_gemm_ref(q, x, s.n, b, ref);
        check_close("q4 ref vs float", want, ref, deq, x, s, Q4_TOL);
        if (kernels_isa() >= KD_ISA_AVX2) { /* the avx2 level of the loop */
            quant_q4_gemm_avx2(q, x, s.n, b, got);
            check_close("q4 avx2 vs ref", ref, got, deq, x, s, Q4_TOL);
        }
        quant_q4_gemm_ref(q, x, s.n, NULL, ref);
        if (kernels_isa() < KD_ISA_AVX2) { /* the float spec: panels + sgemm from n = 16 */
            quant_q4_gemm(q, x, s.n, NULL, got);
            check_close("q4 dispatch vs ref", ref, got, deq, x, s, Q4_TOL);
        }
        if (s.n > 1) { /* with AVX2 the dispatch runs q4x8 (its own bound in test_q4x8.c);
                          * without its scratch (allocated past batch 1), the float kernels */
            kd_alloc_fail_after(0);
            quant_q4_gemm(q, x, s.n, NULL, got);
            kd_alloc_fail_after(-1);
            check_close("q4 dispatch (no scratch) vs ref", ref, got, deq, x, s, Q4_TOL);
        }
        quant_q4_free(q);
        free(w), free(x), free(b), free(deq), free(want), free(ref), free(got);
    }
}
END_TEST

/* ---- sparse int8 ------------------------------------------------------------------------ */

/* A matrix with about `keep` of its entries non-zero and one all-zero row. */
static float *sparse_w(nn_rng *r, shape s, float keep)
{
    float *w = rand_f(r, (size_t)s.m * s.k, 0.5f);
    for (size_t i = 0; i < (size_t)s.m * s.k; i++)
        if (nn_rng_uniform(r) >= keep || (int)(i / s.k) == s.m / 2)
            w[i] = 0.0f;
    return w;
}

/* Decodes c back to a dense m x k matrix of dequantized values. */
static void csr_to_dense(const quant_csr *c, float *w)
{
    memset(w, 0, (size_t)c->m * c->k * sizeof *w);
    for (int r = 0; r < c->m; r++) {
        int col = 0;
        for (int32_t j = c->row_ptr[r]; j < c->row_ptr[r + 1]; j++) {
            col += c->delta[j];
            ck_assert_int_lt(col, c->k);
            w[(size_t)r * c->k + col] += c->scale[r] * c->val[j];
        }
    }
}

START_TEST(test_csr_format)
{
    float w[2 * 5] = {0, 1.0f, 0, -0.5f, 0, 0, 0, 0, 0, 2.0f};
    kd_err e = {0};
    quant_csr *c = quant_csr_from_dense(w, 2, 5, &e);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(c->nnz, 3);
    ck_assert(c->row_ptr[0] == 0 && c->row_ptr[1] == 2 && c->row_ptr[2] == 3);
    ck_assert(c->delta[0] == 1 && c->delta[1] == 2 && c->delta[2] == 4);
    ck_assert(c->val[0] == 127 && c->val[1] == -64 && c->val[2] == 127);
    ck_assert_int_eq(quant_csr_bytes(c), 3 * 4 + 3 * 2 + 2 * 4);
    quant_csr_free(c);
    quant_csr_free(NULL);
    ck_assert_ptr_null(quant_csr_from_dense(w, 2, 0, &e));
    ck_assert_int_eq(e.code, KD_ECONFIG);
    for (long n = 0; n < 5; n++) {
        kd_alloc_fail_after(n);
        ck_assert_ptr_null(quant_csr_from_dense(w, 2, 5, &e));
        ck_assert_int_eq(e.code, KD_ENOMEM);
    }
    kd_alloc_fail_after(-1);
}
END_TEST

/* Gaps of exactly 255, 256, 510, 511 and more columns: fillers of value 0
 * bridge them and decoding gives back every position. */
START_TEST(test_csr_long_gaps)
{
    enum { K = 1400 };
    static float w[2 * K], back[2 * K];
    const int at[] = {0, 255, 511, 1021, 1022, 1399};
    for (size_t i = 0; i < sizeof at / sizeof *at; i++)
        w[at[i]] = w[K + at[i]] = 1.0f;
    w[K] = 0.0f; /* row 1 starts with a gap of 255 */
    quant_csr *c = quant_csr_from_dense(w, 2, K, NULL);
    /* row 0: 6 entries + fillers for gaps 256 (1), 510 (1), 377 (1) */
    ck_assert_int_eq(c->row_ptr[1], 9);
    csr_to_dense(c, back);
    for (int i = 0; i < 2 * K; i++)
        ck_assert_msg(back[i] == w[i] * c->scale[i / K] * 127.0f, "position %d", i);
    quant_csr_free(c);
}
END_TEST

START_TEST(test_csr_gemm_kernels)
{
    KDT_ISA_BEGIN(_i);
    nn_rng r = nn_rng_stream(7, NN_STREAM_TEST);
    for (size_t t = 0; t < sizeof shapes / sizeof *shapes; t++) {
        shape s = shapes[t];
        float *w = sparse_w(&r, s, 0.1f), *x = rand_f(&r, (size_t)s.n * s.k, 1.0f);
        float *b = rand_f(&r, s.m, 0.1f), *deq = calloc((size_t)s.m * s.k, sizeof *deq);
        size_t ny = (size_t)s.n * s.m;
        float *want = malloc(ny * 4), *ref = malloc(ny * 4), *got = malloc(ny * 4);
        quant_csr *c = quant_csr_from_dense(w, s.m, s.k, NULL);
        csr_to_dense(c, deq);
        for (size_t i = 0; i < (size_t)s.m * s.k; i++) /* int8 error: half a step */
            ck_assert(fabsf(deq[i] - w[i]) <= 0.5f * c->scale[i / s.k] * 1.0001f);
        gemm_d(deq, x, b, s, want);
        quant_csr_gemm_ref(c, x, s.n, b, ref);
        check_close("csr ref vs float", want, ref, deq, x, s, CSR_TOL);
        quant_csr_gemm(c, x, s.n, b, got); /* n >= 16: the transposed path */
        check_close("csr fast vs ref", ref, got, deq, x, s, CSR_TOL);
        kd_alloc_fail_after(0); /* no scratch: the per-sample path */
        quant_csr_gemm(c, x, s.n, b, got);
        kd_alloc_fail_after(-1);
        check_close("csr fast (no scratch) vs ref", ref, got, deq, x, s, CSR_TOL);
        quant_csr_free(c);
        free(w), free(x), free(b), free(deq), free(want), free(ref), free(got);
    }
}
END_TEST

Suite *suite_compress_q4_csr(void)
{
    Suite *s = suite_create("compress_q4_csr");
    TCase *tc = tcase_create("q4_csr");
    tcase_add_test(tc, test_f16_conversions);
    tcase_add_test(tc, test_q4_round_trip);
    tcase_add_test(tc, test_q4_error_bound);
    KDT_ISA_LOOP(tc, test_q4_gemm_kernels);
    tcase_add_test(tc, test_csr_format);
    tcase_add_test(tc, test_csr_long_gaps);
    KDT_ISA_LOOP(tc, test_csr_gemm_kernels);
    suite_add_tcase(s, tc);
    return s;
}
