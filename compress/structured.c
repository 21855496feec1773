/* Structured pruning: whole neurons of dense layers and whole filters of
 * conv2d layers, by the L1 or L2 norm of their weights, removed for real.
 * The new model is built from edited specs, then every layer's weights are
 * copied through channel maps: map[j] is the original index of the j-th
 * channel that survives at that point of the network, carried through
 * batchnorm (same channels), relu / dropout / maxpool2d (unchanged) and
 * flatten (channel c becomes features c*h*w .. c*h*w + h*w - 1). */
#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The dense/conv2d layer consuming layer i's output through layers that pass
 * channels along, or -1 (the output layer, or something else in between). */
static int consumer_of(const nn_model *m, int i)
{
    for (int j = i + 1; j < m->nlayers; j++) {
        const nn_layer *l = &m->layers[j];
        if (compress_is_prunable(l))
            return j;
        if (!compress_is_builtin(l, NN_RELU) && !compress_is_builtin(l, NN_DROPOUT) &&
            !compress_is_builtin(l, NN_MAXPOOL2D) && !compress_is_builtin(l, NN_BATCHNORM) &&
            !compress_is_builtin(l, NN_FLATTEN))
            return -1;
    }
    return -1;
}

/* Is layer l of a kind selected by units? */
static int selected(const nn_layer *l, compress_units units)
{
    return (compress_is_dense(l) && (units & COMPRESS_NEURONS)) ||
           (compress_is_conv(l) && (units & COMPRESS_FILTERS));
}

static const char *units_name(compress_units units)
{
    return units == COMPRESS_NEURONS ? "neuron" : units == COMPRESS_FILTERS ? "filter"
                                                                            : "neuron/filter";
}

/* Some selected layer can shrink, and every override matches a selected layer. */
static int check_units(const nn_model *m, const compress_prune_spec *s, compress_units units,
                       kd_err *e)
{
    int any = 0;
    for (int i = 0; i < m->nlayers && !any; i++)
        any = selected(&m->layers[i], units) && consumer_of(m, i) >= 0;
    if (!any)
        return kd_err_set(e, KD_ECONFIG, "%s pruning does not apply: no %s layer feeds another "
                          "dense or conv2d layer", units_name(units),
                          units == COMPRESS_FILTERS ? "conv2d" : "dense or conv2d");
    for (int j = 0; j < s->noverrides; j++) {
        int hit = 0;
        for (int i = 0; i < m->nlayers && !hit; i++)
            hit = selected(&m->layers[i], units) &&
                  fnmatch(s->overrides[j].pattern, m->layers[i].spec.name, 0) == 0;
        if (!hit)
            return kd_err_set(e, KD_ECONFIG, "override \"%s\" matches no layer %s pruning "
                              "applies to", s->overrides[j].pattern, units_name(units));
    }
    return KD_OK;
}

/* Does the override that decides layer i's sparsity ask for a removal? */
static int explicitly_named(const nn_model *m, const compress_prune_spec *s, int i)
{
    int named = 0;
    for (int j = 0; j < s->noverrides; j++)
        if (fnmatch(s->overrides[j].pattern, m->layers[i].spec.name, 0) == 0)
            named = s->overrides[j].sparsity > 0;
    return named;
}

/* Units (filters) layer i keeps, or its full count when it is not pruned. */
static int kept_count(const nn_model *m, const compress_prune_spec *s, int i, kd_err *e)
{
    const nn_layer *l = &m->layers[i];
    int units = l->out.c;
    float sp = compress_layer_sparsity(m, s, i);
    if (sp <= 0)
        return units;
    if (consumer_of(m, i) < 0) {
        if (explicitly_named(m, s, i))
            return kd_err_set(e, KD_ECONFIG, "layer %s: its %s cannot be removed (no dense or "
                              "conv2d layer consumes them)", l->spec.name,
                              compress_is_conv(l) ? "filters" : "neurons");
        return units;
    }
    int drop = (int)floor((double)sp * units + 0.5);
    return units - drop < 1 ? 1 : units - drop;
}

typedef struct {
    double norm;
    int idx;
} ranked;

static int by_norm_desc(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->norm != y->norm)
        return x->norm < y->norm ? 1 : -1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

static int by_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* keep[0..nkeep) = the rows of largest norm among the units rows of l->w
 * (ties: lower index), ascending. */
