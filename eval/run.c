/*
 * run.c: running a suite, resumably (run.h).
 *
 * The unit of work is a (case, sample) pair, numbered case * K + sample.  A
 * run starts by reading what results.jsonl already holds, marks those pairs
 * done, and hands the rest to the backend (backend_*.c).  Whatever the
 * backend, an answer goes through one function, eval_finish_unit(), which
 * runs every judge, builds the result line and appends it: so a cached
 * answer, a fresh one and an answer read from an outputs file are scored in
 * exactly the same way, and a run through a flaky server scores what a
 * clean run scores.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "judges/judge.h"
#include "lib/http.h"
#include "lib/json.h"
#include "lib/ledger.h"
#include "lib/openai.h"
#include "lib/record.h"
#include "lib/stream.h"
#include "lib/strbuf.h"
#include "loglik.h"
#include "run_int.h"

void ftk_eval_run_opts_init(struct ftk_eval_run_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->jobs = 0;	/* 4 requests for an endpoint, 1 engine for a local model */
	o->samples = 0;
	o->retry_base_s = -1;
}

static void add_note(cJSON *arr, const char *kind, const char *reason, const char *judge)
{
	cJSON *f = cJSON_CreateObject();
	cJSON_AddStringToObject(f, "kind", kind);
	if (reason)
		cJSON_AddStringToObject(f, "reason", reason);
	if (judge)
		cJSON_AddStringToObject(f, "judge", judge);
	cJSON_AddItemToArray(arr, f);
}

static void progress(struct ctx *c)
{
	c->finished++;
	if (c->o->on_progress)
		c->o->on_progress(c->o->progress_ctx, c->finished + c->st->resumed,
				  c->n_units - c->n_outside,
				  c->st->errors);
}

/*
 * A judge's verdict on a defective answer: every metric 0, not passed, the
 * defect the first failure.  So a defective answer counts, as wrong, in
 * every denominator, whatever the judge made of what was there.
 */
static void defeat(cJSON *jres, struct ftk_judge_result *res, const cJSON *defects)
{
	for (size_t m = 0; m < res->nmetrics; m++)
		res->metrics[m].value = 0;
	if (cJSON_GetObjectItemCaseSensitive(jres, "pass"))
		cJSON_ReplaceItemInObjectCaseSensitive(jres, "pass", cJSON_CreateFalse());
	cJSON *jm;
	cJSON_ArrayForEach(jm, cJSON_GetObjectItemCaseSensitive(jres, "metrics"))
		cJSON_ReplaceItemInObjectCaseSensitive(jm, "value", cJSON_CreateNumber(0));
	cJSON *f = cJSON_GetObjectItemCaseSensitive(jres, "failures");
	if (!f)
		f = cJSON_AddArrayToObject(jres, "failures");
	cJSON_InsertItemInArray(f, 0, cJSON_Duplicate(cJSON_GetArrayItem(defects, 0), 1));
}

/*
 * Run every judge on a (well- or ill-formed) answer and add "judges",
 * "scores", "flags", and when they apply "defects" (a defective answer:
 * scored wrong), "bad_case" (a judge found the case itself broken: no
 * scores, excluded from every metric) and "judge_errors" (a judge could not
 * work: its metrics are missing) to line.
 */
