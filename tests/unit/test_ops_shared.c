/*
 * test_ops_shared.c: model/ops.h and model/optim_ops.h, the arithmetic
 * the CPU backend and the CUDA kernels share, compiled here by the C
 * compiler, against PyTorch (tests/fixtures/trainer/ops_shared_ref.json,
 * made by tools/ref/ops_shared_ref.py with torch 1.13: autograd for the
 * backward passes, F.cross_entropy, HF's rotate_half RoPE, torch.optim.AdamW).
 * The Makefile compiles the same headers as device code with nvcc
 * (tests/unit/ops_shared.cu) whenever nvcc is present, so the functions
 * checked here are the ones the kernels run.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "lib/strbuf.h"
#include "testutil.h"
#include "model/ops.h"
#include "model/optim_ops.h"

static cJSON *ref;

static void load_ref(void)
{
	struct strbuf sb = STRBUF_INIT;
	ck_assert_int_ge(strbuf_read_file(&sb, src_path("tests/fixtures/trainer/ops_shared_ref.json")), 0);
	ref = cJSON_Parse(sb.buf);
	ck_assert_ptr_nonnull(ref);
	strbuf_release(&sb);
}

/* The fixture's inputs: s * sin(a * i + b), rounded to float as torch does. */
static void vec(float *x, int n, double a, double b, double s)
{
	for (int i = 0; i < n; i++)
		x[i] = (float)(s * sin(a * i + b));
}

static const cJSON *get(const char *op, const char *key)
{
	const cJSON *o = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ref, op), key);
	ck_assert_msg(o != NULL, "%s.%s missing from the fixture", op, key);
	return o;
}

/* Every x[i] within tol (relative to the largest reference value) of the fixture's list. */
static void near_list(const char *op, const char *key, const float *x, int n, double tol)
{
	const cJSON *a = get(op, key);
	ck_assert_int_eq(cJSON_GetArraySize(a), n);
	double mx = 0, worst = 0;
	for (int i = 0; i < n; i++)
		mx = fmax(mx, fabs(cJSON_GetArrayItem(a, i)->valuedouble));
	for (int i = 0; i < n; i++)
		worst = fmax(worst, fabs(x[i] - cJSON_GetArrayItem(a, i)->valuedouble));
	ck_assert_msg(worst <= tol * mx, "%s.%s: off by %g (max %g)", op, key, worst, mx);
}

static void near_num(const char *op, const char *key, double x, double tol)
{
	double r = get(op, key)->valuedouble;
	ck_assert_msg(fabs(x - r) <= tol * fabs(r), "%s.%s: %.9g vs torch %.9g", op, key, x, r);
}

START_TEST(rmsnorm_matches_torch)
{
	load_ref();
	float x[16], w[16], dy[16], y[16], dx[16] = { 0 };
	vec(x, 16, 0.7, 0.3, 2.0), vec(w, 16, 1.3, 0.1, 1.0), vec(dy, 16, 0.9, 0.5, 1.0);
	float rstd = ftk_rmsnorm_row(y, x, w, 16, 1e-5f);
	near_list("rmsnorm", "y", y, 16, 1e-6);
	near_num("rmsnorm", "rstd", rstd, 1e-6);
	ftk_rmsnorm_row_bwd(dx, dy, x, w, rstd, 16);
	near_list("rmsnorm", "dx", dx, 16, 1e-5);
	cJSON_Delete(ref);
}
END_TEST

START_TEST(softmax_matches_torch)
{
	load_ref();
	float s[10], dp[10], dx[10];
	vec(s, 10, 0.5, 0.2, 3.0), vec(dp, 10, 1.1, 0.4, 1.0);
	ftk_softmax_row(s, 10);
	near_list("softmax", "p", s, 10, 1e-6);
	ftk_softmax_row_bwd(dx, s, dp, 10);
	near_list("softmax", "dx", dx, 10, 1e-5);
	cJSON_Delete(ref);
}
END_TEST

