/* Quantization parameters, array (de)quantization, bias, the fixed-point
 * multiplier, and fake-quant with its straight-through estimator. */
#include "kernels.h"

#include <math.h>

/* NaN maps to 0 (then clamped) rather than to an undefined conversion. */
static int32_t clamp_i32(double v, int32_t lo, int32_t hi)
{
    if (isnan(v))
        v = 0.0;
    return v < lo ? lo : v > hi ? hi : (int32_t)v;
}

/* ---- parameters ------------------------------------------------------------ */

quant_params quant_params_asym(float lo, float hi, quant_type t)
{
    quant_params p = {.scale = 1.0f, .zero = 0, .qmin = -128, .qmax = 127};
    if (t == QUANT_U8) {
        p.qmin = 0;
        p.qmax = 255;
    }
    double a = isfinite(lo) && lo < 0 ? lo : 0.0, b = isfinite(hi) && hi > 0 ? hi : 0.0;
    if (b - a <= 0.0)
        return p;
    double s = (b - a) / (double)(p.qmax - p.qmin);
    p.scale = (float)s;
    /* zero point so that a maps to qmin; rounding keeps 0.0 exactly representable */
    p.zero = clamp_i32(round((double)p.qmin - a / (double)p.scale), p.qmin, p.qmax);
    return p;
}

void quant_weights_s8(const float *w, int m, int k, int per_channel, float *scale, int8_t *q)
{
    float tensor_max = 0.0f;
    for (int r = 0; r < m; r++) {
        float mx = 0.0f;
        for (int c = 0; c < k; c++)
            mx = fmaxf(mx, fabsf(w[(size_t)r * k + c]));
        scale[r] = mx;
        tensor_max = fmaxf(tensor_max, mx);
    }
    for (int r = 0; r < m; r++) {
        float mx = per_channel ? scale[r] : tensor_max;
        scale[r] = mx > 0.0f ? mx / 127.0f : 1.0f;
        for (int c = 0; c < k; c++) {
            size_t i = (size_t)r * k + c;
            q[i] = (int8_t)clamp_i32(round((double)w[i] / scale[r]), -127, 127);
        }
    }
}

/* The quantizer's specification, in float: the correctly rounded quotient,
 * rounded half away from zero, offset and clamped; NaN gives qmin. */
static inline int32_t quantize1(float x, quant_params p)
{
    float v = roundf(x / p.scale) + (float)p.zero;
    if (!(v >= (float)p.qmin)) /* also NaN */
        return p.qmin;
    return v > (float)p.qmax ? p.qmax : (int32_t)v;
}

void quant_quantize_s8_ref(const float *x, size_t n, quant_params p, int8_t *q)
{
    for (size_t i = 0; i < n; i++)
        q[i] = (int8_t)quantize1(x[i], p);
}

void quant_quantize_u8(const float *x, size_t n, quant_params p, uint8_t *q)
{
    for (size_t i = 0; i < n; i++)
        q[i] = (uint8_t)quantize1(x[i], p);
}

void quant_dequantize_s8(const int8_t *q, size_t n, quant_params p, float *x)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(q[i] - p.zero) * p.scale;
}

void quant_bias_s32(const float *b, int m, float s_in, const float *w_scale, int32_t *out)
{
    for (int r = 0; r < m; r++)
        out[r] = clamp_i32(round((double)b[r] / ((double)s_in * w_scale[r])), INT32_MIN,
                           INT32_MAX);
}

/* ---- fixed-point multiplier ------------------------------------------------------ */

int quant_multiplier(double m, int32_t *mult, int32_t *shift, kd_err *e)
{
    if (!(m >= 0.0) || isinf(m))
        return kd_err_set(e, KD_ECONFIG, "requantization multiplier %g is not finite and >= 0",
                          m);
    *mult = 0;
    *shift = 0;
    if (m == 0.0)
        return 0;
    int sh;
    double q = frexp(m, &sh); /* m = q * 2^sh, q in [0.5, 1) */
    int64_t qf = (int64_t)round(q * (double)((int64_t)1 << 31));
    if (qf == ((int64_t)1 << 31)) {
        qf /= 2;
        sh++;
    }
    if (sh < -31) /* every bit would be shifted out: the result is 0 */
        return 0;
    if (sh > 30) {
        sh = 30;
        qf = INT32_MAX;
    }
    *mult = (int32_t)qf;
    *shift = sh;
    return 0;
}

/* ---- fake quant ---------------------------------------------------------------- */

static double fq_code(float x, float s, int32_t z) { return round((double)x / s) + z; }

void quant_fake_forward(const float *x, int rows, int cols, const float *scale,
                        const int32_t *zero, int per_row, int32_t qmin, int32_t qmax, float *y)
{
    for (int r = 0; r < rows; r++) {
        float s = scale[per_row ? r : 0];
        int32_t z = zero ? zero[per_row ? r : 0] : 0;
        for (int c = 0; c < cols; c++) {
            size_t i = (size_t)r * cols + c;
            int32_t q = clamp_i32(fq_code(x[i], s, z), qmin, qmax);
            y[i] = (float)(q - z) * s;
        }
    }
}

void quant_fake_backward(const float *x, const float *dy, int rows, int cols,
                         const float *scale, const int32_t *zero, int per_row, int32_t qmin,
                         int32_t qmax, float *dx)
{
    for (int r = 0; r < rows; r++) {
        float s = scale[per_row ? r : 0];
        int32_t z = zero ? zero[per_row ? r : 0] : 0;
        for (int c = 0; c < cols; c++) {
            size_t i = (size_t)r * cols + c;
            double q = fq_code(x[i], s, z);
            dx[i] = q >= qmin && q <= qmax ? dy[i] : 0.0f;
        }
    }
}
