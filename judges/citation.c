/*
 * citation.c: the citation judge: do the cited sources support what the
 * answer says?
 *
 * The story this project starts from is a benchmark that counted "[1]"s and
 * so punished a model for no longer inventing citations.  This judge reads
 * the markers only to learn which sources each sentence cites, then asks
 * whether those sources entail the sentence, and reports the marker count as
 * what it is: a surface number, beside the semantic ones.
 *
 * Scoring follows ALCE (Gao et al., 2023), definition for definition:
 *
 *   - the answer is split into sentences (text.c), or, with "split": "list",
 *     into comma-separated items each prefixed with the question (ALCE's
 *     QAMPARI setting);
 *   - citation recall: a sentence scores 1 when it cites at least one source,
 *     none of its citations is past the source list, and its cited passages
 *     together entail it (only the first max_citations are used, 3 by
 *     default as in ALCE); recall is the mean over sentences;
 *   - citation precision: over all in-range citations of the answer, a
 *     citation counts when its sentence is supported and it is not
 *     irrelevant; a citation is irrelevant when it alone does not entail the
 *     sentence and the sentence's other citations still do.  An answer with
 *     no citations has precision 0, as in ALCE;
 *   - a passage is "Title: <title>\n<text>", as ALCE formats documents;
 *   - Markdown footnote definitions ("[^1]: ...") are not sentences.
 *
 * Entailment is pluggable.  "offline" (the default) is ftk_entail_offline():
 * content-word coverage with Snowball stems, names and numbers that must appear, and
 * negation mismatch scoped to the word a negation applies to; it needs nothing but the text and is deterministic.
 * Its rules answer the classes of its misses against ALCE's human labels
 * (issue 17): a sentence's opening word is not taken for a name when it is an
 * ordinary opener ("Nowadays"); "16th" is 16 and "first" is 1; a premise's
 * negation refutes only a claim that says what its clause negates; long names
 * match one letter apart (Muhammad/Mohammad); and a number must sit in a
 * premise sentence about the claim's fact, not in one that names only others.
 * "llm" asks a judge model for {"entailed": true|false, "reason": ...}
 * through the env's chat function, cached on disk by jmodel_ask.  Within one
 * case every (premise, claim) verdict is remembered, since precision asks
 * the same questions recall did.
 *
 * Metrics: "recall", "precision" (semantic), "supported" (semantic,
 * pass/fail: every sentence supported; the verdict), "marker_rate" (surface:
 * the fraction of sentences carrying a marker; twin of "recall").
 * Flags: "fabricated_citation" (a marker past the source list),
 * "marker_unsupported" (a sentence has markers, but its sources do not
 * support it).  Detail: {"entailment", "sentences": [{"text", "start", "end",
 * "citations", "cited": [{"source", "start", "end", "verdict", "relevant",
 * "counted", "reason"}], "supported", "fabricated", "irrelevant", "why"}]}:
 * offsets are code points of the output as given (Python's str indexes), so
 * a reviewer or a script sees which citation failed and why without
 * re-deriving it; docs/judges.md has the verdicts.
 */
#include <ctype.h>
#include <stdarg.h>
#include <string.h>
#include <xxhash.h>
#include "judges/citation.h"
#include "judges/judges_int.h"
#include "judges/text.h"
#include "lib/json.h"
#include "lib/strbuf.h"

/* ================================================================ markers */

/*
 * "[...]" at s: numbers, ranges, "^n", "Doc n".  Returns bytes used (0: not
 * a marker), the numbers read in got[0..*k) (at most 64).
 */
static size_t bracket_marker(const char *s, int *got, size_t *k_out)
{
	const char *p = s + 1;
	if (*p == '^')
		p++;
	static const char *const words[] = { "document", "doc", "source", "ref", "citation" };
	for (size_t w = 0; w < FTK_ARRAY_SIZE(words); w++) {
		size_t l = strlen(words[w]);
		if (!strncasecmp(p, words[w], l) && (p[l] == ' ' || isdigit((unsigned char)p[l]))) {
			p += l;
			while (*p == ' ')
				p++;
			break;
		}
	}
	size_t k = 0;
	for (;;) {
		while (*p == ' ')
			p++;
		if (!isdigit((unsigned char)*p))
			return 0;
		long a = strtol(p, (char **)&p, 10), b = a;
		while (*p == ' ')
			p++;
		if (*p == '-' || (p[0] == '\xe2' && p[1] == '\x80' && p[2] == '\x93')) {	/* - or en dash */
			p += *p == '-' ? 1 : 3;
			while (*p == ' ')
				p++;
			if (!isdigit((unsigned char)*p))
				return 0;
			b = strtol(p, (char **)&p, 10);
			if (b < a)
				return 0;
		}
		if (a > 100000 || b > 100000)
			return 0;
		if (b - a > 20) {	/* not a plausible range: keep the ends */
			if (k < 64)
				got[k++] = (int)a;
			if (k < 64)
				got[k++] = (int)b;
		} else {
			for (long x = a; x <= b && k < 64; x++)
				got[k++] = (int)x;
		}
		while (*p == ' ')
			p++;
		if (*p == ',' || *p == ';') {
			p++;
			if (*p == ' ' && p[1] == '[')	/* "[1], [2]": separate groups */
				return 0;
			continue;
		}
		if (*p == ']')
			break;
		return 0;
	}
	*k_out = k;
	return (size_t)(p + 1 - s);
}

