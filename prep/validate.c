/*
 * validate.c: the rules of ftk-validate (see validate.h).
 *
 * Formats and what each must hold (DESIGN.md, "Dataset records"):
 *
 *   chat        messages: a non-empty array of {role, content, tool_calls?,
 *               tool_call_id?}; optional tools: [{type:"function",
 *               function:{name, parameters?}}]
 *   preference  prompt, chosen, rejected: message arrays or strings
 *   prompt-completion  prompt and completion strings
 *   text        text: a string
 *
 * Alpaca and ShareGPT records are recognised only to say that they need
 * ftk-convert, since the trainer and templates read the canonical form.
 *
 * Conversation rules for chat (and each side of a preference record): the
 * system message may only come first; with `order` on, the turns after it
 * alternate user, assistant, user, ... where an assistant turn that calls
 * tools may be followed by tool messages and then the assistant again; with
 * `last_assistant` on, the last message is the assistant's.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lib/err.h"
#include "lib/json.h"
#include "prep/validate.h"

void ftk_validate_opts_init(struct ftk_validate_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->format = FTK_FMT_UNKNOWN;
	o->roles = "system,user,assistant,tool";
	o->order = 1;
	o->last_assistant = 1;
	o->allow_parts = 1;
}

void ftk_verrors_release(struct ftk_verrors *e)
{
	free(e->v);
	e->v = NULL;
	e->n = e->alloc = 0;
}

__attribute__((format(printf, 4, 5)))
static void add(struct ftk_verrors *e, const char *kind, const char *field, const char *fmt, ...)
{
	va_list ap;
	FTK_ALLOC_GROW(e->v, e->n + 1, e->alloc);
	struct ftk_verror *x = &e->v[e->n++];
	x->kind = kind;
	snprintf(x->field, sizeof(x->field), "%s", field ? field : "");
	va_start(ap, fmt);
	vsnprintf(x->msg, sizeof(x->msg), fmt, ap);
	va_end(ap);
}

static const cJSON *get(const cJSON *o, const char *k)
{
	return cJSON_GetObjectItemCaseSensitive(o, k);
}

static int role_allowed(const char *roles, const char *r)
{
	size_t n = strlen(r);
	const char *p = roles;
	while (*p) {
		const char *c = strchr(p, ',');
		size_t l = c ? (size_t)(c - p) : strlen(p);
		if (l == n && !memcmp(p, r, n))
			return 1;
		if (!c)
			break;
		p = c + 1;
	}
	return 0;
}

static int blank(const char *s)
{
	for (; *s; s++)
		if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
			return 0;
	return 1;
}

/* Content: returns its text length, or -1 after reporting a problem. */
static long check_content(const cJSON *c, const char *path, const struct ftk_validate_opts *o,
			  struct ftk_verrors *e, int *is_blank)
{
	char p[200];
	*is_blank = 1;
	if (cJSON_IsString(c)) {
		*is_blank = blank(c->valuestring);
		return (long)strlen(c->valuestring);
	}
	if (!cJSON_IsArray(c)) {
		add(e, "wrong-type", path, "content must be a string or a list of parts, not %s",
		    ftk_json_type_name(c));
		return -1;
	}
	if (!o->allow_parts) {
		add(e, "content-parts", path, "content is a list of parts; strings are required here");
		return -1;
	}
	long total = 0;
	int i = 0;
	const cJSON *part;
	cJSON_ArrayForEach(part, c) {
		ftk_json_path_index(p, sizeof(p), path, i++);
		const cJSON *type = get(part, "type");
		if (!cJSON_IsObject(part) || !cJSON_IsString(type)) {
			add(e, "bad-content-part", p, "a content part must be an object with a string \"type\"");
			continue;
		}
		if (strcmp(type->valuestring, "text") != 0)
			continue;	/* images and other parts carry no text to check */
		const cJSON *t = get(part, "text");
		if (!cJSON_IsString(t)) {
			char q[220];
			ftk_json_path_key(q, sizeof(q), p, "text");
			add(e, "bad-content-part", q, "a text part needs a string \"text\"%s",
			    get(part, "value") ? " (\"value\" is LLaMA-Factory's spelling: run ftk-convert)" : "");
			continue;
		}
		if (!blank(t->valuestring))
			*is_blank = 0;
		total += (long)strlen(t->valuestring);
	}
	return total;
}

