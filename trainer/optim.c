/*
 * optim.c: AdamW, global-norm clipping and schedules (see optim.h).
 *
 * The scalar constants of a step are computed in double and rounded to
 * float once, as PyTorch does when it passes Python floats to its kernels;
 * the element loop is optim_ops.h.  Nothing here is threaded: the LoRA
 * parameters of even a 70B run are a few hundred million floats at most, a
 * pass over them is memory-bound, and a sequential loop keeps every result
 * independent of the thread count.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/backend.h"
#include "trainer/optim.h"
#include "model/optim_ops.h"
#include "model/safetensors.h"

int ftk_adamw_init(struct ftk_adamw *opt, size_t n, const struct ftk_adamw_opts *o,
		   struct ftk_error *err)
{
	return ftk_adamw_init_on(opt, n, o, NULL, err);
}

int ftk_adamw_init_on(struct ftk_adamw *opt, size_t n, const struct ftk_adamw_opts *o,
		      struct ftk_backend *be, struct ftk_error *err)
{
	memset(opt, 0, sizeof(*opt));
	if (!(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1))
		return ftk_error_msg(err, FTK_EUSAGE, "AdamW betas must be in [0, 1), got %g and %g",
				     o->beta1, o->beta2);
	if (!(o->eps > 0))
		return ftk_error_msg(err, FTK_EUSAGE, "AdamW eps must be positive, got %g", o->eps);
	if (!(o->weight_decay >= 0))
		return ftk_error_msg(err, FTK_EUSAGE, "weight decay must not be negative, got %g",
				     o->weight_decay);
	opt->o = *o;
	opt->n = n;
	if (be && be->ops->adamw) {
		/* backend memory (device memory on CUDA, not managed): only the
		 * backend's adamw touches the moments; checkpoints copy them */
		opt->be = be;
		opt->m = be->ops->alloc(be, (n ? n : 1) * sizeof(float));
		opt->v = be->ops->alloc(be, (n ? n : 1) * sizeof(float));
	} else {
		opt->m = xcalloc(n ? n : 1, sizeof(float));
		opt->v = xcalloc(n ? n : 1, sizeof(float));
	}
	return 0;
}

void ftk_adamw_release(struct ftk_adamw *opt)
{
	if (!opt)
		return;
	if (opt->be) {
		opt->be->ops->free(opt->be, opt->m);
		opt->be->ops->free(opt->be, opt->v);
	} else {
		free(opt->m);
		free(opt->v);
	}
	opt->m = opt->v = NULL;
}

void ftk_adamw_step(struct ftk_adamw *opt, float *params, const float *grads, double lr)
{
	opt->t++;
	double bc1 = 1.0 - pow(opt->o.beta1, (double)opt->t);
	double bc2 = 1.0 - pow(opt->o.beta2, (double)opt->t);
	struct ftk_adamw_consts c = {
		.beta1 = (float)opt->o.beta1,
		.one_minus_beta1 = (float)(1.0 - opt->o.beta1),
		.beta2 = (float)opt->o.beta2,
		.one_minus_beta2 = (float)(1.0 - opt->o.beta2),
		.eps = (float)opt->o.eps,
		.decay = (float)(1.0 - lr * opt->o.weight_decay),
		.neg_step_size = (float)(-(lr / bc1)),
		.bc2_sqrt = (float)sqrt(bc2),
	};
	if (opt->be)
		opt->be->ops->adamw(opt->be, params, opt->m, opt->v, grads, opt->n, &c);
	else
		ftk_adamw_array(params, opt->m, opt->v, grads, opt->n, &c);
}

double ftk_grad_norm(const float *g, size_t n)
{
	return sqrt(ftk_sumsq_array(g, n));
}

double ftk_clip_grad_norm(float *g, size_t n, double max_norm)
{
	return ftk_clip_grad_norm_on(NULL, g, n, max_norm);
}

double ftk_clip_grad_norm_on(struct ftk_backend *be, float *g, size_t n, double max_norm)
{
	int dev = be && be->ops->sumsq && be->ops->scale;
	double norm = sqrt(dev ? be->ops->sumsq(be, g, n) : ftk_sumsq_array(g, n));
	if (max_norm > 0) {
		double coef = max_norm / (norm + 1e-6);
		if (coef < 1.0) {
			if (dev)
				be->ops->scale(be, g, (float)coef, n);
			else
				ftk_scale_array(g, (float)coef, n);
		}
	}
	return norm;
}

