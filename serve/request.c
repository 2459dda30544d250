/*
 * request.c: reading ftk-serve's requests (see request.h).
 *
 * A parse fills caller-owned structs only: the message of a refusal goes to
 * the caller's strbuf, never to a static buffer, because the server parses
 * on many connection threads at once (issue 18: a shared buffer once gave
 * one client another request's model name).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lib/json.h"
#include "serve/request.h"

void ftk_serve_error_init(struct ftk_serve_error *e)
{
	e->status = 0;
	e->param[0] = 0;
	e->code = NULL;
	strbuf_init(&e->msg, 0);
}

void ftk_serve_error_release(struct ftk_serve_error *e)
{
	if (e)
		strbuf_release(&e->msg);
}

void ftk_serve_request_release(struct ftk_serve_request *r)
{
	if (!r)
		return;
	free(r->prompt_ids);
	r->prompt_ids = NULL;
	r->n_prompt_ids = 0;
}

static int fail(struct ftk_serve_error *e, int status, const char *param, const char *code,
		const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int fail(struct ftk_serve_error *e, int status, const char *param, const char *code,
		const char *fmt, ...)
{
	va_list ap;
	e->status = status;
	snprintf(e->param, sizeof(e->param), "%s", param ? param : "");
	e->code = code;
	strbuf_reset(&e->msg);
	va_start(ap, fmt);
	strbuf_vaddf(&e->msg, fmt, ap);
	va_end(ap);
	return -1;
}

/*
 * Where to cut s (longer than n bytes) at most n bytes in, at a character
 * boundary: back from s[n] over at most 3 continuation bytes (invalid
 * input may have more: it is cut at n, and the body writer replaces it).
 */
static size_t utf8_cut(const char *s, size_t n)
{
	size_t k = n;
	while (k > 0 && n - k < 3 && ((unsigned char)s[k] & 0xC0) == 0x80)
		k--;
	return ((unsigned char)s[k] & 0xC0) == 0x80 ? n : k;
}

void ftk_serve_quote(struct strbuf *sb, const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n <= max) {
		strbuf_add(sb, s, n);
		return;
	}
	strbuf_add(sb, s, utf8_cut(s, max));
	strbuf_addstr(sb, "...");
}

void ftk_serve_error_body(struct strbuf *sb, const char *msg, size_t len, const char *type,
			  const char *param, const char *code)
{
	strbuf_addstr(sb, "{\"error\":{\"message\":");
	strbuf_add_json_str(sb, msg, len);
	strbuf_addstr(sb, ",\"type\":");
	strbuf_add_json_str(sb, type, strlen(type));
	strbuf_addstr(sb, ",\"param\":");
	if (param && *param)
		strbuf_add_json_str(sb, param, strlen(param));
	else
		strbuf_addstr(sb, "null");
	strbuf_addstr(sb, ",\"code\":");
	if (code)
		strbuf_add_json_str(sb, code, strlen(code));
	else
		strbuf_addstr(sb, "null");
	strbuf_addstr(sb, "}}");
}

/*
 * A message's content: a string, or a list of text parts ({"type":"text",
 * "text":...}, or a bare string), or null/absent for an assistant turn that
 * calls tools.  Anything else would reach the template as something it
 * prints as a Python value.
 */
static int check_content(const cJSON *m, int i, struct ftk_serve_error *e)
{
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
	const char *role = ftk_json_get_str(m, "role");
	if (cJSON_IsString(c))
		return 0;
	if (!c || cJSON_IsNull(c)) {
		const cJSON *tc = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
		if (!strcmp(role, "assistant") && cJSON_IsArray(tc) && tc->child)
			return 0;
		return fail(e, 400, "messages", NULL,
			    "messages[%d].content is missing or null: only an assistant message with "
			    "tool_calls may leave it out", i);
	}
	if (!cJSON_IsArray(c))
		return fail(e, 400, "messages", NULL,
			    "messages[%d].content must be a string or a list of text parts, not a JSON %s", i,
			    ftk_json_type_name(c));
	int k = 0;
	const cJSON *p;
	cJSON_ArrayForEach(p, c) {
		if (cJSON_IsString(p)) {
			k++;
			continue;
		}
		const char *type = ftk_json_get_str(p, "type");
		if (!cJSON_IsObject(p) || !type || strcmp(type, "text") ||
		    !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(p, "text"))) {
			struct strbuf q = STRBUF_INIT;
			if (type)
				ftk_serve_quote(&q, type, 40);
			fail(e, 400, "messages", NULL,
			     "messages[%d].content[%d] must be a text part {\"type\":\"text\",\"text\":...}%s%s%s",
			     i, k, type ? " (this model reads no '" : "", type ? q.buf : "",
			     type ? "' parts)" : "");
			strbuf_release(&q);
			return -1;
		}
		k++;
	}
	return 0;
}

