/* train — the training loop shared by teachers, students and fine-tuning:
 * seeded shuffles, mini-batches, loss hook, optimiser and schedule, per-epoch
 * validation, progress, and checkpoints that resume to the same numbers.
 * Depends on util, nn, data. */
#ifndef KD_TRAIN_H
#define KD_TRAIN_H

#include <signal.h>

#include "../data/data.h"
#include "../nn/nn.h"

typedef struct {
    int epochs, batch_size;
    nn_opt_spec opt;
    nn_sched_spec sched;
    uint64_t seed;
} train_opts;

typedef struct {
    int epoch;          /* 1-based */
    double loss;        /* mean training loss of the epoch */
    double train_acc;   /* on the training batches as seen (dropout on) */
    double val_loss, val_acc; /* -1 when there is no validation set */
    double lr;          /* at the end of the epoch */
    double seconds;     /* wall time of the epoch's training */
    double samples_per_s;
} train_epoch;

/* Per-batch loss: writes dlogits (n x k) and returns the mean loss.  idx are
 * the batch's sample indices in the training set (for precomputed teacher
 * logits).  NULL hook = softmax cross-entropy on the labels. */
typedef float (*train_loss_fn)(void *ctx, const float *logits, const uint8_t *labels,
                               const int *idx, int n, int k, float *dlogits);

/* What survives between epochs: enough to resume bit for bit.  Shuffle and
 * dropout streams are derived from (seed, epoch), so they need no saving. */
typedef struct {
    nn_model *model; /* not owned */
    nn_optim *opt;   /* owned by the state: train_state_free */
    int epochs_done;
    double seconds;  /* training wall time so far */
    train_epoch *history; /* epochs_done records, owned; saved in checkpoints */
} train_state;

typedef struct {
    train_loss_fn loss;
    void *loss_ctx;
    /* optional: called with loss_ctx and the 1-based epoch before the
     * epoch's first batch (a loss whose weights follow the epoch: DKD's
     * warm-up; a resumed run calls it with the epoch it resumes at) */
    void (*begin_epoch)(void *loss_ctx, int epoch);
    /* called after every epoch (write metrics, checkpoint); non-zero stops */
    int (*on_epoch)(void *ctx, const train_state *st, const train_epoch *ep, kd_err *e);
    void *cb_ctx;
    /* optional: called after every optimiser step with the learning rate it
     * used (e.g. to step a distillation adapter, or re-apply pruning masks);
     * non-zero stops training with that code */
    int (*on_step)(void *ctx, nn_model *m, float lr, kd_err *e);
    void *step_ctx;
    /* optional tap: when dtap is not NULL, the loss hook has written into it
     * the gradient w.r.t. layer tap's output, which backward adds in */
    int tap;
    float *dtap;
    /* optional: when *cancel becomes non-zero (a signal handler sets it),
     * training stops before the next batch with KD_ECANCELED; the epoch in
     * progress is abandoned, so the last checkpoint stays the resume point */
    const volatile sig_atomic_t *cancel;
    /* optional, data-parallel training (one process of several): shard gives
     * this process's samples [*lo, *hi) of each batch of n; after backward,
     * reduce turns the process's gradient over hi - lo samples into the whole
     * batch's, the same on every process, and sums stats[0..2) (the batch's
     * loss x samples, correct predictions) over the processes; non-zero stops
     * training with that code (on every process at the same batch) */
    void (*shard)(void *ctx, int n, int *lo, int *hi);
    int (*reduce)(void *ctx, nn_model *m, int n_local, int n, double *stats, kd_err *e);
    void *par_ctx;
    FILE *progress; /* NULL = silent */
    int quiet;
    const char *label; /* e.g. "teacher" */
} train_hooks;

int train_state_init(train_state *st, nn_model *m, const train_opts *o, kd_err *e);
void train_state_free(train_state *st);

/* Trains from st->epochs_done to o->epochs.  Sets the model's input
 * normalisation from the training set when starting from epoch 0. */
int train_fit(train_state *st, const train_opts *o, const data_set *tr, const data_set *val,
              const train_hooks *h, kd_err *e);

/* Mean loss and accuracy of m on d (eval mode), in batches of batch. */
int train_evaluate(nn_model *m, const data_set *d, int batch, double *loss, double *acc,
                   kd_err *e);

/* Checkpoint = "KDCK", version, epochs_done, seconds, optimiser state, the
 * model, CRC32.  Written atomically. */
int train_checkpoint_save(const train_state *st, const char *path, kd_err *e);
/* Loads into a fresh state: *st gets a new model (caller frees it with
 * nn_model_free) and optimiser. */
int train_checkpoint_load(const char *path, const train_opts *o, train_state *st, kd_err *e);

#endif
