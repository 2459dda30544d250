/*
 * test_bf16.c: --precision bf16 on the CPU backend (the reference the CUDA
 * backend's bf16 path is checked against) against PyTorch.
 *
 * tools/ref/bf16_lora_ref.py runs stories260K with LoRA rank 4 (alpha 8) on
 * every projection of every layer in plain torch, once with every matrix
 * product rounding both operands to bf16 (tensor.bfloat16()) and adding in
 * float32, once in float32, and stores the loss and every LoRA gradient of
 * both (tests/fixtures/trainer/bf16_lora_ref.safetensors), on the first 8
 * tokens of reference.json.  ftk computes the same step under both
 * precisions.
 *
 * What must hold, and why the tolerances are what they are:
 *   - fp32 against torch fp32: loss within 1e-4 relative and gradients
 *     within 1e-4 of the largest, as test_model.c's LoRA check; this shows
 *     the reference script computes ftk's network at all.
 *   - bf16 against torch bf16: loss within 1e-4 relative, gradients within
 *     5e-3 as ||ftk - torch|| / ||torch||.  Both round the same values the
 *     same way, but a different order of fp32 additions can leave a value
 *     one fp32 ulp to the other side of a bf16 rounding boundary, and the
 *     neighbouring bf16 value then travels on through the network: the
 *     reference script itself, adding its products in float64 instead,
 *     moves the gradients by 9e-4 this way (the loss by 1e-7), so 5e-3
 *     leaves room for an implementation that adds in another order.
 *     (ftk and torch happen to agree to 2e-9 here: sums of bf16 products
 *     this short are mostly exact in fp32.)
 *   - bf16 against torch fp32 is off by the expected order, 4.3e-2: the
 *     test wants more than 2e-2 and five times the distance to torch
 *     bf16, so a bf16 path that silently ran in fp32 fails here (tried by
 *     making the CPU backend's set_precision ignore bf16).
 * Every measured value is printed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "testutil.h"
#include "lib/strbuf.h"
#include "model/model.h"
#include "model/nf4.h"
#include "model/ops.h"
#include "model/safetensors.h"

#define S260 "datasets/models/stories260K"
#define REF "tests/fixtures/trainer/bf16_lora_ref.safetensors"

static const float *ref_f32(const struct ftk_st *st, const char *prefix, const char *name,
			    int64_t numel)
{
	char key[256];
	snprintf(key, sizeof(key), "%s%s", prefix, name);
	const struct ftk_st_tensor *t = ftk_st_find(st, key);
	ck_assert_msg(t != NULL, "'%s' missing from %s", key, REF);
	ck_assert_int_eq(t->dtype, FTK_F32);
	ck_assert_int_eq(t->numel, numel);
	return t->data;
}

struct cmp {
	double loss_rel;	/* |loss - ref| / |ref| */
	double norm_rel;	/* ||g - ref|| / ||ref|| over every LoRA gradient */
	double max_rel;		/* max |g - ref| / max |ref| */
};

