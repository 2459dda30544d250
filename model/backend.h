/*
 * backend.h: the operations the model is made of, as a table of function
 * pointers (ggml's pattern), so a CUDA backend can sit beside the CPU one,
 * and backend instances that carry them.
 *
 * An instance (struct ftk_backend, as ggml's ggml_backend_t) is its kind's
 * ops table and its own state: precision, thread count, the CUDA
 * backend's cuBLAS handle and scratch buffers.  Every op takes the
 * instance first, so two models in one process may compute on instances
 * of their own with different precisions or thread counts at once
 * (tests/unit/test_backend.c).  A backend keeps no state in globals.
 *
 * model.c never touches backend memory itself: it allocates buffers with
 * alloc, fills them with upload (token ids, positions, document ids and
 * targets are prepared on the host and uploaded), and runs every step of
 * the forward and backward pass through an op below.  The LoRA parameters
 * and gradients are no exception: they are alloc memory too (device
 * memory on CUDA), the optimizer runs on them as ops (sumsq, scale,
 * adamw), and host code (adapter files, checkpoints, the selftest, MPI's
 * all-reduce) reads and writes copies (ftk_model_lora_download/upload,
 * model.h), never the arrays in place.  FTK_CPU_GUARD=1 makes the CPU
 * backend's memory unreadable by the host between ops, so that a test
 * catches an in-place access the CPU would otherwise forgive
 * (ftk_backend_cpu_guarded below).  The CPU backend (backend_cpu.c) is the reference: plain loops
 * over the per-element and per-row arithmetic of ops.h, OpenBLAS for
 * matrix products, short-lived threads for the rest.  A CUDA backend
 * implements the same table over device pointers, using the same ops.h
 * functions inside its kernels, and is checked op by op against the CPU
 * one (`ftk-train --selftest`, issue 9).
 *
 * Conventions for every op:
 *   - Row-major.  Shapes are written beside each argument as in llm.c:
 *     (M, K) means M rows of K contiguous floats.
 *   - Linear layers follow PyTorch: a weight W is (N, K) = (out, in) and the
 *     layer computes out = inp @ W^T.
 *   - "+=" in a comment means the op accumulates into its output; "=" means
 *     it overwrites.
 *   - Pointers are backend memory (host memory for the CPU backend).
 *   - Ops do not fail: shapes are checked once by the model, and out of
 *     memory in alloc aborts.
 */
#ifndef FTK_MODEL_BACKEND_H
#define FTK_MODEL_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include "model/nf4.h"
#include "model/optim_ops.h"

enum ftk_quant { FTK_QUANT_NONE = 0, FTK_QUANT_NF4 = 1 };
/*
 * The values of every program's --quant, as a parse-options choice list
 * (cli/parse-options.h): the index of a word is its enum ftk_quant, so the
 * option is parsed in one place with one wording.
 */
#define FTK_QUANT_CHOICES "none|nf4"

/*
 * How matrix products compute (set_precision).  FTK_PREC_BF16: every
 * product of gemm, gemm_batch, linear_fwd and linear_bwd_inp takes its two
 * operands rounded to bfloat16 (ftk_bf16_round, ops.h; NF4 weights after
 * dequantization) and accumulates in float32 into a float32 output, as
 * PyTorch's autocast runs a linear layer.  Everything else (norms, RoPE,
 * attention, softmax, SwiGLU, cross-entropy, the optimizer) and every
 * buffer stays float32 under both.
 */
enum ftk_precision { FTK_PREC_FP32 = 0, FTK_PREC_BF16 = 1, FTK_PREC_TF32 = 2 };
/*
 * FTK_PREC_TF32 (CUDA only, opt-in): fp32 operands and output, and cuBLAS
 * may run the products on tensor cores with TF32 inputs (10-bit mantissa,
 * CUBLAS_COMPUTE_32F_FAST_TF32), so they are only as exact as that; the
 * NF4 GEMV and fused kernels and everything else stay fp32.  The CPU has
 * no such mode (set_precision refuses it).
 */

