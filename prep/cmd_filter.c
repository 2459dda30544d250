/*
 * cmd_filter.c: ftk-filter, keep the records that pass every check.
 * summary: drop records by field regex, length and Gopher/C4/FineWeb quality rules
 *
 * Checks run in a fixed order (--match, --exclude, length bounds, quality
 * rules) and a record is dropped at the first group that fails; within the
 * quality rules every failed rule is listed.  A dropped record goes to
 * --rejects with its reason, the rule's name (counted in the summary), and a
 * "detail" that gives the measured value against the bound
 * ("gopher.mean_word_length=11.2>10"), so a person can see how far off it was.
 *
 * Text checks (length and quality) look at the record's text as lib/record.h
 * defines it; --role narrows that to one role's messages.  Field checks look
 * at string values found by field pattern (prep/fields.h), or at the record
 * text when the field is "@text".
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/tool.h"
#include "lib/record.h"
#include "lib/tokenizer.h"
#include "prep/fields.h"
#include "prep/quality.h"

static const char *const usage[] = {
	"ftk-filter [options] [FILE...]", "",
	"Keep the records that pass every check; the rest go to --rejects with the",
	"rule that failed and the value measured.", NULL,
};

struct field_re {
	char *field;
	char *source;
	pcre2_code *re;
	pcre2_match_data *md;
	int exclude;
};

struct filter {
	struct ftk_tool *t;
	struct field_re *res;
	size_t n_res, alloc_res;
	const char *role;
	double min_chars, max_chars, min_words, max_words, min_tokens, max_tokens;
	struct ftk_tokenizer *tok;
	struct ftk_tokens ids;
	struct ftk_quality *q;
	int need_text;
	struct strbuf text, detail;
};

static void add_re(struct filter *f, const char *arg, int exclude)
{
	const char *eq = strchr(arg, '=');
	if (!eq || eq == arg)
		ftk_tool_usage_error(f->t, "%s wants FIELD=REGEX, got '%s'",
				     exclude ? "--exclude" : "--match", arg);
	int errcode;
	PCRE2_SIZE erroff;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)(eq + 1), PCRE2_ZERO_TERMINATED,
				       PCRE2_UTF | PCRE2_UCP, &errcode, &erroff, NULL);
	if (!re) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(errcode, msg, sizeof(msg));
		ftk_tool_usage_error(f->t, "bad regex '%s' at offset %zu: %s", eq + 1,
				     (size_t)erroff, (char *)msg);
	}
	pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
	FTK_ALLOC_GROW(f->res, f->n_res + 1, f->alloc_res);
	struct field_re *r = &f->res[f->n_res++];
	r->field = xstrndup(arg, (size_t)(eq - arg));
	r->source = xstrdup(eq + 1);
	r->re = re;
	r->md = pcre2_match_data_create_from_pattern(re, NULL);
	r->exclude = exclude;
	if (!strcmp(r->field, "@text"))
		f->need_text = 1;
}

static int re_hit(struct field_re *r, const char *s, size_t n)
{
	int rc = pcre2_match(r->re, (PCRE2_SPTR)s, n, 0, 0, r->md, NULL);
	return rc >= 0;
}

struct field_scan {
	struct field_re *r;
	int seen, hit;
	char *hit_path;
};

static int field_visit(void *ctx, const char *path, const char *val, size_t len,
		       struct strbuf *repl)
{
	struct field_scan *fs = ctx;
	(void)repl;
	if (!ftk_field_match(fs->r->field, path))
		return 0;
	fs->seen = 1;
	if (re_hit(fs->r, val, len)) {
		fs->hit = 1;
		fs->hit_path = xstrdup(path);
		return -100; /* stop: one hit decides */
	}
	return 0;
}

static void reject(struct filter *f, const struct ftk_line *line, const char *reason,
		   const char *detail, cJSON *failed)
{
	cJSON *x = cJSON_CreateObject();
	cJSON_AddStringToObject(x, "detail", detail);
	if (failed)
		cJSON_AddItemToObject(x, "failed", failed);
	ftk_tool_reject(f->t, line, reason, x);
}

