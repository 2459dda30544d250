/*
 * cmd_ledger.c: ftk-ledger, what a fine-tune really cost.
 * summary: log people's hours, price runs, estimate training cost, report cost per quality point
 *
 * Every ftk tool appends one line per run to the ledger (lib/ledger.h);
 * people add theirs with `log` or a `start`/`stop` timer.  This program reads
 * it back: `report` totals it by run, stage and kind and, given eval
 * summaries, divides what a run cost by the quality it gained over a
 * baseline; `diff` sets two runs side by side; `estimate` predicts a training
 * run before it starts; `tco` adds up what owning the model costs over a
 * horizon.  `rates` shows and extends the dated price table.
 *
 * Two rules run through all of it.  A damaged ledger line is named (file and
 * line) and left out of every total, never guessed at.  A price is the one in
 * force on the entry's date: entries that carry their own "usd" keep it, the
 * others are priced from the rates row dated on or before the entry.  Where
 * the rates are the built-in examples, every output says so.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli/tool.h"
#include "ledger/cost.h"
#include "lib/json.h"
#include "lib/ledger.h"
#include "lib/stream.h"

static const char usage[] =
	"Usage: ftk-ledger COMMAND [options]\n"
	"Record and price what a fine-tune costs: people's hours, machine hours, API tokens.\n"
	"\n"
	"Commands:\n"
	"  log --hours H --stage S     record people's work (--note, --run, --who, --rate, --at)\n"
	"  start --stage S / stop      time a work session; stop appends the entry\n"
	"  append [FILE...]            check JSONL entries and append them one by one\n"
	"  rates [--json]              show the rates; rates add --type T --name N ... adds a row\n"
	"  report [--json]             totals by run, stage and kind (--since, --until, --run);\n"
	"                              --eval RUN=summary.json ... adds cost per quality point\n"
	"  diff RUN_A RUN_B [--json]   what changed in cost between two runs\n"
	"  estimate                    predict a training run's hours and dollars\n"
	"  tco                         total cost of ownership over a horizon\n"
	"\n"
	"Options of every command:\n"
	"      --ledger FILE    the ledger (default $FTK_LEDGER)\n"
	"      --rates FILE     the rates (default $FTK_RATES, else rates.jsonl beside the\n"
	"                       ledger, else the built-in example rates)\n"
	"  -h, --help           show this help\n"
	"\n"
	"log, start, stop:\n"
	"      --hours H        hours worked (log)\n"
	"      --stage S        prep, train, eval, review or serve\n"
	"      --run NAME       the run the work belongs to (default $FTK_RUN)\n"
	"      --who NAME       the person; prices the hours from their rates row\n"
	"      --rate USD       dollars per hour, instead of the rates file\n"
	"      --note TEXT      what was done\n"
	"      --at TIME        when (log: the entry's date; start/stop: the clock time),\n"
	"                       2026-11-23 or 2026-11-23T13:00:00Z; default now\n"
	"rates add:\n"
	"      --type device|person|api  --name NAME  --from DATE (default today)\n"
	"      --usd-per-hour X  --peak-tflops F  --mfu M  --usd-per-mtok-in X\n"
	"      --usd-per-mtok-out X  --source TEXT\n"
	"report:\n"
	"      --since TIME, --until TIME, --run NAME (repeatable), --json\n"
	"      --eval RUN=FILE  an ftk-eval summary.json for RUN (repeatable)\n"
	"      --baseline RUN   the run gains are measured against (default the first --eval)\n"
	"      --metric NAME    the quality metric (default every metric all summaries share)\n"
	"estimate:\n"
	"      --tokens N | --token-stats FILE   tokens per epoch (FILE: ftk-tokenize --stats,\n"
	"                       or a shard directory or its manifest.json)\n"
	"      --epochs E       passes over the data (default 1)\n"
	"      --model DIR      the model's directory or config.json\n"
	"      --method qlora|lora|full   (default qlora)\n"
	"      --rank R         LoRA rank (default 16)\n"
	"      --targets LIST   LoRA modules, e.g. q_proj,v_proj (default all-linear)\n"
	"      --seq-len T      sequences longer than T are cut, as ftk-train does (default\n"
	"                       the --calibrate run's, else none); counted exactly from shards\n"
	"      --device NAME    a device row of the rates (e.g. A100-80GB, cpu)\n"
	"      --gpus K         devices in the run (default 1)\n"
	"      --mfu M          model FLOPs utilization (default the device row's mfu)\n"
	"      --calibrate DIR  use the tokens/s a smoke run achieved (DIR/metrics.jsonl)\n"
	"      --json\n"
	"tco:\n"
	"      --months M       horizon (default 12)\n"
	"      --run NAME       restrict the ledger figures to these runs (repeatable)\n"
	"      --data-usd X     data engineering (default: ledger, stage prep)\n"
	"      --train-usd X    one training cycle (default: ledger, stages train, eval, review)\n"
	"      --retrain-every M  retrain every M months (default never)\n"
	"      --retrain-usd X  one retraining (default the training cycle)\n"
	"      --serve-usd-month X | --serve-device NAME [--serve-gpus K]\n"
	"                       [--serve-hours-per-day H]   serving (default: ledger, stage serve,\n"
	"                       spread over the months it covers)\n"
	"      --json\n"
	"\n"
	"Exit status: 0 success, 1 data problems (a damaged ledger line, a bad rates row) or\n"
	"failure, 2 bad usage.\n";

static struct ftk_tool tool;

#define USAGE(...) ftk_tool_usage_error(&tool, __VA_ARGS__)

enum {
	O_LEDGER = FTK_OPT_FIRST_FREE, O_RATES, O_HOURS, O_STAGE, O_NOTE, O_RUN, O_WHO, O_RATE, O_AT,
	O_JSON, O_SINCE, O_UNTIL, O_EVAL, O_BASELINE, O_METRIC, O_TYPE, O_NAME, O_FROM, O_UPH,
	O_PEAK, O_MFU, O_MIN, O_MOUT, O_SOURCE, O_TOKENS, O_TSTATS, O_EPOCHS, O_MODEL, O_METHOD,
	O_RANK, O_TARGETS, O_DEVICE, O_GPUS, O_CALIB, O_MONTHS, O_DATA_USD, O_TRAIN_USD,
	O_RETRAIN_EVERY, O_RETRAIN_USD, O_SERVE_USD, O_SERVE_DEV, O_SERVE_GPUS, O_SERVE_HPD,
	O_SEQ,
};

static const struct option all_opts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "ledger", required_argument, NULL, O_LEDGER },
	{ "rates", required_argument, NULL, O_RATES },
	{ "hours", required_argument, NULL, O_HOURS },
	{ "stage", required_argument, NULL, O_STAGE },
	{ "note", required_argument, NULL, O_NOTE },
	{ "run", required_argument, NULL, O_RUN },
	{ "who", required_argument, NULL, O_WHO },
	{ "rate", required_argument, NULL, O_RATE },
	{ "at", required_argument, NULL, O_AT },
	{ "json", no_argument, NULL, O_JSON },
	{ "since", required_argument, NULL, O_SINCE },
	{ "until", required_argument, NULL, O_UNTIL },
	{ "eval", required_argument, NULL, O_EVAL },
	{ "baseline", required_argument, NULL, O_BASELINE },
	{ "metric", required_argument, NULL, O_METRIC },
	{ "type", required_argument, NULL, O_TYPE },
	{ "name", required_argument, NULL, O_NAME },
	{ "from", required_argument, NULL, O_FROM },
	{ "usd-per-hour", required_argument, NULL, O_UPH },
	{ "peak-tflops", required_argument, NULL, O_PEAK },
	{ "mfu", required_argument, NULL, O_MFU },
	{ "usd-per-mtok-in", required_argument, NULL, O_MIN },
	{ "usd-per-mtok-out", required_argument, NULL, O_MOUT },
	{ "source", required_argument, NULL, O_SOURCE },
	{ "tokens", required_argument, NULL, O_TOKENS },
	{ "token-stats", required_argument, NULL, O_TSTATS },
	{ "epochs", required_argument, NULL, O_EPOCHS },
	{ "model", required_argument, NULL, O_MODEL },
	{ "method", required_argument, NULL, O_METHOD },
	{ "rank", required_argument, NULL, O_RANK },
	{ "targets", required_argument, NULL, O_TARGETS },
	{ "device", required_argument, NULL, O_DEVICE },
	{ "gpus", required_argument, NULL, O_GPUS },
	{ "calibrate", required_argument, NULL, O_CALIB },
	{ "months", required_argument, NULL, O_MONTHS },
	{ "data-usd", required_argument, NULL, O_DATA_USD },
	{ "train-usd", required_argument, NULL, O_TRAIN_USD },
	{ "retrain-every", required_argument, NULL, O_RETRAIN_EVERY },
	{ "retrain-usd", required_argument, NULL, O_RETRAIN_USD },
	{ "serve-usd-month", required_argument, NULL, O_SERVE_USD },
	{ "serve-device", required_argument, NULL, O_SERVE_DEV },
	{ "serve-gpus", required_argument, NULL, O_SERVE_GPUS },
	{ "serve-hours-per-day", required_argument, NULL, O_SERVE_HPD },
	{ "seq-len", required_argument, NULL, O_SEQ },
	{ NULL, 0, NULL, 0 },
};

/* Everything any command may be given; each command says which it accepts. */
struct opts {
	const char *ledger, *rates_path;
	double hours, rate, at;
	int have_hours, have_rate, have_at;
	const char *stage, *note, *run, *who;
	int json;
	double since, until;
	const char **runs;
	size_t n_runs, alloc_runs;
	char **evals;
	size_t n_evals, alloc_evals;
	const char *baseline, *metric;
	const char *type, *name, *from, *source;
	double uph, peak_tflops, mfu, mtok_in, mtok_out;
	double tokens, epochs, gpus;
	const char *token_stats, *model, *method, *targets, *device, *calibrate;
	int rank;
	long seq_len;
	double months, data_usd, train_usd, retrain_every, retrain_usd;
	double serve_usd, serve_gpus, serve_hpd;
	const char *serve_device;
	char **args;
	int n_args;
};

