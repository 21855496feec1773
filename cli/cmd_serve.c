/* kdbench serve / kdbench loadtest: models behind HTTP, and load on them. */
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../config/config.h"
#include "../data/data.h"
#include "../serve/serve.h"
#include "cli.h"

const char cli_serve_usage[] =
    "usage: kdbench serve MODEL.kdm... | RUN_DIR | EXPERIMENT.yaml [options]\n\n"
    "Serves models over HTTP: POST /predict (the first model), the v2 inference protocol\n"
    "(GET /v2/health/live, /v2/health/ready, /v2/models, /v2/models/NAME,\n"
    "POST /v2/models/NAME/infer) and GET /metrics (Prometheus text).  A RUN_DIR serves\n"
    "teacher.kdm as \"teacher\", students/S/MODE-seedN.kdm as \"S/MODE\" and\n"
    "compressed/X.kdm as \"X\"; a model file is named by its base name.  Model files are\n"
    "verified (CRC, shapes) at start-up.  The first line on stdout is\n"
    "\"listening on http://HOST:PORT\".  SIGINT or SIGTERM drains in-flight requests and\n"
    "exits 0.\n\n"
    "A name with '/' is the URL's path tail: /v2/models/mlp128/distilled/infer (or\n"
    "mlp128%2Fdistilled).  Inputs: FP32 values on the model's float scale (pixels / 255\n"
    "for image models) or UINT8 raw pixels; the server applies the model's own\n"
    "normalisation.  Memory is bounded by max-connections x max-body (x ~3 once parsed).\n\n"
    "Settings come from the `serve:` section of EXPERIMENT.yaml (which serves its run\n"
    "folder runs/NAME) or of RUN_DIR/config.yaml, with the same keys as the options below\n"
    "('-' as '_', api_key_file, timeout in seconds); an option given here overrides it.\n\n"
    "  --port P            TCP port; 0 = any free port (default 8080)\n"
    "  --host A            IPv4 address to bind (default 127.0.0.1)\n"
    "  --threads N         HTTP threads (default 2)\n"
    "  --compute-threads N per model, a team of N for its compressed (threaded) layers;\n"
    "                      OpenBLAS stays on one thread (default 1: the model's worker)\n"
    "  --api-key-file F    every endpoint but health needs \"Authorization: Bearer KEY\",\n"
    "                      KEY being F's first line\n"
    "  --max-batch B       rows per batched forward; 1 = batching off (default 64)\n"
    "  --max-delay-us U    a batch that is not full waits U us for more requests\n"
    "                      (default 0: it takes what queued while the last one ran)\n"
    "  --max-queue Q       requests waiting per model before 429 (default 1024)\n"
    "  --max-body BYTES    request body limit, 413 above (default 8388608)\n"
    "  --max-connections N open connections at once; more wait in the listen queue\n"
    "                      until one closes (default 1000)\n"
    "  --timeout S         an idle or stalled connection is closed after S s (default 10)\n"
    "  --shadow NAME       also run every other model's requests on model NAME (usually\n"
    "                      the teacher), after answering them; /metrics exports each\n"
    "                      model's agreement with it (kdbench_shadow_agreement)\n"
    "\nexit status: 0 after a signal, 1 runtime failure (a bad model file), 2 usage error\n";

const char cli_loadtest_usage[] =
    "usage: kdbench loadtest URL [--model NAME] [--concurrency C] [--requests N]\n"
    "                        [--seconds S] [--api-key-file F] [--predict]\n\n"
    "Loads a kdbench server (URL http://127.0.0.1:PORT) with batch-1 requests from C\n"
    "threads, each on its own keep-alive connection, for N requests or S seconds per\n"
    "model, whichever comes first, and prints per model requests/s and latency\n"
    "p50/p90/p99.  Requests are v2 infer calls with UINT8 pixels (--predict: POST\n"
    "/predict with FP32 features, the default model).  A model that takes 784 inputs gets\n"
    "the Fashion-MNIST test images round-robin (the first 256; Debian's\n"
    "dataset-fashion-mnist), any other fixed random pixels.\n\n"
    "  --model NAME        one model (default: every model the server lists, in turn)\n"
    "  --concurrency C     client threads (default 8)\n"
    "  --requests N        requests per model (default 0: bounded by --seconds only)\n"
    "  --seconds S         seconds per model at most (default 10, at most 3600)\n"
    "  --api-key-file F    send \"Authorization: Bearer KEY\", KEY being F's first line\n"
    "  --predict           POST /predict instead of v2 infer\n"
    "  --random            fixed random pixels even when test images are there\n"
    "\nexit status: 0 success, 1 no request answered, 2 usage error\n";

