/* Sparse model files: a round trip gives bit-identical outputs and the same
 * counts; the file is much smaller; nn's plain loader refuses the unknown
 * kind by name; every truncation and every single-byte corruption is
 * refused; payloads that lie (with a valid checksum) are refused too. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../compress/compress.h"
#include "../kdtest.h"

static nn_model *pruned_dense(float sparsity)
{
    const nn_layer_spec s[] = {{.kind = NN_DENSE, .units = 24}, {.kind = NN_RELU},
                               {.kind = NN_DENSE, .units = 300}, {.kind = NN_RELU},
                               {.kind = NN_DENSE, .units = 4}};
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){1, 4, 5}, s, 5, NULL, &e);
    ck_assert_msg(m != NULL, "%s", e.msg);
    nn_model_init(m, 11);
    m->in_mean = 0.25f;
    m->in_std = 2.0f;
    compress_prune_spec ps = {.sparsity = sparsity};
    ck_assert_int_eq(compress_prune_magnitude(m, &ps, NULL, &e), KD_OK);
    return m;
}

static nn_model *sparse_model(float sparsity)
{
    kd_err e = {0};
    nn_model *m = pruned_dense(sparsity);
    compress_sparse_opts all = {.policy = COMPRESS_SPARSE_ALWAYS};
    nn_model *sp = compress_to_sparse(m, &all, NULL, &e);
    ck_assert_msg(sp != NULL, "%s", e.msg);
    nn_model_free(m);
    return sp;
}

/* 6 -> 8 -> 40 -> 3, half pruned, all CSR: a ~2 KB file, so tests that
 * rewrite it once per byte stay fast */
static nn_model *small_sparse(void)
{
    const nn_layer_spec s[] = {{.kind = NN_DENSE, .units = 8}, {.kind = NN_RELU},
                               {.kind = NN_DENSE, .units = 40}, {.kind = NN_RELU},
                               {.kind = NN_DENSE, .units = 3}};
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){6, 1, 1}, s, 5, NULL, &e);
    ck_assert_msg(m != NULL, "%s", e.msg);
    nn_model_init(m, 12);
    compress_prune_spec ps = {.sparsity = 0.5f};
    ck_assert_int_eq(compress_prune_magnitude(m, &ps, NULL, &e), KD_OK);
    compress_sparse_opts all = {.policy = COMPRESS_SPARSE_ALWAYS};
    nn_model *sp = compress_to_sparse(m, &all, NULL, &e);
    ck_assert_msg(sp != NULL, "%s", e.msg);
    nn_model_free(m);
    return sp;
}

static void save(const nn_model *m, const char *path)
{
    kd_err e = {0};
    ck_assert_msg(nn_model_save(m, path, &e) == KD_OK, "%s", e.msg);
}

START_TEST(test_round_trip)
{
    char dir[256], path[512], dpath[512];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/s.kdm", dir);
    snprintf(dpath, sizeof dpath, "%s/d.kdm", dir);
    nn_model *m = sparse_model(0.9f);
    save(m, path);
    kd_err e = {0};
    nn_model *r = compress_model_load(path, &e);
    ck_assert_msg(r != NULL, "%s", e.msg);
    ck_assert_ptr_eq(r->layers[2].ops, &compress_dense_csr_ops);
    ck_assert_int_eq(compress_layer_csr(&r->layers[0])->idx_bytes, 1);
    ck_assert_int_eq(compress_layer_csr(&r->layers[2])->idx_bytes, 1);
    ck_assert_int_eq(compress_layer_csr(&r->layers[4])->idx_bytes, 2);
    size_t nz1, nz2;
    ck_assert_uint_eq(nn_model_params(m, &nz1), nn_model_params(r, &nz2));
    ck_assert_uint_eq(nz1, nz2);
    ck_assert(r->in_mean == 0.25f && r->in_std == 2.0f);
    for (int n = 1; n <= 7; n += 6) {
        float x[7 * 20];
        nn_rng g = nn_rng_stream(3, NN_STREAM_TEST);
        for (int i = 0; i < n * 20; i++)
            x[i] = nn_rng_normal(&g);
        nn_ctx c = {.train = 0};
        float y[7 * 4];
        memcpy(y, nn_model_forward(m, x, n, &c), (size_t)n * 4 * sizeof *y);
        ck_assert_mem_eq(y, nn_model_forward(r, x, n, &c), (size_t)n * 4 * sizeof *y);
    }
    /* the same model stored dense is much bigger */
    nn_model *d = pruned_dense(0.9f);
    save(d, dpath);
    ck_assert_msg(kd_file_size(path) < 0.25 * kd_file_size(dpath), "%lld vs %lld", kd_file_size(path), kd_file_size(dpath));
    nn_model_free(d);
    nn_model_free(r);
    nn_model_free(m);
}
END_TEST

