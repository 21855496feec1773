/* 2-D convolution: square kernel, stride, zero padding, NCHW.
 * W is [filters][cin][k][k], i.e. a (filters x cin*k*k) row-major matrix, so
 * the layer is im2col + one OpenBLAS sgemm per chunk of samples:
 *   forward   Y (F x m*HW)    = W (F x CKK) * cols (CKK x m*HW)
 *   backward  dW (F x CKK)   += dY (F x m*HW) * cols^T
 *             dcols           = W^T * dY, then col2im into dx
 * where the column matrix of a chunk of m samples puts sample s's output
 * pixels at columns s*HW .. s*HW+HW-1.  Batching samples keeps the GEMMs
 * large (the weight gradient especially: K = m*HW instead of HW); the price is
 * regrouping Y into NCHW and dY out of it, both cheap next to the GEMMs.  On
 * the reference CNN (batch 128, 2 cores) chunks of ~10-20 samples run as fast
 * as one GEMM over the batch.  When the columns of a whole batch fit in
 * COLS_BUDGET floats, forward leaves them in place and backward reuses them
 * instead of recomputing im2col. */
#include <cblas.h>
#include <limits.h>
#include <stddef.h>
#include <string.h>

#include "nn.h"

/* Columns of a whole batch are kept for backward up to this many floats (32 MB). */
#define COLS_BUDGET ((size_t)1 << 23)
/* A chunk's columns (CKK x m*HW) and GEMM output (F x m*HW) stay within about
 * this many floats (2 MB), so the copies around each GEMM hit the cache. */
#define CHUNK_FLOATS ((size_t)1 << 19)

typedef struct {
    int cin, h, w, f, k, s, p, oh, ow;
    int ckk, hw; /* rows of a column matrix; output pixels per sample */
} conv_geom;

/* Padding is handled by ranges, never by a test per element: for kernel tap
 * (i, j), output rows [oy0, oy1) and columns [lo, hi) read inside the input. */
typedef struct {
    int oy0, oy1, lo, hi;
    int shift; /* s == 1 and ow == w: see im2col_row */
} conv_span;

typedef struct {
    conv_geom g;
    int cap;     /* samples whose columns fit in cols (ld = cap*hw) */
    int chunk;   /* samples per GEMM, <= cap */
    float *cols; /* ckk x cap*hw: im2col, then dcols in backward */
    float *tmp;  /* f x chunk*hw: GEMM output (forward) or repacked dy (backward) */
    int cols_n;  /* batch size whose columns forward left in cols; 0 = none */
    conv_span *spans; /* k*k, by tap */
} conv_priv;

static conv_geom geom_of(const nn_layer *l)
{
    conv_geom g;
    g.cin = l->in.c;
    g.h = l->in.h;
    g.w = l->in.w;
    g.f = l->spec.filters;
    g.k = l->spec.kernel;
    g.s = l->spec.stride ? l->spec.stride : 1;
    g.p = l->spec.pad;
    g.oh = (g.h + 2 * g.p - g.k) / g.s + 1;
    g.ow = (g.w + 2 * g.p - g.k) / g.s + 1;
    g.ckk = g.cin * g.k * g.k;
    g.hw = g.oh * g.ow;
    return g;
}

/* Outputs o in [*lo, *hi) with 0 <= o*s - first < in (and o < out). */
static void valid_range(int in, int out, int s, int first, int *lo, int *hi)
{
    int last = in - 1 + first;
    *lo = first > 0 ? (first + s - 1) / s : 0;
    *hi = last < 0 ? 0 : last / s + 1;
    *hi = *hi > out ? out : *hi;
    *lo = *lo > *hi ? *hi : *lo;
}

static conv_span span_of(const conv_geom *g, int i, int j)
{
    conv_span sp;
    valid_range(g->h, g->oh, g->s, g->p - i, &sp.oy0, &sp.oy1);
    valid_range(g->w, g->ow, g->s, g->p - j, &sp.lo, &sp.hi);
    sp.shift = g->s == 1 && g->ow == g->w && sp.oy0 < sp.oy1 && sp.lo < sp.hi;
    return sp;
}

