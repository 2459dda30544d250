/*
 * ftk.c: `ftk <verb> ...`, as git does it: a built-in table first, then a
 * program called ftk-<verb> on PATH (or beside this executable), so that
 * users and other packages can add verbs.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/builtins.h"
#include "cli/completion.h"
#include "cli/tool.h"

static void usage(FILE *fp)
{
	fprintf(fp, "usage: ftk <command> [options] [files]\n"
		    "       ftk <command> --help\n\n"
		    "ftk: datasets you can trust, evals that measure what they claim, and\n"
		    "what a fine-tune really cost.\n\nCommands:\n");
	for (const struct ftk_builtin *b = ftk_builtins; b->name; b++)
		fprintf(fp, "  %-12s %s\n", b->name, b->summary);
	fprintf(fp, "\nEvery command reads JSONL files or standard input (zstd detected) and\n"
		    "writes data to standard output; messages go to standard error.\n"
		    "Exit status: 0 success, 1 data problems or failure, 2 bad usage.\n");
}

int main(int argc, char **argv)
{
	ftk_tool_cleanup_install();
	if (argc < 2) {
		usage(stderr);
		return FTK_EXIT_USAGE;
	}
	const char *verb = argv[1];
	if (!strcmp(verb, "--help") || !strcmp(verb, "-h") || !strcmp(verb, "help")) {
		if (argc > 2 && strcmp(verb, "help") == 0) {
			verb = argv[2];
			char *av[] = { (char *)verb, "--help", NULL };
			for (const struct ftk_builtin *b = ftk_builtins; b->name; b++)
				if (!strcmp(b->name, verb))
					return b->fn(2, av);
		}
		usage(stdout);
		return 0;
	}
	/* hidden: the completion scripts `make install` writes (cli/completion.c) */
	if (!strcmp(verb, "--completion")) {
		if (argc != 3 || ftk_completion_script(stdout, argv[2], ftk_builtins) < 0) {
			fprintf(stderr, "usage: ftk --completion bash|zsh\n");
			return FTK_EXIT_USAGE;
		}
		return fflush(stdout) == 0 ? 0 : FTK_EXIT_DATA;
	}
	if (!strcmp(verb, "--version")) {
		printf("ftk %s\n", FTK_VERSION);
		return 0;
	}
	for (const struct ftk_builtin *b = ftk_builtins; b->name; b++) {
		if (!strcmp(b->name, verb)) {
			char name[64];
			snprintf(name, sizeof(name), "ftk-%s", verb);
			argv[1] = name;
			return b->fn(argc - 1, argv + 1);
		}
	}
	/* ftk-<verb> beside this program, then on PATH */
	char prog[PATH_MAX], self[PATH_MAX];
	static char path[2 * PATH_MAX + 2];
	snprintf(prog, sizeof(prog), "ftk-%s", verb);
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			snprintf(path, sizeof(path), "%s/%s", self, prog);
			if (access(path, X_OK) == 0) {
				argv[1] = prog;
				execv(path, argv + 1);
			}
		}
	}
	argv[1] = prog;
	execvp(prog, argv + 1);
	if (errno == ENOENT) {
		const char *names[128];
		size_t nn = 0, idx[8];
		for (const struct ftk_builtin *b = ftk_builtins; b->name && nn < FTK_ARRAY_SIZE(names); b++)
			names[nn++] = b->name;
		size_t k = ftk_similar(verb, names, nn, idx, FTK_ARRAY_SIZE(idx), FTK_SIMILAR_COMMANDS);
		fprintf(stderr, "ftk: '%s' is not an ftk command", verb);
		for (size_t i = 0; i < k; i++)
			fprintf(stderr, "%s'%s'", i ? ", " : k > 1 ? "; did you mean one of " : "; did you mean ",
				names[idx[i]]);
		fprintf(stderr, "%s See 'ftk --help'.\n", k ? "?" : ".");
		return FTK_EXIT_USAGE;
	}
	fprintf(stderr, "ftk: cannot run '%s': %s\n", prog, strerror(errno));
	return FTK_EXIT_DATA;
}
