/* util — errors with file:line:col, allocation hook, atomic writes, CRC32,
 * bounded binary buffers, timers and a progress bar.  Depends on libc and zlib only. */
#ifndef KD_UTIL_H
#define KD_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define KD_VERSION "0.2.0"

/* ---- errors ------------------------------------------------------------ */
enum {
    KD_OK = 0,
    KD_EIO = -1,      /* a file could not be read or written */
    KD_EFORMAT = -2,  /* a file's content is malformed, truncated or corrupt */
    KD_ECONFIG = -3,  /* a config or argument is invalid (exit status 2) */
    KD_ENOMEM = -4,   /* an allocation failed */
    KD_ERUNTIME = -5, /* anything else that failed at run time */
    KD_ECANCELED = -6, /* stopped on request (a signal); the caller picks the status */
};

/* Exit statuses chosen by cli/ only. */
enum { KD_EXIT_OK = 0, KD_EXIT_FAIL = 1, KD_EXIT_USAGE = 2 };

/* An error report: where (file, 1-based line and column, 0 when unknown)
 * and what.  Filled by the function that fails; printed only by cli/. */
typedef struct {
    int code;
    char file[256];
    int line, col;
    char msg[768];
} kd_err;

/* Sets e (when not NULL) and returns code, so `return kd_err_set(...)` reads well. */
int kd_err_set(kd_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int kd_err_at(kd_err *e, int code, const char *file, int line, int col,
              const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* Prepends "prefix: " to e->msg (e.g. the path being read). */
void kd_err_prefix(kd_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Formats e as "FILE:LINE:COL: msg" (or the parts that are known) into buf. */
const char *kd_err_str(const kd_err *e, char *buf, size_t n);

/* ---- allocation ---------------------------------------------------------
 * Every allocation in kdbench goes through these, so tests can make the Nth
 * one fail (kd_alloc_fail_after) and prove each error path is clean.
 * The fail counter is per thread (tests only), never touched in production. */
void *kd_malloc(size_t n);
void *kd_calloc(size_t count, size_t size);
void *kd_realloc(void *p, size_t n);
void kd_free(void *p);
/* 64-byte aligned, zeroed; free with kd_afree. */
float *kd_afloat(size_t count);
void kd_afree(void *p);
char *kd_strdup(const char *s);
/* Tests: the (n+1)th allocation from now fails; n < 0 disables. */
void kd_alloc_fail_after(long n);
/* Tests: from now on this thread's allocations and frees through these
 * functions are counted (usable bytes); kd_alloc_peak() is the most held at
 * once since, net of what was freed (memory from before counts when freed,
 * so the figure may start below 0).  on = 0 stops counting. */
void kd_alloc_track(int on);
long long kd_alloc_peak(void);
long long kd_alloc_held(void); /* held now, on the same count */

/* ---- files --------------------------------------------------------------- */
/* Writes buf to path atomically: temp file in the same folder, fsync, rename,
 * fsync of the folder.  On failure path is untouched and the temp file removed. */
int kd_write_atomic(const char *path, const void *buf, size_t n, kd_err *e);
/* Reads a whole file (at most max bytes) into a new buffer (*out, kd_free it). */
int kd_read_file(const char *path, size_t max, uint8_t **out, size_t *len, kd_err *e);
/* mkdir -p; 0 or error. */
int kd_mkdirs(const char *path, kd_err *e);
/* Size in bytes of a file, or -1. */
long long kd_file_size(const char *path);
/* Takes an exclusive lock on folder dir (flock on dir/.lock, which then holds
 * this process's pid), without waiting: a folder locked by another process
 * is an error naming that process's pid.  *fd gets the lock's descriptor
 * (close-on-exec; kd_dir_unlock releases it, and so does the process's exit). */
int kd_dir_lock(const char *dir, int *fd, kd_err *e);
/* Releases a lock from kd_dir_lock; accepts -1. */
void kd_dir_unlock(int fd);
/* Removes, anywhere under dir, the temporary files of kd_write_atomic
 * ("NAME.tmp.PID") whose process PID no longer exists; *removed counts them
 * (may be NULL).  Symbolic links are not followed.  0 or an error. */
int kd_remove_stale_tmp(const char *dir, int *removed, kd_err *e);

/* CRC-32 (zlib's polynomial); start with crc = 0. */
uint32_t kd_crc32(uint32_t crc, const void *buf, size_t n);

/* The candidate closest to word (optimal string alignment distance, at most
 * two edits and fewer than the candidate's length), or NULL: the "did you
 * mean" of config keys, commands and model names. */
const char *kd_suggest(const char *word, const char *const *cands, int n);

/* ---- growable output buffer and bounded reader (binary files) ----------- */
typedef struct {
    uint8_t *p;
    size_t len, cap;
    int failed; /* set on allocation failure; later appends are ignored */
} kd_buf;
void kd_buf_put(kd_buf *b, const void *src, size_t n);
void kd_buf_u32(kd_buf *b, uint32_t v);
void kd_buf_u64(kd_buf *b, uint64_t v);
void kd_buf_f32(kd_buf *b, float v);
void kd_buf_str(kd_buf *b, const char *s); /* u32 length + bytes */
void kd_buf_free(kd_buf *b);

/* A bounds-checked reader: every get fails (returns -1, sets ok = 0) rather
 * than read past the end; check r.ok once at the end. Little-endian. */
typedef struct {
    const uint8_t *p;
    size_t len, pos;
    int ok;
} kd_rd;
int kd_rd_get(kd_rd *r, void *dst, size_t n);
uint32_t kd_rd_u32(kd_rd *r);
uint64_t kd_rd_u64(kd_rd *r);
float kd_rd_f32(kd_rd *r);
/* Reads a u32-length string into dst (cap bytes incl. NUL); fails if longer. */
int kd_rd_str(kd_rd *r, char *dst, size_t cap);

/* ---- time --------------------------------------------------------------- */
double kd_now(void); /* monotonic seconds */

/* ---- progress ------------------------------------------------------------
 * A one-line progress bar redrawn in place on a TTY, cut to the terminal's
 * width (TIOCGWINSZ, else $COLUMNS, else 80) so that a redraw never leaves a
 * wrapped line behind; plain lines every ~10% when not a TTY; silent when quiet. */
typedef struct {
    FILE *out;
    int tty, quiet;
    long total, done;
    double t0, last;
    int last_pct;
    int width;      /* columns a TTY line may use; 0: the terminal's, asked at each redraw */
    char label[64];
} kd_progress;
void kd_progress_start(kd_progress *p, FILE *out, int quiet, const char *label, long total);
/* extra: short text such as "loss 0.4123"; samples_per_unit: samples per tick for the rate. */
void kd_progress_update(kd_progress *p, long done, const char *extra, double samples_per_unit);
void kd_progress_end(kd_progress *p, const char *summary);

/* ---- logging: a plain append-only log file (the run log) ---------------- */
typedef struct {
    FILE *file;   /* may be NULL */
    FILE *echo;   /* stderr or NULL */
} kd_log;
void kd_logf(kd_log *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
