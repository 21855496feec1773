/* util: error formatting and prefixes, the allocation hook, atomic writes,
 * bounded file reads, CRC32, the bounded binary reader, mkdir -p and the
 * non-TTY progress output. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "../kdtest.h"

/* ---- helpers ------------------------------------------------------------- */
static int count_entries(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    int n = -1;
    ck_assert_int_eq(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

static void expect_file(const char *path, const void *want, size_t n)
{
    uint8_t *p = NULL;
    size_t len = 0;
    kd_err e = {0};
    ck_assert_msg(kd_read_file(path, 1 << 20, &p, &len, &e) == KD_OK, "%s", e.msg);
    ck_assert_uint_eq(len, n);
    ck_assert(n == 0 || memcmp(p, want, n) == 0);
    kd_free(p);
}

/* ---- errors -------------------------------------------------------------- */
START_TEST(test_err_str_forms)
{
    kd_err e = {0};
    char buf[256];
    ck_assert_int_eq(kd_err_at(&e, KD_ECONFIG, "a.yaml", 3, 7, "bad %s", "key"), KD_ECONFIG);
    ck_assert_int_eq(e.code, KD_ECONFIG);
    ck_assert_str_eq(kd_err_str(&e, buf, sizeof buf), "a.yaml:3:7: bad key");
    kd_err_at(&e, KD_EIO, "a.yaml", 3, 0, "x");
    ck_assert_str_eq(kd_err_str(&e, buf, sizeof buf), "a.yaml:3: x");
    kd_err_at(&e, KD_EIO, "a.yaml", 0, 0, "y");
    ck_assert_str_eq(kd_err_str(&e, buf, sizeof buf), "a.yaml: y");
    kd_err_at(&e, KD_EIO, NULL, 4, 2, "no file");
    ck_assert_str_eq(kd_err_str(&e, buf, sizeof buf), "no file");
    /* kd_err_set forgets an earlier location */
    kd_err_at(&e, KD_EIO, "f", 1, 1, "old");
    ck_assert_int_eq(kd_err_set(&e, KD_ENOMEM, "n=%d", 5), KD_ENOMEM);
    ck_assert_str_eq(kd_err_str(&e, buf, sizeof buf), "n=5");
    ck_assert_int_eq(e.line, 0);
    /* a small buffer truncates and stays terminated */
    kd_err_at(&e, KD_EIO, "abcdef", 12, 34, "msg");
    ck_assert_str_eq(kd_err_str(&e, buf, 8), "abcdef:");
    /* NULL e: the code still comes back */
    ck_assert_int_eq(kd_err_set(NULL, KD_EFORMAT, "x"), KD_EFORMAT);
    ck_assert_int_eq(kd_err_at(NULL, KD_EIO, "f", 1, 1, "x"), KD_EIO);
    kd_err_prefix(NULL, "nothing");
}
END_TEST

START_TEST(test_err_prefix_and_limits)
{
    kd_err e = {0};
    char buf[2048];
    kd_err_at(&e, KD_EFORMAT, "m.kdbm", 0, 0, "checksum mismatch");
    kd_err_prefix(&e, "layer %d (%s)", 2, "dense");
    ck_assert_str_eq(e.msg, "layer 2 (dense): checksum mismatch");
    ck_assert_str_eq(kd_err_str(&e, buf, sizeof buf), "m.kdbm: layer 2 (dense): checksum mismatch");
    ck_assert_int_eq(e.code, KD_EFORMAT);
    /* a full message keeps the prefix and is cut at the end */
    char longmsg[2000];
    memset(longmsg, 'm', sizeof longmsg - 1);
    longmsg[sizeof longmsg - 1] = 0;
    kd_err_set(&e, KD_EIO, "%s", longmsg);
    ck_assert_uint_eq(strlen(e.msg), sizeof e.msg - 1);
    kd_err_prefix(&e, "pre");
    ck_assert_uint_eq(strlen(e.msg), sizeof e.msg - 1);
    ck_assert(strncmp(e.msg, "pre: mmm", 8) == 0);
    /* a prefix longer than the message field is cut (to 511 bytes), the
     * message survives */
    kd_err_set(&e, KD_EIO, "tail");
    kd_err_prefix(&e, "%s", longmsg);
    ck_assert_uint_eq(strlen(e.msg), 511 + 2 + 4);
    ck_assert_str_eq(e.msg + 511, ": tail");
    ck_assert_int_eq(e.msg[510], 'm');
    /* an over-long file name is cut, terminated */
    kd_err_at(&e, KD_EIO, longmsg, 1, 1, "x");
    ck_assert_uint_eq(strlen(e.file), sizeof e.file - 1);
}
END_TEST

/* ---- allocation hook ----------------------------------------------------- */
START_TEST(test_alloc_fail_after)
{
    kd_alloc_fail_after(2);
    void *a = kd_malloc(8), *b = kd_calloc(2, 8), *c = kd_malloc(8);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_null(c);
    kd_alloc_fail_after(-1);
    c = kd_malloc(8);
    ck_assert_ptr_nonnull(c);
    kd_free(a);
    kd_free(b);
    kd_free(c);
    /* every allocator counts: calloc, realloc, aligned floats, strdup */
    kd_alloc_fail_after(0);
    ck_assert_ptr_null(kd_calloc(1, 1));
    kd_alloc_fail_after(0);
    ck_assert_ptr_null(kd_afloat(16));
    kd_alloc_fail_after(0);
    ck_assert_ptr_null(kd_strdup("abc"));
    kd_alloc_fail_after(-1);
    char *p = kd_malloc(4);
    kd_alloc_fail_after(0);
    ck_assert_ptr_null(kd_realloc(p, 4096)); /* p itself stays valid */
    kd_alloc_fail_after(-1);
    p[0] = 'x';
    kd_free(p);
    /* aligned, zeroed floats */
    float *f = kd_afloat(33);
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq((uintptr_t)f % 64, 0);
    for (int i = 0; i < 33; i++)
        ck_assert(f[i] == 0.0f);
    kd_afree(f);
    ck_assert_ptr_null(kd_afloat(SIZE_MAX / 2));
    char *s = kd_strdup("kdbench");
    ck_assert_str_eq(s, "kdbench");
    kd_free(s);
}
END_TEST

/* ---- files ----------------------------------------------------------------- */
START_TEST(test_write_atomic)
{
    char dir[256], path[512];
    kd_err e = {0};
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/out.bin", dir);
    const uint8_t data[] = {0, 1, 2, 0xff, '\n', 0, 'x'};
    ck_assert_int_eq(kd_write_atomic(path, data, sizeof data, &e), KD_OK);
    expect_file(path, data, sizeof data);
    ck_assert_int_eq(count_entries(dir), 1); /* no temp file left */
    ck_assert_int_eq(kd_file_size(path), (long long)sizeof data);
    /* replacing with fewer bytes leaves exactly those */
    ck_assert_int_eq(kd_write_atomic(path, "ab", 2, &e), KD_OK);
    expect_file(path, "ab", 2);
    ck_assert_int_eq(kd_write_atomic(path, "", 0, &e), KD_OK);
    expect_file(path, "", 0);
    ck_assert_int_eq(count_entries(dir), 1);
    unlink(path);
    rmdir(dir);
}
END_TEST

START_TEST(test_write_atomic_failures)
{
    char dir[256], path[512], tmp[600], sub[600];
    kd_err e = {0};
    kdt_tmpdir(dir, sizeof dir);
    /* folder missing */
    snprintf(path, sizeof path, "%s/missing/out.bin", dir);
    ck_assert_int_eq(kd_write_atomic(path, "x", 1, &e), KD_EIO);
    ck_assert_str_eq(e.file, path);
    ck_assert_int_eq(kd_file_size(path), -1);
    /* the temp file cannot be created (a folder sits at its name; works as root
     * too): the old file is untouched */
    snprintf(path, sizeof path, "%s/keep.bin", dir);
    ck_assert_int_eq(kd_write_atomic(path, "old", 3, &e), KD_OK);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    ck_assert_int_eq(mkdir(tmp, 0755), 0);
    e = (kd_err){0};
    ck_assert_int_eq(kd_write_atomic(path, "new!", 4, &e), KD_EIO);
    ck_assert(e.msg[0] != 0);
    expect_file(path, "old", 3);
    rmdir(tmp);
    /* the rename fails (the target is a non-empty folder): temp file removed */
    snprintf(path, sizeof path, "%s/adir", dir);
    snprintf(sub, sizeof sub, "%s/adir/inside", dir);
    ck_assert_int_eq(kd_mkdirs(sub, &e), KD_OK);
    ck_assert_int_eq(kd_write_atomic(path, "x", 1, &e), KD_EIO);
    ck_assert_int_eq(count_entries(dir), 2); /* keep.bin, adir */
    rmdir(sub);
    rmdir(path);
    snprintf(path, sizeof path, "%s/keep.bin", dir);
    unlink(path);
    rmdir(dir);
}
END_TEST

START_TEST(test_read_file_bounds)
{
    char dir[256], path[512];
    kd_err e = {0};
    uint8_t *p = (uint8_t *)1;
    size_t len = 99;
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/none", dir);
    ck_assert_int_eq(kd_read_file(path, 100, &p, &len, &e), KD_EIO);
    ck_assert_ptr_null(p);
    ck_assert_uint_eq(len, 0);
    ck_assert_str_eq(e.file, path);
    ck_assert_ptr_nonnull(strstr(e.msg, "cannot open"));
    /* sizes around the limit, small limits and ones beyond the first chunk */
    static const size_t sizes[] = {0, 1, 99, 100, 101, 65535, 65536, 65537, 200000};
    static const size_t maxes[] = {100, 65536, 131072};
    uint8_t *data = malloc(200000);
    for (size_t i = 0; i < 200000; i++)
        data[i] = (uint8_t)(i * 31 + 7);
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        kdt_write(path, data, sizes[s]);
        for (size_t m = 0; m < sizeof maxes / sizeof *maxes; m++) {
            int rc = kd_read_file(path, maxes[m], &p, &len, &e);
            if (sizes[s] <= maxes[m]) {
                ck_assert_msg(rc == KD_OK, "size %zu max %zu: %s", sizes[s], maxes[m], e.msg);
                ck_assert_uint_eq(len, sizes[s]);
                ck_assert(len == 0 || memcmp(p, data, len) == 0);
                kd_free(p);
            } else {
                ck_assert_msg(rc == KD_EFORMAT, "size %zu max %zu: rc %d", sizes[s], maxes[m], rc);
                ck_assert_ptr_null(p);
            }
        }
    }
    free(data);
    unlink(path);
    rmdir(dir);
}
END_TEST

START_TEST(test_mkdirs)
{
    char dir[256], path[512], file[600];
    kd_err e = {0};
    struct stat st;
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/a/b/c", dir);
    ck_assert_int_eq(kd_mkdirs(path, &e), KD_OK);
    ck_assert(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
    ck_assert_int_eq(kd_mkdirs(path, &e), KD_OK); /* exists: fine */
    /* a file in the way */
    snprintf(file, sizeof file, "%s/a/f", dir);
    kdt_write(file, "x", 1);
    ck_assert_int_eq(kd_mkdirs(file, &e), KD_EIO);
    snprintf(file, sizeof file, "%s/a/f/g", dir);
    ck_assert_int_eq(kd_mkdirs(file, &e), KD_EIO);
    ck_assert_int_eq(kd_file_size(file), -1);
    snprintf(file, sizeof file, "%s/a/f", dir);
    unlink(file);
    rmdir(path);
    snprintf(path, sizeof path, "%s/a/b", dir);
    rmdir(path);
    snprintf(path, sizeof path, "%s/a", dir);
    rmdir(path);
    rmdir(dir);
}
END_TEST

START_TEST(test_crc32)
{
    ck_assert_uint_eq(kd_crc32(0, "123456789", 9), 0xCBF43926u);
    ck_assert_uint_eq(kd_crc32(0, "", 0), 0);
    /* incremental equals one shot */
    uint32_t c = kd_crc32(0, "1234", 4);
    ck_assert_uint_eq(kd_crc32(c, "56789", 5), 0xCBF43926u);
    ck_assert_uint_eq(kd_crc32(0, "a", 1), 0xE8B7BE43u);
}
END_TEST

/* ---- binary buffer and bounded reader ------------------------------------- */
START_TEST(test_buf_rd_roundtrip)
{
    kd_buf b = {0};
    kd_buf_u32(&b, 0xdeadbeefu);
    kd_buf_u64(&b, 0x0102030405060708ull);
    kd_buf_f32(&b, -1.5f);
    kd_buf_str(&b, "hello");
    kd_buf_str(&b, "");
    for (int i = 0; i < 3000; i++) /* grow past the first block */
        kd_buf_u32(&b, (uint32_t)i);
    ck_assert_int_eq(b.failed, 0);
    ck_assert_uint_eq(b.len, 4 + 8 + 4 + 9 + 4 + 3000 * 4);
    /* little-endian on disk */
    ck_assert_uint_eq(b.p[0], 0xef);
    ck_assert_uint_eq(b.p[4], 0x08);
    ck_assert_uint_eq(b.p[16], 5);
    kd_rd r = {.p = b.p, .len = b.len, .ok = 1};
    ck_assert_uint_eq(kd_rd_u32(&r), 0xdeadbeefu);
    ck_assert(kd_rd_u64(&r) == 0x0102030405060708ull);
    ck_assert(kd_rd_f32(&r) == -1.5f);
    char s[6];
    ck_assert_int_eq(kd_rd_str(&r, s, sizeof s), 0);
    ck_assert_str_eq(s, "hello");
    ck_assert_int_eq(kd_rd_str(&r, s, sizeof s), 0);
    ck_assert_str_eq(s, "");
    for (int i = 0; i < 3000; i++)
        ck_assert_uint_eq(kd_rd_u32(&r), (uint32_t)i);
    ck_assert_int_eq(r.ok, 1);
    ck_assert_uint_eq(r.pos, r.len);
    /* past the end: fails, zero-fills, sticks */
    ck_assert_uint_eq(kd_rd_u32(&r), 0);
    ck_assert_int_eq(r.ok, 0);
    kd_buf_free(&b);
    ck_assert_ptr_null(b.p);
    ck_assert_uint_eq(b.len, 0);
}
END_TEST

START_TEST(test_rd_bounds)
{
    /* the data lives in an exact-size heap block so ASan sees any overread */
    uint8_t *p = malloc(7);
    memcpy(p, "\x03\x00\x00\x00" "abc", 7);
    for (size_t len = 0; len <= 7; len++) {
        kd_rd r = {.p = p, .len = len, .ok = 1};
        char s[8] = "junk";
        int rc = kd_rd_str(&r, s, sizeof s);
        ck_assert_int_eq(rc, len == 7 ? 0 : -1);
        ck_assert_int_eq(r.ok, len == 7);
        ck_assert_str_eq(s, len == 7 ? "abc" : "");
    }
    /* a string that does not fit (3 chars + NUL in 3 bytes) is refused */
    kd_rd r = {.p = p, .len = 7, .ok = 1};
    char s3[3];
    ck_assert_int_eq(kd_rd_str(&r, s3, sizeof s3), -1);
    ck_assert_int_eq(r.ok, 0);
    ck_assert_str_eq(s3, "");
    /* a huge length never wraps the bounds check */
    kd_rd r2 = {.p = p, .len = 7, .ok = 1};
    ck_assert_int_eq(kd_rd_get(&r2, NULL, 4), 0);
    ck_assert_int_eq(kd_rd_get(&r2, NULL, SIZE_MAX - 2), -1);
    ck_assert_int_eq(r2.ok, 0);
    ck_assert_uint_eq(r2.pos, 4);
    /* once failed, even a fitting read fails */
    uint8_t one = 9;
    ck_assert_int_eq(kd_rd_get(&r2, &one, 1), -1);
    ck_assert_uint_eq(one, 0);
    /* u64 and f32 at the edge */
    kd_rd r3 = {.p = p, .len = 7, .ok = 1};
    ck_assert(kd_rd_u64(&r3) == 0);
    ck_assert_int_eq(r3.ok, 0);
    kd_rd r4 = {.p = p + 4, .len = 3, .ok = 1};
    ck_assert(kd_rd_f32(&r4) == 0.0f);
    ck_assert_int_eq(r4.ok, 0);
    free(p);
}
END_TEST

START_TEST(test_buf_alloc_failure)
{
    kd_buf b = {0};
    kd_buf_u32(&b, 1);
    kd_alloc_fail_after(0);
    uint8_t big[8192] = {0};
    kd_buf_put(&b, big, sizeof big); /* needs to grow: fails */
    kd_alloc_fail_after(-1);
    ck_assert_int_eq(b.failed, 1);
    ck_assert_uint_eq(b.len, 4);
    kd_buf_u32(&b, 2); /* ignored after a failure */
    ck_assert_uint_eq(b.len, 4);
    kd_buf_free(&b);
}
END_TEST

/* ---- progress ------------------------------------------------------------ */
static char *slurp(FILE *f, long *n)
{
    fflush(f);
    *n = ftell(f);
    char *s = calloc(1, (size_t)*n + 1);
    rewind(f);
    ck_assert_uint_eq(fread(s, 1, (size_t)*n, f), (size_t)*n);
    return s;
}

START_TEST(test_progress_plain_lines)
{
    FILE *f = tmpfile();
    ck_assert_ptr_nonnull(f);
    kd_progress p;
    kd_progress_start(&p, f, 0, "ep 1/2", 100);
    ck_assert_int_eq(p.tty, 0);
    for (long d = 1; d <= 100; d++)
        kd_progress_update(&p, d, "loss 0.5", 32);
    kd_progress_end(&p, "summary");
    long n;
    char *s = slurp(f, &n);
    ck_assert_ptr_null(strchr(s, '\r'));
    ck_assert_ptr_null(strchr(s, '\033'));
    /* one line at the first update, then one per 10%, then the summary */
    static const long want[] = {1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100};
    char *line = s;
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        char *nl = strchr(line, '\n');
        ck_assert_msg(nl != NULL, "line %zu missing in:\n%s", i, s);
        *nl = 0;
        char head[64];
        snprintf(head, sizeof head, "ep 1/2 %3ld%% %ld/100 loss 0.5 ", want[i], want[i]);
        ck_assert_msg(strncmp(line, head, strlen(head)) == 0, "line %zu: '%s'", i, line);
        ck_assert_ptr_nonnull(strstr(line, " samples/s ETA "));
        line = nl + 1;
    }
    ck_assert_str_eq(line, "summary\n");
    free(s);
    fclose(f);
}
END_TEST

START_TEST(test_progress_quiet)
{
    FILE *f = tmpfile();
    kd_progress p;
    kd_progress_start(&p, f, 1, "quiet", 10);
    for (long d = 1; d <= 10; d++)
        kd_progress_update(&p, d, "x", 1);
    kd_progress_end(&p, "summary");
    long n;
    char *s = slurp(f, &n);
    ck_assert_int_eq(n, 0);
    free(s);
    fclose(f);
    /* no stream at all is quiet too */
    kd_progress_start(&p, NULL, 0, "none", 10);
    kd_progress_update(&p, 5, NULL, 1);
    kd_progress_end(&p, "x");
    ck_assert_int_eq(p.quiet, 1);
}
END_TEST

/* On a terminal (a pseudo-terminal in raw mode): redraws in place with
 * "\r\033[K" and no newline until the summary.  Redraws are throttled by
 * time, so only the forced last one (done == total) is certain. */
START_TEST(test_progress_tty)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    ck_assert_int_ge(master, 0);
    ck_assert(grantpt(master) == 0 && unlockpt(master) == 0);
    int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
    ck_assert_int_ge(slave, 0);
    struct termios t;
    ck_assert_int_eq(tcgetattr(slave, &t), 0);
    cfmakeraw(&t);
    ck_assert_int_eq(tcsetattr(slave, TCSANOW, &t), 0);
    FILE *out = fdopen(slave, "w");
    kd_progress p;
    kd_progress_start(&p, out, 0, "tty", 40);
    ck_assert_int_eq(p.tty, 1);
    for (long d = 1; d <= 40; d++)
        kd_progress_update(&p, d, "x", 1);
    kd_progress_end(&p, "sum");
    fclose(out);
    char buf[8192];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof buf - 1 && (r = read(master, buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t)r; /* ends with EIO once the slave is closed and drained */
    buf[n] = 0;
    close(master);
    const char *last = "\r\033[Ktty [#########################] 100% 40/40 x ";
    ck_assert_msg(strstr(buf, last) != NULL, "no final bar in '%s'", buf);
    ck_assert_msg(strncmp(buf, "\r\033[Ktty [", 9) == 0, "starts '%.20s'", buf);
    const char *tail = "\r\033[Ksum\n";
    ck_assert(n >= strlen(tail) && strcmp(buf + n - strlen(tail), tail) == 0);
    ck_assert_ptr_eq(strchr(buf, '\n'), buf + n - 1); /* one newline: the summary's */
}
END_TEST

START_TEST(test_logf)
{
    FILE *f = tmpfile(), *echo = tmpfile();
    kd_log l = {.file = f, .echo = echo};
    kd_logf(&l, "epoch %d loss %.2f", 3, 0.5);
    kd_logf(&l, "done");
    kd_log only = {.file = f};
    kd_logf(&only, "file only");
    kd_logf(NULL, "nowhere");
    long n;
    char *s = slurp(f, &n);
    ck_assert_str_eq(s, "epoch 3 loss 0.50\ndone\nfile only\n");
    free(s);
    s = slurp(echo, &n);
    ck_assert_str_eq(s, "epoch 3 loss 0.50\ndone\n");
    free(s);
    fclose(f);
    fclose(echo);
}
END_TEST

Suite *suite_util(void)
{
    Suite *s = suite_create("util");
    TCase *t = tcase_create("util");
    tcase_add_test(t, test_err_str_forms);
    tcase_add_test(t, test_err_prefix_and_limits);
    tcase_add_test(t, test_alloc_fail_after);
    tcase_add_test(t, test_write_atomic);
    tcase_add_test(t, test_write_atomic_failures);
    tcase_add_test(t, test_read_file_bounds);
    tcase_add_test(t, test_mkdirs);
    tcase_add_test(t, test_crc32);
    tcase_add_test(t, test_buf_rd_roundtrip);
    tcase_add_test(t, test_rd_bounds);
    tcase_add_test(t, test_buf_alloc_failure);
    tcase_add_test(t, test_progress_plain_lines);
    tcase_add_test(t, test_progress_quiet);
    tcase_add_test(t, test_progress_tty);
    tcase_add_test(t, test_logf);
    suite_add_tcase(s, t);
    return s;
}
