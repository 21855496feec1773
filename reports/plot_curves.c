/* Training curves from metrics.jsonl: one plot per model group (the part of
 * the model name before '/'), so the teacher gets its own plot and each
 * student shows scratch vs distilled side by side. */
#include <string.h>

#include "internal.h"

#define MAX_MODELS 16

static const char *const palette[] = {"#b2182b", "#2166ac", "#e08214", "#1b7837", "#762a83",
                                      "#35978f"};

static void group_of(const char *model, char *g, size_t n)
{
    size_t k = strcspn(model, "/");
    snprintf(g, n, "%.*s", (int)k, model);
}

/* distinct models of group g, in order of first appearance */
static int models_of(const rep_metric *m, int n, const char *g, const char *models[MAX_MODELS])
{
    int nm = 0;
    for (int i = 0; i < n; i++) {
        char gi[96];
        group_of(m[i].model, gi, sizeof gi);
        if (strcmp(gi, g))
            continue;
        int seen = 0;
        for (int k = 0; k < nm && !seen; k++)
            seen = !strcmp(models[k], m[i].model);
        if (!seen && nm < MAX_MODELS)
            models[nm++] = m[i].model;
    }
    return nm;
}

static void num_or_missing(kd_buf *b, double v, double scale)
{
    if (v < 0)
        rep_bprintf(b, " ?");
    else
        rep_bprintf(b, " %.6g", v * scale);
}

static const char *color_for(const char *model, int k)
{
    const char *slash = strchr(model, '/');
    if (slash && !strcmp(slash + 1, "scratch"))
        return "#e08214";
    if (slash && !strcmp(slash + 1, "distilled"))
        return "#2166ac";
    if (!strcmp(model, "teacher"))
        return "#b2182b";
    return palette[k % (int)(sizeof palette / sizeof palette[0])];
}

/* one panel: for each model, the train column dashed and the val column
 * solid; the key names the line, not the model again when there is one */
static void panel(kd_buf *b, const char *name, const char *models[], int nm, int col_train,
                  int col_val)
{
    for (int k = 0; k < nm; k++) {
        const char *label = strchr(models[k], '/') ? strchr(models[k], '/') + 1 : models[k];
        const char *c = color_for(models[k], k);
        char t[160];
        /* open points: a single epoch still shows (a line needs two) */
        rep_bprintf(b, "%s'%s.dat' index %d using 1:%d with linespoints dt 2 pt 6 ps 0.7 "
                       "lc rgb '%s' title ",
                    k ? ", \\\n    " : "  plot ", name, k, col_train, c);
        snprintf(t, sizeof t, "%s%straining", nm > 1 ? label : "", nm > 1 ? " " : "");
        rep_gp_str(b, t);
        rep_bprintf(b, ", \\\n    '%s.dat' index %d using 1:%d with linespoints pt 7 ps 0.8 "
                       "lc rgb '%s' title ", name, k, col_val, c);
        snprintf(t, sizeof t, "%s%svalidation", nm > 1 ? label : "", nm > 1 ? " " : "");
        rep_gp_str(b, t);
    }
    rep_bprintf(b, "\n");
}

#define KEY_COLS 4 /* entries per row of the key under the panels */

/* rows of the key: two entries (training, validation) per model */
static int key_rows(int nm) { return (2 * nm + KEY_COLS - 1) / KEY_COLS; }

/* Two panels with equal margins; one key for both, centred under them (the
 * lines' styles are the same in both panels), never over the lines.  Tick
 * labels print as %g, so close values never repeat a label; epochs are
 * padded off the border. */
static void curves_body(kd_buf *b, const char *name, const char *group, const char *models[],
                        int nm, int max_epoch)
{
    char title[200];
    if (nm > 1)
        snprintf(title, sizeof title, "Training curves: %.96s (%s)", group,
                 nm == 2 ? "scratch vs distilled" : "variants");
    else
        snprintf(title, sizeof title, "Training curves: %.96s", group);
    double pad = max_epoch <= 10 ? 0.3 : 0.03 * max_epoch;
    rep_bprintf(b, "  set datafile missing '?'\n  set multiplot layout 1,2 title ");
    rep_gp_str(b, title);
    rep_bprintf(b, " font ',13'\n"
                   "  set grid lc rgb '#dddddd'\n  set xlabel 'Epoch'\n"
                   "  set xrange [%.6g:%.6g]\n%s"
                   "  set offsets 0, 0, graph 0.05, graph 0.05\n"
                   "  set format y '%%g'\n  set bmargin %.1f\n"
                   "  set key at screen 0.5, 0.01 center bottom horizontal maxcols %d "
                   "font ',10' samplen 3 spacing 1.1 width 2\n"
                   "  set title 'Loss (cross-entropy per sample)'\n  set ylabel 'Loss'\n",
                1 - pad, max_epoch + pad,
                /* integer epoch ticks while they fit */
                max_epoch <= 15 ? "  set xtics 1\n" : "", 4.0 + 1.4 * key_rows(nm), KEY_COLS);
    panel(b, name, models, nm, 2, 3);
    rep_bprintf(b, "  set title 'Accuracy'\n  set ylabel 'Accuracy (%%)'\n  unset key\n");
    panel(b, name, models, nm, 4, 5);
    rep_bprintf(b, "  unset multiplot\n");
}

