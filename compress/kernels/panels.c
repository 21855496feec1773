/* The batch-1 layout of a CSR matrix for AVX-512 CPUs ("panels"): an
 * in-memory re-arrangement built when a layer reserves its scratch (the file
 * keeps plain CSR).  Gathers are what limit a CSR SpMV (one vgatherdps per 16
 * non-zeros); here none are needed.  Columns are cut into panels of 32 and
 * rows into slices of 16.  A panel of x fits in two registers, so
 * vpermt2ps picks x[col] for 16 rows at once from 5-bit indices.  For each
 * slice and panel the non-zeros are laid out in steps of 16 lanes (lane j =
 * row j of the slice; rows with fewer non-zeros in that panel are padded
 * with zeros), so one step is one index load, one permute and one FMA into
 * 16 row accumulators.  About half the lanes are padding at 90% sparsity,
 * yet a 1200x1200 layer alone runs ~2.2x faster than the gather kernel.
 *
 * The index of lane j is byte 4*(j%4) + j/4 of its step's 16 bytes, so a
 * broadcast of the 16 bytes to the four 128-bit lanes (a pure load) and one
 * variable shift put it in the low bits of dword j (vpermt2ps ignores the
 * rest): no byte-to-dword conversion competes with the permute for port 5.
 *
 * Padded values cost 8 bytes per non-zero at 90% sparsity against CSR's 6,
 * and two such layers of the MLP no longer fit a 2 MB L2 together, which
 * cost them their gain (measured 50 us for both either way).  A layer whose
 * padded panels would exceed PANELS_BUDGET per thread therefore stores only
 * the real values plus a 16-bit lane mask per step and expands them into lanes
 * (vexpandps): slower per step, but 6.3 bytes per non-zero.  Measured on
 * the MLP at 90%: 34 us for both layers against 50 us (CSR gathers).
 *
 * Slices take the rows in the file's order or, where that saves 3% of the
 * steps, sorted by length within blocks of slices (panels_order.c).
 *
 * The int8 flavour (compress_panels_new_q8, from a quant_csr) keeps the
 * same slices, panels, steps and indices, with 16 int8 values per step
 * (padded: 32 bytes a step with the indices against fp32's 80, so all of the
 * MLP's layers stay in L2 and no compact layout is needed).  A step widens
 * its values in-register (vpmovsxbd, vcvtdq2ps) before the FMA; the per-row
 * scale is applied once per slice at the end (acc * scale + bias).  Value-0
 * entries (the quant_csr's gap fillers among them) are dropped. */
#include <immintrin.h>
#include <string.h>

#include "internal.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,fma,popcnt")))

/* Padded panels above this many bytes per thread use the compact values:
 * the model's team splits a product by slices, so each core's L2 holds its
 * share (2 threads, MLP at 90%: padded 16.7-18.4 us against compact
 * 18.9-20.5 us, kdbench-bench qmodels). */
#define PANELS_BUDGET ((size_t)1 << 20)

struct compress_panels {
    int rows, cols, npanel, nslice;
    int compact;       /* values stored without padding, expanded by mask */
    int q8;            /* int8 values (qval) and per-row scales, padded layout */
    int8_t *qval;      /* q8: 16 per step */
    float *scale;      /* q8: nslice x 16 row scales (0 past rows) */
    uint8_t *steps;    /* nslice x npanel: steps of each (slice, panel) */
    float *val;        /* 16 per step, or (compact) the real ones in step order */
    uint16_t *mask;    /* compact: lanes of each step that hold a value */
    uint8_t *idx;      /* 16 per step: columns within the panel, lane-shuffled */
    size_t *slice_at;  /* nslice + 1: steps before each slice (parts start there) */
    size_t *value_at;  /* compact, nslice + 1: real values before each slice */
    uint32_t *perm;    /* rows in slice order (panels_order.c), or NULL: lane i is row i */
    int ordered;       /* the rows (here or in p8) are in panels_order.c's order */
    compress_panels8 *p8; /* avx2 level: the 8-row layout instead (kernels/panels_avx2.c) */
};

