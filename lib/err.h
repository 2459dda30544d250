/*
 * err.h: errors as values.
 *
 * libftk never prints and never exits.  A function that can fail returns 0 (or
 * a non-negative count) on success and a negative FTK_E* code on failure, and
 * fills a caller-supplied struct ftk_error with the detail: the file and line
 * of the record at fault, the field path inside it (`messages[2].role`), and a
 * message in git's style (lowercase, no trailing period, the subject quoted).
 * Programs turn that into `ftk-<verb>: <file>:<line>: <field>: <message>`
 * (see cli/tool.h).  A NULL error pointer is allowed everywhere: the detail is
 * then dropped and only the code is returned.
 *
 * The allocation helpers are the one exception to "never exits": running out
 * of memory is not a data problem that a caller can do anything useful about,
 * so xmalloc() and friends print one line and abort, as git's do.
 */
#ifndef FTK_ERR_H
#define FTK_ERR_H

#include <stddef.h>
#include <stdint.h>

enum {
	FTK_OK = 0,
	FTK_ENOMEM = -1,	/* out of memory (only from code that cannot abort) */
	FTK_EIO = -2,		/* a system call failed; errno text is in msg */
	FTK_EDATA = -3,		/* the input is malformed: bad JSON, bad field, bad format */
	FTK_EUTF8 = -4,		/* the input is not valid UTF-8 */
	FTK_ETRUNC = -5,	/* the input ends in the middle of something (zstd frame, record) */
	FTK_EUSAGE = -6,	/* the caller asked for something impossible or contradictory */
	FTK_EUNSUPPORTED = -7,	/* a real feature this version does not implement */
	FTK_ELIMIT = -8,	/* a configured limit was exceeded (size, depth, tokens) */
	FTK_ENOTFOUND = -9,	/* a file, key, tensor, token or name does not exist */
	FTK_EMISMATCH = -10,	/* two things that must agree do not (hash, shape, vocab) */
	FTK_ENET = -11,		/* a network or server error */
};

struct ftk_error {
	int code;		/* the FTK_E* code, 0 when nothing happened */
	char file[256];		/* input file name, "" when unknown; "-" is standard input */
	long line;		/* 1-based line (record) number, 0 when unknown */
	long offset;		/* byte offset within the line (or file), -1 when unknown */
	char field[256];	/* field path such as messages[2].role, "" when none */
	char msg[768];		/* what is wrong, lowercase, no trailing period */
};

/*
 * Fill *e (when e is not NULL) and return code.  file and field may be NULL.
 * The message is printf-formatted and truncated to fit.
 */
int ftk_error_set(struct ftk_error *e, int code, const char *file, long line,
		  const char *field, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

/* Like ftk_error_set with no place: only code and message. */
int ftk_error_msg(struct ftk_error *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Set file and line on an error that a lower layer filled without them. */
void ftk_error_place(struct ftk_error *e, const char *file, long line);

/* Clear *e (code 0, empty strings, offset -1).  NULL is allowed. */
void ftk_error_clear(struct ftk_error *e);

/* A short stable name for a code ("data", "utf8", "io", ...). */
const char *ftk_strerror(int code);

/*
 * Format *e as "<file>:<line>: <field>: <msg>" (parts that are unknown are
 * left out) into buf of size n.  Returns buf.
 */
char *ftk_error_format(const struct ftk_error *e, char *buf, size_t n);

/* Room for any ftk_error_format text: file, line, field and message at their caps. */
#define FTK_ERROR_TEXT_MAX                                                                  \
	(sizeof(((struct ftk_error *)0)->file) + sizeof(((struct ftk_error *)0)->field) +    \
	 sizeof(((struct ftk_error *)0)->msg) + 32)

/*
 * *e formatted by ftk_error_format into a buffer of FTK_ERROR_TEXT_MAX that
 * lives until the end of the enclosing block (a compound literal), for a
 * message with more around it:  die("cannot load: %s", FTK_ERROR_TEXT(&e)).
 * Programs that print the error alone use error_at()/die_at() (cli/tool.h).
 */
#define FTK_ERROR_TEXT(e) ftk_error_format((e), (char[FTK_ERROR_TEXT_MAX]){ 0 }, FTK_ERROR_TEXT_MAX)

/* Allocation that cannot fail: on out-of-memory print one line and abort(). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Grow an array: ensure *alloc >= nr, growing by 3/2 as git's ALLOC_GROW does. */
#define FTK_ALLOC_GROW(x, nr, alloc)                                            \
	do {                                                                    \
		if ((size_t)(nr) > (size_t)(alloc)) {                           \
			size_t ftk_ag_n_ = ((size_t)(alloc) + 16) * 3 / 2;      \
			if (ftk_ag_n_ < (size_t)(nr)) ftk_ag_n_ = (size_t)(nr); \
			(x) = xrealloc((x), ftk_ag_n_ * sizeof(*(x)));          \
			(alloc) = ftk_ag_n_;                                    \
		}                                                               \
	} while (0)

#define FTK_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
