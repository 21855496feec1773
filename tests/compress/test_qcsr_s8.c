/* csr-int8-static (dense_csr_s8): the byte panels' int32 sums equal
 * quant_csr_s8_ref's, and those equal a plain dense sum, on ragged shapes
 * (1 x 1, fewer than 16 columns, empty rows, an all-zero matrix, a full
 * one, gaps over 255 columns, rows not a multiple of 8) and at the
 * extremes (x = -128, w = +-127: no saturation), for every part of a
 * split; the output stage gives the same bits at every kernel level; the
 * layer computes the same bits on every level, thread count and batch,
 * close to the fp32 model; payloads round-trip and every truncation, bad
 * input quantizer and stray byte is refused; quantize makes the kind only
 * when asked (sparse_static).  csr-int8-dyn (dense_csr_d8), the same with
 * the input's quantizer from each call's range: a call's bits are the
 * specification's computed by hand, on every level and thread count; its
 * payload is csr-int8's, byte for byte. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../compress/kernels/kernels.h"
#include "qtest.h"

typedef struct {
    int m, k;
    double density;
} sshape;
static const sshape sshapes[] = {
    {1, 1, 1.0},   {1, 1, 0.0},   {8, 16, 1.0},  {9, 15, 0.5},   {7, 31, 0.5},
    {17, 33, 0.2}, {33, 700, 0.01}, {50, 784, 0.1}, {120, 120, 0.1}, {31, 1000, 0.0},
    {64, 96, 1.0}, {203, 64, 0.3},
};
#define NS (int)(sizeof sshapes / sizeof *sshapes)

/* m x k with about `density` non-zeros, every third row empty. */
static float *s8_sparse(const sshape *s, uint64_t seed)
{
    nn_rng r = nn_rng_stream(seed, NN_STREAM_TEST);
    float *w = calloc((size_t)s->m * s->k, sizeof *w);
    ck_assert_ptr_nonnull(w);
    for (int i = 0; i < s->m; i++)
        for (int j = 0; j < s->k; j++)
            if (i % 3 != 1 && nn_rng_uniform(&r) < s->density)
                w[(size_t)i * s->k + j] = nn_rng_normal(&r);
    return w;
}

/* k activation codes + 128 (all of [0, 255] appear) and QUANT_CSR_S8_PAD more. */
static uint8_t *s8_x(int k, uint64_t seed)
{
    nn_rng r = nn_rng_stream(seed, NN_STREAM_TEST);
    uint8_t *x = malloc((size_t)k + QUANT_CSR_S8_PAD);
    for (int i = 0; i < k + QUANT_CSR_S8_PAD; i++)
        x[i] = (uint8_t)nn_rng_below(&r, 256);
    return x;
}

/* The plain dense sum of row r: sum_c q[r, c] * x[c]. */
static int32_t dense_sum(const quant_csr *q, int r, const uint8_t *x)
{
    int64_t s = 0;
    int col = 0;
    for (int32_t j = q->row_ptr[r]; j < q->row_ptr[r + 1]; j++) {
        col += q->delta[j];
        s += (int64_t)q->val[j] * x[col];
    }
    ck_assert(s >= INT32_MIN && s <= INT32_MAX);
    return (int32_t)s;
}

/* The reference against the plain sum; at avx2 and up, the panels (whole
 * and in 2..5 parts that cover every row once) against the reference. */
