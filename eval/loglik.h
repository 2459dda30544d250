/*
 * loglik.h: scoring by log-likelihood, as lm-evaluation-harness does.
 *
 * A multiple-choice case is scored without generating anything: each choice
 * is a continuation of the case's context, and its score is the sum of its
 * tokens' log-probabilities given the context (the harness's
 * `loglikelihood` request).  The right choice wins when its score is the
 * highest:
 *
 *   acc       argmax of the summed log-probabilities is the answer
 *   acc_norm  argmax of the sum divided by the choice's length in characters
 *             (Unicode code points of the choice text without the leading
 *             delimiter: the harness's len(choice) on a Python str)
 *   mc2       truthfulqa_mc2: the true choices are those before the first
 *             label 0; p = exp(ll); score = sum p(true) / sum p(all)
 *
 * The token boundary, as the harness's `_encode_pair`: trailing whitespace
 * of the context moves to the front of the continuation; the context is
 * encoded alone, context + continuation whole, and the continuation's
 * tokens are the whole encoding past the context's length (so a token that
 * would merge across the boundary is split as the harness splits it).  The
 * model reads BOS + context tokens + continuation tokens when the tokenizer
 * adds a BOS (as the model was trained and as a completions server
 * tokenizes a prompt; the harness's HF backend adds it with
 * add_bos_token=True), and an empty context is the BOS alone.  When the
 * whole is longer than the model's context the oldest tokens are dropped
 * (the harness's left truncation); a continuation longer than the model's
 * context is an error.
 *
 * `loglikelihood_rolling` (perplexity of a text): every token of BOS + text
 * is predicted from the tokens before it, in windows of at most the
 * model's context, each window reading the max-context tokens before its
 * last one (the harness's rolling windows with context length 1).
 *
 * Backends are a table of one operation (score a list of token ids given
 * how many are context), so the local model and an OpenAI-compatible
 * /v1/completions server (echo, logprobs) give the same numbers from the
 * same ids.
 */
#ifndef FTK_EVAL_LOGLIK_H
#define FTK_EVAL_LOGLIK_H

#include <stdint.h>
#include "eval/run.h"
#include "eval/suite.h"
#include "lib/err.h"
#include "lib/tokenizer.h"

struct ftk_infer;

/* One continuation's score. */
struct ftk_loglik {
	double ll;		/* sum of log-probabilities, natural log */
	int greedy;		/* every token was the argmax */
	int n_tokens;		/* the continuation's tokens */
};

/*
 * The ids the model reads for (context, continuation): *ids (caller frees),
 * *n ids of which the first *n_ctx are context (BOS included).  max_len:
 * the model's context (tokens it can read, n - 1 <= max_len after left
 * truncation).  Returns 0, FTK_ELIMIT (the continuation alone does not
 * fit), or the tokenizer's error.
 */
int ftk_loglik_encode(const struct ftk_tokenizer *tok, const char *context, const char *cont,
		      int max_len, uint32_t **ids, int *n, int *n_ctx, struct ftk_error *err);

/* Score one (context, continuation) with a local engine. */
int ftk_loglik_local(struct ftk_infer *e, const char *context, const char *cont,
		     struct ftk_loglik *out, struct ftk_error *err);

/* Rolling log-likelihood of text with a local engine: *ll and *n_tokens. */
int ftk_loglik_rolling_local(struct ftk_infer *e, const char *text, double *ll, long *n_tokens,
			     struct ftk_error *err);

/*
 * The metrics of one multiple-choice case from its choices' scores: fills
 * scores (an object) with acc, acc_norm and, when labels is given, mc2.
 * choices: the case's array of strings.  *pred and *pred_norm get the
 * argmaxes (first on ties, as numpy's argmax).
 */
void ftk_loglik_mc_scores(const struct ftk_loglik *ll, const cJSON *choices, int answer,
			  const cJSON *labels, cJSON *scores, int *pred, int *pred_norm);

/*
 * Run a multiple_choice or loglikelihood_rolling suite (ftk_eval_run hands
 * such suites here): results.jsonl with each case's per-choice scores and
 * metrics, run.json, summary.json.  Backends: local (--model-dir), or an
 * OpenAI-compatible /v1/completions server that implements echo and
 * logprobs (--endpoint, with --tokenizer for the ids; multiple choice
 * only).  Returns 0 or a negative code as ftk_eval_run.
 */
int ftk_eval_loglik_run(const struct ftk_eval_run_opts *o, const struct ftk_eval_suite *s,
			struct ftk_eval_run_stats *st, struct ftk_error *err);

#endif
