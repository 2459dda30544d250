/*
 * err.c: error values and the allocation helpers that cannot fail.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "err.h"

static void copy(char *dst, size_t n, const char *src)
{
	if (!src)
		src = "";
	size_t l = strlen(src);
	if (l >= n)
		l = n - 1;
	memcpy(dst, src, l);
	dst[l] = '\0';
}

void ftk_error_clear(struct ftk_error *e)
{
	if (!e)
		return;
	e->code = 0;
	e->file[0] = e->field[0] = e->msg[0] = '\0';
	e->line = 0;
	e->offset = -1;
}

static int vset(struct ftk_error *e, int code, const char *file, long line,
		const char *field, const char *fmt, va_list ap)
{
	if (!e)
		return code;
	e->code = code;
	copy(e->file, sizeof(e->file), file);
	e->line = line;
	e->offset = -1;
	copy(e->field, sizeof(e->field), field);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	return code;
}

int ftk_error_set(struct ftk_error *e, int code, const char *file, long line,
		  const char *field, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vset(e, code, file, line, field, fmt, ap);
	va_end(ap);
	return code;
}

int ftk_error_msg(struct ftk_error *e, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vset(e, code, NULL, 0, NULL, fmt, ap);
	va_end(ap);
	return code;
}

void ftk_error_place(struct ftk_error *e, const char *file, long line)
{
	if (!e)
		return;
	if (file && !e->file[0])
		copy(e->file, sizeof(e->file), file);
	if (line && !e->line)
		e->line = line;
}

const char *ftk_strerror(int code)
{
	switch (code) {
	case FTK_OK: return "ok";
	case FTK_ENOMEM: return "out of memory";
	case FTK_EIO: return "io";
	case FTK_EDATA: return "data";
	case FTK_EUTF8: return "utf8";
	case FTK_ETRUNC: return "truncated";
	case FTK_EUSAGE: return "usage";
	case FTK_EUNSUPPORTED: return "unsupported";
	case FTK_ELIMIT: return "limit";
	case FTK_ENOTFOUND: return "not found";
	case FTK_EMISMATCH: return "mismatch";
	case FTK_ENET: return "network";
	}
	return "unknown";
}

char *ftk_error_format(const struct ftk_error *e, char *buf, size_t n)
{
	size_t k = 0;
	if (!n)
		return buf;
	buf[0] = '\0';
#define ADD(...) do { int r_ = snprintf(buf + k, n - k, __VA_ARGS__); \
		if (r_ > 0) k += (size_t)r_ < n - k ? (size_t)r_ : n - k - 1; } while (0)
	if (e->file[0]) {
		ADD("%s:", e->file);
		if (e->line > 0)
			ADD("%ld:", e->line);
		ADD(" ");
	}
	if (e->field[0])
		ADD("%s: ", e->field);
	ADD("%s", e->msg[0] ? e->msg : ftk_strerror(e->code));
#undef ADD
	return buf;
}

static void oom(size_t n)
{
	fprintf(stderr, "fatal: out of memory allocating %zu bytes\n", n);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom(n * size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom(n);
	return q;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}