static double parse_num(const char *opt, const char *arg, double lo)
{
	char *end;
	errno = 0;
	double v = strtod(arg, &end);
	if (!*arg || *end || errno || !isfinite(v))
		USAGE("--%s: expected a number, found '%s'", opt, arg);
	if (v < lo)
		USAGE("--%s: must be at least %g, found '%s'", opt, lo, arg);
	return v;
}

static double parse_time_opt(const char *opt, const char *arg)
{
	double t;
	if (ftk_cost_time_parse(arg, &t) < 0)
		USAGE("--%s: expected a date or time such as 2026-11-23 or 2026-11-23T13:00:00Z, "
		      "found '%s'", opt, arg);
	return t;
}

static const char *opt_name(int c)
{
	for (const struct option *o = all_opts; o->name; o++)
		if (o->val == c)
			return o->name;
	return "?";
}

/*
 * Parse argv (after the command word).  allowed lists the option codes this
 * command takes, ending in 0.
 */
static void parse_opts(const char *cmd, int argc, char **argv, const int *allowed, struct opts *o)
{
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", all_opts, NULL)) != -1) {
		if (c == 'h') {
			fputs(usage, stdout);
			exit(0);
		}
		if (c == '?')
			USAGE(NULL);
		int ok = c == O_LEDGER || c == O_RATES;
		for (const int *a = allowed; *a && !ok; a++)
			ok = *a == c;
		if (!ok)
			USAGE("%s: unknown option '--%s' for this command", cmd, opt_name(c));
		const char *n = opt_name(c);
		switch (c) {
		case O_LEDGER: o->ledger = optarg; break;
		case O_RATES: o->rates_path = optarg; break;
		case O_HOURS: o->hours = parse_num(n, optarg, 0); o->have_hours = 1; break;
		case O_STAGE: o->stage = optarg; break;
		case O_NOTE: o->note = optarg; break;
		case O_RUN:
			o->run = optarg;
			FTK_ALLOC_GROW(o->runs, o->n_runs + 1, o->alloc_runs);
			o->runs[o->n_runs++] = optarg;
			break;
		case O_WHO: o->who = optarg; break;
		case O_RATE: o->rate = parse_num(n, optarg, 0); o->have_rate = 1; break;
		case O_AT: o->at = parse_time_opt(n, optarg); o->have_at = 1; break;
		case O_JSON: o->json = 1; break;
		case O_SINCE: o->since = parse_time_opt(n, optarg); break;
		case O_UNTIL: o->until = parse_time_opt(n, optarg); break;
		case O_EVAL:
			if (!strchr(optarg, '=') || optarg[0] == '=')
				USAGE("--eval: expected RUN=FILE, found '%s'", optarg);
			FTK_ALLOC_GROW(o->evals, o->n_evals + 1, o->alloc_evals);
			o->evals[o->n_evals++] = optarg;
			break;
		case O_BASELINE: o->baseline = optarg; break;
		case O_METRIC: o->metric = optarg; break;
		case O_TYPE: o->type = optarg; break;
		case O_NAME: o->name = optarg; break;
		case O_FROM: parse_time_opt(n, optarg); o->from = optarg; break;
		case O_UPH: o->uph = parse_num(n, optarg, 0); break;
		case O_PEAK: o->peak_tflops = parse_num(n, optarg, 0); break;
		case O_MFU: o->mfu = parse_num(n, optarg, 0); break;
		case O_MIN: o->mtok_in = parse_num(n, optarg, 0); break;
		case O_MOUT: o->mtok_out = parse_num(n, optarg, 0); break;
		case O_SOURCE: o->source = optarg; break;
		case O_TOKENS: o->tokens = parse_num(n, optarg, 1); break;
		case O_TSTATS: o->token_stats = optarg; break;
		case O_EPOCHS: o->epochs = parse_num(n, optarg, 0); break;
		case O_MODEL: o->model = optarg; break;
		case O_METHOD: o->method = optarg; break;
		case O_RANK: o->rank = (int)parse_num(n, optarg, 1); break;
		case O_SEQ: o->seq_len = (long)parse_num(n, optarg, 1); break;
		case O_TARGETS: o->targets = optarg; break;
		case O_DEVICE: o->device = optarg; break;
		case O_GPUS: o->gpus = parse_num(n, optarg, 1); break;
		case O_CALIB: o->calibrate = optarg; break;
		case O_MONTHS: o->months = parse_num(n, optarg, 0); break;
		case O_DATA_USD: o->data_usd = parse_num(n, optarg, 0); break;
		case O_TRAIN_USD: o->train_usd = parse_num(n, optarg, 0); break;
		case O_RETRAIN_EVERY: o->retrain_every = parse_num(n, optarg, 0); break;
		case O_RETRAIN_USD: o->retrain_usd = parse_num(n, optarg, 0); break;
		case O_SERVE_USD: o->serve_usd = parse_num(n, optarg, 0); break;
		case O_SERVE_DEV: o->serve_device = optarg; break;
		case O_SERVE_GPUS: o->serve_gpus = parse_num(n, optarg, 1); break;
		case O_SERVE_HPD: o->serve_hpd = parse_num(n, optarg, 0); break;
		}
	}
	o->args = argv + optind;
	o->n_args = argc - optind;
}

static void opts_init(struct opts *o)
{
	memset(o, 0, sizeof(*o));
	o->since = -INFINITY;
	o->until = INFINITY;
	o->uph = o->peak_tflops = o->mfu = o->mtok_in = o->mtok_out = NAN;
	o->tokens = o->epochs = o->gpus = NAN;
	o->months = o->data_usd = o->train_usd = o->retrain_every = o->retrain_usd = NAN;
	o->serve_usd = o->serve_gpus = o->serve_hpd = NAN;
}

static void opts_release(struct opts *o)
{
	free(o->runs);
	free(o->evals);
}

static const char *need_ledger(const struct opts *o)
{
	const char *p = ftk_ledger_path(o->ledger);
	if (!p)
		USAGE("no ledger: give --ledger FILE or set FTK_LEDGER");
	return p;
}

/* The rates file to use, or NULL for the built-in examples.  *buf holds a made-up path. */
static const char *rates_path(const struct opts *o, char *buf, size_t n, int must_exist)
{
	if (o->rates_path)
		return o->rates_path;
	const char *e = getenv("FTK_RATES");
	if (e && *e)
		return e;
	const char *lp = ftk_ledger_path(o->ledger);
	if (!lp)
		return NULL;
	char *copy = xstrdup(lp);
	snprintf(buf, n, "%s/rates.jsonl", dirname(copy));
	free(copy);
	struct stat st;
	if (must_exist && stat(buf, &st) < 0)
		return NULL;
	return buf;
}

static void load_rates(const struct opts *o, struct ftk_rates *R)
{
	char buf[4096];
	struct ftk_error err;
	const char *p = rates_path(o, buf, sizeof(buf), 1);
	if (ftk_rates_load(p, R, &err) < 0) {
		char m[2048];
		die("%s", ftk_error_format(&err, m, sizeof(m)));
	}
}

/* "rates: FILE" or a warning that the prices are examples. */
static const char *rates_label(const struct ftk_rates *R)
{
	return R->path ? R->path : "built-in examples (not real prices: see 'ftk-ledger rates')";
}

/* ------------------------------------------------------------ log, start, stop */

static int append_human(const char *lp, const struct ftk_rates *R, double ts, double hours,
			const char *stage, const char *run, const char *who, const char *note,
			int have_rate, double rate)
{
	struct ftk_error err;
	char day[16];
	char tsbuf[32];
	cJSON *e = ftk_ledger_entry_new(run, stage, "human");
	ftk_time_rfc3339(ts, tsbuf, sizeof(tsbuf));
	cJSON_ReplaceItemInObjectCaseSensitive(e, "ts", cJSON_CreateString(tsbuf));
	cJSON_AddStringToObject(e, "tool", "ftk-ledger");
	if (who)
		cJSON_AddStringToObject(e, "who", who);
	cJSON_AddNumberToObject(e, "hours", hours);
	const char *src = "--rate";
	if (!have_rate) {
		const char *name = who ? who : "default";
		const struct ftk_rate *r = ftk_rates_find(R, FTK_RATE_PERSON, name, ts);
		ftk_cost_date_format(ts, day, sizeof(day));
		if (!r && who && (r = ftk_rates_find(R, FTK_RATE_PERSON, "default", ts)))
			warning("no rate for person '%s' on %s: using the person 'default'", who, day);
		if (r) {
			rate = r->usd_per_hour;
			have_rate = 1;
			src = r->example ? "an example rate" : "the rates file";
		} else {
			warning("no rate for person '%s' on %s in %s: the entry has no price", name, day,
				rates_label(R));
		}
	}
	if (have_rate) {
		cJSON_AddNumberToObject(e, "rate_usd_per_hour", rate);
		cJSON_AddNumberToObject(e, "usd", hours * rate);
	}
	if (note)
		cJSON_AddStringToObject(e, "note", note);
	int rc = ftk_ledger_append_entry(lp, e, &err);
	cJSON_Delete(e);
	if (rc < 0)
		return error("%s", err.msg);
	const char *rn = run ? run : getenv("FTK_RUN");
	char for_run[300] = "";
	if (rn && *rn)
		snprintf(for_run, sizeof(for_run), " for '%s'", rn);
	if (have_rate)
		fprintf(stderr, "ftk-ledger: logged %.2f h of %s%s: %.2f USD at %.2f USD/h (%s)\n",
			hours, stage, for_run, hours * rate, rate, src);
	else
		fprintf(stderr, "ftk-ledger: logged %.2f h of %s%s\n", hours, stage, for_run);
	return 0;
}

