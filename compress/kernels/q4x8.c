/* q4x8: int4 weights x per-group int8 activations (see q4x8.h): the scalar
 * specification, the AVX2 kernels, and the per-sample driver.
 *
 * Why: at batch 1 the float kernel spends ~30 instructions per 32 weights
 * turning nibbles into floats; here 32 weights cost one u8 x s8 maddubs and
 * half a madd, and the float work is one convert, multiply and FMA per
 * 4 rows x 2 groups: the weights come regrouped by fours (quant_q4_quad, one
 * 128-bit load of 8 scales), the four rows' int32 lanes are added
 * horizontally into one vector.  Against one row at a time with a scale per
 * row (the layout before), batch 1 of a 1200 x 1200 layer went from 2.0x
 * to 3.1x OpenBLAS's sgemv on one thread (AVX2, loaded host).  Batch 1
 * without VNNI reads vertical records instead (build_vert, gemv_vert): on
 * Zen 3 the quads' horizontal sums (vphaddw, 2 cycles each) cost more than
 * the products. */
#include "q4x8.h"
#include "cpu.h"

#include <assert.h>
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

/* Two halves of 16 bytes as one vector: lo in bits 0..127. */
INL __m256i load2x16(const void *lo, const void *hi)
{
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)lo)),
                                   _mm_loadu_si128((const __m128i *)hi), 1);
}

/* One sample's quantized activations laid out for the kernel, one record per
 * pair of groups (g, g+1), to meet a quant_q4_quad's rows: each row's 32
 * bytes of a pair load as one vector whose low 128 bits hold group g's 16
 * bytes (nibbles: weights j and j+16), the high 128 bits group g+1's.  xa
 * holds the activations that meet the low nibbles (weights 0..15 of g, then
 * of g+1), xb the high ones (16..31).  After maddubs + madd and the
 * horizontal adds of four rows, lane t holds row t's sum of nib * xq over
 * group g and lane 4 + t over g+1; nc8 is minus 8 times the group's sum of
 * xq (g in lanes 0..3, g+1 in 4..7), so that the sum plus nc8 is exactly
 * sum (nib - 8) * xq: the -8 of every nibble is folded out in integers.
 * dx: group g's scale in lanes 0..3, g+1's in 4..7.  A missing g+1 (odd
 * group count) has zero activations, nc8 and dx. */
struct q4x8_pair {
    int8_t xa[32], xb[32];
    int32_t nc8[8]; /* minus c8 */
    float dx[8];
};

size_t q4x8_prep_bytes(const quant_q4 *q, int n)
{
    return (size_t)n * ((q->nb + 1) / 2) * sizeof(q4x8_pair);
}

/* ---- the weights' layout ------------------------------------------------------------ */

/* Nibble j (0..31) of row r's group g, 8 past the matrix (weight 0). */
static int nib_or_8(const quant_q4 *q, int r, int g, int j)
{
    return r < q->m ? nib_at(&q->blocks[(size_t)r * q->nb + g], j) : 8;
}

/* The batch-1 records (quant_q4.vert): for 8 rows r0 + i and group g, 4
 * vectors of 32 bytes; vector c's byte 4i + t holds row r0 + i's nibble
 * 8c + t in its low half and 8c + 4 + t in its high half, so one maddubs
 * against x[8c .. 8c + 4) broadcast (and one against x[8c + 4 ..)) gives
 * each row's products in its own two int16 lanes: no horizontal sums.
 * vert_d: the 8 rows' scales of the group (0 past m). */
static int build_vert(quant_q4 *q, kd_err *e)
{
    int n8 = (q->m + 7) / 8;
    kd_afree(q->vert);
    kd_free(q->vert_d);
    q->vert = (uint8_t *)kd_afloat((size_t)n8 * q->nb * 32);
    q->vert_d = kd_calloc((size_t)n8 * q->nb * 8, sizeof *q->vert_d);
    if (!q->vert || !q->vert_d)
        return kd_err_set(e, KD_ENOMEM, "int4: out of memory for the kernels' layout of %d x %d",
                          q->m, q->k);
    for (int P = 0; P < n8; P++)
        for (int g = 0; g < q->nb; g++) {
            uint8_t *o = q->vert + ((size_t)P * q->nb + g) * 128;
            for (int c = 0; c < 4; c++)
                for (int i = 0; i < 8; i++)
                    for (int t = 0; t < 4; t++)
                        o[32 * c + 4 * i + t] =
                            (uint8_t)(nib_or_8(q, 8 * P + i, g, 8 * c + t) |
                                      nib_or_8(q, 8 * P + i, g, 8 * c + 4 + t) << 4);
            for (int i = 0; i < 8 && 8 * P + i < q->m; i++)
                q->vert_d[((size_t)P * q->nb + g) * 8 + i] =
                    q->blocks[(size_t)(8 * P + i) * q->nb + g].d;
        }
    return KD_OK;
}

