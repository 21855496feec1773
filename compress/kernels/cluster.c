/* Weight sharing's two building blocks (Han, Mao & Dally, "Deep
 * Compression", ICLR 2016): one-dimensional k-means over a layer's weights,
 * and the entropy coding of the byte streams a shared layer is stored as.
 *
 * k-means in one dimension runs on the sorted values: the points nearest a
 * centroid are a contiguous run between two midpoints, found by binary
 * search, and each centroid moves to its run's mean (prefix sums in double),
 * so an iteration costs O(k log n), not O(n k).
 *
 * Entropy coding is zlib's deflate with strategy Z_HUFFMAN_ONLY: no LZ77
 * matching, only dynamic Huffman codes per block, which is what the paper
 * codes indices and gaps with (zlib is a dependency already; a hand-written
 * Huffman coder would only repeat it).  csr-int8's four streams and the
 * shared kind's two use the one coder here. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "internal.h"

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int cluster_distinct(float *v, size_t n, int k, float *book)
{
    qsort(v, n, sizeof *v, cmp_float);
    int nb = 0;
    for (size_t i = 0; i < n; i++)
        if (nb == 0 || v[i] != book[nb - 1]) {
            if (nb == k)
                return 0;
            book[nb++] = v[i];
        }
    return nb;
}

/* The first index of s[0..n) with s[i] >= v. */
static size_t lower_bound(const float *s, size_t n, double v)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void sort_centroids(double *c, int k)
{
    for (int a = 1; a < k; a++)
        for (int b = a; b > 0 && c[b - 1] > c[b]; b--) {
            double t = c[b];
            c[b] = c[b - 1];
            c[b - 1] = t;
        }
}

/* k-means++ seeding on sorted values (D^2 sampling, seeded). */
static void seed_pp(const float *s, size_t n, int k, uint64_t seed, double *c)
{
    nn_rng r = nn_rng_stream(seed, 0x636c7573u); /* "clus" */
    double *d2 = kd_malloc(n * sizeof *d2);
    c[0] = s[nn_rng_below(&r, (uint32_t)(n < UINT32_MAX ? n : UINT32_MAX))];
    for (int j = 1; j < k; j++) {
        double total = 0.0;
        for (size_t i = 0; i < n; i++) {
            double best = INFINITY;
            for (int t = 0; t < j; t++) {
                double d = (s[i] - c[t]) * (s[i] - c[t]);
                best = d < best ? d : best;
            }
            total += d2 ? (d2[i] = best) : best;
        }
        double u = nn_rng_uniform(&r) * total, acc = 0.0;
        size_t pick = n - 1;
        for (size_t i = 0; d2 && i < n; i++)
            if ((acc += d2[i]) >= u) {
                pick = i;
                break;
            }
        c[j] = s[pick];
    }
    kd_free(d2);
}

int cluster_kmeans_1d(const float *v, size_t n, int k, cluster_init init, uint64_t seed,
                      float *centroids, kd_err *e)
{
    if (k < 2 || k > CLUSTER_MAX || n == 0)
        return kd_err_set(e, KD_ECONFIG, "k-means: %d clusters of %zu values (need 2..%d, n > 0)",
                          k, n, CLUSTER_MAX);
    float *s = kd_malloc(n * sizeof *s);
    double *pre = kd_malloc((n + 1) * sizeof *pre), c[CLUSTER_MAX];
    if (!s || !pre) {
        kd_free(s);
        kd_free(pre);
        return kd_err_set(e, KD_ENOMEM, "k-means: out of memory for %zu values", n);
    }
    memcpy(s, v, n * sizeof *s);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(s[i])) {
            kd_free(s);
            kd_free(pre);
            return kd_err_set(e, KD_EFORMAT, "k-means: value %zu is not finite", i);
        }
    qsort(s, n, sizeof *s, cmp_float);
    pre[0] = 0.0;
    for (size_t i = 0; i < n; i++)
        pre[i + 1] = pre[i] + s[i];
    if (init == CLUSTER_INIT_LINEAR) /* evenly spaced over [min, max] (Han's best) */
        for (int j = 0; j < k; j++)
            c[j] = s[0] + (s[n - 1] - (double)s[0]) * (j + 0.5) / k;
    else if (init == CLUSTER_INIT_DENSITY) /* equal mass: quantiles */
        for (int j = 0; j < k; j++)
            c[j] = s[(size_t)((j + 0.5) / k * (double)(n - 1))];
    else
        seed_pp(s, n, k, seed, c);
    for (int it = 0; it < 100; it++) {
        sort_centroids(c, k); /* k-means++ picks come unordered; an empty one stays put */
        int moved = 0;
        size_t lo = 0;
        for (int j = 0; j < k; j++) {
            size_t hi = j + 1 < k ? lower_bound(s, n, 0.5 * (c[j] + c[j + 1])) : n;
            if (hi > lo) {
                double m = (pre[hi] - pre[lo]) / (double)(hi - lo);
                moved |= m != c[j];
                c[j] = m;
            }
            lo = hi;
        }
        if (!moved)
            break;
    }
    /* distinct centroids as floats, ascending; empty or merged ones dropped */
    sort_centroids(c, k);
    int out = 0;
    size_t lo = 0;
    for (int j = 0; j < k; j++) {
        size_t hi = j + 1 < k ? lower_bound(s, n, 0.5 * (c[j] + c[j + 1])) : n;
        float f = (float)c[j];
        if (hi > lo && (out == 0 || f != centroids[out - 1]))
            centroids[out++] = f;
        lo = hi > lo ? hi : lo;
    }
    kd_free(s);
    kd_free(pre);
    return out;
}

