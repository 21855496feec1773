/* export_onnx, verified by runtimes no one here wrote:
 *   - onnx.checker.check_model(full_check=True) of Debian's python3-onnx
 *     (/usr/bin/python3) on every export;
 *   - ONNX Runtime's WebAssembly build (onnxruntime-web ORT_WEB_VERSION under
 *     Node, installed once by npm into a cache folder shared by every build
 *     of the checkout) runs every export on NS real Fashion-MNIST test images
 *     (random bytes when the dataset is missing) in one batch, in one node
 *     process, compared with kdbench's forward on the same batch at the
 *     scalar kernel level: argmax identical on >= 99.9% of samples;
 *     probabilities within 1e-4 for the float exports (fp32, pruned, shared,
 *     csr-int8, and int4 as fp32) and for dynamic int8 and csr-int8-static
 *     (the same integers);
 *     static int8 within one quantization step (int8_step): kdbench
 *     requantizes an int8 output with TFLite's fixed-point multiplier
 *     (rounding twice), ONNX's QuantizeLinear divides in float and rounds
 *     once, half to even, so a code can land one step apart where the exact
 *     value sits near a half-way point;
 *   - the graph itself read back through onnx_file_read (ops, types, sizes);
 * and the refusals and the command line (exit 2 naming the kind, a write
 * error for an unwritable path, nothing written on failure). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../export/export.h"
#include "../../onnx/proto.h"
#include "../compress/qtest.h"
#include "run.h"

#include "onnx_fixtures.h"

/* ---- the graph, read back ---------------------------------------------------------------- */

static int count_op(const Onnx__GraphProto *g, const char *op)
{
    int n = 0;
    for (size_t i = 0; i < g->n_node; i++)
        n += !strcmp(g->node[i]->op_type, op);
    return n;
}

static const Onnx__TensorProto *init_named(const Onnx__GraphProto *g, const char *name)
{
    for (size_t i = 0; i < g->n_initializer; i++)
        if (!strcmp(g->initializer[i]->name, name))
            return g->initializer[i];
    return NULL;
}

