/*
 * model.c: weights, LoRA parameters, forward and backward of a Llama-family
 * decoder, and the KV-cache decoding step.
 *
 * Memory, as llm.c lays it out:
 *   - base float32 tensors (embedding, head when untied, norms, biases, and
 *     the projections under --quant none) share one arena `base_mem`;
 *     each NF4 projection owns its block (struct ftk_nf4);
 *   - LoRA parameters are one array `lora_mem`, their gradients another of
 *     the same layout, both backend memory (device memory on CUDA: the
 *     host copies them with ftk_model_lora_download/upload and
 *     ftk_model_lora_grad_download, never reads them in place); struct
 *     ftk_lora_tensor entries point into them;
 *   - activations: one block per saved layer (struct acts, all offsets from
 *     one allocation), the residual stream res (L+1, M, C), and one block of
 *     scratch buffers for the backward pass.  Attention saves its (B, NH,
 *     T, T) probabilities, or with flash attention (--attention, issue 9)
 *     only each query row's log-sum-exp (B, NH, T).
 * M = B*T rows everywhere; shapes are written beside each pointer.
 *
 * The forward of one layer is one function (layer_fwd) used three ways:
 * saving every layer (plain training), recomputing one layer at a time
 * (gradient checkpointing: only res is kept) and evaluation.  The backward
 * of a layer (layer_bwd) takes d(res[l+1]) in dres and leaves d(res[l]).
 * Only LoRA parameters receive gradients; everything else is frozen, but
 * gradients flow through it to earlier layers.
 */
#include "model/model.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "model/blas.h"
#include "model/ops.h"
#include "model/rng.h"
#include "model/safetensors.h"

enum { NT = FTK_LORA_N_TARGETS };

static const char *const target_names[NT] = { "q_proj", "k_proj", "v_proj", "o_proj",
					       "gate_proj", "up_proj", "down_proj" };
static const char *const short_names[NT] = { "q", "k", "v", "o", "gate", "up", "down" };

struct layer_w {
	float *ln1, *ln2;		/* (C) */
	float *bias[3];			/* q (NH*hd), k, v (NKV*hd), or NULL */
	float *qn, *kn;			/* (hd) Qwen3 q/k norms, or NULL */
	struct ftk_weight w[NT];	/* q (NH*hd, C) k,v (NKV*hd, C) o (C, NH*hd) gate,up (H, C) down (C, H) */
};

struct lora_slot {
	int on;
	int in, out;
	float *A, *B;		/* (r, in), (out, r) */
	float *dA, *dB;		/* same shapes */
};

/* One layer's saved activations (M = B*T rows). */
struct acts {
	float *ln1;		/* (M, C) */
	float *rstd1;		/* (M) */
	float *qraw, *kraw;	/* (M, NH*hd), (M, NKV*hd) before the q/k norm (Qwen3 only) */
	float *rstdq, *rstdk;	/* (M*NH), (M*NKV) (Qwen3 only) */
	float *q, *k, *v;	/* (M, NH*hd), (M, NKV*hd) x2, after RoPE */
	float *att;		/* (B, NH, T, T) softmax probabilities (full attention) */
	float *lse;		/* (B, NH, T) row log-sum-exps (flash attention), else NULL */
	float *atty;		/* (M, NH*hd) attention output, o_proj input */
	float *xmid;		/* (M, C) residual after attention */
	float *ln2;		/* (M, C) */
	float *rstd2;		/* (M) */
	float *gate, *up, *act;	/* (M, H) */
	float *lu[NT];		/* (M, r) LoRA A outputs */
	float *lx[NT];		/* (M, in) dropped LoRA inputs (dropout > 0 only) */
	uint8_t *keep[NT];	/* (M, in) dropout masks */
	void *mem;
};

/*
 * How many models use one set of weights (ftk_model_share).  The weights
 * are the base tensors (base_mem, the NF4 blocks and any backend copies in
 * layers[] and head, inv_freq) and the LoRA arrays (lora_mem, grad_mem,
 * slots, lt): every model that shares them holds the same pointers, and the
 * last one freed frees them.  Everything below "activations" is per model.
 */
struct weights_ref {
	atomic_int refs;
	struct ftk_backend *own_be;	/* the CPU instance made when the caller gave none */
};

struct ftk_model {
	struct ftk_model_config cfg;
	struct ftk_backend *be;
	char *dir;
	enum ftk_quant quant;
	int max_seq;
	struct weights_ref *wref;	/* never NULL */

	/* base weights */
	float *base_mem;
	size_t base_floats;
	float *embed;		/* (V, C) */
	float *norm_f;		/* (C) */
	struct ftk_weight head;	/* (V, C), f32; points at embed when tied */
	struct layer_w *layers;	/* (L) */
	float *inv_freq;	/* (hd/2) backend memory */

	/* LoRA */
	int has_lora;
	struct ftk_lora_opts lo;
	float scaling;
	float *lora_mem, *grad_mem;	/* (n_lora) each */
	size_t n_lora;
	struct lora_slot *slots;	/* (L * NT) */
	struct ftk_lora_tensor *lt;	/* (n_lt) */
	size_t n_lt;
	struct ftk_model_rng rng;

	/* activations for the current shape */
	int checkpointing;
	enum ftk_attention attention;	/* --attention */
	int flash;			/* the current buffers hold lse, not att */
	int dec_bufs;			/* the current buffers are decoding's (ensure_buffers) */
	size_t buf_bytes;		/* of acts, res and scratch_mem */
	int cap_M, cap_T, cap_saved;	/* allocated for M rows, T columns of att, saved layers */
	struct acts *acts;		/* (cap_saved) */
	float *res;			/* (L+1, M, C) */
	float *lnf;			/* (M, C) */
	float *rstdf;			/* (M) */
	int32_t *pos, *doc, *target;	/* (M) each, backend memory */
	uint32_t *ids;			/* (M) backend copy of the batch's token ids */
	int32_t *h_idx;			/* (4, M) host: pos, doc, target, ids, uploaded per batch */
	/* backward scratch */
	float *dres, *dln, *tmp;	/* (M, C), (M, C), (M, max(C, H, NH*hd)) */
	float *dh1, *dh2, *dh3;		/* (M, max(H, NH*hd)) */
	float *dk, *dv;			/* (M, NKV*hd) */
	float *du, *dx;			/* (M, r), (M, max in) */
	float *logits, *loss;		/* (ch, V), (ch) */
	int ch;				/* rows of logits computed at a time */
	int ch_user;			/* ftk_model_set_head_chunk's rows, 0: automatic */
	void *scratch_mem;

	/* KV cache */
	float *kc, *vc;		/* (L, kv_cap, NKV*hd) */
	float *dec_scratch;	/* (kv_cap) attention scores of one query */
	int kv_pos;
	int kv_cap;		/* positions allocated: grown as asked, at most max_seq */
};

int ftk_model_head_chunk(int V, int M, int gpu)
{
	int ch = (gpu ? 1 << 26 : 1 << 22) / V;
	if (ch < 64)
		ch = 64;
	return ch < M ? ch : M;
}

static int head_chunk(const struct ftk_model *m, int V, int M)
{
	return ftk_model_head_chunk(V, M, strcmp(m->be->ops->name, "cpu") != 0);
}

const char *ftk_lora_target_name(enum ftk_lora_target t)
{
	return (unsigned)t < NT ? target_names[t] : "?";
}

int ftk_lora_parse_targets(const char *s, unsigned *mask, struct ftk_error *err)
{
	unsigned m = 0;
	if (!strcmp(s, "all")) {
		*mask = FTK_LORA_ALL;
		return 0;
	}
	const char *p = s;
	while (*p) {
		size_t n = strcspn(p, ",");
		int found = -1;
		for (int t = 0; t < NT; t++)
			if ((strlen(short_names[t]) == n && !strncmp(p, short_names[t], n)) ||
			    (strlen(target_names[t]) == n && !strncmp(p, target_names[t], n)))
				found = t;
		if (found < 0)
			return ftk_error_msg(err, FTK_EUSAGE,
					     "unknown LoRA target '%.*s' (use q,k,v,o,gate,up,down or all)",
					     (int)n, p);
		m |= 1u << found;
		p += n;
		if (*p == ',')
			p++;
	}
	if (!m)
		return ftk_error_msg(err, FTK_EUSAGE, "no LoRA targets in '%s'", s);
	*mask = m;
	return 0;
}

