/* End to end through the kdbench binary (path in $KD_BIN, set by make test):
 * exit statuses, --help, a small real training run, determinism, kill+resume. */
#include <check.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../data/data.h"
#include "../kdtest.h"

/* quick.yaml made quicker for the tests: one student seed, fewer epochs
 * (every stage still runs; the file's own budgets are for people) */
#define QUICK_STUDENT "--set 'students.0.seeds=[1]' --set students.0.train.epochs=5 "
#define QUICK_SETS QUICK_STUDENT "--set teacher.train.epochs=5 "


static int files_equal(const char *a, const char *b)
{
    uint8_t *pa, *pb;
    size_t na, nb;
    kd_err e;
    if (kd_read_file(a, 1 << 30, &pa, &na, &e) || kd_read_file(b, 1 << 30, &pb, &nb, &e))
        return 0;
    int eq = na == nb && memcmp(pa, pb, na) == 0;
    kd_free(pa);
    kd_free(pb);
    return eq;
}

START_TEST(help_everywhere)
{
    char out[8192];
    const char *cmds[] = {"run", "check", "eval", "inspect"};
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "--help"), 0);
    ck_assert_ptr_nonnull(strstr(out, "commands:"));
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(kdt_kdbench(out, sizeof out, "%s --help", cmds[i]), 0);
        ck_assert_ptr_nonnull(strstr(out, "usage: kdbench"));
    }
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "frobnicate"), 2);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "run"), 2);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "run experiments/quick.yaml --bogus"), 2);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "run experiments/quick.yaml --threads x"), 2);
    /* eval's --threads is checked before the model is opened (it was atoi: "x" meant 0) */
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "eval no-such.kdm --threads x"), 2);
    ck_assert_ptr_nonnull(strstr(out, "--threads takes 0 to 256"));
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "eval no-such.kdm --threads -3"), 2);
}
END_TEST

START_TEST(check_reports_position)
{
    char dir[256], path[512], out[8192];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/bad.yaml", dir);
    const char *y = "name: bad\nteacher:\n  layers:\n    - {type: dense, units: 10}\n"
                    "  train:\n    epochs: ten\n    optimizer: {lr: 0.1}\n";
    kdt_write(path, y, strlen(y));
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "check %s", path), 2);
    ck_assert_msg(strstr(out, ":6:") != NULL, "no line 6 in: %s", out);
    ck_assert_msg(strstr(out, "epochs") != NULL, "key not named: %s", out);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "check experiments/quick.yaml"), 0);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "check experiments/quick.yaml --set teacher.train.epochs=0"), 2);
    ck_assert_ptr_nonnull(strstr(out, "--set"));
    /* a missing config is a usage error, named (it was exit 1, as unreadable data) */
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "check %s/missing.yaml", dir), 2);
    ck_assert_ptr_nonnull(strstr(out, "missing.yaml"));
}
END_TEST

static double result_accuracy(const char *dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/results.json", dir);
    uint8_t *p;
    size_t n;
    kd_err e;
    ck_assert_int_eq(kd_read_file(path, 1 << 20, &p, &n, &e), 0);
    char *text = kd_malloc(n + 1);
    memcpy(text, p, n);
    text[n] = 0;
    char *a = strstr(text, "\"accuracy\": ");
    ck_assert_ptr_nonnull(a);
    double acc = atof(a + 12);
    kd_free(p);
    kd_free(text);
    return acc;
}

