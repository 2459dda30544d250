/*
 * tool.c: the conventions every ftk program shares (see tool.h).
 *
 * Accounting rule: every non-blank input line is a record and ends up in
 * exactly one of two places, the output (n_out) or the rejects (n_rejected),
 * so in = out + rejected holds for every tool that only filters.  Tools that
 * split or merge records (ftk-split writes several outputs) count through
 * ftk_tool_count and say so in their summary.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include "cli/tool.h"
#include "lib/cleanup.h"
#include "lib/json.h"
#include "lib/record.h"
#include "lib/ledger.h"

const char *ftk_progname = "ftk";

static void vreport(const char *prefix, const char *fmt, va_list ap)
{
	char msg[4096];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	fprintf(stderr, "%s: %s%s\n", ftk_progname, prefix, msg);
}

int error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport("", fmt, ap);
	va_end(ap);
	return -1;
}

void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport("", fmt, ap);
	va_end(ap);
	exit(FTK_EXIT_DATA);
}

void warning(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport("warning: ", fmt, ap);
	va_end(ap);
}

int error_at(const struct ftk_error *e)
{
	return error("%s", FTK_ERROR_TEXT(e));
}

void die_at(const struct ftk_error *e)
{
	die("%s", FTK_ERROR_TEXT(e));
}

static void on_fatal_signal(int sig)
{
	ftk_cleanup_run();
	/* SA_RESETHAND restored the default action: die of the same signal */
	raise(sig);
}

static void cleanup_at_exit(void)
{
	ftk_cleanup_run_at_exit();
}

void ftk_tool_cleanup_install(void)
{
	static int done;
	static const int sigs[] = { SIGINT, SIGTERM, SIGPIPE, SIGHUP };
	if (done)
		return;
	done = 1;
	atexit(cleanup_at_exit);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		struct sigaction old, sa;
		/* a signal the caller chose to ignore (nohup, a shell's &) stays ignored */
		if (sigaction(sigs[i], NULL, &old) < 0 || old.sa_handler != SIG_DFL)
			continue;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_fatal_signal;
		sa.sa_flags = SA_RESETHAND;
		sigemptyset(&sa.sa_mask);
		sigaction(sigs[i], &sa, NULL);
	}
}

static double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void ftk_tool_init(struct ftk_tool *t, const char *name, const char *usage)
{
	memset(t, 0, sizeof(*t));
	t->name = name;
	t->usage = usage;
	t->stage = "prep";
	t->bytes_total = -1;
	t->max_record_bytes = FTK_TOOL_MAX_RECORD;
	ftk_progname = name;
	t->t_start = mono_now();
	t->is_tty = isatty(2);
	strbuf_init(&t->scratch, 0);
	ftk_tool_cleanup_install();
}

void ftk_tool_usage_error(struct ftk_tool *t, const char *fmt, ...)
{
	va_list ap;
	(void)t;
	va_start(ap, fmt);
	ftk_usage_verror(fmt, ap);
}

void ftk_tool_start(struct ftk_tool *t, int n_inputs, char **inputs)
{
	static char *stdin_only[] = { "-" };
	struct ftk_error err;
	if (n_inputs <= 0) {
		n_inputs = 1;
		inputs = stdin_only;
	}
	t->inputs = inputs;
	t->n_inputs = n_inputs;
	t->cur_input = -1;
	/* a person who typed the command without a file would otherwise wait on a silent tool */
	for (int i = 0; i < n_inputs; i++) {
		if (!strcmp(inputs[i], "-") && isatty(0)) {
			fprintf(stderr, "%s: reading records from the terminal (Ctrl-D ends; give a file "
					"or pipe)\n", t->name);
			break;
		}
	}
	if (ftk_writer_open(&t->out, t->out_path, 0, &err) < 0)
		die("%s", err.msg);
	if (t->rejects_path && ftk_writer_open(&t->rejects, t->rejects_path, 0, &err) < 0)
		die("%s", err.msg);
	if (t->stats_path && !t->extra_stats)
		t->extra_stats = cJSON_CreateObject();
}