int ftk_adamw_save(const struct ftk_adamw *opt, const char *path, struct ftk_error *err)
{
	struct ftk_st_writer *w = ftk_st_writer_new();
	int64_t shape[1] = { (int64_t)opt->n };
	char buf[64];
	float *hm = opt->m, *hv = opt->v;
	if (opt->be) {	/* host copies of the backend's moments */
		hm = xmalloc((opt->n ? opt->n : 1) * sizeof(float));
		hv = xmalloc((opt->n ? opt->n : 1) * sizeof(float));
		opt->be->ops->download(opt->be, hm, opt->m, opt->n * sizeof(float));
		opt->be->ops->download(opt->be, hv, opt->v, opt->n * sizeof(float));
	}
	ftk_st_writer_add(w, "exp_avg", FTK_F32, 1, shape, hm);
	ftk_st_writer_add(w, "exp_avg_sq", FTK_F32, 1, shape, hv);
	ftk_st_writer_meta(w, "format", "ftk-adamw");
	snprintf(buf, sizeof(buf), "%ld", opt->t);
	ftk_st_writer_meta(w, "step", buf);
	snprintf(buf, sizeof(buf), "%.17g", opt->o.beta1);
	ftk_st_writer_meta(w, "beta1", buf);
	snprintf(buf, sizeof(buf), "%.17g", opt->o.beta2);
	ftk_st_writer_meta(w, "beta2", buf);
	snprintf(buf, sizeof(buf), "%.17g", opt->o.eps);
	ftk_st_writer_meta(w, "eps", buf);
	snprintf(buf, sizeof(buf), "%.17g", opt->o.weight_decay);
	ftk_st_writer_meta(w, "weight_decay", buf);
	int rc = ftk_st_writer_save(w, path, err);
	ftk_st_writer_free(w);
	if (opt->be) {
		free(hm);
		free(hv);
	}
	return rc;
}

int ftk_adamw_load(struct ftk_adamw *opt, const char *path, struct ftk_error *err)
{
	struct ftk_st *st;
	int rc = ftk_st_open(&st, path, err);
	if (rc < 0)
		return rc;
	const char *fmt = ftk_st_metadata(st, "format"), *step = ftk_st_metadata(st, "step");
	const struct ftk_st_tensor *m = ftk_st_find(st, "exp_avg"), *v = ftk_st_find(st, "exp_avg_sq");
	char *end = NULL;
	long t = step ? strtol(step, &end, 10) : -1;
	if (!fmt || strcmp(fmt, "ftk-adamw") || !m || !v || m->dtype != FTK_F32 ||
	    v->dtype != FTK_F32 || !end || *end || t < 0) {
		rc = ftk_error_set(err, FTK_EDATA, path, 0, NULL, "not an ftk optimizer state");
		goto out;
	}
	if ((size_t)m->numel != opt->n || (size_t)v->numel != opt->n) {
		rc = ftk_error_set(err, FTK_EMISMATCH, path, 0, NULL,
				   "optimizer state holds %lld parameters, the model has %zu",
				   (long long)m->numel, opt->n);
		goto out;
	}
	if (opt->be) {
		opt->be->ops->upload(opt->be, opt->m, m->data, opt->n * sizeof(float));
		opt->be->ops->upload(opt->be, opt->v, v->data, opt->n * sizeof(float));
	} else {
		memcpy(opt->m, m->data, opt->n * sizeof(float));
		memcpy(opt->v, v->data, opt->n * sizeof(float));
	}
	opt->t = t;
	rc = 0;
out:
	ftk_st_close(st);
	return rc;
}

/* ---------------------------------------------------------------- schedules */

double ftk_sched_lr(const struct ftk_sched *s, long step)
{
	if (step < 0)
		step = 0;
	if (step < s->warmup)
		return s->lr * (double)(step + 1) / (double)s->warmup;
	if (s->kind == FTK_SCHED_CONSTANT)
		return s->lr;
	long span = s->total - s->warmup;
	double p = span > 0 ? (double)(step - s->warmup) / (double)span : 0.0;
	if (p > 1)
		p = 1;
	double m = s->min_ratio, f;
	if (s->kind == FTK_SCHED_LINEAR)
		f = 1.0 - p;
	else
		f = 0.5 * (1.0 + cos(M_PI * p));
	return s->lr * (m + (1.0 - m) * f);
}

static const char *const sched_names[] = { "constant", "linear", "cosine" };

int ftk_sched_parse(const char *name, enum ftk_sched_kind *kind, struct ftk_error *err)
{
	for (int i = 0; i < 3; i++)
		if (!strcmp(name, sched_names[i])) {
			*kind = (enum ftk_sched_kind)i;
			return 0;
		}
	return ftk_error_msg(err, FTK_EUSAGE,
			     "unknown schedule '%s' (use constant, linear or cosine)", name);
}

const char *ftk_sched_name(enum ftk_sched_kind kind)
{
	return (unsigned)kind < 3 ? sched_names[kind] : "?";
}
