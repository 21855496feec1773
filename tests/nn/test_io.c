/* Model files: round trip (same outputs, same bytes on re-save), every
 * truncation and every single-byte flip refused, files that lie about their
 * sizes (with a correct checksum) refused, allocation failures during load.
 * ASan turns any out-of-bounds read in the loader into a failure. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../kdtest.h"

/* conv(2,k3,p1) bn relu pool(2) flatten dropout dense "out"(3) on (1,4,4) */
static const nn_layer_spec NET[] = {
    {.kind = NN_CONV2D, .filters = 2, .kernel = 3, .pad = 1, .init = NN_INIT_XAVIER},
    {.kind = NN_BATCHNORM, .eps = 1e-3f, .momentum = 0.2f},
    {.kind = NN_RELU},
    {.kind = NN_MAXPOOL2D, .kernel = 2},
    {.kind = NN_FLATTEN},
    {.kind = NN_DROPOUT, .rate = 0.25f},
    {.kind = NN_DENSE, .units = 3, .name = "out"},
};
#define NET_N ((int)(sizeof NET / sizeof *NET))
static const nn_shape NET_IN = {1, 4, 4};

/* byte offsets in the file (see nn/io.c) */
enum { OFF_VERSION = 4, OFF_C = 8, OFF_STD = 24, OFF_NLAYERS = 28, OFF_SPEC0 = 32 };

typedef struct {
    char dir[256], path[512];
    nn_model *m;
    uint8_t *bytes; /* the saved file */
    size_t n;
} fixture;

static void fixture_init(fixture *f)
{
    kdt_tmpdir(f->dir, sizeof f->dir);
    snprintf(f->path, sizeof f->path, "%s/m.kdbm", f->dir);
    kd_err e = {0};
    f->m = nn_model_new(NET_IN, NET, NET_N, NULL, &e);
    ck_assert_msg(f->m != NULL, "%s", e.msg);
    nn_model_init(f->m, 21);
    for (size_t i = 0; i < f->m->nbuffers; i++) /* running stats that are not the init */
        f->m->buffers[i] = 0.5f + 0.125f * (float)i;
    for (size_t i = 0; i < f->m->layers[6].nb; i++)
        f->m->layers[6].b[i] = 0.01f * (float)(i + 1);
    f->m->in_mean = 0.3f;
    f->m->in_std = 0.7f;
    ck_assert_int_eq(nn_model_save(f->m, f->path, &e), KD_OK);
    ck_assert_int_eq(kd_read_file(f->path, 1 << 20, &f->bytes, &f->n, &e), KD_OK);
}

static void fixture_free(fixture *f)
{
    nn_model_free(f->m);
    kd_free(f->bytes);
    unlink(f->path);
    rmdir(f->dir);
}

static void put_u32(uint8_t *p, size_t off, uint32_t v) { memcpy(p + off, &v, 4); }

static void fix_crc(uint8_t *p, size_t n) { put_u32(p, n - 4, kd_crc32(0, p, n - 4)); }

/* Writes p to the fixture's path and loads it; expects a refusal with code. */
static void expect_refused(fixture *f, const uint8_t *p, size_t n, int code, const char *what,
                           const char *needle)
{
    kdt_write(f->path, p, n);
    kd_err e = {0};
    nn_model *m = nn_model_load(f->path, &e);
    if (m)
        nn_model_free(m);
    ck_assert_msg(m == NULL, "%s: loaded", what);
    ck_assert_msg(e.code == code, "%s: code %d (%s)", what, e.code, e.msg);
    ck_assert_str_eq(e.file, f->path);
    if (needle)
        ck_assert_msg(strstr(e.msg, needle) != NULL, "%s: message '%s'", what, e.msg);
}

