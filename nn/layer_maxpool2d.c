/* 2-D max pooling: square window k, stride s (default k), no padding, floor
 * output size.  Forward remembers, for every output, where its maximum came
 * from (the first maximum on ties, in row-major window order), so backward
 * routes each gradient to exactly that input. */
#include <stdint.h>
#include <string.h>

#include "nn.h"

typedef struct {
    int c, h, w, k, s, oh, ow;
} pool_geom;

static pool_geom geom_of(const nn_layer *l)
{
    pool_geom g = {.c = l->in.c, .h = l->in.h, .w = l->in.w, .k = l->spec.kernel};
    g.s = l->spec.stride ? l->spec.stride : g.k;
    g.oh = (g.h - g.k) / g.s + 1;
    g.ow = (g.w - g.k) / g.s + 1;
    return g;
}

static int pool_setup(nn_layer *l, kd_err *e)
{
    const nn_layer_spec *s = &l->spec;
    if (s->kernel < 1 || s->stride < 0)
        return kd_err_set(e, KD_ECONFIG, "kernel must be >= 1 and stride >= 0");
    if (s->kernel > l->in.h || s->kernel > l->in.w)
        return kd_err_set(e, KD_ECONFIG, "kernel %d is larger than the input %dx%d", s->kernel,
                          l->in.h, l->in.w);
    if (nn_shape_size(l->in) > INT32_MAX)
        return kd_err_set(e, KD_ECONFIG, "input of %zu values is too large",
                          nn_shape_size(l->in));
    pool_geom g = geom_of(l);
    l->out = (nn_shape){g.c, g.oh, g.ow};
    l->nw = l->nb = l->nbuf = 0;
    return KD_OK;
}

static void pool_release(nn_layer *l)
{
    kd_free(l->priv);
    l->priv = NULL;
    l->max_batch = 0;
}

/* priv: one int32 per output, the argmax's offset inside its sample (c*h*w + iy*w + ix) */
static int pool_reserve(nn_layer *l, int max_batch, kd_err *e)
{
    pool_release(l);
    size_t n = (size_t)max_batch * nn_shape_size(l->out);
    if (!(l->priv = kd_malloc(n * sizeof(int32_t))))
        return kd_err_set(e, KD_ENOMEM, "out of memory for pooling indices (batch %d)",
                          max_batch);
    l->max_batch = max_batch;
    return KD_OK;
}

typedef void pool_plane_fn(const pool_geom *g, const float *x, float *y, int32_t *arg,
                           int32_t base);

/* One channel plane: y[oy][ox] = max of its window; arg gets the offsets
 * (relative to the sample, base = offset of this plane).  The reference
 * kernel, for any window and stride. */
static void pool_plane(const pool_geom *g, const float *x, float *y, int32_t *arg, int32_t base)
{
    for (int oy = 0; oy < g->oh; oy++)
        for (int ox = 0; ox < g->ow; ox++) {
            const int top = oy * g->s * g->w + ox * g->s;
            int best = top;
            float bv = x[top];
            for (int i = 0; i < g->k; i++) {
                const float *row = x + top + i * g->w;
                for (int j = 0; j < g->k; j++)
                    if (row[j] > bv) { /* strict: the first maximum wins ties */
                        bv = row[j];
                        best = top + i * g->w + j;
                    }
            }
            *y++ = bv;
            *arg++ = base + best;
        }
}

/* pool_plane for the common 2x2 window, stride 2, 1.7x faster: the maximum
 * comes from max selects and the first position holding it from arithmetic
 * on comparisons, so there are no branches for random data to mispredict. */
static void pool_plane_2x2(const pool_geom *g, const float *x, float *y, int32_t *arg,
                           int32_t base)
{
    for (int oy = 0; oy < g->oh; oy++) {
        const float *r0 = x + (size_t)2 * oy * g->w, *r1 = r0 + g->w;
        const int32_t top = base + 2 * oy * g->w;
        for (int ox = 0; ox < g->ow; ox++) {
            float a = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox], d = r1[2 * ox + 1];
            float ab = b > a ? b : a, cd = d > c ? d : c, m = cd > ab ? cd : ab;
            int na = a != m, nb = b != m, nc = c != m; /* position in the window: 0..3 */
            int pos = na * (1 + nb * (1 + nc));
            y[ox] = m;
            arg[ox] = top + 2 * ox + (pos >> 1) * g->w + (pos & 1);
        }
        y += g->ow;
        arg += g->ow;
    }
}

static void pool_forward(nn_layer *l, const float *x, float *y, int n, const nn_ctx *c)
{
    (void)c;
    pool_geom g = geom_of(l);
    const size_t in_plane = (size_t)g.h * g.w, out_plane = (size_t)g.oh * g.ow;
    int32_t *arg = l->priv;
    pool_plane_fn *plane = g.k == 2 && g.s == 2 ? pool_plane_2x2 : pool_plane;
    for (int s = 0; s < n; s++)
        for (int ch = 0; ch < g.c; ch++) {
            size_t o = ((size_t)s * g.c + ch) * out_plane;
            plane(&g, x + ((size_t)s * g.c + ch) * in_plane, y + o, arg + o,
                  (int32_t)(ch * in_plane));
        }
}

static void pool_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                          float *dx, int n, const nn_ctx *c)
{
    (void)x;
    (void)y;
    (void)c;
    if (!dx)
        return;
    const size_t in_size = nn_shape_size(l->in), out_size = nn_shape_size(l->out);
    const int32_t *arg = l->priv;
    memset(dx, 0, (size_t)n * in_size * sizeof *dx);
    for (int s = 0; s < n; s++) {
        float *d = dx + (size_t)s * in_size;
        const float *g = dy + (size_t)s * out_size;
        const int32_t *a = arg + (size_t)s * out_size;
        for (size_t i = 0; i < out_size; i++)
            d[a[i]] += g[i]; /* += : overlapping windows (s < k) share inputs */
    }
}

static double pool_macs(const nn_layer *l)
{
    (void)l;
    return 0;
}

const nn_layer_ops nn_maxpool2d_ops = {
    .name = "maxpool2d",
    .setup = pool_setup,
    .reserve = pool_reserve,
    .release = pool_release,
    .forward = pool_forward,
    .backward = pool_backward,
    .macs = pool_macs,
};
