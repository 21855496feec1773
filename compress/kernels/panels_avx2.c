/* The batch-1 panels for AVX2 CPUs (kernel level avx2: AVX2 + FMA, no
 * AVX-512): panels.c's idea at half the width.  Rows are cut into slices of
 * 8; a slice's non-zeros are laid out in steps of 8 lanes (lane j = row j of
 * the slice, zero where that row has nothing in the step).  A step names a
 * window of 8 consecutive columns of x and, for each lane, a 3-bit column
 * within it (lane j's in bits 3j..3j+2 of one word), so a step is one
 * window load, one broadcast, one variable shift, one vpermps and one FMA
 * into the slice's 8 row accumulators -- no gathers.  The windows slide
 * with the non-zeros (slice_steps): 2.0 lanes per non-zero at 90% sparsity
 * (fixed panels of 8 columns: 2.6), 10 bytes per non-zero for fp32, 4 for
 * int8 (8 bytes of window and indices a step).
 *
 * Measured on the development host forced to avx2, a 1200x1200 layer at 90%
 * on one thread: vgatherdps (8 non-zeros a gather) 59 us, the portable
 * 4-accumulator loop 46-52 us, fixed panels with a loop per panel 117 us
 * (its step-count branch mispredicted about once a panel), one flat run of
 * steps per slice 25 us, sliding windows 20 us (int8: 18.5 us).
 *
 * The int8 flavour keeps the same steps with 8 int8 values a step, widened
 * in registers (vpmovsxbd, vcvtdq2ps); the per-row scale is applied once
 * per slice (acc * scale + bias).  Both are built by panels.c when the
 * kernel level in use is avx2, so layers see one compress_panels. */
#include <immintrin.h>
#include <string.h>

#include "internal.h"

#define TGT __attribute__((target("avx2,fma")))

struct compress_panels8 {
    int rows, cols, nslice;
    int q8;           /* int8 values and per-row scales */
    uint32_t *idx;    /* 2 words per step: lane j's column within the window at bit
                       * 3j, and the window's first column (see slice_steps) */
    float *val;       /* fp32: 8 per step */
    int8_t *qval;     /* q8: 8 per step */
    float *scale;     /* q8: nslice x 8 row scales (0 past rows) */
    size_t *slice_at; /* nslice + 1: steps before each slice */
};

void compress_panels8_free(compress_panels8 *p)
{
    if (!p)
        return;
    kd_afree(p->idx);
    kd_afree(p->val);
    kd_afree(p->qval);
    kd_afree(p->scale);
    kd_free(p->slice_at);
    kd_free(p);
}

size_t compress_panels8_bytes(const compress_panels8 *p)
{
    size_t steps = p->slice_at[p->nslice];
    return steps * (8 + (p->q8 ? 8 : 32)) + (p->q8 ? (size_t)p->nslice * 32 : 0) +
           ((size_t)p->nslice + 1) * sizeof *p->slice_at;
}

static inline uint32_t src_col(const compress_panels8_src *a, uint32_t k)
{
    return a->a ? compress_csr_col(a->a, k) : a->col[k];
}

/* The steps of slice s, greedily: a step's window starts at the lowest
 * column any row of the slice has left, and every row whose next non-zero
 * lies in the window's 8 columns puts it in its lane (the window is moved
 * back to cols - 8 at the right edge, so loads stay inside x).  Windows
 * that slide with the non-zeros instead of fixed panels of 8 columns need
 * 2.0 lanes per non-zero at 90% sparsity instead of 2.6.  Returns the
 * number of steps; writes them from step base on when fill. */
