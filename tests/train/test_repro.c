/* Bit-for-bit reproducibility (issue 12): two runs of one small experiment
 * with the same seed and threads -- a teacher MLP with dropout trained on the
 * split thread team, a scratch/distilled student pair, AGP pruning and QAT
 * fine-tuning -- give the same results.json accuracies and the same
 * metrics.jsonl losses and accuracies (every field but the timings). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../data/data.h"
#include "../../reports/reports.h"
#include "../kdtest.h"

static const char *repro_yaml =
    "name: repro\nseed: 3\ncache_dir: \"\"\n"
    "data: {train_subset: 1500, test_subset: 300}\n"
    "teacher:\n"
    "  layers: [{type: flatten}, {type: dense, units: 512}, {type: relu},\n"
    "           {type: dropout, rate: 0.3}, {type: dense, units: 256}, {type: relu},\n"
    "           {type: dropout, rate: 0.3}, {type: dense, units: 10}]\n"
    "  train: {epochs: 2, batch_size: 128,\n"
    "          optimizer: {kind: sgd, lr: 0.05, momentum: 0.9, nesterov: true,\n"
    "                      weight_decay: 0.0005}}\n"
    "students:\n"
    "  - name: s\n"
    "    layers: [{type: flatten}, {type: dense, units: 128}, {type: relu},\n"
    "             {type: dense, units: 10}]\n"
    "    train: {epochs: 2, batch_size: 128, optimizer: {kind: adamw, lr: 0.003}}\n"
    "    distill: {temperature: 4, alpha: 0.9}\n"
    "compress:\n"
    "  - name: agp\n"
    "    source: teacher\n"
    "    passes:\n"
    "      - {type: prune, sparsity: 0.8, schedule: agp, epochs: 2, ramp_epochs: 1,\n"
    "         initial_sparsity: 0.5, lr: 0.01}\n"
    "  - name: qat\n"
    "    source: teacher\n"
    "    passes: [{type: qat, bits: 8, epochs: 1, lr: 0.001}]\n"
    "report: {plots: false}\n";

static void run_once(const char *yaml, const char *out_dir)
{
    char out[16384];
    ck_assert_msg(kdt_kdbench(out, sizeof out, "run %s --threads 2 --quiet --out %s", yaml,
                              out_dir) == 0, "%s", out);
}

/* The metrics without the fields that are timings, one line per epoch. */
static char *metrics_sans_time(const char *dir)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "sed -e 's/\"seconds\": [^,}]*//' -e 's/\"samples_per_s\": [^,}]*//' "
             "%s/metrics.jsonl",
             dir);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap);
    ck_assert_ptr_nonnull(b);
    size_t got;
    while ((got = fread(b + len, 1, cap - 1 - len, p)) > 0) {
        len += got;
        if (len + 1 >= cap)
            ck_assert_ptr_nonnull(b = realloc(b, cap *= 2));
    }
    b[len] = 0;
    ck_assert_int_eq(pclose(p), 0);
    return b;
}

START_TEST(same_seed_same_threads_same_numbers)
{
    if (access(DATA_FASHION_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0)
        KDT_SKIP("dataset-fashion-mnist is not installed");
    char dir[256], yaml[512], a[512], b[512];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(yaml, sizeof yaml, "%s/r.yaml", dir);
    kdt_write(yaml, repro_yaml, strlen(repro_yaml));
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    run_once(yaml, a);
    run_once(yaml, b);

    char *ma = metrics_sans_time(a), *mb = metrics_sans_time(b);
    /* teacher, scratch, distilled, agp and qat epochs were all logged */
    const char *models[] = {"\"teacher\"", "\"s/scratch\"", "\"s/distilled\"", "\"agp",
                            "\"qat"};
    for (int i = 0; i < 5; i++)
        ck_assert_msg(strstr(ma, models[i]) != NULL, "no epochs of %s in metrics", models[i]);
    ck_assert_msg(strstr(ma, "\"loss\"") != NULL, "no losses in metrics");
    ck_assert_msg(strcmp(ma, mb) == 0, "metrics differ:\n%s\n---\n%s", ma, mb);
    free(ma);
    free(mb);

    rep_row *ra = NULL, *rb = NULL;
    int na = 0, nb = 0;
    kd_err e;
    char path[600];
    snprintf(path, sizeof path, "%s/results.json", a);
    ck_assert_msg(rep_read_results(path, NULL, 0, &ra, &na, &e) == KD_OK, "%s", e.msg);
    snprintf(path, sizeof path, "%s/results.json", b);
    ck_assert_msg(rep_read_results(path, NULL, 0, &rb, &nb, &e) == KD_OK, "%s", e.msg);
    ck_assert_int_eq(na, nb);
    ck_assert_int_ge(na, 5);
    for (int i = 0; i < na; i++) {
        ck_assert_str_eq(ra[i].name, rb[i].name);
        ck_assert_msg(ra[i].accuracy == rb[i].accuracy, "%s: accuracy %.6f vs %.6f", ra[i].name,
                      ra[i].accuracy, rb[i].accuracy);
    }
    kd_free(ra);
    kd_free(rb);
}
END_TEST

Suite *suite_train_repro(void)
{
    Suite *s = suite_create("train_repro");
    TCase *t = tcase_create("repro");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, same_seed_same_threads_same_numbers);
    suite_add_tcase(s, t);
    return s;
}
