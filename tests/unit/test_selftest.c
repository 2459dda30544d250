/*
 * test_selftest.c: the selftest harness (model/selftest.h) catches a
 * faulty backend.  A copy of the CPU's ops with one perturbed stands in
 * for a GPU backend: a perturbation beyond tolerance must fail exactly that
 * op and name it; one far inside tolerance must pass; the CPU against
 * itself must show zero everywhere.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "model/model.h"
#include "model/nf4.h"
#include "model/selftest.h"

/* The CPU instance each test computes on (made in its process by the fixture). */
static struct ftk_backend *cpu;
static void cpu_new(void)
{
	unsetenv("FTK_CPU_GUARD");	/* the stand-ins write CPU memory on the host */
	cpu = ftk_backend_cpu_new();
}
static void cpu_free(void)
{
	ftk_backend_free(cpu);
}

/* A stand-in device: a copy of the CPU's ops (some then replaced) on cpu's state. */
struct standin {
	struct ftk_backend_ops ops;
	struct ftk_backend be;
};

static struct ftk_backend *standin(struct standin *s)
{
	s->ops = *cpu->ops;
	s->be.ops = &s->ops;
	s->be.ctx = cpu->ctx;
	return &s->be;
}

static float bias_by;

static void bad_rmsnorm_fwd(struct ftk_backend *be, float *out, float *rstd, const float *inp,
			    const float *w, int M, int C, float eps)
{
	cpu->ops->rmsnorm_fwd(cpu, out, rstd, inp, w, M, C, eps);
	out[(size_t)M * C - 1] *= 1.0f + bias_by;	/* the last element of the last row */
}

static void bad_attn_bwd(struct ftk_backend *be, float *dq, float *dk, float *dv, const float *dout,
			 const float *att, const float *q, const float *k, const float *v, int B,
			 int T, int NH, int NKV, int hd)
{
	cpu->ops->attn_bwd(cpu, dq, dk, dv, dout, att, q, k, v, B, T, NH, NKV, hd);
	memset(dv, 0, sizeof(float) * hd);	/* forgets the first key's value gradient */
}

static void bad_attn_bwd_flash(struct ftk_backend *be, float *dq, float *dk, float *dv,
			       const float *dout, const float *out, const float *lse,
			       const float *q, const float *k, const float *v, const int32_t *doc,
			       int B, int T, int NH, int NKV, int hd)
{
	cpu->ops->attn_bwd_flash(cpu, dq, dk, dv, dout, out, lse, q, k, v, doc, B, T, NH, NKV, hd);
	memset(dk + (size_t)(T - 1) * NKV * hd, 0, sizeof(float) * hd);	/* the last key's dk */
}

/* Whether the report line of t for name (padded: two spaces after it) holds what. */
static int line_has(const char *t, const char *name, const char *what)
{
	char key[96];
	snprintf(key, sizeof(key), "  %s  ", name);
	const char *l = strstr(t, key);
	if (!l)
		return 0;
	const char *e = strchr(l, '\n');
	const char *w = strstr(l, what);
	return w && (!e || w < e);
}

static int run(struct ftk_backend *be, char **text)
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
	ck_assert_int_eq(run(cpu, &t), 0);
	ck_assert_ptr_null(strstr(t, "FAIL"));
	ck_assert(line_has(t, "attn_bwd dv", "max_abs 0.000e+00"));
	free(t);
}
END_TEST

START_TEST(a_faulty_op_fails_alone)
{
	struct standin bad_s;
	struct ftk_backend *bad = standin(&bad_s);
	char *t;
	bad_s.ops.name = "faulty";
	bad_s.ops.rmsnorm_fwd = bad_rmsnorm_fwd;
	bias_by = 1e-3f;
	ck_assert_int_eq(run(bad, &t), 1);
	char *line = strstr(t, "rmsnorm_fwd");
	ck_assert_ptr_nonnull(line);
	ck_assert_int_eq(strncmp(strchr(line, '\n') - 4, "FAIL", 4), 0);
	free(t);
	/* 1e-7 relative is inside the 1e-5 tolerance */
	bias_by = 1e-7f;
	ck_assert_int_eq(run(bad, &t), 0);
	free(t);
	bad_s.ops.rmsnorm_fwd = cpu->ops->rmsnorm_fwd;
	bad_s.ops.attn_bwd = bad_attn_bwd;
	ck_assert_int_eq(run(bad, &t), 1);
	ck_assert_ptr_nonnull(strstr(t, "FAIL"));
	/* the fault is in dv alone, and dv's own line says so */
	line = strstr(t, "attn_bwd dv");
	ck_assert_int_eq(strncmp(strchr(line, '\n') - 4, "FAIL", 4), 0);
	ck_assert_int_eq(strncmp(strchr(strstr(t, "attn_bwd dq"), '\n') - 2, "ok", 2), 0);
	free(t);
}
END_TEST

