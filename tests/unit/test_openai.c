/*
 * test_openai.c: lib/openai, the chat-completions protocol eval, the judges
 * and ftk-serve share: URLs, request bodies, replies, servers' error
 * messages, generation settings and the reply cache.
 */
#include <string.h>
#include <unistd.h>
#include "lib/json.h"
#include "lib/openai.h"
#include "testutil.h"

START_TEST(urls)
{
	static const struct {
		const char *in, *chat, *pub;
	} t[] = {
		{ "http://h:8000", "http://h:8000/v1/chat/completions", "http://h:8000/v1/chat/completions" },
		{ "http://h:8000/v1/", "http://h:8000/v1/chat/completions", "http://h:8000/v1/chat/completions" },
		{ "https://u:pw@h/x/chat/completions?key=sk-1", "https://u:pw@h/x/chat/completions?key=sk-1",
		  "https://h/x/chat/completions" },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char *c = ftk_openai_chat_url(t[i].in), *p = ftk_openai_public_url(t[i].in);
		ck_assert_str_eq(c, t[i].chat);
		ck_assert_str_eq(p, t[i].pub);
		free(c);
		free(p);
	}
}
END_TEST

START_TEST(request_seed_offset)
{
	cJSON *msgs = cJSON_Parse("[{\"role\":\"user\",\"content\":\"hi\"}]");
	cJSON *params = cJSON_Parse("{\"temperature\":0.5,\"seed\":10}");
	cJSON *empty = cJSON_CreateArray();
	char *b = ftk_openai_chat_request("m", msgs, empty, params, 3);
	ck_assert_str_eq(b, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
			    "\"temperature\":0.5,\"seed\":13}");
	free(b);
	cJSON_Delete(msgs);
	cJSON_Delete(params);
	cJSON_Delete(empty);
}
END_TEST

START_TEST(replies)
{
	cJSON *v = cJSON_Parse("{\"choices\":[{\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
			       "{\"type\":\"text\",\"text\":\"b\"}],\"tool_calls\":{\"x\":1}},"
			       "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":7}}");
	struct ftk_openai_reply r;
	ck_assert_int_eq(ftk_openai_reply_read(v, &r), 0);
	ck_assert_str_eq(r.text, "ab");
	ck_assert(cJSON_IsObject(r.tool_calls));	/* kept as given: a defect for the caller */
	ck_assert_str_eq(r.finish_reason, "stop");
	ck_assert_int_eq(r.prompt_tokens, 7);
	ck_assert_int_eq(r.completion_tokens, -1);
	ftk_openai_reply_release(&r);
	cJSON_Delete(v);
	v = cJSON_Parse("{\"choices\":[]}");
	ck_assert_int_eq(ftk_openai_reply_read(v, &r), FTK_EDATA);
	ftk_openai_reply_release(&r);
	cJSON_Delete(v);
	ck_assert_int_eq(ftk_openai_chat_valid("{\"choices\":[{\"message\":{}}]}", 29, NULL), 0);
	ck_assert_int_ne(ftk_openai_chat_valid("{\"choices\":[{}]}", 16, NULL), 0);
	ck_assert_int_ne(ftk_openai_chat_valid("{\"choi", 6, NULL), 0);
}
END_TEST

START_TEST(error_messages)
{
	struct strbuf sb = STRBUF_INIT;
	const char *b = "{\"error\":{\"message\":\"the prompt is 2560 tokens, the context 512\",\"type\":\"x\"}}";
	ck_assert_str_eq(ftk_openai_error_message(b, strlen(b), 2048, &sb),
			 "the prompt is 2560 tokens, the context 512");
	strbuf_reset(&sb);
	b = "{\"detail\":\"Not Found\"}";
	ck_assert_str_eq(ftk_openai_error_message(b, strlen(b), 2048, &sb), "Not Found");
	strbuf_reset(&sb);
	b = "Bad Gateway\n";
	ck_assert_str_eq(ftk_openai_error_message(b, strlen(b), 2048, &sb), "Bad Gateway");
	/* cut at a character boundary; invalid bytes become U+FFFD */
	strbuf_reset(&sb);
	b = "ab\xC3\xA9" "cd";
	ck_assert_str_eq(ftk_openai_error_message(b, strlen(b), 3, &sb), "ab");
	strbuf_reset(&sb);
	b = "a\xFF" "b";
	ck_assert_str_eq(ftk_openai_error_message(b, strlen(b), 100, &sb), "a\xEF\xBF\xBD" "b");
	strbuf_release(&sb);
}
END_TEST

