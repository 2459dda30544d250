/*
 * jinja_parse.c: tokens to a tree, by recursive descent.
 *
 * One function per precedence level, loosest first: the ternary if-else,
 * or, and, not, comparisons (with in / not in), + - ~, * / // %, **, then
 * unary signs, postfix access and calls, filters and tests.  Statements
 * ({% if %}, for, set, macro, break, continue) parse their bodies up to
 * their end tags.  What the evaluator does not implement (a filter, a test,
 * a statement) is refused here with a message naming it, so a template
 * that parses has no unknown filter or test in it.  Nodes live in the
 * template's arena.
 */
#include <stdio.h>
#include <stdlib.h>
#include "jinja_int.h"

struct parser {
	struct lexer *L;
	size_t p;
	struct arena *ar;
	struct ftk_error *err;
	jmp_buf *jb;
	int depth;		/* recursion, against FTK_JINJA_MAX_NESTING */
};

static const struct tok *peek(struct parser *P) { return &P->L->v[P->p]; }
static const struct tok *peekn(struct parser *P, size_t k)
{
	size_t i = P->p + k;
	return i < P->L->n ? &P->L->v[i] : &P->L->v[P->L->n - 1];
}
static const struct tok *next(struct parser *P)
{
	const struct tok *t = &P->L->v[P->p];
	if (t->t != T_END) P->p++;
	return t;
}

static void pfail(struct parser *P, int code, const char *fmt, const char *a, size_t al)
{
	char buf[200];
	snprintf(buf, sizeof(buf), "%.*s", (int)(al > 150 ? 150 : al), a ? a : "");
	ftk_error_set(P->err, code, NULL, peek(P)->line, NULL, fmt, buf);
	longjmp(*P->jb, 1);
}

static void nest_fail(struct ftk_error *err, int line, jmp_buf *jb)
{
	ftk_error_set(err, FTK_ELIMIT, NULL, line, NULL, "template nested deeper than %d levels (the parser's depth limit)",
		      FTK_JINJA_MAX_NESTING);
	longjmp(*jb, 1);
}

/* Around each recursive descent: parse_expr, parse_sign, parse_not, parse_stmt. */
static void enter(struct parser *P)
{
	if (++P->depth > FTK_JINJA_MAX_NESTING) nest_fail(P->err, peek(P)->line, P->jb);
}
static void leave(struct parser *P) { P->depth--; }

static int is_op(const struct tok *t, const char *op)
{
	return t->t == T_OP && t->n == strlen(op) && !memcmp(t->s, op, t->n);
}
static int is_name(const struct tok *t, const char *nm)
{
	return t->t == T_NAME && t->n == strlen(nm) && !memcmp(t->s, nm, t->n);
}

static void expect_op(struct parser *P, const char *op)
{
	if (!is_op(peek(P), op)) {
		const struct tok *t = peek(P);
		char m[64];
		snprintf(m, sizeof(m), "expected '%s'", op);
		pfail(P, FTK_EDATA, "%s", m, strlen(m));
		(void)t;
	}
	next(P);
}

static struct node *mk(struct parser *P, enum nt t)
{
	struct node *n = aalloc(P->ar, sizeof(*n));
	memset(n, 0, sizeof(*n));
	n->t = t;
	n->line = peek(P)->line;
	return n;
}

struct nvec { struct node **v; size_t n, cap; };
static void nv_push(struct parser *P, struct nvec *v, struct node *x)
{
	if (v->n == v->cap) {
		size_t nc = v->cap ? v->cap * 2 : 4;
		struct node **nv = aalloc(P->ar, nc * sizeof(*nv));
		if (v->n) memcpy(nv, v->v, v->n * sizeof(*nv));
		v->v = nv;
		v->cap = nc;
	}
	v->v[v->n++] = x;
}

static struct node *parse_expr(struct parser *P);
static struct node *parse_or(struct parser *P);

