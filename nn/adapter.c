/* The linear adapter of hint distillation: maps a student feature to the
 * shape of a teacher feature.  Only the spec lives here; the caller builds it
 * into a one-layer model like any other. */
#include <string.h>

#include "nn.h"

int nn_adapter_spec(nn_shape from, nn_shape to, nn_layer_spec *out, kd_err *e)
{
    memset(out, 0, sizeof *out);
    out->init = NN_INIT_XAVIER; /* linear: no relu after it */
    if (from.h == to.h && from.w == to.w && from.h * from.w > 1) {
        /* per-position channel mixing keeps the adapter small */
        out->kind = NN_CONV2D;
        out->filters = to.c;
        out->kernel = 1;
        out->stride = 1;
        return KD_OK;
    }
    double nw = (double)nn_shape_size(from) * (double)nn_shape_size(to);
    if (nw > NN_ADAPTER_MAX_PARAMS)
        return kd_err_set(e, KD_ECONFIG,
                          "a linear adapter from %dx%dx%d to %dx%dx%d would have %.0f weights "
                          "(limit %u); pick layers of the same height and width, or smaller ones",
                          from.c, from.h, from.w, to.c, to.h, to.w, nw, NN_ADAPTER_MAX_PARAMS);
    out->kind = NN_DENSE;
    out->units = (int)nn_shape_size(to);
    return KD_OK;
}
