/* The `compress:` pipelines and `sensitivity:`: each pipeline names a source
 * model and an ordered list of passes; a pass key given as a list (sparsity)
 * expands the pipeline into one variant per value (the product over passes).
 * Everything that can be checked against the source's layers is checked
 * here; a source given as a model file is checked once it is loaded. */
#include <fnmatch.h>
#include <string.h>

#include "internal.h"

#define CLOSED(lo, hi) ((cfg_range){(lo), (hi), 0, 0})
#define LO_OPEN(lo, hi) ((cfg_range){(lo), (hi), 1, 0})
#define HI_OPEN(lo, hi) ((cfg_range){(lo), (hi), 0, 1})

static const char *const pass_names[] = {"prune", "finetune"};
static const char *const method_names[] = {"magnitude", "neurons", "filters"};

/* ---- sources ---------------------------------------------------------------- */
/* "teacher", "<student>" (its distilled model), "<student>/scratch",
 * "<student>/distilled", or a path to a model file (containing '/' or
 * ending in .kdm). */
static int walk_source(cfg_ctx *c, const cfg_node *m, const char *path, const exp_spec *s,
                       cfg_source_kind *kind, int *student, int *scratch, char *file,
                       cfg_pos *pos)
{
    char src[CFG_PATH_MAX];
    int rc = cfg_str(c, m, path, "source", 1, src, sizeof src);
    if (rc != KD_OK)
        return rc;
    const cfg_node *v = cfg_map_get(m, "source");
    *pos = v->src < 0 ? (cfg_pos){v->line, v->col} : (cfg_pos){0, 0};
    *scratch = 0;
    if (!strcmp(src, "teacher")) {
        *kind = CFG_SRC_TEACHER;
        return KD_OK;
    }
    for (int i = 0; i < s->nstudents; i++) {
        size_t n = strlen(s->students[i].name);
        if (strncmp(src, s->students[i].name, n) != 0)
            continue;
        if (src[n] == 0 || !strcmp(src + n, "/distilled") || !strcmp(src + n, "/scratch")) {
            *kind = CFG_SRC_STUDENT;
            *student = i;
            *scratch = !strcmp(src + n, "/scratch");
            return KD_OK;
        }
    }
    size_t n = strlen(src);
    if (strchr(src, '/') || (n > 4 && !strcmp(src + n - 4, ".kdm"))) {
        *kind = CFG_SRC_FILE;
        snprintf(file, CFG_PATH_MAX, "%s", src);
        return KD_OK;
    }
    char p[128];
    return cfg_err(c, v, cfg_path(p, sizeof p, path, "source"),
                   "no model is named \"%.64s\": use teacher, a student's name (with /scratch "
                   "or /distilled), or a model file (.kdm)",
                   src);
}

/* The layer specs of a source known from the config (NULL for a file). */
static const cfg_model *source_model(const exp_spec *s, cfg_source_kind kind, int student)
{
    if (kind == CFG_SRC_TEACHER)
        return s->teacher.model_path[0] ? NULL : &s->teacher;
    return kind == CFG_SRC_STUDENT ? &s->students[student].model : NULL;
}

/* ---- passes ------------------------------------------------------------------- */
/* Whether layer i of nm may be pruned by method (dense or conv2d weights;
 * structured methods also need the layer to feed another weight layer). */
static int prunable(const nn_model *nm, int i, cfg_prune_method method)
{
    nn_kind k = nm->layers[i].spec.kind;
    if (method == CFG_PRUNE_MAGNITUDE)
        return k == NN_DENSE || k == NN_CONV2D;
    if (k != (method == CFG_PRUNE_NEURONS ? NN_DENSE : NN_CONV2D))
        return 0;
    for (int j = i + 1; j < nm->nlayers; j++) {
        nn_kind n = nm->layers[j].spec.kind;
        if (n == NN_DENSE || n == NN_CONV2D)
            return 1;
    }
    return 0;
}

