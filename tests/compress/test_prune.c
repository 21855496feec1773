/* Magnitude pruning: exact sparsity layer-wise and global (with many
 * tied magnitudes), blocks of rows (whole blocks, ragged last blocks, the
 * mean-square threshold, gradual), overrides by name and glob, bad input, masks that survive
 * fine-tuning, the AGP schedule and the gradual driver, sensitivity analysis
 * and its CSV tables. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../compress/compress.h"
#include "../kdtest.h"

/* in 6 -> dense 20 -> relu -> dense 12 -> relu -> dense 3 */
static nn_model *tiny(uint64_t seed, int ties)
{
    const nn_layer_spec s[] = {{.kind = NN_DENSE, .units = 20}, {.kind = NN_RELU},
                               {.kind = NN_DENSE, .units = 12}, {.kind = NN_RELU},
                               {.kind = NN_DENSE, .units = 3}};
    kd_err e = {0};
    nn_model *m = nn_model_new((nn_shape){6, 1, 1}, s, 5, NULL, &e);
    ck_assert_msg(m != NULL, "%s", e.msg);
    nn_model_init(m, seed);
    if (ties) /* a handful of non-zero magnitudes: the threshold falls inside a tie */
        for (size_t i = 0; i < m->nparams; i++)
            m->params[i] = copysignf(floorf(fabsf(m->params[i]) * 4 + 1) / 4, m->params[i]);
    return m;
}

static size_t zeros(const float *w, size_t n)
{
    size_t z = 0;
    for (size_t i = 0; i < n; i++)
        z += w[i] == 0.0f;
    return z;
}

static size_t round_count(double s, size_t n) { return (size_t)floor(s * (double)n + 0.5); }

START_TEST(test_layerwise_exact)
{
    const float sp[] = {0.0f, 0.1f, 0.5f, 0.73f, 0.9f, 0.99f};
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 6; k++) {
            nn_model *m = tiny(1, t);
            kd_err e = {0};
            compress_prune_spec ps = {.scope = COMPRESS_LAYERWISE, .sparsity = sp[k]};
            ck_assert_int_eq(compress_prune_magnitude(m, &ps, NULL, &e), KD_OK);
            for (int i = 0; i < m->nlayers; i++) {
                nn_layer *l = &m->layers[i];
                if (l->nw)
                    ck_assert_uint_eq(zeros(l->w, l->nw), round_count(sp[k], l->nw));
            }
            nn_model_free(m);
        }
}
END_TEST

START_TEST(test_global_exact_and_threshold)
{
    for (int t = 0; t < 2; t++) {
        nn_model *m = tiny(2, t), *orig = tiny(2, t);
        kd_err e = {0};
        compress_prune_spec ps = {.scope = COMPRESS_GLOBAL, .sparsity = 0.8f};
        ck_assert_int_eq(compress_prune_magnitude(m, &ps, NULL, &e), KD_OK);
        size_t total = 0, z = 0;
        float max_cut = 0, min_kept = INFINITY;
        for (int i = 0; i < m->nlayers; i++) {
            nn_layer *l = &m->layers[i], *o = &orig->layers[i];
            total += l->nw;
            z += zeros(l->w, l->nw);
            for (size_t j = 0; j < l->nw; j++) {
                float a = fabsf(o->w[j]);
                if (l->w[j] == 0.0f)
                    max_cut = a > max_cut ? a : max_cut;
                else
                    min_kept = a < min_kept ? a : min_kept;
            }
        }
        ck_assert_uint_eq(z, round_count(0.8, total));
        ck_assert(max_cut <= min_kept);
        /* biases are never pruned */
        for (size_t j = 0; j < m->layers[0].nb; j++)
            ck_assert(m->layers[0].b[j] == orig->layers[0].b[j]);
        nn_model_free(m);
        nn_model_free(orig);
    }
}
END_TEST

