/*
 * test_toolcall.c: the toolcall judge against BFCL's own accepted answers.
 *
 * Every question of BFCL v4 simple_python (400) and multiple (200), with each
 * accepted answer rendered as a model output, must be judged correct: as
 * Python call syntax (the way BFCL prompts ask) and as OpenAI tool_calls,
 * once with the first accepted value of each parameter and once with the
 * last value and every optional parameter left out.  Then each question is
 * perturbed (wrong function name, wrong value, wrong type, a required
 * parameter dropped, an unknown parameter added) and must be judged wrong
 * with the matching failure kind; pairs of questions make parallel cases
 * that pass in either order and fail with a call dropped.
 */
#include <math.h>
#include <string.h>
#include "testutil.h"
#include "judges/judge.h"
#include "judges/toolcall.h"
#include "lib/json.h"
#include "lib/strbuf.h"

/* ------------------------------------------------------------ fixtures */

struct bfcl {
	cJSON **q, **a;	/* questions and their answers, by line */
	size_t n;
};

static cJSON **read_jsonl(const char *rel, size_t *n)
{
	struct strbuf sb = STRBUF_INIT;
	ck_assert_int_eq(strbuf_read_file(&sb, src_path(rel)), 0);
	cJSON **v = NULL;
	size_t k = 0, alloc = 0;
	char *save = NULL;
	for (char *line = strtok_r(sb.buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		cJSON *o = NULL;
		ck_assert_int_eq(ftk_json_parse(line, strlen(line), &o, NULL), 0);
		FTK_ALLOC_GROW(v, k + 1, alloc);
		v[k++] = o;
	}
	strbuf_release(&sb);
	*n = k;
	return v;
}

static void load(struct bfcl *b, const char *name)
{
	char q[256], a[256];
	size_t nq, na;
	snprintf(q, sizeof(q), "datasets/bfcl/%s", name);
	snprintf(a, sizeof(a), "datasets/bfcl/possible_answer/%s", name);
	b->q = read_jsonl(q, &nq);
	b->a = read_jsonl(a, &na);
	ck_assert_uint_eq(nq, na);
	for (size_t i = 0; i < nq; i++)
		ck_assert_str_eq(ftk_json_get_str(b->q[i], "id"), ftk_json_get_str(b->a[i], "id"));
	b->n = nq;
}

static void unload(struct bfcl *b)
{
	for (size_t i = 0; i < b->n; i++) {
		cJSON_Delete(b->q[i]);
		cJSON_Delete(b->a[i]);
	}
	free(b->q);
	free(b->a);
}

/* A case record from a BFCL question and its ground truth (caller frees). */
static cJSON *make_case(const cJSON *q, const cJSON *a)
{
	cJSON *c = cJSON_CreateObject();
	cJSON_AddStringToObject(c, "id", ftk_json_get_str(q, "id"));
	cJSON_AddItemToObject(c, "tools",
			      cJSON_Duplicate(cJSON_GetObjectItem(q, "function"), 1));
	cJSON *e = cJSON_AddObjectToObject(c, "expected");
	cJSON_AddItemToObject(e, "tool_calls",
			      cJSON_Duplicate(cJSON_GetObjectItem(a, "ground_truth"), 1));
	return c;
}

static const cJSON *tool_params(const cJSON *kase, const char *fname, const char *what)
{
	const cJSON *t;
	cJSON_ArrayForEach(t, cJSON_GetObjectItem(kase, "tools"))
		if (!strcmp(ftk_json_get_str(t, "name"), fname))
			return cJSON_GetObjectItem(cJSON_GetObjectItem(t, "parameters"), what);
	return NULL;
}

static const cJSON *tool_props(const cJSON *kase, const char *fname)
{
	return tool_params(kase, fname, "properties");
}

static const cJSON *tool_req(const cJSON *kase, const char *fname)
{
	return tool_params(kase, fname, "required");
}

/* ------------------------------------------------------------ rendering */

/* Python's repr of a JSON value; float_type writes integral numbers as "5.0". */
static void py_repr(struct strbuf *sb, const cJSON *v, int float_type)
{
	if (cJSON_IsString(v)) {
		strbuf_addch(sb, '\'');
		for (const char *s = v->valuestring; *s; s++) {
			if (*s == '\'' || *s == '\\')
				strbuf_addch(sb, '\\');
			if (*s == '\n')
				strbuf_addstr(sb, "\\n");
			else
				strbuf_addch(sb, *s);
		}
		strbuf_addch(sb, '\'');
	} else if (cJSON_IsBool(v)) {
		strbuf_addstr(sb, cJSON_IsTrue(v) ? "True" : "False");
	} else if (cJSON_IsNull(v)) {
		strbuf_addstr(sb, "None");
	} else if (cJSON_IsNumber(v)) {
		double d = v->valuedouble;
		if (d == floor(d) && fabs(d) < 1e15)
			strbuf_addf(sb, float_type ? "%.1f" : "%.0f", d);
		else
			strbuf_addf(sb, "%.17g", d);
	} else if (cJSON_IsArray(v)) {
		strbuf_addch(sb, '[');
		const cJSON *e;
		int first = 1;
		cJSON_ArrayForEach(e, v) {
			if (!first)
				strbuf_addstr(sb, ", ");
			py_repr(sb, e, float_type);
			first = 0;
		}
		strbuf_addch(sb, ']');
	} else if (cJSON_IsObject(v)) {
		strbuf_addch(sb, '{');
		const cJSON *e;
		int first = 1;
		cJSON_ArrayForEach(e, v) {
			if (!first)
				strbuf_addstr(sb, ", ");
			strbuf_addf(sb, "'%s': ", e->string);
			py_repr(sb, e, 0);
			first = 0;
		}
		strbuf_addch(sb, '}');
	}
}

/*
 * One call rendered from the ground truth: {name, args} with, for each
 * parameter, the first (pick 0) or last (pick 1) accepted value that is not
 * ""; pick 1 also leaves out every parameter that may be omitted.
 * An accepted dict answer is itself {key: [accepted]}: take its first values.
 */
static cJSON *choose(const cJSON *v)
{
	if (cJSON_IsObject(v)) {
		cJSON *o = cJSON_CreateObject();
		const cJSON *e;
		cJSON_ArrayForEach(e, v) {
			const cJSON *x = NULL, *a;
			cJSON_ArrayForEach(a, e) if (!(cJSON_IsString(a) && !a->valuestring[0])) {
				x = a;
				break;
			}
			if (x)
				cJSON_AddItemToObject(o, e->string, choose(x));
		}
		return o;
	}
	if (cJSON_IsArray(v)) {
		cJSON *o = cJSON_CreateArray();
		const cJSON *e;
		cJSON_ArrayForEach(e, v) cJSON_AddItemToArray(o, choose(e));
		return o;
	}
	return cJSON_Duplicate(v, 1);
}

static cJSON *render_args(const cJSON *gt_call, int pick, const cJSON *required)
{
	cJSON *args = cJSON_CreateObject();
	const cJSON *p;
	cJSON_ArrayForEach(p, gt_call->child) {
		const cJSON *val = NULL, *a;
		int optional = 0;
		cJSON_ArrayForEach(a, p) {
			if (cJSON_IsString(a) && !a->valuestring[0]) {
				optional = 1;
				continue;
			}
			if (!val || pick == 1)
				val = a;
		}
		int req = 0;
		const cJSON *r;
		cJSON_ArrayForEach(r, required) req |= !strcmp(r->valuestring, p->string);
		if (!val || (pick == 1 && optional && !req))
			continue;
		cJSON_AddItemToObject(args, p->string, choose(val));
	}
	return args;
}

static void python_call(struct strbuf *sb, const char *name, const cJSON *args,
			const cJSON *props)
{
	strbuf_addf(sb, "%s(", name);
	const cJSON *e;
	int first = 1;
	cJSON_ArrayForEach(e, args) {
		const cJSON *prop = props ? cJSON_GetObjectItem(props, e->string) : NULL;
		const char *t = ftk_json_get_str(prop, "type");
		if (!first)
			strbuf_addstr(sb, ", ");
		strbuf_addf(sb, "%s=", e->string);
		py_repr(sb, e, t && !strcmp(t, "float"));
		first = 0;
	}
	strbuf_addch(sb, ')');
}

static cJSON *openai_call(const char *name, const cJSON *args)
{
	cJSON *c = cJSON_CreateObject();
	cJSON_AddStringToObject(c, "type", "function");
	cJSON *f = cJSON_AddObjectToObject(c, "function");
	cJSON_AddStringToObject(f, "name", name);
	char *s = cJSON_PrintUnformatted(args);
	cJSON_AddStringToObject(f, "arguments", s);
	free(s);
	return c;
}

/* -------------------------------------------------------------- judging */

struct verdict {
	int correct;
	char kind[64];
	char reason[512];
};

static struct verdict judge(struct ftk_judge *j, const cJSON *kase, const char *text,
			    const cJSON *tool_calls)
{
	struct ftk_judge_output out = { text, tool_calls, "stop" };
	struct ftk_judge_result r;
	struct ftk_error e;
	struct verdict v = { 0, "", "" };
	ftk_judge_result_init(&r);
	int rc = ftk_judge_score(j, kase, &out, &r, &e);
	ck_assert_msg(rc == 0, "%s: %s", ftk_json_get_str(kase, "id"), e.msg);
	const struct ftk_metric *m = ftk_judge_find_metric(&r, "toolcall.correct");
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(r.primary >= 0, 1);
	v.correct = m->value == 1;
	if (r.nfailures) {
		snprintf(v.kind, sizeof(v.kind), "%s", r.failures[0].kind);
		snprintf(v.reason, sizeof(v.reason), "%s", r.failures[0].reason);
	}
	ck_assert_int_eq(v.correct, r.nfailures == 0);
	ftk_judge_result_release(&r);
	return v;
}

static struct ftk_judge *new_judge(const char *settings)
{
	struct ftk_judge *j;
	struct ftk_error e;
	cJSON *s = settings ? cJSON_Parse(settings) : NULL;
	ck_assert_msg(ftk_judge_create(&j, "toolcall", s, NULL, &e) == 0, "%s", e.msg);
	cJSON_Delete(s);
	return j;
}

static void accepted_all(const char *file)
{
	struct bfcl b;
	load(&b, file);
	struct ftk_judge *j = new_judge(NULL);
	size_t judged = 0;
	for (size_t i = 0; i < b.n; i++) {
		cJSON *kase = make_case(b.q[i], b.a[i]);
		const cJSON *gt = cJSON_GetObjectItem(b.a[i], "ground_truth");
		for (int pick = 0; pick < 2; pick++) {
			struct strbuf py = STRBUF_INIT;
			cJSON *tc = cJSON_CreateArray();
			const cJSON *call;
			strbuf_addch(&py, '[');
			cJSON_ArrayForEach(call, gt) {
				const char *name = call->child->string;
				cJSON *args = render_args(call, pick, tool_req(kase, name));
				if (py.len > 1)
					strbuf_addstr(&py, ", ");
				python_call(&py, name, args, tool_props(kase, name));
				cJSON_AddItemToArray(tc, openai_call(name, args));
				cJSON_Delete(args);
			}
			strbuf_addch(&py, ']');
			struct verdict v = judge(j, kase, py.buf, NULL);
			ck_assert_msg(v.correct, "%s (python, pick %d) %s judged wrong: %s: %s",
				      ftk_json_get_str(kase, "id"), pick, py.buf, v.kind, v.reason);
			v = judge(j, kase, NULL, tc);
			ck_assert_msg(v.correct, "%s (tool_calls, pick %d) judged wrong: %s: %s",
				      ftk_json_get_str(kase, "id"), pick, v.kind, v.reason);
			judged += 2;
			strbuf_release(&py);
			cJSON_Delete(tc);
		}
		cJSON_Delete(kase);
	}
	printf("%s: %zu accepted renderings of %zu questions judged correct\n", file, judged, b.n);
	ftk_judge_destroy(j);
	unload(&b);
}

START_TEST(bfcl_simple_accepted)
{
	accepted_all("BFCL_v4_simple_python.json");
}
END_TEST

START_TEST(bfcl_multiple_accepted)
{
	accepted_all("BFCL_v4_multiple.json");
}
END_TEST

/*
 * BFCL's string standardization: every accepted answer with its string
 * arguments upper-cased and their spaces turned into "_" and "-" is still
 * correct; with a letter changed it is not.
 */
static void restyle(cJSON *args, const cJSON *props, int mode)
{
	cJSON *a;
	cJSON_ArrayForEach(a, args) {
		const char *t = ftk_json_get_str(cJSON_GetObjectItem(props, a->string), "type");
		if (!t || strcmp(t, "string") || !cJSON_IsString(a) || !a->valuestring[0])
			continue;
		char *v = strdup(a->valuestring);
		for (char *c = v; *c; c++) {
			if (mode == 0 && *c == ' ')
				*c = (c - v) % 2 ? '_' : '-';
			else if (mode == 0 && *c >= 'a' && *c <= 'z')
				*c = (char)(*c - 32);
		}
		if (mode == 1) {	/* change one letter */
			for (char *c = v; *c; c++)
				if ((*c >= 'a' && *c <= 'y') || (*c >= 'A' && *c <= 'Y')) {
					(*c)++;
					break;
				}
		}
		cJSON_SetValuestring(a, v);
		free(v);
	}
}

START_TEST(bfcl_string_standardization)
{
	static const char *const files[] = { "BFCL_v4_simple_python.json", "BFCL_v4_multiple.json" };
	struct ftk_judge *j = new_judge(NULL);
	size_t restyled = 0, changed = 0;
	for (int f = 0; f < 2; f++) {
		struct bfcl b;
		load(&b, files[f]);
		for (size_t i = 0; i < b.n; i++) {
			cJSON *kase = make_case(b.q[i], b.a[i]);
			const cJSON *gt = cJSON_GetObjectItem(b.a[i], "ground_truth")->child;
			const char *name = gt->child->string;
			const cJSON *props = tool_props(kase, name);
			cJSON *args = render_args(gt, 0, NULL);
			cJSON *orig = cJSON_Duplicate(args, 1);
			restyle(args, props, 0);
			if (!cJSON_Compare(args, orig, 1)) {
				struct strbuf py = STRBUF_INIT;
				python_call(&py, name, args, props);
				struct verdict v = judge(j, kase, py.buf, NULL);
				ck_assert_msg(v.correct, "%s: %s: %s", ftk_json_get_str(kase, "id"), py.buf, v.reason);
				strbuf_release(&py);
				restyled++;
			}
			cJSON_Delete(args);
			args = cJSON_Duplicate(orig, 1);
			restyle(args, props, 1);
			if (!cJSON_Compare(args, orig, 1)) {
				struct strbuf py = STRBUF_INIT;
				python_call(&py, name, args, props);
				struct verdict v = judge(j, kase, py.buf, NULL);
				/* a changed letter may land on another accepted value: rare, allowed */
				if (!v.correct) {
					ck_assert_str_eq(v.kind, "value_error:string");
					changed++;
				}
				strbuf_release(&py);
			}
			cJSON_Delete(args);
			cJSON_Delete(orig);
			cJSON_Delete(kase);
		}
		unload(&b);
	}
	printf("standardization: %zu restyled answers accepted, %zu with a changed letter refused\n",
	       restyled, changed);
	ck_assert_uint_ge(restyled, 400);
	ck_assert_uint_ge(changed, 400);
	ftk_judge_destroy(j);
}
END_TEST

/* BFCL's type rules that rendering from the answers cannot reach. */
START_TEST(bfcl_type_rules)
{
	cJSON *kase = cJSON_Parse(
		"{\"id\":\"t\",\"tools\":[{\"name\":\"f\",\"parameters\":{\"type\":\"dict\",\"properties\":{"
		"\"x\":{\"type\":\"float\"},\"n\":{\"type\":\"integer\"},"
		"\"v\":{\"type\":\"array\",\"items\":{\"type\":\"float\"}},"
		"\"s\":{\"type\":\"string\"}},\"required\":[\"x\"]}}],"
		"\"expected\":{\"tool_calls\":[{\"f\":{\"x\":[2.5,3],\"n\":[\"\",4],\"v\":[\"\",[1.5,2]],"
		"\"s\":[\"\",\"my_var\"]}}]}}");
	struct ftk_judge *j = new_judge(NULL);
	struct verdict v = judge(j, kase, "f(x=3)", NULL);	/* an int for a float */
	ck_assert_msg(v.correct, "%s", v.reason);
	v = judge(j, kase, "f(x=3.0, n=4)", NULL);
	ck_assert_msg(v.correct, "%s", v.reason);
	v = judge(j, kase, "f(x=3.0, n=4.0)", NULL);	/* 4.0 is not an integer */
	ck_assert_str_eq(v.kind, "type_error:integer");
	v = judge(j, kase, "f(x='3')", NULL);
	ck_assert_str_eq(v.kind, "type_error:float");
	v = judge(j, kase, "f(x=2.5, v=[1.5, 2])", NULL);
	ck_assert_msg(v.correct, "%s", v.reason);
	/* BFCL checks item types against each accepted list, and "" (optional)
	   counts as a pass there: the item type error shows as a value error */
	v = judge(j, kase, "f(x=2.5, v=[1.5, 'a'])", NULL);
	ck_assert_str_eq(v.kind, "value_error:list");
	v = judge(j, kase, "f(x=2.5, v=[2, 1.5])", NULL);	/* lists keep their order */
	ck_assert_str_eq(v.kind, "value_error:list");
	v = judge(j, kase, "f(x=2.5, s=my_var)", NULL);	/* a bare name is kept as a string */
	ck_assert_msg(v.correct, "%s", v.reason);
	v = judge(j, kase, "f(x=2.5, 4)", NULL);
	ck_assert_str_eq(v.kind, "positional_arg");
	cJSON *e = cJSON_GetObjectItem(kase, "expected");
	cJSON_ReplaceItemInObject(e, "tool_calls", cJSON_Parse("[{\"f\":{\"x\":[2.5],\"v\":[[1.5,2]]}}]"));
	v = judge(j, kase, "f(x=2.5, v=[1.5, 'a'])", NULL);
	ck_assert_str_eq(v.kind, "type_error:nested");
	v = judge(j, kase, "f(x=2.5)", NULL);
	ck_assert_str_eq(v.kind, "missing_optional");
	ftk_judge_destroy(j);
	cJSON_Delete(kase);
}
END_TEST

/* ---------------------------------------------------------- perturbations */

static int in_answers(const cJSON *answers, const cJSON *v)
{
	const cJSON *a;
	cJSON_ArrayForEach(a, answers) if (cJSON_Compare(a, v, 1)) return 1;
	return 0;
}

/* Judge args (python syntax) and check the verdict is wrong with kind. */
static void expect_wrong(struct ftk_judge *j, const cJSON *kase, const char *name,
			 const cJSON *args, const char *kind, size_t *count)
{
	struct strbuf py = STRBUF_INIT;
	python_call(&py, name, args, tool_props(kase, name));
	struct verdict v = judge(j, kase, py.buf, NULL);
	ck_assert_msg(!v.correct, "%s: perturbed call %s judged correct", ftk_json_get_str(kase, "id"),
		      py.buf);
	ck_assert_msg(!strcmp(v.kind, kind), "%s: %s: kind %s, expected %s (%s)",
		      ftk_json_get_str(kase, "id"), py.buf, v.kind, kind, v.reason);
	/* and the same as OpenAI tool_calls */
	cJSON *tc = cJSON_CreateArray();
	cJSON_AddItemToArray(tc, openai_call(name, args));
	v = judge(j, kase, NULL, tc);
	ck_assert_msg(!v.correct && !strcmp(v.kind, kind) ? 1 :
		      /* JSON cannot say 5.0 is a float: an int-for-float swap is invisible */
		      !strcmp(kind, "type_error:integer"),
		      "%s: tool_calls %s: kind %s, expected %s", ftk_json_get_str(kase, "id"), py.buf,
		      v.kind, kind);
	cJSON_Delete(tc);
	strbuf_release(&py);
	(*count)++;
}

static void perturb_all(const char *file)
{
	struct bfcl b;
	load(&b, file);
	struct ftk_judge *j = new_judge(NULL);
	size_t n_func = 0, n_value = 0, n_type = 0, n_missing = 0, n_extra = 0;
	for (size_t i = 0; i < b.n; i++) {
		cJSON *kase = make_case(b.q[i], b.a[i]);
		const cJSON *gt_call = cJSON_GetObjectItem(b.a[i], "ground_truth")->child;
		const char *name = gt_call->child->string;
		const cJSON *props = tool_props(kase, name);
		const cJSON *tool = NULL, *t;
		cJSON_ArrayForEach(t, cJSON_GetObjectItem(kase, "tools"))
			if (!strcmp(ftk_json_get_str(t, "name"), name))
				tool = t;
		cJSON *args = render_args(gt_call, 0, NULL);

		/* wrong function */
		char other[300];
		snprintf(other, sizeof(other), "%s_v2", name);
		expect_wrong(j, kase, other, args, "wrong_function", &n_func);

		/* extra parameter */
		cJSON *x = cJSON_Duplicate(args, 1);
		cJSON_AddNumberToObject(x, "zz_not_a_param", 1);
		expect_wrong(j, kase, name, x, "unexpected_param", &n_extra);
		cJSON_Delete(x);

		/* missing required */
		const cJSON *req = cJSON_GetObjectItem(cJSON_GetObjectItem(tool, "parameters"), "required");
		if (cJSON_GetArraySize(req) > 0 &&
		    cJSON_GetObjectItem(args, cJSON_GetArrayItem(req, 0)->valuestring)) {
			x = cJSON_Duplicate(args, 1);
			cJSON_DeleteItemFromObject(x, cJSON_GetArrayItem(req, 0)->valuestring);
			expect_wrong(j, kase, name, x, "missing_required", &n_missing);
			cJSON_Delete(x);
		}

		/* wrong value and wrong type, on the first scalar parameter that allows it */
		int did_value = 0, did_type = 0;
		const cJSON *a;
		cJSON_ArrayForEach(a, args) {
			const cJSON *prop = cJSON_GetObjectItem(props, a->string);
			const char *type = ftk_json_get_str(prop, "type");
			const cJSON *answers = cJSON_GetObjectItem(gt_call->child, a->string);
			if (!type || cJSON_IsNull(a))
				continue;
			cJSON *bad = NULL, *badtype = NULL;
			char vkind[64], tkind[64];
			snprintf(vkind, sizeof(vkind), "value_error:%s", type);
			snprintf(tkind, sizeof(tkind), "type_error:%s", type);
			if (!strcmp(type, "string") && cJSON_IsString(a)) {
				struct strbuf sb = STRBUF_INIT;
				strbuf_addf(&sb, "%s zq", a->valuestring);
				bad = cJSON_CreateString(sb.buf);
				strbuf_release(&sb);
				badtype = cJSON_CreateNumber(12345);
			} else if (!strcmp(type, "integer") && cJSON_IsNumber(a)) {
				bad = cJSON_CreateNumber(a->valuedouble + 1000);
				badtype = cJSON_CreateNumber(a->valuedouble + 0.5);
			} else if (!strcmp(type, "float") && cJSON_IsNumber(a)) {
				bad = cJSON_CreateNumber(a->valuedouble + 1000.25);
				badtype = cJSON_CreateString("not a number");
			} else if (!strcmp(type, "boolean") && cJSON_IsBool(a)) {
				bad = cJSON_CreateBool(!cJSON_IsTrue(a));
				badtype = cJSON_CreateString("yes");
			}
			if (bad && !did_value && !in_answers(answers, bad)) {
				x = cJSON_Duplicate(args, 1);
				cJSON_ReplaceItemInObject(x, a->string, bad);
				bad = NULL;
				expect_wrong(j, kase, name, x, vkind, &n_value);
				cJSON_Delete(x);
				did_value = 1;
			}
			if (badtype && !did_type) {
				x = cJSON_Duplicate(args, 1);
				cJSON_ReplaceItemInObject(x, a->string, badtype);
				badtype = NULL;
				expect_wrong(j, kase, name, x, tkind, &n_type);
				cJSON_Delete(x);
				did_type = 1;
			}
			cJSON_Delete(bad);
			cJSON_Delete(badtype);
		}
		cJSON_Delete(args);
		cJSON_Delete(kase);
	}
	printf("%s: wrong_function %zu, unexpected_param %zu, missing_required %zu, value_error %zu, type_error %zu\n",
	       file, n_func, n_extra, n_missing, n_value, n_type);
	ck_assert_uint_eq(n_func, b.n);
	ck_assert_uint_ge(n_value, b.n * 9 / 10);
	ck_assert_uint_ge(n_type, b.n * 9 / 10);
	ck_assert_uint_ge(n_missing, b.n * 9 / 10);
	ftk_judge_destroy(j);
	unload(&b);
}

START_TEST(bfcl_simple_perturbed)
{
	perturb_all("BFCL_v4_simple_python.json");
}
END_TEST

START_TEST(bfcl_multiple_perturbed)
{
	perturb_all("BFCL_v4_multiple.json");
}
END_TEST

/* Pairs of simple questions as parallel cases: any order passes, a dropped call fails. */
START_TEST(bfcl_parallel_pairs)
{
	struct bfcl b;
	load(&b, "BFCL_v4_simple_python.json");
	struct ftk_judge *j = new_judge(NULL);
	struct ftk_judge *js = new_judge("{\"order\":\"strict\"}");
	size_t pairs = 0;
	for (size_t i = 0; i + 1 < b.n; i += 2) {
		const char *n1 = cJSON_GetObjectItem(b.a[i], "ground_truth")->child->child->string;
		const char *n2 = cJSON_GetObjectItem(b.a[i + 1], "ground_truth")->child->child->string;
		if (!strcmp(n1, n2))
			continue;	/* same tool twice: its schema would be declared twice */
		cJSON *kase = make_case(b.q[i], b.a[i]);
		cJSON *tools = cJSON_GetObjectItem(kase, "tools");
		cJSON *gt = cJSON_GetObjectItem(cJSON_GetObjectItem(kase, "expected"), "tool_calls");
		const cJSON *t;
		cJSON_ArrayForEach(t, cJSON_GetObjectItem(b.q[i + 1], "function"))
			cJSON_AddItemToArray(tools, cJSON_Duplicate(t, 1));
		cJSON_AddItemToArray(gt, cJSON_Duplicate(cJSON_GetObjectItem(b.a[i + 1], "ground_truth")->child, 1));
		cJSON *a1 = render_args(gt->child, 0, NULL), *a2 = render_args(gt->child->next, 0, NULL);
		struct strbuf fwd = STRBUF_INIT, rev = STRBUF_INIT, one = STRBUF_INIT;
		strbuf_addch(&fwd, '[');
		python_call(&fwd, n1, a1, tool_props(kase, n1));
		strbuf_addstr(&fwd, ", ");
		python_call(&fwd, n2, a2, tool_props(kase, n2));
		strbuf_addch(&fwd, ']');
		strbuf_addch(&rev, '[');
		python_call(&rev, n2, a2, tool_props(kase, n2));
		strbuf_addstr(&rev, ", ");
		python_call(&rev, n1, a1, tool_props(kase, n1));
		strbuf_addch(&rev, ']');
		python_call(&one, n2, a2, tool_props(kase, n2));
		struct verdict v = judge(j, kase, fwd.buf, NULL);
		ck_assert_msg(v.correct, "%s: %s: %s", fwd.buf, v.kind, v.reason);
		v = judge(j, kase, rev.buf, NULL);
		ck_assert_msg(v.correct, "%s: %s: %s", rev.buf, v.kind, v.reason);
		v = judge(js, kase, fwd.buf, NULL);
		ck_assert_msg(v.correct, "strict %s: %s", fwd.buf, v.kind);
		v = judge(js, kase, rev.buf, NULL);
		ck_assert_msg(!v.correct, "strict order accepted %s", rev.buf);
		v = judge(j, kase, one.buf, NULL);
		ck_assert_msg(!v.correct && !strcmp(v.kind, "wrong_count"), "dropped call: %s %s",
			      one.buf, v.kind);
		strbuf_release(&fwd);
		strbuf_release(&rev);
		strbuf_release(&one);
		cJSON_Delete(a1);
		cJSON_Delete(a2);
		cJSON_Delete(kase);
		pairs++;
	}
	printf("parallel: %zu pairs pass in both orders and fail with a call dropped\n", pairs);
	ck_assert_uint_ge(pairs, 150);
	ftk_judge_destroy(j);
	ftk_judge_destroy(js);
	unload(&b);
}
END_TEST

/* ------------------------------------------------------------- the parser */

START_TEST(python_syntax)
{
	struct ftk_calls c = { 0 };
	struct ftk_error e;
	ck_assert_int_eq(ftk_calls_parse_python(
		"[a.b(x=1, y=2.0, s='it\\'s', t=\"q\", l=[1, (2, 3)], d={'k': None}, f=True), c()]",
		&c, &e), 0);
	ck_assert_uint_eq(c.n, 2);
	ck_assert_str_eq(c.v[0].name, "a.b");
	ck_assert_str_eq(c.v[1].name, "c");
	char *s = cJSON_PrintUnformatted(c.v[0].args);
	ck_assert_str_eq(s, "{\"x\":1,\"y\":2,\"s\":\"it's\",\"t\":\"q\",\"l\":[1,[2,3]],\"d\":{\"k\":null},\"f\":true}");
	free(s);
	ck_assert_uint_eq(c.v[0].nfloats, 1);	/* 2.0 */
	ck_assert_ptr_eq(c.v[0].floats[0], cJSON_GetObjectItem(c.v[0].args, "y"));
	ftk_calls_release(&c);
	ck_assert_int_eq(ftk_calls_parse_python("f(x=1", &c, &e), FTK_EDATA);
	ck_assert_uint_eq(c.n, 0);
	ck_assert_int_eq(ftk_calls_parse_python("f(x=1) and then", &c, &e), FTK_EDATA);
	ck_assert_int_eq(ftk_calls_parse_python("f(1, y=2)", &c, &e), 0);
	ck_assert_int_eq(c.v[0].positional, 1);
	ftk_calls_release(&c);
}
END_TEST

START_TEST(extract_forms)
{
	struct ftk_calls c;
	struct ftk_error e;
	const char *names[] = { "get_weather" };
	struct ftk_judge_output o = { "Sure. <tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"t\": 1.0}}</tool_call>",
				      NULL, NULL };
	ck_assert_int_eq(ftk_calls_extract(&o, names, 1, &c, &e), 0);
	ck_assert_str_eq(c.source, "json");
	ck_assert_uint_eq(c.n, 1);
	ck_assert_str_eq(ftk_json_get_str(c.v[0].args, "city"), "Paris");
	ck_assert_uint_eq(c.v[0].nfloats, 1);
	ftk_calls_release(&c);
	o.text = "I will call get_weather(city=\"Oslo\") now.";
	ck_assert_int_eq(ftk_calls_extract(&o, names, 1, &c, &e), 0);
	ck_assert_str_eq(c.source, "python");
	ck_assert_uint_eq(c.n, 1);
	ftk_calls_release(&c);
	o.text = "```python\nget_weather(city='Rome')\n```";
	ck_assert_int_eq(ftk_calls_extract(&o, names, 1, &c, &e), 0);
	ck_assert_uint_eq(c.n, 1);
	ftk_calls_release(&c);
	o.text = "The weather is nice.";
	ck_assert_int_eq(ftk_calls_extract(&o, names, 1, &c, &e), 0);
	ck_assert_uint_eq(c.n, 0);
	ck_assert_str_eq(c.source, "none");
	ftk_calls_release(&c);
	/* a malformed tool_calls field is the model's defect, not an error */
	cJSON *bad = cJSON_Parse("[{\"function\":{}}]");
	o.tool_calls = bad;
	ck_assert_int_eq(ftk_calls_extract(&o, names, 1, &c, &e), 0);
	ck_assert_uint_eq(c.malformed, 1);
	ck_assert_str_eq(c.malformed_reason, "tool_calls[0].function.name is missing, not a function name");
	ftk_calls_release(&c);
	cJSON_Delete(bad);
}
END_TEST

/*
 * Issue 17.1: a server answered with calls whose name is null.  Each such
 * answer is scored wrong as "malformed_call" (before, the judge returned an
 * error and the case dropped out of the denominator), and so is every other
 * break of the protocol, even next to a call that would match.
 */
START_TEST(malformed_calls_are_wrong)
{
	cJSON *kase = cJSON_Parse(
		"{\"id\":\"m\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\","
		"\"parameters\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"integer\"}},"
		"\"required\":[\"x\"]}}}],\"expected\":{\"tool_calls\":[{\"f\":{\"x\":[1]}}]}}");
	struct ftk_judge *j = new_judge(NULL);
	static const struct {
		const char *calls, *reason;
	} bad[] = {
		{ "[{\"type\":\"function\",\"function\":{\"name\":null,\"arguments\":\"{\\\"x\\\":1}\"}}]",
		  "tool_calls[0].function.name is null, not a function name" },
		{ "[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"x\\\":1}\"}},"
		  "{\"type\":\"function\",\"function\":{\"name\":7}}]",
		  "tool_calls[1].function.name is a number, not a function name" },
		{ "[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"x=1\"}}]",
		  "tool_calls[0].function.arguments of 'f' is not a JSON object" },
		{ "[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":[1]}}]",
		  "tool_calls[0].function.arguments of 'f' is not an object" },
		{ "[\"f(x=1)\"]", "tool_calls[0] is a string, not an object" },
		{ "{\"name\":\"f\"}", "tool_calls is an object, not a list" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cJSON *tc = cJSON_Parse(bad[i].calls);
		ck_assert_ptr_nonnull(tc);
		struct verdict v = judge(j, kase, NULL, tc);
		ck_assert_msg(!v.correct, "case %zu scored correct", i);
		ck_assert_str_eq(v.kind, "malformed_call");
		ck_assert_str_eq(v.reason, bad[i].reason);
		cJSON_Delete(tc);
	}
	/* and the well-formed call next to them is right */
	cJSON *ok = cJSON_Parse("[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"x\\\":1}\"}}]");
	ck_assert(judge(j, kase, NULL, ok).correct);
	cJSON_Delete(ok);
	ftk_judge_destroy(j);
	cJSON_Delete(kase);
}
END_TEST

