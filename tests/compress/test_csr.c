/* CSR kernels: the fast kernels (dispatched, portable, AVX-512 panels) against the
 * reference, and the reference against a dense product in double, on ragged
 * shapes with empty rows, all-zero matrices and every index width, at batch
 * 1, 7, 33 and 64; the dense_csr layer against nn's dense layer; the
 * measured conversion keeps a dense (unpruned) layer dense. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../compress/compress.h"
#include "../kdtest.h"

/* rows x cols with about density non-zeros; every third row empty */
static float *random_sparse(int rows, int cols, double density, uint64_t seed)
{
    nn_rng r = nn_rng_stream(seed, NN_STREAM_TEST);
    float *w = calloc((size_t)rows * cols, sizeof *w);
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            if (i % 3 != 1 && nn_rng_uniform(&r) < density)
                w[(size_t)i * cols + j] = nn_rng_normal(&r);
    return w;
}

static float *random_vec(size_t n, uint64_t seed)
{
    nn_rng r = nn_rng_stream(seed, NN_STREAM_TEST);
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = nn_rng_normal(&r);
    return x;
}

typedef void (*kernel)(const compress_csr *, const float *, const float *, float *, int, float *);

/* Checks kernel k and the reference against a double-precision dense product. */
static void check_shape(int rows, int cols, double density, int n, kernel k)
{
    kd_err e = {0};
    float *w = random_sparse(rows, cols, density, (uint64_t)rows * 7919 + cols);
    float *x = random_vec((size_t)n * cols, 5), *b = random_vec((size_t)rows, 6);
    compress_csr *a = compress_csr_from_dense(w, rows, cols, &e);
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(a->idx_bytes, cols <= 256 ? 1 : cols <= 65536 ? 2 : 4);
    float *yr = malloc((size_t)n * rows * sizeof *yr), *yf = malloc((size_t)n * rows * sizeof *yf);
    float *scratch = kd_afloat(compress_csr_scratch(a, n) + 1);
    compress_csr_matmul_ref(a, b, x, yr, n);
    k(a, b, x, yf, n, scratch);
    for (int i = 0; i < n; i++)
        for (int r = 0; r < rows; r++) {
            double d = b[r], mag = fabs(b[r]);
            for (int c = 0; c < cols; c++) {
                double p = (double)w[(size_t)r * cols + c] * x[(size_t)i * cols + c];
                d += p;
                mag += fabs(p);
            }
            size_t o = (size_t)i * rows + r;
            double tol = 1e-5 * mag + 1e-6;
            ck_assert_msg(fabs(yr[o] - d) <= tol, "ref %dx%d n=%d [%d,%d]: %g vs %g", rows, cols,
                          n, i, r, (double)yr[o], d);
            ck_assert_msg(fabs(yf[o] - yr[o]) <= tol, "fast %dx%d n=%d [%d,%d]: %g vs %g", rows,
                          cols, n, i, r, (double)yf[o], (double)yr[o]);
        }
    kd_afree(scratch);
    compress_csr_free(a);
    free(w);
    free(x);
    free(b);
    free(yr);
    free(yf);
}

static const struct {
    int rows, cols;
    double density;
} shapes[] = {
    {1, 1, 1.0},    {3, 5, 0.0},     {7, 13, 0.3},   {33, 300, 0.1}, {17, 256, 0.5},
    {5, 257, 0.9},  {40, 37, 1.0},   {2, 70000, 0.002}, {64, 100, 0.05},
};
static const int batches[] = {1, 7, 33, 64};

START_TEST(test_kernels_match_reference)
{
    KDT_ISA_BEGIN(_i);
    kernel ks[2] = {compress_csr_matmul, compress_csr_matmul_portable};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int b = 0; b < 4; b++)
            for (int k = 0; k < 2; k++)
                check_shape(shapes[s].rows, shapes[s].cols, shapes[s].density, batches[b], ks[k]);
}
END_TEST

/* The panels run one sample at a time: sample by sample over the batch. */
static void panels_run(compress_panels_layout layout, const compress_csr *a, const float *bias,
                       const float *x, float *y, int n)
{
    kd_err e = {0};
    compress_panels *p = compress_panels_new(a, layout, &e);
    ck_assert_ptr_nonnull(p);
    for (int i = 0; i < n; i++)
        compress_panels_spmv(p, bias, x + (size_t)i * a->cols, y + (size_t)i * a->rows);
    compress_panels_free(p);
}

static void panels_padded(const compress_csr *a, const float *bias, const float *x, float *y,
                          int n, float *scratch)
{
    (void)scratch;
    panels_run(COMPRESS_PANELS_PADDED, a, bias, x, y, n);
}