int quant_q4_build_quads(quant_q4 *q, kd_err *e)
{
    int nq = (q->m + 3) / 4, np = (q->nb + 1) / 2;
    kd_free(q->quads);
    q->quads = kd_malloc((size_t)nq * np * sizeof *q->quads);
    if (!q->quads)
        return kd_err_set(e, KD_ENOMEM, "int4: out of memory for the kernels' layout of %d x %d",
                          q->m, q->k);
    for (int Q = 0; Q < nq; Q++)
        for (int p = 0; p < np; p++) {
            quant_q4_quad *o = &q->quads[(size_t)Q * np + p];
            memset(o->q, 0x88, sizeof o->q); /* nibbles 8: weight 0 */
            memset(o->d, 0, sizeof o->d);
            for (int t = 0; t < 4 && 4 * Q + t < q->m; t++)
                for (int h = 0; h < 2 && 2 * p + h < q->nb; h++) {
                    const quant_block_q4 *bl = &q->blocks[(size_t)(4 * Q + t) * q->nb + 2 * p + h];
                    memcpy(o->q[t] + 16 * h, bl->q, sizeof bl->q);
                    o->d[4 * h + t] = bl->d;
                }
        }
    return build_vert(q, e);
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
    assert(q->quads);
    q4x8_gemm_prepped_avx2(q, scratch, n, b, y, r0, r1);
}

/* Each 128-bit half's four int32 lanes summed into all four. */
INL __m256i sum_halves(__m256i v)
{
    v = _mm256_add_epi32(v, _mm256_shuffle_epi32(v, 0x4e));
    return _mm256_add_epi32(v, _mm256_shuffle_epi32(v, 0xb1));
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
            __m256i c8 = sum_halves(_mm256_madd_epi16(c16, ones));
            q4x8_pair *o = out + g / 2;
            _mm256_storeu_si256((__m256i *)o->xa, xa);
            _mm256_storeu_si256((__m256i *)o->xb, xb);
            _mm256_storeu_si256((__m256i *)o->nc8, _mm256_sub_epi32(_mm256_setzero_si256(), c8));
            _mm256_storeu_ps(o->dx, _mm256_permutevar8x32_ps(_mm256_castps128_ps256(d2), pick));
        }
    }
}

/* The quad's exact integer sums of a pair against record a: lane t holds
 * row t's sum of nib * xq over group g, lane 4 + t over g+1 (before nc8).
 * AVX2: maddubs of the low and high nibbles added in int16, then two
 * rounds of int16 horizontal adds and one madd to int32: every int16 stays
 * exact (a maddubs pair is at most 2 * 15 * 127 = 3810, the lo + hi sum
 * 7620, the rounds 15240 and 30480 < 2^15), and one madd per quad instead
 * of one per row.  VNNI: two dpbusd per row, int32 horizontal adds.  The
 * same integers either way, so the two paths give the same bits. */
INL __m256i quad_sums_avx2(const __m256i lo[4], const __m256i hi[4], const q4x8_pair *a)
{
    const __m256i xa = _mm256_loadu_si256((const __m256i *)a->xa);
    const __m256i xb = _mm256_loadu_si256((const __m256i *)a->xb);
    __m256i s[4];
    for (int t = 0; t < 4; t++)
        s[t] = _mm256_add_epi16(_mm256_maddubs_epi16(lo[t], xa), _mm256_maddubs_epi16(hi[t], xb));
    __m256i h = _mm256_hadd_epi16(_mm256_hadd_epi16(s[0], s[1]), _mm256_hadd_epi16(s[2], s[3]));
    return _mm256_madd_epi16(h, _mm256_set1_epi16(1));
}

#define VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
static inline __attribute__((always_inline)) VNNI __m256i
quad_sums_vnni(const __m256i lo[4], const __m256i hi[4], const q4x8_pair *a)
{
    const __m256i xa = _mm256_loadu_si256((const __m256i *)a->xa);
    const __m256i xb = _mm256_loadu_si256((const __m256i *)a->xb);
    __m256i s[4];
    for (int t = 0; t < 4; t++)
        s[t] = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), lo[t], xa), hi[t],
                                   xb);
    return _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
}

