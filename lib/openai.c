/*
 * openai.c: the OpenAI chat-completions protocol (openai.h).
 *
 * Nothing here knows who asks: eval's endpoint backend, the judges and
 * ftk-serve each hold their own client or server and call these to build,
 * read and check what goes over the wire.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include "json.h"
#include "openai.h"
#include "stream.h"

/* ------------------------------------------------------------------ URLs */

char *ftk_openai_chat_url(const char *endpoint)
{
	struct strbuf sb = STRBUF_INIT;
	const char *query = strchr(endpoint, '?');	/* kept at the end */
	strbuf_add(&sb, endpoint, query ? (size_t)(query - endpoint) : strlen(endpoint));
	while (sb.len && sb.buf[sb.len - 1] == '/')
		strbuf_setlen(&sb, sb.len - 1);
	size_t n = sb.len;
	if (n >= 17 && !strcmp(sb.buf + n - 17, "/chat/completions"))
		;
	else if (n >= 3 && !strcmp(sb.buf + n - 3, "/v1"))
		strbuf_addstr(&sb, "/chat/completions");
	else
		strbuf_addstr(&sb, "/v1/chat/completions");
	if (query)
		strbuf_addstr(&sb, query);
	return strbuf_detach(&sb, NULL);
}

char *ftk_openai_public_url(const char *endpoint)
{
	char *u = ftk_openai_chat_url(endpoint);
	char *q = strchr(u, '?');	/* a query string may hold a key */
	if (q)
		*q = 0;
	char *scheme = strstr(u, "://");	/* and so may user:password@ */
	char *at = scheme ? strchr(scheme + 3, '@') : NULL;
	char *slash = scheme ? strchr(scheme + 3, '/') : NULL;
	if (at && (!slash || at < slash))
		memmove(scheme + 3, at + 1, strlen(at + 1) + 1);
	return u;
}

/* -------------------------------------------------------------- requests */

char *ftk_openai_chat_request(const char *model, const cJSON *messages, const cJSON *tools,
			      const cJSON *params, long seed_offset)
{
	cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "model", model ? model : "");
	cJSON_AddItemToObject(req, "messages", cJSON_Duplicate(messages, 1));
	if (tools && cJSON_GetArraySize(tools) > 0)
		cJSON_AddItemToObject(req, "tools", cJSON_Duplicate(tools, 1));
	for (const cJSON *g = params ? params->child : NULL; g; g = g->next) {
		cJSON *v = cJSON_Duplicate(g, 1);
		if (!strcmp(g->string, "seed") && cJSON_IsNumber(g))
			cJSON_SetNumberValue(v, g->valuedouble + (double)seed_offset);
		cJSON_AddItemToObject(req, g->string, v);
	}
	char *s = cJSON_PrintUnformatted(req);
	cJSON_Delete(req);
	char *r = xstrdup(s);
	cJSON_free(s);
	return r;
}

/* ---------------------------------------------------------------- replies */

static long usage_num(const cJSON *u, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(u, k);
	return cJSON_IsNumber(v) ? (long)v->valuedouble : -1;
}

void ftk_openai_reply_from_message(const cJSON *msg, struct ftk_openai_reply *r)
{
	memset(r, 0, sizeof(*r));
	strbuf_init(&r->text_buf, 0);
	r->prompt_tokens = r->completion_tokens = -1;
	r->message = msg;
	const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
	if (cJSON_IsString(content)) {
		r->text = content->valuestring;
	} else if (cJSON_IsArray(content)) {
		/* content parts: the text of each, joined */
		const cJSON *p;
		cJSON_ArrayForEach(p, content)
		{
			const char *t = ftk_json_get_str(p, "text");
			if (t)
				strbuf_addstr(&r->text_buf, t);
		}
		r->text = r->text_buf.buf;
	}
	const cJSON *tc = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls");
	if (tc && !cJSON_IsNull(tc))
		r->tool_calls = tc;
}

