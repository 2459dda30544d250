/*
 * toolcall.c: the function-calling judge, with BFCL's rules.
 *
 * The Berkeley Function Calling Leaderboard's AST checker is the reference
 * for what counts as a correct call, and this judge follows its rules (as
 * published in bfcl_eval/eval_checker/ast_eval/ast_checker.py) so that a
 * score here means what a BFCL score means:
 *
 *   - the function name must be the expected one ("wrong_function");
 *   - every parameter the tool's schema requires must be present
 *     ("missing_required");
 *   - every parameter given must be declared by the tool and listed in the
 *     accepted answers ("unexpected_param");
 *   - its type must be the declared one: string, integer, float, boolean,
 *     array/tuple, dict, "any" (a string); an integer is accepted where a
 *     float is declared; list items are checked one level deep
 *     ("type_error:<type>", "type_error:nested").  When the accepted answers
 *     are of another type than the declared one (a variable name given as a
 *     string), a value of the answers' type is accepted, as BFCL does;
 *   - its value must be one of the accepted values: strings compared after
 *     BFCL's standardization (spaces and ,./-_*^ removed, lower case, ' as
 *     "), lists in order with their strings standardized, dicts key by key,
 *     lists of dicts dict by dict, anything else by equality
 *     ("value_error:string", "value_error:list", "value_error:dict_key",
 *     "value_error:dict_value", "value_error:<type>");
 *   - an accepted-answer list holding "" marks the parameter optional; a
 *     parameter whose list lacks "" must be given ("missing_optional");
 *   - the number of calls must be the expected number ("wrong_count"), and
 *     parallel calls are matched regardless of order.
 *
 * Pairing parallel calls is where this judge departs from BFCL by default.
 * BFCL pairs greedily: each expected call takes the first unmatched model
 * call that passes, which rejects valid answers when an early expected call
 * with an optional parameter takes the model call a later one needs.  Here
 * the pairing is a maximum bipartite matching over the table of which model
 * call satisfies which expected call, grown from the greedy pairing so the
 * two agree wherever greedy succeeds; "matching": "bfcl" keeps the greedy
 * verdict, and a case the two score differently is flagged
 * "order_dependent".  The judge's check op warns, before a run, about ground
 * truth no output can satisfy.
 *
 * Where this judge is more lenient than BFCL, and why: integers are accepted
 * for floats inside lists too (BFCL only converts at the top level, which
 * punishes [1, 2.5] for [1.0, 2.5]); a Python tuple is a list everywhere;
 * with "dots" (default on) a call to "math_factorial" counts as
 * "math.factorial" when no tool is called "math_factorial" (OpenAI-style
 * APIs forbid dots in names; BFCL does the same renaming for such models).
 *
 * Beyond BFCL, each call's arguments are validated against the tool's JSON
 * Schema (jsonschema.c): enums, patterns, bounds.  By default ("schema":
 * "report") a violation is reported, in "schema_valid", in the call's detail
 * and as a "schema_violation" flag, but does not decide the verdict: BFCL's
 * own accepted answers break their tools' schemas now and then (an enum of
 * "Bronze" with "bronze" accepted, a bool accepted for a string), and the
 * verdict follows BFCL.  "schema": "require" makes a violation fail the case
 * ("schema:<keyword>"); "off" skips the check.
 *
 * Metrics: "correct" (semantic, the verdict) and "schema_valid" (surface:
 * every call names a declared tool with arguments that satisfy its schema,
 * whatever their values).  It names no twin: a well-formed call with a wrong
 * value is the commonest failure, and a flag on each would bury the rest;
 * the opposite case, a BFCL-correct call that breaks the schema, is flagged
 * as "schema_violation".  Detail: {"source",
 * "calls":[{"name","arguments","matched":index|null,"kind","reason"}]}.
 *
 * The expected calls come from the case's "expected.tool_calls": BFCL's
 * ground-truth form [{"f": {"param": [accepted, ...]}}] or OpenAI's form
 * [{"type":"function","function":{"name":"f","arguments":"{...}"}}], where
 * each argument is the single accepted value and no other is allowed.
 */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <utf8proc.h>
#include "judges/jsonschema.h"
#include "judges/judges_int.h"
#include "judges/toolcall.h"
#include "lib/json.h"
#include "lib/strbuf.h"

/* ================================================================ parsing */

struct ps {
	const char *s;
	size_t i, n;
	struct ftk_call *call;	/* where float literals are registered */
	int depth;
	const char *err;
};

static void ws(struct ps *p)
{
	while (p->i < p->n) {
		char c = p->s[p->i];
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
			p->i++;
		else
			break;
	}
}

static int ident_start(char c)
{
	return isalpha((unsigned char)c) || c == '_';
}

static int ident_char(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

/* A dotted name (a.b.c, hyphens allowed inside as tool names have them). */
static char *parse_name(struct ps *p)
{
	size_t b = p->i;
	if (p->i >= p->n || !ident_start(p->s[p->i]))
		return NULL;
	for (;;) {
		while (p->i < p->n && (ident_char(p->s[p->i]) ||
				       (p->s[p->i] == '-' && p->i + 1 < p->n &&
					ident_char(p->s[p->i + 1]))))
			p->i++;
		if (p->i + 1 < p->n && p->s[p->i] == '.' && ident_start(p->s[p->i + 1])) {
			p->i++;
			continue;
		}
		break;
	}
	return xstrndup(p->s + b, p->i - b);
}

static void add_utf8(struct strbuf *sb, unsigned long cp)
{
	utf8proc_uint8_t buf[4];
	utf8proc_ssize_t k = utf8proc_encode_char((utf8proc_int32_t)cp, buf);
	if (k > 0)
		strbuf_add(sb, buf, (size_t)k);
}

static int hexval(const char *s, int n, unsigned long *v)
{
	*v = 0;
	for (int i = 0; i < n; i++) {
		int c = (unsigned char)s[i];
		if (!isxdigit(c))
			return 0;
		*v = *v * 16 + (unsigned long)(isdigit(c) ? c - '0' : tolower(c) - 'a' + 10);
	}
	return 1;
}

static cJSON *parse_string(struct ps *p)
{
	char q = p->s[p->i];
	int triple = p->i + 2 < p->n && p->s[p->i + 1] == q && p->s[p->i + 2] == q;
	p->i += triple ? 3 : 1;
	struct strbuf sb = STRBUF_INIT;
	while (p->i < p->n) {
		char c = p->s[p->i];
		if (c == q && (!triple || (p->i + 2 < p->n && p->s[p->i + 1] == q &&
					   p->s[p->i + 2] == q))) {
			p->i += triple ? 3 : 1;
			cJSON *v = cJSON_CreateString(sb.buf);
			strbuf_release(&sb);
			return v;
		}
		if (c == '\n' && !triple)
			break;
		if (c != '\\') {
			strbuf_addch(&sb, c);
			p->i++;
			continue;
		}
		if (p->i + 1 >= p->n)
			break;
		char e = p->s[p->i + 1];
		p->i += 2;
		unsigned long cp;
		switch (e) {
		case 'n': strbuf_addch(&sb, '\n'); break;
		case 't': strbuf_addch(&sb, '\t'); break;
		case 'r': strbuf_addch(&sb, '\r'); break;
		case 'b': strbuf_addch(&sb, '\b'); break;
		case 'f': strbuf_addch(&sb, '\f'); break;
		case '0': strbuf_addch(&sb, '\0'); break;
		case '\n': break;
		case 'x':
			if (p->i + 2 > p->n || !hexval(p->s + p->i, 2, &cp))
				goto bad;
			add_utf8(&sb, cp);
			p->i += 2;
			break;
		case 'u':
			if (p->i + 4 > p->n || !hexval(p->s + p->i, 4, &cp))
				goto bad;
			p->i += 4;
			if (cp >= 0xD800 && cp < 0xDC00 && p->i + 6 <= p->n && p->s[p->i] == '\\' &&
			    p->s[p->i + 1] == 'u') {
				unsigned long lo;
				if (hexval(p->s + p->i + 2, 4, &lo) && lo >= 0xDC00 && lo < 0xE000) {
					cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
					p->i += 6;
				}
			}
			add_utf8(&sb, cp);
			break;
		default:	/* \\ \' \" \/ and unknown escapes keep the character */
			strbuf_addch(&sb, e);
		}
	}
bad:
	strbuf_release(&sb);
	p->err = "unterminated or malformed string";
	return NULL;
}

static cJSON *parse_number(struct ps *p)
{
	size_t b = p->i;
	int is_float = 0;
	if (p->s[p->i] == '-' || p->s[p->i] == '+')
		p->i++;
	size_t digits = p->i;
	while (p->i < p->n && (isdigit((unsigned char)p->s[p->i]) || p->s[p->i] == '_'))
		p->i++;
	if (p->i < p->n && p->s[p->i] == '.') {
		is_float = 1;
		p->i++;
		while (p->i < p->n && isdigit((unsigned char)p->s[p->i]))
			p->i++;
	}
	if (p->i == digits || (p->i == digits + 1 && p->s[digits] == '.')) {
		p->err = "expected a number";
		return NULL;
	}
	if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
		size_t save = p->i++;
		if (p->i < p->n && (p->s[p->i] == '-' || p->s[p->i] == '+'))
			p->i++;
		if (p->i < p->n && isdigit((unsigned char)p->s[p->i])) {
			is_float = 1;
			while (p->i < p->n && isdigit((unsigned char)p->s[p->i]))
				p->i++;
		} else {
			p->i = save;
		}
	}
	char buf[64];
	size_t k = 0;
	for (size_t j = b; j < p->i && k < sizeof(buf) - 1; j++)
		if (p->s[j] != '_')
			buf[k++] = p->s[j];
	buf[k] = 0;
	cJSON *v = cJSON_CreateNumber(strtod(buf, NULL));
	if (is_float && p->call) {
		struct ftk_call *c = p->call;
		FTK_ALLOC_GROW(c->floats, c->nfloats + 1, c->floats_alloc);
		c->floats[c->nfloats++] = v;
	}
	return v;
}

