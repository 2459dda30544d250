/*
 * suite.h: an eval suite and its cases, loaded and checked.
 *
 * A suite is one JSON file (docs/formats.md, "Eval suites"):
 *
 *   {"name": "bfcl-simple-mini",
 *    "cases": "bfcl-simple-mini.jsonl",            (relative to the suite file)
 *    "judges": [{"judge": "toolcall"},
 *               {"judge": "match", "label": "exact", "settings": {"mode": "exact"}},
 *               "regex"],                          (a bare name: default settings)
 *    "generation": {"max_tokens": 256, "temperature": 0}}
 *
 * "generation" is passed to the model as request parameters (OpenAI names:
 * max_tokens, temperature, top_p, seed, stop, ...) and is part of the cache
 * key.  A case is one JSONL line:
 *
 *   {"id": "simple_0", "messages": [...], "cluster": "doc-17",
 *    "tools": [...], "sources": [...], "expected": {...}, "rubric": "..."}
 *
 * id (a string, or an integer taken as its decimal text) and messages (a
 * non-empty array of objects with a string role) are required and checked
 * here; ids must be unique.  cluster (string or number) is optional.  What the
 * judges need (tools, sources, expected, rubric) is checked by the judges
 * themselves when they score.  Any error names the file, line and field and
 * stops the load: a suite is configuration, and a half-loaded one would give
 * scores over the wrong set of cases.
 *
 * Ownership: a suite owns everything it points to; cases' JSON and strings are
 * valid until ftk_eval_suite_free().
 */
#ifndef FTK_EVAL_SUITE_H
#define FTK_EVAL_SUITE_H

#include <stddef.h>
#include <cjson/cJSON.h>
#include "lib/err.h"

/*
 * What a case asks of the model ("output_type", lm-evaluation-harness's
 * names): a generated answer for the judges (the default), the
 * log-likelihood of each of its choices, or the log-likelihood of a whole
 * text (perplexity).  A multiple_choice case holds "context" (string),
 * "choices" (non-empty array of strings), "answer" (an index into choices)
 * and optionally "labels" (1/0 per choice, for truthfulqa_mc2's metric); a
 * loglikelihood_rolling case holds "text".  Neither needs "messages".
 */
enum ftk_eval_output_type {
	FTK_EVAL_GENERATE = 0,
	FTK_EVAL_MULTIPLE_CHOICE,
	FTK_EVAL_ROLLING,
};

struct ftk_eval_judge_spec {
	char *kind;		/* the judge's registry name: "toolcall" */
	char *label;		/* settings' "label" (or the spec's), else NULL */
	cJSON *settings;	/* an object or NULL; owned (a detached copy) */
};

struct ftk_eval_case {
	char *id;
	char *cluster;		/* NULL when the case has none */
	long line;		/* 1-based line in the cases file */
	cJSON *rec;		/* the whole case object, owned */
	const cJSON *messages;	/* borrowed from rec */
	const cJSON *tools;	/* borrowed from rec, or NULL */
	/* log-likelihood suites (borrowed from rec, NULL otherwise) */
	const char *context;	/* multiple_choice: what precedes each choice */
	const cJSON *choices;	/* multiple_choice: array of strings */
	int answer;		/* multiple_choice: index of the right choice */
	const cJSON *labels;	/* multiple_choice, optional: 1/0 per choice (mc2) */
	const char *text;	/* loglikelihood_rolling: the text to score */
};

struct ftk_eval_suite {
	char *path;		/* as given */
	char *name;		/* "name", else the file's base name without .json */
	char *cases_path;	/* resolved against the suite's folder */
	struct ftk_eval_judge_spec *judges;
	size_t n_judges;
	cJSON *generation;	/* an object (possibly empty), owned */
	int output_type;	/* enum ftk_eval_output_type */
	cJSON *metrics;		/* "metrics": array of names, or NULL (owned) */
	struct ftk_eval_case *cases;
	size_t n_cases;
	size_t *by_id;		/* case indices sorted by id, for lookups */
};

/*
 * Load the suite at path and all its cases.  Returns 0 and *out (free with
 * ftk_eval_suite_free), or FTK_ENOTFOUND / FTK_EIO / FTK_EDATA with err's
 * file, line and field set to the place at fault (the suite file, or the
 * cases file and line).
 */
int ftk_eval_suite_load(struct ftk_eval_suite **out, const char *path, struct ftk_error *err);

/* The index of the case with this id, or -1. */
long ftk_eval_suite_find(const struct ftk_eval_suite *s, const char *id);

/* Free the suite.  NULL allowed. */
void ftk_eval_suite_free(struct ftk_eval_suite *s);

#endif