const char *const ftk_jinja_filters[] = { "length", "count", "tojson", "trim", "upper", "lower", "title", "capitalize",
	"first", "last", "join", "default", "d", "string", "int", "float", "list", "items", "reverse", "sort", "unique",
	"replace", "indent", "map", "selectattr", "rejectattr", "abs", "safe", "bool", "keys", "values", NULL };
const char *const ftk_jinja_tests[] = { "defined", "undefined", "none", "string", "number", "integer", "boolean",
	"true", "false", "mapping", "iterable", "sequence", "odd", "even", "callable", "lower", "upper", "equalto",
	"eq", "in", NULL };

int ftk_jinja_in_list(const char *const *l, const char *s, size_t n)
{
	for (int i = 0; l[i]; i++) if (strlen(l[i]) == n && !memcmp(l[i], s, n)) return 1;
	return 0;
}

/* Call arguments after '(' up to ')': positional in kids, keyword args as N_KWARG. */
static void parse_args(struct parser *P, struct node *call)
{
	struct nvec v = { 0 };
	while (!is_op(peek(P), ")")) {
		if (peek(P)->t == T_NAME && is_op(peekn(P, 1), "=")) {
			struct node *kw = mk(P, N_KWARG);
			kw->s = peek(P)->s;
			kw->sl = peek(P)->n;
			next(P);
			next(P);
			kw->a = parse_expr(P);
			nv_push(P, &v, kw);
		} else {
			if (is_op(peek(P), "*")) pfail(P, FTK_EUNSUPPORTED, "unsupported %s", "argument unpacking (*args)", 24);
			nv_push(P, &v, parse_expr(P));
		}
		if (!is_op(peek(P), ",")) break;
		next(P);
	}
	expect_op(P, ")");
	call->kids = v.v;
	call->nkids = v.n;
}

static struct node *parse_primary(struct parser *P)
{
	const struct tok *t = peek(P);
	struct node *n;
	if (t->t == T_STR) {
		n = mk(P, N_STR);
		n->s = t->s;
		n->sl = t->n;
		next(P);
		/* adjacent string literals concatenate */
		while (peek(P)->t == T_STR) {
			const struct tok *u = next(P);
			char *s = aalloc(P->ar, n->sl + u->n + 1);
			memcpy(s, n->s, n->sl);
			memcpy(s + n->sl, u->s, u->n);
			s[n->sl + u->n] = 0;
			n->s = s;
			n->sl += u->n;
		}
		return n;
	}
	if (t->t == T_NUM) {
		n = mk(P, N_NUM);
		char buf[64];
		snprintf(buf, sizeof(buf), "%.*s", (int)(t->n < 60 ? t->n : 60), t->s);
		n->num = strtod(buf, NULL);
		n->is_float = memchr(t->s, '.', t->n) != NULL;
		next(P);
		return n;
	}
	if (t->t == T_NAME) {
		n = mk(P, N_NAME);
		n->s = t->s;
		n->sl = t->n;
		next(P);
		return n;
	}
	if (is_op(t, "(")) {
		next(P);
		struct node *e = parse_expr(P);
		if (is_op(peek(P), ",")) {	/* tuple */
			struct nvec v = { 0 };
			nv_push(P, &v, e);
			while (is_op(peek(P), ",")) {
				next(P);
				if (is_op(peek(P), ")")) break;
				nv_push(P, &v, parse_expr(P));
			}
			e = mk(P, N_TUPLE);
			e->kids = v.v;
			e->nkids = v.n;
		}
		expect_op(P, ")");
		return e;
	}
	if (is_op(t, "[")) {
		next(P);
		struct nvec v = { 0 };
		while (!is_op(peek(P), "]")) {
			nv_push(P, &v, parse_expr(P));
			if (!is_op(peek(P), ",")) break;
			next(P);
		}
		expect_op(P, "]");
		n = mk(P, N_LIST);
		n->kids = v.v;
		n->nkids = v.n;
		return n;
	}
	if (is_op(t, "{")) {
		next(P);
		struct nvec k = { 0 }, v = { 0 };
		while (!is_op(peek(P), "}")) {
			nv_push(P, &k, parse_expr(P));
			expect_op(P, ":");
			nv_push(P, &v, parse_expr(P));
			if (!is_op(peek(P), ",")) break;
			next(P);
		}
		expect_op(P, "}");
		n = mk(P, N_DICT);
		n->kids = k.v;
		n->nkids = k.n;
		n->kids2 = v.v;
		n->nkids2 = v.n;
		return n;
	}
	if (t->t == T_END || t->t == T_CLOSE_EXPR || t->t == T_CLOSE_STMT)
		pfail(P, FTK_EDATA, "%s", "unexpected end of expression", 29);
	pfail(P, FTK_EDATA, "unexpected token '%s'", t->s, t->n);
	return NULL;
}

