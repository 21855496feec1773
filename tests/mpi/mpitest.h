/* Shared by the MPI tests: the communicator main.c opened. */
#ifndef KD_TEST_MPITEST_H
#define KD_TEST_MPITEST_H

#include <string.h>

#include "../../dist/dist.h"

dist_comm *kdt_mpi(void);

#endif