START_TEST(test_graph)
{
    char dir[4096], path[4200];
    kdt_tmpdir(dir, sizeof dir);
    data_set d = images(0);
    nn_model *m = export_one(_i, &d, dir);
    snprintf(path, sizeof path, "%s/%s.onnx", dir, models[_i].name);
    kd_err e = {0};
    onnx_file *f = onnx_file_read(path, &e);
    ck_assert_msg(f != NULL, "%s", e.msg);
    const Onnx__ModelProto *mp = onnx_file_model(f);
    const Onnx__GraphProto *g = mp->graph;
    ck_assert_int_eq(mp->ir_version, EXPORT_ONNX_IR);
    ck_assert_int_eq(mp->opset_import[0]->version, EXPORT_ONNX_OPSET);
    ck_assert_uint_ge(g->n_node, 4);
    ck_assert_str_eq(g->node[0]->op_type, "Sub"); /* the standardisation comes first */
    ck_assert_str_eq(g->node[1]->op_type, "Mul");
    ck_assert_str_eq(g->node[g->n_node - 1]->op_type, "Softmax");
    ck_assert_uint_eq(g->n_input, 1);
    ck_assert_str_eq(g->input[0]->name, "input");
    ck_assert_uint_eq(g->n_output, 2);
    ck_assert_str_eq(g->output[0]->name, "probs");
    ck_assert_str_eq(g->output[1]->name, "logits");
    ck_assert_int_ge(count_op(g, models[_i].op), 1);
    const nn_layer *l = &m->layers[models[_i].layer];
    char name[96];
    if (!strcmp(models[_i].format, "int8") || !strcmp(models[_i].format, "int8-dyn") ||
        !strcmp(models[_i].format, "csr-int8-static") ||
        !strcmp(models[_i].format, "csr-int8-dyn")) {
        /* the int8 weights travel as int8: [k, units], one byte each (csr-int8-static's
         * entries with their zeros) */
        snprintf(name, sizeof name, "%s.W_q", l->spec.name);
        const Onnx__TensorProto *t = init_named(g, name);
        ck_assert_ptr_nonnull(t);
        ck_assert_int_eq(t->data_type, ONNX__TENSOR_PROTO__DATA_TYPE__INT8);
        ck_assert_uint_eq(t->raw_data.len, nn_shape_size(l->in) * (size_t)l->spec.units);
        ck_assert_int_eq(count_op(g, "Gemm"), 0);
    } else if (l->spec.kind == NN_DENSE) {
        /* every other dense layer as a dense fp32 Gemm, zeros included */
        snprintf(name, sizeof name, "%s.W", l->spec.name);
        const Onnx__TensorProto *t = init_named(g, name);
        ck_assert_ptr_nonnull(t);
        ck_assert_int_eq(t->data_type, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
        ck_assert_uint_eq(t->raw_data.len, 4 * nn_shape_size(l->in) * (size_t)l->spec.units);
        ck_assert_int_eq(count_op(g, "MatMulInteger"), 0);
    }
    onnx_file_free(f);
    nn_model_free(m);
    data_set_free(&d);
}
END_TEST

/* Every allocation of an export failing in turn: an error, no leak (ASan),
 * no file; then it succeeds. */
START_TEST(test_alloc_failures)
{
    char dir[4096], path[4200];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/m.onnx", dir);
    data_set d = images(0);
    nn_model *m = m_int8_dyn(&d);
    int rc = KD_ENOMEM, n = 0;
    for (; rc != KD_OK && n < 100000; n++) {
        kd_err e = {0};
        kd_alloc_fail_after(n);
        rc = export_onnx(m, path, "m", NULL, &e);
        kd_alloc_fail_after(-1);
        if (rc != KD_OK) {
            ck_assert_msg(rc < 0 && e.msg[0], "export failed (%d) without a message", rc);
            ck_assert_int_ne(access(path, F_OK), 0);
        }
    }
    ck_assert_int_eq(rc, KD_OK);
    fprintf(stderr, "onnx export: %d allocation failures refused cleanly\n", n - 1);
    nn_model_free(m);
    data_set_free(&d);
}
END_TEST

/* ---- external tools --------------------------------------------------------------------- */

/* The repository: two levels above the binary under test (bin/kdbench,
 * build-asan/kdbench), so every build shares one npm cache. */
static void repo_root(char *buf, size_t n)
{
    char real[PATH_MAX];
    ck_assert_msg(realpath(kdt_bin(), real) != NULL, "kdbench binary %s: %s", kdt_bin(),
                  strerror(errno));
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(real, '/');
        ck_assert_ptr_nonnull(slash);
        *slash = 0;
    }
    snprintf(buf, n, "%s", real);
}

/* Runs argv (bounded) with output into dir/log.txt; the status. */
static int run_logged(char *const argv[], const char *dir, const char *log, int timeout_s)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, log);
    return run_bounded(argv, NULL, path, timeout_s);
}

/* onnxruntime-web ORT_WEB_VERSION in $KD_NPM_CACHE (else REPO/build/npm-cache)
 * /onnxruntime-web-VERSION, installed by npm the first time only (into a
 * temporary folder renamed when complete, so an interrupted install is
 * never taken for a finished one).  0 with the folder in out, or 1 with the
 * reason in why (npm missing or the install failed). */
static int ort_folder(const char *tmp, char *out, size_t n, char *why, size_t wn)
{
    char root[PATH_MAX], cache[PATH_MAX + 64], staging[PATH_MAX + 128], npmcache[PATH_MAX + 64];
    const char *env = getenv("KD_NPM_CACHE");
    repo_root(root, sizeof root);
    if (env && *env)
        snprintf(cache, sizeof cache, "%s", env);
    else
        snprintf(cache, sizeof cache, "%s/build/npm-cache", root);
    ck_assert_int_lt(snprintf(out, n, "%s/onnxruntime-web-" ORT_WEB_VERSION, cache), (int)n);
    char probe[PATH_MAX + 256];
    snprintf(probe, sizeof probe, "%s/node_modules/onnxruntime-web/package.json", out);
    if (access(probe, R_OK) == 0)
        return 0;
    kd_err e = {0};
    ck_assert_msg(kd_mkdirs(cache, &e) == KD_OK, "%s", e.msg);
    snprintf(staging, sizeof staging, "%s.tmp.%ld", out, (long)getpid());
    ck_assert_int_lt(snprintf(npmcache, sizeof npmcache, "%s/_npm", cache), (int)sizeof npmcache);
    fprintf(stderr, "onnx export: npm install onnxruntime-web@" ORT_WEB_VERSION " into %s\n",
            out);
    char *argv[] = {"npm", "install", "--prefix", staging, "--cache", npmcache, "--no-audit",
                    "--no-fund", "--no-save", "--ignore-scripts", "--loglevel=error",
                    "onnxruntime-web@" ORT_WEB_VERSION, NULL};
    int st = run_logged(argv, tmp, "npm.log", 600);
    snprintf(probe, sizeof probe, "%s/node_modules/onnxruntime-web/package.json", staging);
    if (st != 0 || access(probe, R_OK) != 0) {
        char log[4200];
        snprintf(log, sizeof log, "%s/npm.log", tmp);
        print_file(log);
        snprintf(why, wn, "%s", st == 127 ? "npm is not on PATH"
                                          : "npm could not install onnxruntime-web@" ORT_WEB_VERSION
                                            " (no access to the npm registry?)");
        return 1;
    }
    if (rename(staging, out) != 0) { /* another run finished first: use its copy */
        char *rm[] = {"rm", "-rf", staging, NULL};
        run_logged(rm, tmp, "rm.log", 120);
        ck_assert_int_eq(access(out, R_OK), 0);
    }
    return 0;
}

