/* The server in-process on an ephemeral loopback port: every endpoint, the
 * access rule, bad inputs, limits, 429, drain. */
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sfix.h"

START_TEST(test_endpoints)
{
    nn_model *ref = sf_model(1), *q = qt_quantize(ref, COMPRESS_Q_INT4, NULL);
    kd_err e = {0};
    nn_model *models[2] = {nn_model_clone(ref, &e), nn_model_clone(q, &e)};
    const char *names[2] = {"fp", "mlp/q4"};
    serve_opts o = sf_opts();
    serve_server *s = sf_start(&o, models, names, 2);
    int port = serve_server_port(s);
    kd_buf a = {0};
    ck_assert_int_eq(sf_req(port, "GET", "/v2/health/live", NULL, NULL, &a), 200);
    ck_assert_str_eq((char *)a.p, "{\"live\":true}");
    ck_assert_int_eq(sf_req(port, "GET", "/v2/health/ready", NULL, NULL, &a), 200);
    ck_assert_int_eq(sf_req(port, "GET", "/v2/models", NULL, NULL, &a), 200);
    ck_assert_ptr_nonnull(strstr((char *)a.p, "\"name\":\"fp\""));
    ck_assert_ptr_nonnull(strstr((char *)a.p, "\"name\":\"mlp/q4\""));
    /* a name with '/' as the path tail, and percent-encoded */
    ck_assert_int_eq(sf_req(port, "GET", "/v2/models/mlp/q4", NULL, NULL, &a), 200);
    ck_assert_msg(strstr((char *)a.p, "\"format\":\"int4\"") && strstr((char *)a.p, "\"bytes\":1001"),
                  "%s", (char *)a.p);
    ck_assert_int_eq(sf_req(port, "GET", "/v2/models/mlp%2Fq4", NULL, NULL, &a), 200);
    ck_assert_int_eq(sf_req(port, "GET", "/v2/models/fp", NULL, NULL, &a), 200);
    ck_assert_msg(strstr((char *)a.p, "\"accuracy\":0.5") && strstr((char *)a.p, "[-1,32]"), "%s",
                  (char *)a.p);
    ck_assert_int_eq(sf_req(port, "GET", "/v2/models/fp/ready", NULL, NULL, &a), 200);

    /* /predict runs the first model; answers equal a direct forward */
    float x[S_IN], want[S_OUT], got[S_OUT];
    sf_row(0, x);
    kd_buf b = {0};
    rep_bprintf(&b, "{\"input\":[[");
    for (int i = 0; i < S_IN; i++)
        rep_bprintf(&b, "%s%.9g", i ? "," : "", (double)x[i]);
    rep_bprintf(&b, "]]}");
    sf_nul(&b);
    ck_assert_int_eq(sf_req(port, "POST", "/predict", NULL, (char *)b.p, &a), 200);
    sf_reference(ref, x, want);
    cJSON *j = cJSON_Parse((char *)a.p);
    const cJSON *pr = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "prediction"), 0);
    ck_assert_int_eq(cJSON_GetArraySize(pr), S_OUT);
    int best = 0;
    for (int i = 0; i < S_OUT; i++) {
        ck_assert_float_eq((float)cJSON_GetArrayItem(pr, i)->valuedouble, want[i]);
        best = want[i] > want[best] ? i : best;
    }
    ck_assert_int_eq(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "class"), 0)->valueint,
                     best);
    cJSON_Delete(j);

    /* v2 infer on the int4 model: FP32 features and UINT8 pixels agree */
    int cls;
    sf_infer_body(&b, 0, 1, 0);
    ck_assert_int_eq(sf_req(port, "POST", "/v2/models/mlp/q4/infer", NULL, (char *)b.p, &a), 200);
    ck_assert_ptr_nonnull(strstr((char *)a.p, "\"model_name\":\"mlp/q4\""));
    ck_assert_ptr_nonnull(strstr((char *)a.p, "\"id\":\"t0\""));
    sf_infer_probs((char *)a.p, got, 1, &cls);
    sf_reference(q, x, want);
    for (int i = 0; i < S_OUT; i++)
        ck_assert_float_eq(got[i], want[i]);
    sf_infer_body(&b, 0, 1, 1);
    ck_assert_int_eq(sf_req(port, "POST", "/v2/models/mlp%2Fq4/infer", NULL, (char *)b.p, &a), 200);
    sf_infer_probs((char *)a.p, got, 1, NULL);
    for (int i = 0; i < S_OUT; i++)
        ck_assert_float_eq(got[i], want[i]);

    ck_assert_int_eq(sf_req(port, "GET", "/metrics", NULL, NULL, &a), 200);
    ck_assert_double_eq(sf_metric((char *)a.p, "kdbench_requests_total{model=\"fp\"}"), 1);
    ck_assert_double_eq(sf_metric((char *)a.p, "kdbench_requests_total{model=\"mlp/q4\"}"), 2);
    ck_assert_double_eq(sf_metric((char *)a.p, "kdbench_model_bytes{model=\"mlp/q4\"}"), 1001);
    ck_assert_double_eq(sf_metric((char *)a.p, "kdbench_batch_rows_count{model=\"mlp/q4\"}"), 2);
    ck_assert_ptr_nonnull(strstr((char *)a.p, "# TYPE kdbench_request_seconds histogram"));
    ck_assert_ptr_nonnull(strstr((char *)a.p, "kdbench_queue_seconds_bucket{model=\"fp\",le=\"+Inf\"} 1"));
    kd_buf_free(&a);
    kd_buf_free(&b);
    serve_server_free(s);
    nn_model_free(ref);
    nn_model_free(q);
}
END_TEST

