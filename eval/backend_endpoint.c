/*
 * backend_endpoint.c: the endpoint backend, an OpenAI-compatible server.
 *
 * Every pending request is queued on one lib/http client (which keeps -j of
 * them in flight and retries), and answers, as they complete, go to the
 * scoring thread (run_int.h, struct score_queue), so that judges that take
 * their time (a judge model's votes) never stop the transfers; the results
 * file grows in completion order, and the final compaction puts it back in
 * suite order.  Replies are cached on disk under the hash of (URL, request
 * body, sample index).  This file also holds the judges' door to a judge
 * model, which speaks the same protocol.
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
#include "lib/strbuf.h"
#include "run_int.h"

struct pending {
	long unit;
	char *body;
};

char *endpoint_chat_url(const char *endpoint)
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
int endpoint_chat_valid(const char *body, size_t len, void *ctx)
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
int endpoint_judge_chat(void *vctx, const cJSON *request, cJSON **response, struct ftk_error *err)
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

char *endpoint_cache_dir(void)
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
	if (strbuf_read_file(&data, p.buf) == 0 && !endpoint_chat_valid(data.buf, data.len, NULL))
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
	if (eval_mkdir_p(p.buf, NULL) == 0) {
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

int eval_run_endpoint(struct ctx *c, struct ftk_error *err)
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
	if (pthread_create(&th, NULL, score_thread, &q) != 0) {
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
			score_queue_push(&q, w);
			free(body);
			continue;
		}
		pend[u].unit = u;
		pend[u].body = body;
		rc = ftk_http_submit(cl, c->chat_url, body, strlen(body), &pend[u], err);
	}
	struct ftk_http_result res;
	while (rc == 0 && score_queue_failed(&q) == 0 && (rc = ftk_http_next(cl, &res, err)) == 1) {
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
		score_queue_push(&q, w);
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