START_TEST(test_plain_loader_refuses)
{
    char dir[256], path[512];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/s.kdm", dir);
    nn_model *m = sparse_model(0.5f);
    save(m, path);
    kd_err e = {0};
    ck_assert_ptr_null(nn_model_load(path, &e));
    ck_assert_ptr_nonnull(strstr(e.msg, "dense_csr"));
    ck_assert_str_eq(e.file, path);
    nn_model_free(m);
}
END_TEST

static uint8_t *read_all(const char *path, size_t *n)
{
    uint8_t *p;
    kd_err e = {0};
    ck_assert_int_eq(kd_read_file(path, 1 << 24, &p, n, &e), KD_OK);
    return p;
}

START_TEST(test_truncation_and_corruption)
{
    char dir[256], path[512], bad[512];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/s.kdm", dir);
    snprintf(bad, sizeof bad, "%s/bad.kdm", dir);
    nn_model *m = small_sparse();
    save(m, path);
    size_t n;
    uint8_t *p = read_all(path, &n);
    kd_err e = {0};
    for (size_t len = 0; len < n; len++) {
        kdt_write(bad, p, len);
        nn_model *r = compress_model_load(bad, &e);
        ck_assert_msg(r == NULL, "truncated to %zu of %zu bytes was accepted", len, n);
    }
    for (size_t i = 0; i < n; i++) {
        p[i] ^= 0x5a;
        kdt_write(bad, p, n);
        nn_model *r = compress_model_load(bad, &e);
        ck_assert_msg(r == NULL, "byte %zu corrupted was accepted", i);
        p[i] ^= 0x5a;
    }
    kd_free(p);
    nn_model_free(m);
}
END_TEST

/* Rewrites the CRC trailer so only the structural checks can refuse. */
static void write_with_crc(const char *path, uint8_t *p, size_t n)
{
    uint32_t crc = kd_crc32(0, p, n - 4);
    memcpy(p + n - 4, &crc, 4);
    kdt_write(path, p, n);
}

static size_t find_u32(const uint8_t *p, size_t from, size_t n, uint32_t v)
{
    for (size_t i = from; i + 4 <= n; i++)
        if (memcmp(p + i, &v, 4) == 0)
            return i;
    ck_abort_msg("value %u not found", v);
    return 0;
}

/* The payload of the layer whose header starts rows, cols, nnz (not just
 * any such u32): its offset. */
static size_t find_header(const uint8_t *p, size_t n, uint32_t rows, uint32_t cols, uint32_t nnz)
{
    const uint32_t hdr[3] = {rows, cols, nnz};
    for (size_t at = 0;; at++) {
        at = find_u32(p, at, n, rows);
        if (at + sizeof hdr <= n && memcmp(p + at, hdr, sizeof hdr) == 0)
            return at;
    }
}

/* The payload form word: gaps, rows in groups of h */
#define GAPS(h) (0x10000u | (uint32_t)(h))

