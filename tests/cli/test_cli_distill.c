/* End to end: a saved teacher (teacher: {model: PATH}) that does not fit the
 * data is refused at its line before any training, with exit status 2; one
 * that fits is used without training. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../data/data.h"
#include "../kdtest.h"

static int run(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}


START_TEST(saved_teacher_checked_and_used)
{
    if (access(DATA_FASHION_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0)
        KDT_SKIP("dataset-fashion-mnist is not installed");
    char dir[256], path[512], cmd[4096];
    kdt_tmpdir(dir, sizeof dir);
    /* a 3-class teacher on a 4-feature CSV */
    snprintf(path, sizeof path, "%s/d.csv", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 60; i++)
        fprintf(f, "%d,%d,%d,%d,%d\n", i % 3, i % 3, i % 5, i % 7, i % 3 * 2);
    fclose(f);
    snprintf(path, sizeof path, "%s/csv.yaml", dir);
    f = fopen(path, "w");
    fprintf(f, "name: c\ncache_dir: \"\"\ndata: {dataset: csv, train_csv: %s/d.csv, test_csv: "
               "%s/d.csv, shape: [4, 1, 1]}\nteacher:\n  layers: [{type: dense, units: 3}]\n"
               "  train: {epochs: 1, optimizer: {lr: 0.1}}\n", dir, dir);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s run %s --quiet --out %s/c >/dev/null 2>&1", kdt_bin(), path, dir);
    ck_assert_int_eq(run(cmd), 0);
    /* that teacher on Fashion-MNIST: refused at line 4 (teacher.model), status 2 */
    snprintf(path, sizeof path, "%s/bad.yaml", dir);
    f = fopen(path, "w");
    fprintf(f, "name: b\ndata: {train_subset: 500, test_subset: 100}\nteacher:\n"
               "  model: %s/c/teacher.kdm\n", dir);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s run %s --quiet --out %s/b > %s/b.txt 2>&1", kdt_bin(), path, dir, dir);
    ck_assert_int_eq(run(cmd), 2);
    snprintf(cmd, sizeof cmd, "grep -q 'bad.yaml:4:10: teacher.model: .*gives 3 classes' %s/b.txt",
             dir);
    ck_assert_msg(run(cmd) == 0, "no positioned error");
    snprintf(cmd, sizeof cmd, "test ! -e %s/b/teacher.ckpt", dir);
    ck_assert_int_eq(run(cmd), 0);
    /* the quick teacher, saved, then used as a teacher: no teacher epochs
     * (one student seed and fewer epochs: every stage still runs) */
    const char *quick = "--set 'students.0.seeds=[1]' --set teacher.train.epochs=5 "
                        "--set students.0.train.epochs=5";
    snprintf(cmd, sizeof cmd,
             "%s run experiments/quick.yaml --quiet --out %s/q --set 'cache_dir=\"\"' %s >/dev/null "
             "2>&1 && %s run experiments/quick.yaml --quiet --out %s/r --set 'cache_dir=\"\"' %s "
             "--set 'teacher={model: %s/q/teacher.kdm}' >/dev/null 2>&1",
             kdt_bin(), dir, quick, kdt_bin(), dir, quick, dir);
    ck_assert_int_eq(run(cmd), 0);
    snprintf(cmd, sizeof cmd,
             "grep -q 'teacher: loaded' %s/r/run.log && ! grep -q '^teacher epoch' %s/r/run.log "
             "&& grep -q 'mlp32/distilled' %s/r/results.csv",
             dir, dir, dir);
    ck_assert_int_eq(run(cmd), 0);
}
END_TEST

/* A student with a modes list: one row per mode beside the scratch twin, all
 * with the same seed; a mistake in the list stops the run at its line with
 * status 2 before any training. */
