/*
 * test_grad.c: every backward op against central finite differences.
 *
 * Each op check builds a scalar L = sum_i w_i * f(x)_i with random weights
 * w (accumulated in double), gets dL/dx from the backward op with dout = w,
 * and compares it with (L(x + h e_j) - L(x - h e_j)) / 2h for every input
 * element j.  The ops compute in float32, so h is 1e-2 and the tolerance is
 * relative to the largest gradient; a wrong formula misses by O(1).  Each
 * check prints its maximum difference and tolerance.
 *
 * The whole model is then checked the same way on small random models
 * (Llama with GQA and an untied head; Qwen2 biases; Qwen3 q/k norms) with
 * LoRA on all seven projections, dropout, document masks and a loss mask,
 * through ftk_model_forward_backward itself (the dropout generator state is
 * reset before each evaluation so every evaluation sees the same masks).
 * Last, the properties the trainer relies on: micro-batches with a shared
 * normaliser add up to the full batch, gradient checkpointing changes
 * nothing, and packed documents do not see each other.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "testutil.h"
#include "model/backend.h"
#include "model/model.h"
#include "model/ops.h"
#include "model/rng.h"
#include "model/safetensors.h"

/* The CPU instance every test here computes on, made in each test's process. */
static struct ftk_backend *be;
static void be_new(void)
{
	be = ftk_backend_cpu_new();
}
static void be_free(void)
{
	ftk_backend_free(be);
}
static struct ftk_rng rng;

static float frand(void)
{
	return (float)(2.0 * ftk_rng_uniform(&rng) - 1.0);
}

static float *rnd(size_t n, float scale)
{
	float *x = malloc(n * sizeof(float));
	for (size_t i = 0; i < n; i++)
		x[i] = frand() * scale;
	return x;
}

static double dot(const float *w, const float *y, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)w[i] * y[i];
	return s;
}

/* Compare analytic grad g with FD of loss() over x[0..n); returns max |diff| / max |g|. */
static double fd_check(const char *what, float *x, size_t n, const float *g, double (*loss)(void *),
		       void *ctx, float h, double tol)
{
	double md = 0, mg = 0;
	for (size_t j = 0; j < n; j++) {
		float x0 = x[j];
		x[j] = x0 + h;
		double lp = loss(ctx);
		x[j] = x0 - h;
		double lm = loss(ctx);
		x[j] = x0;
		double fd = (lp - lm) / (2.0 * h);
		double d = fabs(fd - g[j]);
		md = d > md ? d : md;
		mg = fabs(g[j]) > mg ? fabs(g[j]) : mg;
	}
	double rel = md / (mg > 0 ? mg : 1);
	printf("%-36s max |fd - grad| = %.3g, max |grad| = %.3g, relative %.3g (tolerance %.0e)\n", what,
	       md, mg, rel, tol);
	ck_assert_msg(rel < tol, "%s: relative difference %g exceeds %g", what, rel, tol);
	ck_assert(mg > 0);
	return rel;
}

/* ---------------------------------------------------------------- rmsnorm */

struct rms_t {
	int M, C;
	float *x, *w, *wout, *y, *rstd;
};

static double rms_loss(void *v)
{
	struct rms_t *t = v;
	be->ops->rmsnorm_fwd(be, t->y, t->rstd, t->x, t->w, t->M, t->C, 1e-5f);
	return dot(t->wout, t->y, (size_t)t->M * t->C);
}

START_TEST(grad_rmsnorm)
{
	ftk_rng_seed(&rng, 1);
	struct rms_t t = { 3, 7, rnd(21, 1), rnd(7, 1), rnd(21, 1), rnd(21, 1), rnd(3, 1) };
	rms_loss(&t);
	float *dx = calloc(21, sizeof(float));
	be->ops->rmsnorm_bwd(be, dx, t.wout, t.x, t.w, t.rstd, t.M, t.C);
	fd_check("rmsnorm", t.x, 21, dx, rms_loss, &t, 1e-2f, 1e-3);
	free(t.x), free(t.w), free(t.wout), free(t.y), free(t.rstd), free(dx);
}
END_TEST

/* ---------------------------------------------------------------- rope */

struct rope_t {
	int M, nh, hd;
	float *x, *y, *wout, *inv;
	int32_t *pos;
};

static double rope_loss(void *v)
{
	struct rope_t *t = v;
	size_t n = (size_t)t->M * t->nh * t->hd;
	memcpy(t->y, t->x, n * sizeof(float));
	be->ops->rope(be, t->y, t->pos, t->inv, t->M, t->nh, t->hd, 1);
	return dot(t->wout, t->y, n);
}

