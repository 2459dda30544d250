/*
 * cmd_review.c: ftk-review, a person reads the cases an eval flagged.
 * summary: read an eval run's flagged cases full-screen and record pass/fail verdicts
 *
 *   ftk-review RUN_DIR [--suite FILE] [--all | --filter WORD] [--reviewer NAME]
 *              [--reviews FILE] [--ledger FILE] [--run NAME]
 *
 * One case at a time, on a full screen (ncursesw): why it was flagged, each
 * judge's verdict with its failures, the people's verdicts so far, the
 * prompt, the output, and for a citation judge every sentence with the
 * passages it cites printed under it (highlighted: green where they support
 * it, red where they do not or the marker points past the list), then the
 * sources, the cited ones highlighted and marked with the sentences that
 * cite them.
 *
 * Decisions are appended to the reviews file the moment a key is pressed
 * (review.h says where and why one shared file), one line holding the
 * reviewer's whole current decision on the case, so a quit, a kill or a
 * crash loses nothing, and a new session starts at this reviewer's first
 * undecided case.  The session's active time (the gaps between key presses,
 * idle gaps over five minutes left out) goes to the ledger as human entries,
 * stage review: one each time ten minutes of it have gathered, and the rest
 * at the end (q, SIGTERM, SIGHUP), so a kill -9 loses at most ten minutes.
 *
 * The screen is rebuilt from the data on every resize; nothing is laid out
 * for a fixed size, and 80x24 is what the tests drive it in (tmux).
 */
#define NCURSES_WIDECHAR 1
#include <curses.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wchar.h>
#include "cli/tool.h"
#include "eval/reviews.h"
#include "eval/suite.h"
#include "lib/ledger.h"
#include "lib/strbuf.h"
#include "review/review.h"

static const char *const usage[] = {
	"ftk-review RUN_DIR [--suite FILE] [--all | --filter WORD] [--reviewer NAME]",
	"",
	"Read an eval run's flagged cases on a full screen and mark each pass, fail",
	"or unsure, with a note.  Every decision is appended to the reviews file as it",
	"is made (default RUN_DIR/reviews.jsonl, shared by all reviewers); a new session",
	"starts at your first undecided case.  The time spent (idle gaps over 5 minutes",
	"left out) goes to the ledger as human hours, stage review.",
	NULL,
};

enum { C_PASS = 1, C_FAIL, C_WARN, C_HEAD, C_CITED_OK, C_CITED_BAD, C_DIM };

struct item {
	cJSON *res;		/* borrowed from run.results */
	const cJSON *rec;	/* the suite's case, or NULL */
	const char *id;
	long sample;
	char verdict[8];	/* this reviewer's: "", "pass", "fail", "unsure" */
	char *note;
};

struct line {
	char *text;
	int attr;
};

struct ui {
	struct ftk_review_run run;
	struct ftk_eval_suite *suite;
	struct item *it;
	size_t n, cur;
	const char *reviewer;
	struct line *body;
	size_t nb, ab;
	int top;
	int width;		/* the width body was built for */
	char status[512];
	double *ev;
	size_t nev, aev;
	long decided;		/* decisions written this session */
	char search[256];
	int write_failed;
	const char *ledger;	/* the ledger path, or NULL */
	const char *ledger_run;	/* the run for its entries, or NULL ($FTK_RUN) */
	size_t ev_logged;	/* events before this one are in the ledger already */
	long decided_logged;	/* decisions already counted in the ledger */
	int n_entries;		/* ledger entries written by this session */
	double flush_s;		/* FTK_REVIEW_FLUSH_S, or $FTK_REVIEW_FLUSH_S */
};

/* While a session runs, its time goes to the ledger each time this much active time has gathered. */
#define FTK_REVIEW_FLUSH_S 600.0

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

static const char *jstr(const cJSON *o, const char *k)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

/* ------------------------------------------------------------ body lines */

static void add_line(struct ui *u, const char *text, int attr)
{
	FTK_ALLOC_GROW(u->body, u->nb + 1, u->ab);
	u->body[u->nb].text = xstrdup(text);
	u->body[u->nb].attr = attr;
	u->nb++;
}

/* Wrap text to the width, the first line after prefix, the rest indented as deep. */
static void add_text(struct ui *u, const char *prefix, const char *text, int attr)
{
	int pw = ftk_review_width(prefix);
	int w = u->width - pw;
	if (w < 10)
		w = 10;
	char **l;
	size_t n = ftk_review_wrap(text, w, &l);
	struct strbuf sb = STRBUF_INIT;
	for (size_t i = 0; i < n; i++) {
		strbuf_reset(&sb);
		if (i == 0)
			strbuf_addstr(&sb, prefix);
		else
			strbuf_addf(&sb, "%*s", pw, "");
		strbuf_addstr(&sb, l[i]);
		add_line(u, sb.buf, attr);
		free(l[i]);
	}
	free(l);
	strbuf_release(&sb);
}

static void add_head(struct ui *u, const char *title)
{
	add_line(u, "", 0);
	add_line(u, title, COLOR_PAIR(C_HEAD) | A_BOLD);
}

