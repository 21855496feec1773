/* pipeline internals: the state of one run shared by its stages (run.c holds
 * the run directory and result files, teacher_stage.c and students.c the
 * training stages).  Never included from outside pipeline/. */
#ifndef KD_PIPELINE_INTERNAL_H
#define KD_PIPELINE_INTERNAL_H

#include "../compress/compress.h"
#include "../measure/measure.h"
#include "../reports/reports.h"
#include "../teacher/teacher.h"
#include "pipeline.h"

#define PL_MAX_ROWS 64
#define PL_PATH 3100

/* One training curve, rewritten into metrics.jsonl after every epoch. */
typedef struct {
    char model[96];
    uint64_t seed;
    train_epoch *hist; /* owned copy */
    int n;
} pl_curve;

/* One job an MPI run hands to a rank (jobs.c): a student in one mode with
 * one seed, a compress variant with one seed, or the sensitivity sweep. */
typedef enum { PL_JOB_STUDENT, PL_JOB_VARIANT, PL_JOB_SENSITIVITY } pl_job_kind;
/* What a job found that rank 0 would otherwise work out again after the jobs:
 * its model's test accuracy (a student; a variant's later seed), a
 * student's training seconds and epochs.  ok: filled. */
typedef struct {
    double acc, train_s;
    int epochs, ok;
} pl_job_outcome;
typedef struct {
    pl_job_kind kind;
    int index, mode, k; /* student or variant index; student mode (0 scratch); seed index */
    int dep;            /* the job whose model this one starts from, or -1 */
    int state;          /* PL_JOB_TODO, _RUNNING, _DONE */
    int rank;           /* the rank that ran it */
    pl_curve *curves;   /* the training curves it sent back (owned), for the replay */
    int ncurves;
    measure_result mr;  /* a first seed's model, measured where it was made */
    int measured;
    pl_job_outcome out; /* sent back with it */
    double t0;          /* when rank 0 handed it out */
    double prio;        /* its estimated cost plus its longest chain of dependants */
} pl_job;
enum { PL_JOB_TODO, PL_JOB_RUNNING, PL_JOB_DONE };

/* timeline.c: when a rank did what (wall-clock seconds, 0: not yet). */
typedef struct {
    double start, data, teacher; /* the process began, its data loaded, its teacher in hand */
    double busy, first, last;    /* its jobs: seconds in them, the first start, the last end */
    int njobs;
} pl_rank_times;
typedef struct {
    double origin;         /* rank 0's process start */
    double phase0, phase1; /* rank 0: the MPI job phase began, ended */
    double teacher_row;    /* rank 0: seconds measuring the teacher in the phase */
    pl_rank_times *ranks;  /* [nranks] on rank 0 (owned) */
    int nranks;
} pl_timeline;

/* Everything one run holds; lives on pipeline_run's stack. */
typedef struct {
    const exp_spec *spec;
    const pipeline_opts *o;
    char dir[PL_PATH - 100];
    int lock_fd; /* the run folder's lock (kd_dir_lock), -1 before */
    kd_log log;
    int threads; /* in use */
    data_set train, val, test;
    pl_curve *curves;
    int ncurves;
    rep_row rows[PL_MAX_ROWS];
    int nrows;
    /* the model in training: its checkpoint and curve; and, with a hint, the
     * adapter state saved beside it (before it, so the pair stays consistent) */
    const char *ckpt_path;
    int curve;
    const char *adapter_ckpt;
    train_state *adapter_state;
    nn_model *teacher; /* trained or loaded, for the students; owned by the run */
    float *tlogits;    /* the teacher's logits on the training set, once; owned */
    /* the run's jobs (stages.c): weights, the one running, when the first began */
    double *job_work; /* owned */
    int njobs, job;
    double jobs_t0;
    char stage_label[128]; /* "[k/N] what": the running job's progress label */
    /* MPI (jobs.c, spread.c): this process's rank; on rank 0 the jobs the
     * ranks ran (NULL in a one-process run); a worker's context borrows
     * its data, teacher and logits from rank 0's run when `borrowed` */
    int rank;
    pl_job *jobs;
    int npj;
    int borrowed;
    int workers_waiting; /* rank 0: the other ranks wait for jobs or the end */
    int dp_sent;         /* rank 0: the data-parallel teacher's state was broadcast */
    int workers_gone;    /* rank 0: the other ranks were told the run failed */
    pl_timeline tl;      /* rank 0 */
    struct {             /* the teacher's row, not yet measured (teacher_stage.c) */
        char path[PL_PATH];
        double train_s;
        int epochs, pending;
    } trow;
} run_ctx;

