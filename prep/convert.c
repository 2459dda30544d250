/*
 * convert.c: dataset formats to canonical records (see convert.h).
 *
 * Tool calls.  Canonical tool calls are OpenAI's: {"id","type":"function",
 * "function":{"name","arguments":<JSON text>}}, answered by {"role":"tool",
 * "tool_call_id"}.  Sources without ids (ShareGPT function_call turns,
 * LLaMA-Factory tool_call parts) get ids call_<turn>_<k>, and the tool turns
 * that follow are given those ids in order, so that ftk-validate can check
 * that every tool message answers a call and templates that print ids work.
 */
#include <stdio.h>
#include <string.h>
#include "lib/json.h"
#include "lib/record.h"
#include "lib/strbuf.h"
#include "prep/convert.h"

int ftk_conv_from_parse(const char *name)
{
	static const struct { const char *n; int v; } t[] = {
		{ "auto", FTK_FROM_AUTO }, { "alpaca", FTK_FROM_ALPACA },
		{ "sharegpt", FTK_FROM_SHAREGPT }, { "openai", FTK_FROM_OPENAI },
		{ "messages", FTK_FROM_OPENAI }, { "v1", FTK_FROM_OPENAI },
		{ "prompt-completion", FTK_FROM_PROMPT_COMPLETION }, { "text", FTK_FROM_TEXT },
		{ "preference", FTK_FROM_PREFERENCE },
	};
	for (size_t i = 0; i < FTK_ARRAY_SIZE(t); i++)
		if (!strcmp(name, t[i].n))
			return t[i].v;
	return -1;
}

static cJSON *get(const cJSON *o, const char *k)
{
	return cJSON_GetObjectItemCaseSensitive(o, k);
}

struct conv {
	const char **kind;
	char *msg;
	size_t n;
	int failed;
	/* ids of calls not yet answered, oldest first */
	char pending[64][48];
	int n_pending, head;
};

__attribute__((format(printf, 3, 4)))
static void fail(struct conv *c, const char *kind, const char *fmt, ...)
{
	va_list ap;
	if (c->failed)
		return;
	c->failed = 1;
	*c->kind = kind;
	va_start(ap, fmt);
	vsnprintf(c->msg, c->n, fmt, ap);
	va_end(ap);
}

static cJSON *user_msg(const char *role, const char *text)
{
	cJSON *m = cJSON_CreateObject();
	cJSON_AddStringToObject(m, "role", role);
	cJSON_AddStringToObject(m, "content", text);
	return m;
}

/* arguments as JSON text, whatever the source gave */
static cJSON *args_text(const cJSON *a)
{
	if (!a)
		return cJSON_CreateString("{}");
	if (cJSON_IsString(a))
		return cJSON_CreateString(a->valuestring);
	char *s = cJSON_PrintUnformatted(a);
	cJSON *r = cJSON_CreateString(s);
	cJSON_free(s);
	return r;
}

static cJSON *make_call(struct conv *c, int turn, int k, const cJSON *name, const cJSON *args)
{
	char id[48];
	snprintf(id, sizeof(id), "call_%d_%d", turn, k);
	if (c->n_pending < 64) {
		memcpy(c->pending[c->n_pending++], id, sizeof(id));
	}
	cJSON *call = cJSON_CreateObject();
	cJSON_AddStringToObject(call, "id", id);
	cJSON_AddStringToObject(call, "type", "function");
	cJSON *f = cJSON_AddObjectToObject(call, "function");
	cJSON_AddStringToObject(f, "name", cJSON_IsString(name) ? name->valuestring : "");
	cJSON_AddItemToObject(f, "arguments", args_text(args));
	return call;
}

/* A function_call value: {"name","arguments"} or a list of them, as JSON text or JSON. */
static void add_calls_from_value(struct conv *c, cJSON *calls, const cJSON *v, int turn)
{
	cJSON *parsed = NULL;
	if (cJSON_IsString(v)) {
		if (ftk_json_parse(v->valuestring, strlen(v->valuestring), &parsed, NULL) < 0) {
			fail(c, "bad-tool-call", "function call is not valid JSON");
			return;
		}
		v = parsed;
	}
	int k = cJSON_GetArraySize(calls);
	if (cJSON_IsObject(v)) {
		if (!cJSON_IsString(get(v, "name")))
			fail(c, "bad-tool-call", "function call has no \"name\"");
		else
			cJSON_AddItemToArray(calls, make_call(c, turn, k, get(v, "name"), get(v, "arguments")));
	} else if (cJSON_IsArray(v)) {
		const cJSON *x;
		cJSON_ArrayForEach(x, v) {
			if (!cJSON_IsObject(x) || !cJSON_IsString(get(x, "name"))) {
				fail(c, "bad-tool-call", "function call has no \"name\"");
				break;
			}
			cJSON_AddItemToArray(calls, make_call(c, turn, k++, get(x, "name"), get(x, "arguments")));
		}
	} else {
		fail(c, "bad-tool-call", "function call must be an object or a list");
	}
	cJSON_Delete(parsed);
}

