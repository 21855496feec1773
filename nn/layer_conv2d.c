/* 2-D convolution: square kernel, stride, zero padding, NCHW.
 * W is [filters][cin][k][k], i.e. a (filters x cin*k*k) row-major matrix, so
 * the layer is im2col + one OpenBLAS sgemm per chunk of samples:
 *   forward   Y (F x m*HW)    = W (F x CKK) * cols (CKK x m*HW)
 *   backward  dW (F x CKK)   += dY (F x m*HW) * cols^T
 *             dcols           = W^T * dY, then col2im into dx
 * where the column matrix of a chunk of m samples puts sample s's output
 * pixels at columns s*HW .. s*HW+HW-1.  Batching samples into one GEMM keeps
 * the GEMMs large (the weight gradient especially: one sgemm with K = m*HW
 * instead of m small ones).  When the columns of a whole batch fit in
 * COLS_BUDGET floats, forward leaves them in place and backward reuses them
 * instead of recomputing im2col. */
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "nn.h"

/* Columns of a whole batch are kept for backward up to this many floats (32 MB). */
#define COLS_BUDGET ((size_t)1 << 23)
/* A GEMM covers about this many output floats (F x m*HW): large enough for
 * OpenBLAS to thread well, small enough that Y stays in cache for the scatter. */
#define CHUNK_FLOATS ((size_t)1 << 19)

typedef struct {
    int cin, h, w, f, k, s, p, oh, ow;
    int ckk, hw; /* rows of a column matrix; output pixels per sample */
} conv_geom;

typedef struct {
    conv_geom g;
    int cap;     /* samples whose columns fit in cols (ld = cap*hw) */
    int chunk;   /* samples per GEMM, <= cap */
    float *cols; /* ckk x cap*hw: im2col, then dcols in backward */
    float *tmp;  /* f x chunk*hw: GEMM output (forward) or repacked dy (backward) */
    int cols_n;  /* batch size whose columns forward left in cols; 0 = none */
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
    conv_geom g = geom_of(l);
    /* every GEMM dimension and per-sample column block must fit an int */
    if ((double)g.ckk * g.hw > INT_MAX / 4 || (double)g.f * g.hw > INT_MAX / 4 ||
        (double)g.f * g.ckk > INT_MAX / 4)
        return kd_err_set(e, KD_ECONFIG, "convolution of %dx%dx%d by %d filters is too large",
                          g.cin, g.h, g.w, g.f);
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
    size_t chunk = CHUNK_FLOATS / per_out;
    chunk = chunk < 1 ? 1 : chunk > (size_t)max_batch ? (size_t)max_batch : chunk;
    int whole = per_cols * (size_t)max_batch <= COLS_BUDGET;
    /* otherwise cols holds one chunk; either way every leading dimension
     * (at most max(COLS_BUDGET, CHUNK_FLOATS, one sample's block)) fits an int */
    if (!whole && chunk > COLS_BUDGET / per_cols)
        chunk = COLS_BUDGET / per_cols > 1 ? COLS_BUDGET / per_cols : 1;
    p->chunk = (int)chunk;
    p->cap = whole ? max_batch : p->chunk;
    p->cols = kd_afloat(per_cols * (size_t)p->cap);
    p->tmp = kd_afloat(per_out * (size_t)p->chunk);
    if (!p->cols || !p->tmp) {
        conv_release(l);
        return kd_err_set(e, KD_ENOMEM, "out of memory for convolution scratch (batch %d)",
                          max_batch);
    }
    l->max_batch = max_batch;
    return KD_OK;
}

/* ---- im2col / col2im ---------------------------------------------------------
 * Row r = (c*k + i)*k + j of a sample's column block holds, at column
 * oy*ow + ox, the input x[c][oy*s - p + i][ox*s - p + j] (0 in the padding).
 * Padding is handled by ranges (valid ox in [lo, hi), one test per output
 * row), so the inner loops are plain copies. */
static void ox_range(const conv_geom *g, int j, int *lo, int *hi)
{
    int first = g->p - j, last = g->w - 1 + g->p - j; /* need 0 <= ox*s - first <= w-1 */
    *lo = first > 0 ? (first + g->s - 1) / g->s : 0;
    *hi = last < 0 ? 0 : last / g->s + 1;
    if (*hi > g->ow)
        *hi = g->ow;
    if (*lo > *hi)
        *lo = *hi;
}

/* Writes one sample's column block (rows of stride ld) from x (cin x h x w). */
static void im2col(const conv_geom *g, const float *x, float *col, size_t ld)
{
    for (int c = 0; c < g->cin; c++)
        for (int i = 0; i < g->k; i++)
            for (int j = 0; j < g->k; j++, col += ld) {
                const float *xc = x + (size_t)c * g->h * g->w;
                int lo, hi;
                ox_range(g, j, &lo, &hi);
                for (int oy = 0; oy < g->oh; oy++) {
                    float *d = col + (size_t)oy * g->ow;
                    int iy = oy * g->s - g->p + i;
                    if (iy < 0 || iy >= g->h) {
                        memset(d, 0, (size_t)g->ow * sizeof *d);
                        continue;
                    }
                    for (int ox = 0; ox < lo; ox++)
                        d[ox] = 0;
                    for (int ox = hi; ox < g->ow; ox++)
                        d[ox] = 0;
                    if (hi == lo)
                        continue;
                    const float *src = xc + (size_t)iy * g->w + (lo * g->s - g->p + j);
                    if (g->s == 1)
                        for (int t = 0; t < hi - lo; t++)
                            d[lo + t] = src[t];
                    else
                        for (int t = 0; t < hi - lo; t++)
                            d[lo + t] = src[t * g->s];
                }
            }
}

/* The adjoint of im2col: dx (cin x h x w) = sum of the column block's
 * entries over the positions they were copied from; padding is dropped. */
static void col2im(const conv_geom *g, const float *col, size_t ld, float *dx)
{
    memset(dx, 0, (size_t)g->cin * g->h * g->w * sizeof *dx);
    for (int c = 0; c < g->cin; c++)
        for (int i = 0; i < g->k; i++)
            for (int j = 0; j < g->k; j++, col += ld) {
                float *xc = dx + (size_t)c * g->h * g->w;
                int lo, hi;
                ox_range(g, j, &lo, &hi);
                for (int oy = 0; oy < g->oh; oy++) {
                    int iy = oy * g->s - g->p + i;
                    if (iy < 0 || iy >= g->h || hi == lo)
                        continue;
                    const float *sv = col + (size_t)oy * g->ow + lo;
                    float *d = xc + (size_t)iy * g->w + (lo * g->s - g->p + j);
                    if (g->s == 1)
                        for (int t = 0; t < hi - lo; t++)
                            d[t] += sv[t];
                    else
                        for (int t = 0; t < hi - lo; t++)
                            d[t * g->s] += sv[t];
                }
            }
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
        im2col(g, x + (s0 + s) * xs, p->cols + base + (size_t)s * g->hw, ld);
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
            col2im(g, cols + (size_t)s * g->hw, (size_t)ld, dx + (s0 + s) * xs);
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