static cJSON *parse_value(struct ps *p);

/* Items up to the closer; for dicts, key: value pairs. */
static cJSON *parse_seq(struct ps *p, char close, int dict)
{
	cJSON *v = dict ? cJSON_CreateObject() : cJSON_CreateArray();
	p->i++;
	for (;;) {
		ws(p);
		if (p->i < p->n && p->s[p->i] == close) {
			p->i++;
			return v;
		}
		cJSON *key = NULL;
		if (dict) {
			key = parse_value(p);
			if (!key)
				goto fail;
			if (cJSON_IsNumber(key) || cJSON_IsBool(key)) {
				char *t = cJSON_PrintUnformatted(key);
				cJSON_Delete(key);
				key = cJSON_CreateString(t);
				free(t);
			}
			if (!cJSON_IsString(key)) {
				cJSON_Delete(key);
				p->err = "a dict key must be a string";
				goto fail;
			}
			ws(p);
			if (p->i >= p->n || p->s[p->i] != ':') {
				cJSON_Delete(key);
				p->err = "expected ':' in a dict";
				goto fail;
			}
			p->i++;
		}
		cJSON *item = parse_value(p);
		if (!item) {
			cJSON_Delete(key);
			goto fail;
		}
		if (dict) {
			cJSON_DeleteItemFromObjectCaseSensitive(v, key->valuestring);
			cJSON_AddItemToObject(v, key->valuestring, item);
			cJSON_Delete(key);
		} else {
			cJSON_AddItemToArray(v, item);
		}
		ws(p);
		if (p->i < p->n && p->s[p->i] == ',') {
			p->i++;
			continue;
		}
		if (p->i < p->n && p->s[p->i] == close) {
			p->i++;
			return v;
		}
		p->err = "expected ',' or a closing bracket";
		goto fail;
	}
fail:
	cJSON_Delete(v);
	return NULL;
}

static cJSON *parse_value(struct ps *p)
{
	ws(p);
	if (p->i >= p->n) {
		p->err = "unexpected end of input";
		return NULL;
	}
	if (++p->depth > 200) {
		p->err = "nested too deeply";
		return NULL;
	}
	cJSON *v = NULL;
	char c = p->s[p->i];
	if (c == '"' || c == '\'')
		v = parse_string(p);
	else if (c == '[')
		v = parse_seq(p, ']', 0);
	else if (c == '(')
		v = parse_seq(p, ')', 0);	/* a tuple is a list */
	else if (c == '{')
		v = parse_seq(p, '}', 1);
	else if (isdigit((unsigned char)c) || ((c == '-' || c == '+' || c == '.') && p->i + 1 < p->n &&
					       (isdigit((unsigned char)p->s[p->i + 1]) ||
						p->s[p->i + 1] == '.')))
		v = parse_number(p);
	else if (ident_start(c)) {
		size_t save = p->i;
		char *name = parse_name(p);
		if (!strcmp(name, "True") || !strcmp(name, "true"))
			v = cJSON_CreateTrue();
		else if (!strcmp(name, "False") || !strcmp(name, "false"))
			v = cJSON_CreateFalse();
		else if (!strcmp(name, "None") || !strcmp(name, "null"))
			v = cJSON_CreateNull();
		else if ((name[0] == 'r' || name[0] == 'u' || name[0] == 'b') && !name[1] &&
			 p->i < p->n && (p->s[p->i] == '"' || p->s[p->i] == '\''))
			v = parse_string(p);	/* r"..", u"..", b".." */
		else if (p->i < p->n && p->s[p->i] == '(') {
			p->i = save;
			p->err = "a nested call is not a value";
		} else
			v = cJSON_CreateString(name);	/* a variable name, as BFCL keeps it */
		free(name);
	} else {
		p->err = "unexpected character";
	}
	p->depth--;
	return v;
}

static void call_free(struct ftk_call *c)
{
	free(c->name);
	cJSON_Delete(c->args);
	free(c->floats);
}

void ftk_calls_release(struct ftk_calls *calls)
{
	for (size_t i = 0; i < calls->n; i++)
		call_free(&calls->v[i]);
	free(calls->v);
	memset(calls, 0, sizeof(*calls));
}

static struct ftk_call *new_call(struct ftk_calls *calls)
{
	FTK_ALLOC_GROW(calls->v, calls->n + 1, calls->alloc);
	struct ftk_call *c = &calls->v[calls->n++];
	memset(c, 0, sizeof(*c));
	return c;
}

/* One call at p->i: name(args).  0 or -1 (p->err set, nothing appended). */
static int parse_call(struct ps *p, struct ftk_calls *calls)
{
	size_t start = p->i;
	char *name = parse_name(p);
	if (!name) {
		p->err = "expected a function name";
		return -1;
	}
	if (p->i >= p->n || p->s[p->i] != '(') {
		free(name);
		p->i = start;
		p->err = "expected '(' after the function name";
		return -1;
	}
	p->i++;
	struct ftk_call *c = new_call(calls);
	c->name = name;
	c->args = cJSON_CreateObject();
	p->call = c;
	for (;;) {
		ws(p);
		if (p->i < p->n && p->s[p->i] == ')') {
			p->i++;
			p->call = NULL;
			return 0;
		}
		size_t save = p->i;
		char *key = NULL;
		if (ident_start(p->s[p->i])) {
			key = parse_name(p);
			ws(p);
			if (p->i < p->n && p->s[p->i] == '=' && !(p->i + 1 < p->n && p->s[p->i + 1] == '=')) {
				p->i++;
			} else {
				free(key);
				key = NULL;
				p->i = save;
			}
		}
		cJSON *v = parse_value(p);
		if (!v) {
			free(key);
			goto fail;
		}
		if (!key) {
			char k[32];
			snprintf(k, sizeof(k), "#%d", c->positional++);
			key = xstrdup(k);
		}
		cJSON_DeleteItemFromObjectCaseSensitive(c->args, key);
		cJSON_AddItemToObject(c->args, key, v);
		free(key);
		ws(p);
		if (p->i < p->n && p->s[p->i] == ',') {
			p->i++;
			continue;
		}
		if (p->i < p->n && p->s[p->i] == ')')
			continue;
		p->err = "expected ',' or ')' in the arguments";
		goto fail;
	}
fail:
	p->call = NULL;
	call_free(c);
	calls->n--;
	p->i = start;
	return -1;
}