static void check_stage(const char *stage)
{
	if (!stage)
		USAGE("--stage is required (prep, train, eval, review or serve)");
	if (ftk_cost_stage_index(stage) < 0)
		USAGE("--stage: unknown stage '%s' (prep, train, eval, review or serve)", stage);
}

static int cmd_log(int argc, char **argv)
{
	static const int ok[] = { O_HOURS, O_STAGE, O_NOTE, O_RUN, O_WHO, O_RATE, O_AT, 0 };
	struct opts o;
	struct ftk_rates R;
	opts_init(&o);
	parse_opts("log", argc, argv, ok, &o);
	if (o.n_args)
		USAGE("log: unexpected argument '%s'", o.args[0]);
	if (!o.have_hours || o.hours <= 0)
		USAGE("log: --hours is required and must be more than 0");
	check_stage(o.stage);
	const char *lp = need_ledger(&o);
	load_rates(&o, &R);
	int rc = append_human(lp, &R, o.have_at ? o.at : ftk_now(), o.hours, o.stage, o.run, o.who,
			      o.note, o.have_rate, o.rate);
	ftk_rates_release(&R);
	opts_release(&o);
	return rc < 0 ? FTK_EXIT_DATA : 0;
}

static void timer_path(const char *lp, char *buf, size_t n)
{
	snprintf(buf, n, "%s.timer", lp);
}

static int cmd_start(int argc, char **argv)
{
	static const int ok[] = { O_STAGE, O_NOTE, O_RUN, O_WHO, O_RATE, O_AT, 0 };
	struct opts o;
	char tp[4096], tmp[4200], ts[32];
	opts_init(&o);
	parse_opts("start", argc, argv, ok, &o);
	if (o.n_args)
		USAGE("start: unexpected argument '%s'", o.args[0]);
	check_stage(o.stage);
	const char *lp = need_ledger(&o);
	timer_path(lp, tp, sizeof(tp));
	struct strbuf sb = STRBUF_INIT;
	if (strbuf_read_file(&sb, tp) == 0) {
		cJSON *t = cJSON_Parse(sb.buf);
		const char *since = t ? ftk_json_get_str(t, "start") : NULL;
		error("a timer is already running since %s ('%s'): run 'ftk-ledger stop' first",
		      since ? since : "an unreadable time", tp);
		cJSON_Delete(t);
		strbuf_release(&sb);
		return FTK_EXIT_DATA;
	}
	strbuf_release(&sb);
	cJSON *t = cJSON_CreateObject();
	double now = o.have_at ? o.at : ftk_now();
	ftk_time_rfc3339(now, ts, sizeof(ts));
	cJSON_AddStringToObject(t, "start", ts);
	cJSON_AddStringToObject(t, "stage", o.stage);
	const char *run = o.run ? o.run : getenv("FTK_RUN");
	if (run && *run)
		cJSON_AddStringToObject(t, "run", run);
	if (o.who)
		cJSON_AddStringToObject(t, "who", o.who);
	if (o.note)
		cJSON_AddStringToObject(t, "note", o.note);
	if (o.have_rate)
		cJSON_AddNumberToObject(t, "rate_usd_per_hour", o.rate);
	char *s = cJSON_PrintUnformatted(t);
	cJSON_Delete(t);
	/* written whole under a temporary name, then linked: two starts cannot both win */
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", tp, (long)getpid());
	FILE *f = fopen(tmp, "w");
	int rc = 0;
	if (!f || fprintf(f, "%s\n", s) < 0 || fclose(f) != 0) {
		rc = error("cannot write '%s': %s", tmp, strerror(errno));
	} else if (link(tmp, tp) < 0) {
		rc = error(errno == EEXIST ? "a timer is already running ('%s'): run 'ftk-ledger stop' first"
					   : "cannot create '%s'", tp);
	}
	unlink(tmp);
	cJSON_free(s);
	if (!rc)
		fprintf(stderr, "ftk-ledger: timer started at %s for %s%s%s%s\n", ts, o.stage,
			run && *run ? " ('" : "", run && *run ? run : "", run && *run ? "')" : "");
	opts_release(&o);
	return rc ? FTK_EXIT_DATA : 0;
}

static int cmd_stop(int argc, char **argv)
{
	static const int ok[] = { O_NOTE, O_AT, 0 };
	struct opts o;
	struct ftk_rates R;
	char tp[4096];
	opts_init(&o);
	parse_opts("stop", argc, argv, ok, &o);
	if (o.n_args)
		USAGE("stop: unexpected argument '%s'", o.args[0]);
	const char *lp = need_ledger(&o);
	timer_path(lp, tp, sizeof(tp));
	struct strbuf sb = STRBUF_INIT;
	if (strbuf_read_file(&sb, tp) < 0) {
		strbuf_release(&sb);
		opts_release(&o);
		error("no timer is running ('%s'): run 'ftk-ledger start' first", tp);
		return FTK_EXIT_DATA;
	}
	cJSON *t = NULL;
	double start;
	const char *stage = NULL;
	if (ftk_json_parse_object(sb.buf, sb.len, &t, NULL) < 0 ||
	    ftk_cost_time_parse(ftk_json_get_str(t, "start"), &start) < 0 ||
	    ftk_cost_stage_index(stage = ftk_json_get_str(t, "stage")) < 0) {
		cJSON_Delete(t);
		strbuf_release(&sb);
		opts_release(&o);
		error("'%s': not a timer written by 'ftk-ledger start'; remove it and log the hours "
		      "with 'ftk-ledger log'", tp);
		return FTK_EXIT_DATA;
	}
	strbuf_release(&sb);
	double now = o.have_at ? o.at : ftk_now();
	int rc = 0;
	if (now <= start) {
		error("the timer started at %s, after the stop time", ftk_json_get_str(t, "start"));
		rc = -1;
	} else {
		const cJSON *rate = cJSON_GetObjectItemCaseSensitive(t, "rate_usd_per_hour");
		const char *note = o.note ? o.note : ftk_json_get_str(t, "note");
		const char *run = ftk_json_get_str(t, "run");
		load_rates(&o, &R);
		rc = append_human(lp, &R, start, (now - start) / 3600.0, stage, run ? run : "",
				  ftk_json_get_str(t, "who"), note, cJSON_IsNumber(rate),
				  cJSON_IsNumber(rate) ? rate->valuedouble : 0);
		ftk_rates_release(&R);
		if (rc == 0 && unlink(tp) < 0)
			rc = error("cannot remove the timer '%s': %s", tp, strerror(errno));
	}
	cJSON_Delete(t);
	opts_release(&o);
	return rc < 0 ? FTK_EXIT_DATA : 0;
}

/* ------------------------------------------------------------ append */

static int cmd_append(int argc, char **argv)
{
	static const int ok[] = { 0 };
	struct opts o;
	opts_init(&o);
	parse_opts("append", argc, argv, ok, &o);
	const char *lp = need_ledger(&o);
	char *stdin_only[] = { "-" };
	char **files = o.n_args ? o.args : stdin_only;
	int n = o.n_args ? o.n_args : 1, bad = 0;
	long added = 0;
	for (int i = 0; i < n; i++) {
		struct ftk_reader *r;
		struct ftk_line line;
		struct ftk_error err;
		char m[2048];
		if (ftk_reader_open(&r, files[i], &err) < 0) {
			error("%s", err.msg);
			bad++;
			continue;
		}
		int rc;
		while ((rc = ftk_reader_next(r, &line, &err)) > 0) {
			struct ftk_cost_entry e;
			if (strspn(line.data, " \t\r") == line.len)
				continue;
			if (line.utf8_error >= 0) {
				error("%s:%ld: invalid UTF-8 at byte %ld", files[i], line.lineno,
				      line.utf8_error + 1);
				bad++;
				continue;
			}
			if (ftk_cost_entry_parse(line.data, line.len, &e, &err) < 0) {
				ftk_error_place(&err, files[i], line.lineno);
				error("%s", ftk_error_format(&err, m, sizeof(m)));
				bad++;
				continue;
			}
			cJSON_Delete(e.json);
			int arc = ftk_ledger_append(lp, line.data, line.len, &err);
			if (arc == FTK_ELIMIT) {	/* this line only: the others still go in */
				ftk_error_place(&err, files[i], line.lineno);
				error("%s", ftk_error_format(&err, m, sizeof(m)));
				bad++;
				continue;
			}
			if (arc < 0) {
				ftk_reader_close(r);
				opts_release(&o);
				die("%s", err.msg);
			}
			added++;
		}
		if (rc < 0) {
			error("%s", ftk_error_format(&err, m, sizeof(m)));
			bad++;
		}
		ftk_reader_close(r);
	}
	opts_release(&o);
	if (bad)
		error("appended %ld, left out %d line%s that %s not ledger entries", added, bad,
		      bad == 1 ? "" : "s", bad == 1 ? "was" : "were");
	return bad ? FTK_EXIT_DATA : 0;
}

/* ------------------------------------------------------------ rates */

static void print_rates(const struct ftk_rates *R, int json)
{
	if (json) {
		for (size_t i = 0; i < R->n; i++) {
			char *s = cJSON_PrintUnformatted(R->r[i].json);
			puts(s);
			cJSON_free(s);
		}
		return;
	}
	printf("rates: %s\n", rates_label(R));
	printf("%-7s %-14s %-10s %-24s %-14s %-5s %s\n", "type", "name", "from", "price",
	       "peak bf16", "mfu", "source");
	for (size_t i = 0; i < R->n; i++) {
		const struct ftk_rate *r = &R->r[i];
		char price[64], peak[32] = "-", mfu[16] = "-";
		if (r->type == FTK_RATE_API)
			snprintf(price, sizeof(price), "%g/%g USD/Mtok in/out", r->usd_per_mtok_in,
				 r->usd_per_mtok_out);
		else
			snprintf(price, sizeof(price), "%g USD/h", r->usd_per_hour);
		if (!isnan(r->peak_flops))
			snprintf(peak, sizeof(peak), "%g TFLOP/s", r->peak_flops / 1e12);
		if (!isnan(r->mfu))
			snprintf(mfu, sizeof(mfu), "%g", r->mfu);
		const char *src = ftk_json_get_str(r->json, "source");
		printf("%-7s %-14s %-10s %-24s %-14s %-5s %s\n", ftk_rate_type_name(r->type), r->name,
		       ftk_json_get_str(r->json, "from"), price, peak, mfu, src ? src : "");
	}
}