static void progress(struct ftk_tool *t, int final)
{
	double now = mono_now();
	if (!t->is_tty || t->quiet)
		return;
	if (!final && now - t->t_progress < 0.25)
		return;
	t->t_progress = now;
	double el = now - t->t_start;
	if (el < 0.5 && !final)
		return;
	uint64_t bytes = t->bytes_done + (t->reader ? ftk_reader_bytes_in(t->reader) : 0);
	double rps = el > 0 ? t->n_in / el : 0, mbs = el > 0 ? bytes / el / 1e6 : 0;
	if (final) {
		if (t->progress_shown)
			fprintf(stderr, "\r\033[K");
		return;
	}
	if (t->bytes_total > 0) {
		double pct = 100.0 * bytes / t->bytes_total;
		double eta = mbs > 0 ? (t->bytes_total - bytes) / 1e6 / mbs : 0;
		fprintf(stderr, "\r\033[K%s: %llu records, %.0f rec/s, %.1f MB/s, %.0f%%, ETA %.0fs",
			t->name, (unsigned long long)t->n_in, rps, mbs, pct, eta);
	} else {
		fprintf(stderr, "\r\033[K%s: %llu records, %.0f rec/s, %.1f MB/s", t->name,
			(unsigned long long)t->n_in, rps, mbs);
	}
	t->progress_shown = 1;
}

static int open_next_input(struct ftk_tool *t)
{
	struct ftk_error err;
	while (++t->cur_input < t->n_inputs) {
		const char *p = t->inputs[t->cur_input];
		if (ftk_reader_open(&t->reader, p, &err) < 0) {
			error("%s", err.msg);
			t->failed = 1;
			continue;
		}
		ftk_reader_keep_partial(t->reader);
		ftk_reader_set_max_line(t->reader, t->max_record_bytes);
		if (t->cur_input == 0) {
			int64_t total = 0;
			for (int i = 0; i < t->n_inputs; i++) {
				FILE *f = strcmp(t->inputs[i], "-") ? fopen(t->inputs[i], "rb") : NULL;
				if (!f) {
					total = -1;
					break;
				}
				fseek(f, 0, SEEK_END);
				total += ftell(f);
				fclose(f);
			}
			t->bytes_total = total;
		}
		return 1;
	}
	return 0;
}

static int is_blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return 0;
	return 1;
}

int ftk_tool_next(struct ftk_tool *t, struct ftk_line *line)
{
	struct ftk_error err;
	for (;;) {
		if (!t->reader && !open_next_input(t))
			return 0;
		ftk_error_clear(&err);
		int rc = ftk_reader_next(t->reader, line, &err);
		if (rc <= 0) {
			if (rc < 0) {
				error_at(&err);
				t->failed = 1;
				/* a cut record went to the rejects already: it is the count */
				if (!(rc == FTK_ETRUNC && t->cut_rejected))
					ftk_tool_count(t, rc == FTK_ETRUNC ? "truncated-input" : "read-error", 1);
			}
			t->cut_rejected = 0;
			t->bytes_done += ftk_reader_bytes_in(t->reader);
			ftk_reader_close(t->reader);
			t->reader = NULL;
			continue;
		}
		if (is_blank(line->data, line->len)) {
			ftk_tool_count(t, "blank-lines", 1);
			continue;
		}
		t->n_in++;
		if ((t->n_in & 1023) == 0)
			progress(t, 0);
		if (line->truncated) {
			ftk_tool_reject_truncated(t, line);
			continue;
		}
		if (ftk_tool_reject_oversize(t, line))
			continue;
		if (line->utf8_error >= 0) {
			cJSON *x = cJSON_CreateObject();
			char msg[128];
			snprintf(msg, sizeof(msg), "invalid UTF-8 at byte %ld", line->utf8_error + 1);
			cJSON_AddStringToObject(x, "error", msg);
			ftk_tool_reject(t, line, "invalid-utf8", x);
			continue;
		}
		return 1;
	}
}

int ftk_tool_reject_oversize(struct ftk_tool *t, const struct ftk_line *line)
{
	uint64_t size = line->oversize ? line->oversize : line->len;
	if (size <= t->max_record_bytes)
		return 0;
	cJSON *x = cJSON_CreateObject();
	char msg[200];
	snprintf(msg, sizeof(msg), "record of %llu bytes is larger than --max-record-bytes %llu: "
		 "not read (\"raw\" holds its first bytes)", (unsigned long long)size,
		 (unsigned long long)t->max_record_bytes);
	cJSON_AddStringToObject(x, "error", msg);
	cJSON_AddNumberToObject(x, "size", (double)size);
	struct ftk_line head = *line;
	if (head.len > FTK_LINE_PREFIX)
		head.len = FTK_LINE_PREFIX;
	head.truncated = 1;	/* never parsed or written whole */
	ftk_tool_reject(t, &head, "record-too-large", x);
	return 1;
}

