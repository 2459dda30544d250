/*
 * test_toolparse.c: lib/toolparse against the formats' published shapes
 * (the Hermes function-calling prompt format, Meta's Llama 3.1 JSON tool
 * calling, Mistral's [TOOL_CALLS]) and vLLM's parser behaviour: content is
 * the text before the first call, arguments come back as compact JSON text,
 * an unparsable call leaves everything as content.  The chat templates of
 * the committed Qwen3 tokenizer names its format (Llama 3.0's has no tools).
 */
#include <string.h>
#include <cjson/cJSON.h>
#include "testutil.h"
#include "lib/err.h"
#include "lib/stream.h"
#include "lib/tokenizer.h"
#include "lib/toolparse.h"

static void expect(int fmt, const char *text, int n, const char *content, const char *first_name,
		   const char *first_args)
{
	cJSON *calls;
	char *c;
	int got = ftk_toolparse(fmt, text, "call_", &calls, &c);
	ck_assert_msg(got == n, "%s on '%s': %d calls, want %d", ftk_toolfmt_name(fmt), text, got, n);
	if (content)
		ck_assert_msg(c && !strcmp(c, content), "content '%s', want '%s'", c ? c : "(null)", content);
	else
		ck_assert_ptr_null(c);
	if (n > 0) {
		ck_assert_int_eq(cJSON_GetArraySize(calls), n);
		const cJSON *f = cJSON_GetObjectItem(cJSON_GetArrayItem(calls, 0), "function");
		ck_assert_str_eq(cJSON_GetObjectItem(f, "name")->valuestring, first_name);
		ck_assert_str_eq(cJSON_GetObjectItem(f, "arguments")->valuestring, first_args);
		ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(calls, 0), "type")->valuestring, "function");
		ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(calls, n - 1), "id")->valuestring,
				 n == 1 ? "call_0" : n == 2 ? "call_1" : "call_2");
	} else {
		ck_assert_ptr_null(calls);
	}
	cJSON_Delete(calls);
	free(c);
}

START_TEST(hermes)
{
	int H = FTK_TOOLFMT_HERMES;
	expect(H, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 3}}\n</tool_call>",
	       1, NULL, "get_weather", "{\"city\":\"Paris\",\"days\":3}");
	expect(H, "Let me look.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n"
		  "{\"name\": \"b\", \"arguments\": {\"x\": [1, 2]}}\n</tool_call>",
	       2, "Let me look.\n", "a", "{}");
	/* an unclosed last block is read to the end */
	expect(H, "<tool_call>{\"name\": \"f\", \"arguments\": {\"q\": \"\\u00e9\"}}", 1, NULL, "f", "{\"q\":\"é\"}");
	/* not calls: bad JSON, no name, no block */
	expect(H, "<tool_call>{\"name\": \"f\", \"arguments\": {</tool_call>", 0, NULL, NULL, NULL);
	expect(H, "<tool_call>{\"arguments\": {}}</tool_call>", 0, NULL, NULL, NULL);
	expect(H, "The weather is fine.", 0, NULL, NULL, NULL);
}
END_TEST

START_TEST(llama3_json)
{
	int L = FTK_TOOLFMT_LLAMA3_JSON;
	expect(L, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", 1, NULL, "get_weather",
	       "{\"city\":\"Paris\"}");
	expect(L, "<|python_tag|>{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"arguments\": {\"n\": 1}}",
	       2, NULL, "a", "{}");
	expect(L, "  \n{\"name\": \"f\", \"parameters\": {\"s\": \"x; y\"}}\n", 1, NULL, "f", "{\"s\":\"x; y\"}");
	/* prose, or JSON that is not a call, is content */
	expect(L, "Sure: {\"name\": \"f\", \"parameters\": {}}", 0, NULL, NULL, NULL);
	expect(L, "{\"city\": \"Paris\"}", 0, NULL, NULL, NULL);
	expect(L, "{\"name\": \"f\", \"parameters\": {}} and more", 0, NULL, NULL, NULL);
}
END_TEST

