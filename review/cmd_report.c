/*
 * cmd_report.c: ftk-report, one HTML page (or text) over eval runs and the ledger.
 * summary: write one self-contained HTML report (or --text) of eval runs, reviews and costs
 *
 *   ftk-report [--out FILE] [--ledger FILE] [--rates FILE] [--reviews FILE]
 *              [--title TEXT] [--text] RUN_DIR...
 *
 * What the page holds, in order: the runs; every metric with its 95%
 * interval per run, drawn as dots and whiskers, each semantic metric with
 * its surface twin beside it (never instead of it); the trend of the
 * semantic metrics from run to run; what people decided and how often each
 * judge agreed with them (Cohen's kappa, the confusion matrix, the
 * disagreeing cases); the costs from the ledger, by category (data
 * preparation people and compute, review people, training compute, eval API
 * and compute) as a stacked bar per ledger run; cost per quality point of
 * each run over the first; and the flagged (or reviewed) cases with their
 * reasons and the reviewers' verdicts, each with an anchor
 * (#case-<run>-<id>) to link to.
 *
 * Self-contained: one file, inline CSS, charts as inline SVG, no script, no
 * font, no image, so it opens from a mail attachment or a CI artifact with
 * no network.  The same content is available as plain text (--text).
 *
 * Costs use ledger/cost.h: an entry's own usd, else its price from the rates
 * in force on its date (--rates, $FTK_RATES, rates.jsonl beside the ledger,
 * or the built-in examples, as ftk-ledger does); an entry with neither is
 * counted at $0 and the page says how many there were.  Which ledger
 * entries belong to an eval run: those whose "run" is the run directory's
 * name; when no entry names any of the runs (the usual case: the ledger
 * names the project, the eval runs are directories), a run's cost is the
 * whole ledger, and the page says so.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/tool.h"
#include "lib/stream.h"
#include "eval/reviews.h"
#include "ledger/cost.h"
#include "lib/json.h"
#include "lib/ledger.h"
#include "lib/strbuf.h"
#include "review/review.h"

static const char *const usage[] = {
	"ftk-report [--out FILE] [--ledger FILE] [--reviews FILE] [--text] RUN_DIR...",
	"",
	"Write one self-contained HTML page (inline SVG charts; no script, font or image",
	"fetched) about one or more eval runs: each metric with its 95% interval per run,",
	"surface metrics beside their semantic twins, methods that scored the same cases",
	"side by side (method sensitivity), the trend from run to run, people's",
	"verdicts and judge-versus-human agreement, the ledger's costs by category as a",
	"stacked bar, cost per quality point over the first run, and the flagged cases",
	"with their reasons and verdicts, each with a link anchor.",
	NULL,
};

/* ------------------------------------------------------------ costs */

enum { CAT_PREP_PEOPLE, CAT_PREP_COMPUTE, CAT_REVIEW, CAT_TRAIN, CAT_EVAL, CAT_OTHER, N_CAT };
static const char *const cat_name[N_CAT] = {
	"data preparation (people)", "data preparation (compute)", "review (people)",
	"training compute", "eval (API and compute)", "other",
};
static const char *const cat_color[N_CAT] = {
	"#4e79a7", "#a0cbe8", "#f28e2b", "#59a14f", "#b07aa1", "#bab0ac",
};

struct cost_run {
	char *name;
	double usd[N_CAT], hours[N_CAT];
	double total;
};

struct costs {
	int have;		/* a ledger was read */
	char *path;
	struct cost_run *r;
	size_t n, alloc;
	double usd[N_CAT], hours[N_CAT], total;
	long entries, unpriced, bad_lines;
	int examples;		/* some price came from an example rate */
};

/* The report's cost category of an entry's stage and kind. */
static int category(int stage, int kind)
{
	const char *st = ftk_cost_stages[stage], *k = ftk_cost_kinds[kind];
	if (!strcmp(st, "prep"))
		return strcmp(k, "human") ? CAT_PREP_COMPUTE : CAT_PREP_PEOPLE;
	if (!strcmp(st, "review"))
		return CAT_REVIEW;
	if (!strcmp(st, "train"))
		return CAT_TRAIN;
	if (!strcmp(st, "eval"))
		return CAT_EVAL;
	return CAT_OTHER;
}

/* The ledger's totals (ledger/cost.h, as ftk-ledger makes them), folded into the categories. */
static int load_costs(struct costs *C, const char *ledger, const char *rates_path)
{
	memset(C, 0, sizeof(*C));
	if (!ledger)
		return 0;
	struct ftk_cost_ledger L;
	memset(&L, 0, sizeof(L));
	struct ftk_error e;
	ftk_error_clear(&e);
	int rc = ftk_cost_ledger_load(ledger, &L, &e);
	if (rc < 0)
		return error_at(&e);
	for (size_t i = 0; i < L.n_bad; i++)
		warning("%s:%ld: skipped: %s", ledger, L.bad[i].line, L.bad[i].msg);
	C->bad_lines = (long)L.n_bad;
	char rbuf[4096];
	rates_path = ftk_cost_rates_path(rates_path, ledger, rbuf, sizeof(rbuf), 1);
	struct ftk_rates R;
	memset(&R, 0, sizeof(R));
	if (ftk_rates_load(rates_path, &R, &e) < 0) {
		ftk_cost_ledger_release(&L);
		return error_at(&e);
	}
	struct ftk_cost_totals T;
	ftk_cost_totals_compute(&T, &L, &R, NULL, NULL, NULL);
	C->have = 1;
	C->path = xstrdup(ledger);
	C->entries = T.total.n;
	C->unpriced = T.total.unpriced;
	C->examples = T.total.example_priced > 0;
	C->total = T.total.usd;
	C->r = xcalloc(T.n_runs ? T.n_runs : 1, sizeof(*C->r));
	C->n = C->alloc = T.n_runs;
	for (size_t j = 0; j < T.n_runs; j++) {
		struct cost_run *r = &C->r[j];
		r->name = xstrdup(T.runs[j].name);
		r->total = T.runs[j].a.usd;
		for (int st = 0; st < FTK_COST_N_STAGES; st++)
			for (int k = 0; k < FTK_COST_N_KINDS; k++) {
				const struct ftk_cost_agg *a = &T.runs[j].by[st][k];
				int c = category(st, k);
				r->usd[c] += a->usd;
				r->hours[c] += a->hours;
				C->usd[c] += a->usd;
				C->hours[c] += a->hours;
			}
	}
	ftk_cost_totals_release(&T);
	ftk_rates_release(&R);
	ftk_cost_ledger_release(&L);
	return 0;
}

static void free_costs(struct costs *C)
{
	for (size_t i = 0; i < C->n; i++)
		free(C->r[i].name);
	free(C->r);
	free(C->path);
}

/* The cost of an eval run: its own ledger run, else (no ledger run named after any eval run) the whole ledger. */
static double run_cost(const struct costs *C, const char *name, int *whole)
{
	*whole = 0;
	for (size_t j = 0; j < C->n; j++)
		if (!strcmp(C->r[j].name, name))
			return C->r[j].total;
	*whole = 1;
	return C->total;
}