static int cmd_rates(int argc, char **argv)
{
	static const int ok_show[] = { O_JSON, 0 };
	static const int ok_add[] = { O_TYPE, O_NAME, O_FROM, O_UPH, O_PEAK, O_MFU, O_MIN, O_MOUT,
				      O_SOURCE, 0 };
	struct opts o;
	struct ftk_rates R;
	opts_init(&o);
	int add = argc > 1 && !strcmp(argv[1], "add");
	if (add)
		parse_opts("rates add", argc - 1, argv + 1, ok_add, &o);
	else
		parse_opts("rates", argc, argv, ok_show, &o);
	if (o.n_args)
		USAGE("rates: unexpected argument '%s'", o.args[0]);
	if (!add) {
		load_rates(&o, &R);
		print_rates(&R, o.json);
		ftk_rates_release(&R);
		opts_release(&o);
		return 0;
	}
	char buf[4096], day[16];
	const char *path = rates_path(&o, buf, sizeof(buf), 0);
	if (!path)
		USAGE("rates add: no rates file: give --rates FILE, set FTK_RATES, or give --ledger "
		      "(the rates go beside it)");
	if (!o.type || !o.name)
		USAGE("rates add: --type and --name are required");
	cJSON *row = cJSON_CreateObject();
	cJSON_AddStringToObject(row, "type", o.type);
	cJSON_AddStringToObject(row, "name", o.name);
	if (!o.from)
		ftk_cost_date_format(ftk_now(), day, sizeof(day));
	cJSON_AddStringToObject(row, "from", o.from ? o.from : day);
	if (!isnan(o.uph))
		cJSON_AddNumberToObject(row, "usd_per_hour", o.uph);
	if (!isnan(o.peak_tflops))
		cJSON_AddNumberToObject(row, "peak_bf16_flops", o.peak_tflops * 1e12);
	if (!isnan(o.mfu))
		cJSON_AddNumberToObject(row, "mfu", o.mfu);
	if (!isnan(o.mtok_in))
		cJSON_AddNumberToObject(row, "usd_per_mtok_in", o.mtok_in);
	if (!isnan(o.mtok_out))
		cJSON_AddNumberToObject(row, "usd_per_mtok_out", o.mtok_out);
	if (o.source)
		cJSON_AddStringToObject(row, "source", o.source);
	char *s = cJSON_PrintUnformatted(row);
	cJSON_Delete(row);
	struct ftk_rate parsed;
	struct ftk_error err;
	char m[2048];
	int rc = 0;
	if (ftk_rate_parse(s, strlen(s), &parsed, &err) < 0) {
		cJSON_free(s);
		USAGE("rates add: %s", ftk_error_format(&err, m, sizeof(m)));
	}
	cJSON_Delete(parsed.json);
	struct stat st;
	if (stat(path, &st) < 0) {
		/* a new file starts from the examples, so it prices everything they did */
		const char *p = ftk_rates_examples;
		while (*p && rc == 0) {
			const char *nl = strchr(p, '\n');
			rc = ftk_ledger_append(path, p, (size_t)(nl - p), &err);
			p = nl + 1;
		}
		if (rc == 0)
			fprintf(stderr, "ftk-ledger: created '%s' with the example rates; edit them or "
				"add rows\n", path);
	} else {
		/* refuse to add to a file that does not parse: the error would surface later */
		if (ftk_rates_load(path, &R, &err) < 0) {
			cJSON_free(s);
			die("%s", ftk_error_format(&err, m, sizeof(m)));
		}
		ftk_rates_release(&R);
	}
	if (rc == 0)
		rc = ftk_ledger_append(path, s, strlen(s), &err);
	cJSON_free(s);
	opts_release(&o);
	if (rc < 0)
		die("%s", err.msg);
	return 0;
}

/* ------------------------------------------------------------ report */

struct agg {
	long n;
	double human_h, device_h, api_tok, usd;
	long unpriced;
};

struct named_agg {
	const char *name;
	struct agg a;
	struct agg by[FTK_COST_N_STAGES][FTK_COST_N_KINDS];
};

static void agg_add(struct agg *a, const struct ftk_cost_entry *e, double usd, int priced)
{
	a->n++;
	if (!strcmp(ftk_cost_kinds[e->kind], "human"))
		a->human_h += e->hours;
	else if (!strcmp(ftk_cost_kinds[e->kind], "compute"))
		a->device_h += e->hours * e->gpus;
	a->api_tok += e->tokens_in + e->tokens_out;
	a->usd += usd;
	if (!priced)
		a->unpriced++;
}

/* Sums of many small doubles: round away the last bits, which only make noise in JSON. */
static double tidy(double x)
{
	return round(x * 1e6) / 1e6;
}

static cJSON *agg_json(const struct agg *a)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "entries", (double)a->n);
	cJSON_AddNumberToObject(o, "human_hours", tidy(a->human_h));
	cJSON_AddNumberToObject(o, "device_hours", tidy(a->device_h));
	cJSON_AddNumberToObject(o, "api_tokens", a->api_tok);
	cJSON_AddNumberToObject(o, "usd", tidy(a->usd));
	cJSON_AddNumberToObject(o, "unpriced", (double)a->unpriced);
	return o;
}

static void agg_row(const char *name, const struct agg *a)
{
	printf("  %-20s %7ld %9.2f %10.2f %12.0f %12.2f%s\n", name, a->n, a->human_h, a->device_h,
	       a->api_tok, a->usd, a->unpriced ? " *" : "");
}

static void agg_header(const char *what)
{
	printf("  %-20s %7s %9s %10s %12s %12s\n", what, "entries", "people h", "device h",
	       "api tokens", "usd");
}

/* What one report covers, after the filters. */
struct totals {
	struct named_agg *runs;
	size_t n_runs, alloc_runs;
	struct agg stage[FTK_COST_N_STAGES], kind[FTK_COST_N_KINDS], total;
	double first_ts, last_ts;
};

static struct named_agg *run_agg(struct totals *T, const char *run)
{
	for (size_t i = 0; i < T->n_runs; i++)
		if (!strcmp(T->runs[i].name, run))
			return &T->runs[i];
	FTK_ALLOC_GROW(T->runs, T->n_runs + 1, T->alloc_runs);
	struct named_agg *r = &T->runs[T->n_runs++];
	memset(r, 0, sizeof(*r));
	r->name = run;
	return r;
}

static int run_selected(const struct opts *o, const char *run)
{
	if (!o->n_runs)
		return 1;
	for (size_t i = 0; i < o->n_runs; i++)
		if (!strcmp(o->runs[i], run))
			return 1;
	return 0;
}

/*
 * Load the ledger, report its bad lines on stderr, and total the entries the
 * filters keep.  Returns the number of bad lines.
 */
static int load_totals(const struct opts *o, const struct ftk_rates *R, struct ftk_cost_ledger *L,
		       struct totals *T, int warn_unpriced)
{
	struct ftk_error err;
	char m[2048];
	const char *lp = need_ledger(o);
	memset(T, 0, sizeof(*T));
	T->first_ts = INFINITY;
	T->last_ts = -INFINITY;
	int bad = ftk_cost_ledger_load(lp, L, &err);
	if (bad < 0)
		die("%s", ftk_error_format(&err, m, sizeof(m)));
	for (size_t i = 0; i < L->n_bad; i++)
		error("%s:%ld: skipped: %s", lp, L->bad[i].line, L->bad[i].msg);
	for (size_t i = 0; i < L->n; i++) {
		const struct ftk_cost_entry *e = &L->e[i];
		if (e->ts < o->since || e->ts >= o->until || !run_selected(o, e->run))
			continue;
		double usd = e->usd;
		int priced = 1;
		if (isnan(usd)) {
			if (ftk_rates_price_entry(R, e, &usd, &err) < 0) {
				if (warn_unpriced)
					warning("%s:%ld: no price: %s", lp, e->line, err.msg);
				usd = 0;
				priced = 0;
			}
		}
		struct named_agg *r = run_agg(T, e->run);
		agg_add(&r->a, e, usd, priced);
		agg_add(&r->by[e->stage][e->kind], e, usd, priced);
		agg_add(&T->stage[e->stage], e, usd, priced);
		agg_add(&T->kind[e->kind], e, usd, priced);
		agg_add(&T->total, e, usd, priced);
		if (e->ts < T->first_ts)
			T->first_ts = e->ts;
		if (e->ts > T->last_ts)
			T->last_ts = e->ts;
	}
	return bad;
}

/* An eval summary: metric name -> mean, se, n. */
struct metric {
	char *name;
	double mean, se, n;
	char kind[16];		/* ftk-eval's "semantic" or "surface", "" when not given */
};

struct summary {
	char *run;
	const char *path;
	struct metric *m;
	size_t n;
};

static const cJSON *metric_obj_ok(const cJSON *v)
{
	return cJSON_IsObject(v) && cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(v, "mean")) ? v : NULL;
}

/*
 * Read an eval summary.  Accepted: ftk-eval's summary.json, {"metrics": {NAME:
 * {"mean", "se", "n", "lo", "hi", ...}}}, or the simple form {NAME: {"mean",
 * "se", "n"}}.  A metric whose "se" is missing or null gets one from its 95%
 * interval ("lo" and "hi", or "ci95": [lo, hi]) as (hi - lo) / 3.92, which is
 * exact for a normal interval and close for a Wilson one.
 */
