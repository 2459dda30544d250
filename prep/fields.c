/*
 * fields.c: walk a record's string values in its own bytes (see fields.h).
 *
 * A small recursive-descent scanner over the line.  It never builds a tree:
 * it keeps the current field path in a strbuf (truncated back on the way
 * out of each member), decodes string literals into a scratch buffer only
 * when they are values, and copies the bytes between literals verbatim.
 * Depth is bounded as cJSON's is, so hostile nesting cannot blow the stack.
 */
#include <stdio.h>
#include <string.h>
#include "prep/fields.h"

#define MAX_DEPTH 1000

struct walk {
	const char *s;
	size_t n, i;
	ftk_field_fn fn;
	void *ctx;
	struct strbuf *out;
	size_t copied;		/* s[0..copied) already copied to out */
	struct strbuf path, val, repl;
	int replaced;
	/* get_raw */
	const char *want;
	const char *raw;
	size_t raw_len;
	int found;
	struct ftk_error *err;
};

static int fail(struct walk *w, const char *what)
{
	ftk_error_msg(w->err, FTK_EDATA, "invalid JSON: %s at column %zu", what, w->i + 1);
	if (w->err)
		w->err->offset = (long)w->i;
	return FTK_EDATA;
}

static void skip_ws(struct walk *w)
{
	while (w->i < w->n && (w->s[w->i] == ' ' || w->s[w->i] == '\t' || w->s[w->i] == '\n' ||
			       w->s[w->i] == '\r'))
		w->i++;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int hex4(const char *p, unsigned *u)
{
	unsigned v = 0;
	for (int k = 0; k < 4; k++) {
		int h = hexval((unsigned char)p[k]);
		if (h < 0)
			return -1;
		v = v << 4 | (unsigned)h;
	}
	*u = v;
	return 0;
}

static void add_utf8(struct strbuf *sb, unsigned cp)
{
	char b[4];
	if (cp < 0x80) {
		strbuf_addch(sb, (int)cp);
	} else if (cp < 0x800) {
		b[0] = (char)(0xC0 | cp >> 6);
		b[1] = (char)(0x80 | (cp & 63));
		strbuf_add(sb, b, 2);
	} else if (cp < 0x10000) {
		b[0] = (char)(0xE0 | cp >> 12);
		b[1] = (char)(0x80 | (cp >> 6 & 63));
		b[2] = (char)(0x80 | (cp & 63));
		strbuf_add(sb, b, 3);
	} else {
		b[0] = (char)(0xF0 | cp >> 18);
		b[1] = (char)(0x80 | (cp >> 12 & 63));
		b[2] = (char)(0x80 | (cp >> 6 & 63));
		b[3] = (char)(0x80 | (cp & 63));
		strbuf_add(sb, b, 4);
	}
}

int ftk_json_unescape(const char *s, size_t n, struct strbuf *out)
{
	if (n < 2 || s[0] != '"' || s[n - 1] != '"')
		return FTK_EDATA;
	size_t i = 1, end = n - 1;
	while (i < end) {
		size_t j = i;
		while (j < end && s[j] != '\\')
			j++;
		strbuf_add(out, s + i, j - i);
		i = j;
		if (i >= end)
			break;
		if (i + 1 >= end)
			return FTK_EDATA;
		char c = s[i + 1];
		i += 2;
		switch (c) {
		case '"': strbuf_addch(out, '"'); break;
		case '\\': strbuf_addch(out, '\\'); break;
		case '/': strbuf_addch(out, '/'); break;
		case 'b': strbuf_addch(out, '\b'); break;
		case 'f': strbuf_addch(out, '\f'); break;
		case 'n': strbuf_addch(out, '\n'); break;
		case 'r': strbuf_addch(out, '\r'); break;
		case 't': strbuf_addch(out, '\t'); break;
		case 'u': {
			unsigned u, lo;
			if (i + 4 > end || hex4(s + i, &u) < 0)
				return FTK_EDATA;
			i += 4;
			if (u >= 0xD800 && u < 0xDC00 && i + 6 <= end && s[i] == '\\' &&
			    s[i + 1] == 'u' && hex4(s + i + 2, &lo) == 0 && lo >= 0xDC00 &&
			    lo < 0xE000) {
				u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
				i += 6;
			} else if (u >= 0xD800 && u < 0xE000) {
				u = 0xFFFD;	/* a lone surrogate has no UTF-8 form */
			}
			add_utf8(out, u);
			break;
		}
		default:
			return FTK_EDATA;
		}
	}
	return 0;
}

/* Scan a string literal starting at s[i] == '"'; leaves i after it. */
static int scan_string(struct walk *w, size_t *start)
{
	*start = w->i;
	w->i++;
	while (w->i < w->n) {
		const char *q = memchr(w->s + w->i, '"', w->n - w->i);
		if (!q)
			break;
		size_t k = (size_t)(q - w->s), bs = 0;
		while (k - bs > w->i && w->s[k - bs - 1] == '\\')
			bs++;
		w->i = k + 1;
		if (!(bs & 1))
			return 0;
	}
	w->i = w->n;
	return fail(w, "unterminated string");
}

static int walk_value(struct walk *w, int depth);

static void path_key(struct strbuf *p, const char *k, size_t n)
{
	if (p->len)
		strbuf_addch(p, '.');
	strbuf_add(p, k, n);
}

static int visit_string(struct walk *w, size_t start)
{
	size_t lit = w->i - start;
	if (!w->fn)
		return 0;
	strbuf_reset(&w->val);
	if (ftk_json_unescape(w->s + start, lit, &w->val) < 0) {
		w->i = start;
		return fail(w, "bad escape in string");
	}
	strbuf_reset(&w->repl);
	int rc = w->fn(w->ctx, w->path.buf, w->val.buf, w->val.len, &w->repl);
	if (rc < 0)
		return rc;
	if (rc > 0) {
		w->replaced++;
		if (w->out) {
			strbuf_add(w->out, w->s + w->copied, start - w->copied);
			strbuf_add_json_str(w->out, w->repl.buf, w->repl.len);
			w->copied = w->i;
		}
	}
	return 0;
}

static int walk_value(struct walk *w, int depth)
{
	int rc;
	skip_ws(w);
	if (w->i >= w->n)
		return fail(w, "unexpected end");
	if (depth > MAX_DEPTH)
		return fail(w, "nesting too deep");
	size_t vstart = w->i;
	int is_target = w->want && !w->found && !strcmp(w->path.buf, w->want);
	char c = w->s[w->i];
	if (c == '"') {
		size_t start;
		if ((rc = scan_string(w, &start)) < 0)
			return rc;
		if ((rc = visit_string(w, start)) < 0)
			return rc;
	} else if (c == '{') {
		w->i++;
		skip_ws(w);
		if (w->i < w->n && w->s[w->i] == '}') {
			w->i++;
		} else {
			for (;;) {
				skip_ws(w);
				if (w->i >= w->n || w->s[w->i] != '"')
					return fail(w, "expected a key");
				size_t ks;
				if ((rc = scan_string(w, &ks)) < 0)
					return rc;
				size_t plen = w->path.len;
				const char *k = w->s + ks + 1;
				size_t kn = w->i - ks - 2;
				if (memchr(k, '\\', kn)) {
					struct strbuf kb = STRBUF_INIT;
					if (ftk_json_unescape(w->s + ks, w->i - ks, &kb) < 0) {
						strbuf_release(&kb);
						return fail(w, "bad escape in key");
					}
					path_key(&w->path, kb.buf, kb.len);
					strbuf_release(&kb);
				} else {
					path_key(&w->path, k, kn);
				}
				skip_ws(w);
				if (w->i >= w->n || w->s[w->i] != ':')
					return fail(w, "expected ':'");
				w->i++;
				if ((rc = walk_value(w, depth + 1)) < 0)
					return rc;
				strbuf_setlen(&w->path, plen);
				skip_ws(w);
				if (w->i < w->n && w->s[w->i] == ',') {
					w->i++;
					continue;
				}
				if (w->i < w->n && w->s[w->i] == '}') {
					w->i++;
					break;
				}
				return fail(w, "expected ',' or '}'");
			}
		}
	} else if (c == '[') {
		w->i++;
		skip_ws(w);
		if (w->i < w->n && w->s[w->i] == ']') {
			w->i++;
		} else {
			for (int idx = 0;; idx++) {
				size_t plen = w->path.len;
				strbuf_addf(&w->path, "[%d]", idx);
				if ((rc = walk_value(w, depth + 1)) < 0)
					return rc;
				strbuf_setlen(&w->path, plen);
				skip_ws(w);
				if (w->i < w->n && w->s[w->i] == ',') {
					w->i++;
					continue;
				}
				if (w->i < w->n && w->s[w->i] == ']') {
					w->i++;
					break;
				}
				return fail(w, "expected ',' or ']'");
			}
		}
	} else {
		/* number, true, false, null: copied as they are */
		while (w->i < w->n && !strchr(",]} \t\r\n", w->s[w->i]))
			w->i++;
		if (w->i == vstart)
			return fail(w, "unexpected character");
	}
	if (is_target) {
		w->found = 1;
		w->raw = w->s + vstart;
		w->raw_len = w->i - vstart;
	}
	return 0;
}

static void walk_init(struct walk *w, const char *json, size_t len, struct ftk_error *err)
{
	memset(w, 0, sizeof(*w));
	w->s = json;
	w->n = len;
	w->err = err;
	strbuf_init(&w->path, 64);
	strbuf_init(&w->val, 0);
	strbuf_init(&w->repl, 0);
}

static int walk_run(struct walk *w)
{
	int rc = walk_value(w, 0);
	if (rc >= 0) {
		skip_ws(w);
		if (w->i != w->n)
			rc = fail(w, "trailing characters");
	}
	strbuf_release(&w->path);
	strbuf_release(&w->val);
	strbuf_release(&w->repl);
	return rc;
}

int ftk_fields_walk(const char *json, size_t len, ftk_field_fn fn, void *ctx,
		    struct strbuf *out, struct ftk_error *err)
{
	struct walk w;
	walk_init(&w, json, len, err);
	w.fn = fn;
	w.ctx = ctx;
	w.out = out;
	size_t out0 = out ? out->len : 0;
	int rc = walk_run(&w);
	if (rc < 0) {
		if (out)
			strbuf_setlen(out, out0);
		return rc;
	}
	if (out)
		strbuf_add(out, json + w.copied, len - w.copied);
	return w.replaced;
}

int ftk_fields_get_raw(const char *json, size_t len, const char *path, const char **raw,
		       size_t *raw_len, struct ftk_error *err)
{
	struct walk w;
	walk_init(&w, json, len, err);
	w.want = path;
	int rc = walk_run(&w);
	if (rc < 0)
		return rc;
	if (!w.found)
		return 0;
	*raw = w.raw;
	*raw_len = w.raw_len;
	return 1;
}

/* One segment of a path: a key or an index; "[*]" and "*" are wildcards. */
static const char *next_seg(const char *p, const char **seg, size_t *n, int *is_index)
{
	if (*p == '.')
		p++;
	if (*p == '[') {
		const char *e = strchr(p, ']');
		if (!e)
			e = p + strlen(p) - 1;
		*seg = p + 1;
		*n = (size_t)(e - p - 1);
		*is_index = 1;
		return e + 1;
	}
	const char *e = p;
	while (*e && *e != '.' && *e != '[')
		e++;
	*seg = p;
	*n = (size_t)(e - p);
	*is_index = 0;
	return e;
}

int ftk_field_match(const char *pattern, const char *path)
{
	const char *p = pattern, *q = path;
	while (*p) {
		const char *ps, *qs;
		size_t pn, qn;
		int pi, qi;
		if (!*q)
			return 0;
		p = next_seg(p, &ps, &pn, &pi);
		q = next_seg(q, &qs, &qn, &qi);
		if (pi != qi)
			return 0;
		if (pn == 1 && ps[0] == '*')
			continue;
		if (pn != qn || memcmp(ps, qs, pn))
			return 0;
	}
	return 1;
}
