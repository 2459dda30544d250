/*
 * jinja.h: the Jinja subset that chat templates use, rendered as
 * transformers.js (@huggingface/jinja) renders it.
 *
 * Covered: {{ }}, {% %}, {# #}, whitespace control (-, and trim_blocks /
 * lstrip_blocks as transformers sets them), if/elif/else, for/else with
 * loop.index, index0, revindex, revindex0, first, last, length, previtem,
 * nextitem, cycle(); set (also of namespace attributes and block set),
 * namespace(), macro and call, filter blocks; expressions with and/or/not,
 * comparisons, in / not in, is / is not tests, + - * / // % **, ~, the
 * ternary if-else, literals (strings, numbers, lists, dicts, true/false/none
 * in both spellings), attribute and item access, slices with negative
 * indexes and steps; tests defined, undefined, none, string, number,
 * integer, float, boolean, true, false, mapping, iterable, sequence, odd,
 * even, divisibleby, eq/ne/lt/gt...; filters length/count, tojson, trim,
 * upper, lower, title, capitalize, first, last, join, default/d, string,
 * int, float, list, items, keys, values, reverse, sort, unique, replace,
 * indent, map(attribute=), select/reject/selectattr/rejectattr, abs, round,
 * safe, e/escape; string methods startswith, endswith, split, rsplit, strip,
 * lstrip, rstrip, upper, lower, title, replace, find, count, format-free
 * join; dict methods get, items, keys, values; list append/pop/index;
 * raise_exception, range, strftime_now.
 *
 * Anything else gives FTK_EUNSUPPORTED with a message naming the feature
 * ("unsupported filter 'wordwrap'") at parse time or when it is reached, never
 * a wrong render.
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
