/*
 * ledger_report.c: `ftk-ledger report`, the ledger totalled by run, stage
 * and kind and, given eval summaries, what each run paid per quality point
 * it gained over a baseline, with the gain's 95% interval.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ledger/ledger_cmds.h"
#include "lib/json.h"
#include "lib/stream.h"

struct quality_opts {
	const struct ftk_strlist *evals;	/* RUN=FILE */
	const char *baseline, *metric;
};

static void agg_row(const char *name, const struct ftk_cost_agg *a)
{
	printf("  %-20s %7ld %9.2f %10.2f %12.0f %12.2f%s\n", name, a->n, a->human_h, a->device_h,
	       a->api_tok, a->usd, a->unpriced ? " *" : "");
}

static void agg_header(const char *what)
{
	printf("  %-20s %7s %9s %10s %12s %12s\n", what, "entries", "people h", "device h",
	       "api tokens", "usd");
}

/* An eval summary: metric name -> mean, se, n. */
struct metric {
	char *name;
	double mean, se, n;
	char kind[16];		/* ftk-eval's "semantic" or "surface", "" when not given */
};

struct summary {
	char *run;
	const char *path;
	struct metric *m;
	size_t n;
};

static const cJSON *metric_obj_ok(const cJSON *v)
{
	return cJSON_IsObject(v) && cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(v, "mean")) ? v : NULL;
}

/*
 * Read an eval summary.  Accepted: ftk-eval's summary.json, {"metrics": {NAME:
 * {"mean", "se", "n", "lo", "hi", ...}}}, or the simple form {NAME: {"mean",
 * "se", "n"}}.  A metric whose "se" is missing or null gets one from its 95%
 * interval ("lo" and "hi", or "ci95": [lo, hi]) as (hi - lo) / 3.92, which is
 * exact for a normal interval and close for a Wilson one.
 */
static int load_summary(const char *run, const char *path, struct summary *s)
{
	char *data;
	size_t len;
	struct ftk_error err;
	cJSON *o;
	memset(s, 0, sizeof(*s));
	s->run = xstrdup(run);
	s->path = path;
	if (ftk_read_all(path, &data, &len, &err) < 0)
		return error_at(&err);
	int rc = ftk_json_parse_object(data, len, &o, &err);
	free(data);
	if (rc < 0) {
		ftk_error_place(&err, path, 0);
		return error_at(&err);
	}
	const cJSON *map = cJSON_GetObjectItemCaseSensitive(o, "metrics");
	if (!cJSON_IsObject(map))
		map = o;
	for (const cJSON *v = map->child; v; v = v->next) {
		if (!metric_obj_ok(v))
			continue;
		const cJSON *se = cJSON_GetObjectItemCaseSensitive(v, "se");
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(v, "n");
		const cJSON *ci = cJSON_GetObjectItemCaseSensitive(v, "ci95");
		const cJSON *lo = cJSON_GetObjectItemCaseSensitive(v, "lo");
		const cJSON *hi = cJSON_GetObjectItemCaseSensitive(v, "hi");
		struct metric x = { xstrdup(v->string),
				    cJSON_GetObjectItemCaseSensitive(v, "mean")->valuedouble, NAN,
				    cJSON_IsNumber(n) ? n->valuedouble : NAN, "" };
		if (cJSON_IsNumber(se))
			x.se = se->valuedouble;
		else if (cJSON_GetArraySize(ci) == 2 && cJSON_IsNumber(cJSON_GetArrayItem(ci, 0)) &&
			 cJSON_IsNumber(cJSON_GetArrayItem(ci, 1)))
			x.se = (cJSON_GetArrayItem(ci, 1)->valuedouble -
				cJSON_GetArrayItem(ci, 0)->valuedouble) / (2 * 1.959964);
		else if (cJSON_IsNumber(lo) && cJSON_IsNumber(hi))
			x.se = (hi->valuedouble - lo->valuedouble) / (2 * 1.959964);
		const char *kind = ftk_json_get_str(v, "kind");
		snprintf(x.kind, sizeof(x.kind), "%s", kind ? kind : "");
		s->m = xrealloc(s->m, (s->n + 1) * sizeof(*s->m));
		s->m[s->n++] = x;
	}
	cJSON_Delete(o);
	if (!s->n)
		return error("%s: no metric with a numeric \"mean\" (expected {\"metrics\": {NAME: "
			     "{\"mean\", \"se\", \"n\"}}})", path);
	return 0;
}

