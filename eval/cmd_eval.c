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
#include <getopt.h>
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

/* The help, in parts, so that `ftk eval SUB --help` shows SUB's own. */
#define U_HEAD \
	"usage: ftk-eval run SUITE -o RUN_DIR BACKEND [options]\n" \
	"       ftk-eval rescore RUN_DIR [SUITE] [--judge-endpoint URL]\n" \
	"       ftk-eval merge SHARD_RUN_DIR... -o RUN_DIR [--json]\n" \
	"       ftk-eval summary RUN_DIR [--reviews FILE] [--json]\n" \
	"       ftk-eval compare RUN_A RUN_B [--alpha P] [--json]\n" \
	"       ftk-eval judges\n" \
	"       ftk-eval import FORMAT FILE -o SUITE [--num-fewshot K] [options]\n"
#define U_INTRO \
	"\n" \
	"Run an eval suite, score every answer with the suite's judges, and report\n" \
	"each metric with its standard error and 95% interval.  RUN_DIR receives\n" \
	"results.jsonl (one line per case and sample, appended as they finish),\n" \
	"summary.json and run.json; running again into the same RUN_DIR resumes,\n" \
	"asking only for what has no result yet (errored cases are asked again).\n" \
	"RUN_DIR belongs to one suite, judges and model configuration (run.json):\n" \
	"another is refused, naming what differs.  rescore (or run --rescore) judges\n" \
	"the stored outputs again with the suite's current judges, asking no model.\n" \
	"\n"
#define U_BACKENDS \
	"Backends (one):\n" \
	"      --outputs FILE       score answers that exist (an outputs JSONL or a\n" \
	"                           results.jsonl); never queries a model\n" \
	"      --endpoint URL       an OpenAI-compatible server (base URL, .../v1, or\n" \
	"                           the full .../chat/completions URL)\n" \
	"      --model NAME         the model name sent to the endpoint\n" \
	"      --model-dir DIR      a local Hugging Face model, run with ftk's own\n" \
	"                           inference engine (-j engines, default 1)\n" \
	"      --adapter DIR        a PEFT adapter for --model-dir\n" \
	"      --tokenizer DIR      with --endpoint, for log-likelihood suites: the\n" \
	"                           model's tokenizer (scored through /v1/completions\n" \
	"                           with echo and logprobs)\n"
#define U_RUN \
	"Run options:\n" \
	"  -j, --jobs N             requests in flight (default 4), or local engines\n" \
	"      --samples K          K independent samples per case (default 1; with\n" \
	"                           --outputs, as many as the file holds for a case)\n" \
	"      --limit N            only the first N cases\n" \
	"      --shard I/N          only slice I (0..N-1) of N contiguous slices of the\n" \
	"                           cases; `ftk-eval merge` joins the N runs into one\n" \
	"      --api-key-env VAR    send the key held in environment variable VAR\n" \
	"      --timeout S          seconds per attempt (default 120)\n" \
	"      --retries N          attempts per request, first included (default 6)\n" \
	"      --retry-base S       first backoff wait before jitter (default 1)\n" \
	"      --retry-max-wait S   cap on one wait, Retry-After included (default 60)\n" \
	"      --cache DIR          response cache (default $FTK_CACHE_DIR/eval or\n" \
	"                           ~/.cache/ftk/eval)\n" \
	"      --no-cache           neither read nor write the cache\n" \
	"      --judge-endpoint URL server for model-graded judges (default --endpoint)\n" \
	"      --judge-api-key-env VAR  its key (default --api-key-env)\n" \
	"      --usd-per-mtok-in X  price of a million prompt tokens\n" \
	"      --usd-per-mtok-out Y price of a million completion tokens\n" \
	"      --rates FILE         take the model's prices from an ftk-ledger rates file\n"
#define U_JSON \
	"      --json               print summary.json instead of the table\n"
#define U_RESCORE \
	"      --rescore            judge the stored outputs again, accepting a suite or\n" \
	"                           judges that differ from RUN_DIR's (not a model)\n" \
	"      --allow-bad-cases    exit 0 even when the suite has defective cases\n" \
	"                           (they are excluded from every metric either way)\n"
#define U_MERGE \
	"Merge: the shard runs of one suite (any order, all N) into a new RUN_DIR\n" \
	"whose results, summary and run.json are those of one unsharded run.\n"
#define U_SUMMARY \
	"Summary options:\n" \
	"      --reviews FILE       fold people's verdicts (ftk-review) into the results\n" \
	"                           and report judge-versus-human agreement (default\n" \
	"                           RUN_DIR/reviews.jsonl when it exists)\n"
