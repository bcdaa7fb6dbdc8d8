/* SPDX-License-Identifier: MIT */
/* The one assertion of the C unit tests: counts failures, never aborts. */
#ifndef RILL_TEST_CHECK_H
#define RILL_TEST_CHECK_H
#include <stdio.h>

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* Ends main(): reports and gives the exit status. */
static inline int check_report(void)
{
    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    return failures ? 1 : 0;
}

#endif
