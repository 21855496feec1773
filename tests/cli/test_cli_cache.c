/* The teacher cache across runs is keyed by the data's contents, not only
 * by its paths: a data file rewritten in place (same path, other samples)
 * must not hand the next run a teacher trained on the old data. */
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

static void write_csv(const char *dir, int shift)
{
    char path[512];
    snprintf(path, sizeof path, "%s/d.csv", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 60; i++)
        fprintf(f, "%d,%d,%d,%d,%d\n", i % 3, (i + shift) % 3, i % 5, i % 7, i % 3 * 2);
    fclose(f);
}

static int cache_hit(const char *dir, const char *cfg, const char *out)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s run %s --quiet --out %s/%s >/dev/null 2>&1", kdt_bin(), cfg,
             dir, out);
    ck_assert_int_eq(run(cmd), 0);
    snprintf(cmd, sizeof cmd, "grep -q 'found in the cache' %s/%s/run.log", dir, out);
    return run(cmd) == 0;
}

START_TEST(cache_keyed_by_data_contents)
{
    char dir[256], cfg[512];
    kdt_tmpdir(dir, sizeof dir);
    write_csv(dir, 0);
    snprintf(cfg, sizeof cfg, "%s/c.yaml", dir);
    FILE *f = fopen(cfg, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "name: c\ncache_dir: %s/cache\ndata: {dataset: csv, train_csv: %s/d.csv, "
               "test_csv: %s/d.csv, shape: [4, 1, 1]}\nteacher:\n"
               "  layers: [{type: dense, units: 3}]\n  train: {epochs: 1, optimizer: {lr: 0.1}}\n",
            dir, dir, dir);
    fclose(f);
    ck_assert_msg(!cache_hit(dir, cfg, "a"), "a first run found a teacher in an empty cache");
    ck_assert_msg(cache_hit(dir, cfg, "b"), "the same config and data missed the cache");
    write_csv(dir, 1); /* same path, other features */
    ck_assert_msg(!cache_hit(dir, cfg, "c"),
                  "a teacher trained on other data was taken from the cache");
}
END_TEST

Suite *suite_cli_cache(void)
{
    Suite *s = suite_create("cli_cache");
    TCase *t = tcase_create("cli_cache");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, cache_keyed_by_data_contents);
    suite_add_tcase(s, t);
    return s;
}
