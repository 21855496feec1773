/* A student's distillation modes: `distill: {method: dkd, beta: 8, ...}` for
 * one mode (its row stays <student>/distilled), or `distill: {modes: [kd,
 * {method: dkd, warmup: 2}, ...]}` for several, each a row <student>/<name>.
 * Each method takes its own keys only. */
#include <string.h>

#include "internal.h"

const char *const cfg_distill_methods[3] = {"kd", "dkd", "dist"};

const char *config_distill_method(cfg_method m) { return cfg_distill_methods[m]; }

/* The keys each method takes (besides method and name). */
static const char *const kd_keys[] = {"temperature", "alpha", "standardize", NULL};
static const char *const dkd_keys[] = {"temperature", "alpha", "beta", "warmup", "standardize",
                                       NULL};
static const char *const dist_keys[] = {"temperature", "beta", "gamma", NULL};
static const char *const *const method_keys[3] = {kd_keys, dkd_keys, dist_keys};

/* DKD's beta defaults to 1, not the paper's CIFAR-100 value 8.  NCKD's
 * gradient w.r.t. the student's logits is beta*T*(phat_S - phat_T) per
 * sample (L1 norm up to 2*beta*T): at beta 8, T 4 that is 64, against 2 for
 * the cross-entropy and 7.2 for KD at alpha 0.9, and an MLP student (no batch
 * norm to absorb the scale) under SGD lr 0.05 diverged in its first epoch,
 * with or without TCKD and with the weight warmed up over the whole run
 * (experiments/fashion_distill_methods.yaml; NCKD alone at T 1 diverged too).
 * beta 1 keeps NCKD's push at KD's scale; mdistiller's ImageNet setting
 * uses 0.5.  A batch-norm student may take more: set beta. */
static void mode_defaults(cfg_distill_mode *m, cfg_method k)
{
    *m = (cfg_distill_mode){.method = k, .temperature = 4, .alpha = k == CFG_METHOD_KD ? 0.9f : 1};
    if (k == CFG_METHOD_DKD)
        m->beta = 1;
    if (k == CFG_METHOD_DIST) {
        m->temperature = 1;
        m->beta = m->gamma = 1;
    }
}

static int listed_in(const char *key, const char *const *keys)
{
    for (int i = 0; keys[i]; i++)
        if (!strcmp(key, keys[i]))
            return 1;
    return 0;
}

/* A scalar naming a method into *out. */
static int method_node(cfg_ctx *c, const cfg_node *v, const char *p, cfg_method *out)
{
    if (v->kind == CFG_SCALAR)
        for (int i = 0; i < 3; i++)
            if (!strcmp(v->s, cfg_distill_methods[i])) {
                *out = (cfg_method)i;
                return KD_OK;
            }
    const char *s = v->kind == CFG_SCALAR ? cfg_suggest(v->s, cfg_distill_methods, 3) : NULL;
    if (v->kind == CFG_SCALAR)
        return cfg_err(c, v, p, "unknown method \"%.64s\" (%s%s%sone of: kd, dkd, dist)", v->s,
                       s ? "did you mean \"" : "", s ? s : "", s ? "\"?; " : "");
    return cfg_err(c, v, p, "expected a method: kd, dkd or dist");
}

/* Every parameter key in m belongs to the mode's method. */
static int check_method_keys(cfg_ctx *c, const cfg_node *m, const char *path, cfg_method k)
{
    for (int i = 0; i + 1 < m->n; i += 2) {
        const char *key = m->kid[i]->s;
        if (!listed_in(key, kd_keys) && !listed_in(key, dkd_keys) && !listed_in(key, dist_keys))
            continue; /* method, name, hint, modes */
        if (listed_in(key, method_keys[k]))
            continue;
        char p[160], list[96] = "method";
        for (int j = 0; method_keys[k][j]; j++)
            snprintf(list + strlen(list), sizeof list - strlen(list), ", %s", method_keys[k][j]);
        int owner = listed_in(key, dist_keys) ? CFG_METHOD_DIST : CFG_METHOD_DKD;
        return cfg_err(c, m->kid[i], cfg_path(p, sizeof p, path, key),
                       "not a parameter of method %s (it takes %s; %s belongs to %s)",
                       cfg_distill_methods[k], list, key, cfg_distill_methods[owner]);
    }
    return KD_OK;
}

