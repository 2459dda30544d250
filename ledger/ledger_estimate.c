/*
 * ledger_estimate.c: `ftk-ledger estimate`, a training run's hours and
 * dollars before it starts: FLOPs from the model's config and the tokens
 * (ledger/estimate.c), speed from the device's peak and an MFU or from a
 * smoke run (--calibrate), price from the device's rates row, and every
 * assumption printed beside the figures.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "ledger/ledger_cmds.h"
#include "lib/json.h"
#include "lib/stream.h"

/*
 * Tokens from an ftk-tokenize --stats file or a shard manifest.json: "tokens",
 * or counts.tokens.  A directory means its manifest.json.
 */
static double stats_tokens(const char *arg)
{
	char *data;
	size_t len;
	struct ftk_error err;
	char path[4096];
	cJSON *o;
	struct stat st;
	if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode))
		snprintf(path, sizeof(path), "%s/manifest.json", arg);
	else
		snprintf(path, sizeof(path), "%s", arg);
	if (ftk_read_all(path, &data, &len, &err) < 0)
		die_at(&err);
	int rc = ftk_json_parse_object(data, len, &o, &err);
	free(data);
	if (rc < 0) {
		ftk_error_place(&err, path, 0);
		die_at(&err);
	}
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "tokens");
	if (!cJSON_IsNumber(v))
		v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "counts"),
						     "tokens");
	double t = cJSON_IsNumber(v) ? v->valuedouble : NAN;
	cJSON_Delete(o);
	if (isnan(t) || t <= 0)
		die("%s: tokens: missing (expected \"tokens\" or \"counts\": {\"tokens\"} as "
		    "ftk-tokenize --stats writes)", path);
	return t;
}

/*
 * What a smoke run was trained with, from RUN_DIR/train_config.json (written
 * by ftk-train): seq_len, rank and targets.  Fields it lacks stay as they are.
 */
static void read_train_config(const char *run_dir, long *seq_len, int *rank, char *targets,
			      size_t n)
{
	char path[4096], *data;
	size_t len;
	cJSON *o;
	snprintf(path, sizeof(path), "%s/train_config.json", run_dir);
	if (ftk_read_all(path, &data, &len, NULL) < 0)
		return;
	int rc = ftk_json_parse_object(data, len, &o, NULL);
	free(data);
	if (rc < 0)
		return;
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "seq_len");
	if (cJSON_IsNumber(v) && v->valuedouble >= 1)
		*seq_len = (long)v->valuedouble;
	v = cJSON_GetObjectItemCaseSensitive(o, "rank");
	if (cJSON_IsNumber(v) && v->valuedouble >= 1)
		*rank = (int)v->valuedouble;
	const char *t = ftk_json_get_str(o, "targets");
	if (t && *t)
		snprintf(targets, n, "%s", t);
	cJSON_Delete(o);
}

/* The shard directory that path names (the directory, or its manifest.json), or 0. */
static int shard_dir_of(const char *path, char *dir, size_t n)
{
	struct stat st;
	char m[4200];
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		snprintf(dir, n, "%s", path);
	} else {
		size_t k = strlen(path);
		if (k < 13 || strcmp(path + k - 13, "manifest.json") || (k > 13 && path[k - 14] != '/'))
			return 0;
		snprintf(dir, n, "%.*s", (int)(k > 13 ? k - 14 : 1), k > 13 ? path : ".");
	}
	snprintf(m, sizeof(m), "%s/manifest.json", dir);
	return stat(m, &st) == 0 && S_ISREG(st.st_mode);
}

static void thousands(char *buf, size_t n, double v)
{
	char raw[64];
	snprintf(raw, sizeof(raw), "%.0f", v);
	size_t len = strlen(raw), k = 0;
	for (size_t i = 0; i < len && k + 2 < n; i++) {
		if (i && (len - i) % 3 == 0)
			buf[k++] = ',';
		buf[k++] = raw[i];
	}
	buf[k] = 0;
}