START_TEST(swiglu_matches_torch)
{
	load_ref();
	float g[12], u[12], d[12], o[12], dg[12], du[12];
	vec(g, 12, 0.8, 0.1, 4.0), vec(u, 12, 0.6, 0.7, 2.0), vec(d, 12, 1.7, 0.2, 1.0);
	for (int i = 0; i < 12; i++) {
		o[i] = ftk_swiglu(g[i], u[i]);
		ftk_swiglu_bwd(g[i], u[i], d[i], &dg[i], &du[i]);
	}
	near_list("swiglu", "out", o, 12, 1e-6);
	near_list("swiglu", "dg", dg, 12, 1e-5);
	near_list("swiglu", "du", du, 12, 1e-6);
	cJSON_Delete(ref);
}
END_TEST

START_TEST(xent_matches_torch)
{
	load_ref();
	float l[12], l2[12];
	vec(l, 12, 0.9, 0.3, 5.0);
	for (int i = 0; i < 12; i++)
		l2[i] = l[i];
	near_num("xent", "loss", ftk_xent_row(l, 12, 5, 0.0f), 1e-6);
	near_num("xent", "loss", ftk_xent_row(l2, 12, 5, 1.0f), 1e-6);
	near_list("xent", "grad", l2, 12, 1e-6);
	cJSON_Delete(ref);
}
END_TEST

/* A warp's xor-shuffle sum, as backend_cuda.cu's warp_sum: every lane ends with the total. */
static float warp_sum_emulated(float *part)
{
	float next[32];
	for (int o = 16; o > 0; o >>= 1) {
		for (int l = 0; l < 32; l++)
			next[l] = part[l] + part[l ^ o];
		memcpy(part, next, sizeof(next));
	}
	for (int l = 1; l < 32; l++)
		ck_assert(part[l] == part[0]);
	return part[0];
}

/*
 * The CUDA RMSNorm kernels run a warp per row (lane l over l, l + 32, ...):
 * emulated here with the same ops.h pieces and the shuffle order, for rows
 * shorter than a warp, not a multiple of it, and long; forward and backward
 * must match the row functions to float rounding (the sums are added in
 * another order).
 */
START_TEST(rmsnorm_warp_parts_match_row)
{
	static const int Cs[] = { 5, 128, 1000, 4096 };
	static float x[4096], w[4096], dy[4096], o1[4096], o2[4096], d1[4096], d2[4096];
	uint64_t z = 11;
	for (int i = 0; i < 4096; i++) {
		z = ftk_mix64(z + (uint64_t)i);
		x[i] = (float)((z >> 40) & 0xffff) / 16384.0f - 2.0f;
		w[i] = 0.5f + (float)((z >> 20) & 0xff) / 256.0f;
		dy[i] = (float)((z >> 8) & 0xfff) / 2048.0f - 1.0f;
	}
	for (size_t c = 0; c < sizeof(Cs) / sizeof(Cs[0]); c++) {
		int C = Cs[c];
		float part[32];
		float r1 = ftk_rmsnorm_row(o1, x, w, C, 1e-5f);
		for (int l = 0; l < 32; l++)
			part[l] = ftk_rmsnorm_part_ss(x, C, l, 32);
		float r2 = ftk_rmsnorm_rstd(warp_sum_emulated(part), C, 1e-5f);
		for (int l = 0; l < 32; l++)
			ftk_rmsnorm_part_out(o2, x, w, r2, C, l, 32);
		memset(d1, 0, sizeof(d1));
		memset(d2, 0, sizeof(d2));
		ftk_rmsnorm_row_bwd(d1, dy, x, w, r1, C);
		for (int l = 0; l < 32; l++)
			part[l] = ftk_rmsnorm_part_dot(dy, x, w, C, l, 32);
		float dot = warp_sum_emulated(part);
		for (int l = 0; l < 32; l++)
			ftk_rmsnorm_part_dx(d2, dy, x, w, r2, dot, C, l, 32);
		double wo = 0, wd = 0, so = 0, sd = 0;
		for (int i = 0; i < C; i++) {
			wo = fmax(wo, fabs((double)o1[i] - o2[i]));
			wd = fmax(wd, fabs((double)d1[i] - d2[i]));
			so = fmax(so, fabs((double)o1[i]));
			sd = fmax(sd, fabs((double)d1[i]));
		}
		printf("rmsnorm warp, C %4d: rstd %.8g vs %.8g, out %.2e, dx %.2e (relative)\n", C, r2,
		       r1, wo / so, wd / sd);
		ck_assert_float_eq_tol(r2, r1, 1e-6f * r1);
		ck_assert_double_le(wo / so, 1e-6);
		ck_assert_double_le(wd / sd, 1e-5);
	}
}
END_TEST

