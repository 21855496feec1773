/* Checkpoints: train's loader, once for each optimiser (the file must match
 * the configuration's), with room for any epoch count; as it is and with
 * its CRC trailer fixed. */
#include "../train/train.h"
#include "fuzz.h"

static void load(const char *path)
{
    const nn_opt_kind kinds[] = {NN_OPT_SGD, NN_OPT_ADAMW};
    for (int k = 0; k < 2; k++) {
        train_opts o = {.epochs = 1000, .batch_size = 16, .seed = 1};
        o.opt = (nn_opt_spec){.kind = kinds[k], .lr = 0.01f, .momentum = 0.9f};
        train_state st;
        kd_err e = {0};
        if (train_checkpoint_load(path, &o, &st, &e) == KD_OK) {
            nn_model_free(st.model);
            train_state_free(&st);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[512];
    if (!path[0])
        fuzz_path(path, sizeof path, "ck.kdck");
    fuzz_with_crc(path, data, size, load);
    return 0;
}
