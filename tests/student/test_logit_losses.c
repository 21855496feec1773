/* DKD, DIST and logit standardization: values against the papers'
 * identities and hand-computed cases, every gradient against central
 * differences, and plain KD unchanged bit for bit. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../student/student.h"
#include "../kdtest.h"

enum { N = 5, K = 7 };

static void random_rows(nn_rng *r, float *s, float *t, uint8_t *y, int n, int k, float sc)
{
    for (int i = 0; i < n * k; i++) {
        s[i] = sc * nn_rng_normal(r);
        t[i] = sc * nn_rng_normal(r);
    }
    for (int i = 0; i < n; i++)
        y[i] = (uint8_t)nn_rng_below(r, k);
}

/* Central differences of f over every s[i] against the analytic ds. */
typedef double (*loss_at)(const void *ctx, const float *s, float *ds);

static void gradcheck(loss_at f, const void *ctx, float *s, int count, double tol, const char *what)
{
    float ds[N * K * 4];
    ck_assert_int_le(count, N * K * 4);
    f(ctx, s, ds);
    for (int i = 0; i < count; i++) {
        const float h = 1e-2f, keep = s[i];
        s[i] = keep + h;
        double up = f(ctx, s, NULL);
        s[i] = keep - h;
        double dn = f(ctx, s, NULL);
        s[i] = keep;
        double num = (up - dn) / (2 * h);
        ck_assert_msg(fabs(num - ds[i]) <= tol * (1 + fabs(num)), "%s [%d]: analytic %g numeric %g",
                      what, i, ds[i], num);
    }
}

typedef struct {
    const float *t;
    const uint8_t *y;
    int n, k;
    student_distill_opts o;
    int epoch;
} lctx;

static double dkd_at(const void *ctx, const float *s, float *ds)
{
    const lctx *c = ctx;
    return student_dkd_loss(s, c->t, c->y, c->n, c->k, c->o.temperature, c->o.alpha, c->o.beta, ds);
}

static double dist_at(const void *ctx, const float *s, float *ds)
{
    const lctx *c = ctx;
    float work[3 * N * K * 4];
    return student_dist_loss(s, c->t, c->n, c->k, c->o.temperature, c->o.beta, c->o.gamma, ds,
                             work);
}

static double method_at(const void *ctx, const float *s, float *ds)
{
    const lctx *c = ctx;
    float work[6 * N * K * 4];
    ck_assert_uint_le(student_logit_work(c->n, c->k), sizeof work / sizeof work[0]);
    return student_logit_loss(&c->o, c->epoch, s, c->t, c->y, c->n, c->k, ds, work);
}

/* sum(zscore(s) .* r): checks the standardization's backward alone */
static double zscore_at(const void *ctx, const float *s, float *ds)
{
    const lctx *c = ctx;
    float zs[N * K];
    student_zscore(s, c->n, c->k, zs);
    double l = 0;
    for (int i = 0; i < c->n * c->k; i++)
        l += (double)zs[i] * c->t[i];
    if (ds) {
        memcpy(ds, c->t, (size_t)c->n * c->k * sizeof *ds);
        student_zscore_backward(s, ds, c->n, c->k);
    }
    return l;
}

START_TEST(dkd_gradient_numeric)
{
    nn_rng r = nn_rng_stream(5, NN_STREAM_TEST);
    const float temps[] = {1, 4}, alphas[] = {0, 1, 2}, betas[] = {0, 1, 8};
    float s[N * K], t[N * K];
    uint8_t y[N];
    for (int ti = 0; ti < 2; ti++)
        for (int ai = 0; ai < 3; ai++)
            for (int bi = 0; bi < 3; bi++) {
                random_rows(&r, s, t, y, N, K, 3);
                lctx c = {.t = t, .y = y, .n = N, .k = K,
                          .o = {.temperature = temps[ti], .alpha = alphas[ai], .beta = betas[bi]}};
                gradcheck(dkd_at, &c, s, N * K, 2e-3, "dkd");
            }
}
END_TEST

