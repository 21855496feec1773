/* q4x8: int4 weights x per-group int8 activations (see q4x8.h): the scalar
 * specification, the AVX2 kernels, and the per-sample driver.
 *
 * Why: at batch 1 the float kernel spends ~30 instructions per 32 weights
 * turning nibbles into floats; here a block costs one u8 x s8 maddubs, one
 * madd, one convert and one FMA per row, so the GEMV runs near the speed at
 * which the 0.56 bytes per weight arrive. */
#include "q4x8.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define G QUANT_Q4_GROUP

/* ---- the specification ------------------------------------------------------------- */

void q4x8_quantize_ref(const float *x, int k, int8_t *xq, float *dx, float *corr)
{
    int nb = (k + G - 1) / G;
    for (int g = 0; g < nb; g++) {
        int len = k - g * G < G ? k - g * G : G;
        const float *xs = x + (size_t)g * G;
        float amax = 0.0f;
        for (int j = 0; j < len; j++)
            amax = fmaxf(amax, fabsf(xs[j]));
        float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < G; j++) {
            int v = j < len ? (int)lrintf(xs[j] * inv) : 0; /* |v| <= 127 */
            xq[g * G + j] = (int8_t)v;
            sum += v;
        }
        dx[g] = amax / 127.0f;
        corr[g] = 8.0f * dx[g] * (float)sum;
    }
}

/* Weight j of a block as its nibble in [0, 15]. */
static inline int nib_at(const quant_block_q4 *b, int j)
{
    int byte = b->q[j % (G / 2)];
    return j < G / 2 ? byte & 15 : byte >> 4;
}

void q4x8_rows_ref(const quant_q4 *q, const int8_t *xq, const float *dx, const float *corr,
                   const float *b, float *y, int r0, int r1)
{
    for (int r = r0; r < r1; r++) {
        float acc = 0.0f, cs = 0.0f;
        for (int g = 0; g < q->nb; g++) {
            const quant_block_q4 *bl = &q->blocks[(size_t)r * q->nb + g];
            int32_t s = 0;
            for (int j = 0; j < G; j++)
                s += nib_at(bl, j) * xq[g * G + j];
            float d = quant_f16_to_f32(bl->d);
            acc += d * dx[g] * (float)s;
            cs += d * corr[g];
        }
        y[r] = acc - cs + (b ? b[r] : 0.0f);
    }
}

/* ---- AVX2 (with FMA and F16C) --------------------------------------------------------- */

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) AVX2

AVX2 void q4x8_quantize_avx2(const float *x, int k, int8_t *xq, float *dx, float *corr)
{
    int nfull = k / G;
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int g = 0; g < nfull; g++) {
        const float *xs = x + (size_t)g * G;
        __m256 v[4], m;
        for (int c = 0; c < 4; c++)
            v[c] = _mm256_loadu_ps(xs + 8 * c);
        m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v[0], absmask), _mm256_and_ps(v[1], absmask)),
                          _mm256_max_ps(_mm256_and_ps(v[2], absmask), _mm256_and_ps(v[3], absmask)));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        float amax = _mm_cvtss_f32(h);
        if (!(amax > 0.0f)) { /* all zero (or NaN): the reference's way */
            q4x8_quantize_ref(xs, G, xq + g * G, dx + g, corr + g);
            continue;
        }
        __m256 inv = _mm256_set1_ps(127.0f / amax);
        __m256i qi[4];
        for (int c = 0; c < 4; c++) /* default rounding: nearest even, as lrintf */
            qi[c] = _mm256_cvtps_epi32(_mm256_mul_ps(v[c], inv));
        __m256i s = _mm256_add_epi32(_mm256_add_epi32(qi[0], qi[1]), _mm256_add_epi32(qi[2], qi[3]));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_hadd_epi32(s4, s4);
        s4 = _mm_hadd_epi32(s4, s4);
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]),
                                       _mm256_packs_epi32(qi[2], qi[3]));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(xq + g * G), p);
        dx[g] = amax / 127.0f;
        corr[g] = 8.0f * dx[g] * (float)_mm_cvtsi128_si32(s4);
    }
    if (nfull * G < k)
        q4x8_quantize_ref(x + (size_t)nfull * G, k - nfull * G, xq + nfull * G, dx + nfull,
                          corr + nfull);
}

/* The 32 nibbles of a block as unsigned bytes in weight order. */
INL __m256i nibbles(const quant_block_q4 *bl)
{
    __m128i raw = _mm_loadu_si128((const __m128i *)bl->q);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
    return _mm256_and_si256(both, _mm256_set1_epi8(15));
}