static size_t slice_steps(const compress_panels8_src *a, compress_panels8 *p, int s, size_t base,
                          int fill)
{
    uint32_t k[8], end[8];
    int nr = a->rows - 8 * s < 8 ? a->rows - 8 * s : 8;
    for (int j = 0; j < nr; j++) {
        k[j] = a->rowptr[8 * s + j];
        end[j] = a->rowptr[8 * s + j + 1];
    }
    size_t t = base;
    for (;; t++) {
        uint32_t w = UINT32_MAX;
        for (int j = 0; j < nr; j++)
            if (k[j] < end[j] && src_col(a, k[j]) < w)
                w = src_col(a, k[j]);
        if (w == UINT32_MAX)
            return t - base;
        /* fewer than 8 columns: the kernel reads a zero-padded copy of x of 8
         * floats, so the window must start at 0 (starting at w read past it) */
        uint32_t w0 = p->cols < 8                       ? 0
                      : w + 8 > (uint32_t)p->cols ? (uint32_t)p->cols - 8
                                                  : w;
        for (int j = 0; j < nr; j++) {
            if (k[j] >= end[j] || src_col(a, k[j]) >= w + 8)
                continue;
            if (fill && a->q)
                p->qval[t * 8 + j] = a->q[k[j]];
            else if (fill)
                p->val[t * 8 + j] = a->a->val[k[j]];
            if (fill)
                p->idx[2 * t] |= (src_col(a, k[j]) - w0) << (3 * j);
            k[j]++;
        }
        if (fill)
            p->idx[2 * t + 1] = w0;
    }
}

compress_panels8 *compress_panels8_new(const compress_panels8_src *a, kd_err *e)
{
    compress_panels8 *p = kd_calloc(1, sizeof *p);
    if (!p)
        goto oom;
    *p = (compress_panels8){.rows = a->rows, .cols = a->cols, .q8 = a->q != NULL,
                            .nslice = (a->rows + 7) / 8};
    p->slice_at = kd_calloc((size_t)p->nslice + 1, sizeof *p->slice_at);
    if (!p->slice_at)
        goto oom;
    size_t total = 0;
    for (int s = 0; s < p->nslice; s++) {
        p->slice_at[s] = total;
        total += slice_steps(a, p, s, 0, 0);
    }
    p->slice_at[p->nslice] = total;
    p->idx = (uint32_t *)kd_afloat(2 * total + 2);
    if (p->q8) {
        p->qval = (int8_t *)kd_afloat(total * 2 + 2); /* 8 bytes a step, zeroed */
        p->scale = kd_afloat((size_t)p->nslice * 8);
        if (p->scale)
            memcpy(p->scale, a->scale, (size_t)a->rows * sizeof *p->scale);
    } else {
        p->val = kd_afloat(total * 8 + 8);
    }
    if (!p->idx || (p->q8 ? !p->qval || !p->scale : !p->val))
        goto oom;
    for (int s = 0; s < p->nslice; s++)
        slice_steps(a, p, s, p->slice_at[s], 1);
    return p;
oom:
    compress_panels8_free(p);
    kd_err_set(e, KD_ENOMEM, "out of memory for the sparse panels");
    return NULL;
}

/* ---- kernels ------------------------------------------------------------- */

/* lanes [0, n) set, for the rows of a last slice */
TGT static inline __m256i rows_mask(int n)
{
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);
}

/* y[8s, 8s + 8) = acc (times the row scales for int8) + bias, rows past
 * the last left alone. */
TGT static inline void finish(const compress_panels8 *p, int s, __m256 acc, const float *bias,
                              float *y, int relu)
{
    int r0 = s * 8, left = p->rows - r0;
    __m256i m = rows_mask(left);
    __m256 b = bias ? _mm256_maskload_ps(bias + r0, m) : _mm256_setzero_ps();
    acc = p->q8 ? _mm256_fmadd_ps(acc, _mm256_load_ps(p->scale + r0), b) : _mm256_add_ps(acc, b);
    if (relu) /* max returns its second operand for NaN: 0, as nn's relu */
        acc = _mm256_max_ps(acc, _mm256_setzero_ps());
    if (left >= 8)
        _mm256_storeu_ps(y + r0, acc);
    else
        _mm256_maskstore_ps(y + r0, m, acc);
}

/* x[col] of the 8 lanes of step t: its window of x permuted by its indices */
#define PICK(t)                                                                                \
    _mm256_permutevar8x32_ps(_mm256_loadu_ps(x + ix[2 * (t) + 1]),                             \
                             _mm256_srlv_epi32(_mm256_set1_epi32((int)ix[2 * (t)]), sh))
