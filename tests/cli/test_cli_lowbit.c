/* End to end: 2- and 3-bit weights (post-training and LSQ), 4-bit with bias
 * correction: rows with formats int2/int3/int4, files that inspect and eval
 * load; then, from those files, what cannot hold the next pass is refused
 * by `kdbench check` at the pass's FILE:LINE:COLUMN before anything trains:
 * 2 bits on a CSR (pruned) model file, clustering an int4 model file. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "../kdtest.h"

static int run(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void write_data(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/d.csv", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 300; i++) { /* 3 classes, 40 features (two 32-weight groups) */
        fprintf(f, "%d", i % 3);
        for (int j = 0; j < 40; j++)
            fprintf(f, ",%d", (i % 3 == j % 3) * 3 + (i * 7 + j * 5) % 4);
        fputc('\n', f);
    }
    fclose(f);
}

#define DATA "data: {dataset: csv, train_csv: %s/d.csv, test_csv: %s/d.csv, shape: [40, 1, 1]}\n"
#define TEACHER                                                                                \
    "teacher:\n"                                                                               \
    "  layers: [{type: dense, units: 64}, {type: relu}, {type: dense, units: 3}]\n"            \
    "  train: {epochs: 3, optimizer: {lr: 0.1}}\n"

START_TEST(lowbit_end_to_end)
{
    char dir[256], path[512], cmd[4096];
    kdt_tmpdir(dir, sizeof dir);
    write_data(dir);
    snprintf(path, sizeof path, "%s/c.yaml", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "name: c\ncache_dir: \"\"\n" DATA TEACHER
               "compress:\n"
               "  - name: q2\n    source: teacher\n    passes: [{type: quantize, bits: 2}]\n"
               "  - name: q3\n    source: teacher\n    passes: [{type: quantize, bits: 3}]\n"
               "  - name: lsq2\n    source: teacher\n"
               "    passes: [{type: qat, bits: 2, epochs: 1, lr: 0.01, distill: true}]\n"
               "  - name: q4bc\n    source: teacher\n"
               "    passes: [{type: quantize, bits: 4, rounding: gptq, bias_correction: true,\n"
               "             calib_batches: 2}]\n"
               "  - name: pruned\n    source: teacher\n    store: smallest\n"
               "    passes: [{type: prune, sparsity: 0.5}]\n",
            dir, dir);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s run %s --quiet --out %s/r > %s/out.txt 2>&1", kdt_bin(), path,
             dir, dir);
    ck_assert_msg(run(cmd) == 0, "run failed (see %s/out.txt)", dir);
    const char *rows[][2] = {{"q2", "int2"}, {"q3", "int3"}, {"lsq2", "int2"}, {"q4bc", "int4"}};
    for (int i = 0; i < 4; i++) {
        snprintf(cmd, sizeof cmd,
                 "grep -q '^%s,.*,%s,' %s/r/results.csv && %s inspect %s/r/compressed/%s.kdm | "
                 "grep -q ' %s ' && %s eval %s/r/compressed/%s.kdm --csv %s/d.csv >/dev/null",
                 rows[i][0], rows[i][1], dir, kdt_bin(), dir, rows[i][0], rows[i][1], kdt_bin(),
                 dir, rows[i][0], dir);
        ck_assert_msg(run(cmd) == 0, "%s: no %s row or the file does not load: %s", rows[i][0],
                      rows[i][1], cmd);
    }
    snprintf(cmd, sizeof cmd, "grep -q '^lsq2,.*qat(int2,weights,lsq)' %s/r/results.csv && "
             "grep -q '^q4bc,.*quantize(int4,weights,bc)' %s/r/results.csv", dir, dir);
    ck_assert_msg(run(cmd) == 0, "the passes column does not say lsq / bc: %s", cmd);
    /* bits 2 on the pruned CSR file; clustering the int4 file: exit 2 at the pass */
    const char *bad[][3] = {
        {"pruned", "{type: quantize, bits: 2}", "stored sparse"},
        {"q4bc", "{type: cluster, clusters: 4}", "already quantized"},
    };
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/bad%d.yaml", dir, i);
        f = fopen(path, "w");
        fprintf(f, "name: b\ncache_dir: \"\"\n" DATA TEACHER
                   "compress:\n  - name: v\n    source: %s/r/compressed/%s.kdm\n"
                   "    passes: [%s]\n",
                dir, dir, dir, bad[i][0], bad[i][1]);
        fclose(f);
        snprintf(cmd, sizeof cmd, "%s check %s > %s/check%d.txt 2>&1", kdt_bin(), path, dir, i);
        ck_assert_int_eq(run(cmd), 2);
        snprintf(cmd, sizeof cmd, "grep -q '%s:10:14: .*%s' %s/check%d.txt", path, bad[i][2], dir,
                 i);
        ck_assert_msg(run(cmd) == 0, "no FILE:LINE:COLUMN error naming \"%s\" (see %s/check%d.txt)",
                      bad[i][2], dir, i);
    }
}
END_TEST

Suite *suite_cli_lowbit(void)
{
    Suite *s = suite_create("cli_lowbit");
    TCase *t = tcase_create("cli_lowbit");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, lowbit_end_to_end);
    suite_add_tcase(s, t);
    return s;
}
