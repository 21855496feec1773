/* Fake quantization for quantization-aware training, rows at a time so that
 * a layer can split them over its team: int8 weights (per-row max, then
 * quantize and dequantize in one pass), int4 groups, and the per-tensor
 * activation quantizer with its straight-through gradient.  Each dispatched
 * kernel gives the same bits as its _ref, and the _refs are the quantizers
 * PTQ uses (quant_weights_s8, quant_q4_block, quant_fake_forward/backward),
 * so QAT still simulates the deployed model exactly.  Before these, QAT ran
 * libm round() and a double division per weight on one thread per step. */
#include "kernels.h"
#include "avx2_inline.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) AVX2
#define G QUANT_Q4_GROUP

/* ---- references ---------------------------------------------------------------------- */

void quant_absmax_rows_ref(const float *w, int k, int r0, int r1, float *mx)
{
    for (int r = r0; r < r1; r++) {
        float m = 0.0f;
        for (int c = 0; c < k; c++)
            m = fmaxf(m, fabsf(w[(size_t)r * k + c]));
        mx[r] = m;
    }
}

/* As quant_weights_s8 then (float)q * scale: NaN codes as 0. */
void quant_fake_s8_rows_ref(const float *w, int k, int r0, int r1, const float *scale, float *out)
{
    for (int r = r0; r < r1; r++)
        for (int c = 0; c < k; c++) {
            size_t i = (size_t)r * k + c;
            double v = round((double)w[i] / scale[r]);
            int32_t q = isnan(v) ? 0 : v < -127 ? -127 : v > 127 ? 127 : (int32_t)v;
            out[i] = (float)q * scale[r];
        }
}

void quant_fake_q4_rows_ref(const float *w, int k, int r0, int r1, float *out)
{
    for (int r = r0; r < r1; r++)
        for (int c = 0; c < k; c += G) {
            size_t at = (size_t)r * k + c;
            int len = k - c < G ? k - c : G;
            quant_block_q4 b;
            quant_q4_block(w + at, len, &b);
            quant_q4_block_dequant(&b, len, out + at);
        }
}

/* ---- AVX2 -------------------------------------------------------------------------------- */

/* fmaxf(m, |x|) lane by lane: max_ps returns its second operand when the
 * first is NaN, so a NaN weight leaves the running max as fmaxf does. */
INL float hmax8(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

INL float absmax_avx2(const float *x, int n)
{
    const __m256 abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m0 = _mm256_setzero_ps(), m1 = m0;
    int c = 0;
    for (; c + 16 <= n; c += 16) {
        m0 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + c), abs), m0);
        m1 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + c + 8), abs), m1);
    }
    for (; c + 8 <= n; c += 8)
        m0 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + c), abs), m0);
    float m = hmax8(_mm256_max_ps(m0, m1));
    for (; c < n; c++)
        m = fmaxf(m, fabsf(x[c]));
    return m;
}

static AVX2 void absmax_rows_avx2(const float *w, int k, int r0, int r1, float *mx)
{
    for (int r = r0; r < r1; r++)
        mx[r] = absmax_avx2(w + (size_t)r * k, k);
}

/* 4 weights: clamp(round(w / s), -127, 127) * s, the division in double. */
INL __m128 fq8_4(__m128 w, __m256d s, __m128 sf)
{
    __m256d v = kq_round_away_pd(_mm256_div_pd(_mm256_cvtps_pd(w), s));
    v = _mm256_and_pd(v, _mm256_cmp_pd(v, v, _CMP_ORD_Q)); /* NaN codes as 0 */
    v = _mm256_min_pd(_mm256_max_pd(v, _mm256_set1_pd(-127.0)), _mm256_set1_pd(127.0));
    return _mm_mul_ps(_mm256_cvtpd_ps(v), sf);
}

static AVX2 void fake_s8_rows_avx2(const float *w, int k, int r0, int r1, const float *scale,
                                   float *out)
{
    for (int r = r0; r < r1; r++) {
        const float *x = w + (size_t)r * k;
        float *y = out + (size_t)r * k;
        __m256d s = _mm256_set1_pd((double)scale[r]);
        __m128 sf = _mm_set1_ps(scale[r]);
        int c = 0;
        for (; c + 8 <= k; c += 8) {
            _mm_storeu_ps(y + c, fq8_4(_mm_loadu_ps(x + c), s, sf));
            _mm_storeu_ps(y + c + 4, fq8_4(_mm_loadu_ps(x + c + 4), s, sf));
        }
        if (c < k)
            quant_fake_s8_rows_ref(x + c, k - c, 0, 1, scale + r, y + c);
    }
}

/* f32 -> f16 as quant_f32_to_f16 for the scales quant_q4_block makes: F16C
 * rounds to nearest even as it does for normal halves and zero; the rest
 * (saturation near 65504, inf) goes through the general conversion. */
INL uint16_t f16_of(float d)
{
    if (d == 0.0f || (d >= 0x1p-14f && d < 65504.0f))
        return (uint16_t)_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(d), _MM_FROUND_TO_NEAREST_INT),
                                           0);
    return quant_f32_to_f16(d);
}