static void judge_answer(struct ctx *c, const struct ftk_eval_case *k, const struct answer *a,
			 cJSON *line)
{
	cJSON *defects = answer_defects(a);
	if (defects)
		cJSON_AddItemToObject(line, "defects", defects);
	struct ftk_judge_output out = { a->text, a->tool_calls, a->finish_reason };
	struct ftk_judge_result *res = xcalloc(c->n_judges, sizeof(*res));
	const struct ftk_judge_result **ok = xcalloc(c->n_judges, sizeof(*ok));
	cJSON *judges = cJSON_AddObjectToObject(line, "judges");
	cJSON *scores = cJSON_AddObjectToObject(line, "scores");
	cJSON *jerr = NULL, *badcase = NULL;
	cJSON *flags = cJSON_CreateArray();
	for (size_t j = 0; j < c->n_judges; j++) {
		struct ftk_error je;
		ftk_error_clear(&je);
		ftk_judge_result_init(&res[j]);
		int rc = ftk_judge_score(c->judges[j], k->rec, &out, &res[j], &je);
		c->st->judge_prompt_tokens += res[j].usage.prompt_tokens;
		c->st->judge_completion_tokens += res[j].usage.completion_tokens;
		c->st->judge_calls += res[j].usage.calls;
		if (rc == FTK_EDATA) {
			/* the case is broken: its place, so that a person can fix it */
			if (!badcase)
				badcase = cJSON_AddArrayToObject(line, "bad_case");
			cJSON *b = cJSON_CreateObject();
			char where[1100];
			snprintf(where, sizeof(where), "%s:%ld", c->suite->cases_path, k->line);
			cJSON_AddStringToObject(b, "judge", c->labels[j]);
			cJSON_AddStringToObject(b, "where", where);
			if (je.field[0])
				cJSON_AddStringToObject(b, "field", je.field);
			cJSON_AddStringToObject(b, "message", je.msg);
			cJSON_AddItemToArray(badcase, b);
			continue;
		}
		if (rc < 0) {
			/* the judge could not work (its model is down): not the case's fault */
			if (!jerr)
				jerr = cJSON_AddArrayToObject(line, "judge_errors");
			add_note(jerr, ftk_strerror(rc), je.msg, c->labels[j]);
			c->st->judge_errors++;
			continue;
		}
		cJSON *jres;
		if (defects) {
			for (size_t m = 0; m < res[j].nmetrics; m++)
				res[j].metrics[m].value = 0;
			jres = ftk_judge_result_to_json(&res[j]);
			defeat(jres, &res[j], defects);
		} else {
			jres = ftk_judge_result_to_json(&res[j]);
		}
		ok[j] = &res[j];
		cJSON_AddItemToObject(judges, c->labels[j], jres);
		for (size_t m = 0; m < res[j].nmetrics; m++)
			cJSON_AddNumberToObject(scores, res[j].metrics[m].name, res[j].metrics[m].value);
		for (size_t f = 0; f < res[j].nflags; f++)
			add_note(flags, res[j].flags[f].kind, res[j].flags[f].reason, c->labels[j]);
	}
	struct ftk_judge_result cf;
	ftk_judge_result_init(&cf);
	ftk_judge_case_flags(&out, ok, c->labels, c->n_judges, &cf);
	for (size_t f = 0; f < cf.nflags; f++)
		add_note(flags, cf.flags[f].kind, cf.flags[f].reason, NULL);
	ftk_judge_result_release(&cf);
	cJSON_AddItemToObject(line, "flags", flags);
	if (badcase) {
		/* excluded from every metric: no scores at all */
		cJSON_DeleteItemFromObjectCaseSensitive(line, "scores");
		c->st->bad_cases++;
	}
	for (size_t j = 0; j < c->n_judges; j++)
		ftk_judge_result_release(&res[j]);
	free(res);
	free(ok);
}

/*
 * Before anything is asked: each judge's warnings about ground truth that
 * no output can satisfy, in this run's cases, told through on_warning.
 */
static void check_cases(struct ctx *c)
{
	for (long i = c->case_lo; i < c->case_hi; i++) {
		const struct ftk_eval_case *k = &c->suite->cases[i];
		for (size_t j = 0; j < c->n_judges; j++) {
			struct ftk_judge_result notes;
			ftk_judge_result_init(&notes);
			ftk_judge_check_case(c->judges[j], k->rec, &notes);
			for (size_t f = 0; f < notes.nflags; f++) {
				struct strbuf m = STRBUF_INIT;
				strbuf_addf(&m, "%s: case '%s' (%s:%ld): %s (judge '%s', %s)", c->suite->path, k->id, c->suite->cases_path,
					    k->line, notes.flags[f].reason, c->labels[j], notes.flags[f].kind);
				c->st->suite_warnings++;
				if (c->o->on_warning)
					c->o->on_warning(c->o->warning_ctx, m.buf);
				strbuf_release(&m);
			}
			ftk_judge_result_release(&notes);
		}
	}
}

