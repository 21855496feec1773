/* End to end: prune, then cluster with fine-tuned shared values; the row
 * says csr-shared+huff, the file is smaller than the pruned csr-fp32 one, and
 * inspect and eval load it. */
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

START_TEST(cluster_end_to_end)
{
    char dir[256], path[512], cmd[4096];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/d.csv", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 300; i++) { /* 3 classes, 12 features */
        fprintf(f, "%d", i % 3);
        for (int j = 0; j < 12; j++)
            fprintf(f, ",%d", (i % 3 == j % 3) * 3 + (i * 7 + j * 5) % 4);
        fputc('\n', f);
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/c.yaml", dir);
    f = fopen(path, "w");
    fprintf(f, "name: c\ncache_dir: \"\"\ndata: {dataset: csv, train_csv: %s/d.csv, test_csv: "
               "%s/d.csv, shape: [12, 1, 1]}\nteacher:\n"
               "  layers: [{type: dense, units: 64}, {type: relu}, {type: dense, units: 3}]\n"
               "  train: {epochs: 3, optimizer: {lr: 0.1}}\n"
               "compress:\n"
               "  - name: pruned\n    source: teacher\n    store: smallest\n"
               "    passes: [{type: prune, sparsity: 0.5}]\n"
               "  - name: shared\n    source: teacher\n"
               "    passes: [{type: prune, sparsity: 0.5},\n"
               "             {type: cluster, clusters: 4, epochs: 1, lr: 0.01}]\n",
            dir, dir);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s run %s --quiet --out %s/r > %s/out.txt 2>&1", kdt_bin(), path,
             dir, dir);
    ck_assert_msg(run(cmd) == 0, "run failed (see %s/out.txt)", dir);
    snprintf(cmd, sizeof cmd,
             "grep -q '^shared,.*csr-shared+huff' %s/r/results.csv && grep -q 'cluster(4,finetuned)' "
             "%s/r/results.csv && %s inspect %s/r/compressed/shared.kdm | grep -Eq "
             "'csr-shared\\+huff +[0-9]+\\.[0-9]{2}$' && "
             "%s eval %s/r/compressed/shared.kdm --csv %s/d.csv >/dev/null",
             dir, dir, kdt_bin(), dir, kdt_bin(), dir, dir);
    ck_assert_msg(run(cmd) == 0, "no shared row, or the file does not load: %s", cmd);
    /* weight_bits of a shared row: the file's bits per kept weight, a fraction */
    snprintf(cmd, sizeof cmd,
             "awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == \"weight_bits\") c = i } "
             "$1 == \"shared\" { b = $c } END { exit !(c && b > 0 && b < 32 && b != int(b)) }' "
             "%s/r/results.csv", dir);
    ck_assert_msg(run(cmd) == 0, "weight_bits of the shared row is not a fraction: %s", cmd);
    snprintf(cmd, sizeof cmd, "test $(stat -c %%s %s/r/compressed/shared.kdm) -lt "
             "$(stat -c %%s %s/r/compressed/pruned.kdm)", dir, dir);
    ck_assert_msg(run(cmd) == 0, "the shared file is not smaller than the pruned one");
}
END_TEST

Suite *suite_cli_cluster(void)
{
    Suite *s = suite_create("cli_cluster");
    TCase *t = tcase_create("cli_cluster");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, cluster_end_to_end);
    suite_add_tcase(s, t);
    return s;
}