/* Schema validation beyond BFCL: an enum the accepted answers do not cover. */
START_TEST(schema_checked)
{
	cJSON *kase = cJSON_Parse(
		"{\"id\":\"s1\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"set\","
		"\"parameters\":{\"type\":\"object\",\"properties\":{\"mode\":{\"type\":\"string\","
		"\"enum\":[\"on\",\"off\"]}},\"required\":[\"mode\"]}}}],"
		"\"expected\":{\"tool_calls\":[{\"set\":{\"mode\":[\"on\",\"auto\"]}}]}}");
	struct ftk_judge *j = new_judge("{\"schema\":\"require\"}");
	struct verdict v = judge(j, kase, "set(mode='on')", NULL);
	ck_assert(v.correct);
	v = judge(j, kase, "set(mode='auto')", NULL);
	ck_assert(!v.correct);
	ck_assert_str_eq(v.kind, "schema:enum");
	ftk_judge_destroy(j);
	j = new_judge("{\"schema\":\"report\"}");
	v = judge(j, kase, "set(mode='auto')", NULL);
	ck_assert(v.correct);
	ftk_judge_destroy(j);
	/* OpenAI-form expectations: exact values */
	cJSON_ReplaceItemInObject(cJSON_GetObjectItem(kase, "expected"), "tool_calls",
				  cJSON_Parse("[{\"type\":\"function\",\"function\":{\"name\":\"set\",\"arguments\":\"{\\\"mode\\\":\\\"off\\\"}\"}}]"));
	j = new_judge(NULL);
	v = judge(j, kase, "set(mode='OFF')", NULL);	/* BFCL standardization: case-blind */
	ck_assert(v.correct);
	v = judge(j, kase, "set(mode='on')", NULL);
	ck_assert_str_eq(v.kind, "value_error:string");
	v = judge(j, kase, "", NULL);
	ck_assert_str_eq(v.kind, "no_call");
	/* without tools, values compare as the answers' type (strings standardized) */
	cJSON_DeleteItemFromObject(kase, "tools");
	v = judge(j, kase, "set(mode='Off')", NULL);
	ck_assert_msg(v.correct, "%s", v.reason);
	v = judge(j, kase, "set(mode='on')", NULL);
	ck_assert_str_eq(v.kind, "value_error:string");
	v = judge(j, kase, "set(mode='off', x=1)", NULL);
	ck_assert_str_eq(v.kind, "unexpected_param");
	ftk_judge_destroy(j);
	cJSON_Delete(kase);
}
END_TEST

