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
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sys/stat.h>

#include "cli/parse-options.h"
#include "cli/tool.h"
#include "eval/train_eval.h"
#include "lib/json.h"
#include "lib/ledger.h"
#include "lib/stream.h"
#include "lib/strbuf.h"
#include "lib/yamljson.h"
#include "model/device.h"
#include "trainer/data.h"
#include "trainer/dist.h"
#include "trainer/plan.h"
#include "model/selftest.h"
#include "trainer/train.h"

static const char *const usage[] = {
	"ftk-train --model DIR --data SHARD_DIR --out RUN_DIR [options]",
	"ftk-train --resume RUN_DIR",
	"",
	"Fine-tune a Hugging Face model directory with LoRA adapters (QLoRA: the base",
	"quantized to NF4) on token shards from ftk-tokenize.  The run directory gets",
	"train_config.json (and the same as train_config.yaml), metrics.jsonl,",
	"checkpoints/step-N/ with checkpoints/latest,",
	"and the final PEFT adapter in adapter/.", NULL,
};

/* The options --resume allows: the rest are training options, saved with the run. */
static const char *const not_training[] = {
	"resume", "strict", "usd-per-hour", "device", "dist", "plan", "gpus", "device-memory",
	"selftest", "eval", "eval-limit", "threads", "stop-on-regression", "keep-best", "config",
	"dry-run", "ledger", "run", "quiet", "help", "version", NULL,
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

/* An absolute path, so that --resume works from any directory. */
static void set_path(char *dst, const char *opt, const char *arg)
{
	char buf[PATH_MAX];
	if (!realpath(arg, buf))
		die("%s '%s': %s", opt, arg, strerror(errno));
	if (strlen(buf) >= FTK_TRAIN_PATH)
		ftk_usage_error("%s: path too long", opt);
	strcpy(dst, buf);
}

/* --model, --data, --val, --init-adapter, --eval: an absolute path into a FTK_TRAIN_PATH buffer */
static void path_cb(const struct ftk_option *opt, const char *arg)
{
	char name[64];
	snprintf(name, sizeof(name), "--%s", opt->long_name);
	set_path(opt->value, name, arg);
}

static void out_cb(const struct ftk_option *opt, const char *arg)
{
	if (strlen(arg) >= FTK_TRAIN_PATH)
		ftk_usage_error("--out: path too long");
	strcpy(opt->value, arg);
}

static void targets_cb(const struct ftk_option *opt, const char *arg)
{
	struct ftk_error err;
	if (ftk_lora_parse_targets(arg, opt->value, &err) < 0)
		ftk_usage_error("--targets: %s", err.msg);
}

/* ftk-train --eval: each checkpoint's eval, one line. */
static void eval_report(void *ctx, const char *line)
{
	(void)ctx;
	fprintf(stderr, "\nftk-train: %s\n", line);
}

/*
 * On a terminal, one line a person can read, rewritten in place: step N of
 * M, epoch, loss, learning rate, tokens/s, ETA and the last eval score (like
 * the prep tools' progress line).  metrics.jsonl keeps the JSON lines for
 * pipes and files.
 */
struct progress_state {
	char eval[96];		/* "toolcall.correct 0.45" from the last eval line */
	double val_loss;
};

static void fmt_secs(char *buf, size_t n, double s)
{
	if (!(s >= 0) || s > 1e7)
		snprintf(buf, n, "?");
	else if (s >= 3600)
		snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
	else if (s >= 60)
		snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
	else
		snprintf(buf, n, "%.0fs", s);
}

static void progress(void *ctx, const char *line)
{
	struct progress_state *ps = ctx;
	cJSON *o = cJSON_Parse(line);
	if (!o)
		return;
	const cJSON *ev = cJSON_GetObjectItemCaseSensitive(o, "eval");
	const cJSON *vl = cJSON_GetObjectItemCaseSensitive(o, "val_loss");
	if (cJSON_IsNumber(vl))
		ps->val_loss = vl->valuedouble;
	if (cJSON_IsObject(ev)) {
		const cJSON *ms = cJSON_GetObjectItemCaseSensitive(ev, "metrics");
		const cJSON *m = ms ? ms->child : NULL;
		const cJSON *mean = m ? cJSON_GetObjectItemCaseSensitive(m, "mean") : NULL;
		if (m && cJSON_IsNumber(mean))
			snprintf(ps->eval, sizeof(ps->eval), "%.60s %.3f", m->string, mean->valuedouble);
	}
	const cJSON *loss = cJSON_GetObjectItemCaseSensitive(o, "loss");
	if (cJSON_IsNumber(loss)) {
		double step = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "step"));
		double of = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "of"));
		double epoch = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "epoch"));
		double lr = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "lr"));
		double tps = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "tokens_per_s"));
		double el = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "elapsed"));
		char eta[32], tail[160] = "";
		fmt_secs(eta, sizeof(eta), step > 0 ? (of - step) * el / step : -1);
		if (!isnan(ps->val_loss))
			snprintf(tail, sizeof(tail), ", val %.4f", ps->val_loss);
		if (ps->eval[0])
			snprintf(tail + strlen(tail), sizeof(tail) - strlen(tail), ", eval %s", ps->eval);
		fprintf(stderr, "\r\033[Kftk-train: step %.0f/%.0f (%.0f%%), epoch %.2f, loss %.4f, "
				"lr %.2e, %.0f tok/s, ETA %s%s",
			step, of, of > 0 ? 100 * step / of : 0, epoch, loss->valuedouble, lr, tps, eta,
			tail);
	}
	cJSON_Delete(o);
}

