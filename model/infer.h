/*
 * infer.h: a model ready to answer requests, for the programs that serve or
 * evaluate one (ftk-serve, ftk-eval's local backend).
 *
 * An engine bundles what answering a chat needs: the model (with an adapter
 * applied when one is given), its tokenizer and its chat template.  A request
 * renders the messages with the template (add_generation_prompt on), encodes
 * them without adding special tokens (the template wrote the BOS), generates
 * with the sampling options, stops at the model's end-of-sequence ids, at a
 * stop string, or at max_tokens, and decodes the new tokens.  Tokens can be
 * streamed to a callback as their text becomes final.
 *
 * Concurrency: an engine holds one KV cache (the model's), so it answers one
 * request at a time.  A server or an eval that answers several at once opens
 * one engine and then one more per extra worker with ftk_infer_open_shared:
 * those share the weights (base model and adapter) and the tokenizer, all
 * read-only, and each holds only its own KV cache, activations, scratch and
 * chat template; they share nothing mutable.
 */
#ifndef FTK_MODEL_INFER_H
#define FTK_MODEL_INFER_H

#include <cjson/cJSON.h>
#include "lib/err.h"
#include "lib/strbuf.h"
#include "lib/tokenizer.h"
#include "model/generate.h"

struct ftk_infer;

struct ftk_infer_opts {
	const char *model_dir;	/* Hugging Face model directory */
	const char *adapter_dir;	/* PEFT adapter directory, or NULL */
	int quant_nf4;		/* 1: quantize the base to NF4 as training does */
	int max_seq;		/* 0: the model's context */
	const char *device;	/* "cpu" (or NULL) or "cuda" (model/device.h) */
};

/*
 * Load the model, apply the adapter, load the tokenizer and prepare the chat
 * template (a tokenizer without one can still serve raw completions).
 * Returns 0 and *out (free with ftk_infer_free) or the loader's error.
 */
int ftk_infer_open(struct ftk_infer **out, const struct ftk_infer_opts *o, struct ftk_error *err);
void ftk_infer_free(struct ftk_infer *e);

/*
 * Another engine on base's model: the weights (ftk_model_share: base, NF4 or
 * float32, and the adapter) and the tokenizer are shared with base, not
 * loaded again; the KV cache, activations, scratch and chat template are
 * its own.  The engines may then run on different threads at once, one
 * request each.  Free each with ftk_infer_free, in any order: the shared
 * parts go with the last.  Returns 0 and *out, or the template's error.
 */
int ftk_infer_open_shared(struct ftk_infer **out, struct ftk_infer *base, struct ftk_error *err);
/*
 * n engines on one model: out[0] opened with ftk_infer_open, the others
 * shared from it.  Returns 0 with out[0..n) set (free each), or the error
 * with none left open.
 */
int ftk_infer_open_n(struct ftk_infer **out, int n, const struct ftk_infer_opts *o,
		     struct ftk_error *err);
/* The identity of e's weights: equal for two engines exactly when they share them. */
const void *ftk_infer_weights_id(const struct ftk_infer *e);

/* The model's context length in tokens. */
int ftk_infer_context(const struct ftk_infer *e);
/* 1 when the tokenizer has a chat template. */
int ftk_infer_has_chat(const struct ftk_infer *e);

#define FTK_INFER_MAX_TOP 20

/* One generated token with its log-probability and the most likely alternatives. */
struct ftk_infer_token {
	uint32_t id;
	double logprob;			/* natural log, before temperature and truncation */
	int n_top;
	uint32_t top_id[FTK_INFER_MAX_TOP];	/* most likely first */
	double top_logprob[FTK_INFER_MAX_TOP];
};

struct ftk_infer_result {
	struct strbuf text;		/* the generated text */
	int prompt_tokens;
	int completion_tokens;
	const char *finish_reason;	/* "stop" (EOS or a stop string) or "length" */
	/* set logprobs >= 0 (at most FTK_INFER_MAX_TOP) before the call to have
	 * every generated token recorded with that many alternatives (OpenAI's
	 * logprobs / top_logprobs); -1 (the default) records nothing */
	int logprobs;
	struct ftk_infer_token *tokens;	/* n_tokens of them, owned */
	int n_tokens, alloc_tokens;
};
#define FTK_INFER_RESULT_INIT { STRBUF_INIT, 0, 0, NULL, -1, NULL, 0, 0 }
void ftk_infer_result_release(struct ftk_infer_result *r);