static void clear_body(struct ui *u)
{
	for (size_t i = 0; i < u->nb; i++)
		free(u->body[i].text);
	u->nb = 0;
}

/* The text of source n (1-based) of a case: "Title: text" as the citation judge reads it. */
static char *source_text(const cJSON *rec, int n, const char **title)
{
	const cJSON *s = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(rec, "sources"), n - 1);
	*title = NULL;
	if (!s)
		return NULL;
	if (cJSON_IsString(s))
		return xstrdup(s->valuestring);
	*title = jstr(s, "title");
	const char *t = jstr(s, "text");
	return xstrdup(t ? t : "");
}

static const cJSON *citation_detail(const cJSON *res)
{
	const cJSON *j;
	cJSON_ArrayForEach(j, cJSON_GetObjectItemCaseSensitive(res, "judges"))
	{
		const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "detail");
		if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(d, "sentences")))
			return d;
	}
	return NULL;
}

static int in_list(const cJSON *arr, int n)
{
	const cJSON *x;
	cJSON_ArrayForEach(x, arr)
		if (cJSON_IsNumber(x) && (int)x->valuedouble == n)
			return 1;
	return 0;
}

static void build_citations(struct ui *u, const struct item *it, const cJSON *det)
{
	const cJSON *sents = cJSON_GetObjectItemCaseSensitive(det, "sentences");
	int n_src = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(it->rec, "sources"));
	add_head(u, "Sentences and the passages they cite");
	int k = 0;
	const cJSON *s;
	char pre[64];
	cJSON_ArrayForEach(s, sents)
	{
		k++;
		int sup = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "supported"));
		snprintf(pre, sizeof(pre), "S%d %s ", k, sup ? "supported:" : "NOT supported:");
		add_text(u, pre, jstr(s, "text") ? jstr(s, "text") : "",
			 sup ? COLOR_PAIR(C_PASS) : COLOR_PAIR(C_FAIL) | A_BOLD);
		const cJSON *c;
		cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(s, "citations"))
		{
			if (!cJSON_IsNumber(c))
				continue;
			int n = (int)c->valuedouble;
			snprintf(pre, sizeof(pre), "    [%d] ", n);
			if (n < 1 || n > n_src) {
				add_text(u, pre, it->rec ? "cites a source past the list (fabricated)"
							 : "(sources not loaded: give --suite)",
					 COLOR_PAIR(C_CITED_BAD) | A_BOLD);
				continue;
			}
			const char *title;
			char *t = source_text(it->rec, n, &title);
			struct strbuf sb = STRBUF_INIT;
			if (title)
				strbuf_addf(&sb, "%s: ", title);
			strbuf_addstr(&sb, t);
			if (sb.len > 400) {
				size_t cut = 400;
				while (cut > 0 && ((unsigned char)sb.buf[cut] & 0xC0) == 0x80)
					cut--;
				strbuf_setlen(&sb, cut);
				strbuf_addstr(&sb, "...");
			}
			int bad = !sup || in_list(cJSON_GetObjectItemCaseSensitive(s, "irrelevant"), n);
			add_text(u, pre, sb.buf, COLOR_PAIR(bad ? C_CITED_BAD : C_CITED_OK));
			strbuf_release(&sb);
			free(t);
			/* the judge's verdict on this citation, when it is not a good one */
			const cJSON *v;
			cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(s, "cited"))
			{
				const cJSON *src = cJSON_GetObjectItemCaseSensitive(v, "source");
				const char *verdict = jstr(v, "verdict");
				if (!cJSON_IsNumber(src) || (int)src->valuedouble != n || !verdict ||
				    !strcmp(verdict, "relevant"))
					continue;
				struct strbuf r = STRBUF_INIT;
				strbuf_addf(&r, "%s: %s", verdict, jstr(v, "reason") ? jstr(v, "reason") : "");
				add_text(u, "        ", r.buf, COLOR_PAIR(C_DIM));
				strbuf_release(&r);
			}
		}
		const cJSON *why = cJSON_GetObjectItemCaseSensitive(s, "why");
		if (!sup && why) {
			char *w = cJSON_PrintUnformatted(why);
			add_text(u, "    why: ", w, COLOR_PAIR(C_DIM));
			cJSON_free(w);
		}
	}
}

