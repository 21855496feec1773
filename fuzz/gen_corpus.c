/* Writes the seed corpora of the fuzz targets into DIR (fuzz/corpus):
 * small valid files made by the project's own writers, in the input layout
 * each target expects (see fuzz_<name>.c).  `make fuzz-corpus` runs it; the
 * output is committed, so this only needs running when a format changes.
 * The config seeds are the experiments/ YAML files (run from the top folder), one of
 * them with overrides appended. */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "../compress/compress.h"
#include "../onnx/compose.h"
#include "../reports/reports.h"
#include "fuzz.h"

static const char *root;

static void die(const char *what, const kd_err *e)
{
    fprintf(stderr, "gen_corpus: %s: %s\n", what, e ? e->msg : "failed");
    exit(1);
}

static void out_path(char *buf, size_t cap, const char *target, const char *name)
{
    snprintf(buf, cap, "%s/%s", root, target);
    mkdir(buf, 0755);
    snprintf(buf, cap, "%s/%s/%s", root, target, name);
}

static void put(const char *target, const char *name, const void *p, size_t n)
{
    char path[1024];
    out_path(path, sizeof path, target, name);
    fuzz_write(path, p, n);
}

/* Copies a file the project wrote into target/name. */
static void put_file(const char *target, const char *name, const char *src)
{
    uint8_t *p;
    size_t n;
    kd_err e = {0};
    if (kd_read_file(src, 1 << 24, &p, &n, &e) != KD_OK)
        die(src, &e);
    put(target, name, p, n);
    kd_free(p);
}

/* ---- models ------------------------------------------------------------- */

static nn_model *mlp(int in, int h, int out)
{
    const nn_layer_spec s[] = {{.kind = NN_DENSE, .units = h}, {.kind = NN_RELU},
                               {.kind = NN_DROPOUT, .rate = 0.1f},
                               {.kind = NN_DENSE, .units = out}};
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){in, 1, 1}, s, 4, NULL, &e);
    if (!m)
        die("mlp", &e);
    nn_model_init(m, 3);
    m->in_mean = 0.2f;
    m->in_std = 0.5f;
    return m;
}

static nn_model *cnn(void)
{
    const nn_layer_spec s[] = {
        {.kind = NN_CONV2D, .filters = 2, .kernel = 3, .pad = 1},
        {.kind = NN_BATCHNORM, .eps = 1e-3f, .momentum = 0.1f},
        {.kind = NN_RELU}, {.kind = NN_MAXPOOL2D, .kernel = 2}, {.kind = NN_FLATTEN},
        {.kind = NN_DENSE, .units = 3}};
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){1, 4, 4}, s, 6, NULL, &e);
    if (!m)
        die("cnn", &e);
    nn_model_init(m, 4);
    return m;
}

static void save_model(const char *name, nn_model *m)
{
    char path[1024];
    kd_err e = {0};
    fuzz_path(path, sizeof path, "m.kdm");
    if (nn_model_save(m, path, &e) != KD_OK)
        die(name, &e);
    put_file("model", name, path);
    nn_model_free(m);
}

/* n samples of k floats, label = sign pattern of the first features */
static data_set tiny_data(int n, int k)
{
    data_set d = {.n = n, .shape = {k, 1, 1}, .nclasses = 3};
    d.xf = kd_malloc((size_t)n * k * sizeof *d.xf);
    d.y = kd_malloc((size_t)n);
    nn_rng r = nn_rng_stream(5, NN_STREAM_DATA);
    for (int i = 0; i < n; i++) {
        d.y[i] = (uint8_t)(i % 3);
        for (int j = 0; j < k; j++)
            d.xf[(size_t)i * k + j] = (float)d.y[i] + nn_rng_normal(&r);
    }
    return d;
}

