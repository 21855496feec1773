/* train: learning on a separable synthetic set (float and uint8 inputs), bit
 * reproducibility, checkpoint resume equal to a straight run bit for bit,
 * checkpoints refused when truncated, corrupt or for another configuration,
 * and train_evaluate on a hand-made model. */
#include <check.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../train/train.h"
#include "../kdtest.h"

/* n samples of 4 features in 3 classes: class c centred at 2*e_c (+ e_3 for
 * c = 2), unit noise; uint8 variant maps x to 128 + 30x, clamped. */
static void make_set(data_set *d, int n, uint64_t seed, int u8)
{
    memset(d, 0, sizeof *d);
    d->n = n;
    d->shape = u8 ? (nn_shape){1, 2, 2} : (nn_shape){4, 1, 1};
    d->nclasses = 3;
    d->y = kd_malloc((size_t)n);
    float *xf = kd_malloc((size_t)n * 4 * sizeof *xf);
    nn_rng r = nn_rng_stream(seed, NN_STREAM_DATA);
    for (int i = 0; i < n; i++) {
        int c = (int)nn_rng_below(&r, 3);
        d->y[i] = (uint8_t)c;
        for (int j = 0; j < 4; j++)
            xf[i * 4 + j] = 0.6f * nn_rng_normal(&r) + (j == c ? 2.0f : 0) + (c == 2 && j == 3);
    }
    if (!u8) {
        d->xf = xf;
        return;
    }
    d->x8 = kd_malloc((size_t)n * 4);
    for (int i = 0; i < n * 4; i++) {
        float v = 128 + 30 * xf[i];
        d->x8[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
    kd_free(xf);
}

static nn_model *mlp(int dropout)
{
    nn_layer_spec sp[4] = {{.kind = NN_DENSE, .units = 8}, {.kind = NN_RELU},
                           {.kind = NN_DROPOUT, .rate = 0.2f}, {.kind = NN_DENSE, .units = 3}};
    if (!dropout)
        sp[2] = (nn_layer_spec){.kind = NN_RELU, .name = "relu_again"};
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){4, 1, 1}, sp, 4, NULL, &e);
    ck_assert_msg(m != NULL, "%s", e.msg);
    nn_model_init(m, 17);
    return m;
}

static train_opts opts_adamw(int epochs)
{
    train_opts o = {.epochs = epochs, .batch_size = 24, .seed = 5};
    o.opt = (nn_opt_spec){.kind = NN_OPT_ADAMW, .lr = 0.01f, .weight_decay = 0.01f};
    o.sched = (nn_sched_spec){.kind = NN_SCHED_COSINE, .warmup_epochs = 1, .min_lr = 0.001f};
    return o;
}

static void fit(nn_model *m, const train_opts *o, const data_set *tr, const data_set *val,
                train_state *st)
{
    kd_err e = {0};
    ck_assert_int_eq(train_state_init(st, m, o, &e), KD_OK);
#if defined(__SSE__)
    unsigned before = _mm_getcsr();
#endif
    ck_assert_msg(train_fit(st, o, tr, val, NULL, &e) == KD_OK, "%s", e.msg);
#if defined(__SSE__)
    /* denormals are flushed inside train_fit only: the caller's mode is back */
    ck_assert_uint_eq(_mm_getcsr(), before);
#endif
}