/*
 * Issue 17.9: BFCL's greedy pairing of parallel calls.  Built on the shape
 * of BFCL's simple_python_0 (calculate_triangle_area, "unit" optional): the
 * first expected call accepts a call with or without "unit", the second
 * needs "unit".  A model that writes the call with "unit" first has it
 * taken by the first expected call, and BFCL then rejects the pair; a
 * one-to-one matching pairs them the other way and accepts.
 */
static cJSON *triangle_case(const char *second_unit)
{
	char buf[1400];
	snprintf(buf, sizeof(buf),
		 "{\"id\":\"parallel_tri\",\"tools\":[{\"name\":\"calculate_triangle_area\","
		 "\"description\":\"Calculate the area of a triangle given its base and height.\","
		 "\"parameters\":{\"type\":\"dict\",\"properties\":{\"base\":{\"type\":\"integer\"},"
		 "\"height\":{\"type\":\"integer\"},\"unit\":{\"type\":\"string\"}},"
		 "\"required\":[\"base\",\"height\"]}}],"
		 "\"expected\":{\"tool_calls\":["
		 "{\"calculate_triangle_area\":{\"base\":[10],\"height\":[5],\"unit\":[\"units\",\"\"]}},"
		 "{\"calculate_triangle_area\":{\"base\":[10],\"height\":[5],\"unit\":[%s]}}]}}",
		 second_unit);
	cJSON *c = cJSON_Parse(buf);
	ck_assert_ptr_nonnull(c);
	return c;
}

