/*
 * test_chat.c: chat renders and their ids against transformers.js, and the
 * loss masks derived from them.
 *
 * tests/fixtures/tokref/chat.jsonl.zst (tools/ref/gen-tokref.mjs) holds every
 * record of LLaMA-Factory's chat and tool-call samples, converted to the
 * canonical messages format, with transformers.js's apply_chat_template
 * render (or its error) for the Qwen3, Llama 3, Llama 2 chat, Mistral v0.1
 * and stories260K templates, the number of ids and an FNV-1a hash of them.
 * Every render must be byte-identical, every error must be an error too, and
 * the ids must match.
 */
#include <string.h>
#include "testutil.h"
#include "lib/chat.h"
#include "lib/json.h"
#include "lib/stream.h"

struct tpl { const char *name, *dir, *file; };
static const struct tpl TPL[] = {
	{ "qwen3", "tests/fixtures/tokenizers/qwen3", NULL },
	{ "llama3", "tests/fixtures/tokenizers/llama3", NULL },
	{ "llama2-chat", "tests/fixtures/tokenizers/llama2", "tests/fixtures/tokref/templates/llama2-chat.jinja" },
	{ "mistral-v0.1", "tests/fixtures/tokenizers/llama2", "tests/fixtures/tokref/templates/mistral-v0.1.jinja" },
	{ "stories260K", "datasets/models/stories260K", NULL },
};

static uint64_t fnv(const uint32_t *ids, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++)
		for (int b = 0; b < 4; b++) { h ^= (ids[i] >> (8 * b)) & 255; h *= 0x100000001b3ULL; }
	return h;
}

static struct ftk_chat *open_chat(int k, struct ftk_tokenizer **tok)
{
	struct ftk_error e;
	char buf[1200];
	ck_assert_msg(ftk_tokenizer_load(tok, src_path(TPL[k].dir), &e) == 0, "%s", ftk_error_format(&e, buf, sizeof(buf)));
	char *src = NULL;
	size_t len;
	if (TPL[k].file) ck_assert_int_eq(ftk_read_all(src_path(TPL[k].file), &src, &len, NULL), 0);
	struct ftk_chat *c;
	ck_assert_msg(ftk_chat_open(&c, *tok, src, TPL[k].name, &e) == 0, "%s", ftk_error_format(&e, buf, sizeof(buf)));
	free(src);
	return c;
}

static void show_diff(const char *want, const char *got)
{
	size_t i = 0;
	while (want[i] && want[i] == got[i]) i++;
	size_t from = i > 60 ? i - 60 : 0;
	fprintf(stderr, "  first difference at byte %zu\n  want: ...%.120s\n  got:  ...%.120s\n", i, want + from, got + from);
}