float ftk_lora_scaling(const struct ftk_lora_opts *o)
{
	return o->rslora ? o->alpha / sqrtf((float)o->rank) : o->alpha / (float)o->rank;
}

void ftk_model_weight_name(int layer, enum ftk_lora_target t, char *buf, size_t n)
{
	snprintf(buf, n, "model.layers.%d.%s.%s.weight", layer, t <= FTK_LORA_O ? "self_attn" : "mlp",
		 target_names[t]);
}

void ftk_model_base_shape(const struct ftk_model *m, enum ftk_lora_target t, int *rows, int *cols)
{
	const struct ftk_model_config *c = &m->cfg;
	int q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
	int r[NT] = { q, kv, kv, c->dim, c->hidden_dim, c->hidden_dim, c->dim };
	int k[NT] = { c->dim, c->dim, c->dim, q, c->dim, c->dim, c->hidden_dim };
	*rows = r[t];
	*cols = k[t];
}

/* ---------------------------------------------------------------- loading */

struct want {
	char name[160];
	int ndim;
	int64_t shape[2];
	float **dst;		/* f32 destination slot, or NULL for a projection */
	struct ftk_weight *w;	/* projection */
};

static void want_add(struct want **ws, size_t *n, size_t *alloc, const char *name, int ndim,
		     int64_t a, int64_t b, float **dst, struct ftk_weight *w)
{
	FTK_ALLOC_GROW(*ws, *n + 1, *alloc);
	struct want *x = &(*ws)[(*n)++];
	memset(x, 0, sizeof(*x));
	snprintf(x->name, sizeof(x->name), "%s", name);
	x->ndim = ndim;
	x->shape[0] = a;
	x->shape[1] = b;
	x->dst = dst;
	x->w = w;
}

int ftk_model_load(struct ftk_model **out, const char *dir, const struct ftk_load_opts *opts,
		   struct ftk_error *err)
{
	struct ftk_load_opts defo = { FTK_QUANT_NF4, NULL, 0, 0 };
	if (!opts)
		opts = &defo;
	*out = NULL;
	/* a BLAS that computes wrong would train wrong silently (model/blas.h) */
	int rc = ftk_blas_check(opts->threads > 0 ? opts->threads
						  : (int)sysconf(_SC_NPROCESSORS_ONLN), err);
	if (rc < 0)
		return rc;
	struct ftk_model_config cfg;
	rc = ftk_config_load(dir, &cfg, err);
	if (rc < 0)
		return rc;
	struct ftk_st *st;
	if ((rc = ftk_st_open_dir(&st, dir, err)) < 0)
		return rc;

	struct ftk_model *m = xcalloc(1, sizeof(*m));
	m->wref = xcalloc(1, sizeof(*m->wref));
	atomic_init(&m->wref->refs, 1);
	m->cfg = cfg;
	m->be = opts->backend ? opts->backend : (m->wref->own_be = ftk_backend_cpu_new());
	m->dir = xstrdup(dir);
	m->quant = opts->quant;
	m->max_seq = opts->max_seq > 0 ? opts->max_seq : cfg.max_pos;
	m->be->ops->set_threads(m->be, opts->threads);
	int L = cfg.n_layers, C = cfg.dim, V = cfg.vocab_size, hd = cfg.head_dim;
	m->layers = xcalloc((size_t)L, sizeof(*m->layers));

	/* every tensor we need, with its shape, checked before any allocation */
	struct want *ws = NULL;
	size_t nw = 0, aw = 0;
	want_add(&ws, &nw, &aw, "model.embed_tokens.weight", 2, V, C, &m->embed, NULL);
	want_add(&ws, &nw, &aw, "model.norm.weight", 1, C, 0, &m->norm_f, NULL);
	if (!cfg.tie_embeddings)
		want_add(&ws, &nw, &aw, "lm_head.weight", 2, V, C, &m->head.f32, NULL);
	char name[160];
	static const char *const bias_names[3] = { "q_proj", "k_proj", "v_proj" };
	for (int l = 0; l < L; l++) {
		struct layer_w *lw = &m->layers[l];
		snprintf(name, sizeof(name), "model.layers.%d.input_layernorm.weight", l);
		want_add(&ws, &nw, &aw, name, 1, C, 0, &lw->ln1, NULL);
		snprintf(name, sizeof(name), "model.layers.%d.post_attention_layernorm.weight", l);
		want_add(&ws, &nw, &aw, name, 1, C, 0, &lw->ln2, NULL);
		for (int t = 0; t < NT; t++) {
			int r, c;
			ftk_model_base_shape(m, (enum ftk_lora_target)t, &r, &c);
			ftk_model_weight_name(l, (enum ftk_lora_target)t, name, sizeof(name));
			lw->w[t].rows = r;
			lw->w[t].cols = c;
			want_add(&ws, &nw, &aw, name, 2, r, c,
				 m->quant == FTK_QUANT_NONE ? &lw->w[t].f32 : NULL, &lw->w[t]);
		}
		if (cfg.qkv_bias)
			for (int i = 0; i < 3; i++) {
				snprintf(name, sizeof(name), "model.layers.%d.self_attn.%s.bias", l,
					 bias_names[i]);
				want_add(&ws, &nw, &aw, name, 1, lw->w[i].rows, 0, &lw->bias[i], NULL);
			}
		if (cfg.qk_norm) {
			snprintf(name, sizeof(name), "model.layers.%d.self_attn.q_norm.weight", l);
			want_add(&ws, &nw, &aw, name, 1, hd, 0, &lw->qn, NULL);
			snprintf(name, sizeof(name), "model.layers.%d.self_attn.k_norm.weight", l);
			want_add(&ws, &nw, &aw, name, 1, hd, 0, &lw->kn, NULL);
		}
	}
	const struct ftk_st_tensor **tens = xcalloc(nw, sizeof(*tens));
	size_t floats = 0;
	for (size_t i = 0; i < nw; i++) {
		if ((rc = ftk_st_expect(st, ws[i].name, ws[i].ndim, ws[i].shape, &tens[i], err)) < 0)
			goto fail;
		if (ws[i].dst)
			floats += (size_t)tens[i]->numel;
	}

	/* one arena for the float32 tensors, then NF4 projections one by one */
	m->base_floats = floats;
	m->base_mem = m->be->ops->alloc(m->be, floats * sizeof(float));
	size_t off = 0;
	float *tmp = NULL;
	size_t tmp_cap = 0;
	for (size_t i = 0; i < nw; i++) {
		size_t n = (size_t)tens[i]->numel;
		if (n > tmp_cap) {
			free(tmp);
			tmp = xmalloc(n * sizeof(float));
			tmp_cap = n;
		}
		if ((rc = ftk_st_to_f32(tens[i], tmp, err)) < 0) {
			free(tmp);
			goto fail;
		}
		if (ws[i].dst) {
			*ws[i].dst = m->base_mem + off;
			m->be->ops->upload(m->be, m->base_mem + off, tmp, n * sizeof(float));
			off += n;
		} else {
			ftk_nf4_quantize(&ws[i].w->nf4, tmp, n, NULL);
		}
		if (ws[i].w) {
			ws[i].w->quant = m->quant;
			m->be->ops->weight_prepare(m->be, ws[i].w);
		}
	}
	free(tmp);
	m->head.rows = V;
	m->head.cols = C;
	m->head.quant = FTK_QUANT_NONE;
	if (cfg.tie_embeddings)
		m->head.f32 = m->embed;