struct call_ids {
	const char *id[64];
	int n;
	int open;	/* calls of the last assistant turn not yet answered (for id-less calls) */
};

static void check_tool_calls(const cJSON *calls, const char *path, const cJSON *tools,
			     struct call_ids *ids, struct ftk_verrors *e)
{
	char p[200], q[240];
	if (!cJSON_IsArray(calls)) {
		add(e, "wrong-type", path, "tool_calls must be an array, not %s", ftk_json_type_name(calls));
		return;
	}
	int i = 0;
	const cJSON *c;
	ids->open = 0;
	cJSON_ArrayForEach(c, calls) {
		ftk_json_path_index(p, sizeof(p), path, i++);
		const cJSON *f = get(c, "function");
		if (!cJSON_IsObject(c) || !cJSON_IsObject(f)) {
			add(e, "bad-tool-call", p, "a tool call must be {\"type\":\"function\",\"function\":{\"name\",\"arguments\"}}");
			continue;
		}
		const cJSON *type = get(c, "type");
		if (type && (!cJSON_IsString(type) || strcmp(type->valuestring, "function"))) {
			ftk_json_path_key(q, sizeof(q), p, "type");
			add(e, "bad-tool-call", q, "tool call type must be \"function\"");
		}
		const cJSON *id = get(c, "id");
		if (cJSON_IsString(id) && ids->n < 64)
			ids->id[ids->n++] = id->valuestring;
		ids->open++;
		const cJSON *name = get(f, "name"), *args = get(f, "arguments");
		ftk_json_path_key(q, sizeof(q), p, "function.name");
		if (!cJSON_IsString(name) || !*name->valuestring) {
			add(e, "bad-tool-call", q, "function name must be a non-empty string");
		} else if (cJSON_IsArray(tools)) {
			int found = 0;
			const cJSON *t;
			cJSON_ArrayForEach(t, tools) {
				const cJSON *tf = get(t, "function");
				const char *tn = ftk_json_get_str(tf ? tf : t, "name");
				if (tn && !strcmp(tn, name->valuestring))
					found = 1;
			}
			if (!found)
				add(e, "unknown-function", q, "calls '%s', which is not in tools", name->valuestring);
		}
		ftk_json_path_key(q, sizeof(q), p, "function.arguments");
		if (cJSON_IsString(args)) {
			cJSON *a = NULL;
			struct ftk_error err;
			if (ftk_json_parse(args->valuestring, strlen(args->valuestring), &a, &err) < 0)
				add(e, "tool-arguments-not-json", q, "arguments are not valid JSON: %s", err.msg);
			else if (!cJSON_IsObject(a))
				add(e, "tool-arguments-not-json", q, "arguments must encode a JSON object, not %s",
				    ftk_json_type_name(a));
			cJSON_Delete(a);
		} else if (!cJSON_IsObject(args)) {
			add(e, "bad-tool-call", q, "arguments must be a JSON string (or an object), not %s",
			    ftk_json_type_name(args));
		}
	}
}

static void check_tools(const cJSON *tools, struct ftk_verrors *e)
{
	char p[200];
	if (!tools)
		return;
	if (!cJSON_IsArray(tools)) {
		add(e, "bad-tools", "tools", "tools must be an array, not %s%s", ftk_json_type_name(tools),
		    cJSON_IsString(tools) ? " (a JSON string of tools: run ftk-convert)" : "");
		return;
	}
	int i = 0;
	const cJSON *t;
	cJSON_ArrayForEach(t, tools) {
		ftk_json_path_index(p, sizeof(p), "tools", i++);
		const cJSON *f = get(t, "function");
		if (!cJSON_IsObject(f)) {
			add(e, "bad-tools", p, "a tool must be {\"type\":\"function\",\"function\":{\"name\",\"parameters\"}}");
			continue;
		}
		if (!cJSON_IsString(get(f, "name")))
			add(e, "bad-tools", p, "a tool function needs a string \"name\"");
		const cJSON *params = get(f, "parameters");
		if (params && !cJSON_IsObject(params))
			add(e, "bad-tools", p, "function parameters must be a JSON Schema object");
	}
}

