/* export_c: every layer kind and compressed format exported, compiled with
 * the system cc (-std=c99 -pedantic -Wall -Wextra -Werror), run on 300
 * inputs the test writes, and compared with nn_model_forward at the scalar
 * kernel level, one sample at a time (batch 1, as the C runs):
 *   fp32, csr-fp32, conv2d/batchnorm/maxpool, csr-int8 (float arithmetic,
 *   summation order differs from BLAS and the fast kernels): argmax identical,
 *   probabilities within 1e-5;
 *   int8 static and dynamic, all layers int8, and csr-int8-static: logits
 *   and probabilities bit-identical (the same integer arithmetic and float
 *   operations);
 *   int8 after a float conv (its input may round one step apart where the
 *   float input sits within an ulp of a rounding boundary): argmax identical,
 *   probabilities within 1e-3;
 *   int4: the float specification (quant_q4_gemm_ref, which the scalar level
 *   runs at batch 1): probabilities within 1e-5 (bit-identical on x86-64).
 * Kinds that cannot be exported are refused by name; the CLI is tested too. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../export/export.h"
#include "../compress/qtest.h"
#include "run.h"

#define NS 300 /* samples */

/* 1 when the system cc runs (else the caller skips). */
static int have_cc(const char *dir)
{
    char log[4200];
    snprintf(log, sizeof log, "%s/cc-version.txt", dir);
    char *argv[] = {"cc", "--version", NULL};
    return run_bounded(argv, NULL, log, 30) == 0;
}

/* Compiles DIR/main.c DIR/PREFIX.c into DIR/PREFIX; fails the test on error. */
static void compile(const char *dir, const char *prefix)
{
    char exe[4200], mainc[4200], modc[4200], log[4200];
    snprintf(exe, sizeof exe, "%s/%s", dir, prefix);
    snprintf(mainc, sizeof mainc, "%s/main.c", dir);
    snprintf(modc, sizeof modc, "%s/%s.c", dir, prefix);
    snprintf(log, sizeof log, "%s/cc.log", dir);
    char *argv[] = {"cc", "-O2", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Wshadow",
                    "-Wstrict-prototypes", "-Wmissing-prototypes", "-Werror", "-o", exe, mainc,
                    modc, "-lm", NULL};
    int st = run_bounded(argv, NULL, log, 180);
    if (st != 0)
        print_file(log);
    ck_assert_msg(st == 0, "cc failed (status %d) on %s", st, modc);
}

/* ---- inputs and the reference ------------------------------------------------------ */

/* NS random byte samples of m's input shape (as kdbench reads images). */
static data_set bytes_for(const nn_model *m, uint64_t seed)
{
    size_t sz = nn_shape_size(m->in);
    data_set d = {.n = NS, .shape = m->in, .nclasses = m->nclasses};
    d.x8 = kd_malloc((size_t)NS * sz);
    d.y = kd_calloc(NS, 1);
    ck_assert(d.x8 && d.y);
    nn_rng r = nn_rng_stream(seed, NN_STREAM_DATA);
    for (size_t i = 0; i < (size_t)NS * sz; i++)
        d.x8[i] = (uint8_t)nn_rng_below(&r, 256);
    return d;
}

/* An IDX file (0, 0, 8, 2; n; size) of d's bytes. */
static void write_idx(const char *path, const data_set *d)
{
    size_t sz = nn_shape_size(d->shape), n = (size_t)d->n * sz;
    uint8_t *b = kd_malloc(12 + n);
    ck_assert_ptr_nonnull(b);
    const uint8_t h[12] = {0, 0, 8, 2, (uint8_t)(d->n >> 24), (uint8_t)(d->n >> 16),
                           (uint8_t)(d->n >> 8), (uint8_t)d->n, (uint8_t)(sz >> 24),
                           (uint8_t)(sz >> 16), (uint8_t)(sz >> 8), (uint8_t)sz};
    memcpy(b, h, 12);
    memcpy(b + 12, d->x8, n);
    kdt_write(path, b, 12 + n);
    kd_free(b);
}

