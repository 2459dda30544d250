/*
 * test_parse_options.c: the option table of cli/parse-options.h.
 *
 * Parsing ends in exit() on errors, --help and --version, so each case runs
 * the parser in a child process with stdout and stderr in a file, and checks
 * the exit status and the exact text: the parsed values (printed by the
 * child), the usage errors' one wording, the suggestions and the help.
 */
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "testutil.h"
#include "cli/parse-options.h"
#include "cli/tool.h"

static int sub_called;
static int sub_a(int argc, char **argv) { (void)argc; (void)argv; return 11; }
static int sub_b(int argc, char **argv) { (void)argc; (void)argv; return 12; }

static struct ftk_strlist seen_cb;
static void note_cb(const struct ftk_option *o, const char *arg)
{
	(void)o;
	FTK_ALLOC_GROW(seen_cb.v, seen_cb.n + 1, seen_cb.alloc);
	seen_cb.v[seen_cb.n++] = arg ? arg : "(none)";
}

/* The table every parse case uses; prints what it parsed. */
static void parse_and_print(int argc, char **argv)
{
	int quiet = 0, verbose = 0, quant = 0, n = 5;
	long big = 0;
	double temp = 1.0;
	const char *format = "auto", *output = NULL;
	struct ftk_strlist runs = { 0 };
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Options"),
		FTK_OPT_STRING('f', "format", &format, "FMT", "the format"),
		FTK_OPT_STRING(0, "format-version", &output, "V", "a longer name the short one begins"),
		FTK_OPT_INT('n', "count", &n, "N", 1, 100, "how many\n(second line)"),
		FTK_OPT_LONG(0, "big", &big, "N", 0, LONG_MAX, "a long"),
		FTK_OPT_DOUBLE('t', "temperature", &temp, "T", 0, 2, "sampling temperature"),
		FTK_OPT_CHOICE(0, "quant", &quant, NULL, "nf4|none", "quantization"),
		FTK_OPT_STRING_LIST(0, "run", &runs, "NAME", "a run (repeatable)"),
		FTK_OPT_CALLBACK(0, "note", NULL, "TEXT", note_cb, "a callback"),
		FTK_OPT_CALLBACK_NOARG(0, "ping", NULL, note_cb, "a callback without a value"),
		FTK_OPT_FLAG('q', "quiet", &quiet, "no summary"),
		FTK_OPT_FLAG('v', "verbose", &verbose, "more"),
		FTK_OPT_HIDDEN_FLAG("secret", &verbose),
		FTK_OPT_HELP(),
		FTK_OPT_VERSION(),
		FTK_OPT_TEXT("Exit status: 0, 1, 2.\n"),
		FTK_OPT_END(),
	};
	static const char *const usage[] = { "ftk-x [options] [FILE...]", "", "Frob records.", NULL };
	ftk_progname = "ftk-x";
	int left = ftk_parse_options(argc, argv, "ftk-x", opts, usage);
	printf("format=%s fv=%s n=%d big=%ld temp=%g quant=%d quiet=%d verbose=%d", format,
	       output ? output : "-", n, big, temp, quant, quiet, verbose);
	for (size_t i = 0; i < runs.n; i++)
		printf(" run=%s", runs.v[i]);
	for (size_t i = 0; i < seen_cb.n; i++)
		printf(" cb=%s", seen_cb.v[i]);
	printf(" args=%d:", left);
	for (int i = 0; i < left; i++)
		printf(" [%s]", argv[i]);
	if (argv[left] != NULL)
		printf(" NOT-NULL-TERMINATED");
	printf("\n");
	ftk_strlist_release(&runs);
}

static void parse_sub(int argc, char **argv)
{
	ftk_subcommand_fn fn = NULL;
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Commands"),
		FTK_OPT_SUBCOMMAND("estimate", &fn, sub_a, "predict"),
		FTK_OPT_SUBCOMMAND("report", &fn, sub_b, "totals"),
		FTK_OPT_HELP(),
		FTK_OPT_END(),
	};
	ftk_progname = "ftk-y";
	int left = ftk_parse_options(argc, argv, "ftk-y", opts, NULL);
	printf("fn=%d args=%d:", fn ? fn(0, NULL) : 0, left);
	for (int i = 0; i < left; i++)
		printf(" [%s]", argv[i]);
	printf("\n");
}