/* Compare one expected render {text|error,n,fnv}; returns 1 when it matches. */
static int check_render(struct ftk_chat *c, const cJSON *messages, const cJSON *tools, int gen, const cJSON *want,
			const char *what, int *n_masked, int *n_flagged, int verbose)
{
	struct ftk_render r = FTK_RENDER_INIT;
	struct ftk_error e;
	int ok = 1;
	int rc = ftk_chat_render(c, messages, tools, gen, &r, &e);
	const char *wtext = ftk_json_get_str(want, "text");
	const char *werr = ftk_json_get_str(want, "error");
	if (werr) {
		if (rc == 0) {
			if (verbose) fprintf(stderr, "%s: rendered, but transformers.js failed with '%s'\n", what, werr);
			ok = 0;
		} else if (!strstr(e.msg, werr)) {
			if (verbose) fprintf(stderr, "%s: error '%s', transformers.js '%s'\n", what, e.msg, werr);
			ok = 0;
		}
		ftk_render_release(&r);
		return ok;
	}
	if (rc) {
		if (verbose) fprintf(stderr, "%s: render failed: %s\n", what, e.msg);
		ftk_render_release(&r);
		return 0;
	}
	if (strlen(wtext) != r.text.len || memcmp(wtext, r.text.buf, r.text.len)) {
		if (verbose) { fprintf(stderr, "%s: render differs\n", what); show_diff(wtext, r.text.buf); }
		ftk_render_release(&r);
		return 0;
	}
	struct ftk_tokens tk = FTK_TOKENS_INIT;
	uint8_t *mask = NULL;
	size_t ma = 0;
	const char *reason;
	long n = ftk_chat_encode(c, &r, FTK_TRAIN_ASSISTANT, &tk, &mask, &ma, &reason, &e);
	int wn = cJSON_GetObjectItem(want, "n")->valueint;
	char h[17];
	snprintf(h, sizeof(h), "%016llx", (unsigned long long)fnv(tk.ids, tk.n));
	if ((int)tk.n != wn || strcmp(h, ftk_json_get_str(want, "fnv"))) {
		if (verbose) fprintf(stderr, "%s: ids differ (%zu ids, want %d)\n", what, tk.n, wn);
		ok = 0;
	}
	if (n >= 0) (*n_masked)++;
	else {
		(*n_flagged)++;
		if (verbose > 1) fprintf(stderr, "%s: mask flagged: %s: %s\n", what, reason, e.msg);
	}
	free(mask);
	ftk_tokens_release(&tk);
	ftk_render_release(&r);
	return ok;
}

static void run_template(int k)
{
	struct ftk_tokenizer *tok;
	struct ftk_chat *c = open_chat(k, &tok);
	struct ftk_reader *rd;
	struct ftk_line line;
	struct ftk_error e;
	int rows = 0, bad = 0, gens = 0, errs = 0, masked = 0, flagged = 0;
	ck_assert_int_eq(ftk_reader_open(&rd, src_path("tests/fixtures/tokref/chat.jsonl.zst"), &e), 0);
	while (ftk_reader_next(rd, &line, &e) > 0) {
		cJSON *row = cJSON_ParseWithLength(line.data, line.len);
		ck_assert_ptr_nonnull(row);
		const cJSON *msgs = cJSON_GetObjectItem(row, "messages");
		const cJSON *tools = cJSON_GetObjectItem(row, "tools");
		const cJSON *want = cJSON_GetObjectItem(cJSON_GetObjectItem(row, "renders"), TPL[k].name);
		char what[300];
		snprintf(what, sizeof(what), "%s: %s", TPL[k].name, ftk_json_get_str(row, "src"));
		if (cJSON_GetObjectItem(want, "error")) errs++;
		if (!check_render(c, msgs, tools, 0, want, what, &masked, &flagged, bad < 5 ? 1 + (getenv("VERBOSE") != NULL) : 0)) bad++;
		const cJSON *wg = cJSON_GetObjectItem(cJSON_GetObjectItem(row, "gen"), TPL[k].name);
		if (wg) {
			/* the same conversation without its last (assistant) turn, with the generation prompt */
			cJSON *prefix = cJSON_Duplicate(msgs, 1);
			cJSON_DeleteItemFromArray(prefix, cJSON_GetArraySize(prefix) - 1);
			int dummy1 = 0, dummy2 = 0;
			strcat(what, " (generation prompt)");
			if (!check_render(c, prefix, tools, 1, wg, what, &dummy1, &dummy2, bad < 5)) bad++;
			cJSON_Delete(prefix);
			gens++;
		}
		rows++;
		cJSON_Delete(row);
	}
	ftk_reader_close(rd);
	fprintf(stderr, "%s: %d records (%d errors expected), %d with a generation prompt, %d mismatches; "
		"masks: %d ok, %d flagged\n", TPL[k].name, rows, errs, gens, bad, masked, flagged);
	ck_assert_int_eq(rows, 1460);
	ck_assert_int_gt(gens, 100);
	ck_assert_int_eq(bad, 0);
	ftk_chat_free(c);
	ftk_tokenizer_free(tok);
}

