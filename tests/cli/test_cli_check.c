/* kdbench check through the binary: it accepts only what run accepts.
 * Defaulted keys are reported at the pass that left them out (this used to
 * crash), and the rules run meets once the data is loaded (class count,
 * sample size, calibration batches) or once training is over (the int4
 * group) are refused by check, and by run before it starts, at FILE:LINE:COL. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../kdtest.h"

/* dir/c.yaml: an idx experiment on dir's files; extra goes after the teacher. */
static const char *idx_config(const char *dir, const char *shape, int units, const char *extra)
{
    static char path[600];
    char y[4096];
    snprintf(y, sizeof y,
             "name: t\n"                                          /* 1 */
             "data:\n"                                            /* 2 */
             "  dataset: idx\n"                                   /* 3 */
             "  train_images: %s/train-images\n"                  /* 4 */
             "  train_labels: %s/train-labels\n"                  /* 5 */
             "  test_images: %s/test-images\n"                    /* 6 */
             "  test_labels: %s/test-labels\n"                    /* 7 */
             "  shape: %s\n"                                      /* 8 */
             "teacher:\n"                                         /* 9 */
             "  layers:\n"                                        /* 10 */
             "    - {type: flatten}\n"                            /* 11 */
             "    - {type: dense, units: 8}\n"                    /* 12 */
             "    - {type: relu}\n"                               /* 13 */
             "    - {type: dense, units: %d}\n"                   /* 14 */
             "  train: {epochs: 1, batch_size: 8, optimizer: {lr: 0.1}}\n" /* 15 */
             "cache_dir: \"\"\n"                                  /* 16 */
             "%s",
             dir, dir, dir, dir, shape, units, extra);
    snprintf(path, sizeof path, "%s/c.yaml", dir);
    kdt_write(path, y, strlen(y));
    return path;
}

static void expect_at(int rc, const char *out, const char *where, const char *word)
{
    ck_assert_msg(rc == 2, "exit %d, expected 2: %s", rc, out);
    ck_assert_msg(strstr(out, where) != NULL, "\"%s\" not in: %s", where, out);
    ck_assert_msg(strstr(out, word) != NULL, "\"%s\" not in: %s", word, out);
}

START_TEST(small_training_sets)
{
    /* the reported crashes (exit 139): calib_batches defaulted on 7 batches */
    char out[8192];
    const char *sets[] = {"data.train_subset=900", "data.val_fraction=0.75"};
    int rc = kdt_kdbench(out, sizeof out, "check experiments/quick.yaml --set %s", sets[0]);
    expect_at(rc, out, "experiments/quick.yaml:71:9: compress[2].passes[0].calib_batches",
              "default");
    /* val_fraction 0.75 of the 3,000-image subset leaves 750 */
    rc = kdt_kdbench(out, sizeof out, "check experiments/quick.yaml --set %s", sets[1]);
    expect_at(rc, out, "experiments/quick.yaml:71:9:", "calib_batches");
    rc = kdt_kdbench(out, sizeof out, "check experiments/quick.yaml --set %s "
                     "--set compress.2.passes.0.calib_batches=7", sets[0]);
    ck_assert_msg(rc == 0, "%s", out);
}
END_TEST

START_TEST(int4_group)
{
    /* passed check, then run stopped after training with no position */
    char dir[256], path[600], out[8192];
    kdt_tmpdir(dir, sizeof dir);
    kdt_write_idx(dir, "train", 300, 10);
    kdt_write_idx(dir, "test", 50, 10);
    const char *c = idx_config(dir, "[1, 4, 4]", 10,
                               "compress:\n  - name: q4\n    source: teacher\n"
                               "    passes: [{type: quantize, bits: 4, group: 16}]\n");
    int rc = kdt_kdbench(out, sizeof out, "check %s", c);
    expect_at(rc, out, "c.yaml:20:47: compress[0].passes[0].group", "16");
    rc = kdt_kdbench(out, sizeof out, "run %s --out %s/run --quiet", c, dir);
    expect_at(rc, out, "c.yaml:20:47:", "group");
    snprintf(path, sizeof path, "%s/run/teacher.kdm", dir);
    ck_assert_msg(access(path, F_OK) != 0, "run trained before refusing the config");
}
END_TEST