START_TEST(test_auth)
{
    nn_model *m = sf_model(2);
    const char *name = "fp";
    serve_opts o = sf_opts();
    o.api_key = "s3cret-key";
    serve_server *s = sf_start(&o, &m, &name, 1);
    int port = serve_server_port(s);
    kd_buf a = {0};
    const char *good = "Authorization: Bearer s3cret-key\r\n";
    ck_assert_int_eq(sf_req(port, "GET", "/v2/health/live", NULL, NULL, &a), 200);
    ck_assert_int_eq(sf_req(port, "GET", "/v2/health/ready", NULL, NULL, &a), 200);
    const char *paths[] = {"/v2/models", "/v2/models/fp", "/metrics", "/v2/models/fp/ready"};
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(sf_req(port, "GET", paths[i], NULL, NULL, &a), 401);
        ck_assert_ptr_nonnull(strstr((char *)a.p, "\"error\""));
        ck_assert_int_eq(sf_req(port, "GET", paths[i], "Authorization: Bearer s3cret-ke\r\n", NULL, &a), 401);
        ck_assert_int_eq(sf_req(port, "GET", paths[i], "Authorization: Bearer s3cret-keyy\r\n", NULL, &a), 401);
        ck_assert_int_eq(sf_req(port, "GET", paths[i], "Authorization: s3cret-key\r\n", NULL, &a), 401);
        ck_assert_int_eq(sf_req(port, "GET", paths[i], good, NULL, &a), 200);
    }
    kd_buf b = {0};
    sf_infer_body(&b, 0, 1, 0);
    ck_assert_int_eq(sf_req(port, "POST", "/v2/models/fp/infer", NULL, (char *)b.p, &a), 401);
    ck_assert_int_eq(sf_req(port, "POST", "/v2/models/fp/infer", good, (char *)b.p, &a), 200);
    kd_buf_free(&a);
    kd_buf_free(&b);
    serve_server_free(s);
}
END_TEST

