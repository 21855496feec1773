/* config, the `serve:` section: the keys of kdbench serve and the run's
 * serving loadtest, defaults, ranges, model names checked against the run's
 * variants (did-you-mean), every mistake at FILE:LINE:COL, dump and reload. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../config/config.h"
#include "../kdtest.h"

#define BASE                                                                                 \
    "name: x\n"                                                                              \
    "teacher:\n"                                                                             \
    "  layers: [{type: flatten}, {type: dense, units: 32}, {type: relu},\n"                  \
    "           {type: dense, units: 10}]\n"                                                 \
    "  train: {epochs: 1, optimizer: {lr: 0.1}}\n"                                           \
    "students:\n"                                                                            \
    "  - name: st\n"                                                                         \
    "    layers: [{type: flatten}, {type: dense, units: 16}, {type: relu},\n"                \
    "             {type: dense, units: 10}]\n"                                               \
    "    train: {epochs: 1, optimizer: {lr: 0.1}}\n"                                         \
    "compress:\n"                                                                            \
    "  - {name: q, source: teacher, passes: [{type: quantize, bits: [8, 4]}]}\n"
/* serve starts at line 13 */

static int load(const char *yaml, exp_spec *s, kd_err *e)
{
    memset(e, 0, sizeof *e);
    return config_load_string("c.yaml", yaml, strlen(yaml), NULL, 0, s, e);
}

START_TEST(serve_defaults_and_keys)
{
    exp_spec *s = calloc(1, sizeof *s), *t = calloc(1, sizeof *t);
    kd_err e;
    ck_assert_int_eq(load(BASE, s, &e), KD_OK);
    ck_assert_int_eq(s->serve.loadtest, 0);
    ck_assert_int_eq(s->serve.port, 8080);
    ck_assert_str_eq(s->serve.host, "127.0.0.1");
    ck_assert_int_eq(s->serve.max_batch, 64);
    ck_assert_int_eq(s->serve.nconcurrency, 3);
    ck_assert_int_eq(s->serve.concurrency[2], 64);
    const char *y = BASE "serve:\n  port: 9000\n  host: 127.0.0.2\n  threads: 3\n"
                         "  compute_threads: 1\n  api_key_file: keys/k\n  max_batch: 16\n"
                         "  max_delay_us: 200\n  max_queue: 99\n  max_body: 4096\n"
                         "  max_connections: 50\n  timeout: 3\n  shadow: teacher\n"
                         "  loadtest: true\n  concurrency: [2, 4]\n  requests: 300\n"
                         "  seconds: 0.5\n  batching: both\n"
                         "  models: [teacher, q/int8, st/distilled]\n";
    int rc = load(y, s, &e);
    ck_assert_msg(rc == KD_OK, "%d:%d %s", e.line, e.col, e.msg);
    const cfg_serve *v = &s->serve;
    ck_assert_int_eq(v->port, 9000);
    ck_assert_str_eq(v->host, "127.0.0.2");
    ck_assert_int_eq(v->threads, 3);
    ck_assert_str_eq(v->api_key_file, "keys/k");
    ck_assert_int_eq(v->max_batch, 16);
    ck_assert_int_eq(v->max_delay_us, 200);
    ck_assert_int_eq(v->max_queue, 99);
    ck_assert_int_eq(v->max_body, 4096);
    ck_assert_int_eq(v->max_connections, 50);
    ck_assert_int_eq(v->timeout, 3);
    ck_assert_str_eq(v->shadow, "teacher");
    ck_assert_int_eq(v->loadtest, 1);
    ck_assert_int_eq(v->nconcurrency, 2);
    ck_assert_int_eq(v->concurrency[1], 4);
    ck_assert_int_eq(v->requests, 300);
    ck_assert_float_eq(v->seconds, 0.5f);
    ck_assert_int_eq(v->batching, 2);
    ck_assert_int_eq(v->nmodels, 3);
    ck_assert_str_eq(v->models[1], "q_int8"); /* the served name (the file's) */
    ck_assert_str_eq(v->models[2], "st/distilled");
    /* dump and reload: the same section */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ck_assert_int_eq(config_dump(s, f), KD_OK);
    fclose(f);
    rc = config_load_string("d.yaml", text, len, NULL, 0, t, &e);
    ck_assert_msg(rc == KD_OK, "%d:%d %s\n%s", e.line, e.col, e.msg, text);
    t->serve.pos = s->serve.pos;
    ck_assert_int_eq(memcmp(&t->serve, &s->serve, sizeof s->serve), 0);
    free(text);
    free(s);
    free(t);
}
END_TEST

