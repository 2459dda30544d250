/*
 * test_stats.c: eval/stats against numbers ftk did not compute.
 *
 * tests/fixtures/eval/stats_ref.json comes from stats_ref.py beside it (numpy
 * sandwich standard errors, Simpson-integrated t densities, torch's ndtri and
 * gammaincc, exact binomial sums with Python integers).  A few textbook
 * values are also pinned by hand (t table, the Wilson interval for 8/10).
 * Each comparison prints the largest difference it saw.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "testutil.h"
#include "lib/err.h"
#include "lib/stream.h"
#include "eval/run.h"
#include "eval/stats.h"

static cJSON *ref;

static void load_ref(void)
{
	char *data;
	size_t len;
	struct ftk_error e;
	ck_assert_int_eq(ftk_read_all(src_path("tests/fixtures/eval/stats_ref.json"), &data, &len, &e), 0);
	ref = cJSON_ParseWithLength(data, len);
	free(data);
	ck_assert_ptr_nonnull(ref);
}

static void free_ref(void)
{
	cJSON_Delete(ref);
	ref = NULL;
}

static double num(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	ck_assert_msg(cJSON_IsNumber(v), "fixture lacks %s", k);
	return v->valuedouble;
}

static double maxdiff;
static void close_to(double got, double want, double tol, const char *what)
{
	double d = fabs(got - want);
	double rel = d / (fabs(want) > 1 ? fabs(want) : 1);
	if (rel > maxdiff)
		maxdiff = rel;
	ck_assert_msg(rel <= tol, "%s: got %.15g, want %.15g (diff %.3g)", what, got, want, d);
}

/* Read an array of numbers (or NULL) into a new array; *n its length. */
static double *nums(const cJSON *a, size_t *n)
{
	*n = (size_t)cJSON_GetArraySize(a);
	double *v = calloc(*n ? *n : 1, sizeof(*v));
	size_t i = 0;
	const cJSON *it;
	cJSON_ArrayForEach(it, a) v[i++] = it->valuedouble;
	return v;
}

static long *clusters(const cJSON *a)
{
	if (!cJSON_IsArray(a))
		return NULL;
	long *v = calloc((size_t)cJSON_GetArraySize(a) + 1, sizeof(*v));
	size_t i = 0;
	const cJSON *it;
	cJSON_ArrayForEach(it, a) v[i++] = (long)it->valuedouble;
	return v;
}

START_TEST(textbook_values)
{
	ck_assert_double_eq_tol(ftk_stats_norm_quantile(0.975), 1.959964, 1e-6);
	ck_assert_double_eq_tol(ftk_stats_t_quantile(0.975, 1), 12.7062, 1e-4);
	ck_assert_double_eq_tol(ftk_stats_t_quantile(0.975, 10), 2.2281, 1e-4);
	ck_assert_double_eq_tol(ftk_stats_t_quantile(0.025, 10), -2.2281, 1e-4);
	double lo, hi;
	ftk_stats_wilson(8, 10, 1.959964, &lo, &hi);
	ck_assert_double_eq_tol(lo, 0.4902, 1e-4);
	ck_assert_double_eq_tol(hi, 0.9433, 1e-4);
	/* 0 of 5: the Wilson interval is [0, z^2/(n+z^2)], not the empty [0, 0] */
	ftk_stats_wilson(0, 5, 1.959964, &lo, &hi);
	ck_assert_double_eq(lo, 0);
	ck_assert_double_eq_tol(hi, 3.841459 / (5 + 3.841459), 1e-6);
}
END_TEST

START_TEST(summaries_match_numpy)
{
	maxdiff = 0;
	const cJSON *s;
	int k = 0;
	cJSON_ArrayForEach(s, cJSON_GetObjectItem(ref, "summaries"))
	{
		size_t n;
		double *x = nums(cJSON_GetObjectItem(s, "x"), &n);
		long *g = clusters(cJSON_GetObjectItem(s, "cluster"));
		struct ftk_stat_summary out;
		ftk_stats_summarize(x, g, n, &out);
		char what[64];
		snprintf(what, sizeof(what), "summary %d", k++);
		ck_assert_uint_eq(out.n, (size_t)num(s, "n"));
		ck_assert_uint_eq(out.n_clusters, (size_t)num(s, "n_clusters"));
		ck_assert_int_eq(out.binary, cJSON_IsTrue(cJSON_GetObjectItem(s, "binary")));
		ck_assert_str_eq(out.interval, out.binary ? "wilson" : "t");
		close_to(out.mean, num(s, "mean"), 1e-12, what);
		close_to(out.se, num(s, "se"), 1e-10, what);
		close_to(out.lo, num(s, "lo"), 1e-8, what);
		close_to(out.hi, num(s, "hi"), 1e-8, what);
		free(x);
		free(g);
	}
	ck_assert_int_ge(k, 7);
	printf("summaries: max relative difference %.3g\n", maxdiff);
}
END_TEST

