/*
 * run.c: the eval runner, results files, summaries and comparisons (run.h).
 *
 * The unit of work is a (case, sample) pair, numbered case * K + sample.  A
 * run starts by reading what results.jsonl already holds, marks those pairs
 * done, and hands the rest to the backend.  Whatever the backend, an answer
 * goes through one function, finish_unit(), which runs every judge, builds
 * the result line and appends it: so a cached answer, a fresh one and an
 * answer read from an outputs file are scored in exactly the same way, and a
 * run through a flaky server scores what a clean run scores.
 *
 * The endpoint backend queues every pending request on one lib/http client
 * (which keeps -j of them in flight and retries) and hands answers, as they
 * complete, to a scoring thread (struct score_queue), so that judges that
 * take their time (a judge model's votes) never stop the transfers; the
 * results file grows in completion order, and the final compaction puts it
 * back in suite order.
 *
 * Lookups by (id, sample) and by cluster name use a small open-addressing
 * hash table of strings (struct smap), since cJSON objects are linear lists.
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
#include <xxhash.h>
#include "judges/judge.h"
#include "lib/http.h"
#include "lib/json.h"
#include "lib/ledger.h"
#include "lib/record.h"
#include "lib/stream.h"
#include "lib/strbuf.h"
#include "trainer/infer.h"
#include "loglik.h"
#include "run.h"
#include "stats.h"

/* ------------------------------------------------------------ string map */

struct smap {
	char **keys;
	long *vals;
	size_t cap, n;
};

static size_t smap_slot(const struct smap *m, const char *k)
{
	size_t h = (size_t)XXH3_64bits(k, strlen(k)) & (m->cap - 1);
	while (m->keys[h] && strcmp(m->keys[h], k))
		h = (h + 1) & (m->cap - 1);
	return h;
}

static void smap_put(struct smap *m, const char *k, long v)
{
	if ((m->n + 1) * 2 > m->cap) {
		struct smap old = *m;
		m->cap = old.cap ? old.cap * 2 : 64;
		m->keys = xcalloc(m->cap, sizeof(*m->keys));
		m->vals = xcalloc(m->cap, sizeof(*m->vals));
		m->n = 0;
		for (size_t i = 0; i < old.cap; i++)
			if (old.keys[i]) {
				size_t s = smap_slot(m, old.keys[i]);
				m->keys[s] = old.keys[i];
				m->vals[s] = old.vals[i];
				m->n++;
			}
		free(old.keys);
		free(old.vals);
	}
	size_t s = smap_slot(m, k);
	if (!m->keys[s]) {
		m->keys[s] = xstrdup(k);
		m->n++;
	}
	m->vals[s] = v;
}

static long smap_get(const struct smap *m, const char *k, long dflt)
{
	if (!m->cap)
		return dflt;
	size_t s = smap_slot(m, k);
	return m->keys[s] ? m->vals[s] : dflt;
}

/* The id for k, adding it as the next id when new. */
static long smap_intern(struct smap *m, const char *k)
{
	long v = smap_get(m, k, -1);
	if (v < 0) {
		v = (long)m->n;
		smap_put(m, k, v);
	}
	return v;
}

static void smap_free(struct smap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->keys[i]);
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}

static void unit_key(char *buf, size_t n, const char *id, long sample)
{
	snprintf(buf, n, "%s\x1f%ld", id, sample);
}

/* ------------------------------------------------------------ results files */

static long json_long(const cJSON *o, const char *k, long dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsNumber(v) ? (long)v->valuedouble : dflt;
}

static char *results_path(const char *run)
{
	struct stat st;
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, run);
	if (stat(run, &st) == 0 && S_ISDIR(st.st_mode))
		strbuf_addstr(&sb, "/results.jsonl");
	return strbuf_detach(&sb, NULL);
}

int ftk_eval_results_load(const char *run, cJSON **out, long *n_bad, struct ftk_error *err)
{
	*out = NULL;
	if (n_bad)
		*n_bad = 0;
	char *path = results_path(run);
	struct ftk_reader *r;
	int rc = ftk_reader_open(&r, path, err);
	if (rc < 0) {
		if (access(path, F_OK) != 0 && err)
			err->code = rc = FTK_ENOTFOUND;
		free(path);
		return rc;
	}
	cJSON **lines = NULL;
	size_t n = 0, alloc = 0;
	struct smap last = { 0 };
	struct ftk_line line;
	while ((rc = ftk_reader_next(r, &line, err)) == 1) {
		if (line.len == 0)
			continue;
		cJSON *o = cJSON_ParseWithLength(line.data, line.len);
		const char *id = o ? ftk_json_get_str(o, "id") : NULL;
		if (!id) {
			cJSON_Delete(o);
			if (n_bad)
				(*n_bad)++;
			continue;
		}
		char key[1024];
		unit_key(key, sizeof(key), id, json_long(o, "sample", 0));
		FTK_ALLOC_GROW(lines, n + 1, alloc);
		lines[n] = o;
		smap_put(&last, key, (long)n);
		n++;
	}
	ftk_reader_close(r);
	free(path);
	if (rc < 0) {
		for (size_t i = 0; i < n; i++)
			cJSON_Delete(lines[i]);
		free(lines);
		smap_free(&last);
		return rc;
	}
	cJSON *arr = cJSON_CreateArray();
	for (size_t i = 0; i < n; i++) {
		char key[1024];
		unit_key(key, sizeof(key), ftk_json_get_str(lines[i], "id"),
			 json_long(lines[i], "sample", 0));
		if (smap_get(&last, key, -1) == (long)i)
			cJSON_AddItemToArray(arr, lines[i]);
		else
			cJSON_Delete(lines[i]);
	}
	free(lines);
	smap_free(&last);
	*out = arr;
	return 0;
}

struct appender {
	int fd;
	int checked;
	const char *path;
};

