/*
 * validate.h: checking one record against its format.
 *
 * The checks live here, apart from the program, so that other tools (and the
 * fuzz target) can run the same rules and tests can call them directly.  A
 * check never stops at the first problem: it collects every error in the
 * record, each with a stable kind ("unknown-role"), the field path
 * ("messages[2].role") and a message, because a person fixing a dataset
 * wants to see all of it at once.
 */
#ifndef FTK_VALIDATE_H
#define FTK_VALIDATE_H

#include <cjson/cJSON.h>
#include "lib/record.h"

struct ftk_validate_opts {
	int format;			/* enum ftk_format, FTK_FMT_UNKNOWN = detect per record */
	const char *roles;		/* comma-separated allowed roles */
	int order;			/* 1: user/assistant must alternate, starting with user */
	int last_assistant;		/* 1: the last turn must be the assistant's (SFT data) */
	int allow_parts;		/* 1: content may be a list of text parts */
	long max_chars;			/* 0: no limit on the record's text length */
};

/* The defaults: detect, system/user/assistant/tool, order and last-assistant on. */
void ftk_validate_opts_init(struct ftk_validate_opts *o);

struct ftk_verror {
	const char *kind;		/* static string */
	char field[160];
	char msg[256];
};

struct ftk_verrors {
	struct ftk_verror *v;
	size_t n, alloc;
};

/*
 * Check rec (a parsed object) and append every problem to errs (which the
 * caller owns and frees with ftk_verrors_release).  Returns the number of
 * errors found by this call (0: valid).
 */
int ftk_validate_record(const cJSON *rec, const struct ftk_validate_opts *o,
			struct ftk_verrors *errs);

/*
 * The checks on the original bytes that cJSON cannot do: raw control bytes
 * inside the line and escaped NULs.  Returns the number of errors appended.
 */
int ftk_validate_raw(const char *raw, size_t len, struct ftk_verrors *errs);

/*
 * Numbers that a double cannot hold (1e999, 1e-999): every tool but
 * ftk-validate rejects them in ftk_tool_parse.  rec is raw[0..len) parsed.
 * Returns the number of errors appended (0 or 1).
 */
int ftk_validate_numbers(const char *raw, size_t len, const cJSON *rec,
			 struct ftk_verrors *errs);

void ftk_verrors_release(struct ftk_verrors *errs);

#endif
