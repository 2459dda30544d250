/*
 * generate.c: sampling with the KV cache (see generate.h for the rules).
 *
 * The order of the cuts follows Hugging Face's logits warpers (temperature,
 * then top-k, then top-p) so a seeded run here and there differ only by the
 * random stream, not by the rule.
 */
#include "model/generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "lib/openai.h"

void ftk_gen_opts_default(struct ftk_gen_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->top_p = 1.0f;
	o->max_tokens = 256;
}

void ftk_gen_opts_from_openai(struct ftk_gen_opts *o, const struct ftk_openai_gen *g)
{
	o->temperature = (float)g->temperature;
	o->top_p = (float)g->top_p;
	o->top_k = g->top_k;
	o->max_tokens = (int)g->max_tokens;
	if (g->has_seed)
		o->seed = g->seed;
}

struct cand {
	float p;
	uint32_t id;
};

static int cmp_cand(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	if (x->p != y->p)
		return x->p > y->p ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

uint32_t ftk_sample(float *logits, int V, const struct ftk_gen_opts *o, struct ftk_rng *rng)
{
	if (o->temperature <= 0.0f) {
		int best = 0;
		for (int i = 1; i < V; i++)
			if (logits[i] > logits[best])
				best = i;
		return (uint32_t)best;
	}
	struct cand *c = malloc((size_t)V * sizeof(*c));
	if (!c)
		abort();
	for (int i = 0; i < V; i++) {
		c[i].p = logits[i] / o->temperature;
		c[i].id = (uint32_t)i;
	}
	qsort(c, (size_t)V, sizeof(*c), cmp_cand);
	int n = V;
	if (o->top_k > 0 && o->top_k < n)
		n = o->top_k;
	double mx = c[0].p, sum = 0.0;
	for (int i = 0; i < n; i++)
		sum += exp((double)c[i].p - mx);
	double *p = malloc((size_t)n * sizeof(double));
	if (!p)
		abort();
	for (int i = 0; i < n; i++)
		p[i] = exp((double)c[i].p - mx) / sum;
	if (o->top_p < 1.0f) {
		double cum = 0.0;
		int keep = n;
		for (int i = 0; i < n; i++) {
			cum += p[i];
			if (cum >= o->top_p) {
				keep = i + 1;
				break;
			}
		}
		n = keep;
	}
	double tot = 0.0;
	for (int i = 0; i < n; i++)
		tot += p[i];
	double u = ftk_rng_uniform(rng) * tot, acc = 0.0;
	uint32_t pick = c[n - 1].id;
	for (int i = 0; i < n; i++) {
		acc += p[i];
		if (u < acc) {
			pick = c[i].id;
			break;
		}
	}
	free(p);
	free(c);
	return pick;
}

int ftk_generate(struct ftk_model *m, const uint32_t *prompt, int n_prompt,
		 const struct ftk_gen_opts *o, uint32_t *out, int cap, int *n_out,
		 enum ftk_gen_stop *stop, struct ftk_error *err)
{
	const struct ftk_model_config *c = ftk_model_config(m);
	int V = c->vocab_size;
	*n_out = 0;
	if (n_prompt < 1)
		return ftk_error_msg(err, FTK_EUSAGE, "empty prompt");
	float *logits = malloc((size_t)V * sizeof(float));
	if (!logits)
		abort();
	int rc = ftk_model_decode(m, prompt, n_prompt, 0, logits, err);
	if (rc < 0) {
		free(logits);
		return rc;
	}
	struct ftk_rng rng;
	ftk_rng_seed(&rng, o->seed);
	const int *eos = o->eos ? o->eos : c->eos_ids;
	int n_eos = o->eos ? o->n_eos : c->n_eos;
	int pos = n_prompt;
	enum ftk_gen_stop why = FTK_STOP_LENGTH;
	int limit = o->max_tokens < cap ? o->max_tokens : cap;
	while (*n_out < limit) {
		uint32_t tok = ftk_sample(logits, V, o, &rng);
		int is_eos = 0;
		for (int i = 0; i < n_eos; i++)
			is_eos |= (int)tok == eos[i];
		if (is_eos) {
			why = FTK_STOP_EOS;
			break;
		}
		out[(*n_out)++] = tok;
		if (*n_out >= limit)
			break;
		if (ftk_model_decode(m, &tok, 1, pos, logits, NULL) < 0) {
			why = FTK_STOP_CONTEXT;
			break;
		}
		pos++;
	}
	if (stop)
		*stop = why;
	free(logits);
	return 0;
}
