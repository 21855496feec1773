/* A model: layers over one flat parameter buffer and one gradient buffer. */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "nn.h"

static const nn_layer_ops *const kind_ops[NN_KIND_COUNT] = {
    [NN_DENSE] = &nn_dense_ops,         [NN_CONV2D] = &nn_conv2d_ops,
    [NN_MAXPOOL2D] = &nn_maxpool2d_ops, [NN_RELU] = &nn_relu_ops,
    [NN_DROPOUT] = &nn_dropout_ops,     [NN_FLATTEN] = &nn_flatten_ops,
    [NN_BATCHNORM] = &nn_batchnorm_ops,
};

static const char *const short_names[NN_KIND_COUNT] = {
    [NN_DENSE] = "dense", [NN_CONV2D] = "conv",       [NN_MAXPOOL2D] = "pool", [NN_RELU] = "relu",
    [NN_DROPOUT] = "drop", [NN_FLATTEN] = "flatten", [NN_BATCHNORM] = "bn",
};

const nn_layer_ops *nn_layer_ops_of(nn_kind k)
{
    return (unsigned)k < NN_KIND_COUNT ? kind_ops[k] : NULL;
}

int nn_layer_is_builtin(const nn_layer *l)
{
    return l->ops != NULL && l->ops == nn_layer_ops_of(l->spec.kind);
}

const char *nn_kind_name(nn_kind k)
{
    return (unsigned)k < NN_KIND_COUNT ? kind_ops[k]->name : "?";
}

int nn_kind_from_name(const char *s, nn_kind *k)
{
    for (int i = 0; i < NN_KIND_COUNT; i++)
        if (strcmp(s, kind_ops[i]->name) == 0) {
            *k = (nn_kind)i;
            return 0;
        }
    return -1;
}

/* Layer i may write its output over its input when the op allows it and the
 * layer before does not need its own output in backward (dense and conv2d use
 * only their input; relu's test y > 0 survives a later in-place dropout because
 * dropped units get zero gradient anyway). flatten never changes data. */
static int runs_inplace(const nn_model *m, int i)
{
    if (i == 0 || !m->layers[i].ops->inplace)
        return 0;
    if (m->layers[i].spec.kind == NN_FLATTEN)
        return 1;
    nn_kind prev = m->layers[i - 1].spec.kind;
    return prev == NN_DENSE || prev == NN_CONV2D || prev == NN_RELU;
}

static void assign_views(nn_model *m)
{
    size_t p = 0, b = 0;
    for (int i = 0; i < m->nlayers; i++) {
        nn_layer *l = &m->layers[i];
        l->w = l->nw ? m->params + p : NULL;
        l->gw = l->nw ? m->grads + p : NULL;
        p += l->nw;
        l->b = l->nb ? m->params + p : NULL;
        l->gb = l->nb ? m->grads + p : NULL;
        p += l->nb;
        l->buf = l->nbuf ? m->buffers + b : NULL;
        b += l->nbuf;
    }
}

static int name_layers(nn_model *m, int *bad, kd_err *e)
{
    int count[NN_KIND_COUNT] = {0};
    for (int i = 0; i < m->nlayers; i++) {
        nn_layer *l = &m->layers[i];
        int k = ++count[l->spec.kind];
        if (!l->spec.name[0])
            snprintf(l->spec.name, sizeof l->spec.name, "%s%d", short_names[l->spec.kind], k);
    }
    for (int i = 0; i < m->nlayers; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(m->layers[i].spec.name, m->layers[j].spec.name) == 0) {
                if (bad)
                    *bad = i;
                return kd_err_set(e, KD_ECONFIG, "layer %d: name \"%s\" is used twice", i,
                                  m->layers[i].spec.name);
            }
    return KD_OK;
}

