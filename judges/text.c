/*
 * text.c: normalization, numbers, words, stems and sentences for the judges.
 *
 * Words.  A word is a run of letters and digits (Unicode classes, from
 * utf8proc) with inner apostrophes kept ("don't") and, for numbers, inner
 * '.' and ',' kept when a digit follows ("3.5", "1,200").  Each word is
 * case-folded with accents stripped (NFKC, so "Pokémon" meets "Pokemon"),
 * stemmed, and tagged: number, capitalized, stop word, negation.
 *
 * Stemming is Snowball's English stemmer (Porter2, from Debian's
 * libstemmer), which conflates inflections ("rains", "raining", "rained")
 * and most derivations ("relational", "relate"), which is what a coverage
 * test wants.
 *
 * Sentences.  Splitting errs on the side of not splitting: a missed boundary
 * makes one longer sentence that needs the union of its citations, a false
 * boundary makes a fragment with no citation of its own.  So a period ends a
 * sentence only when whitespace and a plausible sentence start follow, and
 * never inside a number, after a known abbreviation or a single initial, or
 * inside an open quote or bracket.  The full-width terminators of Chinese and
 * Japanese (。！？) end a sentence without a space after them.
 */
#include <ctype.h>
#include <libstemmer.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include "judges/text.h"
#include "lib/err.h"

/* ------------------------------------------------------------ code points */

static utf8proc_int32_t cp_at(const char *s, size_t *len)
{
	utf8proc_int32_t c;
	utf8proc_ssize_t n = utf8proc_iterate((const utf8proc_uint8_t *)s, -1, &c);
	if (n <= 0) {
		*len = 1;
		return -1;
	}
	*len = (size_t)n;
	return c;
}

static int is_alnum_cp(utf8proc_int32_t c)
{
	if (c < 0)
		return 0;
	if (c < 128)
		return isalnum(c);
	utf8proc_category_t k = utf8proc_category(c);
	return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
	       (k >= UTF8PROC_CATEGORY_MN && k <= UTF8PROC_CATEGORY_ME) ||
	       (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO);
}

static int is_punct_cp(utf8proc_int32_t c)
{
	if (c < 0)
		return 0;
	if (c < 128)
		return ispunct(c);
	utf8proc_category_t k = utf8proc_category(c);
	return (k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO) ||
	       (k >= UTF8PROC_CATEGORY_SM && k <= UTF8PROC_CATEGORY_SO);
}

static int is_space_cp(utf8proc_int32_t c)
{
	if (c < 0)
		return 0;
	if (c < 128)
		return isspace(c);
	utf8proc_category_t k = utf8proc_category(c);
	return k == UTF8PROC_CATEGORY_ZS || k == UTF8PROC_CATEGORY_ZL || k == UTF8PROC_CATEGORY_ZP;
}

/* Case-fold, NFKC, strip accents; appended to out. */
static void fold(const char *s, size_t n, struct strbuf *out)
{
	utf8proc_uint8_t *r = NULL;
	utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &r,
					  UTF8PROC_COMPOSE | UTF8PROC_COMPAT | UTF8PROC_CASEFOLD |
						  UTF8PROC_STRIPMARK);
	if (k < 0) {	/* not UTF-8: fold ASCII only */
		for (size_t i = 0; i < n; i++)
			strbuf_addch(out, tolower((unsigned char)s[i]));
		return;
	}
	strbuf_add(out, r, (size_t)k);
	free(r);
}

/* ---------------------------------------------------------- normalization */

void ftk_text_normalize(const char *s, struct strbuf *out)
{
	struct strbuf f = STRBUF_INIT, w = STRBUF_INIT;
	fold(s, strlen(s), &f);
	int first = 1;
	size_t i = 0;
	while (i <= f.len) {
		size_t n = 1;
		utf8proc_int32_t c = i < f.len ? cp_at(f.buf + i, &n) : ' ';
		if (is_space_cp(c) || i == f.len) {
			if (w.len && strcmp(w.buf, "a") && strcmp(w.buf, "an") && strcmp(w.buf, "the")) {
				if (!first)
					strbuf_addch(out, ' ');
				strbuf_add(out, w.buf, w.len);
				first = 0;
			}
			strbuf_reset(&w);
		} else if (!is_punct_cp(c)) {
			strbuf_add(&w, f.buf + i, n);
		}
		i += n;
	}
	strbuf_release(&f);
	strbuf_release(&w);
}

/* ---------------------------------------------------------------- numbers */

