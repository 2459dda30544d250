/*
 * loglik.c: log-likelihood scoring of multiple-choice and text suites
 * (see loglik.h for what is computed and why it matches the harness).
 *
 * A run holds every case's result in memory and writes results.jsonl in
 * suite order at the end: scoring is deterministic and needs no resume
 * (nothing is asked of a paid endpoint), so a killed run is simply run
 * again.  -j N opens N engines on one copy of the weights
 * (ftk_infer_open_n), runs each on its own thread and deals the cases out
 * round-robin; each engine keeps the last context in its KV cache, so the
 * choices of one question read the context once.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "eval/loglik.h"
#include <errno.h>
#include "lib/http.h"
#include "lib/json.h"
#include "lib/ledger.h"
#include "lib/stream.h"
#include "lib/strbuf.h"
#include "model/infer.h"

static int is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* The id every sequence starts with: BOS, or the EOS when there is no BOS (the harness's prefix token). */
static long prefix_id(const struct ftk_tokenizer *tok)
{
	long b = ftk_tokenizer_bos_id(tok);
	return b >= 0 ? b : ftk_tokenizer_eos_id(tok);
}

int ftk_loglik_encode(const struct ftk_tokenizer *tok, const char *context, const char *cont,
		      int max_len, uint32_t **ids, int *n, int *n_ctx, struct ftk_error *err)
{
	struct ftk_tokens t = FTK_TOKENS_INIT;
	size_t cl = strlen(context), ws = 0;
	while (ws < cl && is_ws(context[cl - 1 - ws]))
		ws++;
	/* context' = context minus its trailing whitespace; continuation' = that whitespace + cont */
	struct strbuf whole = STRBUF_INIT;
	strbuf_add(&whole, context, cl);
	strbuf_addstr(&whole, cont);
	size_t ctx_len = cl - ws;
	long bos = ftk_tokenizer_adds_bos(tok) || ctx_len == 0 ? prefix_id(tok) : -1;
	long nc = 0, nw;
	uint32_t *ctx_ids = NULL;
	int rc = 0;
	if (ctx_len > 0) {
		nc = ftk_tokenizer_encode(tok, context, ctx_len, 0, &t, err);
		if (nc < 0) {
			rc = (int)nc;
			goto out;
		}
		ctx_ids = xmalloc(((size_t)nc + 1) * sizeof(*ctx_ids));
		memcpy(ctx_ids, t.ids, (size_t)nc * sizeof(*ctx_ids));
	}
	nw = ftk_tokenizer_encode(tok, whole.buf, whole.len, 0, &t, err);
	if (nw < 0) {
		rc = (int)nw;
		goto out;
	}
	long n_cont = nw - nc;
	if (n_cont < 1) {
		rc = ftk_error_msg(err, FTK_EUSAGE, "the continuation '%s' adds no token to the context",
				   cont);
		goto out;
	}
	if (n_cont > max_len) {
		rc = ftk_error_msg(err, FTK_ELIMIT, "the continuation is %ld tokens, the model's context %d",
				   n_cont, max_len);
		goto out;
	}
	long total = (bos >= 0) + nc + n_cont;
	uint32_t *all = xmalloc((size_t)total * sizeof(*all));
	long k = 0;
	if (bos >= 0)
		all[k++] = (uint32_t)bos;
	if (nc)
		memcpy(all + k, ctx_ids, (size_t)nc * sizeof(*all));
	k += nc;
	memcpy(all + k, t.ids + nc, (size_t)n_cont * sizeof(*all));
	/* left truncation: keep the last max_len + 1 ids (the first is only read) */
	long drop = total > (long)max_len + 1 ? total - ((long)max_len + 1) : 0;
	if (drop)
		memmove(all, all + drop, (size_t)(total - drop) * sizeof(*all));
	*ids = all;
	*n = (int)(total - drop);
	*n_ctx = (int)(total - drop - n_cont);
out:
	free(ctx_ids);
	strbuf_release(&whole);
	ftk_tokens_release(&t);
	return rc;
}

