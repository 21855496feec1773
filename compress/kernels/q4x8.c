/* q4x8: int4 weights x per-group int8 activations (see q4x8.h): the scalar
 * specification, the AVX2 kernels, and the per-sample driver.
 *
 * Why: at batch 1 the float kernel spends ~30 instructions per 32 weights
 * turning nibbles into floats; here a block costs one u8 x s8 maddubs, one
 * madd, one convert and one FMA per row, so the GEMV runs near the speed at
 * which the 0.56 bytes per weight arrive. */
#include "q4x8.h"
#include "cpu.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define G QUANT_Q4_GROUP

enum { Q4X8_STACK_GROUPS = 128 }; /* k <= 4096: the quantizer's scratch on the stack */

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

/* One sample's quantized activations laid out for the kernel, one record per
 * pair of groups (g, g+1): the weights of a pair arrive as one vector whose
 * low 128 bits hold group g's 16 bytes (nibbles: weights j and j+16), the
 * high 128 bits group g+1's.  xa holds the activations that meet the low
 * nibbles (weights 0..15 of g, then of g+1), xb the high ones (16..31);
 * after maddubs + madd, int32 lane L sums 4 positions of xa and 4 of xb, and
 * c8[L] is 8 times the activations at those positions, so that lane minus
 * c8 is exactly sum (nib - 8) * xq: the -8 of every nibble is folded out in
 * integers (the record holds -c8, the start of a VNNI accumulation).  dx: group g's scale in lanes 0..3, g+1's in 4..7.  A missing
 * g+1 (odd group count) has zero activations, c8 and dx. */
struct q4x8_pair {
    int8_t xa[32], xb[32];
    int32_t nc8[8]; /* minus c8 */
    float dx[8];
};

size_t q4x8_prep_bytes(const quant_q4 *q, int n)
{
    return (size_t)n * ((q->nb + 1) / 2) * sizeof(q4x8_pair);
}

/* ---- the two-step form of kernels.h (a team shares one quantization) ------------------ */

size_t quant_q4_prep_bytes(int k, int n)
{
    int nb = (k + G - 1) / G;
    if (kernels_isa() < KD_ISA_AVX2 || k <= 0 || n <= 0 || nb > Q4X8_STACK_GROUPS)
        return 0;
    return (size_t)n * ((nb + 1) / 2) * sizeof(q4x8_pair);
}

void quant_q4_prep(const quant_q4 *q, const float *x, int i0, int i1, void *scratch)
{
    (void)q4x8_prep_avx2(q, x, i0, i1, scratch); /* k <= 4096: no allocation, cannot fail */
}

void quant_q4_gemm_prepped(const quant_q4 *q, const void *scratch, int n, const float *b,
                           float *y, int r0, int r1)
{
    q4x8_gemm_prepped_avx2(q, scratch, n, b, y, r0, r1);
}

/* Samples [i0, i1) of x into their records (each sample (nb + 1) / 2 of
 * them, from p); xq, dx, corr: scratch of nb groups. */
static AVX2 void prep_samples(const quant_q4 *q, const float *x, int i0, int i1, q4x8_pair *p,
                              int8_t *xq, float *dx, float *corr)
{
    const int nb = q->nb, np = (nb + 1) / 2;
    const __m256i eight = _mm256_set1_epi8(8), ones = _mm256_set1_epi16(1);
    const __m256i pick = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    for (int i = i0; i < i1; i++) {
        q4x8_quantize_avx2(x + (size_t)i * q->k, q->k, xq, dx, corr);
        q4x8_pair *out = p + (size_t)i * np;
        for (int g = 0; g < nb; g += 2) {
            const int8_t *x0 = xq + g * G;
            int two = g + 1 < nb;
            __m256i xa, xb;
            __m128 d2;
            if (two) {
                xa = load2x16(x0, x0 + G);
                xb = load2x16(x0 + 16, x0 + G + 16);
                d2 = _mm_setr_ps(dx[g], dx[g + 1], 0.0f, 0.0f);
            } else {
                xa = _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)x0));
                xa = _mm256_inserti128_si256(xa, _mm_setzero_si128(), 1);
                xb = _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(x0 + 16)));
                xb = _mm256_inserti128_si256(xb, _mm_setzero_si128(), 1);
                d2 = _mm_setr_ps(dx[g], 0.0f, 0.0f, 0.0f);
            }
            __m256i c16 = _mm256_add_epi16(_mm256_maddubs_epi16(eight, xa),
                                           _mm256_maddubs_epi16(eight, xb));
            q4x8_pair *o = out + g / 2;
            _mm256_storeu_si256((__m256i *)o->xa, xa);
            _mm256_storeu_si256((__m256i *)o->xb, xb);
            _mm256_storeu_si256((__m256i *)o->nc8,
                                _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_madd_epi16(c16, ones)));
            _mm256_storeu_ps(o->dx, _mm256_permutevar8x32_ps(_mm256_castps128_ps256(d2), pick));
        }
    }
}

