/*
 * json.c: cJSON with the checks hostile input needs and places in errors.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "json.h"
#include "stream.h"

size_t ftk_json_string_end(const char *s, size_t len, size_t i)
{
	for (i++; i < len; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == '"')
			return i;
	}
	return len;
}

/*
 * Byte offset where nesting first goes deeper than cJSON's limit, or -1.
 * Only called after a failed parse, to say why (cJSON fails quietly there),
 * so that valid input does not pay for a second pass over every byte.
 */
static long too_deep_at(const char *s, size_t len)
{
	int depth = 0;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '"') {
			i = ftk_json_string_end(s, len, i);
		} else if (c == '[' || c == '{') {
			if (++depth > CJSON_NESTING_LIMIT)
				return (long)i;
		} else if (c == ']' || c == '}') {
			depth--;
		}
	}
	return -1;
}

int ftk_json_parse(const char *s, size_t len, cJSON **out, struct ftk_error *err)
{
	const char *end = NULL;
	*out = NULL;
	cJSON *v = cJSON_ParseWithLengthOpts(s, len, &end, 0);
	if (!v) {
		long deep = too_deep_at(s, len);
		if (deep >= 0) {
			ftk_error_msg(err, FTK_EDATA, "nesting deeper than %d levels", CJSON_NESTING_LIMIT);
			if (err)
				err->offset = deep;
			return FTK_EDATA;
		}
		long off = end ? (long)(end - s) : -1;
		if (!end) {
			const char *e = cJSON_GetErrorPtr();
			if (e && e >= s && e <= s + len)
				off = (long)(e - s);
		}
		/* s need not be NUL-terminated: count the whitespace within len */
		size_t ws = 0;
		while (ws < len && (s[ws] == ' ' || s[ws] == '\t' || s[ws] == '\r' || s[ws] == '\n'))
			ws++;
		if (ws == len)
			ftk_error_msg(err, FTK_EDATA, "empty line where a JSON value was expected");
		else if (off >= 0 && (size_t)off >= len)
			ftk_error_msg(err, FTK_EDATA, "invalid JSON: unexpected end of line");
		else
			ftk_error_msg(err, FTK_EDATA, "invalid JSON at column %ld", off + 1);
		if (err)
			err->offset = off;
		return FTK_EDATA;
	}
	/* cJSON does not require that only whitespace follows the value */
	size_t used = (size_t)(end - s);
	while (used < len && (s[used] == ' ' || s[used] == '\t' || s[used] == '\r' || s[used] == '\n'))
		used++;
	if (used < len) {
		cJSON_Delete(v);
		ftk_error_msg(err, FTK_EDATA, "invalid JSON: trailing characters at column %zu",
			      used + 1);
		if (err)
			err->offset = (long)used;
		return FTK_EDATA;
	}
	*out = v;
	return 0;
}

const char *ftk_json_type_name(const cJSON *v)
{
	if (!v)
		return "missing";
	switch (v->type & 0xFF) {
	case cJSON_False:
	case cJSON_True: return "boolean";
	case cJSON_NULL: return "null";
	case cJSON_Number: return "number";
	case cJSON_String: return "string";
	case cJSON_Array: return "array";
	case cJSON_Object: return "object";
	case cJSON_Raw: return "raw";
	}
	return "invalid";
}

int ftk_json_parse_object(const char *s, size_t len, cJSON **out, struct ftk_error *err)
{
	int rc = ftk_json_parse(s, len, out, err);
	if (rc < 0)
		return rc;
	if (!cJSON_IsObject(*out)) {
		ftk_error_msg(err, FTK_EDATA, "not a JSON object: %s", ftk_json_type_name(*out));
		cJSON_Delete(*out);
		*out = NULL;
		return FTK_EDATA;
	}
	return 0;
}

