/* Passes shared between variants (pipeline/pass_share.c): a variant
 * that starts from another's passes gives the same file, byte for byte, as
 * when it runs alone, and only variants that really share passes share.
 * Both ways of keeping them are run: the kept weights of a masked model of
 * the source's shape (b, c from a), the whole model after neurons were
 * removed (f from e). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../data/data.h"
#include "../../pipeline/pipeline.h"
#include "../kdtest.h"

/* The first n bytes of path into a heap string (NUL-terminated), *len set. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    ck_assert_int_ge(n, 0);
    rewind(f);
    char *p = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    p[n] = 0;
    *len = (size_t)n;
    return p;
}

static const char *const variant_yaml[] = {
    /* a: prune, fine-tune */
    "  - {name: a, source: teacher, store: smallest, passes: [{type: prune, sparsity: 0.6},\n"
    "     {type: finetune, epochs: 1, lr: 0.01}]}\n",
    /* b: a's passes, then int8 */
    "  - {name: b, source: teacher, store: smallest, passes: [{type: prune, sparsity: 0.6},\n"
    "     {type: finetune, epochs: 1, lr: 0.01}, {type: quantize, bits: 8, calib_batches: 2}]}\n",
    /* c: a's passes, then more fine-tuning with the mask held */
    "  - {name: c, source: teacher, store: smallest, passes: [{type: prune, sparsity: 0.6},\n"
    "     {type: finetune, epochs: 1, lr: 0.01}, {type: finetune, epochs: 1, lr: 0.005}]}\n",
    /* d: the same prune, fine-tuned at another rate: shares one pass that
     * does not train, so nothing */
    "  - {name: d, source: teacher, store: smallest, passes: [{type: prune, sparsity: 0.6},\n"
    "     {type: finetune, epochs: 1, lr: 0.02}]}\n",
    /* e, f: neurons removed (the model changes shape), fine-tuned; f then int8 */
    "  - {name: e, source: teacher, store: smallest, passes: [{type: prune, method: neurons,\n"
    "     sparsity: 0.5}, {type: finetune, epochs: 1, lr: 0.01}]}\n",
    "  - {name: f, source: teacher, store: smallest, passes: [{type: prune, method: neurons,\n"
    "     sparsity: 0.5}, {type: finetune, epochs: 1, lr: 0.01},\n"
    "     {type: quantize, bits: 8, calib_batches: 2}]}\n",
};

/* Runs the variants named in `which` ("abcd", "b", ...) in dir/name. */
static void run(const char *dir, const char *name, const char *which)
{
    char cfg[400], out[400];
    snprintf(cfg, sizeof cfg, "%s/%s.yaml", dir, name);
    snprintf(out, sizeof out, "%s/%s", dir, name);
    FILE *f = fopen(cfg, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "name: %s\nseed: 3\nthreads: 2\ncache_dir: \"%s/cache\"\n"
               "data: {train_subset: 600, test_subset: 200}\n"
               "teacher:\n"
               "  layers: [{type: flatten}, {type: dense, units: 64}, {type: relu},\n"
               "           {type: dense, units: 10}]\n"
               "  train: {epochs: 1, batch_size: 64, optimizer: {kind: sgd, lr: 0.05}}\n"
               "compress:\n",
            name, dir);
    for (const char *w = which; *w; w++)
        fputs(variant_yaml[*w - 'a'], f);
    fputs("report: {plots: false}\n", f);
    ck_assert_int_eq(fclose(f), 0);
    kd_err e = {0};
    exp_spec *s = calloc(1, sizeof *s);
    ck_assert_ptr_nonnull(s);
    ck_assert_msg(pipeline_config_load(cfg, NULL, 0, s, &e) == KD_OK, "%s", e.msg);
    pipeline_opts o = {.out_dir = out, .quiet = 1};
    int rc = pipeline_run(s, &o, &e);
    free(s);
    ck_assert_msg(rc == KD_OK, "%s", e.msg);
}

static char *file_of(const char *dir, const char *run_name, const char *rel, size_t *len)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s/%s", dir, run_name, rel);
    return slurp(path, len);
}

static void same_file(const char *dir, const char *r1, const char *r2, const char *rel)
{
    size_t n1, n2;
    char *a = file_of(dir, r1, rel, &n1), *b = file_of(dir, r2, rel, &n2);
    ck_assert_msg(n1 == n2 && !memcmp(a, b, n1), "%s differs between run %s (%zu bytes) and %s (%zu)",
                  rel, r1, n1, r2, n2);
    free(a);
    free(b);
}

START_TEST(shared_passes_give_the_same_files)
{
    if (access(DATA_FASHION_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0)
        KDT_SKIP("dataset-fashion-mnist is not installed");
    char dir[256];
    kdt_tmpdir(dir, sizeof dir);
    run(dir, "all", "abcdef");
    run(dir, "b", "b");
    run(dir, "c", "c");
    run(dir, "d", "d");
    run(dir, "f", "f");
    same_file(dir, "all", "b", "compressed/b.kdm");
    same_file(dir, "all", "c", "compressed/c.kdm");
    same_file(dir, "all", "d", "compressed/d.kdm");
    same_file(dir, "all", "f", "compressed/f.kdm");

    size_t n;
    char *log = file_of(dir, "all", "run.log", &n);
    ck_assert_msg(strstr(log, "b: passes 1-2 are a's"), "b did not start from a's passes:\n%s", log);
    ck_assert_msg(strstr(log, "c: passes 1-2 are a's"), "c did not start from a's passes");
    ck_assert_msg(!strstr(log, "d: passes"), "d shares no training pass, yet took some");
    ck_assert_msg(strstr(log, "f: passes 1-2 are e's"), "f did not start from e's passes");
    free(log);
    /* b's fine-tuning curve is a's, under b's name, as if b had trained */
    char *metrics = file_of(dir, "all", "metrics.jsonl", &n);
    ck_assert_msg(strstr(metrics, "\"b [pass 2]\""), "no curve for b's fine-tuning");
    ck_assert_msg(strstr(metrics, "\"c [pass 3]\""), "no curve for c's own fine-tuning");
    free(metrics);
}
END_TEST

Suite *suite_pipeline_reuse(void)
{
    Suite *s = suite_create("pipeline_reuse");
    TCase *t = tcase_create("pipeline_reuse");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, shared_passes_give_the_same_files);
    suite_add_tcase(s, t);
    return s;
}
