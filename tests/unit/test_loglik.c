/*
 * test_loglik.c: eval/import and eval/loglik against references ftk did not
 * compute (tools/ref/eval_ref.py with tools/ref/loglik_tok.mjs):
 *
 *   harness_docs.json  the prompts, choices and answers lm-evaluation-harness's
 *                      default configs build from datasets/evals/, rendered by
 *                      Python's own strip/capitalize/re;
 *   loglik_ref.json    stories260K's log-likelihoods of (context, continuation)
 *                      pairs: transformers.js token ids split as the harness's
 *                      _encode_pair splits them, a float64 PyTorch forward, and
 *                      each document's acc / acc_norm / mc2 from those numbers.
 *
 * Token ids are integers and compared exactly.  Log-likelihoods: ftk runs the
 * model in float32 (BLAS) and sums log_softmax in double; the reference is
 * float64 throughout, so the difference is float32 rounding in the forward
 * pass.  That error is relative: a token's log-probability lp carries about
 * |lp| * 1e-7 to 3e-7 (unit roundoff 6e-8 through a few dozen dependent
 * operations), and a continuation's sum about 3e-7 * |ll|.  The bound is the
 * issue's 1e-4 for |ll| <= 100 and 1e-6 * |ll| beyond (a 3x margin over that
 * estimate); the largest difference seen is printed (8.7e-5 on a 53-token
 * TruthfulQA answer with ll = -173.8 when this was written).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "testutil.h"
#include "eval/import.h"
#include "judges/judge.h"
#include "eval/loglik.h"
#include "eval/run.h"
#include "eval/suite.h"
#include "lib/err.h"
#include "lib/json.h"
#include "lib/stream.h"
#include "lib/tokenizer.h"
#include "model/infer.h"

#define TOL 1e-4

static cJSON *load(const char *rel)
{
	char *data;
	size_t len;
	struct ftk_error e;
	ck_assert_int_eq(ftk_read_all(src_path(rel), &data, &len, &e), 0);
	cJSON *j = cJSON_ParseWithLength(data, len);
	free(data);
	ck_assert_ptr_nonnull(j);
	return j;
}

static struct ftk_infer *open_model(void)
{
	struct ftk_infer_opts o = { src_path("datasets/models/stories260K"), NULL, 0, 0, NULL };
	struct ftk_infer *e;
	struct ftk_error err;
	ck_assert_int_eq(ftk_infer_open(&e, &o, &err), 0);
	return e;
}

START_TEST(encode_boundary_matches_harness)
{
	cJSON *ref = load("tests/fixtures/eval/loglik_ref.json");
	struct ftk_infer *e = open_model();
	int max_len = (int)cJSON_GetObjectItem(ref, "max_len")->valuedouble, k = 0;
	const cJSON *r;
	cJSON_ArrayForEach(r, cJSON_GetObjectItem(ref, "requests"))
	{
		uint32_t *ids;
		int n, n_ctx;
		struct ftk_error err;
		const char *ctx = cJSON_GetObjectItem(r, "context")->valuestring;
		const char *cont = cJSON_GetObjectItem(r, "continuation")->valuestring;
		ck_assert_int_eq(ftk_loglik_encode(ftk_infer_tokenizer(e), ctx, cont, max_len, &ids, &n,
						   &n_ctx, &err), 0);
		const cJSON *want = cJSON_GetObjectItem(r, "ids");
		ck_assert_msg(n == cJSON_GetArraySize(want), "request %d ('%s' + '%s'): %d ids, want %d", k,
			      ctx, cont, n, cJSON_GetArraySize(want));
		ck_assert_int_eq(n_ctx, (int)cJSON_GetObjectItem(r, "n_ctx")->valuedouble);
		for (int i = 0; i < n; i++)
			ck_assert_msg(ids[i] == (uint32_t)cJSON_GetArrayItem(want, i)->valuedouble,
				      "request %d id %d: %u, want %d", k, i, ids[i],
				      (int)cJSON_GetArrayItem(want, i)->valuedouble);
		free(ids);
		k++;
	}
	ck_assert_int_gt(k, 50);
	ftk_infer_free(e);
	cJSON_Delete(ref);
}
END_TEST

START_TEST(loglik_matches_torch)
{
	cJSON *ref = load("tests/fixtures/eval/loglik_ref.json");
	struct ftk_infer *e = open_model();
	double worst = 0;
	int k = 0, worst_k = -1;
	const cJSON *r;
	cJSON_ArrayForEach(r, cJSON_GetObjectItem(ref, "requests"))
	{
		struct ftk_loglik ll;
		struct ftk_error err;
		ck_assert_int_eq(ftk_loglik_local(e, cJSON_GetObjectItem(r, "context")->valuestring,
						  cJSON_GetObjectItem(r, "continuation")->valuestring, &ll, &err),
				 0);
		double want = cJSON_GetObjectItem(r, "ll")->valuedouble;
		double d = fabs(ll.ll - want);
		if (d > worst) {
			worst = d;
			worst_k = k;
		}
		double tol = fabs(want) > 100 ? 1e-6 * fabs(want) : TOL;
		ck_assert_msg(d < tol, "request %d: ll %.9f, torch %.9f", k, ll.ll, want);
		ck_assert_int_eq(ll.greedy, cJSON_IsTrue(cJSON_GetObjectItem(r, "greedy")));
		k++;
	}
	printf("loglik: %d requests, max |ftk - torch| = %.3g at request %d (tolerance 1e-4, 1e-6 |ll| past 100)\n",
	       k, worst, worst_k);
	ftk_infer_free(e);
	cJSON_Delete(ref);
}
END_TEST

START_TEST(rolling_matches_torch)
{
	cJSON *ref = load("tests/fixtures/eval/loglik_ref.json");
	struct ftk_infer *e = open_model();
	const cJSON *r;
	int k = 0;
	cJSON_ArrayForEach(r, cJSON_GetObjectItem(ref, "rolling"))
	{
		double ll;
		long nt;
		struct ftk_error err;
		ck_assert_int_eq(ftk_loglik_rolling_local(e, cJSON_GetObjectItem(r, "text")->valuestring,
							  &ll, &nt, &err), 0);
		ck_assert_int_eq(nt, (long)cJSON_GetObjectItem(r, "tokens")->valuedouble);
		double want = cJSON_GetObjectItem(r, "ll")->valuedouble;
		double tol = fabs(want) > 100 ? 1e-6 * fabs(want) : TOL;	/* as above */
		printf("rolling %d: %ld tokens, ftk %.6f torch %.6f diff %.3g (tolerance %.3g)\n", k, nt, ll,
		       want, fabs(ll - want), tol);
		ck_assert_double_eq_tol(ll, want, tol);
		k++;
	}
	ck_assert_int_eq(k, 2);
	ftk_infer_free(e);
	cJSON_Delete(ref);
}
END_TEST

