/* int8 GEMM kernels: every available kernel (portable, AVX2, AVX-512 VNNI)
 * against the reference on random and ragged shapes, exactly for int8 output
 * and within QGEMM_F32_TOL for float output; packing; dispatch; the int8 dense
 * layer against fake-quant float inference; dynamic int8 against float. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../compress/kernels/kernels.h"
#include "../kdtest.h"

/* Float outputs do the same float operations in the same order, so they agree
 * to rounding; the tolerance only covers a compiler reassociating them. */
#define QGEMM_F32_TOL 1e-6

typedef struct {
    int m, k, n;
} shape;

/* Ragged on purpose: k not a multiple of 4/32/64, m odd or not a multiple of 16,
 * batch 1, 3, 17 (and the tile sizes 2, 4, 8 plus one). */
static const shape shapes[] = {{1, 1, 1},    {5, 3, 1},     {17, 33, 3},  {31, 67, 17},
                               {16, 64, 4},  {33, 130, 5},  {48, 7, 2},   {129, 100, 9},
                               {10, 1200, 1}, {70, 257, 17}, {3, 1023, 3}, {160, 784, 8}};

static void fill_s8(nn_rng *r, int8_t *p, size_t n, int lo, int hi)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (int8_t)(lo + (int)nn_rng_below(r, (uint32_t)(hi - lo + 1)));
}

/* A random epilogue for m rows: multipliers across [2^-20, 4), both signs of
 * shift, random zero points, optionally fused ReLU. */
typedef struct {
    int32_t *bias, *mult, *shift;
    float *w_scale, *fbias;
    qgemm_epi ep;
} epi_data;

static void epi_make(nn_rng *r, int m, int f32, epi_data *d)
{
    d->bias = malloc(m * sizeof(int32_t));
    d->mult = malloc(m * sizeof(int32_t));
    d->shift = malloc(m * sizeof(int32_t));
    d->w_scale = malloc(m * sizeof(float));
    d->fbias = malloc(m * sizeof(float));
    for (int i = 0; i < m; i++) {
        double M = pow(2.0, -20.0 + 22.0 * nn_rng_uniform(r));
        ck_assert_int_eq(quant_multiplier(M, &d->mult[i], &d->shift[i], NULL), 0);
        d->bias[i] = (int32_t)nn_rng_below(r, 1u << 21) - (1 << 20);
        d->w_scale[i] = 0.001f + 0.01f * nn_rng_uniform(r);
        d->fbias[i] = nn_rng_normal(r);
    }
    int32_t yz = (int32_t)nn_rng_below(r, 256) - 128;
    d->ep = (qgemm_epi){.bias = nn_rng_below(r, 4) ? d->bias : NULL,
                        .x_zero = (int32_t)nn_rng_below(r, 256) - 128, .out_f32 = f32,
                        .mult = d->mult, .shift = d->shift, .y_zero = yz,
                        .lo = nn_rng_below(r, 2) ? yz : -128, .hi = 127,
                        .w_scale = d->w_scale, .x_scale = 0.02f,
                        .fbias = nn_rng_below(r, 2) ? d->fbias : NULL};
}

static void epi_free(epi_data *d)
{
    free(d->bias);
    free(d->mult);
    free(d->shift);
    free(d->w_scale);
    free(d->fbias);
}