START_TEST(test_qwen3) { run_template(0); }
END_TEST
START_TEST(test_llama3) { run_template(1); }
END_TEST
START_TEST(test_llama2) { run_template(2); }
END_TEST
START_TEST(test_mistral) { run_template(3); }
END_TEST
START_TEST(test_stories) { run_template(4); }
END_TEST

/* The stories260K example of datasets/models/stories260K/README.md. */
START_TEST(test_stories_readme)
{
	struct ftk_tokenizer *tok;
	struct ftk_chat *c = open_chat(4, &tok);
	cJSON *m = cJSON_Parse("[{\"role\":\"system\",\"content\":\"You write stories.\"},"
			       "{\"role\":\"user\",\"content\":\"Who is Lily?\"},"
			       "{\"role\":\"assistant\",\"content\":\"Lily is a girl.\"},"
			       "{\"role\":\"user\",\"content\":\"What does she like?\"}]");
	struct ftk_render r = FTK_RENDER_INIT;
	ck_assert_int_eq(ftk_chat_render(c, m, NULL, 1, &r, NULL), 0);
	ck_assert_str_eq(r.text.buf, "<s>You write stories.\nQuestion: Who is Lily?\nAnswer: Lily is a girl.</s>\n"
				     "Question: What does she like?\nAnswer:");
	ck_assert_uint_eq(r.n_spans, 1);
	ck_assert_int_eq(r.spans[0].message, 2);
	/* the span is " Lily is a girl.</s>": the answer and its end of turn */
	ck_assert_int_eq((int)(r.spans[0].end - r.spans[0].start), (int)strlen(" Lily is a girl.</s>"));
	ck_assert(!memcmp(r.text.buf + r.spans[0].start, " Lily is a girl.</s>", r.spans[0].end - r.spans[0].start));
	struct ftk_tokens tk = FTK_TOKENS_INIT;
	uint8_t *mask = NULL;
	size_t ma = 0;
	const char *reason;
	long n = ftk_chat_encode(c, &r, FTK_TRAIN_ASSISTANT, &tk, &mask, &ma, &reason, NULL);
	ck_assert_int_gt(n, 10);
	ck_assert_uint_eq(tk.ids[0], 1);	/* one BOS, from the template */
	ck_assert_uint_ne(tk.ids[1], 1);
	/* the learned tokens decode to exactly the answer and </s> */
	struct strbuf d = STRBUF_INIT;
	uint32_t learned[64];
	int nl = 0;
	for (long i = 0; i < n; i++) if (mask[i]) learned[nl++] = tk.ids[i];
	ck_assert_int_eq(learned[nl - 1], 2);
	ftk_tokenizer_decode(tok, learned, nl - 1, 0, &d, NULL);
	ck_assert_str_eq(d.buf, "Lily is a girl.");
	strbuf_release(&d);
	/* all / last */
	ck_assert_int_eq(ftk_chat_encode(c, &r, FTK_TRAIN_ALL, &tk, &mask, &ma, &reason, NULL), n);
	for (long i = 0; i < n; i++) ck_assert_int_eq(mask[i], 1);
	free(mask);
	ftk_tokens_release(&tk);
	ftk_render_release(&r);
	cJSON_Delete(m);
	ftk_chat_free(c);
	ftk_tokenizer_free(tok);
}
END_TEST

/* Every assistant turn of a multi-turn Qwen3 conversation with a tool call
 * is learned: content, tool call and <|im_end|>, never the headers. */
