/* The one allocation hook: every allocation passes here so tests can fail the Nth. */
#include "util.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

/* Test-only fault injection; thread-local so parallel tests do not interfere. */
static _Thread_local long fail_after = -1;

void kd_alloc_fail_after(long n) { fail_after = n; }

/* Test-only accounting of what this thread holds (kd_alloc_track). */
static _Thread_local int track;
static _Thread_local long long live, peak;

void kd_alloc_track(int on)
{
    track = on;
    live = peak = 0;
}

long long kd_alloc_peak(void) { return peak; }

long long kd_alloc_held(void) { return live; }

static void *counted(void *p)
{
    if (track && p) {
        live += (long long)malloc_usable_size(p);
        peak = live > peak ? live : peak;
    }
    return p;
}

static void uncount(void *p)
{
    if (track && p)
        live -= (long long)malloc_usable_size(p);
}

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
    return counted(malloc(n ? n : 1));
}

void *kd_calloc(size_t count, size_t size)
{
    if (should_fail())
        return NULL;
    return counted(calloc(count ? count : 1, size ? size : 1));
}

void *kd_realloc(void *p, size_t n)
{
    if (should_fail())
        return NULL;
    size_t old = track && p ? malloc_usable_size(p) : 0;
    void *q = realloc(p, n ? n : 1);
    if (q)
        live -= (long long)old;
    return q ? counted(q) : NULL;
}

void kd_free(void *p)
{
    uncount(p);
    free(p);
}

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
    return counted(p);
}

void kd_afree(void *p)
{
    uncount(p);
    free(p);
}

char *kd_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = kd_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}
