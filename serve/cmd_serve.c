/*
 * cmd_serve.c: ftk-serve, an OpenAI-compatible server for a model and its
 * adapters, so a fresh adapter is evaluated over the same protocol as vLLM
 * or a hosted API.
 * summary: serve a model and its adapters over the OpenAI chat completions API
 *
 * Design.  libmicrohttpd runs a thread per connection; those threads parse
 * and check requests and wait.  Inference happens in a fixed pool of
 * --workers threads that take jobs from one bounded queue, each worker with
 * its own engines (one per served model name: the base and each adapter), so
 * requests never share a KV cache; a model's weights are loaded once and
 * shared by every worker's engine for it (ftk_infer_open_shared).  A full queue answers 503 at once rather
 * than letting latency grow without bound.
 *
 * Streaming.  A worker appends server-sent events to the job's buffer and
 * signals; the connection thread's content reader waits for them.  When the
 * client goes away, libmicrohttpd frees the response, which marks the job
 * cancelled; the worker's token callback sees it and stops, freeing the
 * worker for the next job.
 *
 * Log-probabilities, in OpenAI's shapes: /v1/completions takes "logprobs"
 * (0-20 alternatives per token) and "echo" (the prompt comes back before the
 * completion, with its tokens' log-probabilities, the first null), and a
 * prompt given as an array of token ids (used as given); "max_tokens": 0
 * with echo scores the prompt without generating, which is how
 * lm-evaluation-harness's local-completions backend asks for a
 * log-likelihood.  Chat completions take "logprobs": true and
 * "top_logprobs" (0-20) for the generated tokens.  An echoed prompt
 * token's top_logprobs hold the most likely token and the prompt's own;
 * logprobs are not streamed (a streamed request asking for them gets 400).
 *
 * Tool calls.  When a chat request has tools, the model's text is read for
 * calls in the served template's format (lib/toolparse.h: Hermes/Qwen
 * <tool_call>, Llama 3 JSON, Mistral [TOOL_CALLS]; --tool-parser names one
 * when the template does not say): found calls become message.tool_calls
 * with finish_reason "tool_calls", as vLLM's tool parsers give them.  A
 * stream holds back text from where a call may begin, then sends each call as
 * tool_calls deltas (the name first, then the arguments).  A request with
 * tools for a template that does not render them gets a "warnings" entry in
 * the response and a line in the log.
 *
 * Errors follow OpenAI's shape: {"error":{"message","type","param","code"}}
 * with 400 for malformed or invalid requests (including a prompt longer than
 * the context: code context_length_exceeded), 401 for a missing or wrong API
 * key, 404 for an unknown model or path, 405 for a wrong method, 503 when busy.
 */
#include <errno.h>
#include <arpa/inet.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <poll.h>
#include <sys/socket.h>
#include "cli/parse-options.h"
#include "cli/tool.h"
#include "lib/json.h"
#include "lib/toolparse.h"
#include "lib/openai.h"
#include "lib/stream.h"
#include "model/infer.h"
#include "model/generate.h"
#include "serve/request.h"

static const char *const usage[] = {
	"ftk-serve --model DIR [options]", "",
	"Serve a model (and adapters) over the OpenAI API: POST /v1/chat/completions,",
	"POST /v1/completions, GET /v1/models, GET /health.", NULL,
};

#define MAX_MODELS 16
#define MAX_STOP FTK_OPENAI_MAX_STOP

struct served {
	char *name;
	const char *adapter;	/* NULL for the base */
};

struct job {
	int chat;			/* 1: chat completions, 0: completions */
	int model;			/* index into served */
	cJSON *req;			/* owned */
	int stream;
	int n;
	struct ftk_gen_opts g;
	const char *stop[MAX_STOP];
	int n_stop;
	int logprobs;			/* alternatives per token; -1: no logprobs */
	int echo;			/* completions: the prompt comes back first */
	int zero_tokens;		/* completions: max_tokens 0 (with echo) */
	int toolfmt;			/* chat with tools: the calls' format (lib/toolparse.h), else 0 */
	char *warning;			/* for the response's "warnings", or NULL (owned) */
	uint32_t *prompt_ids;		/* completions given token ids (owned), else NULL */
	int n_prompt_ids;
	char id[48];
	long created;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	int started;			/* the prompt was accepted (or failed) */
	int done;
	int cancelled;
	int status;			/* HTTP status for an error, 0 for success */
	struct strbuf out;		/* the response body, or pending SSE bytes */
	size_t sent;
	int refs;			/* worker + connection */
	int prompt_tokens, completion_tokens;
	double t0;

	struct job *next;
};

struct server {
	struct served models[MAX_MODELS];
	int n_models;
	const char *model_dir;
	int quant_nf4, ctx;
	int n_workers, queue_max;
	struct ftk_infer ***engines;	/* [worker][model] */
	const char *api_key;
	int quiet;
	int toolfmt;			/* --tool-parser, or the template's; -1: not given */
	int template_has_tools;		/* the chat template reads "tools" */
	int max_conn;			/* --max-connections */
	int max_conn_ip;		/* --max-connections-per-ip; 0: min(16, max_conn) */
	uint64_t max_body;		/* --max-body */
	unsigned read_timeout;		/* --read-timeout, seconds */
	double deadline;		/* --request-deadline, seconds */

	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *head, *tail;
	int queued;
	int stopping;
	long next_id;
};

static struct server S;
static volatile sig_atomic_t got_signal;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void job_unref(struct job *j)
{
	pthread_mutex_lock(&j->mu);
	int left = --j->refs;
	pthread_mutex_unlock(&j->mu);
	if (left)
		return;
	cJSON_Delete(j->req);
	free(j->prompt_ids);
	free(j->warning);
	strbuf_release(&j->out);
	pthread_mutex_destroy(&j->mu);
	pthread_cond_destroy(&j->cv);
	free(j);
}

static void error_body(struct strbuf *sb, const char *msg, const char *type, const char *param,
		       const char *code)
{
	strbuf_reset(sb);
	ftk_serve_error_body(sb, msg, strlen(msg), type, param, code);
}

/* ------------------------------------------------------------ workers */

struct piece_ctx {
	struct job *j;
	int index;
	struct strbuf acc;	/* tool calls in a stream: the text so far */
	size_t shown;		/* of which this much was sent as content */
};

/* One chunk with an arbitrary delta (consumed) for choice index. */
static void sse_delta(struct job *j, int index, cJSON *delta, const char *finish)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "id", j->id);
	cJSON_AddStringToObject(o, "object", "chat.completion.chunk");
	cJSON_AddNumberToObject(o, "created", (double)j->created);
	cJSON_AddStringToObject(o, "model", S.models[j->model].name);
	cJSON *c = cJSON_CreateObject();
	cJSON_AddNumberToObject(c, "index", index);
	cJSON_AddItemToObject(c, "delta", delta);
	if (finish)
		cJSON_AddStringToObject(c, "finish_reason", finish);
	else
		cJSON_AddNullToObject(c, "finish_reason");
	cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), c);
	strbuf_addstr(&j->out, "data: ");
	ftk_json_print(&j->out, o);
	strbuf_addstr(&j->out, "\n\n");
	cJSON_Delete(o);
}