static int conv_setup(nn_layer *l, kd_err *e)
{
    const nn_layer_spec *s = &l->spec;
    if (s->filters < 1 || s->filters > 65536)
        return kd_err_set(e, KD_ECONFIG, "filters must be in [1, 65536]");
    if (s->kernel < 1 || s->kernel > 256)
        return kd_err_set(e, KD_ECONFIG, "kernel must be in [1, 256]");
    if (s->stride < 0 || s->stride > 256 || s->pad < 0 || s->pad > 256)
        return kd_err_set(e, KD_ECONFIG, "stride and pad must be in [0, 256]");
    if (s->kernel > l->in.h + 2 * s->pad || s->kernel > l->in.w + 2 * s->pad)
        return kd_err_set(e, KD_ECONFIG, "kernel %d is larger than the padded input %dx%d",
                          s->kernel, l->in.h + 2 * s->pad, l->in.w + 2 * s->pad);
    /* every GEMM dimension and per-sample block must fit an int (in double:
     * the int products in geom_of must not overflow either) */
    double st = s->stride ? s->stride : 1, ckk = (double)l->in.c * s->kernel * s->kernel;
    double hw = (((double)l->in.h + 2 * s->pad - s->kernel) / st + 1) *
                (((double)l->in.w + 2 * s->pad - s->kernel) / st + 1);
    if (ckk * hw > INT_MAX / 4 || s->filters * hw > INT_MAX / 4 || s->filters * ckk > INT_MAX / 4)
        return kd_err_set(e, KD_ECONFIG, "convolution of %dx%dx%d by %d filters is too large",
                          l->in.c, l->in.h, l->in.w, s->filters);
    conv_geom g = geom_of(l);
    l->out = (nn_shape){g.f, g.oh, g.ow};
    l->nw = (size_t)g.f * g.ckk;
    l->nb = (size_t)g.f;
    l->nbuf = 0;
    return KD_OK;
}

static void conv_init(nn_layer *l, nn_rng *r)
{
    int k2 = l->spec.kernel * l->spec.kernel;
    int fan_in = l->in.c * k2, fan_out = l->spec.filters * k2;
    if (l->spec.init == NN_INIT_XAVIER)
        nn_fill_xavier(l->w, l->nw, fan_in, fan_out, r);
    else
        nn_fill_he(l->w, l->nw, fan_in, r);
    memset(l->b, 0, l->nb * sizeof *l->b);
}

static void conv_release(nn_layer *l)
{
    conv_priv *p = l->priv;
    if (p) {
        kd_afree(p->cols);
        kd_afree(p->tmp);
        kd_free(p->spans);
        kd_free(p);
    }
    l->priv = NULL;
    l->max_batch = 0;
}

static int conv_reserve(nn_layer *l, int max_batch, kd_err *e)
{
    conv_release(l);
    conv_priv *p = kd_calloc(1, sizeof *p);
    if (!p)
        return kd_err_set(e, KD_ENOMEM, "out of memory for convolution scratch");
    l->priv = p;
    p->g = geom_of(l);
    size_t per_cols = (size_t)p->g.ckk * p->g.hw, per_out = (size_t)p->g.f * p->g.hw;
    size_t chunk = CHUNK_FLOATS / (per_cols > per_out ? per_cols : per_out);
    chunk = chunk < 1 ? 1 : chunk > (size_t)max_batch ? (size_t)max_batch : chunk;
    /* cols holds the whole batch when it fits the budget, else one chunk; so
     * every leading dimension is at most max(COLS_BUDGET, CHUNK_FLOATS, one
     * sample's block), which setup bounded to fit an int */
    int whole = per_cols * (size_t)max_batch <= COLS_BUDGET;
    p->chunk = (int)chunk;
    p->cap = whole ? max_batch : p->chunk;
    p->cols = kd_afloat(per_cols * (size_t)p->cap);
    p->tmp = kd_afloat(per_out * (size_t)p->chunk);
    p->spans = kd_malloc((size_t)p->g.k * p->g.k * sizeof *p->spans);
    if (!p->cols || !p->tmp || !p->spans) {
        conv_release(l);
        return kd_err_set(e, KD_ENOMEM, "out of memory for convolution scratch (batch %d)",
                          max_batch);
    }
    for (int i = 0; i < p->g.k; i++)
        for (int j = 0; j < p->g.k; j++)
            p->spans[i * p->g.k + j] = span_of(&p->g, i, j);
    l->max_batch = max_batch;
    return KD_OK;
}

/* ---- im2col / col2im ---------------------------------------------------------
 * Row r = (c*k + i)*k + j of a sample's column block holds, at column
 * oy*ow + ox, the input x[c][oy*s - p + i][ox*s - p + j] (0 in the padding). */