/* A real run on 2,000 Fashion-MNIST images: files, accuracy, determinism. */
START_TEST(quick_run_end_to_end)
{
    if (access(DATA_FASHION_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0)
        KDT_SKIP("dataset-fashion-mnist is not installed");
    char dir[256], a[512], b[512], out[16384], pa[600], pb[2048];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    ck_assert_msg(kdt_kdbench(out, sizeof out,
                     "run experiments/quick.yaml " QUICK_SETS "--threads 2 --quiet --out %s "
                     "--set cache_dir=%s/ca",
                     a, dir) == 0, "%s", out);
    const char *files[] = {"config.yaml", "run.log", "teacher.kdm", "teacher.ckpt",
                           "metrics.jsonl", "results.json", "results.csv",
                           "students/mlp32/scratch-seed1.kdm", "students/mlp32/distilled-seed1.kdm",
                           "compressed/teacher_prune.kdm", "compressed/student_neurons.kdm",
                           "compressed/teacher_int8.kdm", "weights_hist.csv",
                           "sparsity.csv", "env.json", "report/report.md", "report/report.html"};
    for (int i = 0; i < (int)(sizeof files / sizeof files[0]); i++) {
        snprintf(pa, sizeof pa, "%s/%s", a, files[i]);
        ck_assert_msg(access(pa, R_OK) == 0, "missing %s", pa);
    }
    double acc = result_accuracy(a);
    ck_assert_msg(acc > 0.75, "quick teacher accuracy %.3f <= 0.75", acc);
    /* structured pruning gives a physically smaller file; the rows say what was done */
    snprintf(pa, sizeof pa, "%s/compressed/student_neurons.kdm", a);
    snprintf(pb, sizeof pb, "%s/students/mlp32/distilled-seed1.kdm", a);
    ck_assert_msg(kd_file_size(pa) * 10 < kd_file_size(pb) * 6, "%lld vs %lld bytes",
                  kd_file_size(pa), kd_file_size(pb));
    snprintf(pb, sizeof pb,
             "grep -q '\"teacher_prune\", \"role\": \"compressed\"' %s/results.json && "
             "grep -q 'prune(global,0.80,oneshot)+finetune(2)' %s/results.json",
             a, a);
    ck_assert_int_eq(system(pb), 0);
    /* a scratch student names no teacher; the distilled one does */
    snprintf(pb, sizeof pb, "! grep '\"mlp32/scratch\"' %s/results.json | grep -q '\"teacher\":' && "
             "grep '\"mlp32/distilled\"' %s/results.json | grep -q '\"teacher\": \"teacher\"'",
             a, a);
    ck_assert_int_eq(system(pb), 0);
    /* int8: a quarter of the fp32 file, and the row says so */
    snprintf(pa, sizeof pa, "%s/compressed/teacher_int8.kdm", a);
    snprintf(pb, sizeof pb, "%s/teacher.kdm", a);
    ck_assert_msg(kd_file_size(pa) * 100 < kd_file_size(pb) * 27, "%lld vs %lld bytes",
                  kd_file_size(pa), kd_file_size(pb));
    snprintf(pb, sizeof pb, "grep -q '\"teacher_int8\".*\"format\": \"int8\", \"weight_bits\": 8' %s/results.json", a);
    ck_assert_int_eq(system(pb), 0);
    /* the resolved config is itself a valid config */
    snprintf(pa, sizeof pa, "%s/config.yaml", a);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "check %s", pa), 0);
    /* same config + seed + threads => the same model, byte for byte */
    ck_assert_int_eq(kdt_kdbench(out, sizeof out,
                        "run experiments/quick.yaml " QUICK_SETS "--threads 2 --quiet --out %s "
                        "--set cache_dir=%s/cb",
                        b, dir), 0);
    const char *models[] = {"teacher.kdm", "students/mlp32/scratch-seed1.kdm",
                            "students/mlp32/distilled-seed1.kdm"};
    for (int i = 0; i < 3; i++) {
        snprintf(pa, sizeof pa, "%s/%s", a, models[i]);
        snprintf(pb, sizeof pb, "%s/%s", b, models[i]);
        ck_assert_msg(files_equal(pa, pb), "two identical runs gave different %s", models[i]);
    }
    /* students: both rows; the teacher cache: a third run with a's cache
     * does not train the teacher (its log says so) and gets the same bytes */
    snprintf(pa, sizeof pa, "%s/results.json", a);
    snprintf(pb, sizeof pb, "grep -q '\"mlp32/distilled\"' %s && grep -q '\"mlp32/scratch\"' %s",
             pa, pa);
    ck_assert_int_eq(system(pb), 0);
    char c[512];
    snprintf(c, sizeof c, "%s/c", dir);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out,
                        "run experiments/quick.yaml " QUICK_SETS "--threads 2 --quiet --out %s "
                        "--set cache_dir=%s/ca "
                        "--set name=other --set compress.0.passes.0.block=4",
                        c, dir), 0);
    snprintf(pb, sizeof pb, "grep -q 'found in the cache' %s/run.log && ! grep -q '^teacher epoch' %s/run.log", c, c);
    ck_assert_msg(system(pb) == 0, "the third run retrained its teacher");
    /* (its prune pass in blocks of 4 rows: the row says so, the config keeps it) */
    snprintf(pb, sizeof pb, "grep -q 'prune(global,0.80,oneshot,block4)+finetune(2)' %s/results.json "
             "&& grep -q 'block: 4' %s/config.yaml", c, c);
    ck_assert_msg(system(pb) == 0, "the block-pruned row or its config");
    snprintf(pa, sizeof pa, "%s/teacher.kdm", a);
    snprintf(pb, sizeof pb, "%s/teacher.kdm", c);
    ck_assert_msg(files_equal(pa, pb), "the cached teacher differs");
    /* eval and inspect on the model */
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "inspect %s", pa), 0);
    ck_assert_ptr_nonnull(strstr(out, "dense"));
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "eval %s --threads 1", pa), 0);
    ck_assert_ptr_nonnull(strstr(out, "accuracy"));
    /* a truncated model file is refused with a message, status 1 */
    snprintf(pb, sizeof pb, "%s/cut.kdm", dir);
    FILE *f = fopen(pa, "rb");
    char buf[1000];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    kdt_write(pb, buf, n);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "inspect %s", pb), 1);
    ck_assert_ptr_nonnull(strstr(out, "cut.kdm"));
}
END_TEST

