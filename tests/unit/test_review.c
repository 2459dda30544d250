/*
 * test_review.c: people's verdicts (eval/reviews.h) and review/review.h.
 *
 * Cohen's kappa is checked against worked examples from the literature
 * rather than against a formula typed twice: Wikipedia's "Cohen's kappa"
 * article (20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no gives 0.4) and
 * Landis & Koch style tables computed by hand.  Folding is checked for what
 * the issue asks: a human pass or fail overrides the judges, the judges'
 * own verdicts stay beside it, unsure and conflicting reviews do not
 * override, and the last decision of a reviewer wins.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "eval/reviews.h"
#include "lib/err.h"
#include "review/review.h"
#include "testutil.h"

START_TEST(kappa_reference)
{
	/* Wikipedia, "Cohen's kappa", first worked example */
	ck_assert_double_eq_tol(ftk_reviews_kappa(20, 5, 10, 15), 0.4, 1e-12);
	/* perfect agreement with both classes used */
	ck_assert_double_eq_tol(ftk_reviews_kappa(7, 0, 0, 3), 1.0, 1e-12);
	/* agreement no better than chance: p_o = p_e = 0.5 */
	ck_assert_double_eq_tol(ftk_reviews_kappa(25, 25, 25, 25), 0.0, 1e-12);
	/* systematic disagreement is negative: p_o 0, p_e 0.5 -> -1 */
	ck_assert_double_eq_tol(ftk_reviews_kappa(0, 5, 5, 0), -1.0, 1e-12);
	/* one class only on both sides: p_e = 1, undefined */
	ck_assert(isnan(ftk_reviews_kappa(4, 0, 0, 0)));
	ck_assert(isnan(ftk_reviews_kappa(0, 0, 0, 0)));
}
END_TEST

static cJSON *result(const char *id, int judge_pass)
{
	char buf[512];
	snprintf(buf, sizeof(buf),
		 "{\"id\":\"%s\",\"sample\":0,\"judges\":{\"citation\":{\"pass\":%s},"
		 "\"looks\":{\"metrics\":{}}},\"flags\":[{\"kind\":\"marker_unsupported\"}]}",
		 id, judge_pass ? "true" : "false");
	return cJSON_Parse(buf);
}

static cJSON *review(const char *who, const char *id, const char *verdict, const char *note)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "reviewer", who);
	cJSON_AddStringToObject(o, "id", id);
	cJSON_AddNumberToObject(o, "sample", 0);
	if (verdict)
		cJSON_AddStringToObject(o, "verdict", verdict);
	else
		cJSON_AddNullToObject(o, "verdict");
	if (note)
		cJSON_AddStringToObject(o, "note", note);
	return o;
}

static const char *s(const cJSON *o, const char *path1, const char *path2)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, path1);
	if (path2)
		x = cJSON_GetObjectItemCaseSensitive(x, path2);
	return cJSON_GetStringValue(x);
}