INL float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Two halves of 16 bytes as one vector: lo in bits 0..127. */
INL __m256i load2x16(const void *lo, const void *hi)
{
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)lo)),
                                   _mm_loadu_si128((const __m128i *)hi), 1);
}

/* Rows r .. r+nr-1 (nr <= 4).  Groups go in pairs (g, g+1): one vector holds
 * weights 0..15 of both groups (g in the low 128 bits), another weights
 * 16..31, so after the multiply-adds lanes 0..3 sum group g and lanes 4..7
 * group g+1, and both groups' scales apply in one FMA; the correction term
 * rides in the same accumulator (a quarter per lane).  Each pair's
 * activations are loaded once for all the rows. */
INL void rows_tile(const quant_q4 *q, int r, int nr, const int8_t *xq, const float *dx,
                   const float *corr, const float *b, float *y)
{
    const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(15);
    const __m256i pick = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    const quant_block_q4 *row[4];
    __m256 acc[4];
    for (int t = 0; t < nr; t++) {
        row[t] = q->blocks + (size_t)(r + t) * q->nb;
        acc[t] = _mm256_setzero_ps();
    }
    int g = 0;
    for (; g + 2 <= q->nb; g += 2) {
        const int8_t *x0 = xq + g * G, *x1 = x0 + G;
        __m256i xa = load2x16(x0, x1), xb = load2x16(x0 + 16, x1 + 16);
        __m256 dxv = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadl_pi(
                                                  _mm_setzero_ps(), (const __m64 *)(dx + g))), pick);
        __m256 cv = _mm256_mul_ps(_mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadl_pi(
                                      _mm_setzero_ps(), (const __m64 *)(corr + g))), pick),
                                  _mm256_set1_ps(0.25f));
        for (int t = 0; t < nr; t++) {
            const quant_block_q4 *bl = &row[t][g];
            __m256i v = load2x16(bl[0].q, bl[1].q);
            __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xa), _mm256_maddubs_epi16(hi, xb));
            __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(s16, ones));
            __m128i h = _mm_insert_epi16(_mm_cvtsi32_si128(bl[0].d), bl[1].d, 1);
            __m256 dv = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_cvtph_ps(h)), pick);
            acc[t] = _mm256_fmadd_ps(p, _mm256_mul_ps(dv, dxv), acc[t]);
            acc[t] = _mm256_fnmadd_ps(dv, cv, acc[t]);
        }
    }
    if (g < q->nb) { /* the odd last group: weights 0..15 low, 16..31 high */
        __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + g * G));
        for (int t = 0; t < nr; t++) {
            const quant_block_q4 *bl = &row[t][g];
            float d = _cvtsh_ss(bl->d);
            __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(nibbles(bl), xv), ones);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d * dx[g]), acc[t]);
            acc[t] = _mm256_fnmadd_ps(_mm256_set1_ps(d), _mm256_set1_ps(corr[g] * 0.125f), acc[t]);
        }
    }
    for (int t = 0; t < nr; t++)
        y[r + t] = hsum8(acc[t]) + (b ? b[r + t] : 0.0f);
}

AVX2 void q4x8_rows_avx2(const quant_q4 *q, const int8_t *xq, const float *dx, const float *corr,
                         const float *b, float *y, int r0, int r1)
{
    int r = r0;
    for (; r + 4 <= r1; r += 4)
        rows_tile(q, r, 4, xq, dx, corr, b, y);
    for (; r < r1; r++)
        rows_tile(q, r, 1, xq, dx, corr, b, y);
}

/* ---- driver: one sample at a time --------------------------------------------------- */

enum { Q4X8_STACK_GROUPS = 128 }; /* k <= 4096 needs no allocation */

int q4x8_gemm_rows_avx2(const quant_q4 *q, const float *x, int n, const float *b, float *y,
                        int r0, int r1)
{
    _Alignas(32) int8_t xq_stack[Q4X8_STACK_GROUPS * G];
    float f_stack[2 * Q4X8_STACK_GROUPS];
    int8_t *xq = xq_stack;
    float *f = f_stack;
    if (q->nb > Q4X8_STACK_GROUPS) {
        xq = kd_malloc((size_t)q->nb * G);
        f = kd_malloc((size_t)q->nb * 2 * sizeof *f);
        if (!xq || !f) {
            kd_free(xq);
            kd_free(f);
            return -1;
        }
    }
    for (int i = 0; i < n; i++) {
        q4x8_quantize_avx2(x + (size_t)i * q->k, q->k, xq, f, f + q->nb);
        q4x8_rows_avx2(q, xq, f, f + q->nb, b, y + (size_t)i * q->m, r0, r1);
    }
    if (xq != xq_stack) {
        kd_free(xq);
        kd_free(f);
    }
    return 0;
}
