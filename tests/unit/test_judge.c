/*
 * test_judge.c: the judge interface: the llm judge's votes, split-vote flag,
 * token usage and reply cache through a scripted chat function standing in
 * for eval's HTTP client; the citation judge's LLM entailment through the
 * same; and the flags that need every judge's result.
 */
#include <string.h>
#include <unistd.h>
#include "testutil.h"
#include "judges/judge.h"
#include "lib/json.h"

struct fake {
	int calls;
	int fail_seed;		/* votes with this seed fail; -1: none */
	int broken;		/* reply with prose instead of JSON */
	char last_user[4096];
};

static int fake_chat(void *ctx, const cJSON *req, cJSON **resp, struct ftk_error *err)
{
	struct fake *f = ctx;
	f->calls++;
	int seed = (int)cJSON_GetObjectItem(req, "seed")->valuedouble;
	const cJSON *msgs = cJSON_GetObjectItem(req, "messages");
	const char *user = ftk_json_get_str(cJSON_GetArrayItem(msgs, 1), "content");
	snprintf(f->last_user, sizeof(f->last_user), "%s", user);
	ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(req, "response_format"), "type")->valuestring,
			 "json_object");
	const char *content;
	if (f->broken)
		content = "I think it is fine.";
	else if (strstr(user, "Premise:"))	/* entailment: supported iff the premise mentions 1889 */
		content = strstr(user, "1889") && strstr(strstr(user, "Claim:"), "1889") &&
				  strstr(user, "1889") < strstr(user, "Claim:")
			  ? "{\"entailed\": true, \"reason\": \"stated\"}"
			  : "{\"entailed\": false, \"reason\": \"not stated\"}";
	else
		content = seed == f->fail_seed ? "```json\n{\"score\": 0.2, \"pass\": false, \"reason\": \"vague\"}\n```"
					       : "{\"score\": 0.9, \"pass\": true, \"reason\": \"meets it\"}";
	cJSON *r = cJSON_CreateObject();
	cJSON *ch = cJSON_AddArrayToObject(r, "choices");
	cJSON *c0 = cJSON_CreateObject();
	cJSON *m = cJSON_AddObjectToObject(c0, "message");
	cJSON_AddStringToObject(m, "role", "assistant");
	cJSON_AddStringToObject(m, "content", content);
	cJSON_AddItemToArray(ch, c0);
	cJSON *u = cJSON_AddObjectToObject(r, "usage");
	cJSON_AddNumberToObject(u, "prompt_tokens", 100);
	cJSON_AddNumberToObject(u, "completion_tokens", 10);
	*resp = r;
	return 0;
}

static const char *kase_json =
	"{\"id\":\"q1\",\"messages\":[{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"Be brief.\"}]},"
	"{\"role\":\"user\",\"content\":\"Explain tides.\"}],"
	"\"rubric\":\"Mentions the Moon's gravity.\"}";

static void score_llm(struct ftk_judge *j, const cJSON *kase, struct ftk_judge_result *r)
{
	struct ftk_error e;
	struct ftk_judge_output out = { "The Moon pulls the oceans.", NULL, "stop" };
	ftk_judge_result_init(r);
	ck_assert_msg(ftk_judge_score(j, kase, &out, r, &e) == 0, "%s", e.msg);
}

static int has_flag(const struct ftk_judge_result *r, const char *kind)
{
	for (size_t i = 0; i < r->nflags; i++)
		if (!strcmp(r->flags[i].kind, kind))
			return 1;
	return 0;
}