static void expect_same_model(const nn_model *a, const nn_model *b)
{
    ck_assert_int_eq(a->nlayers, b->nlayers);
    ck_assert(a->in.c == b->in.c && a->in.h == b->in.h && a->in.w == b->in.w);
    ck_assert(a->in_mean == b->in_mean && a->in_std == b->in_std);
    ck_assert_uint_eq(a->nparams, b->nparams);
    ck_assert_uint_eq(a->nbuffers, b->nbuffers);
    ck_assert(memcmp(a->params, b->params, a->nparams * sizeof(float)) == 0);
    ck_assert(memcmp(a->buffers, b->buffers, a->nbuffers * sizeof(float)) == 0);
    for (int i = 0; i < a->nlayers; i++) {
        const nn_layer_spec *s = &a->layers[i].spec, *t = &b->layers[i].spec;
        ck_assert_int_eq(s->kind, t->kind);
        ck_assert_str_eq(s->name, t->name);
        ck_assert(s->units == t->units && s->filters == t->filters && s->kernel == t->kernel);
        ck_assert(s->stride == t->stride && s->pad == t->pad && s->init == t->init);
        ck_assert(s->rate == t->rate && s->eps == t->eps && s->momentum == t->momentum);
    }
}

START_TEST(test_roundtrip)
{
    fixture f;
    fixture_init(&f);
    kd_err e = {0};
    nn_model *m = nn_model_load(f.path, &e);
    ck_assert_msg(m != NULL, "%s", e.msg);
    expect_same_model(f.m, m);
    ck_assert_str_eq(m->layers[6].spec.name, "out");
    ck_assert_str_eq(m->layers[0].spec.name, "conv1");
    /* same outputs, eval and train (same dropout stream) */
    float x[5 * 16];
    nn_rng r = nn_rng_stream(1, NN_STREAM_TEST);
    for (int i = 0; i < 5 * 16; i++)
        x[i] = nn_rng_normal(&r);
    nn_ctx c = {0};
    float ya[15];
    memcpy(ya, nn_model_forward(f.m, x, 5, &c), sizeof ya);
    ck_assert(memcmp(ya, nn_model_forward(m, x, 5, &c), sizeof ya) == 0);
    /* re-saving gives the same bytes */
    char p2[600];
    snprintf(p2, sizeof p2, "%s/again.kdbm", f.dir);
    ck_assert_int_eq(nn_model_save(m, p2, &e), KD_OK);
    uint8_t *b2;
    size_t n2;
    ck_assert_int_eq(kd_read_file(p2, 1 << 20, &b2, &n2, &e), KD_OK);
    ck_assert_uint_eq(n2, f.n);
    ck_assert(memcmp(b2, f.bytes, n2) == 0);
    ck_assert_int_eq(kd_file_size(p2), (long long)f.n);
    /* the header is what the format says */
    ck_assert(memcmp(f.bytes, NN_MODEL_MAGIC, 4) == 0);
    uint32_t v;
    memcpy(&v, f.bytes + OFF_VERSION, 4);
    ck_assert_uint_eq(v, NN_MODEL_VERSION);
    memcpy(&v, f.bytes + OFF_NLAYERS, 4);
    ck_assert_uint_eq(v, NET_N);
    kd_free(b2);
    unlink(p2);
    nn_model_free(m);
    fixture_free(&f);
}
END_TEST

START_TEST(test_every_truncation)
{
    fixture f;
    fixture_init(&f);
    for (size_t len = 0; len < f.n; len++) {
        char what[32];
        snprintf(what, sizeof what, "length %zu", len);
        expect_refused(&f, f.bytes, len, KD_EFORMAT, what, NULL);
    }
    /* the parser alone (no checksum to hide behind), each prefix in a heap
     * block of exactly its size */
    size_t body = f.n - 4;
    for (size_t len = 0; len <= body; len++) {
        uint8_t *p = malloc(len ? len : 1);
        memcpy(p, f.bytes, len);
        kd_rd r = {.p = p, .len = len, .ok = 1};
        kd_err e = {0};
        nn_model *m = nn_model_deserialize(&r, &e);
        if (len == body) {
            ck_assert_msg(m != NULL, "%s", e.msg);
            ck_assert_uint_eq(r.pos, body);
            nn_model_free(m);
        } else {
            ck_assert_msg(m == NULL, "prefix %zu parsed", len);
            ck_assert_msg(e.code == KD_EFORMAT, "prefix %zu: code %d", len, e.code);
        }
        free(p);
    }
    fixture_free(&f);
}
END_TEST

