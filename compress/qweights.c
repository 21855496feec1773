/* Reports on quantized models: the weights each dense-shaped layer computes
 * with (dequantized), the model's weight bits, and weights_hist.csv. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

void compress_layer_weights(const nn_layer *l, float *w)
{
    if (l->ops->dequant) {
        l->ops->dequant(l, w);
        return;
    }
    const size_t mk = (size_t)l->spec.units * nn_shape_size(l->in);
    memset(w, 0, mk * sizeof *w);
    memcpy(w, l->w, (l->nw < mk ? l->nw : mk) * sizeof *w);
}

static int layer_bits(const nn_layer *l) { return l->ops->weight_bits ? l->ops->weight_bits : 32; }

int compress_model_weight_bits(const nn_model *m)
{
    static const int bits[5] = {32, 8, 4, 3, 2};
    double n[5] = {0, 0, 0, 0, 0};
    for (int i = 0; i < m->nlayers; i++) {
        const nn_layer *l = &m->layers[i];
        size_t pw = 0, pnz;
        if (l->ops->count)
            l->ops->count(l, &pw, &pnz);
        int b = layer_bits(l), k = 0;
        while (k < 4 && bits[k] != b)
            k++;
        n[k] += (double)(l->nw + pw);
    }
    int best = 0; /* the majority by weight count; ties go to the wider */
    for (int k = 1; k < 5; k++)
        if (n[k] > n[best])
            best = k;
    return bits[best];
}

/* ---- weights_hist.csv ------------------------------------------------------------ */

static void put_line(kd_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put_line(kd_buf *b, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    kd_buf_put(b, line, n < (int)sizeof line ? (size_t)n : sizeof line - 1);
}

/* One layer's rows: nbins equal bins over [min, max] of its finite non-zero
 * weights (the last bin closed; a non-finite weight counts in the first bin);
 * exact zeros (pruned, or rounded to zero) are not binned but counted in the
 * zeros column, so a pruned layer's spike does not hide the rest; a layer
 * with one distinct value puts everything in its first bin. */
static void hist_rows(kd_buf *b, const char *variant, const char *layer, const float *w,
                      size_t n, int nbins, uint64_t *cnt)
{
    float lo = INFINITY, hi = -INFINITY;
    unsigned long long zeros = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(w[i]) && w[i] != 0.0f) {
            lo = fminf(lo, w[i]);
            hi = fmaxf(hi, w[i]);
        }
    if (lo > hi)
        lo = hi = 0.0f;
    memset(cnt, 0, (size_t)nbins * sizeof *cnt);
    double width = ((double)hi - lo) / nbins;
    for (size_t i = 0; i < n; i++) {
        if (w[i] == 0.0f) {
            zeros++;
            continue;
        }
        long j = width > 0 && isfinite(w[i]) ? (long)(((double)w[i] - lo) / width) : 0;
        cnt[j < 0 ? 0 : j >= nbins ? nbins - 1 : j]++;
    }
    for (int j = 0; j < nbins; j++)
        put_line(b, "%s,%s,%.9g,%.9g,%llu,%llu\n", variant, layer, lo + j * width,
                 j == nbins - 1 ? (double)hi : lo + (j + 1) * width, (unsigned long long)cnt[j],
                 zeros);
}

static int layer_rows(kd_buf *b, const char *variant, const nn_layer *l, int nbins,
                      uint64_t *cnt, kd_err *e)
{
    size_t n = (size_t)l->spec.units * nn_shape_size(l->in);
    float *w = kd_malloc(n * sizeof *w);
    if (!w)
        return kd_err_set(e, KD_ENOMEM, "out of memory for %zu weights", n);
    compress_layer_weights(l, w);
    hist_rows(b, variant, l->spec.name, w, n, nbins, cnt);
    kd_free(w);
    return KD_OK;
}

int compress_weights_hist_rows(kd_buf *b, const char *variant, const nn_model *m, int nbins,
                                uint64_t *cnt, kd_err *e)
{
    int rc = KD_OK;
    for (int i = 0; rc == KD_OK && i < m->nlayers; i++)
        if (compress_is_dense_like(&m->layers[i]))
            rc = layer_rows(b, variant, &m->layers[i], nbins, cnt, e);
    return rc;
}

int compress_write_weights_hist(const char *run_dir, const char *const *variants,
                                const nn_model *const *models, int n, int nbins, kd_err *e)
{
    if (nbins < 1 || nbins > COMPRESS_HIST_MAX_BINS)
        return kd_err_set(e, KD_ECONFIG, "histogram of %d bins", nbins);
    uint64_t *cnt = kd_malloc((size_t)nbins * sizeof *cnt);
    kd_buf b = {0};
    int rc = cnt ? KD_OK : kd_err_set(e, KD_ENOMEM, "out of memory");
    put_line(&b, COMPRESS_HIST_HEADER);
    for (int v = 0; rc == KD_OK && v < n; v++)
        rc = compress_weights_hist_rows(&b, variants[v], models[v], nbins, cnt, e);
    kd_free(cnt);
    if (rc != KD_OK) {
        kd_buf_free(&b);
        return rc;
    }
    return compress_write_table(run_dir, "weights_hist.csv", &b, e);
}