START_TEST(grad_rope)
{
	ftk_rng_seed(&rng, 2);
	int M = 4, nh = 2, hd = 8, n = M * nh * hd;
	float inv[4];
	for (int j = 0; j < hd / 2; j++)
		inv[j] = ftk_rope_inv_freq(j, hd, 10000.0f, 0, 0, 0, 0);
	int32_t pos[4] = { 0, 1, 5, 17 };
	struct rope_t t = { M, nh, hd, rnd(n, 1), rnd(n, 1), rnd(n, 1), inv, pos };
	float *dx = malloc(n * sizeof(float));
	memcpy(dx, t.wout, n * sizeof(float));
	be->ops->rope(be, dx, pos, inv, M, nh, hd, -1);
	fd_check("rope (HF rotate_half)", t.x, n, dx, rope_loss, &t, 1e-2f, 1e-3);
	free(t.x), free(t.y), free(t.wout), free(dx);
}
END_TEST

START_TEST(rope_llama3_scaling)
{
	/* Llama 3.1's rope_scaling: factor 8, low 1, high 4, original 8192,
	 * theta 500000, head_dim 128; values from transformers'
	 * _compute_llama3_parameters evaluated in float64 */
	float f0 = ftk_rope_inv_freq(0, 128, 500000.0f, 8.0f, 1.0f, 4.0f, 8192);
	float f63 = ftk_rope_inv_freq(63, 128, 500000.0f, 8.0f, 1.0f, 4.0f, 8192);
	/* j = 0: wavelength 2 pi < 2048: kept; j = 63: wavelength far above 8192: divided by 8 */
	ck_assert_float_eq_tol(f0, 1.0f, 1e-7f);
	double raw63 = 1.0 / pow(500000.0, 126.0 / 128.0);
	ck_assert_float_eq_tol(f63, (float)(raw63 / 8.0), 1e-12f);
	/* j = 32: wavelength 4443, between 8192/4 and 8192: the smooth blend */
	float f32 = ftk_rope_inv_freq(32, 128, 500000.0f, 8.0f, 1.0f, 4.0f, 8192);
	double raw32 = 1.0 / pow(500000.0, 64.0 / 128.0);
	double wl = 2 * M_PI / raw32;
	double smooth = (8192.0 / wl - 1.0) / 3.0;
	printf("llama3 rope: j=32 wavelength %.1f, smooth %.4f\n", wl, smooth);
	ck_assert(wl > 2048 && wl < 8192);
	ck_assert_float_eq_tol(f32, (float)((1 - smooth) * raw32 / 8 + smooth * raw32), 1e-9f);
	ck_assert(f32 < raw32 && f32 > raw32 / 8);
}
END_TEST

/* ---------------------------------------------------------------- attention */

struct att_t {
	int B, T, NH, NKV, hd;
	float *q, *k, *v, *out, *att, *wout;
	int32_t *doc;
};

static double att_loss(void *vv)
{
	struct att_t *t = vv;
	be->ops->attn_fwd(be, t->out, t->att, t->q, t->k, t->v, t->doc, t->B, t->T, t->NH, t->NKV,
			  t->hd);
	return dot(t->wout, t->out, (size_t)t->B * t->T * t->NH * t->hd);
}

static void att_case(int B, int T, const int32_t *doc, const char *what)
{
	int NH = 4, NKV = 2, hd = 4;
	size_t nq = (size_t)B * T * NH * hd, nk = (size_t)B * T * NKV * hd;
	struct att_t t = { B, T, NH, NKV, hd, rnd(nq, 1), rnd(nk, 1), rnd(nk, 1), rnd(nq, 1),
			   rnd((size_t)B * NH * T * T, 1), rnd(nq, 1), (int32_t *)doc };
	att_loss(&t);
	float *dq = calloc(nq, 4), *dk = calloc(nk, 4), *dv = calloc(nk, 4);
	be->ops->attn_bwd(be, dq, dk, dv, t.wout, t.att, t.q, t.k, t.v, B, T, NH, NKV, hd);
	char w[96];
	snprintf(w, sizeof(w), "%s dq", what);
	fd_check(w, t.q, nq, dq, att_loss, &t, 1e-2f, 1e-3);
	snprintf(w, sizeof(w), "%s dk", what);
	fd_check(w, t.k, nk, dk, att_loss, &t, 1e-2f, 1e-3);
	snprintf(w, sizeof(w), "%s dv", what);
	fd_check(w, t.v, nk, dv, att_loss, &t, 1e-2f, 1e-3);
	/* the document mask: a position that starts a document sees only itself */
	for (int i = 1; i < B * T; i++) {
		if (i % T == 0 || doc[i] == doc[i - 1])
			continue;
		for (int h = 0; h < NH; h++)
			for (int k = 0; k < hd; k++)
				ck_assert_float_eq_tol(t.out[((size_t)i * NH + h) * hd + k],
						       t.v[((size_t)i * NKV + h / 2) * hd + k], 1e-6f);
	}
	free(t.q), free(t.k), free(t.v), free(t.out), free(t.att), free(t.wout);
	free(dq), free(dk), free(dv);
}

