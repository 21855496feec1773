/* config, the rules run would enforce later: a defaulted key is reported at
 * the mapping that left it out (never a crash), the data's facts (class
 * count, training-set size, sample size) are checked at the key they
 * contradict, compress passes are held to compress's own rules, and shape
 * checks allocate no parameters. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../compress/compress.h"
#include "../../config/config.h"
#include "../kdtest.h"

static exp_spec spec; /* large: one per test process, not on the stack */

static int load_facts(const char *yaml, const cfg_data_facts *f, kd_err *e)
{
    memset(e, 0, sizeof *e);
    return config_load_string_facts("r.yaml", yaml, strlen(yaml), NULL, 0, f, &spec, e);
}

static int load(const char *yaml, kd_err *e) { return load_facts(yaml, NULL, e); }

/* The load fails at line:col with a message holding each of the words. */
static void expect_err(int rc, const kd_err *e, int line, int col, const char *w1, const char *w2)
{
    ck_assert_msg(rc == KD_ECONFIG, "rc %d, expected a config error", rc);
    ck_assert_msg(e->line == line && e->col == col, "at %d:%d, expected %d:%d: %s", e->line,
                  e->col, line, col, e->msg);
    ck_assert_msg(strstr(e->msg, w1) != NULL, "\"%s\" not in: %s", w1, e->msg);
    ck_assert_msg(!w2 || strstr(e->msg, w2) != NULL, "\"%s\" not in: %s", w2, e->msg);
}

#define MLP                                                                                  \
    "  layers: [{type: flatten}, {type: dense, units: 32, name: h}, {type: relu},\n"          \
    "           {type: dense, units: 10, name: out}]\n"                                      \
    "  train: {epochs: 1, optimizer: {lr: 0.1}}\n"

/* lines 1-6: name, data (subset 900: 7 batches of 128 after the split) */
#define SMALL_FASHION                                                                        \
    "name: r\n"                                                                              \
    "data:\n"                                                                                \
    "  dataset: fashion-mnist\n"                                                             \
    "  train_subset: 900\n"                                                                  \
    "  val_fraction: 0.1\n"                                                                  \
    "teacher:\n" MLP "compress:\n"
/* the first pipeline starts at line 11 */

/* ---- defaulted keys --------------------------------------------------------- */
START_TEST(calib_default_at_the_pass)
{
    kd_err e;
    /* the crash: calib_batches left at its default 8 on a 7-batch set */
    int rc = load(SMALL_FASHION "  - name: q\n    source: teacher\n"
                                "    passes:\n      - {type: quantize, bits: 8}\n",
                  &e);
    expect_err(rc, &e, 14, 9, "passes[0].calib_batches", "default");
    ck_assert_ptr_nonnull(strstr(e.msg, "7"));
    /* given: at its own value */
    rc = load(SMALL_FASHION "  - name: q\n    source: teacher\n"
                            "    passes:\n      - {type: quantize, calib_batches: 9}\n",
              &e);
    expect_err(rc, &e, 14, 41, "calib_batches", NULL);
    ck_assert_ptr_null(strstr(e.msg, "default"));
    /* what fits, and what never calibrates */
    const char *ok[] = {"{type: quantize, calib_batches: 7}", "{type: quantize, mode: dynamic}",
                        "{type: quantize, bits: 4}", "{type: qat, bits: 8, epochs: 1}"};
    for (int i = 0; i < 4; i++) {
        char y[1024];
        snprintf(y, sizeof y, SMALL_FASHION "  - name: q\n    source: teacher\n"
                                            "    passes:\n      - %s\n", ok[i]);
        rc = load(y, &e);
        ck_assert_msg(rc == KD_OK, "%s: %s", ok[i], e.msg);
    }
    /* an int4 pass whose override makes a layer int8 calibrates it */
    rc = load(SMALL_FASHION "  - name: q\n    source: teacher\n    passes:\n"
                            "      - {type: quantize, bits: 4, overrides: [{layer: h, bits: 8}]}\n",
              &e);
    expect_err(rc, &e, 14, 9, "calib_batches", "default");
    /* a swept list with an 8 in it */
    rc = load(SMALL_FASHION "  - name: q\n    source: teacher\n"
                            "    passes:\n      - {type: quantize, bits: [4, 8]}\n",
              &e);
    expect_err(rc, &e, 14, 9, "calib_batches", "default");
}
END_TEST

