/* kdbench run with `serve: {loadtest: true}`: a tiny run (1,000 Fashion-MNIST
 * images, one epoch) ends by serving its variants on loopback and writes
 * serving.json/.csv with a positive rate for every variant, concurrency level
 * and batching setting, and a Serving section in the report; a resumed run
 * keeps the serving.json it has.  Bounded: a few seconds. */
#include <sys/stat.h>
#include <unistd.h>

#include "../../data/data.h"
#include "sfix.h"

static const char tiny[] =
    "name: tiny\nseed: 1\nthreads: 1\ncache_dir: \"\"\n"
    "data: {dataset: fashion-mnist, train_subset: 1000, test_subset: 300}\n"
    "teacher:\n  layers: [{type: flatten}, {type: dense, units: 32}, {type: relu},\n"
    "           {type: dense, units: 10}]\n"
    "  train: {epochs: 1, batch_size: 50, optimizer: {kind: adamw, lr: 0.003}}\n"
    "compress:\n  - {name: q, source: teacher, passes: [{type: quantize, bits: 8}]}\n"
    "report: {format: md, plots: false}\n"
    "serve: {loadtest: true, concurrency: [1, 4], requests: 150, seconds: 2, batching: both}\n";

static char *slurp(const char *path)
{
    uint8_t *p = NULL;
    size_t n = 0;
    kd_err e;
    if (kd_read_file(path, 1 << 24, &p, &n, &e) != KD_OK)
        n = 0;
    char *s = kd_malloc(n + 1);
    ck_assert_ptr_nonnull(s);
    if (n)
        memcpy(s, p, n);
    s[n] = 0;
    kd_free(p);
    return s;
}

START_TEST(test_run_loadtest)
{
    if (access(DATA_FASHION_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0)
        KDT_SKIP("Fashion-MNIST is not installed (%s)", DATA_FASHION_DIR);
    char dir[256], path[512], run[512], out[16384];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/tiny.yaml", dir);
    snprintf(run, sizeof run, "%s/run", dir);
    kdt_write(path, tiny, sizeof tiny - 1);
    ck_assert_msg(kdt_kdbench(out, sizeof out, "run %s --out %s --quiet", path, run) == 0, "%s",
                  out);
    char f[700];
    rep_serving_row *rows = NULL;
    int n = 0;
    kd_err e = {0};
    snprintf(f, sizeof f, "%s/serving.json", run);
    ck_assert_msg(rep_read_serving(f, &rows, &n, &e) == KD_OK, "%s", e.msg);
    ck_assert_int_eq(n, 2 * 2 * 2); /* {teacher, q} x {1, 4} x {off, on} */
    for (int i = 0; i < n; i++) {
        ck_assert_msg(!strcmp(rows[i].variant, "teacher") || !strcmp(rows[i].variant, "q"),
                      "%s", rows[i].variant);
        ck_assert_msg(rows[i].rps > 0 && rows[i].p99_ms > 0 && rows[i].p50_ms <= rows[i].p99_ms,
                      "row %d: %g req/s", i, rows[i].rps);
        ck_assert_int_eq(rows[i].requests, 150);
        ck_assert_int_eq(rows[i].failures, 0);
        ck_assert_int_eq(rows[i].batching, i >= 4);
    }
    kd_free(rows);
    snprintf(f, sizeof f, "%s/serving.csv", run);
    char *csv = slurp(f);
    ck_assert_msg(!strncmp(csv, "variant,concurrency,batching,requests,failures", 46), "%s", csv);
    ck_assert_ptr_nonnull(strstr(csv, "\nq,4,on,150,0,"));
    kd_free(csv);
    snprintf(f, sizeof f, "%s/report/report.md", run);
    char *md = slurp(f);
    ck_assert_msg(strstr(md, "## Serving") && strstr(md, "| q | 4 | on |"), "%s", md);
    kd_free(md);
    snprintf(f, sizeof f, "%s/report/plots/serving.dat", run);
    ck_assert_int_eq(access(f, R_OK), 0);
    /* resumed: serving.json is kept as it is (a marker survives) */
    snprintf(f, sizeof f, "%s/serving.json", run);
    const char marker[] = "{\"experiment\": \"tiny\", \"rows\": [{\"variant\": \"kept\", "
                          "\"concurrency\": 3, \"batching\": \"on\", \"requests_per_s\": 7}]}\n";
    kdt_write(f, marker, sizeof marker - 1);
    ck_assert_msg(kdt_kdbench(out, sizeof out, "run %s --out %s --quiet --resume", path, run) == 0,
                  "%s", out);
    char *kept = slurp(f);
    ck_assert_str_eq(kept, marker);
    kd_free(kept);
    snprintf(f, sizeof f, "%s/report/report.md", run);
    md = slurp(f);
    ck_assert_msg(strstr(md, "| kept | 3 | on |"), "%s", md);
    kd_free(md);
}
END_TEST

Suite *suite_serve_run(void)
{
    Suite *s = suite_create("serve_run");
    TCase *tc = tcase_create("run");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_run_loadtest);
    suite_add_tcase(s, tc);
    return s;
}
