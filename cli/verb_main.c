/*
 * verb_main.c: the main() of every ftk-<verb> program.  Compiled once per
 * verb with -DFTK_CMD=cmd_<verb>, so each program is a small main over the
 * command function that `ftk <verb>` also calls.
 */
#include "cli/tool.h"

int FTK_CMD(int argc, char **argv);

int main(int argc, char **argv)
{
	ftk_tool_cleanup_install();
	return FTK_CMD(argc, argv);
}