struct scored {
	int correct;
	char kind[64];
	int order_dependent;
	int matched[4];		/* detail calls[i].matched, -1 for null */
};

static struct scored score_calls(struct ftk_judge *j, const cJSON *kase, const char *text)
{
	struct ftk_judge_output out = { text, NULL, "stop" };
	struct ftk_judge_result r;
	struct ftk_error e;
	struct scored s = { 0, "", 0, { -1, -1, -1, -1 } };
	ftk_judge_result_init(&r);
	ck_assert_msg(ftk_judge_score(j, kase, &out, &r, &e) == 0, "%s", e.msg);
	s.correct = ftk_judge_find_metric(&r, "toolcall.correct")->value == 1;
	if (r.nfailures)
		snprintf(s.kind, sizeof(s.kind), "%s", r.failures[0].kind);
	for (size_t i = 0; i < r.nflags; i++)
		s.order_dependent += !strcmp(r.flags[i].kind, "order_dependent");
	int i = 0;
	const cJSON *c;
	cJSON_ArrayForEach(c, cJSON_GetObjectItem(r.detail, "calls")) {
		const cJSON *m = cJSON_GetObjectItem(c, "matched");
		if (i < 4)
			s.matched[i++] = cJSON_IsNumber(m) ? m->valueint : -1;
	}
	ftk_judge_result_release(&r);
	return s;
}

