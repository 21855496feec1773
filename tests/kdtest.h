/* Shared helpers for the Check suites. */
#ifndef KD_TEST_H
#define KD_TEST_H

#include <check.h>
#include <stddef.h>

#include "../nn/nn.h"

/* A fresh empty folder under $TMPDIR (or /tmp) for one test; never NULL. */
const char *kdt_tmpdir(char *buf, size_t n);
/* Writes n bytes to path (test fixtures). */
void kdt_write(const char *path, const void *p, size_t n);

/* The kdbench binary under test ($KD_BIN, set by make test; else bin/kdbench). */
const char *kdt_bin(void);
/* Runs "kdbench ARGS" through the shell; returns its exit status (128 when it
 * did not exit) and its stdout+stderr (the first out_n - 1 bytes) in out. */
int kdt_kdbench(char *out, size_t out_n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Numerical gradient check of one layer spec on input shape in with batch n:
 * loss = sum(y .* r) for a fixed random r; compares analytic dx and parameter
 * gradients against central differences (step h) with |a-b| <= tol*(1+|a|+|b|)
 * on every element.  Fails the calling test with the worst element named. */
void kdt_gradcheck_layer(const nn_layer_spec *spec, nn_shape in, int n, int train, double h,
                         double tol);

#endif
