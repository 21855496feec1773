/* Quantization-aware training: a copy of a model whose dense layers are
 * dense_fq (kinds/dense_fq.c), trainable with nn's optimisers as they are. */
#include <string.h>

#include "internal.h"

/* What layer i of m simulates: its bits, and int8 activations for 8-bit
 * layers (per batch in DYNAMIC8 mode, an EMA range otherwise). */
static compress_fq fq_of(const nn_model *m, const compress_quant_spec *s, int i)
{
    int bits = compress_quant_bits(m, s, i);
    compress_fq f = {.wbits = bits, .per_channel = s->per_channel ? 1 : 0};
    f.act = bits != 8                        ? COMPRESS_FQ_ACT_NONE
            : s->mode == COMPRESS_Q_DYNAMIC8 ? COMPRESS_FQ_ACT_DYNAMIC
                                             : COMPRESS_FQ_ACT_STATIC;
    return f;
}

static int simulated(const nn_model *m, const compress_quant_spec *s, int i)
{
    int bits = compress_quant_bits(m, s, i);
    return compress_is_dense(&m->layers[i]) && (bits == 8 || bits == 4);
}

static int fill_fq(const void *ctx, const nn_model *m, int i, nn_layer *d, kd_err *e)
{
    const compress_quant_spec *s = ctx;
    int rc = compress_copy_layer(d, &m->layers[i], e); /* fq: w and b; buffers stay 0 */
    if (rc == KD_OK && simulated(m, s, i))
        rc = compress_fq_attach(d, fq_of(m, s, i), e);
    return rc;
}

nn_model *compress_qat_prepare(const nn_model *m, const compress_quant_spec *s, kd_err *e)
{
    if (compress_quant_check(m, s, e) != KD_OK)
        return NULL;
    const nn_layer_ops **ops = compress_ops_new(m, e);
    if (!ops)
        return NULL;
    for (int i = 0; i < m->nlayers; i++)
        ops[i] = simulated(m, s, i) ? &compress_dense_fq_ops : NULL;
    nn_model *q = compress_remodel(m, ops, fill_fq, s, e);
    kd_free(ops);
    return q;
}
