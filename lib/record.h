/*
 * record.h: what a dataset record is, for the tools that look inside one.
 *
 * DESIGN.md's canonical record is a chat: {"messages":[{"role","content",
 * "tool_calls"...}], "tools":[...]}.  Preference records hold prompt, chosen
 * and rejected (message lists or strings).  Other tools also meet plain
 * {"text"}, {"prompt","completion"}, and, before ftk-convert, Alpaca and
 * ShareGPT.  This module detects which a record is and extracts the text a
 * content check should look at (dedupe keys, filters, decontamination, stats),
 * so that every tool means the same thing by "the record's text".
 *
 * Message content may be a string or a list of parts ({"type":"text",
 * "text":...}, and LLaMA-Factory's {"type":"text","value":...}); only text
 * parts contribute text.
 */
#ifndef FTK_RECORD_H
#define FTK_RECORD_H

#include <cjson/cJSON.h>
#include "strbuf.h"

enum ftk_format {
	FTK_FMT_UNKNOWN = 0,
	FTK_FMT_CHAT,			/* messages */
	FTK_FMT_PREFERENCE,		/* prompt/chosen/rejected (or chosen/rejected only) */
	FTK_FMT_PROMPT_COMPLETION,	/* prompt + completion strings */
	FTK_FMT_TEXT,			/* text */
	FTK_FMT_ALPACA,			/* instruction, input, output */
	FTK_FMT_SHAREGPT,		/* conversations: [{from, value}] */
};

/* Detect the format of one record from its keys.  Never fails: UNKNOWN. */
enum ftk_format ftk_record_format(const cJSON *rec);

/* "chat", "preference", "prompt-completion", "text", "alpaca", "sharegpt", "unknown". */
const char *ftk_format_name(enum ftk_format f);

/* Parse a name as above (also "auto" -> UNKNOWN).  Returns -1 for an unknown name. */
int ftk_format_parse(const char *name);

/*
 * Append the text of a message's content (a string, or the text parts of a
 * list) to out.  Returns 1 when content was a string or a list of parts, 0
 * when it was missing or null, -1 when it had another type.
 */
int ftk_content_text(const cJSON *content, struct strbuf *out);

/* A message's role ("role", or ShareGPT's "from"), borrowed; NULL when absent. */
const char *ftk_json_role(const cJSON *msg);

/*
 * Append the record's text to out: message contents joined by "\n" (only
 * messages with this role when role is not NULL; tool-call arguments
 * included when role is NULL or "assistant"), or text, or prompt then
 * completion, or instruction/input/output, or the ShareGPT values; for a
 * preference record the prompt and the chosen answer.  Returns the number
 * of text pieces appended (0 when the record has no text this module knows).
 */
int ftk_record_text(const cJSON *rec, const char *role, struct strbuf *out);

/*
 * Call fn for every string value in the record (depth first, in document
 * order) with its field path ("messages[1].content").  Stops and returns
 * fn's value when it is non-zero; returns 0 when all were visited.
 */
typedef int (*ftk_string_fn)(cJSON *str, const char *path, void *ctx);
int ftk_record_strings(cJSON *rec, ftk_string_fn fn, void *ctx);

/*
 * Provenance (docs/formats.md, "Provenance").  The first stage of a pipeline
 * (ftk-convert) writes where a record came from into it, as meta.source (the
 * file) and meta.line; a record may also carry an "id".  A tool later in the
 * pipeline reads only "-", line N of its own input, so its rejects and its
 * "of" members name the record's origin from these.
 *
 * Append the origin of rec to out as a compact JSON object with the members
 * it has: {"source":..., "line":..., "id":...} (source a string, line a
 * number, id a string or a number, copied as they are).  Returns 1 when it
 * appended one, 0 (out unchanged) when rec carries none of them.
 */
int ftk_record_origin(const cJSON *rec, struct strbuf *out);

#endif