static nn_model *quantize(nn_model *m, compress_qmode mode, const data_set *calib)
{
    compress_quant_spec s = {.mode = mode, .per_channel = 1, .calib_batches = 1};
    kd_err e = {0};
    nn_model *q = compress_quantize(m, &s, calib, &e);
    if (!q)
        die("quantize", &e);
    return q;
}

static nn_model *sparse(nn_model *m, int block)
{
    kd_err e = {0};
    compress_prune_spec ps = {.sparsity = 0.6f, .block = block};
    if (compress_prune_magnitude(m, &ps, NULL, &e) != KD_OK)
        die("prune", &e);
    compress_sparse_opts all = {.policy = COMPRESS_SPARSE_ALWAYS};
    nn_model *sp = compress_to_sparse(m, &all, NULL, &e);
    if (!sp)
        die("sparse", &e);
    return sp;
}

static void models(void)
{
    save_model("mlp.kdm", mlp(6, 5, 3));
    save_model("cnn.kdm", cnn());
    data_set calib = tiny_data(COMPRESS_CALIB_BATCH, 40);
    nn_model *m = mlp(40, 8, 3), *sp = sparse(m, 1);
    save_model("q8.kdm", quantize(m, COMPRESS_Q_STATIC8, &calib));
    save_model("dq8.kdm", quantize(m, COMPRESS_Q_DYNAMIC8, &calib));
    save_model("q4.kdm", quantize(m, COMPRESS_Q_INT4, &calib));
    save_model("qcsr.kdm", quantize(sp, COMPRESS_Q_STATIC8, &calib));
    compress_quant_spec ss = {.mode = COMPRESS_Q_STATIC8, .per_channel = 1, .calib_batches = 1,
                              .sparse_static = 1};
    kd_err es = {0};
    nn_model *s8 = compress_quantize(sp, &ss, &calib, &es);
    if (!s8)
        die("quantize", &es);
    save_model("qcsr_s8.kdm", s8);
    ss.mode = COMPRESS_Q_DYNAMIC8; /* csr-int8-dyn */
    nn_model *d8 = compress_quantize(sp, &ss, NULL, &es);
    if (!d8)
        die("quantize", &es);
    save_model("qcsr_d8.kdm", d8);
    compress_quant_spec qs = {.mode = COMPRESS_Q_STATIC8, .per_channel = 1, .calib_batches = 1};
    kd_err e = {0};
    nn_model *fq = compress_qat_prepare(m, &qs, &e);
    if (!fq)
        die("qat", &e);
    save_model("fq.kdm", fq);
    for (int bits = 2; bits <= 3; bits++) { /* int2, int3, and LSQ's trainable layer */
        compress_quant_spec ls = {.mode = COMPRESS_Q_INT4, .wbits = bits};
        nn_model *q = compress_quantize(m, &ls, NULL, &e);
        if (!q)
            die("quantize", &e);
        save_model(bits == 2 ? "q2.kdm" : "q3.kdm", q);
    }
    compress_quant_spec ls = {.mode = COMPRESS_Q_INT4, .wbits = 2};
    nn_model *lsq = compress_lsq_prepare(m, &ls, &e);
    if (!lsq)
        die("lsq", &e);
    save_model("lsq.kdm", lsq);
    for (int raw = 0; raw < 2; raw++) { /* shared weights, Huffman-coded and not */
        compress_cluster_spec cs = {.clusters = 5, .uncoded = raw};
        nn_model *sh = compress_cluster(sp, &cs, &e);
        if (!sh)
            die("cluster", &e);
        save_model(raw ? "shared_raw.kdm" : "shared.kdm", sh);
    }
    save_model("csr.kdm", sp);
    /* rows pruned in blocks of 4: the file lists each block's columns once
     * (csr_index_form.kdm, committed, has the payload form of files before
     * 2026-11-30, which this program no longer writes) */
    save_model("csr_blocks.kdm", sparse(mlp(40, 8, 3), 4));
    nn_model_free(m);
    data_set_free(&calib);
}

/* ---- checkpoints ------------------------------------------------------------ */

