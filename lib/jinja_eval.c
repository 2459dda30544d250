/*
 * jinja_eval.c: a parsed template run against the caller's variables.
 *
 * A tree-walking evaluator.  Values live in an arena that is freed when a
 * render ends, so evaluation never frees anything and errors can unwind with
 * longjmp.  Output is written straight into the caller's buffer, which is
 * what lets the renderer say where each iteration over a tracked array (the
 * messages) went, and where the first byte derived from a tracked field (the
 * message's content or tool calls) landed: strings carry a "taint offset",
 * the position of their first byte that came from such a field, through
 * concatenation and the string functions.
 *
 * Where @huggingface/jinja differs from Python Jinja, this follows the
 * former, because its renders are what transformers.js users train on:
 * strip/lstrip/rstrip ignore their argument and trim all whitespace; none
 * and undefined print nothing; booleans print as true/false; numbers print
 * as JavaScript prints them; == is JavaScript's loose equality.
 */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <utf8proc.h>
#include "jinja_int.h"
#include "json.h"

static long num_long(double d);
static int num_count(double d, int hi);

/* ------------------------------------------------------------ values */

enum vt { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_NS, V_FUNC, V_KW };

struct val;
struct list { struct val **v; size_t n, cap; };
struct dict { const char **k; size_t *kl; struct val **v; size_t n, cap; };
struct ctx;
struct scope;
struct func { struct val *self; struct node *macro; struct scope *scope; const char *name; };

struct val {
	enum vt t;
	int taint;		/* derived from a tracked field */
	union {
		int b;
		double num;
		struct { const char *s; size_t n; long toff; } str;
		struct list *list;
		struct dict *dict;	/* V_DICT, V_NS, V_KW */
		struct func *fn;
	} u;
};

/* ------------------------------------------------------------ evaluation */

struct scope {
	struct scope *parent;
	const char **k;
	size_t *kl;
	struct val **v;
	size_t n, cap;
};

enum { FLOW_NONE, FLOW_BREAK, FLOW_CONTINUE };

struct scratch { void *p; int is_sb; };

struct ctx {
	struct arena ar;
	struct ftk_error *err;
	jmp_buf jb;
	struct strbuf *out;		/* where output goes now */
	struct strbuf *main;		/* the caller's buffer */
	struct ftk_jinja_opts *opts;
	struct val **tracked;		/* converted elements of opts->track */
	size_t n_tracked;
	long cur_iter;			/* index into opts->iters of the innermost tracked iteration, -1 */
	int line;
	int flow;
	unsigned depth, max_depth;	/* evaluator recursion and its limit */
	size_t steps, max_steps;	/* units of work done and the limit */
	size_t max_output;		/* bytes in any string built, the output included */
	size_t mem_limit;		/* the memory limit beyond the variables, for the message */
	size_t var_bytes;		/* the size of the variables, which widens the last two */
	struct scratch *scr;		/* scratch memory to free (see scr_push) */
	size_t nscr, capscr;
};

static struct val V_UNDEF_S = { V_UNDEF, 0, { 0 } }, V_NONE_S = { V_NONE, 0, { 0 } };
static struct val V_TRUE_S = { V_BOOL, 0, { .b = 1 } }, V_FALSE_S = { V_BOOL, 0, { .b = 0 } };

static void rfail(struct ctx *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4), noreturn));
static void rfail(struct ctx *c, int code, const char *fmt, ...)
{
	char buf[700];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	ftk_error_set(c->err, code, NULL, c->line, NULL, "%s", buf);
	longjmp(c->jb, 1);
}

/*
 * The limits.  Each failure names its limit, so that a template that hits
 * one says which and a caller can tell a hostile template from a broken one.
 */
static void tick(struct ctx *c, size_t k)
{
	c->steps += k;
	if (c->steps > c->max_steps)
		rfail(c, FTK_ELIMIT, "render took more than %zu steps (the iteration limit)", c->max_steps);
}

static void enter(struct ctx *c)
{
	if (++c->depth > c->max_depth)
		rfail(c, FTK_ELIMIT, "render nested deeper than %u levels (the evaluator's depth limit)", c->max_depth);
}

/* A string of len bytes is about to get more. */
static void check_size(struct ctx *c, size_t len, size_t more)
{
	if (more > c->max_output || len > c->max_output - more)
		rfail(c, FTK_ELIMIT, "render built a string over %zu bytes (the output size limit)", c->max_output);
	tick(c, more >> 6);
}

static void mem_over(void *ctx)
{
	struct ctx *c = ctx;
	rfail(c, FTK_ELIMIT, "render used more than %zu bytes of memory (the memory limit)", c->mem_limit);
}

/* Scratch memory outside the arena (bytes) counts against the memory limit too. */
static void check_scratch(struct ctx *c, size_t bytes)
{
	if (c->ar.limit && (bytes > c->ar.limit || c->ar.total > c->ar.limit - bytes)) mem_over(c);
}

/*
 * Scratch memory (string buffers and arrays outside the arena) is
 * registered with the render, so that an error's longjmp, which skips the
 * frees on the way out, leaks nothing: the render frees what is still
 * registered.
 */
static void scr_push(struct ctx *c, void *p, int is_sb)
{
	FTK_ALLOC_GROW(c->scr, c->nscr + 1, c->capscr);
	c->scr[c->nscr++] = (struct scratch){ p, is_sb };
}

static struct strbuf *sb_new(struct ctx *c)
{
	struct strbuf *sb = xmalloc(sizeof(*sb));
	strbuf_init(sb, 0);
	scr_push(c, sb, 1);
	return sb;
}

static void *scr_alloc(struct ctx *c, size_t bytes)
{
	check_scratch(c, bytes);
	void *p = xmalloc(bytes);
	scr_push(c, p, 0);
	return p;
}

static void scr_release(struct scratch *x)
{
	if (x->is_sb) strbuf_release(x->p);
	free(x->p);
}

/* Free one registered block (the newest are searched first). */
static void scr_free(struct ctx *c, void *p)
{
	for (size_t i = c->nscr; i > 0; i--)
		if (c->scr[i - 1].p == p) {
			scr_release(&c->scr[i - 1]);
			c->scr[i - 1] = c->scr[--c->nscr];
			return;
		}
}

static struct val *mkval(struct ctx *c, enum vt t)
{
	struct val *v = aalloc(&c->ar, sizeof(*v));
	memset(v, 0, sizeof(*v));
	v->t = t;
	return v;
}

static struct val *mkbool(int b) { return b ? &V_TRUE_S : &V_FALSE_S; }

static struct val *mknum(struct ctx *c, double d, int is_float)
{
	struct val *v = mkval(c, is_float ? V_FLOAT : V_INT);
	v->u.num = d;
	return v;
}

static struct val *mkstr(struct ctx *c, const char *s, size_t n, long toff)
{
	tick(c, 1 + (n >> 6));
	struct val *v = mkval(c, V_STR);
	v->u.str.s = astrndup(&c->ar, s, n);
	v->u.str.n = n;
	v->u.str.toff = toff;
	v->taint = toff >= 0;
	return v;
}

/* A string that stays where it is (a variable's text in the caller's cJSON,
 * which outlives the render): the same value as mkstr's, without a copy. */
static struct val *mkstr_ref(struct ctx *c, const char *s, size_t n, long toff)
{
	tick(c, 1 + (n >> 6));
	struct val *v = mkval(c, V_STR);
	v->u.str.s = s;
	v->u.str.n = n;
	v->u.str.toff = toff;
	v->taint = toff >= 0;
	return v;
}

/* A string made from a scratch buffer, which is freed. */
static struct val *mkstr_sb(struct ctx *c, struct strbuf *sb, long toff)
{
	struct val *v = mkstr(c, sb->buf, sb->len, toff);
	scr_free(c, sb);
	return v;
}

static struct list *mklist(struct ctx *c)
{
	struct list *l = aalloc(&c->ar, sizeof(*l));
	memset(l, 0, sizeof(*l));
	return l;
}

static void list_push(struct ctx *c, struct list *l, struct val *x)
{
	tick(c, 1);
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 8;
		struct val **nv = aalloc(&c->ar, nc * sizeof(*nv));
		if (l->n) memcpy(nv, l->v, l->n * sizeof(*nv));
		l->v = nv;
		l->cap = nc;
	}
	l->v[l->n++] = x;
}

static struct val *mklistval(struct ctx *c, struct list *l)
{
	struct val *v = mkval(c, V_LIST);
	v->u.list = l;
	return v;
}

static struct dict *mkdict(struct ctx *c)
{
	struct dict *d = aalloc(&c->ar, sizeof(*d));
	memset(d, 0, sizeof(*d));
	return d;
}

/* c NULL: not counted (keyword arguments, which the template text bounds) */
static long dict_find(struct ctx *c, const struct dict *d, const char *k, size_t kl)
{
	if (c) tick(c, 1 + (d->n >> 3));
	for (size_t i = 0; i < d->n; i++)
		if (d->kl[i] == kl && !memcmp(d->k[i], k, kl)) return (long)i;
	return -1;
}

static void dict_set(struct ctx *c, struct dict *d, const char *k, size_t kl, struct val *v)
{
	long i = dict_find(c, d, k, kl);
	if (i >= 0) { d->v[i] = v; return; }
	if (d->n == d->cap) {
		size_t nc = d->cap ? d->cap * 2 : 8;
		const char **nk = aalloc(&c->ar, nc * sizeof(*nk));
		size_t *nkl = aalloc(&c->ar, nc * sizeof(*nkl));
		struct val **nv = aalloc(&c->ar, nc * sizeof(*nv));
		if (d->n) {
			memcpy(nk, d->k, d->n * sizeof(*nk));
			memcpy(nkl, d->kl, d->n * sizeof(*nkl));
			memcpy(nv, d->v, d->n * sizeof(*nv));
		}
		d->k = nk; d->kl = nkl; d->v = nv; d->cap = nc;
	}
	d->k[d->n] = k;
	d->kl[d->n] = kl;
	d->v[d->n] = v;
	d->n++;
}

static struct val *dict_get(struct ctx *c, const struct dict *d, const char *k, size_t kl)
{
	long i = dict_find(c, d, k, kl);
	return i >= 0 ? d->v[i] : NULL;
}

