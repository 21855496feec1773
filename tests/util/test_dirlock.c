/* util/dirlock.c: the run folder's lock and the stale temporary files. */
#include <check.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../util/util.h"
#include "../kdtest.h"

START_TEST(lock_is_exclusive_and_names_the_holder)
{
    char dir[256], pid[32];
    kdt_tmpdir(dir, sizeof dir);
    int a = -1, b = -1;
    kd_err e;
    ck_assert_int_eq(kd_dir_lock(dir, &a, &e), KD_OK);
    ck_assert_int_ge(a, 0);
    ck_assert_int_eq(kd_dir_lock(dir, &b, &e), KD_ERUNTIME);
    ck_assert_int_eq(b, -1);
    snprintf(pid, sizeof pid, "pid %ld", (long)getpid());
    ck_assert_msg(strstr(e.msg, pid) != NULL, "%s", e.msg);
    /* a child process is refused too, and the lock is not inherited by exec */
    pid_t c = fork();
    if (c == 0) {
        int f = -1;
        kd_err e2;
        _exit(kd_dir_lock(dir, &f, &e2) == KD_ERUNTIME ? 0 : 1);
    }
    int st;
    waitpid(c, &st, 0);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    kd_dir_unlock(a);
    ck_assert_int_eq(kd_dir_lock(dir, &b, &e), KD_OK);
    kd_dir_unlock(b);
    kd_dir_unlock(-1);
    ck_assert_int_eq(kd_dir_lock("/nonexistent/kdbench/dir", &b, &e), KD_EIO);
}
END_TEST

START_TEST(stale_tmp_files_of_dead_processes_only)
{
    char dir[256], sub[300], p[8][400];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(sub, sizeof sub, "%s/a", dir);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    snprintf(sub, sizeof sub, "%s/a/b", dir);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    pid_t dead = fork();
    if (dead == 0)
        _exit(0);
    waitpid(dead, NULL, 0);
    long me = (long)getpid();
    snprintf(p[0], sizeof p[0], "%s/x.ckpt.tmp.%ld", dir, (long)dead);   /* removed */
    snprintf(p[1], sizeof p[1], "%s/y.kdm.tmp.%ld", sub, (long)dead);    /* removed */
    snprintf(p[2], sizeof p[2], "%s/z.json.tmp.%ld", sub, me);           /* alive: kept */
    snprintf(p[3], sizeof p[3], "%s/w.tmp.1", dir);                      /* init: kept */
    snprintf(p[4], sizeof p[4], "%s/v.tmp.%ldx", dir, (long)dead);       /* not a pid */
    snprintf(p[5], sizeof p[5], "%s/u.tmp.", dir);                       /* no pid */
    snprintf(p[6], sizeof p[6], "%s/results.json", dir);                 /* not temporary */
    snprintf(p[7], sizeof p[7], "%s/t.tmp.0%ld", dir, (long)dead);       /* leading zero */
    for (int i = 0; i < 8; i++)
        kdt_write(p[i], "x", 1);
    int removed = -1;
    kd_err e;
    ck_assert_int_eq(kd_remove_stale_tmp(dir, &removed, &e), KD_OK);
    ck_assert_int_eq(removed, 2);
    for (int i = 0; i < 8; i++)
        ck_assert_msg((access(p[i], F_OK) == 0) == (i >= 2), "%s", p[i]);
    ck_assert_int_eq(kd_remove_stale_tmp("/nonexistent/kdbench/dir", NULL, &e), KD_EIO);
}
END_TEST

Suite *suite_util_dirlock(void)
{
    Suite *s = suite_create("util_dirlock");
    TCase *t = tcase_create("dirlock");
    tcase_add_test(t, lock_is_exclusive_and_names_the_holder);
    tcase_add_test(t, stale_tmp_files_of_dead_processes_only);
    suite_add_tcase(s, t);
    return s;
}