/* Offset in the input plane of output (oy, ox) for kernel tap (i, j). */
static ptrdiff_t in_off(const conv_geom *g, int i, int j, int oy, int ox)
{
    return (ptrdiff_t)(oy * g->s - g->p + i) * g->w + (ox * g->s - g->p + j);
}

/* Zeroes the columns outside [lo, hi) of the valid output rows. */
static void zero_edges(const conv_geom *g, const conv_span *sp, float *d)
{
    for (int oy = sp->oy0; oy < sp->oy1; oy++) {
        float *r = d + (size_t)oy * g->ow;
        for (int ox = 0; ox < sp->lo; ox++)
            r[ox] = 0;
        for (int ox = sp->hi; ox < g->ow; ox++)
            r[ox] = 0;
    }
}

/* Fills one row d (oh*ow) of a column block from the input plane xc.  When
 * s == 1 and ow == w ("same" padding) input and output rows have the same
 * pitch, so the valid span of the row is one contiguous copy of the plane;
 * the few entries that wrapped around a row edge are zeroed afterwards. */
static void im2col_row(const conv_geom *g, const conv_span *spp, const float *xc, int i, int j,
                       float *d)
{
    const conv_span sp = *spp;
    size_t a = (size_t)sp.oy0 * g->ow, b = (size_t)sp.oy1 * g->ow;
    if (sp.shift) {
        a += (size_t)sp.lo;
        b -= (size_t)(g->ow - sp.hi);
        memcpy(d + a, xc + in_off(g, i, j, sp.oy0, sp.lo), (b - a) * sizeof *d);
    } else {
        for (int oy = sp.oy0; oy < sp.oy1 && sp.lo < sp.hi; oy++) {
            float *r = d + (size_t)oy * g->ow + sp.lo;
            const float *src = xc + in_off(g, i, j, oy, sp.lo);
            for (int t = 0; t < sp.hi - sp.lo; t++)
                r[t] = src[t * g->s];
        }
    }
    memset(d, 0, a * sizeof *d);
    memset(d + b, 0, ((size_t)g->oh * g->ow - b) * sizeof *d);
    zero_edges(g, &sp, d);
}

/* Writes one sample's column block (rows of stride ld) from x (cin x h x w). */
static void im2col(const conv_priv *p, const float *x, float *col, size_t ld)
{
    const conv_geom *g = &p->g;
    for (int c = 0; c < g->cin; c++)
        for (int i = 0; i < g->k; i++)
            for (int j = 0; j < g->k; j++, col += ld)
                im2col_row(g, p->spans + i * g->k + j, x + (size_t)c * g->h * g->w, i, j, col);
}

/* The adjoint of im2col_row: adds row d back into the plane dxc.  Clobbers
 * d's padding entries (zeroes them so the contiguous case can add blindly). */
static void col2im_row(const conv_geom *g, const conv_span *spp, float *d, int i, int j,
                       float *dxc)
{
    const conv_span sp = *spp;
    if (sp.shift) {
        size_t a = (size_t)sp.oy0 * g->ow + sp.lo, b = (size_t)sp.oy1 * g->ow - (g->ow - sp.hi);
        float *dst = dxc + in_off(g, i, j, sp.oy0, sp.lo);
        zero_edges(g, &sp, d);
        for (size_t t = 0; t < b - a; t++)
            dst[t] += d[a + t];
        return;
    }
    for (int oy = sp.oy0; oy < sp.oy1 && sp.lo < sp.hi; oy++) {
        const float *r = d + (size_t)oy * g->ow + sp.lo;
        float *dst = dxc + in_off(g, i, j, oy, sp.lo);
        for (int t = 0; t < sp.hi - sp.lo; t++)
            dst[t * g->s] += r[t];
    }
}

/* dx (cin x h x w) = the adjoint of im2col applied to a column block (which
 * is clobbered: it is scratch). */
static void col2im(const conv_priv *p, float *col, size_t ld, float *dx)
{
    const conv_geom *g = &p->g;
    memset(dx, 0, (size_t)g->cin * g->h * g->w * sizeof *dx);
    for (int c = 0; c < g->cin; c++)
        for (int i = 0; i < g->k; i++)
            for (int j = 0; j < g->k; j++, col += ld)
                col2im_row(g, p->spans + i * g->k + j, col, i, j, dx + (size_t)c * g->h * g->w);
}