int cluster_nearest(float v, const float *c, int k)
{
    int lo = 0, hi = k - 1; /* c ascending: the last centroid <= v, then compare neighbours */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (c[mid] <= v)
            lo = mid;
        else
            hi = mid - 1;
    }
    if (lo + 1 < k && fabsf(c[lo + 1] - v) < fabsf(v - c[lo]))
        return lo + 1;
    return lo;
}

/* ---- entropy coding ------------------------------------------------------------ */

/* zlib allocates through kdbench's hook, so tests can fail it too. */
static voidpf ent_zalloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    return kd_calloc(items, size);
}

static void ent_zfree(voidpf opaque, voidpf p)
{
    (void)opaque;
    kd_free(p);
}

/* src deflated with `strategy` into a new buffer (*len bytes); NULL on no
 * memory (with a bound-sized output only memory can fail). */
static uint8_t *ent_deflate(const void *src, size_t n, int strategy, size_t *len)
{
    z_stream z = {.zalloc = ent_zalloc, .zfree = ent_zfree};
    if (deflateInit2(&z, 9, Z_DEFLATED, 15, 9, strategy) != Z_OK)
        return NULL;
    uLong cap = deflateBound(&z, (uLong)n);
    uint8_t *out = kd_malloc(cap);
    int rc = Z_MEM_ERROR;
    if (out) {
        z.next_in = (Bytef *)src;
        z.avail_in = (uInt)n;
        z.next_out = out;
        z.avail_out = (uInt)cap;
        rc = deflate(&z, Z_FINISH);
    }
    *len = z.total_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END) {
        kd_free(out);
        return NULL;
    }
    return out;
}

/* Huffman-only codes near-i.i.d. bytes smallest (the deltas and values of a
 * weight-by-weight pruned layer: LZ77 matches only add cost); Z_FILTERED's
 * matches pay where rows repeat -- rows pruned in blocks share their column
 * deltas: csr-int8 at 90% in blocks of 8, delta streams 139,280 -> 19,889
 * bytes.  Both are tried, the smaller kept; either inflates the same. */
void entropy_encode(kd_buf *b, const void *src, size_t n)
{
    if (b->failed)
        return;
    size_t lh = 0, lf = 0;
    uint8_t *h = ent_deflate(src, n, Z_HUFFMAN_ONLY, &lh);
    uint8_t *f = h ? ent_deflate(src, n, Z_FILTERED, &lf) : NULL;
    if (!f) {
        b->failed = 1;
    } else {
        kd_buf_u32(b, (uint32_t)n);
        kd_buf_u32(b, (uint32_t)(lf < lh ? lf : lh));
        kd_buf_put(b, lf < lh ? f : h, lf < lh ? lf : lh);
    }
    kd_free(h);
    kd_free(f);
}

int entropy_decode(kd_rd *r, void *dst, size_t n, const char *what, kd_err *e)
{
    uint32_t raw = kd_rd_u32(r), coded = kd_rd_u32(r);
    if (!r->ok)
        return kd_err_set(e, KD_EFORMAT, "truncated %s stream header", what);
    if (raw != n)
        return kd_err_set(e, KD_EFORMAT, "%s stream of %u bytes, %zu expected", what, raw, n);
    if (coded > r->len - r->pos)
        return kd_err_set(e, KD_EFORMAT, "%s stream of %u coded bytes, %zu left", what, coded,
                          r->len - r->pos);
    z_stream z = {.zalloc = ent_zalloc, .zfree = ent_zfree};
    if (inflateInit(&z) != Z_OK)
        return kd_err_set(e, KD_ENOMEM, "out of memory for the %s stream", what);
    uint8_t spare; /* zlib wants an output pointer even for 0 bytes */
    z.next_in = (Bytef *)(r->p + r->pos);
    z.avail_in = coded;
    z.next_out = n ? dst : &spare;
    z.avail_out = (uInt)n;
    int rc = inflate(&z, Z_FINISH);
    const char *zmsg = z.msg ? z.msg : "bad data";
    size_t left_in = z.avail_in, left_out = z.avail_out;
    inflateEnd(&z);
    if (rc == Z_MEM_ERROR)
        return kd_err_set(e, KD_ENOMEM, "out of memory for the %s stream", what);
    if (rc == Z_STREAM_END && left_out)
        return kd_err_set(e, KD_EFORMAT, "%s stream ends %zu bytes early", what, left_out);
    if (rc == Z_STREAM_END && left_in)
        return kd_err_set(e, KD_EFORMAT, "%zu stray bytes after the %s stream", left_in, what);
    if (rc == Z_DATA_ERROR || rc == Z_NEED_DICT)
        return kd_err_set(e, KD_EFORMAT, "corrupt %s stream (%s)", what, zmsg);
    if (rc != Z_STREAM_END)
        return kd_err_set(e, KD_EFORMAT, "%s stream %s", what,
                          left_out ? "truncated" : "longer than declared");
    r->pos += coded;
    return KD_OK;
}