START_TEST(hellaswag_preprocess_matches_python)
{
	cJSON *ref = load("tests/fixtures/eval/harness_docs.json");
	const cJSON *p;
	cJSON_ArrayForEach(p, cJSON_GetObjectItem(ref, "preprocess"))
	{
		const char *in = cJSON_GetArrayItem(p, 0)->valuestring;
		const char *want = cJSON_GetArrayItem(p, 1)->valuestring;
		char *got = ftk_eval_hellaswag_preprocess(in);
		ck_assert_msg(!strcmp(got, want), "preprocess('%s') = '%s', Python '%s'", in, got, want);
		free(got);
	}
	cJSON_Delete(ref);
}
END_TEST

/* Import one bundled file (first n documents) into suite file out. */
static void import(const char *format, const char *file, long n, const char *out)
{
	struct ftk_eval_import_opts o;
	struct ftk_error err;
	ftk_eval_import_opts_init(&o);
	o.format = format;
	o.input = src_path(file);
	o.suite_path = out;
	o.limit = n;
	long got = ftk_eval_import(&o, &err);
	ck_assert_msg(got > 0, "import %s: %s", format, err.msg);
}

static cJSON *read_cases(const char *path)
{
	char *data;
	size_t len;
	struct ftk_error e;
	ck_assert_int_eq(ftk_read_all(path, &data, &len, &e), 0);
	cJSON *arr = cJSON_CreateArray();
	for (char *s = data, *nl; (nl = memchr(s, '\n', len - (size_t)(s - data))); s = nl + 1)
		cJSON_AddItemToArray(arr, cJSON_ParseWithLength(s, (size_t)(nl - s)));
	free(data);
	return arr;
}

