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

static const char usage[] =
	"usage: ftk-filter [options] [FILE...]\n"
	"Keep the records that pass every check; the rest go to --rejects with the\n"
	"rule that failed and the value measured.\n"
	"\n"
	"Field checks (FIELD is a path such as meta.source or messages[*].content, or\n"
	"@text for the record's text; REGEX is PCRE2 with UTF and Unicode properties):\n"
	"      --match FIELD=REGEX     keep only records where a string at FIELD matches\n"
	"      --exclude FIELD=REGEX   drop records where a string at FIELD matches\n"
	"Text checks (on the record's text, or one role's messages):\n"
	"      --role ROLE             check only the content of ROLE's messages\n"
	"      --min-chars N, --max-chars N   bounds in characters (code points)\n"
	"      --min-words N, --max-words N   bounds in words (runs of non-space)\n"
	"      --min-tokens N, --max-tokens N bounds in tokens of --tokenizer\n"
	"      --tokenizer PATH        a model directory or tokenizer.json (no special\n"
	"                              tokens are added: the text's own tokens)\n"
	"Quality rules (published thresholds; see --list-rules):\n"
	"      --gopher                Gopher quality and repetition rules\n"
	"      --c4                    C4 (TensorFlow Datasets) cleaning rules\n"
	"      --fineweb               FineWeb's own rules\n"
	"      --rule NAME             switch a rule (a set, or a pattern like 'gopher.*gram') on\n"
	"      --no-rule NAME          switch it off\n"
	"      --threshold NAME=BOUND  change a bound: NUMBER, or LO:HI\n"
	"      --list-rules            print the rules and their bounds, and exit\n"
	"\n"
	FTK_TOOL_COMMON_HELP;