/* DKD's Eq. 7: KD = TCKD + (1 - p_T,y) NCKD, so DKD with alpha = 1 and
 * beta = 1 - p_T,y is Hinton's soft term, value and gradient. */
START_TEST(dkd_reduces_to_kd)
{
    nn_rng r = nn_rng_stream(6, NN_STREAM_TEST);
    float s[K], t[K], dk[K], dd[K];
    uint8_t y[1];
    for (int rep = 0; rep < 10; rep++) {
        random_rows(&r, s, t, y, 1, K, 2);
        const float T = rep % 2 ? 4.0f : 1.5f;
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < K; j++)
            mx = fmax(mx, t[j] / T);
        for (int j = 0; j < K; j++)
            sum += exp(t[j] / T - mx);
        double pty = exp(t[y[0]] / T - mx) / sum;
        float kd = student_kd_loss(s, t, y, 1, K, T, 1.0f, dk);
        float dkd = student_dkd_loss(s, t, y, 1, K, T, 1.0f, (float)(1 - pty), dd);
        ck_assert_double_eq_tol(dkd, kd, 1e-5 * (1 + fabs(kd)));
        for (int j = 0; j < K; j++)
            ck_assert_double_eq_tol(dd[j], dk[j], 1e-5);
    }
}
END_TEST

/* s = [0, 0, 0], t = [ln 2, 0, 0], y = 0, T = 1: b_T = (1/2, 1/2), b_S =
 * (1/3, 2/3): TCKD = 0.5 ln 1.5 + 0.5 ln 0.75 = 0.0588915; both non-target
 * distributions are uniform, so NCKD = 0.  Gradient at y: alpha (1/3 - 1/2). */
START_TEST(dkd_hand_computed)
{
    const float s[3] = {0, 0, 0}, t[3] = {(float)log(2.0), 0, 0};
    const uint8_t y[1] = {0};
    float ds[3];
    float l = student_dkd_loss(s, t, y, 1, 3, 1.0f, 1.0f, 8.0f, ds);
    ck_assert_double_eq_tol(l, 0.0588915, 1e-6);
    ck_assert_double_eq_tol(ds[0], 1.0 / 3 - 0.5, 1e-6);
    /* j != y: phat_S,j (b_T,y - b_S,y) = 0.5 * (1/2 - 1/3) */
    ck_assert_double_eq_tol(ds[1], 0.5 * (0.5 - 1.0 / 3), 1e-6);
    /* identical logits: no loss, no gradient */
    float l2 = student_dkd_loss(t, t, y, 1, 3, 2.0f, 1.0f, 8.0f, ds);
    ck_assert_double_eq_tol(l2, 0, 1e-7);
    ck_assert_double_eq_tol(ds[0], 0, 1e-7);
}
END_TEST

START_TEST(dist_gradient_numeric)
{
    nn_rng r = nn_rng_stream(7, NN_STREAM_TEST);
    const float temps[] = {1, 4};
    const float bg[][2] = {{1, 1}, {2, 0}, {0, 3}};
    float s[N * K], t[N * K];
    uint8_t y[N];
    for (int ti = 0; ti < 2; ti++)
        for (int b = 0; b < 3; b++)
            for (int n = 1; n <= N; n += 2) { /* n = 1: the intra term has nothing to correlate */
                random_rows(&r, s, t, y, n, K, 2);
                lctx c = {.t = t, .n = n, .k = K,
                          .o = {.temperature = temps[ti], .beta = bg[b][0], .gamma = bg[b][1]}};
                gradcheck(dist_at, &c, s, n * K, 3e-3, "dist");
            }
}
END_TEST

/* Equal logits correlate perfectly: no loss, no gradient.  Student logits
 * that reverse the teacher's order of 2 classes anti-correlate: each row's
 * Pearson is -1 (inter = 2 per sample), and so is each class's across a
 * batch of two mirrored samples. */