/* The pass applies to the source: some layer is prunable by the method, and
 * every override matches a prunable layer. */
static int check_pass_layers(cfg_ctx *c, const cfg_node *pm, const char *path, const exp_spec *s,
                             const cfg_model *src, const cfg_pass *ps)
{
    kd_err local;
    nn_model *nm = nn_model_new(s->data.shape, src->layers, src->nlayers, NULL, &local);
    if (!nm)
        return local.code == KD_ENOMEM ? cfg_nomem(c) : cfg_err(c, pm, path, "%s", local.msg);
    int any = 0, rc = KD_OK;
    for (int i = 0; i < nm->nlayers; i++)
        any |= prunable(nm, i, ps->method);
    if (!any)
        rc = cfg_err(c, pm, path, "%s pruning does not apply to this model: it has no %s",
                     method_names[ps->method],
                     ps->method == CFG_PRUNE_MAGNITUDE ? "dense or conv2d layer"
                     : ps->method == CFG_PRUNE_NEURONS ? "dense layer feeding another layer"
                                                        : "conv2d layer feeding another layer");
    const cfg_node *ov = cfg_map_get(pm, "overrides");
    for (int o = 0; rc == KD_OK && o < ps->noverrides; o++) {
        int hit = 0;
        for (int i = 0; i < nm->nlayers; i++)
            hit |= prunable(nm, i, ps->method) &&
                   fnmatch(ps->overrides[o].pattern, nm->layers[i].spec.name, 0) == 0;
        if (!hit) {
            char p[256];
            snprintf(p, sizeof p, "%s.overrides[%d].layer", path, o);
            rc = cfg_err(c, cfg_map_get(ov->kid[o], "layer"), p,
                         "\"%s\" matches no layer that %s pruning can prune", ps->overrides[o].pattern,
                         method_names[ps->method]);
        }
    }
    nn_model_free(nm);
    return rc;
}

static int walk_overrides(cfg_ctx *c, const cfg_node *pm, const char *path, cfg_pass *ps)
{
    static const char *const keys[] = {"layer", "sparsity", NULL};
    const cfg_node *v = cfg_map_get(pm, "overrides");
    if (!v)
        return KD_OK;
    char p[160];
    cfg_path(p, sizeof p, path, "overrides");
    if (v->kind != CFG_SEQ || v->n > CFG_MAX_OVERRIDES)
        return cfg_err(c, v, p, "expected a list of at most %d {layer: NAME|GLOB, sparsity: S}",
                       CFG_MAX_OVERRIDES);
    for (int i = 0; i < v->n; i++) {
        char q[192];
        snprintf(q, sizeof q, "%s[%d]", p, i);
        const cfg_node *it = v->kid[i];
        if (it->kind != CFG_MAP)
            return cfg_err(c, it, q, "expected {layer: NAME|GLOB, sparsity: S}");
        cfg_layer_override *o = &ps->overrides[i];
        int rc = cfg_check_keys(c, it, q, keys, NULL);
        if (rc || (rc = cfg_str(c, it, q, "layer", 1, o->pattern, sizeof o->pattern)) ||
            (rc = cfg_float(c, it, q, "sparsity", 1, HI_OPEN(0, 1), &o->sparsity)))
            return rc;
        o->pos = (cfg_pos){it->line, it->col};
    }
    ps->noverrides = v->n;
    return KD_OK;
}

/* sparsity: S or [S, ...] into vals; *n = the list's length, 0 for a scalar. */
static int walk_sweep(cfg_ctx *c, const cfg_node *pm, const char *path, float *vals, int *n)
{
    const cfg_node *v = cfg_map_get(pm, "sparsity");
    char p[160];
    cfg_path(p, sizeof p, path, "sparsity");
    *n = 0;
    if (!v)
        return cfg_missing(c, pm, path, "sparsity");
    if (v->kind != CFG_SEQ)
        return cfg_float_node(c, v, p, HI_OPEN(0, 1), &vals[0]);
    if (v->n < 1 || v->n > CFG_MAX_SWEEP)
        return cfg_err(c, v, p, "expected 1 to %d sparsities", CFG_MAX_SWEEP);
    for (int i = 0; i < v->n; i++) {
        char q[192];
        snprintf(q, sizeof q, "%s[%d]", p, i);
        int rc = cfg_float_node(c, v->kid[i], q, HI_OPEN(0, 1), &vals[i]);
        if (rc != KD_OK)
            return rc;
    }
    *n = v->n;
    return KD_OK;
}

