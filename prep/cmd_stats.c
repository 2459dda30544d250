/*
 * cmd_stats.c: ftk-stats, what a dataset holds, at a glance.
 * summary: counts, lengths, turns, roles, formats and duplicate rate of a dataset
 *
 * One pass over the records.  Lengths are kept exactly (four bytes per
 * record) so that the quantiles are exact; distinct texts are estimated with
 * a HyperLogLog (prep/hll.h) so that memory does not grow with the number of
 * distinct texts.  The text of a record is what lib/record.h says it is,
 * normalized as --normalize says (lib/normalize.h) before hashing, so that
 * "Hello" and "hello " count as one text when the user wants that.
 *
 * The report goes to standard output (or -o): a table with small histograms
 * for a person, or JSON with --json for a program.  Records themselves are
 * not written anywhere; records that are not JSON objects go to --rejects
 * as in every tool.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include "cli/tool.h"
#include "lib/normalize.h"
#include "lib/record.h"
#include "lib/tokenizer.h"
#include "prep/hll.h"

static const char *const usage[] = {
	"ftk-stats [options] [FILE...]", "",
	"Count records, formats, roles and turns; show length distributions in",
	"characters (and tokens with --tokenizer); estimate the duplicate rate.", NULL,
};

static void normalize_cb(const struct ftk_option *opt, const char *arg)
{
	struct ftk_error err;
	if (ftk_normalize_parse(arg, opt->value, &err) < 0)
		ftk_usage_error("%s", err.msg);
}

struct dist {
	uint32_t *v;
	size_t n, alloc;
	uint64_t total;
};

static void dist_add(struct dist *d, uint64_t x)
{
	FTK_ALLOC_GROW(d->v, d->n + 1, d->alloc);
	d->v[d->n++] = x > UINT32_MAX ? UINT32_MAX : (uint32_t)x;
	d->total += x;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank quantile of a sorted distribution. */
static uint32_t quantile(const struct dist *d, double q)
{
	if (!d->n)
		return 0;
	size_t k = (size_t)ceil(q * (double)d->n);
	if (k < 1)
		k = 1;
	return d->v[k - 1];
}

struct counter {
	struct ftk_count *c;
	size_t n, alloc;
};

static void counter_add(struct counter *c, const char *key, uint64_t by)
{
	for (size_t i = 0; i < c->n; i++)
		if (!strcmp(c->c[i].key, key)) {
			c->c[i].n += by;
			return;
		}
	FTK_ALLOC_GROW(c->c, c->n + 1, c->alloc);
	c->c[c->n].key = xstrdup(key);
	c->c[c->n].n = by;
	c->n++;
}

static int cmp_count(const void *a, const void *b)
{
	const struct ftk_count *x = a, *y = b;
	if (x->n != y->n)
		return x->n < y->n ? 1 : -1;
	return strcmp(x->key, y->key);
}

static void counter_free(struct counter *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->c[i].key);
	free(c->c);
}

struct stats {
	uint64_t records, tool_calls, with_text;
	struct counter formats, roles;
	struct dist chars, tokens, turns;
	struct ftk_hll hll;
	unsigned norm;
	const char *role;
	struct ftk_tokenizer *tok;
	struct ftk_tokens ids;
	struct strbuf text, normed;
};

static size_t utf8_chars(const char *s, size_t n)
{
	size_t c = 0;
	for (size_t i = 0; i < n; i++)
		c += ((unsigned char)s[i] & 0xC0) != 0x80;
	return c;
}

static void count_messages(struct stats *st, const cJSON *msgs, const char *role_key)
{
	uint64_t turns = 0;
	const cJSON *m;
	cJSON_ArrayForEach(m, msgs) {
		const cJSON *r = cJSON_GetObjectItemCaseSensitive(m, role_key);
		const char *role = cJSON_IsString(r) ? r->valuestring : "(none)";
		counter_add(&st->roles, role, 1);
		if (strcmp(role, "system"))
			turns++;
		const cJSON *tc = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
		if (cJSON_IsArray(tc))
			st->tool_calls += (uint64_t)cJSON_GetArraySize(tc);
	}
	dist_add(&st->turns, turns);
}

