/* The MPI test runner: started by `mpirun -np 2` (make check-suite), MPI
 * joined once per process, so Check must not fork (CK_FORK=no).  Every rank
 * runs every test (the collectives need all of them); rank 0 prints, and
 * any rank's failure fails mpirun. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "../../dist/dist.h"
#include "../kdtest.h"
#include "mpitest.h"

#define KD_SUITE(fn) Suite *fn(void);
#include "suites.inc"
#undef KD_SUITE

static dist_comm *the_comm;

dist_comm *kdt_mpi(void)
{
    return the_comm;
}

int main(int argc, char **argv)
{
    kd_err e = {0};
    the_comm = dist_open(&argc, &argv, &e);
    if (!the_comm) {
        fprintf(stderr, "kdtest-mpi: %s\n", e.code ? e.msg : "not started by mpirun");
        return EXIT_FAILURE;
    }
    const char *fork = getenv("CK_FORK");
    if (!fork || strcmp(fork, "no") != 0) {
        fprintf(stderr, "kdtest-mpi: run with CK_FORK=no (MPI starts once per process)\n");
        dist_close(the_comm);
        return EXIT_FAILURE;
    }
    int rank = dist_rank(the_comm);
    if (rank == 0)
        kdt_log_open();
    SRunner *sr = srunner_create(NULL);
#define KD_SUITE(fn) srunner_add_suite(sr, fn());
#include "suites.inc"
#undef KD_SUITE
    srunner_run_all(sr, rank == 0 ? CK_NORMAL : CK_SILENT);
    int failed = srunner_ntests_failed(sr);
    if (failed && rank != 0)
        fprintf(stderr, "kdtest-mpi: %d test(s) failed on rank %d\n", failed, rank);
    if (rank == 0)
        kdt_log_summary(srunner_ntests_run(sr), failed);
    srunner_free(sr);
    dist_close(the_comm);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
