/*
 * jsonschema.c: a validator for the JSON Schema subset in jsonschema.h.
 *
 * A recursive walk over schema and value together.  It stops at the first
 * failure and reports where in the value it happened, because a reviewer
 * wants "$.location: required: 'city' is missing", not a list of every
 * consequence.  anyOf/oneOf try each branch with a scratch error so that a
 * failing branch does not leak its message; when none fits, the message says
 * so and names the branch count.
 *
 * Equality for enum/const/uniqueItems is JSON equality (cJSON_Compare with
 * case-sensitive keys), so 1 and 1.0 are equal, as in JSON Schema.
 * Lengths count code points: a string is valid UTF-8 by the time cJSON has
 * it, so counting bytes that are not continuation bytes is enough.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <pcre2.h>
#include <string.h>
#include "judges/jsonschema.h"
#include "lib/json.h"

#define MAX_DEPTH 64

struct ctx {
	struct ftk_error *err;
};

static int fail(struct ftk_error *err, int code, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(struct ftk_error *err, int code, const char *path, const char *fmt, ...)
{
	if (!err)
		return code;
	char msg[sizeof(err->msg)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return ftk_error_set(err, code, NULL, 0, path, "%s", msg);
}

static int type_matches(const char *t, const cJSON *v, int *known)
{
	*known = 1;
	if (!strcmp(t, "object") || !strcmp(t, "dict"))
		return cJSON_IsObject(v);
	if (!strcmp(t, "array") || !strcmp(t, "tuple"))
		return cJSON_IsArray(v);
	if (!strcmp(t, "string"))
		return cJSON_IsString(v);
	if (!strcmp(t, "number") || !strcmp(t, "float"))
		return cJSON_IsNumber(v);
	if (!strcmp(t, "integer"))
		return cJSON_IsNumber(v) && isfinite(v->valuedouble) &&
		       v->valuedouble == floor(v->valuedouble);
	if (!strcmp(t, "boolean"))
		return cJSON_IsBool(v);
	if (!strcmp(t, "null"))
		return cJSON_IsNull(v);
	if (!strcmp(t, "any"))
		return 1;
	*known = 0;
	return 0;
}

static size_t utf8_len(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			n++;
	return n;
}

static int validate(const cJSON *schema, const cJSON *v, const char *path, const char *spath,
		    int depth, struct ftk_error *err);

static int check_type(const cJSON *t, const cJSON *v, const char *path, const char *spath,
		      struct ftk_error *err)
{
	int known;
	if (cJSON_IsString(t)) {
		if (type_matches(t->valuestring, v, &known))
			return 0;
		if (!known)
			return fail(err, FTK_EDATA, spath, "type: unknown type name '%s'",
				    t->valuestring);
		return fail(err, FTK_EMISMATCH, path, "type: expected %s, got %s", t->valuestring,
			    ftk_json_type_name(v));
	}
	if (cJSON_IsArray(t)) {
		const cJSON *e;
		cJSON_ArrayForEach(e, t) {
			if (!cJSON_IsString(e))
				return fail(err, FTK_EDATA, spath, "type: list entries must be strings");
			if (type_matches(e->valuestring, v, &known))
				return 0;
			if (!known)
				return fail(err, FTK_EDATA, spath, "type: unknown type name '%s'",
					    e->valuestring);
		}
		return fail(err, FTK_EMISMATCH, path, "type: %s is none of the allowed types",
			    ftk_json_type_name(v));
	}
	return fail(err, FTK_EDATA, spath, "type: must be a string or a list of strings");
}

static int check_pattern(const char *pat, const char *s, const char *path, const char *spath,
			 struct ftk_error *err)
{
	int ecode;
	PCRE2_SIZE eoff;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
				       PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &ecode, &eoff, NULL);
	if (!re) {
		PCRE2_UCHAR buf[160];
		pcre2_get_error_message(ecode, buf, sizeof(buf));
		return fail(err, FTK_EDATA, spath, "pattern: bad regular expression at offset %zu: %s",
			    (size_t)eoff, (const char *)buf);
	}
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
	int rc = pcre2_match(re, (PCRE2_SPTR)s, strlen(s), 0, 0, md, NULL);
	pcre2_match_data_free(md);
	pcre2_code_free(re);
	if (rc >= 0)
		return 0;
	if (rc == PCRE2_ERROR_NOMATCH)
		return fail(err, FTK_EMISMATCH, path, "pattern: '%.80s' does not match /%.80s/", s, pat);
	return fail(err, FTK_EMISMATCH, path, "pattern: matching failed (pcre2 error %d)", rc);
}

static double num_kw(const cJSON *schema, const char *k, int *present)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(schema, k);
	*present = cJSON_IsNumber(x);
	return *present ? x->valuedouble : 0;
}

static int check_numbers(const cJSON *schema, const cJSON *v, const char *path,
			 struct ftk_error *err)
{
	double d = v->valuedouble, b;
	int has;
	b = num_kw(schema, "minimum", &has);
	if (has && d < b)
		return fail(err, FTK_EMISMATCH, path, "minimum: %.17g is less than %.17g", d, b);
	b = num_kw(schema, "maximum", &has);
	if (has && d > b)
		return fail(err, FTK_EMISMATCH, path, "maximum: %.17g is greater than %.17g", d, b);
	b = num_kw(schema, "exclusiveMinimum", &has);
	if (has && d <= b)
		return fail(err, FTK_EMISMATCH, path, "exclusiveMinimum: %.17g is not greater than %.17g", d, b);
	b = num_kw(schema, "exclusiveMaximum", &has);
	if (has && d >= b)
		return fail(err, FTK_EMISMATCH, path, "exclusiveMaximum: %.17g is not less than %.17g", d, b);
	b = num_kw(schema, "multipleOf", &has);
	if (has && b > 0) {
		double q = d / b;
		if (fabs(q - nearbyint(q)) > 1e-9 * fmax(1, fabs(q)))
			return fail(err, FTK_EMISMATCH, path, "multipleOf: %.17g is not a multiple of %.17g", d, b);
	}
	return 0;
}

static int check_object(const cJSON *schema, const cJSON *v, const char *path,
			const char *spath, int depth, struct ftk_error *err)
{
	char p[256], sp[256];
	const cJSON *props = cJSON_GetObjectItemCaseSensitive(schema, "properties");
	const cJSON *req = cJSON_GetObjectItemCaseSensitive(schema, "required");
	const cJSON *addl = cJSON_GetObjectItemCaseSensitive(schema, "additionalProperties");
	const cJSON *e;
	if (req && !cJSON_IsArray(req)) {
		ftk_json_path_key(sp, sizeof(sp), spath, "required");
		return fail(err, FTK_EDATA, sp, "required: must be a list of names");
	}
	cJSON_ArrayForEach(e, req) {
		if (cJSON_IsString(e) && !cJSON_GetObjectItemCaseSensitive(v, e->valuestring))
			return fail(err, FTK_EMISMATCH, path, "required: '%s' is missing", e->valuestring);
	}
	cJSON_ArrayForEach(e, v) {
		const cJSON *ps = props ? cJSON_GetObjectItemCaseSensitive(props, e->string) : NULL;
		ftk_json_path_key(p, sizeof(p), path, e->string);
		if (ps) {
			snprintf(sp, sizeof(sp), "%s.properties.%s", spath, e->string);
			int rc = validate(ps, e, p, sp, depth + 1, err);
			if (rc < 0)
				return rc;
		} else if (cJSON_IsFalse(addl)) {
			return fail(err, FTK_EMISMATCH, p,
				    "additionalProperties: '%s' is not an allowed property", e->string);
		} else if (cJSON_IsObject(addl)) {
			ftk_json_path_key(sp, sizeof(sp), spath, "additionalProperties");
			int rc = validate(addl, e, p, sp, depth + 1, err);
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

static int check_array(const cJSON *schema, const cJSON *v, const char *path,
		       const char *spath, int depth, struct ftk_error *err)
{
	char p[256], sp[256];
	int n = cJSON_GetArraySize(v), has;
	double b = num_kw(schema, "minItems", &has);
	if (has && n < b)
		return fail(err, FTK_EMISMATCH, path, "minItems: %d items, fewer than %.0f", n, b);
	b = num_kw(schema, "maxItems", &has);
	if (has && n > b)
		return fail(err, FTK_EMISMATCH, path, "maxItems: %d items, more than %.0f", n, b);
	const cJSON *items = cJSON_GetObjectItemCaseSensitive(schema, "items");
	int i = 0;
	const cJSON *e;
	cJSON_ArrayForEach(e, v) {
		const cJSON *is = NULL;
		ftk_json_path_index(p, sizeof(p), path, i);
		if (cJSON_IsObject(items)) {
			is = items;
			ftk_json_path_key(sp, sizeof(sp), spath, "items");
		} else if (cJSON_IsArray(items)) {
			is = cJSON_GetArrayItem(items, i);
			snprintf(sp, sizeof(sp), "%s.items[%d]", spath, i);
		}
		if (is) {
			int rc = validate(is, e, p, sp, depth + 1, err);
			if (rc < 0)
				return rc;
		}
		i++;
	}
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(schema, "uniqueItems"))) {
		int a = 0;
		for (const cJSON *x = v->child; x; x = x->next, a++)
			for (const cJSON *y = x->next; y; y = y->next)
				if (cJSON_Compare(x, y, 1))
					return fail(err, FTK_EMISMATCH, path,
						    "uniqueItems: item %d is repeated", a);
	}
	return 0;
}

static int check_combinators(const cJSON *schema, const cJSON *v, const char *path,
			     const char *spath, int depth, struct ftk_error *err)
{
	static const char *const kw[] = { "allOf", "anyOf", "oneOf" };
	char sp[256];
	for (size_t k = 0; k < FTK_ARRAY_SIZE(kw); k++) {
		const cJSON *list = cJSON_GetObjectItemCaseSensitive(schema, kw[k]);
		if (!list)
			continue;
		if (!cJSON_IsArray(list)) {
			ftk_json_path_key(sp, sizeof(sp), spath, kw[k]);
			return fail(err, FTK_EDATA, sp, "%s: must be a list of schemas", kw[k]);
		}
		int ok = 0, i = 0;
		const cJSON *s;
		cJSON_ArrayForEach(s, list) {
			struct ftk_error scratch;
			snprintf(sp, sizeof(sp), "%s.%s[%d]", spath, kw[k], i++);
			int rc = validate(s, v, path, sp, depth + 1, &scratch);
			if (rc == FTK_EDATA) {
				if (err)
					*err = scratch;
				return rc;
			}
			if (rc == 0)
				ok++;
			else if (k == 0) {	/* allOf: the branch's own message is the useful one */
				if (err)
					*err = scratch;
				return rc;
			}
		}
		if (k == 1 && ok == 0)
			return fail(err, FTK_EMISMATCH, path, "anyOf: matches none of %d schemas", i);
		if (k == 2 && ok != 1)
			return fail(err, FTK_EMISMATCH, path, "oneOf: matches %d of %d schemas, not exactly one",
				    ok, i);
	}
	const cJSON *no = cJSON_GetObjectItemCaseSensitive(schema, "not");
	if (cJSON_IsObject(no)) {
		struct ftk_error scratch;
		ftk_json_path_key(sp, sizeof(sp), spath, "not");
		int rc = validate(no, v, path, sp, depth + 1, &scratch);
		if (rc == FTK_EDATA) {
			if (err)
				*err = scratch;
			return rc;
		}
		if (rc == 0)
			return fail(err, FTK_EMISMATCH, path, "not: matches the excluded schema");
	}
	return 0;
}