START_TEST(parallel_matching)
{
	cJSON *kase = triangle_case("\"units\"");
	struct ftk_judge *jm = new_judge(NULL);
	struct ftk_judge *jb = new_judge("{\"matching\":\"bfcl\"}");
	const char *with_first = "[calculate_triangle_area(base=10, height=5, unit='units'), "
				 "calculate_triangle_area(base=10, height=5)]";
	const char *without_first = "[calculate_triangle_area(base=10, height=5), "
				    "calculate_triangle_area(base=10, height=5, unit='units')]";
	/* the order greedy rejects: accepted by default, flagged */
	struct scored s = score_calls(jm, kase, with_first);
	ck_assert_msg(s.correct, "one-to-one matching rejected a valid order: %s", s.kind);
	ck_assert_int_eq(s.order_dependent, 1);
	ck_assert_int_eq(s.matched[0], 1);	/* the call with "unit" is the second expected one */
	ck_assert_int_eq(s.matched[1], 0);
	/* "matching": "bfcl" keeps BFCL's verdict, and flags it too */
	s = score_calls(jb, kase, with_first);
	ck_assert(!s.correct);
	ck_assert_str_eq(s.kind, "missing_optional");
	ck_assert_int_eq(s.order_dependent, 1);
	ck_assert_int_eq(s.matched[0], 0);
	ck_assert_int_eq(s.matched[1], -1);
	/* the order greedy accepts: both agree, nothing to flag */
	s = score_calls(jm, kase, without_first);
	ck_assert(s.correct);
	ck_assert_int_eq(s.order_dependent, 0);
	s = score_calls(jb, kase, without_first);
	ck_assert(s.correct);
	ck_assert_int_eq(s.order_dependent, 0);
	/* no pairing can work (neither call gives "unit"): both reject, no flag */
	s = score_calls(jm, kase, "[calculate_triangle_area(base=10, height=5), calculate_triangle_area(base=10, height=5)]");
	ck_assert(!s.correct);
	ck_assert_str_eq(s.kind, "missing_optional");
	ck_assert_int_eq(s.order_dependent, 0);
	/* a wrong count is wrong whatever the pairing */
	s = score_calls(jm, kase, "[calculate_triangle_area(base=10, height=5, unit='units')]");
	ck_assert(!s.correct);
	ck_assert_str_eq(s.kind, "wrong_count");
	ck_assert_int_eq(s.order_dependent, 0);
	ftk_judge_destroy(jm);
	ftk_judge_destroy(jb);
	cJSON_Delete(kase);

	/* a longer chain: three calls, each expected call but the last accepts two */
	kase = cJSON_Parse("{\"id\":\"chain\",\"tools\":[{\"name\":\"f\",\"parameters\":{\"type\":\"dict\","
			   "\"properties\":{\"a\":{\"type\":\"integer\"}},\"required\":[]}}],"
			   "\"expected\":{\"tool_calls\":[{\"f\":{\"a\":[1,2]}},{\"f\":{\"a\":[2,3]}},{\"f\":{\"a\":[1]}}]}}");
	jm = new_judge(NULL);
	jb = new_judge("{\"matching\":\"bfcl\"}");
	s = score_calls(jm, kase, "[f(a=1), f(a=2), f(a=3)]");
	ck_assert(s.correct);
	ck_assert_int_eq(s.order_dependent, 1);
	ck_assert_int_eq(s.matched[0], 2);
	ck_assert_int_eq(s.matched[1], 0);
	ck_assert_int_eq(s.matched[2], 1);
	s = score_calls(jb, kase, "[f(a=1), f(a=2), f(a=3)]");
	ck_assert(!s.correct);
	ck_assert_str_eq(s.kind, "value_error:integer");
	ftk_judge_destroy(jm);
	ftk_judge_destroy(jb);
	cJSON_Delete(kase);

	struct ftk_judge *bad;
	struct ftk_error e;
	cJSON *set = cJSON_Parse("{\"matching\":\"greedy\"}");
	ck_assert_int_eq(ftk_judge_create(&bad, "toolcall", set, NULL, &e), FTK_EDATA);
	ck_assert_str_eq(e.field, "settings.matching");
	cJSON_Delete(set);
}
END_TEST