/* The generated code's softmax, in the same float operations. */
static void softmax(const float *z, int k, float *p)
{
    int best = 0;
    for (int j = 1; j < k; j++)
        if (z[j] > z[best])
            best = j;
    float mx = z[best], sum = 0.0f;
    for (int j = 0; j < k; j++) {
        p[j] = expf(z[j] - mx);
        sum += p[j];
    }
    for (int j = 0; j < k; j++)
        p[j] /= sum;
}

typedef enum { CMP_TOL, CMP_EXACT } cmp_mode;

/* Reads the program's lines ("class p... l...") and compares each with
 * m's batch-1 forward on the same sample; returns the samples whose logits
 * are not bit-identical. */
static int compare(nn_model *m, const data_set *d, const char *out_path, cmp_mode mode,
                   double tol)
{
    const int k = m->nclasses;
    size_t sz = nn_shape_size(m->in);
    float *x = kd_malloc(sz * sizeof *x), p[64], q[64], lc[64];
    ck_assert(x && k <= 64);
    FILE *f = fopen(out_path, "r");
    ck_assert_ptr_nonnull(f);
    nn_ctx c = {.train = 0};
    int differ = 0;
    double worst = 0;
    for (int i = 0; i < d->n; i++) {
        int cls;
        ck_assert_msg(fscanf(f, "%d", &cls) == 1, "sample %d: no output line", i);
        for (int j = 0; j < k; j++)
            ck_assert_int_eq(fscanf(f, "%f", &q[j]), 1);
        for (int j = 0; j < k; j++)
            ck_assert_int_eq(fscanf(f, "%f", &lc[j]), 1);
        data_batch(d, &i, 1, m->in_mean, m->in_std, x, NULL);
        const float *z = nn_model_forward(m, x, 1, &c);
        ck_assert_ptr_nonnull(z);
        softmax(z, k, p);
        int best = 0;
        for (int j = 1; j < k; j++)
            best = z[j] > z[best] ? j : best;
        ck_assert_msg(cls == best, "sample %d: C says class %d, kdbench %d", i, cls, best);
        differ += memcmp(z, lc, (size_t)k * sizeof *z) != 0;
        for (int j = 0; j < k; j++) {
            double dp = fabs((double)p[j] - q[j]);
            worst = dp > worst ? dp : worst;
            if (mode == CMP_EXACT)
                ck_assert_msg(z[j] == lc[j] && p[j] == q[j],
                              "sample %d class %d: logit %a (C) vs %a, prob %.9g vs %.9g", i, j,
                              (double)lc[j], (double)z[j], (double)q[j], (double)p[j]);
            else
                ck_assert_msg(dp <= tol, "sample %d class %d: probability %.9g (C) vs %.9g", i,
                              j, (double)q[j], (double)p[j]);
        }
    }
    int extra;
    ck_assert_msg(fscanf(f, "%d", &extra) != 1, "more output lines than samples");
    fclose(f);
    kd_free(x);
    fprintf(stderr, "export: %d of %d samples' logits not bit-identical, worst |dp| %.3g\n",
            differ, d->n, worst);
    return differ;
}

/* Exports m, compiles it, runs it on NS samples and compares (see compare). */
static int export_run(nn_model *m, cmp_mode mode, double tol)
{
    char dir[4096], idx[4200], out[4200], exe[4200];
    kdt_tmpdir(dir, sizeof dir);
    if (!have_cc(dir))
        return -1;
    kd_err e = {0};
    ck_assert_msg(export_c(m, dir, "model", "test", &e) == KD_OK, "%s", e.msg);
    compile(dir, "model");
    data_set d = bytes_for(m, 7);
    snprintf(idx, sizeof idx, "%s/in.idx", dir);
    snprintf(out, sizeof out, "%s/out.txt", dir);
    snprintf(exe, sizeof exe, "%s/model", dir);
    write_idx(idx, &d);
    char *argv[] = {exe, "-p", "-l", idx, NULL};
    int st = run_bounded(argv, NULL, out, 60);
    if (st != 0)
        print_file(out);
    ck_assert_int_eq(st, 0);
    int differ = compare(m, &d, out, mode, tol);
    data_set_free(&d);
    return differ;
}

