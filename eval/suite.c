/*
 * suite.c: loading an eval suite and checking its cases (see suite.h).
 *
 * Everything the runner relies on is checked here, up front, before a single
 * request is sent: it is cheaper to learn about a duplicate id or a message
 * without a role now than after an hour of API calls.  What only a judge
 * understands (the shape of "expected" for a tool call) is left to the judge,
 * which reports it per case without stopping the run.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lib/json.h"
#include "lib/openai.h"
#include "lib/stream.h"
#include "lib/strbuf.h"
#include "lib/yamljson.h"
#include "suite.h"

static char *dir_join(const char *suite_path, const char *rel)
{
	if (rel[0] == '/')
		return xstrdup(rel);
	const char *slash = strrchr(suite_path, '/');
	if (!slash)
		return xstrdup(rel);
	struct strbuf sb = STRBUF_INIT;
	strbuf_add(&sb, suite_path, (size_t)(slash - suite_path) + 1);
	strbuf_addstr(&sb, rel);
	return strbuf_detach(&sb, NULL);
}

static char *base_name(const char *path)
{
	const char *b = strrchr(path, '/');
	b = b ? b + 1 : path;
	size_t n = strlen(b);
	if (n > 5 && !strcmp(b + n - 5, ".json"))
		n -= 5;
	return xstrndup(b, n);
}

static int parse_judges(struct ftk_eval_suite *s, const cJSON *arr, struct ftk_error *err)
{
	/* a log-likelihood suite is scored by its metrics, judges are optional */
	if (s->output_type != FTK_EVAL_GENERATE && (!arr || (cJSON_IsArray(arr) && !arr->child)))
		return 0;
	if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0)
		return ftk_error_set(err, FTK_EDATA, s->path, 0, "judges",
				     arr ? "must be a non-empty array" : "missing: a suite names at least one judge");
	s->n_judges = (size_t)cJSON_GetArraySize(arr);
	s->judges = xcalloc(s->n_judges, sizeof(*s->judges));
	size_t i = 0;
	const cJSON *j;
	cJSON_ArrayForEach(j, arr)
	{
		char field[64];
		struct ftk_eval_judge_spec *sp = &s->judges[i];
		snprintf(field, sizeof(field), "judges[%zu]", i);
		i++;
		if (cJSON_IsString(j)) {
			sp->kind = xstrdup(j->valuestring);
			continue;
		}
		if (!cJSON_IsObject(j))
			return ftk_error_set(err, FTK_EDATA, s->path, 0, field,
					     "must be a judge name or an object, not %s",
					     ftk_json_type_name(j));
		const char *kind = ftk_json_get_str(j, "judge");
		if (!kind || !*kind) {
			strncat(field, ".judge", sizeof(field) - strlen(field) - 1);
			return ftk_error_set(err, FTK_EDATA, s->path, 0, field,
					     "missing: the judge's name (\"toolcall\", \"match\", ...)");
		}
		sp->kind = xstrdup(kind);
		const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "settings");
		if (st && !cJSON_IsObject(st) && !cJSON_IsNull(st)) {
			strncat(field, ".settings", sizeof(field) - strlen(field) - 1);
			return ftk_error_set(err, FTK_EDATA, s->path, 0, field,
					     "must be an object, not %s", ftk_json_type_name(st));
		}
		for (const cJSON *m = j->child; m; m = m->next)
			if (strcmp(m->string, "judge") && strcmp(m->string, "settings") &&
			    strcmp(m->string, "label")) {
				char f2[128];
				snprintf(f2, sizeof(f2), "%s.%s", field, m->string);
				return ftk_error_set(err, FTK_EDATA, s->path, 0, f2,
						     "unknown member: a judge entry holds \"judge\", \"label\" and \"settings\"");
			}
		sp->settings = cJSON_IsObject(st) ? cJSON_Duplicate(st, 1) : NULL;
		const char *label = ftk_json_get_str(j, "label");
		if (!label && sp->settings)
			label = ftk_json_get_str(sp->settings, "label");
		if (label) {
			sp->label = xstrdup(label);
			if (!sp->settings)
				sp->settings = cJSON_CreateObject();
			if (!cJSON_GetObjectItemCaseSensitive(sp->settings, "label"))
				cJSON_AddStringToObject(sp->settings, "label", label);
		}
	}
	/* two judges with one label would write the same metric names */
	for (size_t a = 0; a < s->n_judges; a++)
		for (size_t b = a + 1; b < s->n_judges; b++) {
			const char *la = s->judges[a].label ? s->judges[a].label : s->judges[a].kind;
			const char *lb = s->judges[b].label ? s->judges[b].label : s->judges[b].kind;
			if (!strcmp(la, lb)) {
				char field[64];
				snprintf(field, sizeof(field), "judges[%zu]", b);
				return ftk_error_set(err, FTK_EDATA, s->path, 0, field,
						     "a second judge labelled '%s': give one a \"label\"", lb);
			}
		}
	return 0;
}

