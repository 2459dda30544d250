/*
 * judge.c: the judge registry, the wrapper every judge is called through,
 * results, and the flags that need more than one judge.
 *
 * The wrapper owns the naming rule: a judge's score function appends bare
 * metric names ("recall"), and ftk_judge_score() prefixes what was appended
 * with the judge's label afterwards, twins included, so that judges never
 * need to know what a suite called them.  A twin that already holds a dot
 * names a metric of another judge and is left alone.
 */
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include "judges/judge.h"
#include "judges/judges_int.h"
#include "lib/json.h"
#include "lib/strbuf.h"

struct ftk_judge {
	const struct ftk_judge_ops *ops;
	void *state;
	char *label;
	char *compare_as;	/* settings "compare_as", or NULL */
};

static const struct ftk_judge_ops *const registry[] = {
	&ftk_judge_citation_ops,
	&ftk_judge_toolcall_ops,
	&ftk_judge_match_ops,
	&ftk_judge_json_ops,
	&ftk_judge_regex_ops,
	&ftk_judge_llm_ops,
	&ftk_judge_extract_ops,
};

const struct ftk_judge_ops *ftk_judge_registry(size_t i)
{
	return i < FTK_ARRAY_SIZE(registry) ? registry[i] : NULL;
}

const struct ftk_judge_ops *ftk_judge_lookup(const char *name)
{
	for (size_t i = 0; name && i < FTK_ARRAY_SIZE(registry); i++)
		if (!strcmp(registry[i]->name, name))
			return registry[i];
	return NULL;
}

/* ---------------------------------------------------------------- results */

void ftk_judge_result_init(struct ftk_judge_result *r)
{
	memset(r, 0, sizeof(*r));
	r->primary = -1;
	r->detail = cJSON_CreateObject();
}

static void note_free(struct ftk_judge_note *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].kind);
		free(v[i].reason);
	}
	free(v);
}

void ftk_judge_result_release(struct ftk_judge_result *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nmetrics; i++) {
		free(r->metrics[i].name);
		free(r->metrics[i].twin);
		free(r->metrics[i].compare_as);
	}
	free(r->metrics);
	note_free(r->failures, r->nfailures);
	note_free(r->flags, r->nflags);
	cJSON_Delete(r->detail);
	memset(r, 0, sizeof(*r));
	r->primary = -1;
}

size_t ftk_judge_add_metric(struct ftk_judge_result *r, const char *name, double value,
			    int kind, int binary, const char *twin)
{
	FTK_ALLOC_GROW(r->metrics, r->nmetrics + 1, r->metrics_alloc);
	struct ftk_metric *m = &r->metrics[r->nmetrics];
	if (!(value >= 0))	/* also NaN */
		value = 0;
	if (value > 1)
		value = 1;
	m->name = xstrdup(name);
	m->value = value;
	m->kind = kind;
	m->binary = binary;
	m->twin = twin ? xstrdup(twin) : NULL;
	m->compare_as = NULL;
	return r->nmetrics++;
}

static void add_note(struct ftk_judge_note **v, size_t *n, size_t *alloc, const char *kind,
		     const char *fmt, va_list ap)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_vaddf(&sb, fmt, ap);
	FTK_ALLOC_GROW(*v, *n + 1, *alloc);
	(*v)[*n].kind = xstrdup(kind);
	(*v)[*n].reason = strbuf_detach(&sb, NULL);
	(*n)++;
}

void ftk_judge_add_failure(struct ftk_judge_result *r, const char *kind, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	add_note(&r->failures, &r->nfailures, &r->failures_alloc, kind, fmt, ap);
	va_end(ap);
}

void ftk_judge_add_flag(struct ftk_judge_result *r, const char *kind, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	add_note(&r->flags, &r->nflags, &r->flags_alloc, kind, fmt, ap);
	va_end(ap);
}

const struct ftk_metric *ftk_judge_find_metric(const struct ftk_judge_result *r,
					       const char *name)
{
	for (size_t i = 0; r && name && i < r->nmetrics; i++)
		if (!strcmp(r->metrics[i].name, name))
			return &r->metrics[i];
	return NULL;
}

