/* The one allocation hook: every allocation passes here so tests can fail the Nth. */
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* Test-only fault injection; thread-local so parallel tests do not interfere. */
static _Thread_local long fail_after = -1;

void kd_alloc_fail_after(long n) { fail_after = n; }

static int should_fail(void)
{
    if (fail_after < 0)
        return 0;
    if (fail_after == 0)
        return 1;
    fail_after--;
    return 0;
}

void *kd_malloc(size_t n)
{
    if (should_fail())
        return NULL;
    return malloc(n ? n : 1);
}

void *kd_calloc(size_t count, size_t size)
{
    if (should_fail())
        return NULL;
    return calloc(count ? count : 1, size ? size : 1);
}

void *kd_realloc(void *p, size_t n)
{
    if (should_fail())
        return NULL;
    return realloc(p, n ? n : 1);
}

void kd_free(void *p) { free(p); }

float *kd_afloat(size_t count)
{
    if (should_fail())
        return NULL;
    if (count > SIZE_MAX / sizeof(float) - 64)
        return NULL;
    size_t bytes = (count * sizeof(float) + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (p)
        memset(p, 0, bytes);
    return p;
}

void kd_afree(void *p) { free(p); }

char *kd_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = kd_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}