/* Returns 1 when the record was rejected. */
static int check_fields(struct filter *f, const struct ftk_line *line)
{
	for (size_t i = 0; i < f->n_res; i++) {
		struct field_re *r = &f->res[i];
		struct field_scan fs = { r, 0, 0, NULL };
		if (!strcmp(r->field, "@text")) {
			fs.seen = 1;
			if (re_hit(r, f->text.buf, f->text.len)) {
				fs.hit = 1;
				fs.hit_path = xstrdup("@text");
			}
		} else {
			ftk_fields_walk(line->data, line->len, field_visit, &fs, NULL, NULL);
		}
		int bad = r->exclude ? fs.hit : !fs.hit;
		if (bad) {
			strbuf_reset(&f->detail);
			if (r->exclude)
				strbuf_addf(&f->detail, "exclude: %s matches /%s/", fs.hit_path,
					    r->source);
			else if (!fs.seen)
				strbuf_addf(&f->detail, "match: no string field '%s'", r->field);
			else
				strbuf_addf(&f->detail, "match: '%s' does not match /%s/", r->field,
					    r->source);
			reject(f, line, r->exclude ? "exclude" : "match", f->detail.buf, NULL);
		}
		free(fs.hit_path);
		if (bad)
			return 1;
	}
	return 0;
}

static size_t count_words(const char *s, size_t n)
{
	size_t w = 0;
	int in = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		int sp = c == ' ' || (c >= '\t' && c <= '\r');
		if (!sp && !in)
			w++;
		in = !sp;
	}
	return w;
}

static int check_bound(struct filter *f, const struct ftk_line *line, const char *name,
		       double v, double lo, double hi)
{
	const char *reason = NULL;
	double lim = 0;
	if (!isnan(lo) && v < lo) {
		reason = "<";
		lim = lo;
	} else if (!isnan(hi) && v > hi) {
		reason = ">";
		lim = hi;
	}
	if (!reason)
		return 0;
	strbuf_reset(&f->detail);
	strbuf_addf(&f->detail, "%s=%.0f%s%.0f", name, v, reason, lim);
	char rname[64];
	snprintf(rname, sizeof(rname), "length.%s_%s", *reason == '<' ? "min" : "max", name + 7);
	reject(f, line, rname, f->detail.buf, NULL);
	return 1;
}

static int check_text(struct filter *f, const struct ftk_line *line)
{
	const char *s = f->text.buf;
	size_t n = f->text.len;
	if (!isnan(f->min_chars) || !isnan(f->max_chars)) {
		size_t c = 0;
		for (size_t i = 0; i < n; i++)
			c += ((unsigned char)s[i] & 0xC0) != 0x80;
		if (check_bound(f, line, "length.chars", (double)c, f->min_chars, f->max_chars))
			return 1;
	}
	if (!isnan(f->min_words) || !isnan(f->max_words)) {
		if (check_bound(f, line, "length.words", (double)count_words(s, n), f->min_words,
				f->max_words))
			return 1;
	}
	if (f->tok && (!isnan(f->min_tokens) || !isnan(f->max_tokens))) {
		struct ftk_error err;
		long nt = ftk_tokenizer_encode(f->tok, s, n, 0, &f->ids, &err);
		if (nt < 0) {
			cJSON *x = cJSON_CreateObject();
			cJSON_AddStringToObject(x, "error", err.msg);
			ftk_tool_reject(f->t, line, "untokenizable", x);
			return 1;
		}
		if (check_bound(f, line, "length.tokens", (double)nt, f->min_tokens, f->max_tokens))
			return 1;
	}
	if (ftk_quality_enabled(f->q)) {
		const struct ftk_quality_fail *fails;
		int nf = ftk_quality_check(f->q, s, n, &fails);
		if (nf > 0) {
			cJSON *all = cJSON_CreateArray();
			struct strbuf one = STRBUF_INIT;
			for (int i = 0; i < nf; i++) {
				strbuf_reset(&one);
				ftk_quality_format(&fails[i], &one);
				cJSON_AddItemToArray(all, cJSON_CreateString(one.buf));
			}
			strbuf_reset(&f->detail);
			ftk_quality_format(&fails[0], &f->detail);
			reject(f, line, fails[0].rule, f->detail.buf, all);
			strbuf_release(&one);
			return 1;
		}
	}
	return 0;
}

