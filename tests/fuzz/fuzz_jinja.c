/*
 * fuzz_jinja.c: libFuzzer target for the chat template engine, parse and
 * render, with the limits on (lowered so that a run stays fast: a template
 * that reaches one must fail with FTK_ELIMIT, never crash or hang).
 *
 * The input is a template, optionally followed by a line "\n---\n" and the
 * variables as JSON; without them the variables are a small chat with
 * tools, as ftk-tokenize passes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "lib/jinja.h"

static const char *const CHAT =
	"{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"hi \\u00e9\"},"
	"{\"role\":\"assistant\",\"content\":\"<think>x</think>yo\",\"tool_calls\":[{\"type\":\"function\","
	"\"function\":{\"name\":\"f\",\"arguments\":{\"x\":1}}}]}],\"tools\":[{\"type\":\"function\",\"function\":"
	"{\"name\":\"f\",\"parameters\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"integer\"}}}}}],"
	"\"add_generation_prompt\":true,\"bos_token\":\"<s>\",\"eos_token\":\"</s>\"}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *src = (const char *)data;
	size_t tl = size;
	const char *sep = memmem(data, size, "\n---\n", 5);
	cJSON *vars = NULL;
	if (sep) {
		tl = (size_t)(sep - src);
		vars = cJSON_ParseWithLength(sep + 5, size - tl - 5);
	}
	if (!vars)
		vars = cJSON_Parse(CHAT);
	struct ftk_jinja *t = NULL;
	struct ftk_error e;
	if (ftk_jinja_parse(&t, src, tl, &e) == 0) {
		static const char *const keys[] = { "content", "tool_calls", NULL };
		struct ftk_jinja_limits lim = { .max_steps = 200000, .max_output = 1 << 20, .max_memory = 16 << 20 };
		struct ftk_jinja_opts o = { 0 };
		o.track = cJSON_GetObjectItem(vars, "messages");
		o.taint_keys = keys;
		o.limits = &lim;
		struct strbuf out = STRBUF_INIT;
		int rc = ftk_jinja_render(t, vars, &o, &out, &e);
		if (rc > 0 || (rc < 0 && !e.msg[0]))
			abort();	/* an error always says what */
		for (size_t i = 0; i < o.n_iters; i++)
			if (o.iters[i].start > o.iters[i].end || (rc == 0 && o.iters[i].end > out.len))
				abort();
		free(o.iters);
		strbuf_release(&out);
		ftk_jinja_free(t);
	}
	cJSON_Delete(vars);
	return 0;
}
