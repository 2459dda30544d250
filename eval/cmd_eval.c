/*
 * cmd_eval.c: ftk-eval, the program over eval/run.h.
 * summary: run an eval suite against a model, score it with judges, compare runs
 *
 *   ftk-eval run SUITE -o RUN_DIR (--outputs FILE | --endpoint URL --model NAME) [options]
 *   ftk-eval merge SHARD_RUN_DIR... -o RUN_DIR
 *   ftk-eval summary RUN_DIR [--json]
 *   ftk-eval compare RUN_A RUN_B [--alpha P] [--json]
 *   ftk-eval judges
 *   ftk-eval import FORMAT FILE -o SUITE [--num-fewshot K] [--fewshot-split FILE]
 *
 * The table on standard output is the data of this command (the scores);
 * progress and the closing line go to standard error.  compare exits 1 when
 * a semantic metric got significantly worse, so that a training script can
 * stop on it.  Spend: the model's tokens this invocation (cache hits and
 * resumed cases cost nothing) times the prices given or found in a rates
 * file, appended to the ledger as one api entry (stage eval).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/parse-options.h"
#include "cli/tool.h"
#include "eval/import.h"
#include "eval/reviews.h"
#include "eval/run.h"
#include "eval/suite.h"
#include "judges/judge.h"
#include "ledger/cost.h"
#include "lib/json.h"
#include "lib/ledger.h"

/* The synopses and the description; each subcommand's table gives its options. */
static const char *const usage_top[] = {
	"ftk-eval run SUITE -o RUN_DIR BACKEND [options]",
	"ftk-eval rescore RUN_DIR [SUITE] [--judge-endpoint URL]",
	"ftk-eval merge SHARD_RUN_DIR... -o RUN_DIR [--json]",
	"ftk-eval summary RUN_DIR [--reviews FILE] [--json]",
	"ftk-eval compare RUN_A RUN_B [--alpha P] [--json]",
	"ftk-eval judges",
	"ftk-eval import FORMAT FILE -o SUITE [--num-fewshot K] [options]",
	"",
#define U_INTRO \
	"Run an eval suite, score every answer with the suite's judges, and report", \
	"each metric with its standard error and 95% interval.  RUN_DIR receives", \
	"results.jsonl (one line per case and sample, appended as they finish),", \
	"summary.json and run.json; running again into the same RUN_DIR resumes,", \
	"asking only for what has no result yet (errored cases are asked again).", \
	"RUN_DIR belongs to one suite, judges and model configuration (run.json):", \
	"another is refused, naming what differs.  rescore (or run --rescore) judges", \
	"the stored outputs again with the suite's current judges, asking no model."
	U_INTRO, NULL,
};

#define U_EXIT \
	"Exit status: 0 success, 1 data problems or failure, 2 bad usage.\n" \
	"ftk-eval compare exits 1 when a semantic metric is significantly worse in\n" \
	"RUN_B, and 2 when the runs are of different suites (no case in common);\n" \
	"ftk-eval run exits 1 when some cases could not be scored.\n"

static struct ftk_tool tool;

/*
 * The common options, in eval's words: -o names the run directory (the
 * suite for import), and the options of a record tool are taken for
 * uniformity.  They are rows of every subcommand's table and of the
 * command's own, so that they may come before the subcommand too.
 */
#define EVAL_COMMON(out_argh, out_help)                                                      \
	FTK_OPT_GROUP("Common options"),                                                     \
	FTK_OPT_STRING('o', "output", &tool.out_path, out_argh, out_help),                  \
	FTK_OPT_STRING(0, "stats", &tool.stats_path, "FILE",                                 \
		       "write the summary and this invocation's counts as JSON"),           \
	FTK_OPT_STRING(0, "ledger", &tool.ledger_path, "FILE",                               \
		       "append the run's ledger entry (default $FTK_LEDGER)"),              \
	FTK_OPT_STRING(0, "run", &tool.run, "NAME", "the run name for the ledger (default $FTK_RUN)"), \
	FTK_OPT_STRING(0, "rejects", &tool.rejects_path, "FILE",                             \
		       "accepted for uniformity; ftk-eval drops no records"),               \
	FTK_OPT_SIZE(0, "max-record-bytes", &tool.max_record_bytes, "SIZE", 1, UINT64_MAX,  \
		     "the same"),                                                             \
	FTK_OPT_FLAG('q', "quiet", &tool.quiet, "no closing line on stderr"),               \
	FTK_OPT_HELP(), FTK_OPT_VERSION(), FTK_OPT_TEXT(U_EXIT)

/* What the options set, for the subcommands */
static struct ftk_eval_run_opts o;
static struct ftk_eval_import_opts io;
static struct prices {
	double in, out;
	int have;
	const char *source;
} p;
static int json, allow_bad;
static const char *rates, *reviews;
static double alpha = 0.05;
static long fewshot_seed;

#define OPT_JSON_ROW FTK_OPT_FLAG(0, "json", &json, "print summary.json instead of the table")