/* Score one unit's answer and append its result line. */
int eval_finish_unit(struct ctx *c, long unit, const struct answer *a, struct ftk_error *err)
{
	const struct ftk_eval_case *k = &c->suite->cases[unit / c->K];
	long sample = unit % c->K;
	cJSON *line = cJSON_CreateObject();
	cJSON_AddStringToObject(line, "id", k->id);
	cJSON_AddNumberToObject(line, "sample", (double)sample);
	if (k->cluster)
		cJSON_AddStringToObject(line, "cluster", k->cluster);
	char ph[33];
	prompt_hash(k, ph);
	cJSON_AddStringToObject(line, "prompt_hash", ph);
	if (a->error) {
		cJSON_AddNullToObject(line, "output");
		cJSON_AddStringToObject(line, "error", a->error);
		cJSON_AddStringToObject(line, "error_kind", a->error_kind ? a->error_kind : "other");
		cJSON_AddBoolToObject(line, "transient", a->transient);
		if (a->attempts)
			cJSON_AddNumberToObject(line, "attempts", a->attempts);
		cJSON_AddNumberToObject(line, "latency_s", round(a->latency_s * 1000) / 1000);
		c->st->errors++;
	} else {
		if (a->text)
			cJSON_AddStringToObject(line, "output", a->text);
		else
			cJSON_AddNullToObject(line, "output");
		if (a->tool_calls)
			cJSON_AddItemToObject(line, "tool_calls", cJSON_Duplicate(a->tool_calls, 1));
		if (a->finish_reason)
			cJSON_AddStringToObject(line, "finish_reason", a->finish_reason);
		cJSON *u = cJSON_AddObjectToObject(line, "usage");
		if (a->prompt_tokens >= 0)
			cJSON_AddNumberToObject(u, "prompt_tokens", (double)a->prompt_tokens);
		if (a->completion_tokens >= 0)
			cJSON_AddNumberToObject(u, "completion_tokens", (double)a->completion_tokens);
		cJSON_AddNumberToObject(line, "latency_s", round(a->latency_s * 1000) / 1000);
		if (a->attempts)
			cJSON_AddNumberToObject(line, "attempts", a->attempts);
		cJSON_AddBoolToObject(line, "cached", a->cached);
		if (!a->cached && !a->rescored) {
			if (a->prompt_tokens > 0)
				c->st->prompt_tokens += a->prompt_tokens;
			if (a->completion_tokens > 0)
				c->st->completion_tokens += a->completion_tokens;
		}

		judge_answer(c, k, a, line);
		c->st->scored++;
		c->done[unit] = 1;
	}
	char *s = cJSON_PrintUnformatted(line);
	cJSON_Delete(line);
	int rc = append_line(&c->app, s, err);
	cJSON_free(s);
	progress(c);
	return rc;
}

void score_queue_push(struct score_queue *q, struct work *w)
{
	pthread_mutex_lock(&q->mu);
	if (q->tail)
		q->tail->next = w;
	else
		q->head = w;
	q->tail = w;
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
}

int score_queue_failed(struct score_queue *q)
{
	pthread_mutex_lock(&q->mu);
	int rc = q->rc;
	pthread_mutex_unlock(&q->mu);
	return rc;
}

void *score_thread(void *arg)
{
	struct score_queue *q = arg;
	for (;;) {
		pthread_mutex_lock(&q->mu);
		while (!q->head && !q->closed)
			pthread_cond_wait(&q->cv, &q->mu);
		struct work *w = q->head;
		if (w) {
			q->head = w->next;
			if (!q->head)
				q->tail = NULL;
		}
		int failed = q->rc < 0;
		pthread_mutex_unlock(&q->mu);
		if (!w)
			break;
		if (!failed) {
			struct answer a;
			answer_init(&a);
			a.latency_s = w->latency_s;
			a.attempts = w->attempts;
			a.cached = w->cached;
			cJSON *resp = NULL;
			if (w->local) {
				if (ftk_utf8_check(w->text, strlen(w->text)) >= 0) {
					strbuf_add_utf8(&a.text_buf, w->text, strlen(w->text));
					a.invalid_utf8 = 1;
				} else {
					strbuf_addstr(&a.text_buf, w->text);
				}
				a.text = a.text_buf.buf;
				a.finish_reason = w->finish_reason;
				a.prompt_tokens = w->prompt_tokens;
				a.completion_tokens = w->completion_tokens;
			} else if (w->body) {
				resp = cJSON_Parse(w->body);
				a.invalid_utf8 = answer_repair_utf8(resp);
				answer_from_chat(&a, resp);	/* validated by ftk_openai_chat_valid */
			} else {
				a.error = w->error;
				a.error_kind = w->error_kind;
				a.transient = w->transient;
			}
			struct ftk_error e;
			ftk_error_clear(&e);
			int rc = eval_finish_unit(q->c, w->unit, &a, &e);
			cJSON_Delete(resp);
			answer_release(&a);
			if (rc < 0) {
				pthread_mutex_lock(&q->mu);
				q->rc = rc;
				q->err = e;
				pthread_mutex_unlock(&q->mu);
			}
		}
		free(w->body);
		free(w->text);
		free(w->error);
		free(w->error_kind);
		free(w);
	}
	return NULL;
}

