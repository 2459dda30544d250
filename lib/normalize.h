/*
 * normalize.h: text normalization and word splitting, the same for every
 * tool that compares texts (ftk-dedupe keys, ftk-decontam n-grams, filters,
 * stats).
 *
 * Two texts that a person would call "the same" often differ in bytes: a
 * composed and a decomposed accent, "Hello" and "hello", two spaces and one,
 * "end." and "end".  Which of these differences should count is the user's
 * decision, so each step is a flag and the set is spelled out on the command
 * line (`--normalize nfc,case,punct,space`, or `none`):
 *
 *   nfc     Unicode canonical composition (utf8proc), so that U+00E9 and
 *           "e" + U+0301 are one character
 *   case    lower case (Unicode simple case mapping, per code point)
 *   punct   punctuation and symbols (Unicode categories P* and S*) become
 *           spaces, so "end." and "end" are one word
 *   space   runs of white space (Unicode Z*, and control characters) become
 *           one space, and leading and trailing space goes
 *
 * The steps run in the order above, in one pass for ASCII (the common case
 * is a table lookup per byte) and through utf8proc for the rest.
 *
 * Words are maximal runs of characters that are not white space.  Scripts
 * written without spaces (Chinese, Japanese, Thai) therefore make long
 * "words"; n-gram comparisons still work on them, only more coarsely.
 * ftk_words_split() also builds the canonical joined form "w1 w2 w3" so that
 * an n-gram of words is one contiguous substring (for hashing and printing).
 */
#ifndef FTK_NORMALIZE_H
#define FTK_NORMALIZE_H

#include <stddef.h>
#include <stdint.h>
#include "err.h"
#include "strbuf.h"

enum {
	FTK_NORM_NFC = 1 << 0,
	FTK_NORM_CASE = 1 << 1,
	FTK_NORM_PUNCT = 1 << 2,
	FTK_NORM_SPACE = 1 << 3,
};
#define FTK_NORM_ALL (FTK_NORM_NFC | FTK_NORM_CASE | FTK_NORM_PUNCT | FTK_NORM_SPACE)

/*
 * Parse a comma-separated list of steps ("nfc,case,punct,space"), or "none"
 * or "all", into *flags.  Returns 0, or FTK_EUSAGE with the unknown word
 * named in err.
 */
int ftk_normalize_parse(const char *spec, unsigned *flags, struct ftk_error *err);

/* Write flags as the canonical list ("nfc,case,punct,space" or "none") into buf of size n. */
char *ftk_normalize_name(unsigned flags, char *buf, size_t n);

/*
 * Append the normalization of s[0..len) (valid UTF-8) to out.  Returns 0, or
 * FTK_EUTF8 when s is not valid UTF-8 (out is then unchanged).
 */
int ftk_normalize(const char *s, size_t len, unsigned flags, struct strbuf *out,
		  struct ftk_error *err);

/* A word: bytes [off, off+len) of ftk_words.joined. */
struct ftk_word {
	uint32_t off, len;
};

/*
 * The words of a text.  joined holds them separated by single spaces, so
 * words i..j are joined.buf[w[i].off .. w[j].off + w[j].len).  Reuse one
 * ftk_words for many texts: ftk_words_split resets it.
 */
struct ftk_words {
	struct ftk_word *w;
	size_t n, alloc;
	struct strbuf joined;
};

void ftk_words_init(struct ftk_words *ws);
void ftk_words_release(struct ftk_words *ws);

/*
 * Split s[0..len) (valid UTF-8; invalid bytes count as word characters) into
 * words at white space.  Returns the number of words.  Texts over 4 GiB are
 * not supported (offsets are 32-bit): the words past 4 GiB are dropped.
 */
size_t ftk_words_split(struct ftk_words *ws, const char *s, size_t len);

/*
 * Normalize s[0..len) and split the result into words in one pass:
 * ws->joined gets the normalized text and ws->w its words, the same as
 * ftk_normalize() followed by ftk_words_split() (faster when flags include
 * FTK_NORM_SPACE, which makes the normalized text the joined form itself).
 * Returns the number of words, FTK_EUTF8 for invalid UTF-8, or FTK_ELIMIT
 * for a text over 2 GiB.
 */
long ftk_normalize_words(const char *s, size_t len, unsigned flags, struct ftk_words *ws,
			 struct ftk_error *err);

#endif
