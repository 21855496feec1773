/* An experiment on 2 ranks writes what one process writes: the same rows
 * (accuracy, bytes, non-zeros, sparsity, per-seed accuracies), the same
 * model files byte for byte, the same sensitivity table and the same curves
 * (timings aside).  Both runs happen in this process pair: rank 0 alone
 * first (no communicator), then both ranks together. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../data/data.h"
#include "../../pipeline/pipeline.h"
#include "../../reports/reports.h"
#include "../kdtest.h"
#include "experiment.h"
#include "mpitest.h"

static const char *extra_str(const rep_row *r, const char *key)
{
    for (int i = 0; i < r->nextra; i++)
        if (!r->extra[i].is_num && !strcmp(r->extra[i].key, key))
            return r->extra[i].str;
    return "";
}

static double extra_num(const rep_row *r, const char *key)
{
    for (int i = 0; i < r->nextra; i++)
        if (r->extra[i].is_num && !strcmp(r->extra[i].key, key))
            return r->extra[i].num;
    return -1;
}

static void same_file(const char *a_dir, const char *b_dir, const char *name)
{
    char a[600], b[600];
    uint8_t *pa = NULL, *pb = NULL;
    size_t na = 0, nb = 0;
    kd_err e;
    snprintf(a, sizeof a, "%s/%s", a_dir, name);
    snprintf(b, sizeof b, "%s/%s", b_dir, name);
    ck_assert_msg(kd_read_file(a, 1u << 30, &pa, &na, &e) == KD_OK, "%s", e.msg);
    ck_assert_msg(kd_read_file(b, 1u << 30, &pb, &nb, &e) == KD_OK, "%s", e.msg);
    ck_assert_msg(na == nb && memcmp(pa, pb, na) == 0, "%s differs between 1 and 2 ranks", name);
    kd_free(pa);
    kd_free(pb);
}

/* metrics.jsonl without the timings: every line cut before "seconds". */
static void same_curves(const char *a_dir, const char *b_dir)
{
    char pa[600], pb[600], la[1024], lb[1024];
    snprintf(pa, sizeof pa, "%s/metrics.jsonl", a_dir);
    snprintf(pb, sizeof pb, "%s/metrics.jsonl", b_dir);
    FILE *fa = fopen(pa, "r"), *fb = fopen(pb, "r");
    ck_assert(fa && fb);
    int n = 0;
    for (;;) {
        char *ra = fgets(la, sizeof la, fa), *rb = fgets(lb, sizeof lb, fb);
        ck_assert_msg(!ra == !rb, "metrics.jsonl: %d lines on one side, more on the other", n);
        if (!ra)
            break;
        char *ca = strstr(la, ", \"seconds\""), *cb = strstr(lb, ", \"seconds\"");
        ck_assert(ca && cb);
        *ca = *cb = 0;
        ck_assert_msg(!strcmp(la, lb), "metrics line %d: %s vs %s", n + 1, la, lb);
        n++;
    }
    ck_assert_int_gt(n, 8);
    fclose(fa);
    fclose(fb);
}

/* Every line of log holding what is a worker's line ("[rank N] ..."). */
static int only_on_ranks(const char *log, const char *what)
{
    for (const char *p = log; (p = strstr(p, what)); p += strlen(what)) {
        const char *bol = p;
        while (bol > log && bol[-1] != '\n')
            bol--;
        if (strncmp(bol, "[rank ", 6) != 0)
            return 0;
    }
    return 1;
}

static void run(const exp_spec *s, const char *out, dist_comm *d)
{
    pipeline_opts o = {.out_dir = out, .quiet = 1, .progress = stderr, .dist = d};
    kd_err e = {0};
    int rc = pipeline_run(s, &o, &e);
    ck_assert_msg(rc == KD_OK, "rank %d: %s", dist_rank(d), e.msg);
}