static double jnum(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void fmt_num(char *buf, size_t n, double v, int sign)
{
	if (isnan(v))
		snprintf(buf, n, "-");
	else
		snprintf(buf, n, sign ? "%+.3f" : "%.3f", v);
}

static int metric_width(const cJSON *metrics)
{
	int w = 6;
	const cJSON *m;
	cJSON_ArrayForEach(m, metrics)
		if ((int)strlen(m->string) > w)
			w = (int)strlen(m->string);
	return w;
}

/*
 * Method sensitivity: each pair of methods that scored the same cases, side
 * by side, the paired difference and its interval, and the cases they
 * disagree on (the first ten; summary.json has them all).
 */
static void print_methods(const cJSON *sum)
{
	const cJSON *ms = cJSON_GetObjectItemCaseSensitive(sum, "methods");
	if (!cJSON_GetArraySize(ms))
		return;
	printf("methods compared (same cases, paired):%s\n",
	       cJSON_IsTrue(cJSON_GetObjectItem(sum, "method_sensitive")) ? " METHOD SENSITIVE" : "");
	const cJSON *e;
	cJSON_ArrayForEach(e, ms)
	{
		char ma[32], mb[32], d[32], lo[32], hi[32];
		fmt_num(ma, sizeof(ma), jnum(e, "mean_a"), 0);
		fmt_num(mb, sizeof(mb), jnum(e, "mean_b"), 0);
		fmt_num(d, sizeof(d), jnum(e, "diff"), 1);
		fmt_num(lo, sizeof(lo), jnum(e, "lo"), 1);
		fmt_num(hi, sizeof(hi), jnum(e, "hi"), 1);
		const cJSON *dis = cJSON_GetObjectItem(e, "disagree");
		printf("  %s %s vs %s %s: diff %s [%s, %s], %s p=%.3g, %d of %.0f cases disagree%s\n",
		       ftk_json_get_str(e, "a"), ma, ftk_json_get_str(e, "b"), mb, d, lo, hi,
		       ftk_json_get_str(e, "test"), jnum(e, "p"), cJSON_GetArraySize(dis), jnum(e, "n"),
		       cJSON_IsTrue(cJSON_GetObjectItem(e, "method_sensitive")) ? "  method_sensitive" : "");
		if (cJSON_GetArraySize(dis)) {
			printf("    disagree:");
			int k = 0;
			const cJSON *x;
			cJSON_ArrayForEach(x, dis)
			{
				if (k++ == 10) {
					printf(" ... (%d more)", cJSON_GetArraySize(dis) - 10);
					break;
				}
				printf(" %s", x->valuestring);
			}
			printf("\n");
		}
	}
}

static void print_summary_table(const cJSON *sum, const char *title)
{
	printf("%s: %.0f results, %.0f scored, %.0f without an answer (not scored)", title,
	       jnum(sum, "results"), jnum(sum, "scored"), jnum(sum, "errors"));
	if (jnum(sum, "defective") > 0) {
		printf(", %.0f defective answers (scored wrong:", jnum(sum, "defective"));
		const cJSON *d;
		int first = 1;
		cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(sum, "defects"))
		{
			printf("%s%s %.0f", first ? " " : ", ", d->string, d->valuedouble);
			first = 0;
		}
		printf(")");
	}
	if (jnum(sum, "bad_cases") > 0)
		printf(", %.0f results of defective cases (excluded)", jnum(sum, "bad_cases"));
	if (jnum(sum, "judge_errors") > 0)
		printf(", %.0f judge errors", jnum(sum, "judge_errors"));
	printf("\n");
	const cJSON *metrics = cJSON_GetObjectItemCaseSensitive(sum, "metrics");
	int w = metric_width(metrics);
	printf("%-*s  %-8s  %5s  %6s  %6s  %s\n", w, "metric", "kind", "n", "mean", "se",
	       "95% interval");
	const cJSON *m;
	cJSON_ArrayForEach(m, metrics)
	{
		char mean[32], se[32], lo[32], hi[32], iv[80], note[160] = "";
		fmt_num(mean, sizeof(mean), jnum(m, "mean"), 0);
		fmt_num(se, sizeof(se), jnum(m, "se"), 0);
		fmt_num(lo, sizeof(lo), jnum(m, "lo"), 0);
		fmt_num(hi, sizeof(hi), jnum(m, "hi"), 0);
		snprintf(iv, sizeof(iv), "[%s, %s]", lo, hi);
		const char *kind = cJSON_GetStringValue(cJSON_GetObjectItem(m, "kind"));
		const char *twin = cJSON_GetStringValue(cJSON_GetObjectItem(m, "twin"));
		const char *interval = cJSON_GetStringValue(cJSON_GetObjectItem(m, "interval"));
		if (twin)
			snprintf(note, sizeof(note), "%s; surface twin of %s", interval ? interval : "", twin);
		else
			snprintf(note, sizeof(note), "%s", interval ? interval : "");
		if (cJSON_IsTrue(cJSON_GetObjectItem(m, "clustered")))
			snprintf(note + strlen(note), sizeof(note) - strlen(note), "; %.0f clusters",
				 jnum(m, "n_clusters"));
		printf("%-*s  %-8s  %5.0f  %6s  %6s  %-16s  %s\n", w, m->string, kind ? kind : "",
		       jnum(m, "n"), mean, se, iv, note);
	}
	const cJSON *flags = cJSON_GetObjectItemCaseSensitive(sum, "flags");
	printf("flagged for review: %.0f", jnum(sum, "flagged"));
	const cJSON *f;
	int first = 1;
	cJSON_ArrayForEach(f, flags)
	{
		printf("%s%s %.0f", first ? " (" : ", ", f->string, f->valuedouble);
		first = 0;
	}
	printf("%s\n", first ? "" : ")");
	print_methods(sum);
}

static void print_json(const cJSON *v)
{
	char *s = cJSON_Print(v);
	puts(s);
	cJSON_free(s);
}

static int load_results(const char *run, cJSON **out)
{
	struct ftk_error e;
	ftk_error_clear(&e);
	long bad = 0;
	int rc = ftk_eval_results_load(run, out, &bad, &e);
	if (rc < 0) {
		error_at(&e);
		return rc;
	}
	if (bad)
		warning("%s: %ld unreadable lines skipped (a torn last line of a killed run?)", run, bad);
	return 0;
}

static int fold_reviews(const char *run, const char *path, cJSON *res, cJSON **ag);

static int do_summary(int argc, char **argv, int json, const char *reviews)
{
	if (argc != 1)
		ftk_tool_usage_error(&tool, "summary takes one run directory");
	cJSON *res;
	if (load_results(argv[0], &res) < 0)
		return FTK_EXIT_DATA;
	cJSON *sum = ftk_eval_summarize(res);
	cJSON *ag = NULL;
	if (fold_reviews(argv[0], reviews, res, &ag) < 0) {
		cJSON_Delete(sum);
		cJSON_Delete(res);
		return FTK_EXIT_DATA;
	}
	if (ag)
		cJSON_AddItemToObject(sum, "reviews", ag);
	if (json)
		print_json(sum);
	else
		print_summary_table(sum, argv[0]);
	if (ag && !json)
		ftk_reviews_print(stdout, ag);
	cJSON_Delete(sum);
	cJSON_Delete(res);
	return FTK_EXIT_OK;
}

