/* GPTQ rounding for the int4 format (Frantar, Ashkboos, Hoefler & Alistarh,
 * "GPTQ", ICLR 2023; the OBQ update of Frantar & Alistarh, NeurIPS 2022).
 *
 * Round-to-nearest quantizes every weight alone.  GPTQ quantizes the columns
 * of W (m x k, rows are outputs) one after another and pushes each rounding
 * error onto the columns not yet quantized, weighted by the inverse of the
 * layer's input Gram matrix H = X^T X / n, so that the layer's output on the
 * calibration inputs (W X^T) moves as little as possible:
 *   Hd   = H + damp * mean(diag H) * I      (dead inputs: H_jj = 1, w_j = 0)
 *   U    = the upper Cholesky factor of Hd^-1  (Hd^-1 = U^T U)
 *   for j = 0 .. k-1:  q_j = Q(w_j),  e = (w_j - q_j) / U_jj,
 *                      w_c -= e * U_jc  for every c > j.
 * The groups of 32 along k keep quant_q4_block's scale rule: a group's fp16
 * scale is taken from its (already updated) weights when GPTQ reaches its
 * first column, then each column is rounded with it as quant_q4_block rounds.
 * With act_order the columns go by decreasing h_jj (the inputs with the most
 * energy first, GPTQ's act-order) and the group scales are fixed before any
 * update, from the original weights ("static groups"), since a group's
 * columns no longer come together.
 * The factorizations are LAPACK's (OpenBLAS ships dpotrf/dpotri). */
#include <math.h>
#include <string.h>

#include "internal.h"

#define G QUANT_Q4_GROUP

/* LAPACK (Fortran, column-major; H is symmetric so the layout is moot). */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);
extern void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info);

/* Upper Cholesky factor U (row-major, upper triangle) of (hp + damping)^-1,
 * into u (k x k doubles), where hp is h with its rows and columns in the
 * order p (copied into u, never held whole a second time: each k x k copy is
 * 11.5 MB at k = 1200, issue 12).  Retries with 10x the damping while the
 * matrix is not positive definite (at most 4 times). */
static int inverse_factor(const double *h, const int *p, int k, double damp, double *u,
                          kd_err *e)
{
    double mean = 0.0;
    for (int j = 0; j < k; j++)
        mean += h[(size_t)p[j] * k + p[j]];
    mean = mean > 0.0 ? mean / k : 1.0;
    for (int attempt = 0; attempt < 5; attempt++, damp *= 10.0) {
        for (int a = 0; a < k; a++)
            for (int b = 0; b < k; b++)
                u[(size_t)a * k + b] = h[(size_t)p[a] * k + p[b]];
        for (int j = 0; j < k; j++) {
            double hjj = h[(size_t)p[j] * k + p[j]];
            u[(size_t)j * k + j] = (hjj > 0.0 ? hjj : 1.0) + damp * mean;
        }
        int info = 0;
        dpotrf_("L", &k, u, &k, &info);
        if (info == 0)
            dpotri_("L", &k, u, &k, &info);
        if (info != 0)
            continue;
        /* the inverse's lower triangle (column-major) to both halves */
        for (int c = 0; c < k; c++)
            for (int r = c + 1; r < k; r++)
                u[(size_t)r * k + c] = u[(size_t)c * k + r];
        dpotrf_("L", &k, u, &k, &info);
        /* column-major L with Hd^-1 = L L^T is, read row-major, U = L^T */
        if (info == 0)
            return KD_OK;
    }
    return kd_err_set(e, KD_ERUNTIME, "gptq: the %d x %d input Gram matrix is not positive "
                      "definite even with damping %g", k, k, damp / 10.0);
}

static void set_nibble(quant_block_q4 *b, int j, int nib)
{
    uint8_t *p = &b->q[j % (G / 2)];
    *p = j < G / 2 ? (uint8_t)((*p & 0xF0) | nib) : (uint8_t)((*p & 0x0F) | nib << 4);
}

