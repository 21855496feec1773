/* Shared helpers of the fuzz targets (fuzz_<name>.c): each target defines
 * LLVMFuzzerTestOneInput and is linked with libFuzzer (make fuzz) or with
 * replay.c (a plain main that feeds files to it, for any compiler).
 *
 * The loaders read files, so each input is written to a file in one
 * temporary folder per process, made on first use and removed at exit:
 * that folder is the harness's only state. */
#ifndef KD_FUZZ_H
#define KD_FUZZ_H

#include "../nn/nn.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One forward pass of m on a fixed input at batch 1, skipped when the
 * model's activations would exceed 2^20 floats (a loaded model must run). */
void fuzz_run_forward(nn_model *m);

/* The process's temporary folder (aborts if it cannot be made). */
const char *fuzz_dir(void);
/* fuzz_dir()/name into buf (cap bytes); returns buf. */
char *fuzz_path(char *buf, size_t cap, const char *name);
/* Writes n bytes to path, replacing it (aborts on failure: a harness bug). */
void fuzz_write(const char *path, const void *p, size_t n);

/* Writes data to path twice over: as it is, calling load(path) (the checksum
 * check), then with its last 4 bytes replaced by the CRC32 of the rest
 * (when it has at least 8), calling load(path) again, so mutations get past
 * the checksum to the parser (model files and checkpoints end in a CRC). */
void fuzz_with_crc(const char *path, const uint8_t *data, size_t size,
                   void (*load)(const char *path));

/* Splits data at FUZZ_SEP bytes into at most max parts: part[i], len[i];
 * returns the number of parts (>= 1). */
#define FUZZ_SEP 0x1e /* ASCII record separator */
int fuzz_split(const uint8_t *data, size_t size, const uint8_t **part, size_t *len, int max);

#endif
