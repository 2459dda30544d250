/*
 * infer.c: answering chat and completion requests with a loaded model
 * (see infer.h).
 *
 * The generation loop is written out here rather than calling
 * ftk_generate(), because a server needs each token's text as soon as it is
 * final (streaming) and must stop at stop strings, which are text, not ids.
 * It uses the same ftk_model_decode and ftk_sample, so greedy output is the
 * same token for token.
 *
 * Stop strings and streaming: text that could still turn out to be the
 * start of a stop string is held back until the next token decides, so a
 * streaming client never receives part of a stop string.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "lib/chat.h"
#include "lib/tokbound.h"
#include "lib/tokenizer.h"
#include "model/adapter.h"
#include "model/device.h"
#include "model/infer.h"
#include "model/model.h"

/* The tokenizer, shared by the engines opened with ftk_infer_open_shared. */
struct tok_ref {
	atomic_int refs;
	struct ftk_tokenizer *tok;
	struct ftk_backend *be;	/* --device's instance, freed after the last model (NULL: CPU) */
};

struct ftk_infer {
	struct ftk_model *model;	/* its weights shared with the other engines' */
	struct tok_ref *tref;
	struct ftk_tokenizer *tok;	/* tref->tok, immutable (lib/tokenizer.h) */
	struct ftk_chat *chat;	/* NULL when the tokenizer has no template */
	int ctx;
	int eos[FTK_MAX_EOS + 1];
	int n_eos;
	float *logits;		/* (V) */
	int vocab;
	struct ftk_tokens toks;
	/* ftk_infer_score's context, read into the KV cache: its ids and the
	 * logits after its last token; n_cached 0 when the cache holds
	 * something else (a generation ran since) */
	uint32_t *cached;
	int n_cached;
	float *ctx_logits;	/* (V) */
	/* no tokenization of a text longer than bytes_per_token * (tokens + 1)
	 * bytes has fewer than tokens ids; 0 when the tokenizer can make one
	 * token of any number of bytes (a normalizer that deletes text) */
	size_t bytes_per_token;
	int max_seq;		/* as opened (ftk_infer_opts) */
};

/*
 * Refuse a text that no tokenization could fit in the context from its
 * length alone, before tokenizing it: the work and memory of a request then
 * grow with the context, not with what a client sends (a 60 MB prompt to a
 * 512-token context was tokenized whole: 11 s, 1.7 GB).  max_ids is the
 * most ids the caller accepts.
 */
static int check_bytes(const struct ftk_infer *e, size_t len, long max_ids, struct ftk_error *err)
{
	if (!e->bytes_per_token || len / e->bytes_per_token <= (size_t)max_ids)
		return 0;
	return ftk_error_msg(err, FTK_ELIMIT,
			     "the prompt is %zu bytes, and %ld tokens of this tokenizer hold at most %zu: it "
			     "cannot fit in the context of %d tokens",
			     len, max_ids, e->bytes_per_token * (size_t)max_ids, e->ctx);
}

/*
 * Encode a prompt of which at most max ids are accepted, into out: the
 * tokenizer stops once it has more (ftk_tokenizer_encode_max), so a prompt
 * that passes check_bytes, or one a normalizer can shrink without bound,
 * costs work and memory for max ids, not for its length.  Returns the count
 * or FTK_ELIMIT (the prompt has more than max ids) or the tokenizer's error.
 */
static long encode_limited(const struct ftk_infer *e, const char *text, size_t len, unsigned flags, long max,
			   struct ftk_tokens *out, struct ftk_error *err)
{
	long n = ftk_tokenizer_encode_max(e->tok, text, len, flags, max > 0 ? (size_t)max : 0, out, err);
	if (n > max)
		return ftk_error_msg(err, FTK_ELIMIT, "the prompt is more than %ld tokens, the context %d", max,
				     e->ctx);
	return n;
}

static int finish_open(struct ftk_infer *e, int max_seq, struct ftk_error *err);

