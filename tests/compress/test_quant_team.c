/* qgemm teams: a product split across 1-3 threads equals the reference on
 * every available kernel, including teams larger than the panel count, after
 * the workers have gone to sleep, and through the int8 dense layer. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../compress/compress.h"
#include "../../compress/kernels/kernels.h"
#include "../kdtest.h"

typedef struct {
    int m, k, n;
} shape;

static void fill_s8(nn_rng *r, int8_t *p, size_t n, int lo, int hi)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (int8_t)(lo + (int)nn_rng_below(r, (uint32_t)(hi - lo + 1)));
}

/* One product on team t (every supported kernel, int8 and float out) against
 * qgemm_ref, exactly: the split changes which thread computes a row, not how. */
static void check_team(nn_team *t, shape s, uint64_t seed)
{
    nn_rng r = nn_rng_stream(seed, NN_STREAM_TEST);
    int8_t *w = malloc((size_t)s.m * s.k), *x = malloc((size_t)s.n * s.k);
    int32_t *mult = malloc(s.m * sizeof *mult), *shift = malloc(s.m * sizeof *shift);
    float *ws = malloc(s.m * sizeof *ws);
    fill_s8(&r, w, (size_t)s.m * s.k, -127, 127);
    fill_s8(&r, x, (size_t)s.n * s.k, -128, 127);
    for (int i = 0; i < s.m; i++) {
        quant_multiplier(0.0005 + 0.01 * nn_rng_uniform(&r), &mult[i], &shift[i], NULL);
        ws[i] = 0.01f * (1.0f + nn_rng_uniform(&r));
    }
    size_t ny = (size_t)s.n * s.m;
    float *want = malloc(ny * 4), *got = malloc(ny * 4);
    qgemm_packed *p = qgemm_pack(w, s.m, s.k, NULL);
    for (int f32 = 0; f32 < 2; f32++) {
        qgemm_epi ep = {.x_zero = 3, .out_f32 = f32, .mult = mult, .shift = shift, .y_zero = -5,
                        .lo = -128, .hi = 127, .w_scale = ws, .x_scale = 0.1f};
        qgemm_ref(w, s.m, s.k, x, s.n, &ep, want);
        for (int isa = 0; isa < QGEMM_NISA; isa++) {
            if (!qgemm_isa_supported((qgemm_isa)isa))
                continue;
            memset(got, 0x7f, ny * 4);
            qgemm_team_run(t, (qgemm_isa)isa, p, x, s.n, &ep, got);
            ck_assert_msg(memcmp(want, got, ny * (f32 ? 4 : 1)) == 0,
                          "%s on %d threads, %dx%dx%d, f32 %d", qgemm_isa_name((qgemm_isa)isa),
                          nn_team_size(t), s.m, s.k, s.n, f32);
        }
    }
    qgemm_packed_free(p);
    free(w), free(x), free(mult), free(shift), free(ws), free(want), free(got);
}

START_TEST(test_team_vs_ref)
{
    static const shape shapes[] = {{1, 5, 1}, {17, 33, 3}, {70, 257, 17}, {200, 130, 1},
                                   {48, 64, 9}};
    for (int nt = 1; nt <= 3; nt++) {
        kd_err e = {0};
        nn_team *t = nn_team_new(nt, &e);
        ck_assert_msg(t != NULL, "%s", e.msg);
        ck_assert_int_eq(nn_team_size(t), nt);
        for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
            check_team(t, shapes[i], 20 + i);
        nn_team_free(t);
    }
    check_team(NULL, shapes[2], 7); /* no team: the caller alone */
}
END_TEST

/* Workers that slept (no job for a while) wake up for the next one. */
START_TEST(test_team_wakes_sleepers)
{
    nn_team *t = nn_team_new(2, NULL);
    for (int i = 0; i < 3; i++) {
        check_team(t, (shape){40, 100, 2}, 30 + i);
        usleep(30000); /* longer than the spin: the worker sleeps */
    }
    for (int i = 0; i < 50; i++) /* back to back: the spinning path */
        check_team(t, (shape){33, 20, 1}, 40 + i);
    nn_team_free(t);
}
END_TEST

