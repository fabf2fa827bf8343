/* testutil.h — shared by the CUnit suites: run the registry, report, exit
 * non-zero on any failure; small helpers for comparing arrays. */
#ifndef OPD_TESTUTIL_H
#define OPD_TESTUTIL_H

#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Run every registered suite verbosely; the process exit code is the
 * number of failures (capped), so the automake harness sees FAIL. */
static inline int opd_test_run(void) {
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned fails = CU_get_number_of_failures() + CU_get_number_of_suites_failed();
    unsigned run = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    if (run == 0) {
        fprintf(stderr, "no test ran\n");
        return 1;
    }
    return fails ? 1 : 0;
}

/* Adds a suite with the given NULL-terminated list of (name, fn) pairs. */
typedef struct { const char *name; void (*fn)(void); } opd_test_case;
static inline void opd_test_suite(const char *name, const opd_test_case *cases) {
    CU_pSuite s = CU_add_suite(name, NULL, NULL);
    if (!s) { fprintf(stderr, "CU_add_suite failed\n"); exit(2); }
    for (int i = 0; cases[i].name; i++)
        if (!CU_add_test(s, cases[i].name, cases[i].fn)) { fprintf(stderr, "CU_add_test failed\n"); exit(2); }
}

/* max |a - b| over n */
static inline double opd_max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || isnan(d)) m = isnan(d) ? INFINITY : d;
    }
    return m;
}

#endif