/* A superscript digit at s: its value, *len its bytes; -1 when none. */
static int superscript(const char *s, size_t *len)
{
	const unsigned char *u = (const unsigned char *)s;
	*len = 2;
	if (u[0] == 0xC2 && u[1] == 0xB9)
		return 1;
	if (u[0] == 0xC2 && u[1] == 0xB2)
		return 2;
	if (u[0] == 0xC2 && u[1] == 0xB3)
		return 3;
	*len = 3;
	if (u[0] == 0xE2 && u[1] == 0x81 && (u[2] == 0xB0 || (u[2] >= 0xB4 && u[2] <= 0xB9)))
		return u[2] == 0xB0 ? 0 : u[2] - 0xB0;
	return -1;
}

/* Add v to nums unless there; a new one's marker span is [b, e). */
static void add_cited(int v, size_t b, size_t e, struct ftk_cited *c)
{
	for (size_t j = 0; j < c->n; j++)
		if (c->nums[j] == v)
			return;
	FTK_ALLOC_GROW(c->nums, c->n + 1, c->alloc);
	c->starts = xrealloc(c->starts, c->alloc * sizeof(*c->starts));
	c->ends = xrealloc(c->ends, c->alloc * sizeof(*c->ends));
	c->nums[c->n] = v;
	c->starts[c->n] = b;
	c->ends[c->n] = e;
	c->n++;
}

void ftk_cited_release(struct ftk_cited *c)
{
	free(c->nums);
	free(c->starts);
	free(c->ends);
	memset(c, 0, sizeof(*c));
}

void ftk_citation_find(const char *s, struct ftk_cited *c, struct strbuf *clean)
{
	memset(c, 0, sizeof(*c));
	size_t i = 0, len = strlen(s);
	while (i < len) {
		size_t used = 0;
		if (s[i] == '[') {
			int got[64];
			size_t k = 0;
			used = bracket_marker(s + i, got, &k);
			for (size_t j = 0; used && j < k; j++)
				add_cited(got[j], i, i + used, c);
		} else if (!strncmp(s + i, "\xe3\x80\x90", 3)) {	/* 【n】 */
			const char *p = s + i + 3;
			if (isdigit((unsigned char)*p)) {
				long a = strtol(p, (char **)&p, 10);
				if (!strncmp(p, "\xe3\x80\x91", 3) && a < 100000) {
					used = (size_t)(p + 3 - (s + i));
					add_cited((int)a, i, i + used, c);
				}
			}
		} else {
			size_t l;
			int d = superscript(s + i, &l);
			if (d >= 0 && i > 0 && !isspace((unsigned char)s[i - 1])) {
				long v = 0;
				size_t j = i;
				while ((d = superscript(s + j, &l)) >= 0 && v < 10000) {
					v = v * 10 + d;
					j += l;
				}
				used = j - i;
				add_cited((int)v, i, j, c);
			}
		}
		if (used) {
			/* drop the spaces before the marker */
			while (clean->len && clean->buf[clean->len - 1] == ' ')
				strbuf_setlen(clean, clean->len - 1);
			i += used;
			/* "[1] [2]": keep one space only when a word follows */
			if (s[i] == ' ' && (s[i + 1] == '[' || ispunct((unsigned char)s[i + 1])))
				i++;
			else if (s[i] && !ispunct((unsigned char)s[i]) && !isspace((unsigned char)s[i]))
				strbuf_addch(clean, ' ');
			continue;
		}
		strbuf_addch(clean, s[i]);
		i++;
	}
}

size_t ftk_citation_markers(const char *s, int **nums, struct strbuf *clean)
{
	struct ftk_cited c;
	ftk_citation_find(s, &c, clean);
	*nums = c.nums;
	free(c.starts);
	free(c.ends);
	return c.n;
}

/* ============================================================ entailment */

void ftk_entail_opts_init(struct ftk_entail_opts *o)
{
	o->min_coverage = 0.6;
	o->check_negation = 1;
}

static int has_digit(const char *s)
{
	for (; *s; s++)
		if (isdigit((unsigned char)*s))
			return 1;
	return 0;
}

/*
 * The number a word stands for: digits ("16", "1,200"), an ordinal written
 * with digits ("16th", "2nd"), or a number word up to twenty, cardinal or
 * ordinal ("three", "first", "sixteenth").  1 and *v, or 0.
 */
static int word_value(const struct ftk_word *w, double *v)
{
	static const char *const card[] = { "zero", "one", "two", "three", "four", "five", "six",
		"seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen",
		"sixteen", "seventeen", "eighteen", "nineteen", "twenty" };
	static const char *const ord[] = { "zeroth", "first", "second", "third", "fourth", "fifth",
		"sixth", "seventh", "eighth", "ninth", "tenth", "eleventh", "twelfth", "thirteenth",
		"fourteenth", "fifteenth", "sixteenth", "seventeenth", "eighteenth", "nineteenth",
		"twentieth" };
	if (w->flags & FTK_WORD_NUMBER) {
		*v = strtod(w->stem, NULL);
		return 1;
	}
	const char *t = w->text;
	if (isdigit((unsigned char)*t)) {
		char *e;
		double x = strtod(t, &e);
		if (!strcmp(e, "st") || !strcmp(e, "nd") || !strcmp(e, "rd") || !strcmp(e, "th")) {
			*v = x;
			return 1;
		}
		return 0;
	}
	for (size_t i = 0; i < FTK_ARRAY_SIZE(card); i++)
		if (!strcmp(t, card[i]) || !strcmp(t, ord[i])) {
			*v = (double)i;
			return 1;
		}
	return 0;
}

/*
 * a and b differ by one edit (a letter changed, added, dropped, or two
 * neighbours swapped): "Muhammad"/"Mohammad", "Dostoevsky"/"Dostoyevsky".
 */
