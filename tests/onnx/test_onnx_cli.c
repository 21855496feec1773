/* ONNX models through the command line: `teacher: {onnx: F, input_mean,
 * input_std}` (errors at FILE:LINE:COL, exit 2, for a missing file, a graph
 * kdbench cannot run, an input size or class count that disagrees with the
 * data), a run that distils from an imported teacher and compresses an .onnx
 * source, `kdbench eval F.onnx --input-mean M --input-std S` and `kdbench
 * inspect F.onnx`.  The models are built by the test (onnx/build) on a tiny
 * IDX set of 4x4 images; experiments/onnx_teacher.yaml is checked against
 * Fashion-MNIST when it is installed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../data/data.h"
#include "../../onnx/compose.h"
#include "../kdtest.h"

/* dir/name: x (N, 1, side, side) -> Flatten -> Gemm(8) -> Relu -> Gemm(classes)
 * -> Softmax; with a Sigmoid instead of the Relu when bad. */
static void write_mlp(const char *dir, const char *name, int side, int classes, int bad)
{
    int64_t in = side * side;
    float w1[8 * 64], w2[8 * 16];
    for (int i = 0; i < 8 * 64; i++)
        w1[i] = (float)((i * 37) % 11 - 5) * 0.05f;
    for (int i = 0; i < 8 * 16; i++)
        w2[i] = (float)((i * 23) % 7 - 3) * 0.2f;
    onnx_build *b = onnx_build_new(13);
    onnx_build_input(b, "x", (int64_t[]){-1, 1, side, side}, 4);
    onnx_build_weights(b, "w1", (int64_t[]){8, in}, 2, w1);
    onnx_build_weights(b, "w2", (int64_t[]){classes, 8}, 2, w2);
    onnx_build_node(b, "Flatten", "flat", "x", "f");
    Onnx__NodeProto *n = onnx_build_node(b, "Gemm", "fc1", "f,w1", "h");
    onnx_build_attr_i(b, n, "transB", 1);
    onnx_build_node(b, bad ? "Sigmoid" : "Relu", bad ? "sig" : "relu", "h", "r");
    n = onnx_build_node(b, "Gemm", "fc2", "r,w2", "z");
    onnx_build_attr_i(b, n, "transB", 1);
    onnx_build_node(b, "Softmax", "sm", "z", "p");
    onnx_build_output(b, "p");
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    kd_err e = {0};
    ck_assert_msg(onnx_build_write(b, path, &e) == KD_OK, "%s", e.msg);
    onnx_build_free(b);
}

/* dir/c.yaml over dir's IDX pair; the teacher mapping is lines 9-12 (onnx: at 10:9). */
static const char *config(const char *dir, const char *teacher, const char *extra)
{
    static char path[600];
    char y[4096];
    snprintf(y, sizeof y,
             "name: t\n"                              /* 1 */
             "data:\n"                                /* 2 */
             "  dataset: idx\n"                       /* 3 */
             "  train_images: %s/train-images\n"      /* 4 */
             "  train_labels: %s/train-labels\n"      /* 5 */
             "  test_images: %s/test-images\n"        /* 6 */
             "  test_labels: %s/test-labels\n"        /* 7 */
             "  shape: [1, 4, 4]\n"                   /* 8 */
             "teacher:\n"                             /* 9 */
             "%s"                                     /* 10 .. */
             "cache_dir: \"\"\n"
             "report: {plots: false}\n"
             "%s",
             dir, dir, dir, dir, teacher, extra);
    snprintf(path, sizeof path, "%s/c.yaml", dir);
    kdt_write(path, y, strlen(y));
    return path;
}

static void expect(int rc, int want, const char *out, const char *w1, const char *w2)
{
    ck_assert_msg(rc == want, "exit %d, expected %d: %s", rc, want, out);
    ck_assert_msg(!w1 || strstr(out, w1), "\"%s\" not in: %s", w1, out);
    ck_assert_msg(!w2 || strstr(out, w2), "\"%s\" not in: %s", w2, out);
}