/* ftk's step at precision prec, compared with the fixture's <which> (bf16, fp32). */
static void run(int prec, struct cmp out[2])
{
	struct ftk_st *st;
	struct ftk_error err;
	ck_assert_int_eq(ftk_st_open(&st, src_path(REF), &err), 0);
	cJSON *ref = NULL;
	struct ftk_model *m;
	struct ftk_load_opts lo = { FTK_QUANT_NONE, NULL, 1, 0 };
	ck_assert_int_eq(ftk_model_load(&m, src_path(S260), &lo, &err), 0);
	ck_assert_int_eq(ftk_model_set_precision(m, prec, &err), 0);
	struct ftk_lora_opts o = { FTK_LORA_ALL, 4, 8.0f, 0, 0.0f, 1 };
	ck_assert_int_eq(ftk_model_lora_init(m, &o, &err), 0);
	size_t nt = ftk_model_lora_count(m);
	ck_assert_int_eq(nt, 5 * 7 * 2);
	for (size_t i = 0; i < nt; i++) {
		const struct ftk_lora_tensor *t = ftk_model_lora_tensor(m, i);
		size_t n = (size_t)t->rows * t->cols;
		memcpy(t->data, ref_f32(st, "lora.", t->name, (int64_t)n), n * sizeof(float));
	}
	/* the first 8 of reference.json's tokens: the torch script's input */
	struct strbuf sb = STRBUF_INIT;
	ck_assert_int_ge(strbuf_read_file(&sb, src_path(S260 "/reference.json")), 0);
	ref = cJSON_Parse(sb.buf);
	strbuf_release(&sb);
	const cJSON *tok = cJSON_GetObjectItem(ref, "tokens");
	ck_assert_int_ge(cJSON_GetArraySize(tok), 8);
	uint32_t ids[8];
	for (int i = 0; i < 8; i++)
		ids[i] = (uint32_t)cJSON_GetArrayItem(tok, i)->valueint;
	struct ftk_batch b = { 1, 8, ids, NULL, NULL };
	double loss;
	ftk_model_zero_grad(m);
	ck_assert_int_eq(ftk_model_forward_backward(m, &b, 7.0, &loss, NULL, &err), 0);
	for (int w = 0; w < 2; w++) {
		const char *which = w ? "fp32" : "bf16";
		char pre[32];
		snprintf(pre, sizeof(pre), "loss_%s", which);
		const struct ftk_st_tensor *lt = ftk_st_find(st, pre);
		ck_assert_ptr_nonnull(lt);
		double rl = ((const float *)lt->data)[0];
		double dn = 0, rn = 0, dmax = 0, rmax = 0;
		snprintf(pre, sizeof(pre), "grad_%s.", which);
		for (size_t i = 0; i < nt; i++) {
			const struct ftk_lora_tensor *t = ftk_model_lora_tensor(m, i);
			size_t n = (size_t)t->rows * t->cols;
			const float *g = ref_f32(st, pre, t->name, (int64_t)n);
			for (size_t j = 0; j < n; j++) {
				double d = (double)t->grad[j] - g[j];
				dn += d * d, rn += (double)g[j] * g[j];
				dmax = fmax(dmax, fabs(d)), rmax = fmax(rmax, fabs(g[j]));
			}
		}
		out[w].loss_rel = fabs(loss / 7.0 - rl) / fabs(rl);
		out[w].norm_rel = sqrt(dn / rn);
		out[w].max_rel = dmax / rmax;
		printf("ftk %s against torch %s: loss %.9f vs %.9f (rel %.2e), gradients "
		       "||diff||/||ref|| %.2e, max|diff|/max|ref| %.2e\n",
		       ftk_precision_name(prec), which, loss / 7.0, rl, out[w].loss_rel,
		       out[w].norm_rel, out[w].max_rel);
		fflush(stdout);
	}
	ftk_model_set_precision(m, FTK_PREC_FP32, NULL);
	ftk_model_free(m);
	ftk_st_close(st);
	cJSON_Delete(ref);
}

START_TEST(fp32_matches_torch_fp32)
{
	struct cmp c[2];
	run(FTK_PREC_FP32, c);
	ck_assert(c[1].loss_rel < 1e-4);
	ck_assert(c[1].max_rel < 1e-4);
}
END_TEST

START_TEST(bf16_matches_torch_bf16)
{
	struct cmp c[2];
	run(FTK_PREC_BF16, c);
	ck_assert_msg(c[0].loss_rel < 1e-4, "loss off torch bf16 by %.2e", c[0].loss_rel);
	ck_assert_msg(c[0].norm_rel < 5e-3, "gradients off torch bf16 by %.2e", c[0].norm_rel);
	/* and it is bf16, not fp32 */
	ck_assert_msg(c[1].norm_rel > 2e-2 && c[1].norm_rel > 5 * c[0].norm_rel,
		      "bf16 gradients only %.2e from fp32's (%.2e from bf16's)", c[1].norm_rel,
		      c[0].norm_rel);
}
END_TEST