void ftk_tool_reject_truncated(struct ftk_tool *t, const struct ftk_line *line)
{
	cJSON *x = cJSON_CreateObject();
	char msg[160];
	snprintf(msg, sizeof(msg), "the input ends in the middle of this record (%zu bytes read): "
		 "it was cut short", line->len);
	cJSON_AddStringToObject(x, "error", msg);
	ftk_tool_reject(t, line, "truncated-input", x);
	t->cut_rejected = 1;
}

void ftk_tool_hint(struct ftk_tool *t, const char *fmt, ...)
{
	va_list ap;
	if (t->hint[0])
		return;
	va_start(ap, fmt);
	vsnprintf(t->hint, sizeof(t->hint), fmt, ap);
	va_end(ap);
}

/*
 * A first line that does not parse as an object may be the start of a file in
 * another shape: a JSON array ("[" or "[{...},...]") or one pretty-printed
 * object ("{" alone on its line).  Say what reads it.
 */
static void hint_shape(struct ftk_tool *t, const struct ftk_line *line)
{
	const char *s = line->data, *e = line->data + line->len;
	if (line->lineno > 1 || t->hint[0])
		return;
	while (s < e && (*s == ' ' || *s == '\t' || *s == '\r'))
		s++;
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		e--;
	const char *f = line->file;
	int is_stdin = !strcmp(f, "-");
	if (s < e && *s == '[') {
		if (!strcmp(t->name, "ftk-convert"))
			return;		/* it reads arrays: the array was malformed */
		if (is_stdin)
			ftk_tool_hint(t, "the input looks like a JSON array, not JSON Lines (one record "
					 "per line): put 'ftk convert' first, it reads arrays");
		else
			ftk_tool_hint(t, "'%s' looks like a JSON array, not JSON Lines (one record per "
					 "line): run 'ftk convert %s' first, it reads arrays", f, f);
	} else if (e - s == 1 && *s == '{') {
		if (is_stdin)
			ftk_tool_hint(t, "the input looks like pretty-printed JSON (a record over several "
					 "lines), not JSON Lines (one record per line): pipe it through "
					 "'jq -c .' first");
		else {
			size_t n = strlen(f);
			int json = n > 5 && !strcmp(f + n - 5, ".json");
			ftk_tool_hint(t, "'%s' looks like pretty-printed JSON (a record over several "
					 "lines), not JSON Lines (one record per line): rewrite it with "
					 "'jq -c . %s > %.*s.jsonl'", f, f, (int)(json ? n - 5 : n), f);
		}
	}
}

cJSON *ftk_tool_parse(struct ftk_tool *t, const struct ftk_line *line)
{
	struct ftk_error err;
	cJSON *v = NULL;
	ftk_error_clear(&err);
	const char *kind = NULL;
	int rc = t->own_record_checks ? ftk_json_parse_object(line->data, line->len, &v, &err)
				      : ftk_json_parse_record(line->data, line->len, &v, &err, &kind);
	if (rc < 0 && !kind)
		kind = strstr(err.msg, "not a JSON object") ? "not-an-object" : "invalid-json";
	if (rc < 0) {
		cJSON *x = cJSON_CreateObject();
		/* the field, when the problem has one: "messages[0].role: key appears..." */
		ftk_error_format(&err, t->last_error, sizeof(t->last_error));
		cJSON_AddStringToObject(x, "error", t->last_error);
		ftk_tool_reject(t, line, kind, x);
		if (!strcmp(kind, "invalid-json") || !strcmp(kind, "not-an-object"))
			hint_shape(t, line);
		return NULL;
	}
	return v;
}

static void write_out(struct ftk_tool *t, const char *data, size_t len)
{
	if (ftk_writer_line(t->out, data, len) < 0 && !t->failed) {
		t->failed = 1;
		/* the detail comes from ftk_writer_close */
	}
	t->n_out++;
}

void ftk_tool_emit(struct ftk_tool *t, const struct ftk_line *line)
{
	write_out(t, line->data, line->len);
}

void ftk_tool_emit_raw(struct ftk_tool *t, const char *data, size_t len)
{
	write_out(t, data, len);
}

static void count_in(struct ftk_count **arr, size_t *n, size_t *alloc, const char *key,
		     uint64_t by)
{
	for (size_t i = 0; i < *n; i++) {
		if (!strcmp((*arr)[i].key, key)) {
			(*arr)[i].n += by;
			return;
		}
	}
	FTK_ALLOC_GROW(*arr, *n + 1, *alloc);
	(*arr)[*n].key = xstrdup(key);
	(*arr)[*n].n = by;
	(*n)++;
}

void ftk_tool_count(struct ftk_tool *t, const char *key, uint64_t n)
{
	count_in(&t->counts, &t->n_counts, &t->alloc_counts, key, n);
}

