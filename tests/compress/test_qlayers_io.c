/* Quantized model files: a round trip gives bit-identical outputs, the same
 * formats and counts; files shrink as the formats promise; every truncation
 * and every byte flip of a file is refused; payload bytes flipped past the
 * checksum are refused or give a model that runs; lying scales, zero points
 * and sizes are refused. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qtest.h"

static void save(const nn_model *m, const char *path)
{
    kd_err e = {0};
    ck_assert_msg(nn_model_save(m, path, &e) == KD_OK, "%s", e.msg);
}

static uint8_t *read_all(const char *path, size_t *n)
{
    uint8_t *p;
    kd_err e = {0};
    ck_assert_int_eq(kd_read_file(path, 1 << 26, &p, n, &e), KD_OK);
    return p;
}

static void same_outputs(nn_model *a, nn_model *b, int k)
{
    for (int n = 1; n <= 17; n += 16) {
        data_set t = qt_data(n, k, 3, 40 + (uint64_t)n);
        nn_ctx c = {.train = 0};
        int nc = a->nclasses;
        float *y = malloc(sizeof(float) * n * nc);
        memcpy(y, nn_model_forward(a, t.xf, n, &c), sizeof(float) * n * nc);
        ck_assert_mem_eq(y, nn_model_forward(b, t.xf, n, &c), sizeof(float) * n * nc);
        free(y);
        data_set_free(&t);
    }
}

/* The kinds of PTQ plus dense_fq and dense_lsq, each in a model of its own. */
static nn_model *variant(int v, nn_model *m, const data_set *d)
{
    kd_err e = {0};
    if (v == 3 || v == 10 || v == 11) { /* 50% pruned, CSR, then int8 (10, 11: the inputs
                                         * too, calibrated / per call) */
        nn_model *p = nn_model_clone(m, &e);
        compress_prune_spec ps = {.sparsity = 0.5f};
        ck_assert_int_eq(compress_prune_magnitude(p, &ps, NULL, &e), KD_OK);
        compress_sparse_opts all = {.policy = COMPRESS_SPARSE_ALWAYS};
        nn_model *sp = compress_to_sparse(p, &all, NULL, &e);
        compress_quant_spec s = {.mode = v == 11 ? COMPRESS_Q_DYNAMIC8 : COMPRESS_Q_STATIC8,
                                 .per_channel = 1, .calib_batches = 1,
                                 .sparse_static = v >= 10};
        nn_model *q = compress_quantize(sp, &s, v == 10 ? d : NULL, &e);
        ck_assert_msg(q != NULL, "%s", e.msg);
        nn_model_free(sp);
        nn_model_free(p);
        return q;
    }
    if (v == 5 || v == 9) { /* 50% pruned, then 16 shared values a layer (9: not coded) */
        nn_model *p = nn_model_clone(m, &e);
        compress_prune_spec ps = {.sparsity = 0.5f};
        ck_assert_int_eq(compress_prune_magnitude(p, &ps, NULL, &e), KD_OK);
        compress_cluster_spec cs = {.clusters = v == 9 ? 5 : 16, .init = CLUSTER_INIT_LINEAR,
                                    .uncoded = v == 9};
        nn_model *q = compress_cluster(p, &cs, &e);
        ck_assert_msg(q != NULL, "%s", e.msg);
        nn_model_free(p);
        return q;
    }
    if (v == 4) {
        compress_quant_spec s = {.mode = COMPRESS_Q_STATIC8, .per_channel = 1};
        nn_model *q = compress_qat_prepare(m, &s, &e);
        ck_assert_msg(q != NULL, "%s", e.msg);
        nn_ctx c = {.train = 1};
        ck_assert_ptr_nonnull(nn_model_forward(q, d->xf, d->n, &c)); /* sets the EMA ranges */
        return q;
    }
    if (v == 6 || v == 7) { /* 2 and 3 bits */
        compress_quant_spec s = {.mode = COMPRESS_Q_INT4, .wbits = v == 6 ? 2 : 3};
        nn_model *q = compress_quantize(m, &s, NULL, &e);
        ck_assert_msg(q != NULL, "%s", e.msg);
        return q;
    }
    if (v == 8) { /* LSQ at 2 bits */
        compress_quant_spec s = {.mode = COMPRESS_Q_INT4, .wbits = 2};
        nn_model *q = compress_lsq_prepare(m, &s, &e);
        ck_assert_msg(q != NULL, "%s", e.msg);
        return q;
    }
    const compress_qmode modes[3] = {COMPRESS_Q_STATIC8, COMPRESS_Q_DYNAMIC8, COMPRESS_Q_INT4};
    return qt_quantize(m, modes[v], d);
}

