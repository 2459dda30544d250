/*
 * estimate.c: what a training run will cost, before it runs (see cost.h).
 *
 * The arithmetic is the usual one for transformers: a forward pass costs two
 * FLOPs (a multiply and an add) per weight that multiplies an activation, per
 * token; the backward pass costs twice that, once for the gradient with
 * respect to the inputs and once for the gradient with respect to the
 * weights.  Hence 6·N·D for full training over D tokens.
 *
 * LoRA and QLoRA freeze the base weights.  The forward pass is unchanged
 * (2·N·D), and the backward pass still has to carry gradients through every
 * frozen layer to reach the adapters below it (2·N·D), but it computes no
 * weight gradients for them.  The adapters are ordinary trainable weights,
 * 6·N_lora·D, which is small next to the rest (well under 1% at the usual
 * ranks).  In total 4·N·D + 6·N_lora·D: two thirds of full training.  QLoRA's
 * dequantization of the NF4 weights and activation recomputation (gradient
 * checkpointing) cost real time but few counted FLOPs; they show up in the
 * MFU, which is why a calibrated MFU beats a guessed one.
 *
 * N here counts the weights that multiply activations: the projections, the
 * MLP and the output head (even when tied, the head is a matmul).  The
 * embedding lookup, the norms and the biases do no matmul work.  Attention
 * scores (QKᵀ and the weighted sum of V) add about 4·layers·seq·dim FLOPs per
 * token forward; for fine-tuning sequences (a few thousand tokens) on models
 * of a few billion parameters that is a few percent, and it is left out and
 * said so in the printed assumptions.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "ledger/cost.h"
#include "lib/json.h"
#include "lib/shard.h"
#include "lib/stream.h"
#include "model/config.h"

int ftk_cost_model_load(const char *path, struct ftk_cost_model *m, struct ftk_error *err)
{
	struct ftk_model_config c;
	memset(m, 0, sizeof(*m));
	int rc = ftk_config_load(path, &c, err);
	if (rc < 0)
		return rc;
	snprintf(m->model_type, sizeof(m->model_type), "%s", c.model_type);
	m->vocab = c.vocab_size;
	m->dim = c.dim;
	m->hidden = c.hidden_dim;
	m->layers = c.n_layers;
	m->heads = c.n_heads;
	m->kv_heads = c.n_kv_heads;
	m->head_dim = c.head_dim;
	m->tied = c.tie_embeddings;
	m->qkv_bias = c.qkv_bias;
	m->qk_norm = c.qk_norm;
	long long d = m->dim, q = m->heads * m->head_dim, kv = m->kv_heads * m->head_dim;
	m->n_params = ftk_config_n_params(&c);
	m->n_embed = m->vocab * d;
	m->n_matmul = m->layers * (d * q + 2 * d * kv + q * d + 3 * d * m->hidden) + m->vocab * d;
	return 0;
}

long long ftk_cost_lora_params(const struct ftk_cost_model *m, int rank, const char *targets)
{
	long long d = m->dim, q = m->heads * m->head_dim, kv = m->kv_heads * m->head_dim;
	struct { const char *name, *short_name; long long in, out; } mods[] = {
		{ "q_proj", "q", d, q }, { "k_proj", "k", d, kv }, { "v_proj", "v", d, kv },
		{ "o_proj", "o", q, d }, { "gate_proj", "gate", d, m->hidden },
		{ "up_proj", "up", d, m->hidden }, { "down_proj", "down", m->hidden, d },
	};
	unsigned used = 0;	/* a module named twice is adapted once */
	const char *p = targets;
	while (*p) {
		size_t n = strcspn(p, ",");
		size_t i;
		unsigned add = 0;
#define IS(w) (strlen(w) == n && !strncmp(p, w, n))
		if (IS("all-linear") || IS("all"))
			add = 0x7f;
		else if (IS("attn"))
			add = 0x0f;
		else if (IS("mlp"))
			add = 0x70;
		for (i = 0; !add && i < FTK_ARRAY_SIZE(mods); i++)
			if (IS(mods[i].name) || IS(mods[i].short_name))
				add = 1u << i;
#undef IS
		if (!add)
			return -1;
		used |= add;
		p += n;
		if (*p == ',')
			p++;
	}
	long long per_layer = 0;
	for (size_t i = 0; i < FTK_ARRAY_SIZE(mods); i++)
		if (used & (1u << i))
			per_layer += (mods[i].in + mods[i].out) * rank;
	return per_layer * m->layers;
}

