/* The run folder under stress, through the kdbench binary ($KD_BIN): one
 * writer at a time, --resume refusing a changed config, signals, stale
 * temporary files, fatal errors in run.log, an overlong --out, a diverged
 * run's metrics.  Every run is tiny (1,000-4,000 images, a few seconds). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../data/data.h"
#include "../../reports/reports.h"
#include "../kdtest.h"

/* teacher-only unless students is set; %s: lr, epochs, subset, extra sections */
static const char *const tiny_yaml =
    "name: tiny\nseed: 1\nthreads: 1\ncache_dir: \"\"\n"
    "data:\n  dataset: fashion-mnist\n  train_subset: %d\n  test_subset: 500\n"
    "teacher:\n  layers:\n    - {type: flatten}\n    - {type: dense, units: %d}\n"
    "    - {type: relu}\n    - {type: dense, units: 10}\n"
    "  train:\n    epochs: %d\n    batch_size: 50\n    optimizer: {kind: %s, lr: %s}\n"
    "%s"
    "report: {format: md, plots: %s}\n";

static const char *const student_yaml =
    "students:\n  - name: s8\n    layers:\n      - {type: flatten}\n"
    "      - {type: dense, units: 8}\n      - {type: relu}\n      - {type: dense, units: 10}\n"
    "    train:\n      epochs: 2\n      batch_size: 50\n"
    "      optimizer: {kind: adamw, lr: 0.003}\n";

static int have_data(void)
{
    if (access(DATA_FASHION_DIR "/train-images-idx3-ubyte.gz", R_OK) == 0)
        return 1;
    return 0;
}

static void write_config(const char *path, int subset, int units, int epochs, const char *opt,
                         const char *lr, int students, int plots)
{
    char y[4096];
    int n = snprintf(y, sizeof y, tiny_yaml, subset, units, epochs, opt, lr,
                     students ? student_yaml : "", plots ? "true" : "false");
    kdt_write(path, y, (size_t)n);
}

/* The whole file as a NUL-terminated string (kd_free it); "" when missing. */
static char *slurp(const char *path)
{
    uint8_t *p = NULL;
    size_t n = 0;
    kd_err e;
    if (kd_read_file(path, 1 << 24, &p, &n, &e) != KD_OK)
        n = 0;
    char *s = kd_malloc(n + 1);
    ck_assert_ptr_nonnull(s);
    if (n)
        memcpy(s, p, n);
    s[n] = 0;
    kd_free(p);
    return s;
}

static int file_has(const char *path, const char *needle)
{
    char *s = slurp(path);
    int yes = strstr(s, needle) != NULL;
    kd_free(s);
    return yes;
}

/* "kdbench run CONFIG --quiet --out DIR" in the background, stderr to errpath;
 * extra environment PATH prefix when path_prefix is not NULL. */
static pid_t spawn_run(const char *config, const char *dir, const char *errpath, int resume,
                       const char *path_prefix)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (path_prefix) {
            char path[8192];
            snprintf(path, sizeof path, "%s:%s", path_prefix, getenv("PATH") ? getenv("PATH") : "");
            setenv("PATH", path, 1);
        }
        execl(kdt_bin(), kdt_bin(), "run", config, "--quiet", "--out", dir,
              resume ? "--resume" : (char *)NULL, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Waits (at most ~30 s) until path contains needle. */
static int wait_for(const char *path, const char *needle)
{
    for (int i = 0; i < 3000; i++) {
        if (file_has(path, needle))
            return 1;
        usleep(10000);
    }
    return 0;
}

/* The exit status of pid (128 + signal when killed, so a crash shows). */
static int wait_exit(pid_t pid)
{
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1000 + WTERMSIG(st);
}

static double teacher_accuracy(const char *dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/results.json", dir);
    char *s = slurp(path), *a = strstr(s, "\"accuracy\": ");
    ck_assert_msg(a != NULL, "no accuracy in %s", path);
    double acc = atof(a + 12);
    kd_free(s);
    return acc;
}

/* ---- one writer per folder ---------------------------------------------------- */
START_TEST(second_run_refused_while_locked)
{
    if (!have_data())
        KDT_SKIP("dataset-fashion-mnist is not installed");
    char dir[256], cfg[512], run[512], out[16384], pid[32];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(cfg, sizeof cfg, "%s/tiny.yaml", dir);
    snprintf(run, sizeof run, "%s/run", dir);
    write_config(cfg, 1000, 32, 2, "adamw", "0.002", 0, 0);
    ck_assert_msg(kdt_kdbench(out, sizeof out, "run %s --quiet --out %s", cfg, run) == 0, "%s",
                  out);
    /* hold the folder as a running kdbench would */
    int fd = -1;
    kd_err e;
    ck_assert_int_eq(kd_dir_lock(run, &fd, &e), KD_OK);
    snprintf(pid, sizeof pid, "pid %ld", (long)getpid());
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "run %s --quiet --out %s", cfg, run), 1);
    ck_assert_msg(strstr(out, pid) != NULL, "the holder's %s not named: %s", pid, out);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "run %s --quiet --out %s --resume", cfg, run), 1);
    ck_assert_msg(strstr(out, pid) != NULL, "--resume: the holder's %s not named: %s", pid, out);
    /* a reader is not blocked */
    ck_assert_msg(kdt_kdbench(out, sizeof out, "report %s", run) == 0, "%s", out);
    /* the same process cannot take it twice either (a second open file) */
    int fd2 = -1;
    ck_assert_int_ne(kd_dir_lock(run, &fd2, &e), KD_OK);
    ck_assert_ptr_nonnull(strstr(e.msg, pid));
    kd_dir_unlock(fd);
    ck_assert_msg(kdt_kdbench(out, sizeof out, "run %s --quiet --out %s --resume", cfg, run) == 0,
                  "%s", out);
}
END_TEST

