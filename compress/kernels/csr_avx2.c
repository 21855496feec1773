/* The batched CSR kernels for the avx2 kernel level (AVX2 + FMA), fp32
 * (compress_csr) and int8 (quant_csr), compiled with a target attribute and
 * chosen at run time.  X is transposed a block of CSR_NB = 32 samples at a
 * time (compress_csr_transpose_block: cols x 32, zero past the last sample),
 * so a block's 32 samples of one column are four vectors and a non-zero is
 * one broadcast and four FMAs; two non-zeros per step keep eight
 * independent accumulator chains (FMA latency 4, two FMA pipes).  The int8
 * entries are widened one at a time (the broadcast needs a float anyway)
 * and the row scale is applied once per row and block.
 *
 * Batch 1 has no kernel here: vgatherdps lost to the portable loop, and
 * the layers run the 8-row panels (panels_avx2.c) instead. */
#include <immintrin.h>

#include "internal.h"

#define TGT __attribute__((target("avx2,fma")))

_Static_assert(CSR_NB == 32, "the AVX2 block kernels hold 32 samples in four vectors");

/* Row sums acc[0..3] (+ acc[4..7]) to y's 32 samples of row r (nb used). */
TGT static inline void put_row(__m256 a0, __m256 a1, __m256 a2, __m256 a3, float *y, int rows,
                               int r, int nb)
{
    float out[CSR_NB] __attribute__((aligned(32)));
    _mm256_store_ps(out, a0);
    _mm256_store_ps(out + 8, a1);
    _mm256_store_ps(out + 16, a2);
    _mm256_store_ps(out + 24, a3);
    for (int j = 0; j < nb; j++)
        y[(size_t)j * rows + r] = out[j];
}

#define FMA4(v, xr, b0, b1, b2, b3)                                                             \
    do {                                                                                        \
        b0 = _mm256_fmadd_ps(v, _mm256_load_ps(xr), b0);                                        \
        b1 = _mm256_fmadd_ps(v, _mm256_load_ps((xr) + 8), b1);                                  \
        b2 = _mm256_fmadd_ps(v, _mm256_load_ps((xr) + 16), b2);                                 \
        b3 = _mm256_fmadd_ps(v, _mm256_load_ps((xr) + 24), b3);                                 \
    } while (0)

#define BLOCK(T)                                                                                \
    TGT static void block_##T(const compress_csr *a, const float *bias, const float *xt,        \
                              float *y, int nb)                                                 \
    {                                                                                           \
        const T *col = a->col;                                                                  \
        const float *v = a->val;                                                                \
        for (int r = 0; r < a->rows; r++) {                                                     \
            uint32_t k = a->rowptr[r], end = a->rowptr[r + 1];                                  \
            __m256 a0 = _mm256_set1_ps(bias ? bias[r] : 0.0f), a1 = a0, a2 = a0, a3 = a0;       \
            __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;                         \
            for (; k + 2 <= end; k += 2) {                                                      \
                __m256 v0 = _mm256_broadcast_ss(v + k), v1 = _mm256_broadcast_ss(v + k + 1);    \
                FMA4(v0, xt + (size_t)col[k] * CSR_NB, a0, a1, a2, a3);                         \
                FMA4(v1, xt + (size_t)col[k + 1] * CSR_NB, c0, c1, c2, c3);                     \
            }                                                                                   \
            if (k < end) {                                                                      \
                __m256 v0 = _mm256_broadcast_ss(v + k);                                         \
                FMA4(v0, xt + (size_t)col[k] * CSR_NB, a0, a1, a2, a3);                         \
            }                                                                                   \
            put_row(_mm256_add_ps(a0, c0), _mm256_add_ps(a1, c1), _mm256_add_ps(a2, c2),        \
                    _mm256_add_ps(a3, c3), y, a->rows, r, nb);                                  \
        }                                                                                       \
    }

BLOCK(uint8_t)
BLOCK(uint16_t)
BLOCK(uint32_t)

void compress_csr_matmul_avx2(const compress_csr *a, const float *bias, const float *x, float *y,
                              int n, float *scratch)
{
    if (n == 1) {
        compress_csr_matmul_portable(a, bias, x, y, n, scratch);
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

/* ---- int8 (quant_csr): y = scale * (Q x) + b over one block ------------------------- */
TGT static void block_q8(const quant_csr *c, const float *b, const float *xt, float *y, int nb)
{
    const uint8_t *d = c->delta;
    const int8_t *q = c->val;
    for (int r = 0; r < c->m; r++) {
        int32_t j = c->row_ptr[r], end = c->row_ptr[r + 1];
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        __m256 c0 = a0, c1 = a0, c2 = a0, c3 = a0;
        uint32_t col = 0;
        for (; j + 2 <= end; j += 2) {
            uint32_t col1 = col + d[j], col2 = col1 + d[j + 1];
            __m256 v0 = _mm256_set1_ps((float)q[j]), v1 = _mm256_set1_ps((float)q[j + 1]);
            FMA4(v0, xt + (size_t)col1 * CSR_NB, a0, a1, a2, a3);
            FMA4(v1, xt + (size_t)col2 * CSR_NB, c0, c1, c2, c3);
            col = col2;
        }
        if (j < end) {
            col += d[j];
            __m256 v0 = _mm256_set1_ps((float)q[j]);
            FMA4(v0, xt + (size_t)col * CSR_NB, a0, a1, a2, a3);
        }
        __m256 s = _mm256_set1_ps(c->scale[r]), bb = _mm256_set1_ps(b ? b[r] : 0.0f);
        put_row(_mm256_fmadd_ps(_mm256_add_ps(a0, c0), s, bb),
                _mm256_fmadd_ps(_mm256_add_ps(a1, c1), s, bb),
                _mm256_fmadd_ps(_mm256_add_ps(a2, c2), s, bb),
                _mm256_fmadd_ps(_mm256_add_ps(a3, c3), s, bb), y, c->m, r, nb);
    }
}

int quant_csr_gemm_avx2(const quant_csr *c, const float *x, int n, const float *b, float *y)
{
    float *xt = kd_afloat((size_t)c->k * CSR_NB);
    if (!xt)
        return -1;
    for (int s = 0; s < n; s += CSR_NB) {
        int nb = n - s < CSR_NB ? n - s : CSR_NB;
        compress_csr_transpose_block(x + (size_t)s * c->k, c->k, nb, xt);
        block_q8(c, b, xt, y + (size_t)s * c->m, nb);
    }
    kd_afree(xt);
    return 0;
}
#undef FMA4
