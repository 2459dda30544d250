/*
 * quality.c: Gopher, C4 and FineWeb quality rules (see quality.h).
 *
 * One pass over the text splits it into words (with their cores, hashes and
 * character counts) and lines; every measure is computed from those arrays,
 * so a record is decoded once whatever the number of rules.  Duplicate lines,
 * paragraphs and n-grams are found with 64-bit xxHash values in an
 * open-addressing table that is cleared, not freed, between records; a hash
 * collision can only make two different n-grams look alike, with a
 * probability far below anything the thresholds can see.
 */
#include <fnmatch.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <xxhash.h>
#include "prep/quality.h"

enum {
	R_WORDS, R_MEAN_LEN, R_HASH, R_ELLIPSIS, R_BULLET_LINES, R_ELLIPSIS_LINES, R_ALPHA,
	R_STOP, R_DUP_LINES, R_DUP_PARAS, R_DUP_LINE_CHARS, R_DUP_PARA_CHARS,
	R_TOP2, R_TOP3, R_TOP4, R_DUP5, R_DUP6, R_DUP7, R_DUP8, R_DUP9, R_DUP10,
	R_C4_PUNCT, R_C4_MIN_WORDS, R_C4_MAX_WORD, R_C4_LOREM, R_C4_JS, R_C4_CURLY,
	R_C4_POLICY, R_C4_SENTENCES,
	R_FW_PUNCT, R_FW_SHORT, R_FW_DUP_CHARS, R_FW_NEWLINES,
	R_COUNT
};

static const struct ftk_quality_rule rules[R_COUNT] = {
	[R_WORDS] = { "gopher.word_count", 50, 100000, 0, "non-symbol words, 50 to 100,000" },
	[R_MEAN_LEN] = { "gopher.mean_word_length", 3, 10, 0, "mean word length, 3 to 10 characters" },
	[R_HASH] = { "gopher.hash_ratio", NAN, 0.1, 0, "'#' per word, at most 0.1" },
	[R_ELLIPSIS] = { "gopher.ellipsis_ratio", NAN, 0.1, 0, "'...' or '\xe2\x80\xa6' per word, at most 0.1" },
	[R_BULLET_LINES] = { "gopher.bullet_lines", NAN, 0.9, 0, "lines starting with a bullet, at most 90%" },
	[R_ELLIPSIS_LINES] = { "gopher.ellipsis_lines", NAN, 0.3, 0, "lines ending with an ellipsis, at most 30%" },
	[R_ALPHA] = { "gopher.alpha_words", 0.8, NAN, 0, "words with a letter, at least 80%" },
	[R_STOP] = { "gopher.stop_words", 2, NAN, 0, "stop words (the be to of and that have with), at least 2" },
	[R_DUP_LINES] = { "gopher.dup_lines", NAN, 0.3, 0, "duplicate lines, at most 30% of lines" },
	[R_DUP_PARAS] = { "gopher.dup_paragraphs", NAN, 0.3, 0, "duplicate paragraphs, at most 30% of paragraphs" },
	[R_DUP_LINE_CHARS] = { "gopher.dup_line_chars", NAN, 0.2, 0, "characters in duplicate lines, at most 20%" },
	[R_DUP_PARA_CHARS] = { "gopher.dup_paragraph_chars", NAN, 0.2, 0, "characters in duplicate paragraphs, at most 20%" },
	[R_TOP2] = { "gopher.top_2gram", NAN, 0.20, 0, "characters in the most frequent 2-gram, at most 20%" },
	[R_TOP3] = { "gopher.top_3gram", NAN, 0.18, 0, "characters in the most frequent 3-gram, at most 18%" },
	[R_TOP4] = { "gopher.top_4gram", NAN, 0.16, 0, "characters in the most frequent 4-gram, at most 16%" },
	[R_DUP5] = { "gopher.dup_5gram", NAN, 0.15, 0, "characters in duplicated 5-grams, at most 15%" },
	[R_DUP6] = { "gopher.dup_6gram", NAN, 0.14, 0, "characters in duplicated 6-grams, at most 14%" },
	[R_DUP7] = { "gopher.dup_7gram", NAN, 0.13, 0, "characters in duplicated 7-grams, at most 13%" },
	[R_DUP8] = { "gopher.dup_8gram", NAN, 0.12, 0, "characters in duplicated 8-grams, at most 12%" },
	[R_DUP9] = { "gopher.dup_9gram", NAN, 0.11, 0, "characters in duplicated 9-grams, at most 11%" },
	[R_DUP10] = { "gopher.dup_10gram", NAN, 0.10, 0, "characters in duplicated 10-grams, at most 10%" },
	[R_C4_PUNCT] = { "c4.terminal_punct", NAN, NAN, 1, "drop lines not ending in . ? ! or \"" },
	[R_C4_MIN_WORDS] = { "c4.min_words_per_line", 5, NAN, 1, "drop lines of fewer than 5 words" },
	[R_C4_MAX_WORD] = { "c4.max_word_length", NAN, 1000, 1, "drop lines with a word over 1000 characters" },
	[R_C4_LOREM] = { "c4.lorem_ipsum", NAN, 0, 0, "no \"lorem ipsum\" in a kept line" },
	[R_C4_JS] = { "c4.javascript", NAN, NAN, 1, "drop lines mentioning \"javascript\"" },
	[R_C4_CURLY] = { "c4.curly_bracket", NAN, 0, 0, "no '{' in a kept line" },
	[R_C4_POLICY] = { "c4.policy", NAN, NAN, 1, "drop lines about terms of use, privacy or cookie policy" },
	[R_C4_SENTENCES] = { "c4.sentences", 3, NAN, 0, "sentences left after the line rules, at least 3" },
	[R_FW_PUNCT] = { "fineweb.line_punct", 0.12, NAN, 0, "lines ending in terminal punctuation, at least 12%" },
	[R_FW_SHORT] = { "fineweb.short_lines", NAN, 0.67, 0, "lines of 30 characters or fewer, at most 67%" },
	[R_FW_DUP_CHARS] = { "fineweb.dup_line_chars", NAN, 0.01, 0, "characters in duplicate lines, at most 1%" },
	[R_FW_NEWLINES] = { "fineweb.newline_ratio", NAN, 0.3, 0, "newlines per word, at most 0.3" },
};

