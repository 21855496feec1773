/* onnx/build — an ONNX model under construction: initializers, nodes with
 * attributes, graph inputs and outputs, metadata, all in protobuf-c's
 * generated structs and owned by one onnx_graph (freed at once).  The
 * write side of onnx/ (export builds on it; import does not need it).
 *
 * Allocation failures are sticky, as in kd_buf: the calls that add things
 * return NULL (or nothing) and the first failure is reported by
 * onnx_graph_write / onnx_graph_check, so a builder reads as a list of calls
 * with one error check at the end. */
#ifndef KD_ONNX_BUILD_H
#define KD_ONNX_BUILD_H

#include "proto.h"

typedef struct onnx_graph onnx_graph;

/* A model of one graph named name, with the default-domain opset `opset`
 * and IR version ir_version; NULL with e (KD_ENOMEM). */
onnx_graph *onnx_graph_new(const char *name, int64_t ir_version, int64_t opset, kd_err *e);
void onnx_graph_free(onnx_graph *g); /* accepts NULL */

/* Dimension value meaning "symbolic": written as the dim_param "N". */
#define ONNX_DIM_N (-1)

/* Initializers: a tensor named name of shape dims[0..nd) holding v (the
 * product of dims values, copied; stored little-endian as raw_data). */
void onnx_graph_f32(onnx_graph *g, const char *name, const int64_t *dims, int nd, const float *v);
void onnx_graph_i8(onnx_graph *g, const char *name, const int64_t *dims, int nd, const int8_t *v);
void onnx_graph_i32(onnx_graph *g, const char *name, const int64_t *dims, int nd,
                    const int32_t *v);
void onnx_graph_i64(onnx_graph *g, const char *name, const int64_t *dims, int nd,
                    const int64_t *v);
/* Scalars (rank 0). */
void onnx_graph_scalar_f32(onnx_graph *g, const char *name, float v);
void onnx_graph_scalar_i8(onnx_graph *g, const char *name, int8_t v);
void onnx_graph_scalar_u8(onnx_graph *g, const char *name, uint8_t v);

/* A graph input or output of element type elem (ONNX__TENSOR_PROTO__DATA_TYPE__*)
 * and shape dims (ONNX_DIM_N for the batch). */
void onnx_graph_input(onnx_graph *g, const char *name, int elem, const int64_t *dims, int nd);
void onnx_graph_output(onnx_graph *g, const char *name, int elem, const int64_t *dims, int nd);

/* Appends node op_type (default domain) named name with inputs in[0..nin)
 * ("" for an omitted optional input) and outputs out[0..nout); returns it for
 * attributes (a view owned by g), NULL after a failure. */
Onnx__NodeProto *onnx_graph_node(onnx_graph *g, const char *op_type, const char *name,
                                 const char *const *in, int nin, const char *const *out,
                                 int nout);
/* Attributes of node n (NULL n is ignored: the failure is already recorded). */
void onnx_node_int(onnx_graph *g, Onnx__NodeProto *n, const char *key, int64_t v);
void onnx_node_ints(onnx_graph *g, Onnx__NodeProto *n, const char *key, const int64_t *v,
                    int count);
void onnx_node_float(onnx_graph *g, Onnx__NodeProto *n, const char *key, float v);
/* Renames output i of node n (e.g. the last layer's output to "logits"). */
void onnx_node_rename_output(onnx_graph *g, Onnx__NodeProto *n, int i, const char *name);

/* Model-level text: producer, doc string, metadata_props entries. */
void onnx_graph_producer(onnx_graph *g, const char *name, const char *version);
void onnx_graph_doc(onnx_graph *g, const char *doc);
void onnx_graph_meta(onnx_graph *g, const char *key, const char *value);

/* The model as built (a view owned by g). */
const Onnx__ModelProto *onnx_graph_model(const onnx_graph *g);
/* 0, or KD_ENOMEM if any addition failed. */
int onnx_graph_check(const onnx_graph *g, kd_err *e);
/* onnx_graph_check, then onnx_model_write (atomic). */
int onnx_graph_write(const onnx_graph *g, const char *path, kd_err *e);

#endif
