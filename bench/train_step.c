/*
 * train_step.c: the ftk side of bench/train.sh (built by that script against
 * the trainer and lib archives).
 *
 *   train_step MODEL_DIR THREADS B T RANK STEPS nf4|none [ckpt]
 *       times whole QLoRA steps (zero grads, forward_backward, AdamW over the
 *       LoRA weights) on one fixed random batch after one warm-up step and
 *       prints tokens/s, seconds per step, the loss, the step's floating-point
 *       operations (counted from the shapes, see flops()), GFLOP/s and the
 *       peak resident memory.  FTK_BENCH_ATTENTION=auto|full|flash picks
 *       the attention path (model.h; default auto).
 *   train_step --sgemm THREADS
 *       OpenBLAS sgemm's rate on the model's largest product shape
 *       (1024x1536x512, as x.W^T) and on 2048^3, best of 5 each.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include "model/model.h"
#include "model/ops.h"
#include "model/rng.h"

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec * 1e-6;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double sgemm_rate(int M, int N, int K)
{
	float *a = calloc((size_t)M * K, 4), *b = calloc((size_t)N * K, 4), *c = calloc((size_t)M * N, 4);
	for (size_t i = 0; i < (size_t)M * K; i++)
		a[i] = (float)(i % 7) * 0.1f;
	for (size_t i = 0; i < (size_t)N * K; i++)
		b[i] = (float)(i % 5) * 0.1f;
	double best = 1e9;
	for (int it = 0; it < 6; it++) {
		double t = now();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
		t = now() - t;
		if (it && t < best)
			best = t;
	}
	free(a), free(b), free(c);
	return 2.0 * M * N * K / best / 1e9;
}

/*
 * Floating-point operations of one training step, counting multiply-adds as
 * two: each frozen projection (N, K) costs 2MNK forward and 2MNK for the
 * input gradient (no weight gradient); LoRA 2Mr(K+N) forward and 4Mr(K+N)
 * backward; attention's T x T products per head (QK^T and PV forward,
 * dP, dQ, dK, dV backward: six in all) over the full square, as PyTorch
 * computes them; the head 2MVC forward and 2MVC backward; less the input
 * gradient of layer 0's q, k, v, which neither ftk nor PyTorch computes.
 */
static double flops(const struct ftk_model_config *c, int B, int T, int r)
{
	double M = (double)B * T, C = c->dim, H = c->hidden_dim, q = c->n_heads * c->head_dim,
	       kv = c->n_kv_heads * c->head_dim;
	double NK[7][2] = { { q, C }, { kv, C }, { kv, C }, { C, q }, { H, C }, { H, C }, { C, H } };
	double f = 0;
	for (int t = 0; t < 7; t++)
		f += 4 * M * NK[t][0] * NK[t][1] + 6 * M * r * (NK[t][0] + NK[t][1]);
	f += 6 * 2.0 * B * c->n_heads * (double)T * T * c->head_dim;
	f *= c->n_layers;
	/* layer 0's q, k, v need no input gradient (the embedding is frozen) */
	for (int t = 0; t < 3; t++)
		f -= 2 * M * NK[t][0] * NK[t][1] + 2 * M * r * NK[t][1];
	f += 4 * M * c->vocab_size * C;
	return f;
}

/*
 * ---- optional per-op timing (FTK_BENCH_PROFILE=1): an instance whose ops
 * time the CPU ones around them, on the CPU instance's own state (ctx)
 */
static const struct ftk_backend_ops *base;	/* the CPU backend's ops */
static struct ftk_backend_ops prof_ops;
static struct ftk_backend prof;
static double t_op[8];
static const char *op_names[8] = { "gemm (LoRA)", "linear fwd", "linear bwd", "attention fwd",
				   "attention bwd", "cross-entropy", "rmsnorm", "swiglu" };
#define WRAP(i, call)                  \
	do {                           \
		double t_ = now();     \
		call;                  \
		t_op[i] += now() - t_; \
	} while (0)
