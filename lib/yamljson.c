/*
 * yamljson.c: YAML to cJSON and back (see yamljson.h).
 *
 * Reading uses libyaml's event parser with a stack of open containers: a
 * scalar or a finished container is added to the container on top, under
 * the pending key when that container is a mapping.  A mapping alternates
 * key and value; the key is kept until its value arrives.  Depth is limited
 * (64) so a hostile file cannot exhaust the stack of a later recursive walk.
 *
 * Writing is a small recursive printer for the trees ftk writes (configs):
 * block mappings and sequences, strings double-quoted with JSON escapes
 * (which are valid YAML escapes) unless they are plain-safe words.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>
#include "strbuf.h"
#include "yamljson.h"

#define MAX_DEPTH 64

struct frame {
	cJSON *node;
	char *key;	/* mapping: the key waiting for its value */
	long key_line;
};

static int fail(struct ftk_error *err, const char *file, const yaml_mark_t *m, const char *fmt,
		const char *a)
{
	char msg[600];
	snprintf(msg, sizeof(msg), fmt, a);
	return ftk_error_set(err, FTK_EDATA, file, m ? (long)m->line + 1 : 0, NULL, "%s at column %ld",
			     msg, m ? (long)m->column + 1 : 0L);
}

static int match(const char *s, const char *const *words)
{
	for (; *words; words++)
		if (!strcmp(s, *words))
			return 1;
	return 0;
}

/* A plain scalar's value by the YAML 1.2 core schema. */
static cJSON *plain_scalar(const char *s)
{
	static const char *const nulls[] = { "", "~", "null", "Null", "NULL", NULL };
	static const char *const trues[] = { "true", "True", "TRUE", NULL };
	static const char *const falses[] = { "false", "False", "FALSE", NULL };
	static const char *const infs[] = { ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", NULL };
	static const char *const ninfs[] = { "-.inf", "-.Inf", "-.INF", NULL };
	static const char *const nans[] = { ".nan", ".NaN", ".NAN", NULL };
	if (match(s, nulls))
		return cJSON_CreateNull();
	if (match(s, trues))
		return cJSON_CreateTrue();
	if (match(s, falses))
		return cJSON_CreateFalse();
	if (match(s, infs))
		return cJSON_CreateNumber(HUGE_VAL);
	if (match(s, ninfs))
		return cJSON_CreateNumber(-HUGE_VAL);
	if (match(s, nans))
		return cJSON_CreateNumber(NAN);
	char *end;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'o') && s[2]) {
		unsigned long long v = strtoull(s + 2, &end, s[1] == 'x' ? 16 : 8);
		if (!*end)
			return cJSON_CreateNumber((double)v);
	}
	/* [-+]? digits [. digits] [e [-+] digits], and .5 */
	const char *p = s;
	if (*p == '-' || *p == '+')
		p++;
	int digits = 0;
	while (isdigit((unsigned char)*p))
		p++, digits++;
	if (*p == '.') {
		p++;
		while (isdigit((unsigned char)*p))
			p++, digits++;
	}
	if (digits && (*p == 'e' || *p == 'E')) {
		p++;
		if (*p == '-' || *p == '+')
			p++;
		if (!isdigit((unsigned char)*p))
			return cJSON_CreateString(s);
		while (isdigit((unsigned char)*p))
			p++;
	}
	if (digits && !*p)
		return cJSON_CreateNumber(strtod(s, NULL));
	return cJSON_CreateString(s);
}