int ftk_cost_shard_tokens(const char *dir, long seq_len, double *tokens, double *kept,
			  long *n_cut, struct ftk_error *err)
{
	struct ftk_shard_reader *r;
	struct ftk_seq seq;
	int rc = ftk_shard_open(&r, dir, err);
	if (rc < 0)
		return rc;
	*tokens = *kept = 0;
	*n_cut = 0;
	while ((rc = ftk_shard_next(r, &seq, err)) > 0) {
		*tokens += seq.len;
		if (seq_len > 0 && seq.len > (uint32_t)seq_len) {
			*kept += (double)seq_len;
			(*n_cut)++;
		} else {
			*kept += seq.len;
		}
	}
	ftk_shard_close(r);
	return rc < 0 ? rc : 0;
}

double ftk_cost_train_flops(const struct ftk_cost_model *m, long long n_lora, double tokens, int full)
{
	double n = (double)m->n_matmul;
	if (full)
		return 6.0 * n * tokens;
	return 4.0 * n * tokens + 6.0 * (double)n_lora * tokens;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double num(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

int ftk_cost_calibrate_tps(const char *run_dir, double *tps, int *steps, struct ftk_error *err)
{
	char file[4096];
	struct stat st;
	if (stat(run_dir, &st) == 0 && S_ISDIR(st.st_mode))
		snprintf(file, sizeof(file), "%s/metrics.jsonl", run_dir);
	else
		snprintf(file, sizeof(file), "%s", run_dir);
	if (stat(file, &st) < 0)
		return ftk_error_set(err, FTK_ENOTFOUND, file, 0, NULL, "no metrics at '%s'", file);
	struct ftk_reader *r;
	struct ftk_line line;
	int rc = ftk_reader_open(&r, file, err);
	if (rc < 0)
		return rc;
	double *v = NULL;
	size_t n = 0, alloc = 0;
	long bad = 0, first_bad = 0, n_cum = 0;
	double tok0 = NAN, el0 = NAN, tok1 = NAN, el1 = NAN;
	while ((rc = ftk_reader_next(r, &line, err)) > 0) {
		cJSON *o;
		if (line.len == 0)
			continue;
		if (ftk_json_parse_object(line.data, line.len, &o, NULL) < 0) {
			/* a run killed mid-line leaves a torn last line: not a reason to refuse */
			if (!bad++)
				first_bad = line.lineno;
			continue;
		}
		double x = num(o, "tokens_per_s"), tok = num(o, "tokens"), el = num(o, "elapsed");
		cJSON_Delete(o);
		if (!isnan(tok) && !isnan(el) && (isnan(el1) || (el > el1 && tok >= tok1))) {
			if (n_cum++ == 0) {
				tok0 = tok;
				el0 = el;
			}
			tok1 = tok;
			el1 = el;
		}
		if (isnan(x) || x <= 0)
			continue;
		FTK_ALLOC_GROW(v, n + 1, alloc);
		v[n++] = x;
	}
	ftk_reader_close(r);
	if (rc < 0) {
		free(v);
		return rc;
	}
	if (n_cum >= 2) {
		/* from the end of the first step (warm-up) to the end of the last */
		*tps = (tok1 - tok0) / (el1 - el0);
		*steps = (int)n_cum - 1;
		free(v);
		return 0;
	}
	if (!n) {
		free(v);
		if (bad)
			return ftk_error_set(err, FTK_EDATA, file, first_bad, NULL,
					     "no steps with tokens_per_s, or tokens and elapsed (%ld invalid lines)",
					     bad);
		return ftk_error_set(err, FTK_EDATA, file, 0, NULL,
				     "no steps with tokens_per_s, or tokens and elapsed");
	}
	double *s = v;
	size_t k = n;
	if (k > 2) {	/* the first step pays for warm-up (allocation, caches) */
		s++;
		k--;
	}
	qsort(s, k, sizeof(*s), cmp_double);
	*tps = k % 2 ? s[k / 2] : (s[k / 2 - 1] + s[k / 2]) / 2;
	*steps = (int)k;
	free(v);
	return 0;
}
