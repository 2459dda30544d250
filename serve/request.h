/*
 * request.h: an OpenAI completions or chat-completions request, read and
 * checked the way ftk-serve answers it.
 *
 * ftk-serve's connection threads parse requests at once, so this module
 * keeps no state of its own: everything a parse produces (the settings, the
 * error text) lives in the caller's structs, and two threads parsing two
 * requests never share a byte.  It never prints and never exits; the server
 * turns a failure into OpenAI's error body with ftk_serve_error_body.
 *
 * What is checked, in this order (the first failure is the one reported):
 * the model (a string naming a served model: 404 model_not_found
 * otherwise); for chat, the messages (a non-empty array of objects with a
 * string role, each content a string or a list of text parts, or null only
 * for an assistant turn that has tool_calls); for completions, the prompt
 * (a string, or an array of token ids, or one such array in an array); the
 * generation settings (lib/openai.h: every range checked before any
 * conversion); logprobs/top_logprobs/echo; and max_tokens 0, which only a
 * completions request with echo may ask for (it scores the prompt).
 *
 * Error messages may quote the request (an unknown model's name): the quote
 * is cut to FTK_SERVE_QUOTE_MAX bytes at a character boundary, and the error
 * body writer replaces any byte that is not UTF-8, so an error body is
 * always valid UTF-8 JSON whatever the request held.
 */
#ifndef FTK_SERVE_REQUEST_H
#define FTK_SERVE_REQUEST_H

#include <stdint.h>
#include <cjson/cJSON.h>
#include "lib/openai.h"
#include "lib/strbuf.h"

#define FTK_SERVE_QUOTE_MAX 200
#define FTK_SERVE_MAX_TOP 20	/* logprobs alternatives, as OpenAI allows */

/* What a request asks for.  Pointers into the request are borrowed from it. */
struct ftk_serve_request {
	int chat;			/* 1: chat completions, 0: completions */
	int model;			/* index into the served names */
	const cJSON *messages;		/* chat: the messages array (borrowed) */
	const cJSON *tools;		/* chat: a non-empty tools array, else NULL (borrowed) */
	const char *prompt;		/* completions: a text prompt (borrowed), else NULL */
	uint32_t *prompt_ids;		/* completions: token ids (owned), else NULL */
	int n_prompt_ids;
	struct ftk_openai_gen gen;	/* OpenAI's defaults, then the request's settings */
	int logprobs;			/* alternatives per token; -1: no logprobs */
	int echo;			/* completions: the prompt comes back first */
	int zero_tokens;		/* completions: max_tokens 0 (with echo) */
};

/* A request refused: what the server answers. */
struct ftk_serve_error {
	int status;			/* 400 or 404 */
	char param[64];			/* the request member at fault, "" when none */
	const char *code;		/* OpenAI's code ("model_not_found") or NULL; static */
	struct strbuf msg;		/* the message (owned) */
};

/*
 * Read req (a parsed request body, borrowed; it must outlive *out) as a
 * chat (chat != 0) or completions request for a server serving the n_names
 * model names.  Returns 0 and fills *out (release with
 * ftk_serve_request_release), or -1 and fills *e (release with
 * ftk_serve_error_release); *out then holds nothing to free.  *e must
 * have been initialised with ftk_serve_error_init; it may be reused.
 */
int ftk_serve_request_parse(const cJSON *req, int chat, const char *const *names, int n_names,
			    struct ftk_serve_request *out, struct ftk_serve_error *e);
void ftk_serve_request_release(struct ftk_serve_request *r);
void ftk_serve_error_init(struct ftk_serve_error *e);
void ftk_serve_error_release(struct ftk_serve_error *e);

/*
 * Append OpenAI's error body {"error":{"message","type","param","code"}} to
 * sb.  msg[0..len) may hold any bytes: those that are not UTF-8 are written
 * as U+FFFD.  param and code may be NULL (JSON null).
 */
void ftk_serve_error_body(struct strbuf *sb, const char *msg, size_t len, const char *type,
			  const char *param, const char *code);

/*
 * Append s to sb quoted for a message: at most max bytes, cut at a UTF-8
 * character boundary, with "..." after a cut.  Invalid bytes are left for
 * the body writer to replace.
 */
void ftk_serve_quote(struct strbuf *sb, const char *s, size_t max);

#endif