START_TEST(grad_attention_gqa_docs)
{
	ftk_rng_seed(&rng, 3);
	int32_t doc[10] = { 0, 0, 1, 1, 1, 7, 7, 7, 7, 7 };
	att_case(2, 5, doc, "attention");
	/* longer than the 64-row blocks the CPU backend cuts the products into,
	 * with documents that straddle block boundaries */
	int32_t doc2[150];
	for (int i = 0; i < 150; i++)
		doc2[i] = i < 50 ? 0 : i < 70 ? 1 : i < 129 ? 2 : 3;
	att_case(1, 150, doc2, "attention T=150 blocks");
}
END_TEST

/* ---------------------------------------------------------------- swiglu, xent, linear */

struct sw_t {
	size_t n;
	float *g, *u, *y, *wout;
};

static double sw_loss(void *v)
{
	struct sw_t *t = v;
	be->ops->swiglu_fwd(be, t->y, t->g, t->u, t->n);
	return dot(t->wout, t->y, t->n);
}

START_TEST(grad_swiglu)
{
	ftk_rng_seed(&rng, 4);
	size_t n = 40;
	struct sw_t t = { n, rnd(n, 3), rnd(n, 1), rnd(n, 1), rnd(n, 1) };
	float *dg = malloc(n * 4), *du = malloc(n * 4);
	be->ops->swiglu_bwd(be, dg, du, t.wout, t.g, t.u, n);
	fd_check("swiglu d/dgate", t.g, n, dg, sw_loss, &t, 1e-2f, 1e-3);
	fd_check("swiglu d/dup", t.u, n, du, sw_loss, &t, 1e-2f, 1e-3);
	free(t.g), free(t.u), free(t.y), free(t.wout), free(dg), free(du);
}
END_TEST

struct xe_t {
	int M, V;
	float *x, *tmp, *loss;
	int32_t *target;
};

static double xe_loss(void *v)
{
	struct xe_t *t = v;
	memcpy(t->tmp, t->x, (size_t)t->M * t->V * 4);
	be->ops->xent(be, t->loss, t->tmp, t->target, t->M, t->V, 0.0f);
	double s = 0;
	for (int m = 0; m < t->M; m++)
		s += t->loss[m];
	return s;
}

START_TEST(grad_cross_entropy)
{
	ftk_rng_seed(&rng, 5);
	int M = 3, V = 11;
	int32_t target[3] = { 4, -1, 10 };
	struct xe_t t = { M, V, rnd((size_t)M * V, 3), rnd((size_t)M * V, 1), rnd(M, 1), target };
	float *g = malloc((size_t)M * V * 4);
	memcpy(g, t.x, (size_t)M * V * 4);
	be->ops->xent(be, t.loss, g, target, M, V, 1.0f);
	ck_assert_float_eq(t.loss[1], 0.0f);
	fd_check("cross-entropy", t.x, (size_t)M * V, g, xe_loss, &t, 1e-2f, 1e-3);
	free(t.x), free(t.tmp), free(t.loss), free(g);
}
END_TEST

struct lin_t {
	int M;
	struct ftk_weight *w;
	float *x, *y, *wout;
};

static double lin_loss(void *v)
{
	struct lin_t *t = v;
	be->ops->linear_fwd(be, t->y, t->x, t->w, NULL, t->M);
	return dot(t->wout, t->y, (size_t)t->M * t->w->rows);
}

static void lin_case(enum ftk_quant q, int M)
{
	int N = 24, K = 128;
	struct ftk_weight w = { N, K, q, NULL, { 0 }, NULL };
	float *wf = rnd((size_t)N * K, 1);
	if (q == FTK_QUANT_NONE)
		w.f32 = wf;
	else
		ftk_nf4_quantize(&w.nf4, wf, (size_t)N * K, NULL);
	struct lin_t t = { M, &w, rnd((size_t)M * K, 1), rnd((size_t)M * N, 1), rnd((size_t)M * N, 1) };
	float *dx = calloc((size_t)M * K, 4);
	be->ops->linear_bwd_inp(be, dx, t.wout, &w, M);
	char what[64];
	snprintf(what, sizeof(what), "linear %s M=%d", q ? "nf4" : "f32", M);
	fd_check(what, t.x, (size_t)M * K, dx, lin_loss, &t, 1e-2f, 1e-3);
	ftk_nf4_free(&w.nf4);
	free(wf), free(t.x), free(t.y), free(t.wout), free(dx);
}

START_TEST(grad_linear)
{
	ftk_rng_seed(&rng, 6);
	lin_case(FTK_QUANT_NONE, 5);
	lin_case(FTK_QUANT_NF4, 5);	/* tiled dequantize + sgemm */
	lin_case(FTK_QUANT_NF4, 2);	/* fused decode loop for few rows */
}
END_TEST

/* ---------------------------------------------------------------- whole model */