int ftk_loglik_local(struct ftk_infer *e, const char *context, const char *cont,
		     struct ftk_loglik *out, struct ftk_error *err)
{
	uint32_t *ids;
	int n, n_ctx;
	int rc = ftk_loglik_encode(ftk_infer_tokenizer(e), context, cont, ftk_infer_context(e), &ids, &n,
				   &n_ctx, err);
	if (rc < 0)
		return rc;
	int m = n - n_ctx;
	double *lp = xmalloc((size_t)m * sizeof(*lp));
	uint32_t *top = xmalloc((size_t)m * sizeof(*top));
	rc = ftk_infer_score(e, ids, n, n_ctx, lp, top, NULL, err);
	if (rc == 0) {
		out->ll = 0;
		out->greedy = 1;
		out->n_tokens = m;
		for (int j = 0; j < m; j++) {
			out->ll += lp[j];
			out->greedy &= top[j] == ids[n_ctx + j];
		}
	}
	free(lp);
	free(top);
	free(ids);
	return rc;
}

int ftk_loglik_rolling_local(struct ftk_infer *e, const char *text, double *ll, long *n_tokens,
			     struct ftk_error *err)
{
	const struct ftk_tokenizer *tok = ftk_infer_tokenizer(e);
	struct ftk_tokens t = FTK_TOKENS_INIT;
	long n = ftk_tokenizer_encode(tok, text, strlen(text), 0, &t, err);
	if (n < 0) {
		ftk_tokens_release(&t);
		return (int)n;
	}
	int max_len = ftk_infer_context(e), rc = 0;
	uint32_t *full = xmalloc(((size_t)n + 1) * sizeof(*full));
	full[0] = (uint32_t)prefix_id(tok);
	memcpy(full + 1, t.ids, (size_t)n * sizeof(*full));
	ftk_tokens_release(&t);
	double *lp = xmalloc(((size_t)max_len + 1) * sizeof(*lp));
	*ll = 0;
	*n_tokens = n;
	/* window: targets full[s..e), reading full[a..e-1) with a = max(0, e-1-max_len) */
	for (long s = 1; s <= n; ) {
		long end = s + max_len < n + 1 ? s + max_len : n + 1;
		long a = end - 1 - max_len > 0 ? end - 1 - max_len : 0;
		rc = ftk_infer_score(e, full + a, (int)(end - a), (int)(s - a), lp, NULL, NULL, err);
		if (rc < 0)
			break;
		for (long j = 0; j < end - s; j++)
			*ll += lp[j];
		s = end;
	}
	free(lp);
	free(full);
	return rc;
}

