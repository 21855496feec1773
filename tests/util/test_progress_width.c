/* The progress bar on a narrow terminal: every redraw fits one screen line.
 * At 70 columns each redraw used to wrap and leave a stale line behind. */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "../../util/util.h"

/* Draws a long-labelled bar on a pty of cols columns (0: the pty reports
 * none) and returns everything written, NUL-terminated, in buf. */
static size_t draw(int cols, char *buf, size_t cap)
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
    struct winsize ws = {.ws_row = 24, .ws_col = (unsigned short)cols};
    ck_assert_int_eq(ioctl(slave, TIOCSWINSZ, &ws), 0);
    FILE *out = fdopen(slave, "w");
    kd_progress p;
    kd_progress_start(&p, out, 0, "[10/24] mlp128_prune80/s0.9 seed 3 epoch 4/10", 40);
    for (long d = 1; d <= 40; d++)
        kd_progress_update(&p, d, "loss 0.4123", 128);
    kd_progress_end(&p, "done");
    fclose(out);
    size_t n = 0;
    ssize_t r;
    while (n < cap - 1 && (r = read(master, buf + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = 0;
    close(master);
    return n;
}

/* every redraw (text between "\r\033[K" marks) within width - 1 bytes */
static void check_lines(const char *buf, int width)
{
    int lines = 0;
    for (const char *s = strstr(buf, "\r\033[K"); s; lines++) {
        s += 4;
        const char *next = strstr(s, "\r\033[K");
        size_t len = next ? (size_t)(next - s) : strlen(s);
        if (next || strncmp(s, "done", 4)) {
            ck_assert_msg(len <= (size_t)width - 1, "a %zu-byte line on %d columns: %.*s", len,
                          width, (int)len, s);
            ck_assert_msg(!memchr(s, '\n', len), "a newline inside a redraw: %.*s", (int)len, s);
        }
        s = next;
    }
    ck_assert_int_gt(lines, 1);
    ck_assert_msg(strstr(buf, "[10/24] mlp128") != NULL, "label lost: %s", buf);
}

START_TEST(narrow_terminal)
{
    static char buf[65536];
    draw(70, buf, sizeof buf);
    check_lines(buf, 70);
    ck_assert_msg(strstr(buf, "100%") != NULL, "no final state at 70 columns: %s", buf);
    draw(30, buf, sizeof buf);
    check_lines(buf, 30);
    /* wide enough: the bar is drawn whole */
    draw(200, buf, sizeof buf);
    ck_assert_msg(strstr(buf, "[#########################] 100% 40/40 loss 0.4123") != NULL,
                  "%s", buf);
}
END_TEST

START_TEST(columns_variable)
{
    /* a terminal that reports no size: $COLUMNS */
    static char buf[65536];
    setenv("COLUMNS", "50", 1);
    draw(0, buf, sizeof buf);
    check_lines(buf, 50);
}
END_TEST

Suite *suite_util_progress(void)
{
    Suite *s = suite_create("util_progress");
    TCase *t = tcase_create("util_progress");
    tcase_add_test(t, narrow_terminal);
    tcase_add_test(t, columns_variable);
    suite_add_tcase(s, t);
    return s;
}
