/*
 * ledger_start.c: `ftk-ledger start`, a timer for a work session.
 *
 * The timer is a small JSON file beside the ledger (LEDGER.timer) holding the
 * start time and what `stop` will need; `ftk-ledger stop` turns it into an
 * entry.  It is written whole under a temporary name and then linked into
 * place, so of two starts at once exactly one wins.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ledger/ledger_cmds.h"
#include "lib/json.h"

int ftk_ledger_start(int argc, char **argv)
{
	struct ledger_common c = { 0 };
	double rate = NAN;
	const char *stage = NULL, *note = NULL, *run_opt = NULL, *who = NULL;
	struct ledger_time at = { 0 };
	char tp[4096], tmp[4200], ts[32];
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Options"),
		FTK_OPT_STRING(0, "stage", &stage, "S", "prep, train, eval, review or serve (required)"),
		FTK_OPT_STRING(0, "run", &run_opt, "NAME", "the run the work belongs to (default $FTK_RUN)"),
		FTK_OPT_STRING(0, "who", &who, "NAME", "the person; prices the hours from their rates row"),
		FTK_OPT_DOUBLE(0, "rate", &rate, "USD", 0, HUGE_VAL, "dollars per hour, instead of the rates file"),
		FTK_OPT_STRING(0, "note", &note, "TEXT", "what was done"),
		LEDGER_OPT_TIME("at", &at, "the clock time the session started (default now)"),
		LEDGER_OPTS_COMMON(&c),
		FTK_OPT_END(),
	};
	static const char *const usage[] = {
		"ftk-ledger start --stage S [options]", "",
		"Start timing a work session; 'ftk-ledger stop' appends the entry.", NULL,
	};
	argc = ftk_parse_options(argc, argv, "ftk-ledger start", opts, usage);
	ledger_no_args("start", argc, argv);
	ledger_check_stage(stage);
	const char *lp = ledger_need(&c);
	ledger_timer_path(lp, tp, sizeof(tp));
	struct strbuf sb = STRBUF_INIT;
	if (strbuf_read_file(&sb, tp) == 0) {
		cJSON *t = cJSON_Parse(sb.buf);
		const char *since = t ? ftk_json_get_str(t, "start") : NULL;
		error("a timer is already running since %s ('%s'): run 'ftk-ledger stop' first",
		      since ? since : "an unreadable time", tp);
		cJSON_Delete(t);
		strbuf_release(&sb);
		return FTK_EXIT_DATA;
	}
	strbuf_release(&sb);
	cJSON *t = cJSON_CreateObject();
	double now = at.set ? at.t : ftk_now();
	ftk_time_rfc3339(now, ts, sizeof(ts));
	cJSON_AddStringToObject(t, "start", ts);
	cJSON_AddStringToObject(t, "stage", stage);
	const char *run = run_opt ? run_opt : getenv("FTK_RUN");
	if (run && *run)
		cJSON_AddStringToObject(t, "run", run);
	if (who)
		cJSON_AddStringToObject(t, "who", who);
	if (note)
		cJSON_AddStringToObject(t, "note", note);
	if (!isnan(rate))
		cJSON_AddNumberToObject(t, "rate_usd_per_hour", rate);
	char *s = cJSON_PrintUnformatted(t);
	cJSON_Delete(t);
	/* written whole under a temporary name, then linked: two starts cannot both win */
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", tp, (long)getpid());
	FILE *f = fopen(tmp, "w");
	int rc = 0;
	if (!f || fprintf(f, "%s\n", s) < 0 || fclose(f) != 0) {
		rc = error("cannot write '%s': %s", tmp, strerror(errno));
	} else if (link(tmp, tp) < 0) {
		rc = error(errno == EEXIST ? "a timer is already running ('%s'): run 'ftk-ledger stop' first"
					   : "cannot create '%s'", tp);
	}
	unlink(tmp);
	cJSON_free(s);
	if (!rc)
		fprintf(stderr, "ftk-ledger: timer started at %s for %s%s%s%s\n", ts, stage,
			run && *run ? " ('" : "", run && *run ? run : "", run && *run ? "')" : "");
	return rc ? FTK_EXIT_DATA : 0;
}
