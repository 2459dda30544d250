/*
 * backend_endpoint.c: the endpoint backend, an OpenAI-compatible server.
 *
 * Every pending request is queued on one lib/http client (which keeps -j of
 * them in flight and retries), and answers, as they complete, go to the
 * scoring thread (run_int.h, struct score_queue), so that judges that take
 * their time (a judge model's votes) never stop the transfers; the results
 * file grows in completion order, and the final compaction puts it back in
 * suite order.  The protocol (request bodies, replies, the reply cache keyed
 * by URL, request body and sample index) is lib/openai.h's.  This file also
 * holds the judges' door to a judge model, which speaks the same protocol.
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
#include "lib/openai.h"
#include "lib/strbuf.h"
#include "run_int.h"

struct pending {
	long unit;
	char *body;
};

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

/*
 * A failed request as a work item: the error with the server's own words
 * (the first 2 KiB of its message: "HTTP 400: the prompt is 2560 tokens, the
 * context 512"), its cause ("http_400", "timeout", "connect", "connection",
 * "invalid_response", "other") and whether asking again may help.
 */
static void failed_work(struct work *w, const struct ftk_http_result *res)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, res->error);
	if (res->outcome == FTK_HTTP_STATUS && res->body && res->body_len) {
		struct strbuf m = STRBUF_INIT;
		ftk_openai_error_message(res->body, res->body_len, 2048, &m);
		if (m.len)
			strbuf_addf(&sb, ": %s", m.buf);
		strbuf_release(&m);
	}
	w->error = strbuf_detach(&sb, NULL);
	char kind[32];
	switch (res->outcome) {
	case FTK_HTTP_STATUS:
		snprintf(kind, sizeof(kind), "http_%ld", res->status);
		w->transient = res->status == 408 || res->status == 429 || res->status >= 500;
		break;
	case FTK_HTTP_TIMEOUT: snprintf(kind, sizeof(kind), "timeout"); w->transient = 1; break;
	case FTK_HTTP_CONNECT: snprintf(kind, sizeof(kind), "connect"); w->transient = 1; break;
	case FTK_HTTP_CONN: snprintf(kind, sizeof(kind), "connection"); w->transient = 1; break;
	case FTK_HTTP_INVALID: snprintf(kind, sizeof(kind), "invalid_response"); w->transient = 1; break;
	default: snprintf(kind, sizeof(kind), "other"); w->transient = 0; break;
	}
	w->error_kind = xstrdup(kind);
}

/*
 * Fail fast: the first question goes alone, once.  An endpoint nobody
 * answers at, a key it refuses (401, 403) or a model or URL it does not
 * know (404) stops the run at once, before a suite's worth of retries;
 * another final answer (a 400 for this one prompt) is that case's result;
 * a transient failure is left to the ordinary queue and its retries.
 * Returns 1 when the probe's answer is final (w filled), 0 to queue it, or
 * a negative code to stop.
 */
static int probe(struct ctx *c, const char *body, struct work *w, struct ftk_error *err)
{
	struct ftk_http_opts o = c->http;
	o.max_attempts = 1;
	o.max_in_flight = 1;
	struct ftk_http_result res;
	int rc = ftk_http_post(&o, c->chat_url, body, strlen(body), &res, err);
	if (rc < 0)
		return rc;
	char *url = ftk_openai_public_url(c->o->endpoint);
	struct work tmp;
	memset(&tmp, 0, sizeof(tmp));
	if (res.code)
		failed_work(&tmp, &res);
	if (res.code == 0) {
		w->body = res.body;
		res.body = NULL;
		rc = 1;
	} else if (res.outcome == FTK_HTTP_CONNECT) {
		rc = ftk_error_msg(err, FTK_ENET, "cannot reach the endpoint '%s': %s", url, tmp.error);
	} else if (res.outcome == FTK_HTTP_STATUS && (res.status == 401 || res.status == 403)) {
		rc = ftk_error_msg(err, FTK_ENET, "the endpoint '%s' refused the request (%.1500s): check the key (--api-key-env)",
				   url, tmp.error);
	} else if (res.outcome == FTK_HTTP_STATUS && res.status == 404) {
		rc = ftk_error_msg(err, FTK_ENET, "the endpoint '%s' answered %.1500s: is the model '%s' served there, and the URL right?",
				   url, tmp.error, c->o->model);
	} else if (!tmp.transient) {
		w->error = tmp.error;
		w->error_kind = tmp.error_kind;
		tmp.error = tmp.error_kind = NULL;
		rc = 1;
	} else {
		rc = 0;
	}
	if (rc == 1) {
		w->latency_s = res.seconds;
		w->attempts = res.attempts;
		c->st->asked++;
	}
	free(tmp.error);
	free(tmp.error_kind);
	free(url);
	ftk_http_result_release(&res);
	return rc;
}

int eval_run_endpoint(struct ctx *c, struct ftk_error *err)
{
	int probed = 0;
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
		char *body = ftk_openai_chat_request(c->o->model, k->messages, k->tools,
						     c->suite->generation, u % c->K);
		char *hit = c->o->no_cache ? NULL : ftk_openai_cache_get(c->cache_dir, c->chat_url, body,
									  u % c->K);
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
		if (!probed) {
			probed = 1;
			struct work *w = xcalloc(1, sizeof(*w));
			w->unit = u;
			int pr = probe(c, body, w, err);
			if (pr < 0) {
				free(w);
				free(body);
				rc = pr;
				break;
			}
			if (pr == 1) {
				if (w->body && !c->o->no_cache)
					ftk_openai_cache_put(c->cache_dir, c->chat_url, body, u % c->K, w->body,
							     strlen(w->body));
				score_queue_push(&q, w);
				free(body);
				continue;
			}
			free(w);
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
				ftk_openai_cache_put(c->cache_dir, c->chat_url, p->body, p->unit % c->K,
						     res.body, res.body_len);
			w->body = res.body;	/* NUL-terminated by lib/http */
			res.body = NULL;
		} else {
			failed_work(w, &res);
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