START_TEST(test_team_dense)
{
    KDT_ISA_BEGIN(_i);
    nn_rng r = nn_rng_stream(50, NN_STREAM_TEST);
    enum { M = 50, K = 60, N = 5 };
    float w[M * K];
    for (int i = 0; i < M * K; i++)
        w[i] = 0.2f * nn_rng_normal(&r);
    quant_params in = quant_params_asym(-1.0f, 1.0f, QUANT_S8);
    quant_params out = quant_params_asym(-3.0f, 3.0f, QUANT_S8);
    quant_dense *d = quant_dense_new(w, NULL, M, K, 1, in, out, 1, NULL);
    int8_t x[N * K], y1[N * M], y2[N * M];
    fill_s8(&r, x, sizeof x, -128, 127);
    nn_team *t = nn_team_new(2, NULL);
    quant_dense_forward(d, qgemm_isa_best(), NULL, x, N, y1);
    quant_dense_forward(d, qgemm_isa_best(), t, x, N, y2);
    ck_assert(memcmp(y1, y2, sizeof y1) == 0);
    nn_team_free(t);
    quant_dense_free(d);
    /* the team's own errors: tests/nn/test_team.c */
}
END_TEST

/* A layer splits a batch-1 forward across the team only when it reads
 * enough bytes to pay the hand-off (nn_team_for): the 400-to-10 output
 * layer of every threaded kind runs on the caller, the 600-to-400 layer is
 * split (dense_csr: where it has panels), and both give what the caller
 * alone gives, bit for bit.  Before nn_team_for the output layer was split
 * too (jobs counted 1). */
/* The 600-400-relu-10 MLP (seed 5) and its int8, int4, int8-dyn and
 * 50%-pruned csr-fp32 variants in v[0..3], calibrated on *calib (made here,
 * 32 samples; the caller frees it and the models). */
static nn_model *team_variants(nn_model **v, data_set *calib)
{
    const nn_layer_spec mlp[] = {{.kind = NN_DENSE, .units = 400}, {.kind = NN_RELU},
                                 {.kind = NN_DENSE, .units = 10}};
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){600, 1, 1}, mlp, 3, NULL, &e);
    ck_assert_msg(m != NULL, "%s", e.msg);
    nn_model_init(m, 5);
    *calib = (data_set){.n = 32, .shape = {600, 1, 1}, .nclasses = 10};
    calib->xf = kd_malloc(sizeof(float) * 32 * 600);
    nn_rng r = nn_rng_stream(6, NN_STREAM_TEST);
    for (int i = 0; i < 32 * 600; i++)
        calib->xf[i] = nn_rng_normal(&r);
    const compress_qmode modes[3] = {COMPRESS_Q_STATIC8, COMPRESS_Q_INT4, COMPRESS_Q_DYNAMIC8};
    for (int i = 0; i < 3; i++) {
        compress_quant_spec qs = {.mode = modes[i], .per_channel = 1, .calib_batches = 1};
        v[i] = compress_quantize(m, &qs, calib, &e);
        ck_assert_msg(v[i] != NULL, "%s", e.msg);
    }
    compress_prune_spec ps = {.scope = COMPRESS_LAYERWISE, .sparsity = 0.5f};
    compress_sparse_opts all = {.policy = COMPRESS_SPARSE_ALWAYS};
    ck_assert_int_eq(compress_prune_magnitude(m, &ps, NULL, &e), KD_OK);
    v[3] = compress_to_sparse(m, &all, NULL, &e);
    ck_assert_msg(v[3] != NULL, "%s", e.msg);
    return m;
}

START_TEST(test_team_small_layers_alone)
{
    KDT_ISA_BEGIN(_i);
    kd_err e = {0};
    data_set calib;
    nn_model *v[4] = {0}, *m = team_variants(v, &calib);
    nn_team *t = nn_team_new(2, &e);
    ck_assert_msg(t != NULL, "%s", e.msg);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(nn_model_reserve(v[i], 1, &e), KD_OK);
        nn_ctx alone = {.train = 0}, team = {.train = 0, .team = t};
        nn_model_forward(v[i], calib.xf, 1, &alone); /* activations of the layers' inputs */
        for (int li = 0; li < 3; li += 2) {
            nn_layer *l = &v[i]->layers[li];
            ck_assert(l->ops->threaded);
            float want[400], got[400];
            l->ops->forward(l, v[i]->act[li], want, 1, &alone);
            unsigned long before = nn_team_jobs(t);
            l->ops->forward(l, v[i]->act[li], got, 1, &team);
            /* (dense_csr splits batch 1 only through its panels: none on scalar) */
            int split = li == 0 && (i < 3 || compress_panels_supported());
            ck_assert_msg(nn_team_jobs(t) - before == (split ? 1u : 0u),
                          "%s layer %d: %lu team jobs", l->ops->name, li,
                          nn_team_jobs(t) - before);
            ck_assert(memcmp(want, got, (size_t)l->spec.units * sizeof *got) == 0);
        }
    }
    nn_team_free(t);
    for (int i = 0; i < 4; i++)
        nn_model_free(v[i]);
    nn_model_free(m);
    data_set_free(&calib);
}
END_TEST

