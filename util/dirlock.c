/* Run-folder housekeeping: one writer per folder (flock), and the temporary
 * files that killed writers leave behind. */
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOCK_NAME ".lock"
#define WALK_DEPTH 16 /* a run folder is three levels deep; deeper is not ours */

int kd_dir_lock(const char *dir, int *fd, kd_err *e)
{
    char path[4096];
    *fd = -1;
    if (snprintf(path, sizeof path, "%s/" LOCK_NAME, dir) >= (int)sizeof path)
        return kd_err_at(e, KD_EIO, dir, 0, 0, "path too long");
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0)
        return kd_err_at(e, KD_EIO, path, 0, 0, "cannot open: %s", strerror(errno));
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        char pid[32] = "";
        ssize_t n = pread(f, pid, sizeof pid - 1, 0);
        close(f);
        pid[n > 0 ? n : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        if (err != EWOULDBLOCK)
            return kd_err_at(e, KD_EIO, path, 0, 0, "cannot lock: %s", strerror(err));
        return kd_err_at(e, KD_ERUNTIME, dir, 0, 0,
                         "the run folder is in use by another kdbench run (pid %s); wait for it "
                         "or choose another --out", pid[0] ? pid : "unknown");
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(f, 0) != 0 || pwrite(f, pid, (size_t)n, 0) != n) {
        int err = errno;
        close(f);
        return kd_err_at(e, KD_EIO, path, 0, 0, "cannot write: %s", strerror(err));
    }
    *fd = f;
    return KD_OK;
}

void kd_dir_unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* the file stays: removing it would race with the next locker */
}

/* The PID of a "NAME.tmp.PID" name, or 0. */
static long tmp_pid(const char *name)
{
    const char *t = strstr(name, ".tmp.");
    while (t) {
        const char *d = t + 5;
        char *end;
        long pid = *d >= '1' && *d <= '9' ? strtol(d, &end, 10) : 0;
        if (pid > 0 && *end == 0)
            return pid;
        t = strstr(t + 1, ".tmp.");
    }
    return 0;
}

static int walk(const char *dir, int depth, int *removed, kd_err *e)
{
    DIR *d = opendir(dir);
    if (!d)
        return kd_err_at(e, KD_EIO, dir, 0, 0, "cannot read folder: %s", strerror(errno));
    int rc = KD_OK;
    struct dirent *de;
    char path[4096];
    while (rc == KD_OK && (de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path) {
            rc = kd_err_at(e, KD_EIO, dir, 0, 0, "path too long under this folder");
            break;
        }
        struct stat st;
        if (lstat(path, &st) != 0)
            continue;
        long pid = tmp_pid(de->d_name);
        if (S_ISDIR(st.st_mode) && depth < WALK_DEPTH) {
            rc = walk(path, depth + 1, removed, e);
        } else if (S_ISREG(st.st_mode) && pid > 0 && pid != (long)getpid() &&
                   kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
            if (unlink(path) != 0)
                rc = kd_err_at(e, KD_EIO, path, 0, 0, "cannot remove: %s", strerror(errno));
            else if (removed)
                ++*removed;
        }
    }
    closedir(d);
    return rc;
}

int kd_remove_stale_tmp(const char *dir, int *removed, kd_err *e)
{
    if (removed)
        *removed = 0;
    return walk(dir, 0, removed, e);
}
