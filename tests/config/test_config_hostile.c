/* config against hostile input: alias bombs, deep nesting, huge scalars and
 * files, node floods, control bytes and broken UTF-8 are all refused quickly
 * with a clean KD_ECONFIG; random corruptions of a valid file never crash or
 * leak (run under ASan); every allocation failure is reported, not leaked. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../config/config.h"
#include "../kdtest.h"

static const char GOOD[] = "name: h\n"
                           "seed: 3\n"
                           "data: {dataset: fashion-mnist, val_fraction: 0.1}\n"
                           "teacher:\n"
                           "  layers:\n"
                           "    - {type: flatten, name: f}\n"
                           "    - {type: dense, units: 16, init: he}\n"
                           "    - {type: relu}\n"
                           "    - {type: dropout, rate: 0.25}\n"
                           "    - {type: dense, units: 10}\n"
                           "  train:\n"
                           "    epochs: 2\n"
                           "    optimizer: {kind: sgd, lr: 0.1, nesterov: true}\n"
                           "    schedule: {kind: step, step_epochs: 1, gamma: 0.5}\n";

/* Loads text (len bytes); expects KD_ECONFIG within max_s seconds and needle
 * in the message. */
static void expect_refused(const char *text, size_t len, const char *needle, double max_s)
{
    exp_spec *s = malloc(sizeof *s);
    ck_assert_ptr_nonnull(s);
    kd_err e = {0};
    double t0 = kd_now();
    int rc = config_load_string("h.yaml", text, len, NULL, 0, s, &e);
    double dt = kd_now() - t0;
    free(s);
    ck_assert_msg(rc == KD_ECONFIG, "rc %d: %s", rc, e.msg);
    ck_assert_msg(strstr(e.msg, needle), "message \"%s\" lacks \"%s\"", e.msg, needle);
    /* no timed assert (a loaded host or a sanitizer build is slower): a
     * quadratic walk is caught by Check's test timeout; a slow one is said */
    if (dt > max_s)
        fprintf(stderr, "note: refusing \"%s\" took %.3f s (expected < %.1f s)\n", needle, dt,
                max_s);
}

/* A growable string for building big inputs. */
typedef struct {
    char *p;
    size_t len, cap;
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        ck_assert_ptr_nonnull(b->p);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void puts_(sbuf *b, const char *s)
{
    put(b, s, strlen(s));
}

START_TEST(test_billion_laughs)
{
    sbuf b = {0};
    puts_(&b,
          "name: lol\na: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for (char c = 'b'; c <= 'j'; c++) {
        char line[128];
        snprintf(line, sizeof line, "%c: &%c [*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c]\n", c, c, c - 1,
                 c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1);
        puts_(&b, line);
    }
    expect_refused(b.p, b.len, "anchors and aliases are not supported", 0.2);
    /* an alias without any anchor of ours */
    expect_refused("name: x\nseed: *zz\n", 18, "aliases are not supported", 0.2);
    free(b.p);
}
END_TEST

START_TEST(test_deep_nesting)
{
    sbuf b = {0};
    puts_(&b, "name: deep\nx: ");
    for (int i = 0; i < 10000; i++)
        puts_(&b, "[");
    expect_refused(b.p, b.len, "nesting deeper than 32", 0.5);
    b.len = 0;
    puts_(&b, "name: deep\n");
    for (int i = 0; i < 40; i++) { /* block mappings, each one deeper */
        char line[128];
        snprintf(line, sizeof line, "%*sk%d:\n", 2 * i, "", i);
        puts_(&b, line);
    }
    expect_refused(b.p, b.len, "nesting deeper than 32", 0.5);
    free(b.p);
}
END_TEST

START_TEST(test_huge_scalar_and_file)
{
    sbuf b = {0};
    puts_(&b, "name: ");
    char *big = malloc(1000000);
    ck_assert_ptr_nonnull(big);
    memset(big, 'a', 1000000);
    put(&b, big, 1000000);
    puts_(&b, "\n");
    expect_refused(b.p, b.len, "longer than the limit of 4096", 0.5);
    /* a key of 5000 bytes */
    b.len = 0;
    put(&b, big, 5000);
    puts_(&b, ": 1\n");
    expect_refused(b.p, b.len, "longer than the limit", 0.5);
    /* over 1 MiB, as a string and as a file */
    b.len = 0;
    puts_(&b, "name: x\n");
    while (b.len <= (1u << 20))
        puts_(&b, "# padding padding padding padding padding padding padding\n");
    expect_refused(b.p, b.len, "larger than the limit", 0.1);
    char dir[256], path[512];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/big.yaml", dir);
    kdt_write(path, b.p, b.len);
    exp_spec *s = malloc(sizeof *s);
    kd_err e = {0};
    ck_assert_int_eq(config_load(path, NULL, 0, s, &e), KD_ECONFIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "larger than"));
    ck_assert_str_eq(e.file, path);
    free(s);
    free(big);
    free(b.p);
}
END_TEST

