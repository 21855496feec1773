/* Running gnuplot as a program: fork/exec (never system()), stdin and stdout
 * on /dev/null, stderr captured for the failure line, killed after a timeout. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

#define EXEC_FAILED 127

/* In the child: never returns. Reports an exec failure on the stderr pipe. */
static void child(const char *prog, const char *dir, const char *script, int errfd, pid_t parent)
{
    /* never outlive kdbench, however it ends (even SIGKILL) */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(EXEC_FAILED - 2);
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
    }
    dup2(errfd, 2);
    if (chdir(dir) != 0) {
        dprintf(2, "cannot enter %s: %s", dir, strerror(errno));
        _exit(EXEC_FAILED - 1);
    }
    char *argv[] = {(char *)prog, (char *)script, NULL};
    execvp(prog, argv);
    dprintf(2, "kdbench-exec: %s", strerror(errno));
    _exit(EXEC_FAILED);
}

/* Reads the child's stderr into buf until EOF or the deadline; 1 on timeout,
 * 2 when a caught signal interrupted the wait (kdbench run catches SIGINT,
 * SIGTERM and SIGHUP to stop: the plot stops with it). */
static int drain(int fd, char *buf, size_t n, double deadline)
{
    size_t len = 0;
    for (;;) {
        double left = deadline - kd_now();
        if (left <= 0)
            return 1;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int r = poll(&pf, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR)
            return 2;
        if (r <= 0)
            continue; /* timeout: checked at the top */
        char tmp[512];
        ssize_t got = read(fd, tmp, sizeof tmp);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return 0;
        size_t k = (size_t)got < n - 1 - len ? (size_t)got : n - 1 - len;
        memcpy(buf + len, tmp, k);
        len += k;
        buf[len] = 0;
    }
}

/* the first non-empty line of gnuplot's messages, trimmed */
static void first_line(const char *err, char *why, size_t n)
{
    const char *s = err;
    while (*s) {
        size_t k = strcspn(s, "\n");
        size_t j = strspn(s, " \t^");
        if (j < k) {
            snprintf(why, n, "%.*s", (int)(k - j), s + j);
            return;
        }
        s += k + (s[k] == '\n');
    }
    snprintf(why, n, "no message");
}

int rep_gnuplot_run(const char *prog, const char *dir, const char *script, double timeout_s,
                    char *why, size_t n)
{
    int fds[2];
    char err[4096] = "";
    if (pipe(fds) != 0) {
        snprintf(why, n, "pipe: %s", strerror(errno));
        return REP_GP_FAILED;
    }
    pid_t parent = getpid(), pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        snprintf(why, n, "fork: %s", strerror(errno));
        return REP_GP_FAILED;
    }
    if (pid == 0) {
        close(fds[0]);
        child(prog, dir, script, fds[1], parent);
    }
    close(fds[1]);
    int timed_out = drain(fds[0], err, sizeof err, kd_now() + timeout_s);
    close(fds[0]);
    if (timed_out)
        kill(pid, SIGKILL);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (timed_out == 2) {
        snprintf(why, n, "gnuplot stopped: kdbench was interrupted");
        return REP_GP_FAILED;
    }
    if (timed_out) {
        snprintf(why, n, "gnuplot did not finish within %.0f s and was stopped", timeout_s);
        return REP_GP_FAILED;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == EXEC_FAILED && !strncmp(err, "kdbench-exec: ", 14)) {
        snprintf(why, n, "cannot run \"%s\": %s", prog, err + 14);
        return REP_GP_MISSING;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return REP_GP_OK;
    char line[300];
    first_line(err, line, sizeof line);
    if (WIFSIGNALED(st))
        snprintf(why, n, "gnuplot killed by signal %d: %s", WTERMSIG(st), line);
    else
        snprintf(why, n, "gnuplot failed (exit %d): %s", WEXITSTATUS(st), line);
    return REP_GP_FAILED;
}