static void answer_id(struct conv *c, cJSON *m)
{
	if (get(m, "tool_call_id"))
		return;
	if (c->head < c->n_pending)
		cJSON_AddStringToObject(m, "tool_call_id", c->pending[c->head++]);
}

static void copy_unknown(cJSON *dst, const cJSON *src, const char *const *known)
{
	const cJSON *f;
	for (f = src->child; f; f = f->next) {
		int skip = 0;
		for (int i = 0; known[i]; i++)
			if (f->string && !strcmp(f->string, known[i]))
				skip = 1;
		if (!skip && f->string && !get(dst, f->string))
			cJSON_AddItemToObject(dst, f->string, ftk_json_share(f));
	}
}

static cJSON *dup_tree(const cJSON *v)
{
	return cJSON_Duplicate(v, 1);
}

/* tools: a JSON string or list; bare functions wrapped as {"type":"function","function":...} */
static cJSON *convert_tools(struct conv *c, const cJSON *tools)
{
	cJSON *parsed = NULL, *out;
	if (cJSON_IsString(tools)) {
		if (!*tools->valuestring)
			return NULL;
		if (ftk_json_parse(tools->valuestring, strlen(tools->valuestring), &parsed, NULL) < 0) {
			fail(c, "bad-tools", "tools is a string that is not valid JSON");
			return NULL;
		}
		tools = parsed;
	}
	if (!cJSON_IsArray(tools)) {
		fail(c, "bad-tools", "tools must be a list");
		cJSON_Delete(parsed);
		return NULL;
	}
	out = cJSON_CreateArray();
	const cJSON *t;
	/* tools parsed here die below: copy them; the record's own are shared */
	cJSON *(*copy)(const cJSON *) = parsed ? dup_tree : ftk_json_share;
	cJSON_ArrayForEach(t, tools) {
		if (cJSON_IsObject(t) && get(t, "function")) {
			cJSON_AddItemToArray(out, copy(t));
		} else if (cJSON_IsObject(t) && cJSON_IsString(get(t, "name"))) {
			cJSON *w = cJSON_CreateObject();
			cJSON_AddStringToObject(w, "type", "function");
			cJSON_AddItemToObject(w, "function", copy(t));
			cJSON_AddItemToArray(out, w);
		} else {
			fail(c, "bad-tools", "a tool must be a function with a \"name\"");
		}
	}
	cJSON_Delete(parsed);
	return out;
}

static const char *map_role(const char *r)
{
	if (!strcmp(r, "human") || !strcmp(r, "user"))
		return "user";
	if (!strcmp(r, "gpt") || !strcmp(r, "assistant") || !strcmp(r, "bot") || !strcmp(r, "model"))
		return "assistant";
	if (!strcmp(r, "observation") || !strcmp(r, "function") || !strcmp(r, "tool"))
		return "tool";
	if (!strcmp(r, "system"))
		return "system";
	if (!strcmp(r, "function_call"))
		return "function_call";
	return NULL;
}

/*
 * One message of an OpenAI / LLaMA-Factory v1 list, normalised: content parts
 * flattened to a string, reasoning parts to reasoning_content, tool_call parts
 * and legacy function_call to tool_calls, arguments as JSON text.
 */
