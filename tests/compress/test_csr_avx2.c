/* The CSR kernels at every kernel level the host runs (KDT_ISA_LOOP), against
 * their references: compress_csr_matmul and compress_panels (csr-fp32,
 * batch 1 and batched) against compress_csr_matmul_ref, quant_csr_gemm and
 * the int8 panels (csr-int8) against quant_csr_gemm_ref.  At level avx2
 * these run kernels/csr_avx2.c and the 8-row panels of
 * kernels/panels_avx2.c.  Shapes are ragged: rows and columns not multiples
 * of 8 or 16, empty rows, no non-zeros at all, one row, one column, a dense
 * block (8 steps a panel), gaps over 255 columns (int8 fillers; the avx2
 * panels' filler steps) and every index width (1, 2, 4 bytes).  Tolerance: CSR_TOL times the sum of
 * |terms| of the output (float sums in another order), plus CSR_ABS. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../compress/compress.h"
#include "../../compress/kernels/internal.h"
#include "../../compress/kernels/cpu.h"
#include "../kdtest.h"

#define CSR_TOL 1e-5
#define CSR_ABS 1e-6

typedef struct {
    int rows, cols;
    double density;
} cshape;
static const cshape cshapes[] = {
    {1, 1, 1.0},    {1, 1, 0.0},     {3, 5, 0.0},      {9, 17, 0.3},    {8, 8, 1.0},
    {1, 1200, 0.1}, {1200, 1, 0.5},  {33, 300, 0.1},   {17, 256, 0.5},  {5, 257, 0.9},
    {40, 37, 1.0},  {23, 1400, 0.002}, {2, 70000, 0.002}, {121, 784, 0.1},
    {11, 5, 0.7}, /* fewer than 8 columns, non-zeros past column 0 (ASan: no read past x) */
    /* avx2 panels: 8-row slices whose windows jump more than 255 columns
     * (filler steps, in either step of a pair) and odd step counts */
    {9, 3000, 0.0005}, {16, 5000, 0.0004},
};
#define NSHAPES ((int)(sizeof cshapes / sizeof cshapes[0]))
static const int batches[] = {1, 2, 7, 16, 33, 64};

/* rows x cols with about density non-zeros, every third row empty, a few
 * tiny entries (int8: they round to value-0 entries) */
static float *ct_sparse(const cshape *s, uint64_t seed)
{
    nn_rng r = nn_rng_stream(seed, NN_STREAM_TEST);
    float *w = calloc((size_t)s->rows * s->cols, sizeof *w);
    for (int i = 0; i < s->rows; i++)
        for (int j = 0; j < s->cols; j++)
            if ((s->rows < 3 || i % 3 != 1) && nn_rng_uniform(&r) < s->density)
                w[(size_t)i * s->cols + j] = nn_rng_uniform(&r) < 0.03 ? 1e-6f : nn_rng_normal(&r);
    return w;
}

static float *ct_vec(size_t n, uint64_t seed)
{
    nn_rng r = nn_rng_stream(seed, NN_STREAM_TEST);
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = nn_rng_normal(&r);
    return x;
}

/* |y - want| within the tolerance for an output whose terms sum to mag in
 * absolute value */
static void ct_close(float y, float want, double mag, const char *what, int s, int i, int r)
{
    ck_assert_msg(fabs((double)y - want) <= CSR_TOL * mag + CSR_ABS,
                  "%s, shape %d, sample %d, row %d: %.9g vs %.9g (level %s)", what, s, i, r,
                  (double)y, (double)want, kernels_isa_name(kernels_isa()));
}

/* sum |w x| + |b| of row r for sample xi */
static double ct_mag(const float *w, int cols, int r, const float *xi, const float *b)
{
    double m = fabs(b[r]);
    for (int c = 0; c < cols; c++)
        m += fabs((double)w[(size_t)r * cols + c] * xi[c]);
    return m;
}