START_TEST(test_lying_payloads)
{
    char dir[256], path[512], bad[512];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/s.kdm", dir);
    snprintf(bad, sizeof bad, "%s/bad.kdm", dir);
    nn_model *m = sparse_model(0.9f);
    save(m, path);
    size_t n;
    uint8_t *p = read_all(path, &n);
    /* the first payload: u64 length, then rows 24, cols 20, nnz, form (gaps,
     * rows one by one), structure bytes, structure, values */
    const compress_csr *a = compress_layer_csr(&m->layers[0]);
    size_t at = find_header(p, n, 24, 20, a->nnz);
    uint32_t form, nst;
    memcpy(&form, p + at + 12, 4);
    memcpy(&nst, p + at + 16, 4);
    ck_assert_uint_eq(form, GAPS(1));
    ck_assert_uint_ge(nst, 24 + a->nnz); /* a count a row, a gap byte a non-zero */
    const size_t fields[] = {at, at + 4, at + 8, at + 12, at + 12, at + 12, at + 12, at + 16,
                             at + 16, at + 16};
    const uint32_t lies[] = {25, 21, a->nnz + 1, GAPS(0), GAPS(65), 1, 2, nst + 1, nst - 1,
                             UINT32_MAX};
    kd_err e = {0};
    uint8_t *q = malloc(n);
    for (size_t f = 0; f < sizeof lies / sizeof lies[0]; f++) {
        memcpy(q, p, n);
        memcpy(q + fields[f], &lies[f], 4);
        write_with_crc(bad, q, n);
        ck_assert_msg(compress_model_load(bad, &e) == NULL, "lie %zu accepted", f);
    }
    /* the first row claiming more columns than there are, its one column
     * past the last, a count that runs on past 5 bytes */
    const size_t st = at + 20;
    const struct {
        size_t at;
        uint8_t byte;
        const char *says;
    } bytes[] = {{st, 21, "claims"}, {st + 1, 200, "past"}, {st, 0x80, ""}};
    for (int b = 0; b < 3; b++) {
        memcpy(q, p, n);
        q[bytes[b].at] = bytes[b].byte;
        if (b == 1)
            q[st] = 1;
        if (b == 2)
            memset(q + st, 0x80, 6);
        write_with_crc(bad, q, n);
        ck_assert_ptr_null(compress_model_load(bad, &e));
        ck_assert_msg(strstr(e.msg, "sparse structure") && strstr(e.msg, bytes[b].says), "%s",
                      e.msg);
    }
    /* every single byte of the payloads flipped, parsed from memory (past
     * the checksum): refused or, if still consistent (a value or an
     * ascending column), usable */
    int nk;
    const nn_layer_ops *const *kinds = compress_kinds(&nk);
    for (size_t i = at; i < n - 4; i++) {
        memcpy(q, p, n);
        q[i] ^= 0x21;
        kd_rd rd = {.p = q, .len = n - 4, .ok = 1};
        nn_model *r = nn_model_deserialize_with(&rd, kinds, nk, &e);
        if (r && rd.pos != rd.len) {
            nn_model_free(r);
            r = NULL;
        }
        if (r) {
            float x[20] = {0};
            nn_ctx c = {.train = 0};
            ck_assert_ptr_nonnull(nn_model_forward(r, x, 1, &c));
            nn_model_free(r);
        }
    }
    free(q);
    kd_free(p);
    nn_model_free(m);
}
END_TEST

/* The payload form of files written before 2026-11-30 (index bytes, then
 * rowptr, values, columns) still loads, and its lies are refused. */
