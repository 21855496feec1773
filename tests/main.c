/* The Check runner: every suite defined under tests/ (listed by the Makefile
 * in suites.inc).  CK_RUN_SUITE=name runs one suite (Check's own variable).  The last line
 * counts passed, failed and skipped tests (kdtest.h's KDT_SKIP). */
#include <check.h>
#include <stdlib.h>

#include "kdtest.h"

#define KD_SUITE(fn) Suite *fn(void);
#include "suites.inc"
#undef KD_SUITE

int main(void)
{
    kdt_log_open();
    SRunner *sr = srunner_create(NULL);
#define KD_SUITE(fn) srunner_add_suite(sr, fn());
#include "suites.inc"
#undef KD_SUITE
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    kdt_log_summary(srunner_ntests_run(sr), failed);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