int ftk_yaml_parse(const char *data, size_t len, const char *file, cJSON **out,
		   struct ftk_error *err)
{
	yaml_parser_t p;
	yaml_event_t ev;
	struct frame st[MAX_DEPTH];
	int depth = 0, rc = 0, docs = 0, done = 0;
	cJSON *root = NULL;
	*out = NULL;
	if (!yaml_parser_initialize(&p))
		return ftk_error_set(err, FTK_EDATA, file, 0, NULL, "cannot start the YAML parser");
	yaml_parser_set_input_string(&p, (const unsigned char *)data, len);
	while (!done) {
		if (!yaml_parser_parse(&p, &ev)) {
			char msg[400];
			snprintf(msg, sizeof(msg), "invalid YAML: %s%s%s", p.problem ? p.problem : "error",
				 p.context ? " " : "", p.context ? p.context : "");
			rc = fail(err, file, &p.problem_mark, "%s", msg);
			break;
		}
		cJSON *node = NULL;
		const yaml_mark_t *m = &ev.start_mark;
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = 1;
			break;
		case YAML_DOCUMENT_START_EVENT:
			if (++docs > 1)
				rc = fail(err, file, m, "%s", "a second YAML document: one document per file");
			break;
		case YAML_ALIAS_EVENT:
			rc = fail(err, file, m, "%s", "YAML aliases (*name) are not supported");
			break;
		case YAML_SCALAR_EVENT: {
			const char *v = (const char *)ev.data.scalar.value;
			if (ev.data.scalar.anchor) {
				rc = fail(err, file, m, "%s", "YAML anchors (&name) are not supported");
				break;
			}
			int plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !ev.data.scalar.tag;
			node = plain ? plain_scalar(v) : cJSON_CreateString(v);
			break;
		}
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT: {
			const yaml_char_t *anchor = ev.type == YAML_SEQUENCE_START_EVENT
							    ? ev.data.sequence_start.anchor
							    : ev.data.mapping_start.anchor;
			if (anchor) {
				rc = fail(err, file, m, "%s", "YAML anchors (&name) are not supported");
				break;
			}
			if (depth == MAX_DEPTH) {
				rc = fail(err, file, m, "%s", "nested more than 64 deep");
				break;
			}
			st[depth].node = ev.type == YAML_SEQUENCE_START_EVENT ? cJSON_CreateArray()
									      : cJSON_CreateObject();
			st[depth].key = NULL;
			depth++;
			break;
		}
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			node = st[--depth].node;
			free(st[depth].key);
			break;
		default:
			break;
		}
		if (!rc && node) {
			if (!depth) {
				root = node;
			} else {
				struct frame *f = &st[depth - 1];
				if (cJSON_IsArray(f->node)) {
					cJSON_AddItemToArray(f->node, node);
				} else if (!f->key) {
					if (!cJSON_IsString(node)) {
						cJSON_Delete(node);
						rc = fail(err, file, m, "%s", "a mapping key must be a string");
					} else {
						f->key = strdup(node->valuestring);
						f->key_line = (long)m->line + 1;
						cJSON_Delete(node);
						if (cJSON_GetObjectItemCaseSensitive(f->node, f->key))
							rc = fail(err, file, m, "duplicate key '%s'", f->key);
					}
				} else {
					cJSON_AddItemToObject(f->node, f->key, node);
					free(f->key);
					f->key = NULL;
				}
			}
		}
		yaml_event_delete(&ev);
		if (rc)
			break;
	}
	yaml_parser_delete(&p);
	if (rc) {
		/* the open containers: the bottom one owns the others once added,
		 * but a container is added only when it ends, so free each */
		for (int i = depth - 1; i >= 0; i--) {
			free(st[i].key);
			cJSON_Delete(st[i].node);
		}
		cJSON_Delete(root);
		return rc;
	}
	*out = root ? root : cJSON_CreateNull();
	return 0;
}

int ftk_yaml_is_yaml_name(const char *name)
{
	size_t n = strlen(name);
	return (n > 5 && !strcmp(name + n - 5, ".yaml")) || (n > 4 && !strcmp(name + n - 4, ".yml"));
}

/* A string that reads back as itself when written plain. */
static int plain_safe(const char *s)
{
	if (!*s || strlen(s) > 200)
		return 0;
	for (const char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("_-./", *p))
			return 0;
	if (*s == '-' || *s == '.')
		return 0;
	cJSON *v = plain_scalar(s);
	int ok = cJSON_IsString(v);
	cJSON_Delete(v);
	return ok;
}

static void write_scalar(const cJSON *v, struct strbuf *sb)
{
	if (cJSON_IsString(v) && plain_safe(v->valuestring)) {
		strbuf_addstr(sb, v->valuestring);
	} else if (cJSON_IsString(v)) {
		strbuf_add_json_str(sb, v->valuestring, strlen(v->valuestring));
	} else if (cJSON_IsNumber(v) && isinf(v->valuedouble)) {
		strbuf_addstr(sb, v->valuedouble > 0 ? ".inf" : "-.inf");
	} else if (cJSON_IsNumber(v) && isnan(v->valuedouble)) {
		strbuf_addstr(sb, ".nan");
	} else {
		char *s = cJSON_PrintUnformatted(v);
		strbuf_addstr(sb, s);
		cJSON_free(s);
	}
}

static int is_container(const cJSON *v)
{
	return (cJSON_IsObject(v) || cJSON_IsArray(v)) && v->child;
}

static void write_node(const cJSON *v, struct strbuf *sb, int indent)
{
	const cJSON *m;
	cJSON_ArrayForEach(m, v) {
		strbuf_addf(sb, "%*s", indent, "");
		if (cJSON_IsObject(v)) {
			cJSON k = { .type = cJSON_String, .valuestring = m->string };
			write_scalar(&k, sb);
			strbuf_addch(sb, ':');
		} else {
			strbuf_addch(sb, '-');
		}
		if (is_container(m)) {
			strbuf_addch(sb, '\n');
			write_node(m, sb, indent + 2);
		} else {
			strbuf_addch(sb, ' ');
			if (cJSON_IsObject(m))
				strbuf_addstr(sb, "{}");
			else if (cJSON_IsArray(m))
				strbuf_addstr(sb, "[]");
			else
				write_scalar(m, sb);
			strbuf_addch(sb, '\n');
		}
	}
}

void ftk_yaml_write(const cJSON *v, struct strbuf *sb)
{
	if (is_container(v))
		write_node(v, sb, 0);
	else if (cJSON_IsObject(v))
		strbuf_addstr(sb, "{}\n");
	else {
		write_scalar(v, sb);
		strbuf_addch(sb, '\n');
	}
}
