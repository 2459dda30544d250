/*
 * read.c: reading the ledger back (see cost.h).
 *
 * The writer (lib/ledger.c) guarantees that whole entries never interleave,
 * but it cannot guarantee that every line is whole: a process killed in the
 * middle of write(2), a full disk or a power cut can leave the last line cut
 * short, and people edit the file by hand.  The reader therefore trusts
 * nothing: each line is parsed on its own and checked field by field, and a
 * line that fails is listed with its number and reason instead of being
 * counted.  Because the writer starts a new entry on a fresh line after a torn
 * one, a damaged line can only ever cost its own entry, never its neighbour's.
 *
 * Checks are deliberately those that would make a total wrong: a known stage
 * and kind, a parseable "ts", numbers where numbers belong and none negative.
 * Fields nobody here knows are kept untouched in the entry's tree.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>
#include "ledger/cost.h"
#include "lib/json.h"
#include "lib/stream.h"

const char *const ftk_cost_stages[FTK_COST_N_STAGES] = { "prep", "train", "eval", "review", "serve" };
const char *const ftk_cost_kinds[FTK_COST_N_KINDS] = { "human", "compute", "api" };

int ftk_cost_stage_index(const char *s)
{
	for (int i = 0; s && i < FTK_COST_N_STAGES; i++)
		if (!strcmp(s, ftk_cost_stages[i]))
			return i;
	return -1;
}

int ftk_cost_kind_index(const char *s)
{
	for (int i = 0; s && i < FTK_COST_N_KINDS; i++)
		if (!strcmp(s, ftk_cost_kinds[i]))
			return i;
	return -1;
}

/* Read exactly n digits. */
static int digits(const char **p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		char c = (*p)[i];
		if (c < '0' || c > '9')
			return -1;
		v = v * 10 + (c - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

int ftk_cost_time_parse(const char *s, double *out)
{
	int Y, M, D, h = 0, m = 0, sec = 0;
	double frac = 0;
	const char *p = s;
	if (!s || digits(&p, 4, &Y) || *p++ != '-' || digits(&p, 2, &M) || *p++ != '-' ||
	    digits(&p, 2, &D))
		return FTK_EDATA;
	if (M < 1 || M > 12 || D < 1 || D > 31)
		return FTK_EDATA;
	int off = 0;
	if (*p == 'T' || *p == 't' || *p == ' ') {
		p++;
		if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &m))
			return FTK_EDATA;
		if (*p == ':') {
			p++;
			if (digits(&p, 2, &sec))
				return FTK_EDATA;
			if (*p == '.') {
				double scale = 0.1;
				p++;
				if (*p < '0' || *p > '9')
					return FTK_EDATA;
				while (*p >= '0' && *p <= '9') {
					frac += (*p - '0') * scale;
					scale /= 10;
					p++;
				}
			}
		}
		if (h > 23 || m > 59 || sec > 60)
			return FTK_EDATA;
		if (*p == 'Z' || *p == 'z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			int sign = *p == '-' ? -1 : 1, oh, om;
			p++;
			if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om) || oh > 23 || om > 59)
				return FTK_EDATA;
			off = sign * (oh * 3600 + om * 60);
		}
	}
	if (*p)
		return FTK_EDATA;
	struct tm tm = { 0 };
	tm.tm_year = Y - 1900;
	tm.tm_mon = M - 1;
	tm.tm_mday = D;
	tm.tm_hour = h;
	tm.tm_min = m;
	tm.tm_sec = sec;
	time_t t = timegm(&tm);
	/* timegm normalizes 2026-02-31 into March: refuse instead */
	struct tm back;
	gmtime_r(&t, &back);
	if (back.tm_mday != D || back.tm_mon != M - 1)
		return FTK_EDATA;
	*out = (double)t + frac - off;
	return 0;
}

void ftk_cost_date_format(double t, char *buf, size_t n)
{
	time_t s = (time_t)floor(t);
	struct tm tm;
	gmtime_r(&s, &tm);
	strftime(buf, n, "%Y-%m-%d", &tm);
}

static int bad_field(struct ftk_error *err, const char *field, const char *fmt, const char *what)
{
	ftk_error_set(err, FTK_EDATA, NULL, 0, field, fmt, what);
	return FTK_EDATA;
}

/* A non-negative number field: *out stays dflt when absent. */
static int num_field(const cJSON *o, const char *key, double dflt, double *out,
		     struct ftk_error *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	*out = dflt;
	if (!v)
		return 0;
	if (!cJSON_IsNumber(v))
		return bad_field(err, key, "expected a number, found %s", ftk_json_type_name(v));
	if (!isfinite(v->valuedouble) || v->valuedouble < 0)
		return bad_field(err, key, "expected a number >= 0, found %s", "a negative number");
	*out = v->valuedouble;
	return 0;
}

static int str_field(const cJSON *o, const char *key, const char **out, struct ftk_error *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	*out = NULL;
	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsString(v))
		return bad_field(err, key, "expected a string, found %s", ftk_json_type_name(v));
	*out = v->valuestring;
	return 0;
}