static long utf8_chars(const char *s)
{
	long n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

void ftk_loglik_mc_scores(const struct ftk_loglik *ll, const cJSON *choices, int answer,
			  const cJSON *labels, cJSON *scores, int *pred, int *pred_norm)
{
	int n = cJSON_GetArraySize(choices), p = 0, pn = 0;
	double best_norm = -INFINITY;
	for (int i = 0; i < n; i++) {
		if (ll[i].ll > ll[p].ll)
			p = i;
		long len = utf8_chars(cJSON_GetArrayItem(choices, i)->valuestring);
		double v = ll[i].ll / (double)(len > 0 ? len : 1);
		if (i == 0 || v > best_norm) {
			best_norm = v;
			pn = i;
		}
	}
	cJSON_AddNumberToObject(scores, "acc", p == answer);
	cJSON_AddNumberToObject(scores, "acc_norm", pn == answer);
	if (labels) {
		int split = n;
		for (int i = 0; i < n; i++)
			if (cJSON_GetArrayItem(labels, i)->valuedouble == 0) {
				split = i;
				break;
			}
		double mx = -INFINITY, pt = 0, pa = 0;
		for (int i = 0; i < n; i++)
			if (ll[i].ll > mx)
				mx = ll[i].ll;
		for (int i = 0; i < n; i++) {
			double q = exp(ll[i].ll - mx);	/* the ratio is unchanged by the shift */
			pa += q;
			if (i < split)
				pt += q;
		}
		cJSON_AddNumberToObject(scores, "mc2", pt / pa);
	}
	*pred = p;
	*pred_norm = pn;
}

/* ------------------------------------------------------------ the run */

struct lrun {
	const struct ftk_eval_run_opts *o;
	const struct ftk_eval_suite *s;
	size_t n_cases;
	cJSON **res;		/* (n_cases) one result per case */
	int jobs;
	struct remote *remote;	/* the endpoint backend, or NULL (local) */
};

struct lworker {
	struct lrun *r;
	int w;
	pthread_t th;
	struct ftk_infer *e;	/* local: this worker's engine (weights shared), owned */
};

/* Keep only the metrics the suite names (all when it names none). */
static void keep_metrics(const struct ftk_eval_suite *s, cJSON *scores)
{
	if (!s->metrics)
		return;
	for (cJSON *m = scores->child; m;) {
		cJSON *next = m->next;
		int keep = 0;
		const cJSON *x;
		cJSON_ArrayForEach(x, s->metrics)
			keep |= !strcmp(x->valuestring, m->string);
		if (!keep)
			cJSON_DeleteItemFromObjectCaseSensitive(scores, m->string);
		m = next;
	}
}

/* ------------------------------------------------------------ the endpoint backend */

struct remote {
	const struct ftk_tokenizer *tok;	/* shared, read-only */
	int max_len;
	char *url;			/* .../v1/completions */
	const char *model;
	struct ftk_http_opts http;
};

static char *completions_url(const char *ep)
{
	struct strbuf sb = STRBUF_INIT;
	size_t n = strlen(ep);
	while (n && ep[n - 1] == '/')
		n--;
	strbuf_add(&sb, ep, n);
	if (n >= 12 && !strncmp(ep + n - 12, "/completions", 12))
		;
	else if (n >= 3 && !strncmp(ep + n - 3, "/v1", 3))
		strbuf_addstr(&sb, "/completions");
	else
		strbuf_addstr(&sb, "/v1/completions");
	return strbuf_detach(&sb, NULL);
}

/*
 * One (context, continuation) through /v1/completions: the same ids as the
 * local backend, sent as a token-id prompt with echo, logprobs 1 and
 * max_tokens 0 (lm-evaluation-harness's local-completions request, with
 * max_tokens 0 instead of its 1 so nothing is generated); the sum of
 * token_logprobs past the context, greedy when each is the largest of its
 * top_logprobs.
 */
static int ftk_loglik_remote(struct remote *r, const char *context, const char *cont,
			     struct ftk_loglik *out, struct ftk_error *err)
{
	uint32_t *ids;
	int n, n_ctx;
	int rc = ftk_loglik_encode(r->tok, context, cont, r->max_len, &ids, &n, &n_ctx, err);
	if (rc < 0)
		return rc;
	cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "model", r->model);
	cJSON *p = cJSON_AddArrayToObject(req, "prompt");
	for (int i = 0; i < n; i++)
		cJSON_AddItemToArray(p, cJSON_CreateNumber(ids[i]));
	cJSON_AddBoolToObject(req, "echo", 1);
	cJSON_AddNumberToObject(req, "logprobs", 1);
	cJSON_AddNumberToObject(req, "max_tokens", 0);
	cJSON_AddNumberToObject(req, "temperature", 0);
	struct strbuf body = STRBUF_INIT;
	ftk_json_print(&body, req);
	cJSON_Delete(req);
	struct ftk_http_result hr;
	memset(&hr, 0, sizeof(hr));
	rc = ftk_http_post(&r->http, r->url, body.buf, body.len, &hr, err);
	strbuf_release(&body);
	if (rc == 0 && hr.code < 0)
		rc = ftk_error_msg(err, FTK_ENET, "%s: %s", r->url, hr.error);
	cJSON *resp = NULL;
	if (rc == 0 && !(resp = cJSON_ParseWithLength(hr.body, hr.body_len)))
		rc = ftk_error_msg(err, FTK_ENET, "%s: the reply is not JSON", r->url);
	if (rc == 0) {
		const cJSON *lp = cJSON_GetObjectItemCaseSensitive(
			cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(resp, "choices"), 0), "logprobs");
		const cJSON *tl = cJSON_GetObjectItemCaseSensitive(lp, "token_logprobs");
		const cJSON *tp = cJSON_GetObjectItemCaseSensitive(lp, "top_logprobs");
		if (cJSON_GetArraySize(tl) < n)
			rc = ftk_error_msg(err, FTK_ENET,
					   "%s: the reply has %d token_logprobs for a %d-token prompt (echo and logprobs supported?)",
					   r->url, cJSON_GetArraySize(tl), n);
		out->ll = 0;
		out->greedy = 1;
		out->n_tokens = n - n_ctx;
		for (int j = n_ctx; rc == 0 && j < n; j++) {
			const cJSON *v = cJSON_GetArrayItem(tl, j);
			if (!cJSON_IsNumber(v)) {
				rc = ftk_error_msg(err, FTK_ENET, "%s: token_logprobs[%d] is not a number", r->url, j);
				break;
			}
			out->ll += v->valuedouble;
			const cJSON *x;
			cJSON_ArrayForEach(x, cJSON_GetArrayItem(tp, j))
				if (cJSON_IsNumber(x) && x->valuedouble > v->valuedouble)
					out->greedy = 0;
		}
	}
	cJSON_Delete(resp);
	ftk_http_result_release(&hr);
	free(ids);
	return rc;
}