/* ------------------------------------------------------------ helpers */

static struct ftk_review_run *runs;
static size_t n_runs;

static const char *jstr(const cJSON *o, const char *k)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

static double jnum(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* A count a summary may lack (written before it was counted): 0. */
static double count(const cJSON *o, const char *k)
{
	double v = jnum(o, k);
	return isnan(v) ? 0 : v;
}

static const cJSON *metric(size_t i, const char *name)
{
	return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(runs[i].summary, "metrics"),
						name);
}

static void esc(struct strbuf *sb, const char *s)
{
	for (; s && *s; s++) {
		switch (*s) {
		case '<': strbuf_addstr(sb, "&lt;"); break;
		case '>': strbuf_addstr(sb, "&gt;"); break;
		case '&': strbuf_addstr(sb, "&amp;"); break;
		case '"': strbuf_addstr(sb, "&quot;"); break;
		case '\'': strbuf_addstr(sb, "&#39;"); break;
		default: strbuf_addch(sb, *s);
		}
	}
}

/* An HTML id for a case: letters, digits, - and _ kept, every other byte as .XX */
static void anchor(struct strbuf *sb, size_t run, const char *id, long sample)
{
	strbuf_addf(sb, "case-%zu-", run + 1);
	for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    *p == '-' || *p == '_')
			strbuf_addch(sb, (char)*p);
		else
			strbuf_addf(sb, ".%02X", *p);
	}
	if (sample)
		strbuf_addf(sb, "-s%ld", sample);
}

static void fnum(char *buf, size_t n, double v)
{
	if (isnan(v))
		snprintf(buf, n, "-");
	else
		snprintf(buf, n, "%.3f", v);
}

static void fusd(char *buf, size_t n, double v)
{
	if (isnan(v))
		snprintf(buf, n, "-");
	else if (fabs(v) < 0.01 && v != 0)
		snprintf(buf, n, "$%.5f", v);
	else
		snprintf(buf, n, "$%.2f", v);
}

/* The metric names in first-seen order over every run. */
static char **metric_names(size_t *n_out)
{
	char **names = NULL;
	size_t n = 0, alloc = 0;
	for (size_t i = 0; i < n_runs; i++) {
		const cJSON *m;
		cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(runs[i].summary, "metrics"))
		{
			int seen = 0;
			for (size_t k = 0; k < n && !seen; k++)
				seen = !strcmp(names[k], m->string);
			if (!seen) {
				FTK_ALLOC_GROW(names, n + 1, alloc);
				names[n++] = m->string;
			}
		}
	}
	*n_out = n;
	return names;
}

static const char *metric_attr(const char *name, const char *k)
{
	for (size_t i = 0; i < n_runs; i++) {
		const char *v = jstr(metric(i, name), k);
		if (v)
			return v;
	}
	return NULL;
}

/* ------------------------------------------------------------ SVG charts */

static const char *const run_color[] = { "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b",
					 "#e377c2", "#7f7f7f", "#bcbd22" };
#define RUN_COLOR(i) run_color[(i) % FTK_ARRAY_SIZE(run_color)]

/* Dots and whiskers of one metric over the runs, on [0, 1]. */
static void svg_interval(struct strbuf *sb, const char *name, int surface)
{
	int W = 440, left = 110, right = 20, row = 26, top = 10;
	int H = top + row * (int)n_runs + 26;
	double pw = W - left - right;
	strbuf_addf(sb, "<svg class=\"chart interval\" role=\"img\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
		    "xmlns=\"http://www.w3.org/2000/svg\"><title>", W, H, W, H);
	esc(sb, name);
	strbuf_addstr(sb, ": mean and 95% interval per run</title>");
	for (int t = 0; t <= 4; t++) {
		double x = left + pw * t / 4;
		strbuf_addf(sb, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#e3e3e3\"/>", x, top - 4, x,
			    H - 22);
		strbuf_addf(sb, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\" fill=\"#666\">%.2g</text>",
			    x, H - 8, t / 4.0);
	}
	for (size_t i = 0; i < n_runs; i++) {
		const cJSON *m = metric(i, name);
		double y = top + row * (double)i + row / 2.0;
		strbuf_addf(sb, "<text x=\"%d\" y=\"%.1f\" font-size=\"12\" text-anchor=\"end\" fill=\"#333\">", left - 8,
			    y + 4);
		esc(sb, runs[i].name);
		strbuf_addstr(sb, "</text>");
		double mean = jnum(m, "mean"), lo = jnum(m, "lo"), hi = jnum(m, "hi");
		if (isnan(mean))
			continue;
		const char *col = surface ? "#888" : RUN_COLOR(i);
		if (!isnan(lo) && !isnan(hi))
			strbuf_addf(sb, "<line class=\"ci\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
				    "stroke-width=\"3\"%s/>",
				    left + pw * lo, y, left + pw * hi, y, col,
				    surface ? " stroke-dasharray=\"4 3\"" : "");
		strbuf_addf(sb, "<circle class=\"mean\" cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"/>", left + pw * mean,
			    y, surface ? "#fff" : col);
		if (surface)
			strbuf_addf(sb, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"/>",
				    left + pw * mean, y, col);
	}
	strbuf_addstr(sb, "</svg>");
}

/* The semantic metrics' means from run to run, with their intervals. */
static void svg_trend(struct strbuf *sb, char **names, size_t n_names)
{
	int W = 720, H = 300, left = 50, right = 220, top = 16, bottom = 40;
	double pw = W - left - right, ph = H - top - bottom;
	strbuf_addf(sb, "<svg class=\"chart trend\" role=\"img\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
		    "xmlns=\"http://www.w3.org/2000/svg\"><title>semantic metrics from run to run</title>", W, H, W, H);
	for (int t = 0; t <= 4; t++) {
		double y = top + ph * (1 - t / 4.0);
		strbuf_addf(sb, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e3e3e3\"/>", left, y,
			    left + pw, y);
		strbuf_addf(sb, "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\" fill=\"#666\">%.2g</text>",
			    left - 6, y + 4, t / 4.0);
	}
	/* runs spread over the plot, 40 px in from each side so that the bars clear the axis */
	double inset = 40, step = n_runs > 1 ? (pw - 2 * inset) / (double)(n_runs - 1) : 0;
	for (size_t i = 0; i < n_runs; i++) {
		double x = left + inset + step * (double)i + (n_runs > 1 ? 0 : pw / 2 - inset);
		strbuf_addf(sb, "<text x=\"%.1f\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\" fill=\"#333\">", x,
			    H - bottom + 18);
		esc(sb, runs[i].name);
		strbuf_addstr(sb, "</text>");
	}
	int k = 0;
	for (size_t j = 0; j < n_names; j++) {
		const char *kind = metric_attr(names[j], "kind");
		if (kind && !strcmp(kind, "surface"))
			continue;
		const char *col = run_color[k % FTK_ARRAY_SIZE(run_color)];
		struct strbuf pts = STRBUF_INIT;
		for (size_t i = 0; i < n_runs; i++) {
			const cJSON *m = metric(i, names[j]);
			double mean = jnum(m, "mean"), lo = jnum(m, "lo"), hi = jnum(m, "hi");
			if (isnan(mean))
				continue;
			double x = left + inset + step * (double)i + (n_runs > 1 ? 0 : pw / 2 - inset) + (k - 1) * 6;
			strbuf_addf(&pts, "%.1f,%.1f ", x, top + ph * (1 - mean));
			if (!isnan(lo) && !isnan(hi))
				strbuf_addf(sb, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
					    "stroke-opacity=\"0.5\" stroke-width=\"2\"/>",
					    x, top + ph * (1 - lo), x, top + ph * (1 - hi), col);
			strbuf_addf(sb, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>", x, top + ph * (1 - mean),
				    col);
		}
		if (pts.len)
			strbuf_addf(sb, "<polyline class=\"line\" points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"/>",
				    pts.buf, col);
		strbuf_release(&pts);
		strbuf_addf(sb, "<rect x=\"%.1f\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/>", left + pw + 20,
			    top + k * 20, col);
		strbuf_addf(sb, "<text x=\"%.1f\" y=\"%d\" font-size=\"12\" fill=\"#333\">", left + pw + 38,
			    top + k * 20 + 10);
		esc(sb, names[j]);
		strbuf_addstr(sb, "</text>");
		k++;
	}
	strbuf_addstr(sb, "</svg>");
}