#define EXPORT_RUN(m, mode, tol, differ)                                                   \
    do {                                                                                   \
        (differ) = export_run((m), (mode), (tol));                                         \
        if ((differ) < 0) {                                                                \
            nn_model_free(m);                                                              \
            KDT_SKIP("no working cc on PATH: the generated C cannot be compiled here");    \
        }                                                                                  \
    } while (0)

/* ---- models ----------------------------------------------------------------------- */

/* qt_mlp with a standardisation to carry into the C. */
static nn_model *mlp(int in, int h1, int h2, int out, uint64_t seed)
{
    nn_model *m = qt_mlp(in, h1, h2, out, seed);
    m->in_mean = 0.3f;
    m->in_std = 0.35f;
    return m;
}

/* conv (pad 1) -> batchnorm (random running stats) -> relu -> maxpool ->
 * conv (4 channels in, pad 1) -> relu -> flatten -> dropout -> dense, on 1x9x9. */
static nn_model *cnn(uint64_t seed)
{
    const nn_layer_spec s[] = {
        {.kind = NN_CONV2D, .filters = 4, .kernel = 3, .pad = 1}, {.kind = NN_BATCHNORM},
        {.kind = NN_RELU}, {.kind = NN_MAXPOOL2D, .kernel = 2},
        {.kind = NN_CONV2D, .filters = 5, .kernel = 3, .pad = 1}, {.kind = NN_RELU},
        {.kind = NN_FLATTEN}, {.kind = NN_DROPOUT, .rate = 0.2f},
        {.kind = NN_DENSE, .units = 6}};
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){1, 9, 9}, s, 9, NULL, &e);
    ck_assert_msg(m != NULL, "%s", e.msg);
    nn_model_init(m, seed);
    nn_rng r = nn_rng_stream(seed, NN_STREAM_TEST);
    nn_layer *bn = &m->layers[1];
    for (int c = 0; c < bn->in.c; c++) {
        bn->w[c] = 1.0f + 0.3f * nn_rng_normal(&r);
        bn->b[c] = 0.2f * nn_rng_normal(&r);
        bn->buf[c] = 0.1f * nn_rng_normal(&r);
        bn->buf[bn->in.c + c] = 0.5f + nn_rng_uniform(&r);
    }
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i].spec.kind != NN_BATCHNORM)
            for (size_t j = 0; j < m->layers[i].nb; j++)
                m->layers[i].b[j] = 0.1f * nn_rng_normal(&r);
    m->in_mean = 0.5f;
    m->in_std = 0.25f;
    return m;
}

static nn_model *quantized(nn_model *m, compress_qmode mode)
{
    data_set calib = bytes_for(m, 3);
    calib.n = COMPRESS_CALIB_BATCH;
    nn_model *q = qt_quantize(m, mode, &calib);
    data_set_free(&calib);
    nn_model_free(m);
    return q;
}

/* m pruned to 70% and stored as CSR (m is freed). */
static nn_model *sparse(nn_model *m)
{
    kd_err e = {0};
    compress_prune_spec ps = {.sparsity = 0.7f};
    ck_assert_int_eq(compress_prune_magnitude(m, &ps, NULL, &e), KD_OK);
    compress_sparse_opts o = {.policy = COMPRESS_SPARSE_ALWAYS};
    nn_model *s = compress_to_sparse(m, &o, NULL, &e);
    ck_assert_msg(s != NULL, "%s", e.msg);
    nn_model_free(m);
    return s;
}

