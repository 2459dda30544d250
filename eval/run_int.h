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
	long case_lo, case_hi;		/* this run's cases: [lo, hi) (all, unless a shard) */
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

/* One answer to one unit, whatever the backend; strings borrowed (answer.c). */
struct answer {
	const char *text;		/* NULL: none */
	const cJSON *tool_calls;	/* as the answer gave them (a list, or anything
					   else when defective); NULL: none */
	const char *finish_reason;
	long prompt_tokens, completion_tokens;	/* -1 unknown */
	double latency_s;
	int attempts;
	int cached;
	long invalid_utf8;		/* strings repaired by answer_repair_utf8 */
	int rescored;			/* read back from a stored result: nothing spent now */
	const char *error;		/* non-NULL: no answer (the model could not be reached) */
	const char *error_kind;		/* its cause: "http_400", "timeout", "local_model"... */
	int transient;			/* asking again may help */
	struct strbuf text_buf;
};

/* An empty answer (tokens unknown); release with answer_release. */
void answer_init(struct answer *a);
void answer_release(struct answer *a);
/*
 * Repair every string (values and keys) of v, its siblings after it and
 * their children that is not valid UTF-8, in place (U+FFFD per bad byte).
 * Returns how many strings were repaired.
 */
long answer_repair_utf8(cJSON *v);
/* Fill a's text and tool calls from a chat message object (borrowed). */
void answer_from_message(struct answer *a, const cJSON *msg);
/* Read a chat completion (validated) into *a; borrowed from resp. */
void answer_from_chat(struct answer *a, const cJSON *resp);
/* Read a stored result line's answer back (a rescore); borrowed from line. */
void answer_from_result(struct answer *a, const cJSON *line);
/* Set a->tool_calls from a "tool_calls" value: NULL for absent, null or []. */
void answer_set_tool_calls(struct answer *a, const cJSON *tc);
/*
 * What makes the answer defective, as a list of {"kind","reason"}
 * (kinds "invalid_utf8", "malformed_call", "empty_output"), or NULL when
 * it is well-formed.  Caller frees.
 */
cJSON *answer_defects(const struct answer *a);

/*
 * Score one unit's answer, append its result line, count it in c->st.
 * Returns 0, or FTK_EIO when the line cannot be appended.
 */
int eval_finish_unit(struct ctx *c, long unit, const struct answer *a, struct ftk_error *err);

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
	char *body;		/* endpoint: the chat completion, or NULL with error */
	int local;		/* local: the answer itself, below */
	char *text;
	const char *finish_reason;	/* static */
	long prompt_tokens, completion_tokens;
	char *error;
	char *error_kind;	/* with error: its cause ("http_400", "timeout"...) */
	int transient;		/* with error: asking again may help */
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

/*
 * The samples per case an outputs file holds: the most lines of one case
 * in the suite (1 when none).  0 or the reader's error.
 */
int outputs_samples(const char *path, const struct ftk_eval_suite *s, int *K, struct ftk_error *err);
/* Score the answers of opts->outputs_path for every unit not done. */
int eval_run_outputs(struct ctx *c, struct ftk_error *err);
/* Ask an OpenAI-compatible endpoint for every unit not done (cache first). */
int eval_run_endpoint(struct ctx *c, struct ftk_error *err);
/* Generate with local engines for every unit not done. */
int eval_run_local(struct ctx *c, struct ftk_error *err);

/* The judges' door to a judge model (struct ftk_judge_env.chat); vctx is the ctx. */
int endpoint_judge_chat(void *vctx, const cJSON *request, cJSON **response, struct ftk_error *err);
/* The default reply cache directory from the environment, or NULL.  Caller frees. */
char *endpoint_cache_dir(void);

/* ------------------------------------------------------------ identity.c */

/* Shard index of count's cases of n: [*lo, *hi) = [index*n/count, (index+1)*n/count). */
void ftk_eval_shard_range(size_t n, int index, int count, long *lo, long *hi);

/*
 * The identity of a run (what its scores depend on; see identity.c).  With
 * model_from (a stored run.json), the model side is copied from it instead
 * of being taken from o.  Caller frees.
 */
cJSON *run_identity(const struct ftk_eval_run_opts *o, const struct ftk_eval_suite *s, int K,
		    const cJSON *model_from);
/*
 * Describe where identity now differs from old into out ("judges[0].settings.mode
 * ("fuzzy", now "exact"), ..."); *model is set when a model-side member differs.
 * Returns how many leaves differ (0: the same run).
 */
int identity_diff(const cJSON *old, const cJSON *now, struct strbuf *out, int *model);
/* 1 when member (a top-level identity key) describes the model side. */
int identity_is_model_side(const char *member);
/* The hash of what the model is shown for case k (messages, tools), as 32 hex digits. */
void prompt_hash(const struct ftk_eval_case *k, char out[33]);
/* Read dir/run.json: 0, FTK_ENOTFOUND (none), or FTK_EDATA. Caller frees *out. */
int run_json_read(const char *dir, cJSON **out, struct ftk_error *err);
/* Write dir/run.json (atomically): the identity plus the absolute suite_path. */
int run_json_write(const char *dir, const cJSON *id, const char *suite_path, struct ftk_error *err);

/* ------------------------------------------------------------ results.c */

/* Rewrite results.jsonl: one line per unit, in suite order, then any others. */
int results_compact(struct ctx *c, struct ftk_error *err);
/* Write dir/summary.json from dir/results.jsonl. */
int summary_write(const char *dir, struct ftk_error *err);

#endif