START_TEST(test_index_form_still_loads)
{
    nn_model *m = sparse_model(0.9f);
    for (int li = 0; li <= 4; li += 2) { /* 1-byte (cols 20, 24) and 2-byte (300) indices */
        nn_layer *l = &m->layers[li];
        const compress_csr *a = compress_layer_csr(l);
        kd_buf b = {0};
        kd_buf_u32(&b, (uint32_t)a->rows);
        kd_buf_u32(&b, (uint32_t)a->cols);
        kd_buf_u32(&b, a->nnz);
        kd_buf_u32(&b, (uint32_t)a->idx_bytes);
        kd_buf_put(&b, a->rowptr, ((size_t)a->rows + 1) * 4);
        kd_buf_put(&b, a->val, (size_t)a->nnz * 4);
        kd_buf_put(&b, a->col, (size_t)a->nnz * (size_t)a->idx_bytes);
        compress_csr *was = compress_csr_copy(a, NULL);
        kd_err e = {0};
        kd_rd rd = {.p = b.p, .len = b.len, .ok = 1};
        ck_assert_msg(l->ops->load(l, &rd, &e) == KD_OK, "%s", e.msg);
        const compress_csr *got = compress_layer_csr(l);
        ck_assert_uint_eq(got->nnz, was->nnz);
        ck_assert_mem_eq(got->rowptr, was->rowptr, ((size_t)was->rows + 1) * 4);
        ck_assert_mem_eq(got->val, was->val, (size_t)was->nnz * 4);
        ck_assert_mem_eq(got->col, was->col, (size_t)was->nnz * (size_t)was->idx_bytes);
        /* one byte short, one byte over, index bytes that do not fit cols */
        const size_t lens[2] = {b.len - 1, b.len + 1};
        kd_buf_put(&b, "", 1);
        for (int k = 0; k < 2; k++) {
            kd_rd cut = {.p = b.p, .len = lens[k], .ok = 1};
            ck_assert_int_eq(l->ops->load(l, &cut, &e), KD_EFORMAT);
        }
        uint32_t wrong = was->idx_bytes == 1 ? 2 : 1; /* a was freed by the load */
        memcpy(b.p + 12, &wrong, 4);
        kd_rd w = {.p = b.p, .len = b.len - 1, .ok = 1};
        ck_assert_int_eq(l->ops->load(l, &w, &e), KD_EFORMAT);
        ck_assert_ptr_nonnull(strstr(e.msg, "does not match"));
        compress_csr_free(was);
        kd_buf_free(&b);
    }
    nn_model_free(m);
}
END_TEST

/* Rows pruned in blocks share their columns, so the file lists them once
 * a block (the last block of 300 rows has 4): a smaller file that loads to
 * the same matrices. */