/*
 * The CPU backend's bf16 linear ops on an NF4 weight (the path QLoRA runs;
 * the torch comparison above uses float32 weights) against a plain triple
 * loop over the same definition: the dequantized weight and the input,
 * each rounded with ftk_bf16_round, multiplied and summed in double.  The
 * weight (1100 x 1024) is larger than one 1M-value tile and the backend
 * runs on two threads, so the tiling, the per-thread slices and the
 * column slices of the backward pass are all crossed; M = 3 is the few-rows
 * case that fp32 handles with a fused loop.  Tolerance 1e-5 of the largest
 * value: only the order and precision of the additions differ.
 */
START_TEST(nf4_linear_bf16_matches_loops)
{
	int N = 1100, K = 1024;
	uint64_t s = 12345;
	float *w = malloc((size_t)N * K * sizeof(float)), *wd = malloc((size_t)N * K * sizeof(float));
	for (size_t i = 0; i < (size_t)N * K; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		w[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5) * 0.2f;
	}
	struct ftk_weight wt = { N, K, FTK_QUANT_NF4, NULL, { 0 }, NULL };
	ftk_nf4_quantize(&wt.nf4, w, (size_t)N * K, NULL);
	ftk_nf4_dequant(&wt.nf4, 0, (size_t)N * K, wd);
	for (size_t i = 0; i < (size_t)N * K; i++)
		wd[i] = ftk_bf16_round(wd[i]);
	struct ftk_backend *cpu = ftk_backend_cpu_new();
	cpu->ops->set_threads(cpu, 2);
	ck_assert_int_eq(cpu->ops->set_precision(cpu, FTK_PREC_BF16), 0);
	int Ms[2] = { 9, 3 };
	for (int mi = 0; mi < 2; mi++) {
		int M = Ms[mi];
		float *x = malloc((size_t)M * K * sizeof(float)), *dy = malloc((size_t)M * N * sizeof(float));
		float *y = malloc((size_t)M * N * sizeof(float)), *dx = calloc((size_t)M * K, sizeof(float));
		for (size_t i = 0; i < (size_t)M * K; i++)
			x[i] = sinf(0.37f * (float)i) * 3.0f;
		for (size_t i = 0; i < (size_t)M * N; i++)
			dy[i] = cosf(0.11f * (float)i);
		cpu->ops->linear_fwd(cpu, y, x, &wt, NULL, M);
		cpu->ops->linear_bwd_inp(cpu, dx, dy, &wt, M);
		double ey = 0, my = 0, ex = 0, mx = 0;
		for (int m = 0; m < M; m++) {
			for (int n = 0; n < N; n++) {
				double acc = 0;
				for (int k = 0; k < K; k++)
					acc += (double)ftk_bf16_round(x[(size_t)m * K + k]) * wd[(size_t)n * K + k];
				ey = fmax(ey, fabs(acc - y[(size_t)m * N + n]));
				my = fmax(my, fabs(acc));
			}
			for (int k = 0; k < K; k++) {
				double acc = 0;
				for (int n = 0; n < N; n++)
					acc += (double)ftk_bf16_round(dy[(size_t)m * N + n]) * wd[(size_t)n * K + k];
				ex = fmax(ex, fabs(acc - dx[(size_t)m * K + k]));
				mx = fmax(mx, fabs(acc));
			}
		}
		printf("nf4 bf16 M=%d: linear_fwd max|diff|/max %.2e, linear_bwd_inp %.2e (tolerance 1e-5)\n",
		       M, ey / my, ex / mx);
		ck_assert(ey <= 1e-5 * my);
		ck_assert(ex <= 1e-5 * mx);
		free(x), free(dy), free(y), free(dx);
	}
	ftk_backend_free(cpu);
	ftk_nf4_free(&wt.nf4);
	free(w), free(wd);
}
END_TEST

static Suite *bf16_suite(void)
{
	Suite *s = suite_create("bf16");
	TCase *tc = tcase_create("core");
	/* loads real tokenizers or the model: 6-9 s under ASan on a loaded 2-core machine */
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, fp32_matches_torch_fp32);
	tcase_add_test(tc, bf16_matches_torch_bf16);
	tcase_add_test(tc, nf4_linear_bf16_matches_loops);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(bf16_suite)
