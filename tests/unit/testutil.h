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

/*
 * The source tree: $SRC when set (tests/run.sh sets it and runs each suite in
 * a temporary directory), else the tree the binary was built from (the
 * Makefile passes FTK_SRC_DIR), so build/tests/test_x runs from any folder.
 */
#ifndef FTK_SRC_DIR
#define FTK_SRC_DIR "."
#endif
static inline const char *src_path(const char *rel)
{
	static char buf[8][4096];
	static int k;
	const char *src = getenv("SRC");
	char *b = buf[k++ & 7];
	snprintf(b, 4096, "%s/%s", src && *src ? src : FTK_SRC_DIR, rel);
	return b;
}

/*
 * The programs a suite runs (ftk-train in test_train) are the build's own:
 * its bin folder goes first on PATH, as tests/run.sh puts it, so a suite run
 * by hand from any folder runs the same binaries.
 */
#ifdef FTK_BIN_DIR
#include <string.h>
static inline void ftk_test_path(void)
{
	const char *old = getenv("PATH");
	size_t n = strlen(FTK_BIN_DIR) + (old ? strlen(old) : 0) + 2;
	char *p = malloc(n);
	snprintf(p, n, "%s%s%s", FTK_BIN_DIR, old ? ":" : "", old ? old : "");
	setenv("PATH", p, 1);
	free(p);
}
#else
static inline void ftk_test_path(void) {}
#endif

/*
 * Suites write their scratch files (short.safetensors, my-config, merged/)
 * into the current folder.  tests/run.sh gives each suite a fresh one and
 * sets $SRC; run by hand (no $SRC), a suite makes its own under $TMPDIR and
 * says where, so it never litters the folder it was started from.
 */
#include <unistd.h>
static inline void ftk_test_scratch(void)
{
	const char *src = getenv("SRC");
	if (src && *src)
		return;
	const char *tmp = getenv("TMPDIR");
	char dir[4096];
	snprintf(dir, sizeof dir, "%s/ftk-unit.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir) || chdir(dir) != 0) {
		perror("unit test scratch folder");
		exit(EXIT_FAILURE);
	}
	fprintf(stderr, "scratch files in %s\n", dir);
}

/*
 * FTK_TEST_MAIN with every CPU backend instance in guard mode
 * (FTK_CPU_GUARD, model/backend.h): backend memory faults when the host
 * touches it outside the table's ops, as device memory would be wrong to
 * touch on a GPU.  For suites whose code must reach the LoRA arrays only
 * through copies (ftk_model_lora_download/upload).
 */
#define FTK_TEST_MAIN_GUARDED(make_suite)                  \
	static Suite *guarded_##make_suite(void)           \
	{                                                  \
		setenv("FTK_CPU_GUARD", "1", 1);           \
		return make_suite();                       \
	}                                                  \
	FTK_TEST_MAIN(guarded_##make_suite)

/* Define main() for a suite made by make_suite(). */
#define FTK_TEST_MAIN(make_suite)                                   \
	int main(void)                                              \
	{                                                           \
		ftk_test_path();                                    \
		ftk_test_scratch();                                 \
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
