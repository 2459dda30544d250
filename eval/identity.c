/*
 * identity.c: what a run is, written to run.json, and what a resume must match.
 *
 * A run directory holds the scores of one configuration.  Its identity
 * covers everything that decides a score:
 *
 *   the suite      "suite" (its name) and "suite_hash", a hash of every case
 *                  record (canonical JSON, file order), so an edited case,
 *                  an added one or a fixed expected answer is a new suite;
 *   the judges     "judges": each judge's name, label and settings as the
 *                  suite gives them, and the judge endpoint when one is given;
 *   the model      "backend" and its "endpoint" + "model", "model_dir" +
 *                  "adapter", or "outputs"; "samples"; "generation".
 *
 * A resume into a directory whose identity differs is refused, naming every
 * member that differs (up to a few).  --rescore accepts a different suite or
 * judges (the model side must match: the stored outputs are then still the
 * answers this configuration would get) and re-judges the stored outputs.
 * Each result line carries "prompt_hash", the hash of what the model was
 * shown (messages and tools), so a rescore reuses an output only for a case
 * whose prompt is unchanged.
 *
 * run.json is the identity plus "suite_path" (absolute, not part of the
 * identity: a resume from another folder names the same suite by another
 * relative path), so that ftk-review and ftk eval rescore can find the suite.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>
#include "lib/openai.h"
#include "lib/strbuf.h"
#include "run_int.h"

/* The members of the identity that describe the model side. */
static const char *const model_side[] = { "backend", "endpoint", "model", "model_dir", "adapter",
					  "outputs", "samples", "generation", NULL };

int identity_is_model_side(const char *member)
{
	for (size_t i = 0; model_side[i]; i++)
		if (!strcmp(model_side[i], member))
			return 1;
	return 0;
}

static void hash_hex(XXH128_hash_t h, char out[33])
{
	snprintf(out, 33, "%016llx%016llx", (unsigned long long)h.high64, (unsigned long long)h.low64);
}

static void hash_json(XXH3_state_t *st, const cJSON *v)
{
	char *s = v ? cJSON_PrintUnformatted(v) : NULL;
	if (s)
		XXH3_128bits_update(st, s, strlen(s));
	XXH3_128bits_update(st, "\n", 1);
	cJSON_free(s);
}

void prompt_hash(const struct ftk_eval_case *k, char out[33])
{
	XXH3_state_t *st = XXH3_createState();
	XXH3_128bits_reset(st);
	hash_json(st, k->messages);
	hash_json(st, k->tools);
	hash_hex(XXH3_128bits_digest(st), out);
	XXH3_freeState(st);
}

void ftk_eval_shard_range(size_t n, int index, int count, long *lo, long *hi)
{
	*lo = (long)(n * (size_t)index / (size_t)count);
	*hi = (long)(n * (size_t)(index + 1) / (size_t)count);
}

/* A slice of a sharded run says which, last: ftk_eval_merge drops it for the whole run's. */
static void add_shard(cJSON *id, const struct ftk_eval_run_opts *o, const struct ftk_eval_suite *s,
		      const cJSON *model_from)
{
	if (model_from) {
		const cJSON *sh = cJSON_GetObjectItemCaseSensitive(model_from, "shard");
		if (sh)
			cJSON_AddItemToObject(id, "shard", cJSON_Duplicate(sh, 1));
		return;
	}
	if (o->shard_count <= 0)
		return;
	size_t n = s->n_cases;
	if (o->limit > 0 && (size_t)o->limit < n)
		n = (size_t)o->limit;
	long lo, hi;
	ftk_eval_shard_range(n, o->shard_index, o->shard_count, &lo, &hi);
	cJSON *sh = cJSON_AddObjectToObject(id, "shard");
	cJSON_AddNumberToObject(sh, "index", o->shard_index);
	cJSON_AddNumberToObject(sh, "of", o->shard_count);
	cJSON_AddNumberToObject(sh, "first_case", (double)lo);
	cJSON_AddNumberToObject(sh, "cases", (double)(hi - lo));
}

