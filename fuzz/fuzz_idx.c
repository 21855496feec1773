/* IDX pairs, raw and gzip.  Input: one flags byte, then the images file and
 * the labels file separated by FUZZ_SEP.  Flags bit 0 / bit 1: the harness
 * gzips the images / labels itself (so the fuzzer explores IDX headers
 * inside valid gzip as well as broken gzip it writes itself); bits 2-5: the
 * sample limit (0 = all). */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../data/data.h"
#include "fuzz.h"

/* Writes p as a gzip member (or raw) to path. */
static void put(const char *path, const uint8_t *p, size_t n, int gz)
{
    if (!gz) {
        fuzz_write(path, p, n);
        return;
    }
    z_stream z = {0};
    if (deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return;
    uLong cap = deflateBound(&z, (uLong)n);
    uint8_t *out = malloc(cap);
    if (out) {
        z.next_in = (Bytef *)p;
        z.avail_in = (uInt)n;
        z.next_out = out;
        z.avail_out = (uInt)cap;
        if (deflate(&z, Z_FINISH) == Z_STREAM_END)
            fuzz_write(path, out, z.total_out);
        free(out);
    }
    deflateEnd(&z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char im[512], lb[512];
    if (!im[0]) {
        fuzz_path(im, sizeof im, "images");
        fuzz_path(lb, sizeof lb, "labels");
    }
    if (size < 1)
        return 0;
    int flags = data[0];
    const uint8_t *part[2];
    size_t len[2];
    int n = fuzz_split(data + 1, size - 1, part, len, 2);
    if (n < 2) { /* one file: used as both (their magics differ, so one is refused) */
        part[1] = part[0];
        len[1] = len[0];
    }
    put(im, part[0], len[0], flags & 1);
    put(lb, part[1], len[1], flags & 2);
    data_set d;
    kd_err e = {0};
    if (data_idx_load(im, lb, (flags >> 2) & 15, &d, &e) == KD_OK)
        data_set_free(&d);
    return 0;
}
