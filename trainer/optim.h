/*
 * optim.h: AdamW over one flat parameter vector, gradient clipping by
 * global norm, and learning-rate schedules with warmup.
 *
 * The trainable parameters of a LoRA run are one float array and their
 * gradients another of the same layout (model.h), so the optimizer needs no
 * notion of tensors: it walks n floats.  That keeps the gradient path in
 * three separable calls, in this order, each of which a data-parallel run
 * (issue 9) can wrap:
 *
 *     model forward/backward  -> grads          (per rank)
 *     all-reduce grads                          (issue 9, between the two)
 *     norm = ftk_clip_grad_norm(grads, n, max)  (the same on every rank)
 *     ftk_adamw_step(&opt, params, grads, lr)
 *
 * Every reduction here is a sequential sum in double over the array in index
 * order, so the result is the same bit for bit on every run and every
 * thread count.  The per-element arithmetic is in optim_ops.h.
 */
#ifndef FTK_TRAINER_OPTIM_H
#define FTK_TRAINER_OPTIM_H

#include <stddef.h>
#include <stdint.h>
#include "lib/err.h"

struct ftk_adamw_opts {
	double beta1, beta2;	/* 0.9, 0.999 */
	double eps;		/* 1e-8 */
	double weight_decay;	/* 0.0; decoupled, scaled by the learning rate */
};

/* PyTorch's defaults apart from weight decay (0 here, as PEFT recipes use). */
#define FTK_ADAMW_DEFAULTS { 0.9, 0.999, 1e-8, 0.0 }

struct ftk_backend;

struct ftk_adamw {
	struct ftk_adamw_opts o;
	struct ftk_backend *be;	/* where m and v live and the update runs; NULL: host */
	size_t n;
	float *m;	/* (n) first moment, exp_avg */
	float *v;	/* (n) second moment, exp_avg_sq */
	long t;		/* steps taken so far */
};

/*
 * Set up the optimizer for n parameters with zeroed moments and t = 0.
 * Returns 0 or FTK_EUSAGE (a beta outside [0, 1), eps <= 0, negative
 * weight decay).  Release with ftk_adamw_release.
 */
int ftk_adamw_init(struct ftk_adamw *opt, size_t n, const struct ftk_adamw_opts *o,
		   struct ftk_error *err);
/*
 * The same, with the moments in be's memory (device memory on CUDA) and
 * each step run by be->adamw (issue 9: on CUDA the update runs on the GPU
 * where the LoRA parameters and gradients are); save and load copy the
 * moments out and in.  be NULL, or a backend without adamw, is
 * ftk_adamw_init, whose host loops need params and grads in host memory:
 * the trainer passes the model's backend, whose arrays are its memory.
 */
int ftk_adamw_init_on(struct ftk_adamw *opt, size_t n, const struct ftk_adamw_opts *o,
		      struct ftk_backend *be, struct ftk_error *err);
void ftk_adamw_release(struct ftk_adamw *opt);

/*
 * One AdamW step with learning rate lr: t += 1, then each w[i] is updated
 * from g[i] (optim_ops.h).  params (n) is updated in place; grads (n) only
 * read.
 */
void ftk_adamw_step(struct ftk_adamw *opt, float *params, const float *grads, double lr);

/*
 * Save the optimizer state as a safetensors file at path (exp_avg and
 * exp_avg_sq as F32 [n], metadata step, beta1, beta2, eps, weight_decay),
 * written atomically.  Returns 0 or FTK_EIO.
 */
int ftk_adamw_save(const struct ftk_adamw *opt, const char *path, struct ftk_error *err);
/*
 * Load a state written by ftk_adamw_save into opt (already initialised for
 * n parameters).  Returns 0, FTK_EIO/FTK_ENOTFOUND/FTK_EDATA (unreadable or
 * not ours) or FTK_EMISMATCH (a different n).
 */
int ftk_adamw_load(struct ftk_adamw *opt, const char *path, struct ftk_error *err);

/* The L2 norm of g (n), summed in double in index order. */
double ftk_grad_norm(const float *g, size_t n);

/*
 * Clip g (n) in place to global L2 norm max_norm as PyTorch's
 * clip_grad_norm_ does (scale by max_norm / (norm + 1e-6) when that is
 * below 1); max_norm <= 0 disables clipping.  Returns the norm before
 * clipping.
 */
double ftk_clip_grad_norm(float *g, size_t n, double max_norm);
/* The same with be's sumsq and scale where it has them (be may be NULL). */
double ftk_clip_grad_norm_on(struct ftk_backend *be, float *g, size_t n, double max_norm);

/* ---------------------------------------------------------------- schedules */

enum ftk_sched_kind { FTK_SCHED_CONSTANT = 0, FTK_SCHED_LINEAR, FTK_SCHED_COSINE };
/* the kinds' names, in the enum's order (an option table's choice list) */
#define FTK_SCHED_KINDS "constant|linear|cosine"

struct ftk_sched {
	enum ftk_sched_kind kind;
	double lr;		/* the peak learning rate */
	long warmup;		/* steps of linear warmup */
	long total;		/* total optimizer steps of the run */
	double min_ratio;	/* the floor of linear and cosine decay, as a fraction of lr (0) */
};

/*
 * Learning rate of optimizer step s (0-based): during warmup (s < warmup)
 * lr * (s + 1) / warmup; after it, with p = (s - warmup) / (total - warmup)
 * in [0, 1): constant lr; linear lr * (m + (1 - m)(1 - p)); cosine
 * lr * (m + (1 - m)(1 + cos(pi p)) / 2), m = min_ratio.
 */
double ftk_sched_lr(const struct ftk_sched *s, long step);

/* "constant", "linear", "cosine" -> kind.  0 or FTK_EUSAGE. */
int ftk_sched_parse(const char *name, enum ftk_sched_kind *kind, struct ftk_error *err);
const char *ftk_sched_name(enum ftk_sched_kind kind);

#endif