static void checkpoints(void)
{
    data_set tr = tiny_data(24, 6);
    const nn_opt_kind kinds[2] = {NN_OPT_SGD, NN_OPT_ADAMW};
    const char *names[2] = {"sgd.kdck", "adamw.kdck"};
    for (int k = 0; k < 2; k++) {
        nn_model *m = mlp(6, 5, 3);
        train_opts o = {.epochs = 1, .batch_size = 8, .seed = 1};
        o.opt = (nn_opt_spec){.kind = kinds[k], .lr = 0.01f, .momentum = 0.9f};
        train_state st;
        train_hooks h = {.quiet = 1};
        kd_err e = {0};
        char path[1024];
        fuzz_path(path, sizeof path, "c.kdck");
        if (train_state_init(&st, m, &o, &e) != KD_OK || train_fit(&st, &o, &tr, NULL, &h, &e) ||
            train_checkpoint_save(&st, path, &e) != KD_OK)
            die("checkpoint", &e);
        put_file("checkpoint", names[k], path);
        train_state_free(&st);
        nn_model_free(m);
    }
    data_set_free(&tr);
}

/* ---- IDX pairs: flags byte, images, FUZZ_SEP, labels ------------------------ */

static size_t idx_file(uint8_t *b, int labels, int n, int h, int w)
{
    const uint32_t words[4] = {labels ? 0x801u : 0x803u, (uint32_t)n, (uint32_t)h, (uint32_t)w};
    size_t k = 0;
    for (int i = 0; i < (labels ? 2 : 4); i++)
        for (int j = 0; j < 4; j++)
            b[k++] = (uint8_t)(words[i] >> (24 - 8 * j));
    size_t body = labels ? (size_t)n : (size_t)n * h * w;
    for (size_t i = 0; i < body; i++)
        b[k++] = labels ? (uint8_t)(i % 4) : (uint8_t)(0x40 + (i * 37) % 0x80); /* no 0x1e */
    return k;
}

static size_t gzip_mem(const uint8_t *p, size_t n, uint8_t *out, size_t cap, int level)
{
    z_stream z = {0};
    deflateInit2(&z, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
    z.next_in = (Bytef *)p;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END)
        die("deflate", NULL);
    size_t k = z.total_out;
    deflateEnd(&z);
    return k;
}

static void idx_pair(const char *name, int flags, int pre_gz, int n)
{
    uint8_t im[512], lb[64], zim[700], out[1400];
    size_t ni = idx_file(im, 0, n, 3, 4), nl = idx_file(lb, 1, n, 0, 0), k = 0;
    out[k++] = (uint8_t)flags;
    if (pre_gz) { /* a gzip member written here; it must hold no FUZZ_SEP byte */
        for (int level = 0;; level++) {
            size_t nz = gzip_mem(im, ni, zim, sizeof zim, level);
            if (!memchr(zim, FUZZ_SEP, nz)) {
                memcpy(out + k, zim, nz);
                k += nz;
                break;
            }
            if (level == 9) {
                fprintf(stderr, "gen_corpus: %s: every gzip level has a separator byte\n", name);
                return;
            }
        }
    } else {
        memcpy(out + k, im, ni);
        k += ni;
    }
    out[k++] = FUZZ_SEP;
    memcpy(out + k, lb, nl);
    k += nl;
    put("idx", name, out, k);
}

/* ---- CSV and run directories ------------------------------------------------ */

static void csvs(void)
{
    const char *texts[] = {"label,a,b,c,d\r\n0,1,2,3,4\r\n1,0.5,-1e3,4,2\r\n\r\n2,7,8,9.25,0\n",
                           "0,1,2,3,4\n1,6,5,4,3\n3,0,0,0,1",
                           "\xEF\xBB\xBF" "1,0.25,0.5,0.75,1\n0,1,1,1,1\n"};
    const char *names[] = {"header_crlf.csv", "plain.csv", "bom.csv"};
    for (int i = 0; i < 3; i++)
        put("csv", names[i], texts[i], strlen(texts[i]));
}