	float *inv = xmalloc((size_t)(hd / 2) * sizeof(float));
	for (int j = 0; j < hd / 2; j++)
		inv[j] = ftk_rope_inv_freq(j, hd, cfg.rope_theta,
					   cfg.rope_llama3 ? cfg.rope_factor : 0.0f, cfg.rope_low_freq,
					   cfg.rope_high_freq, cfg.rope_orig_max_pos);
	m->inv_freq = m->be->ops->alloc(m->be, (size_t)(hd / 2) * sizeof(float));
	m->be->ops->upload(m->be, m->inv_freq, inv, (size_t)(hd / 2) * sizeof(float));
	free(inv);
	free(tens);
	free(ws);
	ftk_st_close(st);
	*out = m;
	return 0;
fail:
	free(tens);
	free(ws);
	ftk_st_close(st);
	ftk_model_free(m);
	return rc;
}

static void free_acts(struct ftk_model *m)
{
	for (int i = 0; i < m->cap_saved; i++)
		m->be->ops->free(m->be, m->acts[i].mem);
	free(m->acts);
	m->acts = NULL;
	m->be->ops->free(m->be, m->res);
	m->be->ops->free(m->be, m->scratch_mem);
	m->res = NULL;
	m->scratch_mem = NULL;
	m->cap_M = m->cap_T = m->cap_saved = 0;
}

/* The weights, freed by the last model that shares them. */
static void free_weights(struct ftk_model *m)
{
	if (m->layers)
		for (int l = 0; l < m->cfg.n_layers; l++)
			for (int t = 0; t < NT; t++) {
				if (m->be->ops->weight_release)
					m->be->ops->weight_release(m->be, &m->layers[l].w[t]);
				ftk_nf4_free(&m->layers[l].w[t].nf4);
			}
	free(m->layers);
	if (m->be->ops->weight_release)	/* a backend's own copy of the head (CUDA bf16) */
		m->be->ops->weight_release(m->be, &m->head);
	m->be->ops->free(m->be, m->base_mem);
	m->be->ops->free(m->be, m->lora_mem);
	m->be->ops->free(m->be, m->grad_mem);
	free(m->slots);
	free(m->lt);
	m->be->ops->free(m->be, m->inv_freq);
	ftk_backend_free(m->wref->own_be);
	free(m->wref);
}

void ftk_model_free(struct ftk_model *m)
{
	if (!m)
		return;
	free_acts(m);
	m->be->ops->free(m->be, m->kc);
	m->be->ops->free(m->be, m->vc);
	m->be->ops->free(m->be, m->dec_scratch);
	free(m->h_idx);
	free(m->dir);
	if (atomic_fetch_sub(&m->wref->refs, 1) == 1)
		free_weights(m);
	free(m);
}

int ftk_model_share(struct ftk_model **out, struct ftk_model *src, struct ftk_error *err)
{
	struct ftk_model *m = xmalloc(sizeof(*m));
	*m = *src;	/* the configuration, the settings and every weight pointer */
	/* ... and none of src's own buffers: activations, scratch, KV cache */
	m->dir = xstrdup(src->dir);
	m->flash = m->dec_bufs = 0;
	m->cap_M = m->cap_T = m->cap_saved = 0;
	m->acts = NULL;
	m->res = m->lnf = m->rstdf = NULL;
	m->pos = m->doc = m->target = NULL;
	m->ids = NULL;
	m->h_idx = NULL;
	m->dres = m->dln = m->tmp = m->dh1 = m->dh2 = m->dh3 = m->dk = m->dv = NULL;
	m->du = m->dx = m->logits = m->loss = NULL;
	m->ch = 0;
	m->scratch_mem = NULL;
	m->kc = m->vc = m->dec_scratch = NULL;
	m->kv_pos = m->kv_cap = 0;
	atomic_fetch_add(&m->wref->refs, 1);
	*out = m;
	(void)err;
	return 0;
}

int ftk_model_shared_count(const struct ftk_model *m)
{
	return atomic_load(&m->wref->refs);
}

const void *ftk_model_weights_id(const struct ftk_model *m)
{
	return m->wref;
}

/* Training writes the LoRA arrays (and lora_init replaces them): not while shared. */
static int refuse_shared(const struct ftk_model *m, const char *what, struct ftk_error *err)
{
	int n = atomic_load(&m->wref->refs);
	if (n > 1)
		return ftk_error_msg(err, FTK_EUSAGE, "%s: the weights are shared by %d models "
				     "(inference only)", what, n);
	return 0;
}

const struct ftk_model_config *ftk_model_config(const struct ftk_model *m)
{
	return &m->cfg;
}

const char *ftk_model_dir(const struct ftk_model *m)
{
	return m->dir;
}

struct ftk_backend *ftk_model_backend(const struct ftk_model *m)
{
	return m->be;
}

size_t ftk_model_base_bytes(const struct ftk_model *m)
{
	size_t n = m->base_floats * sizeof(float);
	if (m->quant == FTK_QUANT_NF4)
		for (int l = 0; l < m->cfg.n_layers; l++)
			for (int t = 0; t < NT; t++)
				n += ftk_nf4_bytes(m->layers[l].w[t].nf4.n);
	return n;
}

void ftk_model_base_weight(const struct ftk_model *m, int layer, enum ftk_lora_target t, float *dst)
{
	const struct ftk_weight *w = &m->layers[layer].w[t];
	size_t n = (size_t)w->rows * w->cols;
	if (w->quant == FTK_QUANT_NONE)
		m->be->ops->download(m->be, dst, w->f32, n * sizeof(float));
	else
		ftk_nf4_dequant(&w->nf4, 0, n, dst);
}

/* ---------------------------------------------------------------- LoRA */

int ftk_model_lora_init(struct ftk_model *m, const struct ftk_lora_opts *o, struct ftk_error *err)
{
	if (o->rank < 1)
		return ftk_error_msg(err, FTK_EUSAGE, "LoRA rank must be at least 1, not %d", o->rank);
	if (!(o->targets & FTK_LORA_ALL))
		return ftk_error_msg(err, FTK_EUSAGE, "no LoRA targets");
	if (!(o->dropout >= 0.0f && o->dropout < 1.0f))
		return ftk_error_msg(err, FTK_EUSAGE, "LoRA dropout must be in [0, 1), not %g",
				     (double)o->dropout);
	int rc = refuse_shared(m, "cannot create LoRA parameters", err);
	if (rc < 0)
		return rc;
	free_acts(m);	/* buffer sizes depend on the rank */
	m->be->ops->free(m->be, m->lora_mem);
	m->be->ops->free(m->be, m->grad_mem);
	free(m->slots);
	free(m->lt);
	int L = m->cfg.n_layers, r = o->rank;
	m->lo = *o;
	m->scaling = ftk_lora_scaling(o);
	m->slots = xcalloc((size_t)L * NT, sizeof(*m->slots));
	size_t n = 0, nlt = 0;
	for (int l = 0; l < L; l++)
		for (int t = 0; t < NT; t++) {
			if (!(o->targets & (1u << t)))
				continue;
			struct lora_slot *s = &m->slots[l * NT + t];
			s->on = 1;
			ftk_model_base_shape(m, (enum ftk_lora_target)t, &s->out, &s->in);
			n += (size_t)r * s->in + (size_t)s->out * r;
			nlt += 2;
		}
	m->n_lora = n;
	m->lora_mem = m->be->ops->alloc(m->be, n * sizeof(float));	/* zero: B starts at 0 */
	m->grad_mem = m->be->ops->alloc(m->be, n * sizeof(float));
	m->lt = xcalloc(nlt, sizeof(*m->lt));
	m->n_lt = nlt;
	struct ftk_rng rng;
	ftk_rng_seed(&rng, o->seed);
	float *host = xcalloc(n ? n : 1, sizeof(float));	/* A drawn here, then one upload */
	size_t off = 0, k = 0;
	for (int l = 0; l < L; l++)
		for (int t = 0; t < NT; t++) {
			struct lora_slot *s = &m->slots[l * NT + t];
			if (!s->on)
				continue;
			for (int isb = 0; isb < 2; isb++) {
				struct ftk_lora_tensor *x = &m->lt[k++];
				snprintf(x->name, sizeof(x->name),
					 "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", l,
					 t <= FTK_LORA_O ? "self_attn" : "mlp", target_names[t],
					 isb ? 'B' : 'A');
				x->layer = l;
				x->target = (enum ftk_lora_target)t;
				x->is_b = isb;
				x->rows = isb ? s->out : r;
				x->cols = isb ? r : s->in;
				x->data = m->lora_mem + off;
				x->grad = m->grad_mem + off;
				x->offset = off;
				if (!isb) {
					/* kaiming_uniform_(a=sqrt(5)): bound = 1/sqrt(fan_in) */
					float bound = 1.0f / sqrtf((float)s->in);
					for (int i = 0; i < x->rows * x->cols; i++)
						host[off + i] = (float)((2.0 * ftk_rng_uniform(&rng) - 1.0) * bound);
					s->A = x->data;
					s->dA = x->grad;
				} else {
					s->B = x->data;
					s->dB = x->grad;
				}
				off += (size_t)x->rows * x->cols;
			}
		}
	ftk_model_lora_upload(m, host);
	free(host);
	m->has_lora = 1;
	m->rng.seed = o->seed;
	m->rng.counter = 0;
	return 0;
}

