/* Magnitude pruning, layer-wise or with one global threshold, of single
 * weights or of blocks of consecutive rows in one column,
 * per-layer overrides by name or glob, and masks over the flat parameters.
 * The k smallest magnitudes are found by quickselect (O(n), so gradual
 * pruning can re-prune often); ties at the threshold are pruned in position
 * order until exactly k weights are zero. */
#include <fnmatch.h>
#include <math.h>
#include <string.h>

#include "internal.h"

int compress_is_builtin(const nn_layer *l, nn_kind k)
{
    return l->spec.kind == k && nn_layer_is_builtin(l);
}
int compress_is_dense(const nn_layer *l) { return compress_is_builtin(l, NN_DENSE); }
int compress_is_conv(const nn_layer *l) { return compress_is_builtin(l, NN_CONV2D); }
int compress_is_prunable(const nn_layer *l) { return compress_is_dense(l) || compress_is_conv(l); }

static int matches(const compress_override *o, const nn_layer *l)
{
    return fnmatch(o->pattern, l->spec.name, 0) == 0;
}

/* The last override matching layer i, or NULL. */
static const compress_override *override_of(const nn_model *m, const compress_prune_spec *s, int i)
{
    const compress_override *hit = NULL;
    for (int j = 0; j < s->noverrides; j++)
        if (matches(&s->overrides[j], &m->layers[i]))
            hit = &s->overrides[j];
    return hit;
}

float compress_layer_sparsity(const nn_model *m, const compress_prune_spec *s, int i)
{
    if (i < 0 || i >= m->nlayers || !compress_is_prunable(&m->layers[i]))
        return -1.0f;
    const compress_override *o = override_of(m, s, i);
    return o ? o->sparsity : s->sparsity;
}

static int bad_sparsity(float s) { return !(s >= 0.0f && s < 1.0f); }

int compress_prune_check(const nn_model *m, const compress_prune_spec *s, kd_err *e)
{
    if (bad_sparsity(s->sparsity))
        return kd_err_set(e, KD_ECONFIG, "sparsity %g is outside [0, 1)", (double)s->sparsity);
    if (s->block < 0 || s->block > COMPRESS_BLOCK_MAX)
        return kd_err_set(e, KD_ECONFIG, "block %d is outside [1, %d]", s->block,
                          COMPRESS_BLOCK_MAX);
    for (int j = 0; j < s->noverrides; j++) {
        const compress_override *o = &s->overrides[j];
        if (bad_sparsity(o->sparsity))
            return kd_err_set(e, KD_ECONFIG, "override \"%s\": sparsity %g is outside [0, 1)",
                              o->pattern, (double)o->sparsity);
        int hit = 0;
        for (int i = 0; i < m->nlayers && !hit; i++)
            hit = compress_is_prunable(&m->layers[i]) && matches(o, &m->layers[i]);
        if (!hit)
            return kd_err_set(e, KD_ECONFIG, "override \"%s\" matches no prunable layer",
                              o->pattern);
    }
    return KD_OK;
}

/* ---- masks ------------------------------------------------------------------ */
/* A mask of n entries, keep unset; NULL (e set) when out of memory. */
static compress_mask *mask_alloc(size_t n, kd_err *e)
{
    compress_mask *k = kd_calloc(1, sizeof *k);
    if (k && !(k->keep = kd_malloc(n ? n : 1))) {
        kd_free(k);
        k = NULL;
    }
    if (!k) {
        kd_err_set(e, KD_ENOMEM, "out of memory for a mask");
        return NULL;
    }
    k->n = n;
    return k;
}

compress_mask *compress_mask_new(const nn_model *m, kd_err *e)
{
    compress_mask *k = mask_alloc(m->nparams, e);
    if (k)
        memset(k->keep, 1, k->n);
    return k;
}

compress_mask *compress_mask_copy(const compress_mask *k, kd_err *e)
{
    compress_mask *c = mask_alloc(k->n, e);
    if (c)
        memcpy(c->keep, k->keep, k->n);
    return c;
}

void compress_mask_free(compress_mask *k)
{
    if (!k)
        return;
    kd_free(k->keep);
    kd_free(k);
}

void compress_mask_apply(const compress_mask *k, nn_model *m)
{
    size_t n = k->n < m->nparams ? k->n : m->nparams;
    /* a select, not a branch: vectorizes (it runs after every step) */
    for (size_t i = 0; i < n; i++)
        m->params[i] = k->keep[i] ? m->params[i] : 0.0f;
}

/* ---- selection -------------------------------------------------------------- */
/* The k-th smallest (0-based) of a[0..n), which it reorders.  Hoare
 * partition around a median of three; expected O(n). */
static float select_kth(float *a, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        float x = a[lo], y = a[mid], z = a[hi];
        float p = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        size_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < p)
                i++;
            while (a[j] > p)
                j--;
            if (i <= j) {
                float t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                if (j == 0)
                    break;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return a[k];
    }
    return a[k];
}