/* Each mistake: its position, the key's dotted path, a did-you-mean. */
START_TEST(serve_errors)
{
    static const struct {
        const char *yaml, *want;
        int line, col;
    } cases[] = {
        {"serve: {loadtest: true, concurency: [1]}\n", "did you mean \"concurrency\"", 13, 25},
        {"serve:\n  max_bacth: 4\n", "did you mean \"max_batch\"", 14, 3},
        {"serve: {max_batch: 0}\n", "serve.max_batch", 13, 20},
        {"serve: {port: 70000}\n", "serve.port", 13, 15},
        {"serve: {host: localhost}\n", "not an IPv4 address", 13, 15},
        {"serve: {concurrency: [1, 0]}\n", "serve.concurrency[1]", 13, 26},
        {"serve: {concurrency: []}\n", "serve.concurrency", 13, 22},
        {"serve: {seconds: 0}\n", "serve.seconds", 13, 18},
        {"serve: {requests: -5}\n", "serve.requests", 13, 19},
        {"serve: {batching: sometimes}\n", "serve.batching", 13, 19},
        {"serve: {loadtest: maybe}\n", "serve.loadtest", 13, 19},
        {"serve: {models: [teacher, q/int9]}\n", "did you mean \"q_int8\"", 13, 27},
        {"serve: {models: [teacher, teacher]}\n", "listed twice", 13, 27},
        {"serve: {shadow: teachr}\n", "did you mean \"teacher\"", 13, 17},
        {"serve: {api_key_file: \"\"}\n", "must not be empty", 13, 23},
        {"serve: [1, 2]\n", "serve", 13, 8},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char y[4096];
        snprintf(y, sizeof y, "%s%s", BASE, cases[i].yaml);
        exp_spec *s = calloc(1, sizeof *s);
        kd_err e;
        ck_assert_int_eq(load(y, s, &e), KD_ECONFIG);
        ck_assert_msg(strstr(e.msg, cases[i].want) && e.line == cases[i].line &&
                          e.col == cases[i].col,
                      "case %zu: %d:%d %s", i, e.line, e.col, e.msg);
        ck_assert_str_eq(e.file, "c.yaml");
        free(s);
    }
}
END_TEST

/* config_load_serve reads only the section (a run folder's config.yaml). */
START_TEST(serve_section_alone)
{
    char dir[256], path[512];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    const char *y = "name: x\nserve: {max_batch: 4, shadow: anything}\n";
    kdt_write(path, y, strlen(y));
    cfg_serve c;
    kd_err e = {0};
    ck_assert_int_eq(config_load_serve(path, &c, &e), KD_OK);
    ck_assert_int_eq(c.max_batch, 4);
    ck_assert_str_eq(c.shadow, "anything"); /* no run to check names against */
    const char *bad = "name: x\nserve:\n  treads: 4\n";
    kdt_write(path, bad, strlen(bad));
    ck_assert_int_eq(config_load_serve(path, &c, &e), KD_ECONFIG);
    ck_assert_int_eq(e.line, 3);
    ck_assert_int_eq(e.col, 3);
    ck_assert_ptr_nonnull(strstr(e.msg, "did you mean \"threads\""));
    ck_assert_int_eq(c.max_batch, 64); /* defaults after a failure */
}
END_TEST

/* kdbench run refuses a bad serve section before it reads any data: exit 2,
 * no run folder. */
START_TEST(serve_run_refused_early)
{
    char dir[256], path[512], out[4096];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/x.yaml", dir);
    char y[4096];
    int n = snprintf(y, sizeof y, "%sserve: {loadtest: true, models: [techer]}\n", BASE);
    kdt_write(path, y, (size_t)n);
    ck_assert_int_eq(kdt_kdbench(out, sizeof out, "run %s --out %s/run --quiet", path, dir), 2);
    ck_assert_msg(strstr(out, "x.yaml:13:") && strstr(out, "serve.models[0]"), "%s", out);
    snprintf(path, sizeof path, "%s/run", dir);
    ck_assert_int_ne(access(path, F_OK), 0);
}
END_TEST

Suite *suite_config_serve(void)
{
    Suite *s = suite_create("config_serve");
    TCase *t = tcase_create("serve");
    tcase_add_test(t, serve_defaults_and_keys);
    tcase_add_test(t, serve_errors);
    tcase_add_test(t, serve_section_alone);
    tcase_add_test(t, serve_run_refused_early);
    suite_add_tcase(s, t);
    return s;
}
