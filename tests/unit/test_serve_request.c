/*
 * test_serve_request.c: serve/request, how ftk-serve reads a request and
 * words a refusal: every check with its status, param and message, the
 * error body always valid UTF-8 JSON, and parses on many threads at once
 * never mixing their messages (issue 18.5-18.7).
 */
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include "lib/json.h"
#include "lib/stream.h"
#include "serve/request.h"
#include "testutil.h"

static const char *const NAMES[] = { "base", "tuned" };

static int parse(const char *body, int chat, struct ftk_serve_request *rq, struct ftk_serve_error *e)
{
	cJSON *r = cJSON_Parse(body);
	ck_assert_msg(r != NULL, "bad test JSON: %s", body);
	int rc = ftk_serve_request_parse(r, chat, NAMES, 2, rq, e);
	ftk_serve_request_release(rq);
	cJSON_Delete(r);
	return rc;
}

START_TEST(accepted)
{
	struct ftk_serve_request rq;
	struct ftk_serve_error e;
	ftk_serve_error_init(&e);
	cJSON *r = cJSON_Parse("{\"model\":\"tuned\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
			       "\"text\":\"hi\"}]},{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{}]}],"
			       "\"n\":3,\"seed\":-1,\"logprobs\":true,\"top_logprobs\":2,\"tools\":[{}]}");
	ck_assert_int_eq(ftk_serve_request_parse(r, 1, NAMES, 2, &rq, &e), 0);
	ck_assert_int_eq(rq.model, 1);
	ck_assert_int_eq(rq.gen.n, 3);
	ck_assert(rq.gen.seed == UINT64_MAX && rq.gen.temperature == 1);
	ck_assert_int_eq(rq.logprobs, 2);
	ck_assert_ptr_nonnull(rq.tools);
	ck_assert_ptr_eq(rq.messages, cJSON_GetObjectItemCaseSensitive(r, "messages"));
	ftk_serve_request_release(&rq);
	cJSON_Delete(r);

	r = cJSON_Parse("{\"model\":\"base\",\"prompt\":[[1,2,4294967295]],\"max_tokens\":0,\"echo\":true,\"logprobs\":0}");
	ck_assert_int_eq(ftk_serve_request_parse(r, 0, NAMES, 2, &rq, &e), 0);
	ck_assert_int_eq(rq.n_prompt_ids, 3);
	ck_assert(rq.prompt_ids[2] == 4294967295u && rq.zero_tokens && rq.gen.max_tokens == 0 && rq.echo);
	ftk_serve_request_release(&rq);
	cJSON_Delete(r);
	ftk_serve_error_release(&e);
}
END_TEST