/* 1 when the command runs and exits 0. */
static int tool_runs(char *const argv[], const char *dir)
{
    return run_logged(argv, dir, "probe.log", 60) == 0;
}

/* ---- onnx.checker --------------------------------------------------------------------- */

static const char checker_py[] =
    "import sys, onnx\n"
    "for p in sys.argv[1:]:\n"
    "    m = onnx.load(p)\n"
    "    onnx.checker.check_model(m, full_check=True)\n"
    "    print('onnx %s checker: ok %s (opset %d, ir %d, %d nodes)' % (onnx.__version__, p,\n"
    "          m.opset_import[0].version, m.ir_version, len(m.graph.node)))\n";

START_TEST(test_onnx_checker)
{
    char dir[4096], log[4200];
    kdt_tmpdir(dir, sizeof dir);
    char *probe[] = {"/usr/bin/python3", "-c", "import onnx", NULL};
    if (access("/usr/bin/python3", X_OK) != 0)
        KDT_SKIP("no /usr/bin/python3 (Debian's python3-onnx): onnx.checker not run");
    if (!tool_runs(probe, dir))
        KDT_SKIP("/usr/bin/python3 has no onnx module (apt install python3-onnx)");
    data_set d = images(0);
    char *argv[4 + NMODELS] = {"/usr/bin/python3", "-c", (char *)checker_py};
    char paths[NMODELS][4200];
    for (int j = 0; j < NMODELS; j++) {
        nn_model_free(export_one(j, &d, dir));
        snprintf(paths[j], sizeof paths[j], "%s/%s.onnx", dir, models[j].name);
        argv[3 + j] = paths[j];
    }
    argv[3 + NMODELS] = NULL;
    int st = run_logged(argv, dir, "checker.log", 300);
    snprintf(log, sizeof log, "%s/checker.log", dir);
    print_file(log);
    ck_assert_msg(st == 0, "onnx.checker refused an export (status %d)", st);
    data_set_free(&d);
}
END_TEST

/* ---- ONNX Runtime -------------------------------------------------------------------------- */

/* floats from path (n of them) into a new array */
static float *read_f32(const char *path, size_t n)
{
    uint8_t *b = NULL;
    size_t len = 0;
    kd_err e = {0};
    ck_assert_msg(kd_read_file(path, n * 4 + 1, &b, &len, &e) == KD_OK, "%s", e.msg);
    ck_assert_msg(len == n * 4, "%s: %zu bytes, %zu expected", path, len, n * 4);
    return (float *)b;
}

static void softmax(const float *z, int k, float *p)
{
    float mx = z[0], sum = 0.0f;
    for (int j = 1; j < k; j++)
        mx = z[j] > mx ? z[j] : mx;
    for (int j = 0; j < k; j++)
        sum += p[j] = expf(z[j] - mx);
    for (int j = 0; j < k; j++)
        p[j] /= sum;
}

static int argmax(const float *v, int k)
{
    int b = 0;
    for (int j = 1; j < k; j++)
        b = v[j] > v[b] ? j : b;
    return b;
}