/* csr-fp32: the dispatched kernel at every batch size */
START_TEST(fp32_matmul_matches_ref)
{
    KDT_ISA_BEGIN(_i);
    for (int s = 0; s < NSHAPES; s++) {
        const cshape *sh = &cshapes[s];
        kd_err e = {0};
        float *w = ct_sparse(sh, 100 + s), *b = ct_vec((size_t)sh->rows, 7);
        compress_csr *a = compress_csr_from_dense(w, sh->rows, sh->cols, &e);
        ck_assert_ptr_nonnull(a);
        for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
            int n = batches[bi];
            float *x = ct_vec((size_t)n * sh->cols, 8 + bi);
            float *yr = malloc((size_t)n * sh->rows * sizeof *yr);
            float *yf = malloc((size_t)n * sh->rows * sizeof *yf);
            float *scratch = kd_afloat(compress_csr_scratch(a, n) + 1);
            compress_csr_matmul_ref(a, b, x, yr, n);
            compress_csr_matmul(a, b, x, yf, n, scratch);
            for (int i = 0; i < n; i++)
                for (int r = 0; r < sh->rows; r++) {
                    const float *xi = x + (size_t)i * sh->cols;
                    size_t o = (size_t)i * sh->rows + r;
                    ct_close(yf[o], yr[o], ct_mag(w, sh->cols, r, xi, b), "fp32", s, i, r);
                }
            kd_afree(scratch);
            free(x), free(yr), free(yf);
        }
        compress_csr_free(a);
        free(w), free(b);
    }
}
END_TEST

/* Runs p over x whole and in 1..5 parts (last part first): the parts equal
 * the whole bitwise; the whole goes to y. */
static void ct_panels_run(const compress_panels *p, const float *b, const float *x, float *y,
                          int rows)
{
    float *cut = malloc((size_t)rows * sizeof *cut);
    compress_panels_spmv(p, b, x, y);
    for (int np = 1; np <= 5; np++) {
        memset(cut, 0x7f, (size_t)rows * sizeof *cut);
        for (int part = np - 1; part >= 0; part--)
            compress_panels_spmv_part(p, b, x, cut, part, np);
        ck_assert_msg(memcmp(y, cut, (size_t)rows * sizeof *cut) == 0, "%d rows in %d parts",
                      rows, np);
    }
    free(cut);
}

/* csr-fp32 batch 1 through the panels of the level in force */
START_TEST(fp32_panels_match_ref)
{
    KDT_ISA_BEGIN(_i);
    if (!compress_panels_supported())
        KDT_SKIP("no panels at level %s (the layers run the CSR kernels)",
                 kernels_isa_name(kernels_isa()));
    for (int s = 0; s < NSHAPES; s++) {
        const cshape *sh = &cshapes[s];
        kd_err e = {0};
        float *w = ct_sparse(sh, 200 + s), *b = ct_vec((size_t)sh->rows, 9);
        float *x = ct_vec((size_t)sh->cols, 10);
        compress_csr *a = compress_csr_from_dense(w, sh->rows, sh->cols, &e);
        compress_panels *p = compress_panels_new(a, COMPRESS_PANELS_AUTO, &e);
        ck_assert_ptr_nonnull(p);
        float *yr = malloc((size_t)sh->rows * sizeof *yr), *yp = malloc((size_t)sh->rows * sizeof *yp);
        compress_csr_matmul_ref(a, b, x, yr, 1);
        ct_panels_run(p, b, x, yp, sh->rows);
        for (int r = 0; r < sh->rows; r++)
            ct_close(yp[r], yr[r], ct_mag(w, sh->cols, r, x, b), "fp32 panels", s, 0, r);
        compress_panels_free(p);
        compress_csr_free(a);
        free(w), free(b), free(x), free(yr), free(yp);
    }
}
END_TEST

/* sum |scale q x| + |b| of row r (the int8 terms) */
static double ct_qmag(const quant_csr *q, int r, const float *xi, const float *b)
{
    double m = fabs(b[r]);
    int col = 0;
    for (int32_t j = q->row_ptr[r]; j < q->row_ptr[r + 1]; j++) {
        col += q->delta[j];
        m += fabs((double)q->scale[r] * q->val[j] * xi[col]);
    }
    return m;
}