static int validate(const cJSON *schema, const cJSON *v, const char *path, const char *spath,
		    int depth, struct ftk_error *err)
{
	if (depth > MAX_DEPTH)
		return fail(err, FTK_ELIMIT, path, "depth: nested deeper than %d levels", MAX_DEPTH);
	if (cJSON_IsTrue(schema))
		return 0;
	if (cJSON_IsFalse(schema))
		return fail(err, FTK_EMISMATCH, path, "false: no value is allowed here");
	if (!cJSON_IsObject(schema))
		return fail(err, FTK_EDATA, spath, "schema: must be an object or a boolean, not %s",
			    ftk_json_type_name(schema));
	char sp[256];
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(schema, "type");
	if (t) {
		ftk_json_path_key(sp, sizeof(sp), spath, "type");
		int rc = check_type(t, v, path, sp, err);
		if (rc < 0)
			return rc;
	}
	const cJSON *en = cJSON_GetObjectItemCaseSensitive(schema, "enum");
	if (en) {
		if (!cJSON_IsArray(en)) {
			ftk_json_path_key(sp, sizeof(sp), spath, "enum");
			return fail(err, FTK_EDATA, sp, "enum: must be a list");
		}
		int found = 0;
		const cJSON *e;
		cJSON_ArrayForEach(e, en) found |= cJSON_Compare(e, v, 1);
		if (!found) {
			char *s = cJSON_PrintUnformatted(v);
			int rc = fail(err, FTK_EMISMATCH, path, "enum: %.120s is not one of the allowed values",
				      s ? s : "?");
			free(s);
			return rc;
		}
	}
	const cJSON *cn = cJSON_GetObjectItemCaseSensitive(schema, "const");
	if (cn && !cJSON_Compare(cn, v, 1))
		return fail(err, FTK_EMISMATCH, path, "const: the value is not the required constant");
	int rc = 0;
	if (cJSON_IsString(v)) {
		int has;
		size_t n = utf8_len(v->valuestring);
		double b = num_kw(schema, "minLength", &has);
		if (has && n < b)
			return fail(err, FTK_EMISMATCH, path, "minLength: %zu characters, fewer than %.0f", n, b);
		b = num_kw(schema, "maxLength", &has);
		if (has && n > b)
			return fail(err, FTK_EMISMATCH, path, "maxLength: %zu characters, more than %.0f", n, b);
		const cJSON *pat = cJSON_GetObjectItemCaseSensitive(schema, "pattern");
		if (cJSON_IsString(pat)) {
			ftk_json_path_key(sp, sizeof(sp), spath, "pattern");
			rc = check_pattern(pat->valuestring, v->valuestring, path, sp, err);
		}
	} else if (cJSON_IsNumber(v)) {
		rc = check_numbers(schema, v, path, err);
	} else if (cJSON_IsObject(v)) {
		rc = check_object(schema, v, path, spath, depth, err);
	} else if (cJSON_IsArray(v)) {
		rc = check_array(schema, v, path, spath, depth, err);
	}
	if (rc < 0)
		return rc;
	return check_combinators(schema, v, path, spath, depth, err);
}

int ftk_jsonschema_validate(const cJSON *schema, const cJSON *value, struct ftk_error *err)
{
	if (err)
		ftk_error_clear(err);
	if (!schema)
		return 0;
	return validate(schema, value, "$", "schema", 0, err);
}