START_TEST(t_and_normal_match_integration)
{
	maxdiff = 0;
	const cJSON *s;
	cJSON_ArrayForEach(s, cJSON_GetObjectItem(ref, "t_quantile"))
		close_to(ftk_stats_t_quantile(num(s, "p"), num(s, "df")), num(s, "q"), 1e-8,
			 "t quantile");
	cJSON_ArrayForEach(s, cJSON_GetObjectItem(ref, "t_cdf"))
		close_to(ftk_stats_t_cdf(num(s, "t"), num(s, "df")), num(s, "cdf"), 1e-9, "t cdf");
	cJSON_ArrayForEach(s, cJSON_GetObjectItem(ref, "norm_quantile"))
		close_to(ftk_stats_norm_quantile(num(s, "p")), num(s, "q"), 1e-10, "norm quantile");
	cJSON_ArrayForEach(s, cJSON_GetObjectItem(ref, "betainc"))
		close_to(ftk_stats_betainc(num(s, "a"), num(s, "b"), num(s, "x")), num(s, "v"), 1e-9,
			 "betainc");
	printf("t, normal, beta: max relative difference %.3g\n", maxdiff);
}
END_TEST

START_TEST(mcnemar_matches_exact_sums)
{
	maxdiff = 0;
	const cJSON *s;
	cJSON_ArrayForEach(s, cJSON_GetObjectItem(ref, "mcnemar"))
	{
		struct ftk_mcnemar m;
		long b = (long)num(s, "b"), c = (long)num(s, "c");
		ftk_stats_mcnemar(b, c, &m);
		close_to(m.p_exact, num(s, "p_exact"), 1e-12, "mcnemar exact");
		close_to(m.chi2, num(s, "chi2"), 1e-12, "mcnemar chi2");
		close_to(m.p_chi2, num(s, "p_chi2"), 1e-10, "mcnemar chi2 p");
		ck_assert_str_eq(m.method, b + c < 25 ? "exact" : "chi2");
		ck_assert_double_eq(m.p, b + c < 25 ? m.p_exact : m.p_chi2);
	}
	printf("mcnemar: max relative difference %.3g\n", maxdiff);
}
END_TEST

START_TEST(paired_matches_numpy)
{
	maxdiff = 0;
	const cJSON *s;
	cJSON_ArrayForEach(s, cJSON_GetObjectItem(ref, "paired"))
	{
		size_t n, n2;
		double *a = nums(cJSON_GetObjectItem(s, "a"), &n);
		double *b = nums(cJSON_GetObjectItem(s, "b"), &n2);
		long *g = clusters(cJSON_GetObjectItem(s, "cluster"));
		ck_assert_uint_eq(n, n2);
		struct ftk_paired p;
		ftk_stats_paired(a, b, g, n, &p);
		close_to(p.diff, num(s, "diff"), 1e-12, "paired diff");
		close_to(p.se, num(s, "se"), 1e-10, "paired se");
		close_to(p.df, num(s, "df"), 0, "paired df");
		close_to(p.lo, num(s, "lo"), 1e-8, "paired lo");
		close_to(p.hi, num(s, "hi"), 1e-8, "paired hi");
		close_to(p.t, num(s, "t"), 1e-9, "paired t");
		close_to(p.p, num(s, "p"), 1e-8, "paired p");
		free(a);
		free(b);
		free(g);
	}
	printf("paired: max relative difference %.3g\n", maxdiff);
}
END_TEST