START_TEST(test_qwen3_mask_turns)
{
	struct ftk_tokenizer *tok;
	struct ftk_chat *c = open_chat(0, &tok);
	cJSON *m = cJSON_Parse(
		"[{\"role\":\"user\",\"content\":\"Weather in Paris?\"},"
		"{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"}}]},"
		"{\"role\":\"tool\",\"content\":\"{\\\"temp\\\": 21}\"},"
		"{\"role\":\"assistant\",\"content\":\"It is 21 degrees.\"},"
		"{\"role\":\"user\",\"content\":\"Thanks\"},"
		"{\"role\":\"assistant\",\"content\":\"You are welcome.\"}]");
	struct ftk_render r = FTK_RENDER_INIT;
	ck_assert_int_eq(ftk_chat_render(c, m, NULL, 0, &r, NULL), 0);
	ck_assert_uint_eq(r.n_spans, 3);
	const char *want[3] = { "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>",
				"It is 21 degrees.<|im_end|>", "<think>\n\n</think>\n\nYou are welcome.<|im_end|>" };
	for (int i = 0; i < 3; i++) {
		struct ftk_span *s = &r.spans[i];
		ck_assert_msg(s->end - s->start == strlen(want[i]) && !memcmp(r.text.buf + s->start, want[i], strlen(want[i])),
			      "span %d is '%.*s'", i, (int)(s->end - s->start), r.text.buf + s->start);
	}
	struct ftk_tokens tk = FTK_TOKENS_INIT;
	uint8_t *mask = NULL;
	size_t ma = 0;
	const char *reason;
	long n = ftk_chat_encode(c, &r, FTK_TRAIN_ASSISTANT, &tk, &mask, &ma, &reason, NULL);
	ck_assert_int_gt(n, 0);
	/* the learned tokens are exactly the spans' tokens: decode each run */
	struct strbuf all = STRBUF_INIT;
	int runs = 0;
	for (long i = 0; i < n;) {
		if (!mask[i]) { i++; continue; }
		long j = i;
		while (j < n && mask[j]) j++;
		struct strbuf d = STRBUF_INIT;
		ftk_tokenizer_decode(tok, tk.ids + i, j - i, 0, &d, NULL);
		ck_assert_str_eq(d.buf, want[runs]);
		strbuf_release(&d);
		runs++;
		i = j;
	}
	ck_assert_int_eq(runs, 3);
	/* last: only the final turn */
	n = ftk_chat_encode(c, &r, FTK_TRAIN_LAST, &tk, &mask, &ma, &reason, NULL);
	long f = -1, l = -1;
	for (long i = 0; i < n; i++) if (mask[i]) { if (f < 0) f = i; l = i; }
	for (long i = f; i <= l; i++) ck_assert_int_eq(mask[i], 1);
	ftk_tokenizer_decode(tok, tk.ids + f, l - f + 1, 0, &all, NULL);
	ck_assert_str_eq(all.buf, want[2]);
	strbuf_release(&all);
	free(mask);
	ftk_tokens_release(&tk);
	ftk_render_release(&r);
	cJSON_Delete(m);
	ftk_chat_free(c);
	ftk_tokenizer_free(tok);
}
END_TEST

/* Records that must be flagged: no assistant turn; a template that adds a
 * second BOS; a span boundary inside a token. */