/* A range without its ends: (0, 1), and (0, inf); and how often rows were given */
static void parse_open(int argc, char **argv)
{
	double j = 0.5, lr = 1;
	int flag = 0, given = 0;
	struct ftk_option opts[] = {
		FTK_OPT_DOUBLE_OPEN(0, "threshold", &j, "J", 0, 1, "similarity"),
		FTK_OPT_DOUBLE_OPEN(0, "lr", &lr, "X", 0, HUGE_VAL, "a rate above 0"),
		FTK_OPT_FLAG('f', "flag", &flag, "a flag not counted"),
		FTK_OPT_END(),
	};
	opts[0].given = opts[1].given = &given;	/* as ftk-train counts its training options */
	ftk_progname = "ftk-x";
	ftk_parse_options(argc, argv, "ftk-x", opts, NULL);
	printf("threshold=%g lr=%g given=%d\n", j, lr, given);
}

struct result {
	int rc;
	char text[8192];	/* stdout then stderr, as written */
};

/* Run fn on the NULL-terminated words in a child; collect its exit status and output. */
static void run(void (*fn)(int, char **), struct result *r, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;
	va_start(ap, r);
	argv[argc++] = "ftk-x";
	for (char *w; (w = va_arg(ap, char *));)
		argv[argc++] = w;
	va_end(ap);
	argv[argc] = NULL;
	FILE *tmp = tmpfile();
	ck_assert_ptr_nonnull(tmp);
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fileno(tmp), 1);
		dup2(fileno(tmp), 2);
		setvbuf(stdout, NULL, _IONBF, 0);
		fn(argc, argv);
		exit(0);
	}
	int st;
	waitpid(pid, &st, 0);
	r->rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	rewind(tmp);
	size_t n = fread(r->text, 1, sizeof(r->text) - 1, tmp);
	r->text[n] = '\0';
	fclose(tmp);
	(void)sub_called;
}

/* What ftk-x prints for a usage error: the message, then the hint. */
static const char *usage_text(const char *msg)
{
	static char want[1024];
	snprintf(want, sizeof(want), "ftk-x: %s\nTry 'ftk-x --help' for more information.\n", msg);
	return want;
}

/* fn given the words (a parenthesized list) exits 2 with the usage error msg */
#define WORDS(...) __VA_ARGS__
#define REFUSES(fn, words, msg)                         \
	do {                                            \
		struct result r_;                       \
		run(fn, &r_, WORDS words, NULL);        \
		EXPECT(r_, 2, usage_text(msg));         \
	} while (0)

#define EXPECT(r, code, txt)                                                     \
	do {                                                                     \
		ck_assert_msg((r).rc == (code), "exit %d, not %d: %s", (r).rc, code, (r).text); \
		ck_assert_str_eq((r).text, txt);                                 \
	} while (0)

START_TEST(forms_getopt_users_expect)
{
	struct result r;
	run(parse_and_print, &r, "--format=chat", "a", "-n", "7", "b", "--big", "9", NULL);
	EXPECT(r, 0, "format=chat fv=- n=7 big=9 temp=1 quant=0 quiet=0 verbose=0 args=2: [a] [b]\n");
	/* -xVAL, bundled flags, a lone '-' is an argument, '--' ends the options */
	run(parse_and_print, &r, "-fjson", "-qv", "-", "--", "-n", "--big", NULL);
	EXPECT(r, 0, "format=json fv=- n=5 big=0 temp=1 quant=0 quiet=1 verbose=1 args=3: [-] [-n] [--big]\n");
	/* bundled flags ending in one that takes a value, which is the next word */
	run(parse_and_print, &r, "-qn", "3", NULL);
	EXPECT(r, 0, "format=auto fv=- n=3 big=0 temp=1 quant=0 quiet=1 verbose=0 args=0:\n");
	/* a unique prefix; an exact name wins over a longer one it begins */
	run(parse_and_print, &r, "--temp", "0.5", "--format", "x", "--format-v=2", NULL);
	EXPECT(r, 0, "format=x fv=2 n=5 big=0 temp=0.5 quant=0 quiet=0 verbose=0 args=0:\n");
	/* a value that starts with '-' is still the value */
	run(parse_and_print, &r, "--format", "-q", NULL);
	EXPECT(r, 0, "format=-q fv=- n=5 big=0 temp=1 quant=0 quiet=0 verbose=0 args=0:\n");
	/* repeatable strings in order, callbacks, choices, a hidden flag */
	run(parse_and_print, &r, "--run", "a", "--note=x", "--run=b", "--ping", "--quant", "none",
	    "--secret", NULL);
	EXPECT(r, 0, "format=auto fv=- n=5 big=0 temp=1 quant=1 quiet=0 verbose=1 run=a run=b cb=x "
		     "cb=(none) args=0:\n");
}
END_TEST

