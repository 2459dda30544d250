/*
 * fields.h: string values of a record, found in the record's own bytes.
 *
 * ftk-scrub changes string values and must leave everything else exactly as
 * it was: a number such as 12345678901234567890 goes through cJSON as a
 * double and comes out as 1.2345678901234567e+19, so re-serializing a parsed
 * tree would damage records.  This module walks the original line instead.
 * It visits every string value (object keys are names, not values) with its
 * field path ("messages[1].content") and its decoded UTF-8 text, and when the
 * visitor supplies a replacement it writes that string, JSON-escaped, in
 * place of the original literal; every other byte of the line is copied as
 * it was.  A record with nothing to change comes out byte for byte the same.
 *
 * The same walk answers "the raw bytes of the value at this path" (ftk-split
 * hashes a group key without re-serializing it), and field patterns let
 * users name fields: "messages[*].content" matches messages[3].content, "*"
 * stands for any one key, and a pattern also matches everything below the
 * field it names ("messages" covers messages[0].content).
 *
 * The input is expected to be JSON that a parser has already accepted (the
 * tools parse each line first); malformed input still never reads out of
 * bounds and is reported as FTK_EDATA.
 */
#ifndef FTK_FIELDS_H
#define FTK_FIELDS_H

#include <stddef.h>
#include "lib/err.h"
#include "lib/strbuf.h"

/*
 * Visitor for one string value.  path is the field path (borrowed, valid
 * during the call), val[0..len) the decoded UTF-8 (NUL-terminated, borrowed).
 * Return 0 to keep the value, 1 after appending the new decoded value to
 * repl (the walker escapes it), or a negative number to stop the walk.
 */
typedef int (*ftk_field_fn)(void *ctx, const char *path, const char *val, size_t len,
			    struct strbuf *repl);

/*
 * Walk every string value of the JSON text json[0..len) in document order.
 * When out is not NULL the line is copied to it with the replacements made.
 * Returns the number of values replaced, the visitor's negative value when it
 * stopped the walk, or FTK_EDATA (err filled, with the byte offset) for text
 * that is not JSON.
 */
int ftk_fields_walk(const char *json, size_t len, ftk_field_fn fn, void *ctx,
		    struct strbuf *out, struct ftk_error *err);

/*
 * Find the value at exactly this path (no patterns).  Returns 1 and sets
 * *raw and *raw_len to the value's bytes in json (a string keeps its quotes), 0
 * when there is no such field, or FTK_EDATA for text that is not JSON.
 */
int ftk_fields_get_raw(const char *json, size_t len, const char *path, const char **raw,
		       size_t *raw_len, struct ftk_error *err);

/*
 * Does path ("messages[2].content") fall under pattern ("messages[*].content",
 * "meta", "*.text")?  Returns 1 or 0.
 */
int ftk_field_match(const char *pattern, const char *path);

/* Decode the JSON string literal s[0..n) (quotes included) onto out.  0 or FTK_EDATA. */
int ftk_json_unescape(const char *s, size_t n, struct strbuf *out);

#endif
