/* dense_csr_shared (format "csr-shared+huff") and dense_csr_shared_raw
 * (format "csr-shared", Deep Compression's step before Huffman coding, so
 * that each rung of the ladder is a file of its own): a pruned layer whose kept
 * weights share a small codebook (Deep Compression's weight sharing), stored
 * as the codebook plus two entropy-coded byte streams: the structure (per row
 * its count, then the column gaps) and one codebook index per non-zero.
 * In memory it is a plain CSR whose values are codebook entries, so it runs
 * on dense_csr's kernels (decoded at load); the codebook is the set of
 * distinct values, recovered when saving.
 *
 * Payload: u32 rows, cols, nnz, k (codebook entries, 0 when nnz = 0); k
 * f32 entries, ascending and distinct; u32 structure bytes; the structure
 * stream and the index stream, each as entropy_encode writes it (u32 raw
 * and coded lengths, zlib Huffman-only).  Structure:
 * per row a LEB128 count, then per non-zero its gap to the previous column
 * (the first from -1) minus 1, as bytes of 255 while it is >= 255 and one
 * final byte < 255.  The raw kind stores the structure bytes as they are
 * (u32 length, bytes) and the indices bit-packed at ceil(log2 k) bits each,
 * least significant bit first (ceil(nnz * bits / 8) bytes, 0 bits for k = 1). */
#include <math.h>
#include <string.h>

#include "internal.h"

/* The distinct values of a, ascending, into book (at most CLUSTER_MAX); the
 * count, or -1 when there are more. */
static int codebook_of(const compress_csr *a, float *book)
{
    if (!a || a->nnz == 0)
        return 0;
    float *s = kd_malloc((size_t)a->nnz * sizeof *s);
    if (!s)
        return -1;
    memcpy(s, a->val, (size_t)a->nnz * sizeof *s);
    int k = cluster_distinct(s, a->nnz, CLUSTER_MAX, book);
    kd_free(s);
    return k > 0 ? k : -1;
}

/* The structure (kcsr_structure_put, rows one by one) and the index of
 * each non-zero's codebook entry. */
static int streams(const compress_csr *a, const float *book, int k, kd_buf *st, uint8_t *idx)
{
    for (uint32_t j = 0; j < a->nnz; j++)
        idx[j] = (uint8_t)cluster_nearest(a->val[j], book, k);
    return kcsr_structure_put(a, 1, st);
}

static int is_raw(const nn_layer *l) { return l->ops == &compress_dense_csr_shared_raw_ops; }

/* Bits per raw index for a k-entry codebook. */
static int index_bits(uint32_t k)
{
    int b = 0;
    while ((1u << b) < k)
        b++;
    return b;
}

static void put_stream(kd_buf *b, int raw, const uint8_t *src, size_t n)
{
    if (!raw) {
        entropy_encode(b, src, n);
        return;
    }
    kd_buf_u32(b, (uint32_t)n);
    kd_buf_put(b, src, n);
}

/* n indices of `bits` bits each, packed LSB first. */
static void put_indices(kd_buf *b, int raw, const uint8_t *idx, size_t n, int bits)
{
    if (!raw) {
        entropy_encode(b, idx, n);
        return;
    }
    size_t nbytes = (n * (size_t)bits + 7) / 8;
    uint8_t *p = kd_calloc(nbytes ? nbytes : 1, 1);
    if (!p) {
        b->failed = 1;
        return;
    }
    for (size_t i = 0; i < n; i++)
        for (int t = 0; t < bits; t++)
            p[(i * bits + t) / 8] |= (uint8_t)((idx[i] >> t & 1) << ((i * bits + t) % 8));
    kd_buf_put(b, p, nbytes);
    kd_free(p);
}