int compress_panels_supported(void) { return kernels_isa() >= KD_ISA_AVX2; }

void compress_panels_free(compress_panels *p)
{
    if (!p)
        return;
    kd_free(p->steps);
    kd_free(p->mask);
    kd_afree(p->val);
    kd_afree(p->idx);
    kd_afree(p->qval);
    kd_afree(p->scale);
    kd_free(p->slice_at);
    kd_free(p->value_at);
    kd_free(p->perm);
    compress_panels8_free(p->p8);
    kd_free(p);
}

size_t compress_panels_bytes(const compress_panels *p)
{
    if (p->p8)
        return compress_panels8_bytes(p->p8);
    size_t steps = p->slice_at[p->nslice], vals = p->compact ? p->value_at[p->nslice] : steps * 16;
    return steps * 16 + (p->q8 ? vals + (size_t)p->nslice * 64 : vals * 4) +
           (p->compact ? steps * 2 : 0) + (size_t)p->nslice * p->npanel +
           (p->perm ? (size_t)p->rows * sizeof *p->perm : 0);
}

int compress_panels_row_ordered(const compress_panels *p) { return p->ordered; }

/* Steps of each (slice, panel) = the most non-zeros any of its rows has
 * there (at most 32, so a byte); returns the total. */
static size_t count_steps(const compress_panels_src *a, compress_panels *p, int *cnt)
{
    size_t total = 0;
    for (int s = 0; s < p->nslice; s++) {
        uint8_t *st = p->steps + (size_t)s * p->npanel;
        for (int r = s * 16; r < s * 16 + 16 && r < a->rows; r++) {
            memset(cnt, 0, (size_t)p->npanel * sizeof *cnt);
            for (uint32_t k = a->rowptr[r]; k < a->rowptr[r + 1]; k++) {
                int q = (int)(compress_panels_src_col(a, k) / 32);
                if (++cnt[q] > st[q])
                    st[q] = (uint8_t)cnt[q]; /* <= 32 */
            }
        }
        for (int q = 0; q < p->npanel; q++)
            total += st[q];
    }
    return total;
}

/* Row r (lane j of its slice) into its steps, panel by panel, from base;
 * values go to the padded layout val or (int8) p->qval, 16 per step, lanes
 * to mask. */
static void place_row(const compress_panels_src *a, compress_panels *p, int r, size_t base,
                      float *val)
{
    int s = r / 16, j = r % 16;
    uint32_t k = a->rowptr[r], end = a->rowptr[r + 1];
    const uint8_t *st = p->steps + (size_t)s * p->npanel;
    for (int q = 0; q < p->npanel; q++) {
        for (int t = 0; k < end && (int)(compress_panels_src_col(a, k) / 32) == q; t++, k++) {
            if (a->q)
                p->qval[(base + t) * 16 + j] = a->q[k];
            else
                val[(base + t) * 16 + j] = a->val[k];
            p->mask[base + t] |= (uint16_t)(1u << j);
            p->idx[(base + t) * 16 + 4 * (j % 4) + j / 4] = (uint8_t)(compress_panels_src_col(a, k) % 32);
        }
        base += st[q];
    }
}

/* Squeezes the padding out of val (steps x 16) in place, keeping step order. */
static void compact_values(compress_panels *p, float *val, size_t steps)
{
    size_t n = 0;
    for (size_t t = 0; t < steps; t++)
        for (int j = 0; j < 16; j++)
            if (p->mask[t] >> j & 1)
                val[n++] = val[t * 16 + j];
}

/* *n = the steps of a's AVX-512 panels (compress_panels_steps_fn); 0 on
 * allocation failure. */
