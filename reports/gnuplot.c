/* Running gnuplot as a program: fork/exec (never system()), stdin and stdout
 * on /dev/null, stderr captured for the failure line, killed after a timeout,
 * on request (a signal the caller caught) or when kdbench dies. */
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
static void child(const rep_gp_job *job, pid_t parent, int errfd)
{
    /* killed with its parent, even by SIGKILL; the parent may already be gone */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(EXEC_FAILED - 2);
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
    }
    dup2(errfd, 2);
    if (chdir(job->dir) != 0) {
        dprintf(2, "cannot enter %s: %s", job->dir, strerror(errno));
        _exit(EXEC_FAILED - 1);
    }
    char set[80];
    /* the suffix is ours (".tmp.PID"), never text from a file */
    snprintf(set, sizeof set, "suffix='%s'", job->suffix ? job->suffix : "");
    char *argv[] = {(char *)job->prog, "-e", set, (char *)job->script, NULL};
    execvp(job->prog, argv);
    dprintf(2, "kdbench-exec: %s", strerror(errno));
    _exit(EXEC_FAILED);
}

enum { DRAIN_EOF, DRAIN_TIMEOUT, DRAIN_STOP };

/* Reads the child's stderr into buf until EOF, the deadline or a stop
 * request; polls in short slices so a stop is seen within 100 ms. */
static int drain(int fd, char *buf, size_t n, double deadline,
                 const volatile sig_atomic_t *stop)
{
    size_t len = 0;
    for (;;) {
        if (stop && *stop)
            return DRAIN_STOP;
        double left = deadline - kd_now();
        if (left <= 0)
            return DRAIN_TIMEOUT;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int r = poll(&pf, 1, left < 0.1 ? (int)(left * 1000) + 1 : 100);
        if (r <= 0)
            continue; /* EINTR or a slice: checked at the top */
        char tmp[512];
        ssize_t got = read(fd, tmp, sizeof tmp);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return DRAIN_EOF;
        size_t k = (size_t)got < n - 1 - len ? (size_t)got : n - 1 - len;
        memcpy(buf + len, tmp, k);
        len += k;
        buf[len] = 0;
    }
}

/* SIGTERM, then SIGKILL after a grace period; always reaps it */
static int stop_child(pid_t pid)
{
    int st = 0;
    kill(pid, SIGTERM);
    for (int i = 0; i < 50; i++) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR))
            return st;
        poll(NULL, 0, 10);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return st;
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

int rep_gnuplot_run(const rep_gp_job *job, char *why, size_t n)
{
    int fds[2];
    char err[4096] = "";
    if (pipe2(fds, O_CLOEXEC) != 0) {
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
        child(job, parent, fds[1]);
    }
    close(fds[1]);
    int how = drain(fds[0], err, sizeof err, kd_now() + job->timeout_s, job->stop);
    close(fds[0]);
    int st = 0;
    if (how != DRAIN_EOF)
        st = stop_child(pid);
    else
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
    if (how == DRAIN_STOP) {
        snprintf(why, n, "interrupted");
        return REP_GP_STOPPED;
    }
    if (how == DRAIN_TIMEOUT) {
        snprintf(why, n, "gnuplot did not finish within %.0f s and was stopped", job->timeout_s);
        return REP_GP_FAILED;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == EXEC_FAILED && !strncmp(err, "kdbench-exec: ", 14)) {
        snprintf(why, n, "cannot run \"%s\": %s", job->prog, err + 14);
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
