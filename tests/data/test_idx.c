/* IDX reader: valid raw and gzip pairs, subsets, and every way a file can lie
 * (empty, truncated, wrong magic, bad sizes, count mismatch, trailing bytes,
 * a broken gzip stream), each written here by the test itself. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "../../data/data.h"
#include "../kdtest.h"

#define N 50
#define H 3
#define W 4

/* How to write one IDX fixture. */
typedef struct {
    uint32_t magic; /* 0 = the usual one for the file's role */
    int nd;         /* header dimensions written (0 = from magic) */
    uint32_t d[3];  /* 0 = the default (N, H, W) */
    long data;      /* element bytes written; -1 = what the dims promise */
    int gz;
    size_t cut;     /* bytes removed from the end of the encoded file */
    int flip_crc;   /* gzip: corrupt the CRC in the trailer */
    int empty;      /* a zero-byte file */
    int extra;      /* bytes appended after the data (before gzip) */
    int n0;         /* write a sample count of 0 */
    int stored;     /* gzip level 0: the data bytes appear as they are */
    int flip_mid;   /* gzip: flip a byte in the middle of the file (a stored pixel) */
    int junk;       /* gzip: bytes of junk appended after the member */
    int member2;    /* gzip: a second, valid member (one byte 0) appended */
} fx_spec;

/* Deterministic noise, so gzip cannot shrink the data to nothing. */
static uint8_t fx_byte(size_t i, int labels)
{
    if (labels)
        return (uint8_t)(i % 7);
    uint32_t x = (uint32_t)i * 2654435761u;
    return (uint8_t)(x >> 24);
}

static void fx_put(const char *path, const uint8_t *b, size_t n, const fx_spec *s)
{
    if (!s->gz) {
        kdt_write(path, b, n - (s->cut < n ? s->cut : n));
        return;
    }
    gzFile g = gzopen(path, s->stored ? "wb0" : "wb");
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(gzwrite(g, b, (unsigned)n), (int)n);
    ck_assert_int_eq(gzclose(g), Z_OK);
    if (!s->cut && !s->flip_crc && !s->flip_mid && !s->junk && !s->member2)
        return;
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    uint8_t *z = malloc(1 << 20);
    size_t zn = fread(z, 1, 1 << 20, f);
    fclose(f);
    if (s->flip_crc)
        z[zn - 8] ^= 0x5a;
    if (s->flip_mid)
        z[zn / 2] ^= 0x01;
    for (int i = 0; i < s->junk; i++)
        z[zn++] = (uint8_t)(i * 37 + 1);
    if (s->member2) { /* gzip of the single byte 0, level 0 */
        static const uint8_t one[] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 1, 0, 0xfe,
                                      0xff, 0, 0x8d, 0xef, 0x02, 0xd2, 1, 0, 0, 0};
        memcpy(z + zn, one, sizeof one);
        zn += sizeof one;
    }
    kdt_write(path, z, zn - (s->cut < zn ? s->cut : zn));
    free(z);
}

/* Writes an IDX file for the role (labels or images) as s describes. */
static void fx_write(const char *path, int labels, const fx_spec *s)
{
    if (s->empty) {
        kdt_write(path, "", 0);
        return;
    }
    uint32_t magic = s->magic ? s->magic : labels ? 0x00000801u : 0x00000803u;
    int nd = s->nd ? s->nd : (int)(magic & 0xff);
    uint32_t d[3] = {s->d[0] ? s->d[0] : N, s->d[1] ? s->d[1] : H, s->d[2] ? s->d[2] : W};
    if (s->n0)
        d[0] = 0;
    size_t data = s->data >= 0 ? (size_t)s->data : labels ? d[0] : (size_t)d[0] * d[1] * d[2];
    size_t n = 4 + 4 * (size_t)nd + data + (size_t)s->extra;
    uint8_t *b = malloc(n);
    uint32_t words[4] = {magic, d[0], d[1], d[2]};
    for (int i = 0; i <= nd && i < 4; i++)
        for (int k = 0; k < 4; k++)
            b[4 * i + k] = (uint8_t)(words[i] >> (24 - 8 * k));
    for (size_t i = 0; i < data + (size_t)s->extra; i++)
        b[4 + 4 * nd + i] = fx_byte(i, labels);
    fx_put(path, b, n, s);
    free(b);
}