static const struct ftk_eval_suite *sort_suite;
static int cmp_id(const void *a, const void *b)
{
	return strcmp(sort_suite->cases[*(const size_t *)a].id,
		      sort_suite->cases[*(const size_t *)b].id);
}

static int check_loglik_case(struct ftk_eval_suite *s, struct ftk_eval_case *c, const cJSON *rec,
			     const char *file, long line, struct ftk_error *err)
{
	if (s->output_type == FTK_EVAL_ROLLING) {
		c->text = ftk_json_get_str(rec, "text");
		if (!c->text)
			return ftk_error_set(err, FTK_EDATA, file, line, "text",
					     "missing or not a string: the text to score");
		return 0;
	}
	c->context = ftk_json_get_str(rec, "context");
	if (!c->context)
		return ftk_error_set(err, FTK_EDATA, file, line, "context",
				     "missing or not a string: what precedes each choice");
	const cJSON *ch = cJSON_GetObjectItemCaseSensitive(rec, "choices");
	if (!cJSON_IsArray(ch) || cJSON_GetArraySize(ch) < 1)
		return ftk_error_set(err, FTK_EDATA, file, line, "choices",
				     "must be a non-empty array of strings");
	int rc = ftk_json_all_strings(ch, "choices", file, line, err);
	if (rc < 0)
		return rc;
	int n = cJSON_GetArraySize(ch);
	const cJSON *x;
	c->choices = ch;
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(rec, "answer");
	if (!cJSON_IsNumber(a) || a->valuedouble != (double)(int)a->valuedouble || a->valuedouble < 0 ||
	    a->valuedouble >= n)
		return ftk_error_set(err, FTK_EDATA, file, line, "answer",
				     "must be the index of the right choice (0-%d)", n - 1);
	c->answer = (int)a->valuedouble;
	const cJSON *lb = cJSON_GetObjectItemCaseSensitive(rec, "labels");
	if (lb) {
		if (!cJSON_IsArray(lb) || cJSON_GetArraySize(lb) != n)
			return ftk_error_set(err, FTK_EDATA, file, line, "labels",
					     "must be an array of 1/0, one per choice");
		cJSON_ArrayForEach(x, lb)
			if (!cJSON_IsNumber(x) || (x->valuedouble != 0 && x->valuedouble != 1))
				return ftk_error_set(err, FTK_EDATA, file, line, "labels",
						     "must be an array of 1/0, one per choice");
		c->labels = lb;
	}
	return 0;
}

