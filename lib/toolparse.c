/*
 * toolparse.c: tool calls out of generated text (see toolparse.h).
 *
 * Each format is a small scanner over the text: find the calls' JSON, parse
 * it with cJSON (cJSON_ParseWithOpts tells where a value ends, so one JSON
 * value followed by more text is found without guessing at braces), and build
 * OpenAI's call objects.  Any failure leaves the text as content: a server
 * must never lose what the model wrote.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lib/err.h"
#include "lib/strbuf.h"
#include "lib/toolparse.h"

static const char *const names[] = { "none", "hermes", "llama3_json", "mistral" };

int ftk_toolfmt_by_name(const char *name)
{
	for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++)
		if (name && !strcmp(name, names[i]))
			return i;
	return -1;
}

const char *ftk_toolfmt_name(int fmt)
{
	return fmt >= 0 && fmt < (int)(sizeof(names) / sizeof(names[0])) ? names[fmt] : "none";
}

int ftk_toolfmt_from_template(const char *t)
{
	if (!t)
		return FTK_TOOLFMT_NONE;
	if (strstr(t, "<tool_call>"))
		return FTK_TOOLFMT_HERMES;
	if (strstr(t, "[TOOL_CALLS]"))
		return FTK_TOOLFMT_MISTRAL;
	if (strstr(t, "<|python_tag|>") || (strstr(t, "<|start_header_id|>") && strstr(t, "parameters")))
		return FTK_TOOLFMT_LLAMA3_JSON;
	return FTK_TOOLFMT_NONE;
}

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* {"name": s, "arguments"|"parameters": v} to an OpenAI call; NULL when it is not one. */
static cJSON *make_call(const cJSON *obj, const char *id_prefix, int index)
{
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(obj, "name");
	const cJSON *args = cJSON_GetObjectItemCaseSensitive(obj, "arguments");
	if (!args)
		args = cJSON_GetObjectItemCaseSensitive(obj, "parameters");
	if (!cJSON_IsObject(obj) || !cJSON_IsString(name) || !name->valuestring[0])
		return NULL;
	cJSON *c = cJSON_CreateObject();
	char id[96];
	snprintf(id, sizeof(id), "%s%d", id_prefix ? id_prefix : "call_", index);
	cJSON_AddStringToObject(c, "id", id);
	cJSON_AddStringToObject(c, "type", "function");
	cJSON *f = cJSON_AddObjectToObject(c, "function");
	cJSON_AddStringToObject(f, "name", name->valuestring);
	if (cJSON_IsString(args)) {	/* already text (some models write a JSON string) */
		cJSON_AddStringToObject(f, "arguments", args->valuestring);
	} else {
		char *a = args ? cJSON_PrintUnformatted(args) : NULL;
		cJSON_AddStringToObject(f, "arguments", a ? a : "{}");
		cJSON_free(a);
	}
	return c;
}

/* One JSON value at s (after spaces); *end past it.  NULL when none parses. */
static cJSON *parse_at(const char *s, const char **end)
{
	while (is_space(*s))
		s++;
	const char *e = NULL;
	cJSON *v = cJSON_ParseWithOpts(s, &e, 0);
	if (!v)
		return NULL;
	*end = e;
	return v;
}

static int parse_hermes(const char *text, const char *idp, cJSON *calls)
{
	static const char open_[] = "<tool_call>", close_[] = "</tool_call>";
	const char *p = strstr(text, open_);
	int n = 0;
	while (p) {
		const char *body = p + strlen(open_);
		const char *stop = strstr(body, close_);
		char *chunk = stop ? xstrndup(body, (size_t)(stop - body)) : xstrdup(body);
		const char *end;
		cJSON *v = parse_at(chunk, &end);
		int ok = v != NULL;
		if (ok)
			for (const char *q = end; *q; q++)
				ok &= is_space(*q);
		cJSON *c = ok ? make_call(v, idp, n) : NULL;
		cJSON_Delete(v);
		free(chunk);
		if (!c)
			return -1;
		cJSON_AddItemToArray(calls, c);
		n++;
		p = stop ? strstr(stop + strlen(close_), open_) : NULL;
	}
	return n;
}