START_TEST(dist_hand_computed)
{
    const float t[4] = {1, 0, 0, 1}, s[4] = {0, 1, 1, 0};
    float ds[4], work[12];
    float l = student_dist_loss(t, t, 2, 2, 1.0f, 1.0f, 1.0f, ds, work);
    ck_assert_double_eq_tol(l, 0, 1e-6);
    for (int j = 0; j < 4; j++)
        ck_assert_double_eq_tol(ds[j], 0, 1e-6);
    l = student_dist_loss(s, t, 2, 2, 1.0f, 1.0f, 1.0f, NULL, work);
    ck_assert_double_eq_tol(l, 2 + 2, 1e-5);
    /* beta and gamma weigh the two terms; T^2 scales both */
    l = student_dist_loss(s, t, 2, 2, 2.0f, 0.5f, 0.0f, NULL, work);
    ck_assert_double_eq_tol(l, 4 * 0.5 * 2, 1e-5);
}
END_TEST

START_TEST(zscore_forward_backward)
{
    nn_rng r = nn_rng_stream(8, NN_STREAM_TEST);
    float s[N * K], t[N * K], zs[N * K];
    uint8_t y[N];
    random_rows(&r, s, t, y, N, K, 3);
    for (int i = 0; i < N * K; i++)
        s[i] += 5; /* an offset the standardization removes */
    student_zscore(s, N, K, zs);
    for (int i = 0; i < N; i++) {
        double m = 0, v = 0;
        for (int j = 0; j < K; j++)
            m += zs[i * K + j];
        m /= K;
        for (int j = 0; j < K; j++)
            v += (zs[i * K + j] - m) * (zs[i * K + j] - m);
        ck_assert_double_eq_tol(m, 0, 1e-6);
        ck_assert_double_eq_tol(v / (K - 1), 1, 1e-5); /* unbiased, as torch.std */
    }
    lctx c = {.t = t, .n = N, .k = K};
    gradcheck(zscore_at, &c, s, N * K, 2e-3, "zscore");
    /* a constant row is all zeros, not NaN */
    const float flat[3] = {2, 2, 2};
    student_zscore(flat, 1, 3, zs);
    ck_assert(zs[0] == 0 && zs[1] == 0 && zs[2] == 0);
}
END_TEST

/* Every method, with and without standardization, at several epochs of the
 * DKD warm-up: the composed loss's gradient. */
START_TEST(method_gradient_numeric)
{
    nn_rng r = nn_rng_stream(9, NN_STREAM_TEST);
    float s[N * K], t[N * K];
    uint8_t y[N];
    const student_distill_opts os[] = {
        {.method = STUDENT_KD, .temperature = 4, .alpha = 0.9f},
        {.method = STUDENT_KD, .temperature = 2, .alpha = 0.7f, .standardize = 1},
        {.method = STUDENT_DKD, .temperature = 4, .alpha = 1, .beta = 8, .warmup = 3},
        {.method = STUDENT_DKD, .temperature = 2, .alpha = 1, .beta = 2, .standardize = 1},
        {.method = STUDENT_DIST, .temperature = 1, .beta = 1, .gamma = 1},
        {.method = STUDENT_DIST, .temperature = 3, .beta = 2, .gamma = 0.5f},
    };
    for (size_t m = 0; m < sizeof os / sizeof os[0]; m++)
        for (int epoch = 1; epoch <= 4; epoch += 3) {
            random_rows(&r, s, t, y, N, K, 3);
            lctx c = {.t = t, .y = y, .n = N, .k = K, .o = os[m], .epoch = epoch};
            char what[64];
            snprintf(what, sizeof what, "method %zu epoch %d", m, epoch);
            gradcheck(method_at, &c, s, N * K, 3e-3, what);
        }
}
END_TEST

/* The composition: DKD = CE + warm-up weight * DKD term; DIST = CE + its
 * term; standardized KD = alpha * KD(z-scored) + (1 - alpha) * CE(raw). */
