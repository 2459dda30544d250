/*
 * test_selftest.c: the selftest harness (trainer/selftest.h) catches a
 * faulty backend.  A copy of the CPU table with one op perturbed stands in
 * for a GPU backend: a perturbation beyond tolerance must fail exactly that
 * op and name it; one far inside tolerance must pass; the CPU against
 * itself must show zero everywhere.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "trainer/selftest.h"

static float bias_by;

static void bad_rmsnorm_fwd(float *out, float *rstd, const float *inp, const float *w, int M,
			    int C, float eps)
{
	ftk_backend_cpu.rmsnorm_fwd(out, rstd, inp, w, M, C, eps);
	out[(size_t)M * C - 1] *= 1.0f + bias_by;	/* the last element of the last row */
}

static void bad_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *att,
			 const float *q, const float *k, const float *v, int B, int T, int NH,
			 int NKV, int hd)
{
	ftk_backend_cpu.attn_bwd(dq, dk, dv, dout, att, q, k, v, B, T, NH, NKV, hd);
	memset(dv, 0, sizeof(float) * hd);	/* forgets the first key's value gradient */
}

static void bad_attn_bwd_flash(float *dq, float *dk, float *dv, const float *dout,
			       const float *out, const float *lse, const float *q, const float *k,
			       const float *v, const int32_t *doc, int B, int T, int NH, int NKV,
			       int hd)
{
	ftk_backend_cpu.attn_bwd_flash(dq, dk, dv, dout, out, lse, q, k, v, doc, B, T, NH, NKV, hd);
	memset(dk + (size_t)(T - 1) * NKV * hd, 0, sizeof(float) * hd);	/* the last key's dk */
}

static int run(const struct ftk_backend *be, char **text)
{
	size_t len;
	FILE *f = open_memstream(text, &len);
	int fails = ftk_selftest_ops(be, f);
	fclose(f);
	return fails;
}

START_TEST(cpu_against_itself_is_exact)
{
	char *t;
	ck_assert_int_eq(run(&ftk_backend_cpu, &t), 0);
	ck_assert_ptr_null(strstr(t, "FAIL"));
	ck_assert_ptr_nonnull(strstr(t, "attn_bwd dq dk dv      max_abs 0.000e+00"));
	free(t);
}
END_TEST

START_TEST(a_faulty_op_fails_alone)
{
	struct ftk_backend bad = ftk_backend_cpu;
	char *t;
	bad.name = "faulty";
	bad.rmsnorm_fwd = bad_rmsnorm_fwd;
	bias_by = 1e-3f;
	ck_assert_int_eq(run(&bad, &t), 1);
	char *line = strstr(t, "rmsnorm_fwd");
	ck_assert_ptr_nonnull(line);
	ck_assert_int_eq(strncmp(strchr(line, '\n') - 4, "FAIL", 4), 0);
	free(t);
	/* 1e-7 relative is inside the 1e-5 tolerance */
	bias_by = 1e-7f;
	ck_assert_int_eq(run(&bad, &t), 0);
	free(t);
	bad.rmsnorm_fwd = ftk_backend_cpu.rmsnorm_fwd;
	bad.attn_bwd = bad_attn_bwd;
	ck_assert_int_eq(run(&bad, &t), 1);
	ck_assert_ptr_nonnull(strstr(t, "FAIL"));
	line = strstr(t, "attn_bwd");
	ck_assert_int_eq(strncmp(strchr(line, '\n') - 4, "FAIL", 4), 0);
	free(t);
}
END_TEST

/* A faulty flash backward fails its two lines (head_dim 16 and 256) and nothing else. */
START_TEST(a_faulty_flash_op_fails_its_lines)
{
	struct ftk_backend bad = ftk_backend_cpu;
	char *t;
	bad.name = "faulty";
	bad.attn_bwd_flash = bad_attn_bwd_flash;
	ck_assert_int_eq(run(&bad, &t), 2);
	const char *want[] = { "flash bwd dqkv hd=16 ", "flash bwd dqkv hd=256" };
	for (int i = 0; i < 2; i++) {
		char *line = strstr(t, want[i]);
		ck_assert_ptr_nonnull(line);
		ck_assert_int_eq(strncmp(strchr(line, '\n') - 4, "FAIL", 4), 0);
	}
	ck_assert_int_eq(strncmp(strchr(strstr(t, "flash fwd lse hd=256"), '\n') - 2, "ok", 2), 0);
	free(t);
	/* a table without flash ops fails one line saying so */
	bad.attn_bwd_flash = NULL;
	ck_assert_int_eq(run(&bad, &t), 1);
	ck_assert_ptr_nonnull(strstr(t, "flash attention        not in this backend's table  FAIL"));
	free(t);
}
END_TEST

START_TEST(qlora_step_catches_a_faulty_backend)
{
	struct ftk_backend bad = ftk_backend_cpu;
	struct ftk_error err;
	char *t;
	size_t len;
	bad.name = "faulty";
	bad.attn_bwd = bad_attn_bwd;
	FILE *f = open_memstream(&t, &len);
	int rc = ftk_selftest_step(&bad, src_path("datasets/models/stories260K"), f, &err);
	fclose(f);
	ck_assert_int_eq(rc, 1);	/* the loss agrees, the gradients do not */
	ck_assert_ptr_nonnull(strstr(t, "LoRA gradients"));
	free(t);
	f = open_memstream(&t, &len);
	rc = ftk_selftest_step(&ftk_backend_cpu, src_path("datasets/models/stories260K"), f, &err);
	fclose(f);
	ck_assert_int_eq(rc, 0);
	free(t);
}
END_TEST

static Suite *selftest_suite(void)
{
	Suite *s = suite_create("selftest");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, cpu_against_itself_is_exact);
	tcase_add_test(tc, a_faulty_op_fails_alone);
	tcase_add_test(tc, a_faulty_flash_op_fails_its_lines);
	tcase_add_test(tc, qlora_step_catches_a_faulty_backend);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(selftest_suite)
