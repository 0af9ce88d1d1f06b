#ifndef TIDE_CHECK_H
#define TIDE_CHECK_H
/* Tiny unit-test helpers.  Failures are printed and counted rather than
 * aborting, so one run shows every broken expectation; each macro also
 * yields whether it passed, so a test can print context on failure. */
#include <math.h>
#include <stdio.h>

static int check_failures; /* one per test binary; tests are single-threaded */

static inline int check_fail_(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", file, line, what);
    check_failures++;
    return 0;
}

#define CHECK(cond) ((cond) ? 1 : check_fail_(__FILE__, __LINE__, #cond))

static inline int check_near_(double a, double b, double rel, const char *file, int line,
                              const char *what)
{
    if (fabs(a - b) <= rel * fmax(fabs(a), fabs(b)))
        return 1;
    fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s (%.17g vs %.17g, rel %g)\n", file, line,
            what, a, b, rel);
    check_failures++;
    return 0;
}

#define CHECK_NEAR(a, b, rel) check_near_((a), (b), (rel), __FILE__, __LINE__, #a ", " #b)

static inline int check_report(const char *name)
{
    if (check_failures)
        fprintf(stderr, "%s: %d check(s) failed\n", name, check_failures);
    else
        printf("%s: ok\n", name);
    return check_failures != 0;
}

#endif