/* Each bad request gets its 4xx and a JSON error; the server keeps serving. */
START_TEST(test_bad_input)
{
    nn_model *m = sf_model(3);
    const char *name = "fp";
    serve_opts o = sf_opts();
    o.max_body = 4096;
    serve_server *s = sf_start(&o, &m, &name, 1);
    int port = serve_server_port(s);
    static const struct {
        const char *method, *path, *body;
        int status;
    } cases[] = {
        {"POST", "/predict", "{\"input\": [[1, 2,", 400},
        {"POST", "/predict", "[1, 2]", 400},
        {"POST", "/predict", "{\"input\": [[1, 2, 3]]}", 400},
        {"POST", "/predict", "{\"input\": []}", 400},
        {"POST", "/predict", "{\"input\": [[NaN]]}", 400},
        {"POST", "/predict", "", 400},
        {"POST", "/v2/models/fp/infer", "{\"inputs\": []}", 400},
        {"POST", "/v2/models/fp/infer",
         "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,32],\"datatype\":\"INT32\",\"data\":[]}]}", 400},
        {"POST", "/v2/models/fp/infer",
         "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,31],\"datatype\":\"FP32\",\"data\":[]}]}", 400},
        {"POST", "/v2/models/fp/infer",
         "{\"inputs\":[{\"name\":\"input\",\"shape\":[2,32],\"datatype\":\"FP32\",\"data\":[1,2]}]}", 400},
        {"POST", "/v2/models/fp/infer",
         "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,32],\"datatype\":\"FP32\",\"data\":[1e999]}]}", 400},
        {"POST", "/v2/models/nope/infer", "{}", 404},
        {"GET", "/v2/models/nope", NULL, 404},
        {"GET", "/nowhere", NULL, 404},
        {"GET", "/predict", NULL, 405},
        {"DELETE", "/v2/models", NULL, 405},
        {"GET", "/v2/models/fp/infer", NULL, 405},
    };
    kd_buf a = {0}, b = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int st = sf_req(port, cases[i].method, cases[i].path, NULL, cases[i].body, &a);
        ck_assert_msg(st == cases[i].status, "case %zu: %d, not %d: %s", i, st, cases[i].status,
                      (char *)a.p);
        cJSON *j = cJSON_Parse((char *)a.p);
        ck_assert_msg(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "error")), "case %zu: %s",
                      i, (char *)a.p);
        cJSON_Delete(j);
    }
    /* non-finite after the float conversion, and a UINT8 out of range */
    const char *inf_f = "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,32],\"datatype\":\"FP32\","
                        "\"data\":[1e39,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}]}";
    ck_assert_int_eq(sf_req(port, "POST", "/v2/models/fp/infer", NULL, inf_f, &a), 400);
    ck_assert_ptr_nonnull(strstr((char *)a.p, "not finite"));
    sf_infer_body(&b, 0, 1, 1);
    char *p = strstr((char *)b.p, "\"data\":[") + 8;
    memcpy(p, "300", 3); /* the first value becomes 300 (its digits are overwritten) */
    while (p[3] != ',')
        memmove(p + 3, p + 4, strlen(p + 4) + 1);
    ck_assert_int_eq(sf_req(port, "POST", "/v2/models/fp/infer", NULL, (char *)b.p, &a), 400);
    ck_assert_ptr_nonnull(strstr((char *)a.p, "UINT8"));
    /* over the body limit: 413 (by Content-Length, before reading it) */
    char *big = kd_malloc(5000);
    memset(big, ' ', 4999);
    big[4999] = 0;
    ck_assert_int_eq(sf_req(port, "POST", "/predict", NULL, big, &a), 413);
    ck_assert_ptr_nonnull(strstr((char *)a.p, "\"error\""));
    kd_free(big);
    /* still serving */
    sf_infer_body(&b, 1, 2, 0);
    ck_assert_int_eq(sf_req(port, "POST", "/v2/models/fp/infer", NULL, (char *)b.p, &a), 200);
    ck_assert_int_eq(sf_req(port, "GET", "/metrics", NULL, NULL, &a), 200);
    /* 16 of them reached model fp: 11 bad bodies, 2 wrong methods on its paths,
     * the non-finite, the UINT8 and the 413 (/predict names the first model) */
    ck_assert_double_eq(sf_metric((char *)a.p, "kdbench_request_failures_total{model=\"fp\"}"), 16);
    kd_buf_free(&a);
    kd_buf_free(&b);
    serve_server_free(s);
}
END_TEST

static int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* 1 when the server closes fd (EOF or reset) within ms milliseconds. */
static int closed_within(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char buf[512];
    double until = kd_now() + ms / 1e3;
    while (kd_now() < until) {
        if (poll(&p, 1, 50) == 1) {
            ssize_t k = recv(fd, buf, sizeof buf, 0);
            if (k <= 0)
                return 1;
        }
    }
    return 0;
}

