/*
 * backend_cuda.cu: the CUDA backend (issue 9), built into its own shared
 * object, build/trainer/libftkcuda.so, which trainer/device.c opens with
 * dlopen only when `--device cuda` (or --selftest) asks for it.  The ftk
 * programs therefore never link cudart: they start and run the CPU path on
 * a machine with no GPU, no driver and no CUDA libraries at all.
 *
 * What it implements: every entry of struct ftk_backend (backend.h) over
 * device pointers, with the per-element and per-row arithmetic taken from
 * ops.h (FTK_HD makes those functions __host__ __device__ here), so the
 * kernels run the very expressions the CPU backend's unit tests check.
 *
 *   memory      cudaMalloc; alloc_shared is cudaMallocManaged (the LoRA
 *               parameters and gradients, which the host optimizer touches
 *               in place); every op that writes into managed memory
 *               synchronises before returning, so the host never reads a
 *               gradient a kernel is still writing.
 *   products    cuBLAS, fp32 inputs and fp32 accumulation (cublasGemmEx).
 *               FTK_CUDA_BF16=1 lets cuBLAS use bf16 tensor cores with
 *               fp32 accumulation (CUBLAS_COMPUTE_32F_FAST_16BF); the
 *               selftest tolerances are for the default fp32 path.
 *   NF4         weight_prepare uploads the packed codes and the recovered
 *               per-block scales; linear_fwd / linear_bwd_inp dequantize a
 *               tile of W rows (at most 16M values) into an fp32 device
 *               buffer with ftk_nf4_decode and hand it to cuBLAS.  This is
 *               "dequantize to tiles feeding cuBLAS", not a fused
 *               dequantize-inside-the-GEMM kernel.
 *   per row     RMSNorm, RoPE, cross-entropy: one thread per row (or head)
 *               calling the ops.h row function.  Correct first; a block per
 *               row with a tree reduction is the obvious next step.
 *   attention   forward: one fused kernel per (batch, head, query) that
 *               forms the scores against the causal, document-masked keys,
 *               applies ftk_softmax_row and multiplies by V, saving the
 *               probabilities for backward.  Backward: one kernel per
 *               query row (dP, softmax backward, dQ) and one per key row
 *               (dK, dV summed over the query heads of its group), so no
 *               atomics are needed.  Flash attention (attn_fwd_flash /
 *               attn_bwd_flash): tiles of 64 query or key rows per block,
 *               K/V or Q/dout tiles in shared memory, the online softmax
 *               of ops.h per thread, only the log-sum-exp saved; the
 *               kernel bodies are flash_kernels.h's phase functions.
 *   optimizer   ftk_cuda_adamw (optim_ops.h's ftk_adamw_update per element)
 *               and ftk_cuda_sumsq (the global gradient norm's sum of
 *               squares, a block reduction in double) are exported for the
 *               selftest and the dev/cuda harness; the trainer still runs
 *               AdamW on the host over managed memory.
 *
 * Nothing here has run on a GPU in the session that wrote it: it compiles
 * with -Werror for sm_80, sm_89 and sm_90, and `ftk-train --selftest` on a
 * GPU machine checks it op by op against the CPU backend (docs/gpu.md).
 */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "trainer/backend.h"
}
#include "trainer/ops.h"
#include "trainer/flash_kernels.h"
#include "trainer/optim_ops.h"

#define CK(call)                                                                           \
	do {                                                                               \
		cudaError_t e_ = (call);                                                   \
		if (e_ != cudaSuccess) {                                                   \
			fprintf(stderr, "ftk cuda: %s:%d: %s\n", __FILE__, __LINE__,       \
				cudaGetErrorString(e_));                                   \
			abort();                                                           \
		}                                                                          \
	} while (0)

#define CKB(call)                                                                          \
	do {                                                                               \
		cublasStatus_t s_ = (call);                                                \
		if (s_ != CUBLAS_STATUS_SUCCESS) {                                         \
			fprintf(stderr, "ftk cuda: %s:%d: cublas status %d\n", __FILE__,   \
				__LINE__, (int)s_);                                        \
			abort();                                                           \
		}                                                                          \
	} while (0)

#define THREADS 256
static unsigned blocks_for(size_t n)
{
	return (unsigned)((n + THREADS - 1) / THREADS);
}

__constant__ float d_nf4_code[16];

static cublasHandle_t g_blas;
static int g_ready;
static float g_code[16];	/* the NF4 code table, given by the loader (nf4.c owns it) */
static int g_bf16;		/* FTK_CUDA_BF16=1: bf16 tensor cores, fp32 accumulation */
static float *g_tile;		/* NF4 dequantization tile */
static size_t g_tile_cap;
static float *g_dscore;		/* attention backward scratch (B, NH, T, T) */
static size_t g_dscore_cap;
static float *g_flash_D;	/* flash backward: D = dout . out per row (B, NH, T) */
static size_t g_flash_D_cap;