static struct node *parse_postfix(struct parser *P)
{
	struct node *e = parse_primary(P);
	for (;;) {
		const struct tok *t = peek(P);
		if (is_op(t, ".")) {
			next(P);
			const struct tok *nm = next(P);
			if (nm->t != T_NAME && nm->t != T_NUM) pfail(P, FTK_EDATA, "%s", "expected a name after '.'", 25);
			struct node *a = mk(P, nm->t == T_NUM ? N_INDEX : N_ATTR);
			a->a = e;
			if (nm->t == T_NUM) {
				struct node *num = mk(P, N_NUM);
				num->num = strtod(nm->s, NULL);
				a->b = num;
			} else {
				a->s = nm->s;
				a->sl = nm->n;
			}
			e = a;
		} else if (is_op(t, "[")) {
			next(P);
			struct node *idx[3] = { NULL, NULL, NULL };
			int colons = 0;
			for (;;) {
				if (is_op(peek(P), ":")) { next(P); colons++; if (colons > 2) pfail(P, FTK_EDATA, "%s", "bad slice", 9); continue; }
				if (is_op(peek(P), "]")) break;
				idx[colons] = parse_expr(P);
			}
			expect_op(P, "]");
			struct node *s;
			if (colons) {
				s = mk(P, N_SLICE);
				s->a = e;
				s->b = idx[0];
				s->c = idx[1];
				s->d = idx[2];
			} else {
				if (!idx[0]) pfail(P, FTK_EDATA, "%s", "empty subscript", 15);
				s = mk(P, N_INDEX);
				s->a = e;
				s->b = idx[0];
			}
			e = s;
		} else if (is_op(t, "(")) {
			next(P);
			struct node *c = mk(P, N_CALL);
			c->a = e;
			parse_args(P, c);
			e = c;
		} else {
			return e;
		}
	}
}

static struct node *parse_filter_chain(struct parser *P, struct node *e)
{
	while (is_op(peek(P), "|")) {
		next(P);
		const struct tok *nm = next(P);
		if (nm->t != T_NAME) pfail(P, FTK_EDATA, "%s", "expected a filter name after '|'", 32);
		if (!ftk_jinja_in_list(ftk_jinja_filters, nm->s, nm->n)) pfail(P, FTK_EUNSUPPORTED, "unsupported filter '%s'", nm->s, nm->n);
		struct node *f = mk(P, N_FILTER);
		f->a = e;
		f->s = nm->s;
		f->sl = nm->n;
		if (is_op(peek(P), "(")) {
			next(P);
			parse_args(P, f);
			f->is_float = 1;	/* marks "called with parentheses" */
		}
		e = f;
	}
	return e;
}

/* Unary minus and plus bind tighter than filters and tests: -3|abs is 3. */
static struct node *parse_unary(struct parser *P);
static struct node *parse_sign(struct parser *P)
{
	if (is_op(peek(P), "-") || is_op(peek(P), "+")) {
		int neg = is_op(peek(P), "-");
		next(P);
		struct node *n = mk(P, neg ? N_NEG : N_POS);
		enter(P);
		n->a = parse_sign(P);
		leave(P);
		return n;
	}
	return parse_postfix(P);
}

