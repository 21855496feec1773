/* Running programs from the export suites, bounded in time (header-only,
 * static: shared by test_export.c and test_onnx_export.c). */
#ifndef KD_TEST_EXPORT_RUN_H
#define KD_TEST_EXPORT_RUN_H

#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- running programs, bounded in time ---------------------------------------- */

/* Runs argv with stdin from in_path (NULL: /dev/null) and stdout, stderr to
 * out_path; returns the exit status, 127 when it could not be started, -1
 * when killed after timeout_s seconds (with its whole process group: npm and
 * node start children of their own). */
static inline int run_bounded(char *const argv[], const char *in_path, const char *out_path,
                              int timeout_s)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        setpgid(0, 0);
        int in = open(in_path ? in_path : "/dev/null", O_RDONLY);
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || out < 0)
            _exit(126);
        dup2(in, 0);
        dup2(out, 1);
        dup2(out, 2);
        execvp(argv[0], argv);
        _exit(127);
    }
    struct timespec t0, now, nap = {0, 10 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int st;
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec > timeout_s) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        nanosleep(&nap, NULL);
    }
}

static inline void print_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[512];
    for (int i = 0; f && i < 40 && fgets(line, sizeof line, f); i++)
        fputs(line, stderr);
    if (f)
        fclose(f);
}

#endif
