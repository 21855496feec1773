/* Plot drawing: each plot is a .dat file and a .gp script kept beside the
 * PNG and SVG they make, so a user can restyle and re-run it. */
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
    p->w = w;
}

void rep_plotter_finish(rep_plotter *p)
{
    if (p->missing)
        rep_warn(p->w, "plots not drawn: %s; the tables are written, and each plot's .dat and "
                       ".gp are in %s (install gnuplot and run `gnuplot NAME.gp` there)",
                 p->missing_why, p->dir);
}

void rep_dat_str(kd_buf *b, const char *s)
{
    kd_buf_put(b, "\"", 1);
    for (; *s; s++)
        kd_buf_put(b, *s == '"' || *s == '\n' ? "'" : s, 1);
    kd_buf_put(b, "\"", 1);
}

void rep_gp_str(kd_buf *b, const char *s)
{
    kd_buf_put(b, "'", 1);
    for (; *s; s++)
        kd_buf_put(b, *s == '\'' ? "''" : *s == '\n' ? " " : s, *s == '\'' ? 2 : 1);
    kd_buf_put(b, "'", 1);
}

static int write_file(const char *dir, const char *name, const char *ext, const void *p,
                      size_t n, kd_err *e)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s.%s", dir, name, ext);
    return kd_write_atomic(path, p, n, e);
}

/* the script: one body rendered for both terminals */
static void script(kd_buf *b, const rep_plot_spec *s, const char *body)
{
    rep_bprintf(b, "# %s\n# Written by kdbench; data in %s.dat.  Restyle and re-run in this "
                   "folder with:\n#   gnuplot %s.gp\n",
                s->title, s->name, s->name);
    rep_bprintf(b, "set encoding utf8\n"
                   "do for [fmt in \"png svg\"] {\n"
                   "  reset\n"
                   "  if (fmt eq \"png\") {\n"
                   "    set terminal pngcairo noenhanced size %d,%d font \"Sans,11\" "
                   "linewidth 1.3\n"
                   "  } else {\n"
                   "    set terminal svg noenhanced size %d,%d font \"Sans,11\" "
                   "background rgb \"white\"\n"
                   "  }\n"
                   "  set output \"%s.\".fmt\n"
                   "  set linetype 1 lc rgb '#2166ac' lw 1.5\n"
                   "  set linetype 2 lc rgb '#e08214' lw 1.5\n"
                   "  set linetype 3 lc rgb '#1b7837' lw 1.5\n"
                   "  set linetype 4 lc rgb '#b2182b' lw 1.5\n"
                   "  set linetype 5 lc rgb '#762a83' lw 1.5\n"
                   "  set linetype 6 lc rgb '#35978f' lw 1.5\n"
                   "  set linetype cycle 6\n",
                s->width, s->height, s->width, s->height, s->name);
    kd_buf_put(b, body, strlen(body));
    rep_bprintf(b, "  set output\n}\n");
}

static int made_ok(const rep_plotter *p, const char *name)
{
    char path[4400];
    const char *ext[2] = {"png", "svg"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s.%s", p->dir, name, ext[i]);
        if (kd_file_size(path) <= 0)
            return 0;
    }
    return 1;
}

static void remove_outputs(const rep_plotter *p, const char *name)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s.png", p->dir, name);
    unlink(path);
    snprintf(path, sizeof path, "%s/%s.svg", p->dir, name);
    unlink(path);
}

static void run_gnuplot(rep_plotter *p, const rep_plot_spec *s)
{
    char gp[100], why[400];
    snprintf(gp, sizeof gp, "%s.gp", s->name);
    int rc = rep_gnuplot_run(p->gnuplot, p->dir, gp, p->timeout_s, why, sizeof why);
    if (rc == REP_GP_MISSING) {
        p->missing = 1;
        snprintf(p->missing_why, sizeof p->missing_why, "%s", why);
    } else if (rc != REP_GP_OK) {
        rep_warn(p->w, "plot %s (%s) not drawn: %s", s->name, s->title, why);
    } else if (!made_ok(p, s->name)) {
        rep_warn(p->w, "plot %s (%s) not drawn: gnuplot made no %s.png/%s.svg", s->name,
                 s->title, s->name, s->name);
    } else if (p->nmade < REP_MAX_PLOTS) {
        rep_plot_made *m = &p->made[p->nmade++];
        snprintf(m->name, sizeof m->name, "%s", s->name);
        snprintf(m->title, sizeof m->title, "%s", s->title);
        snprintf(m->caption, sizeof m->caption, "%s", s->caption ? s->caption : "");
    }
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
    if (p->enabled && !p->missing)
        run_gnuplot(p, s);
    return KD_OK;
}