enum {
	OPT_MATCH = FTK_OPT_FIRST_FREE,
	OPT_EXCLUDE,
	OPT_ROLE,
	OPT_MIN_CHARS,
	OPT_MAX_CHARS,
	OPT_MIN_WORDS,
	OPT_MAX_WORDS,
	OPT_MIN_TOKENS,
	OPT_MAX_TOKENS,
	OPT_TOKENIZER,
	OPT_GOPHER,
	OPT_C4,
	OPT_FINEWEB,
	OPT_RULE,
	OPT_NO_RULE,
	OPT_THRESHOLD,
	OPT_LIST_RULES,
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

static double parse_count(struct ftk_tool *t, const char *opt, const char *arg)
{
	char *end;
	double v = strtod(arg, &end);
	if (*end || end == arg || v < 0 || isnan(v))
		ftk_tool_usage_error(t, "%s wants a number >= 0, got '%s'", opt, arg);
	return v;
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

int cmd_filter(int argc, char **argv)
{
	static const struct option opts[] = {
		FTK_TOOL_LONGOPTS,
		{ "match", required_argument, NULL, OPT_MATCH },
		{ "exclude", required_argument, NULL, OPT_EXCLUDE },
		{ "role", required_argument, NULL, OPT_ROLE },
		{ "min-chars", required_argument, NULL, OPT_MIN_CHARS },
		{ "max-chars", required_argument, NULL, OPT_MAX_CHARS },
		{ "min-words", required_argument, NULL, OPT_MIN_WORDS },
		{ "max-words", required_argument, NULL, OPT_MAX_WORDS },
		{ "min-tokens", required_argument, NULL, OPT_MIN_TOKENS },
		{ "max-tokens", required_argument, NULL, OPT_MAX_TOKENS },
		{ "tokenizer", required_argument, NULL, OPT_TOKENIZER },
		{ "gopher", no_argument, NULL, OPT_GOPHER },
		{ "c4", no_argument, NULL, OPT_C4 },
		{ "fineweb", no_argument, NULL, OPT_FINEWEB },
		{ "rule", required_argument, NULL, OPT_RULE },
		{ "no-rule", required_argument, NULL, OPT_NO_RULE },
		{ "threshold", required_argument, NULL, OPT_THRESHOLD },
		{ "list-rules", no_argument, NULL, OPT_LIST_RULES },
		{ 0 },
	};
	struct ftk_tool t;
	struct ftk_line line;
	struct filter f;
	struct ftk_error err;
	int c;

	memset(&f, 0, sizeof(f));
	f.t = &t;
	f.min_chars = f.max_chars = f.min_words = f.max_words = f.min_tokens = f.max_tokens = NAN;
	const char *tok_path = NULL;
	f.q = ftk_quality_new();
	strbuf_init(&f.text, 0);
	strbuf_init(&f.detail, 0);
	ftk_tool_init(&t, "ftk-filter", usage);
	optind = 1;
	while ((c = getopt_long(argc, argv, FTK_TOOL_SHORTOPTS, opts, NULL)) != -1) {
		if (ftk_tool_opt(&t, c, optarg))
			continue;
		switch (c) {
		case OPT_MATCH: add_re(&f, optarg, 0); break;
		case OPT_EXCLUDE: add_re(&f, optarg, 1); break;
		case OPT_ROLE: f.role = optarg; break;
		case OPT_MIN_CHARS: f.min_chars = parse_count(&t, "--min-chars", optarg); break;
		case OPT_MAX_CHARS: f.max_chars = parse_count(&t, "--max-chars", optarg); break;
		case OPT_MIN_WORDS: f.min_words = parse_count(&t, "--min-words", optarg); break;
		case OPT_MAX_WORDS: f.max_words = parse_count(&t, "--max-words", optarg); break;
		case OPT_MIN_TOKENS: f.min_tokens = parse_count(&t, "--min-tokens", optarg); break;
		case OPT_MAX_TOKENS: f.max_tokens = parse_count(&t, "--max-tokens", optarg); break;
		case OPT_TOKENIZER: tok_path = optarg; break;
		case OPT_GOPHER: ftk_quality_enable(f.q, "gopher", 1, NULL); break;
		case OPT_C4: ftk_quality_enable(f.q, "c4", 1, NULL); break;
		case OPT_FINEWEB: ftk_quality_enable(f.q, "fineweb", 1, NULL); break;
		case OPT_RULE:
		case OPT_NO_RULE:
			if (ftk_quality_enable(f.q, optarg, c == OPT_RULE, &err) < 0)
				ftk_tool_usage_error(&t, "%s", err.msg);
			break;
		case OPT_THRESHOLD: {
			const char *eq = strchr(optarg, '=');
			if (!eq)
				ftk_tool_usage_error(&t, "--threshold wants NAME=BOUND, got '%s'", optarg);
			char *name = xstrndup(optarg, (size_t)(eq - optarg));
			int rc = ftk_quality_set_bounds(f.q, name, eq + 1, &err);
			free(name);
			if (rc < 0)
				ftk_tool_usage_error(&t, "%s", err.msg);
			break;
		}
		case OPT_LIST_RULES:
			list_rules();
			ftk_quality_free(f.q);
			exit(0);
		default:
			ftk_tool_usage_error(&t, NULL);
		}
	}
	if ((!isnan(f.min_tokens) || !isnan(f.max_tokens)) && !tok_path)
		ftk_tool_usage_error(&t, "--min-tokens and --max-tokens need --tokenizer");
	if (tok_path && ftk_tokenizer_load(&f.tok, tok_path, &err) < 0)
		die("cannot load tokenizer: %s", FTK_ERROR_TEXT(&err));
	if (!isnan(f.min_chars) || !isnan(f.max_chars) || !isnan(f.min_words) ||
	    !isnan(f.max_words) || !isnan(f.min_tokens) || !isnan(f.max_tokens) ||
	    ftk_quality_enabled(f.q))
		f.need_text = 1;

	ftk_tool_start(&t, argc - optind, argv + optind);
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