static int rank_rows(const nn_layer *l, compress_norm norm, int nkeep, int *keep, kd_err *e)
{
    int units = l->out.c;
    size_t len = l->nw / (size_t)units;
    ranked *r = kd_malloc((size_t)units * sizeof *r);
    if (!r)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    for (int u = 0; u < units; u++) {
        const float *w = l->w + (size_t)u * len;
        double s = 0;
        for (size_t k = 0; k < len; k++)
            s += norm == COMPRESS_NORM_L1 ? fabs(w[k]) : (double)w[k] * w[k];
        r[u] = (ranked){s, u};
    }
    qsort(r, (size_t)units, sizeof *r, by_norm_desc);
    for (int j = 0; j < nkeep; j++)
        keep[j] = r[j].idx;
    qsort(keep, (size_t)nkeep, sizeof *keep, by_int);
    kd_free(r);
    return KD_OK;
}

/* ---- copying through channel maps -------------------------------------------- */
typedef struct {
    int *map; /* original indices of the surviving channels */
    int n;    /* how many survive */
} chmap;

static void map_identity(chmap *c, int n)
{
    for (int j = 0; j < n; j++)
        c->map[j] = j;
    c->n = n;
}

/* dense: new W[r][f] = W[out[r]][in features f]; input features expand the
 * channel map by the input's h*w */
static void copy_dense(const nn_layer *o, nn_layer *d, const chmap *in, const chmap *out)
{
    int hw = o->in.h * o->in.w, fan = (int)nn_shape_size(o->in), nfan = (int)nn_shape_size(d->in);
    for (int r = 0; r < out->n; r++) {
        const float *src = o->w + (size_t)out->map[r] * fan;
        float *dst = d->w + (size_t)r * nfan;
        for (int c = 0; c < in->n; c++)
            memcpy(dst + (size_t)c * hw, src + (size_t)in->map[c] * hw, (size_t)hw * sizeof *dst);
        d->b[r] = o->b[out->map[r]];
    }
}

/* conv2d: new W[f][c] (k x k each) = W[out[f]][in[c]] */
static void copy_conv(const nn_layer *o, nn_layer *d, const chmap *in, const chmap *out)
{
    size_t kk = (size_t)o->spec.kernel * o->spec.kernel;
    for (int f = 0; f < out->n; f++) {
        for (int c = 0; c < in->n; c++)
            memcpy(d->w + ((size_t)f * in->n + c) * kk,
                   o->w + ((size_t)out->map[f] * o->in.c + in->map[c]) * kk, kk * sizeof(float));
        d->b[f] = o->b[out->map[f]];
    }
}

static void copy_bn(const nn_layer *o, nn_layer *d, const chmap *in)
{
    int C = o->in.c, nC = d->in.c;
    for (int j = 0; j < in->n; j++) {
        int c = in->map[j];
        d->w[j] = o->w[c];
        d->b[j] = o->b[c];
        d->buf[j] = o->buf[c];
        d->buf[nC + j] = o->buf[C + c];
    }
}

/* Copies layer o into d and advances the channel map cm past it. */
static int copy_layer(const nn_layer *o, nn_layer *d, chmap *cm, const int *keep, chmap *tmp,
                      kd_err *e)
{
    if (compress_is_prunable(o)) {
        tmp->n = d->out.c;
        if (keep)
            memcpy(tmp->map, keep, (size_t)tmp->n * sizeof *tmp->map);
        else
            map_identity(tmp, tmp->n);
        (compress_is_conv(o) ? copy_conv : copy_dense)(o, d, cm, tmp);
        memcpy(cm->map, tmp->map, (size_t)tmp->n * sizeof *cm->map);
        cm->n = tmp->n;
    } else if (compress_is_builtin(o, NN_BATCHNORM)) {
        copy_bn(o, d, cm);
    } else if (compress_is_builtin(o, NN_FLATTEN)) {
        int hw = o->in.h * o->in.w, n = 0;
        for (int c = 0; c < cm->n; c++)
            for (int p = 0; p < hw; p++)
                tmp->map[n++] = cm->map[c] * hw + p;
        memcpy(cm->map, tmp->map, (size_t)n * sizeof *cm->map);
        cm->n = n;
    } else if (o->nw + o->nb + o->nbuf || o->ops->copy) {
        if (cm->n != o->in.c)
            return kd_err_set(e, KD_ERUNTIME, "layer %s cannot follow a pruned layer",
                              o->spec.name);
        if (o->nw + o->nb) /* w and b are adjacent in the flat buffer */
            memcpy(d->w ? d->w : d->b, o->w ? o->w : o->b, (o->nw + o->nb) * sizeof(float));
        if (o->nbuf)
            memcpy(d->buf, o->buf, o->nbuf * sizeof(float));
        if (o->ops->copy && o->data && o->ops->copy(d, o, e) != KD_OK)
            return KD_ENOMEM;
        map_identity(cm, d->out.c);
    } else if (o->out.c != o->in.c) {
        map_identity(cm, d->out.c);
    }
    return KD_OK;
}

