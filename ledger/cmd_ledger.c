/*
 * cmd_ledger.c: ftk-ledger, what a fine-tune really cost.
 * summary: log people's hours, price runs, estimate training cost, report cost per quality point
 *
 * Every ftk tool appends one line per run to the ledger (lib/ledger.h);
 * people add theirs with `log` or a `start`/`stop` timer.  This program reads
 * it back: `report` totals it by run, stage and kind and, given eval
 * summaries, divides what a run cost by the quality it gained over a
 * baseline; `diff` sets two runs side by side; `estimate` predicts a training
 * run before it starts; `tco` adds up what owning the model costs over a
 * horizon.  `rates` shows and extends the dated price table.
 *
 * Two rules run through all of it.  A damaged ledger line is named (file and
 * line) and left out of every total, never guessed at.  A price is the one in
 * force on the entry's date: entries that carry their own "usd" keep it, the
 * others are priced from the rates row dated on or before the entry.  Where
 * the rates are the built-in examples, every output says so.
 *
 * This file only dispatches: each subcommand is a file of its own,
 * ledger/ledger_<sub>.c, with its own option table and --help
 * (ledger_cmds.h); the sums they share are ledger/cost.h's totals.
 */
#include "ledger/ledger_cmds.h"

int cmd_ledger(int argc, char **argv)
{
	ftk_subcommand_fn fn = NULL;
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Commands"),
		FTK_OPT_SUBCOMMAND("log", &fn, ftk_ledger_log, "record people's work (--hours H --stage S)"),
		FTK_OPT_SUBCOMMAND("start", &fn, ftk_ledger_start, "time a work session (--stage S)"),
		FTK_OPT_SUBCOMMAND("stop", &fn, ftk_ledger_stop, "stop the timer; appends the entry"),
		FTK_OPT_SUBCOMMAND("append", &fn, ftk_ledger_append_cmd,
				   "check JSONL entries and append them one by one"),
		FTK_OPT_SUBCOMMAND("rates", &fn, ftk_ledger_rates,
				   "show the rates; 'rates add --type T --name N ...' adds a row"),
		FTK_OPT_SUBCOMMAND("report", &fn, ftk_ledger_report,
				   "totals by run, stage and kind; --eval RUN=summary.json ...\n"
				   "adds cost per quality point"),
		FTK_OPT_SUBCOMMAND("diff", &fn, ftk_ledger_diff, "what changed in cost between two runs"),
		FTK_OPT_SUBCOMMAND("estimate", &fn, ftk_ledger_estimate,
				   "predict a training run's hours and dollars"),
		FTK_OPT_SUBCOMMAND("tco", &fn, ftk_ledger_tco, "total cost of ownership over a horizon"),
		FTK_OPT_GROUP("Options"),
		FTK_OPT_HELP(),
		FTK_OPT_VERSION(),
		FTK_OPT_TEXT("\n'ftk-ledger COMMAND --help' shows the options of a command; every command\n"
			     "takes --ledger FILE (default $FTK_LEDGER) and --rates FILE.\n"
			     "\n"
			     "Exit status: 0 success, 1 data problems (a damaged ledger line, a bad rates row) or\n"
			     "failure, 2 bad usage.\n"),
		FTK_OPT_END(),
	};
	static const char *const usage[] = {
		"ftk-ledger COMMAND [options]", "",
		"Record and price what a fine-tune costs: people's hours, machine hours, API tokens.",
		NULL,
	};
	ftk_progname = "ftk-ledger";
	argc = ftk_parse_options(argc, argv, "ftk-ledger", opts, usage);
	return fn(argc, argv);
}