/*
 * The CUDA cross-entropy kernel runs a block of threads over one row: thread
 * t takes elements t, t + nt, ..., and the block combines the parts with a
 * tree in shared memory.  Emulate that here with the same ops.h pieces and
 * the kernel's tree order (nt a power of two, as XENT_THREADS is), on a
 * row longer than the block with its maximum and target in awkward places:
 * loss and gradient must match the one-thread row function to rounding.
 */
START_TEST(xent_block_parts_match_row)
{
	enum { V = 1000 + 37 };
	static float x[V], a[V], b[V];
	uint64_t z = 7;
	for (int i = 0; i < V; i++) {
		z = ftk_mix64(z + (uint64_t)i);
		x[i] = (float)((z >> 40) & 0xffff) / 4096.0f - 8.0f;
	}
	x[V - 1] = 120.0f;	/* the maximum, in the last thread's last element: exp(x - max)
				 * overflows unless every part saw it */
	int target = 517;
	for (int nt = 1; nt <= 256; nt *= 4) {
		float smax[256];
		double ssum[256];
		memcpy(a, x, sizeof(x));
		memcpy(b, x, sizeof(x));
		float want = ftk_xent_row(a, V, target, 0.5f);
		for (int t = 0; t < nt; t++)
			smax[t] = ftk_xent_part_max(b, V, t, nt);
		for (int s = nt / 2; s > 0; s >>= 1)
			for (int t = 0; t < s; t++)
				if (smax[t + s] > smax[t])
					smax[t] = smax[t + s];
		float mx = smax[0], xt = b[target];
		for (int t = 0; t < nt; t++)
			ssum[t] = ftk_xent_part_sum(b, V, mx, t, nt, 1);
		for (int s = nt / 2; s > 0; s >>= 1)
			for (int t = 0; t < s; t++)
				ssum[t] += ssum[t + s];
		for (int t = 0; t < nt; t++)
			ftk_xent_part_grad(b, V, target, ssum[0], 0.5f, t, nt);
		float got = ftk_xent_loss(mx, ssum[0], xt);
		double worst = 0;
		for (int i = 0; i < V; i++)
			worst = fmax(worst, fabs((double)a[i] - b[i]));
		printf("xent block of %3d: loss %.9g vs row %.9g, max grad diff %.2e\n", nt, got, want,
		       worst);
		ck_assert_float_eq_tol(got, want, 1e-6f * fabsf(want));
		ck_assert_double_le(worst, 1e-9);
		ck_assert(b[target] < 0);	/* the onehot was subtracted once, where it belongs */
	}
}
END_TEST

/*
 * The CUDA decode softmax: a block over one row of scores, thread t over
 * elements t, t + nt, ..., maxima and sums combined by the kernel's tree
 * (k_softmax_block).  Emulated here for 1 to 256 threads on rows shorter
 * and longer than the block, with the maximum in the last thread's last
 * element: every probability must match the one-thread ftk_softmax_row
 * within rounding, and the row must sum to 1.  (Planted: a tree that skips
 * its last level leaves half the sum out and fails at once.)
 */