/* Managed allocations, so ops that write into one can synchronise. */
struct range {
	char *p;
	size_t n;
};
static struct range g_shared[4096];
static int g_n_shared;

static void init_once(void)
{
	if (g_ready)
		return;
	CKB(cublasCreate(&g_blas));
	const char *bf = getenv("FTK_CUDA_BF16");
	g_bf16 = bf && !strcmp(bf, "1");
	CK(cudaMemcpyToSymbol(d_nf4_code, g_code, sizeof(float) * 16));
	g_ready = 1;
}

static int is_shared(const void *p)
{
	const char *c = (const char *)p;
	for (int i = 0; i < g_n_shared; i++)
		if (c >= g_shared[i].p && c < g_shared[i].p + g_shared[i].n)
			return 1;
	return 0;
}

static void sync_if_shared(const void *p)
{
	CK(cudaGetLastError());
	if (is_shared(p))
		CK(cudaDeviceSynchronize());
}

/* ---------------------------------------------------------------- memory */

static void *cu_alloc(size_t n)
{
	init_once();
	void *p = NULL;
	CK(cudaMalloc(&p, n ? n : 64));
	CK(cudaMemset(p, 0, n ? n : 64));
	return p;
}

static void *cu_alloc_shared(size_t n)
{
	init_once();
	void *p = NULL;
	CK(cudaMallocManaged(&p, n ? n : 64, cudaMemAttachGlobal));
	CK(cudaMemset(p, 0, n ? n : 64));
	CK(cudaDeviceSynchronize());
	if (g_n_shared < (int)(sizeof(g_shared) / sizeof(g_shared[0]))) {
		g_shared[g_n_shared].p = (char *)p;
		g_shared[g_n_shared].n = n ? n : 64;
		g_n_shared++;
	}
	return p;
}

static void cu_free(void *p)
{
	if (!p)
		return;
	for (int i = 0; i < g_n_shared; i++)
		if (g_shared[i].p == p) {
			g_shared[i] = g_shared[--g_n_shared];
			break;
		}
	CK(cudaDeviceSynchronize());
	CK(cudaFree(p));
}

static void cu_memcpy(void *dst, const void *src, size_t n)
{
	CK(cudaMemcpy(dst, src, n, cudaMemcpyDefault));
}

static void cu_zero(void *p, size_t n)
{
	CK(cudaMemset(p, 0, n));
	CK(cudaDeviceSynchronize());
}

/* The device copy of an NF4 weight: codes and recovered scales. */
struct dev_nf4 {
	uint8_t *packed;
	float *absmax;
};

static void cu_weight_prepare(struct ftk_weight *w)
{
	init_once();
	if (w->quant != FTK_QUANT_NF4 || w->dev)
		return;
	struct dev_nf4 *d = (struct dev_nf4 *)calloc(1, sizeof(*d));
	if (!d)
		abort();
	size_t nb = (w->nf4.n + 1) / 2;
	CK(cudaMalloc((void **)&d->packed, nb));
	CK(cudaMemcpy(d->packed, w->nf4.packed, nb, cudaMemcpyHostToDevice));
	CK(cudaMalloc((void **)&d->absmax, w->nf4.n_blocks * sizeof(float)));
	CK(cudaMemcpy(d->absmax, w->nf4.absmax, w->nf4.n_blocks * sizeof(float),
		      cudaMemcpyHostToDevice));
	w->dev = d;
}

static void cu_weight_release(struct ftk_weight *w)
{
	struct dev_nf4 *d = (struct dev_nf4 *)w->dev;
	if (!d)
		return;
	CK(cudaFree(d->packed));
	CK(cudaFree(d->absmax));
	free(d);
	w->dev = NULL;
}

static void cu_set_threads(int n)
{
	(void)n;
}

/* ---------------------------------------------------------------- gemm */

/*
 * Row-major C (M, N) = op(A) op(B) is column-major C^T = op(B)^T op(A)^T:
 * the same buffers passed to cuBLAS with the operands swapped.
 */
static void cu_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
		    const float *B, int ldb, float beta, float *C, int ldc)
{
	init_once();
	if (M <= 0 || N <= 0)
		return;
	CKB(cublasGemmEx(g_blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N,
			 M, K, &alpha, B, CUDA_R_32F, ldb, A, CUDA_R_32F, lda, &beta, C,
			 CUDA_R_32F, ldc,
			 g_bf16 ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F,
			 CUBLAS_GEMM_DEFAULT));
	sync_if_shared(C);
}