const struct ftk_lora_opts *ftk_model_lora_opts(const struct ftk_model *m)
{
	return m->has_lora ? &m->lo : NULL;
}

size_t ftk_model_lora_count(const struct ftk_model *m)
{
	return m->n_lt;
}

const struct ftk_lora_tensor *ftk_model_lora_tensor(const struct ftk_model *m, size_t i)
{
	return i < m->n_lt ? &m->lt[i] : NULL;
}

const struct ftk_lora_tensor *ftk_model_lora_find(const struct ftk_model *m, const char *name)
{
	for (size_t i = 0; i < m->n_lt; i++)
		if (!strcmp(m->lt[i].name, name))
			return &m->lt[i];
	return NULL;
}

float *ftk_model_lora_flat(struct ftk_model *m, size_t *n)
{
	if (m->be->ops->sync)
		m->be->ops->sync(m->be);
	if (n)
		*n = m->n_lora;
	return m->lora_mem;
}

float *ftk_model_lora_grad_flat(struct ftk_model *m, size_t *n)
{
	if (m->be->ops->sync)
		m->be->ops->sync(m->be);
	if (n)
		*n = m->n_lora;
	return m->grad_mem;
}

void ftk_model_lora_download(const struct ftk_model *m, float *host)
{
	if (m->be->ops->sync)
		m->be->ops->sync(m->be);
	m->be->ops->download(m->be, host, m->lora_mem, m->n_lora * sizeof(float));
}

void ftk_model_lora_upload(struct ftk_model *m, const float *host)
{
	if (m->be->ops->sync)
		m->be->ops->sync(m->be);
	m->be->ops->upload(m->be, m->lora_mem, host, m->n_lora * sizeof(float));
}

void ftk_model_lora_grad_download(const struct ftk_model *m, float *host)
{
	if (m->be->ops->sync)
		m->be->ops->sync(m->be);
	m->be->ops->download(m->be, host, m->grad_mem, m->n_lora * sizeof(float));
}

void ftk_model_zero_grad(struct ftk_model *m)
{
	if (m->grad_mem)
		m->be->ops->zero(m->be, m->grad_mem, m->n_lora * sizeof(float));
}

void ftk_model_rng_get(const struct ftk_model *m, struct ftk_model_rng *r)
{
	*r = m->rng;
}

void ftk_model_rng_set(struct ftk_model *m, const struct ftk_model_rng *r)
{
	m->rng = *r;
}

void ftk_model_set_head_chunk(struct ftk_model *m, int rows)
{
	m->ch_user = rows > 0 ? rows : 0;
	free_acts(m);
}

void ftk_model_set_checkpointing(struct ftk_model *m, int on)
{
	if (!!on != m->checkpointing)
		free_acts(m);
	m->checkpointing = !!on;
}

int ftk_model_set_precision(struct ftk_model *m, int precision, struct ftk_error *err)
{
	const char *name = ftk_precision_name(precision);
	if (!name)
		return ftk_error_msg(err, FTK_EUSAGE, "unknown precision %d", precision);
	if (!m->be->ops->set_precision) {
		if (precision == FTK_PREC_FP32)
			return 0;
		return ftk_error_msg(err, FTK_EUNSUPPORTED,
				     "the %s backend computes in fp32 only, not %s",
				     m->be->ops->name, name);
	}
	if (m->be->ops->set_precision(m->be, precision) < 0)
		return ftk_error_msg(err, FTK_EUNSUPPORTED, "the %s backend cannot compute in %s",
				     m->be->ops->name, name);
	return 0;
}

const char *ftk_precision_name(int precision)
{
	return precision == FTK_PREC_FP32   ? "fp32"
	       : precision == FTK_PREC_BF16 ? "bf16"
	       : precision == FTK_PREC_TF32 ? "tf32"
					    : NULL;
}

int ftk_precision_parse(const char *s)
{
	return !strcmp(s, "fp32")   ? FTK_PREC_FP32
	       : !strcmp(s, "bf16") ? FTK_PREC_BF16
	       : !strcmp(s, "tf32") ? FTK_PREC_TF32
				    : -1;
}

const char *ftk_attention_name(enum ftk_attention a)
{
	return a == FTK_ATTN_FULL ? "full" : a == FTK_ATTN_FLASH ? "flash" : "auto";
}

int ftk_attention_parse(const char *s, enum ftk_attention *a, struct ftk_error *err)
{
	for (int i = FTK_ATTN_AUTO; i <= FTK_ATTN_FLASH; i++)
		if (!strcmp(s, ftk_attention_name((enum ftk_attention)i))) {
			*a = (enum ftk_attention)i;
			return 0;
		}
	return ftk_error_msg(err, FTK_EUSAGE, "attention must be auto, full or flash, not '%s'", s);
}

int ftk_attention_flash(enum ftk_attention a, int B, int T, int NH, int hd)
{
	if (hd > FTK_FLASH_MAX_HD || a == FTK_ATTN_FULL)
		return 0;
	if (a == FTK_ATTN_FLASH)
		return 1;
	return (double)B * NH * T * T * sizeof(float) > (double)FTK_ATTN_AUTO_BYTES;
}

int ftk_model_set_attention(struct ftk_model *m, enum ftk_attention a, struct ftk_error *err)
{
	if (a == FTK_ATTN_FLASH && (!m->be->ops->attn_fwd_flash || !m->be->ops->attn_bwd_flash))
		return ftk_error_msg(err, FTK_EUSAGE, "the %s backend has no flash attention",
				     m->be->ops->name);
	if (a == FTK_ATTN_FLASH && m->cfg.head_dim > FTK_FLASH_MAX_HD)
		return ftk_error_msg(err, FTK_EUSAGE,
				     "flash attention takes head_dim up to %d, the model has %d",
				     FTK_FLASH_MAX_HD, m->cfg.head_dim);
	m->attention = a;
	return 0;
}

/* Whether the forward and backward of B rows of T positions run flash attention. */
static int use_flash(const struct ftk_model *m, int B, int T)
{
	return m->be->ops->attn_fwd_flash && m->be->ops->attn_bwd_flash &&
	       ftk_attention_flash(m->attention, B, T, m->cfg.n_heads, m->cfg.head_dim);
}

/* ---------------------------------------------------------------- buffers */

static int max3(int a, int b, int c)
{
	int x = a > b ? a : b;
	return x > c ? x : c;
}