static int load_summary(const char *run, const char *path, struct summary *s)
{
	char *data;
	size_t len;
	struct ftk_error err;
	char m[2048];
	cJSON *o;
	memset(s, 0, sizeof(*s));
	s->run = xstrdup(run);
	s->path = path;
	if (ftk_read_all(path, &data, &len, &err) < 0)
		return error("%s", ftk_error_format(&err, m, sizeof(m)));
	int rc = ftk_json_parse_object(data, len, &o, &err);
	free(data);
	if (rc < 0) {
		ftk_error_place(&err, path, 0);
		return error("%s", ftk_error_format(&err, m, sizeof(m)));
	}
	const cJSON *map = cJSON_GetObjectItemCaseSensitive(o, "metrics");
	if (!cJSON_IsObject(map))
		map = o;
	for (const cJSON *v = map->child; v; v = v->next) {
		if (!metric_obj_ok(v))
			continue;
		const cJSON *se = cJSON_GetObjectItemCaseSensitive(v, "se");
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(v, "n");
		const cJSON *ci = cJSON_GetObjectItemCaseSensitive(v, "ci95");
		const cJSON *lo = cJSON_GetObjectItemCaseSensitive(v, "lo");
		const cJSON *hi = cJSON_GetObjectItemCaseSensitive(v, "hi");
		struct metric x = { xstrdup(v->string),
				    cJSON_GetObjectItemCaseSensitive(v, "mean")->valuedouble, NAN,
				    cJSON_IsNumber(n) ? n->valuedouble : NAN, "" };
		if (cJSON_IsNumber(se))
			x.se = se->valuedouble;
		else if (cJSON_GetArraySize(ci) == 2 && cJSON_IsNumber(cJSON_GetArrayItem(ci, 0)) &&
			 cJSON_IsNumber(cJSON_GetArrayItem(ci, 1)))
			x.se = (cJSON_GetArrayItem(ci, 1)->valuedouble -
				cJSON_GetArrayItem(ci, 0)->valuedouble) / (2 * 1.959964);
		else if (cJSON_IsNumber(lo) && cJSON_IsNumber(hi))
			x.se = (hi->valuedouble - lo->valuedouble) / (2 * 1.959964);
		const char *kind = ftk_json_get_str(v, "kind");
		snprintf(x.kind, sizeof(x.kind), "%s", kind ? kind : "");
		s->m = xrealloc(s->m, (s->n + 1) * sizeof(*s->m));
		s->m[s->n++] = x;
	}
	cJSON_Delete(o);
	if (!s->n)
		return error("%s: no metric with a numeric \"mean\" (expected {\"metrics\": {NAME: "
			     "{\"mean\", \"se\", \"n\"}}})", path);
	return 0;
}

static void summary_release(struct summary *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->m[i].name);
	free(s->m);
	free(s->run);
}

static const struct metric *summary_metric(const struct summary *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->m[i].name, name))
			return &s->m[i];
	return NULL;
}

/*
 * Cost per quality point: for each metric, each run's gain over the baseline
 * in points (a point is 0.01 for a metric that lies in [0, 1], else one unit),
 * its 95% interval from the two standard errors, and the run's ledger cost
 * divided by the gain.
 */
static int quality_section(const struct opts *o, struct totals *T, cJSON *json)
{
	struct summary *S = xcalloc(o->n_evals, sizeof(*S));
	int rc = 0;
	size_t base = 0;
	for (size_t i = 0; i < o->n_evals && rc == 0; i++) {
		char *eq = strchr(o->evals[i], '=');
		char *run = xstrndup(o->evals[i], (size_t)(eq - o->evals[i]));
		rc = load_summary(run, eq + 1, &S[i]);
		free(run);
		if (o->baseline && !strcmp(S[i].run, o->baseline))
			base = i;
	}
	if (rc == 0 && o->baseline && strcmp(S[base].run, o->baseline)) {
		rc = error("--baseline: no --eval given for run '%s'", o->baseline);
	}
	cJSON *q = json ? cJSON_AddArrayToObject(json, "quality") : NULL;
	size_t n_metrics = 0;
	for (size_t k = 0; rc == 0 && k < S[base].n; k++) {
		const char *name = S[base].m[k].name;
		if (o->metric && strcmp(o->metric, name))
			continue;
		int shared = 1;
		for (size_t i = 0; i < o->n_evals; i++)
			shared &= summary_metric(&S[i], name) != NULL;
		if (!shared) {
			if (o->metric)
				rc = error("--metric: '%s' is not in every summary", name);
			continue;
		}
		n_metrics++;
		const struct metric *b = &S[base].m[k];
		int unit = 1;
		for (size_t i = 0; i < o->n_evals; i++) {
			double v = summary_metric(&S[i], name)->mean;
			unit &= v >= 0 && v <= 1;
		}
		double point = unit ? 0.01 : 1;
		if (!json) {
			printf("\ncost per quality point: %s%s%s%s (a point is %s; baseline '%s')\n", name,
			       b->kind[0] ? " (" : "", b->kind, b->kind[0] ? ")" : "",
			       unit ? "0.01, one percentage point" : "1 unit of the metric", S[base].run);
			printf("  %-20s %9s %8s %6s %24s %12s %12s\n", "run", "mean", "se", "n",
			       "gain [95% CI] points", "usd", "usd/point");
		}
		for (size_t i = 0; i < o->n_evals; i++) {
			const struct metric *x = summary_metric(&S[i], name);
			struct named_agg *r = NULL;
			for (size_t j = 0; j < T->n_runs; j++)
				if (!strcmp(T->runs[j].name, S[i].run))
					r = &T->runs[j];
			double usd = r ? r->a.usd : 0;
			double gain = (x->mean - b->mean) / point;
			double half = 1.959964 * sqrt((isnan(x->se) ? 0 : x->se * x->se) +
						      (isnan(b->se) ? 0 : b->se * b->se)) / point;
			int have_se = !isnan(x->se) && !isnan(b->se);
			double per = gain > 0 ? usd / gain : NAN;
			if (json) {
				cJSON *e = cJSON_CreateObject();
				cJSON_AddStringToObject(e, "metric", name);
				cJSON_AddStringToObject(e, "run", S[i].run);
				cJSON_AddStringToObject(e, "baseline", S[base].run);
				if (b->kind[0])
					cJSON_AddStringToObject(e, "kind", b->kind);
				cJSON_AddNumberToObject(e, "mean", x->mean);
				if (!isnan(x->se))
					cJSON_AddNumberToObject(e, "se", x->se);
				if (!isnan(x->n))
					cJSON_AddNumberToObject(e, "n", x->n);
				cJSON_AddNumberToObject(e, "point", point);
				cJSON_AddNumberToObject(e, "usd", usd);
				if (i != base) {
					cJSON_AddNumberToObject(e, "gain_points", gain);
					if (have_se) {
						cJSON_AddNumberToObject(e, "gain_ci95_low", gain - half);
						cJSON_AddNumberToObject(e, "gain_ci95_high", gain + half);
						cJSON_AddBoolToObject(e, "significant", gain - half > 0 || gain + half < 0);
					}
					if (!isnan(per))
						cJSON_AddNumberToObject(e, "usd_per_point", per);
					else
						cJSON_AddNullToObject(e, "usd_per_point");
				}
				if (!r)
					cJSON_AddBoolToObject(e, "in_ledger", 0);
				cJSON_AddItemToArray(q, e);
				continue;
			}
			char g[64], se[16] = "-", n[16] = "-", pp[32];
			if (!isnan(x->se))
				snprintf(se, sizeof(se), "%.4f", x->se);
			if (!isnan(x->n))
				snprintf(n, sizeof(n), "%.0f", x->n);
			if (i == base)
				snprintf(g, sizeof(g), "(baseline)");
			else if (have_se)
				snprintf(g, sizeof(g), "%+.2f [%+.2f, %+.2f]", gain, gain - half, gain + half);
			else
				snprintf(g, sizeof(g), "%+.2f [no se]", gain);
			if (i == base)
				snprintf(pp, sizeof(pp), "-");
			else if (isnan(per))
				snprintf(pp, sizeof(pp), "no gain");
			else
				snprintf(pp, sizeof(pp), "%.2f%s", per,
					 have_se && gain - half <= 0 ? " (ns)" : "");
			printf("  %-20s %9.4f %8s %6s %24s %12.2f %12s%s\n", S[i].run, x->mean, se, n, g,
			       usd, pp, r ? "" : "  (not in the ledger)");
		}
	}
	if (rc == 0 && !n_metrics)
		rc = error(o->metric ? "--metric: no metric '%s' in the baseline summary"
				     : "the eval summaries share no metric%s", o->metric ? o->metric : "");
	if (rc == 0 && !json)
		printf("  usd is each run's whole ledger total; (ns): the 95%% interval of the gain "
		       "includes 0\n");
	for (size_t i = 0; i < o->n_evals; i++)
		summary_release(&S[i]);
	free(S);
	return rc;
}

static const char *run_label(const char *run)
{
	return *run ? run : "(no run)";
}

static void totals_release(struct totals *T)
{
	free(T->runs);
}