START_TEST(fold_overrides_and_keeps_provenance)
{
	cJSON *res = cJSON_CreateArray();
	cJSON_AddItemToArray(res, result("a", 1));	/* alice: fail (after a pass) */
	cJSON_AddItemToArray(res, result("b", 0));	/* alice pass, bob fail: conflict */
	cJSON_AddItemToArray(res, result("c", 0));	/* bob unsure */
	cJSON_AddItemToArray(res, result("d", 0));	/* not reviewed */
	cJSON_AddItemToArray(res, result("e", 0));	/* alice: note only, then pass */
	cJSON *rv = cJSON_CreateArray();
	cJSON_AddItemToArray(rv, review("alice", "a", "pass", NULL));
	cJSON_AddItemToArray(rv, review("alice", "b", "pass", NULL));
	cJSON_AddItemToArray(rv, review("bob", "b", "fail", NULL));
	cJSON_AddItemToArray(rv, review("alice", "a", "fail", "wrong source"));
	cJSON_AddItemToArray(rv, review("bob", "c", "unsure", NULL));
	cJSON_AddItemToArray(rv, review("alice", "e", NULL, "look again"));
	cJSON_AddItemToArray(rv, review("alice", "e", "pass", "look again"));
	ck_assert_int_eq(ftk_reviews_fold(res, rv), 4);

	const cJSON *a = cJSON_GetArrayItem(res, 0);
	ck_assert_str_eq(s(a, "verdict", NULL), "fail");
	ck_assert_str_eq(s(a, "verdict_by", NULL), "human");
	ck_assert_str_eq(s(a, "human", "verdict"), "fail");
	const cJSON *cit = cJSON_GetObjectItem(cJSON_GetObjectItem(a, "judges"), "citation");
	ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(cit, "pass")));	/* the judge's own verdict stays */
	ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(cit, "human_pass")));
	ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(cit, "overridden")));
	const cJSON *who = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "human"), "reviewers"), 0);
	ck_assert_str_eq(s(who, "note", NULL), "wrong source");
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "human"), "reviewers")), 1);

	const cJSON *b = cJSON_GetArrayItem(res, 1);
	ck_assert_str_eq(s(b, "human", "verdict"), "conflict");
	ck_assert_str_eq(s(b, "verdict_by", NULL), "judges");
	ck_assert_str_eq(s(b, "verdict", NULL), "fail");
	const cJSON *c = cJSON_GetArrayItem(res, 2);
	ck_assert_str_eq(s(c, "human", "verdict"), "unsure");
	ck_assert_str_eq(s(c, "verdict_by", NULL), "judges");
	const cJSON *d = cJSON_GetArrayItem(res, 3);
	ck_assert_ptr_null(cJSON_GetObjectItem(d, "human"));
	ck_assert_str_eq(s(d, "verdict", NULL), "fail");
	const cJSON *e = cJSON_GetArrayItem(res, 4);
	ck_assert_str_eq(s(e, "verdict", NULL), "pass");

	/* folding twice gives the same result (ftk-review refolds after each decision) */
	ck_assert_int_eq(ftk_reviews_fold(res, rv), 4);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "human"), "reviewers")), 1);

	cJSON *ag = ftk_reviews_agreement(res);
	const cJSON *j = cJSON_GetObjectItem(cJSON_GetObjectItem(ag, "judges"), "citation");
	/* decided cases: a (judge pass, human fail), e (judge fail, human pass) */
	ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "n")), 2);
	ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "judge_pass_human_fail")), 1);
	ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "judge_fail_human_pass")), 1);
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "disagree")), 2);
	/* the "looks" judge gives no verdict and is not in the table */
	ck_assert_ptr_null(cJSON_GetObjectItem(cJSON_GetObjectItem(ag, "judges"), "looks"));
	ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(ag, "reviewed")), 4);
	ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItem(ag, "overridden")), 2);
	/* final verdicts: a fail, b fail, c fail, d fail, e pass */
	ck_assert_double_eq_tol(cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(ag, "verdict"), "mean")),
				0.2, 1e-12);
	cJSON_Delete(ag);
	cJSON_Delete(rv);
	cJSON_Delete(res);
}
END_TEST

START_TEST(load_skips_bad_lines_with_place)
{
	FILE *f = fopen("reviews.jsonl", "w");
	fputs("{\"reviewer\":\"a\",\"id\":\"x\",\"verdict\":\"pass\"}\n"
	      "\n"
	      "{\"reviewer\":\"a\",\"id\":\"y\",\"verdict\":\"maybe\"}\n"
	      "{\"reviewer\":\"a\",\"id\":\"z\",\"verd",
	      f);
	fclose(f);
	cJSON *rv;
	long bad = 0;
	struct ftk_error e;
	ftk_error_clear(&e);
	ck_assert_int_eq(ftk_reviews_load("reviews.jsonl", &rv, &bad, &e), 0);
	ck_assert_int_eq(cJSON_GetArraySize(rv), 1);
	ck_assert_int_eq(bad, 2);
	ck_assert_int_eq(e.line, 3);
	ck_assert_str_eq(e.field, "verdict");
	cJSON_Delete(rv);
	ck_assert_int_eq(ftk_reviews_load("missing.jsonl", &rv, &bad, &e), FTK_ENOTFOUND);
}
END_TEST

