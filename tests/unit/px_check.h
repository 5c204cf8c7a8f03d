/* The shared main() of the unit tests: one suite, one test case, every test
 * listed once. */
#ifndef PX_TESTS_UNIT_PX_CHECK_H
#define PX_TESTS_UNIT_PX_CHECK_H

#include <check.h>
#include <stdlib.h>

static inline int px_check_run(const char *name, const TTest *const *tests, size_t n)
{
    Suite *s = suite_create(name);
    TCase *tc = tcase_create(name);
    for (size_t i = 0; i < n; i++)
        tcase_add_test(tc, tests[i]);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#define PX_CHECK_MAIN(name, ...)                                                                   \
    int main(void)                                                                                 \
    {                                                                                              \
        const TTest *const tests[] = {__VA_ARGS__};                                                \
        return px_check_run(name, tests, sizeof(tests) / sizeof(tests[0]));                        \
    }

#endif