#define U_IMPORT \
	"Import options (FORMAT: gsm8k, arc, hellaswag, mmlu, truthfulqa_mc1,\n" \
	"truthfulqa_mc2; the prompt is lm-evaluation-harness's default template):\n" \
	"      --num-fewshot K      K examples before each question (default 0)\n" \
	"      --fewshot-split FILE draw them from FILE (same format; default: FILE,\n" \
	"                           never the question itself)\n" \
	"      --fewshot-seed N     the seed of that choice (default 1234)\n" \
	"      --name NAME          the suite's name (default the task's)\n"
#define U_COMPARE \
	"Compare options:\n" \
	"      --alpha P            significance level (default 0.05)\n"
#define U_COMMON \
	"Common options:\n" \
	"  -o, --output RUN_DIR     the run directory (run)\n" \
	"      --stats FILE         write the summary and this invocation's counts as JSON\n" \
	"      --ledger FILE        append the run's ledger entry (default $FTK_LEDGER)\n" \
	"      --run NAME           the run name for the ledger (default $FTK_RUN)\n" \
	"      --rejects FILE       accepted for uniformity; ftk-eval drops no records\n" \
	"      --max-record-bytes N the same\n" \
	"  -q, --quiet              no closing line on stderr\n" \
	"  -h, --help               show this help\n" \
	"      --version            show the version\n"
#define U_EXIT \
	"Exit status: 0 success, 1 data problems or failure, 2 bad usage.\n" \
	"ftk-eval compare exits 1 when a semantic metric is significantly worse in\n" \
	"RUN_B, and 2 when the runs are of different suites (no case in common);\n" \
	"ftk-eval run exits 1 when some cases could not be scored.\n"

static const char usage_run[] = U_HEAD U_INTRO U_BACKENDS U_RUN U_JSON U_RESCORE U_MERGE U_SUMMARY
	U_IMPORT U_COMPARE U_COMMON U_EXIT;

static const struct { const char *name, *usage; } sub_usage[] = {
	{ "run", "usage: ftk-eval run SUITE -o RUN_DIR BACKEND [options]\n"
		U_INTRO
		U_BACKENDS
		U_RUN
		U_JSON
		U_RESCORE
		U_COMMON
		U_EXIT },
	{ "rescore", "usage: ftk-eval rescore RUN_DIR [SUITE] [--judge-endpoint URL]\n"
		"\nJudge the outputs stored in RUN_DIR again with the suite's current judges\n"
		"(SUITE, default the one RUN_DIR was run with), asking no model.\n"
		"Options:\n"
		"      --judge-endpoint URL server for model-graded judges\n"
		"      --judge-api-key-env VAR  its key\n"
		U_JSON
		U_COMMON
		U_EXIT },
	{ "merge", "usage: ftk-eval merge SHARD_RUN_DIR... -o RUN_DIR [--json]\n"
		"\n"
		U_MERGE
		U_JSON
		U_COMMON
		U_EXIT },
	{ "summary", "usage: ftk-eval summary RUN_DIR [--reviews FILE] [--json]\n"
		"\nPrint a run's metrics with their intervals.\n"
		U_SUMMARY
		U_JSON
		U_COMMON
		U_EXIT },
	{ "compare", "usage: ftk-eval compare RUN_A RUN_B [--alpha P] [--json]\n"
		"\nCompare two runs of one suite case by case (paired statistics).\n"
		U_COMPARE
		U_JSON
		U_COMMON
		U_EXIT },
	{ "judges", "usage: ftk-eval judges\n"
		"\nList the judges a suite can name, with what each checks.\n"
		U_COMMON
		U_EXIT },
	{ "import", "usage: ftk-eval import FORMAT FILE -o SUITE [--num-fewshot K] [options]\n"
		"\nTurn a standard eval task's file into a suite.\n"
		U_IMPORT
		U_COMMON
		U_EXIT },
};

enum {
	OPT_OUTPUTS = FTK_OPT_FIRST_FREE,
	OPT_ENDPOINT,
	OPT_MODEL,
	OPT_MODEL_DIR,
	OPT_ADAPTER,
	OPT_SAMPLES,
	OPT_LIMIT,
	OPT_API_KEY_ENV,
	OPT_TIMEOUT,
	OPT_RETRIES,
	OPT_RETRY_BASE,
	OPT_RETRY_MAX,
	OPT_CACHE,
	OPT_NO_CACHE,
	OPT_JUDGE_ENDPOINT,
	OPT_JUDGE_KEY,
	OPT_USD_IN,
	OPT_USD_OUT,
	OPT_RATES,
	OPT_JSON,
	OPT_ALPHA,
	OPT_REVIEWS,
	OPT_NUM_FEWSHOT,
	OPT_FEWSHOT_SPLIT,
	OPT_FEWSHOT_SEED,
	OPT_NAME,
	OPT_TOKENIZER,
	OPT_ALLOW_BAD_CASES,
	OPT_RESCORE,
	OPT_SHARD,
};