START_TEST(one_wording_for_errors)
{
	struct result r;
	REFUSES(parse_and_print, ("-n", "0"), "--count needs an integer from 1 to 100, not '0'");
	REFUSES(parse_and_print, ("--count=7x"),
		"--count needs an integer from 1 to 100, not '7x'");
	REFUSES(parse_and_print, ("--big", "-1"), "--big needs an integer of at least 0, not '-1'");
	REFUSES(parse_and_print, ("--big", "99999999999999999999"),
		"--big needs an integer of at least 0, not '99999999999999999999'");
	REFUSES(parse_and_print, ("-t", "nan"),
		"--temperature needs a number from 0 to 2, not 'nan'");
	REFUSES(parse_and_print, ("--temperature="),
		"--temperature needs a number from 0 to 2, not ''");
	REFUSES(parse_and_print, ("--quant", "nf5"), "--quant needs one of nf4|none, not 'nf5'");
	REFUSES(parse_and_print, ("--format"), "option '--format' needs a value");
	REFUSES(parse_and_print, ("-n"), "option '--count' needs a value");
	REFUSES(parse_and_print, ("--quiet=yes"), "option '--quiet' takes no value");
	REFUSES(parse_and_print, ("--form", "x"),
		"ambiguous option '--form' (could be '--format', '--format-version')");
	REFUSES(parse_and_print, ("-z"), "unknown option '-z'");
	/* hidden options are parsed but never suggested */
	REFUSES(parse_and_print, ("--secrets"), "unknown option '--secrets'");
	/* an open range: its ends are refused, what lies between is not */
	run(parse_open, &r, "--threshold", "0.999", "--lr", "1e-9", NULL);
	EXPECT(r, 0, "threshold=0.999 lr=1e-09 given=2\n");
	run(parse_open, &r, "-f", "--thr=0.5", "--flag", "--threshold", "0.25", NULL);
	EXPECT(r, 0, "threshold=0.25 lr=1 given=2\n");
	run(parse_open, &r, "--flag", NULL);
	EXPECT(r, 0, "threshold=0.5 lr=1 given=0\n");
	REFUSES(parse_open, ("--threshold", "1"),
		"--threshold needs a number above 0 and below 1, not '1'");
	REFUSES(parse_open, ("--threshold=0"),
		"--threshold needs a number above 0 and below 1, not '0'");
	REFUSES(parse_open, ("--lr", "0"), "--lr needs a number above 0, not '0'");
}
END_TEST

START_TEST(did_you_mean)
{
	struct result r;
	/* two letters swapped */
	REFUSES(parse_and_print, ("--fromat", "x"),
		"unknown option '--fromat'; did you mean '--format'?");
	/* a letter missing, a letter wrong */
	REFUSES(parse_and_print, ("--verbse"),
		"unknown option '--verbse'; did you mean '--verbose'?");
	REFUSES(parse_and_print, ("--quiat"), "unknown option '--quiat'; did you mean '--quiet'?");
	/* two letters wrong is a guess, not a slip */
	REFUSES(parse_and_print, ("--qoiat"), "unknown option '--qoiat'");
	/* nothing near */
	REFUSES(parse_and_print, ("--xyzzy-plugh"), "unknown option '--xyzzy-plugh'");
	/* a long name with one dash: parsed as short options until one is unknown */
	REFUSES(parse_and_print, ("-verbose"), "unknown option '-e'; did you mean '--verbose'?");
	REFUSES(parse_and_print, ("-ping"), "unknown option '-p'; did you mean '--ping'?");
	/* ... or that takes the rest as its value, as getopt does */
	run(parse_and_print, &r, "-format", NULL);
	EXPECT(r, 0, "format=ormat fv=- n=5 big=0 temp=1 quant=0 quiet=0 verbose=0 args=0:\n");
	REFUSES(parse_and_print, ("-note"), "--count needs an integer from 1 to 100, not 'ote'");
}
END_TEST

