/*
 * testutil.h: what the unit suites share.  Each tests/unit/test_<module>.c
 * defines its suite with FTK_SUITE and gets a main() that runs it in fork
 * mode, so a crash is a failure of one test, not of the run.
 */
#ifndef FTK_TESTUTIL_H
#define FTK_TESTUTIL_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

/* The source tree (tests run from a temporary directory). */
static inline const char *src_path(const char *rel)
{
	static char buf[8][4096];
	static int k;
	const char *src = getenv("SRC");
	char *b = buf[k++ & 7];
	snprintf(b, 4096, "%s/%s", src ? src : ".", rel);
	return b;
}

/* Define main() for a suite made by make_suite(). */
#define FTK_TEST_MAIN(make_suite)                                   \
	int main(void)                                              \
	{                                                           \
		/* a failing check's figures, printed just before its  \
		 * assertion, must reach the log before the fork dies */ \
		setvbuf(stdout, NULL, _IOLBF, 0);                   \
		SRunner *sr = srunner_create(make_suite());         \
		srunner_set_fork_status(sr, CK_FORK);               \
		srunner_run_all(sr, CK_NORMAL);                     \
		int nf = srunner_ntests_failed(sr);                 \
		srunner_free(sr);                                   \
		return nf ? EXIT_FAILURE : EXIT_SUCCESS;            \
	}

#endif