START_TEST(test_every_byte_flip)
{
    fixture f;
    fixture_init(&f);
    uint8_t *p = malloc(f.n);
    const uint8_t flips[] = {0x01, 0x80, 0xff};
    for (size_t i = 0; i < f.n; i++)
        for (int k = 0; k < 3; k++) {
            memcpy(p, f.bytes, f.n);
            p[i] ^= flips[k];
            char what[48];
            snprintf(what, sizeof what, "byte %zu ^ 0x%02x", i, flips[k]);
            expect_refused(&f, p, f.n, KD_EFORMAT, what, NULL);
        }
    memcpy(p, f.bytes, f.n);
    p[0] = 'X';
    expect_refused(&f, p, f.n, KD_EFORMAT, "magic", "bad magic");
    p[0] = 'K';
    p[f.n / 2] ^= 4;
    expect_refused(&f, p, f.n, KD_EFORMAT, "body", "checksum");
    free(p);
    fixture_free(&f);
}
END_TEST

/* A copy of the file with the u32 at off replaced and the checksum fixed. */
static void lie_u32(fixture *f, size_t off, uint32_t v, const char *what, const char *needle)
{
    uint8_t *p = malloc(f->n);
    memcpy(p, f->bytes, f->n);
    put_u32(p, off, v);
    fix_crc(p, f->n);
    expect_refused(f, p, f->n, KD_EFORMAT, what, needle);
    free(p);
}

/* The parser alone on p (without its checksum): the code of its refusal. */
static int deserialize_code(const uint8_t *p, size_t n)
{
    kd_rd r = {.p = p, .len = n - 4, .ok = 1};
    kd_err e = {0};
    nn_model *m = nn_model_deserialize(&r, &e);
    ck_assert_ptr_null(m);
    return e.code;
}

START_TEST(test_lying_header)
{
    fixture f;
    fixture_init(&f);
    lie_u32(&f, OFF_VERSION, NN_MODEL_VERSION + 1, "version", "version 3");
    lie_u32(&f, OFF_VERSION, 0, "version 0", "version 0");
    lie_u32(&f, OFF_VERSION, 1, "version 1 (v2 bytes read the old way)", NULL);
    lie_u32(&f, OFF_NLAYERS, NET_N + 1, "one layer more", NULL);
    lie_u32(&f, OFF_NLAYERS, NET_N - 1, "one layer fewer", NULL);
    lie_u32(&f, OFF_NLAYERS, 0, "no layers", "bad model header");
    lie_u32(&f, OFF_NLAYERS, 4096, "4096 layers", NULL);
    lie_u32(&f, OFF_NLAYERS, 0xffffffffu, "2^32-1 layers", "bad model header");
    lie_u32(&f, OFF_C, 0x7fffffffu, "huge input", "bad model header");
    lie_u32(&f, OFF_C, 2, "two input channels", NULL);
    float zero = 0, nan_ = NAN;
    uint32_t u;
    memcpy(&u, &zero, 4);
    lie_u32(&f, OFF_STD, u, "std 0", "normalisation");
    memcpy(&u, &nan_, 4);
    lie_u32(&f, OFF_STD, u, "std NaN", "normalisation");
    fixture_free(&f);
}
END_TEST

START_TEST(test_lying_layer_specs)
{
    fixture f;
    fixture_init(&f);
    /* layer 0: kind, name "conv1" (u32 5 + 5 bytes), units, filters, ... */
    const size_t kind0 = OFF_SPEC0, name0 = kind0 + 4, filters0 = name0 + 4 + 5 + 4;
    const size_t init0 = filters0 + 4 * 4 + 3 * 4;
    lie_u32(&f, kind0, 99, "kind 99", "unknown kind");
    lie_u32(&f, init0, 7, "initialiser 7", "unknown kind or initialiser");
    lie_u32(&f, name0, 1000, "name length 1000", NULL);
    lie_u32(&f, name0, 31, "name length 31", NULL);
    lie_u32(&f, name0, 0xffffffffu, "name length 2^32-1", NULL);
    lie_u32(&f, filters0, 3, "3 filters", "parameter count");
    lie_u32(&f, filters0, 1u << 20, "2^20 filters", "filters");
    uint8_t *q = malloc(f.n);
    memcpy(q, f.bytes, f.n);
    put_u32(q, filters0, 1u << 20); /* a setup error in a file is a format error */
    ck_assert_int_eq(deserialize_code(q, f.n), KD_EFORMAT);
    free(q);
    lie_u32(&f, filters0, 0x80000000u, "2^31 filters", "out-of-range");
    fixture_free(&f);
}
END_TEST

