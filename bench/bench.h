/* The parts of `make bench`, one function per file of bench/. */
#ifndef KD_BENCH_H
#define KD_BENCH_H

#include "../data/data.h"

/* bench_sparse.c: sparse vs dense latency ratios of the pruned MLP. */
void bench_sparse(void);
/* bench_quant.c: int8/int4/sparse-int8 kernels vs fp32, batch 1 and 256. */
void bench_quant(void);

/* bench_qmodels.c: the quantized layer kinds as whole models vs fp32. */
void bench_qmodels(void);

/* bench_qaccuracy.c: accuracy of the quantized variants of a trained MLP
 * (Fashion-MNIST; only with `kdbench-bench qaccuracy`). */
void bench_qaccuracy(void);

/* bench_isa.c: issue 11's table -- each format's batch-1 and batch-256
 * speed-up over fp32 against its target, per kernel level of this host. */
void bench_formats(void);

/* bench_serve.c: kdbench serve under load in-process (requests/s, p99,
 * the ratios); `kdbench-bench serve` runs it alone. */
void bench_serve(void);

/* bench_train.c (issue 12): the teacher MLP's training against the GEMM
 * ceiling of its shapes, its kernel-time share, and masked, QAT and
 * distilled epochs against plain ones (ratios of one run); returns the
 * MLP's training samples/s.  bench_train_cnn: the CNN against its ceiling. */
double bench_train(nn_model *m, const data_set *d);
void bench_train_cnn(nn_model *m, const data_set *d);
/* The held-mask and QAT epoch ratios of bench_train alone. */
void bench_train_qat(nn_model *m, const data_set *d);
/* Runs bench/torch_peer.py with Debian's /usr/bin/python3 and prints
 * kdbench / PyTorch for the same network, or why it is skipped. */
void bench_torch_peer(double kdbench_rate, int threads);

#endif
