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

Suite *suite_cli_distill(void)
{
    Suite *s = suite_create("cli_distill");
    TCase *t = tcase_create("cli_distill");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, saved_teacher_checked_and_used);
    suite_add_tcase(s, t);
    return s;
}