static const struct option long_opts[] = {
	FTK_TOOL_LONGOPTS,
	{ "outputs", required_argument, NULL, OPT_OUTPUTS },
	{ "endpoint", required_argument, NULL, OPT_ENDPOINT },
	{ "model", required_argument, NULL, OPT_MODEL },
	{ "model-dir", required_argument, NULL, OPT_MODEL_DIR },
	{ "adapter", required_argument, NULL, OPT_ADAPTER },
	{ "jobs", required_argument, NULL, 'j' },
	{ "samples", required_argument, NULL, OPT_SAMPLES },
	{ "limit", required_argument, NULL, OPT_LIMIT },
	{ "shard", required_argument, NULL, OPT_SHARD },
	{ "api-key-env", required_argument, NULL, OPT_API_KEY_ENV },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "retries", required_argument, NULL, OPT_RETRIES },
	{ "retry-base", required_argument, NULL, OPT_RETRY_BASE },
	{ "retry-max-wait", required_argument, NULL, OPT_RETRY_MAX },
	{ "cache", required_argument, NULL, OPT_CACHE },
	{ "no-cache", no_argument, NULL, OPT_NO_CACHE },
	{ "judge-endpoint", required_argument, NULL, OPT_JUDGE_ENDPOINT },
	{ "judge-api-key-env", required_argument, NULL, OPT_JUDGE_KEY },
	{ "usd-per-mtok-in", required_argument, NULL, OPT_USD_IN },
	{ "usd-per-mtok-out", required_argument, NULL, OPT_USD_OUT },
	{ "rates", required_argument, NULL, OPT_RATES },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "alpha", required_argument, NULL, OPT_ALPHA },
	{ "reviews", required_argument, NULL, OPT_REVIEWS },
	{ "num-fewshot", required_argument, NULL, OPT_NUM_FEWSHOT },
	{ "fewshot-split", required_argument, NULL, OPT_FEWSHOT_SPLIT },
	{ "fewshot-seed", required_argument, NULL, OPT_FEWSHOT_SEED },
	{ "name", required_argument, NULL, OPT_NAME },
	{ "tokenizer", required_argument, NULL, OPT_TOKENIZER },
	{ "allow-bad-cases", no_argument, NULL, OPT_ALLOW_BAD_CASES },
	{ "rescore", no_argument, NULL, OPT_RESCORE },
	{ NULL, 0, NULL, 0 },
};

static struct ftk_tool tool;

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

struct prices {
	double in, out;
	int have;
	const char *source;
};

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

/*
 * The subcommand word, found before getopt runs so that `ftk eval compare
 * --help` can show compare's help: the first argument that is neither an
 * option nor an option's value.
 */
static const char *find_subcommand(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--"))
			return i + 1 < argc ? argv[i + 1] : NULL;
		if (a[0] != '-' || !a[1])
			return a;
		if (a[1] == '-') {
			if (strchr(a, '='))
				continue;
			for (const struct option *o = long_opts; o->name; o++)
				if (!strcmp(o->name, a + 2) && o->has_arg == required_argument) {
					i++;
					break;
				}
		} else if (!a[2] && strchr("oj", a[1])) {
			i++;	/* -o DIR, -j N */
		}
	}
	return NULL;
}

