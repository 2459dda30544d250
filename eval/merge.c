/*
 * merge.c: one run directory from the shards of a sharded eval (run.h).
 *
 * An eval split over the tasks of a cluster job (`ftk eval run --shard I/N`
 * in each task) leaves N run directories, each with the results of a
 * contiguous block of the suite's cases, compacted in suite order.  The
 * whole run is therefore the shards' results concatenated in shard order;
 * the summary is computed from them exactly as a single run computes its
 * own (summary_write), and run.json is a shard's without its "shard"
 * member, which run.c writes last.  So the merged directory is byte for byte
 * what one run over the same answers writes, and `ftk eval compare`,
 * `ftk-review` and `ftk-report` cannot tell the difference.
 *
 * Everything is checked before anything is written: the shards must come
 * from one run configuration (run.json equal but for "shard" and the
 * suite's path), cover 0..N-1 once each, and each must have finished (its
 * summary.json exists and it holds a result, good or error, for each of its
 * cases x samples).  A merge never writes into a directory that holds a run.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "eval/run_int.h"
#include "lib/json.h"
#include "lib/stream.h"

struct shard {
	const char *dir;
	cJSON *run;		/* run.json */
	long index, of, first_case, cases, samples;
	cJSON *results;
};

static int read_json_file(const char *dir, const char *name, cJSON **out, struct ftk_error *err)
{
	struct strbuf p = STRBUF_INIT, data = STRBUF_INIT;
	strbuf_addf(&p, "%s/%s", dir, name);
	int rc = 0;
	*out = NULL;
	if (strbuf_read_file(&data, p.buf) < 0)
		rc = ftk_error_set(err, FTK_EDATA, p.buf, 0, NULL, "cannot read: %s", strerror(errno));
	else if (!(*out = cJSON_ParseWithLength(data.buf, data.len)) || !cJSON_IsObject(*out))
		rc = ftk_error_set(err, FTK_EDATA, p.buf, 0, NULL, "not a JSON object");
	if (rc < 0) {
		cJSON_Delete(*out);
		*out = NULL;
	}
	strbuf_release(&p);
	strbuf_release(&data);
	return rc;
}

static long member_long(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsNumber(v) ? (long)v->valuedouble : -1;
}

/* run.json as the whole run writes it: without "shard". */
static cJSON *whole_run_json(const cJSON *run)
{
	cJSON *w = cJSON_Duplicate(run, 1);
	cJSON_DeleteItemFromObjectCaseSensitive(w, "shard");
	return w;
}

static int load_shard(struct shard *s, struct ftk_error *err)
{
	int rc = read_json_file(s->dir, "run.json", &s->run, err);
	if (rc < 0)
		return rc;
	const cJSON *sh = cJSON_GetObjectItemCaseSensitive(s->run, "shard");
	if (!cJSON_IsObject(sh))
		return ftk_error_set(err, FTK_EDATA, s->dir, 0, "run.json",
				     "not a shard of an eval (run without --shard)");
	s->index = member_long(sh, "index");
	s->of = member_long(sh, "of");
	s->first_case = member_long(sh, "first_case");
	s->cases = member_long(sh, "cases");
	s->samples = member_long(s->run, "samples");
	if (s->index < 0 || s->of < 1 || s->index >= s->of || s->first_case < 0 || s->cases < 0 ||
	    s->samples < 1)
		return ftk_error_set(err, FTK_EDATA, s->dir, 0, "run.json: shard",
				     "index, of, first_case or cases missing or out of range");
	struct strbuf p = STRBUF_INIT;
	strbuf_addf(&p, "%s/summary.json", s->dir);
	int finished = access(p.buf, F_OK) == 0;
	strbuf_release(&p);
	if (!finished)
		return ftk_error_set(err, FTK_EDATA, s->dir, 0, NULL,
				     "shard %ld of %ld did not finish (no summary.json): run it again to resume it",
				     s->index, s->of);
	long bad = 0;
	rc = ftk_eval_results_load(s->dir, &s->results, &bad, err);
	if (rc < 0)
		return rc;
	long n = cJSON_GetArraySize(s->results);
	if (bad || n != s->cases * s->samples)
		return ftk_error_set(err, FTK_EDATA, s->dir, 0, "results.jsonl",
				     "%ld results (%ld unreadable lines) for %ld cases x %ld samples: the shard did not finish",
				     n, bad, s->cases, s->samples);
	return 0;
}

/* 0 when a and b are shards of one run; else the error names the field. */
static int same_run(const struct shard *a, const struct shard *b, struct ftk_error *err)
{
	if (a->of != b->of)
		return ftk_error_set(err, FTK_EDATA, b->dir, 0, "run.json: shard.of",
				     "a shard of %ld, but '%s' is a shard of %ld", b->of, a->dir, a->of);
	for (const cJSON *m = a->run->child; m; m = m->next) {
		if (!strcmp(m->string, "shard") || !strcmp(m->string, "suite_path"))
			continue;
		const cJSON *o = cJSON_GetObjectItemCaseSensitive(b->run, m->string);
		if (!o || !cJSON_Compare(m, o, 1))
			return ftk_error_set(err, FTK_EDATA, b->dir, 0, "run.json",
					     "'%s' differs from '%s': shards of another run", m->string, a->dir);
	}
	for (const cJSON *m = b->run->child; m; m = m->next)
		if (!cJSON_GetObjectItemCaseSensitive(a->run, m->string))
			return ftk_error_set(err, FTK_EDATA, b->dir, 0, "run.json",
					     "'%s' differs from '%s': shards of another run", m->string, a->dir);
	return 0;
}