static cJSON *convert_message(struct conv *c, const cJSON *m, int turn)
{
	static const char *const known[] = { "role", "from", "content", "value", "tool_calls",
					     "function_call", NULL };
	if (!cJSON_IsObject(m)) {
		fail(c, "bad-field", "a message must be an object");
		return NULL;
	}
	const char *r0 = ftk_json_role(m);
	const char *role = r0 ? map_role(r0) : NULL;
	if (!role) {
		fail(c, "unknown-role", "message %d has %s role%s%s", turn, r0 ? "the unknown" : "no",
		     r0 ? " " : "", r0 ? r0 : "");
		return NULL;
	}
	cJSON *out = cJSON_CreateObject();
	const cJSON *content = get(m, "content");
	if (!content)
		content = get(m, "value");
	cJSON *calls = cJSON_CreateArray();
	if (!strcmp(role, "function_call")) {
		role = "assistant";
		add_calls_from_value(c, calls, content, turn);
		content = NULL;
	}
	cJSON_AddStringToObject(out, "role", role);
	if (cJSON_IsArray(content)) {
		struct strbuf text = STRBUF_INIT, reason = STRBUF_INIT;
		int other = 0, k = 0;
		const cJSON *p;
		cJSON_ArrayForEach(p, content) {
			const char *type = ftk_json_get_str(p, "type");
			const cJSON *v = get(p, "text");
			if (!v)
				v = get(p, "value");
			if (cJSON_IsString(p)) {
				strbuf_addstr(&text, p->valuestring);
			} else if (!type) {
				fail(c, "bad-content-part", "message %d: a content part has no \"type\"", turn);
			} else if (!strcmp(type, "text") && cJSON_IsString(v)) {
				strbuf_addstr(&text, v->valuestring);
			} else if ((!strcmp(type, "reasoning") || !strcmp(type, "thinking")) && cJSON_IsString(v)) {
				strbuf_addstr(&reason, v->valuestring);
			} else if (!strcmp(type, "tool_call")) {
				add_calls_from_value(c, calls, v, turn);
				k++;
			} else {
				other = 1;
			}
		}
		if (other) {
			/* images and the like: keep the parts as they are */
			cJSON_AddItemToObject(out, "content", ftk_json_share(content));
		} else if (text.len || !cJSON_GetArraySize(calls)) {
			cJSON_AddStringToObject(out, "content", text.buf);
		} else {
			cJSON_AddStringToObject(out, "content", "");
		}
		if (reason.len)
			cJSON_AddStringToObject(out, "reasoning_content", reason.buf);
		strbuf_release(&text);
		strbuf_release(&reason);
		(void)k;
	} else if (content) {
		cJSON_AddItemToObject(out, "content", ftk_json_share(content));
	} else {
		cJSON_AddStringToObject(out, "content", "");
	}
	const cJSON *tc = get(m, "tool_calls");
	if (cJSON_IsArray(tc)) {
		const cJSON *x;
		cJSON_ArrayForEach(x, tc) {
			cJSON *y = ftk_json_share(x);
			cJSON *f = get(y, "function");
			cJSON *a = f ? get(f, "arguments") : NULL;
			if (a && !cJSON_IsString(a))
				cJSON_ReplaceItemInObjectCaseSensitive(f, "arguments", args_text(a));
			if (!get(y, "type"))
				cJSON_AddStringToObject(y, "type", "function");
			const char *id = ftk_json_get_str(y, "id");
			if (id && c->n_pending < 64)
				snprintf(c->pending[c->n_pending++], 48, "%s", id);
			cJSON_AddItemToArray(calls, y);
		}
	}
	const cJSON *fc = get(m, "function_call");
	if (cJSON_IsObject(fc))
		add_calls_from_value(c, calls, fc, turn);
	if (cJSON_GetArraySize(calls)) {
		cJSON_AddItemToObject(out, "tool_calls", calls);
		cJSON *cont = get(out, "content");
		if (cJSON_IsString(cont) && !*cont->valuestring)
			cJSON_ReplaceItemInObjectCaseSensitive(out, "content", cJSON_CreateNull());
	} else {
		cJSON_Delete(calls);
	}
	if (!strcmp(role, "tool")) {
		answer_id(c, out);
		c->head = c->head; /* ids answered stay answered */
	} else if (!strcmp(role, "user")) {
		/* a new user turn: calls left unanswered are not answered later */
		c->n_pending = c->head = 0;
	}
	copy_unknown(out, m, known);
	return out;
}

static cJSON *convert_messages(struct conv *c, const cJSON *msgs, const cJSON *system)
{
	cJSON *out = cJSON_CreateArray();
	if (cJSON_IsString(system) && *system->valuestring)
		cJSON_AddItemToArray(out, user_msg("system", system->valuestring));
	if (!cJSON_IsArray(msgs)) {
		fail(c, "bad-field", "messages must be a list, not %s", ftk_json_type_name(msgs));
		return out;
	}
	int turn = 0;
	const cJSON *m;
	cJSON_ArrayForEach(m, msgs) {
		cJSON *x = convert_message(c, m, turn++);
		if (x)
			cJSON_AddItemToArray(out, x);
	}
	return out;
}

