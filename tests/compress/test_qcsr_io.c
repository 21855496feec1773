/* csr-int8 payloads (deflate-coded entries): saved and loaded layers of
 * ragged shapes (empty rows, an all-zero layer, gaps over 255 columns that
 * need fillers, a layer wider than 65535 columns) hold the same quant_csr and
 * compute the same; every truncation, a flipped byte in each stream, lying
 * raw lengths and stray bytes are refused with KD_EFORMAT; a realistic
 * 90%-pruned layer stores fewer bytes than 2 per entry; failed allocations
 * (zlib's too) fail cleanly. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <zlib.h>

#include "../../compress/kernels/kernels.h"
#include "qtest.h"

/* rows x cols with about density non-zeros: every fifth row empty, row 1 with
 * only its first and last column (a gap of cols - 1), row 3 full. */
static float *pruned(int rows, int cols, double density, uint64_t seed)
{
    nn_rng r = nn_rng_stream(seed, NN_STREAM_TEST);
    float *w = calloc((size_t)rows * cols, sizeof *w);
    ck_assert_ptr_nonnull(w);
    for (int i = 0; i < rows; i++) {
        float *row = w + (size_t)i * cols;
        if (i % 5 == 0)
            continue;
        if (i == 1) {
            row[0] = 0.5f;
            row[cols - 1] = -0.25f;
            continue;
        }
        for (int j = 0; j < cols; j++)
            if (i == 3 || nn_rng_uniform(&r) < density)
                row[j] = nn_rng_normal(&r);
    }
    return w;
}

/* A model of one csr-int8 layer (k inputs, m units) holding w; w NULL: all zero. */
static nn_model *qcsr_model(int k, int m, const float *w)
{
    const nn_layer_spec s[] = {{.kind = NN_DENSE, .units = m}};
    kd_err e = {0};
    nn_model *f = nn_model_new((nn_shape){k, 1, 1}, s, 1, NULL, &e);
    ck_assert_msg(f != NULL, "%s", e.msg);
    nn_layer *l = &f->layers[0];
    if (w)
        memcpy(l->w, w, (size_t)m * k * sizeof *w);
    else
        memset(l->w, 0, (size_t)m * k * sizeof *l->w);
    nn_rng r = nn_rng_stream(7, NN_STREAM_TEST);
    for (size_t j = 0; j < l->nb; j++)
        l->b[j] = 0.1f * nn_rng_normal(&r);
    compress_sparse_opts all = {.policy = COMPRESS_SPARSE_ALWAYS};
    nn_model *sp = compress_to_sparse(f, &all, NULL, &e);
    ck_assert_msg(sp != NULL, "%s", e.msg);
    nn_model *q = qt_quantize(sp, COMPRESS_Q_STATIC8, NULL);
    ck_assert_str_eq(nn_layer_format(&q->layers[0]), "csr-int8");
    nn_model_free(sp);
    nn_model_free(f);
    return q;
}

static kd_buf payload(const nn_model *q)
{
    kd_buf b = {0};
    q->layers[0].ops->save(&q->layers[0], &b);
    ck_assert(!b.failed);
    return b;
}

/* Loads p[0..n) into layer 0 of a clone of q: KD_OK or the error in *e. */
static int load_into(nn_model *t, const uint8_t *p, size_t n, kd_err *e)
{
    kd_rd rd = {.p = p, .len = n, .ok = 1};
    return t->layers[0].ops->load(&t->layers[0], &rd, e);
}

static void same_csr(const quant_csr *a, const quant_csr *b)
{
    ck_assert((a == NULL) == (b == NULL) || (a ? a->nnz : b->nnz) == 0);
    if (!a || !b)
        return;
    ck_assert_int_eq(a->m, b->m);
    ck_assert_int_eq(a->k, b->k);
    ck_assert_int_eq(a->nnz, b->nnz);
    ck_assert_mem_eq(a->row_ptr, b->row_ptr, ((size_t)a->m + 1) * sizeof *a->row_ptr);
    if (a->nnz) {
        ck_assert_mem_eq(a->delta, b->delta, (size_t)a->nnz);
        ck_assert_mem_eq(a->val, b->val, (size_t)a->nnz);
    }
    ck_assert_mem_eq(a->scale, b->scale, (size_t)a->m * sizeof *a->scale);
}

static void same_forward(nn_model *a, nn_model *b, int k, int m)
{
    for (int n = 1; n <= 17; n += 16) {
        data_set t = qt_data(n, k, 2, 50 + (uint64_t)n);
        nn_ctx c = {.train = 0};
        float *y = malloc(sizeof(float) * n * m);
        memcpy(y, nn_model_forward(a, t.xf, n, &c), sizeof(float) * n * m);
        ck_assert_mem_eq(y, nn_model_forward(b, t.xf, n, &c), sizeof(float) * n * m);
        free(y);
        data_set_free(&t);
    }
}

