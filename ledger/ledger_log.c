/*
 * ledger_log.c: `ftk-ledger log`, people's hours as a ledger entry.
 *
 * The hours are priced when they are logged (--rate, else the person's rates
 * row on that date), so a later change of rates never reprices them.
 */
#include <math.h>
#include "ledger/ledger_cmds.h"

int ftk_ledger_log(int argc, char **argv)
{
	struct ledger_common c = { 0 };
	double hours = NAN, rate = NAN;
	const char *stage = NULL, *note = NULL, *run = NULL, *who = NULL;
	struct ledger_time at = { 0 };
	struct ftk_rates R;
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Options"),
		FTK_OPT_DOUBLE(0, "hours", &hours, "H", 0, HUGE_VAL, "hours worked (required)"),
		FTK_OPT_STRING(0, "stage", &stage, "S", "prep, train, eval, review or serve (required)"),
		FTK_OPT_STRING(0, "run", &run, "NAME", "the run the work belongs to (default $FTK_RUN)"),
		FTK_OPT_STRING(0, "who", &who, "NAME", "the person; prices the hours from their rates row"),
		FTK_OPT_DOUBLE(0, "rate", &rate, "USD", 0, HUGE_VAL, "dollars per hour, instead of the rates file"),
		FTK_OPT_STRING(0, "note", &note, "TEXT", "what was done"),
		LEDGER_OPT_TIME("at", &at, "the entry's date, 2026-11-23 or 2026-11-23T13:00:00Z;\n"
					   "default now"),
		LEDGER_OPTS_COMMON(&c),
		FTK_OPT_END(),
	};
	static const char *const usage[] = {
		"ftk-ledger log --hours H --stage S [options]", "",
		"Record people's work: hours, priced at their rate on that date.", NULL,
	};
	argc = ftk_parse_options(argc, argv, "ftk-ledger log", opts, usage);
	ledger_no_args("log", argc, argv);
	if (isnan(hours) || hours <= 0)
		ftk_usage_error("log: --hours is required and must be more than 0");
	ledger_check_stage(stage);
	const char *lp = ledger_need(&c);
	ledger_load_rates(&c, &R);
	int rc = ledger_append_human(lp, &R, at.set ? at.t : ftk_now(), hours, stage, run, who, note,
				     !isnan(rate), isnan(rate) ? 0 : rate);
	ftk_rates_release(&R);
	return rc < 0 ? FTK_EXIT_DATA : 0;
}
