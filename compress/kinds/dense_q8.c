/* dense_q8 (format "int8") and dense_dq8 ("int8-dyn"): a dense layer whose
 * weights are int8 (symmetric, per output channel or per tensor) in a
 * quant_dense payload, run by the int8 GEMM kernels (qgemm_isa_best).
 *
 * dense_q8 is static PTQ: its input is quantized per tensor with calibrated
 * parameters (in), the int32 bias is in the payload, and the output is either
 * requantized to int8 with the next quantized layer's input parameters (out;
 * ReLU fused as the clamp) or dequantized to float (logits, or a layer whose
 * consumer is not a quantized layer).  nn's activations are float, so an int8
 * output travels to the next layer as its exact dequantization (q - z) * s;
 * the next layer's entry quantization, with the same parameters, gives back
 * exactly q, so a chain computes what an all-int8 chain computes.
 *
 * dense_dq8 is dynamic int8: the input is quantized per call from its own
 * min/max, the float bias stays in the model's flat parameters.
 *
 * Both are inference-only: backward gives the bias gradient (dq8) and dx = 0. */
#include <math.h>
#include <string.h>

#include "internal.h"
#include "../kernels/kernels.h"

/* Scratch: int8 input and output of a batch, after the header.  Products
 * are split by rows across the model's thread team (nn_ctx.team), so the
 * integer layers use the cores OpenBLAS uses for fp32. */
typedef struct {
    qgemm_isa isa;
    int8_t *xq, *yq;
} q8_priv;

static int q8_reserve(nn_layer *l, int max_batch, kd_err *e)
{
    compress_qrelease(l);
    size_t k = nn_shape_size(l->in), m = (size_t)l->spec.units, nb = (size_t)max_batch;
    q8_priv *p = kd_calloc(1, sizeof *p + nb * (k + m) + 64);
    if (!p)
        return kd_err_set(e, KD_ENOMEM, "out of memory for int8 scratch");
    p->isa = qgemm_isa_best();
    p->xq = (int8_t *)(p + 1);
    p->yq = p->xq + nb * k;
    l->priv = p;
    l->max_batch = max_batch;
    return KD_OK;
}

static void q8_destroy(nn_layer *l)
{
    compress_q8 *q = l->data;
    if (q)
        quant_dense_free(q->d);
    kd_free(q);
    l->data = NULL;
}

int compress_q8_attach(nn_layer *l, quant_dense *d, int out_s8, kd_err *e)
{
    compress_q8 *q = kd_calloc(1, sizeof *q);
    if (!q) {
        quant_dense_free(d);
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    }
    q->d = d;
    q->out_s8 = out_s8;
    l->ops->destroy(l);
    l->data = q;
    return KD_OK;
}

static void fill_bias(nn_layer *l, float *y, int n)
{
    const int u = l->spec.units;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < u; j++)
            y[(size_t)i * u + j] = l->b ? l->b[j] : 0.0f;
}

/* Conversions between float activations and int8 codes, split across the
 * team for big batches (at batch 256 they were a quarter of the layer's time
 * on one thread); small ones are not worth a hand-off. */
enum { CONVERT_SPLIT_MIN = 1 << 15 };

typedef struct {
    const float *x;
    int8_t *q;
    const int8_t *qin;
    float *y;
    size_t count;
    quant_params p;
} convert_job;

static void convert_range(const convert_job *j, int part, int nparts, size_t *b, size_t *e)
{
    size_t blocks = (j->count + 63) / 64; /* 64-element blocks: no shared cache lines */
    *b = blocks * (size_t)part / (size_t)nparts * 64;
    *e = blocks * (size_t)(part + 1) / (size_t)nparts * 64;
    *e = *e < j->count ? *e : j->count;
}

static void quantize_part(void *arg, int part, int nparts)
{
    const convert_job *j = arg;
    size_t b, e;
    convert_range(j, part, nparts, &b, &e);
    if (b < e)
        quant_quantize_s8(j->x + b, e - b, j->p, j->q + b);
}

static void dequantize_part(void *arg, int part, int nparts)
{
    const convert_job *j = arg;
    size_t b, e;
    convert_range(j, part, nparts, &b, &e);
    if (b < e)
        quant_dequantize_s8(j->qin + b, e - b, j->p, j->y + b);
}

static void team_quantize(nn_team *t, const float *x, size_t count, quant_params p, int8_t *q)
{
    convert_job j = {.x = x, .q = q, .count = count, .p = p};
    if (count >= CONVERT_SPLIT_MIN)
        nn_team_run(t, quantize_part, &j);
    else
        quant_quantize_s8(x, count, p, q);
}

static void team_dequantize(nn_team *t, const int8_t *q, size_t count, quant_params p, float *y)
{
    convert_job j = {.qin = q, .y = y, .count = count, .p = p};
    if (count >= CONVERT_SPLIT_MIN)
        nn_team_run(t, dequantize_part, &j);
    else
        quant_dequantize_s8(q, count, p, y);
}