struct word {
	uint32_t start, len;	/* bytes of the whole word in the text */
	uint32_t core_chars;	/* code points of the core */
	uint32_t chars;		/* code points of the whole word */
	uint64_t h;		/* hash of the lowercased core */
	uint8_t alpha;		/* has a letter */
	uint8_t symbol;		/* core is empty */
};

struct line {
	uint32_t start, len;	/* trimmed */
	uint32_t chars;
	uint64_t h;
};

struct ftk_quality {
	unsigned char on[R_COUNT];
	double lo[R_COUNT], hi[R_COUNT];
	double value[R_COUNT];
	struct ftk_quality_fail fails[R_COUNT];

	struct word *words;
	size_t n_words, alloc_words;
	uint64_t *grams;	/* hashes of non-symbol cores, in order */
	uint64_t *prefix;	/* prefix[i] = polynomial hash of grams[0..i) */
	unsigned char *rep;	/* rep[i]: the k-gram at i occurs more than once */
	size_t alloc_rep;
	uint32_t *gram_chars;
	size_t n_grams, alloc_grams;
	struct line *lines, *paras;
	size_t n_lines, alloc_lines, n_paras, alloc_paras;
	uint64_t *tab_key;
	uint32_t *tab_cnt;
	size_t tab_size;
};

const struct ftk_quality_rule *ftk_quality_rules(size_t *n)
{
	*n = R_COUNT;
	return rules;
}

static void ascii_class_init(void);

struct ftk_quality *ftk_quality_new(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, ascii_class_init);
	struct ftk_quality *q = xcalloc(1, sizeof(*q));
	for (int i = 0; i < R_COUNT; i++) {
		q->lo[i] = rules[i].lo;
		q->hi[i] = rules[i].hi;
		q->value[i] = NAN;
	}
	return q;
}

void ftk_quality_free(struct ftk_quality *q)
{
	if (!q)
		return;
	free(q->words);
	free(q->grams);
	free(q->prefix);
	free(q->rep);
	free(q->gram_chars);
	free(q->lines);
	free(q->paras);
	free(q->tab_key);
	free(q->tab_cnt);
	free(q);
}

static int find_rule(const char *name)
{
	for (int i = 0; i < R_COUNT; i++)
		if (!strcmp(rules[i].name, name))
			return i;
	return -1;
}

int ftk_quality_enable(struct ftk_quality *q, const char *spec, int on, struct ftk_error *err)
{
	size_t n = strlen(spec);
	int hit = 0;
	for (int i = 0; i < R_COUNT; i++) {
		const char *r = rules[i].name;
		int m;
		if (strpbrk(spec, "*?["))
			m = !fnmatch(spec, r, 0);
		else
			m = !strcmp(r, spec) || (!strncmp(r, spec, n) && r[n] == '.');
		if (m) {
			q->on[i] = (unsigned char)on;
			hit++;
		}
	}
	if (!hit)
		return ftk_error_msg(err, FTK_ENOTFOUND,
				     "unknown quality rule '%s' (see --list-rules)", spec);
	return hit;
}

int ftk_quality_enabled(const struct ftk_quality *q)
{
	int n = 0;
	for (int i = 0; i < R_COUNT; i++)
		n += q->on[i];
	return n;
}