static cJSON *from_alpaca(struct conv *c, const cJSON *rec)
{
	static const char *const known[] = { "instruction", "input", "output", "system", "history",
					     "chosen", "rejected", NULL };
	const cJSON *ins = get(rec, "instruction"), *inp = get(rec, "input"), *outp = get(rec, "output");
	const cJSON *sys = get(rec, "system"), *hist = get(rec, "history");
	if (!cJSON_IsString(ins)) {
		fail(c, "bad-field", "instruction must be a string");
		return NULL;
	}
	struct strbuf q = STRBUF_INIT;
	strbuf_addstr(&q, ins->valuestring);
	if (cJSON_IsString(inp) && *inp->valuestring) {
		if (q.len)
			strbuf_addch(&q, '\n');
		strbuf_addstr(&q, inp->valuestring);
	}
	cJSON *msgs = cJSON_CreateArray();
	if (cJSON_IsString(sys) && *sys->valuestring)
		cJSON_AddItemToArray(msgs, user_msg("system", sys->valuestring));
	if (cJSON_IsArray(hist)) {
		const cJSON *h;
		cJSON_ArrayForEach(h, hist) {
			const cJSON *a = cJSON_GetArrayItem(h, 0), *b = cJSON_GetArrayItem(h, 1);
			if (!cJSON_IsString(a) || !cJSON_IsString(b)) {
				fail(c, "bad-field", "history entries must be [question, answer] strings");
				break;
			}
			cJSON_AddItemToArray(msgs, user_msg("user", a->valuestring));
			cJSON_AddItemToArray(msgs, user_msg("assistant", b->valuestring));
		}
	}
	cJSON_AddItemToArray(msgs, user_msg("user", q.buf));
	strbuf_release(&q);
	cJSON *out = cJSON_CreateObject();
	const cJSON *ch = get(rec, "chosen"), *rj = get(rec, "rejected");
	if (ch && rj) {
		/* Alpaca-style ranking data: the answers are the pair */
		if (!cJSON_IsString(ch) || !cJSON_IsString(rj)) {
			fail(c, "bad-field", "chosen and rejected must be strings in an Alpaca record");
			cJSON_Delete(msgs);
			cJSON_Delete(out);
			return NULL;
		}
		cJSON_AddItemToObject(out, "prompt", msgs);
		cJSON *a = cJSON_AddArrayToObject(out, "chosen");
		cJSON_AddItemToArray(a, user_msg("assistant", ch->valuestring));
		a = cJSON_AddArrayToObject(out, "rejected");
		cJSON_AddItemToArray(a, user_msg("assistant", rj->valuestring));
	} else {
		if (!cJSON_IsString(outp)) {
			fail(c, "bad-field", "output must be a string");
			cJSON_Delete(msgs);
			cJSON_Delete(out);
			return NULL;
		}
		cJSON_AddItemToArray(msgs, user_msg("assistant", outp->valuestring));
		cJSON_AddItemToObject(out, "messages", msgs);
	}
	copy_unknown(out, rec, known);
	return out;
}

static cJSON *sharegpt_turn(struct conv *c, const cJSON *t)
{
	if (cJSON_IsString(t))
		return user_msg("assistant", t->valuestring);
	return convert_message(c, t, 0);
}

static cJSON *from_sharegpt(struct conv *c, const cJSON *rec)
{
	static const char *const known[] = { "conversations", "system", "tools", "chosen",
					     "rejected", NULL };
	cJSON *out = cJSON_CreateObject();
	cJSON *msgs = convert_messages(c, get(rec, "conversations"), get(rec, "system"));
	const cJSON *ch = get(rec, "chosen"), *rj = get(rec, "rejected");
	if (ch && rj) {
		cJSON_AddItemToObject(out, "prompt", msgs);
		cJSON *a = cJSON_AddArrayToObject(out, "chosen");
		cJSON *x = sharegpt_turn(c, ch);
		if (x)
			cJSON_AddItemToArray(a, x);
		a = cJSON_AddArrayToObject(out, "rejected");
		x = sharegpt_turn(c, rj);
		if (x)
			cJSON_AddItemToArray(a, x);
	} else {
		cJSON_AddItemToObject(out, "messages", msgs);
	}
	const cJSON *tools = get(rec, "tools");
	if (tools) {
		cJSON *t = convert_tools(c, tools);
		if (t)
			cJSON_AddItemToObject(out, "tools", t);
	}
	copy_unknown(out, rec, known);
	return out;
}

