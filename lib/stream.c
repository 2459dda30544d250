/*
 * stream.c: line readers and record writers over plain files, pipes and
 * Zstandard.
 *
 * The reader keeps one growable buffer of decoded bytes.  A line that lies
 * wholly in the buffer is handed out in place (its '\n' overwritten by a NUL),
 * so the common case copies nothing.  When no newline is left, the partial
 * line is moved to the front and the buffer refilled, doubling it when the
 * partial line already fills it: a line of any length works, at the cost of
 * holding that one line in memory.
 *
 * Zstandard is detected from the first four bytes (28 B5 2F FD), which the
 * reader peeks before deciding, so it works on pipes.  Concatenated frames are
 * read one after another.  End of file while ZSTD_decompressStream still
 * expects input means the frame was cut short: FTK_ETRUNC.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>
#include "cleanup.h"
#include "stream.h"

#define READ_CHUNK (1u << 20)

struct ftk_reader {
	int fd;
	int own_fd;
	char *name;
	/* decoded bytes: buf[pos..end) not yet returned */
	char *buf;
	size_t cap, pos, end;
	/* zstd */
	ZSTD_DCtx *dctx;
	char *zin;
	size_t zin_cap, zin_pos, zin_len;
	size_t zret;		/* last ZSTD_decompressStream result: 0 = frame done */
	int zstd;
	int started;		/* detection done */
	int eof;		/* underlying file exhausted */
	int failed;
	int keep_partial;	/* hand out a cut line before FTK_ETRUNC */
	uint64_t max_line;	/* 0, or the longest line held in memory */
	char prefix[FTK_LINE_PREFIX + 1];	/* an oversize line's first bytes */
	int pending;		/* an error to return on the next call (after a cut line) */
	struct ftk_error pending_err;
	long lineno;
	uint64_t bytes_in;
	int64_t size;
};

long ftk_utf8_check(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;
	while (i < len) {
		/* ASCII fast path, 8 bytes at a time */
		while (i + 8 <= len) {
			uint64_t w;
			memcpy(&w, s + i, 8);
			if (w & 0x8080808080808080ull)
				break;
			i += 8;
		}
		if (i >= len)
			break;
		unsigned c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t n = len - i;
		if (c >= 0xC2 && c <= 0xDF) {
			if (n < 2 || (s[i + 1] & 0xC0) != 0x80)
				return (long)i;
			i += 2;
		} else if (c >= 0xE0 && c <= 0xEF) {
			if (n < 3 || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80)
				return (long)i;
			if ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] >= 0xA0))
				return (long)i;
			i += 3;
		} else if (c >= 0xF0 && c <= 0xF4) {
			if (n < 4 || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 ||
			    (s[i + 3] & 0xC0) != 0x80)
				return (long)i;
			if ((c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] >= 0x90))
				return (long)i;
			i += 4;
		} else {
			return (long)i;
		}
	}
	return -1;
}

static int reader_new(struct ftk_reader **out, int fd, int own, const char *name)
{
	struct ftk_reader *r = xcalloc(1, sizeof(*r));
	struct stat st;
	r->fd = fd;
	r->own_fd = own;
	r->name = xstrdup(name);
	r->cap = READ_CHUNK;
	r->buf = xmalloc(r->cap + 1);
	r->size = -1;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
		r->size = st.st_size;
	*out = r;
	return 0;
}

int ftk_reader_open(struct ftk_reader **out, const char *path, struct ftk_error *err)
{
	*out = NULL;
	if (!strcmp(path, "-"))
		return reader_new(out, 0, 0, "-");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ftk_error_set(err, FTK_EIO, path, 0, NULL, "cannot open '%s': %s", path,
				     strerror(errno));
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		close(fd);
		return ftk_error_set(err, FTK_EIO, path, 0, NULL, "cannot read '%s': Is a directory",
				     path);
	}
	return reader_new(out, fd, 1, path);
}