static void rundir(void)
{
    rep_row rows[3];
    rep_row_init(&rows[0], "teacher", "teacher");
    rows[0].params = rows[0].nonzero_params = 5000;
    rows[0].size_bytes = 20000;
    rows[0].accuracy = 0.85;
    rows[0].latency_us_b1_p50 = 10;
    rows[0].latency_us_b1_p99 = 12;
    rep_row_num(&rows[0], "epochs", 2);
    rep_row_init(&rows[1], "small/distilled", "student");
    rows[1].params = rows[1].nonzero_params = 900;
    rows[1].size_bytes = 3600;
    rows[1].accuracy = 0.8;
    rep_row_str(&rows[1], "teacher", "teacher");
    rep_row_num(&rows[1], "temperature", 4);
    rep_row_init(&rows[2], "teacher/int8", "compressed");
    rows[2].params = 5000;
    rows[2].size_bytes = 5400;
    rows[2].accuracy = 0.84;
    rep_row_num(&rows[2], "weight_bits", 8);
    rep_row_num(&rows[2], "sparsity", 0.5);
    char dir[1024];
    fuzz_path(dir, sizeof dir, "run");
    mkdir(dir, 0755);
    kd_err e = {0};
    if (rep_write_results(dir, "seed", rows, 3, &e) != KD_OK)
        die("results", &e);
    rep_env env;
    memset(&env, 0, sizeof env);
    snprintf(env.cpu, sizeof env.cpu, "Some CPU");
    env.cores = 2;
    snprintf(env.version, sizeof env.version, "0.1.0");
    snprintf(env.date, sizeof env.date, "2026-01-01T00:00:00Z");
    if (rep_write_env(dir, &env, &e) != KD_OK)
        die("env", &e);
    char path[1100];
    const char *files[] = {"results.json", NULL, "env.json", NULL, NULL, NULL, "results.csv"};
    const char *text[] = {
        NULL,
        "{\"model\": \"teacher\", \"epoch\": 1, \"loss\": 1.2, \"train_acc\": 0.6, "
        "\"val_loss\": 1.1, \"val_acc\": 0.62, \"lr\": 0.01, \"seconds\": 1.5, "
        "\"samples_per_s\": 5000}\n"
        "{\"model\": \"teacher\", \"epoch\": 2, \"loss\": 0.8, \"train_acc\": 0.7, "
        "\"val_loss\": null, \"val_acc\": 0.7, \"lr\": 0.005, \"seconds\": 1.4, "
        "\"samples_per_s\": 5100}\n",
        NULL,
        "variant,layer,params,nonzero\nteacher/int8,dense1,4000,2000\n",
        "layer,sparsity,accuracy\ndense1,0,0.85\ndense1,0.5,0.84\ndense2,0.9,0.7\n",
        "variant,layer,bin_lo,bin_hi,count\nteacher,dense1,-0.5,0,10\nteacher,dense1,0,0.5,12\n",
        NULL};
    kd_buf b = {0};
    for (int i = 0; i < 7; i++) {
        if (i)
            kd_buf_put(&b, (const uint8_t[]){FUZZ_SEP}, 1);
        if (files[i]) {
            snprintf(path, sizeof path, "%s/%s", dir, files[i]);
            uint8_t *p;
            size_t n;
            if (kd_read_file(path, 1 << 20, &p, &n, &e) != KD_OK)
                die(path, &e);
            kd_buf_put(&b, p, n);
            kd_free(p);
        } else {
            kd_buf_put(&b, text[i], strlen(text[i]));
        }
    }
    put("rundir", "full", b.p, b.len);
    /* results.json alone */
    size_t first = (size_t)((uint8_t *)memchr(b.p, FUZZ_SEP, b.len) - b.p);
    put("rundir", "results_only", b.p, first);
    kd_buf_free(&b);
}