static void add_base64(struct strbuf *sb, const unsigned char *s, size_t n)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	strbuf_addch(sb, '"');
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = s[i] << 16 | (i + 1 < n ? s[i + 1] << 8 : 0) | (i + 2 < n ? s[i + 2] : 0);
		char o[4] = { tab[v >> 18 & 63], tab[v >> 12 & 63],
			      i + 1 < n ? tab[v >> 6 & 63] : '=', i + 2 < n ? tab[v & 63] : '=' };
		strbuf_add(sb, o, 4);
	}
	strbuf_addch(sb, '"');
}

void ftk_tool_reject(struct ftk_tool *t, const struct ftk_line *line, const char *reason,
		     cJSON *extra)
{
	t->n_rejected++;
	count_in(&t->reasons, &t->n_reasons, &t->alloc_reasons, reason, 1);
	if (!t->rejects) {
		cJSON_Delete(extra);
		return;
	}
	struct strbuf *sb = &t->scratch;
	strbuf_reset(sb);
	strbuf_addstr(sb, "{\"file\":");
	strbuf_add_json_str(sb, line->file, strlen(line->file));
	strbuf_addf(sb, ",\"line\":%ld,\"tool\":", line->lineno);
	strbuf_add_json_str(sb, t->name, strlen(t->name));
	strbuf_addstr(sb, ",\"reason\":");
	strbuf_add_json_str(sb, reason, strlen(reason));
	int own_origin = extra && cJSON_GetObjectItemCaseSensitive(extra, "origin");
	if (extra) {
		for (cJSON *m = extra->child; m; m = m->next) {
			strbuf_addch(sb, ',');
			strbuf_add_json_str(sb, m->string, strlen(m->string));
			strbuf_addch(sb, ':');
			char *s = cJSON_PrintUnformatted(m);
			strbuf_addstr(sb, s);
			cJSON_free(s);
		}
		cJSON_Delete(extra);
	}
	/* the record itself, whole: as JSON when it is an object or any valid JSON */
	int valid = 0;
	if (line->utf8_error < 0 && strcmp(reason, "invalid-json") != 0 && !line->truncated) {
		cJSON *v = NULL;
		if (ftk_json_parse(line->data, line->len, &v, NULL) == 0) {
			valid = 1;
			/* where it came from, when an earlier stage wrote it down */
			if (cJSON_IsObject(v) && !own_origin) {
				size_t at = sb->len;
				strbuf_addstr(sb, ",\"origin\":");
				if (!ftk_record_origin(v, sb))
					strbuf_setlen(sb, at);
			}
			cJSON_Delete(v);
		}
	}
	if (valid) {
		strbuf_addstr(sb, ",\"record\":");
		strbuf_add(sb, line->data, line->len);
	} else {
		strbuf_addstr(sb, ",\"raw\":");
		if (strbuf_add_json_str(sb, line->data, line->len)) {
			strbuf_addstr(sb, ",\"raw_base64\":");
			add_base64(sb, (const unsigned char *)line->data, line->len);
		}
	}
	strbuf_addch(sb, '}');
	if (ftk_writer_line(t->rejects, sb->buf, sb->len) < 0)
		t->failed = 1;
}

void ftk_tool_error_at(struct ftk_tool *t, const struct ftk_error *e)
{
	(void)t;
	error_at(e);
}

static int cmp_count(const void *a, const void *b)
{
	const struct ftk_count *x = a, *y = b;
	if (x->n != y->n)
		return x->n < y->n ? 1 : -1;
	return strcmp(x->key, y->key);
}

static long peak_rss_kb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

