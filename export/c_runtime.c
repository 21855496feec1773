/* The helper functions of the generated model.c, as C99 text.  Each is the
 * portable scalar twin of the kdbench kernel named in its comment, written
 * to perform the same float operations in the same order, so that int8
 * layers give bit-identical codes and outputs (integer arithmetic, and the
 * same roundf / division / multiplication sequence in float). */
#include <string.h>

#include "internal.h"

static const char dense_c[] =
    "/* fp32 dense: y = b + W x (nn's dense; sum order differs from BLAS) */\n"
    "static void kd_dense(const float *w, const float *b, int m, int k, const float *x,\n"
    "                     float *y)\n"
    "{\n"
    "    for (int r = 0; r < m; r++) {\n"
    "        const float *wr = w + (size_t)r * (size_t)k;\n"
    "        float s = 0.0f;\n"
    "        for (int c = 0; c < k; c++)\n"
    "            s += wr[c] * x[c];\n"
    "        y[r] = b[r] + s;\n"
    "    }\n"
    "}\n\n";

/* one fp32 CSR kernel per column index type: %s is the type, twice */
static const char csr_c[] =
    "/* fp32 CSR (compress_csr_matmul_ref): y[r] = b[r] + sum of the row's non-zeros */\n"
    "static void kd_csr_%s(const uint32_t *rp, const %s *col, const float *val,\n"
    "                        const float *b, int m, const float *x, float *y)\n"
    "{\n"
    "    for (int r = 0; r < m; r++) {\n"
    "        float s = 0.0f;\n"
    "        for (uint32_t j = rp[r]; j < rp[r + 1]; j++)\n"
    "            s += val[j] * x[col[j]];\n"
    "        y[r] = b[r] + s;\n"
    "    }\n"
    "}\n\n";

static const char quant1_c[] =
    "/* clamp(round(x / scale) + zero, -128, 127) in float, half away from zero; NaN -> -128\n"
    " * (quant_quantize_s8_ref) */\n"
    "static int32_t kd_quant1(float x, float scale, int32_t zero)\n"
    "{\n"
    "    float v = roundf(x / scale) + (float)zero;\n"
    "    if (!(v >= -128.0f))\n"
    "        return -128;\n"
    "    return v > 127.0f ? 127 : (int32_t)v;\n"
    "}\n\n";