static int append_line(struct appender *a, const char *s, struct ftk_error *err)
{
	size_t len = strlen(s);
	char *buf = xmalloc(len + 2);
	size_t n = 0;
	if (!a->checked) {
		/* a torn last line from a killed run stays on its own line */
		struct stat st;
		char last = '\n';
		if (fstat(a->fd, &st) == 0 && st.st_size > 0 &&
		    pread(a->fd, &last, 1, st.st_size - 1) == 1 && last != '\n')
			buf[n++] = '\n';
		a->checked = 1;
	}
	memcpy(buf + n, s, len);
	n += len;
	buf[n++] = '\n';
	ssize_t k;
	do
		k = write(a->fd, buf, n);
	while (k < 0 && errno == EINTR);
	free(buf);
	if (k != (ssize_t)n)
		return ftk_error_set(err, FTK_EIO, a->path, 0, NULL, "cannot append to '%s': %s",
				     a->path, k < 0 ? strerror(errno) : "short write");
	return 0;
}

/* ------------------------------------------------------------ the run */

struct unit_state {
	double t_start;
};

struct ctx {
	const struct ftk_eval_run_opts *o;
	struct ftk_eval_suite *suite;
	struct ftk_judge **judges;
	const char **labels;
	size_t n_judges;
	int K;
	long n_units;
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

void ftk_eval_run_opts_init(struct ftk_eval_run_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->jobs = 0;	/* 4 requests for an endpoint, 1 engine for a local model */
	o->samples = 1;
	o->retry_base_s = -1;
}

static char *chat_url(const char *endpoint)
{
	struct strbuf sb = STRBUF_INIT;
	const char *query = strchr(endpoint, '?');	/* kept at the end */
	strbuf_add(&sb, endpoint, query ? (size_t)(query - endpoint) : strlen(endpoint));
	while (sb.len && sb.buf[sb.len - 1] == '/')
		strbuf_setlen(&sb, sb.len - 1);
	size_t n = sb.len;
	if (n >= 17 && !strcmp(sb.buf + n - 17, "/chat/completions"))
		;
	else if (n >= 3 && !strcmp(sb.buf + n - 3, "/v1"))
		strbuf_addstr(&sb, "/chat/completions");
	else
		strbuf_addstr(&sb, "/v1/chat/completions");
	if (query)
		strbuf_addstr(&sb, query);
	return strbuf_detach(&sb, NULL);
}

/* An OpenAI chat completion with at least one choice holding a message. */
static int chat_valid(const char *body, size_t len, void *ctx)
{
	(void)ctx;
	cJSON *v = cJSON_ParseWithLength(body, len);
	const cJSON *ch = v ? cJSON_GetObjectItemCaseSensitive(v, "choices") : NULL;
	const cJSON *c0 = cJSON_IsArray(ch) ? cJSON_GetArrayItem(ch, 0) : NULL;
	int ok = c0 && cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(c0, "message"));
	cJSON_Delete(v);
	return !ok;
}

/* The judges' door to a judge model (struct ftk_judge_env.chat). */
static int judge_chat(void *vctx, const cJSON *request, cJSON **response, struct ftk_error *err)
{
	struct ctx *c = vctx;
	*response = NULL;
	if (!c->judge_url)
		return ftk_error_msg(err, FTK_EUSAGE,
				     "a model-graded judge needs --judge-endpoint (or --endpoint)");
	char *body = cJSON_PrintUnformatted(request);
	struct ftk_http_result res;
	int rc = ftk_http_post(&c->judge_http, c->judge_url, body, strlen(body), &res, err);
	cJSON_free(body);
	if (rc < 0)
		return rc;
	if (res.code) {
		rc = ftk_error_msg(err, FTK_ENET, "judge model: %s", res.error);
		ftk_http_result_release(&res);
		return rc;
	}
	*response = cJSON_ParseWithLength(res.body, res.body_len);
	ftk_http_result_release(&res);
	if (!*response)
		return ftk_error_msg(err, FTK_ENET, "judge model: the answer is not JSON");
	return 0;
}

static char *default_cache_dir(void)
{
	const char *e = getenv("FTK_CACHE_DIR");
	struct strbuf sb = STRBUF_INIT;
	if (e && *e) {
		strbuf_addf(&sb, "%s/eval", e);
	} else if ((e = getenv("XDG_CACHE_HOME")) && *e) {
		strbuf_addf(&sb, "%s/ftk/eval", e);
	} else if ((e = getenv("HOME")) && *e) {
		strbuf_addf(&sb, "%s/.cache/ftk/eval", e);
	} else {
		return NULL;
	}
	return strbuf_detach(&sb, NULL);
}

static int mkdir_p(const char *path, struct ftk_error *err)
{
	char *p = xstrdup(path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, 0755) < 0 && errno != EEXIST) {
			int e = errno;
			free(p);
			return ftk_error_msg(err, FTK_EIO, "cannot create '%s': %s", path, strerror(e));
		}
		*s = '/';
	}
	int rc = 0;
	if (mkdir(p, 0755) < 0 && errno != EEXIST)
		rc = ftk_error_msg(err, FTK_EIO, "cannot create '%s': %s", path, strerror(errno));
	free(p);
	return rc;
}

static void cache_path(struct ctx *c, const char *body, long sample, struct strbuf *out)
{
	struct strbuf key = STRBUF_INIT;
	strbuf_addf(&key, "%s\n%s\n%ld", c->chat_url, body, sample);
	XXH128_hash_t h = XXH3_128bits(key.buf, key.len);
	strbuf_release(&key);
	char hex[40];
	snprintf(hex, sizeof(hex), "%016llx%016llx", (unsigned long long)h.high64,
		 (unsigned long long)h.low64);
	strbuf_reset(out);
	strbuf_addf(out, "%s/%.2s/%s.json", c->cache_dir, hex, hex + 2);
}

static char *cache_get(struct ctx *c, const char *body, long sample)
{
	if (!c->cache_dir)
		return NULL;
	struct strbuf p = STRBUF_INIT, data = STRBUF_INIT;
	cache_path(c, body, sample, &p);
	char *ret = NULL;
	if (strbuf_read_file(&data, p.buf) == 0 && !chat_valid(data.buf, data.len, NULL))
		ret = strbuf_detach(&data, NULL);
	strbuf_release(&data);
	strbuf_release(&p);
	return ret;
}