/* Lay out one acts block for M rows, T att columns; when mem is NULL just count bytes. */
static size_t acts_layout(const struct ftk_model *m, struct acts *a, char *mem, int B, int T)
{
	const struct ftk_model_config *c = &m->cfg;
	size_t M = (size_t)B * T, C = c->dim, H = c->hidden_dim, q = (size_t)c->n_heads * c->head_dim,
	       kv = (size_t)c->n_kv_heads * c->head_dim, r = m->has_lora ? m->lo.rank : 0;
	size_t off = 0;
#define TAKE(ptr, n, type)                                                  \
	do {                                                                \
		if (mem)                                                    \
			(ptr) = (type *)(mem + off);                        \
		off += (((n) * sizeof(type)) + 63) & ~(size_t)63;           \
	} while (0)
	TAKE(a->ln1, M * C, float);
	TAKE(a->rstd1, M, float);
	if (c->qk_norm) {
		TAKE(a->qraw, M * q, float);
		TAKE(a->kraw, M * kv, float);
		TAKE(a->rstdq, M * c->n_heads, float);
		TAKE(a->rstdk, M * c->n_kv_heads, float);
	}
	TAKE(a->q, M * q, float);
	TAKE(a->k, M * kv, float);
	TAKE(a->v, M * kv, float);
	if (m->dec_bufs)
		;	/* decoding attends over the KV cache: no (B, NH, T, T) matrix */
	else if (m->flash)
		TAKE(a->lse, (size_t)B * c->n_heads * T, float);
	else
		TAKE(a->att, (size_t)B * c->n_heads * T * T, float);
	TAKE(a->atty, M * q, float);
	TAKE(a->xmid, M * C, float);
	TAKE(a->ln2, M * C, float);
	TAKE(a->rstd2, M, float);
	TAKE(a->gate, M * H, float);
	TAKE(a->up, M * H, float);
	TAKE(a->act, M * H, float);
	if (m->has_lora)
		for (int t = 0; t < NT; t++) {
			if (!(m->lo.targets & (1u << t)))
				continue;
			int rows, in;
			ftk_model_base_shape(m, (enum ftk_lora_target)t, &rows, &in);
			TAKE(a->lu[t], M * r, float);
			if (m->lo.dropout > 0.0f && !m->dec_bufs) {	/* no dropout in decoding */
				TAKE(a->lx[t], M * (size_t)in, float);
				TAKE(a->keep[t], M * (size_t)in, uint8_t);
			}
		}
#undef TAKE
	return off;
}

/*
 * Activations and scratch for a (B, T) batch.  decode != 0: for
 * ftk_model_decode, which runs one layer at a time through acts[0] and so
 * needs one saved layer, not L, attends over the KV cache (no T x T
 * attention matrix), applies no dropout and reads one row of logits (an
 * engine's memory is then O(1) layers of activations, not O(L) plus
 * O(NH T^2): what each of ftk eval -j N's engines holds).
 */
static void ensure_buffers(struct ftk_model *m, int B, int T, int decode)
{
	int M = B * T;
	int saved = decode || m->checkpointing ? 1 : m->cfg.n_layers;
	int flash = use_flash(m, B, T);
	if (M <= m->cap_M && T <= m->cap_T && B * T * T <= m->cap_M * m->cap_T &&
	    (decode ? m->cap_saved >= 1 : saved == m->cap_saved && !m->dec_bufs) &&
	    flash == m->flash)
		return;
	free_acts(m);
	m->flash = flash;
	m->dec_bufs = decode;
	const struct ftk_model_config *c = &m->cfg;
	int C = c->dim, H = c->hidden_dim, q = c->n_heads * c->head_dim,
	    kv = c->n_kv_heads * c->head_dim, r = m->has_lora ? m->lo.rank : 1;
	/* att is sized B*T*T: keep B = M / T so the layout matches */
	m->acts = xcalloc((size_t)saved, sizeof(*m->acts));
	for (int i = 0; i < saved; i++) {
		size_t bytes = acts_layout(m, &m->acts[i], NULL, B, T);
		m->acts[i].mem = m->be->ops->alloc(m->be, bytes);
		acts_layout(m, &m->acts[i], m->acts[i].mem, B, T);
	}
	m->res = m->be->ops->alloc(m->be, (size_t)(c->n_layers + 1) * M * C * sizeof(float));
	size_t wide = (size_t)max3(C, H, q);
	size_t n = 0;
	/* decoding uses no backward buffers and one row of logits */
	size_t bwd = decode ? 0 : (size_t)M, ch = decode ? 1 : (size_t)head_chunk(m, c->vocab_size, M);
	size_t sizes[] = {
		(size_t)M * C,		/* lnf */
		(size_t)M,		/* rstdf */
		(size_t)M * 4,		/* pos, doc, target, ids (32-bit each) */
		bwd * C,		/* dres */
		bwd * C,		/* dln */
		(size_t)M * wide,	/* tmp */
		bwd * wide * 3,		/* dh1..3 */
		bwd * kv * 2,		/* dk, dv */
		bwd * r,		/* du */
		bwd * wide,		/* dx */
		ch * c->vocab_size,	/* logits */
		ch,			/* loss */
	};
	for (size_t i = 0; i < FTK_ARRAY_SIZE(sizes); i++)
		n += sizes[i];
	float *p = m->scratch_mem = m->be->ops->alloc(m->be, n * sizeof(float));
	m->lnf = p, p += sizes[0];
	m->rstdf = p, p += sizes[1];
	m->pos = (int32_t *)p, m->doc = m->pos + M, m->target = m->doc + M;
	m->ids = (uint32_t *)(m->target + M), p += sizes[2];
	free(m->h_idx);
	m->h_idx = xcalloc((size_t)4 * M, sizeof(int32_t));
	m->dres = p, p += sizes[3];
	m->dln = p, p += sizes[4];
	m->tmp = p, p += sizes[5];
	m->dh1 = p, m->dh2 = p + (size_t)M * wide, m->dh3 = p + 2 * (size_t)M * wide, p += sizes[6];
	m->dk = p, m->dv = p + (size_t)M * kv, p += sizes[7];
	m->du = p, p += sizes[8];
	m->dx = p, p += sizes[9];
	m->logits = p, p += sizes[10];
	m->loss = p;
	m->buf_bytes = n * sizeof(float) + (size_t)(c->n_layers + 1) * M * C * sizeof(float);
	for (int i = 0; i < saved; i++)
		m->buf_bytes += acts_layout(m, &m->acts[i], NULL, B, T);
	m->cap_M = M;
	m->cap_T = T;
	m->cap_saved = saved;
	m->ch = decode ? 1 : m->ch_user > 0 && m->ch_user < M ? m->ch_user
							   : head_chunk(m, c->vocab_size, M);
}

/* ---------------------------------------------------------------- projections */

/* Y (M, out) = X (M, in) W^T + bias + scaling * (drop(X) A^T) B^T */
static void proj_fwd(struct ftk_model *m, int l, int t, const float *X, float *Y, int M,
		     struct acts *a, int train)
{
	struct ftk_backend *be = m->be;
	const struct ftk_backend_ops *op = be->ops;
	struct layer_w *lw = &m->layers[l];
	const float *bias = t < 3 ? lw->bias[t] : NULL;
	op->linear_fwd(be, Y, X, &lw->w[t], bias, M);
	struct lora_slot *s = m->has_lora ? &m->slots[l * NT + t] : NULL;
	if (!s || !s->on)
		return;
	int r = m->lo.rank;
	const float *Xd = X;
	if (train && m->lo.dropout > 0.0f) {
		size_t n = (size_t)M * s->in;
		uint64_t stream = ftk_mix64(m->rng.seed ^ ftk_mix64(m->rng.counter * 1000003u +
								    (uint64_t)(l * NT + t)));
		op->dropout_mask(be, a->keep[t], stream, m->lo.dropout, n);
		op->dropout(be, a->lx[t], X, a->keep[t], 1.0f / (1.0f - m->lo.dropout), n);
		Xd = a->lx[t];
	}
	float *U = a->lu[t];
	op->gemm(be, 0, 1, M, r, s->in, 1.0f, Xd, s->in, s->A, s->in, 0.0f, U, r);
	op->gemm(be, 0, 1, M, s->out, r, m->scaling, U, r, s->B, r, 1.0f, Y, s->out);
}