START_TEST(class_count)
{
    char dir[256], out[8192];
    kdt_tmpdir(dir, sizeof dir);
    kdt_write_idx(dir, "train", 60, 12);
    kdt_write_idx(dir, "test", 24, 12);
    const char *c = idx_config(dir, "[1, 4, 4]", 10, "");
    int rc = kdt_kdbench(out, sizeof out, "check %s", c);
    expect_at(rc, out, "c.yaml:14:7: teacher.layers[3]", "12 classes");
    rc = kdt_kdbench(out, sizeof out, "run %s --out %s/run --quiet", c, dir);
    expect_at(rc, out, "c.yaml:14:7:", "12 classes");
    /* a student whose logits differ from the teacher's */
    c = idx_config(dir, "[1, 4, 4]", 12,
                   "students:\n  - name: s\n"
                   "    layers: [{type: flatten}, {type: dense, units: 13}]\n"
                   "    train: {epochs: 1, optimizer: {lr: 0.1}}\n");
    rc = kdt_kdbench(out, sizeof out, "check %s", c);
    expect_at(rc, out, "c.yaml:19:31: students[0].layers[1]", "teacher");
    c = idx_config(dir, "[1, 4, 4]", 12, "");
    rc = kdt_kdbench(out, sizeof out, "check %s", c);
    ck_assert_msg(rc == 0, "%s", out);
}
END_TEST

START_TEST(sample_size_and_calibration)
{
    char dir[256], out[8192];
    kdt_tmpdir(dir, sizeof dir);
    kdt_write_idx(dir, "train", 200, 10);
    kdt_write_idx(dir, "test", 20, 10);
    const char *c = idx_config(dir, "[1, 5, 5]", 10, "");
    int rc = kdt_kdbench(out, sizeof out, "check %s", c);
    expect_at(rc, out, "c.yaml:8:10: data.shape", "16 values");
    /* 180 training samples after the split: 2 batches of 128, not the default 8 */
    c = idx_config(dir, "[1, 4, 4]", 10,
                   "compress:\n  - name: q\n    source: teacher\n"
                   "    passes:\n      - {type: quantize}\n");
    rc = kdt_kdbench(out, sizeof out, "check %s", c);
    expect_at(rc, out, "c.yaml:21:9: compress[0].passes[0].calib_batches", "default");
    /* a data file that is not there: named, exit 1 as run */
    c = idx_config(dir, "[1, 4, 4]", 10, "");
    rc = kdt_kdbench(out, sizeof out, "check %s --set data.test_labels=%s/nope", c, dir);
    ck_assert_msg(rc == 1 && strstr(out, "nope") != NULL, "exit %d: %s", rc, out);
}
END_TEST

/* A model file of 4x4 -> units (nn's kinds), saved at dir/name. */
static void write_model(const char *dir, const char *name, nn_shape in, int units)
{
    char path[600];
    kd_err e;
    nn_layer_spec l[2] = {{.kind = NN_FLATTEN}, {.kind = NN_DENSE, .units = units}};
    nn_model *m = nn_model_new(in, l, 2, NULL, &e);
    ck_assert_ptr_nonnull(m);
    nn_model_init(m, 1);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    ck_assert_int_eq(nn_model_save(m, path, &e), KD_OK);
    nn_model_free(m);
}

