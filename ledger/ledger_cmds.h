/*
 * ledger_cmds.h: the subcommands of ftk-ledger, one file each
 * (ledger_<sub>.c), and what they share.
 *
 * These files are program code, like cmd_ledger.c which dispatches to them:
 * they print and exit through cli/tool.h.  The sums and the choice of rates
 * file they rest on are library code in ledger/cost.h (totals.c), which
 * ftk-report uses too.  Each subcommand has its own option table, so
 * `ftk ledger estimate --help` shows estimate's options and an option of
 * another subcommand is an unknown option, with "did you mean".
 */
#ifndef FTK_LEDGER_CMDS_H
#define FTK_LEDGER_CMDS_H

#include "cli/tool.h"
#include "ledger/cost.h"
#include "lib/ledger.h"

int ftk_ledger_log(int argc, char **argv);
int ftk_ledger_start(int argc, char **argv);
int ftk_ledger_stop(int argc, char **argv);
int ftk_ledger_append_cmd(int argc, char **argv);
int ftk_ledger_rates(int argc, char **argv);
int ftk_ledger_report(int argc, char **argv);
int ftk_ledger_diff(int argc, char **argv);
int ftk_ledger_estimate(int argc, char **argv);
int ftk_ledger_tco(int argc, char **argv);

/* The options every subcommand takes. */
struct ledger_common {
	const char *ledger;	/* --ledger, else $FTK_LEDGER */
	const char *rates;	/* --rates */
};
#define LEDGER_OPTS_COMMON(c)                                                                  \
	FTK_OPT_GROUP("Options of every command"),                                             \
	FTK_OPT_STRING(0, "ledger", &(c)->ledger, "FILE", "the ledger (default $FTK_LEDGER)"), \
	FTK_OPT_STRING(0, "rates", &(c)->rates, "FILE",                                        \
		       "the rates (default $FTK_RATES, else rates.jsonl beside the\n"          \
		       "ledger, else the built-in example rates)"),                           \
	FTK_OPT_HELP()

/* A time option (--at, --since, --until, --from): parsed as ftk_cost_time_parse does. */
struct ledger_time {
	double t;
	int set;
	const char *text;	/* as given */
};
void ledger_time_cb(const struct ftk_option *opt, const char *arg);
#define LEDGER_OPT_TIME(l, v, h) FTK_OPT_CALLBACK(0, l, v, "TIME", ledger_time_cb, h)

/* --eval RUN=FILE, repeatable, into a struct ftk_strlist. */
void ledger_eval_cb(const struct ftk_option *opt, const char *arg);

/* The ledger's path, or a usage error when there is none. */
const char *ledger_need(const struct ledger_common *c);

/* Load the rates for c into *R (dies with the file, line and field on a bad row). */
void ledger_load_rates(const struct ledger_common *c, struct ftk_rates *R);

/* The rates' file name, or a warning that the prices are examples. */
const char *ledger_rates_label(const struct ftk_rates *R);

/* A usage error unless stage is one of the five. */
void ledger_check_stage(const char *stage);

/* A usage error naming the subcommand when argument words were given. */
void ledger_no_args(const char *sub, int argc, char **argv);

/*
 * Append a people's-hours entry and say so on stderr.  Priced at rate when
 * have_rate, else from the person's rates row.  Returns 0 or -1 (reported).
 */
int ledger_append_human(const char *lp, const struct ftk_rates *R, double ts, double hours,
			const char *stage, const char *run, const char *who, const char *note,
			int have_rate, double rate);

/* Totals of the ledger c names, its damaged lines reported; returns how many there were. */
int ledger_load_totals(const struct ledger_common *c, const struct ftk_rates *R,
		       struct ftk_cost_ledger *L, struct ftk_cost_totals *T,
		       const struct ftk_cost_filter *f);

/* The timer file of a ledger, "LEDGER.timer". */
void ledger_timer_path(const char *lp, char *buf, size_t n);

/* Round away the last bits of a sum of many small doubles (noise in JSON). */
double ledger_tidy(double x);
cJSON *ledger_agg_json(const struct ftk_cost_agg *a);

#endif
