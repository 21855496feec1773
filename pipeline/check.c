/* Loading a config the way run needs it: the spec, then the data's facts
 * (pipeline_data_facts) walked with it again, then the model files it names
 * against the data, so that `kdbench check` refuses what `kdbench run`
 * would refuse later, at the key's position. */
#include <string.h>

#include "../onnx/import.h"
#include "internal.h"

_Static_assert(CFG_MAX_BLOCK == COMPRESS_BLOCK_MAX, "a prune block the config takes compress refuses");

/* compress's own checks of each pass against a source given as a file (a
 * source from the config is checked by the config walk): reported at the pass. */
static int check_passes(const exp_spec *s, const cfg_variant *v, const nn_model *m, kd_err *e)
{
    for (int i = 0; i < v->npasses; i++) {
        const cfg_pass *p = &v->passes[i];
        compress_override ov[CFG_MAX_OVERRIDES];
        compress_qoverride qo[CFG_MAX_OVERRIDES];
        compress_prune_spec ps = pl_prune_spec(p, ov);
        compress_quant_spec qs = pl_quant_spec(p, qo);
        int rc = KD_OK;
        if (p->kind == CFG_PASS_PRUNE && p->method == CFG_PRUNE_MAGNITUDE)
            rc = compress_prune_check(m, &ps, e);
        else if (p->kind == CFG_PASS_QUANTIZE || p->kind == CFG_PASS_QAT)
            rc = compress_quant_check(m, &qs, e);
        else if (p->kind == CFG_PASS_CLUSTER)
            rc = compress_cluster_check(
                m, &(compress_cluster_spec){.clusters = p->clusters,
                                            .init = (cluster_init)p->cluster_init}, e);
        if (rc != KD_OK)
            return kd_err_at(e, KD_ECONFIG, s->file, p->pos.line, p->pos.col,
                             "compress (%s) passes[%d], on %s: %s", v->pipeline, i, v->source_path,
                             e->msg);
    }
    return KD_OK;
}

/* Distillation matches a student's logits to the saved teacher's one for
 * one (students of a teacher from the config are held to it by the walk). */
static int check_students(const exp_spec *s, const cfg_data_facts *f, const nn_model *t,
                          kd_err *e)
{
    for (int i = 0; i < s->nstudents; i++) {
        const cfg_model *m = &s->students[i].model;
        if (m->nclasses == t->nclasses)
            continue;
        cfg_pos at = m->layer_pos[m->nlayers - 1];
        return kd_err_at(e, KD_ECONFIG, s->file, at.line, at.col,
                         "students[%d].layers[%d]: the model ends with %d outputs but the saved "
                         "teacher %s gives %d (distillation matches them one for one; the data "
                         "has %d classes)",
                         i, m->nlayers - 1, m->nclasses, s->teacher.model_path, t->nclasses,
                         f->nclasses);
    }
    return KD_OK;
}

/* A source that is no file but reads like a model's name ("mlp64/distilled",
 * "techer"): what the config does have, for the error. */
static void source_hint(const exp_spec *s, const char *path, char *buf, size_t n)
{
    const char *names[CFG_MAX_STUDENTS + 1] = {"teacher"};
    char base[CFG_PATH_MAX];
    size_t len = 0;
    snprintf(base, sizeof base, "%s", path);
    char *slash = strrchr(base, '/');
    buf[0] = 0;
    if (slash && strcmp(slash, "/distilled") && strcmp(slash, "/scratch"))
        return; /* a path, not a name */
    if (slash)
        *slash = 0;
    len += (size_t)snprintf(buf, n, " (no model of this config is named \"%.64s\": teacher", base);
    for (int i = 0; i < s->nstudents && len < n; i++) {
        names[i + 1] = s->students[i].name;
        len += (size_t)snprintf(buf + len, n - len, ", %s", s->students[i].name);
    }
    const char *near = kd_suggest(base, names, s->nstudents + 1);
    if (len < n)
        snprintf(buf + len, n - len, "%s%s%s)", near ? "; did you mean \"" : "",
                 near ? near : "", near ? "\"?" : "");
}

/* A model file must take the data's samples and give its classes (exactly,
 * for a teacher; at least, for a compress source), as the stages require;
 * a compress source (v) must also suit the pipeline's passes. */
static int check_file(const exp_spec *s, const cfg_data_facts *f, const char *path, cfg_pos pos,
                      const char *what, int exact, const cfg_variant *v, kd_err *e)
{
    /* as the stages load them: a teacher with nn's kinds, a source with compress's too */
    nn_model *m = exact ? teacher_file_load(s, e) : compress_model_load(path, e);
    if (!m) {
        if (exact)
            return e->code; /* positioned by teacher_file_load */
        char hint[512];
        source_hint(s, path, hint, sizeof hint);
        /* an ONNX graph kdbench cannot run is the config's error too */
        int onnx = onnx_is_onnx_path(path) && e->code != KD_ENOMEM;
        return e->code == KD_EIO || onnx
                   ? kd_err_at(e, KD_ECONFIG, s->file, pos.line, pos.col, "%s: %s: %s%s", what,
                               path, e->msg, e->code == KD_EIO ? hint : "")
                   : e->code;
    }
    size_t in = nn_shape_size(m->in), want = nn_shape_size(s->data.shape);
    int k = m->nclasses, rc = KD_OK;
    if (in != want || (f->nclasses && (exact ? k != f->nclasses : k < f->nclasses)))
        rc = kd_err_at(e, KD_ECONFIG, s->file, pos.line, pos.col,
                       "%s: %s takes %zu inputs and gives %d classes; the data has %zu and %d",
                       what, path, in, k, want, f->nclasses);
    if (rc == KD_OK && v)
        rc = check_passes(s, v, m, e);
    if (rc == KD_OK && exact)
        rc = check_students(s, f, m, e);
    if (rc == KD_OK && exact)
        rc = teacher_check_hints(s, m, e);
    nn_model_free(m);
    return rc;
}

static int check_files(const exp_spec *s, const cfg_data_facts *f, kd_err *e)
{
    int rc = KD_OK;
    if (s->teacher.model_path[0])
        rc = check_file(s, f, s->teacher.model_path, s->teacher.model_pos,
                        s->teacher.onnx ? "teacher.onnx" : "teacher.model", 1, NULL, e);
    for (int i = 0; rc == KD_OK && i < s->nvariants; i++) {
        const cfg_variant *v = &s->variants[i];
        int seen = 0; /* a swept pipeline's variants share one source */
        for (int j = 0; j < i; j++)
            seen |= !strcmp(s->variants[j].pipeline, v->pipeline);
        if (v->source_kind == CFG_SRC_FILE && !seen) {
            char what[96];
            snprintf(what, sizeof what, "compress (%s).source", v->pipeline);
            rc = check_file(s, f, v->source_path, v->source_pos, what, 0, v, e);
        }
    }
    if (rc == KD_OK && s->sensitivity.on && s->sensitivity.source_kind == CFG_SRC_FILE)
        rc = check_file(s, f, s->sensitivity.source_path, s->sensitivity.source_pos,
                        "sensitivity.source", 0, NULL, e);
    return rc;
}

int pipeline_config_load(const char *path, const char *const *overrides, int noverrides,
                         exp_spec *out, kd_err *e)
{
    cfg_data_facts f;
    int rc = config_load(path, overrides, noverrides, out, e);
    if (rc == KD_OK && (rc = pipeline_data_facts(&out->data, &f, e)) == KD_OK &&
        (rc = config_load_facts(path, overrides, noverrides, &f, out, e)) == KD_OK)
        rc = check_files(out, &f, e);
    return rc;
}
