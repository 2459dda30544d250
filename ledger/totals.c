/*
 * totals.c: what the entries of a ledger add up to, by run, stage and kind,
 * and which rates file prices them.
 *
 * ftk-ledger's report, diff and tco and ftk-report's cost section all start
 * from the same sums; they are made here once.  Each entry keeps its own
 * "usd" when it has one; otherwise it is priced from the rates row in force
 * on its date, and an entry that can be priced neither way counts as 0 USD
 * and is counted as unpriced, so every caller can say how many there were.
 * Reporting them is the caller's business (a callback), as this is library
 * code that never prints.
 */
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "ledger/cost.h"

const char *ftk_cost_rates_path(const char *explicit_path, const char *ledger_path, char *buf,
				size_t n, int must_exist)
{
	if (explicit_path)
		return explicit_path;
	const char *e = getenv("FTK_RATES");
	if (e && *e)
		return e;
	if (!ledger_path)
		return NULL;
	char *copy = xstrdup(ledger_path);
	snprintf(buf, n, "%s/rates.jsonl", dirname(copy));
	free(copy);
	struct stat st;
	if (must_exist && stat(buf, &st) < 0)
		return NULL;
	return buf;
}

int ftk_cost_filter_run(const struct ftk_cost_filter *f, const char *run)
{
	if (!f || !f->n_runs)
		return 1;
	for (size_t i = 0; i < f->n_runs; i++)
		if (!strcmp(f->runs[i], run))
			return 1;
	return 0;
}

static void agg_add(struct ftk_cost_agg *a, const struct ftk_cost_entry *e, double usd, int priced,
		    int example)
{
	int human = !strcmp(ftk_cost_kinds[e->kind], "human");
	int compute = !strcmp(ftk_cost_kinds[e->kind], "compute");
	a->n++;
	if (human)
		a->human_h += e->hours;
	else if (compute)
		a->device_h += e->hours * e->gpus;
	a->hours += e->hours * (compute ? e->gpus : 1);
	a->api_tok += e->tokens_in + e->tokens_out;
	a->usd += usd;
	if (!priced)
		a->unpriced++;
	if (example)
		a->example_priced++;
}

struct ftk_cost_run_totals *ftk_cost_totals_run(const struct ftk_cost_totals *T, const char *run)
{
	for (size_t i = 0; i < T->n_runs; i++)
		if (!strcmp(T->runs[i].name, run))
			return &T->runs[i];
	return NULL;
}

void ftk_cost_totals_compute(struct ftk_cost_totals *T, const struct ftk_cost_ledger *L,
			     const struct ftk_rates *R, const struct ftk_cost_filter *f,
			     void (*unpriced)(void *ctx, const struct ftk_cost_entry *e,
					      const char *why),
			     void *ctx)
{
	memset(T, 0, sizeof(*T));
	T->first_ts = INFINITY;
	T->last_ts = -INFINITY;
	for (size_t i = 0; i < L->n; i++) {
		const struct ftk_cost_entry *e = &L->e[i];
		if (f && (e->ts < f->since || e->ts >= f->until || !ftk_cost_filter_run(f, e->run)))
			continue;
		double usd = e->usd;
		int priced = 1, example = 0;
		if (isnan(usd)) {
			struct ftk_error err;
			ftk_error_clear(&err);
			if (ftk_rates_price_entry(R, e, &usd, &err) < 0) {
				if (unpriced)
					unpriced(ctx, e, err.msg);
				usd = 0;
				priced = 0;
			} else {
				example = R->path == NULL;
			}
		}
		struct ftk_cost_run_totals *r = ftk_cost_totals_run(T, e->run);
		if (!r) {
			FTK_ALLOC_GROW(T->runs, T->n_runs + 1, T->alloc_runs);
			r = &T->runs[T->n_runs++];
			memset(r, 0, sizeof(*r));
			r->name = e->run;
		}
		agg_add(&r->a, e, usd, priced, example);
		agg_add(&r->by[e->stage][e->kind], e, usd, priced, example);
		agg_add(&T->stage[e->stage], e, usd, priced, example);
		agg_add(&T->kind[e->kind], e, usd, priced, example);
		agg_add(&T->total, e, usd, priced, example);
		if (e->ts < T->first_ts)
			T->first_ts = e->ts;
		if (e->ts > T->last_ts)
			T->last_ts = e->ts;
	}
}

void ftk_cost_totals_release(struct ftk_cost_totals *T)
{
	if (!T)
		return;
	free(T->runs);
	T->runs = NULL;
	T->n_runs = T->alloc_runs = 0;
}
