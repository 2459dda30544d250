/*
 * test_yamljson.c: YAML read into cJSON, compared with PyYAML's reading of the
 * same file (tests/fixtures/yaml, make_reference.py), written back and read
 * again, and the errors a config author meets.
 */
#include <string.h>
#include "lib/err.h"
#include "lib/json.h"
#include "lib/stream.h"
#include "lib/strbuf.h"
#include "lib/yamljson.h"
#include "testutil.h"

static cJSON *load_yaml(const char *text, struct ftk_error *e)
{
	cJSON *v = NULL;
	ftk_error_clear(e);
	if (ftk_yaml_parse(text, strlen(text), "t.yaml", &v, e) < 0)
		return NULL;
	return v;
}

START_TEST(matches_pyyaml)
{
	char *y, *j;
	size_t yl, jl;
	struct ftk_error e;
	ck_assert_int_eq(ftk_read_all(src_path("tests/fixtures/yaml/config.yaml"), &y, &yl, &e), 0);
	ck_assert_int_eq(ftk_read_all(src_path("tests/fixtures/yaml/config.json"), &j, &jl, &e), 0);
	cJSON *got = NULL, *want = cJSON_Parse(j);
	ck_assert_ptr_nonnull(want);
	ck_assert_int_eq(ftk_yaml_parse(y, yl, "config.yaml", &got, &e), 0);
	char *g = cJSON_PrintUnformatted(got), *w = cJSON_PrintUnformatted(want);
	if (!cJSON_Compare(got, want, 1))
		printf("ftk:    %s\nPyYAML: %s\n", g, w);
	ck_assert(cJSON_Compare(got, want, 1));
	/* key order is the file's */
	ck_assert_str_eq(got->child->string, "model");
	ck_assert_str_eq(got->child->next->string, "data");
	cJSON_free(g);
	cJSON_free(w);
	cJSON_Delete(got);
	cJSON_Delete(want);
	free(y);
	free(j);
}
END_TEST

START_TEST(write_reads_back)
{
	char *y;
	size_t yl;
	struct ftk_error e;
	ck_assert_int_eq(ftk_read_all(src_path("tests/fixtures/yaml/config.yaml"), &y, &yl, &e), 0);
	cJSON *a = NULL, *b = NULL;
	ck_assert_int_eq(ftk_yaml_parse(y, yl, "config.yaml", &a, &e), 0);
	/* strings that would read back as other types must be quoted */
	cJSON_AddStringToObject(a, "looks_null", "null");
	cJSON_AddStringToObject(a, "looks_num", "1e5");
	cJSON_AddStringToObject(a, "colon", "a: b");
	cJSON_AddStringToObject(a, "dash", "- x");
	struct strbuf sb = STRBUF_INIT;
	ftk_yaml_write(a, &sb);
	int rc = ftk_yaml_parse(sb.buf, sb.len, "w.yaml", &b, &e);
	if (rc < 0 || !cJSON_Compare(a, b, 1))
		printf("%s\n--\n%s\n", sb.buf, e.msg);
	ck_assert_int_eq(rc, 0);
	ck_assert(cJSON_Compare(a, b, 1));
	strbuf_release(&sb);
	cJSON_Delete(a);
	cJSON_Delete(b);
	free(y);
}
END_TEST

START_TEST(scalars_by_core_schema)
{
	struct ftk_error e;
	cJSON *v = load_yaml("a: 0x1F\nb: 0o17\nc: .inf\nd: yes\ne: 1.5e3\nf: '12'\ng: 1_000\nh: -.5\n", &e);
	ck_assert_ptr_nonnull(v);
	ck_assert_double_eq(cJSON_GetObjectItem(v, "a")->valuedouble, 31);
	ck_assert_double_eq(cJSON_GetObjectItem(v, "b")->valuedouble, 15);
	ck_assert(cJSON_GetObjectItem(v, "c")->valuedouble > 1e308);
	/* YAML 1.2: yes is a string (1.1 made it true) */
	ck_assert_str_eq(cJSON_GetObjectItem(v, "d")->valuestring, "yes");
	ck_assert_double_eq(cJSON_GetObjectItem(v, "e")->valuedouble, 1500);
	ck_assert_str_eq(cJSON_GetObjectItem(v, "f")->valuestring, "12");
	ck_assert_str_eq(cJSON_GetObjectItem(v, "g")->valuestring, "1_000");
	ck_assert_double_eq(cJSON_GetObjectItem(v, "h")->valuedouble, -0.5);
	cJSON_Delete(v);
}
END_TEST

START_TEST(errors_name_the_place)
{
	struct ftk_error e;
	ck_assert_ptr_null(load_yaml("a: 1\nb: [1, 2\n", &e));
	ck_assert_int_eq(e.code, FTK_EDATA);
	ck_assert_str_eq(e.file, "t.yaml");
	ck_assert_int_eq(e.line, 3);
	ck_assert_ptr_nonnull(strstr(e.msg, "invalid YAML"));
	ck_assert_ptr_null(load_yaml("a: 1\nb: 2\na: 3\n", &e));
	ck_assert_int_eq(e.line, 3);
	ck_assert_str_eq(e.msg, "duplicate key 'a' at column 1");
	ck_assert_ptr_null(load_yaml("a: &x 1\nb: *x\n", &e));
	ck_assert_ptr_nonnull(strstr(e.msg, "anchors"));
	ck_assert_ptr_null(load_yaml("a: 1\n---\nb: 2\n", &e));
	ck_assert_ptr_nonnull(strstr(e.msg, "one document"));
	ck_assert_ptr_null(load_yaml("[1, 2]: x\n", &e));
	ck_assert_ptr_nonnull(strstr(e.msg, "key must be a string"));
	/* nesting past the limit is refused, not recursed into */
	char deep[400];
	memset(deep, '[', 200);
	deep[200] = 0;
	ck_assert_ptr_null(load_yaml(deep, &e));
	cJSON *v = load_yaml("", &e);
	ck_assert(cJSON_IsNull(v));
	cJSON_Delete(v);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("yamljson");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, matches_pyyaml);
	tcase_add_test(tc, write_reads_back);
	tcase_add_test(tc, scalars_by_core_schema);
	tcase_add_test(tc, errors_name_the_place);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(make_suite)