/* JSON -> values.  Objects under a tainting key of a tracked element are tainted. */
static struct val *from_json(struct ctx *c, const cJSON *j, int taint)
{
	struct val *v;
	enter(c);
	c->var_bytes += sizeof(*v) + (cJSON_IsString(j) ? strlen(j->valuestring) : 0);
	if (cJSON_IsString(j)) {
		v = mkstr_ref(c, j->valuestring, strlen(j->valuestring), taint ? 0 : -1);
	} else if (cJSON_IsNumber(j)) {
		double d = j->valuedouble;
		v = mknum(c, d, !(d == floor(d) && fabs(d) < 9.007199254740992e15));
	} else if (cJSON_IsBool(j)) {
		v = mkval(c, V_BOOL);
		v->u.b = cJSON_IsTrue(j);
	} else if (cJSON_IsNull(j)) {
		v = mkval(c, V_NONE);
	} else if (cJSON_IsArray(j)) {
		v = mklistval(c, mklist(c));
		const cJSON *it;
		cJSON_ArrayForEach(it, j) list_push(c, v->u.list, from_json(c, it, taint));
	} else if (cJSON_IsObject(j)) {
		v = mkval(c, V_DICT);
		v->u.dict = mkdict(c);
		const cJSON *it;
		cJSON_ArrayForEach(it, j) dict_set(c, v->u.dict, it->string, strlen(it->string), from_json(c, it, taint));
	} else {
		v = mkval(c, V_UNDEF);
	}
	v->taint = taint;
	c->depth--;
	return v;
}

/* ---- scopes */

static struct scope *scope_new(struct ctx *c, struct scope *parent)
{
	struct scope *s = aalloc(&c->ar, sizeof(*s));
	memset(s, 0, sizeof(*s));
	s->parent = parent;
	return s;
}

static void scope_set(struct ctx *c, struct scope *s, const char *k, size_t kl, struct val *v)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->kl[i] == kl && !memcmp(s->k[i], k, kl)) { s->v[i] = v; return; }
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 8;
		const char **nk = aalloc(&c->ar, nc * sizeof(*nk));
		size_t *nkl = aalloc(&c->ar, nc * sizeof(*nkl));
		struct val **nv = aalloc(&c->ar, nc * sizeof(*nv));
		if (s->n) {
			memcpy(nk, s->k, s->n * sizeof(*nk));
			memcpy(nkl, s->kl, s->n * sizeof(*nkl));
			memcpy(nv, s->v, s->n * sizeof(*nv));
		}
		s->k = nk; s->kl = nkl; s->v = nv; s->cap = nc;
	}
	s->k[s->n] = k;
	s->kl[s->n] = kl;
	s->v[s->n] = v;
	s->n++;
}

static struct val *scope_get(struct scope *s, const char *k, size_t kl)
{
	for (; s; s = s->parent)
		for (size_t i = 0; i < s->n; i++)
			if (s->kl[i] == kl && !memcmp(s->k[i], k, kl)) return s->v[i];
	return &V_UNDEF_S;
}

/* ---- conversions */

static const char *type_name(const struct val *v)
{
	static const char *const n[] = { "UndefinedValue", "NullValue", "BooleanValue", "IntegerValue", "FloatValue",
					 "StringValue", "ArrayValue", "ObjectValue", "NamespaceValue", "FunctionValue",
					 "KeywordArgumentsValue" };
	return n[v->t];
}

static int truthy(const struct val *v)
{
	switch (v->t) {
	case V_UNDEF: case V_NONE: return 0;
	case V_BOOL: return v->u.b;
	case V_INT: case V_FLOAT: return v->u.num != 0 && !isnan(v->u.num);
	case V_STR: return v->u.str.n > 0;
	case V_LIST: return v->u.list->n > 0;
	case V_DICT: case V_KW: return v->u.dict->n > 0;
	default: return 1;
	}
}

/* JavaScript's Number.prototype.toString for finite doubles. */
static void js_number(struct strbuf *sb, double d)
{
	if (isnan(d)) { strbuf_addstr(sb, "NaN"); return; }
	if (isinf(d)) { strbuf_addstr(sb, d < 0 ? "-Infinity" : "Infinity"); return; }
	if (d == 0) { strbuf_addch(sb, '0'); return; }
	char buf[64];
	int prec;
	for (prec = 1; prec <= 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*e", prec - 1, d);
		if (strtod(buf, NULL) == d) break;
	}
	/* buf: [-]D.DDDDe[+-]XX -> digits and exponent */
	char digits[32];
	int nd = 0, neg = buf[0] == '-';
	const char *p = buf + neg;
	for (; *p && *p != 'e'; p++) if (isdigit((unsigned char)*p)) digits[nd++] = *p;
	int e10 = atoi(p + 1);	/* value = 0.D1D2.. * 10^(e10+1) */
	while (nd > 1 && digits[nd - 1] == '0') nd--;
	int n = e10 + 1;	/* JS's n: position of the decimal point */
	if (neg) strbuf_addch(sb, '-');
	if (nd <= n && n <= 21) {
		strbuf_add(sb, digits, nd);
		for (int i = nd; i < n; i++) strbuf_addch(sb, '0');
	} else if (0 < n && n <= 21) {
		strbuf_add(sb, digits, n);
		strbuf_addch(sb, '.');
		strbuf_add(sb, digits + n, nd - n);
	} else if (-6 < n && n <= 0) {
		strbuf_addstr(sb, "0.");
		for (int i = 0; i < -n; i++) strbuf_addch(sb, '0');
		strbuf_add(sb, digits, nd);
	} else {
		strbuf_addch(sb, digits[0]);
		if (nd > 1) { strbuf_addch(sb, '.'); strbuf_add(sb, digits + 1, nd - 1); }
		strbuf_addf(sb, "e%c%d", n - 1 >= 0 ? '+' : '-', abs(n - 1));
	}
}

/* JSON.stringify of a string. */
static void json_str(struct strbuf *sb, const char *s, size_t n, int ascii)
{
	strbuf_addch(sb, '"');
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		switch (ch) {
		case '"': strbuf_addstr(sb, "\\\""); break;
		case '\\': strbuf_addstr(sb, "\\\\"); break;
		case '\n': strbuf_addstr(sb, "\\n"); break;
		case '\r': strbuf_addstr(sb, "\\r"); break;
		case '\t': strbuf_addstr(sb, "\\t"); break;
		case '\b': strbuf_addstr(sb, "\\b"); break;
		case '\f': strbuf_addstr(sb, "\\f"); break;
		default:
			if (ch < 0x20) strbuf_addf(sb, "\\u%04x", ch);
			else if (ascii && ch >= 0x7f) {
				utf8proc_int32_t cp;
				utf8proc_ssize_t k = utf8proc_iterate((const uint8_t *)s + i, n - i, &cp);
				if (k <= 0) { strbuf_addch(sb, ch); break; }
				if (cp >= 0x10000) {
					cp -= 0x10000;
					strbuf_addf(sb, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
				} else {
					strbuf_addf(sb, "\\u%04x", cp);
				}
				i += k - 1;
			} else strbuf_addch(sb, ch);
		}
	}
	strbuf_addch(sb, '"');
}

struct json_opts { int indent; int ascii; int sort; const char *isep, *ksep; int undef_null; };

static void to_json_r(struct ctx *c, struct strbuf *sb, const struct val *v, const struct json_opts *o, int depth);

static void to_json(struct ctx *c, struct strbuf *sb, const struct val *v, const struct json_opts *o, int depth)
{
	enter(c);
	to_json_r(c, sb, v, o, depth);
	c->depth--;
}

static void to_json_r(struct ctx *c, struct strbuf *sb, const struct val *v, const struct json_opts *o, int depth)
{
	switch (v->t) {
	case V_NONE: strbuf_addstr(sb, "null"); return;
	case V_UNDEF: strbuf_addstr(sb, o->undef_null ? "null" : "undefined"); return;
	case V_BOOL: strbuf_addstr(sb, v->u.b ? "true" : "false"); return;
	case V_INT: case V_FLOAT:
		if (!isfinite(v->u.num)) strbuf_addstr(sb, "null"); else js_number(sb, v->u.num);
		return;
	case V_STR:
		check_size(c, sb->len, 6 * v->u.str.n + 2);	/* at most \\u00XX per byte */
		json_str(sb, v->u.str.s, v->u.str.n, o->ascii);
		return;
	case V_LIST: case V_DICT: case V_NS: case V_KW: {
		int is_list = v->t == V_LIST;
		size_t n = is_list ? v->u.list->n : v->u.dict->n;
		char open = is_list ? '[' : '{', close = is_list ? ']' : '}';
		strbuf_addch(sb, open);
		size_t *order = NULL;
		if (!is_list && o->sort && n) {
			tick(c, n / 2 * n);	/* the insertion sort's comparisons, at most */
			order = scr_alloc(c, n * sizeof(*order));
			for (size_t i = 0; i < n; i++) order[i] = i;
			for (size_t i = 1; i < n; i++)	/* insertion sort by key bytes */
				for (size_t j = i; j > 0; j--) {
					const struct dict *d = v->u.dict;
					size_t a = order[j - 1], b = order[j];
					size_t m = d->kl[a] < d->kl[b] ? d->kl[a] : d->kl[b];
					int r = memcmp(d->k[a], d->k[b], m);
					if (r > 0 || (r == 0 && d->kl[a] > d->kl[b])) { order[j - 1] = b; order[j] = a; } else break;
				}
		}
		for (size_t i = 0; i < n; i++) {
			check_size(c, sb->len, strlen(o->isep) + strlen(o->ksep) + 1 +
				   (o->indent > 0 ? (size_t)o->indent * (size_t)(depth + 1) : 0));
			if (i) strbuf_addstr(sb, o->isep);
			if (o->indent > 0) {
				strbuf_addch(sb, '\n');
				for (int k = 0; k < o->indent * (depth + 1); k++) strbuf_addch(sb, ' ');
			}
			if (is_list) {
				to_json(c, sb, v->u.list->v[i], o, depth + 1);
			} else {
				size_t k = order ? order[i] : i;
				check_size(c, sb->len, 6 * v->u.dict->kl[k] + 2);
				json_str(sb, v->u.dict->k[k], v->u.dict->kl[k], o->ascii);
				strbuf_addstr(sb, o->ksep);
				to_json(c, sb, v->u.dict->v[k], o, depth + 1);
			}
		}
		scr_free(c, order);
		check_size(c, sb->len, 2 + (o->indent > 0 ? (size_t)o->indent * (size_t)depth : 0));
		if (o->indent > 0 && n) {
			strbuf_addch(sb, '\n');
			for (int k = 0; k < o->indent * depth; k++) strbuf_addch(sb, ' ');
		}
		strbuf_addch(sb, close);
		return;
	}
	default:
		rfail(c, FTK_EDATA, "cannot convert to JSON: %s", type_name(v));
	}
}

/* The text of a value as {{ }} prints it (FloatValue keeps ".0"). */
static void to_text(struct ctx *c, struct strbuf *sb, const struct val *v)
{
	struct json_opts o = { 0, 0, 0, ", ", ": ", 0 };
	switch (v->t) {
	case V_UNDEF: case V_NONE: return;
	case V_BOOL: strbuf_addstr(sb, v->u.b ? "true" : "false"); return;
	case V_INT: js_number(sb, v->u.num); return;
	case V_FLOAT:
		if (v->u.num == 0 && signbit(v->u.num)) strbuf_addstr(sb, "-0.0");
		else if (isfinite(v->u.num) && v->u.num == floor(v->u.num)) { js_number(sb, v->u.num); if (fabs(v->u.num) < 1e21) strbuf_addstr(sb, ".0"); }
		else js_number(sb, v->u.num);
		return;
	case V_STR: strbuf_add(sb, v->u.str.s, v->u.str.n); return;
	case V_FUNC: strbuf_addstr(sb, "[function]"); return;
	default: to_json(c, sb, v, &o, 0); return;
	}
}