/* Runs isa on one shape and compares with qgemm_ref. */
static void check_kernel(qgemm_isa isa, shape s, int f32, uint64_t seed)
{
    nn_rng r = nn_rng_stream(seed, NN_STREAM_TEST);
    int8_t *w = malloc((size_t)s.m * s.k), *x = malloc((size_t)s.n * s.k);
    fill_s8(&r, w, (size_t)s.m * s.k, -127, 127);
    fill_s8(&r, x, (size_t)s.n * s.k, -128, 127);
    epi_data d;
    epi_make(&r, s.m, f32, &d);
    size_t ny = (size_t)s.n * s.m, es = f32 ? sizeof(float) : 1;
    void *want = malloc(ny * es), *got = malloc(ny * es);
    qgemm_ref(w, s.m, s.k, x, s.n, &d.ep, want);
    kd_err e = {0};
    qgemm_packed *p = qgemm_pack(w, s.m, s.k, &e);
    ck_assert_msg(p != NULL, "%s", e.msg);
    memset(got, 0x5a, ny * es);
    qgemm_run(isa, p, x, s.n, &d.ep, got);
    for (size_t i = 0; i < ny; i++) {
        if (f32) {
            float a = ((float *)want)[i], b = ((float *)got)[i];
            ck_assert_msg(fabs(a - b) <= QGEMM_F32_TOL * (1.0 + fabs(a)),
                          "%s f32 %dx%dx%d at %zu: %g vs %g", qgemm_isa_name(isa), s.m, s.k,
                          s.n, i, a, b);
        } else {
            ck_assert_msg(((int8_t *)want)[i] == ((int8_t *)got)[i],
                          "%s s8 %dx%dx%d at %zu: %d vs %d", qgemm_isa_name(isa), s.m, s.k, s.n,
                          i, ((int8_t *)want)[i], ((int8_t *)got)[i]);
        }
    }
    qgemm_packed_free(p);
    epi_free(&d);
    free(w);
    free(x);
    free(want);
    free(got);
}

static void check_isa(qgemm_isa isa)
{
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        for (int f32 = 0; f32 < 2; f32++)
            check_kernel(isa, shapes[i], f32, 100 + i);
}

START_TEST(test_scalar_vs_ref) { check_isa(QGEMM_SCALAR); }
END_TEST

START_TEST(test_avx2_vs_ref)
{
    if (!qgemm_isa_supported(QGEMM_AVX2))
        KDT_SKIP("no AVX2 in use (host or KD_ISA)");
    check_isa(QGEMM_AVX2);
}
END_TEST

START_TEST(test_avxvnni_vs_ref)
{
    if (!qgemm_isa_supported(QGEMM_AVXVNNI))
        KDT_SKIP("no AVX-VNNI in use (host or KD_ISA)");
    check_isa(QGEMM_AVXVNNI);
}
END_TEST

START_TEST(test_vnni_vs_ref)
{
    if (!qgemm_isa_supported(QGEMM_VNNI512))
        KDT_SKIP("no AVX-512 VNNI in use (host or KD_ISA)");
    check_isa(QGEMM_VNNI512);
    kd_alloc_fail_after(3); /* pack succeeds, the kernel gets no scratch: the in-register
                             * offset path must give the same results */
    check_kernel(QGEMM_VNNI512, (shape){70, 257, 17}, 0, 5);
    kd_alloc_fail_after(-1);
}
END_TEST

/* Extreme operands: all -128 activations against all +-127 weights, the
 * largest accumulators, saturating requantization both ways. */
START_TEST(test_kernels_extremes)
{
    enum { M = 19, K = 261, N = 5 };
    static int8_t w[M * K], x[N * K];
    int32_t mult[M], shift[M];
    for (int i = 0; i < M * K; i++)
        w[i] = (int8_t)((i / K) % 2 ? 127 : -127);
    memset(x, 0x80, sizeof x);
    for (int r = 0; r < M; r++)
        quant_multiplier(r % 3 ? 1e-3 * r : 3.0 + r, &mult[r], &shift[r], NULL);
    qgemm_epi ep = {.x_zero = 127, .mult = mult, .shift = shift, .y_zero = -3, .lo = -128,
                    .hi = 127};
    int8_t want[N * M], got[N * M];
    qgemm_ref(w, M, K, x, N, &ep, want);
    qgemm_packed *p = qgemm_pack(w, M, K, NULL);
    for (int isa = 0; isa < QGEMM_NISA; isa++) {
        if (!qgemm_isa_supported((qgemm_isa)isa))
            continue;
        qgemm_run((qgemm_isa)isa, p, x, N, &ep, got);
        ck_assert_msg(memcmp(want, got, sizeof got) == 0, "%s differs on extremes",
                      qgemm_isa_name((qgemm_isa)isa));
    }
    qgemm_packed_free(p);
}
END_TEST

