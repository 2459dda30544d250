/*
 * tool.h: what every ftk program shares.
 *
 * lib/ never prints or exits; this is the layer that does, for the programs.
 * It gives each tool the same conventions (DESIGN.md, "Commands"):
 *
 *   - the common options -o, --rejects, --stats, --ledger (or FTK_LEDGER),
 *     --run, --max-record-bytes, -q, --help, --version, as rows of the
 *     tool's parse-options table (FTK_OPT_TOOL_COMMON, cli/parse-options.h);
 *   - input from file arguments or stdin, line by line, zstd detected, with
 *     invalid UTF-8 and invalid JSON turned into rejects (ftk_tool_next,
 *     ftk_tool_parse);
 *   - output of records as their original bytes (ftk_tool_emit);
 *   - rejects as {"file","line","tool","reason",...,"record"|"raw"} lines;
 *   - a progress line on stderr only when stderr is a terminal;
 *   - one closing summary line on stderr, the same as JSON in --stats, and one
 *     ledger entry; ftk_tool_finish() returns the exit code.
 *
 * A typical tool:
 *
 *	struct ftk_tool t;
 *	ftk_tool_init(&t, "ftk-frob", NULL);
 *	struct ftk_option opts[] = {
 *		FTK_OPT_INT('x', "extra", &x, "N", "what -x does", 0, 100),
 *		FTK_OPT_TOOL_COMMON(&t),
 *		FTK_OPT_END(),
 *	};
 *	argc = ftk_parse_options(argc, argv, "ftk-frob", opts, usage);
 *	ftk_tool_start(&t, argc, argv);
 *	while (ftk_tool_next(&t, &line)) {
 *		cJSON *rec = ftk_tool_parse(&t, &line);   // rejects bad lines itself
 *		if (!rec) continue;
 *		if (bad) ftk_tool_reject(&t, &line, "too-long", NULL); else ftk_tool_emit(&t, &line);
 *		cJSON_Delete(rec);
 *	}
 *	return ftk_tool_finish(&t);
 *
 * Exit codes, the same for every command: 0 success, 1 data problems or a
 * runtime failure, 2 bad usage.
 */
#ifndef FTK_TOOL_H
#define FTK_TOOL_H

#include <stdint.h>
#include <cjson/cJSON.h>
#include "lib/err.h"
#include "lib/stream.h"
#include "lib/strbuf.h"
#include "cli/parse-options.h"

#define FTK_VERSION "0.1.0"

enum {
	FTK_EXIT_OK = 0,
	FTK_EXIT_DATA = 1,
	FTK_EXIT_USAGE = 2,
};

/*
 * The common options as rows of a parse-options table (cli/parse-options.h),
 * with their help; t is the struct ftk_tool they fill.  Put them last in a
 * tool's table, before FTK_OPT_END().
 */
#define FTK_EXIT_STATUS_HELP "Exit status: 0 success, 1 data problems or failure, 2 bad usage.\n"
#define FTK_OPT_TOOL_COMMON(t)                                                                  \
	FTK_OPT_GROUP("Common options"),                                                        \
	FTK_OPT_STRING('o', "output", &(t)->out_path, "FILE",                                   \
		       "write records to FILE (.zst compresses) instead of stdout"),           \
	FTK_OPT_STRING(0, "rejects", &(t)->rejects_path, "FILE",                                \
		       "write every dropped record there, with its reason"),                   \
	FTK_OPT_STRING(0, "stats", &(t)->stats_path, "FILE", "write the closing summary as JSON"), \
	FTK_OPT_STRING(0, "ledger", &(t)->ledger_path, "FILE",                                  \
		       "append a ledger entry for this run (default $FTK_LEDGER)"),            \
	FTK_OPT_STRING(0, "run", &(t)->run, "NAME", "the run name for the ledger (default $FTK_RUN)"), \
	FTK_OPT_SIZE(0, "max-record-bytes", &(t)->max_record_bytes, "SIZE", 1, UINT64_MAX,       \
		     "reject records longer than SIZE (default 256M) without\n"                   \
		     "holding them in memory"),                                                    \
	FTK_OPT_FLAG('q', "quiet", &(t)->quiet, "no summary line on stderr"),                   \
	FTK_OPT_HELP(), FTK_OPT_VERSION(), FTK_OPT_TEXT(FTK_EXIT_STATUS_HELP)

struct ftk_count {
	char *key;
	uint64_t n;
};

struct ftk_tool {
	const char *name;	/* "ftk-validate" */
	const char *usage;	/* full --help text */
	const char *stage;	/* ledger stage, "prep" by default */

	/* common options */
	const char *out_path;
	const char *rejects_path;
	const char *stats_path;
	const char *ledger_path;
	const char *run;
	int quiet;
	uint64_t max_record_bytes;	/* --max-record-bytes, FTK_TOOL_MAX_RECORD by default */

	/* inputs */
	char **inputs;
	int n_inputs;
	int cur_input;
	struct ftk_reader *reader;
	uint64_t bytes_done;	/* bytes of inputs already closed */
	int64_t bytes_total;	/* sum of input sizes, -1 when unknown */

	/* outputs */
	struct ftk_writer *out;
	struct ftk_writer *rejects;

	/* counts */
	uint64_t n_in, n_out, n_rejected;
	struct ftk_count *reasons;	/* rejected records by reason */
	size_t n_reasons, alloc_reasons;
	struct ftk_count *counts;	/* any other counters the tool keeps */
	size_t n_counts, alloc_counts;
	cJSON *extra_stats;		/* tool-specific fields for --stats (owned) */

