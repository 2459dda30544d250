/*
 * rates.c: the dated price table (see cost.h and docs/formats.md).
 *
 * Prices change: a GPU gets cheaper, a contractor's rate goes up.  If a
 * report priced every old entry at today's rate, last spring's bill would
 * change whenever the rates file did.  So a row carries the date it applies
 * from, and an entry is priced by the row that was in force on the entry's
 * own date.  Adding a row never edits an old one; the file only grows, like
 * the ledger.
 *
 * The rows built in here are examples (each says "example": true and where
 * its figure comes from).  They let the commands run before the user has
 * written any rates, and they must say so wherever they are used.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "ledger/cost.h"
#include "lib/json.h"
#include "lib/stream.h"

/* Keep in step with datasets/rates.example.jsonl (a CLI case compares them). */
const char ftk_rates_examples[] =
	"{\"type\":\"device\",\"name\":\"H100-80GB\",\"from\":\"2026-01-01\",\"usd_per_hour\":2.99,"
	"\"peak_bf16_flops\":9.89e14,\"mfu\":0.35,\"example\":true,\"source\":\"example: illustrative "
	"on-demand price, not a quote; peak is NVIDIA's dense BF16 figure for H100 SXM\"}\n"
	"{\"type\":\"device\",\"name\":\"A100-80GB\",\"from\":\"2026-01-01\",\"usd_per_hour\":3.67,"
	"\"peak_bf16_flops\":3.12e14,\"mfu\":0.4,\"example\":true,\"source\":\"example: 3.67 $/h as "
	"quoted in 2026 essays on fine-tuning cost; peak is NVIDIA's dense BF16 figure\"}\n"
	"{\"type\":\"device\",\"name\":\"L40S\",\"from\":\"2026-01-01\",\"usd_per_hour\":1.57,"
	"\"peak_bf16_flops\":3.62e14,\"mfu\":0.35,\"example\":true,\"source\":\"example: 1.57 $/h as "
	"quoted in 2026 essays on fine-tuning cost; peak is NVIDIA's dense BF16 figure\"}\n"
	"{\"type\":\"device\",\"name\":\"cpu\",\"from\":\"2026-01-01\",\"usd_per_hour\":0.1,"
	"\"peak_bf16_flops\":1.92e11,\"mfu\":0.1,\"example\":true,\"source\":\"example: a 2-vCPU "
	"cloud machine; peak is 2 cores x 3 GHz x 32 FP32 FLOP/cycle (AVX2 FMA), the CPU backend "
	"computes in FP32; calibrate with a smoke run\"}\n"
	"{\"type\":\"person\",\"name\":\"default\",\"from\":\"2026-01-01\",\"usd_per_hour\":75,"
	"\"example\":true,\"source\":\"example: an illustrative loaded hourly cost of an engineer\"}\n"
	"{\"type\":\"api\",\"name\":\"gpt-4o-mini\",\"from\":\"2026-01-01\",\"usd_per_mtok_in\":0.15,"
	"\"usd_per_mtok_out\":0.6,\"example\":true,\"source\":\"example: OpenAI's list price per "
	"million tokens\"}\n"
	"{\"type\":\"api\",\"name\":\"local\",\"from\":\"2026-01-01\",\"usd_per_mtok_in\":0,"
	"\"usd_per_mtok_out\":0,\"example\":true,\"source\":\"example: a model served on your own "
	"machine; its hours are priced as compute\"}\n";

static const char *const type_names[] = { "device", "person", "api" };

const char *ftk_rate_type_name(enum ftk_rate_type type)
{
	return type_names[type];
}

static int opt_num(const cJSON *o, const char *key, double *out, struct ftk_error *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	*out = NAN;
	if (!v)
		return 0;
	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0)
		return ftk_error_set(err, FTK_EDATA, NULL, 0, key, "expected a number >= 0, found %s",
				     cJSON_IsNumber(v) ? "a negative number" : ftk_json_type_name(v));
	*out = v->valuedouble;
	return 0;
}

