/* builtins.h: the table of commands built into `ftk` (generated, see gen-builtins.sh). */
#ifndef FTK_BUILTINS_H
#define FTK_BUILTINS_H
struct ftk_builtin {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};
extern const struct ftk_builtin ftk_builtins[];
#endif