/* Independent products: one cuBLAS call each, in order, on the default stream. */
static void cu_gemm_batch(int n, const struct ftk_gemm_args *g)
{
	for (int i = 0; i < n; i++)
		cu_gemm(g[i].ta, g[i].tb, g[i].M, g[i].N, g[i].K, g[i].alpha, g[i].A, g[i].lda, g[i].B,
			g[i].ldb, g[i].beta, g[i].C, g[i].ldc);
}

/* ---------------------------------------------------------------- NF4 linear */

__global__ void k_nf4_dequant(float *out, const uint8_t *packed, const float *absmax,
			      size_t start, size_t count)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < count)
		out[i] = ftk_nf4_decode(packed, absmax, d_nf4_code, start + i);
}

/* Dequantize rows [r0, r0 + r) of an NF4 weight (N, K) into the tile. */
static float *nf4_tile(const struct ftk_weight *w, size_t r0, size_t r)
{
	const struct dev_nf4 *d = (const struct dev_nf4 *)w->dev;
	size_t n = r * (size_t)w->cols;
	if (n > g_tile_cap) {
		if (g_tile)
			CK(cudaFree(g_tile));
		CK(cudaMalloc((void **)&g_tile, n * sizeof(float)));
		g_tile_cap = n;
	}
	k_nf4_dequant<<<blocks_for(n), THREADS>>>(g_tile, d->packed, d->absmax, r0 * w->cols, n);
	return g_tile;
}

#define TILE_ELEMS ((size_t)1 << 24)

static size_t tile_rows(const struct ftk_weight *w)
{
	size_t R = TILE_ELEMS / (size_t)w->cols;
	return R < 1 ? 1 : R;
}

__global__ void k_add_bias(float *out, const float *bias, int M, int N)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < (size_t)M * N)
		out[i] += bias[i % N];
}

static void cu_add_bias(float *out, const float *bias, int M, int N)
{
	k_add_bias<<<blocks_for((size_t)M * N), THREADS>>>(out, bias, M, N);
	sync_if_shared(out);
}

static void cu_linear_fwd(float *out, const float *inp, const struct ftk_weight *w,
			  const float *bias, int M)
{
	int N = w->rows, K = w->cols;
	if (w->quant == FTK_QUANT_NONE) {
		cu_gemm(0, 1, M, N, K, 1.0f, inp, K, w->f32, K, 0.0f, out, N);
	} else {
		size_t R = tile_rows(w);
		for (size_t r0 = 0; r0 < (size_t)N; r0 += R) {
			size_t r = (size_t)N - r0 < R ? (size_t)N - r0 : R;
			float *tile = nf4_tile(w, r0, r);
			/* out[:, r0:r0+r] = inp (M, K) @ tile^T */
			cu_gemm(0, 1, M, (int)r, K, 1.0f, inp, K, tile, K, 0.0f, out + r0, N);
		}
	}
	if (bias)
		cu_add_bias(out, bias, M, N);
}

static void cu_linear_bwd_inp(float *dinp, const float *dout, const struct ftk_weight *w, int M)
{
	int N = w->rows, K = w->cols;
	if (w->quant == FTK_QUANT_NONE) {
		cu_gemm(0, 0, M, K, N, 1.0f, dout, N, w->f32, K, 1.0f, dinp, K);
		return;
	}
	size_t R = tile_rows(w);
	for (size_t r0 = 0; r0 < (size_t)N; r0 += R) {
		size_t r = (size_t)N - r0 < R ? (size_t)N - r0 : R;
		float *tile = nf4_tile(w, r0, r);
		/* dinp (M, K) += dout[:, r0:r0+r] (M, r) @ tile (r, K) */
		cu_gemm(0, 0, M, K, (int)r, 1.0f, dout + r0, N, tile, K, 1.0f, dinp, K);
	}
}

/* ---------------------------------------------------------------- rmsnorm, rope */

__global__ void k_rmsnorm_fwd(float *out, float *rstd, const float *inp, const float *weight,
			      int M, int C, float eps)
{
	int m = blockIdx.x * blockDim.x + threadIdx.x;
	if (m >= M)
		return;
	float r = ftk_rmsnorm_row(out + (size_t)m * C, inp + (size_t)m * C, weight, C, eps);
	if (rstd)
		rstd[m] = r;
}

static void cu_rmsnorm_fwd(float *out, float *rstd, const float *inp, const float *weight, int M,
			   int C, float eps)
{
	k_rmsnorm_fwd<<<blocks_for((size_t)M), THREADS>>>(out, rstd, inp, weight, M, C, eps);
	sync_if_shared(out);
}

