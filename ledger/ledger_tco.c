/*
 * ledger_tco.c: `ftk-ledger tco`, what owning the model costs over a
 * horizon: data engineering and a first training (from the ledger or given),
 * retrainings inside the horizon, and serving per month.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "ledger/ledger_cmds.h"

int ftk_ledger_tco(int argc, char **argv)
{
	struct ledger_common c = { 0 };
	struct {
		double months, data_usd, train_usd, retrain_every, retrain_usd;
		double serve_usd, serve_gpus, serve_hpd;
		const char *serve_device;
	} o = { NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NULL };
	int json = 0;
	struct ledger_time at = { 0 };
	struct ftk_strlist runs = { 0 };
	struct ftk_rates R;
	struct ftk_cost_ledger L = { 0 };
	struct ftk_cost_totals T;
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Options"),
		FTK_OPT_DOUBLE(0, "months", &o.months, "M", 0, HUGE_VAL, "horizon (default 12)"),
		FTK_OPT_STRING_LIST(0, "run", &runs, "NAME",
				    "restrict the ledger figures to these runs (repeatable)"),
		FTK_OPT_DOUBLE(0, "data-usd", &o.data_usd, "X", 0, HUGE_VAL,
			       "data engineering (default: ledger, stage prep)"),
		FTK_OPT_DOUBLE(0, "train-usd", &o.train_usd, "X", 0, HUGE_VAL,
			       "one training cycle (default: ledger, stages train, eval, review)"),
		FTK_OPT_DOUBLE(0, "retrain-every", &o.retrain_every, "M", 0, HUGE_VAL,
			       "retrain every M months (default never)"),
		FTK_OPT_DOUBLE(0, "retrain-usd", &o.retrain_usd, "X", 0, HUGE_VAL,
			       "one retraining (default the training cycle)"),
		FTK_OPT_DOUBLE(0, "serve-usd-month", &o.serve_usd, "X", 0, HUGE_VAL,
			       "serving per month (default: ledger, stage serve, spread\n"
			       "over the months it covers)"),
		FTK_OPT_STRING(0, "serve-device", &o.serve_device, "NAME",
			       "serving on this device row of the rates, instead"),
		FTK_OPT_DOUBLE(0, "serve-gpus", &o.serve_gpus, "K", 1, HUGE_VAL,
			       "devices serving (default 1)"),
		FTK_OPT_DOUBLE(0, "serve-hours-per-day", &o.serve_hpd, "H", 0, HUGE_VAL,
			       "hours a day they run (default 24)"),
		LEDGER_OPT_TIME("at", &at, "price at this date (default now)"),
		FTK_OPT_FLAG(0, "json", &json, "the figures as JSON"),
		LEDGER_OPTS_COMMON(&c),
		FTK_OPT_END(),
	};
	static const char *const usage[] = {
		"ftk-ledger tco [options]", "",
		"Total cost of ownership over a horizon.", NULL,
	};
	argc = ftk_parse_options(argc, argv, "ftk-ledger tco", opts, usage);
	ledger_no_args("tco", argc, argv);
	struct ftk_cost_filter f = { -INFINITY, INFINITY, runs.v, runs.n };
	if (!isnan(o.serve_usd) && o.serve_device)
		ftk_usage_error("tco: give --serve-usd-month or --serve-device, not both");
	double months = isnan(o.months) ? 12 : o.months;
	ledger_load_rates(&c, &R);
	int bad = 0;
	int have_ledger = ftk_ledger_path(c.ledger) != NULL;
	if (have_ledger)
		bad = ledger_load_totals(&c, &R, &L, &T, &f);
	else
		memset(&T, 0, sizeof(T));
	if (!have_ledger && (isnan(o.data_usd) || isnan(o.train_usd)))
		ftk_usage_error("tco: without a ledger, give --data-usd and --train-usd");
	const char *data_src = "ledger: stage prep", *train_src = "ledger: stages train, eval, review";
	const char *serve_src;
	char serve_buf[256];
	double data = o.data_usd, train = o.train_usd, serve = o.serve_usd;
	if (isnan(data))
		data = T.stage[0].usd;
	else
		data_src = "--data-usd";
	if (isnan(train))
		train = T.stage[1].usd + T.stage[2].usd + T.stage[3].usd;
	else
		train_src = "--train-usd";
	if (o.serve_device) {
		double when = at.set ? at.t : ftk_now();
		const struct ftk_rate *d = ftk_rates_find(&R, FTK_RATE_DEVICE, o.serve_device, when);
		if (!d)
			die("no rate for device '%s' in %s", o.serve_device, ledger_rates_label(&R));
		double g = isnan(o.serve_gpus) ? 1 : o.serve_gpus;
		double hpd = isnan(o.serve_hpd) ? 24 : o.serve_hpd;
		serve = d->usd_per_hour * g * hpd * 365.25 / 12;
		snprintf(serve_buf, sizeof(serve_buf), "%s x %g at %.2f USD/h%s, %g h/day", d->name, g,
			 d->usd_per_hour, d->example ? " (example rate)" : "", hpd);
		serve_src = serve_buf;
	} else if (!isnan(serve)) {
		serve_src = "--serve-usd-month";
	} else {
		/* the ledger's serving spend, spread over the months it covers */
		double span = 0, lo = 0, hi = 0;
		for (size_t i = 0; i < L.n; i++) {
			const struct ftk_cost_entry *e = &L.e[i];
			if (strcmp(ftk_cost_stages[e->stage], "serve") || !ftk_cost_filter_run(&f, e->run))
				continue;
			if (span == 0)
				lo = hi = e->ts;
			lo = e->ts < lo ? e->ts : lo;
			hi = e->ts > hi ? e->ts : hi;
			span = hi - lo + 86400;	/* at least a day */
		}
		double m_cov = span / (86400 * 365.25 / 12);
		serve = span > 0 ? T.stage[4].usd / (m_cov < 1 ? 1 : m_cov) : 0;
		serve_src = span > 0 ? "ledger: stage serve, per month covered" : "none given";
	}
	double every = isnan(o.retrain_every) ? 0 : o.retrain_every;
	double retrain = isnan(o.retrain_usd) ? train : o.retrain_usd;
	/* retrainings strictly inside the horizon: at every, 2*every, ... < months */
	int n_retrain = every > 0 ? (int)ceil(months / every - 1e-9) - 1 : 0;
	if (n_retrain < 0)
		n_retrain = 0;
	double total = data + train + n_retrain * retrain + months * serve;
	if (json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddNumberToObject(j, "months", months);
		cJSON_AddNumberToObject(j, "data_usd", data);
		cJSON_AddNumberToObject(j, "train_usd", train);
		cJSON_AddNumberToObject(j, "retrainings", n_retrain);
		cJSON_AddNumberToObject(j, "retrain_usd", retrain);
		cJSON_AddNumberToObject(j, "serve_usd_per_month", serve);
		cJSON_AddNumberToObject(j, "total_usd", total);
		cJSON_AddNumberToObject(j, "usd_per_month", months > 0 ? total / months : 0);
		char *s = cJSON_Print(j);
		puts(s);
		cJSON_free(s);
		cJSON_Delete(j);
	} else {
		char lab[64];
		printf("total cost of ownership over %g months (rates: %s)\n", months, ledger_rates_label(&R));
		printf("  %-28s %12.2f  (%s)\n", "data engineering", data, data_src);
		printf("  %-28s %12.2f  (%s)\n", "first training", train, train_src);
		snprintf(lab, sizeof(lab), "retraining %d x %.2f", n_retrain, retrain);
		printf("  %-28s %12.2f  (%s)\n", lab, n_retrain * retrain,
		       every > 0 ? "every --retrain-every months, inside the horizon" : "never");
		snprintf(lab, sizeof(lab), "serving %g x %.2f", months, serve);
		printf("  %-28s %12.2f  (%s)\n", lab, months * serve, serve_src);
		printf("  %-28s %12.2f\n", "total", total);
		printf("  %-28s %12.2f\n", "per month", months > 0 ? total / months : 0);
	}
	if (have_ledger) {
		ftk_cost_totals_release(&T);
		ftk_cost_ledger_release(&L);
	}
	ftk_rates_release(&R);
	ftk_strlist_release(&runs);
	return bad ? FTK_EXIT_DATA : 0;
}

