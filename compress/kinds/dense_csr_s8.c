/* dense_csr_s8 (format "csr-int8-static"): a pruned dense layer stored as
 * csr-int8's entries (quant_csr: int8 values, a symmetric scale per row,
 * one-byte column deltas) whose input is quantized too, per tensor with
 * calibrated parameters, as int8 static's (dense_q8.c).  The products are
 * summed in int32, which is exact, and the output is float:
 *   y[r] = (float)(acc[r] - zero * rowsum[r]) * (s_in * scale[r]) + b[r]
 * (ReLU fused), with rowsum[r] the sum of row r's values
 * (quant_csr_s8_out).  At kernel level
 * avx2 and up the sums run on byte panels built at reserve (quant_csr_s8.c),
 * at any batch (up to 4 samples a pass over the steps); below, on
 * quant_csr_s8_ref.  Integer
 * sums and one epilogue make the same bits on every path, thread count and
 * batch.  Inference-only, like every quantized kind.
 *
 * dense_csr_d8 (format "csr-int8-dyn") is the same with the input quantized
 * per call, as int8-dyn's (dense_q8.c): asymmetric parameters from the
 * min/max of the call's whole input (one range per batch, as ONNX's
 * DynamicQuantizeLinear takes), then the same sums and output stage with
 * that call's zero point and scale.  Its payload is csr-int8's alone. */
#include <math.h>
#include <string.h>

#include "internal.h"

typedef struct {
    quant_csr *q;
    int dynamic;     /* csr-int8-dyn: in, zr and cs are per call (in the scratch) */
    quant_params in; /* static: the input's quantizer */
    int32_t *zr;     /* static: per row (in.zero + 128) * rowsum[r] (mod 2^32) */
    float *cs;       /* static: per row in.scale * q->scale[r] */
    uint32_t *rowsum; /* per row: the sum of its values (mod 2^32) */
} qs8_data;

/* Scratch: the panels and the payload they were built from (a payload
 * replaced after reserve never runs through stale panels), the quantized
 * inputs (QUANT_CSR_S8_PAD bytes after each) and the int32 sums. */
typedef struct {
    quant_csr_s8_panels *panels;
    const qs8_data *src;
    uint8_t *xq; /* codes + 128 (quant_csr_s8_codes) */
    int32_t *acc;
    int32_t *zr; /* csr-int8-dyn: this call's zr and cs */
    float *cs;
    int xstride;
} qs8_priv;

static int qs8_setup(nn_layer *l, kd_err *e) { return compress_qsetup(l, 1, e); }

static void qs8_release(nn_layer *l)
{
    qs8_priv *p = l->priv;
    if (p) {
        quant_csr_s8_panels_free(p->panels);
        kd_free(p->xq);
        kd_free(p->acc);
        kd_free(p->zr);
        kd_free(p->cs);
        kd_free(p);
    }
    l->priv = NULL;
    l->max_batch = 0;
}

static int qs8_reserve(nn_layer *l, int max_batch, kd_err *e)
{
    qs8_release(l);
    const size_t k = nn_shape_size(l->in), m = (size_t)l->spec.units, nb = (size_t)max_batch;
    qs8_priv *p = kd_calloc(1, sizeof *p);
    if (p) {
        p->xstride = (int)k + QUANT_CSR_S8_PAD;
        p->xq = kd_calloc(nb, (size_t)p->xstride);
        p->acc = kd_malloc(nb * m * sizeof *p->acc);
        p->zr = kd_malloc(m * sizeof *p->zr);
        p->cs = kd_malloc(m * sizeof *p->cs);
    }
    l->priv = p;
    if (!p || !p->xq || !p->acc || !p->zr || !p->cs)
        return kd_err_set(e, KD_ENOMEM, "out of memory for %s scratch", l->ops->format);
    const qs8_data *d = l->data;
    if (d && kernels_isa() >= KD_ISA_AVX2) {
        if (!(p->panels = quant_csr_s8_panels_new(d->q, e)))
            return e->code;
        p->src = d;
    }
    l->max_batch = max_batch;
    return KD_OK;
}

/* One forward split across the team: batch 1 by rows (the panels' slices,
 * or rows of about equal entries), batches by samples. */