/* Kill a run after its first checkpoint, resume it, compare with an
 * uninterrupted run: the same model bytes. */
START_TEST(kill_and_resume)
{
    if (access(DATA_FASHION_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0)
        KDT_SKIP("dataset-fashion-mnist is not installed");
    char dir[256], a[512], b[512], out[16384], pa[600], pb[600], cmd[2048];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(a, sizeof a, "%s/full", dir);
    snprintf(b, sizeof b, "%s/killed", dir);
    const char *sets = QUICK_STUDENT "--set data.train_subset=6000 --set teacher.train.epochs=4 "
                                  "--set 'cache_dir=\"\"'";
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "run experiments/quick.yaml --threads 2 --quiet %s --out %s", sets, a), 0);
    snprintf(cmd, sizeof cmd, "exec %s run experiments/quick.yaml --threads 2 --quiet %s --out %s", kdt_bin(), sets, b);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    snprintf(pb, sizeof pb, "%s/teacher.ckpt", b);
    for (int i = 0; i < 6000 && access(pb, R_OK) != 0; i++)
        usleep(5000);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    ck_assert_msg(WIFSIGNALED(st), "the run finished before it could be killed");
    ck_assert_msg(kdt_kdbench(out, sizeof out, "run experiments/quick.yaml --threads 2 --quiet %s --out %s --resume", sets, b) == 0, "%s", out);
    snprintf(pa, sizeof pa, "%s/teacher.kdm", a);
    snprintf(pb, sizeof pb, "%s/teacher.kdm", b);
    ck_assert_msg(files_equal(pa, pb), "resumed run differs from the uninterrupted one");
    snprintf(pb, sizeof pb, "%s/run.log", b);
    snprintf(cmd, sizeof cmd, "grep -q 'resuming from' %s", pb);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

Suite *suite_cli(void)
{
    Suite *s = suite_create("cli");
    TCase *t = tcase_create("cli");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, help_everywhere);
    tcase_add_test(t, check_reports_position);
    tcase_add_test(t, quick_run_end_to_end);
    tcase_add_test(t, kill_and_resume);
    suite_add_tcase(s, t);
    return s;
}