/* One quad of rows x NS samples, every group pair: the pair's nibbles are
 * decoded once and meet the NS samples in registers.  For each sample the
 * four rows' lanes are added horizontally into one vector (row t's exact
 * integer sum over group g in lane t, over g+1 in lane 4 + t), converted
 * once, scaled by d * dx and accumulated; an output is (lane t + lane 4 + t)
 * + b.  Each output sees the same operations in the same order whatever NS
 * is and whichever rows are written, so a sample's outputs do not depend on
 * the batch around it nor on the row range.  Writes rows [r0, r1) only. */
#define TILE(name, attr, sums)                                                                   \
    static inline __attribute__((always_inline)) attr void name(                                  \
        const quant_q4 *q, const q4x8_pair *xp, int Q, int s, int NS, const float *b, float *y,   \
        int r0, int r1)                                                                           \
    {                                                                                             \
        const int np = (q->nb + 1) / 2;                                                           \
        const __m256i m4 = _mm256_set1_epi8(15);                                                  \
        const quant_q4_quad *w = q->quads + (size_t)Q * np;                                       \
        __m256 acc[Q4X8_NS];                                                                      \
        for (int u = 0; u < NS; u++)                                                              \
            acc[u] = _mm256_setzero_ps();                                                         \
        for (int p = 0; p < np; p++) {                                                            \
            __m256i lo[4], hi[4];                                                                 \
            for (int t = 0; t < 4; t++) {                                                         \
                __m256i v = _mm256_loadu_si256((const __m256i *)w[p].q[t]);                       \
                lo[t] = _mm256_and_si256(v, m4);                                                  \
                hi[t] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);                            \
            }                                                                                     \
            __m256 dv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)w[p].d));                \
            for (int u = 0; u < NS; u++) {                                                        \
                const q4x8_pair *a = xp + (size_t)(s + u) * np + p;                               \
                __m256i si = _mm256_add_epi32(sums(lo, hi, a),                                    \
                                              _mm256_loadu_si256((const __m256i *)a->nc8));       \
                acc[u] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si),                                  \
                                         _mm256_mul_ps(dv, _mm256_loadu_ps(a->dx)), acc[u]);      \
            }                                                                                     \
        }                                                                                         \
        for (int u = 0; u < NS; u++) {                                                            \
            float l[8];                                                                           \
            _mm256_storeu_ps(l, acc[u]);                                                          \
            for (int t = 0; t < 4; t++) {                                                         \
                int r = 4 * Q + t;                                                                \
                if (r >= r0 && r < r1)                                                            \
                    y[(size_t)(s + u) * q->m + r] = (l[t] + l[4 + t]) + (b ? b[r] : 0.0f);        \
            }                                                                                     \
        }                                                                                         \
    }

/* Row chunks small enough that their weights stay in L1 while every sample
 * passes; within a chunk, tiles of one quad x Q4X8_NS samples. */
enum { Q4X8_CHUNK = 8, Q4X8_NS = 4 }; /* quads per chunk, samples per tile */

#define GEMM(name, attr, sums)                                                                   \
    TILE(name##_tile, attr, sums)                                                                \
    static attr void name##_1(const quant_q4 *q, const q4x8_pair *xp, int Q, int s,               \
                              const float *b, float *y, int r0, int r1)                           \
    {                                                                                             \
        name##_tile(q, xp, Q, s, 1, b, y, r0, r1);                                                \
    }                                                                                             \
    static attr void name##_s(const quant_q4 *q, const q4x8_pair *xp, int Q, int s,               \
                              const float *b, float *y, int r0, int r1)                           \
    {                                                                                             \
        name##_tile(q, xp, Q, s, Q4X8_NS, b, y, r0, r1);                                          \
    }                                                                                             \
    static void name(const quant_q4 *q, const q4x8_pair *xp, int n, const float *b, float *y,     \
                     int r0, int r1)                                                              \
    {                                                                                             \
        int q0 = r0 / 4, q1 = (r1 + 3) / 4;                                                       \
        for (int c0 = q0; c0 < q1; c0 += Q4X8_CHUNK) {                                            \
            int c1 = q1 - c0 < Q4X8_CHUNK ? q1 : c0 + Q4X8_CHUNK, s = 0;                          \
            for (; s + Q4X8_NS <= n; s += Q4X8_NS)                                                \
                for (int Q = c0; Q < c1; Q++)                                                     \
                    name##_s(q, xp, Q, s, b, y, r0, r1);                                          \
            for (; s < n; s++)                                                                    \
                for (int Q = c0; Q < c1; Q++)                                                     \
                    name##_1(q, xp, Q, s, b, y, r0, r1);                                          \
        }                                                                                         \
    }

GEMM(gemm_avx2, AVX2, quad_sums_avx2)
GEMM(gemm_vnni, VNNI, quad_sums_vnni)

