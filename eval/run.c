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
#include "lib/record.h"
#include "lib/stream.h"
#include "lib/strbuf.h"
#include "run_int.h"

void ftk_eval_run_opts_init(struct ftk_eval_run_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->jobs = 0;	/* 4 requests for an endpoint, 1 engine for a local model */
	o->samples = 1;
	o->retry_base_s = -1;
}

void answer_from_message(struct answer *a, const cJSON *msg)
{
	const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
	strbuf_reset(&a->text_buf);
	if (cJSON_IsString(content)) {
		strbuf_addstr(&a->text_buf, content->valuestring);
		a->text = a->text_buf.buf;
	} else if (cJSON_IsArray(content)) {
		const cJSON *p;
		cJSON_ArrayForEach(p, content)
		{
			const char *t = ftk_json_get_str(p, "text");
			if (t)
				strbuf_addstr(&a->text_buf, t);
		}
		a->text = a->text_buf.buf;
	}
	const cJSON *tc = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls");
	if (cJSON_IsArray(tc) && cJSON_GetArraySize(tc) > 0)
		a->tool_calls = tc;
}

/* Read a chat completion (validated) into *a; borrowed from resp. */
void answer_from_chat(struct answer *a, const cJSON *resp)
{
	const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(resp, "choices"), 0);
	answer_from_message(a, cJSON_GetObjectItemCaseSensitive(c0, "message"));
	a->finish_reason = ftk_json_get_str(c0, "finish_reason");
	const cJSON *u = cJSON_GetObjectItemCaseSensitive(resp, "usage");
	a->prompt_tokens = json_long(u, "prompt_tokens", -1);
	a->completion_tokens = json_long(u, "completion_tokens", -1);
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
	if (!c->o->progress)
		return;
	fprintf(stderr, "\rftk-eval: %ld/%ld done, %ld errors ", c->finished + c->st->resumed,
		c->n_units - c->n_outside, c->st->errors);
	if (c->finished + c->st->resumed >= c->n_units - c->n_outside)
		fputc('\n', stderr);
}

/* Score one unit's answer and append its result line. */
int eval_finish_unit(struct ctx *c, long unit, struct answer *a, struct ftk_error *err)
{
	const struct ftk_eval_case *k = &c->suite->cases[unit / c->K];
	long sample = unit % c->K;
	cJSON *line = cJSON_CreateObject();
	cJSON_AddStringToObject(line, "id", k->id);
	cJSON_AddNumberToObject(line, "sample", (double)sample);
	if (k->cluster)
		cJSON_AddStringToObject(line, "cluster", k->cluster);
	if (a->error) {
		cJSON_AddNullToObject(line, "output");
		cJSON_AddStringToObject(line, "error", a->error);
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
		if (!a->cached) {
			if (a->prompt_tokens > 0)
				c->st->prompt_tokens += a->prompt_tokens;
			if (a->completion_tokens > 0)
				c->st->completion_tokens += a->completion_tokens;
		}

		struct ftk_judge_output out = { a->text, a->tool_calls, a->finish_reason };
		struct ftk_judge_result *res = xcalloc(c->n_judges, sizeof(*res));
		const struct ftk_judge_result **ok = xcalloc(c->n_judges, sizeof(*ok));
		cJSON *judges = cJSON_AddObjectToObject(line, "judges");
		cJSON *scores = cJSON_AddObjectToObject(line, "scores");
		cJSON *jerr = NULL;
		cJSON *flags = cJSON_CreateArray();
		for (size_t j = 0; j < c->n_judges; j++) {
			struct ftk_error je;
			ftk_error_clear(&je);
			ftk_judge_result_init(&res[j]);
			int rc = ftk_judge_score(c->judges[j], k->rec, &out, &res[j], &je);
			c->st->judge_prompt_tokens += res[j].usage.prompt_tokens;
			c->st->judge_completion_tokens += res[j].usage.completion_tokens;
			c->st->judge_calls += res[j].usage.calls;
			if (rc < 0) {
				if (!jerr)
					jerr = cJSON_AddArrayToObject(line, "judge_errors");
				/* the place of the case, so that a person can fix it */
				char msg[1600];
				snprintf(msg, sizeof(msg), "%s:%ld: %s%s%s", c->suite->cases_path, k->line,
					 je.field, je.field[0] ? ": " : "", je.msg);
				add_note(jerr, ftk_strerror(rc), msg, c->labels[j]);
				c->st->judge_errors++;
				continue;
			}
			ok[j] = &res[j];
			cJSON_AddItemToObject(judges, c->labels[j], ftk_judge_result_to_json(&res[j]));
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
		for (size_t j = 0; j < c->n_judges; j++)
			ftk_judge_result_release(&res[j]);
		free(res);
		free(ok);
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
			memset(&a, 0, sizeof(a));
			strbuf_init(&a.text_buf, 0);
			a.latency_s = w->latency_s;
			a.attempts = w->attempts;
			a.cached = w->cached;
			cJSON *resp = NULL;
			if (w->body) {
				resp = cJSON_Parse(w->body);
				answer_from_chat(&a, resp);	/* validated by endpoint_chat_valid */
			} else {
				a.error = w->error;
			}
			struct ftk_error e;
			ftk_error_clear(&e);
			int rc = eval_finish_unit(q->c, w->unit, &a, &e);
			cJSON_Delete(resp);
			strbuf_release(&a.text_buf);
			if (rc < 0) {
				pthread_mutex_lock(&q->mu);
				q->rc = rc;
				q->err = e;
				pthread_mutex_unlock(&q->mu);
			}
		}
		free(w->body);
		free(w->error);
		free(w);
	}
	return NULL;
}

