/* The kinds table (compress_kinds) and what the dense-shaped quantized kinds
 * share.  A new kind is a file in this folder with its ops table (facts
 * included: format, weight_bits, dequant, dense_like, ...) and one line in
 * kinds[] below; nothing outside its file needs to know its ops pointer. */
#include <string.h>

#include "internal.h"
#include "../../onnx/import.h"

/* ---- the table ---------------------------------------------------------------- */

static const nn_layer_ops *const kinds[] = {
    &compress_dense_csr_ops, &compress_dense_q8_ops,     &compress_dense_dq8_ops,
    &compress_dense_q4_ops,  &compress_dense_csr_q8_ops, &compress_dense_fq_ops,
    &compress_dense_csr_shared_ops, &compress_dense_q2_ops, &compress_dense_q3_ops,
    &compress_dense_lsq_ops, &compress_dense_csr_shared_raw_ops, &compress_dense_csr_s8_ops,
    &compress_dense_csr_d8_ops,
};

const nn_layer_ops *const *compress_kinds(int *n)
{
    if (n)
        *n = (int)(sizeof kinds / sizeof kinds[0]);
    return kinds;
}

nn_model *compress_model_load(const char *path, kd_err *e)
{
    if (onnx_is_onnx_path(path)) /* an imported model: pixels x/255, no standardization */
        return onnx_import_file(path, 0, 1, e);
    int n;
    const nn_layer_ops *const *k = compress_kinds(&n);
    return nn_model_load_with(path, k, n, e);
}

/* ---- shared by the quantized dense kinds ---------------------------------- */

int compress_qsetup(nn_layer *l, int bias, kd_err *e)
{
    if (l->spec.units < 1)
        return kd_err_set(e, KD_ECONFIG, "units must be >= 1");
    size_t fan_in = nn_shape_size(l->in);
    if (fan_in < 1 || fan_in > QGEMM_KMAX)
        return kd_err_set(e, KD_ECONFIG, "input of %zu features is out of range", fan_in);
    l->out = (nn_shape){l->spec.units, 1, 1};
    l->nw = 0;
    l->nb = bias ? (size_t)l->spec.units : 0;
    l->nbuf = 0;
    return KD_OK;
}

void compress_qbackward(nn_layer *l, const float *x, const float *y, const float *dy, float *dx,
                        int n, const nn_ctx *c)
{
    (void)x;
    (void)y;
    (void)c;
    const int u = l->spec.units;
    for (int i = 0; l->gb && i < n; i++)
        for (int j = 0; j < u; j++)
            l->gb[j] += dy[(size_t)i * u + j];
    if (dx)
        memset(dx, 0, (size_t)n * nn_shape_size(l->in) * sizeof *dx);
}

double compress_qmacs(const nn_layer *l) { return (double)l->spec.units * nn_shape_size(l->in); }

int compress_copy_via_payload(nn_layer *dst, const nn_layer *src, kd_err *e)
{
    if (!src->data)
        return KD_OK;
    kd_buf b = {0};
    src->ops->save(src, &b);
    kd_rd r = {.p = b.p, .len = b.len, .ok = 1};
    int rc = b.failed ? kd_err_set(e, KD_ENOMEM, "out of memory") : dst->ops->load(dst, &r, e);
    kd_buf_free(&b);
    return rc;
}

void compress_qrelease(nn_layer *l)
{
    kd_free(l->priv);
    l->priv = NULL;
    l->max_batch = 0;
}