/* ---- passes shared between variants (pass_share.c) ------------------------------
 * Variants whose passes begin alike from the same source and seed (make run's
 * prune90_int8 and prune90_shared: the same prune and fine-tuning, then int8
 * or shared values) compute that beginning once: the first keeps its state
 * after the shared passes, the later ones start there.  Training is
 * deterministic, so their files are the bytes they would be otherwise
 * (tests/pipeline/test_reuse.c).  Only prune and finetune passes are shared,
 * and only when one of them trains.  One slot, within one process: a variant
 * run on another MPI rank, or kept from an interrupted run, computes its
 * passes itself. */
typedef struct {
    const cfg_variant *v; /* whose passes made it (NULL: empty) */
    uint64_t seed;
    int npasses;          /* v's first npasses passes applied */
    /* masked and of the source's shape: the parameters the mask keeps, in
     * order (every other one is 0), and the buffers (batchnorm statistics):
     * 90% pruned, a tenth of the model; else m, the model without gradients */
    float *kept, *buffers;
    nn_model *m;
    compress_mask *mask; /* may be NULL */
    int sparse;          /* a magnitude pass ran */
} pl_prefix;
void pl_prefix_clear(pl_prefix *p);
/* The most passes a variant after v with seed among its seeds shares with v
 * (0: none worth keeping). */
int pl_prefix_wanted(const exp_spec *s, const cfg_variant *v, uint64_t seed);
/* Keeps the state after v's first n passes (model m, mask, sparse) in p. */
int pl_prefix_keep(pl_prefix *p, const cfg_variant *v, uint64_t seed, int n, const nn_model *m,
                   const compress_mask *mask, int sparse, kd_err *e);
/* Whether v with seed may start from p (p NULL or empty: no). */
int pl_prefix_fits(const pl_prefix *p, const cfg_variant *v, uint64_t seed);
/* Starts v (fitting p) from it: *m becomes a clone of p->m, or, when p keeps
 * weights only, *m must be v's source freshly loaded and gets them back; the
 * mask is copied to *mask, the shared passes' curves are copied under v's
 * name and the log says so (label: the variant and seed). */
int pl_prefix_take(run_ctx *r, const pl_prefix *p, const cfg_variant *v, uint64_t seed,
                   const char *label, nn_model **m, compress_mask **mask, int *sparse, kd_err *e);

/* dir/name into buf.  Cannot truncate: pl_open_run_dir bounds dir, and
 * every name is a short constant or a config name of bounded length. */
void pl_path(const run_ctx *r, const char *name, char *buf, size_t n);
/* snprintf into a path buffer where a cut path is an error (KD_ERUNTIME,
 * e set, naming the start of the path), never a file somewhere else. */