int ftk_cost_entry_parse(const char *s, size_t len, struct ftk_cost_entry *out,
			   struct ftk_error *err)
{
	cJSON *o;
	memset(out, 0, sizeof(*out));
	int rc = ftk_json_parse_object(s, len, &o, err);
	if (rc < 0)
		return rc;
	const char *ts, *stage, *kind;
	if ((rc = str_field(o, "ts", &ts, err)) < 0 || (rc = str_field(o, "stage", &stage, err)) < 0 ||
	    (rc = str_field(o, "kind", &kind, err)) < 0 || (rc = str_field(o, "run", &out->run, err)) < 0 ||
	    (rc = str_field(o, "who", &out->who, err)) < 0 ||
	    (rc = str_field(o, "device", &out->device, err)) < 0 ||
	    (rc = str_field(o, "tool", &out->tool, err)) < 0 ||
	    (rc = str_field(o, "note", &out->note, err)) < 0)
		goto fail;
	rc = FTK_EDATA;
	if (!ts) {
		ftk_error_set(err, FTK_EDATA, NULL, 0, "ts", "missing");
		goto fail;
	}
	if (ftk_cost_time_parse(ts, &out->ts) < 0) {
		ftk_error_set(err, FTK_EDATA, NULL, 0, "ts", "not a date and time: '%s'", ts);
		goto fail;
	}
	if (!stage || (out->stage = ftk_cost_stage_index(stage)) < 0) {
		ftk_error_set(err, FTK_EDATA, NULL, 0, "stage",
			      stage ? "unknown stage '%s' (prep, train, eval, review, serve)"
				    : "missing%s", stage ? stage : "");
		goto fail;
	}
	if (!kind || (out->kind = ftk_cost_kind_index(kind)) < 0) {
		ftk_error_set(err, FTK_EDATA, NULL, 0, "kind",
			      kind ? "unknown kind '%s' (human, compute, api)" : "missing%s",
			      kind ? kind : "");
		goto fail;
	}
	double usd;
	if ((rc = num_field(o, "hours", 0, &out->hours, err)) < 0 ||
	    (rc = num_field(o, "usd", NAN, &usd, err)) < 0 ||
	    (rc = num_field(o, "gpus", 1, &out->gpus, err)) < 0 ||
	    (rc = num_field(o, "tokens", 0, &out->tokens, err)) < 0 ||
	    (rc = num_field(o, "tokens_in", 0, &out->tokens_in, err)) < 0 ||
	    (rc = num_field(o, "tokens_out", 0, &out->tokens_out, err)) < 0)
		goto fail;
	out->usd = usd;
	if (!out->run)
		out->run = "";
	out->json = o;
	return 0;
fail:
	cJSON_Delete(o);
	memset(out, 0, sizeof(*out));
	return rc;
}

static void add_problem(struct ftk_cost_ledger *L, long line, const char *msg)
{
	FTK_ALLOC_GROW(L->bad, L->n_bad + 1, L->alloc_bad);
	struct ftk_cost_problem *p = &L->bad[L->n_bad++];
	p->line = line;
	snprintf(p->msg, sizeof(p->msg), "%s", msg);
}

/* 1 when the file is non-empty and its last byte is not a newline. */
static int ends_unterminated(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char c = '\n';
	if (fd < 0)
		return 0;
	if (fstat(fd, &st) == 0 && st.st_size > 0 && pread(fd, &c, 1, st.st_size - 1) != 1)
		c = '\n';
	close(fd);
	return c != '\n';
}

int ftk_cost_ledger_load(const char *path, struct ftk_cost_ledger *L, struct ftk_error *err)
{
	struct ftk_reader *r;
	struct ftk_line line;
	struct stat st;
	if (stat(path, &st) < 0)
		return ftk_error_msg(err, FTK_ENOTFOUND, "no ledger at '%s'", path);
	int rc = ftk_reader_open(&r, path, err);
	if (rc < 0)
		return rc;
	L->unterminated = ends_unterminated(path);
	long last = 0;
	while ((rc = ftk_reader_next(r, &line, err)) > 0) {
		struct ftk_cost_entry e;
		struct ftk_error pe;
		char msg[1100];
		last = line.lineno;
		if (strspn(line.data, " \t\r") == line.len)
			continue;
		ftk_error_clear(&pe);
		if (line.utf8_error >= 0) {
			snprintf(msg, sizeof(msg), "invalid UTF-8 at byte %ld", line.utf8_error + 1);
			add_problem(L, line.lineno, msg);
			continue;
		}
		if (ftk_cost_entry_parse(line.data, line.len, &e, &pe) < 0) {
			if (pe.field[0])
				snprintf(msg, sizeof(msg), "%s: %s", pe.field, pe.msg);
			else
				snprintf(msg, sizeof(msg), "%s", pe.msg);
			add_problem(L, line.lineno, msg);
			continue;
		}
		e.line = line.lineno;
		FTK_ALLOC_GROW(L->e, L->n + 1, L->alloc);
		L->e[L->n++] = e;
	}
	ftk_reader_close(r);
	if (rc < 0) {
		ftk_error_place(err, path, last + 1);
		return rc;
	}
	/* say why the last line is bad when it was cut short */
	if (L->unterminated && L->n_bad && L->bad[L->n_bad - 1].line == last) {
		struct ftk_cost_problem *p = &L->bad[L->n_bad - 1];
		size_t k = strlen(p->msg);
		snprintf(p->msg + k, sizeof(p->msg) - k, " (the last line has no newline: a write was cut short)");
	}
	return (int)L->n_bad;
}

void ftk_cost_ledger_release(struct ftk_cost_ledger *L)
{
	if (!L)
		return;
	for (size_t i = 0; i < L->n; i++)
		cJSON_Delete(L->e[i].json);
	free(L->e);
	free(L->bad);
	memset(L, 0, sizeof(*L));
}
