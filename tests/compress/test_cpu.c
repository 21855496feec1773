/* The CPU probe: level names, the KD_ISA/forced cap, and the per-level loop
 * that every kernel test uses. */
#include <stdlib.h>
#include <string.h>

#include "../../compress/kernels/kernels.h"
#include "../kdtest.h"

START_TEST(names_round_trip)
{
    for (int i = 0; i < KD_ISA_N; i++) {
        kd_isa l = KD_ISA_N;
        ck_assert_int_eq(kernels_isa_parse(kernels_isa_name((kd_isa)i), &l), 0);
        ck_assert_int_eq(l, i);
    }
    kd_isa l;
    ck_assert_int_eq(kernels_isa_parse("avx3", &l), -1);
    ck_assert_int_eq(kernels_isa_parse("", &l), -1);
    ck_assert_str_eq(kernels_isa_name(KD_ISA_N), "?");
}
END_TEST

START_TEST(force_caps_and_restores)
{
    kd_isa host = kernels_isa_host();
    ck_assert(kernels_isa() <= host);
    kd_isa before = kernels_isa_force(KD_ISA_SCALAR);
    ck_assert_int_eq(kernels_isa(), KD_ISA_SCALAR);
    ck_assert_str_eq(kernels_isa_label(), "scalar");
    ck_assert(!kernels_has_vnni512() && !kernels_has_avxvnni());
    ck_assert_int_eq(kernels_isa_force(KD_ISA_AVX512), KD_ISA_SCALAR);
    ck_assert(kernels_isa() <= host); /* a cap above the host is the host */
    kernels_isa_force(before);
}
END_TEST

/* The loop the kernel tests use: each level the host has runs with exactly
 * that level in force; the others are counted as skipped. */
START_TEST(loop_forces_each_level)
{
    KDT_ISA_BEGIN(_i);
    ck_assert_int_eq(kernels_isa(), _i);
    ck_assert(strncmp(kernels_isa_label(), kernels_isa_name((kd_isa)_i),
                      strlen(kernels_isa_name((kd_isa)_i))) == 0);
}
END_TEST

/* Every dispatch reads the probe: under a cap no kernel above it is chosen
 * (the int8 GEMM's best kernel; the CSR panels need avx2 at least). */
START_TEST(cap_takes_paths_away)
{
    kd_isa before = kernels_isa_force(KD_ISA_AVX2);
    ck_assert(!qgemm_isa_supported(QGEMM_VNNI512));
    ck_assert(qgemm_isa_best() != QGEMM_VNNI512);
    if (kernels_isa() == KD_ISA_AVX2) { /* the host has it and KD_ISA allows it */
        ck_assert(qgemm_isa_supported(QGEMM_AVX2));
        ck_assert(compress_panels_supported()); /* the 8-row AVX2 panels */
    }
    kernels_isa_force(KD_ISA_SCALAR);
    ck_assert(!compress_panels_supported());
    ck_assert_int_eq(qgemm_isa_best(), QGEMM_SCALAR);
    for (int i = 1; i < QGEMM_NISA; i++)
        ck_assert(!qgemm_isa_supported((qgemm_isa)i));
    ck_assert(!compress_panels_supported());
    kernels_isa_force(KD_ISA_N);
    if (kernels_isa() >= KD_ISA_AVX512)
        ck_assert(compress_panels_supported());
    kernels_isa_force(before);
}
END_TEST

Suite *suite_compress_cpu(void)
{
    Suite *s = suite_create("compress_cpu");
    TCase *tc = tcase_create("cpu");
    tcase_add_test(tc, names_round_trip);
    tcase_add_test(tc, force_caps_and_restores);
    KDT_ISA_LOOP(tc, loop_forces_each_level);
    tcase_add_test(tc, cap_takes_paths_away);
    suite_add_tcase(s, tc);
    return s;
}