/* Write a random model directory: config.json and model.safetensors (our writer). */
static void make_model(const char *dir, const char *arch, int tied)
{
	mkdir(dir, 0755);
	int C = 16, H = 24, L = 2, NH = 4, NKV = 2, hd = 4, V = 19;
	char path[512];
	snprintf(path, sizeof(path), "%s/config.json", dir);
	FILE *f = fopen(path, "w");
	fprintf(f, "{\"model_type\":\"%s\",\"hidden_size\":%d,\"intermediate_size\":%d,"
		   "\"num_hidden_layers\":%d,\"num_attention_heads\":%d,\"num_key_value_heads\":%d,"
		   "\"head_dim\":%d,\"vocab_size\":%d,\"max_position_embeddings\":64,"
		   "\"rms_norm_eps\":1e-6,\"rope_theta\":10000.0,\"tie_word_embeddings\":%s,"
		   "\"hidden_act\":\"silu\",\"eos_token_id\":2,\"bos_token_id\":1}\n",
		arch, C, H, L, NH, NKV, hd, V, tied ? "true" : "false");
	fclose(f);
	struct ftk_st_writer *w = ftk_st_writer_new();
	float *bufs[64];
	int nb = 0;
#define ADD(name, r, c)                                                            \
	do {                                                                       \
		int64_t sh[2] = { r, c };                                          \
		bufs[nb] = rnd((size_t)(r) * ((c) ? (c) : 1), 0.5f);               \
		ftk_st_writer_add(w, name, FTK_F32, (c) ? 2 : 1, sh, bufs[nb]);    \
		nb++;                                                              \
	} while (0)
	ADD("model.embed_tokens.weight", V, C);
	ADD("model.norm.weight", C, 0);
	if (!tied)
		ADD("lm_head.weight", V, C);
	char n[128];
	for (int l = 0; l < L; l++) {
		const char *p[] = { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
				    "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj" };
		int rows[] = { NH * hd, NKV * hd, NKV * hd, C, H, H, C };
		int cols[] = { C, C, C, NH * hd, C, C, H };
		for (int t = 0; t < 7; t++) {
			snprintf(n, sizeof(n), "model.layers.%d.%s.weight", l, p[t]);
			ADD(n, rows[t], cols[t]);
			if (t < 3 && !strcmp(arch, "qwen2")) {
				snprintf(n, sizeof(n), "model.layers.%d.%s.bias", l, p[t]);
				ADD(n, rows[t], 0);
			}
		}
		snprintf(n, sizeof(n), "model.layers.%d.input_layernorm.weight", l);
		ADD(n, C, 0);
		snprintf(n, sizeof(n), "model.layers.%d.post_attention_layernorm.weight", l);
		ADD(n, C, 0);
		if (!strcmp(arch, "qwen3")) {
			snprintf(n, sizeof(n), "model.layers.%d.self_attn.q_norm.weight", l);
			ADD(n, hd, 0);
			snprintf(n, sizeof(n), "model.layers.%d.self_attn.k_norm.weight", l);
			ADD(n, hd, 0);
		}
	}
#undef ADD
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	ck_assert_int_eq(ftk_st_writer_save(w, path, NULL), 0);
	ftk_st_writer_free(w);
	for (int i = 0; i < nb; i++)
		free(bufs[i]);
}

struct mdl_t {
	struct ftk_model *m;
	struct ftk_batch *b;
	struct ftk_model_rng r;
	double norm;
};

static double mdl_loss(void *v)
{
	struct mdl_t *t = v;
	double loss;
	ftk_model_rng_set(t->m, &t->r);
	ck_assert_int_eq(ftk_model_forward_backward(t->m, t->b, t->norm, &loss, NULL, NULL), 0);
	return loss / t->norm;
}

/* batch: B=2, T=6, two documents in row 0, a loss mask with holes */
static const uint32_t b_ids[12] = { 1, 5, 6, 7, 1, 9, 1, 3, 4, 18, 11, 12 };
static const uint8_t b_mask[12] = { 0, 1, 1, 0, 0, 1, 0, 0, 1, 1, 1, 1 };
static const uint32_t b_doc[12] = { 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0 };

static void model_fd(const char *arch, int tied, enum ftk_quant q, float dropout, int ckpt)
{
	ftk_rng_seed(&rng, 7);
	make_model("m", arch, tied);
	struct ftk_model *m;
	struct ftk_error e;
	struct ftk_load_opts lo = { q, NULL, 1, 0 };
	if (ftk_model_load(&m, "m", &lo, &e) < 0)
		ck_abort_msg("%s", e.msg);
	ftk_model_set_checkpointing(m, ckpt);
	struct ftk_lora_opts o = { FTK_LORA_ALL, 2, 4.0f, 1, dropout, 42 };
	ck_assert_int_eq(ftk_model_lora_init(m, &o, NULL), 0);
	size_t n;
	float *p = ftk_model_lora_flat(m, &n);
	for (size_t i = 0; i < n; i++)
		p[i] = frand() * 0.3f;	/* B non-zero so every path carries gradient */
	struct ftk_batch b = { 2, 6, b_ids, b_mask, b_doc };
	long nt = ftk_batch_count_targets(&b);
	ck_assert_int_eq(nt, 7);	/* row 0: 1, 2, 5 (4 starts document 1 and is masked); row 1: 8..11 */
	struct mdl_t t = { m, &b, { 99, 5 }, (double)nt };
	ftk_model_zero_grad(m);
	mdl_loss(&t);
	float *g = malloc(n * sizeof(float));
	memcpy(g, ftk_model_lora_grad_flat(m, NULL), n * sizeof(float));
	/* every LoRA parameter, checked one at a time */
	char what[96];
	snprintf(what, sizeof(what), "model %s%s%s%s", arch, tied ? " tied" : "", q ? " nf4" : "",
		 dropout > 0 ? " dropout" : "");
	if (ckpt)
		strcat(what, " ckpt");
	fd_check(what, p, n, g, mdl_loss, &t, 1e-2f, 5e-3);
	free(g);
	ftk_model_free(m);
}

