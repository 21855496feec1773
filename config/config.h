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
    /* teacher only, under mpirun: `parallel: data` trains on every rank, each
     * on a shard of every batch; `reduce: ordered` (default: gradients summed
     * on rank 0 in rank order, bit-identical run after run for a given N) or
     * `fast` (MPI_Allreduce, the library's order) */
    int parallel;             /* 0 none, 1 data */
    int reduce_fast;
    cfg_pos pos;
} cfg_train;

typedef struct {
    /* `model: PATH`: a saved model (teacher only); then nlayers = 0 and train
     * is unset */
    char model_path[CFG_PATH_MAX];
    cfg_pos model_pos;
    /* `onnx: PATH` instead of `model:` (teacher only): an ONNX model imported
     * at load (model_path is PATH), whose inputs are pixels x/255, then
     * (x - input_mean) / input_std (`input_mean` default 0, `input_std`
     * default 1, > 0) */
    int onnx;
    float input_mean, input_std;
    nn_layer_spec layers[CFG_MAX_LAYERS];
    cfg_pos layer_pos[CFG_MAX_LAYERS]; /* where each layer item starts */
    int nlayers;
    int nclasses; /* outputs of the last layer (0 for a model file) */
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

#define CFG_MAX_MODES 6

typedef enum { CFG_METHOD_KD = 0, CFG_METHOD_DKD, CFG_METHOD_DIST } cfg_method;

/* One distilled mode of a student: the logit loss and its parameters (the
 * keys of one method only; defaults per method).  The same values as
 * student_distill_opts. */
typedef struct {
    char name[24];            /* the result row is <student>/<name>: "distilled" without a
                                 modes list; else `name:`, default the method (+ "-std") */
    cfg_method method;        /* `method: kd | dkd | dist`, default kd */
    float temperature;        /* kd, dkd: default 4; dist: default 1; (0, 100] */
    float alpha;              /* kd: soft weight, default 0.9, [0, 1]; dkd: TCKD weight,
                                 default 1, [0, 1000] */
    float beta;               /* dkd: NCKD weight, default 8; dist: inter-class, default 1;
                                 [0, 1000] */
    float gamma;              /* dist: intra-class weight, default 1, [0, 1000] */
    int warmup;               /* dkd: epochs of linear warm-up of its weight, default 0 (none) */
    int standardize;          /* kd, dkd: z-score the logits first, default false */
    cfg_pos pos;
} cfg_distill_mode;

/* "kd", "dkd" or "dist". */
const char *config_distill_method(cfg_method m);

typedef struct {
    char name[64];            /* required, unique; [A-Za-z0-9_.-]+ */
    cfg_model model;          /* layers + train (same keys as the teacher) */
    int nseeds;               /* `seeds: [..]`, default [seed] */
    uint64_t seeds[CFG_MAX_SEEDS];
    /* distill: one mode from the distill mapping's own keys (listed = 0, row
     * "distilled"), or distill.modes: a list of 1..CFG_MAX_MODES (listed = 1) */
    cfg_distill_mode modes[CFG_MAX_MODES];
    int nmodes, listed;
    cfg_hint hint;            /* distill.hint, optional; applies to every mode */
    /* `teacher: NAME`: an earlier student whose first distilled mode (first
     * seed) teaches this one (a teacher assistant chain); -1: the teacher */
    int teacher_student;
    cfg_pos teacher_pos;
    cfg_pos pos;
} cfg_student;

/* ---- compression pipelines (`compress:`), expanded into variants ---------- */
#define CFG_MAX_PASSES 8
#define CFG_MAX_OVERRIDES 8
#define CFG_MAX_BLOCK 64 /* prune block: rows (pipeline/check.c asserts it is compress/'s) */
#define CFG_MAX_VARIANTS 32
#define CFG_MAX_SWEEP 8

/* quantize, qat and cluster make the model final (no pass may follow them) */
typedef enum {
    CFG_PASS_PRUNE = 0,
    CFG_PASS_FINETUNE,
    CFG_PASS_QUANTIZE,
    CFG_PASS_QAT,
    CFG_PASS_CLUSTER
} cfg_pass_kind;
typedef enum { CFG_PRUNE_MAGNITUDE = 0, CFG_PRUNE_NEURONS, CFG_PRUNE_FILTERS } cfg_prune_method;

/* A layer name or glob and its own sparsity (prune) or bits (quantize: 32
 * keeps the layer fp32). */
typedef struct {
    char pattern[64];
    float sparsity;
    int bits;
    cfg_pos pos;
} cfg_layer_override;

typedef struct {
    cfg_pass_kind kind;
    cfg_pos pos;
    /* prune */
    cfg_prune_method method; /* magnitude (unstructured) | neurons | filters */
    int global;              /* magnitude: one threshold over every layer (scope: global) */
    int norm;                /* neurons, filters: 1 (l1) or 2 (l2) */
    float sparsity;          /* [0, 1); a list in the file expands into variants */
    int block;               /* magnitude: rows pruned together in one column (1: single weights) */
    int agp;                 /* schedule: oneshot (0) | agp (1) */
    float initial_sparsity;  /* agp: s_i, [0, sparsity] */
    int ramp_epochs;         /* agp: epochs over which the sparsity rises; default epochs/2 */
    cfg_layer_override overrides[CFG_MAX_OVERRIDES];
    int noverrides;
    /* training: finetune, and prune with schedule agp */
    int epochs;              /* [1, 10000] */
    float lr;                /* default 0.01 */
    int batch_size;          /* default 128 */
    int distill;             /* soft targets from the teacher instead of the labels */
    float temperature, alpha;
    /* quantize, qat */
    int bits;                /* 8, 4, 3 or 2; a list in the file expands into variants
                                (qat at 3 or 2 bits learns the step size: LSQ) */
    int dynamic;             /* bits 8: activations quantized per batch at run time */
    int per_channel;         /* weight scales per output channel (default) or per tensor */
    int percentile_calib;    /* calibration: minmax (0) | percentile (1) */
    float percentile;        /* default 99.99, (50, 100] */
    int calib_batches;       /* static int8: batches of 128 training samples, default 8 */
    int group;               /* int4: weights per scale, default 32 */
    int gptq;                /* quantize: rounding of 4-bit weights: nearest (0) | gptq (1) */
    float damp;              /* gptq: damping, fraction of mean(diag H), default 0.01, (0, 1] */
    int act_order;           /* gptq: columns by decreasing input energy (default true) */
    int bias_correction;     /* quantize: 4/3/2-bit layers' bias corrected on calibration data */
    int sparse_static;       /* quantize: sparse_activations fp32 (0) | int8 (1: csr-int8-static, or csr-int8-dyn when dynamic) */
    /* cluster */
    int clusters;            /* shared values per layer, 2..256, default 16 */
    int cluster_init;        /* linear (0, default) | kmeans++ (1) | density (2) */
    int cluster_raw;         /* coding: huffman (0, default) | none (1) */
} cfg_pass;

typedef enum { CFG_SRC_TEACHER = 0, CFG_SRC_STUDENT, CFG_SRC_FILE } cfg_source_kind;

/* One compressed variant: a source model and the passes applied in order. */
typedef struct {
    char name[96];           /* the pipeline's name, plus "/s0.9" per swept sparsity */
    char pipeline[64];       /* the pipeline's own name */
    cfg_source_kind source_kind;
    int source_student;      /* CFG_SRC_STUDENT: index in students */
    int source_scratch;      /* CFG_SRC_STUDENT: the scratch model instead of the distilled */
    char source_path[CFG_PATH_MAX]; /* CFG_SRC_FILE */
    cfg_pos source_pos;
    int store;               /* 0 fastest (CSR where faster at batch 1 and 256), 1 smallest
                                (where fewer bytes), 2 latency (where faster at batch 1) */
    cfg_pass passes[CFG_MAX_PASSES];
    int npasses;
    int nseeds;              /* `seeds: [..]`, default [seed]; a sweep's variants share them */
    uint64_t seeds[CFG_MAX_SEEDS];
} cfg_variant;

/* `sensitivity: {source, sparsities}`: each prunable layer pruned alone. */
typedef struct {
    int on;
    cfg_source_kind source_kind;
    int source_student, source_scratch;
    char source_path[CFG_PATH_MAX];
    cfg_pos source_pos;
    float sparsities[CFG_MAX_SWEEP * 2];
    int nsparsities;
} cfg_sensitivity;

/* `report.ladders`: named, ordered lists of result rows (e.g. Deep
 * Compression's pruned, + shared, + coded) that the report draws as a line
 * on the accuracy-vs-size plot and tables step by step.  report.c. */
#define CFG_MAX_LADDERS 8
#define CFG_LADDER_STEPS 16
#define CFG_ROW_NAME 96 /* a row name of results.json, as rep_row's */
typedef struct {
    char name[64];                            /* required, unique, non-empty */
    char rows[CFG_LADDER_STEPS][CFG_ROW_NAME]; /* 2..CFG_LADDER_STEPS distinct row names */
    int nrows;
    cfg_pos pos;                              /* of the ladder's mapping */
} cfg_ladder;

/* `report:` — what kdbench run writes into RUN_DIR/report/ at the end. */
typedef struct {
    int format;      /* 1 md, 2 html, 3 both (default) */
    int plots;       /* default true: gnuplot plots beside the tables */
    float timeout;   /* seconds per plot, default 30, (0, 3600] */
    cfg_ladder ladders[CFG_MAX_LADDERS]; /* `ladders: [{name, rows}]`, default none */
    int nladders;
} cfg_report;


/* `serve:` — the keys of `kdbench serve` (the same names as its flags, '-'
 * as '_'), and the serving loadtest `kdbench run` ends with.  serve.c. */
#define CFG_MAX_CONC 8
#define CFG_MAX_SERVE_MODELS 16
#define CFG_SERVE_NAME 96
typedef struct {
    int port;                 /* default 8080, [0, 65535] */
    char host[64];            /* IPv4 address, default 127.0.0.1 */
    int threads;              /* HTTP threads, default 2, [1, 256] */
    int compute_threads;      /* threads per model forward, default 1, [1, 256] */
    char api_key_file[CFG_PATH_MAX]; /* "" = no access control */
    int max_batch;            /* default 64, [1, 4096]; 1 = batching off */
    int max_delay_us;         /* default 0, [0, 10000000] */
    int max_queue;            /* default 1024, [1, 1000000] */
    int max_body;             /* bytes, default 8 MiB, [64, 2^30] */
    int max_connections;      /* default 1000, [1, 1000000] */
    int timeout;              /* seconds, default 10, [1, 3600] */
    char shadow[CFG_SERVE_NAME]; /* "" = none; a served model's name */
    /* the loadtest at the end of kdbench run (127.0.0.1, an ephemeral port) */
    int loadtest;             /* default false */
    int concurrency[CFG_MAX_CONC]; /* default [1, 8, 64]; each in [1, 1024] */
    int nconcurrency;
    int requests;             /* per variant and level, default 2000, [1, 10000000] */
    float seconds;            /* ... at most this long, default 1, (0, 600] */
    int batching;             /* 0 on (default), 1 off, 2 both (each level twice) */
    char models[CFG_MAX_SERVE_MODELS][CFG_SERVE_NAME]; /* served names; none = every variant */
    int nmodels;
    cfg_pos pos;              /* of the `serve` key ({0,0}: absent) */
} cfg_serve;

/* The defaults of cfg_serve (also kdbench serve's without a config). */
void config_serve_defaults(cfg_serve *s);
/* "on", "off", "both" by cfg_serve.batching. */
const char *config_serve_batching(int b);
/* Reads just the `serve:` section of a config file (an experiment YAML, or a
 * run directory's config.yaml) into out, with the same checks and messages as
 * config_load (the rest of the file is parsed, not validated).  Absent: the
 * defaults.  0, KD_ECONFIG, KD_EIO or KD_ENOMEM. */
int config_load_serve(const char *path, cfg_serve *out, kd_err *e);

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
    cfg_variant variants[CFG_MAX_VARIANTS];  /* `compress:` pipelines, sweeps expanded */
    int nvariants;
    cfg_sensitivity sensitivity;             /* optional */
    cfg_report report;
    cfg_serve serve;                         /* optional `serve:` */
} exp_spec;

