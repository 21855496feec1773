/* CSV data sets: the whole file with the shape from the rows, then with a
 * fixed shape and a row limit. */
#include "../data/data.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[512];
    if (!path[0])
        fuzz_path(path, sizeof path, "set.csv");
    fuzz_write(path, data, size);
    const nn_shape shapes[2] = {{0, 0, 0}, {1, 2, 2}};
    const int max_n[2] = {0, 3};
    for (int k = 0; k < 2; k++) {
        data_set d;
        kd_err e = {0};
        if (data_csv_load(path, shapes[k], max_n[k], &d, &e) == KD_OK)
            data_set_free(&d);
    }
    return 0;
}