typedef struct {
    const qs8_data *d;
    const quant_csr_s8_panels *panels;
    qs8_priv *p;
    const float *x, *b;
    float *y;
    int n, relu;
    quant_params in; /* this call's input quantizer */
} qs8_job;

/* csr-int8-dyn: rows [r0, r1) of this call's zr and cs (as the static
 * kind's, from the call's quantizer). */
static void call_rows(const qs8_job *j, int r0, int r1)
{
    const qs8_data *d = j->d;
    const uint32_t z = (uint32_t)(j->in.zero + 128);
    for (int r = r0; r < r1; r++) {
        j->p->zr[r] = (int32_t)(d->rowsum[r] * z);
        j->p->cs[r] = j->in.scale * d->q->scale[r];
    }
}

/* y's rows [r0, r1) of sample i from its sums. */
static void epilogue(const qs8_job *j, int i, int r0, int r1)
{
    const qs8_data *d = j->d;
    const int m = d->q->m;
    quant_csr_s8_epi ep = {.zr = d->dynamic ? j->p->zr : d->zr,
                           .cs = d->dynamic ? j->p->cs : d->cs,
                           .b = j->b,
                           .relu = j->relu};
    quant_csr_s8_out(&ep, j->p->acc + (size_t)i * m, j->y + (size_t)i * m, r0, r1);
}

/* The sums of samples [i0, i1), rows [r0, r1) (part `part` of nparts on
 * the panels, which read their steps once for up to QUANT_CSR_S8_NX). */
static void sums(const qs8_job *j, int i0, int i1, int part, int nparts, int r0, int r1)
{
    const quant_csr *q = j->d->q;
    const size_t xs = (size_t)j->p->xstride, m = (size_t)q->m;
    if (j->panels)
        quant_csr_s8_panels_run(j->panels, j->p->xq + i0 * xs, xs, i1 - i0, j->p->acc + i0 * m, m,
                                part, nparts);
    else
        for (int i = i0; i < i1; i++)
            quant_csr_s8_ref(q, j->p->xq + i * xs, j->p->acc + i * m, r0, r1);
}

static void rows_of(const qs8_job *j, int part, int nparts, int *r0, int *r1)
{
    if (j->panels) {
        quant_csr_s8_panels_rows(j->panels, part, nparts, r0, r1);
    } else {
        *r0 = compress_qcsr_row_start(j->d->q, part, nparts);
        *r1 = compress_qcsr_row_start(j->d->q, part + 1, nparts);
    }
}

static void quantize_sample(const qs8_job *j, int i)
{
    const int k = j->d->q->k;
    uint8_t *xu = j->p->xq + (size_t)i * j->p->xstride;
    quant_quantize_s8(j->x + (size_t)i * k, (size_t)k, j->in, (int8_t *)xu);
    quant_csr_s8_codes((const int8_t *)xu, (size_t)k, xu);
}

static void qs8_part(void *arg, int part, int nparts)
{
    const qs8_job *j = arg;
    int r0, r1;
    if (j->n == 1) { /* the caller quantized x */
        rows_of(j, part, nparts, &r0, &r1);
        if (r0 < r1) {
            if (j->d->dynamic)
                call_rows(j, r0, r1);
            sums(j, 0, 1, part, nparts, r0, r1);
            epilogue(j, 0, r0, r1);
        }
        return;
    }
    int i0 = (int)((long)j->n * part / nparts), i1 = (int)((long)j->n * (part + 1) / nparts);
    for (int i = i0; i < i1; i++)
        quantize_sample(j, i);
    if (i0 < i1)
        sums(j, i0, i1, 0, 1, 0, j->d->q->m);
    for (int i = i0; i < i1; i++)
        epilogue(j, i, 0, j->d->q->m);
}

