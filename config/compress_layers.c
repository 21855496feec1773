/* A compress pass against its source's layers (a source known from the
 * config; a model file is checked once it is loaded): the same rules as
 * compress_prune_check, compress_prune_structured and compress_quant_check,
 * reported at the pass or override that breaks them.  The layer shapes come
 * from nn_model_new_shapes: nothing is allocated for parameters. */
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* The layer a structured method selects: dense for neurons, conv2d for
 * filters; magnitude takes both. */
static int selected(const nn_model *nm, int i, cfg_prune_method method)
{
    nn_kind k = nm->layers[i].spec.kind;
    if (method == CFG_PRUNE_MAGNITUDE)
        return k == NN_DENSE || k == NN_CONV2D;
    return k == (method == CFG_PRUNE_NEURONS ? NN_DENSE : NN_CONV2D);
}

/* A later dense or conv2d layer takes layer i's output (every layer kind
 * between two weight layers passes channels along), so its units can go. */
static int has_consumer(const nn_model *nm, int i)
{
    for (int j = i + 1; j < nm->nlayers; j++) {
        nn_kind n = nm->layers[j].spec.kind;
        if (n == NN_DENSE || n == NN_CONV2D)
            return 1;
    }
    return 0;
}

/* Whether layer i of nm may be pruned by method (structured methods also
 * need the layer to feed another weight layer). */
static int prunable(const nn_model *nm, int i, cfg_prune_method method)
{
    return selected(nm, i, method) && (method == CFG_PRUNE_MAGNITUDE || has_consumer(nm, i));
}

static nn_model *shapes_of(cfg_ctx *c, const cfg_node *pm, const char *path, const cfg_data *d,
                           const cfg_model *src)
{
    kd_err local;
    nn_model *nm = nn_model_new_shapes(d->shape, src->layers, src->nlayers, NULL, &local);
    if (!nm) {
        if (local.code == KD_ENOMEM)
            cfg_nomem(c);
        else
            cfg_err(c, pm, path, "%s", local.msg);
    }
    return nm;
}

/* An error at overrides[o].layer of the pass. */
static int override_err(cfg_ctx *c, const cfg_node *pm, const char *path, int o, const char *fmt,
                        ...) __attribute__((format(printf, 5, 6)));
static int override_err(cfg_ctx *c, const cfg_node *pm, const char *path, int o, const char *fmt,
                        ...)
{
    char p[256], msg[sizeof c->e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(p, sizeof p, "%s.overrides[%d].layer", path, o);
    const cfg_node *ov = cfg_map_get(pm, "overrides");
    return cfg_err(c, cfg_map_get(ov->kid[o], "layer"), p, "%s", msg);
}

/* Structured pruning removes units only where a later layer consumes them:
 * the override that gives such a layer a sparsity above 0 (the last one
 * matching it decides, as in compress) names a removal that cannot happen. */
static int check_named_output(cfg_ctx *c, const cfg_node *pm, const char *path, const nn_model *nm,
                              const cfg_pass *ps)
{
    for (int i = 0; i < nm->nlayers; i++) {
        if (!selected(nm, i, ps->method) || has_consumer(nm, i))
            continue;
        int last = -1;
        for (int o = 0; o < ps->noverrides; o++)
            if (fnmatch(ps->overrides[o].pattern, nm->layers[i].spec.name, 0) == 0)
                last = o;
        if (last >= 0 && ps->overrides[last].sparsity > 0)
            return override_err(c, pm, path, last,
                                "\"%s\" gives layer \"%s\" a sparsity, but no dense or conv2d "
                                "layer consumes its units, so none can be removed",
                                ps->overrides[last].pattern, nm->layers[i].spec.name);
    }
    return KD_OK;
}

int cfg_check_prune_layers(cfg_ctx *c, const cfg_node *pm, const char *path, const cfg_data *d,
                           const cfg_model *src, const cfg_pass *ps)
{
    nn_model *nm = shapes_of(c, pm, path, d, src);
    if (!nm)
        return c->e->code;
    int any = 0, rc = KD_OK;
    for (int i = 0; i < nm->nlayers; i++)
        any |= prunable(nm, i, ps->method);
    if (!any)
        rc = cfg_err(c, pm, path, "%s pruning does not apply to this model: it has no %s",
                     cfg_method_names[ps->method],
                     ps->method == CFG_PRUNE_MAGNITUDE ? "dense or conv2d layer"
                     : ps->method == CFG_PRUNE_NEURONS ? "dense layer feeding another layer"
                                                       : "conv2d layer feeding another layer");
    for (int o = 0; rc == KD_OK && o < ps->noverrides; o++) {
        int hit = 0;
        for (int i = 0; i < nm->nlayers; i++)
            hit |= selected(nm, i, ps->method) &&
                   fnmatch(ps->overrides[o].pattern, nm->layers[i].spec.name, 0) == 0;
        if (!hit)
            rc = override_err(c, pm, path, o, "\"%s\" matches no layer that %s pruning can prune",
                              ps->overrides[o].pattern, cfg_method_names[ps->method]);
    }
    if (rc == KD_OK && ps->method != CFG_PRUNE_MAGNITUDE)
        rc = check_named_output(c, pm, path, nm, ps);
    nn_model_free(nm);
    return rc;
}

int cfg_check_quant_layers(cfg_ctx *c, const cfg_node *pm, const char *path, const cfg_data *d,
                           const cfg_model *src, const cfg_pass *ps)
{
    int dense = 0;
    for (int i = 0; i < src->nlayers; i++)
        dense += src->layers[i].kind == NN_DENSE;
    if (!dense)
        return cfg_err(c, pm, path, "quantization applies to dense layers; this model has none");
    nn_model *nm = shapes_of(c, pm, path, d, src);
    if (!nm)
        return c->e->code;
    int rc = KD_OK;
    for (int o = 0; rc == KD_OK && o < ps->noverrides; o++) {
        int hit = 0;
        for (int i = 0; i < nm->nlayers; i++)
            hit |= nm->layers[i].spec.kind == NN_DENSE &&
                   fnmatch(ps->overrides[o].pattern, nm->layers[i].spec.name, 0) == 0;
        if (!hit)
            rc = override_err(c, pm, path, o, "\"%s\" matches no dense layer",
                              ps->overrides[o].pattern);
    }
    nn_model_free(nm);
    return rc;
}