/* csr-int8: quant_csr_gemm at every batch size and the int8 panels */
START_TEST(int8_matches_ref)
{
    KDT_ISA_BEGIN(_i);
    for (int s = 0; s < NSHAPES; s++) {
        const cshape *sh = &cshapes[s];
        kd_err e = {0};
        float *w = ct_sparse(sh, 300 + s), *b = ct_vec((size_t)sh->rows, 11);
        quant_csr *q = quant_csr_from_dense(w, sh->rows, sh->cols, &e);
        ck_assert_ptr_nonnull(q);
        for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
            int n = batches[bi];
            float *x = ct_vec((size_t)n * sh->cols, 12 + bi);
            float *yr = malloc((size_t)n * sh->rows * sizeof *yr);
            float *yf = malloc((size_t)n * sh->rows * sizeof *yf);
            quant_csr_gemm_ref(q, x, n, b, yr);
            quant_csr_gemm(q, x, n, b, yf);
            for (int i = 0; i < n; i++)
                for (int r = 0; r < sh->rows; r++) {
                    size_t o = (size_t)i * sh->rows + r;
                    ct_close(yf[o], yr[o], ct_qmag(q, r, x + (size_t)i * sh->cols, b), "int8",
                             s, i, r);
                }
            if (n == 1 && compress_panels_supported()) {
                compress_panels *p = compress_panels_new_q8(q, &e);
                ck_assert_ptr_nonnull(p);
                ct_panels_run(p, b, x, yf, sh->rows);
                for (int r = 0; r < sh->rows; r++)
                    ct_close(yf[r], yr[r], ct_qmag(q, r, x, b), "int8 panels", s, 0, r);
                compress_panels_free(p);
            }
            free(x), free(yr), free(yf);
        }
        quant_csr_free(q);
        free(w), free(b);
    }
}
END_TEST

/* The kinds end to end at the level in force, with a team of 2: a 90%-pruned
 * MLP as dense_csr and as dense_csr_q8 at batch 1 (panels split by the
 * team) and 40 (blocks), against the same model's batch-1 forward through
 * the references (the level is fixed before reserve builds the panels). */
START_TEST(kinds_match_at_level)
{
    KDT_ISA_BEGIN(_i);
    nn_set_threads(2);
    const nn_layer_spec spec[] = {{.kind = NN_DENSE, .units = 83}, {.kind = NN_RELU},
                                  {.kind = NN_DENSE, .units = 10}};
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){61, 1, 1}, spec, 3, NULL, &e);
    ck_assert_ptr_nonnull(m);
    nn_model_init(m, 4);
    compress_prune_spec ps = {.sparsity = 0.9f};
    compress_sparse_opts all = {.policy = COMPRESS_SPARSE_ALWAYS};
    ck_assert_int_eq(compress_prune_magnitude(m, &ps, NULL, &e), KD_OK);
    nn_model *sp = compress_to_sparse(m, &all, NULL, &e);
    ck_assert_ptr_nonnull(sp);
    compress_quant_spec s8 = {.mode = COMPRESS_Q_STATIC8, .per_channel = 1};
    nn_model *q8 = compress_quantize(sp, &s8, NULL, &e);
    ck_assert_ptr_nonnull(q8);
    const int n = 40;
    float *x = ct_vec((size_t)n * 61, 21);
    nn_model *v[2] = {sp, q8};
    for (int k = 0; k < 2; k++) {
        nn_ctx c = {.train = 0};
        float *y1 = malloc((size_t)n * 10 * sizeof *y1);
        for (int i = 0; i < n; i++) /* one sample at a time: the batch-1 kernels */
            memcpy(y1 + i * 10, nn_model_forward(v[k], x + i * 61, 1, &c), 10 * sizeof *y1);
        const float *yn = nn_model_forward(v[k], x, n, &c);
        const float *yd = k == 0 ? nn_model_forward(m, x, n, &c) : yn;
        for (int i = 0; i < n * 10; i++) {
            ck_assert_msg(fabsf(y1[i] - yn[i]) <= 1e-4f * (1.0f + fabsf(yn[i])),
                          "kind %d output %d: batch 1 %g, batch %d %g", k, i, (double)y1[i], n,
                          (double)yn[i]);
            ck_assert_msg(fabsf(yn[i] - yd[i]) <= 1e-4f * (1.0f + fabsf(yd[i])),
                          "csr-fp32 output %d: %g, dense %g", i, (double)yn[i], (double)yd[i]);
        }
        free(y1);
    }
    free(x);
    nn_model_free(q8);
    nn_model_free(sp);
    nn_model_free(m);
}
END_TEST