/* A whole-string integer in [lo, hi]; 0 or -1. */
static int int_arg(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* The key: the file's first line, without surrounding blanks; printable
 * ASCII only.  NULL with a message in why. */
static char *read_key(const char *path, char *why, size_t n)
{
    uint8_t *p;
    size_t len;
    kd_err e = {0};
    if (kd_read_file(path, 4096, &p, &len, &e) != KD_OK) {
        snprintf(why, n, "%.400s", e.msg);
        return NULL;
    }
    size_t a = 0, b = 0;
    while (a < len && (p[a] == ' ' || p[a] == '\t'))
        a++;
    b = a;
    while (b < len && p[b] != '\n' && p[b] != '\r')
        b++;
    while (b > a && (p[b - 1] == ' ' || p[b - 1] == '\t'))
        b--;
    char *key = NULL;
    int ok = b > a;
    for (size_t i = a; ok && i < b; i++)
        ok = p[i] > 32 && p[i] < 127;
    if (!ok)
        snprintf(why, n, "%s: the first line must hold the key (printable, no spaces)", path);
    else if ((key = kd_malloc(b - a + 1))) {
        memcpy(key, p + a, b - a);
        key[b - a] = 0;
    }
    kd_free(p);
    return key;
}

/* SIGINT and SIGTERM write their number to a pipe the main thread reads.  A
 * handler, not sigwait: OpenBLAS starts its threads before main, with every
 * signal unblocked, and a signal the kernel gives one of them would kill the
 * process under sigwait; a handler runs wherever the signal lands. */
static int stop_pipe[2] = {-1, -1};

static void on_stop(int sig)
{
    unsigned char b = (unsigned char)sig;
    ssize_t k = write(stop_pipe[1], &b, 1);
    (void)k;
}

/* Installs the handlers; 0 or -1. */
static int catch_stop(void)
{
    if (pipe(stop_pipe) != 0)
        return -1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    return 0;
}

/* The signal's number, once one came. */
static int wait_stop(void)
{
    unsigned char b = 0;
    while (read(stop_pipe[0], &b, 1) != 1)
        ;
    return b;
}

static int serve_main(serve_opts *o, const char *const *args, int nargs, int compute_threads)
{
    kd_err e = {0};
    /* blocked in every thread made from here on (the HTTP pool, the model
     * workers); the main thread unblocks them once the server runs */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (catch_stop() != 0)
        return cli_fail(&(kd_err){.code = KD_ERUNTIME, .msg = "cannot make a pipe"});
    serve_source *src = NULL;
    int n = 0;
    if (serve_sources(args, nargs, &src, &n, &e) != KD_OK)
        return cli_fail(&e);
    o->compute_threads = compute_threads;
    nn_set_threads(1); /* OpenBLAS stays serial: each model has its own team (serve.h) */
    serve_server *s = serve_server_new(o, &e);
    int rc = s ? serve_server_add_sources(s, src, n, &e) : e.code;
    if (rc == KD_OK)
        rc = serve_server_start(s, &e);
    if (rc != KD_OK) {
        serve_server_free(s);
        kd_free(src);
        return cli_fail(&e);
    }
    printf("listening on http://%s:%d\n", o->host, serve_server_port(s));
    for (int i = 0; i < n; i++)
        printf("model %s%s  %s\n", src[i].name, i == 0 ? " (default)" : "", src[i].path);
    fflush(stdout);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    int sig = wait_stop();
    fprintf(stderr, "kdbench serve: %s, draining\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    serve_server_stop(s, 10);
    serve_server_free(s);
    kd_free(src);
    return KD_EXIT_OK;
}

/* The serve settings of the operands: an experiment YAML (validated whole;
 * its run folder runs/NAME is served) or a run folder with a config.yaml
 * (its serve section); else the defaults.  *dir gets the folder to serve
 * when the operand was a YAML (static storage).  0 or an exit status. */
static int base_settings(const char *arg, cfg_serve *c, const char **dir)
{
    static char run_dir[CFG_PATH_MAX + 8];
    kd_err e = {0};
    size_t n = strlen(arg);
    config_serve_defaults(c);
    if ((n > 5 && !strcmp(arg + n - 5, ".yaml")) || (n > 4 && !strcmp(arg + n - 4, ".yml"))) {
        exp_spec *s = kd_calloc(1, sizeof *s);
        if (!s)
            return cli_fail(&(kd_err){.code = KD_ENOMEM, .msg = "out of memory"});
        int rc = config_load(arg, NULL, 0, s, &e);
        if (rc == KD_OK) {
            *c = s->serve;
            snprintf(run_dir, sizeof run_dir, "runs/%s", s->name);
            *dir = run_dir;
        }
        kd_free(s);
        return rc == KD_OK ? 0 : cli_fail(&e);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/config.yaml", arg);
    if (kd_file_size(path) >= 0 && config_load_serve(path, c, &e) != KD_OK)
        return cli_fail(&e);
    return 0;
}

/* Flags given on the command line, by their option letter, override c. */
typedef struct {
    cfg_serve v;
    const char *keyfile;
    char given[128];
} serve_flags;

static void apply_flags(const serve_flags *f, cfg_serve *c, const char **keyfile)
{
    const cfg_serve *v = &f->v;
    if (f->given['p']) c->port = v->port;
    if (f->given['H']) snprintf(c->host, sizeof c->host, "%s", v->host);
    if (f->given['t']) c->threads = v->threads;
    if (f->given['c']) c->compute_threads = v->compute_threads;
    if (f->given['b']) c->max_batch = v->max_batch;
    if (f->given['d']) c->max_delay_us = v->max_delay_us;
    if (f->given['q']) c->max_queue = v->max_queue;
    if (f->given['B']) c->max_body = v->max_body;
    if (f->given['C']) c->max_connections = v->max_connections;
    if (f->given['T']) c->timeout = v->timeout;
    if (f->given['S']) snprintf(c->shadow, sizeof c->shadow, "%s", v->shadow);
    *keyfile = f->given['k'] ? f->keyfile : c->api_key_file[0] ? c->api_key_file : NULL;
}

/* One option into f; 0, or -1 on a bad value. */
static int take_flag(serve_flags *f, int c, const char *arg)
{
    long v = 0;
    int bad = 0;
    cfg_serve *o = &f->v;
    switch (c) {
    case 'p': bad = int_arg(arg, 0, 65535, &v); o->port = (int)v; break;
    case 'H': bad = strlen(arg) >= sizeof o->host; snprintf(o->host, sizeof o->host, "%s", arg); break;
    case 't': bad = int_arg(arg, 1, 256, &v); o->threads = (int)v; break;
    case 'c': bad = int_arg(arg, 1, 256, &v); o->compute_threads = (int)v; break;
    case 'k': f->keyfile = arg; break;
    case 'b': bad = int_arg(arg, 1, 4096, &v); o->max_batch = (int)v; break;
    case 'd': bad = int_arg(arg, 0, 10000000, &v); o->max_delay_us = (int)v; break;
    case 'q': bad = int_arg(arg, 1, 1000000, &v); o->max_queue = (int)v; break;
    case 'B': bad = int_arg(arg, 64, 1 << 30, &v); o->max_body = (int)v; break;
    case 'C': bad = int_arg(arg, 1, 1000000, &v); o->max_connections = (int)v; break;
    case 'T': bad = int_arg(arg, 1, 3600, &v); o->timeout = (int)v; break;
    case 'S': bad = strlen(arg) >= sizeof o->shadow; snprintf(o->shadow, sizeof o->shadow, "%s", arg); break;
    default: return -1;
    }
    f->given[c] = 1;
    return bad ? -1 : 0;
}

int cli_cmd_serve(int argc, char **argv)
{
    static const struct option opts[] = {
        {"port", required_argument, 0, 'p'},         {"host", required_argument, 0, 'H'},
        {"threads", required_argument, 0, 't'},      {"compute-threads", required_argument, 0, 'c'},
        {"api-key-file", required_argument, 0, 'k'}, {"max-batch", required_argument, 0, 'b'},
        {"max-delay-us", required_argument, 0, 'd'}, {"max-queue", required_argument, 0, 'q'},
        {"max-body", required_argument, 0, 'B'},     {"max-connections", required_argument, 0, 'C'},
        {"timeout", required_argument, 0, 'T'},      {"shadow", required_argument, 0, 'S'},
        {0, 0, 0, 0},
    };
    serve_flags f = {0};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (c == ':')
            return cli_usage_error("serve", "%s needs a value", argv[optind - 1]);
        if (c == '?')
            return cli_usage_error("serve", "unknown option \"%s\"", argv[optind - 1]);
        if (take_flag(&f, c, optarg))
            return cli_usage_error("serve", "%s: \"%s\" is not a valid value", argv[optind - 2],
                                   optarg);
    }
    if (optind >= argc)
        return cli_usage_error("serve", "a MODEL file, RUN_DIR or experiment YAML expected");
    cfg_serve cs;
    const char *keyfile = NULL, *dir = NULL;
    int st = base_settings(argv[optind], &cs, &dir);
    if (st)
        return st;
    if (dir && argc - optind > 1)
        return cli_usage_error("serve", "an experiment YAML is served alone (its run folder)");
    apply_flags(&f, &cs, &keyfile);
    char why[512], *key = NULL;
    if (keyfile && !(key = read_key(keyfile, why, sizeof why)))
        return cli_usage_error("serve", "api key file %s", why);
    serve_opts o = {.host = cs.host, .port = cs.port, .threads = cs.threads,
                    .max_batch = cs.max_batch, .max_delay_us = cs.max_delay_us,
                    .max_queue = cs.max_queue, .max_body = (size_t)cs.max_body,
                    .max_connections = cs.max_connections, .timeout_s = cs.timeout,
                    .api_key = key, .shadow = cs.shadow[0] ? cs.shadow : NULL};
    const char *one[1] = {dir};
    int rc = dir ? serve_main(&o, one, 1, cs.compute_threads)
                 : serve_main(&o, (const char *const *)argv + optind, argc - optind,
                              cs.compute_threads);
    kd_free(key);
    return rc;
}

/* http://A.B.C.D:PORT[/...] */
static int parse_url(const char *url, char *host, size_t nhost, int *port)
{
    const char *p = !strncmp(url, "http://", 7) ? url + 7 : NULL;
    const char *colon = p ? strchr(p, ':') : NULL;
    long v;
    char num[16];
    if (!colon || (size_t)(colon - p) >= nhost)
        return -1;
    snprintf(host, nhost, "%.*s", (int)(colon - p), p);
    size_t k = strcspn(colon + 1, "/");
    if (k == 0 || k >= sizeof num)
        return -1;
    snprintf(num, sizeof num, "%.*s", (int)k, colon + 1);
    if (int_arg(num, 1, 65535, &v))
        return -1;
    *port = (int)v;
    return 0;
}

int cli_cmd_loadtest(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},    {"concurrency", required_argument, 0, 'c'},
        {"requests", required_argument, 0, 'n'}, {"seconds", required_argument, 0, 's'},
        {"api-key-file", required_argument, 0, 'k'}, {"predict", no_argument, 0, 'P'},
        {"random", no_argument, 0, 'R'},             {0, 0, 0, 0},
    };
    serve_load_opts o = {.concurrency = 8, .seconds = 10};
    const char *keyfile = NULL;
    int random = 0;
    long v = 0;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'm': o.model = optarg; break;
        case 'c': bad = int_arg(optarg, 1, 4096, &v); o.concurrency = (int)v; break;
        case 'n': bad = int_arg(optarg, 0, 1000000000, &v); o.requests = v; break;
        case 's': bad = int_arg(optarg, 1, 3600, &v); o.seconds = (double)v; break;
        case 'k': keyfile = optarg; break;
        case 'P': o.predict = 1; break;
        case 'R': random = 1; break;
        case ':': return cli_usage_error("loadtest", "%s needs a value", argv[optind - 1]);
        default: return cli_usage_error("loadtest", "unknown option \"%s\"", argv[optind - 1]);
        }
        if (bad)
            return cli_usage_error("loadtest", "%s: \"%s\" is not a valid value",
                                   argv[optind - 2], optarg);
    }
    char host[64], why[512], *key = NULL;
    if (optind != argc - 1 || parse_url(argv[optind], host, sizeof host, &o.port))
        return cli_usage_error("loadtest", "one URL http://ADDRESS:PORT expected");
    if (o.predict && o.model)
        return cli_usage_error("loadtest", "--predict loads the default model: no --model");
    if (keyfile && !(key = read_key(keyfile, why, sizeof why)))
        return cli_usage_error("loadtest", "--api-key-file %s", why);
    o.host = host;
    o.api_key = key;
    signal(SIGPIPE, SIG_IGN);
    kd_err e = {0};
    data_set test = {0};
    if (!random && data_idx_load(DATA_FASHION_DIR "/t10k-images-idx3-ubyte.gz",
                                 DATA_FASHION_DIR "/t10k-labels-idx1-ubyte.gz", SERVE_LOAD_BODIES,
                                 &test, &e) == KD_OK && test.x8) {
        o.images = test.x8;
        o.nimages = test.n;
        o.image_size = nn_shape_size(test.shape);
    }
    serve_load_row *rows = NULL;
    int n = 0, rc = serve_loadtest(&o, &rows, &n, &e);
    data_set_free(&test);
    kd_free(key);
    if (rc != KD_OK)
        return cli_fail(&e);
    printf("%-28s %5s %9s %9s %8s %10s %8s %8s %8s\n", "model", "conc", "requests", "failed",
           "seconds", "req/s", "p50 ms", "p90 ms", "p99 ms");
    for (int i = 0; i < n; i++)
        printf("%-28s %5d %9ld %9ld %8.2f %10.0f %8.3f %8.3f %8.3f\n", rows[i].model,
               o.concurrency, rows[i].ok, rows[i].failed, rows[i].seconds, rows[i].rps,
               rows[i].p50_ms, rows[i].p90_ms, rows[i].p99_ms);
    kd_free(rows);
    return KD_EXIT_OK;
}