/* One quantization step, for an int8 model: how far one input code of its
 * last int8 layer moving by one step can move a logit, s_in * max |w[r][c]|
 * (dequantized weights), s_in being a static layer's calibrated scale or a
 * dynamic one's scale for this batch (its input's range in m->act / 255, as
 * both kdbench and DynamicQuantizeLinear take it).  kdbench rounds a code
 * half away from zero and ONNX half to even, so an exact tie moves a code by
 * one step (csr_int8_dyn met one in 500 samples).  A probability moves by
 * at most half the largest logit move (to first order: |dp_i| <= 2 p_i
 * (1 - p_i) max |dz|), so this tolerance on probabilities holds one step
 * with a margin. */
static double int8_step(const nn_model *m)
{
    for (int i = m->nlayers - 1; i >= 0; i--) {
        const nn_layer *l = &m->layers[i];
        const char *f = l->ops->format ? l->ops->format : "";
        int dynamic = !strcmp(f, "int8-dyn") || !strcmp(f, "csr-int8-dyn");
        if (nn_layer_is_builtin(l) || l->ops->weight_bits != 8 || (l->ops->sparse && !dynamic))
            continue;
        const size_t rows = (size_t)l->spec.units, cols = nn_shape_size(l->in);
        float s_in;
        if (dynamic) {
            float lo = 0.0f, hi = 0.0f; /* the range always holds 0 */
            for (size_t j = 0; j < (size_t)NS * cols; j++) {
                lo = fminf(lo, m->act[i][j]);
                hi = fmaxf(hi, m->act[i][j]);
            }
            s_in = (hi - lo) / 255.0f;
        } else {
            kd_buf b = {0};
            l->ops->save(l, &b);
            ck_assert(!b.failed && b.len >= 28);
            kd_rd r = {.p = b.p, .len = b.len, .ok = 1};
            ck_assert_uint_eq(kd_rd_u32(&r), rows);
            ck_assert_uint_eq(kd_rd_u32(&r), cols);
            (void)kd_rd_u32(&r);
            s_in = kd_rd_f32(&r);
            kd_buf_free(&b);
        }
        float *w = kd_malloc(rows * cols * sizeof *w);
        ck_assert_ptr_nonnull(w);
        l->ops->dequant(l, w);
        double mx = 0;
        for (size_t j = 0; j < rows * cols; j++)
            mx = fabs(w[j]) > mx ? fabs(w[j]) : mx;
        kd_free(w);
        return s_in > 0 ? (double)s_in * mx : 0;
    }
    return 0;
}

/* Compares model j's ONNX Runtime outputs in dir with kdbench's forward on
 * the same NS samples in one batch. */
static void compare_ort(int j, nn_model *m, const data_set *d, const char *dir)
{
    const int k = m->nclasses;
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.probs.f32", dir, models[j].name);
    float *q = read_f32(path, (size_t)NS * k);
    snprintf(path, sizeof path, "%s/%s.logits.f32", dir, models[j].name);
    float *lq = read_f32(path, (size_t)NS * k);
    float *x = kd_malloc((size_t)NS * nn_shape_size(m->in) * sizeof *x), p[64];
    ck_assert(x && k <= 64);
    int idx[NS];
    for (int i = 0; i < NS; i++)
        idx[i] = i;
    data_batch(d, idx, NS, m->in_mean, m->in_std, x, NULL);
    nn_ctx c = {.train = 0};
    const float *zs = nn_model_forward(m, x, NS, &c);
    ck_assert_ptr_nonnull(zs);
    double tol = models[j].cmp == K_FLOAT ? 1e-4 : 1e-4 + int8_step(m);
    double worst_p = 0, worst_z = 0;
    int disagree = 0, over_1e4 = 0;
    for (int i = 0; i < NS; i++) {
        const float *z = zs + (size_t)i * k;
        softmax(z, k, p);
        disagree += argmax(z, k) != argmax(q + (size_t)i * k, k);
        double sample_p = 0;
        for (int t = 0; t < k; t++) {
            double dp = fabs((double)p[t] - q[(size_t)i * k + t]);
            double dz = fabs((double)z[t] - lq[(size_t)i * k + t]);
            sample_p = dp > sample_p ? dp : sample_p;
            worst_z = dz > worst_z ? dz : worst_z;
        }
        over_1e4 += sample_p > 1e-4;
        worst_p = sample_p > worst_p ? sample_p : worst_p;
        ck_assert_msg(sample_p <= tol, "%s sample %d: probabilities %.3g apart (tolerance %.3g)",
                      models[j].name, i, sample_p, tol);
    }
    fprintf(stderr,
            "onnx export: %-11s vs ONNX Runtime: argmax %d/%d identical, max |dp| %.2e "
            "(tolerance %.2e; %d samples above 1e-4), max |dlogit| %.2e\n",
            models[j].name, NS - disagree, NS, worst_p, tol, over_1e4, worst_z);
    ck_assert_msg(disagree <= NS / 1000, "%s: argmax differs on %d of %d samples",
                  models[j].name, disagree, NS);
    kd_free(x);
    kd_free(q);
    kd_free(lq);
}