static void cache_put(struct ctx *c, const char *body, long sample, const char *resp, size_t len)
{
	if (!c->cache_dir)
		return;
	struct strbuf p = STRBUF_INIT, tmp = STRBUF_INIT;
	cache_path(c, body, sample, &p);
	char *slash = strrchr(p.buf, '/');
	*slash = 0;
	if (mkdir_p(p.buf, NULL) == 0) {
		*slash = '/';
		strbuf_addf(&tmp, "%s.%d.tmp", p.buf, (int)getpid());
		FILE *f = fopen(tmp.buf, "wb");
		if (f) {
			int ok = fwrite(resp, 1, len, f) == len;
			ok = (fclose(f) == 0) && ok;
			if (!ok || rename(tmp.buf, p.buf) < 0)
				unlink(tmp.buf);
		}
	}
	strbuf_release(&tmp);
	strbuf_release(&p);
}

/* The request body for one unit. */
static char *request_body(struct ctx *c, const struct ftk_eval_case *k, long sample)
{
	cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "model", c->o->model ? c->o->model : "");
	cJSON_AddItemToObject(req, "messages", cJSON_Duplicate(k->messages, 1));
	if (k->tools && cJSON_GetArraySize(k->tools) > 0)
		cJSON_AddItemToObject(req, "tools", cJSON_Duplicate(k->tools, 1));
	for (const cJSON *g = c->suite->generation->child; g; g = g->next) {
		cJSON *v = cJSON_Duplicate(g, 1);
		if (!strcmp(g->string, "seed") && cJSON_IsNumber(g))
			cJSON_SetNumberValue(v, g->valuedouble + (double)sample);
		cJSON_AddItemToObject(req, g->string, v);
	}
	char *s = cJSON_PrintUnformatted(req);
	cJSON_Delete(req);
	char *r = xstrdup(s);
	cJSON_free(s);
	return r;
}

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

static void answer_from_message(struct answer *a, const cJSON *msg)
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
static void answer_from_chat(struct answer *a, const cJSON *resp)
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
		c->n_units, c->st->errors);
	if (c->finished + c->st->resumed >= c->n_units)
		fputc('\n', stderr);
}

/* Score one unit's answer and append its result line. */
static int finish_unit(struct ctx *c, long unit, struct answer *a, struct ftk_error *err)
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

/* ------------------------------------------------------------ backends */

static int run_outputs(struct ctx *c, struct ftk_error *err)
{
	cJSON *outs;
	long bad = 0;
	int rc = ftk_eval_results_load(c->o->outputs_path, &outs, &bad, err);
	if (rc < 0)
		return rc;
	c->st->outputs_skipped = bad;
	struct smap by_key = { 0 };
	long i = 0;
	const cJSON *o;
	cJSON_ArrayForEach(o, outs)
	{
		char key[1024];
		unit_key(key, sizeof(key), ftk_json_get_str(o, "id"), json_long(o, "sample", 0));
		smap_put(&by_key, key, i++);
	}
	for (long u = 0; u < c->n_units && rc == 0; u++) {
		if (c->done[u])
			continue;
		const struct ftk_eval_case *k = &c->suite->cases[u / c->K];
		char key[1024], msg[1200];
		unit_key(key, sizeof(key), k->id, u % c->K);
		long at = smap_get(&by_key, key, -1);
		struct answer a;
		memset(&a, 0, sizeof(a));
		strbuf_init(&a.text_buf, 0);
		a.prompt_tokens = a.completion_tokens = -1;
		a.cached = 1;	/* nothing was spent on it now */
		if (at < 0) {
			snprintf(msg, sizeof(msg), "no output for this case in '%s'", c->o->outputs_path);
			a.error = msg;
		} else {
			o = cJSON_GetArrayItem(outs, (int)at);
			const char *e = ftk_json_get_str(o, "error");
			const cJSON *msgobj = cJSON_GetObjectItemCaseSensitive(o, "message");
			const cJSON *ch = cJSON_GetObjectItemCaseSensitive(o, "choices");
			if (e) {
				a.error = e;
			} else if (cJSON_IsArray(ch)) {
				answer_from_chat(&a, o);	/* a whole chat completion */
			} else if (cJSON_IsObject(msgobj)) {
				answer_from_message(&a, msgobj);
			} else {
				/* "output" (ftk results), else "content", "response", "completion" */
				static const char *const names[] = { "output", "content", "response",
								     "completion" };
				for (size_t n = 0; n < FTK_ARRAY_SIZE(names) && !a.text; n++) {
					const char *t = ftk_json_get_str(o, names[n]);
					if (t) {
						strbuf_addstr(&a.text_buf, t);
						a.text = a.text_buf.buf;
					}
				}
				const cJSON *tc = cJSON_GetObjectItemCaseSensitive(o, "tool_calls");
				if (cJSON_IsArray(tc) && cJSON_GetArraySize(tc) > 0)
					a.tool_calls = tc;
				a.finish_reason = ftk_json_get_str(o, "finish_reason");
				const cJSON *u2 = cJSON_GetObjectItemCaseSensitive(o, "usage");
				a.prompt_tokens = json_long(u2, "prompt_tokens", -1);
				a.completion_tokens = json_long(u2, "completion_tokens", -1);
			}
		}
		rc = finish_unit(c, u, &a, err);
		strbuf_release(&a.text_buf);
	}
	smap_free(&by_key);
	cJSON_Delete(outs);
	return rc;
}

struct pending {
	long unit;
	char *body;
};

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

static void queue_push(struct score_queue *q, struct work *w)
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

static int queue_failed(struct score_queue *q)
{
	pthread_mutex_lock(&q->mu);
	int rc = q->rc;
	pthread_mutex_unlock(&q->mu);
	return rc;
}

static void *scorer(void *arg)
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
				answer_from_chat(&a, resp);	/* validated by chat_valid */
			} else {
				a.error = w->error;
			}
			struct ftk_error e;
			ftk_error_clear(&e);
			int rc = finish_unit(q->c, w->unit, &a, &e);
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