START_TEST(method_composition)
{
    nn_rng r = nn_rng_stream(10, NN_STREAM_TEST);
    float s[N * K], t[N * K], a[N * K], b[N * K], work[6 * N * K], zs[N * K], zt[N * K];
    uint8_t y[N];
    random_rows(&r, s, t, y, N, K, 3);
    double ce = nn_softmax_xent(s, y, N, K, NULL);
    student_distill_opts dkd = {.method = STUDENT_DKD, .temperature = 4, .alpha = 1, .beta = 8,
                                .warmup = 4};
    double term = student_dkd_loss(s, t, y, N, K, 4, 1, 8, NULL);
    for (int ep = 1; ep <= 6; ep++) {
        double w = ep < 4 ? ep / 4.0 : 1.0;
        ck_assert_double_eq_tol(student_dkd_weight(&dkd, ep), w, 1e-7);
        double l = student_logit_loss(&dkd, ep, s, t, y, N, K, NULL, work);
        ck_assert_double_eq_tol(l, ce + w * term, 1e-4 * (1 + l));
    }
    dkd.warmup = 0; /* no warm-up: full weight from the first epoch */
    ck_assert(student_dkd_weight(&dkd, 1) == 1.0f);
    student_distill_opts dist = {.method = STUDENT_DIST, .temperature = 1, .beta = 1, .gamma = 1};
    double l = student_logit_loss(&dist, 1, s, t, y, N, K, NULL, work);
    ck_assert_double_eq_tol(l, ce + student_dist_loss(s, t, N, K, 1, 1, 1, NULL, work),
                            1e-4 * (1 + l));
    student_distill_opts skd = {.method = STUDENT_KD, .temperature = 2, .alpha = 0.75f,
                                .standardize = 1};
    student_zscore(s, N, K, zs);
    student_zscore(t, N, K, zt);
    l = student_logit_loss(&skd, 1, s, t, y, N, K, NULL, work);
    double want = 0.75 * student_kd_loss(zs, zt, y, N, K, 2, 1, NULL) + 0.25 * ce;
    ck_assert_double_eq_tol(l, want, 1e-4 * (1 + l));
    /* plain KD goes through student_kd_loss untouched: the same bits */
    student_distill_opts kd = {.method = STUDENT_KD, .temperature = 4, .alpha = 0.9f};
    float l1 = student_logit_loss(&kd, 3, s, t, y, N, K, a, work);
    float l2 = student_kd_loss(s, t, y, N, K, 4, 0.9f, b);
    ck_assert(memcmp(&l1, &l2, sizeof l1) == 0);
    ck_assert(memcmp(a, b, sizeof a) == 0);
}
END_TEST

START_TEST(extreme_logits_finite)
{
    const float s[6] = {1e4f, -1e4f, 0, 3e4f, 0, -3e4f}, t[6] = {-1e4f, 1e4f, 0, 0, 3e4f, 0};
    const uint8_t y[2] = {0, 2};
    float ds[6], work[36];
    const student_distill_opts os[] = {
        {.method = STUDENT_DKD, .temperature = 4, .alpha = 1, .beta = 8},
        {.method = STUDENT_DKD, .temperature = 1, .alpha = 1, .beta = 8, .standardize = 1},
        {.method = STUDENT_DIST, .temperature = 1, .beta = 1, .gamma = 1},
        {.method = STUDENT_KD, .temperature = 4, .alpha = 0.9f, .standardize = 1},
    };
    for (size_t m = 0; m < sizeof os / sizeof os[0]; m++) {
        float l = student_logit_loss(&os[m], 1, s, t, y, 2, 3, ds, work);
        ck_assert_msg(isfinite(l), "method %zu: loss %g", m, l);
        for (int j = 0; j < 6; j++)
            ck_assert_msg(isfinite(ds[j]), "method %zu: ds[%d] %g", m, j, ds[j]);
    }
}
END_TEST

Suite *suite_student_losses(void)
{
    Suite *s = suite_create("student_losses");
    TCase *t = tcase_create("core");
    tcase_add_test(t, dkd_gradient_numeric);
    tcase_add_test(t, dkd_reduces_to_kd);
    tcase_add_test(t, dkd_hand_computed);
    tcase_add_test(t, dist_gradient_numeric);
    tcase_add_test(t, dist_hand_computed);
    tcase_add_test(t, zscore_forward_backward);
    tcase_add_test(t, method_gradient_numeric);
    tcase_add_test(t, method_composition);
    tcase_add_test(t, extreme_logits_finite);
    suite_add_tcase(s, t);
    return s;
}
