/*
 * yamljson.h: YAML documents read into cJSON trees, through libyaml.
 *
 * Training configs and eval suites may be written in YAML, as axolotl and
 * LLaMA-Factory users write theirs.  Everything downstream already reads
 * cJSON, so a YAML file is turned into the same tree its JSON twin would
 * give: mappings become objects (keys in file order), sequences arrays, and
 * scalars are typed by the YAML 1.2 core schema: a plain (unquoted) scalar
 * that is null/~/empty is null, true/false a boolean, a decimal, hex, octal or
 * floating number (.inf, .nan too) a number, anything else a string; a quoted
 * scalar is always a string.  Anchors and aliases are refused (a config has
 * no use for them, and they allow "billion laughs"), and so are non-string
 * keys and duplicate keys.  One document per file.
 *
 * Errors carry the file, the 1-based line and a message that gives the
 * column, as libyaml reports them.
 */
#ifndef FTK_YAMLJSON_H
#define FTK_YAMLJSON_H

#include <stddef.h>
#include <cjson/cJSON.h>
#include "err.h"

/*
 * Parse data[0..len) (file is for messages).  Returns 0 and *out (a new tree
 * the caller frees; cJSON null for an empty document), or FTK_EDATA with err
 * filled (file, line, message).
 */
int ftk_yaml_parse(const char *data, size_t len, const char *file, cJSON **out,
		   struct ftk_error *err);

/*
 * Write v as block-style YAML to sb (an object or array at the top; strings
 * quoted whenever a plain scalar would read back as something else).  Reading
 * the result with ftk_yaml_parse gives v back.
 */
struct strbuf;
void ftk_yaml_write(const cJSON *v, struct strbuf *sb);

/* 1 when name ends in .yaml or .yml. */
int ftk_yaml_is_yaml_name(const char *name);

#endif