/*
 * People's verdicts (eval/reviews.h): --reviews FILE, else RUN/reviews.jsonl
 * when the run directory has one.  *ag gets the agreement object, or stays
 * NULL when there are no reviews.  A given file that cannot be read is an
 * error; unreadable lines are reported and skipped.
 */
static int fold_reviews(const char *run, const char *path, cJSON *res, cJSON **ag)
{
	char def[4096];
	*ag = NULL;
	if (!path) {
		snprintf(def, sizeof(def), "%s/reviews.jsonl", run);
		if (access(def, F_OK) != 0)
			return 0;
		path = def;
	}
	struct ftk_error e;
	ftk_error_clear(&e);
	long bad = 0;
	cJSON *rv;
	if (ftk_reviews_load(path, &rv, &bad, &e) < 0)
		return error_at(&e);
	if (bad)
		warning("%s (%ld unreadable review lines skipped)", FTK_ERROR_TEXT(&e),
			bad);
	ftk_reviews_fold(res, rv);
	*ag = ftk_reviews_agreement(res);
	cJSON_Delete(rv);
	return 0;
}

/* The suite a run directory (or the folder of a results file) was run on,
 * from its run.json; NULL when there is none.  Caller frees. */
static char *run_suite(const char *run)
{
	struct strbuf p = STRBUF_INIT, sb = STRBUF_INIT;
	const char *slash = strrchr(run, '/');
	size_t n = strlen(run);
	if (n > 6 && !strcmp(run + n - 6, ".jsonl"))
		strbuf_addf(&p, "%.*s/run.json", slash ? (int)(slash - run) : 1, slash ? run : ".");
	else
		strbuf_addf(&p, "%s/run.json", run);
	char *name = NULL;
	cJSON *o = NULL;
	if (strbuf_read_file(&sb, p.buf) >= 0 && ftk_json_parse_object(sb.buf, sb.len, &o, NULL) == 0) {
		const char *v = ftk_json_get_str(o, "suite");
		if (v)
			name = xstrdup(v);
	}
	cJSON_Delete(o);
	strbuf_release(&p);
	strbuf_release(&sb);
	return name;
}

/* Cases of a whose id is in b too. */
static long paired_cases(const cJSON *a, const cJSON *b)
{
	long n = 0;
	const cJSON *x, *y;
	cJSON_ArrayForEach(x, a) {
		const char *id = ftk_json_get_str(x, "id");
		if (!id)
			continue;
		cJSON_ArrayForEach(y, b) {
			const char *id2 = ftk_json_get_str(y, "id");
			if (id2 && !strcmp(id, id2)) {
				n++;
				break;
			}
		}
	}
	return n;
}

/* The shard runs of a sharded eval into one run directory (run.h, ftk_eval_merge). */
static int do_merge(int argc, char **argv, int json)
{
	if (argc < 1)
		ftk_tool_usage_error(&tool, "merge takes the shard run directories");
	if (!tool.out_path)
		ftk_tool_usage_error(&tool, "merge needs -o RUN_DIR");
	struct ftk_error e;
	ftk_error_clear(&e);
	long n = 0;
	if (ftk_eval_merge((const char *const *)argv, argc, tool.out_path, &n, &e) < 0) {
		error_at(&e);
		return FTK_EXIT_DATA;
	}
	cJSON *res;
	if (load_results(tool.out_path, &res) < 0)
		return FTK_EXIT_DATA;
	cJSON *sum = ftk_eval_summarize(res);
	cJSON_Delete(res);
	if (json)
		print_json(sum);
	else
		print_summary_table(sum, tool.out_path);
	cJSON_Delete(sum);
	if (!tool.quiet)
		fprintf(stderr, "ftk-eval: %d shards merged into '%s': %ld results\n", argc,
			tool.out_path, n);
	return FTK_EXIT_OK;
}