/* ------------------------------------------------------------ run.json */

static cJSON *run_identity(const struct ftk_eval_run_opts *o, const struct ftk_eval_suite *s,
			   long first_case, long n_cases)
{
	cJSON *id = cJSON_CreateObject();
	cJSON_AddStringToObject(id, "suite", s->name);
	static const char *const names[] = { "", "outputs", "endpoint", "local" };
	cJSON_AddStringToObject(id, "backend", names[o->backend]);
	if (o->backend == FTK_EVAL_ENDPOINT) {
		char *u = endpoint_chat_url(o->endpoint);
		char *q = strchr(u, '?');	/* a query string may hold a key: keep it out */
		if (q)
			*q = 0;
		char *scheme = strstr(u, "://");	/* and so may user:password@ */
		char *at = scheme ? strchr(scheme + 3, '@') : NULL;
		char *slash = scheme ? strchr(scheme + 3, '/') : NULL;
		if (at && (!slash || at < slash))
			memmove(scheme + 3, at + 1, strlen(at + 1) + 1);
		cJSON_AddStringToObject(id, "endpoint", u);
		free(u);
		cJSON_AddStringToObject(id, "model", o->model ? o->model : "");
	} else if (o->backend == FTK_EVAL_LOCAL) {
		cJSON_AddStringToObject(id, "model_dir", o->model_dir);
		if (o->adapter_dir)
			cJSON_AddStringToObject(id, "adapter", o->adapter_dir);
	} else {
		cJSON_AddStringToObject(id, "outputs", o->outputs_path);
	}
	cJSON_AddNumberToObject(id, "samples", o->samples > 0 ? o->samples : 1);
	cJSON_AddItemToObject(id, "generation", cJSON_Duplicate(s->generation, 1));
	if (o->shard_count > 0) {	/* last: ftk_eval_merge drops it to get the whole run's */
		cJSON *sh = cJSON_AddObjectToObject(id, "shard");
		cJSON_AddNumberToObject(sh, "index", o->shard_index);
		cJSON_AddNumberToObject(sh, "of", o->shard_count);
		cJSON_AddNumberToObject(sh, "first_case", (double)first_case);
		cJSON_AddNumberToObject(sh, "cases", (double)n_cases);
	}
	return id;
}

/*
 * A new run.json is the identity plus "suite_path" (absolute), so that
 * ftk-review can find the cases' prompts and sources without being told.
 * suite_path is not part of the identity: a resume from another directory
 * names the same suite by another relative path.
 */