static struct node *parse_unary(struct parser *P)
{
	struct node *e = parse_sign(P);
	e = parse_filter_chain(P, e);
	while (is_name(peek(P), "is")) {
		next(P);
		struct node *t = mk(P, N_TEST);
		t->a = e;
		if (is_name(peek(P), "not")) { next(P); t->negate = 1; }
		const struct tok *nm = next(P);
		if (nm->t != T_NAME) pfail(P, FTK_EDATA, "%s", "expected a test name after 'is'", 31);
		if (!ftk_jinja_in_list(ftk_jinja_tests, nm->s, nm->n)) pfail(P, FTK_EUNSUPPORTED, "unsupported test '%s'", nm->s, nm->n);
		t->s = nm->s;
		t->sl = nm->n;
		if (is_op(peek(P), "(")) {
			next(P);
			parse_args(P, t);
		} else if (peek(P)->t == T_STR || peek(P)->t == T_NUM || (peek(P)->t == T_NAME && !is_name(peek(P), "and") &&
			   !is_name(peek(P), "or") && !is_name(peek(P), "else") && !is_name(peek(P), "if") && !is_name(peek(P), "is"))) {
			/* "is sameas x" style single argument */
			struct node *arg = parse_postfix(P);
			t->kids = aalloc(P->ar, sizeof(struct node *));
			t->kids[0] = arg;
			t->nkids = 1;
		}
		e = parse_filter_chain(P, t);
	}
	return e;
}

static struct node *bin(struct parser *P, const char *op, struct node *a, struct node *b)
{
	struct node *n = mk(P, N_BIN);
	n->s = op;
	n->a = a;
	n->b = b;
	return n;
}

static struct node *parse_pow(struct parser *P)
{
	struct node *e = parse_unary(P);
	while (is_op(peek(P), "**")) { next(P); e = bin(P, "**", e, parse_unary(P)); }
	return e;
}

static struct node *parse_mul(struct parser *P)
{
	struct node *e = parse_pow(P);
	for (;;) {
		const struct tok *t = peek(P);
		const char *op = is_op(t, "*") ? "*" : is_op(t, "/") ? "/" : is_op(t, "//") ? "//" : is_op(t, "%") ? "%" : NULL;
		if (!op) return e;
		next(P);
		e = bin(P, op, e, parse_pow(P));
	}
}

static struct node *parse_add(struct parser *P)
{
	struct node *e = parse_mul(P);
	for (;;) {
		const struct tok *t = peek(P);
		const char *op = is_op(t, "+") ? "+" : is_op(t, "-") ? "-" : is_op(t, "~") ? "~" : NULL;
		if (!op) return e;
		next(P);
		e = bin(P, op, e, parse_mul(P));
	}
}

static struct node *parse_cmp(struct parser *P)
{
	struct node *e = parse_add(P);
	for (;;) {
		const struct tok *t = peek(P);
		const char *op = NULL;
		if (is_op(t, "==")) op = "==";
		else if (is_op(t, "!=")) op = "!=";
		else if (is_op(t, "<")) op = "<";
		else if (is_op(t, ">")) op = ">";
		else if (is_op(t, "<=")) op = "<=";
		else if (is_op(t, ">=")) op = ">=";
		else if (is_name(t, "in")) op = "in";
		else if (is_name(t, "not") && is_name(peekn(P, 1), "in")) { next(P); op = "not in"; }
		if (!op) return e;
		next(P);
		e = bin(P, op, e, parse_add(P));
	}
}

static struct node *parse_not(struct parser *P)
{
	if (is_name(peek(P), "not")) {
		next(P);
		struct node *n = mk(P, N_NOT);
		enter(P);
		n->a = parse_not(P);
		leave(P);
		return n;
	}
	return parse_cmp(P);
}

static struct node *parse_and(struct parser *P)
{
	struct node *e = parse_not(P);
	while (is_name(peek(P), "and")) {
		next(P);
		struct node *n = mk(P, N_AND);
		n->a = e;
		n->b = parse_not(P);
		e = n;
	}
	return e;
}

