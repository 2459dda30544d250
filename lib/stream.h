/*
 * stream.h: JSONL record streams in and out.
 *
 * Reader.  Opens a file, or standard input for "-", and detects Zstandard by
 * its magic number (never by the file name).  It hands out one line at a time,
 * of any length, with its 1-based line number.  The line terminator (\n or
 * \r\n) is removed, and so is a UTF-8 byte order mark at the start of the
 * stream.  Each line is checked for UTF-8: an invalid line is still returned
 * (so that the tool can send it to its rejects, nothing lost) with
 * utf8_error set to the byte offset of the first bad byte.  A zstd stream that
 * ends in the middle of a frame is an error (FTK_ETRUNC), not a short file;
 * a reader told so (ftk_reader_keep_partial) first hands out the bytes of the
 * record that was cut, marked truncated, so that they can go to the rejects.
 *
 * The line returned is borrowed: it stays valid until the next call to
 * ftk_reader_next() or ftk_reader_close().  Its data is NUL-terminated at
 * data[len] (the line itself may hold NULs; len is the truth).
 *
 * Writer.  Writes to a file, or to standard output for NULL or "-".  A file
 * name ending in ".zst" is written as Zstandard.  A regular file (or a name
 * that does not exist yet) is written to a temporary name beside it and
 * renamed on a successful close, so a crash never leaves a half-written
 * output under the real name; the temporary is registered with
 * lib/cleanup.h so that a killed program can remove it.  Anything else is
 * written through, never replaced: a device (/dev/null, /dev/full), a named
 * pipe, a socket, and the names of descriptors the process already holds
 * (/dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N, as bash's >(...)
 * gives them), which are duplicated so their offset and append mode hold.
 * A symlink is followed: the file it points to is replaced, the link stays.
 * A regular file that may be written in a directory that may not (no room
 * for the temporary) is truncated and written in place.
 */
#ifndef FTK_STREAM_H
#define FTK_STREAM_H

#include <stdint.h>
#include <stdio.h>
#include "err.h"

struct ftk_line {
	char *data;		/* borrowed, NUL-terminated at data[len] */
	size_t len;		/* without the line terminator */
	long lineno;		/* 1-based */
	const char *file;	/* the name given to open ("-" for stdin), borrowed */
	long utf8_error;	/* byte offset of the first invalid UTF-8 byte, or -1 */
	int had_cr;		/* the line ended in \r\n */
	int truncated;		/* the stream was cut inside this line (keep_partial only) */
	uint64_t oversize;	/* 0, or the length of a line longer than the reader's
				 * max_line: data then holds only its first bytes */
};

/* How much of an oversize line is kept for the rejects (ftk_reader_set_max_line). */
#define FTK_LINE_PREFIX 1024

struct ftk_reader;

/*
 * Open path ("-" for stdin).  On success *out is a new reader that the caller
 * closes with ftk_reader_close().  Returns 0, or FTK_EIO with the reason.
 */
int ftk_reader_open(struct ftk_reader **out, const char *path, struct ftk_error *err);

/* Open an already-open FILE (not closed by the reader); name is for messages. */
int ftk_reader_open_fp(struct ftk_reader **out, FILE *fp, const char *name,
		       struct ftk_error *err);

/*
 * Read the next line into *line.  Returns 1 when a line was read, 0 at the
 * end of input, or a negative code (FTK_EIO, FTK_ETRUNC, FTK_EDATA for a
 * corrupt zstd frame) with err filled, after which the reader only returns 0.
 * A final line without a terminator is returned as a line.  Empty lines are
 * returned too (len 0): skipping them is the tool's decision.
 */
int ftk_reader_next(struct ftk_reader *r, struct ftk_line *line, struct ftk_error *err);

/*
 * When a zstd stream turns out to be cut short and decoded bytes of an
 * unfinished line are left, hand them out as one more line with truncated
 * set (the next call then returns FTK_ETRUNC with the error), instead of
 * losing them with the error.  Off by default: a reader that does not look
 * at truncated never sees a partial line.
 */
void ftk_reader_keep_partial(struct ftk_reader *r);

/*
 * Bound the memory a line may take: a line longer than max bytes is not
 * held; it is read through and handed out as its first FTK_LINE_PREFIX
 * bytes with oversize set to its length (the line terminator not counted,
 * and the UTF-8 check not made: utf8_error is -1).  0 (the default) means
 * no bound.
 */
void ftk_reader_set_max_line(struct ftk_reader *r, uint64_t max);

/* Bytes consumed from the underlying file so far (compressed bytes for zstd). */
uint64_t ftk_reader_bytes_in(const struct ftk_reader *r);
/* Size of the underlying file, or -1 when unknown (a pipe). */
int64_t ftk_reader_size(const struct ftk_reader *r);
/* 1 when the input was detected as zstd. */
int ftk_reader_is_zstd(const struct ftk_reader *r);
/* Free the reader (NULL allowed).  Closes the file unless opened with _fp. */
void ftk_reader_close(struct ftk_reader *r);

/*
 * Read a whole file (zstd detected) into memory: *data (caller frees, NUL
 * terminated) and *len.  For formats that are not line-based (JSON arrays).
 */
int ftk_read_all(const char *path, char **data, size_t *len, struct ftk_error *err);

/* First byte offset of invalid UTF-8 in s[0..len), or -1 when it is valid. */
long ftk_utf8_check(const char *s, size_t len);

struct ftk_writer;

/*
 * Open path for writing (NULL or "-" for stdout; ".zst" suffix compresses;
 * level 0 means the zstd default).  Returns 0 or FTK_EIO.
 */
int ftk_writer_open(struct ftk_writer **out, const char *path, int level,
		    struct ftk_error *err);
/* Write len bytes.  Returns 0 or FTK_EIO (the error sticks: later calls fail too). */
int ftk_writer_write(struct ftk_writer *w, const void *data, size_t len);
/* Write data and a '\n'. */
int ftk_writer_line(struct ftk_writer *w, const void *data, size_t len);
/* Flush buffers (and a zstd block) to the OS. */
int ftk_writer_flush(struct ftk_writer *w);
/*
 * Finish the stream, fsync and rename a file into place.  Returns 0 or the
 * first error met while writing (with err filled).  Frees w (NULL allowed).
 */
int ftk_writer_close(struct ftk_writer *w, struct ftk_error *err);
/* Abandon the output: a file's temporary is removed.  Frees w. */
void ftk_writer_abort(struct ftk_writer *w);

#endif