int ftk_text_parse_number(const char *s, double *v, const char **end)
{
	const char *p = s;
	char buf[128];
	size_t n = 0;
	if (*p == '-' || *p == '+' || (p[0] == '\xe2' && p[1] == '\x88' && p[2] == '\x92')) {
		if (*p == '\xe2') {	/* U+2212 MINUS SIGN */
			buf[n++] = '-';
			p += 3;
		} else {
			buf[n++] = *p++;
		}
	}
	if (!isdigit((unsigned char)*p) && !(*p == '.' && isdigit((unsigned char)p[1])))
		return 0;
	int digits_in_group = 0, seen_comma = 0;
	while (n < sizeof(buf) - 8) {
		if (isdigit((unsigned char)*p)) {
			buf[n++] = *p++;
			digits_in_group++;
		} else if (*p == ',' && isdigit((unsigned char)p[1]) && isdigit((unsigned char)p[2]) &&
			   isdigit((unsigned char)p[3]) && !isdigit((unsigned char)p[4]) &&
			   (seen_comma ? digits_in_group == 3 : digits_in_group <= 3)) {
			p++;
			seen_comma = 1;
			digits_in_group = 0;
		} else {
			break;
		}
	}
	if (*p == '.' && isdigit((unsigned char)p[1])) {
		buf[n++] = *p++;
		while (isdigit((unsigned char)*p) && n < sizeof(buf) - 6)
			buf[n++] = *p++;
	}
	if ((*p == 'e' || *p == 'E') &&
	    (isdigit((unsigned char)p[1]) ||
	     ((p[1] == '-' || p[1] == '+') && isdigit((unsigned char)p[2])))) {
		buf[n++] = *p++;
		if (*p == '-' || *p == '+')
			buf[n++] = *p++;
		while (isdigit((unsigned char)*p) && n < sizeof(buf) - 1)
			buf[n++] = *p++;
	}
	buf[n] = 0;
	*v = strtod(buf, NULL);
	if (end)
		*end = p;
	return 1;
}

int ftk_text_last_number(const char *s, double *v)
{
	int found = 0;
	const char *p = s;
	while (*p) {
		double x;
		const char *e;
		int at_word = p == s || !isalnum((unsigned char)p[-1]);
		if (at_word && ftk_text_parse_number(p, &x, &e)) {
			*v = x;
			found = 1;
			p = e;
		} else {
			p++;
		}
	}
	return found;
}

/* --------------------------------------------------------------- stemming */

/* Stem one case-folded UTF-8 word with stemmer into out. */
static void stem_with(struct sb_stemmer *st, const char *word, struct strbuf *out)
{
	size_t n = strlen(word);
	const sb_symbol *r = st ? sb_stemmer_stem(st, (const sb_symbol *)word, (int)n) : NULL;
	if (!r) {	/* out of memory inside libstemmer: keep the word */
		strbuf_add(out, word, n);
		return;
	}
	strbuf_add(out, r, (size_t)sb_stemmer_length(st));
}

static struct sb_stemmer *new_stemmer(void)
{
	return sb_stemmer_new("english", "UTF_8");
}

void ftk_text_stem(const char *word, struct strbuf *out)
{
	struct sb_stemmer *st = new_stemmer();
	stem_with(st, word, out);
	sb_stemmer_delete(st);
}

/* ------------------------------------------------------------------ words */

static const char *const stop_words[] = {
	"a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and",
	"any", "are", "as", "at", "be", "because", "been", "before", "being", "below",
	"between", "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down",
	"during", "each", "either", "few", "for", "from", "further", "had", "has", "have",
	"having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i",
	"if", "in", "into", "is", "it", "its", "itself", "just", "may", "me", "might", "more",
	"most", "much", "must", "my", "myself", "of", "off", "on", "once", "one", "only", "or",
	"other", "our", "ours", "out", "over", "own", "same", "she", "should", "so", "some",
	"such", "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there",
	"these", "they", "this", "those", "through", "thus", "to", "too", "under", "until",
	"up", "upon", "us", "very", "was", "we", "were", "what", "when", "where", "whether",
	"which", "while", "who", "whom", "whose", "why", "will", "with", "within", "would",
	"you", "your", "yours", "yourself", "yourselves", "s", "t", "many", "several",
	"however", "although", "though", "yet", "well", "like", "known", "called", "often",
	"usually", "generally", "still", "even", "get", "gets", "got", "make", "makes",
	"made", "way", "ways", "thing", "things", "lot", "lots", "something", "anything",
	"everything", "someone", "people", "since", "because", "therefore",
};

static const char *const negations[] = {
	"not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "nowhere",
	"cannot", "without",
};

static int in_list(const char *w, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(w, list[i]))
			return 1;
	return 0;
}