/* A backend whose linear_fwd is wrong only on the path FTK_CUDA_NF4=gemv asks for. */
static void bad_gemv_linear_fwd(struct ftk_backend *be, float *out, const float *inp,
				const struct ftk_weight *w, const float *bias, int M)
{
	cpu->ops->linear_fwd(cpu, out, inp, w, bias, M);
	const char *p = getenv("FTK_CUDA_NF4");
	if (p && !strcmp(p, "gemv"))
		out[0] += 1.0f;
}

START_TEST(each_forced_nf4_path_is_checked)
{
	struct standin bad_s;
	struct ftk_backend *bad = standin(&bad_s);
	char *t;
	bad_s.ops.name = "faulty";
	bad_s.ops.linear_fwd = bad_gemv_linear_fwd;
	unsetenv("FTK_CUDA_NF4");
	/* exactly the two GEMV lines fail: the selftest set the variable for them alone */
	ck_assert_int_eq(run(bad, &t), 2);
	const char *names[] = { "nf4 gemv fwd M=1 ", "nf4 gemv fwd M=8 " };
	for (int i = 0; i < 2; i++) {
		char *line = strstr(t, names[i]);
		ck_assert_ptr_nonnull(line);
		ck_assert_int_eq(strncmp(strchr(line, '\n') - 4, "FAIL", 4), 0);
	}
	ck_assert_ptr_nonnull(strstr(t, "nf4 fused fwd M=67"));
	ck_assert_ptr_nonnull(strstr(t, "nf4 fused bwd_inp M=67"));
	free(t);
	/* and put it back as it was */
	ck_assert_ptr_null(getenv("FTK_CUDA_NF4"));
	setenv("FTK_CUDA_NF4", "cublas", 1);
	ck_assert_int_eq(run(bad, &t), 2);
	ck_assert_str_eq(getenv("FTK_CUDA_NF4"), "cublas");
	free(t);
}
END_TEST

/* A faulty flash backward fails its two lines (head_dim 16 and 256) and nothing else. */
START_TEST(a_faulty_flash_op_fails_its_lines)
{
	struct standin bad_s;
	struct ftk_backend *bad = standin(&bad_s);
	char *t;
	bad_s.ops.name = "faulty";
	bad_s.ops.attn_bwd_flash = bad_attn_bwd_flash;
	ck_assert_int_eq(run(bad, &t), 2);
	const char *want[] = { "flash bwd dk hd=16 ", "flash bwd dk hd=256" };
	for (int i = 0; i < 2; i++) {
		char *line = strstr(t, want[i]);
		ck_assert_ptr_nonnull(line);
		ck_assert_int_eq(strncmp(strchr(line, '\n') - 4, "FAIL", 4), 0);
	}
	ck_assert_int_eq(strncmp(strchr(strstr(t, "flash fwd lse hd=256"), '\n') - 2, "ok", 2), 0);
	ck_assert_int_eq(strncmp(strchr(strstr(t, "flash bwd dv hd=256"), '\n') - 2, "ok", 2), 0);
	free(t);
	/* a table without flash ops fails one line saying so */
	bad_s.ops.attn_bwd_flash = NULL;
	ck_assert_int_eq(run(bad, &t), 1);
	ck_assert_ptr_nonnull(strstr(t, "flash attention        not in this backend's table  FAIL"));
	free(t);
}
END_TEST