static void qs8_forward(nn_layer *l, const float *x, float *y, int n, const nn_ctx *c)
{
    const qs8_data *d = l->data;
    qs8_priv *p = l->priv;
    const int u = l->spec.units;
    if (!d) {
        for (int i = 0; i < n; i++)
            memcpy(y + (size_t)i * u, l->b, (size_t)u * sizeof *y);
        if (c->relu)
            compress_relu_rows(y, n, u, 0, u);
        return;
    }
    qs8_job j = {.d = d, .p = p, .x = x, .b = l->b, .y = y, .n = n, .relu = c->relu, .in = d->in};
    if (p->panels && p->src == d)
        j.panels = p->panels;
    nn_team *t = nn_team_for(c->team, 4.0 * d->q->nnz * n); /* ~4 bytes an entry */
    if (d->dynamic) { /* one range for the call, as int8-dyn */
        float lo = INFINITY, hi = -INFINITY;
        kernels_minmax_team(t, x, (size_t)n * d->q->k, &lo, &hi);
        j.in = quant_params_asym(lo, hi, QUANT_S8);
        if (n > 1) /* batch 1: each part its own rows */
            call_rows(&j, 0, d->q->m);
    }
    if (n == 1)
        quantize_sample(&j, 0);
    if (nn_team_size(t) > 1)
        nn_team_run(t, qs8_part, &j);
    else
        qs8_part(&j, 0, 1);
}

static double qs8_macs(const nn_layer *l)
{
    const qs8_data *d = l->data;
    return d ? (double)d->q->nnz : 0.0;
}

static void qs8_destroy(nn_layer *l)
{
    qs8_priv *p = l->priv;
    if (p) { /* the panels belong to this payload */
        quant_csr_s8_panels_free(p->panels);
        p->panels = NULL;
        p->src = NULL;
    }
    qs8_data *d = l->data;
    if (d) {
        quant_csr_free(d->q);
        kd_free(d->zr);
        kd_free(d->cs);
        kd_free(d->rowsum);
        kd_free(d);
    }
    l->data = NULL;
}

/* The payload of either kind: q, and for the static one its quantizer in
 * with the per-row terms derived from it; q taken even on failure. */
static int attach(nn_layer *l, quant_csr *q, int dynamic, quant_params in, kd_err *e)
{
    qs8_data *d = kd_calloc(1, sizeof *d);
    if (d) {
        d->rowsum = kd_malloc((size_t)q->m * sizeof *d->rowsum);
        if (!dynamic) {
            d->zr = kd_malloc((size_t)q->m * sizeof *d->zr);
            d->cs = kd_malloc((size_t)q->m * sizeof *d->cs);
        }
    }
    if (!d || !d->rowsum || (!dynamic && (!d->zr || !d->cs))) {
        if (d) {
            kd_free(d->zr);
            kd_free(d->cs);
            kd_free(d->rowsum);
        }
        kd_free(d);
        quant_csr_free(q);
        return kd_err_set(e, KD_ENOMEM, "out of memory for %s",
                          dynamic ? "csr-int8-dyn" : "csr-int8-static");
    }
    d->q = q;
    d->dynamic = dynamic;
    d->in = in;
    for (int r = 0; r < q->m; r++) {
        uint32_t s = 0;
        for (int32_t j = q->row_ptr[r]; j < q->row_ptr[r + 1]; j++)
            s += (uint32_t)(int32_t)q->val[j];
        d->rowsum[r] = s;
        if (!dynamic) {
            d->zr[r] = (int32_t)(s * (uint32_t)(in.zero + 128));
            d->cs[r] = in.scale * q->scale[r];
        }
    }
    qs8_destroy(l);
    l->data = d;
    return KD_OK;
}

int compress_qcsr_s8_attach(nn_layer *l, quant_csr *q, quant_params in, kd_err *e)
{
    return attach(l, q, 0, in, e);
}

int compress_qcsr_d8_attach(nn_layer *l, quant_csr *q, kd_err *e)
{
    return attach(l, q, 1, quant_params_asym(0.0f, 0.0f, QUANT_S8), e);
}

/* ---- payload: f32 input scale, i32 input zero point, then csr-int8's
 * payload (dense_csr_q8.c: u32 rows, cols, entries; four deflate streams). */

static void qs8_save(const nn_layer *l, kd_buf *b)
{
    const qs8_data *d = l->data;
    quant_params in = d ? d->in : quant_params_asym(0.0f, 0.0f, QUANT_S8);
    kd_buf_f32(b, in.scale);
    kd_buf_u32(b, (uint32_t)in.zero);
    compress_qcsr_put(d ? d->q : NULL, l->spec.units, (int)nn_shape_size(l->in), b);
}

