/*
 * test_match.c: the match judge (exact, normalized, contains, numeric,
 * choice; any of several answers), the regex judge, and the surface twin
 * they report beside the verdict.
 */
#include <string.h>
#include "testutil.h"
#include "judges/judge.h"
#include "judges/text.h"
#include "lib/strbuf.h"

static double run(const char *judge, const char *settings, const char *expected,
		  const char *text, const char *metric)
{
	struct ftk_judge *j;
	struct ftk_error e;
	cJSON *s = settings ? cJSON_Parse(settings) : NULL;
	ck_assert_msg(ftk_judge_create(&j, judge, s, NULL, &e) == 0, "%s", e.msg);
	cJSON_Delete(s);
	cJSON *kase = cJSON_Parse(expected);
	ck_assert_ptr_nonnull(kase);
	struct ftk_judge_output out = { text, NULL, "stop" };
	struct ftk_judge_result r;
	ftk_judge_result_init(&r);
	ck_assert_msg(ftk_judge_score(j, kase, &out, &r, &e) == 0, "%s", e.msg);
	const struct ftk_metric *m = ftk_judge_find_metric(&r, metric);
	ck_assert_msg(m != NULL, "no metric %s", metric);
	double v = m->value;
	ck_assert_int_eq(r.primary >= 0, 1);
	ftk_judge_result_release(&r);
	cJSON_Delete(kase);
	ftk_judge_destroy(j);
	return v;
}

#define CORRECT(settings, exp, text) run("match", settings, exp, text, "match.correct")

START_TEST(normalize)
{
	struct strbuf sb = STRBUF_INIT;
	ftk_text_normalize("  The  Eiffel-Tower!  ", &sb);
	ck_assert_str_eq(sb.buf, "eiffeltower");
	strbuf_reset(&sb);
	ftk_text_normalize("An apple, a PEAR and the Plum.", &sb);
	ck_assert_str_eq(sb.buf, "apple pear and plum");
	strbuf_reset(&sb);
	ftk_text_normalize("\xc3\x87" "a va \xe2\x80\x9c" "bien\xe2\x80\x9d", &sb);	/* Ça va “bien” */
	ck_assert_str_eq(sb.buf, "ca va bien");
	strbuf_release(&sb);
}
END_TEST

START_TEST(modes)
{
	const char *paris = "{\"id\":\"1\",\"expected\":{\"answer\":\"Paris\"}}";
	ck_assert_double_eq(CORRECT(NULL, paris, "paris."), 1);
	ck_assert_double_eq(CORRECT(NULL, paris, "The city is Paris."), 0);
	ck_assert_double_eq(CORRECT("{\"mode\":\"exact\"}", paris, "paris."), 0);
	ck_assert_double_eq(CORRECT("{\"mode\":\"exact\"}", paris, " Paris\n"), 1);
	ck_assert_double_eq(CORRECT("{\"mode\":\"contains\"}", paris, "The city is Paris."), 1);
	ck_assert_double_eq(CORRECT("{\"mode\":\"contains\"}", paris, "The city is Parisian."), 0);
	/* any of several accepted answers */
	const char *several = "{\"id\":\"2\",\"expected\":{\"answer\":[\"NYC\",\"New York City\"]}}";
	ck_assert_double_eq(CORRECT(NULL, several, "new york city"), 1);
	ck_assert_double_eq(CORRECT(NULL, several, "Boston"), 0);
	/* the surface twin: exact string equality */
	ck_assert_double_eq(run("match", NULL, paris, "paris.", "match.exact"), 0);
	ck_assert_double_eq(run("match", NULL, paris, "Paris", "match.exact"), 1);
	/* reasoning blocks are not the answer */
	ck_assert_double_eq(CORRECT(NULL, paris, "<think>London? No.</think>Paris"), 1);
}
END_TEST

