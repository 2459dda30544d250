/*
 * run.h: running a suite against a model and scoring it, resumably.
 *
 * A run lives in a directory:
 *
 *   run.json        what was run (suite, backend, endpoint, model, samples,
 *                   generation settings); a resume must match it
 *   results.jsonl   one line per (case, sample), appended as each finishes
 *   summary.json    per-metric statistics, written at the end
 *
 * Backends, one per run:
 *   outputs   score answers that already exist (an outputs JSONL, or another
 *             run's results.jsonl); never queries a model;
 *   endpoint  an OpenAI-compatible /v1/chat/completions server, through
 *             lib/http (N in flight, timeouts, retries), tools passed through;
 *   local     a model directory (and an adapter) run with the trainer's
 *             inference engine, -j engines on their own threads.
 *
 * Results.  A line (docs/formats.md, "Eval results") holds id, sample,
 * cluster, output, tool_calls, finish_reason, usage, latency_s, cached, and
 * either "error" (the model could not be reached or answered nonsense after
 * every retry: never scored, never counted as wrong, retried on resume) or
 * "judges" (each judge's result), "scores" (every metric by name) and
 * "flags" (why a person should look).  The file is appended with one
 * write(2) per line, so a killed run leaves at worst one torn last line, which
 * a resume skips.  A resume re-reads the file, keeps every (case, sample)
 * that has a result without an error, and asks only for the rest.  At the
 * end of a complete pass the file is rewritten (atomically) with one line per
 * (case, sample) in suite order.
 *
 * Cache.  An endpoint reply is stored under the hash of (endpoint, request
 * body, sample index), where the body holds the model, the messages, the
 * tools and the generation settings; a later run with the same key reads it
 * instead of asking.  Sample k of --samples K is its own key, so K samples
 * are K independent draws (with a "seed" in the settings, sample k uses
 * seed + k).
 */
#ifndef FTK_EVAL_RUN_H
#define FTK_EVAL_RUN_H

#include <cjson/cJSON.h>
#include "lib/err.h"
#include "suite.h"

enum ftk_eval_backend { FTK_EVAL_OUTPUTS = 1, FTK_EVAL_ENDPOINT, FTK_EVAL_LOCAL };

struct ftk_eval_run_opts {
	const char *suite_path;
	const char *run_dir;		/* created when missing */
	int backend;			/* enum ftk_eval_backend */
	const char *outputs_path;	/* FTK_EVAL_OUTPUTS */
	const char *endpoint;		/* FTK_EVAL_ENDPOINT: base URL or full .../chat/completions */
	const char *model;		/* the model name sent to the endpoint */
	const char *api_key_env;	/* variable holding the key, or NULL */
	const char *model_dir;		/* FTK_EVAL_LOCAL */
	const char *adapter_dir;	/* FTK_EVAL_LOCAL, may be NULL */
	const char *tokenizer_dir;	/* FTK_EVAL_ENDPOINT with log-likelihood suites: the model's tokenizer */
	int jobs;			/* requests in flight (<= 0: 4), or local engines (<= 0: 1) */
	int samples;			/* <= 0: 1, or with outputs as many as the file holds
					   for a case */
	long limit;			/* only the first N cases; <= 0: all */
	int shard_index, shard_count;	/* shard_count > 0: only the cases of slice
					   shard_index of shard_count (see below) */
	double timeout_s;		/* per attempt; <= 0: 120 */
	int max_attempts;		/* <= 0: 6 */
	double retry_base_s;		/* < 0: 1 */
	double retry_max_wait_s;	/* <= 0: 60 */
	const char *cache_dir;		/* NULL: $FTK_CACHE_DIR, $XDG_CACHE_HOME/ftk/eval, ~/.cache/ftk/eval */
	int no_cache;
	const char *judge_endpoint;	/* for model-graded judges; NULL: endpoint */
	const char *judge_api_key_env;	/* NULL: api_key_env */
	/* called after each result (from the scoring thread): done of total
	   (resumed included), errors this invocation; NULL: nothing */
	void (*on_progress)(void *ctx, long done, long total, long errors);
	void *progress_ctx;
	/* called once per warning about the suite's ground truth (a judge's
	   ftk_judge_check_case, when the run starts): msg names the suite file,
	   the case (its id, cases file and line) and the field; NULL: nothing */
	void (*on_warning)(void *ctx, const char *msg);
	void *warning_ctx;
	int rescore;			/* judge the stored outputs again (a suite or judges
					   that differ from run.json's are then accepted) */
	int rescore_only;		/* ftk eval rescore: no backend; the model side, the
					   samples and (without suite_path) the suite from run.json */
};

