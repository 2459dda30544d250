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
#ifndef FTK_MODEL_OPTIM_OPS_H
#define FTK_MODEL_OPTIM_OPS_H

#include <math.h>
#include <stddef.h>

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

#ifndef __CUDACC__
/*
 * The host loops over n elements, in index order (the CPU backend's
 * optimizer entries and optim.c's fallback): the sum of squares is a
 * sequential sum in double, so it is the same bit for bit on every run.
 */
static inline double ftk_sumsq_array(const float *g, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)g[i] * g[i];
	return s;
}

static inline void ftk_scale_array(float *g, float scale, size_t n)
{
	for (size_t i = 0; i < n; i++)
		g[i] = ftk_clip_scale(g[i], scale);
}

static inline void ftk_adamw_array(float *w, float *m, float *v, const float *g, size_t n,
				   const struct ftk_adamw_consts *c)
{
	for (size_t i = 0; i < n; i++)
		ftk_adamw_update(&w[i], &m[i], &v[i], g[i], c);
}
#endif

#endif