/* Rounding ties: power-of-two multipliers put every odd accumulator exactly
 * on a tie in SRDHM or RoundingDivideByPOT, for positive and negative values. */
START_TEST(test_kernels_ties)
{
    enum { M = 12, K = 2, N = 256 };
    static int8_t x[N * K], want[N * M], got[N * M];
    int8_t w[M * K];
    int32_t mult[M], shift[M];
    for (int i = 0; i < N; i++)
        x[i * K] = x[i * K + 1] = (int8_t)(i - 128);
    for (int r = 0; r < M; r++) {
        w[r * K] = (int8_t)(r % 2 ? -1 : 1);
        w[r * K + 1] = 0;
        quant_multiplier(ldexp(1.0, -(r / 2)), &mult[r], &shift[r], NULL);
    }
    qgemm_epi ep = {.mult = mult, .shift = shift, .lo = -128, .hi = 127};
    qgemm_ref(w, M, K, x, N, &ep, want);
    /* SRDHM's ties go toward +inf: -3 * 0.5 -> -1, 3 * 0.5 -> 2 */
    ck_assert_int_eq(want[(128 - 3) * M + 2], -1);
    ck_assert_int_eq(want[(128 + 3) * M + 2], 2);
    /* RoundingDivideByPOT's ties go away from zero: +-2 * 0.25 -> +-1 */
    ck_assert_int_eq(want[(128 - 2) * M + 4], -1);
    ck_assert_int_eq(want[(128 + 2) * M + 4], 1);
    qgemm_packed *p = qgemm_pack(w, M, K, NULL);
    for (int isa = 0; isa < QGEMM_NISA; isa++) {
        if (!qgemm_isa_supported((qgemm_isa)isa))
            continue;
        qgemm_run((qgemm_isa)isa, p, x, N, &ep, got);
        for (int i = 0; i < N * M; i++)
            ck_assert_msg(want[i] == got[i], "%s tie at x=%d row %d: %d vs %d",
                          qgemm_isa_name((qgemm_isa)isa), i / M - 128, i % M, want[i], got[i]);
    }
    qgemm_packed_free(p);
}
END_TEST

START_TEST(test_pack_layout_and_errors)
{
    int8_t w[7 * 9];
    for (int i = 0; i < 63; i++)
        w[i] = (int8_t)(i - 31);
    kd_err e = {0};
    qgemm_packed *p = qgemm_pack(w, 7, 9, &e);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(p->mp, 16);
    ck_assert_int_eq(p->kp, 12);
    ck_assert_int_eq((uintptr_t)p->w % 64, 0);
    for (int r = 0; r < 16; r++) {
        int32_t rs = 0;
        for (int c = 0; c < 12; c++) {
            int8_t want = r < 7 && c < 9 ? w[r * 9 + c] : 0;
            ck_assert_int_eq(qgemm_packed_at(p, r, c), want);
            rs += want;
        }
        ck_assert_int_eq(p->row_sum[r], rs);
    }
    qgemm_packed_free(p);
    qgemm_packed_free(NULL);
    ck_assert_ptr_null(qgemm_pack(w, 0, 9, &e));
    ck_assert_int_eq(e.code, KD_ECONFIG);
    ck_assert_ptr_null(qgemm_pack(w, 3, QGEMM_KMAX + 1, &e));
    for (long n = 0; n < 3; n++) { /* every allocation failure is clean */
        kd_alloc_fail_after(n);
        ck_assert_ptr_null(qgemm_pack(w, 7, 9, &e));
        ck_assert_int_eq(e.code, KD_ENOMEM);
    }
    kd_alloc_fail_after(-1);
}
END_TEST

