/* Sparse int8 weights times int8 activations (csr-int8-static's and
 * csr-int8-dyn's kernels): the reference on the CSR itself, and the byte
 * panels the AVX2 kernel (quant_csr_s8_avx2.c) runs at any batch.
 *
 * Byte panels: rows are cut into slices of 8; a slice's entries are laid
 * out in steps.  A step names a window of 16 consecutive columns of x and
 * holds, for each of the slice's 8 rows, up to 4 of that row's entries
 * inside the window in the row's 4 lanes 4i .. 4i + 3 (value 0 in lanes it
 * does not fill).  Each lane's column within the window is a nibble, so one
 * vpshufb of the window (broadcast to both halves) gathers the 32
 * activations, and vpmaddubsw + vpmaddwd add each row's 4 products into its
 * own int32 lane.  The activations enter as unsigned codes (int8 code + 128,
 * so the sums are of val * (x + 128); the output stage takes 128 * the
 * row's sum off with the zero point's share), and the two values of each
 * int16 pair (lanes 4i, 4i + 1 and 4i + 2, 4i + 3) differ in sign or sum to
 * at most 128 in magnitude (pairable), so no pair vpmaddubsw forms exceeds
 * 255 * 128 = 32640: exact without the sign trick (two vpsignb a step
 * fewer).  A row's entries a step cannot so place wait for the next one.
 * The window of a step starts at the smallest column any row of the slice
 * has left, moved back so that it ends inside x (x carries QUANT_CSR_S8_PAD
 * readable bytes past its k values for layers under 16 columns).
 *
 * Steps come in pairs (a slice with an odd count ends on an empty step)
 * whose lane nibbles share 32 bytes: byte b holds lane b's column in the
 * first step (low nibble) and in the second (high), so one load, two ANDs
 * and a shift unpack two steps.  A step costs 16 bytes of nibbles, 32 of
 * values and 2 of window start; at 90% sparsity it holds ~10-12 entries
 * (~4.5 bytes an entry), where csr-int8's fp32-activation panels hold ~4 in
 * a step of 8 lanes.
 *
 * Measured on an AVX2-only AMD EPYC (Zen 3), one thread, random 10%-dense
 * int8 matrices, the first form (a 16-byte nibble block a step, the sign
 * trick) against csr-int8's fp32-activation AVX2 panels: 1200 x 1200 18.9
 * us vs 45.8 us, 1200 x 784 11.9 vs 30.3 us (/work/scratch11/bp.c).
 * Full-byte lane indices (32 bytes a step) ran at the same speed as the
 * nibbles; the paired nibbles then took 0.84-0.92x the time (three
 * interleaved runs); the unsigned codes with pairable lanes 0.88x (the
 * pruned teacher's layers, 7-12% more steps). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct quant_csr_s8_panels {
    int rows, cols, nslice;
    uint32_t *slice_at; /* nslice + 1: steps before each slice */
    uint16_t *win;      /* per step: its window's first column */
    uint8_t *nib;       /* per pair of steps: 32 bytes; byte b holds lane b's
                         * column in the first step (low nibble) and in the
                         * second (high nibble) */
    int8_t *val;        /* per step: 32 values, lane 4i + t */
};

void quant_csr_s8_ref(const quant_csr *q, const uint8_t *xu, int32_t *acc, int r0, int r1)
{
    for (int r = r0; r < r1; r++) {
        int32_t s = 0;
        int col = 0;
        for (int32_t j = q->row_ptr[r]; j < q->row_ptr[r + 1]; j++) {
            col += q->delta[j];
            s += (int32_t)q->val[j] * xu[col];
        }
        acc[r] = s;
    }
}

void quant_csr_s8_codes(const int8_t *x, size_t n, uint8_t *xu)
{
    for (size_t i = 0; i < n; i++)
        xu[i] = (uint8_t)x[i] ^ 0x80u;
}

void quant_csr_s8_out_ref(const quant_csr_s8_epi *ep, const int32_t *acc, float *y, int r0, int r1)
{
    for (int r = r0; r < r1; r++) {
        int32_t d = (int32_t)((uint32_t)acc[r] - (uint32_t)ep->zr[r]);
        float v = (float)d * ep->cs[r] + (ep->b ? ep->b[r] : 0.0f);
        y[r] = ep->relu ? (v > 0 ? v : 0.0f) : v;
    }
}

void quant_csr_s8_out(const quant_csr_s8_epi *ep, const int32_t *acc, float *y, int r0, int r1)
{
    if (kernels_isa() >= KD_ISA_AVX2)
        quant_csr_s8_out_avx2(ep, acc, y, r0, r1);
    else
        quant_csr_s8_out_ref(ep, acc, y, r0, r1);
}