static int do_compare(int argc, char **argv, int json, double alpha)
{
	if (argc != 2)
		ftk_tool_usage_error(&tool, "compare takes two runs (directories or results.jsonl)");
	/* a paired comparison needs the same cases on both sides */
	char *sa = run_suite(argv[0]), *sb = run_suite(argv[1]);
	if (sa && sb && strcmp(sa, sb)) {
		error("'%s' ran suite '%s' and '%s' ran suite '%s': compare two runs of the same suite",
		      argv[0], sa, argv[1], sb);
		free(sa);
		free(sb);
		return FTK_EXIT_USAGE;
	}
	free(sa);
	free(sb);
	cJSON *a, *b;
	if (load_results(argv[0], &a) < 0)
		return FTK_EXIT_DATA;
	if (load_results(argv[1], &b) < 0) {
		cJSON_Delete(a);
		return FTK_EXIT_DATA;
	}
	if (cJSON_GetArraySize(a) && cJSON_GetArraySize(b) && !paired_cases(a, b)) {
		error("no case id of '%s' is in '%s': compare two runs of the same suite", argv[0],
		      argv[1]);
		cJSON_Delete(a);
		cJSON_Delete(b);
		return FTK_EXIT_USAGE;
	}
	cJSON *cmp = ftk_eval_compare(a, b, alpha);
	cJSON_AddStringToObject(cmp, "a", argv[0]);
	cJSON_AddStringToObject(cmp, "b", argv[1]);
	cJSON_AddNumberToObject(cmp, "alpha", alpha);
	const cJSON *reg = cJSON_GetObjectItemCaseSensitive(cmp, "regressed");
	int n_reg = cJSON_GetArraySize(reg);
	if (json) {
		print_json(cmp);
	} else {
		const cJSON *metrics = cJSON_GetObjectItemCaseSensitive(cmp, "metrics");
		printf("A: %s\nB: %s\n", argv[0], argv[1]);
		if (jnum(cmp, "only_a") > 0 || jnum(cmp, "only_b") > 0)
			printf("unpaired cases (errored or missing in the other run): %.0f only in A, %.0f only in B\n",
			       jnum(cmp, "only_a"), jnum(cmp, "only_b"));
		int w = metric_width(metrics);
		printf("%-*s  %-8s  %5s  %6s  %6s  %7s  %6s  %-18s  %-8s  %s\n", w, "metric", "kind", "n",
		       "A", "B", "B-A", "se", "95% interval", "p", "test");
		const cJSON *m;
		cJSON_ArrayForEach(m, metrics)
		{
			char ma[32], mb[32], d[32], se[32], lo[32], hi[32], iv[80], p[32], test[96];
			fmt_num(ma, sizeof(ma), jnum(m, "mean_a"), 0);
			fmt_num(mb, sizeof(mb), jnum(m, "mean_b"), 0);
			fmt_num(d, sizeof(d), jnum(m, "diff"), 1);
			fmt_num(se, sizeof(se), jnum(m, "se"), 0);
			fmt_num(lo, sizeof(lo), jnum(m, "lo"), 1);
			fmt_num(hi, sizeof(hi), jnum(m, "hi"), 1);
			snprintf(iv, sizeof(iv), "[%s, %s]", lo, hi);
			double pv = jnum(m, "p");
			if (isnan(pv))
				snprintf(p, sizeof(p), "-");
			else
				snprintf(p, sizeof(p), pv < 0.0001 ? "%.1e" : "%.4f", pv);
			const char *t = cJSON_GetStringValue(cJSON_GetObjectItem(m, "test"));
			if (!isnan(jnum(m, "pass_to_fail")))
				snprintf(test, sizeof(test), "%s (%.0f pass->fail, %.0f fail->pass)", t,
					 jnum(m, "pass_to_fail"), jnum(m, "fail_to_pass"));
			else
				snprintf(test, sizeof(test), "%s", t ? t : "");
			const char *kind = cJSON_GetStringValue(cJSON_GetObjectItem(m, "kind"));
			const char *mark = cJSON_IsTrue(cJSON_GetObjectItem(m, "regressed")) ? "  REGRESSED"
					   : cJSON_IsTrue(cJSON_GetObjectItem(m, "significant"))
						   ? (jnum(m, "diff") > 0 ? "  improved"
									  : "  lower (surface check only)")
						   : "";
			printf("%-*s  %-8s  %5.0f  %6s  %6s  %7s  %6s  %-18s  %-8s  %s%s\n", w, m->string,
			       kind ? kind : "", jnum(m, "n"), ma, mb, d, se, iv, p, test, mark);
		}
		if (n_reg)
			printf("%d metric%s regressed significantly (p < %g)\n", n_reg, n_reg > 1 ? "s" : "",
			       alpha);
	}
	cJSON_Delete(cmp);
	cJSON_Delete(a);
	cJSON_Delete(b);
	return n_reg ? FTK_EXIT_DATA : FTK_EXIT_OK;
}

static int do_judges(void)
{
	const struct ftk_judge_ops *j;
	for (size_t i = 0; (j = ftk_judge_registry(i)); i++)
		printf("%-10s %s\n", j->name, j->summary ? j->summary : "");
	return FTK_EXIT_OK;
}


static void find_prices(struct prices *p, const char *rates_path, const char *model)
{
	if (p->have || !rates_path || !model)
		return;
	struct ftk_rates R;
	memset(&R, 0, sizeof(R));
	struct ftk_error e;
	ftk_error_clear(&e);
	if (ftk_rates_load(rates_path, &R, &e) < 0)
		die_at(&e);
	const struct ftk_rate *r = ftk_rates_find(&R, FTK_RATE_API, model, ftk_now());
	if (!r || isnan(r->usd_per_mtok_in) || isnan(r->usd_per_mtok_out)) {
		warning("%s: no api prices for model '%s': spend not priced", rates_path, model);
	} else {
		p->in = r->usd_per_mtok_in;
		p->out = r->usd_per_mtok_out;
		p->have = 1;
		p->source = "rates";
	}
	ftk_rates_release(&R);
}

static void ledger_entry(const struct ftk_eval_run_opts *o, const struct ftk_eval_run_stats *st,
			 const struct prices *p, const char *suite_name)
{
	const char *path = ftk_ledger_path(tool.ledger_path);
	if (!path)
		return;
	int api = o->backend == FTK_EVAL_ENDPOINT;
	cJSON *e = ftk_ledger_entry_new(tool.run, "eval", api ? "api" : "compute");
	cJSON_AddStringToObject(e, "tool", "ftk-eval");
	if (api) {
		cJSON_AddStringToObject(e, "model", o->model);
		cJSON_AddNumberToObject(e, "tokens_in", (double)st->prompt_tokens);
		cJSON_AddNumberToObject(e, "tokens_out", (double)st->completion_tokens);
		if (p->have)
			cJSON_AddNumberToObject(e, "usd",
						round(((double)st->prompt_tokens * p->in +
						       (double)st->completion_tokens * p->out) / 1e6 * 1e6) / 1e6);
	} else {
		cJSON_AddStringToObject(e, "device", "cpu");
		cJSON_AddNumberToObject(e, "usd", 0);
	}
	cJSON_AddNumberToObject(e, "hours", st->seconds / 3600);
	cJSON_AddStringToObject(e, "suite", suite_name);
	cJSON_AddNumberToObject(e, "requests", (double)st->asked);
	cJSON_AddNumberToObject(e, "cache_hits", (double)st->cache_hits);
	if (st->judge_calls) {
		cJSON_AddNumberToObject(e, "judge_tokens_in", (double)st->judge_prompt_tokens);
		cJSON_AddNumberToObject(e, "judge_tokens_out", (double)st->judge_completion_tokens);
	}
	struct ftk_error err;
	if (ftk_ledger_append_entry(path, e, &err) < 0)
		error_at(&err);
	cJSON_Delete(e);
}

