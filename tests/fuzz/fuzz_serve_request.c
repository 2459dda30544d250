/*
 * fuzz-sources: serve/request.c
 *
 * fuzz_serve_request.c: libFuzzer target for ftk-serve's request parsing
 * (anyone who can reach the port writes these bytes).  The first byte picks
 * chat completions (odd) or completions (even); the rest is the body.  A
 * body that parses is read by ftk_serve_request_parse; a refusal's error
 * body must be valid UTF-8 JSON, and an accepted chat request's messages
 * must render through stories260K's template (content in parts joined by
 * ftk_chat_render) or fail with an error, never crash.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "lib/chat.h"
#include "lib/json.h"
#include "lib/stream.h"
#include "serve/request.h"

static struct ftk_tokenizer *tok;
static struct ftk_chat *chat;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = { "stories260K", "tuned" };
	if (!tok && ftk_tokenizer_load(&tok, "datasets/models/stories260K", NULL) == 0)
		ftk_chat_open(&chat, tok, NULL, NULL, NULL);
	if (size < 1)
		return 0;
	int is_chat = data[0] & 1;
	const char *body = (const char *)data + 1;
	size_t len = size - 1;
	cJSON *req = NULL;
	if (ftk_utf8_check(body, len) >= 0 || ftk_json_parse_object(body, len, &req, NULL) < 0)
		return 0;
	struct ftk_serve_request rq;
	struct ftk_serve_error e;
	ftk_serve_error_init(&e);
	if (ftk_serve_request_parse(req, is_chat, names, 2, &rq, &e) < 0) {
		struct strbuf sb = STRBUF_INIT;
		ftk_serve_error_body(&sb, e.msg.buf, e.msg.len, "invalid_request_error", e.param, e.code);
		cJSON *back = NULL;
		if (ftk_utf8_check(sb.buf, sb.len) >= 0 || ftk_json_parse_object(sb.buf, sb.len, &back, NULL) < 0)
			abort();
		if (e.status != 400 && e.status != 404)
			abort();
		cJSON_Delete(back);
		strbuf_release(&sb);
	} else {
		if (rq.model < 0 || rq.model > 1 || rq.gen.n < 1 || rq.gen.n > 16 || rq.logprobs > FTK_SERVE_MAX_TOP)
			abort();
		if (is_chat && chat) {
			struct ftk_render r = FTK_RENDER_INIT;
			struct ftk_error err;
			ftk_chat_render(chat, rq.messages, rq.tools, 1, &r, &err);
			ftk_render_release(&r);
		}
		ftk_serve_request_release(&rq);
	}
	ftk_serve_error_release(&e);
	cJSON_Delete(req);
	return 0;
}