START_TEST(test_blocks_stored_once)
{
    char dir[256], path[512], wpath[512];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/b.kdm", dir);
    snprintf(wpath, sizeof wpath, "%s/w.kdm", dir);
    nn_model *sp[2];
    for (int v = 0; v < 2; v++) {
        nn_model *d = pruned_dense(0.0f);
        kd_err e = {0};
        compress_prune_spec ps = {.sparsity = 0.9f, .block = v ? 8 : 1};
        ck_assert_int_eq(compress_prune_magnitude(d, &ps, NULL, &e), KD_OK);
        compress_sparse_opts all = {.policy = COMPRESS_SPARSE_ALWAYS};
        ck_assert_ptr_nonnull(sp[v] = compress_to_sparse(d, &all, NULL, &e));
        nn_model_free(d);
        save(sp[v], v ? path : wpath);
    }
    size_t n;
    uint8_t *p = read_all(path, &n);
    const compress_csr *a = compress_layer_csr(&sp[1]->layers[2]);
    size_t at = find_header(p, n, 300, 24, a->nnz);
    uint32_t form, nst;
    memcpy(&form, p + at + 12, 4);
    memcpy(&nst, p + at + 16, 4);
    ck_assert_uint_eq(form, GAPS(8));
    ck_assert_uint_le(nst, 38 + a->nnz / 8 + 8); /* a count and the gaps, once a block */
    for (int v = 0; v < 2; v++) /* what conversion counts is what the file holds */
        for (int li = 0; li <= 4; li += 2) {
            size_t fn;
            uint8_t *f = read_all(v ? path : wpath, &fn);
            const compress_csr *c = compress_layer_csr(&sp[v]->layers[li]);
            uint64_t len;
            size_t h = find_header(f, fn, (uint32_t)c->rows, (uint32_t)c->cols, c->nnz);
            memcpy(&len, f + h - 8, 8);
            ck_assert_uint_eq(len, compress_csr_stored_bytes(c));
            kd_free(f);
        }
    const compress_csr *w = compress_layer_csr(&sp[0]->layers[2]);
    ck_assert_msg(kd_file_size(path) + (long long)(w->nnz * 3 / 4) < kd_file_size(wpath),
                  "blocks %lld bytes, single weights %lld", kd_file_size(path),
                  kd_file_size(wpath));
    kd_err e = {0};
    nn_model *r = compress_model_load(path, &e);
    ck_assert_msg(r != NULL, "%s", e.msg);
    for (int li = 0; li <= 4; li += 2) {
        const compress_csr *x = compress_layer_csr(&sp[1]->layers[li]),
                           *y = compress_layer_csr(&r->layers[li]);
        ck_assert_uint_eq(x->nnz, y->nnz);
        ck_assert_mem_eq(x->rowptr, y->rowptr, ((size_t)x->rows + 1) * 4);
        ck_assert_mem_eq(x->val, y->val, (size_t)x->nnz * 4);
        ck_assert_mem_eq(x->col, y->col, (size_t)x->nnz * (size_t)x->idx_bytes);
    }
    /* a structure that says blocks of 8 where the rows differ cannot be
     * written: the groups are read as given, so a lie about h is refused by
     * the counts */
    uint32_t lie = GAPS(9);
    memcpy(p + at + 12, &lie, 4);
    write_with_crc(path, p, n);
    ck_assert_ptr_null(compress_model_load(path, &e));
    kd_free(p);
    nn_model_free(r);
    nn_model_free(sp[0]);
    nn_model_free(sp[1]);
}
END_TEST

/* A version-1 file (no ops names, no payloads), written field by field as
 * the first model-file format had it, still loads with nn's plain loader. */
START_TEST(test_version1_still_loads)
{
    nn_model *m = pruned_dense(0.5f);
    kd_buf b = {0};
    kd_buf_put(&b, NN_MODEL_MAGIC, 4);
    kd_buf_u32(&b, 1);
    kd_buf_u32(&b, 1);
    kd_buf_u32(&b, 4);
    kd_buf_u32(&b, 5);
    kd_buf_f32(&b, m->in_mean);
    kd_buf_f32(&b, m->in_std);
    kd_buf_u32(&b, (uint32_t)m->nlayers);
    for (int i = 0; i < m->nlayers; i++) {
        const nn_layer_spec *sp = &m->layers[i].spec;
        kd_buf_u32(&b, (uint32_t)sp->kind);
        kd_buf_str(&b, sp->name);
        const int v[5] = {sp->units, sp->filters, sp->kernel, sp->stride, sp->pad};
        for (int j = 0; j < 5; j++)
            kd_buf_u32(&b, (uint32_t)v[j]);
        kd_buf_f32(&b, sp->rate);
        kd_buf_f32(&b, sp->eps);
        kd_buf_f32(&b, sp->momentum);
        kd_buf_u32(&b, (uint32_t)sp->init);
    }
    kd_buf_u64(&b, m->nparams);
    kd_buf_u64(&b, m->nbuffers);
    kd_buf_put(&b, m->params, m->nparams * sizeof(float));
    kd_buf_u32(&b, kd_crc32(0, b.p, b.len));
    char dir[256], path[512];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/v1.kdm", dir);
    kdt_write(path, b.p, b.len);
    kd_err e = {0};
    nn_model *r = nn_model_load(path, &e);
    ck_assert_msg(r != NULL, "%s", e.msg);
    ck_assert_int_eq(r->nlayers, m->nlayers);
    ck_assert_mem_eq(r->params, m->params, m->nparams * sizeof(float));
    ck_assert_str_eq(r->layers[2].spec.name, m->layers[2].spec.name);
    kd_buf_free(&b);
    nn_model_free(r);
    nn_model_free(m);
}
END_TEST

