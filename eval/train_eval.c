/*
 * train_eval.c: the eval that ftk-train --eval runs at each checkpoint
 * (see train_eval.h).
 *
 * Each evaluation is an ordinary eval run directory (results.jsonl,
 * summary.json, run.json), so `ftk-eval summary`, `compare`, `ftk-review`
 * and `ftk-report` work on it as on any other.  A run that is resumed finds
 * the base evaluation and the checkpoints already evaluated and does not
 * redo them (eval's own resume asks nothing twice).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <string.h>
#include "eval/run.h"
#include "eval/train_eval.h"
#include "lib/json.h"
#include "lib/ledger.h"
#include "lib/stream.h"

/* Run (or resume) one evaluation; *seconds is 0 when nothing was asked. */
static int eval_into(struct ftk_train_eval *te, const char *dir, const char *adapter,
		     cJSON **results, double *seconds, struct ftk_error *err)
{
	struct ftk_eval_run_opts o;
	struct ftk_eval_run_stats st;
	ftk_eval_run_opts_init(&o);
	o.suite_path = te->suite;
	o.run_dir = dir;
	o.backend = FTK_EVAL_LOCAL;
	o.model_dir = te->model_dir;
	o.adapter_dir = adapter;
	o.jobs = 1;
	o.limit = te->limit;
	o.no_cache = 1;
	memset(&st, 0, sizeof(st));
	int rc = ftk_eval_run(&o, &st, err);
	if (rc < 0)
		return rc;
	*seconds = st.asked > 0 ? st.seconds : 0;
	return ftk_eval_results_load(dir, results, NULL, err);
}

static void ledger_entry(struct ftk_train_eval *te, long step, double seconds)
{
	const char *path = ftk_ledger_path(te->ledger);
	if (!path)
		return;
	cJSON *e = ftk_ledger_entry_new(te->run_name, "eval", "compute");
	cJSON_AddStringToObject(e, "tool", "ftk-train --eval");
	cJSON_AddNumberToObject(e, "hours", seconds / 3600.0);
	cJSON_AddStringToObject(e, "device", "cpu");
	cJSON_AddNumberToObject(e, "step", (double)step);
	cJSON_AddStringToObject(e, "suite", te->suite);
	ftk_ledger_append_entry(path, e, NULL);	/* a lost cost line must not stop training */
	cJSON_Delete(e);
}

/*
 * The number a checkpoint is ranked by: the named metric's mean, else the
 * mean of the semantic metrics' means.  NaN when there is none.
 */
static double score_of(const cJSON *sum, const char *metric)
{
	const cJSON *ms = cJSON_GetObjectItemCaseSensitive(sum, "metrics");
	if (metric) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ms, metric), "mean");
		return cJSON_IsNumber(v) ? v->valuedouble : NAN;
	}
	double t = 0;
	int n = 0;
	const cJSON *m;
	cJSON_ArrayForEach(m, ms)
	{
		const char *k = ftk_json_get_str(m, "kind");
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, "mean");
		if (k && !strcmp(k, "semantic") && cJSON_IsNumber(v)) {
			t += v->valuedouble;
			n++;
		}
	}
	return n ? t / n : NAN;
}

/* Copy a checkpoint's adapter files into dir (created), each replaced atomically. */
static int copy_adapter(const char *from, const char *dir, struct ftk_error *err)
{
	static const char *const files[] = { "adapter_config.json", "adapter_model.safetensors" };
	if (mkdir(dir, 0777) < 0 && errno != EEXIST)
		return ftk_error_set(err, FTK_EIO, dir, 0, NULL, "cannot create: %s", strerror(errno));
	for (size_t i = 0; i < FTK_ARRAY_SIZE(files); i++) {
		char src[4400], dst[4400], tmp[4410];
		snprintf(src, sizeof(src), "%s/%s", from, files[i]);
		snprintf(dst, sizeof(dst), "%s/%s", dir, files[i]);
		snprintf(tmp, sizeof(tmp), "%s.tmp", dst);
		char *data;
		size_t len;
		int rc = ftk_read_all(src, &data, &len, err);
		if (rc < 0)
			return rc;
		FILE *f = fopen(tmp, "wb");
		int ok = f && fwrite(data, 1, len, f) == len;
		if (f && fclose(f) != 0)
			ok = 0;
		free(data);
		if (!ok || rename(tmp, dst) < 0) {
			unlink(tmp);
			return ftk_error_set(err, FTK_EIO, dst, 0, NULL, "cannot write: %s", strerror(errno));
		}
	}
	return 0;
}