START_TEST(grad_model_llama)
{
	model_fd("llama", 0, FTK_QUANT_NONE, 0.0f, 0);
}
END_TEST

START_TEST(grad_model_qwen2_nf4_dropout)
{
	model_fd("qwen2", 1, FTK_QUANT_NF4, 0.25f, 0);
}
END_TEST

START_TEST(grad_model_qwen3_ckpt_dropout)
{
	model_fd("qwen3", 0, FTK_QUANT_NONE, 0.25f, 1);
}
END_TEST

static struct ftk_model *small_model(const char *arch, int ckpt, float dropout)
{
	ftk_rng_seed(&rng, 8);
	make_model("m", arch, 0);
	struct ftk_model *m;
	struct ftk_load_opts lo = { FTK_QUANT_NONE, NULL, 1, 0 };
	ck_assert_int_eq(ftk_model_load(&m, "m", &lo, NULL), 0);
	ftk_model_set_checkpointing(m, ckpt);
	struct ftk_lora_opts o = { FTK_LORA_ALL, 3, 6.0f, 0, dropout, 5 };
	ck_assert_int_eq(ftk_model_lora_init(m, &o, NULL), 0);
	size_t n;
	float *p = ftk_model_lora_flat(m, &n);
	for (size_t i = 0; i < n; i++)
		p[i] = frand() * 0.3f;
	return m;
}

START_TEST(accumulation_equals_full_batch)
{
	struct ftk_model *m = small_model("llama", 0, 0.0f);
	size_t n;
	struct ftk_batch full = { 2, 6, b_ids, b_mask, b_doc };
	struct ftk_batch h0 = { 1, 6, b_ids, b_mask, b_doc };
	struct ftk_batch h1 = { 1, 6, b_ids + 6, b_mask + 6, b_doc + 6 };
	long nt = ftk_batch_count_targets(&full);
	ck_assert_int_eq(nt, ftk_batch_count_targets(&h0) + ftk_batch_count_targets(&h1));
	double l_full, l0, l1;
	ftk_model_zero_grad(m);
	ck_assert_int_eq(ftk_model_forward_backward(m, &full, (double)nt, &l_full, NULL, NULL), 0);
	float *g = ftk_model_lora_grad_flat(m, &n);
	float *gf = malloc(n * 4);
	memcpy(gf, g, n * 4);
	ftk_model_zero_grad(m);
	ck_assert_int_eq(ftk_model_forward_backward(m, &h0, (double)nt, &l0, NULL, NULL), 0);
	ck_assert_int_eq(ftk_model_forward_backward(m, &h1, (double)nt, &l1, NULL, NULL), 0);
	double md = 0, mg = 0;
	for (size_t i = 0; i < n; i++) {
		md = fmax(md, fabs(g[i] - gf[i]));
		mg = fmax(mg, fabs(gf[i]));
	}
	printf("accumulation: loss %.7f vs %.7f, max |grad diff| %.3g of %.3g (tolerance 1e-5 relative)\n",
	       l_full, l0 + l1, md, mg);
	ck_assert(fabs(l_full - (l0 + l1)) < 1e-4);
	ck_assert(md < 1e-5 * mg);
	free(gf);
	ftk_model_free(m);
}
END_TEST

START_TEST(checkpointing_changes_nothing)
{
	float *g[2];
	size_t n = 0;
	double loss[2];
	for (int c = 0; c < 2; c++) {
		struct ftk_model *m = small_model("qwen3", c, 0.3f);
		struct ftk_batch b = { 2, 6, b_ids, b_mask, b_doc };
		ftk_model_zero_grad(m);
		ck_assert_int_eq(ftk_model_forward_backward(m, &b, 6.0, &loss[c], NULL, NULL), 0);
		float *gg = ftk_model_lora_grad_flat(m, &n);
		g[c] = malloc(n * 4);
		memcpy(g[c], gg, n * 4);
		ftk_model_free(m);
	}
	ck_assert(loss[0] == loss[1]);
	ck_assert(!memcmp(g[0], g[1], n * 4));
	printf("checkpointing: identical loss %.7f and %zu identical gradients (dropout 0.3)\n", loss[0], n);
	free(g[0]), free(g[1]);
}
END_TEST

/*
 * Flash attention (--attention flash) against the saved probabilities, through the
 * whole model: loss, every LoRA gradient and the evaluation logits, for each
 * architecture (GQA, Qwen2 biases, Qwen3 q/k norms), with and without checkpointing,
 * with dropout and two documents in a row.
 */