/* Run n independent products: together when the backend can, else one by one. */
static void lora_gemms(struct ftk_backend *be, int n, const struct ftk_gemm_args *g)
{
	if (be->ops->gemm_batch && n > 1) {
		be->ops->gemm_batch(be, n, g);
		return;
	}
	for (int i = 0; i < n; i++)
		be->ops->gemm(be, g[i].ta, g[i].tb, g[i].M, g[i].N, g[i].K, g[i].alpha, g[i].A,
			      g[i].lda, g[i].B, g[i].ldb, g[i].beta, g[i].C, g[i].ldc);
}

/*
 * dX (M, in) += backward of proj_fwd given dY (M, out); LoRA grads accumulate.
 * dX NULL: the input gradient is not wanted, only the LoRA gradients.
 */
static void proj_bwd(struct ftk_model *m, int l, int t, const float *X, const float *dY, float *dX,
		     int M, struct acts *a)
{
	struct ftk_backend *be = m->be;
	const struct ftk_backend_ops *op = be->ops;
	if (dX)
		op->linear_bwd_inp(be, dX, dY, &m->layers[l].w[t], M);
	struct lora_slot *s = m->has_lora ? &m->slots[l * NT + t] : NULL;
	if (!s || !s->on)
		return;
	int r = m->lo.rank;
	int drop = m->lo.dropout > 0.0f;
	const float *Xd = drop ? a->lx[t] : X;
	/*
	 * Two rounds of two independent products (side by side where the
	 * backend can): dB (out, r) += s dY^T U and dU (M, r) = s dY B; then
	 * dA (r, in) += dU^T Xd and the input gradient dU A (into dX, or into
	 * scratch to be masked when there is dropout).
	 */
	struct ftk_gemm_args g[2] = {
		{ 1, 0, s->out, r, M, m->scaling, dY, s->out, a->lu[t], r, 1.0f, s->dB, r },
		{ 0, 0, M, r, s->out, m->scaling, dY, s->out, s->B, r, 0.0f, m->du, r },
	};
	lora_gemms(be, 2, g);
	struct ftk_gemm_args h[2] = {
		{ 1, 0, r, s->in, M, 1.0f, m->du, r, Xd, s->in, 1.0f, s->dA, s->in },
		{ 0, 0, M, s->in, r, 1.0f, m->du, r, s->A, s->in, drop ? 0.0f : 1.0f,
		  drop ? m->dx : dX, s->in },
	};
	lora_gemms(be, dX ? 2 : 1, h);
	if (dX && drop) {
		size_t n = (size_t)M * s->in;
		op->dropout(be, m->dx, m->dx, a->keep[t], 1.0f / (1.0f - m->lo.dropout), n);
		op->add(be, dX, m->dx, n);
	}
}

/* ---------------------------------------------------------------- layers */

/* Forward of layer l: x (M, C) -> xout (M, C), saving into a. */
static void layer_fwd(struct ftk_model *m, int l, const float *x, float *xout, struct acts *a,
		      int B, int T, int train)
{
	struct ftk_backend *be = m->be;
	const struct ftk_backend_ops *op = be->ops;
	const struct ftk_model_config *c = &m->cfg;
	struct layer_w *lw = &m->layers[l];
	int M = B * T, C = c->dim, H = c->hidden_dim, NH = c->n_heads, NKV = c->n_kv_heads,
	    hd = c->head_dim;
	op->rmsnorm_fwd(be, a->ln1, a->rstd1, x, lw->ln1, M, C, c->norm_eps);
	float *q = c->qk_norm ? a->qraw : a->q, *k = c->qk_norm ? a->kraw : a->k;
	proj_fwd(m, l, FTK_LORA_Q, a->ln1, q, M, a, train);
	proj_fwd(m, l, FTK_LORA_K, a->ln1, k, M, a, train);
	proj_fwd(m, l, FTK_LORA_V, a->ln1, a->v, M, a, train);
	if (c->qk_norm) {
		op->rmsnorm_fwd(be, a->q, a->rstdq, a->qraw, lw->qn, M * NH, hd, c->norm_eps);
		op->rmsnorm_fwd(be, a->k, a->rstdk, a->kraw, lw->kn, M * NKV, hd, c->norm_eps);
	}
	op->rope(be, a->q, m->pos, m->inv_freq, M, NH, hd, 1);
	op->rope(be, a->k, m->pos, m->inv_freq, M, NKV, hd, 1);
	if (m->flash)
		op->attn_fwd_flash(be, a->atty, a->lse, a->q, a->k, a->v, m->doc, B, T, NH, NKV,
				   hd);
	else
		op->attn_fwd(be, a->atty, a->att, a->q, a->k, a->v, m->doc, B, T, NH, NKV, hd);
	proj_fwd(m, l, FTK_LORA_O, a->atty, m->tmp, M, a, train);
	op->copy(be, a->xmid, x, (size_t)M * C * sizeof(float));
	op->add(be, a->xmid, m->tmp, (size_t)M * C);
	op->rmsnorm_fwd(be, a->ln2, a->rstd2, a->xmid, lw->ln2, M, C, c->norm_eps);
	proj_fwd(m, l, FTK_LORA_GATE, a->ln2, a->gate, M, a, train);
	proj_fwd(m, l, FTK_LORA_UP, a->ln2, a->up, M, a, train);
	op->swiglu_fwd(be, a->act, a->gate, a->up, (size_t)M * H);
	proj_fwd(m, l, FTK_LORA_DOWN, a->act, m->tmp, M, a, train);
	op->copy(be, xout, a->xmid, (size_t)M * C * sizeof(float));
	op->add(be, xout, m->tmp, (size_t)M * C);
}

/* Backward of layer l: dres holds d(xout) on entry and d(x) on return. */
static void layer_bwd(struct ftk_model *m, int l, const float *x, struct acts *a, int B, int T)
{
	struct ftk_backend *be = m->be;
	const struct ftk_backend_ops *op = be->ops;
	const struct ftk_model_config *c = &m->cfg;
	struct layer_w *lw = &m->layers[l];
	int M = B * T, C = c->dim, H = c->hidden_dim, NH = c->n_heads, NKV = c->n_kv_heads,
	    hd = c->head_dim;
	size_t q = (size_t)NH * hd, kv = (size_t)NKV * hd;
	/* MLP */
	float *dact = m->dh1, *dgate = m->dh2, *dup = m->dh3;
	op->zero(be, dact, (size_t)M * H * sizeof(float));
	proj_bwd(m, l, FTK_LORA_DOWN, a->act, m->dres, dact, M, a);
	op->swiglu_bwd(be, dgate, dup, dact, a->gate, a->up, (size_t)M * H);
	op->zero(be, m->dln, (size_t)M * C * sizeof(float));
	proj_bwd(m, l, FTK_LORA_GATE, a->ln2, dgate, m->dln, M, a);
	proj_bwd(m, l, FTK_LORA_UP, a->ln2, dup, m->dln, M, a);
	op->rmsnorm_bwd(be, m->dres, m->dln, a->xmid, lw->ln2, a->rstd2, M, C);
	/* attention */
	float *datty = m->dh1, *dq = m->dh2, *dqraw = m->dh3;
	op->zero(be, datty, (size_t)M * q * sizeof(float));
	proj_bwd(m, l, FTK_LORA_O, a->atty, m->dres, datty, M, a);
	if (m->flash)
		op->attn_bwd_flash(be, dq, m->dk, m->dv, datty, a->atty, a->lse, a->q, a->k, a->v,
				   m->doc, B, T, NH, NKV, hd);
	else
		op->attn_bwd(be, dq, m->dk, m->dv, datty, a->att, a->q, a->k, a->v, B, T, NH, NKV,
			     hd);
	op->rope(be, dq, m->pos, m->inv_freq, M, NH, hd, -1);
	op->rope(be, m->dk, m->pos, m->inv_freq, M, NKV, hd, -1);
	float *dk = m->dk;
	if (c->qk_norm) {
		op->zero(be, dqraw, (size_t)M * q * sizeof(float));
		op->rmsnorm_bwd(be, dqraw, dq, a->qraw, lw->qn, a->rstdq, M * NH, hd);
		dq = dqraw;
		float *dkraw = m->tmp;
		op->zero(be, dkraw, (size_t)M * kv * sizeof(float));
		op->rmsnorm_bwd(be, dkraw, m->dk, a->kraw, lw->kn, a->rstdk, M * NKV, hd);
		dk = dkraw;
	}
	/* layer 0's input is the frozen embedding: its gradient is never used, so
	 * only the LoRA gradients of q, k, v are computed there (dX = NULL) */
	float *dln = l > 0 ? m->dln : NULL;
	if (dln)
		op->zero(be, dln, (size_t)M * C * sizeof(float));
	proj_bwd(m, l, FTK_LORA_Q, a->ln1, dq, dln, M, a);
	proj_bwd(m, l, FTK_LORA_K, a->ln1, dk, dln, M, a);
	proj_bwd(m, l, FTK_LORA_V, a->ln1, m->dv, dln, M, a);
	if (dln)
		op->rmsnorm_bwd(be, m->dres, dln, x, lw->ln1, a->rstd1, M, C);
}