static const struct {
    int k, m;
    double density;
} shapes[] = {
    {1, 1, 1.0},     {7, 3, 0.5},      {300, 11, 0.01}, {1000, 37, 0.004},
    {784, 64, 0.16}, {65536, 2, 1e-4}, /* u32 row lengths */
};
#define NSHAPES (int)(sizeof shapes / sizeof shapes[0])

START_TEST(test_round_trip)
{
    for (int s = 0; s <= NSHAPES; s++) { /* the last: an all-zero layer */
        int k = s < NSHAPES ? shapes[s].k : 300, m = s < NSHAPES ? shapes[s].m : 9;
        float *w = s < NSHAPES ? pruned(m, k, shapes[s].density, 60 + (uint64_t)s) : NULL;
        nn_model *q = qcsr_model(k, m, w);
        const quant_csr *a = q->layers[0].data;
        if (k >= 300 && s < NSHAPES) { /* the wide gaps did need fillers */
            int fillers = 0;
            for (int32_t j = 0; j < a->nnz; j++)
                fillers += a->val[j] == 0 && a->delta[j] == 255;
            ck_assert_int_gt(fillers, 0);
        }
        kd_buf b = payload(q);
        kd_err e = {0};
        nn_model *t = nn_model_clone(q, &e); /* copy goes through save and load too */
        ck_assert_msg(t != NULL, "%s", e.msg);
        same_csr(a, t->layers[0].data);
        ck_assert_msg(load_into(t, b.p, b.len, &e) == KD_OK, "%dx%d: %s", m, k, e.msg);
        same_csr(a, t->layers[0].data);
        same_forward(q, t, k, m);
        /* a second save of the loaded layer gives the same bytes */
        kd_buf b2 = payload(t);
        ck_assert_uint_eq(b.len, b2.len);
        ck_assert_mem_eq(b.p, b2.p, b.len);
        /* whole files: same counts and outputs, inspect-style bytes add up */
        char dir[256], path[512];
        kdt_tmpdir(dir, sizeof dir);
        snprintf(path, sizeof path, "%s/q.kdm", dir);
        ck_assert_msg(nn_model_save(q, path, &e) == KD_OK, "%s", e.msg);
        nn_model *r = compress_model_load(path, &e);
        ck_assert_msg(r != NULL, "%s", e.msg);
        size_t nz1, nz2;
        ck_assert_uint_eq(nn_model_params(q, &nz1), nn_model_params(r, &nz2));
        ck_assert_uint_eq(nz1, nz2);
        ck_assert_int_ge(kd_file_size(path), (long long)b.len);
        same_csr(a, r->layers[0].data);
        same_forward(q, r, k, m);
        nn_model_free(r);
        kd_buf_free(&b2);
        kd_buf_free(&b);
        nn_model_free(t);
        nn_model_free(q);
        free(w);
    }
}
END_TEST

/* Stream headers follow the 12-byte header: u32 raw, u32 coded, bytes. */
static size_t stream_at(const kd_buf *b, int stream)
{
    size_t at = 12;
    for (int s = 0; s < stream; s++) {
        uint32_t coded;
        memcpy(&coded, b->p + at + 4, 4);
        at += 8 + coded;
    }
    return at;
}

static void refused(nn_model *t, const uint8_t *p, size_t n, const char *what, size_t at)
{
    kd_err e = {0};
    ck_assert_msg(load_into(t, p, n, &e) != KD_OK, "%s at %zu accepted", what, at);
    ck_assert_msg(e.code == KD_EFORMAT, "%s at %zu: code %d (%s)", what, at, e.code, e.msg);
    ck_assert(e.msg[0] != 0);
}