/* ---- every kind, exported and run ------------------------------------------------- */

static nn_model *fp32_mlp(void) { return mlp(36, 24, 16, 5, 1); }
static nn_model *fp32_cnn(void) { return cnn(2); }
/* 300 inputs: the first layer's columns need 2 bytes, the others 1 */
static nn_model *csr_fp32(void) { return sparse(mlp(300, 24, 16, 5, 3)); }
static nn_model *int8_static(void) { return quantized(mlp(36, 24, 16, 5, 4), COMPRESS_Q_STATIC8); }
static nn_model *int8_dynamic(void)
{
    return quantized(mlp(36, 24, 16, 5, 5), COMPRESS_Q_DYNAMIC8);
}
/* 50 inputs: the last group of a row holds 18 weights and 14 of padding */
static nn_model *int4(void) { return quantized(mlp(50, 40, 16, 5, 6), COMPRESS_Q_INT4); }
static nn_model *csr_int8(void)
{
    return quantized(sparse(mlp(300, 24, 16, 5, 7)), COMPRESS_Q_STATIC8);
}
static nn_model *int8_after_conv(void) { return quantized(cnn(8), COMPRESS_Q_STATIC8); }
/* csr-int8 with its inputs quantized too (sparse_static) */
static nn_model *csr_int8_static(void)
{
    nn_model *m = sparse(mlp(300, 24, 16, 5, 12));
    data_set calib = bytes_for(m, 3);
    calib.n = COMPRESS_CALIB_BATCH;
    compress_quant_spec s = {.mode = COMPRESS_Q_STATIC8, .per_channel = 1, .calib_batches = 1,
                             .sparse_static = 1};
    kd_err e = {0};
    nn_model *q = compress_quantize(m, &s, &calib, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    data_set_free(&calib);
    nn_model_free(m);
    return q;
}
/* the same with its inputs quantized per call (csr-int8-dyn) */
static nn_model *csr_int8_dyn(void)
{
    nn_model *m = sparse(mlp(300, 24, 16, 5, 13));
    compress_quant_spec s = {.mode = COMPRESS_Q_DYNAMIC8, .per_channel = 1, .sparse_static = 1};
    kd_err e = {0};
    nn_model *q = compress_quantize(m, &s, NULL, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    nn_model_free(m);
    return q;
}
/* 70% pruned, then 8 shared values a layer (csr-shared+huff, and csr-shared
 * uncoded: written as csr-fp32) */
static nn_model *shared_of(int uncoded)
{
    nn_model *m = mlp(300, 24, 16, 5, 9);
    kd_err e = {0};
    compress_prune_spec ps = {.sparsity = 0.7f};
    ck_assert_int_eq(compress_prune_magnitude(m, &ps, NULL, &e), KD_OK);
    compress_cluster_spec cs = {.clusters = 8, .uncoded = uncoded};
    nn_model *q = compress_cluster(m, &cs, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    nn_model_free(m);
    return q;
}
static nn_model *shared(void) { return shared_of(0); }
/* int2 / int3 weights (50 inputs: the last group of a row holds 18 weights) */
static nn_model *int2(void) { return qt_lowbit(mlp(50, 40, 16, 5, 10), 2); }
static nn_model *int3(void) { return qt_lowbit(mlp(50, 40, 16, 5, 11), 3); }
static nn_model *shared_raw(void) { return shared_of(1); }

/* A model, the format one of its layers must have, and how the C must agree. */
static const struct {
    const char *name;
    nn_model *(*build)(void);
    int layer;
    const char *format;
    cmp_mode mode;
    double tol;
} kinds[] = {
    {"fp32 mlp", fp32_mlp, 0, "fp32", CMP_TOL, 1e-5},
    {"fp32 cnn (conv2d, batchnorm, maxpool)", fp32_cnn, 0, "fp32", CMP_TOL, 1e-5},
    {"csr-fp32", csr_fp32, 0, "csr-fp32", CMP_TOL, 1e-5},
    {"int8 static", int8_static, 5, "int8", CMP_EXACT, 0},
    {"int8 dynamic", int8_dynamic, 0, "int8-dyn", CMP_EXACT, 0},
    {"int4", int4, 0, "int4", CMP_TOL, 1e-5},
    {"csr-int8", csr_int8, 0, "csr-int8", CMP_TOL, 1e-5},
    {"csr-int8-static", csr_int8_static, 0, "csr-int8-static", CMP_EXACT, 0},
    {"csr-int8-dyn", csr_int8_dyn, 0, "csr-int8-dyn", CMP_EXACT, 0},
    {"int8 after a float conv", int8_after_conv, 8, "int8", CMP_TOL, 1e-3},
    {"csr-shared+huff", shared, 0, "csr-shared+huff", CMP_TOL, 1e-5},
    {"csr-shared", shared_raw, 0, "csr-shared", CMP_TOL, 1e-5},
    {"int2", int2, 0, "int2", CMP_TOL, 1e-5},
    {"int3", int3, 0, "int3", CMP_TOL, 1e-5},
};
#define NKINDS (int)(sizeof kinds / sizeof kinds[0])

START_TEST(test_kind)
{
    kernels_isa_force(KD_ISA_SCALAR);
    nn_model *m = kinds[_i].build();
    fprintf(stderr, "export: %s\n", kinds[_i].name);
    ck_assert_str_eq(nn_layer_format(&m->layers[kinds[_i].layer]), kinds[_i].format);
    int differ;
    EXPORT_RUN(m, kinds[_i].mode, kinds[_i].tol, differ);
    if (kinds[_i].mode == CMP_EXACT)
        ck_assert_int_eq(differ, 0);
    nn_model_free(m);
}
END_TEST

/* ---- refusals ---------------------------------------------------------------------- */

/* dense_fq (QAT's fake quant) is refused, naming the layer, kind and format */
START_TEST(test_refuses_fakequant)
{
    nn_model *m = mlp(20, 8, 8, 3, 9);
    compress_quant_spec s = {.mode = COMPRESS_Q_STATIC8, .per_channel = 1};
    kd_err e = {0};
    nn_model *q = compress_qat_prepare(m, &s, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    char dir[4096];
    kdt_tmpdir(dir, sizeof dir);
    ck_assert_int_eq(export_c(q, dir, "model", NULL, &e), KD_ECONFIG);
    ck_assert_msg(strstr(e.msg, "layer 0 (dense1)") && strstr(e.msg, "dense_fq") &&
                      strstr(e.msg, "fp32-fakequant"), "%s", e.msg);
    char path[4200];
    snprintf(path, sizeof path, "%s/model.c", dir);
    ck_assert_int_ne(access(path, F_OK), 0); /* nothing written */
    nn_model_free(q);
    nn_model_free(m);
}
END_TEST

START_TEST(test_prefix_rules)
{
    ck_assert(export_c_prefix_ok("model"));
    ck_assert(export_c_prefix_ok("_net2"));
    ck_assert(!export_c_prefix_ok(""));
    ck_assert(!export_c_prefix_ok("2net"));
    ck_assert(!export_c_prefix_ok("my-net"));
    ck_assert(!export_c_prefix_ok("kd_act"));
    ck_assert(!export_c_prefix_ok("a23456789012345678901234567890123"));
}
END_TEST

/* ---- the command line -------------------------------------------------------------- */

START_TEST(test_cli_usage)
{
    char out[4096], dir[4096], path[4200];
    kdt_tmpdir(dir, sizeof dir);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "export"), 2);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "export %s/m.kdm", dir), 2);
    ck_assert_ptr_nonnull(strstr(out, "--c DIR"));
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "export --c %s", dir), 2);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "export %s/m.kdm --c", dir), 2);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "export %s/m.kdm --c %s --bogus x", dir, dir), 2);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "export %s/m.kdm --c %s --prefix 9x", dir, dir),
                     2);
    ck_assert_ptr_nonnull(strstr(out, "9x"));
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "export --help"), 0);
    ck_assert_ptr_nonnull(strstr(out, "usage: kdbench export"));
    /* a file that is not a model: the loader's message, exit 1 */
    snprintf(path, sizeof path, "%s/bad.kdm", dir);
    kdt_write(path, "KDBMgarbage", 11);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "export %s --c %s/o", path, dir), 1);
    ck_assert_msg(strstr(out, "kdbench: ") && strstr(out, "bad.kdm"), "%s", out);
    snprintf(path, sizeof path, "%s/o", dir);
    ck_assert_int_ne(access(path, F_OK), 0); /* refused before writing anything */
}
END_TEST