int ftk_openai_reply_read(const cJSON *resp, struct ftk_openai_reply *r)
{
	const cJSON *ch = cJSON_GetObjectItemCaseSensitive(resp, "choices");
	const cJSON *c0 = cJSON_IsArray(ch) ? cJSON_GetArrayItem(ch, 0) : NULL;
	const cJSON *msg = cJSON_GetObjectItemCaseSensitive(c0, "message");
	ftk_openai_reply_from_message(cJSON_IsObject(msg) ? msg : NULL, r);
	if (!cJSON_IsObject(msg))
		return FTK_EDATA;
	r->finish_reason = ftk_json_get_str(c0, "finish_reason");
	const cJSON *u = cJSON_GetObjectItemCaseSensitive(resp, "usage");
	r->prompt_tokens = usage_num(u, "prompt_tokens");
	r->completion_tokens = usage_num(u, "completion_tokens");
	return 0;
}

void ftk_openai_reply_release(struct ftk_openai_reply *r)
{
	if (r)
		strbuf_release(&r->text_buf);
}

int ftk_openai_chat_valid(const char *body, size_t len, void *ctx)
{
	(void)ctx;
	cJSON *v = cJSON_ParseWithLength(body, len);
	struct ftk_openai_reply r;
	int bad = ftk_openai_reply_read(v, &r) < 0;
	ftk_openai_reply_release(&r);
	cJSON_Delete(v);
	return bad;
}

const char *ftk_openai_error_message(const char *body, size_t len, size_t max, struct strbuf *out)
{
	const char *text = body;
	size_t n = len;
	cJSON *v = body ? cJSON_ParseWithLength(body, len) : NULL;
	if (v) {
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(v, "error");
		const char *m = cJSON_IsObject(e) ? ftk_json_get_str(e, "message") : NULL;
		if (!m && cJSON_IsString(e))
			m = e->valuestring;
		if (!m)
			m = ftk_json_get_str(v, "message");
		if (!m)
			m = ftk_json_get_str(v, "detail");
		if (m) {
			text = m;
			n = strlen(m);
		}
	}
	if (!text)
		n = 0;
	/* trim, and cut at max bytes without splitting a character */
	while (n && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' '))
		n--;
	if (n > max) {
		n = max;
		while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80)
			n--;
	}
	strbuf_add_utf8(out, text ? text : "", n);
	cJSON_Delete(v);
	return out->buf;
}

/* -------------------------------------------------------------- settings */

