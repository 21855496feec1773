/* onnx/import — an ONNX model as an nn model: a chain of Gemm / MatMul (+ Add),
 * Conv, BatchNormalization, Relu, MaxPool, Flatten / Reshape, Dropout and
 * Identity (at inference), and a final Softmax (dropped: the model gives
 * logits).  Constants are folded at load, so PyTorch's exports load as they
 * are: weights as Constant nodes, a flatten as Shape -> Gather -> Unsqueeze
 * -> Concat -> Reshape, Linear as Gemm or as MatMul + Add.  Initializers
 * become the model's parameters (float_data or little-endian raw_data whose
 * length must agree with the shape).
 *
 * ONNX files do not say how inputs were scaled, so the caller says it: the
 * model takes pixels scaled x/255, then (x - mean) / std (nn_model's
 * in_mean / in_std).
 *
 * Errors: KD_ECONFIG names the first node kdbench cannot run by name and op
 * type ("node '/features/Add' (Add): ..."), or a graph that is not a chain;
 * KD_EFORMAT a malformed file (truncated, lying tensor sizes, dangling
 * inputs); KD_EIO a file that cannot be read; KD_ENOMEM. */
#ifndef KD_ONNX_IMPORT_H
#define KD_ONNX_IMPORT_H

#include "../nn/nn.h"
#include "proto.h"

/* A new model from m, with input preprocessing mean and std (std > 0, both
 * finite); NULL with e.  The caller owns the model; m is not kept. */
nn_model *onnx_import(const Onnx__ModelProto *m, float mean, float std, kd_err *e);
/* The same from a file (errors start with the path). */
nn_model *onnx_import_file(const char *path, float mean, float std, kd_err *e);
/* 1 when path names an ONNX file: its name ends in ".onnx" (any case). */
int onnx_is_onnx_path(const char *path);

#endif