int ftk_calls_parse_python(const char *s, struct ftk_calls *calls, struct ftk_error *err)
{
	struct ps p = { s, 0, strlen(s), NULL, 0, NULL };
	size_t first = calls->n;
	ws(&p);
	int bracket = p.i < p.n && p.s[p.i] == '[';
	if (bracket)
		p.i++;
	for (;;) {
		ws(&p);
		if (p.i >= p.n || (bracket && p.s[p.i] == ']'))
			break;
		if (parse_call(&p, calls) < 0)
			goto fail;
		ws(&p);
		if (p.i < p.n && (p.s[p.i] == ',' || p.s[p.i] == ';'))
			p.i++;
	}
	if (bracket) {
		if (p.i >= p.n || p.s[p.i] != ']') {
			p.err = "expected ']'";
			goto fail;
		}
		p.i++;
		ws(&p);
	}
	if (p.i < p.n) {
		p.err = "trailing text after the calls";
		goto fail;
	}
	if (calls->n == first) {
		p.err = "no call";
		goto fail;
	}
	return 0;
fail:
	while (calls->n > first)
		call_free(&calls->v[--calls->n]);
	if (err) {
		ftk_error_msg(err, FTK_EDATA, "not Python call syntax: %s", p.err ? p.err : "?");
		err->offset = (long)p.i;
	}
	return FTK_EDATA;
}

/* -------------------------------------------------------- JSON in the text */

/* Arguments given as a JSON string or an object; floats tracked for strings. */
static int set_args(struct ftk_call *c, const cJSON *a)
{
	if (cJSON_IsString(a)) {
		struct ps p = { a->valuestring, 0, strlen(a->valuestring), c, 0, NULL };
		ws(&p);
		if (p.i == p.n) {
			c->args = cJSON_CreateObject();
			return 0;
		}
		cJSON *v = parse_value(&p);
		ws(&p);
		if (!v || p.i != p.n || !cJSON_IsObject(v)) {
			cJSON_Delete(v);
			c->nfloats = 0;
			return -1;
		}
		c->args = v;
		return 0;
	}
	if (cJSON_IsObject(a)) {
		c->args = cJSON_Duplicate(a, 1);
		return 0;
	}
	if (!a || cJSON_IsNull(a)) {
		c->args = cJSON_CreateObject();
		return 0;
	}
	return -1;
}

/* A copy of src whose float-literal nodes (known to from) are known to to. */
static cJSON *dup_floats(const cJSON *src, const struct ftk_call *from, struct ftk_call *to)
{
	cJSON *d;
	if (cJSON_IsArray(src) || cJSON_IsObject(src)) {
		d = cJSON_IsArray(src) ? cJSON_CreateArray() : cJSON_CreateObject();
		const cJSON *e;
		cJSON_ArrayForEach(e, src) {
			cJSON *c = dup_floats(e, from, to);
			if (cJSON_IsObject(src))
				cJSON_AddItemToObject(d, e->string, c);
			else
				cJSON_AddItemToArray(d, c);
		}
		return d;
	}
	d = cJSON_Duplicate(src, 0);
	if (cJSON_IsNumber(src) && from) {
		for (size_t i = 0; i < from->nfloats; i++)
			if (from->floats[i] == src) {
				FTK_ALLOC_GROW(to->floats, to->nfloats + 1, to->floats_alloc);
				to->floats[to->nfloats++] = d;
				break;
			}
	}
	return d;
}

/*
 * Read calls out of one parsed JSON value; returns how many were added.
 * seen knows which numbers of v were written as floats.
 */
static size_t calls_from_json(const cJSON *v, const struct ftk_call *seen,
			      const char *const *names, size_t ntools, struct ftk_calls *calls)
{
	size_t added = 0;
	if (cJSON_IsArray(v)) {
		const cJSON *e;
		cJSON_ArrayForEach(e, v) {
			size_t k = calls_from_json(e, seen, names, ntools, calls);
			if (!k) {	/* all or nothing: a list with a non-call is not calls */
				while (added--)
					call_free(&calls->v[--calls->n]);
				return 0;
			}
			added += k;
		}
		return added;
	}
	if (!cJSON_IsObject(v))
		return 0;
	const cJSON *tc = cJSON_GetObjectItemCaseSensitive(v, "tool_calls");
	if (cJSON_IsArray(tc))
		return calls_from_json(tc, seen, names, ntools, calls);
	const cJSON *fn = cJSON_GetObjectItemCaseSensitive(v, "function");
	if (cJSON_IsObject(fn))
		v = fn;
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(v, "name");
	const cJSON *args = cJSON_GetObjectItemCaseSensitive(v, "arguments");
	if (!args)
		args = cJSON_GetObjectItemCaseSensitive(v, "parameters");
	if (cJSON_IsString(name)) {
		struct ftk_call *c = new_call(calls);
		c->name = xstrdup(name->valuestring);
		if (cJSON_IsObject(args)) {
			c->args = dup_floats(args, seen, c);
			return 1;
		}
		if (set_args(c, args) < 0) {
			call_free(c);
			calls->n--;
			return 0;
		}
		return 1;
	}
	/* {"tool_name": {args}} with a declared tool name */
	if (v->child && !v->child->next && cJSON_IsObject(v->child)) {
		for (size_t i = 0; i < ntools; i++)
			if (!strcmp(names[i], v->child->string)) {
				struct ftk_call *c = new_call(calls);
				c->name = xstrdup(v->child->string);
				c->args = dup_floats(v->child, seen, c);
				return 1;
			}
	}
	return 0;
}

/* Scan text for JSON values that hold calls (fences, <tool_call> tags, prose). */
static void json_calls(const char *text, const char *const *names, size_t ntools,
		       struct ftk_calls *calls)
{
	size_t n = strlen(text);
	for (size_t i = 0; i < n; i++) {
		if (text[i] != '{' && text[i] != '[')
			continue;
		struct ftk_call seen = { 0 };
		struct ps p = { text, i, n, &seen, 0, NULL };
		cJSON *v = parse_value(&p);
		if (v && calls_from_json(v, &seen, names, ntools, calls))
			i = p.i - 1;
		cJSON_Delete(v);
		free(seen.floats);
	}
}

/* Python calls to declared names anywhere in prose. */
static void python_calls_in_prose(const char *text, const char *const *names, size_t ntools,
				  struct ftk_calls *calls)
{
	size_t n = strlen(text);
	for (size_t i = 0; i < n; i++) {
		if (!ident_start(text[i]) || (i > 0 && (ident_char(text[i - 1]) || text[i - 1] == '.')))
			continue;
		struct ps p = { text, i, n, NULL, 0, NULL };
		char *name = parse_name(&p);
		int known = ntools == 0;
		for (size_t t = 0; !known && t < ntools; t++)
			known = !strcmp(names[t], name);
		free(name);
		if (!known || p.i >= n || text[p.i] != '(') {
			i = p.i > i ? p.i - 1 : i;
			continue;
		}
		p.i = i;
		if (parse_call(&p, calls) == 0)
			i = p.i - 1;
	}
}

/* The body of the first ``` fence, or NULL. */
static char *fence_body(const char *t)
{
	const char *f = strstr(t, "```");
	if (!f)
		return NULL;
	const char *b = strchr(f + 3, '\n');
	const char *e = b ? strstr(b, "```") : NULL;
	return e ? xstrndup(b + 1, (size_t)(e - b - 1)) : NULL;
}

static void malformed(struct ftk_calls *calls, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void malformed(struct ftk_calls *calls, const char *fmt, ...)
{
	if (!calls->malformed++) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(calls->malformed_reason, sizeof(calls->malformed_reason), fmt, ap);
		va_end(ap);
	}
}

static const char *json_type(const cJSON *v)
{
	return !v ? "missing" : cJSON_IsNull(v) ? "null" : cJSON_IsString(v) ? "a string"
	       : cJSON_IsNumber(v) ? "a number" : cJSON_IsBool(v) ? "a boolean"
	       : cJSON_IsArray(v) ? "a list" : "an object";
}