/* Training keys shared by finetune and prune with schedule agp. */
static int walk_training(cfg_ctx *c, const cfg_node *pm, const char *path, int req_epochs,
                         cfg_pass *ps)
{
    ps->lr = 0.01f;
    ps->batch_size = 128;
    ps->temperature = 4;
    ps->alpha = 0.9f;
    int rc;
    if ((rc = cfg_int(c, pm, path, "epochs", req_epochs, 1, 10000, &ps->epochs)) ||
        (rc = cfg_float(c, pm, path, "lr", 0, LO_OPEN(0, 10), &ps->lr)) ||
        (rc = cfg_int(c, pm, path, "batch_size", 0, 1, 65536, &ps->batch_size)) ||
        (rc = cfg_bool(c, pm, path, "distill", &ps->distill)) ||
        (rc = cfg_float(c, pm, path, "temperature", 0, LO_OPEN(0, 100), &ps->temperature)))
        return rc;
    return cfg_float(c, pm, path, "alpha", 0, CLOSED(0, 1), &ps->alpha);
}

static int walk_prune(cfg_ctx *c, const cfg_node *pm, const char *path, cfg_pass *ps,
                      float *sweep, int *nsweep)
{
    static const char *const keys[] = {"type", "method", "scope", "norm", "sparsity", "schedule",
                                       "initial_sparsity", "overrides", "epochs", "lr",
                                       "batch_size", "distill", "temperature", "alpha", NULL};
    static const char *const scopes[] = {"layer", "global"}, *const norms[] = {"l1", "l2"};
    static const char *const scheds[] = {"oneshot", "agp"};
    int rc = cfg_check_keys(c, pm, path, keys, "pass type prune"), m = 0, norm = 0;
    if (rc || (rc = cfg_enum(c, pm, path, "method", 0, method_names, 3, &m)) ||
        (rc = cfg_enum(c, pm, path, "scope", 0, scopes, 2, &ps->global)) ||
        (rc = cfg_enum(c, pm, path, "norm", 0, norms, 2, &norm)) ||
        (rc = cfg_enum(c, pm, path, "schedule", 0, scheds, 2, &ps->agp)) ||
        (rc = walk_sweep(c, pm, path, sweep, nsweep)) ||
        (rc = walk_overrides(c, pm, path, ps)))
        return rc;
    ps->method = (cfg_prune_method)m;
    ps->norm = norm + 1;
    char p[160];
    if (ps->method != CFG_PRUNE_MAGNITUDE && (ps->global || ps->agp))
        return cfg_err(c, cfg_map_get(pm, ps->global ? "scope" : "schedule"),
                       cfg_path(p, sizeof p, path, ps->global ? "scope" : "schedule"),
                       "%s pruning is layer-wise and one-shot (fine-tune with a finetune pass)",
                       method_names[m]);
    if (ps->method == CFG_PRUNE_MAGNITUDE && cfg_map_get(pm, "norm"))
        return cfg_err(c, cfg_map_get(pm, "norm"), cfg_path(p, sizeof p, path, "norm"),
                       "magnitude pruning has no norm (neurons and filters do)");
    if ((rc = cfg_float(c, pm, path, "initial_sparsity", 0, HI_OPEN(0, 1),
                        &ps->initial_sparsity)))
        return rc;
    if (!ps->agp) {
        static const char *const train_keys[] = {"epochs", "lr", "batch_size", "distill",
                                                 "temperature", "alpha", "initial_sparsity"};
        for (int i = 0; i < 7; i++)
            if (cfg_map_get(pm, train_keys[i]))
                return cfg_err(c, cfg_map_get(pm, train_keys[i]),
                               cfg_path(p, sizeof p, path, train_keys[i]),
                               "only prune passes with schedule: agp train; add a finetune pass");
        return KD_OK;
    }
    return walk_training(c, pm, path, 1, ps);
}