/* Columns by decreasing h_jj (ties by index): GPTQ's act-order. */
static int *column_order(const double *h, int k, int act_order)
{
    int *p = kd_malloc((size_t)k * sizeof *p);
    if (!p)
        return NULL;
    for (int j = 0; j < k; j++)
        p[j] = j;
    if (!act_order)
        return p;
    for (int j = 1; j < k; j++) { /* insertion sort: stable, k is at most a few thousand */
        int v = p[j], i = j;
        double hv = h[(size_t)v * k + v];
        for (; i > 0 && h[(size_t)p[i - 1] * k + p[i - 1]] < hv; i--)
            p[i] = p[i - 1];
        p[i] = v;
    }
    return p;
}

quant_q4 *quant_q4_gptq(const float *w, int m, int k, const double *h, float damp, int act_order,
                        kd_err *e)
{
    if (!(damp > 0.0f && damp <= 1.0f)) {
        kd_err_set(e, KD_ECONFIG, "gptq: damping %g outside (0, 1]", (double)damp);
        return NULL;
    }
    quant_q4 *q = quant_q4_pack(w, m, k, e); /* shape checks, blocks allocated */
    if (!q)
        return NULL;
    double *u = kd_malloc((size_t)k * k * sizeof *u);
    float *wk = kd_malloc((size_t)m * k * sizeof *wk);
    int *p = column_order(h, k, act_order);
    if (!u || !wk || !p) {
        kd_err_set(e, KD_ENOMEM, "gptq: out of memory for a %d x %d layer", m, k);
        goto fail;
    }
    /* h and the weights with their columns in processing order */
    if (inverse_factor(h, p, k, damp, u, e) != KD_OK)
        goto fail;
    for (int r = 0; r < m; r++)
        for (int j = 0; j < k; j++)
            wk[(size_t)r * k + j] =
                h[(size_t)p[j] * k + p[j]] > 0.0 ? w[(size_t)r * k + p[j]] : 0.0f;
    if (act_order) { /* static groups: scales from the weights before any update */
        for (int r = 0; r < m; r++)
            for (int b = 0; b < q->nb; b++) {
                float t[G] = {0};
                int len = k - b * G < G ? k - b * G : G;
                for (int j = 0; j < len; j++) {
                    int c = b * G + j;
                    t[j] = h[(size_t)c * k + c] > 0.0 ? w[(size_t)r * k + c] : 0.0f;
                }
                quant_q4_block(t, len, &q->blocks[(size_t)r * q->nb + b]);
            }
    }
    for (int j = 0; j < k; j++) {
        int c = p[j], g = c / G, len = k - g * G < G ? k - g * G : G;
        const double *uj = u + (size_t)j * k;
        for (int r = 0; r < m; r++) {
            float *wr = wk + (size_t)r * k;
            quant_block_q4 *b = &q->blocks[(size_t)r * q->nb + g];
            if (!act_order && c % G == 0)
                quant_q4_block(wr + j, len, b); /* the scale, from the updated weights */
            float d = quant_f16_to_f32(b->d);
            float v = d > 0.0f ? roundf(wr[j] / d) : 0.0f;
            v = v < -8.0f ? -8.0f : v > 7.0f ? 7.0f : v;
            set_nibble(b, c - g * G, (int)v + 8);
            double err = ((double)wr[j] - (double)d * v) / uj[j];
            for (int t = j + 1; t < k; t++)
                wr[t] -= (float)(err * uj[t]);
        }
    }
    if (quant_q4_build_quads(q, e) != KD_OK) /* the blocks changed: regroup them again */
        goto fail;
    kd_free(u);
    kd_free(wk);
    kd_free(p);
    return q;
fail:
    kd_free(u);
    kd_free(wk);
    kd_free(p);
    quant_q4_free(q);
    return NULL;
}