/* Largest channel or feature count anywhere in m (sizes the maps). */
static size_t widest(const nn_model *m)
{
    size_t w = nn_shape_size(m->in);
    for (int i = 0; i < m->nlayers; i++) {
        size_t s = nn_shape_size(m->layers[i].out);
        w = s > w ? s : w;
    }
    return w;
}

/* New specs and, per pruned layer, its kept rows (keep[i], NULL = all). */
static int plan(const nn_model *m, const compress_prune_spec *s, compress_units units,
                compress_norm norm, nn_layer_spec *specs, int **keep, kd_err *e)
{
    for (int i = 0; i < m->nlayers; i++) {
        const nn_layer *l = &m->layers[i];
        specs[i] = l->spec;
        if (!selected(l, units))
            continue;
        int n = kept_count(m, s, i, e);
        if (n < 0)
            return n;
        if (n == l->out.c)
            continue;
        if (!(keep[i] = kd_malloc((size_t)n * sizeof **keep)))
            return kd_err_set(e, KD_ENOMEM, "out of memory");
        int rc = rank_rows(l, norm, n, keep[i], e);
        if (rc != KD_OK)
            return rc;
        *(compress_is_conv(l) ? &specs[i].filters : &specs[i].units) = n;
    }
    return KD_OK;
}

static int copy_all(const nn_model *m, nn_model *d, int *const *keep, kd_err *e)
{
    size_t w = widest(m);
    chmap cm = {kd_malloc(w * sizeof(int)), 0}, tmp = {kd_malloc(w * sizeof(int)), 0};
    int rc = cm.map && tmp.map ? KD_OK : kd_err_set(e, KD_ENOMEM, "out of memory");
    if (rc == KD_OK)
        map_identity(&cm, m->in.c);
    for (int i = 0; i < m->nlayers && rc == KD_OK; i++)
        rc = copy_layer(&m->layers[i], &d->layers[i], &cm, keep[i], &tmp, e);
    kd_free(cm.map);
    kd_free(tmp.map);
    return rc;
}

nn_model *compress_prune_structured(const nn_model *m, const compress_prune_spec *s,
                                    compress_units units, compress_norm norm, kd_err *e)
{
    if (s->scope != COMPRESS_LAYERWISE) {
        kd_err_set(e, KD_ECONFIG, "structured pruning is layer-wise (no global threshold)");
        return NULL;
    }
    if (norm != COMPRESS_NORM_L1 && norm != COMPRESS_NORM_L2) {
        kd_err_set(e, KD_ECONFIG, "norm must be L1 or L2");
        return NULL;
    }
    if (compress_prune_check(m, s, e) != KD_OK || check_units(m, s, units, e) != KD_OK)
        return NULL;
    nn_layer_spec *specs = kd_calloc((size_t)m->nlayers, sizeof *specs);
    int **keep = kd_calloc((size_t)m->nlayers, sizeof *keep);
    nn_model *d = NULL;
    if (!specs || !keep)
        kd_err_set(e, KD_ENOMEM, "out of memory");
    else if (plan(m, s, units, norm, specs, keep, e) == KD_OK &&
             (d = nn_model_new(m->in, specs, m->nlayers, NULL, e))) {
        d->in_mean = m->in_mean;
        d->in_std = m->in_std;
        if (copy_all(m, d, keep, e) != KD_OK) {
            nn_model_free(d);
            d = NULL;
        }
    }
    for (int i = 0; keep && i < m->nlayers; i++)
        kd_free(keep[i]);
    kd_free(keep);
    kd_free(specs);
    return d;
}