/*
 * Take the stored results: a result with an answer is done, unless it is to
 * be judged again (--rescore, ftk eval rescore, or a judge that could not
 * work last time), which is done here from the stored output, without the
 * model, when the case's prompt is the one the output answered.  A result
 * without an answer, or whose prompt changed, is left to the backend.
 */
static int take_stored(struct ctx *c, const cJSON *prev, size_t n_cases, struct ftk_error *err)
{
	const cJSON *r;
	cJSON_ArrayForEach(r, prev)
	{
		long k = ftk_eval_suite_find(c->suite, ftk_json_get_str(r, "id"));
		long s = json_long(r, "sample", 0);
		if (k < c->case_lo || k >= c->case_hi || (size_t)k >= n_cases || s < 0 || s >= c->K)
			continue;
		if (cJSON_GetObjectItemCaseSensitive(r, "error"))
			continue;
		long unit = k * c->K + s;
		if (!c->o->rescore && !c->o->rescore_only &&
		    !cJSON_GetObjectItemCaseSensitive(r, "judge_errors")) {
			c->done[unit] = 1;
			c->st->resumed++;
			continue;
		}
		char ph[33];
		prompt_hash(&c->suite->cases[k], ph);
		const char *was = ftk_json_get_str(r, "prompt_hash");
		if (!was || strcmp(was, ph)) {
			c->st->stale++;
			if (c->o->rescore_only) {
				/* no model to ask: the old line must not stand as a score */
				struct answer a;
				answer_init(&a);
				a.rescored = 1;
				a.error = "the stored output answered a prompt that has changed since";
				a.error_kind = "stale_output";
				int rc = eval_finish_unit(c, unit, &a, err);
				answer_release(&a);
				if (rc < 0)
					return rc;
			}
			continue;
		}
		struct answer a;
		answer_init(&a);
		answer_from_result(&a, r);
		int rc = eval_finish_unit(c, unit, &a, err);
		answer_release(&a);
		if (rc < 0)
			return rc;
		c->st->rescored++;
	}
	return 0;
}

