/* export — a model taken out of kdbench: standalone C (this folder's
 * export_c).  Reads layers through nn's ops tables and their facts (format,
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

#endif
