/* nn — the engine: shapes, layers behind an ops table, models over one flat
 * parameter buffer, losses, optimisers, schedules, RNG streams, model files.
 * Knows nothing of YAML, datasets or the CLI.  Depends on util and OpenBLAS. */
#ifndef KD_NN_H
#define KD_NN_H

#include <stddef.h>
#include <stdint.h>

#include "../util/util.h"

/* ---- RNG streams -----------------------------------------------------------
 * xoshiro256** seeded by splitmix64(seed, stream): independent streams so that
 * e.g. changing dropout does not change the shuffle order. */
typedef struct {
    uint64_t s[4];
} nn_rng;
enum { NN_STREAM_INIT = 1, NN_STREAM_SHUFFLE = 2, NN_STREAM_DROPOUT = 3, NN_STREAM_SPLIT = 4,
       NN_STREAM_DATA = 5, NN_STREAM_TEST = 6 };
nn_rng nn_rng_stream(uint64_t seed, uint64_t stream);
uint64_t nn_rng_u64(nn_rng *r);
/* Dropout's keep mask: mask[i] = scale when draw i >= thresh, else 0, where
 * draws 2j and 2j+1 are the low and high halves of the j-th nn_rng_u64. */
void nn_rng_keep_mask(nn_rng *r, float *mask, size_t m, uint32_t thresh, float scale);
uint32_t nn_rng_below(nn_rng *r, uint32_t n); /* uniform in [0, n), n > 0 */
float nn_rng_uniform(nn_rng *r);              /* [0, 1) */
float nn_rng_normal(nn_rng *r);               /* N(0, 1) */
void nn_rng_shuffle(nn_rng *r, int *a, int n);

/* ---- shapes ---------------------------------------------------------------- */
/* Per-sample shape; a batch of n is laid out NCHW (n * c * h * w floats).
 * A feature vector is (c = features, h = 1, w = 1). */
typedef struct {
    int c, h, w;
} nn_shape;
static inline size_t nn_shape_size(nn_shape s) { return (size_t)s.c * s.h * s.w; }

/* ---- layer specs (data that describes a layer) ----------------------------- */
typedef enum {
    NN_DENSE = 0,   /* fully connected; flattens any input shape */
    NN_CONV2D,      /* 2-D convolution, square kernel, stride, zero padding */
    NN_MAXPOOL2D,   /* max pooling, square window, stride (default = kernel) */
    NN_RELU,
    NN_DROPOUT,     /* inverted dropout: scaled at train time, identity at eval */
    NN_FLATTEN,     /* (c,h,w) -> (c*h*w,1,1); no data movement */
    NN_BATCHNORM,   /* per channel (per feature for vectors); train/eval modes */
    NN_KIND_COUNT
} nn_kind;

typedef enum { NN_INIT_AUTO = 0, NN_INIT_HE, NN_INIT_XAVIER } nn_init;

typedef struct nn_layer_ops nn_layer_ops;

typedef struct {
    nn_kind kind;
    char name[32];       /* unique in a model; "" = auto ("dense1", "conv2", ...) */
    int units;           /* dense: outputs */
    int filters;         /* conv2d: output channels */
    int kernel;          /* conv2d, maxpool2d: window size */
    int stride;          /* conv2d (default 1), maxpool2d (default = kernel); 0 = default */
    int pad;             /* conv2d: zero padding on each side */
    float rate;          /* dropout: probability of dropping, [0, 1) */
    float eps, momentum; /* batchnorm: defaults 1e-5 and 0.1 when 0 */
    nn_init init;        /* dense, conv2d: AUTO = He (relu nets) */
    /* NULL = nn's built-in ops of kind.  Otherwise a compressed kind (defined
     * outside nn, e.g. compress's "dense_csr") that computes the same function
     * as kind from its own storage; nn calls it only through this table. */
    const nn_layer_ops *ops;
} nn_layer_spec;

