/*
 * record.c: record formats and record text (see record.h).
 *
 * Detection looks only at top-level keys, in an order that resolves the
 * overlaps between formats: a record with "messages" is chat even if it also
 * has "text"; "chosen" + "rejected" makes a preference record whatever else
 * it has (ShareGPT preference data carries "conversations" too).
 */
#include <stdio.h>
#include <string.h>
#include "err.h"
#include "record.h"

static const cJSON *get(const cJSON *o, const char *k)
{
	return cJSON_GetObjectItemCaseSensitive(o, k);
}

enum ftk_format ftk_record_format(const cJSON *rec)
{
	if (!cJSON_IsObject(rec))
		return FTK_FMT_UNKNOWN;
	if (get(rec, "chosen") && get(rec, "rejected"))
		return FTK_FMT_PREFERENCE;
	if (get(rec, "chosen_messages") && get(rec, "rejected_messages"))
		return FTK_FMT_PREFERENCE;
	if (get(rec, "messages"))
		return FTK_FMT_CHAT;
	if (get(rec, "conversations"))
		return FTK_FMT_SHAREGPT;
	if (get(rec, "instruction") && get(rec, "output"))
		return FTK_FMT_ALPACA;
	if (get(rec, "prompt") && get(rec, "completion"))
		return FTK_FMT_PROMPT_COMPLETION;
	if (get(rec, "text"))
		return FTK_FMT_TEXT;
	return FTK_FMT_UNKNOWN;
}

static const char *const names[] = {
	[FTK_FMT_UNKNOWN] = "unknown",
	[FTK_FMT_CHAT] = "chat",
	[FTK_FMT_PREFERENCE] = "preference",
	[FTK_FMT_PROMPT_COMPLETION] = "prompt-completion",
	[FTK_FMT_TEXT] = "text",
	[FTK_FMT_ALPACA] = "alpaca",
	[FTK_FMT_SHAREGPT] = "sharegpt",
};

const char *ftk_format_name(enum ftk_format f)
{
	if ((unsigned)f >= FTK_ARRAY_SIZE(names))
		return "unknown";
	return names[f];
}

int ftk_format_parse(const char *name)
{
	if (!strcmp(name, "auto"))
		return FTK_FMT_UNKNOWN;
	for (size_t i = 1; i < FTK_ARRAY_SIZE(names); i++)
		if (!strcmp(name, names[i]))
			return (int)i;
	return -1;
}

int ftk_content_text(const cJSON *content, struct strbuf *out)
{
	if (!content || cJSON_IsNull(content))
		return 0;
	if (cJSON_IsString(content)) {
		strbuf_addstr(out, content->valuestring);
		return 1;
	}
	if (!cJSON_IsArray(content))
		return -1;
	int first = 1;
	const cJSON *part;
	cJSON_ArrayForEach(part, content) {
		const char *s = NULL;
		if (cJSON_IsString(part)) {
			s = part->valuestring;
		} else if (cJSON_IsObject(part)) {
			const cJSON *type = get(part, "type");
			if (cJSON_IsString(type) && strcmp(type->valuestring, "text") != 0)
				continue;
			const cJSON *t = get(part, "text");
			if (!cJSON_IsString(t))
				t = get(part, "value");
			if (cJSON_IsString(t))
				s = t->valuestring;
		}
		if (!s)
			continue;
		if (!first)
			strbuf_addch(out, '\n');
		strbuf_addstr(out, s);
		first = 0;
	}
	return 1;
}

static void sep(struct strbuf *out, int *n)
{
	if (*n)
		strbuf_addch(out, '\n');
	(*n)++;
}

static void add_str(struct strbuf *out, int *n, const cJSON *v)
{
	if (cJSON_IsString(v) && *v->valuestring) {
		sep(out, n);
		strbuf_addstr(out, v->valuestring);
	}
}

/* Messages of a list (or a bare string, as preference records allow). */
static void messages_text(const cJSON *msgs, const char *role, struct strbuf *out, int *n)
{
	if (cJSON_IsString(msgs)) {
		if (!role || !strcmp(role, "assistant") || !strcmp(role, "user"))
			add_str(out, n, msgs);
		return;
	}
	const cJSON *m;
	cJSON_ArrayForEach(m, msgs) {
		const char *r = ftk_json_role(m);
		if (role && (!r || strcmp(r, role)))
			continue;
		/* the content goes straight into out after its separator, which is
		 * taken back when there was no text: no copy of a long content */
		size_t before = out->len;
		sep(out, n);
		size_t mark = out->len;
		if (ftk_content_text(get(m, "content"), out) <= 0 || out->len == mark) {
			strbuf_setlen(out, before);
			(*n)--;
		}
		const cJSON *calls = get(m, "tool_calls"), *c;
		if (!role || !strcmp(role, "assistant")) {
			cJSON_ArrayForEach(c, calls) {
				const cJSON *f = get(c, "function");
				const cJSON *a = f ? get(f, "arguments") : NULL;
				add_str(out, n, f ? get(f, "name") : NULL);
				if (cJSON_IsString(a)) {
					add_str(out, n, a);
				} else if (a) {
					char *s = cJSON_PrintUnformatted(a);
					sep(out, n);
					strbuf_addstr(out, s);
					cJSON_free(s);
				}
			}
		}
	}
}