START_TEST(test_overrides)
{
    nn_model *m = tiny(3, 0);
    kd_err e = {0};
    compress_override ov[] = {{"dense*", 0.5f}, {"dense3", 0.0f}};
    compress_prune_spec ps = {.scope = COMPRESS_GLOBAL, .sparsity = 0.9f, .overrides = ov,
                              .noverrides = 2};
    ck_assert(compress_layer_sparsity(m, &ps, 4) == 0.0f); /* last match wins */
    ck_assert(compress_layer_sparsity(m, &ps, 0) == 0.5f);
    ck_assert(compress_layer_sparsity(m, &ps, 1) == -1.0f); /* relu */
    ck_assert_int_eq(compress_prune_magnitude(m, &ps, NULL, &e), KD_OK);
    ck_assert_uint_eq(zeros(m->layers[0].w, 120), 60);
    ck_assert_uint_eq(zeros(m->layers[2].w, 240), 120);
    ck_assert_uint_eq(zeros(m->layers[4].w, 36), 0);
    nn_model_free(m);
}
END_TEST

START_TEST(test_bad_input)
{
    nn_model *m = tiny(4, 0);
    kd_err e = {0};
    compress_override ov = {"conv*", 0.5f};
    compress_prune_spec ps = {.sparsity = 0.5f, .overrides = &ov, .noverrides = 1};
    ck_assert_int_eq(compress_prune_magnitude(m, &ps, NULL, &e), KD_ECONFIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "conv*"));
    ck_assert_uint_eq(nn_model_nonzero_params(m), nn_model_params(m, NULL) -
                                                       zeros(m->params, m->nparams));
    snprintf(ov.pattern, sizeof ov.pattern, "relu1"); /* matches, but not prunable */
    ck_assert_int_eq(compress_prune_check(m, &ps, &e), KD_ECONFIG);
    compress_prune_spec bad = {.sparsity = 1.0f};
    ck_assert_int_eq(compress_prune_magnitude(m, &bad, NULL, &e), KD_ECONFIG);
    bad.sparsity = -0.1f;
    ck_assert_int_eq(compress_prune_check(m, &bad, &e), KD_ECONFIG);
    bad.sparsity = NAN;
    ck_assert_int_eq(compress_prune_check(m, &bad, &e), KD_ECONFIG);
    nn_model_free(m);
}
END_TEST


/* Layer l's blocks of `block` rows in one column: each all zero or all
 * non-zero (the model has no zero weight to begin with); returns how many
 * are zero and checks every zeroed block's mean square in orig is <= every
 * kept one's (the threshold). */
static size_t zero_blocks(const nn_layer *l, const nn_layer *orig, int block)
{
    int rows = (int)l->nb, cols = (int)(l->nw / l->nb);
    size_t z = 0;
    double max_cut = 0, min_kept = INFINITY;
    for (int r0 = 0; r0 < rows; r0 += block)
        for (int c = 0; c < cols; c++) {
            int h = rows - r0 < block ? rows - r0 : block, nz = 0;
            double ms = 0;
            for (int r = r0; r < r0 + h; r++) {
                nz += l->w[(size_t)r * cols + c] != 0.0f;
                ms += (double)orig->w[(size_t)r * cols + c] * orig->w[(size_t)r * cols + c];
            }
            ms /= h;
            ck_assert_msg(nz == 0 || nz == h, "a block of %d rows with %d non-zeros", h, nz);
            z += nz == 0;
            if (nz == 0)
                max_cut = ms > max_cut ? ms : max_cut;
            else
                min_kept = ms < min_kept ? ms : min_kept;
        }
    ck_assert(max_cut <= min_kept * (1 + 1e-6));
    return z;
}

static size_t nblocks(const nn_layer *l, int block)
{
    return (l->nb + (size_t)block - 1) / (size_t)block * (l->nw / l->nb);
}