START_TEST(flash_attention_matches_full)
{
	const char *arch[3] = { "llama", "qwen2", "qwen3" };
	for (int a = 0; a < 3; a++)
		for (int ck = 0; ck < 2; ck++) {
			float *g[2], *lg[2];
			size_t n = 0;
			double loss[2];
			int V = 0;
			for (int f = 0; f < 2; f++) {
				struct ftk_model *m = small_model(arch[a], ck, 0.3f);
				ck_assert_int_eq(ftk_model_set_attention(m, f ? FTK_ATTN_FLASH : FTK_ATTN_FULL,
									 NULL), 0);
				struct ftk_batch b = { 2, 6, b_ids, b_mask, b_doc };
				ftk_model_zero_grad(m);
				ck_assert_int_eq(ftk_model_forward_backward(m, &b, 6.0, &loss[f], NULL, NULL), 0);
				float *gg = ftk_model_lora_grad_flat(m, &n);
				g[f] = malloc(n * 4);
				memcpy(g[f], gg, n * 4);
				V = ftk_model_config(m)->vocab_size;
				lg[f] = malloc((size_t)12 * V * 4);
				ck_assert_int_eq(ftk_model_forward(m, &b, lg[f], NULL, NULL, NULL), 0);
				ftk_model_free(m);
			}
			double md = 0, mg = 0, ml = 0, mlv = 0;
			for (size_t i = 0; i < n; i++) {
				md = fmax(md, fabs(g[0][i] - g[1][i]));
				mg = fmax(mg, fabs(g[0][i]));
			}
			for (int i = 0; i < 12 * V; i++) {
				ml = fmax(ml, fabs(lg[0][i] - lg[1][i]));
				mlv = fmax(mlv, fabs(lg[0][i]));
			}
			double rl = fabs(loss[0] - loss[1]) / fabs(loss[0]);
			printf("flash vs full, %s%s: loss %.2g, gradients %.2g, logits %.2g relative "
			       "(tolerance 3e-6)\n",
			       arch[a], ck ? " checkpointed" : "", rl, md / mg, ml / mlv);
			ck_assert(rl < 3e-6 && md / mg < 3e-6 && ml / mlv < 3e-6);
			ck_assert(mg > 0);
			free(g[0]), free(g[1]), free(lg[0]), free(lg[1]);
		}
}
END_TEST

START_TEST(packed_documents_are_independent)
{
	struct ftk_model *m = small_model("llama", 0, 0.0f);
	int V = ftk_model_config(m)->vocab_size;
	/* row: doc A (3 tokens) then doc B (3 tokens); B alone must give the same logits */
	uint32_t ids[6] = { 1, 5, 6, 1, 9, 10 };
	uint32_t doc[6] = { 0, 0, 0, 1, 1, 1 };
	float *lp = malloc(6 * V * 4), *lb = malloc(3 * V * 4);
	struct ftk_batch packed = { 1, 6, ids, NULL, doc };
	struct ftk_batch alone = { 1, 3, ids + 3, NULL, NULL };
	ck_assert_int_eq(ftk_model_forward(m, &packed, lp, NULL, NULL, NULL), 0);
	ck_assert_int_eq(ftk_model_forward(m, &alone, lb, NULL, NULL, NULL), 0);
	double md = 0;
	for (int i = 0; i < 3 * V; i++)
		md = fmax(md, fabs(lp[3 * V + i] - lb[i]));
	printf("packing: max |logit diff| between packed and alone %.3g (tolerance 1e-5)\n", md);
	ck_assert(md < 1e-5);
	/* and without the document ids they differ */
	struct ftk_batch nodoc = { 1, 6, ids, NULL, NULL };
	ck_assert_int_eq(ftk_model_forward(m, &nodoc, lp, NULL, NULL, NULL), 0);
	md = 0;
	for (int i = 0; i < 3 * V; i++)
		md = fmax(md, fabs(lp[3 * V + i] - lb[i]));
	ck_assert(md > 1e-3);
	free(lp), free(lb);
	ftk_model_free(m);
}
END_TEST

/* ---------------------------------------------------------------- threaded products */

/* C = alpha op(A) op(B) + beta C in double, as the reference for gemm. */
static void naive_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
		       const float *B, int ldb, float beta, float *C, int ldc)
{
	for (int i = 0; i < M; i++)
		for (int j = 0; j < N; j++) {
			double s = 0;
			for (int k = 0; k < K; k++)
				s += (double)(ta ? A[k * lda + i] : A[i * lda + k]) *
				     (tb ? B[j * ldb + k] : B[k * ldb + j]);
			C[i * ldc + j] = (float)(alpha * s + beta * C[i * ldc + j]);
		}
}