START_TEST(generation_settings)
{
	struct ftk_openai_gen g = { .temperature = 1, .top_p = 1, .n = 1 };
	struct ftk_error e;
	cJSON *v = cJSON_Parse("{\"temperature\":0,\"max_completion_tokens\":9,\"seed\":4,"
			       "\"stop\":[\"a\",\"b\"],\"top_k\":5,\"stream\":true,\"other\":1}");
	ck_assert_int_eq(ftk_openai_gen_read(v, &g, &e), 0);
	ck_assert(g.temperature == 0 && g.top_p == 1 && g.max_tokens == 9 && g.top_k == 5);
	ck_assert(g.has_seed && g.seed == 4 && g.n_stop == 2 && g.stream);
	ck_assert_str_eq(g.stop[1], "b");
	cJSON_Delete(v);
	/* the extremes a seed may take: a negative one wraps as a 64-bit integer */
	v = cJSON_Parse("{\"seed\":-1,\"max_tokens\":1e6,\"n\":16}");
	ck_assert_int_eq(ftk_openai_gen_read(v, &g, &e), 0);
	ck_assert(g.seed == UINT64_MAX && g.max_tokens == 1000000 && g.n == 16);
	cJSON_Delete(v);
	v = cJSON_Parse("{\"seed\":1e19}");
	ck_assert_int_eq(ftk_openai_gen_read(v, &g, &e), 0);
	ck_assert(g.seed == 10000000000000000000ull);
	cJSON_Delete(v);
	static const struct {
		const char *req, *field, *msg;
	} bad[] = {
		{ "{\"temperature\":\"hot\"}", "temperature", "temperature must be a number" },
		{ "{\"temperature\":2.5}", "temperature", "temperature is out of range" },
		{ "{\"top_p\":0}", "top_p", "top_p is out of range" },
		{ "{\"n\":17}", "n", "n is out of range" },
		{ "{\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", "stop", "stop must be a string or up to 4 strings" },
		{ "{\"stop\":7}", "stop", "stop must be a string or up to 4 strings" },
		/* issue 18.7: ranges are checked before any float-to-int conversion
		 * (UBSan reports the conversion of 1e300 to long) */
		{ "{\"max_tokens\":1e300}", "max_tokens", "max_tokens is out of range" },
		{ "{\"max_tokens\":2.5}", "max_tokens", "max_tokens is out of range" },
		{ "{\"seed\":1e300}", "seed", "seed is out of range" },
		{ "{\"seed\":-1e19}", "seed", "seed is out of range" },
		{ "{\"seed\":0.5}", "seed", "seed is out of range" },
		{ "{\"n\":1e999}", "n", "n is out of range" },
		{ "{\"n\":-1e999}", "n", "n is out of range" },
		{ "{\"n\":1.5}", "n", "n is out of range" },
		{ "{\"top_k\":1e10}", "top_k", "top_k is out of range" },
		{ "{\"top_k\":-3}", "top_k", "top_k is out of range" },
		{ "{\"temperature\":1e999}", "temperature", "temperature is out of range" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = cJSON_Parse(bad[i].req);
		ck_assert_int_eq(ftk_openai_gen_read(v, &g, &e), FTK_EDATA);
		ck_assert_str_eq(e.field, bad[i].field);
		ck_assert_str_eq(e.msg, bad[i].msg);
		cJSON_Delete(v);
	}
}
END_TEST

/* Issue 17.8: the reply cache is keyed by the server as well as the body. */
START_TEST(cache_keyed_by_endpoint)
{
	const char *reply = "{\"choices\":[{\"message\":{\"content\":\"yes\"}}]}";
	const char *body = "{\"model\":\"m\",\"messages\":[]}";
	ftk_openai_cache_put("c", "http://a/v1/chat/completions", body, 0, reply, strlen(reply));
	char *hit = ftk_openai_cache_get("c", "http://a/v1/chat/completions", body, 0);
	ck_assert_ptr_nonnull(hit);
	ck_assert_str_eq(hit, reply);
	free(hit);
	ck_assert_ptr_null(ftk_openai_cache_get("c", "http://b/v1/chat/completions", body, 0));
	ck_assert_ptr_null(ftk_openai_cache_get("c", "http://a/v1/chat/completions", body, 1));
	ck_assert_ptr_null(ftk_openai_cache_get(NULL, "http://a/v1/chat/completions", body, 0));
	/* a stored reply that is not a chat completion is no hit */
	ftk_openai_cache_put("c", "x", body, 0, "{}", 2);
	ck_assert_ptr_null(ftk_openai_cache_get("c", "x", body, 0));
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("openai");
	TCase *t = tcase_create("openai");
	tcase_add_test(t, urls);
	tcase_add_test(t, request_seed_offset);
	tcase_add_test(t, replies);
	tcase_add_test(t, error_messages);
	tcase_add_test(t, generation_settings);
	tcase_add_test(t, cache_keyed_by_endpoint);
	suite_add_tcase(s, t);
	return s;
}

FTK_TEST_MAIN(suite)