static void check_sums(const quant_csr *q, const uint8_t *x, const char *what)
{
    int32_t *want = malloc(((size_t)q->m + 8) * sizeof *want);
    int32_t *got = malloc(((size_t)q->m + 8) * sizeof *got);
    quant_csr_s8_ref(q, x, want, 0, q->m);
    for (int r = 0; r < q->m; r++)
        ck_assert_msg(want[r] == dense_sum(q, r, x), "%s: row %d", what, r);
    if (kernels_isa() >= KD_ISA_AVX2) {
        kd_err e = {0};
        quant_csr_s8_panels *p = quant_csr_s8_panels_new(q, &e);
        ck_assert_msg(p != NULL, "%s", e.msg);
        for (int np = 1; np <= 5; np++) {
            memset(got, 0x5a, ((size_t)q->m + 8) * sizeof *got);
            int next = 0;
            for (int part = 0; part < np; part++) {
                int r0, r1;
                quant_csr_s8_panels_rows(p, part, np, &r0, &r1);
                ck_assert_msg(r0 == next && r1 >= r0, "%s: part %d of %d starts at %d, not %d",
                              what, part, np, r0, next);
                next = r1;
                quant_csr_s8_panels_run(p, x, 0, 1, got, 0, part, np);
            }
            ck_assert_int_eq(next, q->m);
            for (int r = 0; r < q->m; r++)
                ck_assert_msg(got[r] == want[r], "%s, %d parts: row %d: %d, want %d", what, np,
                              r, got[r], want[r]);
            ck_assert_msg(got[q->m] == 0x5a5a5a5a, "%s: wrote past the last row", what);
        }
        /* 1..6 samples at once (passes of up to QUANT_CSR_S8_NX), each its own x */
        const int kx = q->k + QUANT_CSR_S8_PAD;
        uint8_t *xs = malloc((size_t)6 * kx);
        int32_t *as = malloc((size_t)6 * (q->m + 8) * sizeof *as);
        int32_t *w1 = malloc(((size_t)q->m + 8) * sizeof *w1);
        for (int i = 0; i < 6 * kx; i++)
            xs[i] = (uint8_t)(i / kx % 2 ? 255 - x[i % kx] : x[i % kx] + i / kx);
        for (int nx = 1; nx <= 6; nx++) {
            memset(as, 0x5a, (size_t)6 * (q->m + 8) * sizeof *as);
            quant_csr_s8_panels_run(p, xs, (size_t)kx, nx, as, (size_t)q->m + 8, 0, 1);
            for (int i = 0; i < nx; i++) {
                quant_csr_s8_ref(q, xs + (size_t)i * kx, w1, 0, q->m);
                ck_assert_msg(memcmp(w1, as + (size_t)i * (q->m + 8), (size_t)q->m * sizeof *w1) == 0,
                              "%s: sample %d of %d at once", what, i, nx);
                ck_assert_int_eq(as[(size_t)i * (q->m + 8) + q->m], 0x5a5a5a5a);
            }
        }
        free(xs);
        free(as);
        free(w1);
        ck_assert_uint_gt(quant_csr_s8_panels_bytes(p), 0);
        quant_csr_s8_panels_free(p);
    }
    free(want);
    free(got);
}

START_TEST(test_s8_sums)
{
    KDT_ISA_BEGIN(_i);
    for (int t = 0; t < NS; t++) {
        const sshape *s = &sshapes[t];
        kd_err e = {0};
        float *w = s8_sparse(s, 10 + (uint64_t)t);
        quant_csr *q = quant_csr_from_dense(w, s->m, s->k, &e);
        ck_assert_msg(q != NULL, "%s", e.msg);
        uint8_t *x = s8_x(s->k, 20 + (uint64_t)t);
        char what[64];
        snprintf(what, sizeof what, "%dx%d at %.2f", s->m, s->k, s->density);
        check_sums(q, x, what);
        quant_csr_free(q);
        free(x);
        free(w);
    }
}
END_TEST

/* The largest products: every weight +-127 (rows of one sign, and rows
 * alternating), every code 255 or 0, in a full 40 x 300 matrix; a pair of
 * products of one sign would sum to 64770 and saturate int16, which the
 * layout never lets happen. */