/* Every export run by onnxruntime-web under Node in one process (the wasm
 * runtime starts once), compared with kdbench. */
START_TEST(test_onnxruntime_web)
{
    kernels_isa_force(KD_ISA_SCALAR); /* int4: the float specification, as fp32 weights */
    char dir[4096], ort[PATH_MAX + 64], why[256], root[PATH_MAX], script[PATH_MAX + 64];
    kdt_tmpdir(dir, sizeof dir);
    char *node_v[] = {"node", "--version", NULL};
    if (!tool_runs(node_v, dir))
        KDT_SKIP("node is not on PATH (apt install nodejs npm): ONNX Runtime not run");
    if (ort_folder(dir, ort, sizeof ort, why, sizeof why))
        KDT_SKIP("%s: ONNX Runtime not run", why);
    repo_root(root, sizeof root);
    snprintf(script, sizeof script, "%s/tests/export/ort_run.mjs", root);
    data_set d = images(1);
    /* the inputs as kdbench reads them: x / 255 in float */
    size_t sz = 784;
    float *in = kd_malloc((size_t)NS * sz * sizeof *in);
    ck_assert_ptr_nonnull(in);
    for (size_t i = 0; i < (size_t)NS * sz; i++)
        in[i] = (float)d.x8[i] / 255.0f;
    char input[4200], nsamp[16], feat[16];
    snprintf(input, sizeof input, "%s/input.f32", dir);
    kdt_write(input, in, (size_t)NS * sz * sizeof *in);
    kd_free(in);
    snprintf(nsamp, sizeof nsamp, "%d", NS);
    snprintf(feat, sizeof feat, "%zu", sz);
    nn_model *ms[NMODELS];
    char specs[NMODELS][128];
    char *argv[8 + NMODELS] = {"node", script, ort, input, nsamp, feat, dir};
    for (int j = 0; j < NMODELS; j++) {
        ms[j] = export_one(j, &d, dir);
        nn_shape s = ms[j]->in;
        if (s.h == 1 && s.w == 1)
            snprintf(specs[j], sizeof specs[j], "%s=%d", models[j].name, s.c);
        else
            snprintf(specs[j], sizeof specs[j], "%s=%d,%d,%d", models[j].name, s.c, s.h, s.w);
        argv[7 + j] = specs[j];
    }
    argv[7 + NMODELS] = NULL;
    int st = run_logged(argv, dir, "node.log", 300);
    char log[4200];
    snprintf(log, sizeof log, "%s/node.log", dir);
    print_file(log);
    ck_assert_msg(st == 0, "node ort_run.mjs failed (status %d)", st);
    for (int j = 0; j < NMODELS; j++) {
        compare_ort(j, ms[j], &d, dir);
        nn_model_free(ms[j]);
    }
    data_set_free(&d);
}
END_TEST

/* ---- refusals and the command line ------------------------------------------------------- */

/* QAT's fake-quant layers are refused by name, before anything is written. */
START_TEST(test_refuses_fakequant)
{
    char dir[4096], path[4200], out[4096];
    kdt_tmpdir(dir, sizeof dir);
    nn_model *m = qt_mlp(20, 8, 8, 3, 9);
    compress_quant_spec s = {.mode = COMPRESS_Q_STATIC8, .per_channel = 1};
    kd_err e = {0};
    nn_model *q = compress_qat_prepare(m, &s, &e);
    ck_assert_msg(q != NULL, "%s", e.msg);
    snprintf(path, sizeof path, "%s/m.onnx", dir);
    ck_assert_int_eq(export_onnx(q, path, NULL, NULL, &e), KD_ECONFIG);
    ck_assert_msg(strstr(e.msg, "layer 0 (dense1)") && strstr(e.msg, "dense_fq") &&
                      strstr(e.msg, "fp32-fakequant") && strstr(e.msg, "ONNX"), "%s", e.msg);
    ck_assert_int_ne(access(path, F_OK), 0);
    /* through the binary: exit 2, the kind named, neither output written */
    snprintf(path, sizeof path, "%s/qat.kdm", dir);
    ck_assert_int_eq(nn_model_save(q, path, &e), KD_OK);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "export %s --onnx %s/q.onnx --c %s/c", path,
                                 dir, dir), 2);
    ck_assert_msg(strstr(out, "dense_fq") && strstr(out, "cannot be exported to ONNX"), "%s", out);
    snprintf(path, sizeof path, "%s/q.onnx", dir);
    ck_assert_int_ne(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s/c", dir);
    ck_assert_int_ne(access(path, F_OK), 0);
    nn_model_free(q);
    nn_model_free(m);
}
END_TEST