const char *nn_kind_name(nn_kind k);             /* "dense", "conv2d", ... */
int nn_kind_from_name(const char *s, nn_kind *k); /* 0 or -1 */

/* ---- layers ------------------------------------------------------------------ */
typedef struct nn_layer nn_layer;

/* ---- thread teams -------------------------------------------------------------
 * A team of nthreads (the caller is one of them) that runs one job at a time,
 * split in parts: nn_team_run calls fn(arg, part, nparts) once for every part
 * in [0, nparts) (nparts = the team's size), each on its own thread, the
 * caller doing part 0, and returns when all are done.  Kernels that do not
 * call OpenBLAS (int8, sparse) use the team their model owns (nn_ctx.team) so
 * that they use the cores OpenBLAS uses.  One caller at a time per team.  A
 * NULL team runs fn(arg, 0, 1) on the caller. */
#define NN_TEAM_MAX 256
typedef struct nn_team nn_team;
typedef void (*nn_team_fn)(void *arg, int part, int nparts);
nn_team *nn_team_new(int nthreads, kd_err *e); /* NULL with e on a bad count or no memory */
void nn_team_free(nn_team *t);                 /* accepts NULL */
int nn_team_size(const nn_team *t);            /* 1 for NULL */
unsigned long nn_team_jobs(const nn_team *t);  /* jobs split so far (0 for NULL) */
void nn_team_run(nn_team *t, nn_team_fn fn, void *arg);
/* Part `part` of nparts of [0, n): [*lo, *hi), in blocks of 16 floats so
 * that parts never share a cache line; the same split for the same counts. */
void nn_team_range(size_t n, int part, int nparts, size_t *lo, size_t *hi);
/* The team for a job that reads `bytes` (weights times samples), or NULL
 * (the calling thread alone) below NN_TEAM_SPLIT_BYTES: a hand-off and join
 * cost about a microsecond, which a small layer (the MLP's 1200-to-10
 * output: 12 KB of int8, 0.7 us alone, 2.2 us split) does not earn back. */
#define NN_TEAM_SPLIT_BYTES ((double)(128 << 10))
nn_team *nn_team_for(nn_team *t, double bytes);
/* Element-wise passes over fewer floats than this stay on the calling
 * thread: a hand-off costs about what 32k floats of memory traffic do. */
#define NN_SPLIT_MIN ((size_t)1 << 15)

/* Per-call context: train mode, the dropout stream, and the thread team
 * (nn_model_forward lends the model's team when team is NULL). */
typedef struct {
    int train;
    nn_rng *rng;   /* used by dropout in train mode */
    nn_team *team; /* for layers with ops->threaded; NULL = the calling thread only */
    /* forward also applies ReLU to y (y = x > 0 ? x : 0 of its result); set
     * by nn_model_forward, only for a layer whose ops->fuses_relu is set */
    int relu;
    /* training only, with relu, nn's dense layer only: the keep-mask of the
     * in-place dropout after the ReLU, multiplied in the same epilogue */
    const float *mask;
} nn_ctx;

/* One table per layer kind.  x is the layer's input batch, y its output
 * (both n samples, NCHW), dy the gradient w.r.t. y; backward ACCUMULATES
 * into the parameter gradients (gw, gb) and WRITES dx (dx may be NULL for
 * the first layer: skip that work). */