static void p_gemm(struct ftk_backend *be, int ta, int tb, int M, int N, int K, float al,
		   const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
	WRAP(0, base->gemm(be, ta, tb, M, N, K, al, A, lda, B, ldb, beta, C, ldc));
}
static void p_lf(struct ftk_backend *be, float *o, const float *i, const struct ftk_weight *w,
		 const float *b, int M)
{
	WRAP(1, base->linear_fwd(be, o, i, w, b, M));
}
static void p_lb(struct ftk_backend *be, float *d, const float *o, const struct ftk_weight *w,
		 int M)
{
	WRAP(2, base->linear_bwd_inp(be, d, o, w, M));
}
static void p_af(struct ftk_backend *be, float *o, float *a, const float *q, const float *k,
		 const float *v, const int32_t *d, int B, int T, int NH, int NKV, int hd)
{
	WRAP(3, base->attn_fwd(be, o, a, q, k, v, d, B, T, NH, NKV, hd));
}
static void p_ab(struct ftk_backend *be, float *dq, float *dk, float *dv, const float *d,
		 const float *a, const float *q, const float *k, const float *v, int B, int T,
		 int NH, int NKV, int hd)
{
	WRAP(4, base->attn_bwd(be, dq, dk, dv, d, a, q, k, v, B, T, NH, NKV, hd));
}
static void p_xe(struct ftk_backend *be, float *l, float *x, const int32_t *t, int M, int V,
		 float g)
{
	WRAP(5, base->xent(be, l, x, t, M, V, g));
}
static void p_rf(struct ftk_backend *be, float *o, float *r, const float *i, const float *w, int M,
		 int C, float e)
{
	WRAP(6, base->rmsnorm_fwd(be, o, r, i, w, M, C, e));
}
static void p_rb(struct ftk_backend *be, float *d, const float *o, const float *i, const float *w,
		 const float *r, int M, int C)
{
	WRAP(6, base->rmsnorm_bwd(be, d, o, i, w, r, M, C));
}
static void p_sf(struct ftk_backend *be, float *o, const float *g, const float *u, size_t n)
{
	WRAP(7, base->swiglu_fwd(be, o, g, u, n));
}
static void p_sb(struct ftk_backend *be, float *dg, float *du, const float *d, const float *g,
		 const float *u, size_t n)
{
	WRAP(7, base->swiglu_bwd(be, dg, du, d, g, u, n));
}
static void p_gb(struct ftk_backend *be, int n, const struct ftk_gemm_args *g)
{
	WRAP(0, base->gemm_batch(be, n, g));
}
/* cpu's ops timed, on cpu's state; valid while cpu is */
static struct ftk_backend *profiling_backend(struct ftk_backend *cpu)
{
	base = cpu->ops;
	prof_ops = *cpu->ops;
	prof_ops.gemm = p_gemm;
	prof_ops.gemm_batch = p_gb;
	prof_ops.linear_fwd = p_lf;
	prof_ops.linear_bwd_inp = p_lb;
	prof_ops.attn_fwd = p_af;
	prof_ops.attn_bwd = p_ab;
	prof_ops.xent = p_xe;
	prof_ops.rmsnorm_fwd = p_rf;
	prof_ops.rmsnorm_bwd = p_rb;
	prof_ops.swiglu_fwd = p_sf;
	prof_ops.swiglu_bwd = p_sb;
	prof.ops = &prof_ops;
	prof.ctx = cpu->ctx;
	return &prof;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--sgemm")) {
		openblas_set_num_threads(atoi(argv[2]));
		printf("sgemm gflops_1024x1536x512=%.1f gflops_2048=%.1f\n", sgemm_rate(1024, 1536, 512),
		       sgemm_rate(2048, 2048, 2048));
		return 0;
	}
	if (argc < 8) {
		fprintf(stderr, "usage: train_step MODEL THREADS B T RANK STEPS nf4|none [ckpt]\n");
		return 2;
	}
	int threads = atoi(argv[2]), B = atoi(argv[3]), T = atoi(argv[4]), r = atoi(argv[5]),
	    steps = atoi(argv[6]);
	struct ftk_load_opts lo = { strcmp(argv[7], "none") ? FTK_QUANT_NF4 : FTK_QUANT_NONE, NULL,
				    threads, T };
	int profile = getenv("FTK_BENCH_PROFILE") != NULL;
	struct ftk_backend *cpu = ftk_backend_cpu_new();
	lo.backend = profile ? profiling_backend(cpu) : cpu;
	struct ftk_model *m;
	struct ftk_error e;
	if (ftk_model_load(&m, argv[1], &lo, &e) < 0) {
		fprintf(stderr, "train_step: %s\n", e.msg);
		return 1;
	}
	ftk_model_set_checkpointing(m, argc > 8 && !strcmp(argv[8], "ckpt"));
	const char *att = getenv("FTK_BENCH_ATTENTION");
	enum ftk_attention am = FTK_ATTN_AUTO;
	if (att && (ftk_attention_parse(att, &am, &e) < 0 || ftk_model_set_attention(m, am, &e) < 0)) {
		fprintf(stderr, "train_step: %s\n", e.msg);
		return 2;
	}
	struct ftk_lora_opts o = { FTK_LORA_ALL, r, 2.0f * r, 0, 0.0f, 1 };
	if (ftk_model_lora_init(m, &o, &e) < 0)
		return 1;
	const struct ftk_model_config *c = ftk_model_config(m);
	uint32_t *ids = malloc((size_t)B * T * 4);
	struct ftk_rng rng;
	ftk_rng_seed(&rng, 1);
	for (int i = 0; i < B * T; i++)
		ids[i] = (uint32_t)(ftk_rng_uniform(&rng) * c->vocab_size);
	struct ftk_batch b = { B, T, ids, NULL, NULL };
	long nt = ftk_batch_count_targets(&b);
	size_t n;
	float *p = ftk_model_lora_flat(m, &n), *g = ftk_model_lora_grad_flat(m, NULL);
	float *mom = calloc(n, 4), *var = calloc(n, 4);
	double loss = 0, t0 = 0, c0 = 0;
	for (int s = 0; s <= steps; s++) {
		if (s == 1) {
			t0 = now();
			c0 = cpu_seconds();
			memset(t_op, 0, sizeof(t_op));
		}
		ftk_model_zero_grad(m);
		if (ftk_model_forward_backward(m, &b, (double)nt, &loss, NULL, &e) < 0) {
			fprintf(stderr, "train_step: %s\n", e.msg);
			return 1;
		}
		float bc1 = 1.0f - powf(0.9f, (float)(s + 1)), bc2 = 1.0f - powf(0.999f, (float)(s + 1));
		for (size_t i = 0; i < n; i++)
			ftk_adamw(&p[i], &mom[i], &var[i], g[i], 1e-4f, 0.9f, 0.999f, 1e-8f, 0.01f, bc1, bc2);
	}
	double dt = (now() - t0) / steps, dc = (cpu_seconds() - c0) / steps;
	double f = flops(c, B, T, r);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("ftk tokens_per_s=%.1f step_s=%.4f cpu_s=%.4f tokens_per_cpu_s=%.1f loss=%.4f gflop_per_step=%.1f gflops=%.1f peak_rss_mb=%.0f params=%lld\n",
	       B * T / dt, dt, dc, B * T / dc, loss / nt, f / 1e9, f / dt / 1e9,
	       ru.ru_maxrss / 1024.0, ftk_config_n_params(c));
	if (profile)
		for (int i = 0; i < 8; i++)
			fprintf(stderr, "  %-14s %.3f s/step\n", op_names[i], t_op[i] / steps);
	free(ids), free(mom), free(var);
	ftk_model_free(m);
	ftk_backend_free(cpu);
	return 0;
}
