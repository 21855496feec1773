/* PyTorch -> kdbench: Debian's python3-torch builds a small MLP (Gemm, MatMul
 * + Add) and a small CNN (Conv, BatchNormalization, MaxPool, PyTorch's
 * Shape/Gather/Unsqueeze/Concat/Reshape flatten, final Softmax) with fixed
 * seeds, exports each with torch.onnx.export in its default and dynamic-axes
 * forms, and writes their logits on 1,000 test images (Fashion-MNIST's when
 * installed); kdbench's logits on the same pixels, preprocessed by the
 * imported model's input_mean / input_std, agree within 1e-4.  One python run
 * (scripts/make_onnx_teacher.py, in an unchecked fixture) makes every
 * fixture; without /usr/bin/python3 or torch the test is skipped, saying so. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../data/data.h"
#include "../../onnx/import.h"
#include "../kdtest.h"

/* Debian's python (the python3 on PATH may be another without torch);
 * $KDT_PYTHON overrides it (a missing one shows the skip). */
static const char *py(void)
{
    const char *p = getenv("KDT_PYTHON");
    return p && p[0] ? p : "/usr/bin/python3";
}
#define N_IMAGES 1000

static char fix_dir[512];
static int fix_rc = -1; /* the script's exit status; -1 not run */
static char fix_why[256];

static void fixtures(void)
{
    if (access(py(), X_OK) != 0) {
        snprintf(fix_why, sizeof fix_why, "%s is not installed (Debian python3)", py());
        return;
    }
    kdt_tmpdir(fix_dir, sizeof fix_dir);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "timeout 600 %s scripts/make_onnx_teacher.py %s > %s/log 2>&1", py(),
             fix_dir, fix_dir);
    int st = system(cmd);
    fix_rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
    snprintf(cmd, sizeof cmd, "grep -q \"No module named '\\(torch\\|numpy\\)'\" %s/log", fix_dir);
    if (fix_rc != 0 && system(cmd) == 0)
        snprintf(fix_why, sizeof fix_why, "python3-torch is not installed for %s", py());
}

static void *slurp(const char *name, size_t want)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", fix_dir, name);
    uint8_t *p;
    size_t n;
    kd_err e = {0};
    ck_assert_msg(kd_read_file(path, 1 << 26, &p, &n, &e) == KD_OK, "%s", e.msg);
    ck_assert_msg(n == want, "%s: %zu bytes, expected %zu", name, n, want);
    return p;
}

/* Fails unless the fixture ran; skips (returns 0) when python or torch is missing. */
static int have_fixtures(const char *test)
{
    if (fix_why[0]) {
        kdt_skip_at(test, "%s", fix_why);
        return 0;
    }
    ck_assert_msg(fix_rc == 0, "scripts/make_onnx_teacher.py failed (exit %d): see %s/log", fix_rc,
                  fix_dir);
    return 1;
}

static void check_model(const char *name, const char *logits, const data_set *d, float mean,
                        float sd)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", fix_dir, name);
    kd_err e = {0};
    nn_model *m = onnx_import_file(path, mean, sd, &e);
    ck_assert_msg(m, "%s: %s", name, e.msg);
    ck_assert_int_eq(m->nclasses, 10);
    float *want = slurp(logits, (size_t)N_IMAGES * 10 * sizeof(float));
    float *x = kd_malloc((size_t)N_IMAGES * 784 * sizeof *x);
    int *idx = kd_malloc(N_IMAGES * sizeof *idx);
    for (int i = 0; i < N_IMAGES; i++)
        idx[i] = i;
    /* the bench's own preprocessing, with the model's mean and std */
    data_batch(d, idx, N_IMAGES, m->in_mean, m->in_std, x, NULL);
    nn_ctx c = {0};
    const float *y = nn_model_forward(m, x, N_IMAGES, &c);
    ck_assert_ptr_nonnull(y);
    double worst = 0;
    int agree = 0;
    for (int i = 0; i < N_IMAGES; i++) {
        int a = 0, b = 0;
        for (int k = 0; k < 10; k++) {
            double diff = fabs((double)y[i * 10 + k] - want[i * 10 + k]);
            worst = diff > worst ? diff : worst;
            a = y[i * 10 + k] > y[i * 10 + a] ? k : a;
            b = want[i * 10 + k] > want[i * 10 + b] ? k : b;
        }
        agree += a == b;
    }
    ck_assert_msg(worst <= 1e-4, "%s: logits differ from PyTorch's by up to %g", name, worst);
    ck_assert_int_eq(agree, N_IMAGES);
    printf("onnx_torch: %s: %d images, largest logit difference %.2g\n", name, N_IMAGES, worst);
    kd_free(idx);
    kd_free(x);
    kd_free(want);
    nn_model_free(m);
}

START_TEST(pytorch_logits_agree)
{
    if (!have_fixtures(__func__))
        return;
    char path[700];
    snprintf(path, sizeof path, "%s/info.txt", fix_dir);
    FILE *f = fopen(path, "r");
    float mean = 0, sd = 0;
    char source[64] = "";
    ck_assert_int_eq(f ? fscanf(f, "mean %f std %f source %63s", &mean, &sd, source) : 0, 3);
    fclose(f);
    printf("onnx_torch: inputs: %s\n", source);
    data_set d = {.n = N_IMAGES, .shape = {1, 28, 28}, .nclasses = 10};
    d.x8 = slurp("x.u8", (size_t)N_IMAGES * 784);
    check_model("mlp.onnx", "mlp.f32", &d, mean, sd);
    check_model("mlp_dyn.onnx", "mlp.f32", &d, mean, sd);
    check_model("cnn.onnx", "cnn.f32", &d, mean, sd);
    check_model("cnn_dyn.onnx", "cnn.f32", &d, mean, sd);
    kd_free(d.x8);
    d.x8 = NULL;
}
END_TEST

/* The dynamic CNN keeps BatchNormalization and the five-node flatten. */
START_TEST(pytorch_forms_present)
{
    if (!have_fixtures(__func__))
        return;
    char path[700];
    snprintf(path, sizeof path, "%s/cnn_dyn.onnx", fix_dir);
    kd_err e = {0};
    onnx_file *f = onnx_file_read(path, &e);
    ck_assert_msg(f, "%s", e.msg);
    const Onnx__GraphProto *g = onnx_file_model(f)->graph;
    int bn = 0, shape = 0, gather = 0, softmax = 0;
    for (size_t i = 0; i < g->n_node; i++) {
        bn += !strcmp(g->node[i]->op_type, "BatchNormalization");
        shape += !strcmp(g->node[i]->op_type, "Shape");
        gather += !strcmp(g->node[i]->op_type, "Gather");
        softmax += !strcmp(g->node[i]->op_type, "Softmax");
    }
    ck_assert_msg(bn == 1 && shape == 1 && gather == 1 && softmax == 1,
                  "the export lost the forms this test is about (bn %d shape %d gather %d)", bn,
                  shape, gather);
    onnx_file_free(f);
}
END_TEST

Suite *suite_onnx_torch(void)
{
    Suite *s = suite_create("onnx_torch");
    TCase *t = tcase_create("torch");
    tcase_add_unchecked_fixture(t, fixtures, NULL);
    tcase_add_test(t, pytorch_logits_agree);
    tcase_add_test(t, pytorch_forms_present);
    tcase_set_timeout(t, 120);
    suite_add_tcase(s, t);
    return s;
}