static const char q8_common_c[] =
    "/* ---- int8 (compress/kernels: quant_quantize_s8_ref, qgemm_ref, qgemm_store1,\n"
    " * quant_requant).  Exact: the same integer arithmetic and the same float\n"
    " * operations in the same order as the scalar reference. */\n"
    "typedef struct {\n"
    "    int m, k;\n"
    "    const int8_t *w;              /* m x k, row-major, in [-127, 127] */\n"
    "    const int32_t *row_sum, *bias; /* bias at scale in_scale * w_scale[r]; NULL = 0 */\n"
    "    const int32_t *mult, *shift;  /* requantization, when out_s8 */\n"
    "    const float *w_scale, *fbias; /* fbias: the float bias of dynamic layers */\n"
    "    float in_scale;\n"
    "    int32_t in_zero;\n"
    "    int out_s8;                   /* 1: int8 output (then dequantized), 0: float */\n"
    "    float out_scale;\n"
    "    int32_t out_zero, lo;         /* lo = out_zero fuses ReLU, else -128 */\n"
    "} kd_q8;\n\n"

    "/* round(a * b / 2^31), ties toward +infinity (gemmlowp SaturatingRoundingDoublingHighMul) */\n"
    "static int32_t kd_srdhm(int32_t a, int32_t b)\n"
    "{\n"
    "    if (a == INT32_MIN && b == INT32_MIN)\n"
    "        return INT32_MAX;\n"
    "    int64_t ab = (int64_t)a * (int64_t)b;\n"
    "    int64_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));\n"
    "    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));\n"
    "}\n\n"
    "/* x / 2^e rounded to nearest, ties away from zero (RoundingDivideByPOT); the\n"
    " * shift of a negative x is written so it does not depend on the compiler */\n"
    "static int32_t kd_rdbpot(int32_t x, int e)\n"
    "{\n"
    "    int32_t mask = (int32_t)(((int64_t)1 << e) - 1);\n"
    "    int32_t rem = x & mask;\n"
    "    int32_t thr = (mask >> 1) + (x < 0 ? 1 : 0);\n"
    "    int32_t q = x >= 0 ? x >> e : ~(~x >> e);\n"
    "    return q + (rem > thr ? 1 : 0);\n"
    "}\n\n"
    "/* clamp(zero + acc * mult * 2^(shift - 31), lo, 127), TFLite's rounding */\n"
    "static int32_t kd_requant(int32_t acc, int32_t mult, int32_t shift, int32_t zero,\n"
    "                          int32_t lo)\n"
    "{\n"
    "    if (shift > 0) {\n"
    "        int64_t v = (int64_t)acc * ((int64_t)1 << shift);\n"
    "        acc = v > INT32_MAX ? INT32_MAX : v < INT32_MIN ? INT32_MIN : (int32_t)v;\n"
    "    }\n"
    "    int32_t v = kd_rdbpot(kd_srdhm(acc, mult), shift > 0 ? 0 : -shift);\n"
    "    int64_t y = (int64_t)v + zero;\n"
    "    return y < lo ? lo : y > 127 ? 127 : (int32_t)y;\n"
    "}\n\n"
    "/* y = the layer on codes xq (quantized with x_zero, x_scale): int32\n"
    " * accumulators corrected by the bias and x_zero * row_sum (wrapping, as\n"
    " * the kernels), then requantized and dequantized, or scaled to float */\n"
    "static void kd_q8_gemv(const kd_q8 *L, const int8_t *xq, int32_t x_zero, float x_scale,\n"
    "                       float *y)\n"
    "{\n"
    "    for (int r = 0; r < L->m; r++) {\n"
    "        const int8_t *wr = L->w + (size_t)r * (size_t)L->k;\n"
    "        int32_t acc = 0;\n"
    "        for (int c = 0; c < L->k; c++)\n"
    "            acc += (int32_t)xq[c] * wr[c];\n"
    "        uint32_t u = (uint32_t)acc - (uint32_t)x_zero * (uint32_t)L->row_sum[r];\n"
    "        if (L->bias)\n"
    "            u += (uint32_t)L->bias[r];\n"
    "        int32_t a = (int32_t)u;\n"
    "        if (L->out_s8) {\n"
    "            int32_t q = kd_requant(a, L->mult[r], L->shift[r], L->out_zero, L->lo);\n"
    "            y[r] = (float)(q - L->out_zero) * L->out_scale;\n"
    "        } else {\n"
    "            float s = x_scale * L->w_scale[r];\n"
    "            float v = (float)a * s;\n"
    "            y[r] = L->fbias ? v + L->fbias[r] : v;\n"
    "        }\n"
    "    }\n"
    "}\n\n";

static const char q8_static_c[] =
    "/* static int8 (dense_q8): the input quantized with the calibrated parameters */\n"
    "static void kd_q8_static(const kd_q8 *L, const float *x, int8_t *xq, float *y)\n"
    "{\n"
    "    for (int c = 0; c < L->k; c++)\n"
    "        xq[c] = (int8_t)kd_quant1(x[c], L->in_scale, L->in_zero);\n"
    "    kd_q8_gemv(L, xq, L->in_zero, L->in_scale, y);\n"
    "}\n\n";

static const char dyn_params_c[] =
    "/* dynamic int8's input parameters: from this sample's finite min/max\n"
    " * (quant_params_asym, in double), as kdbench does for a batch of one */\n"
    "static void kd_dyn_params(const float *x, int k, float *scale, int32_t *zero)\n"
    "{\n"
    "    float lo = INFINITY, hi = -INFINITY;\n"
    "    *scale = 1.0f;\n"
    "    *zero = 0;\n"
    "    for (int c = 0; c < k; c++) {\n"
    "        if (!isfinite(x[c]))\n"
    "            continue;\n"
    "        lo = x[c] < lo ? x[c] : lo;\n"
    "        hi = x[c] > hi ? x[c] : hi;\n"
    "    }\n"
    "    double a = isfinite(lo) && lo < 0 ? lo : 0.0, b = isfinite(hi) && hi > 0 ? hi : 0.0;\n"
    "    if (b - a > 0.0) {\n"
    "        *scale = (float)((b - a) / 255.0);\n"
    "        double z = round(-128.0 - a / (double)*scale);\n"
    "        *zero = isnan(z) ? 0 : z < -128 ? -128 : z > 127 ? 127 : (int32_t)z;\n"
    "    }\n"
    "}\n\n";