/* The raw JavaScript value's toString (used by + and ~ concatenation). */
static void to_raw_text_r(struct ctx *c, struct strbuf *sb, const struct val *v);

static void to_raw_text(struct ctx *c, struct strbuf *sb, const struct val *v)
{
	enter(c);
	to_raw_text_r(c, sb, v);
	c->depth--;
	check_size(c, sb->len, 0);
}

static void to_raw_text_r(struct ctx *c, struct strbuf *sb, const struct val *v)
{
	switch (v->t) {
	case V_INT: case V_FLOAT: js_number(sb, v->u.num); return;
	case V_LIST: {	/* Array.prototype.toString: elements' values joined by "," */
		for (size_t i = 0; i < v->u.list->n; i++) {
			if (i) strbuf_addch(sb, ',');
			const struct val *x = v->u.list->v[i];
			if (x->t == V_NONE || x->t == V_UNDEF) continue;
			if (x->t == V_DICT || x->t == V_NS) strbuf_addstr(sb, "[object Map]");
			else to_raw_text(c, sb, x);
		}
		return;
	}
	case V_DICT: case V_NS: case V_KW: strbuf_addstr(sb, "[object Map]"); return;
	default: to_text(c, sb, v); return;
	}
}

/* ---- output with tracking */

static void emit_str(struct ctx *c, const char *s, size_t n, long toff)
{
	check_size(c, c->out->len, n);
	if (c->out == c->main && toff >= 0 && c->cur_iter >= 0) {
		struct ftk_jinja_iter *it = &c->opts->iters[c->cur_iter];
		if (it->first_taint < 0) it->first_taint = (long)(c->out->len + toff);
	}
	strbuf_add(c->out, s, n);
}

static void emit_val(struct ctx *c, const struct val *v)
{
	if (v->t == V_STR) { emit_str(c, v->u.str.s, v->u.str.n, v->u.str.toff); return; }
	struct strbuf *sb = sb_new(c);
	to_text(c, sb, v);
	emit_str(c, sb->buf, sb->len, v->taint ? 0 : -1);
	scr_free(c, sb);
}

/* ---- evaluation */

static struct val *eval(struct ctx *c, struct node *n, struct scope *s);
static void exec_body(struct ctx *c, struct node **kids, size_t nk, struct scope *s);
static struct val *binop(struct ctx *c, const char *op, struct val *a, struct val *b);

#define MAX_CHAIN 32

/*
 * {{ a + b + c ... }} (or ~): emit_val(eval(...)) without making the string.
 * Chat templates print '<|im_start|>' + role + '\n' + content + ... : each
 * + made a new string holding the content, all kept in the arena until the
 * render ends, so a long message cost several copies of itself.  Here the
 * operands are evaluated in the same order, at the same depths and with
 * the same steps counted; once the left side is a string, every + or ~
 * would be concat() (a string plus anything but undefined or none), so the
 * operands are kept as strings and written out one after the other, each
 * with its taint offset, which is where concat() would have put it.  The
 * size checks are concat's.  Returns 0 (nothing done) when n is not such a
 * chain or a longer one than MAX_CHAIN (whose depth the evaluator limits).
 */
static int emit_chain(struct ctx *c, struct node *n, struct scope *s)
{
	struct node *ops[MAX_CHAIN];
	size_t k = 0;
	struct node *x = n;
	while (x->t == N_BIN && (!strcmp(x->s, "+") || !strcmp(x->s, "~"))) {
		if (k == MAX_CHAIN) return 0;
		ops[k++] = x;
		x = x->a;
	}
	if (!k) return 0;
	for (size_t i = 0; i < k; i++) {	/* eval() of each + node, the outermost first */
		enter(c);
		tick(c, 1);
	}
	struct val *parts[MAX_CHAIN + 1];
	size_t np = 0, len = 0;
	struct val *acc = eval(c, x, s);
	for (size_t i = k; i-- > 0;) {
		struct node *op = ops[i];
		struct val *v = eval(c, op->b, s);
		c->line = op->line;
		if (!np && acc->t != V_STR) {
			acc = binop(c, op->s, acc, v);
		} else {
			if (!np) {
				parts[np++] = acc;
				len = acc->u.str.n;
			}
			if (v->t == V_UNDEF || v->t == V_NONE)
				binop(c, op->s, parts[0], v);	/* fails, as the whole would */
			if (v->t != V_STR) {	/* its text, tainted from its start (concat) */
				struct strbuf *sb = sb_new(c);
				to_raw_text(c, sb, v);
				v = mkstr_sb(c, sb, v->taint ? 0 : -1);
			}
			check_size(c, len, v->u.str.n);
			tick(c, 1 + ((len + v->u.str.n) >> 6));	/* concat's mkstr */
			parts[np++] = v;
			len += v->u.str.n;
		}
		c->depth--;
	}
	if (!np) emit_val(c, acc);
	for (size_t i = 0; i < np; i++)
		emit_str(c, parts[i]->u.str.s, parts[i]->u.str.n, parts[i]->u.str.toff);
	return 1;
}

static void js_trim(const char *s, size_t n, int left, int right, size_t *a, size_t *b);

/* JavaScript's ToNumber for a string: blank is 0, anything but a whole number is NaN. */
static double js_tonumber(const char *s, size_t n)
{
	size_t a, b;
	js_trim(s, n, 1, 1, &a, &b);
	if (a == b) return 0;
	char buf[64];
	if (b - a >= sizeof(buf)) return NAN;
	memcpy(buf, s + a, b - a);
	buf[b - a] = 0;
	if (!strcmp(buf, "Infinity") || !strcmp(buf, "+Infinity")) return INFINITY;
	if (!strcmp(buf, "-Infinity")) return -INFINITY;
	for (char *p = buf; *p; p++)	/* strtod would also take "inf", "nan" and hex floats */
		if (!(isdigit((unsigned char)*p) || *p == '.' || *p == 'e' || *p == 'E' || *p == '+' || *p == '-' ||
		      ((*p == 'x' || *p == 'X') && p == buf + 1 && buf[0] == '0') || (isxdigit((unsigned char)*p) && buf[1] == 'x')))
			return NAN;
	char *end;
	double d = (buf[0] == '0' && (buf[1] == 'x' || buf[1] == 'X')) ? (double)strtoull(buf, &end, 16) : strtod(buf, &end);
	return *end ? NAN : d;
}

static int loose_eq(const struct val *a, const struct val *b)
{
	int an = a->t == V_INT || a->t == V_FLOAT, bn = b->t == V_INT || b->t == V_FLOAT;
	if ((a->t == V_UNDEF || a->t == V_NONE) && (b->t == V_UNDEF || b->t == V_NONE)) return 1;
	if (a->t == V_UNDEF || a->t == V_NONE || b->t == V_UNDEF || b->t == V_NONE) return 0;
	if (a->t == V_STR && b->t == V_STR) return a->u.str.n == b->u.str.n && !memcmp(a->u.str.s, b->u.str.s, a->u.str.n);
	if ((an || a->t == V_BOOL || a->t == V_STR) && (bn || b->t == V_BOOL || b->t == V_STR)) {
		/* JavaScript converts both to numbers */
		double x = an ? a->u.num : a->t == V_BOOL ? a->u.b : js_tonumber(a->u.str.s, a->u.str.n);
		double y = bn ? b->u.num : b->t == V_BOOL ? b->u.b : js_tonumber(b->u.str.s, b->u.str.n);
		return x == y;
	}
	if (a->t == V_LIST && b->t == V_LIST) return a->u.list == b->u.list;
	if ((a->t == V_DICT || a->t == V_NS) && (b->t == V_DICT || b->t == V_NS)) return a->u.dict == b->u.dict;
	return a == b;
}

static int strict_eq(const struct val *a, const struct val *b)
{
	int an = a->t == V_INT || a->t == V_FLOAT, bn = b->t == V_INT || b->t == V_FLOAT;
	if (an && bn) return a->u.num == b->u.num;
	if (a->t != b->t) return 0;
	switch (a->t) {
	case V_UNDEF: case V_NONE: return 1;
	case V_BOOL: return a->u.b == b->u.b;
	case V_STR: return a->u.str.n == b->u.str.n && !memcmp(a->u.str.s, b->u.str.s, a->u.str.n);
	case V_LIST: return a->u.list == b->u.list;
	case V_DICT: case V_NS: case V_KW: return a->u.dict == b->u.dict;
	default: return a == b;
	}
}

static int is_num(const struct val *v) { return v->t == V_INT || v->t == V_FLOAT; }

static struct val *concat(struct ctx *c, struct val *a, struct val *b)
{
	struct strbuf *sb = sb_new(c);
	if (a->t == V_STR && b->t == V_STR) check_size(c, a->u.str.n, b->u.str.n);
	to_raw_text(c, sb, a);
	size_t al = sb->len;
	to_raw_text(c, sb, b);
	long toff = -1;
	if (a->t == V_STR && a->u.str.toff >= 0) toff = a->u.str.toff;
	else if (a->t != V_STR && a->taint) toff = 0;
	else if (b->t == V_STR && b->u.str.toff >= 0) toff = (long)al + b->u.str.toff;
	else if (b->t != V_STR && b->taint) toff = (long)al;
	return mkstr_sb(c, sb, toff);
}

