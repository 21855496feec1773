/* The seeded split (deterministic, sizes, nothing lost or unpaired), the
 * input statistics, and batch normalisation against the formula. */
#include <check.h>
#include <math.h>
#include <string.h>

#include "../../data/data.h"
#include "../kdtest.h"

#define SN 101
#define SZ 4 /* features per sample: shape (1, 2, 2) */

/* Sample i has every pixel i (so it can be traced) and label i % 7. */
static void make_u8(data_set *d)
{
    memset(d, 0, sizeof *d);
    d->n = SN;
    d->shape = (nn_shape){1, 2, 2};
    d->nclasses = 7;
    d->x8 = kd_malloc(SN * SZ);
    d->y = kd_malloc(SN);
    for (int i = 0; i < SN; i++) {
        memset(d->x8 + i * SZ, i, SZ);
        d->y[i] = (uint8_t)(i % 7);
    }
}

static void make_f32(data_set *d)
{
    memset(d, 0, sizeof *d);
    d->n = SN;
    d->shape = (nn_shape){SZ, 1, 1};
    d->nclasses = 7;
    d->xf = kd_malloc(SN * SZ * sizeof(float));
    d->y = kd_malloc(SN);
    for (int i = 0; i < SN; i++) {
        for (int j = 0; j < SZ; j++)
            d->xf[i * SZ + j] = (float)i;
        d->y[i] = (uint8_t)(i % 7);
    }
}

static int sample_id(const data_set *d, int i)
{
    return d->x8 ? d->x8[i * SZ] : (int)d->xf[i * SZ];
}

/* Every source sample lands in exactly one part, with its own label. */
static void check_partition(const data_set *tr, const data_set *va)
{
    int seen[SN] = {0};
    const data_set *parts[2] = {tr, va};
    for (int p = 0; p < 2; p++) {
        ck_assert_int_eq(parts[p]->nclasses, 7);
        ck_assert_int_eq(parts[p]->shape.c * parts[p]->shape.h * parts[p]->shape.w, SZ);
        ck_assert_ptr_nonnull(parts[p]->y);
        for (int i = 0; i < parts[p]->n; i++) {
            int id = sample_id(parts[p], i);
            ck_assert_int_lt(id, SN);
            seen[id]++;
            ck_assert_uint_eq(parts[p]->y[i], id % 7);
            if (i > 0) /* each part keeps file order */
                ck_assert_int_lt(sample_id(parts[p], i - 1), id);
        }
    }
    for (int i = 0; i < SN; i++)
        ck_assert_int_eq(seen[i], 1);
}

START_TEST(test_split_u8)
{
    data_set a, b, tr1, va1, tr2, va2;
    kd_err e = {0};
    make_u8(&a);
    make_u8(&b);
    ck_assert_int_eq(data_split(&a, 0.2f, 42, &tr1, &va1, &e), KD_OK);
    ck_assert_int_eq(data_split(&b, 0.2f, 42, &tr2, &va2, &e), KD_OK);
    ck_assert_int_eq(va1.n, 20); /* round(101 * 0.2) */
    ck_assert_int_eq(tr1.n, 81);
    ck_assert_ptr_null(a.x8);
    ck_assert_ptr_null(a.y);
    ck_assert_int_eq(a.n, 0);
    check_partition(&tr1, &va1);
    /* same seed, same split */
    ck_assert_int_eq(va2.n, va1.n);
    ck_assert_mem_eq(va1.x8, va2.x8, (size_t)va1.n * SZ);
    ck_assert_mem_eq(tr1.y, tr2.y, (size_t)tr1.n);
    /* another seed, another split */
    data_set c, tr3, va3;
    make_u8(&c);
    ck_assert_int_eq(data_split(&c, 0.2f, 43, &tr3, &va3, &e), KD_OK);
    ck_assert_int_ne(memcmp(va1.x8, va3.x8, (size_t)va1.n * SZ), 0);
    data_set *all[] = {&tr1, &va1, &tr2, &va2, &tr3, &va3};
    for (int i = 0; i < 6; i++)
        data_set_free(all[i]);
}
END_TEST

START_TEST(test_split_f32)
{
    data_set a, tr, va;
    kd_err e = {0};
    make_f32(&a);
    ck_assert_int_eq(data_split(&a, 0.5f, 7, &tr, &va, &e), KD_OK);
    ck_assert_int_eq(va.n + tr.n, SN);
    ck_assert_ptr_null(va.x8);
    check_partition(&tr, &va);
    data_set_free(&tr);
    data_set_free(&va);
}
END_TEST

START_TEST(test_split_zero)
{
    data_set a, tr, va;
    kd_err e = {0};
    make_u8(&a);
    ck_assert_int_eq(data_split(&a, 0, 1, &tr, &va, &e), KD_OK);
    ck_assert_int_eq(va.n, 0);
    ck_assert_ptr_nonnull(va.x8); /* still "exactly one array" */
    ck_assert_int_eq(tr.n, SN);
    for (int i = 0; i < SN; i++)
        ck_assert_int_eq(sample_id(&tr, i), i);
    data_set_free(&tr);
    data_set_free(&va);
}
END_TEST

