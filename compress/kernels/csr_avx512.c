/* The CSR kernels of csr.c for AVX-512 CPUs, compiled with a target
 * attribute (the default build stays baseline x86-64) and chosen at run time.
 * Batch 1: 16 column indices widened to 32 bits, one gather of x and one FMA
 * per 16 non-zeros, two accumulators per row, a masked tail (the arrays are
 * padded by 16 entries so the index load may overrun the last row).
 * Batches: the transposed block of 32 samples is two vectors per column, so a
 * non-zero is one broadcast and two FMAs; two non-zeros per step keep four
 * independent accumulator chains. */
#include <immintrin.h>

#include "internal.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,fma")))

int compress_csr_have_avx512(void)
{
    return kernels_isa() >= KD_ISA_AVX512;
}

TGT static inline __m512i idx16_uint8_t(const uint8_t *p)
{
    return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
}

TGT static inline __m512i idx16_uint16_t(const uint16_t *p)
{
    return _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
}

TGT static inline __m512i idx16_uint32_t(const uint32_t *p)
{
    return _mm512_loadu_si512((const void *)p);
}

#define SPMV(T)                                                                             \
    TGT static void spmv_##T(const compress_csr *a, const float *bias, const float *x,      \
                             float *y)                                                      \
    {                                                                                       \
        const T *col = a->col;                                                              \
        const float *v = a->val;                                                            \
        for (int r = 0; r < a->rows; r++) {                                                 \
            uint32_t k = a->rowptr[r], end = a->rowptr[r + 1];                              \
            __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();                      \
            for (; k + 32 <= end; k += 32) {                                                \
                __m512 g0 = _mm512_i32gather_ps(idx16_##T(col + k), x, 4);                  \
                __m512 g1 = _mm512_i32gather_ps(idx16_##T(col + k + 16), x, 4);             \
                s0 = _mm512_fmadd_ps(_mm512_loadu_ps(v + k), g0, s0);                       \
                s1 = _mm512_fmadd_ps(_mm512_loadu_ps(v + k + 16), g1, s1);                  \
            }                                                                               \
            if (k + 16 <= end) {                                                            \
                __m512 g0 = _mm512_i32gather_ps(idx16_##T(col + k), x, 4);                  \
                s0 = _mm512_fmadd_ps(_mm512_loadu_ps(v + k), g0, s0);                       \
                k += 16;                                                                    \
            }                                                                               \
            if (k < end) {                                                                  \
                __mmask16 m = (__mmask16)((1u << (end - k)) - 1);                           \
                __m512 g = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m,                 \
                                                    idx16_##T(col + k), x, 4);              \
                s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, v + k), g, s1);               \
            }                                                                               \
            y[r] = (bias ? bias[r] : 0.0f) + _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));   \
        }                                                                                   \
    }

#define SPMM_BLOCK(T)                                                                       \
    TGT static void block_##T(const compress_csr *a, const float *bias, const float *xt,    \
                              float *y, int nb)                                             \
    {                                                                                       \
        const T *col = a->col;                                                              \
        const float *v = a->val;                                                            \
        float out[CSR_NB] __attribute__((aligned(64)));                                     \
        for (int r = 0; r < a->rows; r++) {                                                 \
            uint32_t k = a->rowptr[r], end = a->rowptr[r + 1];                              \
            __m512 a0 = _mm512_set1_ps(bias ? bias[r] : 0.0f), a1 = a0;                     \
            __m512 a2 = _mm512_setzero_ps(), a3 = a2;                                       \
            for (; k + 2 <= end; k += 2) {                                                  \
                const float *x0 = xt + (size_t)col[k] * CSR_NB;                             \
                const float *x1 = xt + (size_t)col[k + 1] * CSR_NB;                         \
                __m512 v0 = _mm512_set1_ps(v[k]), v1 = _mm512_set1_ps(v[k + 1]);            \
                a0 = _mm512_fmadd_ps(v0, _mm512_load_ps(x0), a0);                           \
                a1 = _mm512_fmadd_ps(v0, _mm512_load_ps(x0 + 16), a1);                      \
                a2 = _mm512_fmadd_ps(v1, _mm512_load_ps(x1), a2);                           \
                a3 = _mm512_fmadd_ps(v1, _mm512_load_ps(x1 + 16), a3);                      \
            }                                                                               \
            if (k < end) {                                                                  \
                const float *x0 = xt + (size_t)col[k] * CSR_NB;                             \
                __m512 v0 = _mm512_set1_ps(v[k]);                                           \
                a0 = _mm512_fmadd_ps(v0, _mm512_load_ps(x0), a0);                           \
                a1 = _mm512_fmadd_ps(v0, _mm512_load_ps(x0 + 16), a1);                      \
            }                                                                               \
            _mm512_store_ps(out, _mm512_add_ps(a0, a2));                                    \
            _mm512_store_ps(out + 16, _mm512_add_ps(a1, a3));                               \
            for (int j = 0; j < nb; j++)                                                    \
                y[(size_t)j * a->rows + r] = out[j];                                        \
        }                                                                                   \
    }

_Static_assert(CSR_NB == 32, "the AVX-512 block kernel holds 32 samples in two vectors");

SPMV(uint8_t)
SPMV(uint16_t)
SPMV(uint32_t)
SPMM_BLOCK(uint8_t)
SPMM_BLOCK(uint16_t)
SPMM_BLOCK(uint32_t)

void compress_csr_matmul_avx512(const compress_csr *a, const float *bias, const float *x, float *y,
                                int n, float *scratch)
{
    if (n == 1) {
        switch (a->idx_bytes) {
        case 1: spmv_uint8_t(a, bias, x, y); break;
        case 2: spmv_uint16_t(a, bias, x, y); break;
        default: spmv_uint32_t(a, bias, x, y); break;
        }
        return;
    }
    for (int s = 0; s < n; s += CSR_NB) {
        int nb = n - s < CSR_NB ? n - s : CSR_NB;
        compress_csr_transpose_block(x + (size_t)s * a->cols, a->cols, nb, scratch);
        float *ys = y + (size_t)s * a->rows;
        switch (a->idx_bytes) {
        case 1: block_uint8_t(a, bias, scratch, ys, nb); break;
        case 2: block_uint16_t(a, bias, scratch, ys, nb); break;
        default: block_uint32_t(a, bias, scratch, ys, nb); break;
        }
    }
}