int ftk_calls_extract(const struct ftk_judge_output *out, const char *const *tool_names,
		      size_t ntools, struct ftk_calls *calls, struct ftk_error *err)
{
	(void)err;
	memset(calls, 0, sizeof(*calls));
	calls->source = "none";
	const cJSON *tc = out ? out->tool_calls : NULL;
	if (tc && !cJSON_IsNull(tc) && !cJSON_IsArray(tc)) {
		malformed(calls, "tool_calls is %s, not a list", json_type(tc));
		calls->source = "tool_calls";
		return 0;
	}
	if (cJSON_IsArray(tc) && cJSON_GetArraySize(tc) > 0) {
		int i = 0;
		const cJSON *e;
		cJSON_ArrayForEach(e, tc) {
			const cJSON *fn = cJSON_GetObjectItemCaseSensitive(e, "function");
			const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
			if (!cJSON_IsObject(e)) {
				malformed(calls, "tool_calls[%d] is %s, not an object", i, json_type(e));
			} else if (!cJSON_IsObject(fn)) {
				malformed(calls, "tool_calls[%d].function is %s, not an object", i,
					  json_type(fn));
			} else if (!cJSON_IsString(name) || !*name->valuestring) {
				malformed(calls, "tool_calls[%d].function.name is %s, not a function name", i,
					  cJSON_IsString(name) ? "empty" : json_type(name));
			} else {
				struct ftk_call *c = new_call(calls);
				c->name = xstrdup(name->valuestring);
				const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
				if (set_args(c, args) < 0) {
					/* kept, so the detail shows it, with no arguments */
					c->args = cJSON_CreateObject();
					c->positional = -1;
					malformed(calls, "tool_calls[%d].function.arguments of '%s' %s", i,
						  c->name, cJSON_IsString(args) ? "is not a JSON object"
										: "is not an object");
				}
			}
			i++;
		}
		calls->source = "tool_calls";
		return 0;
	}
	const char *text = jtext_answer(out);
	char *fb = fence_body(text);
	const char *body = fb ? fb : text;
	if (ftk_calls_parse_python(body, calls, NULL) == 0) {
		calls->source = "python";
		free(fb);
		return 0;
	}
	free(fb);
	json_calls(text, tool_names, ntools, calls);
	if (calls->n) {
		calls->source = "json";
		return 0;
	}
	python_calls_in_prose(text, tool_names, ntools, calls);
	if (calls->n)
		calls->source = "python";
	return 0;
}

/* ============================================================== checking */

enum vt { VT_STR, VT_INT, VT_FLOAT, VT_BOOL, VT_LIST, VT_DICT, VT_NULL, VT_NONE };

static const char *vt_name(enum vt t)
{
	static const char *const n[] = { "string", "integer", "float", "boolean",
					 "array", "dict", "null", "none" };
	return n[t];
}

static int is_float_node(const struct ftk_call *c, const cJSON *v)
{
	for (size_t i = 0; c && i < c->nfloats; i++)
		if (c->floats[i] == v)
			return 1;
	return 0;
}

/* A value's type; c (may be NULL) knows which numbers were written as floats. */
static enum vt vtype(const cJSON *v, const struct ftk_call *c)
{
	if (cJSON_IsString(v))
		return VT_STR;
	if (cJSON_IsBool(v))
		return VT_BOOL;
	if (cJSON_IsNumber(v)) {
		double d = v->valuedouble;
		if (is_float_node(c, v) || !isfinite(d) || d != floor(d) || fabs(d) > 9.2e18)
			return VT_FLOAT;
		return VT_INT;
	}
	if (cJSON_IsArray(v))
		return VT_LIST;
	if (cJSON_IsObject(v))
		return VT_DICT;
	if (cJSON_IsNull(v))
		return VT_NULL;
	return VT_NONE;
}

/* BFCL's declared type names, plus JSON Schema's. VT_NONE: not checked. */
static enum vt declared(const char *t)
{
	if (!t)
		return VT_NONE;
	if (!strcmp(t, "string") || !strcmp(t, "any"))
		return VT_STR;
	if (!strcmp(t, "integer"))
		return VT_INT;
	if (!strcmp(t, "float") || !strcmp(t, "number"))
		return VT_FLOAT;
	if (!strcmp(t, "boolean"))
		return VT_BOOL;
	if (!strcmp(t, "array") || !strcmp(t, "tuple"))
		return VT_LIST;
	if (!strcmp(t, "dict") || !strcmp(t, "object"))
		return VT_DICT;
	return VT_NONE;
}

static int is_empty_marker(const cJSON *a)
{
	return cJSON_IsString(a) && a->valuestring[0] == 0;
}

/* Python's == over JSON values (True == 1, 1 == 1.0). */
static int py_eq(const cJSON *a, const cJSON *b)
{
	int an = cJSON_IsNumber(a) || cJSON_IsBool(a), bn = cJSON_IsNumber(b) || cJSON_IsBool(b);
	if (an && bn) {
		double x = cJSON_IsBool(a) ? cJSON_IsTrue(a) : a->valuedouble;
		double y = cJSON_IsBool(b) ? cJSON_IsTrue(b) : b->valuedouble;
		return x == y;
	}
	if (cJSON_IsString(a) && cJSON_IsString(b))
		return !strcmp(a->valuestring, b->valuestring);
	if (cJSON_IsNull(a) && cJSON_IsNull(b))
		return 1;
	if (cJSON_IsArray(a) && cJSON_IsArray(b)) {
		const cJSON *x = a->child, *y = b->child;
		for (; x && y; x = x->next, y = y->next)
			if (!py_eq(x, y))
				return 0;
		return !x && !y;
	}
	if (cJSON_IsObject(a) && cJSON_IsObject(b)) {
		if (cJSON_GetArraySize(a) != cJSON_GetArraySize(b))
			return 0;
		const cJSON *x;
		cJSON_ArrayForEach(x, a) {
			const cJSON *y = cJSON_GetObjectItemCaseSensitive(b, x->string);
			if (!y || !py_eq(x, y))
				return 0;
		}
		return 1;
	}
	return 0;
}

/* BFCL's standardize_string: drop " ,./-_*^", lower-case, ' -> ". */
static char *standardize(const char *s)
{
	struct strbuf sb = STRBUF_INIT;
	const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
	while (*p) {
		utf8proc_int32_t c;
		utf8proc_ssize_t k = utf8proc_iterate(p, -1, &c);
		if (k <= 0) {
			strbuf_addch(&sb, (char)*p++);
			continue;
		}
		p += k;
		if (c < 128 && strchr(" ,./-_*^", (int)c))
			continue;
		if (c == '\'')
			c = '"';
		add_utf8(&sb, (unsigned long)utf8proc_tolower(c));
	}
	return strbuf_detach(&sb, NULL);
}

/* A copy of v whose top-level strings (or v itself) are standardized. */
static cJSON *std_copy(const cJSON *v)
{
	if (cJSON_IsString(v)) {
		char *s = standardize(v->valuestring);
		cJSON *r = cJSON_CreateString(s);
		free(s);
		return r;
	}
	if (cJSON_IsArray(v)) {
		cJSON *r = cJSON_CreateArray();
		const cJSON *e;
		cJSON_ArrayForEach(e, v) cJSON_AddItemToArray(r, cJSON_IsString(e) ? std_copy(e)
									    : cJSON_Duplicate(e, 1));
		return r;
	}
	return cJSON_Duplicate(v, 1);
}

struct verdict {
	char kind[64];
	char reason[384];
};

