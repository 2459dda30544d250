/*
 * reviews.c: reading reviewers' decisions, folding them into results, and
 * measuring how often each judge agrees with the people.
 *
 * The file format and the folding rules are in reviews.h.  Decisions are
 * keyed by (reviewer, id, sample); the last line wins.  Folding works on the
 * cJSON arrays eval already passes around, so ftk-eval summary and
 * ftk-report share it without another data structure.
 */
#include "eval/reviews.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "eval/stats.h"

static const char *str(const cJSON *o, const char *k)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

static long sample_of(const cJSON *o)
{
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "sample");
	return cJSON_IsNumber(s) ? (long)s->valuedouble : 0;
}

static int verdict_ok(const cJSON *v)
{
	if (!v || cJSON_IsNull(v))
		return 1;
	const char *s = cJSON_GetStringValue(v);
	return s && (!strcmp(s, "pass") || !strcmp(s, "fail") || !strcmp(s, "unsure"));
}

int ftk_reviews_load(const char *path, cJSON **out, long *n_bad, struct ftk_error *err)
{
	*out = NULL;
	if (n_bad)
		*n_bad = 0;
	FILE *f = fopen(path, "r");
	if (!f)
		return ftk_error_set(err, errno == ENOENT ? FTK_ENOTFOUND : FTK_EIO, path, 0, "",
				     "cannot open '%s': %s", path, strerror(errno));
	cJSON *arr = cJSON_CreateArray();
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	long lineno = 0, bad = 0;
	while ((len = getline(&line, &cap, f)) != -1) {
		lineno++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = 0;
		size_t i = 0;
		while (line[i] == ' ' || line[i] == '\t')
			i++;
		if (!line[i])
			continue;
		cJSON *o = cJSON_ParseWithLength(line, (size_t)len);
		const char *field = NULL, *why = NULL;
		if (!cJSON_IsObject(o))
			why = "not a JSON object (a torn line?)";
		else if (!str(o, "reviewer"))
			field = "reviewer", why = "missing or not a string";
		else if (!str(o, "id"))
			field = "id", why = "missing or not a string";
		else if (!verdict_ok(cJSON_GetObjectItemCaseSensitive(o, "verdict")))
			field = "verdict", why = "must be \"pass\", \"fail\", \"unsure\" or null";
		if (why) {
			if (bad++ == 0 && err)
				ftk_error_set(err, FTK_EDATA, path, lineno, field ? field : "", "%s", why);
			cJSON_Delete(o);
			continue;
		}
		cJSON_AddItemToArray(arr, o);
	}
	int rerr = ferror(f);
	free(line);
	fclose(f);
	if (rerr) {
		cJSON_Delete(arr);
		return ftk_error_set(err, FTK_EIO, path, 0, "", "read error on '%s'", path);
	}
	if (n_bad)
		*n_bad = bad;
	*out = arr;
	return 0;
}

static int same_key(const cJSON *a, const cJSON *b)
{
	return !strcmp(str(a, "reviewer"), str(b, "reviewer")) && !strcmp(str(a, "id"), str(b, "id")) &&
	       sample_of(a) == sample_of(b);
}

cJSON *ftk_reviews_latest(const cJSON *lines)
{
	cJSON *out = cJSON_CreateArray();
	int n = cJSON_GetArraySize(lines);
	/* quadratic in the worst case, but a review file holds hundreds of lines */
	for (int i = 0; i < n; i++) {
		const cJSON *a = cJSON_GetArrayItem(lines, i);
		int later = 0;
		for (int j = i + 1; j < n && !later; j++)
			later = same_key(a, cJSON_GetArrayItem(lines, j));
		if (!later)
			cJSON_AddItemToArray(out, cJSON_Duplicate(a, 1));
	}
	return out;
}