/*
 * --config FILE: the file's keys become options placed before the command
 * line's, so the command line wins (the parser keeps the last value).  A key is
 * a long name of the option table, with _ for - allowed (seq_len: 512, as axolotl and
 * LLaMA-Factory write them); true gives a flag, false leaves it out; a list
 * is joined with commas (targets: [q, v]).  An unknown key is an error that
 * names the file and the key.  The new argv is allocated and kept in
 * config_argv: it lives as long as the program.
 */
static char **volatile config_argv;	/* volatile: the store is kept, so LSan sees it */

static char **expand_config(struct ftk_tool *t, const struct ftk_option *opts, int *argc, char **argv)
{
	const char *file = NULL;
	for (int i = 1; i < *argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], "--config") && i + 1 < *argc)
			file = argv[i + 1];
		else if (!strncmp(argv[i], "--config=", 9))
			file = argv[i] + 9;
	}
	if (!file)
		return argv;
	char *data;
	size_t len;
	struct ftk_error err;
	cJSON *root = NULL;
	if (ftk_read_all(file, &data, &len, &err) < 0)
		die("--config: %s", err.msg);
	if (ftk_yaml_parse(data, len, file, &root, &err) < 0) {
		free(data);
		ftk_tool_usage_error(t, "--config: %s", FTK_ERROR_TEXT(&err));
	}
	free(data);
	if (!cJSON_IsObject(root))
		ftk_tool_usage_error(t, "--config: '%s' must be a mapping of option: value", file);
	char **av = xcalloc((size_t)*argc + 2 * (size_t)cJSON_GetArraySize(root) + 1, sizeof(*av));
	int n = 0;
	av[n++] = argv[0];
	const cJSON *m;
	cJSON_ArrayForEach(m, root) {
		char name[128];
		snprintf(name, sizeof(name), "%s", m->string);
		for (char *q = name; *q; q++)
			if (*q == '_')
				*q = '-';
		const struct ftk_option *op = NULL;
		for (const struct ftk_option *x = opts; x->kind != FTK_OPTION_END; x++)
			if (x->long_name && x->kind != FTK_OPTION_SUBCOMMAND && !strcmp(x->long_name, name))
				op = x;
		if (!op || !strcmp(name, "config") || !strcmp(name, "help") || !strcmp(name, "version"))
			ftk_tool_usage_error(t, "--config: %s: '%s' is not an ftk train option "
						"(see ftk train --help)", file, m->string);
		struct strbuf arg = STRBUF_INIT;
		if (!ftk_option_takes_arg(op)) {
			if (!cJSON_IsBool(m))
				ftk_tool_usage_error(t, "--config: %s: '%s' is a flag: true or false",
						     file, m->string);
			if (cJSON_IsFalse(m))
				continue;
		} else if (cJSON_IsString(m)) {
			strbuf_addstr(&arg, m->valuestring);
		} else if (cJSON_IsNumber(m)) {
			strbuf_addf(&arg, "%.17g", m->valuedouble);
		} else if (cJSON_IsArray(m)) {
			const cJSON *x;
			cJSON_ArrayForEach(x, m) {
				if (arg.len)
					strbuf_addch(&arg, ',');
				if (cJSON_IsString(x))
					strbuf_addstr(&arg, x->valuestring);
				else if (cJSON_IsNumber(x))
					strbuf_addf(&arg, "%.17g", x->valuedouble);
			}
		} else {
			ftk_tool_usage_error(t, "--config: %s: '%s' needs a value, not %s", file,
					     m->string, ftk_json_type_name(m));
		}
		if (ftk_option_takes_arg(op)) {	/* refused here, the message names the file */
			struct strbuf where = STRBUF_INIT;
			strbuf_addf(&where, "--config %s: %s", file, m->string);
			ftk_option_check(op, where.buf, arg.buf);
			strbuf_release(&where);
		}
		char *opt = xmalloc(strlen(name) + 3);
		sprintf(opt, "--%s", name);
		av[n++] = opt;
		if (ftk_option_takes_arg(op))
			av[n++] = strbuf_detach(&arg, NULL);
		else
			strbuf_release(&arg);
	}
	cJSON_Delete(root);
	for (int i = 1; i < *argc; i++)
		av[n++] = argv[i];
	av[n] = NULL;
	*argc = n;
	config_argv = av;
	return av;
}

