/*
 * openai.h: the OpenAI chat-completions protocol, once.
 *
 * Three parts of ftk speak it: ftk-eval's endpoint backend asks a model,
 * the model-graded judges ask a judge model, and ftk-serve answers as one.
 * What they share lives here, so that a request, a reply and a set of
 * generation settings mean the same thing everywhere:
 *
 *   - URLs: the .../chat/completions URL of an endpoint given as a base URL,
 *     and a public form of it (no query string, no user:password) that may
 *     be written to files;
 *   - requests: the body for (model, messages, tools, generation settings),
 *     with the sample index added to "seed" so k samples are k draws;
 *   - replies: what choices[0] holds (text, tool calls, finish reason) and
 *     the usage, and the message a server put in an error body;
 *   - generation settings: temperature, top_p, top_k, max_tokens (or
 *     max_completion_tokens), seed, n, stop, stream, read and range-checked
 *     once, into a plain struct that the model runtime turns into its own
 *     sampler options;
 *   - the reply cache: a reply stored on disk under the hash of (URL,
 *     request body, sample index), so a later identical question to the same
 *     server is answered without asking, and the same body sent to another
 *     server or model never is.
 *
 * lib/ never prints and never exits; nothing here does I/O except the cache.
 */
#ifndef FTK_OPENAI_H
#define FTK_OPENAI_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "err.h"
#include "strbuf.h"

/* ------------------------------------------------------------------ URLs */

/*
 * The chat-completions URL for endpoint: a base URL ("http://h:8000"), one
 * ending in /v1, or the full .../chat/completions URL; a query string is
 * kept at the end.  Caller frees.
 */
char *ftk_openai_chat_url(const char *endpoint);

/* ftk_openai_chat_url without what may hold a secret (query, user:password@). Caller frees. */
char *ftk_openai_public_url(const char *endpoint);

/* -------------------------------------------------------------- requests */

/*
 * The request body for one question: {"model", "messages", "tools" (when
 * non-empty), every member of params (generation settings; may be NULL)},
 * with "seed" (when params has a number there) plus seed_offset.  messages,
 * tools and params are borrowed.  Caller frees the string.
 */
char *ftk_openai_chat_request(const char *model, const cJSON *messages, const cJSON *tools,
			      const cJSON *params, long seed_offset);

/* ---------------------------------------------------------------- replies */

/* What a chat completion's first choice holds.  Borrowed from the response. */
struct ftk_openai_reply {
	const cJSON *message;		/* choices[0].message */
	const char *text;		/* its content as text (parts joined), or NULL */
	const cJSON *tool_calls;	/* message.tool_calls as given (any JSON), or NULL */
	const char *finish_reason;	/* or NULL */
	long prompt_tokens, completion_tokens;	/* usage; -1 unknown */
	struct strbuf text_buf;		/* owns text when the content came in parts */
};

/*
 * Read resp (a parsed chat completion) into *r.  Returns 0, or FTK_EDATA
 * when it has no choices[0].message object (r is then empty).  Release
 * with ftk_openai_reply_release (also after a failure).
 */
int ftk_openai_reply_read(const cJSON *resp, struct ftk_openai_reply *r);
/* Read a bare message object ({"content", "tool_calls"}) into *r. */
void ftk_openai_reply_from_message(const cJSON *msg, struct ftk_openai_reply *r);
void ftk_openai_reply_release(struct ftk_openai_reply *r);

/*
 * lib/http's validator for chat completions (ftk_http_validate_fn): 0 when
 * body is JSON with a choices[0].message object, non-zero otherwise.
 */
int ftk_openai_chat_valid(const char *body, size_t len, void *ctx);

/*
 * The message a server put in an error body: error.message, a string
 * "error", "message" or "detail", else the body itself (text), cut to max
 * bytes at a UTF-8 boundary, invalid bytes as U+FFFD, appended to out.
 * Returns out->buf.
 */
const char *ftk_openai_error_message(const char *body, size_t len, size_t max, struct strbuf *out);

/* -------------------------------------------------------------- settings */

#define FTK_OPENAI_MAX_STOP 4

/*
 * Generation settings of a request.  ftk_openai_gen_read overwrites only
 * the members the request has, so the caller pre-fills its own defaults
 * (an OpenAI server's: temperature 1; an eval's: greedy).
 */
struct ftk_openai_gen {
	double temperature;		/* [0, 2] */
	double top_p;			/* (0, 1] */
	int top_k;			/* >= 0 (an extension; 0 off) */
	long max_tokens;		/* [1, 1e6], from max_tokens or max_completion_tokens */
	int has_seed;
	uint64_t seed;
	int n;				/* [1, 16] */
	const char *stop[FTK_OPENAI_MAX_STOP];	/* borrowed from the request */
	int n_stop;
	int stream;
};

/*
 * Read the generation settings of req (a request body, or a suite's
 * "generation" object) into *g.  Absent or null members leave g alone.
 * Returns 0, or FTK_EDATA with err->field the parameter's name and a
 * message in OpenAI's words ("temperature must be a number", "top_p is out
 * of range", "stop must be a string or up to 4 strings").  Every range is
 * checked on the double before it is converted: max_tokens, n, top_k and
 * seed must be integers (a seed any 64-bit one, negative ones wrapping),
 * and NaN, infinities or 1e300 are "out of range", never converted.
 */
int ftk_openai_gen_read(const cJSON *req, struct ftk_openai_gen *g, struct ftk_error *err);

/* ------------------------------------------------------------------ cache */

/*
 * The reply cache in dir: file dir/<2 hex>/<30 hex>.json named by the hash
 * of (url, body, sample).  url is whatever identifies the server (a chat
 * URL; the public form is enough).  get returns the stored reply (caller
 * frees) when there is one that passes ftk_openai_chat_valid, else NULL;
 * put stores reply[0..len) atomically (a failure is silent: the cache is an
 * optimisation).  dir NULL: no cache.
 */
char *ftk_openai_cache_get(const char *dir, const char *url, const char *body, long sample);
void ftk_openai_cache_put(const char *dir, const char *url, const char *body, long sample,
			  const char *reply, size_t len);

#endif
