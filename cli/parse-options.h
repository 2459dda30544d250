/*
 * parse-options.h: one declarative table of options per program, as git's
 * parse-options.h.
 *
 * Each option is written once, as a row of {short, long, kind, target,
 * range, help}; the same table parses the command line, prints --help, lists
 * the options for the man-page check and for shell completion
 * (--ftk-completion-helper, hidden), and words every usage error the same
 * way:
 *
 *	ftk-x: <message>
 *	Try 'ftk-x --help' for more information.
 *
 * with exit status 2.  An unknown option or subcommand gets "did you mean"
 * from the table (a weighted Damerau-Levenshtein distance, as git's help.c).
 *
 * Parsing follows getopt_long as users know it: `--opt=val`, `--opt val`, a
 * unique prefix of a long name, `-x`, `-xVAL`, `-x VAL`, bundled short flags
 * (`-qv`), options anywhere among the arguments, `--` ends the options, and a
 * lone `-` is an argument (standard input).
 *
 * A program declares its table where its targets live:
 *
 *	long show = 10;
 *	const char *roles = NULL;
 *	struct ftk_option opts[] = {
 *		FTK_OPT_GROUP("Options"),
 *		FTK_OPT_STRING(0, "roles", &roles, "LIST", "allowed roles"),
 *		FTK_OPT_LONG(0, "show", &show, "N", 0, LONG_MAX, "print the first N errors"),
 *		FTK_OPT_TOOL_COMMON(&t),
 *		FTK_OPT_END(),
 *	};
 *	static const char *const usage[] = { "ftk-validate [options] [FILE...]", "",
 *		"Check each record against its format.", NULL };
 *	argc = ftk_parse_options(argc, argv, "ftk-validate", opts, usage);
 *	// argv[0..argc) are now the arguments that were not options
 *
 * Subcommands (FTK_OPT_SUBCOMMAND) stop the parse at the first argument:
 * it must name one (else a usage error with "did you mean"), the function is
 * stored in the target, and the returned argv starts at the subcommand's
 * word, ready for the subcommand's own table and its own --help.  When the
 * subcommands are optional (FTK_OPT_SUBCOMMAND_OPTIONAL) and no argument is
 * given, the target stays as it was and the parse returns 0.
 */
#ifndef FTK_PARSE_OPTIONS_H
#define FTK_PARSE_OPTIONS_H

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum ftk_option_kind {
	FTK_OPTION_END = 0,
	FTK_OPTION_GROUP,	/* a heading in --help ("Options" prints "\nOptions:\n") */
	FTK_OPTION_TEXT,	/* lines printed as they are in --help (help) */
	FTK_OPTION_FLAG,	/* int *: set to defval (1 unless given) */
	FTK_OPTION_INT,		/* int *, range [ilo, ihi] */
	FTK_OPTION_LONG,	/* long *, range [ilo, ihi] */
	FTK_OPTION_DOUBLE,	/* double *, range [dlo, dhi] */
	FTK_OPTION_UINT64,	/* uint64_t *: any integer from 0 to 2^64-1 (seeds) */
	FTK_OPTION_SIZE,	/* uint64_t *: bytes, "64M" or "1.5GiB" (ftk_parse_size), range [ulo, uhi] */
	FTK_OPTION_STRING,	/* const char **: the argument, borrowed from argv */
	FTK_OPTION_STRING_LIST,	/* struct ftk_strlist *: every value, in order */
	FTK_OPTION_CHOICE,	/* int *: index of the argument in choices "a|b|c" */
	FTK_OPTION_CALLBACK,	/* cb(opt, arg); arg NULL when FTK_OPTF_NOARG */
	FTK_OPTION_SUBCOMMAND,	/* ftk_subcommand_fn *: set to fn */
	FTK_OPTION_HELP,	/* -h, --help: print the help, exit 0 */
	FTK_OPTION_VERSION,	/* --version: print "<prog> <version>", exit 0 */
};

enum {
	FTK_OPTF_NOARG = 1,	/* a callback that takes no argument */
	FTK_OPTF_HIDDEN = 2,	/* parsed, but not in --help nor completion */
	FTK_OPTF_SUB_OPTIONAL = 4,	/* on a subcommand row: the command runs without one too */
	FTK_OPTF_OPEN = 8,	/* FTK_OPTION_DOUBLE: the range's ends are excluded */
};