START_TEST(gemm_thin_products_threaded)
{
	/* a LoRA shape (one thread) and shapes the CPU backend slices over two threads */
	ftk_rng_seed(&rng, 9);
	be->ops->set_threads(be, 2);
	int shapes[3][3] = { { 1024, 16, 512 }, { 4096, 64, 1024 }, { 600, 300, 200 } };
	double worst = 0;
	for (int sh = 0; sh < 3; sh++)
		for (int ta = 0; ta < 2; ta++)
			for (int tb = 0; tb < 2; tb++) {
				int M = shapes[sh][0], N = shapes[sh][1], K = shapes[sh][2];
				float *A = rnd((size_t)M * K, 1), *B = rnd((size_t)K * N, 1);
				float *C = rnd((size_t)M * N, 1), *R = malloc((size_t)M * N * 4);
				memcpy(R, C, (size_t)M * N * 4);
				int lda = ta ? M : K, ldb = tb ? K : N;
				be->ops->gemm(be, ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 1.0f, C,
					      N);
				naive_gemm(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 1.0f, R, N);
				for (size_t i = 0; i < (size_t)M * N; i++)
					worst = fmax(worst, fabs(C[i] - R[i]));
				free(A), free(B), free(C), free(R);
			}
	/* an NF4 linear large enough to dequantize on both threads */
	int N = 256, K = 512, M = 40;
	float *wf = rnd((size_t)N * K, 1), *x = rnd((size_t)M * K, 1), *y = malloc((size_t)M * N * 4);
	float *wd = malloc((size_t)N * K * 4), *yr = calloc((size_t)M * N, 4);
	struct ftk_weight w = { N, K, FTK_QUANT_NF4, NULL, { 0 }, NULL };
	ftk_nf4_quantize(&w.nf4, wf, (size_t)N * K, NULL);
	ftk_nf4_dequant(&w.nf4, 0, (size_t)N * K, wd);
	for (size_t i = 0; i < (size_t)N * K; i++)	/* the fast dequantizer equals ops.h's decode */
		ck_assert(wd[i] == ftk_nf4_decode(w.nf4.packed, w.nf4.absmax, ftk_nf4_code, i));
	be->ops->linear_fwd(be, y, x, &w, NULL, M);
	naive_gemm(0, 1, M, N, K, 1.0f, x, K, wd, K, 0.0f, yr, N);
	double wl = 0;
	for (size_t i = 0; i < (size_t)M * N; i++)
		wl = fmax(wl, fabs(y[i] - yr[i]));
	/* its input gradient, and both directions with K = 200 (blocks straddle rows) */
	float *dx = calloc((size_t)M * K, 4), *dxr = calloc((size_t)M * K, 4);
	be->ops->linear_bwd_inp(be, dx, yr, &w, M);
	naive_gemm(0, 0, M, K, N, 1.0f, yr, N, wd, K, 0.0f, dxr, K);
	for (size_t i = 0; i < (size_t)M * K; i++)
		wl = fmax(wl, fabs(dx[i] - dxr[i]) / (1.0 + fabs(dxr[i])));
	ftk_nf4_free(&w.nf4);
	int K2 = 200;
	struct ftk_weight w2 = { N, K2, FTK_QUANT_NF4, NULL, { 0 }, NULL };
	ftk_nf4_quantize(&w2.nf4, wf, (size_t)N * K2, NULL);
	ftk_nf4_dequant(&w2.nf4, 0, (size_t)N * K2, wd);
	be->ops->linear_fwd(be, y, x, &w2, NULL, M);
	naive_gemm(0, 1, M, N, K2, 1.0f, x, K2, wd, K2, 0.0f, yr, N);
	for (size_t i = 0; i < (size_t)M * N; i++)
		wl = fmax(wl, fabs(y[i] - yr[i]));
	memset(dx, 0, (size_t)M * K * 4);
	memset(dxr, 0, (size_t)M * K * 4);
	be->ops->linear_bwd_inp(be, dx, yr, &w2, M);
	naive_gemm(0, 0, M, K2, N, 1.0f, yr, N, wd, K2, 0.0f, dxr, K2);
	for (size_t i = 0; i < (size_t)M * K2; i++)
		wl = fmax(wl, fabs(dx[i] - dxr[i]) / (1.0 + fabs(dxr[i])));
	ftk_nf4_free(&w2.nf4);
	free(dx), free(dxr);
	be->ops->set_threads(be, 1);
	printf("threaded gemm vs double loops: max |diff| %.3g; NF4 linear forward and input gradient %.3g (relative to 1 + |value|; tolerance 1e-4)\n", worst, wl);
	ck_assert(worst < 1e-4 && wl < 1e-4);
	free(wf), free(x), free(y), free(wd), free(yr);
}
END_TEST

/* One QLoRA forward/backward of stories260K; g gets the LoRA gradients (n floats,
 * caller frees).  eps != 0 scales every LoRA weight by 1 +- eps first. */
