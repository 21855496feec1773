/* The `compress:` pipelines and `sensitivity:`: each pipeline names a source
 * model and an ordered list of passes; a pass key given as a list (sparsity)
 * expands the pipeline into one variant per value (the product over passes).
 * Everything that can be checked against the source's layers is checked
 * here; a source given as a model file is checked once it is loaded. */
#include <string.h>

#include "internal.h"

#define CLOSED(lo, hi) ((cfg_range){(lo), (hi), 0, 0})
#define LO_OPEN(lo, hi) ((cfg_range){(lo), (hi), 1, 0})
#define HI_OPEN(lo, hi) ((cfg_range){(lo), (hi), 0, 1})

const char *const cfg_pass_names[5] = {"prune", "finetune", "quantize", "qat", "cluster"};
const char *const cfg_method_names[3] = {"magnitude", "neurons", "filters"};

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
    const char *names[CFG_MAX_STUDENTS + 1] = {"teacher"};
    for (int i = 0; i < s->nstudents; i++)
        names[i + 1] = s->students[i].name;
    const char *near = cfg_suggest(src, names, s->nstudents + 1);
    return cfg_err(c, v, cfg_path(p, sizeof p, path, "source"),
                   "no model is named \"%.64s\"%s%s%s: use teacher, a student's name (with "
                   "/scratch or /distilled), or a model file (.kdm)",
                   src, near ? " (did you mean \"" : "", near ? near : "", near ? "\"?)" : "");
}

/* The layer specs of a source known from the config (NULL for a file). */
static const cfg_model *source_model(const exp_spec *s, cfg_source_kind kind, int student)
{
    if (kind == CFG_SRC_TEACHER)
        return s->teacher.model_path[0] ? NULL : &s->teacher;
    return kind == CFG_SRC_STUDENT ? &s->students[student].model : NULL;
}

