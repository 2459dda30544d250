/*
 * judge.h: one interface for every judge.
 *
 * A judge looks at one eval case and one model output and says what it
 * found, as numbers a summary can average and as words a reviewer can read.
 * ftk-eval knows judges only through this header: it creates each judge a
 * suite names from the suite's settings object, scores every case with it,
 * and destroys it.  Judges never call eval back.
 *
 * What a judge returns for a case (struct ftk_judge_result):
 *
 *   - metrics: named numbers in [0, 1] ("citation.recall" 0.75,
 *     "toolcall.correct" 1).  Each is labelled semantic (it checks meaning:
 *     the cited passage supports the sentence, the call has the right
 *     arguments) or surface (it checks form: a "[1]" is present, a regular
 *     expression matched).  A surface metric names its semantic twin, so a
 *     report can print them side by side and a case where they disagree can
 *     be flagged.  binary says the value is pass/fail (0 or 1), which the
 *     statistics treat as a proportion (Wilson interval, McNemar test).
 *     primary is the index of the metric that says whether the case passed
 *     this judge, used to notice judges that disagree.
 *   - failures: why the case failed, as a stable machine kind
 *     ("wrong_function", "type_error:float", "unsupported_sentence") and a
 *     sentence for people.
 *   - flags: why a person should look at the case even if its numbers look
 *     fine ("marker_unsupported", "fabricated_citation", "split_vote").
 *   - detail: a JSON object for reviewers (per-sentence citation support,
 *     per-call mismatch), shape documented per judge in docs/judges.md.
 *   - usage: tokens and calls a model-graded judge spent, for the ledger.
 *
 * Metric names are "<label>.<metric>" where label is the judge's name unless
 * the settings give "label" (so a suite can run two match judges).  Every
 * judge also accepts "compare_as": a group name put on its primary metric,
 * so that a summary can compare the methods that scored the same cases
 * (strict against flexible extraction, a regex against an LLM judge) and
 * say when the method moved the number (method sensitivity).
 *
 * Model-graded judges (llm, and the citation judge's "llm" entailment) need
 * to send chat completion requests.  They do it through struct ftk_judge_env,
 * which eval fills with its HTTP client (lib/http.h); a judge created with no
 * env, or an env with no chat function, refuses settings that need one with
 * FTK_EUSAGE, and every offline judge works without it.
 *
 * Ownership rule for the whole API: settings, case and output are borrowed
 * for the duration of the call; a judge copies what it keeps.  A result owns
 * everything in it (strings, detail) and is released with
 * ftk_judge_result_release().
 */
#ifndef FTK_JUDGE_H
#define FTK_JUDGE_H

#include <stddef.h>
#include <cjson/cJSON.h>
#include "lib/err.h"

/* ------------------------------------------------------------------ inputs */

/* The model's answer to one case. */
struct ftk_judge_output {
	const char *text;		/* the assistant text; NULL or "" when none */
	const cJSON *tool_calls;	/* OpenAI "tool_calls" as the model gave them:
					   an array, or (a defective answer) any JSON;
					   NULL: none */
	const char *finish_reason;	/* "stop", "length", "tool_calls", or NULL */
};

/*
 * Send one OpenAI chat-completions request and return the parsed response.
 * request is the whole body ({"model":..,"messages":[..],...}), borrowed.
 * On success *response is the parsed JSON body (caller frees with
 * cJSON_Delete) and the return is 0; on failure a negative FTK_E* code
 * (FTK_ENET for transport or server errors) with err filled.
 */
typedef int (*ftk_judge_chat_fn)(void *ctx, const cJSON *request, cJSON **response,
				 struct ftk_error *err);

/* What a judge may use from its caller.  Every field may be NULL. */
struct ftk_judge_env {
	ftk_judge_chat_fn chat;		/* sends judge-model requests */
	void *chat_ctx;			/* passed to chat */
	const char *cache_dir;		/* where model-graded judges cache replies;
					   NULL: settings "cache" or no cache */
	const char *endpoint;		/* where chat sends requests (a URL, or any
					   name): part of the reply cache's key, so
					   that another server's reply is never reused */
};

