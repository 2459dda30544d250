/*
 * cmd_merge.c: ftk-merge, fold a LoRA adapter into its base model.
 * summary: merge a LoRA adapter into its base model and write a model directory
 *
 * A thin program over ftk_merge (merge.h): parse the options, merge, say
 * what was merged on stderr.  The output directory is a Hugging Face model
 * directory that ftk-train, ftk-generate and transformers load.
 */
#include <getopt.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include "cli/parse-options.h"
#include "cli/tool.h"
#include "model/merge.h"

static const char usage[] =
	"usage: ftk-merge --model DIR --adapter DIR -o OUT_DIR [options]\n"
	"\n"
	"Fold a LoRA adapter into its base model: W' = W + scaling * B A, in float32,\n"
	"and write OUT_DIR with model.safetensors, config.json and the tokenizer files.\n"
	"\n"
	"Options:\n"
	"      --model DIR      the base model (Hugging Face directory)\n"
	"      --adapter DIR    the PEFT adapter (adapter_config.json, adapter_model.safetensors);\n"
	"                       without it the base is written as the trainer sees it\n"
	"  -o, --output DIR     the directory to write (created)\n"
	"      --quant Q        nf4 (default): merge into the NF4-dequantized base the adapter\n"
	"                       was trained on (QLoRA); none: into the original weights\n"
	"      --dtype T        f32 (default), bf16 or f16 for the written tensors\n"
	"  -q, --quiet          no summary line on stderr\n"
	"  -h, --help           show this help\n"
	"      --version        show the version\n"
	"Exit status: 0 success, 1 failure (unreadable or mismatched model or adapter),\n"
	"2 bad usage.\n";

enum { OPT_MODEL = 0x1100, OPT_ADAPTER, OPT_QUANT, OPT_DTYPE, OPT_VERSION };

static void usage_error(const char *msg, const char *arg)
{
	fprintf(stderr, "ftk-merge: ");
	fprintf(stderr, msg, arg);
	fprintf(stderr, "\nTry 'ftk-merge --help' for more information.\n");
	exit(2);
}

int cmd_merge(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, OPT_MODEL },
		{ "adapter", required_argument, NULL, OPT_ADAPTER },
		{ "output", required_argument, NULL, 'o' },
		{ "quant", required_argument, NULL, OPT_QUANT },
		{ "dtype", required_argument, NULL, OPT_DTYPE },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ 0 }
	};
	struct ftk_merge_opts o = { NULL, NULL, NULL, FTK_QUANT_NF4, FTK_F32 };
	int quiet = 0, c;
	ftk_progname = "ftk-merge";
	optind = 1;
	while ((c = ftk_getopt_long(argc, argv, "o:qh", opts, NULL)) != -1) {
		switch (c) {
		case OPT_MODEL: o.model_dir = optarg; break;
		case OPT_ADAPTER: o.adapter_dir = optarg; break;
		case 'o': o.out_dir = optarg; break;
		case 'q': quiet = 1; break;
		case 'h': fputs(usage, stdout); return 0;
		case OPT_VERSION: printf("ftk-merge %s\n", FTK_VERSION); return 0;
		case OPT_QUANT:
			if (!strcmp(optarg, "nf4"))
				o.quant = FTK_QUANT_NF4;
			else if (!strcmp(optarg, "none"))
				o.quant = FTK_QUANT_NONE;
			else
				usage_error("--quant must be nf4 or none, not '%s'", optarg);
			break;
		case OPT_DTYPE:
			if (!strcmp(optarg, "f32"))
				o.dtype = FTK_F32;
			else if (!strcmp(optarg, "bf16"))
				o.dtype = FTK_BF16;
			else if (!strcmp(optarg, "f16"))
				o.dtype = FTK_F16;
			else
				usage_error("--dtype must be f32, bf16 or f16, not '%s'", optarg);
			break;
		default:	/* getopt has said what was wrong */
			fputs("Try 'ftk-merge --help' for more information.\n", stderr);
			exit(2);
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	if (!o.model_dir)
		usage_error("%s", "--model DIR is required");
	if (!o.out_dir)
		usage_error("%s", "-o OUT_DIR is required");
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
