/* export — a model taken out of kdbench: standalone C (export_c) and ONNX
 * (export_onnx).  Reads layers through nn's ops tables and their facts (format,
 * dense_like, the payload as ops->save writes it), never a kind's private
 * structs.  Depends on util, nn and compress (its public kernel helpers). */
#ifndef KD_EXPORT_H
#define KD_EXPORT_H

#include "../nn/nn.h"

/* Longest C identifier accepted as a prefix. */
#define EXPORT_PREFIX_MAX 32

/* 1 when s can prefix the generated files and symbols: a C identifier of at
 * most EXPORT_PREFIX_MAX characters that does not start with "kd_" (the
 * generated code's private names). */
int export_c_prefix_ok(const char *s);

/* 0 when every layer of m can be exported to C; else KD_ECONFIG with the
 * first layer that cannot, by index, name, kind and format, and why. */
int export_c_check(const nn_model *m, kd_err *e);

/* Writes DIR/PREFIX.h, DIR/PREFIX.c and DIR/main.c (DIR is created when
 * missing; the files are replaced atomically): a C99 translation of m in eval
 * mode with its weights as const arrays in each layer's stored format and
 * one entry point PREFIX_predict (see the generated header).  source names
 * the model in the generated comments (may be NULL).  KD_ECONFIG when a layer
 * cannot be exported (export_c_check) or prefix is not export_c_prefix_ok;
 * KD_EIO/KD_ENOMEM on write or allocation failure. */
int export_c(const nn_model *m, const char *dir, const char *prefix, const char *source,
             kd_err *e);

/* ---- ONNX ----------------------------------------------------------------------
 * Opset 13 and IR version 7: what Debian's python3-onnx 1.12 checker knows
 * (up to opset 17, IR 8) and ONNX Runtime (web included) runs; opset 13 has
 * per-axis QuantizeLinear/DequantizeLinear and Softmax over one axis. */
#define EXPORT_ONNX_OPSET 13
#define EXPORT_ONNX_IR 7

/* What an export changed in the model's representation, for the caller to
 * tell the user: layers whose stored format ONNX cannot carry as such. */
typedef struct {
    int int8, int8_dyn;     /* int8 layers as integer ONNX ops (static / dynamic) */
    int densified;          /* csr-fp32, csr-shared+huff, csr-int8: dense fp32 weights */
    int int4;               /* int4: dequantized to fp32 weights */
    char densified_names[192], int4_names[192]; /* "dense1, dense2" (cut with "...") */
} export_onnx_notes;

/* 0 when every layer of m can be exported to ONNX; else KD_ECONFIG naming
 * the first layer that cannot (index, name, kind, format) and why. */
int export_onnx_check(const nn_model *m, kd_err *e);

/* Writes m to path (atomically) as an ONNX model: input "input", float32
 * pixels scaled x/255 of shape [N, C, H, W] (or [N, F] for vector inputs);
 * the model's standardisation as its first nodes (Sub, Mul by 1/std, as
 * kdbench computes it); outputs "logits" and "probs" (Softmax), [N, classes].
 * fp32 layers as Gemm/Conv/BatchNormalization/Relu/MaxPool/Flatten; int8
 * layers in integers (QuantizeLinear or DynamicQuantizeLinear, MatMulInteger,
 * int32 bias, one float rescale; static int8 outputs requantized with
 * QuantizeLinear/DequantizeLinear); sparse and shared layers as dense fp32;
 * int4 as fp32 (INT4 tensors need opset 21, which the checker does not know).
 * source names the model in the metadata (may be NULL).  notes (may be NULL)
 * receives what was converted.  KD_ECONFIG (export_onnx_check), KD_EIO and
 * KD_ENOMEM on failure; nothing is written then. */
int export_onnx(const nn_model *m, const char *path, const char *source,
                export_onnx_notes *notes, kd_err *e);

#endif