static const struct {
	const char *format, *file, *cases;
} formats[] = {
	{ "gsm8k", "datasets/evals/gsm8k.jsonl", "gsm8k.jsonl" },
	{ "arc", "datasets/evals/arc_challenge.jsonl", "arc.jsonl" },
	{ "hellaswag", "datasets/evals/hellaswag.jsonl", "hellaswag.jsonl" },
	{ "mmlu", "datasets/evals/mmlu.jsonl", "mmlu.jsonl" },
	{ "truthfulqa_mc1", "datasets/evals/truthfulqa_mc.jsonl", "truthfulqa_mc1.jsonl" },
	{ "truthfulqa_mc2", "datasets/evals/truthfulqa_mc.jsonl", "truthfulqa_mc2.jsonl" },
};

START_TEST(import_matches_harness)
{
	cJSON *ref = load("tests/fixtures/eval/harness_docs.json");
	for (size_t f = 0; f < sizeof(formats) / sizeof(formats[0]); f++) {
		char suite[64];
		snprintf(suite, sizeof(suite), "%s.json", formats[f].format);
		import(formats[f].format, formats[f].file, 0, suite);
		cJSON *cases = read_cases(formats[f].cases);
		const cJSON *docs = cJSON_GetObjectItem(ref, formats[f].format);
		ck_assert_int_eq(cJSON_GetArraySize(cases), cJSON_GetArraySize(docs));
		ck_assert_int_eq(cJSON_GetArraySize(cases), 20);
		for (int i = 0; i < cJSON_GetArraySize(docs); i++) {
			const cJSON *c = cJSON_GetArrayItem(cases, i), *d = cJSON_GetArrayItem(docs, i);
			const char *desc = ftk_json_get_str(d, "description");
			char want_ctx[8192];
			snprintf(want_ctx, sizeof(want_ctx), "%s%s", desc ? desc : "",
				 cJSON_GetObjectItem(d, "query")->valuestring);
			ck_assert_str_eq(cJSON_GetObjectItem(c, "query")->valuestring,
					 cJSON_GetObjectItem(d, "query")->valuestring);
			ck_assert_str_eq(cJSON_GetObjectItem(c, "context")->valuestring, want_ctx);
			if (!strcmp(formats[f].format, "gsm8k")) {
				ck_assert_str_eq(cJSON_GetObjectItem(c, "target")->valuestring,
						 cJSON_GetObjectItem(d, "target")->valuestring);
				ck_assert_str_eq(ftk_json_get_str(cJSON_GetObjectItem(c, "expected"), "answer"),
						 cJSON_GetObjectItem(d, "gold")->valuestring);
				continue;
			}
			ck_assert(cJSON_Compare(cJSON_GetObjectItem(c, "choices"),
						cJSON_GetObjectItem(d, "choices"), 1));
			ck_assert_int_eq((int)cJSON_GetObjectItem(c, "answer")->valuedouble,
					 (int)cJSON_GetObjectItem(d, "answer")->valuedouble);
			if (!strcmp(formats[f].format, "truthfulqa_mc2"))
				ck_assert(cJSON_Compare(cJSON_GetObjectItem(c, "labels"),
							cJSON_GetObjectItem(d, "labels"), 1));
		}
		cJSON_Delete(cases);
	}
	cJSON_Delete(ref);
}
END_TEST

/* The same seed gives the same examples; another seed others; never the case itself. */
START_TEST(fewshot_seeded_and_never_self)
{
	struct ftk_eval_import_opts o;
	struct ftk_error err;
	ftk_eval_import_opts_init(&o);
	o.format = "arc";
	o.input = src_path("datasets/evals/arc_challenge.jsonl");
	o.num_fewshot = 3;
	o.suite_path = "a.json";
	ck_assert_int_eq(ftk_eval_import(&o, &err), 20);
	o.suite_path = "b.json";
	ck_assert_int_eq(ftk_eval_import(&o, &err), 20);
	o.limit = 5;	/* fewer cases: each case keeps its examples */
	o.suite_path = "c.json";
	ck_assert_int_eq(ftk_eval_import(&o, &err), 5);
	o.limit = 0;
	o.seed = 99;
	o.suite_path = "d.json";
	ck_assert_int_eq(ftk_eval_import(&o, &err), 20);
	cJSON *a = read_cases("a.jsonl"), *b = read_cases("b.jsonl"), *c = read_cases("c.jsonl"),
	      *d = read_cases("d.jsonl");
	ck_assert(cJSON_Compare(a, b, 1));
	int differ = 0;
	for (int i = 0; i < 20; i++) {
		const cJSON *ca = cJSON_GetArrayItem(a, i);
		const cJSON *fa = cJSON_GetObjectItem(ca, "fewshot");
		ck_assert_int_eq(cJSON_GetArraySize(fa), 3);
		const cJSON *x;
		cJSON_ArrayForEach(x, fa)
			ck_assert_str_ne(x->valuestring, cJSON_GetObjectItem(ca, "id")->valuestring);
		if (i < 5)
			ck_assert(cJSON_Compare(ca, cJSON_GetArrayItem(c, i), 1));
		differ += !cJSON_Compare(fa, cJSON_GetObjectItem(cJSON_GetArrayItem(d, i), "fewshot"), 1);
		/* the context is the examples, each "query target\n\n", then the query */
		const char *ctx = cJSON_GetObjectItem(ca, "context")->valuestring;
		const char *q = cJSON_GetObjectItem(ca, "query")->valuestring;
		ck_assert_str_eq(ctx + strlen(ctx) - strlen(q), q);
		ck_assert(strstr(ctx, "\nAnswer: "));
	}
	ck_assert_int_gt(differ, 10);
	cJSON_Delete(a);
	cJSON_Delete(b);
	cJSON_Delete(c);
	cJSON_Delete(d);
	/* more examples than the split holds */
	o.num_fewshot = 20;
	o.suite_path = "e.json";
	ck_assert_int_eq(ftk_eval_import(&o, &err), FTK_EUSAGE);
}
END_TEST

