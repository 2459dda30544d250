/*
 * summary.c: the summary of a run's results, and the paired comparison of
 * two runs (run.h: ftk_eval_summarize, ftk_eval_compare).
 *
 * Errored results are counted apart and never enter a metric.  Samples of a
 * case (and cases of one "cluster") are clustered for the standard error.
 * A comparison pairs cases by id, averaging each case's samples first.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lib/json.h"
#include "lib/strbuf.h"
#include "run_int.h"
#include "stats.h"

struct metric_acc {
	char *name;
	const char *kind;	/* "semantic" / "surface" */
	char *twin;
	char *group;		/* "compare_as": its method group, or NULL */
	double *x;
	long *cl;
	size_t n, alloc;
};

struct metric_set {
	struct metric_acc *m;
	size_t n, alloc;
	struct smap idx;
};

static struct metric_acc *metric_get(struct metric_set *ms, const char *name)
{
	long i = smap_get(&ms->idx, name, -1);
	if (i >= 0)
		return &ms->m[i];
	FTK_ALLOC_GROW(ms->m, ms->n + 1, ms->alloc);
	struct metric_acc *a = &ms->m[ms->n];
	memset(a, 0, sizeof(*a));
	a->name = xstrdup(name);
	a->kind = "semantic";
	smap_put(&ms->idx, name, (long)ms->n);
	ms->n++;
	return a;
}

static void metric_set_free(struct metric_set *ms)
{
	for (size_t i = 0; i < ms->n; i++) {
		free(ms->m[i].name);
		free(ms->m[i].twin);
		free(ms->m[i].group);
		free(ms->m[i].x);
		free(ms->m[i].cl);
	}
	free(ms->m);
	smap_free(&ms->idx);
}

/* Record kind and twin of every metric a result line's judges describe. */
static void note_kinds(struct metric_set *ms, const cJSON *line)
{
	const cJSON *j;
	cJSON_ArrayForEach(j, cJSON_GetObjectItemCaseSensitive(line, "judges"))
	{
		const cJSON *m;
		cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(j, "metrics"))
		{
			struct metric_acc *a = metric_get(ms, m->string);
			const char *kind = ftk_json_get_str(m, "kind");
			if (kind && !strcmp(kind, "surface"))
				a->kind = "surface";
			const char *grp = ftk_json_get_str(m, "compare_as");
			if (grp && !a->group)
				a->group = xstrdup(grp);
			const char *twin = ftk_json_get_str(m, "twin");
			if (twin && !a->twin)
				a->twin = xstrdup(twin);
		}
	}
}

static void add_num(cJSON *o, const char *k, double v)
{
	if (isnan(v) || isinf(v))
		cJSON_AddNullToObject(o, k);
	else
		cJSON_AddNumberToObject(o, k, v);
}

static cJSON *methods(const cJSON *results, double alpha, int *sensitive);
/* counts[kind] += 1, counts keeping first-seen order (idx maps kind to position). */
static void count_kind(struct smap *idx, cJSON *counts, const char *kind)
{
	if (!kind)
		return;
	long at = smap_get(idx, kind, -1);
	if (at < 0) {
		smap_put(idx, kind, cJSON_GetArraySize(counts));
		cJSON_AddNumberToObject(counts, kind, 1);
	} else {
		cJSON *cnt = cJSON_GetArrayItem(counts, (int)at);
		cJSON_SetNumberValue(cnt, cnt->valuedouble + 1);
	}
}

static void metric_push(struct metric_acc *a, double x, long cl)
{
	if (a->n + 1 > a->alloc) {
		a->alloc = a->alloc ? a->alloc * 2 : 64;
		a->x = xrealloc(a->x, a->alloc * sizeof(*a->x));
		a->cl = xrealloc(a->cl, a->alloc * sizeof(*a->cl));
	}
	a->x[a->n] = x;
	a->cl[a->n] = cl;
	a->n++;
}