static struct val *binop(struct ctx *c, const char *op, struct val *a, struct val *b)
{
	if (!strcmp(op, "==")) return mkbool(loose_eq(a, b));
	if (!strcmp(op, "!=")) return mkbool(!loose_eq(a, b));
	int in = !strcmp(op, "in"), notin = !strcmp(op, "not in");
	if (a->t == V_UNDEF || b->t == V_UNDEF) {
		if (b->t == V_UNDEF && (in || notin)) return mkbool(notin);
		rfail(c, FTK_EDATA, "cannot perform operation %s on undefined values", op);
	}
	if (a->t == V_NONE || b->t == V_NONE) rfail(c, FTK_EDATA, "%s", "cannot perform operation on null values");
	if (!strcmp(op, "~")) return concat(c, a, b);
	if (!strcmp(op, "**") && (is_num(a) || a->t == V_BOOL) && (is_num(b) || b->t == V_BOOL)) {
		double x = a->t == V_BOOL ? a->u.b : a->u.num, y = b->t == V_BOOL ? b->u.b : b->u.num;
		double r = pow(x, y);
		if (!isfinite(r)) rfail(c, FTK_EDATA, "%s", "exponentiation result is not a finite real number");
		return mknum(c, r, a->t == V_FLOAT || b->t == V_FLOAT || y < 0);
	}
	if (is_num(a) && is_num(b)) {
		double x = a->u.num, y = b->u.num;
		int fl = a->t == V_FLOAT || b->t == V_FLOAT;
		if (!strcmp(op, "+")) return mknum(c, x + y, fl);
		if (!strcmp(op, "-")) return mknum(c, x - y, fl);
		if (!strcmp(op, "*")) return mknum(c, x * y, fl);
		if (!strcmp(op, "/")) return mknum(c, x / y, 1);
		if (!strcmp(op, "//")) return mknum(c, floor(x / y), fl);
		if (!strcmp(op, "%")) return mknum(c, fmod(x, y), fl);
		if (!strcmp(op, "<")) return mkbool(x < y);
		if (!strcmp(op, ">")) return mkbool(x > y);
		if (!strcmp(op, "<=")) return mkbool(x <= y);
		if (!strcmp(op, ">=")) return mkbool(x >= y);
	} else if (a->t == V_LIST && b->t == V_LIST) {
		if (!strcmp(op, "+")) {
			struct list *l = mklist(c);
			for (size_t i = 0; i < a->u.list->n; i++) list_push(c, l, a->u.list->v[i]);
			for (size_t i = 0; i < b->u.list->n; i++) list_push(c, l, b->u.list->v[i]);
			return mklistval(c, l);
		}
	} else if (b->t == V_LIST && (in || notin)) {
		int m = 0;
		for (size_t i = 0; i < b->u.list->n && !m; i++) m = strict_eq(b->u.list->v[i], a);
		return mkbool(in ? m : !m);
	}
	if ((a->t == V_STR || b->t == V_STR) && !strcmp(op, "+")) return concat(c, a, b);
	if (a->t == V_STR && b->t == V_STR && (in || notin)) {
		tick(c, b->u.str.n >> 6);
		int m = a->u.str.n == 0 || memmem(b->u.str.s, b->u.str.n, a->u.str.s, a->u.str.n) != NULL;
		return mkbool(in ? m : !m);
	}
	if (a->t == V_STR && (b->t == V_DICT || b->t == V_KW) && (in || notin)) {
		int m = dict_find(c, b->u.dict, a->u.str.s, a->u.str.n) >= 0;
		return mkbool(in ? m : !m);
	}
	rfail(c, FTK_EDATA, "unknown operator \"%s\" between %s and %s", op, type_name(a), type_name(b));
}

/* JS String.prototype.trim family: whitespace as JavaScript defines it. */
static void js_trim(const char *s, size_t n, int left, int right, size_t *a, size_t *b)
{
	size_t i = 0, j = n, sl;
	if (left) while (i < n && ftk_jinja_js_space(s, n, i, &sl)) i += sl;
	if (right)
		while (j > i) {
			size_t k = j - 1;
			while (k > i && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
			if (!ftk_jinja_js_space(s, j, k, &sl) || k + sl != j) break;
			j = k;
		}
	*a = i;
	*b = j;
}

static struct val *str_sub(struct ctx *c, struct val *v, size_t a, size_t b)
{
	return mkstr(c, v->u.str.s + a, b - a, v->u.str.toff >= 0 ? 0 : -1);
}

static void case_map(struct strbuf *sb, const char *s, size_t n, int upper)
{
	size_t i = 0;
	while (i < n) {
		utf8proc_int32_t cp;
		utf8proc_ssize_t k = utf8proc_iterate((const uint8_t *)s + i, n - i, &cp);
		if (k <= 0) { strbuf_addch(sb, s[i++]); continue; }
		uint8_t buf[4];
		utf8proc_ssize_t bl = utf8proc_encode_char(upper ? utf8proc_toupper(cp) : utf8proc_tolower(cp), buf);
		strbuf_add(sb, buf, bl);
		i += k;
	}
}

static size_t cp_len(const char *s, size_t n)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++) if (((unsigned char)s[i] & 0xC0) != 0x80) k++;
	return k;
}

static struct val *kwarg(struct dict *kw, const char *k)
{
	return kw ? dict_get(NULL, kw, k, strlen(k)) : NULL;
}

static struct val *str_method(struct ctx *c, struct val *self, const char *m, struct val **args, size_t na, struct dict *kw)
{
	const char *s = self->u.str.s;
	size_t n = self->u.str.n, a, b;
	long t0 = self->u.str.toff >= 0 ? 0 : -1;
	tick(c, n >> 6);
	if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip")) {
		js_trim(s, n, m[0] != 'r', m[0] != 'l', &a, &b);
		return str_sub(c, self, a, b);
	}
	if (!strcmp(m, "upper") || !strcmp(m, "lower")) {
		struct strbuf *sb = sb_new(c);
		case_map(sb, s, n, m[0] == 'u');
		return mkstr_sb(c, sb, t0);
	}
	if (!strcmp(m, "title") || !strcmp(m, "capitalize")) {
		struct strbuf *sb = sb_new(c);
		int start = 1;
		for (size_t i = 0; i < n; i++) {
			unsigned char ch = (unsigned char)s[i];
			int w = isalnum(ch) || ch == '_';
			if (m[0] == 't') strbuf_addch(sb, start && w ? toupper(ch) : ch);
			else strbuf_addch(sb, i == 0 ? toupper(ch) : ch);
			start = !w;
		}
		return mkstr_sb(c, sb, t0);
	}
	if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
		if (!na) rfail(c, FTK_EDATA, "%s() requires at least one argument", m);
		int ends = m[0] == 'e';
		struct val *p = args[0];
		struct val **pv = &p;
		size_t np = 1;
		if (p->t == V_LIST) { pv = p->u.list->v; np = p->u.list->n; }
		else if (p->t != V_STR) rfail(c, FTK_EDATA, "%s() argument must be a string or tuple of strings", m);
		for (size_t i = 0; i < np; i++) {
			if (pv[i]->t != V_STR) rfail(c, FTK_EDATA, "%s() tuple elements must be strings", m);
			size_t pl = pv[i]->u.str.n;
			if (pl <= n && !memcmp(ends ? s + n - pl : s, pv[i]->u.str.s, pl)) return mkbool(1);
		}
		return mkbool(0);
	}
	if (!strcmp(m, "split")) {
		struct val *sep = na > 0 ? args[0] : &V_NONE_S;
		double maxsplit = na > 1 && args[1]->t == V_INT ? args[1]->u.num : -1;
		struct list *l = mklist(c);
		if (sep->t == V_NONE) {
			js_trim(s, n, 1, 0, &a, &b);
			size_t i = a, sl;
			while (i < n) {
				size_t st = i;
				while (i < n && !ftk_jinja_js_space(s, n, i, &sl)) i++;
				if (maxsplit >= 0 && (double)l->n >= maxsplit) { list_push(c, l, mkstr(c, s + st, n - st, t0)); break; }
				list_push(c, l, mkstr(c, s + st, i - st, t0));
				while (i < n && ftk_jinja_js_space(s, n, i, &sl)) i += sl;
			}
			return mklistval(c, l);
		}
		if (sep->t != V_STR) rfail(c, FTK_EDATA, "%s", "sep argument must be a string or null");
		if (!sep->u.str.n) rfail(c, FTK_EDATA, "%s", "empty separator");
		size_t i = 0;
		for (;;) {
			const char *hit = (maxsplit < 0 || (double)l->n < maxsplit) ?
				memmem(s + i, n - i, sep->u.str.s, sep->u.str.n) : NULL;
			if (!hit) { list_push(c, l, mkstr(c, s + i, n - i, t0)); break; }
			list_push(c, l, mkstr(c, s + i, hit - (s + i), t0));
			i = hit - s + sep->u.str.n;
		}
		return mklistval(c, l);
	}
	if (!strcmp(m, "replace")) {
		if (na < 2 || args[0]->t != V_STR || args[1]->t != V_STR) rfail(c, FTK_EDATA, "%s", "replace() arguments must be strings");
		struct val *cnt = na > 2 ? args[2] : kwarg(kw, "count");
		double count = cnt && cnt->t == V_INT ? cnt->u.num : -1;
		const char *old = args[0]->u.str.s, *nw = args[1]->u.str.s;
		size_t ol = args[0]->u.str.n, nl = args[1]->u.str.n;
		struct strbuf *sb = sb_new(c);
		size_t i = 0;
		double done = 0;
		if (!ol) rfail(c, FTK_EUNSUPPORTED, "unsupported %s", "replace() with an empty old string");
		while (i <= n) {
			const char *hit = (count < 0 || done < count) ? memmem(s + i, n - i, old, ol) : NULL;
			if (!hit) { check_size(c, sb->len, n - i); strbuf_add(sb, s + i, n - i); break; }
			check_size(c, sb->len, (size_t)(hit - (s + i)) + nl);
			tick(c, 1);
			strbuf_add(sb, s + i, hit - (s + i));
			strbuf_add(sb, nw, nl);
			i = hit - s + ol;
			done++;
		}
		return mkstr_sb(c, sb, t0);
	}
	rfail(c, FTK_EUNSUPPORTED, "unsupported string method '%s'", m);
}

static struct val *call_value(struct ctx *c, struct val *fn, struct val **args, size_t na, struct dict *kw);

/* Attribute or item access, @huggingface/jinja's evaluateMemberExpression. */
static struct val *member(struct ctx *c, struct val *o, struct val *prop)
{
	if (o->t == V_DICT || o->t == V_NS || o->t == V_KW) {
		if (prop->t != V_STR) rfail(c, FTK_EDATA, "cannot access property with non-string: got %s", type_name(prop));
		struct val *v = dict_get(c, o->u.dict, prop->u.str.s, prop->u.str.n);
		if (v) return v;
		if (o->t == V_DICT) {
			static const char *const bi[] = { "get", "items", "keys", "values", NULL };
			if (ftk_jinja_in_list(bi, prop->u.str.s, prop->u.str.n)) {
				struct val *f = mkval(c, V_FUNC);
				f->u.fn = aalloc(&c->ar, sizeof(struct func));
				memset(f->u.fn, 0, sizeof(struct func));
				f->u.fn->self = o;
				f->u.fn->name = astrndup(&c->ar, prop->u.str.s, prop->u.str.n);
				f->taint = o->taint;
				return f;
			}
		}
		return &V_UNDEF_S;
	}
	if (o->t == V_LIST || o->t == V_STR) {
		if (is_num(prop)) {
			long i = num_long(prop->u.num);
			if (o->t == V_LIST) {
				long n = (long)o->u.list->n;
				if (i < 0) i += n;
				return i >= 0 && i < n ? o->u.list->v[i] : &V_UNDEF_S;
			}
			/* a character (code point) of the string */
			long n = (long)cp_len(o->u.str.s, o->u.str.n);
			if (i < 0) i += n;
			if (i < 0 || i >= n) return &V_UNDEF_S;
			size_t p = 0;
			for (long k = 0; k < i; k++) p += ftk_jinja_utf8_len(o->u.str.s + p, o->u.str.n - p);
			return str_sub(c, o, p, p + ftk_jinja_utf8_len(o->u.str.s + p, o->u.str.n - p));
		}
		if (prop->t == V_STR) {
			if (prop->u.str.n == 6 && !memcmp(prop->u.str.s, "length", 6))
				return mknum(c, o->t == V_LIST ? (double)o->u.list->n : (double)cp_len(o->u.str.s, o->u.str.n), 0);
			if (o->t == V_STR) {
				struct val *f = mkval(c, V_FUNC);
				f->u.fn = aalloc(&c->ar, sizeof(struct func));
				memset(f->u.fn, 0, sizeof(struct func));
				f->u.fn->self = o;
				f->u.fn->name = astrndup(&c->ar, prop->u.str.s, prop->u.str.n);
				return f;
			}
			return &V_UNDEF_S;
		}
		rfail(c, FTK_EDATA, "cannot access property with non-string/non-number: got %s", type_name(prop));
	}
	if (prop->t != V_STR) rfail(c, FTK_EDATA, "cannot access property with non-string: got %s", type_name(prop));
	return &V_UNDEF_S;
}