START_TEST(test_lying_tensor_sizes)
{
    fixture f;
    fixture_init(&f);
    /* tensor sizes: the u64 counts just before the parameters */
    size_t np_off = f.n - 4 - (f.m->nparams + f.m->nbuffers) * 4 - 16;
    uint64_t np;
    memcpy(&np, f.bytes + np_off, 8);
    ck_assert_uint_eq(np, f.m->nparams);
    lie_u32(&f, np_off, (uint32_t)np + 1, "nparams + 1", "parameter count");
    lie_u32(&f, np_off + 4, 1, "nparams + 2^32", "parameter count");
    lie_u32(&f, np_off + 8, (uint32_t)f.m->nbuffers - 1, "nbuffers - 1", "parameter count");
    /* two layers of one name: "relu1" (layer 2) renamed "conv1" */
    uint8_t *p = malloc(f.n + 8);
    memcpy(p, f.bytes, f.n);
    uint8_t *hit = memmem(p, f.n, "relu1", 5);
    ck_assert_ptr_nonnull(hit);
    memcpy(hit, "conv1", 5);
    fix_crc(p, f.n);
    expect_refused(&f, p, f.n, KD_EFORMAT, "duplicate name", "used twice");
    ck_assert_int_eq(deserialize_code(p, f.n), KD_EFORMAT);
    /* bytes after the model */
    memcpy(p, f.bytes, f.n - 4);
    memcpy(p + f.n - 4, "junk", 4);
    fix_crc(p, f.n + 4);
    expect_refused(&f, p, f.n + 4, KD_EFORMAT, "trailing bytes", "unexpected bytes");
    free(p);
    /* not a file at all, and a folder */
    kd_err e = {0};
    char none[600];
    snprintf(none, sizeof none, "%s/none.kdbm", f.dir);
    ck_assert_ptr_null(nn_model_load(none, &e));
    ck_assert_int_eq(e.code, KD_EIO);
    ck_assert_ptr_null(nn_model_load(f.dir, &e));
    ck_assert_int_ne(e.code, KD_OK);
    fixture_free(&f);
}
END_TEST

/* The file with the float at off replaced by v and the checksum fixed:
 * refused with a message naming the layer (a CRC protects bytes, not sense). */
static void lie_f32(fixture *f, size_t off, float v, const char *what, const char *needle)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    lie_u32(f, off, u, what, needle);
}

START_TEST(test_nonfinite_refused)
{
    fixture f;
    fixture_init(&f);
    const nn_model *m = f.m;
    size_t params = f.n - 4 - (m->nparams + m->nbuffers) * 4, bufs = params + m->nparams * 4;
    size_t w0 = params + (size_t)(m->layers[0].w - m->params) * 4;
    size_t b6 = params + (size_t)(m->layers[6].b - m->params) * 4;
    size_t bn = bufs + (size_t)(m->layers[1].buf - m->buffers) * 4;
    lie_f32(&f, w0, NAN, "NaN weight", "layer 0 (conv1): non-finite weight 0");
    lie_f32(&f, w0 + 4, INFINITY, "inf weight", "non-finite weight 1");
    lie_f32(&f, b6 + 8, -INFINITY, "-inf bias", "layer 6 (out): non-finite bias 2");
    lie_f32(&f, bn, NAN, "NaN running mean", "layer 1 (bn1): non-finite buffer 0");
    lie_f32(&f, bufs + (m->nbuffers - 1) * 4, INFINITY, "inf running var", "non-finite buffer");
    lie_f32(&f, OFF_STD, INFINITY, "std inf", "normalisation");
    lie_f32(&f, OFF_STD - 4, NAN, "mean NaN", "normalisation");
    lie_f32(&f, OFF_STD - 4, -INFINITY, "mean -inf", "normalisation");
    /* layer 1's eps: after kind, name "batchnorm1"... found by value */
    float eps = 1e-3f;
    uint8_t *hit = memmem(f.bytes, f.n, &eps, 4);
    ck_assert_ptr_nonnull(hit);
    lie_f32(&f, (size_t)(hit - f.bytes), NAN, "NaN eps", "non-finite rate, eps or momentum");
    fixture_free(&f);
}
END_TEST