/* ---- --resume under a changed config ------------------------------------------ */
START_TEST(resume_refuses_changed_config)
{
    if (!have_data())
        KDT_SKIP("dataset-fashion-mnist is not installed");
    char dir[256], cfg[512], run[512], out[16384];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(cfg, sizeof cfg, "%s/tiny.yaml", dir);
    snprintf(run, sizeof run, "%s/run", dir);
    write_config(cfg, 1000, 32, 2, "adamw", "0.002", 1, 0);
    ck_assert_msg(kdt_kdbench(out, sizeof out, "run %s --quiet --out %s", cfg, run) == 0, "%s",
                  out);
    static const char *const changes[][2] = {
        {"seed=2", "seed"},
        {"teacher.train.optimizer.lr=0.01", "teacher.train.optimizer.lr"},
        {"data.train_subset=900", "data.train_subset"},
        {"students.0.train.optimizer.lr=0.01", "students.0.train.optimizer.lr"},
    };
    for (int i = 0; i < 4; i++) {
        ck_assert_msg(kdt_kdbench(out, sizeof out, "run %s --quiet --out %s --resume --set %s",
                                  cfg, run, changes[i][0]) == 2,
                      "--set %s accepted: %s", changes[i][0], out);
        ck_assert_msg(strstr(out, changes[i][1]) != NULL, "%s not named: %s", changes[i][1], out);
    }
    /* a refused resume is logged in the run's own log */
    char log[600];
    snprintf(log, sizeof log, "%s/run.log", run);
    ck_assert(file_has(log, "--resume: "));
    /* the report section and the name decide no byte: accepted */
    ck_assert_msg(kdt_kdbench(out, sizeof out,
                              "run %s --quiet --out %s --resume --set report.format=html "
                              "--set name=renamed",
                              cfg, run) == 0,
                  "%s", out);
    /* and the unchanged config still resumes */
    ck_assert_msg(kdt_kdbench(out, sizeof out, "run %s --quiet --out %s --resume", cfg, run) == 0,
                  "%s", out);
}
END_TEST

/* ---- signals ------------------------------------------------------------------------ */
START_TEST(sigterm_stops_and_resumes)
{
    if (!have_data())
        KDT_SKIP("dataset-fashion-mnist is not installed");
    char dir[256], cfg[512], a[512], b[512], err[600], log[600], pa[600], pb[600];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(cfg, sizeof cfg, "%s/sig.yaml", dir);
    snprintf(a, sizeof a, "%s/full", dir);
    snprintf(b, sizeof b, "%s/stopped", dir);
    snprintf(err, sizeof err, "%s/stderr.txt", dir);
    snprintf(log, sizeof log, "%s/run.log", b);
    write_config(cfg, 4000, 64, 12, "adamw", "0.002", 0, 0);
    ck_assert_int_eq(wait_exit(spawn_run(cfg, a, err, 0, NULL)), 0);
    pid_t pid = spawn_run(cfg, b, err, 0, NULL);
    ck_assert_msg(wait_for(log, "teacher epoch 1:"), "no first epoch line");
    kill(pid, SIGTERM);
    int st = wait_exit(pid);
    ck_assert_msg(st == 143, "exit %d after SIGTERM (the run may have finished first)", st);
    ck_assert_msg(file_has(err, "interrupted; resume with --resume"), "stderr lacks the line");
    ck_assert_msg(file_has(log, "interrupted; resume with --resume"), "run.log lacks the line");
    ck_assert_int_eq(wait_exit(spawn_run(cfg, b, err, 1, NULL)), 0);
    ck_assert_double_eq(teacher_accuracy(a), teacher_accuracy(b));
    snprintf(pa, sizeof pa, "%s/teacher.kdm", a);
    snprintf(pb, sizeof pb, "%s/teacher.kdm", b);
    char *x = slurp(pa), *y = slurp(pb);
    ck_assert_msg(kd_file_size(pa) == kd_file_size(pb) &&
                      memcmp(x, y, (size_t)kd_file_size(pa)) == 0,
                  "the resumed teacher differs from the uninterrupted one");
    kd_free(x);
    kd_free(y);
    /* SIGINT and SIGHUP: their own statuses */
    const int sigs[2] = {SIGINT, SIGHUP}, want[2] = {130, 129};
    for (int i = 0; i < 2; i++) {
        char c[400];
        snprintf(c, sizeof c, "%s/sig%d", dir, sigs[i]);
        snprintf(log, sizeof log, "%s/run.log", c);
        pid = spawn_run(cfg, c, err, 0, NULL);
        ck_assert_msg(wait_for(log, "teacher epoch 1:"), "no first epoch line");
        kill(pid, sigs[i]);
        ck_assert_int_eq(wait_exit(pid), want[i]);
        ck_assert(file_has(err, "interrupted; resume with --resume"));
    }
}
END_TEST