static double lora_step(int threads, float eps, float **g, size_t *n)
{
	static uint32_t ids[8 * 128];	/* 8 x 128 tokens: every op splits over threads */
	ftk_rng_seed(&rng, 10);
	for (int i = 0; i < 8 * 128; i++)
		ids[i] = 3 + (uint32_t)(ftk_rng_uniform(&rng) * 500);
	struct ftk_batch b = { 8, 128, ids, NULL, NULL };
	struct ftk_model *m;
	struct ftk_load_opts lo = { FTK_QUANT_NF4, NULL, threads, 0 };
	ck_assert_int_eq(ftk_model_load(&m, src_path("datasets/models/stories260K"), &lo, NULL), 0);
	struct ftk_lora_opts o = { FTK_LORA_ALL, 4, 8.0f, 0, 0.1f, 3 };
	ck_assert_int_eq(ftk_model_lora_init(m, &o, NULL), 0);
	float *p = ftk_model_lora_flat(m, n);
	for (size_t i = 0; i < *n; i++) {
		p[i] = 0.015f * (float)((i * 7919) % 13) - 0.09f;
		p[i] *= 1.0f + (i % 2 ? eps : -eps);
	}
	ftk_model_zero_grad(m);
	double loss;
	ck_assert_int_eq(ftk_model_forward_backward(m, &b, 1000.0, &loss, NULL, NULL), 0);
	*g = malloc(*n * 4);
	memcpy(*g, ftk_model_lora_grad_flat(m, NULL), *n * 4);
	ftk_model_free(m);
	be->ops->set_threads(be, 1);
	return loss;
}

/* ||a - b|| / ||a||, and the largest |a - b| relative to the largest |a| */
static double rel_norm(const float *a, const float *b, size_t n, double *rel_max)
{
	double dn = 0, an = 0, md = 0, ma = 0;
	for (size_t i = 0; i < n; i++) {
		double d = (double)a[i] - b[i];
		dn += d * d, an += (double)a[i] * a[i];
		md = fmax(md, fabs(d)), ma = fmax(ma, fabs(a[i]));
	}
	*rel_max = md / ma;
	return sqrt(dn / an);
}

START_TEST(two_threads_equal_one)
{
	/*
	 * Threads split every product into slices, and OpenBLAS's kernels may round
	 * a slice's elements differently from the whole (its Haswell sgemm does, its
	 * SkylakeX one does not), so 1 and 2 threads agree to fp32 rounding, not bit
	 * for bit.  How far rounding can move the gradients depends on the input's
	 * conditioning, so the test measures it: the same step with every LoRA
	 * weight moved by one ulp (eps 2^-23 relative) shows how much an
	 * ulp-sized change anywhere reaches the gradients.  The weights are chosen
	 * so that this is small (about 3e-7: an amplification of ~5 over fp32's
	 * 6e-8); the earlier weights, 3.3x larger, saturated attention so that one
	 * ulp moved the gradients by 5e-3, and no tolerance could tell a threading
	 * bug from rounding there.  A wrong slice (a row missed or done twice)
	 * moves whole rows of a product: 1e-2 or more.  So: the input must be
	 * well conditioned (sensitivity < 1e-6), and 2 threads must agree with 1
	 * within 1e-5 (norm-wise and at the largest element), 10x the allowed
	 * sensitivity; the loss, a sum in double of per-token terms, within 1e-6.
	 */
	float *g1, *g2, *gp;
	size_t n;
	double l1 = lora_step(1, 0, &g1, &n);
	double l2 = lora_step(2, 0, &g2, &n);
	lora_step(1, 0x1p-23f, &gp, &n);
	double m12, mp;
	double d12 = rel_norm(g1, g2, n, &m12);
	double dp = rel_norm(g1, gp, n, &mp);
	printf("1 vs 2 threads (stories260K NF4, 8x128, dropout): loss %.6f vs %.6f; "
	       "gradients %.3g norm-wise, %.3g at the largest (tolerance 1e-5); "
	       "one-ulp sensitivity %.3g (must be < 1e-6)\n", l1, l2, d12, m12, dp);
	ck_assert(dp < 1e-6);
	ck_assert(fabs(l1 - l2) < 1e-6 * fabs(l1));
	ck_assert(d12 < 1e-5 && m12 < 1e-5);
	free(g1), free(g2), free(gp);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("grad");
	TCase *tc = tcase_create("ops");
	tcase_add_checked_fixture(tc, be_new, be_free);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, grad_rmsnorm);
	tcase_add_test(tc, grad_rope);
	tcase_add_test(tc, rope_llama3_scaling);
	tcase_add_test(tc, grad_attention_gqa_docs);
	tcase_add_test(tc, grad_swiglu);
	tcase_add_test(tc, grad_cross_entropy);
	tcase_add_test(tc, grad_linear);
	tcase_add_test(tc, grad_model_llama);
	tcase_add_test(tc, grad_model_qwen2_nf4_dropout);
	tcase_add_test(tc, grad_model_qwen3_ckpt_dropout);
	tcase_add_test(tc, accumulation_equals_full_batch);
	tcase_add_test(tc, checkpointing_changes_nothing);
	tcase_add_test(tc, flash_attention_matches_full);
	tcase_add_test(tc, packed_documents_are_independent);
	tcase_add_test(tc, gemm_thin_products_threaded);
	tcase_add_test(tc, two_threads_equal_one);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(suite)