/* One stacked bar per ledger run, segments by cost category. */
static void svg_costs(struct strbuf *sb, const struct costs *C)
{
	int W = 720, left = 120, right = 90, row = 34, top = 10;
	int H = top + row * (int)C->n + 30 + 22 * ((N_CAT + 2) / 3);
	double pw = W - left - right, max = 0;
	for (size_t j = 0; j < C->n; j++)
		if (C->r[j].total > max)
			max = C->r[j].total;
	if (max <= 0)
		max = 1;
	strbuf_addf(sb, "<svg class=\"chart costs\" role=\"img\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
		    "xmlns=\"http://www.w3.org/2000/svg\"><title>cost by category, stacked, per ledger run</title>",
		    W, H, W, H);
	for (size_t j = 0; j < C->n; j++) {
		double y = top + row * (double)j, x = left;
		strbuf_addf(sb, "<text x=\"%d\" y=\"%.1f\" font-size=\"12\" text-anchor=\"end\" fill=\"#333\">", left - 8,
			    y + 18);
		esc(sb, C->r[j].name[0] ? C->r[j].name : "(no run)");
		strbuf_addstr(sb, "</text>");
		for (int c = 0; c < N_CAT; c++) {
			double w = pw * C->r[j].usd[c] / max;
			if (w <= 0)
				continue;
			char u[32];
			fusd(u, sizeof(u), C->r[j].usd[c]);
			strbuf_addf(sb, "<rect class=\"seg\" x=\"%.1f\" y=\"%.1f\" width=\"%.2f\" height=\"24\" fill=\"%s\">"
				    "<title>%s: %s, %.3g h</title></rect>",
				    x, y + 2, w < 1 ? 1 : w, cat_color[c], cat_name[c], u, C->r[j].hours[c]);
			x += w;
		}
		char t[32];
		fusd(t, sizeof(t), C->r[j].total);
		strbuf_addf(sb, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" fill=\"#333\">%s</text>", x + 6, y + 18, t);
	}
	double ly = top + row * (double)C->n + 12;
	for (int c = 0; c < N_CAT; c++) {
		double lx = left + (c % 3) * 200.0, yy = ly + (c / 3) * 22.0;
		strbuf_addf(sb, "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"12\" fill=\"%s\"/>", lx, yy,
			    cat_color[c]);
		strbuf_addf(sb, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" fill=\"#333\">%s</text>", lx + 18,
			    yy + 10, cat_name[c]);
	}
	strbuf_addstr(sb, "</svg>");
}

/* ------------------------------------------------------------ the cases */

static int shown_case(const cJSON *r)
{
	return ftk_review_is_flagged(r) || cJSON_GetObjectItemCaseSensitive(r, "human");
}

static void html_case(struct strbuf *sb, size_t ri, const cJSON *r)
{
	const char *id = jstr(r, "id");
	long sample = (long)(isnan(jnum(r, "sample")) ? 0 : jnum(r, "sample"));
	struct strbuf a = STRBUF_INIT;
	anchor(&a, ri, id, sample);
	const char *v = jstr(r, "verdict"), *by = jstr(r, "verdict_by");
	strbuf_addf(sb, "<article class=\"case\" id=\"%s\"><h4><a class=\"anchor\" href=\"#%s\">#</a> ", a.buf, a.buf);
	esc(sb, id);
	if (sample)
		strbuf_addf(sb, " (sample %ld)", sample);
	if (v)
		strbuf_addf(sb, " <span class=\"badge %s\">%s%s</span>", v, v,
			    by && !strcmp(by, "human") ? " (human)" : " (judges)");
	strbuf_addstr(sb, "</h4><ul class=\"flags\">");
	const cJSON *f;
	cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(r, "flags"))
	{
		strbuf_addstr(sb, "<li><b>");
		esc(sb, jstr(f, "kind"));
		strbuf_addstr(sb, "</b>");
		if (jstr(f, "judge")) {
			strbuf_addstr(sb, " (");
			esc(sb, jstr(f, "judge"));
			strbuf_addstr(sb, ")");
		}
		strbuf_addstr(sb, ": ");
		esc(sb, jstr(f, "reason"));
		strbuf_addstr(sb, "</li>");
	}
	strbuf_addstr(sb, "</ul><p class=\"judges\">judges: ");
	const cJSON *j;
	int first = 1;
	cJSON_ArrayForEach(j, cJSON_GetObjectItemCaseSensitive(r, "judges"))
	{
		const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "pass");
		if (!cJSON_IsBool(p))
			continue;
		strbuf_addstr(sb, first ? "" : ", ");
		esc(sb, j->string);
		strbuf_addf(sb, " <span class=\"%s\">%s</span>", cJSON_IsTrue(p) ? "pass" : "fail",
			    cJSON_IsTrue(p) ? "pass" : "fail");
		if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "overridden")))
			strbuf_addstr(sb, " (overridden by people)");
		first = 0;
	}
	strbuf_addstr(sb, "</p>");
	const cJSON *h = cJSON_GetObjectItemCaseSensitive(r, "human");
	const cJSON *hr;
	if (h) {
		strbuf_addstr(sb, "<ul class=\"people\">");
		cJSON_ArrayForEach(hr, cJSON_GetObjectItemCaseSensitive(h, "reviewers"))
		{
			strbuf_addstr(sb, "<li>");
			esc(sb, jstr(hr, "reviewer"));
			strbuf_addf(sb, ": <span class=\"%s\">%s</span>", jstr(hr, "verdict"), jstr(hr, "verdict"));
			if (jstr(hr, "note")) {
				strbuf_addstr(sb, " &mdash; <q>");
				esc(sb, jstr(hr, "note"));
				strbuf_addstr(sb, "</q>");
			}
			strbuf_addstr(sb, "</li>");
		}
		strbuf_addstr(sb, "</ul>");
	}
	const char *out = jstr(r, "output");
	if (out) {
		strbuf_addstr(sb, "<pre class=\"output\">");
		size_t n = strlen(out);
		if (n > 600) {
			size_t cut = 600;
			while (cut > 0 && ((unsigned char)out[cut] & 0xC0) == 0x80)
				cut--;
			char *s = xstrndup(out, cut);
			esc(sb, s);
			free(s);
			strbuf_addstr(sb, "&hellip;");
		} else {
			esc(sb, out);
		}
		strbuf_addstr(sb, "</pre>");
	}
	strbuf_addstr(sb, "</article>");
	strbuf_release(&a);
}