static void sse_chunk(struct job *j, int index, const char *content, size_t len,
		      const char *finish, int role)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "id", j->id);
	cJSON_AddStringToObject(o, "object", j->chat ? "chat.completion.chunk" : "text_completion");
	cJSON_AddNumberToObject(o, "created", (double)j->created);
	cJSON_AddStringToObject(o, "model", S.models[j->model].name);
	cJSON *choices = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
	cJSON_AddNumberToObject(c, "index", index);
	char *text = xstrndup(content ? content : "", len);
	if (j->chat) {
		cJSON *d = cJSON_AddObjectToObject(c, "delta");
		if (role)
			cJSON_AddStringToObject(d, "role", "assistant");
		if (content)
			cJSON_AddStringToObject(d, "content", text);
	} else {
		cJSON_AddStringToObject(c, "text", text);
	}
	free(text);
	if (finish)
		cJSON_AddStringToObject(c, "finish_reason", finish);
	else
		cJSON_AddNullToObject(c, "finish_reason");
	cJSON_AddItemToArray(choices, c);
	strbuf_addstr(&j->out, "data: ");
	ftk_json_print(&j->out, o);
	strbuf_addstr(&j->out, "\n\n");
	cJSON_Delete(o);
}

/*
 * FTK_TEST_TOKEN_DELAY_MS slows every streamed token down, so that a test can
 * disconnect in the middle of a stream from a model as fast as stories260K.
 */
static long token_delay_ms;
/* FTK_TEST_SERVE_REPLY: every chat answer is this text (tests of tool-call parsing) */
static const char *test_reply;

static int on_piece(const char *text, size_t len, void *vctx)
{
	struct piece_ctx *pc = vctx;
	struct job *j = pc->j;
	if (text && token_delay_ms > 0)
		usleep((useconds_t)(token_delay_ms * 1000));
	pthread_mutex_lock(&j->mu);
	int cancelled = j->cancelled;
	if (!text) {
		/* the prompt fits: the connection may now send its headers */
		if (!cancelled && j->stream)
			sse_chunk(j, pc->index, j->chat ? "" : NULL, 0, NULL, j->chat);
		j->started = 1;
		pthread_cond_broadcast(&j->cv);
	} else if (!cancelled && j->stream && j->toolfmt) {
		/* hold back whatever may be the start of a tool call */
		strbuf_add(&pc->acc, text, len);
		size_t vis = ftk_toolparse_visible(j->toolfmt, pc->acc.buf, pc->acc.len);
		if (vis > pc->shown) {
			sse_chunk(j, pc->index, pc->acc.buf + pc->shown, vis - pc->shown, NULL, 0);
			pc->shown = vis;
			pthread_cond_broadcast(&j->cv);
		}
	} else if (!cancelled && j->stream) {
		sse_chunk(j, pc->index, text, len, NULL, 0);
		pthread_cond_broadcast(&j->cv);
	}
	pthread_mutex_unlock(&j->mu);
	return cancelled;
}

/* One token's text as the tokenizer decodes it alone (special tokens kept). */
static void token_text(struct ftk_infer *e, uint32_t id, struct strbuf *sb)
{
	strbuf_reset(sb);
	if (ftk_tokenizer_decode(ftk_infer_tokenizer(e), &id, 1, 0, sb, NULL) < 0 || !sb->buf)
		strbuf_addstr(sb, "");
}

/* {"token","logprob","bytes"} as chat completions give them. */
static cJSON *chat_lp(struct ftk_infer *e, uint32_t id, double lp, struct strbuf *sb)
{
	token_text(e, id, sb);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "token", sb->buf);
	cJSON_AddNumberToObject(o, "logprob", lp);
	cJSON *b = cJSON_AddArrayToObject(o, "bytes");
	for (size_t k = 0; k < sb->len; k++)
		cJSON_AddItemToArray(b, cJSON_CreateNumber((unsigned char)sb->buf[k]));
	return o;
}

static cJSON *chat_logprobs(struct ftk_infer *e, const struct ftk_infer_result *res)
{
	struct strbuf sb = STRBUF_INIT;
	cJSON *o = cJSON_CreateObject();
	cJSON *content = cJSON_AddArrayToObject(o, "content");
	for (int t = 0; t < res->n_tokens; t++) {
		const struct ftk_infer_token *k = &res->tokens[t];
		cJSON *x = chat_lp(e, k->id, k->logprob, &sb);
		cJSON *top = cJSON_AddArrayToObject(x, "top_logprobs");
		for (int q = 0; q < k->n_top; q++)
			cJSON_AddItemToArray(top, chat_lp(e, k->top_id[q], k->top_logprob[q], &sb));
		cJSON_AddItemToArray(content, x);
	}
	strbuf_release(&sb);
	return o;
}

/*
 * The completions "logprobs" object: tokens, token_logprobs, top_logprobs
 * (token text -> log-probability) and text_offset, over the echoed prompt
 * (when echo) and the generated tokens.
 */
static int completion_logprobs(struct ftk_infer *e, const uint32_t *ids, int n, int echo,
			       const struct ftk_infer_result *res, size_t gen_offset, cJSON **out,
			       struct ftk_error *err)
{
	struct strbuf sb = STRBUF_INIT;
	cJSON *o = cJSON_CreateObject();
	cJSON *toks = cJSON_AddArrayToObject(o, "tokens");
	cJSON *tlp = cJSON_AddArrayToObject(o, "token_logprobs");
	cJSON *top = cJSON_AddArrayToObject(o, "top_logprobs");
	cJSON *off = cJSON_AddArrayToObject(o, "text_offset");
	size_t at = 0;
	int rc = 0;
	/* token texts from one streaming decode of prompt + completion, so that
	 * spaces land where a whole decode puts them */
	struct ftk_detok dt;
	ftk_detok_init(&dt, ftk_infer_tokenizer(e), 0);
	struct strbuf piece = STRBUF_INIT;
	if (echo && n > 0) {
		double *lp = xmalloc((size_t)n * sizeof(*lp));
		double *tl = xmalloc((size_t)n * sizeof(*tl));
		uint32_t *ti = xmalloc((size_t)n * sizeof(*ti));
		if (n > 1)
			rc = ftk_infer_score(e, ids, n, 1, lp, ti, tl, err);
		for (int i = 0; rc == 0 && i < n; i++) {
			strbuf_reset(&piece);
			ftk_detok_push(&dt, ids[i], &piece, NULL);
			token_text(e, ids[i], &sb);
			cJSON_AddItemToArray(toks, cJSON_CreateString(piece.buf ? piece.buf : ""));
			cJSON_AddItemToArray(off, cJSON_CreateNumber((double)at));
			at += piece.len;
			if (i == 0) {
				cJSON_AddItemToArray(tlp, cJSON_CreateNull());
				cJSON_AddItemToArray(top, cJSON_CreateNull());
				continue;
			}
			cJSON_AddItemToArray(tlp, cJSON_CreateNumber(lp[i - 1]));
			cJSON *d = cJSON_CreateObject();
			struct strbuf tb = STRBUF_INIT;
			token_text(e, ti[i - 1], &tb);
			cJSON_AddNumberToObject(d, tb.buf, tl[i - 1]);
			if (ti[i - 1] != ids[i] && !cJSON_GetObjectItemCaseSensitive(d, sb.buf))
				cJSON_AddNumberToObject(d, sb.buf, lp[i - 1]);
			strbuf_release(&tb);
			cJSON_AddItemToArray(top, d);
		}
		free(lp);
		free(tl);
		free(ti);
	}
	if (!echo) {	/* the completion's first token continues the prompt's text */
		for (int i = 0; i < n; i++)
			ftk_detok_push(&dt, ids[i], &piece, NULL);
		at = 0;
	}
	(void)gen_offset;
	for (int t = 0; rc == 0 && t < res->n_tokens; t++) {
		const struct ftk_infer_token *k = &res->tokens[t];
		strbuf_reset(&piece);
		ftk_detok_push(&dt, k->id, &piece, NULL);
		cJSON_AddItemToArray(toks, cJSON_CreateString(piece.buf ? piece.buf : ""));
		cJSON_AddItemToArray(off, cJSON_CreateNumber((double)at));
		at += piece.len;
		cJSON_AddItemToArray(tlp, cJSON_CreateNumber(k->logprob));
		cJSON *d = cJSON_CreateObject();
		for (int q = 0; q < k->n_top; q++) {
			token_text(e, k->top_id[q], &sb);
			if (!cJSON_GetObjectItemCaseSensitive(d, sb.buf))
				cJSON_AddNumberToObject(d, sb.buf, k->top_logprob[q]);
		}
		cJSON_AddItemToArray(top, d);
	}
	strbuf_release(&sb);
	strbuf_release(&piece);
	ftk_detok_release(&dt);
	if (rc < 0) {
		cJSON_Delete(o);
		return rc;
	}
	*out = o;
	return 0;
}