static int parse_num(const char *s, size_t n, double *v)
{
	char buf[64], *end;
	if (n == 0) {
		*v = NAN;
		return 0;
	}
	if (n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = 0;
	*v = strtod(buf, &end);
	return *end || isnan(*v) ? -1 : 0;
}

int ftk_quality_set_bounds(struct ftk_quality *q, const char *rule, const char *value,
			   struct ftk_error *err)
{
	int i = find_rule(rule);
	if (i < 0)
		return ftk_error_msg(err, FTK_ENOTFOUND,
				     "unknown quality rule '%s' (see --list-rules)", rule);
	const char *colon = strchr(value, ':');
	double lo, hi;
	if (colon) {
		if (parse_num(value, (size_t)(colon - value), &lo) < 0 ||
		    parse_num(colon + 1, strlen(colon + 1), &hi) < 0)
			goto bad;
		q->lo[i] = lo;
		q->hi[i] = hi;
		return 0;
	}
	if (parse_num(value, strlen(value), &hi) < 0 || isnan(hi))
		goto bad;
	if (!isnan(rules[i].hi) || isnan(rules[i].lo))
		q->hi[i] = hi;
	else
		q->lo[i] = hi;
	return 0;
bad:
	return ftk_error_msg(err, FTK_EUSAGE, "bad bounds '%s' for '%s': expected NUMBER or LO:HI",
			     value, rule);
}

double ftk_quality_value(const struct ftk_quality *q, const char *rule)
{
	int i = find_rule(rule);
	return i < 0 ? NAN : q->value[i];
}

void ftk_quality_format_num(struct strbuf *sb, double v)
{
	if (v == floor(v) && fabs(v) < 1e15) {
		strbuf_addf(sb, "%.0f", v);
		return;
	}
	char buf[64];
	snprintf(buf, sizeof(buf), "%.3f", v);
	size_t n = strlen(buf);
	while (n > 1 && buf[n - 1] == '0')
		n--;
	if (buf[n - 1] == '.')
		n--;
	strbuf_add(sb, buf, n);
}

void ftk_quality_format(const struct ftk_quality_fail *f, struct strbuf *sb)
{
	strbuf_addf(sb, "%s=", f->rule);
	ftk_quality_format_num(sb, f->value);
	strbuf_addch(sb, f->below ? '<' : '>');
	ftk_quality_format_num(sb, f->limit);
}

/* ------------------------------------------------------------ text units */

/* Decode one code point at s[i]; returns its length (1 for a bad byte). */
static int cp_at(const unsigned char *s, size_t n, size_t i, int32_t *cp)
{
	if (s[i] < 0x80) {
		*cp = s[i];
		return 1;
	}
	utf8proc_ssize_t k = utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), cp);
	if (k <= 0) {
		*cp = 0xFFFD;
		return 1;
	}
	return (int)k;
}

static int is_space(int32_t c)
{
	if (c < 0x80)
		return c == ' ' || (c >= '\t' && c <= '\r');
	utf8proc_category_t cat = utf8proc_category(c);
	return cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL ||
	       cat == UTF8PROC_CATEGORY_ZP;
}

static int is_punct_or_symbol(int32_t c)
{
	if (c < 0x80)
		return (c > ' ' && c < '0') || (c > '9' && c < 'A') || (c > 'Z' && c < 'a') ||
		       (c > 'z' && c < 0x7f);
	utf8proc_category_t cat = utf8proc_category(c);
	return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_SO;
}

static int is_letter(int32_t c)
{
	if (c < 0x80)
		return (c | 32) >= 'a' && (c | 32) <= 'z';
	utf8proc_category_t cat = utf8proc_category(c);
	return cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
}

static size_t count_chars(const char *s, size_t n)
{
	size_t c = 0;
	for (size_t i = 0; i < n; i++)
		c += ((unsigned char)s[i] & 0xC0) != 0x80;
	return c;
}

static uint64_t hash_lower(const char *s, size_t n)
{
	char buf[256];
	if (n > sizeof(buf))
		return XXH3_64bits(s, n);
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		buf[i] = (c >= 'A' && c <= 'Z') ? (char)(c | 32) : c;
	}
	uint64_t h = XXH3_64bits(buf, n);
	return h ? h : 1;
}

enum { AC_OTHER, AC_SPACE, AC_PUNCT, AC_LETTER };
static unsigned char ascii_class[128];

static void ascii_class_init(void)
{
	for (int c = 0; c < 128; c++)
		ascii_class[c] = is_space(c) ? AC_SPACE : is_punct_or_symbol(c) ? AC_PUNCT
				: is_letter(c) ? AC_LETTER : AC_OTHER;
}

