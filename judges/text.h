/*
 * text.h: the text handling the judges share: answer normalization, number
 * parsing, word splitting with a stemmer, and sentence splitting.
 *
 * Everything works on UTF-8.  Case folding and punctuation classes come from
 * utf8proc (Unicode's tables), not from ASCII guesses, so "Ça" and "ça" match
 * and a curly quote is punctuation.
 */
#ifndef FTK_JUDGES_TEXT_H
#define FTK_JUDGES_TEXT_H

#include <stddef.h>
#include "lib/strbuf.h"

/*
 * SQuAD-style normalization into out (appended): case-folded, punctuation
 * removed, the articles a/an/the dropped, runs of whitespace made one space,
 * no leading or trailing space.  "The  Eiffel-Tower!" -> "eiffel tower".
 */
void ftk_text_normalize(const char *s, struct strbuf *out);

/*
 * Parse a number at s: an optional sign, digits with optional thousands
 * commas ("1,234,567"), an optional fraction and exponent.  Returns 1 and
 * sets *v and *end (just past it), or 0 when s does not start a number.
 */
int ftk_text_parse_number(const char *s, double *v, const char **end);

/*
 * The last number in s (a "$", "%" or unit around it is ignored).  Returns 1
 * and sets *v, or 0 when s holds no number.
 */
int ftk_text_last_number(const char *s, double *v);

/* Word flags. */
enum {
	FTK_WORD_NUMBER = 1,	/* digits: "1998", "3.5", "1,200" */
	FTK_WORD_CAPITAL = 2,	/* starts with a capital letter */
	FTK_WORD_STOP = 4,	/* a function word ("the", "of", "is") */
	FTK_WORD_NEGATION = 8,	/* "not", "no", "never", "n't" ... */
};

struct ftk_word {
	char *text;		/* case-folded surface form (owned) */
	char *stem;		/* Snowball English stem of text; numbers keep their digits (owned) */
	int flags;
	size_t start, end;	/* byte range in the source text */
};

/*
 * Split s into words (letters/digits runs; apostrophes and inner hyphens
 * split too, numbers keep their '.' and ','), filling *out with an array the
 * caller frees with ftk_words_free.  Returns the count.
 */
size_t ftk_text_words(const char *s, struct ftk_word **out);
void ftk_words_free(struct ftk_word *w, size_t n);

/* Snowball's English (Porter2) stem of one case-folded UTF-8 word, into out. */
void ftk_text_stem(const char *word, struct strbuf *out);

/*
 * Split s into sentences.  A sentence ends at '.', '!' or '?' (then any
 * closing quotes or brackets, then citation markers such as "[1]") followed by
 * whitespace and something that can start a sentence, or at a blank line.  Not
 * an end: a period inside a number (3.5), after a known abbreviation (e.g.,
 * Dr., U.S., Jan.), after a single capital initial (J. R. R. Tolkien), or
 * inside quotes or brackets.  。！？ end a sentence with no space needed.
 * Fills *starts and *ends (byte offsets, caller
 * frees both) and returns the count; blank sentences are skipped.
 */
size_t ftk_text_sentences(const char *s, size_t **starts, size_t **ends);

#endif
