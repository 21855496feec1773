/* Shared by the qgemm kernels only: the scalar output stage, the one definition
 * every SIMD epilogue must reproduce bit for bit. */
#ifndef KD_COMPRESS_QGEMM_INTERNAL_H
#define KD_COMPRESS_QGEMM_INTERNAL_H

#include "quant.h"

/* acc + bias[r] - x_zero * row_sum, in two's-complement int32 (wrapping, as the
 * SIMD adds do; exact whenever the true value fits, e.g. k <= 65536). */
static inline int32_t qgemm_corrected(const qgemm_epi *ep, int32_t acc, int32_t row_sum, int r)
{
    uint32_t v = (uint32_t)acc - (uint32_t)ep->x_zero * (uint32_t)row_sum;
    if (ep->bias)
        v += (uint32_t)ep->bias[r];
    return (int32_t)v;
}

/* Writes output (i, r) of an n x m result from the raw accumulator. */
static inline void qgemm_store1(const qgemm_epi *ep, int32_t acc, int32_t row_sum, int r,
                                void *y, size_t idx)
{
    int32_t a = qgemm_corrected(ep, acc, row_sum, r);
    if (ep->out_f32) {
        float s = ep->x_scale * ep->w_scale[r];
        float v = (float)a * s;
        ((float *)y)[idx] = ep->fbias ? v + ep->fbias[r] : v;
    } else {
        ((int8_t *)y)[idx] =
            (int8_t)quant_requant(a, ep->mult[r], ep->shift[r], ep->y_zero, ep->lo, ep->hi);
    }
}

#endif
