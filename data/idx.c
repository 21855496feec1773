/* IDX reader (the MNIST / Fashion-MNIST format), raw or gzip.
 *
 * An IDX file is a big-endian u32 magic (0x0000TTDD: type TT, DD dimensions),
 * DD big-endian u32 sizes, then the elements.  We accept only unsigned bytes
 * (TT = 0x08): images with dims (n, h, w) and labels with dims (n).
 *
 * A file that starts with the gzip magic (1f 8b) is inflated as exactly one
 * gzip member: the stream must end properly (zlib then has verified the
 * CRC32 and ISIZE trailer), and nothing may follow it -- a second member or
 * junk is refused rather than read or ignored (zlib's gzread would do
 * either silently).  Any other file is read raw.  A header is never
 * trusted with memory: the pixel buffer grows as data actually arrives, and a
 * raw file is compared with its size on disk before anything is allocated. */
#include "data.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_LABELS 0x00000801u
#define IDX_MAX_SIDE 4096u
#define IDX_MAX_BYTES ((uint64_t)1 << 32) /* pixels in one file: 4 GiB */
#define IDX_FIRST_CHUNK ((size_t)1 << 16)
#define IDX_IN_BYTES ((size_t)1 << 16)    /* file bytes read at a time */
#define IDX_CHUNK_MAX ((size_t)1 << 30)   /* inflate takes an unsigned count */

/* One open IDX file: header parsed, positioned at the first element. */
typedef struct {
    const char *path;
    FILE *fp;
    int gz;        /* 1: inflating a gzip member */
    int zinit;     /* z is initialised (inflateEnd owed) */
    int zend;      /* the member ended: trailer verified, nothing after it */
    z_stream z;
    uint8_t *in;   /* IDX_IN_BYTES of file bytes: z's input, or raw bytes */
    size_t in_pos, in_len; /* raw: the unread part of in */
    uint32_t dims[3];
    uint64_t body; /* element bytes the header promises */
} idx_file;

/* ---- reading ------------------------------------------------------------- */

static int idx_io_error(idx_file *f, kd_err *e)
{
    return kd_err_at(e, KD_EIO, f->path, 0, 0, "read error: %s", strerror(errno));
}

/* Raw: the buffered bytes first, then the file. */
static int idx_read_raw(idx_file *f, uint8_t *dst, size_t n, size_t *got, kd_err *e)
{
    size_t b = f->in_len - f->in_pos < n ? f->in_len - f->in_pos : n;
    memcpy(dst, f->in + f->in_pos, b);
    f->in_pos += b;
    *got = b;
    if (b < n) {
        *got += fread(dst + b, 1, n - b, f->fp);
        if (ferror(f->fp))
            return idx_io_error(f, e);
    }
    return KD_OK;
}

/* At the end of the member: nothing may follow, neither unread input nor
 * more bytes in the file. */
static int idx_gz_tail(idx_file *f, kd_err *e)
{
    f->zend = 1;
    uint8_t one;
    if (f->z.avail_in == 0 && fread(&one, 1, 1, f->fp) == 0)
        return ferror(f->fp) ? idx_io_error(f, e) : KD_OK;
    return kd_err_at(e, KD_EFORMAT, f->path, 0, 0,
                     "bytes after the end of the gzip stream (junk or a second member; "
                     "only a single gzip member is accepted)");
}

/* gzip: inflates into dst until it is full or the member ends. */
static int idx_read_gz(idx_file *f, uint8_t *dst, size_t n, size_t *got, kd_err *e)
{
    f->z.next_out = dst;
    f->z.avail_out = (uInt)n;
    while (f->z.avail_out && !f->zend) {
        if (f->z.avail_in == 0) {
            size_t r = fread(f->in, 1, IDX_IN_BYTES, f->fp);
            if (ferror(f->fp))
                return idx_io_error(f, e);
            if (r == 0)
                return kd_err_at(e, KD_EFORMAT, f->path, 0, 0,
                                 "truncated gzip stream: it ends before its data or its "
                                 "CRC/size trailer");
            f->z.next_in = f->in;
            f->z.avail_in = (uInt)r;
        }
        int rc = inflate(&f->z, Z_NO_FLUSH);
        if (rc == Z_STREAM_END) {
            int trc = idx_gz_tail(f, e);
            if (trc != KD_OK)
                return trc;
        } else if (rc == Z_MEM_ERROR) {
            return kd_err_at(e, KD_ENOMEM, f->path, 0, 0, "out of memory");
        } else if (rc != Z_OK && !(rc == Z_BUF_ERROR && f->z.avail_in == 0)) {
            return kd_err_at(e, KD_EFORMAT, f->path, 0, 0, "corrupt gzip data: %s",
                             f->z.msg ? f->z.msg : "bad stream");
        }
    }
    *got = n - f->z.avail_out;
    return KD_OK;
}