/* ------------------------------------------------------------ HTML */

static const char css[] =
	"body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#222;"
	"max-width:1100px;margin:0 auto;padding:24px;background:#fff}"
	"h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:32px 0 8px;border-bottom:2px solid #eee;"
	"padding-bottom:4px}h3{font-size:16px;margin:16px 0 6px}h4{font-size:15px;margin:0 0 6px}"
	".sub{color:#666;margin:0 0 16px}table{border-collapse:collapse;margin:6px 0 12px}"
	"td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}"
	"th{background:#f6f6f6;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}"
	".pair{display:flex;flex-wrap:wrap;gap:16px;margin-bottom:10px}"
	".panel{border:1px solid #e5e5e5;border-radius:6px;padding:10px 12px;min-width:300px;box-sizing:border-box}"
	".panel.surface{background:#fafafa}.kind{font-size:12px;border-radius:3px;padding:1px 6px;margin-left:6px}"
	".kind.semantic{background:#e1f0e1;color:#1b5e20}.kind.surface{background:#eee;color:#555}"
	".note{color:#666;font-size:13px}.pass{color:#1b7f2a;font-weight:600}.fail{color:#c62828;font-weight:600}"
	".unsure,.conflict{color:#b26a00;font-weight:600}"
	".badge{font-size:12px;border-radius:3px;padding:1px 6px;color:#fff}.badge.pass{background:#2e7d32}"
	".badge.fail{background:#c62828}.case{border:1px solid #e5e5e5;border-radius:6px;padding:10px 12px;"
	"margin:10px 0}.case:target{border-color:#f28e2b;box-shadow:0 0 0 3px #fde2c4}"
	".anchor{color:#aaa;text-decoration:none}.flags{margin:4px 0;padding-left:20px;color:#8a4b00}"
	".people{margin:4px 0;padding-left:20px}.output{white-space:pre-wrap;background:#f7f7f7;padding:8px;"
	"border-radius:4px;font-size:13px;margin:6px 0 0}svg{max-width:100%;height:auto}"
	"svg.interval{width:100%}.pair .panel{flex:0 1 calc(50% - 8px)}"
	"a{color:#1f5fa8}";

static void html_metrics(struct strbuf *sb, char **names, size_t n_names)
{
	strbuf_addstr(sb, "<h2 id=\"metrics\">Metrics with 95% intervals</h2>"
			  "<p class=\"note\">Dots are means, bars 95% intervals (Wilson for pass/fail metrics, "
			  "t otherwise, clustered where the cases share a cluster). A surface metric checks form "
			  "(a marker is present, a pattern matched) and is shown beside the semantic metric it "
			  "stands in for, hollow and dashed, never instead of it.</p>");
	int *done = xcalloc(n_names + 1, sizeof(int));
	/* pass 0: each semantic metric with its surface twins, a row each; pass 1: the rest, side by side */
	for (int pass = 0; pass < 2; pass++) {
	if (pass == 1)
		strbuf_addstr(sb, "<div class=\"pair\">");
	for (size_t k = 0; k < n_names; k++) {
		if (done[k])
			continue;
		const char *kind = metric_attr(names[k], "kind");
		int surface = kind && !strcmp(kind, "surface");
		const char *twin = surface ? metric_attr(names[k], "twin") : NULL;
		size_t sem = k;
		int have_twin_sem = 0;
		if (twin)
			for (size_t q = 0; q < n_names; q++)
				if (!strcmp(names[q], twin)) {
					sem = q;
					have_twin_sem = 1;
				}
		if (surface && have_twin_sem)
			continue;	/* drawn beside its semantic twin */
		size_t list[16];
		size_t nl = 0;
		list[nl++] = sem;
		if (!surface)
			for (size_t q = 0; q < n_names && nl < FTK_ARRAY_SIZE(list); q++) {
				const char *tw = metric_attr(names[q], "twin");
				if (q != k && tw && !strcmp(tw, names[k]))
					list[nl++] = q;
			}
		if ((pass == 0) != (nl > 1))
			continue;
		if (pass == 0)
			strbuf_addstr(sb, "<div class=\"pair\">");
		for (size_t li = 0; li < nl; li++) {
			size_t q = list[li];
			done[q] = 1;
			const char *kq = metric_attr(names[q], "kind");
			int sq = kq && !strcmp(kq, "surface");
			strbuf_addf(sb, "<div class=\"panel%s\"><h3>", sq ? " surface" : "");
			esc(sb, names[q]);
			strbuf_addf(sb, "<span class=\"kind %s\">%s</span></h3>", sq ? "surface" : "semantic",
				    kq ? kq : "semantic");
			if (sq && metric_attr(names[q], "twin")) {
				strbuf_addstr(sb, "<p class=\"note\">surface check standing in for ");
				esc(sb, metric_attr(names[q], "twin"));
				strbuf_addstr(sb, "</p>");
			}
			svg_interval(sb, names[q], sq);
			strbuf_addstr(sb, "<table><tr><th>run</th><th>mean</th><th>95% interval</th><th>n</th></tr>");
			for (size_t i = 0; i < n_runs; i++) {
				const cJSON *m = metric(i, names[q]);
				char a[32], lo[32], hi[32];
				fnum(a, sizeof(a), jnum(m, "mean"));
				fnum(lo, sizeof(lo), jnum(m, "lo"));
				fnum(hi, sizeof(hi), jnum(m, "hi"));
				strbuf_addstr(sb, "<tr><td>");
				esc(sb, runs[i].name);
				strbuf_addf(sb, "</td><td class=\"num\">%s</td><td class=\"num\">[%s, %s]</td>"
					    "<td class=\"num\">%.0f</td></tr>",
					    a, lo, hi, isnan(jnum(m, "n")) ? 0 : jnum(m, "n"));
			}
			strbuf_addstr(sb, "</table></div>");
		}
		if (pass == 0)
			strbuf_addstr(sb, "</div>");
	}
	if (pass == 1)
		strbuf_addstr(sb, "</div>");
	}
	free(done);
}

/*
 * Method sensitivity, as a panel per run: each pair of methods that scored
 * the same cases (summary.json "methods"), their means side by side, the
 * paired difference with its interval, and the cases they disagree on,
 * linked.  Drawn only when some run compares methods.
 */