int ftk_json_next_object(struct ftk_reader *r, const char *path, struct ftk_line *line,
			 cJSON **out, struct ftk_error *err)
{
	int rc;
	*out = NULL;
	while ((rc = ftk_reader_next(r, line, err)) == 1) {
		size_t sp = 0;
		while (sp < line->len && (line->data[sp] == ' ' || line->data[sp] == '\t' ||
					  line->data[sp] == '\r'))
			sp++;
		if (sp == line->len)
			continue;
		if (line->utf8_error >= 0)
			return ftk_error_set(err, FTK_EUTF8, path, line->lineno, NULL,
					     "invalid UTF-8 at byte %ld", line->utf8_error + 1);
		if ((rc = ftk_json_parse_object(line->data, line->len, out, err)) < 0) {
			ftk_error_place(err, path, line->lineno);
			return rc;
		}
		return 1;
	}
	return rc;
}

void ftk_json_path_key(char *buf, size_t n, const char *path, const char *key)
{
	if (path && *path)
		snprintf(buf, n, "%s.%s", path, key);
	else
		snprintf(buf, n, "%s", key);
}

void ftk_json_path_index(char *buf, size_t n, const char *path, int i)
{
	snprintf(buf, n, "%s[%d]", path ? path : "", i);
}

int ftk_json_all_strings(const cJSON *arr, const char *name, const char *file, long line,
			 struct ftk_error *err)
{
	int i = 0;
	const cJSON *x;
	cJSON_ArrayForEach(x, arr)
	{
		if (!cJSON_IsString(x)) {
			char field[128];
			ftk_json_path_index(field, sizeof(field), name, i);
			return ftk_error_set(err, FTK_EDATA, file, line, field, "must be a string, not %s",
					     ftk_json_type_name(x));
		}
		i++;
	}
	return 0;
}

static int cmp(const void *x, const void *y)
{
	return strcmp(*(const char *const *)x, *(const char *const *)y);
}

static int dup_walk(const cJSON *v, char *path, size_t n)
{
	if (cJSON_IsObject(v)) {
		const cJSON *a, *b;
		size_t base = strlen(path);
		int count = 0;
		for (a = v->child; a; a = a->next)
			count++;
		/* small objects: quadratic is faster than hashing */
		for (a = v->child; a; a = a->next) {
			if (count <= 64) {
				for (b = v->child; b != a; b = b->next) {
					if (a->string && b->string && !strcmp(a->string, b->string)) {
						char tmp[512];
						ftk_json_path_key(tmp, sizeof(tmp), path, a->string);
						snprintf(path, n, "%s", tmp);
						return 1;
					}
				}
			}
		}
		if (count > 64) {
			/* sort pointers to names and look at neighbours */
			const char **names = xmalloc((size_t)count * sizeof(*names));
			int i = 0;
			for (a = v->child; a; a = a->next)
				names[i++] = a->string ? a->string : "";

			qsort(names, (size_t)count, sizeof(*names), cmp);
			for (i = 1; i < count; i++) {
				if (!strcmp(names[i], names[i - 1])) {
					char tmp[512];
					ftk_json_path_key(tmp, sizeof(tmp), path, names[i]);
					snprintf(path, n, "%s", tmp);
					free(names);
					return 1;
				}
			}
			free(names);
		}
		for (a = v->child; a; a = a->next) {
			char saved[512];
			snprintf(saved, sizeof(saved), "%s", path);
			ftk_json_path_key(path, n, saved, a->string ? a->string : "");
			if (dup_walk(a, path, n))
				return 1;
			path[base] = '\0';
		}
	} else if (cJSON_IsArray(v)) {
		const cJSON *a;
		size_t base = strlen(path);
		int i = 0;
		for (a = v->child; a; a = a->next, i++) {
			char saved[512];
			snprintf(saved, sizeof(saved), "%s", path);
			ftk_json_path_index(path, n, saved, i);
			if (dup_walk(a, path, n))
				return 1;
			path[base] = '\0';
		}
	}
	return 0;
}


int ftk_json_find_duplicate_key(const cJSON *v, char *path, size_t n)
{
	if (!n)
		return 0;
	path[0] = '\0';
	return dup_walk(v, path, n);
}

