/* AVX2 int8 GEMM over the packed panel layout (a panel's 64-byte block is two
 * 32-byte halves of 8 rows x 4 k).
 *
 * _mm256_maddubs_epi16 multiplies u8 by s8 and adds pairs into int16 with
 * saturation.  The sign trick makes the u8 operand |x| and the s8 operand
 * sign(x) * w, whose product is x * w.  |x| <= 128 and |w| <= 127 (weights are
 * quantized to [-127, 127], never -128), so a pair sums to at most
 * 2 * 128 * 127 = 32512 < 32767: the saturation can never trigger and the
 * result is exact.  _mm256_madd_epi16 with ones then widens pairs to int32.
 * Chosen over sign-extension to int16 + madd because it does 32 MACs per
 * maddubs instead of 16.  Only called when qgemm_isa_supported(QGEMM_AVX2). */
#include "internal.h"

#include <immintrin.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2")))
#define TILE static inline __attribute__((always_inline)) AVX2

TILE __m256i x_group(const int8_t *x, int nb)
{
    int32_t v = 0;
    memcpy(&v, x, (size_t)nb);
    return _mm256_set1_epi32(v);
}

/* Loads 8 int32 (or floats) of rows r0..r0+7 of which `left` exist; 0 beyond. */
TILE __m256i load8(const int32_t *p, int left)
{
    if (left >= 8)
        return _mm256_loadu_si256((const __m256i *)p);
    int32_t t[8] = {0};
    memcpy(t, p, (size_t)(left > 0 ? left : 0) * sizeof *t);
    return _mm256_loadu_si256((const __m256i *)t);
}

TILE __m256 load8f(const float *p, int left)
{
    return _mm256_castsi256_ps(load8((const int32_t *)p, left));
}

/* ---- output stage (same arithmetic as qgemm_vnni.c's requant16, 8 lanes) ---------- */

TILE __m256i requant8(__m256i v, __m256i mult, __m256i shift)
{
    __m256i zero = _mm256_setzero_si256(), one = _mm256_set1_epi32(1);
    __m256i ls = _mm256_max_epi32(shift, zero);
    __m256i rs = _mm256_max_epi32(_mm256_sub_epi32(zero, shift), zero);
    __m256i t = _mm256_sllv_epi32(v, ls);
    __m256i ok = _mm256_cmpeq_epi32(_mm256_srav_epi32(t, ls), v);
    __m256i sat = _mm256_xor_si256(_mm256_srai_epi32(v, 31), _mm256_set1_epi32(INT32_MAX));
    v = _mm256_blendv_epi8(sat, t, ok);
    __m256i half = _mm256_set1_epi64x((int64_t)1 << 30);
    __m256i pe = _mm256_add_epi64(_mm256_mul_epi32(v, mult), half);
    __m256i po = _mm256_add_epi64(
        _mm256_mul_epi32(_mm256_srli_epi64(v, 32), _mm256_srli_epi64(mult, 32)), half);
    __m256i h = _mm256_blend_epi32(_mm256_srli_epi64(pe, 31), _mm256_slli_epi64(po, 1), 0xAA);
    __m256i mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, rs), one);
    __m256i rem = _mm256_and_si256(h, mask);
    __m256i thr = _mm256_add_epi32(_mm256_srli_epi32(mask, 1), _mm256_srli_epi32(h, 31));
    __m256i q = _mm256_srav_epi32(h, rs);
    return _mm256_sub_epi32(q, _mm256_cmpgt_epi32(rem, thr)); /* true is -1 */
}