static int run_and_report(struct ftk_eval_run_opts *o, struct prices *p, int json, int allow_bad);

/* Progress on a terminal: one line, rewritten. */
static void show_progress(void *ctx, long done, long total, long errors)
{
	(void)ctx;
	fprintf(stderr, "\rftk-eval: %ld/%ld done, %ld errors ", done, total, errors);
	if (done >= total)
		fputc('\n', stderr);
}

/* Ground truth no output can satisfy: the first 20 shown, the rest counted after the run. */
static void show_warning(void *ctx, const char *msg)
{
	long *n = ctx;
	if ((*n)++ < 20)
		warning("%s", msg);
}

static int do_run(int argc, char **argv, struct ftk_eval_run_opts *o, struct prices *p,
		  const char *rates, int json, int allow_bad)
{
	if (argc != 1)
		ftk_tool_usage_error(&tool, "run takes one suite file");
	o->suite_path = argv[0];
	o->run_dir = tool.out_path;
	if (!o->run_dir)
		ftk_tool_usage_error(&tool, "run needs -o RUN_DIR");
	int nb = !!o->outputs_path + !!o->endpoint + !!o->model_dir;
	if (nb != 1)
		ftk_tool_usage_error(&tool, "give one backend: --outputs, --endpoint or --model-dir");
	o->backend = o->outputs_path ? FTK_EVAL_OUTPUTS : o->endpoint ? FTK_EVAL_ENDPOINT : FTK_EVAL_LOCAL;
	if (o->endpoint && !o->model)
		ftk_tool_usage_error(&tool, "--endpoint needs --model");
	if (o->adapter_dir && !o->model_dir)
		ftk_tool_usage_error(&tool, "--adapter needs --model-dir");
	if (o->backend == FTK_EVAL_ENDPOINT)
		find_prices(p, rates, o->model);
	return run_and_report(o, p, json, allow_bad);
}

/* ftk-eval rescore RUN_DIR [SUITE]: judge the stored outputs again, no model. */
static int do_rescore(int argc, char **argv, struct ftk_eval_run_opts *o, struct prices *p,
		      int json, int allow_bad)
{
	if (argc < 1 || argc > 2)
		ftk_tool_usage_error(&tool, "rescore takes a run directory and optionally a suite");
	if (o->outputs_path || o->endpoint || o->model_dir)
		ftk_tool_usage_error(&tool, "rescore asks no model: it takes no backend");
	o->run_dir = argv[0];
	o->suite_path = argc > 1 ? argv[1] : NULL;
	o->rescore_only = 1;
	return run_and_report(o, p, json, allow_bad);
}

