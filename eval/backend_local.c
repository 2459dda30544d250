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
#include "lib/openai.h"
#include "lib/strbuf.h"
#include "model/generate.h"
#include "model/infer.h"
#include "run_int.h"

/* What every local worker shares: the units to take, the sampler settings. */
struct local_job {
	struct ctx *c;
	struct score_queue *q;
	struct ftk_infer_opts io;
	struct ftk_gen_opts go;
	struct ftk_openai_gen g;	/* the suite's settings; g.stop borrowed from it */
	pthread_mutex_t mu;
	long next_unit;		/* the next unit a worker takes */
	long asked;
};

/* One worker: the job and its own engine (the weights shared with the others'). */
struct local_worker_arg {
	struct local_job *J;
	struct ftk_infer *eng;
};

static void *local_worker(void *arg)
{
	struct local_job *J = ((struct local_worker_arg *)arg)->J;
	struct ftk_infer *eng = ((struct local_worker_arg *)arg)->eng;
	struct ctx *c = J->c;
	int chat = ftk_infer_has_chat(eng);
	struct ftk_gen_opts go = J->go;
	for (;;) {
		pthread_mutex_lock(&J->mu);
		long u = J->next_unit;
		while (u < c->n_units && c->done[u])
			u++;
		J->next_unit = u + 1;
		int stop_now = score_queue_failed(J->q) < 0;
		pthread_mutex_unlock(&J->mu);
		if (u >= c->n_units || stop_now)
			break;
		const struct ftk_eval_case *k = &c->suite->cases[u / c->K];
		go.seed = J->g.seed + (uint64_t)(u % c->K);	/* whoever runs it */
		struct ftk_infer_result res = FTK_INFER_RESULT_INIT;
		struct ftk_error ie;
		ftk_error_clear(&ie);
		double t0 = ftk_now();
		int irc;
		if (chat) {
			irc = ftk_infer_chat(eng, k->messages, k->tools, &go, J->g.stop, J->g.n_stop, NULL,
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
			irc = ftk_infer_text(eng, prompt.buf, &go, J->g.stop, J->g.n_stop, NULL, NULL, &res, &ie);
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
			w->error_kind = xstrdup("local_model");
		} else {
			/* handed over as it is: no JSON for the scorer to parse back */
			w->text = strbuf_detach(&res.text, NULL);
			w->finish_reason = res.finish_reason ? res.finish_reason : "stop";
			w->prompt_tokens = res.prompt_tokens;
			w->completion_tokens = res.completion_tokens;
			w->local = 1;
			pthread_mutex_lock(&J->mu);
			J->asked++;
			pthread_mutex_unlock(&J->mu);
		}
		ftk_infer_result_release(&res);
		score_queue_push(J->q, w);
	}
	return NULL;
}

/*
 * -j N opens N engines on one copy of the weights (ftk_infer_open_n: each
 * engine adds only its KV cache, activations and scratch), each on its own
 * thread, taking units in order; the seed of a unit depends on the unit
 * only, so the answers are the same whatever N is.
 */
int eval_run_local(struct ctx *c, struct ftk_error *err)
{
	struct local_job J;
	memset(&J, 0, sizeof(J));
	J.c = c;
	J.io = (struct ftk_infer_opts){ c->o->model_dir, c->o->adapter_dir, 0, 0, NULL };
	ftk_gen_opts_default(&J.go);
	J.g.temperature = J.go.temperature;	/* greedy unless the suite says otherwise */
	J.g.top_p = J.go.top_p;
	J.g.top_k = J.go.top_k;
	J.g.max_tokens = J.go.max_tokens;
	int rc = ftk_openai_gen_read(c->suite->generation, &J.g, err);
	if (rc < 0) {
		if (err) {
			char f[sizeof(err->field)];
			snprintf(f, sizeof(f), "generation.%.200s", err->field);
			snprintf(err->field, sizeof(err->field), "%s", f);
			ftk_error_place(err, c->suite->path, 0);
		}
		return rc;
	}
	ftk_gen_opts_from_openai(&J.go, &J.g);
	int n = c->o->jobs > 0 ? c->o->jobs : 1;
	struct ftk_infer **engs = xcalloc((size_t)n, sizeof(*engs));
	if ((rc = ftk_infer_open_n(engs, n, &J.io, err)) < 0) {
		free(engs);
		return rc;
	}
	struct local_worker_arg *args = xcalloc((size_t)n, sizeof(*args));
	pthread_mutex_init(&J.mu, NULL);

	struct score_queue q;
	memset(&q, 0, sizeof(q));
	pthread_mutex_init(&q.mu, NULL);
	pthread_cond_init(&q.cv, NULL);
	q.c = c;
	J.q = &q;
	pthread_t sth;
	if (pthread_create(&sth, NULL, score_thread, &q) != 0)
		rc = ftk_error_msg(err, FTK_EIO, "cannot start the scoring thread");
	pthread_t *th = xcalloc((size_t)n, sizeof(*th));
	int started = 0;
	for (int i = 0; rc == 0 && i < n; i++) {
		args[i] = (struct local_worker_arg){ &J, engs[i] };
		if (pthread_create(&th[i], NULL, local_worker, &args[i]) != 0)
			break;
		started++;
	}
	if (rc == 0 && started == 0)
		rc = ftk_error_msg(err, FTK_EIO, "cannot start a generation thread");
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	free(th);
	for (int i = 0; i < n; i++)
		ftk_infer_free(engs[i]);
	free(engs);
	free(args);
	if (rc == 0 || started > 0) {
		pthread_mutex_lock(&q.mu);
		q.closed = 1;
		pthread_cond_signal(&q.cv);
		pthread_mutex_unlock(&q.mu);
		pthread_join(sth, NULL);
	}
	c->st->asked += J.asked;
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