START_TEST(config_errors_positioned)
{
    char dir[256], t[1024], out[8192];
    kdt_tmpdir(dir, sizeof dir);
    kdt_write_idx(dir, "train", 60, 3);
    kdt_write_idx(dir, "test", 12, 3);
    write_mlp(dir, "ok.onnx", 4, 3, 0);
    write_mlp(dir, "bad.onnx", 4, 3, 1);
    write_mlp(dir, "five.onnx", 4, 5, 0);
    write_mlp(dir, "big.onnx", 5, 3, 0);
    const char *cases[][3] = {
        {"missing.onnx", "c.yaml:10:9: teacher.onnx", "missing.onnx"},
        {"bad.onnx", "c.yaml:10:9: teacher.onnx", "node 'sig' (Sigmoid)"},
        {"five.onnx", "c.yaml:10:9: teacher.onnx", "gives 5 classes"},
        {"big.onnx", "c.yaml:10:9: teacher.onnx", "takes 25 inputs"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(t, sizeof t, "  onnx: %s/%s\n", dir, cases[i][0]);
        int rc = kdt_kdbench(out, sizeof out, "check %s", config(dir, t, ""));
        expect(rc, 2, out, cases[i][1], cases[i][2]);
    }
    /* the keys' own rules */
    snprintf(t, sizeof t, "  onnx: %s/ok.onnx\n  input_std: 0\n", dir);
    expect(kdt_kdbench(out, sizeof out, "check %s", config(dir, t, "")), 2, out, "c.yaml:11:14:",
           "input_std");
    snprintf(t, sizeof t, "  layers: [{type: dense, units: 3}]\n  input_mean: 0.5\n");
    expect(kdt_kdbench(out, sizeof out, "check %s", config(dir, t, "")), 2, out, "c.yaml:11:15:",
           "teacher.input_mean: goes with teacher.onnx");
    snprintf(t, sizeof t, "  onnx: %s/ok.onnx\n  model: %s/ok.kdm\n", dir, dir);
    expect(kdt_kdbench(out, sizeof out, "check %s", config(dir, t, "")), 2, out, "c.yaml:11:",
           "exclude each other");
    snprintf(t, sizeof t, "  onnx: %s/ok.onnx\n  input_mean: 0.5\n  input_std: 0.25\n", dir);
    expect(kdt_kdbench(out, sizeof out, "check %s", config(dir, t, "")), 0, out, NULL, NULL);
    /* a compress source naming an .onnx file kdbench cannot run: at its line */
    char extra[1024];
    snprintf(extra, sizeof extra, "compress:\n  - name: q\n    source: %s/bad.onnx\n"
             "    passes: [{type: prune, sparsity: 0.5}]\n", dir);
    expect(kdt_kdbench(out, sizeof out, "check %s", config(dir, t, extra)), 2, out,
           "c.yaml:17:13: compress (q).source", "node 'sig' (Sigmoid)");
}
END_TEST

/* Distils from an imported teacher (1 epoch on 60 images), compresses it and
 * an .onnx source file; the run's config.yaml keeps the keys and checks again. */
START_TEST(run_distils_and_compresses)
{
    char dir[256], t[1024], extra[1024], out[8192], path[600];
    kdt_tmpdir(dir, sizeof dir);
    kdt_write_idx(dir, "train", 200, 3);
    kdt_write_idx(dir, "test", 30, 3);
    write_mlp(dir, "teacher.onnx", 4, 3, 0);
    snprintf(t, sizeof t, "  onnx: %s/teacher.onnx\n  input_mean: 0.5\n  input_std: 0.25\n", dir);
    snprintf(extra, sizeof extra,
             "students:\n  - name: s\n    layers: [{type: flatten}, {type: dense, units: 3}]\n"
             "    train: {epochs: 1, batch_size: 16, optimizer: {lr: 0.1}}\n"
             "compress:\n  - name: q\n    source: teacher\n"
             "    passes: [{type: quantize, bits: 8, calib_batches: 1}]\n"
             "  - name: f\n    source: %s/teacher.onnx\n"
             "    passes: [{type: prune, sparsity: 0.5}]\n", dir);
    const char *c = config(dir, t, extra);
    int rc = kdt_kdbench(out, sizeof out, "run %s --out %s/run --quiet --threads 1", c, dir);
    expect(rc, 0, out, NULL, NULL);
    char csv[700], got[8192] = "";
    snprintf(csv, sizeof csv, "%s/run/results.csv", dir);
    FILE *f = fopen(csv, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(got, 1, sizeof got - 1, f);
    got[n] = 0;
    fclose(f);
    for (const char *row = "teacher,\0s/distilled,\0q,\0f,\0"; *row; row += strlen(row) + 1)
        ck_assert_msg(strstr(got, row), "no row %s in %s", row, got);
    snprintf(path, sizeof path, "%s/run/config.yaml", dir);
    rc = kdt_kdbench(out, sizeof out, "check %s", path);
    expect(rc, 0, out, NULL, NULL);
    snprintf(csv, sizeof csv, "grep -q 'input_std: 0.25' %s", path);
    ck_assert_int_eq(system(csv), 0);
}
END_TEST

START_TEST(eval_and_inspect)
{
    char dir[256], out[8192];
    kdt_tmpdir(dir, sizeof dir);
    kdt_write_idx(dir, "test", 30, 3);
    write_mlp(dir, "m.onnx", 4, 3, 0);
    write_mlp(dir, "bad.onnx", 4, 3, 1);
    int rc = kdt_kdbench(out, sizeof out, "inspect %s/m.onnx", dir);
    expect(rc, 0, out, "dense", "3 classes");
    rc = kdt_kdbench(out, sizeof out,
                     "eval %s/m.onnx --images %s/test-images --labels %s/test-labels "
                     "--input-mean 0.5 --input-std 0.25 --threads 1", dir, dir, dir);
    expect(rc, 0, out, "accuracy", "samples    30");
    rc = kdt_kdbench(out, sizeof out, "inspect %s/bad.onnx", dir);
    expect(rc, 2, out, "node 'sig' (Sigmoid)", "bad.onnx");
    rc = kdt_kdbench(out, sizeof out, "eval %s/m.onnx --input-std -1", dir);
    expect(rc, 2, out, "--input-std", NULL);
    rc = kdt_kdbench(out, sizeof out, "eval %s/m.kdm --input-mean 0.5", dir);
    expect(rc, 2, out, "go with an .onnx model", NULL);
    /* a truncated file: a format error (exit 1) with a message */
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "head -c 100 %s/m.onnx > %s/t.onnx", dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    rc = kdt_kdbench(out, sizeof out, "inspect %s/t.onnx", dir);
    expect(rc, 1, out, "t.onnx", "onnx");
}
END_TEST

/* The shipped example: its teacher file imports and fits the data. */
START_TEST(example_experiment_checks)
{
    char out[8192], path[600];
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte.gz", DATA_FASHION_DIR);
    if (access(path, R_OK) != 0)
        KDT_SKIP("Fashion-MNIST is not installed (%s)", DATA_FASHION_DIR);
    int rc = kdt_kdbench(out, sizeof out, "check experiments/onnx_teacher.yaml");
    expect(rc, 0, out, NULL, NULL);
    rc = kdt_kdbench(out, sizeof out, "inspect experiments/onnx/teacher.onnx");
    expect(rc, 0, out, "batchnorm", "conv2d");
}
END_TEST

Suite *suite_onnx_cli(void)
{
    Suite *s = suite_create("onnx_cli");
    TCase *t = tcase_create("cli");
    tcase_add_test(t, config_errors_positioned);
    tcase_add_test(t, run_distils_and_compresses);
    tcase_add_test(t, eval_and_inspect);
    tcase_add_test(t, example_experiment_checks);
    tcase_set_timeout(t, 120);
    suite_add_tcase(s, t);
    return s;
}
