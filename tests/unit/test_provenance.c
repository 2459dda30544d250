/*
 * test_provenance.c: the first stage's meta.source and meta.line are
 * spliced into a record's own bytes (prep/provenance.h): everything else of
 * the line stays byte for byte, the result parses, and a record that has
 * provenance, a meta that is not an object, or a line from standard input
 * is left alone.
 */
#include <string.h>
#include "testutil.h"
#include "lib/json.h"
#include "prep/provenance.h"

struct pcase {
	const char *in, *file;
	const char *want;	/* NULL: unchanged */
};

static const struct pcase cases[] = {
	{ "{\"text\":\"a\"}", "a.jsonl", "{\"text\":\"a\",\"meta\":{\"source\":\"a.jsonl\",\"line\":7}}" },
	{ "{\"text\":\"a\"}  \r", "a.jsonl", "{\"text\":\"a\",\"meta\":{\"source\":\"a.jsonl\",\"line\":7}}  \r" },
	{ "{ }", "a.jsonl", "{ \"meta\":{\"source\":\"a.jsonl\",\"line\":7}}" },
	{ "{\"meta\":{},\"n\":1.10000000000000000001}", "d/x \"q\".jsonl",
	  "{\"meta\":{\"source\":\"d/x \\\"q\\\".jsonl\",\"line\":7},\"n\":1.10000000000000000001}" },
	{ "{\"meta\" : {\"lang\":\"en\", \"x\":{\"y\":\"}\"} } ,\"text\":\"}\"}", "a.jsonl",
	  "{\"meta\" : {\"lang\":\"en\", \"x\":{\"y\":\"}\"} ,\"source\":\"a.jsonl\",\"line\":7} ,\"text\":\"}\"}" },
	{ "{\"text\":\"a\",\"meta\":{\"source\":\"web\"}}", "a.jsonl", NULL },
	{ "{\"text\":\"a\",\"meta\":{\"line\":3}}", "a.jsonl", NULL },
	{ "{\"text\":\"a\",\"meta\":\"notes\"}", "a.jsonl", NULL },
	{ "{\"text\":\"a\"}", "-", NULL },
};

START_TEST(splices_into_the_original_bytes)
{
	const struct pcase *c = &cases[_i];
	struct strbuf out = STRBUF_INIT;
	cJSON *rec;
	ck_assert_int_eq(ftk_json_parse_object(c->in, strlen(c->in), &rec, NULL), 0);
	int rc = ftk_provenance_add(c->in, strlen(c->in), rec, c->file, 7, &out);
	printf("case %d: %s -> %d '%s'\n", _i, c->in, rc, out.len ? out.buf : "");
	if (!c->want) {
		ck_assert_int_eq(rc, 0);
		ck_assert_int_eq(out.len, 0);
	} else {
		ck_assert_int_eq(rc, 1);
		ck_assert_str_eq(out.buf, c->want);
		/* and it reads back with the members in meta */
		cJSON *back;
		ck_assert_int_eq(ftk_json_parse_record(out.buf, out.len, &back, NULL, NULL), 0);
		const cJSON *meta = cJSON_GetObjectItemCaseSensitive(back, "meta");
		ck_assert_str_eq(ftk_json_get_str(meta, "source"), c->file);
		ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(meta, "line")->valueint, 7);
		cJSON_Delete(back);
	}
	cJSON_Delete(rec);
	strbuf_release(&out);
}
END_TEST

static Suite *provenance_suite(void)
{
	Suite *s = suite_create("provenance");
	TCase *tc = tcase_create("core");
	tcase_add_loop_test(tc, splices_into_the_original_bytes, 0,
			    (int)(sizeof(cases) / sizeof(cases[0])));
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(provenance_suite)
