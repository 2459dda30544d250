/*
 * provenance.c: meta.source and meta.line spliced into a record's bytes.
 *
 * A record passed through keeps its original bytes (HACKING.md), so the
 * members are inserted as text: before the last '}' of the line when the
 * record has no "meta", or before the last '}' of the meta object's own
 * bytes (found with ftk_fields_get_raw) when it has one.  Nothing else of
 * the line moves.
 */
#include <string.h>
#include "lib/json.h"
#include "prep/fields.h"
#include "prep/provenance.h"

int ftk_provenance_wanted(const cJSON *rec, const char *file)
{
	if (!file || !strcmp(file, "-"))
		return 0;
	const cJSON *meta = cJSON_GetObjectItemCaseSensitive(rec, "meta");
	if (!meta)
		return 1;
	return cJSON_IsObject(meta) && !cJSON_GetObjectItemCaseSensitive(meta, "source") &&
	       !cJSON_GetObjectItemCaseSensitive(meta, "line");
}

/* Append s[0..close) (close at a '}'), the members, and s[close..n). */
static void splice(struct strbuf *out, const char *s, size_t n, size_t close, const char *file,
		   long lineno, int wrap)
{
	size_t k = close;
	while (k && strchr(" \t\r\n", s[k - 1]))
		k--;
	int empty = k && s[k - 1] == '{';
	strbuf_add(out, s, close);
	if (!empty)
		strbuf_addch(out, ',');
	strbuf_addstr(out, wrap ? "\"meta\":{\"source\":" : "\"source\":");
	strbuf_add_json_str(out, file, strlen(file));
	strbuf_addf(out, ",\"line\":%ld%s", lineno, wrap ? "}" : "");
	strbuf_add(out, s + close, n - close);
}

static size_t last_brace(const char *s, size_t n)
{
	while (n && s[n - 1] != '}')
		n--;
	return n ? n - 1 : 0;
}

int ftk_provenance_add(const char *line, size_t len, const cJSON *rec, const char *file,
		       long lineno, struct strbuf *out)
{
	strbuf_reset(out);
	if (!ftk_provenance_wanted(rec, file))
		return 0;
	if (!cJSON_GetObjectItemCaseSensitive(rec, "meta")) {
		splice(out, line, len, last_brace(line, len), file, lineno, 1);
		return 1;
	}
	const char *raw;
	size_t rn;
	if (ftk_fields_get_raw(line, len, "meta", &raw, &rn, NULL) != 1 || !rn || raw[0] != '{')
		return 0;
	size_t close = (size_t)(raw - line) + last_brace(raw, rn);
	splice(out, line, len, close, file, lineno, 0);
	return 1;
}

void ftk_provenance_add_tree(cJSON *rec, const char *file, long lineno)
{
	cJSON *meta = cJSON_GetObjectItemCaseSensitive(rec, "meta");
	if (!meta)
		meta = cJSON_AddObjectToObject(rec, "meta");
	cJSON_AddStringToObject(meta, "source", file);
	cJSON_AddNumberToObject(meta, "line", (double)lineno);
}
