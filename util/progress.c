/* Progress bar: redrawn in place on a TTY, plain lines (every ~10%) otherwise. */
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Columns of the terminal behind out: the window size, else $COLUMNS, else 80. */
static int term_width(FILE *out)
{
    struct winsize ws;
    if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    const char *c = getenv("COLUMNS");
    long n = c ? strtol(c, NULL, 10) : 0;
    return n > 0 && n < 10000 ? (int)n : 80;
}

/* Cuts line to at most max bytes, never inside a UTF-8 sequence. */
static void fit(char *line, int max)
{
    size_t n = strlen(line);
    if (max < 0 || n <= (size_t)max)
        return;
    n = (size_t)max;
    while (n > 0 && ((unsigned char)line[n] & 0xC0) == 0x80)
        n--;
    line[n] = 0;
}

void kd_progress_start(kd_progress *p, FILE *out, int quiet, const char *label, long total)
{
    memset(p, 0, sizeof *p);
    p->out = out;
    p->quiet = quiet || !out;
    p->tty = out && isatty(fileno(out));
    p->total = total > 0 ? total : 1;
    p->t0 = p->last = kd_now();
    p->last_pct = -1;
    snprintf(p->label, sizeof p->label, "%s", label);
}

static void fmt_eta(double s, char *buf, size_t n)
{
    if (s < 0 || s > 360000)
        snprintf(buf, n, "--:--");
    else if (s >= 3600)
        snprintf(buf, n, "%d:%02d:%02d", (int)s / 3600, ((int)s / 60) % 60, (int)s % 60);
    else
        snprintf(buf, n, "%02d:%02d", (int)s / 60, (int)s % 60);
}

void kd_progress_update(kd_progress *p, long done, const char *extra, double samples_per_unit)
{
    if (p->quiet)
        return;
    p->done = done;
    double now = kd_now(), el = now - p->t0;
    int pct = (int)(100.0 * (double)done / (double)p->total);
    if (p->tty) {
        if (now - p->last < 0.1 && done < p->total)
            return;
    } else if (p->last_pct >= 0 && pct / 10 == p->last_pct / 10 && done < p->total) {
        /* (last_pct < 0: nothing printed yet; -1 / 10 is 0 in C, so test it apart) */
        return;
    }
    p->last = now;
    p->last_pct = pct;
    double rate = el > 0 ? (double)done * samples_per_unit / el : 0;
    char eta[32];
    fmt_eta(done > 0 ? el * (double)(p->total - done) / (double)done : -1, eta, sizeof eta);
    if (p->tty) {
        /* one screen line, or each redraw leaves the wrapped part behind: the
         * bar goes first, then the end of the line */
        char bar[26], line[512];
        int fill = (int)(25.0 * (double)done / (double)p->total);
        int width = p->width > 0 ? p->width : term_width(p->out);
        for (int i = 0; i < 25; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[25] = 0;
        int n = snprintf(line, sizeof line, "%s [%s] %3d%% %ld/%ld %s %.0f samples/s ETA %s",
                         p->label, bar, pct, done, p->total, extra ? extra : "", rate, eta);
        if (n >= width)
            snprintf(line, sizeof line, "%s %3d%% %ld/%ld %s %.0f samples/s ETA %s", p->label,
                     pct, done, p->total, extra ? extra : "", rate, eta);
        fit(line, width - 1); /* the last column would wrap on some terminals */
        fprintf(p->out, "\r\033[K%s", line);
    } else {
        fprintf(p->out, "%s %3d%% %ld/%ld %s %.0f samples/s ETA %s\n", p->label, pct, done,
                p->total, extra ? extra : "", rate, eta);
    }
    fflush(p->out);
}

void kd_progress_end(kd_progress *p, const char *summary)
{
    if (p->quiet)
        return;
    if (p->tty)
        fprintf(p->out, "\r\033[K");
    if (summary)
        fprintf(p->out, "%s\n", summary);
    fflush(p->out);
}
