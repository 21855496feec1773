/* Quantization-aware training with learned step sizes (LSQ, Esser et al.
 * ICLR 2020) for 2- and 3-bit weights: a copy of a model whose dense layers
 * of those bits become dense_lsq (kinds/dense_lsq.c), the step of each layer
 * started at the step of least squared error; 8- and 4-bit layers (e.g. the
 * last layer kept at 8 bits by an override, as LSQ keeps its first and last
 * layers) are simulated by dense_fq as compress_qat_prepare does. */
#include <string.h>

#include "internal.h"

static int lsq_layer(const nn_model *m, const compress_quant_spec *s, int i)
{
    int bits = compress_quant_bits(m, s, i);
    return compress_is_dense(&m->layers[i]) && (bits == 2 || bits == 3);
}

static int fq_layer(const nn_model *m, const compress_quant_spec *s, int i)
{
    int bits = compress_quant_bits(m, s, i);
    return compress_is_dense(&m->layers[i]) && (bits == 8 || bits == 4);
}

static int fill_lsq(const void *ctx, const nn_model *m, int i, nn_layer *d, kd_err *e)
{
    const compress_quant_spec *s = ctx;
    const nn_layer *src = &m->layers[i];
    if (!lsq_layer(m, s, i)) {
        int rc = compress_copy_layer(d, src, e);
        if (rc == KD_OK && fq_layer(m, s, i)) {
            int bits = compress_quant_bits(m, s, i);
            compress_fq f = {.wbits = bits, .per_channel = s->per_channel ? 1 : 0,
                             .act = bits != 8 ? COMPRESS_FQ_ACT_NONE
                                              : COMPRESS_FQ_ACT_STATIC};
            rc = compress_fq_attach(d, f, e);
        }
        return rc;
    }
    const int bits = compress_quant_bits(m, s, i);
    memcpy(d->w, src->w, src->nw * sizeof *d->w);
    d->w[src->nw] = compress_lsq_step_init(src->w, src->nw, bits);
    memcpy(d->b, src->b, src->nb * sizeof *d->b);
    return compress_lsq_attach(d, bits, e);
}

nn_model *compress_lsq_prepare(const nn_model *m, const compress_quant_spec *s, kd_err *e)
{
    if (compress_quant_check(m, s, e) != KD_OK)
        return NULL;
    const nn_layer_ops **ops = compress_ops_new(m, e);
    if (!ops)
        return NULL;
    for (int i = 0; i < m->nlayers; i++)
        ops[i] = lsq_layer(m, s, i) ? &compress_dense_lsq_ops
                 : fq_layer(m, s, i) ? &compress_dense_fq_ops : NULL;
    nn_model *q = compress_remodel(m, ops, fill_lsq, s, e);
    kd_free(ops);
    return q;
}