int ftk_infer_open(struct ftk_infer **out, const struct ftk_infer_opts *o, struct ftk_error *err)
{
	struct ftk_load_opts lo;
	struct ftk_infer *e = xcalloc(1, sizeof(*e));
	int rc;
	struct ftk_tokens init = FTK_TOKENS_INIT;
	*out = NULL;
	e->toks = init;
	memset(&lo, 0, sizeof(lo));
	lo.quant = o->quant_nf4 ? FTK_QUANT_NF4 : FTK_QUANT_NONE;
	lo.threads = 1;
	lo.max_seq = o->max_seq;
	e->tref = xcalloc(1, sizeof(*e->tref));
	atomic_init(&e->tref->refs, 1);
	if (o->device && (rc = ftk_device_backend(o->device, 0, &e->tref->be, err)) < 0)
		goto fail;
	lo.backend = e->tref->be;
	if ((rc = ftk_model_load(&e->model, o->model_dir, &lo, err)) < 0)
		goto fail;
	if (o->adapter_dir) {
		struct ftk_adapter *a;
		if ((rc = ftk_adapter_load(o->adapter_dir, &a, err)) < 0)
			goto fail;
		rc = ftk_adapter_apply(e->model, a, NULL, err);
		ftk_adapter_free(a);
		if (rc < 0)
			goto fail;
	}
	if ((rc = ftk_tokenizer_load(&e->tref->tok, o->model_dir, err)) < 0)
		goto fail;
	e->tok = e->tref->tok;
	if ((rc = finish_open(e, o->max_seq, err)) < 0)
		goto fail;
	*out = e;
	return 0;
fail:
	ftk_infer_free(e);
	return rc;
}

int ftk_infer_open_shared(struct ftk_infer **out, struct ftk_infer *base, struct ftk_error *err)
{
	struct ftk_infer *e = xcalloc(1, sizeof(*e));
	struct ftk_tokens init = FTK_TOKENS_INIT;
	int rc;
	*out = NULL;
	e->toks = init;
	if ((rc = ftk_model_share(&e->model, base->model, err)) < 0)
		goto fail;
	e->tref = base->tref;
	atomic_fetch_add(&e->tref->refs, 1);
	e->tok = e->tref->tok;
	if ((rc = finish_open(e, base->max_seq, err)) < 0)
		goto fail;
	*out = e;
	return 0;
fail:
	ftk_infer_free(e);
	return rc;
}

int ftk_infer_open_n(struct ftk_infer **out, int n, const struct ftk_infer_opts *o,
		     struct ftk_error *err)
{
	for (int i = 0; i < n; i++)
		out[i] = NULL;
	int rc = n > 0 ? ftk_infer_open(&out[0], o, err) : 0;
	for (int i = 1; rc == 0 && i < n; i++)
		rc = ftk_infer_open_shared(&out[i], out[0], err);
	if (rc < 0)
		for (int i = 0; i < n; i++) {
			ftk_infer_free(out[i]);
			out[i] = NULL;
		}
	return rc;
}

const void *ftk_infer_weights_id(const struct ftk_infer *e)
{
	return ftk_model_weights_id(e->model);
}

/* The engine's own parts, once its model and tokenizer are there. */
static int finish_open(struct ftk_infer *e, int max_seq, struct ftk_error *err)
{
	int rc;
	if (ftk_tokenizer_chat_template(e->tok) &&
	    (rc = ftk_chat_open(&e->chat, e->tok, NULL, NULL, err)) < 0)
		return rc;
	e->max_seq = max_seq;
	const struct ftk_model_config *cfg = ftk_model_config(e->model);
	e->ctx = max_seq > 0 && max_seq < cfg->max_pos ? max_seq : cfg->max_pos;
	e->bytes_per_token = ftk_tokenizer_bytes_per_token(e->tok);
	e->vocab = cfg->vocab_size;
	for (int i = 0; i < cfg->n_eos; i++)
		e->eos[e->n_eos++] = cfg->eos_ids[i];
	long tid = ftk_tokenizer_special_id(e->tok, "eos");
	int have = 0;
	for (int i = 0; i < e->n_eos; i++)
		have |= e->eos[i] == tid;
	if (tid >= 0 && !have && e->n_eos < FTK_MAX_EOS + 1)
		e->eos[e->n_eos++] = (int)tid;
	e->logits = xmalloc((size_t)e->vocab * sizeof(float));
	e->ctx_logits = xmalloc((size_t)e->vocab * sizeof(float));
	e->cached = xmalloc((size_t)e->ctx * sizeof(*e->cached));
	return 0;
}