int ftk_reader_open_fp(struct ftk_reader **out, FILE *fp, const char *name,
		       struct ftk_error *err)
{
	(void)err;
	fflush(fp);
	return reader_new(out, fileno(fp), 0, name);
}

static ssize_t read_some(struct ftk_reader *r, char *dst, size_t n)
{
	for (;;) {
		ssize_t k = read(r->fd, dst, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k > 0)
			r->bytes_in += (uint64_t)k;
		return k;
	}
}

static int io_error(struct ftk_reader *r, struct ftk_error *err)
{
	r->failed = 1;
	return ftk_error_set(err, FTK_EIO, r->name, r->lineno, NULL, "cannot read '%s': %s",
			     r->name, strerror(errno));
}

/*
 * Decide plain or zstd from the first bytes.  Whatever was read goes to the
 * zstd input buffer or straight into the decoded buffer.
 */
static int detect(struct ftk_reader *r, struct ftk_error *err)
{
	unsigned char head[8];
	size_t got = 0;
	r->started = 1;
	while (got < 4) {
		ssize_t k = read_some(r, (char *)head + got, 4 - got);
		if (k < 0)
			return io_error(r, err);
		if (k == 0)
			break;
		got += (size_t)k;
	}
	if (got == 4 && head[0] == 0x28 && head[1] == 0xB5 && head[2] == 0x2F && head[3] == 0xFD) {
		r->zstd = 1;
		r->dctx = ZSTD_createDCtx();
		if (!r->dctx) {
			fprintf(stderr, "fatal: out of memory creating a zstd context\n");
			abort();
		}
		r->zin_cap = ZSTD_DStreamInSize();
		if (r->zin_cap < 4)
			r->zin_cap = 4;
		r->zin = xmalloc(r->zin_cap);
		memcpy(r->zin, head, 4);
		r->zin_len = 4;
		r->zret = 1;
	} else {
		memcpy(r->buf + r->end, head, got);
		r->end += got;
		if (got < 4)
			r->eof = 1;
	}
	return 0;
}

/* Add decoded bytes at buf[end..cap).  Returns bytes added, 0 at EOF, or an error. */
static ssize_t fill(struct ftk_reader *r, struct ftk_error *err)
{
	if (r->eof)
		return 0;
	if (!r->zstd) {
		ssize_t k = read_some(r, r->buf + r->end, r->cap - r->end);
		if (k < 0)
			return io_error(r, err);
		if (k == 0)
			r->eof = 1;
		r->end += (size_t)k;
		return k;
	}
	for (;;) {
		if (r->zin_pos == r->zin_len) {
			ssize_t k = read_some(r, r->zin, r->zin_cap);
			if (k < 0)
				return io_error(r, err);
			if (k == 0) {
				r->eof = 1;
				if (r->zret != 0) {
					r->failed = 1;
					return ftk_error_set(err, FTK_ETRUNC, r->name, r->lineno + 1, NULL,
							     "truncated zstd frame: the file ends in the middle of compressed data");
				}
				return 0;
			}
			r->zin_pos = 0;
			r->zin_len = (size_t)k;
		}
		ZSTD_inBuffer in = { r->zin, r->zin_len, r->zin_pos };
		ZSTD_outBuffer out = { r->buf + r->end, r->cap - r->end, 0 };
		size_t ret = ZSTD_decompressStream(r->dctx, &out, &in);
		r->zin_pos = in.pos;
		if (ZSTD_isError(ret)) {
			r->failed = 1;
			return ftk_error_set(err, FTK_EDATA, r->name, r->lineno + 1, NULL,
					     "corrupt zstd data: %s", ZSTD_getErrorName(ret));
		}
		r->zret = ret;
		r->end += out.pos;
		if (out.pos > 0)
			return (ssize_t)out.pos;
		if (out.pos == out.size)
			return 0; /* cannot happen: caller guarantees room */
	}
}