static const char q8_dynamic_c[] =
    "/* dynamic int8 (dense_dq8) */\n"
    "static void kd_q8_dynamic(const kd_q8 *L, const float *x, int8_t *xq, float *y)\n"
    "{\n"
    "    float scale;\n"
    "    int32_t zero;\n"
    "    kd_dyn_params(x, L->k, &scale, &zero);\n"
    "    for (int c = 0; c < L->k; c++)\n"
    "        xq[c] = (int8_t)kd_quant1(x[c], scale, zero);\n"
    "    kd_q8_gemv(L, xq, zero, scale, y);\n"
    "}\n\n";

static const char f16_c[] =
    "static float kd_f16(uint16_t h) /* exact, without F16C */\n"
    "{\n"
    "    int e = (h >> 10) & 31, man = h & 1023;\n"
    "    float f = e == 0 ? ldexpf((float)man, -24)\n"
    "              : e == 31 ? (man ? NAN : INFINITY) : ldexpf((float)(man | 1024), e - 25);\n"
    "    return h & 0x8000 ? -f : f;\n"
    "}\n\n";

static const char q4_c[] =
    "/* ---- int4 (quant_q4_gemm_ref): per row, groups of 32 weights share an fp16\n"
    " * scale d; byte j of a group holds weight j (low nibble) and j + 16 (high),\n"
    " * each stored as w / d + 8.  y[r] = b[r] + sum over groups of d * (q . x). */\n"
    "static void kd_q4(const uint16_t *d, const uint8_t *q, const float *b, int m, int k,\n"
    "                  const float *x, float *y)\n"
    "{\n"
    "    int nb = (k + 31) / 32;\n"
    "    for (int r = 0; r < m; r++) {\n"
    "        float acc = b[r];\n"
    "        for (int g = 0; g < nb; g++) {\n"
    "            const uint8_t *qg = q + ((size_t)r * (size_t)nb + (size_t)g) * 16;\n"
    "            const float *xs = x + (size_t)g * 32;\n"
    "            int len = k - g * 32 < 32 ? k - g * 32 : 32;\n"
    "            float s = 0.0f;\n"
    "            for (int j = 0; j < len; j++) {\n"
    "                int byte = qg[j % 16];\n"
    "                s += (float)((j < 16 ? byte & 15 : byte >> 4) - 8) * xs[j];\n"
    "            }\n"
    "            acc += kd_f16(d[(size_t)r * (size_t)nb + (size_t)g]) * s;\n"
    "        }\n"
    "        y[r] = acc;\n"
    "    }\n"
    "}\n\n";

static const char ql_c[] =
    "/* ---- int3, int2 (quant_ql_gemm_ref): per row, groups of 32 weights share an\n"
    " * fp16 scale d; weight j's code c = level + 2^(bits-1) has bits 0-1 in byte j % 8\n"
    " * (bit pair j / 8) and, at 3 bits, bit 2 in byte 8 + j / 8 (bit j % 8).\n"
    " * y[r] = b[r] + sum over groups of d * (levels . x). */\n"
    "static void kd_ql(const uint16_t *d, const uint8_t *q, int bits, const float *b, int m,\n"
    "                  int k, const float *x, float *y)\n"
    "{\n"
    "    int nb = (k + 31) / 32, cb = 4 * bits, off = 1 << (bits - 1);\n"
    "    for (int r = 0; r < m; r++) {\n"
    "        float acc = b[r];\n"
    "        for (int g = 0; g < nb; g++) {\n"
    "            const uint8_t *c = q + ((size_t)r * (size_t)nb + (size_t)g) * (size_t)cb;\n"
    "            const float *xs = x + (size_t)g * 32;\n"
    "            int len = k - g * 32 < 32 ? k - g * 32 : 32;\n"
    "            float s = 0.0f;\n"
    "            for (int j = 0; j < len; j++) {\n"
    "                int v = c[j % 8] >> (2 * (j / 8)) & 3;\n"
    "                if (bits == 3)\n"
    "                    v |= (c[8 + j / 8] >> (j % 8) & 1) << 2;\n"
    "                s += (float)(v - off) * xs[j];\n"
    "            }\n"
    "            acc += kd_f16(d[(size_t)r * (size_t)nb + (size_t)g]) * s;\n"
    "        }\n"
    "        y[r] = acc;\n"
    "    }\n"
    "}\n\n";

