/*
 * ledger_rates.c: `ftk-ledger rates` shows the dated price table in force
 * (the file, or the built-in examples, said so); `rates add` appends a row,
 * checked as the loader checks it, to a file that starts from the examples.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "ledger/ledger_cmds.h"
#include "lib/json.h"

static void print_rates(const struct ftk_rates *R, int json)
{
	if (json) {
		for (size_t i = 0; i < R->n; i++) {
			char *s = cJSON_PrintUnformatted(R->r[i].json);
			puts(s);
			cJSON_free(s);
		}
		return;
	}
	printf("rates: %s\n", ledger_rates_label(R));
	printf("%-7s %-14s %-10s %-24s %-14s %-5s %s\n", "type", "name", "from", "price",
	       "peak bf16", "mfu", "source");
	for (size_t i = 0; i < R->n; i++) {
		const struct ftk_rate *r = &R->r[i];
		char price[64], peak[32] = "-", mfu[16] = "-";
		if (r->type == FTK_RATE_API)
			snprintf(price, sizeof(price), "%g/%g USD/Mtok in/out", r->usd_per_mtok_in,
				 r->usd_per_mtok_out);
		else
			snprintf(price, sizeof(price), "%g USD/h", r->usd_per_hour);
		if (!isnan(r->peak_flops))
			snprintf(peak, sizeof(peak), "%g TFLOP/s", r->peak_flops / 1e12);
		if (!isnan(r->mfu))
			snprintf(mfu, sizeof(mfu), "%g", r->mfu);
		const char *src = ftk_json_get_str(r->json, "source");
		printf("%-7s %-14s %-10s %-24s %-14s %-5s %s\n", ftk_rate_type_name(r->type), r->name,
		       ftk_json_get_str(r->json, "from"), price, peak, mfu, src ? src : "");
	}
}

static int rates_add(int argc, char **argv)
{
	struct ledger_common c = { 0 };
	const char *type = NULL, *name = NULL, *source = NULL;
	struct ledger_time from = { 0 };
	double uph = NAN, peak_tflops = NAN, mfu = NAN, mtok_in = NAN, mtok_out = NAN;
	struct ftk_rates R;
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Options"),
		FTK_OPT_STRING(0, "type", &type, "device|person|api", "what the row prices (required)"),
		FTK_OPT_STRING(0, "name", &name, "NAME", "the device, person or API (required)"),
		LEDGER_OPT_TIME("from", &from, "the date the price applies from (default today)"),
		FTK_OPT_DOUBLE(0, "usd-per-hour", &uph, "X", 0, HUGE_VAL, "device or person: dollars per hour"),
		FTK_OPT_DOUBLE(0, "peak-tflops", &peak_tflops, "F", 0, HUGE_VAL,
			       "device: peak dense bf16 TFLOP/s"),
		FTK_OPT_DOUBLE(0, "mfu", &mfu, "M", 0, HUGE_VAL, "device: model FLOPs utilization to assume"),
		FTK_OPT_DOUBLE(0, "usd-per-mtok-in", &mtok_in, "X", 0, HUGE_VAL,
			       "api: dollars per million input tokens"),
		FTK_OPT_DOUBLE(0, "usd-per-mtok-out", &mtok_out, "X", 0, HUGE_VAL,
			       "api: dollars per million output tokens"),
		FTK_OPT_STRING(0, "source", &source, "TEXT", "where the price comes from"),
		LEDGER_OPTS_COMMON(&c),
		FTK_OPT_END(),
	};
	static const char *const usage[] = {
		"ftk-ledger rates add --type T --name N [options]", "",
		"Add a dated row to the rates file (a new file starts from the example rows).", NULL,
	};
	argc = ftk_parse_options(argc, argv, "ftk-ledger rates add", opts, usage);
	ledger_no_args("rates add", argc, argv);
	char buf[4096], day[16];
	const char *path = ftk_cost_rates_path(c.rates, ftk_ledger_path(c.ledger), buf, sizeof(buf), 0);
	if (!path)
		ftk_usage_error("rates add: no rates file: give --rates FILE, set FTK_RATES, or give "
				"--ledger (the rates go beside it)");
	if (!type || !name)
		ftk_usage_error("rates add: --type and --name are required");
	cJSON *row = cJSON_CreateObject();
	cJSON_AddStringToObject(row, "type", type);
	cJSON_AddStringToObject(row, "name", name);
	if (!from.set)
		ftk_cost_date_format(ftk_now(), day, sizeof(day));
	cJSON_AddStringToObject(row, "from", from.set ? from.text : day);
	if (!isnan(uph))
		cJSON_AddNumberToObject(row, "usd_per_hour", uph);
	if (!isnan(peak_tflops))
		cJSON_AddNumberToObject(row, "peak_bf16_flops", peak_tflops * 1e12);
	if (!isnan(mfu))
		cJSON_AddNumberToObject(row, "mfu", mfu);
	if (!isnan(mtok_in))
		cJSON_AddNumberToObject(row, "usd_per_mtok_in", mtok_in);
	if (!isnan(mtok_out))
		cJSON_AddNumberToObject(row, "usd_per_mtok_out", mtok_out);
	if (source)
		cJSON_AddStringToObject(row, "source", source);
	char *s = cJSON_PrintUnformatted(row);
	cJSON_Delete(row);
	struct ftk_rate parsed;
	struct ftk_error err;
	int rc = 0;
	if (ftk_rate_parse(s, strlen(s), &parsed, &err) < 0) {
		cJSON_free(s);
		ftk_usage_error("rates add: %s", FTK_ERROR_TEXT(&err));
	}
	cJSON_Delete(parsed.json);
	struct stat st;
	if (stat(path, &st) < 0) {
		/* a new file starts from the examples, so it prices everything they did */
		const char *p = ftk_rates_examples;
		while (*p && rc == 0) {
			const char *nl = strchr(p, '\n');
			rc = ftk_ledger_append(path, p, (size_t)(nl - p), &err);
			p = nl + 1;
		}
		if (rc == 0)
			fprintf(stderr, "ftk-ledger: created '%s' with the example rates; edit them or "
				"add rows\n", path);
	} else {
		/* refuse to add to a file that does not parse: the error would surface later */
		if (ftk_rates_load(path, &R, &err) < 0) {
			cJSON_free(s);
			die_at(&err);
		}
		ftk_rates_release(&R);
	}
	if (rc == 0)
		rc = ftk_ledger_append(path, s, strlen(s), &err);
	cJSON_free(s);
	if (rc < 0)
		die("%s", err.msg);
	return 0;
}

int ftk_ledger_rates(int argc, char **argv)
{
	struct ledger_common c = { 0 };
	int json = 0;
	struct ftk_rates R;
	ftk_subcommand_fn add = NULL;
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Commands"),
		FTK_OPT_SUBCOMMAND_OPTIONAL("add", &add, rates_add,
					    "add a row (see 'ftk-ledger rates add --help')"),
		FTK_OPT_GROUP("Options"),
		FTK_OPT_FLAG(0, "json", &json, "the rows as JSON lines"),
		LEDGER_OPTS_COMMON(&c),
		FTK_OPT_END(),
	};
	static const char *const usage[] = {
		"ftk-ledger rates [--json] [options]",
		"ftk-ledger rates add --type T --name N [options]", "",
		"Show the rates in force (a file, or the built-in examples), or add a row.", NULL,
	};
	argc = ftk_parse_options(argc, argv, "ftk-ledger rates", opts, usage);
	if (add)
		return add(argc, argv);
	ledger_no_args("rates", argc, argv);
	ledger_load_rates(&c, &R);
	print_rates(&R, json);
	ftk_rates_release(&R);
	return 0;
}