/* A result that was scored: neither without an answer nor of a broken case. */
static int is_scored(const cJSON *r)
{
	return !cJSON_GetObjectItemCaseSensitive(r, "error") &&
	       !cJSON_GetObjectItemCaseSensitive(r, "bad_case");
}

cJSON *ftk_eval_summarize(const cJSON *results)
{
	struct metric_set ms = { 0 };
	struct smap ids = { 0 }, clusters = { 0 }, flags = { 0 }, dkinds = { 0 }, badids = { 0 };
	struct smap causes = { 0 };
	long transient = 0;
	long n = 0, errors = 0, judge_errors = 0, flagged = 0, max_sample = 0, ptok = 0, ctok = 0;
	long defective = 0, bad = 0;
	int any_cluster = 0;
	const cJSON *r;
	cJSON_ArrayForEach(r, results)
	{
		if (cJSON_GetObjectItemCaseSensitive(r, "cluster"))
			any_cluster = 1;
		if (json_long(r, "sample", 0) > max_sample)
			max_sample = json_long(r, "sample", 0);
		/* every metric of the run, in first-seen order, so that a defective
		   answer counts 0 even in a metric its judges did not report */
		if (!is_scored(r))
			continue;
		note_kinds(&ms, r);
		const cJSON *s;
		cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(r, "scores"))
			if (cJSON_IsNumber(s))
				metric_get(&ms, s->string);
	}
	int use_clusters = any_cluster || max_sample > 0;
	cJSON *flag_counts = cJSON_CreateObject();
	cJSON *defect_counts = cJSON_CreateObject();
	cJSON *bad_list = cJSON_CreateArray();
	cJSON *cause_counts = cJSON_CreateObject();
	cJSON_ArrayForEach(r, results)
	{
		n++;
		const char *id = ftk_json_get_str(r, "id");
		smap_intern(&ids, id ? id : "");
		if (cJSON_GetObjectItemCaseSensitive(r, "error")) {
			errors++;
			const char *cause = ftk_json_get_str(r, "error_kind");
			count_kind(&causes, cause_counts, cause ? cause : "other");
			transient += cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "transient"));
			continue;
		}
		const cJSON *u = cJSON_GetObjectItemCaseSensitive(r, "usage");
		ptok += json_long(u, "prompt_tokens", 0);
		ctok += json_long(u, "completion_tokens", 0);
		const cJSON *bc = cJSON_GetObjectItemCaseSensitive(r, "bad_case");
		if (bc) {
			/* the suite is broken here: excluded from every metric, loudly */
			bad++;
			const cJSON *b;
			cJSON_ArrayForEach(b, bc)
			{
				char key[1200];
				snprintf(key, sizeof(key), "%s\x1f%s", id ? id : "",
					 ftk_json_get_str(b, "judge") ? ftk_json_get_str(b, "judge") : "");
				if (smap_get(&badids, key, -1) >= 0 || cJSON_GetArraySize(bad_list) >= 50)
					continue;
				smap_put(&badids, key, 1);
				cJSON *e = cJSON_Duplicate(b, 1);
				cJSON_AddStringToObject(e, "id", id ? id : "");
				cJSON_AddItemToArray(bad_list, e);
			}
			continue;
		}
		judge_errors += cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r, "judge_errors"));
		const cJSON *fl = cJSON_GetObjectItemCaseSensitive(r, "flags");
		if (cJSON_GetArraySize(fl) > 0)
			flagged++;
		const cJSON *f;
		cJSON_ArrayForEach(f, fl)
			count_kind(&flags, flag_counts, ftk_json_get_str(f, "kind"));
		const cJSON *defects = cJSON_GetObjectItemCaseSensitive(r, "defects");
		if (cJSON_GetArraySize(defects) > 0)
			defective++;
		cJSON_ArrayForEach(f, defects)
			count_kind(&dkinds, defect_counts, ftk_json_get_str(f, "kind"));
		const char *cname = ftk_json_get_str(r, "cluster");
		long cl = use_clusters ? smap_intern(&clusters, cname ? cname : (id ? id : "")) : 0;
		const cJSON *scores = cJSON_GetObjectItemCaseSensitive(r, "scores");
		const cJSON *s;
		cJSON_ArrayForEach(s, scores)
			if (cJSON_IsNumber(s))
				metric_push(metric_get(&ms, s->string), s->valuedouble, cl);
		if (cJSON_GetArraySize(defects) > 0)
			for (size_t i = 0; i < ms.n; i++)
				if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(scores, ms.m[i].name)))
					metric_push(&ms.m[i], 0, cl);
	}
	cJSON *out = cJSON_CreateObject();
	cJSON_AddNumberToObject(out, "results", (double)n);
	cJSON_AddNumberToObject(out, "cases", (double)ids.n);
	cJSON_AddNumberToObject(out, "samples", (double)(max_sample + 1));
	cJSON_AddNumberToObject(out, "scored", (double)(n - errors - bad));
	cJSON_AddNumberToObject(out, "errors", (double)errors);
	cJSON_AddItemToObject(out, "errors_by_cause", cause_counts);
	cJSON_AddNumberToObject(out, "transient_errors", (double)transient);
	cJSON_AddNumberToObject(out, "defective", (double)defective);
	cJSON_AddItemToObject(out, "defects", defect_counts);
	cJSON_AddNumberToObject(out, "bad_cases", (double)bad);
	cJSON_AddItemToObject(out, "bad_case_list", bad_list);
	cJSON_AddNumberToObject(out, "judge_errors", (double)judge_errors);
	cJSON *metrics = cJSON_AddObjectToObject(out, "metrics");
	for (size_t i = 0; i < ms.n; i++) {
		struct metric_acc *a = &ms.m[i];
		struct ftk_stat_summary s;
		ftk_stats_summarize(a->x, use_clusters ? a->cl : NULL, a->n, &s);
		/* judges' metrics live in [0, 1]: a t interval is cut to it */
		int bounded = 1;
		for (size_t k = 0; k < a->n; k++)
			if (a->x[k] < 0 || a->x[k] > 1)
				bounded = 0;
		if (bounded && s.lo < 0)
			s.lo = 0;
		if (bounded && s.hi > 1)
			s.hi = 1;
		cJSON *m = cJSON_AddObjectToObject(metrics, a->name);
		cJSON_AddStringToObject(m, "kind", a->kind);
		if (a->twin)
			cJSON_AddStringToObject(m, "twin", a->twin);
		cJSON_AddBoolToObject(m, "binary", s.binary);
		cJSON_AddNumberToObject(m, "n", (double)s.n);
		if (use_clusters) {
			cJSON_AddNumberToObject(m, "n_clusters", (double)s.n_clusters);
			cJSON_AddBoolToObject(m, "clustered", s.clustered);
		}
		add_num(m, "mean", s.mean);
		add_num(m, "se", s.se);
		add_num(m, "lo", s.lo);
		add_num(m, "hi", s.hi);
		cJSON_AddStringToObject(m, "interval", s.interval);
	}
	int sensitive = 0;
	cJSON *meth = methods(results, 0.05, &sensitive);
	if (meth) {
		cJSON_AddItemToObject(out, "methods", meth);
		cJSON_AddBoolToObject(out, "method_sensitive", sensitive);
	}
	cJSON_AddItemToObject(out, "flags", flag_counts);
	cJSON_AddNumberToObject(out, "flagged", (double)flagged);
	cJSON *us = cJSON_AddObjectToObject(out, "usage");
	cJSON_AddNumberToObject(us, "prompt_tokens", (double)ptok);
	cJSON_AddNumberToObject(us, "completion_tokens", (double)ctok);
	metric_set_free(&ms);
	smap_free(&ids);
	smap_free(&clusters);
	smap_free(&flags);
	smap_free(&dkinds);
	smap_free(&badids);
	smap_free(&causes);
	return out;
}