__global__ void k_rmsnorm_bwd(float *dinp, const float *dout, const float *inp,
			      const float *weight, const float *rstd, int M, int C)
{
	int m = blockIdx.x * blockDim.x + threadIdx.x;
	if (m >= M)
		return;
	ftk_rmsnorm_row_bwd(dinp + (size_t)m * C, dout + (size_t)m * C, inp + (size_t)m * C, weight,
			    rstd[m], C);
}

static void cu_rmsnorm_bwd(float *dinp, const float *dout, const float *inp, const float *weight,
			   const float *rstd, int M, int C)
{
	k_rmsnorm_bwd<<<blocks_for((size_t)M), THREADS>>>(dinp, dout, inp, weight, rstd, M, C);
	sync_if_shared(dinp);
}

__global__ void k_rope(float *x, const int32_t *pos, const float *inv_freq, int M, int nh, int hd,
		       int sign)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= (size_t)M * nh)
		return;
	ftk_rope_head(x + i * hd, pos[i / nh], inv_freq, hd, sign);
}

static void cu_rope(float *x, const int32_t *pos, const float *inv_freq, int M, int nh, int hd,
		    int sign)
{
	k_rope<<<blocks_for((size_t)M * nh), THREADS>>>(x, pos, inv_freq, M, nh, hd, sign);
	sync_if_shared(x);
}

/* ---------------------------------------------------------------- attention */

/*
 * One thread per (b, h, t): the scores of query t against keys [s0, t]
 * (s0: the start of t's document), softmax in place in the saved
 * probability row, then the weighted sum of V.  Everything outside
 * [s0, t] in the row is 0, as on the CPU.
 */
__global__ void k_attn_fwd(float *out, float *att, const float *q, const float *k,
			   const float *v, const int32_t *doc, int B, int T, int NH, int NKV,
			   int hd)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= (size_t)B * NH * T)
		return;
	int t = (int)(i % T), h = (int)(i / T % NH), b = (int)(i / T / NH);
	int kh = h / (NH / NKV);
	float scale = 1.0f / sqrtf((float)hd);
	const int32_t *d = doc + (size_t)b * T;
	int s0 = t;
	while (s0 > 0 && d[s0 - 1] == d[t])
		s0--;
	const float *Q = q + (((size_t)b * T + t) * NH + h) * hd;
	float *P = att + (((size_t)b * NH + h) * T + t) * T;
	for (int s = 0; s < T; s++) {
		if (s < s0 || s > t) {
			P[s] = 0.0f;
			continue;
		}
		const float *Kr = k + (((size_t)b * T + s) * NKV + kh) * hd;
		float acc = 0.0f;
		for (int j = 0; j < hd; j++)
			acc += Q[j] * Kr[j];
		P[s] = acc * scale;
	}
	ftk_softmax_row(P + s0, t - s0 + 1);
	float *O = out + (((size_t)b * T + t) * NH + h) * hd;
	for (int j = 0; j < hd; j++)
		O[j] = 0.0f;
	for (int s = s0; s <= t; s++) {
		const float *Vr = v + (((size_t)b * T + s) * NKV + kh) * hd;
		float p = P[s];
		for (int j = 0; j < hd; j++)
			O[j] += p * Vr[j];
	}
}

static void cu_attn_fwd(float *out, float *att, const float *q, const float *k, const float *v,
			const int32_t *doc, int B, int T, int NH, int NKV, int hd)
{
	size_t n = (size_t)B * NH * T;
	k_attn_fwd<<<blocks_for(n), THREADS>>>(out, att, q, k, v, doc, B, T, NH, NKV, hd);
	sync_if_shared(out);
}

/* Per query row: dP = dO V^T over [0, t], dS = softmax backward, dQ = scale dS K. */
__global__ void k_attn_bwd_q(float *dq, float *dS, const float *dout, const float *att,
			     const float *k, const float *v, int B, int T, int NH, int NKV, int hd)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= (size_t)B * NH * T)
		return;
	int t = (int)(i % T), h = (int)(i / T % NH), b = (int)(i / T / NH);
	int kh = h / (NH / NKV);
	float scale = 1.0f / sqrtf((float)hd);
	const float *dO = dout + (((size_t)b * T + t) * NH + h) * hd;
	const float *P = att + (((size_t)b * NH + h) * T + t) * T;
	float *row = dS + (((size_t)b * NH + h) * T + t) * T;
	for (int s = 0; s <= t; s++) {
		const float *Vr = v + (((size_t)b * T + s) * NKV + kh) * hd;
		float acc = 0.0f;
		for (int j = 0; j < hd; j++)
			acc += dO[j] * Vr[j];
		row[s] = acc;
	}
	ftk_softmax_row_bwd(row, P, row, t + 1);
	for (int s = t + 1; s < T; s++)
		row[s] = 0.0f;
	float *dQ = dq + (((size_t)b * T + t) * NH + h) * hd;
	for (int j = 0; j < hd; j++)
		dQ[j] = 0.0f;
	for (int s = 0; s <= t; s++) {
		const float *Kr = k + (((size_t)b * T + s) * NKV + kh) * hd;
		float g = row[s] * scale;
		for (int j = 0; j < hd; j++)
			dQ[j] += g * Kr[j];
	}
}