/*
 * A message list.  need_last: the last message must be the assistant's.
 * Returns the text length.
 */
static long check_messages(const cJSON *msgs, const char *path, const cJSON *tools,
			   const struct ftk_validate_opts *o, int need_last, int allow_start_assistant,
			   struct ftk_verrors *e)
{
	char p[200], q[240];
	long total = 0;
	if (!cJSON_IsArray(msgs)) {
		add(e, "wrong-type", path, "must be an array of messages, not %s", ftk_json_type_name(msgs));
		return 0;
	}
	if (!msgs->child) {
		add(e, "empty-messages", path, "has no messages");
		return 0;
	}
	struct call_ids ids = { { 0 }, 0, 0 };
	const char *prev = NULL;	/* previous role that counts for ordering */
	const char *last = NULL;
	int i = 0;
	const cJSON *m;
	cJSON_ArrayForEach(m, msgs) {
		ftk_json_path_index(p, sizeof(p), path, i);
		if (!cJSON_IsObject(m)) {
			add(e, "wrong-type", p, "a message must be an object, not %s", ftk_json_type_name(m));
			i++;
			continue;
		}
		const cJSON *role = get(m, "role");
		ftk_json_path_key(q, sizeof(q), p, "role");
		if (!role) {
			add(e, "missing-field", q, "missing%s", get(m, "from") ? " (\"from\" is ShareGPT's: run ftk-convert)" : "");
			i++;
			continue;
		}
		if (!cJSON_IsString(role)) {
			add(e, "wrong-type", q, "role must be a string, not %s", ftk_json_type_name(role));
			i++;
			continue;
		}
		const char *r = role->valuestring;
		if (!role_allowed(o->roles, r))
			add(e, "unknown-role", q, "unknown role '%s' (allowed: %s)", r, o->roles);
		if (!strcmp(r, "system") && i > 0)
			add(e, "system-not-first", q, "a system message may only come first");

		const cJSON *content = get(m, "content"), *calls = get(m, "tool_calls");
		int has_calls = cJSON_IsArray(calls) && calls->child;
		ftk_json_path_key(q, sizeof(q), p, "content");
		if (!content || cJSON_IsNull(content)) {
			if (!(has_calls && !strcmp(r, "assistant")))
				add(e, content ? "empty-content" : "missing-field", q,
				    content ? "content is null" : "missing");
		} else {
			int is_blank;
			long n = check_content(content, q, o, e, &is_blank);
			if (n >= 0) {
				total += n;
				if (is_blank && !(has_calls && !strcmp(r, "assistant")))
					add(e, "empty-content", q, "content is empty or whitespace only");
			}
		}
		if (calls) {
			ftk_json_path_key(q, sizeof(q), p, "tool_calls");
			if (strcmp(r, "assistant"))
				add(e, "bad-tool-call", q, "only assistant messages may call tools");
			else
				check_tool_calls(calls, q, tools, &ids, e);
		}
		if (!strcmp(r, "tool")) {
			const cJSON *tid = get(m, "tool_call_id");
			ftk_json_path_key(q, sizeof(q), p, "tool_call_id");
			if (cJSON_IsString(tid)) {
				int found = 0;
				for (int k = 0; k < ids.n; k++)
					if (!strcmp(ids.id[k], tid->valuestring))
						found = 1;
				if (!found)
					add(e, "orphan-tool-message", q, "'%s' answers no earlier tool call",
					    tid->valuestring);
			} else if (tid) {
				add(e, "wrong-type", q, "tool_call_id must be a string, not %s", ftk_json_type_name(tid));
			} else if (ids.open <= 0) {
				add(e, "orphan-tool-message", p, "a tool message with no tool call before it");
			}
			ids.open--;
		}

		/* ordering */
		if (o->order && role_allowed("user,assistant,tool", r)) {
			const char *want = NULL;
			if (!strcmp(r, "tool")) {
				if (!prev || (strcmp(prev, "assistant-calls") && strcmp(prev, "tool")))
					add(e, "role-order", p,
					    "a tool message must follow an assistant message that calls tools");
			} else if (!prev) {
				if (!strcmp(r, "assistant") && !allow_start_assistant)
					add(e, "role-order", p, "the conversation starts with the assistant, not the user");
			} else if (!strcmp(prev, "user")) {
				want = "assistant";
			} else if (!strcmp(prev, "assistant")) {
				want = "user";
			} else if (!strcmp(prev, "assistant-calls")) {
				add(e, "role-order", p, "tool calls are not answered by tool messages");
			} else if (!strcmp(prev, "tool")) {
				want = "assistant";
			}
			if (want && strcmp(r, want))
				add(e, "role-order", p, "two %s turns in a row (expected %s)", r, want);
			prev = !strcmp(r, "assistant") && has_calls ? "assistant-calls" : r;
		}
		last = r;
		i++;
	}
	if (need_last && o->last_assistant && last && strcmp(last, "assistant")) {
		ftk_json_path_index(p, sizeof(p), path, i - 1);
		add(e, "last-not-assistant", p, "the last turn is the %s's, not the assistant's", last);
	}
	return total;
}

