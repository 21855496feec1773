/* A realistic run directory written by the test itself. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../kdtest.h"
#include "fixture.h"

static void row(rep_row *r, const char *name, const char *role, long long params,
                long long nz, long long bytes, double acc, double p50, double p99, double thr)
{
    rep_row_init(r, name, role);
    r->params = params;
    r->nonzero_params = nz;
    r->size_bytes = bytes;
    r->accuracy = acc;
    r->latency_us_b1_p50 = p50;
    r->latency_us_b1_p99 = p99;
    r->throughput_b256 = thr;
    r->macs = (double)params;
}

void rfx_rows(rep_row rows[RFX_NROWS])
{
    row(&rows[0], "teacher", "teacher", 535818, 535818, 2143812, 0.8947, 118.2, 160.5, 41200);
    rep_row_num(&rows[0], "epochs", 10);
    rep_row_str(&rows[0], "format", "fp32");
    row(&rows[1], "small/scratch", "student", 50890, 50890, 204076, 0.8531, 11.3, 19.8, 310000);
    rep_row_str(&rows[1], "teacher", "teacher");
    row(&rows[2], "small/distilled", "student", 50890, 50890, 204076, 0.8662, 11.2, 18.7,
        312000);
    rep_row_str(&rows[2], "teacher", "teacher");
    rep_row_num(&rows[2], "temperature", 4);
    rep_row_num(&rows[2], "alpha", 0.7);
    row(&rows[3], "teacher/prune90", "compressed", 535818, 53582, 281000, 0.8810, 40.2, 61.0,
        90000);
    rep_row_str(&rows[3], "source", "teacher");
    rep_row_num(&rows[3], "sparsity", 0.9);
    row(&rows[4], "teacher/int8", "compressed", 535818, 535818, 540100, 0.8941, 70.5, 99.3,
        60000);
    rep_row_num(&rows[4], "weight_bits", 8);
    row(&rows[5], "small/distilled/int4", "compressed", 50890, 50890, 27300, 0.8452, 9.0, -1,
        380000); /* p99 not measured */
    rep_row_str(&rows[5], "format", "int4");
}

static void put(const char *dir, const char *name, const char *text)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    kdt_write(path, text, strlen(text));
}

static void metrics(const char *dir)
{
    const char *models[3] = {"teacher", "small/scratch", "small/distilled"};
    char buf[8192];
    size_t n = 0;
    for (int m = 0; m < 3; m++)
        for (int ep = 1; ep <= 4; ep++)
            n += (size_t)snprintf(buf + n, sizeof buf - n,
                                  "{\"model\": \"%s\", \"epoch\": %d, \"loss\": %.3f, "
                                  "\"train_acc\": %.3f, \"val_loss\": %.3f, \"val_acc\": %.3f, "
                                  "\"lr\": 0.002, \"seconds\": 1.5, \"samples_per_s\": 5000}\n",
                                  models[m], ep, 1.0 / ep, 0.7 + 0.04 * ep, 1.1 / ep,
                                  0.68 + 0.04 * ep + 0.01 * m);
    put(dir, "metrics.jsonl", buf);
}

static void csvs(const char *dir)
{
    put(dir, "sparsity.csv", "variant,layer,params,nonzero\n"
                             "teacher/prune90,dense1,401920,28134\n"
                             "teacher/prune90,dense2,131328,15759\n"
                             "teacher/prune90,dense3,2570,1028\n");
    put(dir, "sensitivity.csv", "layer,sparsity,accuracy\n"
                                "dense1,0,0.89\ndense1,0.5,0.885\ndense1,0.9,0.86\n"
                                "dense2,0,0.89\ndense2,0.5,0.87\ndense2,0.9,0.80\n");
    char buf[8192];
    size_t n = (size_t)snprintf(buf, sizeof buf, "variant,layer,bin_lo,bin_hi,count\n");
    for (int v = 0; v < 2; v++)
        for (int b = 0; b < 10; b++)
            n += (size_t)snprintf(buf + n, sizeof buf - n, "%s,dense1,%.2f,%.2f,%d\n",
                                  v ? "teacher/int8" : "teacher", -0.5 + 0.1 * b,
                                  -0.4 + 0.1 * b, v && b % 2 ? 0 : 100 + 10 * b);
    put(dir, "weights_hist.csv", buf);
}

void rfx_write_run(const char *dir, int optional)
{
    rep_row rows[RFX_NROWS];
    kd_err e = {0};
    rfx_rows(rows);
    ck_assert_int_eq(rep_write_results(dir, "fixture", rows, RFX_NROWS, &e), 0);
    if (!optional)
        return;
    metrics(dir);
    rep_env env;
    rep_env_detect(&env);
    env.threads = 2;
    snprintf(env.blas, sizeof env.blas, "OpenBLAS (test)");
    snprintf(env.version, sizeof env.version, "0.1.0");
    ck_assert_int_eq(rep_write_env(dir, &env, &e), 0);
    csvs(dir);
}

char *rfx_slurp(const char *path)
{
    uint8_t *p;
    size_t n;
    kd_err e;
    ck_assert_msg(kd_read_file(path, 64 << 20, &p, &n, &e) == 0, "cannot read %s", path);
    char *s = kd_malloc(n + 1);
    memcpy(s, p, n);
    s[n] = 0;
    kd_free(p);
    return s;
}

int rfx_have_gnuplot(void)
{
    const char *path = getenv("PATH");
    char dir[4096], prog[4200];
    if (!path)
        return 0;
    for (const char *s = path; *s;) {
        size_t k = strcspn(s, ":");
        snprintf(dir, sizeof dir, "%.*s", (int)k, s);
        snprintf(prog, sizeof prog, "%s/gnuplot", dir[0] ? dir : ".");
        if (access(prog, X_OK) == 0)
            return 1;
        s += k + (s[k] == ':');
    }
    return 0;
}
