/* The cluster pass: weight sharing (Han, Mao & Dally, "Deep Compression",
 * ICLR 2016, section 3).  Each fp32 dense layer's non-zero weights are
 * clustered by 1-D k-means (compress/kernels/cluster.c) and replaced by their
 * nearest centroid; the layer becomes dense_csr_shared, stored as its
 * codebook plus Huffman-coded gaps and indices.  Fine-tuning of the shared
 * values (a centroid's gradient is the sum of its members') is not done
 * here: the centroids are those of k-means. */
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
    int nb = 0;
    if (rc == KD_OK && nz > 0) {
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

nn_model *compress_cluster(const nn_model *m, const compress_cluster_spec *s, kd_err *e)
{
    if (s->clusters < 2 || s->clusters > CLUSTER_MAX ||
        (unsigned)s->init > CLUSTER_INIT_DENSITY) {
        kd_err_set(e, KD_ECONFIG, "cluster: %d clusters (2..%d) or an unknown init", s->clusters,
                   CLUSTER_MAX);
        return NULL;
    }
    for (int i = 0; i < m->nlayers; i++) {
        const nn_layer *l = &m->layers[i];
        if (compress_is_dense_like(l) && !clustered(l)) {
            kd_err_set(e, KD_ECONFIG, "cluster: layer %d (%s) is %s, already quantized", i,
                       l->spec.name, nn_layer_format(l));
            return NULL;
        }
    }
    nn_layer_spec *specs = kd_calloc((size_t)m->nlayers, sizeof *specs);
    if (!specs) {
        kd_err_set(e, KD_ENOMEM, "out of memory");
        return NULL;
    }
    for (int i = 0; i < m->nlayers; i++) {
        specs[i] = m->layers[i].spec;
        if (clustered(&m->layers[i]))
            specs[i].ops = &compress_dense_csr_shared_ops;
    }
    nn_model *q = nn_model_new(m->in, specs, m->nlayers, NULL, e);
    kd_free(specs);
    for (int i = 0; q && i < m->nlayers; i++) {
        const nn_layer *l = &m->layers[i];
        int rc = clustered(l) ? build(l, s, &q->layers[i], e)
                              : compress_copy_layer(&q->layers[i], l, e);
        if (rc != KD_OK) {
            kd_err_prefix(e, "layer %d (%s)", i, l->spec.name);
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