static int walk_finetune(cfg_ctx *c, const cfg_node *pm, const char *path, cfg_pass *ps)
{
    static const char *const keys[] = {"type", "epochs", "lr", "batch_size", "distill",
                                       "temperature", "alpha", NULL};
    int rc = cfg_check_keys(c, pm, path, keys, "pass type finetune");
    return rc != KD_OK ? rc : walk_training(c, pm, path, 1, ps);
}

/* ---- pipelines ---------------------------------------------------------------- */
typedef struct {
    float vals[CFG_MAX_PASSES][CFG_MAX_SWEEP];
    int n[CFG_MAX_PASSES]; /* 0: the pass sweeps nothing */
} sweep_table;

static int walk_passes(cfg_ctx *c, const cfg_node *it, const char *path, const exp_spec *s,
                       cfg_variant *v, sweep_table *sw)
{
    const cfg_node *seq = cfg_map_get(it, "passes");
    char p[128];
    cfg_path(p, sizeof p, path, "passes");
    if (!seq)
        return cfg_missing(c, it, path, "passes");
    if (seq->kind != CFG_SEQ || seq->n < 1 || seq->n > CFG_MAX_PASSES)
        return cfg_err(c, seq, p, "expected a list of 1 to %d passes", CFG_MAX_PASSES);
    const cfg_model *src = source_model(s, v->source_kind, v->source_student);
    for (int i = 0; i < seq->n; i++) {
        char q[160];
        snprintf(q, sizeof q, "%s[%d]", p, i);
        const cfg_node *pm = seq->kid[i];
        if (pm->kind != CFG_MAP)
            return cfg_err(c, pm, q, "expected a pass {type: prune|finetune, ...}");
        cfg_pass *ps = &v->passes[i];
        int kind = 0, rc = cfg_enum(c, pm, q, "type", 1, pass_names, 2, &kind);
        if (rc != KD_OK)
            return rc;
        ps->kind = (cfg_pass_kind)kind;
        ps->pos = (cfg_pos){pm->line, pm->col};
        sw->n[i] = 0;
        if (ps->kind == CFG_PASS_FINETUNE) {
            rc = walk_finetune(c, pm, q, ps);
        } else {
            rc = walk_prune(c, pm, q, ps, sw->vals[i], &sw->n[i]);
            ps->sparsity = sw->vals[i][0];
            if (rc == KD_OK && src)
                rc = check_pass_layers(c, pm, q, s, src, ps);
        }
        if (rc != KD_OK)
            return rc;
    }
    v->npasses = seq->n;
    return KD_OK;
}

/* Appends one variant per combination of swept values, named
 * "<pipeline>/s<value>" per swept pass. */
static int expand(cfg_ctx *c, const cfg_node *it, const char *path, exp_spec *s,
                  const cfg_variant *proto, const sweep_table *sw)
{
    int total = 1;
    for (int i = 0; i < proto->npasses; i++)
        total *= sw->n[i] ? sw->n[i] : 1;
    if (s->nvariants + total > CFG_MAX_VARIANTS)
        return cfg_err(c, it, path, "the compress pipelines expand into more than %d variants",
                       CFG_MAX_VARIANTS);
    for (int k = 0; k < total; k++) {
        cfg_variant *v = &s->variants[s->nvariants];
        *v = *proto;
        size_t len = strlen(v->name);
        for (int i = 0, rest = k; i < v->npasses; i++) {
            if (!sw->n[i])
                continue;
            v->passes[i].sparsity = sw->vals[i][rest % sw->n[i]];
            rest /= sw->n[i];
            if (len < sizeof v->name)
                len += (size_t)snprintf(v->name + len, sizeof v->name - len, "/s%g",
                                        (double)v->passes[i].sparsity);
        }
        if (len >= sizeof v->name)
            return cfg_err(c, it, path, "the variant names get too long");
        for (int j = 0; j < s->nvariants; j++)
            if (!strcmp(s->variants[j].name, v->name))
                return cfg_err(c, cfg_map_get(it, "name"), path,
                               "the variant \"%s\" is already defined", v->name);
        s->nvariants++;
    }
    return KD_OK;
}