START_TEST(test_node_flood)
{
    sbuf b = {0};
    puts_(&b, "name: x\nseed: [");
    for (int i = 0; i < 150000; i++)
        puts_(&b, "0,");
    puts_(&b, "0]\n");
    expect_refused(b.p, b.len, "more than 100000 YAML nodes", 1.0);
    /* a flat mapping with many keys: refused at the first unknown key, fast */
    b.len = 0;
    puts_(&b, "name: x\n");
    for (int i = 0; i < 40000; i++) {
        char line[32];
        snprintf(line, sizeof line, "k%d: 1\n", i);
        puts_(&b, line);
    }
    expect_refused(b.p, b.len, "k0: unknown key", 1.0);
    /* many repeats of a known key */
    b.len = 0;
    puts_(&b, "name: x\n");
    for (int i = 0; i < 40000; i++)
        puts_(&b, "seed: 1\n");
    expect_refused(b.p, b.len, "seed: duplicate key", 1.0);
    free(b.p);
}
END_TEST

/* Bytes 0x00-0x08 (and other C0 controls, DEL) inside a value. */
START_TEST(test_control_bytes)
{
    static const unsigned char bytes[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 0x0B, 0x0C, 0x0E, 0x1F, 0x7F};
    char text[32];
    int n = snprintf(text, sizeof text, "name: ab\nseed: 1\n");
    text[7] = (char)bytes[_i]; /* "name: a?" */
    expect_refused(text, (size_t)n, "invalid input", 0.1);
}
END_TEST

START_TEST(test_bad_utf8)
{
    static const char *const cases[] = {
        "name: \xff\n",             /* never valid */
        "name: a\xc3\x28\n",        /* bad continuation */
        "name: \xc0\xaf\n",         /* overlong '/' */
        "name: \xed\xa0\x80\n",     /* surrogate */
        "name: \xf4\x90\x80\x80\n", /* above U+10FFFF */
        "name: x\nseed: \xe2\x82",  /* truncated at the end */
        "\xff\xfen\0a\0m\0e\0",     /* UTF-16 (LE BOM): not accepted */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t len = i == 6 ? 10 : strlen(cases[i]);
        expect_refused(cases[i], len, "invalid input", 0.1);
    }
    /* escapes that decode to NUL or to control characters */
    expect_refused("name: \"a\\0b\"\n", 13, "NUL byte", 0.1);
    const char *esc = "name: x\n\"a\\e[31m\": 1\n"; /* ESC in a key: not echoed raw */
    exp_spec *s = malloc(sizeof *s);
    kd_err e = {0};
    ck_assert_int_eq(config_load_string("h.yaml", esc, strlen(esc), NULL, 0, s, &e), KD_ECONFIG);
    ck_assert_str_eq(e.msg, "a?[31m: unknown key");
    free(s);
}
END_TEST