/*
 * The pairing against naive references: random parallel cases of up to four
 * calls to one tool, f(a), each expected call accepting a random subset of
 * {1, 2, 3} and maybe "" (a optional), each model call giving a value or
 * leaving a out.  The default verdict must be "some permutation pairs every
 * call", found by trying them all; "matching": "bfcl" must be BFCL's greedy
 * loop, written out here; order_dependent must be set exactly when the two
 * differ.  A fixed seed keeps it reproducible.
 */
static int accepts(unsigned acc, int given)
{
	return given == 0 ? (acc & 1) != 0 : (acc >> given & 1) != 0;	/* bit 0: "" */
}

static int any_permutation(const unsigned *acc, const int *given, int n, int k, unsigned used)
{
	if (k == n)
		return 1;
	for (int m = 0; m < n; m++)
		if (!(used >> m & 1) && accepts(acc[k], given[m]) &&
		    any_permutation(acc, given, n, k + 1, used | 1u << m))
			return 1;
	return 0;
}

START_TEST(pairing_against_references)
{
	struct ftk_judge *jm = new_judge(NULL), *jb = new_judge("{\"matching\":\"bfcl\"}");
	unsigned long long x = 0x9E3779B97F4A7C15ull;
	size_t n_dep = 0, n_ok = 0, trials = 600;
	for (size_t t = 0; t < trials; t++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		int n = 2 + (int)(x >> 60) % 3;
		unsigned acc[4];
		int given[4];
		struct strbuf c = STRBUF_INIT, py = STRBUF_INIT;
		strbuf_addstr(&c, "{\"id\":\"r\",\"tools\":[{\"name\":\"f\",\"parameters\":{\"type\":\"dict\","
				  "\"properties\":{\"a\":{\"type\":\"integer\"}},\"required\":[]}}],"
				  "\"expected\":{\"tool_calls\":[");
		strbuf_addch(&py, '[');
		for (int i = 0; i < n; i++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			acc[i] = (unsigned)(x >> 40) & 15;
			if (!acc[i])
				acc[i] = 2;
			given[i] = (int)((x >> 20) % 4);	/* 0: left out */
			strbuf_addf(&c, "%s{\"f\":{\"a\":[", i ? "," : "");
			int first = 1;
			for (int v = 0; v < 4; v++)
				if (acc[i] >> v & 1) {
					strbuf_addf(&c, first ? "%s" : ",%s", v == 0 ? "\"\"" : v == 1 ? "1" : v == 2 ? "2" : "3");
					first = 0;
				}
			strbuf_addstr(&c, "]}}");
			if (given[i])
				strbuf_addf(&py, "%sf(a=%d)", i ? ", " : "", given[i]);
			else
				strbuf_addf(&py, "%sf()", i ? ", " : "");
		}
		strbuf_addstr(&c, "]}}");
		strbuf_addch(&py, ']');
		int perm = any_permutation(acc, given, n, 0, 0);
		int greedy = 1;
		unsigned used = 0;
		for (int e = 0; e < n && greedy; e++) {
			int got = -1;
			for (int m = 0; m < n && got < 0; m++)
				if (!(used >> m & 1) && accepts(acc[e], given[m]))
					got = m;
			if (got < 0)
				greedy = 0;
			else
				used |= 1u << got;
		}
		cJSON *kase = cJSON_Parse(c.buf);
		ck_assert_ptr_nonnull(kase);
		struct scored sm = score_calls(jm, kase, py.buf), sb = score_calls(jb, kase, py.buf);
		ck_assert_msg(sm.correct == perm, "%s on %s: max %d, permutations %d", py.buf, c.buf, sm.correct, perm);
		ck_assert_msg(sb.correct == greedy, "%s on %s: bfcl %d, greedy %d", py.buf, c.buf, sb.correct, greedy);
		ck_assert_int_eq(sm.order_dependent, perm != greedy);
		ck_assert_int_eq(sb.order_dependent, perm != greedy);
		n_dep += perm != greedy;
		n_ok += perm;
		cJSON_Delete(kase);
		strbuf_release(&c);
		strbuf_release(&py);
	}
	printf("pairing: %zu random parallel cases, %zu answerable, %zu where greedy and one-to-one differ\n",
	       trials, n_ok, n_dep);
	ck_assert_uint_ge(n_dep, 10);	/* the test reaches the cases it is about */
	ftk_judge_destroy(jm);
	ftk_judge_destroy(jb);
}
END_TEST

