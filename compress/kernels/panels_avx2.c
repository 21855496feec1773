/* The batch-1 panels for AVX2 CPUs (kernel level avx2: AVX2 + FMA, no
 * AVX-512): panels.c's idea at half the width.  Rows are cut into slices of
 * 8; a slice's non-zeros are laid out in steps of 8 lanes (lane j = row j of
 * the slice, zero where that row has nothing in the step).  A step names a
 * window of 8 consecutive columns of x and, for each lane, a 3-bit column
 * within it, so a step is one window load, one variable shift, one vpermps
 * and one FMA into the slice's 8 row accumulators -- no gathers.  The
 * windows slide with the non-zeros (slice_steps): 2.0 lanes per non-zero at
 * 90% sparsity (fixed panels of 8 columns: 2.6).
 *
 * Steps come in pairs that share one 64-bit word: both steps' lane indices
 * (placed so that one broadcast and one vpsrlvq per step put lane j's in
 * the low bits of dword j) and each step's window as an 8-bit advance over
 * the previous window of its slice (a gap of more than 255 columns takes
 * filler steps with no lanes; a slice with an odd count ends on an empty
 * step).  The kernel is bound by loads, not by vector arithmetic (dropping
 * the shift or the int8 widening changed nothing; aligned windows gained
 * 7%): a step read its indices, its window's start, its window and its
 * values -- 4.4 loads with the line-split windows -- and now reads 3.4
 * (the pair's word twice: broadcast and scalar).  Bytes per step: 4 of
 * indices and window plus 32 of fp32 values or 8 of int8 values.
 *
 * Measured on the development host forced to avx2, a 1200x1200 layer at 90%
 * on one thread: vgatherdps (8 non-zeros a gather) 59 us, the portable
 * 4-accumulator loop 46-52 us, fixed panels with a loop per panel 117 us
 * (its step-count branch mispredicted about once a panel), one flat run of
 * steps per slice 25 us, sliding windows 20 us (int8: 18.5 us).  Later, on
 * a loaded host (min of 8 alternating runs): sliding windows 19.5 us (int8
 * 17.9), paired steps 17.1 (15.9), eight accumulators 16.7 (15.0).  What
 * did not pay there: bf16 int8 values converted by one AND or shift (no
 * gain: not bound by the widening), an add-only chain of window positions,
 * padding slices to 4 steps to drop the tail branch (2%, noise).
 *
 * The rows of a slice may be the layer's rows sorted by length
 * (panels_order.c, perm): finish() then reads the bias and writes y through
 * perm, and parts start on a block of PANELS_ORDER_SLICES slices.
 *
 * A slice whose rows share their columns (rows pruned in blocks of 8, a
 * dense block, one row) is a column slice instead (col_steps): a step is
 * one column broadcast to all 8 lanes, no window load, shift or permute,
 * taken where it needs no more steps than the windows.  make run's agp90b8
 * (90% in blocks of 8) at 2 threads: 11.3 -> 9.1 us for the model.
 *
 * The int8 flavour keeps the same steps with 8 int8 values a step, widened
 * in registers (vpmovsxbd, vcvtdq2ps); the per-row scale is applied once
 * per slice (acc * scale + bias).  Both are built by panels.c when the
 * kernel level in use is avx2, so layers see one compress_panels.
 *
 * On a real AVX2-only CPU (AMD EPYC Zen 3, 2026-11-30) two forms that cost
 * nothing on Zen 5 are slow: vpermps with a memory operand runs at one per 2
 * cycles (from a register: one a cycle), and vpmovsxbd from a register at
 * 1.25 cycles (from memory: 0.67).  So the window is loaded into a register
 * first (an empty asm keeps gcc from folding the load back) and each step's
 * 8 int8 values are widened straight from memory.  One thread, 1200 x 1200
 * at 90%, interleaved: fp32 0.85-0.87x the time, int8 0.63-0.66x. */
#include <immintrin.h>
#include <string.h>