START_TEST(test_corruption_refused)
{
    const int k = 300, m = 11;
    float *w = pruned(m, k, 0.05, 70);
    nn_model *q = qcsr_model(k, m, w);
    kd_buf b = payload(q);
    kd_err e = {0};
    nn_model *t = nn_model_clone(q, &e);
    ck_assert_ptr_nonnull(t);
    uint8_t *c = malloc(b.len + 8);
    /* every truncation */
    for (size_t len = 0; len < b.len; len++)
        refused(t, b.p, len, "truncation", len);
    /* stray bytes after the payload */
    memcpy(c, b.p, b.len);
    memset(c + b.len, 0, 8);
    refused(t, c, b.len + 1, "a stray byte", b.len);
    /* each stream: every byte of its header and coded bytes flipped, refused
     * unless the flip only hit the padding bits after the last Huffman code */
    for (int s = 0; s < 4; s++) {
        size_t at = stream_at(&b, s);
        uint32_t coded;
        memcpy(&coded, b.p + at + 4, 4);
        for (size_t i = at; i < at + 8 + coded; i++) {
            memcpy(c, b.p, b.len);
            c[i] ^= 0x5a;
            if (load_into(t, c, b.len, &e) == KD_OK) /* only unused padding bits changed */
                same_csr(q->layers[0].data, t->layers[0].data);
            else
                ck_assert_msg(e.code == KD_EFORMAT, "flip at %zu: %s", i, e.msg);
        }
        /* a raw length one off either way, or huge */
        const int64_t lies[3] = {-1, 1, 0x7fffffff};
        for (int j = 0; j < 3; j++) {
            memcpy(c, b.p, b.len);
            uint32_t raw;
            memcpy(&raw, c + at, 4);
            raw = (uint32_t)((int64_t)raw + lies[j]);
            memcpy(c + at, &raw, 4);
            refused(t, c, b.len, "a lying raw length", at);
        }
    }
    /* lying header: nnz off by one, or larger than the layer can hold */
    const uint32_t nnz_lies[3] = {((const quant_csr *)q->layers[0].data)->nnz - 1u,
                                  ((const quant_csr *)q->layers[0].data)->nnz + 1u,
                                  (uint32_t)(m * k + 1)};
    for (int j = 0; j < 3; j++) {
        memcpy(c, b.p, b.len);
        memcpy(c + 8, &nnz_lies[j], 4);
        refused(t, c, b.len, "a lying entry count", 8);
    }
    /* the layer still holds what it had */
    same_csr(q->layers[0].data, t->layers[0].data);
    free(c);
    kd_buf_free(&b);
    nn_model_free(t);
    nn_model_free(q);
    free(w);
}
END_TEST

/* A stream re-coded with valid zlib but lying content: row lengths that do
 * not add up, a row longer than the layer is wide, a column past the end. */
static void recode(kd_buf *out, const kd_buf *b, int stream, const void *raw, size_t n)
{
    kd_buf_put(out, b->p, stream_at(b, stream));
    z_stream z = {0};
    ck_assert_int_eq(deflateInit(&z, 9), Z_OK);
    uLong cap = deflateBound(&z, (uLong)n);
    uint8_t *o = malloc(cap);
    z.next_in = (Bytef *)(uintptr_t)raw;
    z.avail_in = (uInt)n;
    z.next_out = o;
    z.avail_out = (uInt)cap;
    ck_assert_int_eq(deflate(&z, Z_FINISH), Z_STREAM_END);
    kd_buf_u32(out, (uint32_t)n);
    kd_buf_u32(out, (uint32_t)z.total_out);
    kd_buf_put(out, o, z.total_out);
    deflateEnd(&z);
    free(o);
    size_t next = stream_at(b, stream + 1);
    kd_buf_put(out, b->p + next, b->len - next);
}

START_TEST(test_lying_content_refused)
{
    const int k = 300, m = 11;
    float *w = pruned(m, k, 0.05, 71);
    nn_model *q = qcsr_model(k, m, w);
    const quant_csr *a = q->layers[0].data;
    kd_buf b = payload(q);
    kd_err e = {0};
    nn_model *t = nn_model_clone(q, &e);
    uint16_t rows[11];
    for (int r = 0; r < m; r++)
        rows[r] = (uint16_t)(a->row_ptr[r + 1] - a->row_ptr[r]);
    for (int lie = 0; lie < 4; lie++) {
        kd_buf c = {0};
        uint16_t rl[11];
        memcpy(rl, rows, sizeof rl);
        uint8_t *d = malloc((size_t)a->nnz);
        memcpy(d, a->delta, (size_t)a->nnz);
        if (lie == 0) { /* one entry moved between rows: the sum holds */
            rl[2]++;
            rl[3]--;
        }
        if (lie == 1) /* one entry more than nnz */
            rl[4]++;
        if (lie == 2) { /* a row longer than the layer is wide, others empty */
            memset(rl, 0, sizeof rl);
            rl[0] = (uint16_t)(k + 1);
        }
        if (lie <= 2) {
            recode(&c, &b, 0, rl, sizeof rl);
        } else { /* a column past the end in the full row 3 */
            d[a->row_ptr[3] + 1] = 255;
            recode(&c, &b, 1, d, (size_t)a->nnz);
        }
        if (lie == 2) { /* only consistent if nnz = k + 1 */
            uint32_t nnz = (uint32_t)(k + 1);
            memcpy(c.p + 8, &nnz, 4);
        }
        refused(t, c.p, c.len, "lying content", (size_t)lie);
        free(d);
        kd_buf_free(&c);
    }
    kd_buf_free(&b);
    nn_model_free(t);
    nn_model_free(q);
    free(w);
}
END_TEST