void ftk_train_eval_release(struct ftk_train_eval *te)
{
	if (!te)
		return;
	cJSON_Delete(te->best_results);
	te->best_results = NULL;
}

int ftk_train_eval_checkpoint(void *ctx, long step, const char *adapter_dir, struct strbuf *line,
			      struct ftk_error *err)
{
	struct ftk_train_eval *te = ctx;
	char base_dir[4200], step_dir[4200];
	cJSON *base = NULL, *cur = NULL, *sum = NULL, *cmp = NULL;
	double secs = 0, base_secs = 0;
	int rc;

	snprintf(base_dir, sizeof(base_dir), "%s/evals/base", te->run_dir);
	snprintf(step_dir, sizeof(step_dir), "%s/evals/step-%ld", te->run_dir, step);
	if ((rc = eval_into(te, base_dir, te->base_adapter, &base, &base_secs, err)) < 0)
		goto out;
	if (base_secs > 0)
		ledger_entry(te, 0, base_secs);
	if ((rc = eval_into(te, step_dir, adapter_dir, &cur, &secs, err)) < 0)
		goto out;
	if (secs > 0)
		ledger_entry(te, step, secs);
	sum = ftk_eval_summarize(cur);
	cmp = ftk_eval_compare(base, cur, 0.05);

	cJSON *o = cJSON_CreateObject(), *ev = cJSON_AddObjectToObject(o, "eval");
	cJSON_AddNumberToObject(o, "step", (double)step);
	const char *sname = strrchr(te->suite, '/');
	cJSON_AddStringToObject(ev, "suite", sname ? sname + 1 : te->suite);
	char rel[64];
	snprintf(rel, sizeof(rel), "evals/step-%ld", step);
	cJSON_AddStringToObject(ev, "dir", rel);
	cJSON *ms = cJSON_AddObjectToObject(ev, "metrics");
	const cJSON *m;
	cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(sum, "metrics")) {
		cJSON *x = cJSON_AddObjectToObject(ms, m->string);
		static const char *const keep[] = { "kind", "mean", "lo", "hi", "n" };
		for (size_t i = 0; i < FTK_ARRAY_SIZE(keep); i++) {
			const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, keep[i]);
			if (v)
				cJSON_AddItemToObject(x, keep[i], cJSON_Duplicate(v, 1));
		}
		const cJSON *c = cJSON_GetObjectItemCaseSensitive(
			cJSON_GetObjectItemCaseSensitive(cmp, "metrics"), m->string);
		if (c) {
			static const char *const ck[][2] = { { "mean_a", "base" }, { "diff", "diff" },
							     { "p", "p" }, { "regressed", "regressed" } };
			for (size_t i = 0; i < FTK_ARRAY_SIZE(ck); i++) {
				const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, ck[i][0]);
				if (v)
					cJSON_AddItemToObject(x, ck[i][1], cJSON_Duplicate(v, 1));
			}
		}
	}
	const cJSON *reg = cJSON_GetObjectItemCaseSensitive(cmp, "regressed");
	cJSON_AddItemToObject(ev, "regressed", reg ? cJSON_Duplicate(reg, 1) : cJSON_CreateArray());
	if (cJSON_GetArraySize(reg) > 0)
		te->n_regressed++;
	/* against the best checkpoint so far */
	cJSON *vs_best = te->best_results ? ftk_eval_compare(te->best_results, cur, 0.05) : NULL;
	const cJSON *reg_best = cJSON_GetObjectItemCaseSensitive(vs_best, "regressed");
	int n_reg_best = cJSON_GetArraySize(reg_best);	/* vs_best is freed before the report */
	if (vs_best) {
		cJSON *b = cJSON_AddObjectToObject(ev, "vs_best");
		cJSON_AddNumberToObject(b, "step", (double)te->best_step);
		cJSON_AddItemToObject(b, "regressed", cJSON_Duplicate(reg_best, 1));
	}
	double value = score_of(sum, te->keep_best);
	{
		cJSON *bs = ftk_eval_summarize(base);
		double bv = score_of(bs, te->keep_best);
		cJSON_Delete(bs);
		te->base_value_known = !isnan(bv);
		te->base_value = bv;
	}
	int better = !isnan(value) && (te->best_step == 0 || value > te->best_value);
	if (te->stop_on_regression && te->stop && !te->stopped_at &&
	    (cJSON_GetArraySize(reg) > 0 || cJSON_GetArraySize(reg_best) > 0)) {
		int vb = cJSON_GetArraySize(reg) == 0;
		const cJSON *which = cJSON_GetArrayItem(vb ? reg_best : reg, 0);
		const cJSON *cm = cJSON_GetObjectItemCaseSensitive(
			cJSON_GetObjectItemCaseSensitive(vb ? vs_best : cmp, "metrics"), which->valuestring);
		snprintf(te->stop_reason, sizeof(te->stop_reason),
			 "%s fell from %.3f (%s) to %.3f, p = %.3g", which->valuestring,
			 cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(cm, "mean_a")),
			 vb ? "the best checkpoint" : "the base",
			 cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(cm, "mean_b")),
			 cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(cm, "p")));
		if (vb) {
			char tail[64];
			snprintf(tail, sizeof(tail), " (step %ld)", te->best_step);
			strncat(te->stop_reason, tail, sizeof(te->stop_reason) - strlen(te->stop_reason) - 1);
		}
		te->stopped_at = step;
		*te->stop = 1;
		cJSON_AddStringToObject(ev, "stopped", te->stop_reason);
	}
	if (better) {
		/* checkpoints are pruned as the run goes: keep the best adapter apart */
		snprintf(te->best_dir, sizeof(te->best_dir), "%s/evals/best", te->run_dir);
		if (te->keep_best && (rc = copy_adapter(adapter_dir, te->best_dir, err)) < 0) {
			cJSON_Delete(vs_best);
			cJSON_Delete(o);
			goto out;
		}
		te->best_step = step;
		te->best_value = value;
		cJSON_Delete(te->best_results);
		te->best_results = cur;
		cur = NULL;
	}
	cJSON_AddNumberToObject(ev, "best_step", (double)te->best_step);
	cJSON_Delete(vs_best);
	ftk_json_print(line, o);

	if (te->report) {
		struct strbuf say = STRBUF_INIT;
		strbuf_addf(&say, "step %ld eval (%s):", step, rel);
		cJSON_ArrayForEach(m, ms) {
			const cJSON *k = cJSON_GetObjectItemCaseSensitive(m, "kind");
			const cJSON *mean = cJSON_GetObjectItemCaseSensitive(m, "mean");
			const cJSON *d = cJSON_GetObjectItemCaseSensitive(m, "diff");
			if (!cJSON_IsString(k) || strcmp(k->valuestring, "semantic") || !cJSON_IsNumber(mean))
				continue;
			strbuf_addf(&say, " %s %.3f", m->string, mean->valuedouble);
			if (cJSON_IsNumber(d))
				strbuf_addf(&say, " (%+.3f vs base)", d->valuedouble);
		}
		if (cJSON_GetArraySize(reg) > 0)
			strbuf_addstr(&say, "; REGRESSED against the base");
		if (n_reg_best > 0)
			strbuf_addf(&say, "; REGRESSED against step %ld", te->best_step);
		te->report(te->report_ctx, say.buf);
		strbuf_release(&say);
	}
	cJSON_Delete(o);
	rc = 0;
out:
	cJSON_Delete(base);
	cJSON_Delete(cur);
	cJSON_Delete(sum);
	cJSON_Delete(cmp);
	return rc;
}