static int run_endpoint(struct ctx *c, struct ftk_error *err)
{
	struct ftk_http_client *cl;
	int rc = ftk_http_client_new(&cl, &c->http, err);
	if (rc < 0)
		return rc;
	struct score_queue q;
	memset(&q, 0, sizeof(q));
	pthread_mutex_init(&q.mu, NULL);
	pthread_cond_init(&q.cv, NULL);
	q.c = c;
	pthread_t th;
	if (pthread_create(&th, NULL, scorer, &q) != 0) {
		ftk_http_client_free(cl);
		return ftk_error_msg(err, FTK_EIO, "cannot start the scoring thread");
	}
	struct pending *pend = xcalloc((size_t)c->n_units, sizeof(*pend));
	for (long u = 0; u < c->n_units && rc == 0; u++) {
		if (c->done[u])
			continue;
		const struct ftk_eval_case *k = &c->suite->cases[u / c->K];
		char *body = request_body(c, k, u % c->K);
		char *hit = c->o->no_cache ? NULL : cache_get(c, body, u % c->K);
		if (hit) {
			struct work *w = xcalloc(1, sizeof(*w));
			w->unit = u;
			w->body = hit;
			w->cached = 1;
			c->st->cache_hits++;
			queue_push(&q, w);
			free(body);
			continue;
		}
		pend[u].unit = u;
		pend[u].body = body;
		rc = ftk_http_submit(cl, c->chat_url, body, strlen(body), &pend[u], err);
	}
	struct ftk_http_result res;
	while (rc == 0 && queue_failed(&q) == 0 && (rc = ftk_http_next(cl, &res, err)) == 1) {
		struct pending *p = res.tag;
		struct work *w = xcalloc(1, sizeof(*w));
		w->unit = p->unit;
		w->latency_s = res.seconds;
		w->attempts = res.attempts;
		c->st->asked++;
		if (res.code == 0) {
			if (!c->o->no_cache)
				cache_put(c, p->body, p->unit % c->K, res.body, res.body_len);
			w->body = res.body;	/* NUL-terminated by lib/http */
			res.body = NULL;
		} else {
			w->error = xstrdup(res.error);
		}
		queue_push(&q, w);
		ftk_http_result_release(&res);
		free(p->body);
		p->body = NULL;
		rc = 0;
	}
	if (rc == 1)
		rc = 0;
	pthread_mutex_lock(&q.mu);
	q.closed = 1;
	pthread_cond_signal(&q.cv);
	pthread_mutex_unlock(&q.mu);
	pthread_join(th, NULL);
	if (rc == 0 && q.rc < 0) {
		rc = q.rc;
		if (err)
			*err = q.err;
	}
	pthread_mutex_destroy(&q.mu);
	pthread_cond_destroy(&q.cv);
	for (long u = 0; u < c->n_units; u++)
		free(pend[u].body);
	free(pend);
	ftk_http_client_free(cl);
	return rc;
}

/*
 * The local backend: the trainer's inference engine (trainer/infer.h), one
 * request at a time (an engine holds one KV cache).  Generation settings
 * map to the sampler: temperature, top_p, top_k, seed (+ sample index),
 * max_tokens, stop.  A model whose tokenizer has no chat template (the tiny
 * stories260K) is given the last user message as raw text.  Nothing is
 * cached: the run's own results.jsonl is what makes a re-run free.
 */
static double gen_num(const cJSON *g, const char *k, double dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(g, k);
	return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

/* What every local worker shares: the units to take, the sampler settings. */
struct local_job {
	struct ctx *c;
	struct score_queue *q;
	struct ftk_infer_opts io;
	struct ftk_gen_opts go;
	double seed;
	const char *stop[16];
	int n_stop;
	pthread_mutex_t mu;
	long next_unit;		/* the next unit a worker takes */
	int rc;			/* the first engine that could not be opened */
	struct ftk_error err;
	long asked;
};

/* The answer as a chat completion, so the scorer reads every backend alike. */
static char *local_completion(const struct ftk_infer_result *res)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *ch = cJSON_AddArrayToObject(o, "choices");
	cJSON *c0 = cJSON_CreateObject();
	cJSON *msg = cJSON_AddObjectToObject(c0, "message");
	cJSON_AddStringToObject(msg, "role", "assistant");
	cJSON_AddStringToObject(msg, "content", res->text.buf);
	cJSON_AddStringToObject(c0, "finish_reason", res->finish_reason ? res->finish_reason : "stop");
	cJSON_AddItemToArray(ch, c0);
	cJSON *u = cJSON_AddObjectToObject(o, "usage");
	cJSON_AddNumberToObject(u, "prompt_tokens", res->prompt_tokens);
	cJSON_AddNumberToObject(u, "completion_tokens", res->completion_tokens);
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	char *r = xstrdup(s);
	cJSON_free(s);
	return r;
}

