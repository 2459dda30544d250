/*
 * nf4_kernels.h: the bodies of the CUDA backend's fused NF4 kernels, written
 * as per-thread phase functions that both gcc and nvcc compile, so that a
 * CPU unit test can run them (issue 9).
 *
 * A CUDA kernel is a grid of blocks of threads; between barriers every
 * thread runs the same code with its own thread id.  Each kernel here is cut
 * at its barriers into phases, and each phase is an FTK_HD function of
 * (block indices, thread id).  backend_cuda.cu's kernels are a few lines
 * that call the phases with blockIdx/threadIdx and put __syncthreads() (or
 * the warp shuffle) between them; tests/unit/test_nf4_kernels.c runs every
 * phase for every thread id of every block in order, with the shared
 * memory poisoned before each load phase, under ASan, and compares the
 * results with dequantize-then-sgemm and with bitsandbytes' own dequantized
 * weights.  What the emulation cannot see: the hardware's speed, races the
 * real scheduler could expose that the in-order emulation hides (there are
 * none by construction: a phase writes only shared slots it owns and reads
 * shared memory only after a barrier), and nvcc's code generation.
 *
 * The weight W is (N, K) = (out, in), NF4 as bitsandbytes stores it
 * (nf4.h): element e = n * K + k of the flattened weight has its code in
 * byte e / 2 (even e in the high nibble) and its scale in absmax[e / 64].
 * A row therefore need not start on a byte or block boundary: K may be any
 * positive number (stories260K's down projection has K = 172).  Every
 * weight value is formed exactly as ftk_nf4_decode forms it (code * scale,
 * one float multiply), so the decoded tiles equal ftk_nf4_dequant's output
 * bit for bit; only the order of the sums differs from the CPU backend.
 *
 * Two kernels:
 *
 *   GEMV, out (M, N) = x (M, K) @ W^T + bias for M <= FTK_NF4_GEMV_MAXM
 *   (generation and serving: one token per sequence).  One warp per output
 *   row n; lane l takes bytes l, l + 32, ... of the row, decodes both codes
 *   of each byte with one scale (a warp's 32 consecutive bytes span one or
 *   two 64-element blocks, so the scale is one cached load per block), and
 *   accumulates against all M input rows; the 32 lane sums are then added
 *   with a butterfly of warp shuffles and lane 0 writes the M outputs.  The
 *   weight is read once, 4 bits per value, where dequantizing to an fp32
 *   tile first also writes 32 bits per value and reads them back.
 *
 *   Tiled GEMM, for training sizes, with the decode fused into the B
 *   operand's load.  A block of FTK_NF4_THREADS threads owns a
 *   FTK_NF4_TM x FTK_NF4_TN tile of the output; for each step of
 *   FTK_NF4_TK along the reduction it loads the activation tile into shared
 *   memory, decodes the matching NF4 tile (packed bytes -> fp32) into
 *   shared memory, waits, accumulates, waits.  Each thread holds a 4 x 4
 *   block of fp32 accumulators at rows ty + 16 i, columns tx + 16 j, so a
 *   warp reads consecutive shared words.  The shared arrays have one column
 *   of padding (stride TM + 1, TN + 1) so the transposing stores do not
 *   fall on one bank.  No dequantized copy of W exists outside shared
 *   memory.
 *     forward       out (M, N) = x (M, K) @ W^T: tile over (m, n), reduce
 *                   over k; B tile Bs[k][n] = W[n][k].
 *     backward-inp  dinp (M, K) += dout (M, N) @ W: tile over (m, k),
 *                   reduce over n; B tile Bs[n][k] = W[n][k].
 *   Both share the accumulate phase.
 *
 * Plain C as in ops.h: no VLAs, no library calls; loops with constant trip
 * counts so nvcc keeps the accumulators in registers.
 */
#ifndef FTK_MODEL_NF4_KERNELS_H
#define FTK_MODEL_NF4_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include "model/ops.h"

/* An NF4 weight W (N, K) as the kernels read it (all borrowed). */
struct ftk_nf4_view {
	const uint8_t *packed;	/* (ceil(N*K / 2)) two codes per byte, even element high */
	const float *absmax;	/* (ceil(N*K / 64)) recovered block scales */
	const float *code;	/* (16) the NF4 values */
	int N, K;
};

/*
 * Elements e and e + 1 of the flattened weight into *v0 and *v1 (*v1 = 0
 * when !has2).  For even e both codes come from one byte and one scale (an
 * even e and e + 1 always share their 64-block); for odd e (odd K) each is
 * decoded on its own.  The values equal ftk_nf4_decode's bit for bit.
 */