START_TEST(mistral)
{
	int M = FTK_TOOLFMT_MISTRAL;
	expect(M, "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]", 1, NULL,
	       "get_weather", "{\"city\":\"Paris\"}");
	expect(M, "Checking. [TOOL_CALLS][{\"name\": \"a\", \"arguments\": {}}, {\"name\": \"b\", \"arguments\": {}}, "
		  "{\"name\": \"c\", \"arguments\": {}}]",
	       3, "Checking. ", "a", "{}");
	expect(M, "[TOOL_CALLS] not json", 0, NULL, NULL, NULL);
	expect(M, "no calls here", 0, NULL, NULL, NULL);
}
END_TEST

START_TEST(visible_holds_back_calls)
{
	const char *t = "Let me check<tool_ca";
	ck_assert_uint_eq(ftk_toolparse_visible(FTK_TOOLFMT_HERMES, t, strlen(t)), 12);
	t = "Let me check<tool_call>{\"na";
	ck_assert_uint_eq(ftk_toolparse_visible(FTK_TOOLFMT_HERMES, t, strlen(t)), 12);
	t = "a < b and <tools> are fine";
	ck_assert_uint_eq(ftk_toolparse_visible(FTK_TOOLFMT_HERMES, t, strlen(t)), strlen(t));
	t = " {\"name";
	ck_assert_uint_eq(ftk_toolparse_visible(FTK_TOOLFMT_LLAMA3_JSON, t, strlen(t)), 0);
	t = "<|pyth";
	ck_assert_uint_eq(ftk_toolparse_visible(FTK_TOOLFMT_LLAMA3_JSON, t, strlen(t)), 0);
	t = "Hello";
	ck_assert_uint_eq(ftk_toolparse_visible(FTK_TOOLFMT_LLAMA3_JSON, t, strlen(t)), 5);
	t = "ok [TOOL";
	ck_assert_uint_eq(ftk_toolparse_visible(FTK_TOOLFMT_MISTRAL, t, strlen(t)), 3);
	ck_assert_uint_eq(ftk_toolparse_visible(FTK_TOOLFMT_NONE, t, strlen(t)), strlen(t));
}
END_TEST

START_TEST(templates_name_their_format)
{
	static const struct { const char *dir; int fmt; } tk[] = {
		{ "tests/fixtures/tokenizers/qwen3", FTK_TOOLFMT_HERMES },
		/* Llama 3.0's template has no tools; 3.1's writes <|python_tag|> (below) */
		{ "tests/fixtures/tokenizers/llama3", FTK_TOOLFMT_NONE },
		{ "datasets/models/stories260K", FTK_TOOLFMT_NONE },
	};
	for (size_t i = 0; i < sizeof(tk) / sizeof(tk[0]); i++) {
		struct ftk_tokenizer *t;
		struct ftk_error err;
		ck_assert_int_eq(ftk_tokenizer_load(&t, src_path(tk[i].dir), &err), 0);
		ck_assert_msg(ftk_toolfmt_from_template(ftk_tokenizer_chat_template(t)) == tk[i].fmt, "%s",
			      tk[i].dir);
		ftk_tokenizer_free(t);
	}
	ck_assert_int_eq(ftk_toolfmt_from_template("{{ '[TOOL_CALLS]' }}"), FTK_TOOLFMT_MISTRAL);
	ck_assert_int_eq(ftk_toolfmt_from_template("{{- '<|python_tag|>' + tool_call.name }}"),
			 FTK_TOOLFMT_LLAMA3_JSON);
	ck_assert_int_eq(ftk_toolfmt_by_name("llama3_json"), FTK_TOOLFMT_LLAMA3_JSON);
	ck_assert_int_eq(ftk_toolfmt_by_name("xml"), -1);
}
END_TEST

static Suite *toolparse_suite(void)
{
	Suite *s = suite_create("toolparse");
	TCase *t = tcase_create("core");
	/* loads real tokenizers or the model: 6-9 s under ASan on a loaded 2-core machine */
	tcase_set_timeout(t, 60);
	tcase_add_test(t, hermes);
	tcase_add_test(t, llama3_json);
	tcase_add_test(t, mistral);
	tcase_add_test(t, visible_holds_back_calls);
	tcase_add_test(t, templates_name_their_format);
	suite_add_tcase(s, t);
	return s;
}

FTK_TEST_MAIN(toolparse_suite)
