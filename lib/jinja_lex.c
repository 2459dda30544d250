/*
 * jinja_lex.c: a chat template's text to tokens.
 *
 * First the text is preprocessed as @huggingface/jinja does for
 * transformers (the final newline dropped, lstrip_blocks and trim_blocks,
 * {% generation %} markers removed with their whitespace rules), then cut
 * into tokens: text between tags, the tag delimiters, names, string
 * literals (escapes decoded here), numbers and operators.  Whitespace
 * control ({%- -%} {{- -}} {#- -#}) is applied while lexing, by trimming the
 * neighbouring text token, with JavaScript's idea of white space.
 */
#include <ctype.h>
#include <stdlib.h>
#include <utf8proc.h>
#include "jinja_int.h"

static void lex_push(struct lexer *L, enum tk t, const char *s, size_t n, int line)
{
	if (L->n == L->cap) {
		L->cap = L->cap ? L->cap * 2 : 256;
		L->v = xrealloc(L->v, L->cap * sizeof(*L->v));
	}
	L->v[L->n++] = (struct tok){ t, s, n, line };
}

int ftk_jinja_js_space(const char *s, size_t n, size_t i, size_t *len)
{
	/* JavaScript's \s: ASCII white space, NBSP, U+FEFF, line/para separators, Zs */
	unsigned char c = (unsigned char)s[i];
	if (c == ' ' || (c >= 9 && c <= 13)) { *len = 1; return 1; }
	if (c < 0x80) return 0;
	utf8proc_int32_t cp;
	utf8proc_ssize_t k = utf8proc_iterate((const uint8_t *)s + i, n - i, &cp);
	if (k <= 0) return 0;
	*len = k;
	return cp == 0xA0 || cp == 0xFEFF || cp == 0x2028 || cp == 0x2029 || cp == 0x1680 ||
	       (cp >= 0x2000 && cp <= 0x200A) || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

static void lex_fail(struct lexer *L, int line, const char *fmt, const char *arg)
{
	ftk_error_set(L->err, FTK_EDATA, NULL, line, NULL, fmt, arg);
	longjmp(L->jb, 1);
}

char *ftk_jinja_preprocess(const char *src, size_t len, size_t *outlen)
{
	struct strbuf a = STRBUF_INIT, b = STRBUF_INIT;
	if (len && src[len - 1] == '\n') len--;
	/* lstrip_blocks: spaces and tabs at a line start before {# {% {- */
	size_t i = 0;
	while (i < len) {
		size_t j = i;
		while (j < len && (src[j] == ' ' || src[j] == '\t')) j++;
		if (j + 1 < len && src[j] == '{' && (src[j + 1] == '#' || src[j + 1] == '%' || src[j + 1] == '-'))
			i = j;
		/* copy to the end of the line */
		while (i < len && src[i] != '\n') strbuf_addch(&a, src[i++]);
		if (i < len) strbuf_addch(&a, src[i++]);
	}
	/* trim_blocks: the newline right after %} #} -} */
	for (size_t k = 0; k < a.len; k++) {
		strbuf_addch(&b, a.buf[k]);
		if (a.buf[k] == '}' && k > 0 && (a.buf[k - 1] == '%' || a.buf[k - 1] == '#' || a.buf[k - 1] == '-') &&
		    k + 1 < a.len && a.buf[k + 1] == '\n')
			k++;
	}
	strbuf_release(&a);
	/* drop {% generation %} / {% endgeneration %} with their whitespace rules */
	struct strbuf c = STRBUF_INIT;
	size_t k = 0;
	while (k < b.len) {
		size_t ws = k;
		while (ws < b.len && isspace((unsigned char)b.buf[ws])) ws++;
		if (ws + 1 < b.len && b.buf[ws] == '{' && b.buf[ws + 1] == '%') {
			size_t p = ws + 2;
			int lstrip = 0, rstrip = 0;
			if (p < b.len && b.buf[p] == '-') { lstrip = 1; p++; }
			while (p < b.len && isspace((unsigned char)b.buf[p])) p++;
			if (p + 3 <= b.len && !memcmp(b.buf + p, "end", 3)) p += 3;
			if (p + 10 <= b.len && !memcmp(b.buf + p, "generation", 10)) {
				p += 10;
				while (p < b.len && isspace((unsigned char)b.buf[p])) p++;
				if (p < b.len && b.buf[p] == '-') { rstrip = 1; p++; }
				if (p + 1 < b.len && b.buf[p] == '%' && b.buf[p + 1] == '}') {
					p += 2;
					size_t after = p;
					while (after < b.len && isspace((unsigned char)b.buf[after])) after++;
					if (!lstrip) strbuf_add(&c, b.buf + k, ws - k);
					if (!rstrip) strbuf_add(&c, b.buf + p, after - p);
					k = after;
					continue;
				}
			}
		}
		strbuf_add(&c, b.buf + k, ws - k);
		if (ws < b.len) strbuf_addch(&c, b.buf[ws]);
		k = ws + 1;
	}
	strbuf_release(&b);
	return strbuf_detach(&c, outlen);
}

static int is_word(unsigned char c) { return isalnum(c) || c == '_'; }

size_t ftk_jinja_utf8_len(const char *s, size_t n)
{
	utf8proc_int32_t cp;
	utf8proc_ssize_t k = utf8proc_iterate((const uint8_t *)s, n, &cp);
	return k > 0 ? (size_t)k : 1;
}

void ftk_jinja_lex(struct lexer *L, const char *src, size_t n)
{
	size_t i = 0;
	int line = 1;
	int in_tag = 0;		/* 0 text, 1 statement, 2 expression */
	int curly = 0;
	while (i < n) {
		if (!in_tag) {
			size_t st = i;
			while (i < n && !(src[i] == '{' && i + 1 < n && (src[i + 1] == '%' || src[i + 1] == '{' || src[i + 1] == '#'))) {
				if (src[i] == '\n') line++;
				i++;
			}
			if (i > st) lex_push(L, T_TEXT, src + st, i - st, line);
			if (i >= n) break;
			if (src[i + 1] == '#') {
				size_t p = i + 2;
				int strip_before = p < n && src[p] == '-';
				while (p + 1 < n && !(src[p] == '#' && src[p + 1] == '}')) { if (src[p] == '\n') line++; p++; }
				if (p + 1 >= n) lex_fail(L, line, "%s", "missing end of comment tag");
				int strip_after = p > i + 2 && src[p - 1] == '-';
				if (strip_before && L->n && L->v[L->n - 1].t == T_TEXT) {
					struct tok *t = &L->v[L->n - 1];
					size_t sl;
					while (t->n) {
						size_t k = t->n - 1;
						while (k > 0 && ((unsigned char)t->s[k] & 0xC0) == 0x80) k--;
						if (!ftk_jinja_js_space(t->s, t->n, k, &sl)) break;
						t->n = k;
					}
					if (!t->n) L->n--;
				}
				i = p + 2;
				if (strip_after) { size_t sl; while (i < n && ftk_jinja_js_space(src, n, i, &sl)) { if (src[i] == '\n') line++; i += sl; } }
				continue;
			}
			int is_stmt = src[i + 1] == '%';
			if (i + 2 < n && src[i + 2] == '-') {
				if (L->n && L->v[L->n - 1].t == T_TEXT) {
					struct tok *t = &L->v[L->n - 1];
					size_t sl;
					while (t->n) {
						size_t k = t->n - 1;
						while (k > 0 && ((unsigned char)t->s[k] & 0xC0) == 0x80) k--;
						if (!ftk_jinja_js_space(t->s, t->n, k, &sl)) break;
						t->n = k;
					}
					if (!t->n) L->n--;
				}
				i += 3;
			} else {
				i += 2;
			}
			lex_push(L, is_stmt ? T_OPEN_STMT : T_OPEN_EXPR, NULL, 0, line);
			in_tag = is_stmt ? 1 : 2;
			curly = 0;
			continue;
		}
		/* inside a tag */
		size_t sl;
		if (ftk_jinja_js_space(src, n, i, &sl)) { if (src[i] == '\n') line++; i += sl; continue; }
		if (src[i] == '-' && i + 2 < n && src[i + 2] == '}' && ((in_tag == 1 && src[i + 1] == '%') || (in_tag == 2 && src[i + 1] == '}'))) {
			lex_push(L, in_tag == 1 ? T_CLOSE_STMT : T_CLOSE_EXPR, NULL, 0, line);
			i += 3;
			while (i < n && ftk_jinja_js_space(src, n, i, &sl)) { if (src[i] == '\n') line++; i += sl; }
			in_tag = 0;
			continue;
		}
		if (in_tag == 1 && src[i] == '%' && i + 1 < n && src[i + 1] == '}') {
			lex_push(L, T_CLOSE_STMT, NULL, 0, line);
			i += 2;
			in_tag = 0;
			continue;
		}
		if (in_tag == 2 && curly == 0 && src[i] == '}' && i + 1 < n && src[i + 1] == '}') {
			lex_push(L, T_CLOSE_EXPR, NULL, 0, line);
			i += 2;
			in_tag = 0;
			continue;
		}
		unsigned char c = (unsigned char)src[i];
		if (c == '\'' || c == '"') {
			struct strbuf sb = STRBUF_INIT;
			i++;
			while (i < n && (unsigned char)src[i] != c) {
				if (src[i] == '\\') {
					i++;
					if (i >= n) { strbuf_release(&sb); lex_fail(L, line, "%s", "unexpected end of input"); }
					char e = src[i++];
					switch (e) {
					case 'n': strbuf_addch(&sb, '\n'); break;
					case 't': strbuf_addch(&sb, '\t'); break;
					case 'r': strbuf_addch(&sb, '\r'); break;
					case 'b': strbuf_addch(&sb, '\b'); break;
					case 'f': strbuf_addch(&sb, '\f'); break;
					case 'v': strbuf_addch(&sb, '\v'); break;
					case '\'': case '"': case '\\': strbuf_addch(&sb, e); break;
					case 'x': case 'u': {
						int len = e == 'x' ? 2 : 4;
						unsigned cp = 0;
						for (int k = 0; k < len; k++, i++) {
							if (i >= n || !isxdigit((unsigned char)src[i])) { strbuf_release(&sb); lex_fail(L, line, "%s", "invalid hexadecimal escape sequence"); }
							cp = cp * 16 + (isdigit((unsigned char)src[i]) ? src[i] - '0' : (tolower((unsigned char)src[i]) - 'a' + 10));
						}
						uint8_t buf[4];
						utf8proc_ssize_t bl = utf8proc_encode_char((utf8proc_int32_t)cp, buf);
						strbuf_add(&sb, buf, bl);
						break;
					}
					default: {
						char m[2] = { e, 0 };
						strbuf_release(&sb);
						lex_fail(L, line, "unexpected escaped character: %s", m);
					}
					}
					continue;
				}
				if (src[i] == '\n') line++;
				strbuf_addch(&sb, src[i++]);
			}
			if (i >= n) { strbuf_release(&sb); lex_fail(L, line, "%s", "unterminated string literal"); }
			i++;
			lex_push(L, T_STR, astrndup(L->ar, sb.buf, sb.len), sb.len, line);
			strbuf_release(&sb);
			continue;
		}
		if (isdigit(c)) {
			size_t st = i;
			while (i < n && isdigit((unsigned char)src[i])) i++;
			if (i + 1 < n && src[i] == '.' && isdigit((unsigned char)src[i + 1]) &&
			    !(L->n && L->v[L->n - 1].t == T_OP && L->v[L->n - 1].n == 1 && L->v[L->n - 1].s[0] == '.')) {
				i++;
				while (i < n && isdigit((unsigned char)src[i])) i++;
			}
			lex_push(L, T_NUM, src + st, i - st, line);
			continue;
		}
		if (is_word(c)) {
			size_t st = i;
			while (i < n && is_word((unsigned char)src[i])) i++;
			lex_push(L, T_NAME, src + st, i - st, line);
			continue;
		}
		static const char *const ops[] = { "**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">",
						   "(", ")", "[", "]", "{", "}", ",", ".", ":", "|", "=", NULL };
		int found = 0;
		for (int k = 0; ops[k]; k++) {
			size_t ol = strlen(ops[k]);
			if (i + ol <= n && !memcmp(src + i, ops[k], ol)) {
				if (ops[k][0] == '{') curly++;
				if (ops[k][0] == '}') curly--;
				lex_push(L, T_OP, ops[k], ol, line);
				i += ol;
				found = 1;
				break;
			}
		}
		if (!found) {
			char m[8] = { 0 };
			memcpy(m, src + i, c < 0x80 ? 1 : 1);
			lex_fail(L, line, "unexpected character '%s'", m);
		}
	}
	lex_push(L, T_END, NULL, 0, line);
}
