/* End to end: prune, then cluster with fine-tuned shared values; the row
 * says csr-shared+huff, the file is smaller than the pruned csr-fp32 one, and
 * inspect and eval load it.  The Deep Compression ladder (teacher, pruned,
 * shared uncoded, shared coded) named in report.ladders reaches results.json,
 * the accuracy-vs-size plot (a line through the rows in that order) and the
 * report's Ladders table. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "../../reports/reports.h"
#include "../kdtest.h"

static int run(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static const rep_row *row_of(const rep_row *rows, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(rows[i].name, name))
            return &rows[i];
    ck_abort_msg("no row %s", name);
    return NULL;
}

static char *slurp(const char *path)
{
    uint8_t *p;
    size_t n;
    kd_err e;
    ck_assert_msg(kd_read_file(path, 16 << 20, &p, &n, &e) == 0, "cannot read %s", path);
    char *s = kd_malloc(n + 1);
    ck_assert_ptr_nonnull(s);
    memcpy(s, p, n);
    s[n] = 0;
    kd_free(p);
    return s;
}

static void check_ladder(const char *dir)
{
    static const char *const steps[4] = {"teacher", "pruned", "shared_uncoded", "shared"};
    char path[600], block[512] = "", line[256];
    rep_row *rows;
    int n;
    rep_ladder l[REP_MAX_LADDERS];
    kd_err e = {0};
    snprintf(path, sizeof path, "%s/r/results.json", dir);
    ck_assert_int_eq(rep_read_results(path, NULL, 0, &rows, &n, &e), 0);
    int nl = 0;
    ck_assert_int_eq(rep_read_ladders(path, l, &nl, &e), 0);
    ck_assert_int_eq(nl, 1);
    ck_assert_str_eq(l[0].name, "Deep Compression");
    ck_assert_int_eq(l[0].nsteps, 4);
    const rep_row *r[4];
    for (int k = 0; k < 4; k++) {
        ck_assert_str_eq(l[0].step[k], steps[k]);
        r[k] = row_of(rows, n, steps[k]);
        snprintf(block + strlen(block), sizeof block - strlen(block), "%.6g %.6g\n",
                 (double)r[k]->size_bytes, 100 * r[k]->accuracy);
    }
    /* the ladder's line on the plot: its rows in the ladder's order */
    snprintf(path, sizeof path, "%s/r/report/plots/acc_size.dat", dir);
    char *dat = slurp(path);
    ck_assert_msg(strstr(dat, block), "no ladder block\n%s in\n%s", block, dat);
    snprintf(path, sizeof path, "%s/r/report/plots/acc_size.gp", dir);
    char *gp = slurp(path);
    ck_assert_ptr_nonnull(strstr(gp, "with linespoints"));
    ck_assert_ptr_nonnull(strstr(gp, "title 'Deep Compression'"));
    /* the table: the coded step's ratios to the first and the previous step */
    snprintf(path, sizeof path, "%s/r/report/report.md", dir);
    char *md = slurp(path);
    ck_assert_ptr_nonnull(strstr(md, "\n### Deep Compression\n"));
    snprintf(line, sizeof line, "| 4 | shared | csr-shared+huff |");
    char *at = strstr(md, line);
    ck_assert_msg(at != NULL, "md lacks %s", line);
    snprintf(line, sizeof line, " | %.2f× | %.2f× | %.2f%% | %+.2f pts |",
             (double)r[0]->size_bytes / (double)r[3]->size_bytes,
             (double)r[2]->size_bytes / (double)r[3]->size_bytes, 100 * r[3]->accuracy,
             100 * (r[3]->accuracy - r[0]->accuracy));
    ck_assert_msg(strstr(at, line) && strstr(at, line) < strchr(at + 1, '\n'), "md lacks %s",
                  line);
    kd_free(md);
    kd_free(gp);
    kd_free(dat);
    kd_free(rows);
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
               "             {type: cluster, clusters: 4, epochs: 1, lr: 0.01}]\n"
               "  - name: shared_uncoded\n    source: teacher\n"
               "    passes: [{type: prune, sparsity: 0.5},\n"
               "             {type: cluster, clusters: 4, epochs: 1, lr: 0.01, coding: none}]\n"
               "report:\n  ladders:\n    - name: Deep Compression\n"
               "      rows: [teacher, pruned, shared_uncoded, shared]\n",
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
    check_ladder(dir);
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
