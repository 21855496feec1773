/* A model rebuilt layer by layer with other kinds: what quantize, qat and
 * cluster share (the layer specs copied with the new kinds, nn_model_new,
 * each layer filled, the input normalisation kept). */
#include "internal.h"

const nn_layer_ops **compress_ops_new(const nn_model *m, kd_err *e)
{
    const nn_layer_ops **ops = kd_calloc((size_t)m->nlayers, sizeof *ops);
    if (!ops)
        kd_err_set(e, KD_ENOMEM, "out of memory");
    return ops;
}

nn_model *compress_remodel(const nn_model *m, const nn_layer_ops *const *ops,
                           compress_fill_fn fill, const void *ctx, kd_err *e)
{
    nn_layer_spec *specs = kd_calloc((size_t)m->nlayers, sizeof *specs);
    if (!specs) {
        kd_err_set(e, KD_ENOMEM, "out of memory");
        return NULL;
    }
    for (int i = 0; i < m->nlayers; i++) {
        specs[i] = m->layers[i].spec;
        if (ops[i])
            specs[i].ops = ops[i];
    }
    nn_model *q = nn_model_new(m->in, specs, m->nlayers, NULL, e);
    kd_free(specs);
    for (int i = 0; q && i < m->nlayers; i++) {
        int rc = fill(ctx, m, i, &q->layers[i], e);
        if (rc != KD_OK) {
            kd_err_prefix(e, "layer %d (%s)", i, m->layers[i].spec.name);
            nn_model_free(q);
            q = NULL;
        }
    }
    if (q) {
        q->in_mean = m->in_mean;
        q->in_std = m->in_std;
    }
    return q;
}