START_TEST(qlora_step_catches_a_faulty_backend)
{
	struct standin bad_s;
	struct ftk_backend *bad = standin(&bad_s);
	struct ftk_error err;
	char *t;
	size_t len;
	bad_s.ops.name = "faulty";
	bad_s.ops.attn_bwd = bad_attn_bwd;
	FILE *f = open_memstream(&t, &len);
	int rc = ftk_selftest_step(bad, src_path("datasets/models/stories260K"), f, &err);
	fclose(f);
	ck_assert_int_gt(rc, 1);	/* the loss agrees, the gradients do not */
	ck_assert(line_has(t, "loss", "max_abs 0.000e+00"));
	ck_assert_ptr_nonnull(strstr(t, "grad L0 q_proj A"));
	free(t);
	f = open_memstream(&t, &len);
	rc = ftk_selftest_step(cpu, src_path("datasets/models/stories260K"), f, &err);
	fclose(f);
	ck_assert_int_eq(rc, 0);
	free(t);
}
END_TEST

/* A flash backward whose dv misses a factor of 2 (a plausible kernel slip). */
static void half_dv_attn_bwd_flash(struct ftk_backend *be, float *dq, float *dk, float *dv,
				   const float *dout, const float *out, const float *lse,
				   const float *q, const float *k, const float *v,
				   const int32_t *doc, int B, int T, int NH, int NKV, int hd)
{
	cpu->ops->attn_bwd_flash(cpu, dq, dk, dv, dout, out, lse, q, k, v, doc, B, T, NH, NKV, hd);
	for (size_t i = 0; i < (size_t)B * T * NKV * hd; i++)
		dv[i] *= 0.5f;
}

/*
 * The flash step runs the flash ops through the whole model: a faulty flash
 * backward fails it, while the fp32 step, which takes the (T, T) path at
 * this size, cannot see the fault at all.
 */
START_TEST(flash_step_catches_a_faulty_flash_backward)
{
	struct standin bad_s;
	struct ftk_backend *bad = standin(&bad_s);
	struct ftk_error err;
	char *t;
	size_t len;
	bad_s.ops.name = "faulty";
	bad_s.ops.attn_bwd_flash = half_dv_attn_bwd_flash;
	FILE *f = open_memstream(&t, &len);
	int rc = ftk_selftest_step_flash(bad, src_path("datasets/models/stories260K"), f, &err);
	fclose(f);
	ck_assert_int_gt(rc, 1);	/* the loss agrees, the gradients do not */
	ck_assert_ptr_nonnull(strstr(t, "qlora step flash"));
	ck_assert_int_eq(strncmp(strchr(strstr(t, "grad L4 v_proj B"), '\n') - 4, "FAIL", 4), 0);
	free(t);
	f = open_memstream(&t, &len);
	rc = ftk_selftest_step(bad, src_path("datasets/models/stories260K"), f, &err);
	fclose(f);
	ck_assert_int_eq(rc, 0);
	free(t);
}
END_TEST

/* ---------------------------------------------------------------- bf16 */

/*
 * Stand-ins for a GPU's bf16 products.  fp32_*: a backend that accepts
 * set_precision(bf16) but multiplies fp32 values anyway (the CPU's own ops
 * run with the CPU switched to fp32 for the call).  ulps_*: the CPU's bf16
 * ops with every output element moved by up to ulps_by relative, a
 * stand-in for cuBLAS adding in another order.
 */
static float ulps_by;
static uint64_t ulps_rng = 1;

static void nudge(float *c, int M, int N, int ldc)
{
	for (int i = 0; i < M; i++)
		for (int j = 0; j < N; j++) {
			ulps_rng = ulps_rng * 6364136223846793005ull + 1442695040888963407ull;
			double u = (double)(ulps_rng >> 11) / 9007199254740992.0 * 2.0 - 1.0;
			c[(size_t)i * ldc + j] *= (float)(1.0 + ulps_by * u);
		}
}