static void learns(int u8)
{
    data_set tr, val;
    make_set(&tr, 300, 1, u8);
    make_set(&val, 90, 2, u8);
    nn_model *m = mlp(1);
    double l0, a0;
    kd_err e = {0};
    ck_assert_int_eq(train_evaluate(m, &val, 64, &l0, &a0, &e), KD_OK);
    train_opts o = {.epochs = 6, .batch_size = 32, .seed = 3};
    o.opt = (nn_opt_spec){.kind = NN_OPT_SGD, .lr = 0.1f, .momentum = 0.9f};
    train_state st;
    fit(m, &o, &tr, &val, &st);
    ck_assert_int_eq(st.epochs_done, 6);
    const train_epoch *h = st.history;
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(h[i].epoch, i + 1);
        ck_assert(h[i].val_loss >= 0 && h[i].val_acc >= 0);
        ck_assert(h[i].lr == (double)0.1f); /* constant schedule */
    }
    ck_assert_msg(h[5].loss < 0.5 * h[0].loss, "loss %g -> %g", h[0].loss, h[5].loss);
    ck_assert_msg(h[5].val_loss < 0.5 * l0, "val loss %g -> %g", l0, h[5].val_loss);
    ck_assert_msg(h[5].val_acc > 0.9 && h[5].val_acc > a0 + 0.3, "val acc %g -> %g", a0,
                  h[5].val_acc);
    ck_assert(h[5].train_acc > h[0].train_acc);
    /* the input normalisation came from the training set */
    float mean, sd;
    data_stats(&tr, &mean, &sd);
    ck_assert(m->in_mean == mean && m->in_std == sd);
    /* train_evaluate agrees with the last epoch's validation numbers */
    double l, a;
    ck_assert_int_eq(train_evaluate(m, &val, 7, &l, &a, &e), KD_OK);
    ck_assert_double_eq_tol(l, h[5].val_loss, 1e-6);
    ck_assert(a == h[5].val_acc);
    train_state_free(&st);
    nn_model_free(m);
    data_set_free(&tr);
    data_set_free(&val);
}

START_TEST(test_learns_float) { learns(0); }
END_TEST

START_TEST(test_learns_u8) { learns(1); }
END_TEST

START_TEST(test_same_seed_bit_identical)
{
    data_set tr;
    make_set(&tr, 100, 1, 0);
    train_opts o = opts_adamw(3);
    nn_model *a = mlp(1), *b = mlp(1), *c = mlp(1);
    train_state sa, sb, sc;
    fit(a, &o, &tr, NULL, &sa);
    fit(b, &o, &tr, NULL, &sb);
    ck_assert(memcmp(a->params, b->params, a->nparams * sizeof(float)) == 0);
    ck_assert(sa.history[2].loss == sb.history[2].loss);
    ck_assert(sa.history[2].val_loss == -1 && sa.history[2].val_acc == -1);
    o.seed = 6;
    fit(c, &o, &tr, NULL, &sc);
    ck_assert(memcmp(a->params, c->params, a->nparams * sizeof(float)) != 0);
    train_state_free(&sa);
    train_state_free(&sb);
    train_state_free(&sc);
    nn_model_free(a);
    nn_model_free(b);
    nn_model_free(c);
    data_set_free(&tr);
}
END_TEST

/* on_epoch hook: checkpoint after epoch `at`, then stop the run */
typedef struct {
    const char *path;
    int at;
} stop_ctx;

static int save_and_stop(void *ctx, const train_state *st, const train_epoch *ep, kd_err *e)
{
    const stop_ctx *s = ctx;
    if (ep->epoch != s->at)
        return KD_OK;
    int rc = train_checkpoint_save(st, s->path, e);
    return rc != KD_OK ? rc : 1;
}

