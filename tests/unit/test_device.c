/*
 * test_device.c: loading the CUDA backend (device.h) refuses what it must,
 * by name, with stand-in objects built here by the C compiler (no GPU and
 * no nvcc needed):
 *   - an object without ftk_cuda_abi (built before the check) and one whose
 *     ABI version or table size differs from this build's are refused
 *     before their table is read, with both pairs in the message;
 *   - an object whose dependency the loader cannot find names that library
 *     (as a missing libcublas.so.13 would be), not the object itself;
 *   - an object with the right ABI and every entry point loads.
 * Planted fault: device.c without check_abi loads the short-table object
 * (the test fails at its first refusal).
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "testutil.h"
#include "model/device.h"

/* A stand-in libftkcuda.so: abi_line is the body of ftk_cuda_abi (or "" for none). */
static void build_fake(const char *so, const char *abi_line, const char *extra_ld)
{
	FILE *f = fopen("fake.c", "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
		"#include <stddef.h>\n"
		"int ftk_cuda_probe(char *w, size_t c) { (void)w; (void)c; return -1; }\n"
		"int ftk_cuda_set_device(int d) { (void)d; return -1; }\n"
		"int ftk_cuda_mem(size_t *a, size_t *b) { *a = *b = 0; return 0; }\n"
		"void *ftk_cuda_backend_new(const float *c) { (void)c; return 0; }\n"
		"int ftk_cuda_sync(char *w, size_t c) { (void)w; (void)c; return 0; }\n"
		"int ftk_cuda_local_reserve(size_t *b) { *b = 0; return -1; }\n"
		"%s\n",
		abi_line);
	fclose(f);
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "cc -shared -fPIC -o %s fake.c %s", so, extra_ld);
	ck_assert_int_eq(system(cmd), 0);
}

static int load(const char *so, struct ftk_error *e)
{
	struct ftk_cuda_api api;
	char path[2048];
	ck_assert_ptr_nonnull(realpath(".", path));
	strcat(path, "/");
	strcat(path, so);
	setenv("FTK_CUDA_LIB", path, 1);
	int rc = ftk_cuda_load(&api, e);
	unsetenv("FTK_CUDA_LIB");
	return rc;
}

START_TEST(a_stale_object_is_refused_by_name)
{
	struct ftk_error e;
	char want[512];
	build_fake("old.so", "", "");
	ck_assert_int_eq(load("old.so", &e), FTK_EUNSUPPORTED);
	ck_assert_ptr_nonnull(strstr(e.msg, "old.so' is a CUDA backend from before ftk_cuda_abi "
					    "(a stale build): rebuild it (make cuda)"));
	/* a table one entry shorter: what a build before the last new op returns */
	char line[256];
	snprintf(line, sizeof(line), "unsigned ftk_cuda_abi(size_t *b) { *b = %zu; return %d; }",
		 sizeof(struct ftk_backend_ops) - sizeof(void *), FTK_CUDA_ABI);
	build_fake("short.so", line, "");
	ck_assert_int_eq(load("short.so", &e), FTK_EUNSUPPORTED);
	snprintf(want, sizeof(want),
		 "short.so' is CUDA backend ABI %d with a %zu-byte table, this ftk needs ABI %d "
		 "with %zu bytes (a stale build?)",
		 FTK_CUDA_ABI, sizeof(struct ftk_backend_ops) - sizeof(void *), FTK_CUDA_ABI,
		 sizeof(struct ftk_backend_ops));
	ck_assert_msg(strstr(e.msg, want) != NULL, "%s", e.msg);
	/* the same size under another version */
	snprintf(line, sizeof(line), "unsigned ftk_cuda_abi(size_t *b) { *b = %zu; return %d; }",
		 sizeof(struct ftk_backend_ops), FTK_CUDA_ABI + 1);
	build_fake("newer.so", line, "");
	ck_assert_int_eq(load("newer.so", &e), FTK_EUNSUPPORTED);
	snprintf(want, sizeof(want), "is CUDA backend ABI %d with a %zu-byte table",
		 FTK_CUDA_ABI + 1, sizeof(struct ftk_backend_ops));
	ck_assert_msg(strstr(e.msg, want) != NULL, "%s", e.msg);
	/* and the matching one loads */
	snprintf(line, sizeof(line), "unsigned ftk_cuda_abi(size_t *b) { *b = %zu; return %d; }",
		 sizeof(struct ftk_backend_ops), FTK_CUDA_ABI);
	build_fake("good.so", line, "");
	ck_assert_int_eq(load("good.so", &e), 0);
}
END_TEST

START_TEST(a_missing_dependency_is_named)
{
	struct ftk_error e;
	/* libftkgone.so.7 exists while the stand-in links against it, then goes */
	FILE *f = fopen("gone.c", "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "int ftk_gone(void) { return 7; }\n");
	fclose(f);
	ck_assert_int_eq(system("cc -shared -fPIC -Wl,-soname,libftkgone.so.7 -o libftkgone.so "
				"gone.c"), 0);
	char line[256];
	snprintf(line, sizeof(line),
		 "int ftk_gone(void); int use_gone(void) { return ftk_gone(); }\n"
		 "unsigned ftk_cuda_abi(size_t *b) { *b = %zu; return %d; }",
		 sizeof(struct ftk_backend_ops), FTK_CUDA_ABI);
	build_fake("needs.so", line, "-L. -lftkgone");
	ck_assert_int_eq(unlink("libftkgone.so"), 0);
	ck_assert_int_eq(load("needs.so", &e), FTK_EUNSUPPORTED);
	ck_assert_msg(strstr(e.msg, "the CUDA backend could not be loaded: '") == e.msg, "%s",
		      e.msg);
	ck_assert_msg(strstr(e.msg, "needs.so' needs libftkgone.so.7, which the loader cannot "
				    "find (looked in the run path recorded at build time, "
				    "LD_LIBRARY_PATH and ld.so.cache)") != NULL,
		      "%s", e.msg);
}
END_TEST

START_TEST(an_absent_object_is_said)
{
	struct ftk_error e;
	ck_assert_int_eq(load("nothing-here.so", &e), FTK_EUNSUPPORTED);
	ck_assert_ptr_nonnull(strstr(e.msg, "nothing-here.so' does not exist"));
}
END_TEST

static Suite *device_suite(void)
{
	Suite *s = suite_create("device");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, a_stale_object_is_refused_by_name);
	tcase_add_test(tc, a_missing_dependency_is_named);
	tcase_add_test(tc, an_absent_object_is_said);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(device_suite)