/* Hand out buf[start..start+len) as the next line. */
static void hand_out(struct ftk_reader *r, struct ftk_line *line, char *start, size_t len)
{
	r->lineno++;
	line->had_cr = 0;
	line->truncated = 0;
	line->oversize = 0;
	if (len && start[len - 1] == '\r') {
		len--;
		line->had_cr = 1;
	}
	start[len] = '\0';	/* buf has one spare byte past cap */
	if (r->lineno == 1 && len >= 3 && (unsigned char)start[0] == 0xEF &&
	    (unsigned char)start[1] == 0xBB && (unsigned char)start[2] == 0xBF) {
		start += 3;
		len -= 3;
	}
	line->data = start;
	line->len = len;
	line->lineno = r->lineno;
	line->file = r->name;
	line->utf8_error = ftk_utf8_check(start, len);
}

void ftk_reader_keep_partial(struct ftk_reader *r)
{
	r->keep_partial = 1;
}

void ftk_reader_set_max_line(struct ftk_reader *r, uint64_t max)
{
	r->max_line = max;
}

/*
 * The line at buf[pos..end) has no newline yet and is longer than max_line:
 * keep its first bytes aside, then read and drop the rest up to its newline
 * (or the end of the input), so that the buffer never grows past what it
 * has.  Returns 1 with the line handed out, or an error (the line is lost).
 */
static int skip_long(struct ftk_reader *r, struct ftk_line *line, struct ftk_error *err)
{
	size_t have = r->end - r->pos;
	size_t keep = have < FTK_LINE_PREFIX ? have : FTK_LINE_PREFIX;
	uint64_t total = have;
	int cr = 0;
	memcpy(r->prefix, r->buf + r->pos, keep);
	r->prefix[keep] = '\0';
	cr = have && r->buf[r->end - 1] == '\r';
	r->pos = r->end = 0;
	for (;;) {
		ssize_t k = fill(r, err);
		if (k < 0)
			return (int)k;
		if (k == 0)
			break;	/* the line ends at the end of the input */
		char *nl = memchr(r->buf, '\n', r->end);
		if (nl) {
			size_t n = (size_t)(nl - r->buf);
			total += n;
			cr = n ? nl[-1] == '\r' : cr;
			r->pos = n + 1;
			break;
		}
		total += r->end;
		cr = r->buf[r->end - 1] == '\r';
		r->end = 0;
	}
	r->lineno++;
	line->data = r->prefix;
	line->len = keep;
	line->lineno = r->lineno;
	line->file = r->name;
	line->utf8_error = -1;
	line->had_cr = cr;
	line->truncated = 0;
	line->oversize = total - (uint64_t)cr;
	return 1;
}

int ftk_reader_next(struct ftk_reader *r, struct ftk_line *line, struct ftk_error *err)
{
	if (r->pending) {
		int rc = r->pending;
		r->pending = 0;
		if (err)
			*err = r->pending_err;
		return rc;
	}
	if (r->failed)
		return 0;
	if (!r->started) {
		int rc = detect(r, err);
		if (rc < 0)
			return rc;
	}
	size_t scan = r->pos;
	for (;;) {
		char *nl = memchr(r->buf + scan, '\n', r->end - scan);
		if (nl || (r->eof && r->end > r->pos)) {
			char *start = r->buf + r->pos;
			size_t len = nl ? (size_t)(nl - start) : r->end - r->pos;
			r->pos = nl ? (size_t)(nl - r->buf) + 1 : r->end;
			hand_out(r, line, start, len);
			return 1;
		}
		if (r->eof)
			return 0;
		if (r->max_line && r->end - r->pos > r->max_line)
			return skip_long(r, line, err);
		/* no full line: make room, then read more */
		if (r->pos > 0) {
			memmove(r->buf, r->buf + r->pos, r->end - r->pos);
			r->end -= r->pos;
			r->pos = 0;
		}
		scan = r->end;
		if (r->end == r->cap) {
			r->cap *= 2;
			r->buf = xrealloc(r->buf, r->cap + 1);
		}
		ssize_t k = fill(r, err);
		if (k == FTK_ETRUNC && r->keep_partial && r->end > r->pos) {
			/* the cut record, then the error (its line is this line's) */
			struct ftk_error tmp;
			ftk_error_clear(&tmp);
			ftk_error_set(&tmp, FTK_ETRUNC, r->name, r->lineno + 1, NULL, "%s",
				      err ? err->msg : "truncated zstd frame");
			r->pending = FTK_ETRUNC;
			r->pending_err = tmp;
			char *start = r->buf + r->pos;
			size_t len = r->end - r->pos;
			r->pos = r->end;
			hand_out(r, line, start, len);
			line->truncated = 1;
			return 1;
		}
		if (k < 0)
			return (int)k;
	}
}