/* Per key row s of a kv head: dK = scale sum dS[.., s] Q, dV = sum P[.., s] dO over its q heads. */
__global__ void k_attn_bwd_kv(float *dk, float *dv, const float *dS, const float *att,
			      const float *q, const float *dout, int B, int T, int NH, int NKV,
			      int hd)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= (size_t)B * NKV * T)
		return;
	int s = (int)(i % T), kh = (int)(i / T % NKV), b = (int)(i / T / NKV);
	int g = NH / NKV;
	float scale = 1.0f / sqrtf((float)hd);
	float *dK = dk + (((size_t)b * T + s) * NKV + kh) * hd;
	float *dV = dv + (((size_t)b * T + s) * NKV + kh) * hd;
	for (int j = 0; j < hd; j++)
		dK[j] = dV[j] = 0.0f;
	for (int h = kh * g; h < (kh + 1) * g; h++) {
		for (int t = s; t < T; t++) {
			size_t r = (((size_t)b * NH + h) * T + t) * T + s;
			float ds = dS[r] * scale, p = att[r];
			const float *Qr = q + (((size_t)b * T + t) * NH + h) * hd;
			const float *dO = dout + (((size_t)b * T + t) * NH + h) * hd;
			for (int j = 0; j < hd; j++) {
				dK[j] += ds * Qr[j];
				dV[j] += p * dO[j];
			}
		}
	}
}

static void cu_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *att,
			const float *q, const float *k, const float *v, int B, int T, int NH,
			int NKV, int hd)
{
	size_t need = (size_t)B * NH * T * T;
	if (need > g_dscore_cap) {
		if (g_dscore)
			CK(cudaFree(g_dscore));
		CK(cudaMalloc((void **)&g_dscore, need * sizeof(float)));
		g_dscore_cap = need;
	}
	size_t nq = (size_t)B * NH * T, nk = (size_t)B * NKV * T;
	k_attn_bwd_q<<<blocks_for(nq), THREADS>>>(dq, g_dscore, dout, att, k, v, B, T, NH, NKV, hd);
	k_attn_bwd_kv<<<blocks_for(nk), THREADS>>>(dk, dv, g_dscore, att, q, dout, B, T, NH, NKV,
						   hd);
	sync_if_shared(dq);
}

/*
 * Flash attention (flash_kernels.h holds the kernel bodies as phase
 * functions, which tests/unit/test_flash.c runs on the host): a block of
 * FTK_FLASH_ROWS threads per tile of query rows (forward, dQ) or key rows
 * (dK, dV); K/V or Q/dout tiles go through dynamic shared memory.  The
 * loops' bounds are the block's, so every barrier is reached by all threads.
 */
static_assert(FTK_FLASH_HD_MAX == FTK_FLASH_MAX_HD, "flash head_dim limits differ");

__global__ void k_flash_fwd(struct ftk_flash_dims d, float *out, float *lse, const float *q,
			    const float *k, const float *v, const int32_t *doc)
{
	extern __shared__ float sm[];
	struct ftk_flash_fwd_thread st;
	int blk = (int)blockIdx.x, tid = (int)threadIdx.x, kb, ke;
	ftk_flash_fwd_begin(&d, blk, tid, sm, &st, q, doc);
	__syncthreads();
	ftk_flash_q_keys(&d, blk, sm, &kb, &ke);
	for (int k0 = kb; k0 < ke; k0 += d.tile) {
		ftk_flash_load_kv(&d, blk, tid, (int)blockDim.x, k0, ke, sm, k, v);
		__syncthreads();
		ftk_flash_fwd_update(&d, tid, k0, ke, sm, &st);
		__syncthreads();
	}
	ftk_flash_fwd_end(&d, blk, &st, out, lse);
}