const char *ftk_json_role(const cJSON *msg)
{
	const cJSON *r = get(msg, "role");
	if (!cJSON_IsString(r))
		r = get(msg, "from");
	return cJSON_IsString(r) ? r->valuestring : NULL;
}

int ftk_record_text(const cJSON *rec, const char *role, struct strbuf *out)
{
	int n = 0;
	const cJSON *v;
	switch (ftk_record_format(rec)) {
	case FTK_FMT_CHAT:
		messages_text(get(rec, "messages"), role, out, &n);
		break;
	case FTK_FMT_PREFERENCE:
		v = get(rec, "prompt");
		if (v)
			messages_text(v, role, out, &n);
		v = get(rec, "chosen");
		if (!v)
			v = get(rec, "chosen_messages");
		if (cJSON_IsObject(v))	/* ShareGPT preference: chosen is one turn */
			add_str(out, &n, get(v, "value") ? get(v, "value") : get(v, "content"));
		else
			messages_text(v, role, out, &n);
		if (get(rec, "conversations") && !get(rec, "prompt")) {
			const cJSON *m;
			cJSON_ArrayForEach(m, get(rec, "conversations"))
				if (!role || !strcmp(role, "user"))
					add_str(out, &n, get(m, "value"));
		}
		break;
	case FTK_FMT_SHAREGPT: {
		const cJSON *m;
		cJSON_ArrayForEach(m, get(rec, "conversations")) {
			const char *r = ftk_json_role(m);
			const char *as = !r ? NULL
				: !strcmp(r, "human") || !strcmp(r, "user") ? "user"
				: !strcmp(r, "gpt") || !strcmp(r, "assistant") ||
				  !strcmp(r, "function_call") ? "assistant" : r;
			if (role && (!as || strcmp(as, role)))
				continue;
			add_str(out, &n, get(m, "value"));
		}
		break;
	}
	case FTK_FMT_ALPACA:
		if (!role || !strcmp(role, "user") || !strcmp(role, "system")) {
			if (!role || !strcmp(role, "system"))
				add_str(out, &n, get(rec, "system"));
			if (!role || !strcmp(role, "user")) {
				add_str(out, &n, get(rec, "instruction"));
				add_str(out, &n, get(rec, "input"));
			}
		}
		if (!role || !strcmp(role, "assistant"))
			add_str(out, &n, get(rec, "output"));
		break;
	case FTK_FMT_PROMPT_COMPLETION:
		if (!role || !strcmp(role, "user"))
			add_str(out, &n, get(rec, "prompt"));
		if (!role || !strcmp(role, "assistant"))
			add_str(out, &n, get(rec, "completion"));
		break;
	case FTK_FMT_TEXT:
		if (!role)
			add_str(out, &n, get(rec, "text"));
		break;
	case FTK_FMT_UNKNOWN:
		break;
	}
	return n;
}

static int walk(cJSON *v, char *path, size_t cap, ftk_string_fn fn, void *ctx)
{
	size_t base = strlen(path);
	int rc = 0, i = 0;
	cJSON *c;
	if (cJSON_IsString(v))
		return fn(v, path, ctx);
	if (!cJSON_IsObject(v) && !cJSON_IsArray(v))
		return 0;
	for (c = v->child; c && !rc; c = c->next, i++) {
		if (cJSON_IsObject(v))
			snprintf(path + base, cap - base, "%s%s", base ? "." : "", c->string ? c->string : "");
		else
			snprintf(path + base, cap - base, "[%d]", i);
		rc = walk(c, path, cap, fn, ctx);
		path[base] = '\0';
	}
	return rc;
}

int ftk_record_strings(cJSON *rec, ftk_string_fn fn, void *ctx)
{
	char path[1024] = "";
	return walk(rec, path, sizeof(path), fn, ctx);
}

int ftk_record_origin(const cJSON *rec, struct strbuf *out)
{
	const cJSON *meta = cJSON_GetObjectItemCaseSensitive(rec, "meta");
	const cJSON *src = cJSON_IsObject(meta) ? cJSON_GetObjectItemCaseSensitive(meta, "source") : NULL;
	const cJSON *line = cJSON_IsObject(meta) ? cJSON_GetObjectItemCaseSensitive(meta, "line") : NULL;
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(rec, "id");
	int n = 0;
	if (!cJSON_IsString(src))
		src = NULL;
	if (!cJSON_IsNumber(line))
		line = NULL;
	if (!cJSON_IsString(id) && !cJSON_IsNumber(id))
		id = NULL;
	if (!src && !line && !id)
		return 0;
	strbuf_addch(out, '{');
	if (src) {
		strbuf_addstr(out, "\"source\":");
		strbuf_add_json_str(out, src->valuestring, strlen(src->valuestring));
		n++;
	}
	if (line) {
		strbuf_addf(out, "%s\"line\":%.17g", n++ ? "," : "", line->valuedouble);
	}
	if (id) {
		strbuf_addstr(out, n++ ? ",\"id\":" : "\"id\":");
		if (cJSON_IsString(id))
			strbuf_add_json_str(out, id->valuestring, strlen(id->valuestring));
		else
			strbuf_addf(out, "%.17g", id->valuedouble);
	}
	strbuf_addch(out, '}');
	return 1;
}