START_TEST(numeric)
{
	const char *n = "{\"id\":\"n\",\"expected\":{\"answer\":1234.5}}";
	ck_assert_double_eq(CORRECT("{\"mode\":\"numeric\"}", n, "So the total is $1,234.50."), 1);
	ck_assert_double_eq(CORRECT("{\"mode\":\"numeric\"}", n, "First 12, then 1234.6"), 0);
	ck_assert_double_eq(CORRECT("{\"mode\":\"numeric\",\"abs_tol\":0.2}", n, "about 1234.6"), 1);
	ck_assert_double_eq(CORRECT("{\"mode\":\"numeric\",\"rel_tol\":0.01}", n, "1240"), 1);
	ck_assert_double_eq(CORRECT("{\"mode\":\"numeric\"}", n, "no idea"), 0);
	const char *neg = "{\"id\":\"m\",\"expected\":{\"answer\":\"-3\"}}";
	ck_assert_double_eq(CORRECT("{\"mode\":\"numeric\"}", neg, "x = -3"), 1);
	ck_assert_double_eq(CORRECT("{\"mode\":\"numeric\"}", neg, "x = 3"), 0);
	double v;
	ck_assert_int_eq(ftk_text_last_number("v2 is 3.5e2 units", &v), 1);
	ck_assert_double_eq(v, 350);
}
END_TEST

START_TEST(choice)
{
	const char *c = "{\"id\":\"c\",\"expected\":{\"answer\":\"C\"}}";
	const char *s = "{\"mode\":\"choice\"}";
	ck_assert_double_eq(CORRECT(s, c, "The answer is (C)."), 1);
	ck_assert_double_eq(CORRECT(s, c, "Answer: C"), 1);
	ck_assert_double_eq(CORRECT(s, c, "C) because water boils"), 1);
	ck_assert_double_eq(CORRECT(s, c, "I think (B) fits, not A."), 0);
	ck_assert_double_eq(CORRECT(s, c, "Let me think.\nA is wrong, B too.\nC"), 1);
	ck_assert_double_eq(CORRECT(s, c, "the answer is b"), 0);
	ck_assert_double_eq(CORRECT(s, c, "the answer is c"), 1);
	ck_assert_double_eq(CORRECT(s, c, "no letter here"), 0);
	/* the last stated answer wins: models correct themselves */
	ck_assert_double_eq(CORRECT(s, c, "The answer is A. Wait, no: the answer is C."), 1);
	ck_assert_double_eq(CORRECT(s, c, "The answer is C. Wait, no: the answer is A."), 0);
}
END_TEST

START_TEST(regex_surface)
{
	const char *k = "{\"id\":\"r\",\"expected\":{\"answer\":\"Paris\"}}";
	ck_assert_double_eq(run("regex", "{\"pattern\":\"^Answer: \\\\w+\"}", k, "Answer: Paris", "regex.match"), 1);
	ck_assert_double_eq(run("regex", "{\"pattern\":\"^Answer: \\\\w+\"}", k, "It is Paris", "regex.match"), 0);
	ck_assert_double_eq(run("regex", "{\"pattern\":\"sorry\",\"flags\":\"i\",\"expect\":\"no_match\"}", k,
				"Sorry, I cannot", "regex.match"), 0);
	/* the regex misses a correct answer: the case flags say so */
	struct ftk_judge *jr, *jm;
	struct ftk_error e;
	cJSON *s = cJSON_Parse("{\"pattern\":\"^Answer: \",\"twin\":\"match.correct\"}");
	ck_assert_int_eq(ftk_judge_create(&jr, "regex", s, NULL, &e), 0);
	cJSON_Delete(s);
	s = cJSON_Parse("{\"mode\":\"contains\"}");
	ck_assert_int_eq(ftk_judge_create(&jm, "match", s, NULL, &e), 0);
	cJSON_Delete(s);
	cJSON *kase = cJSON_Parse(k);
	struct ftk_judge_output out = { "It is Paris.", NULL, "length" };
	struct ftk_judge_result r1, r2, fl;
	ftk_judge_result_init(&r1);
	ftk_judge_result_init(&r2);
	ftk_judge_result_init(&fl);
	ck_assert_int_eq(ftk_judge_score(jr, kase, &out, &r1, &e), 0);
	ck_assert_int_eq(ftk_judge_score(jm, kase, &out, &r2, &e), 0);
	ck_assert_int_eq(r1.metrics[0].kind, FTK_METRIC_SURFACE);
	ck_assert_str_eq(r1.metrics[0].twin, "match.correct");
	const struct ftk_judge_result *rs[] = { &r1, &r2 };
	const char *labels[] = { "regex", "match" };
	ftk_judge_case_flags(&out, rs, labels, 2, &fl);
	int surf = 0, trunc = 0;
	for (size_t i = 0; i < fl.nflags; i++) {
		surf += !strcmp(fl.flags[i].kind, "surface_semantic_disagree");
		trunc += !strcmp(fl.flags[i].kind, "truncated");
	}
	ck_assert_int_eq(surf, 1);
	ck_assert_int_eq(trunc, 1);
	cJSON *js = ftk_judge_result_to_json(&r2);
	ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(js, "pass")));
	ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(js, "metrics"),
			 "match.exact"), "kind")->valuestring, "surface");
	cJSON_Delete(js);
	ftk_judge_result_release(&r1);
	ftk_judge_result_release(&r2);
	ftk_judge_result_release(&fl);
	cJSON_Delete(kase);
	ftk_judge_destroy(jr);
	ftk_judge_destroy(jm);
}
END_TEST

