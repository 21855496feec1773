/* onnx/ private: the values an import walks over (constants folded at load,
 * and the one live activation of the chain) and the layers it collects. */
#ifndef KD_ONNX_INTERNAL_H
#define KD_ONNX_INTERNAL_H

#include "../nn/nn.h"
#include "proto.h"

#define OX_MAX_RANK 8
#define OX_MAX_NODES 10000   /* a larger graph is refused (lookups are linear) */
#define OX_MAX_LAYERS 256
#define OX_MAX_ELEMS ((size_t)1 << 28) /* values in one tensor (1 GiB of floats) */
/* Bytes of constants made at load (copies by Identity, Unsqueeze ...), so a
 * file that copies one large tensor many times is refused, not obeyed. */
#define OX_MAX_FOLDED ((size_t)1 << 30)
/* The batch dimension inside a folded shape (Shape of the live tensor): a
 * Reshape may name it, nothing may compute with it. */
#define OX_BATCH INT64_MIN

typedef enum { OX_LIVE = 0, OX_FLOAT, OX_INT } ox_kind;

/* A named value: a constant (initializer, Constant node, or folded), or the
 * chain's activation (OX_LIVE; step says which one, so a branch that reads
 * an older activation is caught). */
typedef struct {
    const char *name; /* owned by the ModelProto */
    ox_kind kind;
    int rank;
    int64_t dims[OX_MAX_RANK];
    size_t n;  /* values */
    float *f;  /* OX_FLOAT: n values (owned) */
    int64_t *i; /* OX_INT: n values (owned) */
    int step;  /* OX_LIVE: the activation's index */
} ox_value;

/* A layer with its parameters (owned), in nn's layouts. */
typedef struct {
    nn_layer_spec spec;
    float *w, *b, *buf;
    size_t nw, nb, nbuf;
} ox_layer;

typedef struct {
    const Onnx__ModelProto *model;
    int64_t opset; /* of the default domain */
    ox_value **v;
    int nv, capv;
    ox_layer layers[OX_MAX_LAYERS];
    int nlayers;
    /* the chain: the live activation's rank (2 or 4), per-sample shape and
     * index; the input's batch dimension when fixed (else -1) */
    int rank, step;
    nn_shape shape, in;
    int64_t batch;
    int bias_layer; /* the layer whose output the live value is (Add folds into it), or -1 */
    int ended;      /* a final Softmax was seen */
    size_t folded;  /* bytes of constants made by folding (at most OX_MAX_FOLDED) */
    const char *softmax_out;
} ox_ctx;

/* ---- values (tensor.c) ----------------------------------------------------- */
/* The value named name, or NULL. */
ox_value *ox_find(ox_ctx *c, const char *name);
/* Adds a value named name (not yet defined: SSA); returns it zeroed with the
 * name set, or NULL with e. */
ox_value *ox_add(ox_ctx *c, const char *name, kd_err *e);
void ox_values_free(ox_ctx *c);
/* Counts bytes of a folded constant against OX_MAX_FOLDED; KD_EFORMAT beyond. */
int ox_fold_budget(ox_ctx *c, size_t bytes, kd_err *e);
/* Decodes an initializer or a Constant's tensor into v (float or int64,
 * float_data/int64_data or little-endian raw_data whose length must agree
 * with the dims); what names it in errors. */
int ox_tensor_decode(const Onnx__TensorProto *t, const char *what, ox_value *v, kd_err *e);
/* v as a list of n int64 (n = v->n), into out[cap]; -1 with e if it is not one. */
int ox_ints(const ox_value *v, int64_t *out, int cap, const char *what, kd_err *e);
/* The attribute of node named name, or NULL. */
const Onnx__AttributeProto *ox_attr(const Onnx__NodeProto *n, const char *name);
int64_t ox_attr_i(const Onnx__NodeProto *n, const char *name, int64_t dflt);
float ox_attr_f(const Onnx__NodeProto *n, const char *name, float dflt);
/* An INTS attribute into out[cap]; returns its count, 0 when absent, -1 if longer than cap. */
int ox_attr_ints(const Onnx__NodeProto *n, const char *name, int64_t *out, int cap);

/* ---- operators (ops.c) ---------------------------------------------------------
 * Each handles one node: checks it, extends the chain or folds constants.
 * 0, or e naming the node (KD_ECONFIG for a graph kdbench cannot run,
 * KD_EFORMAT for one that is malformed). */
typedef int (*ox_op_fn)(ox_ctx *c, const Onnx__NodeProto *n, kd_err *e);
/* Input i of n: any value, the live activation (the latest: a chain), or a
 * constant of kind; NULL with e. */
ox_value *ox_in(ox_ctx *c, const Onnx__NodeProto *n, size_t i, kd_err *e);
ox_value *ox_live_in(ox_ctx *c, const Onnx__NodeProto *n, size_t i, kd_err *e);
ox_value *ox_const_in(ox_ctx *c, const Onnx__NodeProto *n, size_t i, ox_kind kind, kd_err *e);
/* Output 0 of n becomes the new live activation (rank and shape set before). */
int ox_set_live(ox_ctx *c, const Onnx__NodeProto *n, kd_err *e);
/* The handler of op_type, or NULL for an unsupported operator. */
ox_op_fn ox_op_find(const char *op_type);
/* The constant-folding operators (fold.c): Constant, Shape, Gather,
 * Unsqueeze, Concat; NULL for another op_type. */
ox_op_fn ox_fold_find(const char *op_type);

/* ---- layers (layers.c) ------------------------------------------------------ */
/* A new layer of spec after the current chain, its output shape out, with
 * nw/nb/nbuf floats allocated (zeroed); NULL with e. */
ox_layer *ox_layer_add(ox_ctx *c, const nn_layer_spec *spec, size_t nw, size_t nb, size_t nbuf,
                       kd_err *e);
void ox_layers_free(ox_ctx *c);

#endif
