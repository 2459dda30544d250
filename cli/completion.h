/*
 * completion.h: shell completion scripts made from the programs' option
 * tables (see completion.c).
 */
#ifndef FTK_COMPLETION_H
#define FTK_COMPLETION_H

#include <stdio.h>
#include "cli/builtins.h"

/*
 * Write the completion script for shell ("bash" or "zsh") to fp, asking each
 * of builtins (ended by a NULL name) for its table in a child process.
 * Returns 0, or -1 for an unknown shell (nothing written).
 */
int ftk_completion_script(FILE *fp, const char *shell, const struct ftk_builtin *builtins);

#endif
