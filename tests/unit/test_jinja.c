/*
 * test_jinja.c: the Jinja interpreter against @huggingface/jinja.
 *
 * tests/fixtures/tokref/jinja.jsonl (tools/ref/gen-jinja.mjs) holds small
 * templates exercising each feature chat templates use, with the variables
 * and what @huggingface/jinja rendered (or the error it raised).  Outputs
 * must be byte-identical and errors must be errors.  The features this
 * interpreter lacks must fail with a message naming them.
 */
#include <string.h>
#include "testutil.h"
#include "lib/jinja.h"
#include "lib/json.h"
#include "lib/stream.h"

START_TEST(test_reference_cases)
{
	struct ftk_reader *r;
	struct ftk_line line;
	struct ftk_error e;
	int n = 0, bad = 0, errors = 0;
	ck_assert_int_eq(ftk_reader_open(&r, src_path("tests/fixtures/tokref/jinja.jsonl"), &e), 0);
	while (ftk_reader_next(r, &line, &e) > 0) {
		cJSON *row = cJSON_ParseWithLength(line.data, line.len);
		const char *tpl = ftk_json_get_str(row, "template");
		const char *want = ftk_json_get_str(row, "output");
		const char *werr = ftk_json_get_str(row, "error");
		struct ftk_jinja *t = NULL;
		struct strbuf out = STRBUF_INIT;
		int rc = ftk_jinja_parse(&t, tpl, strlen(tpl), &e);
		if (!rc) rc = ftk_jinja_render(t, cJSON_GetObjectItem(row, "vars"), NULL, &out, &e);
		n++;
		if (werr) {
			errors++;
			if (!rc) { fprintf(stderr, "case %d: rendered '%s', want error '%s'\n", n, out.buf, werr); bad++; }
		} else if (rc) {
			fprintf(stderr, "case %d: error '%s', want '%s'\n", n, e.msg, want);
			bad++;
		} else if (strlen(want) != out.len || memcmp(want, out.buf, out.len)) {
			fprintf(stderr, "case %d:\n  want '%s'\n  got  '%s'\n", n, want, out.buf);
			bad++;
		}
		strbuf_release(&out);
		ftk_jinja_free(t);
		cJSON_Delete(row);
	}
	ftk_reader_close(r);
	fprintf(stderr, "jinja: %d cases (%d errors expected), %d mismatches\n", n, errors, bad);
	ck_assert_int_ge(n, 37);
	ck_assert_int_ge(errors, 2);
	ck_assert_int_eq(bad, 0);
}
END_TEST

static int render(const char *tpl, const char *vars, struct strbuf *out, struct ftk_error *e)
{
	struct ftk_jinja *t = NULL;
	int rc = ftk_jinja_parse(&t, tpl, strlen(tpl), e);
	if (rc) return rc;
	cJSON *v = cJSON_Parse(vars ? vars : "{}");
	rc = ftk_jinja_render(t, v, NULL, out, e);
	cJSON_Delete(v);
	ftk_jinja_free(t);
	return rc;
}

static void expect_error(const char *tpl, int code, const char *msg)
{
	struct strbuf out = STRBUF_INIT;
	struct ftk_error e;
	int rc = render(tpl, "{\"x\":\"abc\",\"l\":[1]}", &out, &e);
	ck_assert_msg(rc == code, "%s: rc %d, want %d (%s)", tpl, rc, code, e.msg);
	ck_assert_msg(strstr(e.msg, msg), "%s: message '%s' lacks '%s'", tpl, e.msg, msg);
	ck_assert_uint_eq(out.len, 0);	/* nothing half-rendered reaches the caller's eyes as success */
	strbuf_release(&out);
}

START_TEST(test_unsupported_named)
{
	expect_error("{{ x|wordwrap }}", FTK_EUNSUPPORTED, "unsupported filter 'wordwrap'");
	expect_error("{% include 'other.jinja' %}", FTK_EUNSUPPORTED, "unsupported statement 'include'");
	expect_error("{% raw %}x{% endraw %}", FTK_EUNSUPPORTED, "unsupported statement 'raw'");
	expect_error("{{ x is divisibleby(3) }}", FTK_EUNSUPPORTED, "unsupported test 'divisibleby'");
	expect_error("{{ x.zfill(5) }}", FTK_EUNSUPPORTED, "unsupported string method 'zfill'");
	expect_error("{% for a in l recursive %}{% endfor %}", FTK_EUNSUPPORTED, "recursive for loop");
	expect_error("{{ l|map('upper')|join }}", FTK_EUNSUPPORTED, "map() without attribute=");
	expect_error("{% for a in l %}{{ loop.cycle('x', 'y') }}{% endfor %}", FTK_EUNSUPPORTED, "unsupported method 'cycle'");
	expect_error("{{ l.append(2) }}", FTK_EUNSUPPORTED, "unsupported method 'append'");
	expect_error("{{ lipsum(2) }}", FTK_EUNSUPPORTED, "unsupported function 'lipsum'");
}
END_TEST

START_TEST(test_syntax_errors)
{
	expect_error("{% if x %}never closed", FTK_EDATA, "missing '{% endif %}'");
	expect_error("{{ x ", FTK_EDATA, "unexpected end of template");
	expect_error("{% endfor %}", FTK_EDATA, "unexpected 'endfor'");
	expect_error("{{ 'unterminated }}", FTK_EDATA, "unterminated string literal");
	expect_error("{{ raise_exception('bad roles') }}", FTK_EDATA, "bad roles");
	/* the line of the error is reported */
	struct strbuf out = STRBUF_INIT;
	struct ftk_error e;
	ck_assert_int_eq(render("a\nb\n{{ x + none }}", "{\"x\":\"s\"}", &out, &e), FTK_EDATA);
	ck_assert_int_eq(e.line, 3);
	strbuf_release(&out);
}
END_TEST

/* The iteration report that chat.c builds spans from. */
START_TEST(test_tracking)
{
	const char *tpl = "{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}</>{% endfor %}";
	struct ftk_jinja *t;
	ck_assert_int_eq(ftk_jinja_parse(&t, tpl, strlen(tpl), NULL), 0);
	cJSON *vars = cJSON_Parse("{\"messages\":[{\"role\":\"user\",\"content\":\" hi \"},{\"role\":\"assistant\",\"content\":\"yo\"}]}");
	static const char *const keys[] = { "content", NULL };
	struct ftk_jinja_opts o = { 0 };
	o.track = cJSON_GetObjectItem(vars, "messages");
	o.taint_keys = keys;
	struct strbuf out = STRBUF_INIT;
	ck_assert_int_eq(ftk_jinja_render(t, vars, &o, &out, NULL), 0);
	ck_assert_str_eq(out.buf, "<user>hi</><assistant>yo</>");
	ck_assert_uint_eq(o.n_iters, 2);
	ck_assert_int_eq(o.iters[1].index, 1);
	ck_assert_uint_eq(o.iters[1].start, 11);
	ck_assert_uint_eq(o.iters[1].end, out.len);
	ck_assert_int_eq(o.iters[1].first_taint, 11 + (int)strlen("<assistant>"));
	ck_assert_int_eq(o.iters[0].first_taint, (int)strlen("<user>"));
	free(o.iters);
	strbuf_release(&out);
	cJSON_Delete(vars);
	ftk_jinja_free(t);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("jinja");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_reference_cases);
	tcase_add_test(tc, test_unsupported_named);
	tcase_add_test(tc, test_syntax_errors);
	tcase_add_test(tc, test_tracking);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(make_suite)