static void html_methods(struct strbuf *sb)
{
	int any = 0;
	for (size_t i = 0; i < n_runs; i++)
		any |= cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(runs[i].summary, "methods")) > 0;
	if (!any)
		return;
	strbuf_addstr(sb, "<h2 id=\"methods\">Method sensitivity</h2>"
			  "<p class=\"note\">The same answers scored by different methods (strict and flexible "
			  "extraction, a pattern and a judge). When two methods differ beyond their paired 95% "
			  "interval, the method, not the model, moved the number: read the cases they disagree on "
			  "before quoting either.</p><div class=\"pair\">");
	for (size_t i = 0; i < n_runs; i++) {
		const cJSON *e;
		cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(runs[i].summary, "methods"))
		{
			int sens = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "method_sensitive"));
			char ma[32], mb[32], d[32], lo[32], hi[32];
			fnum(ma, sizeof(ma), jnum(e, "mean_a"));
			fnum(mb, sizeof(mb), jnum(e, "mean_b"));
			fnum(d, sizeof(d), jnum(e, "diff"));
			fnum(lo, sizeof(lo), jnum(e, "lo"));
			fnum(hi, sizeof(hi), jnum(e, "hi"));
			strbuf_addstr(sb, "<div class=\"panel\"><h3>");
			esc(sb, runs[i].name);
			strbuf_addstr(sb, ": ");
			esc(sb, ftk_json_get_str(e, "group"));
			strbuf_addf(sb, " <span class=\"badge %s\">%s</span></h3><table><tr><th>method</th>"
				    "<th>mean</th></tr><tr><td>", sens ? "fail" : "pass",
				    sens ? "method-sensitive" : "methods agree");
			esc(sb, ftk_json_get_str(e, "a"));
			strbuf_addf(sb, "</td><td class=\"num\">%s</td></tr><tr><td>", ma);
			esc(sb, ftk_json_get_str(e, "b"));
			strbuf_addf(sb, "</td><td class=\"num\">%s</td></tr></table><p>difference %s [%s, %s], "
				    "%s p = %.3g, n = %.0f</p>", mb, d, lo, hi,
				    ftk_json_get_str(e, "test") ? ftk_json_get_str(e, "test") : "", jnum(e, "p"),
				    jnum(e, "n"));
			const cJSON *dis = cJSON_GetObjectItemCaseSensitive(e, "disagree");
			if (cJSON_GetArraySize(dis)) {
				strbuf_addf(sb, "<p class=\"note\">%d cases disagree:", cJSON_GetArraySize(dis));
				const cJSON *x;
				int k = 0;
				cJSON_ArrayForEach(x, dis)
				{
					if (k++ == 30) {
						strbuf_addstr(sb, " ...");
						break;
					}
					strbuf_addstr(sb, " ");
					esc(sb, x->valuestring);
				}
				strbuf_addstr(sb, "</p>");
			}
			strbuf_addstr(sb, "</div>");
		}
	}
	strbuf_addstr(sb, "</div>");
}

static void html_people(struct strbuf *sb)
{
	strbuf_addstr(sb, "<h2 id=\"people\">People's verdicts and judge agreement</h2>");
	int any = 0;
	for (size_t i = 0; i < n_runs; i++) {
		cJSON *ag = ftk_reviews_agreement(runs[i].results);
		double reviewed = jnum(ag, "reviewed");
		strbuf_addstr(sb, "<h3>");
		esc(sb, runs[i].name);
		strbuf_addstr(sb, "</h3>");
		if (reviewed <= 0) {
			strbuf_addstr(sb, "<p class=\"note\">no case reviewed yet (ftk-review writes RUN_DIR/reviews.jsonl)</p>");
			cJSON_Delete(ag);
			continue;
		}
		any = 1;
		const cJSON *h = cJSON_GetObjectItemCaseSensitive(ag, "human");
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(ag, "verdict");
		char m[32], lo[32], hi[32];
		fnum(m, sizeof(m), jnum(v, "mean"));
		fnum(lo, sizeof(lo), jnum(v, "lo"));
		fnum(hi, sizeof(hi), jnum(v, "hi"));
		strbuf_addf(sb, "<p>%.0f cases reviewed: <span class=\"pass\">%.0f pass</span>, "
			    "<span class=\"fail\">%.0f fail</span>, <span class=\"unsure\">%.0f unsure</span>, "
			    "<span class=\"conflict\">%.0f reviewers disagree</span>. People overrode the judges on "
			    "%.0f. Pass rate with people's verdicts first: <b>%s</b> [%s, %s].</p>",
			    reviewed, jnum(h, "pass"), jnum(h, "fail"), jnum(h, "unsure"), jnum(h, "conflict"),
			    jnum(ag, "overridden"), m, lo, hi);
		strbuf_addstr(sb, "<table><tr><th>judge</th><th>n</th><th>agreement</th><th>Cohen's kappa</th>"
				  "<th>judge pass / human pass</th><th>pass / fail</th><th>fail / pass</th>"
				  "<th>fail / fail</th><th>where they disagree</th></tr>");
		const cJSON *j;
		cJSON_ArrayForEach(j, cJSON_GetObjectItemCaseSensitive(ag, "judges"))
		{
			char ag_s[32], k_s[32];
			fnum(ag_s, sizeof(ag_s), jnum(j, "agreement"));
			fnum(k_s, sizeof(k_s), jnum(j, "kappa"));
			strbuf_addstr(sb, "<tr><td>");
			esc(sb, j->string);
			strbuf_addf(sb, "</td><td class=\"num\">%.0f</td><td class=\"num\">%s</td><td class=\"num\">%s</td>"
				    "<td class=\"num\">%.0f</td><td class=\"num\">%.0f</td><td class=\"num\">%.0f</td>"
				    "<td class=\"num\">%.0f</td><td>",
				    jnum(j, "n"), ag_s, k_s, jnum(j, "both_pass"), jnum(j, "judge_pass_human_fail"),
				    jnum(j, "judge_fail_human_pass"), jnum(j, "both_fail"));
			const cJSON *d;
			int first = 1;
			cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(j, "disagree"))
			{
				struct strbuf a = STRBUF_INIT;
				const char *hash = strrchr(d->valuestring, '#');
				char *idonly = hash ? xstrndup(d->valuestring, (size_t)(hash - d->valuestring))
						    : xstrdup(d->valuestring);
				anchor(&a, i, idonly, hash ? atol(hash + 1) : 0);
				strbuf_addf(sb, "%s<a href=\"#%s\">", first ? "" : ", ", a.buf);
				esc(sb, d->valuestring);
				strbuf_addstr(sb, "</a>");
				free(idonly);
				strbuf_release(&a);
				first = 0;
			}
			strbuf_addstr(sb, "</td></tr>");
		}
		strbuf_addstr(sb, "</table>");
		cJSON_Delete(ag);
	}
	if (!any)
		strbuf_addstr(sb, "<p class=\"note\">Run <code>ftk review RUN_DIR</code> to read the flagged cases; "
				  "the verdicts appear here.</p>");
}