__global__ void k_flash_dq(struct ftk_flash_dims d, float *dq, float *Dbuf, const float *dout,
			   const float *out, const float *lse, const float *q, const float *k,
			   const float *v, const int32_t *doc)
{
	extern __shared__ float sm[];
	struct ftk_flash_dq_thread st;
	int blk = (int)blockIdx.x, tid = (int)threadIdx.x, kb, ke;
	ftk_flash_dq_begin(&d, blk, tid, sm, &st, q, dout, out, lse, Dbuf, doc);
	__syncthreads();
	ftk_flash_q_keys(&d, blk, sm, &kb, &ke);
	for (int k0 = kb; k0 < ke; k0 += d.tile) {
		ftk_flash_load_kv(&d, blk, tid, (int)blockDim.x, k0, ke, sm, k, v);
		__syncthreads();
		ftk_flash_dq_update(&d, tid, k0, ke, sm, &st);
		__syncthreads();
	}
	ftk_flash_dq_end(&d, blk, &st, dq);
}

__global__ void k_flash_dkv(struct ftk_flash_dims d, float *dk, float *dv, const float *Dbuf,
			    const float *dout, const float *lse, const float *q, const float *k,
			    const float *v, const int32_t *doc)
{
	extern __shared__ float sm[];
	struct ftk_flash_kv_thread st;
	int blk = (int)blockIdx.x, tid = (int)threadIdx.x, qb, qe, b, kh, s0;
	ftk_flash_kv_begin(&d, blk, tid, sm, &st, k, v, doc);
	__syncthreads();
	ftk_flash_kv_queries(&d, blk, sm, &qb, &qe);
	ftk_flash_kvblock(&d, blk, &b, &kh, &s0);
	int g = d.NH / d.NKV;
	for (int h = kh * g; h < (kh + 1) * g; h++)
		for (int q0 = qb; q0 < qe; q0 += d.tile) {
			ftk_flash_load_qo(&d, blk, tid, (int)blockDim.x, h, q0, qe, sm, q, dout, lse,
					  Dbuf);
			__syncthreads();
			ftk_flash_kv_update(&d, tid, q0, qe, sm, &st);
			__syncthreads();
		}
	ftk_flash_kv_end(&d, blk, &st, dk, dv);
}

static void cu_attn_fwd_flash(float *out, float *lse, const float *q, const float *k,
			      const float *v, const int32_t *doc, int B, int T, int NH, int NKV,
			      int hd)
{
	struct ftk_flash_dims d = ftk_flash_dims_make(B, T, NH, NKV, hd);
	size_t smem = ftk_flash_smem_floats(&d) * sizeof(float);
	k_flash_fwd<<<(unsigned)ftk_flash_q_blocks(&d), FTK_FLASH_ROWS, smem>>>(d, out, lse, q, k,
									    v, doc);
	sync_if_shared(out);
}

static void cu_attn_bwd_flash(float *dq, float *dk, float *dv, const float *dout,
			      const float *out, const float *lse, const float *q, const float *k,
			      const float *v, const int32_t *doc, int B, int T, int NH, int NKV,
			      int hd)
{
	size_t need = (size_t)B * NH * T;
	if (need > g_flash_D_cap) {
		if (g_flash_D)
			CK(cudaFree(g_flash_D));
		CK(cudaMalloc((void **)&g_flash_D, need * sizeof(float)));
		g_flash_D_cap = need;
	}
	struct ftk_flash_dims d = ftk_flash_dims_make(B, T, NH, NKV, hd);
	size_t smem = ftk_flash_smem_floats(&d) * sizeof(float);
	k_flash_dq<<<(unsigned)ftk_flash_q_blocks(&d), FTK_FLASH_ROWS, smem>>>(
		d, dq, g_flash_D, dout, out, lse, q, k, v, doc);
	k_flash_dkv<<<(unsigned)ftk_flash_kv_blocks(&d), FTK_FLASH_ROWS, smem>>>(
		d, dk, dv, g_flash_D, dout, lse, q, k, v, doc);
	sync_if_shared(dq);
}

/* Generation: one block per query head, scores in the caller's scratch row per head. */
__global__ void k_attn_decode_scores(float *sc, const float *q, const float *kc, int n, int h,
				     int NH, int NKV, int hd)
{
	int s = blockIdx.x * blockDim.x + threadIdx.x;
	if (s >= n)
		return;
	int kh = h / (NH / NKV);
	const float *qh = q + (size_t)h * hd, *kr = kc + ((size_t)s * NKV + kh) * hd;
	float d = 0.0f;
	for (int i = 0; i < hd; i++)
		d += qh[i] * kr[i];
	sc[s] = d * (1.0f / sqrtf((float)hd));
}

__global__ void k_softmax_one(float *x, int n)
{
	if (blockIdx.x == 0 && threadIdx.x == 0)
		ftk_softmax_row(x, n);
}

__global__ void k_attn_decode_out(float *out, const float *sc, const float *vc, int n, int h,
				  int NH, int NKV, int hd)
{
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= hd)
		return;
	int kh = h / (NH / NKV);
	float acc = 0.0f;
	for (int s = 0; s < n; s++)
		acc += sc[s] * vc[((size_t)s * NKV + kh) * hd + i];
	out[(size_t)h * hd + i] = acc;
}