static int cmd_report(int argc, char **argv)
{
	static const int ok[] = { O_JSON, O_SINCE, O_UNTIL, O_RUN, O_EVAL, O_BASELINE, O_METRIC, 0 };
	struct opts o;
	struct ftk_rates R;
	struct ftk_cost_ledger L = { 0 };
	struct totals T;
	opts_init(&o);
	parse_opts("report", argc, argv, ok, &o);
	if (o.n_args)
		USAGE("report: unexpected argument '%s'", o.args[0]);
	if ((o.baseline || o.metric) && !o.n_evals)
		USAGE("report: --baseline and --metric need --eval RUN=FILE");
	load_rates(&o, &R);
	int bad = load_totals(&o, &R, &L, &T, 1);
	int rc = 0;
	if (o.json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "ledger", need_ledger(&o));
		if (R.path)
			cJSON_AddStringToObject(j, "rates", R.path);
		else
			cJSON_AddStringToObject(j, "rates", "built-in examples");
		cJSON_AddNumberToObject(j, "entries", (double)T.total.n);
		cJSON *sk = cJSON_AddArrayToObject(j, "skipped");
		for (size_t i = 0; i < L.n_bad; i++) {
			cJSON *b = cJSON_CreateObject();
			cJSON_AddNumberToObject(b, "line", (double)L.bad[i].line);
			cJSON_AddStringToObject(b, "error", L.bad[i].msg);
			cJSON_AddItemToArray(sk, b);
		}
		cJSON_AddItemToObject(j, "total", agg_json(&T.total));
		cJSON *br = cJSON_AddObjectToObject(j, "by_run");
		for (size_t i = 0; i < T.n_runs; i++) {
			cJSON *a = agg_json(&T.runs[i].a);
			cJSON *bs = cJSON_AddObjectToObject(a, "by_stage_kind");
			for (int s = 0; s < FTK_COST_N_STAGES; s++)
				for (int k = 0; k < FTK_COST_N_KINDS; k++) {
					char key[32];
					if (!T.runs[i].by[s][k].n)
						continue;
					snprintf(key, sizeof(key), "%s/%s", ftk_cost_stages[s],
						 ftk_cost_kinds[k]);
					cJSON_AddItemToObject(bs, key, agg_json(&T.runs[i].by[s][k]));
				}
			cJSON_AddItemToObject(br, T.runs[i].name, a);
		}
		cJSON *bst = cJSON_AddObjectToObject(j, "by_stage");
		for (int s = 0; s < FTK_COST_N_STAGES; s++)
			cJSON_AddItemToObject(bst, ftk_cost_stages[s], agg_json(&T.stage[s]));
		cJSON *bk = cJSON_AddObjectToObject(j, "by_kind");
		for (int k = 0; k < FTK_COST_N_KINDS; k++)
			cJSON_AddItemToObject(bk, ftk_cost_kinds[k], agg_json(&T.kind[k]));
		if (o.n_evals)
			rc = quality_section(&o, &T, j);
		char *s = cJSON_Print(j);
		puts(s);
		cJSON_free(s);
		cJSON_Delete(j);
	} else {
		printf("ledger: %s: %ld entries", need_ledger(&o), T.total.n);
		if (L.n_bad)
			printf(", %zu damaged lines skipped", L.n_bad);
		printf("\nrates: %s\n\n", rates_label(&R));
		agg_header("by run");
		for (size_t i = 0; i < T.n_runs; i++)
			agg_row(run_label(T.runs[i].name), &T.runs[i].a);
		printf("\n");
		agg_header("by stage");
		for (int s = 0; s < FTK_COST_N_STAGES; s++)
			agg_row(ftk_cost_stages[s], &T.stage[s]);
		printf("\n");
		agg_header("by kind");
		for (int k = 0; k < FTK_COST_N_KINDS; k++)
			agg_row(ftk_cost_kinds[k], &T.kind[k]);
		printf("\n");
		agg_row("total", &T.total);
		if (T.total.unpriced)
			printf("  * %ld entries have no price (no usd and no matching rates row): "
			       "counted as 0\n", T.total.unpriced);
		if (o.n_evals)
			rc = quality_section(&o, &T, NULL);
	}
	totals_release(&T);
	ftk_cost_ledger_release(&L);
	ftk_rates_release(&R);
	opts_release(&o);
	return rc < 0 || bad ? FTK_EXIT_DATA : 0;
}

/* ------------------------------------------------------------ diff */

static int cmd_diff(int argc, char **argv)
{
	static const int ok[] = { O_JSON, 0 };
	struct opts o;
	struct ftk_rates R;
	struct ftk_cost_ledger L = { 0 };
	struct totals T;
	opts_init(&o);
	parse_opts("diff", argc, argv, ok, &o);
	if (o.n_args != 2)
		USAGE("diff: expected two run names, RUN_A RUN_B");
	load_rates(&o, &R);
	int bad = load_totals(&o, &R, &L, &T, 1);
	struct named_agg *ab[2] = { NULL, NULL };
	for (int w = 0; w < 2; w++)
		for (size_t i = 0; i < T.n_runs; i++)
			if (!strcmp(T.runs[i].name, o.args[w]))
				ab[w] = &T.runs[i];
	int rc = 0;
	for (int w = 0; w < 2; w++)
		if (!ab[w])
			rc = error("diff: no entries for run '%s' in the ledger", o.args[w]);
	/* devices and training tokens, which usually explain a difference */
	struct strbuf dev[2] = { STRBUF_INIT, STRBUF_INIT };
	double tokens[2] = { 0, 0 };
	for (size_t i = 0; rc == 0 && i < L.n; i++) {
		const struct ftk_cost_entry *e = &L.e[i];
		for (int w = 0; w < 2; w++) {
			if (strcmp(e->run, o.args[w]))
				continue;
			tokens[w] += e->tokens;
			if (e->device && strcmp(ftk_cost_stages[e->stage], "prep")) {
				char d[128];
				snprintf(d, sizeof(d), "%s%s x%g", dev[w].len ? ", " : "", e->device, e->gpus);
				if (!strstr(dev[w].buf, d + (dev[w].len ? 2 : 0)))
					strbuf_addstr(&dev[w], d);
			}
		}
	}
	if (rc == 0 && o.json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "a", o.args[0]);
		cJSON_AddStringToObject(j, "b", o.args[1]);
		cJSON *rows = cJSON_AddArrayToObject(j, "rows");
		for (int s = 0; s < FTK_COST_N_STAGES; s++)
			for (int k = 0; k < FTK_COST_N_KINDS; k++) {
				const struct agg *x = &ab[0]->by[s][k], *y = &ab[1]->by[s][k];
				if (!x->n && !y->n)
					continue;
				cJSON *r = cJSON_CreateObject();
				cJSON_AddStringToObject(r, "stage", ftk_cost_stages[s]);
				cJSON_AddStringToObject(r, "kind", ftk_cost_kinds[k]);
				cJSON_AddItemToObject(r, "a", agg_json(x));
				cJSON_AddItemToObject(r, "b", agg_json(y));
				cJSON_AddNumberToObject(r, "usd_change", y->usd - x->usd);
				cJSON_AddItemToArray(rows, r);
			}
		cJSON_AddItemToObject(j, "total_a", agg_json(&ab[0]->a));
		cJSON_AddItemToObject(j, "total_b", agg_json(&ab[1]->a));
		cJSON_AddNumberToObject(j, "usd_change", ab[1]->a.usd - ab[0]->a.usd);
		cJSON_AddNumberToObject(j, "tokens_a", tokens[0]);
		cJSON_AddNumberToObject(j, "tokens_b", tokens[1]);
		char *s = cJSON_Print(j);
		puts(s);
		cJSON_free(s);
		cJSON_Delete(j);
	} else if (rc == 0) {
		printf("%-15s %21s %21s %21s\n", "", o.args[0], o.args[1], "change");
		printf("%-15s %10s %10s %10s %10s %10s %10s\n", "stage/kind", "hours", "usd", "hours",
		       "usd", "hours", "usd");
		for (int s = 0; s < FTK_COST_N_STAGES; s++)
			for (int k = 0; k < FTK_COST_N_KINDS; k++) {
				const struct agg *x = &ab[0]->by[s][k], *y = &ab[1]->by[s][k];
				char key[32];
				if (!x->n && !y->n)
					continue;
				snprintf(key, sizeof(key), "%s/%s", ftk_cost_stages[s], ftk_cost_kinds[k]);
				double hx = x->human_h + x->device_h, hy = y->human_h + y->device_h;
				printf("%-15s %10.2f %10.2f %10.2f %10.2f %+10.2f %+10.2f\n", key, hx, x->usd, hy,
				       y->usd, hy - hx, y->usd - x->usd);
			}
		const struct agg *x = &ab[0]->a, *y = &ab[1]->a;
		printf("%-15s %10.2f %10.2f %10.2f %10.2f %+10.2f %+10.2f\n", "total",
		       x->human_h + x->device_h, x->usd, y->human_h + y->device_h, y->usd,
		       y->human_h + y->device_h - x->human_h - x->device_h, y->usd - x->usd);
		printf("hours are people's hours for human rows and device hours (hours x gpus) for "
		       "compute rows\n");
		printf("training tokens: %.0f -> %.0f\n", tokens[0], tokens[1]);
		printf("devices: %s -> %s\n", dev[0].len ? dev[0].buf : "none",
		       dev[1].len ? dev[1].buf : "none");
	}
	strbuf_release(&dev[0]);
	strbuf_release(&dev[1]);
	totals_release(&T);
	ftk_cost_ledger_release(&L);
	ftk_rates_release(&R);
	opts_release(&o);
	return rc < 0 || bad ? FTK_EXIT_DATA : 0;
}

/* ------------------------------------------------------------ estimate */

/*
 * Tokens from an ftk-tokenize --stats file or a shard manifest.json: "tokens",
 * or counts.tokens.  A directory means its manifest.json.
 */
static double stats_tokens(const char *arg)
{
	char *data;
	size_t len;
	struct ftk_error err;
	char m[2048], path[4096];
	cJSON *o;
	struct stat st;
	if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode))
		snprintf(path, sizeof(path), "%s/manifest.json", arg);
	else
		snprintf(path, sizeof(path), "%s", arg);
	if (ftk_read_all(path, &data, &len, &err) < 0)
		die("%s", ftk_error_format(&err, m, sizeof(m)));
	int rc = ftk_json_parse_object(data, len, &o, &err);
	free(data);
	if (rc < 0) {
		ftk_error_place(&err, path, 0);
		die("%s", ftk_error_format(&err, m, sizeof(m)));
	}
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "tokens");
	if (!cJSON_IsNumber(v))
		v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "counts"),
						     "tokens");
	double t = cJSON_IsNumber(v) ? v->valuedouble : NAN;
	cJSON_Delete(o);
	if (isnan(t) || t <= 0)
		die("%s: tokens: missing (expected \"tokens\" or \"counts\": {\"tokens\"} as "
		    "ftk-tokenize --stats writes)", path);
	return t;
}

