/*
 * test_json.c: ftk_json_parse_record, the record reader every prep tool
 * shares, refuses exactly what cJSON would change silently (a NUL cuts a
 * string, an overflowing number becomes null, an underflowing one 0, a
 * repeated key hides a value) and accepts everything that only looks close
 * to it (an escaped backslash before u0000, the largest and smallest
 * doubles, zeros written with huge exponents).
 */
#include <string.h>
#include "testutil.h"
#include "lib/json.h"
#include "lib/stream.h"

struct rcase {
	const char *json;
	size_t len;		/* 0: strlen(json) */
	const char *kind;	/* NULL: accepted */
	const char *field;	/* expected err.field when rejected, or NULL */
};

static const struct rcase cases[] = {
	{ "{\"text\":\"a\\u0000b\"}", 0, "nul-in-string", NULL },
	{ "{\"a\\u0000\":1}", 0, "nul-in-string", NULL },
	{ "{\"text\":\"a\0b\"}", 14, "nul-in-string", NULL },
	/* an escaped backslash, then the letters u0000: no NUL */
	{ "{\"text\":\"a\\\\u0000b\"}", 0, NULL, NULL },
	/* three backslashes: an escaped one, then a real \u0000 */
	{ "{\"text\":\"a\\\\\\u0000b\"}", 0, "nul-in-string", NULL },
	{ "{\"text\":\"\\u0001 is a control character, kept\"}", 0, NULL, NULL },
	{ "{\"n\":1e999}", 0, "number-out-of-range", "n" },
	{ "{\"x\":[1,{\"y\":-1e400}]}", 0, "number-out-of-range", "x[1].y" },
	{ "{\"n\":1.7976931348623157e308}", 0, NULL, NULL },
	{ "{\"n\":1e-999}", 0, "number-out-of-range", NULL },
	{ "{\"n\":-2.5e-400,\"m\":0}", 0, "number-out-of-range", NULL },
	{ "{\"n\":4.9e-324}", 0, NULL, NULL },	/* the smallest subnormal */
	{ "{\"n\":0e-999,\"m\":-0.0,\"k\":0.000}", 0, NULL, NULL },
	{ "{\"s\":\"1e-999 in a string is text\",\"z\":0}", 0, NULL, NULL },
	{ "{\"a\":1,\"a\":2}", 0, "duplicate-key", "a" },
	{ "{\"m\":[{\"role\":\"user\",\"role\":\"assistant\"}]}", 0, "duplicate-key", "m[0].role" },
	{ "{\"a\":{\"b\":1},\"c\":{\"b\":2}}", 0, NULL, NULL },	/* the same key in two objects */
	{ "[1,2]", 0, "not-an-object", NULL },
	{ "{\"a\":", 0, "invalid-json", NULL },
};

START_TEST(record_reader_refuses_silent_changes)
{
	const struct rcase *c = &cases[_i];
	size_t len = c->len ? c->len : strlen(c->json);
	struct ftk_error err;
	cJSON *v = (cJSON *)1;
	const char *kind = "unset";
	ftk_error_clear(&err);
	int rc = ftk_json_parse_record(c->json, len, &v, &err, &kind);
	printf("case %d: %s -> rc %d kind %s field '%s' msg '%s'\n", _i, c->json, rc,
	       kind ? kind : "(none)", err.field, err.msg);
	if (!c->kind) {
		ck_assert_int_eq(rc, 0);
		ck_assert_ptr_null(kind);
		ck_assert_ptr_nonnull(v);
		cJSON_Delete(v);
		return;
	}
	ck_assert_int_eq(rc, FTK_EDATA);
	ck_assert_ptr_null(v);
	ck_assert_str_eq(kind, c->kind);
	ck_assert(err.msg[0] != '\0');
	if (c->field)
		ck_assert_str_eq(err.field, c->field);
}
END_TEST

/* The text a record carries after parsing is all of it, NULs aside. */
START_TEST(accepted_strings_are_whole)
{
	const char *s = "{\"text\":\"a\\\\u0000b \\u00e9\\t\"}";
	cJSON *v;
	ck_assert_int_eq(ftk_json_parse_record(s, strlen(s), &v, NULL, NULL), 0);
	ck_assert_str_eq(ftk_json_get_str(v, "text"), "a\\u0000b \xc3\xa9\t");
	cJSON_Delete(v);
}
END_TEST

/*
 * ftk_json_share: the copy prints as the original (cJSON_Duplicate is the
 * reference), holds the original's very strings, can be edited and freed
 * first without touching them (under SAN=1 a freed or double-freed string
 * is an error), and the original still prints the same afterwards.
 */