/* Batch 1 on the vertical records: NP panels of 8 rows from panel P, every
 * group; row i's exact integer sum of a group in int32 lane i (int16 first:
 * 8 maddubs pairs of at most 2 * 15 * 127, 30480 < 2^15), then the same
 * float steps as the quads' tile (groups 2p into one accumulator, 2p + 1 into
 * another, each fmadd(float(sum - c8), d * dx), then (even + odd) + b), so
 * the bits equal the quads' at any batch.  Measured on an AVX2-only Zen 3,
 * one thread, 1200 x 1200: 0.80-0.85x the quads' time (their three vphaddw
 * a quad cost 2 cycles each there). */
INL void vert_group(const quant_q4 *q, const q4x8_pair *a, int g, int P, int NP, __m256 *acc)
{
    const __m256i m4 = _mm256_set1_epi8(15), one = _mm256_set1_epi16(1);
    const int h = g & 1;
    __m256i s[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int c = 0; c < 4; c++) {
        const int8_t *xs = (c < 2 ? a->xa : a->xb) + 16 * h + 8 * (c & 1);
        int32_t lo, hi;
        memcpy(&lo, xs, 4);
        memcpy(&hi, xs + 4, 4);
        __m256i xl = _mm256_set1_epi32(lo), xh = _mm256_set1_epi32(hi);
        for (int u = 0; u < NP; u++) {
            __m256i w = _mm256_load_si256(
                (const __m256i *)(q->vert + ((size_t)(P + u) * q->nb + g) * 128 + 32 * c));
            s[u] = _mm256_add_epi16(s[u], _mm256_maddubs_epi16(_mm256_and_si256(w, m4), xl));
            s[u] = _mm256_add_epi16(
                s[u], _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(w, 4), m4), xh));
        }
    }
    __m256i nc8 = _mm256_set1_epi32(a->nc8[4 * h]);
    __m256 dx = _mm256_set1_ps(a->dx[4 * h]);
    for (int u = 0; u < NP; u++) {
        __m256i si = _mm256_add_epi32(_mm256_madd_epi16(s[u], one), nc8);
        __m256 d = _mm256_cvtph_ps(
            _mm_loadu_si128((const __m128i *)(q->vert_d + ((size_t)(P + u) * q->nb + g) * 8)));
        acc[2 * u + h] =
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(si), _mm256_mul_ps(d, dx), acc[2 * u + h]);
    }
}

INL void vert_panels(const quant_q4 *q, const q4x8_pair *xp, int P, int NP, const float *b,
                     float *y, int r0, int r1)
{
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    int g = 0;
    for (; g + 2 <= q->nb; g += 2) {
        vert_group(q, xp + g / 2, g, P, NP, acc);
        vert_group(q, xp + g / 2, g + 1, P, NP, acc);
    }
    if (g < q->nb)
        vert_group(q, xp + g / 2, g, P, NP, acc);
    for (int u = 0; u < NP; u++) {
        float l[8];
        _mm256_storeu_ps(l, _mm256_add_ps(acc[2 * u], acc[2 * u + 1]));
        for (int i = 0; i < 8; i++) {
            int r = 8 * (P + u) + i;
            if (r >= r0 && r < r1)
                y[r] = l[i] + (b ? b[r] : 0.0f);
        }
    }
}

static AVX2 void gemv_vert(const quant_q4 *q, const q4x8_pair *xp, const float *b, float *y,
                           int r0, int r1)
{
    int P = r0 / 8, P1 = (r1 + 7) / 8;
    for (; P + 2 <= P1; P += 2)
        vert_panels(q, xp, P, 2, b, y, r0, r1);
    if (P < P1)
        vert_panels(q, xp, P, 1, b, y, r0, r1);
}

void q4x8_gemm_prepped_avx2(const quant_q4 *q, const q4x8_pair *xp, int n, const float *b,
                            float *y, int r0, int r1)
{
    if (kernels_has_vnni512())
        gemm_vnni(q, xp, n, b, y, r0, r1);
    else if (n == 1 && q->vert)
        gemv_vert(q, xp, b, y, r0, r1);
    else
        gemm_avx2(q, xp, n, b, y, r0, r1);
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
    if (!q->quads)
        return -1;
    size_t bytes = q4x8_prep_bytes(q, n);
    q4x8_pair *p = n == 1 && bytes <= sizeof p_stack ? p_stack : kd_malloc(bytes);
    int rc = p ? q4x8_prep_avx2(q, x, 0, n, p) : -1;
    if (!rc)
        q4x8_gemm_prepped_avx2(q, p, n, b, y, r0, r1);
    if (p != p_stack)
        kd_free(p);
    return rc;
}