/*
 * What a smoke run was trained with, from RUN_DIR/train_config.json (written
 * by ftk-train): seq_len, rank and targets.  Fields it lacks stay as they are.
 */
static void read_train_config(const char *run_dir, long *seq_len, int *rank, char *targets,
			      size_t n)
{
	char path[4096], *data;
	size_t len;
	cJSON *o;
	snprintf(path, sizeof(path), "%s/train_config.json", run_dir);
	if (ftk_read_all(path, &data, &len, NULL) < 0)
		return;
	int rc = ftk_json_parse_object(data, len, &o, NULL);
	free(data);
	if (rc < 0)
		return;
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "seq_len");
	if (cJSON_IsNumber(v) && v->valuedouble >= 1)
		*seq_len = (long)v->valuedouble;
	v = cJSON_GetObjectItemCaseSensitive(o, "rank");
	if (cJSON_IsNumber(v) && v->valuedouble >= 1)
		*rank = (int)v->valuedouble;
	const char *t = ftk_json_get_str(o, "targets");
	if (t && *t)
		snprintf(targets, n, "%s", t);
	cJSON_Delete(o);
}

/* The shard directory that path names (the directory, or its manifest.json), or 0. */
static int shard_dir_of(const char *path, char *dir, size_t n)
{
	struct stat st;
	char m[4200];
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		snprintf(dir, n, "%s", path);
	} else {
		size_t k = strlen(path);
		if (k < 13 || strcmp(path + k - 13, "manifest.json") || (k > 13 && path[k - 14] != '/'))
			return 0;
		snprintf(dir, n, "%.*s", (int)(k > 13 ? k - 14 : 1), k > 13 ? path : ".");
	}
	snprintf(m, sizeof(m), "%s/manifest.json", dir);
	return stat(m, &st) == 0 && S_ISREG(st.st_mode);
}

static void thousands(char *buf, size_t n, double v)
{
	char raw[64];
	snprintf(raw, sizeof(raw), "%.0f", v);
	size_t len = strlen(raw), k = 0;
	for (size_t i = 0; i < len && k + 2 < n; i++) {
		if (i && (len - i) % 3 == 0)
			buf[k++] = ',';
		buf[k++] = raw[i];
	}
	buf[k] = 0;
}

static int cmd_estimate(int argc, char **argv)
{
	static const int ok[] = { O_TOKENS, O_TSTATS, O_EPOCHS, O_MODEL, O_METHOD, O_RANK, O_SEQ,
				  O_TARGETS, O_DEVICE, O_GPUS, O_MFU, O_CALIB, O_JSON, O_AT, 0 };
	struct opts o;
	struct ftk_rates R;
	struct ftk_cost_model M;
	struct ftk_error err;
	char m[2048];
	opts_init(&o);
	parse_opts("estimate", argc, argv, ok, &o);
	if (o.n_args)
		USAGE("estimate: unexpected argument '%s'", o.args[0]);
	if (isnan(o.tokens) == !o.token_stats)
		USAGE("estimate: give the tokens per epoch, --tokens N or --token-stats FILE");
	if (!o.model)
		USAGE("estimate: --model DIR (or its config.json) is required");
	if (!o.device)
		USAGE("estimate: --device NAME is required (a device row of the rates)");
	const char *method = o.method ? o.method : "qlora";
	int full = !strcmp(method, "full");
	if (!full && strcmp(method, "qlora") && strcmp(method, "lora"))
		USAGE("--method: expected qlora, lora or full, found '%s'", method);
	if (!isnan(o.mfu) && (o.mfu <= 0 || o.mfu > 1))
		USAGE("--mfu: must be in (0, 1]");
	double epochs = isnan(o.epochs) ? 1 : o.epochs;
	double gpus = isnan(o.gpus) ? 1 : o.gpus;
	int rank = 16;
	long seq_len = 0;
	char targets[256] = "all-linear", shard_dir[4096];
	if (o.calibrate)	/* estimate the run the smoke run rehearsed */
		read_train_config(o.calibrate, &seq_len, &rank, targets, sizeof(targets));
	if (o.rank)
		rank = o.rank;
	if (o.seq_len)
		seq_len = o.seq_len;
	if (o.targets)
		snprintf(targets, sizeof(targets), "%s", o.targets);
	double tokens, tokens_all = NAN;
	long n_cut = -1;	/* -1: unknown */
	if (o.token_stats && shard_dir_of(o.token_stats, shard_dir, sizeof(shard_dir))) {
		if (ftk_cost_shard_tokens(shard_dir, seq_len, &tokens_all, &tokens, &n_cut, &err) < 0)
			die("%s", ftk_error_format(&err, m, sizeof(m)));
	} else {
		tokens = o.token_stats ? stats_tokens(o.token_stats) : o.tokens;
		n_cut = seq_len > 0 ? -1 : 0;
	}
	if (ftk_cost_model_load(o.model, &M, &err) < 0)
		die("%s", ftk_error_format(&err, m, sizeof(m)));
	long long n_lora = full ? 0 : ftk_cost_lora_params(&M, rank, targets);
	if (n_lora < 0)
		USAGE("--targets: unknown module in '%s' (q_proj, k_proj, v_proj, o_proj, gate_proj, "
		      "up_proj, down_proj or all-linear)", targets);
	load_rates(&o, &R);
	double when = o.have_at ? o.at : ftk_now();
	const struct ftk_rate *dev = ftk_rates_find(&R, FTK_RATE_DEVICE, o.device, when);
	if (!dev) {
		char day[16];
		ftk_cost_date_format(when, day, sizeof(day));
		error("no rate for device '%s' on %s in %s: add one with 'ftk-ledger rates add "
		      "--type device'", o.device, day, rates_label(&R));
		ftk_rates_release(&R);
		return FTK_EXIT_DATA;
	}
	double D = tokens * epochs;
	double flops = ftk_cost_train_flops(&M, n_lora, D, full);
	double flops_per_token = flops / D;
	double seconds, mfu = NAN, tps = NAN, implied_mfu = NAN;
	int steps = 0;
	const char *mfu_src;
	if (o.calibrate) {
		if (ftk_cost_calibrate_tps(o.calibrate, &tps, &steps, &err) < 0)
			die("%s", ftk_error_format(&err, m, sizeof(m)));
		seconds = D / tps;	/* tokens/s of the smoke run, on the same devices */
		if (!isnan(dev->peak_flops))
			implied_mfu = tps * flops_per_token / (dev->peak_flops * gpus);
		mfu_src = "calibrated";
	} else {
		if (isnan(dev->peak_flops))
			die("device '%s' has no peak_bf16_flops in %s: add it, or use --calibrate",
			    o.device, rates_label(&R));
		mfu = !isnan(o.mfu) ? o.mfu : !isnan(dev->mfu) ? dev->mfu : 0.3;
		mfu_src = !isnan(o.mfu) ? "--mfu" : !isnan(dev->mfu) ? "the device row" : "a default guess";
		seconds = flops / (dev->peak_flops * gpus * mfu);
	}
	double hours = seconds / 3600;
	double usd = hours * gpus * dev->usd_per_hour;
	static const int runs[] = { 1, 3, 5, 10 };
	const char *formula = full ? "6*N*D (forward 2*N*D, backward 4*N*D)"
				   : "4*N*D + 6*N_lora*D (forward 2*N*D, backward through frozen "
				     "weights 2*N*D, adapters 6*N_lora*D)";
	if (o.json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddStringToObject(j, "method", method);
		cJSON_AddStringToObject(j, "model_type", M.model_type);
		cJSON_AddNumberToObject(j, "params", (double)M.n_params);
		cJSON_AddNumberToObject(j, "matmul_params", (double)M.n_matmul);
		cJSON_AddNumberToObject(j, "lora_params", (double)n_lora);
		cJSON_AddNumberToObject(j, "tokens_per_epoch", tokens);
		if (!isnan(tokens_all))
			cJSON_AddNumberToObject(j, "tokens_per_epoch_before_cut", tokens_all);
		if (seq_len > 0)
			cJSON_AddNumberToObject(j, "seq_len", (double)seq_len);
		if (n_cut >= 0)
			cJSON_AddNumberToObject(j, "sequences_cut", (double)n_cut);
		cJSON_AddNumberToObject(j, "epochs", epochs);
		cJSON_AddNumberToObject(j, "tokens", D);
		cJSON_AddStringToObject(j, "formula", formula);
		cJSON_AddNumberToObject(j, "flops", flops);
		cJSON_AddStringToObject(j, "device", dev->name);
		cJSON_AddNumberToObject(j, "gpus", gpus);
		if (!isnan(dev->peak_flops))
			cJSON_AddNumberToObject(j, "peak_flops", dev->peak_flops);
		if (o.calibrate) {
			cJSON_AddNumberToObject(j, "calibrated_tokens_per_s", tps);
			cJSON_AddNumberToObject(j, "calibration_steps", steps);
			if (!isnan(implied_mfu))
				cJSON_AddNumberToObject(j, "implied_mfu", implied_mfu);
		} else {
			cJSON_AddNumberToObject(j, "mfu", mfu);
		}
		cJSON_AddNumberToObject(j, "usd_per_device_hour", dev->usd_per_hour);
		cJSON_AddBoolToObject(j, "example_rate", dev->example);
		cJSON_AddNumberToObject(j, "seconds_per_run", seconds);
		cJSON_AddNumberToObject(j, "hours_per_run", hours);
		cJSON_AddNumberToObject(j, "usd_per_run", usd);
		cJSON *rs = cJSON_AddArrayToObject(j, "runs_per_success");
		for (size_t i = 0; i < FTK_ARRAY_SIZE(runs); i++) {
			cJSON *r = cJSON_CreateObject();
			cJSON_AddNumberToObject(r, "runs", runs[i]);
			cJSON_AddNumberToObject(r, "hours", hours * runs[i]);
			cJSON_AddNumberToObject(r, "usd", usd * runs[i]);
			cJSON_AddItemToArray(rs, r);
		}
		char *s = cJSON_Print(j);
		puts(s);
		cJSON_free(s);
		cJSON_Delete(j);
	} else {
		char a[64], b[64], c[64], d[64];
		thousands(a, sizeof(a), (double)M.n_params);
		thousands(b, sizeof(b), (double)M.n_matmul);
		thousands(c, sizeof(c), (double)n_lora);
		printf("estimate: %s fine-tune of a %s model\n", method, M.model_type);
		printf("assumptions:\n");
		printf("  parameters     %s (from config.json); N = %s in matmuls (layers and head)\n", a, b);
		if (!full)
			printf("  adapters       LoRA rank %d on %s: N_lora = %s\n", rank, targets, c);
		thousands(a, sizeof(a), tokens);
		thousands(d, sizeof(d), D);
		printf("  tokens         %s per epoch x %g epochs = D = %s (every token, prompt "
		       "included, goes through the model)\n", a, epochs, d);
		if (seq_len > 0 && n_cut >= 0 && !isnan(tokens_all)) {
			thousands(b, sizeof(b), tokens_all);
			printf("  cut            sequences longer than %ld tokens are cut, as ftk-train "
			       "does: %ld cut, %s of %s tokens kept\n", seq_len, n_cut, a, b);
		} else if (seq_len > 0) {
			printf("  cut            sequences longer than %ld tokens are cut by ftk-train; "
			       "a token count cannot say how many: give --token-stats the shard "
			       "directory\n", seq_len);
		}
		printf("  FLOPs          %s = %.3g\n", formula, flops);
		if (o.calibrate) {
			printf("  speed          %.4g tokens/s over %d steps of the smoke run %s (its "
			       "first step left out as warm-up), on the same devices\n", tps, steps,
			       o.calibrate);
			if (!isnan(implied_mfu))
				printf("  implied MFU    %.3g of %s's peak %g TFLOP/s x %g\n", implied_mfu,
				       dev->name, dev->peak_flops / 1e12, gpus);
		} else {
			printf("  device         %s x %g: peak %g TFLOP/s dense bf16 each\n", dev->name, gpus,
			       dev->peak_flops / 1e12);
			printf("  MFU            %.3g (%s; --calibrate RUN_DIR measures it)\n", mfu, mfu_src);
		}
		printf("  price          %.2f USD per device-hour (%s%s)\n", dev->usd_per_hour,
		       dev->example ? "an EXAMPLE row of " : "", rates_label(&R));
		printf("  not counted    attention scores (grow with sequence length), evaluation, "
		       "checkpoint writes, data loading, queueing, people's time\n");
		printf("\n  %-22s %12s %12s\n", "", "hours", "usd");
		for (size_t i = 0; i < FTK_ARRAY_SIZE(runs); i++) {
			char lab[48];
			snprintf(lab, sizeof(lab), runs[i] == 1 ? "one run" : "%d runs per success", runs[i]);
			printf("  %-22s %12.4g %12.2f\n", lab, hours * runs[i], usd * runs[i]);
		}
	}
	ftk_rates_release(&R);
	opts_release(&o);
	return 0;
}