static int parse_messages(const cJSON *r, struct ftk_serve_request *out, struct ftk_serve_error *e)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(r, "messages");
	if (!cJSON_IsArray(m) || !m->child)
		return fail(e, 400, "messages", NULL, "%s",
			    m ? "messages must be a non-empty array" : "you must provide messages");
	const cJSON *x;
	int i = 0;
	cJSON_ArrayForEach(x, m) {
		if (!cJSON_IsObject(x) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(x, "role")))
			return fail(e, 400, "messages", NULL,
				    "messages[%d] must be an object with a string role", i);
		if (check_content(x, i, e) < 0)
			return -1;
		i++;
	}
	out->messages = m;
	const cJSON *tools = cJSON_GetObjectItemCaseSensitive(r, "tools");
	if (tools && !cJSON_IsNull(tools) && !cJSON_IsArray(tools))
		return fail(e, 400, "tools", NULL, "tools must be an array");
	out->tools = cJSON_IsArray(tools) && tools->child ? tools : NULL;
	return 0;
}

static int parse_prompt(const cJSON *r, struct ftk_serve_request *out, struct ftk_serve_error *e)
{
	out->prompt = ftk_json_get_str(r, "prompt");
	if (out->prompt)
		return 0;
	/* a prompt of token ids: [1, 2, 3] (or [[1, 2, 3]], one prompt) */
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(r, "prompt");
	if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 && cJSON_IsArray(p->child))
		p = p->child;
	int n = cJSON_GetArraySize(p), ok = cJSON_IsArray(p) && n > 0;
	const cJSON *x;
	cJSON_ArrayForEach(x, p)
		ok &= cJSON_IsNumber(x) && x->valuedouble >= 0 && x->valuedouble < 4294967296.0 &&
		      x->valuedouble == floor(x->valuedouble);
	if (!ok)
		return fail(e, 400, "prompt", NULL, "you must provide a prompt: a string or an array of token ids");
	out->prompt_ids = xmalloc((size_t)n * sizeof(*out->prompt_ids));
	out->n_prompt_ids = 0;
	cJSON_ArrayForEach(x, p)
		out->prompt_ids[out->n_prompt_ids++] = (uint32_t)x->valuedouble;
	return 0;
}

/* 1 when v is absent, null, or an integer in [lo, hi] */
static int int_or_null(const cJSON *v, double lo, double hi)
{
	return !v || cJSON_IsNull(v) ||
	       (cJSON_IsNumber(v) && v->valuedouble >= lo && v->valuedouble <= hi &&
		v->valuedouble == floor(v->valuedouble));
}

