/*
 * jsonschema.h: validate a JSON value against a JSON Schema (the common
 * subset that tool definitions and structured-output prompts use).
 *
 * Keywords: type (a name or a list of names), enum, const, properties,
 * required, additionalProperties (false or a schema), items (a schema, or a
 * list of schemas for tuples), minItems, maxItems, uniqueItems, minimum,
 * maximum, exclusiveMinimum, exclusiveMaximum (numbers, draft 6 style),
 * multipleOf, minLength, maxLength (in code points), pattern (PCRE2, searched
 * anywhere in the string as JSON Schema says), anyOf, allOf, oneOf, not.
 * Unknown keywords (description, default, format, title, $schema...) are
 * ignored, as the standard says.  No $ref.
 *
 * The type names are JSON Schema's (object, array, string, number, integer,
 * boolean, null) plus the aliases function-calling datasets use: BFCL's dict
 * (object), float (number), tuple (array) and any (anything).  "integer"
 * accepts any number with no fractional part (1.0 included), as draft 6 does.
 */
#ifndef FTK_JSONSCHEMA_H
#define FTK_JSONSCHEMA_H

#include <cjson/cJSON.h>
#include "lib/err.h"

/*
 * Check value against schema (both borrowed).  Returns 0 when value
 * satisfies it; FTK_EMISMATCH when it does not, with err->field the path of
 * the first offending part of value ("$.items[2].name", "$" for the root) and
 * err->msg starting with the keyword that failed and a colon ("enum: 'x' is
 * not one of the allowed values"), so callers can take the word before ':';
 * FTK_EDATA when the schema itself is malformed (a bad pattern, a type name
 * nobody knows), with err->field the path inside the schema.
 */
int ftk_jsonschema_validate(const cJSON *schema, const cJSON *value, struct ftk_error *err);

#endif
