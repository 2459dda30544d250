/*
 * answer.c: a model's answer as the scorer sees it, and what is wrong with it.
 *
 * Three things can go wrong with a (case, sample), and they are kept apart
 * everywhere (results, summary, docs/formats.md):
 *
 *   - no answer: the model could not be reached, or never answered in the
 *     protocol (a transport failure).  The result holds "error"; it is never
 *     scored, counted apart, and asked again on resume.
 *   - a defective answer: the model answered, but broke the protocol: a
 *     tool call without a string name, arguments that are not a JSON object,
 *     a "tool_calls" that is not a list, nothing at all, bytes that are not
 *     UTF-8.  It is scored, as wrong: answer_defects() lists what is wrong,
 *     and eval_finish_unit() puts every metric of every judge at 0 with the
 *     defect as the failure, so it counts in every denominator.
 *   - a defective case: the suite itself is broken (a judge says so with
 *     FTK_EDATA); that is eval_finish_unit()'s business, not this file's.
 *
 * A defective answer is still stored as valid JSON: every string of the
 * answer that is not valid UTF-8 is repaired (U+FFFD for each bad byte)
 * before anything reads it, and counted.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lib/json.h"
#include "lib/openai.h"
#include "lib/stream.h"
#include "lib/strbuf.h"
#include "run_int.h"

void answer_init(struct answer *a)
{
	memset(a, 0, sizeof(*a));
	strbuf_init(&a->text_buf, 0);
	a->prompt_tokens = a->completion_tokens = -1;
}

void answer_release(struct answer *a)
{
	strbuf_release(&a->text_buf);
}

static long repair_str(char **s)
{
	size_t len = strlen(*s);
	if (ftk_utf8_check(*s, len) < 0)
		return 0;
	struct strbuf sb = STRBUF_INIT;
	strbuf_add_utf8(&sb, *s, len);
	/* cJSON frees with its own hooks, which are the default malloc/free */
	free(*s);
	*s = strbuf_detach(&sb, NULL);
	return 1;
}

long answer_repair_utf8(cJSON *v)
{
	long n = 0;
	for (; v; v = v->next) {
		if (v->string && !(v->type & cJSON_StringIsConst))
			n += repair_str(&v->string);
		if (cJSON_IsString(v) && v->valuestring && !(v->type & cJSON_IsReference))
			n += repair_str(&v->valuestring);
		if (v->child)
			n += answer_repair_utf8(v->child);
	}
	return n;
}

/* Copy what a protocol reply says into a (text copied, the rest borrowed). */
static void from_reply(struct answer *a, const struct ftk_openai_reply *r)
{
	strbuf_reset(&a->text_buf);
	a->text = NULL;
	if (r->text) {
		strbuf_addstr(&a->text_buf, r->text);
		a->text = a->text_buf.buf;
	}
	answer_set_tool_calls(a, r->tool_calls);
}

void answer_from_message(struct answer *a, const cJSON *msg)
{
	struct ftk_openai_reply r;
	ftk_openai_reply_from_message(msg, &r);
	from_reply(a, &r);
	ftk_openai_reply_release(&r);
}

void answer_from_chat(struct answer *a, const cJSON *resp)
{
	struct ftk_openai_reply r;
	ftk_openai_reply_read(resp, &r);
	from_reply(a, &r);
	a->finish_reason = r.finish_reason;
	a->prompt_tokens = r.prompt_tokens;
	a->completion_tokens = r.completion_tokens;
	ftk_openai_reply_release(&r);
}

void answer_from_result(struct answer *a, const cJSON *line)
{
	const char *out = ftk_json_get_str(line, "output");
	if (out) {
		strbuf_addstr(&a->text_buf, out);
		a->text = a->text_buf.buf;
	}
	answer_set_tool_calls(a, cJSON_GetObjectItemCaseSensitive(line, "tool_calls"));
	a->finish_reason = ftk_json_get_str(line, "finish_reason");
	const cJSON *u = cJSON_GetObjectItemCaseSensitive(line, "usage");
	a->prompt_tokens = json_long(u, "prompt_tokens", -1);
	a->completion_tokens = json_long(u, "completion_tokens", -1);
	const cJSON *l = cJSON_GetObjectItemCaseSensitive(line, "latency_s");
	a->latency_s = cJSON_IsNumber(l) ? l->valuedouble : 0;
	a->attempts = (int)json_long(line, "attempts", 0);
	a->cached = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(line, "cached"));
	a->rescored = 1;
	/* the bytes that were repaired are gone: the stored defect says so */
	const cJSON *d;
	cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(line, "defects"))
	{
		const char *kind = ftk_json_get_str(d, "kind");
		if (kind && !strcmp(kind, "invalid_utf8"))
			a->invalid_utf8 = 1;
	}
}

