/* The int8 panels (compress_panels_new_q8, csr-int8's batch-1 kernel on
 * AVX-512 CPUs) against quant_csr_gemm_ref on ragged shapes: 1x1, empty
 * rows, an all-zero matrix, rows not a multiple of 16, columns not a
 * multiple of 32, gaps over 255 columns (fillers), entries rounding to 0,
 * 70000 columns; within QP_TOL of the sum of |scale * q * x| (float sums in
 * another order).  Parts 1..5 of a product equal the whole bitwise; every
 * allocation failure is clean.  Skipped on CPUs without AVX-512. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../compress/kernels/kernels.h"
#include "../kdtest.h"

#define QP_TOL 1e-5

typedef struct {
    int m, k;
    double density; /* 0: all zero */
} qshape;
static const qshape qshapes[] = {
    {1, 1, 1.0},     {1, 1, 0.0},     {16, 32, 0.3},  {7, 31, 0.5},   {17, 33, 0.2},
    {33, 257, 0.1},  {40, 1400, 0.002}, {50, 784, 0.1}, {120, 120, 0.1}, {31, 1000, 0.0},
    {3, 70000, 0.001}, {64, 96, 1.0},
};

/* m x k with about `density` non-zeros, every third row empty, a few tiny
 * entries that quantize to 0 (kept as value-0 entries). */
static float *qp_sparse(const qshape *s, uint64_t seed)
{
    nn_rng r = nn_rng_stream(seed, NN_STREAM_TEST);
    float *w = calloc((size_t)s->m * s->k, sizeof *w);
    for (int i = 0; i < s->m; i++)
        for (int j = 0; j < s->k; j++)
            if (i % 3 != 1 && nn_rng_uniform(&r) < s->density)
                w[(size_t)i * s->k + j] = nn_rng_uniform(&r) < 0.05 ? 1e-6f : nn_rng_normal(&r);
    return w;
}

static float *qp_vec(size_t n, uint64_t seed)
{
    nn_rng r = nn_rng_stream(seed, NN_STREAM_TEST);
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = nn_rng_normal(&r);
    return x;
}

/* sum_j |scale[r] * val[j] * x[col_j]| of row r */
static double qp_mag(const quant_csr *q, int r, const float *x)
{
    double s = 0.0;
    int col = 0;
    for (int32_t j = q->row_ptr[r]; j < q->row_ptr[r + 1]; j++) {
        col += q->delta[j];
        s += fabs((double)q->scale[r] * q->val[j] * x[col]);
    }
    return s;
}

START_TEST(test_qpanels_match_reference)
{
    if (!compress_panels_supported())
        KDT_SKIP("no AVX-512 in use (host or KD_ISA): the layer keeps the CSR kernel");
    for (size_t t = 0; t < sizeof qshapes / sizeof *qshapes; t++) {
        const qshape *s = &qshapes[t];
        kd_err e = {0};
        float *w = qp_sparse(s, 100 + t), *x = qp_vec((size_t)s->k, 200 + t);
        float *b = qp_vec((size_t)s->m, 300 + t);
        float *want = malloc((size_t)s->m * sizeof *want), *got = malloc((size_t)s->m * sizeof *got);
        quant_csr *q = quant_csr_from_dense(w, s->m, s->k, &e);
        ck_assert_msg(q != NULL, "%s", e.msg);
        compress_panels *p = compress_panels_new_q8(q, &e);
        ck_assert_msg(p != NULL, "%s", e.msg);
        for (int wb = 0; wb < 2; wb++) { /* with and without a bias */
            const float *bb = wb ? b : NULL;
            quant_csr_gemm_ref(q, x, 1, bb, want);
            memset(got, 0x7f, (size_t)s->m * sizeof *got);
            compress_panels_spmv(p, bb, x, got);
            for (int r = 0; r < s->m; r++) {
                double tol = QP_TOL * qp_mag(q, r, x) + 1e-6;
                ck_assert_msg(fabs((double)got[r] - want[r]) <= tol,
                              "%dx%d bias %d row %d: %g vs %g", s->m, s->k, wb, r, got[r],
                              want[r]);
            }
        }
        compress_panels_free(p);
        quant_csr_free(q);
        free(w), free(x), free(b), free(want), free(got);
    }
}
END_TEST

/* The panels cut in 1..5 parts, run last part first (as threads may), give
 * exactly the whole product. */
START_TEST(test_qpanels_parts_equal_whole)
{
    if (!compress_panels_supported())
        KDT_SKIP("no AVX-512 in use (host or KD_ISA): the layer keeps the CSR kernel");
    for (size_t t = 0; t < sizeof qshapes / sizeof *qshapes; t++) {
        const qshape *s = &qshapes[t];
        kd_err e = {0};
        float *w = qp_sparse(s, 400 + t), *x = qp_vec((size_t)s->k, 500 + t);
        float *b = qp_vec((size_t)s->m, 600 + t);
        float *whole = malloc((size_t)s->m * sizeof *whole), *cut = malloc((size_t)s->m * 4);
        quant_csr *q = quant_csr_from_dense(w, s->m, s->k, &e);
        compress_panels *p = compress_panels_new_q8(q, &e);
        ck_assert_ptr_nonnull(p);
        compress_panels_spmv(p, b, x, whole);
        for (int np = 1; np <= 5; np++) {
            memset(cut, 0x7f, (size_t)s->m * sizeof *cut);
            for (int part = np - 1; part >= 0; part--)
                compress_panels_spmv_part(p, b, x, cut, part, np);
            ck_assert_msg(memcmp(whole, cut, (size_t)s->m * sizeof *cut) == 0,
                          "%dx%d in %d parts", s->m, s->k, np);
        }
        compress_panels_free(p);
        quant_csr_free(q);
        free(w), free(x), free(b), free(whole), free(cut);
    }
}
END_TEST

/* Every allocation of the builder may fail: NULL with KD_ENOMEM, nothing
 * leaked (asan); then it succeeds. */
START_TEST(test_qpanels_alloc_failure)
{
    if (!compress_panels_supported())
        KDT_SKIP("no AVX-512 in use (host or KD_ISA): the layer keeps the CSR kernel");
    const qshape s = {33, 257, 0.1};
    float *w = qp_sparse(&s, 7);
    quant_csr *q = quant_csr_from_dense(w, s.m, s.k, NULL);
    compress_panels *p = NULL;
    for (long n = 0; !p; n++) {
        ck_assert_int_lt(n, 64);
        kd_err e = {0};
        kd_alloc_fail_after(n);
        p = compress_panels_new_q8(q, &e);
        kd_alloc_fail_after(-1);
        if (!p)
            ck_assert_int_eq(e.code, KD_ENOMEM);
    }
    compress_panels_free(p);
    quant_csr_free(q);
    free(w);
}
END_TEST

Suite *suite_compress_qpanels(void)
{
    Suite *s = suite_create("compress_qpanels");
    TCase *tc = tcase_create("qpanels");
    tcase_add_test(tc, test_qpanels_match_reference);
    tcase_add_test(tc, test_qpanels_parts_equal_whole);
    tcase_add_test(tc, test_qpanels_alloc_failure);
    suite_add_tcase(s, tc);
    return s;
}