static void list_rules(void)
{
	size_t n;
	const struct ftk_quality_rule *r = ftk_quality_rules(&n);
	struct strbuf sb = STRBUF_INIT;
	for (size_t i = 0; i < n; i++) {
		strbuf_reset(&sb);
		if (r[i].line_rule)
			strbuf_addstr(&sb, "line rule");
		if (!isnan(r[i].lo)) {
			strbuf_addstr(&sb, sb.len ? ", min " : ">= ");
			ftk_quality_format_num(&sb, r[i].lo);
		}
		if (!isnan(r[i].hi)) {
			strbuf_addstr(&sb, sb.len ? (r[i].line_rule ? ", max " : " and <= ") : "<= ");
			ftk_quality_format_num(&sb, r[i].hi);
		}
		printf("%-28s %-22s %s\n", r[i].name, sb.buf, r[i].what);
	}
	strbuf_release(&sb);
}

static void match_cb(const struct ftk_option *opt, const char *arg)
{
	add_re(opt->value, arg, !strcmp(opt->long_name, "exclude"));
}

static void set_cb(const struct ftk_option *opt, const char *arg)
{
	ftk_quality_enable(opt->value, opt->long_name, 1, NULL);
}

static void rule_cb(const struct ftk_option *opt, const char *arg)
{
	struct ftk_error err;
	if (ftk_quality_enable(opt->value, arg, !strcmp(opt->long_name, "rule"), &err) < 0)
		ftk_usage_error("%s", err.msg);
}

static void threshold_cb(const struct ftk_option *opt, const char *arg)
{
	struct ftk_error err;
	const char *eq = strchr(arg, '=');
	if (!eq)
		ftk_usage_error("--threshold needs NAME=BOUND, not '%s'", arg);
	char *name = xstrndup(arg, (size_t)(eq - arg));
	int rc = ftk_quality_set_bounds(opt->value, name, eq + 1, &err);
	free(name);
	if (rc < 0)
		ftk_usage_error("%s", err.msg);
}

