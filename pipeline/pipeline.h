/* pipeline — runs an experiment: run directory, data, teacher training with
 * per-epoch checkpoints (resume), measurement, result files.
 * Depends on everything below it; only cli/ is above. */
#ifndef KD_PIPELINE_H
#define KD_PIPELINE_H

#include <signal.h>

#include "../config/config.h"
#include "../dist/dist.h"
#include "../data/data.h"

typedef struct {
    const char *out_dir; /* NULL: runs/<name> */
    int resume;          /* continue from the checkpoints found in out_dir */
    int quiet;           /* no progress output */
    FILE *progress;      /* where progress and log lines are echoed (stderr) */
    /* optional: set non-zero (by a signal handler) to stop the run at the next
     * safe point — between batches, models or stages — with KD_ECANCELED;
     * the checkpoints on disk stay the resume point */
    const volatile sig_atomic_t *cancel;
    /* the MPI job this process is a rank of (NULL: one process).  Every rank
     * calls pipeline_run; rank 0 owns the run directory and writes what one
     * process writes, the others run the jobs it hands them */
    dist_comm *dist;
} pipeline_opts;

/* Runs spec end to end; the run directory is written only after the data
 * loaded, and only while this process holds its lock (a second run on the
 * same folder fails at once naming the first's pid).  Returns 0 or an error
 * (e filled); an error after the folder opened is also appended to run.log. */
int pipeline_run(const exp_spec *spec, const pipeline_opts *o, kd_err *e);

/* Loads the data a spec names: train (minus the validation split), val, test. */
int pipeline_load_data(const cfg_data *d, uint64_t seed, data_set *train, data_set *val,
                       data_set *test, kd_err *e);

/* What the data files say for d (IDX headers and labels; a CSV file is read
 * whole): see cfg_data_facts.  0, or the reader's error (a missing file is
 * KD_EIO naming it). */
int pipeline_data_facts(const cfg_data *d, cfg_data_facts *f, kd_err *e);

/* config_load, then the data's facts, then config_load_facts: every rule run
 * enforces once the data is loaded is reported at its key, before anything
 * runs.  `kdbench check` and `kdbench run` both load through this. */
int pipeline_config_load(const char *path, const char *const *overrides, int noverrides,
                         exp_spec *out, kd_err *e);

/* A CRC-32 of a data set's samples and labels: what run.key records for each
 * set (data_loaded.*) and what compare matches test sets by. */
uint32_t pipeline_data_crc(const data_set *d);

/* Loads a test set given on the command line (eval): a fashion-mnist-style
 * folder (t10k files), an images+labels IDX pair, or a CSV file. */
int pipeline_load_eval_data(const char *dir, const char *images, const char *labels,
                            const char *csv, nn_shape shape, data_set *out, kd_err *e);

#endif
