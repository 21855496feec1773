/* Calibration observers: running min/max, and a bounded-memory histogram whose
 * range doubles on demand, for percentile clipping of activation ranges. */
#include "kernels.h"

#include <math.h>
#include <string.h>

void quant_minmax_init(quant_minmax *o)
{
    o->lo = INFINITY;
    o->hi = -INFINITY;
    o->count = 0;
}

void quant_minmax_update(quant_minmax *o, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]))
            continue;
        o->lo = x[i] < o->lo ? x[i] : o->lo;
        o->hi = x[i] > o->hi ? x[i] : o->hi;
        o->count++;
    }
}

/* ---- histogram ----------------------------------------------------------------- */

quant_hist *quant_hist_new(int nbins, kd_err *e)
{
    if (nbins < 16 || nbins % 4 || nbins > (1 << 24)) {
        kd_err_set(e, KD_ECONFIG, "histogram bins %d: need a multiple of 4 in [16, 2^24]", nbins);
        return NULL;
    }
    quant_hist *h = kd_calloc(1, sizeof *h);
    uint64_t *bins = kd_calloc((size_t)nbins, sizeof *bins);
    if (!h || !bins) {
        kd_free(h);
        kd_free(bins);
        kd_err_set(e, KD_ENOMEM, "out of memory for a %d-bin histogram", nbins);
        return NULL;
    }
    h->nbins = nbins;
    h->bins = bins;
    quant_minmax_init(&h->mm);
    return h;
}

void quant_hist_free(quant_hist *h)
{
    if (!h)
        return;
    kd_free(h->bins);
    kd_free(h);
}

/* Doubles the range: old bin i lands in new bin nbins/4 + i/2.  In place: the
 * upper half ascending and the lower half descending never overwrite a bin
 * that is still to be read. */
static void hist_double(quant_hist *h)
{
    int nb = h->nbins;
    uint64_t *b = h->bins;
    for (int j = nb / 2; j < 3 * nb / 4; j++)
        b[j] = b[2 * j - nb / 2] + b[2 * j - nb / 2 + 1];
    for (int j = nb / 2 - 1; j >= nb / 4; j--)
        b[j] = b[2 * j - nb / 2] + b[2 * j - nb / 2 + 1];
    memset(b, 0, (size_t)(nb / 4) * sizeof *b);
    memset(b + 3 * nb / 4, 0, (size_t)(nb / 4) * sizeof *b);
    h->range *= 2.0;
}

void quant_hist_update(quant_hist *h, const float *x, size_t n)
{
    quant_minmax_update(&h->mm, x, n);
    if (h->mm.count == 0)
        return;
    double need = fmax(fabs((double)h->mm.lo), fabs((double)h->mm.hi));
    if (h->range == 0.0 && need > 0.0)
        h->range = pow(2.0, ceil(log2(need))); /* powers of two: doubling stays exact */
    while (h->range > 0.0 && need > h->range)
        hist_double(h);
    double w = h->range > 0.0 ? 2.0 * h->range / h->nbins : 1.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]))
            continue;
        long b = (long)floor(((double)x[i] + h->range) / w);
        b = b < 0 ? 0 : b >= h->nbins ? h->nbins - 1 : b;
        h->bins[b]++;
        h->count++;
    }
}

/* The value below which `mass` of the counts lie, interpolated in its bin. */
static double hist_quantile(const quant_hist *h, double mass)
{
    double w = 2.0 * h->range / h->nbins, cum = 0.0;
    for (int b = 0; b < h->nbins; b++) {
        double c = (double)h->bins[b];
        if (c > 0.0 && cum + c >= mass)
            return -h->range + w * (b + (mass - cum) / c);
        cum += c;
    }
    return h->range;
}

void quant_hist_range(const quant_hist *h, double pct, float *lo, float *hi)
{
    if (h->count == 0) {
        *lo = *hi = 0.0f;
        return;
    }
    if (pct >= 100.0 || h->range == 0.0) {
        *lo = h->mm.lo;
        *hi = h->mm.hi;
        return;
    }
    double tail = (1.0 - pct / 100.0) * (double)h->count;
    double a = hist_quantile(h, tail), b = hist_quantile(h, (double)h->count - tail);
    *lo = (float)fmax(a, (double)h->mm.lo);
    *hi = (float)fmin(b, (double)h->mm.hi);
}