START_TEST(llm_votes_cache_usage)
{
	struct fake f = { 0, 2, 0, "" };
	char dir[] = "judge-cache";
	struct ftk_judge_env env = { fake_chat, &f, NULL, "http://judge-a/v1/chat/completions" };
	cJSON *s = cJSON_Parse("{\"model\":\"judge-1\",\"votes\":3,\"cache\":\"judge-cache\"}");
	struct ftk_judge *j;
	struct ftk_error e;
	ck_assert_msg(ftk_judge_create(&j, "llm", s, &env, &e) == 0, "%s", e.msg);
	cJSON *kase = cJSON_Parse(kase_json);
	struct ftk_judge_result r;
	score_llm(j, kase, &r);
	ck_assert_int_eq(f.calls, 3);
	ck_assert_ptr_nonnull(strstr(f.last_user, "Mentions the Moon's gravity."));
	ck_assert_ptr_nonnull(strstr(f.last_user, "The Moon pulls the oceans."));
	ck_assert_ptr_nonnull(strstr(f.last_user, "system: Be brief.\nuser: Explain tides."));
	ck_assert_double_eq(ftk_judge_find_metric(&r, "llm.pass")->value, 1);
	ck_assert_double_eq_tol(ftk_judge_find_metric(&r, "llm.score")->value, (0.9 + 0.9 + 0.2) / 3, 1e-12);
	ck_assert_double_eq_tol(ftk_judge_find_metric(&r, "llm.agreement")->value, 2.0 / 3, 1e-12);
	ck_assert(has_flag(&r, "split_vote"));
	ck_assert_int_eq(r.usage.calls, 3);
	ck_assert_int_eq(r.usage.prompt_tokens, 300);
	ck_assert_int_eq(r.usage.completion_tokens, 30);
	ftk_judge_result_release(&r);
	/* again: every vote comes from the cache, nothing is spent */
	score_llm(j, kase, &r);
	ck_assert_int_eq(f.calls, 3);
	ck_assert_int_eq(r.usage.cache_hits, 3);
	ck_assert_int_eq(r.usage.prompt_tokens, 0);
	ck_assert(has_flag(&r, "split_vote"));
	ftk_judge_result_release(&r);
	ftk_judge_destroy(j);
	/* the same request to another judge server is asked there, never answered
	   from the first server's replies (issue 17.8) */
	env.endpoint = "http://judge-b/v1/chat/completions";
	ck_assert_int_eq(ftk_judge_create(&j, "llm", s, &env, &e), 0);
	score_llm(j, kase, &r);
	ck_assert_int_eq(f.calls, 6);
	ck_assert_int_eq(r.usage.cache_hits, 0);
	ftk_judge_result_release(&r);
	ftk_judge_destroy(j);
	cJSON_Delete(s);
	ck_assert_int_eq(access(dir, F_OK), 0);

	/* unanimous: no flag; a reply that is not JSON is the judge model's
	   failure (FTK_ENET: a judge error), not a verdict and not the case's
	   fault (FTK_EDATA would make eval call the case defective) */
	struct fake g = { 0, -1, 0, "" };
	env.chat_ctx = &g;
	s = cJSON_Parse("{\"model\":\"judge-1\",\"votes\":1}");
	ck_assert_int_eq(ftk_judge_create(&j, "llm", s, &env, &e), 0);
	score_llm(j, kase, &r);
	ck_assert(!has_flag(&r, "split_vote"));
	ftk_judge_result_release(&r);
	g.broken = 1;
	struct ftk_judge_output out = { "x", NULL, NULL };
	ftk_judge_result_init(&r);
	ck_assert_int_eq(ftk_judge_score(j, kase, &out, &r, &e), FTK_ENET);
	ftk_judge_result_release(&r);
	ftk_judge_destroy(j);
	cJSON_Delete(s);
	cJSON_Delete(kase);
}
END_TEST

START_TEST(citation_llm_entailment)
{
	struct fake f = { 0, -1, 0, "" };
	struct ftk_judge_env env = { fake_chat, &f, NULL, NULL };
	cJSON *s = cJSON_Parse("{\"entailment\":\"llm\",\"model\":\"nli\"}");
	struct ftk_judge *j;
	struct ftk_error e;
	ck_assert_msg(ftk_judge_create(&j, "citation", s, &env, &e) == 0, "%s", e.msg);
	cJSON *kase = cJSON_Parse("{\"id\":\"c\",\"sources\":[\"The tower was finished in 1889.\",\"Bagels are boiled.\"]}");
	struct ftk_judge_output out = { "It was finished in 1889 [1][2]. Bagels are tasty [2].", NULL, "stop" };
	struct ftk_judge_result r;
	ftk_judge_result_init(&r);
	ck_assert_msg(ftk_judge_score(j, kase, &out, &r, &e) == 0, "%s", e.msg);
	ck_assert_double_eq(ftk_judge_find_metric(&r, "citation.recall")->value, 0.5);
	/* sentence 1: [1] precise, [2] irrelevant; sentence 2 unsupported: 1 of 3 */
	ck_assert_double_eq_tol(ftk_judge_find_metric(&r, "citation.precision")->value, 1.0 / 3, 1e-12);
	ck_assert_str_eq(ftk_json_get_str(r.detail, "entailment"), "llm");
	ck_assert_int_gt(r.usage.calls, 0);
	ck_assert_int_eq(r.usage.calls, f.calls);
	ftk_judge_result_release(&r);
	ftk_judge_destroy(j);
	cJSON_Delete(s);
	cJSON_Delete(kase);
	/* without an HTTP client, LLM entailment refuses to start */
	s = cJSON_Parse("{\"entailment\":\"llm\",\"model\":\"nli\"}");
	ck_assert_int_eq(ftk_judge_create(&j, "citation", s, NULL, &e), FTK_EUSAGE);
	cJSON_Delete(s);
}
END_TEST