/* Variant names may hold '/' (a dumped sweep) but no empty part or "..". */
static int variant_name_ok(const char *n)
{
    if (!n[0] || n[0] == '/' || n[strlen(n) - 1] == '/' || strstr(n, "//") || strstr(n, ".."))
        return 0;
    for (const char *p = n; *p; p++) {
        char one[2] = {*p == '/' ? 'a' : *p, 0};
        if (!cfg_name_ok(one))
            return 0;
    }
    return 1;
}

static int walk_pipeline(cfg_ctx *c, const cfg_node *it, int i, exp_spec *s)
{
    static const char *const keys[] = {"name", "source", "passes", NULL};
    char path[64];
    snprintf(path, sizeof path, "compress[%d]", i);
    if (it->kind != CFG_MAP)
        return cfg_err(c, it, path, "expected a mapping with name, source, passes");
    cfg_variant v;
    memset(&v, 0, sizeof v);
    sweep_table sw;
    int rc = cfg_check_keys(c, it, path, keys, "compress pipeline");
    if (rc || (rc = cfg_str(c, it, path, "name", 1, v.name, sizeof v.name - 32)))
        return rc;
    char p[96];
    if (!variant_name_ok(v.name))
        return cfg_err(c, cfg_map_get(it, "name"), cfg_path(p, sizeof p, path, "name"),
                       "\"%.64s\" may use only letters, digits, '_', '.', '-' and '/'", v.name);
    snprintf(v.pipeline, sizeof v.pipeline, "%.63s", v.name);
    if ((rc = walk_source(c, it, path, s, &v.source_kind, &v.source_student, &v.source_scratch,
                          v.source_path, &v.source_pos)) ||
        (rc = walk_passes(c, it, path, s, &v, &sw)))
        return rc;
    return expand(c, it, path, s, &v, &sw);
}

static int walk_sensitivity(cfg_ctx *c, const cfg_node *root, exp_spec *s)
{
    static const char *const keys[] = {"source", "sparsities", NULL};
    cfg_sensitivity *t = &s->sensitivity;
    const cfg_node *m;
    int rc = cfg_section(c, root, "", "sensitivity", 0, &m);
    if (rc != KD_OK || !m || (rc = cfg_check_keys(c, m, "sensitivity", keys, NULL)) != KD_OK)
        return rc;
    t->on = 1;
    if ((rc = walk_source(c, m, "sensitivity", s, &t->source_kind, &t->source_student,
                          &t->source_scratch, t->source_path, &t->source_pos)))
        return rc;
    const cfg_node *v = cfg_map_get(m, "sparsities");
    const int max = (int)(sizeof t->sparsities / sizeof t->sparsities[0]);
    if (!v)
        return cfg_missing(c, m, "sensitivity", "sparsities");
    if (v->kind != CFG_SEQ || v->n < 1 || v->n > max)
        return cfg_err(c, v, "sensitivity.sparsities", "expected a list of 1 to %d sparsities", max);
    for (int i = 0; i < v->n; i++) {
        char q[64];
        snprintf(q, sizeof q, "sensitivity.sparsities[%d]", i);
        if ((rc = cfg_float_node(c, v->kid[i], q, HI_OPEN(0, 1), &t->sparsities[i])))
            return rc;
    }
    t->nsparsities = v->n;
    return KD_OK;
}

