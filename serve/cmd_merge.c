/*
 * cmd_merge.c: ftk-merge, fold a LoRA adapter into its base model.
 * summary: merge a LoRA adapter into its base model and write a model directory
 *
 * A thin program over ftk_merge (merge.h): parse the options, merge, say
 * what was merged on stderr.  The output directory is a Hugging Face model
 * directory that ftk-train, ftk-generate and transformers load.
 */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include "cli/parse-options.h"
#include "cli/tool.h"
#include "model/merge.h"

static const char *const usage[] = {
	"ftk-merge --model DIR --adapter DIR -o OUT_DIR [options]", "",
	"Fold a LoRA adapter into its base model: W' = W + scaling * B A, in float32,",
	"and write OUT_DIR with model.safetensors, config.json and the tokenizer files.", NULL,
};

int cmd_merge(int argc, char **argv)
{
	struct ftk_merge_opts o = { NULL, NULL, NULL, FTK_QUANT_NF4, FTK_F32 };
	int quiet = 0, quant = FTK_QUANT_NF4, dtype = 0;
	static const enum ftk_dtype dtypes[] = { FTK_F32, FTK_BF16, FTK_F16 };
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Options"),
		FTK_OPT_STRING(0, "model", &o.model_dir, "DIR", "the base model (Hugging Face directory)"),
		FTK_OPT_STRING(0, "adapter", &o.adapter_dir, "DIR",
			       "the PEFT adapter (adapter_config.json, adapter_model.safetensors);\n"
			       "without it the base is written as the trainer sees it"),
		FTK_OPT_STRING('o', "output", &o.out_dir, "DIR", "the directory to write (created)"),
		FTK_OPT_CHOICE(0, "quant", &quant, "Q", FTK_QUANT_CHOICES,
			       "nf4 (default): merge into the NF4-dequantized base the adapter\n"
			       "was trained on (QLoRA); none: into the original weights"),
		FTK_OPT_CHOICE(0, "dtype", &dtype, "T", "f32|bf16|f16",
			       "f32 (default), bf16 or f16 for the written tensors"),
		FTK_OPT_FLAG('q', "quiet", &quiet, "no summary line on stderr"),
		FTK_OPT_HELP(),
		FTK_OPT_VERSION(),
		FTK_OPT_TEXT("Exit status: 0 success, 1 failure (unreadable or mismatched model or adapter),\n"
			     "2 bad usage.\n"),
		FTK_OPT_END(),
	};
	ftk_progname = "ftk-merge";
	argc = ftk_parse_options(argc, argv, "ftk-merge", opts, usage);
	o.quant = (enum ftk_quant)quant;
	o.dtype = dtypes[dtype];
	if (argc > 0)
		ftk_usage_error("unexpected argument '%s'", argv[0]);
	if (!o.model_dir)
		ftk_usage_error("--model DIR is required");
	if (!o.out_dir)
		ftk_usage_error("-o OUT_DIR is required");
	struct ftk_error e;
	ftk_error_clear(&e);
	int n = 0;
	if (ftk_merge(&o, &n, &e) < 0) {
		error_at(&e);
		return 1;
	}
	if (!quiet)
		fprintf(stderr, "ftk-merge: wrote '%s': %d adapted projections merged (base %s, %s)\n",
			o.out_dir, n, o.quant == FTK_QUANT_NF4 ? "nf4-dequantized" : "full precision",
			ftk_dtype_name(o.dtype));
	return 0;
}