/*
 * ftk-ledger estimate for this run (it lives in another program): beside
 * this executable first, then on PATH.  Returns its exit status, or -1 when
 * it could not be run.
 */
static int run_estimate(const struct ftk_train_opts *o, const char *device, double epochs)
{
	char self[PATH_MAX], prog[PATH_MAX + 16];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	snprintf(prog, sizeof(prog), "ftk-ledger");
	if (n > 0) {
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			snprintf(prog, sizeof(prog), "%s/ftk-ledger", self);
			if (access(prog, X_OK) != 0)
				snprintf(prog, sizeof(prog), "ftk-ledger");
		}
	}
	char seq[32], rank[32], ep[64], targets[128] = "";
	for (int k = 0; k < FTK_LORA_N_TARGETS; k++)
		if (o->lora.targets & (1u << k))
			snprintf(targets + strlen(targets), sizeof(targets) - strlen(targets), "%s%s",
				 targets[0] ? "," : "", ftk_lora_target_name((enum ftk_lora_target)k));
	if (o->lora.targets == FTK_LORA_ALL)
		snprintf(targets, sizeof(targets), "all-linear");
	snprintf(seq, sizeof(seq), "%d", o->seq_len);
	snprintf(rank, sizeof(rank), "%d", o->lora.rank);
	snprintf(ep, sizeof(ep), "%.6g", epochs);
	char *av[] = { prog, "estimate", "--model", (char *)o->model, "--token-stats", (char *)o->data,
		       "--seq-len", seq, "--rank", rank, "--epochs", ep, "--device", (char *)device,
		       "--targets", targets, NULL };
	fflush(stdout);
	pid_t pid;
	if (posix_spawnp(&pid, prog, NULL, NULL, av, environ) != 0)
		return -1;
	int st;
	if (waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/*
 * --dry-run: what the run would do, without doing it: the memory plan, the
 * data as training will see it, and the cost.  Returns the exit code.
 */
static int dry_run(struct ftk_train_opts *o, const char *device, int threads, size_t avail)
{
	struct ftk_error err;
	struct ftk_plan plan;
	printf("plan:\n");
	if (ftk_plan_for_dir(&plan, o, device, 1, threads, &err) < 0) {
		error_at(&err);
		return FTK_EXIT_DATA;
	}
	ftk_plan_print(&plan, o, avail, stdout);
	int fits = ftk_plan_fits(&plan, o, avail, &err) == 0;
	if (!fits)
		printf("  does not fit: %s\n", err.msg);
	struct strbuf tj = STRBUF_INIT;
	strbuf_addf(&tj, "%s/tokenizer.json", o->model);
	int kind = o->objective == FTK_OBJ_DPO ? FTK_SHARD_PREFERENCE : FTK_SHARD_SFT;
	const char *dirs[2] = { o->data, o->val[0] ? o->val : NULL };
	double epochs = o->epochs;
	for (int k = 0; k < 2 && dirs[k]; k++) {
		struct ftk_data_opts dop = { dirs[k], tj.buf, 0, kind, o->seq_len, o->batch, o->seed,
					     k == 0 };
		struct ftk_data *d;
		if (ftk_data_open(&d, &dop, &err) < 0) {
			error_at(&err);
			strbuf_release(&tj);
			return FTK_EXIT_DATA;
		}
		const struct ftk_shard_info *in = ftk_data_info(d);
		uint64_t rows = ftk_data_rows_per_epoch(d);
		printf("%s data: %s\n", k ? "validation" : "training", dirs[k]);
		printf("  sequences      %llu (%llu tokens, %llu to learn)\n",
		       (unsigned long long)in->sequences, (unsigned long long)in->tokens,
		       (unsigned long long)in->masked_tokens);
		printf("  cut at --seq-len %d: %llu sequences; skipped (nothing to learn within it): %llu\n",
		       o->seq_len, (unsigned long long)ftk_data_truncated(d),
		       (unsigned long long)ftk_data_skipped(d));
		if (k == 0) {
			long per_step = (long)o->batch * o->grad_accum;
			long steps_epoch = (long)((rows + (uint64_t)per_step - 1) / (uint64_t)per_step);
			long steps = o->max_steps > 0 ? o->max_steps : steps_epoch * o->epochs;
			if (o->max_steps > 0 && steps_epoch > 0)
				epochs = (double)o->max_steps / (double)steps_epoch;
			printf("  rows of %d     %llu per epoch; %ld per step (--batch %d x --grad-accum %d)\n",
			       o->seq_len, (unsigned long long)rows, per_step, o->batch, o->grad_accum);
			printf("  steps          %ld (%s)\n", steps,
			       o->max_steps > 0 ? "--max-steps" : "--epochs x steps per epoch");
		}
		ftk_data_free(d);
	}
	strbuf_release(&tj);
	printf("cost:\n");
	int rc = strcmp(device, "cpu") ? -2 : run_estimate(o, device, epochs);
	if (rc == -2)
		printf("  ftk ledger estimate --device NAME (your GPU's rates row) --model %s "
		       "--token-stats %s --seq-len %d --rank %d --epochs %.6g\n",
		       o->model, o->data, o->seq_len, o->lora.rank, epochs);
	else if (rc < 0)
		warning("cannot run ftk-ledger for the cost estimate");
	return fits && rc <= 0 ? FTK_EXIT_OK : FTK_EXIT_DATA;
}

/* On CUDA, the flash kernels' local memory as this GPU reports it (else the plan's estimate). */
static void plan_local(struct ftk_plan *plan, const char *device)
{
	size_t lb;
	if (device && !strcmp(device, "cuda") && ftk_device_local_reserve(&lb) == 0)
		ftk_plan_set_local(plan, lb);
}

static void note(void *ctx, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "ftk-train: note: %s\n", msg);
}