/*
 * Control characters other than tab, newline, carriage return and form feed
 * (a page break, common in text extracted from documents and harmless to
 * tokenizers: LLaMA-Factory's own DPO sample has one).
 */
static int has_control(const char *s, size_t *at)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p < 0x20 && *p != '\t' && *p != '\n' && *p != '\r' && *p != '\f') || *p == 0x7f) {
			*at = (size_t)(p - (const unsigned char *)s);
			return *p;
		}
	}
	return 0;
}

struct ctl_ctx {
	struct ftk_verrors *e;
	int found;
	int nul;
};

static int ctl_fn(cJSON *str, const char *path, void *vctx)
{
	struct ctl_ctx *c = vctx;
	size_t at;
	int ch = has_control(str->valuestring, &at);
	if (ch && c->found < 3) {
		add(c->e, "control-character", path, "control character U+%04X at character %zu", ch, at + 1);
		c->found++;
	}
	return 0;
}

int ftk_validate_raw(const char *raw, size_t len, struct ftk_verrors *e)
{
	size_t before = e->n;
	/*
	 * cJSON accepts raw control bytes inside strings, which JSON forbids, and
	 * ends a string at an escaped NUL (\u0000), hiding the rest of it: both are
	 * found here, in the original bytes.
	 */
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)raw[i];
		if (c < 0x20 && c != '\t' && c != '\r') {
			add(e, "control-character", "", "raw control byte 0x%02X at byte %zu (JSON requires it escaped)",
			    c, i + 1);
			break;
		}
	}
	const char *p = raw, *end = raw + len;
	while ((p = memmem(p, (size_t)(end - p), "\\u0000", 6)) != NULL) {
		/* an even number of backslashes before it means the backslash is escaped */
		size_t k = 0;
		while (p - k > raw && p[-(long)k - 1] == '\\')
			k++;
		if (k % 2 == 0) {
			add(e, "control-character", "", "escaped NUL (\\u0000) at byte %zu", (size_t)(p - raw) + 1);
			break;
		}
		p += 6;
	}
	return (int)(e->n - before);
}

int ftk_validate_numbers(const char *raw, size_t len, const cJSON *rec, struct ftk_verrors *e)
{
	struct ftk_error err;
	ftk_error_clear(&err);
	const char *k = ftk_json_record_check(raw, len, rec, &err);
	if (!k || strcmp(k, "number-out-of-range"))
		return 0;
	add(e, "number-out-of-range", err.field, "%s", err.msg);
	return 1;
}

static void check_preference_side(const cJSON *v, const char *name, const cJSON *tools,
				  const struct ftk_validate_opts *o, struct ftk_verrors *e,
				  long *total)
{
	if (!v) {
		add(e, "missing-field", name, "missing");
		return;
	}
	if (cJSON_IsString(v)) {
		if (blank(v->valuestring))
			add(e, "empty-content", name, "is empty or whitespace only");
		*total += (long)strlen(v->valuestring);
		return;
	}
	*total += check_messages(v, name, tools, o, 1, 1, e);
}