/* acc[t][u] += the pair p of rows t (weights v, scales h) times samples u:
 * the int32 lanes sum (nib - 8) * xq exactly, as madd of maddubs (AVX2; no
 * int16 saturation: |15 * 127 * 2| * 2 < 2^15) or as two VNNI dpbusd from
 * -c8; either way the same integers, then the same float steps, so the two
 * paths give the same bits. */
#define PAIR_STEP(name, attr, lanes)                                                               \
    static inline __attribute__((always_inline)) attr void name(                                  \
        __m256 acc[4][8], const __m256i v[4], const __m128i h[4], int NR, const q4x8_pair *a,    \
        size_t np, int NS)                                                                        \
    {                                                                                             \
        const __m256i m4 = _mm256_set1_epi8(15);                                                  \
        const __m256i pick = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);                           \
        for (int t = 0; t < NR; t++) {                                                            \
            __m256 dv = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_cvtph_ps(h[t])), pick); \
            __m256i lo = _mm256_and_si256(v[t], m4);                                              \
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v[t], 4), m4);                        \
            for (int u = 0; u < NS; u++) {                                                        \
                const q4x8_pair *au = a + (size_t)u * np;                                         \
                __m256i pi = lanes(lo, hi, au);                                                   \
                acc[t][u] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pi),                               \
                                            _mm256_mul_ps(dv, _mm256_loadu_ps(au->dx)), acc[t][u]); \
            }                                                                                     \
        }                                                                                         \
    }

INL __m256i lanes_avx2(__m256i lo, __m256i hi, const q4x8_pair *au)
{
    __m256i s16 = _mm256_add_epi16(
        _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)au->xa)),
        _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)au->xb)));
    return _mm256_add_epi32(_mm256_madd_epi16(s16, _mm256_set1_epi16(1)),
                            _mm256_loadu_si256((const __m256i *)au->nc8));
}

#define VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
static inline __attribute__((always_inline)) VNNI __m256i lanes_vnni(__m256i lo, __m256i hi,
                                                                     const q4x8_pair *au)
{
    __m256i acc = _mm256_loadu_si256((const __m256i *)au->nc8);
    acc = _mm256_dpbusd_epi32(acc, lo, _mm256_loadu_si256((const __m256i *)au->xa));
    return _mm256_dpbusd_epi32(acc, hi, _mm256_loadu_si256((const __m256i *)au->xb));
}

PAIR_STEP(pair_avx2, AVX2, lanes_avx2)
PAIR_STEP(pair_vnni, VNNI, lanes_vnni)

/* Rows r .. r+NR-1 times samples s .. s+NS-1, every group pair: each pair's
 * weights are decoded once per row and meet the NS samples in registers.
 * Each output sees the same operations in the same order whatever NR and
 * NS are, so a sample's outputs do not depend on the batch around it. */
#define TILE(name, attr, step)                                                                    \
    static inline __attribute__((always_inline)) attr void name(                                  \
        const quant_q4 *q, const q4x8_pair *xp, int r, int NR, int s, int NS, const float *b,     \
        float *y)                                                                                 \
    {                                                                                             \
        const int nb = q->nb, np = (nb + 1) / 2, full = nb / 2;                                   \
        const quant_block_q4 *row[4];                                                             \
        __m256 acc[4][8];                                                                         \
        for (int t = 0; t < NR; t++) {                                                            \
            row[t] = q->blocks + (size_t)(r + t) * nb;                                            \
            for (int u = 0; u < NS; u++)                                                          \
                acc[t][u] = _mm256_setzero_ps();                                                  \
        }                                                                                         \
        const q4x8_pair *a = xp + (size_t)s * np;                                                 \
        int p = 0;                                                                                \
        for (; p < full; p++) {                                                                   \
            __m256i v[4];                                                                         \
            __m128i h[4];                                                                         \
            for (int t = 0; t < NR; t++) {                                                        \
                const quant_block_q4 *bl = row[t] + 2 * p;                                        \
                v[t] = load2x16(bl[0].q, bl[1].q);                                                \
                h[t] = _mm_insert_epi16(_mm_cvtsi32_si128(bl[0].d), bl[1].d, 1);                  \
            }                                                                                     \
            step(acc, v, h, NR, a + p, (size_t)np, NS);                                           \
        }                                                                                         \
        if (p < np) { /* the odd last group: nothing in the high half */                          \
            __m256i v[4];                                                                         \
            __m128i h[4];                                                                         \
            for (int t = 0; t < NR; t++) {                                                        \
                const quant_block_q4 *bl = row[t] + 2 * p;                                        \
                v[t] = _mm256_inserti128_si256(                                                   \
                    _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)bl[0].q)),           \
                    _mm_setzero_si128(), 1);                                                      \
                h[t] = _mm_cvtsi32_si128(bl[0].d);                                                \
            }                                                                                     \
            step(acc, v, h, NR, a + p, (size_t)np, NS);                                           \
        }                                                                                         \
        for (int t = 0; t < NR; t++)                                                              \
            for (int u = 0; u < NS; u++)                                                          \
                y[(size_t)(s + u) * q->m + r + t] = hsum8(acc[t][u]) + (b ? b[r + t] : 0.0f);     \
    }