/* A parameter-free model (relu) claiming an input of 2^60 values: nothing
 * to cross-check against, so the header bound must refuse it (batch * size
 * would overflow size_t when activations are reserved). */
START_TEST(test_huge_input_refused)
{
    char dir[256], path[512];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/relu.kdbm", dir);
    nn_layer_spec sp = {.kind = NN_RELU};
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){2, 2, 2}, &sp, 1, NULL, &e);
    ck_assert_int_eq(nn_model_save(m, path, &e), KD_OK);
    uint8_t *p;
    size_t n;
    ck_assert_int_eq(kd_read_file(path, 1 << 20, &p, &n, &e), KD_OK);
    for (int k = 0; k < 3; k++)
        put_u32(p, OFF_C + 4 * (size_t)k, 1u << 20);
    fix_crc(p, n);
    kdt_write(path, p, n);
    nn_model *bad = nn_model_load(path, &e);
    if (bad)
        ck_abort_msg("loaded an input of 2^60 values (nclasses %d)", bad->nclasses);
    ck_assert_int_eq(e.code, KD_EFORMAT);
    ck_assert_ptr_nonnull(strstr(e.msg, "bad model header"));
    /* the largest accepted input still loads: 64 x 1024 x 1024 = 2^26 */
    put_u32(p, OFF_C, 64);
    put_u32(p, OFF_C + 4, 1024);
    put_u32(p, OFF_C + 8, 1024);
    fix_crc(p, n);
    kdt_write(path, p, n);
    bad = nn_model_load(path, &e);
    ck_assert_msg(bad != NULL, "%s", e.msg);
    ck_assert_int_eq(bad->nclasses, 1 << 26);
    nn_model_free(bad);
    kd_free(p);
    nn_model_free(m);
    unlink(path);
    rmdir(dir);
}
END_TEST

START_TEST(test_load_alloc_failures)
{
    fixture f;
    fixture_init(&f);
    long k;
    for (k = 0; k < 200; k++) {
        kd_err e = {0};
        kd_alloc_fail_after(k);
        nn_model *m = nn_model_load(f.path, &e);
        kd_alloc_fail_after(-1);
        if (m) {
            expect_same_model(f.m, m);
            nn_model_free(m);
            break;
        }
        ck_assert_msg(e.code == KD_ENOMEM, "allocation %ld: code %d (%s)", k, e.code, e.msg);
    }
    ck_assert_int_gt(k, 2);
    ck_assert_int_lt(k, 200);
    /* and saving: the buffer's growth fails cleanly, the old file stays */
    for (k = 0; k < 3; k++) {
        kd_err e = {0};
        kd_alloc_fail_after(k);
        int rc = nn_model_save(f.m, f.path, &e);
        kd_alloc_fail_after(-1);
        if (rc == KD_OK)
            break;
        ck_assert_int_eq(rc, KD_ENOMEM);
    }
    uint8_t *b;
    size_t n;
    kd_err e = {0};
    ck_assert_int_eq(kd_read_file(f.path, 1 << 20, &b, &n, &e), KD_OK);
    ck_assert(n == f.n && memcmp(b, f.bytes, n) == 0);
    kd_free(b);
    fixture_free(&f);
}
END_TEST

Suite *suite_nn_io(void)
{
    Suite *s = suite_create("nn_io");
    TCase *t = tcase_create("io");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, test_roundtrip);
    tcase_add_test(t, test_every_truncation);
    tcase_add_test(t, test_every_byte_flip);
    tcase_add_test(t, test_lying_header);
    tcase_add_test(t, test_lying_layer_specs);
    tcase_add_test(t, test_lying_tensor_sizes);
    tcase_add_test(t, test_huge_input_refused);
    tcase_add_test(t, test_nonfinite_refused);
    tcase_add_test(t, test_load_alloc_failures);
    suite_add_tcase(s, t);
    return s;
}