static void build_sources(struct ui *u, const struct item *it, const cJSON *det)
{
	const cJSON *srcs = cJSON_GetObjectItemCaseSensitive(it->rec, "sources");
	if (!cJSON_GetArraySize(srcs))
		return;
	add_head(u, "Sources (cited ones highlighted)");
	int n = cJSON_GetArraySize(srcs);
	for (int i = 1; i <= n; i++) {
		struct strbuf by = STRBUF_INIT;
		int k = 0;
		const cJSON *s;
		cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(det, "sentences"))
		{
			k++;
			if (in_list(cJSON_GetObjectItemCaseSensitive(s, "citations"), i))
				strbuf_addf(&by, "%sS%d", by.len ? "," : " cited by ", k);
		}
		const char *title;
		char *t = source_text(it->rec, i, &title);
		char pre[32];
		snprintf(pre, sizeof(pre), "[%d] ", i);
		struct strbuf sb = STRBUF_INIT;
		strbuf_addf(&sb, "%s%s%s", title ? title : "", by.len ? by.buf : " (not cited)",
			    title || by.len ? ": " : "");
		strbuf_addstr(&sb, t);
		add_text(u, pre, sb.buf, by.len ? COLOR_PAIR(C_CITED_OK) | A_BOLD : COLOR_PAIR(C_DIM));
		strbuf_release(&sb);
		strbuf_release(&by);
		free(t);
	}
}

static void build_body(struct ui *u)
{
	clear_body(u);
	struct item *it = &u->it[u->cur];
	const cJSON *res = it->res;
	char buf[1024];

	add_line(u, "Why it was flagged", COLOR_PAIR(C_HEAD) | A_BOLD);
	const cJSON *f;
	int nf = 0;
	cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(res, "flags"))
	{
		const char *judge = jstr(f, "judge");
		snprintf(buf, sizeof(buf), "! %s%s%s%s: ", jstr(f, "kind") ? jstr(f, "kind") : "?",
			 judge ? " (" : "", judge ? judge : "", judge ? ")" : "");
		add_text(u, buf, jstr(f, "reason") ? jstr(f, "reason") : "", COLOR_PAIR(C_WARN));
		nf++;
	}
	if (!nf)
		add_line(u, "not flagged", COLOR_PAIR(C_DIM));
	if (jstr(res, "error"))
		add_text(u, "error: ", jstr(res, "error"), COLOR_PAIR(C_FAIL));

	add_head(u, "Judges");
	const cJSON *j;
	cJSON_ArrayForEach(j, cJSON_GetObjectItemCaseSensitive(res, "judges"))
	{
		const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "pass");
		const char *v = cJSON_IsTrue(p) ? "PASS" : cJSON_IsFalse(p) ? "FAIL" : "-";
		struct strbuf sb = STRBUF_INIT;
		strbuf_addf(&sb, "%s: %s ", j->string, v);
		const cJSON *m;
		cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(j, "metrics"))
		{
			const cJSON *val = cJSON_GetObjectItemCaseSensitive(m, "value");
			const char *kind = jstr(m, "kind");
			const char *dot = strrchr(m->string, '.');
			strbuf_addf(&sb, " %s=%.3g%s", dot ? dot + 1 : m->string,
				    cJSON_IsNumber(val) ? val->valuedouble : -1.0,
				    kind && !strcmp(kind, "surface") ? " (surface)" : "");
		}
		add_text(u, "", sb.buf, cJSON_IsTrue(p) ? COLOR_PAIR(C_PASS) : COLOR_PAIR(C_FAIL));
		strbuf_release(&sb);
		cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(j, "failures"))
		{
			snprintf(buf, sizeof(buf), "  - %s: ", jstr(f, "kind") ? jstr(f, "kind") : "?");
			add_text(u, buf, jstr(f, "reason") ? jstr(f, "reason") : "", 0);
		}
		const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "detail");
		if (jstr(d, "pattern")) {
			snprintf(buf, sizeof(buf), "  pattern %s, matched ", jstr(d, "pattern"));
			add_text(u, buf, jstr(d, "matched_text") ? jstr(d, "matched_text") : "(nothing)",
				 COLOR_PAIR(C_DIM));
		}
		const cJSON *call;
		cJSON_ArrayForEach(call, cJSON_GetObjectItemCaseSensitive(d, "calls"))
		{
			char *a = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(call, "arguments"));
			snprintf(buf, sizeof(buf), "  call %s(%s)%s%s", jstr(call, "name") ? jstr(call, "name") : "?",
				 a ? a : "", jstr(call, "kind") ? ": " : "", jstr(call, "kind") ? jstr(call, "kind") : "");
			add_text(u, "", buf, COLOR_PAIR(C_DIM));
			cJSON_free(a);
		}
	}

	add_head(u, "People");
	snprintf(buf, sizeof(buf), "you (%s): %s", u->reviewer, it->verdict[0] ? it->verdict : "undecided");
	add_line(u, buf, !strcmp(it->verdict, "pass")	? COLOR_PAIR(C_PASS) | A_BOLD
			 : !strcmp(it->verdict, "fail") ? COLOR_PAIR(C_FAIL) | A_BOLD
			 : it->verdict[0]		? COLOR_PAIR(C_WARN) | A_BOLD
							: 0);
	if (it->note)
		add_text(u, "  note: ", it->note, 0);
	const cJSON *hrev = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(res, "human"),
							     "reviewers");
	const cJSON *hr;
	cJSON_ArrayForEach(hr, hrev)
	{
		if (!strcmp(jstr(hr, "reviewer"), u->reviewer))
			continue;
		snprintf(buf, sizeof(buf), "%s: %s%s", jstr(hr, "reviewer"), jstr(hr, "verdict"),
			 jstr(hr, "note") ? ", note: " : "");
		add_text(u, buf, jstr(hr, "note") ? jstr(hr, "note") : "", 0);
	}

	add_head(u, "Output");
	const char *out = jstr(res, "output");
	add_text(u, "", out ? out : "(no text)", out ? A_BOLD : COLOR_PAIR(C_DIM));
	const cJSON *tc = cJSON_GetObjectItemCaseSensitive(res, "tool_calls");
	if (cJSON_GetArraySize(tc)) {
		char *s = cJSON_PrintUnformatted(tc);
		add_text(u, "tool_calls: ", s, A_BOLD);
		cJSON_free(s);
	}
	if (jstr(res, "finish_reason"))
		add_text(u, "finish_reason: ", jstr(res, "finish_reason"), COLOR_PAIR(C_DIM));

	const cJSON *det = citation_detail(res);
	if (det)
		build_citations(u, it, det);
	add_head(u, "Prompt");
	if (it->rec) {
		char *pt = ftk_review_prompt_text(it->rec);
		add_text(u, "", pt, 0);
		free(pt);
	} else {
		add_line(u, u->suite ? "(this case is not in the suite)"
				     : "(give --suite FILE to see the prompt and sources)", COLOR_PAIR(C_DIM));
	}

	const cJSON *exp = cJSON_GetObjectItemCaseSensitive(it->rec, "expected");
	if (exp) {
		add_head(u, "Expected");
		char *e = cJSON_PrintUnformatted(exp);
		add_text(u, "", e, 0);
		cJSON_free(e);
	}
	if (it->rec)
		build_sources(u, it, det);
	add_line(u, "", 0);
	add_line(u, "(end of case)", COLOR_PAIR(C_DIM));
}