#include "internal.h"

#define TGT __attribute__((target("avx2,fma")))

struct compress_panels8 {
    int rows, cols, nslice;
    int q8;           /* int8 values and per-row scales */
    uint64_t *idx;    /* one word per pair of steps: lane indices and window
                       * advances (see pair_bit and slice_steps) */
    float *val;       /* fp32: 8 per step */
    int8_t *qval;     /* q8: 8 per step */
    float *scale;     /* q8: nslice x 8 row scales (0 past rows), in slice order */
    size_t *slice_at; /* nslice + 1: steps before each slice */
    uint8_t *colsl;   /* nslice: 1 for a column slice (see col_steps) */
    uint32_t *perm;   /* rows in slice order (panels_order.c), or NULL */
    int lined;        /* windows read x in lines (lined_at), not x itself */
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
    kd_free(p->colsl);
    kd_free(p->perm);
    kd_free(p);
}

int compress_panels8_cols(const compress_panels8 *p) { return p->cols; }

size_t compress_panels8_bytes(const compress_panels8 *p)
{
    size_t steps = p->slice_at[p->nslice];
    return steps * (4 + (p->q8 ? 8 : 32)) + (p->q8 ? (size_t)p->nslice * 32 : 0) +
           ((size_t)p->nslice + 1) * sizeof *p->slice_at + (size_t)p->nslice +
           (p->perm ? (size_t)p->rows * sizeof *p->perm : 0);
}

/* Where lane j's 3-bit index sits in its pair's word: steps 0 and 1 of the
 * pair (half) use bits [0, 12) and [12, 24) for the even lanes and 32 more
 * for the odd ones, so that the kernel's vpsrlvq by 3i (+ 12 for half 1)
 * leaves lane 2i's index in the low bits of dword 2i and lane 2i + 1's in
 * dword 2i + 1.  The window advances sit at bits 24 (half 0) and 56. */
static inline int pair_bit(int j, int half)
{
    return 12 * half + 3 * (j >> 1) + 32 * (j & 1);
}

/* Windows that never cross a 64-byte line.  A window of 8 floats at any
 * column crosses a line 7 times in 16, and the split load costs a step
 * about 9% (measured: windows kept off the splits by the builder alone ran
 * 15% more steps in 4.5% more time).  So the fp32 kernel first copies x
 * "in lines": line 2k holds x[16k, 16k + 16) and line 2k + 1 holds
 * x[16k + 8, 16k + 24), zero past the end, and the window at column w lies
 * inside one line at lined_at(w); the steps' window advances count in that
 * layout (lined_at grows with w).  The copy is 2 x cols floats on the stack
 * (up to LINED_COLS columns; wider layers read x itself).  One thread,
 * 1200 x 1200 at 90%, avx2: 0.94x the time in 30 of 30 interleaved rounds.
 * The int8 kernel gained nothing (1.01x: it waits on its widening, not on
 * loads) and reads x itself. */
#define LINED_COLS 4096
_Static_assert(LINED_COLS % 16 == 0, "whole lines");

static inline uint32_t lined_at(uint32_t w)
{
    return 32 * (w / 16) + w % 16 + (w % 16 >= 8 ? 8 : 0);
}

static int lined_for(const compress_panels_src *a)
{
    return !a->q && a->cols <= LINED_COLS;
}

/* Writes step t's window advance adv (<= 255) over the previous window. */
static inline void put_step(compress_panels8 *p, size_t t, uint32_t adv)
{
    p->idx[t / 2] |= (uint64_t)adv << (t % 2 ? 56 : 24);
}

/* The rows of slice s as they are consumed: row j's next non-zero k[j]
 * (of its end[j]). */
typedef struct {
    uint32_t k[8], end[8];
    int nr;
} slice_rows;