void ftk_words_free(struct ftk_word *w, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(w[i].text);
		free(w[i].stem);
	}
	free(w);
}

size_t ftk_text_words(const char *s, struct ftk_word **out)
{
	struct sb_stemmer *stemmer = new_stemmer();
	struct ftk_word *v = NULL;
	size_t n = 0, alloc = 0, i = 0, len = strlen(s);
	while (i < len) {
		size_t cl;
		utf8proc_int32_t c = cp_at(s + i, &cl);
		if (!is_alnum_cp(c)) {
			i += cl;
			continue;
		}
		size_t start = i;
		int digits = 0, letters = 0;
		while (i < len) {
			c = cp_at(s + i, &cl);
			if (is_alnum_cp(c)) {
				if (c < 128 && isdigit(c))
					digits++;
				else
					letters++;
				i += cl;
				continue;
			}
			/* inner apostrophe (ASCII or U+2019) followed by a letter */
			size_t al = c == '\'' ? 1 : c == 0x2019 ? 3 : 0;
			if (al && i + al < len && isalpha((unsigned char)s[i + al])) {
				i += al;
				continue;
			}
			/* inner '.' or ',' in a number */
			if ((c == '.' || c == ',') && digits && !letters && i + 1 < len &&
			    isdigit((unsigned char)s[i + 1])) {
				i++;
				continue;
			}
			break;
		}
		struct strbuf f = STRBUF_INIT, st = STRBUF_INIT;
		fold(s + start, i - start, &f);
		/* curly apostrophes folded to ASCII */
		char *q;
		while ((q = strstr(f.buf, "\xe2\x80\x99"))) {
			*q = '\'';
			memmove(q + 1, q + 3, f.len - (size_t)(q + 3 - f.buf) + 1);
			f.len -= 2;
		}
		int flags = 0;
		if (digits && !letters) {
			flags |= FTK_WORD_NUMBER;
			for (size_t k = 0; k < f.len; k++)	/* "1,200" and "1200" are one number */
				if (f.buf[k] != ',')
					strbuf_addch(&st, f.buf[k]);
		} else {
			const char *ap = strchr(f.buf, '\'');
			if (ap && f.len >= 3 && !strcmp(f.buf + f.len - 3, "n't"))
				flags |= FTK_WORD_NEGATION;
			/* "Einstein's" stems as "einstein" */
			struct strbuf base = STRBUF_INIT;
			if (ap && !(flags & FTK_WORD_NEGATION))
				strbuf_add(&base, f.buf, (size_t)(ap - f.buf));
			else
				strbuf_add(&base, f.buf, f.len);
			stem_with(stemmer, base.buf, &st);
			if (in_list(base.buf, stop_words, FTK_ARRAY_SIZE(stop_words)))
				flags |= FTK_WORD_STOP;
			if (in_list(base.buf, negations, FTK_ARRAY_SIZE(negations)))
				flags |= FTK_WORD_NEGATION;
			strbuf_release(&base);
			utf8proc_int32_t c0 = cp_at(s + start, &cl);
			if (c0 >= 0 && utf8proc_category(c0) == UTF8PROC_CATEGORY_LU)
				flags |= FTK_WORD_CAPITAL;
		}
		FTK_ALLOC_GROW(v, n + 1, alloc);
		v[n].text = strbuf_detach(&f, NULL);
		v[n].stem = strbuf_detach(&st, NULL);
		v[n].flags = flags;
		v[n].start = start;
		v[n].end = i;
		n++;
	}
	sb_stemmer_delete(stemmer);
	*out = v;
	return n;
}

/* -------------------------------------------------------------- sentences */

static const char *const abbrevs[] = {
	"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "e.g", "i.e", "inc", "ltd",
	"co", "corp", "vol", "fig", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
	"sept", "oct", "nov", "dec", "approx", "est", "dept", "univ", "gen", "col", "lt", "sgt",
	"capt", "mt", "ft", "u.s", "u.k", "u.n", "a.m", "p.m", "ca", "cf", "al", "no", "nos",
	"pp", "ed", "eds", "rev", "gov", "sen", "rep", "op", "b.c", "a.d", "ph.d", "d.c",
};

/* Is the word that ends just before the '.' at s[i] an abbreviation or an initial? */
static int abbrev_before(const char *s, size_t i)
{
	size_t b = i;
	while (b > 0 && (isalpha((unsigned char)s[b - 1]) || s[b - 1] == '.'))
		b--;
	if (b == i)
		return 0;
	char w[16];
	size_t n = i - b;
	if (n >= sizeof(w))
		return 0;
	for (size_t k = 0; k < n; k++)
		w[k] = (char)tolower((unsigned char)s[b + k]);
	w[n] = 0;
	if (n == 1 && isupper((unsigned char)s[b]))
		return 1;	/* an initial: "J. R. R. Tolkien" */
	return in_list(w, abbrevs, FTK_ARRAY_SIZE(abbrevs));
}