void ftk_infer_free(struct ftk_infer *e)
{
	if (!e)
		return;
	struct ftk_backend *be = NULL;	/* freed after the last model that computes on it */
	ftk_chat_free(e->chat);
	if (e->tref && atomic_fetch_sub(&e->tref->refs, 1) == 1) {
		ftk_tokenizer_free(e->tref->tok);
		be = e->tref->be;
		free(e->tref);
	}
	ftk_model_free(e->model);
	ftk_backend_free(be);
	ftk_tokens_release(&e->toks);
	free(e->logits);
	free(e->ctx_logits);
	free(e->cached);
	free(e);
}

int ftk_infer_context(const struct ftk_infer *e)
{
	return e->ctx;
}

int ftk_infer_has_chat(const struct ftk_infer *e)
{
	return e->chat != NULL;
}

void ftk_infer_result_release(struct ftk_infer_result *r)
{
	strbuf_release(&r->text);
	free(r->tokens);
	r->tokens = NULL;
	r->n_tokens = r->alloc_tokens = 0;
}

/* The earliest stop string in text[from..], as an offset, or -1. */
static long find_stop(const struct strbuf *text, size_t from, const char *const *stop, int n_stop)
{
	long best = -1;
	for (int i = 0; i < n_stop; i++) {
		size_t l = strlen(stop[i]);
		if (!l)
			continue;
		size_t s = from > l ? from - l : 0;
		const char *p = memmem(text->buf + s, text->len - s, stop[i], l);
		if (p && (best < 0 || p - text->buf < best))
			best = p - text->buf;
	}
	return best;
}

/* How much of text's tail could still grow into a stop string. */
static size_t held_back(const struct strbuf *text, const char *const *stop, int n_stop)
{
	size_t keep = 0;
	for (int i = 0; i < n_stop; i++) {
		size_t l = strlen(stop[i]);
		for (size_t k = l > 1 ? l - 1 : 0; k > keep; k--) {
			if (k <= text->len && !memcmp(text->buf + text->len - k, stop[i], k)) {
				keep = k;
				break;
			}
		}
	}
	return keep;
}

static double log_prob(const float *logits, int V, uint32_t t, uint32_t *argmax);

static int run(struct ftk_infer *e, const uint32_t *prompt, int n_prompt,
	       const struct ftk_gen_opts *g, const char *const *stop, int n_stop,
	       ftk_infer_piece_fn fn, void *ctx, struct ftk_infer_result *res, struct ftk_error *err)
{
	struct ftk_detok dt;
	struct ftk_rng rng;
	size_t emitted = 0;
	int rc, pos = n_prompt, cancelled = 0;
	strbuf_reset(&res->text);
	res->n_tokens = 0;
	res->prompt_tokens = n_prompt;
	res->completion_tokens = 0;
	res->finish_reason = "length";
	if (n_prompt < 1)
		return ftk_error_msg(err, FTK_EUSAGE, "the prompt is empty");
	if (n_prompt >= e->ctx)
		return ftk_error_msg(err, FTK_ELIMIT, "the prompt is %d tokens, the context %d", n_prompt,
				     e->ctx);
	/* the cache this request can need: its prompt and max_tokens, within the context */
	long want = (long)n_prompt + (g->max_tokens > 0 ? g->max_tokens : 0);
	e->n_cached = 0;	/* the cache is about to hold this prompt */
	if ((rc = ftk_model_kv_reserve(e->model, want < e->ctx ? (int)want : e->ctx, err)) < 0 ||
	    (rc = ftk_model_decode(e->model, prompt, n_prompt, 0, e->logits, err)) < 0)
		return rc;
	if (fn && fn(NULL, 0, ctx)) {
		res->finish_reason = "stop";
		return 0;
	}
	ftk_rng_seed(&rng, g->seed);
	ftk_detok_init(&dt, e->tok, 1);
	const int *eos = g->eos ? g->eos : e->eos;
	int n_eos = g->eos ? g->n_eos : e->n_eos;
	for (int i = 0; i < g->max_tokens; i++) {
		struct ftk_infer_token rec;
		if (res->logprobs >= 0) {	/* before sampling, which rewrites the logits */
			rec.n_top = res->logprobs < FTK_INFER_MAX_TOP ? res->logprobs : FTK_INFER_MAX_TOP;
			ftk_infer_top(e->logits, e->vocab, rec.n_top, rec.top_id, rec.top_logprob);
			memcpy(e->ctx_logits, e->logits, (size_t)e->vocab * sizeof(float));
			e->n_cached = 0;	/* ctx_logits is scratch here */
		}
		uint32_t t = ftk_sample(e->logits, e->vocab, g, &rng);
		if (res->logprobs >= 0) {
			rec.id = t;
			rec.logprob = log_prob(e->ctx_logits, e->vocab, t, NULL);
		}
		int is_eos = 0;
		for (int k = 0; k < n_eos; k++)
			is_eos |= (uint32_t)eos[k] == t;
		if (is_eos) {
			res->finish_reason = "stop";
			break;
		}
		size_t before = res->text.len;
		if ((rc = ftk_detok_push(&dt, t, &res->text, err)) < 0)
			goto out;
		res->completion_tokens++;
		if (res->logprobs >= 0) {
			FTK_ALLOC_GROW(res->tokens, (size_t)res->n_tokens + 1, res->alloc_tokens);
			res->tokens[res->n_tokens++] = rec;
		}
		long at = n_stop ? find_stop(&res->text, before, stop, n_stop) : -1;
		if (at >= 0) {
			strbuf_setlen(&res->text, (size_t)at);
			res->finish_reason = "stop";
			break;
		}
		if (fn) {
			size_t upto = res->text.len - held_back(&res->text, stop, n_stop);
			if (upto > emitted && fn(res->text.buf + emitted, upto - emitted, ctx)) {
				cancelled = 1;
				res->finish_reason = "stop";
				emitted = upto;
				break;
			}
			if (upto > emitted)
				emitted = upto;
		}
		if (pos + 1 >= e->ctx) {
			res->finish_reason = "length";
			break;
		}
		if ((rc = ftk_model_decode(e->model, &t, 1, pos++, e->logits, err)) < 0)
			goto out;
	}
	if (!cancelled && strcmp(res->finish_reason, "stop") != 0) {
		size_t l = res->text.len;
		ftk_detok_finish(&dt, &res->text);
		long at = n_stop ? find_stop(&res->text, l, stop, n_stop) : -1;
		if (at >= 0)
			strbuf_setlen(&res->text, (size_t)at);
	}
	if (fn && !cancelled && res->text.len > emitted)
		fn(res->text.buf + emitted, res->text.len - emitted, ctx);
	rc = 0;
out:
	ftk_detok_release(&dt);
	return rc;
}