/* ---------------------------------------------------------------- batches */

long ftk_batch_count_targets(const struct ftk_batch *b)
{
	long n = 0;
	for (int i = 0; i < b->B; i++)
		for (int t = 0; t + 1 < b->T; t++) {
			size_t j = (size_t)i * b->T + t + 1;
			if (b->doc && b->doc[j] != b->doc[j - 1])
				continue;
			if (!b->mask || b->mask[j])
				n++;
		}
	return n;
}

static int check_batch(struct ftk_model *m, const struct ftk_batch *b, struct ftk_error *err)
{
	if (b->B < 1 || b->T < 1)
		return ftk_error_msg(err, FTK_EUSAGE, "empty batch (%d x %d)", b->B, b->T);
	if (b->T > m->max_seq)
		return ftk_error_msg(err, FTK_EUSAGE, "sequence length %d exceeds the model's %d",
				     b->T, m->max_seq);
	for (size_t i = 0; i < (size_t)b->B * b->T; i++)
		if (b->ids[i] >= (uint32_t)m->cfg.vocab_size)
			return ftk_error_msg(err, FTK_EUSAGE,
					     "token id %u at position %zu is outside the vocabulary (%d)",
					     b->ids[i], i, m->cfg.vocab_size);
	return 0;
}

/*
 * Positions, document ids, targets and token ids for the batch, made on the
 * host and uploaded to the backend; returns the target count.
 */
static long prepare(struct ftk_model *m, const struct ftk_batch *b)
{
	int T = b->T, M = b->B * b->T;
	int32_t *pos = m->h_idx, *doc = pos + M, *target = doc + M;
	long n = 0;
	for (int i = 0; i < b->B; i++) {
		int start = 0;
		for (int t = 0; t < T; t++) {
			size_t j = (size_t)i * T + t;
			uint32_t d = b->doc ? b->doc[j] : 0;
			if (t > 0 && b->doc && d != b->doc[j - 1])
				start = t;
			pos[j] = t - start;
			doc[j] = (int32_t)d;
			target[j] = -1;
			if (t + 1 < T) {
				int same = !b->doc || b->doc[j + 1] == d;
				if (same && (!b->mask || b->mask[j + 1])) {
					target[j] = (int32_t)b->ids[j + 1];
					n++;
				}
			}
		}
	}
	m->be->ops->upload(m->be, m->pos, pos, (size_t)M * sizeof(int32_t));
	m->be->ops->upload(m->be, m->doc, doc, (size_t)M * sizeof(int32_t));
	m->be->ops->upload(m->be, m->target, target, (size_t)M * sizeof(int32_t));
	m->be->ops->upload(m->be, m->ids, b->ids, (size_t)M * sizeof(uint32_t));
	return n;
}

/*
 * Head and loss over all M rows in chunks of m->ch.  grad_scale != 0: writes
 * d(lnf) into m->dln (M, C).  logits_out: copies the logits there (M, V).
 */
static double head_loss(struct ftk_model *m, int M, float grad_scale, float *logits_out)
{
	struct ftk_backend *be = m->be;
	const struct ftk_backend_ops *op = be->ops;
	int V = m->cfg.vocab_size, C = m->cfg.dim;
	double sum = 0.0;
	int CH = m->ch;
	float *lh = xmalloc((size_t)CH * sizeof(float));
	for (int r0 = 0; r0 < M; r0 += CH) {
		int n = M - r0 < CH ? M - r0 : CH;
		op->linear_fwd(be, m->logits, m->lnf + (size_t)r0 * C, &m->head, NULL, n);
		if (logits_out)
			op->download(be, logits_out + (size_t)r0 * V, m->logits,
				     (size_t)n * V * sizeof(float));
		op->xent(be, m->loss, m->logits, m->target + r0, n, V, grad_scale);
		op->download(be, lh, m->loss, (size_t)n * sizeof(float));
		for (int i = 0; i < n; i++)
			sum += lh[i];
		if (grad_scale != 0.0f) {
			op->zero(be, m->dln + (size_t)r0 * C, (size_t)n * C * sizeof(float));
			op->linear_bwd_inp(be, m->dln + (size_t)r0 * C, m->logits, &m->head, n);
		}
	}
	free(lh);
	return sum;
}

static void forward_layers(struct ftk_model *m, const struct ftk_batch *b, int train)
{
	struct ftk_backend *be = m->be;
	const struct ftk_backend_ops *op = be->ops;
	int M = b->B * b->T, C = m->cfg.dim;
	op->embed(be, m->res, m->embed, m->ids, M, C);
	for (int l = 0; l < m->cfg.n_layers; l++) {
		struct acts *a = &m->acts[m->cap_saved == 1 ? 0 : l];
		layer_fwd(m, l, m->res + (size_t)l * M * C, m->res + (size_t)(l + 1) * M * C, a, b->B,
			  b->T, train);
	}
	op->rmsnorm_fwd(be, m->lnf, m->rstdf, m->res + (size_t)m->cfg.n_layers * M * C, m->norm_f,
			M, C, m->cfg.norm_eps);
}

int ftk_model_forward(struct ftk_model *m, const struct ftk_batch *b, float *logits,
		      double *loss_sum, long *n_targets, struct ftk_error *err)
{
	int rc = check_batch(m, b, err);
	if (rc < 0)
		return rc;
	ensure_buffers(m, b->B, b->T, 0);
	long n = prepare(m, b);
	forward_layers(m, b, 0);
	double s = head_loss(m, b->B * b->T, 0.0f, logits);
	if (loss_sum)
		*loss_sum = s;
	if (n_targets)
		*n_targets = n;
	return 0;
}

int ftk_model_forward_backward(struct ftk_model *m, const struct ftk_batch *b, double norm,
			       double *loss_sum, long *n_targets, struct ftk_error *err)
{
	if (!m->has_lora)
		return ftk_error_msg(err, FTK_EUSAGE, "no LoRA parameters to train");
	int rc = refuse_shared(m, "cannot train", err);
	if (rc < 0)
		return rc;
	if (!(norm > 0.0))
		return ftk_error_msg(err, FTK_EUSAGE, "the loss normaliser must be positive, not %g", norm);
	rc = check_batch(m, b, err);
	if (rc < 0)
		return rc;
	ensure_buffers(m, b->B, b->T, 0);
	long n = prepare(m, b);
	int M = b->B * b->T, C = m->cfg.dim, L = m->cfg.n_layers;
	forward_layers(m, b, 1);
	double s = head_loss(m, M, (float)(1.0 / norm), NULL);
	/* final norm backward into dres */
	m->be->ops->zero(m->be, m->dres, (size_t)M * C * sizeof(float));
	m->be->ops->rmsnorm_bwd(m->be, m->dres, m->dln, m->res + (size_t)L * M * C, m->norm_f,
				m->rstdf, M, C);
	for (int l = L - 1; l >= 0; l--) {
		const float *x = m->res + (size_t)l * M * C;
		struct acts *a = &m->acts[m->cap_saved == 1 ? 0 : l];
		if (m->cap_saved == 1 && l != L - 1) {
			/* recompute this layer's activations (the output goes to scratch) */
			layer_fwd(m, l, x, m->dx, a, b->B, b->T, 1);
		}
		layer_bwd(m, l, x, a, b->B, b->T);
	}
	if (m->be->ops->sync)	/* once, before the host reads the gradients it shares */
		m->be->ops->sync(m->be);
	m->rng.counter++;
	if (loss_sum)
		*loss_sum = s;
	if (n_targets)
		*n_targets = n;
	return 0;
}