FTK_HD void ftk_nf4_decode_pair(const struct ftk_nf4_view *w, size_t e, int has2, float *v0,
				float *v1)
{
	if (has2 && !(e & 1)) {
		uint8_t b = w->packed[e >> 1];
		float s = w->absmax[e / 64];
		*v0 = w->code[b >> 4] * s;
		*v1 = w->code[b & 0x0f] * s;
	} else {
		*v0 = ftk_nf4_decode(w->packed, w->absmax, w->code, e);
		*v1 = has2 ? ftk_nf4_decode(w->packed, w->absmax, w->code, e + 1) : 0.0f;
	}
}

/* ---------------------------------------------------------------- GEMV */

#define FTK_NF4_WARP 32
#define FTK_NF4_GEMV_MAXM 8	/* input rows one GEMV launch handles */
#define FTK_NF4_GEMV_WARPS 4	/* warps (output rows) per block */

/*
 * Lane `lane` (0..31) of the warp that computes output row n: acc[m] (m <
 * FTK_NF4_GEMV_MAXM; rows m >= M set to 0) = the lane's share of
 * sum_k x[m][k] W[n][k].  x (M, K), M <= FTK_NF4_GEMV_MAXM, n < N.  Even K:
 * the lane takes bytes lane, lane + 32, ... of the row (which starts on a
 * byte); odd K: elements lane, lane + 32, ...
 */
FTK_HD void ftk_nf4_gemv_lane(const struct ftk_nf4_view *w, const float *x, int M, int n,
			      int lane, float *acc)
{
	int K = w->K;
	size_t base = (size_t)n * (size_t)K;
	for (int m = 0; m < FTK_NF4_GEMV_MAXM; m++)
		acc[m] = 0.0f;
	if (!(K & 1)) {
		int half = K / 2;
		for (int j = lane; j < half; j += FTK_NF4_WARP) {
			float w0, w1;
			ftk_nf4_decode_pair(w, base + 2 * (size_t)j, 1, &w0, &w1);
			for (int m = 0; m < FTK_NF4_GEMV_MAXM; m++)
				if (m < M) {
					const float *xr = x + (size_t)m * K + 2 * j;
					acc[m] += xr[0] * w0 + xr[1] * w1;
				}
		}
	} else {
		for (int k = lane; k < K; k += FTK_NF4_WARP) {
			float wv = ftk_nf4_decode(w->packed, w->absmax, w->code, base + (size_t)k);
			for (int m = 0; m < FTK_NF4_GEMV_MAXM; m++)
				if (m < M)
					acc[m] += x[(size_t)m * K + k] * wv;
		}
	}
}

/*
 * Lane 0 after the warp reduction: out[m][n] (out (M, N)) = acc[m] +
 * bias[n] (bias (N) or NULL), m < M.
 */
FTK_HD void ftk_nf4_gemv_store(float *out, const float *bias, int M, int N, int n,
			       const float *acc)
{
	float b = bias ? bias[n] : 0.0f;
	for (int m = 0; m < FTK_NF4_GEMV_MAXM; m++)
		if (m < M)
			out[(size_t)m * N + n] = acc[m] + b;
}

/* ---------------------------------------------------------------- tiled GEMM */

#define FTK_NF4_TM 64		/* output rows (of M) per block */
#define FTK_NF4_TN 64		/* output columns per block */
#define FTK_NF4_TK 32		/* reduction depth per step */
#define FTK_NF4_THREADS 256	/* 16 x 16 threads, 4 x 4 outputs each */
#define FTK_NF4_PER 4
#define FTK_NF4_LDA (FTK_NF4_TM + 1)	/* row stride of the shared A tile As[TK][LDA] */
#define FTK_NF4_LDB (FTK_NF4_TN + 1)	/* row stride of the shared B tile Bs[TK][LDB] */
#define FTK_NF4_AS_FLOATS (FTK_NF4_TK * FTK_NF4_LDA)
#define FTK_NF4_BS_FLOATS (FTK_NF4_TK * FTK_NF4_LDB)
#define FTK_NF4_ACC (FTK_NF4_PER * FTK_NF4_PER)	/* accumulators per thread */

/*
 * Forward load, thread t of block (bm, bn) at reduction offset k0:
 *   As[kk][mm] = x[bm*TM + mm][k0 + kk]   (0 outside x (M, K))
 *   Bs[kk][nn] = W[bn*TN + nn][k0 + kk]   (0 outside W (N, K)), decoded
 * Thread t writes the slots i = t, t + THREADS, ...; all threads together
 * write every slot of both tiles.
 */
