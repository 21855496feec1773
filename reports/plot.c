/* Plot drawing: each plot is a .dat file and a .gp script kept beside the
 * PNG and SVG they make, so a user can restyle and re-run it. */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

void rep_plotter_init(rep_plotter *p, const char *dir, const rep_report_opts *o,
                      rep_warnings *w)
{
    memset(p, 0, sizeof *p);
    snprintf(p->dir, sizeof p->dir, "%s", dir);
    p->gnuplot = o && o->gnuplot ? o->gnuplot : "gnuplot";
    p->timeout_s = o && o->timeout_s > 0 ? o->timeout_s : 30;
    p->enabled = o ? o->plots : 1;
    p->stop = o ? o->stop : NULL;
    p->w = w;
}

void rep_plotter_finish(rep_plotter *p)
{
    if (p->missing)
        rep_warn(p->w, "plots not drawn: %s; the tables are written, and each plot's .dat and "
                       ".gp are in %s (install gnuplot and run `gnuplot NAME.gp` there)",
                 p->missing_why, p->dir);
}

static int write_file(const char *dir, const char *name, const char *ext, const void *p,
                      size_t n, kd_err *e)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s.%s", dir, name, ext);
    return kd_write_atomic(path, p, n, e);
}

/* The script: one body rendered for both terminals.  Nothing read from a
 * file is written here but through rep_gp_str (the header names only the
 * plot's file stem, which is ours).  gnuplot -e "suffix='.tmp.PID'" makes it
 * write temp files that are renamed once it succeeded. */
static void script(kd_buf *b, const rep_plot_spec *s, const char *body)
{
    rep_bprintf(b, "# Plot %s, written by kdbench; data in %s.dat.  Restyle and re-run in "
                   "this folder with:\n#   gnuplot %s.gp\n",
                s->name, s->name, s->name);
    rep_bprintf(b, "set encoding utf8\n"
                   "if (!exists(\"suffix\")) suffix = \"\"\n"
                   "do for [fmt in \"png svg\"] {\n"
                   "  reset\n"
                   "  if (fmt eq \"png\") {\n"
                   "    set terminal pngcairo noenhanced size %d,%d font \"Sans,11\" "
                   "linewidth 1.3\n"
                   "  } else {\n"
                   "    set terminal svg noenhanced size %d,%d font \"Sans,11\" "
                   "background rgb \"white\"\n"
                   "  }\n"
                   "  set output \"%s.\".fmt.suffix\n"
                   "  set linetype 1 lc rgb '#2166ac' lw 1.5\n"
                   "  set linetype 2 lc rgb '#e08214' lw 1.5\n"
                   "  set linetype 3 lc rgb '#1b7837' lw 1.5\n"
                   "  set linetype 4 lc rgb '#b2182b' lw 1.5\n"
                   "  set linetype 5 lc rgb '#762a83' lw 1.5\n"
                   "  set linetype 6 lc rgb '#35978f' lw 1.5\n"
                   "  set linetype 7 lc rgb '#8c510a' lw 1.5\n"
                   "  set linetype 8 lc rgb '#de77ae' lw 1.5\n"
                   "  set linetype 9 lc rgb '#4d4d4d' lw 1.5\n"
                   "  set linetype 10 lc rgb '#7fbc41' lw 1.5\n"
                   "  set linetype cycle 10\n",
                s->width, s->height, s->width, s->height, s->name);
    kd_buf_put(b, body, strlen(body));
    rep_bprintf(b, "  set output\n}\n");
}

static const char *const out_ext[2] = {"png", "svg"};

/* dir/name.ext, plus the temp suffix when tmp is not NULL */
static void out_path(char *path, size_t n, const rep_plotter *p, const char *name, int ext,
                     const char *tmp)
{
    snprintf(path, n, "%s/%s.%s%s", p->dir, name, out_ext[ext], tmp ? tmp : "");
}

/* 1 when path is a whole PNG (ends in its IEND chunk) or SVG (ends in
 * </svg>), flushed to disk: gnuplot may exit 0 after a short write (disk full) */