START_TEST(test_cli_refuses_kind)
{
    char out[4096], dir[4096], path[4200];
    kdt_tmpdir(dir, sizeof dir);
    nn_model *m = mlp(20, 8, 8, 3, 10);
    compress_quant_spec s = {.mode = COMPRESS_Q_INT4};
    kd_err e = {0};
    nn_model *q = compress_qat_prepare(m, &s, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    snprintf(path, sizeof path, "%s/qat.kdm", dir);
    ck_assert_int_eq(nn_model_save(q, path, &e), KD_OK);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "export %s --c %s/o", path, dir), 2);
    ck_assert_msg(strstr(out, "dense_fq") && strstr(out, "cannot be exported"), "%s", out);
    nn_model_free(q);
    nn_model_free(m);
}
END_TEST

/* The whole path through the binary: a saved CNN exported with a prefix,
 * compiled, fed numbers on stdin (hex floats), classes as kdbench's. */
START_TEST(test_cli_roundtrip_stdin)
{
    kernels_isa_force(KD_ISA_SCALAR);
    char out[4096], dir[4096], path[4200], in[4200], res[4200], exe[4200];
    kdt_tmpdir(dir, sizeof dir);
    if (!have_cc(dir))
        KDT_SKIP("no working cc on PATH: the generated C cannot be compiled here");
    nn_model *m = cnn(11);
    kd_err e = {0};
    snprintf(path, sizeof path, "%s/cnn.kdm", dir);
    ck_assert_int_eq(nn_model_save(m, path, &e), KD_OK);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "export %s --c %s/c --prefix net", path, dir),
                     0);
    snprintf(path, sizeof path, "%s/c", dir);
    compile(path, "net");
    data_set d = bytes_for(m, 12);
    snprintf(in, sizeof in, "%s/in.txt", dir);
    FILE *f = fopen(in, "w");
    ck_assert_ptr_nonnull(f);
    size_t sz = nn_shape_size(m->in);
    for (size_t i = 0; i < (size_t)d.n * sz; i++)
        fprintf(f, "%a%c", (double)((float)d.x8[i] / 255.0f), (i + 1) % sz ? ' ' : '\n');
    fclose(f);
    snprintf(res, sizeof res, "%s/out.txt", dir);
    snprintf(exe, sizeof exe, "%s/c/net", dir);
    char *argv[] = {exe, "-l", "-p", NULL};
    ck_assert_int_eq(run_bounded(argv, in, res, 60), 0);
    compare(m, &d, res, CMP_TOL, 1e-5);
    data_set_free(&d);
    nn_model_free(m);
}
END_TEST

Suite *suite_export(void)
{
    Suite *s = suite_create("export");
    TCase *tc = tcase_create("c");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_kind, 0, NKINDS);
    tcase_add_test(tc, test_refuses_fakequant);
    tcase_add_test(tc, test_prefix_rules);
    tcase_add_test(tc, test_cli_usage);
    tcase_add_test(tc, test_cli_refuses_kind);
    tcase_add_test(tc, test_cli_roundtrip_stdin);
    suite_add_tcase(s, tc);
    return s;
}