START_TEST(refused)
{
	static const struct {
		int chat;
		const char *body;
		int status;
		const char *param, *code, *msg;
	} t[] = {
		{ 1, "{\"messages\":[]}", 400, "model", NULL, "you must provide a model parameter" },
		{ 1, "{\"model\":7}", 400, "model", NULL, "model must be a string" },
		{ 1, "{\"model\":\"gpt\",\"messages\":[]}", 404, "model", "model_not_found", "the model 'gpt' does not exist" },
		{ 1, "{\"model\":\"base\"}", 400, "messages", NULL, "you must provide messages" },
		{ 1, "{\"model\":\"base\",\"messages\":[]}", 400, "messages", NULL, "messages must be a non-empty array" },
		{ 1, "{\"model\":\"base\",\"messages\":[{\"content\":\"x\"}]}", 400, "messages", NULL,
		  "messages[0] must be an object with a string role" },
		/* issue 18.7: content of 5, null or {"a":1} is refused */
		{ 1, "{\"model\":\"base\",\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400, "messages", NULL,
		  "messages[0].content must be a string or a list of text parts, not a JSON number" },
		{ 1, "{\"model\":\"base\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"content\":null}]}",
		  400, "messages", NULL,
		  "messages[1].content is missing or null: only an assistant message with tool_calls may leave it out" },
		{ 1, "{\"model\":\"base\",\"messages\":[{\"role\":\"user\",\"content\":{\"a\":1}}]}", 400, "messages", NULL,
		  "messages[0].content must be a string or a list of text parts, not a JSON object" },
		{ 1, "{\"model\":\"base\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", 400,
		  "messages", NULL,
		  "messages[0].content[0] must be a text part {\"type\":\"text\",\"text\":...} (this model reads no 'image_url' parts)" },
		{ 1, "{\"model\":\"base\",\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":1}]}]}", 400, "messages", NULL,
		  "messages[0].content[0] must be a text part {\"type\":\"text\",\"text\":...}" },
		{ 1, "{\"model\":\"base\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":{}}", 400, "tools", NULL,
		  "tools must be an array" },
		{ 0, "{\"model\":\"base\",\"prompt\":[1.5]}", 400, "prompt", NULL,
		  "you must provide a prompt: a string or an array of token ids" },
		{ 0, "{\"model\":\"base\",\"prompt\":[4294967296]}", 400, "prompt", NULL,
		  "you must provide a prompt: a string or an array of token ids" },
		{ 0, "{\"model\":\"base\"}", 400, "prompt", NULL, "you must provide a prompt: a string or an array of token ids" },
		/* ranges before conversion (lib/openai.c) */
		{ 0, "{\"model\":\"base\",\"prompt\":\"x\",\"n\":1e300}", 400, "n", NULL, "n is out of range" },
		{ 0, "{\"model\":\"base\",\"prompt\":\"x\",\"top_k\":-1e300}", 400, "top_k", NULL, "top_k is out of range" },
		{ 0, "{\"model\":\"base\",\"prompt\":\"x\",\"seed\":1e300}", 400, "seed", NULL, "seed is out of range" },
		{ 0, "{\"model\":\"base\",\"prompt\":\"x\",\"max_tokens\":-0.5}", 400, "max_tokens", NULL, "max_tokens is out of range" },
		{ 0, "{\"model\":\"base\",\"prompt\":\"x\",\"logprobs\":1e300}", 400, "logprobs", NULL, "logprobs must be an integer from 0 to 20" },
		{ 0, "{\"model\":\"base\",\"prompt\":\"x\",\"logprobs\":2.5}", 400, "logprobs", NULL, "logprobs must be an integer from 0 to 20" },
		{ 1, "{\"model\":\"base\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true,\"top_logprobs\":-1e300}",
		  400, "top_logprobs", NULL, "top_logprobs must be an integer from 0 to 20" },
		{ 1, "{\"model\":\"base\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":3}", 400,
		  "top_logprobs", NULL, "top_logprobs needs logprobs: true" },
		{ 1, "{\"model\":\"base\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":1}", 400,
		  "logprobs", NULL, "logprobs must be a boolean" },
		{ 0, "{\"model\":\"base\",\"prompt\":\"x\",\"logprobs\":1,\"stream\":true}", 400, "logprobs", NULL,
		  "logprobs are not streamed: ask without stream" },
		{ 0, "{\"model\":\"base\",\"prompt\":\"x\",\"echo\":1}", 400, "echo", NULL, "echo must be a boolean" },
		{ 0, "{\"model\":\"base\",\"prompt\":\"x\",\"max_tokens\":0}", 400, "max_tokens", NULL,
		  "max_tokens 0 needs echo: true (the prompt's log-probabilities)" },
		{ 1, "{\"model\":\"base\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}", 400,
		  "max_tokens", NULL, "max_tokens is out of range" },
	};
	struct ftk_serve_request rq;
	struct ftk_serve_error e;
	ftk_serve_error_init(&e);
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		ck_assert_msg(parse(t[i].body, t[i].chat, &rq, &e) == -1, "accepted: %s", t[i].body);
		ck_assert_int_eq(e.status, t[i].status);
		ck_assert_str_eq(e.param, t[i].param);
		if (t[i].code)
			ck_assert_str_eq(e.code, t[i].code);
		else
			ck_assert_ptr_null(e.code);
		ck_assert_str_eq(e.msg.buf, t[i].msg);
		ck_assert_ptr_null(rq.prompt_ids);
	}
	ftk_serve_error_release(&e);
}
END_TEST

/* Issue 18.6: whatever the request held, the error body is valid UTF-8 JSON. */
START_TEST(error_body_utf8)
{
	struct ftk_serve_request rq;
	struct ftk_serve_error e;
	struct strbuf sb = STRBUF_INIT;
	ftk_serve_error_init(&e);
	/* a model name of 300 "é": quoted to 200 bytes, cut between characters */
	struct strbuf name = STRBUF_INIT, body = STRBUF_INIT;
	for (int i = 0; i < 300; i++)
		strbuf_addstr(&name, "\xc3\xa9");
	strbuf_addstr(&body, "{\"model\":\"x");	/* one ASCII byte first: the 200-byte cut falls mid-character */
	strbuf_add(&body, name.buf, name.len);
	strbuf_addstr(&body, "\"}");
	ck_assert_int_eq(parse(body.buf, 1, &rq, &e), -1);
	ck_assert_int_eq(e.status, 404);
	ck_assert_int_eq(ftk_utf8_check(e.msg.buf, e.msg.len), -1);
	/* "the model 'x" + 99 characters + "..." */
	ck_assert_uint_eq(e.msg.len, strlen("the model 'x") + 198 + strlen("...' does not exist"));
	ftk_serve_error_body(&sb, e.msg.buf, e.msg.len, "invalid_request_error", e.param, e.code);
	cJSON *o = NULL;
	ck_assert_int_eq(ftk_json_parse_object(sb.buf, sb.len, &o, NULL), 0);
	ck_assert_int_eq(ftk_utf8_check(sb.buf, sb.len), -1);
	cJSON_Delete(o);

	/* raw bytes that are not UTF-8 (cJSON keeps them) become U+FFFD */
	cJSON *r = cJSON_CreateObject();
	cJSON_AddStringToObject(r, "model", "bad\xff\xfe name\xc3");
	cJSON_AddItemToObject(r, "messages", cJSON_CreateArray());
	ck_assert_int_eq(ftk_serve_request_parse(r, 1, NAMES, 2, &rq, &e), -1);
	strbuf_reset(&sb);
	ftk_serve_error_body(&sb, e.msg.buf, e.msg.len, "invalid_request_error", e.param, e.code);
	ck_assert_int_eq(ftk_utf8_check(sb.buf, sb.len), -1);
	ck_assert_int_eq(ftk_json_parse_object(sb.buf, sb.len, &o, NULL), 0);
	const cJSON *er = cJSON_GetObjectItemCaseSensitive(o, "error");
	ck_assert_str_eq(ftk_json_get_str(er, "message"),
			 "the model 'bad\xef\xbf\xbd\xef\xbf\xbd name\xef\xbf\xbd' does not exist");
	ck_assert_str_eq(ftk_json_get_str(er, "code"), "model_not_found");
	ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "error"), "x")) == 0);
	cJSON_Delete(o);
	cJSON_Delete(r);

	/* null param and code */
	strbuf_reset(&sb);
	ftk_serve_error_body(&sb, "a \"quoted\"\n", 11, "server_error", NULL, NULL);
	ck_assert_str_eq(sb.buf, "{\"error\":{\"message\":\"a \\\"quoted\\\"\\n\",\"type\":\"server_error\","
				 "\"param\":null,\"code\":null}}");
	strbuf_release(&sb);
	strbuf_release(&name);
	strbuf_release(&body);
	ftk_serve_error_release(&e);
}
END_TEST