START_TEST(test_split_bad)
{
    const float fr[] = {1.0f, -0.1f, NAN, 0.999f};
    for (int k = 0; k < 4; k++) {
        data_set a, tr, va;
        kd_err e = {0};
        make_u8(&a);
        ck_assert_int_eq(data_split(&a, fr[k], 1, &tr, &va, &e), KD_ECONFIG);
        ck_assert_int_eq(a.n, SN); /* untouched on failure */
        ck_assert_ptr_nonnull(a.x8);
        ck_assert_ptr_null(tr.x8);
        ck_assert_ptr_null(va.x8);
        data_set_free(&a);
    }
}
END_TEST

START_TEST(test_split_alloc_fail)
{
    int rc = KD_ENOMEM;
    for (long k = 0; k < 20 && rc != KD_OK; k++) {
        data_set a, tr, va;
        kd_err e = {0};
        make_u8(&a);
        kd_alloc_fail_after(k);
        rc = data_split(&a, 0.3f, 5, &tr, &va, &e);
        kd_alloc_fail_after(-1);
        if (rc == KD_OK) {
            check_partition(&tr, &va);
            data_set_free(&tr);
            data_set_free(&va);
        } else {
            ck_assert_int_eq(rc, KD_ENOMEM);
            ck_assert_int_eq(a.n, SN);
            ck_assert_ptr_null(tr.y);
            ck_assert_ptr_null(va.y);
            data_set_free(&a);
        }
    }
    ck_assert_int_eq(rc, KD_OK);
}
END_TEST

/* ---- stats and batches ----------------------------------------------------- */

START_TEST(test_stats)
{
    data_set d = {.n = 2, .shape = {1, 1, 2}, .nclasses = 2};
    uint8_t px[4] = {0, 255, 255, 0};
    d.x8 = px;
    float m, s;
    data_stats(&d, &m, &s);
    ck_assert_float_eq_tol(m, 0.5f, 1e-7f);
    ck_assert_float_eq_tol(s, 0.5f, 1e-7f);

    float fx[4] = {1, 2, 3, 4};
    data_set f = {.n = 4, .shape = {1, 1, 1}, .nclasses = 2, .xf = fx};
    data_stats(&f, &m, &s);
    ck_assert_float_eq_tol(m, 2.5f, 1e-6f);
    ck_assert_float_eq_tol(s, sqrtf(1.25f), 1e-6f);

    uint8_t flat[4] = {9, 9, 9, 9}; /* constant: std 1, never 0 */
    d.x8 = flat;
    data_stats(&d, &m, &s);
    ck_assert_float_eq_tol(m, 9 / 255.0f, 1e-7f);
    ck_assert_float_eq(s, 1.0f);
}
END_TEST

START_TEST(test_batch_u8)
{
    /* one sample per byte value, so the whole lookup table is checked */
    static uint8_t px[256];
    static uint8_t y[256];
    for (int i = 0; i < 256; i++) {
        px[i] = (uint8_t)i;
        y[i] = (uint8_t)(i % 10);
    }
    data_set d = {.n = 256, .shape = {1, 1, 1}, .nclasses = 10, .x8 = px, .y = y};
    const float mean = 0.2860f, std = 0.3530f;
    int idx[256];
    for (int i = 0; i < 256; i++)
        idx[i] = 255 - i;
    float out[256];
    uint8_t lab[256];
    data_batch(&d, idx, 256, mean, std, out, lab);
    for (int i = 0; i < 256; i++) {
        double want = ((255 - i) / 255.0 - mean) / std;
        ck_assert_msg(fabs(out[i] - want) < 1e-5, "value %d: %g vs %g", 255 - i, out[i], want);
        ck_assert_uint_eq(lab[i], (255 - i) % 10);
    }
    data_batch(&d, idx, 3, mean, std, out, NULL); /* labels optional */
}
END_TEST

START_TEST(test_batch_f32)
{
    data_set d;
    make_f32(&d);
    float mean, std;
    data_stats(&d, &mean, &std);
    ck_assert_float_eq_tol(mean, 50.0f, 1e-4f);
    const int idx[3] = {100, 0, 37};
    float out[3 * SZ];
    uint8_t lab[3];
    data_batch(&d, idx, 3, mean, std, out, lab);
    for (int i = 0; i < 3; i++) {
        ck_assert_uint_eq(lab[i], idx[i] % 7);
        for (int j = 0; j < SZ; j++)
            ck_assert_float_eq_tol(out[i * SZ + j], (idx[i] - mean) / std, 1e-5f);
    }
    data_set_free(&d);
}
END_TEST

Suite *suite_data_split(void)
{
    Suite *s = suite_create("data_split");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_split_u8);
    tcase_add_test(tc, test_split_f32);
    tcase_add_test(tc, test_split_zero);
    tcase_add_test(tc, test_split_bad);
    tcase_add_test(tc, test_split_alloc_fail);
    tcase_add_test(tc, test_stats);
    tcase_add_test(tc, test_batch_u8);
    tcase_add_test(tc, test_batch_f32);
    suite_add_tcase(s, tc);
    return s;
}