int pl_pathf(kd_err *e, char *buf, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Creates and locks the run folder; with --resume, refuses a config whose
 * run key differs (KD_ECONFIG naming the keys) and removes stale temporary
 * files; opens run.log, writes env.json, config.yaml and run.key. */
int pl_open_run_dir(run_ctx *r, kd_err *e);
/* The paths that differ between two run keys ("path=value" lines, NUL-
 * terminated), keys no byte depends on (name, cache_dir, report.*) left out,
 * as "a.b, c" into list (the first 12); returns how many differ. */
int pl_key_diff(const char *old_key, const char *new_key, char *list, size_t n);
/* A line in run.log and on stderr, even with --quiet. */
void pl_warn(run_ctx *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* KD_ECANCELED (e set) once the run was asked to stop, else KD_OK. */
int pl_cancelled(const run_ctx *r, kd_err *e);
/* Starts a new curve named model (seed recorded); returns its index or -1. */
int pl_curve_add(run_ctx *r, const char *model, uint64_t seed);
/* A copy of the curve named from (with that seed) named to; KD_OK when
 * there is none to copy, KD_ENOMEM (e set) when out of memory. */
int pl_curve_copy(run_ctx *r, const char *from, uint64_t seed, const char *to, kd_err *e);
/* Rewrites metrics.jsonl from every curve. */
int pl_write_metrics(run_ctx *r, kd_err *e);
/* Copies st's history into the current curve (r->curve) and rewrites metrics.jsonl. */
int pl_curve_record(run_ctx *r, const train_state *st, kd_err *e);
/* The train_fit on_epoch hook: log line, curve, metrics, checkpoint(s). */
int pl_on_epoch(void *ctx, const train_state *st, const train_epoch *ep, kd_err *e);
/* A fresh state for cm, or (resume and a checkpoint at r->ckpt_path) the
 * checkpointed one; *resumed tells which. */
int pl_start_state(run_ctx *r, const cfg_model *cm, const train_opts *to, uint64_t seed,
                   int resume, train_state *st, int *resumed, kd_err *e);
/* Fills a row's measured fields. */
void pl_row_from(rep_row *row, const measure_result *m, double train_s);
/* A new row (NULL when full). */
rep_row *pl_row_add(run_ctx *r, const char *name, const char *role);
/* Mean and sample standard deviation (0 for one value) of x[0..n). */
void pl_mean_std(const double *x, int n, double *mean, double *std);
/* The row's seed_list and accuracy_per_seed: "1 2 3", "0.8976 0.8981 ..." */
void pl_row_seed_lists(rep_row *row, const uint64_t *seeds, const double *acc, int n);

/* The teacher's logits for every training sample, computed on first use
 * (and logged); a view owned by the run, or NULL with e set. */
const float *pl_teacher_logits(run_ctx *r, kd_err *e);

/* compress's specs for a pass (overrides copied into ov / qo, which must
 * hold CFG_MAX_OVERRIDES and outlive the spec). */
compress_prune_spec pl_prune_spec(const cfg_pass *p, compress_override *ov);
compress_quant_spec pl_quant_spec(const cfg_pass *p, compress_qoverride *qo);

/* The jobs of the run (stages.c), counted and weighed from the spec once the
 * data is loaded: 0 or KD_ENOMEM. */
int pl_stages_plan(run_ctx *r, kd_err *e);
/* The next job begins: logs "[k/N] what (about MM:SS left)" (the estimate
 * once a job is done) and returns that label for its progress bar, a view
 * into r valid until the next call. */
const char *pl_stage_begin(run_ctx *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The running job turned out to cost about this much (a cached teacher:
 * only its measurement), in the weights' units: see pl_stage_measure_work. */
void pl_stage_rework(run_ctx *r, double work);
double pl_stage_measure_work(const run_ctx *r, const nn_model *m);

/* ---- jobs (jobs.c): the run cut into independent jobs for MPI ranks ---- */
/* The jobs of spec in dependency order (students, variants, sensitivity),
 * each with its priority from the stages' cost estimates when r has them
 * (rank 0); 0 or KD_ENOMEM. */
int pl_jobs_plan(run_ctx *r, kd_err *e);
void pl_jobs_free(run_ctx *r);
/* The rank that ran this job and sent its files back (its files are in the
 * run directory), or -1: the stage then runs it here, as one process does. */
int pl_job_delivered(const run_ctx *r, pl_job_kind kind, int index, int mode, int k);
/* A delivered first-seed job's measurement (*mr) for its row: 1, or 0 when
 * the stage measures the model itself. */
int pl_job_measured(const run_ctx *r, pl_job_kind kind, int index, int mode, measure_result *mr);
/* The job's files relative to the run directory: own = what it writes,
 * else what it reads (its dependency's model).  Returns how many (<= 3). */
int pl_job_files(const run_ctx *r, const pl_job *j, int own, char names[][PL_PATH / 2]);
/* Runs one job in r (a worker's context); *out filled where the job knows it. */
int pl_job_run(run_ctx *r, const pl_job *j, pl_job_outcome *out, kd_err *e);
/* A delivered job's outcome (*o): 1, or 0 when there is none (the stage
 * works it out itself, as one process does). */
int pl_job_outcome_of(const run_ctx *r, pl_job_kind kind, int index, int mode, int k,
                      pl_job_outcome *o);
/* A short name: "small/kd seed 2", "prune90 seed 1", "sensitivity". */
void pl_job_name(const run_ctx *r, const pl_job *j, char *buf, size_t n);
/* A delivered job's curves appended to the run's (metrics.jsonl order as in
 * one process); 0 or KD_ENOMEM. */
int pl_job_take_curves(run_ctx *r, pl_job_kind kind, int index, int mode, int k, kd_err *e);

/* Per-job entry points (students.c, compress_stage.c). */
int pl_student_job(run_ctx *r, int index, int mode, int k, pl_job_outcome *out, kd_err *e);
int pl_variant_job(run_ctx *r, int index, int k, pl_job_outcome *out, kd_err *e);
int pl_sensitivity_job(run_ctx *r, kd_err *e);
/* compressed/<name with '/' as '_'>[-seed<N>].kdm, relative to the run dir */
void pl_variant_file(const cfg_variant *v, int k, char *buf, size_t n);

/* ---- spread.c: the run on MPI ranks ---- */
/* Rank 0, after the teacher stage (rc: how it went; a failure is passed on
 * to the other ranks and returned): sends the teacher to the other ranks,
 * runs every job on whichever rank is free (itself included), writes the
 * files that come back into the run directory.  A one-process run returns
 * at once. */
int pl_spread_jobs(run_ctx *r, int rc, kd_err *e);
/* Every other rank: loads the data, takes the teacher, runs the jobs it is
 * handed until rank 0 says stop; returns the run's status as rank 0 tells
 * it (e->code set, message empty: rank 0 reports it). */
int pl_spread_worker(const exp_spec *spec, const pipeline_opts *o, kd_err *e);
/* Rank 0, when the run fails before or after the jobs: tells the other ranks
 * to stop with rc (0 after a run that went well). */
void pl_spread_stop(run_ctx *r, int rc);

/* ---- timeline.c: "timeline" lines in run.log ---- */
double pl_wall(void);       /* CLOCK_REALTIME, seconds */
double pl_proc_start(void); /* when this process was started, on pl_wall's clock */
/* "timeline +T s [rank k] what", T from r->tl.origin. */
void pl_tl_mark(run_ctx *r, int rank, double wall, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Rank k's start, data and teacher marks (once per rank, k > 0: rank 0 marks
 * its own as they happen); a job it ran. */
void pl_tl_setup(run_ctx *r, int k, const pl_rank_times *t);
void pl_tl_job(run_ctx *r, int k, int job, double start, double secs);
/* Rank 0 at the end (end: pl_wall()): the run's time against the ideal. */
void pl_tl_summary(run_ctx *r, double end);

/* ---- dp.c: data-parallel teacher training ---- */
/* h's shard and reduce for this rank of d (ctx: kd_free after training);
 * reduce sums gradients in rank order, or by MPI_Allreduce when fast, and
 * stops every rank at the same batch once cancel is set on any. */
int pl_dp_hooks(dist_comm *d, int fast, const volatile sig_atomic_t *cancel, train_hooks *h,
                void **ctx, kd_err *e);
/* teacher.train.parallel: data, a teacher to train, and more than one rank. */
int pl_dp_on(const exp_spec *spec, const dist_comm *d);
/* Rank 0, before train_fit: sends st to the other ranks and sets h's
 * shard/reduce (ctx: kd_free after training).  A failure is sent too. */
int pl_dp_start(run_ctx *r, const train_state *st, train_hooks *h, void **ctx, kd_err *e);
/* Rank 0, when the teacher stage failed before pl_dp_start: tells the others. */
void pl_dp_fail(run_ctx *r, int rc);
/* Rank 0, when data-parallel training failed midway (the others wait in a
 * reduce): the error in run.log and on stderr, then MPI_Abort on all ranks. */
void pl_dp_abort(run_ctx *r, const kd_err *e);

/* The stages. */
int pl_stage_teacher(run_ctx *r, kd_err *e);
/* The teacher's row (measured), when pl_stage_teacher left it for later (on
 * MPI ranks); else KD_OK at once. */
int pl_stage_teacher_row(run_ctx *r, kd_err *e);
int pl_stage_students(run_ctx *r, kd_err *e);
int pl_stage_compress(run_ctx *r, kd_err *e);
/* serve.loadtest: serving.json/.csv (serving_stage.c); after results.json. */
int pl_stage_serving(run_ctx *r, kd_err *e);

#endif
