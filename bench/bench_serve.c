/* make bench (or `kdbench-bench serve`): kdbench serve in-process on an
 * ephemeral loopback port, loaded by the load tester in the same process
 * (both share the host's cores, as the peer and `hey` did): batch-1
 * requests of real-looking images, requests/s and p99 for the 784-1200-1200-10
 * teacher in fp32, int8 and 90%-sparse csr at 8 clients unbatched, fp32
 * batching off vs on at 64 clients, and the HTTP layer with a small 10-class
 * student -- with the ratios the issue sets as targets.  Each cell is bounded
 * by KD_BENCH_SERVE_S seconds (default 2). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "../compress/compress.h"
#include "../serve/serve.h"
#include "bench.h"

#define SV_IN 784
#define SV_IMAGES 256

typedef struct {
    const char *label;
    double rps, p99;
    long failed;
} sv_cell;

/* One model on a fresh server (max_batch), c clients for secs seconds. */
static sv_cell sv_run(const char *label, nn_model *m, int max_batch, int clients, double secs,
                      const uint8_t *img)
{
    sv_cell out = {label, -1, -1, 0};
    kd_err e = {0};
    serve_opts o = SERVE_DEFAULT_OPTS;
    o.port = 0;
    o.max_batch = max_batch;
    serve_server *s = serve_server_new(&o, &e);
    if (!s || serve_server_add(s, "m", m, 0, -1, &e) != KD_OK ||
        serve_server_start(s, &e) != KD_OK) {
        printf("  %s: %s\n", label, e.msg);
        serve_server_free(s);
        return out;
    }
    serve_load_opts lo = {.host = "127.0.0.1", .port = serve_server_port(s), .model = "m",
                          .concurrency = clients, .seconds = secs, .images = img,
                          .nimages = SV_IMAGES, .image_size = SV_IN};
    serve_load_row *row = NULL;
    int n = 0;
    if (serve_loadtest(&lo, &row, &n, &e) == KD_OK) {
        out.rps = row->rps;
        out.p99 = row->p99_ms;
        out.failed = row->failed;
    } else
        printf("  %s: %s\n", label, e.msg);
    kd_free(row);
    serve_server_free(s);
    return out;
}

static void sv_print(const sv_cell *c, const sv_cell *base)
{
    printf("  %-40s %9.0f req/s  p99 %7.2f ms", c->label, c->rps, c->p99);
    if (base && base->rps > 0 && c->rps > 0)
        printf("  (%.2fx %s)", c->rps / base->rps, base->label);
    printf("%s\n", c->failed ? "  (with failures)" : "");
}

static nn_model *sv_mlp(const nn_layer_spec *s, int n)
{
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){1, 28, 28}, s, n, NULL, &e);
    if (m)
        nn_model_init(m, 1);
    return m;
}

void bench_serve(void)
{
    const nn_layer_spec teacher[] = {{.kind = NN_FLATTEN}, {.kind = NN_DENSE, .units = 1200},
                                     {.kind = NN_RELU},    {.kind = NN_DENSE, .units = 1200},
                                     {.kind = NN_RELU},    {.kind = NN_DENSE, .units = 10}};
    const nn_layer_spec student[] = {{.kind = NN_FLATTEN}, {.kind = NN_DENSE, .units = 10}};
    double secs = getenv("KD_BENCH_SERVE_S") ? atof(getenv("KD_BENCH_SERVE_S")) : 2;
    secs = secs > 0 && secs <= 60 ? secs : 2;
    signal(SIGPIPE, SIG_IGN);
    int prev = nn_set_threads(1); /* serve's workers are the threads (serve.h) */
    uint8_t *img = kd_malloc(SV_IMAGES * SV_IN);
    data_set calib = {.n = 256, .shape = {1, 28, 28}, .nclasses = 10};
    calib.xf = kd_malloc(sizeof(float) * 256 * SV_IN);
    nn_model *fp = sv_mlp(teacher, 6), *st = sv_mlp(student, 2);
    kd_err e = {0};
    if (!img || !calib.xf || !fp || !st) {
        printf("serve: out of memory\n");
        goto out;
    }
    nn_rng r = nn_rng_stream(3, NN_STREAM_TEST);
    for (int i = 0; i < SV_IMAGES * SV_IN; i++) /* dark background, brighter strokes */
        img[i] = (uint8_t)(nn_rng_uniform(&r) < 0.5f ? 0 : nn_rng_below(&r, 256));
    for (int i = 0; i < 256 * SV_IN; i++)
        calib.xf[i] = (nn_rng_uniform(&r) - 0.5f) * 3.4f;
    compress_quant_spec q8 = {.mode = COMPRESS_Q_STATIC8, .per_channel = 1, .calib_batches = 2};
    compress_prune_spec ps = {.sparsity = 0.9f};
    compress_sparse_opts all = {.policy = COMPRESS_SPARSE_ALWAYS};
    nn_model *i8 = compress_quantize(fp, &q8, &calib, &e), *p = nn_model_clone(fp, &e), *csr = NULL;
    if (p && compress_prune_magnitude(p, &ps, NULL, &e) == KD_OK)
        csr = compress_to_sparse(p, &all, NULL, &e);
    nn_model_free(p);
    nn_model *fp2 = nn_model_clone(fp, &e), *fp3 = nn_model_clone(fp, &e);
    if (!i8 || !csr || !fp2 || !fp3) {
        printf("serve: %s\n", e.msg);
        nn_model_free(i8);
        nn_model_free(csr);
        nn_model_free(fp2);
        nn_model_free(fp3);
        goto out;
    }
    printf("serving (kdbench serve in-process, loopback HTTP, v2 infer, batch-1 UINT8 requests,"
           " %.0f s a cell; server and clients share the cores):\n", secs);
    sv_cell f8 = sv_run("teacher fp32, 8 clients, unbatched", fp, 1, 8, secs, img);
    sv_print(&f8, NULL);
    sv_cell q = sv_run("teacher int8, 8 clients, unbatched", i8, 1, 8, secs, img);
    sv_print(&q, &f8);
    sv_cell s = sv_run("teacher 90% csr, 8 clients, unbatched", csr, 1, 8, secs, img);
    sv_print(&s, &f8);
    sv_cell off = sv_run("teacher fp32, 64 clients, batching off", fp2, 1, 64, secs, img);
    sv_print(&off, NULL);
    sv_cell on = sv_run("teacher fp32, 64 clients, batching on", fp3, 64, 64, secs, img);
    sv_print(&on, &off);
    sv_cell h = sv_run("784-10 student, 8 clients (HTTP layer)", st, 64, 8, secs, img);
    sv_print(&h, &f8);
    printf("  targets: int8 or csr >= 2x fp32; batching on >= 3x off at p99 <= 5 ms; "
           "HTTP layer >= 20,000 req/s; fp32 >= 5,880 req/s (30x the Flask peer's 196)\n");
    fp = st = NULL; /* the servers took them */
out:
    nn_model_free(fp);
    nn_model_free(st);
    kd_free(img);
    data_set_free(&calib);
    nn_set_threads(prev);
}