int ftk_infer_chat(struct ftk_infer *e, const cJSON *messages, const cJSON *tools,
		   const struct ftk_gen_opts *g, const char *const *stop, int n_stop,
		   ftk_infer_piece_fn fn, void *ctx, struct ftk_infer_result *res,
		   struct ftk_error *err)
{
	struct ftk_render r = FTK_RENDER_INIT;
	int rc;
	if (!e->chat)
		return ftk_error_msg(err, FTK_EUNSUPPORTED, "the model's tokenizer has no chat template");
	rc = ftk_chat_render(e->chat, messages, tools, 1, &r, err);
	if (rc < 0) {
		ftk_render_release(&r);
		return rc;
	}
	if ((rc = check_bytes(e, r.text.len, e->ctx, err)) < 0) {
		ftk_render_release(&r);
		return rc;
	}
	/* run() refuses a prompt that fills the context: ctx - 1 ids at most */
	long n = encode_limited(e, r.text.buf, r.text.len, 0, (long)e->ctx - 1, &e->toks, err);
	ftk_render_release(&r);
	if (n < 0)
		return (int)n;
	return run(e, e->toks.ids, (int)n, g, stop, n_stop, fn, ctx, res, err);
}

int ftk_infer_text(struct ftk_infer *e, const char *prompt, const struct ftk_gen_opts *g,
		   const char *const *stop, int n_stop, ftk_infer_piece_fn fn, void *ctx,
		   struct ftk_infer_result *res, struct ftk_error *err)
{
	size_t len = strlen(prompt);
	int rc = check_bytes(e, len, e->ctx, err);
	if (rc < 0)
		return rc;
	long n = encode_limited(e, prompt, len, FTK_TOK_ADD_SPECIAL, (long)e->ctx - 1, &e->toks, err);
	if (n < 0)
		return (int)n;
	if (n == 0)
		return ftk_error_msg(err, FTK_EUSAGE, "the prompt is empty");
	return run(e, e->toks.ids, (int)n, g, stop, n_stop, fn, ctx, res, err);
}

const struct ftk_tokenizer *ftk_infer_tokenizer(const struct ftk_infer *e)
{
	return e->tok;
}

