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
 * request at a time.  A server that answers several at once opens one engine
 * per worker; they share nothing mutable.
 */
#ifndef FTK_MODEL_INFER_H
#define FTK_MODEL_INFER_H

#include <cjson/cJSON.h>
#include "lib/err.h"
#include "lib/strbuf.h"
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

/* The model's context length in tokens. */
int ftk_infer_context(const struct ftk_infer *e);
/* 1 when the tokenizer has a chat template. */
int ftk_infer_has_chat(const struct ftk_infer *e);

struct ftk_infer_result {
	struct strbuf text;		/* the generated text */
	int prompt_tokens;
	int completion_tokens;
	const char *finish_reason;	/* "stop" (EOS or a stop string) or "length" */
};
#define FTK_INFER_RESULT_INIT { STRBUF_INIT, 0, 0, NULL }
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
 * template), FTK_ELIMIT ("the prompt is 700 tokens, the context 512"), or a
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

#endif