int ftk_eval_run(const struct ftk_eval_run_opts *o, struct ftk_eval_run_stats *st,
		 struct ftk_error *err)
{
	memset(st, 0, sizeof(*st));
	double t0 = ftk_now();
	struct ctx c;
	memset(&c, 0, sizeof(c));
	c.o = o;
	c.st = st;
	c.app.fd = -1;
	int rc;
	cJSON *old = NULL;	/* the directory's run.json, when it has one */
	if (!o->run_dir || !*o->run_dir)
		return ftk_error_msg(err, FTK_EUSAGE, "no run directory");
	const char *suite_path = o->suite_path;
	if (o->rescore_only) {
		/* ftk eval rescore: the model side and the suite are the stored run's */
		rc = run_json_read(o->run_dir, &old, err);
		if (rc < 0)
			return rc;
		if (!suite_path)
			suite_path = ftk_json_get_str(old, "suite_path");
		if (!suite_path) {
			cJSON_Delete(old);
			return ftk_error_set(err, FTK_EDATA, o->run_dir, 0, "suite_path",
					     "run.json does not say where the suite is: give --suite");
		}
		goto checked;
	}
	if (o->backend == FTK_EVAL_ENDPOINT && (!o->endpoint || !o->model))
		return ftk_error_msg(err, FTK_EUSAGE, "--endpoint needs --model");
	if (o->backend == FTK_EVAL_OUTPUTS && !o->outputs_path)
		return ftk_error_msg(err, FTK_EUSAGE, "no outputs file");
	if (o->backend == FTK_EVAL_LOCAL && !o->model_dir)
		return ftk_error_msg(err, FTK_EUSAGE, "no model directory");
	if (o->backend < FTK_EVAL_OUTPUTS || o->backend > FTK_EVAL_LOCAL)
		return ftk_error_msg(err, FTK_EUSAGE, "no backend: give --outputs, --endpoint or --model-dir");
	if (o->backend == FTK_EVAL_ENDPOINT && o->api_key_env && *o->api_key_env) {
		const char *key = getenv(o->api_key_env);
		if (!key || !*key)	/* before anything is written */
			return ftk_error_msg(err, FTK_EUSAGE, "environment variable '%s' is not set",
					     o->api_key_env);
	}
checked:
	rc = ftk_eval_suite_load(&c.suite, suite_path, err);
	if (rc < 0) {
		cJSON_Delete(old);
		return rc;
	}
	snprintf(st->suite, sizeof(st->suite), "%s", c.suite->name);
	if (c.suite->output_type != FTK_EVAL_GENERATE) {	/* scored by log-likelihood: eval/loglik.c */
		if (o->shard_count > 0)	/* loglik.c slices work by engine, not by shard; merge would mislead */
			rc = ftk_error_msg(err, FTK_EUSAGE,
					   "--shard: suite '%s' is scored by log-likelihood, which is not sharded yet; "
					   "run it whole (-j N uses N local engines)", c.suite->name);
		else
			rc = ftk_eval_loglik_run(o, c.suite, st, err);
		ftk_eval_suite_free(c.suite);
		return rc;
	}
	c.K = o->samples > 0 ? o->samples : 1;
	if (o->backend == FTK_EVAL_OUTPUTS && o->samples <= 0 && !o->rescore_only) {
		rc = outputs_samples(o->outputs_path, c.suite, &c.K, err);
		if (rc < 0) {
			ftk_eval_suite_free(c.suite);
			cJSON_Delete(old);
			return rc;
		}
	}
	if (o->rescore_only)
		c.K = (int)json_long(old, "samples", 1) > 0 ? (int)json_long(old, "samples", 1) : 1;
	size_t n_cases = c.suite->n_cases;
	if (o->limit > 0 && (size_t)o->limit < n_cases)
		n_cases = (size_t)o->limit;
	c.n_units = (long)n_cases * c.K;
	c.done = xcalloc((size_t)c.n_units + 1, 1);
	cJSON *ident = NULL;
	/* a shard: the other shards' units count as done, so no backend asks for them */
	c.case_lo = 0;
	c.case_hi = (long)n_cases;
	if (o->shard_count > 0) {
		if (o->shard_index < 0 || o->shard_index >= o->shard_count) {
			rc = ftk_error_msg(err, FTK_EUSAGE, "shard %d of %d does not exist",
					   o->shard_index, o->shard_count);
			goto out;
		}
		ftk_eval_shard_range(n_cases, o->shard_index, o->shard_count, &c.case_lo, &c.case_hi);
		for (long u = 0; u < c.n_units; u++)
			if (u < c.case_lo * c.K || u >= c.case_hi * c.K)
				c.done[u] = 1;
		c.n_outside = c.n_units - (c.case_hi - c.case_lo) * c.K;
	}
	st->units = c.n_units - c.n_outside;

	if (o->backend == FTK_EVAL_ENDPOINT)
		c.chat_url = ftk_openai_chat_url(o->endpoint);
	const char *jep = o->judge_endpoint ? o->judge_endpoint : o->endpoint;
	if (jep)
		c.judge_url = ftk_openai_chat_url(jep);
	ftk_http_opts_init(&c.http);
	c.http.max_in_flight = o->jobs > 0 ? o->jobs : 4;
	if (o->timeout_s > 0)
		c.http.timeout_s = o->timeout_s;
	if (o->max_attempts > 0)
		c.http.max_attempts = o->max_attempts;
	if (o->retry_base_s >= 0)
		c.http.backoff_base_s = o->retry_base_s;
	if (o->retry_max_wait_s > 0)
		c.http.max_wait_s = o->retry_max_wait_s;
	c.http.api_key_env = o->api_key_env;
	c.http.validate = ftk_openai_chat_valid;
	c.judge_http = c.http;
	c.judge_http.max_in_flight = 1;
	c.judge_http.api_key_env = o->judge_api_key_env ? o->judge_api_key_env : o->api_key_env;
	if (!o->no_cache)
		c.cache_dir = o->cache_dir ? xstrdup(o->cache_dir) : endpoint_cache_dir();