struct ftk_option;
typedef void (*ftk_option_cb)(const struct ftk_option *opt, const char *arg);
typedef int (*ftk_subcommand_fn)(int argc, char **argv);

struct ftk_option {
	enum ftk_option_kind kind;
	int short_name;		/* 'o', or 0 */
	const char *long_name;	/* "output" (no dashes), or NULL; a subcommand's name */
	void *value;		/* the target; its type follows kind */
	const char *argh;	/* the argument's name in --help ("FILE"); NULL: none */
	const char *help;	/* may hold '\n' for more lines */
	long long ilo, ihi;	/* FTK_OPTION_INT, _LONG */
	double dlo, dhi;	/* FTK_OPTION_DOUBLE */
	uint64_t ulo, uhi;	/* FTK_OPTION_SIZE */
	const char *choices;	/* FTK_OPTION_CHOICE: "nf4|none" */
	intptr_t defval;	/* FTK_OPTION_FLAG: the value set */
	ftk_option_cb cb;	/* FTK_OPTION_CALLBACK */
	ftk_subcommand_fn fn;	/* FTK_OPTION_SUBCOMMAND */
	int flags;		/* FTK_OPTF_* */
	int *given;		/* NULL, or counts the times the option is given: a program
				   that must know which were (ftk-train --resume allows
				   no training option) points the rows it asks about here */
};

/* The values of a repeatable option (FTK_OPTION_STRING_LIST), borrowed from argv. */
struct ftk_strlist {
	const char **v;
	size_t n, alloc;
};
/* Free the array (not the strings, which belong to argv).  NULL-safe. */
void ftk_strlist_release(struct ftk_strlist *l);

#define FTK_OPT_END() { .kind = FTK_OPTION_END }
#define FTK_OPT_GROUP(h) { .kind = FTK_OPTION_GROUP, .help = (h) }
#define FTK_OPT_TEXT(h) { .kind = FTK_OPTION_TEXT, .help = (h) }
#define FTK_OPT_FLAG(s, l, v, h) \
	{ .kind = FTK_OPTION_FLAG, .short_name = (s), .long_name = (l), .value = (v), .help = (h), .defval = 1 }
#define FTK_OPT_SET_INT(s, l, v, val, h) \
	{ .kind = FTK_OPTION_FLAG, .short_name = (s), .long_name = (l), .value = (v), .help = (h), .defval = (val) }
#define FTK_OPT_INT(s, l, v, a, lo, hi, h)                                                  \
	{ .kind = FTK_OPTION_INT, .short_name = (s), .long_name = (l), .value = (v), .argh = (a), \
	  .help = (h), .ilo = (lo), .ihi = (hi) }
#define FTK_OPT_LONG(s, l, v, a, lo, hi, h)                                                  \
	{ .kind = FTK_OPTION_LONG, .short_name = (s), .long_name = (l), .value = (v), .argh = (a), \
	  .help = (h), .ilo = (lo), .ihi = (hi) }
#define FTK_OPT_DOUBLE(s, l, v, a, lo, hi, h)                                                  \
	{ .kind = FTK_OPTION_DOUBLE, .short_name = (s), .long_name = (l), .value = (v), .argh = (a), \
	  .help = (h), .dlo = (lo), .dhi = (hi) }
/* a number strictly between lo and hi (a Jaccard threshold in (0, 1)) */
#define FTK_OPT_DOUBLE_OPEN(s, l, v, a, lo, hi, h)                                             \
	{ .kind = FTK_OPTION_DOUBLE, .short_name = (s), .long_name = (l), .value = (v), .argh = (a), \
	  .help = (h), .dlo = (lo), .dhi = (hi), .flags = FTK_OPTF_OPEN }
#define FTK_OPT_UINT64(s, l, v, a, h) \
	{ .kind = FTK_OPTION_UINT64, .short_name = (s), .long_name = (l), .value = (v), .argh = (a), .help = (h) }
/* a size in bytes from lo to hi (UINT64_MAX: no upper end); see ftk_parse_size */
#define FTK_OPT_SIZE(s, l, v, a, lo, hi, h)                                                  \
	{ .kind = FTK_OPTION_SIZE, .short_name = (s), .long_name = (l), .value = (v), .argh = (a), \
	  .help = (h), .ulo = (lo), .uhi = (hi) }
