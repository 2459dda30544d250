/*
 * review.h: what ftk-review and ftk-report share.
 *
 * Both read an eval run directory (eval/run.h: results.jsonl, run.json,
 * summary.json) with the people's decisions on it (eval/reviews.h), and
 * both need the same small pieces: which results a person should look at,
 * the text of a case's prompt, wrapping UTF-8 text to a width in terminal
 * columns, and the active time of a reviewing session.
 *
 * Where the reviews live.  One shared file per run, RUN_DIR/reviews.jsonl,
 * is the default for every reviewer: each line names its reviewer, and it is
 * appended with the ledger's locked single write (lib/ledger.h), so two
 * people reviewing the same run at once never tear a line, and ftk-eval and
 * ftk-report find every reviewer's decisions without being told where.
 * --reviews FILE points elsewhere (a reviewer working on a copy).
 */
#ifndef FTK_REVIEW_H
#define FTK_REVIEW_H

#include <stddef.h>
#include <cjson/cJSON.h>
#include "lib/err.h"

/* Idle gaps longer than this are not counted as reviewing time (seconds). */
#define FTK_REVIEW_IDLE_S 300.0

struct ftk_review_run {
	char *dir;		/* as given */
	char *name;		/* the directory's base name: the "run" of review lines */
	char *suite;		/* run.json "suite", or NULL */
	cJSON *runinfo;		/* run.json, or NULL */
	cJSON *results;		/* array, as from ftk_eval_results_load */
	cJSON *summary;		/* summary.json, else computed from results */
	cJSON *reviews;		/* every decision line (possibly empty array) */
	char *reviews_path;	/* the file read (and written by ftk-review) */
	long bad_results, bad_reviews;	/* unreadable lines skipped */
};

/*
 * Load a run directory and its reviews (reviews_path NULL: DIR/reviews.jsonl;
 * a missing reviews file is no reviews).  The results are folded with the
 * reviews (eval/reviews.h).  Returns 0, or the error of the results or of a
 * given reviews file, with err filled.  Release with ftk_review_run_release.
 */
int ftk_review_run_load(struct ftk_review_run *r, const char *dir, const char *reviews_path,
			struct ftk_error *err);
void ftk_review_run_release(struct ftk_review_run *r);

/* Whether a result has flags (why a person should look).  */
int ftk_review_is_flagged(const cJSON *result);

/*
 * Whether a result matches a filter word: its id contains it, or one of its
 * flags' or failures' kinds, or a judge label with a failing verdict does.
 * Compared without case.  NULL or "" matches everything.
 */
int ftk_review_matches(const cJSON *result, const char *filter);

/*
 * Active seconds of a session from its event times t[0..n) (ascending,
 * seconds): the sum of the gaps between consecutive events that are at most
 * idle_s long; longer gaps (the person walked away) count nothing.
 */
double ftk_review_active_seconds(const double *t, size_t n, double idle_s);

/*
 * The prompt of a case record as plain text: each message as "role: content"
 * (content parts joined), separated by blank lines.  Caller frees.
 */
char *ftk_review_prompt_text(const cJSON *case_rec);

/*
 * Split UTF-8 text into lines at most width terminal columns wide, breaking
 * at spaces where it can and at newlines always.  Returns the number of
 * lines and *lines, an array of strings (caller frees each and the array).
 * Invalid UTF-8 bytes are shown as U+FFFD.  width < 1 counts as 1.
 */
size_t ftk_review_wrap(const char *text, int width, char ***lines);

/* Terminal columns of UTF-8 text (invalid bytes count 1). */
int ftk_review_width(const char *text);

#endif