static void run_job(struct ftk_infer *e, struct job *j)
{
	struct ftk_infer_result res = FTK_INFER_RESULT_INIT;
	struct ftk_error err;
	cJSON *choices = cJSON_CreateArray();
	int rc = 0;
	const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j->req, "messages");
	const cJSON *tools = cJSON_GetObjectItemCaseSensitive(j->req, "tools");
	const char *prompt = ftk_json_get_str(j->req, "prompt");
	if (tools && !cJSON_IsArray(tools))
		tools = NULL;
	for (int i = 0; i < j->n && rc == 0; i++) {
		struct piece_ctx pc = { j, i, STRBUF_INIT, 0 };
		struct ftk_gen_opts g = j->g;
		g.seed = j->g.seed + (uint64_t)i;
		int room = ftk_infer_context(e);
		if (g.max_tokens <= 0 || g.max_tokens > room)
			g.max_tokens = room;
		ftk_error_clear(&err);
		res.logprobs = j->echo && j->logprobs < 0 ? 0 : j->logprobs;	/* echo needs the ids */
		struct ftk_tokens pt = FTK_TOKENS_INIT;
		const uint32_t *ids = j->prompt_ids;
		int n_ids = j->n_prompt_ids;
		cJSON *lpo = NULL;
		if (j->chat && test_reply) {
			/* FTK_TEST_SERVE_REPLY: a canned answer in 3-byte pieces, for the tool-call tests */
			strbuf_reset(&res.text);
			strbuf_addstr(&res.text, test_reply);
			res.prompt_tokens = 1;
			res.completion_tokens = (int)(strlen(test_reply) + 2) / 3;
			res.finish_reason = "stop";
			on_piece(NULL, 0, &pc);
			for (size_t at = 0; at < res.text.len; at += 3)
				on_piece(test_reply + at, res.text.len - at < 3 ? res.text.len - at : 3, &pc);
		} else if (j->chat)
			rc = ftk_infer_chat(e, msgs, tools, &g, j->stop, j->n_stop, on_piece, &pc,
					    &res, &err);
		else {
			if (!ids) {
				long np = ftk_infer_encode_prompt(e, prompt, &pt, &err);
				rc = np < 0 ? (int)np : 0;
				if (np == 0)
					rc = ftk_error_msg(&err, FTK_EUSAGE, "the prompt is empty");
				ids = pt.ids;
				n_ids = (int)np;
			}
			/* scoring only (max_tokens 0) never reads the last id: it may be ctx + 1 long */
			if (rc == 0 && n_ids > ftk_infer_context(e) + j->zero_tokens)
				rc = ftk_error_msg(&err, FTK_ELIMIT, "the prompt is %d tokens, the context %d",
						   n_ids, ftk_infer_context(e));
			if (rc == 0 && j->zero_tokens) {	/* echo only: score the prompt */
				strbuf_reset(&res.text);
				res.n_tokens = 0;
				res.prompt_tokens = n_ids;
				res.completion_tokens = 0;
				res.finish_reason = "length";
			} else if (rc == 0)
				rc = ftk_infer_ids(e, ids, n_ids, &g, j->stop, j->n_stop, on_piece, &pc, &res,
						   &err);
			if (rc == 0 && j->logprobs >= 0)
				rc = completion_logprobs(e, ids, n_ids, j->echo, &res, 0, &lpo, &err);
			if (rc == 0 && j->zero_tokens)	/* accepted: only now, so an error still has its body */
				on_piece(NULL, 0, &pc);
			if (rc == 0 && j->echo) {
				/* the prompt's text and the completion's, decoded together */
				struct strbuf full = STRBUF_INIT;
				uint32_t *all = xmalloc(((size_t)n_ids + (size_t)res.n_tokens + 1) * sizeof(*all));
				memcpy(all, ids, (size_t)n_ids * sizeof(*all));
				for (int t = 0; t < res.n_tokens; t++)
					all[n_ids + t] = res.tokens[t].id;
				ftk_tokenizer_decode(ftk_infer_tokenizer(e), all, (size_t)n_ids + (size_t)res.n_tokens,
						     1, &full, NULL);
				free(all);
				strbuf_reset(&res.text);
				strbuf_add(&res.text, full.buf ? full.buf : "", full.len);
				strbuf_release(&full);
			}
		}
		ftk_tokens_release(&pt);
		pthread_mutex_lock(&j->mu);
		if (rc < 0) {
			j->status = rc == FTK_ELIMIT || rc == FTK_EDATA || rc == FTK_EUSAGE ? 400 : 500;
			if (!j->started) {
				error_body(&j->out, err.msg, "invalid_request_error",
					   j->chat ? "messages" : "prompt",
					   rc == FTK_ELIMIT ? "context_length_exceeded" : NULL);
			}
		} else {
			j->prompt_tokens = res.prompt_tokens;
			j->completion_tokens += res.completion_tokens;
			cJSON *calls = NULL;
			char *content = NULL;
			char idp[80];
			snprintf(idp, sizeof(idp), "call_%s_%d_", j->id + (strncmp(j->id, "chatcmpl-", 9) ? 0 : 9), i);
			const char *finish = res.finish_reason;
			if (j->toolfmt && ftk_toolparse(j->toolfmt, res.text.buf ? res.text.buf : "", idp, &calls,
							&content) > 0)
				finish = "tool_calls";
			if (j->stream && calls) {
				/* the held-back content before the calls, then each call: name, then arguments */
				size_t clen = content ? strlen(content) : 0;
				if (clen > pc.shown)
					sse_chunk(j, i, content + pc.shown, clen - pc.shown, NULL, 0);
				int k = 0;
				const cJSON *call;
				cJSON_ArrayForEach(call, calls)
				{
					const cJSON *fn = cJSON_GetObjectItemCaseSensitive(call, "function");
					cJSON *d = cJSON_CreateObject(), *tc = cJSON_AddArrayToObject(d, "tool_calls");
					cJSON *x = cJSON_CreateObject();
					cJSON_AddNumberToObject(x, "index", k);
					cJSON_AddStringToObject(x, "id", ftk_json_get_str(call, "id"));
					cJSON_AddStringToObject(x, "type", "function");
					cJSON *f = cJSON_AddObjectToObject(x, "function");
					cJSON_AddStringToObject(f, "name", ftk_json_get_str(fn, "name"));
					cJSON_AddStringToObject(f, "arguments", "");
					cJSON_AddItemToArray(tc, x);
					sse_delta(j, i, d, NULL);
					d = cJSON_CreateObject();
					tc = cJSON_AddArrayToObject(d, "tool_calls");
					x = cJSON_CreateObject();
					cJSON_AddNumberToObject(x, "index", k);
					f = cJSON_AddObjectToObject(x, "function");
					cJSON_AddStringToObject(f, "arguments", ftk_json_get_str(fn, "arguments"));
					cJSON_AddItemToArray(tc, x);
					sse_delta(j, i, d, NULL);
					k++;
				}
			} else if (j->stream && j->toolfmt && pc.acc.len > pc.shown) {
				/* no call after all: the held-back text is content */
				sse_chunk(j, i, pc.acc.buf + pc.shown, pc.acc.len - pc.shown, NULL, 0);
			}
			if (j->stream)
				sse_chunk(j, i, NULL, 0, finish, 0);
			cJSON *c = cJSON_CreateObject();
			cJSON_AddNumberToObject(c, "index", i);
			if (j->chat) {
				cJSON *m = cJSON_AddObjectToObject(c, "message");
				cJSON_AddStringToObject(m, "role", "assistant");
				if (calls && !content)
					cJSON_AddNullToObject(m, "content");
				else
					cJSON_AddStringToObject(m, "content",
								calls ? content : res.text.buf ? res.text.buf : "");
				if (calls) {
					cJSON_AddItemToObject(m, "tool_calls", calls);
					calls = NULL;
				}
				if (j->logprobs >= 0)
					cJSON_AddItemToObject(c, "logprobs", chat_logprobs(e, &res));
			} else {
				cJSON_AddStringToObject(c, "text", res.text.buf ? res.text.buf : "");
				if (lpo) {
					cJSON_AddItemToObject(c, "logprobs", lpo);
					lpo = NULL;
				}
			}
			cJSON_AddStringToObject(c, "finish_reason", finish);
			cJSON_AddItemToArray(choices, c);
			cJSON_Delete(calls);
			free(content);
		}
		cJSON_Delete(lpo);
		strbuf_release(&pc.acc);
		j->started = 1;
		pthread_cond_broadcast(&j->cv);
		int cancelled = j->cancelled;
		pthread_mutex_unlock(&j->mu);
		if (cancelled)
			break;
	}
	pthread_mutex_lock(&j->mu);
	if (!j->status && !j->stream) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "id", j->id);
		cJSON_AddStringToObject(o, "object", j->chat ? "chat.completion" : "text_completion");
		cJSON_AddNumberToObject(o, "created", (double)j->created);
		cJSON_AddStringToObject(o, "model", S.models[j->model].name);
		cJSON_AddItemToObject(o, "choices", choices);
		choices = NULL;
		if (j->warning)
			cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "warnings"), cJSON_CreateString(j->warning));
		cJSON *u = cJSON_AddObjectToObject(o, "usage");
		cJSON_AddNumberToObject(u, "prompt_tokens", j->prompt_tokens);
		cJSON_AddNumberToObject(u, "completion_tokens", j->completion_tokens);
		cJSON_AddNumberToObject(u, "total_tokens", j->prompt_tokens + j->completion_tokens);
		strbuf_reset(&j->out);
		ftk_json_print(&j->out, o);
		cJSON_Delete(o);
	} else if (!j->status && j->stream) {
		strbuf_addstr(&j->out, "data: [DONE]\n\n");
	}
	if (j->cancelled && !j->stream && !S.quiet)
		fprintf(stderr, "ftk-serve: request %s cancelled after %d tokens, %.3fs\n", j->id,
			j->completion_tokens, now() - j->t0);
	j->done = 1;
	pthread_cond_broadcast(&j->cv);
	pthread_mutex_unlock(&j->mu);
	cJSON_Delete(choices);
	ftk_infer_result_release(&res);
}

