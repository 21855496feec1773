/* What a run holds while it runs (issue 12: peak memory).  What the run's
 * thread holds (kd_alloc_track's count) is read each time the run writes a
 * log line, through a progress stream whose writes land here: points on the
 * run's own thread, so the figures are the same every run (and under ASan). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../data/data.h"
#include "../../pipeline/pipeline.h"
#include "../kdtest.h"

#define NVAR 5

/* The heap in use when each "[k/N] vJ" stage line began (at[J-1], bytes). */
typedef struct {
    char line[512];
    size_t len;
    double at[NVAR];
} heap_log;

static double heap_in_use(void) { return (double)kd_alloc_held(); }

static ssize_t on_write(void *cookie, const char *buf, size_t n)
{
    heap_log *h = cookie;
    for (size_t i = 0; i < n; i++) {
        if (buf[i] != '\n') {
            if (h->len + 1 < sizeof h->line)
                h->line[h->len++] = buf[i];
            continue;
        }
        h->line[h->len] = 0;
        h->len = 0;
        const char *p = strstr(h->line, "] v");
        int j;
        if (h->line[0] == '[' && p && sscanf(p, "] v%d", &j) == 1 && j >= 1 && j <= NVAR)
            h->at[j - 1] = heap_in_use();
    }
    return (ssize_t)n;
}

/* A 784-1024-1024-10 teacher (7.5 MB of weights) and NVAR variants of it,
 * each pruned to half in one shot and the same work each. */
static void write_config(const char *path)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "name: mem\nseed: 1\nthreads: 1\ncache_dir: \"\"\n"
               "data: {train_subset: 512, test_subset: 256}\n"
               "teacher:\n"
               "  layers: [{type: flatten}, {type: dense, units: 1024}, {type: relu},\n"
               "           {type: dense, units: 1024}, {type: relu}, {type: dense, units: 10}]\n"
               "  train: {epochs: 1, batch_size: 128, optimizer: {kind: sgd, lr: 0.01}}\n"
               "compress:\n");
    for (int j = 1; j <= NVAR; j++)
        fprintf(f, "  - {name: v%d, source: teacher, store: fastest,\n"
                   "     passes: [{type: prune, sparsity: 0.5}]}\n", j);
    fprintf(f, "report: {plots: false}\n");
    ck_assert_int_eq(fclose(f), 0);
}

/* The compress stage holds one variant at a time: before the fix every
 * variant (with its batch buffers from being measured) stayed until the
 * stage's end, so the heap grew by a model (about 15 MB) per variant. */
START_TEST(variants_are_freed_as_they_go)
{
    if (access(DATA_FASHION_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0)
        KDT_SKIP("dataset-fashion-mnist is not installed");
    char dir[256], cfg[300], out[300];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(cfg, sizeof cfg, "%s/mem.yaml", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    write_config(cfg);
    kd_err e = {0};
    exp_spec *s = calloc(1, sizeof *s);
    ck_assert_ptr_nonnull(s);
    ck_assert_msg(pipeline_config_load(cfg, NULL, 0, s, &e) == KD_OK, "%s", e.msg);
    heap_log h = {0};
    cookie_io_functions_t io = {.write = on_write};
    FILE *progress = fopencookie(&h, "w", io);
    ck_assert_ptr_nonnull(progress);
    setvbuf(progress, NULL, _IONBF, 0); /* every write reaches on_write at once */
    pipeline_opts o = {.out_dir = out, .quiet = 0, .progress = progress};
    kd_alloc_track(1);
    int rc = pipeline_run(s, &o, &e);
    kd_alloc_track(0);
    fclose(progress);
    free(s);
    ck_assert_msg(rc == KD_OK, "%s", e.msg);
    for (int j = 0; j < NVAR; j++) /* the data (400 KB) and the teacher are held by then */
        ck_assert_msg(h.at[j] > 1e6, "no stage line for v%d (or nothing counted)", j + 1);
    /* one variant's weights alone are 3.7 MB (half of them kept, as CSR or
     * dense); growth below that over four variants means none is kept */
    double grown = h.at[NVAR - 1] - h.at[0];
    ck_assert_msg(grown < 3e6, "the heap grew by %.1f MB from v1 to v%d (%.1f %.1f %.1f %.1f %.1f MB)",
                  grown / 1e6, NVAR, h.at[0] / 1e6, h.at[1] / 1e6, h.at[2] / 1e6, h.at[3] / 1e6,
                  h.at[4] / 1e6);
}
END_TEST

Suite *suite_pipeline_memory(void)
{
    Suite *s = suite_create("pipeline_memory");
    TCase *t = tcase_create("pipeline_memory");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, variants_are_freed_as_they_go);
    suite_add_tcase(s, t);
    return s;
}