static int check_run_json(const char *dir, cJSON *id, const char *suite_path,
			  struct ftk_error *err)
{
	struct strbuf p = STRBUF_INIT, data = STRBUF_INIT;
	strbuf_addf(&p, "%s/run.json", dir);
	int rc = 0;
	if (strbuf_read_file(&data, p.buf) == 0) {
		cJSON *old = cJSON_ParseWithLength(data.buf, data.len);
		if (!old) {
			rc = ftk_error_set(err, FTK_EDATA, p.buf, 0, NULL, "not valid JSON");
		} else {
			for (cJSON *m = id->child; m && rc == 0; m = m->next) {
				cJSON *ov = cJSON_GetObjectItemCaseSensitive(old, m->string);
				if (!ov || !cJSON_Compare(ov, m, 1)) {
					char *was = ov ? cJSON_PrintUnformatted(ov) : NULL;
					char *now = cJSON_PrintUnformatted(m);
					rc = ftk_error_set(err, FTK_EMISMATCH, p.buf, 0, m->string,
							   "this run directory holds another run (%s, not %s): use a new directory",
							   was ? was : "unset", now);
					cJSON_free(was);
					cJSON_free(now);
				}
			}
			cJSON_Delete(old);
		}
	} else {
		cJSON *w = cJSON_Duplicate(id, 1);
		char *abs = suite_path ? realpath(suite_path, NULL) : NULL;
		if (suite_path)
			cJSON_AddStringToObject(w, "suite_path", abs ? abs : suite_path);
		free(abs);
		char *s = cJSON_Print(w);
		cJSON_Delete(w);
		FILE *f = fopen(p.buf, "w");
		if (!f || fputs(s, f) < 0 || fputc('\n', f) < 0)
			rc = ftk_error_set(err, FTK_EIO, p.buf, 0, NULL, "cannot write: %s", strerror(errno));
		if (f && fclose(f) != 0 && rc == 0)
			rc = ftk_error_set(err, FTK_EIO, p.buf, 0, NULL, "cannot write: %s", strerror(errno));
		cJSON_free(s);
	}
	strbuf_release(&p);
	strbuf_release(&data);
	return rc;
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
	if (!o->run_dir || !*o->run_dir)
		return ftk_error_msg(err, FTK_EUSAGE, "no run directory");
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
	rc = ftk_eval_suite_load(&c.suite, o->suite_path, err);
	if (rc < 0)
		return rc;
	snprintf(st->suite, sizeof(st->suite), "%s", c.suite->name);
	c.K = o->samples > 0 ? o->samples : 1;
	size_t n_cases = c.suite->n_cases;
	if (o->limit > 0 && (size_t)o->limit < n_cases)
		n_cases = (size_t)o->limit;
	c.n_units = (long)n_cases * c.K;
	c.done = xcalloc((size_t)c.n_units + 1, 1);
	/* a shard: the other shards' units count as done, so no backend asks for them */
	long lo = 0, hi = (long)n_cases;
	if (o->shard_count > 0) {
		if (o->shard_index < 0 || o->shard_index >= o->shard_count) {
			free(c.done);
			ftk_eval_suite_free(c.suite);
			return ftk_error_msg(err, FTK_EUSAGE, "shard %d of %d does not exist",
					     o->shard_index, o->shard_count);
		}
		lo = (long)(n_cases * (size_t)o->shard_index / (size_t)o->shard_count);
		hi = (long)(n_cases * (size_t)(o->shard_index + 1) / (size_t)o->shard_count);
		for (long u = 0; u < c.n_units; u++)
			if (u < lo * c.K || u >= hi * c.K)
				c.done[u] = 1;
		c.n_outside = c.n_units - (hi - lo) * c.K;
	}
	st->units = c.n_units - c.n_outside;

	if (o->backend == FTK_EVAL_ENDPOINT)
		c.chat_url = endpoint_chat_url(o->endpoint);
	const char *jep = o->judge_endpoint ? o->judge_endpoint : o->endpoint;
	if (jep)
		c.judge_url = endpoint_chat_url(jep);
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
	c.http.validate = endpoint_chat_valid;
	c.judge_http = c.http;
	c.judge_http.max_in_flight = 1;
	c.judge_http.api_key_env = o->judge_api_key_env ? o->judge_api_key_env : o->api_key_env;
	if (!o->no_cache)
		c.cache_dir = o->cache_dir ? xstrdup(o->cache_dir) : endpoint_cache_dir();

	/* judges */
	struct ftk_judge_env env = { endpoint_judge_chat, &c, c.cache_dir };
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

	rc = eval_mkdir_p(o->run_dir, err);
	if (rc < 0)
		goto out;
	cJSON *ident = run_identity(o, c.suite, lo, hi - lo);
	rc = check_run_json(o->run_dir, ident, o->suite_path, err);
	cJSON_Delete(ident);
	if (rc < 0)
		goto out;

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
	if (rc < 0) {
		strbuf_release(&rp);
		goto out;
	}
	const cJSON *r;
	cJSON_ArrayForEach(r, prev)
	{
		long k = ftk_eval_suite_find(c.suite, ftk_json_get_str(r, "id"));
		long s = json_long(r, "sample", 0);
		if (k < lo || k >= hi || s < 0 || s >= c.K)
			continue;
		if (!cJSON_GetObjectItemCaseSensitive(r, "error")) {
			c.done[k * c.K + s] = 1;
			st->resumed++;
		}
	}
	cJSON_Delete(prev);
	c.app.path = xstrdup(rp.buf);
	c.app.fd = open(rp.buf, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);	/* read: for pread */
	strbuf_release(&rp);
	if (c.app.fd < 0) {
		rc = ftk_error_msg(err, FTK_EIO, "cannot open '%s': %s", c.app.path, strerror(errno));
		goto out;
	}

	if (o->backend == FTK_EVAL_OUTPUTS)
		rc = eval_run_outputs(&c, err);
	else if (o->backend == FTK_EVAL_LOCAL)
		rc = eval_run_local(&c, err);
	else
		rc = eval_run_endpoint(&c, err);
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
	return rc;
}