/* ------------------------------------------------------------ comparison */

/* Per case: the metric's mean over samples, the sample count, the cluster. */
struct case_vals {
	struct smap ids;	/* id -> case index */
	char **cluster;		/* per case, borrowed from the results */
	size_t n_cases, alloc;
	struct metric_set ms;	/* x[case] sums, cl[case] counts (as long) */
};

static void case_vals_build(struct case_vals *cv, const cJSON *results)
{
	memset(cv, 0, sizeof(*cv));
	const cJSON *r;
	cJSON_ArrayForEach(r, results)
	{
		const char *id = ftk_json_get_str(r, "id");
		if (!id || !is_scored(r))
			continue;
		long ci = smap_get(&cv->ids, id, -1);
		if (ci < 0) {
			ci = (long)cv->n_cases;
			smap_put(&cv->ids, id, ci);
			FTK_ALLOC_GROW(cv->cluster, cv->n_cases + 1, cv->alloc);
			cv->cluster[ci] = (char *)ftk_json_get_str(r, "cluster");
			cv->n_cases++;
		}
		note_kinds(&cv->ms, r);
		const cJSON *s;
		cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(r, "scores"))
		{
			if (!cJSON_IsNumber(s))
				continue;
			struct metric_acc *a = metric_get(&cv->ms, s->string);
			if ((size_t)ci + 1 > a->alloc) {
				size_t na = ((size_t)ci + 1) * 2;
				a->x = xrealloc(a->x, na * sizeof(*a->x));
				a->cl = xrealloc(a->cl, na * sizeof(*a->cl));
				for (size_t z = a->alloc; z < na; z++) {
					a->x[z] = 0;
					a->cl[z] = 0;
				}
				a->alloc = na;
			}
			a->x[ci] += s->valuedouble;
			a->cl[ci]++;
		}
	}
}

