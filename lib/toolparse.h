/*
 * toolparse.h: tool calls in a model's generated text, as OpenAI tool_calls.
 *
 * A model asked to call a function writes it as text in its own format; a
 * server that speaks OpenAI's API turns that text into "tool_calls", as
 * vLLM's tool parsers do.  Three formats:
 *
 *   hermes       (Hermes, Qwen 2.5/3) <tool_call>{"name": ..., "arguments": {...}}</tool_call>,
 *                one block per call; the text before the first block is the
 *                content; an unclosed last block is read to the end.
 *   llama3_json  (Llama 3.1/3.2) the whole output is one JSON object
 *                {"name": ..., "parameters": {...}} (or "arguments"), or
 *                several separated by ";", optionally after <|python_tag|>;
 *                there is no content.
 *   mistral      [TOOL_CALLS] followed by a JSON array of {"name", "arguments"};
 *                the text before the marker is the content.
 *
 * Each call becomes {"id", "type": "function", "function": {"name",
 * "arguments": "<the arguments as compact JSON text>"}}.  Text that looks
 * like a call but does not parse (bad JSON, no name) is not a call: the whole
 * output stays content, as vLLM leaves it.
 */
#ifndef FTK_TOOLPARSE_H
#define FTK_TOOLPARSE_H

#include <stddef.h>
#include <cjson/cJSON.h>

enum ftk_toolfmt {
	FTK_TOOLFMT_NONE = 0,
	FTK_TOOLFMT_HERMES,
	FTK_TOOLFMT_LLAMA3_JSON,
	FTK_TOOLFMT_MISTRAL,
};

/* The formats' names in enum order, for an option table's choice row */
#define FTK_TOOLFMT_CHOICES "none|hermes|llama3_json|mistral"

/* The format called name ("hermes", "llama3_json", "mistral", "none"), or -1. */
int ftk_toolfmt_by_name(const char *name);
/* The format's name (static). */
const char *ftk_toolfmt_name(int fmt);

/*
 * The format a chat template asks for, from the markers it writes:
 * "<tool_call>" hermes, "[TOOL_CALLS]" mistral, "<|python_tag|>" or a Llama 3
 * header with "parameters" llama3_json; FTK_TOOLFMT_NONE when none.
 */
int ftk_toolfmt_from_template(const char *tmpl);

/*
 * Parse text (NUL-terminated) in format fmt.  Returns the number of calls
 * (>= 0).  When > 0, *tool_calls is a new array (caller frees) whose ids are
 * id_prefix + index ("call_7_0"), and *content a new string (caller frees) or
 * NULL when there is no text outside the calls.  When 0, both are NULL and
 * the text is all content.
 */
int ftk_toolparse(int fmt, const char *text, const char *id_prefix, cJSON **tool_calls,
		  char **content);

/*
 * Streaming: how many bytes of text (the output so far) may be shown as
 * content now.  Everything from the point where a call may begin (a marker,
 * or a prefix of one at the end; for llama3_json an output that begins with
 * "{" or "<|python_tag|>") is held back until ftk_toolparse decides.
 */
size_t ftk_toolparse_visible(int fmt, const char *text, size_t len);

#endif