typedef struct {
    char dir[256], im[300], lb[300];
} fx_pair;

static void fx_pair_write(fx_pair *p, const fx_spec *im, const fx_spec *lb)
{
    kdt_tmpdir(p->dir, sizeof p->dir);
    snprintf(p->im, sizeof p->im, "%s/images", p->dir);
    snprintf(p->lb, sizeof p->lb, "%s/labels", p->dir);
    fx_write(p->im, 0, im);
    fx_write(p->lb, 1, lb);
}

static void check_valid(const data_set *d, int n)
{
    ck_assert_int_eq(d->n, n);
    ck_assert_int_eq(d->shape.c, 1);
    ck_assert_int_eq(d->shape.h, H);
    ck_assert_int_eq(d->shape.w, W);
    ck_assert_int_eq(d->nclasses, 7);
    ck_assert_ptr_nonnull(d->x8);
    ck_assert_ptr_null(d->xf);
    for (size_t i = 0; i < (size_t)n * H * W; i++)
        ck_assert_uint_eq(d->x8[i], fx_byte(i, 0));
    for (int i = 0; i < n; i++)
        ck_assert_uint_eq(d->y[i], fx_byte((size_t)i, 1));
}

/* ---- valid files ------------------------------------------------------- */

static const struct {
    int im_gz, lb_gz, max_n, want_n;
} ok_cases[] = {
    {0, 0, 0, N}, {1, 1, 0, N}, {1, 0, 0, N}, {0, 1, 0, N},
    {1, 1, 7, 7}, {0, 0, 7, 7}, {1, 1, N, N}, {0, 0, N + 100, N},
};

START_TEST(test_valid)
{
    fx_spec im = {.data = -1, .gz = ok_cases[_i].im_gz};
    fx_spec lb = {.data = -1, .gz = ok_cases[_i].lb_gz};
    fx_pair p;
    fx_pair_write(&p, &im, &lb);
    data_set d;
    kd_err e = {0};
    int rc = data_idx_load(p.im, p.lb, ok_cases[_i].max_n, &d, &e);
    ck_assert_msg(rc == KD_OK, "case %d: %s", _i, e.msg);
    check_valid(&d, ok_cases[_i].want_n);
    data_set_free(&d);
    ck_assert_ptr_null(d.x8);
}
END_TEST

/* ---- hostile files -------------------------------------------------------- */