nn_model *nn_model_new_shapes(nn_shape in, const nn_layer_spec *specs, int nlayers, int *bad_layer,
                              kd_err *e)
{
    if (bad_layer)
        *bad_layer = -1;
    if (nlayers < 1 || in.c < 1 || in.h < 1 || in.w < 1) {
        kd_err_set(e, KD_ECONFIG, nlayers < 1 ? "a model needs at least one layer"
                                              : "input shape must be positive");
        return NULL;
    }
    nn_model *m = kd_calloc(1, sizeof *m);
    if (!m || !(m->layers = kd_calloc((size_t)nlayers, sizeof *m->layers))) {
        kd_free(m);
        kd_err_set(e, KD_ENOMEM, "out of memory");
        return NULL;
    }
    m->in = in;
    m->nlayers = nlayers;
    m->in_mean = 0;
    m->in_std = 1;
    nn_shape s = in;
    for (int i = 0; i < nlayers; i++) {
        nn_layer *l = &m->layers[i];
        l->spec = specs[i];
        l->spec.name[sizeof l->spec.name - 1] = 0;
        l->ops = specs[i].ops ? specs[i].ops : nn_layer_ops_of(specs[i].kind);
        l->in = s;
        if (!l->ops) {
            kd_err_set(e, KD_ECONFIG, "unknown kind %d", (int)specs[i].kind);
        } else if (l->ops->setup(l, e) == KD_OK) {
            m->nparams += l->nw + l->nb;
            m->nbuffers += l->nbuf;
            s = l->out;
            continue;
        }
        kd_err_prefix(e, "layer %d (%s)", i, l->ops ? l->ops->name : "?");
        if (bad_layer)
            *bad_layer = i;
        nn_model_free(m);
        return NULL;
    }
    if (name_layers(m, bad_layer, e) != KD_OK) {
        nn_model_free(m);
        return NULL;
    }
    m->nclasses = (int)nn_shape_size(s);
    return m;
}

nn_model *nn_model_new(nn_shape in, const nn_layer_spec *specs, int nlayers, int *bad_layer,
                       kd_err *e)
{
    nn_model *m = nn_model_new_shapes(in, specs, nlayers, bad_layer, e);
    if (!m)
        return NULL;
    m->params = kd_afloat(m->nparams);
    m->grads = kd_afloat(m->nparams);
    m->buffers = kd_afloat(m->nbuffers);
    if (!m->params || !m->grads || !m->buffers) {
        kd_err_set(e, KD_ENOMEM, "out of memory for %zu parameters", m->nparams);
        nn_model_free(m); /* after the message: it reads m */
        return NULL;
    }
    assign_views(m);
    return m;
}

static void release_runtime(nn_model *m)
{
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i].ops && m->layers[i].ops->release)
            m->layers[i].ops->release(&m->layers[i]);
    if (m->act)
        for (int i = 1; i <= m->nlayers; i++)
            if (!runs_inplace(m, i - 1) || i == 1)
                kd_afree(m->act[i]);
    kd_free(m->act);
    m->act = NULL;
    kd_afree(m->dact[0]);
    kd_afree(m->dact[1]);
    m->dact[0] = m->dact[1] = NULL;
    m->cap = 0;
}

void nn_model_release(nn_model *m)
{
    if (m && m->layers)
        release_runtime(m);
}

void nn_model_drop_grads(nn_model *m)
{
    kd_afree(m->grads);
    m->grads = NULL;
    m->grads_zero = 0;
    for (int i = 0; i < m->nlayers; i++)
        m->layers[i].gw = m->layers[i].gb = NULL;
}

void nn_model_free(nn_model *m)
{
    if (!m)
        return;
    nn_team_free(m->team);
    if (m->layers) {
        release_runtime(m);
        for (int i = 0; i < m->nlayers; i++)
            if (m->layers[i].ops && m->layers[i].ops->destroy)
                m->layers[i].ops->destroy(&m->layers[i]);
    }
    kd_afree(m->params);
    kd_afree(m->grads);
    kd_afree(m->buffers);
    kd_free(m->layers);
    kd_free(m);
}

