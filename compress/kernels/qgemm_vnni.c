/* AVX-512 VNNI int8 GEMM over the packed panel layout.
 *
 * _mm512_dpbusd_epi32 multiplies unsigned bytes by signed bytes.  Activations
 * are int8, so each broadcast group of 4 is offset by +128 (x ^ 0x80 per byte)
 * to make it u8 in [0, 255]; the product then carries an extra 128 * row_sum[r],
 * which the epilogue subtracts together with the zero-point term:
 *     sum (x + 128) w = sum x w + 128 * row_sum.
 * Products are at most 255 * 127 and four of them are summed into int32, so
 * nothing saturates (dpbusd, not dpbusds).  Compiled with a target attribute
 * and only called when qgemm_isa_supported(QGEMM_VNNI512). */
#include "internal.h"

#include <immintrin.h>
#include <string.h>

#define VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define TILE static inline __attribute__((always_inline)) VNNI

/* Broadcast of x[4g..4g+3] offset to u8; nb < 4 bytes read at the tail. */
TILE __m512i x_group(const int8_t *x, int nb)
{
    uint32_t v = 0;
    memcpy(&v, x, (size_t)nb);
    return _mm512_set1_epi32((int)(v ^ 0x80808080u));
}

/* ---- output stage ---------------------------------------------------------------- */

/* quant_mul_by_mult on 16 lanes (mult >= 0, so SRDHM never overflows):
 * saturating left shift, (v * mult + 2^30) >> 31 on even and odd lanes, then the
 * rounding right shift with ties away from zero. */
TILE __m512i requant16(__m512i v, __m512i mult, __m512i shift)
{
    __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi32(1);
    __m512i ls = _mm512_max_epi32(shift, zero);
    __m512i rs = _mm512_max_epi32(_mm512_sub_epi32(zero, shift), zero);
    __m512i t = _mm512_sllv_epi32(v, ls);
    __mmask16 ovf = _mm512_cmpneq_epi32_mask(_mm512_srav_epi32(t, ls), v);
    __m512i sat = _mm512_xor_si512(_mm512_srai_epi32(v, 31), _mm512_set1_epi32(INT32_MAX));
    v = _mm512_mask_blend_epi32(ovf, t, sat);
    __m512i half = _mm512_set1_epi64((int64_t)1 << 30);
    __m512i pe = _mm512_add_epi64(_mm512_mul_epi32(v, mult), half);
    __m512i po = _mm512_add_epi64(
        _mm512_mul_epi32(_mm512_srli_epi64(v, 32), _mm512_srli_epi64(mult, 32)), half);
    /* low 32 bits of (pe >> 31) in even lanes, high 32 of (po << 1) in odd ones */
    __m512i h =
        _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 31), _mm512_slli_epi64(po, 1));
    __m512i mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, rs), one);
    __m512i rem = _mm512_and_si512(h, mask);
    __m512i thr = _mm512_add_epi32(_mm512_srli_epi32(mask, 1), _mm512_srli_epi32(h, 31));
    __m512i q = _mm512_srav_epi32(h, rs);
    return _mm512_mask_add_epi32(q, _mm512_cmpgt_epi32_mask(rem, thr), q, one);
}

/* Corrects, then requantizes or dequantizes 16 accumulators of rows r0.. of
 * sample i and stores the rows that exist. */