START_TEST(test_mask_flags)
{
	struct ftk_tokenizer *tok;
	struct ftk_chat *c = open_chat(4, &tok);
	struct ftk_render r = FTK_RENDER_INIT;
	struct ftk_tokens tk = FTK_TOKENS_INIT;
	uint8_t *mask = NULL;
	size_t ma = 0;
	const char *reason;
	struct ftk_error e;
	cJSON *m = cJSON_Parse("[{\"role\":\"user\",\"content\":\"Hi\"}]");
	ck_assert_int_eq(ftk_chat_render(c, m, NULL, 0, &r, NULL), 0);
	ck_assert_int_eq(ftk_chat_encode(c, &r, FTK_TRAIN_ASSISTANT, &tk, &mask, &ma, &reason, &e), FTK_EDATA);
	ck_assert_str_eq(reason, "empty-mask");
	ck_assert_int_gt(ftk_chat_encode(c, &r, FTK_TRAIN_ALL, &tk, &mask, &ma, &reason, &e), 0);
	ftk_chat_free(c);
	cJSON_Delete(m);
	/* a template that writes bos_token twice */
	ck_assert_int_eq(ftk_chat_open(&c, tok, "{{ bos_token }}{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}", "x", NULL), 0);
	m = cJSON_Parse("[{\"role\":\"assistant\",\"content\":\"Hi\"}]");
	ck_assert_int_eq(ftk_chat_render(c, m, NULL, 0, &r, NULL), 0);
	ck_assert_int_eq(ftk_chat_encode(c, &r, FTK_TRAIN_ASSISTANT, &tk, &mask, &ma, &reason, &e), FTK_EDATA);
	ck_assert_str_eq(reason, "double-bos");
	ftk_chat_free(c);
	/* the assistant text glued to the header: "Answer:Hi" where "Answer:" ends
	 * with a character that merges with the content's first one */
	ck_assert_int_eq(ftk_chat_open(&c, tok, "{% for m in messages %}{% if m.role == 'assistant' %}Onc{{ m.content }}{% endif %}{% endfor %}", "x", NULL), 0);
	cJSON_Delete(m);
	m = cJSON_Parse("[{\"role\":\"assistant\",\"content\":\"e upon a time\"}]");
	ck_assert_int_eq(ftk_chat_render(c, m, NULL, 0, &r, NULL), 0);
	ck_assert_str_eq(r.text.buf, "Once upon a time");
	ck_assert_int_eq(ftk_chat_encode(c, &r, FTK_TRAIN_ASSISTANT, &tk, &mask, &ma, &reason, &e), FTK_EDATA);
	ck_assert_str_eq(reason, "mask-splits-token");
	ck_assert_msg(strstr(e.msg, "straddles"), "%s", e.msg);
	ftk_chat_free(c);
	cJSON_Delete(m);
	free(mask);
	ftk_tokens_release(&tk);
	ftk_render_release(&r);
	ftk_tokenizer_free(tok);
}
END_TEST

/* Extra template variables: Qwen3's enable_thinking=false closes the think
 * block in the generation prompt (the template's own text). */