static void split_words(struct ftk_quality *q, const char *text, size_t len)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t i = 0;
	q->n_words = 0;
	q->n_grams = 0;
	while (i < len) {
		int32_t c;
		int k = cp_at(s, len, i, &c);
		if (is_space(c)) {
			i += (size_t)k;
			continue;
		}
		size_t start = i, core_s = (size_t)-1, core_e = 0;
		uint32_t chars = 0, core_chars = 0, pending = 0;
		int alpha = 0;
		while (i < len) {
			if (s[i] < 0x80) {
				/* ASCII, most of most text: one table lookup */
				unsigned char cl = ascii_class[s[i]];
				if (cl == AC_SPACE)
					break;
				chars++;
				if (cl == AC_PUNCT) {
					pending += core_s != (size_t)-1;
				} else {
					if (core_s == (size_t)-1)
						core_s = i;
					core_e = i + 1;
					core_chars += pending + 1;
					pending = 0;
					alpha |= cl == AC_LETTER;
				}
				i++;
				continue;
			}
			k = cp_at(s, len, i, &c);
			if (is_space(c))
				break;
			chars++;
			if (is_punct_or_symbol(c)) {
				if (core_s != (size_t)-1)
					pending++;
			} else {
				if (core_s == (size_t)-1)
					core_s = i;
				core_e = i + (size_t)k;
				core_chars += pending + 1;
				pending = 0;
				if (!alpha && is_letter(c))
					alpha = 1;
			}
			i += (size_t)k;
		}
		FTK_ALLOC_GROW(q->words, q->n_words + 1, q->alloc_words);
		struct word *w = &q->words[q->n_words++];
		w->start = (uint32_t)start;
		w->len = (uint32_t)(i - start);
		w->chars = chars;
		w->alpha = (uint8_t)alpha;
		w->symbol = core_s == (size_t)-1;
		w->core_chars = w->symbol ? 0 : core_chars;
		w->h = w->symbol ? 0 : hash_lower(text + core_s, core_e - core_s);
		if (!w->symbol) {
			if (q->n_grams + 1 > q->alloc_grams) {
				FTK_ALLOC_GROW(q->grams, q->n_grams + 1, q->alloc_grams);
				q->gram_chars = xrealloc(q->gram_chars,
							 q->alloc_grams * sizeof(uint32_t));
				q->prefix = xrealloc(q->prefix, (q->alloc_grams + 1) * sizeof(uint64_t));
			}
			q->grams[q->n_grams] = w->h;
			q->gram_chars[q->n_grams] = w->core_chars;
			q->n_grams++;
		}
	}
}