START_TEST(softmax_block_parts_match_row)
{
	static const int lens[] = { 1, 7, 255, 256, 1037 };
	for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
		int n = lens[li];
		float *x = malloc(sizeof(float) * n), *a = malloc(sizeof(float) * n),
		      *b = malloc(sizeof(float) * n);
		uint64_t z = 11 + (uint64_t)n;
		for (int i = 0; i < n; i++) {
			z = ftk_mix64(z + (uint64_t)i);
			x[i] = (float)((z >> 40) & 0xffff) / 4096.0f - 8.0f;
		}
		x[n - 1] = 30.0f;
		for (int nt = 1; nt <= 256; nt *= 2) {
			float red[256];
			memcpy(a, x, sizeof(float) * n);
			memcpy(b, x, sizeof(float) * n);
			ftk_softmax_row(a, n);
			for (int t = 0; t < nt; t++)
				red[t] = ftk_softmax_part_max(b, n, t, nt);
			for (int s = nt / 2; s > 0; s >>= 1)
				for (int t = 0; t < s; t++)
					if (red[t + s] > red[t])
						red[t] = red[t + s];
			float mx = red[0];
			for (int t = 0; t < nt; t++)
				red[t] = ftk_softmax_part_exp(b, n, mx, t, nt);
			for (int s = nt / 2; s > 0; s >>= 1)
				for (int t = 0; t < s; t++)
					red[t] += red[t + s];
			for (int t = 0; t < nt; t++)
				ftk_softmax_part_scale(b, n, 1.0f / red[0], t, nt);
			double worst = 0, sum = 0;
			for (int i = 0; i < n; i++) {
				worst = fmax(worst, fabs((double)a[i] - b[i]));
				sum += b[i];
			}
			ck_assert_double_le(worst, 1e-6);
			ck_assert_double_le(fabs(sum - 1.0), 1e-5);
		}
		free(x), free(a), free(b);
	}
}
END_TEST

START_TEST(rope_matches_hf)
{
	load_ref();
	float inv[4], q[8];
	for (int j = 0; j < 4; j++)
		inv[j] = ftk_rope_inv_freq(j, 8, 10000.0f, 0, 0, 0, 0);
	near_list("rope", "inv_freq", inv, 4, 1e-7);
	vec(q, 8, 0.4, 0.9, 1.0);
	ftk_rope_head(q, 5, inv, 8, 1);
	near_list("rope", "q", q, 8, 1e-6);
	/* the backward rotation undoes the forward one */
	float q0[8];
	vec(q0, 8, 0.4, 0.9, 1.0);
	ftk_rope_head(q, 5, inv, 8, -1);
	for (int i = 0; i < 8; i++)
		ck_assert_float_eq_tol(q[i], q0[i], 1e-6);
	cJSON_Delete(ref);
}
END_TEST

START_TEST(adamw_both_headers_match_torch)
{
	load_ref();
	float p[6], g[6], m[6] = { 0 }, v[6] = { 0 }, p2[6], m2[6] = { 0 }, v2[6] = { 0 };
	vec(p, 6, 0.3, 0.2, 1.0), vec(g, 6, 1.9, 0.6, 0.5);
	for (int i = 0; i < 6; i++)
		p2[i] = p[i];
	double lr = 1e-2, b1 = 0.9, b2 = 0.999, wd = 0.1;
	/* ops.h's form */
	for (int i = 0; i < 6; i++)
		ftk_adamw(&p[i], &m[i], &v[i], g[i], (float)lr, (float)b1, (float)b2, 1e-8f, (float)wd,
			  (float)(1 - b1), (float)(1 - b2));
	/* ops.h's form forms 1 - beta2 in float (0.999f rounds up), so v is 1.3e-5 off
	 * torch's; the trainer and the CUDA kernel use optim_ops.h's, exact below */
	near_list("adamw", "p", p, 6, 1e-6);
	near_list("adamw", "m", m, 6, 1e-6);
	near_list("adamw", "v", v, 6, 2e-5);
	/* optim_ops.h's form (the trainer's optimizer and the CUDA kernel) */
	struct ftk_adamw_consts c = { (float)b1, (float)(1 - b1), (float)b2, (float)(1 - b2), 1e-8f,
				      (float)(1 - lr * wd), (float)(-lr / (1 - b1)),
				      (float)sqrt(1 - b2) };
	for (int i = 0; i < 6; i++)
		ftk_adamw_update(&p2[i], &m2[i], &v2[i], g[i], &c);
	near_list("adamw", "p", p2, 6, 1e-6);
	near_list("adamw", "m", m2, 6, 1e-6);
	near_list("adamw", "v", v2, 6, 1e-6);
	cJSON_Delete(ref);
}
END_TEST

