/* CSV reader: one sample per line, "label,f1,f2,...".  Blank lines (including
 * a trailing one) are skipped, CRLF and a leading UTF-8 BOM are accepted, and
 * a first line whose first field is not a number is a header.  Errors name FILE:LINE (and the column
 * of a bad field). */
#include "data.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CSV_MAX_FILE ((size_t)1 << 30)   /* 1 GiB of text: line numbers fit an int */
#define CSV_MAX_FLOATS ((size_t)1 << 30) /* features in one set (4 GiB) */

/* The parser's state: rows so far and the growing feature array. */
typedef struct {
    const char *path;
    int line;     /* 1-based number of the line being parsed */
    int nfeat;    /* features per row, from the first data row (0 = not yet) */
    int first;    /* line of the first data row */
    int n, cap;   /* rows stored, rows allocated */
    float *x;
    uint8_t *y;
    int maxlabel;
} csv_state;

static int is_blank(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return *s == 0;
}

static const char *skip_ws(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* The end of a field: after trailing blanks, a ',' or the end of the line. */
static int field_end(const char *s, const char **next)
{
    s = skip_ws(s);
    if (*s != ',' && *s != 0)
        return -1;
    *next = s;
    return 0;
}

static int csv_err(csv_state *st, const char *line, const char *at, kd_err *e, const char *what)
{
    int col = at ? (int)(at - line) + 1 : 0;
    return kd_err_at(e, KD_EFORMAT, st->path, st->line, col, "%s", what);
}

/* A label: a non-negative decimal integer below 256. */
static int parse_label(csv_state *st, const char *line, const char **p, int *label, kd_err *e)
{
    const char *s = skip_ws(*p), *end;
    int v = 0;
    for (end = s; *end >= '0' && *end <= '9'; end++) /* saturates: no overflow */
        v = v > 255 ? 256 : v * 10 + (*end - '0');
    if (end == s || field_end(end, &end) != 0)
        return csv_err(st, line, s, e, "label is not a non-negative integer");
    if (v > 255)
        return csv_err(st, line, s, e, "label is larger than 255");
    *label = v;
    *p = end;
    return KD_OK;
}

static int parse_float(csv_state *st, const char *line, const char **p, float *out, kd_err *e)
{
    const char *s = skip_ws(*p);
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    const char *next;
    if (end == s || field_end(end, &next) != 0)
        return csv_err(st, line, s, e, "feature is not a number");
    if (!isfinite(v))
        return csv_err(st, line, s, e,
                       errno == ERANGE ? "feature is out of float range"
                                       : "feature is NaN or infinite");
    *out = v;
    *p = next;
    return KD_OK;
}

/* Whether a line's first field parses as a number (else it is a header). */
static int starts_with_number(const char *s)
{
    s = skip_ws(s);
    char *end;
    strtod(s, &end);
    const char *next;
    return end != s && field_end(end, &next) == 0;
}

static int count_fields(const char *s)
{
    int n = 1;
    for (; *s; s++)
        n += *s == ',';
    return n;
}

/* Room for one more row. */
static int csv_grow(csv_state *st, kd_err *e)
{
    if (st->n < st->cap)
        return KD_OK;
    int ncap = st->cap ? st->cap * 2 : 1024;
    if ((size_t)ncap * (size_t)st->nfeat > CSV_MAX_FLOATS || ncap < st->cap)
        return kd_err_at(e, KD_EFORMAT, st->path, st->line, 0,
                         "too much data: more than %zu features in the file", CSV_MAX_FLOATS);
    float *x = kd_realloc(st->x, (size_t)ncap * (size_t)st->nfeat * sizeof *x);
    if (!x)
        return kd_err_at(e, KD_ENOMEM, st->path, st->line, 0, "out of memory");
    st->x = x;
    uint8_t *y = kd_realloc(st->y, (size_t)ncap);
    if (!y)
        return kd_err_at(e, KD_ENOMEM, st->path, st->line, 0, "out of memory");
    st->y = y;
    st->cap = ncap;
    return KD_OK;
}

/* Parses one non-blank, NUL-terminated line into the next row. */
static int csv_row(csv_state *st, const char *line, kd_err *e)
{
    int nf = count_fields(line) - 1;
    if (st->nfeat == 0) {
        if (nf < 1)
            return csv_err(st, line, NULL, e, "a row needs a label and at least one feature");
        st->nfeat = nf;
        st->first = st->line;
    } else if (nf != st->nfeat) {
        char msg[128];
        snprintf(msg, sizeof msg, "row has %d feature%s, line %d has %d", nf,
                 nf == 1 ? "" : "s", st->first, st->nfeat);
        return csv_err(st, line, NULL, e, msg);
    }
    int rc = csv_grow(st, e), label = 0;
    const char *p = line;
    if (rc != KD_OK || (rc = parse_label(st, line, &p, &label, e)) != KD_OK)
        return rc;
    float *x = st->x + (size_t)st->n * (size_t)st->nfeat;
    for (int j = 0; j < nf; j++) {
        p++; /* the comma */
        if ((rc = parse_float(st, line, &p, &x[j], e)) != KD_OK)
            return rc;
    }
    st->y[st->n++] = (uint8_t)label;
    st->maxlabel = label > st->maxlabel ? label : st->maxlabel;
    return KD_OK;
}

/* Splits buf (len bytes, writable) into lines and parses them.  A UTF-8
 * byte-order mark (as spreadsheet exports write) is dropped: left in place
 * it would make the first row read as a header. */
static int csv_parse(csv_state *st, char *buf, size_t len, int max_n, kd_err *e)
{
    char *p = buf, *end = buf + len;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    for (st->line = 1; p < end && (max_n <= 0 || st->n < max_n); st->line++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        if (memchr(p, 0, (size_t)(le - p)))
            return csv_err(st, p, NULL, e, "NUL byte: not a text file");
        if (le > p && le[-1] == '\r')
            le[-1] = 0;
        *le = 0; /* end may be buf[len]: the caller leaves room for it */
        int rc = KD_OK;
        if (is_blank(p))
            ;
        else if (st->line == 1 && !starts_with_number(p))
            ; /* header */
        else if ((rc = csv_row(st, p, e)) != KD_OK)
            return rc;
        p = le + 1;
    }
    return KD_OK;
}

/* Gives the rows their shape and moves them into out. */
static int csv_finish(csv_state *st, nn_shape shape, data_set *out, kd_err *e)
{
    if (st->n == 0)
        return kd_err_at(e, KD_EFORMAT, st->path, 0, 0, "no data rows");
    if (shape.c == 0 && shape.h == 0 && shape.w == 0)
        shape = (nn_shape){st->nfeat, 1, 1};
    if (shape.c < 1 || shape.h < 1 || shape.w < 1 ||
        nn_shape_size(shape) != (size_t)st->nfeat)
        return kd_err_at(e, KD_EFORMAT, st->path, st->first, 0,
                         "rows have %d features, the shape %dx%dx%d needs %lld", st->nfeat,
                         shape.c, shape.h, shape.w,
                         (long long)shape.c * shape.h * shape.w);
    /* give back the growth slack; a failed shrink keeps the larger block */
    float *x = kd_realloc(st->x, (size_t)st->n * (size_t)st->nfeat * sizeof *x);
    st->x = x ? x : st->x;
    out->n = st->n;
    out->shape = shape;
    out->nclasses = st->maxlabel + 1 < 2 ? 2 : st->maxlabel + 1;
    out->xf = st->x;
    out->y = st->y;
    st->x = NULL;
    st->y = NULL;
    return KD_OK;
}

int data_csv_load(const char *path, nn_shape shape, int max_n, data_set *out, kd_err *e)
{
    memset(out, 0, sizeof *out);
    uint8_t *raw;
    size_t len;
    int rc = kd_read_file(path, CSV_MAX_FILE, &raw, &len, e);
    if (rc != KD_OK)
        return rc;
    uint8_t *buf = kd_realloc(raw, len + 1); /* room for the last line's NUL */
    if (!buf) {
        kd_free(raw);
        return kd_err_at(e, KD_ENOMEM, path, 0, 0, "out of memory");
    }
    csv_state st = {.path = path};
    rc = csv_parse(&st, (char *)buf, len, max_n, e);
    kd_free(buf);
    if (rc == KD_OK)
        rc = csv_finish(&st, shape, out, e);
    kd_free(st.x);
    kd_free(st.y);
    return rc;
}
