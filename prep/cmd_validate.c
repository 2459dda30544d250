/*
 * cmd_validate.c: ftk-validate (work in progress: JSON checks only).
 * summary: check records against their format (chat, preference, text, tools)
 */
#include <stdio.h>
#include "cli/tool.h"

static const char usage[] =
	"usage: ftk-validate [options] [FILE...]\n"
	FTK_TOOL_COMMON_HELP;

int cmd_validate(int argc, char **argv)
{
	static const struct option opts[] = { FTK_TOOL_LONGOPTS, { 0 } };
	struct ftk_tool t;
	struct ftk_line line;
	int c;
	ftk_tool_init(&t, "ftk-validate", usage);
	t.fail_on_reject = 1;
	while ((c = getopt_long(argc, argv, FTK_TOOL_SHORTOPTS, opts, NULL)) != -1)
		if (!ftk_tool_opt(&t, c, optarg))
			ftk_tool_usage_error(&t, NULL);
	ftk_tool_start(&t, argc - optind, argv + optind);
	while (ftk_tool_next(&t, &line)) {
		cJSON *rec = ftk_tool_parse(&t, &line);
		if (!rec)
			continue;
		ftk_tool_emit(&t, &line);
		cJSON_Delete(rec);
	}
	return ftk_tool_finish(&t);
}
