/*
 * strbuf.h: a growable byte buffer, after git's strbuf.
 *
 * Ownership: a strbuf owns its buffer.  strbuf_release() frees it and leaves
 * the strbuf empty and reusable; strbuf_detach() hands the buffer to the
 * caller (who frees it) and leaves the strbuf empty.  buf is always
 * NUL-terminated, even when empty, so it can be passed to C string functions
 * (but may hold NULs of its own: len is the truth).
 */
#ifndef FTK_STRBUF_H
#define FTK_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

struct strbuf {
	size_t alloc;
	size_t len;
	char *buf;
};

extern char strbuf_slopbuf[];
#define STRBUF_INIT { 0, 0, strbuf_slopbuf }

void strbuf_init(struct strbuf *sb, size_t hint);
void strbuf_release(struct strbuf *sb);
/* Return the buffer (caller frees) and reset sb; *len gets its length if not NULL. */
char *strbuf_detach(struct strbuf *sb, size_t *len);
void strbuf_grow(struct strbuf *sb, size_t extra);
void strbuf_setlen(struct strbuf *sb, size_t len);
#define strbuf_reset(sb) strbuf_setlen((sb), 0)

void strbuf_add(struct strbuf *sb, const void *data, size_t len);
void strbuf_addstr(struct strbuf *sb, const char *s);
void strbuf_addch(struct strbuf *sb, int c);
void strbuf_addf(struct strbuf *sb, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void strbuf_vaddf(struct strbuf *sb, const char *fmt, va_list ap);

/*
 * Append s[0..len) as a JSON string literal, quotes included.  Bytes that are
 * not valid UTF-8 are written as U+FFFD, so the result is always valid JSON;
 * returns the number of bytes so replaced (0 for valid input).
 */
size_t strbuf_add_json_str(struct strbuf *sb, const char *s, size_t len);

/*
 * Append s[0..len) with every byte that does not start a valid UTF-8
 * sequence written as U+FFFD.  Returns the number of bytes so replaced.
 */
size_t strbuf_add_utf8(struct strbuf *sb, const char *s, size_t len);

/* Read a whole file (or stdin for "-") into sb.  0 or -errno. */
int strbuf_read_file(struct strbuf *sb, const char *path);

#endif