START_TEST(test_s8_extremes)
{
    KDT_ISA_BEGIN(_i);
    const int m = 40, k = 300;
    float *w = malloc((size_t)m * k * sizeof *w);
    for (int i = 0; i < m * k; i++) {
        int row = i / k, col = i % k;
        w[i] = row % 3 == 0 ? 1.0f : row % 3 == 1 ? -1.0f : col % 2 ? -1.0f : 1.0f;
        if (row == m - 1) /* values 127, then 65 and 64 in turn: 65 + 64 = 129 may not pair */
            w[i] = col == 0 ? 127.0f : col % 2 ? 65.0f : 64.0f;
    }
    kd_err e = {0};
    quant_csr *q = quant_csr_from_dense(w, m, k, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    uint8_t *x = malloc((size_t)k + QUANT_CSR_S8_PAD);
    int32_t *acc = malloc((size_t)m * sizeof *acc);
    for (int v = 0; v < 2; v++) {
        memset(x, v ? 0 : 255, (size_t)k + QUANT_CSR_S8_PAD);
        check_sums(q, x, v ? "extremes (codes 0)" : "extremes (codes 255)");
        quant_csr_s8_ref(q, x, acc, 0, m);
        ck_assert_int_eq(acc[0], v ? 0 : 127 * 255 * k);
        ck_assert_int_eq(acc[1], v ? 0 : -127 * 255 * k);
        ck_assert_int_eq(acc[2], 0);
        ck_assert_int_eq(acc[m - 1], v ? 0 : 255 * (127 + 150 * 65 + 149 * 64));
    }
    int8_t codes[4] = {-128, -1, 0, 127};
    uint8_t u[4];
    quant_csr_s8_codes(codes, 4, u);
    ck_assert(u[0] == 0 && u[1] == 127 && u[2] == 128 && u[3] == 255);
    free(acc);
    quant_csr_free(q);
    free(x);
    free(w);
}
END_TEST

START_TEST(test_s8_out_same_bits)
{
    KDT_ISA_BEGIN(_i);
    const int m = 45;
    nn_rng r = nn_rng_stream(31, NN_STREAM_TEST);
    int32_t acc[45], zr[45];
    float cs[45], b[45], want[45], got[45];
    for (int i = 0; i < m; i++) {
        acc[i] = (int32_t)nn_rng_below(&r, 1u << 30) - (1 << 29);
        zr[i] = (int32_t)nn_rng_below(&r, 1u << 20) - (1 << 19);
        cs[i] = 1e-4f * (1.0f + nn_rng_uniform(&r));
        b[i] = nn_rng_normal(&r);
    }
    acc[0] = INT32_MAX, zr[0] = -1; /* the difference wraps, as the exact sum would not */
    for (int relu = 0; relu < 2; relu++)
        for (int wb = 0; wb < 2; wb++)
            for (int r0 = 0; r0 < 3; r0++) {
                quant_csr_s8_epi ep = {.zr = zr, .cs = cs, .b = wb ? b : NULL, .relu = relu};
                memset(want, 0, sizeof want);
                memset(got, 0, sizeof got);
                quant_csr_s8_out_ref(&ep, acc, want, r0, m - r0);
                quant_csr_s8_out(&ep, acc, got, r0, m - r0);
                ck_assert_mem_eq(want, got, sizeof want);
                for (int i = r0; i < m - r0; i++) {
                    float v = (float)(int32_t)((uint32_t)acc[i] - (uint32_t)zr[i]) * cs[i] +
                              (wb ? b[i] : 0.0f);
                    ck_assert(want[i] == (relu && !(v > 0) ? 0.0f : v));
                }
            }
}
END_TEST

/* ---- the layer ---------------------------------------------------------- */

/* qt_mlp(in, h, h, out) with 90% of each layer's weights zeroed, stored
 * sparse, quantized static with calibration data (sparse_static as asked). */
static nn_model *s8_model_mode(int in, int h, int out, int sparse_static, compress_qmode mode,
                               const data_set *calib)
{
    nn_model *m = qt_mlp(in, h, h, out, 5);
    nn_rng r = nn_rng_stream(6, NN_STREAM_TEST);
    for (int i = 0; i < m->nlayers; i++)
        for (size_t j = 0; j < m->layers[i].nw; j++)
            if (nn_rng_uniform(&r) < 0.9f)
                m->layers[i].w[j] = 0.0f;
    kd_err e = {0};
    compress_sparse_opts all = {.policy = COMPRESS_SPARSE_ALWAYS};
    nn_model *sp = compress_to_sparse(m, &all, NULL, &e);
    ck_assert_msg(sp != NULL, "%s", e.msg);
    compress_quant_spec s = {.mode = mode, .per_channel = 1, .calib_batches = 1,
                             .sparse_static = sparse_static};
    nn_model *q = compress_quantize(sp, &s, calib, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    nn_model_free(sp);
    nn_model_free(m);
    return q;
}

static nn_model *s8_model(int in, int h, int out, int sparse_static, const data_set *calib)
{
    return s8_model_mode(in, h, out, sparse_static, COMPRESS_Q_STATIC8, calib);
}

/* The logits of n samples of d (malloc'd). */
static float *logits(nn_model *m, const data_set *d, int n)
{
    nn_ctx c = {.train = 0};
    const int out = (int)nn_shape_size(m->layers[m->nlayers - 1].out);
    const float *y = nn_model_forward(m, d->xf, n, &c);
    ck_assert_ptr_nonnull(y);
    float *r = malloc((size_t)n * out * sizeof *r);
    memcpy(r, y, (size_t)n * out * sizeof *r);
    return r;
}

/* The logits y of n samples of d are within 5% of the largest logit of
 * the same model's csr-int8 (fp32 activations): the activations' rounding
 * only. */
static void close_to_csr_int8(int in, int h, int out, const data_set *d, int n, const float *y)
{
    nn_model *w8 = s8_model(in, h, out, 0, d);
    ck_assert_str_eq(nn_layer_format(&w8->layers[0]), "csr-int8");
    float *yw = logits(w8, d, n);
    double err = 0.0, mag = 0.0;
    for (int i = 0; i < n * out; i++) {
        err = fmax(err, fabs((double)yw[i] - y[i]));
        mag = fmax(mag, fabs((double)yw[i]));
    }
    ck_assert_msg(err <= 0.05 * mag && mag > 0.0, "max error %g of %g", err, mag);
    free(yw);
    nn_model_free(w8);
}

START_TEST(test_s8_layer_same_bits)
{
    KDT_ISA_BEGIN(_i);
    const int in = 70, h = 90, out = 5, n = 9;
    data_set d = qt_data(128, in, out, 3);
    /* at the scalar level, one thread, one sample at a time: the reference */
    kd_isa was = kernels_isa_force(KD_ISA_SCALAR);
    nn_set_threads(1);
    nn_model *q = s8_model(in, h, out, 1, &d);
    for (int i = 0; i < q->nlayers; i++)
        if (q->layers[i].ops->dense_like)
            ck_assert_str_eq(nn_layer_format(&q->layers[i]), "csr-int8-static");
    float *want = malloc((size_t)n * out * sizeof *want);
    for (int i = 0; i < n; i++) {
        data_set one = d;
        one.xf = d.xf + (size_t)i * in;
        float *y = logits(q, &one, 1);
        memcpy(want + (size_t)i * out, y, out * sizeof *y);
        free(y);
    }
    kernels_isa_force(was);
    /* this level, 1 and 2 threads, batch n and batch 1 */
    for (int threads = 1; threads <= 2; threads++) {
        nn_set_threads(threads);
        kd_err e = {0};
        nn_model *t = nn_model_clone(q, &e);
        ck_assert_msg(t != NULL, "%s", e.msg);
        ck_assert_int_eq(nn_model_reserve(t, n, &e), KD_OK);
        float *y = logits(t, &d, n);
        ck_assert_msg(memcmp(y, want, (size_t)n * out * sizeof *y) == 0,
                      "%d threads, batch %d: not the scalar level's bits", threads, n);
        free(y);
        for (int i = 0; i < n; i++) {
            data_set one = d;
            one.xf = d.xf + (size_t)i * in;
            float *y1 = logits(t, &one, 1);
            ck_assert_msg(memcmp(y1, want + (size_t)i * out, out * sizeof *y1) == 0,
                          "%d threads: sample %d alone differs", threads, i);
            free(y1);
        }
        nn_model_free(t);
    }
    nn_set_threads(1);
    /* close to csr-int8 (fp32 activations): the activations' rounding only */
    close_to_csr_int8(in, h, out, &d, n, want);
    free(want);
    nn_model_free(q);
    data_set_free(&d);
}
END_TEST

/* A model of one csr-int8-static layer (k inputs, m units) and its payload. */
static nn_model *one_layer(int k, int m, kd_buf *b)
{
    const nn_layer_spec s[] = {{.kind = NN_DENSE, .units = m}};
    kd_err e = {0};
    nn_model *f = nn_model_new((nn_shape){k, 1, 1}, s, 1, NULL, &e);
    ck_assert_msg(f != NULL, "%s", e.msg);
    sshape sh = {m, k, 0.2};
    float *w = s8_sparse(&sh, 40);
    memcpy(f->layers[0].w, w, (size_t)m * k * sizeof *w);
    free(w);
    compress_sparse_opts all = {.policy = COMPRESS_SPARSE_ALWAYS};
    nn_model *sp = compress_to_sparse(f, &all, NULL, &e);
    ck_assert_msg(sp != NULL, "%s", e.msg);
    data_set d = qt_data(128, k, 2, 41);
    compress_quant_spec qs = {.mode = COMPRESS_Q_STATIC8, .per_channel = 1, .calib_batches = 1,
                              .sparse_static = 1};
    nn_model *q = compress_quantize(sp, &qs, &d, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    ck_assert_str_eq(nn_layer_format(&q->layers[0]), "csr-int8-static");
    *b = (kd_buf){0};
    q->layers[0].ops->save(&q->layers[0], b);
    ck_assert(!b->failed);
    data_set_free(&d);
    nn_model_free(sp);
    nn_model_free(f);
    return q;
}

static int load_into(nn_model *t, const uint8_t *p, size_t n, kd_err *e)
{
    kd_rd rd = {.p = p, .len = n, .ok = 1};
    memset(e, 0, sizeof *e);
    return t->layers[0].ops->load(&t->layers[0], &rd, e);
}

START_TEST(test_s8_payload)
{
    const int k = 300, m = 21;
    kd_buf b;
    nn_model *q = one_layer(k, m, &b);
    kd_err e = {0};
    nn_model *t = nn_model_clone(q, &e);
    ck_assert_msg(t != NULL, "%s", e.msg);
    ck_assert_msg(load_into(t, b.p, b.len, &e) == KD_OK, "%s", e.msg);
    data_set d = qt_data(3, k, 2, 42);
    float *ya = logits(q, &d, 3), *yb = logits(t, &d, 3);
    ck_assert_mem_eq(ya, yb, 3 * (size_t)m * sizeof *ya);
    free(ya);
    free(yb);
    /* every truncation */
    for (size_t n = 0; n < b.len; n++)
        ck_assert_msg(load_into(t, b.p, n, &e) == KD_EFORMAT, "%zu of %zu bytes: rc %d", n, b.len,
                      e.code);
    /* stray bytes */
    uint8_t *p = malloc(b.len + 1);
    memcpy(p, b.p, b.len);
    p[b.len] = 0;
    ck_assert_int_eq(load_into(t, p, b.len + 1, &e), KD_EFORMAT);
    ck_assert_ptr_nonnull(strstr(e.msg, "stray"));
    /* the input quantizer: scale NaN, 0, negative; zero point out of [-128, 127] */
    const float scales[] = {NAN, 0.0f, -1.0f, INFINITY};
    for (int i = 0; i < 4; i++) {
        memcpy(p, b.p, b.len);
        memcpy(p, &scales[i], 4);
        ck_assert_int_eq(load_into(t, p, b.len, &e), KD_EFORMAT);
        ck_assert_ptr_nonnull(strstr(e.msg, "input scale"));
    }
    const int32_t zeros[] = {128, -129, INT32_MIN};
    for (int i = 0; i < 3; i++) {
        memcpy(p, b.p, b.len);
        memcpy(p + 4, &zeros[i], 4);
        ck_assert_int_eq(load_into(t, p, b.len, &e), KD_EFORMAT);
        ck_assert_ptr_nonnull(strstr(e.msg, "zero point"));
    }
    /* the entries are csr-int8's, checked as there: a row length that lies */
    free(p);
    data_set_free(&d);
    kd_buf_free(&b);
    nn_model_free(t);
    nn_model_free(q);
}
END_TEST

/* compress_layer_qcsr: the int8 entries of csr-int8 and csr-int8-static
 * layers (the same entries for the same weights), NULL for other kinds. */
START_TEST(test_s8_layer_qcsr)
{
    data_set d = qt_data(64, 30, 4, 7);
    nn_model *q8 = s8_model(30, 20, 4, 0, &d), *s8 = s8_model(30, 20, 4, 1, &d);
    int seen = 0;
    for (int i = 0; i < s8->nlayers; i++) {
        const nn_layer *a = &q8->layers[i], *b = &s8->layers[i];
        const quant_csr *qa = compress_layer_qcsr(a), *qb = compress_layer_qcsr(b);
        if (a->spec.kind != NN_DENSE) {
            ck_assert_ptr_null(qa);
            ck_assert_ptr_null(qb);
            continue;
        }
        ck_assert_str_eq(nn_layer_format(a), "csr-int8");
        ck_assert_str_eq(nn_layer_format(b), "csr-int8-static");
        ck_assert_ptr_nonnull(qa);
        ck_assert_ptr_nonnull(qb);
        ck_assert_ptr_eq(qa, a->data);
        ck_assert_ptr_ne(qb, b->data); /* csr-int8-static's entries sit inside its data */
        ck_assert_uint_eq(quant_csr_bytes(qa), quant_csr_bytes(qb));
        ck_assert_ptr_null(compress_layer_csr(a));
        seen++;
    }
    ck_assert_int_eq(seen, 3);
    nn_model *fp = qt_mlp(30, 20, 20, 4, 5);
    ck_assert_ptr_null(compress_layer_qcsr(&fp->layers[0]));
    nn_model_free(fp);
    nn_model_free(s8);
    nn_model_free(q8);
    data_set_free(&d);
}
END_TEST

/* The kind through a file: saved and loaded by compress_model_load. */
START_TEST(test_s8_file)
{
    const int k = 40, m = 12;
    kd_buf b;
    nn_model *q = one_layer(k, m, &b);
    kd_buf_free(&b);
    char dir[512], path[600];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/s8.kdm", dir);
    kd_err e = {0};
    ck_assert_msg(nn_model_save(q, path, &e) == KD_OK, "%s", e.msg);
    nn_model *t = compress_model_load(path, &e);
    ck_assert_msg(t != NULL, "%s", e.msg);
    ck_assert_str_eq(nn_layer_format(&t->layers[0]), "csr-int8-static");
    data_set d = qt_data(4, k, 2, 43);
    float *ya = logits(q, &d, 4), *yb = logits(t, &d, 4);
    ck_assert_mem_eq(ya, yb, 4 * (size_t)m * sizeof *ya);
    size_t weights = 0, nonzero = 0;
    t->layers[0].ops->count(&t->layers[0], &weights, &nonzero);
    ck_assert_uint_eq(weights, (size_t)k * m);
    ck_assert(nonzero > 0 && nonzero < weights);
    free(ya);
    free(yb);
    data_set_free(&d);
    nn_model_free(t);
    nn_model_free(q);
}
END_TEST

/* ---- csr-int8-dyn -------------------------------------------------------- */

/* One layer's outputs for a call of n samples x, by hand from the
 * specification: the call's range, quant_params_asym, the codes, the
 * reference sums, then (acc - zr) * cs + b with zr and cs from that range. */
static void d8_by_hand(const nn_layer *l, const float *x, int n, float *y)
{
    const quant_csr *q = compress_layer_qcsr(l);
    ck_assert_ptr_nonnull(q);
    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < (size_t)n * q->k; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
    }
    quant_params in = quant_params_asym(lo, hi, QUANT_S8);
    int8_t *c = malloc((size_t)q->k + QUANT_CSR_S8_PAD);
    uint8_t *xu = (uint8_t *)c;
    int32_t *acc = malloc((size_t)q->m * sizeof *acc), *zr = malloc((size_t)q->m * sizeof *zr);
    float *cs = malloc((size_t)q->m * sizeof *cs);
    for (int r = 0; r < q->m; r++) {
        uint32_t sum = 0;
        for (int32_t j = q->row_ptr[r]; j < q->row_ptr[r + 1]; j++)
            sum += (uint32_t)(int32_t)q->val[j];
        zr[r] = (int32_t)(sum * (uint32_t)(in.zero + 128));
        cs[r] = in.scale * q->scale[r];
    }
    for (int i = 0; i < n; i++) {
        quant_quantize_s8_ref(x + (size_t)i * q->k, (size_t)q->k, in, c);
        quant_csr_s8_codes(c, (size_t)q->k, xu);
        quant_csr_s8_ref(q, xu, acc, 0, q->m);
        quant_csr_s8_epi ep = {.zr = zr, .cs = cs, .b = l->b, .relu = 0};
        quant_csr_s8_out_ref(&ep, acc, y + (size_t)i * q->m, 0, q->m);
    }
    free(c);
    free(acc);
    free(zr);
    free(cs);
}

START_TEST(test_d8_layer_same_bits)
{
    KDT_ISA_BEGIN(_i);
    /* the first layer reads more than the team's threshold at batch 1, so
     * on 2 threads its rows are split */
    const int in = 700, h = 512, out = 5, n = 9;
    data_set d = qt_data(128, in, out, 3);
    nn_set_threads(1);
    nn_model *q = s8_model_mode(in, h, out, 1, COMPRESS_Q_DYNAMIC8, &d);
    int layers = 0;
    for (int i = 0; i < q->nlayers; i++)
        if (q->layers[i].ops->dense_like) {
            ck_assert_str_eq(nn_layer_format(&q->layers[i]), "csr-int8-dyn");
            layers++;
        }
    ck_assert_int_eq(layers, 3);
    /* the first layer by hand: a call of n, and each sample alone (its own range) */
    const int m0 = q->layers[0].spec.units;
    float *hand = malloc((size_t)n * m0 * sizeof *hand), *hand1 = malloc((size_t)m0 * sizeof *hand1);
    float *got = malloc((size_t)n * m0 * sizeof *got);
    d8_by_hand(&q->layers[0], d.xf, n, hand);
    for (int threads = 1; threads <= 2; threads++) {
        nn_set_threads(threads);
        kd_err e = {0};
        nn_model *t = nn_model_clone(q, &e);
        ck_assert_msg(t != NULL, "%s", e.msg);
        ck_assert_int_eq(nn_model_reserve(t, n, &e), KD_OK);
        nn_ctx c = {.train = 0, .team = t->team};
        nn_layer *l0 = &t->layers[0];
        l0->ops->forward(l0, d.xf, got, n, &c);
        ck_assert_msg(memcmp(got, hand, (size_t)n * m0 * sizeof *got) == 0,
                      "%d threads, batch %d: not the specification's bits", threads, n);
        for (int i = 0; i < n; i++) {
            d8_by_hand(l0, d.xf + (size_t)i * in, 1, hand1);
            l0->ops->forward(l0, d.xf + (size_t)i * in, got, 1, &c);
            ck_assert_msg(memcmp(got, hand1, (size_t)m0 * sizeof *got) == 0,
                          "%d threads: sample %d alone: not the specification's bits", threads, i);
        }
        nn_model_free(t);
    }
    nn_set_threads(1);
    /* the whole model close to csr-int8 (fp32 activations) */
    float *yd = logits(q, &d, n);
    close_to_csr_int8(in, h, out, &d, n, yd);
    free(yd);
    free(hand);
    free(hand1);
    free(got);
    nn_model_free(q);
    data_set_free(&d);
}
END_TEST

/* The payload is csr-int8's byte for byte; it round-trips, through a file
 * too; every truncation and a stray byte are refused. */
START_TEST(test_d8_payload)
{
    const int in = 40, h = 24, out = 3;
    data_set d = qt_data(64, in, out, 8);
    nn_model *q = s8_model_mode(in, h, out, 1, COMPRESS_Q_DYNAMIC8, &d);
    nn_model *w8 = s8_model_mode(in, h, out, 0, COMPRESS_Q_DYNAMIC8, &d);
    ck_assert_str_eq(nn_layer_format(&w8->layers[0]), "csr-int8");
    kd_buf b = {0}, bw = {0};
    q->layers[0].ops->save(&q->layers[0], &b);
    w8->layers[0].ops->save(&w8->layers[0], &bw);
    ck_assert(!b.failed && !bw.failed);
    ck_assert_uint_eq(b.len, bw.len);
    ck_assert_mem_eq(b.p, bw.p, b.len);
    kd_err e = {0};
    nn_model *t = nn_model_clone(q, &e);
    ck_assert_msg(t != NULL, "%s", e.msg);
    ck_assert_msg(load_into(t, b.p, b.len, &e) == KD_OK, "%s", e.msg);
    float *ya = logits(q, &d, 4), *yb = logits(t, &d, 4);
    ck_assert_mem_eq(ya, yb, 4 * (size_t)out * sizeof *ya);
    free(yb);
    for (size_t n = 0; n < b.len; n++)
        ck_assert_msg(load_into(t, b.p, n, &e) == KD_EFORMAT, "%zu of %zu bytes: rc %d", n, b.len,
                      e.code);
    uint8_t *p = malloc(b.len + 1);
    memcpy(p, b.p, b.len);
    p[b.len] = 7;
    ck_assert_int_eq(load_into(t, p, b.len + 1, &e), KD_EFORMAT);
    ck_assert_ptr_nonnull(strstr(e.msg, "stray"));
    free(p);
    /* through a file */
    char dir[512], path[600];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/d8.kdm", dir);
    ck_assert_msg(nn_model_save(q, path, &e) == KD_OK, "%s", e.msg);
    nn_model *f = compress_model_load(path, &e);
    ck_assert_msg(f != NULL, "%s", e.msg);
    for (int i = 0; i < f->nlayers; i++)
        if (f->layers[i].ops->dense_like)
            ck_assert_str_eq(nn_layer_format(&f->layers[i]), "csr-int8-dyn");
    yb = logits(f, &d, 4);
    ck_assert_mem_eq(ya, yb, 4 * (size_t)out * sizeof *ya);
    free(ya);
    free(yb);
    nn_model_free(f);
    nn_model_free(t);
    kd_buf_free(&b);
    kd_buf_free(&bw);
    nn_model_free(w8);
    nn_model_free(q);
    data_set_free(&d);
}
END_TEST

Suite *suite_compress_qcsr_s8(void)
{
    Suite *s = suite_create("compress_qcsr_s8");
    TCase *tc = tcase_create("qcsr_s8");
    tcase_set_timeout(tc, 60);
    KDT_ISA_LOOP(tc, test_s8_sums);
    KDT_ISA_LOOP(tc, test_s8_extremes);
    KDT_ISA_LOOP(tc, test_s8_out_same_bits);
    KDT_ISA_LOOP(tc, test_s8_layer_same_bits);
    tcase_add_test(tc, test_s8_payload);
    tcase_add_test(tc, test_s8_file);
    tcase_add_test(tc, test_s8_layer_qcsr);
    KDT_ISA_LOOP(tc, test_d8_layer_same_bits);
    tcase_add_test(tc, test_d8_payload);
    suite_add_tcase(s, tc);
    return s;
}
