/* The AVX2 kernel of csr-int8-static's byte panels (layout: quant_csr_s8.c).
 *
 * Per step: the window's 16 activations broadcast to both 128-bit halves,
 * the 32 lane indices unpacked from 16 nibble bytes (low nibbles for the
 * low half, high for the high half), one vpshufb to gather, then the sign
 * trick of qgemm_avx2.c: vpmaddubsw(|x|, sign(x) * w) is exact because
 * |x| <= 128 and |w| <= 127 (a pair sums to at most 32512), and vpmaddwd
 * with ones adds each row's 4 products into its int32 lane.  Sums are
 * integers, so they equal quant_csr_s8_ref's bit for bit in any order. */
#include <immintrin.h>
#include <string.h>

#include "internal.h"

#define TGT __attribute__((target("avx2")))

TGT static inline __m256i step_idx(const uint8_t *nib)
{
    __m256i v = _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)nib));
    return _mm256_and_si256(_mm256_blend_epi32(v, _mm256_srli_epi16(v, 4), 0xF0),
                            _mm256_set1_epi8(15));
}

/* acc + the 4-product sums of step t */
#define STEP(A, t)                                                                                 \
    do {                                                                                           \
        __m256i x_ = _mm256_broadcastsi128_si256(                                                  \
            _mm_loadu_si128((const __m128i *)(x + win[t])));                                       \
        __m256i g_ = _mm256_shuffle_epi8(x_, step_idx(nib + 16 * (t)));                            \
        __m256i w_ = _mm256_sign_epi8(_mm256_load_si256((const __m256i *)(val + 32 * (t))), g_);   \
        A = _mm256_add_epi32(                                                                      \
            A, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(g_, g_), w_), ones));       \
    } while (0)

TGT void quant_csr_s8_avx2(const uint32_t *slice_at, int nslice, const uint16_t *win,
                           const uint8_t *nib, const int8_t *val, const int8_t *x, int32_t *acc,
                           int rows)
{
    const __m256i ones = _mm256_set1_epi16(1);
    for (int s = 0; s < nslice; s++, acc += 8, rows -= 8) {
        __m256i a0 = _mm256_setzero_si256(), a1 = a0;
        uint32_t n = slice_at[s + 1] - slice_at[s];
        for (; n >= 2; n -= 2, win += 2, nib += 32, val += 64) {
            STEP(a0, 0);
            STEP(a1, 1);
        }
        if (n) {
            STEP(a0, 0);
            win += 1, nib += 16, val += 32;
        }
        a0 = _mm256_add_epi32(a0, a1);
        if (rows >= 8) {
            _mm256_storeu_si256((__m256i *)acc, a0);
        } else {
            int32_t t[8];
            _mm256_storeu_si256((__m256i *)t, a0);
            memcpy(acc, t, (size_t)rows * sizeof *acc);
        }
    }
}
#undef STEP

TGT void quant_csr_s8_out_avx2(const quant_csr_s8_epi *ep, const int32_t *acc, float *y, int r0,
                               int r1)
{
    const __m256 zero = _mm256_setzero_ps();
    int r = r0;
    for (; r + 8 <= r1; r += 8) {
        __m256i d = _mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(acc + r)),
                                     _mm256_loadu_si256((const __m256i *)(ep->zr + r)));
        __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(d), _mm256_loadu_ps(ep->cs + r));
        v = _mm256_add_ps(v, ep->b ? _mm256_loadu_ps(ep->b + r) : zero);
        _mm256_storeu_ps(y + r, ep->relu ? _mm256_max_ps(v, zero) : v); /* NaN -> 0 */
    }
    quant_csr_s8_out_ref(ep, acc, y, r, r1);
}