int ftk_validate_record(const cJSON *rec, const struct ftk_validate_opts *o,
			struct ftk_verrors *e)
{
	size_t before = e->n;
	char dup[512];
	long total = 0;
	enum ftk_format f = o->format ? (enum ftk_format)o->format : ftk_record_format(rec);
	const cJSON *tools = get(rec, "tools");

	if (ftk_json_find_duplicate_key(rec, dup, sizeof(dup)))
		add(e, "duplicate-key", dup, "key appears more than once in the same object");

	switch (f) {
	case FTK_FMT_CHAT:
		check_tools(tools, e);
		total += check_messages(get(rec, "messages"), "messages", tools, o, 1, 0, e);
		break;
	case FTK_FMT_PREFERENCE: {
		const cJSON *p = get(rec, "prompt"), *c = get(rec, "chosen"), *r = get(rec, "rejected");
		check_tools(tools, e);
		if (!c && get(rec, "chosen_messages")) {
			add(e, "needs-conversion", "chosen_messages",
			    "chosen_messages/rejected_messages is LLaMA-Factory's form: run ftk-convert");
			break;
		}
		if (!p) {
			add(e, "missing-prompt", "prompt", "a preference record needs the prompt%s",
			    get(rec, "conversations") ? " (ShareGPT's \"conversations\": run ftk-convert)" : "");
		} else if (cJSON_IsString(p)) {
			if (blank(p->valuestring))
				add(e, "empty-content", "prompt", "is empty or whitespace only");
			total += (long)strlen(p->valuestring);
		} else {
			total += check_messages(p, "prompt", tools, o, 0, 0, e);
		}
		if (cJSON_IsObject(c) || cJSON_IsObject(r)) {
			add(e, "needs-conversion", cJSON_IsObject(c) ? "chosen" : "rejected",
			    "chosen/rejected must be message lists or strings (a single ShareGPT turn: run ftk-convert)");
			break;
		}
		check_preference_side(c, "chosen", tools, o, e, &total);
		check_preference_side(r, "rejected", tools, o, e, &total);
		if (c && r && cJSON_Compare(c, r, 1))
			add(e, "chosen-equals-rejected", "rejected", "chosen and rejected are the same");
		break;
	}
	case FTK_FMT_PROMPT_COMPLETION: {
		const cJSON *p = get(rec, "prompt"), *c = get(rec, "completion");
		if (!cJSON_IsString(p))
			add(e, "wrong-type", "prompt", "must be a string, not %s", ftk_json_type_name(p));
		else
			total += (long)strlen(p->valuestring);
		if (!cJSON_IsString(c))
			add(e, "wrong-type", "completion", "must be a string, not %s", ftk_json_type_name(c));
		else if (blank(c->valuestring))
			add(e, "empty-content", "completion", "is empty or whitespace only");
		else
			total += (long)strlen(c->valuestring);
		break;
	}
	case FTK_FMT_TEXT: {
		const cJSON *t = get(rec, "text");
		if (!cJSON_IsString(t))
			add(e, "wrong-type", "text", "must be a string, not %s", ftk_json_type_name(t));
		else if (blank(t->valuestring))
			add(e, "empty-content", "text", "is empty or whitespace only");
		else
			total += (long)strlen(t->valuestring);
		break;
	}
	case FTK_FMT_ALPACA:
		add(e, "needs-conversion", "instruction", "an Alpaca record: run ftk-convert");
		break;
	case FTK_FMT_SHAREGPT:
		add(e, "needs-conversion", "conversations", "a ShareGPT record: run ftk-convert");
		break;
	case FTK_FMT_UNKNOWN:
		add(e, "unknown-format", "",
		    "no known format (expected messages, prompt/chosen/rejected, prompt/completion or text)");
		break;
	}

	struct ctl_ctx cc = { e, 0, 0 };
	ftk_record_strings((cJSON *)rec, ctl_fn, &cc);
	if (o->max_chars > 0 && total > o->max_chars)
		add(e, "too-long", "", "%ld characters of text, more than --max-chars %ld", total,
		    o->max_chars);
	return (int)(e->n - before);
}