/* Reads up to n bytes; *got is the count (short only at the end of the data:
 * a gzip stream cut short or followed by anything is an error here). */
static int idx_read(idx_file *f, void *dst, size_t n, size_t *got, kd_err *e)
{
    *got = 0;
    while (*got < n) {
        size_t want = n - *got > IDX_CHUNK_MAX ? IDX_CHUNK_MAX : n - *got, r = 0;
        uint8_t *to = (uint8_t *)dst + *got;
        int rc = f->gz ? idx_read_gz(f, to, want, &r, e) : idx_read_raw(f, to, want, &r, e);
        if (rc != KD_OK)
            return rc;
        if (r == 0)
            break;
        *got += r;
    }
    return KD_OK;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- header -------------------------------------------------------------- */

static int idx_check_magic(const char *path, uint32_t magic, uint32_t want, kd_err *e)
{
    if (magic == want)
        return KD_OK;
    const char *what = want == IDX_MAGIC_IMAGES ? "images" : "labels";
    if (magic == IDX_MAGIC_IMAGES || magic == IDX_MAGIC_LABELS)
        return kd_err_at(e, KD_EFORMAT, path, 0, 0,
                         "this is an IDX %s file, expected %s (are the two paths swapped?)",
                         magic == IDX_MAGIC_IMAGES ? "images" : "labels", what);
    if ((magic >> 16) == 0 && ((magic >> 8) & 0xff) != 0x08)
        return kd_err_at(e, KD_EFORMAT, path, 0, 0,
                         "IDX element type 0x%02x is not supported (only unsigned bytes)",
                         (unsigned)((magic >> 8) & 0xff));
    return kd_err_at(e, KD_EFORMAT, path, 0, 0,
                     "bad magic 0x%08x: not an IDX %s file (expected 0x%08x)", (unsigned)magic,
                     what, (unsigned)want);
}

/* Checks the sizes in the header and sets f->body. */
static int idx_check_dims(idx_file *f, int ndims, kd_err *e)
{
    const uint32_t *d = f->dims;
    if (d[0] == 0)
        return kd_err_at(e, KD_EFORMAT, f->path, 0, 0, "header says 0 samples");
    if (d[0] > (uint32_t)INT32_MAX)
        return kd_err_at(e, KD_EFORMAT, f->path, 0, 0, "header says %u samples: too many",
                         (unsigned)d[0]);
    f->body = d[0];
    if (ndims == 1)
        return KD_OK;
    if (d[1] < 1 || d[1] > IDX_MAX_SIDE || d[2] < 1 || d[2] > IDX_MAX_SIDE)
        return kd_err_at(e, KD_EFORMAT, f->path, 0, 0,
                         "image size %ux%u in the header is out of range 1..%u",
                         (unsigned)d[1], (unsigned)d[2], IDX_MAX_SIDE);
    f->body = (uint64_t)d[0] * d[1] * d[2]; /* < 2^55: cannot overflow */
    if (f->body > IDX_MAX_BYTES)
        return kd_err_at(e, KD_EFORMAT, f->path, 0, 0,
                         "header says %u images of %ux%u (%llu bytes): more than the %llu "
                         "we accept",
                         (unsigned)d[0], (unsigned)d[1], (unsigned)d[2],
                         (unsigned long long)f->body, (unsigned long long)IDX_MAX_BYTES);
    return KD_OK;
}

/* A raw file's size is known up front: refuse a lying header before any allocation. */
static int idx_check_raw_size(idx_file *f, uint64_t header, kd_err *e)
{
    if (f->gz)
        return KD_OK;
    long long size = kd_file_size(f->path);
    if (size < 0)
        return KD_OK; /* not a regular file (a pipe): the streaming checks still apply */
    uint64_t want = header + f->body;
    if ((uint64_t)size < want)
        return kd_err_at(e, KD_EFORMAT, f->path, 0, 0,
                         "truncated: the header promises %llu bytes of data, the file has %llu",
                         (unsigned long long)f->body, (unsigned long long)(size - header));
    if ((uint64_t)size > want)
        return kd_err_at(e, KD_EFORMAT, f->path, 0, 0,
                         "longer than header says: %llu bytes of data expected, the file has %llu",
                         (unsigned long long)f->body, (unsigned long long)(size - header));
    return KD_OK;
}

/* Opens path, raw or gzip by its first two bytes. */
static int idx_start(idx_file *f, const char *path, kd_err *e)
{
    errno = 0;
    f->fp = fopen(path, "rb");
    if (!f->fp)
        return kd_err_at(e, KD_EIO, path, 0, 0, "cannot open: %s", strerror(errno));
    if (!(f->in = kd_malloc(IDX_IN_BYTES)))
        return kd_err_at(e, KD_ENOMEM, path, 0, 0, "out of memory");
    f->in_len = fread(f->in, 1, IDX_IN_BYTES, f->fp);
    if (ferror(f->fp))
        return idx_io_error(f, e);
    if (f->in_len < 2 || f->in[0] != 0x1f || f->in[1] != 0x8b)
        return KD_OK;
    f->gz = 1;
    f->z.next_in = f->in;
    f->z.avail_in = (uInt)f->in_len;
    int rc = inflateInit2(&f->z, 16 + MAX_WBITS); /* gzip only */
    if (rc != Z_OK)
        return kd_err_at(e, rc == Z_MEM_ERROR ? KD_ENOMEM : KD_EFORMAT, path, 0, 0,
                         "cannot start inflating: %s", f->z.msg ? f->z.msg : "zlib error");
    f->zinit = 1;
    return KD_OK;
}

/* Opens path and reads its header, expecting magic want. */
static int idx_open(idx_file *f, const char *path, uint32_t want, kd_err *e)
{
    memset(f, 0, sizeof *f);
    f->path = path;
    int rc = idx_start(f, path, e);
    if (rc != KD_OK)
        return rc;
    const int ndims = (int)(want & 0xff);
    uint8_t h[16];
    const size_t hlen = 4 + 4 * (size_t)ndims;
    size_t got;
    if ((rc = idx_read(f, h, hlen, &got, e)) != KD_OK)
        return rc;
    if (got == 0)
        return kd_err_at(e, KD_EFORMAT, path, 0, 0, "empty file");
    if (got >= 4 && (rc = idx_check_magic(path, be32(h), want, e)) != KD_OK)
        return rc;
    if (got < hlen)
        return kd_err_at(e, KD_EFORMAT, path, 0, 0,
                         "truncated: %zu bytes, too short for the %zu-byte IDX header", got,
                         hlen);
    for (int i = 0; i < ndims; i++)
        f->dims[i] = be32(h + 4 + 4 * i);
    if ((rc = idx_check_dims(f, ndims, e)) != KD_OK)
        return rc;
    return idx_check_raw_size(f, hlen, e);
}

static void idx_close(idx_file *f)
{
    if (f->zinit)
        inflateEnd(&f->z);
    if (f->fp)
        fclose(f->fp);
    kd_free(f->in);
    f->zinit = 0;
    f->fp = NULL;
    f->in = NULL;
}

/* ---- body ---------------------------------------------------------------- */

static int idx_short(idx_file *f, uint64_t got, kd_err *e)
{
    return kd_err_at(e, KD_EFORMAT, f->path, 0, 0,
                     "truncated: the header promises %llu bytes of data, found only %llu",
                     (unsigned long long)f->body, (unsigned long long)got);
}

/* Reads and drops the bytes after the kept ones, then checks nothing follows. */
static int idx_skip_rest(idx_file *f, uint64_t got, kd_err *e)
{
    uint8_t tmp[1 << 14];
    while (got < f->body) {
        size_t want = f->body - got < sizeof tmp ? (size_t)(f->body - got) : sizeof tmp, r;
        int rc = idx_read(f, tmp, want, &r, e);
        if (rc != KD_OK)
            return rc;
        if (r == 0)
            return idx_short(f, got, e);
        got += r;
    }
    size_t extra;
    int rc = idx_read(f, tmp, 1, &extra, e);
    if (rc != KD_OK)
        return rc;
    if (extra)
        return kd_err_at(e, KD_EFORMAT, f->path, 0, 0,
                         "longer than header says: data continues after %llu bytes",
                         (unsigned long long)f->body);
    return KD_OK;
}

/* Reads the whole body into a new buffer (*out) holding its first keep bytes.
 * The buffer doubles as data arrives, so a lying header costs at most about
 * twice the bytes really present. */
static int idx_read_body(idx_file *f, size_t keep, uint8_t **out, kd_err *e)
{
    *out = NULL;
    size_t cap = keep < IDX_FIRST_CHUNK ? keep : IDX_FIRST_CHUNK, got = 0;
    uint8_t *b = kd_malloc(cap);
    if (!b)
        return kd_err_at(e, KD_ENOMEM, f->path, 0, 0, "out of memory");
    while (got < keep) {
        if (got == cap) {
            size_t ncap = cap > keep / 2 ? keep : cap * 2;
            uint8_t *nb = kd_realloc(b, ncap);
            if (!nb) {
                kd_free(b);
                return kd_err_at(e, KD_ENOMEM, f->path, 0, 0, "out of memory");
            }
            b = nb;
            cap = ncap;
        }
        size_t r;
        int rc = idx_read(f, b + got, cap - got, &r, e);
        if (rc == KD_OK && r == 0)
            rc = idx_short(f, got, e);
        if (rc != KD_OK) {
            kd_free(b);
            return rc;
        }
        got += r;
    }
    int rc = idx_skip_rest(f, got, e);
    if (rc != KD_OK) {
        kd_free(b);
        return rc;
    }
    *out = b;
    return KD_OK;
}

/* ---- the pair ------------------------------------------------------------ */

/* max label + 1, at least 2 (labels are bytes, so always < 256) */
static int idx_count_classes(const uint8_t *y, size_t n)
{
    int max = 0;
    for (size_t i = 0; i < n; i++)
        max = y[i] > max ? y[i] : max;
    return max + 1 < 2 ? 2 : max + 1;
}

static int idx_load_bodies(idx_file *im, idx_file *lb, int keep, data_set *out, kd_err *e)
{
    const size_t px = (size_t)im->dims[1] * im->dims[2];
    int rc = idx_read_body(im, (size_t)keep * px, &out->x8, e);
    if (rc != KD_OK)
        return rc;
    uint8_t *y;
    if ((rc = idx_read_body(lb, lb->dims[0], &y, e)) != KD_OK)
        return rc;
    /* classes over the whole file, so a subset still gets the full label range */
    out->nclasses = idx_count_classes(y, lb->dims[0]);
    out->y = y;
    if ((uint32_t)keep < lb->dims[0]) {
        uint8_t *ny = kd_realloc(y, (size_t)keep);
        if (ny) /* shrinking: keeping the larger block is harmless */
            out->y = ny;
    }
    out->n = keep;
    out->shape = (nn_shape){1, (int)im->dims[1], (int)im->dims[2]};
    return KD_OK;
}

int data_idx_load(const char *images, const char *labels, int max_n, data_set *out, kd_err *e)
{
    memset(out, 0, sizeof *out);
    idx_file im, lb;
    int rc = idx_open(&im, images, IDX_MAGIC_IMAGES, e);
    if (rc == KD_OK)
        rc = idx_open(&lb, labels, IDX_MAGIC_LABELS, e);
    else
        memset(&lb, 0, sizeof lb);
    if (rc == KD_OK && im.dims[0] != lb.dims[0])
        rc = kd_err_at(e, KD_EFORMAT, labels, 0, 0, "has %u labels but %s has %u images",
                       (unsigned)lb.dims[0], images, (unsigned)im.dims[0]);
    if (rc == KD_OK) {
        int keep = max_n > 0 && (uint32_t)max_n < im.dims[0] ? max_n : (int)im.dims[0];
        rc = idx_load_bodies(&im, &lb, keep, out, e);
    }
    idx_close(&im);
    idx_close(&lb);
    if (rc != KD_OK)
        data_set_free(out);
    return rc;
}

int data_idx_peek(const char *images, const char *labels, int max_n, data_set *out, kd_err *e)
{
    memset(out, 0, sizeof *out);
    idx_file im, lb;
    uint8_t *y = NULL;
    int rc = idx_open(&im, images, IDX_MAGIC_IMAGES, e);
    if (rc == KD_OK)
        rc = idx_open(&lb, labels, IDX_MAGIC_LABELS, e);
    else
        memset(&lb, 0, sizeof lb);
    if (rc == KD_OK && im.dims[0] != lb.dims[0])
        rc = kd_err_at(e, KD_EFORMAT, labels, 0, 0, "has %u labels but %s has %u images",
                       (unsigned)lb.dims[0], images, (unsigned)im.dims[0]);
    if (rc == KD_OK && (rc = idx_read_body(&lb, lb.dims[0], &y, e)) == KD_OK) {
        out->n = max_n > 0 && (uint32_t)max_n < im.dims[0] ? max_n : (int)im.dims[0];
        out->nclasses = idx_count_classes(y, lb.dims[0]);
        out->shape = (nn_shape){1, (int)im.dims[1], (int)im.dims[2]};
    }
    kd_free(y);
    idx_close(&im);
    idx_close(&lb);
    return rc;
}