static void *worker_main(void *arg)
{
	int w = (int)(long)arg;
	for (;;) {
		pthread_mutex_lock(&S.mu);
		while (!S.head && !S.stopping)
			pthread_cond_wait(&S.cv, &S.mu);
		if (!S.head) {
			pthread_mutex_unlock(&S.mu);
			return NULL;
		}
		struct job *j = S.head;
		S.head = j->next;
		if (!S.head)
			S.tail = NULL;
		S.queued--;
		pthread_mutex_unlock(&S.mu);
		if (j->cancelled) {
			if (!S.quiet)
				fprintf(stderr, "ftk-serve: request %s cancelled before it started\n", j->id);
			pthread_mutex_lock(&j->mu);
			j->done = j->started = 1;
			pthread_cond_broadcast(&j->cv);
			pthread_mutex_unlock(&j->mu);
		} else {
			run_job(S.engines[w][j->model], j);
		}
		job_unref(j);
	}
}

/* ------------------------------------------------------------ HTTP side */

struct conn {
	struct strbuf body;
	double t0;
};

/*
 * Connections.  libmicrohttpd gives each connection a thread, so a client
 * that opens connections and sends nothing (or a byte now and then) would
 * hold threads until the server cannot answer anyone.  Every connection
 * has a slot here, from accept to close, that says whether it is still
 * waiting for a request to arrive (READING: headers not complete, or
 * idle between keep-alive requests) or has one (ACTIVE).
 *
 * A new connection beyond --max-connections closes the oldest READING
 * one (the cheapest to lose: nothing was asked yet) and takes its place;
 * when every connection is ACTIVE it is answered 503 at once, before it
 * sends anything.  The same holds per client address under
 * --max-connections-per-ip, among that address's connections only, so one
 * client cannot take every slot: its surplus closes its own idle
 * connections or is refused, and other addresses keep being served.  A sweeper thread closes READING connections whose
 * request has not arrived within --request-deadline (an idle timeout alone
 * lets a client that sends a byte every few seconds stay forever), and
 * libmicrohttpd closes one silent for --read-timeout.  Closing is
 * shutdown(2) on the socket, under slots_mu; libmicrohttpd reports the
 * close (NOTIFY_CLOSED, which takes slots_mu) before it closes the fd, so
 * the fd is never one reused by another connection.
 */
enum { SLOT_READING, SLOT_ACTIVE, SLOT_DROPPED };

struct slot {
	int fd;
	int state;
	struct sockaddr_storage addr;	/* the client's; port ignored in comparisons */
	double t0;		/* the connection opened, or its last request ended */
	struct slot *prev, *next;	/* oldest first */
};

static pthread_mutex_t slots_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slots_cv = PTHREAD_COND_INITIALIZER;
static struct slot *slots_head, *slots_tail;
static int slots_live;		/* slots not DROPPED */
static long slots_evicted, slots_refused, slots_expired;
static int slots_stopping;

static void slot_drop(struct slot *sl)
{
	shutdown(sl->fd, SHUT_RDWR);
	sl->state = SLOT_DROPPED;
	slots_live--;
}

/* 1 when two client addresses are the same host (family and address; not the port). */
static int same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	if (a->ss_family == AF_INET6)
		return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
			       &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr));
	return a->ss_family == AF_UNSPEC;	/* unknown: all one host */
}

/* The 503 a connection beyond a limit gets before it is closed; why: which limit. */
static void refuse(int fd, const char *why)
{
	char body[256];
	size_t blen = (size_t)snprintf(body, sizeof(body),
				       "{\"error\":{\"message\":\"%s: try again later\",\"type\":"
				       "\"server_error\",\"param\":null,\"code\":\"overloaded\"}}", why);
	char head[256];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\nRetry-After: 1\r\n\r\n",
			 blen);
	if (send(fd, head, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) == n)
		send(fd, body, blen, MSG_NOSIGNAL | MSG_DONTWAIT);
	/* read what the client already sent, so the close is a FIN, not a reset
	 * that could destroy the 503 before the client reads it */
	char sink[4096];
	while (recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
		;
}