static int case_val(const struct metric_acc *a, long ci, double *v, long *k)
{
	if (!a || ci < 0 || (size_t)ci >= a->alloc || a->cl[ci] == 0)
		return 0;
	*v = a->x[ci] / (double)a->cl[ci];
	*k = a->cl[ci];
	return 1;
}

static void case_vals_free(struct case_vals *cv)
{
	smap_free(&cv->ids);
	free(cv->cluster);
	metric_set_free(&cv->ms);
}

cJSON *ftk_eval_compare(const cJSON *ra, const cJSON *rb, double alpha)
{
	struct case_vals A, B;
	case_vals_build(&A, ra);
	case_vals_build(&B, rb);
	cJSON *out = cJSON_CreateObject();
	long only_a = 0, only_b = 0;
	for (size_t i = 0; i < A.ids.cap; i++)
		if (A.ids.keys[i] && smap_get(&B.ids, A.ids.keys[i], -1) < 0)
			only_a++;
	for (size_t i = 0; i < B.ids.cap; i++)
		if (B.ids.keys[i] && smap_get(&A.ids, B.ids.keys[i], -1) < 0)
			only_b++;
	cJSON_AddNumberToObject(out, "only_a", (double)only_a);
	cJSON_AddNumberToObject(out, "only_b", (double)only_b);
	cJSON *metrics = cJSON_AddObjectToObject(out, "metrics");
	cJSON *regressed = cJSON_CreateArray();
	int any_cluster = 0;
	for (size_t i = 0; i < A.n_cases; i++)
		if (A.cluster[i])
			any_cluster = 1;
	for (size_t mi = 0; mi < A.ms.n; mi++) {
		const struct metric_acc *ma = &A.ms.m[mi];
		long bi = smap_get(&B.ms.idx, ma->name, -1);
		if (bi < 0)
			continue;
		const struct metric_acc *mb = &B.ms.m[bi];
		double *xa = xmalloc((A.n_cases + 1) * sizeof(double));
		double *xb = xmalloc((A.n_cases + 1) * sizeof(double));
		long *cl = xmalloc((A.n_cases + 1) * sizeof(long));
		struct smap cmap = { 0 };
		size_t n = 0;
		int binary = 1;
		long to_fail = 0, to_pass = 0;
		for (size_t i = 0; i < A.ids.cap; i++) {
			if (!A.ids.keys[i])
				continue;
			long ca = A.ids.vals[i], cb = smap_get(&B.ids, A.ids.keys[i], -1);
			double va, vb;
			long ka, kb;
			if (cb < 0 || !case_val(ma, ca, &va, &ka) || !case_val(mb, cb, &vb, &kb))
				continue;
			if (ka != 1 || kb != 1 || (va != 0 && va != 1) || (vb != 0 && vb != 1))
				binary = 0;
			to_fail += va == 1 && vb == 0;
			to_pass += va == 0 && vb == 1;
			xa[n] = va;
			xb[n] = vb;
			const char *cname = A.cluster[ca] ? A.cluster[ca] : A.ids.keys[i];
			cl[n] = smap_intern(&cmap, cname);
			n++;
		}
		struct ftk_paired p;
		ftk_stats_paired(xa, xb, any_cluster ? cl : NULL, n, &p);
		cJSON *m = cJSON_AddObjectToObject(metrics, ma->name);
		cJSON_AddStringToObject(m, "kind", ma->kind);
		if (ma->twin)
			cJSON_AddStringToObject(m, "twin", ma->twin);
		cJSON_AddBoolToObject(m, "binary", binary && n > 0);
		cJSON_AddNumberToObject(m, "n", (double)n);
		add_num(m, "mean_a", p.mean_a);
		add_num(m, "mean_b", p.mean_b);
		add_num(m, "diff", p.diff);
		add_num(m, "se", p.se);
		add_num(m, "lo", p.lo);
		add_num(m, "hi", p.hi);
		double pv = p.p;
		if (binary && n > 0) {
			struct ftk_mcnemar mc;
			ftk_stats_mcnemar(to_fail, to_pass, &mc);
			pv = mc.p;
			cJSON_AddStringToObject(m, "test", mc.method[0] == 'e' ? "mcnemar-exact" : "mcnemar-chi2");
			cJSON_AddNumberToObject(m, "pass_to_fail", (double)to_fail);
			cJSON_AddNumberToObject(m, "fail_to_pass", (double)to_pass);
		} else {
			cJSON_AddStringToObject(m, "test", "paired-t");
		}
		add_num(m, "p", pv);
		int reg = n > 0 && p.diff < 0 && !isnan(pv) && pv < alpha;
		int is_surface = !strcmp(ma->kind, "surface");
		cJSON_AddBoolToObject(m, "significant", n > 0 && !isnan(pv) && pv < alpha);
		cJSON_AddBoolToObject(m, "regressed", reg && !is_surface);
		if (reg && !is_surface)
			cJSON_AddItemToArray(regressed, cJSON_CreateString(ma->name));
		smap_free(&cmap);
		free(xa);
		free(xb);
		free(cl);
	}
	cJSON_AddItemToObject(out, "regressed", regressed);
	case_vals_free(&A);
	case_vals_free(&B);
	return out;
}

