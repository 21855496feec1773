/* The one place that talks to OpenBLAS about threads. */
#include <cblas.h>
#include <unistd.h>

#include "nn.h"

int nn_set_threads(int n)
{
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    openblas_set_num_threads(n);
    return openblas_get_num_threads();
}

const char *nn_blas_info(void) { return openblas_get_config(); }

int nn_threads(void) { return openblas_get_num_threads(); }

int nn_blas_serial_begin(void)
{
    int prev = openblas_get_num_threads();
    if (prev > 1)
        openblas_set_num_threads(1);
    return prev;
}

void nn_blas_serial_end(int prev)
{
    if (prev > 1)
        openblas_set_num_threads(prev);
}