void quant_csr_s8_panels_free(quant_csr_s8_panels *p)
{
    if (!p)
        return;
    kd_free(p->slice_at);
    kd_free(p->win);
    kd_afree(p->nib);
    kd_afree(p->val);
    kd_free(p);
}

size_t quant_csr_s8_panels_bytes(const quant_csr_s8_panels *p)
{
    return (size_t)p->slice_at[p->nslice] * (16 + 32 + sizeof *p->win) +
           ((size_t)p->nslice + 1) * sizeof *p->slice_at;
}

/* Whether two values may share an int16 pair of vpmaddubsw: with codes up
 * to 255 the pair sums to at most 255 * (|a| + |b|) when they have one sign,
 * so one sign is fine up to |a| + |b| <= 128 (255 * 128 = 32640 < 32767). */
static int pairable(int a, int b)
{
    return (a < 0) != (b < 0) || abs(a) + abs(b) <= 128;
}

/* Lanes (0..3 of a row's 4: pairs {0, 1} and {2, 3}) for the n <= 4 values
 * v, so that each pair's two values are pairable; 0 when no placement
 * works (n <= 2 always does: one value a pair). */
static int pair_lanes(const int8_t *v, int n, int *lane)
{
    static const int order[3][4] = {{0, 1, 2, 3}, {0, 2, 1, 3}, {0, 2, 3, 1}};
    if (n <= 2) {
        for (int u = 0; u < n; u++)
            lane[u] = 2 * u; /* one a pair */
        return 1;
    }
    for (int o = 0; o < 3; o++) { /* the matchings {01,23}, {02,13}, {03,12} */
        const int *l = order[o];
        /* entries at lanes l[u]: pair 0 holds the entries with lanes 0, 1 */
        int by_lane[4] = {0}, used[4] = {0};
        for (int u = 0; u < n; u++)
            by_lane[l[u]] = v[u], used[l[u]] = 1;
        int ok = 1;
        for (int pr = 0; pr < 2; pr++)
            if (used[2 * pr] && used[2 * pr + 1] &&
                !pairable(by_lane[2 * pr], by_lane[2 * pr + 1]))
                ok = 0;
        if (ok) {
            for (int u = 0; u < n; u++)
                lane[u] = l[u];
            return 1;
        }
    }
    return 0;
}

/* The builder's scratch: each entry's column, and whether a step took it. */
typedef struct {
    int32_t *col;
    uint8_t *taken;
} build_scratch;

/* How far past a row's first entry left a step looks for entries it can
 * place (entries a step skips stay for the next ones). */
enum { LOOK = 12 };

/* Walks slice s's steps (8 rows from 8 s): counts them, and when p->val is
 * set lays them out from step t (even).  Returns the step count, even (an
 * empty step ends an odd run: window 0, values 0).  A step's window starts
 * at the smallest column any row has left; each row then takes, in column
 * order, the entries in the window that pair_lanes can still place, up to 4
 * among its first LOOK left. */
static uint32_t slice_steps(const quant_csr *q, quant_csr_s8_panels *p, int s, size_t t,
                            const build_scratch *b)
{
    int32_t at[8], end[8]; /* each row's first entry left, its end */
    for (int i = 0; i < 8; i++) {
        int r = 8 * s + i;
        at[i] = r < q->m ? q->row_ptr[r] : 0;
        end[i] = r < q->m ? q->row_ptr[r + 1] : 0;
    }
    const int32_t e0 = q->row_ptr[8 * s], e1 = q->row_ptr[8 * s + 8 < q->m ? 8 * s + 8 : q->m];
    memset(b->taken + e0, 0, (size_t)(e1 - e0)); /* the count's marks, for the layout's walk */
    uint32_t n = 0;
    for (;; n++) {
        int w = q->k;
        for (int i = 0; i < 8; i++)
            if (at[i] < end[i] && b->col[at[i]] < w)
                w = b->col[at[i]];
        if (w == q->k)
            return n + (n & 1);
        if (w + QUANT_CSR_S8_WIN > q->k) /* end the window inside x (or its pad) */
            w = q->k >= QUANT_CSR_S8_WIN ? q->k - QUANT_CSR_S8_WIN : 0;
        uint8_t *nib = p->val ? p->nib + 16 * (t + (n & ~1u)) : NULL;
        const int hi = (int)(n & 1) * 4; /* the pair's second step: high nibbles */
        int8_t *val = p->val ? p->val + 32 * (t + n) : NULL;
        if (p->val)
            p->win[t + n] = (uint16_t)w;
        for (int i = 0; i < 8; i++) {
            int32_t pick[4];
            int8_t v[4];
            int cnt = 0, lanes[4];
            for (int32_t j = at[i], seen = 0; cnt < 4 && j < end[i] && seen < LOOK &&
                                               b->col[j] < w + QUANT_CSR_S8_WIN;
                 j++) {
                if (b->taken[j])
                    continue;
                seen++;
                v[cnt] = q->val[j];
                if (pair_lanes(v, cnt + 1, lanes))
                    pick[cnt++] = j;
            }
            pair_lanes(v, cnt, lanes);
            for (int u = 0; u < cnt; u++) {
                int lane = 4 * i + lanes[u];
                if (val) {
                    val[lane] = v[u];
                    nib[lane] |= (uint8_t)((b->col[pick[u]] - w) << hi);
                }
                b->taken[pick[u]] = 1;
            }
            while (at[i] < end[i] && b->taken[at[i]])
                at[i]++;
        }
    }
}