START_TEST(test_dispatch)
{
    qgemm_isa best = qgemm_isa_best();
    ck_assert(qgemm_isa_supported(best));
    ck_assert(qgemm_isa_supported(QGEMM_SCALAR));
    ck_assert(!qgemm_isa_supported(QGEMM_NISA));
    for (int i = best + 1; i < QGEMM_NISA; i++)
        ck_assert(!qgemm_isa_supported((qgemm_isa)i));
    if (kernels_has_vnni512())
        ck_assert_int_eq(best, QGEMM_VNNI512);
    ck_assert_str_eq(qgemm_isa_name(QGEMM_AVX2), "avx2");
}
END_TEST

/* ---- the int8 dense layer ---------------------------------------------------------- */

static float *rand_f(nn_rng *r, size_t n, float sd)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = sd * nn_rng_normal(r);
    return p;
}

/* The float model of a converted layer on exactly representable int8 inputs:
 * y[i][r] = sum dequant(x) * w_scale[r] * wq + bias32 * s_in * w_scale[r]. */
static double fq_dot(const quant_dense *d, const int8_t *x, int i, int r)
{
    double s = 0.0;
    for (int c = 0; c < d->k; c++)
        s += (double)(x[(size_t)i * d->k + c] - d->in.zero) * d->in.scale *
             (d->w[(size_t)r * d->k + c] * (double)d->w_scale[r]);
    return s + (double)d->bias[r] * d->in.scale * d->w_scale[r];
}

/* Runs d on x and checks each int8 output is within one quantization step of
 * the fake-quant float result (fake-quant with the ReLU-clamped range). */
static void check_dense_vs_fakequant(const quant_dense *d, const int8_t *x, int n, int8_t *y)
{
    quant_dense_forward(d, qgemm_isa_best(), NULL, x, n, y);
    qgemm_epi ep = quant_dense_epi_s8(d);
    for (int i = 0; i < n; i++)
        for (int r = 0; r < d->m; r++) {
            float f = (float)fq_dot(d, x, i, r), fq;
            quant_fake_forward(&f, 1, 1, &d->out.scale, &d->out.zero, 0, ep.lo, ep.hi, &fq);
            float got = (float)(y[(size_t)i * d->m + r] - d->out.zero) * d->out.scale;
            ck_assert_msg(fabsf(got - fq) <= d->out.scale * 1.001f,
                          "output (%d,%d): int8 %g vs fake-quant %g, step %g", i, r, got, fq,
                          d->out.scale);
        }
}

/* A three-layer int8 stack (ragged sizes, ReLU, per-channel and per-tensor):
 * each layer's int8 output within one step of fake-quant float inference. */
START_TEST(test_dense_equals_fakequant)
{
    KDT_ISA_BEGIN(_i);
    nn_rng r = nn_rng_stream(7, NN_STREAM_TEST);
    const int sizes[] = {45, 67, 33, 10}, n = 17;
    quant_params in = quant_params_asym(-1.0f, 2.5f, QUANT_S8);
    int8_t *x = malloc((size_t)n * 67);
    fill_s8(&r, x, (size_t)n * sizes[0], -128, 127);
    for (int l = 0; l < 3; l++) {
        int k = sizes[l], m = sizes[l + 1];
        float *w = rand_f(&r, (size_t)m * k, 1.0f / sqrtf((float)k)), *b = rand_f(&r, m, 0.1f);
        quant_params out = quant_params_asym(l < 2 ? 0.0f : -4.0f, 3.0f, QUANT_S8);
        kd_err e = {0};
        quant_dense *d = quant_dense_new(w, b, m, k, l != 1, in, out, l < 2, &e);
        ck_assert_msg(d != NULL, "%s", e.msg);
        int8_t *y = malloc((size_t)n * m);
        check_dense_vs_fakequant(d, x, n, y);
        memcpy(x, y, (size_t)n * m);
        in = out;
        quant_dense_free(d);
        free(w);
        free(b);
        free(y);
    }
    free(x);
}
END_TEST

