/* ONNX files: protobuf-c's parser under onnx/proto's allocation budget, then
 * the import (onnx/import: constant folding, every operator's checks).  A
 * model that imports is run forward on one sample when its activations are
 * small, so what the importer lets through is also what the layers accept. */
#include <stdlib.h>

#include "../onnx/import.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kd_err e = {0};
    onnx_file *f = onnx_file_unpack(data, size, 0, &e);
    if (!f)
        return 0;
    nn_model *m = onnx_import(onnx_file_model(f), 0.5f, 0.25f, &e);
    onnx_file_free(f);
    if (m) {
        fuzz_run_forward(m);
        nn_model_free(m);
    }
    return 0;
}