/* One group of len <= 32 weights through quant_q4_block and back. */
INL void fake_q4_group(const float *x, int len, float *y)
{
    quant_block_q4 b;
    if (len != G) { /* the ragged tail of a row: the spec itself */
        quant_q4_block(x, len, &b);
        quant_q4_block_dequant(&b, len, y);
        return;
    }
    float d = absmax_avx2(x, G) / 7.0f;
    if (d > 0.0f && d < 0x1p-14f)
        d = 0x1p-14f;
    d = quant_f16_to_f32(f16_of(d));
    if (!(d > 0.0f) || !isfinite(d)) { /* the rare: all zero, or not finite */
        quant_q4_block(x, len, &b);
        quant_q4_block_dequant(&b, len, y);
        return;
    }
    __m256 vd = _mm256_set1_ps(d), lo = _mm256_set1_ps(-8.0f), hi = _mm256_set1_ps(7.0f);
    for (int j = 0; j < G; j += 8) {
        __m256 v = kq_round_away_ps(_mm256_div_ps(_mm256_loadu_ps(x + j), vd));
        v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q)); /* NaN: code 0 */
        v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
        _mm256_storeu_ps(y + j, _mm256_mul_ps(vd, v));
    }
}

static AVX2 void fake_q4_rows_avx2(const float *w, int k, int r0, int r1, float *out)
{
    for (int r = r0; r < r1; r++)
        for (int c = 0; c < k; c += G) {
            size_t at = (size_t)r * k + c;
            fake_q4_group(w + at, k - c < G ? k - c : G, out + at);
        }
}

/* ---- activations, per tensor ----------------------------------------------------------- */

/* Codes round(x / s) + z in double, clamped; NaN as clamp(0). */
INL __m256d act_code(__m128 x, __m256d s, __m256d z)
{
    return _mm256_add_pd(kq_round_away_pd(_mm256_div_pd(_mm256_cvtps_pd(x), s)), z);
}

static AVX2 void fake_act_forward_avx2(const float *x, size_t n, quant_params p, float *y)
{
    __m256d s = _mm256_set1_pd((double)p.scale), z = _mm256_set1_pd((double)p.zero);
    __m256d lo = _mm256_set1_pd((double)p.qmin), hi = _mm256_set1_pd((double)p.qmax);
    __m256d zero_clamped = _mm256_set1_pd(p.qmin > 0 ? p.qmin : p.qmax < 0 ? p.qmax : 0);
    __m128 sf = _mm_set1_ps(p.scale);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256d q = act_code(_mm_loadu_ps(x + i), s, z);
        q = _mm256_blendv_pd(zero_clamped, q, _mm256_cmp_pd(q, q, _CMP_ORD_Q));
        q = _mm256_sub_pd(_mm256_min_pd(_mm256_max_pd(q, lo), hi), z); /* exact: integers */
        _mm_storeu_ps(y + i, _mm_mul_ps(_mm256_cvtpd_ps(q), sf));
    }
    if (i < n)
        quant_fake_forward(x + i, 1, (int)(n - i), &p.scale, &p.zero, 0, p.qmin, p.qmax, y + i);
}

static AVX2 void fake_act_backward_avx2(const float *x, const float *dy, size_t n, quant_params p,
                                        float *dx)
{
    __m256d s = _mm256_set1_pd((double)p.scale), z = _mm256_set1_pd((double)p.zero);
    __m256d lo = _mm256_set1_pd((double)p.qmin), hi = _mm256_set1_pd((double)p.qmax);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256d q = act_code(_mm_loadu_ps(x + i), s, z);
        __m256d in = _mm256_and_pd(_mm256_cmp_pd(q, lo, _CMP_GE_OQ), _mm256_cmp_pd(q, hi, _CMP_LE_OQ));
        __m128 keep = _mm256_cvtpd_ps(_mm256_and_pd(in, _mm256_set1_pd(1.0))); /* 1 or 0 */
        __m128 mask = _mm_cmp_ps(keep, _mm_setzero_ps(), _CMP_NEQ_OQ);
        _mm_storeu_ps(dx + i, _mm_and_ps(_mm_loadu_ps(dy + i), mask));
    }
    if (i < n)
        quant_fake_backward(x + i, dy + i, 1, (int)(n - i), &p.scale, &p.zero, 0, p.qmin, p.qmax,
                            dx + i);
}

/* ---- dispatch ------------------------------------------------------------------------------ */

void quant_absmax_rows(const float *w, int k, int r0, int r1, float *mx)
{
    if (kernels_isa() >= KD_ISA_AVX2)
        absmax_rows_avx2(w, k, r0, r1, mx);
    else
        quant_absmax_rows_ref(w, k, r0, r1, mx);
}

void quant_fake_s8_rows(const float *w, int k, int r0, int r1, const float *scale, float *out)
{
    if (kernels_isa() >= KD_ISA_AVX2)
        fake_s8_rows_avx2(w, k, r0, r1, scale, out);
    else
        quant_fake_s8_rows_ref(w, k, r0, r1, scale, out);
}

void quant_fake_q4_rows(const float *w, int k, int r0, int r1, float *out)
{
    if (kernels_isa() >= KD_ISA_AVX2)
        fake_q4_rows_avx2(w, k, r0, r1, out);
    else
        quant_fake_q4_rows_ref(w, k, r0, r1, out);
}

void quant_fake_act_forward(const float *x, size_t n, quant_params p, float *y)
{
    if (kernels_isa() >= KD_ISA_AVX2)
        fake_act_forward_avx2(x, n, p, y);
    else
        quant_fake_forward(x, 1, (int)n, &p.scale, &p.zero, 0, p.qmin, p.qmax, y);
}

void quant_fake_act_backward(const float *x, const float *dy, size_t n, quant_params p, float *dx)
{
    if (kernels_isa() >= KD_ISA_AVX2)
        fake_act_backward_avx2(x, dy, n, p, dx);
    else
        quant_fake_backward(x, dy, 1, (int)n, &p.scale, &p.zero, 0, p.qmin, p.qmax, dx);
}
