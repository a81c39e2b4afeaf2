#pragma once
// A minimal unit-test harness: CHECK* record failures with file:line and go on;
// check_summary() prints "N passed, N failed" and returns the process exit status.
#include <math.h>
#include <stdio.h>
#include <string.h>

static int check_passed, check_failed;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (cond) {                                                                        \
            check_passed++;                                                                \
        } else {                                                                           \
            check_failed++;                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);       \
        }                                                                                  \
    } while (0)

#define CHECK_INT(actual, expected)                                                        \
    do {                                                                                   \
        long long check_a_ = (long long)(actual), check_e_ = (long long)(expected);        \
        if (check_a_ == check_e_) {                                                        \
            check_passed++;                                                                \
        } else {                                                                           \
            check_failed++;                                                                \
            fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__,      \
                    #actual, check_a_, check_e_);                                          \
        }                                                                                  \
    } while (0)

#define CHECK_STR(actual, expected)                                                        \
    do {                                                                                   \
        const char *check_a_ = (actual), *check_e_ = (expected);                           \
        if (check_a_ && check_e_ && strcmp(check_a_, check_e_) == 0) {                     \
            check_passed++;                                                                \
        } else {                                                                           \
            check_failed++;                                                                \
            fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__,  \
                    #actual, check_a_ ? check_a_ : "(null)", check_e_ ? check_e_ : "(null)"); \
        }                                                                                  \
    } while (0)

// |actual - expected| <= atol + rtol * |expected|
#define CHECK_CLOSE(actual, expected, atol, rtol)                                          \
    do {                                                                                   \
        double check_a_ = (double)(actual), check_e_ = (double)(expected);                 \
        if (fabs(check_a_ - check_e_) <= (atol) + (rtol) * fabs(check_e_)) {               \
            check_passed++;                                                                \
        } else {                                                                           \
            check_failed++;                                                                \
            fprintf(stderr, "%s:%d: %s == %.9g, expected %.9g\n", __FILE__, __LINE__,      \
                    #actual, check_a_, check_e_);                                          \
        }                                                                                  \
    } while (0)

static inline int check_summary(void) {
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}