enum { NV = 12 };
static const char *const formats[NV] = {"int8",     "int8-dyn",       "int4",
                                        "csr-int8", "fp32-fakequant", "csr-shared+huff",
                                        "int2",     "int3",           "fp32-lsq",
                                        "csr-shared", "csr-int8-static", "csr-int8-dyn"};

START_TEST(test_round_trip)
{
    char dir[256], path[512], fpath[512];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/q.kdm", dir);
    snprintf(fpath, sizeof fpath, "%s/f.kdm", dir);
    nn_model *m = qt_mlp(100, 128, 64, 3, 21);
    m->in_mean = 0.5f;
    m->in_std = 2.0f;
    data_set d = qt_data(64, 100, 3, 22);
    save(m, fpath);
    /* file bytes vs fp32 (small layers: biases and int4 padding of k = 100 weigh) */
    const double most[NV] = {0.28, 0.28, 0.19, 0.30, 1.01, 0.15,
                             0.12, 0.16, 1.01, 0.20, 0.30, 0.30};
    for (int v = 0; v < NV; v++) {
        nn_model *q = variant(v, m, &d);
        ck_assert_str_eq(nn_layer_format(&q->layers[2]), formats[v]);
        save(q, path);
        kd_err e = {0};
        nn_model *r = compress_model_load(path, &e);
        ck_assert_msg(r != NULL, "%s: %s", formats[v], e.msg);
        ck_assert_str_eq(nn_layer_format(&r->layers[2]), formats[v]);
        size_t nz1, nz2;
        ck_assert_uint_eq(nn_model_params(q, &nz1), nn_model_params(r, &nz2));
        ck_assert_uint_eq(nz1, nz2);
        ck_assert_int_eq(compress_model_weight_bits(q), compress_model_weight_bits(r));
        ck_assert(r->in_mean == 0.5f && r->in_std == 2.0f);
        same_outputs(q, r, 100);
        /* a clone computes the same too */
        nn_model *c = nn_model_clone(q, &e);
        same_outputs(q, c, 100);
        double ratio = (double)kd_file_size(path) / (double)kd_file_size(fpath);
        ck_assert_msg(ratio <= most[v], "%s: %.3f of the fp32 file", formats[v], ratio);
        nn_model_free(c);
        nn_model_free(r);
        nn_model_free(q);
    }
    nn_model_free(m);
    data_set_free(&d);
}
END_TEST

/* Every truncation and every byte flip of a small file of each kind. */
START_TEST(test_truncation_and_corruption)
{
    char dir[256], path[512], bad[512];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/q.kdm", dir);
    snprintf(bad, sizeof bad, "%s/bad.kdm", dir);
    nn_model *m = qt_mlp(9, 12, 7, 3, 23);
    data_set d = qt_data(20, 9, 3, 24);
    for (int v = 0; v < NV; v++) {
        nn_model *q = variant(v, m, &d);
        save(q, path);
        size_t n;
        uint8_t *p = read_all(path, &n);
        kd_err e = {0};
        for (size_t len = 0; len < n; len++) {
            kdt_write(bad, p, len);
            ck_assert_msg(compress_model_load(bad, &e) == NULL, "%s: truncated to %zu accepted",
                          formats[v], len);
        }
        for (size_t i = 0; i < n; i++) {
            p[i] ^= 0x5a;
            kdt_write(bad, p, n);
            ck_assert_msg(compress_model_load(bad, &e) == NULL, "%s: byte %zu flipped accepted",
                          formats[v], i);
            p[i] ^= 0x5a;
        }
        kd_free(p);
        nn_model_free(q);
    }
    nn_model_free(m);
    data_set_free(&d);
}
END_TEST

/* Payload bytes flipped in memory (past the checksum): every result either
 * refused or a model whose forward runs (ASan would catch a stray read). */
