/* `kdbench-bench qaccuracy` (not in the default make bench: it trains on
 * Fashion-MNIST for about a minute): test accuracy of the quantized variants
 * of a trained 784-1200-1200-10 MLP against its fp32 accuracy, with file
 * bytes — post-training int8 (min/max, percentile), dynamic int8, int4,
 * int4 after one epoch of QAT (with fp32 trained one more epoch as its
 * control), and 90% pruning (one fine-tuning epoch with
 * the mask) stored as CSR int8. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../compress/compress.h"
#include "bench.h"

static long long qa_bytes(const nn_model *m)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/kdbench-qa-%d.kdm", (int)getpid());
    kd_err e = {0};
    long long n = nn_model_save(m, path, &e) == KD_OK ? kd_file_size(path) : -1;
    unlink(path);
    return n;
}

static double qa_acc(nn_model *m, const data_set *t)
{
    double loss, acc;
    kd_err e = {0};
    return train_evaluate(m, t, 256, &loss, &acc, &e) == KD_OK ? 100.0 * acc : -1.0;
}

static int qa_mask_step(void *ctx, nn_model *m, float lr, kd_err *e)
{
    (void)lr;
    (void)e;
    compress_mask_apply(ctx, m);
    return KD_OK;
}

/* Trains m for epochs more (from its current weights); h may set on_step. */
static int qa_train(nn_model *m, const data_set *tr, int epochs, float lr, train_hooks *h,
                    kd_err *e)
{
    train_opts o = {.epochs = epochs, .batch_size = 128, .seed = 7,
                    .opt = {.kind = NN_OPT_ADAMW, .lr = lr}};
    train_state st;
    float mean = m->in_mean, sd = m->in_std;
    int rc = train_state_init(&st, m, &o, e);
    if (rc == KD_OK)
        rc = train_fit(&st, &o, tr, NULL, h, e);
    train_state_free(&st);
    if (sd != 1.0f || mean != 0.0f) { /* keep the normalisation of the first training */
        m->in_mean = mean;
        m->in_std = sd;
    }
    return rc;
}

static void qa_row(const char *name, nn_model *q, const data_set *te, double fp_acc,
                   long long fp_bytes)
{
    double a = qa_acc(q, te);
    long long b = qa_bytes(q);
    printf("  %-24s acc %6.2f%% (%+5.2f)  file %8lld B (%.3fx, %4.1fx smaller)  bits %d\n", name,
           a, a - fp_acc, b, (double)b / fp_bytes, (double)fp_bytes / b,
           compress_model_weight_bits(q));
    nn_model_free(q);
}

static nn_model *qa_quant(nn_model *m, compress_qmode mode, compress_calib calib,
                          const data_set *tr, kd_err *e)
{
    compress_quant_spec s = {.mode = mode, .per_channel = 1, .calib = calib,
                             .percentile = 99.99f, .calib_batches = 8};
    return compress_quantize(m, &s, tr, e);
}

/* 90% magnitude pruning, one masked fine-tuning epoch, CSR, int8. */
static nn_model *qa_pruned(const nn_model *m, const data_set *tr, kd_err *e)
{
    nn_model *p = nn_model_clone(m, e), *sp = NULL, *q = NULL;
    compress_mask *k = p ? compress_mask_new(p, e) : NULL;
    compress_prune_spec ps = {.sparsity = 0.9f};
    train_hooks h = {.quiet = 1, .on_step = qa_mask_step, .step_ctx = k};
    compress_sparse_opts all = {.policy = COMPRESS_SPARSE_ALWAYS};
    compress_quant_spec s8 = {.mode = COMPRESS_Q_STATIC8, .per_channel = 1};
    if (k && compress_prune_magnitude(p, &ps, k, e) == KD_OK &&
        qa_train(p, tr, 1, 3e-4f, &h, e) == KD_OK && (sp = compress_to_sparse(p, &all, NULL, e)))
        q = compress_quantize(sp, &s8, NULL, e);
    compress_mask_free(k);
    nn_model_free(sp);
    nn_model_free(p);
    return q;
}

static int qa_run(nn_model *m, const data_set *tr, const data_set *te, kd_err *e)
{
    train_hooks quiet = {.quiet = 1};
    if (qa_train(m, tr, 2, 1e-3f, &quiet, e) != KD_OK)
        return e->code;
    double fa = qa_acc(m, te);
    long long fb = qa_bytes(m);
    printf("quantized accuracy, 784-1200-1200-10 MLP, 2 epochs on Fashion-MNIST:\n"
           "  %-24s acc %6.2f%%          file %8lld B\n", "fp32", fa, fb);
    nn_model *q;
    if ((q = qa_quant(m, COMPRESS_Q_STATIC8, COMPRESS_CALIB_MINMAX, tr, e)))
        qa_row("int8 (min/max)", q, te, fa, fb);
    if ((q = qa_quant(m, COMPRESS_Q_STATIC8, COMPRESS_CALIB_PERCENTILE, tr, e)))
        qa_row("int8 (99.99 pct)", q, te, fa, fb);
    if ((q = qa_quant(m, COMPRESS_Q_DYNAMIC8, 0, NULL, e)))
        qa_row("int8-dyn", q, te, fa, fb);
    if ((q = qa_quant(m, COMPRESS_Q_INT4, 0, NULL, e)))
        qa_row("int4 PTQ", q, te, fa, fb);
    nn_model *more = nn_model_clone(m, e); /* the control: QAT's extra epoch, in fp32 */
    if (more && qa_train(more, tr, 1, 1e-4f, &quiet, e) == KD_OK)
        qa_row("fp32 +1 epoch (control)", more, te, fa, fb);
    else
        nn_model_free(more);
    compress_quant_spec s4 = {.mode = COMPRESS_Q_INT4};
    nn_model *fq = compress_qat_prepare(m, &s4, e);
    if (fq && qa_train(fq, tr, 1, 1e-4f, &quiet, e) == KD_OK &&
        (q = compress_quantize(fq, &s4, NULL, e)))
        qa_row("int4 QAT (1 epoch)", q, te, fa, fb);
    nn_model_free(fq);
    if ((q = qa_pruned(m, tr, e)))
        qa_row("prune 90% + csr-int8", q, te, fa, fb);
    return e->code;
}

void bench_qaccuracy(void)
{
    data_set tr = {0}, te = {0};
    kd_err e = {0};
    const nn_layer_spec mlp[] = {{.kind = NN_FLATTEN}, {.kind = NN_DENSE, .units = 1200},
                                 {.kind = NN_RELU}, {.kind = NN_DENSE, .units = 1200},
                                 {.kind = NN_RELU}, {.kind = NN_DENSE, .units = 10}};
    nn_model *m = NULL;
    if (data_idx_load(DATA_FASHION_DIR "/train-images-idx3-ubyte.gz",
                      DATA_FASHION_DIR "/train-labels-idx1-ubyte.gz", 0, &tr, &e) != KD_OK ||
        data_idx_load(DATA_FASHION_DIR "/t10k-images-idx3-ubyte.gz",
                      DATA_FASHION_DIR "/t10k-labels-idx1-ubyte.gz", 0, &te, &e) != KD_OK ||
        !(m = nn_model_new(tr.shape, mlp, 6, NULL, &e))) {
        printf("quantized accuracy: %s\n", e.msg);
    } else {
        nn_model_init(m, 1);
        if (qa_run(m, &tr, &te, &e) != KD_OK)
            printf("quantized accuracy: %s\n", e.msg);
    }
    nn_model_free(m);
    data_set_free(&tr);
    data_set_free(&te);
}