/* ---- configs: the YAML, then FUZZ_SEP and an override each ---------------- */

static void configs(void)
{
    glob_t g;
    if (glob("experiments/*.yaml", 0, NULL, &g) != 0)
        die("no experiments/*.yaml (run from the top folder)", NULL);
    for (size_t i = 0; i < g.gl_pathc; i++)
        put_file("config", strrchr(g.gl_pathv[i], '/') + 1, g.gl_pathv[i]);
    globfree(&g);
    uint8_t *p;
    size_t n;
    kd_err e = {0};
    if (kd_read_file("experiments/quick.yaml", 1 << 20, &p, &n, &e) != KD_OK)
        die("quick.yaml", &e);
    kd_buf b = {0};
    kd_buf_put(&b, p, n);
    const char *sets[] = {"teacher.train.epochs=1", "data.shape=[1,28,28]",
                          "teacher.layers[0].units=16"};
    for (int i = 0; i < 3; i++) {
        kd_buf_put(&b, (const uint8_t[]){FUZZ_SEP}, 1);
        kd_buf_put(&b, sets[i], strlen(sets[i]));
    }
    put("config", "quick_with_sets", b.p, b.len);
    /* small models: a config walk allocates each model, so these run fast */
    static const char tiny[] =
        "name: tiny\nseed: 2\ncache_dir: \"\"\n"
        "data: {dataset: fashion-mnist, train_subset: 3000, test_subset: 100}\n"
        "teacher:\n  layers: [{type: flatten}, {type: dense, units: 4}, {type: relu},\n"
        "           {type: dense, units: 10}]\n"
        "  train: {epochs: 1, batch_size: 32, optimizer: {kind: sgd, lr: 0.1, momentum: 0.9}}\n"
        "students:\n  - name: s\n    layers: [{type: flatten}, {type: dense, units: 10}]\n"
        "    train: {epochs: 1, batch_size: 32, optimizer: {kind: adamw, lr: 0.01}}\n"
        "    distill: {temperature: 2, alpha: 0.5}\n"
        "compress:\n  - name: q\n    source: teacher\n    passes:\n"
        "      - {type: prune, sparsity: 0.5}\n      - {type: quantize, bits: 8}\n";
    put("config", "tiny.yaml", tiny, sizeof tiny - 1);
    kd_buf_free(&b);
    kd_free(p);
}

/* ---- ONNX models (onnx/build): the forms the importer folds ---------------- */

static void put_onnx(const char *name, onnx_build *b)
{
    uint8_t *p;
    size_t n;
    kd_err e = {0};
    if (!b || onnx_build_pack(b, &p, &n, &e) != KD_OK)
        die(name, &e);
    put("onnx", name, p, n);
    kd_free(p);
    onnx_build_free(b);
}

static void weights(onnx_build *b, const char *name, int64_t d0, int64_t d1, int64_t d2,
                    int64_t d3, int rank)
{
    const int64_t dims[4] = {d0, d1, d2, d3};
    float w[256];
    size_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= (size_t)dims[i];
    for (size_t i = 0; i < n && i < 256; i++)
        w[i] = (float)((i * 37) % 11) * 0.1f - 0.5f;
    onnx_build_weights(b, name, dims, rank, w);
}

/* x (N,6) -> Gemm -> Relu -> Dropout -> MatMul + Add -> Softmax */
static onnx_build *onnx_mlp(void)
{
    onnx_build *b = onnx_build_new(13);
    onnx_build_input(b, "x", (const int64_t[]){-1, 6}, 2);
    weights(b, "w1", 5, 6, 0, 0, 2);
    weights(b, "b1", 5, 0, 0, 0, 1);
    weights(b, "w2", 5, 3, 0, 0, 2);
    weights(b, "b2", 3, 0, 0, 0, 1);
    Onnx__NodeProto *n = onnx_build_node(b, "Gemm", "fc1", "x,w1,b1", "h");
    onnx_build_attr_i(b, n, "transB", 1);
    onnx_build_node(b, "Relu", "relu", "h", "r");
    onnx_build_node(b, "Dropout", "drop", "r", "d");
    onnx_build_node(b, "MatMul", "mm", "d,w2", "m");
    onnx_build_node(b, "Add", "add", "m,b2", "z");
    onnx_build_node(b, "Softmax", "sm", "z", "p");
    onnx_build_output(b, "p");
    return b;
}