/* A frozen base weight (N, K), full precision or NF4. */
struct ftk_weight {
	int rows, cols;		/* N = out_features, K = in_features */
	enum ftk_quant quant;
	float *f32;		/* (N, K) when quant == FTK_QUANT_NONE (backend memory) */
	struct ftk_nf4 nf4;	/* when quant == FTK_QUANT_NF4 (host copy) */
	void *dev;		/* a backend's own representation (CUDA), NULL on CPU */
};

/* One product of gemm_batch: C = alpha op(A) op(B) + beta C as in gemm. */
struct ftk_gemm_args {
	int ta, tb, M, N, K;
	float alpha;
	const float *A;
	int lda;
	const float *B;
	int ldb;
	float beta;
	float *C;
	int ldc;
};

struct ftk_backend;	/* an instance of a backend (below) */

/*
 * A backend's operations.  Each takes the instance it runs on first: its
 * state (precision, threads, handles, scratch) is the instance's ctx.
 */
struct ftk_backend_ops {
	const char *name;	/* "cpu", "cuda" */

	/* Free the instance and its state (not memory from alloc: free that first). */
	void (*destroy)(struct ftk_backend *be);

	/* memory */
	void *(*alloc)(struct ftk_backend *be, size_t bytes);			/* zeroed; aborts on OOM */
	void (*free)(struct ftk_backend *be, void *p);
	/* host -> backend, backend -> host, backend -> backend */
	void (*upload)(struct ftk_backend *be, void *dst, const void *src, size_t bytes);
	void (*download)(struct ftk_backend *be, void *dst, const void *src, size_t bytes);
	void (*copy)(struct ftk_backend *be, void *dst, const void *src, size_t bytes);
	void (*zero)(struct ftk_backend *be, void *p, size_t bytes);
	/* Prepare a weight for this backend (CUDA uploads the NF4 bytes). */
	void (*weight_prepare)(struct ftk_backend *be, struct ftk_weight *w);
	void (*weight_release)(struct ftk_backend *be, struct ftk_weight *w);
	/* Number of threads this instance's ops use (CPU; 0: all cores). */
	void (*set_threads)(struct ftk_backend *be, int n);

	/*
	 * Dense product: C = alpha * op(A) @ op(B) + beta * C, op(X) = X or X^T
	 * as ta/tb say; C is (M, N), op(A) (M, K), op(B) (K, N); lda/ldb/ldc are
	 * row strides.  Small products (a LoRA rank on one side) may run on one
	 * thread.
	 */
	void (*gemm)(struct ftk_backend *be, int ta, int tb, int M, int N, int K, float alpha,
		     const float *A, int lda, const float *B, int ldb, float beta, float *C,
		     int ldc);

	/* out (M, N) = inp (M, K) @ W^T + bias (N, or NULL); NF4 W is dequantized tile by tile */
	void (*linear_fwd)(struct ftk_backend *be, float *out, const float *inp,
			   const struct ftk_weight *w, const float *bias, int M);
	/* dinp (M, K) += dout (M, N) @ W */
	void (*linear_bwd_inp)(struct ftk_backend *be, float *dinp, const float *dout,
			       const struct ftk_weight *w, int M);

	/* out (M, C) = x / rms(x) * weight; rstd (M) saved for backward */
	void (*rmsnorm_fwd)(struct ftk_backend *be, float *out, float *rstd, const float *inp,
			    const float *weight, int M, int C, float eps);
	/* dinp (M, C) += d/dinp of rmsnorm given dout (M, C), the saved rstd; weight frozen */
	void (*rmsnorm_bwd)(struct ftk_backend *be, float *dinp, const float *dout,
			    const float *inp, const float *weight, const float *rstd, int M, int C);

	/*
	 * RoPE in HF layout on x (M, nh, hd) in place: pairs (j, j + hd/2) at
	 * position pos[m] rotated by angle pos * inv_freq[j] (inv_freq (hd/2)).
	 * sign = +1 forward, -1 for the backward pass (the inverse rotation).
	 */
	void (*rope)(struct ftk_backend *be, float *x, const int32_t *pos, const float *inv_freq,
		     int M, int nh, int hd, int sign);