/* rows x cols where row i has about density * ((i * 7) % 11) / 5 non-zeros
 * a column: rows of very uneven length, as a trained layer's */
static float *ct_uneven(int rows, int cols, double density, uint64_t seed)
{
    nn_rng r = nn_rng_stream(seed, NN_STREAM_TEST);
    float *w = calloc((size_t)rows * cols, sizeof *w);
    for (int i = 0; i < rows; i++) {
        double d = density * ((i * 7) % 11) / 5.0;
        for (int j = 0; j < cols; j++)
            if (nn_rng_uniform(&r) < d)
                w[(size_t)i * cols + j] = nn_rng_normal(&r);
    }
    return w;
}

/* The panels' row order (rows sorted by length within blocks of slices):
 * kept for rows of uneven length, not for even ones; the products with and
 * without a bias, with the fused ReLU, whole and in 1..5 parts (bitwise
 * equal), fp32 (padded and compact values) and int8, against the references. */
START_TEST(panels_row_order)
{
    KDT_ISA_BEGIN(_i);
    if (!compress_panels_supported())
        KDT_SKIP("no panels at level %s (the layers run the CSR kernels)",
                 kernels_isa_name(kernels_isa()));
    static const cshape sh[] = {{300, 200, 0.1}, {77, 1300, 0.05}, {1200, 784, 0.1}};
    for (int s = 0; s < 3; s++) {
        kd_err e = {0};
        int rows = sh[s].rows, cols = sh[s].cols;
        float *w = ct_uneven(rows, cols, sh[s].density, 40 + s), *b = ct_vec((size_t)rows, 41);
        float *x = ct_vec((size_t)cols, 42);
        float *want = malloc((size_t)rows * sizeof *want), *got = malloc((size_t)rows * 4);
        float *cut = malloc((size_t)rows * sizeof *cut);
        compress_csr *a = compress_csr_from_dense(w, rows, cols, &e);
        quant_csr *q = quant_csr_from_dense(w, rows, cols, &e);
        ck_assert(a && q);
        for (int kk = 0; kk < 3; kk++) { /* fp32 padded, fp32 compact (AVX-512 only), int8 */
            int k = kk == 2;
            compress_panels *p = k ? compress_panels_new_q8(q, &e)
                                   : compress_panels_new(a, kk ? COMPRESS_PANELS_COMPACT
                                                               : COMPRESS_PANELS_PADDED, &e);
            ck_assert_ptr_nonnull(p);
            ck_assert_msg(compress_panels_row_ordered(p), "shape %d kind %d: rows kept in order",
                          s, kk);
            for (int v = 0; v < 3; v++) { /* bias, no bias, bias + relu */
                const float *bb = v == 1 ? NULL : b;
                if (k)
                    quant_csr_gemm_ref(q, x, 1, bb, want);
                else
                    compress_csr_matmul_ref(a, bb, x, want, 1);
                memset(got, 0x7f, (size_t)rows * sizeof *got);
                compress_panels_spmv_part_relu(p, bb, x, got, 0, 1, v == 2);
                for (int r = 0; r < rows; r++) {
                    double mag = k ? ct_qmag(q, r, x, b) : ct_mag(w, cols, r, x, b);
                    float ref = v == 2 && !(want[r] > 0) ? 0.0f : want[r];
                    ct_close(got[r], ref, mag, k ? "int8 ordered" : "fp32 ordered", s, v, r);
                }
                for (int np = 1; np <= 5; np++) {
                    memset(cut, 0x7f, (size_t)rows * sizeof *cut);
                    for (int part = np - 1; part >= 0; part--)
                        compress_panels_spmv_part_relu(p, bb, x, cut, part, np, v == 2);
                    ck_assert_msg(memcmp(got, cut, (size_t)rows * sizeof *cut) == 0,
                                  "shape %d kind %d in %d parts", s, kk, np);
                }
            }
            compress_panels_free(p);
        }
        compress_csr_free(a);
        quant_csr_free(q);
        free(w), free(b), free(x), free(want), free(got), free(cut);
    }
    /* rows of even length (a dense block): nothing to gain, the file's order */
    kd_err e = {0};
    const cshape even = {64, 64, 1.0};
    float *w = calloc(64 * 64, sizeof *w);
    for (int i = 0; i < 64 * 64; i++)
        w[i] = (float)(i % 7) + 1.0f;
    compress_csr *a = compress_csr_from_dense(w, even.rows, even.cols, &e);
    compress_panels *p = compress_panels_new(a, COMPRESS_PANELS_AUTO, &e);
    ck_assert_ptr_nonnull(p);
    ck_assert(!compress_panels_row_ordered(p));
    compress_panels_free(p);
    compress_csr_free(a);
    free(w);
}
END_TEST