START_TEST(modes_rows_and_errors)
{
    char dir[256], path[512], cmd[4096];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/d.csv", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 90; i++)
        fprintf(f, "%d,%d,%d,%d,%d\n", i % 3, i % 3, i % 5, i % 7, i % 3 * 2);
    fclose(f);
    const char *body =
        "name: m\ncache_dir: \"\"\ndata: {dataset: csv, train_csv: %s/d.csv, test_csv: %s/d.csv, "
        "shape: [4, 1, 1]}\nteacher:\n  layers: [{type: dense, units: 8}, {type: relu}, {type: "
        "dense, units: 3}]\n  train: {epochs: 2, optimizer: {lr: 0.1}}\nstudents:\n  - name: s\n"
        "    seeds: [1, 2]\n    layers: [{type: dense, units: 3}]\n"
        "    train: {epochs: 2, optimizer: {lr: 0.1}}\n"
        "    distill:\n      modes: [kd, dkd, dist, {method: kd, standardize: true}, %s]\n"
        "  - name: ta\n    teacher: s\n    layers: [{type: dense, units: 3}]\n"
        "    train: {epochs: 1, optimizer: {lr: 0.1}}\n";
    snprintf(path, sizeof path, "%s/ok.yaml", dir);
    f = fopen(path, "w");
    fprintf(f, body, dir, dir, "{method: dkd, warmup: 2, name: dkd_w}");
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s run %s --quiet --out %s/ok > %s/ok.txt 2>&1", kdt_bin(), path,
             dir, dir);
    ck_assert_int_eq(run(cmd), 0);
    const char *rows[] = {"s/scratch", "s/kd", "s/dkd", "s/dist", "s/kd-std", "s/dkd_w",
                          "ta/scratch", "ta/distilled"};
    for (int i = 0; i < 8; i++) {
        snprintf(cmd, sizeof cmd, "grep -q '^\"\\?%s\"\\?,' %s/ok/results.csv", rows[i], dir);
        ck_assert_msg(run(cmd) == 0, "no row %s", rows[i]);
    }
    snprintf(cmd, sizeof cmd, "! grep -q 's/distilled' %s/ok/results.csv && test -e "
             "%s/ok/students/s/dkd_w-seed2.kdm && grep -q 's: scratch .*, dist .* gain' "
             "%s/ok/run.log", dir, dir, dir);
    ck_assert_msg(run(cmd) == 0, "files or log lines missing");
    /* the assistant chain: ta learns from s's first mode, after s */
    snprintf(cmd, sizeof cmd, "grep -q '^ta/distilled,.*,s/kd,' %s/ok/results.csv && grep -q "
             "'ta: taught by s/kd (a teacher assistant)' %s/ok/run.log", dir, dir);
    ck_assert_msg(run(cmd) == 0, "no teacher-assistant row or log line");
    /* a misspelt method: line 13, column 63 (the list's fifth item) */
    snprintf(path, sizeof path, "%s/bad.yaml", dir);
    f = fopen(path, "w");
    fprintf(f, body, dir, dir, "dkdd");
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s run %s --quiet --out %s/bad > %s/bad.txt 2>&1", kdt_bin(),
             path, dir, dir);
    ck_assert_int_eq(run(cmd), 2);
    snprintf(cmd, sizeof cmd,
             "grep -q 'bad.yaml:13:63: students\\[0\\].distill.modes\\[4\\]: unknown method "
             "\"dkdd\" (did you mean \"dkd\"' %s/bad.txt && test ! -e %s/bad/teacher.kdm", dir, dir);
    ck_assert_msg(run(cmd) == 0, "no positioned error");
}
END_TEST

/* The run log's verdict on a gain: a mode far below its scratch twin is "a
 * loss larger than the noise" (it read "within the noise" for any loss). */
START_TEST(gain_verdict_both_signs)
{
    char dir[256], path[512], cmd[4096];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/d.csv", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 90; i++) /* separable: feature 0 is twice the class */
        fprintf(f, "%d,%d,%d,%d,%d\n", i % 3, i % 3 * 2, i % 5, i % 7, 1 - i % 3);
    fclose(f);
    snprintf(path, sizeof path, "%s/n.yaml", dir);
    f = fopen(path, "w");
    fprintf(f, "name: n\ncache_dir: \"\"\ndata: {dataset: csv, train_csv: %s/d.csv, test_csv: "
               "%s/d.csv, shape: [4, 1, 1], val_fraction: 0}\nteacher:\n  layers: [{type: dense, "
               "units: 3}]\n  train: {epochs: 20, optimizer: {lr: 0.1}}\nstudents:\n  - name: s\n"
               "    seeds: [1, 2]\n    layers: [{type: dense, units: 3}]\n    train: {epochs: 20, "
               "optimizer: {lr: 0.1}}\n    distill: {modes: [{method: dkd, beta: 1000, "
               "temperature: 100, name: wild}]}\n", dir, dir);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s run %s --quiet --out %s/o >/dev/null 2>&1", kdt_bin(), path, dir);
    ck_assert_int_eq(run(cmd), 0);
    snprintf(cmd, sizeof cmd, "grep -q 'wild .* gain -[0-9.]* points, a loss larger than the "
             "noise' %s/o/run.log", dir);
    ck_assert_msg(run(cmd) == 0, "no verdict on the loss");
}
END_TEST

Suite *suite_cli_distill(void)
{
    Suite *s = suite_create("cli_distill");
    TCase *t = tcase_create("cli_distill");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, saved_teacher_checked_and_used);
    tcase_add_test(t, modes_rows_and_errors);
    tcase_add_test(t, gain_verdict_both_signs);
    suite_add_tcase(s, t);
    return s;
}
