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

static const char *const usage[] = {
	"ftk-validate [options] [FILE...]", "",
	"Check each record against its format and pass the valid ones through unchanged.", NULL,
};

static void format_cb(const struct ftk_option *opt, const char *arg)
{
	int f = ftk_format_parse(arg);
	if (f < 0 || f == FTK_FMT_ALPACA || f == FTK_FMT_SHAREGPT)
		ftk_usage_error("--%s needs one of chat|preference|prompt-completion|text|auto, not '%s'",
				opt->long_name, arg);
	*(int *)opt->value = f;
}

int cmd_validate(int argc, char **argv)
{
	struct ftk_tool t;
	struct ftk_validate_opts vo;
	struct ftk_verrors errs = { 0 };
	struct ftk_line line;
	long show = 10, shown = 0;

	ftk_tool_init(&t, "ftk-validate", NULL);
	/* NULs and repeated keys are listed with a record's other errors */
	t.own_record_checks = 1;
	t.fail_on_reject = 1;
	ftk_validate_opts_init(&vo);
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Options"),
		FTK_OPT_CALLBACK('f', "format", &vo.format, "FMT", format_cb,
				 "chat, preference, prompt-completion, text, or auto (default:\n"
				 "detected per record)"),
		FTK_OPT_STRING(0, "roles", &vo.roles, "LIST", "allowed roles (default system,user,assistant,tool)"),
		FTK_OPT_SET_INT(0, "any-order", &vo.order, 0, "do not require user and assistant turns to alternate"),
		FTK_OPT_SET_INT(0, "any-last", &vo.last_assistant, 0, "do not require the last turn to be the assistant's"),
		FTK_OPT_SET_INT(0, "no-parts", &vo.allow_parts, 0, "require string content, not lists of content parts"),
		FTK_OPT_LONG(0, "max-chars", &vo.max_chars, "N", 0, LONG_MAX,
			     "reject records with more than N characters of text"),
		FTK_OPT_LONG(0, "show", &show, "N", 0, LONG_MAX, "print the first N errors (default 10, 0 for none)"),
		FTK_OPT_TOOL_COMMON(&t),
		FTK_OPT_END(),
	};
	argc = ftk_parse_options(argc, argv, "ftk-validate", opts, usage);
	ftk_tool_start(&t, argc, argv);
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
		ftk_validate_numbers(line.data, line.len, rec, &errs);
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