static void html_costs(struct strbuf *sb, const struct costs *C, char **names, size_t n_names)
{
	strbuf_addstr(sb, "<h2 id=\"costs\">Costs</h2>");
	if (!C->have) {
		strbuf_addstr(sb, "<p class=\"note\">No ledger given (--ledger FILE or FTK_LEDGER).</p>");
		return;
	}
	strbuf_addstr(sb, "<p class=\"note\">From the ledger ");
	esc(sb, C->path);
	strbuf_addf(sb, ": %ld entries", C->entries);
	if (C->unpriced)
		strbuf_addf(sb, ", %ld without a price or a matching rate (counted as $0)", C->unpriced);
	if (C->examples)
		strbuf_addstr(sb, "; some prices come from the built-in example rates, not quotes");
	if (C->bad_lines)
		strbuf_addf(sb, "; %ld unreadable lines skipped", C->bad_lines);
	strbuf_addstr(sb, ".</p>");
	svg_costs(sb, C);
	strbuf_addstr(sb, "<table><tr><th>category</th><th>hours</th><th>usd</th></tr>");
	for (int c = 0; c < N_CAT; c++) {
		char u[32];
		fusd(u, sizeof(u), C->usd[c]);
		strbuf_addf(sb, "<tr><td><span style=\"color:%s\">&#9632;</span> %s</td><td class=\"num\">%.4g</td>"
			    "<td class=\"num\">%s</td></tr>",
			    cat_color[c], cat_name[c], C->hours[c], u);
	}
	char t[32];
	fusd(t, sizeof(t), C->total);
	strbuf_addf(sb, "<tr><th>total</th><th></th><th class=\"num\">%s</th></tr></table>", t);

	strbuf_addstr(sb, "<h3 id=\"per-point\">Cost per quality point</h3>");
	if (n_runs < 2) {
		strbuf_addstr(sb, "<p class=\"note\">Needs two runs or more.</p>");
		return;
	}
	int whole = 0;
	run_cost(C, runs[1].name, &whole);
	strbuf_addstr(sb, "<p class=\"note\">Each run against the first: the gain in points (0.01 of a metric "
			  "in [0, 1]) with its 95% interval from the two standard errors, and the run's cost divided "
			  "by the gain.");
	if (whole)
		strbuf_addstr(sb, " No ledger entry names an eval run, so each run's cost is the whole ledger.");
	strbuf_addstr(sb, "</p><table><tr><th>metric</th><th>run</th><th>mean</th><th>gain (points) [95%]</th>"
			  "<th>cost</th><th>usd per point</th></tr>");
	for (size_t k = 0; k < n_names; k++) {
		const char *kind = metric_attr(names[k], "kind");
		if (kind && !strcmp(kind, "surface"))
			continue;
		const cJSON *b = metric(0, names[k]);
		for (size_t i = 1; i < n_runs; i++) {
			const cJSON *x = metric(i, names[k]);
			if (!x || !b)
				continue;
			double gain = (jnum(x, "mean") - jnum(b, "mean")) * 100;
			double sa = jnum(b, "se"), sx = jnum(x, "se");
			double half = 1.959964 * sqrt((isnan(sa) ? 0 : sa * sa) + (isnan(sx) ? 0 : sx * sx)) * 100;
			double cost = run_cost(C, runs[i].name, &whole);
			char m[32], cs[32], pp[64];
			fnum(m, sizeof(m), jnum(x, "mean"));
			fusd(cs, sizeof(cs), cost);
			if (gain > 0)
				fusd(pp, sizeof(pp), cost / gain);
			else
				snprintf(pp, sizeof(pp), "no gain");
			strbuf_addstr(sb, "<tr><td>");
			esc(sb, names[k]);
			strbuf_addstr(sb, "</td><td>");
			esc(sb, runs[i].name);
			strbuf_addf(sb, "</td><td class=\"num\">%s</td><td class=\"num\">%+.1f [%+.1f, %+.1f]%s</td>"
				    "<td class=\"num\">%s</td><td class=\"num\">%s</td></tr>",
				    m, gain, gain - half, gain + half,
				    gain - half > 0 || gain + half < 0 ? "" : " (ns)", cs, pp);
		}
	}
	strbuf_addstr(sb, "</table>");
}

static void write_html(struct strbuf *sb, const char *title, const struct costs *C)
{
	size_t n_names;
	char **names = metric_names(&n_names);
	strbuf_addstr(sb, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
			  "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>");
	esc(sb, title);
	strbuf_addf(sb, "</title><style>%s</style></head><body>\n<h1>", css);
	esc(sb, title);
	char ts[32];
	ftk_time_rfc3339(ftk_now(), ts, sizeof(ts));
	strbuf_addf(sb, "</h1><p class=\"sub\">ftk-report %s, %s &middot; <a href=\"#runs\">runs</a> &middot; "
		    "<a href=\"#metrics\">metrics</a>%s &middot; <a href=\"#people\">people</a> &middot; "
		    "<a href=\"#costs\">costs</a> &middot; <a href=\"#cases\">flagged cases</a></p>\n",
		    FTK_VERSION, ts, n_runs > 1 ? " &middot; <a href=\"#trend\">trend</a>" : "");

	strbuf_addstr(sb, "<h2 id=\"runs\">Runs</h2><table><tr><th>run</th><th>suite</th><th>model</th>"
			  "<th>results</th><th>scored</th><th>defective answers</th><th>no answer</th>"
			  "<th>defective cases</th><th>flagged</th><th>reviewed</th></tr>");
	for (size_t i = 0; i < n_runs; i++) {
		const cJSON *ri = runs[i].runinfo, *s = runs[i].summary;
		const char *model = jstr(ri, "model") ? jstr(ri, "model")
				    : jstr(ri, "model_dir") ? jstr(ri, "model_dir")
								: jstr(ri, "outputs");
		long reviewed = 0;
		const cJSON *r;
		cJSON_ArrayForEach(r, runs[i].results)
			reviewed += cJSON_GetObjectItemCaseSensitive(r, "human") != NULL;
		strbuf_addf(sb, "<tr><td style=\"color:%s\"><b>", RUN_COLOR(i));
		esc(sb, runs[i].name);
		strbuf_addstr(sb, "</b></td><td>");
		esc(sb, runs[i].suite ? runs[i].suite : "");
		strbuf_addstr(sb, "</td><td>");
		esc(sb, model ? model : "");
		if (jstr(ri, "adapter")) {
			strbuf_addstr(sb, " + adapter ");
			esc(sb, jstr(ri, "adapter"));
		}
		strbuf_addf(sb, "</td><td class=\"num\">%.0f</td><td class=\"num\">%.0f</td><td class=\"num\">%.0f</td>"
			    "<td class=\"num\">%.0f</td><td class=\"num\">%.0f</td>"
			    "<td class=\"num\">%.0f</td><td class=\"num\">%ld</td></tr>",
			    jnum(s, "results"), jnum(s, "scored"), count(s, "defective"), jnum(s, "errors"),
			    count(s, "bad_cases"), jnum(s, "flagged"), reviewed);
	}
	strbuf_addstr(sb, "</table>\n");

	html_metrics(sb, names, n_names);
	html_methods(sb);
	if (n_runs > 1) {
		strbuf_addstr(sb, "<h2 id=\"trend\">Trend from run to run</h2><p class=\"note\">Semantic metrics, "
				  "runs in the order given, with their 95% intervals.</p>");
		svg_trend(sb, names, n_names);
	}
	html_people(sb);
	html_costs(sb, C, names, n_names);

	strbuf_addstr(sb, "<h2 id=\"cases\">Flagged and reviewed cases</h2>");
	for (size_t i = 0; i < n_runs; i++) {
		strbuf_addstr(sb, "<h3>");
		esc(sb, runs[i].name);
		long n = 0;
		const cJSON *r;
		cJSON_ArrayForEach(r, runs[i].results)
			n += shown_case(r);
		strbuf_addf(sb, " <span class=\"note\">(%ld)</span></h3>", n);
		cJSON_ArrayForEach(r, runs[i].results)
			if (shown_case(r) && jstr(r, "id"))
				html_case(sb, i, r);
	}
	strbuf_addstr(sb, "</body></html>\n");
	free(names);
}