struct nn_layer_ops {
    const char *name;
    /* from l->spec and l->in: set l->out, l->nw, l->nb, l->nbuf; error if the
     * shapes do not fit (message names the problem, not the layer: the caller
     * prefixes the layer name) */
    int (*setup)(nn_layer *l, kd_err *e);
    void (*init)(nn_layer *l, nn_rng *r);                 /* may be NULL */
    int (*reserve)(nn_layer *l, int max_batch, kd_err *e); /* private scratch; may be NULL */
    void (*release)(nn_layer *l);                          /* frees l->priv; may be NULL */
    void (*forward)(nn_layer *l, const float *x, float *y, int n, const nn_ctx *c);
    void (*backward)(nn_layer *l, const float *x, const float *y, const float *dy, float *dx,
                     int n, const nn_ctx *c);
    /* multiply-accumulates per sample in forward (for FLOP counts) */
    double (*macs)(const nn_layer *l);
    /* in-place: y may alias x (relu, flatten, dropout); lets the model save memory */
    int inplace;
    /* forward splits its work across c->team: a model with such a layer owns
     * a team of nn_threads() threads (made at reserve) */
    int threaded;
    /* forward honours nn_ctx.relu, each part on the rows it wrote (so a ReLU
     * after it costs no pass of its own and no cache line changes core):
     * inference forwards fold the in-place ReLU layer that follows into it */
    int fuses_relu;

    /* ---- compressed kinds only (NULL in nn's own kinds) ----------------------
     * Their weights live in l->data, a payload owned by the layer, instead of
     * the flat parameter buffer (which may still hold e.g. the bias).  A layer
     * built by nn_model_new has l->data == NULL, which forward must treat as
     * "all weights zero"; the owner of the kind fills it afterwards. */
    const char *format; /* storage format for reports ("csr-fp32"); NULL = "fp32" */
    /* Facts callers ask instead of comparing ops pointers (type_traits):
     * bits per stored weight (32, 8 or 4; 0 = 32, nn's kinds); 1 when only
     * the non-zeros are stored; 1 when the weights live in the flat
     * parameters and nn's optimisers train them (l->w holds the raw fp32
     * weights, which dequant may transform); 1 when it computes a dense
     * layer's function (spec.kind NN_DENSE) from its own storage. */
    int weight_bits, sparse, trainable, dense_like;
    /* its weights as forward computes with them (dequantized, fake-quantized),
     * all units x fan_in floats into w, zeros for an empty layer (l->data NULL) */
    void (*dequant)(const nn_layer *l, float *w);
    /* appends the payload to b (allocation failure: b->failed) */
    void (*save)(const nn_layer *l, kd_buf *b);
    /* parses a payload written by save from r, which holds exactly that
     * payload; checks every size against l->in / l->out; sets l->data */
    int (*load)(nn_layer *l, kd_rd *r, kd_err *e);
    /* deep copy of src's payload into dst (same spec and shapes) */
    int (*copy)(nn_layer *dst, const nn_layer *src, kd_err *e);
    void (*destroy)(nn_layer *l); /* frees l->data; l->data may be NULL */
    /* logical weight count and non-zeros held in the payload */
    void (*count)(const nn_layer *l, size_t *weights, size_t *nonzero);
};

struct nn_layer {
    nn_layer_spec spec;
    const nn_layer_ops *ops;
    nn_shape in, out;
    /* trainable parameters: views into the model's params / grads buffers */
    float *w, *b, *gw, *gb;
    size_t nw, nb;
    /* non-trainable state saved with the model (batchnorm running mean, var) */
    float *buf;
    size_t nbuf;
    void *priv;     /* private scratch owned by the layer (reserve/release) */
    void *data;     /* payload of a compressed kind (ops->load/destroy); else NULL */
    int max_batch;  /* capacity reserved */
};

/* The built-in ops of a kind (never NULL for k < NN_KIND_COUNT). */
const nn_layer_ops *nn_layer_ops_of(nn_kind k);
/* 1 when l runs nn's own ops of its spec.kind (not a compressed kind). */
int nn_layer_is_builtin(const nn_layer *l);
/* Kind tables, one per file in nn/ (layer_dense.c, layer_conv2d.c, ...). */
extern const nn_layer_ops nn_dense_ops, nn_conv2d_ops, nn_maxpool2d_ops, nn_relu_ops,
    nn_dropout_ops, nn_flatten_ops, nn_batchnorm_ops;