static struct node *parse_or(struct parser *P)
{
	struct node *e = parse_and(P);
	while (is_name(peek(P), "or")) {
		next(P);
		struct node *n = mk(P, N_OR);
		n->a = e;
		n->b = parse_and(P);
		e = n;
	}
	return e;
}

static struct node *parse_expr_r(struct parser *P);

static struct node *parse_expr(struct parser *P)
{
	enter(P);
	struct node *e = parse_expr_r(P);
	leave(P);
	return e;
}

static struct node *parse_expr_r(struct parser *P)
{
	struct node *e = parse_or(P);
	while (is_name(peek(P), "if")) {
		next(P);
		struct node *t = mk(P, N_TERN);
		t->b = e;
		t->a = parse_or(P);
		if (is_name(peek(P), "else")) {
			next(P);
			t->c = parse_expr(P);
		}
		e = t;
	}
	return e;
}

/* Statements up to one of the end tags (names); returns which one (index) and consumes it. */
static int parse_body(struct parser *P, struct nvec *out, const char *const *ends);

static void expect_close(struct parser *P)
{
	if (peek(P)->t != T_CLOSE_STMT) pfail(P, FTK_EDATA, "%s", "expected '%}'", 13);
	next(P);
}

static struct node *parse_target(struct parser *P)
{
	struct node *e = parse_postfix(P);
	if (is_op(peek(P), ",")) {
		struct nvec v = { 0 };
		nv_push(P, &v, e);
		while (is_op(peek(P), ",")) { next(P); nv_push(P, &v, parse_postfix(P)); }
		struct node *t = mk(P, N_TUPLE);
		t->kids = v.v;
		t->nkids = v.n;
		return t;
	}
	return e;
}

static struct node *parse_stmt_r(struct parser *P);

static struct node *parse_stmt(struct parser *P)
{
	enter(P);
	struct node *n = parse_stmt_r(P);
	leave(P);
	return n;
}