/* A saved int8 model out as ONNX and C in one command; a pruned and an int4
 * one with their notes; unwritable paths are write errors naming the path. */
START_TEST(test_cli)
{
    char dir[4096], path[4200], out[4096], p2[4200];
    kdt_tmpdir(dir, sizeof dir);
    data_set d = images(0);
    kd_err e = {0};
    const struct {
        nn_model *(*make)(const data_set *d);
        const char *name, *expect;
    } cases[] = {{m_int8, "int8", "int8 in integer ops: 3 static, 0 dynamic"},
                 {m_pruned, "pruned", "written as dense fp32 weights: ONNX has no standard sparse"},
                 {m_int4, "int4", "int4 layers (dense1, dense2, dense3) written dequantized"}};
    for (int j = 0; j < 3; j++) {
        nn_model *m = cases[j].make(&d);
        snprintf(path, sizeof path, "%s/%s.kdm", dir, cases[j].name);
        ck_assert_int_eq(nn_model_save(m, path, &e), KD_OK);
        nn_model_free(m);
        ck_assert_int_eq(kdt_kdbench(out, sizeof out, "export %s --onnx %s/%s.onnx", path, dir,
                                     cases[j].name), 0);
        ck_assert_msg(strstr(out, "wrote ") && strstr(out, cases[j].expect), "%s", out);
        snprintf(p2, sizeof p2, "%s/%s.onnx", dir, cases[j].name);
        ck_assert_int_gt(kd_file_size(p2), 1000);
    }
    snprintf(path, sizeof path, "%s/int8.kdm", dir);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "export %s --onnx %s/both.onnx --c %s/c",
                                 path, dir, dir), 0);
    ck_assert_msg(strstr(out, "both.onnx") && strstr(out, "main.c"), "%s", out);
    /* a folder that does not exist, a path through a regular file, a folder */
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "export %s --onnx %s/no/such/m.onnx", path,
                                 dir), 1);
    ck_assert_msg(strstr(out, "kdbench: ") && strstr(out, "no/such/m.onnx") &&
                      strstr(out, "writing the ONNX model") && strstr(out, "No such file"),
                  "%s", out);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "export %s --onnx %s/m/x.onnx", path, path),
                     1);
    ck_assert_msg(strstr(out, "int8.kdm/m/x.onnx") && strstr(out, "Not a directory"), "%s", out);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "export %s --onnx %s", path, dir), 1);
    ck_assert_msg(strstr(out, dir) && strstr(out, "Is a directory"), "%s", out);
    /* usage errors */
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "export %s --onnx", path), 2);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "export %s --onnx ''", path), 2);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "export %s", path), 2);
    ck_assert_ptr_nonnull(strstr(out, "--onnx FILE"));
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "export --help"), 0);
    ck_assert_ptr_nonnull(strstr(out, "--onnx FILE"));
    data_set_free(&d);
}
END_TEST

Suite *suite_export_onnx(void)
{
    Suite *s = suite_create("export_onnx");
    TCase *tc = tcase_create("onnx");
    tcase_set_timeout(tc, 900); /* the first run installs onnxruntime-web (bounded: 600 s) */
    tcase_add_loop_test(tc, test_graph, 0, NMODELS);
    tcase_add_test(tc, test_alloc_failures);
    tcase_add_test(tc, test_refuses_fakequant);
    tcase_add_test(tc, test_cli);
    tcase_add_test(tc, test_onnx_checker);
    tcase_add_test(tc, test_onnxruntime_web);
    suite_add_tcase(s, tc);
    return s;
}