static int is_hspace(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* Split into trimmed non-empty lines (sep == 1) or blank-line paragraphs (sep == 2). */
static void split_units(const char *text, size_t len, int paras, struct line **out, size_t *n,
			size_t *alloc)
{
	size_t i = 0;
	*n = 0;
	while (i < len) {
		size_t s = i, e;
		if (!paras) {
			const char *nl = memchr(text + i, '\n', len - i);
			e = nl ? (size_t)(nl - text) : len;
			i = e + 1;
		} else {
			/* a paragraph ends at a line that is blank */
			e = i;
			for (;;) {
				const char *nl = memchr(text + e, '\n', len - e);
				size_t le = nl ? (size_t)(nl - text) : len;
				size_t j = le + 1;
				e = le;
				if (!nl) {
					i = len;
					break;
				}
				size_t k = j;
				while (k < len && is_hspace(text[k]))
					k++;
				if (k >= len || text[k] == '\n') {
					i = j;
					break;
				}
				e = j;
			}
		}
		while (s < e && (is_hspace(text[s]) || text[s] == '\n'))
			s++;
		while (e > s && (is_hspace(text[e - 1]) || text[e - 1] == '\n'))
			e--;
		if (e == s)
			continue;
		FTK_ALLOC_GROW(*out, *n + 1, *alloc);
		struct line *l = &(*out)[(*n)++];
		l->start = (uint32_t)s;
		l->len = (uint32_t)(e - s);
		l->chars = (uint32_t)count_chars(text + s, e - s);
		l->h = XXH3_64bits(text + s, e - s);
	}
}

/* ------------------------------------------------------------ hash counting */

static void tab_reset(struct ftk_quality *q, size_t n)
{
	size_t want = 16;
	while (want < n * 2)
		want <<= 1;
	if (want > q->tab_size) {
		free(q->tab_key);
		free(q->tab_cnt);
		q->tab_key = xmalloc(want * sizeof(uint64_t));
		q->tab_cnt = xmalloc(want * sizeof(uint32_t));
		q->tab_size = want;
	}
	/* clear only the part that n needs, so small records stay cheap */
	memset(q->tab_key, 0, want * sizeof(uint64_t));
}

/* Count key (never 0); returns the count after adding. want is the size used. */
static uint32_t tab_add(struct ftk_quality *q, size_t want, uint64_t key, uint32_t **slot)
{
	size_t mask = want - 1, i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & mask;
	for (;;) {
		if (q->tab_key[i] == key) {
			*slot = &q->tab_cnt[i];
			return ++q->tab_cnt[i];
		}
		if (!q->tab_key[i]) {
			q->tab_key[i] = key;
			q->tab_cnt[i] = 1;
			*slot = &q->tab_cnt[i];
			return 1;
		}
		i = (i + 1) & mask;
	}
}

static size_t tab_want(size_t n)
{
	size_t want = 16;
	while (want < n * 2)
		want <<= 1;
	return want;
}

/* Duplicates among units: fraction of units and of their characters after the first. */
static void dup_units(struct ftk_quality *q, const struct line *u, size_t n, double *frac,
		      double *char_frac, size_t total_chars)
{
	size_t want = tab_want(n);
	size_t dup = 0, dup_chars = 0, chars = 0;
	uint32_t *slot;
	tab_reset(q, n);
	for (size_t i = 0; i < n; i++) {
		chars += u[i].chars;
		if (tab_add(q, want, u[i].h ? u[i].h : 1, &slot) > 1) {
			dup++;
			dup_chars += u[i].chars;
		}
	}
	if (total_chars == 0)
		total_chars = chars;
	*frac = n ? (double)dup / (double)n : 0;
	*char_frac = total_chars ? (double)dup_chars / (double)total_chars : 0;
}

/*
 * n-gram hashes in O(1) each: with prefix[i] = sum of grams[k] * P^(i-1-k)
 * over k < i (mod 2^64), the n-gram at i hashes to prefix[i+n] -
 * prefix[i] * P^n.  The word hashes are XXH3 values, so the sum is as good as
 * a hash of the n words; a final multiply spreads it for the table.
 */
#define GRAM_P 0x100000001B3ull

static void build_prefix(struct ftk_quality *q)
{
	q->prefix[0] = 0;
	for (size_t i = 0; i < q->n_grams; i++)
		q->prefix[i + 1] = q->prefix[i] * GRAM_P + q->grams[i];
}

static uint64_t gram_hash(const struct ftk_quality *q, size_t i, int n, uint64_t pn)
{
	uint64_t x = (q->prefix[i + (size_t)n] - q->prefix[i] * pn) * 0x9E3779B97F4A7C15ull;
	x ^= x >> 32;
	return x ? x : 1;
}

static uint64_t pow_p(int n)
{
	uint64_t r = 1;
	while (n-- > 0)
		r *= GRAM_P;
	return r;
}

/*
 * Most natural text repeats few n-grams, and an n-gram can only occur twice
 * if the k-gram it starts with does (k < n).  So the 2-gram counts (which
 * top_2gram needs anyway) mark the positions where a 3- or 4-gram may
 * repeat, and one count of 5-grams marks those where a 5- to 10-gram may:
 * the larger n-grams are only hashed and looked up at marked positions, and
 * an unmarked position is an n-gram that occurs once, which is what every
 * measure below assumes of it.  rep is NULL for "every position".
 */
static void count_all(struct ftk_quality *q, int n, size_t *want)
{
	size_t m = q->n_grams - (size_t)n + 1;
	uint64_t pn = pow_p(n);
	uint32_t *slot;
	*want = tab_want(m);
	tab_reset(q, m);
	for (size_t i = 0; i < m; i++)
		tab_add(q, *want, gram_hash(q, i, n, pn), &slot);
}

static uint32_t tab_get(const struct ftk_quality *q, size_t want, uint64_t key)
{
	size_t mask = want - 1, i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & mask;
	for (;;) {
		if (q->tab_key[i] == key)
			return q->tab_cnt[i];
		if (!q->tab_key[i])
			return 0;
		i = (i + 1) & mask;
	}
}

/* After count_all(n): mark the positions whose n-gram occurs more than once. */
static size_t mark_repeats(struct ftk_quality *q, int n, size_t want)
{
	size_t m = q->n_grams - (size_t)n + 1, marked = 0;
	uint64_t pn = pow_p(n);
	if (q->alloc_rep < q->n_grams) {
		free(q->rep);
		q->alloc_rep = q->alloc_grams;
		q->rep = xmalloc(q->alloc_rep);
	}
	memset(q->rep, 0, q->n_grams);
	for (size_t i = 0; i < m; i++) {
		q->rep[i] = tab_get(q, want, gram_hash(q, i, n, pn)) > 1;
		marked += q->rep[i];
	}
	return marked;
}

static double top_ngram(struct ftk_quality *q, int n, size_t total_chars,
			const unsigned char *rep, size_t marked)
{
	if (q->n_grams < (size_t)n || !total_chars)
		return 0;
	size_t m = q->n_grams - (size_t)n + 1, want = tab_want(rep ? marked : m);
	uint64_t pn = pow_p(n);
	uint32_t best = 0, *slot;
	size_t best_chars = 0;
	if (rep && !marked)
		return 0;
	tab_reset(q, rep ? marked : m);
	for (size_t i = 0; i < m; i++) {
		if (rep && !rep[i])
			continue;
		uint32_t c = tab_add(q, want, gram_hash(q, i, n, pn), &slot);
		size_t ch = 0;
		if (c < best || c < 2)
			continue;
		for (int k = 0; k < n; k++)
			ch += q->gram_chars[i + (size_t)k];
		if (c > best || ch > best_chars) {
			best = c;
			best_chars = ch;
		}
	}
	return (double)best * (double)best_chars / (double)total_chars;
}

/*
 * Characters in repeated n-grams: scanning left to right, an n-gram seen
 * before counts its characters and the scan jumps past it (so no character
 * counts twice); the first occurrence does not count.
 */
static double dup_ngram(struct ftk_quality *q, int n, size_t total_chars,
			const unsigned char *rep, size_t marked)
{
	if (q->n_grams < (size_t)n || !total_chars || (rep && !marked))
		return 0;
	size_t m = q->n_grams - (size_t)n + 1, want = tab_want(rep ? marked : m), chars = 0;
	uint64_t pn = pow_p(n);
	uint32_t *slot;
	tab_reset(q, rep ? marked : m);
	for (size_t i = 0; i < m;) {
		if ((!rep || rep[i]) && tab_add(q, want, gram_hash(q, i, n, pn), &slot) > 1) {
			for (int k = 0; k < n; k++)
				chars += q->gram_chars[i + (size_t)k];
			i += (size_t)n;
		} else {
			i++;
		}
	}
	return (double)chars / (double)total_chars;
}

/* ------------------------------------------------------------ C4 */

/*
 * Does the line end in . ? ! or " (not "...") once trailing citation marks
 * ("[1]", "[edit]", "[citation needed]") are removed, as the reference
 * removes them?
 */
static int c4_end_mark(const char *s, size_t n)
{
	for (;;) {
		while (n > 0 && is_hspace(s[n - 1]))
			n--;
		if (n == 0 || s[n - 1] != ']')
			break;
		size_t o = n - 1;
		while (o > 0 && s[o - 1] != '[' && n - o < 20)
			o--;
		if (o == 0 || s[o - 1] != '[')
			break;
		const char *in = s + o;
		size_t m = n - 1 - o, k = 0;
		while (k < m && in[k] >= '0' && in[k] <= '9')
			k++;
		if (k != m && !(m == 4 && !memcmp(in, "edit", 4)) &&
		    !(m == 15 && !memcmp(in, "citation needed", 15)))
			break;
		n = o - 1;
	}
	if (n == 0)
		return 0;
	if (n >= 3 && !memcmp(s + n - 3, "...", 3))
		return 0;
	char c = s[n - 1];
	return c == '.' || c == '?' || c == '!' || c == '"';
}

static int contains_ci(const char *s, size_t n, const char *needle)
{
	size_t m = strlen(needle);
	for (size_t i = 0; i + m <= n; i++) {
		size_t k = 0;
		while (k < m && (s[i + k] | (s[i + k] >= 'A' && s[i + k] <= 'Z' ? 32 : 0)) == needle[k])
			k++;
		if (k == m)
			return 1;
	}
	return 0;
}

static const char *const c4_policy[] = {
	"terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
	"use cookies",
};

/* Sentence ends in a kept line: runs of . ! ? followed by space, a quote or the end. */
static size_t count_sentences(const char *s, size_t n)
{
	size_t c = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '.' && s[i] != '!' && s[i] != '?')
			continue;
		size_t j = i;
		while (j < n && (s[j] == '.' || s[j] == '!' || s[j] == '?'))
			j++;
		while (j < n && (s[j] == '"' || s[j] == '\'' || s[j] == ')'))
			j++;
		if (j == n || is_hspace(s[j]) || s[j] == '[') /* "end.[1]": a citation follows */
			c++;
		i = j - 1;
	}
	return c;
}