int ftk_ledger_estimate(int argc, char **argv)
{
	struct ledger_common lc = { 0 };
	struct {
		double tokens, epochs, gpus, mfu;
		const char *token_stats, *model, *targets, *device, *calibrate;
		int rank, json;
		long seq_len;
	} o = { NAN, NAN, NAN, NAN, NULL, NULL, NULL, NULL, NULL, 0, 0, 0 };
	int method_i = 0;
	const char *mfu_text = NULL;
	struct ledger_time at = { 0 };
	struct ftk_rates R;
	struct ftk_cost_model M;
	struct ftk_error err;
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Options"),
		FTK_OPT_DOUBLE(0, "tokens", &o.tokens, "N", 1, HUGE_VAL, "tokens per epoch"),
		FTK_OPT_STRING(0, "token-stats", &o.token_stats, "FILE",
			       "tokens per epoch from ftk-tokenize --stats, or a shard\n"
			       "directory or its manifest.json"),
		FTK_OPT_DOUBLE(0, "epochs", &o.epochs, "E", 0, HUGE_VAL, "passes over the data (default 1)"),
		FTK_OPT_STRING(0, "model", &o.model, "DIR", "the model's directory or config.json (required)"),
		FTK_OPT_CHOICE(0, "method", &method_i, NULL, "qlora|lora|full", "the training method (default qlora)"),
		FTK_OPT_INT(0, "rank", &o.rank, "R", 1, INT_MAX, "LoRA rank (default 16)"),
		FTK_OPT_STRING(0, "targets", &o.targets, "LIST",
			       "LoRA modules, e.g. q_proj,v_proj (default all-linear)"),
		FTK_OPT_LONG(0, "seq-len", &o.seq_len, "T", 1, LONG_MAX,
			     "sequences longer than T are cut, as ftk-train does (default\n"
			     "the --calibrate run's, else none); counted exactly from shards"),
		FTK_OPT_STRING(0, "device", &o.device, "NAME",
			       "a device row of the rates, e.g. A100-80GB, cpu (required)"),
		FTK_OPT_DOUBLE(0, "gpus", &o.gpus, "K", 1, HUGE_VAL, "devices in the run (default 1)"),
		FTK_OPT_STRING(0, "mfu", &mfu_text, "M", "model FLOPs utilization, in (0, 1]\n"
							      "(default the device row's mfu)"),
		FTK_OPT_STRING(0, "calibrate", &o.calibrate, "DIR",
			       "use the tokens/s a smoke run achieved (DIR/metrics.jsonl)"),
		LEDGER_OPT_TIME("at", &at, "price at this date (default now)"),
		FTK_OPT_FLAG(0, "json", &o.json, "the estimate as JSON"),
		LEDGER_OPTS_COMMON(&lc),
		FTK_OPT_END(),
	};
	static const char *const usage[] = {
		"ftk-ledger estimate (--tokens N | --token-stats FILE) --model DIR --device NAME [options]", "",
		"Predict a training run's hours and dollars, with every assumption printed.", NULL,
	};
	argc = ftk_parse_options(argc, argv, "ftk-ledger estimate", opts, usage);
	if (mfu_text)
		o.mfu = ftk_opt_parse_number("--mfu", mfu_text, 0, 1);
	ledger_no_args("estimate", argc, argv);
	if (isnan(o.tokens) == !o.token_stats)
		ftk_usage_error("estimate: give the tokens per epoch, --tokens N or --token-stats FILE");
	if (!o.model)
		ftk_usage_error("estimate: --model DIR (or its config.json) is required");
	if (!o.device)
		ftk_usage_error("estimate: --device NAME is required (a device row of the rates)");
	static const char *const methods[] = { "qlora", "lora", "full" };
	const char *method = methods[method_i];
	int full = method_i == 2;
	if (!isnan(o.mfu) && o.mfu <= 0)
		ftk_usage_error("--mfu needs a number above 0 and at most 1, not '%s'", mfu_text);
	double epochs = isnan(o.epochs) ? 1 : o.epochs;
	double gpus = isnan(o.gpus) ? 1 : o.gpus;
	int rank = 16;
	long seq_len = 0;
	char targets[256] = "all-linear", shard_dir[4096];
	if (o.calibrate)	/* estimate the run the smoke run rehearsed */
		read_train_config(o.calibrate, &seq_len, &rank, targets, sizeof(targets));
	if (o.rank)
		rank = o.rank;
	if (o.seq_len)
		seq_len = o.seq_len;
	if (o.targets)
		snprintf(targets, sizeof(targets), "%s", o.targets);
	double tokens, tokens_all = NAN;
	long n_cut = -1;	/* -1: unknown */
	if (o.token_stats && shard_dir_of(o.token_stats, shard_dir, sizeof(shard_dir))) {
		if (ftk_cost_shard_tokens(shard_dir, seq_len, &tokens_all, &tokens, &n_cut, &err) < 0)
			die_at(&err);
	} else {
		tokens = o.token_stats ? stats_tokens(o.token_stats) : o.tokens;
		n_cut = seq_len > 0 ? -1 : 0;
	}
	if (ftk_cost_model_load(o.model, &M, &err) < 0)
		die_at(&err);
	long long n_lora = full ? 0 : ftk_cost_lora_params(&M, rank, targets);
	if (n_lora < 0)
		ftk_usage_error("--targets: unknown module in '%s' (q_proj, k_proj, v_proj, o_proj, gate_proj, "
		      "up_proj, down_proj or all-linear)", targets);
	ledger_load_rates(&lc, &R);
	double when = at.set ? at.t : ftk_now();
	const struct ftk_rate *dev = ftk_rates_find(&R, FTK_RATE_DEVICE, o.device, when);
	if (!dev) {
		char day[16];
		ftk_cost_date_format(when, day, sizeof(day));
		error("no rate for device '%s' on %s in %s: add one with 'ftk-ledger rates add "
		      "--type device'", o.device, day, ledger_rates_label(&R));
		ftk_rates_release(&R);
		return FTK_EXIT_DATA;
	}
	double D = tokens * epochs;
	double flops = ftk_cost_train_flops(&M, n_lora, D, full);
	double flops_per_token = flops / D;
	double seconds, mfu = NAN, tps = NAN, implied_mfu = NAN;
	int steps = 0;
	const char *mfu_src;
	if (o.calibrate) {
		if (ftk_cost_calibrate_tps(o.calibrate, &tps, &steps, &err) < 0)
			die_at(&err);
		seconds = D / tps;	/* tokens/s of the smoke run, on the same devices */
		if (!isnan(dev->peak_flops))
			implied_mfu = tps * flops_per_token / (dev->peak_flops * gpus);
		mfu_src = "calibrated";
	} else {
		if (isnan(dev->peak_flops))
			die("device '%s' has no peak_bf16_flops in %s: add it, or use --calibrate",
			    o.device, ledger_rates_label(&R));
		mfu = !isnan(o.mfu) ? o.mfu : !isnan(dev->mfu) ? dev->mfu : 0.3;
		mfu_src = !isnan(o.mfu) ? "--mfu" : !isnan(dev->mfu) ? "the device row" : "a default guess";
		seconds = flops / (dev->peak_flops * gpus * mfu);
	}
	double hours = seconds / 3600;
	double usd = hours * gpus * dev->usd_per_hour;
	static const int runs[] = { 1, 3, 5, 10 };
	const char *formula = full ? "6*N*D (forward 2*N*D, backward 4*N*D)"
				   : "4*N*D + 6*N_lora*D (forward 2*N*D, backward through frozen "
				     "weights 2*N*D, adapters 6*N_lora*D)";
	if (o.json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "method", method);
		cJSON_AddStringToObject(j, "model_type", M.model_type);
		cJSON_AddNumberToObject(j, "params", (double)M.n_params);
		cJSON_AddNumberToObject(j, "matmul_params", (double)M.n_matmul);
		cJSON_AddNumberToObject(j, "lora_params", (double)n_lora);
		cJSON_AddNumberToObject(j, "tokens_per_epoch", tokens);
		if (!isnan(tokens_all))
			cJSON_AddNumberToObject(j, "tokens_per_epoch_before_cut", tokens_all);
		if (seq_len > 0)
			cJSON_AddNumberToObject(j, "seq_len", (double)seq_len);
		if (n_cut >= 0)
			cJSON_AddNumberToObject(j, "sequences_cut", (double)n_cut);
		cJSON_AddNumberToObject(j, "epochs", epochs);
		cJSON_AddNumberToObject(j, "tokens", D);
		cJSON_AddStringToObject(j, "formula", formula);
		cJSON_AddNumberToObject(j, "flops", flops);
		cJSON_AddStringToObject(j, "device", dev->name);
		cJSON_AddNumberToObject(j, "gpus", gpus);
		if (!isnan(dev->peak_flops))
			cJSON_AddNumberToObject(j, "peak_flops", dev->peak_flops);
		if (o.calibrate) {
			cJSON_AddNumberToObject(j, "calibrated_tokens_per_s", tps);
			cJSON_AddNumberToObject(j, "calibration_steps", steps);
			if (!isnan(implied_mfu))
				cJSON_AddNumberToObject(j, "implied_mfu", implied_mfu);
		} else {
			cJSON_AddNumberToObject(j, "mfu", mfu);
		}
		cJSON_AddNumberToObject(j, "usd_per_device_hour", dev->usd_per_hour);
		cJSON_AddBoolToObject(j, "example_rate", dev->example);
		cJSON_AddNumberToObject(j, "seconds_per_run", seconds);
		cJSON_AddNumberToObject(j, "hours_per_run", hours);
		cJSON_AddNumberToObject(j, "usd_per_run", usd);
		cJSON *rs = cJSON_AddArrayToObject(j, "runs_per_success");
		for (size_t i = 0; i < FTK_ARRAY_SIZE(runs); i++) {
			cJSON *r = cJSON_CreateObject();
			cJSON_AddNumberToObject(r, "runs", runs[i]);
			cJSON_AddNumberToObject(r, "hours", hours * runs[i]);
			cJSON_AddNumberToObject(r, "usd", usd * runs[i]);
			cJSON_AddItemToArray(rs, r);
		}
		char *s = cJSON_Print(j);
		puts(s);
		cJSON_free(s);
		cJSON_Delete(j);
	} else {
		char a[64], b[64], c[64], d[64];
		thousands(a, sizeof(a), (double)M.n_params);
		thousands(b, sizeof(b), (double)M.n_matmul);
		thousands(c, sizeof(c), (double)n_lora);
		printf("estimate: %s fine-tune of a %s model\n", method, M.model_type);
		printf("assumptions:\n");
		printf("  parameters     %s (from config.json); N = %s in matmuls (layers and head)\n", a, b);
		if (!full)
			printf("  adapters       LoRA rank %d on %s: N_lora = %s\n", rank, targets, c);
		thousands(a, sizeof(a), tokens);
		thousands(d, sizeof(d), D);
		printf("  tokens         %s per epoch x %g epochs = D = %s (every token, prompt "
		       "included, goes through the model)\n", a, epochs, d);
		if (seq_len > 0 && n_cut >= 0 && !isnan(tokens_all)) {
			thousands(b, sizeof(b), tokens_all);
			printf("  cut            sequences longer than %ld tokens are cut, as ftk-train "
			       "does: %ld cut, %s of %s tokens kept\n", seq_len, n_cut, a, b);
		} else if (seq_len > 0) {
			printf("  cut            sequences longer than %ld tokens are cut by ftk-train; "
			       "a token count cannot say how many: give --token-stats the shard "
			       "directory\n", seq_len);
		}
		printf("  FLOPs          %s = %.3g\n", formula, flops);
		if (o.calibrate) {
			printf("  speed          %.4g tokens/s over %d steps of the smoke run %s (its "
			       "first step left out as warm-up), on the same devices\n", tps, steps,
			       o.calibrate);
			if (!isnan(implied_mfu))
				printf("  implied MFU    %.3g of %s's peak %g TFLOP/s x %g\n", implied_mfu,
				       dev->name, dev->peak_flops / 1e12, gpus);
		} else {
			printf("  device         %s x %g: peak %g TFLOP/s dense bf16 each\n", dev->name, gpus,
			       dev->peak_flops / 1e12);
			printf("  MFU            %.3g (%s; --calibrate RUN_DIR measures it)\n", mfu, mfu_src);
		}
		printf("  price          %.2f USD per device-hour (%s%s)\n", dev->usd_per_hour,
		       dev->example ? "an EXAMPLE row of " : "", ledger_rates_label(&R));
		printf("  not counted    attention scores (grow with sequence length), evaluation, "
		       "checkpoint writes, data loading, queueing, people's time\n");
		printf("\n  %-22s %12s %12s\n", "", "hours", "usd");
		for (size_t i = 0; i < FTK_ARRAY_SIZE(runs); i++) {
			char lab[48];
			snprintf(lab, sizeof(lab), runs[i] == 1 ? "one run" : "%d runs per success", runs[i]);
			printf("  %-22s %12.4g %12.2f\n", lab, hours * runs[i], usd * runs[i]);
		}
	}
	ftk_rates_release(&R);
	return 0;
}

