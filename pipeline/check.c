/* Loading a config the way run needs it: the spec, then the data's facts
 * (pipeline_data_facts) walked with it again, then the model files it names
 * against the data, so that `kdbench check` refuses what `kdbench run`
 * would refuse later, at the key's position. */
#include <string.h>

#include "../compress/compress.h"
#include "pipeline.h"

/* A model file must take the data's samples and give its classes (exactly,
 * for a teacher; at least, for a compress source), as the stages require. */
static int check_file(const exp_spec *s, const cfg_data_facts *f, const char *path,
                      cfg_pos pos, const char *what, int exact, kd_err *e)
{
    nn_model *m = compress_model_load(path, e);
    if (!m)
        return e->code == KD_EIO ? kd_err_at(e, KD_ECONFIG, s->file, pos.line, pos.col,
                                             "%s: %s: %s", what, path, e->msg)
                                 : e->code;
    size_t in = nn_shape_size(m->in), want = nn_shape_size(s->data.shape);
    int k = m->nclasses, rc = KD_OK;
    nn_model_free(m);
    if (in != want || (f->nclasses && (exact ? k != f->nclasses : k < f->nclasses)))
        rc = kd_err_at(e, KD_ECONFIG, s->file, pos.line, pos.col,
                       "%s: %s takes %zu inputs and gives %d classes; the data has %zu and %d",
                       what, path, in, k, want, f->nclasses);
    return rc;
}

static int check_files(const exp_spec *s, const cfg_data_facts *f, kd_err *e)
{
    int rc = KD_OK;
    if (s->teacher.model_path[0])
        rc = check_file(s, f, s->teacher.model_path, s->teacher.model_pos, "teacher.model", 1, e);
    for (int i = 0; rc == KD_OK && i < s->nvariants; i++) {
        const cfg_variant *v = &s->variants[i];
        int seen = 0; /* a swept pipeline's variants share one source */
        for (int j = 0; j < i; j++)
            seen |= !strcmp(s->variants[j].pipeline, v->pipeline);
        if (v->source_kind == CFG_SRC_FILE && !seen) {
            char what[96];
            snprintf(what, sizeof what, "compress (%s).source", v->pipeline);
            rc = check_file(s, f, v->source_path, v->source_pos, what, 0, e);
        }
    }
    if (rc == KD_OK && s->sensitivity.on && s->sensitivity.source_kind == CFG_SRC_FILE)
        rc = check_file(s, f, s->sensitivity.source_path, s->sensitivity.source_pos,
                        "sensitivity.source", 0, e);
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