/* A layer's prunable weights: params[off .. off + n), rows x cols row-major
 * (a row is one output unit). */
typedef struct {
    size_t off, n;
    int rows, cols;
} segment;

static segment segment_of(const nn_model *m, const nn_layer *l)
{
    int rows = l->nb > 0 ? (int)l->nb : 1;
    return (segment){(size_t)(l->w - m->params), l->nw, rows, (int)(l->nw / (size_t)rows)};
}

/* ---- blocks: `block` consecutive rows of one column pruned together ------- */
/* Block j of segment sg (row-blocks outer, columns inner; block 1: weight
 * j): its first parameter and its height (the last row-block may be
 * shorter). */
static size_t block_at(const segment *sg, int block, size_t j, int *height)
{
    if (block == 1) {
        *height = 1;
        return sg->off + j;
    }
    int rb = (int)(j / (size_t)sg->cols), c = (int)(j % (size_t)sg->cols), r0 = rb * block;
    *height = sg->rows - r0 < block ? sg->rows - r0 : block;
    return sg->off + (size_t)r0 * sg->cols + (size_t)c;
}

static size_t nblocks_of(const segment *sg, int block)
{
    return block == 1 ? sg->n : (size_t)((sg->rows + block - 1) / block) * (size_t)sg->cols;
}

/* Block j's score: |w| for single weights, the root mean square of a block
 * (blocks of every height compare). */
static float block_score(const nn_model *m, const segment *sg, int block, size_t j)
{
    int h;
    size_t at = block_at(sg, block, j, &h);
    if (h == 1)
        return fabsf(m->params[at]);
    double sum = 0;
    for (int r = 0; r < h; r++) {
        double v = m->params[at + (size_t)r * sg->cols];
        sum += v * v;
    }
    return (float)sqrt(sum / h);
}

/* Zeroes exactly round(s * blocks) whole blocks of the segments with the
 * smallest scores (ties in position order; block 1: single weights) and
 * marks them in keep (may be NULL). */
static int prune_segments(nn_model *m, const segment *sg, int nsg, double sparsity, int block,
                          uint8_t *keep, kd_err *e)
{
    size_t n = 0, at = 0;
    for (int s = 0; s < nsg; s++)
        n += nblocks_of(&sg[s], block);
    size_t k = (size_t)floor(sparsity * (double)n + 0.5);
    if (k == 0 || n == 0)
        return KD_OK;
    float *score = kd_malloc(n * sizeof *score);
    if (!score)
        return kd_err_set(e, KD_ENOMEM, "out of memory for pruning");
    for (int s = 0; s < nsg; s++)
        for (size_t j = 0; j < nblocks_of(&sg[s], block); j++)
            score[at++] = block_score(m, &sg[s], block, j);
    float thr = select_kth(score, n, k - 1);
    size_t below = 0;
    for (int s = 0; s < nsg; s++)
        for (size_t j = 0; j < nblocks_of(&sg[s], block); j++)
            below += block_score(m, &sg[s], block, j) < thr;
    size_t ties = k - below; /* pruned at exactly thr, in position order */
    for (int s = 0; s < nsg; s++)
        for (size_t j = 0; j < nblocks_of(&sg[s], block); j++) {
            float a = block_score(m, &sg[s], block, j);
            if (!(a < thr || (a == thr && ties > 0 && ties--)))
                continue;
            int h;
            size_t p = block_at(&sg[s], block, j, &h);
            for (int r = 0; r < h; r++, p += (size_t)sg[s].cols) {
                m->params[p] = 0.0f;
                if (keep)
                    keep[p] = 0;
            }
        }
    kd_free(score);
    return KD_OK;
}

int compress_prune_magnitude(nn_model *m, const compress_prune_spec *s, compress_mask *mask,
                             kd_err *e)
{
    int rc = compress_prune_check(m, s, e);
    if (rc != KD_OK)
        return rc;
    if (mask && mask->n != m->nparams)
        return kd_err_set(e, KD_ERUNTIME, "the mask is for another model");
    segment *pool = kd_malloc((size_t)m->nlayers * sizeof *pool);
    if (!pool)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    if (mask)
        memset(mask->keep, 1, mask->n);
    int npool = 0, block = s->block > 1 ? s->block : 1;
    for (int i = 0; i < m->nlayers && rc == KD_OK; i++) {
        const nn_layer *l = &m->layers[i];
        if (!compress_is_prunable(l))
            continue;
        segment sg = segment_of(m, l);
        if (s->scope == COMPRESS_GLOBAL && !override_of(m, s, i))
            pool[npool++] = sg;
        else
            rc = prune_segments(m, &sg, 1, compress_layer_sparsity(m, s, i), block,
                                mask ? mask->keep : NULL, e);
    }
    if (rc == KD_OK && npool)
        rc = prune_segments(m, pool, npool, s->sparsity, block, mask ? mask->keep : NULL, e);
    kd_free(pool);
    return rc;
}
