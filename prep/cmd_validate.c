/*
 * cmd_validate.c: ftk-validate, the first thing to run on a new dataset.
 * summary: check records against their format (chat, preference, text, tools)
 *
 * Valid records go to standard output as their original bytes; invalid ones
 * go to --rejects with every error found in them (not just the first), and
 * the first few errors are printed with file, line and field so a person can
 * open the file at the right place.  The closing lines count the records and
 * the errors by kind.  The exit status is 1 when any record is invalid, so
 * `ftk validate data.jsonl >/dev/null && train` works as a gate.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/tool.h"
#include "lib/record.h"
#include "prep/validate.h"

static const char usage[] =
	"usage: ftk-validate [options] [FILE...]\n"
	"\n"
	"Check each record against its format and pass the valid ones through unchanged.\n"
	"\n"
	"Options:\n"
	"  -f, --format FMT     chat, preference, prompt-completion, text, or auto (default:\n"
	"                       detected per record)\n"
	"      --roles LIST     allowed roles (default system,user,assistant,tool)\n"
	"      --any-order      do not require user and assistant turns to alternate\n"
	"      --any-last       do not require the last turn to be the assistant's\n"
	"      --no-parts       require string content, not lists of content parts\n"
	"      --max-chars N    reject records with more than N characters of text\n"
	"      --show N         print the first N errors (default 10, 0 for none)\n"
	"\n" FTK_TOOL_COMMON_HELP;

enum {
	OPT_ROLES = FTK_OPT_FIRST_FREE,
	OPT_ANY_ORDER,
	OPT_ANY_LAST,
	OPT_NO_PARTS,
	OPT_MAX_CHARS,
	OPT_SHOW,
};

int cmd_validate(int argc, char **argv)
{
	static const struct option opts[] = {
		FTK_TOOL_LONGOPTS,
		{ "format", required_argument, NULL, 'f' },
		{ "roles", required_argument, NULL, OPT_ROLES },
		{ "any-order", no_argument, NULL, OPT_ANY_ORDER },
		{ "any-last", no_argument, NULL, OPT_ANY_LAST },
		{ "no-parts", no_argument, NULL, OPT_NO_PARTS },
		{ "max-chars", required_argument, NULL, OPT_MAX_CHARS },
		{ "show", required_argument, NULL, OPT_SHOW },
		{ 0 }
	};
	struct ftk_tool t;
	struct ftk_validate_opts vo;
	struct ftk_verrors errs = { 0 };
	struct ftk_line line;
	long show = 10, shown = 0;
	int c;

	ftk_tool_init(&t, "ftk-validate", usage);
	t.fail_on_reject = 1;
	ftk_validate_opts_init(&vo);
	optind = 1;
	while ((c = getopt_long(argc, argv, FTK_TOOL_SHORTOPTS "f:", opts, NULL)) != -1) {
		if (ftk_tool_opt(&t, c, optarg))
			continue;
		switch (c) {
		case 'f': {
			int f = ftk_format_parse(optarg);
			if (f < 0 || f == FTK_FMT_ALPACA || f == FTK_FMT_SHAREGPT)
				ftk_tool_usage_error(&t, "unknown format '%s' (chat, preference, prompt-completion, text, auto)",
						     optarg);
			vo.format = f;
			break;
		}
		case OPT_ROLES: vo.roles = optarg; break;
		case OPT_ANY_ORDER: vo.order = 0; break;
		case OPT_ANY_LAST: vo.last_assistant = 0; break;
		case OPT_NO_PARTS: vo.allow_parts = 0; break;
		case OPT_MAX_CHARS: vo.max_chars = ftk_tool_parse_long(&t, "--max-chars", optarg, 0, LONG_MAX); break;
		case OPT_SHOW: show = ftk_tool_parse_long(&t, "--show", optarg, 0, LONG_MAX); break;
		default: ftk_tool_usage_error(&t, NULL);
		}
	}
	ftk_tool_start(&t, argc - optind, argv + optind);
	while (ftk_tool_next(&t, &line)) {
		cJSON *rec = ftk_tool_parse(&t, &line);
		if (!rec) {
			if (shown < show) {
				error("%s:%ld: %s", line.file, line.lineno, t.last_error);
				shown++;
			}
			continue;
		}
		errs.n = 0;
		ftk_validate_raw(line.data, line.len, &errs);
		ftk_validate_record(rec, &vo, &errs);
		cJSON_Delete(rec);
		if (!errs.n) {
			ftk_tool_emit(&t, &line);
			continue;
		}
		cJSON *x = cJSON_CreateObject();
		cJSON *arr = cJSON_AddArrayToObject(x, "errors");
		for (size_t i = 0; i < errs.n; i++) {
			struct ftk_verror *v = &errs.v[i];
			cJSON *o = cJSON_CreateObject();
			cJSON_AddStringToObject(o, "kind", v->kind);
			if (v->field[0])
				cJSON_AddStringToObject(o, "field", v->field);
			cJSON_AddStringToObject(o, "message", v->msg);
			cJSON_AddItemToArray(arr, o);
			char key[64];
			snprintf(key, sizeof(key), "error:%s", v->kind);
			ftk_tool_count(&t, key, 1);
			if (shown < show) {
				if (v->field[0])
					error("%s:%ld: %s: %s", line.file, line.lineno, v->field, v->msg);
				else
					error("%s:%ld: %s", line.file, line.lineno, v->msg);
				shown++;
			}
		}
		ftk_tool_reject(&t, &line, errs.v[0].kind, x);
	}
	ftk_verrors_release(&errs);
	return ftk_tool_finish(&t);
}
