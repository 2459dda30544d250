/*
 * json.c: the structured-output judge: the output is JSON and satisfies a
 * JSON Schema.
 *
 * Finding the JSON.  With "strict": true the whole answer (whitespace
 * trimmed) must be one JSON value.  Otherwise, the way people read a chat
 * reply: the body of the first ```json (or ```) fence if there is one, else
 * the whole answer, else the first span from a '{' or '[' to the last
 * matching closer that parses.  Parsing is lib/json's, which also refuses
 * duplicate keys (a parser that keeps the last one and a reader that keeps
 * the first see different data).
 *
 * Settings: "schema" (a JSON Schema; a case's "expected.schema" overrides
 * it), "strict" (default false).  Metrics: "parses" (surface: JSON was
 * found, twin of "valid") and "valid" (semantic: it satisfies the schema;
 * the verdict).  Failures: "no_json", "duplicate_key", "schema:<keyword>".
 * Detail: {"found": "fence"|"whole"|"span"|null, "path", "message"}.
 */
#include <ctype.h>
#include <string.h>
#include "judges/jsonschema.h"
#include "judges/judges_int.h"
#include "lib/json.h"
#include "lib/strbuf.h"

struct jj {
	cJSON *schema;
	int strict;
};

static int create(void **state, const cJSON *s, const struct ftk_judge_env *env,
		  struct ftk_error *err)
{
	static const char *const known[] = { "schema", "strict", NULL };
	int strict, rc;
	if ((rc = jset_known(s, known, err)) < 0 ||
	    (rc = jset_bool(s, "strict", 0, &strict, err)) < 0)
		return rc;
	const cJSON *sc = s ? cJSON_GetObjectItemCaseSensitive(s, "schema") : NULL;
	if (sc && !cJSON_IsObject(sc) && !cJSON_IsBool(sc))
		return ftk_error_set(err, FTK_EDATA, NULL, 0, "settings.schema",
				     "'schema' must be an object, not %s", ftk_json_type_name(sc));
	struct jj *j = xcalloc(1, sizeof(*j));
	j->schema = sc ? cJSON_Duplicate(sc, 1) : NULL;
	j->strict = strict;
	*state = j;
	return 0;
}

static void destroy(void *state)
{
	struct jj *j = state;
	if (!j)
		return;
	cJSON_Delete(j->schema);
	free(j);
}

static int try_parse(const char *s, size_t n, cJSON **v, int *dup, char *dpath, size_t dn)
{
	while (n && isspace((unsigned char)*s))
		s++, n--;
	while (n && isspace((unsigned char)s[n - 1]))
		n--;
	if (!n || ftk_json_parse(s, n, v, NULL) < 0)
		return 0;
	*dup = ftk_json_find_duplicate_key(*v, dpath, dn);
	return 1;
}

/* Find the JSON value in text; *how says where it was found. */
static cJSON *find_json(const char *text, int strict, const char **how, int *dup, char *dpath,
			size_t dn)
{
	cJSON *v = NULL;
	*how = NULL;
	if (strict) {
		if (try_parse(text, strlen(text), &v, dup, dpath, dn))
			*how = "whole";
		return v;
	}
	const char *f = strstr(text, "```");
	if (f) {
		const char *b = strchr(f + 3, '\n');
		const char *e = b ? strstr(b, "```") : NULL;
		if (b && e && try_parse(b + 1, (size_t)(e - b - 1), &v, dup, dpath, dn)) {
			*how = "fence";
			return v;
		}
	}
	if (try_parse(text, strlen(text), &v, dup, dpath, dn)) {
		*how = "whole";
		return v;
	}
	for (const char *p = text; *p; p++) {
		if (*p != '{' && *p != '[')
			continue;
		char close = *p == '{' ? '}' : ']';
		for (const char *q = p + strlen(p) - 1; q > p; q--) {
			if (*q != close)
				continue;
			if (try_parse(p, (size_t)(q - p + 1), &v, dup, dpath, dn)) {
				*how = "span";
				return v;
			}
		}
		break;	/* only the first opener: a later one is part of prose */
	}
	return NULL;
}

static int score(void *state, const cJSON *kase, const struct ftk_judge_output *out,
		 struct ftk_judge_result *res, struct ftk_error *err)
{
	struct jj *j = state;
	const cJSON *exp = cJSON_GetObjectItemCaseSensitive(kase, "expected");
	const cJSON *schema = cJSON_GetObjectItemCaseSensitive(exp, "schema");
	if (!schema)
		schema = j->schema;
	const char *how;
	int dup = 0;
	char dpath[256] = "";
	cJSON *v = find_json(jtext_answer(out), j->strict, &how, &dup, dpath, sizeof(dpath));
	int valid = 0, parses = v != NULL;
	if (how)
		cJSON_AddStringToObject(res->detail, "found", how);
	else
		cJSON_AddNullToObject(res->detail, "found");
	if (!v) {
		ftk_judge_add_failure(res, "no_json", j->strict ? "the output is not one JSON value"
							 : "no JSON value could be found in the output");
	} else if (dup) {
		ftk_judge_add_failure(res, "duplicate_key", "the key at '%s' appears twice", dpath);
		cJSON_AddStringToObject(res->detail, "path", dpath);
	} else {
		struct ftk_error e;
		int rc = ftk_jsonschema_validate(schema, v, &e);
		if (rc == FTK_EDATA) {
			cJSON_Delete(v);
			return ftk_error_set(err, FTK_EDATA, NULL, 0, "expected.schema",
					     "case '%s': bad schema: %s (at %s)", jcase_id(kase), e.msg,
					     e.field);
		}
		if (rc == 0) {
			valid = 1;
		} else {
			char kind[64];
			size_t k = strcspn(e.msg, ":");
			snprintf(kind, sizeof(kind), "schema:%.*s", (int)(k < 40 ? k : 40), e.msg);
			ftk_judge_add_failure(res, kind, "%s: %s", e.field, e.msg);
			cJSON_AddStringToObject(res->detail, "path", e.field);
			cJSON_AddStringToObject(res->detail, "message", e.msg);
		}
	}
	cJSON_Delete(v);
	res->primary = (int)ftk_judge_add_metric(res, "valid", valid, FTK_METRIC_SEMANTIC, 1, NULL);
	ftk_judge_add_metric(res, "parses", parses, FTK_METRIC_SURFACE, 1, "valid");
	return 0;
}

const struct ftk_judge_ops ftk_judge_json_ops = {
	/* .name    = */ "json",
	/* .summary = */ "the output is JSON that satisfies a JSON Schema",
	/* .create  = */ create,
	/* .score   = */ score,
	/* .destroy = */ destroy,
	/* .check   = */ NULL,
};