START_TEST(calib_default_through_overrides)
{
    /* --set makes the set smaller than the file says: reported at the pass */
    kd_err e;
    const char *y = "name: r\ndata:\n  val_fraction: 0.1\nteacher:\n" MLP
                    "compress:\n  - name: q\n    source: teacher\n"
                    "    passes:\n      - {type: quantize}\n";
    const char *ovr[] = {"data.train_subset=900"};
    memset(&e, 0, sizeof e);
    int rc = config_load_string("r.yaml", y, strlen(y), ovr, 1, &spec, &e);
    expect_err(rc, &e, 12, 9, "calib_batches", "default");
    const char *ovr2[] = {"data.val_fraction=0.6"};
    rc = config_load_string("r.yaml", y, strlen(y), ovr2, 1, &spec, &e);
    ck_assert_int_eq(rc, KD_OK); /* 60,000 images: plenty */
}
END_TEST

/* ---- compress's own rules ------------------------------------------------------ */
START_TEST(int4_group_is_fixed)
{
    kd_err e;
    int rc = load(SMALL_FASHION "  - name: q\n    source: teacher\n"
                                "    passes:\n      - {type: quantize, bits: 4, group: 16}\n",
                  &e);
    expect_err(rc, &e, 14, 42, "group", "16");
    rc = load(SMALL_FASHION "  - name: q\n    source: teacher\n"
                            "    passes:\n      - {type: qat, bits: 4, group: 64, epochs: 1}\n",
              &e);
    expect_err(rc, &e, 14, 37, "group", "64");
    rc = load(SMALL_FASHION "  - name: q\n    source: teacher\n"
                            "    passes:\n      - {type: quantize, bits: 4, group: 32}\n",
              &e);
    ck_assert_msg(rc == KD_OK, "%s", e.msg);
}
END_TEST

/* The constants config holds for compress are compress's: the group config
 * accepts passes compress_quant_check, one more does not. */
START_TEST(constants_match_compress)
{
    kd_err e;
    nn_layer_spec l[2] = {{.kind = NN_FLATTEN}, {.kind = NN_DENSE, .units = 4}};
    nn_model *m = nn_model_new((nn_shape){1, 4, 16}, l, 2, NULL, &e);
    ck_assert_ptr_nonnull(m);
    compress_quant_spec q = {.mode = COMPRESS_Q_INT4, .per_channel = 1, .group = CFG_Q4_GROUP};
    ck_assert_int_eq(compress_quant_check(m, &q, &e), KD_OK);
    q.group = CFG_Q4_GROUP / 2;
    ck_assert_int_ne(compress_quant_check(m, &q, &e), KD_OK);
    ck_assert_int_eq(CFG_CALIB_BATCH, COMPRESS_CALIB_BATCH);
    nn_model_free(m);
}
END_TEST