cJSON *run_identity(const struct ftk_eval_run_opts *o, const struct ftk_eval_suite *s, int K,
		    const cJSON *model_from)
{
	cJSON *id = cJSON_CreateObject();
	cJSON_AddStringToObject(id, "suite", s->name);
	XXH3_state_t *st = XXH3_createState();
	XXH3_128bits_reset(st);
	for (size_t i = 0; i < s->n_cases; i++)
		hash_json(st, s->cases[i].rec);
	char hex[33];
	hash_hex(XXH3_128bits_digest(st), hex);
	XXH3_freeState(st);
	cJSON_AddStringToObject(id, "suite_hash", hex);
	cJSON *js = cJSON_AddArrayToObject(id, "judges");
	for (size_t j = 0; j < s->n_judges; j++) {
		cJSON *e = cJSON_CreateObject();
		cJSON_AddStringToObject(e, "judge", s->judges[j].kind);
		if (s->judges[j].label)
			cJSON_AddStringToObject(e, "label", s->judges[j].label);
		cJSON_AddItemToObject(e, "settings", s->judges[j].settings
							 ? cJSON_Duplicate(s->judges[j].settings, 1)
							 : cJSON_CreateObject());
		cJSON_AddItemToArray(js, e);
	}
	if (o->judge_endpoint) {
		char *u = ftk_openai_public_url(o->judge_endpoint);
		cJSON_AddStringToObject(id, "judge_endpoint", u);
		free(u);
	}
	if (model_from) {
		/* ftk eval rescore: the model side is the stored run's */
		for (size_t i = 0; model_side[i]; i++) {
			const cJSON *v = cJSON_GetObjectItemCaseSensitive(model_from, model_side[i]);
			if (v)
				cJSON_AddItemToObject(id, model_side[i], cJSON_Duplicate(v, 1));
		}
		add_shard(id, o, s, model_from);
		return id;
	}
	static const char *const names[] = { "", "outputs", "endpoint", "local" };
	cJSON_AddStringToObject(id, "backend", names[o->backend]);
	if (o->backend == FTK_EVAL_ENDPOINT) {
		char *u = ftk_openai_public_url(o->endpoint);
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
	cJSON_AddNumberToObject(id, "samples", K);
	cJSON_AddItemToObject(id, "generation", cJSON_Duplicate(s->generation, 1));
	add_shard(id, o, s, NULL);
	return id;
}

/* Append "path (was X, now Y)" for every leaf where a and b differ. */
static void diff(const cJSON *a, const cJSON *b, const char *path, struct strbuf *out, int *n,
		 int *model)
{
	if (a && b && cJSON_Compare(a, b, 1))
		return;
	if (a && b && cJSON_IsObject(a) && cJSON_IsObject(b)) {
		for (const cJSON *m = a->child; m; m = m->next) {
			char p[512];
			snprintf(p, sizeof(p), "%s%s%s", path, *path ? "." : "", m->string);
			diff(m, cJSON_GetObjectItemCaseSensitive(b, m->string), p, out, n, model);
		}
		for (const cJSON *m = b->child; m; m = m->next)
			if (!cJSON_GetObjectItemCaseSensitive(a, m->string)) {
				char p[512];
				snprintf(p, sizeof(p), "%s%s%s", path, *path ? "." : "", m->string);
				diff(NULL, m, p, out, n, model);
			}
		return;
	}
	if (a && b && cJSON_IsArray(a) && cJSON_IsArray(b) &&
	    cJSON_GetArraySize(a) == cJSON_GetArraySize(b)) {
		int i = 0;
		for (const cJSON *x = a->child, *y = b->child; x && y; x = x->next, y = y->next, i++) {
			char p[512];
			snprintf(p, sizeof(p), "%s[%d]", path, i);
			diff(x, y, p, out, n, model);
		}
		return;
	}
	char top[128];
	snprintf(top, sizeof(top), "%.*s", (int)strcspn(path, ".["), path);
	if (identity_is_model_side(top))
		*model = 1;
	if ((*n)++ >= 4) {
		if (*n == 5)
			strbuf_addstr(out, ", ...");
		return;
	}
	char *was = a ? cJSON_PrintUnformatted(a) : NULL;
	char *now = b ? cJSON_PrintUnformatted(b) : NULL;
	strbuf_addf(out, "%s%s (%.80s, now %.80s)", out->len ? ", " : "", path, was ? was : "unset",
		    now ? now : "unset");
	cJSON_free(was);
	cJSON_free(now);
}

int identity_diff(const cJSON *old, const cJSON *now, struct strbuf *out, int *model)
{
	int n = 0;
	*model = 0;
	/* only the identity's members: run.json also holds suite_path */
	for (const cJSON *m = now->child; m; m = m->next)
		diff(cJSON_GetObjectItemCaseSensitive(old, m->string), m, m->string, out, &n, model);
	for (const cJSON *m = old->child; m; m = m->next)
		if (strcmp(m->string, "suite_path") && !cJSON_GetObjectItemCaseSensitive(now, m->string))
			diff(m, NULL, m->string, out, &n, model);
	return n;
}

int run_json_read(const char *dir, cJSON **out, struct ftk_error *err)
{
	struct strbuf p = STRBUF_INIT, data = STRBUF_INIT;
	strbuf_addf(&p, "%s/run.json", dir);
	*out = NULL;
	int rc = 0;
	if (strbuf_read_file(&data, p.buf) != 0) {
		rc = ftk_error_set(err, FTK_ENOTFOUND, p.buf, 0, NULL, "cannot read: %s", strerror(errno));
	} else {
		*out = cJSON_ParseWithLength(data.buf, data.len);
		if (!cJSON_IsObject(*out)) {
			cJSON_Delete(*out);
			*out = NULL;
			rc = ftk_error_set(err, FTK_EDATA, p.buf, 0, NULL, "not a JSON object");
		}
	}
	strbuf_release(&p);
	strbuf_release(&data);
	return rc;
}

int run_json_write(const char *dir, const cJSON *id, const char *suite_path, struct ftk_error *err)
{
	struct strbuf p = STRBUF_INIT, tmp = STRBUF_INIT;
	strbuf_addf(&p, "%s/run.json", dir);
	strbuf_addf(&tmp, "%s.tmp.%ld", p.buf, (long)getpid());
	cJSON *w = cJSON_Duplicate(id, 1);
	char *abs = suite_path ? realpath(suite_path, NULL) : NULL;
	if (suite_path)
		cJSON_AddStringToObject(w, "suite_path", abs ? abs : suite_path);
	free(abs);
	char *s = cJSON_Print(w);
	cJSON_Delete(w);
	int rc = 0;
	FILE *f = fopen(tmp.buf, "w");
	if (!f || fputs(s, f) < 0 || fputc('\n', f) < 0)
		rc = ftk_error_set(err, FTK_EIO, p.buf, 0, NULL, "cannot write: %s", strerror(errno));
	if (f && fclose(f) != 0 && rc == 0)
		rc = ftk_error_set(err, FTK_EIO, p.buf, 0, NULL, "cannot write: %s", strerror(errno));
	if (rc == 0 && rename(tmp.buf, p.buf) != 0)
		rc = ftk_error_set(err, FTK_EIO, p.buf, 0, NULL, "cannot write: %s", strerror(errno));
	if (rc < 0)
		unlink(tmp.buf);
	cJSON_free(s);
	strbuf_release(&p);
	strbuf_release(&tmp);
	return rc;
}
