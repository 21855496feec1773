/* The kinds' private shared declarations; never included from outside
 * compress/kinds/. */
#ifndef KD_COMPRESS_KINDS_INTERNAL_H
#define KD_COMPRESS_KINDS_INTERNAL_H

#include "../internal.h"

/* Setup of a dense-shaped quantized kind: weights in the payload, the bias
 * in the flat parameters when bias != 0. */
int compress_qsetup(nn_layer *l, int bias, kd_err *e);
/* Inference-only backward: bias gradient (when the bias is flat), dx = 0. */
void compress_qbackward(nn_layer *l, const float *x, const float *y, const float *dy, float *dx,
                        int n, const nn_ctx *c);
double compress_qmacs(const nn_layer *l);
void compress_qrelease(nn_layer *l); /* kd_free(l->priv) */
#endif
