/* data — datasets in memory: IDX (raw or .gz via zlib) and CSV readers, a
 * seeded validation split, and batch assembly with normalisation.
 * Depends on util and nn (for nn_rng and nn_shape). */
#ifndef KD_DATA_H
#define KD_DATA_H

#include <stdint.h>

#include "../nn/nn.h"

/* A labelled set.  Exactly one of x8 (uint8 pixels, IDX) or xf (floats, CSV)
 * is non-NULL; n samples of shape (c,h,w), labels y[i] in [0, nclasses). */
typedef struct {
    int n;
    nn_shape shape;
    int nclasses;
    uint8_t *x8;
    float *xf;
    uint8_t *y;
} data_set;

void data_set_free(data_set *d); /* frees the arrays; accepts a zeroed set */

/* Reads an IDX images file (magic 0x00000803, u8, dims n,h,w) and an IDX labels
 * file (0x00000801, n) into out, raw or gzip (detected by content, not name).
 * Checks magic, dimensions, counts and actual length: a truncated, oversized or
 * lying file is refused with an error naming the file.  max_n > 0 keeps only
 * the first max_n samples (the rest is still read and checked).  nclasses =
 * max label + 1 (at least 2) over the whole labels file, so a subset keeps the
 * full class count.  On failure out is zeroed. */
int data_idx_load(const char *images, const char *labels, int max_n, data_set *out, kd_err *e);

/* What data_idx_load would give for n, shape and nclasses, from the two
 * headers and the labels only (no pixels are read; the arrays stay NULL):
 * cheap enough for `kdbench check`.  On failure out is zeroed. */
int data_idx_peek(const char *images, const char *labels, int max_n, data_set *out, kd_err *e);

/* Reads a CSV file, one sample per line: label, then features (floats).  An
 * optional header line (first field not a number) is skipped.  Every row must
 * have the same number of features; errors name FILE:LINE.  shape: the
 * per-sample shape to give the features (c*h*w must equal the feature count),
 * or {0,0,0} for (features,1,1).  Labels are integers 0..255; NaN and inf
 * features are refused; blank lines and CRLF endings are accepted.  max_n > 0
 * stops after max_n rows; nclasses = max label + 1 (at least 2) over the rows
 * read.  On failure out is zeroed. */
int data_csv_load(const char *path, nn_shape shape, int max_n, data_set *out, kd_err *e);

/* Splits src into train and val (val_fraction of it, stratified not required),
 * by a seeded permutation from NN_STREAM_SPLIT; each part keeps file order.
 * val gets round(n * val_fraction) samples (possibly 0; arrays still non-NULL).
 * On success src is consumed (moved) and left zeroed; on failure src is
 * untouched and train, val are zeroed. */
int data_split(data_set *src, float val_fraction, uint64_t seed, data_set *train,
               data_set *val, kd_err *e);

/* Mean and standard deviation of the inputs after scaling (x/255 for uint8),
 * over the whole set; used as the model's preprocessing.  A constant (or
 * empty) set gets std = 1, so data_batch never divides by zero. */
void data_stats(const data_set *d, float *mean, float *std);

/* Fills out (n samples, NCHW floats) and labels for samples idx[0..n):
 * x' = (x/255 - mean)/std for uint8 data, (x - mean)/std for floats.
 * labels may be NULL. */
void data_batch(const data_set *d, const int *idx, int n, float mean, float std, float *out,
                uint8_t *labels);

/* The Debian dataset-fashion-mnist location. */
#define DATA_FASHION_DIR "/usr/share/datasets/fashion-mnist"

#endif
