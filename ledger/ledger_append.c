/*
 * ledger_append.c: `ftk-ledger append [FILE...]`, entries made elsewhere
 * checked one by one and appended; a line that is not an entry is named
 * (file and line) and left out.
 */
#include <string.h>
#include "ledger/ledger_cmds.h"
#include "lib/stream.h"

int ftk_ledger_append_cmd(int argc, char **argv)
{
	struct ledger_common c = { 0 };
	struct ftk_option opts[] = {
		LEDGER_OPTS_COMMON(&c),
		FTK_OPT_END(),
	};
	static const char *const usage[] = {
		"ftk-ledger append [options] [FILE...]", "",
		"Check JSONL ledger entries (files or standard input) and append them one by one.", NULL,
	};
	argc = ftk_parse_options(argc, argv, "ftk-ledger append", opts, usage);
	const char *lp = ledger_need(&c);
	char *stdin_only[] = { "-" };
	char **files = argc ? argv : stdin_only;
	int n = argc ? argc : 1, bad = 0;
	long added = 0;
	for (int i = 0; i < n; i++) {
		struct ftk_reader *r;
		struct ftk_line line;
		struct ftk_error err;
		if (ftk_reader_open(&r, files[i], &err) < 0) {
			error("%s", err.msg);
			bad++;
			continue;
		}
		int rc;
		while ((rc = ftk_reader_next(r, &line, &err)) > 0) {
			struct ftk_cost_entry e;
			if (strspn(line.data, " \t\r") == line.len)
				continue;
			if (line.utf8_error >= 0) {
				error("%s:%ld: invalid UTF-8 at byte %ld", files[i], line.lineno,
				      line.utf8_error + 1);
				bad++;
				continue;
			}
			if (ftk_cost_entry_parse(line.data, line.len, &e, &err) < 0) {
				ftk_error_place(&err, files[i], line.lineno);
				error_at(&err);
				bad++;
				continue;
			}
			cJSON_Delete(e.json);
			int arc = ftk_ledger_append(lp, line.data, line.len, &err);
			if (arc == FTK_ELIMIT) {	/* this line only: the others still go in */
				ftk_error_place(&err, files[i], line.lineno);
				error_at(&err);
				bad++;
				continue;
			}
			if (arc < 0) {
				ftk_reader_close(r);
				die("%s", err.msg);
			}
			added++;
		}
		if (rc < 0) {
			error_at(&err);
			bad++;
		}
		ftk_reader_close(r);
	}
	if (bad)
		error("appended %ld, left out %d line%s that %s not ledger entries", added, bad,
		      bad == 1 ? "" : "s", bad == 1 ? "was" : "were");
	return bad ? FTK_EXIT_DATA : 0;
}