/* What the data files say, for the rules that need them: the class count
 * against each model's outputs, the training-set size against calibration,
 * the sample size against data.shape.  pipeline_data_facts reads them
 * cheaply (IDX headers and labels, no pixels).  A zero field is unknown. */
typedef struct {
    int ntrain;          /* training samples after the validation split */
    int nclasses;        /* max label + 1 over the training and test files */
    size_t train_values; /* values per sample in the training file */
    size_t test_values;  /* ... and in the test file */
} cfg_data_facts;

/* Fixed by the compressed formats (compress/ checks them again; a test keeps
 * these equal to QUANT_Q4_GROUP and COMPRESS_CALIB_BATCH). */
#define CFG_Q4_GROUP 32     /* int4 weights per scale */
#define CFG_CALIB_BATCH 128 /* samples per calibration batch */

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

/* config_load and config_load_string with the data's facts (f may be NULL:
 * then they equal those two): every rule that run would enforce once the data
 * is loaded is checked here too, at the key's position. */
int config_load_facts(const char *path, const char *const *overrides, int noverrides,
                      const cfg_data_facts *f, exp_spec *out, kd_err *e);
int config_load_string_facts(const char *name, const char *text, size_t len,
                             const char *const *overrides, int noverrides, const cfg_data_facts *f,
                             exp_spec *out, kd_err *e);

/* Writes the resolved spec (every key with its effective value, layers in
 * flow style) as YAML that config_load reads back to an equal spec (positions
 * and file name aside).  Returns 0 or KD_EIO if f reports an error. */
int config_dump(const exp_spec *s, FILE *f);

/* 1 when a and b are the same pass (their YAML, as config_dump writes it,
 * is equal: positions aside), else 0 (also when out of memory). */
int cfg_pass_same(const cfg_pass *a, const cfg_pass *b);

/* The part of the resolved spec a trained teacher depends on (data, teacher,
 * seed, and threads: the count in use, given here since 0 means "all cores"),
 * as YAML text for a cache key: students, compression and report settings do
 * not appear.  0, KD_ENOMEM or KD_EIO. */
int config_dump_teacher(const exp_spec *s, int threads, FILE *f);

#endif
