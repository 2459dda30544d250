/*
 * ledger_stop.c: `ftk-ledger stop`, the timer `start` left turned into a
 * people's-hours entry, and the timer removed.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "ledger/ledger_cmds.h"
#include "lib/json.h"

int ftk_ledger_stop(int argc, char **argv)
{
	struct ledger_common c = { 0 };
	const char *note_opt = NULL;
	struct ledger_time at = { 0 };
	struct ftk_rates R;
	char tp[4096];
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Options"),
		FTK_OPT_STRING(0, "note", &note_opt, "TEXT", "what was done (instead of start's --note)"),
		LEDGER_OPT_TIME("at", &at, "the clock time the session ended (default now)"),
		LEDGER_OPTS_COMMON(&c),
		FTK_OPT_END(),
	};
	static const char *const usage[] = {
		"ftk-ledger stop [options]", "",
		"Stop the timer 'ftk-ledger start' began and append the hours as an entry.", NULL,
	};
	argc = ftk_parse_options(argc, argv, "ftk-ledger stop", opts, usage);
	ledger_no_args("stop", argc, argv);
	const char *lp = ledger_need(&c);
	ledger_timer_path(lp, tp, sizeof(tp));
	struct strbuf sb = STRBUF_INIT;
	if (strbuf_read_file(&sb, tp) < 0) {
		strbuf_release(&sb);
		error("no timer is running ('%s'): run 'ftk-ledger start' first", tp);
		return FTK_EXIT_DATA;
	}
	cJSON *t = NULL;
	double start;
	const char *stage = NULL;
	if (ftk_json_parse_object(sb.buf, sb.len, &t, NULL) < 0 ||
	    ftk_cost_time_parse(ftk_json_get_str(t, "start"), &start) < 0 ||
	    ftk_cost_stage_index(stage = ftk_json_get_str(t, "stage")) < 0) {
		cJSON_Delete(t);
		strbuf_release(&sb);
		error("'%s': not a timer written by 'ftk-ledger start'; remove it and log the hours "
		      "with 'ftk-ledger log'", tp);
		return FTK_EXIT_DATA;
	}
	strbuf_release(&sb);
	double now = at.set ? at.t : ftk_now();
	int rc = 0;
	if (now <= start) {
		error("the timer started at %s, after the stop time", ftk_json_get_str(t, "start"));
		rc = -1;
	} else {
		const cJSON *rate = cJSON_GetObjectItemCaseSensitive(t, "rate_usd_per_hour");
		const char *note = note_opt ? note_opt : ftk_json_get_str(t, "note");
		const char *run = ftk_json_get_str(t, "run");
		ledger_load_rates(&c, &R);
		rc = ledger_append_human(lp, &R, start, (now - start) / 3600.0, stage, run ? run : "",
					 ftk_json_get_str(t, "who"), note, cJSON_IsNumber(rate),
					 cJSON_IsNumber(rate) ? rate->valuedouble : 0);
		ftk_rates_release(&R);
		if (rc == 0 && unlink(tp) < 0)
			rc = error("cannot remove the timer '%s': %s", tp, strerror(errno));
	}
	cJSON_Delete(t);
	return rc < 0 ? FTK_EXIT_DATA : 0;
}