int ftk_tool_finish(struct ftk_tool *t)
{
	struct ftk_error err;
	double el = mono_now() - t->t_start;
	uint64_t bytes = t->bytes_done + (t->reader ? ftk_reader_bytes_in(t->reader) : 0);
	progress(t, 1);

	if (ftk_writer_close(t->out, &err) < 0) {
		error("%s", err.msg);
		t->failed = 1;
	}
	t->out = NULL;
	if (t->rejects && ftk_writer_close(t->rejects, &err) < 0) {
		error("%s", err.msg);
		t->failed = 1;
	}
	t->rejects = NULL;

	if (t->n_reasons)
		qsort(t->reasons, t->n_reasons, sizeof(*t->reasons), cmp_count);
	if (!t->quiet) {
		struct strbuf *sb = &t->scratch;
		strbuf_reset(sb);
		strbuf_addf(sb, "%s: %llu in, %llu out, %llu rejected", t->name,
			    (unsigned long long)t->n_in, (unsigned long long)t->n_out,
			    (unsigned long long)t->n_rejected);
		for (size_t i = 0; i < t->n_reasons; i++)
			strbuf_addf(sb, "%s%s %llu", i ? ", " : " (", t->reasons[i].key,
				    (unsigned long long)t->reasons[i].n);
		if (t->n_reasons)
			strbuf_addch(sb, ')');
		for (size_t i = 0; i < t->n_counts; i++)
			strbuf_addf(sb, "; %s %llu", t->counts[i].key,
				    (unsigned long long)t->counts[i].n);
		fprintf(stderr, "%s\n", sb->buf);
	}
	if (t->hint[0])
		fprintf(stderr, "%s: hint: %s\n", t->name, t->hint);
	/* records were read and none passed: whatever the tool, that is not success */
	if (t->n_in && t->n_rejected >= t->n_in)
		t->failed = 1;

	cJSON *st = cJSON_CreateObject();
	cJSON_AddStringToObject(st, "tool", t->name);
	cJSON_AddNumberToObject(st, "in", (double)t->n_in);
	cJSON_AddNumberToObject(st, "out", (double)t->n_out);
	cJSON_AddNumberToObject(st, "rejected", (double)t->n_rejected);
	cJSON *r = cJSON_AddObjectToObject(st, "reasons");
	for (size_t i = 0; i < t->n_reasons; i++)
		cJSON_AddNumberToObject(r, t->reasons[i].key, (double)t->reasons[i].n);
	cJSON *c = cJSON_AddObjectToObject(st, "counts");
	for (size_t i = 0; i < t->n_counts; i++)
		cJSON_AddNumberToObject(c, t->counts[i].key, (double)t->counts[i].n);
	cJSON_AddNumberToObject(st, "bytes_in", (double)bytes);
	cJSON_AddNumberToObject(st, "seconds", el);
	cJSON_AddNumberToObject(st, "peak_rss_kb", (double)peak_rss_kb());
	if (t->extra_stats) {
		for (cJSON *m = t->extra_stats->child; m; m = m->next)
			cJSON_AddItemToObject(st, m->string, cJSON_Duplicate(m, 1));
	}
	if (t->stats_path) {
		struct ftk_writer *w;
		char *s = cJSON_Print(st);
		if (ftk_writer_open(&w, t->stats_path, 0, &err) < 0 ||
		    ftk_writer_line(w, s, strlen(s)) < 0 || ftk_writer_close(w, &err) < 0) {
			error("%s", err.msg);
			t->failed = 1;
		}
		cJSON_free(s);
	}
	const char *lp = ftk_ledger_path(t->ledger_path);
	if (lp) {
		cJSON *e = ftk_ledger_entry_new(t->run, t->stage, "compute");
		cJSON_AddStringToObject(e, "tool", t->name);
		cJSON_AddNumberToObject(e, "hours", el / 3600.0);
		/* no "usd": ftk-ledger prices it by the rates row in force on its date */
		cJSON_AddStringToObject(e, "device", "cpu");
		cJSON_AddNumberToObject(e, "records_in", (double)t->n_in);
		cJSON_AddNumberToObject(e, "records_out", (double)t->n_out);
		cJSON_AddNumberToObject(e, "records_rejected", (double)t->n_rejected);
		cJSON_AddNumberToObject(e, "bytes_in", (double)bytes);
		if (ftk_ledger_append_entry(lp, e, &err) < 0) {
			error("%s", err.msg);
			t->failed = 1;
		}
		cJSON_Delete(e);
	}
	cJSON_Delete(st);
	int rc = t->failed || (t->fail_on_reject && t->n_rejected) ? FTK_EXIT_DATA : FTK_EXIT_OK;
	ftk_tool_release(t);
	return rc;
}

void ftk_tool_release(struct ftk_tool *t)
{
	ftk_reader_close(t->reader);
	t->reader = NULL;
	ftk_writer_abort(t->out);
	t->out = NULL;
	ftk_writer_abort(t->rejects);
	t->rejects = NULL;
	for (size_t i = 0; i < t->n_reasons; i++)
		free(t->reasons[i].key);
	for (size_t i = 0; i < t->n_counts; i++)
		free(t->counts[i].key);
	free(t->reasons);
	free(t->counts);
	t->reasons = t->counts = NULL;
	t->n_reasons = t->n_counts = 0;
	cJSON_Delete(t->extra_stats);
	t->extra_stats = NULL;
	strbuf_release(&t->scratch);
}
