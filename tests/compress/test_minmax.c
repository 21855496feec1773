/* kernels_minmax (dynamic int8's per-call range): the dispatched kernel at
 * every ISA level and the team split equal to the reference (as numbers) on
 * ragged lengths, with NaN and +-inf among the values (skipped), all of one
 * sign, none finite, and empty input. */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "../../compress/kernels/cpu.h"
#include "../../compress/kernels/kernels.h"
#include "../kdtest.h"

static const size_t lens[] = {0, 1, 7, 15, 16, 17, 100, 1023, 40000, 70001};

/* Values in [-3, 3) + shift, with NaN / inf sprinkled in (every `bad` th). */
static float *values(nn_rng *r, size_t n, float shift, size_t bad)
{
    float *x = malloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = (nn_rng_uniform(r) - 0.5f) * 6.0f + shift;
    for (size_t i = bad / 2; bad && i < n; i += bad)
        x[i] = i % 3 == 0 ? NAN : i % 3 == 1 ? INFINITY : -INFINITY;
    if (n > 9) /* the extremes near the end: the tail loop must see them */
        x[n - 2] = 1000.0f + shift, x[n - 3] = -1000.0f + shift;
    return x;
}

static void check_one(nn_team *t, const float *x, size_t n)
{
    float lr = INFINITY, hr = -INFINITY, lg = INFINITY, hg = -INFINITY;
    kernels_minmax_ref(x, n, &lr, &hr);
    if (t)
        kernels_minmax_team(t, x, n, &lg, &hg);
    else
        kernels_minmax(x, n, &lg, &hg);
    ck_assert_msg(lr == lg && hr == hg, "%s n=%zu team %d: ref [%g, %g] got [%g, %g]",
                  kernels_isa_label(), n, nn_team_size(t), lr, hr, lg, hg);
}

START_TEST(minmax_is_ref)
{
    KDT_ISA_BEGIN(_i);
    nn_rng r = nn_rng_stream(21, NN_STREAM_TEST);
    kd_err e = {0};
    nn_team *teams[3] = {NULL, nn_team_new(2, &e), nn_team_new(3, &e)};
    ck_assert(teams[1] && teams[2]);
    for (size_t t = 0; t < sizeof lens / sizeof *lens; t++)
        for (int shape = 0; shape < 4; shape++) {
            float shift = shape == 1 ? 10.0f : shape == 2 ? -10.0f : 0.0f;
            size_t bad = shape == 3 ? 1 : 13; /* shape 3: nothing finite */
            float *x = values(&r, lens[t], shift, bad);
            for (int k = 0; k < 3; k++)
                check_one(teams[k], x, lens[t]);
            free(x);
        }
    nn_team_free(teams[1]);
    nn_team_free(teams[2]);
}
END_TEST

START_TEST(minmax_avx2_is_ref)
{
    if (!kernels_isa_supported(KD_ISA_AVX2))
        KDT_SKIP("the host has no AVX2");
    nn_rng r = nn_rng_stream(22, NN_STREAM_TEST);
    for (size_t t = 0; t < sizeof lens / sizeof *lens; t++) {
        float *x = values(&r, lens[t], 0.5f, 7);
        float lr = 5.0f, hr = -5.0f, la = 5.0f, ha = -5.0f; /* running from earlier values */
        kernels_minmax_ref(x, lens[t], &lr, &hr);
        kernels_minmax_avx2(x, lens[t], &la, &ha);
        ck_assert_msg(lr == la && hr == ha, "n=%zu", lens[t]);
        free(x);
    }
}
END_TEST

Suite *suite_compress_minmax(void)
{
    Suite *s = suite_create("compress_minmax");
    TCase *tc = tcase_create("minmax");
    KDT_ISA_LOOP(tc, minmax_is_ref);
    tcase_add_test(tc, minmax_avx2_is_ref);
    suite_add_tcase(s, tc);
    return s;
}
