/* minmax — the range of a float array for dynamic int8 (per call, per batch):
 * the smallest and largest finite value (NaN and +-inf are skipped, as
 * quant_minmax_update does).  *lo and *hi are updated in place: start them
 * at +inf and -inf; they stay so when nothing is finite.  Equal as numbers
 * to the reference (a zero's sign may differ: no quantizer tells them apart). */
#ifndef KD_COMPRESS_KERNELS_MINMAX_H
#define KD_COMPRESS_KERNELS_MINMAX_H

#include <stddef.h>

#include "../../nn/nn.h"

void kernels_minmax_ref(const float *x, size_t n, float *lo, float *hi);
void kernels_minmax_avx2(const float *x, size_t n, float *lo, float *hi);
/* The fastest for kernels_isa(). */
void kernels_minmax(const float *x, size_t n, float *lo, float *hi);
/* The same split across team t (NULL: the caller) when n is large enough
 * for the hand-off to pay. */
void kernels_minmax_team(nn_team *t, const float *x, size_t n, float *lo, float *hi);

#endif