/*
 * A number's value as a long without undefined conversion: integers are held
 * as doubles, and a template may write one of any size.  Beyond +-2^53 every
 * index and slice bound is past any string or list anyway.
 */
static long num_long(double d)
{
	const double lim = 9007199254740992.0;	/* 2^53 */
	if (!(d == d)) return 0;
	if (d > lim) return (long)lim;
	if (d < -lim) return -(long)lim;
	return (long)d;
}

/* A count for a filter (tojson's indent, indent's width), kept within [0, hi]. */
static int num_count(double d, int hi)
{
	long v = num_long(d);
	return v < 0 ? 0 : v > hi ? hi : (int)v;
}

static long slice_idx(struct ctx *c, struct node *n, struct scope *s, int *given)
{
	*given = 0;
	if (!n) return 0;
	struct val *v = eval(c, n, s);
	if (v->t == V_UNDEF) return 0;
	if (v->t != V_INT) rfail(c, FTK_EDATA, "%s", "slice indices must be integers");
	*given = 1;
	return num_long(v->u.num);
}

static struct val *do_slice(struct ctx *c, struct val *o, struct node *n, struct scope *s)
{
	if (o->t != V_LIST && o->t != V_STR) rfail(c, FTK_EDATA, "%s", "slice object must be an array or string");
	int g0, g1, g2;
	long start = slice_idx(c, n->b, s, &g0), stop = slice_idx(c, n->c, s, &g1), step = slice_idx(c, n->d, s, &g2);
	if (!g2) step = 1;
	if (step == 0) rfail(c, FTK_EDATA, "%s", "slice step cannot be zero");
	/* the items: list elements or string code points */
	size_t len;
	size_t *cpo = NULL;	/* code point offsets for strings */
	if (o->t == V_LIST) len = o->u.list->n;
	else {
		len = cp_len(o->u.str.s, o->u.str.n);
		cpo = scr_alloc(c, (len + 1) * sizeof(*cpo));
		size_t p = 0;
		for (size_t k = 0; k < len; k++) { cpo[k] = p; p += ftk_jinja_utf8_len(o->u.str.s + p, o->u.str.n - p); }
		cpo[len] = o->u.str.n;
	}
	long L = (long)len;
	if (step > 0) {
		start = !g0 ? 0 : start < 0 ? (L + start > 0 ? L + start : 0) : (start < L ? start : L);
		stop = !g1 ? L : stop < 0 ? (L + stop > 0 ? L + stop : 0) : (stop < L ? stop : L);
	} else {
		start = !g0 ? L - 1 : start < 0 ? (L + start > -1 ? L + start : -1) : (start < L - 1 ? start : L - 1);
		stop = !g1 ? -1 : stop < -1 ? (L + stop > -1 ? L + stop : -1) : (stop < L - 1 ? stop : L - 1);
	}
	struct val *r;
	if (o->t == V_LIST) {
		struct list *l = mklist(c);
		for (long i = start; step > 0 ? i < stop : i > stop; i += step) list_push(c, l, o->u.list->v[i]);
		r = mklistval(c, l);
		r->taint = o->taint;
	} else {
		struct strbuf *sb = sb_new(c);
		for (long i = start; step > 0 ? i < stop : i > stop; i += step)
			strbuf_add(sb, o->u.str.s + cpo[i], cpo[i + 1] - cpo[i]);
		r = mkstr_sb(c, sb, o->u.str.toff >= 0 ? 0 : -1);
	}
	scr_free(c, cpo);
	return r;
}

static int run_test(struct ctx *c, const char *name, struct val *v, struct val **args, size_t na)
{
#define T(x) (!strcmp(name, x))
	if (T("defined")) return v->t != V_UNDEF;
	if (T("undefined")) return v->t == V_UNDEF;
	if (T("none")) return v->t == V_NONE;
	if (T("string")) return v->t == V_STR;
	if (T("number")) return is_num(v);
	if (T("integer")) return v->t == V_INT;
	if (T("boolean")) return v->t == V_BOOL;
	if (T("true")) return v->t == V_BOOL && v->u.b;
	if (T("false")) return v->t == V_BOOL && !v->u.b;
	if (T("mapping")) return v->t == V_DICT || v->t == V_KW;
	if (T("iterable")) return v->t == V_LIST || v->t == V_STR;
	if (T("sequence")) return v->t == V_LIST || v->t == V_DICT || v->t == V_KW || v->t == V_STR;
	if (T("callable")) return v->t == V_FUNC;
	if (T("odd") || T("even")) {
		if (v->t != V_INT) rfail(c, FTK_EDATA, "cannot %s on %s", name, type_name(v));
		return (fmod(v->u.num, 2) != 0) == (name[0] == 'o');
	}
	if (T("lower") || T("upper")) {
		if (v->t != V_STR) return 0;
		struct strbuf *sb = sb_new(c);
		case_map(sb, v->u.str.s, v->u.str.n, name[0] == 'u');
		int r = sb->len == v->u.str.n && !memcmp(sb->buf, v->u.str.s, sb->len);
		scr_free(c, sb);
		return r;
	}
	if (T("equalto") || T("eq")) return na ? strict_eq(v, args[0]) : v->t == V_UNDEF;
	if (T("in")) {
		if (!na) rfail(c, FTK_EDATA, "%s", "the 'in' test needs an argument");
		return truthy(binop(c, "in", v, args[0]));
	}
#undef T
	rfail(c, FTK_EUNSUPPORTED, "unsupported test '%s'", name);
}

static void eval_args(struct ctx *c, struct node *call, struct scope *s, struct val ***args, size_t *na, struct dict **kw)
{
	*args = aalloc(&c->ar, (call->nkids + 1) * sizeof(struct val *));
	*na = 0;
	*kw = NULL;
	for (size_t i = 0; i < call->nkids; i++)
		if (call->kids[i]->t != N_KWARG) (*args)[(*na)++] = eval(c, call->kids[i], s);
	for (size_t i = 0; i < call->nkids; i++)
		if (call->kids[i]->t == N_KWARG) {
			if (!*kw) *kw = mkdict(c);
			dict_set(c, *kw, call->kids[i]->s, call->kids[i]->sl, eval(c, call->kids[i]->a, s));
		}
}

static struct val *attr_path(struct ctx *c, struct val *item, const char *path)
{
	struct val *v = item;
	const char *p = path;
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);
		char *endp;
		long idx = strtol(p, &endp, 10);
		if (endp == p + l && l) v = member(c, v, mknum(c, (double)idx, 0));
		else v = member(c, v, mkstr(c, p, l, -1));
		p += l;
		if (*p == '.') p++;
	}
	return v;
}

static int cmp_vals(struct ctx *c, struct val *a, struct val *b, int case_sensitive)
{
	if (is_num(a) && is_num(b)) return a->u.num < b->u.num ? -1 : a->u.num > b->u.num;
	if (a->t == V_STR && b->t == V_STR) {
		struct strbuf x = STRBUF_INIT, y = STRBUF_INIT;
		if (case_sensitive) { strbuf_add(&x, a->u.str.s, a->u.str.n); strbuf_add(&y, b->u.str.s, b->u.str.n); }
		else { case_map(&x, a->u.str.s, a->u.str.n, 0); case_map(&y, b->u.str.s, b->u.str.n, 0); }
		size_t m = x.len < y.len ? x.len : y.len;
		int r = memcmp(x.buf, y.buf, m);
		if (!r) r = x.len < y.len ? -1 : x.len > y.len;
		strbuf_release(&x);
		strbuf_release(&y);
		return r < 0 ? -1 : r > 0;
	}
	if (a->t == V_BOOL && b->t == V_BOOL) return a->u.b - b->u.b;
	rfail(c, FTK_EUNSUPPORTED, "unsupported comparison of %s with %s in sort", type_name(a), type_name(b));
}

