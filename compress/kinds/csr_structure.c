/* The columns of a CSR as a byte stream (the "structure"), shared by the
 * fp32 CSR file (dense_csr.c) and the shared-weights files
 * (dense_csr_shared.c).  Rows come in groups of h that have the same
 * columns (the last group may be shorter); per group a LEB128 count, then
 * per column its gap to the previous one (the first from -1) minus 1, as
 * bytes of 255 while it is >= 255 and one final byte < 255.  With h = 1
 * every row is its own group.  Rows pruned in blocks of h (prune's block)
 * share their columns, so their structure is h times shorter. */
#include "internal.h"

/* Rows [r0, r0 + h) (those that exist) all have row r0's columns. */
static int same_columns(const compress_csr *a, int r0, int h)
{
    uint32_t b0 = a->rowptr[r0], n = a->rowptr[r0 + 1] - b0;
    for (int r = r0 + 1; r < r0 + h && r < a->rows; r++) {
        uint32_t b = a->rowptr[r];
        if (a->rowptr[r + 1] - b != n)
            return 0;
        for (uint32_t j = 0; j < n; j++)
            if (compress_csr_col(a, b + j) != compress_csr_col(a, b0 + j))
                return 0;
    }
    return 1;
}

int kcsr_group_rows(const compress_csr *a)
{
    for (int h = KCSR_GROUP_MAX; a && h >= 2; h--) {
        int r0 = 0;
        while (r0 < a->rows && same_columns(a, r0, h))
            r0 += h;
        if (r0 >= a->rows)
            return h;
    }
    return 1;
}

static void put_leb(kd_buf *b, uint32_t v)
{
    do {
        uint8_t c = (uint8_t)(v & 127);
        v >>= 7;
        kd_buf_put(b, &(uint8_t){(uint8_t)(c | (v ? 128 : 0))}, 1);
    } while (v);
}

int kcsr_structure_put(const compress_csr *a, int h, kd_buf *st)
{
    for (int r0 = 0; r0 < a->rows; r0 += h) {
        put_leb(st, a->rowptr[r0 + 1] - a->rowptr[r0]);
        long prev = -1;
        for (uint32_t j = a->rowptr[r0]; j < a->rowptr[r0 + 1]; j++) {
            long c = (long)compress_csr_col(a, j);
            for (long g = c - prev - 1;; g -= 255) {
                uint8_t byte = (uint8_t)(g >= 255 ? 255 : g);
                kd_buf_put(st, &byte, 1);
                if (g < 255)
                    break;
            }
            prev = c;
        }
    }
    return st->failed ? KD_ENOMEM : KD_OK;
}

int kcsr_structure_get(compress_csr *a, int h, const uint8_t *st, size_t nst, kd_err *e)
{
    size_t p = 0;
    uint32_t at = 0;
    a->rowptr[0] = 0;
    for (int r0 = 0; r0 < a->rows; r0 += h) {
        int nr = a->rows - r0 < h ? a->rows - r0 : h;
        uint32_t cnt = 0;
        for (int sh = 0;; sh += 7) {
            if (p >= nst || sh > 28)
                return kd_err_set(e, KD_EFORMAT, "row %d: count is cut or too long", r0);
            uint8_t c = st[p++];
            cnt |= (uint32_t)(c & 127) << sh;
            if (!(c & 128))
                break;
        }
        if (cnt > (uint32_t)a->cols || (uint64_t)cnt * (uint64_t)nr > a->nnz - at)
            return kd_err_set(e, KD_EFORMAT, "row %d claims %u non-zeros", r0, cnt);
        long prev = -1;
        for (uint32_t j = 0; j < cnt; j++) {
            long g = 0;
            for (;;) {
                if (p >= nst)
                    return kd_err_set(e, KD_EFORMAT, "row %d: gaps are cut", r0);
                uint8_t c = st[p++];
                g += c;
                if (c < 255 || g > a->cols)
                    break;
            }
            long col = prev + 1 + g;
            if (col >= a->cols)
                return kd_err_set(e, KD_EFORMAT, "row %d: column %ld past %d", r0, col, a->cols);
            for (int i = 0; i < nr; i++)
                compress_csr_set_col(a, at + (uint32_t)i * cnt + j, (uint32_t)col);
            prev = col;
        }
        for (int i = 0; i < nr; i++)
            a->rowptr[r0 + i + 1] = at + (uint32_t)(i + 1) * cnt;
        at += cnt * (uint32_t)nr;
    }
    if (at != a->nnz || p != nst)
        return kd_err_set(e, KD_EFORMAT, "%u of %u non-zeros, %zu of %zu structure bytes used", at,
                          a->nnz, p, nst);
    return KD_OK;
}
