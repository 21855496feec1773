/* config — the only code that includes <yaml.h>.  Reads an experiment YAML
 * into a typed, validated exp_spec with every default filled in; applies
 * --set overrides; reports every problem as FILE:LINE:COLUMN naming the key.
 * Depends on util and nn (layer specs and shape checks). */
#ifndef KD_CONFIG_H
#define KD_CONFIG_H

#include <stdio.h>

#include "../nn/nn.h"

#define CFG_MAX_LAYERS 64
#define CFG_PATH_MAX 1024

typedef struct {
    int line, col; /* 1-based; 0 when the value is a default */
} cfg_pos;

typedef enum { CFG_DATA_FASHION = 0, CFG_DATA_IDX, CFG_DATA_CSV } cfg_data_kind;

typedef struct {
    cfg_data_kind kind;       /* key `dataset`: fashion-mnist | idx | csv */
    char dir[CFG_PATH_MAX];   /* fashion-mnist: folder (default DATA_FASHION_DIR) */
    /* idx: four paths; csv: train_csv/test_csv */
    char train_images[CFG_PATH_MAX], train_labels[CFG_PATH_MAX];
    char test_images[CFG_PATH_MAX], test_labels[CFG_PATH_MAX];
    char train_csv[CFG_PATH_MAX], test_csv[CFG_PATH_MAX];
    nn_shape shape;           /* `shape: [c, h, w]`; fashion-mnist default [1,28,28] */
    float val_fraction;       /* default 0.1, [0, 0.9] */
    int train_subset;         /* 0 = all; else first N training samples */
    int test_subset;          /* 0 = all */
    cfg_pos pos;              /* of the `data` key */
    cfg_pos shape_pos;        /* of the `shape` value ({0,0}: default or --set) */
} cfg_data;

typedef struct {
    int epochs;               /* required, [1, 10000] */
    int batch_size;           /* default 128, [1, 65536] */
    nn_opt_spec opt;          /* `optimizer: {kind: sgd|adamw, lr, momentum, nesterov,
                                 weight_decay, beta1, beta2, eps}` */
    nn_sched_spec sched;      /* `schedule: {kind: constant|step|cosine, warmup_epochs,
                                 step_epochs, gamma, min_lr}` */
    cfg_pos pos;
} cfg_train;

typedef struct {
    /* `model: PATH`: a saved model (teacher only); then nlayers = 0 and train
     * is unset */
    char model_path[CFG_PATH_MAX];
    cfg_pos model_pos;
    nn_layer_spec layers[CFG_MAX_LAYERS];
    cfg_pos layer_pos[CFG_MAX_LAYERS]; /* where each layer item starts */
    int nlayers;
    cfg_train train;
    cfg_pos pos;
} cfg_model;

#define CFG_MAX_STUDENTS 8
#define CFG_MAX_SEEDS 16

/* FitNets-style hint: the student's layer `student` is matched through a
 * learned linear adapter to the teacher's layer `teacher` (L2, times weight). */
typedef struct {
    char student[32], teacher[32]; /* layer names; student[0] == 0: no hint */
    float weight;                  /* default 1, (0, 1000] */
    cfg_pos pos;                   /* of the hint mapping */
    cfg_pos teacher_pos;           /* of the teacher layer name (checked late for model files) */
} cfg_hint;

typedef struct {
    char name[64];            /* required, unique; [A-Za-z0-9_.-]+ */
    cfg_model model;          /* layers + train (same keys as the teacher) */
    int nseeds;               /* `seeds: [..]`, default [seed] */
    uint64_t seeds[CFG_MAX_SEEDS];
    float temperature;        /* distill.temperature, default 4, (0, 100] */
    float alpha;              /* distill.alpha: weight of the soft loss, default 0.9, [0, 1] */
    cfg_hint hint;            /* distill.hint, optional */
    cfg_pos pos;
} cfg_student;

typedef struct {
    char file[CFG_PATH_MAX]; /* the config file path (for messages) */
    char name[128];          /* required; [A-Za-z0-9_.-]+ (used as the run folder name) */
    uint64_t seed;           /* default 1 */
    int threads;             /* default 0 = all cores; [0, 256] */
    cfg_data data;
    char cache_dir[CFG_PATH_MAX]; /* trained teachers by config hash; default runs/cache */
    cfg_model teacher;       /* required */
    cfg_student students[CFG_MAX_STUDENTS]; /* optional `students:` list */
    int nstudents;
} exp_spec;

/* Reads path (at most 1 MiB) into out: parses the YAML, applies the overrides
 * ("dotted.key=value", e.g. "teacher.train.epochs=1", "teacher.layers.0.units=64"
 * or "teacher.layers[0].units=64"; a value starting with [ { " or ' is YAML flow,
 * e.g. "data.shape=[3,32,32]") to the parsed tree, then validates the result once,
 * so an override may also supply a key the file lacks.  Returns 0, KD_ECONFIG
 * (e: FILE:LINE:COL and a message naming the key by dotted path; for an override
 * e->file is "--set", line 0, and the message quotes it), KD_EIO or KD_ENOMEM.
 * out is zeroed on failure.  Paths in the spec are kept as written.
 * README.md (Config reference) lists every key, default and range. */
int config_load(const char *path, const char *const *overrides, int noverrides,
                exp_spec *out, kd_err *e);

/* Same from a string (tests); name is used as the file name in messages.
 * e may be NULL. */
int config_load_string(const char *name, const char *text, size_t len,
                       const char *const *overrides, int noverrides, exp_spec *out, kd_err *e);

/* Writes the resolved spec (every key with its effective value, layers in
 * flow style) as YAML that config_load reads back to an equal spec (positions
 * and file name aside).  Returns 0 or KD_EIO if f reports an error. */
int config_dump(const exp_spec *s, FILE *f);

#endif