/* --stop-on-regression ended the run: the checkpoints are kept */
#define FTK_EXIT_REGRESSION 3

static int copy_file(const char *from, const char *to)
{
	char *data;
	size_t len;
	struct ftk_error e;
	if (ftk_read_all(from, &data, &len, &e) < 0)
		return error("cannot read '%s': %s", from, e.msg);
	char tmp[4400];
	snprintf(tmp, sizeof(tmp), "%s.tmp", to);
	FILE *f = fopen(tmp, "wb");
	int ok = f && fwrite(data, 1, len, f) == len;
	if (f && fclose(f) != 0)
		ok = 0;
	free(data);
	if (!ok || rename(tmp, to) < 0) {
		unlink(tmp);
		return error("cannot write '%s': %s", to, strerror(errno));
	}
	return 0;
}

/*
 * --keep-best: RUN/adapter becomes the best checkpoint's adapter, and
 * RUN/best.json says which ({"metric","step","value","checkpoint"}).
 */
static int keep_best_adapter(const struct ftk_train_eval *te, const char *metric, const char *out)
{
	if (!te->best_step) {
		warning("--keep-best %s: no checkpoint had it; %s/adapter is left as it is", metric, out);
		return 0;
	}
	char dir[FTK_TRAIN_PATH + 16], from[4400], to[4300];
	snprintf(dir, sizeof(dir), "%s/adapter", out);
	if (mkdir(dir, 0777) < 0 && errno != EEXIST)
		return error("cannot create '%s': %s", dir, strerror(errno));
	static const char *const files[] = { "adapter_config.json", "adapter_model.safetensors" };
	for (size_t i = 0; i < FTK_ARRAY_SIZE(files); i++) {
		snprintf(from, sizeof(from), "%s/%s", te->best_dir, files[i]);
		snprintf(to, sizeof(to), "%s/%s", dir, files[i]);
		if (copy_file(from, to) < 0)
			return -1;
	}
	cJSON *b = cJSON_CreateObject();
	cJSON_AddStringToObject(b, "metric", metric);
	cJSON_AddNumberToObject(b, "step", (double)te->best_step);
	cJSON_AddNumberToObject(b, "value", te->best_value);
	char rel[64];
	snprintf(rel, sizeof(rel), "checkpoints/step-%ld", te->best_step);
	cJSON_AddStringToObject(b, "checkpoint", rel);
	char *txt = cJSON_PrintUnformatted(b);
	cJSON_Delete(b);
	snprintf(to, sizeof(to), "%s/best.json", out);
	FILE *f = fopen(to, "w");
	int ok = f && fprintf(f, "%s\n", txt) > 0;
	if (f && fclose(f) != 0)
		ok = 0;
	cJSON_free(txt);
	if (!ok)
		return error("cannot write '%s': %s", to, strerror(errno));
	fprintf(stderr, "ftk-train: %s/adapter is step %ld's, the best by %s (%.3f)\n", out,
		te->best_step, metric, te->best_value);
	if (te->base_value_known && te->best_value < te->base_value)
		warning("every checkpoint scored below the base on %s (%.3f < %.3f)", metric,
			te->best_value, te->base_value);
	return 0;
}

