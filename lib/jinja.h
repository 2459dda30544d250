/*
 * jinja.h: the Jinja subset that chat templates use, rendered as
 * transformers.js (@huggingface/jinja) renders it.
 *
 * Covered: {{ }}, {% %}, {# #}, whitespace control (-, and trim_blocks /
 * lstrip_blocks as transformers sets them; {% generation %} markers are
 * dropped as transformers.js drops them), if/elif/else, for/else with a loop
 * filter (for x in xs if cond), tuple targets, break/continue and loop.index,
 * index0, revindex, revindex0, first, last, length, previtem, nextitem; set
 * (names, tuples, namespace attributes, block set), namespace(), macro with
 * defaults and keyword arguments; expressions with and/or/not, comparisons,
 * in / not in, is / is not tests, + - * / // % **, ~, the ternary if-else,
 * literals (strings with escapes, numbers, lists, tuples, dicts,
 * true/false/none in both spellings), attribute and item access, slices with
 * negative indexes and steps; tests defined, undefined, none, string,
 * number, integer, boolean, true, false, mapping, iterable, sequence, odd,
 * even, callable, lower, upper, equalto/eq, in; filters length/count, tojson
 * (indent, ensure_ascii, sort_keys, separators), trim, upper, lower, title,
 * capitalize, first, last, join, default/d, string, int, float, list, items,
 * keys, values, reverse, sort (reverse, case_sensitive, attribute), unique,
 * replace, indent, map(attribute=), selectattr, rejectattr, abs, bool, safe;
 * string methods startswith, endswith, split, strip, lstrip, rstrip, upper,
 * lower, title, capitalize, replace; dict methods get, items, keys, values;
 * raise_exception, range, strftime_now.
 *
 * Anything else gives FTK_EUNSUPPORTED with a message naming the feature
 * ("unsupported filter 'wordwrap'", "unsupported statement 'call'",
 * "unsupported string method 'zfill'") at parse time or when it is reached,
 * never a wrong render.  Not there: call and filter blocks, include, import,
 * extends, raw, recursive loops, loop.cycle, list methods (append...), the
 * divisibleby test, the round and escape filters.
 *
 * Values follow JavaScript where transformers.js does (numbers print as
 * JavaScript prints them, tojson separators ", " and ": " as Python's
 * json.dumps).
 */
#ifndef FTK_JINJA_H
#define FTK_JINJA_H

#include <stddef.h>
#include <cjson/cJSON.h>
#include "err.h"
#include "strbuf.h"

struct ftk_jinja;

/*
 * Parse a template.  Returns 0 and *out (free with ftk_jinja_free), or
 * FTK_EDATA (syntax error; err->line is the template line) or
 * FTK_EUNSUPPORTED (a tag, filter or test this interpreter lacks).
 */
int ftk_jinja_parse(struct ftk_jinja **out, const char *src, size_t len, struct ftk_error *err);
void ftk_jinja_free(struct ftk_jinja *t);

/*
 * Where the output of one iteration of a for loop over an element of
 * opts->track went: bytes [start, end) of the output; first_taint is the
 * output position of the first byte derived from a tracked field of the
 * element (-1 when none was output).
 */
struct ftk_jinja_iter {
	int index;		/* index of the element in opts->track */
	size_t start, end;
	long first_taint;
};

struct ftk_jinja_opts {
	const cJSON *track;		/* an array whose elements' iterations are reported, or NULL */
	const char *const *taint_keys;	/* NULL-terminated member names that taint (content, ...) */
	struct ftk_jinja_iter *iters;	/* out: filled by render (xrealloc'd; caller frees) */
	size_t n_iters, alloc_iters;
};

/*
 * Render t with the variables in vars (a JSON object, borrowed) into out
 * (appended).  opts may be NULL.  Returns 0, or FTK_EDATA (raise_exception's
 * message, a type error, an undefined value used where it cannot be), or
 * FTK_EUNSUPPORTED; err->line is the template line.
 */
int ftk_jinja_render(const struct ftk_jinja *t, const cJSON *vars, struct ftk_jinja_opts *opts,
		     struct strbuf *out, struct ftk_error *err);

#endif
