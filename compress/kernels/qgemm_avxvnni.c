/* AVX-VNNI (256-bit vpdpbusd, CPUs with AVX2 and AVX-VNNI but no AVX-512)
 * int8 GEMM over the packed panel layout, a panel's 64-byte block being two
 * 32-byte halves of 8 rows x 4 k.  Same u8 x s8 formulation as qgemm_vnni.c:
 * activations offset by +128 in the broadcast, 128 * row_sum taken off the
 * raw sums before the shared AVX2 output stage.  Only called when
 * qgemm_isa_supported(QGEMM_AVXVNNI). */
#include "internal.h"

#include <immintrin.h>
#include <string.h>

#define AVXVNNI __attribute__((target("avx2,avxvnni")))
#define TILE static inline __attribute__((always_inline)) AVXVNNI

TILE __m256i x_group(const int8_t *x, int nb)
{
    uint32_t v = 0;
    memcpy(&v, x, (size_t)nb);
    return _mm256_set1_epi32((int)(v ^ 0x80808080u));
}

/* np panels x ns samples: acc[a][h][s] holds rows 16 (p0 + a) + 8 h .. + 7. */
TILE void tile(const qgemm_packed *p, int p0, int np, const int8_t *x, int i0, int ns,
               const qgemm_epi *ep, void *y)
{
    __m256i acc[4][2][2];
    const int8_t *wb[4], *xs[2];
    int kg = p->kp / 4, kfull = p->k / 4;
    for (int a = 0; a < np; a++) {
        wb[a] = (const int8_t *)(p->w + (size_t)(p0 + a) * kg);
        for (int s = 0; s < ns; s++)
            acc[a][0][s] = acc[a][1][s] = _mm256_setzero_si256();
    }
    for (int s = 0; s < ns; s++)
        xs[s] = x + (size_t)(i0 + s) * p->k;
    for (int g = 0; g < kg; g++) {
        __m256i xb[2];
        for (int s = 0; s < ns; s++)
            xb[s] = g < kfull ? x_group(xs[s] + 4 * g, 4) : x_group(xs[s] + 4 * g, p->k - 4 * g);
        for (int a = 0; a < np; a++)
            for (int h = 0; h < 2; h++) {
                __m256i w = _mm256_load_si256((const __m256i *)(wb[a] + 64 * (size_t)g + 32 * h));
                for (int s = 0; s < ns; s++)
                    acc[a][h][s] = _mm256_dpbusd_avx_epi32(acc[a][h][s], xb[s], w);
            }
    }
    /* through memory, less the offset's 128 * row_sum: then the AVX2 output stage */
    int32_t raw[4][2][2][8] __attribute__((aligned(32)));
    for (int a = 0; a < np; a++)
        for (int h = 0; h < 2; h++) {
            const __m256i *rs = (const __m256i *)(p->row_sum + 16 * (p0 + a) + 8 * h);
            __m256i off = _mm256_slli_epi32(_mm256_loadu_si256(rs), 7);
            for (int s = 0; s < ns; s++)
                _mm256_store_si256((__m256i *)raw[a][h][s], _mm256_sub_epi32(acc[a][h][s], off));
        }
    for (int a = 0; a < np; a++)
        for (int h = 0; h < 2; h++)
            for (int s = 0; s < ns; s++)
                qgemm_avx2_epilogue8(p, ep, raw[a][h][s], 16 * (p0 + a) + 8 * h, i0 + s, y);
}

/* Panels [pb, pe) in groups of `wide` (a constant per call site). */
TILE void sweep(const qgemm_packed *p, int wide, const int8_t *x, int i0, int ns,
                const qgemm_epi *ep, void *y, int pb, int pe)
{
    int p0 = pb;
    for (; p0 + wide <= pe; p0 += wide)
        tile(p, p0, wide, x, i0, ns, ep, y);
    for (; p0 < pe; p0++)
        tile(p, p0, 1, x, i0, ns, ep, y);
}

AVXVNNI void qgemm_avxvnni_part(const qgemm_packed *p, const int8_t *x, int n,
                                const qgemm_epi *ep, void *y, int pb, int pe)
{
    int i = 0;
    for (; i + 2 <= n; i += 2) /* 2 panels x 2 halves x 2 samples = 8 accumulators */
        sweep(p, 2, x, i, 2, ep, y, pb, pe);
    for (; i < n; i++) /* GEMV and the batch tail: 4 panels = 8 accumulators */
        sweep(p, 4, x, i, 1, ep, y, pb, pe);
}

void qgemm_avxvnni(const qgemm_packed *p, const int8_t *x, int n, const qgemm_epi *ep, void *y)
{
    qgemm_avxvnni_part(p, x, n, ep, y, 0, p->mp / 16);
}