/* The scorer a worker uses: a local engine, or the endpoint. */
struct scorer {
	struct ftk_infer *e;
	struct remote *r;
};

static int score_one(struct scorer *sc, const char *context, const char *cont, struct ftk_loglik *out,
		     struct ftk_error *err)
{
	return sc->e ? ftk_loglik_local(sc->e, context, cont, out, err)
		     : ftk_loglik_remote(sc->r, context, cont, out, err);
}

static cJSON *score_case(struct scorer *sc, const struct ftk_eval_suite *s,
			 const struct ftk_eval_case *c, struct ftk_error *err)
{
	cJSON *out = cJSON_CreateObject();
	cJSON_AddStringToObject(out, "id", c->id);
	cJSON_AddNumberToObject(out, "sample", 0);
	if (c->cluster)
		cJSON_AddStringToObject(out, "cluster", c->cluster);
	cJSON *scores = cJSON_CreateObject();
	int rc = 0;
	if (s->output_type == FTK_EVAL_ROLLING) {
		double ll;
		long nt;
		rc = sc->e ? ftk_loglik_rolling_local(sc->e, c->text, &ll, &nt, err)
			   : ftk_error_msg(err, FTK_EUNSUPPORTED,
					   "rolling log-likelihood runs with --model-dir only");
		if (rc == 0) {
			long bytes = (long)strlen(c->text), words = 0;
			for (const char *p = c->text; *p;) {	/* the harness: len(re.split(r"\s+", doc)) */
				while (*p && !is_ws(*p))
					p++;
				words++;
				while (*p && is_ws(*p))
					p++;
			}
			cJSON_AddNumberToObject(out, "loglik", ll);
			cJSON_AddNumberToObject(out, "tokens", (double)nt);
			cJSON_AddNumberToObject(out, "bytes", (double)bytes);
			cJSON_AddNumberToObject(out, "words", (double)words);
			cJSON_AddNumberToObject(scores, "bits_per_byte", bytes ? -ll / (bytes * M_LN2) : 0);
		}
	} else {
		int n = cJSON_GetArraySize(c->choices);
		struct ftk_loglik *ll = xcalloc((size_t)n, sizeof(*ll));
		cJSON *arr = cJSON_CreateArray();
		for (int i = 0; i < n && rc == 0; i++) {
			struct strbuf cont = STRBUF_INIT;
			strbuf_addch(&cont, ' ');	/* the harness's target_delimiter */
			strbuf_addstr(&cont, cJSON_GetArrayItem(c->choices, i)->valuestring);
			rc = score_one(sc, c->context, cont.buf, &ll[i], err);
			strbuf_release(&cont);
			if (rc == 0) {
				cJSON *x = cJSON_CreateObject();
				cJSON_AddNumberToObject(x, "ll", ll[i].ll);
				cJSON_AddBoolToObject(x, "greedy", ll[i].greedy);
				cJSON_AddNumberToObject(x, "tokens", ll[i].n_tokens);
				cJSON_AddItemToArray(arr, x);
			}
		}
		cJSON_AddItemToObject(out, "choices", arr);
		if (rc == 0) {
			int p, pn;
			ftk_loglik_mc_scores(ll, c->choices, c->answer, c->labels, scores, &p, &pn);
			cJSON_AddNumberToObject(out, "answer", c->answer);
			cJSON_AddNumberToObject(out, "pred", p);
			cJSON_AddNumberToObject(out, "pred_norm", pn);
		}
		free(ll);
	}
	if (rc < 0) {
		cJSON_Delete(scores);
		cJSON_AddStringToObject(out, "error", FTK_ERROR_TEXT(err));
		return out;
	}
	keep_metrics(s, scores);
	cJSON_AddItemToObject(out, "scores", scores);
	return out;
}

/* The model's context from DIR/config.json (max_position_embeddings), else 2048. */
static int context_of(const char *dir)
{
	struct strbuf p = STRBUF_INIT;
	strbuf_addf(&p, "%s/config.json", dir);
	char *data;
	size_t len;
	int ctx = 2048;
	if (ftk_read_all(p.buf, &data, &len, NULL) == 0) {
		cJSON *c = cJSON_ParseWithLength(data, len);
		const cJSON *m = cJSON_GetObjectItemCaseSensitive(c, "max_position_embeddings");
		if (cJSON_IsNumber(m) && m->valuedouble >= 2)
			ctx = (int)m->valuedouble;
		cJSON_Delete(c);
		free(data);
	}
	strbuf_release(&p);
	return ctx;
}

