/*
 * cmd_train.c: ftk-train, QLoRA fine-tuning on token shards.
 * summary: fine-tune a model with LoRA/QLoRA on token shards (SFT or DPO)
 *
 * A small main over ftk_train_run() (train.h): it parses the options, saves
 * them as RUN/train_config.json (so that `--resume RUN` needs nothing else),
 * installs the signal handlers, prints progress when stderr is a terminal,
 * and appends one ledger entry for the compute this invocation used.
 *
 * SIGINT, SIGTERM and SIGHUP only set a flag: the loop finishes the step it
 * is in, writes a checkpoint, and the program exits 0 saying how to resume.
 * The handler is installed with SA_RESETHAND, so a second Ctrl-C kills the
 * process at once (the last checkpoint is still intact).
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/tool.h"
#include "eval/train_eval.h"
#include "lib/ledger.h"
#include "lib/strbuf.h"
#include "model/device.h"
#include "trainer/dist.h"
#include "trainer/plan.h"
#include "model/selftest.h"
#include "trainer/train.h"

static const char usage[] =
	"usage: ftk-train --model DIR --data SHARD_DIR --out RUN_DIR [options]\n"
	"       ftk-train --resume RUN_DIR\n"
	"\n"
	"Fine-tune a Hugging Face model directory with LoRA adapters (QLoRA: the base\n"
	"quantized to NF4) on token shards from ftk-tokenize.  The run directory gets\n"
	"train_config.json, metrics.jsonl, checkpoints/step-N/ with checkpoints/latest,\n"
	"and the final PEFT adapter in adapter/.\n"
	"\n"
	"Run:\n"
	"      --model DIR          the base model (config.json, model.safetensors, tokenizer.json)\n"
	"      --data DIR           training shards (their tokenizer must be the model's)\n"
	"      --val DIR            validation shards (default: none)\n"
	"      --out DIR            the run directory (must not hold a run yet)\n"
	"      --resume DIR         continue the run in DIR from its latest checkpoint, with\n"
	"                           its saved options; no other training option is allowed\n"
	"      --init-adapter DIR   start from this PEFT adapter (its rank, alpha, targets)\n"
	"      --objective OBJ      sft or dpo (default sft); dpo needs preference shards\n"
	"      --beta X             DPO beta (default 0.1)\n"
	"LoRA:\n"
	"      --quant Q            nf4 or none (default nf4)\n"
	"      --targets LIST       q,k,v,o,gate,up,down, attn, mlp or all (default all)\n"
	"      --rank N             LoRA rank r (default 8)\n"
	"      --alpha X            lora_alpha (default 16)\n"
	"      --rslora             scale by alpha/sqrt(r) instead of alpha/r\n"
	"      --dropout P          LoRA dropout (default 0)\n"
	"Optimizer:\n"
	"      --lr X               peak learning rate (default 2e-4)\n"
	"      --schedule S         constant, linear or cosine (default cosine)\n"
	"      --warmup N           linear warmup steps (default 0)\n"
	"      --min-lr-ratio X     floor of linear/cosine decay, fraction of --lr (default 0)\n"
	"      --beta1 X            AdamW beta1 (default 0.9)\n"
	"      --beta2 X            AdamW beta2 (default 0.999)\n"
	"      --eps X              AdamW eps (default 1e-8)\n"
	"      --weight-decay X     decoupled weight decay (default 0)\n"
	"      --max-grad-norm X    clip gradients to this global norm, 0 for none (default 1)\n"
	"Batches and length:\n"
	"      --batch N            rows per micro-batch; pairs for dpo (default 4)\n"
	"      --grad-accum N       micro-batches per optimizer step (default 1)\n"
	"      --seq-len N          tokens per row; sequences are packed (default 512)\n"
	"      --epochs N           passes over the data (default 1)\n"
	"      --max-steps N        stop after N optimizer steps instead (default 0: epochs)\n"
	"      --eval-every N       validation loss every N steps and at the end (default 0:\n"
	"                           at the end only)\n"
	"      --ckpt-every N       checkpoint every N steps (default 0: at the end and on a\n"
	"                           signal only)\n"
	"      --keep K             checkpoints kept, 0 for all (default 3)\n"
	"      --seed N             seed of LoRA init, data order and dropout (default 42)\n"
	"      --threads N          CPU threads, 0 for all cores (default 0); --resume may\n"
	"                           change it (bit-exact only with the same number and BLAS\n"
	"                           kernel: it says so)\n"
	"      --checkpoint-activations  recompute each layer in the backward pass to save\n"
	"                           memory\n"
	"      --precision P        fp32 or bf16 (default fp32): bf16 rounds the two operands\n"
	"                           of every matrix product to bfloat16 and accumulates in\n"
	"                           fp32; LoRA weights, gradients and AdamW stay fp32; with\n"
	"                           --selftest, check only that precision's lines\n"
	"      --attention A        auto, full or flash (default auto): flash keeps one\n"
	"                           log-sum-exp per query instead of the T x T softmax\n"
	"                           probabilities and recomputes them in the backward\n"
	"                           pass; auto uses flash when one layer's probabilities\n"
	"                           would exceed 64 MiB\n"
	"Devices and processes (docs/gpu.md):\n"
	"      --device D           cpu or cuda (default cpu); cuda loads libftkcuda.so\n"
	"      --dist T             auto, none, mpi or nccl (default auto: mpi under mpirun,\n"
	"                           nccl with --device cuda); see docs/gpu.md for launching\n"
	"      --plan               print the memory the run needs per process (from\n"
	"                           config.json and the options, nothing loaded) and exit:\n"
	"                           0 when it fits, 1 when it does not (saying what to change)\n"
	"      --gpus N             processes (GPUs) the plan is for (default: this job's)\n"
	"      --device-memory GIB  memory of one device for the plan and the check every\n"
	"                           run makes before loading (default: what is free now)\n"
	"      --selftest           run every backend op and one QLoRA step on --device\n"
	"                           (default cuda) and on the CPU and print the largest\n"
	"                           difference per op; exit 0 all within tolerance, 1 not,\n"
	"                           77 when there is no usable GPU (nothing was checked)\n"
	"Evals after every checkpoint:\n"
	"      --eval SUITE         run this eval suite on the base model once and on every\n"
	"                           checkpoint (RUN/evals/), compare each with the base, and\n"
	"                           put the metrics in metrics.jsonl; allowed with --resume\n"
	"      --eval-limit N       only the suite's first N cases\n"
	"Cost:\n"
	"      --usd-per-hour X     machine price for the ledger entry (default 0)\n"
	"Common options:\n"
	"      --ledger FILE        append a ledger entry for this run (default $FTK_LEDGER)\n"
	"      --run NAME           the run name for the ledger (default $FTK_RUN)\n"
	"  -q, --quiet              no summary line on stderr\n"
	"  -h, --help               show this help\n"
	"      --version            show the version\n"
	"\n"
	"SIGINT, SIGTERM and SIGHUP save a checkpoint at the next step boundary and exit 0.\n"
	"Exit status: 0 success (or stopped by a signal with a checkpoint saved), 1 data\n"
	"problems or failure, 2 bad usage.\n";

enum {
	OPT_MODEL = FTK_OPT_FIRST_FREE, OPT_DATA, OPT_VAL, OPT_OUT, OPT_RESUME, OPT_INIT,
	OPT_OBJECTIVE, OPT_BETA, OPT_QUANT, OPT_TARGETS, OPT_RANK, OPT_ALPHA, OPT_RSLORA,
	OPT_DROPOUT, OPT_LR, OPT_SCHEDULE, OPT_WARMUP, OPT_MIN_LR, OPT_BETA1, OPT_BETA2,
	OPT_EPS, OPT_WD, OPT_CLIP, OPT_BATCH, OPT_ACCUM, OPT_SEQ, OPT_EPOCHS, OPT_MAX_STEPS,
	OPT_EVAL_EVERY, OPT_CKPT_EVERY, OPT_KEEP, OPT_SEED, OPT_THREADS, OPT_CKPT_ACT,
	OPT_USD, OPT_DEVICE, OPT_DIST, OPT_PLAN, OPT_GPUS, OPT_DEVMEM, OPT_SELFTEST,
	OPT_EVAL_SUITE, OPT_EVAL_LIMIT, OPT_PRECISION, OPT_ATTENTION,
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

/* An absolute path, so that --resume works from any directory. */
static void set_path(struct ftk_tool *t, char *dst, const char *opt, const char *arg)
{
	char buf[PATH_MAX];
	if (!realpath(arg, buf))
		die("%s '%s': %s", opt, arg, strerror(errno));
	if (strlen(buf) >= FTK_TRAIN_PATH)
		ftk_tool_usage_error(t, "%s: path too long", opt);
	strcpy(dst, buf);
}