START_TEST(edge_cases)
{
	struct ftk_stat_summary s;
	ftk_stats_summarize(NULL, NULL, 0, &s);
	ck_assert(isnan(s.mean) && isnan(s.se) && isnan(s.lo));
	double one = 1;
	ftk_stats_summarize(&one, NULL, 1, &s);
	ck_assert_double_eq(s.mean, 1);
	ck_assert(isnan(s.se));
	ck_assert(s.lo > 0.2 && s.hi == 1);	/* Wilson still says something for n = 1 */
	/* every case in one cluster: no clustered se */
	double x[3] = { 0.2, 0.5, 0.9 };
	long g[3] = { 7, 7, 7 };
	ftk_stats_summarize(x, g, 3, &s);
	ck_assert_uint_eq(s.n_clusters, 1);
	ck_assert(isnan(s.se));
	/* identical runs: no difference, p = 1 */
	struct ftk_paired p;
	ftk_stats_paired(x, x, NULL, 3, &p);
	ck_assert_double_eq(p.diff, 0);
	ck_assert_double_eq(p.p, 1);
	struct ftk_mcnemar m;
	ftk_stats_mcnemar(0, 0, &m);
	ck_assert_double_eq(m.p, 1);
}
END_TEST

/*
 * The same reference numbers, reached through ftk-eval's summary of a
 * results array: the clustered binary fixture and the clustered continuous
 * one become two metrics of one run (cluster names as strings, an errored
 * line that must be left out), so the cluster bookkeeping of run.c is
 * checked against numpy as well.
 */
START_TEST(run_summary_matches_numpy)
{
	const cJSON *sums = cJSON_GetObjectItem(ref, "summaries");
	const cJSON *bin = cJSON_GetArrayItem(sums, 4), *cont = cJSON_GetArrayItem(sums, 6);
	ck_assert(cJSON_IsArray(cJSON_GetObjectItem(bin, "cluster")));
	ck_assert(cJSON_IsArray(cJSON_GetObjectItem(cont, "cluster")));
	cJSON *results = cJSON_CreateArray();
	const cJSON *pairs[2] = { bin, cont };
	const char *names[2] = { "j.pass", "j.score" };
	for (int m = 0; m < 2; m++) {
		const cJSON *x = cJSON_GetObjectItem(pairs[m], "x");
		const cJSON *g = cJSON_GetObjectItem(pairs[m], "cluster");
		for (int i = 0; i < cJSON_GetArraySize(x); i++) {
			cJSON *r = cJSON_CreateObject();
			char id[32], cl[32];
			snprintf(id, sizeof(id), "m%d-case%d", m, i);
			snprintf(cl, sizeof(cl), "group-%d-%d", m, (int)cJSON_GetArrayItem(g, i)->valuedouble);
			cJSON_AddStringToObject(r, "id", id);
			cJSON_AddNumberToObject(r, "sample", 0);
			cJSON_AddStringToObject(r, "cluster", cl);
			cJSON *sc = cJSON_AddObjectToObject(r, "scores");
			cJSON_AddNumberToObject(sc, names[m], cJSON_GetArrayItem(x, i)->valuedouble);
			cJSON_AddItemToArray(results, r);
		}
	}
	cJSON *e = cJSON_CreateObject();
	cJSON_AddStringToObject(e, "id", "down");
	cJSON_AddStringToObject(e, "error", "HTTP 503 (gave up after 6 attempts)");
	cJSON_AddItemToArray(results, e);
	cJSON *sum = ftk_eval_summarize(results);
	ck_assert_int_eq((int)num(sum, "errors"), 1);
	ck_assert_int_eq((int)num(sum, "scored"), cJSON_GetArraySize(results) - 1);
	maxdiff = 0;
	for (int m = 0; m < 2; m++) {
		const cJSON *got = cJSON_GetObjectItem(cJSON_GetObjectItem(sum, "metrics"), names[m]);
		ck_assert_ptr_nonnull(got);
		ck_assert_int_eq((int)num(got, "n"), (int)num(pairs[m], "n"));
		ck_assert_int_eq((int)num(got, "n_clusters"), (int)num(pairs[m], "n_clusters"));
		ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(got, "clustered")));
		close_to(num(got, "mean"), num(pairs[m], "mean"), 1e-12, names[m]);
		close_to(num(got, "se"), num(pairs[m], "se"), 1e-10, names[m]);
		close_to(num(got, "lo"), fmax(0, num(pairs[m], "lo")), 1e-8, names[m]);
		close_to(num(got, "hi"), fmin(1, num(pairs[m], "hi")), 1e-8, names[m]);
	}
	printf("run summary: max relative difference %.3g\n", maxdiff);
	cJSON_Delete(sum);
	cJSON_Delete(results);
}
END_TEST

