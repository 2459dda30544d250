/*
 * extract.c: answer extraction from generated text, as lm-evaluation-harness
 * scores generation tasks such as GSM8K.
 *
 * A generation task's number depends on how the answer is pulled out of the
 * text as much as on the model: GSM8K's "strict-match" wants the model to
 * write "#### 42", its "flexible-extract" takes the last number anywhere.
 * This judge does either, or a suite's own pattern, and compares the result
 * with the case's "expected.answer" (or, for a multiple-choice case, the
 * letter of its "answer" index) the way the harness's exact_match does after
 * its filters.  Running two of them on one suite, each with "compare_as",
 * is how a summary shows that the method, not the model, moved the score.
 *
 * Settings:
 *   method   "strict" (default): the first match of `#### (\-?[0-9\.\,]+)`;
 *            "flexible": the last number, the harness's
 *            `(-?[$0-9.,]{2,})|(-?[0-9]+)` (first non-empty group of the
 *            last match), or with answer "letter" the last standalone
 *            letter A-Z (`\b([A-Z])\b`);
 *            "regex:PATTERN": the first match of PATTERN, its first group
 *            when it has one;
 *   answer   "number" (default) or "letter" (flexible's target);
 *   strict_pattern  replaces strict's pattern.
 * Both sides are then normalised as the harness's gsm8k exact_match is
 * configured: ',' '$' removed, everything through the last "#### " removed,
 * a trailing '.' removed, and compared ignoring case.  Nothing extracted is
 * the harness's "[invalid]": a wrong answer, with failure "no_answer".
 * Metric: "exact_match" (semantic, pass/fail, the verdict).
 * Detail: {"method", "extracted", "expected"}.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <string.h>
#include <strings.h>
#include "judges/judges_int.h"
#include "lib/strbuf.h"

#define STRICT_PATTERN "#### (\\-?[0-9\\.\\,]+)"
#define FLEX_NUMBER "(-?[$0-9.,]{2,})|(-?[0-9]+)"
#define FLEX_LETTER "\\b([A-Z])\\b"

struct ex {
	char *method;		/* for the detail */
	pcre2_code *re;
	int last;		/* take the last match (flexible), else the first */
	int letter;
};

static int compile(const char *pat, pcre2_code **out, const char *field, struct ftk_error *err)
{
	int ec;
	PCRE2_SIZE off;
	*out = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_MATCH_INVALID_UTF,
			     &ec, &off, NULL);
	if (*out)
		return 0;
	PCRE2_UCHAR buf[160];
	pcre2_get_error_message(ec, buf, sizeof(buf));
	return ftk_error_set(err, FTK_EDATA, NULL, 0, field, "bad regular expression at offset %zu: %s",
			     (size_t)off, (const char *)buf);
}

static int create(void **state, const cJSON *s, const struct ftk_judge_env *env,
		  struct ftk_error *err)
{
	static const char *const known[] = { "method", "answer", "strict_pattern", NULL };
	const char *method, *answer, *strict;
	int rc;
	if ((rc = jset_known(s, known, err)) < 0 ||
	    (rc = jset_str(s, "method", "strict", &method, err)) < 0 ||
	    (rc = jset_str(s, "answer", "number", &answer, err)) < 0 ||
	    (rc = jset_str(s, "strict_pattern", STRICT_PATTERN, &strict, err)) < 0)
		return rc;
	if (strcmp(answer, "number") && strcmp(answer, "letter"))
		return ftk_error_set(err, FTK_EDATA, NULL, 0, "settings.answer",
				     "'answer' must be \"number\" or \"letter\", not '%s'", answer);
	struct ex *x = xcalloc(1, sizeof(*x));
	x->letter = !strcmp(answer, "letter");
	const char *pat;
	if (!strcmp(method, "strict"))
		pat = strict;
	else if (!strcmp(method, "flexible")) {
		pat = x->letter ? FLEX_LETTER : FLEX_NUMBER;
		x->last = 1;
	} else if (!strncmp(method, "regex:", 6) && method[6])
		pat = method + 6;
	else {
		free(x);
		return ftk_error_set(err, FTK_EDATA, NULL, 0, "settings.method",
				     "unknown method '%s' (strict, flexible, regex:PATTERN)", method);
	}
	if ((rc = compile(pat, &x->re, "settings.method", err)) < 0) {
		free(x);
		return rc;
	}
	x->method = xstrdup(method);
	*state = x;
	return 0;
}