/* ------------------------------------------------------------ drawing */

/* Draw s at (y, x), cut to at most w columns. */
static void put_cut(int y, int x, const char *s, int w)
{
	struct strbuf sb = STRBUF_INIT;
	int used = 0;
	mbstate_t st;
	memset(&st, 0, sizeof(st));
	size_t i = 0, n = strlen(s);
	while (i < n) {
		wchar_t wc;
		size_t k = mbrtowc(&wc, s + i, n - i, &st);
		if (k == (size_t)-1 || k == (size_t)-2 || k == 0) {
			memset(&st, 0, sizeof(st));
			k = 1;
			wc = '?';
		}
		int cw = wcwidth(wc);
		if (cw < 0)
			cw = 1;
		if (used + cw > w)
			break;
		strbuf_add(&sb, s + i, k);
		used += cw;
		i += k;
	}
	mvaddstr(y, x, sb.buf);
	strbuf_release(&sb);
}

static long n_decided(const struct ui *u)
{
	long k = 0;
	for (size_t i = 0; i < u->n; i++)
		k += u->it[i].verdict[0] != 0;
	return k;
}

static void draw(struct ui *u)
{
	erase();
	if (COLS < 30 || LINES < 6) {
		put_cut(0, 0, "terminal too small", COLS);
		refresh();
		return;
	}
	if (u->width != COLS) {
		u->width = COLS;
		build_body(u);
	}
	int rows = LINES - 2;
	if (u->top > (int)u->nb - rows)
		u->top = (int)u->nb - rows;
	if (u->top < 0)
		u->top = 0;
	struct item *it = &u->it[u->cur];
	char h[1024];
	snprintf(h, sizeof(h), " %s  case %zu/%zu  %s%s%ld  [%s]  decided %ld/%zu  %s", u->run.name,
		 u->cur + 1, u->n, it->id, it->sample ? "#" : "", it->sample,
		 it->verdict[0] ? it->verdict : "undecided", n_decided(u), u->n, u->reviewer);
	if (!it->sample) {
		/* no "#0" for the usual single sample */
		snprintf(h, sizeof(h), " %s  case %zu/%zu  %s  [%s]  decided %ld/%zu  %s", u->run.name,
			 u->cur + 1, u->n, it->id, it->verdict[0] ? it->verdict : "undecided", n_decided(u),
			 u->n, u->reviewer);
	}
	attron(A_REVERSE);
	mvhline(0, 0, ' ', COLS);
	put_cut(0, 0, h, COLS);
	attroff(A_REVERSE);
	for (int r = 0; r < rows && u->top + r < (int)u->nb; r++) {
		const struct line *l = &u->body[u->top + r];
		attron(l->attr);
		put_cut(1 + r, 0, l->text, COLS);
		attroff(l->attr);
	}
	const char *keys = "p pass f fail u unsure n note <- -> move Tab undecided / search ? help q quit";
	attron(A_REVERSE);
	mvhline(LINES - 1, 0, ' ', COLS);
	put_cut(LINES - 1, 0, u->status[0] ? u->status : keys, COLS);
	attroff(A_REVERSE);
	refresh();
}

