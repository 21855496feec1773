/* Sets in memory: freeing, the seeded validation split, input statistics and
 * batch assembly (the training hot path). */
#include "data.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void data_set_free(data_set *d)
{
    if (!d)
        return;
    kd_free(d->x8);
    kd_free(d->xf);
    kd_free(d->y);
    memset(d, 0, sizeof *d);
}

/* ---- split --------------------------------------------------------------- */

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* dst gets src's samples idx[0..n), in that order; arrays are never NULL. */
static int gather(const data_set *src, const int *idx, int n, data_set *dst)
{
    const size_t sz = nn_shape_size(src->shape);
    memset(dst, 0, sizeof *dst);
    dst->shape = src->shape;
    dst->nclasses = src->nclasses;
    const size_t esz = src->x8 ? 1 : sizeof(float);
    uint8_t *x = kd_malloc((size_t)n * sz * esz);
    dst->y = kd_malloc((size_t)n);
    if (!x || !dst->y) {
        kd_free(x);
        data_set_free(dst);
        return KD_ENOMEM;
    }
    const uint8_t *sx = src->x8 ? src->x8 : (const uint8_t *)src->xf;
    for (int i = 0; i < n; i++) {
        memcpy(x + (size_t)i * sz * esz, sx + (size_t)idx[i] * sz * esz, sz * esz);
        dst->y[i] = src->y[idx[i]];
    }
    if (src->x8)
        dst->x8 = x;
    else
        dst->xf = (float *)x;
    dst->n = n;
    return KD_OK;
}

/* dst takes src's arrays holding src's samples idx[0..n) (ascending), moved
 * to the front in place: the training part never exists twice, which set the
 * peak memory of a run (the 47 MB of Fashion-MNIST's images copied whole
 * while the source was alive, issue 12).  src is left zeroed. */
static void compact(data_set *src, const int *idx, int n, data_set *dst)
{
    const size_t rec = nn_shape_size(src->shape) * (src->x8 ? 1 : sizeof(float));
    uint8_t *x = src->x8 ? src->x8 : (uint8_t *)src->xf;
    for (int i = 0; i < n; i++) { /* idx[i] >= i: every move goes towards the front */
        if (idx[i] != i)
            memmove(x + (size_t)i * rec, x + (size_t)idx[i] * rec, rec);
        src->y[i] = src->y[idx[i]];
    }
    *dst = *src;
    dst->n = n;
    /* give the tail back; a failed shrink keeps the larger block, still valid */
    uint8_t *sx = kd_realloc(x, (size_t)(n ? n : 1) * rec);
    uint8_t *sy = kd_realloc(src->y, (size_t)(n ? n : 1));
    if (sx)
        x = sx;
    if (sy)
        dst->y = sy;
    if (src->x8)
        dst->x8 = x;
    else
        dst->xf = (float *)x;
    memset(src, 0, sizeof *src);
}

int data_split(data_set *src, float val_fraction, uint64_t seed, data_set *train,
               data_set *val, kd_err *e)
{
    memset(train, 0, sizeof *train);
    memset(val, 0, sizeof *val);
    if (!(val_fraction >= 0 && val_fraction < 1))
        return kd_err_set(e, KD_ECONFIG, "val_fraction %g is not in [0, 1)", val_fraction);
    const int n = src->n;
    const int nval = (int)((double)n * val_fraction + 0.5);
    if (n - nval < 1)
        return kd_err_set(e, KD_ECONFIG,
                          "%d samples with val_fraction %g leave no training samples", n,
                          val_fraction);
    int *perm = kd_malloc((size_t)n * sizeof *perm);
    if (!perm)
        return kd_err_set(e, KD_ENOMEM, "out of memory splitting %d samples", n);
    for (int i = 0; i < n; i++)
        perm[i] = i;
    nn_rng r = nn_rng_stream(seed, NN_STREAM_SPLIT);
    nn_rng_shuffle(&r, perm, n);
    /* each part in file order: sequential copies, and val_fraction 0 keeps the order */
    qsort(perm, (size_t)nval, sizeof *perm, cmp_int);
    qsort(perm + nval, (size_t)(n - nval), sizeof *perm, cmp_int);
    int rc = gather(src, perm, nval, val);
    if (rc == KD_OK)
        compact(src, perm + nval, n - nval, train);
    kd_free(perm);
    if (rc != KD_OK)
        return kd_err_set(e, KD_ENOMEM, "out of memory splitting %d samples", n);
    return KD_OK;
}

/* ---- statistics ------------------------------------------------------------ */

static void stats_u8(const data_set *d, size_t count, double *mean, double *var)
{
    /* a histogram makes the sums exact and the pass cheap */
    uint64_t hist[256] = {0};
    for (size_t i = 0; i < count; i++)
        hist[d->x8[i]]++;
    double s = 0, ss = 0;
    for (int v = 0; v < 256; v++) {
        double x = v / 255.0;
        s += (double)hist[v] * x;
        ss += (double)hist[v] * x * x;
    }
    *mean = s / (double)count;
    *var = ss / (double)count - *mean * *mean;
}

static void stats_f32(const data_set *d, size_t count, double *mean, double *var)
{
    /* two passes: no cancellation in the variance */
    double s = 0, ss = 0;
    for (size_t i = 0; i < count; i++)
        s += d->xf[i];
    *mean = s / (double)count;
    for (size_t i = 0; i < count; i++) {
        double t = d->xf[i] - *mean;
        ss += t * t;
    }
    *var = ss / (double)count;
}

void data_stats(const data_set *d, float *mean, float *std)
{
    const size_t count = (size_t)(d->n > 0 ? d->n : 0) * nn_shape_size(d->shape);
    double m = 0, v = 1;
    if (count > 0 && (d->x8 || d->xf)) {
        if (d->x8)
            stats_u8(d, count, &m, &v);
        else
            stats_f32(d, count, &m, &v);
    }
    double sd = v > 0 ? sqrt(v) : 0;
    *mean = (float)m;
    /* a constant input would divide by zero: leave it centred but unscaled */
    *std = sd > 1e-12 ? (float)sd : 1.0f;
}

/* ---- batches --------------------------------------------------------------- */

void data_batch(const data_set *d, const int *idx, int n, float mean, float std, float *out,
                uint8_t *labels)
{
    const size_t sz = nn_shape_size(d->shape);
    const float inv = 1.0f / std;
    for (int i = 0; i < n; i++) /* per sample, not per value: cheap */
        assert(idx[i] >= 0 && idx[i] < d->n);
    if (d->x8) {
        float lut[256];
        for (int v = 0; v < 256; v++)
            lut[v] = ((float)v / 255.0f - mean) * inv;
        for (int i = 0; i < n; i++) {
            const uint8_t *restrict x = d->x8 + (size_t)idx[i] * sz;
            float *restrict o = out + (size_t)i * sz;
            for (size_t j = 0; j < sz; j++)
                o[j] = lut[x[j]];
        }
    } else {
        for (int i = 0; i < n; i++) {
            const float *restrict x = d->xf + (size_t)idx[i] * sz;
            float *restrict o = out + (size_t)i * sz;
            for (size_t j = 0; j < sz; j++)
                o[j] = (x[j] - mean) * inv;
        }
    }
    if (labels)
        for (int i = 0; i < n; i++)
            labels[i] = d->y[idx[i]];
}