/* The clustered paired fixture, through ftk-eval's comparison of two runs. */
START_TEST(run_compare_matches_numpy)
{
	const cJSON *pr = cJSON_GetArrayItem(cJSON_GetObjectItem(ref, "paired"), 1);
	const cJSON *g = cJSON_GetObjectItem(pr, "cluster");
	ck_assert(cJSON_IsArray(g));
	cJSON *runs[2];
	const char *sides[2] = { "a", "b" };
	for (int r = 0; r < 2; r++) {
		runs[r] = cJSON_CreateArray();
		const cJSON *x = cJSON_GetObjectItem(pr, sides[r]);
		/* B lists its cases in reverse order: pairing is by id, not position */
		for (int k = 0; k < cJSON_GetArraySize(x); k++) {
			int i = r ? cJSON_GetArraySize(x) - 1 - k : k;
			cJSON *o = cJSON_CreateObject();
			char id[32], cl[32];
			snprintf(id, sizeof(id), "case-%d", i);
			snprintf(cl, sizeof(cl), "c%d", (int)cJSON_GetArrayItem(g, i)->valuedouble);
			cJSON_AddStringToObject(o, "id", id);
			cJSON_AddStringToObject(o, "cluster", cl);
			cJSON *sc = cJSON_AddObjectToObject(o, "scores");
			cJSON_AddNumberToObject(sc, "j.score", cJSON_GetArrayItem(x, i)->valuedouble);
			cJSON_AddItemToArray(runs[r], o);
		}
	}
	/* a case only A has is not paired */
	cJSON *extra = cJSON_CreateObject();
	cJSON_AddStringToObject(extra, "id", "only-a");
	cJSON_AddItemToObject(extra, "scores", cJSON_Parse("{\"j.score\": 1}"));
	cJSON_AddItemToArray(runs[0], extra);
	cJSON *cmp = ftk_eval_compare(runs[0], runs[1], 0.05);
	const cJSON *m = cJSON_GetObjectItem(cJSON_GetObjectItem(cmp, "metrics"), "j.score");
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq((int)num(cmp, "only_a"), 1);
	ck_assert_int_eq((int)num(m, "n"), cJSON_GetArraySize(cJSON_GetObjectItem(pr, "a")));
	ck_assert_str_eq(cJSON_GetObjectItem(m, "test")->valuestring, "paired-t");
	maxdiff = 0;
	close_to(num(m, "diff"), num(pr, "diff"), 1e-12, "compare diff");
	close_to(num(m, "se"), num(pr, "se"), 1e-10, "compare se");
	close_to(num(m, "lo"), num(pr, "lo"), 1e-8, "compare lo");
	close_to(num(m, "hi"), num(pr, "hi"), 1e-8, "compare hi");
	close_to(num(m, "p"), num(pr, "p"), 1e-8, "compare p");
	ck_assert_int_eq(cJSON_IsTrue(cJSON_GetObjectItem(m, "regressed")),
			 num(pr, "diff") < 0 && num(pr, "p") < 0.05);
	printf("run compare: max relative difference %.3g\n", maxdiff);
	cJSON_Delete(cmp);
	cJSON_Delete(runs[0]);
	cJSON_Delete(runs[1]);
}
END_TEST

static Suite *stats_suite(void)
{
	Suite *s = suite_create("stats");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, load_ref, free_ref);
	tcase_add_test(tc, textbook_values);
	tcase_add_test(tc, summaries_match_numpy);
	tcase_add_test(tc, t_and_normal_match_integration);
	tcase_add_test(tc, mcnemar_matches_exact_sums);
	tcase_add_test(tc, paired_matches_numpy);
	tcase_add_test(tc, edge_cases);
	tcase_add_test(tc, run_summary_matches_numpy);
	tcase_add_test(tc, run_compare_matches_numpy);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(stats_suite)
