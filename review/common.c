/*
 * common.c: loading a run with its reviews, choosing the cases a person
 * should read, wrapping text to terminal columns, and counting active time.
 *
 * ftk-review and ftk-report both start from ftk_review_run_load(): the
 * results (eval's reader: the last line of each case wins, a torn line is
 * skipped), run.json, summary.json (computed from the results when the run
 * has none, as a killed run does not), and the reviews folded in, so that
 * every later step sees each result's "human" and "verdict".  Widths come
 * from utf8proc's character widths, so that a wrapped line of CJK text or
 * accents fits the columns ncurses will give it.
 */
#include "review/review.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>
#include "eval/reviews.h"
#include "eval/run.h"
#include "lib/record.h"
#include "lib/strbuf.h"

static cJSON *read_json_file(const char *path)
{
	struct strbuf sb = STRBUF_INIT;
	if (strbuf_read_file(&sb, path) < 0) {
		strbuf_release(&sb);
		return NULL;
	}
	cJSON *j = cJSON_ParseWithLength(sb.buf, sb.len);
	strbuf_release(&sb);
	return j;
}

int ftk_review_run_load(struct ftk_review_run *r, const char *dir, const char *reviews_path,
			struct ftk_error *err)
{
	memset(r, 0, sizeof(*r));
	r->dir = xstrdup(dir);
	size_t len = strlen(dir);
	while (len > 1 && dir[len - 1] == '/')
		len--;
	const char *b = dir + len;
	while (b > dir && b[-1] != '/')
		b--;
	r->name = xstrndup(b, (size_t)(dir + len - b));
	int rc = ftk_eval_results_load(dir, &r->results, &r->bad_results, err);
	if (rc < 0)
		return rc;
	struct strbuf p = STRBUF_INIT;
	strbuf_addf(&p, "%s/run.json", dir);
	r->runinfo = read_json_file(p.buf);
	const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r->runinfo, "suite"));
	r->suite = s ? xstrdup(s) : NULL;
	strbuf_reset(&p);
	strbuf_addf(&p, "%s/summary.json", dir);
	r->summary = read_json_file(p.buf);
	if (!cJSON_IsObject(r->summary)) {
		cJSON_Delete(r->summary);
		r->summary = ftk_eval_summarize(r->results);
	}
	int given = reviews_path != NULL;
	if (!given) {
		strbuf_reset(&p);
		strbuf_addf(&p, "%s/reviews.jsonl", dir);
		reviews_path = p.buf;
	}
	r->reviews_path = xstrdup(reviews_path);
	strbuf_release(&p);
	struct ftk_error e2;
	ftk_error_clear(&e2);
	rc = ftk_reviews_load(r->reviews_path, &r->reviews, &r->bad_reviews, &e2);
	if (rc == FTK_ENOTFOUND && !given) {
		r->reviews = cJSON_CreateArray();
	} else if (rc == FTK_ENOTFOUND) {
		/* a named file that does not exist yet: ftk-review will create it */
		r->reviews = cJSON_CreateArray();
	} else if (rc < 0) {
		if (err)
			*err = e2;
		return rc;
	} else if (r->bad_reviews && err) {
		*err = e2;	/* the first bad line's place, for a warning */
	}
	ftk_reviews_fold(r->results, r->reviews);
	return 0;
}

void ftk_review_run_release(struct ftk_review_run *r)
{
	if (!r)
		return;
	free(r->dir);
	free(r->name);
	free(r->suite);
	free(r->reviews_path);
	cJSON_Delete(r->runinfo);
	cJSON_Delete(r->results);
	cJSON_Delete(r->summary);
	cJSON_Delete(r->reviews);
	memset(r, 0, sizeof(*r));
}

int ftk_review_is_flagged(const cJSON *result)
{
	return cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(result, "flags")) > 0;
}

static int contains(const char *hay, const char *needle)
{
	return hay && strcasestr(hay, needle) != NULL;
}