static int complete(const char *path, int ext)
{
    static const unsigned char iend[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82};
    unsigned char tail[64];
    long long size = kd_file_size(path);
    int fd = open(path, O_RDONLY | O_CLOEXEC), ok = 0;
    if (fd < 0)
        return 0;
    size_t want = size > (long long)sizeof tail ? sizeof tail : size > 0 ? (size_t)size : 0;
    if (want >= sizeof iend && pread(fd, tail, want, size - (long long)want) == (ssize_t)want) {
        size_t n = want;
        if (ext == 0) {
            ok = !memcmp(tail + n - sizeof iend, iend, sizeof iend);
        } else {
            while (n && strchr(" \t\r\n", tail[n - 1]))
                n--;
            ok = n >= 6 && !memcmp(tail + n - 6, "</svg>", 6);
        }
    }
    ok = ok && fsync(fd) == 0;
    close(fd);
    return ok;
}

/* Lands gnuplot's temp files under their names when both are complete (1),
 * else removes them and anything half landed (0). */
static int land_outputs(const rep_plotter *p, const char *name, const char *tmp, int ok)
{
    char from[4400], to[4400];
    for (int i = 0; i < 2 && ok; i++) {
        out_path(from, sizeof from, p, name, i, tmp);
        ok = complete(from, i);
    }
    for (int i = 0; i < 2 && ok; i++) {
        out_path(from, sizeof from, p, name, i, tmp);
        out_path(to, sizeof to, p, name, i, NULL);
        ok = rename(from, to) == 0;
    }
    for (int i = 0; i < 2 && !ok; i++) {
        out_path(from, sizeof from, p, name, i, tmp);
        out_path(to, sizeof to, p, name, i, NULL);
        unlink(from);
        unlink(to);
    }
    return ok;
}

static void remove_outputs(const rep_plotter *p, const char *name)
{
    char path[4400];
    for (int i = 0; i < 2; i++) {
        out_path(path, sizeof path, p, name, i, NULL);
        unlink(path);
    }
}

static void record(rep_plotter *p, const rep_plot_spec *s)
{
    if (p->nmade >= REP_MAX_PLOTS)
        return;
    rep_plot_made *m = &p->made[p->nmade++];
    snprintf(m->name, sizeof m->name, "%s", s->name);
    rep_text_clean(m->title, sizeof m->title, s->title);
    rep_text_clean(m->caption, sizeof m->caption, s->caption ? s->caption : "");
}

/* gnuplot writes NAME.png.tmp.PID and NAME.svg.tmp.PID; they are renamed
 * only when it exited 0 and both are complete (a full disk leaves no
 * truncated plot).  Returns KD_OK, or an error when the caller asked to stop. */
static int run_gnuplot(rep_plotter *p, const rep_plot_spec *s, kd_err *e)
{
    char gp[100], why[400], tmp[40], title[160];
    snprintf(gp, sizeof gp, "%s.gp", s->name);
    snprintf(tmp, sizeof tmp, ".tmp.%ld", (long)getpid());
    rep_text_clean(title, sizeof title, s->title);
    rep_gp_job job = {p->gnuplot, p->dir, gp, tmp, p->timeout_s, p->stop};
    int rc = rep_gnuplot_run(&job, why, sizeof why);
    int landed = land_outputs(p, s->name, tmp, rc == REP_GP_OK);
    if (rc == REP_GP_STOPPED)
        return kd_err_set(e, KD_ERUNTIME, "interrupted while drawing %s", s->name);
    if (rc == REP_GP_MISSING) {
        p->missing = 1;
        snprintf(p->missing_why, sizeof p->missing_why, "%s", why);
    } else if (rc != REP_GP_OK) {
        rep_warn(p->w, "plot %s (%s) not drawn: %s", s->name, title, why);
    } else if (!landed) {
        rep_warn(p->w, "plot %s (%s) not drawn: gnuplot made no %s.png/%s.svg", s->name, title,
                 s->name, s->name);
    } else {
        record(p, s);
    }
    return KD_OK;
}

int rep_plot_draw(rep_plotter *p, const rep_plot_spec *s, const kd_buf *data, const char *body,
                  kd_err *e)
{
    kd_buf b = {0};
    if (data->failed)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    int rc = write_file(p->dir, s->name, "dat", data->p ? (const void *)data->p : "",
                        data->len, e);
    if (rc != KD_OK)
        return rc;
    script(&b, s, body);
    rc = b.failed ? kd_err_set(e, KD_ENOMEM, "out of memory")
                  : write_file(p->dir, s->name, "gp", b.p, b.len, e);
    kd_buf_free(&b);
    if (rc != KD_OK)
        return rc;
    remove_outputs(p, s->name);
    if (p->stop && *p->stop)
        return kd_err_set(e, KD_ERUNTIME, "interrupted before drawing %s", s->name);
    if (p->enabled && !p->missing)
        return run_gnuplot(p, s, e);
    return KD_OK;
}