/* The training fusions of nn_model_forward/backward (layer_simple.c): a
 * dropout layer's keep-mask for a batch of n, drawn from c->rng as its forward
 * would (NULL when it is the identity: eval, rate 0, no stream); and dropout's
 * backward followed by the backward of the in-place ReLU before it, in one
 * pass: dx = y > 0 ? dy * mask : 0 (y: the shared activation). */
const float *nn_dropout_draw(nn_layer *l, int n, const nn_ctx *c);
void nn_dropout_relu_backward(const nn_layer *l, const float *y, const float *dy, float *dx,
                              int n, const nn_ctx *c);

/* ---- model ----------------------------------------------------------------- */
typedef struct {
    nn_shape in;
    int nclasses;       /* = size of the last layer's output */
    int nlayers;
    nn_layer *layers;
    float *params, *grads; /* all trainable parameters, one flat buffer each */
    size_t nparams;
    /* grads are all zero (zeroed, or cleared by nn_optim_step_clear) and no
     * backward ran since: nn_model_zero_grad has nothing to do.  Whoever
     * writes grads outside a backward clears it. */
    int grads_zero;
    float *buffers;        /* all non-trainable state */
    size_t nbuffers;
    /* input preprocessing carried with the model: x' = (x/255 - mean) / std
     * for uint8 data (x' = (x - mean)/std for float data) */
    float in_mean, in_std;
    /* activations: act[i] is layer i's input, act[nlayers] the logits;
     * dact[0..1] ping-pong gradient buffers; all sized for cap samples */
    int cap;
    float **act, *dact[2];
    nn_team *team; /* when a layer is threaded and nn_threads() > 1 (reserve), or
                    * while training (nn_model_train_team_begin); else NULL */
    /* Threads a single-sample forward uses: 0 = all (the team, threaded
     * OpenBLAS), 1 = the calling thread alone with OpenBLAS serial.  Chosen
     * by measuring both (measure_latency), since splitting one sample pays
     * only for large layers; not stored in the model file. */
    int b1_threads;
} nn_model;

/* Builds a model from specs (names filled in, shapes checked).  On a shape
 * error e->msg names the layer ("layer 3 (dense2): ...") and *bad_layer (if
 * not NULL) gets its index. Parameters are zero until nn_model_init. */
nn_model *nn_model_new(nn_shape in, const nn_layer_spec *specs, int nlayers, int *bad_layer,
                       kd_err *e);
/* The same layout with no parameter, gradient or buffer storage (params,
 * grads, buffers NULL): layer shapes, names, nparams and nclasses only, for
 * shape queries (nn_model_find, nn_model_tap_check) on models too large to
 * allocate.  Must not be initialised, run, saved or trained; free with
 * nn_model_free. */
nn_model *nn_model_new_shapes(nn_shape in, const nn_layer_spec *specs, int nlayers,
                              int *bad_layer, kd_err *e);
void nn_model_free(nn_model *m);
/* He/Xavier init of weights, zero biases, bn gamma=1 beta=0 var=1; from the INIT stream. */
void nn_model_init(nn_model *m, uint64_t seed);
/* Ensures activations and layer scratch for batches of up to n. */
int nn_model_reserve(nn_model *m, int n, kd_err *e);
/* Frees what nn_model_reserve made (the next forward makes it again): for a
 * model kept for later but idle meanwhile (issue 12: peak memory). */
void nn_model_release(nn_model *m);
/* Frees m's gradients (grads and every layer's gw/gb NULL): for a model that
 * is only run, cloned and saved from now on; it must not be trained again
 * (backward and nn_model_zero_grad assert).  A clone has its own. */
void nn_model_drop_grads(nn_model *m);
/* Forward n samples (n <= reserved cap; reserves if needed and returns NULL on
 * allocation failure). Returns a view of the logits (n * nclasses); do not free. */
const float *nn_model_forward(nn_model *m, const float *x, int n, const nn_ctx *c);
/* Backward from dlogits through every layer (after a forward on the same batch
 * in the same mode); accumulates into m->grads. */