void nn_model_init(nn_model *m, uint64_t seed)
{
    nn_rng r = nn_rng_stream(seed, NN_STREAM_INIT);
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i].ops->init)
            m->layers[i].ops->init(&m->layers[i], &r);
}

/* The model's team, made when a layer is threaded and nn has more than one
 * thread.  A team that cannot start leaves the layers on the calling thread:
 * slower, still correct, so it is not an error. */
static void ensure_team(nn_model *m)
{
    if (m->team || nn_threads() < 2)
        return;
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i].ops->threaded) {
            m->team = nn_team_new(nn_threads() < NN_TEAM_MAX ? nn_threads() : NN_TEAM_MAX, NULL);
            return;
        }
}

int nn_model_reserve(nn_model *m, int n, kd_err *e)
{
    ensure_team(m);
    if (n <= m->cap)
        return KD_OK;
    release_runtime(m);
    m->act = kd_calloc((size_t)m->nlayers + 1, sizeof *m->act);
    size_t maxsz = nn_shape_size(m->in);
    int ok = m->act != NULL;
    for (int i = 0; ok && i < m->nlayers; i++) {
        nn_layer *l = &m->layers[i];
        size_t sz = nn_shape_size(l->out);
        maxsz = sz > maxsz ? sz : maxsz;
        /* act[i+1] is layer i's output */
        if (runs_inplace(m, i) && i > 0)
            m->act[i + 1] = m->act[i];
        else
            ok = (m->act[i + 1] = kd_afloat((size_t)n * sz)) != NULL;
        if (ok && l->ops->reserve)
            ok = l->ops->reserve(l, n, e) == KD_OK;
        l->max_batch = n;
    }
    ok = ok && (m->dact[0] = kd_afloat((size_t)n * maxsz)) != NULL;
    ok = ok && (m->dact[1] = kd_afloat((size_t)n * maxsz)) != NULL;
    if (!ok) {
        release_runtime(m);
        return kd_err_set(e, KD_ENOMEM, "out of memory for a batch of %d", n);
    }
    m->cap = n;
    return KD_OK;
}

/* Whether layer i's forward takes the ReLU after it: the next layer is nn's
 * relu, running in place on i's output (so its output is i's), and i's kind
 * fuses it -- in inference; in training only nn's dense layer, whose backward
 * needs nothing the ReLU overwrote. */
static int fuses_next_relu(const nn_model *m, int i, int train)
{
    return (!train || m->layers[i].ops == &nn_dense_ops) && i + 1 < m->nlayers &&
           m->layers[i].ops->fuses_relu && m->layers[i + 1].ops == &nn_relu_ops &&
           m->act[i + 2] == m->act[i + 1];
}

/* Whether layer i is nn's dropout running in place on the output of an
 * in-place ReLU at i - 1 (training fuses the two: forward into the dense
 * layer's epilogue, backward into one pass). */
static int dropout_after_relu(const nn_model *m, int i)
{
    return i >= 1 && i < m->nlayers && m->layers[i].ops == &nn_dropout_ops &&
           m->layers[i - 1].ops == &nn_relu_ops && m->act[i + 1] == m->act[i] &&
           m->act[i] == m->act[i - 1];
}

const float *nn_model_forward(nn_model *m, const float *x, int n, const nn_ctx *c)
{
    /* (!m->act: a first call with n = 0 still needs the buffers to return one) */
    if ((n > m->cap || !m->act) && nn_model_reserve(m, n > 1 ? n : 1, NULL) != KD_OK)
        return NULL;
    /* act[0] is the caller's input: it must stay valid until backward */
    m->act[0] = (float *)x;
    ensure_team(m); /* layers may have been swapped for threaded kinds since reserve */
    nn_ctx cc = *c;
    int alone = n == 1 && m->b1_threads == 1; /* one sample on the calling thread */
    if (alone)
        cc.team = NULL;
    else if (!cc.team)
        cc.team = m->team;
    /* with a team, it is the only pool: OpenBLAS runs serially inside its parts */
    int serial = alone || nn_team_size(cc.team) > 1;
    int blas = serial ? nn_blas_serial_begin() : 0;
    for (int i = 0; n > 0 && i < m->nlayers; i++) { /* n = 0: no statistics of nothing */
        nn_layer *l = &m->layers[i];
        cc.relu = fuses_next_relu(m, i, c->train);
        int drop = cc.relu && c->train && dropout_after_relu(m, i + 2);
        cc.mask = drop ? nn_dropout_draw(&m->layers[i + 2], n, &cc) : NULL;
        l->ops->forward(l, m->act[i], m->act[i + 1], n, &cc);
        i += cc.relu + drop; /* the ReLU (and the dropout) ran in l's epilogue */
    }
    if (serial)
        nn_blas_serial_end(blas);
    return m->act[m->nlayers];
}