static int check_case(struct ftk_eval_suite *s, struct ftk_eval_case *c, cJSON *rec,
		      const char *file, long line, struct ftk_error *err)
{
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(rec, "id");
	if (cJSON_IsString(id) && id->valuestring[0])
		c->id = xstrdup(id->valuestring);
	else if (cJSON_IsNumber(id) && id->valuedouble == (double)(long long)id->valuedouble) {
		char buf[32];
		snprintf(buf, sizeof(buf), "%lld", (long long)id->valuedouble);
		c->id = xstrdup(buf);
	} else
		return ftk_error_set(err, FTK_EDATA, file, line, "id",
				     id ? "must be a non-empty string or an integer, not %s"
					: "missing: every case needs an id%s",
				     id ? ftk_json_type_name(id) : "");
	const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(rec, "messages");
	if (s->output_type != FTK_EVAL_GENERATE) {
		int rc = check_loglik_case(s, c, rec, file, line, err);
		if (rc < 0)
			return rc;
		if (!msgs)
			goto rest;
	}
	if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0)
		return ftk_error_set(err, FTK_EDATA, file, line, "messages",
				     msgs ? "must be a non-empty array of messages"
					  : "missing: the prompt's messages");
	int k = 0;
	const cJSON *m;
	cJSON_ArrayForEach(m, msgs)
	{
		char field[64];
		snprintf(field, sizeof(field), "messages[%d]", k);
		if (!cJSON_IsObject(m))
			return ftk_error_set(err, FTK_EDATA, file, line, field,
					     "must be an object, not %s", ftk_json_type_name(m));
		if (!ftk_json_get_str(m, "role")) {
			strncat(field, ".role", sizeof(field) - strlen(field) - 1);
			return ftk_error_set(err, FTK_EDATA, file, line, field,
					     "missing or not a string");
		}
		k++;
	}
	c->messages = msgs;
rest:;
	const cJSON *cl = cJSON_GetObjectItemCaseSensitive(rec, "cluster");
	if (cJSON_IsString(cl))
		c->cluster = xstrdup(cl->valuestring);
	else if (cJSON_IsNumber(cl)) {
		char buf[64];
		snprintf(buf, sizeof(buf), "%.17g", cl->valuedouble);
		c->cluster = xstrdup(buf);
	} else if (cl && !cJSON_IsNull(cl))
		return ftk_error_set(err, FTK_EDATA, file, line, "cluster",
				     "must be a string or a number, not %s", ftk_json_type_name(cl));
	const cJSON *tools = cJSON_GetObjectItemCaseSensitive(rec, "tools");
	if (tools && !cJSON_IsArray(tools) && !cJSON_IsNull(tools))
		return ftk_error_set(err, FTK_EDATA, file, line, "tools",
				     "must be an array of tools, not %s", ftk_json_type_name(tools));
	c->tools = cJSON_IsArray(tools) ? tools : NULL;
	c->line = line;
	c->rec = rec;
	(void)s;
	return 0;
}

static int load_cases(struct ftk_eval_suite *s, struct ftk_error *err)
{
	struct ftk_reader *r;
	int rc = ftk_reader_open(&r, s->cases_path, err);
	if (rc < 0) {
		if (err && !err->file[0])
			ftk_error_place(err, s->path, 0);
		return rc;
	}
	size_t alloc = 0;
	struct ftk_line line;
	cJSON *rec;
	while ((rc = ftk_json_next_object(r, s->cases_path, &line, &rec, err)) == 1) {
		FTK_ALLOC_GROW(s->cases, s->n_cases + 1, alloc);
		struct ftk_eval_case *c = &s->cases[s->n_cases];
		memset(c, 0, sizeof(*c));
		s->n_cases++;
		rc = check_case(s, c, rec, s->cases_path, line.lineno, err);
		if (rc < 0) {
			if (!c->rec)
				cJSON_Delete(rec);
			break;
		}
	}
	ftk_reader_close(r);
	if (rc < 0)
		return rc;
	if (s->n_cases == 0)
		return ftk_error_set(err, FTK_EDATA, s->cases_path, 0, NULL, "no cases");
	s->by_id = xmalloc(s->n_cases * sizeof(*s->by_id));
	for (size_t i = 0; i < s->n_cases; i++)
		s->by_id[i] = i;
	sort_suite = s;
	qsort(s->by_id, s->n_cases, sizeof(*s->by_id), cmp_id);
	for (size_t i = 1; i < s->n_cases; i++) {
		const struct ftk_eval_case *a = &s->cases[s->by_id[i - 1]], *b = &s->cases[s->by_id[i]];
		if (!strcmp(a->id, b->id)) {
			const struct ftk_eval_case *later = a->line > b->line ? a : b;
			const struct ftk_eval_case *first = a->line > b->line ? b : a;
			return ftk_error_set(err, FTK_EDATA, s->cases_path, later->line, "id",
					     "duplicate id '%s' (first on line %ld)", later->id,
					     first->line);
		}
	}
	return 0;
}