/* A client that sends half a request and stalls is cut off after the
 * timeout; connections over the limit are closed at once; both leave the
 * server serving. */
START_TEST(test_stall_and_limit)
{
    nn_model *m = sf_model(4);
    const char *name = "fp";
    serve_opts o = sf_opts();
    o.timeout_s = 1;
    o.max_connections = 4;
    serve_server *s = sf_start(&o, &m, &name, 1);
    int port = serve_server_port(s);
    int fd = raw_connect(port);
    const char half[] = "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"inp";
    ck_assert_int_eq(send(fd, half, sizeof half - 1, 0), (ssize_t)sizeof half - 1);
    double t0 = kd_now();
    ck_assert_msg(closed_within(fd, 4000), "a stalled client was not cut off");
    ck_assert_double_ge(kd_now() - t0, 0.5);
    close(fd);
    /* 12 clients at once with a limit of 4: at most 4 are answered at first
     * (the others wait in the listen backlog, not in the server), and all
     * are answered once idle connections time out */
    int fds[12], answered[12] = {0}, first = 0, total = 0;
    const char get[] = "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n";
    for (int i = 0; i < 12; i++) {
        fds[i] = raw_connect(port);
        ck_assert_int_eq(send(fds[i], get, sizeof get - 1, 0), (ssize_t)sizeof get - 1);
    }
    t0 = kd_now();
    for (double until = kd_now() + 8; kd_now() < until && total < 12;) {
        for (int i = 0; i < 12; i++) {
            struct pollfd p = {.fd = fds[i], .events = POLLIN};
            char buf[512];
            if (!answered[i] && poll(&p, 1, 0) == 1 && recv(fds[i], buf, sizeof buf, 0) > 0) {
                answered[i] = 1;
                total++;
                first += kd_now() - t0 < 0.5;
            }
        }
        usleep(20000);
    }
    ck_assert_msg(total == 12, "%d of 12 clients answered", total);
    ck_assert_msg(first >= 1 && first <= 4, "%d answered at once over a limit of 4", first);
    for (int i = 0; i < 12; i++)
        close(fds[i]);
    usleep(200000);
    kd_buf a = {0};
    ck_assert_int_eq(sf_req(port, "GET", "/v2/health/live", NULL, NULL, &a), 200);
    kd_buf_free(&a);
    serve_server_free(s);
}
END_TEST

typedef struct {
    int port, r0, status;
    const char *path;
    float p[S_OUT];
    double seconds;
} sf_call;

static void *call_infer(void *arg)
{
    sf_call *c = arg;
    kd_buf b = {0}, a = {0};
    sf_infer_body(&b, c->r0, 1, 0);
    double t0 = kd_now();
    c->status = sf_req(c->port, "POST", c->path, NULL, (char *)b.p, &a);
    c->seconds = kd_now() - t0;
    if (c->status == 200)
        sf_infer_probs((char *)a.p, c->p, 1, NULL);
    kd_buf_free(&a);
    kd_buf_free(&b);
    return NULL;
}

/* A full queue answers 429 at once, and the queued requests still succeed. */
START_TEST(test_queue_full)
{
    nn_model *m = sf_model(5);
    const char *name = "fp";
    serve_opts o = sf_opts();
    o.max_queue = 2;
    o.max_delay_us = 700000; /* the two queued requests wait for more */
    serve_server *s = sf_start(&o, &m, &name, 1);
    sf_call c[2] = {{.port = serve_server_port(s), .r0 = 0, .path = "/v2/models/fp/infer"},
                    {.port = serve_server_port(s), .r0 = 1, .path = "/v2/models/fp/infer"}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, call_infer, &c[i]), 0);
    usleep(250000);
    sf_call third = {.port = serve_server_port(s), .r0 = 2, .path = "/v2/models/fp/infer"};
    call_infer(&third);
    ck_assert_int_eq(third.status, 429);
    ck_assert_double_lt(third.seconds, 0.3);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(c[i].status, 200);
    }
    serve_server_free(s);
}
END_TEST

/* SIGTERM's path: stop drains a request that is waiting in its batch; new
 * connections are refused afterwards. */