/* Rows pruned together in blocks (compress_prune_spec.block) fill the
 * panels' steps: at 90% a layer pruned in blocks of 8 or 16 rows takes at
 * most half the panel bytes of the same layer pruned weight by weight (~1
 * lane per non-zero instead of ~2), at every level that has panels -- at
 * the AVX-512 level blocks of 8 only through the 8-row layout, which AUTO
 * then takes (panels.c's wants_p8) -- and the panels still compute the
 * layer. */
START_TEST(block_pruned_panels)
{
    KDT_ISA_BEGIN(_i);
    if (!compress_panels_supported())
        KDT_SKIP("no panels at level %s (the layers run the CSR kernels)",
                 kernels_isa_name(kernels_isa()));
    const nn_layer_spec ls[] = {{.kind = NN_DENSE, .units = 96}};
    const int blocks[] = {1, 8, 16};
    kd_err e = {0};
    size_t bytes[3];
    for (int k = 0; k < 3; k++) {
        nn_model *m = nn_model_new((nn_shape){700, 1, 1}, ls, 1, NULL, &e);
        ck_assert_msg(m != NULL, "%s", e.msg);
        nn_model_init(m, 5);
        compress_prune_spec ps = {.sparsity = 0.9f, .block = blocks[k]};
        ck_assert_int_eq(compress_prune_magnitude(m, &ps, NULL, &e), KD_OK);
        compress_csr *a = compress_csr_from_dense(m->layers[0].w, 96, 700, &e);
        quant_csr *q = quant_csr_from_dense(m->layers[0].w, 96, 700, &e);
        compress_panels *p = compress_panels_new(a, COMPRESS_PANELS_AUTO, &e);
        compress_panels *p8 = compress_panels_new_q8(q, &e);
        ck_assert(p && p8);
        bytes[k] = compress_panels_bytes(p);
        float *x = ct_vec(700, 51), want[96], got[96];
        compress_csr_matmul_ref(a, NULL, x, want, 1);
        compress_panels_spmv(p, NULL, x, got);
        for (int r = 0; r < 96; r++)
            ck_assert_float_eq_tol(got[r], want[r], 1e-4f);
        quant_csr_gemm_ref(q, x, 1, NULL, want);
        compress_panels_spmv(p8, NULL, x, got);
        for (int r = 0; r < 96; r++)
            ck_assert_float_eq_tol(got[r], want[r], 1e-4f);
        free(x);
        compress_panels_free(p);
        compress_panels_free(p8);
        compress_csr_free(a);
        quant_csr_free(q);
        nn_model_free(m);
    }
    for (int k = 1; k < 3; k++)
        ck_assert_msg(bytes[k] * 2 <= bytes[0], "panels of a layer pruned in blocks of %d rows "
                      "%zu B, pruned weight by weight %zu B", blocks[k], bytes[k], bytes[0]);
}
END_TEST

Suite *suite_compress_csr_avx2(void)
{
    Suite *s = suite_create("compress_csr_avx2");
    TCase *tc = tcase_create("csr_levels");
    tcase_set_timeout(tc, 60);
    KDT_ISA_LOOP(tc, fp32_matmul_matches_ref);
    KDT_ISA_LOOP(tc, fp32_panels_match_ref);
    KDT_ISA_LOOP(tc, int8_matches_ref);
    KDT_ISA_LOOP(tc, kinds_match_at_level);
    KDT_ISA_LOOP(tc, panels_row_order);
    KDT_ISA_LOOP(tc, block_pruned_panels);
    suite_add_tcase(s, tc);
    return s;
}
