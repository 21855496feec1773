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

/* dir/NAME-images and dir/NAME-labels: an IDX pair of n 4x4 images (pixels
 * i * 37 mod 256) with labels i % nclasses. */
void kdt_write_idx(const char *dir, const char *name, int n, int nclasses);

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

/* ---- skips and kernel paths ------------------------------------------------
 * A test that cannot run on this host calls KDT_SKIP("why", ...): it prints
 * "SKIP <test>: why", is counted in the suite's closing line as skipped, and
 * returns from the test.  Kernel tests run once per ISA level with
 * KDT_ISA_LOOP(tc, fn) (tcase_add_loop_test over the levels); the test's
 * first statement KDT_ISA_BEGIN(_i) forces that level for the rest of the
 * test (each test runs in its own process) or skips it when the host cannot
 * run it.  The runner prints, per level, how many tests ran and skipped. */
#define KDT_SKIP(...)                                                                              \
    do {                                                                                           \
        kdt_skip_at(__func__, __VA_ARGS__);                                                        \
        return;                                                                                    \
    } while (0)
#define KDT_ISA_BEGIN(i)                                                                           \
    do {                                                                                           \
        if (!kdt_isa_begin(__func__, (i)))                                                         \
            return;                                                                                \
    } while (0)
#define KDT_ISA_LOOP(tc, fn) tcase_add_loop_test((tc), (fn), 0, KDT_NISA)
#define KDT_NISA 3 /* scalar, avx2, avx512: compress/kernels/cpu.h's KD_ISA_N */

void kdt_skip_at(const char *test, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Forces ISA level i (kd_isa) for this test; 0 after recording a skip when
 * the host cannot run it. */
int kdt_isa_begin(const char *test, int i);
/* The runner's side: where tests record skips and levels (an O_APPEND file
 * named by $KDT_LOG, since each test runs in a forked process). */
void kdt_log_open(void);
/* Prints the per-level lines and "kdtest: N passed, N failed, N skipped";
 * removes the log. */
void kdt_log_summary(int run, int failed);

#endif