static void summary_release(struct summary *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->m[i].name);
	free(s->m);
	free(s->run);
}

static const struct metric *summary_metric(const struct summary *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->m[i].name, name))
			return &s->m[i];
	return NULL;
}

/*
 * Cost per quality point: for each metric, each run's gain over the baseline
 * in points (a point is 0.01 for a metric that lies in [0, 1], else one unit),
 * its 95% interval from the two standard errors, and the run's ledger cost
 * divided by the gain.
 */
static int quality_section(const struct quality_opts *o, struct ftk_cost_totals *T, cJSON *json)
{
	struct summary *S = xcalloc(o->evals->n, sizeof(*S));
	int rc = 0;
	size_t base = 0;
	for (size_t i = 0; i < o->evals->n && rc == 0; i++) {
		char *eq = strchr(o->evals->v[i], '=');
		char *run = xstrndup(o->evals->v[i], (size_t)(eq - o->evals->v[i]));
		rc = load_summary(run, eq + 1, &S[i]);
		free(run);
		if (o->baseline && !strcmp(S[i].run, o->baseline))
			base = i;
	}
	if (rc == 0 && o->baseline && strcmp(S[base].run, o->baseline)) {
		rc = error("--baseline: no --eval given for run '%s'", o->baseline);
	}
	cJSON *q = json ? cJSON_AddArrayToObject(json, "quality") : NULL;
	size_t n_metrics = 0;
	for (size_t k = 0; rc == 0 && k < S[base].n; k++) {
		const char *name = S[base].m[k].name;
		if (o->metric && strcmp(o->metric, name))
			continue;
		int shared = 1;
		for (size_t i = 0; i < o->evals->n; i++)
			shared &= summary_metric(&S[i], name) != NULL;
		if (!shared) {
			if (o->metric)
				rc = error("--metric: '%s' is not in every summary", name);
			continue;
		}
		n_metrics++;
		const struct metric *b = &S[base].m[k];
		int unit = 1;
		for (size_t i = 0; i < o->evals->n; i++) {
			double v = summary_metric(&S[i], name)->mean;
			unit &= v >= 0 && v <= 1;
		}
		double point = unit ? 0.01 : 1;
		if (!json) {
			printf("\ncost per quality point: %s%s%s%s (a point is %s; baseline '%s')\n", name,
			       b->kind[0] ? " (" : "", b->kind, b->kind[0] ? ")" : "",
			       unit ? "0.01, one percentage point" : "1 unit of the metric", S[base].run);
			printf("  %-20s %9s %8s %6s %24s %12s %12s\n", "run", "mean", "se", "n",
			       "gain [95% CI] points", "usd", "usd/point");
		}
		for (size_t i = 0; i < o->evals->n; i++) {
			const struct metric *x = summary_metric(&S[i], name);
			const struct ftk_cost_run_totals *r = ftk_cost_totals_run(T, S[i].run);
			double usd = r ? r->a.usd : 0;
			double gain = (x->mean - b->mean) / point;
			double half = 1.959964 * sqrt((isnan(x->se) ? 0 : x->se * x->se) +
						      (isnan(b->se) ? 0 : b->se * b->se)) / point;
			int have_se = !isnan(x->se) && !isnan(b->se);
			double per = gain > 0 ? usd / gain : NAN;
			if (json) {
				cJSON *e = cJSON_CreateObject();
				cJSON_AddStringToObject(e, "metric", name);
				cJSON_AddStringToObject(e, "run", S[i].run);
				cJSON_AddStringToObject(e, "baseline", S[base].run);
				if (b->kind[0])
					cJSON_AddStringToObject(e, "kind", b->kind);
				cJSON_AddNumberToObject(e, "mean", x->mean);
				if (!isnan(x->se))
					cJSON_AddNumberToObject(e, "se", x->se);
				if (!isnan(x->n))
					cJSON_AddNumberToObject(e, "n", x->n);
				cJSON_AddNumberToObject(e, "point", point);
				cJSON_AddNumberToObject(e, "usd", usd);
				if (i != base) {
					cJSON_AddNumberToObject(e, "gain_points", gain);
					if (have_se) {
						cJSON_AddNumberToObject(e, "gain_ci95_low", gain - half);
						cJSON_AddNumberToObject(e, "gain_ci95_high", gain + half);
						cJSON_AddBoolToObject(e, "significant", gain - half > 0 || gain + half < 0);
					}
					if (!isnan(per))
						cJSON_AddNumberToObject(e, "usd_per_point", per);
					else
						cJSON_AddNullToObject(e, "usd_per_point");
				}
				if (!r)
					cJSON_AddBoolToObject(e, "in_ledger", 0);
				cJSON_AddItemToArray(q, e);
				continue;
			}
			char g[64], se[16] = "-", n[16] = "-", pp[32];
			if (!isnan(x->se))
				snprintf(se, sizeof(se), "%.4f", x->se);
			if (!isnan(x->n))
				snprintf(n, sizeof(n), "%.0f", x->n);
			if (i == base)
				snprintf(g, sizeof(g), "(baseline)");
			else if (have_se)
				snprintf(g, sizeof(g), "%+.2f [%+.2f, %+.2f]", gain, gain - half, gain + half);
			else
				snprintf(g, sizeof(g), "%+.2f [no se]", gain);
			if (i == base)
				snprintf(pp, sizeof(pp), "-");
			else if (isnan(per))
				snprintf(pp, sizeof(pp), "no gain");
			else
				snprintf(pp, sizeof(pp), "%.2f%s", per,
					 have_se && gain - half <= 0 ? " (ns)" : "");
			printf("  %-20s %9.4f %8s %6s %24s %12.2f %12s%s\n", S[i].run, x->mean, se, n, g,
			       usd, pp, r ? "" : "  (not in the ledger)");
		}
	}
	if (rc == 0 && !n_metrics)
		rc = error(o->metric ? "--metric: no metric '%s' in the baseline summary"
				     : "the eval summaries share no metric%s", o->metric ? o->metric : "");
	if (rc == 0 && !json)
		printf("  usd is each run's whole ledger total; (ns): the 95%% interval of the gain "
		       "includes 0\n");
	for (size_t i = 0; i < o->evals->n; i++)
		summary_release(&S[i]);
	free(S);
	return rc;
}