static const char *judges_verdict(const cJSON *r)
{
	const cJSON *j;
	int any = 0, pass = 1;
	cJSON_ArrayForEach(j, cJSON_GetObjectItemCaseSensitive(r, "judges"))
	{
		const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "pass");
		if (!cJSON_IsBool(p))
			continue;
		any = 1;
		pass &= cJSON_IsTrue(p);
	}
	return any ? (pass ? "pass" : "fail") : NULL;
}

long ftk_reviews_fold(cJSON *results, const cJSON *reviews)
{
	cJSON *latest = ftk_reviews_latest(reviews);
	long n_human = 0;
	cJSON *r;
	cJSON_ArrayForEach(r, results)
	{
		const char *id = str(r, "id");
		if (!id)
			continue;
		long sample = sample_of(r);
		cJSON *who = NULL;
		int n_pass = 0, n_fail = 0, n_unsure = 0;
		const cJSON *d;
		cJSON_ArrayForEach(d, latest)
		{
			if (strcmp(str(d, "id"), id) || sample_of(d) != sample)
				continue;
			const char *v = str(d, "verdict");
			if (!v)
				continue;	/* a note without a verdict */
			if (!who)
				who = cJSON_CreateArray();
			cJSON *e = cJSON_CreateObject();
			cJSON_AddStringToObject(e, "reviewer", str(d, "reviewer"));
			cJSON_AddStringToObject(e, "verdict", v);
			if (str(d, "note"))
				cJSON_AddStringToObject(e, "note", str(d, "note"));
			if (str(d, "ts"))
				cJSON_AddStringToObject(e, "ts", str(d, "ts"));
			cJSON_AddItemToArray(who, e);
			n_pass += !strcmp(v, "pass");
			n_fail += !strcmp(v, "fail");
			n_unsure += !strcmp(v, "unsure");
		}
		const char *jv = judges_verdict(r);
		cJSON_DeleteItemFromObjectCaseSensitive(r, "human");
		cJSON_DeleteItemFromObjectCaseSensitive(r, "verdict");
		cJSON_DeleteItemFromObjectCaseSensitive(r, "verdict_by");
		const char *hv = NULL;
		if (who) {
			hv = n_pass && n_fail ? "conflict" : n_pass ? "pass" : n_fail ? "fail" : "unsure";
			cJSON *h = cJSON_AddObjectToObject(r, "human");
			cJSON_AddStringToObject(h, "verdict", hv);
			cJSON_AddItemToObject(h, "reviewers", who);
			n_human++;
		}
		int human_decides = hv && (!strcmp(hv, "pass") || !strcmp(hv, "fail"));
		if (human_decides) {
			cJSON_AddStringToObject(r, "verdict", hv);
			cJSON_AddStringToObject(r, "verdict_by", "human");
			cJSON *j;
			cJSON_ArrayForEach(j, cJSON_GetObjectItemCaseSensitive(r, "judges"))
			{
				if (!cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(j, "pass")))
					continue;
				cJSON_DeleteItemFromObjectCaseSensitive(j, "human_pass");
				cJSON_DeleteItemFromObjectCaseSensitive(j, "overridden");
				cJSON_AddBoolToObject(j, "human_pass", !strcmp(hv, "pass"));
				cJSON_AddBoolToObject(j, "overridden", 1);
			}
		} else if (jv) {
			cJSON_AddStringToObject(r, "verdict", jv);
			cJSON_AddStringToObject(r, "verdict_by", "judges");
		}
	}
	cJSON_Delete(latest);
	return n_human;
}

double ftk_reviews_kappa(double a, double b, double c, double d)
{
	double n = a + b + c + d;
	if (n <= 0)
		return NAN;
	double po = (a + d) / n;
	double pe = ((a + b) / n) * ((a + c) / n) + ((c + d) / n) * ((b + d) / n);
	if (pe >= 1)
		return NAN;
	return (po - pe) / (1 - pe);
}