static int one_edit(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la < lb) {
		const char *t = a;
		a = b;
		b = t;
		size_t tl = la;
		la = lb;
		lb = tl;
	}
	if (la - lb > 1)
		return 0;
	size_t i = 0;
	while (i < lb && a[i] == b[i])
		i++;
	if (i == lb)
		return la != lb;	/* one letter added at the end (equal: no edit) */
	if (la == lb) {
		if (!strcmp(a + i + 1, b + i + 1))
			return 1;	/* changed */
		return i + 1 < la && a[i] == b[i + 1] && a[i + 1] == b[i] &&
		       !strcmp(a + i + 2, b + i + 2);	/* swapped */
	}
	return !strcmp(a + i + 1, b + i);	/* added */
}

/* Do two words match: same stem or form, the same number, or a variant? */
static int word_match(const struct ftk_word *a, const struct ftk_word *b)
{
	if (!strcmp(a->stem, b->stem) || !strcmp(a->text, b->text))
		return 1;
	double va, vb;
	if (word_value(a, &va) && word_value(b, &vb))
		return va == vb;	/* "16th" and "16", "first" and "1" */
	if ((a->flags | b->flags) & FTK_WORD_NUMBER)
		return 0;
	size_t la = strlen(a->stem), lb = strlen(b->stem);
	size_t m = la < lb ? la : lb, d = la > lb ? la - lb : lb - la;
	/* Colombia/Colombian, India/Indian, Japan/Japanese: a shared stem of
	   at least 4 letters, differing by a short suffix the stemmer leaves alone */
	if (m >= 4 && d <= 3 && !strncmp(a->stem, b->stem, m) && !has_digit(a->stem))
		return 1;
	/* a long name spelt another way by one letter (transliterations:
	   Muhammad/Mohammad, Gaddafi/Qaddafi); short words differ by one letter
	   far too often (Mali/Bali) to allow it there */
	return ((a->flags | b->flags) & FTK_WORD_CAPITAL) && strlen(a->text) >= 7 &&
	       strlen(b->text) >= 7 && !has_digit(a->text) && !has_digit(b->text) &&
	       one_edit(a->text, b->text);
}

static int is_negation_at(const struct ftk_word *w, size_t n, size_t i)
{
	if (!(w[i].flags & FTK_WORD_NEGATION))
		return 0;
	/* "not only ... but also" adds, it does not negate */
	if (!strcmp(w[i].text, "not") && i + 1 < n && !strcmp(w[i + 1].text, "only"))
		return 0;
	return 1;
}

/*
 * The word a negation at i applies to: the next content word within three
 * words ("did not win", "no longer exists", "never been to"), or -1.
 */
static long negated_word(const struct ftk_word *w, size_t n, size_t i)
{
	for (size_t k = i + 1; k < n && k <= i + 3; k++)
		if (!(w[k].flags & (FTK_WORD_STOP | FTK_WORD_NEGATION)))
			return (long)k;
	return -1;
}

/* Is word k of w inside a negation's scope? */
static int negated_at(const struct ftk_word *w, size_t n, size_t k)
{
	for (size_t i = k >= 3 ? k - 3 : 0; i < k; i++)
		if (is_negation_at(w, n, i) && negated_word(w, n, i) == (long)k)
			return 1;
	return 0;
}

/* Does the text between words k-1 and k of s end a clause? */
static int clause_break(const char *s, const struct ftk_word *w, size_t k)
{
	for (size_t b = w[k - 1].end; b < w[k].start; b++)
		if (strchr(",;:.!?()[]\n", s[b]))
			return 1;
	static const char *const conj[] = { "but", "while", "whereas", "although", "though", "yet",
					    "which", "who", "instead", "rather" };
	for (size_t i = 0; i < FTK_ARRAY_SIZE(conj); i++)
		if (!strcmp(w[k].text, conj[i]))
			return 1;
	return 0;
}

/*
 * A negated word k of the premise refutes the claim only when the claim says
 * what is negated: the content words from k to the end of its clause (at
 * most six).  "was not released in theaters but shown on television" does
 * not deny "was released on television"; "is not the capital" denies "is
 * the capital".  At least two thirds of them must be in the claim.
 */
static int negation_covers_claim(const char *s, const struct ftk_word *pw, size_t np, size_t k,
				 const struct ftk_word *cw, size_t nc)
{
	size_t total = 0, covered = 0;
	for (size_t j = k; j < np && total < 6; j++) {
		if (j > k && clause_break(s, pw, j))
			break;
		if (pw[j].flags & (FTK_WORD_STOP | FTK_WORD_NEGATION))
			continue;
		total++;
		for (size_t i = 0; i < nc; i++)
			if (word_match(&cw[i], &pw[j])) {
				covered++;
				break;
			}
	}
	return covered * 3 >= total * 2;
}

/*
 * Does word i of s open a sentence?  Its first word, or the first after
 * . ! ? : ; or a line break (quotes and brackets in between allowed).
 */
static int opens_sentence(const char *s, const struct ftk_word *w, size_t i)
{
	size_t b = w[i].start;
	while (b > 0) {
		unsigned char c = (unsigned char)s[b - 1];
		if (c == ' ' || c == '\t' || c == '"' || c == '\'' || c == '(' || c >= 0x80) {
			b--;
			continue;
		}
		return c == '.' || c == '!' || c == '?' || c == ':' || c == ';' || c == '\n';
	}
	return 1;
}

/*
 * A capitalized word at a sentence's start that is an ordinary word, not a
 * name: an adverb ("Nowadays", "Reportedly", "Later"), a discourse word
 * ("Additionally", "According"), a number word ("First").  Without a
 * dictionary this is the -ly adverbs of six letters or more and a list of
 * the common openers the -ly rule misses.
 */