static int run_and_report(struct ftk_eval_run_opts *o, struct prices *p, int json, int allow_bad)
{
	int incomplete = 0;
	if (!tool.quiet && isatty(2))
		o->on_progress = show_progress;
	long n_warnings = 0;
	o->on_warning = show_warning;
	o->warning_ctx = &n_warnings;
	struct ftk_eval_run_stats st;
	struct ftk_error e;
	ftk_error_clear(&e);
	int rc = ftk_eval_run(o, &st, &e);
	if (n_warnings > 20)
		warning("%ld more warnings about ground truth no output can satisfy", n_warnings - 20);
	if (rc < 0) {
		error_at(&e);
		return rc == FTK_EUSAGE ? FTK_EXIT_USAGE : FTK_EXIT_DATA;
	}
	if (st.outputs_skipped)
		warning("%s: %ld lines without an \"id\" skipped", o->outputs_path, st.outputs_skipped);
	cJSON *res;
	if (load_results(o->run_dir, &res) < 0)
		return FTK_EXIT_DATA;
	/* a judge that could not work (its model down) */
	long n_jerr = 0;
	const cJSON *r, *je;
	cJSON_ArrayForEach(r, res)
		cJSON_ArrayForEach(je, cJSON_GetObjectItemCaseSensitive(r, "judge_errors"))
			if (n_jerr++ < 10)
				error("judge '%s': %s", cJSON_GetStringValue(cJSON_GetObjectItem(je, "judge")),
				      cJSON_GetStringValue(cJSON_GetObjectItem(je, "reason")));
	if (n_jerr > 10)
		error("%ld more judge errors (results.jsonl, \"judge_errors\")", n_jerr - 10);
	cJSON *sum = ftk_eval_summarize(res);
	cJSON_Delete(res);
	/* a broken case is the suite's problem, with its place */
	double n_bad = jnum(sum, "bad_cases");
	long shown = 0;
	cJSON_ArrayForEach(je, cJSON_GetObjectItemCaseSensitive(sum, "bad_case_list"))
	{
		const char *field = cJSON_GetStringValue(cJSON_GetObjectItem(je, "field"));
		if (shown++ >= 10)
			break;
		char msg[2400];
		snprintf(msg, sizeof(msg), "%s: %s%s%s (judge '%s')",
			 cJSON_GetStringValue(cJSON_GetObjectItem(je, "where")), field ? field : "",
			 field ? ": " : "", cJSON_GetStringValue(cJSON_GetObjectItem(je, "message")),
			 cJSON_GetStringValue(cJSON_GetObjectItem(je, "judge")));
		if (allow_bad)
			warning("%s", msg);
		else
			error("%s", msg);
	}
	const char *name = st.suite[0] ? st.suite : o->suite_path;
	if (json)
		print_json(sum);
	else
		print_summary_table(sum, o->run_dir);
	double errors = jnum(sum, "errors");
	/* the causes of the errors, for the last words */
	double transient = jnum(sum, "transient_errors");
	char causes[512] = "";
	const cJSON *ec;
	cJSON_ArrayForEach(ec, cJSON_GetObjectItemCaseSensitive(sum, "errors_by_cause"))
		snprintf(causes + strlen(causes), sizeof(causes) - strlen(causes), "%s%s %.0f",
			 causes[0] ? ", " : "", ec->string, ec->valuedouble);
	if (tool.stats_path) {
		/* --stats: the summary and this invocation's counts, as JSON */
		cJSON *js = cJSON_Duplicate(sum, 1);
		cJSON *inv = cJSON_AddObjectToObject(js, "invocation");
		cJSON_AddNumberToObject(inv, "units", (double)st.units);
		cJSON_AddNumberToObject(inv, "resumed", (double)st.resumed);
		cJSON_AddNumberToObject(inv, "asked", (double)st.asked);
		cJSON_AddNumberToObject(inv, "cache_hits", (double)st.cache_hits);
		cJSON_AddNumberToObject(inv, "prompt_tokens", (double)st.prompt_tokens);
		cJSON_AddNumberToObject(inv, "completion_tokens", (double)st.completion_tokens);
		cJSON_AddNumberToObject(inv, "judge_calls", (double)st.judge_calls);
		cJSON_AddNumberToObject(inv, "seconds", st.seconds);
		char *text = cJSON_Print(js);
		FILE *f = fopen(tool.stats_path, "w");
		if (!f || fprintf(f, "%s\n", text) < 0 || fclose(f) != 0)
			error("cannot write '%s': %s", tool.stats_path, strerror(errno));
		cJSON_free(text);
		cJSON_Delete(js);
	}
	if (!tool.quiet && (st.rescored || st.stale || o->rescore_only))
		fprintf(stderr, "ftk-eval: %ld results judged again from their stored outputs (no model asked)\n",
			st.rescored);
	if (st.stale && !o->rescore_only)
		warning("%ld stored outputs answered a prompt that has changed since: asked again", st.stale);
	if (o->rescore_only && st.missing) {
		error("%ld results have no usable stored output (%ld answered a prompt that has changed since): run 'ftk eval run' into this directory to ask for them",
		      st.missing, st.stale);
		incomplete = 1;
	}
	if (!tool.quiet && !o->rescore_only) {
		if (o->backend == FTK_EVAL_OUTPUTS)
			fprintf(stderr, "ftk-eval: %ld results: %ld resumed, %ld scored from '%s', %ld errors",
				st.units, st.resumed, st.units - st.resumed, o->outputs_path, (long)errors);
		else
			fprintf(stderr, "ftk-eval: %ld results: %ld resumed, %ld from the model, %ld from the cache, %ld errors",
				st.units, st.resumed, st.asked, st.cache_hits, (long)errors);
		if (o->backend == FTK_EVAL_ENDPOINT) {
			fprintf(stderr, "; %ld+%ld tokens", st.prompt_tokens, st.completion_tokens);
			if (p->have)
				fprintf(stderr, ", $%.4f", ((double)st.prompt_tokens * p->in +
							   (double)st.completion_tokens * p->out) / 1e6);
		}
		fputc('\n', stderr);
	}
	ledger_entry(o, &st, p, name);
	cJSON_Delete(sum);
	if (n_bad > 0 && !allow_bad) {
		error("%.0f results of defective cases were excluded from every metric: fix the suite, or pass --allow-bad-cases",
		      n_bad);
		return FTK_EXIT_DATA;
	}
	if (n_jerr > 0 || incomplete)
		return FTK_EXIT_DATA;
	if (errors > 0) {
		if (!tool.quiet) {
			fprintf(stderr, "ftk-eval: %.0f results have no answer (never scored; %s)\n", errors,
				causes);
			if (transient > 0)
				fprintf(stderr, "ftk-eval: %.0f of them failed for a passing reason: run the same command again to retry them\n",
					transient);
			if (errors - transient > 0)
				fprintf(stderr, "ftk-eval: %.0f of them failed for good (the same request would fail again): see \"error\" in results.jsonl\n",
					errors - transient);
		}
		return FTK_EXIT_DATA;
	}
	return FTK_EXIT_OK;
}

static int do_import(int argc, char **argv, struct ftk_eval_import_opts *io, long limit)
{
	if (argc != 2)
		ftk_tool_usage_error(&tool, "import takes a format and a file");
	io->format = argv[0];
	io->input = argv[1];
	io->suite_path = tool.out_path;
	io->limit = limit;
	if (!io->suite_path)
		ftk_tool_usage_error(&tool, "import needs -o SUITE");
	struct ftk_error e;
	ftk_error_clear(&e);
	long n = ftk_eval_import(io, &e);
	if (n < 0) {
		error_at(&e);
		return n == FTK_EUSAGE ? FTK_EXIT_USAGE : FTK_EXIT_DATA;
	}
	if (!tool.quiet)
		fprintf(stderr, "ftk-eval: %ld cases from '%s' (%s, %d-shot) into '%s'\n", n, io->input,
			io->format, io->num_fewshot, io->suite_path);
	return FTK_EXIT_OK;
}

/* --shard I/N */
static void shard_cb(const struct ftk_option *opt, const char *arg)
{
	long i, n;
	char tail;
	(void)opt;
	if (sscanf(arg, "%ld/%ld%c", &i, &n, &tail) != 2 || n < 1 || n > 1000000 || i < 0 || i >= n)
		ftk_usage_error("--shard wants I/N with 0 <= I < N, got '%s'", arg);
	o.shard_index = (int)i;
	o.shard_count = (int)n;
}

