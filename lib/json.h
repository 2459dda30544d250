/*
 * json.h: JSON helpers over cJSON.
 *
 * Parsing is cJSON's, wrapped so that a failure says where (the byte offset,
 * turned into a column by the caller's place) and so that the limits hostile
 * input needs are enforced: nesting depth (cJSON's own limit of 1000) and
 * duplicate keys, which cJSON accepts silently.
 *
 * Ownership rule for the whole API: a cJSON tree returned by a function here
 * belongs to the caller, who frees it with cJSON_Delete().  Strings returned
 * from ftk_json_get_str() are borrowed from the tree.
 *
 * Never re-serialize a record a tool passes through unchanged: cJSON turns
 * integers past 2^53 into doubles and may reorder nothing but still rewrites
 * spacing and escapes.  Write the original line instead.
 */
#ifndef FTK_JSON_H
#define FTK_JSON_H

#include <cjson/cJSON.h>
#include "err.h"
#include "strbuf.h"

/*
 * Parse s[0..len) as one JSON value.  On success *out is the tree (caller
 * frees).  On failure returns FTK_EDATA with err->offset set to the byte where
 * parsing stopped and a message ("invalid JSON", "trailing characters after
 * the value", "nesting deeper than 1000 levels").
 */
int ftk_json_parse(const char *s, size_t len, cJSON **out, struct ftk_error *err);

/* Like ftk_json_parse, but the value must be an object ("not a JSON object: array"). */
int ftk_json_parse_object(const char *s, size_t len, cJSON **out, struct ftk_error *err);

struct ftk_reader;
struct ftk_line;
/*
 * The next object of a JSON Lines file, for readers of a whole file of
 * settings-like records (an eval suite's cases, documents to import) that
 * stop at the first bad line; prep tools reject line by line instead
 * (cli/tool.h).  r was opened from path, which the messages name.  Lines of
 * only spaces, tabs and CRs are skipped.  Returns 1 with *out (caller frees)
 * and *line (borrowed until the next read, as ftk_reader_next's), 0 at the
 * end, or a negative code with err placed at path and the line:
 * FTK_EUTF8 "invalid UTF-8 at byte N" (N from 1, as every tool counts),
 * FTK_EDATA from ftk_json_parse_object, or the reader's own error.
 */
int ftk_json_next_object(struct ftk_reader *r, const char *path, struct ftk_line *line,
			 cJSON **out, struct ftk_error *err);

/*
 * Parse a dataset record: ftk_json_parse_object, and then refuse what cJSON
 * would change silently, so that no tool reads something other than what
 * the file says (a tool that passes the record on writes its original
 * bytes, but every decision it takes is made on the tree):
 *   "nul-in-string"        a string or key holds U+0000, written raw or as
 *                          \u0000 (cJSON's strings end at the first NUL,
 *                          so the rest of the text would be invisible);
 *   "number-out-of-range"  a number too large for a double (1e999 would
 *                          read as infinity and print as null) or a nonzero
 *                          number too small for one (1e-999 would read as 0);
 *   "duplicate-key"        an object repeats a key (cJSON finds the first
 *                          value, Python's json the last).
 * Returns 0 with *out (caller frees), or FTK_EDATA with err filled (the
 * field path in err->field where known, the byte in err->offset) and *kind
 * set to the reason above, or to "invalid-json" / "not-an-object" when the
 * line does not parse as an object.  kind may be NULL.
 */
int ftk_json_parse_record(const char *s, size_t len, cJSON **out, struct ftk_error *err,
			  const char **kind);

/*
 * The checks of ftk_json_parse_record on a tree v already parsed from
 * s[0..len) (borrowed).  Returns NULL when the record is whole, else the
 * reason ("nul-in-string", "number-out-of-range", "duplicate-key", in that
 * order of precedence) with err filled.
 */
const char *ftk_json_record_check(const char *s, size_t len, const cJSON *v,
				  struct ftk_error *err);

/*
 * Find the first object in the tree with a repeated key.  Returns 1 and
 * writes the field path of the second occurrence ("messages[0].role") into
 * path (size n), or 0 when every key is unique.
 */
int ftk_json_find_duplicate_key(const cJSON *v, char *path, size_t n);

/* The type's name as a user reads it: "string", "number", "object", ... */
const char *ftk_json_type_name(const cJSON *v);

/* In JSON text s, the index of the '"' closing the string whose opening
 * quote is at i (escapes skipped), or len when it is not closed. */
size_t ftk_json_string_end(const char *s, size_t len, size_t i);

/* Object member's string value, or NULL when missing or not a string. Borrowed. */
const char *ftk_json_get_str(const cJSON *obj, const char *key);

/*
 * Append cJSON's compact rendering of v to sb.  When sb is empty, cJSON's
 * own buffer becomes sb's (no second copy of a long record is made).
 */
void ftk_json_print(struct strbuf *sb, const cJSON *v);

/*
 * A copy of v whose objects and arrays are new but whose strings (values
 * and keys) are v's own, borrowed as cJSON references: a record rebuilt
 * from the parts of another costs its structure, not its text again.  The
 * copy may be changed (items added, replaced, deleted); its borrowed
 * strings may not be (cJSON_SetValuestring refuses a reference).  Returns
 * the copy (cJSON_Delete it before v: it frees none of v's strings), or
 * NULL for NULL.
 */
cJSON *ftk_json_share(const cJSON *v);

/*
 * Append path + "." + key or path + "[i]" to make field paths.  buf has size n.
 */
void ftk_json_path_key(char *buf, size_t n, const char *path, const char *key);
void ftk_json_path_index(char *buf, size_t n, const char *path, int i);

/*
 * Every item of the array arr is a string.  Returns 0, or FTK_EDATA in *err
 * naming the first item that is not as field "name[i]", with its JSON type
 * (file and line are the record's, for the message).  arr is borrowed.
 */
int ftk_json_all_strings(const cJSON *arr, const char *name, const char *file, long line,
			 struct ftk_error *err);

#endif