/* ----------------------------------------------------------------- results */

enum ftk_metric_kind {
	FTK_METRIC_SEMANTIC = 0,	/* checks meaning */
	FTK_METRIC_SURFACE = 1,		/* checks form only */
};

struct ftk_metric {
	char *name;		/* "citation.recall" (owned) */
	double value;		/* in [0, 1] */
	int kind;		/* enum ftk_metric_kind */
	int binary;		/* 1 when value is 0 or 1 (pass/fail) */
	char *twin;		/* surface metric: its semantic twin's name; else NULL */
	char *compare_as;	/* the method group of a primary verdict (settings
				   "compare_as"): metrics of one group score the same
				   cases by different methods and are compared; else NULL */
};

struct ftk_judge_note {
	char *kind;		/* stable machine word: "wrong_function", "split_vote" */
	char *reason;		/* one sentence for people */
};

struct ftk_judge_usage {
	long calls;		/* judge-model requests answered (cache hits included) */
	long cache_hits;	/* of those, answered from the cache */
	long prompt_tokens;	/* tokens spent (cache hits cost nothing) */
	long completion_tokens;
};

struct ftk_judge_result {
	struct ftk_metric *metrics;
	size_t nmetrics, metrics_alloc;
	int primary;		/* index into metrics of the pass/fail verdict, -1: none */
	struct ftk_judge_note *failures;
	size_t nfailures, failures_alloc;
	struct ftk_judge_note *flags;
	size_t nflags, flags_alloc;
	cJSON *detail;		/* an object, owned; never NULL after init */
	struct ftk_judge_usage usage;
};

/* Make *r empty (detail an empty object). */
void ftk_judge_result_init(struct ftk_judge_result *r);
/* Free everything *r holds and leave it empty but needing init again.  NULL ok. */
void ftk_judge_result_release(struct ftk_judge_result *r);

/*
 * Append a metric (name and twin are copied; twin may be NULL).  Returns its
 * index.  A value outside [0, 1] is clamped.
 */
size_t ftk_judge_add_metric(struct ftk_judge_result *r, const char *name, double value,
			    int kind, int binary, const char *twin);