static void add_num_or_null(cJSON *o, const char *k, double v)
{
	if (isnan(v))
		cJSON_AddNullToObject(o, k);
	else
		cJSON_AddNumberToObject(o, k, v);
}

struct agree {
	const char *label;
	double tab[4];	/* both pass, judge pass/human fail, judge fail/human pass, both fail */
	cJSON *disagree;
};

cJSON *ftk_reviews_agreement(const cJSON *folded)
{
	cJSON *out = cJSON_CreateObject();
	long reviewed = 0, hp = 0, hf = 0, hu = 0, hc = 0, overridden = 0;
	struct agree *A = NULL;
	size_t nA = 0, allocA = 0;
	double *fin = xmalloc(sizeof(double) * (size_t)(cJSON_GetArraySize(folded) + 1));
	size_t n_fin = 0;
	const cJSON *r;
	cJSON_ArrayForEach(r, folded)
	{
		const char *v = str(r, "verdict");
		if (v)
			fin[n_fin++] = !strcmp(v, "pass");
		const cJSON *h = cJSON_GetObjectItemCaseSensitive(r, "human");
		if (!h)
			continue;
		reviewed++;
		const char *hv = str(h, "verdict");
		if (!hv)
			continue;
		hp += !strcmp(hv, "pass");
		hf += !strcmp(hv, "fail");
		hu += !strcmp(hv, "unsure");
		hc += !strcmp(hv, "conflict");
		if (strcmp(hv, "pass") && strcmp(hv, "fail"))
			continue;
		int human_pass = !strcmp(hv, "pass");
		char idbuf[600];
		long s = sample_of(r);
		if (s)
			snprintf(idbuf, sizeof(idbuf), "%s#%ld", str(r, "id"), s);
		else
			snprintf(idbuf, sizeof(idbuf), "%s", str(r, "id"));
		int any_over = 0;
		const cJSON *j;
		cJSON_ArrayForEach(j, cJSON_GetObjectItemCaseSensitive(r, "judges"))
		{
			const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "pass");
			if (!cJSON_IsBool(p) || !j->string)
				continue;
			struct agree *g = NULL;
			for (size_t i = 0; i < nA; i++)
				if (!strcmp(A[i].label, j->string))
					g = &A[i];
			if (!g) {
				FTK_ALLOC_GROW(A, nA + 1, allocA);
				g = &A[nA++];
				memset(g, 0, sizeof(*g));
				g->label = j->string;
				g->disagree = cJSON_CreateArray();
			}
			int jp = cJSON_IsTrue(p);
			g->tab[jp ? (human_pass ? 0 : 1) : (human_pass ? 2 : 3)] += 1;
			if (jp != human_pass) {
				cJSON_AddItemToArray(g->disagree, cJSON_CreateString(idbuf));
				any_over = 1;
			}
		}
		overridden += any_over;
	}
	cJSON_AddNumberToObject(out, "reviewed", (double)reviewed);
	cJSON *hum = cJSON_AddObjectToObject(out, "human");
	cJSON_AddNumberToObject(hum, "pass", (double)hp);
	cJSON_AddNumberToObject(hum, "fail", (double)hf);
	cJSON_AddNumberToObject(hum, "unsure", (double)hu);
	cJSON_AddNumberToObject(hum, "conflict", (double)hc);
	cJSON_AddNumberToObject(out, "overridden", (double)overridden);
	struct ftk_stat_summary st;
	ftk_stats_summarize(fin, NULL, n_fin, &st);
	cJSON *ver = cJSON_AddObjectToObject(out, "verdict");
	cJSON_AddNumberToObject(ver, "n", (double)st.n);
	add_num_or_null(ver, "mean", st.mean);
	add_num_or_null(ver, "lo", st.lo);
	add_num_or_null(ver, "hi", st.hi);
	free(fin);
	cJSON *js = cJSON_AddObjectToObject(out, "judges");
	for (size_t i = 0; i < nA; i++) {
		struct agree *g = &A[i];
		cJSON *o = cJSON_AddObjectToObject(js, g->label);
		double n = g->tab[0] + g->tab[1] + g->tab[2] + g->tab[3];
		cJSON_AddNumberToObject(o, "n", n);
		cJSON_AddNumberToObject(o, "both_pass", g->tab[0]);
		cJSON_AddNumberToObject(o, "judge_pass_human_fail", g->tab[1]);
		cJSON_AddNumberToObject(o, "judge_fail_human_pass", g->tab[2]);
		cJSON_AddNumberToObject(o, "both_fail", g->tab[3]);
		add_num_or_null(o, "agreement", n > 0 ? (g->tab[0] + g->tab[3]) / n : NAN);
		add_num_or_null(o, "kappa", ftk_reviews_kappa(g->tab[0], g->tab[1], g->tab[2], g->tab[3]));
		cJSON_AddItemToObject(o, "disagree", g->disagree);
	}
	free(A);
	return out;
}

