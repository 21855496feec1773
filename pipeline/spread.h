/* pipeline's MPI side, shared by spread.c (rank 0's hand-out of jobs and the
 * protocol) and worker.c (a rank's context and one job).  Never included
 * from outside pipeline/. */
#ifndef KD_PIPELINE_SPREAD_H
#define KD_PIPELINE_SPREAD_H

#include "internal.h"

typedef struct {
    run_ctx r;            /* dir = a private scratch folder */
    pipeline_opts opts;   /* r.o: resume per job, quiet away from rank 0 */
    FILE *echo;           /* stderr with "[rank N] " before each line */
    int made;             /* the scratch folder exists (removed on close) */
    kd_err failed;        /* a setup that failed: every job answers with it */
    pl_rank_times t;      /* its start, data and teacher marks, sent with each result */
} pl_worker;

/* A worker on this rank: the scratch folder, and the data (loaded, or lent
 * by rank 0's run `lend`, whose teacher it uses too).  pl_worker_close
 * undoes what succeeded, even after a failure. */
int pl_worker_open(pl_worker *w, const exp_spec *spec, const pipeline_opts *o, int rank,
                   run_ctx *lend, kd_err *e);
/* The teacher from a model file's bytes. */
int pl_worker_teacher(pl_worker *w, const void *bytes, size_t n, kd_err *e);
void pl_worker_close(pl_worker *w);
/* Runs plan->jobs[job] (its input files already in the scratch folder) and
 * appends its result message to out; 0, or KD_ENOMEM when out could not
 * grow.  The job's own failure travels in the message. */
int pl_worker_run(pl_worker *w, const run_ctx *plan, int job, int resume, kd_buf *out);

/* Another rank's part in data-parallel teacher training (dp.c): the state
 * from rank 0, then train_fit on this rank's shards.  Returns 0 or
 * KD_ECANCELED to go on (rank 0 then says how the run goes), else an error
 * (e set; empty message when rank 0 failed and reports it). */
int pl_dp_worker(pl_worker *w, const exp_spec *spec, dist_comm *d, kd_err *e);

/* A file in a message: name, u64 length, bytes. */
void pl_pack_file(kd_buf *b, const char *name, const uint8_t *p, size_t n);
/* count files from rd into dir (folders made); KD_EFORMAT on a lying message. */
int pl_unpack_files(kd_rd *rd, const char *dir, int count, kd_err *e);

#endif