	/*
	 * Causal attention with document masks.  q (B, T, NH, hd), k, v (B, T,
	 * NKV, hd), doc (B, T) document ids (positions attend only to earlier
	 * positions with the same id).  out (B, T, NH, hd) =; att (B, NH, T, T)
	 * = softmax probabilities, saved for backward (row t holds [0, t]).
	 */
	void (*attn_fwd)(struct ftk_backend *be, float *out, float *att, const float *q,
			 const float *k, const float *v, const int32_t *doc, int B, int T, int NH,
			 int NKV, int hd);
	/* dq = ; dk, dv = (overwritten) from dout and the saved att. */
	void (*attn_bwd)(struct ftk_backend *be, float *dq, float *dk, float *dv, const float *dout,
			 const float *att, const float *q, const float *k, const float *v, int B,
			 int T, int NH, int NKV, int hd);
	/*
	 * One query row against a KV cache (generation): q (NH, hd), kc/vc
	 * (n, NKV, hd) the first n cached positions; out (NH, hd) =; scratch (n).
	 */
	void (*attn_decode)(struct ftk_backend *be, float *out, const float *q, const float *kc,
			    const float *vc, int n, int NH, int NKV, int hd, float *scratch);

	/* out (n) = silu(gate) * up */
	void (*swiglu_fwd)(struct ftk_backend *be, float *out, const float *gate, const float *up,
			   size_t n);
	/* dgate, dup (n) = from dout */
	void (*swiglu_bwd)(struct ftk_backend *be, float *dgate, float *dup, const float *dout,
			   const float *gate, const float *up, size_t n);

	/*
	 * Cross-entropy over rows of logits (M, V): for row m with target[m] >= 0,
	 * loss[m] = -log softmax(logits[m])[target[m]] (else 0).  When
	 * grad_scale != 0, logits are overwritten with grad_scale * (softmax -
	 * onehot) (rows without a target become 0).
	 */
	void (*xent)(struct ftk_backend *be, float *loss, float *logits, const int32_t *target,
		     int M, int V, float grad_scale);

	/* y (n) += x */
	void (*add)(struct ftk_backend *be, float *y, const float *x, size_t n);
	/* y (n) = x * scale where keep says so (dropout mask bits), else 0 */
	void (*dropout)(struct ftk_backend *be, float *y, const float *x, const uint8_t *keep,
			float scale, size_t n);
	/* keep (n) = ftk_dropout_keep(stream, i, p) for each i (ops.h), so every backend draws the same masks */
	void (*dropout_mask)(struct ftk_backend *be, uint8_t *keep, uint64_t stream, float p,
			     size_t n);
	/* out (M, C) = table[ids[m]] rows (table is (V, C)); ids in backend memory */
	void (*embed)(struct ftk_backend *be, float *out, const float *table, const uint32_t *ids,
		      int M, int C);

	/*
	 * Independent dense products, in any order or at once (their outputs
	 * must not overlap): the CPU backend runs each on one thread, side by
	 * side.  May be NULL; the model then calls gemm for each.  Last in the
	 * table so that tables written before it need not mention it.
	 */
	void (*gemm_batch)(struct ftk_backend *be, int n, const struct ftk_gemm_args *g);

	/*
	 * The optimizer over the flat LoRA arrays (alloc memory), so that
	 * clipping and AdamW run where the gradients are and the host never
	 * walks them (on CUDA they are device memory, which the host cannot
	 * read in place).  sumsq returns the sum of x[i]^2 accumulated in
	 * double; scale does x[i] *= s; adamw applies optim_ops.h's
	 * ftk_adamw_update to each i.  All three finish before they return.  May be NULL: optim.c then runs optim_ops.h's host
	 * loops over the arrays, which is right only where alloc memory is
	 * host memory (the CPU; the CUDA table has all three).
	 */
	double (*sumsq)(struct ftk_backend *be, const float *x, size_t n);
	void (*scale)(struct ftk_backend *be, float *x, float s, size_t n);
	void (*adamw)(struct ftk_backend *be, float *w, float *m, float *v, const float *g,
		      size_t n, const struct ftk_adamw_consts *c);

	/*
	 * Precision of the matrix products from now on (enum ftk_precision),
	 * for every later call on this instance: a mode, like set_threads,
	 * because it is a property of a model's whole run and every product
	 * must follow it, and a flag per call would change the signature of
	 * gemm and both linear ops.  Other instances keep their own.  The
	 * model sets it (ftk_model_set_precision, which ftk-train calls after
	 * loading).  Returns 0, or -1 when the backend cannot compute that way
	 * (the mode is then unchanged).  May be NULL: the backend computes in
	 * fp32 only, and the model refuses bf16.
	 */
	int (*set_precision)(struct ftk_backend *be, int precision);