	/* judges */
	struct ftk_judge_env env = { endpoint_judge_chat, &c, c.cache_dir, c.judge_url };
	c.n_judges = c.suite->n_judges;
	c.judges = xcalloc(c.n_judges, sizeof(*c.judges));
	c.labels = xcalloc(c.n_judges, sizeof(*c.labels));
	for (size_t j = 0; j < c.n_judges; j++) {
		const struct ftk_eval_judge_spec *sp = &c.suite->judges[j];
		rc = ftk_judge_create(&c.judges[j], sp->kind, sp->settings, &env, err);
		if (rc < 0) {
			if (err) {
				char field[300];
				snprintf(field, sizeof(field), "judges[%zu]%s%.200s", j,
					 err->field[0] ? "." : "", err->field);
				memcpy(err->field, field, sizeof(err->field) - 1);
				err->field[sizeof(err->field) - 1] = 0;
				if (rc == FTK_ENOTFOUND)
					snprintf(err->msg, sizeof(err->msg), "unknown judge '%s'", sp->kind);
				ftk_error_place(err, o->suite_path, 0);
			}
			goto out;
		}
		c.labels[j] = ftk_judge_label(c.judges[j]);
	}
	check_cases(&c);

	rc = eval_mkdir_p(o->run_dir, err);
	if (rc < 0)
		goto out;
	if (!old) {
		rc = run_json_read(o->run_dir, &old, err);
		if (rc == FTK_ENOTFOUND) {
			rc = 0;
			ftk_error_clear(err);
		}
		if (rc < 0)
			goto out;
	}
	ident = run_identity(o, c.suite, c.K, o->rescore_only ? old : NULL);
	int new_identity = !old;
	if (old) {
		struct strbuf d = STRBUF_INIT;
		char where[4200];
		snprintf(where, sizeof(where), "%s/run.json", o->run_dir);
		int model_differs;
		if (identity_diff(old, ident, &d, &model_differs) > 0) {
			if (model_differs)
				rc = ftk_error_set(err, FTK_EMISMATCH, where, 0, NULL,
						   "this run directory holds the outputs of another model configuration: %s: use a new directory",
						   d.buf);
			else if (!o->rescore && !o->rescore_only)
				rc = ftk_error_set(err, FTK_EMISMATCH, where, 0, NULL,
						   "this run directory was scored with another suite or judges: %s: use a new directory, or --rescore to judge its stored outputs again",
						   d.buf);
			new_identity = 1;
		}
		strbuf_release(&d);
		if (rc < 0)
			goto out;
	}

	/* what is already done */
	struct strbuf rp = STRBUF_INIT;
	strbuf_addf(&rp, "%s/results.jsonl", o->run_dir);
	cJSON *prev = NULL;
	long bad = 0;
	rc = ftk_eval_results_load(rp.buf, &prev, &bad, err);
	if (rc == FTK_ENOTFOUND) {
		rc = 0;
		ftk_error_clear(err);
	}
	c.app.path = xstrdup(rp.buf);
	strbuf_release(&rp);
	if (rc < 0)
		goto out;
	c.app.fd = open(c.app.path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);	/* read: for pread */
	if (c.app.fd < 0) {
		cJSON_Delete(prev);
		rc = ftk_error_msg(err, FTK_EIO, "cannot open '%s': %s", c.app.path, strerror(errno));
		goto out;
	}
	rc = take_stored(&c, prev, n_cases, err);
	cJSON_Delete(prev);
	if (rc < 0)
		goto out;
	/* every stored result now fits the identity: say so (atomically) */
	if (new_identity && (rc = run_json_write(o->run_dir, ident, suite_path, err)) < 0)
		goto out;

	if (o->rescore_only) {
		for (long u = 0; u < c.n_units; u++)
			st->missing += !c.done[u];
		rc = 0;
	} else if (o->backend == FTK_EVAL_OUTPUTS) {
		rc = eval_run_outputs(&c, err);
	} else if (o->backend == FTK_EVAL_LOCAL) {
		rc = eval_run_local(&c, err);
	} else {
		rc = eval_run_endpoint(&c, err);
	}
	if (rc < 0)
		goto out;
	close(c.app.fd);
	c.app.fd = -1;
	rc = results_compact(&c, err);
	if (rc == 0)
		rc = summary_write(o->run_dir, err);
out:
	st->seconds = ftk_now() - t0;
	if (c.app.fd >= 0)
		close(c.app.fd);
	free((char *)c.app.path);
	for (size_t j = 0; j < c.n_judges; j++)
		ftk_judge_destroy(c.judges[j]);
	free(c.judges);
	free(c.labels);
	free(c.done);
	free(c.chat_url);
	free(c.judge_url);
	free(c.cache_dir);
	ftk_eval_suite_free(c.suite);
	cJSON_Delete(old);
	cJSON_Delete(ident);
	return rc;
}