/* A plotting child does not outlive an interrupted run: a fake gnuplot
 * that sleeps, a SIGTERM while it runs. */
START_TEST(sigterm_stops_the_plotting_child)
{
    if (!have_data())
        KDT_SKIP("dataset-fashion-mnist is not installed");
    char dir[256], cfg[512], run[512], err[600], bin[600], gp[700], pidf[700];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(cfg, sizeof cfg, "%s/plot.yaml", dir);
    snprintf(run, sizeof run, "%s/run", dir);
    snprintf(err, sizeof err, "%s/stderr.txt", dir);
    snprintf(bin, sizeof bin, "%s/bin", dir);
    snprintf(gp, sizeof gp, "%s/gnuplot", bin);
    snprintf(pidf, sizeof pidf, "%s/gnuplot.pid", dir);
    ck_assert_int_eq(mkdir(bin, 0755), 0);
    char script[1024];
    int n = snprintf(script, sizeof script, "#!/bin/sh\necho $$ > %s.tmp\nmv %s.tmp %s\nexec sleep 30\n",
                     pidf, pidf, pidf);
    kdt_write(gp, script, (size_t)n);
    ck_assert_int_eq(chmod(gp, 0755), 0);
    write_config(cfg, 1000, 32, 2, "adamw", "0.002", 0, 1);
    pid_t pid = spawn_run(cfg, run, err, 0, bin);
    ck_assert_msg(wait_for(pidf, "\n"), "the fake gnuplot never started");
    char *s = slurp(pidf);
    pid_t gpid = (pid_t)atol(s);
    kd_free(s);
    ck_assert_int_gt(gpid, 1);
    kill(pid, SIGTERM);
    int st = wait_exit(pid);
    int alive = 1;
    for (int i = 0; i < 200 && alive; i++) {
        alive = kill(gpid, 0) == 0;
        if (alive)
            usleep(10000);
    }
    if (alive)
        kill(gpid, SIGKILL); /* leave nothing behind */
    ck_assert_msg(!alive, "gnuplot (pid %d) outlived the run", (int)gpid);
    ck_assert_int_eq(st, 143);
}
END_TEST

/* ---- stale temporary files, fatal errors ----------------------------------------- */
static pid_t dead_pid(void)
{
    pid_t p = fork();
    ck_assert_int_ge(p, 0);
    if (p == 0)
        _exit(0);
    waitpid(p, NULL, 0);
    return p;
}

START_TEST(resume_removes_stale_tmp_and_logs_fatal_errors)
{
    if (!have_data())
        KDT_SKIP("dataset-fashion-mnist is not installed");
    char dir[256], cfg[512], run[512], out[16384], f1[700], f2[700], f3[700], ck[700], log[700];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(cfg, sizeof cfg, "%s/tiny.yaml", dir);
    snprintf(run, sizeof run, "%s/run", dir);
    write_config(cfg, 1000, 32, 2, "adamw", "0.002", 1, 0);
    ck_assert_msg(kdt_kdbench(out, sizeof out, "run %s --quiet --out %s", cfg, run) == 0, "%s",
                  out);
    pid_t dead = dead_pid();
    snprintf(f1, sizeof f1, "%s/teacher.ckpt.tmp.%ld", run, (long)dead);
    snprintf(f2, sizeof f2, "%s/students/s8/scratch-seed1.ckpt.tmp.%ld", run, (long)dead);
    snprintf(f3, sizeof f3, "%s/metrics.jsonl.tmp.%ld", run, (long)getpid()); /* alive */
    kdt_write(f1, "x", 1);
    kdt_write(f2, "x", 1);
    kdt_write(f3, "x", 1);
    ck_assert_msg(kdt_kdbench(out, sizeof out, "run %s --quiet --out %s --resume", cfg, run) == 0,
                  "%s", out);
    ck_assert_msg(access(f1, F_OK) != 0, "%s kept", f1);
    ck_assert_msg(access(f2, F_OK) != 0, "%s kept", f2);
    ck_assert_msg(access(f3, F_OK) == 0, "a live process's %s removed", f3);
    /* a fatal error after the folder opened: on stderr and in run.log */
    snprintf(ck, sizeof ck, "%s/teacher.ckpt", run);
    kdt_write(ck, "KDCK-cut", 8);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "run %s --quiet --out %s --resume", cfg, run), 1);
    ck_assert_ptr_nonnull(strstr(out, "truncated or corrupt"));
    snprintf(log, sizeof log, "%s/run.log", run);
    ck_assert_msg(file_has(log, "truncated or corrupt"), "run.log lacks the fatal error");
}
END_TEST

