/* ONNX files: protobuf-c's parser under onnx/proto's allocation budget, then
 * the import (onnx/import: constant folding, every operator's checks).  A
 * model that imports is run forward on one sample when its activations are
 * small, so what the importer lets through is also what the layers accept. */
#include <stdlib.h>

#include "../onnx/import.h"
#include "fuzz.h"

#define MAX_ACT ((size_t)1 << 20) /* floats over all layer outputs */

static void run_forward(nn_model *m)
{
    size_t act = nn_shape_size(m->in);
    for (int i = 0; i < m->nlayers; i++)
        act += nn_shape_size(m->layers[i].out);
    if (act > MAX_ACT)
        return;
    size_t n = nn_shape_size(m->in);
    float *x = malloc((n ? n : 1) * sizeof *x);
    if (!x)
        return;
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(i % 7) * 0.25f - 0.5f;
    nn_ctx c = {0};
    nn_model_forward(m, x, 1, &c);
    free(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kd_err e = {0};
    onnx_file *f = onnx_file_unpack(data, size, 0, &e);
    if (!f)
        return 0;
    nn_model *m = onnx_import(onnx_file_model(f), 0.5f, 0.25f, &e);
    onnx_file_free(f);
    if (m) {
        run_forward(m);
        nn_model_free(m);
    }
    return 0;
}