static int ordinary_opener(const struct ftk_word *w)
{
	static const char *const openers[] = {
		"nowadays", "today", "now", "later", "earlier", "next", "afterwards", "afterward",
		"additionally", "furthermore", "moreover", "besides", "likewise", "otherwise", "hence",
		"instead", "meanwhile", "overall", "indeed", "nevertheless", "nonetheless",
		"regardless", "thereafter", "according", "despite", "unlike", "following", "prior",
		"whereas", "another", "others", "various", "numerous", "certain", "other", "only",
		"early", "lastly", "sometimes", "once", "originally", "ultimately", "currently",
		"recently", "previously", "initially", "eventually", "finally", "notably",
		"historically", "traditionally", "typically", "specifically", "similarly",
		"consequently", "subsequently", "alternatively", "conversely", "together", "yes",
		"unfortunately", "fortunately", "interestingly", "importantly", "essentially",
	};
	const char *t = w->text;
	size_t n = strlen(t);
	double v;
	if (n >= 6 && !strcmp(t + n - 2, "ly"))
		return 1;
	if (word_value(w, &v))
		return 1;
	for (size_t i = 0; i < FTK_ARRAY_SIZE(openers); i++)
		if (!strcmp(t, openers[i]))
			return 1;
	return 0;
}

/*
 * Is word i of s a name (a capitalized word that is not a function word)?
 * At a sentence's start, capitals say nothing: there it is a name unless it
 * is an ordinary opener or written lower-case elsewhere in s.
 */
static int is_name(const char *s, const struct ftk_word *w, size_t n, size_t i)
{
	if (!(w[i].flags & FTK_WORD_CAPITAL) || (w[i].flags & (FTK_WORD_STOP | FTK_WORD_NEGATION)))
		return 0;
	if (!opens_sentence(s, w, i))
		return 1;
	if (ordinary_opener(&w[i]))
		return 0;
	for (size_t k = 0; k < n; k++)
		if (k != i && !(w[k].flags & FTK_WORD_CAPITAL) && !strcmp(w[k].text, w[i].text))
			return 0;
	/* "Title: X" of a passage ALCE formats */
	if (!strcmp(w[i].text, "title") && s[w[i].end] == ':')
		return 0;
	return 1;
}

/*
 * A number of the claim found in the premise belongs to the claim's fact
 * when the premise sentence that holds it names no one, names something the
 * claim names too, or opens with a pronoun ("It receives 11,872 mm": the
 * passage's own subject, whatever else the sentence names).  A sentence that
 * names only others ("Lloró reported 12,717 mm" for a claim about
 * Mawsynram) holds another fact's number.  psent[k] is premise word k's
 * sentence; pname[k] whether it is a name.
 */
static int number_in_fact(const struct ftk_word *pw, size_t np, const size_t *psent,
			  const unsigned char *pname, size_t k, const struct ftk_word *cw,
			  const unsigned char *cname, size_t nc)
{
	int claim_names = 0, sent_names = 0;
	for (size_t i = 0; i < nc; i++)
		claim_names |= cname[i];
	if (!claim_names)
		return 1;
	static const char *const pronouns[] = { "it", "he", "she", "they", "its", "his", "her",
						"their", "this", "these" };
	size_t first = k;
	while (first > 0 && psent[first - 1] == psent[k])
		first--;
	for (size_t i = 0; i < FTK_ARRAY_SIZE(pronouns); i++)
		if (!strcmp(pw[first].text, pronouns[i]))
			return 1;
	for (size_t j = 0; j < np; j++) {
		if (psent[j] != psent[k] || !pname[j])
			continue;
		sent_names = 1;
		for (size_t i = 0; i < nc; i++)
			if (cname[i] && word_match(&cw[i], &pw[j]))
				return 1;
	}
	return !sent_names;
}