static const char *run_label(const char *run)
{
	return *run ? run : "(no run)";
}

int ftk_ledger_report(int argc, char **argv)
{
	struct ledger_common c = { 0 };
	int json = 0;
	struct ledger_time since = { 0 }, until = { 0 };
	struct ftk_strlist runs = { 0 }, evals = { 0 };
	struct quality_opts q = { &evals, NULL, NULL };
	struct ftk_rates R;
	struct ftk_cost_ledger L = { 0 };
	struct ftk_cost_totals T;
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Options"),
		LEDGER_OPT_TIME("since", &since, "entries at or after TIME only"),
		LEDGER_OPT_TIME("until", &until, "entries before TIME only"),
		FTK_OPT_STRING_LIST(0, "run", &runs, "NAME", "these runs only (repeatable)"),
		FTK_OPT_FLAG(0, "json", &json, "the totals as JSON"),
		FTK_OPT_CALLBACK(0, "eval", &evals, "RUN=FILE", ledger_eval_cb,
				 "an ftk-eval summary.json for RUN (repeatable): adds cost\n"
				 "per quality point"),
		FTK_OPT_STRING(0, "baseline", &q.baseline, "RUN",
			       "the run gains are measured against (default the first --eval)"),
		FTK_OPT_STRING(0, "metric", &q.metric, "NAME",
			       "the quality metric (default every metric all summaries share)"),
		LEDGER_OPTS_COMMON(&c),
		FTK_OPT_END(),
	};
	static const char *const usage[] = {
		"ftk-ledger report [options]", "",
		"Totals of the ledger by run, stage and kind; with --eval, cost per quality point.", NULL,
	};
	argc = ftk_parse_options(argc, argv, "ftk-ledger report", opts, usage);
	ledger_no_args("report", argc, argv);
	if ((q.baseline || q.metric) && !evals.n)
		ftk_usage_error("report: --baseline and --metric need --eval RUN=FILE");
	struct ftk_cost_filter f = { since.set ? since.t : -INFINITY, until.set ? until.t : INFINITY,
				     runs.v, runs.n };
	ledger_load_rates(&c, &R);
	int bad = ledger_load_totals(&c, &R, &L, &T, &f);
	int rc = 0;
	if (json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "ledger", ledger_need(&c));
		if (R.path)
			cJSON_AddStringToObject(j, "rates", R.path);
		else
			cJSON_AddStringToObject(j, "rates", "built-in examples");
		cJSON_AddNumberToObject(j, "entries", (double)T.total.n);
		cJSON *sk = cJSON_AddArrayToObject(j, "skipped");
		for (size_t i = 0; i < L.n_bad; i++) {
			cJSON *b = cJSON_CreateObject();
			cJSON_AddNumberToObject(b, "line", (double)L.bad[i].line);
			cJSON_AddStringToObject(b, "error", L.bad[i].msg);
			cJSON_AddItemToArray(sk, b);
		}
		cJSON_AddItemToObject(j, "total", ledger_agg_json(&T.total));
		cJSON *br = cJSON_AddObjectToObject(j, "by_run");
		for (size_t i = 0; i < T.n_runs; i++) {
			cJSON *a = ledger_agg_json(&T.runs[i].a);
			cJSON *bs = cJSON_AddObjectToObject(a, "by_stage_kind");
			for (int s = 0; s < FTK_COST_N_STAGES; s++)
				for (int k = 0; k < FTK_COST_N_KINDS; k++) {
					char key[32];
					if (!T.runs[i].by[s][k].n)
						continue;
					snprintf(key, sizeof(key), "%s/%s", ftk_cost_stages[s],
						 ftk_cost_kinds[k]);
					cJSON_AddItemToObject(bs, key, ledger_agg_json(&T.runs[i].by[s][k]));
				}
			cJSON_AddItemToObject(br, T.runs[i].name, a);
		}
		cJSON *bst = cJSON_AddObjectToObject(j, "by_stage");
		for (int s = 0; s < FTK_COST_N_STAGES; s++)
			cJSON_AddItemToObject(bst, ftk_cost_stages[s], ledger_agg_json(&T.stage[s]));
		cJSON *bk = cJSON_AddObjectToObject(j, "by_kind");
		for (int k = 0; k < FTK_COST_N_KINDS; k++)
			cJSON_AddItemToObject(bk, ftk_cost_kinds[k], ledger_agg_json(&T.kind[k]));
		if (evals.n)
			rc = quality_section(&q, &T, j);
		char *s = cJSON_Print(j);
		puts(s);
		cJSON_free(s);
		cJSON_Delete(j);
	} else {
		printf("ledger: %s: %ld entries", ledger_need(&c), T.total.n);
		if (L.n_bad)
			printf(", %zu damaged lines skipped", L.n_bad);
		printf("\nrates: %s\n\n", ledger_rates_label(&R));
		agg_header("by run");
		for (size_t i = 0; i < T.n_runs; i++)
			agg_row(run_label(T.runs[i].name), &T.runs[i].a);
		printf("\n");
		agg_header("by stage");
		for (int s = 0; s < FTK_COST_N_STAGES; s++)
			agg_row(ftk_cost_stages[s], &T.stage[s]);
		printf("\n");
		agg_header("by kind");
		for (int k = 0; k < FTK_COST_N_KINDS; k++)
			agg_row(ftk_cost_kinds[k], &T.kind[k]);
		printf("\n");
		agg_row("total", &T.total);
		if (T.total.unpriced)
			printf("  * %ld entries have no price (no usd and no matching rates row): "
			       "counted as 0\n", T.total.unpriced);
		if (evals.n)
			rc = quality_section(&q, &T, NULL);
	}
	ftk_cost_totals_release(&T);
	ftk_cost_ledger_release(&L);
	ftk_rates_release(&R);
	ftk_strlist_release(&evals);
	ftk_strlist_release(&runs);
	return rc < 0 || bad ? FTK_EXIT_DATA : 0;
}