static cJSON *notes_json(const struct ftk_judge_note *v, size_t n)
{
	cJSON *a = cJSON_CreateArray();
	for (size_t i = 0; i < n; i++) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "kind", v[i].kind);
		cJSON_AddStringToObject(o, "reason", v[i].reason);
		cJSON_AddItemToArray(a, o);
	}
	return a;
}

cJSON *ftk_judge_result_to_json(const struct ftk_judge_result *r)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *m = cJSON_AddObjectToObject(o, "metrics");
	for (size_t i = 0; i < r->nmetrics; i++) {
		const struct ftk_metric *x = &r->metrics[i];
		cJSON *e = cJSON_CreateObject();
		cJSON_AddNumberToObject(e, "value", x->value);
		cJSON_AddStringToObject(e, "kind",
					x->kind == FTK_METRIC_SURFACE ? "surface" : "semantic");
		if (x->binary)
			cJSON_AddTrueToObject(e, "binary");
		if (x->twin)
			cJSON_AddStringToObject(e, "twin", x->twin);
		if (x->compare_as)
			cJSON_AddStringToObject(e, "compare_as", x->compare_as);
		cJSON_AddItemToObject(m, x->name, e);
	}
	if (r->primary >= 0 && (size_t)r->primary < r->nmetrics)
		cJSON_AddBoolToObject(o, "pass", r->metrics[r->primary].value >= 0.5);
	cJSON_AddItemToObject(o, "failures", notes_json(r->failures, r->nfailures));
	cJSON_AddItemToObject(o, "flags", notes_json(r->flags, r->nflags));
	cJSON_AddItemToObject(o, "detail",
			      r->detail ? cJSON_Duplicate(r->detail, 1) : cJSON_CreateObject());
	if (r->usage.calls > 0) {
		cJSON *u = cJSON_AddObjectToObject(o, "usage");
		cJSON_AddNumberToObject(u, "calls", (double)r->usage.calls);
		cJSON_AddNumberToObject(u, "cache_hits", (double)r->usage.cache_hits);
		cJSON_AddNumberToObject(u, "prompt_tokens", (double)r->usage.prompt_tokens);
		cJSON_AddNumberToObject(u, "completion_tokens",
					(double)r->usage.completion_tokens);
	}
	return o;
}

/* ----------------------------------------------------------------- judges */

int ftk_judge_create(struct ftk_judge **out, const char *name, const cJSON *settings,
		     const struct ftk_judge_env *env, struct ftk_error *err)
{
	*out = NULL;
	const struct ftk_judge_ops *ops = ftk_judge_lookup(name);
	if (!ops)
		return ftk_error_msg(err, FTK_ENOTFOUND, "unknown judge '%s'", name ? name : "");
	if (settings && !cJSON_IsObject(settings))
		return ftk_error_set(err, FTK_EDATA, NULL, 0, "settings",
				     "judge settings must be an object, not %s",
				     ftk_json_type_name(settings));
	const char *label = name;
	const cJSON *l = settings ? cJSON_GetObjectItemCaseSensitive(settings, "label") : NULL;
	if (l) {
		if (!cJSON_IsString(l) || !l->valuestring[0] || strchr(l->valuestring, '.'))
			return ftk_error_set(err, FTK_EDATA, NULL, 0, "settings.label",
					     "label must be a non-empty string without '.'");
		label = l->valuestring;
	}
	const cJSON *ca = settings ? cJSON_GetObjectItemCaseSensitive(settings, "compare_as") : NULL;
	if (ca && (!cJSON_IsString(ca) || !ca->valuestring[0]))
		return ftk_error_set(err, FTK_EDATA, NULL, 0, "settings.compare_as",
				     "compare_as must be a non-empty string (a method group)");
	void *state = NULL;
	int rc = ops->create(&state, settings, env, err);
	if (rc < 0)
		return rc;
	struct ftk_judge *j = xcalloc(1, sizeof(*j));
	j->ops = ops;
	j->state = state;
	j->label = xstrdup(label);
	j->compare_as = ca ? xstrdup(ca->valuestring) : NULL;
	*out = j;
	return 0;
}

static char *prefixed(const char *label, const char *name)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addf(&sb, "%s.%s", label, name);
	return strbuf_detach(&sb, NULL);
}

