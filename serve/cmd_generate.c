/*
 * cmd_generate.c: ftk-generate, answers from a local model for a JSONL of prompts.
 * summary: generate outputs for JSONL prompts with a local model (and adapter)
 *
 * Each input record is either a chat ("messages", optionally "tools"),
 * rendered with the model's own chat template and a generation prompt, or,
 * with --raw, a plain "text" prompt given to the model as BOS plus the text
 * (as the original stories260K implementation does).  The output is the
 * input record, byte for byte, with four members appended: "output" (the
 * generated text), "prompt_tokens", "completion_tokens" and "finish_reason"
 * ("stop" at an end-of-sequence token, "length" at --max-tokens or the end
 * of the context).  A record that has no prompt of the expected kind, or
 * whose prompt does not fit the context, goes to --rejects with the reason.
 *
 * The work is done by the inference engine (model/infer.h): the model with
 * its KV cache, the adapter applied, the tokenizer and the chat template.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/parse-options.h"
#include "cli/tool.h"
#include "model/infer.h"

static const char *const usage[] = {
	"ftk-generate --model DIR [--adapter DIR] [options] [FILE...]", "",
	"Generate an answer for every prompt record and write the record with \"output\",",
	"\"prompt_tokens\", \"completion_tokens\" and \"finish_reason\" added.", NULL,
};

/* The record's bytes with the new members spliced in before its closing brace. */
static void emit_with_output(struct ftk_tool *t, const struct ftk_line *line,
			     const struct ftk_infer_result *r, struct strbuf *sb)
{
	size_t end = line->len;
	while (end > 0 && line->data[end - 1] != '}')
		end--;
	size_t open = end - 1;	/* the closing brace */
	size_t k = open;
	while (k > 0 && (line->data[k - 1] == ' ' || line->data[k - 1] == '\t' ||
			 line->data[k - 1] == '\r' || line->data[k - 1] == '\n'))
		k--;
	int empty = k > 0 && line->data[k - 1] == '{';
	strbuf_reset(sb);
	strbuf_add(sb, line->data, open);
	if (!empty)
		strbuf_addch(sb, ',');
	strbuf_addstr(sb, "\"output\":");
	strbuf_add_json_str(sb, r->text.buf, r->text.len);
	strbuf_addf(sb, ",\"prompt_tokens\":%d,\"completion_tokens\":%d,\"finish_reason\":\"%s\"}",
		    r->prompt_tokens, r->completion_tokens, r->finish_reason ? r->finish_reason : "stop");
	ftk_tool_emit_raw(t, sb->buf, sb->len);
}