/* The (n+1)th allocation fails, for every n until each call succeeds:
 * loading a sparse file, converting, pruning with a mask, structured
 * pruning.  Each failure returns cleanly (ASan checks that nothing leaks). */
START_TEST(test_alloc_failures)
{
    char dir[256], path[512];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/s.kdm", dir);
    nn_model *sp = sparse_model(0.8f), *d = pruned_dense(0.8f);
    save(sp, path);
    compress_sparse_opts all = {.policy = COMPRESS_SPARSE_ALWAYS};
    compress_prune_spec ps = {.scope = COMPRESS_GLOBAL, .sparsity = 0.5f};
    compress_prune_spec half = {.sparsity = 0.5f};
    for (int what = 0; what < 4; what++) {
        int ok = 0;
        long n;
        for (n = 0; !ok && n < 1000; n++) {
            kd_err e = {0};
            kd_alloc_fail_after(n);
            nn_model *r = NULL;
            compress_mask *k = NULL;
            if (what == 0)
                ok = (r = compress_model_load(path, &e)) != NULL;
            else if (what == 1)
                ok = (r = compress_to_sparse(d, &all, NULL, &e)) != NULL;
            else if (what == 2)
                ok = (k = compress_mask_new(d, &e)) &&
                     compress_prune_magnitude(d, &ps, k, &e) == KD_OK;
            else
                ok = (r = compress_prune_structured(d, &half, COMPRESS_NEURONS, COMPRESS_NORM_L1, &e)) != NULL;
            kd_alloc_fail_after(-1);
            ck_assert_msg(ok || e.code != KD_OK, "case %d, n=%ld: failed without an error", what,
                          n);
            nn_model_free(r);
            compress_mask_free(k);
        }
        ck_assert_msg(ok, "case %d never succeeded", what);
        ck_assert_int_gt(n, 1);
    }
    nn_model_free(sp);
    nn_model_free(d);
}
END_TEST

/* kdbench inspect on a sparse file shows each layer's format and sparsity
 * (the binary is $KD_BIN, set by make check-suite; skipped without it). */
START_TEST(test_inspect_shows_format)
{
    const char *bin = getenv("KD_BIN");
    if (!bin || !*bin)
        KDT_SKIP("KD_BIN is not set (make check-suite sets it)");
    char dir[256], path[512], cmd[2048], out[8192] = {0};
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/s.kdm", dir);
    nn_model *m = sparse_model(0.9f);
    save(m, path);
    snprintf(cmd, sizeof cmd, "%s inspect %s 2>&1", bin, path);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    ck_assert_int_eq(pclose(p), 0);
    ck_assert_msg(strstr(out, "dense_csr") && strstr(out, "csr-fp32"), "%s", out);
    ck_assert_msg(strstr(out, "0.900"), "no sparsity column: %s", out);
    nn_model_free(m);
}
END_TEST

Suite *suite_compress_io(void)
{
    Suite *s = suite_create("compress_io");
    TCase *t = tcase_create("io");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, test_round_trip);
    tcase_add_test(t, test_plain_loader_refuses);
    tcase_add_test(t, test_truncation_and_corruption);
    tcase_add_test(t, test_lying_payloads);
    tcase_add_test(t, test_index_form_still_loads);
    tcase_add_test(t, test_blocks_stored_once);
    tcase_add_test(t, test_version1_still_loads);
    tcase_add_test(t, test_alloc_failures);
    tcase_add_test(t, test_inspect_shows_format);
    suite_add_tcase(s, t);
    return s;
}