START_TEST(bad_settings_and_cases)
{
	struct ftk_judge *j;
	struct ftk_error e;
	cJSON *s = cJSON_Parse("{\"mode\":\"fuzzy\"}");
	ck_assert_int_eq(ftk_judge_create(&j, "match", s, NULL, &e), FTK_EDATA);
	ck_assert_str_eq(e.field, "settings.mode");
	cJSON_Delete(s);
	s = cJSON_Parse("{\"tolerance\":1}");
	ck_assert_int_eq(ftk_judge_create(&j, "match", s, NULL, &e), FTK_EDATA);
	ck_assert_str_eq(e.msg, "unknown setting 'tolerance'");
	cJSON_Delete(s);
	s = cJSON_Parse("{\"pattern\":\"(\"}");
	ck_assert_int_eq(ftk_judge_create(&j, "regex", s, NULL, &e), FTK_EDATA);
	ck_assert_str_eq(e.field, "settings.pattern");
	cJSON_Delete(s);
	ck_assert_int_eq(ftk_judge_create(&j, "telepathy", NULL, NULL, &e), FTK_ENOTFOUND);
	/* the llm judge needs an HTTP client */
	s = cJSON_Parse("{\"model\":\"m\"}");
	ck_assert_int_eq(ftk_judge_create(&j, "llm", s, NULL, &e), FTK_EUSAGE);
	cJSON_Delete(s);
	/* a case without expected.answer is a data error, not a wrong answer */
	ck_assert_int_eq(ftk_judge_create(&j, "match", NULL, NULL, &e), 0);
	cJSON *kase = cJSON_Parse("{\"id\":\"x\"}");
	struct ftk_judge_output out = { "a", NULL, NULL };
	struct ftk_judge_result r;
	ftk_judge_result_init(&r);
	ck_assert_int_eq(ftk_judge_score(j, kase, &out, &r, &e), FTK_EDATA);
	ck_assert_str_eq(e.field, "expected.answer");
	ftk_judge_result_release(&r);
	cJSON_Delete(kase);
	ftk_judge_destroy(j);
	/* every registered judge has a name and a summary */
	size_t n = 0;
	for (const struct ftk_judge_ops *o; (o = ftk_judge_registry(n)); n++)
		ck_assert(o->name[0] && o->summary[0]);
	ck_assert_uint_eq(n, 7);	/* match regex json toolcall citation llm extract */
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("match");
	TCase *t = tcase_create("match");
	tcase_add_test(t, normalize);
	tcase_add_test(t, modes);
	tcase_add_test(t, numeric);
	tcase_add_test(t, choice);
	tcase_add_test(t, regex_surface);
	tcase_add_test(t, bad_settings_and_cases);
	suite_add_tcase(s, t);
	return s;
}

FTK_TEST_MAIN(suite)
