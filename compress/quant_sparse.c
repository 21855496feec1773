/* Sparse int8: a pruned matrix's non-zeros in CSR with int8 values and a
 * symmetric scale per row; fp32 activations and outputs.  The fast kernel is
 * plain C: it walks a row's non-zeros once for 4 samples (GEMM) or keeps 4
 * independent partial sums (GEMV), which the compiler schedules well. */
#include "quant.h"

#include <math.h>

void quant_csr_free(quant_csr *c)
{
    if (!c)
        return;
    kd_free(c->row_ptr);
    kd_free(c->col);
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
        c->col = kd_malloc((size_t)nnz * sizeof *c->col);
        c->val = kd_malloc((size_t)nnz);
        c->scale = kd_malloc((size_t)m * sizeof *c->scale);
    }
    if (!c || !c->row_ptr || !c->col || !c->val || !c->scale) {
        quant_csr_free(c);
        kd_err_set(e, KD_ENOMEM, "csr int8: out of memory for %d non-zeros", nnz);
        return NULL;
    }
    return c;
}

quant_csr *quant_csr_from_dense(const float *w, int m, int k, kd_err *e)
{
    if (m <= 0 || k <= 0 || (double)m * k > (double)INT32_MAX) {
        kd_err_set(e, KD_ECONFIG, "csr int8: bad shape %d x %d", m, k);
        return NULL;
    }
    int32_t nnz = 0;
    for (size_t i = 0; i < (size_t)m * k; i++)
        nnz += w[i] != 0.0f;
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
        for (int cc = 0; cc < k; cc++) {
            if (row[cc] == 0.0f)
                continue;
            float v = roundf(row[cc] / c->scale[r]);
            c->col[j] = cc;
            c->val[j++] = (int8_t)(v < -127.0f ? -127.0f : v > 127.0f ? 127.0f : v);
        }
    }
    c->row_ptr[m] = j;
    return c;
}

size_t quant_csr_bytes(const quant_csr *c)
{
    return ((size_t)c->m + 1) * sizeof *c->row_ptr + (size_t)c->nnz * (sizeof *c->col + 1) +
           (size_t)c->m * sizeof *c->scale;
}

void quant_csr_gemm_ref(const quant_csr *c, const float *x, int n, const float *b, float *y)
{
    for (int i = 0; i < n; i++)
        for (int r = 0; r < c->m; r++) {
            float s = 0.0f;
            for (int32_t j = c->row_ptr[r]; j < c->row_ptr[r + 1]; j++)
                s += (float)c->val[j] * x[(size_t)i * c->k + c->col[j]];
            y[(size_t)i * c->m + r] = c->scale[r] * s + (b ? b[r] : 0.0f);
        }
}

/* ---- fast ------------------------------------------------------------------------------ */

static float csr_dot1(const quant_csr *c, int r, const float *x)
{
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    int32_t j = c->row_ptr[r], end = c->row_ptr[r + 1];
    for (; j + 4 <= end; j += 4) {
        s0 += (float)c->val[j] * x[c->col[j]];
        s1 += (float)c->val[j + 1] * x[c->col[j + 1]];
        s2 += (float)c->val[j + 2] * x[c->col[j + 2]];
        s3 += (float)c->val[j + 3] * x[c->col[j + 3]];
    }
    for (; j < end; j++)
        s0 += (float)c->val[j] * x[c->col[j]];
    return (s0 + s1) + (s2 + s3);
}

/* Row r for samples i .. i+3, walking the non-zeros once. */
static void csr_dot4(const quant_csr *c, int r, const float *x, float out[4])
{
    const float *x0 = x, *x1 = x + c->k, *x2 = x + 2 * (size_t)c->k, *x3 = x + 3 * (size_t)c->k;
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    for (int32_t j = c->row_ptr[r]; j < c->row_ptr[r + 1]; j++) {
        float v = (float)c->val[j];
        int32_t cc = c->col[j];
        s0 += v * x0[cc];
        s1 += v * x1[cc];
        s2 += v * x2[cc];
        s3 += v * x3[cc];
    }
    out[0] = s0;
    out[1] = s1;
    out[2] = s2;
    out[3] = s3;
}

void quant_csr_gemm(const quant_csr *c, const float *x, int n, const float *b, float *y)
{
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