/* ------------------------------------------------------------ tco */

static int cmd_tco(int argc, char **argv)
{
	static const int ok[] = { O_MONTHS, O_RUN, O_DATA_USD, O_TRAIN_USD, O_RETRAIN_EVERY,
				  O_RETRAIN_USD, O_SERVE_USD, O_SERVE_DEV, O_SERVE_GPUS, O_SERVE_HPD,
				  O_JSON, O_AT, 0 };
	struct opts o;
	struct ftk_rates R;
	struct ftk_cost_ledger L = { 0 };
	struct totals T;
	opts_init(&o);
	parse_opts("tco", argc, argv, ok, &o);
	if (o.n_args)
		USAGE("tco: unexpected argument '%s'", o.args[0]);
	if (!isnan(o.serve_usd) && o.serve_device)
		USAGE("tco: give --serve-usd-month or --serve-device, not both");
	double months = isnan(o.months) ? 12 : o.months;
	load_rates(&o, &R);
	int bad = 0;
	int have_ledger = ftk_ledger_path(o.ledger) != NULL;
	if (have_ledger)
		bad = load_totals(&o, &R, &L, &T, 1);
	else
		memset(&T, 0, sizeof(T));
	if (!have_ledger && (isnan(o.data_usd) || isnan(o.train_usd)))
		USAGE("tco: without a ledger, give --data-usd and --train-usd");
	const char *data_src = "ledger: stage prep", *train_src = "ledger: stages train, eval, review";
	const char *serve_src;
	char serve_buf[256];
	double data = o.data_usd, train = o.train_usd, serve = o.serve_usd;
	if (isnan(data))
		data = T.stage[0].usd;
	else
		data_src = "--data-usd";
	if (isnan(train))
		train = T.stage[1].usd + T.stage[2].usd + T.stage[3].usd;
	else
		train_src = "--train-usd";
	if (o.serve_device) {
		double when = o.have_at ? o.at : ftk_now();
		const struct ftk_rate *d = ftk_rates_find(&R, FTK_RATE_DEVICE, o.serve_device, when);
		if (!d)
			die("no rate for device '%s' in %s", o.serve_device, rates_label(&R));
		double g = isnan(o.serve_gpus) ? 1 : o.serve_gpus;
		double hpd = isnan(o.serve_hpd) ? 24 : o.serve_hpd;
		serve = d->usd_per_hour * g * hpd * 365.25 / 12;
		snprintf(serve_buf, sizeof(serve_buf), "%s x %g at %.2f USD/h%s, %g h/day", d->name, g,
			 d->usd_per_hour, d->example ? " (example rate)" : "", hpd);
		serve_src = serve_buf;
	} else if (!isnan(serve)) {
		serve_src = "--serve-usd-month";
	} else {
		/* the ledger's serving spend, spread over the months it covers */
		double span = 0, lo = 0, hi = 0;
		for (size_t i = 0; i < L.n; i++) {
			const struct ftk_cost_entry *e = &L.e[i];
			if (strcmp(ftk_cost_stages[e->stage], "serve") || !run_selected(&o, e->run))
				continue;
			if (span == 0)
				lo = hi = e->ts;
			lo = e->ts < lo ? e->ts : lo;
			hi = e->ts > hi ? e->ts : hi;
			span = hi - lo + 86400;	/* at least a day */
		}
		double m_cov = span / (86400 * 365.25 / 12);
		serve = span > 0 ? T.stage[4].usd / (m_cov < 1 ? 1 : m_cov) : 0;
		serve_src = span > 0 ? "ledger: stage serve, per month covered" : "none given";
	}
	double every = isnan(o.retrain_every) ? 0 : o.retrain_every;
	double retrain = isnan(o.retrain_usd) ? train : o.retrain_usd;
	/* retrainings strictly inside the horizon: at every, 2*every, ... < months */
	int n_retrain = every > 0 ? (int)ceil(months / every - 1e-9) - 1 : 0;
	if (n_retrain < 0)
		n_retrain = 0;
	double total = data + train + n_retrain * retrain + months * serve;
	if (o.json) {
		cJSON *j = cJSON_CreateObject();
		cJSON_AddNumberToObject(j, "months", months);
		cJSON_AddNumberToObject(j, "data_usd", data);
		cJSON_AddNumberToObject(j, "train_usd", train);
		cJSON_AddNumberToObject(j, "retrainings", n_retrain);
		cJSON_AddNumberToObject(j, "retrain_usd", retrain);
		cJSON_AddNumberToObject(j, "serve_usd_per_month", serve);
		cJSON_AddNumberToObject(j, "total_usd", total);
		cJSON_AddNumberToObject(j, "usd_per_month", months > 0 ? total / months : 0);
		char *s = cJSON_Print(j);
		puts(s);
		cJSON_free(s);
		cJSON_Delete(j);
	} else {
		char lab[64];
		printf("total cost of ownership over %g months (rates: %s)\n", months, rates_label(&R));
		printf("  %-28s %12.2f  (%s)\n", "data engineering", data, data_src);
		printf("  %-28s %12.2f  (%s)\n", "first training", train, train_src);
		snprintf(lab, sizeof(lab), "retraining %d x %.2f", n_retrain, retrain);
		printf("  %-28s %12.2f  (%s)\n", lab, n_retrain * retrain,
		       every > 0 ? "every --retrain-every months, inside the horizon" : "never");
		snprintf(lab, sizeof(lab), "serving %g x %.2f", months, serve);
		printf("  %-28s %12.2f  (%s)\n", lab, months * serve, serve_src);
		printf("  %-28s %12.2f\n", "total", total);
		printf("  %-28s %12.2f\n", "per month", months > 0 ? total / months : 0);
	}
	if (have_ledger) {
		totals_release(&T);
		ftk_cost_ledger_release(&L);
	}
	ftk_rates_release(&R);
	opts_release(&o);
	return bad ? FTK_EXIT_DATA : 0;
}

/* ------------------------------------------------------------ main */

int cmd_ledger(int argc, char **argv)
{
	static const struct { const char *name; int (*fn)(int, char **); } cmds[] = {
		{ "log", cmd_log }, { "start", cmd_start }, { "stop", cmd_stop },
		{ "append", cmd_append }, { "rates", cmd_rates }, { "report", cmd_report },
		{ "diff", cmd_diff }, { "estimate", cmd_estimate }, { "tco", cmd_tco },
	};
	ftk_tool_init(&tool, "ftk-ledger", usage);
	if (argc < 2)
		USAGE("a command is required (log, start, stop, append, rates, report, diff, "
		      "estimate, tco)");
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		fputs(usage, stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("ftk-ledger %s\n", FTK_VERSION);
		return 0;
	}
	for (size_t i = 0; i < FTK_ARRAY_SIZE(cmds); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	USAGE("unknown command '%s'", argv[1]);
}
