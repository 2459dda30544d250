/*
 * backend_cuda.cu: the CUDA backend (issue 9), built into its own shared
 * object, build/model/libftkcuda.so, which model/device.c opens with
 * dlopen only when `--device cuda` (or --selftest) asks for it.  The ftk
 * programs therefore never link cudart: they start and run the CPU path on
 * a machine with no GPU, no driver and no CUDA libraries at all.
 *
 * What it implements: every entry of struct ftk_backend (backend.h) over
 * device pointers, with the per-element and per-row arithmetic taken from
 * ops.h (FTK_HD makes those functions __host__ __device__ here), so the
 * kernels run the very expressions the CPU backend's unit tests check.
 *
 *   memory      cudaMalloc, for everything the model allocates, the LoRA
 *               parameters and gradients included (no managed memory:
 *               over-asking it can hang a GPU others share; the host
 *               copies the LoRA arrays with download/upload, issue 23.9).
 *               Ops queue on the default stream and do not wait; the model
 *               calls sync once at the end of a backward pass and before
 *               it copies the LoRA arrays, and downloads wait for what came
 *               before them.
 *   products    cuBLAS, fp32 inputs and fp32 accumulation (cublasGemmEx).
 *               Under set_precision(FTK_PREC_BF16) (--precision bf16) the
 *               two operands are converted to bf16 by a kernel calling
 *               ops.h's ftk_bf16_rne, NF4 weights are dequantized straight
 *               into bf16 tiles (half the tile memory), and cublasGemmEx
 *               runs CUDA_R_16BF inputs, CUDA_R_32F output,
 *               CUBLAS_COMPUTE_32F: the CPU backend emulates exactly this
 *               and the selftest compares the two.
 *   NF4         weight_prepare uploads the packed codes and the recovered
 *               per-block scales; linear_fwd / linear_bwd_inp dequantize a
 *               tile of W rows (at most 16M values) into an fp32 device
 *               buffer with ftk_nf4_decode and hand it to cuBLAS; or, as
 *               FTK_CUDA_NF4 and M choose, a GEMV kernel (M <= 8, the
 *               default there) or a tiled GEMM that decodes NF4 into
 *               shared memory in its operand load (nf4_kernels.h).
 *   per row     RMSNorm: one warp per row through ops.h's ftk_rmsnorm_part_*
 *               pieces.  RoPE: one thread per rotated pair (ftk_rope_pair).
 *               Cross-entropy: one block per row over the vocabulary, the
 *               threads' strided parts combined in shared memory (k_xent).
 *   attention   forward: one fused kernel per (batch, head, query) that
 *               forms the scores against the causal, document-masked keys,
 *               applies ftk_softmax_row and multiplies by V, saving the
 *               probabilities for backward.  Backward: one kernel per
 *               query row (dP, softmax backward, dQ) and one per key row
 *               (dK, dV summed over the query heads of its group), so no
 *               atomics are needed.  Flash attention (attn_fwd_flash /
 *               attn_bwd_flash): a warp per query or key row, 8 rows
 *               per block, the row split across lanes by head dimension,
 *               K/V or Q/dout tiles in shared memory, the online softmax
 *               per warp, only the log-sum-exp saved; the kernel bodies
 *               are flash_kernels.h's phase functions.
 *   optimizer   the table's adamw (optim_ops.h's ftk_adamw_update per
 *               element), sumsq (the global gradient norm's sum of squares,
 *               a block reduction in double) and scale (clipping), so the
 *               trainer clips and steps on the GPU over the LoRA arrays in
 *               device memory.
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
#include "model/backend.h"
}
#include "model/ops.h"
#include "model/flash_kernels.h"
#include "model/optim_ops.h"
#include "model/nf4_kernels.h"

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

/*
 * An instance's state (be->ctx): its cuBLAS handle, precision and scratch
 * buffers, so instances on one device run side by side with their own
 * precision and never share a buffer.  The NF4 code table in constant
 * memory (d_nf4_code) is the device's: every instance writes the same 16
 * values there.
 */
struct cu_state {
	cublasHandle_t blas;	/* made by init_once, the first op that needs it */
	int ready;
	float code[16];		/* the NF4 code table, given by the loader (nf4.c owns it) */
	int prec;		/* enum ftk_precision (set_precision) */
	float *tile;		/* NF4 dequantization tile */
	size_t tile_cap;
	float *dscore;		/* attention backward scratch (B, NH, T, T) */
	size_t dscore_cap;
	float *flash_D;		/* flash backward: D = dout . out per row (B, NH, T) */
	size_t flash_D_cap;
	uint16_t *bf[2];	/* bf16: converted operands (see the bf16 section) */
	size_t bf_cap[2];
	uint16_t *tile16;	/* bf16 weight tile */
	size_t tile16_cap;
};

static struct cu_state *st_of(struct ftk_backend *be)
{
	return (struct cu_state *)be->ctx;
}

static void init_once(struct ftk_backend *be)
{
	struct cu_state *st = st_of(be);
	if (st->ready)
		return;
	CKB(cublasCreate(&st->blas));
	CK(cudaMemcpyToSymbol(d_nf4_code, st->code, sizeof(float) * 16));
	st->ready = 1;
}

/*
 * After a launch: a bad launch (configuration, resources) shows here, at
 * its op.  Nothing waits for the kernel: ops queue on the default stream in
 * order, downloads (cudaMemcpy) wait for what came before them, and the
 * model calls the table's sync once at the end of a backward pass and
 * before it copies the LoRA arrays to the host, not once per op.
 */
static void launched(void)
{
	CK(cudaGetLastError());
}

/* ---------------------------------------------------------------- memory */

static void *cu_alloc(struct ftk_backend *be, size_t n)
{
	init_once(be);
	void *p = NULL;
	CK(cudaMalloc(&p, n ? n : 64));
	CK(cudaMemset(p, 0, n ? n : 64));
	return p;
}

static void cu_free(struct ftk_backend *, void *p)
{
	if (!p)
		return;
	CK(cudaFree(p));	/* waits for the device itself */
}

static void cu_memcpy(struct ftk_backend *, void *dst, const void *src, size_t n)
{
	CK(cudaMemcpy(dst, src, n, cudaMemcpyDefault));
}

static void cu_zero(struct ftk_backend *, void *p, size_t n)
{
	CK(cudaMemset(p, 0, n));	/* queued in order with the kernels: no wait */
}

static void cu_sync(struct ftk_backend *)
{
	CK(cudaDeviceSynchronize());
}