START_TEST(import_bad_record_names_line_and_field)
{
	FILE *f = fopen("bad.jsonl", "w");
	fputs("{\"question\":\"q\",\"answer\":\"1 #### 1\"}\n{\"question\":\"q\",\"answer\":\"no mark\"}\n", f);
	fclose(f);
	struct ftk_eval_import_opts o;
	struct ftk_error err;
	ftk_eval_import_opts_init(&o);
	o.format = "gsm8k";
	o.input = "bad.jsonl";
	o.suite_path = "bad.json";
	ck_assert_int_eq(ftk_eval_import(&o, &err), FTK_EDATA);
	ck_assert_str_eq(err.file, "bad.jsonl");
	ck_assert_int_eq(err.line, 2);
	ck_assert_str_eq(err.field, "answer");
	ck_assert_int_ne(access("bad.json", F_OK), 0);	/* nothing written */
	/* an ending that is not a string is named by its index and type */
	f = fopen("bad.jsonl", "w");
	fputs("{\"activity_label\":\"A\",\"ctx_a\":\"x\",\"ctx_b\":\"y\","
	      "\"endings\":[\"a\",\"b\",7,\"d\"],\"label\":\"0\"}\n", f);
	fclose(f);
	o.format = "hellaswag";
	ck_assert_int_eq(ftk_eval_import(&o, &err), FTK_EDATA);
	ck_assert_int_eq(err.line, 1);
	ck_assert_str_eq(err.field, "endings[2]");
	ck_assert_str_eq(err.msg, "must be a string, not number");
}
END_TEST

/* acc, acc_norm and mc2 of whole runs equal the reference's, document by document. */
START_TEST(run_scores_match_reference)
{
	cJSON *ref = load("tests/fixtures/eval/loglik_ref.json");
	static const struct {
		const char *task, *format, *file;
		int n;
	} runs[] = {
		{ "arc", "arc", "datasets/evals/arc_challenge.jsonl", 6 },
		{ "hellaswag", "hellaswag", "datasets/evals/hellaswag.jsonl", 4 },
		{ "mmlu", "mmlu", "datasets/evals/mmlu.jsonl", 2 },
		{ "truthfulqa_mc2", "truthfulqa_mc2", "datasets/evals/truthfulqa_mc.jsonl", 2 },
	};
	int checked = 0;
	for (size_t k = 0; k < sizeof(runs) / sizeof(runs[0]); k++) {
		char suite[64], dir[64];
		snprintf(suite, sizeof(suite), "%s.json", runs[k].task);
		snprintf(dir, sizeof(dir), "run-%s", runs[k].task);
		import(runs[k].format, runs[k].file, runs[k].n, suite);
		struct ftk_eval_run_opts o;
		ftk_eval_run_opts_init(&o);
		o.suite_path = suite;
		o.run_dir = dir;
		o.backend = FTK_EVAL_LOCAL;
		o.model_dir = src_path("datasets/models/stories260K");
		o.jobs = 2;
		struct ftk_eval_run_stats st;
		struct ftk_error err;
		ck_assert_msg(ftk_eval_run(&o, &st, &err) == 0, "%s", err.msg);
		cJSON *res;
		ck_assert_int_eq(ftk_eval_results_load(dir, &res, NULL, &err), 0);
		ck_assert_int_eq(cJSON_GetArraySize(res), runs[k].n);
		const cJSON *d;
		cJSON_ArrayForEach(d, cJSON_GetObjectItem(ref, "docs"))
		{
			if (strcmp(cJSON_GetObjectItem(d, "task")->valuestring, runs[k].task))
				continue;
			int i = (int)cJSON_GetObjectItem(d, "doc")->valuedouble;
			const cJSON *sc = cJSON_GetObjectItem(cJSON_GetArrayItem(res, i), "scores");
			if (cJSON_GetObjectItem(d, "mc2")) {
				ck_assert_double_eq_tol(cJSON_GetObjectItem(sc, "mc2")->valuedouble,
							cJSON_GetObjectItem(d, "mc2")->valuedouble, 1e-4);
				ck_assert_ptr_null(cJSON_GetObjectItem(sc, "acc"));	/* the suite names mc2 only */
			} else {
				ck_assert_int_eq((int)cJSON_GetObjectItem(sc, "acc")->valuedouble,
						 (int)cJSON_GetObjectItem(d, "acc")->valuedouble);
				const cJSON *an = cJSON_GetObjectItem(sc, "acc_norm");
				if (an)
					ck_assert_int_eq((int)an->valuedouble,
							 (int)cJSON_GetObjectItem(d, "acc_norm")->valuedouble);
			}
			checked++;
		}
		cJSON_Delete(res);
	}
	ck_assert_int_eq(checked, 14);
	cJSON_Delete(ref);
}
END_TEST