static void slice_rows_init(slice_rows *c, const compress_panels_src *a, int s)
{
    c->nr = a->rows - 8 * s < 8 ? a->rows - 8 * s : 8;
    for (int j = 0; j < c->nr; j++) {
        c->k[j] = a->rowptr[8 * s + j];
        c->end[j] = a->rowptr[8 * s + j + 1];
    }
}

/* The lowest column any row has left, UINT32_MAX when none. */
static uint32_t slice_rows_lowest(const slice_rows *c, const compress_panels_src *a)
{
    uint32_t w = UINT32_MAX;
    for (int j = 0; j < c->nr; j++)
        if (c->k[j] < c->end[j] && compress_panels_src_col(a, c->k[j]) < w)
            w = compress_panels_src_col(a, c->k[j]);
    return w;
}

/* The steps of slice s, greedily: a step's window starts at the lowest
 * column any row of the slice has left, and every row whose next non-zero
 * lies in the window's 8 columns puts it in its lane (the window is moved
 * back to cols - 8 at the right edge, so loads stay inside x; windows never
 * move back).  Windows that slide with the non-zeros instead of fixed
 * panels of 8 columns need 2.0 lanes per non-zero at 90% sparsity instead of
 * 2.6.  A window more than 255 columns past the previous one (the slice
 * starts at column 0) is reached through empty filler steps, and an odd
 * count is padded with an empty step.  Returns the number of steps; writes
 * them from step base on when fill. */
static size_t slice_steps(const compress_panels_src *a, compress_panels8 *p, int s, size_t base,
                          int fill)
{
    slice_rows c;
    slice_rows_init(&c, a, s);
    uint32_t *k = c.k, *end = c.end, prev = 0;
    int nr = c.nr;
    size_t t = base;
    for (;; t++) {
        uint32_t w = slice_rows_lowest(&c, a);
        if (w == UINT32_MAX)
            break;
        /* fewer than 8 columns: the kernel reads a zero-padded copy of x of 8
         * floats, so the window must start at 0 (starting at w read past it) */
        uint32_t w0 = p->lined                          ? w
                      : p->cols < 8                     ? 0
                      : w + 8 > (uint32_t)p->cols ? (uint32_t)p->cols - 8
                                                  : w;
        uint32_t at = p->lined ? lined_at(w0) : w0;
        for (; at - prev > 255; prev += 255, t++) /* fillers: no lanes */
            if (fill)
                put_step(p, t, 255);
        if (fill)
            put_step(p, t, at - prev);
        prev = at;
        for (int j = 0; j < nr; j++) {
            if (k[j] >= end[j] || compress_panels_src_col(a, k[j]) >= w + 8)
                continue;
            if (fill && a->q)
                p->qval[t * 8 + j] = a->q[k[j]];
            else if (fill)
                p->val[t * 8 + j] = a->val[k[j]];
            if (fill)
                p->idx[t / 2] |= (uint64_t)(compress_panels_src_col(a, k[j]) - w0)
                                 << pair_bit(j, (int)(t % 2));
            k[j]++;
        }
    }
    t += (t - base) % 2; /* the pair's second step stays empty (advance 0) */
    return t - base;
}

/* A column slice: one step per column that any row of slice s has, every
 * lane x[column] (one broadcast, no window or lane indices), the rows
 * without that column zero.  Where the rows share their columns -- rows
 * pruned in blocks of 8 (prune's block), a dense block, a single row --
 * that is as few steps as the windows need, and each is cheaper.  The
 * pair's word holds the two steps' columns (low and high 32 bits); an odd
 * count ends on an empty step (column 0, zero values).  Returns the steps;
 * writes them from base when fill. */
