/*
 * run_int.h: what the pieces of the eval runner share (not for other parts).
 *
 * ftk_eval_run (run.c) owns a struct ctx for one run: the suite, the judges,
 * which (case, sample) units are done, the results file being appended.  A
 * backend (backend_outputs.c, backend_endpoint.c, backend_local.c) gets the
 * units that are not done to an answer; every answer, whatever its backend,
 * goes through eval_finish_unit(), which scores it and appends its result
 * line.  The endpoint and local backends hand answers to a scoring thread
 * (score_thread) through a struct score_queue, so that slow judges never stall
 * generation.  results.c reads and rewrites results files; summary.c turns
 * results into summaries and comparisons; smap.c is the string map they use
 * for lookups by (id, sample) and by name.
 *
 * The unit of work is a (case, sample) pair, numbered case * K + sample.
 */
#ifndef FTK_EVAL_RUN_INT_H
#define FTK_EVAL_RUN_INT_H

#include <pthread.h>
#include <stddef.h>
#include <cjson/cJSON.h>
#include "lib/err.h"
#include "lib/http.h"
#include "lib/strbuf.h"
#include "run.h"
#include "suite.h"

/* ------------------------------------------------------------ smap.c */

/*
 * A small open-addressing hash table from strings to longs (cJSON objects
 * are linear lists).  Zero-initialized is empty; keys are copied.
 */
struct smap {
	char **keys;
	long *vals;
	size_t cap, n;
};

void smap_put(struct smap *m, const char *k, long v);
/* The value for k, or dflt when k is absent. */
long smap_get(const struct smap *m, const char *k, long dflt);
/* The id for k, adding it as the next id (the count so far) when new. */
long smap_intern(struct smap *m, const char *k);
void smap_free(struct smap *m);

/* The smap key of (id, sample), written into buf. */
void unit_key(char *buf, size_t n, const char *id, long sample);
/* o[k] as a long when it is a number, else dflt (o may be NULL). */
long json_long(const cJSON *o, const char *k, long dflt);

/* ------------------------------------------------------------ results.c */

/* A results.jsonl appended one write(2) per line. */
struct appender {
	int fd;
	int checked;
	const char *path;
};

/* run's results.jsonl when run is a directory, else run itself.  Caller frees. */
char *results_path(const char *run);
/* Append s and a newline (after a newline when a torn line ends the file). */
int append_line(struct appender *a, const char *s, struct ftk_error *err);
/* mkdir -p; 0 or FTK_EIO. */
int eval_mkdir_p(const char *path, struct ftk_error *err);

/* ------------------------------------------------------------ run.c */

struct ctx {
	const struct ftk_eval_run_opts *o;
	struct ftk_eval_suite *suite;
	struct ftk_judge **judges;
	const char **labels;
	size_t n_judges;
	int K;
	long n_units;
	long n_outside;			/* units of other shards (marked done) */
	unsigned char *done;		/* per unit: 1 when it has a good result */
	struct appender app;
	struct ftk_eval_run_stats *st;
	char *chat_url;
	char *judge_url;
	struct ftk_http_opts http;
	struct ftk_http_opts judge_http;
	char *cache_dir;
	long finished;
};

/* One answer to one unit, whatever the backend; strings borrowed. */
struct answer {
	const char *text;		/* NULL: none */
	const cJSON *tool_calls;	/* NULL: none */
	const char *finish_reason;
	long prompt_tokens, completion_tokens;	/* -1 unknown */
	double latency_s;
	int attempts;
	int cached;
	const char *error;		/* non-NULL: the model could not be reached */
	struct strbuf text_buf;
};

/* Fill a's text and tool calls from a chat message object (borrowed). */
void answer_from_message(struct answer *a, const cJSON *msg);
/* Read a chat completion (validated) into *a; borrowed from resp. */
void answer_from_chat(struct answer *a, const cJSON *resp);

/*
 * Score one unit's answer, append its result line, count it in c->st.
 * Returns 0, or FTK_EIO when the line cannot be appended.
 */
int eval_finish_unit(struct ctx *c, long unit, struct answer *a, struct ftk_error *err);

/*
 * Answers go from the transfer loop to a scoring thread through this queue,
 * so that a slow judge (a judge model's k votes) never stalls the transfers
 * in flight: the loop keeps driving libcurl while the scorer works, and a
 * model answer that arrived is never timed out because nobody read it.  The
 * scorer is the only writer of results.jsonl and of the scoring counters.
 */
struct work {
	struct work *next;
	long unit;
	char *body;		/* the chat completion, or NULL with error */
	char *error;
	double latency_s;
	int attempts;
	int cached;
};

struct score_queue {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct work *head, *tail;
	int closed;
	int rc;			/* the scorer's first failure */
	struct ftk_error err;
	struct ctx *c;
};

/* Queue w (consumed) for the scoring thread. */
void score_queue_push(struct score_queue *q, struct work *w);
/* The scoring thread's first failure (< 0), or 0. */
int score_queue_failed(struct score_queue *q);
/* The scoring thread: scores every queued work until the queue is closed and empty. */
void *score_thread(void *arg);

/* ------------------------------------------------------------ backends */

/* Score the answers of opts->outputs_path for every unit not done. */
int eval_run_outputs(struct ctx *c, struct ftk_error *err);
/* Ask an OpenAI-compatible endpoint for every unit not done (cache first). */
int eval_run_endpoint(struct ctx *c, struct ftk_error *err);
/* Generate with local engines for every unit not done. */
int eval_run_local(struct ctx *c, struct ftk_error *err);

/* The .../chat/completions URL of an endpoint given as a base URL.  Caller frees. */
char *endpoint_chat_url(const char *endpoint);
/* lib/http's validate callback: 0 when body is a chat completion with a message. */
int endpoint_chat_valid(const char *body, size_t len, void *ctx);
/* The judges' door to a judge model (struct ftk_judge_env.chat); vctx is the ctx. */
int endpoint_judge_chat(void *vctx, const cJSON *request, cJSON **response, struct ftk_error *err);
/* The default reply cache directory from the environment, or NULL.  Caller frees. */
char *endpoint_cache_dir(void);

/* ------------------------------------------------------------ results.c */

/* Rewrite results.jsonl: one line per unit, in suite order, then any others. */
int results_compact(struct ctx *c, struct ftk_error *err);
/* Write dir/summary.json from dir/results.jsonl. */
int summary_write(const char *dir, struct ftk_error *err);

#endif