START_TEST(subcommands)
{
	struct result r;
	run(parse_sub, &r, "report", "--json", "x", NULL);
	EXPECT(r, 0, "fn=12 args=3: [report] [--json] [x]\n");
	run(parse_sub, &r, "--", "estimate", NULL);
	EXPECT(r, 0, "fn=11 args=1: [estimate]\n");
	run(parse_sub, &r, "estimat", NULL);
	EXPECT(r, 2, "ftk-y: unknown command 'estimat'; did you mean 'estimate'?\n"
		     "Try 'ftk-y --help' for more information.\n");
	run(parse_sub, &r, "frobnicate", NULL);
	EXPECT(r, 2, "ftk-y: unknown command 'frobnicate'\nTry 'ftk-y --help' for more information.\n");
	run(parse_sub, &r, NULL);
	EXPECT(r, 2, "ftk-y: a command is required (estimate, report)\n"
		     "Try 'ftk-y --help' for more information.\n");
	run(parse_sub, &r, "--help", NULL);
	EXPECT(r, 0, "usage: ftk-y [options]\n\nCommands:\n"
		     "  estimate             predict\n"
		     "  report               totals\n"
		     "  -h, --help           show this help\n");
}
END_TEST

START_TEST(help_from_the_table)
{
	struct result r;
	run(parse_and_print, &r, "--count", "3", "-h", "--bogus", NULL);
	EXPECT(r, 0,
	       "usage: ftk-x [options] [FILE...]\n"
	       "\n"
	       "Frob records.\n"
	       "\n"
	       "Options:\n"
	       "  -f, --format FMT     the format\n"
	       "      --format-version V  a longer name the short one begins\n"
	       "  -n, --count N        how many\n"
	       "                       (second line)\n"
	       "      --big N          a long\n"
	       "  -t, --temperature T  sampling temperature\n"
	       "      --quant nf4|none  quantization\n"
	       "      --run NAME       a run (repeatable)\n"
	       "      --note TEXT      a callback\n"
	       "      --ping           a callback without a value\n"
	       "  -q, --quiet          no summary\n"
	       "  -v, --verbose        more\n"
	       "  -h, --help           show this help\n"
	       "      --version        show the version\n"
	       "Exit status: 0, 1, 2.\n");
	run(parse_and_print, &r, "--version", NULL);
	EXPECT(r, 0, "ftk-x " FTK_VERSION "\n");
	run(parse_and_print, &r, "--ftk-completion-helper", NULL);
	EXPECT(r, 0,
	       "opt\t--format\t-f\t1\t\tthe format\n"
	       "opt\t--format-version\t\t1\t\ta longer name the short one begins\n"
	       "opt\t--count\t-n\t1\t\thow many\n"
	       "opt\t--big\t\t1\t\ta long\n"
	       "opt\t--temperature\t-t\t1\t\tsampling temperature\n"
	       "opt\t--quant\t\t1\tnf4|none\tquantization\n"
	       "opt\t--run\t\t1\t\ta run (repeatable)\n"
	       "opt\t--note\t\t1\t\ta callback\n"
	       "opt\t--ping\t\t0\t\ta callback without a value\n"
	       "opt\t--quiet\t-q\t0\t\tno summary\n"
	       "opt\t--verbose\t-v\t0\t\tmore\n"
	       "opt\t--help\t-h\t0\t\tshow this help\n"
	       "opt\t--version\t\t0\t\tshow the version\n");
}
END_TEST

