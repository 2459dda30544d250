/*
 * test_jsonschema.c: the JSON Schema validator and the json judge.
 */
#include <string.h>
#include "testutil.h"
#include "judges/judge.h"
#include "judges/jsonschema.h"

static int check(const char *schema, const char *value, struct ftk_error *e)
{
	cJSON *s = cJSON_Parse(schema), *v = cJSON_Parse(value);
	ck_assert_msg(s && v, "bad test JSON");
	int rc = ftk_jsonschema_validate(s, v, e);
	cJSON_Delete(s);
	cJSON_Delete(v);
	return rc;
}

#define OK(s, v) ck_assert_msg(check(s, v, &e) == 0, "%s rejected %s: %s %s", s, v, e.field, e.msg)
#define BAD(s, v, path, kw)                                                              \
	do {                                                                             \
		ck_assert_msg(check(s, v, &e) == FTK_EMISMATCH, "%s accepted %s", s, v); \
		ck_assert_str_eq(e.field, path);                                         \
		ck_assert_msg(!strncmp(e.msg, kw ":", strlen(kw) + 1), "msg '%s'", e.msg); \
	} while (0)

START_TEST(types)
{
	struct ftk_error e;
	OK("{\"type\":\"integer\"}", "3");
	OK("{\"type\":\"integer\"}", "3.0");
	BAD("{\"type\":\"integer\"}", "3.5", "$", "type");
	OK("{\"type\":\"number\"}", "3.5");
	OK("{\"type\":\"float\"}", "3");
	BAD("{\"type\":\"string\"}", "3", "$", "type");
	OK("{\"type\":[\"string\",\"null\"]}", "null");
	BAD("{\"type\":[\"string\",\"null\"]}", "true", "$", "type");
	OK("{\"type\":\"dict\"}", "{}");
	OK("{\"type\":\"tuple\"}", "[1]");
	OK("{\"type\":\"any\"}", "[1]");
	OK("{\"type\":\"boolean\"}", "false");
	ck_assert_int_eq(check("{\"type\":\"colour\"}", "1", &e), FTK_EDATA);
	ck_assert_str_eq(e.field, "schema.type");
}
END_TEST

START_TEST(objects_and_arrays)
{
	struct ftk_error e;
	const char *s = "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"minLength\":2},"
			"\"days\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":14},"
			"\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"b\"]},\"maxItems\":2,\"uniqueItems\":true}},"
			"\"required\":[\"city\"],\"additionalProperties\":false}";
	OK(s, "{\"city\":\"Oslo\",\"days\":3,\"tags\":[\"a\",\"b\"]}");
	BAD(s, "{\"days\":3}", "$", "required");
	BAD(s, "{\"city\":\"O\"}", "$.city", "minLength");
	OK(s, "{\"city\":\"\xc3\x85s\"}");	/* two code points, three bytes */
	BAD(s, "{\"city\":\"Oslo\",\"days\":0}", "$.days", "minimum");
	BAD(s, "{\"city\":\"Oslo\",\"days\":15}", "$.days", "maximum");
	BAD(s, "{\"city\":\"Oslo\",\"days\":2.5}", "$.days", "type");
	BAD(s, "{\"city\":\"Oslo\",\"tags\":[\"a\",\"c\"]}", "$.tags[1]", "enum");
	BAD(s, "{\"city\":\"Oslo\",\"tags\":[\"a\",\"a\"]}", "$.tags", "uniqueItems");
	BAD(s, "{\"city\":\"Oslo\",\"tags\":[\"a\",\"b\",\"a\"]}", "$.tags", "maxItems");
	BAD(s, "{\"city\":\"Oslo\",\"zip\":1}", "$.zip", "additionalProperties");
	OK("{\"items\":[{\"type\":\"string\"},{\"type\":\"integer\"}]}", "[\"a\",1,true]");
	BAD("{\"items\":[{\"type\":\"string\"},{\"type\":\"integer\"}]}", "[\"a\",\"b\"]", "$[1]", "type");
	OK("{\"additionalProperties\":{\"type\":\"number\"}}", "{\"x\":1,\"y\":2}");
	BAD("{\"additionalProperties\":{\"type\":\"number\"}}", "{\"x\":\"1\"}", "$.x", "type");
}
END_TEST

