/* Model files (.kdm/.kdbm): nn's loader with compress's kinds, so every
 * compressed payload (CSR, int8, int4, int8 CSR, fake-quant) is reached.  A
 * model that loads is run forward on one sample when its activations are
 * small, so what the loader let through is also what the kernels accept.
 * Each input is loaded as it is and with its CRC trailer fixed. */
#include <stdlib.h>

#include "../compress/compress.h"
#include "fuzz.h"

static void load(const char *path)
{
    int nk;
    const nn_layer_ops *const *kinds = compress_kinds(&nk);
    kd_err e = {0};
    nn_model *m = nn_model_load_with(path, kinds, nk, &e);
    if (m) {
        fuzz_run_forward(m);
        nn_model_free(m);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[512];
    if (!path[0])
        fuzz_path(path, sizeof path, "model.kdm");
    fuzz_with_crc(path, data, size, load);
    return 0;
}