static int steps16(const compress_panels_src *a, size_t *n)
{
    compress_panels t = {.npanel = (a->cols + 31) / 32, .nslice = (a->rows + 15) / 16};
    t.steps = kd_calloc((size_t)t.nslice * t.npanel, 1);
    int *cnt = kd_malloc((size_t)t.npanel * sizeof *cnt);
    int ok = t.steps && cnt;
    if (ok)
        *n = count_steps(a, &t, cnt);
    kd_free(t.steps);
    kd_free(cnt);
    return ok;
}

static compress_panels *build_rows(const compress_panels_src *a, compress_panels_layout layout,
                                   int p8, kd_err *e);

/* At the AVX-512 level, AUTO takes the AVX2 8-row layout instead where it
 * needs fewer than PANELS8_RATIO times the 16-row layout's steps: an
 * AVX-512 step costs about 1.7 AVX2 steps (agp90 of make run at 2 threads:
 * 1.94x the steps, 0.93x the time; pruned in blocks of 8 rows, 1.53x the
 * steps, 1.11x the time), and rows pruned in blocks of 8 fill every 8-lane
 * step but only half of many 16-lane ones.  Randomly or magnitude-pruned
 * layers need about twice the steps and keep the 16-row layout.  1 for
 * the 8-row layout, 0 for the 16-row one, -1 on allocation failure. */
#define PANELS8_RATIO 1.6
static int wants_p8(const compress_panels_src *a, compress_panels_layout layout)
{
    if (kernels_isa() < KD_ISA_AVX512)
        return 1;
    if ((layout & ~COMPRESS_PANELS_FILE_ORDER) != COMPRESS_PANELS_AUTO)
        return 0;
    size_t n8 = 0, n16 = 0;
    if (!compress_panels8_steps(a, &n8) || !steps16(a, &n16))
        return -1;
    return (double)n8 < PANELS8_RATIO * (double)n16;
}

/* The panels of a (q8: int8 values, always padded, with a->scale); the
 * rows in panels_order.c's order where that pays, unless the layout asks
 * for the file's order. */
static compress_panels *build(const compress_panels_src *a, compress_panels_layout layout,
                              kd_err *e)
{
    int p8 = wants_p8(a, layout);
    compress_panels_src src = *a;
    compress_panels_order o = {0};
    if (p8 < 0 || (!(layout & COMPRESS_PANELS_FILE_ORDER) &&
                   !compress_panels_order_rows(a, p8 ? 8 : 16,
                                               p8 ? compress_panels8_steps : steps16, &src, &o))) {
        kd_err_set(e, KD_ENOMEM, "out of memory for the sparse panels");
        return NULL;
    }
    compress_panels *p = build_rows(
        &src, (compress_panels_layout)(layout & ~COMPRESS_PANELS_FILE_ORDER), p8, e);
    compress_panels_order_free(&o);
    return p;
}