/* One mode's method and parameters from mapping m (path names it). */
static int walk_mode(cfg_ctx *c, const cfg_node *m, const char *path, cfg_distill_mode *md)
{
    cfg_method k = CFG_METHOD_KD;
    const cfg_node *mv = cfg_map_get(m, "method");
    char p[160];
    int rc = mv ? method_node(c, mv, cfg_path(p, sizeof p, path, "method"), &k) : KD_OK;
    if (rc != KD_OK || (rc = check_method_keys(c, m, path, k)) != KD_OK)
        return rc;
    mode_defaults(md, k);
    md->pos = (cfg_pos){m->line, m->col};
    const cfg_range weight = {0, 1000, 0, 0};
    if ((rc = cfg_float(c, m, path, "temperature", 0, (cfg_range){0, 100, 1, 0}, &md->temperature)) ||
        (rc = cfg_float(c, m, path, "alpha", 0, k == CFG_METHOD_KD ? (cfg_range){0, 1, 0, 0} : weight,
                        &md->alpha)) ||
        (rc = cfg_float(c, m, path, "beta", 0, weight, &md->beta)) ||
        (rc = cfg_float(c, m, path, "gamma", 0, weight, &md->gamma)) ||
        (rc = cfg_int(c, m, path, "warmup", 0, 0, 10000, &md->warmup)) ||
        (rc = cfg_bool(c, m, path, "standardize", &md->standardize)))
        return rc;
    snprintf(md->name, sizeof md->name, "%s%s", cfg_distill_methods[k], md->standardize ? "-std" : "");
    if ((rc = cfg_str(c, m, path, "name", 0, md->name, sizeof md->name)) != KD_OK)
        return rc;
    const cfg_node *nv = cfg_map_get(m, "name");
    if (nv && (!cfg_name_ok(md->name) || !strcmp(md->name, "scratch") || md->name[0] == '.'))
        return cfg_err(c, nv, cfg_path(p, sizeof p, path, "name"),
                       "\"%.24s\": a mode's name uses letters, digits, '_', '.', '-' and is not "
                       "\"scratch\"", md->name);
    return KD_OK;
}

/* distill.modes: a list of method names or method mappings. */
static int walk_modes(cfg_ctx *c, const cfg_node *lv, const char *path, cfg_student *st)
{
    char p[160], ip[176];
    cfg_path(p, sizeof p, path, "modes");
    if (lv->kind != CFG_SEQ || lv->n < 1 || lv->n > CFG_MAX_MODES)
        return cfg_err(c, lv, p, "expected a list of 1 to %d modes (kd, dkd, dist, or a mapping "
                       "{method: ..., name: ...})", CFG_MAX_MODES);
    for (int i = 0; i < lv->n; i++) {
        const cfg_node *it = lv->kid[i];
        cfg_distill_mode *md = &st->modes[i];
        snprintf(ip, sizeof ip, "%s[%d]", p, i);
        int rc;
        if (it->kind == CFG_SCALAR) {
            cfg_method k;
            if ((rc = method_node(c, it, ip, &k)) != KD_OK)
                return rc;
            mode_defaults(md, k);
            md->pos = (cfg_pos){it->line, it->col};
            snprintf(md->name, sizeof md->name, "%s", cfg_distill_methods[k]);
        } else if (it->kind == CFG_MAP) {
            static const char *const keys[] = {"method", "name", "temperature", "alpha", "beta",
                                               "gamma", "warmup", "standardize", NULL};
            if ((rc = cfg_check_keys(c, it, ip, keys, "a distillation mode")) != KD_OK ||
                (rc = walk_mode(c, it, ip, md)) != KD_OK)
                return rc;
        } else {
            return cfg_err(c, it, ip, "expected a method name or a mapping {method: ...}");
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(st->modes[j].name, md->name))
                return cfg_err(c, it, ip, "a second mode named \"%s\" (modes[%d]); give one a "
                               "`name:`", md->name, j);
    }
    st->nmodes = lv->n;
    st->listed = 1;
    return KD_OK;
}

int cfg_walk_distill_modes(cfg_ctx *c, const cfg_node *dm, const char *path, cfg_student *st)
{
    st->nmodes = 1;
    st->listed = 0;
    mode_defaults(&st->modes[0], CFG_METHOD_KD);
    snprintf(st->modes[0].name, sizeof st->modes[0].name, "distilled");
    if (!dm)
        return KD_OK;
    const cfg_node *lv = cfg_map_get(dm, "modes");
    if (!lv) {
        int rc = walk_mode(c, dm, path, &st->modes[0]);
        snprintf(st->modes[0].name, sizeof st->modes[0].name, "distilled");
        return rc;
    }
    /* with a list, each mode carries its own parameters */
    static const char *const own[] = {"method", "temperature", "alpha", "beta", "gamma", "warmup",
                                      "standardize", "name", NULL};
    for (int i = 0; own[i]; i++) {
        int at = cfg_map_find(dm, own[i]);
        char p[160];
        if (at >= 0)
            return cfg_err(c, dm->kid[2 * at], cfg_path(p, sizeof p, path, own[i]),
                           "with `modes:`, give each mode its parameters in its own entry "
                           "(e.g. modes: [{method: dkd, beta: 8}])");
    }
    return walk_modes(c, lv, path, st);
}
