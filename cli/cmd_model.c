/* kdbench eval / kdbench inspect: commands on a saved model file. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../compress/compress.h"
#include "../data/data.h"
#include "../measure/measure.h"
#include "../onnx/import.h"
#include "../pipeline/pipeline.h"
#include "cli.h"
#include "../compress/kernels/cpu.h"

const char cli_eval_usage[] =
    "usage: kdbench eval MODEL [--data DIR | --images F --labels F | --csv-data F]\n"
    "                    [--threads N] [--input-mean M --input-std S]\n\n"
    "Evaluates a saved model (.kdm, fp32 or compressed, or an ONNX model .onnx) on a\n"
    "test set and measures it: accuracy, loss, size, batch-1 latency p50/p99 and\n"
    "batch-256 throughput.\n\n"
    "  --data DIR     a folder with t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz\n"
    "                 (default: " DATA_FASHION_DIR ")\n"
    "  --images F --labels F   an IDX pair (raw or .gz)\n"
    "  --csv-data F   a CSV file: label, then features (--csv F: the same, the old name)\n"
    "  --threads N    OpenBLAS threads (default 0 = all cores)\n"
    "  --input-mean M --input-std S   an .onnx model's preprocessing: pixels x/255,\n"
    "                 then (x - M) / S (default 0 and 1); a .kdm carries its own\n"
    "\nexit status: 0 success, 1 runtime failure, 2 usage error\n";

const char cli_inspect_usage[] =
    "usage: kdbench inspect MODEL\n\n"
    "Prints a model file's (.kdm, or .onnx imported) layers (kind, name, input and output shapes, parameters,\n"
    "sparsity, bytes in the file, storage format such as fp32 or csr-fp32), its\n"
    "parameter count, MACs per sample and size on disk.\n";

/* path with its last extension replaced by ext, into buf */
static void with_ext(const char *path, const char *ext, char *buf, size_t n)
{
    const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
    size_t len = dot && (!slash || dot > slash) ? (size_t)(dot - path) : strlen(path);
    snprintf(buf, n, "%.*s%s", (int)len, path, ext);
}

int cli_model_arg(const char *cmd, const char *path)
{
    struct stat st;
    char kdm[4200];
    if (stat(path, &st) != 0)
        return 0;
    if (S_ISDIR(st.st_mode)) {
        snprintf(kdm, sizeof kdm, "%s/teacher.kdm", path);
        int run = access(kdm, R_OK) == 0;
        return cli_usage_error(cmd, "\"%s\" is a directory; %s takes a model file (.kdm)%s%s%s",
                               path, cmd, run ? ", e.g. " : "", run ? kdm : "",
                               run ? " or one of its compressed/*.kdm (kdbench compare RUN_DIR "
                                     "shows a whole run)" : "");
    }
    char magic[4] = {0};
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(magic, 1, 4, f) : 0;
    if (f)
        fclose(f);
    if (got != 4 || memcmp(magic, "KDCK", 4) != 0) /* train/'s checkpoint magic */
        return 0;
    /* "x.ckpt" -> "x.kdm"; "x.adapter.ckpt" (a hint's adapter) -> "x.kdm" too */
    with_ext(path, "", kdm, sizeof kdm);
    size_t n = strlen(kdm);
    if (n > 8 && !strcmp(kdm + n - 8, ".adapter"))
        kdm[n - 8] = 0;
    snprintf(kdm + strlen(kdm), sizeof kdm - strlen(kdm), ".kdm");
    int there = access(kdm, R_OK) == 0;
    return cli_usage_error(cmd, "\"%s\" is a training checkpoint (what --resume continues from), "
                           "not a model file: %s %s%s", path, there ? "use" : "its model would be",
                           kdm, there ? "" : ", which is not there (that training did not finish)");
}

/* a finite float, the whole of s */
static int parse_float(const char *s, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || fabs(v) > 1e6)
        return -1;
    *out = (float)v;
    return 0;
}