static void help(void)
{
	static const char *const lines[] = {
		"ftk-review keys",
		"",
		"p  pass          f  fail          u  unsure",
		"   (each saved at once; then on to the next undecided case)",
		"n  add or edit a note on this case",
		"right, l, ]   next case     left, h, [   previous",
		"Tab  next case you have not decided",
		"up/down, j/k, PgUp/PgDn, space  scroll",
		"g / G  top / bottom of the case",
		"/  search ids, prompts and outputs; / Enter: next match",
		"q  quit (every decision is already saved)",
		"",
		"press any key",
	};
	int n = (int)FTK_ARRAY_SIZE(lines), w = 0;
	for (int i = 0; i < n; i++)
		if ((int)strlen(lines[i]) > w)
			w = (int)strlen(lines[i]);
	int bw = w + 4 < COLS ? w + 4 : COLS, bh = n + 2 < LINES ? n + 2 : LINES;
	WINDOW *win = newwin(bh, bw, (LINES - bh) / 2, (COLS - bw) / 2);
	if (!win)
		return;
	box(win, '|', '-');
	for (int i = 0; i < n && i + 1 < bh - 1; i++)
		mvwaddnstr(win, i + 1, 2, lines[i], bw - 4);
	wrefresh(win);
	wint_t ch;
	wtimeout(win, -1);
	while (wget_wch(win, &ch) == ERR && !stop_signal)
		;
	delwin(win);
	touchwin(stdscr);
}

/*
 * Read a line at the bottom row after prompt.  Returns 1 and fills buf
 * (UTF-8) on Enter, 0 on Escape.  buf holds the initial text.
 */
static int read_line(const char *prompt, char *buf, size_t cap)
{
	wchar_t w[512];
	size_t n = mbstowcs(w, buf, FTK_ARRAY_SIZE(w) - 1);
	if (n == (size_t)-1)
		n = 0;
	w[n] = 0;
	curs_set(1);
	for (;;) {
		move(LINES - 1, 0);
		clrtoeol();
		attron(A_BOLD);
		mvaddstr(LINES - 1, 0, prompt);
		attroff(A_BOLD);
		int pw = (int)strlen(prompt), room = COLS - pw - 1;
		size_t start = 0;
		int tw = 0;
		for (size_t i = n; i > 0; i--) {
			int cw = wcwidth(w[i - 1]);
			tw += cw < 0 ? 1 : cw;
			if (tw > room) {
				start = i;
				break;
			}
		}
		addnwstr(w + start, (int)(n - start));
		refresh();
		wint_t ch;
		int rc = get_wch(&ch);
		if (stop_signal)
			break;
		if (rc == ERR)
			continue;
		if (rc == KEY_CODE_YES) {
			if (ch == KEY_BACKSPACE && n > 0)
				w[--n] = 0;
			else if (ch == KEY_ENTER)
				goto done;
			continue;
		}
		if (ch == 27) {
			curs_set(0);
			return 0;
		}
		if (ch == '\n' || ch == '\r')
			goto done;
		if ((ch == 127 || ch == 8) && n > 0) {
			w[--n] = 0;
			continue;
		}
		if (ch == 21) {	/* ^U */
			n = 0;
			w[0] = 0;
			continue;
		}
		if (ch >= 32 && n < FTK_ARRAY_SIZE(w) - 1) {
			w[n++] = (wchar_t)ch;
			w[n] = 0;
		}
	}
done:
	curs_set(0);
	if (wcstombs(buf, w, cap) == (size_t)-1)
		buf[0] = 0;
	buf[cap - 1] = 0;
	return 1;
}

/* ------------------------------------------------------------ decisions */

static void save(struct ui *u, struct item *it)
{
	cJSON *o = cJSON_CreateObject();
	char ts[32];
	ftk_time_rfc3339(ftk_now(), ts, sizeof(ts));
	cJSON_AddStringToObject(o, "ts", ts);
	cJSON_AddStringToObject(o, "reviewer", u->reviewer);
	cJSON_AddStringToObject(o, "run", u->run.name);
	if (u->run.suite)
		cJSON_AddStringToObject(o, "suite", u->run.suite);
	cJSON_AddStringToObject(o, "id", it->id);
	cJSON_AddNumberToObject(o, "sample", (double)it->sample);
	if (it->verdict[0])
		cJSON_AddStringToObject(o, "verdict", it->verdict);
	else
		cJSON_AddNullToObject(o, "verdict");
	if (it->note)
		cJSON_AddStringToObject(o, "note", it->note);
	struct ftk_error e;
	ftk_error_clear(&e);
	if (ftk_ledger_append_entry(u->run.reviews_path, o, &e) < 0) {
		snprintf(u->status, sizeof(u->status), "NOT SAVED: %s", FTK_ERROR_TEXT(&e));
		u->write_failed = 1;
	} else {
		u->decided++;
		/* keep the in-memory reviews in step, for the People section */
		cJSON_AddItemToArray(u->run.reviews, cJSON_Duplicate(o, 1));
		ftk_reviews_fold(u->run.results, u->run.reviews);
	}
	cJSON_Delete(o);
}