/* The fused ReLU (nn_ctx.relu, ops->fuses_relu): every threaded kind
 * fuses it (an unfused ReLU after a split layer moves its output between
 * the cores twice: prune90_shared ran 24.9 us at batch 1 against agp90's
 * 17.1 on the same kernels); its forward with relu set equals its forward
 * without, then nn's relu, bit for bit, on the caller alone and split over a
 * team, at batch 1 and 5 (both layers: with and without the int8 clamp);
 * and nn_model_forward, which folds the relu layer in, equals running the
 * three layers one by one.  Kinds: int8, int4, int8-dyn, csr-fp32, shared
 * weights, int2. */
START_TEST(test_team_fused_relu)
{
    KDT_ISA_BEGIN(_i);
    kd_err e = {0};
    int nk;
    const nn_layer_ops *const *kinds = compress_kinds(&nk);
    for (int k = 0; k < nk; k++)
        ck_assert_msg(!kinds[k]->threaded || kinds[k]->fuses_relu, "%s", kinds[k]->name);
    data_set calib;
    enum { NV = 6 };
    nn_model *v[NV] = {0}, *m = team_variants(v, &calib);
    compress_cluster_spec cs = {.clusters = 5};
    compress_quant_spec q2 = {.mode = COMPRESS_Q_INT4, .wbits = 2};
    ck_assert_msg((v[4] = compress_cluster(v[3], &cs, &e)) != NULL, "%s", e.msg);
    ck_assert_msg((v[5] = compress_quantize(m, &q2, NULL, &e)) != NULL, "%s", e.msg);
    nn_team *t = nn_team_new(2, &e);
    ck_assert_msg(t != NULL, "%s", e.msg);
    enum { NB = 5 };
    static float want[NB * 400], got[NB * 400], a1[NB * 400], ref[NB * 10];
    for (int i = 0; i < NV; i++) {
        ck_assert_msg(v[i]->layers[0].ops->fuses_relu, "%s", v[i]->layers[0].ops->name);
        ck_assert_int_eq(nn_model_reserve(v[i], NB, &e), KD_OK);
        for (int n = 1; n <= NB; n += NB - 1)
            for (int ti = 0; ti < 2; ti++)
                for (int li = 0; li < 3; li += 2) {
                    nn_layer *l = &v[i]->layers[li];
                    nn_ctx plain = {.team = ti ? t : NULL}, fused = plain;
                    fused.relu = 1;
                    const float *x = li == 0 ? calib.xf : a1;
                    size_t ny = (size_t)n * l->spec.units;
                    l->ops->forward(l, x, want, n, &plain);
                    for (size_t k = 0; k < ny; k++)
                        want[k] = want[k] > 0 ? want[k] : 0.0f;
                    l->ops->forward(l, x, got, n, &fused);
                    ck_assert_msg(memcmp(want, got, ny * sizeof *got) == 0,
                                  "%s layer %d batch %d team %d", l->ops->name, li, n, ti);
                    if (li == 0)
                        memcpy(a1, want, ny * sizeof *a1);
                }
        /* the whole model: the relu layer folded in, against one by one
         * (OpenBLAS serial, as the model runs it with a team: int2's scalar
         * level multiplies through sgemm, whose threads may round apart) */
        nn_ctx c = {.team = t};
        int blas = nn_blas_serial_begin();
        for (int li = 0; li < 3; li++) {
            nn_layer *l = &v[i]->layers[li];
            l->ops->forward(l, li == 0 ? calib.xf : a1, li == 2 ? ref : a1, NB, &c);
        }
        nn_blas_serial_end(blas);
        const float *y = nn_model_forward(v[i], calib.xf, NB, &c);
        ck_assert_msg(memcmp(ref, y, sizeof ref) == 0, "%s model", v[i]->layers[0].ops->name);
    }
    nn_team_free(t);
    for (int i = 0; i < NV; i++)
        nn_model_free(v[i]);
    nn_model_free(m);
    data_set_free(&calib);
}
END_TEST

Suite *suite_compress_qgemm_team(void)
{
    Suite *s = suite_create("compress_qgemm_team");
    TCase *tc = tcase_create("team");
    tcase_add_test(tc, test_team_vs_ref);
    tcase_add_test(tc, test_team_wakes_sleepers);
    KDT_ISA_LOOP(tc, test_team_dense);
    KDT_ISA_LOOP(tc, test_team_small_layers_alone);
    KDT_ISA_LOOP(tc, test_team_fused_relu);
    suite_add_tcase(s, tc);
    return s;
}