START_TEST(test_template_var)
{
	struct ftk_tokenizer *tok;
	struct ftk_chat *c = open_chat(0, &tok);
	cJSON *m = cJSON_Parse("[{\"role\":\"user\",\"content\":\"Hi\"}]");
	struct ftk_render r = FTK_RENDER_INIT;
	ck_assert_int_eq(ftk_chat_render(c, m, NULL, 1, &r, NULL), 0);
	ck_assert_str_eq(r.text.buf, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
	ck_assert_int_eq(ftk_chat_set_var(c, "enable_thinking", cJSON_CreateFalse(), NULL), 0);
	ck_assert_int_eq(ftk_chat_render(c, m, NULL, 1, &r, NULL), 0);
	ck_assert_str_eq(r.text.buf, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
	struct ftk_error e;
	ck_assert_int_eq(ftk_chat_set_var(c, "messages", cJSON_CreateArray(), &e), FTK_EUSAGE);
	ftk_render_release(&r);
	cJSON_Delete(m);
	ftk_chat_free(c);
	ftk_tokenizer_free(tok);
}
END_TEST

/*
 * Issue 18.7: content in parts reaches the template as the parts' text
 * joined by " " (transformers serve's join), whoever renders (tokenize, generate and serve all call
 * ftk_chat_render), and content that is not text is refused, never printed
 * as a Python value.
 */
START_TEST(test_content_parts)
{
	struct ftk_tokenizer *tok;
	struct ftk_chat *c = open_chat(0, &tok);
	struct ftk_render a = FTK_RENDER_INIT, b = FTK_RENDER_INIT;
	struct ftk_error e;
	cJSON *str = cJSON_Parse("[{\"role\":\"user\",\"content\":\"hi there\"},"
				 "{\"role\":\"assistant\",\"content\":\"ok\"}]");
	cJSON *parts = cJSON_Parse("[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"},"
				   "\"there\"]},{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"ok\"}]}]");
	ck_assert_int_eq(ftk_chat_render(c, str, NULL, 0, &a, NULL), 0);
	ck_assert_int_eq(ftk_chat_render(c, parts, NULL, 0, &b, NULL), 0);
	ck_assert_str_eq(a.text.buf, b.text.buf);
	ck_assert_int_eq(b.n_spans, 1);
	ck_assert(a.spans[0].start == b.spans[0].start && a.spans[0].end == b.spans[0].end);
	static const struct {
		const char *msgs, *field, *msg;
	} bad[] = {
		{ "[{\"role\":\"user\",\"content\":5}]", "messages[0].content",
		  "messages[0].content must be a string or a list of text parts, not a JSON number" },
		{ "[{\"role\":\"user\",\"content\":{\"a\":1}}]", "messages[0].content",
		  "messages[0].content must be a string or a list of text parts, not a JSON object" },
		{ "[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{}}]}]",
		  "messages[0].content[0]",
		  "messages[0].content[0] is a part of type 'image_url': only text parts can be rendered "
		  "(ftk convert turns reasoning and tool_call parts into fields)" },
		{ "[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"user\",\"content\":[7]}]", "messages[1].content[0]",
		  "messages[1].content[0] is a JSON number: only text parts can be rendered "
		  "(ftk convert turns reasoning and tool_call parts into fields)" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cJSON *m = cJSON_Parse(bad[i].msgs);
		ck_assert_int_eq(ftk_chat_render(c, m, NULL, 0, &a, &e), FTK_EDATA);
		ck_assert_str_eq(e.field, bad[i].field);
		ck_assert_str_eq(e.msg, bad[i].msg);
		cJSON_Delete(m);
	}
	cJSON_Delete(str);
	cJSON_Delete(parts);
	ftk_render_release(&a);
	ftk_render_release(&b);
	ftk_chat_free(c);
	ftk_tokenizer_free(tok);
}
END_TEST

/*
 * The renders of chats in parts against @huggingface/jinja's renders of
 * what transformers serve hands the template (tests/fixtures/tokref/
 * parts.jsonl, tools/ref/gen-parts.mjs), byte for byte.
 */
START_TEST(test_content_parts_reference)
{
	static const int K[] = { 0, 1, 4 };	/* qwen3, llama3, stories260K */
	char *data;
	size_t len, pos = 0;
	int n = 0;
	ck_assert_int_eq(ftk_read_all(src_path("tests/fixtures/tokref/parts.jsonl"), &data, &len, NULL), 0);
	while (pos < len) {
		char *nl = memchr(data + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - data) : len;
		cJSON *row = cJSON_ParseWithLength(data + pos, end - pos);
		pos = end + 1;
		ck_assert_ptr_nonnull(row);
		const char *name = ftk_json_get_str(row, "tokenizer");
		int k = -1;
		for (size_t i = 0; i < sizeof(K) / sizeof(K[0]); i++)
			if (!strcmp(TPL[K[i]].name, name))
				k = K[i];
		ck_assert_int_ge(k, 0);
		struct ftk_tokenizer *tok;
		struct ftk_chat *c = open_chat(k, &tok);
		struct ftk_render r = FTK_RENDER_INIT;
		ck_assert_int_eq(ftk_chat_render(c, cJSON_GetObjectItem(row, "messages"), NULL, 1, &r, NULL), 0);
		const char *want = ftk_json_get_str(row, "output");
		if (strcmp(want, r.text.buf))
			show_diff(want, r.text.buf);
		ck_assert_str_eq(r.text.buf, want);
		ftk_render_release(&r);
		ftk_chat_free(c);
		ftk_tokenizer_free(tok);
		cJSON_Delete(row);
		n++;
	}
	free(data);
	ck_assert_int_eq(n, 6);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("chat");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_qwen3);
	tcase_add_test(tc, test_llama3);
	tcase_add_test(tc, test_llama2);
	tcase_add_test(tc, test_mistral);
	tcase_add_test(tc, test_stories);
	tcase_add_test(tc, test_stories_readme);
	tcase_add_test(tc, test_qwen3_mask_turns);
	tcase_add_test(tc, test_mask_flags);
	tcase_add_test(tc, test_template_var);
	tcase_add_test(tc, test_content_parts);
	tcase_add_test(tc, test_content_parts_reference);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(make_suite)
