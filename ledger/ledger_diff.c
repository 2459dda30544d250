/*
 * ledger_diff.c: `ftk-ledger diff RUN_A RUN_B`, two runs' costs side by side
 * by stage and kind, with the training tokens and devices that usually
 * explain the difference.
 */
#include <stdio.h>
#include <string.h>
#include "ledger/ledger_cmds.h"

int ftk_ledger_diff(int argc, char **argv)
{
	struct ledger_common c = { 0 };
	int json = 0;
	struct ftk_rates R;
	struct ftk_cost_ledger L = { 0 };
	struct ftk_cost_totals T;
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Options"),
		FTK_OPT_FLAG(0, "json", &json, "the comparison as JSON"),
		LEDGER_OPTS_COMMON(&c),
		FTK_OPT_END(),
	};
	static const char *const usage[] = {
		"ftk-ledger diff RUN_A RUN_B [options]", "",
		"What changed in cost between two runs, by stage and kind.", NULL,
	};
	argc = ftk_parse_options(argc, argv, "ftk-ledger diff", opts, usage);
	if (argc != 2)
		ftk_usage_error("diff: expected two run names, RUN_A RUN_B");
	ledger_load_rates(&c, &R);
	int bad = ledger_load_totals(&c, &R, &L, &T, NULL);
	struct ftk_cost_run_totals *ab[2] = { NULL, NULL };
	for (int w = 0; w < 2; w++)
		for (size_t i = 0; i < T.n_runs; i++)
			if (!strcmp(T.runs[i].name, argv[w]))
				ab[w] = &T.runs[i];
	int rc = 0;
	for (int w = 0; w < 2; w++)
		if (!ab[w])
			rc = error("diff: no entries for run '%s' in the ledger", argv[w]);
	/* devices and training tokens, which usually explain a difference */
	struct strbuf dev[2] = { STRBUF_INIT, STRBUF_INIT };
	double tokens[2] = { 0, 0 };
	for (size_t i = 0; rc == 0 && i < L.n; i++) {
		const struct ftk_cost_entry *e = &L.e[i];
		for (int w = 0; w < 2; w++) {
			if (strcmp(e->run, argv[w]))
				continue;
			tokens[w] += e->tokens;
			if (e->device && strcmp(ftk_cost_stages[e->stage], "prep")) {
				char d[128];
				snprintf(d, sizeof(d), "%s%s x%g", dev[w].len ? ", " : "", e->device, e->gpus);
				if (!strstr(dev[w].buf, d + (dev[w].len ? 2 : 0)))
					strbuf_addstr(&dev[w], d);
			}
		}
	}
	if (rc == 0 && json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "a", argv[0]);
		cJSON_AddStringToObject(j, "b", argv[1]);
		cJSON *rows = cJSON_AddArrayToObject(j, "rows");
		for (int s = 0; s < FTK_COST_N_STAGES; s++)
			for (int k = 0; k < FTK_COST_N_KINDS; k++) {
				const struct ftk_cost_agg *x = &ab[0]->by[s][k], *y = &ab[1]->by[s][k];
				if (!x->n && !y->n)
					continue;
				cJSON *r = cJSON_CreateObject();
				cJSON_AddStringToObject(r, "stage", ftk_cost_stages[s]);
				cJSON_AddStringToObject(r, "kind", ftk_cost_kinds[k]);
				cJSON_AddItemToObject(r, "a", ledger_agg_json(x));
				cJSON_AddItemToObject(r, "b", ledger_agg_json(y));
				cJSON_AddNumberToObject(r, "usd_change", y->usd - x->usd);
				cJSON_AddItemToArray(rows, r);
			}
		cJSON_AddItemToObject(j, "total_a", ledger_agg_json(&ab[0]->a));
		cJSON_AddItemToObject(j, "total_b", ledger_agg_json(&ab[1]->a));
		cJSON_AddNumberToObject(j, "usd_change", ab[1]->a.usd - ab[0]->a.usd);
		cJSON_AddNumberToObject(j, "tokens_a", tokens[0]);
		cJSON_AddNumberToObject(j, "tokens_b", tokens[1]);
		char *s = cJSON_Print(j);
		puts(s);
		cJSON_free(s);
		cJSON_Delete(j);
	} else if (rc == 0) {
		printf("%-15s %21s %21s %21s\n", "", argv[0], argv[1], "change");
		printf("%-15s %10s %10s %10s %10s %10s %10s\n", "stage/kind", "hours", "usd", "hours",
		       "usd", "hours", "usd");
		for (int s = 0; s < FTK_COST_N_STAGES; s++)
			for (int k = 0; k < FTK_COST_N_KINDS; k++) {
				const struct ftk_cost_agg *x = &ab[0]->by[s][k], *y = &ab[1]->by[s][k];
				char key[32];
				if (!x->n && !y->n)
					continue;
				snprintf(key, sizeof(key), "%s/%s", ftk_cost_stages[s], ftk_cost_kinds[k]);
				double hx = x->human_h + x->device_h, hy = y->human_h + y->device_h;
				printf("%-15s %10.2f %10.2f %10.2f %10.2f %+10.2f %+10.2f\n", key, hx, x->usd, hy,
				       y->usd, hy - hx, y->usd - x->usd);
			}
		const struct ftk_cost_agg *x = &ab[0]->a, *y = &ab[1]->a;
		printf("%-15s %10.2f %10.2f %10.2f %10.2f %+10.2f %+10.2f\n", "total",
		       x->human_h + x->device_h, x->usd, y->human_h + y->device_h, y->usd,
		       y->human_h + y->device_h - x->human_h - x->device_h, y->usd - x->usd);
		printf("hours are people's hours for human rows and device hours (hours x gpus) for "
		       "compute rows\n");
		printf("training tokens: %.0f -> %.0f\n", tokens[0], tokens[1]);
		printf("devices: %s -> %s\n", dev[0].len ? dev[0].buf : "none",
		       dev[1].len ? dev[1].buf : "none");
	}
	strbuf_release(&dev[0]);
	strbuf_release(&dev[1]);
	ftk_cost_totals_release(&T);
	ftk_cost_ledger_release(&L);
	ftk_rates_release(&R);
	return rc < 0 || bad ? FTK_EXIT_DATA : 0;
}