static cJSON *from_messages(struct conv *c, const cJSON *rec)
{
	static const char *const known[] = { "messages", "tools", "system", NULL };
	cJSON *out = cJSON_CreateObject();
	cJSON_AddItemToObject(out, "messages", convert_messages(c, get(rec, "messages"), get(rec, "system")));
	const cJSON *tools = get(rec, "tools");
	if (tools) {
		cJSON *t = convert_tools(c, tools);
		if (t)
			cJSON_AddItemToObject(out, "tools", t);
	}
	copy_unknown(out, rec, known);
	return out;
}

static cJSON *from_prompt_completion(struct conv *c, const cJSON *rec)
{
	static const char *const known[] = { "prompt", "completion", NULL };
	const cJSON *p = get(rec, "prompt"), *q = get(rec, "completion");
	cJSON *out = cJSON_CreateObject();
	cJSON *msgs;
	if (cJSON_IsArray(p))
		msgs = convert_messages(c, p, NULL);
	else if (cJSON_IsString(p)) {
		msgs = cJSON_CreateArray();
		cJSON_AddItemToArray(msgs, user_msg("user", p->valuestring));
	} else {
		fail(c, "bad-field", "prompt must be a string or a message list");
		cJSON_Delete(out);
		return NULL;
	}
	if (cJSON_IsString(q))
		cJSON_AddItemToArray(msgs, user_msg("assistant", q->valuestring));
	else if (cJSON_IsArray(q)) {
		cJSON *more = convert_messages(c, q, NULL);
		while (cJSON_GetArraySize(more))
			cJSON_AddItemToArray(msgs, cJSON_DetachItemFromArray(more, 0));
		cJSON_Delete(more);
	} else
		fail(c, "bad-field", "completion must be a string or a message list");
	cJSON_AddItemToObject(out, "messages", msgs);
	copy_unknown(out, rec, known);
	return out;
}

static cJSON *pref_side(struct conv *c, const cJSON *v)
{
	if (cJSON_IsString(v))
		return cJSON_CreateString(v->valuestring);
	if (cJSON_IsObject(v)) {
		cJSON *a = cJSON_CreateArray();
		cJSON *x = sharegpt_turn(c, v);
		if (x)
			cJSON_AddItemToArray(a, x);
		return a;
	}
	return convert_messages(c, v, NULL);
}

static cJSON *from_preference(struct conv *c, const cJSON *rec)
{
	static const char *const known[] = { "prompt", "chosen", "rejected", "chosen_messages",
					     "rejected_messages", "tools", NULL };
	const cJSON *cm = get(rec, "chosen_messages"), *rm = get(rec, "rejected_messages");
	cJSON *out = cJSON_CreateObject();
	if (cm && rm) {
		/* LLaMA-Factory v1: the shared prefix is the prompt */
		cJSON *a = convert_messages(c, cm, NULL), *b = convert_messages(c, rm, NULL);
		int na = cJSON_GetArraySize(a), nb = cJSON_GetArraySize(b), k = 0;
		while (k < na - 1 && k < nb - 1 &&
		       cJSON_Compare(cJSON_GetArrayItem(a, k), cJSON_GetArrayItem(b, k), 1))
			k++;
		cJSON *prompt = cJSON_AddArrayToObject(out, "prompt");
		for (int i = 0; i < k; i++) {
			cJSON_AddItemToArray(prompt, cJSON_DetachItemFromArray(a, 0));
			cJSON_DeleteItemFromArray(b, 0);
		}
		cJSON_AddItemToObject(out, "chosen", a);
		cJSON_AddItemToObject(out, "rejected", b);
	} else {
		const cJSON *p = get(rec, "prompt");
		if (!p && (get(rec, "conversations") || get(rec, "instruction"))) {
			cJSON_Delete(out);
			return get(rec, "conversations") ? from_sharegpt(c, rec) : from_alpaca(c, rec);
		}
		if (!p) {
			fail(c, "missing-prompt", "a preference record needs a prompt");
			cJSON_Delete(out);
			return NULL;
		}
		cJSON_AddItemToObject(out, "prompt", pref_side(c, p));
		cJSON_AddItemToObject(out, "chosen", pref_side(c, get(rec, "chosen")));
		cJSON_AddItemToObject(out, "rejected", pref_side(c, get(rec, "rejected")));
	}
	const cJSON *tools = get(rec, "tools");
	if (tools) {
		cJSON *t = convert_tools(c, tools);
		if (t)
			cJSON_AddItemToObject(out, "tools", t);
	}
	copy_unknown(out, rec, known);
	return out;
}