static void cu_attn_decode(float *out, const float *q, const float *kc, const float *vc, int n,
			   int NH, int NKV, int hd, float *scratch)
{
	for (int h = 0; h < NH; h++) {
		k_attn_decode_scores<<<blocks_for((size_t)n), THREADS>>>(scratch, q, kc, n, h, NH,
									 NKV, hd);
		k_softmax_one<<<1, 1>>>(scratch, n);
		k_attn_decode_out<<<blocks_for((size_t)hd), THREADS>>>(out, scratch, vc, n, h, NH,
								       NKV, hd);
	}
	sync_if_shared(out);
}

/* ---------------------------------------------------------------- elementwise */

__global__ void k_swiglu_fwd(float *out, const float *gate, const float *up, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		out[i] = ftk_swiglu(gate[i], up[i]);
}

static void cu_swiglu_fwd(float *out, const float *gate, const float *up, size_t n)
{
	k_swiglu_fwd<<<blocks_for(n), THREADS>>>(out, gate, up, n);
	sync_if_shared(out);
}

__global__ void k_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate,
			     const float *up, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		ftk_swiglu_bwd(gate[i], up[i], dout[i], &dgate[i], &dup[i]);
}

static void cu_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate,
			  const float *up, size_t n)
{
	k_swiglu_bwd<<<blocks_for(n), THREADS>>>(dgate, dup, dout, gate, up, n);
	sync_if_shared(dgate);
}

__global__ void k_xent(float *loss, float *logits, const int32_t *target, int M, int V, float gs)
{
	int m = blockIdx.x * blockDim.x + threadIdx.x;
	if (m >= M)
		return;
	float *row = logits + (size_t)m * V;
	if (target[m] < 0) {
		loss[m] = 0.0f;
		if (gs != 0.0f)
			for (int i = 0; i < V; i++)
				row[i] = 0.0f;
		return;
	}
	loss[m] = ftk_xent_row(row, V, target[m], gs);
}

static void cu_xent(float *loss, float *logits, const int32_t *target, int M, int V, float gs)
{
	k_xent<<<blocks_for((size_t)M), THREADS>>>(loss, logits, target, M, V, gs);
	sync_if_shared(loss);
}

__global__ void k_add(float *y, const float *x, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		y[i] += x[i];
}

static void cu_add(float *y, const float *x, size_t n)
{
	k_add<<<blocks_for(n), THREADS>>>(y, x, n);
	sync_if_shared(y);
}

__global__ void k_dropout(float *y, const float *x, const uint8_t *keep, float scale, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		y[i] = keep[i] ? x[i] * scale : 0.0f;
}

static void cu_dropout(float *y, const float *x, const uint8_t *keep, float scale, size_t n)
{
	k_dropout<<<blocks_for(n), THREADS>>>(y, x, keep, scale, n);
	sync_if_shared(y);
}

__global__ void k_dropout_mask(uint8_t *keep, uint64_t stream, float p, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		keep[i] = (uint8_t)ftk_dropout_keep(stream, i, p);
}

static void cu_dropout_mask(uint8_t *keep, uint64_t stream, float p, size_t n)
{
	k_dropout_mask<<<blocks_for(n), THREADS>>>(keep, stream, p, n);
	sync_if_shared(keep);
}

__global__ void k_embed(float *out, const float *table, const uint32_t *ids, int M, int C)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < (size_t)M * C)
		out[i] = table[(size_t)ids[i / C] * C + i % C];
}

static void cu_embed(float *out, const float *table, const uint32_t *ids, int M, int C)
{
	k_embed<<<blocks_for((size_t)M * C), THREADS>>>(out, table, ids, M, C);
	sync_if_shared(out);
}

/* ---------------------------------------------------------------- optimizer */

__global__ void k_adamw(float *w, float *m, float *v, const float *g, size_t n,
			struct ftk_adamw_consts c)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		ftk_adamw_update(&w[i], &m[i], &v[i], g[i], &c);
}

__global__ void k_sumsq(double *out, const float *g, size_t n)
{
	__shared__ double part[THREADS];
	double acc = 0.0;
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		acc += (double)g[i] * (double)g[i];
	part[threadIdx.x] = acc;
	__syncthreads();
	for (int s = THREADS / 2; s > 0; s >>= 1) {
		if ((int)threadIdx.x < s)
			part[threadIdx.x] += part[threadIdx.x + s];
		__syncthreads();
	}
	if (threadIdx.x == 0)
		out[blockIdx.x] = part[0];
}