/* The backends' rows: run's, and hidden in rescore's so that it can say it takes none */
#define BACKEND_ROWS(hidden)                                                                   \
	{ .kind = FTK_OPTION_STRING, .long_name = "outputs", .value = &o.outputs_path, .argh = "FILE", \
	  .flags = (hidden),                                                                    \
	  .help = "score answers that exist (an outputs JSONL or a\n"                          \
		  "results.jsonl); never queries a model" },                                   \
	{ .kind = FTK_OPTION_STRING, .long_name = "endpoint", .value = &o.endpoint, .argh = "URL", \
	  .flags = (hidden),                                                                    \
	  .help = "an OpenAI-compatible server (base URL, .../v1, or\n"                        \
		  "the full .../chat/completions URL)" },                                      \
	{ .kind = FTK_OPTION_STRING, .long_name = "model", .value = &o.model, .argh = "NAME",    \
	  .flags = (hidden), .help = "the model name sent to the endpoint" },                 \
	{ .kind = FTK_OPTION_STRING, .long_name = "model-dir", .value = &o.model_dir, .argh = "DIR", \
	  .flags = (hidden),                                                                    \
	  .help = "a local Hugging Face model, run with ftk's own\n"                           \
		  "inference engine (-j engines, default 1)" },                                \
	{ .kind = FTK_OPTION_STRING, .long_name = "adapter", .value = &o.adapter_dir, .argh = "DIR", \
	  .flags = (hidden), .help = "a PEFT adapter for --model-dir" },                      \
	{ .kind = FTK_OPTION_STRING, .long_name = "tokenizer", .value = &o.tokenizer_dir,       \
	  .argh = "DIR", .flags = (hidden),                                                     \
	  .help = "with --endpoint, for log-likelihood suites: the\n"                          \
		  "model's tokenizer (scored through /v1/completions\n"                        \
		  "with echo and logprobs)" }

/* The requests' rows: run's, and rescore's (its judges ask a model) */
#define REQUEST_ROWS                                                                           \
	FTK_OPT_INT('j', "jobs", &o.jobs, "N", 1, 1024,                                         \
		    "requests in flight (default 4), or local engines"),                       \
	FTK_OPT_DOUBLE(0, "timeout", &o.timeout_s, "S", 0.001, 1e6, "seconds per attempt (default 120)"), \
	FTK_OPT_INT(0, "retries", &o.max_attempts, "N", 1, 100,                                 \
		    "attempts per request, first included (default 6)"),                       \
	FTK_OPT_DOUBLE(0, "retry-base", &o.retry_base_s, "S", 0, 3600,                          \
		       "first backoff wait before jitter (default 1)"),                        \
	FTK_OPT_DOUBLE(0, "retry-max-wait", &o.retry_max_wait_s, "S", 0.001, 86400,             \
		       "cap on one wait, Retry-After included (default 60)"),                  \
	FTK_OPT_STRING(0, "cache", &o.cache_dir, "DIR",                                         \
		       "response cache (default $FTK_CACHE_DIR/eval or\n"                      \
		       "~/.cache/ftk/eval)"),                                                  \
	FTK_OPT_FLAG(0, "no-cache", &o.no_cache, "neither read nor write the cache"),          \
	FTK_OPT_STRING(0, "judge-endpoint", &o.judge_endpoint, "URL",                           \
		       "server for model-graded judges (default --endpoint)"),                 \
	FTK_OPT_STRING(0, "judge-api-key-env", &o.judge_api_key_env, "VAR",                     \
		       "its key (default --api-key-env)")

#define ALLOW_BAD_ROW                                                                          \
	FTK_OPT_FLAG(0, "allow-bad-cases", &allow_bad,                                          \
		     "exit 0 even when the suite has defective cases\n"                        \
		     "(they are excluded from every metric either way)")

/* Both prices or neither; then p.have */
static void check_prices(void)
{
	int have_in = !isnan(p.in), have_out = !isnan(p.out);
	if (have_in != have_out)
		ftk_tool_usage_error(&tool, "give both --usd-per-mtok-in and --usd-per-mtok-out");
	p.have = have_in && have_out;
	if (!p.have)
		p.in = p.out = 0;
}

static int sub_run(int argc, char **argv)
{
	static const char *const usage[] = { "ftk-eval run SUITE -o RUN_DIR BACKEND [options]", "",
					     U_INTRO, NULL };
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Backends (one)"),
		BACKEND_ROWS(0),
		FTK_OPT_GROUP("Run options"),
		FTK_OPT_INT(0, "samples", &o.samples, "K", 1, 10000,
			    "K independent samples per case (default 1; with\n"
			    "--outputs, as many as the file holds for a case)"),
		FTK_OPT_LONG(0, "limit", &o.limit, "N", 1, 1000000000000L, "only the first N cases"),
		FTK_OPT_CALLBACK(0, "shard", NULL, "I/N", shard_cb,
				 "only slice I (0..N-1) of N contiguous slices of the\n"
				 "cases; `ftk-eval merge` joins the N runs into one"),
		FTK_OPT_STRING(0, "api-key-env", &o.api_key_env, "VAR",
			       "send the key held in environment variable VAR"),
		REQUEST_ROWS,
		FTK_OPT_DOUBLE(0, "usd-per-mtok-in", &p.in, "X", 0, 1e9, "price of a million prompt tokens"),
		FTK_OPT_DOUBLE(0, "usd-per-mtok-out", &p.out, "Y", 0, 1e9,
			       "price of a million completion tokens"),
		FTK_OPT_STRING(0, "rates", &rates, "FILE",
			       "take the model's prices from an ftk-ledger rates file"),
		OPT_JSON_ROW,
		FTK_OPT_FLAG(0, "rescore", &o.rescore,
			     "judge the stored outputs again, accepting a suite or\n"
			     "judges that differ from RUN_DIR's (not a model)"),
		ALLOW_BAD_ROW,
		EVAL_COMMON("RUN_DIR", "the run directory"),
		FTK_OPT_END(),
	};
	argc = ftk_parse_options(argc, argv, "ftk-eval run", opts, usage);
	check_prices();
	return do_run(argc, argv, &o, &p, rates, json, allow_bad);
}

static int sub_rescore(int argc, char **argv)
{
	static const char *const usage[] = {
		"ftk-eval rescore RUN_DIR [SUITE] [--judge-endpoint URL]", "",
		"Judge the outputs stored in RUN_DIR again with the suite's current judges",
		"(SUITE, default the one RUN_DIR was run with), asking no model.", NULL,
	};
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Options"),
		REQUEST_ROWS,
		OPT_JSON_ROW,
		ALLOW_BAD_ROW,
		BACKEND_ROWS(FTK_OPTF_HIDDEN),
		EVAL_COMMON("RUN_DIR", "not used: the run directory is RUN_DIR"),
		FTK_OPT_END(),
	};
	argc = ftk_parse_options(argc, argv, "ftk-eval rescore", opts, usage);
	check_prices();
	return do_rescore(argc, argv, &o, &p, json, allow_bad);
}