int cmd_eval(int argc, char **argv)
{
	const char *usage = usage_run;
	const char *sub0 = find_subcommand(argc, argv);
	for (size_t i = 0; sub0 && i < FTK_ARRAY_SIZE(sub_usage); i++)
		if (!strcmp(sub0, sub_usage[i].name))
			usage = sub_usage[i].usage;
	ftk_tool_init(&tool, "ftk-eval", usage);
	tool.stage = "eval";
	struct ftk_eval_run_opts o;
	ftk_eval_run_opts_init(&o);
	struct prices p = { 0, 0, 0, NULL };
	int have_in = 0, have_out = 0, json = 0, allow_bad = 0;
	const char *rates = NULL, *reviews = NULL;
	double alpha = 0.05;
	struct ftk_eval_import_opts io;
	ftk_eval_import_opts_init(&io);
	int c;
	while ((c = ftk_getopt_long(argc, argv, FTK_TOOL_SHORTOPTS "j:", long_opts, NULL)) != -1) {
		if (ftk_tool_opt(&tool, c, optarg))
			continue;
		switch (c) {
		case OPT_OUTPUTS: o.outputs_path = optarg; break;
		case OPT_ENDPOINT: o.endpoint = optarg; break;
		case OPT_MODEL: o.model = optarg; break;
		case OPT_MODEL_DIR: o.model_dir = optarg; break;
		case OPT_ADAPTER: o.adapter_dir = optarg; break;
		case 'j': o.jobs = (int)ftk_tool_parse_long(&tool, "--jobs", optarg, 1, 1024); break;
		case OPT_SAMPLES: o.samples = (int)ftk_tool_parse_long(&tool, "--samples", optarg, 1, 10000); break;
		case OPT_LIMIT: o.limit = (long)ftk_tool_parse_long(&tool, "--limit", optarg, 1, 1000000000000L); break;
		case OPT_API_KEY_ENV: o.api_key_env = optarg; break;
		case OPT_TIMEOUT: o.timeout_s = ftk_tool_parse_double(&tool, "--timeout", optarg, 0.001, 1e6); break;
		case OPT_RETRIES: o.max_attempts = (int)ftk_tool_parse_long(&tool, "--retries", optarg, 1, 100); break;
		case OPT_RETRY_BASE: o.retry_base_s = ftk_tool_parse_double(&tool, "--retry-base", optarg, 0, 3600); break;
		case OPT_RETRY_MAX: o.retry_max_wait_s = ftk_tool_parse_double(&tool, "--retry-max-wait", optarg, 0.001, 86400); break;
		case OPT_CACHE: o.cache_dir = optarg; break;
		case OPT_NO_CACHE: o.no_cache = 1; break;
		case OPT_JUDGE_ENDPOINT: o.judge_endpoint = optarg; break;
		case OPT_JUDGE_KEY: o.judge_api_key_env = optarg; break;
		case OPT_USD_IN: p.in = ftk_tool_parse_double(&tool, "--usd-per-mtok-in", optarg, 0, 1e9); have_in = 1; break;
		case OPT_USD_OUT: p.out = ftk_tool_parse_double(&tool, "--usd-per-mtok-out", optarg, 0, 1e9); have_out = 1; break;
		case OPT_RATES: rates = optarg; break;
		case OPT_JSON: json = 1; break;
		case OPT_ALPHA: alpha = ftk_tool_parse_double(&tool, "--alpha", optarg, 1e-12, 0.5); break;
		case OPT_REVIEWS: reviews = optarg; break;
		case OPT_SHARD: {
			long i, n;
			char tail;
			if (sscanf(optarg, "%ld/%ld%c", &i, &n, &tail) != 2 || n < 1 || n > 1000000 ||
			    i < 0 || i >= n)
				ftk_tool_usage_error(&tool, "--shard wants I/N with 0 <= I < N, got '%s'", optarg);
			o.shard_index = (int)i;
			o.shard_count = (int)n;
			break;
		}
		case OPT_NUM_FEWSHOT: io.num_fewshot = (int)ftk_tool_parse_long(&tool, "--num-fewshot", optarg, 0, 1000); break;
		case OPT_FEWSHOT_SPLIT: io.fewshot_split = optarg; break;
		case OPT_FEWSHOT_SEED: io.seed = (uint64_t)ftk_tool_parse_long(&tool, "--fewshot-seed", optarg, 0, 4000000000000000000L); break;
		case OPT_NAME: io.name = optarg; break;
		case OPT_TOKENIZER: o.tokenizer_dir = optarg; break;
		case OPT_ALLOW_BAD_CASES: allow_bad = 1; break;
		case OPT_RESCORE: o.rescore = 1; break;
		default: ftk_tool_usage_error(&tool, NULL);
		}
	}
	if (have_in != have_out)
		ftk_tool_usage_error(&tool, "give both --usd-per-mtok-in and --usd-per-mtok-out");
	p.have = have_in && have_out;
	if (optind >= argc)
		ftk_tool_usage_error(&tool, "no subcommand: run, rescore, merge, summary, compare, judges or import");
	const char *sub = argv[optind++];
	int rest = argc - optind;
	char **rargv = argv + optind;
	if (!strcmp(sub, "run"))
		return do_run(rest, rargv, &o, &p, rates, json, allow_bad);
	if (!strcmp(sub, "rescore"))
		return do_rescore(rest, rargv, &o, &p, json, allow_bad);
	if (!strcmp(sub, "summary"))
		return do_summary(rest, rargv, json, reviews);
	if (!strcmp(sub, "merge"))
		return do_merge(rest, rargv, json);
	if (!strcmp(sub, "compare"))
		return do_compare(rest, rargv, json, alpha);
	if (!strcmp(sub, "judges"))
		return do_judges();
	if (!strcmp(sub, "import"))
		return do_import(rest, rargv, &io, o.limit);
	ftk_tool_usage_error(&tool, "unknown subcommand '%s': run, rescore, merge, summary, compare, judges or import", sub);
}