static struct val *apply_filter(struct ctx *c, struct node *f, struct val *v, struct scope *s)
{
	char name[32];
	snprintf(name, sizeof(name), "%.*s", (int)(f->sl < 31 ? f->sl : 31), f->s);
	struct val **args = NULL;
	size_t na = 0;
	struct dict *kw = NULL;
	if (f->is_float) eval_args(c, f, s, &args, &na, &kw);
	long t0 = v->taint ? 0 : -1;
#define F(x) (!strcmp(name, x))
	if (F("safe")) return v;
	if (F("tojson")) {
		struct json_opts o = { 0, 0, 0, ", ", ": ", 1 };
		struct val *ind = kwarg(kw, "indent");
		if (ind && ind->t == V_INT) { o.indent = num_count(ind->u.num, 1 << 30); o.isep = ","; }
		else if (ind && ind->t != V_NONE) rfail(c, FTK_EDATA, "%s", "if set, indent must be a number");
		struct val *ea = kwarg(kw, "ensure_ascii");
		if (ea) o.ascii = truthy(ea);
		struct val *sk = kwarg(kw, "sort_keys");
		if (sk) o.sort = truthy(sk);
		struct val *sep = kwarg(kw, "separators");
		if (sep && sep->t == V_LIST && sep->u.list->n == 2 && sep->u.list->v[0]->t == V_STR && sep->u.list->v[1]->t == V_STR) {
			o.isep = sep->u.list->v[0]->u.str.s;
			o.ksep = sep->u.list->v[1]->u.str.s;
		}
		struct strbuf *sb = sb_new(c);
		to_json(c, sb, v, &o, 0);
		return mkstr_sb(c, sb, t0);
	}
	if (F("default") || F("d")) {
		struct val *dv = na > 0 ? args[0] : mkstr(c, "", 0, -1);
		struct val *bv = na > 1 ? args[1] : kwarg(kw, "boolean");
		if (v->t == V_UNDEF || (bv && truthy(bv) && !truthy(v))) return dv;
		return v;
	}
	if (F("join")) {
		struct val *sep = na > 0 ? args[0] : kwarg(kw, "separator");
		const char *sp = sep && sep->t == V_STR ? sep->u.str.s : "";
		size_t sl = sep && sep->t == V_STR ? sep->u.str.n : 0;
		struct strbuf *sb = sb_new(c);
		if (v->t == V_LIST) {
			struct val *ma = kwarg(kw, "attribute");
			for (size_t i = 0; i < v->u.list->n; i++) {
				check_size(c, sb->len, sl + 1);
				if (i) strbuf_add(sb, sp, sl);
				struct val *x = v->u.list->v[i];
				if (ma && ma->t == V_STR) x = attr_path(c, x, ma->u.str.s);
				if (x->t == V_NONE || x->t == V_UNDEF) continue;
				if (x->t == V_DICT) strbuf_addstr(sb, "[object Map]");
				else to_raw_text(c, sb, x);
			}
		} else if (v->t == V_STR) {
			size_t p = 0;
			while (p < v->u.str.n) {
				size_t k = ftk_jinja_utf8_len(v->u.str.s + p, v->u.str.n - p);
				check_size(c, sb->len, sl + k);
				if (p) strbuf_add(sb, sp, sl);
				strbuf_add(sb, v->u.str.s + p, k);
				p += k;
			}
		} else rfail(c, FTK_EDATA, "cannot apply filter \"join\" to type: %s", type_name(v));
		return mkstr_sb(c, sb, t0);
	}
	if (F("length") || F("count")) {
		if (v->t == V_LIST) return mknum(c, (double)v->u.list->n, 0);
		if (v->t == V_STR) return mknum(c, (double)cp_len(v->u.str.s, v->u.str.n), 0);
		if (v->t == V_DICT) return mknum(c, (double)v->u.dict->n, 0);
		rfail(c, FTK_EDATA, "cannot apply filter \"%s\" to type: %s", name, type_name(v));
	}
	if (F("trim") || F("upper") || F("lower") || F("title") || F("capitalize")) {
		if (v->t != V_STR) rfail(c, FTK_EDATA, "cannot apply filter \"%s\" to type: %s", name, type_name(v));
		return str_method(c, v, F("trim") ? "strip" : name, NULL, 0, NULL);
	}
	if (F("replace")) {
		if (v->t != V_STR) rfail(c, FTK_EDATA, "cannot apply filter \"%s\" to type: %s", name, type_name(v));
		return str_method(c, v, "replace", args, na, kw);
	}
	if (F("string")) {
		if (v->t == V_STR) return v;
		struct strbuf *sb = sb_new(c);
		if (v->t == V_BOOL) strbuf_addstr(sb, v->u.b ? "true" : "false");
		else if (v->t == V_LIST || v->t == V_DICT) {
			struct json_opts o = { 0, 0, 0, ", ", ": ", 0 };
			to_json(c, sb, v, &o, 0);
		} else if (is_num(v)) to_text(c, sb, v);
		else rfail(c, FTK_EDATA, "cannot apply filter \"string\" to type: %s", type_name(v));
		return mkstr_sb(c, sb, t0);
	}
	if (F("int") || F("float")) {
		int fl = name[0] == 'f';
		if (v->t == V_STR) {
			char *end;
			char *tmp = astrndup(&c->ar, v->u.str.s, v->u.str.n);
			while (isspace((unsigned char)*tmp)) tmp++;
			double d = fl ? strtod(tmp, &end) : (double)strtol(tmp, &end, 10);
			if (end == tmp) return na ? args[0] : kwarg(kw, "default") ? kwarg(kw, "default") : mknum(c, 0, fl);
			return mknum(c, d, fl);
		}
		if (is_num(v)) return f->is_float ? v : mknum(c, fl ? v->u.num : floor(v->u.num), fl);
		if (v->t == V_BOOL) return mknum(c, v->u.b, fl);
		rfail(c, FTK_EDATA, "cannot apply filter \"%s\" to type: %s", name, type_name(v));
	}
	if (F("abs")) {
		if (!is_num(v)) rfail(c, FTK_EDATA, "cannot apply filter \"abs\" to type: %s", type_name(v));
		return mknum(c, fabs(v->u.num), v->t == V_FLOAT);
	}
	if (F("bool")) {
		if (v->t != V_BOOL) rfail(c, FTK_EDATA, "cannot apply filter \"bool\" to type: %s", type_name(v));
		return v;
	}
	if (F("items") || F("keys") || F("values")) {
		if (v->t != V_DICT) rfail(c, FTK_EDATA, "cannot apply filter \"%s\" to type: %s", name, type_name(v));
		struct list *l = mklist(c);
		for (size_t i = 0; i < v->u.dict->n; i++) {
			struct val *k = mkstr(c, v->u.dict->k[i], v->u.dict->kl[i], -1);
			if (F("keys")) list_push(c, l, k);
			else if (F("values")) list_push(c, l, v->u.dict->v[i]);
			else {
				struct list *pair = mklist(c);
				list_push(c, pair, k);
				list_push(c, pair, v->u.dict->v[i]);
				list_push(c, l, mklistval(c, pair));
			}
		}
		return mklistval(c, l);
	}
	if (F("indent")) {
		if (v->t != V_STR) rfail(c, FTK_EDATA, "cannot apply filter \"indent\" to type: %s", type_name(v));
		struct val *w = na > 0 ? args[0] : kwarg(kw, "width");
		struct val *first = na > 1 ? args[1] : kwarg(kw, "first");
		struct val *blank = na > 2 ? args[2] : kwarg(kw, "blank");
		int width = w && w->t == V_INT ? num_count(w->u.num, 1 << 30) : 4;
		struct strbuf *sb = sb_new(c);
		size_t i = 0, lineno = 0;
		const char *str = v->u.str.s;
		size_t n = v->u.str.n;
		for (;;) {
			const char *nl = memchr(str + i, '\n', n - i);
			size_t e = nl ? (size_t)(nl - str) : n;
			int skip = (lineno == 0 && !(first && truthy(first))) || (e == i && !(blank && truthy(blank)));
			check_size(c, sb->len, (skip || width < 0 ? 0 : (size_t)width) + e - i + 1);
			if (!skip) for (int k = 0; k < width; k++) strbuf_addch(sb, ' ');
			strbuf_add(sb, str + i, e - i);
			if (!nl) break;
			strbuf_addch(sb, '\n');
			i = e + 1;
			lineno++;
		}
		return mkstr_sb(c, sb, t0);
	}
	if (v->t != V_LIST) rfail(c, FTK_EDATA, "cannot apply filter \"%s\" to type: %s", name, type_name(v));
	struct list *src = v->u.list;
	if (F("list")) return v;
	if (F("first")) return src->n ? src->v[0] : &V_UNDEF_S;
	if (F("last")) return src->n ? src->v[src->n - 1] : &V_UNDEF_S;
	if (F("reverse")) {
		struct list *l = mklist(c);
		for (size_t i = src->n; i > 0; i--) list_push(c, l, src->v[i - 1]);
		return mklistval(c, l);
	}
	if (F("unique")) {
		struct list *l = mklist(c);
		for (size_t i = 0; i < src->n; i++) {
			int seen = 0;
			tick(c, l->n);
			for (size_t k = 0; k < l->n && !seen; k++) seen = strict_eq(l->v[k], src->v[i]);
			if (!seen) list_push(c, l, src->v[i]);
		}
		return mklistval(c, l);
	}
	if (F("sort")) {
		struct val *rev = na > 0 ? args[0] : kwarg(kw, "reverse");
		struct val *cs = na > 1 ? args[1] : kwarg(kw, "case_sensitive");
		struct val *at = na > 2 ? args[2] : kwarg(kw, "attribute");
		struct list *l = mklist(c);
		for (size_t i = 0; i < src->n; i++) list_push(c, l, src->v[i]);
		for (size_t i = 1; i < l->n; i++)	/* stable insertion sort */
			for (size_t j = i; j > 0; j--) {
				tick(c, 1);
				struct val *a = l->v[j - 1], *b = l->v[j];
				struct val *ka = at && at->t == V_STR ? attr_path(c, a, at->u.str.s) : a;
				struct val *kb = at && at->t == V_STR ? attr_path(c, b, at->u.str.s) : b;
				int r = cmp_vals(c, ka, kb, cs && truthy(cs));
				if (rev && truthy(rev)) r = -r;
				if (r > 0) { l->v[j - 1] = b; l->v[j] = a; } else break;
			}
		return mklistval(c, l);
	}
	if (F("map")) {
		struct val *at = kwarg(kw, "attribute");
		if (!at || at->t != V_STR) rfail(c, FTK_EUNSUPPORTED, "unsupported %s", "map() without attribute=");
		struct val *dflt = kwarg(kw, "default");
		struct list *l = mklist(c);
		for (size_t i = 0; i < src->n; i++) {
			if (src->v[i]->t != V_DICT && src->v[i]->t != V_NS) rfail(c, FTK_EDATA, "%s", "items in map must be an object");
			struct val *x = attr_path(c, src->v[i], at->u.str.s);
			list_push(c, l, x->t == V_UNDEF && dflt ? dflt : x);
		}
		return mklistval(c, l);
	}
	if (F("selectattr") || F("rejectattr")) {
		int sel = name[0] == 's';
		if (!na || args[0]->t != V_STR) rfail(c, FTK_EDATA, "arguments of `%s` must be strings", name);
		char tname[32] = "";
		if (na > 1) {
			if (args[1]->t != V_STR) rfail(c, FTK_EDATA, "arguments of `%s` must be strings", name);
			snprintf(tname, sizeof(tname), "%.*s", (int)(args[1]->u.str.n < 31 ? args[1]->u.str.n : 31), args[1]->u.str.s);
			if (!ftk_jinja_in_list(ftk_jinja_tests, tname, strlen(tname))) rfail(c, FTK_EUNSUPPORTED, "unsupported test '%s'", tname);
		}
		struct list *l = mklist(c);
		for (size_t i = 0; i < src->n; i++) {
			struct val *it = src->v[i];
			if (it->t != V_DICT && it->t != V_NS) rfail(c, FTK_EDATA, "`%s` can only be applied to array of objects", name);
			struct val *a = dict_get(c, it->u.dict, args[0]->u.str.s, args[0]->u.str.n);
			/* a JavaScript truthiness check on the raw value guards the test */
			int present = a && !(a->t == V_UNDEF || a->t == V_NONE);
			int r = present ? (tname[0] ? run_test(c, tname, a, args + 2, na > 2 ? 1 : 0) : truthy(a)) : 0;
			if (r == sel) list_push(c, l, it);
		}
		return mklistval(c, l);
	}
#undef F
	rfail(c, FTK_EUNSUPPORTED, "unsupported filter '%s'", name);
}