START_TEST(share_borrows_strings)
{
	const char *s = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi \\u00e9\"},"
			"{\"role\":\"assistant\",\"content\":null,\"n\":[1,2.5,-3e10,true,false]}],"
			"\"meta\":{\"k\":{}},\"e\":[]}";
	cJSON *v;
	ck_assert_int_eq(ftk_json_parse_record(s, strlen(s), &v, NULL, NULL), 0);
	char *want = cJSON_PrintUnformatted(v);
	cJSON *dup = cJSON_Duplicate(v, 1);
	cJSON *c = ftk_json_share(v);
	char *got = cJSON_PrintUnformatted(c), *ref = cJSON_PrintUnformatted(dup);
	ck_assert_str_eq(got, ref);
	ck_assert_str_eq(got, want);
	cJSON *m0 = cJSON_GetArrayItem(cJSON_GetObjectItem(v, "messages"), 0);
	cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "messages"), 0);
	ck_assert_ptr_ne(m0, c0);
	ck_assert_ptr_eq(cJSON_GetObjectItem(m0, "content")->valuestring,
			 cJSON_GetObjectItem(c0, "content")->valuestring);
	/* the last child is found from the first (cJSON appends through prev) */
	cJSON_AddStringToObject(c0, "name", "x");
	cJSON_ReplaceItemInObjectCaseSensitive(c0, "content", cJSON_CreateString("new"));
	cJSON_DeleteItemFromObjectCaseSensitive(c0, "role");
	cJSON_AddItemToObject(cJSON_GetObjectItem(c, "meta"), "source", cJSON_CreateString("f"));
	char *edited = cJSON_PrintUnformatted(c);
	ck_assert(strstr(edited, "{\"content\":\"new\",\"name\":\"x\"}") != NULL);
	ck_assert(strstr(edited, "\"meta\":{\"k\":{},\"source\":\"f\"}") != NULL);
	cJSON_Delete(c);
	char *after = cJSON_PrintUnformatted(v);
	ck_assert_str_eq(after, want);
	ck_assert_ptr_null(ftk_json_share(NULL));
	cJSON_free(want);
	cJSON_free(got);
	cJSON_free(ref);
	cJSON_free(edited);
	cJSON_free(after);
	cJSON_Delete(dup);
	cJSON_Delete(v);
}
END_TEST

/* ftk_json_print into an empty strbuf takes cJSON's buffer, into a
 * non-empty one appends: the same text either way, and a usable strbuf. */
START_TEST(print_adopts_or_appends)
{
	cJSON *v = cJSON_Parse("{\"a\":[1,\"x\"]}");
	struct strbuf sb = STRBUF_INIT;
	ftk_json_print(&sb, v);
	ck_assert_str_eq(sb.buf, "{\"a\":[1,\"x\"]}");
	ck_assert_uint_eq(sb.len, strlen(sb.buf));
	strbuf_addch(&sb, ' ');
	ftk_json_print(&sb, v);
	ck_assert_str_eq(sb.buf, "{\"a\":[1,\"x\"]} {\"a\":[1,\"x\"]}");
	strbuf_reset(&sb);
	ftk_json_print(&sb, v);
	ck_assert_str_eq(sb.buf, "{\"a\":[1,\"x\"]}");
	strbuf_release(&sb);
	cJSON_Delete(v);
}
END_TEST

/* Read path with ftk_json_next_object: "L:a" for each object (its "a"), then the end or the error. */
static void read_objects(const char *path, const char *text, size_t len, char *got, size_t n)
{
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(text, 1, len, f), len);
	fclose(f);
	struct ftk_reader *r;
	struct ftk_error e;
	struct ftk_line line;
	cJSON *o;
	int rc;
	ck_assert_int_eq(ftk_reader_open(&r, path, &e), 0);
	got[0] = '\0';
	while ((rc = ftk_json_next_object(r, path, &line, &o, &e)) == 1) {
		snprintf(got + strlen(got), n - strlen(got), "%ld:%s ", line.lineno,
			 cJSON_GetStringValue(cJSON_GetObjectItem(o, "a")));
		cJSON_Delete(o);
	}
	ck_assert_ptr_null(o);
	if (rc == 0)
		snprintf(got + strlen(got), n - strlen(got), "end");
	else
		snprintf(got + strlen(got), n - strlen(got), "%d %s:%ld: %s", rc, e.file, e.line, e.msg);
	ftk_reader_close(r);
}

/* The objects of a JSON Lines file of cases: blank lines skipped, the first bad line placed */
START_TEST(next_object_of_a_file)
{
	char got[512];
	const char ok[] = "{\"a\":\"x\"}\n\n  \t\r\n{\"a\":\"y\"}\r\n";
	read_objects("ok.jsonl", ok, sizeof(ok) - 1, got, sizeof(got));
	ck_assert_str_eq(got, "1:x 4:y end");
	/* bytes counted from 1, as the prep tools count them: the 7th is \xff */
	const char utf[] = "{\"a\":\"x\"}\n{\"a\":\"\xff\"}\n{\"a\":\"z\"}\n";
	read_objects("utf.jsonl", utf, sizeof(utf) - 1, got, sizeof(got));
	ck_assert_str_eq(got, "1:x -4 utf.jsonl:2: invalid UTF-8 at byte 7");
	const char arr[] = "\n[1]\n";
	read_objects("arr.jsonl", arr, sizeof(arr) - 1, got, sizeof(got));
	ck_assert_str_eq(got, "-3 arr.jsonl:2: not a JSON object: array");
}
END_TEST

static Suite *json_suite(void)
{
	Suite *s = suite_create("json");
	TCase *tc = tcase_create("core");
	tcase_add_loop_test(tc, record_reader_refuses_silent_changes, 0,
			    (int)(sizeof(cases) / sizeof(cases[0])));
	tcase_add_test(tc, accepted_strings_are_whole);
	tcase_add_test(tc, share_borrows_strings);
	tcase_add_test(tc, print_adopts_or_appends);
	tcase_add_test(tc, next_object_of_a_file);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(json_suite)