/* 784 x 300 at 10% density (as a 90%-pruned MLP layer): the stored payload is
 * well under the old layout's 2 bytes per entry plus offsets and scales. */
START_TEST(test_smaller_than_raw)
{
    const int k = 784, m = 300;
    nn_rng r = nn_rng_stream(72, NN_STREAM_TEST);
    float *w = calloc((size_t)m * k, sizeof *w);
    for (size_t i = 0; i < (size_t)m * k; i++) {
        float v = nn_rng_normal(&r);
        w[i] = fabsf(v) > 1.645f ? v : 0.0f; /* keep the 10% largest magnitudes */
    }
    nn_model *q = qcsr_model(k, m, w);
    const quant_csr *a = q->layers[0].data;
    kd_buf b = payload(q);
    size_t old = 12 + quant_csr_bytes(a);
    ck_assert_msg((double)b.len < 0.85 * (double)old, "%zu bytes stored, old layout %zu", b.len,
                  old);
    kd_buf_free(&b);
    nn_model_free(q);
    free(w);
}
END_TEST

/* Rows pruned in blocks of 8 (each block of rows keeps the same columns):
 * the column deltas repeat row after row, and the coder's LZ77 matches take
 * the file well under the same density pruned weight by weight. */
START_TEST(test_blocks_code_smaller)
{
    const int k = 784, m = 300;
    size_t len[2];
    for (int blocks = 0; blocks < 2; blocks++) {
        nn_rng r = nn_rng_stream(73, NN_STREAM_TEST);
        float *w = calloc((size_t)m * k, sizeof *w);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < k; j++) {
                float v = nn_rng_normal(&r);
                int lead = i / 8 * 8; /* blocks: the first row of i's block decides */
                int keep = blocks && i != lead ? w[(size_t)lead * k + j] != 0.0f
                                               : fabsf(v) > 1.645f;
                w[(size_t)i * k + j] = keep ? v : 0.0f;
            }
        nn_model *q = qcsr_model(k, m, w);
        kd_buf b = payload(q);
        len[blocks] = b.len;
        kd_buf_free(&b);
        nn_model_free(q);
        free(w);
    }
    ck_assert_msg((double)len[1] < 0.8 * (double)len[0], "blocks %zu bytes, weights %zu",
                  len[1], len[0]);
}
END_TEST

/* The Nth allocation failing in save (zlib's included) marks the buffer
 * failed; in load it is KD_ENOMEM and the layer keeps its entries; no leak. */
START_TEST(test_alloc_failures)
{
    const int k = 300, m = 11;
    float *w = pruned(m, k, 0.05, 73);
    nn_model *q = qcsr_model(k, m, w);
    kd_buf ref = payload(q);
    kd_err e = {0};
    nn_model *t = nn_model_clone(q, &e);
    ck_assert_ptr_nonnull(t);
    int saved = 0, loaded = 0;
    for (long n = 0; n < 400 && !(saved && loaded); n++) {
        kd_buf b = {0};
        kd_alloc_fail_after(n);
        q->layers[0].ops->save(&q->layers[0], &b);
        kd_alloc_fail_after(-1);
        if (!b.failed) {
            ck_assert_uint_eq(b.len, ref.len);
            ck_assert_mem_eq(b.p, ref.p, ref.len);
            saved = 1;
        }
        kd_buf_free(&b);
        kd_alloc_fail_after(n);
        int rc = load_into(t, ref.p, ref.len, &e);
        kd_alloc_fail_after(-1);
        if (rc == KD_OK)
            loaded = 1;
        else
            ck_assert_msg(e.code == KD_ENOMEM, "failure %ld: %s", n, e.msg);
        same_csr(q->layers[0].data, t->layers[0].data);
    }
    ck_assert(saved && loaded);
    kd_buf_free(&ref);
    nn_model_free(t);
    nn_model_free(q);
    free(w);
}
END_TEST

Suite *suite_compress_qcsr_io(void)
{
    Suite *s = suite_create("compress_qcsr_io");
    TCase *t = tcase_create("core");
    tcase_add_test(t, test_round_trip);
    tcase_add_test(t, test_corruption_refused);
    tcase_add_test(t, test_lying_content_refused);
    tcase_add_test(t, test_smaller_than_raw);
    tcase_add_test(t, test_blocks_code_smaller);
    tcase_add_test(t, test_alloc_failures);
    suite_add_tcase(s, t);
    return s;
}
