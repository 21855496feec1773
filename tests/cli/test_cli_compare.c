/* kdbench compare through the binary: every compressed kind loads, sources
 * measured on different test sets are refused unless asked, an ambiguous
 * --baseline names its candidates, and the test-set flags agree with eval's. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../compress/compress.h"
#include "../../pipeline/pipeline.h"
#include "../kdtest.h"
#include "../reports/fixture.h"

#define NS 160 /* test samples: more than one calibration batch of 128 */

/* 160 samples of 1x4x8 with labels i % 3 as dir/test.csv and as the IDX
 * pair dir/test-images, dir/test-labels (the same pixels and labels) */
static void write_test_set(const char *dir)
{
    static char csv[NS * 200];
    static uint8_t img[16 + NS * 32], lab[8 + NS];
    size_t n = 0;
    const uint8_t ih[16] = {0, 0, 8, 3, 0, 0, 0, NS, 0, 0, 0, 4, 0, 0, 0, 8};
    const uint8_t lh[8] = {0, 0, 8, 1, 0, 0, 0, NS};
    memcpy(img, ih, 16);
    memcpy(lab, lh, 8);
    for (int i = 0; i < NS; i++) {
        lab[8 + i] = (uint8_t)(i % 3);
        n += (size_t)snprintf(csv + n, sizeof csv - n, "%d", i % 3);
        for (int j = 0; j < 32; j++) {
            uint8_t v = (uint8_t)((i * 7 + j * 13 + (i % 3) * 40) % 256);
            img[16 + i * 32 + j] = v;
            n += (size_t)snprintf(csv + n, sizeof csv - n, ",%d", v);
        }
        csv[n++] = '\n';
    }
    char path[600];
    snprintf(path, sizeof path, "%s/test.csv", dir);
    kdt_write(path, csv, n);
    snprintf(path, sizeof path, "%s/test-images", dir);
    kdt_write(path, img, sizeof img);
    snprintf(path, sizeof path, "%s/test-labels", dir);
    kdt_write(path, lab, sizeof lab);
}

static void save(nn_model *m, const char *dir, const char *name)
{
    char path[600];
    kd_err e = {0};
    ck_assert_ptr_nonnull(m);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    ck_assert_msg(nn_model_save(m, path, &e) == KD_OK, "%s", e.msg);
}

/* dir/fp32.kdm and the same model as int8 (dense_q8), int4 (dense_q4) and
 * pruned CSR int8 (dense_csr_q8): the kinds of a run's compressed/ folder */