/* the plot's file stem: "curves_" and the group as [A-Za-z0-9_-], with the
 * group's index when an earlier group already gave the same stem */
static void stem_of(const char groups[][96], int k, char *name, size_t n)
{
    char prev[64];
    snprintf(name, n, "curves_%.50s", groups[k]);
    for (char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '_'))
            *c = '_';
    for (int j = 0; j < k; j++) {
        stem_of(groups, j, prev, sizeof prev);
        if (!strcmp(prev, name)) {
            snprintf(name + strlen(name), n - strlen(name), "-%d", k + 1);
            return;
        }
    }
}

static int curves_group(rep_plotter *p, const rep_metric *m, int n, const char *group,
                        const char *name, kd_err *e)
{
    const char *models[MAX_MODELS];
    int nm = models_of(m, n, group, models), max_epoch = 0;
    kd_buf dat = {0}, body = {0};
    char title[160];
    for (int k = 0; k < nm; k++) {
        rep_bprintf(&dat, "# ");
        rep_text_put(&dat, models[k]); /* one line, whatever the name holds */
        rep_bprintf(&dat, ": epoch loss val_loss train_acc(%%) val_acc(%%)\n");
        int last = 0;
        for (int i = 0; i < n; i++)
            if (!strcmp(m[i].model, models[k])) {
                /* another run of the same model (a seed, a pass) starts a new
                 * line: one blank line splits it within the block */
                if (m[i].epoch <= last)
                    rep_bprintf(&dat, "\n");
                last = m[i].epoch;
                rep_bprintf(&dat, "%d", m[i].epoch);
                num_or_missing(&dat, m[i].loss, 1);
                num_or_missing(&dat, m[i].val_loss, 1);
                num_or_missing(&dat, m[i].train_acc, 100);
                num_or_missing(&dat, m[i].val_acc, 100);
                rep_bprintf(&dat, "\n");
                max_epoch = m[i].epoch > max_epoch ? m[i].epoch : max_epoch;
            }
        rep_bprintf(&dat, "\n\n");
    }
    curves_body(&body, name, group, models, nm, max_epoch);
    kd_buf_put(&body, "", 1);
    snprintf(title, sizeof title, "Training curves: %.96s", group);
    rep_plot_spec s = {name, title,
                       nm > 1 ? "Loss and accuracy per epoch, training (dashed) and validation "
                                "(solid). The distilled student's training loss includes the "
                                "soft-target term, so compare validation curves."
                              : "Loss and accuracy per epoch, training (dashed) and validation "
                                "(solid).",
                       1200, 500 + 22 * key_rows(nm)};
    int rc = body.failed ? kd_err_set(e, KD_ENOMEM, "out of memory")
                         : rep_plot_draw(p, &s, &dat, (const char *)body.p, e);
    kd_buf_free(&dat);
    kd_buf_free(&body);
    return rc;
}

int rep_plot_curves(rep_plotter *p, const rep_metric *m, int n, kd_err *e)
{
    char groups[MAX_MODELS][96];
    int ng = 0;
    for (int i = 0; i < n; i++) {
        char g[96];
        group_of(m[i].model, g, sizeof g);
        int seen = 0;
        for (int k = 0; k < ng && !seen; k++)
            seen = !strcmp(groups[k], g);
        if (!seen && ng < MAX_MODELS)
            memcpy(groups[ng++], g, sizeof g);
    }
    for (int k = 0; k < ng; k++) {
        char name[64];
        stem_of((const char (*)[96])groups, k, name, sizeof name);
        int rc = curves_group(p, m, n, groups[k], name, e);
        if (rc != KD_OK)
            return rc;
    }
    return KD_OK;
}