void nn_model_backward_ex(nn_model *m, const float *dlogits, int tap, const float *dtap,
                          float *dx, int n, const nn_ctx *c)
{
    assert(m->grads || !m->nparams); /* not after nn_model_drop_grads */
    nn_ctx cc = *c; /* the model's team, as in forward */
    if (!cc.team)
        cc.team = m->team;
    m->grads_zero = 0; /* the layers accumulate into grads */
    int serial = nn_team_size(cc.team) > 1;
    int blas = serial ? nn_blas_serial_begin() : 0;
    const float *dy = dlogits;
    int which = 0;
    for (int i = m->nlayers - 1; i >= 0; i--) {
        nn_layer *l = &m->layers[i];
        if (i == tap && dtap) {
            /* dy is a dact buffer here (tap is never the last layer) */
            float *g = (float *)dy;
            size_t sz = (size_t)n * nn_shape_size(l->out);
            for (size_t j = 0; j < sz; j++)
                g[j] += dtap[j];
        }
        float *dxi = i > 0 ? m->dact[which] : dx;
        if (dropout_after_relu(m, i) && tap != i - 1) { /* the ReLU's backward too */
            i--;
            dxi = i > 0 ? m->dact[which] : dx;
            nn_dropout_relu_backward(l, m->act[i + 1], dy, dxi, n, &cc);
        } else {
            l->ops->backward(l, m->act[i], m->act[i + 1], dy, dxi, n, &cc);
        }
        dy = dxi;
        which ^= 1;
    }
    if (serial)
        nn_blas_serial_end(blas);
}

void nn_model_backward(nn_model *m, const float *dlogits, int n, const nn_ctx *c)
{
    nn_model_backward_ex(m, dlogits, -1, NULL, NULL, n, c);
}

int nn_model_tap_check(const nn_model *m, int i, char *why, size_t n)
{
    if (i < 0 || i >= m->nlayers - 1) {
        snprintf(why, n, "layer %d is not an intermediate layer", i);
        return KD_ECONFIG;
    }
    /* a later layer that runs in place on this output and changes it
     * (flatten does not) would make the tapped value a different one */
    for (int j = i + 1; j < m->nlayers && runs_inplace(m, j); j++) {
        if (m->layers[j].spec.kind == NN_FLATTEN)
            continue;
        int last = j;
        while (last + 1 < m->nlayers && runs_inplace(m, last + 1))
            last++;
        snprintf(why, n, "the output of \"%s\" is changed in place by \"%s\"; name \"%s\" instead",
                 m->layers[i].spec.name, m->layers[j].spec.name, m->layers[last].spec.name);
        return KD_ECONFIG;
    }
    return KD_OK;
}

static void zero_part(void *arg, int part, int nparts)
{
    nn_model *m = arg;
    size_t lo, hi;
    nn_team_range(m->nparams, part, nparts, &lo, &hi);
    if (hi > lo)
        memset(m->grads + lo, 0, (hi - lo) * sizeof *m->grads);
}