int cfg_walk_compress(cfg_ctx *c, const cfg_node *root, exp_spec *s)
{
    const cfg_node *v = cfg_map_get(root, "compress");
    if (v) {
        if (v->kind != CFG_SEQ)
            return cfg_err(c, v, "compress", "expected a list of pipelines");
        for (int i = 0; i < v->n; i++) {
            int rc = walk_pipeline(c, v->kid[i], i, s);
            if (rc != KD_OK)
                return rc;
        }
    }
    return walk_sensitivity(c, root, s);
}

/* ---- dump ------------------------------------------------------------------------ */
static void dump_source(FILE *f, const exp_spec *s, cfg_source_kind k, int student, int scratch,
                        const char *file)
{
    char buf[CFG_PATH_MAX + 80];
    if (k == CFG_SRC_TEACHER)
        snprintf(buf, sizeof buf, "teacher");
    else if (k == CFG_SRC_STUDENT)
        snprintf(buf, sizeof buf, "%s/%s", s->students[student].name,
                 scratch ? "scratch" : "distilled");
    else
        snprintf(buf, sizeof buf, "%s", file);
    cfg_put_str(f, buf);
}

static void dump_pass(FILE *f, const cfg_pass *p)
{
    fprintf(f, "      - {type: %s", pass_names[p->kind]);
    if (p->kind == CFG_PASS_PRUNE) {
        fprintf(f, ", method: %s, scope: %s", method_names[p->method], p->global ? "global" : "layer");
        if (p->method != CFG_PRUNE_MAGNITUDE)
            fprintf(f, ", norm: l%d", p->norm);
        fputs(", sparsity: ", f);
        cfg_put_float(f, p->sparsity);
        fprintf(f, ", schedule: %s", p->agp ? "agp" : "oneshot");
        if (p->noverrides)
            fputs(", overrides: [", f);
        for (int i = 0; i < p->noverrides; i++) {
            fprintf(f, "%s{layer: ", i ? ", " : "");
            cfg_put_str(f, p->overrides[i].pattern);
            fputs(", sparsity: ", f);
            cfg_put_float(f, p->overrides[i].sparsity);
            fputc('}', f);
        }
        if (p->noverrides)
            fputc(']', f);
    }
    if (p->kind == CFG_PASS_FINETUNE || p->agp) {
        if (p->agp) {
            fputs(", initial_sparsity: ", f);
            cfg_put_float(f, p->initial_sparsity);
        }
        fprintf(f, ", epochs: %d, lr: ", p->epochs);
        cfg_put_float(f, p->lr);
        fprintf(f, ", batch_size: %d, distill: %s, temperature: ", p->batch_size,
                p->distill ? "true" : "false");
        cfg_put_float(f, p->temperature);
        fputs(", alpha: ", f);
        cfg_put_float(f, p->alpha);
    }
    fputs("}\n", f);
}

void cfg_dump_compress(const exp_spec *s, FILE *f)
{
    if (s->nvariants)
        fputs("compress:              # one item per variant (sweeps expanded)\n", f);
    for (int i = 0; i < s->nvariants; i++) {
        const cfg_variant *v = &s->variants[i];
        fputs("  - name: ", f);
        cfg_put_str(f, v->name);
        fputs("\n    source: ", f);
        dump_source(f, s, v->source_kind, v->source_student, v->source_scratch, v->source_path);
        fputs("\n    passes:\n", f);
        for (int k = 0; k < v->npasses; k++)
            dump_pass(f, &v->passes[k]);
    }
    const cfg_sensitivity *t = &s->sensitivity;
    if (!t->on)
        return;
    fputs("sensitivity:\n  source: ", f);
    dump_source(f, s, t->source_kind, t->source_student, t->source_scratch, t->source_path);
    fputs("\n  sparsities: [", f);
    for (int i = 0; i < t->nsparsities; i++) {
        if (i)
            fputs(", ", f);
        cfg_put_float(f, t->sparsities[i]);
    }
    fputs("]\n", f);
}