cJSON *ftk_convert_record(cJSON *rec, int from, const char **kind, char *msg, size_t n)
{
	struct conv c;
	memset(&c, 0, sizeof(c));
	c.kind = kind;
	c.msg = msg;
	c.n = n;
	msg[0] = '\0';
	if (from == FTK_FROM_AUTO) {
		switch (ftk_record_format(rec)) {
		case FTK_FMT_CHAT: from = FTK_FROM_OPENAI; break;
		case FTK_FMT_PREFERENCE: from = FTK_FROM_PREFERENCE; break;
		case FTK_FMT_PROMPT_COMPLETION: from = FTK_FROM_PROMPT_COMPLETION; break;
		case FTK_FMT_TEXT: from = FTK_FROM_TEXT; break;
		case FTK_FMT_ALPACA: from = FTK_FROM_ALPACA; break;
		case FTK_FMT_SHAREGPT: from = FTK_FROM_SHAREGPT; break;
		case FTK_FMT_UNKNOWN:
			*kind = "unknown-format";
			snprintf(msg, n, "no known format (Alpaca, ShareGPT, messages, prompt/completion, text, preference)");
			return NULL;
		}
	}
	cJSON *out = NULL;
	switch (from) {
	case FTK_FROM_ALPACA:
		if (!get(rec, "instruction"))
			fail(&c, "missing-field", "an Alpaca record needs \"instruction\"");
		else
			out = from_alpaca(&c, rec);
		break;
	case FTK_FROM_SHAREGPT:
		if (!get(rec, "conversations"))
			fail(&c, "missing-field", "a ShareGPT record needs \"conversations\"");
		else
			out = from_sharegpt(&c, rec);
		break;
	case FTK_FROM_OPENAI:
		if (!get(rec, "messages"))
			fail(&c, "missing-field", "a chat record needs \"messages\"");
		else
			out = from_messages(&c, rec);
		break;
	case FTK_FROM_PROMPT_COMPLETION:
		out = from_prompt_completion(&c, rec);
		break;
	case FTK_FROM_TEXT:
		if (!cJSON_IsString(get(rec, "text"))) {
			fail(&c, "missing-field", "a text record needs a string \"text\"");
			break;
		}
		return rec;
	case FTK_FROM_PREFERENCE:
		out = from_preference(&c, rec);
		break;
	}
	if (c.failed) {
		cJSON_Delete(out);
		return NULL;
	}
	return out;
}

int ftk_json_array_next(const char *s, size_t len, size_t *pos, size_t *start, size_t *elen)
{
	size_t i = *pos;
#define SKIPWS() while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++
	SKIPWS();
	if (*pos == 0) {
		if (i >= len || s[i] != '[') {
			*pos = i;
			return -1;
		}
		i++;
		SKIPWS();
		if (i < len && s[i] == ']') {
			*pos = i + 1;
			return 0;
		}
	} else {
		if (i < len && s[i] == ']') {
			*pos = i + 1;
			return 0;
		}
		if (i >= len || s[i] != ',') {
			*pos = i;
			return -1;
		}
		i++;
		SKIPWS();
	}
	size_t b = i;
	int depth = 0, in_str = 0;
	for (; i < len; i++) {
		char ch = s[i];
		if (in_str) {
			if (ch == '\\')
				i++;
			else if (ch == '"')
				in_str = 0;
			continue;
		}
		if (ch == '"') {
			in_str = 1;
		} else if (ch == '{' || ch == '[') {
			depth++;
		} else if (ch == '}' || ch == ']') {
			if (depth == 0)
				break;
			depth--;
		} else if (ch == ',' && depth == 0) {
			break;
		}
	}
	if (i >= len || in_str || depth) {
		*pos = b;
		return -1;
	}
	size_t e = i;
	while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\n' || s[e - 1] == '\r'))
		e--;
	if (e == b) {
		*pos = b;
		return -1;
	}
	*start = b;
	*elen = e - b;
	*pos = i;
	return 1;
#undef SKIPWS
}