START_TEST(structured_output_layer)
{
    kd_err e;
    /* "*" names the output layer too: its neurons feed nothing, run refuses */
    int rc = load(SMALL_FASHION "  - name: n\n    source: teacher\n    passes:\n"
                                "      - {type: prune, method: neurons, sparsity: 0.5,\n"
                                "         overrides: [{layer: \"*\", sparsity: 0.3}]}\n",
                  &e);
    expect_err(rc, &e, 15, 30, "overrides[0].layer", "out");
    /* a later override giving it 0 decides, as in compress */
    rc = load(SMALL_FASHION "  - name: n\n    source: teacher\n    passes:\n"
                            "      - {type: prune, method: neurons, sparsity: 0.5,\n"
                            "         overrides: [{layer: \"*\", sparsity: 0.3}, "
                            "{layer: out, sparsity: 0}]}\n",
              &e);
    ck_assert_msg(rc == KD_OK, "%s", e.msg);
    /* a pattern matching no dense layer at all */
    rc = load(SMALL_FASHION "  - name: n\n    source: teacher\n    passes:\n"
                            "      - {type: prune, method: neurons, sparsity: 0.5,\n"
                            "         overrides: [{layer: \"conv*\", sparsity: 0.3}]}\n",
              &e);
    expect_err(rc, &e, 15, 30, "overrides[0].layer", "matches no layer");
}
END_TEST

START_TEST(student_outputs_match_teacher)
{
    kd_err e;
    const char *y = "name: r\n"
                    "data: {dataset: idx, train_images: a, train_labels: b, test_images: c,\n"
                    "       test_labels: d, shape: [1, 4, 4]}\n"
                    "teacher:\n"
                    "  layers: [{type: flatten}, {type: dense, units: 12}]\n"
                    "  train: {epochs: 1, optimizer: {lr: 0.1}}\n"
                    "students:\n"
                    "  - name: s\n"
                    "    layers: [{type: flatten}, {type: dense, units: 11}]\n"
                    "    train: {epochs: 1, optimizer: {lr: 0.1}}\n";
    int rc = load(y, &e);
    expect_err(rc, &e, 9, 31, "students[0].layers[1]", "12");
}
END_TEST

/* ---- the data's facts ------------------------------------------------------------ */
#define IDX_CFG                                                                              \
    "name: r\n"                                                                              \
    "data:\n"                                                                                \
    "  dataset: idx\n"                                                                       \
    "  train_images: a\n  train_labels: b\n  test_images: c\n  test_labels: d\n"             \
    "  shape: [1, 4, 4]\n"                                                                   \
    "teacher:\n"                                                                             \
    "  layers: [{type: flatten}, {type: dense, units: 8}, {type: relu},\n"                   \
    "           {type: dense, units: 10}]\n"                                                 \
    "  train: {epochs: 1, optimizer: {lr: 0.1}}\n"

START_TEST(facts_class_count)
{
    kd_err e;
    cfg_data_facts f = {.ntrain = 1000, .nclasses = 12, .train_values = 16, .test_values = 16};
    int rc = load_facts(IDX_CFG, &f, &e);
    expect_err(rc, &e, 11, 12, "teacher.layers[3]", "12 classes");
    f.nclasses = 10;
    ck_assert_int_eq(load_facts(IDX_CFG, &f, &e), KD_OK);
    f.nclasses = 7; /* more outputs than classes: training accepts it */
    ck_assert_int_eq(load_facts(IDX_CFG, &f, &e), KD_OK);
    ck_assert_int_eq(load(IDX_CFG, &e), KD_OK); /* no facts: unknown, accepted */
}
END_TEST

START_TEST(facts_sample_size_and_count)
{
    kd_err e;
    cfg_data_facts f = {.ntrain = 1000, .nclasses = 10, .train_values = 784, .test_values = 16};
    int rc = load_facts(IDX_CFG, &f, &e);
    expect_err(rc, &e, 8, 10, "data.shape", "784");
    f.train_values = 16;
    f.test_values = 15;
    rc = load_facts(IDX_CFG, &f, &e);
    expect_err(rc, &e, 8, 10, "test data", "15");
    f.test_values = 16;
    f.ntrain = 0;
    rc = load_facts(IDX_CFG, &f, &e);
    expect_err(rc, &e, 3, 3, "data.val_fraction", "no training samples");
}
END_TEST