static struct node *parse_stmt_r(struct parser *P)
{
	const struct tok *t = next(P);	/* the keyword */
	if (t->t != T_NAME) pfail(P, FTK_EDATA, "%s", "expected a statement name after '{%'", 36);
	struct node *n;
	if (is_name(t, "if")) {
		n = mk(P, N_IF);
		n->a = parse_expr(P);
		expect_close(P);
		struct nvec body = { 0 }, alt = { 0 };
		static const char *const ends[] = { "elif", "else", "endif", NULL };
		int e = parse_body(P, &body, ends);
		n->kids = body.v;
		n->nkids = body.n;
		if (e == 0) {	/* elif: a nested if in the else branch */
			P->p--;	/* parse_stmt reads "elif" as "if" */
			struct node *sub = parse_stmt(P);
			nv_push(P, &alt, sub);
			n->kids2 = alt.v;
			n->nkids2 = alt.n;
			return n;	/* the nested if consumed endif */
		}
		if (e == 1) {
			expect_close(P);
			static const char *const ends2[] = { "endif", NULL };
			parse_body(P, &alt, ends2);
			n->kids2 = alt.v;
			n->nkids2 = alt.n;
		}
		expect_close(P);
		return n;
	}
	if (is_name(t, "elif")) {	/* reached only through the rewind above */
		n = mk(P, N_IF);
		n->a = parse_expr(P);
		expect_close(P);
		struct nvec body = { 0 }, alt = { 0 };
		static const char *const ends[] = { "elif", "else", "endif", NULL };
		int e = parse_body(P, &body, ends);
		n->kids = body.v;
		n->nkids = body.n;
		if (e == 0) {
			P->p--;
			nv_push(P, &alt, parse_stmt(P));
			n->kids2 = alt.v;
			n->nkids2 = alt.n;
			return n;
		}
		if (e == 1) {
			expect_close(P);
			static const char *const ends2[] = { "endif", NULL };
			parse_body(P, &alt, ends2);
			n->kids2 = alt.v;
			n->nkids2 = alt.n;
		}
		expect_close(P);
		return n;
	}
	if (is_name(t, "for")) {
		n = mk(P, N_FOR);
		n->b = parse_target(P);
		if (!is_name(peek(P), "in")) pfail(P, FTK_EDATA, "%s", "expected 'in' in for", 20);
		next(P);
		n->a = parse_or(P);	/* the iterable */
		if (is_name(peek(P), "if")) { next(P); n->c = parse_expr(P); }
		if (is_name(peek(P), "recursive")) pfail(P, FTK_EUNSUPPORTED, "unsupported %s", "recursive for loop", 18);
		expect_close(P);
		struct nvec body = { 0 }, alt = { 0 };
		static const char *const ends[] = { "else", "endfor", NULL };
		int e = parse_body(P, &body, ends);
		n->kids = body.v;
		n->nkids = body.n;
		if (e == 0) {
			expect_close(P);
			static const char *const ends2[] = { "endfor", NULL };
			parse_body(P, &alt, ends2);
			n->kids2 = alt.v;
			n->nkids2 = alt.n;
		}
		expect_close(P);
		return n;
	}
	if (is_name(t, "set")) {
		n = mk(P, N_SET);
		n->b = parse_target(P);
		if (is_op(peek(P), "=")) {
			next(P);
			n->a = parse_expr(P);
			if (is_op(peek(P), ",")) {	/* set a = 1, 2 */
				struct nvec v = { 0 };
				nv_push(P, &v, n->a);
				while (is_op(peek(P), ",")) { next(P); nv_push(P, &v, parse_expr(P)); }
				struct node *tu = mk(P, N_TUPLE);
				tu->kids = v.v;
				tu->nkids = v.n;
				n->a = tu;
			}
			expect_close(P);
		} else {
			n->b = parse_filter_chain(P, n->b);	/* block set with a filter is unusual */
			if (n->b->t == N_FILTER) pfail(P, FTK_EUNSUPPORTED, "unsupported %s", "filtered block set", 18);
			expect_close(P);
			struct nvec body = { 0 };
			static const char *const ends[] = { "endset", NULL };
			parse_body(P, &body, ends);
			n->kids = body.v;
			n->nkids = body.n;
			expect_close(P);
		}
		return n;
	}
	if (is_name(t, "macro")) {
		n = mk(P, N_MACRO);
		const struct tok *nm = next(P);
		if (nm->t != T_NAME) pfail(P, FTK_EDATA, "%s", "expected a macro name", 21);
		n->s = nm->s;
		n->sl = nm->n;
		expect_op(P, "(");
		struct nvec params = { 0 };
		while (!is_op(peek(P), ")")) {
			const struct tok *pn = next(P);
			if (pn->t != T_NAME) pfail(P, FTK_EDATA, "%s", "expected a parameter name", 25);
			struct node *p = mk(P, N_KWARG);
			p->s = pn->s;
			p->sl = pn->n;
			if (is_op(peek(P), "=")) { next(P); p->a = parse_expr(P); }
			nv_push(P, &params, p);
			if (!is_op(peek(P), ",")) break;
			next(P);
		}
		expect_op(P, ")");
		expect_close(P);
		struct nvec body = { 0 };
		static const char *const ends[] = { "endmacro", NULL };
		parse_body(P, &body, ends);
		n->kids = body.v;
		n->nkids = body.n;
		n->kids2 = params.v;
		n->nkids2 = params.n;
		expect_close(P);
		return n;
	}
	if (is_name(t, "break") || is_name(t, "continue")) {
		n = mk(P, is_name(t, "break") ? N_BREAK : N_CONTINUE);
		expect_close(P);
		return n;
	}
	pfail(P, FTK_EUNSUPPORTED, "unsupported statement '%s'", t->s, t->n);
	return NULL;
}