static void destroy(void *state)
{
	struct ex *x = state;
	if (!x)
		return;
	pcre2_code_free(x->re);
	free(x->method);
	free(x);
}

/* The chosen match's text: its first non-empty group, else the whole match. */
static int extract(const struct ex *x, const char *text, struct strbuf *out)
{
	size_t len = strlen(text), at = 0;
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(x->re, NULL);
	int found = 0;
	while (at <= len) {
		int m = pcre2_match(x->re, (PCRE2_SPTR)text, len, at, 0, md, NULL);
		if (m < 0)
			break;
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		size_t b = ov[0], e = ov[1];
		for (int g = 1; g < m; g++)
			if (ov[2 * g] != PCRE2_UNSET && ov[2 * g + 1] > ov[2 * g]) {
				b = ov[2 * g];
				e = ov[2 * g + 1];
				break;
			}
		while (b < e && strchr(" \t\n\r\v\f", text[b]))	/* the harness strip()s the match */
			b++;
		while (e > b && strchr(" \t\n\r\v\f", text[e - 1]))
			e--;
		strbuf_reset(out);
		strbuf_add(out, text + b, e - b);
		found = 1;
		if (!x->last)
			break;
		at = ov[1] > ov[0] ? ov[1] : ov[1] + 1;
	}
	pcre2_match_data_free(md);
	return found;
}

/* The harness's gsm8k filters: ',' and '$' out, through the last "#### " out, a final '.' out. */
static void normalise(const char *s, struct strbuf *out)
{
	const char *p = s, *q;
	while ((q = strstr(p, "#### ")))
		p = q + 5;
	strbuf_reset(out);
	for (; *p; p++)
		if (*p != ',' && *p != '$')
			strbuf_addch(out, *p);
	if (out->len && out->buf[out->len - 1] == '.')
		strbuf_setlen(out, out->len - 1);
}

static int score(void *state, const cJSON *kase, const struct ftk_judge_output *out,
		 struct ftk_judge_result *res, struct ftk_error *err)
{
	struct ex *x = state;
	const cJSON *exp = cJSON_GetObjectItemCaseSensitive(kase, "expected");
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(exp, "answer");
	const cJSON *idx = cJSON_GetObjectItemCaseSensitive(kase, "answer");
	char gold[64];
	const char *want;
	if (cJSON_IsString(a))
		want = a->valuestring;
	else if (cJSON_IsNumber(a)) {
		snprintf(gold, sizeof(gold), "%.17g", a->valuedouble);
		want = gold;
	} else if (x->letter && cJSON_IsNumber(idx) && idx->valuedouble >= 0 && idx->valuedouble < 26) {
		gold[0] = (char)('A' + (int)idx->valuedouble);
		gold[1] = 0;
		want = gold;
	} else
		return ftk_error_set(err, FTK_EDATA, NULL, 0, "expected.answer",
				     "case '%s': no expected answer to compare with", jcase_id(kase));
	struct strbuf got = STRBUF_INIT, g = STRBUF_INIT, w = STRBUF_INIT;
	int found = extract(x, jtext_answer(out), &got);
	normalise(got.buf ? got.buf : "", &g);
	normalise(want, &w);
	int pass = found && g.len == w.len && !strncasecmp(g.buf ? g.buf : "", w.buf ? w.buf : "", g.len);
	cJSON_AddStringToObject(res->detail, "method", x->method);
	if (found)
		cJSON_AddStringToObject(res->detail, "extracted", got.buf);
	else
		cJSON_AddNullToObject(res->detail, "extracted");
	cJSON_AddStringToObject(res->detail, "expected", want);
	res->primary = (int)ftk_judge_add_metric(res, "exact_match", pass, FTK_METRIC_SEMANTIC, 1, NULL);
	if (!found)
		ftk_judge_add_failure(res, "no_answer", "no answer found by the %s method", x->method);
	else if (!pass)
		ftk_judge_add_failure(res, "wrong_answer", "extracted '%.60s', expected '%.60s'", got.buf,
				      want);
	strbuf_release(&got);
	strbuf_release(&g);
	strbuf_release(&w);
	return 0;
}

const struct ftk_judge_ops ftk_judge_extract_ops = {
	/* .name    = */ "extract",
	/* .summary = */ "an answer pulled from generated text (strict '#### N', the last number or letter, a regex) equals the expected one",
	/* .create  = */ create,
	/* .score   = */ score,
	/* .destroy = */ destroy,
	/* .check   = */ NULL,
};