static void q8_forward(nn_layer *l, const float *x, float *y, int n, const nn_ctx *c)
{
    const compress_q8 *q = l->data;
    q8_priv *p = l->priv;
    if (!q) {
        fill_bias(l, y, n);
        if (c->relu)
            compress_relu_rows(y, n, l->spec.units, 0, l->spec.units);
        return;
    }
    const quant_dense *d = q->d;
    nn_team *t = nn_team_for(c->team, (double)d->m * d->k * n);
    team_quantize(t, x, (size_t)n * d->k, d->in, p->xq);
    if (q->out_s8) {
        quant_dense_forward(d, p->isa, t, p->xq, n, p->yq);
        team_dequantize(t, p->yq, (size_t)n * d->m, d->out, y);
        if (c->relu && !d->relu) /* (d->relu: clamped at the zero point, so >= 0 already) */
            compress_relu_rows(y, n, d->m, 0, d->m);
    } else {
        qgemm_epi ep = quant_dense_epi_f32(d);
        ep.relu = c->relu;
        qgemm_team_run(t, p->isa, d->packed, p->xq, n, &ep, y);
    }
}

/* Dynamic: per-call asymmetric parameters from the batch's min/max. */
static void dq8_forward(nn_layer *l, const float *x, float *y, int n, const nn_ctx *c)
{
    const compress_q8 *q = l->data;
    q8_priv *p = l->priv;
    if (!q) {
        fill_bias(l, y, n);
        if (c->relu)
            compress_relu_rows(y, n, l->spec.units, 0, l->spec.units);
        return;
    }
    const quant_dense *d = q->d;
    size_t nx = (size_t)n * d->k;
    nn_team *t = nn_team_for(c->team, (double)d->m * d->k * n);
    float lo = INFINITY, hi = -INFINITY;
    kernels_minmax_team(t, x, nx, &lo, &hi);
    quant_params in = quant_params_asym(lo, hi, QUANT_S8);
    team_quantize(t, x, nx, in, p->xq);
    qgemm_epi ep = {.x_zero = in.zero, .out_f32 = 1, .w_scale = d->w_scale, .x_scale = in.scale,
                    .fbias = l->b, .relu = c->relu};
    qgemm_team_run(t, p->isa, d->packed, p->xq, n, &ep, y);
}

/* ---- payload ----------------------------------------------------------------
 * u32 rows, cols, flags (1 = int8 output, 2 = relu); f32 in scale, i32 in
 * zero, f32 out scale, i32 out zero; f32 w_scale[rows]; i32 bias[rows];
 * int8 w[rows * cols].  dense_dq8 writes the same (flags, params and bias
 * unused: 0, 1, 0, 1, 0 and zeros). */
static void q8_save(const nn_layer *l, kd_buf *b)
{
    const compress_q8 *q = l->data;
    int m = l->spec.units, k = (int)nn_shape_size(l->in);
    const quant_dense *d = q ? q->d : NULL;
    kd_buf_u32(b, (uint32_t)m);
    kd_buf_u32(b, (uint32_t)k);
    kd_buf_u32(b, d ? (uint32_t)(q->out_s8 | d->relu << 1) : 0);
    kd_buf_f32(b, d ? d->in.scale : 1.0f);
    kd_buf_u32(b, d ? (uint32_t)d->in.zero : 0);
    kd_buf_f32(b, d ? d->out.scale : 1.0f);
    kd_buf_u32(b, d ? (uint32_t)d->out.zero : 0);
    for (int r = 0; r < m; r++)
        kd_buf_f32(b, d ? d->w_scale[r] : 1.0f);
    for (int r = 0; r < m; r++)
        kd_buf_u32(b, d ? (uint32_t)d->bias[r] : 0);
    if (d) {
        kd_buf_put(b, d->w, (size_t)m * k);
    } else {
        int8_t z[256] = {0};
        for (size_t left = (size_t)m * k; left > 0;) {
            size_t s = left < sizeof z ? left : sizeof z;
            kd_buf_put(b, z, s);
            left -= s;
        }
    }
}

static int scale_ok(float s) { return isfinite(s) && s > 0.0f; }

/* The header after rows and cols: flags and the activation parameters. */
static int q8_header(kd_rd *r, uint32_t *flags, quant_params *in, quant_params *out, kd_err *e)
{
    *flags = kd_rd_u32(r);
    in->scale = kd_rd_f32(r);
    in->zero = (int32_t)kd_rd_u32(r);
    out->scale = kd_rd_f32(r);
    out->zero = (int32_t)kd_rd_u32(r);
    in->qmin = out->qmin = -128;
    in->qmax = out->qmax = 127;
    if (!r->ok)
        return kd_err_set(e, KD_EFORMAT, "truncated int8 header");
    if (*flags > 3 || !scale_ok(in->scale) || !scale_ok(out->scale) || in->zero < -128 ||
        in->zero > 127 || out->zero < -128 || out->zero > 127)
        return kd_err_set(e, KD_EFORMAT, "int8 layer: bad flags, scale or zero point");
    return KD_OK;
}