/* ------------------------------------------------------------ method sensitivity */

/*
 * Every pair of metrics that share a "compare_as" group scored the same
 * cases by two methods (strict and flexible extraction, a regex and an LLM
 * judge).  They are paired case by case, as compare pairs two runs: McNemar
 * for pass/fail with one sample per case, else the paired t interval.  A pair
 * whose difference is significant at alpha (the interval of the difference
 * excludes 0) is method_sensitive: the method, not the model, moved the
 * number.  The cases where the two disagree are listed by id.  NULL when no
 * metric has a group.
 */
static cJSON *methods(const cJSON *results, double alpha, int *sensitive)
{
	struct case_vals cv;
	case_vals_build(&cv, results);
	cJSON *out = NULL;
	int any_cluster = 0;
	for (size_t i = 0; i < cv.n_cases; i++)
		if (cv.cluster[i])
			any_cluster = 1;
	char **id_of = xcalloc(cv.n_cases + 1, sizeof(*id_of));
	for (size_t i = 0; i < cv.ids.cap; i++)
		if (cv.ids.keys[i])
			id_of[cv.ids.vals[i]] = cv.ids.keys[i];
	for (size_t ai = 0; ai < cv.ms.n; ai++) {
		const struct metric_acc *ma = &cv.ms.m[ai];
		if (!ma->group)
			continue;
		for (size_t bi = ai + 1; bi < cv.ms.n; bi++) {
			const struct metric_acc *mb = &cv.ms.m[bi];
			if (!mb->group || strcmp(ma->group, mb->group))
				continue;
			if (!out)
				out = cJSON_CreateArray();
			double *xa = xmalloc((cv.n_cases + 1) * sizeof(double));
			double *xb = xmalloc((cv.n_cases + 1) * sizeof(double));
			long *cl = xmalloc((cv.n_cases + 1) * sizeof(long));
			struct smap cmap = { 0 };
			cJSON *dis = cJSON_CreateArray();
			size_t n = 0;
			int binary = 1;
			long a_only = 0, b_only = 0;
			for (size_t ci = 0; ci < cv.n_cases; ci++) {
				double va, vb;
				long ka, kb;
				if (!case_val(ma, (long)ci, &va, &ka) || !case_val(mb, (long)ci, &vb, &kb))
					continue;
				if (ka != 1 || kb != 1 || (va != 0 && va != 1) || (vb != 0 && vb != 1))
					binary = 0;
				a_only += va == 1 && vb == 0;
				b_only += va == 0 && vb == 1;
				if (va != vb)
					cJSON_AddItemToArray(dis, cJSON_CreateString(id_of[ci]));
				xa[n] = va;
				xb[n] = vb;
				cl[n] = smap_intern(&cmap, cv.cluster[ci] ? cv.cluster[ci] : id_of[ci]);
				n++;
			}
			struct ftk_paired p;
			ftk_stats_paired(xa, xb, any_cluster ? cl : NULL, n, &p);
			double pv = p.p;
			const char *test = "paired-t";
			if (binary && n > 0) {
				struct ftk_mcnemar mc;
				ftk_stats_mcnemar(a_only, b_only, &mc);
				pv = mc.p;
				test = mc.method[0] == 'e' ? "mcnemar-exact" : "mcnemar-chi2";
			}
			if (p.lo < -1)	/* both lie in [0, 1] for judges' metrics: so does the difference */
				p.lo = -1;
			if (p.hi > 1)
				p.hi = 1;
			int sig = n > 0 && !isnan(pv) && pv < alpha;
			*sensitive |= sig;
			cJSON *e = cJSON_CreateObject();
			cJSON_AddStringToObject(e, "group", ma->group);
			cJSON_AddStringToObject(e, "a", ma->name);
			cJSON_AddStringToObject(e, "b", mb->name);
			cJSON_AddNumberToObject(e, "n", (double)n);
			add_num(e, "mean_a", p.mean_a);
			add_num(e, "mean_b", p.mean_b);
			add_num(e, "diff", p.diff);
			add_num(e, "lo", p.lo);
			add_num(e, "hi", p.hi);
			cJSON_AddStringToObject(e, "test", test);
			add_num(e, "p", pv);
			if (binary && n > 0) {
				cJSON_AddNumberToObject(e, "a_only", (double)a_only);
				cJSON_AddNumberToObject(e, "b_only", (double)b_only);
			}
			cJSON_AddBoolToObject(e, "method_sensitive", sig);
			cJSON_AddItemToObject(e, "disagree", dis);
			cJSON_AddItemToArray(out, e);
			smap_free(&cmap);
			free(xa);
			free(xb);
			free(cl);
		}
	}
	free(id_of);
	case_vals_free(&cv);
	return out;
}