int ftk_entail_offline(const char *premise, const char *claim, const struct ftk_entail_opts *o,
		       cJSON *why)
{
	struct ftk_entail_opts def;
	if (!o) {
		ftk_entail_opts_init(&def);
		o = &def;
	}
	struct ftk_word *cw, *pw;
	size_t nc = ftk_text_words(claim, &cw);
	size_t np = ftk_text_words(premise, &pw);
	size_t content = 0, covered = 0;
	int missing_critical = 0;
	const char *neg_word = NULL;
	int neg_claim_side = 0;
	cJSON *missing = why ? cJSON_CreateArray() : NULL;
	cJSON *crit = why ? cJSON_CreateArray() : NULL;
	cJSON *other_fact = why ? cJSON_CreateArray() : NULL;
	int n_other_fact = 0;

	/* which words are names, and each premise word's sentence */
	unsigned char *cname = xcalloc(nc + 1, 1), *pname = xcalloc(np + 1, 1);
	size_t *psent = xcalloc(np + 1, sizeof(*psent));
	for (size_t i = 0; i < nc; i++)
		cname[i] = (unsigned char)is_name(claim, cw, nc, i);
	size_t *ss, *se;
	size_t ns = ftk_text_sentences(premise, &ss, &se);
	for (size_t k = 0, si = 0; k < np; k++) {
		while (si + 1 < ns && pw[k].start >= se[si])
			si++;
		psent[k] = si;
		pname[k] = (unsigned char)is_name(premise, pw, np, k);
	}
	free(ss);
	free(se);

	for (size_t i = 0; i < nc; i++) {
		const struct ftk_word *w = &cw[i];
		int number = (w->flags & FTK_WORD_NUMBER) || has_digit(w->text);
		/* a name, and a number, must be in the source */
		int name = cname[i];
		if ((w->flags & FTK_WORD_STOP) || (w->flags & FTK_WORD_NEGATION) ||
		    (!number && strlen(w->text) < 2))
			continue;
		content++;
		int found = 0, plain = 0, negated = 0, in_fact = 0;
		for (size_t k = 0; k < np; k++) {
			if (!word_match(w, &pw[k]))
				continue;
			found = 1;
			if (number && !in_fact)
				in_fact = number_in_fact(pw, np, psent, pname, k, cw, cname, nc);
			if (!negated_at(pw, np, k))
				plain = 1;
			else if (negation_covers_claim(premise, pw, np, k, cw, nc))
				negated = 1;
			/* else a negation of something the claim does not say */
		}
		if (found && number && !in_fact) {
			/* its number is there, but in a sentence about something else */
			n_other_fact++;
			missing_critical++;
			if (other_fact)
				cJSON_AddItemToArray(other_fact, cJSON_CreateString(w->text));
			if (crit)
				cJSON_AddItemToArray(crit, cJSON_CreateString(w->text));
			covered++;
		} else if (found) {
			covered++;
			/* negation, scoped to the word it applies to: the claim denies
			   what the source asserts, or the source denies what the claim
			   asserts */
			int cneg = negated_at(cw, nc, i);
			if (o->check_negation && !neg_word &&
			    ((cneg && !negated && plain) || (!cneg && negated && !plain))) {
				neg_word = w->text;
				neg_claim_side = cneg;
			}
		} else {
			if (missing)
				cJSON_AddItemToArray(missing, cJSON_CreateString(w->text));
			if (number || name) {
				missing_critical++;
				if (crit)
					cJSON_AddItemToArray(crit, cJSON_CreateString(w->text));
			}
		}
	}
	free(cname);
	free(pname);
	free(psent);
	double coverage = content ? (double)covered / (double)content : 0;
	int neg_mismatch = neg_word != NULL;
	int ok = content > 0 && coverage >= o->min_coverage && !missing_critical && !neg_mismatch;
	if (why) {
		cJSON_AddNumberToObject(why, "coverage", coverage);
		cJSON_AddItemToObject(why, "missing", missing);
		if (missing_critical)
			cJSON_AddItemToObject(why, "missing_critical", crit);
		else
			cJSON_Delete(crit);
		if (n_other_fact)
			cJSON_AddItemToObject(why, "other_fact", other_fact);
		else
			cJSON_Delete(other_fact);
		if (neg_mismatch) {
			char b[160];
			snprintf(b, sizeof(b), neg_claim_side ? "the claim denies '%s', the source asserts it"
							      : "the source denies '%s', the claim asserts it",
				 neg_word);
			cJSON_AddStringToObject(why, "negation", b);
		}
	}
	ftk_words_free(cw, nc);
	ftk_words_free(pw, np);
	return ok;
}

/* ================================================================= judge */

enum { E_OFFLINE, E_LLM };

struct cit {
	int method;
	struct ftk_entail_opts eo;
	int max_citations;
	int list;		/* split "list" (QAMPARI) */
	struct jmodel m;	/* for E_LLM */
};

struct memo {
	unsigned long long *key;
	int *val;
	size_t n, alloc;
};

static int create(void **state, const cJSON *s, const struct ftk_judge_env *env,
		  struct ftk_error *err)
{
	static const char *const known[] = { "entailment", "min_coverage", "negation",
					     "max_citations", "split", "model", "cache",
					     "temperature", "max_tokens", NULL };
	const char *ent, *split;
	double maxc;
	struct cit c;
	memset(&c, 0, sizeof(c));
	ftk_entail_opts_init(&c.eo);
	int rc;
	if ((rc = jset_known(s, known, err)) < 0 ||
	    (rc = jset_str(s, "entailment", "offline", &ent, err)) < 0 ||
	    (rc = jset_num(s, "min_coverage", c.eo.min_coverage, &c.eo.min_coverage, err)) < 0 ||
	    (rc = jset_bool(s, "negation", 1, &c.eo.check_negation, err)) < 0 ||
	    (rc = jset_num(s, "max_citations", 3, &maxc, err)) < 0 ||
	    (rc = jset_str(s, "split", "sentences", &split, err)) < 0)
		return rc;
	if (c.eo.min_coverage < 0 || c.eo.min_coverage > 1)
		return ftk_error_set(err, FTK_EDATA, NULL, 0, "settings.min_coverage",
				     "'min_coverage' must be between 0 and 1");
	if (maxc < 0 || maxc != (int)maxc)
		return ftk_error_set(err, FTK_EDATA, NULL, 0, "settings.max_citations",
				     "'max_citations' must be a whole number (0: no limit)");
	c.max_citations = (int)maxc;
	if (!strcmp(split, "list"))
		c.list = 1;
	else if (strcmp(split, "sentences"))
		return ftk_error_set(err, FTK_EDATA, NULL, 0, "settings.split",
				     "'split' must be \"sentences\" or \"list\", not '%s'", split);
	if (!strcmp(ent, "offline")) {
		c.method = E_OFFLINE;
	} else if (!strcmp(ent, "llm")) {
		c.method = E_LLM;
		if ((rc = jmodel_init(&c.m, s, env, err)) < 0)
			return rc;
	} else {
		return ftk_error_set(err, FTK_EDATA, NULL, 0, "settings.entailment",
				     "'entailment' must be \"offline\" or \"llm\", not '%s'", ent);
	}
	struct cit *p = xmalloc(sizeof(*p));
	*p = c;
	*state = p;
	return 0;
}