static void *local_worker(void *arg)
{
	struct local_job *J = arg;
	struct ctx *c = J->c;
	struct ftk_infer *eng;
	struct ftk_error oe;
	ftk_error_clear(&oe);
	int rc = ftk_infer_open(&eng, &J->io, &oe);
	if (rc < 0) {
		pthread_mutex_lock(&J->mu);
		if (J->rc == 0) {
			J->rc = rc;
			J->err = oe;
		}
		pthread_mutex_unlock(&J->mu);
		return NULL;
	}
	int chat = ftk_infer_has_chat(eng);
	struct ftk_gen_opts go = J->go;
	for (;;) {
		pthread_mutex_lock(&J->mu);
		long u = J->next_unit;
		while (u < c->n_units && c->done[u])
			u++;
		J->next_unit = u + 1;
		int stop_now = J->rc < 0 || queue_failed(J->q) < 0;
		pthread_mutex_unlock(&J->mu);
		if (u >= c->n_units || stop_now)
			break;
		const struct ftk_eval_case *k = &c->suite->cases[u / c->K];
		go.seed = (uint64_t)(J->seed + (double)(u % c->K));	/* whoever runs it */
		struct ftk_infer_result res = FTK_INFER_RESULT_INIT;
		struct ftk_error ie;
		ftk_error_clear(&ie);
		double t0 = ftk_now();
		int irc;
		if (chat) {
			irc = ftk_infer_chat(eng, k->messages, k->tools, &go, J->stop, J->n_stop, NULL,
					     NULL, &res, &ie);
		} else {
			struct strbuf prompt = STRBUF_INIT;
			const cJSON *m;
			cJSON_ArrayForEach(m, k->messages)
			{
				const char *role = ftk_json_get_str(m, "role");
				if (role && !strcmp(role, "user")) {
					strbuf_reset(&prompt);
					ftk_content_text(cJSON_GetObjectItemCaseSensitive(m, "content"), &prompt);
				}
			}
			irc = ftk_infer_text(eng, prompt.buf, &go, J->stop, J->n_stop, NULL, NULL, &res, &ie);
			strbuf_release(&prompt);
		}
		struct work *w = xcalloc(1, sizeof(*w));
		w->unit = u;
		w->latency_s = ftk_now() - t0;
		w->attempts = 1;
		if (irc < 0) {
			/* a prompt past the context, a template the engine cannot render */
			struct strbuf m = STRBUF_INIT;
			strbuf_addf(&m, "local model: %s", ie.msg);
			w->error = strbuf_detach(&m, NULL);
		} else {
			w->body = local_completion(&res);
			pthread_mutex_lock(&J->mu);
			J->asked++;
			pthread_mutex_unlock(&J->mu);
		}
		ftk_infer_result_release(&res);
		queue_push(J->q, w);
	}
	ftk_infer_free(eng);
	return NULL;
}

/*
 * -j N opens N engines (N copies of the model: memory grows with N), each on
 * its own thread, taking units in order; the seed of a unit depends on the
 * unit only, so the answers are the same whatever N is.
 */
static int run_local(struct ctx *c, struct ftk_error *err)
{
	struct local_job J;
	memset(&J, 0, sizeof(J));
	J.c = c;
	J.io = (struct ftk_infer_opts){ c->o->model_dir, c->o->adapter_dir, 0, 0, NULL };
	const cJSON *g = c->suite->generation;
	ftk_gen_opts_default(&J.go);
	J.go.temperature = (float)gen_num(g, "temperature", J.go.temperature);
	J.go.top_p = (float)gen_num(g, "top_p", J.go.top_p);
	J.go.top_k = (int)gen_num(g, "top_k", J.go.top_k);
	J.go.max_tokens = (int)gen_num(g, "max_tokens", J.go.max_tokens);
	J.seed = gen_num(g, "seed", 0);
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(g, "stop");
	if (cJSON_IsString(st))
		J.stop[J.n_stop++] = st->valuestring;
	else if (cJSON_IsArray(st)) {
		const cJSON *x;
		cJSON_ArrayForEach(x, st)
			if (cJSON_IsString(x) && J.n_stop < 16)
				J.stop[J.n_stop++] = x->valuestring;
	}
	pthread_mutex_init(&J.mu, NULL);

	struct score_queue q;
	memset(&q, 0, sizeof(q));
	pthread_mutex_init(&q.mu, NULL);
	pthread_cond_init(&q.cv, NULL);
	q.c = c;
	J.q = &q;
	pthread_t sth;
	int rc = 0;
	if (pthread_create(&sth, NULL, scorer, &q) != 0)
		rc = ftk_error_msg(err, FTK_EIO, "cannot start the scoring thread");
	int n = c->o->jobs > 0 ? c->o->jobs : 1;
	pthread_t *th = xcalloc((size_t)n, sizeof(*th));
	int started = 0;
	for (int i = 0; rc == 0 && i < n; i++) {
		if (pthread_create(&th[i], NULL, local_worker, &J) != 0)
			break;
		started++;
	}
	if (rc == 0 && started == 0)
		rc = ftk_error_msg(err, FTK_EIO, "cannot start a generation thread");
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	free(th);
	if (rc == 0 || started > 0) {
		pthread_mutex_lock(&q.mu);
		q.closed = 1;
		pthread_cond_signal(&q.cv);
		pthread_mutex_unlock(&q.mu);
		pthread_join(sth, NULL);
	}
	c->st->asked += J.asked;
	if (rc == 0 && J.rc < 0) {
		rc = J.rc;
		if (err)
			*err = J.err;
	}
	if (rc == 0 && q.rc < 0) {
		rc = q.rc;
		if (err)
			*err = q.err;
	}
	pthread_mutex_destroy(&J.mu);
	pthread_mutex_destroy(&q.mu);
	pthread_cond_destroy(&q.cv);
	return rc;
}

/* ------------------------------------------------------------ run.json */