static void c4_measure(struct ftk_quality *q, const char *text, size_t len)
{
	double removed[R_COUNT] = { 0 };
	double lorem = 0, curly = 0;
	size_t sentences = 0;
	for (size_t li = 0; li < q->n_lines; li++) {
		const char *s = text + q->lines[li].start;
		size_t n = q->lines[li].len;
		size_t words = 0, longest = 0, i = 0;
		while (i < n) {
			while (i < n && (is_hspace(s[i])))
				i++;
			size_t ws = i;
			while (i < n && !is_hspace(s[i]))
				i++;
			if (i > ws) {
				size_t wc = count_chars(s + ws, i - ws);
				words++;
				if (wc > longest)
					longest = wc;
			}
		}
		/* the reference's order: long word, end mark, short line */
		if (q->on[R_C4_MAX_WORD] && (double)longest > q->hi[R_C4_MAX_WORD]) {
			removed[R_C4_MAX_WORD]++;
			continue;
		}
		if (q->on[R_C4_PUNCT] && !c4_end_mark(s, n)) {
			removed[R_C4_PUNCT]++;
			continue;
		}
		if (q->on[R_C4_MIN_WORDS] && (double)words < q->lo[R_C4_MIN_WORDS]) {
			removed[R_C4_MIN_WORDS]++;
			continue;
		}
		if (contains_ci(s, n, "lorem ipsum"))
			lorem++;
		if (q->on[R_C4_JS] && contains_ci(s, n, "javascript")) {
			removed[R_C4_JS]++;
			continue;
		}
		if (memchr(s, '{', n))
			curly++;
		int pol = 0;
		for (size_t k = 0; q->on[R_C4_POLICY] && k < FTK_ARRAY_SIZE(c4_policy); k++)
			pol |= contains_ci(s, n, c4_policy[k]);
		if (pol) {
			removed[R_C4_POLICY]++;
			continue;
		}
		sentences += count_sentences(s, n);
	}
	(void)len;
	for (int r = R_C4_PUNCT; r <= R_C4_POLICY; r++)
		if (rules[r].line_rule && q->on[r])
			q->value[r] = removed[r];
	q->value[R_C4_LOREM] = lorem;
	q->value[R_C4_CURLY] = curly;
	q->value[R_C4_SENTENCES] = (double)sentences;
}