/* ---------------------------------------------------------------- decoding */

/*
 * The KV cache holds what is asked of it, not the model's whole context:
 * Llama 3.1's 131072 positions are about 34 GB of cache, while a request
 * needs its prompt and max_tokens.  Growing keeps the cached positions
 * (each layer's first kv_pos rows copied into the larger cache) and at
 * least doubles, so token-by-token decoding grows O(log n) times.
 */
int ftk_model_kv_reserve(struct ftk_model *m, int n, struct ftk_error *err)
{
	if (n > m->max_seq)
		return ftk_error_msg(err, FTK_EUSAGE, "a KV cache of %d positions is beyond the "
				     "model's context of %d", n, m->max_seq);
	if (n <= m->kv_cap)
		return 0;
	struct ftk_backend *be = m->be;
	const struct ftk_backend_ops *op = be->ops;
	size_t kv = (size_t)m->cfg.n_kv_heads * m->cfg.head_dim, L = (size_t)m->cfg.n_layers;
	int cap = m->kv_cap * 2 > n ? m->kv_cap * 2 : n;
	cap = (cap + 15) / 16 * 16;
	if (cap > m->max_seq)
		cap = m->max_seq;
	float *kc = op->alloc(be, L * cap * kv * sizeof(float));
	float *vc = op->alloc(be, L * cap * kv * sizeof(float));
	if (m->kc && m->kv_pos > 0)
		for (size_t l = 0; l < L; l++) {
			op->copy(be, kc + l * cap * kv, m->kc + l * m->kv_cap * kv,
				 (size_t)m->kv_pos * kv * sizeof(float));
			op->copy(be, vc + l * cap * kv, m->vc + l * m->kv_cap * kv,
				 (size_t)m->kv_pos * kv * sizeof(float));
		}
	op->free(be, m->kc);
	op->free(be, m->vc);
	op->free(be, m->dec_scratch);
	m->kc = kc;
	m->vc = vc;
	m->dec_scratch = op->alloc(be, (size_t)cap * sizeof(float));
	m->kv_cap = cap;
	return 0;
}

int ftk_model_kv_capacity(const struct ftk_model *m)
{
	return m->kv_cap;
}

size_t ftk_model_buffer_bytes(const struct ftk_model *m)
{
	size_t kv = (size_t)m->cfg.n_kv_heads * m->cfg.head_dim * m->cfg.n_layers;
	return (m->cap_M ? m->buf_bytes : 0) +
	       (size_t)m->kv_cap * (2 * kv + 1) * sizeof(float) + (size_t)4 * m->cap_M * sizeof(int32_t);
}

int ftk_model_decode(struct ftk_model *m, const uint32_t *ids, int n, int pos, float *logits,
		     struct ftk_error *err)
{
	struct ftk_backend *be = m->be;
	const struct ftk_backend_ops *op = be->ops;
	const struct ftk_model_config *c = &m->cfg;
	if (n < 1 || pos < 0 || pos + n > m->max_seq)
		return ftk_error_msg(err, FTK_EUSAGE, "decoding positions [%d, %d) outside [0, %d)", pos,
				     pos + n, m->max_seq);
	if (pos > m->kv_pos)
		return ftk_error_msg(err, FTK_EUSAGE, "decoding at position %d, but only %d are cached",
				     pos, m->kv_pos);
	for (int i = 0; i < n; i++)
		if (ids[i] >= (uint32_t)c->vocab_size)
			return ftk_error_msg(err, FTK_EUSAGE, "token id %u is outside the vocabulary (%d)",
					     ids[i], c->vocab_size);
	int L = c->n_layers, C = c->dim, H = c->hidden_dim, NH = c->n_heads, NKV = c->n_kv_heads,
	    hd = c->head_dim;
	size_t q = (size_t)NH * hd, kv = (size_t)NKV * hd;
	if (pos == 0)
		m->kv_pos = 0;	/* a restart: nothing cached is kept when growing */
	int rc = ftk_model_kv_reserve(m, pos + n, err);
	if (rc < 0)
		return rc;
	/* a (B=1, T=n) activation set with no attention matrix */
	ensure_buffers(m, 1, n, 1);
	struct acts *a = &m->acts[0];
	int32_t *hp = m->h_idx;
	for (int i = 0; i < n; i++)
		hp[i] = pos + i;
	op->upload(be, m->pos, hp, (size_t)n * sizeof(int32_t));
	op->upload(be, m->ids, ids, (size_t)n * sizeof(uint32_t));
	float *x = m->res, *scratch = m->dec_scratch;
	op->embed(be, x, m->embed, m->ids, n, C);
	for (int l = 0; l < L; l++) {
		struct layer_w *lw = &m->layers[l];
		float *kc = m->kc + (size_t)l * m->kv_cap * kv, *vc = m->vc + (size_t)l * m->kv_cap * kv;
		op->rmsnorm_fwd(be, a->ln1, a->rstd1, x, lw->ln1, n, C, c->norm_eps);
		float *qq = c->qk_norm ? a->qraw : a->q, *kk = c->qk_norm ? a->kraw : a->k;
		proj_fwd(m, l, FTK_LORA_Q, a->ln1, qq, n, a, 0);
		proj_fwd(m, l, FTK_LORA_K, a->ln1, kk, n, a, 0);
		proj_fwd(m, l, FTK_LORA_V, a->ln1, a->v, n, a, 0);
		if (c->qk_norm) {
			op->rmsnorm_fwd(be, a->q, a->rstdq, a->qraw, lw->qn, n * NH, hd,
					c->norm_eps);
			op->rmsnorm_fwd(be, a->k, a->rstdk, a->kraw, lw->kn, n * NKV, hd,
					c->norm_eps);
		}
		op->rope(be, a->q, m->pos, m->inv_freq, n, NH, hd, 1);
		op->rope(be, a->k, m->pos, m->inv_freq, n, NKV, hd, 1);
		op->copy(be, kc + (size_t)pos * kv, a->k, (size_t)n * kv * sizeof(float));
		op->copy(be, vc + (size_t)pos * kv, a->v, (size_t)n * kv * sizeof(float));
		for (int i = 0; i < n; i++)
			op->attn_decode(be, a->atty + (size_t)i * q, a->q + (size_t)i * q, kc, vc,
					pos + i + 1, NH, NKV, hd, scratch);
		proj_fwd(m, l, FTK_LORA_O, a->atty, m->tmp, n, a, 0);
		op->add(be, x, m->tmp, (size_t)n * C);
		op->rmsnorm_fwd(be, a->ln2, a->rstd2, x, lw->ln2, n, C, c->norm_eps);
		proj_fwd(m, l, FTK_LORA_GATE, a->ln2, a->gate, n, a, 0);
		proj_fwd(m, l, FTK_LORA_UP, a->ln2, a->up, n, a, 0);
		op->swiglu_fwd(be, a->act, a->gate, a->up, (size_t)n * H);
		proj_fwd(m, l, FTK_LORA_DOWN, a->act, m->tmp, n, a, 0);
		op->add(be, x, m->tmp, (size_t)n * C);
	}
	m->kv_pos = pos + n;
	float *last = x + (size_t)(n - 1) * C;
	op->rmsnorm_fwd(be, m->lnf, m->rstdf, last, m->norm_f, 1, C, c->norm_eps);
	op->linear_fwd(be, m->logits, m->lnf, &m->head, NULL, 1);
	op->download(be, logits, m->logits, (size_t)c->vocab_size * sizeof(float));
	return 0;
}