START_TEST(case_flags)
{
	struct ftk_judge_result a, b, fl;
	ftk_judge_result_init(&a);
	ftk_judge_result_init(&b);
	ftk_judge_result_init(&fl);
	a.primary = (int)ftk_judge_add_metric(&a, "match.correct", 1, FTK_METRIC_SEMANTIC, 1, NULL);
	b.primary = (int)ftk_judge_add_metric(&b, "llm.pass", 0, FTK_METRIC_SEMANTIC, 1, NULL);
	const struct ftk_judge_result *rs[] = { &a, NULL, &b };
	const char *labels[] = { "match", "broken", "llm" };
	struct ftk_judge_output empty = { "  \n", NULL, "stop" };
	ftk_judge_case_flags(&empty, rs, labels, 3, &fl);
	ck_assert(has_flag(&fl, "judges_disagree"));
	ck_assert(has_flag(&fl, "empty_output"));
	ck_assert(!has_flag(&fl, "truncated"));
	ck_assert_ptr_nonnull(strstr(fl.flags[1].reason, "'match' says pass but judge 'llm' says fail"));
	ftk_judge_result_release(&fl);
	/* agreeing judges, tool calls present: nothing to flag */
	ftk_judge_result_init(&fl);
	b.metrics[0].value = 1;
	cJSON *tc = cJSON_Parse("[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]");
	struct ftk_judge_output calls = { NULL, tc, "tool_calls" };
	ftk_judge_case_flags(&calls, rs, labels, 3, &fl);
	ck_assert_uint_eq(fl.nflags, 0);
	cJSON_Delete(tc);
	/* metric values are clamped into [0, 1] */
	ck_assert_double_eq(a.metrics[ftk_judge_add_metric(&a, "x", 7, 0, 0, NULL)].value, 1);
	ftk_judge_result_release(&a);
	ftk_judge_result_release(&b);
	ftk_judge_result_release(&fl);
}
END_TEST

START_TEST(labels)
{
	struct ftk_judge *j;
	struct ftk_error e;
	cJSON *s = cJSON_Parse("{\"label\":\"strict_answer\",\"mode\":\"exact\"}");
	ck_assert_int_eq(ftk_judge_create(&j, "match", s, NULL, &e), 0);
	ck_assert_str_eq(ftk_judge_label(j), "strict_answer");
	ck_assert_str_eq(ftk_judge_kind(j), "match");
	cJSON *kase = cJSON_Parse("{\"id\":\"l\",\"expected\":{\"answer\":\"x\"}}");
	struct ftk_judge_output out = { "x", NULL, NULL };
	struct ftk_judge_result r;
	ftk_judge_result_init(&r);
	ck_assert_int_eq(ftk_judge_score(j, kase, &out, &r, &e), 0);
	ck_assert_ptr_nonnull(ftk_judge_find_metric(&r, "strict_answer.correct"));
	ftk_judge_result_release(&r);
	cJSON_Delete(kase);
	cJSON_Delete(s);
	ftk_judge_destroy(j);
	s = cJSON_Parse("{\"label\":\"a.b\"}");
	ck_assert_int_eq(ftk_judge_create(&j, "match", s, NULL, &e), FTK_EDATA);
	ck_assert_str_eq(e.field, "settings.label");
	cJSON_Delete(s);
}
END_TEST

/*
 * Hostile inputs: real outputs mutated byte by byte (flips, cuts, inserted
 * brackets, quotes, markers, invalid UTF-8) go through every offline judge.
 * Each must return 0 (a score) without crashing or leaking; under SAN=1 this
 * is where memory errors in the parsers would show.
 */
static unsigned long rng_state = 88172645463325252UL;
static unsigned long rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

