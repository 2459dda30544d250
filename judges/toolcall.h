/*
 * toolcall.h: function calls read out of a model's answer, for the toolcall
 * judge and its tests.
 *
 * A model says which functions it calls in one of three ways: the OpenAI
 * "tool_calls" field; JSON in its text ({"name": "f", "arguments": {...}},
 * a list of those, Hermes-style <tool_call> blocks, a ```json fence); or
 * Python call syntax in its text, as BFCL prompts ask
 * ("[f(a=1, b='x'), g(c=[1, 2])]").  All three come out as the same list of
 * calls.  Arguments are cJSON objects; because cJSON stores every number as
 * a double, the parser remembers which numbers were written as floats
 * ("5.0", "1e3") so that BFCL's type rules (5.0 is not an integer) hold.
 */
#ifndef FTK_JUDGES_TOOLCALL_H
#define FTK_JUDGES_TOOLCALL_H

#include <cjson/cJSON.h>
#include "judges/judge.h"

struct ftk_call {
	char *name;		/* function name (owned) */
	cJSON *args;		/* an object (owned) */
	const cJSON **floats;	/* number nodes inside args written as floats */
	size_t nfloats, floats_alloc;
	int positional;		/* how many positional (unnamed) arguments it had */
};

struct ftk_calls {
	struct ftk_call *v;
	size_t n, alloc;
	const char *source;	/* "tool_calls", "json", "python" or "none" (static) */
	/*
	 * Calls in the tool_calls field that break the protocol: a "tool_calls"
	 * that is not a list, an entry without a string function.name (left out
	 * of v), arguments that are not a JSON object (kept in v with empty
	 * arguments and positional -1).  A defective answer, never an error.
	 */
	size_t malformed;
	char malformed_reason[200];	/* the first one, naming the field */
};

/*
 * Read the calls in out: the tool_calls field when it holds any; else the
 * whole text (or its first ``` fence) as Python calls; else JSON values in
 * the text that hold calls; else Python calls to the named tools inside
 * prose.  tool_names (may be NULL, ntools names) are the only names looked
 * for in prose (any name when there are none).  Returns 0 (calls->n may be
 * 0: no call found); a malformed tool_calls field is the model's defect and
 * is counted in calls->malformed, not returned as an error.  Free with
 * ftk_calls_release.
 */
int ftk_calls_extract(const struct ftk_judge_output *out, const char *const *tool_names,
		      size_t ntools, struct ftk_calls *calls, struct ftk_error *err);

/*
 * Parse Python call syntax: one call, a list of calls, or calls separated by
 * newlines, commas or semicolons, the whole of s.  Returns 0 with the calls
 * appended, FTK_EDATA (err->offset where it stopped) otherwise.
 */
int ftk_calls_parse_python(const char *s, struct ftk_calls *calls, struct ftk_error *err);

void ftk_calls_release(struct ftk_calls *calls);

#endif