/*
 * Offset of the first U+0000 in a string of the JSON text s (a raw NUL byte,
 * or a \u0000 escape whose backslash is not itself escaped), or -1.  Called
 * on text that parsed, so a backslash is always inside a string.
 */
static long nul_at(const char *s, size_t len)
{
	const char *raw = memchr(s, '\0', len);
	const char *p = s, *end = s + len;
	while ((p = memmem(p, (size_t)(end - p), "\\u0000", 6)) != NULL) {
		size_t k = 0;
		while (p - k > s && p[-(long)k - 1] == '\\')
			k++;
		if (k % 2 == 0)
			break;
		p++;
	}
	if (raw && (!p || raw < p))
		return (long)(raw - s);
	return p ? (long)(p - s) : -1;
}

/*
 * Offset of the first number token in s that is nonzero but reads as 0 (its
 * exponent is below what a double holds), or -1.  Strings are skipped.
 */
static long underflow_at(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '"') {
			i = ftk_json_string_end(s, len, i);
		} else if (c == '-' || (c >= '0' && c <= '9')) {
			size_t b = i;
			int nonzero = 0;
			while (i < len && s[i] && strchr("+-0123456789.", s[i])) {
				nonzero |= s[i] >= '1' && s[i] <= '9';
				i++;
			}
			while (i < len && s[i] && strchr("+-0123456789eE", s[i]))
				i++;
			if (nonzero) {
				char tmp[512];
				size_t n = i - b < sizeof(tmp) - 1 ? i - b : sizeof(tmp) - 1;
				memcpy(tmp, s + b, n);
				tmp[n] = '\0';
				if (strtod(tmp, NULL) == 0.0)
					return (long)b;
			}
			i--;
		}
	}
	return -1;
}

/*
 * One walk over the tree, building no paths (this runs on every record):
 * *bad_num when a number is not finite, *zero when one is 0 (it may be an
 * underflow, which only the text shows), *dup when an object repeats a key.
 * Stops at the first non-finite number or repeated key.
 */
static void walk_fast(const cJSON *v, int *bad_num, int *zero, int *dup)
{
	if (cJSON_IsNumber(v)) {
		if (!isfinite(v->valuedouble))
			*bad_num = 1;
		else if (v->valuedouble == 0.0)
			*zero = 1;
		return;
	}
	if (!cJSON_IsObject(v) && !cJSON_IsArray(v))
		return;
	int obj = cJSON_IsObject(v), n = 0;
	for (const cJSON *a = v->child; a && !*bad_num && !*dup; a = a->next, n++) {
		/* small objects: compare with the keys before; large ones are left to
		 * ftk_json_find_duplicate_key, which sorts */
		if (obj && n < 64)
			for (const cJSON *b = v->child; b != a; b = b->next)
				if (a->string && b->string && !strcmp(a->string, b->string)) {
					*dup = 1;
					return;
				}
		walk_fast(a, bad_num, zero, dup);
	}
	if (obj && n >= 64 && !*dup) {
		char path[8];
		*dup = ftk_json_find_duplicate_key(v, path, sizeof(path));
	}
}

/* The path of the first non-finite number, into path.  Returns 1 when found. */
static int walk_numbers(const cJSON *v, struct strbuf *path)
{
	if (cJSON_IsNumber(v))
		return !isfinite(v->valuedouble);
	if (!cJSON_IsObject(v) && !cJSON_IsArray(v))
		return 0;
	size_t base = path->len;
	int i = 0;
	for (const cJSON *a = v->child; a; a = a->next, i++) {
		if (cJSON_IsArray(v))
			strbuf_addf(path, "[%d]", i);
		else
			strbuf_addf(path, "%s%s", base ? "." : "", a->string ? a->string : "");
		if (walk_numbers(a, path))
			return 1;
		strbuf_setlen(path, base);
	}
	return 0;
}