FTK_HD void ftk_nf4_fwd_load(const struct ftk_nf4_view *w, const float *x, int M, int bm, int bn,
			     int k0, float *As, float *Bs, int t)
{
	int N = w->N, K = w->K;
	for (int i = t; i < FTK_NF4_TM * FTK_NF4_TK; i += FTK_NF4_THREADS) {
		int mm = i / FTK_NF4_TK, kk = i % FTK_NF4_TK;
		int m = bm * FTK_NF4_TM + mm, k = k0 + kk;
		As[kk * FTK_NF4_LDA + mm] = m < M && k < K ? x[(size_t)m * K + k] : 0.0f;
	}
	for (int i = t; i < FTK_NF4_TN * FTK_NF4_TK / 2; i += FTK_NF4_THREADS) {
		int nn = i / (FTK_NF4_TK / 2), kk = 2 * (i % (FTK_NF4_TK / 2));
		int n = bn * FTK_NF4_TN + nn, k = k0 + kk;
		float v0 = 0.0f, v1 = 0.0f;
		if (n < N && k < K)
			ftk_nf4_decode_pair(w, (size_t)n * K + k, k + 1 < K, &v0, &v1);
		Bs[kk * FTK_NF4_LDB + nn] = v0;
		Bs[(kk + 1) * FTK_NF4_LDB + nn] = v1;
	}
}

/*
 * Backward-input load, thread t of block (bm, bk) at reduction offset n0:
 *   As[nn][mm] = dout[bm*TM + mm][n0 + nn]   (0 outside dout (M, N))
 *   Bs[nn][kk] = W[n0 + nn][bk*TN + kk]      (0 outside W (N, K)), decoded
 */
FTK_HD void ftk_nf4_bwd_load(const struct ftk_nf4_view *w, const float *dout, int M, int bm,
			     int bk, int n0, float *As, float *Bs, int t)
{
	int N = w->N, K = w->K;
	for (int i = t; i < FTK_NF4_TM * FTK_NF4_TK; i += FTK_NF4_THREADS) {
		int mm = i / FTK_NF4_TK, nn = i % FTK_NF4_TK;
		int m = bm * FTK_NF4_TM + mm, n = n0 + nn;
		As[nn * FTK_NF4_LDA + mm] = m < M && n < N ? dout[(size_t)m * N + n] : 0.0f;
	}
	for (int i = t; i < FTK_NF4_TK * FTK_NF4_TN / 2; i += FTK_NF4_THREADS) {
		int nn = i / (FTK_NF4_TN / 2), kk = 2 * (i % (FTK_NF4_TN / 2));
		int n = n0 + nn, k = bk * FTK_NF4_TN + kk;
		float v0 = 0.0f, v1 = 0.0f;
		if (n < N && k < K)
			ftk_nf4_decode_pair(w, (size_t)n * K + k, k + 1 < K, &v0, &v1);
		Bs[nn * FTK_NF4_LDB + kk] = v0;
		Bs[nn * FTK_NF4_LDB + kk + 1] = v1;
	}
}

/*
 * Accumulate, thread t: acc[i*4 + j] += sum_r As[r][ty + 16 i] * Bs[r][tx + 16 j]
 * over the TK rows of the tiles (tx = t % 16, ty = t / 16).
 */
FTK_HD void ftk_nf4_tile_acc(const float *As, const float *Bs, float *acc, int t)
{
	int tx = t % 16, ty = t / 16;
	for (int r = 0; r < FTK_NF4_TK; r++) {
		float a[FTK_NF4_PER], b[FTK_NF4_PER];
		for (int i = 0; i < FTK_NF4_PER; i++) {
			a[i] = As[r * FTK_NF4_LDA + ty + 16 * i];
			b[i] = Bs[r * FTK_NF4_LDB + tx + 16 * i];
		}
		for (int i = 0; i < FTK_NF4_PER; i++)
			for (int j = 0; j < FTK_NF4_PER; j++)
				acc[i * FTK_NF4_PER + j] += a[i] * b[j];
	}
}

/*
 * Forward store, thread t of block (bm, bn): out[m][n] (out (M, N)) =
 * acc + bias[n] (bias (N) or NULL) for its outputs inside the matrix.
 */
FTK_HD void ftk_nf4_fwd_store(float *out, const float *bias, int M, int N, int bm, int bn,
			      const float *acc, int t)
{
	int tx = t % 16, ty = t / 16;
	for (int i = 0; i < FTK_NF4_PER; i++) {
		int m = bm * FTK_NF4_TM + ty + 16 * i;
		for (int j = 0; j < FTK_NF4_PER; j++) {
			int n = bn * FTK_NF4_TN + tx + 16 * j;
			if (m < M && n < N)
				out[(size_t)m * N + n] = acc[i * FTK_NF4_PER + j] + (bias ? bias[n] : 0.0f);
		}
	}
}

/* Backward-input store, thread t of block (bm, bk): dinp[m][k] (dinp (M, K)) += acc. */
FTK_HD void ftk_nf4_bwd_store(float *dinp, int M, int K, int bm, int bk, const float *acc, int t)
{
	int tx = t % 16, ty = t / 16;
	for (int i = 0; i < FTK_NF4_PER; i++) {
		int m = bm * FTK_NF4_TM + ty + 16 * i;
		for (int j = 0; j < FTK_NF4_PER; j++) {
			int k = bk * FTK_NF4_TN + tx + 16 * j;
			if (m < M && k < K)
				dinp[(size_t)m * K + k] += acc[i * FTK_NF4_PER + j];
		}
	}
}

#endif