static cJSON *run_identity(const struct ftk_eval_run_opts *o, const struct ftk_eval_suite *s)
{
	cJSON *id = cJSON_CreateObject();
	cJSON_AddStringToObject(id, "suite", s->name);
	static const char *const names[] = { "", "outputs", "endpoint", "local" };
	cJSON_AddStringToObject(id, "backend", names[o->backend]);
	if (o->backend == FTK_EVAL_ENDPOINT) {
		char *u = chat_url(o->endpoint);
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

/* Rewrite results.jsonl: one line per unit, in suite order, then any others. */
static int compact(struct ctx *c, struct ftk_error *err)
{
	char *path = results_path(c->o->run_dir);
	cJSON *all;
	int rc = ftk_eval_results_load(path, &all, NULL, err);
	if (rc < 0) {
		free(path);
		return rc;
	}
	long n = cJSON_GetArraySize(all);
	cJSON **items = xcalloc((size_t)n + 1, sizeof(*items));
	long *order = xmalloc(((size_t)n + 1) * sizeof(*order));
	long i = 0;
	cJSON *o;
	cJSON_ArrayForEach(o, all)
	{
		items[i] = o;
		long k = ftk_eval_suite_find(c->suite, ftk_json_get_str(o, "id"));
		long s = json_long(o, "sample", 0);
		order[i] = k >= 0 && s >= 0 && s < c->K ? k * c->K + s : c->n_units + i;
		i++;
	}
	/* a counting placement: unit numbers are unique, others keep file order */
	long *slot = xmalloc(((size_t)c->n_units + (size_t)n + 1) * sizeof(*slot));
	for (long u = 0; u < c->n_units + n; u++)
		slot[u] = -1;
	for (long j = 0; j < n; j++)
		slot[order[j]] = j;
	struct ftk_writer *w;
	rc = ftk_writer_open(&w, path, 0, err);
	for (long u = 0; rc == 0 && u < c->n_units + n; u++) {
		if (slot[u] < 0)
			continue;
		char *s = cJSON_PrintUnformatted(items[slot[u]]);
		rc = ftk_writer_line(w, s, strlen(s));
		cJSON_free(s);
	}
	if (rc == 0)
		rc = ftk_writer_close(w, err);
	else
		ftk_writer_abort(w);
	free(slot);
	free(order);
	free(items);
	cJSON_Delete(all);
	free(path);
	return rc;
}

static int write_summary(const char *dir, struct ftk_error *err)
{
	cJSON *all;
	int rc = ftk_eval_results_load(dir, &all, NULL, err);
	if (rc < 0)
		return rc;
	cJSON *sum = ftk_eval_summarize(all);
	cJSON_Delete(all);
	char *s = cJSON_Print(sum);
	cJSON_Delete(sum);
	struct strbuf p = STRBUF_INIT;
	strbuf_addf(&p, "%s/summary.json", dir);
	struct ftk_writer *w;
	rc = ftk_writer_open(&w, p.buf, 0, err);
	if (rc == 0) {
		rc = ftk_writer_line(w, s, strlen(s));
		if (rc == 0)
			rc = ftk_writer_close(w, err);
		else
			ftk_writer_abort(w);
	}
	cJSON_free(s);
	strbuf_release(&p);
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
	if (c.suite->output_type != FTK_EVAL_GENERATE) {	/* scored by log-likelihood: eval/loglik.c */
		rc = ftk_eval_loglik_run(o, c.suite, st, err);
		ftk_eval_suite_free(c.suite);
		return rc;
	}
	c.K = o->samples > 0 ? o->samples : 1;
	size_t n_cases = c.suite->n_cases;
	if (o->limit > 0 && (size_t)o->limit < n_cases)
		n_cases = (size_t)o->limit;
	c.n_units = (long)n_cases * c.K;
	st->units = c.n_units;
	c.done = xcalloc((size_t)c.n_units + 1, 1);

	if (o->backend == FTK_EVAL_ENDPOINT)
		c.chat_url = chat_url(o->endpoint);
	const char *jep = o->judge_endpoint ? o->judge_endpoint : o->endpoint;
	if (jep)
		c.judge_url = chat_url(jep);
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
	c.http.validate = chat_valid;
	c.judge_http = c.http;
	c.judge_http.max_in_flight = 1;
	c.judge_http.api_key_env = o->judge_api_key_env ? o->judge_api_key_env : o->api_key_env;
	if (!o->no_cache)
		c.cache_dir = o->cache_dir ? xstrdup(o->cache_dir) : default_cache_dir();

	/* judges */
	struct ftk_judge_env env = { judge_chat, &c, c.cache_dir };
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

	rc = mkdir_p(o->run_dir, err);
	if (rc < 0)
		goto out;
	cJSON *ident = run_identity(o, c.suite);
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
		if (k < 0 || (size_t)k >= n_cases || s < 0 || s >= c.K)
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
		rc = run_outputs(&c, err);
	else if (o->backend == FTK_EVAL_LOCAL)
		rc = run_local(&c, err);
	else
		rc = run_endpoint(&c, err);
	if (rc < 0)
		goto out;
	close(c.app.fd);
	c.app.fd = -1;
	rc = compact(&c, err);
	if (rc == 0)
		rc = write_summary(o->run_dir, err);
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

/* ------------------------------------------------------------ summaries */

struct metric_acc {
	char *name;
	const char *kind;	/* "semantic" / "surface" */
	char *twin;
	double *x;
	long *cl;
	size_t n, alloc;
};

struct metric_set {
	struct metric_acc *m;
	size_t n, alloc;
	struct smap idx;
};

static struct metric_acc *metric_get(struct metric_set *ms, const char *name)
{
	long i = smap_get(&ms->idx, name, -1);
	if (i >= 0)
		return &ms->m[i];
	FTK_ALLOC_GROW(ms->m, ms->n + 1, ms->alloc);
	struct metric_acc *a = &ms->m[ms->n];
	memset(a, 0, sizeof(*a));
	a->name = xstrdup(name);
	a->kind = "semantic";
	smap_put(&ms->idx, name, (long)ms->n);
	ms->n++;
	return a;
}

static void metric_set_free(struct metric_set *ms)
{
	for (size_t i = 0; i < ms->n; i++) {
		free(ms->m[i].name);
		free(ms->m[i].twin);
		free(ms->m[i].x);
		free(ms->m[i].cl);
	}
	free(ms->m);
	smap_free(&ms->idx);
}

/* Record kind and twin of every metric a result line's judges describe. */
static void note_kinds(struct metric_set *ms, const cJSON *line)
{
	const cJSON *j;
	cJSON_ArrayForEach(j, cJSON_GetObjectItemCaseSensitive(line, "judges"))
	{
		const cJSON *m;
		cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(j, "metrics"))
		{
			struct metric_acc *a = metric_get(ms, m->string);
			const char *kind = ftk_json_get_str(m, "kind");
			if (kind && !strcmp(kind, "surface"))
				a->kind = "surface";
			const char *twin = ftk_json_get_str(m, "twin");
			if (twin && !a->twin)
				a->twin = xstrdup(twin);
		}
	}
}

static void add_num(cJSON *o, const char *k, double v)
{
	if (isnan(v) || isinf(v))
		cJSON_AddNullToObject(o, k);
	else
		cJSON_AddNumberToObject(o, k, v);
}

cJSON *ftk_eval_summarize(const cJSON *results)
{
	struct metric_set ms = { 0 };
	struct smap ids = { 0 }, clusters = { 0 }, flags = { 0 };
	long n = 0, errors = 0, judge_errors = 0, flagged = 0, max_sample = 0, ptok = 0, ctok = 0;
	int any_cluster = 0;
	const cJSON *r;
	cJSON_ArrayForEach(r, results)
	{
		if (cJSON_GetObjectItemCaseSensitive(r, "cluster"))
			any_cluster = 1;
		if (json_long(r, "sample", 0) > max_sample)
			max_sample = json_long(r, "sample", 0);
	}
	int use_clusters = any_cluster || max_sample > 0;
	cJSON *flag_counts = cJSON_CreateObject();
	cJSON_ArrayForEach(r, results)
	{
		n++;
		const char *id = ftk_json_get_str(r, "id");
		smap_intern(&ids, id ? id : "");
		if (cJSON_GetObjectItemCaseSensitive(r, "error")) {
			errors++;
			continue;
		}
		const cJSON *u = cJSON_GetObjectItemCaseSensitive(r, "usage");
		ptok += json_long(u, "prompt_tokens", 0);
		ctok += json_long(u, "completion_tokens", 0);
		judge_errors += cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r, "judge_errors"));
		const cJSON *fl = cJSON_GetObjectItemCaseSensitive(r, "flags");
		if (cJSON_GetArraySize(fl) > 0)
			flagged++;
		const cJSON *f;
		cJSON_ArrayForEach(f, fl)
		{
			const char *kind = ftk_json_get_str(f, "kind");
			if (!kind)
				continue;
			long at = smap_get(&flags, kind, -1);
			if (at < 0) {
				smap_put(&flags, kind, cJSON_GetArraySize(flag_counts));
				cJSON_AddNumberToObject(flag_counts, kind, 1);
			} else {
				cJSON *cnt = cJSON_GetArrayItem(flag_counts, (int)at);
				cJSON_SetNumberValue(cnt, cnt->valuedouble + 1);
			}
		}
		note_kinds(&ms, r);
		const char *cname = ftk_json_get_str(r, "cluster");
		long cl = use_clusters ? smap_intern(&clusters, cname ? cname : (id ? id : "")) : 0;
		const cJSON *s;
		cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(r, "scores"))
		{
			if (!cJSON_IsNumber(s))
				continue;
			struct metric_acc *a = metric_get(&ms, s->string);
			if (a->n + 1 > a->alloc) {
				a->alloc = a->alloc ? a->alloc * 2 : 64;
				a->x = xrealloc(a->x, a->alloc * sizeof(*a->x));
				a->cl = xrealloc(a->cl, a->alloc * sizeof(*a->cl));
			}
			a->x[a->n] = s->valuedouble;
			a->cl[a->n] = cl;
			a->n++;
		}
	}
	cJSON *out = cJSON_CreateObject();
	cJSON_AddNumberToObject(out, "results", (double)n);
	cJSON_AddNumberToObject(out, "cases", (double)ids.n);
	cJSON_AddNumberToObject(out, "samples", (double)(max_sample + 1));
	cJSON_AddNumberToObject(out, "scored", (double)(n - errors));
	cJSON_AddNumberToObject(out, "errors", (double)errors);
	cJSON_AddNumberToObject(out, "judge_errors", (double)judge_errors);
	cJSON *metrics = cJSON_AddObjectToObject(out, "metrics");
	for (size_t i = 0; i < ms.n; i++) {
		struct metric_acc *a = &ms.m[i];
		struct ftk_stat_summary s;
		ftk_stats_summarize(a->x, use_clusters ? a->cl : NULL, a->n, &s);
		/* judges' metrics live in [0, 1]: a t interval is cut to it */
		int bounded = 1;
		for (size_t k = 0; k < a->n; k++)
			if (a->x[k] < 0 || a->x[k] > 1)
				bounded = 0;
		if (bounded && s.lo < 0)
			s.lo = 0;
		if (bounded && s.hi > 1)
			s.hi = 1;
		cJSON *m = cJSON_AddObjectToObject(metrics, a->name);
		cJSON_AddStringToObject(m, "kind", a->kind);
		if (a->twin)
			cJSON_AddStringToObject(m, "twin", a->twin);
		cJSON_AddBoolToObject(m, "binary", s.binary);
		cJSON_AddNumberToObject(m, "n", (double)s.n);
		if (use_clusters) {
			cJSON_AddNumberToObject(m, "n_clusters", (double)s.n_clusters);
			cJSON_AddBoolToObject(m, "clustered", s.clustered);
		}
		add_num(m, "mean", s.mean);
		add_num(m, "se", s.se);
		add_num(m, "lo", s.lo);
		add_num(m, "hi", s.hi);
		cJSON_AddStringToObject(m, "interval", s.interval);
	}
	cJSON_AddItemToObject(out, "flags", flag_counts);
	cJSON_AddNumberToObject(out, "flagged", (double)flagged);
	cJSON *us = cJSON_AddObjectToObject(out, "usage");
	cJSON_AddNumberToObject(us, "prompt_tokens", (double)ptok);
	cJSON_AddNumberToObject(us, "completion_tokens", (double)ctok);
	metric_set_free(&ms);
	smap_free(&ids);
	smap_free(&clusters);
	smap_free(&flags);
	return out;
}