START_TEST(test_drain)
{
    nn_model *m = sf_model(6);
    const char *name = "fp";
    serve_opts o = sf_opts();
    o.max_delay_us = 400000;
    serve_server *s = sf_start(&o, &m, &name, 1);
    int port = serve_server_port(s);
    sf_call c = {.port = port, .r0 = 0, .path = "/v2/models/fp/infer"};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, call_infer, &c), 0);
    usleep(100000);
    double t0 = kd_now();
    serve_server_stop(s, 5);
    ck_assert_double_lt(kd_now() - t0, 3);
    pthread_join(t, NULL);
    ck_assert_int_eq(c.status, 200);
    kd_err e = {0};
    serve_client *cl = serve_client_new("127.0.0.1", port, 2, &e);
    int status;
    ck_assert_int_eq(serve_client_request(cl, "GET", "/v2/health/live", NULL, NULL, 0, &status,
                                          NULL, &e), KD_EIO);
    serve_client_free(cl);
    serve_server_free(s);
}
END_TEST

/* A port in use is an error at start, and the first server keeps serving. */
START_TEST(test_port_in_use)
{
    nn_model *m = sf_model(7);
    const char *name = "fp";
    serve_opts o = sf_opts();
    serve_server *s = sf_start(&o, &m, &name, 1);
    o.port = serve_server_port(s);
    kd_err e = {0};
    serve_server *s2 = serve_server_new(&o, &e);
    ck_assert_int_eq(serve_server_add(s2, name, sf_model(8), 1, -1, &e), KD_OK);
    ck_assert_int_eq(serve_server_start(s2, &e), KD_ERUNTIME);
    ck_assert_ptr_nonnull(strstr(e.msg, "cannot listen"));
    serve_server_free(s2);
    kd_buf a = {0};
    ck_assert_int_eq(sf_req(o.port, "GET", "/v2/health/live", NULL, NULL, &a), 200);
    kd_buf_free(&a);
    serve_server_free(s);
    /* options out of range are refused */
    o.max_batch = 0;
    ck_assert_ptr_null(serve_server_new(&o, &e));
    ck_assert_int_eq(e.code, KD_ECONFIG);
}
END_TEST

/* Stopping while clients keep connecting.  With MHD_quiesce_daemon,
 * libmicrohttpd's epoll loop and the quiesce both took the listen socket out
 * of a pool worker's epoll set, and the loser aborted the process (one stop in
 * ~500 here, and once in CI); stop now refuses new connections by the accept
 * policy.  Bounded: 300 stops or 4 s. */
static volatile int churn_port, churn_go;

static void *churn(void *arg)
{
    (void)arg;
    const char *r = "GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n";
    while (__atomic_load_n(&churn_go, __ATOMIC_ACQUIRE)) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)churn_port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (fd < 0)
            break;
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 && write(fd, r, strlen(r)) < 0) {
            close(fd);
            break;
        }
        close(fd);
    }
    return NULL;
}

START_TEST(test_stop_under_churn)
{
    double t0 = kd_now();
    int stops = 0;
    for (; stops < 300 && kd_now() - t0 < 4; stops++) {
        nn_model *m = sf_model(9);
        const char *name = "fp";
        serve_opts o = sf_opts();
        serve_server *s = sf_start(&o, &m, &name, 1);
        churn_port = serve_server_port(s);
        __atomic_store_n(&churn_go, 1, __ATOMIC_RELEASE);
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, churn, NULL), 0);
        usleep(300);
        serve_server_free(s);
        __atomic_store_n(&churn_go, 0, __ATOMIC_RELEASE);
        pthread_join(t, NULL);
    }
    ck_assert_int_ge(stops, 20);
}
END_TEST

Suite *suite_serve(void)
{
    Suite *s = suite_create("serve");
    TCase *tc = tcase_create("server");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_endpoints);
    tcase_add_test(tc, test_auth);
    tcase_add_test(tc, test_bad_input);
    tcase_add_test(tc, test_stall_and_limit);
    tcase_add_test(tc, test_queue_full);
    tcase_add_test(tc, test_drain);
    tcase_add_test(tc, test_port_in_use);
    tcase_add_test(tc, test_stop_under_churn);
    suite_add_tcase(s, tc);
    return s;
}