static void mark(struct ui *u, const char *verdict)
{
	struct item *it = &u->it[u->cur];
	snprintf(it->verdict, sizeof(it->verdict), "%s", verdict);
	save(u, it);
	if (!u->write_failed)
		snprintf(u->status, sizeof(u->status), "%s: %s (saved)", it->id, verdict);
	u->width = 0;
}

static void go(struct ui *u, size_t i)
{
	if (i >= u->n)
		return;
	u->cur = i;
	u->top = 0;
	u->width = 0;
}

static int next_undecided(struct ui *u, size_t from)
{
	for (size_t k = 0; k < u->n; k++) {
		size_t i = (from + k) % u->n;
		if (!u->it[i].verdict[0]) {
			go(u, i);
			return 1;
		}
	}
	return 0;
}

/*
 * A verdict key: record it, then go on to the next undecided case (after
 * this one, wrapping), as a reviewer working through a queue expects.  When
 * the save failed, stay, so the message is seen on the case it is about;
 * when every case is decided, stay and say so.
 */
static void decide(struct ui *u, const char *verdict)
{
	mark(u, verdict);
	if (u->write_failed)
		return;
	char saved[sizeof(u->status)];
	snprintf(saved, sizeof(saved), "%s", u->status);
	if (!next_undecided(u, u->cur + 1))
		snprintf(u->status, sizeof(u->status), "%.200s; every case is decided", saved);
}

static int item_has(const struct item *it, const char *q)
{
	if (strcasestr(it->id, q))
		return 1;
	const char *o = jstr(it->res, "output");
	if (o && strcasestr(o, q))
		return 1;
	if (it->rec) {
		char *p = ftk_review_prompt_text(it->rec);
		int hit = strcasestr(p, q) != NULL;
		free(p);
		return hit;
	}
	return 0;
}

static void do_search(struct ui *u)
{
	char q[256] = "";
	if (!read_line(u->search[0] ? "search (Enter: next match): " : "search: ", q, sizeof(q))) {
		u->status[0] = 0;
		return;
	}
	if (!q[0])
		snprintf(q, sizeof(q), "%s", u->search);
	if (!q[0]) {
		u->status[0] = 0;
		return;
	}
	snprintf(u->search, sizeof(u->search), "%s", q);
	for (size_t k = 1; k <= u->n; k++) {
		size_t i = (u->cur + k) % u->n;
		if (item_has(&u->it[i], q)) {
			go(u, i);
			snprintf(u->status, sizeof(u->status), "found '%s' in %s", q, u->it[i].id);
			return;
		}
	}
	snprintf(u->status, sizeof(u->status), "'%s' not found", q);
}

static void do_note(struct ui *u)
{
	struct item *it = &u->it[u->cur];
	char b[2048];
	snprintf(b, sizeof(b), "%s", it->note ? it->note : "");
	if (!read_line("note: ", b, sizeof(b))) {
		u->status[0] = 0;
		return;
	}
	free(it->note);
	it->note = b[0] ? xstrdup(b) : NULL;
	save(u, it);
	if (!u->write_failed)
		snprintf(u->status, sizeof(u->status), "%s: note saved", it->id);
	u->width = 0;
}

/* ------------------------------------------------------------ setup */

static void event(struct ui *u)
{
	FTK_ALLOC_GROW(u->ev, u->nev + 1, u->aev);
	u->ev[u->nev++] = ftk_now();
}

static void load_decisions(struct ui *u)
{
	cJSON *latest = ftk_reviews_latest(u->run.reviews);
	const cJSON *d;
	cJSON_ArrayForEach(d, latest)
	{
		if (strcmp(jstr(d, "reviewer"), u->reviewer))
			continue;
		const cJSON *s = cJSON_GetObjectItemCaseSensitive(d, "sample");
		long sample = cJSON_IsNumber(s) ? (long)s->valuedouble : 0;
		for (size_t i = 0; i < u->n; i++) {
			struct item *it = &u->it[i];
			if (it->sample != sample || strcmp(it->id, jstr(d, "id")))
				continue;
			snprintf(it->verdict, sizeof(it->verdict), "%s", jstr(d, "verdict") ? jstr(d, "verdict") : "");
			free(it->note);
			it->note = jstr(d, "note") ? xstrdup(jstr(d, "note")) : NULL;
		}
	}
	cJSON_Delete(latest);
}

/*
 * Append the active time gathered since the last entry to the ledger: at the
 * end (final), or once FTK_REVIEW_FLUSH_S of it has gathered, so that a
 * session killed outright loses at most that much.  Returns 0, or -1 with
 * the message in u->status (final: printed) when the append failed.
 */