uint64_t ftk_reader_bytes_in(const struct ftk_reader *r)
{
	return r->bytes_in;
}

int64_t ftk_reader_size(const struct ftk_reader *r)
{
	return r->size;
}

int ftk_reader_is_zstd(const struct ftk_reader *r)
{
	return r->zstd;
}

void ftk_reader_close(struct ftk_reader *r)
{
	if (!r)
		return;
	if (r->own_fd)
		close(r->fd);
	ZSTD_freeDCtx(r->dctx);
	free(r->zin);
	free(r->buf);
	free(r->name);
	free(r);
}

int ftk_read_all(const char *path, char **data, size_t *len, struct ftk_error *err)
{
	struct ftk_reader *r;
	int rc = ftk_reader_open(&r, path, err);
	*data = NULL;
	*len = 0;
	if (rc < 0)
		return rc;
	rc = detect(r, err);
	while (rc >= 0) {
		if (r->end == r->cap) {
			r->cap *= 2;
			r->buf = xrealloc(r->buf, r->cap + 1);
		}
		ssize_t k = fill(r, err);
		if (k < 0)
			rc = (int)k;
		if (k <= 0)
			break;
	}
	if (rc < 0) {
		ftk_reader_close(r);
		return rc;
	}
	r->buf[r->end] = '\0';
	*data = r->buf;
	*len = r->end;
	r->buf = NULL;
	ftk_reader_close(r);
	return 0;
}

/* ------------------------------------------------------------------ writer */

#define WBUF (1u << 18)

enum writer_kind {
	W_STDOUT,	/* fd 1, not ours to close */
	W_THROUGH,	/* our own fd on a device, pipe, socket or an inherited fd */
	W_RENAME,	/* a temporary beside a regular file, renamed on close */
};

struct ftk_writer {
	int fd;
	enum writer_kind kind;
	char *path, *tmp;	/* path as given; tmp only for W_RENAME */
	char *target;		/* W_RENAME: path with symlinks followed */
	char *buf;
	size_t len;
	ZSTD_CCtx *cctx;
	char *zout;
	size_t zout_cap;
	int err;		/* errno of the first failure, sticky */
};

