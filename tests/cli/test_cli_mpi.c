/* kdbench under mpirun, from the outside: a config error is reported once
 * (rank 0, FILE:LINE:COL) and every rank exits 2; a rank killed mid-run
 * makes mpirun fail with a message, and --resume on 2 ranks finishes the run
 * with the numbers of an uninterrupted one-process run.  Skipped (saying
 * why) without MPI in the build, without mpirun, or without the data. */
#include <check.h>
#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../data/data.h"
#include "../../dist/dist.h"
#include "../../reports/reports.h"
#include "../kdtest.h"
#include "../mpi/experiment.h"

#define MPIRUN "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout -k 5 240 " \
               "mpirun -np 2 --oversubscribe --mca btl self,vader "

static const char *why_not(void)
{
    if (!dist_built_with_mpi())
        return "kdbench was built without MPI (MPI=0 or no Open MPI)";
    if (system("command -v mpirun >/dev/null 2>&1") != 0)
        return "no mpirun (apt-get install openmpi-bin)";
    return NULL;
}

/* Runs a shell command; its exit status, its output (2>&1) in out. */
static int sh(char *out, size_t n, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t k = fread(out, 1, n - 1, p);
    out[k] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int count(const char *hay, const char *needle)
{
    int c = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        c++;
    return c;
}

START_TEST(config_error_once_exit_2_on_every_rank)
{
    const char *no = why_not();
    if (no)
        KDT_SKIP("%s", no);
    char dir[256], cfg[300], out[16384], where[320];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(cfg, sizeof cfg, "%s/bad.yaml", dir);
    ck_assert_int_eq(kdt_mpi_experiment(cfg, 1), 0);
    FILE *f = fopen(cfg, "r");
    int line = 1, c;
    while ((c = fgetc(f)) != EOF)
        line += c == '\n';
    fclose(f);
    f = fopen(cfg, "a");
    fputs("bogus_key: 1\n", f); /* at line `line` */
    fclose(f);
    int rc = sh(out, sizeof out, MPIRUN "sh -c '\"%s\" run %s --out %s/run; echo \"rank-exit $?\"'",
                kdt_bin(), cfg, dir);
    snprintf(where, sizeof where, "%s:%d:1:", cfg, line);
    ck_assert_msg(count(out, where) == 1, "want the error once at %s:\n%s", where, out);
    ck_assert_msg(count(out, "rank-exit 2") == 2, "want exit 2 on both ranks:\n%s", out);
    ck_assert_msg(rc == 0, "mpirun: %d\n%s", rc, out); /* sh's echo exits 0 */
    snprintf(where, sizeof where, "%s/run", dir);
    ck_assert_msg(access(where, F_OK) != 0, "a run folder was made for an invalid config");
}
END_TEST

/* The pid of the rank-1 kdbench started with KDT_MPI_TAG=tag, or -1. */
static pid_t find_rank1(const char *tag)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    pid_t found = -1;
    char want[80];
    snprintf(want, sizeof want, "KDT_MPI_TAG=%s", tag);
    while (d && found < 0 && (de = readdir(d))) {
        char path[300], env[65536], comm[64] = "";
        pid_t pid = (pid_t)atoi(de->d_name);
        if (pid <= 0)
            continue;
        snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (!fgets(comm, sizeof comm, f))
            comm[0] = 0;
        fclose(f);
        if (strncmp(comm, "kdbench", 7) != 0)
            continue;
        snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
        if (!(f = fopen(path, "r")))
            continue;
        size_t n = fread(env, 1, sizeof env - 1, f);
        fclose(f);
        int tagged = 0, rank1 = 0;
        for (size_t i = 0; i < n; i += strlen(env + i) + 1) {
            env[n] = 0;
            tagged |= !strcmp(env + i, want);
            rank1 |= !strcmp(env + i, "OMPI_COMM_WORLD_RANK=1");
        }
        if (tagged && rank1)
            found = pid;
    }
    if (d)
        closedir(d);
    return found;
}

static void same_results(const char *a_dir, const char *b_dir)
{
    char path[600];
    rep_row *ra = NULL, *rb = NULL;
    int na = 0, nb = 0;
    kd_err e;
    snprintf(path, sizeof path, "%s/results.json", a_dir);
    ck_assert_msg(rep_read_results(path, NULL, 0, &ra, &na, &e) == KD_OK, "%s", e.msg);
    snprintf(path, sizeof path, "%s/results.json", b_dir);
    ck_assert_msg(rep_read_results(path, NULL, 0, &rb, &nb, &e) == KD_OK, "%s", e.msg);
    ck_assert_int_eq(na, 7);
    ck_assert_int_eq(na, nb);
    for (int i = 0; i < na; i++) {
        ck_assert_str_eq(ra[i].name, rb[i].name);
        ck_assert_msg(ra[i].accuracy == rb[i].accuracy, "%s: %.6f vs %.6f", ra[i].name,
                      ra[i].accuracy, rb[i].accuracy);
        ck_assert_int_eq(ra[i].size_bytes, rb[i].size_bytes);
        ck_assert_int_eq(ra[i].nonzero_params, rb[i].nonzero_params);
    }
    kd_free(ra);
    kd_free(rb);
}