/* strict and flexible extraction and exact_match equal the harness's Python (re, findall) */
START_TEST(extract_matches_harness)
{
	cJSON *ref = load("tests/fixtures/eval/harness_docs.json");
	const char *methods[] = { "strict", "flexible" };
	int k = 0;
	for (int m = 0; m < 2; m++) {
		cJSON *set = cJSON_CreateObject();
		cJSON_AddStringToObject(set, "method", methods[m]);
		struct ftk_judge *j;
		struct ftk_error err;
		ck_assert_int_eq(ftk_judge_create(&j, "extract", set, NULL, &err), 0);
		const cJSON *x;
		cJSON_ArrayForEach(x, cJSON_GetObjectItem(ref, "extract"))
		{
			cJSON *kase = cJSON_CreateObject();
			cJSON_AddStringToObject(kase, "id", "x");
			cJSON_AddStringToObject(cJSON_AddObjectToObject(kase, "expected"), "answer",
						cJSON_GetObjectItem(x, "gold")->valuestring);
			struct ftk_judge_output out = { cJSON_GetObjectItem(x, "text")->valuestring, NULL, "stop" };
			struct ftk_judge_result r;
			ftk_judge_result_init(&r);
			ck_assert_int_eq(ftk_judge_score(j, kase, &out, &r, &err), 0);
			const char *got = ftk_json_get_str(r.detail, "extracted");
			const char *want = cJSON_GetObjectItem(x, methods[m])->valuestring;
			ck_assert_str_eq(got ? got : "[invalid]", want);
			char key[32];
			snprintf(key, sizeof(key), "%s_pass", methods[m]);
			ck_assert_msg(r.metrics[0].value == cJSON_GetObjectItem(x, key)->valuedouble,
				      "%s on '%s': %g", methods[m], out.text, r.metrics[0].value);
			ftk_judge_result_release(&r);
			cJSON_Delete(kase);
			k++;
		}
		ftk_judge_destroy(j);
		cJSON_Delete(set);
	}
	ck_assert_int_eq(k, 16);
	cJSON_Delete(ref);
}
END_TEST

static Suite *loglik_suite(void)
{
	Suite *s = suite_create("loglik");
	TCase *t = tcase_create("core");
	tcase_set_timeout(t, 120);
	tcase_add_test(t, encode_boundary_matches_harness);
	tcase_add_test(t, loglik_matches_torch);
	tcase_add_test(t, rolling_matches_torch);
	tcase_add_test(t, hellaswag_preprocess_matches_python);
	tcase_add_test(t, import_matches_harness);
	tcase_add_test(t, fewshot_seeded_and_never_self);
	tcase_add_test(t, import_bad_record_names_line_and_field);
	tcase_add_test(t, run_scores_match_reference);
	tcase_add_test(t, extract_matches_harness);
	suite_add_tcase(s, t);
	return s;
}

FTK_TEST_MAIN(loglik_suite)