/* ---- forward / backward ----------------------------------------------------- */
/* Column offset of the chunk starting at sample s0: with the whole batch in
 * cols, samples keep their own blocks (so backward can reuse them); otherwise
 * every chunk starts at column 0. */
static size_t chunk_col(const conv_priv *p, int n, int s0)
{
    return n <= p->cap ? (size_t)s0 * p->g.hw : 0;
}

static void im2col_chunk(const conv_priv *p, const float *x, int n, int s0, int m)
{
    const conv_geom *g = &p->g;
    size_t ld = (size_t)p->cap * g->hw, base = chunk_col(p, n, s0);
    size_t xs = (size_t)g->cin * g->h * g->w;
    for (int s = 0; s < m; s++)
        im2col(p, x + (s0 + s) * xs, p->cols + base + (size_t)s * g->hw, ld);
}

static void conv_forward(nn_layer *l, const float *x, float *y, int n, const nn_ctx *c)
{
    (void)c;
    conv_priv *p = l->priv;
    const conv_geom *g = &p->g;
    const int ld = p->cap * g->hw;
    for (int s0 = 0; s0 < n; s0 += p->chunk) {
        int m = n - s0 < p->chunk ? n - s0 : p->chunk, mhw = m * g->hw;
        im2col_chunk(p, x, n, s0, m);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->f, mhw, g->ckk, 1.0f, l->w,
                    g->ckk, p->cols + chunk_col(p, n, s0), ld, 0.0f, p->tmp, mhw);
        /* scatter tmp (F x m*HW) into NCHW, adding the bias */
        for (int s = 0; s < m; s++)
            for (int f = 0; f < g->f; f++) {
                const float *t = p->tmp + (size_t)f * mhw + (size_t)s * g->hw;
                float *d = y + ((size_t)(s0 + s) * g->f + f) * g->hw, b = l->b[f];
                for (int i = 0; i < g->hw; i++)
                    d[i] = t[i] + b;
            }
    }
    p->cols_n = n <= p->cap ? n : 0;
}

/* tmp (F x m*HW) = dy of samples s0..s0+m-1 regrouped by filter; gb += its row sums. */
static void gather_dy(nn_layer *l, const float *dy, int s0, int m)
{
    conv_priv *p = l->priv;
    const conv_geom *g = &p->g;
    size_t mhw = (size_t)m * g->hw;
    for (int s = 0; s < m; s++)
        for (int f = 0; f < g->f; f++) {
            const float *src = dy + ((size_t)(s0 + s) * g->f + f) * g->hw;
            float *d = p->tmp + (size_t)f * mhw + (size_t)s * g->hw, sum = 0;
            for (int i = 0; i < g->hw; i++) {
                d[i] = src[i];
                sum += src[i];
            }
            l->gb[f] += sum;
        }
}

static void conv_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                          float *dx, int n, const nn_ctx *c)
{
    (void)y;
    (void)c;
    conv_priv *p = l->priv;
    const conv_geom *g = &p->g;
    const int ld = p->cap * g->hw;
    const size_t xs = (size_t)g->cin * g->h * g->w;
    int have_cols = p->cols_n == n; /* forward's columns of this batch are intact */
    if (dx)
        p->cols_n = 0; /* dcols overwrite them below */
    for (int s0 = 0; s0 < n; s0 += p->chunk) {
        int m = n - s0 < p->chunk ? n - s0 : p->chunk, mhw = m * g->hw;
        float *cols = p->cols + chunk_col(p, n, s0);
        gather_dy(l, dy, s0, m);
        if (!have_cols)
            im2col_chunk(p, x, n, s0, m);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->f, g->ckk, mhw, 1.0f, p->tmp,
                    mhw, cols, ld, 1.0f, l->gw, g->ckk);
        if (!dx)
            continue;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g->ckk, mhw, g->f, 1.0f, l->w,
                    g->ckk, p->tmp, mhw, 0.0f, cols, ld);
        for (int s = 0; s < m; s++)
            col2im(p, cols + (size_t)s * g->hw, (size_t)ld, dx + (s0 + s) * xs);
    }
}

static double conv_macs(const nn_layer *l)
{
    return (double)l->nw * l->out.h * l->out.w;
}

const nn_layer_ops nn_conv2d_ops = {
    .name = "conv2d",
    .setup = conv_setup,
    .init = conv_init,
    .reserve = conv_reserve,
    .release = conv_release,
    .forward = conv_forward,
    .backward = conv_backward,
    .macs = conv_macs,
};