/* Append a failure or a flag; reason is printf-formatted.  Kind is copied. */
void ftk_judge_add_failure(struct ftk_judge_result *r, const char *kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void ftk_judge_add_flag(struct ftk_judge_result *r, const char *kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The metric called name, or NULL. Borrowed. */
const struct ftk_metric *ftk_judge_find_metric(const struct ftk_judge_result *r,
					       const char *name);

/*
 * The result as JSON (caller frees):
 *   {"metrics":{"citation.recall":{"value":0.5,"kind":"semantic"[,"compare_as":"g"]},
 *               "citation.marker_rate":{"value":1,"kind":"surface","twin":"citation.recall"}},
 *    "pass":true, "failures":[{"kind":..,"reason":..}], "flags":[..],
 *    "detail":{..}, "usage":{"calls":..,"cache_hits":..,"prompt_tokens":..,"completion_tokens":..}}
 * "pass" is present only when primary >= 0; "usage" only when calls > 0.
 */
cJSON *ftk_judge_result_to_json(const struct ftk_judge_result *r);

/* ------------------------------------------------------------------ judges */

struct ftk_judge;

/* What each judge implements (a table, as ggml's backends). */
struct ftk_judge_ops {
	const char *name;	/* "citation", "toolcall", "match", "json", "regex", "llm" */
	const char *summary;	/* one line for `ftk-eval --list-judges` */
	/*
	 * Parse settings (borrowed; NULL means all defaults) into *state.
	 * 0 or a negative FTK_E* code with err's field naming the bad setting.
	 */
	int (*create)(void **state, const cJSON *settings, const struct ftk_judge_env *env,
		      struct ftk_error *err);
	/*
	 * Score one case.  result is initialised by the caller; the judge
	 * appends metrics under bare names ("recall") and the wrapper prefixes
	 * them (and their twins) with the label afterwards.  A malformed case (missing "sources",
	 * bad "expected") returns FTK_EDATA with err's field set; a failed
	 * judge-model request returns FTK_ENET.  A wrong answer is not an error.
	 */
	int (*score)(void *state, const cJSON *kase, const struct ftk_judge_output *out,
		     struct ftk_judge_result *result, struct ftk_error *err);
	void (*destroy)(void *state);
	/*
	 * Optional (NULL: nothing to check).  Look at a case's ground truth
	 * before any output is judged and append, as flags of notes, what no
	 * output could satisfy (kind and reason, the reason naming the field
	 * and parameter).  Returns how many were appended.  A case the judge
	 * cannot read is left to score, which reports it.
	 */
	int (*check)(void *state, const cJSON *kase, struct ftk_judge_result *notes);
};

/*
 * Create the judge called name from its settings (a cJSON object or NULL;
 * borrowed).  env may be NULL (offline judges only).  On success *out is the
 * judge (free with ftk_judge_destroy) and the return is 0.  An unknown name
 * gives FTK_ENOTFOUND; bad settings FTK_EDATA or FTK_EUSAGE with err->field
 * naming the setting ("settings.tolerance").
 */
int ftk_judge_create(struct ftk_judge **out, const char *name, const cJSON *settings,
		     const struct ftk_judge_env *env, struct ftk_error *err);

/*
 * Score one case.  kase is the case record (borrowed): "id", "messages",
 * "sources", "tools", "expected", "rubric".  out is the model output.
 * result must have been initialised with ftk_judge_result_init(); the judge
 * appends to it, and metric names come out as "<label>.<metric>".
 * Returns 0, or a negative FTK_E* code (see struct ftk_judge_ops.score);
 * on error result may hold partial content and must still be released.
 */
int ftk_judge_score(struct ftk_judge *j, const cJSON *kase, const struct ftk_judge_output *out,
		    struct ftk_judge_result *result, struct ftk_error *err);

/*
 * Warnings about a case's ground truth that no output can satisfy (an
 * expected parameter with no accepted value, one the tool does not declare),
 * for a suite's loader to show before a run spends anything.  Appends them
 * as flags of notes (an initialised result) and returns how many; 0 for
 * judges that check nothing.  kase is borrowed.
 */
int ftk_judge_check_case(struct ftk_judge *j, const cJSON *kase, struct ftk_judge_result *notes);

/* Free a judge.  NULL is allowed. */
void ftk_judge_destroy(struct ftk_judge *j);

/* The judge's kind ("citation") and label (settings "label", else the kind). Borrowed. */
const char *ftk_judge_kind(const struct ftk_judge *j);
const char *ftk_judge_label(const struct ftk_judge *j);

/* The registry: the i-th judge's ops, or NULL past the end. */
const struct ftk_judge_ops *ftk_judge_registry(size_t i);
/* The ops of the judge called name, or NULL. */
const struct ftk_judge_ops *ftk_judge_lookup(const char *name);

/*
 * Flags that need every judge's result for one case, appended to *flags
 * (an initialised result; only its flags are touched):
 *   - "empty_output": the output has neither text nor tool calls;
 *   - "truncated": finish_reason is "length";
 *   - "surface_semantic_disagree": a surface metric and its semantic twin
 *     (in the same or another judge's result) fall on different sides of 0.5;
 *   - "judges_disagree": two judges' primary verdicts differ.
 * results may hold NULL entries (a judge that errored).  labels[i] names
 * results[i] in the reasons.
 */
void ftk_judge_case_flags(const struct ftk_judge_output *out,
			  const struct ftk_judge_result *const *results,
			  const char *const *labels, size_t n,
			  struct ftk_judge_result *flags);

#endif
