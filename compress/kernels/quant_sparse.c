/* Sparse int8: a pruned matrix's non-zeros in CSR with int8 values, one-byte
 * delta-coded columns and a symmetric scale per row; fp32 activations and
 * outputs.  The fast kernel is plain C: it walks a row's entries once for 4
 * samples (GEMM) or keeps 4 independent partial sums (GEMV); from 16
 * samples on at the avx2 level and above, csr_avx2.c's blocks. */
#include "internal.h"

#include <math.h>

void quant_csr_free(quant_csr *c)
{
    if (!c)
        return;
    kd_free(c->row_ptr);
    kd_free(c->delta);
    kd_free(c->val);
    kd_free(c->scale);
    kd_free(c);
}

static quant_csr *csr_alloc(int m, int k, int32_t nnz, kd_err *e)
{
    quant_csr *c = kd_calloc(1, sizeof *c);
    if (c) {
        *c = (quant_csr){.m = m, .k = k, .nnz = nnz};
        c->row_ptr = kd_malloc(((size_t)m + 1) * sizeof *c->row_ptr);
        c->delta = kd_malloc((size_t)nnz);
        c->val = kd_malloc((size_t)nnz);
        c->scale = kd_malloc((size_t)m * sizeof *c->scale);
    }
    if (!c || !c->row_ptr || !c->delta || !c->val || !c->scale) {
        quant_csr_free(c);
        kd_err_set(e, KD_ENOMEM, "csr int8: out of memory for %d entries", nnz);
        return NULL;
    }
    return c;
}

/* Entries row r needs: its non-zeros plus a filler per 255 columns of gap. */
static int32_t csr_row_entries(const float *row, int k)
{
    int32_t n = 0;
    int prev = 0;
    for (int c = 0; c < k; c++)
        if (row[c] != 0.0f) {
            n += 1 + (c - prev > 0 ? (c - prev - 1) / 255 : 0);
            prev = c;
        }
    return n;
}

/* Writes row r's entries from j on; returns the next free entry. */
static int32_t csr_fill_row(quant_csr *q, const float *row, int32_t j, float scale)
{
    int prev = 0;
    for (int c = 0; c < q->k; c++) {
        if (row[c] == 0.0f)
            continue;
        for (; c - prev > 255; prev += 255, j++) { /* fillers bridge long gaps */
            q->delta[j] = 255;
            q->val[j] = 0;
        }
        float v = roundf(row[c] / scale);
        q->delta[j] = (uint8_t)(c - prev);
        q->val[j++] = (int8_t)(v < -127.0f ? -127.0f : v > 127.0f ? 127.0f : v);
        prev = c;
    }
    return j;
}

quant_csr *quant_csr_from_dense(const float *w, int m, int k, kd_err *e)
{
    if (m <= 0 || k <= 0 || (double)m * k > (double)INT32_MAX) {
        kd_err_set(e, KD_ECONFIG, "csr int8: bad shape %d x %d", m, k);
        return NULL;
    }
    int32_t nnz = 0;
    for (int r = 0; r < m; r++)
        nnz += csr_row_entries(w + (size_t)r * k, k);
    quant_csr *c = csr_alloc(m, k, nnz, e);
    if (!c)
        return NULL;
    int32_t j = 0;
    for (int r = 0; r < m; r++) {
        const float *row = w + (size_t)r * k;
        float amax = 0.0f;
        for (int cc = 0; cc < k; cc++)
            amax = fmaxf(amax, fabsf(row[cc]));
        c->scale[r] = amax > 0.0f ? amax / 127.0f : 1.0f;
        c->row_ptr[r] = j;
        j = csr_fill_row(c, row, j, c->scale[r]);
    }
    c->row_ptr[m] = j;
    return c;
}

size_t quant_csr_bytes(const quant_csr *c)
{
    return ((size_t)c->m + 1) * sizeof *c->row_ptr + (size_t)c->nnz * 2 +
           (size_t)c->m * sizeof *c->scale;
}

void quant_csr_gemm_ref(const quant_csr *c, const float *x, int n, const float *b, float *y)
{
    for (int i = 0; i < n; i++)
        for (int r = 0; r < c->m; r++) {
            float s = 0.0f;
            int col = 0;
            for (int32_t j = c->row_ptr[r]; j < c->row_ptr[r + 1]; j++) {
                col += c->delta[j];
                s += (float)c->val[j] * x[(size_t)i * c->k + col];
            }
            y[(size_t)i * c->m + r] = c->scale[r] * s + (b ? b[r] : 0.0f);
        }
}

/* ---- fast ------------------------------------------------------------------------------ */

