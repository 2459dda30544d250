/*
 * generate.h: sampling tokens from a model with its KV cache.
 *
 * One sequence at a time: the prompt is fed in one ftk_model_decode call
 * (filling the cache), then one token per step.  Sampling, in order:
 * temperature 0 means greedy (argmax, lowest id on ties); otherwise logits
 * are divided by the temperature, cut to the top-k (k > 0), softmaxed, cut
 * to the smallest set whose probability reaches top-p (p < 1, the most
 * likely token always kept), renormalised and drawn with a seeded
 * xoshiro256** generator (rng.h), so the same seed gives the same text.
 * Generation stops at an end-of-sequence id (not included in the output),
 * after max_tokens new tokens, or when the model's context is full.
 */
#ifndef FTK_MODEL_GENERATE_H
#define FTK_MODEL_GENERATE_H

#include <stdint.h>
#include "lib/err.h"
#include "model/model.h"
#include "model/rng.h"

struct ftk_gen_opts {
	float temperature;	/* 0: greedy */
	int top_k;		/* 0: off */
	float top_p;		/* 1: off */
	uint64_t seed;
	int max_tokens;		/* new tokens at most */
	const int *eos;		/* ids that stop generation; NULL: the config's eos ids */
	int n_eos;
};

/* Defaults: greedy, top_k 0, top_p 1, seed 0, max_tokens 256, config eos. */
void ftk_gen_opts_default(struct ftk_gen_opts *o);

struct ftk_openai_gen;
/*
 * o's sampler settings from an OpenAI request's (lib/openai.h): temperature,
 * top_p, top_k, max_tokens, and seed when the request has one.  Stop strings,
 * n and stream are the caller's business.
 */
void ftk_gen_opts_from_openai(struct ftk_gen_opts *o, const struct ftk_openai_gen *g);

enum ftk_gen_stop { FTK_STOP_EOS = 0, FTK_STOP_LENGTH = 1, FTK_STOP_CONTEXT = 2 };

/*
 * Generate after prompt[0..n_prompt) (n_prompt >= 1).  New tokens go to
 * out (capacity cap >= o->max_tokens), their count to *n_out, the reason to
 * *stop (may be NULL).  Returns 0 or FTK_EUSAGE (empty or too long prompt,
 * bad id).
 */
int ftk_generate(struct ftk_model *m, const uint32_t *prompt, int n_prompt,
		 const struct ftk_gen_opts *o, uint32_t *out, int cap, int *n_out,
		 enum ftk_gen_stop *stop, struct ftk_error *err);

/*
 * Pick the next token from logits (V floats, modified in place) with the
 * options' sampling rule and the generator rng (advanced).  Exposed for
 * tests.
 */
uint32_t ftk_sample(float *logits, int V, const struct ftk_gen_opts *o, struct ftk_rng *rng);

#endif