static int get_stream(kd_rd *r, int raw, uint8_t *dst, size_t n, const char *what, kd_err *e)
{
    if (!raw)
        return entropy_decode(r, dst, n, what, e);
    uint32_t len = kd_rd_u32(r);
    if (!r->ok || len != n || n > r->len - r->pos)
        return kd_err_set(e, KD_EFORMAT, "%s bytes: %u declared, %zu expected, %zu left", what,
                          len, n, r->ok ? r->len - r->pos : 0);
    kd_rd_get(r, dst, n);
    return KD_OK;
}

static int get_indices(kd_rd *r, int raw, uint8_t *idx, size_t n, int bits, kd_err *e)
{
    if (!raw)
        return entropy_decode(r, idx, n, "index", e);
    size_t nbytes = (n * (size_t)bits + 7) / 8;
    if (nbytes > r->len - r->pos)
        return kd_err_set(e, KD_EFORMAT, "index bits cut: %zu bytes, %zu left", nbytes,
                          r->len - r->pos);
    const uint8_t *p = r->p + r->pos;
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        for (int t = 0; t < bits; t++)
            v |= (unsigned)(p[(i * bits + t) / 8] >> ((i * bits + t) % 8) & 1) << t;
        idx[i] = (uint8_t)v;
    }
    size_t used = n * (size_t)bits;
    if (used % 8 && p[nbytes - 1] >> (used % 8))
        return kd_err_set(e, KD_EFORMAT, "index bits: non-zero padding");
    r->pos += nbytes;
    return KD_OK;
}

/* save cannot fail in nn's interface: a layer whose values are not a codebook
 * (never made by compress_cluster) is written with k = 0 and nnz = 0, which
 * loads as an empty layer -- the buffer's failure flag reports no memory. */
static void shared_save(const nn_layer *l, kd_buf *b)
{
    const compress_csr *a = l->data;
    float book[CLUSTER_MAX];
    int k = codebook_of(a, book);
    kd_buf st = {0};
    uint8_t *idx = a && a->nnz ? kd_malloc(a->nnz) : NULL;
    int ok = k > 0 && idx && streams(a, book, k, &st, idx) == KD_OK;
    kd_buf_u32(b, (uint32_t)l->spec.units);
    kd_buf_u32(b, (uint32_t)nn_shape_size(l->in));
    kd_buf_u32(b, ok ? a->nnz : 0);
    kd_buf_u32(b, ok ? (uint32_t)k : 0);
    if (ok) {
        kd_buf_put(b, book, (size_t)k * sizeof *book);
        kd_buf_u32(b, (uint32_t)st.len);
        put_stream(b, is_raw(l), st.p, st.len);
        put_indices(b, is_raw(l), idx, a->nnz, index_bits((uint32_t)k));
    } else {
        kd_buf_u32(b, 0);
        put_stream(b, is_raw(l), NULL, 0);
        put_indices(b, is_raw(l), NULL, 0, 0);
        if (a && a->nnz)
            b->failed = 1; /* values that are no codebook, or no memory */
    }
    kd_buf_free(&st);
    kd_free(idx);
}

/* Rebuilds the CSR from the decoded streams, checking every count, gap
 * and index. */
static int rebuild(compress_csr *a, const uint8_t *st, size_t nst, const uint8_t *idx,
                   const float *book, int k, kd_err *e)
{
    int rc = kcsr_structure_get(a, 1, st, nst, e);
    if (rc != KD_OK) {
        kd_err_prefix(e, "shared layer");
        return rc;
    }
    for (uint32_t j = 0; j < a->nnz; j++) {
        if (idx[j] >= k)
            return kd_err_set(e, KD_EFORMAT, "shared layer: index %u past the %d-entry codebook",
                              idx[j], k);
        a->val[j] = book[idx[j]];
    }
    return KD_OK;
}