static int parse_logprobs(const cJSON *r, struct ftk_serve_request *out, struct ftk_serve_error *e)
{
	const cJSON *lp = cJSON_GetObjectItemCaseSensitive(r, "logprobs");
	const cJSON *tlp = cJSON_GetObjectItemCaseSensitive(r, "top_logprobs");
	const cJSON *echo = cJSON_GetObjectItemCaseSensitive(r, "echo");
	out->logprobs = -1;
	if (out->chat) {
		if (lp && !cJSON_IsBool(lp) && !cJSON_IsNull(lp))
			return fail(e, 400, "logprobs", NULL, "logprobs must be a boolean");
		if (!int_or_null(tlp, 0, FTK_SERVE_MAX_TOP))
			return fail(e, 400, "top_logprobs", NULL, "top_logprobs must be an integer from 0 to %d",
				    FTK_SERVE_MAX_TOP);
		if (cJSON_IsNumber(tlp) && !cJSON_IsTrue(lp))
			return fail(e, 400, "top_logprobs", NULL, "top_logprobs needs logprobs: true");
		if (cJSON_IsTrue(lp))
			out->logprobs = cJSON_IsNumber(tlp) ? (int)tlp->valuedouble : 0;
	} else {
		if (!int_or_null(lp, 0, FTK_SERVE_MAX_TOP))
			return fail(e, 400, "logprobs", NULL, "logprobs must be an integer from 0 to %d",
				    FTK_SERVE_MAX_TOP);
		if (cJSON_IsNumber(lp))
			out->logprobs = (int)lp->valuedouble;
		if (echo && !cJSON_IsBool(echo) && !cJSON_IsNull(echo))
			return fail(e, 400, "echo", NULL, "echo must be a boolean");
		out->echo = cJSON_IsTrue(echo);
	}
	if (out->logprobs >= 0 && out->gen.stream)
		return fail(e, 400, "logprobs", NULL, "logprobs are not streamed: ask without stream");
	return 0;
}

int ftk_serve_request_parse(const cJSON *r, int chat, const char *const *names, int n_names,
			    struct ftk_serve_request *out, struct ftk_serve_error *e)
{
	memset(out, 0, sizeof(*out));
	out->chat = chat;
	out->logprobs = -1;
	const cJSON *model = cJSON_GetObjectItemCaseSensitive(r, "model");
	if (!cJSON_IsString(model))
		return fail(e, 400, "model", NULL, "%s",
			    model ? "model must be a string" : "you must provide a model parameter");
	out->model = -1;
	for (int i = 0; i < n_names && out->model < 0; i++)
		if (!strcmp(names[i], model->valuestring))
			out->model = i;
	if (out->model < 0) {
		struct strbuf q = STRBUF_INIT;
		ftk_serve_quote(&q, model->valuestring, FTK_SERVE_QUOTE_MAX);
		fail(e, 404, "model", "model_not_found", "the model '%s' does not exist", q.buf ? q.buf : "");
		strbuf_release(&q);
		return -1;
	}
	if (chat ? parse_messages(r, out, e) : parse_prompt(r, out, e))
		goto failed;

	/* OpenAI's defaults: temperature 1, max_tokens up to the room left */
	out->gen = (struct ftk_openai_gen){ .temperature = 1, .top_p = 1, .top_k = 0, .max_tokens = 0, .n = 1 };
	/* max_tokens 0 (completions with echo: score the prompt) is out of
	 * ftk_openai_gen_read's range: read a copy without it */
	const cJSON *mt = cJSON_GetObjectItemCaseSensitive(r, "max_tokens");
	int zero = cJSON_IsNumber(mt) && mt->valuedouble == 0;
	struct ftk_error ge;
	int grc;
	if (zero) {
		cJSON *copy = cJSON_CreateObject();	/* the other members, as references */
		const cJSON *x;
		cJSON_ArrayForEach(x, r)
			if (strcmp(x->string, "max_tokens") && strcmp(x->string, "max_completion_tokens"))
				cJSON_AddItemReferenceToObject(copy, x->string, (cJSON *)x);
		grc = ftk_openai_gen_read(copy, &out->gen, &ge);
		cJSON_Delete(copy);
	} else {
		grc = ftk_openai_gen_read(r, &out->gen, &ge);
	}
	if (grc < 0) {
		fail(e, 400, ge.field, NULL, "%s", ge.msg);
		goto failed;
	}
	if (parse_logprobs(r, out, e) < 0)
		goto failed;
	if (zero) {
		if (chat || !out->echo) {
			fail(e, 400, "max_tokens", NULL, "%s",
			     chat ? "max_tokens is out of range"
				  : "max_tokens 0 needs echo: true (the prompt's log-probabilities)");
			goto failed;
		}
		out->gen.max_tokens = 0;
		out->zero_tokens = 1;
	}
	return 0;
failed:
	ftk_serve_request_release(out);
	return -1;
}
