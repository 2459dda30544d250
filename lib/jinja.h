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
 * Templates come with model downloads and variables with datasets, so
 * both are treated as hostile: parsing and rendering have limits (below),
 * and each one exceeded is an FTK_ELIMIT error whose message names it.
 *
 * Values follow JavaScript where transformers.js does (numbers print as
 * JavaScript prints them, tojson separators ", " and ": " as Python's
 * json.dumps).
 */
#ifndef FTK_JINJA_H
#define FTK_JINJA_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "err.h"
#include "strbuf.h"

struct ftk_jinja;

/*
 * How deep a template may nest, counted both as the parser recurses
 * (parentheses, brackets, unary signs and nots, blocks inside blocks, elif
 * chains) and as the depth of the tree it builds (attribute, filter, test
 * and operator chains, which the evaluator walks by recursion).  Real chat
 * templates stay under 30.  "template nested deeper than 200 levels (the
 * parser's depth limit)".
 */
#define FTK_JINJA_MAX_NESTING 200

/*
 * The render's limits, with their defaults.  A step is one expression
 * evaluated, statement run, loop iteration, list element made, eight dict
 * keys compared, or 64 bytes of string made or scanned; on this machine a
 * million steps take about a tenth of a second (bench: a loop of
 * concatenations).  The output and memory limits grow with the size of the
 * variables (bytes taken to hold them): a render may build strings of
 * max_output + 4x that and allocate max_memory + 8x that beyond it, since
 * templates print a message's content once and may copy it a few times
 * (Qwen3's splits its reasoning).
 */
#define FTK_JINJA_MAX_DEPTH 1000		/* the evaluator's recursion */
#define FTK_JINJA_MAX_STEPS 100000000		/* the iteration limit */
#define FTK_JINJA_MAX_OUTPUT ((size_t)64 << 20)	/* bytes in any one string, the output included */
#define FTK_JINJA_MAX_MEMORY ((size_t)256 << 20)	/* bytes of values and scratch */
#define FTK_JINJA_OUTPUT_PER_BYTE 4
#define FTK_JINJA_MEMORY_PER_BYTE 8

/* Zero fields take the defaults above. */
struct ftk_jinja_limits {
	unsigned max_depth;	/* nesting of blocks, expressions, macro calls and values being printed */
	size_t max_steps;
	size_t max_output;
	size_t max_memory;
};

/*
 * Parse a template.  Returns 0 and *out (free with ftk_jinja_free), or
 * FTK_EDATA (syntax error; err->line is the template line),
 * FTK_EUNSUPPORTED (a tag, filter or test this interpreter lacks) or
 * FTK_ELIMIT (nested deeper than FTK_JINJA_MAX_NESTING).
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
	const struct ftk_jinja_limits *limits;	/* NULL: the defaults */
};

/*
 * Render t with the variables in vars (a JSON object, borrowed: its strings are
 * read in place, so it must not change during the call) into out
 * (appended).  opts may be NULL.  Returns 0, or FTK_EDATA (raise_exception's
 * message, a type error, an undefined value used where it cannot be),
 * FTK_EUNSUPPORTED, or FTK_ELIMIT (a limit above, named in the message:
 * "the evaluator's depth limit", "the iteration limit", "the output size
 * limit", "the memory limit"); err->line is the template line.  On an error
 * out may hold part of the render.
 */
int ftk_jinja_render(const struct ftk_jinja *t, const cJSON *vars, struct ftk_jinja_opts *opts,
		     struct strbuf *out, struct ftk_error *err);

#endif