START_TEST(test_resume_bit_identical)
{
    char dir[256], path[512];
    kdt_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/ck.kdck", dir);
    data_set tr, val;
    make_set(&tr, 101, 1, 1); /* 101 = 4 batches of 24 and one of 5 */
    make_set(&val, 30, 2, 1);
    train_opts o = opts_adamw(4);
    /* straight through */
    nn_model *a = mlp(1);
    train_state sa;
    fit(a, &o, &tr, &val, &sa);
    /* two epochs, checkpoint, stop */
    nn_model *b = mlp(1);
    train_state sb;
    kd_err e = {0};
    ck_assert_int_eq(train_state_init(&sb, b, &o, &e), KD_OK);
    stop_ctx sc = {.path = path, .at = 2};
    train_hooks h = {.on_epoch = save_and_stop, .cb_ctx = &sc, .quiet = 1};
    ck_assert_int_eq(train_fit(&sb, &o, &tr, &val, &h, &e), 1);
    ck_assert_int_eq(sb.epochs_done, 2);
    train_state_free(&sb);
    nn_model_free(b);
    /* a fresh state from the file continues to 4 */
    train_state sr;
    ck_assert_msg(train_checkpoint_load(path, &o, &sr, &e) == KD_OK, "%s", e.msg);
    ck_assert_int_eq(sr.epochs_done, 2);
    ck_assert_int_eq(sr.opt->step, 2 * 5);
    ck_assert_msg(train_fit(&sr, &o, &tr, &val, NULL, &e) == KD_OK, "%s", e.msg);
    ck_assert_int_eq(sr.epochs_done, 4);
    ck_assert(memcmp(a->params, sr.model->params, a->nparams * sizeof(float)) == 0);
    ck_assert(memcmp(sa.opt->v, sr.opt->v, a->nparams * sizeof(float)) == 0);
    ck_assert(a->in_mean == sr.model->in_mean && a->in_std == sr.model->in_std);
    for (int i = 0; i < 4; i++) {
        ck_assert(sa.history[i].loss == sr.history[i].loss);
        ck_assert(sa.history[i].val_acc == sr.history[i].val_acc);
        ck_assert(sa.history[i].lr == sr.history[i].lr);
    }
    train_state_free(&sa);
    nn_model_free(sr.model);
    train_state_free(&sr);
    nn_model_free(a);
    data_set_free(&tr);
    data_set_free(&val);
    unlink(path);
    rmdir(dir);
}
END_TEST

/* begin_epoch: called once per epoch, with the 1-based epoch, before its
 * first batch; a fit that starts at epochs_done = 2 begins with epoch 3. */
typedef struct {
    int epochs[8], n, batches_at_begin, batches;
} epoch_log;

static void log_begin(void *ctx, int epoch)
{
    epoch_log *l = ctx;
    l->batches_at_begin = l->batches;
    l->epochs[l->n++] = epoch;
}

static float log_loss(void *ctx, const float *z, const uint8_t *y, const int *idx, int n, int k,
                      float *dz)
{
    (void)idx;
    epoch_log *l = ctx;
    /* the hook ran before this epoch's first batch, not in the middle */
    ck_assert_int_eq(l->batches - l->batches_at_begin, l->batches % 5);
    l->batches++;
    return nn_softmax_xent(z, y, n, k, dz);
}

START_TEST(test_begin_epoch_hook)
{
    data_set tr;
    make_set(&tr, 101, 1, 0); /* 5 batches of at most 24 */
    train_opts o = opts_adamw(4);
    nn_model *m = mlp(0);
    train_state st;
    kd_err e = {0};
    epoch_log l = {0};
    train_hooks h = {.loss = log_loss, .loss_ctx = &l, .begin_epoch = log_begin, .quiet = 1};
    ck_assert_int_eq(train_state_init(&st, m, &o, &e), KD_OK);
    o.epochs = 2;
    ck_assert_msg(train_fit(&st, &o, &tr, NULL, &h, &e) == KD_OK, "%s", e.msg);
    o.epochs = 4; /* continues where it stopped, as a resumed run does */
    ck_assert_msg(train_fit(&st, &o, &tr, NULL, &h, &e) == KD_OK, "%s", e.msg);
    ck_assert_int_eq(l.n, 4);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(l.epochs[i], i + 1);
    ck_assert_int_eq(l.batches, 4 * 5);
    train_state_free(&st);
    nn_model_free(m);
    data_set_free(&tr);
}
END_TEST