static VNNI __attribute__((noinline)) void epilogue16(const qgemm_packed *p, const qgemm_epi *ep,
                                                      const int32_t *raw, int r0, int i, void *y)
{
    __m512i acc = _mm512_loadu_si512(raw);
    int left = p->m - r0;
    __mmask16 k = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
    __m512i rs = _mm512_loadu_si512(p->row_sum + r0);
    __m512i zc = _mm512_set1_epi32((int32_t)((uint32_t)ep->x_zero + 128u));
    acc = _mm512_sub_epi32(acc, _mm512_mullo_epi32(zc, rs));
    if (ep->bias)
        acc = _mm512_add_epi32(acc, _mm512_maskz_loadu_epi32(k, ep->bias + r0));
    size_t at = (size_t)i * p->m + r0;
    if (ep->out_f32) {
        __m512 s = _mm512_mul_ps(_mm512_set1_ps(ep->x_scale),
                                 _mm512_maskz_loadu_ps(k, ep->w_scale + r0));
        __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), s);
        if (ep->fbias)
            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, ep->fbias + r0));
        _mm512_mask_storeu_ps((float *)y + at, k, v);
        return;
    }
    __m512i v = requant16(acc, _mm512_maskz_loadu_epi32(k, ep->mult + r0),
                          _mm512_maskz_loadu_epi32(k, ep->shift + r0));
    v = _mm512_max_epi32(v, _mm512_set1_epi32(ep->lo - ep->y_zero));
    v = _mm512_min_epi32(v, _mm512_set1_epi32(ep->hi - ep->y_zero));
    v = _mm512_add_epi32(v, _mm512_set1_epi32(ep->y_zero));
    _mm512_mask_cvtepi32_storeu_epi8((int8_t *)y + at, k, v);
}

/* ---- the register tile: np panels (16 rows each) x ns samples ---------------------- */

TILE void tile(const qgemm_packed *p, int p0, int np, const int8_t *x, int i0, int ns,
               const qgemm_epi *ep, void *y)
{
    __m512i acc[8][4];
    const qgemm_block *wb[8];
    const int8_t *xs[4];
    int kg = p->kp / 4, kfull = p->k / 4;
    for (int a = 0; a < np; a++) {
        wb[a] = p->w + (size_t)(p0 + a) * kg;
        for (int s = 0; s < ns; s++)
            acc[a][s] = _mm512_setzero_si512();
    }
    for (int s = 0; s < ns; s++)
        xs[s] = x + (size_t)(i0 + s) * p->k;
    for (int g = 0; g < kg; g++) {
        __m512i xb[4];
        if (g < kfull)
            for (int s = 0; s < ns; s++)
                xb[s] = x_group(xs[s] + 4 * g, 4);
        else /* the ragged end of k: fewer than 4 bytes left */
            for (int s = 0; s < ns; s++)
                xb[s] = x_group(xs[s] + 4 * g, p->k - 4 * g);
        for (int a = 0; a < np; a++) {
            __m512i w = _mm512_load_si512(wb[a] + g);
            for (int s = 0; s < ns; s++)
                acc[a][s] = _mm512_dpbusd_epi32(acc[a][s], xb[s], w);
        }
    }
    /* through memory: passing vectors to a call keeps gcc from holding acc in registers */
    int32_t raw[8][4][16] __attribute__((aligned(64)));
    for (int a = 0; a < np; a++)
        for (int s = 0; s < ns; s++)
            _mm512_store_si512(raw[a][s], acc[a][s]);
    for (int a = 0; a < np; a++)
        for (int s = 0; s < ns; s++)
            epilogue16(p, ep, raw[a][s], 16 * (p0 + a), i0 + s, y);
}

/* ---- GEMM: activations offset once into a scratch block ------------------------------
 * With the +128 already applied, each group of 4 bytes is broadcast straight
 * from memory (a load-port uop) instead of xor + register broadcast (a port-5
 * uop competing with dpbusd).  Tiles of 3 panels x 8 samples: 24 accumulators,
 * each 64-byte weight load feeding 8 dpbusd. */
#define GEMM_NS 8

/* Rows i0 .. i0+GEMM_NS-1 of x as u8 (x + 128), each kp bytes; padding is
 * 0x80, the offset image of 0 (it meets zero weights anyway). */
TILE void offset_rows(const qgemm_packed *p, const int8_t *x, int i0, uint8_t *xu)
{
    for (int s = 0; s < GEMM_NS; s++) {
        const int8_t *src = x + (size_t)(i0 + s) * p->k;
        uint8_t *dst = xu + (size_t)s * p->kp;
        for (int c = 0; c < p->k; c++)
            dst[c] = (uint8_t)src[c] ^ 0x80u;
        for (int c = p->k; c < p->kp; c++)
            dst[c] = 0x80u;
    }
}

