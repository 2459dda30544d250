/*
 * optim_ops.h: the per-element arithmetic of the optimizer, shared by the C
 * trainer and (issue 9) the CUDA kernels.
 *
 * Everything here is static inline, uses only float and double arithmetic
 * and sqrtf, and touches one element at a time, so nvcc compiles the same
 * expressions into a kernel body (`FTK_OPT_HD` adds __host__ __device__ there)
 * and the CPU tests exercise the arithmetic the GPU runs.
 *
 * The AdamW update is PyTorch's torch.optim.AdamW (1.13, foreach=False),
 * in the same order of float32 operations, with the per-step scalars
 * computed in double and rounded to float as PyTorch passes them to its
 * kernels, so our numbers can be compared with it:
 *
 *     w  = w * (1 - lr * wd)                      decoupled weight decay
 *     m  = m * beta1 + (1 - beta1) * g
 *     v  = v * beta2 + (1 - beta2) * g * g
 *     w  = w + (-lr / bc1) * (m / (sqrt(v) / sqrt(bc2) + eps))
 *
 * with bc1 = 1 - beta1^t and bc2 = 1 - beta2^t for step t = 1, 2, ....
 */
#ifndef FTK_TRAINER_OPTIM_OPS_H
#define FTK_TRAINER_OPTIM_OPS_H

#include <math.h>

#ifdef __CUDACC__
#define FTK_OPT_HD __host__ __device__
#else
#define FTK_OPT_HD
#endif

/* Per-step constants of the update, computed once on the host. */
struct ftk_adamw_consts {
	float beta1, one_minus_beta1;
	float beta2, one_minus_beta2;
	float eps;
	float decay;		/* 1 - lr * weight_decay */
	float neg_step_size;	/* -lr / bc1 */
	float bc2_sqrt;		/* sqrt(1 - beta2^t) */
};

/* One element: w, m, v updated in place from gradient g. */
static inline FTK_OPT_HD void ftk_adamw_update(float *w, float *m, float *v, float g,
					   const struct ftk_adamw_consts *c)
{
	float wi = *w * c->decay;
	float mi = *m * c->beta1 + c->one_minus_beta1 * g;
	float vi = *v * c->beta2 + c->one_minus_beta2 * (g * g);
	float denom = sqrtf(vi) / c->bc2_sqrt + c->eps;
	*w = wi + c->neg_step_size * (mi / denom);
	*m = mi;
	*v = vi;
}

/* One element of gradient clipping: g * scale. */
static inline FTK_OPT_HD float ftk_clip_scale(float g, float scale)
{
	return g * scale;
}

#endif