int ftk_rate_parse(const char *s, size_t len, struct ftk_rate *out, struct ftk_error *err)
{
	cJSON *o;
	memset(out, 0, sizeof(*out));
	int rc = ftk_json_parse_object(s, len, &o, err);
	if (rc < 0)
		return rc;
	const char *type = ftk_json_get_str(o, "type");
	const char *from = ftk_json_get_str(o, "from");
	out->name = ftk_json_get_str(o, "name");
	rc = FTK_EDATA;
	if (!type) {
		ftk_error_set(err, rc, NULL, 0, "type", "missing (device, person or api)");
		goto fail;
	}
	size_t t;
	for (t = 0; t < FTK_ARRAY_SIZE(type_names); t++)
		if (!strcmp(type, type_names[t]))
			break;
	if (t == FTK_ARRAY_SIZE(type_names)) {
		ftk_error_set(err, rc, NULL, 0, "type", "unknown type '%s' (device, person or api)", type);
		goto fail;
	}
	out->type = (enum ftk_rate_type)t;
	if (!out->name || !*out->name) {
		ftk_error_set(err, rc, NULL, 0, "name", "missing");
		goto fail;
	}
	if (!from) {
		ftk_error_set(err, rc, NULL, 0, "from", "missing (the date the price applies from)");
		goto fail;
	}
	if (ftk_cost_time_parse(from, &out->from) < 0) {
		ftk_error_set(err, rc, NULL, 0, "from", "not a date: '%s'", from);
		goto fail;
	}
	if (opt_num(o, "usd_per_hour", &out->usd_per_hour, err) < 0 ||
	    opt_num(o, "peak_bf16_flops", &out->peak_flops, err) < 0 ||
	    opt_num(o, "mfu", &out->mfu, err) < 0 ||
	    opt_num(o, "usd_per_mtok_in", &out->usd_per_mtok_in, err) < 0 ||
	    opt_num(o, "usd_per_mtok_out", &out->usd_per_mtok_out, err) < 0)
		goto fail;
	if (out->type != FTK_RATE_API && isnan(out->usd_per_hour)) {
		ftk_error_set(err, rc, NULL, 0, "usd_per_hour", "missing");
		goto fail;
	}
	if (out->type == FTK_RATE_API &&
	    (isnan(out->usd_per_mtok_in) || isnan(out->usd_per_mtok_out))) {
		ftk_error_set(err, rc, NULL, 0,
			      isnan(out->usd_per_mtok_in) ? "usd_per_mtok_in" : "usd_per_mtok_out",
			      "missing");
		goto fail;
	}
	if (!isnan(out->mfu) && (out->mfu <= 0 || out->mfu > 1)) {
		ftk_error_set(err, rc, NULL, 0, "mfu", "must be in (0, 1]");
		goto fail;
	}
	out->example = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "example"));
	out->json = o;
	return 0;
fail:
	cJSON_Delete(o);
	memset(out, 0, sizeof(*out));
	return FTK_EDATA;
}

static int add_line(struct ftk_rates *R, const char *s, size_t len, long lineno, const char *file,
		    struct ftk_error *err)
{
	struct ftk_rate row;
	if (ftk_rate_parse(s, len, &row, err) < 0) {
		ftk_error_place(err, file, lineno);
		return FTK_EDATA;
	}
	row.line = file ? lineno : 0;
	FTK_ALLOC_GROW(R->r, R->n + 1, R->alloc);
	R->r[R->n++] = row;
	return 0;
}

