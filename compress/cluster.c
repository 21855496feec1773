/* The cluster pass: weight sharing (Han, Mao & Dally, "Deep Compression",
 * ICLR 2016, section 3).  Each fp32 dense layer's non-zero weights are
 * clustered by 1-D k-means (compress/kernels/cluster.c) and replaced by their
 * nearest centroid; the layer becomes dense_csr_shared, stored as its
 * codebook plus Huffman-coded gaps and indices.
 *
 * Fine-tuning the shared values (compress_tie): the trainable dense layers'
 * non-zero weights are assigned to their k-means centroid once; after every
 * optimizer step each centroid becomes the mean of its members' new values
 * and the members take it again (pruned weights are set back to zero).  With
 * plain SGD that moves a centroid by -lr / |members| times the sum of its
 * members' gradients: the centroid's own gradient (the sum, as in the
 * paper), scaled per cluster so that a cluster of 20,000 weights does not
 * take a step 20,000 times a weight's. */
#include <string.h>

#include "internal.h"

/* Whether layer l is clustered: a dense layer of plain fp32 weights, dense
 * or CSR (not fake-quantized, not integer, not shared already). */
static int clustered(const nn_layer *l)
{
    const char *f = nn_layer_format(l);
    return compress_is_dense_like(l) && (!strcmp(f, "fp32") || !strcmp(f, "csr-fp32"));
}

static int build(const nn_layer *src, const compress_cluster_spec *s, nn_layer *dst, kd_err *e)
{
    const int m = src->spec.units, k = (int)nn_shape_size(src->in);
    size_t mk = (size_t)m * k, nz = 0;
    float *w = kd_malloc((mk ? mk : 1) * sizeof *w), *v = kd_malloc((mk ? mk : 1) * sizeof *v);
    float book[CLUSTER_MAX];
    int rc = w && v ? KD_OK : kd_err_set(e, KD_ENOMEM, "out of memory for %zu weights", mk);
    if (rc == KD_OK) {
        compress_layer_weights(src, w);
        for (size_t i = 0; i < mk; i++)
            if (w[i] != 0.0f)
                v[nz++] = w[i];
    }
    /* at most `clusters` values already (tied by compress_tie): they are the codebook */
    int nb = rc == KD_OK && nz > 0 ? cluster_distinct(v, nz, s->clusters, book) : 0;
    if (rc == KD_OK && nz > 0 && nb == 0) { /* more values than clusters: k-means */
        int want = (size_t)s->clusters < nz ? s->clusters : (int)(nz > 1 ? nz : 2);
        nb = cluster_kmeans_1d(v, nz, want, s->init, s->seed, book, e);
        rc = nb < 0 ? e->code : KD_OK;
    }
    for (size_t i = 0; rc == KD_OK && i < mk; i++)
        if (w[i] != 0.0f)
            w[i] = book[cluster_nearest(w[i], book, nb)];
    compress_csr *a = rc == KD_OK ? compress_csr_from_dense(w, m, k, e) : NULL;
    if (rc == KD_OK && !a)
        rc = e->code ? e->code : KD_ENOMEM;
    if (rc == KD_OK)
        rc = compress_shared_attach(dst, a, e);
    if (rc == KD_OK && dst->nb)
        memcpy(dst->b, src->b, dst->nb * sizeof *dst->b);
    kd_free(w);
    kd_free(v);
    return rc;
}

static int fill_shared(const void *ctx, const nn_model *m, int i, nn_layer *dst, kd_err *e)
{
    const nn_layer *l = &m->layers[i];
    return clustered(l) ? build(l, ctx, dst, e) : compress_copy_layer(dst, l, e);
}

int compress_cluster_check(const nn_model *m, const compress_cluster_spec *s, kd_err *e)
{
    if (s->clusters < 2 || s->clusters > CLUSTER_MAX ||
        (unsigned)s->init > CLUSTER_INIT_DENSITY)
        return kd_err_set(e, KD_ECONFIG, "cluster: %d clusters (2..%d) or an unknown init",
                          s->clusters, CLUSTER_MAX);
    for (int i = 0; i < m->nlayers; i++) {
        const nn_layer *l = &m->layers[i];
        if (compress_is_dense_like(l) && !clustered(l))
            return kd_err_set(e, KD_ECONFIG, "cluster: layer %d (%s) is %s, already quantized", i,
                              l->spec.name, nn_layer_format(l));
    }
    return KD_OK;
}