static const struct {
    const char *name;
    fx_spec im, lb;
    int in_labels; /* the error names the labels file */
    int code;
    const char *msg;
} bad[] = {
    {"empty images", {.empty = 1}, {.data = -1}, 0, KD_EFORMAT, "empty file"},
    {"empty labels gz", {.data = -1}, {.empty = 1, .gz = 1}, 1, KD_EFORMAT, "empty file"},
    {"short header", {.data = 0, .nd = 1}, {.data = -1}, 0, KD_EFORMAT, "too short"},
    {"header only", {.data = 0}, {.data = -1}, 0, KD_EFORMAT, "truncated"},
    {"header only gz", {.data = 0, .gz = 1}, {.data = -1}, 0, KD_EFORMAT, "truncated"},
    {"data cut", {.data = N * H * W / 2}, {.data = -1}, 0, KD_EFORMAT, "truncated"},
    {"data cut gz", {.data = N * H * W - 1, .gz = 1}, {.data = -1}, 0, KD_EFORMAT,
     "found only 599"},
    {"gzip stream cut", {.data = -1, .gz = 1, .cut = 40}, {.data = -1}, 0, KD_EFORMAT,
     "truncated"},
    {"gzip crc", {.data = -1, .gz = 1, .flip_crc = 1}, {.data = -1}, 0, KD_EFORMAT,
     "corrupt gzip"},
    {"gzip trailer cut", {.data = -1, .gz = 1, .cut = 8}, {.data = -1}, 0, KD_EFORMAT,
     "truncated gzip stream"},
    {"gzip size cut", {.data = -1, .gz = 1, .cut = 4}, {.data = -1}, 0, KD_EFORMAT,
     "truncated gzip stream"},
    {"gzip one byte cut", {.data = -1, .gz = 1, .cut = 1}, {.data = -1}, 0, KD_EFORMAT,
     "truncated gzip stream"},
    {"labels trailer cut", {.data = -1}, {.data = -1, .gz = 1, .cut = 8}, 1, KD_EFORMAT,
     "truncated gzip stream"},
    {"stored pixel flipped", {.data = -1, .gz = 1, .stored = 1, .flip_mid = 1}, {.data = -1},
     0, KD_EFORMAT, "incorrect data check"},
    {"stored pixel flipped, trailer cut",
     {.data = -1, .gz = 1, .stored = 1, .flip_mid = 1, .cut = 8}, {.data = -1}, 0,
     KD_EFORMAT, "truncated gzip stream"},
    {"junk after gzip", {.data = -1, .gz = 1, .junk = 5}, {.data = -1}, 0, KD_EFORMAT,
     "after the end of the gzip stream"},
    {"one junk byte after gzip", {.data = -1, .gz = 1, .junk = 1}, {.data = -1}, 0,
     KD_EFORMAT, "after the end of the gzip stream"},
    {"second member", {.data = -1, .gz = 1, .member2 = 1}, {.data = -1}, 0, KD_EFORMAT,
     "single gzip member"},
    {"labels junk", {.data = -1}, {.data = -1, .gz = 1, .junk = 3}, 1, KD_EFORMAT,
     "after the end of the gzip stream"},
    {"labels cut", {.data = -1}, {.data = N - 1}, 1, KD_EFORMAT, "truncated"},
    {"labels cut gz", {.data = -1}, {.data = 3, .gz = 1}, 1, KD_EFORMAT, "found only 3"},
    {"trailing raw", {.data = -1, .extra = 1}, {.data = -1}, 0, KD_EFORMAT,
     "longer than header says"},
    {"trailing gz", {.data = -1, .extra = 9, .gz = 1}, {.data = -1}, 0, KD_EFORMAT,
     "longer than header says"},
    {"trailing labels gz", {.data = -1}, {.data = -1, .extra = 2, .gz = 1}, 1, KD_EFORMAT,
     "longer than header says"},
    {"wrong magic", {.magic = 0x00000804, .data = -1}, {.data = -1}, 0, KD_EFORMAT,
     "bad magic 0x00000804"},
    {"magic not idx", {.magic = 0x89504e47, .data = -1}, {.data = -1}, 0, KD_EFORMAT,
     "bad magic"},
    {"int type", {.magic = 0x00000c03, .data = -1}, {.data = -1}, 0, KD_EFORMAT,
     "not supported"},
    {"swapped", {.magic = 0x00000801, .data = N}, {.data = -1}, 0, KD_EFORMAT,
     "IDX labels file, expected images"},
    {"labels as images", {.data = -1}, {.magic = 0x00000803, .data = N * H * W}, 1,
     KD_EFORMAT, "IDX images file"},
    {"zero images", {.n0 = 1, .data = 0}, {.n0 = 1, .data = 0}, 0, KD_EFORMAT, "0 samples"},
    {"n above INT_MAX", {.d = {0x80000000u}, .data = 0}, {.data = -1}, 0, KD_EFORMAT,
     "too many"},
    {"w too big", {.d = {N, H, 4097}, .data = 0}, {.data = -1}, 0, KD_EFORMAT,
     "out of range"},
    {"h too big", {.d = {N, 5000, W}, .data = 0}, {.data = -1}, 0, KD_EFORMAT,
     "out of range"},
    {"count mismatch", {.data = -1}, {.d = {N - 1}, .data = -1}, 1, KD_EFORMAT,
     "has 49 labels but"},
    {"lying n huge", {.d = {0x7fffffff, 28, 28}, .data = 600}, {.d = {0x7fffffff}, .data = 50},
     0, KD_EFORMAT, "more than"},
    {"lying n raw", {.d = {0x7fffffff, 1, 1}, .data = 600}, {.d = {0x7fffffff}, .data = 50},
     0, KD_EFORMAT, "file has 600"},
    {"lying n gz", {.d = {0x7fffffff, 1, 1}, .data = 600, .gz = 1},
     {.d = {0x7fffffff}, .data = 50, .gz = 1}, 0, KD_EFORMAT, "found only 600"},
    {"lying labels gz", {.data = -1}, {.d = {0x7fffffff}, .data = 50, .gz = 1}, 1, KD_EFORMAT,
     "has 2147483647 labels but"},
};