/* Defaults for every field (zeroes and NULLs, samples 1, jobs 0: the backend's default). */
void ftk_eval_run_opts_init(struct ftk_eval_run_opts *o);

struct ftk_eval_run_stats {
	long units;			/* (case, sample) pairs in this run */
	long resumed;			/* already done in results.jsonl */
	long asked;			/* requests that reached the backend */
	long cache_hits;
	long errors;			/* pairs that ended in an error this time */
	long scored;
	long judge_errors;		/* judge calls that failed (the judge model down) */
	long bad_cases;			/* pairs whose case a judge found broken (excluded) */
	long suite_warnings;		/* ground truth no output can satisfy (on_warning) */
	long rescored;			/* stored outputs judged again, without the model */
	long stale;			/* stored outputs left out: their case's prompt changed */
	long missing;			/* rescore only: pairs with no stored output */
	long prompt_tokens, completion_tokens;		/* the model, this invocation, cache hits excluded */
	long judge_prompt_tokens, judge_completion_tokens;
	long judge_calls;
	long outputs_skipped;		/* --outputs lines without an "id" (unreadable) */
	char suite[128];		/* the suite's name, once loaded */
	double seconds;
};

/*
 * Run (or resume) the suite into opts->run_dir, then write summary.json.
 * Returns 0 when every pair has a result (errors included: they are results),
 * or a negative code for what stops a run: a bad suite, a run directory of
 * another configuration (FTK_EMISMATCH), an unknown judge, I/O failures.
 */
int ftk_eval_run(const struct ftk_eval_run_opts *opts, struct ftk_eval_run_stats *st,
		 struct ftk_error *err);

/*
 * Sharded runs.  With shard_count N > 0, a run covers slice I = shard_index
 * of the (limited) suite's n cases: cases [I*n/N, (I+1)*n/N), a contiguous
 * block, so the shards in index order are the suite in order.  Its run.json
 * says so: "shard": {"index": I, "of": N, "first_case": lo, "cases": m}.
 *
 * ftk_eval_merge joins the shard runs dirs[0..n) (any order) into out_dir,
 * which must not hold a run yet: results.jsonl in suite order, summary.json,
 * and run.json without "shard", each byte for byte what one unsharded run
 * over the same answers writes.  It refuses (FTK_EDATA, naming the run) a
 * run that is not a shard, shards of different runs or counts, a shard
 * missing or given twice, and a shard that did not finish (no summary.json,
 * or fewer results than its cases x samples).  Returns 0 and the number of
 * results in *n_results, or the error.
 */
int ftk_eval_merge(const char *const *dirs, int n, const char *out_dir, long *n_results,
		   struct ftk_error *err);

/*
 * Read a run's results (a run directory, or a results.jsonl path): the last
 * line for each (id, sample) wins; a torn or invalid line is skipped and
 * counted in *n_bad (may be NULL).  An integer "id" becomes its decimal text;
 * lines of one id without "sample" get samples 0, 1, 2... in file order (an
 * outputs file with several answers per case).  Returns 0 and *out, a JSON array of the
 * result objects in file order (caller frees), or FTK_ENOTFOUND / FTK_EIO.
 */
int ftk_eval_results_load(const char *run, cJSON **out, long *n_bad, struct ftk_error *err);

/*
 * The summary of a results array (as from ftk_eval_results_load):
 *   {"results": R, "cases": C, "samples": K, "errors": E, "judge_errors": J,
 *    "metrics": {name: {"kind","binary","twin","n","n_clusters","clustered",
 *                       "mean","se","lo","hi","interval"}},
 *    "flags": {kind: count}, "flagged": F,
 *    "usage": {"prompt_tokens","completion_tokens"}}
 * Errored results are counted apart and never enter a metric.  Caller frees.
 */
cJSON *ftk_eval_summarize(const cJSON *results);

/*
 * Pair two results arrays by case id (values averaged over samples) and
 * compare every metric both have:
 *   {"a": .., "b": .., "metrics": {name: {"kind","binary","n","mean_a","mean_b",
 *     "diff","se","lo","hi","p","test","b_to_fail","c_to_pass","regressed"}},
 *    "only_a": n, "only_b": n, "regressed": [names]}
 * A metric regresses when B is lower with p < alpha and the metric is
 * semantic (a surface metric's drop is reported, never a regression).
 * McNemar is used for pass/fail metrics with one sample per case, the
 * paired t test otherwise.  Caller frees.
 */
cJSON *ftk_eval_compare(const cJSON *a, const cJSON *b, double alpha);

#endif