static float csr_dot1(const quant_csr *c, int r, const float *x)
{
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    int32_t j = c->row_ptr[r], end = c->row_ptr[r + 1];
    const uint8_t *d = c->delta;
    const int8_t *v = c->val;
    int col = 0;
    for (; j + 4 <= end; j += 4) {
        int c0 = col + d[j], c1 = c0 + d[j + 1], c2 = c1 + d[j + 2], c3 = c2 + d[j + 3];
        s0 += (float)v[j] * x[c0];
        s1 += (float)v[j + 1] * x[c1];
        s2 += (float)v[j + 2] * x[c2];
        s3 += (float)v[j + 3] * x[c3];
        col = c3;
    }
    for (; j < end; j++) {
        col += d[j];
        s0 += (float)v[j] * x[col];
    }
    return (s0 + s1) + (s2 + s3);
}

/* Row r for samples i .. i+3, walking the entries once. */
static void csr_dot4(const quant_csr *c, int r, const float *x, float out[4])
{
    const float *x0 = x, *x1 = x + c->k, *x2 = x + 2 * (size_t)c->k, *x3 = x + 3 * (size_t)c->k;
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    int col = 0;
    for (int32_t j = c->row_ptr[r]; j < c->row_ptr[r + 1]; j++) {
        float v = (float)c->val[j];
        col += c->delta[j];
        s0 += v * x0[col];
        s1 += v * x1[col];
        s2 += v * x2[col];
        s3 += v * x3[col];
    }
    out[0] = s0;
    out[1] = s1;
    out[2] = s2;
    out[3] = s3;
}

/* ---- batches: X transposed, each entry an axpy over the samples ---------------------
 * With X^T (k x n) an entry's column is n contiguous floats, so a row of W is a
 * run of vector axpys instead of n gathers per entry. */
#define CSR_T_MIN_N 16

static inline __attribute__((always_inline)) void csr_rows_t(const quant_csr *c, const float *xt,
                                                             int n, const float *b, float *acc,
                                                             float *y)
{
    for (int r = 0; r < c->m; r++) {
        for (int i = 0; i < n; i++)
            acc[i] = 0.0f;
        int col = 0;
        for (int32_t j = c->row_ptr[r]; j < c->row_ptr[r + 1]; j++) {
            col += c->delta[j];
            const float v = (float)c->val[j], *xc = xt + (size_t)col * n;
            for (int i = 0; i < n; i++)
                acc[i] += v * xc[i];
        }
        for (int i = 0; i < n; i++)
            y[(size_t)i * c->m + r] = c->scale[r] * acc[i] + (b ? b[r] : 0.0f);
    }
}

/* The same loops compiled for 8-wide vectors. */
static __attribute__((target("avx2"))) void csr_rows_t_avx2(const quant_csr *c, const float *xt,
                                                            int n, const float *b, float *acc,
                                                            float *y)
{
    csr_rows_t(c, xt, n, b, acc, y);
}

static void csr_rows_t_base(const quant_csr *c, const float *xt, int n, const float *b,
                            float *acc, float *y)
{
    csr_rows_t(c, xt, n, b, acc, y);
}

/* Returns -1 (nothing written) when the scratch cannot be allocated. */
static int csr_gemm_t(const quant_csr *c, const float *x, int n, const float *b, float *y)
{
    float *xt = kd_malloc((size_t)n * c->k * sizeof *xt), *acc = kd_malloc((size_t)n * sizeof *acc);
    if (!xt || !acc) {
        kd_free(xt);
        kd_free(acc);
        return -1;
    }
    for (int i = 0; i < n; i++)
        for (int cc = 0; cc < c->k; cc++)
            xt[(size_t)cc * n + i] = x[(size_t)i * c->k + cc];
    if (kernels_isa() >= KD_ISA_AVX2)
        csr_rows_t_avx2(c, xt, n, b, acc, y);
    else
        csr_rows_t_base(c, xt, n, b, acc, y);
    kd_free(xt);
    kd_free(acc);
    return 0;
}

void quant_csr_gemv_rows(const quant_csr *c, const float *x, const float *b, float *y, int r0,
                         int r1)
{
    for (int r = r0; r < r1; r++)
        y[r] = c->scale[r] * csr_dot1(c, r, x) + (b ? b[r] : 0.0f);
}

void quant_csr_gemm(const quant_csr *c, const float *x, int n, const float *b, float *y)
{
    if (n >= CSR_T_MIN_N && kernels_isa() >= KD_ISA_AVX2 && quant_csr_gemm_avx2(c, x, n, b, y) == 0)
        return;
    if (n >= CSR_T_MIN_N && csr_gemm_t(c, x, n, b, y) == 0)
        return;
    int i = 0;
    for (; i + 4 <= n; i += 4)
        for (int r = 0; r < c->m; r++) {
            float s[4];
            csr_dot4(c, r, x + (size_t)i * c->k, s);
            for (int t = 0; t < 4; t++)
                y[(size_t)(i + t) * c->m + r] = c->scale[r] * s[t] + (b ? b[r] : 0.0f);
        }
    for (; i < n; i++)
        for (int r = 0; r < c->m; r++)
            y[(size_t)i * c->m + r] =
                c->scale[r] * csr_dot1(c, r, x + (size_t)i * c->k) + (b ? b[r] : 0.0f);
}
