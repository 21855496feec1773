/* Files: atomic writes, bounded whole-file reads, mkdir -p, CRC32 (zlib). */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

uint32_t kd_crc32(uint32_t crc, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n > 0) { /* zlib takes uInt lengths */
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = (uint32_t)crc32(crc, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return crc;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int kd_write_atomic(const char *path, const void *buf, size_t n, kd_err *e)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return kd_err_at(e, KD_EIO, path, 0, 0, "path too long");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return kd_err_at(e, KD_EIO, path, 0, 0, "cannot create %s: %s", tmp, strerror(errno));
    if (write_all(fd, buf, n) != 0 || fsync(fd) != 0) {
        int err = errno;
        close(fd);
        unlink(tmp);
        return kd_err_at(e, KD_EIO, path, 0, 0, "write failed: %s", strerror(err));
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return kd_err_at(e, KD_EIO, path, 0, 0, "cannot replace file: %s", strerror(err));
    }
    /* make the rename itself durable */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return KD_OK;
}

int kd_read_file(const char *path, size_t max, uint8_t **out, size_t *len, kd_err *e)
{
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return kd_err_at(e, KD_EIO, path, 0, 0, "cannot open: %s", strerror(errno));
    /* start no larger than max, so a small max is enforced too */
    size_t cap = max < ((size_t)1 << 16) ? max : (size_t)1 << 16, n = 0;
    uint8_t *b = kd_malloc(cap);
    if (!b) {
        fclose(f);
        return kd_err_at(e, KD_ENOMEM, path, 0, 0, "out of memory");
    }
    for (;;) {
        if (n == cap) {
            if (cap >= max) {
                if (fgetc(f) == EOF) /* exactly max bytes: within the limit */
                    break;
                kd_free(b);
                fclose(f);
                return kd_err_at(e, KD_EFORMAT, path, 0, 0, "file larger than %zu bytes", max);
            }
            size_t ncap = cap * 2 > max ? max : cap * 2;
            uint8_t *nb = kd_realloc(b, ncap);
            if (!nb) {
                kd_free(b);
                fclose(f);
                return kd_err_at(e, KD_ENOMEM, path, 0, 0, "out of memory");
            }
            b = nb;
            cap = ncap;
        }
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        kd_free(b);
        return kd_err_at(e, KD_EIO, path, 0, 0, "read error");
    }
    *out = b;
    *len = n;
    return KD_OK;
}

int kd_mkdirs(const char *path, kd_err *e)
{
    char p[4096];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p)
        return kd_err_at(e, KD_EIO, path, 0, 0, "path too long");
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return kd_err_at(e, KD_EIO, path, 0, 0, "cannot create folder %s: %s", p,
                             strerror(errno));
        *s = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST)
        return kd_err_at(e, KD_EIO, path, 0, 0, "cannot create folder: %s", strerror(errno));
    struct stat st;
    if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
        return kd_err_at(e, KD_EIO, path, 0, 0, "not a folder");
    return KD_OK;
}

long long kd_file_size(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return -1;
    return (long long)st.st_size;
}

double kd_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