/* Float logits from the int8 accumulators equal the float model of the layer. */
START_TEST(test_dense_f32_output)
{
    nn_rng r = nn_rng_stream(8, NN_STREAM_TEST);
    enum { M = 10, K = 77, N = 3 };
    float *w = rand_f(&r, M * K, 0.2f), *b = rand_f(&r, M, 0.3f), y[N * M];
    quant_params in = quant_params_asym(0.0f, 1.0f, QUANT_S8), out = in;
    quant_dense *d = quant_dense_new(w, b, M, K, 1, in, out, 0, NULL);
    int8_t x[N * K];
    fill_s8(&r, x, sizeof x, -128, 127);
    for (int isa = 0; isa < QGEMM_NISA; isa++) {
        if (!qgemm_isa_supported((qgemm_isa)isa))
            continue;
        quant_dense_forward_f32(d, (qgemm_isa)isa, NULL, x, N, y);
        for (int i = 0; i < N; i++)
            for (int o = 0; o < M; o++) {
                double want = fq_dot(d, x, i, o);
                ck_assert_msg(fabs(y[i * M + o] - want) <= 1e-5 * (1.0 + fabs(want)),
                              "%s logit %d,%d: %g vs %g", qgemm_isa_name((qgemm_isa)isa), i, o,
                              y[i * M + o], want);
            }
    }
    quant_dense_free(d);
    free(w);
    free(b);
}
END_TEST

/* Dynamic int8 equals float inference on per-batch fake-quantized activations
 * and dequantized weights, up to float rounding. */
START_TEST(test_dynamic_int8)
{
    KDT_ISA_BEGIN(_i);
    nn_rng r = nn_rng_stream(9, NN_STREAM_TEST);
    enum { M = 21, K = 70, N = 17 };
    float *w = rand_f(&r, M * K, 0.2f), *b = rand_f(&r, M, 0.3f), *x = rand_f(&r, N * K, 1.5f);
    quant_params unused = quant_params_asym(-1.0f, 1.0f, QUANT_S8);
    quant_dense *d = quant_dense_new(w, b, M, K, 1, unused, unused, 1, NULL);
    quant_minmax mm;
    quant_minmax_init(&mm);
    quant_minmax_update(&mm, x, N * K);
    quant_params p = quant_params_asym(mm.lo, mm.hi, QUANT_S8);
    float xf[N * K], y[N * M];
    quant_fake_forward(x, 1, N * K, &p.scale, &p.zero, 0, p.qmin, p.qmax, xf);
    kd_err e = {0};
    for (int isa = 0; isa < QGEMM_NISA; isa++) {
        if (!qgemm_isa_supported((qgemm_isa)isa))
            continue;
        ck_assert_int_eq(quant_dynamic_forward(d, (qgemm_isa)isa, NULL, x, N, y, &e), 0);
        for (int i = 0; i < N; i++)
            for (int o = 0; o < M; o++) {
                double want = b[o];
                for (int c = 0; c < K; c++)
                    want += (double)xf[i * K + c] * d->w[o * K + c] * d->w_scale[o];
                want = want > 0.0 ? want : 0.0;
                ck_assert_msg(fabs(y[i * M + o] - want) <= 1e-4 * (1.0 + fabs(want)),
                              "dynamic %d,%d: %g vs %g", i, o, y[i * M + o], want);
            }
    }
    kd_alloc_fail_after(0);
    ck_assert_int_eq(quant_dynamic_forward(d, QGEMM_SCALAR, NULL, x, N, y, &e), KD_ENOMEM);
    kd_alloc_fail_after(-1);
    quant_dense_free(d);
    free(w);
    free(b);
    free(x);
}
END_TEST

/* Rebuilt from its stored int8 form, a layer computes exactly the same; data
 * outside the format is refused. */