nn_model *compress_cluster(const nn_model *m, const compress_cluster_spec *s, kd_err *e)
{
    if (compress_cluster_check(m, s, e) != KD_OK)
        return NULL;
    const nn_layer_ops **ops = compress_ops_new(m, e);
    if (!ops)
        return NULL;
    for (int i = 0; i < m->nlayers; i++)
        ops[i] = !clustered(&m->layers[i]) ? NULL
                 : s->uncoded ? &compress_dense_csr_shared_raw_ops : &compress_dense_csr_shared_ops;
    nn_model *q = compress_remodel(m, ops, fill_shared, s, e);
    kd_free(ops);
    return q;
}

/* ---- fine-tuning the shared values ------------------------------------------------ */

typedef struct {
    int layer;
    int k;
    int32_t *who;  /* per weight: its cluster, or -1 for a pruned (zero) weight */
    double *sum;   /* k */
    size_t *count; /* k */
} tie_layer;

struct compress_tie {
    int n;
    tie_layer *t;
};

void compress_tie_free(compress_tie *t)
{
    for (int i = 0; t && i < t->n; i++) {
        kd_free(t->t[i].who);
        kd_free(t->t[i].sum);
        kd_free(t->t[i].count);
    }
    if (t)
        kd_free(t->t);
    kd_free(t);
}

compress_tie *compress_tie_new(nn_model *m, const compress_cluster_spec *s, kd_err *e)
{
    if (s->clusters < 2 || s->clusters > CLUSTER_MAX) {
        kd_err_set(e, KD_ECONFIG, "cluster: %d clusters (2..%d)", s->clusters, CLUSTER_MAX);
        return NULL;
    }
    compress_tie *t = kd_calloc(1, sizeof *t);
    if (!t || !(t->t = kd_calloc((size_t)m->nlayers, sizeof *t->t))) {
        kd_free(t);
        kd_err_set(e, KD_ENOMEM, "out of memory");
        return NULL;
    }
    for (int i = 0; i < m->nlayers; i++) {
        nn_layer *l = &m->layers[i];
        if (!clustered(l) || !l->w || !l->nw) /* trainable fp32 dense weights only */
            continue;
        tie_layer *q = &t->t[t->n++];
        q->layer = i;
        float *v = kd_malloc(l->nw * sizeof *v), book[CLUSTER_MAX];
        q->who = kd_malloc(l->nw * sizeof *q->who);
        q->sum = kd_calloc(CLUSTER_MAX, sizeof *q->sum);
        q->count = kd_calloc(CLUSTER_MAX, sizeof *q->count);
        size_t nz = 0;
        for (size_t j = 0; v && j < l->nw; j++)
            if (l->w[j] != 0.0f)
                v[nz++] = l->w[j];
        int nb = 0;
        if (v && q->who && q->sum && q->count && nz > 1)
            nb = cluster_kmeans_1d(v, nz, (size_t)s->clusters < nz ? s->clusters : (int)nz,
                                   s->init, s->seed, book, e);
        kd_free(v);
        if (!q->who || !q->sum || !q->count || (nz > 1 && nb < 0)) {
            if (!e->code)
                kd_err_set(e, KD_ENOMEM, "out of memory for layer %d's clusters", i);
            compress_tie_free(t);
            return NULL;
        }
        q->k = nb;
        for (size_t j = 0; j < l->nw; j++) {
            q->who[j] = l->w[j] != 0.0f && nb > 0 ? cluster_nearest(l->w[j], book, nb) : -1;
            l->w[j] = q->who[j] >= 0 ? book[q->who[j]] : 0.0f;
        }
    }
    return t;
}

void compress_tie_apply(compress_tie *t, nn_model *m)
{
    for (int i = 0; i < t->n; i++) {
        tie_layer *q = &t->t[i];
        nn_layer *l = &m->layers[q->layer];
        memset(q->sum, 0, (size_t)q->k * sizeof *q->sum);
        memset(q->count, 0, (size_t)q->k * sizeof *q->count);
        for (size_t j = 0; j < l->nw; j++)
            if (q->who[j] >= 0) {
                q->sum[q->who[j]] += l->w[j];
                q->count[q->who[j]]++;
            }
        for (size_t j = 0; j < l->nw; j++)
            l->w[j] = q->who[j] >= 0
                          ? (float)(q->sum[q->who[j]] / (double)q->count[q->who[j]])
                          : 0.0f;
    }
}
