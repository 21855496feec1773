/* The parts of `make bench`, one function per file of bench/. */
#ifndef KD_BENCH_H
#define KD_BENCH_H

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

#endif