void nn_model_backward(nn_model *m, const float *dlogits, int n, const nn_ctx *c);
/* The same with two additions: when tap >= 0 (an intermediate layer whose
 * output passes nn_model_tap_check), dtap (n x size of that output) is added to
 * the gradient w.r.t. layer tap's output; when dx is not NULL it receives the
 * gradient w.r.t. the model's input (n x size of m->in). */
void nn_model_backward_ex(nn_model *m, const float *dlogits, int tap, const float *dtap,
                          float *dx, int n, const nn_ctx *c);
/* Whether layer i's output can be tapped (read after a forward, given a
 * gradient in backward): an intermediate layer whose output the next layer
 * does not overwrite in place.  0, or KD_ECONFIG with the reason in why. */
int nn_model_tap_check(const nn_model *m, int i, char *why, size_t n);
/* The linear adapter from a feature of shape from to one of shape to (hint
 * distillation): a 1x1 conv2d when both are maps of the same height and width,
 * else a dense layer if it has at most NN_ADAPTER_MAX_PARAMS weights.  0, or
 * KD_ECONFIG with the reason. */
#define NN_ADAPTER_MAX_PARAMS (4u << 20)
int nn_adapter_spec(nn_shape from, nn_shape to, nn_layer_spec *out, kd_err *e);
/* Zeroes m->grads (split over m->team when there is one), unless
 * m->grads_zero says they are. */
void nn_model_zero_grad(nn_model *m);
/* Training's threading (issue 12): one pool, not two.  When nn_threads() > 1
 * and every layer of m is dense, relu, dropout or flatten (kinds that split
 * their training work over c->team), this makes m's team; forward, backward,
 * zero_grad and the optimiser then split dense GEMMs (each part a serial
 * OpenBLAS call), element-wise passes and the update over it, and OpenBLAS's
 * own pool stays idle.  Other models (conv2d, batchnorm, pooling) keep
 * OpenBLAS's threads.  Returns 1 when it made the team (the caller ends it
 * with nn_model_train_team_end(m, 1)), 0 when it did not. */
int nn_model_train_team_begin(nn_model *m);
void nn_model_train_team_end(nn_model *m, int made);
/* A deep copy (parameters, buffers, specs; no activations). */
nn_model *nn_model_clone(const nn_model *m, kd_err *e);
/* Counts: weights of a layer or model, flat parameters plus compressed
 * payloads (the logical count, not the stored one); *nonzero may be NULL. */
size_t nn_layer_params(const nn_layer *l, size_t *nonzero);
size_t nn_model_params(const nn_model *m, size_t *nonzero);
size_t nn_model_nonzero_params(const nn_model *m); /* includes payloads */
/* The storage format of a layer with weights ("fp32", "csr-fp32"), or "-". */
const char *nn_layer_format(const nn_layer *l);
double nn_model_macs(const nn_model *m); /* per sample */
/* Index of the layer named name, or -1. */
int nn_model_find(const nn_model *m, const char *name);

/* ---- losses --------------------------------------------------------------- */
/* Fused, numerically stable softmax cross-entropy, mean over n rows of k logits.
 * Writes dlogits = (softmax - onehot)/n when dlogits != NULL.  Labels in [0,k). */
float nn_softmax_xent(const float *logits, const uint8_t *labels, int n, int k, float *dlogits);
/* argmax per row; returns the number of rows whose argmax equals the label */
int nn_count_correct(const float *logits, const uint8_t *labels, int n, int k);

/* ---- optimisers and schedules ------------------------------------------- */
typedef enum { NN_OPT_SGD = 0, NN_OPT_ADAMW } nn_opt_kind;
typedef struct {
    nn_opt_kind kind;
    float lr;            /* base learning rate */
    float momentum;      /* sgd */
    int nesterov;        /* sgd */
    float weight_decay;  /* sgd: L2 added to the gradient; adamw: decoupled */
    float beta1, beta2, eps; /* adamw; defaults 0.9, 0.999, 1e-8 when 0 */
} nn_opt_spec;