START_TEST(facts_calibration)
{
    kd_err e;
    cfg_data_facts f = {.ntrain = 700, .nclasses = 10, .train_values = 16, .test_values = 16};
    const char *y = IDX_CFG "compress:\n  - name: q\n    source: teacher\n"
                            "    passes:\n      - {type: quantize}\n";
    int rc = load_facts(y, &f, &e);
    expect_err(rc, &e, 17, 9, "calib_batches", "700 samples");
    f.ntrain = 1024; /* 8 full batches */
    ck_assert_int_eq(load_facts(y, &f, &e), KD_OK);
    f.ntrain = 897; /* the 8th batch has one sample: compress accepts it */
    ck_assert_int_eq(load_facts(y, &f, &e), KD_OK);
    f.ntrain = 896;
    ck_assert_int_eq(load_facts(y, &f, &e), KD_ECONFIG);
}
END_TEST

/* ---- no parameters for shape checks ---------------------------------------------- */
#if !defined(__SANITIZE_ADDRESS__)
/* Virtual memory in use now, in bytes (Linux). */
static long vm_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0;
    if (f) {
        if (fscanf(f, "%ld", &pages) != 1)
            pages = 0;
        fclose(f);
    }
    return pages * sysconf(_SC_PAGESIZE);
}
#endif

START_TEST(wide_models_allocate_nothing)
{
    /* nine models of 41M parameters each (164 MB of weights, as much again of
     * gradients): walked in a child whose address space may grow by 96 MB */
    static char y[8192];
    const char *layers = "  layers: [{type: flatten}, {type: dense, units: 6000}, {type: relu},\n"
                         "           {type: dense, units: 6000}, {type: relu},\n"
                         "           {type: dense, units: 10}]\n";
    int n = snprintf(y, sizeof y, "name: wide\nteacher:\n%s  train: {epochs: 1, optimizer: "
                     "{lr: 0.1}}\nstudents:\n", layers);
    for (int i = 0; i < 8; i++) {
        n += snprintf(y + n, sizeof y - (size_t)n, "  - name: s%d\n", i);
        for (const char *p = layers; *p; p++) { /* indent the block by two */
            if (p == layers || p[-1] == '\n')
                n += snprintf(y + n, sizeof y - (size_t)n, "  ");
            y[n++] = *p;
        }
        n += snprintf(y + n, sizeof y - (size_t)n,
                      "    train: {epochs: 1, optimizer: {lr: 0.1}}\n");
    }
    ck_assert_int_lt(n, (int)sizeof y - 1);
    y[n] = 0;
#if defined(__SANITIZE_ADDRESS__)
    /* the sanitizer reserves terabytes of shadow: an address-space limit means nothing */
    kd_err e;
    ck_assert_int_eq(load(y, &e), KD_OK);
    fprintf(stderr, "wide_models_allocate_nothing: memory bound not asserted under ASan\n");
#else
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        alarm(60);
        long lim = vm_bytes() + (96L << 20);
        struct rlimit r = {(rlim_t)lim, (rlim_t)lim};
        if (vm_bytes() <= 0 || setrlimit(RLIMIT_AS, &r) != 0)
            _exit(3);
        kd_err e;
        int rc = load(y, &e);
        if (rc != KD_OK)
            fprintf(stderr, "child: %s\n", e.msg);
        _exit(rc == KD_OK ? 0 : 1);
    }
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the walk needed more than 96 MB (%d)",
                  st);
#endif
}
END_TEST

Suite *suite_config_rules(void)
{
    Suite *s = suite_create("config_rules");
    TCase *t = tcase_create("config_rules");
    tcase_add_test(t, calib_default_at_the_pass);
    tcase_add_test(t, calib_default_through_overrides);
    tcase_add_test(t, int4_group_is_fixed);
    tcase_add_test(t, constants_match_compress);
    tcase_add_test(t, structured_output_layer);
    tcase_add_test(t, student_outputs_match_teacher);
    tcase_add_test(t, facts_class_count);
    tcase_add_test(t, facts_sample_size_and_count);
    tcase_add_test(t, facts_calibration);
    tcase_add_test(t, wide_models_allocate_nothing);
    suite_add_tcase(s, t);
    return s;
}