START_TEST(two_ranks_write_what_one_writes)
{
    dist_comm *d = kdt_mpi();
    kd_err e;
    int have = access(DATA_FASHION_DIR "/train-images-idx3-ubyte.gz", R_OK) == 0;
    ck_assert_int_eq(dist_sum_int(d, &have, &e), KD_OK);
    if (have < 2)
        KDT_SKIP("dataset-fashion-mnist is not installed");
    char dir[256] = "", cfg[300], one[300], two[300];
    if (dist_rank(d) == 0)
        kdt_tmpdir(dir, sizeof dir);
    void *p = dir;
    size_t n = sizeof dir;
    ck_assert_int_eq(dist_bcast(d, &p, &n, 0, &e), KD_OK); /* one folder for both */
    if (dist_rank(d) != 0) {
        memcpy(dir, p, sizeof dir);
        kd_free(p);
    }
    snprintf(cfg, sizeof cfg, "%s/m.yaml", dir);
    snprintf(one, sizeof one, "%s/one", dir);
    snprintf(two, sizeof two, "%s/two", dir);
    if (dist_rank(d) == 0)
        ck_assert_int_eq(kdt_mpi_experiment(cfg, 2), 0);
    ck_assert_int_eq(dist_barrier(d, &e), KD_OK);
    exp_spec *s = calloc(1, sizeof *s);
    ck_assert_msg(pipeline_config_load(cfg, NULL, 0, s, &e) == KD_OK, "%s", e.msg);
    if (dist_rank(d) == 0)
        run(s, one, NULL); /* one process */
    ck_assert_int_eq(dist_barrier(d, &e), KD_OK);
    run(s, two, d); /* two ranks */
    free(s);
    if (dist_rank(d) != 0)
        return;
    const char *files[] = {"teacher.kdm", "students/a/scratch-seed1.kdm",
                           "students/a/distilled-seed2.kdm", "students/b/distilled-seed1.kdm",
                           "compressed/p.kdm", "compressed/p-seed2.kdm", "compressed/q.kdm",
                           "sensitivity.csv", "sparsity.csv"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        same_file(one, two, files[i]);
    same_curves(one, two);
    rep_row *ra = NULL, *rb = NULL;
    int na = 0, nb = 0;
    char path[600];
    snprintf(path, sizeof path, "%s/results.json", one);
    ck_assert_msg(rep_read_results(path, NULL, 0, &ra, &na, &e) == KD_OK, "%s", e.msg);
    snprintf(path, sizeof path, "%s/results.json", two);
    ck_assert_msg(rep_read_results(path, NULL, 0, &rb, &nb, &e) == KD_OK, "%s", e.msg);
    ck_assert_int_eq(na, 7); /* teacher, a x 2 modes, b x 2 modes, p, q */
    ck_assert_int_eq(na, nb);
    for (int i = 0; i < na; i++) {
        ck_assert_str_eq(ra[i].name, rb[i].name);
        ck_assert_msg(ra[i].accuracy == rb[i].accuracy, "%s: accuracy %.6f vs %.6f", ra[i].name,
                      ra[i].accuracy, rb[i].accuracy);
        ck_assert_int_eq(ra[i].size_bytes, rb[i].size_bytes);
        ck_assert_int_eq(ra[i].nonzero_params, rb[i].nonzero_params);
        ck_assert(extra_num(&ra[i], "sparsity") == extra_num(&rb[i], "sparsity"));
        ck_assert_str_eq(extra_str(&ra[i], "accuracy_per_seed"),
                         extra_str(&rb[i], "accuracy_per_seed"));
        ck_assert_str_eq(extra_str(&ra[i], "passes"), extra_str(&rb[i], "passes"));
    }
    kd_free(ra);
    kd_free(rb);
    /* the workers' lines are in rank 0's run.log, with their rank */
    uint8_t *log = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/run.log", two);
    ck_assert(kd_read_file(path, 1u << 24, &log, &len, &e) == KD_OK);
    log = kd_realloc(log, len + 1);
    log[len] = 0;
    ck_assert_msg(strstr((char *)log, "[rank 1] "), "no line from rank 1 in run.log");
    ck_assert(strstr((char *)log, "MPI: 2 ranks"));
    ck_assert_msg(strstr((char *)log, "done on rank 1: "), "no per-job cost line for rank 1");
    /* rank 0 does not redo what the jobs did: the teacher's (and the
     * assistant's) logits are computed on the ranks that train, and every
     * seed's accuracy comes back with its job */
    ck_assert_msg(only_on_ranks((char *)log, "distillation: the teacher's logits"),
                  "rank 0 computed the teacher's logits after the jobs");
    ck_assert_msg(only_on_ranks((char *)log, "(a teacher assistant); its logits computed"),
                  "rank 0 computed the assistant's logits after the jobs");
    ck_assert_msg(strstr((char *)log, "distillation: the teacher's logits"), "no logits line");
    /* the timeline: each rank's setup and jobs, and the summary */
    ck_assert_msg(strstr((char *)log, "[rank 1] data loaded") &&
                  strstr((char *)log, "[rank 1] teacher in hand") &&
                  strstr((char *)log, "[rank 1] job ") && strstr((char *)log, "[rank 0] job "),
                  "no timeline lines for both ranks");
    ck_assert_msg(strstr((char *)log, "timeline summary: ideal"), "no timeline summary");
    kd_free(log);
}
END_TEST

/* A job that fails on rank 1 (its copy of the spec names a model file that
 * is not there) fails the run, says where, and its log lines reach rank 0's
 * run.log with its rank — read past the failed job's curves and figures. */
START_TEST(a_job_failing_on_rank_1_is_reported_with_its_lines)
{
    dist_comm *d = kdt_mpi();
    kd_err e;
    int have = access(DATA_FASHION_DIR "/train-images-idx3-ubyte.gz", R_OK) == 0;
    ck_assert_int_eq(dist_sum_int(d, &have, &e), KD_OK);
    if (have < 2)
        KDT_SKIP("dataset-fashion-mnist is not installed");
    char dir[256] = "", cfg[300], out[300];
    if (dist_rank(d) == 0)
        kdt_tmpdir(dir, sizeof dir);
    void *p = dir;
    size_t n = sizeof dir;
    ck_assert_int_eq(dist_bcast(d, &p, &n, 0, &e), KD_OK);
    if (dist_rank(d) != 0) {
        memcpy(dir, p, sizeof dir);
        kd_free(p);
    }
    snprintf(cfg, sizeof cfg, "%s/f.yaml", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    if (dist_rank(d) == 0) {
        FILE *f = fopen(cfg, "w");
        ck_assert(f);
        fprintf(f, "name: f\nseed: 1\nthreads: 1\ncache_dir: \"\"\n"
                   "data: {train_subset: 300, test_subset: 100}\n"
                   "teacher:\n"
                   "  layers: [{type: flatten}, {type: dense, units: 8}, {type: relu},\n"
                   "           {type: dense, units: 10}]\n"
                   "  train: {epochs: 1, batch_size: 64, optimizer: {kind: adamw, lr: 0.003}}\n"
                   "compress:\n"
                   "  - name: p\n"
                   "    source: teacher\n"
                   "    seeds: [1, 2, 3]\n"
                   "    passes:\n"
                   "      - {type: prune, scope: global, sparsity: 0.5}\n"
                   "      - {type: finetune, epochs: 1, lr: 0.005, batch_size: 64}\n"
                   "report: {plots: false}\n");
        ck_assert_int_eq(fclose(f), 0);
    }
    ck_assert_int_eq(dist_barrier(d, &e), KD_OK);
    exp_spec *s = calloc(1, sizeof *s);
    ck_assert_msg(pipeline_config_load(cfg, NULL, 0, s, &e) == KD_OK, "%s", e.msg);
    if (dist_rank(d) == 1) { /* only this rank's jobs fail */
        s->variants[0].source_kind = CFG_SRC_FILE;
        snprintf(s->variants[0].source_path, sizeof s->variants[0].source_path,
                 "%s/not-there.kdm", dir);
    }
    pipeline_opts o = {.out_dir = out, .quiet = 1, .progress = stderr, .dist = d};
    kd_err re = {0};
    int rc = pipeline_run(s, &o, &re);
    free(s);
    ck_assert_msg(rc != KD_OK, "rank %d: the run went through", dist_rank(d));
    if (dist_rank(d) != 0)
        return;
    ck_assert_msg(strstr(re.msg, "cannot open") && strstr(re.msg, "(on rank 1)"), "%s", re.msg);
    uint8_t *log = NULL;
    size_t len = 0;
    char path[600];
    snprintf(path, sizeof path, "%s/run.log", out);
    ck_assert(kd_read_file(path, 1u << 24, &log, &len, &e) == KD_OK);
    log = kd_realloc(log, len + 1);
    log[len] = 0;
    ck_assert_msg(strstr((char *)log, "[rank 1] p seed "), "the failed job's lines are not in "
                  "run.log:\n%s", (char *)log);
    kd_free(log);
}
END_TEST

Suite *suite_mpi_spread(void)
{
    Suite *s = suite_create("mpi_spread");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, two_ranks_write_what_one_writes);
    tcase_add_test(tc, a_job_failing_on_rank_1_is_reported_with_its_lines);
    suite_add_tcase(s, tc);
    return s;
}