int ftk_review_matches(const cJSON *result, const char *filter)
{
	if (!filter || !*filter)
		return 1;
	if (contains(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(result, "id")), filter))
		return 1;
	const cJSON *f;
	cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(result, "flags"))
		if (contains(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f, "kind")), filter))
			return 1;
	const cJSON *j;
	cJSON_ArrayForEach(j, cJSON_GetObjectItemCaseSensitive(result, "judges"))
	{
		if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(j, "pass")) && contains(j->string, filter))
			return 1;
		cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(j, "failures"))
			if (contains(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f, "kind")), filter))
				return 1;
	}
	return 0;
}

double ftk_review_active_seconds(const double *t, size_t n, double idle_s)
{
	double s = 0;
	for (size_t i = 1; i < n; i++) {
		double g = t[i] - t[i - 1];
		if (g > 0 && g <= idle_s)
			s += g;
	}
	return s;
}

char *ftk_review_prompt_text(const cJSON *case_rec)
{
	struct strbuf sb = STRBUF_INIT;
	const cJSON *m;
	cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(case_rec, "messages"))
	{
		const char *role = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "role"));
		if (sb.len)
			strbuf_addstr(&sb, "\n\n");
		strbuf_addf(&sb, "%s: ", role ? role : "?");
		ftk_content_text(cJSON_GetObjectItemCaseSensitive(m, "content"), &sb);
	}
	return strbuf_detach(&sb, NULL);
}

/* Decode one code point at s (n bytes left); *cw its columns.  Returns its length. */
static size_t next_cp(const char *s, size_t n, int *cw)
{
	utf8proc_int32_t cp;
	utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &cp);
	if (k < 1) {
		*cw = 1;
		return 1;
	}
	if (cp == '\t')
		*cw = 1;
	else {
		int w = utf8proc_charwidth(cp);
		*cw = w < 0 ? 0 : w;
	}
	return (size_t)k;
}

int ftk_review_width(const char *text)
{
	int w = 0, cw;
	size_t n = strlen(text);
	for (size_t i = 0; i < n;) {
		i += next_cp(text + i, n - i, &cw);
		w += cw;
	}
	return w;
}

/* Append s[0..n) to sb with invalid UTF-8 as U+FFFD and control characters as spaces. */
static void add_clean(struct strbuf *sb, const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		utf8proc_int32_t cp;
		utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
		if (k < 1) {
			strbuf_addstr(sb, "\xEF\xBF\xBD");
			i++;
			continue;
		}
		if (cp < 0x20 || cp == 0x7f)
			strbuf_addch(sb, ' ');
		else
			strbuf_add(sb, s + i, (size_t)k);
		i += (size_t)k;
	}
}

size_t ftk_review_wrap(const char *text, int width, char ***lines)
{
	if (width < 1)
		width = 1;
	char **out = NULL;
	size_t n = 0, alloc = 0;
	const char *p = text ? text : "";
	for (;;) {
		const char *nl = strchr(p, '\n');
		size_t plen = nl ? (size_t)(nl - p) : strlen(p);
		/* one paragraph: greedy fill */
		size_t i = 0;
		do {
			size_t start = i, last_space = (size_t)-1, j = i;
			int w = 0, cw;
			while (j < plen) {
				size_t k = next_cp(p + j, plen - j, &cw);
				if (w + cw > width)
					break;
				if (p[j] == ' ')
					last_space = j;
				w += cw;
				j += k;
			}
			size_t end = j, resume = j;
			if (j < plen && last_space != (size_t)-1 && last_space > start) {
				end = last_space;
				resume = last_space + 1;
			} else if (j == start && j < plen) {
				/* a character wider than the line: take it anyway */
				end = resume = j + next_cp(p + j, plen - j, &cw);
			}
			struct strbuf sb = STRBUF_INIT;
			add_clean(&sb, p + start, end - start);
			FTK_ALLOC_GROW(out, n + 1, alloc);
			out[n++] = strbuf_detach(&sb, NULL);
			i = resume;
		} while (i < plen);
		if (!nl)
			break;
		p = nl + 1;
	}
	*lines = out;
	return n;
}