#define FTK_OPT_STRING(s, l, v, a, h) \
	{ .kind = FTK_OPTION_STRING, .short_name = (s), .long_name = (l), .value = (v), .argh = (a), .help = (h) }
#define FTK_OPT_STRING_LIST(s, l, v, a, h)                                                       \
	{ .kind = FTK_OPTION_STRING_LIST, .short_name = (s), .long_name = (l), .value = (v), .argh = (a), \
	  .help = (h) }
/* an argh of NULL shows the choices themselves ("--quant nf4|none") */
#define FTK_OPT_CHOICE(s, l, v, a, ch, h)                                                     \
	{ .kind = FTK_OPTION_CHOICE, .short_name = (s), .long_name = (l), .value = (v), .argh = (a), \
	  .choices = (ch), .help = (h) }
#define FTK_OPT_CALLBACK(s, l, v, a, f, h)                                                      \
	{ .kind = FTK_OPTION_CALLBACK, .short_name = (s), .long_name = (l), .value = (v), .argh = (a), \
	  .cb = (f), .help = (h) }
#define FTK_OPT_CALLBACK_NOARG(s, l, v, f, h)                                                \
	{ .kind = FTK_OPTION_CALLBACK, .short_name = (s), .long_name = (l), .value = (v), .cb = (f), \
	  .help = (h), .flags = FTK_OPTF_NOARG }
#define FTK_OPT_SUBCOMMAND(name, v, f, h) \
	{ .kind = FTK_OPTION_SUBCOMMAND, .long_name = (name), .value = (v), .fn = (f), .help = (h) }
/* a subcommand the command may also run without (`rates` shows, `rates add` adds) */
#define FTK_OPT_SUBCOMMAND_OPTIONAL(name, v, f, h)                                        \
	{ .kind = FTK_OPTION_SUBCOMMAND, .long_name = (name), .value = (v), .fn = (f), .help = (h), \
	  .flags = FTK_OPTF_SUB_OPTIONAL }
#define FTK_OPT_HELP() { .kind = FTK_OPTION_HELP, .short_name = 'h', .long_name = "help", \
			 .help = "show this help" }
#define FTK_OPT_VERSION() { .kind = FTK_OPTION_VERSION, .long_name = "version", \
			    .help = "show the version" }
/* a hidden option (parsed, not listed): wrap any FTK_OPT_* row's fields */
#define FTK_OPT_HIDDEN_FLAG(l, v) \
	{ .kind = FTK_OPTION_FLAG, .long_name = (l), .value = (v), .defval = 1, .flags = FTK_OPTF_HIDDEN }

/*
 * Parse argv[1..argc) against opts (ended by FTK_OPT_END).  prog names the
 * command in --help and in the usage hint ("ftk-ledger estimate"); errors are
 * prefixed with ftk_progname (cli/tool.h).  usage is NULL-terminated: the
 * synopsis lines, then "" and the description lines (may be NULL).
 *
 * Returns the number of arguments left and moves them to argv[0..n) (argv[n]
 * is set to NULL), in their order.  With subcommands, argv[0] is the
 * subcommand's word and the rest follow it unparsed.  Exits 2 with a message
 * on a usage error, 0 after --help or --version.
 */
int ftk_parse_options(int argc, char **argv, const char *prog, const struct ftk_option *opts,
		      const char *const *usage);

/* Whether the option's row takes a value (--opt VAL), as the parser decides. */
int ftk_option_takes_arg(const struct ftk_option *o);

/* Print the help that --help prints to fp. */
void ftk_parse_options_help(FILE *fp, const char *prog, const struct ftk_option *opts,
			    const char *const *usage);

/*
 * "ftk-x: <msg>", the usage hint of the command being parsed (or of
 * ftk_progname when none is), exit 2.  fmt may be NULL (hint only).
 */
void ftk_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* The same with a va_list, for wrappers (ftk_tool_usage_error). */
void ftk_usage_verror(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0), noreturn));