/*
 * A weight's device representation (ftk_weight.dev): an NF4 weight's codes
 * and recovered scales; for a float32 weight under bf16, its bf16 copy
 * (made by the first bf16 product: frozen weights are converted once, not
 * per product).
 */
struct dev_nf4 {
	uint8_t *packed;
	float *absmax;
	uint16_t *bf16;	/* (N, K), a float32 weight rounded to bf16, or NULL */
};

static void cu_weight_prepare(struct ftk_backend *be, struct ftk_weight *w)
{
	init_once(be);
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

static void cu_weight_release(struct ftk_backend *, struct ftk_weight *w)
{
	struct dev_nf4 *d = (struct dev_nf4 *)w->dev;
	if (!d)
		return;
	CK(cudaFree(d->packed));	/* NULL is fine */
	CK(cudaFree(d->absmax));
	CK(cudaFree(d->bf16));
	free(d);
	w->dev = NULL;
}

static void cu_set_threads(struct ftk_backend *, int n)
{
	(void)n;
}

/* bf16 products (after the fp32 ones): operands converted, then cuBLAS */
static void bf16_gemm(struct ftk_backend *be, int ta, int tb, int M, int N, int K, float alpha,
		      const float *A, int lda, const float *B, int ldb, float beta, float *C,
		      int ldc);
static void bf16_linear(struct ftk_backend *be, float *y, const float *x,
			const struct ftk_weight *w, const float *bias, int M, int bwd);
static void cu_add_bias(float *out, const float *bias, int M, int N);

/* ---------------------------------------------------------------- gemm */

/*
 * Row-major C (M, N) = op(A) op(B) is column-major C^T = op(B)^T op(A)^T:
 * the same buffers passed to cuBLAS with the operands swapped.
 */
static void cu_gemm(struct ftk_backend *be, int ta, int tb, int M, int N, int K, float alpha,
		    const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
	struct cu_state *st = st_of(be);
	init_once(be);
	if (M <= 0 || N <= 0)
		return;
	if (st->prec == FTK_PREC_BF16) {
		bf16_gemm(be, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
		return;
	}
	/* --precision tf32: the same call, tensor cores allowed to round the operands to TF32 */
	cublasComputeType_t ct = st->prec == FTK_PREC_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32
							 : CUBLAS_COMPUTE_32F;
	CKB(cublasGemmEx(st->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
			 N, M, K, &alpha, B, CUDA_R_32F, ldb, A, CUDA_R_32F, lda, &beta, C,
			 CUDA_R_32F, ldc, ct, CUBLAS_GEMM_DEFAULT));
	launched();
}

/* Independent products: one cuBLAS call each, in order, on the default stream. */
static void cu_gemm_batch(struct ftk_backend *be, int n, const struct ftk_gemm_args *g)
{
	for (int i = 0; i < n; i++)
		cu_gemm(be, g[i].ta, g[i].tb, g[i].M, g[i].N, g[i].K, g[i].alpha, g[i].A, g[i].lda,
			g[i].B, g[i].ldb, g[i].beta, g[i].C, g[i].ldc);
}

/* ---------------------------------------------------------------- NF4 fused kernels */

/*
 * The fused NF4 products (their bodies and design: nf4_kernels.h).  Which
 * path an NF4 linear layer takes is FTK_CUDA_NF4, read at every call so the
 * selftest can force each one:
 *   auto    (default) forward: the GEMV kernel for M <= 8, cuBLAS on fp32
 *           tiles above; backward-input: cuBLAS on fp32 tiles.
 *   gemv    forward by the GEMV kernel at every M (8 input rows per launch);
 *           backward-input as auto.
 *   fused   forward and backward-input by the tiled GEMM with the decode in
 *           its operand load, at every M.
 *   cublas  forward and backward-input by cuBLAS on dequantized fp32 tiles.
 * Why auto is what it is, untimed (no GPU where this was written): at M <= 8
 * the product is bound by reading W, and the GEMV reads 4 bits per weight
 * where the tile path also writes 32 bits per weight and reads them back
 * (17 times the traffic); at training sizes the product is bound by
 * arithmetic, where cuBLAS's tuned kernels (and tensor cores under
 * FTK_CUDA_BF16=1) should beat a plain 64 x 64 SIMT tile, and the tile's
 * 64 MiB scratch is small beside the activations.
 */
enum nf4_path { NF4_AUTO, NF4_GEMV, NF4_FUSED, NF4_CUBLAS };

static enum nf4_path nf4_path_env(void)
{
	static int warned;
	const char *s = getenv("FTK_CUDA_NF4");
	if (!s || !*s || !strcmp(s, "auto"))
		return NF4_AUTO;
	if (!strcmp(s, "gemv"))
		return NF4_GEMV;
	if (!strcmp(s, "fused"))
		return NF4_FUSED;
	if (!strcmp(s, "cublas"))
		return NF4_CUBLAS;
	if (!warned)
		fprintf(stderr, "ftk cuda: FTK_CUDA_NF4='%s' is not auto, gemv, fused or cublas; "
				"using auto\n", s);
	warned = 1;
	return NF4_AUTO;
}

/* One warp per output row n = blockIdx.x * WARPS + warp; lane partials, then shuffles. */
__global__ void __launch_bounds__(FTK_NF4_GEMV_WARPS * FTK_NF4_WARP)
k_nf4_gemv(float *out, const float *x, const float *bias, struct ftk_nf4_view w, int M)
{
	__shared__ float code[16];
	if (threadIdx.x < 16)
		code[threadIdx.x] = d_nf4_code[threadIdx.x];
	__syncthreads();
	w.code = code;
	int n = blockIdx.x * FTK_NF4_GEMV_WARPS + threadIdx.x / FTK_NF4_WARP;
	int lane = threadIdx.x % FTK_NF4_WARP;
	if (n >= w.N)
		return;		/* the whole warp: n is the same for its 32 lanes */
	float acc[FTK_NF4_GEMV_MAXM];
	ftk_nf4_gemv_lane(&w, x, M, n, lane, acc);
	for (int off = FTK_NF4_WARP / 2; off > 0; off /= 2)
		for (int m = 0; m < FTK_NF4_GEMV_MAXM; m++)
			acc[m] += __shfl_xor_sync(0xffffffffu, acc[m], off);
	if (lane == 0)
		ftk_nf4_gemv_store(out, bias, M, w.N, n, acc);
}

/*
 * The fused GEMM, one kernel for both directions (nf4_kernels.h's phases):
 *   BWD 0: y = out (M, N) = x (M, K) @ W^T + bias; block = (m tile, n tile)
 *   BWD 1: y = dinp (M, K) += x = dout (M, N) @ W; block = (m tile, k tile)
 */
template <int BWD>
__global__ void __launch_bounds__(FTK_NF4_THREADS)
k_nf4_mm(float *y, const float *x, const float *bias, struct ftk_nf4_view w, int M)
{
	__shared__ float As[FTK_NF4_AS_FLOATS], Bs[FTK_NF4_BS_FLOATS], code[16];
	if (threadIdx.x < 16)
		code[threadIdx.x] = d_nf4_code[threadIdx.x];
	__syncthreads();
	w.code = code;
	float acc[FTK_NF4_ACC];
	for (int i = 0; i < FTK_NF4_ACC; i++)
		acc[i] = 0.0f;
	int depth = BWD ? w.N : w.K;	/* the reduction's length */
	for (int r0 = 0; r0 < depth; r0 += FTK_NF4_TK) {
		if (BWD)
			ftk_nf4_bwd_load(&w, x, M, blockIdx.y, blockIdx.x, r0, As, Bs, threadIdx.x);
		else
			ftk_nf4_fwd_load(&w, x, M, blockIdx.y, blockIdx.x, r0, As, Bs, threadIdx.x);
		__syncthreads();
		ftk_nf4_tile_acc(As, Bs, acc, threadIdx.x);
		__syncthreads();
	}
	if (BWD)
		ftk_nf4_bwd_store(y, M, w.K, blockIdx.y, blockIdx.x, acc, threadIdx.x);
	else
		ftk_nf4_fwd_store(y, bias, M, w.N, blockIdx.y, blockIdx.x, acc, threadIdx.x);
}

static struct ftk_nf4_view nf4_view(const struct ftk_weight *w)
{
	const struct dev_nf4 *d = (const struct dev_nf4 *)w->dev;
	struct ftk_nf4_view v = { d->packed, d->absmax, NULL, w->rows, w->cols };
	return v;	/* code: each kernel points it at its shared copy of d_nf4_code */
}

/*
 * out (M, N) = inp (M, K) @ W^T + bias by a fused kernel when FTK_CUDA_NF4
 * (and M) say so.  Returns 1 when done, 0 when the caller's cuBLAS tile
 * path is to do it (nothing was launched).
 */
static int nf4_fused_fwd(float *out, const float *inp, const struct ftk_weight *w,
			 const float *bias, int M)
{
	enum nf4_path p = nf4_path_env();
	if (p == NF4_AUTO)
		p = M <= FTK_NF4_GEMV_MAXM ? NF4_GEMV : NF4_CUBLAS;
	unsigned m_tiles = (unsigned)((M + FTK_NF4_TM - 1) / FTK_NF4_TM);
	if (p == NF4_CUBLAS || M <= 0 || (p == NF4_FUSED && m_tiles > 65535))
		return 0;
	struct ftk_nf4_view v = nf4_view(w);
	int N = w->rows, K = w->cols;
	if (p == NF4_GEMV) {
		unsigned nb = (unsigned)((N + FTK_NF4_GEMV_WARPS - 1) / FTK_NF4_GEMV_WARPS);
		for (int m0 = 0; m0 < M; m0 += FTK_NF4_GEMV_MAXM) {
			int mc = M - m0 < FTK_NF4_GEMV_MAXM ? M - m0 : FTK_NF4_GEMV_MAXM;
			k_nf4_gemv<<<nb, FTK_NF4_GEMV_WARPS * FTK_NF4_WARP>>>(
				out + (size_t)m0 * N, inp + (size_t)m0 * K, bias, v, mc);
		}
	} else {
		dim3 grid((unsigned)((N + FTK_NF4_TN - 1) / FTK_NF4_TN), m_tiles);
		k_nf4_mm<0><<<grid, FTK_NF4_THREADS>>>(out, inp, bias, v, M);
	}
	launched();
	return 1;
}

/*
 * dinp (M, K) += dout (M, N) @ W by the fused tiled kernel when
 * FTK_CUDA_NF4=fused.  Returns 1 when done, 0 for the cuBLAS tile path.
 * There is no GEMV backward: M <= 8 in linear_bwd_inp means a training
 * micro-batch of at most 8 tokens, and generation has no backward pass.
 */
static int nf4_fused_bwd(float *dinp, const float *dout, const struct ftk_weight *w, int M)
{
	unsigned m_tiles = (unsigned)((M + FTK_NF4_TM - 1) / FTK_NF4_TM);
	if (nf4_path_env() != NF4_FUSED || M <= 0 || m_tiles > 65535)
		return 0;
	dim3 grid((unsigned)((w->cols + FTK_NF4_TN - 1) / FTK_NF4_TN), m_tiles);
	k_nf4_mm<1><<<grid, FTK_NF4_THREADS>>>(dinp, dout, NULL, nf4_view(w), M);
	launched();
	return 1;
}

/* ---------------------------------------------------------------- NF4 linear */

/*
 * The code table in shared memory, as the fused kernels keep it: neighbouring
 * threads decode different codes, and a constant-memory read with a
 * different address per thread is serialized across the warp.
 */
__device__ __forceinline__ void stage_code(float *code)
{
	if (threadIdx.x < 16)
		code[threadIdx.x] = d_nf4_code[threadIdx.x];
	__syncthreads();
}

__global__ void k_nf4_dequant(float *out, const uint8_t *packed, const float *absmax,
			      size_t start, size_t count)
{
	__shared__ float code[16];
	stage_code(code);	/* before any thread leaves: every thread reaches the barrier */
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < count)
		out[i] = ftk_nf4_decode(packed, absmax, code, start + i);
}

/* Dequantize rows [r0, r0 + r) of an NF4 weight (N, K) into the tile. */
static float *nf4_tile(struct ftk_backend *be, const struct ftk_weight *w, size_t r0, size_t r)
{
	struct cu_state *st = st_of(be);
	const struct dev_nf4 *d = (const struct dev_nf4 *)w->dev;
	size_t n = r * (size_t)w->cols;
	if (n > st->tile_cap) {
		if (st->tile)
			CK(cudaFree(st->tile));
		CK(cudaMalloc((void **)&st->tile, n * sizeof(float)));
		st->tile_cap = n;
	}
	k_nf4_dequant<<<blocks_for(n), THREADS>>>(st->tile, d->packed, d->absmax, r0 * w->cols, n);
	return st->tile;
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
	launched();
}

static void cu_linear_fwd(struct ftk_backend *be, float *out, const float *inp,
			  const struct ftk_weight *w, const float *bias, int M)
{
	struct cu_state *st = st_of(be);
	if (st->prec == FTK_PREC_BF16) {
		bf16_linear(be, out, inp, w, bias, M, 0);
		return;
	}
	int N = w->rows, K = w->cols;
	if (w->quant == FTK_QUANT_NONE) {
		cu_gemm(be, 0, 1, M, N, K, 1.0f, inp, K, w->f32, K, 0.0f, out, N);
	} else {
		if (nf4_fused_fwd(out, inp, w, bias, M))
			return;	/* bias added in the kernel */
		size_t R = tile_rows(w);
		for (size_t r0 = 0; r0 < (size_t)N; r0 += R) {
			size_t r = (size_t)N - r0 < R ? (size_t)N - r0 : R;
			float *tile = nf4_tile(be, w, r0, r);
			/* out[:, r0:r0+r] = inp (M, K) @ tile^T */
			cu_gemm(be, 0, 1, M, (int)r, K, 1.0f, inp, K, tile, K, 0.0f, out + r0, N);
		}
	}
	if (bias)
		cu_add_bias(out, bias, M, N);
}

static void cu_linear_bwd_inp(struct ftk_backend *be, float *dinp, const float *dout,
			      const struct ftk_weight *w, int M)
{
	struct cu_state *st = st_of(be);
	if (st->prec == FTK_PREC_BF16) {
		bf16_linear(be, dinp, dout, w, NULL, M, 1);
		return;
	}
	int N = w->rows, K = w->cols;
	if (w->quant == FTK_QUANT_NONE) {
		cu_gemm(be, 0, 0, M, K, N, 1.0f, dout, N, w->f32, K, 1.0f, dinp, K);
		return;
	}
	if (nf4_fused_bwd(dinp, dout, w, M))
		return;
	size_t R = tile_rows(w);
	for (size_t r0 = 0; r0 < (size_t)N; r0 += R) {
		size_t r = (size_t)N - r0 < R ? (size_t)N - r0 : R;
		float *tile = nf4_tile(be, w, r0, r);
		/* dinp (M, K) += dout[:, r0:r0+r] (M, r) @ tile (r, K) */
		cu_gemm(be, 0, 0, M, K, (int)r, 1.0f, dout + r0, N, tile, K, 1.0f, dinp, K);
	}
}

/* ---------------------------------------------------------------- rmsnorm, rope */

/*
 * RMSNorm: one warp per row, lane l over elements l, l + 32, ... (so a
 * warp reads 32 consecutive floats at a time) through ops.h's
 * ftk_rmsnorm_part_* pieces, the lanes' sums combined with xor shuffles
 * (every lane ends with the row's sum).
 */
__device__ __forceinline__ float warp_sum(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

enum { ROWS_PER_BLOCK = THREADS / 32 };

__global__ void k_rmsnorm_fwd(float *out, float *rstd, const float *inp, const float *weight,
			      int M, int C, float eps)
{
	int m = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
	if (m >= M)
		return;	/* a whole warp leaves together: m is the same for its lanes */
	const float *x = inp + (size_t)m * C;
	float r = ftk_rmsnorm_rstd(warp_sum(ftk_rmsnorm_part_ss(x, C, lane, 32)), C, eps);
	ftk_rmsnorm_part_out(out + (size_t)m * C, x, weight, r, C, lane, 32);
	if (rstd && lane == 0)
		rstd[m] = r;
}

static unsigned row_blocks(int M)
{
	return (unsigned)((M + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
}

static void cu_rmsnorm_fwd(struct ftk_backend *, float *out, float *rstd, const float *inp,
			   const float *weight, int M, int C, float eps)
{
	if (M > 0)
		k_rmsnorm_fwd<<<row_blocks(M), THREADS>>>(out, rstd, inp, weight, M, C, eps);
	launched();
}

__global__ void k_rmsnorm_bwd(float *dinp, const float *dout, const float *inp,
			      const float *weight, const float *rstd, int M, int C)
{
	int m = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
	if (m >= M)
		return;
	const float *dy = dout + (size_t)m * C, *x = inp + (size_t)m * C;
	float dot = warp_sum(ftk_rmsnorm_part_dot(dy, x, weight, C, lane, 32));
	ftk_rmsnorm_part_dx(dinp + (size_t)m * C, dy, x, weight, rstd[m], dot, C, lane, 32);
}

static void cu_rmsnorm_bwd(struct ftk_backend *, float *dinp, const float *dout, const float *inp,
			   const float *weight, const float *rstd, int M, int C)
{
	if (M > 0)
		k_rmsnorm_bwd<<<row_blocks(M), THREADS>>>(dinp, dout, inp, weight, rstd, M, C);
	launched();
}

/* One thread per rotated pair: a warp covers 32 consecutive pairs of a head. */
__global__ void k_rope(float *x, const int32_t *pos, const float *inv_freq, int M, int nh, int hd,
		       int sign)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	int h = hd / 2;
	if (i >= (size_t)M * nh * h)
		return;
	size_t head = i / h;
	ftk_rope_pair(x + head * hd, (int)(i % h), h, pos[head / nh], inv_freq, sign);
}

static void cu_rope(struct ftk_backend *, float *x, const int32_t *pos, const float *inv_freq,
		    int M, int nh, int hd, int sign)
{
	k_rope<<<blocks_for((size_t)M * nh * (hd / 2)), THREADS>>>(x, pos, inv_freq, M, nh, hd, sign);
	launched();
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

static void cu_attn_fwd(struct ftk_backend *, float *out, float *att, const float *q,
			const float *k, const float *v, const int32_t *doc, int B, int T, int NH,
			int NKV, int hd)
{
	size_t n = (size_t)B * NH * T;
	k_attn_fwd<<<blocks_for(n), THREADS>>>(out, att, q, k, v, doc, B, T, NH, NKV, hd);
	launched();
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

static void cu_attn_bwd(struct ftk_backend *be, float *dq, float *dk, float *dv, const float *dout,
			const float *att, const float *q, const float *k, const float *v, int B,
			int T, int NH, int NKV, int hd)
{
	struct cu_state *st = st_of(be);
	size_t need = (size_t)B * NH * T * T;
	if (need > st->dscore_cap) {
		if (st->dscore)
			CK(cudaFree(st->dscore));
		CK(cudaMalloc((void **)&st->dscore, need * sizeof(float)));
		st->dscore_cap = need;
	}
	size_t nq = (size_t)B * NH * T, nk = (size_t)B * NKV * T;
	k_attn_bwd_q<<<blocks_for(nq), THREADS>>>(dq, st->dscore, dout, att, k, v, B, T, NH, NKV,
						  hd);
	k_attn_bwd_kv<<<blocks_for(nk), THREADS>>>(dk, dv, st->dscore, att, q, dout, B, T, NH, NKV,
						   hd);
	launched();
}

/*
 * Flash attention (flash_kernels.h holds the kernel bodies as phase
 * functions, which tests/unit/test_flash.c runs on the host): a block of
 * FTK_FLASH_ROWS warps, one per query row (forward, dQ) or key row (dK,
 * dV), the row's vectors split across the warp's lanes by head dimension;
 * K/V or Q/dout tiles go through dynamic shared memory.  The tile loops'
 * bounds are the block's, so every barrier is reached by all threads, and
 * the warp phases' key loops are the warp's, so every shuffle in them has
 * all 32 lanes.
 */
static_assert(FTK_FLASH_HD_MAX == FTK_FLASH_MAX_HD, "flash head_dim limits differ");

__global__ void __launch_bounds__(FTK_FLASH_THREADS)
	k_flash_fwd(struct ftk_flash_dims d, float *out, float *lse, const float *q,
		    const float *k, const float *v, const int32_t *doc)
{
	extern __shared__ float sm[];
	struct ftk_flash_fwd_lane st;
	int blk = (int)blockIdx.x, tid = (int)threadIdx.x, w = tid / FTK_FLASH_WARP, kb, ke;
	if (tid == 0)
		ftk_flash_q_starts(&d, blk, sm, doc);
	ftk_flash_fwd_begin(&d, blk, w, &st, q);
	__syncthreads();
	ftk_flash_q_keys(&d, blk, sm, &kb, &ke);
	for (int k0 = kb; k0 < ke; k0 += d.tile) {
		ftk_flash_load_kv(&d, blk, tid, FTK_FLASH_THREADS, k0, ke, sm, k, v);
		__syncthreads();
		ftk_flash_fwd_tile(&d, w, k0, ke, sm, &st);
		__syncthreads();
	}
	ftk_flash_fwd_end(&d, blk, w, &st, out, lse);
}

__global__ void __launch_bounds__(FTK_FLASH_THREADS)
	k_flash_dq(struct ftk_flash_dims d, float *dq, float *Dbuf, const float *dout,
		   const float *out, const float *lse, const float *q, const float *k,
		   const float *v, const int32_t *doc)
{
	extern __shared__ float sm[];
	struct ftk_flash_dq_lane st;
	int blk = (int)blockIdx.x, tid = (int)threadIdx.x, w = tid / FTK_FLASH_WARP, kb, ke;
	if (tid == 0)
		ftk_flash_q_starts(&d, blk, sm, doc);
	ftk_flash_dq_begin(&d, blk, w, &st, q, dout, out, lse, Dbuf);
	__syncthreads();
	ftk_flash_q_keys(&d, blk, sm, &kb, &ke);
	for (int k0 = kb; k0 < ke; k0 += d.tile) {
		ftk_flash_load_kv(&d, blk, tid, FTK_FLASH_THREADS, k0, ke, sm, k, v);
		__syncthreads();
		ftk_flash_dq_tile(&d, w, k0, ke, sm, &st);
		__syncthreads();
	}
	ftk_flash_dq_end(&d, blk, w, &st, dq);
}

__global__ void __launch_bounds__(FTK_FLASH_THREADS)
	k_flash_dkv(struct ftk_flash_dims d, float *dk, float *dv, const float *Dbuf,
		    const float *dout, const float *lse, const float *q, const float *k,
		    const float *v, const int32_t *doc)
{
	extern __shared__ float sm[];
	struct ftk_flash_kv_lane st;
	int blk = (int)blockIdx.x, tid = (int)threadIdx.x, w = tid / FTK_FLASH_WARP, qb, qe, b, kh,
	    s0;
	if (tid == 0)
		ftk_flash_kv_ends(&d, blk, sm, doc);
	ftk_flash_kv_begin(&d, blk, w, &st, k, v);
	__syncthreads();
	ftk_flash_kv_queries(&d, blk, sm, &qb, &qe);
	ftk_flash_kvblock(&d, blk, &b, &kh, &s0);
	int g = d.NH / d.NKV;
	for (int h = kh * g; h < (kh + 1) * g; h++)
		for (int q0 = qb; q0 < qe; q0 += d.tile) {
			ftk_flash_load_qo(&d, blk, tid, FTK_FLASH_THREADS, h, q0, qe, sm, q, dout, lse,
					  Dbuf);
			__syncthreads();
			ftk_flash_kv_tile(&d, w, q0, qe, sm, &st);
			__syncthreads();
		}
	ftk_flash_kv_end(&d, blk, w, &st, dk, dv);
}

static void cu_attn_fwd_flash(struct ftk_backend *, float *out, float *lse, const float *q,
			      const float *k, const float *v, const int32_t *doc, int B, int T,
			      int NH, int NKV, int hd)
{
	struct ftk_flash_dims d = ftk_flash_dims_make(B, T, NH, NKV, hd);
	size_t smem = ftk_flash_smem_floats(&d) * sizeof(float);
	k_flash_fwd<<<(unsigned)ftk_flash_q_blocks(&d), FTK_FLASH_THREADS, smem>>>(d, out, lse, q, k,
									    v, doc);
	launched();
}

static void cu_attn_bwd_flash(struct ftk_backend *be, float *dq, float *dk, float *dv,
			      const float *dout, const float *out, const float *lse, const float *q,
			      const float *k, const float *v, const int32_t *doc, int B, int T,
			      int NH, int NKV, int hd)
{
	struct cu_state *st = st_of(be);
	size_t need = (size_t)B * NH * T;
	if (need > st->flash_D_cap) {
		if (st->flash_D)
			CK(cudaFree(st->flash_D));
		CK(cudaMalloc((void **)&st->flash_D, need * sizeof(float)));
		st->flash_D_cap = need;
	}
	struct ftk_flash_dims d = ftk_flash_dims_make(B, T, NH, NKV, hd);
	size_t smem = ftk_flash_smem_floats(&d) * sizeof(float);
	k_flash_dq<<<(unsigned)ftk_flash_q_blocks(&d), FTK_FLASH_THREADS, smem>>>(
		d, dq, st->flash_D, dout, out, lse, q, k, v, doc);
	k_flash_dkv<<<(unsigned)ftk_flash_kv_blocks(&d), FTK_FLASH_THREADS, smem>>>(
		d, dk, dv, st->flash_D, dout, lse, q, k, v, doc);
	launched();
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

/*
 * One block over the row of scores (it was one thread: a serial pass over
 * up to the whole context per head and token): ops.h's ftk_softmax_part_*
 * pieces with a start and a stride, the parts' maxima and sums combined by
 * a tree in shared memory (test_ops_shared emulates this order).
 */
enum { SOFTMAX_THREADS = 256 };

__global__ void __launch_bounds__(SOFTMAX_THREADS) k_softmax_block(float *x, int n)
{
	__shared__ float red[SOFTMAX_THREADS];
	int tid = threadIdx.x, nt = blockDim.x;
	red[tid] = ftk_softmax_part_max(x, n, tid, nt);
	__syncthreads();
	for (int s = nt / 2; s > 0; s >>= 1) {
		if (tid < s && red[tid + s] > red[tid])
			red[tid] = red[tid + s];
		__syncthreads();
	}
	float mx = red[0];
	__syncthreads();	/* everyone has read the maximum before red is reused */
	red[tid] = ftk_softmax_part_exp(x, n, mx, tid, nt);
	__syncthreads();
	for (int s = nt / 2; s > 0; s >>= 1) {
		if (tid < s)
			red[tid] += red[tid + s];
		__syncthreads();
	}
	ftk_softmax_part_scale(x, n, 1.0f / red[0], tid, nt);
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

static void cu_attn_decode(struct ftk_backend *, float *out, const float *q, const float *kc,
			   const float *vc, int n, int NH, int NKV, int hd, float *scratch)
{
	for (int h = 0; h < NH; h++) {
		k_attn_decode_scores<<<blocks_for((size_t)n), THREADS>>>(scratch, q, kc, n, h, NH,
									 NKV, hd);
		k_softmax_block<<<1, SOFTMAX_THREADS>>>(scratch, n);
		k_attn_decode_out<<<blocks_for((size_t)hd), THREADS>>>(out, scratch, vc, n, h, NH,
								       NKV, hd);
	}
	launched();
}

/* ---------------------------------------------------------------- elementwise */

__global__ void k_swiglu_fwd(float *out, const float *gate, const float *up, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		out[i] = ftk_swiglu(gate[i], up[i]);
}

static void cu_swiglu_fwd(struct ftk_backend *, float *out, const float *gate, const float *up,
			  size_t n)
{
	k_swiglu_fwd<<<blocks_for(n), THREADS>>>(out, gate, up, n);
	launched();
}

__global__ void k_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate,
			     const float *up, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		ftk_swiglu_bwd(gate[i], up[i], dout[i], &dgate[i], &dup[i]);
}

static void cu_swiglu_bwd(struct ftk_backend *, float *dgate, float *dup, const float *dout,
			  const float *gate, const float *up, size_t n)
{
	k_swiglu_bwd<<<blocks_for(n), THREADS>>>(dgate, dup, dout, gate, up, n);
	launched();
}

/*
 * One block per row (a row is a whole vocabulary, 32k to 152k logits): each
 * thread takes a strided share through ops.h's ftk_xent_part_* pieces, and
 * the block combines the partial maxima (exact in any order) and the
 * partial sums (double) in shared memory.  The first version gave each row
 * one thread, which left the GPU nearly idle for a few thousand rows.
 */
enum { XENT_THREADS = 256 };

__global__ void k_xent(float *loss, float *logits, const int32_t *target, int M, int V, float gs)
{
	__shared__ float smax[XENT_THREADS];
	__shared__ double ssum[XENT_THREADS];
	int m = blockIdx.x, tid = threadIdx.x, nt = blockDim.x;
	float *row = logits + (size_t)m * V;
	int t = target[m];
	if (t < 0) {
		if (gs != 0.0f)
			for (int i = tid; i < V; i += nt)
				row[i] = 0.0f;
		if (tid == 0)
			loss[m] = 0.0f;
		return;
	}
	smax[tid] = ftk_xent_part_max(row, V, tid, nt);
	__syncthreads();
	for (int s = nt / 2; s > 0; s >>= 1) {
		if (tid < s && smax[tid + s] > smax[tid])
			smax[tid] = smax[tid + s];
		__syncthreads();
	}
	float mx = smax[0], xt = row[t];
	__syncthreads();	/* everyone has read x[target] before it is overwritten */
	ssum[tid] = ftk_xent_part_sum(row, V, mx, tid, nt, gs != 0.0f);
	__syncthreads();
	for (int s = nt / 2; s > 0; s >>= 1) {
		if (tid < s)
			ssum[tid] += ssum[tid + s];
		__syncthreads();
	}
	double sum = ssum[0];
	if (gs != 0.0f)
		ftk_xent_part_grad(row, V, t, sum, gs, tid, nt);
	if (tid == 0)
		loss[m] = ftk_xent_loss(mx, sum, xt);
}

static void cu_xent(struct ftk_backend *, float *loss, float *logits, const int32_t *target, int M,
		    int V, float gs)
{
	if (M > 0)
		k_xent<<<M, XENT_THREADS>>>(loss, logits, target, M, V, gs);
	launched();
}

__global__ void k_add(float *y, const float *x, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		y[i] += x[i];
}

static void cu_add(struct ftk_backend *, float *y, const float *x, size_t n)
{
	k_add<<<blocks_for(n), THREADS>>>(y, x, n);
	launched();
}

__global__ void k_dropout(float *y, const float *x, const uint8_t *keep, float scale, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		y[i] = keep[i] ? x[i] * scale : 0.0f;
}

static void cu_dropout(struct ftk_backend *, float *y, const float *x, const uint8_t *keep,
		       float scale, size_t n)
{
	k_dropout<<<blocks_for(n), THREADS>>>(y, x, keep, scale, n);
	launched();
}

__global__ void k_dropout_mask(uint8_t *keep, uint64_t stream, float p, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		keep[i] = (uint8_t)ftk_dropout_keep(stream, i, p);
}

static void cu_dropout_mask(struct ftk_backend *, uint8_t *keep, uint64_t stream, float p, size_t n)
{
	k_dropout_mask<<<blocks_for(n), THREADS>>>(keep, stream, p, n);
	launched();
}

__global__ void k_embed(float *out, const float *table, const uint32_t *ids, int M, int C)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < (size_t)M * C)
		out[i] = table[(size_t)ids[i / C] * C + i % C];
}

static void cu_embed(struct ftk_backend *, float *out, const float *table, const uint32_t *ids,
		     int M, int C)
{
	k_embed<<<blocks_for((size_t)M * C), THREADS>>>(out, table, ids, M, C);
	launched();
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

__global__ void k_scale(float *x, float s, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		x[i] = ftk_clip_scale(x[i], s);
}

/*
 * The optimizer entries.  Each waits for its kernel, as the table's
 * contract says (written when the LoRA arrays were managed memory that the
 * host read next); with device memory the wait could go, but the contract
 * would change with it (left as it is).
 */
static double cu_sumsq(struct ftk_backend *, const float *x, size_t n)
{
	enum { NB = 256 };
	double *d, h[NB], s = 0;
	CK(cudaMalloc((void **)&d, NB * sizeof(double)));
	k_sumsq<<<NB, THREADS>>>(d, x, n);
	CK(cudaGetLastError());
	CK(cudaMemcpy(h, d, sizeof(h), cudaMemcpyDeviceToHost));
	CK(cudaFree(d));
	for (int i = 0; i < NB; i++)
		s += h[i];
	return s;
}

static void cu_scale(struct ftk_backend *, float *x, float s, size_t n)
{
	k_scale<<<blocks_for(n), THREADS>>>(x, s, n);
	CK(cudaGetLastError());
	CK(cudaDeviceSynchronize());
}

static void cu_adamw(struct ftk_backend *, float *w, float *m, float *v, const float *g, size_t n,
		     const struct ftk_adamw_consts *c)
{
	k_adamw<<<blocks_for(n), THREADS>>>(w, m, v, g, n, *c);
	CK(cudaGetLastError());
	CK(cudaDeviceSynchronize());
}

/* ---------------------------------------------------------------- bf16 */

/*
 * --precision bf16.  Operands live here as uint16_t holding the bits
 * ftk_bf16_rne (ops.h) produces, which is __nv_bfloat16's layout, so the
 * rounding is the CPU emulation's to the bit; cuBLAS reads them as
 * CUDA_R_16BF, multiplies (exactly: a bf16 product fits in fp32) and adds
 * in fp32 (CUBLAS_COMPUTE_32F) into an fp32 C.  Activations stay fp32 in
 * memory: each product converts its activation operand into the instance's
 * bf[0] (and a LoRA weight or second activation into bf[1]) just before the
 * call.  NF4 weights are decoded straight into bf16 tiles (tile16, at most
 * TILE_ELEMS values: 32 MiB instead of the fp32 tile's 64 MiB); a float32
 * weight (the head, --quant none) is frozen and converted once into a bf16
 * copy (bf16_copy) that every later product reads whole.
 */
static uint16_t *bf_buf(uint16_t **p, size_t *cap, size_t n)
{
	if (n > *cap) {
		if (*p)
			CK(cudaFree(*p));
		CK(cudaMalloc((void **)p, (n ? n : 1) * sizeof(uint16_t)));
		*cap = n;
	}
	return *p;
}

/* dst (rows, cols), packed = src's rows (stride ld) rounded to bf16 */
__global__ void k_to_bf16(uint16_t *dst, const float *src, int rows, int cols, int ld)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < (size_t)rows * cols)
		dst[i] = ftk_bf16_rne(src[i / cols * (size_t)ld + i % cols]);
}

static void to_bf16(uint16_t *dst, const float *src, int rows, int cols, int ld)
{
	size_t n = (size_t)rows * cols;
	if (n)
		k_to_bf16<<<blocks_for(n), THREADS>>>(dst, src, rows, cols, ld);
}

__global__ void k_nf4_dequant_bf16(uint16_t *out, const uint8_t *packed, const float *absmax,
				   size_t start, size_t count)
{
	__shared__ float code[16];
	stage_code(code);
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < count)
		out[i] = ftk_bf16_rne(ftk_nf4_decode(packed, absmax, code, start + i));
}

/*
 * The bf16 copy of a float32 weight (the head, --quant none weights), made
 * once: these weights are frozen (only LoRA trains), and converting the
 * 128256 x 4096 head of Llama 3 for every 64-row chunk moved about 1.6 TB
 * per 16k-token micro-batch.  Held in w->dev until weight_release;
 * --plan counts it (V x C x 2 bytes for the head).
 */
static uint16_t *bf16_copy(const struct ftk_weight *w)
{
	struct ftk_weight *mw = (struct ftk_weight *)w;	/* the backend's own field */
	struct dev_nf4 *d = (struct dev_nf4 *)mw->dev;
	if (!d) {
		d = (struct dev_nf4 *)calloc(1, sizeof(*d));
		if (!d)
			abort();
		mw->dev = d;
	}
	if (!d->bf16) {
		size_t n = (size_t)w->rows * w->cols;
		CK(cudaMalloc((void **)&d->bf16, (n ? n : 1) * sizeof(uint16_t)));
		to_bf16(d->bf16, w->f32, w->rows, w->cols, w->cols);
	}
	return d->bf16;
}

/* Rows [r0, r0 + r) of W (N, K) as bf16, NF4 or float32. */
static uint16_t *bf16_tile(struct ftk_backend *be, const struct ftk_weight *w, size_t r0, size_t r)
{
	struct cu_state *st = st_of(be);
	if (w->quant != FTK_QUANT_NF4)
		return bf16_copy(w) + r0 * w->cols;
	size_t n = r * (size_t)w->cols;
	uint16_t *t = bf_buf(&st->tile16, &st->tile16_cap, n);
	const struct dev_nf4 *d = (const struct dev_nf4 *)w->dev;
	k_nf4_dequant_bf16<<<blocks_for(n), THREADS>>>(t, d->packed, d->absmax, r0 * w->cols, n);
	return t;
}

/* Row-major C (M, N) = alpha op(A) op(B) + beta C over bf16 operands (see cu_gemm). */
static void gemm_bf16_raw(struct ftk_backend *be, int ta, int tb, int M, int N, int K,
			  float alpha, const uint16_t *A, int lda, const uint16_t *B, int ldb,
			  float beta, float *C, int ldc)
{
	struct cu_state *st = st_of(be);
	CKB(cublasGemmEx(st->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
			 N, M, K, &alpha, B, CUDA_R_16BF, ldb, A, CUDA_R_16BF, lda, &beta, C,
			 CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
	launched();
}

static void bf16_gemm(struct ftk_backend *be, int ta, int tb, int M, int N, int K, float alpha,
		      const float *A, int lda, const float *B, int ldb, float beta, float *C,
		      int ldc)
{
	struct cu_state *st = st_of(be);
	/* as stored: A is (ta ? K : M) rows of (ta ? M : K), B (tb ? N : K) of (tb ? K : N) */
	int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
	uint16_t *a = bf_buf(&st->bf[0], &st->bf_cap[0], (size_t)ar * ac);
	uint16_t *b = bf_buf(&st->bf[1], &st->bf_cap[1], (size_t)br * bc);
	to_bf16(a, A, ar, ac, lda);
	to_bf16(b, B, br, bc, ldb);
	gemm_bf16_raw(be, ta, tb, M, N, K, alpha, a, ac > 0 ? ac : 1, b, bc > 0 ? bc : 1, beta, C,
		      ldc);
}

/*
 * Forward: y (M, N) = bf16(x) (M, K) @ bf16(W)^T + bias; backward (bwd):
 * y (M, K) += bf16(x) (M, N) @ bf16(W).
 */
static void bf16_linear(struct ftk_backend *be, float *y, const float *x,
			const struct ftk_weight *w, const float *bias, int M, int bwd)
{
	struct cu_state *st = st_of(be);
	init_once(be);
	int N = w->rows, K = w->cols, in = bwd ? N : K;
	if (M <= 0)
		return;
	uint16_t *xb = bf_buf(&st->bf[0], &st->bf_cap[0], (size_t)M * in);
	to_bf16(xb, x, M, in, in);
	size_t R = w->quant == FTK_QUANT_NF4 ? tile_rows(w) : (size_t)N;	/* f32: its bf16 copy */
	for (size_t r0 = 0; r0 < (size_t)N; r0 += R) {
		size_t r = (size_t)N - r0 < R ? (size_t)N - r0 : R;
		uint16_t *tile = bf16_tile(be, w, r0, r);
		if (bwd)	/* y (M, K) += x[:, r0:r0+r] (M, r) @ tile (r, K) */
			gemm_bf16_raw(be, 0, 0, M, K, (int)r, 1.0f, xb + r0, N, tile, K, 1.0f, y,
				      K);
		else		/* y[:, r0:r0+r] (M, r) = x (M, K) @ tile^T */
			gemm_bf16_raw(be, 0, 1, M, (int)r, K, 1.0f, xb, K, tile, K, 0.0f, y + r0,
				      N);
	}
	if (bias)
		cu_add_bias(y, bias, M, N);
}

static int cu_set_precision(struct ftk_backend *be, int p)
{
	struct cu_state *st = st_of(be);
	if (p != FTK_PREC_FP32 && p != FTK_PREC_BF16 && p != FTK_PREC_TF32)
		return -1;
	st->prec = p;
	return 0;
}

static void cu_destroy(struct ftk_backend *be)
{
	struct cu_state *st = st_of(be);
	float *f[] = { st->tile, st->dscore, st->flash_D };
	uint16_t *h[] = { st->bf[0], st->bf[1], st->tile16 };
	for (int i = 0; i < 3; i++) {
		CK(cudaFree(f[i]));	/* NULL is fine */
		CK(cudaFree(h[i]));
	}
	if (st->ready)
		CKB(cublasDestroy(st->blas));
	free(st);
	free(be);
}

static const struct ftk_backend_ops cuda_ops = {
	/* .name = */ "cuda",
	/* .destroy = */ cu_destroy,
	/* .alloc = */ cu_alloc,
	/* .free = */ cu_free,
	/* .upload = */ cu_memcpy,
	/* .download = */ cu_memcpy,
	/* .copy = */ cu_memcpy,
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
	/* .gemm_batch = */ cu_gemm_batch,
	/* .sumsq = */ cu_sumsq,
	/* .scale = */ cu_scale,
	/* .adamw = */ cu_adamw,
	/* .set_precision = */ cu_set_precision,
	/* .attn_fwd_flash = */ cu_attn_fwd_flash,
	/* .attn_bwd_flash = */ cu_attn_bwd_flash,
	/* .sync = */ cu_sync,
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
 * A new backend instance on the current device (free it with its destroy
 * op, ftk_backend_free); NULL when out of host memory.  nf4_code: the 16
 * NF4 values (ftk_nf4_code), passed in because the shared object does not
 * link the model's archive.
 */
__attribute__((visibility("default"))) struct ftk_backend *
ftk_cuda_backend_new(const float *nf4_code)
{
	struct ftk_backend *be = (struct ftk_backend *)calloc(1, sizeof(*be));
	struct cu_state *st = (struct cu_state *)calloc(1, sizeof(*st));
	if (!be || !st) {
		free(be);
		free(st);
		return NULL;
	}
	memcpy(st->code, nf4_code, sizeof(st->code));
	st->prec = FTK_PREC_FP32;
	be->ops = &cuda_ops;
	be->ctx = st;
	return be;
}

/* The ABI this object was built for (device.c refuses a mismatch): FTK_CUDA_ABI and the ops table's size. */
__attribute__((visibility("default"))) unsigned ftk_cuda_abi(size_t *table_bytes)
{
	*table_bytes = sizeof(struct ftk_backend_ops);
	return FTK_CUDA_ABI;
}

/*
 * The local memory the driver reserves for the flash kernels: the largest
 * per-thread local size of the three (cudaFuncGetAttributes; their row
 * state lives there) times the threads the current GPU holds at once
 * (SMs x max threads per SM).  0, or -1 when the GPU cannot be asked.
 */
__attribute__((visibility("default"))) int ftk_cuda_local_reserve(size_t *bytes)
{
	cudaFuncAttributes a[3];
	int dev = 0;
	cudaDeviceProp p;
	if (cudaFuncGetAttributes(&a[0], k_flash_fwd) != cudaSuccess ||
	    cudaFuncGetAttributes(&a[1], k_flash_dq) != cudaSuccess ||
	    cudaFuncGetAttributes(&a[2], k_flash_dkv) != cudaSuccess ||
	    cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&p, dev) != cudaSuccess)
		return -1;
	size_t local = 0;
	for (int i = 0; i < 3; i++)
		local = a[i].localSizeBytes > local ? a[i].localSizeBytes : local;
	*bytes = local * (size_t)p.multiProcessorCount * (size_t)p.maxThreadsPerMultiProcessor;
	return 0;
}

/* Wait for every queued kernel: 0, or -1 when one failed, with cudart's words in why. */
__attribute__((visibility("default"))) int ftk_cuda_sync(char *why, size_t cap)
{
	cudaError_t e = cudaDeviceSynchronize();
	if (e != cudaSuccess) {
		snprintf(why, cap, "%s", cudaGetErrorString(e));
		return -1;
	}
	return 0;
}

}
