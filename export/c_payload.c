/* Compressed layers in the generated C, read from their payloads exactly as
 * ops->save writes them into model files (the formats are documented above
 * each kind's save function in compress/kinds/): so export needs no kind's
 * private struct, and the arrays it writes are the bytes the file stores.
 * The CSR kinds are the exception: their files code the columns as gaps,
 * which the generated C would have to decode, so their arrays are the CSR
 * they load into (compress_layer_csr, public). */
#include <math.h>
#include <string.h>

#include "../compress/compress.h"
#include "internal.h"

typedef struct {
    cg *g;
    const nn_layer *l;
    int i;
    char what[64]; /* "layer 3 (dense2)" for messages */
} lay;

static int bad(const lay *y, const char *why, kd_err *e)
{
    return kd_err_set(e, KD_EFORMAT, "%s: %s payload: %s", y->what, y->l->ops->name, why);
}

static void name(char *n, size_t cap, const lay *y, const char *suffix)
{
    snprintf(n, cap, "L%d_%s", y->i, suffix);
}

static void emit_floats(const lay *y, const char *suffix, const float *v, size_t count)
{
    char n[32];
    name(n, sizeof n, y, suffix);
    cg_floats(y->g, n, v, count, y->what);
}

static void emit_ints(const lay *y, cg_int_type t, const char *suffix, const void *v,
                      size_t count)
{
    char n[32];
    name(n, sizeof n, y, suffix);
    cg_ints(y->g, t, n, v, count);
}

/* L<i>_b: the flat float bias (zeros when the layer has none). */
static int emit_bias(const lay *y, kd_err *e)
{
    int u = y->l->spec.units;
    if (y->l->b && y->l->nb == (size_t)u) {
        emit_floats(y, "b", y->l->b, (size_t)u);
        return KD_OK;
    }
    float *z = kd_calloc((size_t)u, sizeof *z);
    if (!z)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    emit_floats(y, "b", z, (size_t)u);
    kd_free(z);
    return KD_OK;
}

/* ---- csr-fp32 and the shared kinds: the CSR they load into
 * (compress_layer_csr; NULL for an empty layer), as rowptr[rows + 1],
 * val[nnz] and col[nnz] of 1, 2 or 4 bytes (the file codes the columns as
 * gaps, kinds/dense_csr.c; shared values are codebook entries) ---------- */
static int emit_csr(const lay *y, const compress_csr *a, kd_err *e)
{
    uint32_t rows = (uint32_t)y->l->spec.units, cols = (uint32_t)nn_shape_size(y->l->in);
    if (a && ((uint32_t)a->rows != rows || (uint32_t)a->cols != cols))
        return bad(y, "sizes do not match the layer", e);
    uint32_t *zeros = a ? NULL : kd_calloc((size_t)rows + 1, sizeof *zeros);
    if (!a && !zeros)
        return kd_err_set(e, KD_ENOMEM, "out of memory");
    int ib = a ? a->idx_bytes : 1;
    uint32_t nnz = a ? a->nnz : 0;
    emit_ints(y, CG_U32, "rp", a ? a->rowptr : zeros, (size_t)rows + 1);
    emit_floats(y, "val", a ? a->val : NULL, nnz);
    emit_ints(y, ib == 1 ? CG_U8 : ib == 2 ? CG_U16 : CG_U32, "col", a ? a->col : NULL, nnz);
    kd_free(zeros);
    int rc = emit_bias(y, e);
    if (rc)
        return rc;
    const char *t = ib == 1 ? "uint8_t" : ib == 2 ? "uint16_t" : "uint32_t";
    y->g->need |= ib == 1 ? CG_CSR8 : ib == 2 ? CG_CSR16 : CG_CSR32;
    cg_printf(&y->g->run, "    kd_csr_%s(L%d_rp, L%d_col, L%d_val, L%d_b, %u, ", t, y->i, y->i,
              y->i, y->i, rows);
    cg_io_swap(y->g);
    return KD_OK;
}

