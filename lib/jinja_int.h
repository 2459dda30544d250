/*
 * jinja_int.h: what the three parts of the Jinja interpreter share
 * (jinja_lex.c, jinja_parse.c, jinja_eval.c).  Not a public interface:
 * only those files include it; callers use jinja.h.
 *
 * The interpreter runs chat templates with transformers.js's semantics
 * (@huggingface/jinja, which apply_chat_template uses).  Shape, as jq's src/
 * is cut: a preprocessing pass and a lexer (jinja_lex.c: the trailing
 * newline, lstrip_blocks and trim_blocks as transformers configures them,
 * the {% generation %} markers dropped, then tokens), a recursive-descent
 * parser to a tree (jinja_parse.c), and a tree-walking evaluator
 * (jinja_eval.c).  The tree and the values live in arenas freed all at once,
 * so neither the parser nor the evaluator frees anything as it goes and
 * errors unwind with longjmp.
 */
#ifndef FTK_JINJA_INT_H
#define FTK_JINJA_INT_H

#include <setjmp.h>
#include <string.h>
#include "jinja.h"

/* ------------------------------------------------------------ arena */

struct arena_blk { struct arena_blk *next; size_t used, cap; char data[]; };
/*
 * total counts the bytes of every block taken.  When limit is set, a block
 * that would take total past it calls over(ctx) instead, which must not
 * return (the evaluator longjmps out with its memory-limit error).
 */
struct arena {
	struct arena_blk *head;
	size_t total, limit;
	void (*over)(void *ctx);
	void *ctx;
};

static inline void *aalloc(struct arena *a, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	if (!a->head || a->head->used + n > a->head->cap) {
		size_t cap = n > 65536 ? n : 65536;
		if (a->limit && (cap > a->limit || a->total > a->limit - cap)) a->over(a->ctx);
		a->total += cap;
		struct arena_blk *b = xmalloc(sizeof(*b) + cap);
		b->next = a->head;
		b->used = 0;
		b->cap = cap;
		a->head = b;
	}
	void *p = a->head->data + a->head->used;
	a->head->used += n;
	return p;
}

static inline void arena_free(struct arena *a)
{
	while (a->head) {
		struct arena_blk *n = a->head->next;
		free(a->head);
		a->head = n;
	}
}

static inline char *astrndup(struct arena *a, const char *s, size_t n)
{
	char *p = aalloc(a, n + 1);
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

/* ------------------------------------------------------------ AST */

enum nt {
	N_TEXT, N_OUT, N_IF, N_FOR, N_SET, N_MACRO, N_BREAK, N_CONTINUE, N_CALLBLOCK, N_FILTERBLOCK,
	/* expressions */
	N_STR, N_NUM, N_LIST, N_TUPLE, N_DICT, N_NAME, N_ATTR, N_INDEX, N_SLICE, N_CALL, N_FILTER,
	N_TEST, N_NOT, N_NEG, N_POS, N_BIN, N_AND, N_OR, N_TERN, N_KWARG,
};

struct node {
	enum nt t;
	int line;
	const char *s;		/* text, name, operator, attr */
	size_t sl;
	double num;
	int is_float;
	int negate;		/* test: is not */
	struct node *a, *b, *c, *d;	/* children by role */
	struct node **kids;	/* bodies, list items, args */
	size_t nkids;
	struct node **kids2;	/* else bodies, dict values, params */
	size_t nkids2;
};

struct ftk_jinja {
	struct arena ar;
	struct node *root;	/* N_LIST of statements (kids) */
};

/* ------------------------------------------------------------ tokens */

enum tk { T_TEXT, T_OPEN_STMT, T_CLOSE_STMT, T_OPEN_EXPR, T_CLOSE_EXPR, T_NAME, T_STR, T_NUM, T_OP, T_END };

struct tok { enum tk t; const char *s; size_t n; int line; };

struct lexer {
	struct arena *ar;
	struct tok *v;
	size_t n, cap;
	struct ftk_error *err;
	jmp_buf jb;
};

/* ------------------------------------------------------------ jinja_lex.c */

/*
 * The template text as @huggingface/jinja preprocesses it for transformers
 * (trailing newline, lstrip_blocks, trim_blocks, {% generation %} dropped).
 * Returns a malloc'd copy (caller frees) and its length in *outlen.
 */
char *ftk_jinja_preprocess(const char *src, size_t len, size_t *outlen);

/*
 * Tokens of src[0, n) appended to L->v (xrealloc'd; caller frees), ending
 * with T_END.  String literals are copied into L->ar.  On a lexical error
 * fills L->err and longjmps to L->jb.
 */
void ftk_jinja_lex(struct lexer *L, const char *src, size_t n);

/*
 * Whether s[i] starts a character JavaScript's \s matches (ASCII white
 * space, NBSP, U+FEFF, the line and paragraph separators, Zs); its byte
 * length goes to *len.
 */
int ftk_jinja_js_space(const char *s, size_t n, size_t i, size_t *len);

/* Bytes in the UTF-8 character at s (1 for a stray byte). */
size_t ftk_jinja_utf8_len(const char *s, size_t n);

/* ------------------------------------------------------------ jinja_parse.c */

/* The filters and tests the evaluator implements, NULL-terminated. */
extern const char *const ftk_jinja_filters[];
extern const char *const ftk_jinja_tests[];

/* Whether s[0, n) is one of the NULL-terminated names in l. */
int ftk_jinja_in_list(const char *const *l, const char *s, size_t n);

#endif
