/*
 * provenance.h: the first stage of a pipeline writes down where each record
 * came from (docs/formats.md, "Provenance").
 *
 * Inside a pipeline every tool after the first reads "-", so its rejects
 * can only say "line 276 of standard input".  The tools that read the
 * original files (ftk-convert, ftk-split) therefore add meta.source (the
 * file name as given) and meta.line (the 1-based line, or for a JSON array
 * the line its element starts on) to each record; later tools copy them into
 * every reject and every "of" (cli/tool.c, lib/record.h ftk_record_origin).
 *
 * The rule: only a record read from a named file (not standard input), and
 * only when its meta has neither source nor line (a record that has them
 * came through a first stage already, or labels its source itself: both are
 * kept as they are).  The record's own bytes are kept: the members are
 * spliced in before the closing brace of the record or of its meta object.
 */
#ifndef FTK_PROVENANCE_H
#define FTK_PROVENANCE_H

#include <cjson/cJSON.h>
#include "lib/strbuf.h"

/*
 * Whether rec, read from file, takes provenance under the rule above.
 * file "-" (standard input) never does.  rec is borrowed.
 */
int ftk_provenance_wanted(const cJSON *rec, const char *file);

/*
 * Write into out (reset first) the record line[0..len) with
 * "meta":{"source":file,"line":lineno} added, or source and line added to
 * its meta object, when ftk_provenance_wanted(rec, file).  rec is line
 * parsed (borrowed).  Returns 1 when out holds the new record, 0 when the
 * record takes none (out is then empty).
 */
int ftk_provenance_add(const char *line, size_t len, const cJSON *rec, const char *file,
		       long lineno, struct strbuf *out);

/* The same on a tree: add the members to rec (which the caller then prints). */
void ftk_provenance_add_tree(cJSON *rec, const char *file, long lineno);

#endif