/*
 * Issue 18.5: eight threads each parse requests naming their own unknown
 * model, 400 times; every message must name the thread's model.  With the
 * old static buffer this mixed names between threads.
 */
static void *parse_many(void *arg)
{
	long k = (long)arg;
	char body[128], want[128];
	snprintf(body, sizeof(body), "{\"model\":\"model-of-thread-%ld\",\"messages\":[]}", k);
	snprintf(want, sizeof(want), "the model 'model-of-thread-%ld' does not exist", k);
	cJSON *r = cJSON_Parse(body);
	struct ftk_serve_request rq;
	struct ftk_serve_error e;
	ftk_serve_error_init(&e);
	long wrong = 0;
	for (int i = 0; i < 400; i++) {
		ftk_serve_request_parse(r, 1, NAMES, 2, &rq, &e);
		sched_yield();
		wrong += strcmp(e.msg.buf, want) != 0;
	}
	ftk_serve_error_release(&e);
	cJSON_Delete(r);
	return (void *)wrong;
}

START_TEST(threads_never_share)
{
	pthread_t th[8];
	for (long k = 0; k < 8; k++)
		pthread_create(&th[k], NULL, parse_many, (void *)k);
	long wrong = 0;
	for (int k = 0; k < 8; k++) {
		void *w;
		pthread_join(th[k], &w);
		wrong += (long)w;
	}
	ck_assert_int_eq(wrong, 0);
}
END_TEST

START_TEST(quote)
{
	struct strbuf sb = STRBUF_INIT;
	ftk_serve_quote(&sb, "short", 10);
	ck_assert_str_eq(sb.buf, "short");
	strbuf_reset(&sb);
	ftk_serve_quote(&sb, "abc\xe2\x82\xac" "def", 5);	/* cut inside the euro sign: before it */
	ck_assert_str_eq(sb.buf, "abc...");
	strbuf_reset(&sb);
	ftk_serve_quote(&sb, "abc\xe2\x82\xac" "def", 6);	/* right after it */
	ck_assert_str_eq(sb.buf, "abc\xe2\x82\xac...");
	strbuf_reset(&sb);
	ftk_serve_quote(&sb, "\x80\x80\x80\x80\x80\x80", 4);	/* not UTF-8 at all: cut where asked */
	ck_assert_uint_eq(sb.len, 4 + 3);
	strbuf_release(&sb);
}
END_TEST

/*
 * Found by fuzz_serve_request: a body of nothing but whitespace, not
 * NUL-terminated, was scanned past its end by strspn in ftk_json_parse
 * (ASan: heap-buffer-overflow; only SAN=1 sees the read).
 */
START_TEST(whitespace_body_not_terminated)
{
	static const char crash[] = "\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r";
	char *body = malloc(sizeof(crash) - 1);
	memcpy(body, crash, sizeof(crash) - 1);
	cJSON *r = NULL;
	struct ftk_error e;
	ck_assert_int_eq(ftk_json_parse_object(body, sizeof(crash) - 1, &r, &e), FTK_EDATA);
	ck_assert_str_eq(e.msg, "empty line where a JSON value was expected");
	free(body);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("serve_request");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, accepted);
	tcase_add_test(tc, refused);
	tcase_add_test(tc, error_body_utf8);
	tcase_add_test(tc, threads_never_share);
	tcase_add_test(tc, quote);
	tcase_add_test(tc, whitespace_body_not_terminated);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(make_suite)
