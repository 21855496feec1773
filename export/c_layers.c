/* One layer of the generated C: its arrays (in the layer's stored format)
 * and its call in PREFIX_logits.  Compressed kinds are read through their
 * ops table only: the format fact says which kind it is, and the payload is
 * parsed as ops->save writes it into model files (documented in each kind's
 * file under compress/kinds/, see c_payload.c). */
#include <math.h>
#include <string.h>

#include "../compress/compress.h"
#include "internal.h"

/* The compressed formats export knows (ops->format). */
static const char *const known_formats[] = {"csr-fp32",   "int8",       "int8-dyn",
                                            "int4",       "int3",       "int2",
                                            "csr-int8",   "csr-shared", "csr-shared+huff",
                                            "csr-int8-static", "csr-int8-dyn"};

static const char *format_of(const nn_layer *l) { return l->ops->format ? l->ops->format : "fp32"; }

int cg_layer_check(const nn_model *m, int i, kd_err *e)
{
    const nn_layer *l = &m->layers[i];
    if (nn_layer_is_builtin(l))
        return KD_OK;
    const char *f = format_of(l);
    int known = 0;
    for (size_t k = 0; k < sizeof known_formats / sizeof known_formats[0]; k++)
        known |= !strcmp(f, known_formats[k]);
    if (known && l->spec.kind == NN_DENSE && l->ops->dense_like && l->ops->save)
        return KD_OK;
    const char *why = !strcmp(f, "fp32-fakequant")
                          ? ": it simulates quantization for training; export the model a "
                            "quantize pass made from it (int8 or int4)"
                          : ": export knows fp32, csr-fp32, int8, int8-dyn, int4, int3, int2, "
                            "csr-int8, csr-int8-static, csr-int8-dyn, csr-shared and "
                            "csr-shared+huff";
    return kd_err_set(e, KD_ECONFIG, "layer %d (%s): kind %s (format %s) cannot be exported to C%s",
                      i, l->spec.name, l->ops->name, f, why);
}

/* ---- the activation buffers ---------------------------------------------------- */

static void need_act(cg *g, const nn_layer *l)
{
    size_t a = nn_shape_size(l->in), b = nn_shape_size(l->out);
    g->max_act = a > g->max_act ? a : g->max_act;
    g->max_act = b > g->max_act ? b : g->max_act;
}

void cg_io_swap(cg *g)
{
    cg_printf(&g->run, "kd_act[%d], kd_act[%d]);\n", g->cur, 1 - g->cur);
    g->cur = 1 - g->cur;
}

/* ---- nn's own kinds -------------------------------------------------------------- */

static void emit_dense(cg *g, const nn_layer *l, int i)
{
    char n[32], what[64];
    int k = (int)nn_shape_size(l->in), u = l->spec.units;
    snprintf(what, sizeof what, "layer %d (%s)", i, l->spec.name);
    snprintf(n, sizeof n, "L%d_w", i);
    cg_floats(g, n, l->w, l->nw, what);
    snprintf(n, sizeof n, "L%d_b", i);
    cg_floats(g, n, l->b, l->nb, what);
    g->need |= CG_DENSE;
    cg_printf(&g->run, "    kd_dense(L%d_w, L%d_b, %d, %d, ", i, i, u, k);
    cg_io_swap(g);
}

static void emit_conv(cg *g, const nn_layer *l, int i)
{
    char n[32], what[64];
    snprintf(what, sizeof what, "layer %d (%s)", i, l->spec.name);
    snprintf(n, sizeof n, "L%d_w", i);
    cg_floats(g, n, l->w, l->nw, what);
    snprintf(n, sizeof n, "L%d_b", i);
    cg_floats(g, n, l->b, l->nb, what);
    const nn_layer_spec *s = &l->spec;
    cg_printf(&g->data, "static const kd_conv L%d_g = {%d, %d, %d, %d, %d, %d, %d, %d, %d};\n", i,
              l->in.c, l->in.h, l->in.w, s->filters, s->kernel, s->stride ? s->stride : 1,
              s->pad, l->out.h, l->out.w);
    g->need |= CG_CONV;
    cg_printf(&g->run, "    kd_conv2d(&L%d_g, L%d_w, L%d_b, ", i, i, i);
    cg_io_swap(g);
}

static void emit_pool(cg *g, const nn_layer *l)
{
    const nn_layer_spec *s = &l->spec;
    g->need |= CG_POOL;
    cg_printf(&g->run, "    kd_maxpool(%d, %d, %d, %d, %d, %d, %d, ", l->in.c, l->in.h, l->in.w,
              s->kernel, s->stride ? s->stride : s->kernel, l->out.h, l->out.w);
    cg_io_swap(g);
}

/* The factors exactly as nn's eval-mode batchnorm forms them. */
static int emit_bn(cg *g, const nn_layer *l, int i, kd_err *e)
{
    const int C = l->in.c;
    float *mean = kd_malloc((size_t)C * sizeof *mean), *sc = kd_malloc((size_t)C * sizeof *sc);
    if (!mean || !sc) {
        kd_free(mean);
        kd_free(sc);
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    }
    float eps = l->spec.eps > 0 ? l->spec.eps : 1e-5f;
    for (int c = 0; c < C; c++) {
        double invstd = 1.0 / sqrt((double)l->buf[C + c] + eps);
        mean[c] = l->buf[c];
        sc[c] = (float)(l->w[c] * invstd);
    }
    char n[32], what[64];
    snprintf(what, sizeof what, "layer %d (%s)", i, l->spec.name);
    snprintf(n, sizeof n, "L%d_mean", i);
    cg_floats(g, n, mean, (size_t)C, what);
    snprintf(n, sizeof n, "L%d_scale", i);
    cg_floats(g, n, sc, (size_t)C, what);
    snprintf(n, sizeof n, "L%d_beta", i);
    cg_floats(g, n, l->b, (size_t)C, what);
    kd_free(mean);
    kd_free(sc);
    g->need |= CG_BN;
    cg_printf(&g->run, "    kd_batchnorm(L%d_mean, L%d_scale, L%d_beta, %d, %d, ", i, i, i, C,
              l->in.h * l->in.w);
    cg_io_swap(g);
    return KD_OK;
}

int cg_layer(cg *g, const nn_model *m, int i, kd_err *e)
{
    const nn_layer *l = &m->layers[i];
    need_act(g, l);
    cg_printf(&g->run, "    /* layer %d: %s \"%s\" (%s) */\n", i, l->ops->name, l->spec.name,
              nn_layer_is_builtin(l) ? "fp32" : format_of(l));
    if (!nn_layer_is_builtin(l))
        return cg_payload(g, l, i, e);
    switch (l->spec.kind) {
    case NN_DENSE: emit_dense(g, l, i); return KD_OK;
    case NN_CONV2D: emit_conv(g, l, i); return KD_OK;
    case NN_MAXPOOL2D: emit_pool(g, l); return KD_OK;
    case NN_BATCHNORM: return emit_bn(g, l, i, e);
    case NN_RELU:
        g->need |= CG_RELU;
        cg_printf(&g->run, "    kd_relu(kd_act[%d], %zu);\n", g->cur, nn_shape_size(l->in));
        return KD_OK;
    case NN_DROPOUT: /* identity at inference */
    case NN_FLATTEN: /* NCHW is already flat */
    default: return KD_OK;
    }
}