static int parse_llama3(const char *text, const char *idp, cJSON *calls)
{
	const char *p = text;
	while (is_space(*p))
		p++;
	if (!strncmp(p, "<|python_tag|>", 14))
		p += 14;
	while (is_space(*p))
		p++;
	if (*p != '{')
		return 0;
	int n = 0;
	for (;;) {
		const char *end;
		cJSON *v = parse_at(p, &end);
		cJSON *c = v ? make_call(v, idp, n) : NULL;
		cJSON_Delete(v);
		if (!c)
			return -1;
		cJSON_AddItemToArray(calls, c);
		n++;
		p = end;
		while (is_space(*p))
			p++;
		if (!*p)
			return n;
		if (*p != ';')
			return -1;
		p++;
	}
}

static int parse_mistral(const char *text, const char *idp, cJSON *calls)
{
	const char *p = strstr(text, "[TOOL_CALLS]");
	if (!p)
		return 0;
	const char *end;
	cJSON *v = parse_at(p + 12, &end);
	if (!v)
		return -1;
	int n = 0;
	const cJSON *x;
	if (cJSON_IsObject(v)) {	/* a single call without the array */
		cJSON *c = make_call(v, idp, 0);
		cJSON_Delete(v);
		if (!c)
			return -1;
		cJSON_AddItemToArray(calls, c);
		return 1;
	}
	if (!cJSON_IsArray(v)) {
		cJSON_Delete(v);
		return -1;
	}
	cJSON_ArrayForEach(x, v)
	{
		cJSON *c = make_call(x, idp, n);
		if (!c) {
			cJSON_Delete(v);
			return -1;
		}
		cJSON_AddItemToArray(calls, c);
		n++;
	}
	cJSON_Delete(v);
	return n;
}

int ftk_toolparse(int fmt, const char *text, const char *id_prefix, cJSON **tool_calls,
		  char **content)
{
	*tool_calls = NULL;
	*content = NULL;
	if (!text)
		return 0;
	cJSON *calls = cJSON_CreateArray();
	int n = 0;
	const char *cut = NULL;	/* where content ends */
	switch (fmt) {
	case FTK_TOOLFMT_HERMES:
		n = parse_hermes(text, id_prefix, calls);
		cut = strstr(text, "<tool_call>");
		break;
	case FTK_TOOLFMT_LLAMA3_JSON:
		n = parse_llama3(text, id_prefix, calls);
		cut = text;
		break;
	case FTK_TOOLFMT_MISTRAL:
		n = parse_mistral(text, id_prefix, calls);
		cut = strstr(text, "[TOOL_CALLS]");
		break;
	default:
		break;
	}
	if (n <= 0) {
		cJSON_Delete(calls);
		return 0;
	}
	*tool_calls = calls;
	if (cut && cut > text)
		*content = xstrndup(text, (size_t)(cut - text));
	return n;
}

/* The length of the longest suffix of text[0..len) that is a proper prefix of m. */
static size_t partial_marker(const char *text, size_t len, const char *m)
{
	size_t ml = strlen(m);
	for (size_t k = ml - 1; k > 0; k--)
		if (k <= len && !memcmp(text + len - k, m, k))
			return k;
	return 0;
}

size_t ftk_toolparse_visible(int fmt, const char *text, size_t len)
{
	const char *marker = fmt == FTK_TOOLFMT_HERMES ? "<tool_call>"
			     : fmt == FTK_TOOLFMT_MISTRAL ? "[TOOL_CALLS]" : NULL;
	if (fmt == FTK_TOOLFMT_LLAMA3_JSON) {
		size_t i = 0;
		while (i < len && is_space(text[i]))
			i++;
		if (i == len)
			return 0;	/* nothing but spaces yet: undecided */
		if (text[i] == '{' || !strncmp(text + i, "<|python_tag|>", len - i < 14 ? len - i : 14))
			return 0;
		return len;
	}
	if (!marker)
		return len;
	for (size_t i = 0; i + strlen(marker) <= len; i++)
		if (!memcmp(text + i, marker, strlen(marker)))
			return i;
	return len - partial_marker(text, len, marker);
}