/* ---- passes ------------------------------------------------------------------- */
static int walk_overrides(cfg_ctx *c, const cfg_node *pm, const char *path, int quant,
                          cfg_pass *ps)
{
    static const char *const pkeys[] = {"layer", "sparsity", NULL};
    static const char *const qkeys[] = {"layer", "bits", NULL};
    const char *want = quant ? "{layer: NAME|GLOB, bits: 32|8}" : "{layer: NAME|GLOB, sparsity: S}";
    const cfg_node *v = cfg_map_get(pm, "overrides");
    if (!v)
        return KD_OK;
    char p[160];
    cfg_path(p, sizeof p, path, "overrides");
    if (v->kind != CFG_SEQ || v->n > CFG_MAX_OVERRIDES)
        return cfg_err(c, v, p, "expected a list of at most %d %s", CFG_MAX_OVERRIDES, want);
    for (int i = 0; i < v->n; i++) {
        char q[192];
        snprintf(q, sizeof q, "%s[%d]", p, i);
        const cfg_node *it = v->kid[i];
        if (it->kind != CFG_MAP)
            return cfg_err(c, it, q, "expected %s", want);
        cfg_layer_override *o = &ps->overrides[i];
        int rc = cfg_check_keys(c, it, q, quant ? qkeys : pkeys, NULL);
        if (rc || (rc = cfg_str(c, it, q, "layer", 1, o->pattern, sizeof o->pattern)))
            return rc;
        if (!quant)
            rc = cfg_float(c, it, q, "sparsity", 1, HI_OPEN(0, 1), &o->sparsity);
        else if ((rc = cfg_int(c, it, q, "bits", 1, 4, 32, &o->bits)) == KD_OK &&
                 o->bits != 32 && o->bits != 8) {
            rc = cfg_err_key(c, it, "bits", q,
                             "%d is not supported: 32 keeps the layer fp32, 8 makes it int8",
                             o->bits);
        }
        if (rc)
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
    static const char *const keys[] = {"type", "method", "scope", "norm", "sparsity", "block",
                                       "schedule", "initial_sparsity", "ramp_epochs", "overrides",
                                       "epochs", "lr", "batch_size", "distill", "temperature",
                                       "alpha", NULL};
    static const char *const scopes[] = {"layer", "global"}, *const norms[] = {"l1", "l2"};
    static const char *const scheds[] = {"oneshot", "agp"};
    int rc = cfg_check_keys(c, pm, path, keys, "pass type prune"), m = 0, norm = 0;
    if (rc || (rc = cfg_enum(c, pm, path, "method", 0, cfg_method_names, 3, &m)) ||
        (rc = cfg_enum(c, pm, path, "scope", 0, scopes, 2, &ps->global)) ||
        (rc = cfg_enum(c, pm, path, "norm", 0, norms, 2, &norm)) ||
        (rc = cfg_enum(c, pm, path, "schedule", 0, scheds, 2, &ps->agp)) ||
        (rc = walk_sweep(c, pm, path, sweep, nsweep)) ||
        (rc = walk_overrides(c, pm, path, 0, ps)))
        return rc;
    ps->method = (cfg_prune_method)m;
    ps->norm = norm + 1;
    if (ps->method != CFG_PRUNE_MAGNITUDE && (ps->global || ps->agp))
        return cfg_err_key(c, pm, ps->global ? "scope" : "schedule", path,
                           "%s pruning is layer-wise and one-shot (fine-tune with a finetune pass)",
                           cfg_method_names[m]);
    if (ps->method == CFG_PRUNE_MAGNITUDE && cfg_map_get(pm, "norm"))
        return cfg_err_key(c, pm, "norm", path,
                           "magnitude pruning has no norm (neurons and filters do)");
    ps->block = 1;
    if (ps->method != CFG_PRUNE_MAGNITUDE && cfg_map_get(pm, "block"))
        return cfg_err_key(c, pm, "block", path,
                           "%s pruning removes whole units; block is for magnitude pruning",
                           cfg_method_names[m]);
    if ((rc = cfg_int(c, pm, path, "block", 0, 1, CFG_MAX_BLOCK, &ps->block)))
        return rc;
    if ((rc = cfg_float(c, pm, path, "initial_sparsity", 0, HI_OPEN(0, 1),
                        &ps->initial_sparsity)))
        return rc;
    if (!ps->agp) {
        static const char *const train_keys[] = {"epochs", "lr", "batch_size", "distill",
                                                 "temperature", "alpha", "initial_sparsity",
                                                 "ramp_epochs"};
        for (int i = 0; i < 8; i++)
            if (cfg_map_get(pm, train_keys[i]))
                return cfg_err_key(
                    c, pm, train_keys[i], path,
                    "only prune passes with schedule: agp train; add a finetune pass");
        return KD_OK;
    }
    if ((rc = walk_training(c, pm, path, 1, ps)) != KD_OK)
        return rc;
    ps->ramp_epochs = (ps->epochs + 1) / 2;
    if ((rc = cfg_int(c, pm, path, "ramp_epochs", 0, 1, 10000, &ps->ramp_epochs)))
        return rc;
    if (ps->ramp_epochs > ps->epochs)
        return cfg_err_key(c, pm, "ramp_epochs", path, "%d is more than the pass's %d epochs",
                           ps->ramp_epochs, ps->epochs);
    return KD_OK;
}

static int walk_finetune(cfg_ctx *c, const cfg_node *pm, const char *path, cfg_pass *ps)
{
    static const char *const keys[] = {"type", "epochs", "lr", "batch_size", "distill",
                                       "temperature", "alpha", NULL};
    int rc = cfg_check_keys(c, pm, path, keys, "pass type finetune");
    return rc != KD_OK ? rc : walk_training(c, pm, path, 1, ps);
}

/* bits: 8 | 4 | 3 | 2 or a list of them into vals; *n = the list's length, 0 for a scalar. */
static int walk_bits(cfg_ctx *c, const cfg_node *pm, const char *path, float *vals, int *n)
{
    const cfg_node *v = cfg_map_get(pm, "bits");
    char p[160];
    cfg_path(p, sizeof p, path, "bits");
    *n = 0;
    vals[0] = 8;
    if (!v)
        return KD_OK;
    int cnt = v->kind == CFG_SEQ ? v->n : 1;
    if (v->kind == CFG_SEQ && (cnt < 1 || cnt > CFG_MAX_SWEEP))
        return cfg_err(c, v, p, "expected 1 to %d bit widths", CFG_MAX_SWEEP);
    for (int i = 0; i < cnt; i++) {
        const cfg_node *it = v->kind == CFG_SEQ ? v->kid[i] : v;
        char q[192];
        snprintf(q, sizeof q, v->kind == CFG_SEQ ? "%s[%d]" : "%s", p, i);
        int b, rc = cfg_int_node(c, it, q, 1, 64, &b);
        if (rc != KD_OK)
            return rc;
        if (b != 8 && (b < 2 || b > 4))
            return cfg_err(c, it, q, "%d bits is not supported (8, 4, 3 or 2)", b);
        vals[i] = (float)b;
    }
    *n = v->kind == CFG_SEQ ? cnt : 0;
    return KD_OK;
}

/* Static int8 calibration reads calib_batches batches of 128 training
 * samples: the training set (after the validation split) must have them.
 * Only quantize with mode static calibrates, and only for layers that get 8
 * bits (the pass's bits, any of a swept list, or an override); qat takes its
 * activation ranges from training. */
static int check_calib(cfg_ctx *c, const cfg_node *pm, const char *path, const exp_spec *s,
                       const cfg_pass *ps, const float *sweep, int nsweep)
{
    int eight = 0;
    for (int i = 0; i < (nsweep ? nsweep : 1); i++)
        eight |= sweep[i] == 8;
    for (int i = 0; i < ps->noverrides; i++)
        eight |= ps->overrides[i].bits == 8;
    long n = cfg_train_samples(c, &s->data);
    /* gptq calibrates its Gram matrices, bias correction its mean inputs */
    if ((ps->dynamic || !eight) && !ps->gptq && !ps->bias_correction)
        return KD_OK;
    if (n <= 0)
        return KD_OK;
    long have = (n + CFG_CALIB_BATCH - 1) / CFG_CALIB_BATCH;
    if (ps->calib_batches > have)
        return cfg_err_key(c, pm, "calib_batches", path,
                           "%d batches of %d is more than the %ld the training set has (%ld "
                           "samples after the validation split)",
                           ps->calib_batches, CFG_CALIB_BATCH, have, n);
    return KD_OK;
}

static int walk_quant_common(cfg_ctx *c, const cfg_node *pm, const char *path, cfg_pass *ps)
{
    static const char *const calibs[] = {"minmax", "percentile"};
    ps->per_channel = 1;
    ps->percentile = 99.99f;
    ps->calib_batches = 8;
    ps->group = CFG_Q4_GROUP;
    int rc;
    if ((rc = cfg_bool(c, pm, path, "per_channel", &ps->per_channel)) ||
        (rc = cfg_enum(c, pm, path, "calibration", 0, calibs, 2, &ps->percentile_calib)) ||
        (rc = cfg_float(c, pm, path, "percentile", 0, LO_OPEN(50, 100), &ps->percentile)) ||
        (rc = cfg_int(c, pm, path, "calib_batches", 0, 1, 100000, &ps->calib_batches)) ||
        (rc = cfg_int(c, pm, path, "group", 0, 1, 4096, &ps->group)) ||
        (rc = walk_overrides(c, pm, path, 1, ps)))
        return rc;
    /* the int4 format stores weights in blocks of one fixed size */
    if (ps->group != CFG_Q4_GROUP)
        return cfg_err_key(c, pm, "group", path,
                           "%d is not supported: int4 weights are stored "
                           "in groups of %d",
                           ps->group, CFG_Q4_GROUP);
    return KD_OK;
}

static int walk_quantize(cfg_ctx *c, const cfg_node *pm, const char *path, const exp_spec *s,
                         cfg_pass *ps, float *sweep, int *nsweep)
{
    static const char *const keys[] = {"type", "bits", "mode", "per_channel", "calibration",
                                       "percentile", "calib_batches", "group", "rounding",
                                       "damp", "act_order", "bias_correction", "overrides",
                                       "sparse_activations", NULL};
    static const char *const modes[] = {"static", "dynamic"};
    static const char *const sparse_acts[] = {"fp32", "int8"};
    static const char *const roundings[] = {"nearest", "gptq"};
    int rc = cfg_check_keys(c, pm, path, keys, "pass type quantize");
    ps->damp = 0.01f;
    ps->act_order = 1;
    if (rc || (rc = walk_bits(c, pm, path, sweep, nsweep)) ||
        (rc = cfg_enum(c, pm, path, "mode", 0, modes, 2, &ps->dynamic)) ||
        (rc = cfg_enum(c, pm, path, "rounding", 0, roundings, 2, &ps->gptq)) ||
        (rc = cfg_float(c, pm, path, "damp", 0, LO_OPEN(0, 1), &ps->damp)) ||
        (rc = cfg_bool(c, pm, path, "act_order", &ps->act_order)) ||
        (rc = cfg_bool(c, pm, path, "bias_correction", &ps->bias_correction)) ||
        (rc = cfg_enum(c, pm, path, "sparse_activations", 0, sparse_acts, 2, &ps->sparse_static)))
        return rc;
    ps->bits = (int)sweep[0];
    if ((rc = walk_quant_common(c, pm, path, ps)))
        return rc;
    int four = 0, low = 0;
    for (int i = 0; i < (*nsweep ? *nsweep : 1); i++)
        four |= sweep[i] == 4, low |= sweep[i] <= 4;
    for (int i = 0; i < ps->noverrides; i++)
        four |= ps->overrides[i].bits == 4;
    if (ps->bias_correction && !low)
        return cfg_err_key(c, pm, "bias_correction", path,
                           "bias correction applies to 4-, 3- and 2-bit weights, and this pass "
                           "gives none");
    if (ps->gptq && !four)
        return cfg_err_key(c, pm, "rounding", path,
                           "gptq rounds 4-bit weights, and this pass gives no layer 4 bits");
    if (!ps->gptq && cfg_map_get(pm, "damp"))
        return cfg_err_key(c, pm, "damp", path, "damp is a setting of rounding: gptq");
    if (!ps->gptq && cfg_map_get(pm, "act_order"))
        return cfg_err_key(c, pm, "act_order", path, "act_order is a setting of rounding: gptq");
    return check_calib(c, pm, path, s, ps, sweep, *nsweep);
}

/* cluster: {clusters: 2..256 (16), init: linear | kmeans++ | density}, and
 * optionally the training keys: epochs > 0 fine-tunes the shared values. */
static int walk_cluster(cfg_ctx *c, const cfg_node *pm, const char *path, cfg_pass *ps)
{
    static const char *const keys[] = {"type", "clusters", "init", "coding", "epochs", "lr",
                                       "batch_size", "distill", "temperature", "alpha", NULL};
    static const char *const inits[] = {"linear", "kmeans++", "density"};
    static const char *const codings[] = {"huffman", "none"};
    ps->clusters = 16;
    int rc = cfg_check_keys(c, pm, path, keys, "pass type cluster");
    if (rc || (rc = cfg_int(c, pm, path, "clusters", 0, 2, 256, &ps->clusters)) ||
        (rc = cfg_enum(c, pm, path, "init", 0, inits, 3, &ps->cluster_init)) ||
        (rc = cfg_enum(c, pm, path, "coding", 0, codings, 2, &ps->cluster_raw)))
        return rc;
    return walk_training(c, pm, path, 0, ps);
}

static int walk_qat(cfg_ctx *c, const cfg_node *pm, const char *path, cfg_pass *ps, float *sweep,
                    int *nsweep)
{
    static const char *const keys[] = {"type", "bits", "per_channel", "group", "overrides",
                                       "epochs", "lr", "batch_size", "distill", "temperature",
                                       "alpha", NULL};
    int rc = cfg_check_keys(c, pm, path, keys, "pass type qat");
    if (rc || (rc = walk_bits(c, pm, path, sweep, nsweep)) ||
        (rc = walk_quant_common(c, pm, path, ps)))
        return rc;
    ps->bits = (int)sweep[0];
    rc = walk_training(c, pm, path, 1, ps);
    if (!cfg_map_get(pm, "lr"))
        ps->lr = 0.001f; /* fine-tuning a trained model through fake quantization */
    return rc;
}

/* ---- pipelines ---------------------------------------------------------------- */
typedef struct {
    float vals[CFG_MAX_PASSES][CFG_MAX_SWEEP];
    int n[CFG_MAX_PASSES];    /* 0: the pass sweeps nothing */
    int bits[CFG_MAX_PASSES]; /* the swept key is bits (quantize, qat), not sparsity */
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
    memset(sw, 0, sizeof *sw);
    for (int i = 0; i < seq->n; i++) {
        char q[160];
        snprintf(q, sizeof q, "%s[%d]", p, i);
        const cfg_node *pm = seq->kid[i];
        if (pm->kind != CFG_MAP)
            return cfg_err(c, pm, q, "expected a pass {type: prune|finetune|quantize|qat|cluster, ...}");
        cfg_pass *ps = &v->passes[i];
        int kind = 0, rc = cfg_enum(c, pm, q, "type", 1, cfg_pass_names, 5, &kind);
        if (rc != KD_OK)
            return rc;
        if (i > 0 && v->passes[i - 1].kind >= CFG_PASS_QUANTIZE)
            return cfg_err(c, pm, q, "comes after %s: a quantized or clustered model is final "
                           "(put quantize, qat or cluster last)", cfg_pass_names[v->passes[i - 1].kind]);
        ps->kind = (cfg_pass_kind)kind;
        ps->pos = (cfg_pos){pm->line, pm->col};
        sw->n[i] = 0;
        if (ps->kind == CFG_PASS_FINETUNE) {
            rc = walk_finetune(c, pm, q, ps);
        } else if (ps->kind == CFG_PASS_CLUSTER) {
            rc = walk_cluster(c, pm, q, ps);
        } else if (ps->kind == CFG_PASS_QUANTIZE || ps->kind == CFG_PASS_QAT) {
            rc = ps->kind == CFG_PASS_QAT ? walk_qat(c, pm, q, ps, sw->vals[i], &sw->n[i])
                                          : walk_quantize(c, pm, q, s, ps, sw->vals[i], &sw->n[i]);
            sw->bits[i] = 1;
            if (rc == KD_OK && src)
                rc = cfg_check_quant_layers(c, pm, q, &s->data, src, ps);
        } else {
            rc = walk_prune(c, pm, q, ps, sw->vals[i], &sw->n[i]);
            ps->sparsity = sw->vals[i][0];
            if (rc == KD_OK && src)
                rc = cfg_check_prune_layers(c, pm, q, &s->data, src, ps);
        }
        if (rc != KD_OK)
            return rc;
    }
    v->npasses = seq->n;
    return KD_OK;
}

/* Whether the file of variant a's seed k (compressed/<a>-seed<N>.kdm, '/'
 * as '_') is the file of variant b. */
static int seed_file_clash(const cfg_variant *a, int k, const cfg_variant *b)
{
    char fa[128], fb[128];
    snprintf(fa, sizeof fa, "%s-seed%llu", a->name, (unsigned long long)a->seeds[k]);
    snprintf(fb, sizeof fb, "%s", b->name);
    for (char *p = fa; *p; p++)
        *p = *p == '/' ? '_' : *p;
    for (char *p = fb; *p; p++)
        *p = *p == '/' ? '_' : *p;
    return !strcmp(fa, fb);
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
            float x = sw->vals[i][rest % sw->n[i]];
            rest /= sw->n[i];
            if (sw->bits[i])
                v->passes[i].bits = (int)x;
            else
                v->passes[i].sparsity = x;
            if (len < sizeof v->name)
                len += (size_t)snprintf(v->name + len, sizeof v->name - len,
                                        sw->bits[i] ? "/int%g" : "/s%g", (double)x);
        }
        if (len >= sizeof v->name)
            return cfg_err(c, it, path, "the variant names get too long");
        for (int j = 0; j < s->nvariants; j++)
            if (!strcmp(s->variants[j].name, v->name))
                return cfg_err(c, cfg_map_get(it, "name"), path,
                               "the variant \"%s\" is already defined", v->name);
        for (int j = 0; j < s->nvariants; j++)
            for (int q = 1; q < CFG_MAX_SEEDS; q++)
                if ((q < v->nseeds && seed_file_clash(v, q, &s->variants[j])) ||
                    (q < s->variants[j].nseeds && seed_file_clash(&s->variants[j], q, v)))
                    return cfg_err(c, cfg_map_get(it, "name"), path,
                                   "the variants \"%s\" and \"%s\" would share a model file "
                                   "(another seed's model is saved as <name>-seed<N>.kdm)",
                                   s->variants[j].name, v->name);
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
    static const char *const keys[] = {"name", "source", "store", "seeds", "passes", NULL};
    static const char *const stores[] = {"fastest", "smallest", "latency"};
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
    if (!variant_name_ok(v.name))
        return cfg_err_key(c, it, "name", path,
                           "\"%.64s\" may use only letters, digits, '_', '.', '-' and '/'", v.name);
    snprintf(v.pipeline, sizeof v.pipeline, "%.63s", v.name);
    if ((rc = walk_source(c, it, path, s, &v.source_kind, &v.source_student, &v.source_scratch,
                          v.source_path, &v.source_pos)) ||
        (rc = cfg_enum(c, it, path, "store", 0, stores, 3, &v.store)) ||
        (rc = cfg_seeds(c, it, path, s->seed, v.seeds, &v.nseeds)) ||
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