/* ---- builtins */

static struct val *g_range(struct ctx *c, struct val **a, size_t n)
{
	double start = 0, stop, step = 1;
	if (n == 1 && is_num(a[0])) stop = a[0]->u.num;
	else if (n >= 2 && is_num(a[0]) && is_num(a[1])) { start = a[0]->u.num; stop = a[1]->u.num; if (n > 2 && is_num(a[2])) step = a[2]->u.num; }
	else rfail(c, FTK_EDATA, "%s", "range() needs integer arguments");
	if (step == 0) rfail(c, FTK_EDATA, "%s", "range() step must not be zero");
	/* refuse up front what the iteration limit would stop anyway, and a
	 * range whose step is lost in its start's rounding (JavaScript's
	 * range(1e17, 1e17 + 10) never ends) */
	double count = ceil((stop - start) / step);
	if (count > 0 && start + step == start)
		rfail(c, FTK_ELIMIT, "range() would never end: its step is lost in the rounding of %.17g (the iteration limit)", start);
	if (count > (double)(c->max_steps - c->steps))
		rfail(c, FTK_ELIMIT, "range() of %.17g items goes past %zu steps (the iteration limit)", count, c->max_steps);
	struct list *l = mklist(c);
	for (double i = start; step > 0 ? i < stop : i > stop; i += step) list_push(c, l, mknum(c, i, 0));
	return mklistval(c, l);
}

static struct val *g_strftime(struct ctx *c, struct val **a, size_t n)
{
	if (!n || a[0]->t != V_STR) rfail(c, FTK_EDATA, "%s", "strftime_now() needs a format string");
	time_t t = time(NULL);
	struct tm tm;
	localtime_r(&t, &tm);
	char buf[256];
	size_t k = strftime(buf, sizeof(buf), a[0]->u.str.s, &tm);
	return mkstr(c, buf, k, -1);
}

static struct val *g_namespace(struct ctx *c, struct val **a, size_t n, struct dict *kw)
{
	struct val *v = mkval(c, V_NS);
	v->u.dict = mkdict(c);
	if (n > 1) rfail(c, FTK_EDATA, "namespace expected at most 1 argument, got %zu", n);
	if (n == 1) {
		if (a[0]->t != V_DICT) rfail(c, FTK_EUNSUPPORTED, "unsupported %s", "namespace() from a non-mapping");
		for (size_t i = 0; i < a[0]->u.dict->n; i++)
			dict_set(c, v->u.dict, a[0]->u.dict->k[i], a[0]->u.dict->kl[i], a[0]->u.dict->v[i]);
	}
	if (kw)
		for (size_t i = 0; i < kw->n; i++) dict_set(c, v->u.dict, kw->k[i], kw->kl[i], kw->v[i]);
	return v;
}

static struct val *call_macro(struct ctx *c, struct func *f, struct val **args, size_t na, struct dict *kw)
{
	struct node *m = f->macro;
	struct scope *s = scope_new(c, f->scope);	/* a macro sees the scope it was defined in */
	if (na > m->nkids2) rfail(c, FTK_EDATA, "macro %.*s takes not more than %zu argument(s)", (int)m->sl, m->s, m->nkids2);
	for (size_t i = 0; i < m->nkids2; i++) {
		struct node *p = m->kids2[i];
		struct val *v = i < na ? args[i] : NULL;
		if (!v && kw) v = dict_get(NULL, kw, p->s, p->sl);
		scope_set(c, s, p->s, p->sl, v ? v : &V_UNDEF_S);
	}
	for (size_t i = 0; i < m->nkids2; i++) {
		struct node *p = m->kids2[i];
		if ((i >= na && !(kw && dict_get(NULL, kw, p->s, p->sl))) && p->a) scope_set(c, s, p->s, p->sl, eval(c, p->a, s));
	}
	struct strbuf *saved = c->out, *buf = sb_new(c);
	c->out = buf;
	exec_body(c, m->kids, m->nkids, s);
	c->out = saved;
	c->flow = FLOW_NONE;
	return mkstr_sb(c, buf, -1);
}

static struct val *call_value(struct ctx *c, struct val *fn, struct val **args, size_t na, struct dict *kw)
{
	if (fn->t != V_FUNC) rfail(c, FTK_EDATA, "cannot call something that is not a function: got %s", type_name(fn));
	struct func *f = fn->u.fn;
	if (f->macro) return call_macro(c, f, args, na, kw);
	if (f->self && f->self->t == V_STR) return str_method(c, f->self, f->name, args, na, kw);
	if (f->self && f->self->t == V_DICT) {
		struct dict *d = f->self->u.dict;
		if (!strcmp(f->name, "get")) {
			if (!na || args[0]->t != V_STR) rfail(c, FTK_EDATA, "%s", "get() needs a string key");
			struct val *v = dict_get(c, d, args[0]->u.str.s, args[0]->u.str.n);
			return v ? v : na > 1 ? args[1] : &V_NONE_S;
		}
		struct val tmp = *f->self;
		struct node fake;
		memset(&fake, 0, sizeof(fake));
		fake.s = f->name;
		fake.sl = strlen(f->name);
		return apply_filter(c, &fake, &tmp, NULL);
	}
	if (!strcmp(f->name, "range")) return g_range(c, args, na);
	if (!strcmp(f->name, "strftime_now")) return g_strftime(c, args, na);
	if (!strcmp(f->name, "namespace")) return g_namespace(c, args, na, kw);
	if (!strcmp(f->name, "raise_exception")) {
		struct strbuf *sb = sb_new(c);
		for (size_t i = 0; i < na; i++) { if (i) strbuf_addch(sb, ','); to_raw_text(c, sb, args[i]); }
		/*
		 * The template's own words, so a NUL in them (from a variable
		 * or the template's text) is written as backslash-zero rather than ending
		 * the message, and an empty message is still an error that
		 * says what happened.
		 */
		char msg[600];
		size_t k = 0;
		for (size_t i = 0; i < sb->len && k + 3 < sizeof(msg); i++) {
			if (sb->buf[i]) {
				msg[k++] = sb->buf[i];
			} else {
				msg[k++] = '\\';
				msg[k++] = '0';
			}
		}
		msg[k] = '\0';
		scr_free(c, sb);
		if (!k)
			rfail(c, FTK_EDATA, "%s", "raise_exception() with an empty message");
		rfail(c, FTK_EDATA, "%s", msg);
	}
	rfail(c, FTK_EUNSUPPORTED, "unsupported function '%s'", f->name);
}

static struct val *eval_node(struct ctx *c, struct node *n, struct scope *s);

static struct val *eval(struct ctx *c, struct node *n, struct scope *s)
{
	enter(c);
	tick(c, 1);
	struct val *v = eval_node(c, n, s);
	c->depth--;
	return v;
}

static struct val *eval_node(struct ctx *c, struct node *n, struct scope *s)
{
	c->line = n->line;
	switch (n->t) {
	case N_STR: return mkstr(c, n->s, n->sl, -1);
	case N_NUM: return mknum(c, n->num, n->is_float);
	case N_NAME: {
		if (n->sl == 4 && (!memcmp(n->s, "true", 4) || !memcmp(n->s, "True", 4))) return mkbool(1);
		if (n->sl == 5 && (!memcmp(n->s, "false", 5) || !memcmp(n->s, "False", 5))) return mkbool(0);
		if (n->sl == 4 && (!memcmp(n->s, "none", 4) || !memcmp(n->s, "None", 4))) return &V_NONE_S;
		return scope_get(s, n->s, n->sl);
	}
	case N_LIST: case N_TUPLE: {
		struct list *l = mklist(c);
		for (size_t i = 0; i < n->nkids; i++) list_push(c, l, eval(c, n->kids[i], s));
		return mklistval(c, l);
	}
	case N_DICT: {
		struct val *v = mkval(c, V_DICT);
		v->u.dict = mkdict(c);
		for (size_t i = 0; i < n->nkids; i++) {
			struct val *k = eval(c, n->kids[i], s);
			if (k->t != V_STR) rfail(c, FTK_EUNSUPPORTED, "unsupported %s", "dict literal key that is not a string");
			dict_set(c, v->u.dict, k->u.str.s, k->u.str.n, eval(c, n->kids2[i], s));
		}
		return v;
	}
	case N_ATTR: {
		struct val *o = eval(c, n->a, s);
		struct val *r = member(c, o, mkstr(c, n->s, n->sl, -1));
		return r;
	}
	case N_INDEX: {
		struct val *o = eval(c, n->a, s);
		struct val *k = eval(c, n->b, s);
		return member(c, o, k);
	}
	case N_SLICE: return do_slice(c, eval(c, n->a, s), n, s);
	case N_CALL: {
		struct val *fn = eval(c, n->a, s);
		if (fn->t == V_UNDEF && (n->a->t == N_ATTR || n->a->t == N_NAME))	/* name what is missing */
			rfail(c, FTK_EUNSUPPORTED, "unsupported %s '%.*s' (not a function here)",
			      n->a->t == N_ATTR ? "method" : "function", (int)n->a->sl, n->a->s);
		struct val **args;
		size_t na;
		struct dict *kw;
		eval_args(c, n, s, &args, &na, &kw);
		c->line = n->line;
		return call_value(c, fn, args, na, kw);
	}
	case N_FILTER: {
		struct val *v = eval(c, n->a, s);
		c->line = n->line;
		return apply_filter(c, n, v, s);
	}
	case N_TEST: {
		struct val *v = eval(c, n->a, s);
		struct val **args = NULL;
		size_t na = 0;
		struct dict *kw = NULL;
		if (n->nkids) eval_args(c, n, s, &args, &na, &kw);
		char name[32];
		snprintf(name, sizeof(name), "%.*s", (int)(n->sl < 31 ? n->sl : 31), n->s);
		int r = run_test(c, name, v, args, na);
		return mkbool(n->negate ? !r : r);
	}
	case N_NOT: return mkbool(!truthy(eval(c, n->a, s)));
	case N_NEG: case N_POS: {
		struct val *v = eval(c, n->a, s);
		if (!is_num(v) && v->t != V_BOOL) rfail(c, FTK_EDATA, "unknown operator \"%s\" for %s", n->t == N_NEG ? "-" : "+", type_name(v));
		double d = v->t == V_BOOL ? v->u.b : v->u.num;
		return mknum(c, n->t == N_NEG ? -d : d, v->t == V_FLOAT);
	}
	case N_AND: {
		struct val *a = eval(c, n->a, s);
		return truthy(a) ? eval(c, n->b, s) : a;
	}
	case N_OR: {
		struct val *a = eval(c, n->a, s);
		return truthy(a) ? a : eval(c, n->b, s);
	}
	case N_TERN: {
		struct val *cond = eval(c, n->a, s);
		if (truthy(cond)) return eval(c, n->b, s);
		return n->c ? eval(c, n->c, s) : &V_UNDEF_S;
	}
	case N_BIN: {
		struct val *a = eval(c, n->a, s);
		struct val *b = eval(c, n->b, s);
		c->line = n->line;
		return binop(c, n->s, a, b);
	}
	default:
		rfail(c, FTK_EUNSUPPORTED, "%s", "unsupported expression");
	}
}