typedef struct {
    nn_opt_spec spec;
    size_t n;
    float *m, *v; /* moment buffers (v only for adamw) */
    long step;
} nn_optim;

nn_optim *nn_optim_new(const nn_opt_spec *s, size_t nparams, kd_err *e);
void nn_optim_free(nn_optim *o);
/* One update of m->params from m->grads at learning rate lr.  Weight decay
 * applies to weights (w), never to biases or batchnorm parameters (b). */
void nn_optim_step(nn_optim *o, nn_model *m, float lr);
/* The same update, zeroing each gradient in the same pass once it is used
 * (sets m->grads_zero): a training step's nn_model_zero_grad then costs no
 * pass of its own over the gradients (issue 12). */
void nn_optim_step_clear(nn_optim *o, nn_model *m, float lr);

typedef enum { NN_SCHED_CONSTANT = 0, NN_SCHED_STEP, NN_SCHED_COSINE } nn_sched_kind;
typedef struct {
    nn_sched_kind kind;
    float warmup_epochs; /* linear warm-up from 0 over this many epochs */
    int step_epochs;     /* step: multiply by gamma every step_epochs */
    float gamma;
    float min_lr;        /* cosine: floor */
} nn_sched_spec;
/* Learning rate at a (fractional) epoch position of total epochs. */
float nn_sched_lr(const nn_sched_spec *s, float base_lr, double epoch, int total_epochs);

/* ---- model files ------------------------------------------------------------
 * "KDBM" magic, version, input shape, preprocessing, layer specs (each with
 * its ops name, e.g. "dense" or "dense_csr"), parameters, buffers, then one
 * length-prefixed payload per compressed layer, CRC32 of everything before
 * it.  Written atomically; the loader checks every size and the checksum and
 * refuses anything else.  Version 1 files (no ops names, no payloads) still load. */
#define NN_MODEL_MAGIC "KDBM"
#define NN_MODEL_VERSION 2u
/* Serialises m into b (appends). */
void nn_model_serialize(const nn_model *m, kd_buf *b);
/* Parses one model from r (advances it); errors name the problem.  Layers
 * whose ops name is not one of nn's kinds are looked up in kinds[0..nkinds)
 * (e.g. compress_kinds()); an unknown name is an error. */
nn_model *nn_model_deserialize_with(kd_rd *r, const nn_layer_ops *const *kinds, int nkinds,
                                    kd_err *e);
nn_model *nn_model_deserialize(kd_rd *r, kd_err *e); /* nn's kinds only */
int nn_model_save(const nn_model *m, const char *path, kd_err *e);
nn_model *nn_model_load_with(const char *path, const nn_layer_ops *const *kinds, int nkinds,
                             kd_err *e);
nn_model *nn_model_load(const char *path, kd_err *e); /* nn's kinds only */

/* ---- BLAS ----------------------------------------------------------------- */
/* Sets OpenBLAS's thread count (n <= 0: all cores); returns the count in use. */
int nn_set_threads(int n);
/* The thread count in use (set by nn_set_threads; other kernels follow it). */
int nn_threads(void);
/* One thread pool at a time: between begin and end OpenBLAS runs on the
 * calling thread, so a model whose layers split their work on its nn_team
 * (the fp32 dense layers of such a model included) never has OpenBLAS's
 * threads and the team's competing for the same cores.  begin returns the
 * count to give back to end.  Call from the thread that calls OpenBLAS. */
int nn_blas_serial_begin(void);
void nn_blas_serial_end(int prev);
/* OpenBLAS's build description (core, threading), for logs and reports. */
const char *nn_blas_info(void);

/* ---- init helpers (used by layer files) ---------------------------------- */
void nn_fill_he(float *w, size_t n, int fan_in, nn_rng *r);
void nn_fill_xavier(float *w, size_t n, int fan_in, int fan_out, nn_rng *r);

#endif