START_TEST(model_files)
{
    /* run met these at the compress stage, after training */
    char dir[256], extra[1024], out[8192];
    kdt_tmpdir(dir, sizeof dir);
    kdt_write_idx(dir, "train", 60, 10);
    kdt_write_idx(dir, "test", 20, 10);
    write_model(dir, "wide.kdm", (nn_shape){1, 5, 5}, 10);
    write_model(dir, "ok.kdm", (nn_shape){1, 4, 4}, 10);
    write_model(dir, "k12.kdm", (nn_shape){1, 4, 4}, 12);
    snprintf(extra, sizeof extra, "compress:\n  - name: f\n    source: %s/wide.kdm\n"
             "    passes: [{type: prune, sparsity: 0.5}]\n", dir);
    const char *c = idx_config(dir, "[1, 4, 4]", 10, extra);
    int rc = kdt_kdbench(out, sizeof out, "check %s", c);
    expect_at(rc, out, "c.yaml:19:13: compress (f).source", "25 inputs");
    snprintf(extra, sizeof extra, "compress:\n  - name: f\n    source: %s/gone.kdm\n"
             "    passes: [{type: prune, sparsity: 0.5}]\n", dir);
    rc = kdt_kdbench(out, sizeof out, "check %s", idx_config(dir, "[1, 4, 4]", 10, extra));
    expect_at(rc, out, "c.yaml:19:13: compress (f).source: ", "gone.kdm: cannot open");
    snprintf(extra, sizeof extra, "compress:\n  - name: f\n    source: %s/ok.kdm\n"
             "    passes: [{type: prune, sparsity: 0.5}]\n", dir);
    rc = kdt_kdbench(out, sizeof out, "check %s", idx_config(dir, "[1, 4, 4]", 10, extra));
    ck_assert_msg(rc == 0, "%s", out);
    /* compress's own checks of the passes against the file's layers */
    snprintf(extra, sizeof extra, "compress:\n  - name: f\n    source: %s/ok.kdm\n"
             "    passes: [{type: prune, sparsity: 0.5, overrides: [{layer: nothere, "
             "sparsity: 0.3}]}]\n", dir);
    rc = kdt_kdbench(out, sizeof out, "check %s", idx_config(dir, "[1, 4, 4]", 10, extra));
    expect_at(rc, out, "c.yaml:20:14: compress (f) passes[0]", "nothere");
    snprintf(extra, sizeof extra, "compress:\n  - name: f\n    source: %s/ok.kdm\n"
             "    passes: [{type: quantize, mode: dynamic, overrides: [{layer: x, bits: 8}]}]\n",
             dir);
    rc = kdt_kdbench(out, sizeof out, "check %s", idx_config(dir, "[1, 4, 4]", 10, extra));
    expect_at(rc, out, "c.yaml:20:14: compress (f) passes[0]", "matches no dense layer");
    /* a saved teacher must give exactly the data's classes */
    rc = kdt_kdbench(out, sizeof out, "check %s --set 'teacher={model: %s/k12.kdm}'", c, dir);
    expect_at(rc, out, "teacher.model", "12 classes");
    /* and have the layer a hint names */
    snprintf(extra, sizeof extra, "students:\n  - name: s\n"
             "    layers: [{type: flatten}, {type: dense, units: 8}, {type: relu, name: h},\n"
             "             {type: dense, units: 10}]\n"
             "    train: {epochs: 1, optimizer: {lr: 0.1}}\n"
             "    distill: {hint: {student: h, teacher: nope}}\n");
    c = idx_config(dir, "[1, 4, 4]", 10, extra);
    rc = kdt_kdbench(out, sizeof out, "check %s", c);
    expect_at(rc, out, "c.yaml:22:43: students[0].distill.hint.teacher", "nope");
    rc = kdt_kdbench(out, sizeof out, "check %s --set 'teacher={model: %s/ok.kdm}'", c, dir);
    expect_at(rc, out, "c.yaml:22:43: students[0].distill.hint.teacher", "saved teacher");
}
END_TEST

START_TEST(saved_teacher_students)
{
    /* check passed; run trained the students, then stopped with "the student has
     * 12 outputs and the teacher 10", no position and no word of the data */
    char dir[256], path[600], out[8192];
    kdt_tmpdir(dir, sizeof dir);
    kdt_write_idx(dir, "train", 60, 10);
    kdt_write_idx(dir, "test", 20, 10);
    write_model(dir, "t10.kdm", (nn_shape){1, 4, 4}, 10);
    const char *c = idx_config(dir, "[1, 4, 4]", 10,
                               "students:\n  - name: s\n"
                               "    layers: [{type: flatten}, {type: dense, units: 12}]\n"
                               "    train: {epochs: 1, optimizer: {lr: 0.1}}\n");
    int rc = kdt_kdbench(out, sizeof out, "check %s --set 'teacher={model: %s/t10.kdm}'", c, dir);
    expect_at(rc, out, "c.yaml:19:31: students[0].layers[1]", "saved teacher");
    ck_assert_msg(strstr(out, "gives 10") && strstr(out, "10 classes"), "%s", out);
    rc = kdt_kdbench(out, sizeof out, "run %s --set 'teacher={model: %s/t10.kdm}' --out %s/run "
                     "--quiet", c, dir, dir);
    expect_at(rc, out, "c.yaml:19:31: students[0].layers[1]", "saved teacher");
    snprintf(path, sizeof path, "%s/run/students", dir);
    ck_assert_msg(access(path, F_OK) != 0, "run trained before refusing the config");
    /* a teacher from the config: held to it by the config walk */
    c = idx_config(dir, "[1, 4, 4]", 12,
                   "students:\n  - name: s\n"
                   "    layers: [{type: flatten}, {type: dense, units: 10}]\n"
                   "    train: {epochs: 1, optimizer: {lr: 0.1}}\n");
    rc = kdt_kdbench(out, sizeof out, "check %s", c);
    expect_at(rc, out, "c.yaml:19:31: students[0].layers[1]", "teacher's ends with 12");
    rc = kdt_kdbench(out, sizeof out, "check %s --set students.0.layers.1.units=12", c);
    ck_assert_msg(rc == 0 && strstr(out, "1 student"), "exit %d: %s", rc, out);
}
END_TEST