/* ------------------------------------------------------------ comparison */

/* Per case: the metric's mean over samples, the sample count, the cluster. */
struct case_vals {
	struct smap ids;	/* id -> case index */
	char **cluster;		/* per case, borrowed from the results */
	size_t n_cases, alloc;
	struct metric_set ms;	/* x[case] sums, cl[case] counts (as long) */
};

static void case_vals_build(struct case_vals *cv, const cJSON *results)
{
	memset(cv, 0, sizeof(*cv));
	const cJSON *r;
	cJSON_ArrayForEach(r, results)
	{
		const char *id = ftk_json_get_str(r, "id");
		if (!id || cJSON_GetObjectItemCaseSensitive(r, "error"))
			continue;
		long ci = smap_get(&cv->ids, id, -1);
		if (ci < 0) {
			ci = (long)cv->n_cases;
			smap_put(&cv->ids, id, ci);
			FTK_ALLOC_GROW(cv->cluster, cv->n_cases + 1, cv->alloc);
			cv->cluster[ci] = (char *)ftk_json_get_str(r, "cluster");
			cv->n_cases++;
		}
		note_kinds(&cv->ms, r);
		const cJSON *s;
		cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(r, "scores"))
		{
			if (!cJSON_IsNumber(s))
				continue;
			struct metric_acc *a = metric_get(&cv->ms, s->string);
			if ((size_t)ci + 1 > a->alloc) {
				size_t na = ((size_t)ci + 1) * 2;
				a->x = xrealloc(a->x, na * sizeof(*a->x));
				a->cl = xrealloc(a->cl, na * sizeof(*a->cl));
				for (size_t z = a->alloc; z < na; z++) {
					a->x[z] = 0;
					a->cl[z] = 0;
				}
				a->alloc = na;
			}
			a->x[ci] += s->valuedouble;
			a->cl[ci]++;
		}
	}
}