/* build's work on rows already in slice order. */
static compress_panels *build_rows(const compress_panels_src *a, compress_panels_layout layout,
                                   int p8, kd_err *e)
{
    compress_panels *p = kd_calloc(1, sizeof *p);
    int *cnt = NULL;
    if (!p)
        goto oom;
    p->ordered = a->perm != NULL;
    if (p8) { /* the 8-row panels (panels_avx2.c) */
        if (!(p->p8 = compress_panels8_new(a, e)))
            goto oom;
        return p;
    }
    if (a->perm) {
        if (!(p->perm = kd_malloc((size_t)a->rows * sizeof *p->perm)))
            goto oom;
        memcpy(p->perm, a->perm, (size_t)a->rows * sizeof *p->perm);
    }
    p->rows = a->rows;
    p->cols = a->cols;
    p->q8 = a->q != NULL;
    p->npanel = (a->cols + 31) / 32;
    p->nslice = (a->rows + 15) / 16;
    p->steps = kd_calloc((size_t)p->nslice * p->npanel, 1);
    cnt = kd_malloc((size_t)p->npanel * sizeof *cnt);
    p->slice_at = kd_calloc((size_t)p->nslice + 1, sizeof *p->slice_at);
    p->value_at = kd_calloc((size_t)p->nslice + 1, sizeof *p->value_at);
    if (!p->steps || !cnt || !p->slice_at || !p->value_at)
        goto oom;
    size_t total = count_steps(a, p, cnt);
    size_t budget = PANELS_BUDGET * (size_t)(nn_threads() > 1 ? nn_threads() : 1);
    p->compact = !p->q8 && (layout == COMPRESS_PANELS_COMPACT ||
                            (layout == COMPRESS_PANELS_AUTO && total * 80 > budget));
    if (p->q8) {
        p->qval = (int8_t *)kd_afloat(total * 4 + 4); /* 16 bytes per step, aligned */
        p->scale = kd_afloat((size_t)p->nslice * 16);
        if (p->qval)
            memset(p->qval, 0, total * 16 + 16);
        if (p->scale) {
            memset(p->scale, 0, (size_t)p->nslice * 16 * sizeof *p->scale);
            memcpy(p->scale, a->scale, (size_t)a->rows * sizeof *p->scale);
        }
    } else {
        p->val = kd_afloat(total * 16 + 16);
    }
    p->idx = (uint8_t *)kd_afloat(total * 4 + 4); /* 16 bytes per step, aligned */
    p->mask = kd_calloc(total + 1, sizeof *p->mask);
    if ((p->q8 ? !p->qval || !p->scale : !p->val) || !p->idx || !p->mask)
        goto oom;
    size_t base = 0;
    for (int s = 0; s < p->nslice; s++) {
        p->slice_at[s] = base;
        int r1 = s * 16 + 16 < a->rows ? s * 16 + 16 : a->rows;
        p->value_at[s + 1] = a->rowptr[r1];
        for (int r = s * 16; r < r1; r++)
            place_row(a, p, r, base, p->val);
        for (int q = 0; q < p->npanel; q++)
            base += p->steps[(size_t)s * p->npanel + q];
    }
    p->slice_at[p->nslice] = base;
    if (p->compact) {
        uint32_t nnz = a->rowptr[a->rows];
        compact_values(p, p->val, total);
        float *v = kd_afloat((size_t)nnz + 16); /* shrink to the real values */
        if (!v)
            goto oom;
        memcpy(v, p->val, (size_t)nnz * sizeof *v);
        kd_afree(p->val);
        p->val = v;
    } else {
        kd_free(p->mask);
        p->mask = NULL;
    }
    kd_free(cnt);
    return p;
oom:
    kd_free(cnt);
    compress_panels_free(p);
    kd_err_set(e, KD_ENOMEM, "out of memory for the sparse panels");
    return NULL;
}

compress_panels *compress_panels_new(const compress_csr *a, compress_panels_layout layout,
                                     kd_err *e)
{
    compress_panels_src src = {.rows = a->rows, .cols = a->cols, .rowptr = a->rowptr, .a = a,
                               .val = a->val};
    return build(&src, layout, e);
}

compress_panels *compress_panels_new_q8(const quant_csr *q, kd_err *e)
{
    /* decode the delta columns, dropping value-0 entries (fillers too) */
    size_t nnz = 0;
    for (int32_t j = 0; j < q->nnz; j++)
        nnz += q->val[j] != 0;
    uint32_t *rowptr = kd_malloc(((size_t)q->m + 1) * sizeof *rowptr);
    uint32_t *col = kd_malloc((nnz ? nnz : 1) * sizeof *col);
    int8_t *v = kd_malloc(nnz ? nnz : 1);
    compress_panels *p = NULL;
    if (!rowptr || !col || !v) {
        kd_err_set(e, KD_ENOMEM, "out of memory for the sparse panels");
    } else {
        uint32_t n = 0;
        for (int r = 0; r < q->m; r++) {
            uint32_t c = 0;
            rowptr[r] = n;
            for (int32_t j = q->row_ptr[r]; j < q->row_ptr[r + 1]; j++) {
                c += q->delta[j];
                if (q->val[j]) {
                    col[n] = c;
                    v[n++] = q->val[j];
                }
            }
        }
        rowptr[q->m] = n;
        compress_panels_src src = {.rows = q->m, .cols = q->k, .rowptr = rowptr, .col = col,
                                   .q = v, .scale = q->scale};
        p = build(&src, COMPRESS_PANELS_AUTO, e); /* int8 values are always padded */
    }
    kd_free(rowptr);
    kd_free(col);
    kd_free(v);
    return p;
}