static void destroy(void *state)
{
	struct cit *c = state;
	if (!c)
		return;
	jmodel_release(&c->m);
	free(c);
}

static const char entail_system[] =
	"You check whether a premise supports a claim. The claim is supported only if the "
	"premise states or directly implies everything it says. Reply with a JSON object only: "
	"{\"entailed\": true or false, \"reason\": \"<one sentence>\"}.";

/* 1 entailed, 0 not, < 0 an error from the judge model. */
static int entail(struct cit *c, struct memo *mm, const char *premise, const char *claim,
		  cJSON *why, struct ftk_judge_usage *u, struct ftk_error *err)
{
	XXH64_state_t *h = XXH64_createState();
	XXH64_reset(h, 0);
	XXH64_update(h, premise, strlen(premise) + 1);
	XXH64_update(h, claim, strlen(claim));
	unsigned long long key = XXH64_digest(h);
	XXH64_freeState(h);
	for (size_t i = 0; i < mm->n; i++)
		if (mm->key[i] == key && !why)
			return mm->val[i];
	int v;
	if (c->method == E_OFFLINE) {
		v = ftk_entail_offline(premise, claim, &c->eo, why);
	} else {
		struct strbuf q = STRBUF_INIT;
		strbuf_addf(&q, "Premise:\n%s\n\nClaim:\n%s\n", premise, claim);
		cJSON *reply = NULL;
		int rc = jmodel_ask(&c->m, entail_system, q.buf, 0, &reply, u, err);
		strbuf_release(&q);
		if (rc < 0)
			return rc;
		v = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "entailed"));
		const char *r = ftk_json_get_str(reply, "reason");
		if (why && r)
			cJSON_AddStringToObject(why, "reason", r);
		cJSON_Delete(reply);
	}
	FTK_ALLOC_GROW(mm->key, mm->n + 1, mm->alloc);
	mm->val = xrealloc(mm->val, mm->alloc * sizeof(*mm->val));
	mm->key[mm->n] = key;
	mm->val[mm->n++] = v;
	return v;
}

/* Source i (0-based) as ALCE formats it. */
static void add_source(struct strbuf *sb, const cJSON *src)
{
	if (sb->len)
		strbuf_addch(sb, '\n');
	if (cJSON_IsString(src)) {
		strbuf_addstr(sb, src->valuestring);
		return;
	}
	const char *t = ftk_json_get_str(src, "title");
	const char *x = ftk_json_get_str(src, "text");
	if (t)
		strbuf_addf(sb, "Title: %s\n", t);
	strbuf_addstr(sb, x ? x : "");
}

/* The question: "question" in the case, else the last user message. */
static const char *question_of(const cJSON *kase)
{
	const char *q = ftk_json_get_str(kase, "question");
	if (q)
		return q;
	const cJSON *m;
	cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(kase, "messages")) {
		const char *role = ftk_json_get_str(m, "role");
		if (role && !strcmp(role, "user") && ftk_json_get_str(m, "content"))
			q = ftk_json_get_str(m, "content");
	}
	return q ? q : "";
}

struct unit {
	char *text;	/* as written, markers included */
	size_t start;	/* its byte offset in the answer */
};

/* The answer's units: sentences, or comma-separated list items. */
static size_t split_units(const char *t, int list, struct unit **out)
{
	struct unit *v = NULL;
	size_t n = 0, alloc = 0;
	if (list) {
		size_t len = strlen(t);
		while (len && (isspace((unsigned char)t[len - 1]) || t[len - 1] == '.' || t[len - 1] == ','))
			len--;
		size_t b = 0;
		for (size_t i = 0; i <= len; i++) {
			if (i < len && t[i] != ',' && t[i] != '\n')
				continue;
			if (i < len && t[i] == ',') {	/* a comma inside [1, 2] is not a separator */
				size_t k = i;
				while (k > b && t[k] != '[' && t[k] != ']')
					k--;
				if (t[k] == '[')
					continue;
			}
			size_t a = b, e = i;
			while (a < e && isspace((unsigned char)t[a]))
				a++;
			while (e > a && isspace((unsigned char)t[e - 1]))
				e--;
			if (e > a) {
				FTK_ALLOC_GROW(v, n + 1, alloc);
				v[n].text = xstrndup(t + a, e - a);
				v[n++].start = a;
			}
			b = i + 1;
		}
	} else {
		size_t *ss, *se;
		size_t k = ftk_text_sentences(t, &ss, &se);
		for (size_t i = 0; i < k; i++) {
			FTK_ALLOC_GROW(v, n + 1, alloc);
			v[n].text = xstrndup(t + ss[i], se[i] - ss[i]);
			v[n++].start = ss[i];
		}
		free(ss);
		free(se);
	}
	*out = v;
	return n;
}

/*
 * The answer with Markdown footnote definitions ("[^1]: Source title")
 * blanked out: they say where a marker points, they are not claims.  Blanks,
 * not removal, so that every offset still points into the answer as written.
 * Caller frees.
 */
static char *strip_footnote_defs(const char *t)
{
	struct strbuf sb = STRBUF_INIT;
	for (const char *line = t; *line;) {
		const char *e = strchr(line, '\n');
		size_t len = e ? (size_t)(e - line + 1) : strlen(line);
		const char *p = line;
		while (*p == ' ' || *p == '\t')
			p++;
		int def = 0;
		if (p[0] == '[' && p[1] == '^' && isdigit((unsigned char)p[2])) {
			p += 2;
			while (isdigit((unsigned char)*p))
				p++;
			def = p[0] == ']' && p[1] == ':';
		}
		if (!def) {
			strbuf_add(&sb, line, len);
		} else {
			for (size_t i = 0; i < len; i++)
				strbuf_addch(&sb, line[i] == '\n' ? '\n' : ' ');
		}
		line += len;
	}
	return strbuf_detach(&sb, NULL);
}