static void panels_compact(const compress_csr *a, const float *bias, const float *x, float *y,
                           int n, float *scratch)
{
    (void)scratch;
    panels_run(COMPRESS_PANELS_COMPACT, a, bias, x, y, n);
}

START_TEST(test_panels_match_reference)
{
    if (!compress_panels_supported())
        KDT_SKIP("no AVX-512 in use (host or KD_ISA): the layers use the CSR kernels");
    kernel ks[2] = {panels_padded, panels_compact};
    for (int k = 0; k < 2; k++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int b = 0; b < 2; b++)
                check_shape(shapes[s].rows, shapes[s].cols, shapes[s].density, batches[b], ks[k]);
}
END_TEST

/* The panels cut in 1..5 parts, run last part first (as threads may), give
 * exactly the whole product: the cut moves rows between threads, not sums. */
START_TEST(test_panels_parts_equal_whole)
{
    if (!compress_panels_supported())
        KDT_SKIP("no AVX-512 in use (host or KD_ISA): the layers use the CSR kernels");
    for (int lay = COMPRESS_PANELS_PADDED; lay <= COMPRESS_PANELS_COMPACT; lay++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int rows = shapes[s].rows, cols = shapes[s].cols;
            kd_err e = {0};
            float *w = random_sparse(rows, cols, shapes[s].density, 11 + s);
            float *x = random_vec((size_t)cols, 12), *b = random_vec((size_t)rows, 13);
            compress_csr *a = compress_csr_from_dense(w, rows, cols, &e);
            compress_panels *p = compress_panels_new(a, (compress_panels_layout)lay, &e);
            ck_assert_ptr_nonnull(p);
            float *whole = malloc((size_t)rows * sizeof *whole);
            float *cut = malloc((size_t)rows * sizeof *cut);
            compress_panels_spmv(p, b, x, whole);
            for (int np = 1; np <= 5; np++) {
                memset(cut, 0x7f, (size_t)rows * sizeof *cut);
                for (int part = np - 1; part >= 0; part--)
                    compress_panels_spmv_part(p, b, x, cut, part, np);
                ck_assert_msg(memcmp(whole, cut, (size_t)rows * sizeof *cut) == 0,
                              "%dx%d layout %d in %d parts", rows, cols, lay, np);
            }
            compress_panels_free(p);
            compress_csr_free(a);
            free(w), free(x), free(b), free(whole), free(cut);
        }
}
END_TEST

START_TEST(test_csr_structure)
{
    kd_err e = {0};
    const float w[2 * 4] = {0, 2, 0, -1, 0, 0, 0, 0};
    compress_csr *a = compress_csr_from_dense(w, 2, 4, &e);
    ck_assert_uint_eq(a->nnz, 2);
    ck_assert_uint_eq(a->rowptr[0], 0);
    ck_assert_uint_eq(a->rowptr[1], 2);
    ck_assert_uint_eq(a->rowptr[2], 2);
    ck_assert_uint_eq(compress_csr_col(a, 0), 1);
    ck_assert_uint_eq(compress_csr_col(a, 1), 3);
    ck_assert(a->val[0] == 2.0f && a->val[1] == -1.0f);
    compress_csr_free(a);
    compress_csr_free(NULL);
}
END_TEST

static nn_model *mlp(int in, int h, int out, uint64_t seed)
{
    const nn_layer_spec s[] = {{.kind = NN_DENSE, .units = h}, {.kind = NN_RELU},
                               {.kind = NN_DENSE, .units = out}};
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){in, 1, 1}, s, 3, NULL, &e);
    ck_assert_msg(m != NULL, "%s", e.msg);
    nn_model_init(m, seed);
    for (int i = 0; i < m->nlayers; i++) /* non-zero biases */
        for (size_t j = 0; j < m->layers[i].nb; j++)
            m->layers[i].b[j] = 0.01f * (float)j;
    return m;
}