static int write_all(struct ftk_writer *w, const char *p, size_t n)
{
	while (n) {
		ssize_t k = write(w->fd, p, n);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			w->err = errno;
			return FTK_EIO;
		}
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int zstd_push(struct ftk_writer *w, const char *p, size_t n, ZSTD_EndDirective mode)
{
	ZSTD_inBuffer in = { p, n, 0 };
	for (;;) {
		ZSTD_outBuffer out = { w->zout, w->zout_cap, 0 };
		size_t rem = ZSTD_compressStream2(w->cctx, &out, &in, mode);
		if (ZSTD_isError(rem)) {
			w->err = EIO;
			return FTK_EIO;
		}
		if (out.pos && write_all(w, w->zout, out.pos))
			return FTK_EIO;
		if (mode == ZSTD_e_continue ? in.pos == in.size : rem == 0)
			return 0;
	}
}

static int drain(struct ftk_writer *w, ZSTD_EndDirective mode)
{
	int rc;
	if (w->err)
		return FTK_EIO;
	if (w->cctx)
		rc = zstd_push(w, w->buf, w->len, mode);
	else
		rc = write_all(w, w->buf, w->len);
	w->len = 0;
	return rc;
}

/*
 * The names that mean "a descriptor this process already has": writing to
 * them must go through that descriptor (its offset, its O_APPEND, the pipe
 * behind it), never replace what the name points to.  Returns the fd or -1.
 */
static int inherited_fd(const char *path)
{
	const char *num = NULL;
	if (!strcmp(path, "/dev/stdout"))
		return 1;
	if (!strcmp(path, "/dev/stderr"))
		return 2;
	if (!strncmp(path, "/dev/fd/", 8))
		num = path + 8;
	else if (!strncmp(path, "/proc/self/fd/", 14))
		num = path + 14;
	if (!num || !*num)
		return -1;
	char *end;
	long v = strtol(num, &end, 10);
	return *end || v < 0 || v > 1 << 20 ? -1 : (int)v;
}

/*
 * Follow symlinks in the last component until it names something that is not
 * a link, or nothing (a dangling link is followed to the file it would
 * create), or a descriptor name (*fd set to its number, else -1).  Returns a
 * new string, or NULL with errno set (ELOOP after 40 links).
 */
static char *follow_links(const char *path, int *fd)
{
	char *cur = xstrdup(path);
	for (int hops = 0; hops < 40; hops++) {
		struct stat st;
		if ((*fd = inherited_fd(cur)) >= 0 || lstat(cur, &st) < 0 || !S_ISLNK(st.st_mode))
			return cur;
		char link[4096];
		ssize_t n = readlink(cur, link, sizeof(link) - 1);
		if (n < 0) {
			free(cur);
			return NULL;
		}
		link[n] = '\0';
		char *next;
		const char *slash = strrchr(cur, '/');
		if (link[0] == '/' || !slash) {
			next = xstrdup(link);
		} else {
			size_t d = (size_t)(slash - cur) + 1;
			next = xmalloc(d + (size_t)n + 1);
			memcpy(next, cur, d);
			memcpy(next + d, link, (size_t)n + 1);
		}
		free(cur);
		cur = next;
	}
	free(cur);
	errno = ELOOP;
	return NULL;
}

static int open_fail(struct ftk_writer *w, struct ftk_error *err, const char *what,
		     const char *path, int e)
{
	ftk_error_set(err, FTK_EIO, path, 0, NULL, "cannot %s '%s': %s", what, path,
		      strerror(e));
	free(w->path);
	free(w->tmp);
	free(w->target);
	free(w->buf);
	free(w);
	return FTK_EIO;
}

int ftk_writer_open(struct ftk_writer **out, const char *path, int level,
		    struct ftk_error *err)
{
	struct ftk_writer *w = xcalloc(1, sizeof(*w));
	struct stat st;
	*out = NULL;
	w->buf = xmalloc(WBUF);
	if (!path || !strcmp(path, "-")) {
		w->fd = 1;
		w->kind = W_STDOUT;
		goto done;
	}
	w->path = xstrdup(path);
	int fd;
	w->target = follow_links(path, &fd);
	if (!w->target)
		return open_fail(w, err, "create", path, errno);
	if (fd >= 0) {
		w->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		if (w->fd < 0)
			return open_fail(w, err, "write", path, errno);
		w->kind = W_THROUGH;
		goto done;
	}
	int exists = stat(w->target, &st) == 0;
	if (exists && S_ISDIR(st.st_mode))
		return open_fail(w, err, "create", path, EISDIR);
	if (exists && !S_ISREG(st.st_mode)) {
		/* a device, a named pipe, a socket: write to it, never replace it */
		w->fd = open(w->target, O_WRONLY | O_CLOEXEC);
		if (w->fd < 0)
			return open_fail(w, err, "write", path, errno);
		w->kind = W_THROUGH;
		goto done;
	}
	size_t n = strlen(w->target);
	w->tmp = xmalloc(n + 32);
	snprintf(w->tmp, n + 32, "%s.tmp.%ld", w->target, (long)getpid());
	w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (w->fd < 0 && exists && (errno == EACCES || errno == EPERM || errno == EROFS) &&
	    access(w->target, W_OK) == 0) {
		/* a file we may write in a directory we may not: write it in place */
		free(w->tmp);
		w->tmp = NULL;
		w->fd = open(w->target, O_WRONLY | O_TRUNC | O_CLOEXEC);
		if (w->fd < 0)
			return open_fail(w, err, "write", path, errno);
		w->kind = W_THROUGH;
		goto done;
	}
	if (w->fd < 0)
		return open_fail(w, err, "create", path, errno);
	w->kind = W_RENAME;
	ftk_cleanup_add(w->tmp);
	/* the replacement keeps the permissions of the file it replaces */
	if (exists)
		(void)fchmod(w->fd, st.st_mode & 07777);
done:
	if (w->path) {
		size_t pn = strlen(w->path);
		if (pn > 4 && !strcmp(w->path + pn - 4, ".zst")) {
			w->cctx = ZSTD_createCCtx();
			ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel,
					       level ? level : ZSTD_CLEVEL_DEFAULT);
			ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
			w->zout_cap = ZSTD_CStreamOutSize();
			w->zout = xmalloc(w->zout_cap);
		}
	}
	*out = w;
	return 0;
}