START_TEST(test_blocks)
{
    /* rows 20, 12, 3: ragged last blocks of 4, 4 (block 8) and a layer
     * shorter than one block */
    const int blocks[] = {2, 4, 8, 16};
    for (int t = 0; t < 2; t++)
        for (int bi = 0; bi < 4; bi++) {
            int bl = blocks[bi];
            nn_model *m = tiny(11, t), *orig = tiny(11, t);
            kd_err e = {0};
            compress_mask *k = compress_mask_new(m, &e);
            compress_prune_spec ps = {.scope = COMPRESS_LAYERWISE, .sparsity = 0.6f, .block = bl};
            ck_assert_int_eq(compress_prune_magnitude(m, &ps, k, &e), KD_OK);
            for (int i = 0; i < m->nlayers; i++) {
                nn_layer *l = &m->layers[i];
                if (!l->nw)
                    continue;
                ck_assert_uint_eq(zero_blocks(l, &orig->layers[i], bl),
                                  round_count(0.6, nblocks(l, bl)));
            }
            for (int i = 0; i < m->nlayers; i++) /* the mask: exactly the zeroed weights */
                for (size_t j = 0; j < m->layers[i].nw; j++)
                    ck_assert_int_eq(k->keep[(size_t)(m->layers[i].w - m->params) + j],
                                     m->layers[i].w[j] != 0.0f);
            /* global: one threshold over the blocks of every layer but the
             * overridden one */
            nn_model_free(m);
            m = tiny(11, t);
            compress_override ov = {"dense3", 0.3f};
            compress_prune_spec pg = {.scope = COMPRESS_GLOBAL, .sparsity = 0.75f, .block = bl,
                                      .overrides = &ov, .noverrides = 1};
            ck_assert_int_eq(compress_prune_magnitude(m, &pg, NULL, &e), KD_OK);
            ck_assert_uint_eq(zero_blocks(&m->layers[4], &orig->layers[4], bl),
                              round_count(0.3, nblocks(&m->layers[4], bl)));
            size_t z = zero_blocks(&m->layers[0], &orig->layers[0], bl) +
                       zero_blocks(&m->layers[2], &orig->layers[2], bl);
            ck_assert_uint_eq(z, round_count(0.75, nblocks(&m->layers[0], bl) +
                                                       nblocks(&m->layers[2], bl)));
            compress_mask_free(k);
            nn_model_free(m);
            nn_model_free(orig);
        }
    /* block 1 is single weights, the same zeros as no block at all */
    nn_model *a = tiny(12, 1), *b = tiny(12, 1);
    kd_err e = {0};
    compress_prune_spec p0 = {.sparsity = 0.5f}, p1 = {.sparsity = 0.5f, .block = 1};
    ck_assert_int_eq(compress_prune_magnitude(a, &p0, NULL, &e), KD_OK);
    ck_assert_int_eq(compress_prune_magnitude(b, &p1, NULL, &e), KD_OK);
    ck_assert(memcmp(a->params, b->params, a->nparams * sizeof *a->params) == 0);
    compress_prune_spec bad = {.sparsity = 0.5f, .block = -1};
    ck_assert_int_eq(compress_prune_magnitude(a, &bad, NULL, &e), KD_ECONFIG);
    bad.block = COMPRESS_BLOCK_MAX + 1;
    ck_assert_int_eq(compress_prune_check(a, &bad, &e), KD_ECONFIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "block"));
    nn_model_free(a);
    nn_model_free(b);
}
END_TEST

START_TEST(test_agp_schedule)
{
    ck_assert(fabsf(compress_agp(0.0f, 0.9f, 0, 10) - 0.0f) < 1e-7f);
    ck_assert(fabsf(compress_agp(0.0f, 0.9f, 10, 10) - 0.9f) < 1e-7f);
    ck_assert(fabsf(compress_agp(0.0f, 0.9f, 5, 10) - 0.7875f) < 1e-6f);
    ck_assert(fabsf(compress_agp(0.5f, 0.9f, 2, 4) - 0.85f) < 1e-6f);
    ck_assert(fabsf(compress_agp(0.0f, 0.9f, 20, 10) - 0.9f) < 1e-7f);
    ck_assert(fabsf(compress_agp(0.0f, 0.9f, -3, 10) - 0.0f) < 1e-7f);
    ck_assert(fabsf(compress_agp(0.2f, 0.9f, 0, 0) - 0.9f) < 1e-7f);
    float prev = -1; /* non-decreasing */
    for (int t = 0; t <= 10; t++) {
        float s = compress_agp(0.0f, 0.95f, t, 10);
        ck_assert(s >= prev);
        prev = s;
    }
}
END_TEST