static int q8_load_common(nn_layer *l, kd_rd *r, int dynamic, kd_err *e)
{
    uint32_t m = kd_rd_u32(r), k = kd_rd_u32(r), flags;
    quant_params in, out;
    if (!r->ok)
        return kd_err_set(e, KD_EFORMAT, "truncated int8 header");
    if (m != (uint32_t)l->spec.units || k != nn_shape_size(l->in))
        return kd_err_set(e, KD_EFORMAT, "int8 payload of %u x %u does not match the layer", m, k);
    if (q8_header(r, &flags, &in, &out, e) != KD_OK)
        return KD_EFORMAT;
    if ((uint64_t)m * (8 + k) != r->len - r->pos)
        return kd_err_set(e, KD_EFORMAT, "int8 payload of %zu bytes, %llu expected",
                          r->len - r->pos, (unsigned long long)m * (8 + k));
    if (dynamic && flags != 0)
        return kd_err_set(e, KD_EFORMAT, "dynamic int8 layer with static flags");
    const uint8_t *p = r->p + r->pos;
    float *ws = kd_malloc(m * sizeof *ws);
    int32_t *bias = kd_malloc(m * sizeof *bias);
    int rc = ws && bias ? KD_OK : kd_err_set(e, KD_ENOMEM, "out of memory");
    if (rc == KD_OK) {
        memcpy(ws, p, m * sizeof *ws);
        memcpy(bias, p + 4 * (size_t)m, m * sizeof *bias);
        quant_dense *d = quant_dense_from_q((const int8_t *)(p + 8 * (size_t)m), ws, bias,
                                            (int)m, (int)k, in, out, (int)(flags >> 1), e);
        rc = d ? compress_q8_attach(l, d, (int)(flags & 1), e)
               : (e && e->code == KD_ENOMEM ? KD_ENOMEM : KD_EFORMAT);
        if (!d && e)
            e->code = rc;
    }
    r->pos = r->len;
    kd_free(ws);
    kd_free(bias);
    return rc;
}

static int q8_load(nn_layer *l, kd_rd *r, kd_err *e) { return q8_load_common(l, r, 0, e); }
static int dq8_load(nn_layer *l, kd_rd *r, kd_err *e) { return q8_load_common(l, r, 1, e); }

static int q8_copy(nn_layer *dst, const nn_layer *src, kd_err *e)
{
    const compress_q8 *q = src->data;
    if (!q)
        return KD_OK;
    const quant_dense *d = q->d;
    quant_dense *c = quant_dense_from_q(d->w, d->w_scale, d->bias, d->m, d->k, d->in, d->out,
                                        d->relu, e);
    return c ? compress_q8_attach(dst, c, q->out_s8, e) : KD_ENOMEM;
}

static void q8_count(const nn_layer *l, size_t *weights, size_t *nonzero)
{
    const compress_q8 *q = l->data;
    size_t mk = (size_t)l->spec.units * nn_shape_size(l->in);
    int bias_here = l->nb == 0; /* dense_q8 keeps its bias in the payload */
    *weights = mk + (bias_here ? (size_t)l->spec.units : 0);
    *nonzero = 0;
    for (size_t i = 0; q && i < mk; i++)
        *nonzero += q->d->w[i] != 0;
    for (int r = 0; q && bias_here && r < l->spec.units; r++)
        *nonzero += q->d->bias[r] != 0;
}

static void q8_dequant(const nn_layer *l, float *w)
{
    const size_t mk = (size_t)l->spec.units * nn_shape_size(l->in);
    memset(w, 0, mk * sizeof *w);
    const compress_q8 *q = l->data;
    const size_t k = nn_shape_size(l->in);
    for (size_t i = 0; q && i < mk; i++)
        w[i] = (float)q->d->w[i] * q->d->w_scale[i / k];
}

static int q8_setup(nn_layer *l, kd_err *e) { return compress_qsetup(l, 0, e); }
static int dq8_setup(nn_layer *l, kd_err *e) { return compress_qsetup(l, 1, e); }

const nn_layer_ops compress_dense_q8_ops = {
    .name = "dense_q8",
    .setup = q8_setup,
    .reserve = q8_reserve,
    .release = compress_qrelease,
    .forward = q8_forward,
    .fuses_relu = 1,
    .threaded = 1,
    .backward = compress_qbackward,
    .macs = compress_qmacs,
    .format = "int8",
    .weight_bits = 8,
    .dense_like = 1,
    .dequant = q8_dequant,
    .save = q8_save,
    .load = q8_load,
    .copy = q8_copy,
    .destroy = q8_destroy,
    .count = q8_count,
};

const nn_layer_ops compress_dense_dq8_ops = {
    .name = "dense_dq8",
    .setup = dq8_setup,
    .reserve = q8_reserve,
    .release = compress_qrelease,
    .forward = dq8_forward,
    .fuses_relu = 1,
    .threaded = 1,
    .backward = compress_qbackward,
    .macs = compress_qmacs,
    .format = "int8-dyn",
    .weight_bits = 8,
    .dense_like = 1,
    .dequant = q8_dequant,
    .save = q8_save,
    .load = dq8_load,
    .copy = q8_copy,
    .destroy = q8_destroy,
    .count = q8_count,
};
