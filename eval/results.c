/*
 * results.c: reading, appending and rewriting a run's results.jsonl (run.h).
 *
 * A results file is appended with one write(2) per line, so a killed run
 * leaves at worst one torn last line; a reader skips it and the next
 * appender starts on a fresh line.  When several lines hold the same
 * (id, sample), the last one wins.  At the end of a pass the file is
 * rewritten in suite order and summary.json is written beside it.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "lib/json.h"
#include "lib/stream.h"
#include "lib/strbuf.h"
#include "run_int.h"

char *results_path(const char *run)
{
	struct stat st;
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, run);
	if (stat(run, &st) == 0 && S_ISDIR(st.st_mode))
		strbuf_addstr(&sb, "/results.jsonl");
	return strbuf_detach(&sb, NULL);
}

int ftk_eval_results_load(const char *run, cJSON **out, long *n_bad, struct ftk_error *err)
{
	*out = NULL;
	if (n_bad)
		*n_bad = 0;
	char *path = results_path(run);
	struct ftk_reader *r;
	int rc = ftk_reader_open(&r, path, err);
	if (rc < 0) {
		if (access(path, F_OK) != 0 && err)
			err->code = rc = FTK_ENOTFOUND;
		free(path);
		return rc;
	}
	cJSON **lines = NULL;
	size_t n = 0, alloc = 0;
	struct smap last = { 0 }, implicit = { 0 };
	struct ftk_line line;
	while ((rc = ftk_reader_next(r, &line, err)) == 1) {
		if (line.len == 0)
			continue;
		cJSON *o = cJSON_ParseWithLength(line.data, line.len);
		/* an integer id is its decimal text, as in a suite */
		const cJSON *nid = cJSON_GetObjectItemCaseSensitive(o, "id");
		if (cJSON_IsNumber(nid) && nid->valuedouble == floor(nid->valuedouble) &&
		    fabs(nid->valuedouble) < 1e15) {
			char txt[32];
			snprintf(txt, sizeof(txt), "%.0f", nid->valuedouble);
			cJSON_ReplaceItemInObjectCaseSensitive(o, "id", cJSON_CreateString(txt));
		}
		const char *id = o ? ftk_json_get_str(o, "id") : NULL;
		if (id && !cJSON_GetObjectItemCaseSensitive(o, "sample")) {
			/* several outputs of one case without "sample": in file order */
			char key[1024];
			snprintf(key, sizeof(key), "%s", id);
			long next = smap_get(&implicit, key, 0);
			smap_put(&implicit, key, next + 1);
			cJSON_AddNumberToObject(o, "sample", (double)next);
		}
		if (!id) {
			cJSON_Delete(o);
			if (n_bad)
				(*n_bad)++;
			continue;
		}
		char key[1024];
		unit_key(key, sizeof(key), id, json_long(o, "sample", 0));
		FTK_ALLOC_GROW(lines, n + 1, alloc);
		lines[n] = o;
		smap_put(&last, key, (long)n);
		n++;
	}
	ftk_reader_close(r);
	free(path);
	smap_free(&implicit);
	if (rc < 0) {
		for (size_t i = 0; i < n; i++)
			cJSON_Delete(lines[i]);
		free(lines);
		smap_free(&last);
		return rc;
	}
	cJSON *arr = cJSON_CreateArray();
	for (size_t i = 0; i < n; i++) {
		char key[1024];
		unit_key(key, sizeof(key), ftk_json_get_str(lines[i], "id"),
			 json_long(lines[i], "sample", 0));
		if (smap_get(&last, key, -1) == (long)i)
			cJSON_AddItemToArray(arr, lines[i]);
		else
			cJSON_Delete(lines[i]);
	}
	free(lines);
	smap_free(&last);
	*out = arr;
	return 0;
}