/* ------------------------------------------------------------ text */

static void write_text(struct strbuf *sb, const char *title, const struct costs *C)
{
	size_t n_names;
	char **names = metric_names(&n_names);
	strbuf_addf(sb, "%s\n\nRuns\n", title);
	for (size_t i = 0; i < n_runs; i++) {
		const cJSON *s = runs[i].summary;
		strbuf_addf(sb, "  %s: suite %s, %.0f results, %.0f scored (%.0f defective answers), %.0f without an answer, "
			    "%.0f of defective cases, %.0f flagged\n", runs[i].name,
			    runs[i].suite ? runs[i].suite : "-", jnum(s, "results"), jnum(s, "scored"),
			    count(s, "defective"), jnum(s, "errors"), count(s, "bad_cases"), jnum(s, "flagged"));
	}
	strbuf_addstr(sb, "\nMetrics (mean [95% interval] n); a surface metric is listed under its semantic twin\n");
	for (size_t k = 0; k < n_names; k++) {
		const char *kind = metric_attr(names[k], "kind");
		const char *twin = metric_attr(names[k], "twin");
		int surface = kind && !strcmp(kind, "surface");
		int twin_here = 0;
		for (size_t q = 0; twin && q < n_names; q++)
			twin_here |= !strcmp(names[q], twin);
		if (surface && twin_here)
			continue;
		for (int pass = 0; pass < 2; pass++) {
			for (size_t q = 0; q < n_names; q++) {
				const char *tq = metric_attr(names[q], "twin");
				if (pass == 0 ? q != k : !(tq && !strcmp(tq, names[k]) && q != k))
					continue;
				const char *kq = metric_attr(names[q], "kind");
				strbuf_addf(sb, "  %s%s (%s%s%s)\n", pass ? "  " : "", names[q], kq ? kq : "semantic",
					    pass ? ", twin of " : "", pass ? names[k] : "");
				for (size_t i = 0; i < n_runs; i++) {
					const cJSON *m = metric(i, names[q]);
					char a[32], lo[32], hi[32];
					fnum(a, sizeof(a), jnum(m, "mean"));
					fnum(lo, sizeof(lo), jnum(m, "lo"));
					fnum(hi, sizeof(hi), jnum(m, "hi"));
					strbuf_addf(sb, "    %s%-20s %s [%s, %s] n=%.0f\n", pass ? "  " : "", runs[i].name, a,
						    lo, hi, isnan(jnum(m, "n")) ? 0 : jnum(m, "n"));
				}
			}
		}
	}
	for (size_t i = 0; i < n_runs; i++) {
		const cJSON *e;
		cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(runs[i].summary, "methods"))
		{
			char ma[32], mb[32], d[32], lo[32], hi[32];
			fnum(ma, sizeof(ma), jnum(e, "mean_a"));
			fnum(mb, sizeof(mb), jnum(e, "mean_b"));
			fnum(d, sizeof(d), jnum(e, "diff"));
			fnum(lo, sizeof(lo), jnum(e, "lo"));
			fnum(hi, sizeof(hi), jnum(e, "hi"));
			strbuf_addf(sb, "\nMethods (%s, %s): %s %s vs %s %s, diff %s [%s, %s], %d cases disagree%s\n",
				    runs[i].name, ftk_json_get_str(e, "group"), ftk_json_get_str(e, "a"), ma,
				    ftk_json_get_str(e, "b"), mb, d, lo, hi,
				    cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(e, "disagree")),
				    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "method_sensitive"))
					    ? ": METHOD SENSITIVE" : "");
		}
	}
	strbuf_addstr(sb, "\nPeople\n");
	for (size_t i = 0; i < n_runs; i++) {
		cJSON *ag = ftk_reviews_agreement(runs[i].results);
		if (jnum(ag, "reviewed") <= 0) {
			strbuf_addf(sb, "  %s: no case reviewed yet\n", runs[i].name);
			cJSON_Delete(ag);
			continue;
		}
		char *buf = NULL;
		size_t len = 0;
		FILE *mf = open_memstream(&buf, &len);
		ftk_reviews_print(mf, ag);
		fclose(mf);
		strbuf_addf(sb, "  %s:\n", runs[i].name);
		for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
			strbuf_addf(sb, "    %s\n", line);
		free(buf);
		cJSON_Delete(ag);
	}
	strbuf_addstr(sb, "\nCosts\n");
	if (!C->have) {
		strbuf_addstr(sb, "  no ledger given (--ledger FILE or FTK_LEDGER)\n");
	} else {
		for (int c = 0; c < N_CAT; c++) {
			char u[32];
			fusd(u, sizeof(u), C->usd[c]);
			strbuf_addf(sb, "  %-28s %10.4g h %12s\n", cat_name[c], C->hours[c], u);
		}
		char t[32];
		fusd(t, sizeof(t), C->total);
		strbuf_addf(sb, "  %-28s %12s %12s\n", "total", "", t);
		if (C->unpriced)
			strbuf_addf(sb, "  %ld entries without a price or a matching rate (counted as $0)\n", C->unpriced);
		if (n_runs > 1) {
			int whole = 0;
			run_cost(C, runs[1].name, &whole);
			strbuf_addf(sb, "\nCost per quality point over %s%s\n", runs[0].name,
				    whole ? " (each run's cost: the whole ledger)" : "");
			for (size_t k = 0; k < n_names; k++) {
				const char *kind = metric_attr(names[k], "kind");
				if (kind && !strcmp(kind, "surface"))
					continue;
				for (size_t i = 1; i < n_runs; i++) {
					const cJSON *b = metric(0, names[k]), *x = metric(i, names[k]);
					if (!b || !x)
						continue;
					double gain = (jnum(x, "mean") - jnum(b, "mean")) * 100;
					double sa = jnum(b, "se"), sx = jnum(x, "se");
					double half = 1.959964 *
						      sqrt((isnan(sa) ? 0 : sa * sa) + (isnan(sx) ? 0 : sx * sx)) * 100;
					double cost = run_cost(C, runs[i].name, &whole);
					char cs[32], pp[32];
					fusd(cs, sizeof(cs), cost);
					if (gain > 0)
						fusd(pp, sizeof(pp), cost / gain);
					else
						snprintf(pp, sizeof(pp), "no gain");
					strbuf_addf(sb, "  %s %s: gain %+.1f points [%+.1f, %+.1f]%s, cost %s, per point %s\n",
						    names[k], runs[i].name, gain, gain - half, gain + half,
						    gain - half > 0 || gain + half < 0 ? "" : " (ns)", cs, pp);
				}
			}
		}
	}
	strbuf_addstr(sb, "\nFlagged and reviewed cases\n");
	for (size_t i = 0; i < n_runs; i++) {
		const cJSON *r;
		cJSON_ArrayForEach(r, runs[i].results)
		{
			if (!shown_case(r) || !jstr(r, "id"))
				continue;
			const char *v = jstr(r, "verdict"), *by = jstr(r, "verdict_by");
			strbuf_addf(sb, "  %s %s", runs[i].name, jstr(r, "id"));
			if (!isnan(jnum(r, "sample")) && jnum(r, "sample") > 0)
				strbuf_addf(sb, "#%.0f", jnum(r, "sample"));
			if (v)
				strbuf_addf(sb, ": %s (%s)", v, by ? by : "judges");
			strbuf_addch(sb, '\n');
			const cJSON *f;
			cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(r, "flags"))
				strbuf_addf(sb, "    ! %s: %s\n", jstr(f, "kind") ? jstr(f, "kind") : "?",
					    jstr(f, "reason") ? jstr(f, "reason") : "");
			const cJSON *hr;
			cJSON_ArrayForEach(hr, cJSON_GetObjectItemCaseSensitive(
						       cJSON_GetObjectItemCaseSensitive(r, "human"), "reviewers"))
			{
				strbuf_addf(sb, "    %s: %s", jstr(hr, "reviewer"), jstr(hr, "verdict"));
				if (jstr(hr, "note"))
					strbuf_addf(sb, " (%s)", jstr(hr, "note"));
				strbuf_addch(sb, '\n');
			}
		}
	}
	free(names);
}

