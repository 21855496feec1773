/* Compressed payloads with a NaN or infinity (and a valid checksum) are
 * refused at load: a CRC protects bytes, not meaning. */
#include <check.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "../../compress/compress.h"
#include "../kdtest.h"

/* 6 -> 8 -> 3, half pruned, all CSR */
static nn_model *tiny_sparse(void)
{
    const nn_layer_spec s[] = {{.kind = NN_DENSE, .units = 8}, {.kind = NN_RELU},
                               {.kind = NN_DENSE, .units = 3}};
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){6, 1, 1}, s, 3, NULL, &e);
    ck_assert_msg(m != NULL, "%s", e.msg);
    nn_model_init(m, 5);
    compress_prune_spec ps = {.sparsity = 0.5f};
    ck_assert_int_eq(compress_prune_magnitude(m, &ps, NULL, &e), KD_OK);
    compress_sparse_opts all = {.policy = COMPRESS_SPARSE_ALWAYS};
    nn_model *sp = compress_to_sparse(m, &all, NULL, &e);
    ck_assert_msg(sp != NULL, "%s", e.msg);
    nn_model_free(m);
    return sp;
}

START_TEST(test_csr_nonfinite_value)
{
    char dir[256], path[512];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/s.kdm", dir);
    nn_model *m = tiny_sparse();
    kd_err e = {0};
    ck_assert_int_eq(nn_model_save(m, path, &e), KD_OK);
    uint8_t *p;
    size_t n;
    ck_assert_int_eq(kd_read_file(path, 1 << 20, &p, &n, &e), KD_OK);
    /* layer 0's payload header: rows 8, cols 6, nnz, form; then the
     * structure's length and bytes, then the values */
    const compress_csr *a = compress_layer_csr(&m->layers[0]);
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_gt(a->nnz, 2);
    uint32_t hdr[3] = {8, 6, a->nnz}, nst;
    uint8_t *at = memmem(p, n, hdr, sizeof hdr);
    ck_assert_ptr_nonnull(at);
    memcpy(&nst, at + 16, 4);
    size_t vals = (size_t)(at - p) + 20 + nst;
    const float bad[] = {NAN, INFINITY, -INFINITY};
    for (int k = 0; k < 3; k++) {
        float keep;
        size_t off = vals + 4 * (size_t)(k % 2 ? a->nnz - 1 : 1);
        memcpy(&keep, p + off, 4);
        ck_assert_float_eq(keep, a->val[(off - vals) / 4]); /* the offset is a value's */
        memcpy(p + off, &bad[k], 4);
        uint32_t crc = kd_crc32(0, p, n - 4);
        memcpy(p + n - 4, &crc, 4);
        kdt_write(path, p, n);
        nn_model *r = compress_model_load(path, &e);
        nn_model_free(r);
        ck_assert_msg(r == NULL, "value %g accepted", (double)bad[k]);
        ck_assert_msg(strstr(e.msg, "layer 0") && strstr(e.msg, "non-finite value"), "%s",
                      e.msg);
        ck_assert_str_eq(e.file, path);
        memcpy(p + off, &keep, 4);
    }
    kd_free(p);
    nn_model_free(m);
    unlink(path);
    rmdir(dir);
}
END_TEST

Suite *suite_compress_payload_nonfinite(void)
{
    Suite *s = suite_create("compress_payload_nonfinite");
    TCase *t = tcase_create("nonfinite");
    tcase_add_test(t, test_csr_nonfinite_value);
    suite_add_tcase(s, t);
    return s;
}