/* ------------------------------------------------------------ check */

static int any_on(const struct ftk_quality *q, int from, int to)
{
	for (int i = from; i <= to; i++)
		if (q->on[i])
			return 1;
	return 0;
}

static int ends_with(const char *s, size_t n, const char *suf)
{
	size_t m = strlen(suf);
	return n >= m && !memcmp(s + n - m, suf, m);
}

static int starts_bullet(const char *s, size_t n)
{
	static const char *const b[] = { "-", "*", "\xe2\x80\xa2", "\xe2\x97\x8f", "\xe2\x97\xa6",
					 "\xe2\x96\xaa", "\xe2\x80\xa3", "\xe2\x81\x83",
					 "\xe2\x80\x93" };
	for (size_t k = 0; k < FTK_ARRAY_SIZE(b); k++) {
		size_t m = strlen(b[k]);
		if (n >= m && !memcmp(s, b[k], m))
			return 1;
	}
	return 0;
}

static int fw_end_punct(const char *s, size_t n)
{
	static const char *const e[] = { ".", "!", "?", "\"", "'", "\xe2\x80\xa6",
					 "\xe2\x80\x9d", "\xe2\x80\x99", "\xe3\x80\x82",
					 "\xef\xbc\x81", "\xef\xbc\x9f" };
	for (size_t k = 0; k < FTK_ARRAY_SIZE(e); k++)
		if (ends_with(s, n, e[k]))
			return 1;
	return 0;
}

static size_t count_substr(const char *s, size_t n, const char *pat)
{
	size_t m = strlen(pat), c = 0;
	const char *p = s, *end = s + n;
	while ((p = memmem(p, (size_t)(end - p), pat, m))) {
		c++;
		p += m;
	}
	return c;
}

static const char *const stop_words[] = { "the", "be", "to", "of", "and", "that", "have", "with" };