static void progress(void *ctx, const char *line)
{
	(void)ctx;
	fprintf(stderr, "\r\033[K%s", line);
}

static void note(void *ctx, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "ftk-train: note: %s\n", msg);
}

int cmd_train(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "ledger", required_argument, NULL, FTK_OPT_LEDGER },
		{ "run", required_argument, NULL, FTK_OPT_RUN },
		{ "version", no_argument, NULL, FTK_OPT_VERSION },
		{ "model", required_argument, NULL, OPT_MODEL },
		{ "data", required_argument, NULL, OPT_DATA },
		{ "val", required_argument, NULL, OPT_VAL },
		{ "out", required_argument, NULL, OPT_OUT },
		{ "resume", required_argument, NULL, OPT_RESUME },
		{ "init-adapter", required_argument, NULL, OPT_INIT },
		{ "objective", required_argument, NULL, OPT_OBJECTIVE },
		{ "beta", required_argument, NULL, OPT_BETA },
		{ "quant", required_argument, NULL, OPT_QUANT },
		{ "targets", required_argument, NULL, OPT_TARGETS },
		{ "rank", required_argument, NULL, OPT_RANK },
		{ "alpha", required_argument, NULL, OPT_ALPHA },
		{ "rslora", no_argument, NULL, OPT_RSLORA },
		{ "dropout", required_argument, NULL, OPT_DROPOUT },
		{ "lr", required_argument, NULL, OPT_LR },
		{ "schedule", required_argument, NULL, OPT_SCHEDULE },
		{ "warmup", required_argument, NULL, OPT_WARMUP },
		{ "min-lr-ratio", required_argument, NULL, OPT_MIN_LR },
		{ "beta1", required_argument, NULL, OPT_BETA1 },
		{ "beta2", required_argument, NULL, OPT_BETA2 },
		{ "eps", required_argument, NULL, OPT_EPS },
		{ "weight-decay", required_argument, NULL, OPT_WD },
		{ "max-grad-norm", required_argument, NULL, OPT_CLIP },
		{ "batch", required_argument, NULL, OPT_BATCH },
		{ "grad-accum", required_argument, NULL, OPT_ACCUM },
		{ "seq-len", required_argument, NULL, OPT_SEQ },
		{ "epochs", required_argument, NULL, OPT_EPOCHS },
		{ "max-steps", required_argument, NULL, OPT_MAX_STEPS },
		{ "eval-every", required_argument, NULL, OPT_EVAL_EVERY },
		{ "ckpt-every", required_argument, NULL, OPT_CKPT_EVERY },
		{ "keep", required_argument, NULL, OPT_KEEP },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "threads", required_argument, NULL, OPT_THREADS },
		{ "checkpoint-activations", no_argument, NULL, OPT_CKPT_ACT },
		{ "attention", required_argument, NULL, OPT_ATTENTION },
		{ "usd-per-hour", required_argument, NULL, OPT_USD },
		{ "device", required_argument, NULL, OPT_DEVICE },
		{ "dist", required_argument, NULL, OPT_DIST },
		{ "plan", no_argument, NULL, OPT_PLAN },
		{ "gpus", required_argument, NULL, OPT_GPUS },
		{ "device-memory", required_argument, NULL, OPT_DEVMEM },
		{ "selftest", no_argument, NULL, OPT_SELFTEST },
		{ "eval", required_argument, NULL, OPT_EVAL_SUITE },
		{ "eval-limit", required_argument, NULL, OPT_EVAL_LIMIT },
		{ "precision", required_argument, NULL, OPT_PRECISION },
		{ NULL, 0, NULL, 0 },
	};
	struct ftk_tool t;
	struct ftk_train_opts o;
	struct ftk_error err;
	const char *resume = NULL, *device = NULL, *dist_mode = "auto";
	int plan_only = 0, gpus = 0, selftest = 0, precision_given = 0;
	double devmem_gib = 0;
	double usd_per_hour = 0;
	int n_train_opts = 0, c, threads = -1;
	char eval_suite[FTK_TRAIN_PATH] = "";
	long eval_limit = 0;

	ftk_tool_init(&t, "ftk-train", usage);
	t.stage = "train";
	ftk_train_opts_default(&o);
	while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
		if (ftk_tool_opt(&t, c, optarg))
			continue;
		n_train_opts += c != OPT_RESUME && c != OPT_USD && c != OPT_DEVICE && c != OPT_DIST &&
				c != OPT_PLAN && c != OPT_GPUS && c != OPT_DEVMEM && c != OPT_SELFTEST &&
				c != OPT_EVAL_SUITE && c != OPT_EVAL_LIMIT && c != OPT_THREADS;
		switch (c) {
		case OPT_MODEL: set_path(&t, o.model, "--model", optarg); break;
		case OPT_EVAL_SUITE: set_path(&t, eval_suite, "--eval", optarg); break;
		case OPT_EVAL_LIMIT: eval_limit = ftk_tool_parse_long(&t, "--eval-limit", optarg, 1, LONG_MAX); break;
		case OPT_DATA: set_path(&t, o.data, "--data", optarg); break;
		case OPT_VAL: set_path(&t, o.val, "--val", optarg); break;
		case OPT_INIT: set_path(&t, o.init_adapter, "--init-adapter", optarg); break;
		case OPT_OUT:
			if (strlen(optarg) >= FTK_TRAIN_PATH)
				ftk_tool_usage_error(&t, "--out: path too long");
			strcpy(o.out, optarg);
			break;
		case OPT_RESUME: resume = optarg; break;
		case OPT_OBJECTIVE:
			if (!strcmp(optarg, "sft"))
				o.objective = FTK_OBJ_SFT;
			else if (!strcmp(optarg, "dpo"))
				o.objective = FTK_OBJ_DPO;
			else
				ftk_tool_usage_error(&t, "--objective must be sft or dpo, not '%s'", optarg);
			break;
		case OPT_BETA: o.beta = ftk_tool_parse_double(&t, "--beta", optarg, 1e-9, 1e6); break;
		case OPT_QUANT:
			if (!strcmp(optarg, "nf4"))
				o.quant = FTK_QUANT_NF4;
			else if (!strcmp(optarg, "none"))
				o.quant = FTK_QUANT_NONE;
			else
				ftk_tool_usage_error(&t, "--quant must be nf4 or none, not '%s'", optarg);
			break;
		case OPT_TARGETS:
			if (ftk_lora_parse_targets(optarg, &o.lora.targets, &err) < 0)
				ftk_tool_usage_error(&t, "--targets: %s", err.msg);
			break;
		case OPT_RANK: o.lora.rank = (int)ftk_tool_parse_long(&t, "--rank", optarg, 1, 65536); break;
		case OPT_ALPHA: o.lora.alpha = (float)ftk_tool_parse_double(&t, "--alpha", optarg, -1e9, 1e9); break;
		case OPT_RSLORA: o.lora.rslora = 1; break;
		case OPT_DROPOUT:
			o.lora.dropout = (float)ftk_tool_parse_double(&t, "--dropout", optarg, 0, 0.999);
			break;
		case OPT_LR: o.lr = ftk_tool_parse_double(&t, "--lr", optarg, 1e-12, 1e3); break;
		case OPT_SCHEDULE:
			if (ftk_sched_parse(optarg, &o.sched.kind, &err) < 0)
				ftk_tool_usage_error(&t, "--schedule: %s", err.msg);
			break;
		case OPT_WARMUP: o.sched.warmup = ftk_tool_parse_long(&t, "--warmup", optarg, 0, LONG_MAX); break;
		case OPT_MIN_LR: o.sched.min_ratio = ftk_tool_parse_double(&t, "--min-lr-ratio", optarg, 0, 1); break;
		case OPT_BETA1: o.adamw.beta1 = ftk_tool_parse_double(&t, "--beta1", optarg, 0, 0.999999999); break;
		case OPT_BETA2: o.adamw.beta2 = ftk_tool_parse_double(&t, "--beta2", optarg, 0, 0.999999999); break;
		case OPT_EPS: o.adamw.eps = ftk_tool_parse_double(&t, "--eps", optarg, 1e-30, 1); break;
		case OPT_WD: o.adamw.weight_decay = ftk_tool_parse_double(&t, "--weight-decay", optarg, 0, 1e3); break;
		case OPT_CLIP: o.max_grad_norm = ftk_tool_parse_double(&t, "--max-grad-norm", optarg, 0, 1e30); break;
		case OPT_BATCH: o.batch = (int)ftk_tool_parse_long(&t, "--batch", optarg, 1, 1 << 20); break;
		case OPT_ACCUM: o.grad_accum = (int)ftk_tool_parse_long(&t, "--grad-accum", optarg, 1, 1 << 20); break;
		case OPT_SEQ: o.seq_len = (int)ftk_tool_parse_long(&t, "--seq-len", optarg, 2, 1 << 24); break;
		case OPT_EPOCHS: o.epochs = (int)ftk_tool_parse_long(&t, "--epochs", optarg, 1, 1 << 20); break;
		case OPT_MAX_STEPS: o.max_steps = ftk_tool_parse_long(&t, "--max-steps", optarg, 0, LONG_MAX); break;
		case OPT_EVAL_EVERY: o.eval_every = ftk_tool_parse_long(&t, "--eval-every", optarg, 0, LONG_MAX); break;
		case OPT_CKPT_EVERY: o.ckpt_every = ftk_tool_parse_long(&t, "--ckpt-every", optarg, 0, LONG_MAX); break;
		case OPT_KEEP: o.keep = (int)ftk_tool_parse_long(&t, "--keep", optarg, 0, 1 << 20); break;
		case OPT_SEED:
			o.seed = (uint64_t)ftk_tool_parse_long(&t, "--seed", optarg, 0, (1L << 53) - 1);
			break;
		case OPT_THREADS:	/* how to compute, not what: --resume may change it */
			threads = (int)ftk_tool_parse_long(&t, "--threads", optarg, 0, 4096);
			o.threads = threads;
			break;
		case OPT_CKPT_ACT: o.checkpoint_activations = 1; break;
		case OPT_PRECISION:
			if (ftk_precision_parse(optarg) < 0)
				ftk_tool_usage_error(&t, "--precision must be fp32 or bf16, not '%s'", optarg);
			o.precision = ftk_precision_parse(optarg);
			precision_given = 1;
			break;
		case OPT_ATTENTION:
			if (ftk_attention_parse(optarg, &o.attention, &err) < 0)
				ftk_tool_usage_error(&t, "--attention must be auto, full or flash, not '%s'",
						     optarg);
			break;
		case OPT_USD: usd_per_hour = ftk_tool_parse_double(&t, "--usd-per-hour", optarg, 0, 1e9); break;
		case OPT_DEVICE:
			if (strcmp(optarg, "cpu") && strcmp(optarg, "cuda"))
				ftk_tool_usage_error(&t, "--device must be cpu or cuda, not '%s'", optarg);
			device = optarg;
			break;
		case OPT_DIST: dist_mode = optarg; break;
		case OPT_PLAN: plan_only = 1; break;
		case OPT_GPUS: gpus = (int)ftk_tool_parse_long(&t, "--gpus", optarg, 1, 65536); break;
		case OPT_DEVMEM: devmem_gib = ftk_tool_parse_double(&t, "--device-memory", optarg, 1e-6, 1e6); break;
		case OPT_SELFTEST: selftest = 1; break;
		default: ftk_tool_usage_error(&t, NULL);
		}
	}
	if (optind < argc)
		ftk_tool_usage_error(&t, "unexpected argument '%s'", argv[optind]);
	if (selftest)	/* issue 9: the first thing to run on a GPU machine */
		return ftk_selftest_run(device ? device : "cuda", o.model[0] ? o.model : NULL,
					precision_given ? o.precision : -1, stdout);
	if (!device)
		device = "cpu";
	/* the old CUDA-only switch, kept as an alias for a new run's --precision bf16 */
	const char *bf_env = getenv("FTK_CUDA_BF16");
	if (!precision_given && !resume && !strcmp(device, "cuda") && bf_env && !strcmp(bf_env, "1"))
		o.precision = FTK_PREC_BF16;

	if (resume) {
		if (n_train_opts)
			ftk_tool_usage_error(&t, "--resume continues with the options saved in "
						 "'%s/train_config.json'; give no other training option",
					     resume);
		struct strbuf sb = STRBUF_INIT, path = STRBUF_INIT;
		strbuf_addf(&path, "%s/train_config.json", resume);
		int rc = strbuf_read_file(&sb, path.buf);
		if (rc < 0)
			die("cannot read '%s': %s (is '%s' a run directory?)", path.buf, strerror(-rc),
			    resume);
		if (ftk_train_opts_parse(sb.buf, sb.len, path.buf, &o, &err) < 0) {
			char buf[1400];
			die("%s", ftk_error_format(&err, buf, sizeof(buf)));
		}
		strbuf_release(&sb);
		strbuf_release(&path);
		if (threads >= 0)
			o.threads = threads;
		if (strlen(resume) >= FTK_TRAIN_PATH)
			ftk_tool_usage_error(&t, "--resume: path too long");
		strcpy(o.out, resume);
	} else {
		if (!o.model[0] || (!plan_only && (!o.data[0] || !o.out[0])))
			ftk_tool_usage_error(&t, "--model, --data and --out are required (or --resume)");
		if (plan_only && !o.data[0])	/* the plan reads no data */
			strcpy(o.data, ".");
		if (plan_only && !o.out[0])
			strcpy(o.out, ".");
		if (ftk_train_opts_check(&o, &err) < 0)
			ftk_tool_usage_error(&t, "%s", err.msg);
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESETHAND;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	o.stop = &stop_flag;
	o.on_note = note;	/* even with -q: it says what a resumed run is */
	if (t.is_tty && !t.quiet)
		o.on_step = progress;

	/* the memory plan (issue 9): printed with --plan, checked before every run */
	struct ftk_plan plan;
	int plan_threads = o.threads > 0 ? o.threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (plan_only) {
		size_t avail = devmem_gib > 0 ? (size_t)(devmem_gib * 1073741824.0)
					      : ftk_device_free_bytes(device);
		if (ftk_plan_for_dir(&plan, &o, device, gpus ? gpus : 1, plan_threads, &err) < 0) {
			char buf[1400];
			die("%s", ftk_error_format(&err, buf, sizeof(buf)));
		}
		ftk_plan_print(&plan, &o, avail, stdout);
		if (ftk_plan_fits(&plan, &o, avail, &err) < 0) {
			error("%s", err.msg);
			return FTK_EXIT_DATA;
		}
		return FTK_EXIT_OK;
	}

	/* data parallelism and the device (issue 9): only rank 0 prints and logs */
	struct ftk_dist *dist = NULL;
	if (ftk_dist_start(&dist, dist_mode, device, &err) < 0 ||
	    ftk_device_backend(device, ftk_dist_local_rank(dist), &o.backend, &err) < 0) {
		char buf[1400];
		error("%s", ftk_error_format(&err, buf, sizeof(buf)));
		ftk_dist_end(dist);
		return err.code == FTK_EUSAGE ? FTK_EXIT_USAGE : FTK_EXIT_DATA;
	}
	int saved_world = o.world > 1 ? o.world : 1;	/* from train_config.json on --resume */
	ftk_dist_attach(dist, &o);
	if (resume && saved_world != (o.world > 1 ? o.world : 1)) {
		/* the same global batch on another process count: micro-batches per process change */
		long global = (long)o.grad_accum * saved_world, w = o.world > 1 ? o.world : 1;
		if (global % w) {
			error("'%s' was trained on %d processes with --grad-accum %d: resume it on a "
			      "process count that divides %ld",
			      resume, saved_world, o.grad_accum, global);
			if (o.world > 1)
				ftk_dist_abort(dist, FTK_EXIT_USAGE);
			ftk_dist_end(dist);
			return FTK_EXIT_USAGE;
		}
		o.grad_accum = (int)(global / w);
	}
	{
		size_t avail = devmem_gib > 0 ? (size_t)(devmem_gib * 1073741824.0)
					      : ftk_device_free_bytes(device);
		if (ftk_plan_for_dir(&plan, &o, device, o.world, plan_threads, &err) == 0 &&
		    ftk_plan_fits(&plan, &o, avail, &err) < 0) {
			error("%s (ftk-train --plan shows the whole plan)", err.msg);
			if (o.world > 1)
				ftk_dist_abort(dist, FTK_EXIT_DATA);
			ftk_dist_end(dist);
			return FTK_EXIT_DATA;
		}
	}
	if (o.rank != 0) {
		t.quiet = 1;
		o.on_step = NULL;
	}
	/* evals after every checkpoint (eval/train_eval.h), on rank 0 */
	struct ftk_train_eval te;
	memset(&te, 0, sizeof(te));
	if (eval_suite[0] && o.rank == 0) {
		te.suite = eval_suite;
		te.model_dir = o.model;
		te.run_dir = o.out;
		te.ledger = t.ledger_path;
		te.run_name = t.run;
		te.limit = eval_limit;
		te.quiet = t.quiet;
		o.on_checkpoint = ftk_train_eval_checkpoint;
		o.on_checkpoint_ctx = &te;
	}

	struct ftk_train_result res;
	int rc = ftk_train_run(&o, resume != NULL, &res, &err);
	if (o.on_step)
		fputc('\n', stderr);
	int exit_code = FTK_EXIT_OK;
	if (rc == 0 && !t.quiet && (res.truncated || res.skipped))
		warning("%llu training sequences were cut to --seq-len %d and %llu were skipped "
			"(nothing to learn within it)",
			(unsigned long long)res.truncated, o.seq_len,
			(unsigned long long)res.skipped);
	if (rc < 0) {
		char buf[1400];
		error("%s", ftk_error_format(&err, buf, sizeof(buf)));
		exit_code = rc == FTK_EUSAGE ? FTK_EXIT_USAGE : FTK_EXIT_DATA;
		if (o.world > 1)	/* the other ranks would wait for this one for ever */
			ftk_dist_abort(dist, exit_code);
	} else if (res.interrupted) {
		if (o.rank == 0)	/* every rank stopped at this step; one says so */
			fprintf(stderr,
				"ftk-train: stopped at step %ld of %ld; checkpoint saved; continue "
				"with: ftk-train --resume %s\n",
				res.steps, res.total_steps, o.out);
	} else if (!t.quiet) {
		fprintf(stderr, "ftk-train: %ld steps (%s step %ld), loss %.4f", res.steps,
			res.resumed ? "resumed at" : "from", res.start_step, res.last_loss);
		if (!isnan(res.last_val_loss))
			fprintf(stderr, ", val loss %.4f -> %.4f", res.first_val_loss,
				res.last_val_loss);
		fprintf(stderr, "; adapter in %s/adapter\n", o.out);
	}

	const char *lp = o.rank == 0 ? ftk_ledger_path(t.ledger_path) : NULL;
	if (lp) {
		double hours = res.seconds / 3600.0;
		cJSON *e = ftk_ledger_entry_new(t.run, "train", "compute");
		cJSON_AddStringToObject(e, "tool", "ftk-train");
		cJSON_AddNumberToObject(e, "hours", hours);
		cJSON_AddStringToObject(e, "device", res.device);
		cJSON_AddNumberToObject(e, "threads", res.threads);
		cJSON_AddNumberToObject(e, "rate_usd_per_hour", usd_per_hour);
		cJSON_AddNumberToObject(e, "usd", hours * usd_per_hour);
		cJSON_AddNumberToObject(e, "tokens", (double)res.tokens);
		cJSON_AddNumberToObject(e, "steps", (double)(res.steps - res.start_step));
		cJSON_AddStringToObject(e, "out", o.out);
		cJSON_AddStringToObject(e, "status", rc < 0 ? "failed"
						    : res.interrupted ? "interrupted" : "finished");
		if (ftk_ledger_append_entry(lp, e, &err) < 0) {
			error("%s", err.msg);
			exit_code = FTK_EXIT_DATA;
		}
		cJSON_Delete(e);
	}
	ftk_dist_end(dist);
	return exit_code;
}