#define WF(t) _mm256_load_ps(v + 8 * (t))
#define W8(t) _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(v + 8 * (t)))))

/* The slice loop shared by both value types: a slice's steps are one flat
 * run (each step loads its own window of x), so no branch depends on how
 * many steps a panel has -- with ~2 steps a panel at 90% sparsity, a loop
 * per panel mispredicted about once a panel and ran 4x slower.  Four
 * accumulators hide the FMA latency.  WV(t) is step t's values as floats. */
#define SLICES(WV)                                                                             \
    for (int s = s0; s < s1; s++) {                                                            \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                           \
        size_t n = p->slice_at[s + 1] - p->slice_at[s];                                        \
        for (; n >= 4; n -= 4, v += 32, ix += 8) {                                             \
            a0 = _mm256_fmadd_ps(WV(0), PICK(0), a0);                                          \
            a1 = _mm256_fmadd_ps(WV(1), PICK(1), a1);                                          \
            a2 = _mm256_fmadd_ps(WV(2), PICK(2), a2);                                          \
            a3 = _mm256_fmadd_ps(WV(3), PICK(3), a3);                                          \
        }                                                                                      \
        for (; n > 0; n--, v += 8, ix += 2)                                                    \
            a0 = _mm256_fmadd_ps(WV(0), PICK(0), a0);                                          \
        finish(p, s, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)), bias, y, relu); \
    }

/* x itself, or (fewer than 8 columns) x copied into pad, zero-padded */
static inline const float *padded_x(const compress_panels8 *p, const float *x, float pad[8])
{
    if (p->cols >= 8)
        return x;
    memset(pad, 0, 8 * sizeof *pad);
    memcpy(pad, x, (size_t)p->cols * sizeof *pad);
    return pad;
}

/* Slices [s0, s1) of y = A x + bias, fp32 values. */
TGT static void spmv_f32(const compress_panels8 *p, const float *bias, const float *x0, float *y,
                         int s0, int s1, int relu)
{
    const __m256i sh = _mm256_setr_epi32(0, 3, 6, 9, 12, 15, 18, 21);
    float pad[8];
    const float *x = padded_x(p, x0, pad);
    size_t t0 = p->slice_at[s0];
    const float *v = p->val + t0 * 8;
    const uint32_t *ix = p->idx + 2 * t0;
    SLICES(WF)
}

/* Slices [s0, s1) of y = scale * (Q x) + bias, int8 values. */
TGT static void spmv_q8(const compress_panels8 *p, const float *bias, const float *x0, float *y,
                        int s0, int s1, int relu)
{
    const __m256i sh = _mm256_setr_epi32(0, 3, 6, 9, 12, 15, 18, 21);
    float pad[8];
    const float *x = padded_x(p, x0, pad);
    size_t t0 = p->slice_at[s0];
    const int8_t *v = p->qval + t0 * 8;
    const uint32_t *ix = p->idx + 2 * t0;
    SLICES(W8)
}
#undef SLICES
#undef W8
#undef WF
#undef PICK

/* The first slice of part `part` of nparts: parts get about equal steps. */
static int part_start(const compress_panels8 *p, int part, int nparts)
{
    if (part <= 0)
        return 0;
    if (part >= nparts)
        return p->nslice;
    size_t want = p->slice_at[p->nslice] * (size_t)part / (size_t)nparts;
    int lo = 0, hi = p->nslice; /* first slice with slice_at >= want */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (p->slice_at[mid] < want)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

void compress_panels8_spmv_part(const compress_panels8 *p, const float *bias, const float *x,
                                float *y, int part, int nparts, int relu)
{
    int s0 = part_start(p, part, nparts), s1 = part_start(p, part + 1, nparts);
    if (s0 < s1 && p->q8)
        spmv_q8(p, bias, x, y, s0, s1, relu);
    else if (s0 < s1)
        spmv_f32(p, bias, x, y, s0, s1, relu);
}