/*
 * Parse s as the value of opt (an FTK_OPTION_INT, _LONG or _DOUBLE row) into
 * *out, or exit 2 with the one wording every program uses:
 *   "--x needs an integer from LO to HI, not 'S'"
 *   "--x needs an integer of at least LO, not 'S'"   (HI the type's maximum)
 *   "--x needs a number from LO to HI, not 'S'" / "... of at least LO ..."
 */
long long ftk_opt_parse_integer(const char *name, const char *s, long long lo, long long hi);
double ftk_opt_parse_number(const char *name, const char *s, double lo, double hi);
/*
 * The same for a range without its ends (FTK_OPTF_OPEN):
 *   "--x needs a number above LO and below HI, not 'S'" / "... above LO, not 'S'"
 */
double ftk_opt_parse_number_open(const char *name, const char *s, double lo, double hi);

/*
 * Sizes, as every ftk option that takes one reads them: a whole number of
 * bytes, or a number followed by a unit, K, M, G or T, each 1024 times the
 * one before (binary: memory and buffer limits are powers of two, git's
 * core.bigFileThreshold reads "512m" the same way, and the parsers this one
 * replaced read "4GB" as 4 GiB, so no script changes meaning).  Letters may
 * be of either case, and the unit may be followed by "B" or "iB":
 * 64M = 64m = 64MB = 64MiB = 67108864.  "B" alone means bytes (512B), not
 * dd's 512-byte blocks.  A number with a unit may have a decimal fraction
 * (1.5G), rounded down to a whole byte; one without a unit may not (a byte
 * count is whole, and "0.5" is more likely a unit forgotten than half a
 * byte).  Nothing else: no sign, no spaces, no exponent, no hex, no
 * decimal (1000) units.
 *
 * Returns 0 with the bytes in *out, or -1 (s malformed, or over 2^64-1
 * bytes: 99999999999999T) with *out untouched.  Never prints nor exits.
 */
int ftk_parse_size(const char *s, uint64_t *out);

/*
 * Write v as the shortest exact size (8388608 as "8M", 1536 as "1536") into
 * buf; returns buf.  The inverse of ftk_parse_size for whole units.
 */
char *ftk_format_size(uint64_t v, char *buf, size_t n);

/*
 * Parse s as the value of an FTK_OPTION_SIZE row into bytes, or exit 2 with
 * the one wording every program uses:
 *   "--x needs a size from LO to HI (such as 64M or 1.5G), not 'S'"
 *   "--x needs a size of at least LO (such as 64M or 1.5G), not 'S'"   (HI UINT64_MAX)
 *   "--x needs a size (such as 64M or 1.5G), not 'S'"   (and LO 0)
 * with LO and HI written by ftk_format_size.
 */
uint64_t ftk_opt_parse_size(const char *name, const char *s, uint64_t lo, uint64_t hi);

/*
 * The index of s in choices ("nf4|none"), or exit 2 with
 * "--x needs one of nf4|none, not 'S'".
 */
int ftk_opt_parse_choice(const char *name, const char *s, const char *choices);

/*
 * Check ARG as a value of row O, as the parse would, without storing it or
 * counting it as given; a bad value is a usage error that names NAME, so a
 * caller that gathered the value elsewhere (ftk-train's --config file) can
 * say where it came from.  Strings and callbacks are not checked here.
 */
void ftk_option_check(const struct ftk_option *o, const char *name, const char *arg);

/*
 * Weighted Damerau-Levenshtein distance, as git's levenshtein(): w for a swap
 * of two neighbours, s a substitution, a an insertion, d a deletion.
 */
int ftk_levenshtein(const char *s1, const char *s2, int w, int s, int a, int d);

/*
 * The candidates most like word, as git's help.c picks them: a candidate
 * that word begins is nearest (0), else 1 + the distance with git's weights
 * (a swap 0, a substitution 2, an insertion 1, a deletion 3); the nearest
 * are offered when nearer than floor (git: 7 for commands).  Writes up to
 * max indexes into names to out and returns how many.
 */
#define FTK_SIMILAR_COMMANDS 7	/* git help.c's SIMILARITY_FLOOR, for verbs */
#define FTK_SIMILAR_OPTIONS 4	/* options and subcommands: a slip, not a guess */
size_t ftk_similar(const char *word, const char *const *names, size_t n, size_t *out, size_t max,
		   int floor);

#endif
