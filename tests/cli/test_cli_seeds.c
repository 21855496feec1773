/* End to end: a compress pipeline with `seeds: [1, 2]` fine-tunes once per
 * seed from the same source; its row holds the mean accuracy and the
 * per-seed list, the second seed's model is saved beside the first, the
 * curves have one line per seed, and --resume keeps both seeds' models. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../data/data.h"
#include "../../reports/reports.h"
#include "../kdtest.h"

static const char *extra_str(const rep_row *r, const char *key)
{
    for (int i = 0; i < r->nextra; i++)
        if (!r->extra[i].is_num && !strcmp(r->extra[i].key, key))
            return r->extra[i].str;
    return NULL;
}

static double extra_num(const rep_row *r, const char *key)
{
    for (int i = 0; i < r->nextra; i++)
        if (r->extra[i].is_num && !strcmp(r->extra[i].key, key))
            return r->extra[i].num;
    return -1;
}

START_TEST(compress_seeds_end_to_end)
{
    if (access(DATA_FASHION_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0)
        KDT_SKIP("dataset-fashion-mnist is not installed");
    char dir[256], path[512], run_dir[512], out[16384], cmd[2048];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/s.yaml", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("name: s\nseed: 1\ncache_dir: \"\"\n"
          "data: {train_subset: 1000, test_subset: 500}\n"
          "teacher:\n"
          "  layers: [{type: flatten}, {type: dense, units: 32}, {type: relu},\n"
          "           {type: dense, units: 10}]\n"
          "  train: {epochs: 1, batch_size: 64, optimizer: {kind: adamw, lr: 0.003}}\n"
          "compress:\n"
          "  - name: p\n"
          "    source: teacher\n"
          "    seeds: [1, 2]\n"
          "    passes:\n"
          "      - {type: prune, scope: global, sparsity: 0.7}\n"
          "      - {type: finetune, epochs: 1, lr: 0.005, batch_size: 64}\n"
          "  - name: q\n"
          "    source: teacher\n"
          "    passes: [{type: prune, sparsity: 0.5}]\n"
          "report: {plots: false}\n",
          f);
    fclose(f);
    snprintf(run_dir, sizeof run_dir, "%s/run", dir);
    ck_assert_msg(kdt_kdbench(out, sizeof out, "run %s --threads 2 --quiet --out %s", path,
                              run_dir) == 0, "%s", out);
    const char *files[] = {"compressed/p.kdm", "compressed/p-seed2.kdm", "compressed/q.kdm"};
    for (int i = 0; i < 3; i++) {
        snprintf(cmd, sizeof cmd, "%s/%s", run_dir, files[i]);
        ck_assert_msg(access(cmd, R_OK) == 0, "missing %s", cmd);
    }
    snprintf(cmd, sizeof cmd, "%s/compressed/q-seed1.kdm", run_dir);
    ck_assert_msg(access(cmd, R_OK) != 0, "a single-seed variant saved a seed file");

    snprintf(cmd, sizeof cmd, "%s/results.json", run_dir);
    rep_row *rows = NULL;
    int n = 0;
    kd_err e;
    ck_assert_msg(rep_read_results(cmd, NULL, 0, &rows, &n, &e) == KD_OK, "%s", e.msg);
    const rep_row *p = NULL, *q = NULL;
    for (int i = 0; i < n; i++) {
        if (!strcmp(rows[i].name, "p"))
            p = &rows[i];
        if (!strcmp(rows[i].name, "q"))
            q = &rows[i];
    }
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(q);
    ck_assert_str_eq(p->role, "compressed");
    ck_assert_double_eq(extra_num(p, "seeds"), 2);
    ck_assert(extra_num(p, "accuracy_std") >= 0);
    ck_assert_str_eq(extra_str(p, "seed_list"), "1 2");
    const char *per = extra_str(p, "accuracy_per_seed");
    ck_assert_ptr_nonnull(per);
    double a1, a2;
    ck_assert_int_eq(sscanf(per, "%lf %lf", &a1, &a2), 2);
    ck_assert_msg(fabs(p->accuracy - (a1 + a2) / 2) < 1e-4, "accuracy %.6f, seeds %s",
                  p->accuracy, per);
    ck_assert_msg(p->accuracy > 0.5, "accuracy %.3f", p->accuracy);
    /* a single-seed row is as it always was: no seed fields */
    ck_assert_double_eq(extra_num(q, "seeds"), -1);
    ck_assert_ptr_null(extra_str(q, "accuracy_per_seed"));
    kd_free(rows);

    /* the log gives the spread; the fine-tuning curve has one line per seed */
    snprintf(cmd, sizeof cmd,
             "grep -q 'p: .*test accuracy [0-9.]*%% ± [0-9.]* over 2 seeds' %s/run.log && "
             "grep -q '\"model\": \"p \\[pass 2\\]\", \"seed\": 1,' %s/metrics.jsonl && "
             "grep -q '\"model\": \"p \\[pass 2\\]\", \"seed\": 2,' %s/metrics.jsonl",
             run_dir, run_dir, run_dir);
    ck_assert_msg(system(cmd) == 0, "log or curves lack the seeds");
    /* the dumped config keeps the seeds */
    snprintf(cmd, sizeof cmd, "grep -q 'seeds: \\[1, 2\\]' %s/config.yaml", run_dir);
    ck_assert_int_eq(system(cmd), 0);

    /* --resume keeps both seeds' saved models */
    ck_assert_msg(kdt_kdbench(out, sizeof out, "run %s --threads 2 --quiet --out %s --resume",
                              path, run_dir) == 0, "%s", out);
    snprintf(cmd, sizeof cmd,
             "grep -q 'p seed 1: kept from the interrupted run' %s/run.log && "
             "grep -q 'p seed 2: kept from the interrupted run' %s/run.log",
             run_dir, run_dir);
    ck_assert_msg(system(cmd) == 0, "resume retrained a finished seed");
}
END_TEST

Suite *suite_cli_seeds(void)
{
    Suite *s = suite_create("cli_seeds");
    TCase *t = tcase_create("cli_seeds");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, compress_seeds_end_to_end);
    suite_add_tcase(s, t);
    return s;
}