static void add_record(struct stats *st, struct ftk_tool *t, const struct ftk_line *line,
		       const cJSON *rec)
{
	struct ftk_error err;
	enum ftk_format f = ftk_record_format(rec);
	st->records++;
	counter_add(&st->formats, ftk_format_name(f), 1);
	if (f == FTK_FMT_CHAT)
		count_messages(st, cJSON_GetObjectItemCaseSensitive(rec, "messages"), "role");
	else if (f == FTK_FMT_SHAREGPT)
		count_messages(st, cJSON_GetObjectItemCaseSensitive(rec, "conversations"), "from");

	strbuf_reset(&st->text);
	if (ftk_record_text(rec, st->role, &st->text) <= 0)
		return;
	st->with_text++;
	dist_add(&st->chars, utf8_chars(st->text.buf, st->text.len));
	if (st->tok) {
		long n = ftk_tokenizer_encode(st->tok, st->text.buf, st->text.len, 0, &st->ids,
					      &err);
		if (n < 0) {
			ftk_error_place(&err, line->file, line->lineno);
			ftk_tool_error_at(t, &err);
			t->failed = 1;
		} else {
			dist_add(&st->tokens, (uint64_t)n);
		}
	}
	strbuf_reset(&st->normed);
	const char *key = st->text.buf;
	size_t klen = st->text.len;
	if (st->norm && ftk_normalize(st->text.buf, st->text.len, st->norm, &st->normed, NULL) == 0) {
		key = st->normed.buf;
		klen = st->normed.len;
	}
	ftk_hll_add(&st->hll, XXH3_64bits(key, klen));
}

/* ------------------------------------------------------------ report */

static void add_num(struct strbuf *sb, uint64_t v)
{
	char buf[32], out[48];
	int n = snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v), k = 0;
	for (int i = 0; i < n; i++) {
		if (i && (n - i) % 3 == 0)
			out[k++] = ',';
		out[k++] = buf[i];
	}
	strbuf_add(sb, out, (size_t)k);
}

static void add_bar(struct strbuf *sb, uint64_t n, uint64_t max, int width)
{
	static const char *const part[] = { "", "\xe2\x96\x8f", "\xe2\x96\x8e", "\xe2\x96\x8d",
					    "\xe2\x96\x8c", "\xe2\x96\x8b", "\xe2\x96\x8a",
					    "\xe2\x96\x89" };
	uint64_t eighths = max ? (n * (uint64_t)width * 8 + max - 1) / max : 0;
	for (uint64_t i = 0; i < eighths / 8; i++)
		strbuf_addstr(sb, "\xe2\x96\x88");
	strbuf_addstr(sb, part[eighths % 8]);
}

struct bin {
	uint64_t lo, hi, n;	/* [lo, hi) */
};

/* Bins of one value each when the range is small, else powers of two. */
static size_t make_bins(const struct dist *d, struct bin *b, size_t cap)
{
	if (!d->n)
		return 0;
	uint32_t mn = d->v[0], mx = d->v[d->n - 1];
	size_t nb = 0;
	if (mx - mn < 16) {
		for (uint64_t x = mn; x <= mx && nb < cap; x++)
			b[nb++] = (struct bin){ x, x + 1, 0 };
	} else {
		uint64_t lo = 0;
		if (mn > 0)
			for (lo = 1; lo * 2 <= mn; lo *= 2)
				;
		if (lo == 0)
			b[nb++] = (struct bin){ 0, 1, 0 }, lo = 1;
		while (lo <= mx && nb < cap) {
			b[nb++] = (struct bin){ lo, lo * 2, 0 };
			lo *= 2;
		}
	}
	for (size_t i = 0, k = 0; i < d->n; i++) {
		while (k + 1 < nb && d->v[i] >= b[k].hi)
			k++;
		b[k].n++;
	}
	return nb;
}

static void table_dist(struct strbuf *sb, const char *name, const struct dist *d)
{
	struct bin b[40];
	if (!d->n)
		return;
	strbuf_addf(sb, "%-14s total ", name);
	add_num(sb, d->total);
	strbuf_addf(sb, "  mean %.1f  min ", (double)d->total / (double)d->n);
	add_num(sb, d->v[0]);
	strbuf_addstr(sb, "  p50 ");
	add_num(sb, quantile(d, 0.5));
	strbuf_addstr(sb, "  p90 ");
	add_num(sb, quantile(d, 0.9));
	strbuf_addstr(sb, "  p99 ");
	add_num(sb, quantile(d, 0.99));
	strbuf_addstr(sb, "  max ");
	add_num(sb, d->v[d->n - 1]);
	strbuf_addch(sb, '\n');
	size_t nb = make_bins(d, b, FTK_ARRAY_SIZE(b));
	uint64_t mx = 0;
	for (size_t i = 0; i < nb; i++)
		if (b[i].n > mx)
			mx = b[i].n;
	for (size_t i = 0; i < nb; i++) {
		char range[64];
		if (b[i].hi == b[i].lo + 1)
			snprintf(range, sizeof(range), "%llu", (unsigned long long)b[i].lo);
		else
			snprintf(range, sizeof(range), "%llu-%llu", (unsigned long long)b[i].lo,
				 (unsigned long long)b[i].hi - 1);
		struct strbuf cnt = STRBUF_INIT;
		add_num(&cnt, b[i].n);
		strbuf_addf(sb, "  %17s %10s ", range, cnt.buf);
		strbuf_release(&cnt);
		add_bar(sb, b[i].n, mx, 30);
		strbuf_addch(sb, '\n');
	}
}