START_TEST(killed_rank_fails_the_run_and_resume_finishes_it)
{
    const char *no = why_not();
    if (no)
        KDT_SKIP("%s", no);
    if (access(DATA_FASHION_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0)
        KDT_SKIP("dataset-fashion-mnist is not installed");
    char dir[256], cfg[300], ref[300], run[300], out[32768], tag[64], first[400], path[400];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(cfg, sizeof cfg, "%s/m.yaml", dir);
    snprintf(ref, sizeof ref, "%s/ref", dir);
    snprintf(run, sizeof run, "%s/run", dir);
    ck_assert_int_eq(kdt_mpi_experiment(cfg, 6), 0);
    ck_assert_msg(sh(out, sizeof out, "\"%s\" run %s --out %s --quiet", kdt_bin(), cfg, ref) == 0,
                  "%s", out);
    snprintf(tag, sizeof tag, "%d-%ld", (int)getpid(), (long)time(NULL));
    snprintf(first, sizeof first, "%s/students/a/scratch-seed1.kdm", run);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "TMPDIR=%s KDT_MPI_TAG=%s " MPIRUN "\"%s\" run %s --out %s --quiet "
                 "> %s/killed.log 2>&1", dir, tag, kdt_bin(), cfg, run, dir);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    /* the first job's model is back on rank 0: kill rank 1 while jobs remain */
    pid_t victim = -1;
    for (int i = 0; i < 2400 && victim < 0; i++) {
        if (access(first, R_OK) == 0)
            victim = find_rank1(tag);
        usleep(25000);
    }
    ck_assert_msg(victim > 0, "rank 1 or the first job's model never appeared");
    kill(victim, SIGKILL);
    int st;
    ck_assert_int_eq(waitpid(child, &st, 0), child);
    snprintf(path, sizeof path, "cat %s/killed.log", dir);
    sh(out, sizeof out, "%s", path);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) != 0, "mpirun succeeded after a kill:\n%s",
                  out);
    ck_assert_msg(strstr(out, "rank 1") || strstr(out, "signal 9"),
                  "no message naming the dead rank:\n%s", out);
    snprintf(path, sizeof path, "%s/results.json", run);
    ck_assert_msg(access(path, F_OK) != 0, "the run finished before the kill: inconclusive");
    ck_assert_msg(access(first, R_OK) == 0, "the finished job's model was lost");
    int rc = sh(out, sizeof out, MPIRUN "\"%s\" run %s --out %s --quiet --resume", kdt_bin(),
                cfg, run);
    ck_assert_msg(rc == 0, "resume on 2 ranks: %d\n%s", rc, out);
    same_results(ref, run);
}
END_TEST

/* The data-parallel keys are the teacher's; on a student they are refused at
 * the key, MPI or not; on the teacher without mpirun the run says so. */
START_TEST(parallel_is_for_the_teacher)
{
    char dir[256], cfg[300], out[16384], want[340];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(cfg, sizeof cfg, "%s/m.yaml", dir);
    ck_assert_int_eq(kdt_mpi_experiment(cfg, 1), 0);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "check %s --set students.0.train.parallel=data",
                                 cfg), 2);
    snprintf(want, sizeof want, "students.0.train.parallel");
    ck_assert_msg(strstr(out, "data-parallel training is for the teacher") && strstr(out, want),
                  "%s", out);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "check %s --set teacher.train.reduce=sum", cfg),
                     2);
    ck_assert_msg(strstr(out, "teacher.train.reduce"), "%s", out);
    if (access(DATA_FASHION_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0)
        KDT_SKIP("dataset-fashion-mnist is not installed");
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "run %s --out %s/run --set "
                                 "teacher.train.parallel=data --set teacher.train.reduce=fast",
                                 cfg, dir), 0);
    ck_assert_msg(strstr(out, "takes effect under mpirun"), "%s", out);
}
END_TEST

Suite *suite_cli_mpi(void)
{
    Suite *s = suite_create("cli_mpi");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, parallel_is_for_the_teacher);
    tcase_add_test(tc, config_error_once_exit_2_on_every_rank);
    tcase_add_test(tc, killed_rank_fails_the_run_and_resume_finishes_it);
    suite_add_tcase(s, tc);
    return s;
}