static const struct ftk_backend cuda_table = {
	/* .name = */ "cuda",
	/* .alloc = */ cu_alloc,
	/* .free = */ cu_free,
	/* .upload = */ cu_memcpy,
	/* .download = */ cu_memcpy,
	/* .copy = */ cu_memcpy,
	/* .alloc_shared = */ cu_alloc_shared,
	/* .zero = */ cu_zero,
	/* .weight_prepare = */ cu_weight_prepare,
	/* .weight_release = */ cu_weight_release,
	/* .set_threads = */ cu_set_threads,
	/* .gemm = */ cu_gemm,
	/* .linear_fwd = */ cu_linear_fwd,
	/* .linear_bwd_inp = */ cu_linear_bwd_inp,
	/* .rmsnorm_fwd = */ cu_rmsnorm_fwd,
	/* .rmsnorm_bwd = */ cu_rmsnorm_bwd,
	/* .rope = */ cu_rope,
	/* .attn_fwd = */ cu_attn_fwd,
	/* .attn_bwd = */ cu_attn_bwd,
	/* .attn_decode = */ cu_attn_decode,
	/* .swiglu_fwd = */ cu_swiglu_fwd,
	/* .swiglu_bwd = */ cu_swiglu_bwd,
	/* .xent = */ cu_xent,
	/* .add = */ cu_add,
	/* .dropout = */ cu_dropout,
	/* .dropout_mask = */ cu_dropout_mask,
	/* .embed = */ cu_embed,
	/* .add_bias = */ cu_add_bias,
	/* .gemm_batch = */ cu_gemm_batch,
	/* .attn_fwd_flash = */ cu_attn_fwd_flash,
	/* .attn_bwd_flash = */ cu_attn_bwd_flash,
};

/* ---------------------------------------------------------------- exports (device.h) */

extern "C" {

/*
 * Number of CUDA devices, or -1 with a reason in why (no driver, no
 * device): never aborts, so the loader can say why CUDA is unavailable.
 */
__attribute__((visibility("default"))) int ftk_cuda_probe(char *why, size_t cap)
{
	int n = 0;
	cudaError_t e = cudaGetDeviceCount(&n);
	if (e != cudaSuccess) {
		snprintf(why, cap, "%s", cudaGetErrorString(e));
		return -1;
	}
	if (n == 0) {
		snprintf(why, cap, "no CUDA device");
		return -1;
	}
	cudaDeviceProp p;
	if (cudaGetDeviceProperties(&p, 0) == cudaSuccess)
		snprintf(why, cap, "%s, %.1f GiB, sm_%d%d", p.name,
			 (double)p.totalGlobalMem / (1024.0 * 1024 * 1024), p.major, p.minor);
	return n;
}

/* Select device dev (one process per GPU: the local rank); 0 or -1. */
__attribute__((visibility("default"))) int ftk_cuda_set_device(int dev)
{
	return cudaSetDevice(dev) == cudaSuccess ? 0 : -1;
}

/* Free and total memory of the current device in bytes; 0 or -1. */
__attribute__((visibility("default"))) int ftk_cuda_mem(size_t *free_b, size_t *total_b)
{
	return cudaMemGetInfo(free_b, total_b) == cudaSuccess ? 0 : -1;
}

/*
 * The backend table.  nf4_code: the 16 NF4 values (ftk_nf4_code), passed in
 * because the shared object does not link the trainer's archive.
 */
__attribute__((visibility("default"))) const struct ftk_backend *
ftk_cuda_backend(const float *nf4_code)
{
	memcpy(g_code, nf4_code, sizeof(g_code));
	return &cuda_table;
}

/* AdamW over n device (or managed) floats with optim_ops.h's update. */
__attribute__((visibility("default"))) void ftk_cuda_adamw(float *w, float *m, float *v,
							   const float *g, size_t n,
							   const struct ftk_adamw_consts *c)
{
	k_adamw<<<blocks_for(n), THREADS>>>(w, m, v, g, n, *c);
	CK(cudaGetLastError());
	CK(cudaDeviceSynchronize());
}

/* Sum of squares of n device floats, accumulated in double (the global grad norm squared). */
__attribute__((visibility("default"))) double ftk_cuda_sumsq(const float *g, size_t n)
{
	enum { NB = 256 };
	double *d, h[NB], s = 0;
	CK(cudaMalloc((void **)&d, NB * sizeof(double)));
	k_sumsq<<<NB, THREADS>>>(d, g, n);
	CK(cudaMemcpy(h, d, sizeof(h), cudaMemcpyDeviceToHost));
	CK(cudaFree(d));
	for (int i = 0; i < NB; i++)
		s += h[i];
	return s;
}

}