static void table_counter(struct strbuf *sb, const char *name, struct counter *c, uint64_t of)
{
	if (c->n)
		qsort(c->c, c->n, sizeof(*c->c), cmp_count);
	strbuf_addf(sb, "%-14s", name);
	for (size_t i = 0; i < c->n; i++) {
		strbuf_addf(sb, "%s%s ", i ? "  " : " ", c->c[i].key);
		add_num(sb, c->c[i].n);
		if (of)
			strbuf_addf(sb, " (%.1f%%)", 100.0 * (double)c->c[i].n / (double)of);
	}
	strbuf_addch(sb, '\n');
}

static cJSON *json_dist(const struct dist *d)
{
	struct bin b[40];
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "n", (double)d->n);
	cJSON_AddNumberToObject(o, "total", (double)d->total);
	cJSON_AddNumberToObject(o, "mean", d->n ? (double)d->total / (double)d->n : 0);
	cJSON_AddNumberToObject(o, "min", d->n ? d->v[0] : 0);
	cJSON_AddNumberToObject(o, "p50", quantile(d, 0.5));
	cJSON_AddNumberToObject(o, "p90", quantile(d, 0.9));
	cJSON_AddNumberToObject(o, "p99", quantile(d, 0.99));
	cJSON_AddNumberToObject(o, "max", d->n ? d->v[d->n - 1] : 0);
	cJSON *h = cJSON_AddArrayToObject(o, "histogram");
	size_t nb = make_bins(d, b, FTK_ARRAY_SIZE(b));
	for (size_t i = 0; i < nb; i++) {
		cJSON *x = cJSON_CreateObject();
		cJSON_AddNumberToObject(x, "lo", (double)b[i].lo);
		cJSON_AddNumberToObject(x, "hi", (double)b[i].hi);
		cJSON_AddNumberToObject(x, "n", (double)b[i].n);
		cJSON_AddItemToArray(h, x);
	}
	return o;
}

static cJSON *json_counter(struct counter *c)
{
	if (c->n)
		qsort(c->c, c->n, sizeof(*c->c), cmp_count);
	cJSON *o = cJSON_CreateObject();
	for (size_t i = 0; i < c->n; i++)
		cJSON_AddNumberToObject(o, c->c[i].key, (double)c->c[i].n);
	return o;
}