START_TEST(distances_as_git)
{
	/* the textbook pair, unit weights: 3 edits */
	ck_assert_int_eq(ftk_levenshtein("kitten", "sitting", 1, 1, 1, 1), 3);
	/* a swap of neighbours is one edit with w = 1, free with git's w = 0 */
	ck_assert_int_eq(ftk_levenshtein("ab", "ba", 1, 1, 1, 1), 1);
	ck_assert_int_eq(ftk_levenshtein("fromat", "format", 0, 2, 1, 3), 0);
	/* insertions cost a, deletions d: direction matters */
	ck_assert_int_eq(ftk_levenshtein("dedup", "dedupe", 0, 2, 1, 3), 1);
	ck_assert_int_eq(ftk_levenshtein("dedupe", "dedup", 0, 2, 1, 3), 3);
	ck_assert_int_eq(ftk_levenshtein("", "abc", 0, 2, 1, 3), 3);
	ck_assert_int_eq(ftk_levenshtein("abc", "", 0, 2, 1, 3), 9);

	const char *verbs[] = { "convert", "decontam", "dedupe", "filter", "sample", "scrub",
				"split", "stats", "tokenize", "train", "validate" };
	size_t idx[8];
	size_t k = ftk_similar("dedup", verbs, FTK_ARRAY_SIZE(verbs), idx, 8, FTK_SIMILAR_COMMANDS);
	ck_assert_uint_eq(k, 1);
	ck_assert_str_eq(verbs[idx[0]], "dedupe");
	k = ftk_similar("spilt", verbs, FTK_ARRAY_SIZE(verbs), idx, 8, FTK_SIMILAR_COMMANDS);
	ck_assert_uint_eq(k, 1);
	ck_assert_str_eq(verbs[idx[0]], "split");
	/* "s" begins four verbs: all are offered */
	k = ftk_similar("s", verbs, FTK_ARRAY_SIZE(verbs), idx, 8, FTK_SIMILAR_COMMANDS);
	ck_assert_uint_eq(k, 4);
	k = ftk_similar("kubernetes", verbs, FTK_ARRAY_SIZE(verbs), idx, 8, FTK_SIMILAR_COMMANDS);
	ck_assert_uint_eq(k, 0);
	/* options and subcommands take a slip only: two substitutions are a guess */
	const char *opts[] = { "roles", "format", "show" };
	ck_assert_uint_eq(ftk_similar("bogus", opts, 3, idx, 8, FTK_SIMILAR_COMMANDS), 1);
	ck_assert_uint_eq(ftk_similar("bogus", opts, 3, idx, 8, FTK_SIMILAR_OPTIONS), 0);
	ck_assert_uint_eq(ftk_similar("rolse", opts, 3, idx, 8, FTK_SIMILAR_OPTIONS), 1);
}
END_TEST

/* Size options: a bounded one and one with no upper end */
static void parse_size(int argc, char **argv)
{
	uint64_t body = 8 << 20, cap = 0;
	struct ftk_option opts[] = {
		FTK_OPT_SIZE(0, "max-body", &body, "SIZE", 1, (uint64_t)1 << 40, "largest body"),
		FTK_OPT_SIZE('m', "mem-cap", &cap, "SIZE", 0, UINT64_MAX, "memory"),
		FTK_OPT_END(),
	};
	ftk_progname = "ftk-x";
	ftk_parse_options(argc, argv, "ftk-x", opts, NULL);
	printf("max-body=%llu mem-cap=%llu\n", (unsigned long long)body, (unsigned long long)cap);
}

/* Every form ftk_parse_size takes, and the bytes it makes of each */
START_TEST(sizes_accepted)
{
	static const struct {
		const char *s;
		uint64_t v;
	} ok[] = {
		{ "0", 0 },
		{ "1", 1 },
		{ "007", 7 },
		{ "65536", 65536 },
		{ "512B", 512 },	/* bytes, not dd's 512-byte blocks */
		{ "512b", 512 },
		{ "1K", 1024 },
		{ "1k", 1024 },
		{ "1KB", 1024 },	/* binary, whichever spelling */
		{ "1kb", 1024 },
		{ "1KiB", 1024 },
		{ "1kib", 1024 },
		{ "1KIB", 1024 },
		{ "64M", 64ull << 20 },
		{ "64MiB", 64ull << 20 },
		{ "2G", 2ull << 30 },
		{ "2GiB", 2ull << 30 },
		{ "2gb", 2ull << 30 },
		{ "3T", 3ull << 40 },
		{ "3TiB", 3ull << 40 },
		{ "1.5G", 3ull << 29 },
		{ "0.5K", 512 },
		{ "0.1G", 107374182 },	/* 107374182.4, rounded down */
		{ "1.0000000000000000000009K", 1024 },	/* digits past the 19th are below a byte */
		{ "0.999999999999999999999T", 1099511627775ull },
		{ "18446744073709551615", UINT64_MAX },
		{ "16777215T", 16777215ull << 40 },	/* the largest whole T that fits */
		{ "16777215.999999999999T", 18446744073709551615ull - 1 },
		{ "16777215.9999999999999999999T", UINT64_MAX },	/* just below 2^64 */
	};
	for (size_t i = 0; i < FTK_ARRAY_SIZE(ok); i++) {
		uint64_t v = 12345;
		ck_assert_msg(ftk_parse_size(ok[i].s, &v) == 0, "'%s' refused", ok[i].s);
		ck_assert_msg(v == ok[i].v, "'%s' is %llu, not %llu", ok[i].s, (unsigned long long)v,
			      (unsigned long long)ok[i].v);
	}
}
END_TEST

