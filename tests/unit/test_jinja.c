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
	/* an error always says what: fuzz_jinja found a message that began with NUL */
	expect_error("{{ raise_exception('') }}", FTK_EDATA, "raise_exception() with an empty message");
	{
		/* the fuzzer's input: NULs inside the template's own string */
		static const char tpl[] = "{{ raise_exception('\0bad\0roles') }}";
		struct ftk_jinja *t = NULL;
		struct strbuf out = STRBUF_INIT;
		struct ftk_error e;
		ck_assert_int_eq(ftk_jinja_parse(&t, tpl, sizeof(tpl) - 1, &e), 0);
		cJSON *v = cJSON_CreateObject();
		ck_assert_int_eq(ftk_jinja_render(t, v, NULL, &out, &e), FTK_EDATA);
		ck_assert_msg(strstr(e.msg, "\\0bad\\0roles"), "message '%s'", e.msg);
		cJSON_Delete(v);
		ftk_jinja_free(t);
		strbuf_release(&out);
	}
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

/*
 * Limits.  Templates come with model downloads, so each attack a probe
 * found (issue 18) must end in an FTK_ELIMIT error naming its limit, not a
 * stack overflow, gigabytes, or a loop that never ends.  On the code before
 * the limits, the deep cases died of SIGSEGV (stack overflow in
 * parse_primary, eval and to_json) and the growth cases ran for minutes.
 */
static char *repeat(const char *pre, const char *unit, size_t n, const char *post)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, pre);
	for (size_t i = 0; i < n; i++) strbuf_addstr(&sb, unit);
	strbuf_addstr(&sb, post);
	return strbuf_detach(&sb, NULL);
}

static void expect_limit_with(const char *tpl, const char *vars, const struct ftk_jinja_limits *lim, const char *msg)
{
	struct ftk_jinja *t = NULL;
	struct ftk_error e = { 0 };
	struct strbuf out = STRBUF_INIT;
	int rc = ftk_jinja_parse(&t, tpl, strlen(tpl), &e);
	if (!rc) {
		cJSON *v = cJSON_Parse(vars ? vars : "{}");
		struct ftk_jinja_opts o = { 0 };
		o.limits = lim;
		rc = ftk_jinja_render(t, v, &o, &out, &e);
		cJSON_Delete(v);
	}
	ck_assert_msg(rc == FTK_ELIMIT, "%.60s...: rc %d, want FTK_ELIMIT (%s)", tpl, rc, e.msg);
	ck_assert_msg(strstr(e.msg, msg), "%.60s...: message '%s' lacks '%s'", tpl, e.msg, msg);
	strbuf_release(&out);
	ftk_jinja_free(t);
}

static void expect_limit(const char *tpl, const char *msg) { expect_limit_with(tpl, NULL, NULL, msg); }

static void expect_render(const char *tpl, const char *want)
{
	struct strbuf out = STRBUF_INIT;
	struct ftk_error e = { 0 };
	int rc = render(tpl, NULL, &out, &e);
	ck_assert_msg(rc == 0, "%.60s...: rc %d (%s)", tpl, rc, e.msg);
	ck_assert_str_eq(out.buf, want);
	strbuf_release(&out);
}

START_TEST(test_limit_parser_depth)
{
	static const char *const msg = "nested deeper than 200 levels (the parser's depth limit)";
	struct { const char *pre, *unit, *post; } deep[] = {
		{ "{{ ", "(", "1" },		/* parentheses: parse_primary recursion (post unbalanced: fails first) */
		{ "{{ ", "[", "1" },
		{ "{{ ", "-", "1 }}" },		/* unary signs */
		{ "{{ ", "not ", "1 }}" },
		{ "{{ x", ".a", " }}" },		/* an attribute chain, parsed by a loop */
		{ "{{ x", "|first", " }}" },		/* a filter chain */
		{ "{{ 1", "+1", " }}" },		/* an operator chain */
		{ "{{ 1", " is number", " }}" },	/* a test chain */
		{ "", "{% if 1 %}", "" },		/* blocks inside blocks */
	};
	for (size_t i = 0; i < sizeof(deep) / sizeof(deep[0]); i++) {
		char *t = repeat(deep[i].pre, deep[i].unit, 20000, deep[i].post);
		expect_limit(t, msg);
		free(t);
	}
	char *elif = repeat("{% if 0 %}", "{% elif 0 %}", 1000, "{% endif %}");
	expect_limit(elif, msg);
	free(elif);
	/* well inside the limit, the same shapes still render */
	char *a = repeat("{{ ", "(", 150, "7");
	char *b = repeat(a, ")", 150, " }}");
	expect_render(b, "7");
	free(a);
	free(b);
	char *c = repeat("{{ 1", "+1", 150, " }}");
	expect_render(c, "151");
	free(c);
}
END_TEST