static int case_val(const struct metric_acc *a, long ci, double *v, long *k)
{
	if (!a || ci < 0 || (size_t)ci >= a->alloc || a->cl[ci] == 0)
		return 0;
	*v = a->x[ci] / (double)a->cl[ci];
	*k = a->cl[ci];
	return 1;
}

static void case_vals_free(struct case_vals *cv)
{
	smap_free(&cv->ids);
	free(cv->cluster);
	metric_set_free(&cv->ms);
}

cJSON *ftk_eval_compare(const cJSON *ra, const cJSON *rb, double alpha)
{
	struct case_vals A, B;
	case_vals_build(&A, ra);
	case_vals_build(&B, rb);
	cJSON *out = cJSON_CreateObject();
	long only_a = 0, only_b = 0;
	for (size_t i = 0; i < A.ids.cap; i++)
		if (A.ids.keys[i] && smap_get(&B.ids, A.ids.keys[i], -1) < 0)
			only_a++;
	for (size_t i = 0; i < B.ids.cap; i++)
		if (B.ids.keys[i] && smap_get(&A.ids, B.ids.keys[i], -1) < 0)
			only_b++;
	cJSON_AddNumberToObject(out, "only_a", (double)only_a);
	cJSON_AddNumberToObject(out, "only_b", (double)only_b);
	cJSON *metrics = cJSON_AddObjectToObject(out, "metrics");
	cJSON *regressed = cJSON_CreateArray();
	int any_cluster = 0;
	for (size_t i = 0; i < A.n_cases; i++)
		if (A.cluster[i])
			any_cluster = 1;
	for (size_t mi = 0; mi < A.ms.n; mi++) {
		const struct metric_acc *ma = &A.ms.m[mi];
		long bi = smap_get(&B.ms.idx, ma->name, -1);
		if (bi < 0)
			continue;
		const struct metric_acc *mb = &B.ms.m[bi];
		double *xa = xmalloc((A.n_cases + 1) * sizeof(double));
		double *xb = xmalloc((A.n_cases + 1) * sizeof(double));
		long *cl = xmalloc((A.n_cases + 1) * sizeof(long));
		struct smap cmap = { 0 };
		size_t n = 0;
		int binary = 1;
		long to_fail = 0, to_pass = 0;
		for (size_t i = 0; i < A.ids.cap; i++) {
			if (!A.ids.keys[i])
				continue;
			long ca = A.ids.vals[i], cb = smap_get(&B.ids, A.ids.keys[i], -1);
			double va, vb;
			long ka, kb;
			if (cb < 0 || !case_val(ma, ca, &va, &ka) || !case_val(mb, cb, &vb, &kb))
				continue;
			if (ka != 1 || kb != 1 || (va != 0 && va != 1) || (vb != 0 && vb != 1))
				binary = 0;
			to_fail += va == 1 && vb == 0;
			to_pass += va == 0 && vb == 1;
			xa[n] = va;
			xb[n] = vb;
			const char *cname = A.cluster[ca] ? A.cluster[ca] : A.ids.keys[i];
			cl[n] = smap_intern(&cmap, cname);
			n++;
		}
		struct ftk_paired p;
		ftk_stats_paired(xa, xb, any_cluster ? cl : NULL, n, &p);
		cJSON *m = cJSON_AddObjectToObject(metrics, ma->name);
		cJSON_AddStringToObject(m, "kind", ma->kind);
		if (ma->twin)
			cJSON_AddStringToObject(m, "twin", ma->twin);
		cJSON_AddBoolToObject(m, "binary", binary && n > 0);
		cJSON_AddNumberToObject(m, "n", (double)n);
		add_num(m, "mean_a", p.mean_a);
		add_num(m, "mean_b", p.mean_b);
		add_num(m, "diff", p.diff);
		add_num(m, "se", p.se);
		add_num(m, "lo", p.lo);
		add_num(m, "hi", p.hi);
		double pv = p.p;
		if (binary && n > 0) {
			struct ftk_mcnemar mc;
			ftk_stats_mcnemar(to_fail, to_pass, &mc);
			pv = mc.p;
			cJSON_AddStringToObject(m, "test", mc.method[0] == 'e' ? "mcnemar-exact" : "mcnemar-chi2");
			cJSON_AddNumberToObject(m, "pass_to_fail", (double)to_fail);
			cJSON_AddNumberToObject(m, "fail_to_pass", (double)to_pass);
		} else {
			cJSON_AddStringToObject(m, "test", "paired-t");
		}
		add_num(m, "p", pv);
		int reg = n > 0 && p.diff < 0 && !isnan(pv) && pv < alpha;
		int is_surface = !strcmp(ma->kind, "surface");
		cJSON_AddBoolToObject(m, "significant", n > 0 && !isnan(pv) && pv < alpha);
		cJSON_AddBoolToObject(m, "regressed", reg && !is_surface);
		if (reg && !is_surface)
			cJSON_AddItemToArray(regressed, cJSON_CreateString(ma->name));
		smap_free(&cmap);
		free(xa);
		free(xb);
		free(cl);
	}
	cJSON_AddItemToObject(out, "regressed", regressed);
	case_vals_free(&A);
	case_vals_free(&B);
	return out;
}