static int sub_merge(int argc, char **argv)
{
	static const char *const usage[] = {
		"ftk-eval merge SHARD_RUN_DIR... -o RUN_DIR [--json]", "",
		"Merge: the shard runs of one suite (any order, all N) into a new RUN_DIR",
		"whose results, summary and run.json are those of one unsharded run.", NULL,
	};
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Options"),
		OPT_JSON_ROW,
		EVAL_COMMON("RUN_DIR", "the merged run directory (new)"),
		FTK_OPT_END(),
	};
	argc = ftk_parse_options(argc, argv, "ftk-eval merge", opts, usage);
	return do_merge(argc, argv, json);
}

static int sub_summary(int argc, char **argv)
{
	static const char *const usage[] = { "ftk-eval summary RUN_DIR [--reviews FILE] [--json]", "",
					     "Print a run's metrics with their intervals.", NULL };
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Summary options"),
		FTK_OPT_STRING(0, "reviews", &reviews, "FILE",
			       "fold people's verdicts (ftk-review) into the results\n"
			       "and report judge-versus-human agreement (default\n"
			       "RUN_DIR/reviews.jsonl when it exists)"),
		OPT_JSON_ROW,
		EVAL_COMMON("RUN_DIR", "not used"),
		FTK_OPT_END(),
	};
	argc = ftk_parse_options(argc, argv, "ftk-eval summary", opts, usage);
	return do_summary(argc, argv, json, reviews);
}

static int sub_compare(int argc, char **argv)
{
	static const char *const usage[] = {
		"ftk-eval compare RUN_A RUN_B [--alpha P] [--json]", "",
		"Compare two runs of one suite case by case (paired statistics).", NULL,
	};
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Compare options"),
		FTK_OPT_DOUBLE(0, "alpha", &alpha, "P", 1e-12, 0.5, "significance level (default 0.05)"),
		OPT_JSON_ROW,
		EVAL_COMMON("RUN_DIR", "not used"),
		FTK_OPT_END(),
	};
	argc = ftk_parse_options(argc, argv, "ftk-eval compare", opts, usage);
	return do_compare(argc, argv, json, alpha);
}

static int sub_judges(int argc, char **argv)
{
	static const char *const usage[] = { "ftk-eval judges", "",
					     "List the judges a suite can name, with what each checks.", NULL };
	struct ftk_option opts[] = {
		EVAL_COMMON("RUN_DIR", "not used"),
		FTK_OPT_END(),
	};
	ftk_parse_options(argc, argv, "ftk-eval judges", opts, usage);
	return do_judges();
}

static int sub_import(int argc, char **argv)
{
	static const char *const usage[] = {
		"ftk-eval import FORMAT FILE -o SUITE [--num-fewshot K] [options]", "",
		"Turn a standard eval task's file into a suite.", NULL,
	};
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Import options (FORMAT: gsm8k, arc, hellaswag, mmlu, truthfulqa_mc1,\n"
			      "truthfulqa_mc2; the prompt is lm-evaluation-harness's default template)"),
		FTK_OPT_INT(0, "num-fewshot", &io.num_fewshot, "K", 0, 1000,
			    "K examples before each question (default 0)"),
		FTK_OPT_STRING(0, "fewshot-split", &io.fewshot_split, "FILE",
			       "draw them from FILE (same format; default: FILE,\n"
			       "never the question itself)"),
		FTK_OPT_LONG(0, "fewshot-seed", &fewshot_seed, "N", 0, 4000000000000000000L,
			     "the seed of that choice (default 1234)"),
		FTK_OPT_STRING(0, "name", &io.name, "NAME", "the suite's name (default the task's)"),
		FTK_OPT_LONG(0, "limit", &o.limit, "N", 1, 1000000000000L, "only the first N documents"),
		EVAL_COMMON("SUITE", "the suite to write"),
		FTK_OPT_END(),
	};
	argc = ftk_parse_options(argc, argv, "ftk-eval import", opts, usage);
	io.seed = (uint64_t)fewshot_seed;
	return do_import(argc, argv, &io, o.limit);
}

int cmd_eval(int argc, char **argv)
{
	ftk_subcommand_fn fn = NULL;
	ftk_tool_init(&tool, "ftk-eval", NULL);
	tool.stage = "eval";
	ftk_eval_run_opts_init(&o);
	ftk_eval_import_opts_init(&io);
	fewshot_seed = (long)io.seed;
	p.in = p.out = NAN;	/* not given */
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Commands"),
		FTK_OPT_SUBCOMMAND("run", &fn, sub_run, "ask a model (or read answers) and score a suite"),
		FTK_OPT_SUBCOMMAND("rescore", &fn, sub_rescore,
				   "judge a run's stored outputs again, asking no model"),
		FTK_OPT_SUBCOMMAND("merge", &fn, sub_merge, "join the shard runs of one suite into one run"),
		FTK_OPT_SUBCOMMAND("summary", &fn, sub_summary, "print a run's metrics with their intervals"),
		FTK_OPT_SUBCOMMAND("compare", &fn, sub_compare, "compare two runs of one suite case by case"),
		FTK_OPT_SUBCOMMAND("judges", &fn, sub_judges, "list the judges a suite can name"),
		FTK_OPT_SUBCOMMAND("import", &fn, sub_import,
				   "turn a standard eval task's file into a suite"),
		FTK_OPT_TEXT("\n'ftk-eval COMMAND --help' shows the options of a command.\n"),
		EVAL_COMMON("RUN_DIR", "the run directory (run), the suite (import)"),
		FTK_OPT_END(),
	};
	argc = ftk_parse_options(argc, argv, "ftk-eval", opts, usage_top);
	return fn(argc, argv);
}
