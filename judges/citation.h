/*
 * citation.h: the parts of the citation judge that tests and other tools
 * use on their own: reading citation markers out of a sentence, and the
 * offline entailment test.
 */
#ifndef FTK_JUDGES_CITATION_H
#define FTK_JUDGES_CITATION_H

#include <stddef.h>
#include <cjson/cJSON.h>
#include "lib/strbuf.h"

/*
 * Find the citation markers in s and append s without them to clean
 * (spacing before punctuation tidied: "in 1990 [1]." -> "in 1990.").
 * Styles: [1]  [1, 2]  [1,2]  [1][2]  [1-3]  [^1] (Markdown footnotes)
 * 【1】  [Doc 1] / [Document 1] / [Source 1]  and superscript digits ¹²³.
 * Writes the cited numbers, in order of appearance, duplicates removed,
 * into *nums (caller frees; NULL when none) and returns how many.
 * A range [a-b] with b - a > 20 is read as its two ends only.
 */
size_t ftk_citation_markers(const char *s, int **nums, struct strbuf *clean);

/* The sources a sentence cites, each with the marker that first cites it. */
struct ftk_cited {
	int *nums;		/* cited numbers, in order of appearance, no duplicates */
	size_t *starts, *ends;	/* byte span in the sentence of the marker ("[1, 2]",
				   "[^3]", "¹") where nums[i] first appears */
	size_t n, alloc;
};

/*
 * ftk_citation_markers with the markers' places: fills *c (release with
 * ftk_cited_release; nums is NULL when none) and appends s without markers
 * to clean.
 */
void ftk_citation_find(const char *s, struct ftk_cited *c, struct strbuf *clean);
void ftk_cited_release(struct ftk_cited *c);

/* The settings of the offline entailment test. */
struct ftk_entail_opts {
	double min_coverage;	/* fraction of the claim's content words the premise
				   must hold (default 0.6) */
	int check_negation;	/* a negation on one side only refutes (default 1) */
};

void ftk_entail_opts_init(struct ftk_entail_opts *o);

/*
 * Does premise entail claim, judged offline?  The claim's content words
 * (stop words dropped, Snowball English stems, morphological variants such as
 * Colombia/Colombian, the same number written another way such as 16th/16
 * and first/1, and one-letter spellings of long capitalized names) must be
 * covered by the premise's words to at least min_coverage; every number, and
 * every name (a capitalized word that is not a function word, or an ordinary
 * opener at a sentence's start), must appear in the premise, each number in a
 * premise sentence about the claim's fact (not one naming only others); and a
 * negation on one side must not deny what the other asserts (a premise
 * negation counts only when the claim says what its clause negates).  Returns
 * 1 or 0.  When why is not NULL, adds to it "coverage" (a number), "missing"
 * (the content words not found) and, when one decided it,
 * "missing_critical", "other_fact" (numbers found only in another fact's
 * sentence) and "negation".
 */
int ftk_entail_offline(const char *premise, const char *claim, const struct ftk_entail_opts *o,
		       cJSON *why);

#endif