int cli_cmd_eval(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data", required_argument, 0, 'd'}, {"images", required_argument, 0, 'i'},
        {"labels", required_argument, 0, 'l'}, {"csv", required_argument, 0, 'c'},
        {"csv-data", required_argument, 0, 'c'},
        {"threads", required_argument, 0, 't'}, {"input-mean", required_argument, 0, 'm'},
        {"input-std", required_argument, 0, 's'}, {0, 0, 0, 0},
    };
    const char *dir = DATA_FASHION_DIR, *images = NULL, *labels = NULL, *csv = NULL;
    const char *mean_s = NULL, *std_s = NULL;
    int threads = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'd': dir = optarg; break;
        case 'i': images = optarg; break;
        case 'l': labels = optarg; break;
        case 'c': csv = optarg; break;
        case 't': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (end == optarg || *end || v < 0 || v > 256)
                return cli_usage_error("eval", "--threads takes 0 to 256, not \"%s\"", optarg);
            threads = (int)v;
            break;
        }
        case 'm': mean_s = optarg; break;
        case 's': std_s = optarg; break;
        case ':': return cli_usage_error("eval", "%s needs a value", argv[optind - 1]);
        default: return cli_usage_error("eval", "unknown option \"%s\"", argv[optind - 1]);
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("eval", "one MODEL file expected");
    if (!images != !labels)
        return cli_usage_error("eval", "--images and --labels go together");
    const char *path = argv[optind];
    int bad = cli_model_arg("eval", path);
    if (bad)
        return bad;
    float mean = 0, sd = 1;
    if ((mean_s || std_s) && !onnx_is_onnx_path(path))
        return cli_usage_error("eval", "--input-mean and --input-std go with an .onnx model (a "
                               ".kdm carries its own preprocessing)");
    if ((mean_s && parse_float(mean_s, &mean)) || (std_s && (parse_float(std_s, &sd) || !(sd > 0))))
        return cli_usage_error("eval", "--input-mean takes a number and --input-std one > 0");
    nn_set_threads(threads);
    kd_err e = {0};
    nn_model *m = onnx_is_onnx_path(path) ? onnx_import_file(path, mean, sd, &e)
                                          : compress_model_load(path, &e);
    if (!m)
        return cli_fail(&e);
    data_set d = {0};
    measure_result r;
    int rc = pipeline_load_eval_data(dir, images, labels, csv, m->in, &d, &e);
    if (rc == KD_OK)
        rc = measure_model(m, &d, path, NULL, &r, &e);
    size_t nz, np = nn_model_params(m, &nz); /* counts compressed payloads too */
    if (rc == KD_OK)
        printf("model      %s\nsamples    %d\naccuracy   %.2f%%\nloss       %.4f\n"
               "params     %zu (%zu non-zero)\nsize       %lld bytes\n"
               "latency    batch 1: p50 %.1f us, p99 %.1f us on %d thread%s "
               "(1 thread: p50 %.1f us; spread between repeats %.0f%%)\n"
               "throughput batch 256: %.0f samples/s on %d thread%s\n"
               "kernels    %s\n",
               path, d.n, 100 * r.accuracy, r.loss, np, nz, r.size_bytes,
               r.latency_us_b1_p50, r.latency_us_b1_p99, r.threads_b1,
               r.threads_b1 == 1 ? "" : "s", r.latency_us_b1_p50_1t,
               100 * r.latency_b1_spread, r.throughput_b256, nn_threads(),
               nn_threads() == 1 ? "" : "s", kernels_isa_label());
    data_set_free(&d);
    nn_model_free(m);
    return rc == KD_OK ? KD_EXIT_OK : cli_fail(&e);
}

static void shape_str(nn_shape s, char *buf, size_t n)
{
    if (s.h == 1 && s.w == 1)
        snprintf(buf, n, "%d", s.c);
    else
        snprintf(buf, n, "%dx%dx%d", s.c, s.h, s.w);
}

/* Bytes layer l takes in the model file: its flat tensors and, for a
 * compressed kind, its length-prefixed payload. */
static size_t layer_bytes(const nn_layer *l)
{
    size_t n = (l->nw + l->nb + l->nbuf) * sizeof(float);
    if (l->ops->save) {
        kd_buf b = {0};
        l->ops->save(l, &b);
        n += 8 + b.len;
        kd_buf_free(&b);
    }
    return n;
}

int cli_cmd_inspect(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-')
        return cli_usage_error("inspect", "one MODEL file expected");
    int bad = cli_model_arg("inspect", argv[1]);
    if (bad)
        return bad;
    kd_err e = {0};
    nn_model *m = compress_model_load(argv[1], &e);
    if (!m)
        return cli_fail(&e);
    char in[32], out[32], sp[16];
    shape_str(m->in, in, sizeof in);
    printf("model %s: input %s, %d classes, normalisation mean %.4f std %.4f\n\n", argv[1], in,
           m->nclasses, (double)m->in_mean, (double)m->in_std);
    int kw = 10, fw = 9; /* kind and format columns fit the longest (dense_csr_shared) */
    for (int i = 0; i < m->nlayers; i++) {
        int n = (int)strlen(m->layers[i].ops->name), f = (int)strlen(nn_layer_format(&m->layers[i]));
        kw = n > kw ? n : kw;
        fw = f > fw ? f : fw;
    }
    printf("  #  %-*s %-10s %-12s %-12s %12s %8s %12s %*s %6s\n", kw, "kind", "name", "input",
           "output", "params", "sparsity", "bytes", fw, "format", "bits/w");
    for (int i = 0; i < m->nlayers; i++) {
        const nn_layer *l = &m->layers[i];
        shape_str(l->in, in, sizeof in);
        shape_str(l->out, out, sizeof out);
        size_t nz, np = nn_layer_params(l, &nz);
        snprintf(sp, sizeof sp, np ? "%.3f" : "-", np ? 1.0 - (double)nz / (double)np : 0.0);
        /* bits per kept weight as stored (payload bytes over the non-zeros) */
        char bw[16] = "-";
        if (nz && !nn_layer_is_builtin(l))
            snprintf(bw, sizeof bw, "%.2f", 8.0 * (double)layer_bytes(l) / (double)nz);
        printf("%3d  %-*s %-10s %-12s %-12s %12zu %8s %12zu %*s %6s\n", i, kw, l->ops->name,
               l->spec.name, in, out, np, sp, layer_bytes(l), fw, nn_layer_format(l), bw);
    }
    size_t nz, np = nn_model_params(m, &nz);
    printf("\nparameters %zu (%zu non-zero, sparsity %.3f), %.3f MMACs per sample, file %lld "
           "bytes\n", np, nz, np ? 1.0 - (double)nz / (double)np : 0.0, nn_model_macs(m) / 1e6,
           kd_file_size(argv[1]));
    nn_model_free(m);
    return KD_EXIT_OK;
}