START_TEST(test_dense_from_q)
{
    KDT_ISA_BEGIN(_i);
    nn_rng r = nn_rng_stream(10, NN_STREAM_TEST);
    enum { M = 19, K = 50, N = 9 };
    float *w = rand_f(&r, M * K, 0.3f), *b = rand_f(&r, M, 0.2f);
    quant_params in = quant_params_asym(-1.0f, 1.0f, QUANT_S8);
    quant_params out = quant_params_asym(0.0f, 2.0f, QUANT_S8);
    kd_err e = {0};
    quant_dense *a = quant_dense_new(w, b, M, K, 1, in, out, 1, &e);
    quant_dense *c = quant_dense_from_q(a->w, a->w_scale, a->bias, M, K, in, out, 1, &e);
    ck_assert_msg(c != NULL, "%s", e.msg);
    int8_t x[N * K], ya[N * M], yc[N * M];
    fill_s8(&r, x, sizeof x, -128, 127);
    quant_dense_forward(a, qgemm_isa_best(), NULL, x, N, ya);
    quant_dense_forward(c, qgemm_isa_best(), NULL, x, N, yc);
    ck_assert(memcmp(ya, yc, sizeof ya) == 0);
    for (int i = 0; i < M; i++)
        ck_assert_float_eq_tol(c->fbias[i], b[i], 0.5f * in.scale * a->w_scale[i] * 1.01f);
    quant_dense_free(c);
    a->w[5] = INT8_MIN;
    ck_assert_ptr_null(quant_dense_from_q(a->w, a->w_scale, a->bias, M, K, in, out, 1, &e));
    ck_assert_int_eq(e.code, KD_EFORMAT);
    a->w[5] = 0;
    a->w_scale[3] = 0.0f;
    ck_assert_ptr_null(quant_dense_from_q(a->w, a->w_scale, NULL, M, K, in, out, 1, &e));
    ck_assert_int_eq(e.code, KD_EFORMAT);
    quant_dense_free(a);
    free(w);
    free(b);
}
END_TEST

START_TEST(test_dense_errors)
{
    float w[6] = {1, 2, 3, 4, 5, 6};
    quant_params ok = quant_params_asym(-1.0f, 1.0f, QUANT_S8), bad = ok;
    kd_err e = {0};
    ck_assert_ptr_null(quant_dense_new(w, NULL, 0, 3, 1, ok, ok, 0, &e));
    ck_assert_int_eq(e.code, KD_ECONFIG);
    bad.scale = 0.0f;
    ck_assert_ptr_null(quant_dense_new(w, NULL, 2, 3, 1, bad, ok, 0, &e));
    bad = quant_params_asym(0.0f, 1.0f, QUANT_U8);
    ck_assert_ptr_null(quant_dense_new(w, NULL, 2, 3, 1, ok, bad, 0, &e));
    for (long n = 0; n < 12; n++) { /* 7 allocations for the layer, 3 to pack */
        kd_alloc_fail_after(n);
        quant_dense *d = quant_dense_new(w, NULL, 2, 3, 1, ok, ok, 0, &e);
        kd_alloc_fail_after(-1);
        if (n >= 10) {
            ck_assert_ptr_nonnull(d);
        } else {
            ck_assert_ptr_null(d);
            ck_assert_int_eq(e.code, KD_ENOMEM);
        }
        quant_dense_free(d);
    }
    quant_dense_free(NULL);
}
END_TEST

Suite *suite_compress_qgemm(void)
{
    Suite *s = suite_create("compress_qgemm");
    TCase *tc = tcase_create("qgemm");
    tcase_add_test(tc, test_scalar_vs_ref);
    tcase_add_test(tc, test_avx2_vs_ref);
    tcase_add_test(tc, test_avxvnni_vs_ref);
    tcase_add_test(tc, test_vnni_vs_ref);
    tcase_add_test(tc, test_kernels_extremes);
    tcase_add_test(tc, test_kernels_ties);
    tcase_add_test(tc, test_pack_layout_and_errors);
    tcase_add_test(tc, test_dispatch);
    KDT_ISA_LOOP(tc, test_dense_equals_fakequant);
    tcase_add_test(tc, test_dense_f32_output);
    KDT_ISA_LOOP(tc, test_dynamic_int8);
    KDT_ISA_LOOP(tc, test_dense_from_q);
    tcase_add_test(tc, test_dense_errors);
    suite_add_tcase(s, tc);
    return s;
}