int ftk_openai_gen_read(const cJSON *req, struct ftk_openai_gen *g, struct ftk_error *err)
{
	static const struct {
		const char *k;
		int kind;
	} nums[] = {
		{ "temperature", 0 }, { "top_p", 1 }, { "max_tokens", 2 },
		{ "max_completion_tokens", 2 }, { "seed", 3 }, { "n", 4 }, { "top_k", 5 },
	};
	for (size_t i = 0; i < FTK_ARRAY_SIZE(nums); i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, nums[i].k);
		if (!v || cJSON_IsNull(v))
			continue;
		if (!cJSON_IsNumber(v))
			return ftk_error_set(err, FTK_EDATA, NULL, 0, nums[i].k, "%s must be a number",
					     nums[i].k);
		/* every range is checked before a conversion: a double outside the
		 * target type (1e300, inf) converted to an integer is undefined */
		double d = v->valuedouble;
		int integral = d == floor(d);
		int bad = d != d;
		if (!bad) {
			switch (nums[i].kind) {
			case 0: bad = d < 0 || d > 2; break;
			case 1: bad = d <= 0 || d > 1; break;
			case 2: bad = !integral || d < 1 || d > 1e6; break;
			/* a seed is any 64-bit integer, negative ones wrapping as numpy's do */
			case 3: bad = !integral || d < -9223372036854775808.0 || d >= 18446744073709551616.0; break;
			case 4: bad = !integral || d < 1 || d > 16; break;
			case 5: bad = !integral || d < 0 || d > 1e9; break;
			}
		}
		if (bad)
			return ftk_error_set(err, FTK_EDATA, NULL, 0, nums[i].k, "%s is out of range",
					     nums[i].k);
		switch (nums[i].kind) {
		case 0: g->temperature = d; break;
		case 1: g->top_p = d; break;
		case 2: g->max_tokens = (long)d; break;
		case 3:
			g->seed = d < 0 ? (uint64_t)(int64_t)d : (uint64_t)d;
			g->has_seed = 1;
			break;
		case 4: g->n = (int)d; break;
		case 5: g->top_k = (int)d; break;
		}
	}
	const cJSON *stop = cJSON_GetObjectItemCaseSensitive(req, "stop");
	if (cJSON_IsString(stop)) {
		g->n_stop = 0;
		g->stop[g->n_stop++] = stop->valuestring;
	} else if (cJSON_IsArray(stop)) {
		g->n_stop = 0;
		const cJSON *s;
		cJSON_ArrayForEach(s, stop)
		{
			if (!cJSON_IsString(s) || g->n_stop == FTK_OPENAI_MAX_STOP)
				return ftk_error_set(err, FTK_EDATA, NULL, 0, "stop",
						     "stop must be a string or up to %d strings",
						     FTK_OPENAI_MAX_STOP);
			g->stop[g->n_stop++] = s->valuestring;
		}
	} else if (stop && !cJSON_IsNull(stop)) {
		return ftk_error_set(err, FTK_EDATA, NULL, 0, "stop",
				     "stop must be a string or up to %d strings", FTK_OPENAI_MAX_STOP);
	}
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(req, "stream");
	if (st && !cJSON_IsNull(st))
		g->stream = cJSON_IsTrue(st);
	return 0;
}

/* ------------------------------------------------------------------ cache */

static int mkdirs(char *p)
{
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		int bad = mkdir(p, 0755) < 0 && errno != EEXIST;
		*s = '/';
		if (bad)
			return -1;
	}
	return mkdir(p, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

static void cache_path(const char *dir, const char *url, const char *body, long sample,
		       struct strbuf *out)
{
	struct strbuf key = STRBUF_INIT;
	strbuf_addf(&key, "%s\n%s\n%ld", url ? url : "", body, sample);
	XXH128_hash_t h = XXH3_128bits(key.buf, key.len);
	strbuf_release(&key);
	char hex[40];
	snprintf(hex, sizeof(hex), "%016llx%016llx", (unsigned long long)h.high64,
		 (unsigned long long)h.low64);
	strbuf_reset(out);
	strbuf_addf(out, "%s/%.2s/%s.json", dir, hex, hex + 2);
}

char *ftk_openai_cache_get(const char *dir, const char *url, const char *body, long sample)
{
	if (!dir)
		return NULL;
	struct strbuf p = STRBUF_INIT, data = STRBUF_INIT;
	cache_path(dir, url, body, sample, &p);
	char *ret = NULL;
	if (strbuf_read_file(&data, p.buf) == 0 && !ftk_openai_chat_valid(data.buf, data.len, NULL))
		ret = strbuf_detach(&data, NULL);
	strbuf_release(&data);
	strbuf_release(&p);
	return ret;
}

void ftk_openai_cache_put(const char *dir, const char *url, const char *body, long sample,
			  const char *reply, size_t len)
{
	if (!dir)
		return;
	struct strbuf p = STRBUF_INIT, tmp = STRBUF_INIT;
	cache_path(dir, url, body, sample, &p);
	char *slash = strrchr(p.buf, '/');
	*slash = 0;
	if (mkdirs(p.buf) == 0) {
		*slash = '/';
		strbuf_addf(&tmp, "%s.%d.tmp", p.buf, (int)getpid());
		FILE *f = fopen(tmp.buf, "wb");
		if (f) {
			int ok = fwrite(reply, 1, len, f) == len;
			ok = (fclose(f) == 0) && ok;
			if (!ok || rename(tmp.buf, p.buf) < 0)
				unlink(tmp.buf);
		}
	}
	strbuf_release(&tmp);
	strbuf_release(&p);
}