/*
 * Close the oldest connection still reading its request, from host (NULL:
 * from any address); slots_mu held.  Returns 0 when there is none.
 */
static int evict_idle(const struct sockaddr_storage *host)
{
	for (struct slot *v = slots_head; v; v = v->next)
		if (v->state == SLOT_READING && (!host || same_host(&v->addr, host))) {
			slot_drop(v);
			slots_evicted++;
			return 1;
		}
	return 0;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	(void)cls;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		const union MHD_ConnectionInfo *ca = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		struct slot *sl = xcalloc(1, sizeof(*sl));
		sl->fd = ci ? ci->connect_fd : -1;
		sl->t0 = now();
		sl->state = SLOT_READING;
		if (ca && ca->client_addr) {
			sa_family_t fam = ca->client_addr->sa_family;
			memcpy(&sl->addr, ca->client_addr,
			       fam == AF_INET6 ? sizeof(struct sockaddr_in6) :
			       fam == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr));
		}
		pthread_mutex_lock(&slots_mu);
		/* this address's live connections; at its limit, its oldest idle one goes */
		int mine = 0, refused_ip = 0;
		for (struct slot *v = slots_head; v; v = v->next)
			mine += v->state != SLOT_DROPPED && same_host(&v->addr, &sl->addr);
		if (mine >= S.max_conn_ip)
			refused_ip = !evict_idle(&sl->addr);
		if (!refused_ip && slots_live >= S.max_conn)
			evict_idle(NULL);
		if (refused_ip || slots_live >= S.max_conn) {
			refuse(sl->fd, refused_ip ? "too many connections from your address"
						  : "the server has too many connections");
			slot_drop(sl);
			slots_live++;	/* it was never counted */
			slots_refused++;
		} else {
			slots_live++;
		}
		sl->prev = slots_tail;
		if (slots_tail)
			slots_tail->next = sl;
		else
			slots_head = sl;
		slots_tail = sl;
		pthread_mutex_unlock(&slots_mu);
		*socket_context = sl;
	} else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
		struct slot *sl = *socket_context;
		pthread_mutex_lock(&slots_mu);
		if (sl->state != SLOT_DROPPED)
			slots_live--;
		if (sl->prev)
			sl->prev->next = sl->next;
		else
			slots_head = sl->next;
		if (sl->next)
			sl->next->prev = sl->prev;
		else
			slots_tail = sl->prev;
		pthread_mutex_unlock(&slots_mu);
		free(sl);
		*socket_context = NULL;
	}
}

/* Mark the connection's slot (READING or ACTIVE).  Returns 0, or -1 when it was dropped. */
static int slot_set(struct MHD_Connection *c, int state)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct slot *sl = ci ? ci->socket_context : NULL;
	int rc = 0;
	if (!sl)
		return 0;
	pthread_mutex_lock(&slots_mu);
	if (sl->state == SLOT_DROPPED) {
		rc = -1;
	} else {
		sl->state = state;
		sl->t0 = now();
	}
	pthread_mutex_unlock(&slots_mu);
	return rc;
}

/* Close connections whose request has not arrived within --request-deadline. */
static void *sweeper_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&slots_mu);
	while (!slots_stopping) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&slots_cv, &slots_mu, &ts);
		double t = now();
		for (struct slot *sl = slots_head; sl; sl = sl->next)
			if (sl->state == SLOT_READING && t - sl->t0 > S.deadline) {
				slot_drop(sl);
				slots_expired++;
			}
	}
	pthread_mutex_unlock(&slots_mu);
	return NULL;
}

/* 1 when the client has closed its side of the connection, or it broke. */
static int client_gone(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (!ci)
		return 0;
	struct pollfd p = { ci->connect_fd, POLLRDHUP, 0 };
	return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static void access_log(struct MHD_Connection *c, const char *method, const char *url,
		       int status, int pt, int ct, double t0)
{
	if (S.quiet)
		return;
	char addr[64] = "-";
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ci->client_addr;
		const unsigned char *b = (const unsigned char *)&sin->sin_addr;
		snprintf(addr, sizeof(addr), "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
	}
	fprintf(stderr, "ftk-serve: %s %s %s %d tokens=%d+%d %.3fs\n", addr, method, url, status,
		pt, ct, now() - t0);
}

static enum MHD_Result reply(struct MHD_Connection *c, int status, const char *body, size_t len,
			     const char *ctype)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body,
								 MHD_RESPMEM_MUST_COPY);
	MHD_add_response_header(r, "Content-Type", ctype);
	enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result reply_error(struct MHD_Connection *c, const char *method, const char *url,
				   double t0, int status, const char *msg, const char *type,
				   const char *param, const char *code)
{
	struct strbuf sb = STRBUF_INIT;
	error_body(&sb, msg, type, param, code);
	enum MHD_Result rc = reply(c, status, sb.buf, sb.len, "application/json");
	strbuf_release(&sb);
	access_log(c, method, url, status, 0, 0, t0);
	return rc;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct job *j = cls;
	(void)pos;
	pthread_mutex_lock(&j->mu);
	while (j->sent == j->out.len && !j->done)
		pthread_cond_wait(&j->cv, &j->mu);
	ssize_t n;
	if (j->sent == j->out.len) {
		n = MHD_CONTENT_READER_END_OF_STREAM;
	} else {
		size_t k = j->out.len - j->sent;
		if (k > max)
			k = max;
		memcpy(buf, j->out.buf + j->sent, k);
		j->sent += k;
		n = (ssize_t)k;
	}
	pthread_mutex_unlock(&j->mu);
	return n;
}

static void stream_free(void *cls)
{
	struct job *j = cls;
	pthread_mutex_lock(&j->mu);
	if (!j->done)
		j->cancelled = 1;	/* the client went away: free the worker */
	pthread_mutex_unlock(&j->mu);
	if (!S.quiet)
		fprintf(stderr, "ftk-serve: stream %s %s after %d tokens, %.3fs\n", j->id,
			j->done ? "finished" : "cancelled", j->completion_tokens, now() - j->t0);
	job_unref(j);
}

static int find_model(const char *name)
{
	for (int i = 0; i < S.n_models; i++)
		if (!strcmp(S.models[i].name, name))
			return i;
	return -1;
}

/* Check the request (serve/request.h) and fill the job's options.  Returns 0 or fills *e. */
static int parse_request(struct job *j, struct ftk_serve_error *e)
{
	const char *names[MAX_MODELS];
	struct ftk_serve_request rq;
	for (int i = 0; i < S.n_models; i++)
		names[i] = S.models[i].name;
	if (ftk_serve_request_parse(j->req, j->chat, names, S.n_models, &rq, e) < 0)
		return -1;
	j->model = rq.model;
	j->prompt_ids = rq.prompt_ids;	/* the job owns them now */
	j->n_prompt_ids = rq.n_prompt_ids;
	ftk_gen_opts_default(&j->g);
	ftk_gen_opts_from_openai(&j->g, &rq.gen);
	j->n = rq.gen.n;
	j->n_stop = rq.gen.n_stop;
	for (int i = 0; i < rq.gen.n_stop; i++)
		j->stop[i] = rq.gen.stop[i];
	j->stream = rq.gen.stream;
	j->logprobs = rq.logprobs;
	j->echo = rq.echo;
	j->zero_tokens = rq.zero_tokens;
	if (rq.tools) {
		if (!S.template_has_tools) {
			j->warning = xstrdup("the model's chat template does not render tools: the model "
					     "was not shown them");
			if (!S.quiet)
				fprintf(stderr, "ftk-serve: %s: %s\n", j->id[0] ? j->id : "request", j->warning);
		}
		j->toolfmt = S.toolfmt > 0 ? S.toolfmt : 0;
	}
	return 0;
}