static size_t col_steps(const compress_panels_src *a, compress_panels8 *p, int s, size_t base,
                        int fill)
{
    slice_rows r;
    slice_rows_init(&r, a, s);
    uint32_t *k = r.k, *end = r.end;
    int nr = r.nr;
    size_t t = base;
    for (;; t++) {
        uint32_t c = slice_rows_lowest(&r, a);
        if (c == UINT32_MAX)
            break;
        if (fill)
            p->idx[t / 2] |= (uint64_t)c << (t % 2 ? 32 : 0);
        for (int j = 0; j < nr; j++) {
            if (k[j] >= end[j] || compress_panels_src_col(a, k[j]) != c)
                continue;
            if (fill && a->q)
                p->qval[t * 8 + j] = a->q[k[j]];
            else if (fill)
                p->val[t * 8 + j] = a->val[k[j]];
            k[j]++;
        }
    }
    t += (t - base) % 2;
    return t - base;
}

/* Slice s's steps in the cheaper of the two forms (*col: 1 for a column
 * slice, taken when it needs no more steps than the windows). */
static size_t choose_steps(const compress_panels_src *a, compress_panels8 *p, int s, int *col)
{
    size_t w = slice_steps(a, p, s, 0, 0), c = col_steps(a, p, s, 0, 0);
    *col = c <= w;
    return c <= w ? c : w;
}

int compress_panels8_steps(const compress_panels_src *a, size_t *n)
{
    compress_panels8 p = {.rows = a->rows, .cols = a->cols, .lined = lined_for(a)};
    *n = 0;
    int col;
    for (int s = 0; s < (a->rows + 7) / 8; s++)
        *n += choose_steps(a, &p, s, &col);
    return 1;
}

compress_panels8 *compress_panels8_new(const compress_panels_src *a, kd_err *e)
{
    compress_panels8 *p = kd_calloc(1, sizeof *p);
    if (!p)
        goto oom;
    *p = (compress_panels8){.rows = a->rows, .cols = a->cols, .q8 = a->q != NULL,
                            .nslice = (a->rows + 7) / 8, .lined = lined_for(a)};
    p->slice_at = kd_calloc((size_t)p->nslice + 1, sizeof *p->slice_at);
    p->colsl = kd_calloc((size_t)p->nslice + 1, 1);
    if (!p->slice_at || !p->colsl)
        goto oom;
    if (a->perm) {
        if (!(p->perm = kd_malloc((size_t)a->rows * sizeof *p->perm)))
            goto oom;
        memcpy(p->perm, a->perm, (size_t)a->rows * sizeof *p->perm);
    }
    size_t total = 0;
    for (int s = 0; s < p->nslice; s++) {
        int col;
        p->slice_at[s] = total;
        total += choose_steps(a, p, s, &col);
        p->colsl[s] = (uint8_t)col;
    }
    p->slice_at[p->nslice] = total;
    p->idx = (uint64_t *)kd_afloat(total + 2); /* a word per pair, zeroed */
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
        if (p->colsl[s])
            col_steps(a, p, s, p->slice_at[s], 1);
        else
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
    float t[8] __attribute__((aligned(32))) = {0};
    if (p->perm && bias) /* rows in slice order: their biases one by one */
        for (int j = 0; j < left && j < 8; j++)
            t[j] = bias[p->perm[r0 + j]];
    __m256 b = !bias     ? _mm256_setzero_ps()
               : p->perm ? _mm256_load_ps(t)
                         : _mm256_maskload_ps(bias + r0, m);
    acc = p->q8 ? _mm256_fmadd_ps(acc, _mm256_load_ps(p->scale + r0), b) : _mm256_add_ps(acc, b);
    if (relu) /* max returns its second operand for NaN: 0, as nn's relu */
        acc = _mm256_max_ps(acc, _mm256_setzero_ps());
    if (p->perm) {
        _mm256_store_ps(t, acc);
        for (int j = 0; j < left && j < 8; j++)
            y[p->perm[r0 + j]] = t[j];
    } else if (left >= 8) {
        _mm256_storeu_ps(y + r0, acc);
    } else {
        _mm256_maskstore_ps(y + r0, m, acc);
    }
}

/* Steps 2P and 2P + 1 of the run at ix: their pair's word, broadcast for
 * the lane indices and read again for the window advances (xw moves along
 * the slice's windows), values WV(2P) and WV(2P + 1) into accumulators A, B. */