static void write_models(const char *dir)
{
    nn_layer_spec sp[4] = {{.kind = NN_FLATTEN}, {.kind = NN_DENSE, .units = 32},
                           {.kind = NN_RELU}, {.kind = NN_DENSE, .units = 3}};
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){1, 4, 8}, sp, 4, NULL, &e);
    ck_assert_ptr_nonnull(m);
    nn_model_init(m, 7);
    save(m, dir, "fp32.kdm");
    char path[600];
    data_set calib;
    snprintf(path, sizeof path, "%s/test.csv", dir);
    ck_assert_int_eq(data_csv_load(path, m->in, 0, &calib, &e), KD_OK);
    compress_quant_spec q8 = {.mode = COMPRESS_Q_STATIC8, .per_channel = 1, .calib_batches = 1};
    nn_model *q = compress_quantize(m, &q8, &calib, &e);
    ck_assert_ptr_nonnull(q);
    ck_assert_str_eq(q->layers[1].ops->name, "dense_q8");
    save(q, dir, "int8.kdm");
    nn_model_free(q);
    compress_quant_spec q4 = {.mode = COMPRESS_Q_INT4, .per_channel = 1, .calib_batches = 1};
    q = compress_quantize(m, &q4, &calib, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    ck_assert_str_eq(q->layers[1].ops->name, "dense_q4");
    save(q, dir, "int4.kdm");
    nn_model_free(q);
    compress_sparse_opts all = {.policy = COMPRESS_SPARSE_ALWAYS};
    nn_model *c = compress_to_sparse(m, &all, NULL, &e);
    ck_assert_ptr_nonnull(c);
    q = compress_quantize(c, &q8, &calib, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    ck_assert_str_eq(q->layers[1].ops->name, "dense_csr_q8");
    save(q, dir, "csr_int8.kdm");
    nn_model_free(q);
    nn_model_free(c);
    nn_model_free(m);
    data_set_free(&calib);
}

START_TEST(every_kind)
{
    /* compare refused these: 'layer 1 has kind "dense_q8", which this reader does not know' */
    char dir[256], out[16384];
    kdt_tmpdir(dir, sizeof dir);
    write_test_set(dir);
    write_models(dir);
    int rc = kdt_kdbench(out, sizeof out,
                         "compare %s/fp32.kdm %s/int8.kdm %s/int4.kdm %s/csr_int8.kdm --csv-data "
                         "%s/test.csv --threads 1 --out %s/cmp --no-plots",
                         dir, dir, dir, dir, dir, dir);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
    const char *names[] = {"fp32", "int8", "int4", "csr_int8"};
    for (int i = 0; i < 4; i++)
        ck_assert_msg(strstr(out, names[i]) != NULL, "%s missing: %s", names[i], out);
    /* eval and inspect load them too */
    rc = kdt_kdbench(out, sizeof out, "eval %s/csr_int8.kdm --csv-data %s/test.csv --threads 1",
                     dir, dir);
    ck_assert_msg(rc == 0 && strstr(out, "samples    160"), "exit %d: %s", rc, out);
    rc = kdt_kdbench(out, sizeof out, "inspect %s/int4.kdm", dir);
    ck_assert_msg(rc == 0 && strstr(out, "int4"), "exit %d: %s", rc, out);
}
END_TEST

/* dir/NAME: a fixture run whose run.key records a test set of n samples */
static void write_run(const char *dir, const char *name, const char *dataset, int n, unsigned crc)
{
    char path[600], key[1024];
    kd_err e = {0};
    snprintf(path, sizeof path, "%s/%s", dir, name);
    ck_assert_int_eq(kd_mkdirs(path, &e), 0);
    rfx_write_run(path, 0);
    snprintf(path, sizeof path, "%s/%s/run.key", dir, name);
    snprintf(key, sizeof key,
             "name=\"%s\"\ndata.dataset=%s\ndata.test_images=\"/d/%s/t10k\"\n"
             "data.test_subset=0\ndata_loaded.test=%d samples, crc32 %08x\n",
             name, dataset, dataset, n, crc);
    kdt_write(path, key, strlen(key));
}

START_TEST(different_test_sets)
{
    char dir[256], out[16384];
    kdt_tmpdir(dir, sizeof dir);
    write_run(dir, "fashion", "idx", 10000, 0xd12e98e2u);
    write_run(dir, "mnist", "idx", 10000, 0x0badf00du);
    write_run(dir, "fashion2", "idx", 10000, 0xd12e98e2u);
    /* deltas across them were printed silently */
    int rc = kdt_kdbench(out, sizeof out, "compare %s/fashion %s/mnist --out %s/cmp --no-plots",
                         dir, dir, dir);
    ck_assert_msg(rc == 2, "exit %d: %s", rc, out);
    ck_assert_msg(strstr(out, "different test sets") && strstr(out, "crc32 0badf00d") &&
                      strstr(out, "crc32 d12e98e2") && strstr(out, "/d/idx/t10k") &&
                      strstr(out, "10000 samples") && strstr(out, "--allow-different-data"),
                  "%s", out);
    ck_assert_msg(!strstr(out, "baseline:"), "a table was printed: %s", out);
    rc = kdt_kdbench(out, sizeof out,
                     "compare %s/fashion %s/mnist --allow-different-data --out %s/cmp --no-plots",
                     dir, dir, dir);
    ck_assert_msg(rc == 0 && strstr(out, "warning") && strstr(out, "different test sets") &&
                      strstr(out, "baseline: fashion/teacher"),
                  "exit %d: %s", rc, out);
    rc = kdt_kdbench(out, sizeof out, "compare %s/fashion %s/fashion2 --out %s/cmp --no-plots",
                     dir, dir, dir);
    ck_assert_msg(rc == 0 && !strstr(out, "different test sets"), "exit %d: %s", rc, out);

    /* a model file evaluated on a set other than the run's */
    write_test_set(dir);
    write_models(dir);
    rc = kdt_kdbench(out, sizeof out,
                     "compare %s/fashion %s/fp32.kdm --csv-data %s/test.csv --threads 1 "
                     "--out %s/cmp --no-plots", dir, dir, dir, dir);
    ck_assert_msg(rc == 2 && strstr(out, "160 samples") && strstr(out, "test.csv"),
                  "exit %d: %s", rc, out);
    /* ... and on the run's own set: the same samples and labels (the CRC of the
     * IDX pair, as run.key records it) */
    data_set d;
    kd_err e = {0};
    char img[600], lab[600];
    snprintf(img, sizeof img, "%s/test-images", dir);
    snprintf(lab, sizeof lab, "%s/test-labels", dir);
    ck_assert_int_eq(data_idx_load(img, lab, 0, &d, &e), KD_OK);
    write_run(dir, "same", "idx", NS, pipeline_data_crc(&d));
    data_set_free(&d);
    rc = kdt_kdbench(out, sizeof out,
                     "compare %s/same %s/int8.kdm --images %s --labels %s --threads 1 "
                     "--out %s/cmp --no-plots", dir, dir, img, lab, dir);
    ck_assert_msg(rc == 0 && !strstr(out, "different test sets") && strstr(out, "same/teacher"),
                  "exit %d: %s", rc, out);
    rc = kdt_kdbench(out, sizeof out, "compare %s/int8.kdm --images %s --out %s/cmp", dir, img,
                     dir);
    ck_assert_msg(rc == 2 && strstr(out, "--labels"), "exit %d: %s", rc, out);
}
END_TEST

START_TEST(ambiguous_baseline)
{
    char dir[256], out[16384];
    kdt_tmpdir(dir, sizeof dir);
    write_run(dir, "runA", "idx", 100, 1);
    write_run(dir, "runB", "idx", 100, 1);
    /* said "matches no variant" */
    int rc = kdt_kdbench(out, sizeof out, "compare %s/runA %s/runB --baseline teacher --out "
                         "%s/cmp --no-plots", dir, dir, dir);
    ck_assert_msg(rc == 2 && strstr(out, "ambiguous") && strstr(out, "runA/teacher") &&
                      strstr(out, "runB/teacher") && !strstr(out, "matches no variant"),
                  "exit %d: %s", rc, out);
    rc = kdt_kdbench(out, sizeof out, "compare %s/runA %s/runB --baseline nope --out %s/cmp "
                     "--no-plots", dir, dir, dir);
    ck_assert_msg(rc == 2 && strstr(out, "matches no variant"), "exit %d: %s", rc, out);
    rc = kdt_kdbench(out, sizeof out, "compare %s/runA %s/runB --baseline runB/teacher --out "
                     "%s/cmp --no-plots", dir, dir, dir);
    ck_assert_msg(rc == 0 && strstr(out, "baseline: runB/teacher"), "exit %d: %s", rc, out);
}
END_TEST

START_TEST(eval_flags)
{
    /* eval's CSV flag has compare's name; the old --csv stays an alias */
    char dir[256], out[16384];
    kdt_tmpdir(dir, sizeof dir);
    write_test_set(dir);
    write_models(dir);
    int rc = kdt_kdbench(out, sizeof out, "eval %s/fp32.kdm --csv-data %s/test.csv --threads 1",
                         dir, dir);
    ck_assert_msg(rc == 0 && strstr(out, "samples    160"), "exit %d: %s", rc, out);
    rc = kdt_kdbench(out, sizeof out, "eval %s/fp32.kdm --csv %s/test.csv --threads 1", dir, dir);
    ck_assert_msg(rc == 0 && strstr(out, "samples    160"), "exit %d: %s", rc, out);
    rc = kdt_kdbench(out, sizeof out, "eval --help");
    ck_assert_msg(rc == 0 && strstr(out, "--csv-data F"), "exit %d: %s", rc, out);
    rc = kdt_kdbench(out, sizeof out, "compare --help");
    ck_assert_msg(rc == 0 && strstr(out, "--images F --labels F") &&
                      strstr(out, "--allow-different-data"), "exit %d: %s", rc, out);
}
END_TEST

Suite *suite_cli_compare(void)
{
    Suite *s = suite_create("cli_compare");
    TCase *t = tcase_create("cli_compare");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, every_kind);
    tcase_add_test(t, different_test_sets);
    tcase_add_test(t, ambiguous_baseline);
    tcase_add_test(t, eval_flags);
    suite_add_tcase(s, t);
    return s;
}