TILE void tile_u8(const qgemm_packed *p, int p0, int np, const uint8_t *xu, int i0,
                  const qgemm_epi *ep, void *y)
{
    __m512i acc[3][GEMM_NS];
    const qgemm_block *wb[3];
    int kg = p->kp / 4;
    for (int a = 0; a < np; a++) {
        wb[a] = p->w + (size_t)(p0 + a) * kg;
        for (int s = 0; s < GEMM_NS; s++)
            acc[a][s] = _mm512_setzero_si512();
    }
    for (int g = 0; g < kg; g++) {
        __m512i w[3];
        for (int a = 0; a < np; a++)
            w[a] = _mm512_load_si512(wb[a] + g);
        for (int s = 0; s < GEMM_NS; s++) {
            int32_t v;
            memcpy(&v, xu + (size_t)s * p->kp + 4 * (size_t)g, 4);
            __m512i xb = _mm512_set1_epi32(v);
            for (int a = 0; a < np; a++)
                acc[a][s] = _mm512_dpbusd_epi32(acc[a][s], xb, w[a]);
        }
    }
    int32_t raw[3][GEMM_NS][16] __attribute__((aligned(64)));
    for (int a = 0; a < np; a++)
        for (int s = 0; s < GEMM_NS; s++)
            _mm512_store_si512(raw[a][s], acc[a][s]);
    for (int a = 0; a < np; a++)
        for (int s = 0; s < GEMM_NS; s++)
            epilogue16(p, ep, raw[a][s], 16 * (p0 + a), i0 + s, y);
}

/* Panels [pb, pe) for GEMM_NS samples from the offset block xu. */
TILE void sweep_u8(const qgemm_packed *p, const uint8_t *xu, int i0, const qgemm_epi *ep,
                   void *y, int pb, int pe)
{
    int p0 = pb;
    for (; p0 + 3 <= pe; p0 += 3)
        tile_u8(p, p0, 3, xu, i0, ep, y);
    for (; p0 < pe; p0++)
        tile_u8(p, p0, 1, xu, i0, ep, y);
}

/* ---- GEMV and fallback: the offset applied in registers -------------------------------- */

/* Panels [pb, pe) in groups of `wide` (a constant per call site), the rest
 * one by one. */
TILE void sweep(const qgemm_packed *p, int wide, const int8_t *x, int i0, int ns,
                const qgemm_epi *ep, void *y, int pb, int pe)
{
    int p0 = pb;
    for (; p0 + wide <= pe; p0 += wide)
        tile(p, p0, wide, x, i0, ns, ep, y);
    for (; p0 < pe; p0++)
        tile(p, p0, 1, x, i0, ns, ep, y);
}

/* n >= GEMM_NS uses the offset scratch (one small allocation per call; if it
 * fails the in-register path computes the same result more slowly). */
VNNI void qgemm_vnni512_part(const qgemm_packed *p, const int8_t *x, int n,
                             const qgemm_epi *ep, void *y, int pb, int pe)
{
    int i = 0;
    uint8_t *xu = n >= GEMM_NS && pb < pe ? kd_malloc((size_t)GEMM_NS * p->kp) : NULL;
    if (xu) {
        for (; i + GEMM_NS <= n; i += GEMM_NS) {
            offset_rows(p, x, i, xu);
            sweep_u8(p, xu, i, ep, y, pb, pe);
        }
        kd_free(xu);
    }
    for (; i + 4 <= n; i += 4) /* 4 panels x 4 samples = 16 accumulators */
        sweep(p, 4, x, i, 4, ep, y, pb, pe);
    for (; i < n; i++) /* GEMV (and the batch tail): 8 panels, 8 accumulators */
        sweep(p, 8, x, i, 1, ep, y, pb, pe);
}

void qgemm_vnni512(const qgemm_packed *p, const int8_t *x, int n, const qgemm_epi *ep, void *y)
{
    qgemm_vnni512_part(p, x, n, ep, y, 0, p->mp / 16);
}