START_TEST(test_truncations)
{
    /* every prefix of a valid file loads or fails cleanly */
    size_t n = strlen(GOOD);
    for (size_t len = 0; len < n; len++) {
        exp_spec *s = malloc(sizeof *s);
        kd_err e = {0};
        int rc = config_load_string("t.yaml", GOOD, len, NULL, 0, s, &e);
        ck_assert_msg(rc == KD_OK || (rc == KD_ECONFIG && e.msg[0] && e.line >= 0),
                      "prefix %zu: rc %d", len, rc);
        free(s);
    }
}
END_TEST

/* Random byte edits of a valid file: only KD_OK or KD_ECONFIG, never a crash. */
START_TEST(test_mutations)
{
    nn_rng r = nn_rng_stream(42, NN_STREAM_TEST);
    static const char alphabet[] = "{}[]:,-#&*!|>'\"\n \t0123456789.eE+abcxyz\\?%@`~\x80\xc3";
    size_t n = strlen(GOOD);
    char buf[sizeof GOOD + 16];
    exp_spec *s = malloc(sizeof *s);
    ck_assert_ptr_nonnull(s);
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, GOOD, n);
        size_t len = n;
        int edits = 1 + (int)nn_rng_below(&r, 3);
        for (int k = 0; k < edits; k++) {
            size_t at = nn_rng_below(&r, (uint32_t)len);
            char ch = alphabet[nn_rng_below(&r, sizeof alphabet - 1)];
            if (nn_rng_below(&r, 4) == 0 && len > 1) { /* delete */
                memmove(buf + at, buf + at + 1, len - at - 1);
                len--;
            } else if (nn_rng_below(&r, 3) == 0 && len < sizeof buf) { /* insert */
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = ch;
                len++;
            } else {
                buf[at] = ch;
            }
        }
        kd_err e = {0};
        int rc = config_load_string("m.yaml", buf, len, NULL, 0, s, &e);
        ck_assert_msg(rc == KD_OK || (rc == KD_ECONFIG && e.msg[0]), "iteration %d: rc %d", it, rc);
        if (rc == KD_ECONFIG)
            ck_assert_msg(e.line >= 0 && e.line <= 20, "iteration %d: line %d", it, e.line);
    }
    free(s);
}
END_TEST

/* The (n+1)th allocation fails, for every n until the load succeeds: each
 * failure is KD_ENOMEM (ASan checks nothing leaks). */
START_TEST(test_alloc_failures)
{
    const char *ovr[] = {"seed=9", "teacher.layers.1.units=12", "data.shape=[1, 28, 28]"};
    exp_spec *s = malloc(sizeof *s);
    ck_assert_ptr_nonnull(s);
    int rc = KD_ENOMEM;
    long n;
    for (n = 0; rc != KD_OK && n < 100000; n++) {
        kd_err e = {0};
        kd_alloc_fail_after(n);
        rc = config_load_string("a.yaml", GOOD, strlen(GOOD), ovr, 3, s, &e);
        kd_alloc_fail_after(-1);
        ck_assert_msg(rc == KD_OK || rc == KD_ENOMEM, "n=%ld: rc %d %s", n, rc, e.msg);
    }
    ck_assert_int_eq(rc, KD_OK);
    ck_assert_int_gt(n, 10);
    ck_assert_uint_eq(s->seed, 9);
    free(s);
}
END_TEST

Suite *suite_config_hostile(void)
{
    Suite *s = suite_create("config_hostile");
    TCase *tc = tcase_create("hostile");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_billion_laughs);
    tcase_add_test(tc, test_deep_nesting);
    tcase_add_test(tc, test_huge_scalar_and_file);
    tcase_add_test(tc, test_node_flood);
    tcase_add_loop_test(tc, test_control_bytes, 0, 14);
    tcase_add_test(tc, test_bad_utf8);
    tcase_add_test(tc, test_truncations);
    tcase_add_test(tc, test_mutations);
    tcase_add_test(tc, test_alloc_failures);
    suite_add_tcase(s, tc);
    return s;
}