static int shared_load(nn_layer *l, kd_rd *r, kd_err *e)
{
    uint32_t rows = kd_rd_u32(r), cols = kd_rd_u32(r), nnz = kd_rd_u32(r), k = kd_rd_u32(r);
    if (!r->ok)
        return kd_err_set(e, KD_EFORMAT, "truncated shared-weights header");
    if (rows != (uint32_t)l->spec.units || cols != nn_shape_size(l->in) ||
        (uint64_t)nnz > (uint64_t)rows * cols || k > CLUSTER_MAX || (nnz > 0) != (k > 0))
        return kd_err_set(e, KD_EFORMAT, "shared-weights header (%u x %u, %u non-zeros, %u "
                          "codebook entries) does not match the layer", rows, cols, nnz, k);
    float book[CLUSTER_MAX];
    kd_rd_get(r, book, (size_t)k * sizeof *book);
    uint32_t nst = kd_rd_u32(r);
    if (!r->ok)
        return kd_err_set(e, KD_EFORMAT, "truncated codebook");
    for (uint32_t i = 0; i < k; i++)
        if (!isfinite(book[i]) || (i > 0 && !(book[i] > book[i - 1])))
            return kd_err_set(e, KD_EFORMAT, "codebook entry %u is not finite or not ascending", i);
    /* a row's count takes at most 5 bytes; a gap at most 1 + cols / 255 */
    if ((uint64_t)nst > (uint64_t)rows * 5 + (uint64_t)nnz * (1 + cols / 255))
        return kd_err_set(e, KD_EFORMAT, "shared layer: %u structure bytes for %u non-zeros",
                          nst, nnz);
    uint8_t *st = kd_malloc(nst ? nst : 1), *idx = kd_malloc(nnz ? nnz : 1);
    compress_csr *a = compress_csr_alloc((int)rows, (int)cols, nnz, e);
    int rc = st && idx && a ? KD_OK : KD_ENOMEM;
    if (rc == KD_ENOMEM && (!st || !idx))
        kd_err_set(e, KD_ENOMEM, "out of memory for a shared layer of %u non-zeros", nnz);
    if (rc == KD_OK && ((rc = get_stream(r, is_raw(l), st, nst, "structure", e)) != KD_OK ||
                        (rc = get_indices(r, is_raw(l), idx, nnz, index_bits(k), e)) != KD_OK))
        kd_err_prefix(e, "shared layer");
    if (rc == KD_OK && r->pos != r->len)
        rc = kd_err_set(e, KD_EFORMAT, "shared layer: %zu bytes after the streams",
                        r->len - r->pos);
    if (rc == KD_OK)
        rc = rebuild(a, st, nst, idx, book, (int)k, e);
    kd_free(st);
    kd_free(idx);
    if (rc != KD_OK) {
        compress_csr_free(a);
        return rc;
    }
    compress_csr_free(l->data);
    l->data = a;
    return KD_OK;
}

#define SHARED_OPS(NAME, FORMAT)                                                               \
    {                                                                                          \
        .name = NAME, .setup = kcsr_setup, .reserve = kcsr_reserve, .release = kcsr_release,   \
        .forward = kcsr_forward, .threaded = 1, .fuses_relu = 1, .backward = kcsr_backward,   \
        .macs = kcsr_macs,                                                                     \
        .format = FORMAT, .weight_bits = 8, .sparse = 1, .dense_like = 1,                      \
        .dequant = kcsr_dequant, .save = shared_save, .load = shared_load, .copy = kcsr_copy,  \
        .destroy = kcsr_destroy, .count = kcsr_count,                                          \
    }

/* weight_bits 8: at most, indices of a codebook of <= 256 (fewer bits below that) */
const nn_layer_ops compress_dense_csr_shared_ops = SHARED_OPS("dense_csr_shared",
                                                              "csr-shared+huff");
const nn_layer_ops compress_dense_csr_shared_raw_ops = SHARED_OPS("dense_csr_shared_raw",
                                                                  "csr-shared");

int compress_shared_attach(nn_layer *l, compress_csr *a, kd_err *e)
{
    float book[CLUSTER_MAX];
    if (a && codebook_of(a, book) < 0) {
        compress_csr_free(a);
        return kd_err_set(e, KD_ECONFIG, "shared layer: more than %d distinct values",
                          CLUSTER_MAX);
    }
    kcsr_destroy(l);
    l->data = a;
    return KD_OK;
}
