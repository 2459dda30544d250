/*
 * ledger_common.c: what ftk-ledger's subcommands share (ledger_cmds.h):
 * the options of every command, the ledger and rates they name, people's
 * hours as an entry, and the totals with their damaged lines reported.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ledger/ledger_cmds.h"
#include "lib/ledger.h"

void ledger_time_cb(const struct ftk_option *opt, const char *arg)
{
	struct ledger_time *t = opt->value;
	if (ftk_cost_time_parse(arg, &t->t) < 0)
		ftk_usage_error("--%s needs a date or time such as 2026-11-23 or 2026-11-23T13:00:00Z, "
				"not '%s'", opt->long_name, arg);
	t->set = 1;
	t->text = arg;
}

void ledger_eval_cb(const struct ftk_option *opt, const char *arg)
{
	struct ftk_strlist *l = opt->value;
	if (!strchr(arg, '=') || arg[0] == '=')
		ftk_usage_error("--%s needs RUN=FILE, not '%s'", opt->long_name, arg);
	FTK_ALLOC_GROW(l->v, l->n + 1, l->alloc);
	l->v[l->n++] = arg;
}

const char *ledger_need(const struct ledger_common *c)
{
	const char *p = ftk_ledger_path(c->ledger);
	if (!p)
		ftk_usage_error("no ledger: give --ledger FILE or set FTK_LEDGER");
	return p;
}

void ledger_load_rates(const struct ledger_common *c, struct ftk_rates *R)
{
	char buf[4096];
	struct ftk_error err;
	const char *p = ftk_cost_rates_path(c->rates, ftk_ledger_path(c->ledger), buf, sizeof(buf), 1);
	if (ftk_rates_load(p, R, &err) < 0) {
		die_at(&err);
	}
}

const char *ledger_rates_label(const struct ftk_rates *R)
{
	return R->path ? R->path : "built-in examples (not real prices: see 'ftk-ledger rates')";
}

void ledger_check_stage(const char *stage)
{
	if (!stage)
		ftk_usage_error("--stage is required (prep, train, eval, review or serve)");
	if (ftk_cost_stage_index(stage) < 0)
		ftk_usage_error("--stage: unknown stage '%s' (prep, train, eval, review or serve)", stage);
}

void ledger_no_args(const char *sub, int argc, char **argv)
{
	if (argc > 0)
		ftk_usage_error("%s: unexpected argument '%s'", sub, argv[0]);
}

int ledger_append_human(const char *lp, const struct ftk_rates *R, double ts, double hours,
			const char *stage, const char *run, const char *who, const char *note,
			int have_rate, double rate)
{
	struct ftk_error err;
	char day[16];
	char tsbuf[32];
	cJSON *e = ftk_ledger_entry_new(run, stage, "human");
	ftk_time_rfc3339(ts, tsbuf, sizeof(tsbuf));
	cJSON_ReplaceItemInObjectCaseSensitive(e, "ts", cJSON_CreateString(tsbuf));
	cJSON_AddStringToObject(e, "tool", "ftk-ledger");
	if (who)
		cJSON_AddStringToObject(e, "who", who);
	cJSON_AddNumberToObject(e, "hours", hours);
	const char *src = "--rate";
	if (!have_rate) {
		const char *name = who ? who : "default";
		const struct ftk_rate *r = ftk_rates_find(R, FTK_RATE_PERSON, name, ts);
		ftk_cost_date_format(ts, day, sizeof(day));
		if (!r && who && (r = ftk_rates_find(R, FTK_RATE_PERSON, "default", ts)))
			warning("no rate for person '%s' on %s: using the person 'default'", who, day);
		if (r) {
			rate = r->usd_per_hour;
			have_rate = 1;
			src = r->example ? "an example rate" : "the rates file";
		} else {
			warning("no rate for person '%s' on %s in %s: the entry has no price", name, day,
				ledger_rates_label(R));
		}
	}
	if (have_rate) {
		cJSON_AddNumberToObject(e, "rate_usd_per_hour", rate);
		cJSON_AddNumberToObject(e, "usd", hours * rate);
	}
	if (note)
		cJSON_AddStringToObject(e, "note", note);
	int rc = ftk_ledger_append_entry(lp, e, &err);
	cJSON_Delete(e);
	if (rc < 0)
		return error("%s", err.msg);
	const char *rn = run ? run : getenv("FTK_RUN");
	char for_run[300] = "";
	if (rn && *rn)
		snprintf(for_run, sizeof(for_run), " for '%s'", rn);
	if (have_rate)
		fprintf(stderr, "ftk-ledger: logged %.2f h of %s%s: %.2f USD at %.2f USD/h (%s)\n",
			hours, stage, for_run, hours * rate, rate, src);
	else
		fprintf(stderr, "ftk-ledger: logged %.2f h of %s%s\n", hours, stage, for_run);
	return 0;
}

static void warn_unpriced(void *ctx, const struct ftk_cost_entry *e, const char *why)
{
	warning("%s:%ld: no price: %s", (const char *)ctx, e->line, why);
}

int ledger_load_totals(const struct ledger_common *c, const struct ftk_rates *R,
		       struct ftk_cost_ledger *L, struct ftk_cost_totals *T,
		       const struct ftk_cost_filter *f)
{
	struct ftk_error err;
	const char *lp = ledger_need(c);
	int bad = ftk_cost_ledger_load(lp, L, &err);
	if (bad < 0)
		die_at(&err);
	for (size_t i = 0; i < L->n_bad; i++)
		error("%s:%ld: skipped: %s", lp, L->bad[i].line, L->bad[i].msg);
	ftk_cost_totals_compute(T, L, R, f, warn_unpriced, (void *)lp);
	return bad;
}

void ledger_timer_path(const char *lp, char *buf, size_t n)
{
	snprintf(buf, n, "%s.timer", lp);
}

double ledger_tidy(double x)
{
	return round(x * 1e6) / 1e6;
}

cJSON *ledger_agg_json(const struct ftk_cost_agg *a)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "entries", (double)a->n);
	cJSON_AddNumberToObject(o, "human_hours", ledger_tidy(a->human_h));
	cJSON_AddNumberToObject(o, "device_hours", ledger_tidy(a->device_h));
	cJSON_AddNumberToObject(o, "api_tokens", a->api_tok);
	cJSON_AddNumberToObject(o, "usd", ledger_tidy(a->usd));
	cJSON_AddNumberToObject(o, "unpriced", (double)a->unpriced);
	return o;
}
