/* Temporary folder, file writing and input splitting for the fuzz targets. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../util/util.h"
#include "fuzz.h"

static char dir[256];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(path);
}

static void fuzz_cleanup(void)
{
    if (dir[0])
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *fuzz_dir(void)
{
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/kdfuzz.XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(dir)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(fuzz_cleanup);
    }
    return dir;
}

char *fuzz_path(char *buf, size_t cap, const char *name)
{
    if ((size_t)snprintf(buf, cap, "%s/%s", fuzz_dir(), name) >= cap)
        abort();
    return buf;
}

void fuzz_write(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

void fuzz_with_crc(const char *path, const uint8_t *data, size_t size,
                   void (*load)(const char *path))
{
    fuzz_write(path, data, size);
    load(path);
    if (size < 8)
        return;
    uint8_t *p = malloc(size);
    if (!p)
        abort();
    memcpy(p, data, size);
    uint32_t crc = kd_crc32(0, p, size - 4);
    if (memcmp(p + size - 4, &crc, 4) != 0) { /* else already loaded */
        memcpy(p + size - 4, &crc, 4);
        fuzz_write(path, p, size);
        load(path);
    }
    free(p);
}

int fuzz_split(const uint8_t *data, size_t size, const uint8_t **part, size_t *len, int max)
{
    int k = 0;
    part[0] = data;
    len[0] = 0;
    for (size_t i = 0; i < size; i++) {
        if (data[i] == FUZZ_SEP && k + 1 < max) {
            part[++k] = data + i + 1;
            len[k] = 0;
        } else {
            len[k]++;
        }
    }
    return k + 1;
}

#define MAX_ACT ((size_t)1 << 20) /* floats over all layer outputs */

void fuzz_run_forward(nn_model *m)
{
    size_t act = nn_shape_size(m->in);
    for (int i = 0; i < m->nlayers; i++)
        act += nn_shape_size(m->layers[i].out);
    if (act > MAX_ACT)
        return;
    size_t n = nn_shape_size(m->in);
    float *x = malloc((n ? n : 1) * sizeof *x);
    if (!x)
        return;
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(i % 7) * 0.25f - 0.5f;
    nn_ctx c = {0};
    nn_model_forward(m, x, 1, &c);
    free(x);
}