static int parse_body(struct parser *P, struct nvec *out, const char *const *ends)
{
	for (;;) {
		const struct tok *t = peek(P);
		if (t->t == T_END) {
			if (ends) {
				char m[64];
				int k = 0;
				while (ends[k + 1]) k++;	/* the closing tag is the last one */
				snprintf(m, sizeof(m), "missing '{%% %s %%}'", ends[k]);
				pfail(P, FTK_EDATA, "%s", m, strlen(m));
			}
			return -1;
		}
		if (t->t == T_TEXT) {
			struct node *n = mk(P, N_TEXT);
			n->s = t->s;
			n->sl = t->n;
			next(P);
			nv_push(P, out, n);
			continue;
		}
		if (t->t == T_OPEN_EXPR) {
			next(P);
			struct node *n = mk(P, N_OUT);
			n->a = parse_expr(P);
			if (peek(P)->t == T_END) pfail(P, FTK_EDATA, "%s", "unexpected end of template: '}}' missing", 40);
			if (peek(P)->t != T_CLOSE_EXPR) pfail(P, FTK_EDATA, "unexpected '%s' in expression", peek(P)->s, peek(P)->n);
			next(P);
			nv_push(P, out, n);
			continue;
		}
		if (t->t == T_OPEN_STMT) {
			const struct tok *kw = peekn(P, 1);
			if (ends && kw->t == T_NAME)
				for (int i = 0; ends[i]; i++)
					if (is_name(kw, ends[i])) { next(P); next(P); return i; }
			if (kw->t == T_NAME && (is_name(kw, "endif") || is_name(kw, "endfor") || is_name(kw, "else") ||
						 is_name(kw, "elif") || is_name(kw, "endset") || is_name(kw, "endmacro")))
				pfail(P, FTK_EDATA, "unexpected '%s'", kw->s, kw->n);
			next(P);
			nv_push(P, out, parse_stmt(P));
			continue;
		}
		pfail(P, FTK_EDATA, "unexpected token '%s'", t->s, t->n);
	}
}

/*
 * The tree's depth, checked once it is built: chains the parser reads with
 * loops (a.b.c..., x|f|g..., 1+1+1...) are as deep as they are long.  The
 * walk stops at the limit, so its own recursion is bounded.
 */
static void check_depth(struct parser *P, const struct node *n, int d)
{
	if (!n) return;
	if (d > FTK_JINJA_MAX_NESTING) nest_fail(P->err, n->line, P->jb);
	check_depth(P, n->a, d + 1);
	check_depth(P, n->b, d + 1);
	check_depth(P, n->c, d + 1);
	check_depth(P, n->d, d + 1);
	for (size_t i = 0; i < n->nkids; i++) check_depth(P, n->kids[i], d + 1);
	for (size_t i = 0; i < n->nkids2; i++) check_depth(P, n->kids2[i], d + 1);
}

int ftk_jinja_parse(struct ftk_jinja **out, const char *src, size_t len, struct ftk_error *err)
{
	struct ftk_jinja *J = xcalloc(1, sizeof(*J));
	size_t pl;
	char *pre = ftk_jinja_preprocess(src, len, &pl);
	char *text = astrndup(&J->ar, pre, pl);
	free(pre);
	struct lexer L = { 0 };
	L.ar = &J->ar;
	L.err = err;
	*out = NULL;
	if (setjmp(L.jb)) {
		free(L.v);
		ftk_jinja_free(J);
		return err ? err->code : FTK_EDATA;
	}
	ftk_jinja_lex(&L, text, pl);
	struct parser P = { &L, 0, &J->ar, err, &L.jb, 0 };
	struct nvec body = { 0 };
	parse_body(&P, &body, NULL);
	for (size_t i = 0; i < body.n; i++) check_depth(&P, body.v[i], 1);
	J->root = aalloc(&J->ar, sizeof(struct node));
	memset(J->root, 0, sizeof(struct node));
	J->root->kids = body.v;
	J->root->nkids = body.n;
	free(L.v);
	*out = J;
	return 0;
}

void ftk_jinja_free(struct ftk_jinja *t)
{
	if (!t) return;
	arena_free(&t->ar);
	free(t);
}