int cmd_filter(int argc, char **argv)
{
	struct ftk_tool t;
	struct ftk_line line;
	struct filter f;
	struct ftk_error err;
	int list = 0;

	memset(&f, 0, sizeof(f));
	f.t = &t;
	f.min_chars = f.max_chars = f.min_words = f.max_words = f.min_tokens = f.max_tokens = NAN;
	const char *tok_path = NULL;
	f.q = ftk_quality_new();
	strbuf_init(&f.text, 0);
	strbuf_init(&f.detail, 0);
	ftk_tool_init(&t, "ftk-filter", NULL);
	struct ftk_option opts[] = {
		FTK_OPT_TEXT("\nField checks (FIELD is a path such as meta.source or messages[*].content, or\n"
			     "@text for the record's text; REGEX is PCRE2 with UTF and Unicode properties):\n"),
		FTK_OPT_CALLBACK(0, "match", &f, "FIELD=REGEX", match_cb,
				 "keep only records where a string at FIELD matches"),
		FTK_OPT_CALLBACK(0, "exclude", &f, "FIELD=REGEX", match_cb,
				 "drop records where a string at FIELD matches"),
		FTK_OPT_TEXT("Text checks (on the record's text, or one role's messages):\n"),
		FTK_OPT_STRING(0, "role", &f.role, "ROLE", "check only the content of ROLE's messages"),
		FTK_OPT_DOUBLE(0, "min-chars", &f.min_chars, "N", 0, HUGE_VAL, "at least N characters (code points)"),
		FTK_OPT_DOUBLE(0, "max-chars", &f.max_chars, "N", 0, HUGE_VAL, "at most N characters"),
		FTK_OPT_DOUBLE(0, "min-words", &f.min_words, "N", 0, HUGE_VAL, "at least N words (runs of non-space)"),
		FTK_OPT_DOUBLE(0, "max-words", &f.max_words, "N", 0, HUGE_VAL, "at most N words"),
		FTK_OPT_DOUBLE(0, "min-tokens", &f.min_tokens, "N", 0, HUGE_VAL, "at least N tokens of --tokenizer"),
		FTK_OPT_DOUBLE(0, "max-tokens", &f.max_tokens, "N", 0, HUGE_VAL, "at most N tokens of --tokenizer"),
		FTK_OPT_STRING(0, "tokenizer", &tok_path, "PATH",
			       "a model directory or tokenizer.json (no special\n"
			       "tokens are added: the text's own tokens)"),
		FTK_OPT_TEXT("Quality rules (published thresholds; see --list-rules):\n"),
		FTK_OPT_CALLBACK_NOARG(0, "gopher", f.q, set_cb, "Gopher quality and repetition rules"),
		FTK_OPT_CALLBACK_NOARG(0, "c4", f.q, set_cb, "C4 (TensorFlow Datasets) cleaning rules"),
		FTK_OPT_CALLBACK_NOARG(0, "fineweb", f.q, set_cb, "FineWeb's own rules"),
		FTK_OPT_CALLBACK(0, "rule", f.q, "NAME", rule_cb,
				 "switch a rule (a set, or a pattern like 'gopher.*gram') on"),
		FTK_OPT_CALLBACK(0, "no-rule", f.q, "NAME", rule_cb, "switch it off"),
		FTK_OPT_CALLBACK(0, "threshold", f.q, "NAME=BOUND", threshold_cb,
				 "change a bound: NUMBER, or LO:HI"),
		FTK_OPT_FLAG(0, "list-rules", &list, "print the rules and their bounds, and exit"),
		FTK_OPT_TOOL_COMMON(&t),
		FTK_OPT_END(),
	};
	argc = ftk_parse_options(argc, argv, "ftk-filter", opts, usage);
	if (list) {
		list_rules();
		ftk_quality_free(f.q);
		exit(0);
	}
	if ((!isnan(f.min_tokens) || !isnan(f.max_tokens)) && !tok_path)
		ftk_tool_usage_error(&t, "--min-tokens and --max-tokens need --tokenizer");
	if (tok_path && ftk_tokenizer_load(&f.tok, tok_path, &err) < 0)
		die("cannot load tokenizer: %s", FTK_ERROR_TEXT(&err));
	if (!isnan(f.min_chars) || !isnan(f.max_chars) || !isnan(f.min_words) ||
	    !isnan(f.max_words) || !isnan(f.min_tokens) || !isnan(f.max_tokens) ||
	    ftk_quality_enabled(f.q))
		f.need_text = 1;

	ftk_tool_start(&t, argc, argv);
	while (ftk_tool_next(&t, &line)) {
		cJSON *rec = ftk_tool_parse(&t, &line);
		if (!rec)
			continue;
		int pieces = 1;
		if (f.need_text) {
			strbuf_reset(&f.text);
			pieces = ftk_record_text(rec, f.role, &f.text);
		}
		if (pieces <= 0) {
			strbuf_reset(&f.detail);
			if (f.role)
				strbuf_addf(&f.detail, "no text in messages with role '%s'", f.role);
			else
				strbuf_addstr(&f.detail, "no text in a format ftk knows");
			reject(&f, &line, "no-text", f.detail.buf, NULL);
		} else if (!check_fields(&f, &line) && !check_text(&f, &line)) {
			ftk_tool_emit(&t, &line);
		}
		cJSON_Delete(rec);
	}
	int rc = ftk_tool_finish(&t);
	for (size_t i = 0; i < f.n_res; i++) {
		free(f.res[i].field);
		free(f.res[i].source);
		pcre2_match_data_free(f.res[i].md);
		pcre2_code_free(f.res[i].re);
	}
	free(f.res);
	ftk_quality_free(f.q);
	ftk_tokenizer_free(f.tok);
	ftk_tokens_release(&f.ids);
	strbuf_release(&f.text);
	strbuf_release(&f.detail);
	return rc;
}