int cmd_train(int argc, char **argv)
{
	struct ftk_tool t;
	struct ftk_train_opts o;
	struct ftk_error err;
	const char *resume = NULL, *device = NULL, *config = NULL;
	int plan_only = 0, gpus = 0, selftest = 0, precision_given = 0;
	uint64_t devmem = 0;	/* --device-memory, bytes; 0: what is free now */
	double usd_per_hour = 0;
	int n_train_opts = 0, threads = -1;
	char eval_suite[FTK_TRAIN_PATH] = "";
	long eval_limit = 0;
	int stop_on_regression = 0;
	const char *keep_best = NULL;
	static const char *const devices[] = { "cpu", "cuda" };

	ftk_tool_init(&t, "ftk-train", NULL);
	t.stage = "train";
	ftk_train_opts_default(&o);
	int dry = 0, strict = 0;
	/* rows whose targets are not of o's types: copied into o after the parse */
	int objective = (int)o.objective, quant = (int)o.quant, precision = -1, attention = (int)o.attention;
	int sched = (int)o.sched.kind;
	int dev = -1, dist_mode = FTK_DIST_MODE_AUTO;
	double alpha = o.lora.alpha, dropout = o.lora.dropout;
	long seed = (long)o.seed;
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Run"),
		FTK_OPT_CALLBACK(0, "model", o.model, "DIR", path_cb,
				 "the base model (config.json, model.safetensors, tokenizer.json)"),
		FTK_OPT_CALLBACK(0, "data", o.data, "DIR", path_cb,
				 "training shards (their tokenizer must be the model's)"),
		FTK_OPT_CALLBACK(0, "val", o.val, "DIR", path_cb, "validation shards (default: none)"),
		FTK_OPT_CALLBACK(0, "out", o.out, "DIR", out_cb, "the run directory (must not hold a run yet)"),
		FTK_OPT_STRING(0, "resume", &resume, "DIR",
			       "continue the run in DIR from its latest checkpoint, with\n"
			       "its saved options; no other training option is allowed.\n"
			       "A checkpoint whose files fail their checksums is said\n"
			       "and skipped for the newest intact one"),
		FTK_OPT_FLAG(0, "strict", &strict,
			     "with --resume: refuse (exit 1) when the latest checkpoint\n"
			     "is damaged, rather than resume from an older one"),
		FTK_OPT_CALLBACK(0, "init-adapter", o.init_adapter, "DIR", path_cb,
				 "start from this PEFT adapter (its rank, alpha, targets)"),
		FTK_OPT_CHOICE(0, "objective", &objective, "OBJ", "sft|dpo",
			       "sft or dpo (default sft); dpo needs preference shards"),
		FTK_OPT_DOUBLE(0, "beta", &o.beta, "X", 1e-9, 1e6, "DPO beta (default 0.1)"),
		FTK_OPT_GROUP("LoRA"),
		FTK_OPT_CHOICE(0, "quant", &quant, "Q", FTK_QUANT_CHOICES, "nf4 or none (default nf4)"),
		FTK_OPT_CALLBACK(0, "targets", &o.lora.targets, "LIST", targets_cb,
				 "q,k,v,o,gate,up,down, attn, mlp or all (default all)"),
		FTK_OPT_INT(0, "rank", &o.lora.rank, "N", 1, 65536, "LoRA rank r (default 8)"),
		FTK_OPT_DOUBLE(0, "alpha", &alpha, "X", -1e9, 1e9, "lora_alpha (default 16)"),
		FTK_OPT_FLAG(0, "rslora", &o.lora.rslora, "scale by alpha/sqrt(r) instead of alpha/r"),
		FTK_OPT_DOUBLE(0, "dropout", &dropout, "P", 0, 0.999, "LoRA dropout (default 0)"),
		FTK_OPT_GROUP("Optimizer"),
		FTK_OPT_DOUBLE(0, "lr", &o.lr, "X", 1e-12, 1e3, "peak learning rate (default 2e-4)"),
		FTK_OPT_CHOICE(0, "schedule", &sched, "S", FTK_SCHED_KINDS,
			       "constant, linear or cosine (default cosine)"),
		FTK_OPT_LONG(0, "warmup", &o.sched.warmup, "N", 0, LONG_MAX, "linear warmup steps (default 0)"),
		FTK_OPT_DOUBLE(0, "min-lr-ratio", &o.sched.min_ratio, "X", 0, 1,
			       "floor of linear/cosine decay, fraction of --lr (default 0)"),
		FTK_OPT_DOUBLE(0, "beta1", &o.adamw.beta1, "X", 0, 0.999999999, "AdamW beta1 (default 0.9)"),
		FTK_OPT_DOUBLE(0, "beta2", &o.adamw.beta2, "X", 0, 0.999999999, "AdamW beta2 (default 0.999)"),
		FTK_OPT_DOUBLE(0, "eps", &o.adamw.eps, "X", 1e-30, 1, "AdamW eps (default 1e-8)"),
		FTK_OPT_DOUBLE(0, "weight-decay", &o.adamw.weight_decay, "X", 0, 1e3,
			       "decoupled weight decay (default 0)"),
		FTK_OPT_DOUBLE(0, "max-grad-norm", &o.max_grad_norm, "X", 0, 1e30,
			       "clip gradients to this global norm, 0 for none (default 1)"),
		FTK_OPT_GROUP("Batches and length"),
		FTK_OPT_INT(0, "batch", &o.batch, "N", 1, 1 << 20, "rows per micro-batch; pairs for dpo (default 4)"),
		FTK_OPT_INT(0, "grad-accum", &o.grad_accum, "N", 1, 1 << 20,
			    "micro-batches per optimizer step (default 1)"),
		FTK_OPT_INT(0, "seq-len", &o.seq_len, "N", 2, 1 << 24,
			    "tokens per row; sequences are packed (default 512)"),
		FTK_OPT_INT(0, "epochs", &o.epochs, "N", 1, 1 << 20, "passes over the data (default 1)"),
		FTK_OPT_LONG(0, "max-steps", &o.max_steps, "N", 0, LONG_MAX,
			     "stop after N optimizer steps instead (default 0: epochs)"),
		FTK_OPT_LONG(0, "eval-every", &o.eval_every, "N", 0, LONG_MAX,
			     "validation loss every N steps and at the end (default 0:\n"
			     "at the end only)"),
		FTK_OPT_LONG(0, "ckpt-every", &o.ckpt_every, "N", 0, LONG_MAX,
			     "checkpoint every N steps (default 0: at the end and on a\n"
			     "signal only)"),
		FTK_OPT_INT(0, "keep", &o.keep, "K", 0, 1 << 20, "checkpoints kept, 0 for all (default 3)"),
		FTK_OPT_LONG(0, "seed", &seed, "N", 0, (1L << 53) - 1,
			     "seed of LoRA init, data order and dropout (default 42)"),
		FTK_OPT_INT(0, "threads", &threads, "N", 0, 4096,
			    "CPU threads, 0 for all cores (default 0); --resume may\n"
			    "change it (bit-exact only with the same number and BLAS\n"
			    "kernel: it says so)"),
		FTK_OPT_FLAG(0, "checkpoint-activations", &o.checkpoint_activations,
			     "recompute each layer in the backward pass to save\n"
			     "memory"),
		FTK_OPT_CHOICE(0, "precision", &precision, "P", "fp32|bf16|tf32",
			       "fp32, bf16 or tf32 (default fp32): bf16 rounds the two\n"
			       "operands of every matrix product to bfloat16 and\n"
			       "accumulates in fp32; tf32 (CUDA only) lets cuBLAS use\n"
			       "TF32 tensor cores for fp32 products; LoRA weights,\n"
			       "gradients and AdamW stay fp32; with --selftest, check\n"
			       "only that precision's lines"),
		FTK_OPT_CHOICE(0, "attention", &attention, "A", "auto|full|flash",
			       "auto, full or flash (default auto): flash keeps one\n"
			       "log-sum-exp per query instead of the T x T softmax\n"
			       "probabilities and recomputes them in the backward\n"
			       "pass; auto uses flash when one layer's probabilities\n"
			       "would exceed 64 MiB"),
		FTK_OPT_GROUP("Devices and processes (docs/gpu.md)"),
		FTK_OPT_CHOICE(0, "device", &dev, "D", "cpu|cuda",
			       "cpu or cuda (default cpu); cuda loads libftkcuda.so"),
		FTK_OPT_CHOICE(0, "dist", &dist_mode, "T", FTK_DIST_MODES,
			       "auto, none, mpi or nccl (default auto: mpi under mpirun,\n"
			       "nccl with --device cuda); see docs/gpu.md for launching"),
		FTK_OPT_FLAG(0, "plan", &plan_only,
			     "print the memory the run needs per process (from\n"
			     "config.json and the options, nothing loaded) and exit:\n"
			     "0 when it fits, 1 when it does not (saying what to change)"),
		FTK_OPT_INT(0, "gpus", &gpus, "N", 1, 65536,
			    "processes (GPUs) the plan is for (default: this job's)"),
		FTK_OPT_SIZE(0, "device-memory", &devmem, "SIZE", (uint64_t)1 << 20, UINT64_MAX,
			     "memory of one device (80G) for the plan and the check\n"
			     "every run makes before loading (default: what is free now)"),
		FTK_OPT_FLAG(0, "selftest", &selftest,
			     "run every backend op and one QLoRA step on --device\n"
			     "(default cuda) and on the CPU and print the largest\n"
			     "difference per op; exit 0 all within tolerance, 1 not,\n"
			     "77 when there is no usable GPU (nothing was checked)"),
		FTK_OPT_GROUP("Config and rehearsal"),
		FTK_OPT_STRING(0, "config", &config, "FILE",
			       "read options from a YAML (or JSON) file: every option\n"
			       "above is a key (seq_len or seq-len), a flag is true or\n"
			       "false, a list is a comma list; the command line wins"),
		FTK_OPT_FLAG(0, "dry-run", &dry,
			     "print the plan, the data (sequences, tokens, what\n"
			     "--seq-len cuts) and the cost estimate, and exit"),
		FTK_OPT_GROUP("Evals after every checkpoint"),
		FTK_OPT_CALLBACK(0, "eval", eval_suite, "SUITE", path_cb,
				 "run this eval suite on the base model once and on every\n"
				 "checkpoint (RUN/evals/), compare each with the base, and\n"
				 "put the metrics in metrics.jsonl; allowed with --resume"),
		FTK_OPT_LONG(0, "eval-limit", &eval_limit, "N", 1, LONG_MAX, "only the suite's first N cases"),
		FTK_OPT_FLAG(0, "stop-on-regression", &stop_on_regression,
			     "end the run (its checkpoint kept, exit status 3) when a\n"
			     "semantic metric of --eval falls significantly below the\n"
			     "base's (the --init-adapter when given) or the best\n"
			     "checkpoint's so far (the paired test of ftk eval compare)"),
		FTK_OPT_STRING(0, "keep-best", &keep_best, "METRIC",
			       "RUN/adapter is the checkpoint with the highest METRIC\n"
			       "of --eval (RUN/best.json says which)"),
		FTK_OPT_GROUP("Cost"),
		FTK_OPT_DOUBLE(0, "usd-per-hour", &usd_per_hour, "X", 0, 1e9,
			       "machine price for the ledger entry (default 0)"),
		FTK_OPT_GROUP("Common options"),
		FTK_OPT_STRING(0, "ledger", &t.ledger_path, "FILE",
			       "append a ledger entry for this run (default $FTK_LEDGER)"),
		FTK_OPT_STRING(0, "run", &t.run, "NAME", "the run name for the ledger (default $FTK_RUN)"),
		FTK_OPT_FLAG('q', "quiet", &t.quiet, "no summary line on stderr"),
		FTK_OPT_HELP(),
		FTK_OPT_VERSION(),
		FTK_OPT_TEXT("\nSIGINT, SIGTERM and SIGHUP save a checkpoint at the next step boundary and exit 0.\n"
			     "Exit status: 0 success (or stopped by a signal with a checkpoint saved), 1 data\n"
			     "problems or failure, 2 bad usage, 3 stopped by --stop-on-regression.\n"),
		FTK_OPT_END(),
	};
	/* count the training options given, for --resume */
	for (struct ftk_option *x = opts; x->kind != FTK_OPTION_END; x++) {
		int training = x->long_name != NULL;
		for (size_t i = 0; training && not_training[i]; i++)
			if (!strcmp(x->long_name, not_training[i]))
				training = 0;
		if (training)
			x->given = &n_train_opts;
	}
	argv = expand_config(&t, opts, &argc, argv);
	argc = ftk_parse_options(argc, argv, "ftk-train", opts, usage);
	(void)config;	/* read by expand_config */
	o.objective = (enum ftk_objective)objective;
	o.quant = (enum ftk_quant)quant;
	o.attention = (enum ftk_attention)attention;
	o.sched.kind = (enum ftk_sched_kind)sched;
	o.lora.alpha = (float)alpha;
	o.lora.dropout = (float)dropout;
	o.seed = (uint64_t)seed;
	if (precision >= 0) {
		o.precision = precision;
		precision_given = 1;
	}
	if (threads >= 0)	/* how to compute, not what: --resume may change it */
		o.threads = threads;
	if (dev >= 0)
		device = devices[dev];
	if (argc > 0)
		ftk_tool_usage_error(&t, "unexpected argument '%s'", argv[0]);
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
			die_at(&err);
		}
		strbuf_release(&sb);
		strbuf_release(&path);
		if (threads >= 0)
			o.threads = threads;
		if (strlen(resume) >= FTK_TRAIN_PATH)
			ftk_tool_usage_error(&t, "--resume: path too long");
		strcpy(o.out, resume);
		o.strict_resume = strict;
	} else {
		if (strict)
			ftk_tool_usage_error(&t, "--strict is for --resume");
		if (dry && !o.out[0])	/* a rehearsal writes nothing */
			strcpy(o.out, ".");
		if (!o.model[0] || (!plan_only && (!o.data[0] || !o.out[0])))
			ftk_tool_usage_error(&t, "--model, --data and --out are required (or --resume)");
		if (plan_only && !o.data[0])	/* the plan reads no data */
			strcpy(o.data, ".");
		if (plan_only && !o.out[0])
			strcpy(o.out, ".");
		if (ftk_train_opts_check(&o, &err) < 0)
			ftk_tool_usage_error(&t, "%s", err.msg);
	}

	if (dry) {
		if (resume)
			ftk_tool_usage_error(&t, "--dry-run is for a new run, not --resume");
		int th = o.threads > 0 ? o.threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
		size_t avail = devmem ? (size_t)devmem : ftk_device_free_bytes(device);
		return dry_run(&o, device, th, avail);
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
	struct progress_state ps = { "", NAN };
	if (t.is_tty && !t.quiet) {
		o.on_step = progress;
		o.on_step_ctx = &ps;
	}

	/* the memory plan (issue 9): printed with --plan, checked before every run */
	struct ftk_plan plan;
	int plan_threads = o.threads > 0 ? o.threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (plan_only) {
		size_t avail = devmem ? (size_t)devmem : ftk_device_free_bytes(device);
		if (ftk_plan_for_dir(&plan, &o, device, gpus ? gpus : 1, plan_threads, &err) < 0) {
			die_at(&err);
		}
		plan_local(&plan, device);
		ftk_plan_print(&plan, &o, avail, stdout);
		if (ftk_plan_fits(&plan, &o, avail, &err) < 0) {
			error("%s", err.msg);
			return FTK_EXIT_DATA;
		}
		return FTK_EXIT_OK;
	}

	/* data parallelism and the device (issue 9): only rank 0 prints and logs */
	struct ftk_dist *dist = NULL;
	if (ftk_dist_start(&dist, (enum ftk_dist_mode)dist_mode, device, &err) < 0 ||
	    ftk_device_backend(device, ftk_dist_local_rank(dist), &o.backend, &err) < 0) {
		error_at(&err);
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
			ftk_backend_free(o.backend);
			ftk_dist_end(dist);
			return FTK_EXIT_USAGE;
		}
		o.grad_accum = (int)(global / w);
	}
	{
		size_t avail = devmem ? (size_t)devmem : ftk_device_free_bytes(device);
		int prc = ftk_plan_for_dir(&plan, &o, device, o.world, plan_threads, &err);
		if (prc == 0)
			plan_local(&plan, device);
		if (prc == 0 && ftk_plan_fits(&plan, &o, avail, &err) < 0) {
			error("%s (ftk-train --plan shows the whole plan)", err.msg);
			if (o.world > 1)
				ftk_dist_abort(dist, FTK_EXIT_DATA);
			ftk_backend_free(o.backend);
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
	if ((stop_on_regression || keep_best) && !eval_suite[0])
		ftk_tool_usage_error(&t, "%s needs --eval SUITE",
				     stop_on_regression ? "--stop-on-regression" : "--keep-best");
	if (eval_suite[0] && o.rank == 0) {
		te.suite = eval_suite;
		te.model_dir = o.model;
		te.run_dir = o.out;
		te.ledger = t.ledger_path;
		te.run_name = t.run;
		te.limit = eval_limit;
		te.base_adapter = o.init_adapter[0] ? o.init_adapter : NULL;
		te.stop_on_regression = stop_on_regression;
		te.keep_best = keep_best;
		te.stop = &stop_flag;
		if (!t.quiet)
			te.report = eval_report;
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
		error_at(&err);
		exit_code = rc == FTK_EUSAGE ? FTK_EXIT_USAGE : FTK_EXIT_DATA;
		if (o.world > 1)	/* the other ranks would wait for this one for ever */
			ftk_dist_abort(dist, exit_code);
	} else if (res.interrupted && te.stopped_at) {
		fprintf(stderr, "ftk-train: stopped at step %ld: %s; checkpoints kept in %s/checkpoints\n",
			res.steps, te.stop_reason, o.out);
		exit_code = FTK_EXIT_REGRESSION;
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

	if (rc == 0 && keep_best && o.rank == 0 && keep_best_adapter(&te, keep_best, o.out) < 0)
		exit_code = FTK_EXIT_DATA;
	ftk_train_eval_release(&te);

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
	ftk_backend_free(o.backend);
	ftk_dist_end(dist);
	return exit_code;
}
