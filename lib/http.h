/*
 * http.h: many JSON POSTs in flight, with retries, over libcurl's multi
 * interface.
 *
 * Who uses it: ftk-eval's endpoint backend (chat completions against any
 * OpenAI-compatible server) and the LLM judge (a rubric graded by a judge
 * model).  Both send a JSON body to a URL and want the JSON that comes back,
 * for many requests at once, through a server that will sometimes be slow,
 * overloaded or broken.
 *
 * Model.  A client holds a queue.  ftk_http_submit() adds a request (it is
 * copied; nothing is sent yet); ftk_http_next() drives the transfers, keeping
 * at most max_in_flight of them open at once, and returns one finished
 * request at a time, in the order they finish.  "Finished" means a final
 * answer: either a success (HTTP 2xx whose body the optional validator
 * accepted) or a failure that retrying will not fix or that survived every
 * attempt.  All of it runs in the caller's thread; there are no callbacks
 * into the caller except the validator.
 *
 * Retries.  A request is retried, up to max_attempts attempts in all, after a
 * timeout, a connection error (refused, reset, dropped mid-response, nothing
 * received), HTTP 408, 429, 5xx, or a 2xx body the validator rejects (a
 * server that answered garbage).  The wait before attempt k+1 is exponential
 * with jitter: base * 2^(k-1), capped at max_wait, times a random factor in
 * [0.5, 1).  A Retry-After header (seconds or an HTTP date) on a 429 or 503
 * replaces the computed wait when it is longer, capped at max_wait.  408
 * (the server timed the request out) is retried like a timeout, counted
 * with the 5xx.  Other 4xx answers (400, 401, 404...) are final at once:
 * asking again will not change them.
 *
 * The API key.  The caller names an environment variable (api_key_env); its
 * value is read when the client is made and sent as "Authorization: Bearer
 * <key>".  The key is never copied into an error message, a result, a log or
 * a file, and the header buffers that held it are wiped before they are
 * freed.  Messages name the variable, never its value.  A server that echoes
 * the key back has every echo replaced by "***" in the body handed over, in
 * each form a body can carry it: raw, JSON-escaped (any character as \uXXXX,
 * / as \/, the backslash itself doubled), and URL-encoded (%XX, either case).
 *
 * Ownership.  The client owns its queue and the copies of submitted bodies.
 * A result returned by ftk_http_next() belongs to the caller, who releases it
 * with ftk_http_result_release().  tag is the caller's pointer, handed back
 * untouched.
 */
#ifndef FTK_HTTP_H
#define FTK_HTTP_H

#include <stddef.h>
#include "err.h"

/*
 * Decide whether a 2xx body is a usable answer.  Return 0 to accept it, or
 * non-zero to treat the attempt as a transient failure (it is retried, and
 * if it is the last attempt, the result fails with "invalid response").
 */
typedef int (*ftk_http_validate_fn)(const char *body, size_t len, void *ctx);

struct ftk_http_opts {
	int max_in_flight;	/* requests open at once; <= 0 means 4 */
	double timeout_s;	/* whole-transfer limit per attempt; <= 0 means 120 */
	double connect_timeout_s; /* <= 0 means min(timeout_s, 10) */
	int max_attempts;	/* attempts per request, first included; <= 0 means 6 */
	double backoff_base_s;	/* wait before the 2nd attempt (before jitter); < 0 means 1 */
	double max_wait_s;	/* cap on any single wait, Retry-After included; <= 0 means 60 */
	const char *api_key_env; /* NULL or "": no Authorization header */
	const char *user_agent;	/* NULL: "ftk/<version>" */
	ftk_http_validate_fn validate;	/* NULL: any 2xx body is accepted */
	void *validate_ctx;
	unsigned long seed;	/* jitter seed; 0 means from the clock */
};

/* Fill *o with the defaults described above (all fields). */
void ftk_http_opts_init(struct ftk_http_opts *o);