static const char qcsr_c[] =
    "/* ---- sparse int8 (quant_csr_gemm_ref): per row the non-zeros as int8 with a\n"
    " * scale; a column is the previous one plus delta (0 before a row's first) */\n"
    "static void kd_qcsr(const int32_t *rp, const uint8_t *delta, const int8_t *val,\n"
    "                    const float *scale, const float *b, int m, const float *x, float *y)\n"
    "{\n"
    "    for (int r = 0; r < m; r++) {\n"
    "        float s = 0.0f;\n"
    "        int col = 0;\n"
    "        for (int32_t j = rp[r]; j < rp[r + 1]; j++) {\n"
    "            col += delta[j];\n"
    "            s += (float)val[j] * x[col];\n"
    "        }\n"
    "        y[r] = scale[r] * s + b[r];\n"
    "    }\n"
    "}\n\n";

static const char qcsr_s8_c[] =
    "/* ---- sparse int8 with int8 inputs (csr-int8-static, quant_csr_s8_ref and\n"
    " * quant_csr_s8_out_ref): the input quantized with the calibrated xs, xz; int32\n"
    " * sums over the row's entries, corrected by xz * row_sum (wrapping, as the\n"
    " * kernels), then (float)acc * (xs * scale[r]) + b[r].  Exact. */\n"
    "static void kd_qcsr_s8(const int32_t *rp, const uint8_t *delta, const int8_t *val,\n"
    "                       const int32_t *rs, const float *scale, const float *b, float xs,\n"
    "                       int32_t xz, int m, int k, const float *x, int8_t *xq, float *y)\n"
    "{\n"
    "    for (int c = 0; c < k; c++)\n"
    "        xq[c] = (int8_t)kd_quant1(x[c], xs, xz);\n"
    "    for (int r = 0; r < m; r++) {\n"
    "        int32_t acc = 0;\n"
    "        int col = 0;\n"
    "        for (int32_t j = rp[r]; j < rp[r + 1]; j++) {\n"
    "            col += delta[j];\n"
    "            acc += (int32_t)val[j] * xq[col];\n"
    "        }\n"
    "        int32_t a = (int32_t)((uint32_t)acc - (uint32_t)xz * (uint32_t)rs[r]);\n"
    "        float s = xs * scale[r];\n"
    "        y[r] = (float)a * s + b[r];\n"
    "    }\n"
    "}\n\n";

static const char qcsr_d8_c[] =
    "/* sparse int8 with its input quantized per sample (csr-int8-dyn): dynamic\n"
    " * int8's parameters, then csr-int8-static's arithmetic.  Exact. */\n"
    "static void kd_qcsr_d8(const int32_t *rp, const uint8_t *delta, const int8_t *val,\n"
    "                       const int32_t *rs, const float *scale, const float *b, int m,\n"
    "                       int k, const float *x, int8_t *xq, float *y)\n"
    "{\n"
    "    float xs;\n"
    "    int32_t xz;\n"
    "    kd_dyn_params(x, k, &xs, &xz);\n"
    "    kd_qcsr_s8(rp, delta, val, rs, scale, b, xs, xz, m, k, x, xq, y);\n"
    "}\n\n";

static const char conv_c[] =
    "/* ---- conv2d: square kernel, stride, zero padding, NCHW; W is\n"
    " * [filters][cin][k][k] (nn's conv2d; sum order differs from im2col + BLAS) */\n"
    "typedef struct {\n"
    "    int cin, h, w, f, k, s, p, oh, ow;\n"
    "} kd_conv;\n\n"
    "static void kd_conv2d(const kd_conv *g, const float *w, const float *b, const float *x,\n"
    "                      float *y)\n"
    "{\n"
    "    for (int f = 0; f < g->f; f++)\n"
    "        for (int oy = 0; oy < g->oh; oy++)\n"
    "            for (int ox = 0; ox < g->ow; ox++) {\n"
    "                float s = 0.0f;\n"
    "                for (int c = 0; c < g->cin; c++)\n"
    "                    for (int i = 0; i < g->k; i++) {\n"
    "                        int iy = oy * g->s - g->p + i;\n"
    "                        if (iy < 0 || iy >= g->h)\n"
    "                            continue;\n"
    "                        const float *wr = w + (((size_t)f * g->cin + c) * g->k + i) * g->k;\n"
    "                        const float *xr = x + ((size_t)c * g->h + iy) * g->w;\n"
    "                        for (int j = 0; j < g->k; j++) {\n"
    "                            int ix = ox * g->s - g->p + j;\n"
    "                            if (ix >= 0 && ix < g->w)\n"
    "                                s += wr[j] * xr[ix];\n"
    "                        }\n"
    "                    }\n"
    "                y[((size_t)f * g->oh + oy) * g->ow + ox] = s + b[f];\n"
    "            }\n"
    "}\n\n";

