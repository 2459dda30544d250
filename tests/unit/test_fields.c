/*
 * test_fields.c: walking string values in a record's own bytes, editing
 * them in place, and field patterns.
 */
#include <string.h>
#include "testutil.h"
#include "lib/json.h"
#include "prep/fields.h"

struct seen {
	struct strbuf log;
};

static int log_visit(void *ctx, const char *path, const char *val, size_t len,
		     struct strbuf *repl)
{
	struct seen *s = ctx;
	(void)repl;
	strbuf_addf(&s->log, "%s=%.*s;", path, (int)len, val);
	return 0;
}

START_TEST(paths_and_decoding)
{
	const char *j = "{\"id\": 18446744073709551615, \"messages\": [{\"role\":\"user\","
			"\"content\":\"h\\u00e9llo \\ud83d\\ude00 \\\"q\\\" \\n\"}],"
			"\"meta\":{\"tags\":[\"a\",\"b\"],\"k\\u0065y\":\"v\"},\"n\":null}";
	struct seen s = { STRBUF_INIT };
	ck_assert_int_eq(ftk_fields_walk(j, strlen(j), log_visit, &s, NULL, NULL), 0);
	ck_assert_str_eq(s.log.buf,
			 "messages[0].role=user;messages[0].content=h\xc3\xa9llo \xf0\x9f\x98\x80 "
			 "\"q\" \n;meta.tags[0]=a;meta.tags[1]=b;meta.key=v;");
	strbuf_release(&s.log);
}
END_TEST

static int upper_content(void *ctx, const char *path, const char *val, size_t len,
			 struct strbuf *repl)
{
	(void)ctx;
	if (!ftk_field_match("messages[*].content", path))
		return 0;
	for (size_t i = 0; i < len; i++)
		strbuf_addch(repl, val[i] >= 'a' && val[i] <= 'z' ? val[i] - 32 : val[i]);
	strbuf_addstr(repl, " \"x\"\t");
	return 1;
}

START_TEST(edit_keeps_other_bytes)
{
	const char *j = "{ \"id\" : 12345678901234567890123, \"x\": 1.50e+3,\n"
			"  \"messages\": [ {\"role\": \"user\", \"content\": \"hi \\u00e9\"} ] }";
	struct strbuf out = STRBUF_INIT;
	ck_assert_int_eq(ftk_fields_walk(j, strlen(j), upper_content, NULL, &out, NULL), 1);
	ck_assert_str_eq(out.buf, "{ \"id\" : 12345678901234567890123, \"x\": 1.50e+3,\n"
				  "  \"messages\": [ {\"role\": \"user\", \"content\": \"HI "
				  "\xc3\xa9 \\\"x\\\"\\t\"} ] }");
	cJSON *v = NULL;
	ck_assert_int_eq(ftk_json_parse(out.buf, out.len, &v, NULL), 0);
	cJSON_Delete(v);
	/* nothing to change: identical bytes */
	strbuf_reset(&out);
	const char *k = "{\"a\":[1,2,{\"b\":\"c\"}],\"d\":\"\\u0041\"}";
	ck_assert_int_eq(ftk_fields_walk(k, strlen(k), upper_content, NULL, &out, NULL), 0);
	ck_assert_str_eq(out.buf, k);
	strbuf_release(&out);
}
END_TEST

START_TEST(get_raw)
{
	const char *j = "{\"conv\":{\"id\":\"a\\u0062c\"},\"n\":12345678901234567890,\"l\":[1,{\"z\":true}]}";
	const char *raw;
	size_t n;
	ck_assert_int_eq(ftk_fields_get_raw(j, strlen(j), "conv.id", &raw, &n, NULL), 1);
	ck_assert_int_eq((int)n, 10);
	ck_assert(!strncmp(raw, "\"a\\u0062c\"", n));
	ck_assert_int_eq(ftk_fields_get_raw(j, strlen(j), "n", &raw, &n, NULL), 1);
	ck_assert(!strncmp(raw, "12345678901234567890", n) && n == 20);
	ck_assert_int_eq(ftk_fields_get_raw(j, strlen(j), "l[1].z", &raw, &n, NULL), 1);
	ck_assert(!strncmp(raw, "true", n));
	ck_assert_int_eq(ftk_fields_get_raw(j, strlen(j), "conv", &raw, &n, NULL), 1);
	ck_assert(!strncmp(raw, "{\"id\":\"a\\u0062c\"}", n));
	ck_assert_int_eq(ftk_fields_get_raw(j, strlen(j), "missing", &raw, &n, NULL), 0);
}
END_TEST

START_TEST(malformed)
{
	static const char *const bad[] = { "{\"a\":", "{\"a\" 1}", "[1,2", "{\"a\":\"x}", "{\"a\":1}x",
					   "{\"a\":\"\\q\"}", "" };
	struct seen s = { STRBUF_INIT };
	struct ftk_error e;
	for (size_t i = 0; i < FTK_ARRAY_SIZE(bad); i++)
		ck_assert_msg(ftk_fields_walk(bad[i], strlen(bad[i]), log_visit, &s, NULL, &e) ==
				      FTK_EDATA,
			      "'%s' was accepted", bad[i]);
	strbuf_release(&s.log);
	/* deep nesting is an error, not a stack overflow */
	struct strbuf deep = STRBUF_INIT;
	for (int i = 0; i < 5000; i++)
		strbuf_addch(&deep, '[');
	ck_assert_int_eq(ftk_fields_walk(deep.buf, deep.len, log_visit, NULL, NULL, NULL), FTK_EDATA);
	strbuf_release(&deep);
}
END_TEST

START_TEST(patterns)
{
	ck_assert(ftk_field_match("messages[*].content", "messages[3].content"));
	ck_assert(ftk_field_match("messages[*].content", "messages[3].content[0].text"));
	ck_assert(!ftk_field_match("messages[*].content", "messages[3].role"));
	ck_assert(ftk_field_match("messages", "messages[0].content"));
	ck_assert(!ftk_field_match("messages", "messages_extra"));
	ck_assert(ftk_field_match("*.text", "meta.text"));
	ck_assert(!ftk_field_match("*.text", "text"));
	ck_assert(ftk_field_match("messages[1]", "messages[1].content"));
	ck_assert(!ftk_field_match("messages[1]", "messages[10].content"));
	ck_assert(!ftk_field_match("text.x", "text"));
}
END_TEST

static Suite *fields_suite(void)
{
	Suite *s = suite_create("fields");
	TCase *tc = tcase_create("walk");
	tcase_add_test(tc, paths_and_decoding);
	tcase_add_test(tc, edit_keeps_other_bytes);
	tcase_add_test(tc, get_raw);
	tcase_add_test(tc, malformed);
	tcase_add_test(tc, patterns);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(fields_suite)