static int authorized(struct MHD_Connection *c)
{
	if (!S.api_key)
		return 1;
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	return h && !strncmp(h, "Bearer ", 7) && !strcmp(h + 7, S.api_key);
}

static enum MHD_Result handle_completion(struct MHD_Connection *c, const char *method,
					 const char *url, struct conn *cn, int chat)
{
	struct ftk_error err;
	cJSON *req = NULL;
	long bad = ftk_utf8_check(cn->body.buf, cn->body.len);
	if (bad >= 0) {
		struct strbuf m = STRBUF_INIT;
		strbuf_addf(&m, "the body is not valid UTF-8 (byte %ld)", bad);
		enum MHD_Result rc = reply_error(c, method, url, cn->t0, 400, m.buf, "invalid_request_error",
						 NULL, NULL);
		strbuf_release(&m);
		return rc;
	}
	if (ftk_json_parse_object(cn->body.buf, cn->body.len, &req, &err) < 0) {
		struct strbuf m = STRBUF_INIT;
		strbuf_addf(&m, "the body is not a JSON object: %s", err.msg);
		enum MHD_Result rc = reply_error(c, method, url, cn->t0, 400, m.buf, "invalid_request_error",
						 NULL, NULL);
		strbuf_release(&m);
		return rc;
	}
	strbuf_release(&cn->body);	/* parsed: a large body is not held twice while it waits */
	struct job *j = xcalloc(1, sizeof(*j));
	pthread_mutex_init(&j->mu, NULL);
	pthread_cond_init(&j->cv, NULL);
	strbuf_init(&j->out, 0);
	j->req = req;
	j->chat = chat;
	j->refs = 2;
	j->t0 = cn->t0;
	j->created = (long)time(NULL);
	struct ftk_serve_error pe;
	ftk_serve_error_init(&pe);
	if (parse_request(j, &pe) < 0) {
		enum MHD_Result rc = reply_error(c, method, url, cn->t0, pe.status, pe.msg.buf,
						 "invalid_request_error", pe.param, pe.code);
		ftk_serve_error_release(&pe);
		j->refs = 1;
		job_unref(j);
		return rc;
	}
	ftk_serve_error_release(&pe);
	pthread_mutex_lock(&S.mu);
	if (S.queued >= S.queue_max) {
		pthread_mutex_unlock(&S.mu);
		j->refs = 1;
		job_unref(j);
		return reply_error(c, method, url, cn->t0, 503, "the server is busy: try again later",
				   "server_error", NULL, "overloaded");
	}
	snprintf(j->id, sizeof(j->id), "%s-%ld", chat ? "chatcmpl" : "cmpl", ++S.next_id);
	if (S.tail)
		S.tail->next = j;
	else
		S.head = j;
	S.tail = j;
	S.queued++;
	pthread_cond_signal(&S.cv);
	pthread_mutex_unlock(&S.mu);

	/*
	 * Wait for the answer (a stream: for its start), looking at the socket
	 * every 100 ms: a client that went away cancels the job as a stream's
	 * does, so an abandoned request stops at its next token instead of
	 * holding a worker to the end (issue 18.4).
	 */
	pthread_mutex_lock(&j->mu);
	while (j->stream ? !j->started && !j->done : !j->done) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		if (pthread_cond_timedwait(&j->cv, &j->mu, &ts) == ETIMEDOUT && client_gone(c)) {
			j->cancelled = 1;
			pthread_mutex_unlock(&j->mu);
			access_log(c, method, url, 499, 0, 0, cn->t0);
			job_unref(j);
			return MHD_NO;
		}
	}
	int st = j->status;
	pthread_mutex_unlock(&j->mu);
	enum MHD_Result rc;
	if (st) {
		/* failed before anything was sent: a plain error response */
		pthread_mutex_lock(&j->mu);
		while (!j->done)
			pthread_cond_wait(&j->cv, &j->mu);
		pthread_mutex_unlock(&j->mu);
		rc = reply(c, st, j->out.buf, j->out.len, "application/json");
		access_log(c, method, url, st, 0, 0, cn->t0);
		job_unref(j);
	} else if (j->stream) {
		struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096,
									   stream_reader, j,
									   stream_free);
		MHD_add_response_header(r, "Content-Type", "text/event-stream");
		MHD_add_response_header(r, "Cache-Control", "no-cache");
		rc = MHD_queue_response(c, 200, r);
		MHD_destroy_response(r);
		access_log(c, method, url, 200, j->prompt_tokens, 0, cn->t0);
	} else {
		rc = reply(c, 200, j->out.buf, j->out.len, "application/json");
		access_log(c, method, url, 200, j->prompt_tokens, j->completion_tokens, cn->t0);
		job_unref(j);
	}
	return rc;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
			       const char *method, const char *version, const char *upload,
			       size_t *upload_size, void **con_cls)
{
	struct conn *cn = *con_cls;
	(void)cls;
	(void)version;
	if (!cn) {
		/* the headers are in, the body is not read yet: refuse what can be
		 * refused from the headers before reading a byte of it */
		if (slot_set(c, SLOT_ACTIVE) < 0)
			return MHD_NO;
		double t0 = now();
		if (strcmp(url, "/health") && !authorized(c))
			return reply_error(c, method, url, t0, 401, "missing or wrong API key",
					   "invalid_request_error", NULL, "invalid_api_key");
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
		double announced = cl ? strtod(cl, NULL) : 0;	/* libmicrohttpd has checked its syntax */
		if (!(announced >= 0))
			announced = 0;
		if (announced > (double)S.max_body) {
			struct strbuf m = STRBUF_INIT;
			strbuf_addf(&m, "the request body is too large: %s bytes, more than --max-body %llu", cl,
				    (unsigned long long)S.max_body);
			enum MHD_Result rc = reply_error(c, method, url, t0, 413, m.buf, "invalid_request_error",
							 NULL, NULL);
			strbuf_release(&m);
			return rc;
		}
		cn = xcalloc(1, sizeof(*cn));
		/* the announced size at once: no copies while a large body grows */
		strbuf_init(&cn->body, (size_t)announced);
		cn->t0 = t0;
		*con_cls = cn;
		return MHD_YES;
	}
	if (*upload_size) {
		/* a body without Content-Length (chunked) that grows past the limit, or
		 * one trickling in past the deadline, ends the connection */
		if (cn->body.len + *upload_size > S.max_body || now() - cn->t0 > S.deadline) {
			if (!S.quiet)
				fprintf(stderr, "ftk-serve: %s %s: %s: connection closed\n", method, url,
					now() - cn->t0 > S.deadline ? "the body did not arrive within --request-deadline"
								    : "the body is larger than --max-body");
			return MHD_NO;
		}
		strbuf_add(&cn->body, upload, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	int is_get = !strcmp(method, "GET"), is_post = !strcmp(method, "POST");
	if (!strcmp(url, "/health")) {
		if (!is_get)
			return reply_error(c, method, url, cn->t0, 405, "use GET", "invalid_request_error", NULL, NULL);
		static const char ok[] = "{\"status\":\"ok\"}";
		access_log(c, method, url, 200, 0, 0, cn->t0);
		return reply(c, 200, ok, sizeof(ok) - 1, "application/json");
	}
	if (!strcmp(url, "/v1/models")) {
		if (!is_get)
			return reply_error(c, method, url, cn->t0, 405, "use GET", "invalid_request_error", NULL, NULL);
		cJSON *o = cJSON_CreateObject(), *d;
		cJSON_AddStringToObject(o, "object", "list");
		d = cJSON_AddArrayToObject(o, "data");
		for (int i = 0; i < S.n_models; i++) {
			cJSON *m = cJSON_CreateObject();
			cJSON_AddStringToObject(m, "id", S.models[i].name);
			cJSON_AddStringToObject(m, "object", "model");
			cJSON_AddNumberToObject(m, "created", 0);
			cJSON_AddStringToObject(m, "owned_by", "ftk");
			if (S.models[i].adapter)
				cJSON_AddStringToObject(m, "adapter", S.models[i].adapter);
			cJSON_AddItemToArray(d, m);
		}
		struct strbuf sb = STRBUF_INIT;
		ftk_json_print(&sb, o);
		cJSON_Delete(o);
		enum MHD_Result rc = reply(c, 200, sb.buf, sb.len, "application/json");
		strbuf_release(&sb);
		access_log(c, method, url, 200, 0, 0, cn->t0);
		return rc;
	}
	int chat = !strcmp(url, "/v1/chat/completions");
	if (chat || !strcmp(url, "/v1/completions")) {
		if (!is_post)
			return reply_error(c, method, url, cn->t0, 405, "use POST", "invalid_request_error", NULL, NULL);
		return handle_completion(c, method, url, cn, chat);
	}
	struct strbuf m = STRBUF_INIT;
	strbuf_addstr(&m, "no such path: ");
	ftk_serve_quote(&m, url, FTK_SERVE_QUOTE_MAX);
	enum MHD_Result rc = reply_error(c, method, url, cn->t0, 404, m.buf, "invalid_request_error", NULL,
					 "not_found");
	strbuf_release(&m);
	return rc;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	struct conn *cn = *con_cls;
	(void)cls;
	(void)toe;
	slot_set(c, SLOT_READING);
	if (cn) {
		strbuf_release(&cn->body);
		free(cn);
		*con_cls = NULL;
	}
}

static void on_signal(int sig)
{
	got_signal = sig;
}

/*
 * An adapter made by ftk train sits in a run directory whose
 * train_config.json says how the base was held while it learned ("quant").
 * Served over a base held differently, its answers are not the ones its
 * evals measured: say so.  An adapter from elsewhere has no such file.
 */
static void warn_quant_mismatch(const char *name, const char *adapter, int nf4)
{
	struct strbuf p = STRBUF_INIT, sb = STRBUF_INIT;
	strbuf_addf(&p, "%s/../train_config.json", adapter);
	cJSON *o = NULL;
	if (strbuf_read_file(&sb, p.buf) >= 0 && ftk_json_parse_object(sb.buf, sb.len, &o, NULL) == 0) {
		const char *q = ftk_json_get_str(o, "quant");
		if (q && strcmp(q, nf4 ? "nf4" : "none"))
			warning("adapter '%s' was trained on a base held as %s and is served over "
				"--quant %s: its answers will differ from the trained model's; "
				"serve with --quant %s", name, q, nf4 ? "nf4" : "none", q);
	}
	cJSON_Delete(o);
	strbuf_release(&p);
	strbuf_release(&sb);
}

/* A size in bytes, with an optional K, M or G (binary) suffix. */
/* --adapter NAME=DIR, repeatable */
static void adapter_cb(const struct ftk_option *opt, const char *arg)
{
	const char *eq = strchr(arg, '=');
	(void)opt;
	if (!eq || eq == arg || !eq[1])
		ftk_usage_error("--adapter needs NAME=DIR, not '%s'", arg);
	if (S.n_models == MAX_MODELS)
		ftk_usage_error("at most %d adapters", MAX_MODELS - 1);
	S.models[S.n_models].name = xstrndup(arg, (size_t)(eq - arg));
	S.models[S.n_models].adapter = eq + 1;
	S.n_models++;
}

static void api_key_env_cb(const struct ftk_option *opt, const char *arg)
{
	const char *k = getenv(arg);
	if (!k || !*k)
		ftk_usage_error("the environment variable '%s' is not set", arg);
	*(const char **)opt->value = k;
}

int cmd_serve(int argc, char **argv)
{
	struct ftk_tool t;
	struct ftk_error err;
	const char *name = NULL, *host = "127.0.0.1", *port_file = NULL;
	long port = 8000;
	int read_timeout = 30;
	ftk_tool_init(&t, "ftk-serve", NULL);
	memset(&S, 0, sizeof(S));
	S.n_workers = 1;
	S.toolfmt = -1;
	S.queue_max = 64;
	S.n_models = 1;	/* slot 0 is the base */
	S.quant_nf4 = 1;	/* serve what was trained: the NF4 base */
	S.max_conn = 64;
	S.max_body = 8u << 20;
	S.deadline = 60;
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Options"),
		FTK_OPT_STRING(0, "model", &S.model_dir, "DIR", "Hugging Face model directory (required)"),
		FTK_OPT_STRING(0, "name", &name, "NAME",
			       "the name the base model is served under (default: the\n"
			       "directory's name)"),
		FTK_OPT_CALLBACK(0, "adapter", NULL, "NAME=DIR", adapter_cb,
				 "also serve the model with this PEFT adapter as NAME\n"
				 "(repeatable); the request's \"model\" picks one"),
		FTK_OPT_STRING(0, "host", &host, "ADDR", "address to listen on (default 127.0.0.1)"),
		FTK_OPT_LONG(0, "port", &port, "N", 0, 65535, "port (default 8000; 0 picks a free one)"),
		FTK_OPT_STRING(0, "port-file", &port_file, "FILE", "write the port there once listening"),
		FTK_OPT_INT(0, "workers", &S.n_workers, "N", 1, 64,
			    "requests answered at once (default 1); each worker\n"
			    "holds its own copy of the model"),
		FTK_OPT_INT(0, "queue", &S.queue_max, "N", 1, 100000,
			    "requests waiting at most (default 64); more get 503"),
		FTK_OPT_CHOICE(0, "quant", &S.quant_nf4, NULL, FTK_QUANT_CHOICES,
			       "the base as QLoRA trained on it, NF4 (default, as ftk\n"
			       "train and ftk generate), or none (full precision)"),
		FTK_OPT_INT(0, "ctx", &S.ctx, "N", 1, 1 << 20, "context length (default: the model's)"),
		FTK_OPT_CHOICE(0, "tool-parser", &S.toolfmt, "FMT", FTK_TOOLFMT_CHOICES,
			       "read tool calls in the model's text as hermes (Qwen),\n"
			       "llama3_json or mistral, or none (default: the chat\n"
			       "template's format)"),
		FTK_OPT_CALLBACK(0, "api-key-env", &S.api_key, "NAME", api_key_env_cb,
				 "require 'Authorization: Bearer <key>' where the key is\n"
				 "in that environment variable (checked before the body\n"
				 "is read)"),
		FTK_OPT_INT(0, "max-connections", &S.max_conn, "N", 1, 100000,
			    "connections open at once (default 64); beyond it an idle\n"
			    "one is closed, or the new one gets 503 at once"),
		FTK_OPT_INT(0, "max-connections-per-ip", &S.max_conn_ip, "N", 1, 100000,
			    "connections open at once from one client address\n"
			    "(default 16, or --max-connections when lower); beyond\n"
			    "it that address's oldest idle one is closed, or its new\n"
			    "one gets 503, while other addresses are served"),
		FTK_OPT_SIZE(0, "max-body", &S.max_body, "SIZE", 1, (uint64_t)1 << 40,
			     "largest request body (default 8M); a larger one gets\n"
			     "413 before it is read"),
		FTK_OPT_INT(0, "read-timeout", &read_timeout, "SECS", 1, 86400,
			    "a connection silent this long is closed (default 30)"),
		FTK_OPT_DOUBLE(0, "request-deadline", &S.deadline, "SECS", 0.1, 86400,
			       "a request's headers and body must arrive within this\n"
			       "many seconds (default 60), else the connection is closed"),
		FTK_OPT_FLAG('q', "quiet", &S.quiet, "no access log"),
		FTK_OPT_HELP(),
		FTK_OPT_VERSION(),
		FTK_OPT_TEXT("Exit status: 0 after a clean shutdown (SIGINT or SIGTERM), 1 when the model\n"
			     "cannot be loaded or the port cannot be bound, 2 bad usage.\n"),
		FTK_OPT_END(),
	};
	argc = ftk_parse_options(argc, argv, "ftk-serve", opts, usage);
	S.read_timeout = (unsigned)read_timeout;
	if (!S.max_conn_ip)
		S.max_conn_ip = S.max_conn < 16 ? S.max_conn : 16;
	if (!S.model_dir)
		ftk_tool_usage_error(&t, "--model DIR is required");
	if (argc > 0)
		ftk_tool_usage_error(&t, "unexpected argument '%s'", argv[0]);
	if (!name) {
		const char *s = S.model_dir + strlen(S.model_dir);
		while (s > S.model_dir && s[-1] == '/')
			s--;
		const char *b = s;
		while (b > S.model_dir && b[-1] != '/')
			b--;
		S.models[0].name = xstrndup(b, (size_t)(s - b));
	} else {
		S.models[0].name = xstrdup(name);
	}
	for (int i = 1; i < S.n_models; i++)
		if (find_model(S.models[i].name) != i)
			ftk_tool_usage_error(&t, "the name '%s' is used twice", S.models[i].name);

	for (int i = 1; i < S.n_models; i++)
		warn_quant_mismatch(S.models[i].name, S.models[i].adapter, S.quant_nf4);

	const char *delay = getenv("FTK_TEST_TOKEN_DELAY_MS");
	token_delay_ms = delay ? atol(delay) : 0;
	test_reply = getenv("FTK_TEST_SERVE_REPLY");
	S.engines = xcalloc((size_t)S.n_workers, sizeof(*S.engines));
	for (int w = 0; w < S.n_workers; w++) {
		S.engines[w] = xcalloc((size_t)S.n_models, sizeof(**S.engines));
		for (int i = 0; i < S.n_models; i++) {
			struct ftk_infer_opts io = { S.model_dir, S.models[i].adapter, S.quant_nf4, S.ctx,
						     NULL };
			/* worker 0 loads each model; the others share its weights */
			if ((w == 0 ? ftk_infer_open(&S.engines[w][i], &io, &err)
				    : ftk_infer_open_shared(&S.engines[w][i], S.engines[0][i], &err)) < 0) {
				die("cannot load '%s'%s%s: %s", S.model_dir, S.models[i].adapter ? " with " : "",
				    S.models[i].adapter ? S.models[i].adapter : "",
				    FTK_ERROR_TEXT(&err));
			}
		}
	}
	{	/* the template's tool-call format, unless --tool-parser named one */
		const char *tmpl = ftk_tokenizer_chat_template(ftk_infer_tokenizer(S.engines[0][0]));
		if (S.toolfmt < 0)
			S.toolfmt = ftk_toolfmt_from_template(tmpl);
		S.template_has_tools = tmpl && strstr(tmpl, "tools") != NULL;
	}
	pthread_mutex_init(&S.mu, NULL);
	pthread_cond_init(&S.cv, NULL);
	pthread_t *th = xcalloc((size_t)S.n_workers, sizeof(*th));
	for (int w = 0; w < S.n_workers; w++)
		pthread_create(&th[w], NULL, worker_main, (void *)(long)w);

	struct sockaddr_in sa;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		ftk_tool_usage_error(&t, "--host must be an IPv4 address, not '%s'", host);
	signal(SIGPIPE, SIG_IGN);
	/*
	 * poll(), not select(): with select a connection whose fd is over 1023
	 * cannot be served at all.  libmicrohttpd's own limit is a backstop
	 * above ours: connections being closed still hold a thread for a moment,
	 * and over its limit libmicrohttpd closes new ones without an answer.
	 */
	pthread_t sweeper;
	pthread_create(&sweeper, NULL, sweeper_main, NULL);
	unsigned mhd_limit = (unsigned)S.max_conn * 4 + 256;
	struct MHD_Daemon *d = MHD_start_daemon(
		MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
			MHD_USE_ERROR_LOG,
		(uint16_t)port, NULL, NULL, handler, NULL,
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
		MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
		MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
		MHD_OPTION_CONNECTION_TIMEOUT, S.read_timeout,
		MHD_OPTION_CONNECTION_LIMIT, mhd_limit,
		MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
		MHD_OPTION_END);
	if (!d)
		die("cannot listen on %s:%ld: %s", host, port, strerror(errno));
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	unsigned bound = di ? di->port : (unsigned)port;
	if (port_file) {
		char tmp[4096];
		snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
		FILE *f = fopen(tmp, "w");
		if (!f || fprintf(f, "%u\n", bound) < 0 || fclose(f) != 0 || rename(tmp, port_file) < 0)
			die("cannot write '%s': %s", port_file, strerror(errno));
	}
	fprintf(stderr, "ftk-serve: listening on http://%s:%u (%d model%s, %d worker%s)\n", host, bound,
		S.n_models, S.n_models > 1 ? "s" : "", S.n_workers, S.n_workers > 1 ? "s" : "");
	struct sigaction act;
	memset(&act, 0, sizeof(act));
	act.sa_handler = on_signal;
	sigaction(SIGINT, &act, NULL);
	sigaction(SIGTERM, &act, NULL);
	while (!got_signal)
		pause();
	fprintf(stderr, "ftk-serve: shutting down\n");
	MHD_stop_daemon(d);
	pthread_mutex_lock(&slots_mu);
	slots_stopping = 1;
	pthread_cond_broadcast(&slots_cv);
	pthread_mutex_unlock(&slots_mu);
	pthread_join(sweeper, NULL);
	if (!S.quiet && (slots_evicted || slots_refused || slots_expired))
		fprintf(stderr, "ftk-serve: connections: %ld idle ones closed for new ones, %ld refused with 503, "
			"%ld closed at --request-deadline\n", slots_evicted, slots_refused, slots_expired);
	pthread_mutex_lock(&S.mu);
	S.stopping = 1;
	pthread_cond_broadcast(&S.cv);
	pthread_mutex_unlock(&S.mu);
	for (int w = 0; w < S.n_workers; w++)
		pthread_join(th[w], NULL);
	for (int w = 0; w < S.n_workers; w++) {
		for (int i = 0; i < S.n_models; i++)
			ftk_infer_free(S.engines[w][i]);
		free(S.engines[w]);
	}
	free(S.engines);
	free(th);
	for (int i = 0; i < S.n_models; i++)
		free(S.models[i].name);
	ftk_tool_release(&t);
	return 0;
}