static void report(struct stats *st, int json, struct strbuf *sb)
{
	struct dist *ds[] = { &st->chars, &st->tokens, &st->turns };
	for (size_t i = 0; i < FTK_ARRAY_SIZE(ds); i++)
		if (ds[i]->n) /* qsort must not get NULL, even for no elements */
			qsort(ds[i]->v, ds[i]->n, sizeof(uint32_t), cmp_u32);
	double distinct = ftk_hll_estimate(&st->hll);
	uint64_t texts = st->with_text;
	if (distinct > (double)texts)
		distinct = (double)texts;
	double rate = texts ? 1.0 - distinct / (double)texts : 0;
	double err = texts ? ftk_hll_rel_error(&st->hll) * distinct / (double)texts : 0;
	char normname[64];
	ftk_normalize_name(st->norm, normname, sizeof(normname));
	if (json) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, "records", (double)st->records);
		cJSON_AddNumberToObject(o, "records_with_text", (double)texts);
		cJSON_AddItemToObject(o, "formats", json_counter(&st->formats));
		cJSON_AddItemToObject(o, "chars", json_dist(&st->chars));
		if (st->tok)
			cJSON_AddItemToObject(o, "tokens", json_dist(&st->tokens));
		if (st->turns.n)
			cJSON_AddItemToObject(o, "turns", json_dist(&st->turns));
		cJSON_AddItemToObject(o, "roles", json_counter(&st->roles));
		cJSON_AddNumberToObject(o, "tool_calls", (double)st->tool_calls);
		cJSON *d = cJSON_AddObjectToObject(o, "duplicates");
		cJSON_AddStringToObject(d, "method", "hyperloglog");
		cJSON_AddNumberToObject(d, "precision", st->hll.p);
		cJSON_AddStringToObject(d, "normalize", normname);
		cJSON_AddNumberToObject(d, "distinct_estimate", round(distinct));
		cJSON_AddNumberToObject(d, "rate_estimate", rate);
		cJSON_AddNumberToObject(d, "rate_stderr", err);
		char *s = cJSON_PrintUnformatted(o);
		strbuf_addstr(sb, s);
		strbuf_addch(sb, '\n');
		cJSON_free(s);
		cJSON_Delete(o);
		return;
	}
	strbuf_addf(sb, "%-14s ", "records");
	add_num(sb, st->records);
	if (texts != st->records) {
		strbuf_addstr(sb, " (");
		add_num(sb, texts);
		strbuf_addstr(sb, " with text)");
	}
	strbuf_addch(sb, '\n');
	table_counter(sb, "formats", &st->formats, st->records);
	table_dist(sb, st->role ? "chars (role)" : "chars", &st->chars);
	if (st->tok)
		table_dist(sb, "tokens", &st->tokens);
	if (st->turns.n)
		table_dist(sb, "turns", &st->turns);
	if (st->roles.n)
		table_counter(sb, "roles", &st->roles, 0);
	if (st->tool_calls) {
		strbuf_addf(sb, "%-14s ", "tool calls");
		add_num(sb, st->tool_calls);
		strbuf_addch(sb, '\n');
	}
	strbuf_addf(sb, "%-14s ~%.1f%% +/- %.1f%% (HyperLogLog p=%d: ~", "duplicates",
		    100 * rate, 100 * err, st->hll.p);
	add_num(sb, (uint64_t)llround(distinct));
	strbuf_addstr(sb, " distinct of ");
	add_num(sb, texts);
	strbuf_addf(sb, " texts, normalized %s)\n", normname);
}

int cmd_stats(int argc, char **argv)
{
	struct ftk_tool t;
	struct ftk_line line;
	struct stats st;
	struct ftk_error err;
	const char *tok_path = NULL;
	int json = 0, p = 14;

	memset(&st, 0, sizeof(st));
	st.norm = FTK_NORM_NFC | FTK_NORM_CASE | FTK_NORM_SPACE;
	ftk_tool_init(&t, "ftk-stats", NULL);
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Options"),
		FTK_OPT_FLAG(0, "json", &json, "write the report as JSON instead of a table"),
		FTK_OPT_STRING(0, "tokenizer", &tok_path, "PATH",
			       "also count tokens (a model directory or tokenizer.json)"),
		FTK_OPT_STRING(0, "role", &st.role, "ROLE", "lengths of ROLE's messages only"),
		FTK_OPT_CALLBACK(0, "normalize", &st.norm, "LIST", normalize_cb,
				 "how texts are compared for duplicates (default\n"
				 "nfc,case,space; see ftk-dedupe)"),
		FTK_OPT_INT(0, "precision", &p, "P", 4, 18, "HyperLogLog registers 2^P, 4..18 (default 14: 0.8%)"),
		FTK_OPT_TOOL_COMMON(&t),
		FTK_OPT_END(),
	};
	argc = ftk_parse_options(argc, argv, "ftk-stats", opts, usage);
	if (tok_path && ftk_tokenizer_load(&st.tok, tok_path, &err) < 0)
		die("cannot load tokenizer: %s", FTK_ERROR_TEXT(&err));
	ftk_hll_init(&st.hll, p);
	strbuf_init(&st.text, 0);
	strbuf_init(&st.normed, 0);

	ftk_tool_start(&t, argc, argv);
	while (ftk_tool_next(&t, &line)) {
		cJSON *rec = ftk_tool_parse(&t, &line);
		if (!rec)
			continue;
		add_record(&st, &t, &line, rec);
		cJSON_Delete(rec);
	}
	struct strbuf sb = STRBUF_INIT;
	report(&st, json, &sb);
	if (ftk_writer_write(t.out, sb.buf, sb.len) < 0)
		t.failed = 1;
	strbuf_release(&sb);
	ftk_tool_count(&t, "records-counted", st.records);
	int rc = ftk_tool_finish(&t);
	ftk_tokenizer_free(st.tok);
	ftk_tokens_release(&st.ids);
	ftk_hll_release(&st.hll);
	counter_free(&st.formats);
	counter_free(&st.roles);
	free(st.chars.v);
	free(st.tokens.v);
	free(st.turns.v);
	strbuf_release(&st.text);
	strbuf_release(&st.normed);
	return rc;
}
