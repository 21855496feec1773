/* Small AVX2 helpers the kernels share, inlined into functions compiled
 * for avx2 only.
 *
 * kq_round_away_ps/_pd: round half away from zero (C's round/roundf),
 * exactly: trunc, then +-1 where the dropped fraction (exact in floating
 * point) is >= 0.5; NaN stays NaN, +-inf stays. */
#ifndef KD_COMPRESS_KERNELS_AVX2_INLINE_H
#define KD_COMPRESS_KERNELS_AVX2_INLINE_H

#include <immintrin.h>

static inline __attribute__((always_inline, target("avx2"))) __m256 kq_round_away_ps(__m256 v)
{
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 sign = _mm256_and_ps(v, _mm256_set1_ps(-0.0f));
    __m256 frac = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(v, t));
    __m256 up = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    return _mm256_add_ps(t, _mm256_and_ps(up, _mm256_or_ps(sign, _mm256_set1_ps(1.0f))));
}

static inline __attribute__((always_inline, target("avx2"))) __m256d kq_round_away_pd(__m256d v)
{
    __m256d t = _mm256_round_pd(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256d sign = _mm256_and_pd(v, _mm256_set1_pd(-0.0));
    __m256d frac = _mm256_andnot_pd(_mm256_set1_pd(-0.0), _mm256_sub_pd(v, t));
    __m256d up = _mm256_cmp_pd(frac, _mm256_set1_pd(0.5), _CMP_GE_OQ);
    return _mm256_add_pd(t, _mm256_and_pd(up, _mm256_or_pd(sign, _mm256_set1_pd(1.0))));
}

/* The sum of v's 8 lanes (in the order (0+4)+(2+6) + (1+5)+(3+7)). */
static inline __attribute__((always_inline, target("avx2"))) float kq_hsum8_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#endif