START_TEST(sizes_refused)
{
	static const char *const bad[] = {
		"", "K", "B", "iB", ".5G", "5.G", "1.5", "1.5B", "-1", "+1", " 1", "1 ", "1 K",
		"1e6", "0x10", "1KK", "1Ki", "1iB", "1KBB", "1KiBB", "1Q", "1P", "1E", "1,5G",
		"1.5.5G", "nan", "inf",
		"18446744073709551616",	/* 2^64 */
		"99999999999999999999999",
		"16777216T",		/* 2^64 */
		"99999999999999T",
		"17179869184G",		/* 2^64 */
		"18014398509481984K",	/* 2^64 */
		"16777216.0T",		/* 2^64 */
	};
	for (size_t i = 0; i < FTK_ARRAY_SIZE(bad); i++) {
		uint64_t v = 12345;
		ck_assert_msg(ftk_parse_size(bad[i], &v) < 0, "'%s' taken as %llu", bad[i],
			      (unsigned long long)v);
		ck_assert_msg(v == 12345, "'%s' changed *out", bad[i]);
	}
	char b[32];
	ck_assert_str_eq(ftk_format_size(0, b, sizeof(b)), "0");
	ck_assert_str_eq(ftk_format_size(1, b, sizeof(b)), "1");
	ck_assert_str_eq(ftk_format_size(1536, b, sizeof(b)), "1536");
	ck_assert_str_eq(ftk_format_size(8 << 20, b, sizeof(b)), "8M");
	ck_assert_str_eq(ftk_format_size((uint64_t)1 << 40, b, sizeof(b)), "1T");
	ck_assert_str_eq(ftk_format_size((uint64_t)1 << 50, b, sizeof(b)), "1024T");
	ck_assert_str_eq(ftk_format_size(UINT64_MAX, b, sizeof(b)), "18446744073709551615");
}
END_TEST

START_TEST(size_options)
{
	struct result r;
	run(parse_size, &r, "--max-body=1K", "-m", "1.5GiB", NULL);
	EXPECT(r, 0, "max-body=1024 mem-cap=1610612736\n");
	/* both ends of the range are in it */
	run(parse_size, &r, "--max-body", "1", "--mem-cap=0", NULL);
	EXPECT(r, 0, "max-body=1 mem-cap=0\n");
	run(parse_size, &r, "--max-body", "1TiB", "-m18446744073709551615", NULL);
	EXPECT(r, 0, "max-body=1099511627776 mem-cap=18446744073709551615\n");
	/* one wording: the option, the range in units, the value as given */
	REFUSES(parse_size, ("--max-body", "0"),
		"--max-body needs a size from 1 to 1T (such as 64M or 1.5G), not '0'");
	REFUSES(parse_size, ("--max-body", "1025G"),
		"--max-body needs a size from 1 to 1T (such as 64M or 1.5G), not '1025G'");
	REFUSES(parse_size, ("--max-body", "8X"),
		"--max-body needs a size from 1 to 1T (such as 64M or 1.5G), not '8X'");
	REFUSES(parse_size, ("-m", "99999999999999T"),
		"--mem-cap needs a size (such as 64M or 1.5G), not '99999999999999T'");
	REFUSES(parse_size, ("--mem-cap=-1"),
		"--mem-cap needs a size (such as 64M or 1.5G), not '-1'");
	REFUSES(parse_size, ("--mem-cap"), "option '--mem-cap' needs a value");
}
END_TEST

static Suite *parse_options_suite(void)
{
	Suite *s = suite_create("parse_options");
	TCase *tc = tcase_create("core");
	/* each case forks a child per parse: slow under sanitizers on a loaded machine */
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, forms_getopt_users_expect);
	tcase_add_test(tc, one_wording_for_errors);
	tcase_add_test(tc, did_you_mean);
	tcase_add_test(tc, subcommands);
	tcase_add_test(tc, help_from_the_table);
	tcase_add_test(tc, distances_as_git);
	tcase_add_test(tc, sizes_accepted);
	tcase_add_test(tc, sizes_refused);
	tcase_add_test(tc, size_options);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(parse_options_suite)