#define PAIR(WV, P, A, B)                                                                        \
    do {                                                                                       \
        __m256i q_;                                                                            \
        __asm__("vpbroadcastq %1, %0" : "=x"(q_) : "m"(ix[P])); /* not merged with w_'s load */ \
        uint64_t w_ = ix[P];                                                                   \
        __asm__("" : "+r"(w_));                                                                \
        xw += (uint32_t)(w_ >> 24) & 255u;                                                     \
        __m256 l0_ = _mm256_loadu_ps(xw);                                                      \
        __asm__("" : "+x"(l0_)); /* vpermps from a register (see the top) */               \
        __m256 g0_ = _mm256_permutevar8x32_ps(l0_, _mm256_srlv_epi64(q_, sh0));                \
        xw += w_ >> 56;                                                                        \
        __m256 l1_ = _mm256_loadu_ps(xw);                                                      \
        __asm__("" : "+x"(l1_));                                                               \
        __m256 g1_ = _mm256_permutevar8x32_ps(l1_, _mm256_srlv_epi64(q_, sh1));                \
        WV(2 * (P), g0_, g1_, A, B);                                                           \
    } while (0)
/* The same for a column slice: the pair's word holds the two steps' columns. */
#define CPAIR(WV, P, A, B)                                                                       \
    do {                                                                                       \
        uint64_t w_ = ix[P];                                                                   \
        __m256 g0_ = _mm256_broadcast_ss(x + (uint32_t)w_);                                    \
        __m256 g1_ = _mm256_broadcast_ss(x + (w_ >> 32));                                      \
        WV(2 * (P), g0_, g1_, A, B);                                                           \
    } while (0)
/* A += (values of step t) g0, B += (values of step t + 1) g1; int8: each
 * step's 8 values widened straight from memory (vpmovsxbd m64). */
#define WF(t, g0, g1, A, B)                                                                    \
    do {                                                                                       \
        A = _mm256_fmadd_ps(_mm256_load_ps(v + 8 * (t)), g0, A);                               \
        B = _mm256_fmadd_ps(_mm256_load_ps(v + 8 * (t) + 8), g1, B);                           \
    } while (0)
#define W8(t, g0, g1, A, B)                                                                    \
    do {                                                                                       \
        __m256i b0_ = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(v + 8 * (t))));   \
        __m256i b1_ = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(v + 8 * (t) + 8))); \
        A = _mm256_fmadd_ps(_mm256_cvtepi32_ps(b0_), g0, A);                                   \
        B = _mm256_fmadd_ps(_mm256_cvtepi32_ps(b1_), g1, B);                                   \
    } while (0)

/* The slice loop shared by both value types: a slice's steps are one flat
 * run (each step loads its own window of x), so no branch depends on how
 * many steps a panel has -- with ~2 steps a panel at 90% sparsity, a loop
 * per panel mispredicted about once a panel and ran 4x slower.  Four
 * accumulators hide the FMA latency.  WV(t) is step t's values as floats. */