START_TEST(test_layer_matches_dense)
{
    KDT_ISA_BEGIN(_i);
    kd_err e = {0};
    nn_model *m = mlp(29, 45, 6, 3);
    compress_prune_spec ps = {.sparsity = 0.7f};
    ck_assert_int_eq(compress_prune_magnitude(m, &ps, NULL, &e), KD_OK);
    compress_sparse_opts all = {.policy = COMPRESS_SPARSE_ALWAYS};
    compress_choice ch[3];
    nn_model *s = compress_to_sparse(m, &all, ch, &e);
    ck_assert_msg(s != NULL, "%s", e.msg);
    ck_assert_ptr_eq(s->layers[0].ops, &compress_dense_csr_ops);
    ck_assert_ptr_nonnull(compress_layer_csr(&s->layers[2]));
    ck_assert_int_eq(ch[0].converted, 1);
    ck_assert(fabs(ch[0].sparsity - 0.7) < 0.01);
    ck_assert_str_eq(nn_layer_format(&s->layers[0]), "csr-fp32");
    size_t nz1, nz2;
    ck_assert_uint_eq(nn_model_params(m, &nz1), nn_model_params(s, &nz2));
    ck_assert_uint_eq(nz1, nz2);
    ck_assert(nn_model_macs(s) < 0.35 * nn_model_macs(m));
    for (int b = 0; b < 4; b++) {
        int n = batches[b];
        float *x = random_vec((size_t)n * 29, 9);
        nn_ctx c = {.train = 0};
        const float *yd = nn_model_forward(m, x, n, &c);
        float *keep = malloc((size_t)n * 6 * sizeof *keep);
        memcpy(keep, yd, (size_t)n * 6 * sizeof *keep);
        int threads = nn_threads();
        const float *ys = nn_model_forward(s, x, n, &c);
        ck_assert_int_eq(nn_threads(), threads); /* OpenBLAS serial only inside */
        for (int i = 0; i < n * 6; i++)
            ck_assert_msg(fabsf(keep[i] - ys[i]) <= 1e-4f * (1 + fabsf(keep[i])),
                          "batch %d [%d]: %g vs %g", n, i, (double)keep[i], (double)ys[i]);
        free(keep);
        free(x);
    }
    /* split across teams of 1 to 3 threads (batch 1 by rows, batches by
     * samples): the same numbers as the calling thread alone */
    for (int nt = 1; nt <= 3; nt++) {
        nn_team *team = nn_team_new(nt, &e);
        ck_assert_ptr_nonnull(team);
        for (int b = 0; b < 4; b++) {
            int n = batches[b];
            float *x = random_vec((size_t)n * 29, 10);
            nn_layer *l = &s->layers[0];
            ck_assert_int_eq(nn_model_reserve(s, 64, &e), KD_OK);
            float *y1 = malloc((size_t)n * 45 * sizeof *y1), *y2 = malloc((size_t)n * 45 * 4);
            nn_ctx alone = {.train = 0}, split = {.train = 0, .team = team};
            l->ops->forward(l, x, y1, n, &alone);
            l->ops->forward(l, x, y2, n, &split);
            ck_assert_msg(memcmp(y1, y2, (size_t)n * 45 * sizeof *y1) == 0,
                          "batch %d on %d threads", n, nt);
            free(x), free(y1), free(y2);
        }
        nn_team_free(team);
    }
    compress_sparse_opts never = {.policy = COMPRESS_SPARSE_NEVER};
    nn_model *again = compress_to_sparse(s, &never, NULL, &e); /* keeps CSR layers */
    ck_assert_ptr_nonnull(again);
    ck_assert_uint_eq(nn_model_nonzero_params(again), nz2);
    nn_model_free(again);
    nn_model *c2 = nn_model_clone(s, &e); /* payloads are deep-copied */
    ck_assert_ptr_nonnull(c2);
    ck_assert_ptr_ne(c2->layers[0].data, s->layers[0].data);
    ck_assert_uint_eq(nn_model_nonzero_params(c2), nz2);
    nn_model_free(c2);
    nn_model_free(s);
    nn_model_free(m);
}
END_TEST

/* The conversion by measured speed: the model built follows the recorded
 * decisions and times (which layers win is timing, so not asserted);
 * NEVER converts nothing. */
START_TEST(test_measured_conversion)
{
    kd_err e = {0};
    nn_model *m = mlp(200, 300, 10, 4);
    compress_sparse_opts o = {.policy = COMPRESS_SPARSE_MEASURE, .reps = 3};
    compress_choice ch[3];
    nn_model *s = compress_to_sparse(m, &o, ch, &e);
    ck_assert_ptr_nonnull(s);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(ch[i].converted, compress_layer_csr(&s->layers[i]) != NULL);
    ck_assert(ch[0].dense_us[0] > 0 && ch[0].sparse_us[1] > 0);
    nn_model_free(s);
    compress_sparse_opts never = {.policy = COMPRESS_SPARSE_NEVER};
    s = compress_to_sparse(m, &never, ch, &e);
    ck_assert_ptr_eq(s->layers[0].ops, &nn_dense_ops);
    ck_assert_int_eq(ch[0].converted, 0);
    nn_model_free(s);
    nn_model_free(m);
}
END_TEST

Suite *suite_compress_csr(void)
{
    Suite *s = suite_create("compress_csr");
    TCase *t = tcase_create("csr");
    KDT_ISA_LOOP(t, test_kernels_match_reference);
    tcase_add_test(t, test_panels_match_reference);
    tcase_add_test(t, test_panels_parts_equal_whole);
    tcase_add_test(t, test_csr_structure);
    KDT_ISA_LOOP(t, test_layer_matches_dense);
    tcase_add_test(t, test_measured_conversion);
    suite_add_tcase(s, t);
    return s;
}
