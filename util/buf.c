/* Growable little-endian output buffer and a bounds-checked reader. */
#include "util.h"

#include <string.h>

void kd_buf_put(kd_buf *b, const void *src, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *p = kd_realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, src, n);
    b->len += n;
}

/* x86-64 and every target we build for is little-endian; assert it once. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "little-endian host expected");

void kd_buf_u32(kd_buf *b, uint32_t v) { kd_buf_put(b, &v, 4); }
void kd_buf_u64(kd_buf *b, uint64_t v) { kd_buf_put(b, &v, 8); }
void kd_buf_f32(kd_buf *b, float v) { kd_buf_put(b, &v, 4); }

void kd_buf_str(kd_buf *b, const char *s)
{
    uint32_t n = (uint32_t)strlen(s);
    kd_buf_u32(b, n);
    kd_buf_put(b, s, n);
}

void kd_buf_free(kd_buf *b)
{
    kd_free(b->p);
    memset(b, 0, sizeof *b);
}

int kd_rd_get(kd_rd *r, void *dst, size_t n)
{
    if (!r->ok || n > r->len - r->pos) {
        r->ok = 0;
        if (dst && n)
            memset(dst, 0, n);
        return -1;
    }
    if (dst && n)
        memcpy(dst, r->p + r->pos, n);
    r->pos += n;
    return 0;
}

uint32_t kd_rd_u32(kd_rd *r)
{
    uint32_t v;
    kd_rd_get(r, &v, 4);
    return v;
}

uint64_t kd_rd_u64(kd_rd *r)
{
    uint64_t v;
    kd_rd_get(r, &v, 8);
    return v;
}

float kd_rd_f32(kd_rd *r)
{
    float v;
    kd_rd_get(r, &v, 4);
    return v;
}

int kd_rd_str(kd_rd *r, char *dst, size_t cap)
{
    uint32_t n = kd_rd_u32(r);
    if (!r->ok || n >= cap) {
        r->ok = 0;
        dst[0] = 0;
        return -1;
    }
    if (kd_rd_get(r, dst, n) != 0) {
        dst[0] = 0;
        return -1;
    }
    dst[n] = 0;
    return 0;
}