/* Warnings, at load, about ground truth no output can satisfy. */
static size_t warnings_of(struct ftk_judge *j, const cJSON *kase, const char *kind, const char *needle)
{
	struct ftk_judge_result notes;
	ftk_judge_result_init(&notes);
	int n = ftk_judge_check_case(j, kase, &notes);
	ck_assert_int_eq(n, (int)notes.nflags);
	size_t hits = 0;
	for (size_t i = 0; i < notes.nflags; i++) {
		if (kind && !strcmp(notes.flags[i].kind, kind)) {
			ck_assert_msg(strstr(notes.flags[i].reason, needle), "'%s' does not name '%s'",
				      notes.flags[i].reason, needle);
			hits++;
		}
	}
	if (!kind)
		hits = notes.nflags;
	ftk_judge_result_release(&notes);
	return hits;
}

START_TEST(ground_truth_warnings)
{
	struct ftk_judge *j = new_judge(NULL);
	/* each defect alone, on simple_python_0's tool */
	cJSON *kase = triangle_case("\"units\"");
	ck_assert_uint_eq(warnings_of(j, kase, NULL, NULL), 0);
	cJSON_Delete(kase);
	kase = triangle_case("");	/* "unit": [] */
	ck_assert_uint_eq(warnings_of(j, kase, "no_accepted_value", "expected.tool_calls[1] 'calculate_triangle_area': parameter 'unit'"), 1);
	ck_assert_uint_eq(warnings_of(j, kase, NULL, NULL), 1);
	/* and no output can pass it, which is what the warning claims */
	ck_assert(!score_calls(j, kase, "[calculate_triangle_area(base=10, height=5), calculate_triangle_area(base=10, height=5, unit='units')]").correct);
	ck_assert(!score_calls(j, kase, "[calculate_triangle_area(base=10, height=5), calculate_triangle_area(base=10, height=5)]").correct);
	cJSON_Delete(kase);
	kase = cJSON_Parse("{\"id\":\"w\",\"tools\":[{\"name\":\"f\",\"parameters\":{\"type\":\"dict\","
			   "\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"string\"},\"d\":{\"type\":\"integer\"}},"
			   "\"required\":[\"a\",\"d\"]}}],"
			   "\"expected\":{\"tool_calls\":[{\"f\":{\"a\":[\"\"],\"b\":[\"x\",\"\"],\"c\":[1]}}]}}");
	ck_assert_uint_eq(warnings_of(j, kase, "required_marked_optional", "parameter 'a' is required by the tool"), 1);
	ck_assert_uint_eq(warnings_of(j, kase, "undeclared_param", "parameter 'c' is not declared"), 1);
	ck_assert_uint_eq(warnings_of(j, kase, "required_not_expected", "parameter 'd' is required"), 1);
	ck_assert_uint_eq(warnings_of(j, kase, NULL, NULL), 3);
	/* what the warnings claim: every way of giving or leaving out fails */
	static const char *const tries[] = { "f(a=1, b='x', c=1, d=1)", "f(b='x', c=1, d=1)", "f(a=1, d=1)",
					     "f(a=1, c=1)", "f(a=1, b='x', c=1)" };
	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++)
		ck_assert_msg(!score_calls(j, kase, tries[i]).correct, "%s passed", tries[i]);
	cJSON_Delete(kase);
	/* contradictions that leave a way to pass are not warned about */
	kase = cJSON_Parse("{\"id\":\"v\",\"tools\":[{\"name\":\"f\",\"parameters\":{\"type\":\"dict\","
			   "\"properties\":{\"a\":{\"type\":\"integer\"}},\"required\":[\"a\"]}}],"
			   "\"expected\":{\"tool_calls\":[{\"f\":{\"a\":[\"\",1],\"c\":[\"\",2]}}]}}");
	ck_assert_uint_eq(warnings_of(j, kase, NULL, NULL), 0);
	ck_assert(score_calls(j, kase, "f(a=1)").correct);
	cJSON_Delete(kase);
	/* OpenAI-form expectations name the same parameters */
	kase = cJSON_Parse("{\"id\":\"o\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":"
			   "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}}}}}],"
			   "\"expected\":{\"tool_calls\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1,\\\"zz\\\":2}\"}}]}}");
	ck_assert_uint_eq(warnings_of(j, kase, "undeclared_param", "parameter 'zz'"), 1);
	cJSON_Delete(kase);
	/* a case the scorer refuses is not warned about twice */
	kase = cJSON_Parse("{\"id\":\"x\",\"expected\":{}}");
	ck_assert_uint_eq(warnings_of(j, kase, NULL, NULL), 0);
	cJSON_Delete(kase);
	/* BFCL's own ground truth: every question of simple_python and multiple */
	static const char *const files[] = { "BFCL_v4_simple_python.json", "BFCL_v4_multiple.json" };
	size_t warned = 0, n = 0;
	for (int f = 0; f < 2; f++) {
		struct bfcl b;
		load(&b, files[f]);
		for (size_t i = 0; i < b.n; i++) {
			kase = make_case(b.q[i], b.a[i]);
			struct ftk_judge_result notes;
			ftk_judge_result_init(&notes);
			if (ftk_judge_check_case(j, kase, &notes) > 0) {
				warned++;
				printf("%s: %s: %s\n", ftk_json_get_str(kase, "id"), notes.flags[0].kind, notes.flags[0].reason);
			}
			ftk_judge_result_release(&notes);
			cJSON_Delete(kase);
			n++;
		}
		unload(&b);
	}
	printf("ground truth warnings: %zu of %zu BFCL questions\n", warned, n);
	/* every BFCL question can be answered right (test bfcl_*_accepted) */
	ck_assert_uint_eq(warned, 0);
	ftk_judge_destroy(j);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("toolcall");
	TCase *t = tcase_create("bfcl");
	tcase_set_timeout(t, 120);
	tcase_add_test(t, bfcl_simple_accepted);
	tcase_add_test(t, bfcl_multiple_accepted);
	tcase_add_test(t, bfcl_simple_perturbed);
	tcase_add_test(t, bfcl_multiple_perturbed);
	tcase_add_test(t, bfcl_parallel_pairs);
	tcase_add_test(t, bfcl_string_standardization);
	tcase_add_test(t, bfcl_type_rules);
	tcase_add_test(t, python_syntax);
	tcase_add_test(t, extract_forms);
	tcase_add_test(t, malformed_calls_are_wrong);
	tcase_add_test(t, schema_checked);
	tcase_add_test(t, parallel_matching);
	tcase_add_test(t, pairing_against_references);
	tcase_add_test(t, ground_truth_warnings);
	suite_add_tcase(s, t);
	return s;
}

FTK_TEST_MAIN(suite)