/* x (N,1,6,6) -> Conv -> BatchNormalization -> Relu -> MaxPool -> PyTorch's
 * Shape/Gather/Unsqueeze/Concat/Reshape flatten -> Gemm */
static onnx_build *onnx_cnn(void)
{
    onnx_build *b = onnx_build_new(13);
    onnx_build_input(b, "x", (const int64_t[]){-1, 1, 6, 6}, 4);
    weights(b, "w", 2, 1, 3, 3, 4);
    weights(b, "wb", 2, 0, 0, 0, 1);
    const char *bn[4] = {"g", "be", "mu", "var"};
    for (int i = 0; i < 4; i++)
        onnx_build_weights(b, bn[i], (const int64_t[]){2}, 1, (const float[]){0.5f, 1.5f});
    weights(b, "fc", 3, 18, 0, 0, 2);
    Onnx__NodeProto *n = onnx_build_node(b, "Conv", "conv", "x,w,wb", "c");
    onnx_build_attr_ints(b, n, "pads", (const int64_t[]){1, 1, 1, 1}, 4);
    onnx_build_node(b, "BatchNormalization", "bn", "c,g,be,mu,var", "n");
    onnx_build_node(b, "Relu", "relu", "n", "r");
    n = onnx_build_node(b, "MaxPool", "pool", "r", "p");
    onnx_build_attr_ints(b, n, "kernel_shape", (const int64_t[]){2, 2}, 2);
    onnx_build_attr_ints(b, n, "strides", (const int64_t[]){2, 2}, 2);
    onnx_build_node(b, "Shape", "shape", "p", "s");
    n = onnx_build_node(b, "Constant", "c0", "", "zero");
    onnx_build_attr_t(b, n, "value", onnx_build_tensor(b, "", ONNX__TENSOR_PROTO__DATA_TYPE__INT64,
                                                       NULL, 0, (const int64_t[]){0}, 1));
    onnx_build_node(b, "Gather", "gather", "s,zero", "g0");
    n = onnx_build_node(b, "Constant", "c1", "", "axes");
    onnx_build_attr_ints(b, n, "value_ints", (const int64_t[]){0}, 1);
    onnx_build_node(b, "Unsqueeze", "unsq", "g0,axes", "u");
    n = onnx_build_node(b, "Constant", "c2", "", "m1");
    onnx_build_attr_ints(b, n, "value_ints", (const int64_t[]){-1}, 1);
    onnx_build_node(b, "Concat", "cat", "u,m1", "t");
    onnx_build_node(b, "Reshape", "reshape", "p,t", "f");
    n = onnx_build_node(b, "Gemm", "fc", "f,fc", "z");
    onnx_build_attr_i(b, n, "transB", 1);
    onnx_build_output(b, "z");
    return b;
}

static void onnx_models(void)
{
    put_onnx("mlp.onnx", onnx_mlp());
    put_onnx("cnn.onnx", onnx_cnn());
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus DIR\n");
        return 2;
    }
    root = argv[1];
    mkdir(root, 0755);
    models();
    checkpoints();
    idx_pair("raw", 0, 0, 5);
    idx_pair("raw_limit", 2 << 2, 0, 5);
    idx_pair("harness_gz", 3, 0, 5);
    idx_pair("file_gz", 0, 1, 6);
    csvs();
    rundir();
    configs();
    onnx_models();
    printf("gen_corpus: seeds written to %s\n", root);
    return 0;
}
