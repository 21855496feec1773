/* The Check runner: every suite defined under tests/ (listed by the Makefile
 * in suites.inc).  CK_RUN_SUITE=name runs one suite (Check's own variable).  The last line
 * counts passed, failed and skipped tests (kdtest.h's KDT_SKIP); a run in which no test
 * ran (a misspelt suite name) fails with exit 2. */
#include <check.h>
#include <stdio.h>
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
    int failed = srunner_ntests_failed(sr), run = srunner_ntests_run(sr);
    kdt_log_summary(run, failed);
    srunner_free(sr);
    if (run == 0) { /* a misspelt CK_RUN_SUITE / CK_RUN_CASE ran nothing: not a pass */
        const char *name = getenv("CK_RUN_SUITE") ? getenv("CK_RUN_SUITE") : "";
        fprintf(stderr, "kdtest: no test ran (CK_RUN_SUITE=%s names no suite?)\n", name);
        return 2;
    }
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