/* ---- int8 and int8-dyn (export_q8_read, payload_q8.c) ------------------------- */
static int emit_q8(const lay *y, int dynamic, kd_err *e)
{
    export_q8 q;
    int rc = export_q8_read(y->l, y->what, &q, e);
    if (rc == KD_OK && dynamic)
        rc = emit_bias(y, e);
    if (rc == KD_OK) {
        int out_s8 = !dynamic && (q.flags & 1), relu = (q.flags >> 1) & 1, i = y->i;
        emit_ints(y, CG_I8, "w", q.w, (size_t)q.m * q.k);
        emit_ints(y, CG_I32, "rs", q.row_sum, q.m);
        emit_floats(y, "ws", q.w_scale, q.m);
        if (!dynamic)
            emit_ints(y, CG_I32, "bias", q.bias, q.m);
        if (out_s8) {
            emit_ints(y, CG_I32, "mult", q.mult, q.m);
            emit_ints(y, CG_I32, "shift", q.shift, q.m);
        }
        kd_buf *d = &y->g->data;
        cg_printf(d, "static const kd_q8 L%d = {%u, %u, L%d_w, L%d_rs, ", i, q.m, q.k, i, i);
        if (dynamic)
            cg_printf(d, "NULL, NULL, NULL, L%d_ws, L%d_b, 1.0f, 0, 0, 1.0f, 0, -128};\n", i, i);
        else {
            cg_printf(d, "L%d_bias, ", i);
            if (out_s8)
                cg_printf(d, "L%d_mult, L%d_shift, ", i, i);
            else
                cg_printf(d, "NULL, NULL, ");
            cg_printf(d, "L%d_ws, NULL, ", i);
            cg_float(y->g, d, q.in_scale, y->what);
            cg_printf(d, ", %ld, %d, ", (long)q.in_zero, out_s8);
            cg_float(y->g, d, q.out_scale, y->what);
            int32_t lo = relu && q.out_zero > -128 ? q.out_zero : -128;
            cg_printf(d, ", %ld, %ld};\n", (long)q.out_zero, (long)lo);
        }
        y->g->need |= dynamic ? CG_DQ8 : CG_Q8;
        y->g->max_q = q.k > y->g->max_q ? q.k : y->g->max_q;
        cg_printf(&y->g->run, "    kd_q8_%s(&L%d, kd_act[%d], kd_xq, kd_act[%d]);\n",
                  dynamic ? "dynamic" : "static", i, y->g->cur, 1 - y->g->cur);
        y->g->cur = 1 - y->g->cur;
    }
    export_q8_free(&q);
    return rc;
}

/* The rest of r as `blocks` groups of a u16 fp16 scale and cb code bytes,
 * emitted as L<i>_d, L<i>_q and the bias (int4, int3, int2). */
static int emit_groups(const lay *y, kd_rd *r, size_t blocks, size_t cb, kd_err *e)
{
    uint16_t *d = kd_malloc(blocks * 2);
    uint8_t *q = kd_malloc(blocks * cb);
    int rc = d && q ? KD_OK : kd_err_set(e, KD_ENOMEM, "out of memory");
    for (size_t b = 0; rc == KD_OK && b < blocks; b++) {
        uint8_t h[2];
        kd_rd_get(r, h, 2);
        d[b] = (uint16_t)(h[0] | h[1] << 8);
        kd_rd_get(r, q + b * cb, cb);
    }
    if (rc == KD_OK && !r->ok)
        rc = bad(y, "truncated", e);
    if (rc == KD_OK) {
        emit_ints(y, CG_U16, "d", d, blocks);
        emit_ints(y, CG_U8, "q", q, blocks * cb);
        rc = emit_bias(y, e);
    }
    kd_free(d);
    kd_free(q);
    return rc;
}

/* ---- int4: u32 rows, cols, group (32); rows x ceil(cols / 32) blocks of u16
 * fp16 scale + 16 bytes of nibbles ------------------------------------------------ */
