/*
 * quality.h: the published heuristic text-quality rules (Gopher, C4, FineWeb).
 *
 * Three rule sets, each rule named, measured, and switchable on its own:
 *
 *   gopher.*   Rae et al. 2021 (MassiveText "quality filter" and "repetition
 *              removal", appendix A.1.1): word count, mean word length,
 *              symbol ratios, bullet and ellipsis lines, alphabetic words,
 *              stop words, duplicate lines/paragraphs, top n-gram share and
 *              duplicated n-gram share.
 *   c4.*       Raffel et al. 2020 and the TensorFlow Datasets c4 cleaning:
 *              lines must end in terminal punctuation and hold >= 5 words, no
 *              word over 1000 characters, lines mentioning "javascript" or a
 *              cookie/privacy/terms policy are dropped; a page with "lorem
 *              ipsum" or "{" in a kept line is dropped; at least 3 sentences
 *              must remain.
 *   fineweb.*  Penedo et al. 2024 (FineWeb's own filters): >= 12% of lines end
 *              in terminal punctuation, <= 67% of lines are 30 characters or
 *              shorter, duplicate-line characters <= 1%, <= 0.3 newlines per
 *              word.
 *
 * ftk-filter drops records and never edits them, so C4's line rules are
 * evaluated the way the reference applies them (in its order: word length,
 * end mark, words per line, lorem ipsum, javascript, curly bracket, policy;
 * a line ending in "..." has no end mark, and trailing citation marks such
 * as "[1]" or "[edit]" are ignored) and the record is rejected when the page the reference would
 * produce has fewer than 3 sentences (c4.sentences) or would be dropped
 * (c4.lorem_ipsum, c4.curly_bracket).  The line rules themselves
 * (c4.terminal_punct, c4.min_words_per_line, c4.max_word_length,
 * c4.javascript, c4.policy) can be switched off like any other, which changes
 * what survives.
 *
 * Definitions (where the papers leave room):
 *   - a word is a maximal run of non-space characters; its "core" is the word
 *     with leading and trailing punctuation and symbols removed; a symbol
 *     word has an empty core.  Word counts and mean length use cores of
 *     non-symbol words; the alphabetic-word ratio is over all words;
 *   - lines are split on "\n" and trimmed, empty lines are not counted;
 *     paragraphs are separated by blank lines;
 *   - n-grams are over lowercased word cores; the top n-gram share is
 *     count x characters of the most frequent n-gram (when it occurs more
 *     than once) over the characters of all cores; the duplicated n-gram share
 *     counts the characters of every occurrence of an n-gram after its first,
 *     scanning left to right and skipping past each repeat so that no
 *     character counts twice (as datatrove's Gopher repetition filter does);
 *   - characters are Unicode code points.
 *
 * A quality object is not thread-safe (it keeps scratch buffers); make one
 * per thread.
 */
#ifndef FTK_QUALITY_H
#define FTK_QUALITY_H

#include <stddef.h>
#include "lib/err.h"
#include "lib/strbuf.h"

struct ftk_quality_rule {
	const char *name;	/* "gopher.mean_word_length" */
	double lo, hi;		/* published bounds; NAN where there is none */
	int line_rule;		/* a C4 line rule: removes lines, lo/hi is its parameter */
	const char *what;	/* one line for --list-rules and the man page */
};

/* The rule table, in evaluation order. */
const struct ftk_quality_rule *ftk_quality_rules(size_t *n);

struct ftk_quality;

/* A new rule checker with every rule off.  Never fails (aborts on OOM). */
struct ftk_quality *ftk_quality_new(void);
void ftk_quality_free(struct ftk_quality *q);

/*
 * Switch rules on (on=1) or off (on=0).  spec is a set ("gopher", "c4",
 * "fineweb"), a rule name, or a shell pattern ("gopher.dup_*", "gopher.*gram").
 * Returns the number of rules it named (> 0) or FTK_ENOTFOUND with err filled.
 */
int ftk_quality_enable(struct ftk_quality *q, const char *spec, int on, struct ftk_error *err);

/*
 * Change a rule's bounds: "LO:HI" (either may be empty for no bound) or one
 * number, which replaces the bound the rule has (its upper bound when it has
 * both).  Returns 0, FTK_ENOTFOUND for an unknown rule, FTK_EUSAGE for a
 * value that is not a number.
 */
int ftk_quality_set_bounds(struct ftk_quality *q, const char *rule, const char *value,
			   struct ftk_error *err);

/* Number of rules switched on. */
int ftk_quality_enabled(const struct ftk_quality *q);

struct ftk_quality_fail {
	const char *rule;	/* borrowed from the table */
	double value;		/* what was measured */
	double limit;		/* the bound it crossed */
	int below;		/* 1: value < limit (a minimum), 0: value > limit */
};

/*
 * Check text[0..len) (UTF-8) against the rules that are on.  Returns the
 * number of rules failed (0: the text passes) and points *fails (may be
 * NULL) at them, in rule order; the array belongs to q and is valid until the
 * next call.
 */
int ftk_quality_check(struct ftk_quality *q, const char *text, size_t len,
		      const struct ftk_quality_fail **fails);

/*
 * The value a rule measured in the last check, or NAN when the rule is off or
 * was not measured.  For a C4 line rule: the number of lines it removed.
 */
double ftk_quality_value(const struct ftk_quality *q, const char *rule);

/* Append "gopher.mean_word_length=11.2>10" for f to sb. */
void ftk_quality_format(const struct ftk_quality_fail *f, struct strbuf *sb);

/* Append a number the way reasons show it: integers plainly, others to 3 decimals. */
void ftk_quality_format_num(struct strbuf *sb, double v);

#endif