void answer_set_tool_calls(struct answer *a, const cJSON *tc)
{
	/* an empty list is no calls; anything else but null is kept, right or not */
	if (!tc || cJSON_IsNull(tc) || (cJSON_IsArray(tc) && cJSON_GetArraySize(tc) == 0))
		a->tool_calls = NULL;
	else
		a->tool_calls = tc;
}

static void defect(cJSON **arr, const char *kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void defect(cJSON **arr, const char *kind, const char *fmt, ...)
{
	char reason[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	if (!*arr)
		*arr = cJSON_CreateArray();
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "kind", kind);
	cJSON_AddStringToObject(d, "reason", reason);
	cJSON_AddItemToArray(*arr, d);
}

static const char *json_type(const cJSON *v)
{
	return !v ? "missing" : cJSON_IsNull(v) ? "null" : cJSON_IsString(v) ? "a string"
	       : cJSON_IsNumber(v) ? "a number" : cJSON_IsBool(v) ? "a boolean"
	       : cJSON_IsArray(v) ? "a list" : "an object";
}

/* The first protocol break in a tool_calls value, as a defect. */
static void call_defects(const cJSON *tc, cJSON **out)
{
	if (!cJSON_IsArray(tc)) {
		defect(out, "malformed_call", "tool_calls is %s, not a list", json_type(tc));
		return;
	}
	int i = 0;
	const cJSON *e;
	cJSON_ArrayForEach(e, tc)
	{
		const cJSON *fn = cJSON_GetObjectItemCaseSensitive(e, "function");
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
		const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
		if (!cJSON_IsObject(e)) {
			defect(out, "malformed_call", "tool_calls[%d] is %s, not an object", i, json_type(e));
			return;
		}
		if (!cJSON_IsObject(fn)) {
			defect(out, "malformed_call", "tool_calls[%d].function is %s, not an object", i,
			       json_type(fn));
			return;
		}
		if (!cJSON_IsString(name) || !*name->valuestring) {
			defect(out, "malformed_call", "tool_calls[%d].function.name is %s, not a function name",
			       i, cJSON_IsString(name) ? "empty" : json_type(name));
			return;
		}
		if (cJSON_IsString(args)) {
			/* the protocol's form: a JSON object as text ("" for none) */
			const char *s = args->valuestring;
			if (s[strspn(s, " \t\r\n")]) {
				cJSON *v = cJSON_Parse(s);
				int ok = cJSON_IsObject(v);
				cJSON_Delete(v);
				if (!ok) {
					defect(out, "malformed_call",
					       "tool_calls[%d].function.arguments of '%s' is not a JSON object: '%.60s'",
					       i, name->valuestring, s);
					return;
				}
			}
		} else if (args && !cJSON_IsNull(args) && !cJSON_IsObject(args)) {
			defect(out, "malformed_call",
			       "tool_calls[%d].function.arguments of '%s' is %s, not an object", i,
			       name->valuestring, json_type(args));
			return;
		}
		i++;
	}
}

cJSON *answer_defects(const struct answer *a)
{
	cJSON *out = NULL;
	if (a->invalid_utf8)
		defect(&out, "invalid_utf8",
		       "%ld string%s of the answer %s not valid UTF-8 (stored with U+FFFD)",
		       a->invalid_utf8, a->invalid_utf8 > 1 ? "s" : "", a->invalid_utf8 > 1 ? "were" : "was");
	if (a->tool_calls)
		call_defects(a->tool_calls, &out);
	int has_text = a->text && a->text[strspn(a->text, " \t\r\n")];
	if (!has_text && !a->tool_calls)
		defect(&out, "empty_output", "the model returned no text and no tool calls");
	return out;
}