/*
 * log_softmax(logits)[t] in double, and the argmax (lowest id on ties).
 * Float32 logits summed in double: the only rounding left is the model's.
 */
static double log_prob(const float *logits, int V, uint32_t t, uint32_t *argmax)
{
	int best = 0;
	for (int i = 1; i < V; i++)
		if (logits[i] > logits[best])
			best = i;
	double mx = logits[best], sum = 0;
	for (int i = 0; i < V; i++)
		sum += exp((double)logits[i] - mx);
	if (argmax)
		*argmax = (uint32_t)best;
	return (double)logits[t] - mx - log(sum);
}

int ftk_infer_score(struct ftk_infer *e, const uint32_t *ids, int n, int n_ctx, double *lp,
		    uint32_t *top_id, double *top_lp, struct ftk_error *err)
{
	int rc;
	if (n_ctx < 1 || n_ctx > n)
		return ftk_error_msg(err, FTK_EUSAGE, "scoring needs a context of at least one token");
	if (n - 1 > e->ctx)
		return ftk_error_msg(err, FTK_ELIMIT, "%d tokens to score, the context is %d", n, e->ctx);
	for (int i = 0; i < n; i++)
		if (ids[i] >= (uint32_t)e->vocab)
			return ftk_error_msg(err, FTK_EUSAGE, "token id %u outside the vocabulary", ids[i]);
	if (e->n_cached != n_ctx || memcmp(e->cached, ids, (size_t)n_ctx * sizeof(*ids))) {
		e->n_cached = 0;
		if ((rc = ftk_model_decode(e->model, ids, n_ctx, 0, e->ctx_logits, err)) < 0)
			return rc;
		memcpy(e->cached, ids, (size_t)n_ctx * sizeof(*ids));
		e->n_cached = n_ctx;
	}
	const float *lg = e->ctx_logits;
	for (int j = n_ctx; j < n; j++) {
		uint32_t am;
		lp[j - n_ctx] = log_prob(lg, e->vocab, ids[j], &am);
		if (top_id)
			top_id[j - n_ctx] = am;
		if (top_lp)
			top_lp[j - n_ctx] = log_prob(lg, e->vocab, am, NULL);
		if (j + 1 < n) {	/* the next position's logits; the context stays cached */
			if ((rc = ftk_model_decode(e->model, &ids[j], 1, j, e->logits, err)) < 0) {
				e->n_cached = 0;
				return rc;
			}
			lg = e->logits;
		}
	}
	return 0;
}

void ftk_infer_top(const float *logits, int V, int k, uint32_t *top_id, double *top_lp)
{
	int n = 0;
	for (int i = 0; i < V && k > 0; i++) {
		/* insertion into the sorted top list (k <= 20: cheaper than a heap) */
		if (n == k && logits[i] <= logits[top_id[n - 1]])
			continue;
		int at = n < k ? n++ : k - 1;
		while (at > 0 && logits[top_id[at - 1]] < logits[i]) {
			top_id[at] = top_id[at - 1];
			at--;
		}
		top_id[at] = (uint32_t)i;
	}
	for (int j = 0; j < n; j++)
		top_lp[j] = log_prob(logits, V, top_id[j], NULL);
}

int ftk_infer_ids(struct ftk_infer *e, const uint32_t *ids, int n, const struct ftk_gen_opts *g,
		  const char *const *stop, int n_stop, ftk_infer_piece_fn fn, void *ctx,
		  struct ftk_infer_result *res, struct ftk_error *err)
{
	for (int i = 0; i < n; i++)
		if (ids[i] >= (uint32_t)e->vocab)
			return ftk_error_msg(err, FTK_EUSAGE, "token id %u outside the vocabulary (%d)", ids[i],
					     e->vocab);
	return run(e, ids, n, g, stop, n_stop, fn, ctx, res, err);
}

long ftk_infer_encode_prompt(struct ftk_infer *e, const char *prompt, struct ftk_tokens *out,
			     struct ftk_error *err)
{
	size_t len = strlen(prompt);
	/* scoring reads one id more than the context (its last is never fed) */
	int rc = check_bytes(e, len, (long)e->ctx + 1, err);
	if (rc < 0)
		return rc;
	return encode_limited(e, prompt, len, FTK_TOK_ADD_SPECIAL, (long)e->ctx + 1, out, err);
}