static int emit_q4(const lay *y, kd_rd *r, kd_err *e)
{
    uint32_t m = kd_rd_u32(r), k = kd_rd_u32(r), grp = kd_rd_u32(r), nb = (k + 31) / 32;
    if (!r->ok || m != (uint32_t)y->l->spec.units || k != nn_shape_size(y->l->in) || grp != 32 ||
        r->len - r->pos != (uint64_t)m * nb * 18)
        return bad(y, "sizes do not match the layer", e);
    int rc = emit_groups(y, r, (size_t)m * nb, 16, e);
    if (rc)
        return rc;
    y->g->need |= CG_Q4;
    cg_printf(&y->g->run, "    kd_q4(L%d_d, L%d_q, L%d_b, %u, %u, ", y->i, y->i, y->i, m, k);
    cg_io_swap(y->g);
    return KD_OK;
}

/* ---- int3, int2: u32 rows, cols, group (32), bits; then per group (row-major)
 * the u16 fp16 scale and its 4 * bits code bytes (kinds/dense_qlow.c) ----------- */
static int emit_ql(const lay *y, kd_rd *r, kd_err *e)
{
    uint32_t m = kd_rd_u32(r), k = kd_rd_u32(r), grp = kd_rd_u32(r), bits = kd_rd_u32(r);
    uint32_t nb = (k + 31) / 32, cb = 4 * bits;
    if (!r->ok || m != (uint32_t)y->l->spec.units || k != nn_shape_size(y->l->in) || grp != 32 ||
        (bits != 2 && bits != 3) || r->len - r->pos != (uint64_t)m * nb * (2 + cb))
        return bad(y, "sizes do not match the layer", e);
    int rc = emit_groups(y, r, (size_t)m * nb, cb, e);
    if (rc)
        return rc;
    y->g->need |= CG_QL;
    cg_printf(&y->g->run, "    kd_ql(L%d_d, L%d_q, %u, L%d_b, %u, %u, ", y->i, y->i, bits, y->i,
              m, k);
    cg_io_swap(y->g);
    return KD_OK;
}

/* ---- csr-int8 (payload_q8.c parses it) ----------------------------------------- */
static int emit_qcsr(const lay *y, kd_rd *r, kd_err *e)
{
    export_qcsr a;
    int rc = export_qcsr_parse(y->l, y->what, r, &a, e);
    if (rc)
        return rc;
    emit_ints(y, CG_I32, "rp", a.rp, (size_t)a.m + 1);
    emit_ints(y, CG_U8, "delta", a.delta, a.nnz);
    emit_ints(y, CG_I8, "val", a.val, a.nnz);
    emit_floats(y, "scale", a.scale, a.m);
    rc = emit_bias(y, e);
    uint32_t m = a.m;
    export_qcsr_free(&a);
    if (rc)
        return rc;
    y->g->need |= CG_QCSR;
    cg_printf(&y->g->run, "    kd_qcsr(L%d_rp, L%d_delta, L%d_val, L%d_scale, L%d_b, %u, ", y->i,
              y->i, y->i, y->i, y->i, m);
    cg_io_swap(y->g);
    return KD_OK;
}

/* csr-int8-static's and csr-int8-dyn's arrays (a's, freed here) and bias:
 * rp, delta, val, the row sums the kinds derive at load, scale; records
 * the helper `need` and the input codes' buffer; *m, *k its shape. */
static int emit_qcsr_int8_in(const lay *y, export_qcsr *a, unsigned need, uint32_t *m,
                             uint32_t *k, kd_err *e)
{
    emit_ints(y, CG_I32, "rp", a->rp, (size_t)a->m + 1);
    emit_ints(y, CG_U8, "delta", a->delta, a->nnz);
    emit_ints(y, CG_I8, "val", a->val, a->nnz);
    emit_ints(y, CG_I32, "rs", a->row_sum, a->m);
    emit_floats(y, "scale", a->scale, a->m);
    int rc = emit_bias(y, e);
    *m = a->m;
    *k = a->k;
    export_qcsr_free(a);
    if (rc)
        return rc;
    y->g->need |= need;
    y->g->max_q = *k > y->g->max_q ? *k : y->g->max_q;
    int i = y->i;
    cg_printf(&y->g->run, "    kd_qcsr_%s(L%d_rp, L%d_delta, L%d_val, L%d_rs, L%d_scale, L%d_b, ",
              need == CG_QCSRS8 ? "s8" : "d8", i, i, i, i, i, i);
    return KD_OK;
}