/* 96 samples of 6 features; the label is the argmax of a fixed projection */
static data_set synthetic(int n, uint64_t seed)
{
    data_set d = {.n = n, .shape = {6, 1, 1}, .nclasses = 3};
    d.xf = malloc((size_t)n * 6 * sizeof *d.xf);
    d.y = malloc((size_t)n);
    nn_rng r = nn_rng_stream(seed, NN_STREAM_TEST);
    for (int i = 0; i < n; i++) {
        float *x = d.xf + (size_t)i * 6, s[3] = {0};
        for (int j = 0; j < 6; j++) {
            x[j] = nn_rng_normal(&r);
            s[j % 3] += x[j] * (j < 3 ? 1.0f : -0.5f);
        }
        d.y[i] = (uint8_t)(s[0] > s[1] ? (s[0] > s[2] ? 0 : 2) : (s[1] > s[2] ? 1 : 2));
    }
    return d;
}

static int mask_hook(void *ctx, nn_model *m, float lr, kd_err *e)
{
    (void)lr;
    (void)e;
    compress_mask_apply(ctx, m);
    return KD_OK;
}

START_TEST(test_mask_survives_finetuning)
{
    nn_model *m = tiny(5, 0);
    data_set d = synthetic(96, 1);
    kd_err e = {0};
    compress_mask *k = compress_mask_new(m, &e);
    compress_prune_spec ps = {.scope = COMPRESS_GLOBAL, .sparsity = 0.6f};
    ck_assert_int_eq(compress_prune_magnitude(m, &ps, k, &e), KD_OK);
    size_t pruned = 0;
    for (size_t i = 0; i < k->n; i++)
        pruned += !k->keep[i];
    ck_assert_uint_eq(pruned, round_count(0.6, 120 + 240 + 36));
    compress_mask *c = compress_mask_copy(k, &e); /* its own bytes, the same */
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(c->n, k->n);
    ck_assert_ptr_ne(c->keep, k->keep);
    ck_assert(!memcmp(c->keep, k->keep, k->n));
    compress_mask_free(c);
    float *before = malloc(m->nparams * sizeof *before);
    memcpy(before, m->params, m->nparams * sizeof *before);
    train_opts o = {.epochs = 3, .batch_size = 16,
                    .opt = {.kind = NN_OPT_SGD, .lr = 0.05f, .momentum = 0.9f,
                            .weight_decay = 1e-4f}, .seed = 1};
    train_state st;
    ck_assert_int_eq(train_state_init(&st, m, &o, &e), KD_OK);
    train_hooks h = {.quiet = 1, .on_step = mask_hook, .step_ctx = k};
    ck_assert_int_eq(train_fit(&st, &o, &d, NULL, &h, &e), KD_OK);
    size_t changed = 0;
    for (size_t i = 0; i < m->nparams; i++) {
        if (!k->keep[i]) /* +0 exactly: passes shared between variants put back 0.0f */
            ck_assert(m->params[i] == 0.0f && !signbit(m->params[i]));
        changed += m->params[i] != before[i];
    }
    ck_assert(changed > m->nparams / 4); /* it did train */
    train_state_free(&st);
    free(before);
    compress_mask_free(k);
    data_set_free(&d);
    nn_model_free(m);
}
END_TEST

static int hook_calls(void *ctx, nn_model *m, float lr, kd_err *e)
{
    (void)m;
    (void)lr;
    (void)e;
    ++*(int *)ctx;
    return KD_OK;
}

