/*
 * import.h: standard benchmark files turned into ftk eval suites.
 *
 * `ftk eval import FORMAT FILE -o SUITE` reads a benchmark in the layout its
 * authors publish (GSM8K's question/answer, AllenAI's ARC records, HellaSwag's
 * ctx/endings, MMLU rows, TruthfulQA's mc1/mc2 targets) and writes a suite
 * (SUITE, JSON) and its cases (SUITE with .jsonl for .json, JSONL).
 *
 * The prompt is rendered here, once, with lm-evaluation-harness's default
 * template for the task (its doc_to_text, doc_to_choice, doc_to_target and
 * description), so that a case file says exactly what the model is asked and
 * a run can be compared with published numbers:
 *
 *   query     the task's prompt for this document ("Question: ...\nAnswer:")
 *   context   description + the few-shot examples + query: what the model
 *             is given (each example is its query, the target delimiter and
 *             its target, examples joined by the few-shot delimiter)
 *   choices   multiple choice: the continuations without the delimiter
 *             (the delimiter, " ", is added when scoring, as the harness does)
 *   answer    multiple choice: the index of the right choice
 *   labels    truthfulqa_mc2: 1/0 per choice
 *   target    the text a few-shot example shows after its query
 *   expected  generation (GSM8K): {"answer": the final number}
 *   fewshot   the ids of the examples in context, in order
 *
 * Few-shot examples are a seeded choice from a named split (a file in the
 * same format, or the input itself): for each case, num_fewshot distinct
 * documents other than the case itself, drawn with a generator seeded by
 * (seed, case id), so a case's examples do not depend on the order or the
 * number of the other cases, and the same seed gives the same suite.
 */
#ifndef FTK_EVAL_IMPORT_H
#define FTK_EVAL_IMPORT_H

#include <stdint.h>
#include "lib/err.h"

struct ftk_eval_import_opts {
	const char *format;	/* gsm8k, arc, hellaswag, mmlu, truthfulqa_mc1, truthfulqa_mc2 */
	const char *input;	/* the benchmark's JSONL file */
	const char *suite_path;	/* the suite to write (.json) */
	const char *name;	/* the suite's name; NULL: the format's task name */
	int num_fewshot;	/* 0: zero-shot */
	const char *fewshot_split;	/* file in the same format; NULL: the input itself */
	uint64_t seed;		/* few-shot choice */
	long limit;		/* only the first N documents; <= 0: all */
};

void ftk_eval_import_opts_init(struct ftk_eval_import_opts *o);

/*
 * Convert.  Returns the number of cases written (> 0), or FTK_EUSAGE (an
 * unknown format, more examples asked for than the split holds), FTK_EDATA
 * with file, line and field of the first bad document (nothing is written
 * then), FTK_EIO.
 */
long ftk_eval_import(const struct ftk_eval_import_opts *o, struct ftk_error *err);

/* The formats, NULL-terminated, for --help and errors. */
extern const char *const ftk_eval_import_formats[];

/*
 * lm-evaluation-harness's HellaSwag preprocess(): strip, " [title]" to ". ",
 * every "[...]" tag removed (no newline inside), "  " to " " (one pass).
 * Returns a new string (caller frees).  Exposed for tests.
 */
char *ftk_eval_hellaswag_preprocess(const char *text);

#endif