#define SLICES(WV)                                                                             \
    for (int s = s0; s < s1; s++) {                                                            \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                           \
        __m256 a4 = a0, a5 = a0, a6 = a0, a7 = a0;                                             \
        size_t n = p->slice_at[s + 1] - p->slice_at[s]; /* even */                             \
        const float *xw = xwin;                                                                \
        if (p->colsl[s]) { /* a column slice: all of it here */                                \
            for (; n >= 8; n -= 8, v += 64, ix += 4) {                                         \
                CPAIR(WV, 0, a0, a1);                                                          \
                CPAIR(WV, 1, a2, a3);                                                          \
                CPAIR(WV, 2, a4, a5);                                                          \
                CPAIR(WV, 3, a6, a7);                                                          \
            }                                                                                  \
            for (; n; n -= 2, v += 16, ix += 1)                                                \
                CPAIR(WV, 0, a0, a1);                                                          \
        }                                                                                      \
        for (; n >= 8; n -= 8, v += 64, ix += 4) {                                             \
            PAIR(WV, 0, a0, a1);                                                               \
            PAIR(WV, 1, a2, a3);                                                               \
            PAIR(WV, 2, a4, a5);                                                               \
            PAIR(WV, 3, a6, a7);                                                               \
        }                                                                                      \
        a0 = _mm256_add_ps(a0, a4), a1 = _mm256_add_ps(a1, a5);                                \
        a2 = _mm256_add_ps(a2, a6), a3 = _mm256_add_ps(a3, a7);                                \
        for (; n >= 4; n -= 4, v += 32, ix += 2) {                                             \
            PAIR(WV, 0, a0, a1);                                                               \
            PAIR(WV, 1, a2, a3);                                                               \
        }                                                                                      \
        if (n) {                                                                               \
            PAIR(WV, 0, a0, a1);                                                               \
            v += 16, ix += 1;                                                                  \
        }                                                                                      \
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

/* x in lines (see lined_at) into xl, 32 floats for each 16 columns. */
TGT static const float *lined_x(const compress_panels8 *p, const float *x, float *xl)
{
    int k = 0, nk = (p->cols + 15) / 16;
    for (; 16 * k + 24 <= p->cols; k++) {
        __m256 a = _mm256_loadu_ps(x + 16 * k), b = _mm256_loadu_ps(x + 16 * k + 8);
        _mm256_store_ps(xl + 32 * k, a);
        _mm256_store_ps(xl + 32 * k + 8, b);
        _mm256_store_ps(xl + 32 * k + 16, b);
        _mm256_store_ps(xl + 32 * k + 24, _mm256_loadu_ps(x + 16 * k + 16));
    }
    for (; k < nk; k++)
        for (int i = 0; i < 32; i++) {
            int c = 16 * k + (i < 16 ? i : i - 8);
            xl[32 * k + i] = c < p->cols ? x[c] : 0.0f;
        }
    return xl;
}

/* Slices [s0, s1) of y = A x + bias, fp32 values. */
TGT static void spmv_f32(const compress_panels8 *p, const float *bias, const float *x0, float *y,
                         int s0, int s1, int relu)
{
    const __m256i sh0 = _mm256_setr_epi64x(0, 3, 6, 9), sh1 = _mm256_setr_epi64x(12, 15, 18, 21);
    float pad[8], xl[2 * LINED_COLS] __attribute__((aligned(64)));
    const float *x = padded_x(p, x0, pad), *xwin = p->lined ? lined_x(p, x0, xl) : x;
    size_t t0 = p->slice_at[s0];
    const float *v = p->val + t0 * 8;
    const uint64_t *ix = p->idx + t0 / 2;
    SLICES(WF)
}

/* Slices [s0, s1) of y = scale * (Q x) + bias, int8 values. */
TGT static void spmv_q8(const compress_panels8 *p, const float *bias, const float *x0, float *y,
                        int s0, int s1, int relu)
{
    const __m256i sh0 = _mm256_setr_epi64x(0, 3, 6, 9), sh1 = _mm256_setr_epi64x(12, 15, 18, 21);
    float pad[8];
    const float *x = padded_x(p, x0, pad), *xwin = x;
    size_t t0 = p->slice_at[s0];
    const int8_t *v = p->qval + t0 * 8;
    const uint64_t *ix = p->idx + t0 / 2;
    SLICES(W8)
}
#undef SLICES
#undef W8
#undef WF
#undef CPAIR
#undef PAIR

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
    /* an even slice: parts never write the same 64-byte line of y (slices
     * are 32 bytes of it), so no line of y moves between the team's cores
     * while they write; rows in panels.c's order: on a block of
     * PANELS_ORDER_SLICES slices */
    return lo >= p->nslice ? lo : p->perm ? lo / PANELS_ORDER_SLICES * PANELS_ORDER_SLICES : lo & ~1;
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
