/* dist — the only code that calls MPI.  Built without Open MPI (make MPI=0,
 * or no `ompi` pkg-config), every function is the single-process case: rank
 * 0 of 1, collectives are no-ops, point-to-point calls fail.  So the rest of
 * the code has no #ifdefs: a NULL dist_comm is one process.
 * Depends on util only. */
#ifndef KD_DIST_H
#define KD_DIST_H

#include <stddef.h>

#include "../util/util.h"

typedef struct dist_comm dist_comm;

/* 1 when this binary was built with MPI. */
int dist_built_with_mpi(void);
/* 1 when the process was started by mpirun (its environment says so). */
int dist_launched(void);

/* Joins the MPI job (MPI_Init_thread, at least MPI_THREAD_SERIALIZED: one
 * thread at a time may call dist_*).  Call once per process.  Returns NULL
 * with e->code == KD_OK when not launched by mpirun (one process); NULL with
 * e set when launched by mpirun but built without MPI, or init failed. */
dist_comm *dist_open(int *argc, char ***argv, kd_err *e);
/* MPI_Finalize; accepts NULL. */
void dist_close(dist_comm *d);
/* Ends every rank at once (MPI_Abort); a no-op for NULL. */
void dist_abort(dist_comm *d, int code);

int dist_rank(const dist_comm *d); /* 0 for NULL */
int dist_size(const dist_comm *d); /* 1 for NULL */

/* Point to point, bytes.  send blocks until the buffer may be reused.
 * recv waits for a message from `from` (-1: any rank) with `tag` (-1: any),
 * polling with short sleeps rather than spinning a core; *p is a new buffer
 * (kd_free) of *n bytes; src and tag_out may be NULL.  Errors: KD_ERUNTIME. */
int dist_send(dist_comm *d, int to, int tag, const void *p, size_t n, kd_err *e);
int dist_recv(dist_comm *d, int from, int tag, void **p, size_t *n, int *src, int *tag_out,
              kd_err *e);

/* *ready = 1 when a message from `from` with `tag` (-1: any) is waiting. */
int dist_probe(dist_comm *d, int from, int tag, int *ready, kd_err *e);

/* root's bytes to every rank: on root *p and *n are read; elsewhere *p becomes
 * a new buffer (kd_free) of *n bytes.  All ranks must call it. */
int dist_bcast(dist_comm *d, void **p, size_t *n, int root, kd_err *e);
/* x[0..n) (same n everywhere) from root to every rank. */
int dist_bcast_floats(dist_comm *d, float *x, size_t n, int root, kd_err *e);
/* Sum of x over the ranks, into x on every rank.  dist_sum_fast uses
 * MPI_Allreduce (the library picks the order: the same result on every rank,
 * but the order may change with N or the algorithm); dist_sum_ordered
 * gathers to rank 0, adds in rank order 0, 1, ..., N-1 in float, and
 * broadcasts: bit-identical for a given N run after run. */
int dist_sum_fast(dist_comm *d, float *x, size_t n, kd_err *e);
int dist_sum_ordered(dist_comm *d, float *x, size_t n, kd_err *e);
/* Sum of an int or double over ranks, on every rank. */
int dist_sum_int(dist_comm *d, int *x, kd_err *e);
int dist_sum_double(dist_comm *d, double *x, size_t n, kd_err *e);
int dist_barrier(dist_comm *d, kd_err *e);

#endif