/*
 * Called once with (NULL, 0) when the prompt has been accepted (it fits and
 * was read into the cache), then with each piece of text as it becomes
 * final.  Return non-zero to stop generating (a client that went away); the
 * result is then what was made so far, with finish_reason "stop".
 */
typedef int (*ftk_infer_piece_fn)(const char *text, size_t len, void *ctx);

/*
 * Answer a chat: messages (array, borrowed), tools (array or NULL).  stop:
 * n_stop strings that end generation (not included in the text).  res is
 * filled (res->text reset first).  Returns 0, FTK_EUNSUPPORTED (no chat
 * template), FTK_ELIMIT ("the prompt is 700 tokens, the context 512"; or,
 * for a text so long that no tokenization of it could fit, "the prompt is
 * 60000000 bytes, and 512 tokens of this tokenizer hold at most 4608: ...",
 * found from its length before any tokenizing), or a
 * template error (FTK_EDATA).
 */
int ftk_infer_chat(struct ftk_infer *e, const cJSON *messages, const cJSON *tools,
		   const struct ftk_gen_opts *g, const char *const *stop, int n_stop,
		   ftk_infer_piece_fn fn, void *ctx, struct ftk_infer_result *res,
		   struct ftk_error *err);

/*
 * Complete raw text: BOS (when the tokenizer adds one) plus the text, as the
 * original stories260K implementation does.  Otherwise as ftk_infer_chat.
 */
int ftk_infer_text(struct ftk_infer *e, const char *prompt, const struct ftk_gen_opts *g,
		   const char *const *stop, int n_stop, ftk_infer_piece_fn fn, void *ctx,
		   struct ftk_infer_result *res, struct ftk_error *err);

/*
 * Complete a prompt given as token ids (used as they are: nothing is added),
 * as an OpenAI completions request whose prompt is an array of ids.  n >= 1.
 * g->max_tokens may be 0 (score the prompt only: finish_reason "length").
 * Otherwise as ftk_infer_chat.
 */
int ftk_infer_ids(struct ftk_infer *e, const uint32_t *ids, int n, const struct ftk_gen_opts *g,
		  const char *const *stop, int n_stop, ftk_infer_piece_fn fn, void *ctx,
		  struct ftk_infer_result *res, struct ftk_error *err);

/*
 * The ids ftk_infer_text reads for prompt (BOS first when the tokenizer adds
 * one), into out (reset first).  Returns the count, FTK_ELIMIT when the
 * prompt has more ids than the context + 1 (the most scoring reads; the
 * tokenizer stops there), or the tokenizer's error.
 */
long ftk_infer_encode_prompt(struct ftk_infer *e, const char *prompt, struct ftk_tokens *out,
			     struct ftk_error *err);

/*
 * The k most likely tokens of a distribution, from logits (V floats): ids
 * and log-probabilities into top_id/top_lp (k <= FTK_INFER_MAX_TOP), most
 * likely first (lowest id on ties).
 */
void ftk_infer_top(const float *logits, int V, int k, uint32_t *top_id, double *top_lp);

/* The engine's tokenizer (borrowed, lives as long as the engine). */
const struct ftk_tokenizer *ftk_infer_tokenizer(const struct ftk_infer *e);

/*
 * Score tokens: for j in [n_ctx, n), lp[j - n_ctx] = log p(ids[j] | ids[0..j)),
 * natural log, computed in double from the model's float logits.  top_id and
 * top_lp (may be NULL) get the most likely token at each of those positions
 * and its log-probability (greedy iff top_id[k] == ids[n_ctx + k]).  The
 * context ids[0..n_ctx) is read once into the KV cache and kept: a next call
 * with the same context (the other choices of a multiple-choice question)
 * reads only its own continuation.  n_ctx >= 1 (the first token is never
 * scored: give a BOS).  Returns 0, FTK_ELIMIT (n - 1 over the context),
 * FTK_EUSAGE (bad id, no context).
 */
int ftk_infer_score(struct ftk_infer *e, const uint32_t *ids, int n, int n_ctx, double *lp,
		    uint32_t *top_id, double *top_lp, struct ftk_error *err);

#endif