START_TEST(test_gradual)
{
    nn_model *m = tiny(6, 0);
    data_set d = synthetic(96, 2);
    kd_err e = {0};
    compress_mask *k = compress_mask_new(m, &e);
    compress_override ov = {"dense3", 0.3f};
    compress_agp_spec g = {.prune = {.scope = COMPRESS_GLOBAL, .sparsity = 0.85f,
                                     .overrides = &ov, .noverrides = 1},
                           .prune_epochs = 2, .every = 2};
    train_opts o = {.epochs = 3, .batch_size = 16,
                    .opt = {.kind = NN_OPT_SGD, .lr = 0.05f, .momentum = 0.9f}, .seed = 2};
    int calls = 0;
    train_hooks h = {.quiet = 1, .on_step = hook_calls, .step_ctx = &calls};
    ck_assert_int_eq(compress_prune_gradual(m, &g, &o, &d, NULL, &h, k, &e), KD_OK);
    ck_assert_int_eq(calls, 3 * 6); /* the caller's hook still runs every step */
    ck_assert_uint_eq(zeros(m->layers[4].w, 36), round_count(0.3, 36));
    ck_assert_uint_eq(zeros(m->layers[0].w, 120) + zeros(m->layers[2].w, 240),
                      round_count(0.85, 360));
    for (size_t i = 0; i < k->n; i++)
        if (!k->keep[i])
            ck_assert(m->params[i] == 0.0f);
    /* blocks of 4 rows: whole blocks at every re-prune, so at the end (the
     * layer against itself: only the structure and the counts) */
    nn_model *mb = tiny(6, 0);
    g.prune.block = 4;
    ck_assert_int_eq(compress_prune_gradual(mb, &g, &o, &d, NULL, NULL, NULL, &e), KD_OK);
    nn_layer *L = mb->layers;
    ck_assert_uint_eq(zero_blocks(&L[4], &L[4], 4), round_count(0.3, nblocks(&L[4], 4)));
    ck_assert_uint_eq(zero_blocks(&L[0], &L[0], 4) + zero_blocks(&L[2], &L[2], 4),
                      round_count(0.85, nblocks(&L[0], 4) + nblocks(&L[2], 4)));
    nn_model_free(mb);
    g.prune.block = 0;
    g.prune_epochs = 4; /* longer than the fine-tuning */
    ck_assert_int_eq(compress_prune_gradual(m, &g, &o, &d, NULL, NULL, k, &e), KD_ECONFIG);
    compress_mask_free(k);
    data_set_free(&d);
    nn_model_free(m);
}
END_TEST

static void read_first_line(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(buf, (int)n, f));
    fclose(f);
}

START_TEST(test_sensitivity_tables)
{
    nn_model *m = tiny(7, 0);
    data_set d = synthetic(64, 3);
    kd_err e = {0};
    const float sp[] = {0.0f, 0.5f, 0.95f};
    compress_sens_row *rows;
    int n;
    ck_assert_int_eq(compress_sensitivity(m, &d, sp, 3, &rows, &n, &e), KD_OK);
    ck_assert_int_eq(n, 9);
    double base;
    train_evaluate(m, &d, 32, NULL, &base, &e);
    ck_assert_str_eq(rows[3].layer, "dense2");
    ck_assert(rows[3].accuracy == base && rows[5].sparsity == 0.95f);
    char dir[256], path[512], line[128];
    kdt_tmpdir(dir, sizeof dir);
    ck_assert_int_eq(compress_write_sensitivity_csv(dir, rows, n, &e), KD_OK);
    snprintf(path, sizeof path, "%s/sensitivity.csv", dir);
    read_first_line(path, line, sizeof line);
    ck_assert_str_eq(line, "layer,sparsity,accuracy\n");
    const nn_model *models[] = {m};
    const char *names[] = {"fp32"};
    ck_assert_int_eq(compress_write_sparsity_csv(dir, names, models, 1, &e), KD_OK);
    snprintf(path, sizeof path, "%s/sparsity.csv", dir);
    read_first_line(path, line, sizeof line);
    ck_assert_str_eq(line, "variant,layer,params,nonzero\n");
    const float bad[] = {1.5f};
    kd_free(rows);
    ck_assert_int_eq(compress_sensitivity(m, &d, bad, 1, &rows, &n, &e), KD_ECONFIG);
    data_set_free(&d);
    nn_model_free(m);
}
END_TEST

Suite *suite_compress_prune(void)
{
    Suite *s = suite_create("compress_prune");
    TCase *t = tcase_create("prune");
    tcase_add_test(t, test_layerwise_exact);
    tcase_add_test(t, test_global_exact_and_threshold);
    tcase_add_test(t, test_overrides);
    tcase_add_test(t, test_blocks);
    tcase_add_test(t, test_bad_input);
    tcase_add_test(t, test_agp_schedule);
    tcase_add_test(t, test_mask_survives_finetuning);
    tcase_add_test(t, test_gradual);
    tcase_add_test(t, test_sensitivity_tables);
    suite_add_tcase(s, t);
    return s;
}
