/* AVX2 float -> int8 quantization (the input of every static and dynamic int8
 * layer), bit-identical to quant_quantize_s8_ref. */
#include "kernels.h"
#include "avx2_inline.h"

#include <immintrin.h>

#define AVX2 __attribute__((target("avx2")))
#define INL static inline __attribute__((always_inline)) AVX2

/* 8 floats to 8 clamped int32 codes, rounded as roundf (avx2_inline.h);
 * max_ps returns its second operand for NaN: qmin. */
INL __m256i quantize8(__m256 x, __m256 s, __m256 zero, __m256 lo, __m256 hi)
{
    __m256 r = kq_round_away_ps(_mm256_div_ps(x, s));
    r = _mm256_max_ps(_mm256_add_ps(r, zero), lo);
    return _mm256_cvttps_epi32(_mm256_min_ps(r, hi));
}

static AVX2 void quantize_avx2(const float *x, size_t n, quant_params p, int8_t *q)
{
    __m256 s = _mm256_set1_ps(p.scale), z = _mm256_set1_ps((float)p.zero);
    __m256 lo = _mm256_set1_ps((float)p.qmin), hi = _mm256_set1_ps((float)p.qmax);
    __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i a = quantize8(_mm256_loadu_ps(x + i), s, z, lo, hi);
        __m256i b = quantize8(_mm256_loadu_ps(x + i + 8), s, z, lo, hi);
        __m256i c = quantize8(_mm256_loadu_ps(x + i + 16), s, z, lo, hi);
        __m256i d = quantize8(_mm256_loadu_ps(x + i + 24), s, z, lo, hi);
        __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
        __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), order);
        _mm256_storeu_si256((__m256i *)(q + i), bytes);
    }
    quant_quantize_s8_ref(x + i, n - i, p, q + i);
}

void quant_quantize_s8(const float *x, size_t n, quant_params p, int8_t *q)
{
    if (kernels_isa() >= KD_ISA_AVX2)
        quantize_avx2(x, n, p, q);
    else
        quant_quantize_s8_ref(x, n, p, q);
}