static int write_text(const char *dir, const char *name, const char *text, struct ftk_error *err)
{
	struct strbuf p = STRBUF_INIT;
	strbuf_addf(&p, "%s/%s", dir, name);
	struct ftk_writer *w;
	int rc = ftk_writer_open(&w, p.buf, 0, err);
	if (rc == 0) {
		rc = ftk_writer_line(w, text, strlen(text));
		if (rc == 0)
			rc = ftk_writer_close(w, err);
		else
			ftk_writer_abort(w);
	}
	strbuf_release(&p);
	return rc;
}

int ftk_eval_merge(const char *const *dirs, int n, const char *out_dir, long *n_results,
		   struct ftk_error *err)
{
	struct shard *sh = xcalloc((size_t)n + 1, sizeof(*sh));
	struct shard **by_index = NULL;
	struct ftk_writer *w = NULL;
	struct strbuf p = STRBUF_INIT;
	int rc = 0;
	*n_results = 0;
	if (n < 1) {
		rc = ftk_error_msg(err, FTK_EUSAGE, "no shard runs to merge");
		goto out;
	}
	for (int i = 0; i < n && rc == 0; i++) {
		sh[i].dir = dirs[i];
		rc = load_shard(&sh[i], err);
		if (rc == 0 && i > 0)
			rc = same_run(&sh[0], &sh[i], err);
	}
	if (rc < 0)
		goto out;
	long of = sh[0].of;
	by_index = xcalloc((size_t)of, sizeof(*by_index));
	for (int i = 0; i < n; i++) {
		struct shard *s = &sh[i];
		if (by_index[s->index]) {
			rc = ftk_error_set(err, FTK_EDATA, s->dir, 0, NULL, "shard %ld of %ld given twice (also '%s')",
					   s->index, of, by_index[s->index]->dir);
			goto out;
		}
		by_index[s->index] = s;
	}
	long next_case = 0;
	for (long i = 0; i < of; i++) {
		if (!by_index[i]) {
			rc = ftk_error_msg(err, FTK_EDATA, "shard %ld of %ld is missing", i, of);
			goto out;
		}
		if (by_index[i]->first_case != next_case) {	/* cannot happen unless edited */
			rc = ftk_error_set(err, FTK_EDATA, by_index[i]->dir, 0, "run.json: shard.first_case",
					   "%ld, but the shards before it end at case %ld",
					   by_index[i]->first_case, next_case);
			goto out;
		}
		next_case += by_index[i]->cases;
	}

	rc = eval_mkdir_p(out_dir, err);
	if (rc < 0)
		goto out;
	static const char *const mine[] = { "run.json", "results.jsonl", "summary.json" };
	for (size_t i = 0; i < sizeof(mine) / sizeof(mine[0]); i++) {
		strbuf_reset(&p);
		strbuf_addf(&p, "%s/%s", out_dir, mine[i]);
		if (access(p.buf, F_OK) == 0) {
			rc = ftk_error_set(err, FTK_EDATA, out_dir, 0, NULL,
					   "already holds a run (%s): merge into a new directory", mine[i]);
			goto out;
		}
	}

	/* results: shard after shard, each already in suite order */
	strbuf_reset(&p);
	strbuf_addf(&p, "%s/results.jsonl", out_dir);
	rc = ftk_writer_open(&w, p.buf, 0, err);
	if (rc < 0)
		goto out;
	for (long i = 0; rc == 0 && i < of; i++) {
		const cJSON *r;
		cJSON_ArrayForEach(r, by_index[i]->results)
		{
			char *s = cJSON_PrintUnformatted(r);
			rc = ftk_writer_line(w, s, strlen(s));
			cJSON_free(s);
			if (rc < 0)
				break;
			(*n_results)++;
		}
	}
	if (rc < 0) {
		ftk_writer_abort(w);
		rc = ftk_error_set(err, FTK_EIO, p.buf, 0, NULL, "cannot write: %s", strerror(errno));
		goto out;
	}
	rc = ftk_writer_close(w, err);
	if (rc < 0)
		goto out;

	/* run.json as run.c writes it (cJSON_Print and a newline), then the summary */
	cJSON *whole = whole_run_json(by_index[0]->run);
	char *text = cJSON_Print(whole);
	cJSON_Delete(whole);
	rc = write_text(out_dir, "run.json", text, err);
	cJSON_free(text);
	if (rc == 0)
		rc = summary_write(out_dir, err);
out:
	for (int i = 0; i < n; i++) {
		cJSON_Delete(sh[i].run);
		cJSON_Delete(sh[i].results);
	}
	free(sh);
	free(by_index);
	strbuf_release(&p);
	return rc;
}