	/*
	 * Flash attention: the same attention as attn_fwd (causal, document
	 * masks, GQA with NKV dividing NH) computed tile by tile with an online
	 * softmax (ops.h), so no (T, T) buffer exists: out (B, T, NH, hd) =;
	 * lse (B, NH, T) = each query row's log-sum-exp of its scaled scores,
	 * all the backward pass keeps.  Extra memory O(T) per thread (CPU) or
	 * per block (CUDA).  head_dim at most FTK_FLASH_MAX_HD (256).  May be
	 * NULL (a table that predates it): the model then uses attn_fwd/attn_bwd
	 * and refuses --attention flash.
	 */
	void (*attn_fwd_flash)(struct ftk_backend *be, float *out, float *lse, const float *q,
			       const float *k, const float *v, const int32_t *doc, int B, int T,
			       int NH, int NKV, int hd);
	/*
	 * dq = ; dk, dv = (overwritten), from dout, the forward's out and lse,
	 * recomputing the probabilities tile by tile.  Shapes as attn_fwd_flash.
	 * NULL exactly when attn_fwd_flash is.
	 */
	void (*attn_bwd_flash)(struct ftk_backend *be, float *dq, float *dk, float *dv,
			       const float *dout, const float *out, const float *lse,
			       const float *q, const float *k, const float *v, const int32_t *doc,
			       int B, int T, int NH, int NKV, int hd);

	/*
	 * Wait until every op queued so far has finished, so that what the
	 * host reads back is final: the model calls it once at the end of a
	 * backward pass and before it copies the LoRA arrays, not after every
	 * op (the CUDA ops queue without waiting).  NULL: ops finish
	 * before they return (the CPU).
	 */
	void (*sync)(struct ftk_backend *be);
};

/*
 * The CUDA backend's ABI version: libftkcuda.so's ftk_cuda_abi() returns
 * it with sizeof(struct ftk_backend_ops), and device.c refuses an object whose
 * pair differs.  Raise it whenever an exported entry point's signature or
 * the meaning of a table entry changes (a new entry changes the size).
 */
#define FTK_CUDA_ABI 7	/* 7: alloc_shared left the table (issue 23.9) */

/* The largest head_dim the flash attention ops take. */
#define FTK_FLASH_MAX_HD 256

/*
 * A backend instance, as ggml's ggml_backend_t: the ops of its kind and its
 * own state (ctx: the precision and thread count it computes with, the
 * CUDA backend's cuBLAS handle and scratch buffers), so two models in one
 * process may compute in different precisions or on different thread
 * counts at once.  Every op takes the instance first and reads its state
 * from it; nothing an op reads is a global.  Memory an instance allocates
 * is the backend's (CUDA: the device's), not the instance's: any instance
 * of the same kind may use or free it.
 */
struct ftk_backend {
	const struct ftk_backend_ops *ops;
	void *ctx;	/* the backend's own state, opaque to callers */
};

/*
 * A new instance of the reference CPU backend (OpenBLAS + threads): one
 * thread, fp32 products, until set_threads and set_precision say
 * otherwise.  Never NULL (aborts on OOM); free with ftk_backend_free.
 * Ops of one instance may run from several threads at once (their scratch
 * is per thread); set_threads and set_precision may not run beside them.
 */
struct ftk_backend *ftk_backend_cpu_new(void);

/*
 * Whether new CPU instances run in guard mode: FTK_CPU_GUARD set in the
 * environment (and not "0") when the instance is made.  A test mode
 * (docs/HACKING.md): every alloc comes from an arena the host can neither
 * read nor write except while one of the table's ops runs, so host code
 * that touches backend memory without upload/download crashes there
 * instead of passing on the CPU and failing on a GPU.  The numbers are the
 * plain CPU backend's, bit for bit.
 */
int ftk_backend_cpu_guarded(void);

/* Free an instance (be->ops->destroy); NULL is fine.  Free its memory first. */
void ftk_backend_free(struct ftk_backend *be);

#endif
