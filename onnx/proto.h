/* onnx/proto — ONNX model files in and out, through the protobuf-c code
 * generated at build time from the onnx.proto Debian ships (libonnx-dev):
 * no hand-written protobuf reader.  Reading is bounded (a file size cap and
 * every allocation counted against a budget), so a hostile file is refused
 * with a message rather than exhausting memory.  Import (onnx -> nn model)
 * and export (kdbench kinds -> onnx) build on these calls. */
#ifndef KD_ONNX_PROTO_H
#define KD_ONNX_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "onnx/onnx.pb-c.h" /* generated into $(BUILD)/gen by protoc-c */
#include "../util/util.h"

/* Files larger than this are refused before reading (protobuf's own 2 GiB limit). */
#define ONNX_MAX_FILE ((size_t)2 << 30)

/* A parsed ONNX file: the model and the allocator that owns it. */
typedef struct onnx_file onnx_file;

/* Parses an ONNX ModelProto from buf[0..n).  Allocations are capped at
 * max_alloc bytes in all (0: 8 × n + 1 MiB, enough for any honest file);
 * NULL with e set (KD_EFORMAT) on malformed, truncated or over-budget input,
 * KD_ENOMEM when memory ran out.  Free with onnx_file_free. */
onnx_file *onnx_file_unpack(const uint8_t *buf, size_t n, size_t max_alloc, kd_err *e);
/* Reads path (at most ONNX_MAX_FILE bytes) and parses it; errors name the path. */
onnx_file *onnx_file_read(const char *path, kd_err *e);
/* The parsed model (never NULL for a file onnx_file_* returned). */
const Onnx__ModelProto *onnx_file_model(const onnx_file *f);
void onnx_file_free(onnx_file *f);

/* Serializes m and writes it to path atomically (kd_write_atomic). */
int onnx_model_write(const char *path, const Onnx__ModelProto *m, kd_err *e);

#endif
