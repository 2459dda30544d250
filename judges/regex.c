/*
 * regex.c: the regular-expression judge, a surface check.
 *
 * A regular expression is good at form ("the output starts with 'Answer:'",
 * "a [1] is present") and bad at meaning, so every metric this judge reports
 * is labelled surface.  When the suite says which semantic metric it stands in
 * for ("twin": "match.correct"), a report prints them side by side and
 * ftk_judge_case_flags() flags the cases where they disagree: a correct
 * answer the regex missed, or a regex hit on a wrong answer.
 *
 * Settings: "pattern" (PCRE2, searched anywhere in the answer text; a case's
 * "expected.pattern" overrides it), "flags" (any of "i" caseless, "m"
 * multiline, "s" dot-all, "x" extended), "expect" ("match", the default, or
 * "no_match" for patterns that must not appear), "twin" (a metric name such
 * as "match.correct").  Metric: "match" (surface, pass/fail, the verdict).
 * Text that is not valid UTF-8 is matched anyway (PCRE2_MATCH_INVALID_UTF:
 * a broken sequence matches nothing), so a garbled output is scored, not an
 * error.
 * Detail: {"pattern", "matched_text"}.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <string.h>
#include "judges/judges_int.h"
#include "lib/strbuf.h"

struct rx {
	char *pattern;		/* NULL: every case brings its own */
	uint32_t options;
	int expect_match;
	char *twin;
};

static int compile(const char *pat, uint32_t opts, pcre2_code **out, const char *field,
		   struct ftk_error *err)
{
	int ec;
	PCRE2_SIZE off;
	*out = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
			     opts | PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &ec, &off, NULL);
	if (*out)
		return 0;
	PCRE2_UCHAR buf[160];
	pcre2_get_error_message(ec, buf, sizeof(buf));
	return ftk_error_set(err, FTK_EDATA, NULL, 0, field,
			     "bad regular expression at offset %zu: %s", (size_t)off,
			     (const char *)buf);
}

static int create(void **state, const cJSON *s, const struct ftk_judge_env *env,
		  struct ftk_error *err)
{
	static const char *const known[] = { "pattern", "flags", "expect", "twin", NULL };
	const char *pat, *flags, *expect, *twin;
	int rc;
	if ((rc = jset_known(s, known, err)) < 0 ||
	    (rc = jset_str(s, "pattern", NULL, &pat, err)) < 0 ||
	    (rc = jset_str(s, "flags", "", &flags, err)) < 0 ||
	    (rc = jset_str(s, "expect", "match", &expect, err)) < 0 ||
	    (rc = jset_str(s, "twin", NULL, &twin, err)) < 0)
		return rc;
	uint32_t o = 0;
	for (const char *f = flags; *f; f++) {
		switch (*f) {
		case 'i': o |= PCRE2_CASELESS; break;
		case 'm': o |= PCRE2_MULTILINE; break;
		case 's': o |= PCRE2_DOTALL; break;
		case 'x': o |= PCRE2_EXTENDED; break;
		default:
			return ftk_error_set(err, FTK_EDATA, NULL, 0, "settings.flags",
					     "unknown flag '%c' (i, m, s, x)", *f);
		}
	}
	if (strcmp(expect, "match") && strcmp(expect, "no_match"))
		return ftk_error_set(err, FTK_EDATA, NULL, 0, "settings.expect",
				     "'expect' must be \"match\" or \"no_match\", not '%s'", expect);
	if (pat) {
		pcre2_code *re;
		if ((rc = compile(pat, o, &re, "settings.pattern", err)) < 0)
			return rc;
		pcre2_code_free(re);
	}
	struct rx *r = xcalloc(1, sizeof(*r));
	r->pattern = pat ? xstrdup(pat) : NULL;
	r->options = o;
	r->expect_match = !strcmp(expect, "match");
	r->twin = twin ? xstrdup(twin) : NULL;
	*state = r;
	return 0;
}

static void destroy(void *state)
{
	struct rx *r = state;
	if (!r)
		return;
	free(r->pattern);
	free(r->twin);
	free(r);
}

static int score(void *state, const cJSON *kase, const struct ftk_judge_output *out,
		 struct ftk_judge_result *res, struct ftk_error *err)
{
	struct rx *r = state;
	const cJSON *exp = cJSON_GetObjectItemCaseSensitive(kase, "expected");
	const cJSON *cp = cJSON_GetObjectItemCaseSensitive(exp, "pattern");
	const char *pat = cJSON_IsString(cp) ? cp->valuestring : r->pattern;
	if (!pat)
		return ftk_error_set(err, FTK_EDATA, NULL, 0, "expected.pattern",
				     "case '%s': no pattern in the settings or in 'expected.pattern'",
				     jcase_id(kase));
	pcre2_code *re;
	int rc = compile(pat, r->options, &re, "expected.pattern", err);
	if (rc < 0)
		return rc;
	const char *text = jtext_answer(out);
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
	int m = pcre2_match(re, (PCRE2_SPTR)text, strlen(text), 0, 0, md, NULL);
	if (m < 0 && m != PCRE2_ERROR_NOMATCH) {
		pcre2_match_data_free(md);
		pcre2_code_free(re);
		return ftk_error_msg(err, FTK_EDATA, "case '%s': matching failed (pcre2 error %d)",
				     jcase_id(kase), m);
	}
	int hit = m >= 0;
	int pass = hit == r->expect_match;
	cJSON_AddStringToObject(res->detail, "pattern", pat);
	if (hit) {
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		char *s = xstrndup(text + ov[0], ov[1] - ov[0]);
		cJSON_AddStringToObject(res->detail, "matched_text", s);
		free(s);
	} else {
		cJSON_AddNullToObject(res->detail, "matched_text");
	}
	pcre2_match_data_free(md);
	pcre2_code_free(re);
	res->primary = (int)ftk_judge_add_metric(res, "match", pass, FTK_METRIC_SURFACE, 1, r->twin);
	if (!pass)
		ftk_judge_add_failure(res, hit ? "pattern_present" : "pattern_absent",
				      hit ? "the output matches /%.80s/, which it must not"
					  : "the output does not match /%.80s/",
				      pat);
	return 0;
}

const struct ftk_judge_ops ftk_judge_regex_ops = {
	/* .name    = */ "regex",
	/* .summary = */ "a regular expression matches the output (a surface check, reported as one)",
	/* .create  = */ create,
	/* .score   = */ score,
	/* .destroy = */ destroy,
	/* .check   = */ NULL,
};