void ftk_reviews_print(FILE *f, const cJSON *ag)
{
	const cJSON *h = cJSON_GetObjectItemCaseSensitive(ag, "human");
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(ag, "verdict");
	fprintf(f, "reviewed by people: %.0f (pass %.0f, fail %.0f, unsure %.0f, conflict %.0f); "
		   "the human verdict overrides the judges on %.0f\n",
		cJSON_GetNumberValue(cJSON_GetObjectItem(ag, "reviewed")),
		cJSON_GetNumberValue(cJSON_GetObjectItem(h, "pass")),
		cJSON_GetNumberValue(cJSON_GetObjectItem(h, "fail")),
		cJSON_GetNumberValue(cJSON_GetObjectItem(h, "unsure")),
		cJSON_GetNumberValue(cJSON_GetObjectItem(h, "conflict")),
		cJSON_GetNumberValue(cJSON_GetObjectItem(ag, "overridden")));
	double mean = cJSON_GetNumberValue(cJSON_GetObjectItem(v, "mean"));
	double lo = cJSON_GetNumberValue(cJSON_GetObjectItem(v, "lo"));
	double hi = cJSON_GetNumberValue(cJSON_GetObjectItem(v, "hi"));
	if (!isnan(mean))
		fprintf(f, "verdict, people first: %.3f [%.3f, %.3f] over %.0f\n", mean, lo, hi,
			cJSON_GetNumberValue(cJSON_GetObjectItem(v, "n")));
	const cJSON *j;
	cJSON_ArrayForEach(j, cJSON_GetObjectItemCaseSensitive(ag, "judges"))
	{
		double k = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "kappa"));
		char ks[32];
		if (isnan(k))
			snprintf(ks, sizeof(ks), "-");
		else
			snprintf(ks, sizeof(ks), "%.3f", k);
		fprintf(f, "judge %s vs people: n %.0f, agreement %.3f, kappa %s; "
			   "judge pass/human pass %.0f, pass/fail %.0f, fail/pass %.0f, fail/fail %.0f\n",
			j->string, cJSON_GetNumberValue(cJSON_GetObjectItem(j, "n")),
			cJSON_GetNumberValue(cJSON_GetObjectItem(j, "agreement")), ks,
			cJSON_GetNumberValue(cJSON_GetObjectItem(j, "both_pass")),
			cJSON_GetNumberValue(cJSON_GetObjectItem(j, "judge_pass_human_fail")),
			cJSON_GetNumberValue(cJSON_GetObjectItem(j, "judge_fail_human_pass")),
			cJSON_GetNumberValue(cJSON_GetObjectItem(j, "both_fail")));
		const cJSON *d;
		int first = 1;
		cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(j, "disagree"))
		{
			fprintf(f, "%s%s", first ? "  disagree: " : ", ", d->valuestring);
			first = 0;
		}
		if (!first)
			fputc('\n', f);
	}
}
