/* The AVX2 kernel of csr-int8-static's and csr-int8-dyn's byte panels
 * (layout: quant_csr_s8.c).
 *
 * Per step: the window's 16 unsigned activation codes broadcast to both
 * 128-bit halves, the 32 lane indices unpacked from its pair's nibbles, one
 * vpshufb to gather, vpmaddubsw (codes <= 255 times values in [-127, 127];
 * the layout puts pairable values in each int16 pair -- opposite signs, or
 * magnitudes summing to at most 128 -- so it never saturates) and vpmaddwd
 * with ones add each row's 4 products into its int32 lane.  Sums are
 * integers, so they equal quant_csr_s8_ref's bit for bit in any order.  Dropping the sign trick's two vpsignb a step (the
 * layout's pairing instead, which costs 7-12% more steps on the pruned
 * teacher's layers): the two big layers together took a median 0.88x the
 * time (15 alternating runs, one thread, Zen 3; scratch11/kab.c). */
#include <immintrin.h>
#include <string.h>

#include "internal.h"

#define TGT __attribute__((target("avx2")))

/* acc + the 4-product sums of a step: window at xs + w, lane columns idx,
 * values wv */
#define STEP(A, xs, w, idx, wv)                                                                    \
    do {                                                                                           \
        __m256i x_ = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)((xs) + (w))));  \
        __m256i g_ = _mm256_shuffle_epi8(x_, idx);                                                 \
        A = _mm256_add_epi32(A, _mm256_madd_epi16(_mm256_maddubs_epi16(g_, wv), ones));            \
    } while (0)

/* Slices' sums for NX samples (x + i xstride, acc + i astride) in one pass:
 * each pair of steps is loaded and unpacked once for all of them. */
static inline __attribute__((always_inline)) TGT void
slices(const uint32_t *slice_at, int nslice, const uint16_t *win, const uint8_t *nib,
       const int8_t *val, const uint8_t *x, size_t xstride, int32_t *acc, size_t astride, int rows,
       const int NX)
{
    const __m256i ones = _mm256_set1_epi16(1), lo4 = _mm256_set1_epi8(15);
    for (int s = 0; s < nslice; s++, acc += 8, rows -= 8) {
        __m256i a[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                        _mm256_setzero_si256()};
        __m256i b = a[0]; /* NX = 1: the second step's own chain */
        uint32_t n = slice_at[s + 1] - slice_at[s];
        if (NX == 1) { /* two pairs a turn, four chains */
            __m256i c = b, d = b;
            for (; n >= 4; n -= 4, win += 4, nib += 64, val += 128) {
                __m256i v = _mm256_load_si256((const __m256i *)nib);
                __m256i u = _mm256_load_si256((const __m256i *)(nib + 32));
                STEP(a[0], x, win[0], _mm256_and_si256(v, lo4), _mm256_load_si256((const __m256i *)val));
                STEP(b, x, win[1], _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4),
                     _mm256_load_si256((const __m256i *)(val + 32)));
                STEP(c, x, win[2], _mm256_and_si256(u, lo4), _mm256_load_si256((const __m256i *)(val + 64)));
                STEP(d, x, win[3], _mm256_and_si256(_mm256_srli_epi16(u, 4), lo4),
                     _mm256_load_si256((const __m256i *)(val + 96)));
            }
            a[0] = _mm256_add_epi32(a[0], c);
            b = _mm256_add_epi32(b, d);
        }
        for (; n; n -= 2, win += 2, nib += 32, val += 64) {
            __m256i v = _mm256_load_si256((const __m256i *)nib);
            __m256i i0 = _mm256_and_si256(v, lo4);
            __m256i i1 = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
            __m256i w0 = _mm256_load_si256((const __m256i *)val);
            __m256i w1 = _mm256_load_si256((const __m256i *)(val + 32));
            if (NX == 1) {
                STEP(a[0], x, win[0], i0, w0);
                STEP(b, x, win[1], i1, w1);
            } else {
                for (int i = 0; i < NX; i++) {
                    STEP(a[i], x + i * xstride, win[0], i0, w0);
                    STEP(a[i], x + i * xstride, win[1], i1, w1);
                }
            }
        }
        if (NX == 1)
            a[0] = _mm256_add_epi32(a[0], b);
        for (int i = 0; i < NX; i++) {
            int32_t *o = acc + i * astride;
            if (rows >= 8) {
                _mm256_storeu_si256((__m256i *)o, a[i]);
            } else {
                int32_t t[8];
                _mm256_storeu_si256((__m256i *)t, a[i]);
                memcpy(o, t, (size_t)rows * sizeof *o);
            }
        }
    }
}
#undef STEP

TGT void quant_csr_s8_avx2(const uint32_t *slice_at, int nslice, const uint16_t *win,
                           const uint8_t *nib, const int8_t *val, const uint8_t *x, size_t xstride,
                           int nx, int32_t *acc, size_t astride, int rows)
{
    switch (nx) {
    case 1:
        slices(slice_at, nslice, win, nib, val, x, xstride, acc, astride, rows, 1);
        break;
    case 2:
        slices(slice_at, nslice, win, nib, val, x, xstride, acc, astride, rows, 2);
        break;
    case 3:
        slices(slice_at, nslice, win, nib, val, x, xstride, acc, astride, rows, 3);
        break;
    default:
        slices(slice_at, nslice, win, nib, val, x, xstride, acc, astride, rows, 4);
        break;
    }
}

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