quant_csr_s8_panels *quant_csr_s8_panels_new(const quant_csr *q, kd_err *e)
{
    if (q->k > QGEMM_KMAX) {
        kd_err_set(e, KD_ECONFIG, "csr-int8-static: %d columns, more than %d", q->k, QGEMM_KMAX);
        return NULL;
    }
    quant_csr_s8_panels *p = kd_calloc(1, sizeof *p);
    if (!p)
        goto oom;
    p->rows = q->m;
    p->cols = q->k;
    p->nslice = (q->m + 7) / 8;
    if (!(p->slice_at = kd_malloc(((size_t)p->nslice + 1) * sizeof *p->slice_at)))
        goto oom;
    build_scratch b = {kd_malloc(((size_t)q->nnz + 1) * sizeof *b.col),
                       kd_malloc((size_t)q->nnz + 1)};
    if (!b.col || !b.taken) {
        kd_free(b.col);
        kd_free(b.taken);
        goto oom;
    }
    for (int r = 0; r < q->m; r++) {
        int32_t c = 0;
        for (int32_t j = q->row_ptr[r]; j < q->row_ptr[r + 1]; j++)
            b.col[j] = c += q->delta[j];
    }
    size_t total = 0;
    for (int s = 0; s < p->nslice; s++) {
        p->slice_at[s] = (uint32_t)total;
        total += slice_steps(q, p, s, 0, &b);
    }
    p->slice_at[p->nslice] = (uint32_t)total;
    p->win = kd_calloc(total + 1, sizeof *p->win);
    p->nib = (uint8_t *)kd_afloat(total * 4 + 8);  /* 16 bytes a step, zeroed (win: 0) */
    p->val = (int8_t *)kd_afloat(total * 8 + 8);   /* 32 bytes a step, zeroed */
    if (p->win && p->nib && p->val)
        for (int s = 0; s < p->nslice; s++)
            slice_steps(q, p, s, p->slice_at[s], &b);
    kd_free(b.col);
    kd_free(b.taken);
    if (!p->win || !p->nib || !p->val)
        goto oom;
    return p;
oom:
    quant_csr_s8_panels_free(p);
    kd_err_set(e, KD_ENOMEM, "out of memory for the csr-int8-static panels");
    return NULL;
}

/* The first slice of part `part` of nparts: about equal steps each, and an
 * even slice, so that two parts never write one 64-byte line of acc. */
static int part_slice(const quant_csr_s8_panels *p, int part, int nparts)
{
    if (part <= 0)
        return 0;
    if (part >= nparts)
        return p->nslice;
    uint64_t want = (uint64_t)p->slice_at[p->nslice] * (uint64_t)part / (uint64_t)nparts;
    int lo = 0, hi = p->nslice;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (p->slice_at[mid] < want)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo >= p->nslice ? lo : lo & ~1;
}

void quant_csr_s8_panels_rows(const quant_csr_s8_panels *p, int part, int nparts, int *r0, int *r1)
{
    int s0 = part_slice(p, part, nparts), s1 = part_slice(p, part + 1, nparts);
    *r0 = 8 * s0 < p->rows ? 8 * s0 : p->rows;
    *r1 = 8 * s1 < p->rows ? 8 * s1 : p->rows;
}

void quant_csr_s8_panels_run(const quant_csr_s8_panels *p, const uint8_t *x, size_t xstride,
                             int nx, int32_t *acc, size_t astride, int part, int nparts)
{
    int s0 = part_slice(p, part, nparts), s1 = part_slice(p, part + 1, nparts);
    for (int i = 0; s0 < s1 && i < nx; i += QUANT_CSR_S8_NX) {
        size_t t = p->slice_at[s0];
        quant_csr_s8_avx2(p->slice_at + s0, s1 - s0, p->win + t, p->nib + 16 * t,
                          p->val + 32 * t, x + i * xstride, xstride,
                          nx - i < QUANT_CSR_S8_NX ? nx - i : QUANT_CSR_S8_NX,
                          acc + i * astride + 8 * s0, astride, p->rows - 8 * s0);
    }
}