const char *ftk_json_record_check(const char *s, size_t len, const cJSON *v,
				  struct ftk_error *err)
{
	const char *k = NULL;
	char path[512] = "";
	struct strbuf np = STRBUF_INIT;
	long at = nul_at(s, len);
	int zero = 0, bad_num = 0, dup = 0;
	if (at < 0)
		walk_fast(v, &bad_num, &zero, &dup);
	if (at >= 0) {
		k = "nul-in-string";
		ftk_error_msg(err, FTK_EDATA, "a string holds a NUL character (U+0000) at byte %ld, "
			      "which would cut it short: remove it from the data", at + 1);
	} else if (bad_num && walk_numbers(v, &np)) {
		k = "number-out-of-range";
		ftk_error_msg(err, FTK_EDATA, "number too large for a double (it would read as "
			      "infinity and be written as null)");
		snprintf(path, sizeof(path), "%s", np.buf);
	} else if (zero && (at = underflow_at(s, len)) >= 0) {
		k = "number-out-of-range";
		ftk_error_msg(err, FTK_EDATA, "nonzero number at byte %ld too small for a double "
			      "(it would read as 0)", at + 1);
	} else if (dup && ftk_json_find_duplicate_key(v, path, sizeof(path))) {
		k = "duplicate-key";
		ftk_error_msg(err, FTK_EDATA, "key appears more than once in the same object "
			      "(readers disagree on which value counts)");
	}
	strbuf_release(&np);
	if (k && err) {
		err->offset = at;
		snprintf(err->field, sizeof(err->field), "%s", path);
	}
	return k;
}

int ftk_json_parse_record(const char *s, size_t len, cJSON **out, struct ftk_error *err,
			  const char **kind)
{
	cJSON *v = NULL;
	*out = NULL;
	int rc = ftk_json_parse_object(s, len, &v, err);
	if (rc < 0) {
		if (kind)
			*kind = err && strstr(err->msg, "not a JSON object") ? "not-an-object"
									   : "invalid-json";
		return rc;
	}
	const char *k = ftk_json_record_check(s, len, v, err);
	if (kind)
		*kind = k;
	if (k) {
		cJSON_Delete(v);
		return FTK_EDATA;
	}
	*out = v;
	return 0;
}

const char *ftk_json_get_str(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

void ftk_json_print(struct strbuf *sb, const cJSON *v)
{
	char *s = cJSON_PrintUnformatted(v);
	if (!s) {
		fprintf(stderr, "fatal: out of memory printing JSON\n");
		abort();
	}
	if (sb->len) {
		strbuf_addstr(sb, s);
		cJSON_free(s);
		return;
	}
	/* cJSON allocates with malloc (ftk sets no hooks) and trims its buffer
	 * to the text: take it over rather than copy it */
	size_t n = strlen(s);
	strbuf_release(sb);
	sb->buf = s;
	sb->len = n;
	sb->alloc = n + 1;
}

cJSON *ftk_json_share(const cJSON *v)
{
	if (!v)
		return NULL;
	int container = cJSON_IsObject(v) || cJSON_IsArray(v);
	cJSON *c = cJSON_IsObject(v) ? cJSON_CreateObject()
		 : cJSON_IsArray(v) ? cJSON_CreateArray()
		 : cJSON_IsString(v) || cJSON_IsRaw(v) ? cJSON_CreateStringReference(v->valuestring)
		 : cJSON_CreateNull();
	if (!c) {
		fprintf(stderr, "fatal: out of memory copying JSON\n");
		abort();
	}
	if (container) {
		cJSON *last = NULL;
		for (const cJSON *k = v->child; k; k = k->next) {
			cJSON *x = ftk_json_share(k);
			/* linked by hand: cJSON_AddItemToArray walks the list each time */
			if (last) {
				last->next = x;
				x->prev = last;
			} else {
				c->child = x;
			}
			c->child->prev = x;
			last = x;
		}
	} else if (cJSON_IsString(v) || cJSON_IsRaw(v)) {
		c->type = (v->type & 0xFF) | cJSON_IsReference;
	} else {
		c->type = v->type & 0xFF;
		c->valueint = v->valueint;
		c->valuedouble = v->valuedouble;
	}
	if (v->string) {
		c->string = v->string;
		c->type |= cJSON_StringIsConst;
	}
	return c;
}