int ftk_judge_score(struct ftk_judge *j, const cJSON *kase, const struct ftk_judge_output *out,
		    struct ftk_judge_result *result, struct ftk_error *err)
{
	static const struct ftk_judge_output none = { 0 };
	size_t first = result->nmetrics;
	if (!out)
		out = &none;
	int rc = j->ops->score(j->state, kase, out, result, err);
	if (j->compare_as && result->primary >= (int)first && (size_t)result->primary < result->nmetrics &&
	    !result->metrics[result->primary].compare_as)
		result->metrics[result->primary].compare_as = xstrdup(j->compare_as);
	for (size_t i = first; i < result->nmetrics; i++) {
		struct ftk_metric *m = &result->metrics[i];
		char *n = prefixed(j->label, m->name);
		free(m->name);
		m->name = n;
		if (m->twin && !strchr(m->twin, '.')) {
			n = prefixed(j->label, m->twin);
			free(m->twin);
			m->twin = n;
		}
	}
	return rc;
}

int ftk_judge_check_case(struct ftk_judge *j, const cJSON *kase, struct ftk_judge_result *notes)
{
	return j->ops->check ? j->ops->check(j->state, kase, notes) : 0;
}

void ftk_judge_destroy(struct ftk_judge *j)
{
	if (!j)
		return;
	j->ops->destroy(j->state);
	free(j->label);
	free(j->compare_as);
	free(j);
}

const char *ftk_judge_kind(const struct ftk_judge *j)
{
	return j->ops->name;
}

const char *ftk_judge_label(const struct ftk_judge *j)
{
	return j->label;
}

/* ------------------------------------------------------------ case flags */

static const struct ftk_metric *find_any(const struct ftk_judge_result *const *results,
					 size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++) {
		const struct ftk_metric *m = results[i] ? ftk_judge_find_metric(results[i], name)
							: NULL;
		if (m)
			return m;
	}
	return NULL;
}

void ftk_judge_case_flags(const struct ftk_judge_output *out,
			  const struct ftk_judge_result *const *results,
			  const char *const *labels, size_t n,
			  struct ftk_judge_result *flags)
{
	if (out) {
		int has_text = out->text && out->text[strspn(out->text, " \t\r\n")];
		int has_calls = cJSON_IsArray(out->tool_calls) &&
				cJSON_GetArraySize(out->tool_calls) > 0;
		if (!has_text && !has_calls)
			ftk_judge_add_flag(flags, "empty_output",
					   "the model returned no text and no tool calls");
		if (out->finish_reason && !strcmp(out->finish_reason, "length"))
			ftk_judge_add_flag(flags, "truncated",
					   "the output was cut off at the token limit");
	}
	for (size_t i = 0; i < n; i++) {
		if (!results[i])
			continue;
		for (size_t k = 0; k < results[i]->nmetrics; k++) {
			const struct ftk_metric *s = &results[i]->metrics[k];
			if (s->kind != FTK_METRIC_SURFACE || !s->twin)
				continue;
			const struct ftk_metric *t = find_any(results, n, s->twin);
			if (!t)
				continue;
			if ((s->value >= 0.5) != (t->value >= 0.5))
				ftk_judge_add_flag(flags, "surface_semantic_disagree",
						   "surface metric '%s' is %.3g but its semantic twin '%s' is %.3g",
						   s->name, s->value, t->name, t->value);
		}
	}
	int seen = -1;
	for (size_t i = 0; i < n; i++) {
		const struct ftk_judge_result *r = results[i];
		if (!r || r->primary < 0 || (size_t)r->primary >= r->nmetrics)
			continue;
		if (r->metrics[r->primary].kind == FTK_METRIC_SURFACE)
			continue;	/* surface judges are compared through twins */
		if (seen < 0) {
			seen = (int)i;
			continue;
		}
		const struct ftk_judge_result *a = results[seen];
		int pa = a->metrics[a->primary].value >= 0.5;
		int pb = r->metrics[r->primary].value >= 0.5;
		if (pa != pb) {
			ftk_judge_add_flag(flags, "judges_disagree",
					   "judge '%s' says %s but judge '%s' says %s",
					   labels && labels[seen] ? labels[seen] : "?",
					   pa ? "pass" : "fail",
					   labels && labels[i] ? labels[i] : "?",
					   pb ? "pass" : "fail");
			break;
		}
	}
}