START_TEST(strings_and_combinators)
{
	struct ftk_error e;
	OK("{\"pattern\":\"^[A-Z]{3}$\"}", "\"OSL\"");
	BAD("{\"pattern\":\"^[A-Z]{3}$\"}", "\"osl\"", "$", "pattern");
	OK("{\"pattern\":\"\\\\d\"}", "\"a1b\"");	/* searched anywhere, not anchored */
	ck_assert_int_eq(check("{\"pattern\":\"(\"}", "\"x\"", &e), FTK_EDATA);
	ck_assert_str_eq(e.field, "schema.pattern");
	OK("{\"enum\":[1,\"a\",null]}", "1.0");
	BAD("{\"enum\":[1,\"a\",null]}", "\"b\"", "$", "enum");
	OK("{\"const\":{\"a\":[1]}}", "{\"a\":[1]}");
	BAD("{\"const\":{\"a\":[1]}}", "{\"a\":[2]}", "$", "const");
	OK("{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"integer\"}]}", "3");
	BAD("{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"integer\"}]}", "3.5", "$", "anyOf");
	BAD("{\"oneOf\":[{\"type\":\"number\"},{\"type\":\"integer\"}]}", "3", "$", "oneOf");
	OK("{\"oneOf\":[{\"type\":\"number\"},{\"type\":\"integer\"}]}", "3.5");
	BAD("{\"allOf\":[{\"minimum\":1},{\"maximum\":2}]}", "3", "$", "maximum");
	BAD("{\"not\":{\"type\":\"null\"}}", "null", "$", "not");
	OK("{\"multipleOf\":0.1}", "0.3");
	BAD("{\"multipleOf\":2}", "3", "$", "multipleOf");
	BAD("{\"exclusiveMinimum\":0}", "0", "$", "exclusiveMinimum");
	OK("true", "{\"anything\":1}");
	BAD("false", "1", "$", "false");
}
END_TEST

/* The json judge: finds the JSON, checks the schema, reports both. */
static void run_json(const char *settings, const char *text, double valid, double parses,
		     const char *kind)
{
	struct ftk_judge *j;
	struct ftk_error e;
	cJSON *s = cJSON_Parse(settings);
	ck_assert_msg(ftk_judge_create(&j, "json", s, NULL, &e) == 0, "%s", e.msg);
	cJSON_Delete(s);
	cJSON *kase = cJSON_Parse("{\"id\":\"j\"}");
	struct ftk_judge_output out = { text, NULL, "stop" };
	struct ftk_judge_result r;
	ftk_judge_result_init(&r);
	ck_assert_int_eq(ftk_judge_score(j, kase, &out, &r, &e), 0);
	ck_assert_double_eq(ftk_judge_find_metric(&r, "json.valid")->value, valid);
	ck_assert_double_eq(ftk_judge_find_metric(&r, "json.parses")->value, parses);
	if (kind) {
		ck_assert_uint_ge(r.nfailures, 1);
		ck_assert_str_eq(r.failures[0].kind, kind);
	} else {
		ck_assert_uint_eq(r.nfailures, 0);
	}
	ftk_judge_result_release(&r);
	cJSON_Delete(kase);
	ftk_judge_destroy(j);
}

START_TEST(json_judge)
{
	const char *s = "{\"schema\":{\"type\":\"object\",\"required\":[\"name\"],"
			"\"properties\":{\"age\":{\"type\":\"integer\"}}}}";
	run_json(s, "{\"name\":\"Ada\",\"age\":36}", 1, 1, NULL);
	run_json(s, "Here you go:\n```json\n{\"name\": \"Ada\"}\n```\nAnything else?", 1, 1, NULL);
	run_json(s, "Sure! {\"name\": \"Ada\", \"age\": 36} is the record.", 1, 1, NULL);
	/* braces in the prose before a fence: the fence is what counts */
	run_json(s, "Use {braces} like this:\n```json\n{\"name\": \"Ada\"}\n```", 1, 1, NULL);
	run_json(s, "{\"age\":36}", 0, 1, "schema:required");
	run_json(s, "{\"name\":\"Ada\",\"age\":\"36\"}", 0, 1, "schema:type");
	run_json(s, "{\"name\":\"Ada\",\"name\":\"Bob\"}", 0, 1, "duplicate_key");
	run_json(s, "name: Ada", 0, 0, "no_json");
	const char *strict = "{\"strict\":true,\"schema\":{\"type\":\"object\"}}";
	run_json(strict, "Sure! {\"name\": \"Ada\"}", 0, 0, "no_json");
	run_json(strict, " {\"name\": \"Ada\"}\n", 1, 1, NULL);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("jsonschema");
	TCase *t = tcase_create("jsonschema");
	tcase_add_test(t, types);
	tcase_add_test(t, objects_and_arrays);
	tcase_add_test(t, strings_and_combinators);
	tcase_add_test(t, json_judge);
	suite_add_tcase(s, t);
	return s;
}

FTK_TEST_MAIN(suite)