int cmd_generate(int argc, char **argv)
{
	struct ftk_tool t;
	struct ftk_infer_opts io = { NULL, NULL, 1, 0, NULL };
	struct ftk_gen_opts g;
	int raw = 0, device = 0;
	double temperature, top_p;
	static const char *const devices[] = { "cpu", "cuda" };
	ftk_gen_opts_default(&g);
	temperature = g.temperature;
	top_p = g.top_p;
	ftk_tool_init(&t, "ftk-generate", NULL);
	t.stage = "eval";
	t.fail_on_reject = 1;	/* a prompt left unanswered is a data problem: exit 1 */
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Options"),
		FTK_OPT_STRING(0, "model", &io.model_dir, "DIR",
			       "the model (Hugging Face directory with tokenizer files)"),
		FTK_OPT_STRING(0, "adapter", &io.adapter_dir, "DIR", "a PEFT LoRA adapter to apply"),
		FTK_OPT_FLAG(0, "raw", &raw, "records hold plain \"text\" prompts (BOS + text), not chats"),
		FTK_OPT_CHOICE(0, "quant", &io.quant_nf4, "Q", FTK_QUANT_CHOICES,
			       "nf4 (default, the base QLoRA trains on) or none (full precision)"),
		FTK_OPT_INT(0, "max-tokens", &g.max_tokens, "N", 0, 10000000,
			    "new tokens at most per record (default 256)"),
		FTK_OPT_DOUBLE(0, "temperature", &temperature, "T", 0, 100,
			       "0 (default) is greedy; otherwise sample"),
		FTK_OPT_INT(0, "top-k", &g.top_k, "K", 0, 1000000000,
			    "sample among the K most likely tokens (default 0: all)"),
		FTK_OPT_DOUBLE(0, "top-p", &top_p, "P", 1e-6, 1,
			       "sample within probability mass P (default 1: all)"),
		FTK_OPT_UINT64(0, "seed", &g.seed, "N",
			       "the sampling seed (default 0); each record restarts from it"),
		FTK_OPT_INT(0, "max-seq", &io.max_seq, "N", 1, 10000000,
			    "the context to allocate (default: the model's)"),
		FTK_OPT_CHOICE(0, "device", &device, "D", "cpu|cuda",
			       "cpu (default) or cuda (the CUDA backend, docs/gpu.md)"),
		FTK_OPT_TOOL_COMMON(&t),
		FTK_OPT_END(),
	};
	argc = ftk_parse_options(argc, argv, "ftk-generate", opts, usage);
	g.temperature = (float)temperature;
	g.top_p = (float)top_p;
	if (device)
		io.device = devices[device];
	if (!io.model_dir)
		ftk_tool_usage_error(&t, "--model DIR is required");
	struct ftk_infer *e;
	struct ftk_error err;
	ftk_error_clear(&err);
	if (ftk_infer_open(&e, &io, &err) < 0) {
		ftk_tool_error_at(&t, &err);
		return 1;
	}
	if (!raw && !ftk_infer_has_chat(e)) {
		ftk_infer_free(e);
		die("the model's tokenizer has no chat_template: use --raw for plain text prompts");
	}
	ftk_tool_start(&t, argc, argv);
	struct ftk_line line;
	struct strbuf sb = STRBUF_INIT;
	uint64_t prompt_tokens = 0, completion_tokens = 0;
	while (ftk_tool_next(&t, &line)) {
		cJSON *rec = ftk_tool_parse(&t, &line);
		if (!rec)
			continue;
		struct ftk_infer_result r = FTK_INFER_RESULT_INIT;
		int rc;
		ftk_error_clear(&err);
		if (raw) {
			const cJSON *txt = cJSON_GetObjectItemCaseSensitive(rec, "text");
			if (!cJSON_IsString(txt)) {
				cJSON *x = cJSON_CreateObject();
				cJSON_AddStringToObject(x, "error", "with --raw a record needs a string \"text\"");
				ftk_tool_reject(&t, &line, "no-prompt", x);
				cJSON_Delete(rec);
				continue;
			}
			rc = ftk_infer_text(e, txt->valuestring, &g, NULL, 0, NULL, NULL, &r, &err);
		} else {
			const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(rec, "messages");
			const cJSON *tools = cJSON_GetObjectItemCaseSensitive(rec, "tools");
			if (!cJSON_IsArray(msgs) || !cJSON_GetArraySize(msgs)) {
				cJSON *x = cJSON_CreateObject();
				cJSON_AddStringToObject(x, "error", "a record needs a non-empty \"messages\" array (or use --raw)");
				ftk_tool_reject(&t, &line, "no-prompt", x);
				cJSON_Delete(rec);
				continue;
			}
			rc = ftk_infer_chat(e, msgs, cJSON_IsArray(tools) ? tools : NULL, &g, NULL, 0,
					    NULL, NULL, &r, &err);
		}
		cJSON_Delete(rec);
		if (rc < 0) {
			cJSON *x = cJSON_CreateObject();
			cJSON_AddStringToObject(x, "error", err.msg);
			ftk_tool_reject(&t, &line, rc == FTK_ELIMIT ? "too-long" : "generation-failed", x);
			ftk_infer_result_release(&r);
			continue;
		}
		prompt_tokens += (uint64_t)r.prompt_tokens;
		completion_tokens += (uint64_t)r.completion_tokens;
		emit_with_output(&t, &line, &r, &sb);
		ftk_infer_result_release(&r);
	}
	strbuf_release(&sb);
	ftk_tool_count(&t, "prompt_tokens", prompt_tokens);
	ftk_tool_count(&t, "completion_tokens", completion_tokens);
	ftk_infer_free(e);
	return ftk_tool_finish(&t);
}