static void fp32_gemm(struct ftk_backend *be, int ta, int tb, int M, int N, int K, float alpha,
		      const float *A, int lda, const float *B, int ldb, float beta, float *C,
		      int ldc)
{
	cpu->ops->set_precision(cpu, FTK_PREC_FP32);
	cpu->ops->gemm(cpu, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
	cpu->ops->set_precision(cpu, FTK_PREC_BF16);
}

static void fp32_linear_fwd(struct ftk_backend *be, float *out, const float *inp,
			    const struct ftk_weight *w, const float *bias, int M)
{
	cpu->ops->set_precision(cpu, FTK_PREC_FP32);
	cpu->ops->linear_fwd(cpu, out, inp, w, bias, M);
	cpu->ops->set_precision(cpu, FTK_PREC_BF16);
}

static void fp32_linear_bwd_inp(struct ftk_backend *be, float *dinp, const float *dout,
				const struct ftk_weight *w, int M)
{
	cpu->ops->set_precision(cpu, FTK_PREC_FP32);
	cpu->ops->linear_bwd_inp(cpu, dinp, dout, w, M);
	cpu->ops->set_precision(cpu, FTK_PREC_BF16);
}

static void ulps_gemm(struct ftk_backend *be, int ta, int tb, int M, int N, int K, float alpha,
		      const float *A, int lda, const float *B, int ldb, float beta, float *C,
		      int ldc)
{
	cpu->ops->gemm(cpu, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
	nudge(C, M, N, ldc);
}

static void ulps_linear_fwd(struct ftk_backend *be, float *out, const float *inp,
			    const struct ftk_weight *w, const float *bias, int M)
{
	cpu->ops->linear_fwd(cpu, out, inp, w, bias, M);
	nudge(out, M, w->rows, w->rows);
}

static void ulps_linear_bwd_inp(struct ftk_backend *be, float *dinp, const float *dout,
				const struct ftk_weight *w, int M)
{
	cpu->ops->linear_bwd_inp(cpu, dinp, dout, w, M);
	nudge(dinp, M, w->cols, w->cols);
}

/* A bf16 line's relative difference, from "<name> ... max_rel X" in t. */
static double max_rel_of(const char *t, const char *name)
{
	const char *l = strstr(t, name);
	ck_assert_msg(l != NULL, "no line '%s' in:\n%s", name, t);
	const char *r = strstr(l, "max_rel ");
	ck_assert_ptr_nonnull(r);
	return atof(r + 8);
}

START_TEST(bf16_lines_catch_fp32_products)
{
	struct standin bad_s;
	struct ftk_backend *bad = standin(&bad_s);
	char *t;
	size_t len;
	bad_s.ops.name = "fp32-only";
	bad_s.ops.gemm = fp32_gemm;
	bad_s.ops.gemm_batch = NULL;
	FILE *f = open_memstream(&t, &len);
	int fails = ftk_selftest_ops_bf16(bad, f);
	fclose(f);
	printf("%s", t);
	/* the four gemm lines and gemm_batch (gemm when NULL) fail; linear ops are the CPU's */
	ck_assert_int_eq(fails, 5);
	ck_assert(max_rel_of(t, "gemm NN bf16") > 1e-3);
	ck_assert(max_rel_of(t, "linear_fwd nf4 bf16") == 0.0);
	free(t);
	/*
	 * fp32 everywhere: every op line fails.  (The QLoRA step alone could
	 * not tell: on this batch fp32 products are 5e-5 off the bf16 loss and
	 * 5e-3 off its gradients, while addition-order noise alone moves them
	 * by up to 1e-4 and 2e-3, see below; the op lines separate the two by
	 * a factor of a thousand.)
	 */
	bad_s.ops.linear_fwd = fp32_linear_fwd;
	bad_s.ops.linear_bwd_inp = fp32_linear_bwd_inp;
	f = open_memstream(&t, &len);
	ck_assert_int_eq(ftk_selftest_ops_bf16(bad, f), 12);
	fclose(f);
	free(t);
	/* no bf16 mode at all: one failure, said */
	bad_s.ops.set_precision = NULL;
	f = open_memstream(&t, &len);
	ck_assert_int_eq(ftk_selftest_ops_bf16(bad, f), 1);
	fclose(f);
	ck_assert_ptr_nonnull(strstr(t, "has no bf16 mode  FAIL"));
	free(t);
}
END_TEST

/*
 * The bf16 step's tolerances against fp32 addition-order noise: every
 * product output of the "device" moved by up to 2^-21 relative (8 fp32
 * ulps, more than cuBLAS's reordering of these short sums gives) must pass
 * both the op lines (1e-4) and the step (1e-3 loss, 3e-2 gradients), and
 * the margin is printed.  The same noise with fp32 products in the step
 * stays within the fp32 tolerances, for comparison.
 */
START_TEST(bf16_tolerances_cover_reordering)
{
	struct standin noisy_s;
	struct ftk_backend *noisy = standin(&noisy_s);
	struct ftk_error err;
	char *t;
	size_t len;
	noisy_s.ops.name = "noisy";
	noisy_s.ops.gemm = ulps_gemm;
	noisy_s.ops.gemm_batch = NULL;
	noisy_s.ops.linear_fwd = ulps_linear_fwd;
	noisy_s.ops.linear_bwd_inp = ulps_linear_bwd_inp;
	ulps_by = ldexpf(1.0f, -21);
	FILE *f = open_memstream(&t, &len);
	int fails = ftk_selftest_ops_bf16(noisy, f);
	fails += ftk_selftest_step_bf16(noisy, src_path("datasets/models/stories260K"), f, &err);
	fails += ftk_selftest_step(noisy, src_path("datasets/models/stories260K"), f, &err);
	fclose(f);
	printf("%s", t);
	ck_assert_int_eq(fails, 0);
	free(t);
}
END_TEST


/*
 * Issue 23's plant: one LoRA gradient tensor of one layer 1e-3 off (of its
 * own size) must fail its line, and only it.  The tensor chosen is the one
 * with the smallest gradients, where the old single "LoRA gradients" line
 * (one maximum over all tensors, tolerance 1e-3) could not see it: the
 * test prints and checks that merged figure too.
 */
START_TEST(one_lora_gradient_off_by_1e3_fails_its_line)
{
	struct ftk_model *m[2] = { NULL, NULL };
	struct ftk_error err;
	struct ftk_load_opts lo = { FTK_QUANT_NF4, cpu, 1, 64 };
	struct ftk_lora_opts lora = { FTK_LORA_ALL, 4, 8.0f, 0, 0.0f, 7 };
	int V = 0;
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(ftk_model_load(&m[i], src_path("datasets/models/stories260K"), &lo,
						&err), 0);
		ck_assert_int_eq(ftk_model_lora_init(m[i], &lora, &err), 0);
		size_t n;
		ftk_model_lora_flat(m[i], &n);
		float *p = malloc(n * sizeof(float));	/* backend memory: a host copy */
		for (size_t j = 0; j < n; j++)	/* B non-zero, so every gradient is */
			p[j] = (float)((j * 2654435761u) % 1000u) * 1e-4f - 0.05f;
		ftk_model_lora_upload(m[i], p);
		free(p);
		V = ftk_model_config(m[i])->vocab_size;
	}
	int Bn = 2, T = 24;
	uint32_t ids[48], docs[48];
	for (int i = 0; i < Bn * T; i++) {
		ids[i] = (uint32_t)((i * 7919u + 13u) % (unsigned)V);
		docs[i] = 0;
	}
	struct ftk_batch b = { Bn, T, ids, NULL, docs };
	double norm = (double)ftk_batch_count_targets(&b), ls;
	long nt;
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(ftk_model_forward_backward(m[i], &b, norm, &ls, &nt, &err), 0);
	/* the tensor with the smallest gradients, and the largest over all */
	size_t count = ftk_model_lora_count(m[1]), pick = 0, n;
	float *gd = ftk_model_lora_grad_flat(m[1], &n), *g = malloc(n * sizeof(float));
	ftk_model_lora_grad_download(m[1], g);
	double smallest = INFINITY, global = 0;
	for (size_t ti = 0; ti < count; ti++) {
		const struct ftk_lora_tensor *t = ftk_model_lora_tensor(m[1], ti);
		double mx = 0;
		for (int j = 0; j < t->rows * t->cols; j++)
			mx = fabs(g[t->offset + j]) > mx ? fabs(g[t->offset + j]) : mx;
		if (mx < smallest)
			smallest = mx, pick = ti;
		global = mx > global ? mx : global;
	}
	const struct ftk_lora_tensor *t = ftk_model_lora_tensor(m[1], pick);
	for (int j = 0; j < t->rows * t->cols; j++)
		g[t->offset + j] *= 1.0f + 1e-3f;
	cpu->ops->upload(cpu, gd, g, n * sizeof(float));
	free(g);
	char *text;
	size_t len;
	FILE *f = open_memstream(&text, &len);
	int fails = ftk_selftest_lora_grads(m[0], m[1], 1e-4, f);
	fclose(f);
	char name[64];
	snprintf(name, sizeof(name), "grad L%d %s %s", t->layer, ftk_lora_target_name(t->target),
		 t->is_b ? "B" : "A");
	printf("planted in %s: merged max_rel %.2e, own line:\n%s", name, smallest * 1e-3 / global,
	       strstr(text, name));
	ck_assert_int_eq(fails, 1);
	ck_assert(line_has(text, name, "FAIL"));
	ck_assert(smallest * 1e-3 / global < 1e-4);	/* the merged line passed at 1e-3 */
	free(text);
	ftk_model_free(m[0]);
	ftk_model_free(m[1]);
}
END_TEST


/* ---------------------------------------------------------------- tf32 */

/*
 * A CPU stand-in for TF32 tensor cores: set_precision accepts tf32, and
 * then gemm and the linear ops multiply operands cut to keep_bits mantissa
 * bits (truncated, the worse of the two roundings cuBLAS may use; 10 bits
 * for TF32, 7 for bf16), accumulating in fp32.
 */
static int tf_mode, keep_bits = 10;

static float cut(float x)
{
	uint32_t u;
	memcpy(&u, &x, 4);
	u &= ~((1u << (23 - keep_bits)) - 1u);
	memcpy(&x, &u, 4);
	return x;
}

static float *cut_copy(const float *x, int rows, int cols, int ld)
{
	float *y = malloc(sizeof(float) * (size_t)rows * cols + 1);
	for (int i = 0; i < rows; i++)
		for (int j = 0; j < cols; j++)
			y[(size_t)i * cols + j] = cut(x[(size_t)i * ld + j]);
	return y;
}

static int tf_set_precision(struct ftk_backend *be, int p)
{
	tf_mode = p == FTK_PREC_TF32;
	return p == FTK_PREC_TF32 ? 0 : cpu->ops->set_precision(cpu, p);
}

static void tf_gemm(struct ftk_backend *be, int ta, int tb, int M, int N, int K, float alpha,
		    const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
	if (!tf_mode) {
		cpu->ops->gemm(cpu, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
		return;
	}
	int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
	float *a = cut_copy(A, ar, ac, lda), *b = cut_copy(B, br, bc, ldb);
	cpu->ops->gemm(cpu, ta, tb, M, N, K, alpha, a, ac, b, bc, beta, C, ldc);
	free(a), free(b);
}

/* W as float32 (N, K): dequantized NF4 or the weight itself */
static float *weight_f32(const struct ftk_weight *w)
{
	size_t n = (size_t)w->rows * w->cols;
	float *f = malloc(n * sizeof(float) + 1);
	if (w->quant == FTK_QUANT_NF4)
		ftk_nf4_dequant(&w->nf4, 0, n, f);
	else
		memcpy(f, w->f32, n * sizeof(float));
	return f;
}

static void tf_linear_fwd(struct ftk_backend *be, float *out, const float *inp,
			  const struct ftk_weight *w, const float *bias, int M)
{
	if (!tf_mode || M <= 8) {	/* the GEMV (M <= 8 on NF4) computes in fp32 */
		cpu->ops->linear_fwd(cpu, out, inp, w, bias, M);
		return;
	}
	float *W = weight_f32(w);
	tf_gemm(be, 0, 1, M, w->rows, w->cols, 1.0f, inp, w->cols, W, w->cols, 0.0f, out, w->rows);
	for (int m = 0; bias && m < M; m++)
		for (int n = 0; n < w->rows; n++)
			out[(size_t)m * w->rows + n] += bias[n];
	free(W);
}

static void tf_linear_bwd_inp(struct ftk_backend *be, float *dinp, const float *dout,
			      const struct ftk_weight *w, int M)
{
	if (!tf_mode) {
		cpu->ops->linear_bwd_inp(cpu, dinp, dout, w, M);
		return;
	}
	float *W = weight_f32(w);
	tf_gemm(be, 0, 0, M, w->cols, w->rows, 1.0f, dout, w->rows, W, w->cols, 1.0f, dinp,
		w->cols);
	free(W);
}

/*
 * The tf32 lines' tolerance: TF32 truncation passes every line with room to
 * spare, and the same table cutting to bf16's 7 bits fails the products;
 * the CPU itself (no tf32 mode) runs nothing and fails nothing.
 */
START_TEST(tf32_lines_tolerance)
{
	struct standin tf_s;
	struct ftk_backend *tf = standin(&tf_s);
	char *t;
	size_t len;
	tf_s.ops.name = "tf32-emulated";
	tf_s.ops.set_precision = tf_set_precision;
	tf_s.ops.gemm = tf_gemm;
	tf_s.ops.gemm_batch = NULL;
	tf_s.ops.linear_fwd = tf_linear_fwd;
	tf_s.ops.linear_bwd_inp = tf_linear_bwd_inp;
	keep_bits = 10;
	FILE *f = open_memstream(&t, &len);
	int fails = ftk_selftest_ops_tf32(tf, f);
	fclose(f);
	printf("%s", t);
	double worst = 0;
	const char *names[] = { "gemm NN tf32", "gemm TT tf32", "gemm_batch tf32",
				"linear_fwd nf4 tf32", "linear_bwd_inp nf4 tf32",
				"linear_fwd f32 tf32", "linear_fwd nf4 2 tiles tf32",
				"linear_bwd_inp nf4 2 tiles tf32" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		worst = fmax(worst, max_rel_of(t, names[i]));
	printf("tf32 (truncated) worst line: %.2e\n", worst);
	ck_assert_int_eq(fails, 0);
	ck_assert(worst > 1e-4);	/* TF32 is visible: fp32's tolerance would fail it */
	ck_assert(worst < 0.5 * 4e-3);
	free(t);
	keep_bits = 7;	/* bf16's mantissa: must fail the products */
	f = open_memstream(&t, &len);
	fails = ftk_selftest_ops_tf32(tf, f);
	fclose(f);
	printf("%s", t);
	ck_assert_int_ge(fails, 5);
	ck_assert(line_has(t, "gemm NN tf32", "FAIL"));
	free(t);
	keep_bits = 10;
	f = open_memstream(&t, &len);
	ck_assert_int_eq(ftk_selftest_ops_tf32(cpu, f), 0);
	fclose(f);
	ck_assert_str_eq(t, "ops tf32: not run (the cpu backend has no tf32 mode)\n");
	free(t);
}
END_TEST

/*
 * Under FTK_CPU_GUARD (the fixture below): the selftest reaches backend
 * memory only through the table (its comparisons download both sides, the
 * QLoRA step sets and compares the LoRA arrays through copies), so the CPU
 * against itself runs clean; a host read in place would crash here.
 */
START_TEST(cpu_against_itself_under_the_guard)
{
	ck_assert(ftk_backend_cpu_guarded());
	char *t;
	ck_assert_int_eq(run(cpu, &t), 0);
	free(t);
	struct ftk_error err;
	size_t len;
	FILE *f = open_memstream(&t, &len);
	int rc = ftk_selftest_step(cpu, src_path("datasets/models/stories260K"), f, &err);
	fclose(f);
	ck_assert_msg(rc == 0, "%s", t);
	ck_assert(line_has(t, "loss", "max_abs 0.000e+00"));
	free(t);
}
END_TEST

static void guarded_cpu_new(void)
{
	setenv("FTK_CPU_GUARD", "1", 1);
	cpu = ftk_backend_cpu_new();
}

static Suite *selftest_suite(void)
{
	Suite *s = suite_create("selftest");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, cpu_new, cpu_free);
	tcase_add_test(tc, cpu_against_itself_is_exact);
	tcase_add_test(tc, a_faulty_op_fails_alone);
	tcase_add_test(tc, each_forced_nf4_path_is_checked);
	tcase_add_test(tc, a_faulty_flash_op_fails_its_lines);
	tcase_add_test(tc, flash_step_catches_a_faulty_flash_backward);
	tcase_add_test(tc, qlora_step_catches_a_faulty_backend);
	tcase_add_test(tc, bf16_lines_catch_fp32_products);
	tcase_add_test(tc, bf16_tolerances_cover_reordering);
	tcase_add_test(tc, tf32_lines_tolerance);
	suite_add_tcase(s, tc);
	/* the stand-ins above plant faults by writing backend memory on the
	 * host, so only these run in guard mode */
	TCase *tg = tcase_create("guarded");
	tcase_set_timeout(tg, 60);
	tcase_add_checked_fixture(tg, guarded_cpu_new, cpu_free);
	tcase_add_test(tg, one_lora_gradient_off_by_1e3_fails_its_line);
	tcase_add_test(tg, cpu_against_itself_under_the_guard);
	suite_add_tcase(s, tg);
	return s;
}

FTK_TEST_MAIN(selftest_suite)
