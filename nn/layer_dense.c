/* Dense (fully connected) layer: y = x W^T + b with OpenBLAS sgemm.
 * W is (units x fan_in) row-major, so a row is one output neuron: structured
 * pruning removes rows, and the next layer's columns. */
#include <cblas.h>

#include "nn.h"

static int dense_setup(nn_layer *l, kd_err *e)
{
    if (l->spec.units < 1)
        return kd_err_set(e, KD_ECONFIG, "units must be >= 1");
    size_t fan_in = nn_shape_size(l->in);
    if (fan_in < 1 || fan_in > (1u << 26))
        return kd_err_set(e, KD_ECONFIG, "input of %zu features is out of range", fan_in);
    l->out = (nn_shape){l->spec.units, 1, 1};
    l->nw = (size_t)l->spec.units * fan_in;
    l->nb = (size_t)l->spec.units;
    l->nbuf = 0;
    return KD_OK;
}

static void dense_init(nn_layer *l, nn_rng *r)
{
    int fan_in = (int)nn_shape_size(l->in), fan_out = l->spec.units;
    if (l->spec.init == NN_INIT_XAVIER)
        nn_fill_xavier(l->w, l->nw, fan_in, fan_out, r);
    else
        nn_fill_he(l->w, l->nw, fan_in, r);
    for (size_t i = 0; i < l->nb; i++)
        l->b[i] = 0;
}

static void dense_forward(nn_layer *l, const float *x, float *y, int n, const nn_ctx *c)
{
    (void)c;
    const int k = (int)nn_shape_size(l->in), u = l->spec.units;
    for (int i = 0; i < n; i++) /* y = b, then y += x W^T */
        for (int j = 0; j < u; j++)
            y[(size_t)i * u + j] = l->b[j];
    if (n == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, u, k, 1.0f, l->w, k, x, 1, 1.0f, y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, u, k, 1.0f, x, k, l->w, k,
                    1.0f, y, u);
}

static void dense_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                           float *dx, int n, const nn_ctx *c)
{
    (void)y;
    (void)c;
    const int k = (int)nn_shape_size(l->in), u = l->spec.units;
    /* dW += dy^T x ; db += column sums of dy ; dx = dy W */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, u, k, n, 1.0f, dy, u, x, k, 1.0f, l->gw,
                k);
    for (int i = 0; i < n; i++) {
        const float *row = dy + (size_t)i * u;
        for (int j = 0; j < u; j++)
            l->gb[j] += row[j];
    }
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, k, u, 1.0f, dy, u, l->w, k,
                    0.0f, dx, k);
}

static double dense_macs(const nn_layer *l) { return (double)l->nw; }

const nn_layer_ops nn_dense_ops = {
    .name = "dense",
    .setup = dense_setup,
    .init = dense_init,
    .forward = dense_forward,
    .backward = dense_backward,
    .macs = dense_macs,
};