/* Skip a citation marker group such as "[1]", "[1, 2]", "[1][2]" at s[i]. */
static size_t skip_markers(const char *s, size_t i)
{
	for (;;) {
		size_t j = i;
		while (s[j] == ' ')
			j++;
		if (s[j] != '[')
			return i;
		size_t k = j + 1;
		while (isdigit((unsigned char)s[k]) || s[k] == ',' || s[k] == ' ' || s[k] == '-')
			k++;
		if (s[k] != ']' || k == j + 1)
			return i;
		i = k + 1;
	}
}

static int closer(utf8proc_int32_t c)
{
	return c == '"' || c == '\'' || c == ')' || c == ']' || c == 0x201D || c == 0x2019 ||
	       c == 0xBB;
}

size_t ftk_text_sentences(const char *s, size_t **starts, size_t **ends)
{
	size_t *st = NULL, *en = NULL, n = 0, alloc1 = 0, alloc2 = 0;
	size_t len = strlen(s), i = 0, begin = 0;
	int depth = 0, dquote = 0;
#define EMIT(a, b)                                                              \
	do {                                                                    \
		size_t a_ = (a), b_ = (b);                                      \
		while (a_ < b_ && isspace((unsigned char)s[a_]))                \
			a_++;                                                   \
		while (b_ > a_ && isspace((unsigned char)s[b_ - 1]))            \
			b_--;                                                   \
		if (b_ > a_) {                                                  \
			FTK_ALLOC_GROW(st, n + 1, alloc1);                      \
			FTK_ALLOC_GROW(en, n + 1, alloc2);                      \
			st[n] = a_;                                             \
			en[n] = b_;                                             \
			n++;                                                    \
		}                                                               \
	} while (0)
	while (i < len) {
		size_t cl;
		utf8proc_int32_t c = cp_at(s + i, &cl);
		if (c == '\n') {	/* a blank line (or a list item) ends a sentence */
			size_t j = i + 1;
			while (j < len && (s[j] == ' ' || s[j] == '\t' || s[j] == '\r'))
				j++;
			if (j < len && (s[j] == '\n' || s[j] == '-' || s[j] == '*' ||
					(isdigit((unsigned char)s[j]) && s[j + 1] == '.'))) {
				EMIT(begin, i);
				begin = i + 1;
				depth = dquote = 0;
			}
			i++;
			continue;
		}
		if (c == '(' || c == 0x201C)
			depth++;
		else if ((c == ')' || c == 0x201D) && depth > 0)
			depth--;
		else if (c == '"')
			dquote = !dquote;
		if (c == 0x3002 || c == 0xFF01 || c == 0xFF1F) {
			/* 。！？ end a sentence with no space after them (Chinese, Japanese) */
			size_t j = skip_markers(s, i + cl);
			EMIT(begin, j);
			begin = j;
			i = j;
			continue;
		}
		if (c != '.' && c != '!' && c != '?') {
			i += cl;
			continue;
		}
		size_t j = i + 1;
		if (c == '.' && i > 0 && isdigit((unsigned char)s[i - 1]) && isdigit((unsigned char)s[j])) {
			i = j;
			continue;
		}
		while (s[j] == '.' || s[j] == '!' || s[j] == '?')
			j++;
		for (;;) {	/* closing quotes and brackets */
			size_t l;
			utf8proc_int32_t d = j < len ? cp_at(s + j, &l) : 0;
			if (!closer(d))
				break;
			if (d == '"')
				dquote = 0;
			if ((d == ')' || d == 0x201D) && depth > 0)
				depth--;
			j += l;
		}
		j = skip_markers(s, j);
		if (j < len && !isspace((unsigned char)s[j])) {
			i = j > i + 1 ? j : i + 1;
			continue;
		}
		if (c == '.' && abbrev_before(s, i)) {
			i = j;
			continue;
		}
		if (depth > 0 || dquote) {
			i = j;
			continue;
		}
		size_t k = j;
		while (k < len && isspace((unsigned char)s[k]))
			k++;
		/* the next sentence must start like one: not a lower-case word after '.' */
		if (k < len && c == '.' && islower((unsigned char)s[k])) {
			i = j;
			continue;
		}
		EMIT(begin, j);
		begin = j;
		i = j;
	}
	EMIT(begin, len);
#undef EMIT
	*starts = st;
	*ends = en;
	return n;
}