static void *lworker_main(void *arg)
{
	struct lworker *w = arg;
	struct lrun *r = w->r;
	struct ftk_error err;
	struct scorer sc = { w->e, r->remote };
	for (size_t i = (size_t)w->w; i < r->n_cases; i += (size_t)r->jobs) {
		ftk_error_clear(&err);
		r->res[i] = score_case(&sc, r->s, &r->s->cases[i], &err);
	}
	return NULL;
}

static int write_file(const char *dir, const char *name, const char *text, struct ftk_error *err)
{
	struct strbuf p = STRBUF_INIT;
	strbuf_addf(&p, "%s/%s", dir, name);
	struct ftk_writer *w;
	int rc = ftk_writer_open(&w, p.buf, 0, err);
	if (rc == 0) {
		if (ftk_writer_write(w, text, strlen(text)) < 0) {
			ftk_writer_abort(w);
			rc = ftk_error_set(err, FTK_EIO, p.buf, 0, NULL, "cannot write");
		} else
			rc = ftk_writer_close(w, err);
	}
	strbuf_release(&p);
	return rc;
}

int ftk_eval_loglik_run(const struct ftk_eval_run_opts *o, const struct ftk_eval_suite *s,
			struct ftk_eval_run_stats *st, struct ftk_error *err)
{
	if (o->backend != FTK_EVAL_LOCAL && o->backend != FTK_EVAL_ENDPOINT)
		return ftk_error_msg(err, FTK_EUNSUPPORTED,
				     "suite '%s' is scored by log-likelihood: give --model-dir or --endpoint",
				     s->name);
	if (o->backend == FTK_EVAL_ENDPOINT && !o->tokenizer_dir)
		return ftk_error_msg(err, FTK_EUSAGE,
				     "suite '%s' is scored by log-likelihood: --endpoint needs --tokenizer DIR "
				     "(the model's tokenizer, to split context and continuation)", s->name);
	if (o->samples > 1)
		return ftk_error_msg(err, FTK_EUSAGE,
				     "log-likelihood scoring is deterministic: --samples does not apply");
	double t0 = ftk_now();
	struct lrun r;
	memset(&r, 0, sizeof(r));
	r.o = o;
	r.s = s;
	r.n_cases = s->n_cases;
	if (o->limit > 0 && (size_t)o->limit < r.n_cases)
		r.n_cases = (size_t)o->limit;
	r.jobs = o->jobs > 0 ? o->jobs : 1;
	if ((size_t)r.jobs > r.n_cases)
		r.jobs = (int)r.n_cases;
	r.res = xcalloc(r.n_cases, sizeof(*r.res));
	struct remote rem;
	struct ftk_tokenizer *tok = NULL;
	memset(&rem, 0, sizeof(rem));
	if (o->backend == FTK_EVAL_ENDPOINT) {
		int trc = ftk_tokenizer_load(&tok, o->tokenizer_dir, err);
		if (trc < 0) {
			free(r.res);
			return trc;
		}
		rem.tok = tok;
		rem.max_len = context_of(o->tokenizer_dir);
		rem.url = completions_url(o->endpoint);
		rem.model = o->model;
		ftk_http_opts_init(&rem.http);
		rem.http.max_in_flight = 1;
		if (o->timeout_s > 0)
			rem.http.timeout_s = o->timeout_s;
		if (o->max_attempts > 0)
			rem.http.max_attempts = o->max_attempts;
		if (o->retry_base_s >= 0)
			rem.http.backoff_base_s = o->retry_base_s;
		if (o->retry_max_wait_s > 0)
			rem.http.max_wait_s = o->retry_max_wait_s;
		rem.http.api_key_env = o->api_key_env;
		r.remote = &rem;
	}
	struct lworker *ws = xcalloc((size_t)r.jobs, sizeof(*ws));
	int rc = 0;
	if (!r.remote) {	/* one model in memory, one engine (KV cache) per worker */
		struct ftk_infer **es = xcalloc((size_t)r.jobs, sizeof(*es));
		struct ftk_infer_opts io = { o->model_dir, o->adapter_dir, 0, 0, NULL };
		rc = ftk_infer_open_n(es, r.jobs, &io, err);
		for (int w = 0; w < r.jobs; w++)
			ws[w].e = es[w];
		free(es);
	}
	for (int w = 0; rc == 0 && w < r.jobs; w++) {
		ws[w].r = &r;
		ws[w].w = w;
		pthread_create(&ws[w].th, NULL, lworker_main, &ws[w]);
	}
	for (int w = 0; rc == 0 && w < r.jobs; w++)
		pthread_join(ws[w].th, NULL);
	for (int w = 0; w < r.jobs; w++)
		ftk_infer_free(ws[w].e);
	free(ws);
	if (rc < 0)
		goto out;
	if (mkdir(o->run_dir, 0777) < 0 && errno != EEXIST) {
		rc = ftk_error_set(err, FTK_EIO, o->run_dir, 0, NULL, "cannot create: %s", strerror(errno));
		goto out;
	}
	struct strbuf lines = STRBUF_INIT;
	cJSON *all = cJSON_CreateArray();
	for (size_t i = 0; i < r.n_cases; i++) {
		ftk_json_print(&lines, r.res[i]);
		strbuf_addch(&lines, '\n');
		if (cJSON_GetObjectItemCaseSensitive(r.res[i], "error"))
			st->errors++;
		else
			st->scored++;
		cJSON_AddItemReferenceToArray(all, r.res[i]);
	}
	st->units = (long)r.n_cases;
	st->asked = (long)r.n_cases;
	cJSON *ident = cJSON_CreateObject();
	cJSON_AddStringToObject(ident, "suite", s->name);
	cJSON_AddStringToObject(ident, "output_type",
				s->output_type == FTK_EVAL_ROLLING ? "loglikelihood_rolling" : "multiple_choice");
	if (r.remote) {
		cJSON_AddStringToObject(ident, "backend", "endpoint");
		cJSON_AddStringToObject(ident, "endpoint", rem.url);
		cJSON_AddStringToObject(ident, "model", o->model);
		cJSON_AddStringToObject(ident, "tokenizer", o->tokenizer_dir);
	} else {
		cJSON_AddStringToObject(ident, "backend", "local");
		cJSON_AddStringToObject(ident, "model_dir", o->model_dir);
	}
	if (o->adapter_dir)
		cJSON_AddStringToObject(ident, "adapter", o->adapter_dir);
	char *id_s = cJSON_Print(ident);
	cJSON_Delete(ident);
	cJSON *sum = ftk_eval_summarize(all);
	if (s->output_type == FTK_EVAL_ROLLING) {
		/* the harness's corpus-level numbers: sums over every text, then the ratio */
		double ll = 0, bytes = 0, words = 0;
		const cJSON *x;
		cJSON_ArrayForEach(x, all)
		{
			if (cJSON_GetObjectItemCaseSensitive(x, "error"))
				continue;
			ll += cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(x, "loglik"));
			bytes += cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(x, "bytes"));
			words += cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(x, "words"));
		}
		cJSON *c = cJSON_AddObjectToObject(sum, "corpus");
		cJSON_AddNumberToObject(c, "word_perplexity", exp(-ll / words));
		cJSON_AddNumberToObject(c, "byte_perplexity", exp(-ll / bytes));
		cJSON_AddNumberToObject(c, "bits_per_byte", -ll / (bytes * M_LN2));
	}
	char *sum_s = cJSON_Print(sum);
	cJSON_Delete(sum);
	cJSON_Delete(all);
	struct strbuf sj = STRBUF_INIT;
	strbuf_addf(&sj, "%s\n", sum_s);
	struct strbuf ij = STRBUF_INIT;
	strbuf_addf(&ij, "%s\n", id_s);
	rc = write_file(o->run_dir, "results.jsonl", lines.buf ? lines.buf : "", err);
	if (rc == 0)
		rc = write_file(o->run_dir, "run.json", ij.buf, err);
	if (rc == 0)
		rc = write_file(o->run_dir, "summary.json", sj.buf, err);
	cJSON_free(sum_s);
	cJSON_free(id_s);
	strbuf_release(&sj);
	strbuf_release(&ij);
	strbuf_release(&lines);
out:
	for (size_t i = 0; i < r.n_cases; i++)
		cJSON_Delete(r.res[i]);
	free(r.res);
	free(rem.url);
	ftk_tokenizer_free(tok);
	snprintf(st->suite, sizeof(st->suite), "%s", s->name);
	st->seconds = ftk_now() - t0;
	return rc;
}