/* a small checkpoint file (SGD with momentum, 1 epoch) in memory */
static void make_checkpoint(const char *path, const train_opts *o, uint8_t **p, size_t *n)
{
    data_set tr;
    make_set(&tr, 40, 1, 0);
    nn_model *m = mlp(0);
    train_state st;
    fit(m, o, &tr, NULL, &st);
    kd_err e = {0};
    ck_assert_int_eq(train_checkpoint_save(&st, path, &e), KD_OK);
    ck_assert_int_eq(kd_read_file(path, 1 << 20, p, n, &e), KD_OK);
    train_state_free(&st);
    nn_model_free(m);
    data_set_free(&tr);
}

static int load_code(const char *path, const uint8_t *p, size_t n, const train_opts *o)
{
    kdt_write(path, p, n);
    train_state st;
    kd_err e = {0};
    int rc = train_checkpoint_load(path, o, &st, &e);
    if (rc == KD_OK) {
        nn_model_free(st.model);
        train_state_free(&st);
    } else {
        ck_assert_ptr_null(st.model);
        ck_assert_ptr_null(st.opt);
        ck_assert_int_eq(e.code, rc);
    }
    return rc;
}

/* A checkpoint after 1 epoch of SGD with momentum, for a run of 3 epochs. */
typedef struct {
    char dir[256], path[512];
    train_opts o;
    uint8_t *p;
    size_t n;
} ck_fixture;

static void ck_fixture_init(ck_fixture *f)
{
    kdt_tmpdir(f->dir, sizeof f->dir);
    snprintf(f->path, sizeof f->path, "%s/ck.kdck", f->dir);
    f->o = (train_opts){.epochs = 1, .batch_size = 16, .seed = 1};
    f->o.opt = (nn_opt_spec){.kind = NN_OPT_SGD, .lr = 0.05f, .momentum = 0.9f};
    make_checkpoint(f->path, &f->o, &f->p, &f->n);
    f->o.epochs = 3;
    ck_assert_int_eq(load_code(f->path, f->p, f->n, &f->o), KD_OK);
}

static void ck_fixture_free(ck_fixture *f)
{
    kd_free(f->p);
    unlink(f->path);
    rmdir(f->dir);
}

START_TEST(test_checkpoint_truncated_or_corrupt)
{
    ck_fixture f;
    ck_fixture_init(&f);
    for (size_t len = 0; len < f.n; len++)
        ck_assert_msg(load_code(f.path, f.p, len, &f.o) == KD_EFORMAT, "length %zu", len);
    uint8_t *q = malloc(f.n);
    for (size_t i = 0; i < f.n; i++) {
        memcpy(q, f.p, f.n);
        q[i] ^= 0x5a;
        ck_assert_msg(load_code(f.path, q, f.n, &f.o) == KD_EFORMAT, "byte %zu", i);
    }
    free(q);
    ck_fixture_free(&f);
}
END_TEST

START_TEST(test_checkpoint_lies_and_mismatches)
{
    ck_fixture f;
    ck_fixture_init(&f);
    /* another optimiser, or fewer epochs than already done */
    train_opts other = f.o;
    other.opt.kind = NN_OPT_ADAMW;
    ck_assert_int_eq(load_code(f.path, f.p, f.n, &other), KD_EFORMAT);
    other = f.o;
    other.epochs = 0;
    ck_assert_int_eq(load_code(f.path, f.p, f.n, &other), KD_EFORMAT);
    /* a lying optimiser-state count (offset 32: after magic, version, epochs,
     * seconds (f64), kind, step (u64)), checksum fixed */
    uint64_t cnt;
    memcpy(&cnt, f.p + 32, 8);
    ck_assert_uint_eq(cnt, 8 * 4 + 8 + 8 * 3 + 3);
    const uint64_t lies[] = {cnt - 1, cnt + 1, (uint64_t)1 << 62, UINT64_MAX};
    uint8_t *q = malloc(f.n);
    for (int k = 0; k < 4; k++) {
        memcpy(q, f.p, f.n);
        memcpy(q + 32, &lies[k], 8);
        uint32_t crc = kd_crc32(0, q, f.n - 4);
        memcpy(q + f.n - 4, &crc, 4);
        ck_assert_msg(load_code(f.path, q, f.n, &f.o) == KD_EFORMAT, "count %llu",
                      (unsigned long long)lies[k]);
    }
    free(q);
    ck_fixture_free(&f);
}
END_TEST