TILE(tile_avx2, AVX2, pair_avx2)
TILE(tile_vnni, VNNI, pair_vnni)

/* Row chunks small enough that their weights stay in L1 while every sample
 * passes; within a chunk, tiles of 4 rows x 2 samples. */
enum { Q4X8_CHUNK = 32, Q4X8_NR = 1, Q4X8_NS = 8, Q4X8_NR1 = 4 };

#define GEMM(name, attr, tile)                                                                    \
    static attr void name##_1(const quant_q4 *q, const q4x8_pair *xp, int r, int s,               \
                              const float *b, float *y)                                           \
    {                                                                                             \
        tile(q, xp, r, 1, s, 1, b, y);                                                            \
    }                                                                                             \
    static attr void name##_rx1(const quant_q4 *q, const q4x8_pair *xp, int r, int s,             \
                                const float *b, float *y)                                         \
    {                                                                                             \
        tile(q, xp, r, Q4X8_NR1, s, 1, b, y);                                                      \
    }                                                                                             \
    static attr void name##_1xs(const quant_q4 *q, const q4x8_pair *xp, int r, int s,             \
                                const float *b, float *y)                                         \
    {                                                                                             \
        tile(q, xp, r, 1, s, Q4X8_NS, b, y);                                                      \
    }                                                                                             \
    static attr void name##_rxs(const quant_q4 *q, const q4x8_pair *xp, int r, int s,             \
                                const float *b, float *y)                                         \
    {                                                                                             \
        tile(q, xp, r, Q4X8_NR, s, Q4X8_NS, b, y);                                                \
    }                                                                                             \
    static void name(const quant_q4 *q, const q4x8_pair *xp, int n, const float *b, float *y,     \
                     int r0, int r1)                                                              \
    {                                                                                             \
        for (int c0 = r0; c0 < r1; c0 += Q4X8_CHUNK) {                                            \
            int c1 = r1 - c0 < Q4X8_CHUNK ? r1 : c0 + Q4X8_CHUNK, s = 0;                          \
            for (; s + Q4X8_NS <= n; s += Q4X8_NS) {                                              \
                int r = c0;                                                                       \
                for (; r + Q4X8_NR <= c1; r += Q4X8_NR)                                           \
                    name##_rxs(q, xp, r, s, b, y);                                                \
                for (; r < c1; r++)                                                               \
                    name##_1xs(q, xp, r, s, b, y);                                                \
            }                                                                                     \
            for (; s < n; s++) {                                                                  \
                int r = c0;                                                                       \
                for (; r + Q4X8_NR1 <= c1; r += Q4X8_NR1)                                           \
                    name##_rx1(q, xp, r, s, b, y);                                                \
                for (; r < c1; r++)                                                               \
                    name##_1(q, xp, r, s, b, y);                                                  \
            }                                                                                     \
        }                                                                                         \
    }

GEMM(gemm_avx2, AVX2, tile_avx2)
GEMM(gemm_vnni, VNNI, tile_vnni)

void q4x8_gemm_prepped_avx2(const quant_q4 *q, const q4x8_pair *xp, int n, const float *b,
                            float *y, int r0, int r1)
{
    (kernels_has_vnni512() ? gemm_vnni : gemm_avx2)(q, xp, n, b, y, r0, r1);
}

/* ---- drivers -------------------------------------------------------------------------- */

int q4x8_prep_avx2(const quant_q4 *q, const float *x, int i0, int i1, q4x8_pair *p)
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
    prep_samples(q, x, i0, i1, p, xq, f, f + q->nb);
    if (xq != xq_stack) {
        kd_free(xq);
        kd_free(f);
    }
    return 0;
}

enum { Q4X8_STACK_PAIRS = 64 }; /* batch 1 of k <= 4096 needs no allocation */

int q4x8_gemm_rows_avx2(const quant_q4 *q, const float *x, int n, const float *b, float *y,
                        int r0, int r1)
{
    _Alignas(32) q4x8_pair p_stack[Q4X8_STACK_PAIRS];
    size_t bytes = q4x8_prep_bytes(q, n);
    q4x8_pair *p = n == 1 && bytes <= sizeof p_stack ? p_stack : kd_malloc(bytes);
    int rc = p ? q4x8_prep_avx2(q, x, 0, n, p) : -1;
    if (!rc)
        q4x8_gemm_prepped_avx2(q, p, n, b, y, r0, r1);
    if (p != p_stack)
        kd_free(p);
    return rc;
}