	char last_error[800];	/* why ftk_tool_parse rejected the last line */
	char hint[600];		/* what to run instead, said after the summary */
	int failed;		/* a runtime error happened: exit 1 */
	int fail_on_reject;	/* exit 1 when any record was rejected (ftk-validate) */
	int cut_rejected;	/* the current input's cut last record was rejected */
	int own_record_checks;	/* ftk_tool_parse leaves NULs, out-of-range numbers and
				 * repeated keys to the tool (ftk-validate lists them
				 * with a record's other errors) */
	double t_start, t_progress;
	int progress_shown;
	int is_tty;
	struct strbuf scratch;
};

/* The default of --max-record-bytes: 256 MiB. */
#define FTK_TOOL_MAX_RECORD ((uint64_t)256 << 20)

void ftk_tool_init(struct ftk_tool *t, const char *name, const char *usage);

/*
 * Whether a line is over --max-record-bytes (held or not); if so, reject it
 * as "record-too-large" with its size and return 1.  ftk_tool_next does
 * this; a tool with its own reader calls it (after ftk_reader_set_max_line).
 */
int ftk_tool_reject_oversize(struct ftk_tool *t, const struct ftk_line *line);

/* "ftk-x: <msg>", a hint to run --help, exit 2.  msg may be NULL (ftk_usage_error). */
void ftk_tool_usage_error(struct ftk_tool *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));

/*
 * Set the input files (none means stdin) and open the outputs.  Dies with
 * exit 1 when an output cannot be opened.
 */
void ftk_tool_start(struct ftk_tool *t, int n_inputs, char **inputs);

/*
 * Next input line across all inputs.  Returns 1 and fills *line, or 0 at the
 * end.  A line with invalid UTF-8 is rejected here ("invalid-utf8", with the
 * byte offset) and skipped; so is the partial last record of a zstd stream
 * that was cut short ("truncated-input").  Empty lines (whitespace only) are skipped and
 * counted as "blank" in counts, not as records.  A read error (missing file,
 * truncated zstd) is reported, sets the exit code to 1, and moves on to the
 * next file.  Counts n_in.
 */
int ftk_tool_next(struct ftk_tool *t, struct ftk_line *line);

/*
 * Parse the line as a record (ftk_json_parse_record, lib/json.h).  Returns
 * the tree (caller frees) or NULL after rejecting the line ("invalid-json"
 * or "not-an-object", with a message that gives the column; or what cJSON
 * would change silently: "nul-in-string", "number-out-of-range",
 * "duplicate-key", unless t->own_record_checks).
 */
cJSON *ftk_tool_parse(struct ftk_tool *t, const struct ftk_line *line);

/* Write the line's original bytes to the output.  Counts n_out. */
void ftk_tool_emit(struct ftk_tool *t, const struct ftk_line *line);
/* Write new bytes (a changed or converted record, no newline) as one output line. */
void ftk_tool_emit_raw(struct ftk_tool *t, const char *data, size_t len);

/*
 * Drop a record: count it under reason and write it to --rejects as
 * {"file","line","tool","reason",<extra members>,"record":<original>}; a line
 * that is not valid JSON goes in "raw" as a string (invalid UTF-8 replaced by
 * U+FFFD, and the exact bytes in "raw_base64").  extra may be NULL; it is
 * consumed.  Extra members named "error"/"errors" hold the messages.
 */
void ftk_tool_reject(struct ftk_tool *t, const struct ftk_line *line, const char *reason,
		     cJSON *extra);

/*
 * Reject the last record of an input that was cut short (line->truncated,
 * lib/stream.h) as "truncated-input", with its size; the read error that
 * follows it is then not counted a second time.  ftk_tool_next does this for
 * the tools that read through it.
 */
void ftk_tool_reject_truncated(struct ftk_tool *t, const struct ftk_line *line);

/*
 * Say what to run instead, once, after the closing summary ("ftk-x: hint:
 * ..."): the first hint given wins.  ftk_tool_parse gives one itself when an
 * input looks like a JSON array or pretty-printed JSON.
 */
void ftk_tool_hint(struct ftk_tool *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Add n to a named counter (shown in the summary and --stats "counts"). */
void ftk_tool_count(struct ftk_tool *t, const char *key, uint64_t n);

/* Report a data error about a place: "ftk-x: file:line: field: msg" on stderr. */
void ftk_tool_error_at(struct ftk_tool *t, const struct ftk_error *e);

/*
 * Print the closing summary, write --stats and the ledger entry, close the
 * outputs.  Returns the exit code: 1 if a runtime error happened, if records
 * were read and every one was rejected (nothing passed), or if anything was
 * rejected and t->fail_on_reject is set; else 0.
 */
int ftk_tool_finish(struct ftk_tool *t);

/* Free everything; ftk_tool_finish calls it. */
void ftk_tool_release(struct ftk_tool *t);

/*
 * Remove registered temporaries (lib/cleanup.h) when the program is killed by
 * SIGINT, SIGTERM, SIGPIPE or SIGHUP (then die of that signal as before) and
 * when it exits, die() included.  A signal that is ignored on entry stays
 * ignored.  Idempotent; every program's main and ftk_tool_init call it, and a
 * program that installs its own handler afterwards (ftk-train's graceful
 * stop) replaces it for that signal.
 */
void ftk_tool_cleanup_install(void);

/* Print "ftk-x: msg" to stderr.  error() returns -1, die() exits 1. */
int error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Print a library's error as "ftk-x: file:line: field: msg" (the parts it
 * has, ftk_error_format) to stderr, never cut short.  error_at() returns -1,
 * die_at() exits 1.  With more words around it: FTK_ERROR_TEXT (lib/err.h).
 */
int error_at(const struct ftk_error *e);
void die_at(const struct ftk_error *e) __attribute__((noreturn));
/* The program name used by error/die/warning ("ftk-validate"). */
extern const char *ftk_progname;

#endif