/* The 16 lane indices of a step (see the layout note at the top). */
TGT static inline __m512i lane_idx(const uint8_t *p, __m512i shift)
{
    return _mm512_srlv_epi32(_mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)p)), shift);
}
/* x[col] of the 16 lanes of the step whose indices are at p */
#define PICK(p) _mm512_permutex2var_ps(lo, lane_idx((p), sh), hi)

/* n steps of one panel (x in lo, hi), padded values.  Four accumulators:
 * one FMA chain would wait its 4-cycle latency at every step. */
TGT static __m512 steps_padded(__m512 acc, __m512 lo, __m512 hi, __m512i sh, const float **v,
                               const uint8_t **ix, int n)
{
    __m512 a1 = _mm512_setzero_ps(), a2 = a1, a3 = a1;
    const float *pv = *v;
    const uint8_t *pi = *ix;
    int t = 0;
    for (; t + 4 <= n; t += 4, pv += 64, pi += 64) {
        acc = _mm512_fmadd_ps(_mm512_load_ps(pv), PICK(pi), acc);
        a1 = _mm512_fmadd_ps(_mm512_load_ps(pv + 16), PICK(pi + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_load_ps(pv + 32), PICK(pi + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_load_ps(pv + 48), PICK(pi + 48), a3);
    }
    for (; t < n; t++, pv += 16, pi += 16)
        a1 = _mm512_fmadd_ps(_mm512_load_ps(pv), PICK(pi), a1);
    *v = pv;
    *ix = pi;
    return _mm512_add_ps(_mm512_add_ps(acc, a1), _mm512_add_ps(a2, a3));
}

/* The same with compact values: each step expands its mask's share. */
TGT static __m512 steps_compact(__m512 acc, __m512 lo, __m512 hi, __m512i sh, const float **v,
                                const uint8_t **ix, const uint16_t **mk, int n)
{
    __m512 a1 = _mm512_setzero_ps();
    const float *pv = *v;
    const uint8_t *pi = *ix;
    const uint16_t *pm = *mk;
    int t = 0;
    for (; t + 2 <= n; t += 2, pi += 32, pm += 2) {
        __m512 w0 = _mm512_maskz_expandloadu_ps((__mmask16)pm[0], pv);
        pv += _mm_popcnt_u32(pm[0]);
        __m512 w1 = _mm512_maskz_expandloadu_ps((__mmask16)pm[1], pv);
        pv += _mm_popcnt_u32(pm[1]);
        acc = _mm512_fmadd_ps(w0, PICK(pi), acc);
        a1 = _mm512_fmadd_ps(w1, PICK(pi + 16), a1);
    }
    if (t < n) {
        __m512 w0 = _mm512_maskz_expandloadu_ps((__mmask16)pm[0], pv);
        pv += _mm_popcnt_u32(pm[0]);
        acc = _mm512_fmadd_ps(w0, PICK(pi), acc);
        pi += 16;
        pm++;
    }
    *v = pv;
    *ix = pi;
    *mk = pm;
    return _mm512_add_ps(acc, a1);
}

/* x[32q, 32q + 32) with zeros past cols: the last panel's loads are masked. */
TGT static inline void load_panel(const float *x, int cols, int q, __m512 *lo, __m512 *hi)
{
    int left = cols - 32 * q;
    if (left >= 32) {
        *lo = _mm512_loadu_ps(x + 32 * q);
        *hi = _mm512_loadu_ps(x + 32 * q + 16);
        return;
    }
    __mmask16 ml = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
    __mmask16 mh = left > 16 ? (__mmask16)((1u << (left - 16)) - 1) : 0;
    *lo = _mm512_maskz_loadu_ps(ml, x + 32 * q);
    *hi = _mm512_maskz_loadu_ps(mh, x + 32 * q + 16);
}

/* Lanes m of v[row] for the rows of the slice at r0 (in slice order) */
TGT static inline __m512 load_rows(const compress_panels *p, const float *v, int r0, __mmask16 m)
{
    if (!p->perm)
        return _mm512_maskz_loadu_ps(m, v + r0);
    __m512i ix = _mm512_maskz_loadu_epi32(m, p->perm + r0);
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, ix, v, 4);
}

/* y[row] = lanes m of v for the rows of the slice at r0 */
TGT static inline void store_rows(const compress_panels *p, float *y, int r0, __mmask16 m, __m512 v)
{
    if (!p->perm) {
        _mm512_mask_storeu_ps(y + r0, m, v);
        return;
    }
    _mm512_mask_i32scatter_ps(y, m, _mm512_maskz_loadu_epi32(m, p->perm + r0), v, 4);
}

/* Slices [s0, s1) of y = A x + bias. */
TGT static void spmv(const compress_panels *p, const float *bias, const float *x, float *y, int s0,
                     int s1, int relu)
{
    const __m512i sh = _mm512_set_epi32(24, 24, 24, 24, 16, 16, 16, 16, 8, 8, 8, 8, 0, 0, 0, 0);
    size_t t0 = p->slice_at[s0];
    const float *v = p->val + (p->compact ? p->value_at[s0] : t0 * 16);
    const uint8_t *ix = p->idx + t0 * 16, *st = p->steps + (size_t)s0 * p->npanel;
    const uint16_t *mk = p->compact ? p->mask + t0 : NULL;
    for (int s = s0; s < s1; s++) {
        int r0 = s * 16, left = p->rows - r0;
        __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
        __m512 acc = bias ? load_rows(p, bias, r0, m) : _mm512_setzero_ps();
        for (int q = 0; q < p->npanel; q++, st++) {
            __m512 lo, hi;
            load_panel(x, p->cols, q, &lo, &hi);
            acc = p->compact ? steps_compact(acc, lo, hi, sh, &v, &ix, &mk, *st)
                             : steps_padded(acc, lo, hi, sh, &v, &ix, *st);
        }
        if (relu) /* max returns its second operand for NaN: 0, as nn's relu */
            acc = _mm512_max_ps(acc, _mm512_setzero_ps());
        store_rows(p, y, r0, m, acc);
    }
}

/* 16 int8 values widened to floats in-register */
#define W8(p) _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_load_si128((const __m128i *)(p))))
#define STEP8(a, t) a = _mm512_fmadd_ps(W8(v + 16 * (t)), PICK(ix + 16 * (t)), a)

/* Slices [s0, s1) of y = scale * (Q x) + bias, int8 panels.  The four
 * accumulators live across the panels of a slice and rotate past a panel's
 * leftover steps: panels hold ~6 steps at 90% sparsity, and summing the
 * four at every panel (as steps_padded does) put 3 dependent adds on the
 * chain of each panel (1200x1200 at 90%, one thread: 17.3 -> 16.4 us).  A
 * step is 5 vector uops on ports 0 and 5 (shift, permute, widen, convert,
 * FMA); fp32's padded panels run at about the same speed, limited by their
 * 80 bytes a step instead. */
TGT static void spmv_q8(const compress_panels *p, const float *bias, const float *x, float *y,
                        int s0, int s1, int relu)
{
    const __m512i sh = _mm512_set_epi32(24, 24, 24, 24, 16, 16, 16, 16, 8, 8, 8, 8, 0, 0, 0, 0);
    size_t t0 = p->slice_at[s0];
    const int8_t *v = p->qval + t0 * 16;
    const uint8_t *ix = p->idx + t0 * 16, *st = p->steps + (size_t)s0 * p->npanel;
    for (int s = s0; s < s1; s++) {
        int r0 = s * 16, left = p->rows - r0;
        __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, tmp;
        for (int q = 0; q < p->npanel; q++, st++) {
            int n = *st;
            if (!n) /* nothing of this slice here: skip loading x */
                continue;
            __m512 lo, hi;
            load_panel(x, p->cols, q, &lo, &hi);
            for (; n >= 4; n -= 4, v += 64, ix += 64) {
                STEP8(a0, 0);
                STEP8(a1, 1);
                STEP8(a2, 2);
                STEP8(a3, 3);
            }
            switch (n) { /* leftovers, then the next panel starts on the idle ones */
            case 1:
                STEP8(a0, 0);
                tmp = a0, a0 = a1, a1 = a2, a2 = a3, a3 = tmp;
                break;
            case 2:
                STEP8(a0, 0);
                STEP8(a1, 1);
                tmp = a0, a0 = a2, a2 = tmp, tmp = a1, a1 = a3, a3 = tmp;
                break;
            case 3:
                STEP8(a0, 0);
                STEP8(a1, 1);
                STEP8(a2, 2);
                tmp = a3, a3 = a2, a2 = a1, a1 = a0, a0 = tmp;
                break;
            default:
                break;
            }
            v += 16 * n;
            ix += 16 * n;
        }
        __m512 acc = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
        __m512 b = bias ? load_rows(p, bias, r0, m) : _mm512_setzero_ps();
        acc = _mm512_fmadd_ps(acc, _mm512_load_ps(p->scale + r0), b); /* scale in slice order */
        if (relu)
            acc = _mm512_max_ps(acc, _mm512_setzero_ps());
        store_rows(p, y, r0, m, acc);
    }
}
#undef STEP8
#undef W8

/* The first slice of part `part` of nparts: parts get about equal steps. */
static int part_start(const compress_panels *p, int part, int nparts)
{
    if (part <= 0)
        return 0;
    if (part >= nparts)
        return p->nslice;
    size_t want = p->slice_at[p->nslice] * (size_t)part / (size_t)nparts;
    int s = 0;
    while (s < p->nslice && p->slice_at[s] < want)
        s++;
    /* rows in non-zero order: on a block, so parts write separate lines of y */
    return p->perm && s < p->nslice ? s / PANELS_ORDER_SLICES * PANELS_ORDER_SLICES : s;
}

/* Asks for all of x at once.  In a model's forward x is the previous
 * layer's output, half written by the other core of the team, so its lines
 * sit modified in that core's cache; the kernels walk x window by window
 * and would take those misses a few at a time. */
static void prefetch_x(const float *x, int cols)
{
    for (int c = 0; c < cols; c += 16)
        __builtin_prefetch(x + c);
}

void compress_panels_spmv_part_relu(const compress_panels *p, const float *bias, const float *x,
                                    float *y, int part, int nparts, int relu)
{
    prefetch_x(x, p->p8 ? compress_panels8_cols(p->p8) : p->cols);
    if (p->p8) {
        compress_panels8_spmv_part(p->p8, bias, x, y, part, nparts, relu);
        return;
    }
    int s0 = part_start(p, part, nparts), s1 = part_start(p, part + 1, nparts);
    if (s0 < s1 && p->q8)
        spmv_q8(p, bias, x, y, s0, s1, relu);
    else if (s0 < s1)
        spmv(p, bias, x, y, s0, s1, relu);
}

void compress_panels_spmv_part(const compress_panels *p, const float *bias, const float *x,
                               float *y, int part, int nparts)
{
    compress_panels_spmv_part_relu(p, bias, x, y, part, nparts, 0);
}

void compress_panels_spmv(const compress_panels *p, const float *bias, const float *x, float *y)
{
    compress_panels_spmv_part_relu(p, bias, x, y, 0, 1, 0);
}
