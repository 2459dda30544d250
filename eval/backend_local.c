/*
 * backend_local.c: the local backend, a model directory run in-process with
 * the model runtime's inference engine (model/infer.h), one request at a time
 * per engine (an engine holds one KV cache).  Generation settings map to the
 * sampler: temperature, top_p, top_k, seed (+ sample index), max_tokens,
 * stop.  A model whose tokenizer has no chat template (the tiny stories260K)
 * is given the last user message as raw text.  Nothing is cached: the run's
 * own results.jsonl is what makes a re-run free.
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
#include "lib/json.h"
#include "lib/ledger.h"
#include "lib/record.h"
#include "lib/strbuf.h"
#include "model/infer.h"
#include "run_int.h"

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
		int stop_now = J->rc < 0 || score_queue_failed(J->q) < 0;
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
		score_queue_push(J->q, w);
	}
	ftk_infer_free(eng);
	return NULL;
}

/*
 * -j N opens N engines (N copies of the model: memory grows with N), each on
 * its own thread, taking units in order; the seed of a unit depends on the
 * unit only, so the answers are the same whatever N is.
 */
int eval_run_local(struct ctx *c, struct ftk_error *err)
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
	if (pthread_create(&sth, NULL, score_thread, &q) != 0)
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