/* The first line holds a whole JSON object and another line follows: JSONL. */
static int looks_like_jsonl(const char *data, size_t len)
{
	const char *nl = memchr(data, '\n', len);
	cJSON *v = NULL;
	if (!nl || nl == data)
		return 0;
	int ok = ftk_json_parse_object(data, (size_t)(nl - data), &v, NULL) == 0;
	cJSON_Delete(v);
	return ok && strspn(nl, " \t\r\n") < (size_t)(data + len - nl);
}

/* The first non-blank, non-comment line is "word:" or "word: value". */
static int looks_like_yaml(const char *data, size_t len)
{
	const char *p = data, *e = data + len;
	while (p < e) {
		const char *nl = memchr(p, '\n', (size_t)(e - p));
		const char *le = nl ? nl : e;
		while (p < le && (*p == ' ' || *p == '\t' || *p == '\r'))
			p++;
		if (p < le && *p != '#') {
			if (le - p >= 3 && !memcmp(p, "---", 3))
				return 1;
			const char *q = p;
			while (q < le && (isalnum((unsigned char)*q) || *q == '_' || *q == '-'))
				q++;
			return q > p && q < le && *q == ':';
		}
		p = nl ? nl + 1 : e;
	}
	return 0;
}

/*
 * A suite file: JSON, or YAML when it is named .yaml/.yml or is not JSON but
 * reads like YAML.  A cases file given in its place gets a message that says
 * what a suite is.
 */
static int parse_suite(const char *path, const char *data, size_t len, cJSON **root,
		       struct ftk_error *err)
{
	int rc;
	*root = NULL;
	if (ftk_yaml_is_yaml_name(path) || (data[strspn(data, " \t\r\n")] != '{' && looks_like_yaml(data, len))) {
		rc = ftk_yaml_parse(data, len, path, root, err);
		if (rc == 0 && !cJSON_IsObject(*root)) {
			rc = ftk_error_set(err, FTK_EDATA, path, 0, NULL,
					   "a suite is a mapping (cases:, judges:), not %s",
					   ftk_json_type_name(*root));
			cJSON_Delete(*root);
			*root = NULL;
		}
		return rc;
	}
	if (looks_like_jsonl(data, len))
		return ftk_error_set(err, FTK_EDATA, path, 0, NULL,
				     "this is a cases file (JSON Lines, one case per line), not a suite: "
				     "a suite is one JSON or YAML object that names its cases file and "
				     "judges, e.g. {\"cases\": \"%s\", \"judges\": [{\"judge\": \"match\"}]} "
				     "(docs/formats.md, \"Eval suites\")",
				     strrchr(path, '/') ? strrchr(path, '/') + 1 : path);
	rc = ftk_json_parse_object(data, len, root, err);
	if (rc < 0)
		ftk_error_place(err, path, 0);
	return rc;
}

