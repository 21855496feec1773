/* minmax: reference, AVX2 (8 lanes, non-finite lanes masked to +-inf), and a
 * split across the model's team — dynamic int8 scanned its whole batch on
 * one thread with a branch per value before this. */
#include "kernels.h"

#include <immintrin.h>
#include <math.h>

#include "cpu.h"

void kernels_minmax_ref(const float *x, size_t n, float *lo, float *hi)
{
    float l = *lo, h = *hi;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]))
            continue;
        l = x[i] < l ? x[i] : l;
        h = x[i] > h ? x[i] : h;
    }
    *lo = l;
    *hi = h;
}

__attribute__((target("avx2"))) void kernels_minmax_avx2(const float *x, size_t n, float *lo,
                                                         float *hi)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 inf = _mm256_set1_ps(INFINITY), ninf = _mm256_set1_ps(-INFINITY);
    __m256 l[2] = {inf, inf}, h[2] = {ninf, ninf};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int u = 0; u < 2; u++) {
            __m256 v = _mm256_loadu_ps(x + i + 8 * u);
            __m256 fin = _mm256_cmp_ps(_mm256_and_ps(v, absmask), inf, _CMP_LT_OQ); /* NaN: 0 */
            l[u] = _mm256_min_ps(l[u], _mm256_blendv_ps(inf, v, fin));
            h[u] = _mm256_max_ps(h[u], _mm256_blendv_ps(ninf, v, fin));
        }
    float tl[8], th[8];
    _mm256_storeu_ps(tl, _mm256_min_ps(l[0], l[1]));
    _mm256_storeu_ps(th, _mm256_max_ps(h[0], h[1]));
    kernels_minmax_ref(tl, 8, lo, hi);
    kernels_minmax_ref(th, 8, lo, hi);
    kernels_minmax_ref(x + i, n - i, lo, hi);
}

void kernels_minmax(const float *x, size_t n, float *lo, float *hi)
{
    if (kernels_isa() >= KD_ISA_AVX2)
        kernels_minmax_avx2(x, n, lo, hi);
    else
        kernels_minmax_ref(x, n, lo, hi);
}

/* ---- across a team -------------------------------------------------------------------- */

enum { MINMAX_SPLIT_MIN = 1 << 15, MINMAX_PARTS_MAX = 64 };

typedef struct {
    const float *x;
    size_t n;
    float lo[MINMAX_PARTS_MAX], hi[MINMAX_PARTS_MAX];
} minmax_job;

static void minmax_part(void *arg, int part, int nparts)
{
    minmax_job *j = arg;
    size_t b = j->n * (size_t)part / (size_t)nparts, e = j->n * (size_t)(part + 1) / (size_t)nparts;
    j->lo[part] = INFINITY;
    j->hi[part] = -INFINITY;
    kernels_minmax(j->x + b, e - b, &j->lo[part], &j->hi[part]);
}

void kernels_minmax_team(nn_team *t, const float *x, size_t n, float *lo, float *hi)
{
    int parts = nn_team_size(t);
    if (parts < 2 || parts > MINMAX_PARTS_MAX || n < MINMAX_SPLIT_MIN) {
        kernels_minmax(x, n, lo, hi);
        return;
    }
    minmax_job j = {.x = x, .n = n};
    nn_team_run(t, minmax_part, &j);
    kernels_minmax_ref(j.lo, (size_t)parts, lo, hi); /* +-inf of empty parts are skipped */
    kernels_minmax_ref(j.hi, (size_t)parts, lo, hi);
}