/* What ended a request (its last attempt). */
enum ftk_http_outcome {
	FTK_HTTP_OK = 0,
	FTK_HTTP_STATUS,	/* an HTTP status that is not 2xx: see status */
	FTK_HTTP_TIMEOUT,
	FTK_HTTP_CONNECT,	/* could not connect at all (refused, unknown host) */
	FTK_HTTP_CONN,		/* the connection broke (reset, dropped, nothing back) */
	FTK_HTTP_INVALID,	/* a 2xx body the validator rejected */
	FTK_HTTP_OTHER,		/* too large, or another libcurl failure */
};

struct ftk_http_result {
	void *tag;		/* the caller's, from ftk_http_submit */
	int outcome;		/* enum ftk_http_outcome */
	int code;		/* 0 on success, FTK_ENET on failure */
	long status;		/* the last HTTP status seen, 0 when none arrived */
	char *body;		/* the last body received (NUL-terminated), or NULL; owned */
	size_t body_len;
	int attempts;		/* attempts made, >= 1 */
	int retries_429, retries_5xx, retries_timeout, retries_conn, retries_invalid; /* 5xx counts 408 */
	double seconds;		/* from the first attempt's start to the final answer */
	char error[256];	/* why it failed ("" on success): "HTTP 401: ...", "timeout after 3 attempts" */
};

struct ftk_http_client;

/*
 * Make a client.  When opts->api_key_env names a variable that is unset or
 * empty, fails with FTK_EUSAGE ("environment variable 'X' is not set").
 * Returns 0 and *out (free with ftk_http_client_free), or a negative code.
 */
int ftk_http_client_new(struct ftk_http_client **out, const struct ftk_http_opts *opts,
			struct ftk_error *err);

/*
 * Queue a POST of body[0..len) (Content-Type: application/json) to url.
 * url and body are copied.  tag comes back in the result.  Returns 0, or
 * FTK_EUSAGE for an empty url.
 */
int ftk_http_submit(struct ftk_http_client *c, const char *url, const char *body, size_t len,
		    void *tag, struct ftk_error *err);

/* Requests submitted and not yet returned by ftk_http_next(). */
size_t ftk_http_pending(const struct ftk_http_client *c);

/*
 * Wait for the next request to finish (after its retries) and move it into
 * *res (which the caller releases).  Returns 1 when a result was filled, 0
 * when nothing is pending, or FTK_EIO when libcurl itself failed (res is
 * then untouched).  A failed request is a result with res->code FTK_ENET,
 * not an error return.
 */
int ftk_http_next(struct ftk_http_client *c, struct ftk_http_result *res, struct ftk_error *err);

/* Free what a result owns and clear it.  NULL allowed. */
void ftk_http_result_release(struct ftk_http_result *res);

/* Free the client; requests still queued or in flight are abandoned.  NULL allowed. */
void ftk_http_client_free(struct ftk_http_client *c);

/*
 * One request, start to finish: a client from opts, one submit, one next.
 * Returns 0 with *res filled (res->code tells success) or a negative code
 * for a usage or libcurl failure.  For callers with one question at a time.
 */
int ftk_http_post(const struct ftk_http_opts *opts, const char *url, const char *body,
		  size_t len, struct ftk_http_result *res, struct ftk_error *err);

/*
 * Parse a Retry-After value: delta-seconds ("120") or an HTTP date ("Wed,
 * 21 Oct 2015 07:28:00 GMT", relative to now).  Returns the wait in seconds
 * (0 for a date in the past), or -1 when the value is neither.
 */
double ftk_http_parse_retry_after(const char *value, double now);

/*
 * The wait before attempt number `attempt` + 1 (attempt >= 1 attempts made):
 * min(max_wait, base * 2^(attempt-1)) * (0.5 + 0.5 * u) for u in [0, 1).
 * Exposed for tests.
 */
double ftk_http_backoff(const struct ftk_http_opts *o, int attempt, double u);

#endif