START_TEST(dropout_keep_rate)
{
	/* the mask hash keeps close to 1 - p of the elements and is a pure function */
	long kept = 0;
	for (uint64_t i = 0; i < 100000; i++)
		kept += ftk_dropout_keep(42, i, 0.25f);
	ck_assert_int_gt(kept, 74000);
	ck_assert_int_lt(kept, 76000);
	ck_assert_int_eq(ftk_dropout_keep(42, 7, 0.25f), ftk_dropout_keep(42, 7, 0.25f));
}
END_TEST

/*
 * ftk_bf16_rne against torch's float32 -> bfloat16 conversion, bit for
 * bit, on tools/ref/bf16_ref.py's fixture (ties, subnormals, overflow, Inf,
 * NaN, random).  NaN inputs must give a NaN (torch writes 0xffff, ops.h
 * 0x7fc0: the payload is not part of the contract).  Also: bf16 -> float is
 * exact, and rounding is idempotent.
 */
START_TEST(bf16_matches_torch)
{
	FILE *f = fopen(src_path("tests/fixtures/trainer/bf16_ref.txt"), "r");
	ck_assert_ptr_nonnull(f);
	unsigned in, want;
	int n = 0, nan = 0, inf = 0, sub = 0;
	while (fscanf(f, "%x %x", &in, &want) == 2) {
		union {
			uint32_t u;
			float f;
		} v = { in };
		uint16_t got = ftk_bf16_rne(v.f);
		if (isnan(v.f)) {
			ck_assert_msg((got & 0x7f80) == 0x7f80 && (got & 0x7f), "%08x: %04x is not NaN",
				      in, got);
			ck_assert_msg((want & 0x7f80) == 0x7f80 && (want & 0x7f), "fixture %08x", in);
			nan++;
		} else {
			ck_assert_msg(got == want, "%08x (%g): got %04x, torch %04x", in, (double)v.f,
				      got, want);
			inf += isinf(ftk_bf16_float(got)) != 0;	/* glibc: -1 for -Inf */
			sub += fpclassify(v.f) == FP_SUBNORMAL;
		}
		union {
			float f;
			uint32_t u;
		} b = { ftk_bf16_float(got) };
		ck_assert_uint_eq(b.u, (uint32_t)got << 16);
		if (!isnan(b.f))
			ck_assert_uint_eq(ftk_bf16_rne(b.f), got);
		n++;
	}
	fclose(f);
	ck_assert_int_ge(n, 1200);
	ck_assert_int_ge(nan, 8);
	ck_assert_int_ge(inf, 5);	/* two Inf in, three overflows */
	ck_assert_int_ge(sub, 8);
	ck_assert_float_eq(ftk_bf16_round(1.00390625f), 1.0f);		/* tie, even kept half: stays */
	ck_assert_float_eq(ftk_bf16_round(1.01171875f), 1.015625f);	/* tie, odd: up */
}
END_TEST

static Suite *ops_shared_suite(void)
{
	Suite *s = suite_create("ops_shared");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, rmsnorm_matches_torch);
	tcase_add_test(tc, rmsnorm_warp_parts_match_row);
	tcase_add_test(tc, softmax_matches_torch);
	tcase_add_test(tc, swiglu_matches_torch);
	tcase_add_test(tc, xent_matches_torch);
	tcase_add_test(tc, xent_block_parts_match_row);
	tcase_add_test(tc, softmax_block_parts_match_row);
	tcase_add_test(tc, rope_matches_hf);
	tcase_add_test(tc, adamw_both_headers_match_torch);
	tcase_add_test(tc, dropout_keep_rate);
	tcase_add_test(tc, bf16_matches_torch);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(ops_shared_suite)