START_TEST(test_bad)
{
    fx_pair p;
    fx_pair_write(&p, &bad[_i].im, &bad[_i].lb);
    data_set d;
    memset(&d, 0xab, sizeof d);
    kd_err e = {0};
    double t0 = kd_now();
    int rc = data_idx_load(p.im, p.lb, 0, &d, &e);
    if (kd_now() - t0 > 1.0) /* said, not asserted: no timed tests (a lying size is refused
                               before any read; Check's timeout bounds the rest) */
        fprintf(stderr, "note: %s took %.2f s\n", bad[_i].name, kd_now() - t0);
    ck_assert_msg(rc == bad[_i].code, "%s: rc %d (%s)", bad[_i].name, rc, e.msg);
    ck_assert_int_eq(e.code, rc);
    ck_assert_str_eq(e.file, bad[_i].in_labels ? p.lb : p.im);
    ck_assert_msg(strstr(e.msg, bad[_i].msg), "%s: message '%s' lacks '%s'", bad[_i].name,
                  e.msg, bad[_i].msg);
    ck_assert_int_eq(d.n, 0);
    ck_assert_ptr_null(d.x8);
    ck_assert_ptr_null(d.y);
}
END_TEST

START_TEST(test_missing)
{
    char dir[256], path[300];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/nope", dir);
    data_set d;
    kd_err e = {0};
    ck_assert_int_eq(data_idx_load(path, path, 0, &d, &e), KD_EIO);
    ck_assert_str_eq(e.file, path);
    ck_assert_ptr_nonnull(strstr(e.msg, "cannot open"));
}
END_TEST

/* Every allocation failing in turn gives KD_ENOMEM and leaks nothing (ASan). */
START_TEST(test_alloc_fail)
{
    fx_spec im = {.data = -1, .gz = 1}, lb = {.data = -1};
    fx_pair p;
    fx_pair_write(&p, &im, &lb);
    int rc = KD_ENOMEM;
    for (long k = 0; k < 100 && rc != KD_OK; k++) {
        data_set d;
        kd_err e = {0};
        kd_alloc_fail_after(k);
        rc = data_idx_load(p.im, p.lb, 5, &d, &e);
        kd_alloc_fail_after(-1);
        if (rc == KD_OK) {
            check_valid(&d, 5);
            data_set_free(&d);
        } else {
            ck_assert_int_eq(rc, KD_ENOMEM);
            ck_assert_ptr_null(d.x8);
        }
    }
    ck_assert_int_eq(rc, KD_OK);
}
END_TEST

/* The real Fashion-MNIST test set, when the Debian package is installed. */
START_TEST(test_fashion_t10k)
{
    const char *im = DATA_FASHION_DIR "/t10k-images-idx3-ubyte.gz";
    const char *lb = DATA_FASHION_DIR "/t10k-labels-idx1-ubyte.gz";
    if (access(im, R_OK) != 0 || access(lb, R_OK) != 0)
        KDT_SKIP("dataset-fashion-mnist is not installed");
    data_set d;
    kd_err e = {0};
    int rc = data_idx_load(im, lb, 0, &d, &e);
    ck_assert_msg(rc == KD_OK, "%s: %s", e.file, e.msg);
    ck_assert_int_eq(d.n, 10000);
    ck_assert_int_eq(d.shape.c, 1);
    ck_assert_int_eq(d.shape.h, 28);
    ck_assert_int_eq(d.shape.w, 28);
    ck_assert_int_eq(d.nclasses, 10);
    int count[10] = {0};
    for (int i = 0; i < d.n; i++)
        count[d.y[i]]++;
    for (int c = 0; c < 10; c++)
        ck_assert_int_eq(count[c], 1000); /* the test set is balanced */
    data_set_free(&d);
}
END_TEST

Suite *suite_data_idx(void)
{
    Suite *s = suite_create("data_idx");
    TCase *tc = tcase_create("core");
    tcase_add_loop_test(tc, test_valid, 0, (int)(sizeof ok_cases / sizeof *ok_cases));
    tcase_add_loop_test(tc, test_bad, 0, (int)(sizeof bad / sizeof *bad));
    tcase_add_test(tc, test_missing);
    tcase_add_test(tc, test_alloc_fail);
    tcase_add_test(tc, test_fashion_t10k);
    suite_add_tcase(s, tc);
    return s;
}