START_TEST(missing_sources)
{
    /* a source naming no model read as a file path: "cannot open", nothing more */
    char dir[256], out[8192];
    kdt_tmpdir(dir, sizeof dir);
    kdt_write_idx(dir, "train", 60, 10);
    kdt_write_idx(dir, "test", 20, 10);
    const char *c = idx_config(dir, "[1, 4, 4]", 10,
                               "students:\n  - name: mlp32\n"
                               "    layers: [{type: flatten}, {type: dense, units: 10}]\n"
                               "    train: {epochs: 1, optimizer: {lr: 0.1}}\n"
                               "compress:\n  - name: p\n    source: mlp64/distilled\n"
                               "    passes: [{type: prune, sparsity: 0.5}]\n");
    int rc = kdt_kdbench(out, sizeof out, "check %s", c);
    expect_at(rc, out, "c.yaml:23:13: compress (p).source", "did you mean \"mlp32\"");
    rc = kdt_kdbench(out, sizeof out, "run %s --out %s/run --quiet", c, dir);
    expect_at(rc, out, "c.yaml:23:13:", "no model of this config is named \"mlp64\"");
    rc = kdt_kdbench(out, sizeof out, "check %s --set compress.0.source=mlp23", c);
    expect_at(rc, out, "compress[0].source", "did you mean \"mlp32\"");
    rc = kdt_kdbench(out, sizeof out, "check %s --set compress.0.source=techer", c);
    expect_at(rc, out, "compress[0].source", "did you mean \"teacher\"");
}
END_TEST

START_TEST(wide_models)
{
    /* nine models of 41M parameters: check allocates none of them (the memory
     * bound itself is asserted in config_rules) */
    char dir[256], path[600], out[8192];
    static char y[8192];
    kdt_tmpdir(dir, sizeof dir);
    const char *l = "[{type: flatten}, {type: dense, units: 6000}, {type: relu}, "
                    "{type: dense, units: 6000}, {type: relu}, {type: dense, units: 10}]";
    int n = snprintf(y, sizeof y, "name: wide\nteacher:\n  layers: %s\n"
                     "  train: {epochs: 1, optimizer: {lr: 0.1}}\nstudents:\n", l);
    for (int i = 0; i < 8; i++)
        n += snprintf(y + n, sizeof y - (size_t)n,
                      "  - {name: s%d, layers: %s, train: {epochs: 1, optimizer: {lr: 0.1}}}\n",
                      i, l);
    ck_assert_int_lt(n, (int)sizeof y - 1);
    snprintf(path, sizeof path, "%s/wide.yaml", dir);
    kdt_write(path, y, (size_t)n);
    int rc = kdt_kdbench(out, sizeof out, "check %s", path);
    ck_assert_msg(rc == 0 && strstr(out, "valid"), "exit %d: %s", rc, out);
}
END_TEST

Suite *suite_cli_check(void)
{
    Suite *s = suite_create("cli_check");
    TCase *t = tcase_create("cli_check");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, small_training_sets);
    tcase_add_test(t, int4_group);
    tcase_add_test(t, class_count);
    tcase_add_test(t, sample_size_and_calibration);
    tcase_add_test(t, model_files);
    tcase_add_test(t, saved_teacher_students);
    tcase_add_test(t, missing_sources);
    tcase_add_test(t, wide_models);
    suite_add_tcase(s, t);
    return s;
}
