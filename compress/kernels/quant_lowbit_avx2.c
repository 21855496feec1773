/* The AVX2 kernels of the low-bit format (quant_lowbit.h): a group's codes
 * decoded to 32 bytes with one variable 64-bit shift and a mask per 2-bit
 * plane (and a byte shuffle and compare for the 3-bit high plane), then one
 * u8 x s8 maddubs against the sample's int8 activations, as q4x8 does. */
#include "quant_lowbit.h"
#include "avx2_inline.h"

#include <immintrin.h>
#include <string.h>

#define G QUANT_QL_GROUP
#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) AVX2

/* A 2-bit plane (8 bytes) as byte j + 8i = bits 2i..2i+1 of byte j. */
INL __m256i plane2(const uint8_t *p)
{
    uint64_t a;
    memcpy(&a, p, sizeof a);
    __m256i v = _mm256_srlv_epi64(_mm256_set1_epi64x((long long)a), _mm256_setr_epi64x(0, 2, 4, 6));
    return _mm256_and_si256(v, _mm256_set1_epi8(3));
}

/* The 32 codes of a group, one per byte (unsigned, < 2^bits). */
INL __m256i decode(const uint8_t *c, int bits)
{
    __m256i lo = plane2(c);
    if (bits == 2)
        return lo;
    if (bits == 4)
        return _mm256_or_si256(lo, _mm256_slli_epi16(plane2(c + 8), 2));
    uint32_t h;
    memcpy(&h, c + 8, sizeof h);
    const __m256i sel = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2,
                                         2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i hb = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h), sel);
    hb = _mm256_cmpeq_epi8(_mm256_and_si256(hb, bit), bit);
    return _mm256_or_si256(lo, _mm256_and_si256(hb, _mm256_set1_epi8(4)));
}

/* Rows r .. r + nr - 1 (nr <= 4): each row its own accumulator, so the
 * FMA chains of the rows overlap and each group of activations is loaded
 * once per block of rows. */
INL void rows_block(const quant_ql *q, const int8_t *xq, const float *dx, const float *corr,
                    const float *b, float *y, int r, int nr, int bits)
{
    const size_t cb = (size_t)QUANT_QL_CODE_BYTES(bits);
    const float cf = (float)quant_ql_qn(bits) / 8.0f;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[4];
    float cs[4];
    for (int j = 0; j < nr; j++) {
        acc[j] = _mm256_setzero_ps();
        cs[j] = 0.0f;
    }
    for (int g = 0; g < q->nb; g++) {
        __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + g * G));
        for (int j = 0; j < nr; j++) {
            size_t gi = (size_t)(r + j) * q->nb + g;
            __m256i c = decode(q->code + gi * cb, bits);
            __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(c, xv), ones);
            float d = _cvtsh_ss(q->d[gi]);
            acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d * dx[g]), acc[j]);
            cs[j] += d * corr[g] * cf;
        }
    }
    for (int j = 0; j < nr; j++)
        y[r + j] = kq_hsum8_ps(acc[j]) - cs[j] + (b ? b[r + j] : 0.0f);
}

/* All rows of [r0, r1) at a constant bit width (the decode specialised). */
INL void rows_bits(const quant_ql *q, const int8_t *xq, const float *dx, const float *corr,
                   const float *b, float *y, int r0, int r1, int bits)
{
    int r = r0;
    for (; r + 4 <= r1; r += 4)
        rows_block(q, xq, dx, corr, b, y, r, 4, bits);
    for (; r < r1; r++)
        rows_block(q, xq, dx, corr, b, y, r, 1, bits);
}

AVX2 void quant_ql_rows_avx2(const quant_ql *q, const int8_t *xq, const float *dx,
                             const float *corr, const float *b, float *y, int r0, int r1)
{
    if (q->bits == 2)
        rows_bits(q, xq, dx, corr, b, y, r0, r1, 2);
    else if (q->bits == 3)
        rows_bits(q, xq, dx, corr, b, y, r0, r1, 3);
    else
        rows_bits(q, xq, dx, corr, b, y, r0, r1, 4);
}

AVX2 void quant_ql_row_f32_avx2(const quant_ql *q, int r, float *out)
{
    const size_t cb = (size_t)QUANT_QL_CODE_BYTES(q->bits);
    const __m256i off = _mm256_set1_epi8((char)quant_ql_qn(q->bits));
    float tmp[G];
    for (int g = 0; g < q->nb; g++) {
        size_t i = (size_t)r * q->nb + g;
        __m256i lv = _mm256_sub_epi8(decode(q->code + i * cb, q->bits), off);
        __m256 d = _mm256_set1_ps(_cvtsh_ss(q->d[i]));
        int len = q->k - g * G < G ? q->k - g * G : G;
        float *dst = len == G ? out + (size_t)g * G : tmp;
        __m128i h0 = _mm256_castsi256_si128(lv), h1 = _mm256_extracti128_si256(lv, 1);
        _mm256_storeu_ps(dst, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(h0))));
        _mm256_storeu_ps(dst + 8, _mm256_mul_ps(
            d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(h0, 8)))));
        _mm256_storeu_ps(dst + 16, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(h1))));
        _mm256_storeu_ps(dst + 24, _mm256_mul_ps(
            d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(h1, 8)))));
        if (dst == tmp)
            memcpy(out + (size_t)g * G, tmp, (size_t)len * sizeof *tmp);
    }
}
