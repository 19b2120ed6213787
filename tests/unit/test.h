/* test.h — the minimal unit-test harness: CHECK counts, a summary line.
 *
 * Each tests/unit/test_*.c is its own program: it calls CHECK/CHECK_EQ_* in
 * test functions run from main, and ends with TEST_DONE(), which prints
 * "<file>: N passed, N failed" and exits non-zero on any failure.
 * Threads: the counters are not atomic; call CHECK from the main thread.
 */
#ifndef PM_TEST_H
#define PM_TEST_H

#include <stdio.h>
#include <string.h>

static int t_passed, t_failed;

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (cond) {                                                    \
			t_passed++;                                            \
		} else {                                                       \
			t_failed++;                                            \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, \
				__LINE__, #cond);                              \
		}                                                              \
	} while (0)

#define CHECK_STR(a, b)                                                        \
	do {                                                                   \
		const char *a_ = (a), *b_ = (b);                               \
		if (a_ && b_ && strcmp(a_, b_) == 0) {                         \
			t_passed++;                                            \
		} else {                                                       \
			t_failed++;                                            \
			fprintf(stderr, "%s:%d: %s = \"%s\", want \"%s\"\n",   \
				__FILE__, __LINE__, #a, a_ ? a_ : "(null)",    \
				b_ ? b_ : "(null)");                           \
		}                                                              \
	} while (0)

#define CHECK_INT(a, b)                                                        \
	do {                                                                   \
		long long a_ = (long long)(a), b_ = (long long)(b);            \
		if (a_ == b_) {                                                \
			t_passed++;                                            \
		} else {                                                       \
			t_failed++;                                            \
			fprintf(stderr, "%s:%d: %s = %lld, want %lld\n",       \
				__FILE__, __LINE__, #a, a_, b_);               \
		}                                                              \
	} while (0)

#define TEST_DONE()                                                            \
	do {                                                                   \
		printf("%s: %d passed, %d failed\n", __FILE__, t_passed,       \
		       t_failed);                                              \
		return t_failed ? 1 : 0;                                       \
	} while (0)

#endif
