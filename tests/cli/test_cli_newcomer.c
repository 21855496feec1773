/* A newcomer's first commands through the binary: a mistyped command, a
 * missing config, a run directory or a checkpoint where a model file goes,
 * run --help, a second run into the same folder, the run's job counter. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../kdtest.h"

/* dir/c.yaml: a tiny idx experiment (a teacher, one student, one variant) */
static const char *tiny_config(const char *dir)
{
    static char path[600];
    char y[4096];
    kdt_write_idx(dir, "train", 120, 4);
    kdt_write_idx(dir, "test", 40, 4);
    snprintf(y, sizeof y,
             "name: tiny\n"
             "cache_dir: \"\"\n"
             "data: {dataset: idx, train_images: %s/train-images, train_labels: %s/train-labels,\n"
             "       test_images: %s/test-images, test_labels: %s/test-labels, shape: [1, 4, 4]}\n"
             "teacher:\n"
             "  layers: [{type: flatten}, {type: dense, units: 8}, {type: relu},\n"
             "           {type: dense, units: 4}]\n"
             "  train: {epochs: 1, batch_size: 16, optimizer: {lr: 0.1}}\n"
             "students:\n"
             "  - name: s\n"
             "    layers: [{type: flatten}, {type: dense, units: 4}]\n"
             "    train: {epochs: 1, batch_size: 16, optimizer: {lr: 0.1}}\n"
             "compress:\n"
             "  - {name: p, source: teacher, passes: [{type: prune, sparsity: 0.5}]}\n"
             "report: {plots: false}\n",
             dir, dir, dir, dir);
    snprintf(path, sizeof path, "%s/c.yaml", dir);
    kdt_write(path, y, strlen(y));
    return path;
}

START_TEST(unknown_command)
{
    char out[8192];
    int rc = kdt_kdbench(out, sizeof out, "runn x.yaml");
    ck_assert_msg(rc == 2 && strstr(out, "did you mean \"run\"?"), "exit %d: %s", rc, out);
    rc = kdt_kdbench(out, sizeof out, "comapre a b");
    ck_assert_msg(rc == 2 && strstr(out, "did you mean \"compare\"?"), "exit %d: %s", rc, out);
    rc = kdt_kdbench(out, sizeof out, "xyzzy");
    ck_assert_msg(rc == 2 && strstr(out, "unknown command") && strstr(out, "commands:"),
                  "exit %d: %s", rc, out);
}
END_TEST

START_TEST(missing_config)
{
    /* exit 1 with "cannot open", as if the data were missing */
    char dir[256], out[8192];
    kdt_tmpdir(dir, sizeof dir);
    const char *cmds[2] = {"run", "check"};
    for (int i = 0; i < 2; i++) {
        int rc = kdt_kdbench(out, sizeof out, "%s %s/nothere.yaml", cmds[i], dir);
        ck_assert_msg(rc == 2 && strstr(out, "nothere.yaml") && strstr(out, "No such file") &&
                          strstr(out, "experiments/quick.yaml"),
                      "%s: exit %d: %s", cmds[i], rc, out);
        rc = kdt_kdbench(out, sizeof out, "%s %s", cmds[i], dir);
        ck_assert_msg(rc == 2 && strstr(out, "is a directory"), "%s: exit %d: %s", cmds[i], rc,
                      out);
    }
}
END_TEST

