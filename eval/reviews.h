/*
 * reviews.h: people's verdicts on eval cases, and how they meet the judges'.
 *
 * ftk-review writes one line per decision to a reviews JSONL file, by
 * default RUN_DIR/reviews.jsonl:
 *
 *   {"ts":"2026-11-23T15:00:00Z","reviewer":"alice","run":"eval-base",
 *    "id":"case-3","sample":0,"verdict":"fail","note":"wrong city"}
 *
 * verdict is "pass", "fail", "unsure" or null (a note written before any
 * verdict).  Each line carries the reviewer's whole current decision on the
 * case, so the last line for (reviewer, id, sample) is the decision and the
 * earlier ones are its history.  Several reviewers share one file: every
 * line is appended with the ledger's append (lib/ledger.h: one write(2)
 * under flock), so concurrent sessions never tear or interleave lines, and a
 * crash loses at most the decision being written.
 *
 * Folding (what ftk-eval summary --reviews does).  For each result the
 * reviewers' decisions are combined into one human verdict: the verdict all
 * reviewers who decided pass or fail agree on; "unsure" when all of them
 * said unsure; "conflict" when some said pass and others fail.  A pass or
 * fail overrides the judges: the folded result gets
 *
 *   "human": {"verdict":"fail","reviewers":[{"reviewer","verdict","note","ts"}]},
 *   "verdict": "fail", "verdict_by": "human"
 *
 * and each judge's entry keeps its own "pass" with "human_pass" and
 * "overridden": true beside it, so the provenance of every verdict stays
 * readable.  Unreviewed, unsure and conflicting cases keep the judges'
 * verdict ("verdict_by": "judges": pass when every judge's verdict passes).
 *
 * Agreement.  For each judge that gives a verdict, over the cases with a
 * human pass or fail: the 2x2 confusion matrix (judge x human), raw
 * agreement, Cohen's kappa ((p_o - p_e) / (1 - p_e); null when p_e is 1,
 * where it is undefined), and the ids where they disagree.
 */
#ifndef FTK_EVAL_REVIEWS_H
#define FTK_EVAL_REVIEWS_H

#include <stdio.h>
#include <cjson/cJSON.h>
#include "lib/err.h"

/*
 * Read a reviews file.  Returns 0 and *out, a JSON array of the decision
 * lines in file order (caller frees); a line that is not a JSON object with
 * a string "reviewer", a string "id" and a verdict of pass/fail/unsure/null
 * is skipped and counted in *n_bad (may be NULL), and the first such line's
 * place is put in err's detail (file, line, field) even on success.  A
 * missing file is FTK_ENOTFOUND; FTK_EIO on a read error.
 */
int ftk_reviews_load(const char *path, cJSON **out, long *n_bad, struct ftk_error *err);

/*
 * Keep only the last decision of each (reviewer, id, sample), in the order
 * of their last lines.  Consumes nothing; returns a new array (caller frees).
 */
cJSON *ftk_reviews_latest(const cJSON *lines);

/*
 * Fold reviews (lines as from ftk_reviews_load; older ones are superseded)
 * into results (an array as from ftk_eval_results_load), in place, as the
 * file essay describes.  Returns the number of results that got a "human".
 */
long ftk_reviews_fold(cJSON *results, const cJSON *reviews);

/*
 * Judge-versus-human agreement over folded results:
 *   {"reviewed": R, "human": {"pass","fail","unsure","conflict"},
 *    "overridden": O, "verdict": {"n","mean","lo","hi"} (final verdicts, human first),
 *    "judges": {label: {"n","both_pass","judge_pass_human_fail",
 *                        "judge_fail_human_pass","both_fail","agreement",
 *                        "kappa","disagree":[ids]}}}
 * An id is written "id" for sample 0 and "id#k" for sample k.  Caller frees.
 */
cJSON *ftk_reviews_agreement(const cJSON *folded);

/* Print an agreement object (as above) as a few lines of text to f. */
void ftk_reviews_print(FILE *f, const cJSON *agreement);

/* Cohen's kappa of a 2x2 table [[a, b], [c, d]]; NaN when undefined. */
double ftk_reviews_kappa(double a, double b, double c, double d);

#endif