static int qs8_load(nn_layer *l, kd_rd *r, kd_err *e)
{
    float scale = kd_rd_f32(r);
    int32_t zero = (int32_t)kd_rd_u32(r);
    if (!r->ok)
        return kd_err_set(e, KD_EFORMAT, "truncated csr-int8-static header");
    if (!isfinite(scale) || !(scale > 0.0f) || zero < -128 || zero > 127)
        return kd_err_set(e, KD_EFORMAT, "csr-int8-static: bad input scale %g or zero point %d",
                          (double)scale, (int)zero);
    quant_csr *q;
    int rc = compress_qcsr_get(r, l->spec.units, (int)nn_shape_size(l->in), &q, e);
    if (rc == KD_OK && r->pos != r->len) {
        quant_csr_free(q);
        return kd_err_set(e, KD_EFORMAT, "csr-int8-static: %zu stray bytes after the payload",
                          r->len - r->pos);
    }
    if (rc != KD_OK)
        return rc;
    quant_params in = {.scale = scale, .zero = zero, .qmin = -128, .qmax = 127};
    return compress_qcsr_s8_attach(l, q, in, e);
}

/* csr-int8-dyn's payload: csr-int8's alone. */
static void qd8_save(const nn_layer *l, kd_buf *b)
{
    const qs8_data *d = l->data;
    compress_qcsr_put(d ? d->q : NULL, l->spec.units, (int)nn_shape_size(l->in), b);
}

static int qd8_load(nn_layer *l, kd_rd *r, kd_err *e)
{
    quant_csr *q;
    int rc = compress_qcsr_get(r, l->spec.units, (int)nn_shape_size(l->in), &q, e);
    if (rc == KD_OK && r->pos != r->len) {
        quant_csr_free(q);
        return kd_err_set(e, KD_EFORMAT, "csr-int8-dyn: %zu stray bytes after the payload",
                          r->len - r->pos);
    }
    return rc != KD_OK ? rc : compress_qcsr_d8_attach(l, q, e);
}

static void qs8_count(const nn_layer *l, size_t *weights, size_t *nonzero)
{
    const qs8_data *d = l->data;
    compress_qcsr_count(d ? d->q : NULL, l, weights, nonzero);
}

static void qs8_dequant(const nn_layer *l, float *w)
{
    const qs8_data *d = l->data;
    compress_qcsr_dequant(d ? d->q : NULL, l, w);
}

const nn_layer_ops compress_dense_csr_s8_ops = {
    .name = "dense_csr_s8",
    .setup = qs8_setup,
    .reserve = qs8_reserve,
    .release = qs8_release,
    .forward = qs8_forward,
    .fuses_relu = 1,
    .threaded = 1,
    .backward = compress_qbackward,
    .macs = qs8_macs,
    .format = "csr-int8-static",
    .weight_bits = 8,
    .sparse = 1,
    .dense_like = 1,
    .dequant = qs8_dequant,
    .save = qs8_save,
    .load = qs8_load,
    .copy = compress_copy_via_payload,
    .destroy = qs8_destroy,
    .count = qs8_count,
};

const nn_layer_ops compress_dense_csr_d8_ops = {
    .name = "dense_csr_d8",
    .setup = qs8_setup,
    .reserve = qs8_reserve,
    .release = qs8_release,
    .forward = qs8_forward,
    .fuses_relu = 1,
    .threaded = 1,
    .backward = compress_qbackward,
    .macs = qs8_macs,
    .format = "csr-int8-dyn",
    .weight_bits = 8,
    .sparse = 1,
    .dense_like = 1,
    .dequant = qs8_dequant,
    .save = qd8_save,
    .load = qd8_load,
    .copy = compress_copy_via_payload,
    .destroy = qs8_destroy,
    .count = qs8_count,
};

const quant_csr *compress_layer_qcsr(const nn_layer *l)
{
    if (!l->data)
        return NULL;
    if (l->ops == &compress_dense_csr_q8_ops)
        return l->data;
    return l->ops == &compress_dense_csr_s8_ops || l->ops == &compress_dense_csr_d8_ops
               ? ((const qs8_data *)l->data)->q
               : NULL;
}