AVX2 void qgemm_avx2_epilogue8(const qgemm_packed *p, const qgemm_epi *ep, const int32_t *raw,
                               int r0, int i, void *y)
{
    __m256i acc = _mm256_loadu_si256((const __m256i *)raw);
    int left = p->m - r0;
    if (left <= 0)
        return;
    __m256i rs = _mm256_loadu_si256((const __m256i *)(p->row_sum + r0));
    acc = _mm256_sub_epi32(acc, _mm256_mullo_epi32(_mm256_set1_epi32(ep->x_zero), rs));
    if (ep->bias)
        acc = _mm256_add_epi32(acc, load8(ep->bias + r0, left));
    size_t at = (size_t)i * p->m + r0;
    int nw = left < 8 ? left : 8;
    if (ep->out_f32) {
        __m256 s = _mm256_mul_ps(_mm256_set1_ps(ep->x_scale), load8f(ep->w_scale + r0, left));
        __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), s);
        if (ep->fbias)
            v = _mm256_add_ps(v, load8f(ep->fbias + r0, left));
        float t[8];
        _mm256_storeu_ps(t, v);
        memcpy((float *)y + at, t, (size_t)nw * sizeof *t);
        return;
    }
    __m256i v = requant8(acc, load8(ep->mult + r0, left), load8(ep->shift + r0, left));
    v = _mm256_max_epi32(v, _mm256_set1_epi32(ep->lo - ep->y_zero));
    v = _mm256_min_epi32(v, _mm256_set1_epi32(ep->hi - ep->y_zero));
    v = _mm256_add_epi32(v, _mm256_set1_epi32(ep->y_zero));
    __m256i w16 = _mm256_packs_epi32(v, v);
    __m256i b = _mm256_packs_epi16(w16, w16); /* bytes 0..3 of each lane: 4 outputs */
    b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0));
    int8_t t[32];
    _mm256_storeu_si256((__m256i *)t, b);
    memcpy((int8_t *)y + at, t, (size_t)nw);
}

/* ---- the register tile: np panels x ns samples, two 8-row halves per panel -------- */

TILE void tile(const qgemm_packed *p, int p0, int np, const int8_t *x, int i0, int ns,
               const qgemm_epi *ep, void *y)
{
    __m256i acc[4][2][2], ones = _mm256_set1_epi16(1);
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
        __m256i xb[2], ax[2];
        for (int s = 0; s < ns; s++) {
            xb[s] = g < kfull ? x_group(xs[s] + 4 * g, 4) : x_group(xs[s] + 4 * g, p->k - 4 * g);
            ax[s] = _mm256_abs_epi8(xb[s]);
        }
        for (int a = 0; a < np; a++)
            for (int h = 0; h < 2; h++) {
                __m256i w = _mm256_load_si256((const __m256i *)(wb[a] + 64 * (size_t)g + 32 * h));
                for (int s = 0; s < ns; s++) {
                    __m256i pr = _mm256_maddubs_epi16(ax[s], _mm256_sign_epi8(w, xb[s]));
                    acc[a][h][s] = _mm256_add_epi32(acc[a][h][s], _mm256_madd_epi16(pr, ones));
                }
            }
    }
    /* through memory: passing vectors to a call keeps gcc from holding acc in registers */
    int32_t raw[4][2][2][8] __attribute__((aligned(32)));
    for (int a = 0; a < np; a++)
        for (int h = 0; h < 2; h++)
            for (int s = 0; s < ns; s++)
                _mm256_store_si256((__m256i *)raw[a][h][s], acc[a][h][s]);
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

AVX2 void qgemm_avx2_part(const qgemm_packed *p, const int8_t *x, int n, const qgemm_epi *ep,
                          void *y, int pb, int pe)
{
    int i = 0;
    for (; i + 2 <= n; i += 2) /* GEMM: 2 panels x 2 samples x 2 halves = 8 accumulators */
        sweep(p, 2, x, i, 2, ep, y, pb, pe);
    for (; i < n; i++) /* GEMV and the batch tail: 4 panels = 8 accumulators */
        sweep(p, 4, x, i, 1, ep, y, pb, pe);
}

void qgemm_avx2(const qgemm_packed *p, const int8_t *x, int n, const qgemm_epi *ep, void *y)
{
    qgemm_avx2_part(p, x, n, ep, y, 0, p->mp / 16);
}