int ftk_rates_load(const char *path, struct ftk_rates *R, struct ftk_error *err)
{
	memset(R, 0, sizeof(*R));
	if (!path) {
		const char *p = ftk_rates_examples;
		long lineno = 0;
		while (*p) {
			const char *nl = strchr(p, '\n');
			lineno++;
			if (add_line(R, p, (size_t)(nl - p), lineno, NULL, err) < 0)
				return FTK_EDATA;	/* cannot happen: a unit test parses them */
			p = nl + 1;
		}
		return 0;
	}
	struct ftk_reader *r;
	struct ftk_line line;
	FILE *probe = fopen(path, "r");
	if (!probe)
		return ftk_error_set(err, FTK_ENOTFOUND, path, 0, NULL, "no rates file at '%s'", path);
	fclose(probe);
	int rc = ftk_reader_open(&r, path, err);
	if (rc < 0)
		return rc;
	R->path = xstrdup(path);
	while ((rc = ftk_reader_next(r, &line, err)) > 0) {
		if (strspn(line.data, " \t\r") == line.len)
			continue;
		if (line.utf8_error >= 0) {
			rc = ftk_error_set(err, FTK_EDATA, path, line.lineno, NULL,
					   "invalid UTF-8 at byte %ld", line.utf8_error + 1);
			break;
		}
		if ((rc = add_line(R, line.data, line.len, line.lineno, path, err)) < 0)
			break;
	}
	ftk_reader_close(r);
	if (rc < 0) {
		ftk_rates_release(R);
		return rc;
	}
	return 0;
}

void ftk_rates_release(struct ftk_rates *R)
{
	if (!R)
		return;
	for (size_t i = 0; i < R->n; i++)
		cJSON_Delete(R->r[i].json);
	free(R->r);
	free(R->path);
	memset(R, 0, sizeof(*R));
}

const struct ftk_rate *ftk_rates_find(const struct ftk_rates *R, enum ftk_rate_type type,
				      const char *name, double t)
{
	const struct ftk_rate *best = NULL;
	if (!name)
		return NULL;
	for (size_t i = 0; i < R->n; i++) {
		const struct ftk_rate *r = &R->r[i];
		if (r->type != type || strcasecmp(r->name, name) || r->from > t)
			continue;
		if (!best || r->from >= best->from)
			best = r;
	}
	return best;
}

int ftk_rates_price_entry(const struct ftk_rates *R, const struct ftk_cost_entry *e,
			  double *usd, struct ftk_error *err)
{
	const struct ftk_rate *r;
	char day[16];
	ftk_cost_date_format(e->ts, day, sizeof(day));
	*usd = 0;
	if (!strcmp(ftk_cost_kinds[e->kind], "human")) {
		const char *who = e->who ? e->who : "default";
		r = ftk_rates_find(R, FTK_RATE_PERSON, who, e->ts);
		if (!r)
			r = ftk_rates_find(R, FTK_RATE_PERSON, "default", e->ts);
		if (!r)
			return ftk_error_msg(err, FTK_ENOTFOUND, "no rate for person '%s' on %s", who, day);
		*usd = e->hours * r->usd_per_hour;
		return 0;
	}
	if (!strcmp(ftk_cost_kinds[e->kind], "compute")) {
		if (!e->device)
			return ftk_error_msg(err, FTK_ENOTFOUND, "compute entry names no device");
		if (!(r = ftk_rates_find(R, FTK_RATE_DEVICE, e->device, e->ts)))
			return ftk_error_msg(err, FTK_ENOTFOUND, "no rate for device '%s' on %s",
					     e->device, day);
		*usd = e->hours * e->gpus * r->usd_per_hour;
		return 0;
	}
	const char *api = ftk_json_get_str(e->json, "model");
	if (!api)
		api = ftk_json_get_str(e->json, "api");
	if (!api)
		return ftk_error_msg(err, FTK_ENOTFOUND, "api entry names no model");
	if (!(r = ftk_rates_find(R, FTK_RATE_API, api, e->ts)))
		return ftk_error_msg(err, FTK_ENOTFOUND, "no rate for api '%s' on %s", api, day);
	*usd = e->tokens_in / 1e6 * r->usd_per_mtok_in + e->tokens_out / 1e6 * r->usd_per_mtok_out;
	return 0;
}