/* f's bytes with 4 (or 8) bytes at off replaced, checksum fixed: the code
 * and message of the load */
static int lie_code(ck_fixture *f, size_t off, const void *v, size_t len, char *msg, size_t cap)
{
    uint8_t *q = malloc(f->n);
    memcpy(q, f->p, f->n);
    memcpy(q + off, v, len);
    uint32_t crc = kd_crc32(0, q, f->n - 4);
    memcpy(q + f->n - 4, &crc, 4);
    kdt_write(f->path, q, f->n);
    free(q);
    train_state st;
    kd_err e = {0};
    int rc = train_checkpoint_load(f->path, &f->o, &st, &e);
    if (rc == KD_OK) {
        nn_model_free(st.model);
        train_state_free(&st);
    }
    snprintf(msg, cap, "%s", e.msg);
    return rc;
}

/* NaN or infinity in the optimiser state, the model or the time: refused */
START_TEST(test_checkpoint_nonfinite)
{
    ck_fixture f;
    ck_fixture_init(&f);
    char msg[sizeof((kd_err *)0)->msg];
    const float bad[] = {NAN, INFINITY, -INFINITY};
    for (int k = 0; k < 3; k++) {
        /* the first moment's first value (offset 40, after the count at 32) */
        ck_assert_int_eq(lie_code(&f, 40, &bad[k], 4, msg, sizeof msg), KD_EFORMAT);
        ck_assert_msg(strstr(msg, "optimiser state of layer dense1: first moment"), "%s", msg);
        /* the model's last parameter, just before the checksum */
        ck_assert_int_eq(lie_code(&f, f.n - 8, &bad[k], 4, msg, sizeof msg), KD_EFORMAT);
        ck_assert_msg(strstr(msg, "non-finite"), "%s", msg);
    }
    const double secs[] = {NAN, INFINITY, -1};
    for (int k = 0; k < 3; k++) {
        ck_assert_int_eq(lie_code(&f, 12, &secs[k], 8, msg, sizeof msg), KD_EFORMAT);
        ck_assert_msg(strstr(msg, "training time"), "%s", msg);
    }
    ck_fixture_free(&f);
}
END_TEST

START_TEST(test_checkpoint_alloc_failures)
{
    ck_fixture f;
    ck_fixture_init(&f);
    kdt_write(f.path, f.p, f.n);
    long k;
    for (k = 0; k < 100; k++) {
        train_state st;
        kd_err e = {0};
        kd_alloc_fail_after(k);
        int rc = train_checkpoint_load(f.path, &f.o, &st, &e);
        kd_alloc_fail_after(-1);
        if (rc == KD_OK) {
            nn_model_free(st.model);
            train_state_free(&st);
            break;
        }
        ck_assert_msg(rc == KD_ENOMEM && e.code == KD_ENOMEM, "allocation %ld: %d %s", k, rc,
                      e.msg);
        ck_assert_ptr_null(st.model);
    }
    ck_assert_int_gt(k, 2);
    ck_assert_int_lt(k, 100);
    ck_fixture_free(&f);
}
END_TEST