START_TEST(hostile_inputs)
{
	static const char *const seeds[] = {
		"[calculate_area(base=10, height=5.0, unit='cm', tags=[1, (2, 3)], d={'k': None})]",
		"<tool_call>{\"name\": \"f\", \"arguments\": {\"x\": [1, 2.5e3, \"\\u00e9\"]}}</tool_call>",
		"Mawsynram, India has 11,872 mm of rain [1][2]. Dr. Smith said \"no.\" [3-4] It is 3.5 km\xc2\xb9.",
		"```json\n{\"name\": \"Ada\", \"age\": 36, \"tags\": [\"a\"]}\n```",
		"The answer is (C). Answer: D",
	};
	static const char inserts[] = "[](){}\"',.=:\\\n0123456789^-\xe2\x80\x9c\xc2\xb9\xff";
	const char *judges[] = { "toolcall", "citation", "json", "match", "regex" };
	const char *settings[] = { NULL, NULL, "{\"schema\":{\"type\":\"object\",\"required\":[\"name\"]}}",
				   "{\"mode\":\"choice\"}", "{\"pattern\":\"\\\\[\\\\d+\\\\]\"}" };
	cJSON *kase = cJSON_Parse(
		"{\"id\":\"h\",\"tools\":[{\"name\":\"calculate_area\",\"parameters\":{\"type\":\"dict\","
		"\"properties\":{\"base\":{\"type\":\"integer\"},\"height\":{\"type\":\"float\"}},\"required\":[\"base\"]}}],"
		"\"expected\":{\"answer\":\"C\",\"tool_calls\":[{\"calculate_area\":{\"base\":[10],\"height\":[5.0]}}]},"
		"\"sources\":[\"Mawsynram in India gets 11,872 mm of rain.\",{\"title\":\"T\",\"text\":\"Dr. Smith said no.\"}]}");
	struct ftk_judge *j[5];
	struct ftk_error e;
	for (int k = 0; k < 5; k++) {
		cJSON *s = settings[k] ? cJSON_Parse(settings[k]) : NULL;
		ck_assert_msg(ftk_judge_create(&j[k], judges[k], s, NULL, &e) == 0, "%s: %s", judges[k], e.msg);
		cJSON_Delete(s);
	}
	size_t runs = 0;
	for (size_t sd = 0; sd < sizeof(seeds) / sizeof(seeds[0]); sd++) {
		for (int it = 0; it < 1000; it++) {
			char buf[512];
			size_t n = strlen(seeds[sd]);
			memcpy(buf, seeds[sd], n + 1);
			int muts = 1 + (int)(rnd() % 4);
			for (int m = 0; m < muts && n > 0; m++) {
				size_t at = rnd() % n;
				switch (rnd() % 3) {
				case 0:	/* replace */
					buf[at] = inserts[rnd() % (sizeof(inserts) - 1)];
					break;
				case 1:	/* cut */
					buf[at] = 0;
					n = at;
					break;
				default:	/* insert */
					if (n + 2 < sizeof(buf)) {
						memmove(buf + at + 1, buf + at, n - at + 1);
						buf[at] = inserts[rnd() % (sizeof(inserts) - 1)];
						n++;
					}
				}
			}
			for (int k = 0; k < 5; k++) {
				struct ftk_judge_output out = { buf, NULL, "stop" };
				struct ftk_judge_result r;
				ftk_judge_result_init(&r);
				int rc = ftk_judge_score(j[k], kase, &out, &r, &e);
				ck_assert_msg(rc == 0, "%s on '%s': %d %s", judges[k], buf, rc, e.msg);
				cJSON *js = ftk_judge_result_to_json(&r);
				ck_assert_ptr_nonnull(js);
				cJSON_Delete(js);
				ftk_judge_result_release(&r);
				runs++;
			}
		}
	}
	ck_assert_uint_eq(runs, 5 * 1000 * 5);
	for (int k = 0; k < 5; k++)
		ftk_judge_destroy(j[k]);
	cJSON_Delete(kase);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("judge");
	TCase *t = tcase_create("judge");
	tcase_add_test(t, llm_votes_cache_usage);
	tcase_add_test(t, citation_llm_entailment);
	tcase_add_test(t, case_flags);
	tcase_add_test(t, labels);
	tcase_add_test(t, hostile_inputs);
	tcase_set_timeout(t, 60);
	suite_add_tcase(s, t);
	return s;
}

FTK_TEST_MAIN(suite)