int append_line(struct appender *a, const char *s, struct ftk_error *err)
{
	size_t len = strlen(s);
	char *buf = xmalloc(len + 2);
	size_t n = 0;
	if (!a->checked) {
		/* a torn last line from a killed run stays on its own line */
		struct stat st;
		char last = '\n';
		if (fstat(a->fd, &st) == 0 && st.st_size > 0 &&
		    pread(a->fd, &last, 1, st.st_size - 1) == 1 && last != '\n')
			buf[n++] = '\n';
		a->checked = 1;
	}
	memcpy(buf + n, s, len);
	n += len;
	buf[n++] = '\n';
	ssize_t k;
	do
		k = write(a->fd, buf, n);
	while (k < 0 && errno == EINTR);
	free(buf);
	if (k != (ssize_t)n)
		return ftk_error_set(err, FTK_EIO, a->path, 0, NULL, "cannot append to '%s': %s",
				     a->path, k < 0 ? strerror(errno) : "short write");
	return 0;
}

int results_compact(struct ctx *c, struct ftk_error *err)
{
	char *path = results_path(c->o->run_dir);
	cJSON *all;
	int rc = ftk_eval_results_load(path, &all, NULL, err);
	if (rc < 0) {
		free(path);
		return rc;
	}
	long n = cJSON_GetArraySize(all);
	cJSON **items = xcalloc((size_t)n + 1, sizeof(*items));
	long *order = xmalloc(((size_t)n + 1) * sizeof(*order));
	long i = 0;
	cJSON *o;
	cJSON_ArrayForEach(o, all)
	{
		items[i] = o;
		long k = ftk_eval_suite_find(c->suite, ftk_json_get_str(o, "id"));
		long s = json_long(o, "sample", 0);
		order[i] = k >= 0 && s >= 0 && s < c->K ? k * c->K + s : c->n_units + i;
		i++;
	}
	/* a counting placement: unit numbers are unique, others keep file order */
	long *slot = xmalloc(((size_t)c->n_units + (size_t)n + 1) * sizeof(*slot));
	for (long u = 0; u < c->n_units + n; u++)
		slot[u] = -1;
	for (long j = 0; j < n; j++)
		slot[order[j]] = j;
	struct ftk_writer *w;
	rc = ftk_writer_open(&w, path, 0, err);
	for (long u = 0; rc == 0 && u < c->n_units + n; u++) {
		if (slot[u] < 0)
			continue;
		char *s = cJSON_PrintUnformatted(items[slot[u]]);
		rc = ftk_writer_line(w, s, strlen(s));
		cJSON_free(s);
	}
	if (rc == 0)
		rc = ftk_writer_close(w, err);
	else
		ftk_writer_abort(w);
	free(slot);
	free(order);
	free(items);
	cJSON_Delete(all);
	free(path);
	return rc;
}

int summary_write(const char *dir, struct ftk_error *err)
{
	cJSON *all;
	int rc = ftk_eval_results_load(dir, &all, NULL, err);
	if (rc < 0)
		return rc;
	cJSON *sum = ftk_eval_summarize(all);
	cJSON_Delete(all);
	char *s = cJSON_Print(sum);
	cJSON_Delete(sum);
	struct strbuf p = STRBUF_INIT;
	strbuf_addf(&p, "%s/summary.json", dir);
	struct ftk_writer *w;
	rc = ftk_writer_open(&w, p.buf, 0, err);
	if (rc == 0) {
		rc = ftk_writer_line(w, s, strlen(s));
		if (rc == 0)
			rc = ftk_writer_close(w, err);
		else
			ftk_writer_abort(w);
	}
	cJSON_free(s);
	strbuf_release(&p);
	return rc;
}

int eval_mkdir_p(const char *path, struct ftk_error *err)
{
	char *p = xstrdup(path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, 0755) < 0 && errno != EEXIST) {
			int e = errno;
			free(p);
			return ftk_error_msg(err, FTK_EIO, "cannot create '%s': %s", path, strerror(e));
		}
		*s = '/';
	}
	int rc = 0;
	if (mkdir(p, 0755) < 0 && errno != EEXIST)
		rc = ftk_error_msg(err, FTK_EIO, "cannot create '%s': %s", path, strerror(errno));
	free(p);
	return rc;
}