START_TEST(test_limit_eval_depth)
{
	static const char *const msg = "(the evaluator's depth limit)";
	expect_limit("{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}", msg);
	/* a value nested by a loop, then printed: to_json's recursion */
	expect_limit("{% set x = namespace(v=[]) %}{% for i in range(5000) %}{% set x.v = [x.v] %}{% endfor %}"
		     "{{ x.v|tojson }}", msg);
	expect_limit("{% set x = namespace(v=[]) %}{% for i in range(5000) %}{% set x.v = [x.v] %}{% endfor %}"
		     "{{ x.v ~ '' }}", msg);
	/* a lowered limit is honoured, and shallow recursion is fine */
	struct ftk_jinja_limits lim = { .max_depth = 30 };
	expect_limit_with("{% macro m(n) %}{% if n > 0 %}{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(20) }}", NULL, &lim, msg);
	expect_render("{% macro m(n) %}{% if n > 0 %}{{ n }}{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(5) }}", "54321");
}
END_TEST

START_TEST(test_limit_iterations)
{
	expect_limit("{{ range(100000000000)|length }}", "(the iteration limit)");
	expect_limit("{{ range(100000000000000000, 100000000000000010)|length }}", "would never end");
	struct ftk_jinja_limits lim = { .max_steps = 200000 };
	/* twice per level: 2^40 calls, with no growth for the memory limit to see */
	expect_limit_with("{% macro m(n) %}{% if n > 0 %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(40) }}",
			  NULL, &lim, "render took more than 200000 steps (the iteration limit)");
	/* quadratic filters count their comparisons */
	expect_limit_with("{{ range(3000)|reverse|sort|first }}", NULL, &lim, "(the iteration limit)");
	expect_limit_with("{{ range(3000)|unique|length }}", NULL, &lim, "(the iteration limit)");
	/* scanning a long string over and over */
	expect_limit_with("{% set ns = namespace(s='ab') %}{% for i in range(20) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
			  "{% for i in range(1000) %}{% if 'zz' in ns.s %}x{% endif %}{% endfor %}", NULL, &lim, "(the iteration limit)");
}
END_TEST

