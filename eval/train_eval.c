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
#include <stdio.h>
#include <string.h>
#include "eval/run.h"
#include "eval/train_eval.h"
#include "lib/json.h"
#include "lib/ledger.h"

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
	if ((rc = eval_into(te, base_dir, NULL, &base, &base_secs, err)) < 0)
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