/* ------------------------------------------------------------ main */

/* Add the lines of an extra reviews file to the runs they name (or to all), and refold. */
static int extra_reviews(const char *path)
{
	cJSON *rv;
	long bad = 0;
	struct ftk_error e;
	ftk_error_clear(&e);
	if (ftk_reviews_load(path, &rv, &bad, &e) < 0)
		return error_at(&e);
	if (bad)
		warning("%s (%ld unreadable review lines skipped)", FTK_ERROR_TEXT(&e), bad);
	for (size_t i = 0; i < n_runs; i++) {
		const cJSON *d;
		cJSON_ArrayForEach(d, rv)
		{
			const char *run = jstr(d, "run");
			if (!run || !strcmp(run, runs[i].name))
				cJSON_AddItemToArray(runs[i].reviews, cJSON_Duplicate(d, 1));
		}
		ftk_reviews_fold(runs[i].results, runs[i].reviews);
	}
	cJSON_Delete(rv);
	return 0;
}

/* Through lib/stream's writer: a temporary renamed over a regular file, a
 * device or pipe written through, the temporary removed if we are killed. */
static int write_out(const char *path, const struct strbuf *sb)
{
	struct ftk_writer *w;
	struct ftk_error err;
	if (ftk_writer_open(&w, path, 0, &err) < 0)
		return error("%s", err.msg);
	ftk_writer_write(w, sb->buf, sb->len);
	if (ftk_writer_close(w, &err) < 0)
		return error("%s", err.msg);
	return 0;
}

int cmd_report(int argc, char **argv)
{
	ftk_progname = "ftk-report";
	const char *out = NULL, *ledger = NULL, *rates = NULL, *title = "ftk report";
	struct ftk_strlist reviews = { 0 };
	int text = 0;
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Options"),
		FTK_OPT_STRING('o', "out", &out, "FILE", "write the report there (default standard output)"),
		{ .kind = FTK_OPTION_STRING, .long_name = "output", .value = &out, .argh = "FILE",
		  .flags = FTK_OPTF_HIDDEN },	/* the name the other tools use */
		FTK_OPT_FLAG(0, "text", &text, "plain text instead of HTML"),
		FTK_OPT_STRING(0, "ledger", &ledger, "FILE", "the cost ledger (default $FTK_LEDGER)"),
		FTK_OPT_STRING(0, "rates", &rates, "FILE",
			       "prices for ledger entries without usd (default $FTK_RATES,\n"
			       "else rates.jsonl beside the ledger, else the examples)"),
		FTK_OPT_STRING_LIST(0, "reviews", &reviews, "FILE",
				    "more reviews (besides each RUN_DIR/reviews.jsonl); a line\n"
				    "goes to the run its \"run\" names, or to every run"),
		FTK_OPT_STRING(0, "title", &title, "TEXT", "the page title (default \"ftk report\")"),
		FTK_OPT_HELP(),
		FTK_OPT_VERSION(),
		FTK_OPT_TEXT("Exit status: 0 success, 1 a run or the ledger cannot be read, 2 bad usage.\n"),
		FTK_OPT_END(),
	};
	argc = ftk_parse_options(argc, argv, "ftk-report", opts, usage);
	if (argc < 1)
		ftk_usage_error("give one run directory or more");
	n_runs = (size_t)argc;
	runs = xcalloc(n_runs, sizeof(*runs));
	int rc = FTK_EXIT_OK;
	struct costs C;
	memset(&C, 0, sizeof(C));
	struct strbuf sb = STRBUF_INIT;
	for (size_t i = 0; i < n_runs; i++) {
		struct ftk_error e;
		ftk_error_clear(&e);
		if (ftk_review_run_load(&runs[i], argv[i], NULL, &e) < 0) {
			error_at(&e);
			rc = FTK_EXIT_DATA;
			goto out;
		}
		if (runs[i].bad_results)
			warning("%s: %ld unreadable result lines skipped", runs[i].dir, runs[i].bad_results);
		if (runs[i].bad_reviews)
			warning("%s (%ld unreadable review lines skipped)", FTK_ERROR_TEXT(&e),
				runs[i].bad_reviews);
	}
	for (size_t k = 0; k < reviews.n; k++)
		if (extra_reviews(reviews.v[k]) < 0) {
			rc = FTK_EXIT_DATA;
			goto out;
		}
	if (load_costs(&C, ftk_ledger_path(ledger), rates) < 0) {
		rc = FTK_EXIT_DATA;
		goto out;
	}
	if (text)
		write_text(&sb, title, &C);
	else
		write_html(&sb, title, &C);
	if (write_out(out, &sb) < 0)
		rc = FTK_EXIT_DATA;
	else if (out && strcmp(out, "-"))
		fprintf(stderr, "ftk-report: wrote %s (%zu runs%s)\n", out, n_runs, C.have ? ", with costs" : "");
	if (C.bad_lines)
		rc = FTK_EXIT_DATA;
out:
	strbuf_release(&sb);
	free_costs(&C);
	for (size_t i = 0; i < n_runs; i++)
		ftk_review_run_release(&runs[i]);
	free(runs);
	ftk_strlist_release(&reviews);
	return rc;
}