void nn_model_zero_grad(nn_model *m)
{
    assert(m->grads || !m->nparams); /* not after nn_model_drop_grads */
    if (m->grads_zero)
        return;
    m->grads_zero = 1;
    if (m->nparams >= NN_SPLIT_MIN)
        nn_team_run(m->team, zero_part, m);
    else if (m->nparams)
        memset(m->grads, 0, m->nparams * sizeof *m->grads);
}

/* Kinds whose training work splits over c->team (see nn_model_train_team_begin). */
static int splits_in_training(const nn_layer *l)
{
    nn_kind k = l->spec.kind;
    return (l->ops == nn_layer_ops_of(k) || (k == NN_DENSE && l->ops->dense_like && l->ops->trainable)) &&
           (k == NN_DENSE || k == NN_RELU || k == NN_DROPOUT || k == NN_FLATTEN);
}

int nn_model_train_team_begin(nn_model *m)
{
    if (m->team || nn_threads() < 2)
        return 0;
    for (int i = 0; i < m->nlayers; i++)
        if (!splits_in_training(&m->layers[i]))
            return 0;
    m->team = nn_team_new(nn_threads() < NN_TEAM_MAX ? nn_threads() : NN_TEAM_MAX, NULL);
    return m->team != NULL;
}

void nn_model_train_team_end(nn_model *m, int made)
{
    if (!made)
        return;
    nn_team_free(m->team);
    m->team = NULL;
}

nn_model *nn_model_clone(const nn_model *m, kd_err *e)
{
    nn_layer_spec *specs = kd_malloc((size_t)m->nlayers * sizeof *specs);
    if (!specs) {
        kd_err_set(e, KD_ENOMEM, "out of memory");
        return NULL;
    }
    for (int i = 0; i < m->nlayers; i++)
        specs[i] = m->layers[i].spec;
    nn_model *c = nn_model_new(m->in, specs, m->nlayers, NULL, e);
    kd_free(specs);
    if (!c)
        return NULL;
    memcpy(c->params, m->params, m->nparams * sizeof *c->params);
    memcpy(c->buffers, m->buffers, m->nbuffers * sizeof *c->buffers);
    c->in_mean = m->in_mean;
    c->in_std = m->in_std;
    for (int i = 0; i < m->nlayers; i++) {
        const nn_layer *l = &m->layers[i];
        if (l->ops->copy && l->data && l->ops->copy(&c->layers[i], l, e) != KD_OK) {
            nn_model_free(c);
            return NULL;
        }
    }
    return c;
}

size_t nn_layer_params(const nn_layer *l, size_t *nonzero)
{
    size_t n = l->nw + l->nb, nz = 0;
    for (size_t i = 0; i < l->nw; i++)
        nz += l->w[i] != 0.0f;
    for (size_t i = 0; i < l->nb; i++)
        nz += l->b[i] != 0.0f;
    if (l->ops->count) {
        size_t pw, pnz;
        l->ops->count(l, &pw, &pnz);
        n += pw;
        nz += pnz;
    }
    if (nonzero)
        *nonzero = nz;
    return n;
}

size_t nn_model_params(const nn_model *m, size_t *nonzero)
{
    size_t n = 0, nz = 0;
    for (int i = 0; i < m->nlayers; i++) {
        size_t lnz;
        n += nn_layer_params(&m->layers[i], &lnz);
        nz += lnz;
    }
    if (nonzero)
        *nonzero = nz;
    return n;
}

size_t nn_model_nonzero_params(const nn_model *m)
{
    size_t nz;
    nn_model_params(m, &nz);
    return nz;
}

const char *nn_layer_format(const nn_layer *l)
{
    if (l->ops->format)
        return l->ops->format;
    return l->nw + l->nb ? "fp32" : "-";
}

double nn_model_macs(const nn_model *m)
{
    double s = 0;
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i].ops->macs)
            s += m->layers[i].ops->macs(&m->layers[i]);
    return s;
}

int nn_model_find(const nn_model *m, const char *name)
{
    for (int i = 0; i < m->nlayers; i++)
        if (strcmp(m->layers[i].spec.name, name) == 0)
            return i;
    return -1;
}
