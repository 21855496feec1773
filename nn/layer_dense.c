/* Dense (fully connected) layer: y = x W^T + b with OpenBLAS sgemm.
 * W is (units x fan_in) row-major, so a row is one output neuron: structured
 * pruning removes rows, and the next layer's columns. */
#include <cblas.h>
#include <string.h>

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

/* y[:, u0:u1] = b + x W[u0:u1]^T, then (relu) y = y > 0 ? y : 0 and (mask)
 * y *= mask on the same block: the ReLU and dropout layers' passes, value
 * for value, while the block is in cache */
static void dense_rows(const nn_layer *l, const float *x, float *y, int n, int u0, int u1,
                       int relu, const float *mask)
{
    const int k = (int)nn_shape_size(l->in), u = l->spec.units;
    if (u0 >= u1)
        return;
    for (int i = 0; i < n; i++)
        memcpy(y + (size_t)i * u + u0, l->b + u0, (size_t)(u1 - u0) * sizeof *y);
    const float *w = l->w + (size_t)u0 * k;
    if (n == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, u1 - u0, k, 1.0f, w, k, x, 1, 1.0f, y + u0, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, u1 - u0, k, 1.0f, x, k, w, k, 1.0f,
                    y + u0, u);
    if (!relu)
        return;
    for (int i = 0; i < n; i++) {
        float *r = y + (size_t)i * u;
        const float *mr = mask ? mask + (size_t)i * u : NULL;
        for (int j = u0; j < u1; j++) {
            float v = r[j] > 0 ? r[j] : 0;
            r[j] = mr ? v * mr[j] : v;
        }
    }
}

/* In a model with a thread team (its compressed layers use one, and training
 * makes one: nn_model_train_team_begin), the team runs the dense layers too,
 * each part a serial OpenBLAS call on a block of output units (forward and
 * backward keep OpenBLAS serial meanwhile): one pool, not two fighting over
 * the cores.  Small layers are not worth a hand-off. */
enum { DENSE_SPLIT_MIN_MACS = 1 << 16 };

typedef struct {
    const nn_layer *l;
    const float *x;
    float *y;
    int n, relu;
    const float *mask;
} dense_job;

static void dense_part(void *arg, int part, int nparts)
{
    const dense_job *j = arg;
    int u = j->l->spec.units;
    /* blocks of 16 units: parts never share a cache line of y */
    int blocks = (u + 15) / 16;
    int u0 = blocks * part / nparts * 16, u1 = blocks * (part + 1) / nparts * 16;
    dense_rows(j->l, j->x, j->y, j->n, u0, u1 < u ? u1 : u, j->relu, j->mask);
}

static void dense_forward(nn_layer *l, const float *x, float *y, int n, const nn_ctx *c)
{
    const size_t k = nn_shape_size(l->in), u = (size_t)l->spec.units;
    int relu = c && c->relu;
    const float *mask = relu ? c->mask : NULL;
    if (c && nn_team_size(c->team) > 1 && u * k >= DENSE_SPLIT_MIN_MACS) {
        dense_job j = {.l = l, .x = x, .y = y, .n = n, .relu = relu, .mask = mask};
        nn_team_run(c->team, dense_part, &j);
        return;
    }
    dense_rows(l, x, y, n, 0, (int)u, relu, mask);
}

/* Part of backward: dW[u0:u1] += dy[:, u0:u1]^T x and db[u0:u1] += column
 * sums (rows of the weight gradient), then dx[:, k0:k1] = dy W[:, k0:k1]
 * (columns of the input gradient).  Every output element is written by one
 * part, in the same order for a given split, so results repeat. */
static void dense_back_rows(const nn_layer *l, const float *x, const float *dy, float *dx, int n,
                            int u0, int u1, int k0, int k1)
{
    const int k = (int)nn_shape_size(l->in), u = l->spec.units;
    if (u1 > u0) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, u1 - u0, k, n, 1.0f, dy + u0, u, x, k,
                    1.0f, l->gw + (size_t)u0 * k, k);
        for (int i = 0; i < n; i++) {
            const float *row = dy + (size_t)i * u;
            for (int j = u0; j < u1; j++)
                l->gb[j] += row[j];
        }
    }
    if (dx && k1 > k0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, k1 - k0, u, 1.0f, dy, u,
                    l->w + k0, k, 0.0f, dx + k0, k);
}

typedef struct {
    const nn_layer *l;
    const float *x, *dy;
    float *dx;
    int n;
} dense_back_job;

static void dense_back_part(void *arg, int part, int nparts)
{
    const dense_back_job *j = arg;
    size_t u0, u1, k0, k1;
    nn_team_range((size_t)j->l->spec.units, part, nparts, &u0, &u1);
    nn_team_range(nn_shape_size(j->l->in), part, nparts, &k0, &k1);
    dense_back_rows(j->l, j->x, j->dy, j->dx, j->n, (int)u0, (int)u1, (int)k0, (int)k1);
}

static void dense_backward(nn_layer *l, const float *x, const float *y, const float *dy,
                           float *dx, int n, const nn_ctx *c)
{
    (void)y;
    const size_t k = nn_shape_size(l->in), u = (size_t)l->spec.units;
    if (c && nn_team_size(c->team) > 1 && u * k >= DENSE_SPLIT_MIN_MACS) {
        dense_back_job j = {.l = l, .x = x, .dy = dy, .dx = dx, .n = n};
        nn_team_run(c->team, dense_back_part, &j);
        return;
    }
    dense_back_rows(l, x, dy, dx, n, 0, (int)u, 0, (int)k);
}

static double dense_macs(const nn_layer *l) { return (double)l->nw; }

const nn_layer_ops nn_dense_ops = {
    .name = "dense",
    .setup = dense_setup,
    .init = dense_init,
    .forward = dense_forward,
    .backward = dense_backward,
    .macs = dense_macs,
    .fuses_relu = 1,
};