/* ---- csr-int8-static: f32 input scale, i32 input zero point, then csr-int8's
 * payload ---------------------------------------------------------------------------- */
static int emit_qcsr_s8(const lay *y, kd_rd *r, kd_err *e)
{
    float xs;
    int32_t xz;
    export_qcsr a;
    uint32_t m, k;
    int rc = export_qcsr_s8_parse(y->l, y->what, r, &xs, &xz, &a, e);
    if (rc || (rc = emit_qcsr_int8_in(y, &a, CG_QCSRS8, &m, &k, e)))
        return rc;
    kd_buf *run = &y->g->run;
    cg_float(y->g, run, xs, y->what);
    cg_printf(run, ", %ld, %u, %u, kd_act[%d], kd_xq, kd_act[%d]);\n", (long)xz, m, k, y->g->cur,
              1 - y->g->cur);
    y->g->cur = 1 - y->g->cur;
    return KD_OK;
}

/* ---- csr-int8-dyn: csr-int8's payload ----------------------------------------------- */
static int emit_qcsr_d8(const lay *y, kd_rd *r, kd_err *e)
{
    export_qcsr a;
    uint32_t m, k;
    int rc = export_qcsr_parse(y->l, y->what, r, &a, e);
    if (rc || (rc = emit_qcsr_int8_in(y, &a, CG_QCSRD8, &m, &k, e)))
        return rc;
    cg_printf(&y->g->run, "%u, %u, kd_act[%d], kd_xq, kd_act[%d]);\n", m, k, y->g->cur,
              1 - y->g->cur);
    y->g->cur = 1 - y->g->cur;
    return KD_OK;
}

int cg_payload(cg *g, const nn_layer *l, int i, kd_err *e)
{
    lay y = {.g = g, .l = l, .i = i};
    snprintf(y.what, sizeof y.what, "layer %d (%s)", i, l->spec.name);
    const char *f = l->ops->format;
    /* shared weights (csr-shared, csr-shared+huff) hold a plain CSR in memory,
     * decoded at load, and run as csr-fp32, their values being the codebook's */
    if (!strcmp(f, "csr-fp32") || !strcmp(f, "csr-shared") || !strcmp(f, "csr-shared+huff"))
        return emit_csr(&y, compress_layer_csr(l), e);
    kd_buf b = {0};
    l->ops->save(l, &b);
    if (b.failed) {
        kd_buf_free(&b);
        return kd_err_set(e, KD_ENOMEM, "%s: out of memory for its payload", y.what);
    }
    kd_rd r = {.p = b.p, .len = b.len, .ok = 1};
    int rc = !strcmp(f, "int8")       ? emit_q8(&y, 0, e)
             : !strcmp(f, "int8-dyn") ? emit_q8(&y, 1, e)
             : !strcmp(f, "int4")     ? emit_q4(&y, &r, e)
             : !strcmp(f, "int3") || !strcmp(f, "int2") ? emit_ql(&y, &r, e)
             : !strcmp(f, "csr-int8") ? emit_qcsr(&y, &r, e)
             : !strcmp(f, "csr-int8-static") ? emit_qcsr_s8(&y, &r, e)
             : !strcmp(f, "csr-int8-dyn") ? emit_qcsr_d8(&y, &r, e)
                                      : kd_err_set(e, KD_ECONFIG, "%s: format %s", y.what, f);
    kd_buf_free(&b);
    return rc;
}