/* The code point offset of byte b of s (what Python's str indexes). */
static size_t cp_offset(const char *s, size_t b)
{
	size_t n = 0;
	for (size_t i = 0; i < b && s[i]; i++)
		n += ((unsigned char)s[i] & 0xC0) != 0x80;
	return n;
}

/*
 * Set a citation's verdict: "relevant" or "irrelevant" (ALCE's precision
 * rule), "unsupported" (its sentence is not supported: not precise),
 * "fabricated" (no such source), "not_checked" (past max_citations).
 * counted: whether it is in precision's denominator.
 */
static void cite_verdict(cJSON *cv, const char *verdict, int relevant, int counted,
			 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void cite_verdict(cJSON *cv, const char *verdict, int relevant, int counted,
			 const char *fmt, ...)
{
	struct strbuf sb = STRBUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	strbuf_vaddf(&sb, fmt, ap);
	va_end(ap);
	cJSON_AddStringToObject(cv, "verdict", verdict);
	cJSON_AddBoolToObject(cv, "relevant", relevant);
	cJSON_AddBoolToObject(cv, "counted", counted);
	cJSON_AddStringToObject(cv, "reason", sb.buf);
	strbuf_release(&sb);
}

static int has_words(const char *s)
{
	for (; *s; s++)
		if (isalnum((unsigned char)*s) || (unsigned char)*s >= 0x80)
			return 1;
	return 0;
}

static int score(void *state, const cJSON *kase, const struct ftk_judge_output *out,
		 struct ftk_judge_result *res, struct ftk_error *err)
{
	struct cit *c = state;
	const cJSON *sources = cJSON_GetObjectItemCaseSensitive(kase, "sources");
	if (!cJSON_IsArray(sources))
		return ftk_error_set(err, FTK_EDATA, NULL, 0, "sources",
				     "case '%s': the citation judge needs 'sources' (a list of passages)",
				     jcase_id(kase));
	int nsrc = cJSON_GetArraySize(sources);
	for (int i = 0; i < nsrc; i++) {
		const cJSON *s = cJSON_GetArrayItem(sources, i);
		if (!cJSON_IsString(s) && !ftk_json_get_str(s, "text")) {
			char f[64];
			snprintf(f, sizeof(f), "sources[%d]", i);
			return ftk_error_set(err, FTK_EDATA, NULL, 0, f,
					     "case '%s': a source is a string or {\"title\", \"text\"}",
					     jcase_id(kase));
		}
	}
	struct unit *units;
	const char *text = out && out->text ? out->text : "";
	const char *ans = jtext_answer(out);
	size_t base = ans >= text && ans <= text + strlen(text) ? (size_t)(ans - text) : 0;
	char *answer = strip_footnote_defs(ans);
	size_t nu = split_units(answer, c->list, &units);
	free(answer);
	const char *question = c->list ? question_of(kase) : NULL;
	struct memo mm = { 0 };
	cJSON *dsent = cJSON_CreateArray();
	size_t counted = 0, supported = 0, with_marker = 0, marker_unsup = 0;
	size_t total_cit = 0, precise = 0, fabricated = 0;
	int rc = 0;
	for (size_t u = 0; u < nu && rc >= 0; u++) {
		struct ftk_cited ct;
		struct strbuf clean = STRBUF_INIT, claim = STRBUF_INIT;
		ftk_citation_find(units[u].text, &ct, &clean);
		size_t nn = ct.n;
		const int *nums = ct.nums;
		if (!has_words(clean.buf)) {	/* a lone marker or a stray bracket */
			ftk_cited_release(&ct);
			strbuf_release(&clean);
			continue;
		}
		if (question)
			strbuf_addf(&claim, "%s %s", question, clean.buf);
		else
			strbuf_addstr(&claim, clean.buf);
		counted++;
		/* offsets in code points of the output as stored ("output" in the results) */
		size_t ub = base + units[u].start;
		cJSON *d = cJSON_CreateObject();
		cJSON_AddStringToObject(d, "text", clean.buf);
		cJSON_AddNumberToObject(d, "start", (double)cp_offset(text, ub));
		cJSON_AddNumberToObject(d, "end", (double)cp_offset(text, ub + strlen(units[u].text)));
		cJSON *dc = cJSON_AddArrayToObject(d, "citations");
		cJSON *df = cJSON_CreateArray();
		/* one verdict per citation, by ALCE's precision rule */
		cJSON **cv = xcalloc(nn + 1, sizeof(*cv));
		for (size_t i = 0; i < nn; i++) {
			cJSON_AddItemToArray(dc, cJSON_CreateNumber(nums[i]));
			if (nums[i] < 1 || nums[i] > nsrc)
				cJSON_AddItemToArray(df, cJSON_CreateNumber(nums[i]));
			cv[i] = cJSON_CreateObject();
			cJSON_AddNumberToObject(cv[i], "source", nums[i]);
			cJSON_AddNumberToObject(cv[i], "start", (double)cp_offset(text, ub + ct.starts[i]));
			cJSON_AddNumberToObject(cv[i], "end", (double)cp_offset(text, ub + ct.ends[i]));
		}
		int sup = 0;
		size_t use = c->max_citations && nn > (size_t)c->max_citations ? (size_t)c->max_citations : nn;
		if (nn)
			with_marker++;
		if (cJSON_GetArraySize(df) > 0) {
			fabricated += (size_t)cJSON_GetArraySize(df);
			cJSON_AddItemToObject(d, "fabricated", df);
			ftk_judge_add_flag(res, "fabricated_citation",
					   "sentence %zu cites a source past the list of %d: '%.80s'",
					   counted, nsrc, clean.buf);
			df = NULL;
			for (size_t i = 0; i < nn; i++) {
				if (nums[i] < 1 || nums[i] > nsrc)
					cite_verdict(cv[i], "fabricated", 0, 0,
						     "there is no such source (the list has %d)", nsrc);
				else
					cite_verdict(cv[i], "unsupported", 0, 0,
						     "the sentence also cites a source that does not exist: it is unsupported and its citations are not counted (ALCE)");
			}
		} else if (nn) {
			total_cit += use;
			struct strbuf prem = STRBUF_INIT;
			for (size_t i = 0; i < use; i++)
				add_source(&prem, cJSON_GetArrayItem(sources, nums[i] - 1));
			cJSON *why = cJSON_CreateObject();
			rc = entail(c, &mm, prem.buf, claim.buf, why, &res->usage, err);
			strbuf_release(&prem);
			cJSON_AddItemToObject(d, "why", why);
			sup = rc > 0;
			if (sup && use == 1) {
				precise++;
				cite_verdict(cv[0], "relevant", 1, 1, "it supports the sentence, its only citation");
			} else if (!sup) {
				for (size_t i = 0; i < use; i++)
					cite_verdict(cv[i], "unsupported", 0, 1,
						     "the sentence's citations together do not support it");
			}
			cJSON *irr = cJSON_CreateArray();
			for (size_t i = 0; sup && use > 1 && i < use && rc >= 0; i++) {
				struct strbuf one = STRBUF_INIT, rest = STRBUF_INIT;
				add_source(&one, cJSON_GetArrayItem(sources, nums[i] - 1));
				rc = entail(c, &mm, one.buf, claim.buf, NULL, &res->usage, err);
				if (rc == 0) {
					for (size_t k = 0; k < use; k++)
						if (k != i)
							add_source(&rest, cJSON_GetArrayItem(sources, nums[k] - 1));
					rc = entail(c, &mm, rest.buf, claim.buf, NULL, &res->usage, err);
					if (rc > 0) {
						cJSON_AddItemToArray(irr, cJSON_CreateNumber(nums[i]));
						cite_verdict(cv[i], "irrelevant", 0, 1,
							     "it does not support the sentence alone, and the other citations support it without it");
					} else if (rc == 0) {
						precise++;
						cite_verdict(cv[i], "relevant", 1, 1,
							     "needed: it does not support the sentence alone, but the other citations do not without it");
					}
				} else if (rc > 0) {
					precise++;
					cite_verdict(cv[i], "relevant", 1, 1, "it supports the sentence alone");
				}
				strbuf_release(&one);
				strbuf_release(&rest);
			}
			cJSON_AddItemToObject(d, "irrelevant", irr);
			if (!sup)
				marker_unsup++;
			for (size_t i = use; i < nn; i++)
				cite_verdict(cv[i], "not_checked", 0, 0,
					     "past the first %d citations of the sentence (max_citations): not checked, not counted",
					     c->max_citations);
		}
		cJSON *dv = cJSON_AddArrayToObject(d, "cited");
		for (size_t i = 0; i < nn; i++)
			cJSON_AddItemToArray(dv, cv[i]);
		free(cv);
		cJSON_Delete(df);
		supported += (size_t)sup;
		cJSON_AddBoolToObject(d, "supported", sup);
		cJSON_AddItemToArray(dsent, d);
		ftk_cited_release(&ct);
		strbuf_release(&clean);
		strbuf_release(&claim);
	}
	for (size_t u = 0; u < nu; u++)
		free(units[u].text);
	free(units);
	free(mm.key);
	free(mm.val);
	cJSON_AddStringToObject(res->detail, "entailment", c->method == E_LLM ? "llm" : "offline");
	cJSON_AddItemToObject(res->detail, "sentences", dsent);
	if (rc < 0)
		return rc;
	double recall = counted ? (double)supported / (double)counted : 0;
	double precision = total_cit ? (double)precise / (double)total_cit : 0;
	double marker_rate = counted ? (double)with_marker / (double)counted : 0;
	res->primary = (int)ftk_judge_add_metric(res, "supported", counted && supported == counted,
						 FTK_METRIC_SEMANTIC, 1, NULL);
	ftk_judge_add_metric(res, "recall", recall, FTK_METRIC_SEMANTIC, 0, NULL);
	ftk_judge_add_metric(res, "precision", precision, FTK_METRIC_SEMANTIC, 0, NULL);
	ftk_judge_add_metric(res, "marker_rate", marker_rate, FTK_METRIC_SURFACE, 0, "recall");
	if (marker_unsup)
		ftk_judge_add_flag(res, "marker_unsupported",
				   "%zu of %zu sentences carry citation markers that their sources do not support",
				   marker_unsup, counted);
	if (!counted)
		ftk_judge_add_failure(res, "no_sentences", "the answer has no sentences to check");
	else if (supported < counted)
		ftk_judge_add_failure(res, "unsupported_sentence",
				      "%zu of %zu sentences are not supported by the sources they cite%s",
				      counted - supported, counted,
				      fabricated ? " (some cite sources that do not exist)" : "");
	return 0;
}

const struct ftk_judge_ops ftk_judge_citation_ops = {
	/* .name    = */ "citation",
	/* .summary = */ "cited sources entail each sentence (ALCE citation recall and precision); marker rate beside it",
	/* .create  = */ create,
	/* .score   = */ score,
	/* .destroy = */ destroy,
	/* .check   = */ NULL,
};
