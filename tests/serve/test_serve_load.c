/* The load tester's requests: with images it sends them round-robin (each
 * request a real image, every image sent), not one fixed body.  A stub HTTP
 * server (libmicrohttpd) on an ephemeral loopback port records what arrives. */
#include <microhttpd.h>
#include <pthread.h>

#include "sfix.h"

#define NIMG 5
#define ISZ 4

typedef struct {
    pthread_mutex_t mu;
    int seen[256]; /* requests per first pixel value */
    int posts;
} stub;

typedef struct {
    kd_buf body;
} stub_req;

static enum MHD_Result stub_answer(struct MHD_Connection *c, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ok = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result stub_handler(void *cls, struct MHD_Connection *c, const char *url,
                                    const char *method, const char *version, const char *up,
                                    size_t *up_size, void **con_cls)
{
    (void)url;
    (void)version;
    stub *s = cls;
    stub_req *r = *con_cls;
    if (!r) {
        *con_cls = r = kd_calloc(1, sizeof *r);
        return r ? MHD_YES : MHD_NO;
    }
    if (*up_size) {
        kd_buf_put(&r->body, up, *up_size);
        *up_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, "POST"))
        return stub_answer(c, "{\"models\":[{\"name\":\"m\",\"inputs\":[{\"name\":\"input\","
                              "\"shape\":[-1,4]}]}]}");
    kd_buf_put(&r->body, "", 1);
    const char *d = strstr((const char *)r->body.p, "\"data\":[");
    int v = d ? atoi(d + 8) : -1;
    pthread_mutex_lock(&s->mu);
    s->posts++;
    if (v >= 0 && v < 256)
        s->seen[v]++;
    pthread_mutex_unlock(&s->mu);
    return stub_answer(c, "{}");
}

static void stub_done(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode t)
{
    (void)cls;
    (void)c;
    (void)t;
    stub_req *r = *con_cls;
    if (r)
        kd_buf_free(&r->body);
    kd_free(r);
    *con_cls = NULL;
}

START_TEST(test_loadtest_round_robin)
{
    stub s = {.mu = PTHREAD_MUTEX_INITIALIZER};
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL, NULL,
        stub_handler, &s, MHD_OPTION_NOTIFY_COMPLETED, stub_done, NULL,
        MHD_OPTION_CONNECTION_TIMEOUT, 5u, MHD_OPTION_END);
    ck_assert_ptr_nonnull(d);
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    ck_assert_ptr_nonnull(i);
    uint8_t img[NIMG * ISZ];
    for (int k = 0; k < NIMG * ISZ; k++)
        img[k] = (uint8_t)(10 * (k / ISZ) + k % ISZ); /* image k starts with pixel 10k */
    serve_load_opts o = {.host = "127.0.0.1", .port = i->port, .concurrency = 2,
                         .requests = 10 * NIMG, .seconds = 20, .images = img, .nimages = NIMG,
                         .image_size = ISZ};
    serve_load_row *rows = NULL;
    int n = 0;
    kd_err e = {0};
    ck_assert_msg(serve_loadtest(&o, &rows, &n, &e) == KD_OK, "%s", e.msg);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(rows[0].ok, 10 * NIMG);
    kd_free(rows);
    ck_assert_int_eq(s.posts, 10 * NIMG);
    for (int k = 0; k < NIMG; k++) /* round-robin: each image equally often */
        ck_assert_msg(s.seen[10 * k] == 10, "image %d sent %d times", k, s.seen[10 * k]);
    /* another input size: the fixed random body, still answered */
    memset(&s.seen, 0, sizeof s.seen);
    s.posts = 0;
    o.image_size = ISZ + 1;
    ck_assert_msg(serve_loadtest(&o, &rows, &n, &e) == KD_OK, "%s", e.msg);
    kd_free(rows);
    int distinct = 0;
    for (int k = 0; k < 256; k++)
        distinct += s.seen[k] > 0;
    ck_assert_int_eq(distinct, 1);
    MHD_stop_daemon(d);
}
END_TEST

Suite *suite_serve_load(void)
{
    Suite *s = suite_create("serve_load");
    TCase *tc = tcase_create("load");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_loadtest_round_robin);
    suite_add_tcase(s, tc);
    return s;
}