static void measure(struct ftk_quality *q, const char *text, size_t len)
{
	for (int i = 0; i < R_COUNT; i++)
		q->value[i] = NAN;
	split_words(q, text, len);
	split_units(text, len, 0, &q->lines, &q->n_lines, &q->alloc_lines);

	size_t n_tok = q->n_words, n_words = q->n_grams, core_chars = 0, alpha = 0;
	for (size_t i = 0; i < n_tok; i++) {
		core_chars += q->words[i].core_chars;
		alpha += q->words[i].alpha;
	}
	size_t line_chars = 0;
	for (size_t i = 0; i < q->n_lines; i++)
		line_chars += q->lines[i].chars;

	if (any_on(q, R_WORDS, R_STOP)) {
		q->value[R_WORDS] = (double)n_words;
		q->value[R_MEAN_LEN] = n_words ? (double)core_chars / (double)n_words : 0;
		double wd = n_words ? (double)n_words : 1;
		q->value[R_HASH] = (double)count_substr(text, len, "#") / wd;
		q->value[R_ELLIPSIS] = (double)(count_substr(text, len, "...") +
						count_substr(text, len, "\xe2\x80\xa6")) / wd;
		size_t bullets = 0, ell = 0;
		for (size_t i = 0; i < q->n_lines; i++) {
			const char *s = text + q->lines[i].start;
			size_t n = q->lines[i].len;
			bullets += starts_bullet(s, n);
			ell += ends_with(s, n, "...") || ends_with(s, n, "\xe2\x80\xa6");
		}
		double ld = q->n_lines ? (double)q->n_lines : 1;
		q->value[R_BULLET_LINES] = (double)bullets / ld;
		q->value[R_ELLIPSIS_LINES] = (double)ell / ld;
		q->value[R_ALPHA] = n_tok ? (double)alpha / (double)n_tok : 0;
		size_t stop = 0;
		uint64_t sh[FTK_ARRAY_SIZE(stop_words)];
		for (size_t k = 0; k < FTK_ARRAY_SIZE(stop_words); k++)
			sh[k] = hash_lower(stop_words[k], strlen(stop_words[k]));
		for (size_t i = 0; i < n_words; i++)
			for (size_t k = 0; k < FTK_ARRAY_SIZE(stop_words); k++)
				if (q->grams[i] == sh[k]) {
					stop++;
					break;
				}
		q->value[R_STOP] = (double)stop;
	}
	if (any_on(q, R_DUP_LINES, R_DUP_LINE_CHARS)) {
		double f, cf;
		dup_units(q, q->lines, q->n_lines, &f, &cf, line_chars);
		q->value[R_DUP_LINES] = f;
		q->value[R_DUP_LINE_CHARS] = cf;
	}
	if (q->on[R_DUP_PARAS] || q->on[R_DUP_PARA_CHARS]) {
		double f, cf;
		split_units(text, len, 1, &q->paras, &q->n_paras, &q->alloc_paras);
		size_t pc = 0;
		for (size_t i = 0; i < q->n_paras; i++)
			pc += q->paras[i].chars;
		dup_units(q, q->paras, q->n_paras, &f, &cf, pc);
		q->value[R_DUP_PARAS] = f;
		q->value[R_DUP_PARA_CHARS] = cf;
	}
	if (q->n_grams && any_on(q, R_TOP2, R_DUP10))
		build_prefix(q);
	if (any_on(q, R_TOP2, R_TOP4) && q->n_grams >= 2 && core_chars) {
		size_t want, marked;
		/* top_ngram(2) leaves every 2-gram counted in the table */
		q->value[R_TOP2] = top_ngram(q, 2, core_chars, NULL, 0);
		want = tab_want(q->n_grams - 1);
		marked = mark_repeats(q, 2, want);
		for (int n = 3; n <= 4; n++)
			q->value[R_TOP2 + n - 2] = top_ngram(q, n, core_chars, q->rep, marked);
	} else if (any_on(q, R_TOP2, R_TOP4)) {
		q->value[R_TOP2] = q->value[R_TOP3] = q->value[R_TOP4] = 0;
	}
	if (any_on(q, R_DUP5, R_DUP10)) {
		size_t want, marked = 0;
		if (q->n_grams >= 5) {
			count_all(q, 5, &want);
			marked = mark_repeats(q, 5, want);
		}
		for (int n = 5; n <= 10; n++)
			q->value[R_DUP5 + n - 5] = q->n_grams >= 5 ?
				dup_ngram(q, n, core_chars, q->rep, marked) : 0;
	}
	for (int r = R_TOP2; r <= R_DUP10; r++)
		if (!q->on[r])
			q->value[r] = NAN;
	if (any_on(q, R_C4_PUNCT, R_C4_SENTENCES))
		c4_measure(q, text, len);
	if (any_on(q, R_FW_PUNCT, R_FW_NEWLINES)) {
		size_t punct = 0, shorts = 0;
		for (size_t i = 0; i < q->n_lines; i++) {
			punct += fw_end_punct(text + q->lines[i].start, q->lines[i].len);
			shorts += q->lines[i].chars <= 30;
		}
		double ld = q->n_lines ? (double)q->n_lines : 1;
		q->value[R_FW_PUNCT] = (double)punct / ld;
		q->value[R_FW_SHORT] = (double)shorts / ld;
		double f, cf;
		size_t nonl = count_chars(text, len) - count_substr(text, len, "\n");
		dup_units(q, q->lines, q->n_lines, &f, &cf, nonl);
		q->value[R_FW_DUP_CHARS] = cf;
		q->value[R_FW_NEWLINES] = (double)count_substr(text, len, "\n") /
					  (n_words ? (double)n_words : 1);
	}
}

int ftk_quality_check(struct ftk_quality *q, const char *text, size_t len,
		      const struct ftk_quality_fail **fails)
{
	int nf = 0;
	measure(q, text, len);
	for (int i = 0; i < R_COUNT; i++) {
		if (!q->on[i] || rules[i].line_rule || isnan(q->value[i]))
			continue;
		double v = q->value[i];
		struct ftk_quality_fail *f = &q->fails[nf];
		if (!isnan(q->lo[i]) && v < q->lo[i]) {
			f->limit = q->lo[i];
			f->below = 1;
		} else if (!isnan(q->hi[i]) && v > q->hi[i]) {
			f->limit = q->hi[i];
			f->below = 0;
		} else {
			continue;
		}
		f->rule = rules[i].name;
		f->value = v;
		nf++;
	}
	if (fails)
		*fails = q->fails;
	return nf;
}
