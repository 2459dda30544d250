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
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/parse-options.h"
#include "cli/tool.h"
#include "model/infer.h"

static const char usage[] =
	"usage: ftk-generate --model DIR [--adapter DIR] [options] [FILE...]\n"
	"\n"
	"Generate an answer for every prompt record and write the record with \"output\",\n"
	"\"prompt_tokens\", \"completion_tokens\" and \"finish_reason\" added.\n"
	"\n"
	"Options:\n"
	"      --model DIR        the model (Hugging Face directory with tokenizer files)\n"
	"      --adapter DIR      a PEFT LoRA adapter to apply\n"
	"      --raw              records hold plain \"text\" prompts (BOS + text), not chats\n"
	"      --quant Q          nf4 (default, the base QLoRA trains on) or none (full precision)\n"
	"      --max-tokens N     new tokens at most per record (default 256)\n"
	"      --temperature T    0 (default) is greedy; otherwise sample\n"
	"      --top-k K          sample among the K most likely tokens (default 0: all)\n"
	"      --top-p P          sample within probability mass P (default 1: all)\n"
	"      --seed N           the sampling seed (default 0); each record restarts from it\n"
	"      --max-seq N        the context to allocate (default: the model's)\n"
	"      --device D         cpu (default) or cuda (the CUDA backend, docs/gpu.md)\n"
	"\n" FTK_TOOL_COMMON_HELP;

enum {
	OPT_MODEL = FTK_OPT_FIRST_FREE,
	OPT_ADAPTER,
	OPT_RAW,
	OPT_QUANT,
	OPT_MAX_TOKENS,
	OPT_TEMPERATURE,
	OPT_TOP_K,
	OPT_TOP_P,
	OPT_SEED,
	OPT_MAX_SEQ,
	OPT_DEVICE,
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
	static const struct option opts[] = {
		FTK_TOOL_LONGOPTS,
		{ "model", required_argument, NULL, OPT_MODEL },
		{ "adapter", required_argument, NULL, OPT_ADAPTER },
		{ "raw", no_argument, NULL, OPT_RAW },
		{ "quant", required_argument, NULL, OPT_QUANT },
		{ "max-tokens", required_argument, NULL, OPT_MAX_TOKENS },
		{ "temperature", required_argument, NULL, OPT_TEMPERATURE },
		{ "top-k", required_argument, NULL, OPT_TOP_K },
		{ "top-p", required_argument, NULL, OPT_TOP_P },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "max-seq", required_argument, NULL, OPT_MAX_SEQ },
		{ "device", required_argument, NULL, OPT_DEVICE },
		{ 0 }
	};
	struct ftk_tool t;
	struct ftk_infer_opts io = { NULL, NULL, 1, 0, NULL };
	struct ftk_gen_opts g;
	int raw = 0, c;
	ftk_gen_opts_default(&g);
	ftk_tool_init(&t, "ftk-generate", usage);
	t.stage = "eval";
	t.fail_on_reject = 1;	/* a prompt left unanswered is a data problem: exit 1 */
	optind = 1;
	while ((c = ftk_getopt_long(argc, argv, FTK_TOOL_SHORTOPTS, opts, NULL)) != -1) {
		if (ftk_tool_opt(&t, c, optarg))
			continue;
		switch (c) {
		case OPT_MODEL: io.model_dir = optarg; break;
		case OPT_ADAPTER: io.adapter_dir = optarg; break;
		case OPT_RAW: raw = 1; break;
		case OPT_QUANT:
			if (!strcmp(optarg, "nf4"))
				io.quant_nf4 = 1;
			else if (!strcmp(optarg, "none"))
				io.quant_nf4 = 0;
			else
				ftk_tool_usage_error(&t, "--quant must be nf4 or none, not '%s'", optarg);
			break;
		case OPT_MAX_TOKENS: g.max_tokens = (int)ftk_tool_parse_long(&t, "--max-tokens", optarg, 0, 10000000); break;
		case OPT_TEMPERATURE: g.temperature = (float)ftk_tool_parse_double(&t, "--temperature", optarg, 0, 100); break;
		case OPT_TOP_K: g.top_k = (int)ftk_tool_parse_long(&t, "--top-k", optarg, 0, 1000000000); break;
		case OPT_TOP_P: g.top_p = (float)ftk_tool_parse_double(&t, "--top-p", optarg, 1e-6, 1); break;
		case OPT_SEED: g.seed = (uint64_t)ftk_tool_parse_long(&t, "--seed", optarg, 0, LONG_MAX); break;
		case OPT_MAX_SEQ: io.max_seq = (int)ftk_tool_parse_long(&t, "--max-seq", optarg, 1, 10000000); break;
		case OPT_DEVICE:
			if (strcmp(optarg, "cpu") && strcmp(optarg, "cuda"))
				ftk_tool_usage_error(&t, "--device must be cpu or cuda, not '%s'", optarg);
			io.device = optarg;
			break;
		default: ftk_tool_usage_error(&t, NULL);
		}
	}
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
	ftk_tool_start(&t, argc - optind, argv + optind);
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