static int bad(struct verdict *vd, const char *kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int bad(struct verdict *vd, const char *kind, const char *fmt, ...)
{
	snprintf(vd->kind, sizeof(vd->kind), "%s", kind);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(vd->reason, sizeof(vd->reason), fmt, ap);
	va_end(ap);
	return 0;
}

/* The type of the first accepted answer that is not "". */
static enum vt answers_type(const cJSON *answers)
{
	const cJSON *a;
	cJSON_ArrayForEach(a, answers) if (!is_empty_marker(a)) return vtype(a, NULL);
	return VT_NONE;
}

/*
 * BFCL's type_checker.  Returns 1 when the type is acceptable; *is_var says
 * the value was taken as a variable (answers of another type than declared).
 */
static int type_ok(const cJSON *v, const struct ftk_call *c, const cJSON *answers, enum vt want,
		   enum vt nested, int *is_var)
{
	enum vt have = vtype(v, c);
	enum vt at = answers_type(answers);
	*is_var = at != VT_NONE && at != want && !(at == VT_INT && want == VT_FLOAT);
	if (want == VT_FLOAT && have == VT_INT)
		have = VT_FLOAT;
	if (have == want) {
		if (nested == VT_NONE)
			return 1;
		const cJSON *pa;
		cJSON_ArrayForEach(pa, answers) {
			int flag = 1;
			if (cJSON_IsArray(pa)) {
				const cJSON *item;
				cJSON_ArrayForEach(item, v) {
					int iv;
					if (!type_ok(item, c, pa, nested, VT_NONE, &iv)) {
						flag = 0;
						break;
					}
				}
			}
			if (flag)
				return 1;
		}
		return 0;
	}
	if (at != VT_NONE && have == at) {
		*is_var = 1;
		return 1;
	}
	return 0;
}

/* BFCL's dict_checker over one or more accepted dicts. */
static int dict_ok(const cJSON *v, const cJSON *answers, struct verdict *vd)
{
	const cJSON *pa;
	int tried = 0;
	cJSON_ArrayForEach(pa, answers) {
		if (is_empty_marker(pa) || !cJSON_IsObject(pa))
			continue;
		tried++;
		int flag = 1;
		const cJSON *e;
		cJSON_ArrayForEach(e, v) {
			const cJSON *acc = cJSON_GetObjectItemCaseSensitive(pa, e->string);
			if (!acc) {
				bad(vd, "value_error:dict_key", "unexpected dict key '%s'", e->string);
				flag = 0;
				break;
			}
			cJSON *sv = cJSON_IsString(e) ? std_copy(e) : cJSON_Duplicate(e, 1);
			int found = 0;
			const cJSON *a;
			cJSON_ArrayForEach(a, acc) {
				cJSON *sa = cJSON_IsString(a) ? std_copy(a) : cJSON_Duplicate(a, 1);
				found |= py_eq(sv, sa);
				cJSON_Delete(sa);
			}
			cJSON_Delete(sv);
			if (!found) {
				bad(vd, "value_error:dict_value", "dict key '%s' has a value not accepted",
				    e->string);
				flag = 0;
				break;
			}
		}
		if (flag) {
			cJSON_ArrayForEach(e, pa) {
				int opt = 0;
				const cJSON *a;
				cJSON_ArrayForEach(a, e) opt |= is_empty_marker(a);
				if (!cJSON_GetObjectItemCaseSensitive(v, e->string) && !opt) {
					bad(vd, "value_error:dict_key", "dict key '%s' is missing", e->string);
					flag = 0;
					break;
				}
			}
		}
		if (flag)
			return 1;
	}
	if (!tried)
		bad(vd, "value_error:dict_value", "no accepted dict to compare with");
	return 0;
}

/* BFCL's list_dict_checker. */
static int list_dict_ok(const cJSON *v, const cJSON *answers, struct verdict *vd)
{
	const cJSON *pa;
	bad(vd, "value_error:list_dict_count", "no accepted list of dicts");
	cJSON_ArrayForEach(pa, answers) {
		if (!cJSON_IsArray(pa))
			continue;
		if (cJSON_GetArraySize(pa) != cJSON_GetArraySize(v)) {
			bad(vd, "value_error:list_dict_count", "%d dicts, expected %d",
			    cJSON_GetArraySize(v), cJSON_GetArraySize(pa));
			continue;
		}
		int flag = 1;
		const cJSON *x = v->child, *y = pa->child;
		for (; x && y; x = x->next, y = y->next) {
			cJSON *one = cJSON_CreateArray();
			cJSON_AddItemToArray(one, cJSON_Duplicate(y, 1));
			int ok = cJSON_IsObject(x) && dict_ok(x, one, vd);
			cJSON_Delete(one);
			if (!ok) {
				flag = 0;
				break;
			}
		}
		if (flag)
			return 1;
	}
	return 0;
}

/* BFCL's list_checker: strings standardized, order kept; "" becomes []. */
static int list_ok(const cJSON *v, const cJSON *answers)
{
	cJSON *sv = std_copy(v);
	int found = 0;
	const cJSON *pa;
	cJSON_ArrayForEach(pa, answers) {
		cJSON *sa = is_empty_marker(pa) ? cJSON_CreateArray()
						: cJSON_IsArray(pa) ? std_copy(pa) : NULL;
		if (sa)
			found |= py_eq(sv, sa);
		cJSON_Delete(sa);
	}
	cJSON_Delete(sv);
	return found;
}

static int string_ok(const char *s, const cJSON *answers)
{
	char *sv = standardize(s);
	int found = 0;
	const cJSON *a;
	cJSON_ArrayForEach(a, answers) {
		if (!cJSON_IsString(a))
			continue;
		char *sa = standardize(a->valuestring);
		found |= !strcmp(sv, sa);
		free(sa);
	}
	free(sv);
	return found;
}

static const char *prop_type(const cJSON *prop)
{
	return ftk_json_get_str(prop, "type");
}

struct tool {
	const char *name;
	const cJSON *params;	/* the "parameters" schema, or NULL */
};

static int names_match(const char *want, const char *got, int dots, const struct tool *tools,
		       size_t ntools)
{
	if (!strcmp(want, got))
		return 1;
	if (!dots || !strchr(want, '.'))
		return 0;
	for (size_t i = 0; i < ntools; i++)
		if (!strcmp(tools[i].name, got))
			return 0;	/* a real tool has that name */
	size_t n = strlen(want);
	if (strlen(got) != n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (want[i] != got[i] && !(want[i] == '.' && got[i] == '_'))
			return 0;
	return 1;
}

/* BFCL's simple_function_checker.  exp: {"name": {"param": [accepted...]}}. */
static int check_call(const struct ftk_call *c, const char *want, const cJSON *answers,
		      const struct tool *tool, int dots, const struct tool *tools, size_t ntools,
		      struct verdict *vd)
{
	if (!names_match(want, c->name, dots, tools, ntools))
		return bad(vd, "wrong_function", "called '%s', expected '%s'", c->name, want);
	if (c->positional < 0)
		return bad(vd, "malformed_call", "the arguments of '%s' are not a JSON object", c->name);
	if (c->positional > 0)
		return bad(vd, "positional_arg", "'%s' was given %d positional argument(s); parameters must be named",
			   c->name, c->positional);
	const cJSON *props = tool ? cJSON_GetObjectItemCaseSensitive(tool->params, "properties") : NULL;
	const cJSON *req = tool ? cJSON_GetObjectItemCaseSensitive(tool->params, "required") : NULL;
	const cJSON *r;
	cJSON_ArrayForEach(r, req) {
		if (cJSON_IsString(r) && !cJSON_GetObjectItemCaseSensitive(c->args, r->valuestring))
			return bad(vd, "missing_required", "required parameter '%s' is missing",
				   r->valuestring);
	}
	const cJSON *a;
	cJSON_ArrayForEach(a, c->args) {
		const cJSON *prop = props ? cJSON_GetObjectItemCaseSensitive(props, a->string) : NULL;
		const cJSON *acc = cJSON_GetObjectItemCaseSensitive(answers, a->string);
		if ((tool && !prop) || !acc)
			return bad(vd, "unexpected_param", "parameter '%s' is not expected", a->string);
		const char *tname = prop_type(prop);
		enum vt want_t = declared(tname);
		enum vt nested = VT_NONE;
		if (want_t == VT_LIST) {
			const cJSON *items = cJSON_GetObjectItemCaseSensitive(prop, "items");
			nested = declared(prop_type(items));
		}
		int is_var = 0;
		if (want_t == VT_NONE) {
			/* no declared type (no tool, or a schema without "type"): compare
			   as the accepted answers' type, without a type check */
			enum vt at = answers_type(acc);
			if ((at == VT_STR && cJSON_IsString(a)) || (at == VT_LIST && cJSON_IsArray(a)) ||
			    (at == VT_DICT && cJSON_IsObject(a))) {
				int ok = at == VT_STR ? string_ok(a->valuestring, acc)
					 : at == VT_LIST ? list_ok(a, acc) : dict_ok(a, acc, vd);
				if (!ok && at != VT_DICT)
					return bad(vd, at == VT_STR ? "value_error:string" : "value_error:list",
						   "parameter '%s' is not an accepted value", a->string);
				if (!ok)
					return 0;
				continue;
			}
		}
		if (want_t != VT_NONE && !type_ok(a, c, acc, want_t, nested, &is_var)) {
			char kind[64];
			if (vtype(a, c) == want_t || (want_t == VT_FLOAT && vtype(a, c) == VT_INT))
				snprintf(kind, sizeof(kind), "type_error:nested");
			else
				snprintf(kind, sizeof(kind), "type_error:%s", tname);
			return bad(vd, kind, "parameter '%s' should be %s, got %s", a->string, tname,
				   vt_name(vtype(a, c)));
		}
		if (!is_var && want_t != VT_NONE) {
			if (want_t == VT_DICT) {
				if (!dict_ok(a, acc, vd))
					return 0;
				continue;
			}
			if (want_t == VT_LIST && nested == VT_DICT) {
				if (!list_dict_ok(a, acc, vd))
					return 0;
				continue;
			}
			if (want_t == VT_STR) {
				if (!string_ok(a->valuestring, acc))
					return bad(vd, "value_error:string",
						   "parameter '%s' is '%.80s', not an accepted value",
						   a->string, a->valuestring);
				continue;
			}
			if (want_t == VT_LIST) {
				if (!list_ok(a, acc))
					return bad(vd, "value_error:list",
						   "parameter '%s' is not an accepted list", a->string);
				continue;
			}
		}
		int found = 0;
		const cJSON *x;
		cJSON_ArrayForEach(x, acc) found |= py_eq(a, x);
		if (!found) {
			char *s = cJSON_PrintUnformatted(a);
			char kind[64];
			snprintf(kind, sizeof(kind), "value_error:%s",
				 tname ? tname : vt_name(vtype(a, c)));
			bad(vd, kind, "parameter '%s' is %.80s, not an accepted value", a->string, s);
			free(s);
			return 0;
		}
	}
	cJSON_ArrayForEach(a, answers) {
		int opt = 0;
		const cJSON *x;
		cJSON_ArrayForEach(x, a) opt |= is_empty_marker(x);
		if (!opt && !cJSON_GetObjectItemCaseSensitive(c->args, a->string))
			return bad(vd, "missing_optional",
				   "parameter '%s' is not required by the tool but the expected call has it",
				   a->string);
	}
	return 1;
}

/* ================================================================= judge */

enum { SCHEMA_OFF, SCHEMA_REPORT, SCHEMA_REQUIRE };
enum { MATCH_MAX, MATCH_BFCL };

struct tc {
	int strict_order;
	int schema;		/* SCHEMA_* */
	int dots;
	int matching;		/* MATCH_*: how parallel calls are paired */
};

static int create(void **state, const cJSON *s, const struct ftk_judge_env *env,
		  struct ftk_error *err)
{
	static const char *const known[] = { "order", "schema", "dots", "matching", NULL };
	const char *order, *schema, *matching;
	struct tc t;
	int rc;
	if ((rc = jset_known(s, known, err)) < 0 ||
	    (rc = jset_str(s, "order", "any", &order, err)) < 0 ||
	    (rc = jset_str(s, "schema", "report", &schema, err)) < 0 ||
	    (rc = jset_bool(s, "dots", 1, &t.dots, err)) < 0 ||
	    (rc = jset_str(s, "matching", "max", &matching, err)) < 0)
		return rc;
	if (!strcmp(matching, "max"))
		t.matching = MATCH_MAX;
	else if (!strcmp(matching, "bfcl"))
		t.matching = MATCH_BFCL;
	else
		return ftk_error_set(err, FTK_EDATA, NULL, 0, "settings.matching",
				     "'matching' must be \"max\" or \"bfcl\", not '%s'", matching);
	if (!strcmp(schema, "off"))
		t.schema = SCHEMA_OFF;
	else if (!strcmp(schema, "report"))
		t.schema = SCHEMA_REPORT;
	else if (!strcmp(schema, "require"))
		t.schema = SCHEMA_REQUIRE;
	else
		return ftk_error_set(err, FTK_EDATA, NULL, 0, "settings.schema",
				     "'schema' must be \"report\", \"require\" or \"off\", not '%s'",
				     schema);
	if (strcmp(order, "any") && strcmp(order, "strict"))
		return ftk_error_set(err, FTK_EDATA, NULL, 0, "settings.order",
				     "'order' must be \"any\" or \"strict\", not '%s'", order);
	t.strict_order = !strcmp(order, "strict");
	struct tc *p = xmalloc(sizeof(*p));
	*p = t;
	*state = p;
	return 0;
}

static void destroy(void *state)
{
	free(state);
}

/* The case's tools as (name, parameters); BFCL's and OpenAI's forms. */
static int read_tools(const cJSON *kase, struct tool **out, size_t *n, struct ftk_error *err)
{
	const cJSON *tools = cJSON_GetObjectItemCaseSensitive(kase, "tools");
	if (!tools)
		tools = cJSON_GetObjectItemCaseSensitive(kase, "function");	/* BFCL's name */
	*out = NULL;
	*n = 0;
	if (!tools)
		return 0;
	if (!cJSON_IsArray(tools))
		return ftk_error_set(err, FTK_EDATA, NULL, 0, "tools", "case '%s': 'tools' must be a list",
				     jcase_id(kase));
	int i = 0;
	const cJSON *t;
	*out = xcalloc((size_t)cJSON_GetArraySize(tools) + 1, sizeof(**out));
	cJSON_ArrayForEach(t, tools) {
		/* the OpenAI form wraps the function; the loop variable must stay the list item */
		const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
		const cJSON *def = cJSON_IsObject(fn) ? fn : t;
		const char *name = ftk_json_get_str(def, "name");
		if (!name) {
			char f[64];
			snprintf(f, sizeof(f), "tools[%d].name", i);
			free(*out);
			*out = NULL;
			return ftk_error_set(err, FTK_EDATA, NULL, 0, f,
					     "case '%s': a tool needs a name", jcase_id(kase));
		}
		(*out)[*n].name = name;
		(*out)[*n].params = cJSON_GetObjectItemCaseSensitive(def, "parameters");
		(*n)++;
		i++;
	}
	return 0;
}

/*
 * The expected calls as BFCL ground truth: an array of {"name": {"p": [..]}}
 * (caller frees).  OpenAI-form entries become single accepted values.
 */
static int read_expected(const cJSON *kase, cJSON **out, struct ftk_error *err)
{
	const cJSON *exp = cJSON_GetObjectItemCaseSensitive(kase, "expected");
	const cJSON *tc = cJSON_GetObjectItemCaseSensitive(exp, "tool_calls");
	*out = NULL;
	if (!cJSON_IsArray(tc))
		return ftk_error_set(err, FTK_EDATA, NULL, 0, "expected.tool_calls",
				     "case '%s': the toolcall judge needs 'expected.tool_calls' (a list)",
				     jcase_id(kase));
	cJSON *gt = cJSON_CreateArray();
	int i = 0;
	const cJSON *e;
	cJSON_ArrayForEach(e, tc) {
		char f[64];
		snprintf(f, sizeof(f), "expected.tool_calls[%d]", i++);
		const cJSON *fn = cJSON_GetObjectItemCaseSensitive(e, "function");
		const cJSON *src = cJSON_IsObject(fn) ? fn : e;
		const char *name = ftk_json_get_str(src, "name");
		if (name) {
			struct ftk_call tmp = { 0 };
			if (set_args(&tmp, cJSON_GetObjectItemCaseSensitive(src, "arguments")) < 0) {
				cJSON_Delete(gt);
				free(tmp.floats);
				return ftk_error_set(err, FTK_EDATA, NULL, 0, f,
						     "case '%s': the expected arguments are not a JSON object",
						     jcase_id(kase));
			}
			cJSON *call = cJSON_CreateObject();
			cJSON *params = cJSON_AddObjectToObject(call, name);
			const cJSON *a;
			cJSON_ArrayForEach(a, tmp.args) {
				cJSON *one = cJSON_CreateArray();
				cJSON_AddItemToArray(one, cJSON_Duplicate(a, 1));
				cJSON_AddItemToObject(params, a->string, one);
			}
			cJSON_Delete(tmp.args);
			free(tmp.floats);
			cJSON_AddItemToArray(gt, call);
			continue;
		}
		int ok = cJSON_IsObject(e) && e->child && !e->child->next && cJSON_IsObject(e->child);
		for (const cJSON *p = ok ? e->child->child : NULL; p; p = p->next)
			ok &= cJSON_IsArray(p);
		if (!ok) {
			cJSON_Delete(gt);
			return ftk_error_set(err, FTK_EDATA, NULL, 0, f,
					     "case '%s': an expected call is {\"name\": {\"param\": [accepted values]}} or an OpenAI tool call",
					     jcase_id(kase));
		}
		cJSON_AddItemToArray(gt, cJSON_Duplicate(e, 1));
	}
	*out = gt;
	return 0;
}

static const struct tool *find_tool(const struct tool *tools, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(tools[i].name, name))
			return &tools[i];
	return NULL;
}

/* ============================================================== matching */

/*
 * Every (expected call, model call) pair checked once: whether the model
 * call satisfies the expected one, and if not, why.  Both matchings and
 * every failure message are read from this table.
 */
struct pairs {
	size_t ne, nc;
	unsigned char *ok;	/* (ne, nc): 1 when model call c satisfies expected call e */
	struct verdict *why;	/* (ne, nc): the failure when not ok (kind "" when not tried) */
};

static void pairs_check(struct pairs *pr, const cJSON *gt, const struct ftk_calls *calls,
			const struct tool *tools, size_t ntools, const struct tc *t)
{
	pr->ne = (size_t)cJSON_GetArraySize(gt);
	pr->nc = calls->n;
	pr->ok = xcalloc(pr->ne * pr->nc + 1, 1);
	pr->why = xcalloc(pr->ne * pr->nc + 1, sizeof(*pr->why));
	size_t e = 0;
	const cJSON *x;
	cJSON_ArrayForEach(x, gt) {
		const char *want = x->child->string;
		const struct tool *tool = find_tool(tools, ntools, want);
		for (size_t k = 0; k < pr->nc; k++) {
			if (t->strict_order && k != e)
				continue;
			pr->ok[e * pr->nc + k] = (unsigned char)check_call(&calls->v[k], want, x->child, tool,
									  t->dots, tools, ntools,
									  &pr->why[e * pr->nc + k]);
		}
		e++;
	}
}

static void pairs_release(struct pairs *pr)
{
	free(pr->ok);
	free(pr->why);
}

/*
 * BFCL's matching (parallel_function_checker_no_order): each expected call,
 * in order, takes the first model call not yet taken that satisfies it.
 * Fills m[e] (model call or -1) and returns how many expected calls matched.
 */
static size_t match_greedy(const struct pairs *pr, long *m)
{
	unsigned char *taken = xcalloc(pr->nc + 1, 1);
	size_t n = 0;
	for (size_t e = 0; e < pr->ne; e++) {
		m[e] = -1;
		for (size_t k = 0; k < pr->nc; k++)
			if (!taken[k] && pr->ok[e * pr->nc + k]) {
				m[e] = (long)k;
				taken[k] = 1;
				n++;
				break;
			}
	}
	free(taken);
	return n;
}

/* Kuhn's augmenting path from expected call e; owner[k] is k's expected call or -1. */
static int augment(const struct pairs *pr, size_t e, long *m, long *owner, unsigned char *seen)
{
	for (size_t k = 0; k < pr->nc; k++) {
		if (!pr->ok[e * pr->nc + k] || seen[k])
			continue;
		seen[k] = 1;
		if (owner[k] < 0 || augment(pr, (size_t)owner[k], m, owner, seen)) {
			owner[k] = (long)e;
			m[e] = (long)k;
			return 1;
		}
	}
	return 0;
}

/*
 * A maximum one-to-one matching, grown from BFCL's greedy one by augmenting
 * paths, so that where greedy matches every call the two agree call for
 * call.  Fills m[e] and returns its size.
 */
static size_t match_max(const struct pairs *pr, const long *greedy, long *m)
{
	long *owner = xmalloc((pr->nc + 1) * sizeof(long));
	unsigned char *seen = xmalloc(pr->nc + 1);
	size_t n = 0;
	for (size_t k = 0; k < pr->nc; k++)
		owner[k] = -1;
	for (size_t e = 0; e < pr->ne; e++) {
		m[e] = greedy[e];
		if (m[e] >= 0) {
			owner[m[e]] = (long)e;
			n++;
		}
	}
	for (size_t e = 0; e < pr->ne; e++) {
		if (m[e] >= 0)
			continue;
		memset(seen, 0, pr->nc + 1);
		n += (size_t)augment(pr, e, m, owner, seen);
	}
	free(owner);
	free(seen);
	return n;
}

/* The most telling failure: one with the right function name beats a wrong name. */
static int better(const struct verdict *cand, const struct verdict *best)
{
	if (!cand->kind[0])
		return 0;
	if (!best->kind[0])
		return 1;
	return !strcmp(best->kind, "wrong_function") && strcmp(cand->kind, "wrong_function");
}

/*
 * Why the first unmatched expected call found no model call: its most
 * telling failure against the model calls left unmatched.
 */
static void first_failure(const struct pairs *pr, const long *m, const int *matched,
			  const cJSON *gt, struct verdict *out)
{
	for (size_t e = 0; e < pr->ne; e++) {
		if (m[e] >= 0)
			continue;
		struct verdict best = { "", "" };
		for (size_t k = 0; k < pr->nc; k++)
			if (!matched[k] && better(&pr->why[e * pr->nc + k], &best))
				best = pr->why[e * pr->nc + k];
		if (best.kind[0])
			*out = best;
		else
			bad(out, "wrong_count", "no model call left for expected call '%s'",
			    cJSON_GetArrayItem(gt, (int)e)->child->string);
		return;
	}
}

/* Why model call k matched nothing: against the unmatched expected calls first. */
static void model_call_failure(const struct pairs *pr, size_t k, const long *m, struct verdict *out)
{
	struct verdict best = { "", "" };
	for (int pass = 0; pass < 2 && !best.kind[0]; pass++)
		for (size_t e = 0; e < pr->ne; e++)
			if ((pass == 1 || m[e] < 0) && better(&pr->why[e * pr->nc + k], &best))
				best = pr->why[e * pr->nc + k];
	if (best.kind[0])
		*out = best;
}

static int score(void *state, const cJSON *kase, const struct ftk_judge_output *out,
		 struct ftk_judge_result *res, struct ftk_error *err)
{
	struct tc *t = state;
	struct tool *tools = NULL;
	size_t ntools = 0;
	cJSON *gt = NULL;
	int rc = read_tools(kase, &tools, &ntools, err);
	if (rc < 0)
		return rc;
	if ((rc = read_expected(kase, &gt, err)) < 0) {
		free(tools);
		return rc;
	}
	const char **names = xcalloc(ntools + 1, sizeof(*names));
	for (size_t i = 0; i < ntools; i++)
		names[i] = tools[i].name;
	struct ftk_calls calls;
	rc = ftk_calls_extract(out, names, ntools, &calls, err);
	free(names);
	if (rc < 0) {
		cJSON_Delete(gt);
		free(tools);
		return rc;
	}
	size_t nexp = (size_t)cJSON_GetArraySize(gt);
	int *matched = xcalloc(calls.n + 1, sizeof(int));	/* model call -> expected index + 1 */
	struct verdict *vds = xcalloc(calls.n + 1, sizeof(*vds));
	int correct = 1;
	struct verdict first = { "", "" };

	if (calls.malformed) {
		/* the answer breaks the protocol: wrong, whatever else matches */
		correct = 0;
		bad(&first, "malformed_call", "%s", calls.malformed_reason);
	} else if (calls.n == 0) {
		correct = 0;
		bad(&first, "no_call", "no function call was found in the output");
	} else if (calls.n != nexp) {
		correct = 0;
		bad(&first, "wrong_count", "%zu call(s), expected %zu", calls.n, nexp);
	}
	struct pairs pr;
	pairs_check(&pr, gt, &calls, tools, ntools, t);
	long *greedy = xcalloc(nexp + 1, sizeof(long));
	long *onetoone = xcalloc(nexp + 1, sizeof(long));
	size_t n_greedy = match_greedy(&pr, greedy);
	size_t n_onetoone = match_max(&pr, greedy, onetoone);
	const long *use = t->matching == MATCH_BFCL ? greedy : onetoone;
	for (size_t e = 0; e < nexp; e++)
		if (use[e] >= 0)
			matched[use[e]] = (int)e + 1;
	if ((t->matching == MATCH_BFCL ? n_greedy : n_onetoone) < nexp) {
		correct = 0;
		if (!first.kind[0])
			first_failure(&pr, use, matched, gt, &first);
	}
	/* the two matchings disagree only when the order of the calls decides */
	if (!calls.malformed && calls.n == nexp && n_greedy != n_onetoone && n_onetoone == nexp) {
		ftk_judge_add_flag(res, "order_dependent",
				   "BFCL's greedy matching %s these calls (an expected call takes a model call that a later one needs); "
				   "a one-to-one matching %s them",
				   t->matching == MATCH_BFCL ? "rejects (the verdict here)" : "would reject",
				   t->matching == MATCH_BFCL ? "would accept" : "accepts (the verdict here)");
	}
	for (size_t k = 0; k < calls.n; k++)
		if (!matched[k])
			model_call_failure(&pr, k, use, &vds[k]);
	pairs_release(&pr);
	free(greedy);
	free(onetoone);
	/* schema validation of every call against its tool */
	int schema_valid = calls.n > 0 && !calls.malformed;
	for (size_t k = 0; t->schema != SCHEMA_OFF && k < calls.n; k++) {
		const struct tool *tool = find_tool(tools, ntools, calls.v[k].name);
		if (!tool && t->dots) {
			for (size_t i = 0; i < ntools && !tool; i++)
				if (names_match(tools[i].name, calls.v[k].name, 1, tools, ntools))
					tool = &tools[i];
		}
		if (!tool) {
			if (ntools) {
				schema_valid = 0;
				if (!vds[k].kind[0])
					bad(&vds[k], "unknown_function", "'%s' is not one of the tools",
					    calls.v[k].name);
			}
			continue;
		}
		struct ftk_error se;
		int src = ftk_jsonschema_validate(tool->params, calls.v[k].args, &se);
		if (src == 0)
			continue;
		schema_valid = 0;
		if (src == FTK_EDATA)
			continue;	/* the tool's own schema is broken: not the model's fault */
		char kind[64];
		size_t kl = strcspn(se.msg, ":");
		snprintf(kind, sizeof(kind), "schema:%.*s", (int)(kl < 40 ? kl : 40), se.msg);
		struct verdict sv;
		bad(&sv, kind, "arguments of '%s' at %s: %s", calls.v[k].name, se.field, se.msg);
		if (matched[k] || !vds[k].kind[0])
			vds[k] = sv;
		ftk_judge_add_flag(res, "schema_violation", "%s", sv.reason);
		if (t->schema == SCHEMA_REQUIRE && correct) {
			correct = 0;
			first = sv;
		}
	}

	cJSON_AddStringToObject(res->detail, "source", calls.source);
	if (calls.malformed)
		cJSON_AddNumberToObject(res->detail, "malformed", (double)calls.malformed);
	cJSON *dc = cJSON_AddArrayToObject(res->detail, "calls");
	for (size_t k = 0; k < calls.n; k++) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "name", calls.v[k].name);
		cJSON_AddItemToObject(o, "arguments", cJSON_Duplicate(calls.v[k].args, 1));
		if (matched[k])
			cJSON_AddNumberToObject(o, "matched", matched[k] - 1);
		else
			cJSON_AddNullToObject(o, "matched");
		if (vds[k].kind[0]) {
			cJSON_AddStringToObject(o, "kind", vds[k].kind);
			cJSON_AddStringToObject(o, "reason", vds[k].reason);
		}
		cJSON_AddItemToArray(dc, o);
	}
	res->primary = (int)ftk_judge_add_metric(res, "correct", correct, FTK_METRIC_SEMANTIC, 1, NULL);
	ftk_judge_add_metric(res, "schema_valid", schema_valid, FTK_METRIC_SURFACE, 1, NULL);
	if (!correct)
		ftk_judge_add_failure(res, first.kind[0] ? first.kind : "wrong_call", "%s",
				      first.reason[0] ? first.reason : "the calls do not match");
	free(matched);
	free(vds);
	ftk_calls_release(&calls);
	cJSON_Delete(gt);
	free(tools);
	return 0;
}