static const char pool_c[] =
    "/* maxpool2d: square window k, stride s, no padding; the first maximum wins */\n"
    "static void kd_maxpool(int ch, int h, int w, int k, int s, int oh, int ow, const float *x,\n"
    "                       float *y)\n"
    "{\n"
    "    for (int c = 0; c < ch; c++, x += (size_t)h * w)\n"
    "        for (int oy = 0; oy < oh; oy++)\n"
    "            for (int ox = 0; ox < ow; ox++) {\n"
    "                const float *top = x + (size_t)oy * s * w + (size_t)ox * s;\n"
    "                float bv = top[0];\n"
    "                for (int i = 0; i < k; i++)\n"
    "                    for (int j = 0; j < k; j++)\n"
    "                        if (top[(size_t)i * w + j] > bv)\n"
    "                            bv = top[(size_t)i * w + j];\n"
    "                *y++ = bv;\n"
    "            }\n"
    "}\n\n";

static const char bn_c[] =
    "/* batchnorm, inference: y = (x - mean) * (gamma / sqrt(var + eps)) + beta per\n"
    " * channel, the factor precomputed as kdbench computes it (exact) */\n"
    "static void kd_batchnorm(const float *mean, const float *sc, const float *beta, int ch,\n"
    "                         int plane, const float *x, float *y)\n"
    "{\n"
    "    for (int c = 0; c < ch; c++)\n"
    "        for (int i = 0; i < plane; i++) {\n"
    "            size_t o = (size_t)c * plane + i;\n"
    "            y[o] = (x[o] - mean[c]) * sc[c] + beta[c];\n"
    "        }\n"
    "}\n\n";

static const char relu_c[] =
    "static void kd_relu(float *x, int n)\n"
    "{\n"
    "    for (int i = 0; i < n; i++)\n"
    "        x[i] = x[i] > 0 ? x[i] : 0;\n"
    "}\n\n";

void cg_helpers(kd_buf *b, unsigned need)
{
    static const char *const csr_types[] = {"uint8_t", "uint16_t", "uint32_t"};
    if (need & CG_DENSE)
        kd_buf_put(b, dense_c, strlen(dense_c));
    for (int t = 0; t < 3; t++)
        if (need & (CG_CSR8 << t))
            cg_printf(b, csr_c, csr_types[t], csr_types[t]);
    if (need & (CG_Q8 | CG_DQ8 | CG_QCSRS8 | CG_QCSRD8))
        kd_buf_put(b, quant1_c, strlen(quant1_c));
    if (need & (CG_DQ8 | CG_QCSRD8))
        kd_buf_put(b, dyn_params_c, strlen(dyn_params_c));
    if (need & (CG_Q8 | CG_DQ8))
        kd_buf_put(b, q8_common_c, strlen(q8_common_c));
    if (need & CG_Q8)
        kd_buf_put(b, q8_static_c, strlen(q8_static_c));
    if (need & CG_DQ8)
        kd_buf_put(b, q8_dynamic_c, strlen(q8_dynamic_c));
    if (need & (CG_Q4 | CG_QL))
        kd_buf_put(b, f16_c, strlen(f16_c));
    if (need & CG_Q4)
        kd_buf_put(b, q4_c, strlen(q4_c));
    if (need & CG_QL)
        kd_buf_put(b, ql_c, strlen(ql_c));
    if (need & CG_QCSR)
        kd_buf_put(b, qcsr_c, strlen(qcsr_c));
    if (need & (CG_QCSRS8 | CG_QCSRD8))
        kd_buf_put(b, qcsr_s8_c, strlen(qcsr_s8_c));
    if (need & CG_QCSRD8)
        kd_buf_put(b, qcsr_d8_c, strlen(qcsr_d8_c));
    if (need & CG_CONV)
        kd_buf_put(b, conv_c, strlen(conv_c));
    if (need & CG_POOL)
        kd_buf_put(b, pool_c, strlen(pool_c));
    if (need & CG_BN)
        kd_buf_put(b, bn_c, strlen(bn_c));
    if (need & CG_RELU)
        kd_buf_put(b, relu_c, strlen(relu_c));
}
