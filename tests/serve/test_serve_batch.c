/* Dynamic batching gives each request the answer it gets alone, for every
 * kind; run directories are named the way their results are. */
#include <pthread.h>
#include <unistd.h>

#include "../../serve/internal.h"
#include "sfix.h"

#define NCALLS 8

typedef struct {
    int port, r0, status;
    const char *path;
    float p[S_OUT];
} b_call;

static void *b_infer(void *arg)
{
    b_call *c = arg;
    kd_buf b = {0}, a = {0};
    sf_infer_body(&b, c->r0, 1, 0);
    c->status = sf_req(c->port, "POST", c->path, NULL, (char *)b.p, &a);
    if (c->status == 200)
        sf_infer_probs((char *)a.p, c->p, 1, NULL);
    kd_buf_free(&a);
    kd_buf_free(&b);
    return NULL;
}

/* NCALLS concurrent batch-1 requests gathered into fewer forwards; each
 * answer within tol of the same row run alone (tol 0: identical). */
static void check_batched(nn_model *m, const char *fmt, float tol, int isolated)
{
    kd_err e = {0};
    nn_model *ref = nn_model_clone(m, &e);
    ck_assert_msg(ref != NULL, "%s", e.msg);
    ref->b1_threads = 1;
    const char *name = "m";
    serve_opts o = sf_opts();
    o.max_delay_us = 300000; /* long enough for all NCALLS to join one batch */
    serve_server *s = sf_start(&o, &m, &name, 1);
    kd_buf a = {0};
    ck_assert_int_eq(sf_req(serve_server_port(s), "GET", "/v2/models/m", NULL, NULL, &a), 200);
    ck_assert_msg(strstr((char *)a.p, fmt), "%s: %s", fmt, (char *)a.p);
    ck_assert_msg(strstr((char *)a.p, isolated ? "\"batching\":\"per-request\""
                                               : "\"batching\":\"shared\""), "%s: %s", fmt,
                  (char *)a.p);
    b_call c[NCALLS];
    pthread_t t[NCALLS];
    for (int i = 0; i < NCALLS; i++) {
        c[i] = (b_call){.port = serve_server_port(s), .r0 = i, .path = "/v2/models/m/infer"};
        ck_assert_int_eq(pthread_create(&t[i], NULL, b_infer, &c[i]), 0);
    }
    for (int i = 0; i < NCALLS; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(sf_req(serve_server_port(s), "GET", "/metrics", NULL, NULL, &a), 200);
    double batches = sf_metric((char *)a.p, "kdbench_batch_rows_count{model=\"m\"}");
    ck_assert_msg(batches >= 1 && batches < NCALLS, "%s: %g forwards for %d requests", fmt,
                  batches, NCALLS);
    double worst = 0;
    for (int i = 0; i < NCALLS; i++) {
        ck_assert_int_eq(c[i].status, 200);
        float x[S_IN], want[S_OUT];
        sf_row(i, x);
        sf_reference(ref, x, want);
        for (int j = 0; j < S_OUT; j++)
            worst = fmax(worst, fabs((double)c[i].p[j] - want[j]));
    }
    ck_assert_msg(worst <= tol, "%s: batched answers differ from single ones by %g (> %g)", fmt,
                  worst, (double)tol);
    kd_buf_free(&a);
    serve_server_free(s);
    nn_model_free(ref);
}

/* fp32: OpenBLAS's GEMM at batch n and its batch-1 path sum in different
 * orders, so answers agree to rounding, not bit for bit. */
START_TEST(test_batched_fp32)
{
    check_batched(sf_model(11), "\"format\":\"fp32\"", 1e-5f, 0);
}
END_TEST

/* int8 (static: calibrated input ranges) and int4 are exact at any batch. */
START_TEST(test_batched_int8_int4)
{
    nn_model *m = sf_model(12);
    data_set d = qt_data(COMPRESS_CALIB_BATCH, S_IN, S_OUT, 3);
    check_batched(qt_quantize(m, COMPRESS_Q_STATIC8, &d), "\"format\":\"int8\"", 0, 0);
    check_batched(qt_quantize(m, COMPRESS_Q_INT4, &d), "\"format\":\"int4\"", 0, 0);
    data_set_free(&d);
    nn_model_free(m);
}
END_TEST

/* int8-dyn quantizes its input over the whole batch: batched with other
 * requests a row would get another answer, so the server runs it per request. */
START_TEST(test_batched_int8_dynamic)
{
    nn_model *m = sf_model(13);
    check_batched(qt_quantize(m, COMPRESS_Q_DYNAMIC8, NULL), "\"format\":\"int8-dyn\"", 0, 1);
    nn_model_free(m);
}
END_TEST

START_TEST(test_batched_csr)
{
    nn_model *m = sf_model(14);
    kd_err e = {0};
    compress_prune_spec ps = {.sparsity = 0.8f};
    ck_assert_int_eq(compress_prune_magnitude(m, &ps, NULL, &e), KD_OK);
    compress_sparse_opts all = {.policy = COMPRESS_SPARSE_ALWAYS};
    nn_model *sp = compress_to_sparse(m, &all, NULL, &e);
    ck_assert_msg(sp != NULL, "%s", e.msg);
    check_batched(sp, "\"format\":\"csr-fp32\"", 1e-5f, 0);
    nn_model_free(m);
}
END_TEST

/* Concurrent requests on three models, each run by its worker with a team
 * of compute_threads, OpenBLAS at blas threads: every answer equals the
 * reference's; the worst difference is returned. */
#define CT_CALLERS 6
#define CT_CALLS 24
typedef struct {
    int port, id;
    double worst;
    int failed;
    nn_model *ref[3];
} ct_caller;

static void *ct_run(void *arg)
{
    ct_caller *c = arg;
    static const char *const paths[3] = {"/v2/models/fp/infer", "/v2/models/csr/infer",
                                         "/v2/models/q8/infer"};
    kd_buf b = {0}, a = {0};
    for (int k = 0; k < CT_CALLS; k++) {
        int m = (k + c->id) % 3, r0 = c->id * CT_CALLS + k, rows = 1 + k % 3;
        sf_infer_body(&b, r0, rows, 0);
        if (sf_req(c->port, "POST", paths[m], NULL, (char *)b.p, &a) != 200) {
            c->failed++;
            continue;
        }
        float p[3 * S_OUT];
        sf_infer_probs((char *)a.p, p, rows, NULL);
        for (int r = 0; r < rows; r++) {
            float x[S_IN], want[S_OUT];
            sf_row(r0 + r, x);
            sf_reference(c->ref[m], x, want);
            for (int j = 0; j < S_OUT; j++)
                c->worst = fmax(c->worst, fabs((double)p[r * S_OUT + j] - want[j]));
        }
    }
    kd_buf_free(&a);
    kd_buf_free(&b);
    return NULL;
}

static double concurrent_worst(int compute_threads, int blas)
{
    kd_err e = {0};
    nn_model *fp = sf_model(41), *dense = sf_model(42), *q = sf_model(43);
    compress_prune_spec ps = {.sparsity = 0.8f};
    ck_assert_int_eq(compress_prune_magnitude(dense, &ps, NULL, &e), KD_OK);
    compress_sparse_opts all = {.policy = COMPRESS_SPARSE_ALWAYS};
    nn_model *csr = compress_to_sparse(dense, &all, NULL, &e);
    data_set d = qt_data(COMPRESS_CALIB_BATCH, S_IN, S_OUT, 3);
    nn_model *q8 = qt_quantize(q, COMPRESS_Q_STATIC8, &d);
    ck_assert(csr && q8);
    ct_caller c[CT_CALLERS];
    nn_model *models[3] = {fp, csr, q8};
    const char *names[3] = {"fp", "csr", "q8"};
    for (int i = 0; i < CT_CALLERS; i++) {
        c[i] = (ct_caller){.id = i};
        for (int m = 0; m < 3; m++) {
            c[i].ref[m] = nn_model_clone(models[m], &e);
            c[i].ref[m]->b1_threads = 1;
        }
    }
    nn_set_threads(blas);
    serve_opts o = sf_opts();
    o.compute_threads = compute_threads;
    serve_server *s = sf_start(&o, models, names, 3);
    pthread_t t[CT_CALLERS];
    for (int i = 0; i < CT_CALLERS; i++) {
        c[i].port = serve_server_port(s);
        ck_assert_int_eq(pthread_create(&t[i], NULL, ct_run, &c[i]), 0);
    }
    double worst = 0;
    for (int i = 0; i < CT_CALLERS; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(c[i].failed, 0);
        worst = fmax(worst, c[i].worst);
        for (int m = 0; m < 3; m++)
            nn_model_free(c[i].ref[m]);
    }
    ck_assert_int_eq(nn_threads(), blas); /* serve never resized OpenBLAS's pool */
    serve_server_free(s);
    data_set_free(&d);
    nn_model_free(dense);
    nn_model_free(q);
    return worst;
}

/* --compute-threads 2: each model's threaded layers split over its own team,
 * OpenBLAS serial; answers under concurrent load equal the single-threaded
 * reference's. */
START_TEST(test_compute_threads)
{
    double worst = concurrent_worst(2, 1);
    ck_assert_msg(worst <= 1e-5, "answers differ by %g under concurrency", worst);
}
END_TEST

/* --shadow: b's requests also run on a, after they are answered; /metrics
 * gives b's agreement with a, and a (the shadow) is not compared with itself. */
START_TEST(test_shadow)
{
    nn_model *ma = sf_model(31), *mb = sf_model(32);
    kd_err e = {0};
    nn_model *ra = nn_model_clone(ma, &e), *rb = nn_model_clone(mb, &e);
    nn_model *models[2] = {ma, mb};
    const char *names[2] = {"a", "b"};
    serve_opts o = sf_opts();
    o.shadow = "a";
    serve_server *s = sf_start(&o, models, names, 2);
    int port = serve_server_port(s), agree = 0;
    kd_buf a = {0}, b = {0};
    for (int r = 0; r < NCALLS; r++) {
        float x[S_IN], pa[S_OUT], pb[S_OUT];
        int ca, cb;
        sf_row(r, x);
        sf_reference(ra, x, pa);
        sf_reference(rb, x, pb);
        serve_argmax(pa, 1, S_OUT, &ca);
        serve_argmax(pb, 1, S_OUT, &cb);
        agree += ca == cb;
    }
    sf_infer_body(&b, 0, NCALLS, 0); /* one request of NCALLS rows */
    ck_assert_int_eq(sf_req(port, "POST", "/v2/models/b/infer", NULL, (char *)b.p, &a), 200);
    sf_infer_body(&b, 0, 1, 0);
    ck_assert_int_eq(sf_req(port, "POST", "/v2/models/a/infer", NULL, (char *)b.p, &a), 200);
    double rows = 0;
    for (double until = kd_now() + 5; rows < NCALLS && kd_now() < until; usleep(10000)) {
        ck_assert_int_eq(sf_req(port, "GET", "/metrics", NULL, NULL, &a), 200);
        rows = sf_metric((char *)a.p, "kdbench_shadow_rows_total{model=\"b\"}");
    }
    ck_assert_double_eq(rows, NCALLS);
    ck_assert_double_eq_tol(sf_metric((char *)a.p, "kdbench_shadow_agreement{model=\"b\"}"),
                            (double)agree / NCALLS, 1e-12);
    ck_assert_double_eq(sf_metric((char *)a.p, "kdbench_shadow_rows_total{model=\"a\"}"), 0);
    ck_assert_msg(agree > 0 && agree < NCALLS, "a weak test: %d of %d agree", agree, NCALLS);
    kd_buf_free(&a);
    kd_buf_free(&b);
    serve_server_free(s);
    nn_model_free(ra);
    nn_model_free(rb);
    /* a shadow that is not served is refused at start */
    nn_model *m = sf_model(33);
    const char *n1 = "m";
    o.shadow = "teacher";
    serve_server *s2 = serve_server_new(&o, &e);
    ck_assert_int_eq(serve_server_add(s2, n1, m, 1, -1, &e), KD_OK);
    ck_assert_int_eq(serve_server_start(s2, &e), KD_ECONFIG);
    serve_server_free(s2);
}
END_TEST

static void save(nn_model *m, const char *path)
{
    kd_err e = {0};
    ck_assert_msg(nn_model_save(m, path, &e) == KD_OK, "%s", e.msg);
}

/* A run directory: teacher, students by STUDENT/MODE (first seed), the other
 * seeds with theirs, compressed variants by name, accuracies from results.json. */
START_TEST(test_sources)
{
    char dir[256], p[512];
    kdt_tmpdir(dir, sizeof dir);
    nn_model *m = sf_model(15);
    snprintf(p, sizeof p, "%s/students/s1", dir);
    kd_err e = {0};
    ck_assert_int_eq(kd_mkdirs(p, &e), KD_OK);
    snprintf(p, sizeof p, "%s/compressed", dir);
    ck_assert_int_eq(kd_mkdirs(p, &e), KD_OK);
    /* seeds in numeric order (2 before 10); compressed/x-seed2.kdm sorts
     * before x.kdm by name but x keeps the plain name */
    const char *files[] = {"teacher.kdm", "students/s1/distilled-seed2.kdm",
                           "students/s1/distilled-seed10.kdm", "compressed/x_int8.kdm",
                           "compressed/x_int8-seed2.kdm"};
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        save(m, p);
    }
    const char *res = "{\"rows\": [{\"name\": \"teacher\", \"accuracy\": 0.9},"
                      " {\"name\": \"s1/distilled\", \"accuracy\": 0.8},"
                      " {\"name\": \"x/int8\", \"accuracy\": 0.7}]}";
    snprintf(p, sizeof p, "%s/results.json", dir);
    kdt_write(p, res, strlen(res));
    serve_source *src;
    int n;
    const char *args[] = {dir};
    ck_assert_msg(serve_sources(args, 1, &src, &n, &e) == KD_OK, "%s", e.msg);
    ck_assert_int_eq(n, 5);
    const char *want[] = {"teacher", "s1/distilled", "s1/distilled-seed10", "x_int8",
                          "x_int8-seed2"};
    for (int i = 0; i < 5; i++)
        ck_assert_str_eq(src[i].name, want[i]);
    ck_assert_ptr_nonnull(strstr(src[1].path, "distilled-seed2.kdm"));
    ck_assert_double_eq(src[0].accuracy, 0.9);
    ck_assert_double_eq(src[1].accuracy, 0.8);
    ck_assert_double_eq(src[3].accuracy, 0.7); /* row x/int8, file x_int8.kdm */
    ck_assert_double_lt(src[4].accuracy, 0);
    kd_free(src);
    /* a file and the same name twice; a folder with no model; a missing path */
    snprintf(p, sizeof p, "%s/teacher.kdm", dir);
    const char *twice[] = {dir, p};
    ck_assert_int_eq(serve_sources(twice, 2, &src, &n, &e), KD_ECONFIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "teacher"));
    snprintf(p, sizeof p, "%s/students", dir);
    const char *empty[] = {p};
    ck_assert_int_eq(serve_sources(empty, 1, &src, &n, &e), KD_ECONFIG);
    const char *missing[] = {"/nonexistent/model.kdm"};
    ck_assert_int_eq(serve_sources(missing, 1, &src, &n, &e), KD_ECONFIG);
    /* a corrupt model file is refused when loaded, with its path */
    snprintf(p, sizeof p, "%s/compressed/x_int8.kdm", dir);
    kdt_write(p, "KDBM garbage", 12);
    const char *one[] = {p};
    ck_assert_int_eq(serve_sources(one, 1, &src, &n, &e), KD_OK);
    serve_opts o = sf_opts();
    serve_server *s = serve_server_new(&o, &e);
    ck_assert_int_ne(serve_server_add_sources(s, src, n, &e), KD_OK);
    ck_assert_msg(strstr(e.msg, "x_int8.kdm") || strstr(e.file, "x_int8.kdm"), "%s", e.msg);
    serve_server_free(s);
    kd_free(src);
    nn_model_free(m);
}
END_TEST

Suite *suite_serve_batch(void)
{
    Suite *s = suite_create("serve_batch");
    TCase *tc = tcase_create("batch");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_batched_fp32);
    tcase_add_test(tc, test_batched_int8_int4);
    tcase_add_test(tc, test_batched_int8_dynamic);
    tcase_add_test(tc, test_batched_csr);
    tcase_add_test(tc, test_compute_threads);
    tcase_add_test(tc, test_sources);
    tcase_add_test(tc, test_shadow);
    suite_add_tcase(s, tc);
    return s;
}