START_TEST(test_limit_output_and_memory)
{
	struct ftk_jinja_limits lim = { .max_output = 256 << 10, .max_memory = 2 << 20 };
	expect_limit_with("{% set s = 'xx' %}{% for i in range(40) %}{% set s = s ~ s %}{% endfor %}{{ s|length }}",
			  NULL, &lim, "render built a string over 262144 bytes (the output size limit)");
	struct ftk_jinja_limits out_only = { .max_output = 256 << 10 };
	expect_limit_with("{% for i in range(20000) %}{{ 'abcdefghijklmnopqrstuvwxyz' }}{% endfor %}", NULL, &out_only,
			  "(the output size limit)");
	expect_limit("{{ [1, 2]|tojson(indent=1000000000) }}", "(the output size limit)");
	expect_limit_with("{{ 'ab'|replace('a', 'aaaaaaaaaaaaaaaa')|replace('a', 'aaaaaaaaaaaaaaaa')|replace('a', "
			  "'aaaaaaaaaaaaaaaa')|replace('a', 'aaaaaaaaaaaaaaaa')|replace('a', 'aaaaaaaaaaaaaaaa')|length }}",
			  NULL, &lim, "(the output size limit)");
	expect_limit_with("{{ range(1000000)|join(',')|length }}", NULL, &lim,
			  "render used more than 2097152 bytes of memory (the memory limit)");
	/* the limits grow with the variables: a 1 MB content prints under a 256 KiB floor */
	struct strbuf vars = STRBUF_INIT;
	strbuf_addstr(&vars, "{\"c\":\"");
	for (int i = 0; i < 1 << 20; i++) strbuf_addch(&vars, 'a' + i % 26);
	strbuf_addstr(&vars, "\"}");
	struct ftk_jinja *t;
	const char *tpl = "{{ c }}{{ c.split('!')[0]|length }}";
	ck_assert_int_eq(ftk_jinja_parse(&t, tpl, strlen(tpl), NULL), 0);
	cJSON *v = cJSON_Parse(vars.buf);
	struct ftk_jinja_opts o = { 0 };
	o.limits = &lim;
	struct strbuf out = STRBUF_INIT;
	struct ftk_error e = { 0 };
	ck_assert_msg(ftk_jinja_render(t, v, &o, &out, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(out.len, (1 << 20) + 7);
	strbuf_release(&out);
	strbuf_release(&vars);
	cJSON_Delete(v);
	ftk_jinja_free(t);
}
END_TEST
/*
 * Found by fuzz_jinja (CI's 60 s run): variables given as a JSON array reached
 * strlen(NULL) on the nameless items.  The render refuses anything but an
 * object, before it starts.
 */
START_TEST(test_vars_must_be_object)
{
	struct ftk_jinja *t = NULL;
	struct ftk_error e;
	const char *src = "{% for i in range(3) %}{{ i }}{% endfor %}";
	ck_assert_int_eq(ftk_jinja_parse(&t, src, strlen(src), &e), 0);
	const char *bad[] = { "[7, 1, 2]", "3", "\"s\"", "null" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cJSON *v = cJSON_Parse(bad[i]);
		struct strbuf out = STRBUF_INIT;
		ck_assert_int_eq(ftk_jinja_render(t, v, NULL, &out, &e), FTK_EUSAGE);
		ck_assert_msg(strstr(e.msg, "template variables must be a JSON object"), "%s", e.msg);
		strbuf_release(&out);
		cJSON_Delete(v);
	}
	cJSON *obj = cJSON_Parse("{}");
	struct strbuf out = STRBUF_INIT;
	ck_assert_int_eq(ftk_jinja_render(t, obj, NULL, &out, &e), 0);
	ck_assert_str_eq(out.buf, "012");
	strbuf_release(&out);
	ck_assert_int_eq(ftk_jinja_render(t, NULL, NULL, &out, &e), 0);
	ck_assert_str_eq(out.buf, "012");
	strbuf_release(&out);
	cJSON_Delete(obj);
	ftk_jinja_free(t);
}
END_TEST

/*
 * Found by fuzz_jinja: a slice bound or index written with 17+ digits reached
 * a double-to-long conversion out of range (UBSan).  Bounds past +-2^53 act
 * as Python's do, clamped to the sequence.
 */
START_TEST(test_huge_indices)
{
	expect_render("{{ 'abcdef'[-25555555555555555:] }}", "abcdef");
	expect_render("{{ 'abcdef'[:99999999999999999999999] }}", "abcdef");
	expect_render("{{ 'abcdef'[2:-99999999999999999999999] }}", "");
	expect_render("{{ [1, 2, 3][::99999999999999999999999] }}", "[1]");
}
END_TEST

/*
 * {{ a + b + ... }} is written out operand by operand (emit_chain) instead
 * of as one new string.  The reference is the same expression evaluated
 * whole by {% set x = ... %}{{ x }}: the output, the error (message and
 * line) and the iteration report (where the first byte of a message's
 * content landed, which masks are made from) must be the same, for strings,
 * numbers, lists, a dict, an undefined value, none, nesting on the right,
 * and a chain that does not start with a string.
 */
START_TEST(test_concat_chain_emitted_in_place)
{
	static const char *const exprs[] = {
		"'<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>' + '\\n'",
		"m.role ~ 1 ~ m.content ~ 2.5",
		"1 + 2 + m.content + m.n",
		"m.n + 1 + 'x' + m.content",
		"m.content + [1, 2] + 'z'",
		"'a' + m.content ~ {'k': 1}",
		"[1] + [2] ~ m.content",
		"m.content + m.content + m.content",
		"'p' + (m.content + 'q') + 'r'",
		"'x' + m.nothing + m.content",
		"m.content ~ none",
		"'only' ~ 'strings'",
	};
	static const char *const keys[] = { "content", NULL };
	cJSON *vars = cJSON_Parse("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\",\"n\":3},"
				  "{\"role\":\"assistant\",\"content\":\"yo\",\"n\":1.5}]}");
	for (size_t i = 0; i < FTK_ARRAY_SIZE(exprs); i++) {
		struct strbuf tpl[2] = { STRBUF_INIT, STRBUF_INIT }, out[2] = { STRBUF_INIT, STRBUF_INIT };
		strbuf_addf(&tpl[0], "{%% for m in messages %%}[{{ %s }}]{%% endfor %%}", exprs[i]);
		strbuf_addf(&tpl[1], "{%% for m in messages %%}[{%% set x = %s %%}{{ x }}]{%% endfor %%}", exprs[i]);
		struct ftk_jinja_opts o[2] = { { 0 }, { 0 } };
		struct ftk_error e[2];
		int rc[2];
		for (int k = 0; k < 2; k++) {
			struct ftk_jinja *t;
			ck_assert_int_eq(ftk_jinja_parse(&t, tpl[k].buf, tpl[k].len, NULL), 0);
			o[k].track = cJSON_GetObjectItem(vars, "messages");
			o[k].taint_keys = keys;
			ftk_error_clear(&e[k]);
			rc[k] = ftk_jinja_render(t, vars, &o[k], &out[k], &e[k]);
			ftk_jinja_free(t);
		}
		ck_assert_msg(rc[0] == rc[1], "%s: rc %d, whole %d", exprs[i], rc[0], rc[1]);
		if (rc[0]) {
			ck_assert_str_eq(e[0].msg, e[1].msg);
			ck_assert_int_eq(e[0].line, e[1].line);
		} else {
			ck_assert_str_eq(out[0].buf, out[1].buf);
			ck_assert_uint_eq(o[0].n_iters, 2);
			ck_assert_uint_eq(o[0].n_iters, o[1].n_iters);
			for (size_t j = 0; j < o[0].n_iters; j++) {
				ck_assert_uint_eq(o[0].iters[j].start, o[1].iters[j].start);
				ck_assert_uint_eq(o[0].iters[j].end, o[1].iters[j].end);
				ck_assert_msg(o[0].iters[j].first_taint == o[1].iters[j].first_taint,
					      "%s: message %zu: content at %ld, whole %ld", exprs[i], j,
					      o[0].iters[j].first_taint, o[1].iters[j].first_taint);
			}
		}
		for (int k = 0; k < 2; k++) {
			free(o[k].iters);
			strbuf_release(&tpl[k]);
			strbuf_release(&out[k]);
		}
	}
	cJSON_Delete(vars);
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
	tcase_add_test(tc, test_concat_chain_emitted_in_place);
	tcase_add_test(tc, test_vars_must_be_object);
	tcase_add_test(tc, test_huge_indices);
	suite_add_tcase(s, tc);
	/* each of these runs until a limit stops it: seconds under ASan on a busy machine */
	TCase *lt = tcase_create("limits");
	tcase_set_timeout(lt, 60);
	tcase_add_test(lt, test_limit_parser_depth);
	tcase_add_test(lt, test_limit_eval_depth);
	tcase_add_test(lt, test_limit_iterations);
	tcase_add_test(lt, test_limit_output_and_memory);
	suite_add_tcase(s, lt);
	return s;
}

FTK_TEST_MAIN(make_suite)