int ftk_eval_suite_load(struct ftk_eval_suite **out, const char *path, struct ftk_error *err)
{
	*out = NULL;
	char *data;
	size_t len;
	int rc = ftk_read_all(path, &data, &len, err);
	if (rc < 0)
		return rc;
	cJSON *root;
	rc = parse_suite(path, data, len, &root, err);
	free(data);
	if (rc < 0)
		return rc;
	struct ftk_eval_suite *s = xcalloc(1, sizeof(*s));
	s->path = xstrdup(path);
	const char *name = ftk_json_get_str(root, "name");
	s->name = name && *name ? xstrdup(name) : base_name(path);
	const char *cases = ftk_json_get_str(root, "cases");
	const cJSON *gen = cJSON_GetObjectItemCaseSensitive(root, "generation");
	if (!cases || !*cases) {
		rc = ftk_error_set(err, FTK_EDATA, path, 0, "cases",
				   "missing: the path of the cases JSONL file, relative to the suite");
		goto fail;
	}
	s->cases_path = dir_join(path, cases);
	if (gen && !cJSON_IsObject(gen)) {
		rc = ftk_error_set(err, FTK_EDATA, path, 0, "generation", "must be an object, not %s",
				   ftk_json_type_name(gen));
		goto fail;
	}
	s->generation = gen ? cJSON_Duplicate(gen, 1) : cJSON_CreateObject();
	for (const char *const *k = (const char *const[]){ "model", "messages", "tools", "n", "stream", NULL }; *k; k++)
		if (cJSON_GetObjectItemCaseSensitive(s->generation, *k)) {
			char field[64];
			snprintf(field, sizeof(field), "generation.%s", *k);
			rc = ftk_error_set(err, FTK_EDATA, path, 0, field,
					   "is set by ftk-eval itself, not by the suite");
			goto fail;
		}
	const char *ot = ftk_json_get_str(root, "output_type");
	if (!ot || !strcmp(ot, "generate_until"))
		s->output_type = FTK_EVAL_GENERATE;
	else if (!strcmp(ot, "multiple_choice"))
		s->output_type = FTK_EVAL_MULTIPLE_CHOICE;
	else if (!strcmp(ot, "loglikelihood_rolling"))
		s->output_type = FTK_EVAL_ROLLING;
	else {
		rc = ftk_error_set(err, FTK_EDATA, path, 0, "output_type",
				   "'%s' is not one of generate_until, multiple_choice, loglikelihood_rolling",
				   ot);
		goto fail;
	}
	const cJSON *mets = cJSON_GetObjectItemCaseSensitive(root, "metrics");
	if (mets) {
		const cJSON *x;
		int ok = cJSON_IsArray(mets);
		cJSON_ArrayForEach(x, mets)
			ok &= cJSON_IsString(x);
		if (!ok) {
			rc = ftk_error_set(err, FTK_EDATA, path, 0, "metrics", "must be an array of metric names");
			goto fail;
		}
		s->metrics = cJSON_Duplicate(mets, 1);
	}
	/* the settings every backend reads (lib/openai.h), checked now, not mid-run */
	struct ftk_openai_gen g;
	memset(&g, 0, sizeof(g));
	struct ftk_error ge;
	if (ftk_openai_gen_read(s->generation, &g, &ge) < 0) {
		char field[300];
		snprintf(field, sizeof(field), "generation.%.200s", ge.field);
		rc = ftk_error_set(err, FTK_EDATA, path, 0, field, "%s", ge.msg);
		goto fail;
	}
	rc = parse_judges(s, cJSON_GetObjectItemCaseSensitive(root, "judges"), err);
	if (rc < 0)
		goto fail;
	rc = load_cases(s, err);
	if (rc < 0)
		goto fail;
	cJSON_Delete(root);
	*out = s;
	return 0;
fail:
	cJSON_Delete(root);
	ftk_eval_suite_free(s);
	return rc;
}

long ftk_eval_suite_find(const struct ftk_eval_suite *s, const char *id)
{
	size_t lo = 0, hi = s->n_cases;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(s->cases[s->by_id[mid]].id, id);
		if (c == 0)
			return (long)s->by_id[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

void ftk_eval_suite_free(struct ftk_eval_suite *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_judges; i++) {
		free(s->judges[i].kind);
		free(s->judges[i].label);
		cJSON_Delete(s->judges[i].settings);
	}
	free(s->judges);
	for (size_t i = 0; i < s->n_cases; i++) {
		free(s->cases[i].id);
		free(s->cases[i].cluster);
		cJSON_Delete(s->cases[i].rec);
	}
	free(s->cases);
	free(s->by_id);
	free(s->path);
	free(s->name);
	free(s->cases_path);
	cJSON_Delete(s->generation);
	cJSON_Delete(s->metrics);
	free(s);
}