static long tracked_index(struct ctx *c, struct val *v)
{
	for (size_t i = 0; i < c->n_tracked; i++) if (c->tracked[i] == v) return (long)i;
	return -1;
}

static void assign(struct ctx *c, struct node *target, struct val *v, struct scope *s)
{
	if (target->t == N_NAME) { scope_set(c, s, target->s, target->sl, v); return; }
	if (target->t == N_TUPLE) {
		if (v->t != V_LIST) rfail(c, FTK_EDATA, "cannot unpack non-iterable type: %s", type_name(v));
		if (v->u.list->n != target->nkids)
			rfail(c, FTK_EDATA, "too %s items to unpack", target->nkids > v->u.list->n ? "few" : "many");
		for (size_t i = 0; i < target->nkids; i++) assign(c, target->kids[i], v->u.list->v[i], s);
		return;
	}
	if (target->t == N_ATTR) {
		struct val *o = eval(c, target->a, s);
		if (o->t != V_NS) rfail(c, FTK_EDATA, "%s", "cannot assign attribute on non-namespace object");
		dict_set(c, o->u.dict, target->s, target->sl, v);
		return;
	}
	rfail(c, FTK_EDATA, "%s", "invalid assignment target");
}

static void exec_for(struct ctx *c, struct node *n, struct scope *outer)
{
	struct scope *s = scope_new(c, outer);
	struct val *it = eval(c, n->a, s);
	struct list *items;
	if (it->t == V_DICT) {
		items = mklist(c);
		for (size_t i = 0; i < it->u.dict->n; i++) list_push(c, items, mkstr(c, it->u.dict->k[i], it->u.dict->kl[i], -1));
	} else if (it->t == V_LIST) {
		items = it->u.list;
	} else {
		rfail(c, FTK_EDATA, "expected iterable or object type in for loop: got %s", type_name(it));
	}
	if (n->c) {	/* loop filter */
		struct list *f = mklist(c);
		for (size_t i = 0; i < items->n; i++) {
			struct scope *ls = scope_new(c, s);
			assign(c, n->b, items->v[i], ls);
			if (truthy(eval(c, n->c, ls))) list_push(c, f, items->v[i]);
		}
		items = f;
	}
	size_t N = items->n;
	int any = 0;
	for (size_t i = 0; i < N; i++) {
		tick(c, 1);
		struct val *loop = mkval(c, V_DICT);
		loop->u.dict = mkdict(c);
		dict_set(c, loop->u.dict, "index", 5, mknum(c, (double)i + 1, 0));
		dict_set(c, loop->u.dict, "index0", 6, mknum(c, (double)i, 0));
		dict_set(c, loop->u.dict, "revindex", 8, mknum(c, (double)(N - i), 0));
		dict_set(c, loop->u.dict, "revindex0", 9, mknum(c, (double)(N - i - 1), 0));
		dict_set(c, loop->u.dict, "first", 5, mkbool(i == 0));
		dict_set(c, loop->u.dict, "last", 4, mkbool(i == N - 1));
		dict_set(c, loop->u.dict, "length", 6, mknum(c, (double)N, 0));
		dict_set(c, loop->u.dict, "previtem", 8, i > 0 ? items->v[i - 1] : &V_UNDEF_S);
		dict_set(c, loop->u.dict, "nextitem", 8, i + 1 < N ? items->v[i + 1] : &V_UNDEF_S);
		scope_set(c, s, "loop", 4, loop);
		assign(c, n->b, items->v[i], s);
		long ti = c->out == c->main && c->opts ? tracked_index(c, items->v[i]) : -1;
		long saved_iter = c->cur_iter;
		if (ti >= 0) {
			struct ftk_jinja_opts *o = c->opts;
			FTK_ALLOC_GROW(o->iters, o->n_iters + 1, o->alloc_iters);
			o->iters[o->n_iters] = (struct ftk_jinja_iter){ (int)ti, c->out->len, c->out->len, -1 };
			c->cur_iter = (long)o->n_iters++;
		}
		exec_body(c, n->kids, n->nkids, s);
		if (ti >= 0) {
			c->opts->iters[c->cur_iter].end = c->out->len;
			c->cur_iter = saved_iter;
		}
		any = 1;
		if (c->flow == FLOW_BREAK) { c->flow = FLOW_NONE; break; }
		if (c->flow == FLOW_CONTINUE) c->flow = FLOW_NONE;
	}
	if (!any) exec_body(c, n->kids2, n->nkids2, s);
}

static void exec_body(struct ctx *c, struct node **kids, size_t nk, struct scope *s)
{
	enter(c);
	for (size_t i = 0; i < nk && c->flow == FLOW_NONE; i++) {
		struct node *n = kids[i];
		tick(c, 1);
		c->line = n->line;
		switch (n->t) {
		case N_TEXT: emit_str(c, n->s, n->sl, -1); break;
		case N_OUT: if (!emit_chain(c, n->a, s)) emit_val(c, eval(c, n->a, s)); break;
		case N_IF:
			if (truthy(eval(c, n->a, s))) exec_body(c, n->kids, n->nkids, s);
			else exec_body(c, n->kids2, n->nkids2, s);
			break;
		case N_FOR: exec_for(c, n, s); break;
		case N_SET:
			if (n->a) assign(c, n->b, eval(c, n->a, s), s);
			else {
				struct strbuf *saved = c->out, *buf = sb_new(c);
				c->out = buf;
				exec_body(c, n->kids, n->nkids, s);
				c->out = saved;
				assign(c, n->b, mkstr_sb(c, buf, -1), s);
			}
			break;
		case N_MACRO: {
			struct val *f = mkval(c, V_FUNC);
			f->u.fn = aalloc(&c->ar, sizeof(struct func));
			memset(f->u.fn, 0, sizeof(struct func));
			f->u.fn->macro = n;
			f->u.fn->name = "macro";
			f->u.fn->scope = s;
			scope_set(c, s, n->s, n->sl, f);
			break;
		}
		case N_BREAK: c->flow = FLOW_BREAK; break;
		case N_CONTINUE: c->flow = FLOW_CONTINUE; break;
		default: rfail(c, FTK_EUNSUPPORTED, "%s", "unsupported statement");
		}
	}
	c->depth--;
}

static size_t sat_add(size_t a, size_t b) { return a > SIZE_MAX - b ? SIZE_MAX : a + b; }
static size_t sat_mul(size_t a, size_t b) { return b && a > SIZE_MAX / b ? SIZE_MAX : a * b; }

static struct val *mkbuiltin(struct ctx *c, const char *name)
{
	struct val *f = mkval(c, V_FUNC);
	f->u.fn = aalloc(&c->ar, sizeof(struct func));
	memset(f->u.fn, 0, sizeof(struct func));
	f->u.fn->name = name;
	return f;
}

int ftk_jinja_render(const struct ftk_jinja *t, const cJSON *vars, struct ftk_jinja_opts *opts,
		     struct strbuf *out, struct ftk_error *err)
{
	/* the variables are names with values: a JSON object (or none) */
	if (vars && !cJSON_IsObject(vars))
		return ftk_error_msg(err, FTK_EUSAGE, "template variables must be a JSON object, not %s",
				     ftk_json_type_name(vars));
	struct ctx *c = xcalloc(1, sizeof(*c));
	int rc = 0;
	c->err = err;
	c->out = c->main = out;
	c->opts = opts;
	c->cur_iter = -1;
	if (opts) opts->n_iters = 0;
	const struct ftk_jinja_limits *lim = opts ? opts->limits : NULL;
	c->max_depth = lim && lim->max_depth ? lim->max_depth : FTK_JINJA_MAX_DEPTH;
	c->max_steps = lim && lim->max_steps ? lim->max_steps : FTK_JINJA_MAX_STEPS;
	/* the variables load under the fixed limits; their size then widens them */
	size_t max_output = lim && lim->max_output ? lim->max_output : FTK_JINJA_MAX_OUTPUT;
	size_t max_memory = lim && lim->max_memory ? lim->max_memory : FTK_JINJA_MAX_MEMORY;
	c->max_output = max_output;
	c->mem_limit = c->ar.limit = max_memory;
	c->ar.over = mem_over;
	c->ar.ctx = c;
	if (setjmp(c->jb)) {
		rc = err ? err->code : FTK_EDATA;
		if (!rc) rc = FTK_EDATA;
		goto done;
	}
	struct scope *g = scope_new(c, NULL);
	scope_set(c, g, "range", 5, mkbuiltin(c, "range"));
	scope_set(c, g, "raise_exception", 15, mkbuiltin(c, "raise_exception"));
	scope_set(c, g, "strftime_now", 12, mkbuiltin(c, "strftime_now"));
	scope_set(c, g, "namespace", 9, mkbuiltin(c, "namespace"));
	const cJSON *it;
	cJSON_ArrayForEach(it, vars) {
		struct val *v;
		if (opts && opts->track && it == opts->track) {
			/* the tracked array: each element's tainting members are tainted */
			v = mklistval(c, mklist(c));
			c->tracked = aalloc(&c->ar, (cJSON_GetArraySize(it) + 1) * sizeof(struct val *));
			const cJSON *el;
			cJSON_ArrayForEach(el, it) {
				struct val *e;
				if (cJSON_IsObject(el)) {
					e = mkval(c, V_DICT);
					e->u.dict = mkdict(c);
					const cJSON *m;
					cJSON_ArrayForEach(m, el) {
						int taint = 0;
						for (int k = 0; opts->taint_keys && opts->taint_keys[k]; k++)
							if (!strcmp(opts->taint_keys[k], m->string)) taint = 1;
						dict_set(c, e->u.dict, m->string, strlen(m->string), from_json(c, m, taint));
					}
				} else {
					e = from_json(c, el, 0);
				}
				c->tracked[c->n_tracked++] = e;
				list_push(c, v->u.list, e);
			}
		} else {
			v = from_json(c, it, 0);
		}
		scope_set(c, g, it->string, strlen(it->string), v);
	}
	c->max_output = sat_add(max_output, sat_mul(FTK_JINJA_OUTPUT_PER_BYTE, c->var_bytes));
	c->mem_limit = sat_add(max_memory, sat_mul(FTK_JINJA_MEMORY_PER_BYTE, c->var_bytes));
	c->ar.limit = sat_add(c->ar.total, c->mem_limit);
	struct scope *top = scope_new(c, g);
	exec_body(c, t->root->kids, t->root->nkids, top);
done:
	for (size_t i = 0; i < c->nscr; i++) scr_release(&c->scr[i]);
	free(c->scr);
	arena_free(&c->ar);
	free(c);
	return rc;
}