START_TEST(test_evaluate_known_model)
{
    /* dense 2->2, W = I, b = 0: logits are the inputs */
    nn_layer_spec sp = {.kind = NN_DENSE, .units = 2};
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){2, 1, 1}, &sp, 1, NULL, &e);
    ck_assert_ptr_nonnull(m);
    m->layers[0].w[0] = m->layers[0].w[3] = 1;
    float xf[8] = {2, 0, 0, 3, 1, 0, 0, 0};
    uint8_t y[4] = {0, 1, 1, 0};
    data_set d = {.n = 4, .shape = {2, 1, 1}, .nclasses = 2, .xf = xf, .y = y};
    /* losses log(1+e^-2), log(1+e^-3), 1+log(1+e^-1), log 2; the tie (0,0)
     * counts as class 0, so 3 of 4 are right */
    double want = (log1p(exp(-2)) + log1p(exp(-3)) + 1 + log1p(exp(-1)) + log(2)) / 4;
    const int batches[] = {1, 3, 4, 256};
    for (int b = 0; b < 4; b++) {
        double l = -1, a = -1;
        ck_assert_int_eq(train_evaluate(m, &d, batches[b], &l, &a, &e), KD_OK);
        ck_assert_double_eq_tol(l, want, 1e-6);
        ck_assert(a == 0.75);
    }
    /* normalisation carried by the model applies: x' = (x - 1) / 0.5 */
    m->in_mean = 1;
    m->in_std = 0.5f;
    double l, a;
    ck_assert_int_eq(train_evaluate(m, &d, 4, &l, &a, &e), KD_OK);
    /* logits (2,-2) (-2,4) (0,-2) (-2,-2): the same argmax, other losses */
    want = (log1p(exp(-4)) + log1p(exp(-6)) + 2 + log1p(exp(-2)) + log(2)) / 4;
    ck_assert_double_eq_tol(l, want, 1e-6);
    ck_assert(a == 0.75);
    /* mismatches are errors */
    d.nclasses = 3;
    ck_assert_int_eq(train_evaluate(m, &d, 4, &l, &a, &e), KD_ERUNTIME);
    d.nclasses = 2;
    d.shape = (nn_shape){4, 1, 1};
    d.n = 2;
    ck_assert_int_eq(train_evaluate(m, &d, 4, &l, &a, &e), KD_ERUNTIME);
    train_opts o = {.epochs = 1, .batch_size = 2};
    train_state st;
    ck_assert_int_eq(train_state_init(&st, m, &o, &e), KD_OK);
    ck_assert_int_eq(train_fit(&st, &o, &d, NULL, NULL, &e), KD_ERUNTIME);
    d.n = 0;
    d.shape = (nn_shape){2, 1, 1};
    ck_assert_int_eq(train_fit(&st, &o, &d, NULL, NULL, &e), KD_ERUNTIME);
    ck_assert_str_eq(e.msg, "the training set is empty");
    /* a batch size of 0 is refused, not a division by zero or an endless loop */
    d.n = 4;
    ck_assert_int_eq(train_evaluate(m, &d, 0, &l, &a, &e), KD_ECONFIG);
    o.batch_size = 0;
    ck_assert_int_eq(train_fit(&st, &o, &d, NULL, NULL, &e), KD_ECONFIG);
    ck_assert_int_eq(st.epochs_done, 0);
    train_state_free(&st);
    nn_model_free(m);
}
END_TEST

Suite *suite_train(void)
{
    Suite *s = suite_create("train");
    TCase *t = tcase_create("train");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, test_learns_float);
    tcase_add_test(t, test_learns_u8);
    tcase_add_test(t, test_same_seed_bit_identical);
    tcase_add_test(t, test_resume_bit_identical);
    tcase_add_test(t, test_begin_epoch_hook);
    tcase_add_test(t, test_checkpoint_truncated_or_corrupt);
    tcase_add_test(t, test_checkpoint_lies_and_mismatches);
    tcase_add_test(t, test_checkpoint_alloc_failures);
    tcase_add_test(t, test_checkpoint_nonfinite);
    tcase_add_test(t, test_evaluate_known_model);
    suite_add_tcase(s, t);
    return s;
}
