/*
 * convert.h: turning the dataset formats people have into the canonical chat
 * and preference records (DESIGN.md, "Dataset records").
 *
 * Sources: Alpaca (instruction/input/output, system, history), ShareGPT
 * (conversations of from/value, with function_call and observation turns,
 * tools as a JSON string), ShareGPT preference (conversations + chosen and
 * rejected turns), LLaMA-Factory v1 (messages whose content is a list of
 * {type, value} parts, with reasoning and tool_call parts;
 * chosen_messages/rejected_messages), OpenAI chat JSONL (content parts,
 * legacy function_call, arguments as objects), prompt/completion, and plain
 * text (passed through: {"text"} is canonical already).
 *
 * Fields a converter does not know are kept, after the canonical ones, in
 * their original order.
 */
#ifndef FTK_CONVERT_H
#define FTK_CONVERT_H

#include <cjson/cJSON.h>
#include <stddef.h>

enum ftk_conv_from {
	FTK_FROM_AUTO = 0,
	FTK_FROM_ALPACA,
	FTK_FROM_SHAREGPT,
	FTK_FROM_OPENAI,	/* also LLaMA-Factory v1 messages */
	FTK_FROM_PROMPT_COMPLETION,
	FTK_FROM_TEXT,
	FTK_FROM_PREFERENCE,
};

/* Parse a --from name ("auto", "alpaca", "sharegpt", "openai", "v1", "messages",
 * "prompt-completion", "text", "preference").  -1 when unknown. */
int ftk_conv_from_parse(const char *name);

/*
 * Convert rec.  On success returns a new canonical record (caller frees; it
 * borrows rec's strings, ftk_json_share, so free it before rec), or
 * rec itself (not a copy: check with ==) when the record is canonical text and
 * must pass through as its original bytes.  On failure returns NULL and
 * writes a reason kind (static string, "unknown-format", "bad-field"...) to
 * *kind and a message to msg.
 */
cJSON *ftk_convert_record(cJSON *rec, int from, const char **kind, char *msg, size_t n);

/*
 * Find the next element of a top-level JSON array in s[0..len), starting at
 * *pos (0 for the first call).  Returns 1 with the element at s[*start..
 * *start+*elen) and *pos moved past it, 0 at the closing bracket, or -1 when
 * the text is not a well-formed array (*pos then points at the problem).
 * Strings and nesting are respected; the elements themselves are not
 * validated (the caller parses each).
 */
int ftk_json_array_next(const char *s, size_t len, size_t *pos, size_t *start, size_t *elen);

#endif