/* ---- an overlong --out ---------------------------------------------------------------- */
START_TEST(overlong_out_refused)
{
    char dir[256], out[16384], cfg[512], longp[3600], cut[3100];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(cfg, sizeof cfg, "%s/tiny.yaml", dir);
    write_config(cfg, 1000, 32, 1, "adamw", "0.002", 0, 0);
    /* 3,500 bytes in components of 200 */
    int len = snprintf(longp, sizeof longp, "%s", dir);
    while (len < 3500) {
        longp[len++] = '/';
        for (int i = 0; i < 200 && len < 3500; i++)
            longp[len++] = 'd';
    }
    longp[len] = 0;
    int st = kdt_kdbench(out, sizeof out, "run %s --quiet --out %s", cfg, longp);
    ck_assert_msg(st == 2, "exit %d: %s", st, out);
    ck_assert_ptr_nonnull(strstr(out, "bytes"));
    /* nothing landed under a cut version of the path */
    snprintf(cut, sizeof cut, "%.*s", 2999, longp);
    char probe[3200];
    snprintf(probe, sizeof probe, "%s/run.log", cut);
    ck_assert_msg(access(probe, F_OK) != 0, "the run landed in a truncated folder");
}
END_TEST

/* ---- a diverged run --------------------------------------------------------------------- */
START_TEST(diverged_metrics_stay_json)
{
    if (!have_data())
        KDT_SKIP("dataset-fashion-mnist is not installed");
    char dir[256], cfg[512], run[512], out[16384], path[700];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(cfg, sizeof cfg, "%s/div.yaml", dir);
    snprintf(run, sizeof run, "%s/run", dir);
    write_config(cfg, 1000, 64, 3, "sgd", "10", 0, 0);
    ck_assert_msg(kdt_kdbench(out, sizeof out, "run %s --quiet --out %s", cfg, run) == 0, "%s",
                  out);
    ck_assert_msg(strstr(out, "diverged") != NULL, "stderr does not say diverged: %s", out);
    snprintf(path, sizeof path, "%s/run.log", run);
    ck_assert_msg(file_has(path, "teacher (seed 1): training diverged at epoch"),
                  "run.log does not say diverged");
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    char *s = slurp(path);
    int lines = 0, nulls = 0;
    for (char *l = s, *end; *l; l = end + 1) {
        end = strchr(l, '\n');
        ck_assert_ptr_nonnull(end);
        rep_json j = {0};
        kd_err e;
        ck_assert_msg(rep_json_parse(l, (size_t)(end - l), path, &j, &e) == KD_OK,
                      "line %d is not JSON: %.*s", lines + 1, (int)(end - l), l);
        int k = rep_json_get(&j, 0, "loss");
        ck_assert_int_ge(k, 0);
        nulls += j.nodes[k].type == REP_JNULL;
        rep_json_free(&j);
        lines++;
    }
    kd_free(s);
    ck_assert_int_eq(lines, 3);
    ck_assert_msg(nulls > 0, "the run did not diverge (no null loss): adjust the test's lr");
    /* and the report reads every curve back */
    rep_metric *m = NULL;
    int n = 0;
    kd_err e;
    ck_assert_int_eq(rep_read_metrics(path, &m, &n, &e), KD_OK);
    ck_assert_int_eq(n, 3);
    kd_free(m);
}
END_TEST

Suite *suite_cli_rundir(void)
{
    Suite *s = suite_create("cli_rundir");
    TCase *t = tcase_create("rundir");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, second_run_refused_while_locked);
    tcase_add_test(t, resume_refuses_changed_config);
    tcase_add_test(t, sigterm_stops_and_resumes);
    tcase_add_test(t, sigterm_stops_the_plotting_child);
    tcase_add_test(t, resume_removes_stale_tmp_and_logs_fatal_errors);
    tcase_add_test(t, overlong_out_refused);
    tcase_add_test(t, diverged_metrics_stay_json);
    suite_add_tcase(s, t);
    return s;
}