START_TEST(run_help)
{
    /* described the teacher-only run of an early version */
    char out[8192];
    int rc = kdt_kdbench(out, sizeof out, "run --help");
    ck_assert_int_eq(rc, 0);
    const char *words[] = {"each student", "from scratch", "distilled", "compression", "variant",
                           "latency", "report", "[k/N]", "experiments/quick.yaml", "moved aside",
                           "--resume"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        ck_assert_msg(strstr(out, words[i]) != NULL, "\"%s\" not in: %s", words[i], out);
}
END_TEST

START_TEST(runs_and_checkpoints_as_models)
{
    char dir[256], out[16384], run[400];
    kdt_tmpdir(dir, sizeof dir);
    const char *c = tiny_config(dir);
    snprintf(run, sizeof run, "%s/run", dir);
    int rc = kdt_kdbench(out, sizeof out, "run %s --out %s --quiet --threads 1", c, run);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
    /* "read error" */
    rc = kdt_kdbench(out, sizeof out, "eval %s", run);
    ck_assert_msg(rc == 2 && strstr(out, "is a directory") && strstr(out, "model file") &&
                      strstr(out, "run/teacher.kdm"),
                  "exit %d: %s", rc, out);
    /* "not a kdbench model file (bad magic)" */
    rc = kdt_kdbench(out, sizeof out, "inspect %s/teacher.ckpt", run);
    ck_assert_msg(rc == 2 && strstr(out, "checkpoint") && strstr(out, "use ") &&
                      strstr(out, "run/teacher.kdm"),
                  "exit %d: %s", rc, out);
    rc = kdt_kdbench(out, sizeof out, "eval %s/students/s/distilled-seed1.ckpt", run);
    ck_assert_msg(rc == 2 && strstr(out, "students/s/distilled-seed1.kdm"), "exit %d: %s", rc,
                  out);
    rc = kdt_kdbench(out, sizeof out, "inspect %s/teacher.kdm", run);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
}
END_TEST

START_TEST(rerun_keeps_earlier_run)
{
    /* a second run without --resume wrote over the first, silently */
    char dir[256], out[16384], run[400], path[600];
    kdt_tmpdir(dir, sizeof dir);
    const char *c = tiny_config(dir);
    snprintf(run, sizeof run, "%s/run", dir);
    int rc = kdt_kdbench(out, sizeof out, "run %s --out %s --quiet --threads 1", c, run);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
    snprintf(path, sizeof path, "%s/results.json", run);
    char *first = NULL;
    size_t n = 0;
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert(getdelim(&first, &n, 0, f) > 0);
    fclose(f);
    rc = kdt_kdbench(out, sizeof out, "run %s --out %s/ --quiet --threads 1 --set seed=5", c, run);
    ck_assert_msg(rc == 0 && strstr(out, "held an earlier run: moved to") &&
                      strstr(out, "run.1"),
                  "exit %d: %s", rc, out);
    snprintf(path, sizeof path, "%s.1/results.json", run);
    char *kept = NULL;
    n = 0;
    f = fopen(path, "r");
    ck_assert_msg(f != NULL, "the earlier run is gone");
    ck_assert(getdelim(&kept, &n, 0, f) > 0);
    fclose(f);
    ck_assert_str_eq(kept, first);
    snprintf(path, sizeof path, "%s/results.json", run);
    ck_assert_int_eq(access(path, R_OK), 0);
    snprintf(path, sizeof path, "%s/run.log", run);
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    free(kept);
    kept = NULL;
    ck_assert(getdelim(&kept, &n, 0, f) > 0);
    fclose(f);
    ck_assert_msg(strstr(kept, "moved to"), "not in run.log: %s", kept);
    /* a third: the next free name; --resume continues in place */
    rc = kdt_kdbench(out, sizeof out, "run %s --out %s --quiet --threads 1", c, run);
    ck_assert_msg(rc == 0 && strstr(out, "run.2"), "exit %d: %s", rc, out);
    rc = kdt_kdbench(out, sizeof out, "run %s --out %s --quiet --threads 1 --resume", c, run);
    ck_assert_msg(rc == 0 && !strstr(out, "moved to"), "exit %d: %s", rc, out);
    snprintf(path, sizeof path, "%s.3", run);
    ck_assert_int_ne(access(path, F_OK), 0);
    free(first);
    free(kept);
}
END_TEST

START_TEST(job_counter)
{
    /* one line per job: teacher, s/scratch, s/distilled, p, report */
    char dir[256], out[16384];
    kdt_tmpdir(dir, sizeof dir);
    const char *c = tiny_config(dir);
    int rc = kdt_kdbench(out, sizeof out, "run %s --out %s/run --threads 1", c, dir);
    ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
    const char *lines[] = {"[1/5] teacher", "[2/5] s/scratch", "[3/5] s/distilled", "[4/5] p",
                           "[5/5] report"};
    const char *at = out;
    for (int i = 0; i < 5; i++) {
        const char *p = strstr(at, lines[i]);
        ck_assert_msg(p != NULL, "\"%s\" not in order in: %s", lines[i], out);
        at = p;
    }
}
END_TEST

Suite *suite_cli_newcomer(void)
{
    Suite *s = suite_create("cli_newcomer");
    TCase *t = tcase_create("cli_newcomer");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, unknown_command);
    tcase_add_test(t, missing_config);
    tcase_add_test(t, run_help);
    tcase_add_test(t, runs_and_checkpoints_as_models);
    tcase_add_test(t, rerun_keeps_earlier_run);
    tcase_add_test(t, job_counter);
    suite_add_tcase(s, t);
    return s;
}