/*
 * Ground truth that no output can satisfy, found before any output is
 * judged, parameter by parameter: check_call refuses a parameter that is
 * given unless the tool declares it and the answers list the value, and one
 * left out unless the tool does not require it and the answers hold "".  So
 * a parameter is unsatisfiable when its accepted list is empty, when the tool
 * does not declare it and the answers do not let it be left out, when the
 * tool requires it and "" is its only answer, or when the tool requires it
 * and the answers do not list it.  A contradiction that leaves a way to pass
 * (BFCL's simple_python_17: "formatted" required, answers [true, ""]) is not
 * warned about: the case can be answered right.  A case the scorer refuses
 * outright (no expected calls) is left to it.
 */
static int check(void *state, const cJSON *kase, struct ftk_judge_result *notes)
{
	(void)state;
	struct tool *tools = NULL;
	size_t ntools = 0;
	cJSON *gt = NULL;
	struct ftk_error e;
	if (read_tools(kase, &tools, &ntools, &e) < 0)
		return 0;
	if (read_expected(kase, &gt, &e) < 0) {
		free(tools);
		return 0;
	}
	size_t before = notes->nflags;
	int i = 0;
	const cJSON *x;
	cJSON_ArrayForEach(x, gt) {
		const char *want = x->child->string;
		const struct tool *tool = find_tool(tools, ntools, want);
		const cJSON *props = tool ? cJSON_GetObjectItemCaseSensitive(tool->params, "properties") : NULL;
		const cJSON *req = tool ? cJSON_GetObjectItemCaseSensitive(tool->params, "required") : NULL;
		const cJSON *p;
		cJSON_ArrayForEach(p, x->child) {
			int opt = 0, values = 0, required = 0;
			const cJSON *a;
			cJSON_ArrayForEach(a, p) {
				opt |= is_empty_marker(a);
				values += !is_empty_marker(a);
			}
			cJSON_ArrayForEach(a, req) required |= cJSON_IsString(a) && !strcmp(a->valuestring, p->string);
			if (cJSON_GetArraySize(p) == 0)
				ftk_judge_add_flag(notes, "no_accepted_value",
						   "expected.tool_calls[%d] '%s': parameter '%s' has an empty list of accepted values: giving it and leaving it out are both wrong",
						   i, want, p->string);
			else if (tool && !opt && !(props && cJSON_GetObjectItemCaseSensitive(props, p->string)))
				ftk_judge_add_flag(notes, "undeclared_param",
						   "expected.tool_calls[%d] '%s': parameter '%s' is not declared by the tool, and the answers need it: giving it and leaving it out are both wrong",
						   i, want, p->string);
			else if (required && !values)
				ftk_judge_add_flag(notes, "required_marked_optional",
						   "expected.tool_calls[%d] '%s': parameter '%s' is required by the tool but its only accepted answer is \"\" (optional): giving it and leaving it out are both wrong",
						   i, want, p->string);
		}
		/* a parameter the tool requires that the answers do not list */
		const cJSON *r;
		cJSON_ArrayForEach(r, req) {
			if (cJSON_IsString(r) && !cJSON_GetObjectItemCaseSensitive(x->child, r->valuestring))
				ftk_judge_add_flag(notes, "required_not_expected",
						   "expected.tool_calls[%d] '%s': parameter '%s' is required by the tool but not in the accepted answers: giving it and leaving it out are both wrong",
						   i, want, r->valuestring);
		}
		i++;
	}
	cJSON_Delete(gt);
	free(tools);
	return (int)(notes->nflags - before);
}

const struct ftk_judge_ops ftk_judge_toolcall_ops = {
	/* .name    = */ "toolcall",
	/* .summary = */ "function calls match the expected ones by BFCL's rules and the tools' JSON Schemas",
	/* .create  = */ create,
	/* .score   = */ score,
	/* .destroy = */ destroy,
	/* .check   = */ check,
};