static int ledger_flush(struct ui *u, int final)
{
	if (!u->ledger || u->nev < 1)
		return 0;
	size_t from = u->ev_logged;
	double secs = ftk_review_active_seconds(u->ev + from, u->nev - from, FTK_REVIEW_IDLE_S);
	long dec = u->decided - u->decided_logged;
	if (!final && secs < u->flush_s)
		return 0;
	if (final && u->n_entries && secs <= 0 && dec == 0)
		return 0;
	cJSON *e = ftk_ledger_entry_new(u->ledger_run, "review", "human");
	cJSON_AddStringToObject(e, "tool", "ftk-review");
	cJSON_AddStringToObject(e, "who", u->reviewer);
	cJSON_AddNumberToObject(e, "hours", secs / 3600);
	cJSON_AddStringToObject(e, "eval_run", u->run.name);
	cJSON_AddNumberToObject(e, "decisions", (double)dec);
	struct ftk_error err;
	ftk_error_clear(&err);
	int rc = ftk_ledger_append_entry(u->ledger, e, &err);
	cJSON_Delete(e);
	if (rc < 0) {
		if (final)
			error_at(&err);
		else
			snprintf(u->status, sizeof(u->status), "ledger NOT written: %s",
				 FTK_ERROR_TEXT(&err));
		return -1;
	}
	u->ev_logged = u->nev - 1;	/* the last event opens the next stretch */
	u->decided_logged = u->decided;
	u->n_entries++;
	return 0;
}