START_TEST(active_time_leaves_out_idle_gaps)
{
	double t[] = { 0, 10, 70, 70 + 301, 70 + 301 + 5, 2000 };
	/* 10 + 60, the 301 s gap is out, + 5, the last gap (1624 s) is out */
	ck_assert_double_eq_tol(ftk_review_active_seconds(t, 6, FTK_REVIEW_IDLE_S), 75, 1e-9);
	/* a gap of exactly five minutes still counts */
	double u[] = { 0, 300 };
	ck_assert_double_eq_tol(ftk_review_active_seconds(u, 2, FTK_REVIEW_IDLE_S), 300, 1e-9);
	ck_assert_double_eq_tol(ftk_review_active_seconds(u, 1, FTK_REVIEW_IDLE_S), 0, 1e-9);
}
END_TEST

START_TEST(wrap_counts_columns)
{
	char **l;
	size_t n = ftk_review_wrap("the quick brown fox jumps", 10, &l);
	ck_assert_int_eq(n, 3);
	ck_assert_str_eq(l[0], "the quick");
	ck_assert_str_eq(l[1], "brown fox");
	ck_assert_str_eq(l[2], "jumps");
	for (size_t i = 0; i < n; i++)
		free(l[i]);
	free(l);
	/* CJK characters are two columns wide: four of them fill eight columns */
	n = ftk_review_wrap("\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE6\x96\x87\xE6\x97\xA5\xE6\x9C\xAC", 8, &l);
	ck_assert_int_eq(n, 2);
	ck_assert_int_eq(ftk_review_width(l[0]), 8);
	ck_assert_int_eq(ftk_review_width(l[1]), 4);
	for (size_t i = 0; i < n; i++)
		free(l[i]);
	free(l);
	/* newlines always break, a word longer than the line is cut, bad bytes become U+FFFD */
	n = ftk_review_wrap("ab\nabcdefgh\xff", 4, &l);
	ck_assert_int_eq(n, 4);
	ck_assert_str_eq(l[0], "ab");
	ck_assert_str_eq(l[1], "abcd");
	ck_assert_str_eq(l[2], "efgh");
	ck_assert_str_eq(l[3], "\xEF\xBF\xBD");
	for (size_t i = 0; i < n; i++)
		free(l[i]);
	free(l);
}
END_TEST

START_TEST(filter_matches_ids_flags_failures)
{
	cJSON *r = cJSON_Parse("{\"id\":\"eli5_demo_1\",\"flags\":[{\"kind\":\"marker_unsupported\"}],"
			       "\"judges\":{\"citation\":{\"pass\":false,\"failures\":[{\"kind\":\"unsupported_sentence\"}]},"
			       "\"regex\":{\"pass\":true}}}");
	ck_assert(ftk_review_matches(r, NULL));
	ck_assert(ftk_review_matches(r, "ELI5"));
	ck_assert(ftk_review_matches(r, "marker"));
	ck_assert(ftk_review_matches(r, "unsupported_sentence"));
	ck_assert(ftk_review_matches(r, "citation"));
	ck_assert(!ftk_review_matches(r, "regex"));	/* it passed */
	ck_assert(!ftk_review_matches(r, "asqa"));
	ck_assert(ftk_review_is_flagged(r));
	cJSON_Delete(r);
}
END_TEST

static Suite *review_suite(void)
{
	Suite *s = suite_create("review");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, kappa_reference);
	tcase_add_test(tc, fold_overrides_and_keeps_provenance);
	tcase_add_test(tc, load_skips_bad_lines_with_place);
	tcase_add_test(tc, active_time_leaves_out_idle_gaps);
	tcase_add_test(tc, wrap_counts_columns);
	tcase_add_test(tc, filter_matches_ids_flags_failures);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(review_suite)