int ftk_writer_write(struct ftk_writer *w, const void *data, size_t len)
{
	if (w->err)
		return FTK_EIO;
	if (w->len + len > WBUF) {
		if (drain(w, ZSTD_e_continue))
			return FTK_EIO;
		if (len > WBUF) {
			if (w->cctx)
				return zstd_push(w, data, len, ZSTD_e_continue);
			return write_all(w, data, len);
		}
	}
	memcpy(w->buf + w->len, data, len);
	w->len += len;
	return 0;
}

int ftk_writer_line(struct ftk_writer *w, const void *data, size_t len)
{
	if (ftk_writer_write(w, data, len))
		return FTK_EIO;
	return ftk_writer_write(w, "\n", 1);
}

int ftk_writer_flush(struct ftk_writer *w)
{
	return drain(w, w->cctx ? ZSTD_e_flush : ZSTD_e_continue);
}

static void writer_free(struct ftk_writer *w)
{
	ZSTD_freeCCtx(w->cctx);
	free(w->zout);
	free(w->buf);
	free(w->path);
	free(w->tmp);
	free(w->target);
	free(w);
}

int ftk_writer_close(struct ftk_writer *w, struct ftk_error *err)
{
	int rc;
	if (!w)
		return 0;
	rc = drain(w, w->cctx ? ZSTD_e_end : ZSTD_e_continue);
	if (w->kind == W_RENAME) {
		if (!rc && fsync(w->fd) < 0 && errno != EINVAL)
			w->err = errno, rc = FTK_EIO;
		if (close(w->fd) < 0 && !rc)
			w->err = errno, rc = FTK_EIO;
		if (!rc && rename(w->tmp, w->target) < 0)
			w->err = errno, rc = FTK_EIO;
		if (rc)
			unlink(w->tmp);
		ftk_cleanup_remove(w->tmp);
	} else if (w->kind == W_THROUGH) {
		if (close(w->fd) < 0 && !rc)
			w->err = errno, rc = FTK_EIO;
	}
	if (rc || w->err) {
		const char *name = w->path ? w->path : "standard output";
		rc = ftk_error_set(err, FTK_EIO, w->path, 0, NULL, "cannot write '%s': %s", name,
				   strerror(w->err ? w->err : EIO));
	}
	writer_free(w);
	return rc;
}

void ftk_writer_abort(struct ftk_writer *w)
{
	if (!w)
		return;
	if (w->kind == W_RENAME) {
		close(w->fd);
		unlink(w->tmp);
		ftk_cleanup_remove(w->tmp);
	} else {
		drain(w, ZSTD_e_continue);
		if (w->kind == W_THROUGH)
			close(w->fd);
	}
	writer_free(w);
}