START_TEST(test_payload_flips)
{
    nn_model *m = qt_mlp(9, 12, 7, 3, 25);
    data_set d = qt_data(20, 9, 3, 26);
    int nk;
    const nn_layer_ops *const *kinds = compress_kinds(&nk);
    for (int v = 0; v < NV; v++) {
        nn_model *q = variant(v, m, &d);
        kd_buf b = {0};
        nn_model_serialize(q, &b);
        ck_assert(!b.failed);
        size_t plen = 0; /* the payloads (u64 length + bytes each) end the body */
        for (int i = 0; i < q->nlayers; i++)
            if (q->layers[i].ops->save) {
                kd_buf t = {0};
                q->layers[i].ops->save(&q->layers[i], &t);
                plen += t.len + 8;
                kd_buf_free(&t);
            }
        size_t start = b.len - plen;
        int refused = 0;
        uint8_t *c = malloc(b.len);
        for (size_t i = start; i < b.len; i++)
            for (int bit = 0; bit < 8; bit += 3) {
                memcpy(c, b.p, b.len);
                c[i] ^= (uint8_t)(1u << bit);
                kd_rd rd = {.p = c, .len = b.len, .ok = 1};
                kd_err e = {0};
                nn_model *r = nn_model_deserialize_with(&rd, kinds, nk, &e);
                refused += r == NULL;
                if (r) {
                    nn_ctx cx = {.train = 0};
                    ck_assert_ptr_nonnull(nn_model_forward(r, d.xf, 3, &cx));
                    nn_model_free(r);
                }
            }
        ck_assert_msg(refused > 0, "%s: no flip refused", formats[v]);
        free(c);
        kd_buf_free(&b);
        nn_model_free(q);
    }
    nn_model_free(m);
    data_set_free(&d);
}
END_TEST

/* Lies with a valid layout: a scale of 0, NaN or -1, a zero point of 200,
 * and an int4 scale of inf, each refused by name. */
START_TEST(test_lying_values)
{
    nn_model *m = qt_mlp(9, 12, 7, 3, 27);
    data_set d = qt_data(20, 9, 3, 28);
    int nk;
    const nn_layer_ops *const *kinds = compress_kinds(&nk);
    nn_model *q = variant(0, m, &d);
    const nn_layer *l = &q->layers[0];
    kd_buf p = {0};
    l->ops->save(l, &p); /* rows, cols, flags, in scale (offset 12), in zero (16), ... */
    const size_t at[4] = {12, 16, 20, 28}; /* in scale, in zero, out scale, first w_scale */
    const float lies[4] = {0.0f, NAN, -1.0f, INFINITY};
    for (int f = 0; f < 4; f++)
        for (int j = 0; j < 4; j++) {
            kd_buf c = {0};
            kd_buf_put(&c, p.p, p.len);
            if (at[f] == 16) {
                int32_t z = 200;
                memcpy(c.p + at[f], &z, 4);
            } else {
                memcpy(c.p + at[f], &lies[j], 4);
            }
            nn_model *t = nn_model_clone(q, NULL);
            kd_rd rd = {.p = c.p, .len = c.len, .ok = 1};
            kd_err e = {0};
            ck_assert_int_ne(t->layers[0].ops->load(&t->layers[0], &rd, &e), KD_OK);
            ck_assert_int_eq(e.code, KD_EFORMAT);
            nn_model_free(t);
            kd_buf_free(&c);
        }
    kd_buf_free(&p);
    /* a wrong length in every kind's payload */
    for (int v = 0; v < NV; v++) {
        nn_model *k = variant(v, m, &d);
        nn_layer *kl = &k->layers[2];
        kd_buf c = {0};
        kl->ops->save(kl, &c);
        for (int delta = -1; delta <= 1; delta += 2) {
            kd_rd rd = {.p = c.p, .len = c.len + (size_t)delta, .ok = 1};
            kd_buf_u32(&c, 0); /* room for the longer read */
            kd_err e = {0};
            ck_assert_msg(kl->ops->load(kl, &rd, &e) != KD_OK, "%s: length %+d", formats[v],
                          delta);
        }
        kd_buf_free(&c);
        nn_model_free(k);
    }
    (void)kinds;
    nn_model_free(q);
    nn_model_free(m);
    data_set_free(&d);
}
END_TEST

Suite *suite_compress_qlayers_io(void)
{
    Suite *s = suite_create("compress_qlayers_io");
    TCase *t = tcase_create("core");
    tcase_add_test(t, test_round_trip);
    tcase_add_test(t, test_truncation_and_corruption);
    tcase_add_test(t, test_payload_flips);
    tcase_add_test(t, test_lying_values);
    suite_add_tcase(s, t);
    return s;
}