int cmd_review(int argc, char **argv)
{
	ftk_progname = "ftk-review";
	const char *suite_path = NULL, *filter = NULL, *reviewer = NULL, *reviews = NULL;
	const char *ledger = NULL, *run = NULL;
	int all = 0;
	struct ftk_option opts[] = {
		FTK_OPT_GROUP("Options"),
		FTK_OPT_STRING(0, "suite", &suite_path, "FILE",
			       "the eval suite, to show each case's prompt and sources\n"
			       "(default: the one run.json names, if it is still there)\n"
			       "(the run's results do not hold them)"),
		FTK_OPT_FLAG(0, "all", &all, "every case, not only the flagged ones"),
		FTK_OPT_STRING(0, "filter", &filter, "WORD",
			       "only cases whose id, flag, failure or failing judge\n"
			       "contains WORD, flagged or not"),
		FTK_OPT_STRING(0, "reviewer", &reviewer, "NAME", "who is reviewing (default $USER)"),
		FTK_OPT_STRING(0, "reviews", &reviews, "FILE", "the reviews file (default RUN_DIR/reviews.jsonl)"),
		FTK_OPT_STRING(0, "ledger", &ledger, "FILE", "append the session's hours (default $FTK_LEDGER)"),
		FTK_OPT_STRING(0, "run", &run, "NAME", "the run name for the ledger (default $FTK_RUN)"),
		FTK_OPT_HELP(),
		FTK_OPT_VERSION(),
		FTK_OPT_TEXT("\n"
			     "Keys: p pass, f fail, u unsure (each then moves to the next undecided case),\n"
			     "n note, right/l next case, left/h previous,\n"
			     "Tab next undecided, up/down/PgUp/PgDn/space scroll, / search, ? help, q quit.\n"
			     "Exit status: 0 success, 1 the run cannot be read, 2 bad usage.\n"),
		FTK_OPT_END(),
	};
	argc = ftk_parse_options(argc, argv, "ftk-review", opts, usage);
	if (argc != 1)
		ftk_usage_error("give one run directory");
	if (!reviewer)
		reviewer = getenv("USER");
	if (!reviewer || !*reviewer) {
		error("who is reviewing? give --reviewer NAME (USER is not set)");
		return FTK_EXIT_USAGE;
	}
	static struct ui u;
	memset(&u, 0, sizeof(u));
	u.reviewer = reviewer;
	u.ledger = ftk_ledger_path(ledger);
	u.ledger_run = run;
	u.flush_s = FTK_REVIEW_FLUSH_S;
	const char *fs = getenv("FTK_REVIEW_FLUSH_S");
	if (fs && *fs) {
		char *end;
		double v = strtod(fs, &end);
		if (*end || !(v > 0)) {
			error("FTK_REVIEW_FLUSH_S: '%s' is not a positive number of seconds", fs);
			return FTK_EXIT_USAGE;
		}
		u.flush_s = v;
	}
	struct ftk_error e;
	ftk_error_clear(&e);
	if (ftk_review_run_load(&u.run, argv[0], reviews, &e) < 0) {
		error_at(&e);
		return FTK_EXIT_DATA;
	}
	if (u.run.bad_reviews)
		warning("%s (%ld unreadable review lines skipped)", FTK_ERROR_TEXT(&e),
			u.run.bad_reviews);
	/* without --suite, the suite the run was made from (run.json's suite_path) */
	const char *recorded = cJSON_GetStringValue(
		cJSON_GetObjectItemCaseSensitive(u.run.runinfo, "suite_path"));
	if (!suite_path && recorded && access(recorded, R_OK) == 0)
		suite_path = recorded;
	if (suite_path && ftk_eval_suite_load(&u.suite, suite_path, &e) < 0) {
		error_at(&e);
		ftk_review_run_release(&u.run);
		return FTK_EXIT_DATA;
	}
	size_t alloc = 0;
	cJSON *r;
	cJSON_ArrayForEach(r, u.run.results)
	{
		if (!jstr(r, "id"))
			continue;
		if (!all && !filter && !ftk_review_is_flagged(r))
			continue;
		if (filter && !ftk_review_matches(r, filter))
			continue;
		FTK_ALLOC_GROW(u.it, u.n + 1, alloc);
		struct item *it = &u.it[u.n++];
		memset(it, 0, sizeof(*it));
		it->res = r;
		it->id = jstr(r, "id");
		const cJSON *s = cJSON_GetObjectItemCaseSensitive(r, "sample");
		it->sample = cJSON_IsNumber(s) ? (long)s->valuedouble : 0;
		if (u.suite) {
			long k = ftk_eval_suite_find(u.suite, it->id);
			it->rec = k >= 0 ? u.suite->cases[k].rec : NULL;
		}
	}
	int rc = FTK_EXIT_OK;
	if (!u.n) {
		fprintf(stderr, "ftk-review: %s: %s\n", u.run.dir,
			filter ? "no case matches the filter"
			: all  ? "no results to review"
			       : "no flagged case to review (--all shows every case)");
		goto out;
	}
	if (!isatty(0) || !isatty(1)) {
		error("not a terminal: ftk-review is a full-screen program");
		rc = FTK_EXIT_USAGE;
		goto out;
	}
	load_decisions(&u);
	if (!next_undecided(&u, 0))
		snprintf(u.status, sizeof(u.status), "all %zu cases decided by %s; q quits", u.n, u.reviewer);

	setlocale(LC_ALL, "");
	initscr();
	raw();
	noecho();
	keypad(stdscr, TRUE);
	curs_set(0);
	set_escdelay(50);
	if (has_colors()) {
		start_color();
		use_default_colors();
		init_pair(C_PASS, COLOR_GREEN, -1);
		init_pair(C_FAIL, COLOR_RED, -1);
		init_pair(C_WARN, COLOR_YELLOW, -1);
		init_pair(C_HEAD, COLOR_CYAN, -1);
		init_pair(C_CITED_OK, COLOR_BLACK, COLOR_GREEN);
		init_pair(C_CITED_BAD, COLOR_WHITE, COLOR_RED);
		init_pair(C_DIM, COLOR_BLUE, -1);
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	timeout(1000);
	event(&u);
	u.width = 0;
	for (;;) {
		draw(&u);
		wint_t ch;
		int k = get_wch(&ch);
		if (stop_signal)
			break;
		if (k == ERR)
			continue;
		event(&u);
		ledger_flush(&u, 0);
		int rows = LINES - 2;
		if (k == KEY_CODE_YES) {
			u.status[0] = 0;
			switch (ch) {
			case KEY_RESIZE: u.width = 0; break;
			case KEY_RIGHT: go(&u, u.cur + 1); break;
			case KEY_LEFT: if (u.cur) go(&u, u.cur - 1); break;
			case KEY_DOWN: u.top++; break;
			case KEY_UP: u.top--; break;
			case KEY_NPAGE: u.top += rows - 1; break;
			case KEY_PPAGE: u.top -= rows - 1; break;
			case KEY_HOME: u.top = 0; break;
			case KEY_END: u.top = (int)u.nb; break;
			}
			continue;
		}
		if (ch != '/' && ch != 'n')
			u.status[0] = 0;
		switch (ch) {
		case 'q': case 3: goto quit;
		case 'p': decide(&u, "pass"); break;
		case 'f': decide(&u, "fail"); break;
		case 'u': decide(&u, "unsure"); break;
		case 'n': do_note(&u); break;
		case 'l': case ']': go(&u, u.cur + 1); break;
		case 'h': case '[': if (u.cur) go(&u, u.cur - 1); break;
		case '\t':
			if (!next_undecided(&u, u.cur + 1))
				snprintf(u.status, sizeof(u.status), "every case is decided");
			break;
		case 'j': u.top++; break;
		case 'k': u.top--; break;
		case ' ': u.top += rows - 1; break;
		case 'g': u.top = 0; break;
		case 'G': u.top = (int)u.nb; break;
		case '/': do_search(&u); break;
		case '?': help(); break;
		case 12: clearok(curscr, TRUE); break;	/* ^L */
		}
	}
quit:
	endwin();
	if (stop_signal)
		fprintf(stderr, "ftk-review: stopped by signal %d; every decision was already saved\n",
			(int)stop_signal);
	event(&u);
	ledger_flush(&u, 1);
	fprintf(stderr, "ftk-review: %s: %ld decisions this session; %ld of %zu cases decided by %s; %.1f minutes active\n",
		u.run.reviews_path, u.decided, n_decided(&u), u.n, u.reviewer,
		ftk_review_active_seconds(u.ev, u.nev, FTK_REVIEW_IDLE_S) / 60);
	if (u.write_failed)
		rc = FTK_EXIT_DATA;
out:
	clear_body(&u);
	free(u.body);
	for (size_t i = 0; i < u.n; i++)
		free(u.it[i].note);
	free(u.it);
	free(u.ev);
	ftk_eval_suite_free(u.suite);
	ftk_review_run_release(&u.run);
	return rc;
}
