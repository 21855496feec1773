/* onnx/compose — a ModelProto assembled in memory, node by node: the graphs of
 * the import tests (honest and hostile), the fuzz seed corpus, and any writer
 * that would rather not fill protobuf-c structs by hand.  Everything it makes
 * lives in the builder and is freed with it; the returned structs may be
 * edited in place (a test that makes a tensor lie about its size).  Calls
 * after an allocation failure do nothing, and onnx_build_write reports it.
 * Known overlap: export's writer has its own builder (build.h, onnx_graph),
 * written in parallel; this one stays for fixtures that must lie (edited
 * structs, typed data) until the two are folded into one. */
#ifndef KD_ONNX_COMPOSE_H
#define KD_ONNX_COMPOSE_H

#include "proto.h"

typedef struct onnx_build onnx_build;

/* An empty model (ir_version 8) importing the default domain at opset; NULL
 * when out of memory. */
onnx_build *onnx_build_new(int64_t opset);
void onnx_build_free(onnx_build *b); /* accepts NULL */

/* A float graph input of rank dims (a negative dim is the symbolic "N"). */
void onnx_build_input(onnx_build *b, const char *name, const int64_t *dims, int rank);
void onnx_build_output(onnx_build *b, const char *name);
/* A tensor of count float (ONNX type 1) or int64 (type 7) values stored as
 * float_data / int64_data (data NULL: none stored); not yet in the graph. */
Onnx__TensorProto *onnx_build_tensor(onnx_build *b, const char *name, int type,
                                     const int64_t *dims, int rank, const void *data,
                                     size_t count);
/* t (from onnx_build_tensor) becomes an initializer of the graph. */
void onnx_build_initializer(onnx_build *b, Onnx__TensorProto *t);
/* The two in one, for float weights. */
void onnx_build_weights(onnx_build *b, const char *name, const int64_t *dims, int rank,
                        const float *data);
/* A node: inputs and outputs as comma-separated names ("x,W,B"; an empty
 * entry is an omitted optional input); NULL after a failure. */
Onnx__NodeProto *onnx_build_node(onnx_build *b, const char *op, const char *name,
                                 const char *inputs, const char *outputs);
void onnx_build_attr_i(onnx_build *b, Onnx__NodeProto *n, const char *key, int64_t v);
void onnx_build_attr_f(onnx_build *b, Onnx__NodeProto *n, const char *key, float v);
void onnx_build_attr_ints(onnx_build *b, Onnx__NodeProto *n, const char *key, const int64_t *v,
                          int count);
void onnx_build_attr_s(onnx_build *b, Onnx__NodeProto *n, const char *key, const char *s);
void onnx_build_attr_t(onnx_build *b, Onnx__NodeProto *n, const char *key, Onnx__TensorProto *t);

/* The model (valid until onnx_build_free); NULL after a failure. */
Onnx__ModelProto *onnx_build_model(onnx_build *b);
/* Serialized into a new buffer (*out, kd_free it) / written to path atomically. */
int onnx_build_pack(onnx_build *b, uint8_t **out, size_t *n, kd_err *e);
int onnx_build_write(onnx_build *b, const char *path, kd_err *e);

#endif
