/*
 * shard_join.c: one shard directory from several (shard.h, ftk_shard_join).
 *
 * On a cluster every task of an array job tokenizes its own part of the data
 * into its own shard directory; the trainer reads one directory.  Joining
 * needs no tokenizer and no decompression: the parts' shard files are
 * hard-linked (copied when the parts are on another file system) into the
 * output under new consecutive names, and one manifest lists them in the
 * order the parts were given, so the sequences are numbered exactly as if
 * one ftk-tokenize had read the parts' inputs one after the other.  That is
 * what makes a sharded pipeline train on the same data, in the same order,
 * as the one-machine pipeline.
 *
 * The parts must agree on everything the trainer checks (format, kind,
 * vocabulary size, tokenizer hash, template).  A part without sequences
 * (its task's records were all dropped) contributes nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "json.h"
#include "shard.h"
#include "stream.h"
#include "strbuf.h"

static int copy_file(const char *from, const char *to, struct ftk_error *err)
{
	int in = open(from, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return ftk_error_set(err, FTK_EIO, from, 0, NULL, "cannot open: %s", strerror(errno));
	int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0) {
		int e = errno;
		close(in);
		return ftk_error_set(err, FTK_EIO, to, 0, NULL, "cannot create: %s", strerror(e));
	}
	char buf[1 << 16];
	ssize_t n;
	int rc = 0;
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n) {
			rc = ftk_error_set(err, FTK_EIO, to, 0, NULL, "cannot write: %s", strerror(errno));
			break;
		}
	if (n < 0 && rc == 0)
		rc = ftk_error_set(err, FTK_EIO, from, 0, NULL, "cannot read: %s", strerror(errno));
	if (close(out) < 0 && rc == 0)
		rc = ftk_error_set(err, FTK_EIO, to, 0, NULL, "cannot write: %s", strerror(errno));
	close(in);
	return rc;
}

/* The manifest members every part must share. */
static const char *const same_keys[] = { "format", "version", "kind", "vocab_size",
					 "tokenizer_hash", "template" };

int ftk_shard_join(const char *out_dir, const char *const *dirs, int n, struct ftk_error *err)
{
	cJSON **m = xcalloc((size_t)n + 1, sizeof(*m));
	cJSON *out = NULL, *list = NULL;
	struct strbuf from = STRBUF_INIT, to = STRBUF_INIT;
	double seqs = 0, toks = 0, masked = 0;
	size_t next = 0;
	int rc = 0;
	if (n < 1) {
		rc = ftk_error_msg(err, FTK_EUSAGE, "no shard directories to join");
		goto out;
	}
	for (int i = 0; i < n && rc == 0; i++) {
		rc = ftk_shard_read_manifest(dirs[i], &m[i], err);
		for (size_t k = 0; rc == 0 && i > 0 && k < sizeof(same_keys) / sizeof(*same_keys); k++) {
			const cJSON *a = cJSON_GetObjectItemCaseSensitive(m[0], same_keys[k]);
			const cJSON *b = cJSON_GetObjectItemCaseSensitive(m[i], same_keys[k]);
			if (!a != !b || (a && !cJSON_Compare(a, b, 1)))
				rc = ftk_error_set(err, FTK_EMISMATCH, dirs[i], 0, same_keys[k],
						   "differs from '%s': shards of another tokenizer or kind",
						   dirs[0]);
		}
		if (rc == 0 && !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(m[i], "shards")))
			rc = ftk_error_set(err, FTK_EDATA, dirs[i], 0, "shards",
					   "missing or wrong type in manifest");
	}
	if (rc < 0)
		goto out;
	if (mkdir(out_dir, 0755) < 0 && errno != EEXIST) {
		rc = ftk_error_set(err, FTK_EIO, out_dir, 0, NULL, "cannot create '%s': %s", out_dir,
				   strerror(errno));
		goto out;
	}
	strbuf_addf(&to, "%s/manifest.json", out_dir);
	if (access(to.buf, F_OK) == 0) {
		rc = ftk_error_set(err, FTK_EUSAGE, out_dir, 0, NULL,
				   "already holds a shard set (manifest.json): join into a new directory");
		goto out;
	}
	out = cJSON_CreateObject();
	for (size_t k = 0; k < sizeof(same_keys) / sizeof(*same_keys); k++) {
		const cJSON *a = cJSON_GetObjectItemCaseSensitive(m[0], same_keys[k]);
		if (a)
			cJSON_AddItemToObject(out, same_keys[k], cJSON_Duplicate(a, 1));
	}
	list = cJSON_CreateArray();
	for (int i = 0; i < n && rc == 0; i++) {
		const cJSON *s;
		cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(m[i], "shards"))
		{
			const char *f = ftk_json_get_str(s, "file");
			const cJSON *ns = cJSON_GetObjectItemCaseSensitive(s, "sequences");
			const cJSON *nt = cJSON_GetObjectItemCaseSensitive(s, "tokens");
			if (!f || strchr(f, '/') || !cJSON_IsNumber(ns) || !cJSON_IsNumber(nt)) {
				rc = ftk_error_set(err, FTK_EDATA, dirs[i], 0, "shards[]",
						   "a shard without file, sequences or tokens");
				break;
			}
			if (ns->valuedouble == 0)
				continue;	/* an empty part */
			char name[64];
			snprintf(name, sizeof(name), "shard-%05zu.ftks.zst", next++);
			strbuf_reset(&from);
			strbuf_addf(&from, "%s/%s", dirs[i], f);
			strbuf_reset(&to);
			strbuf_addf(&to, "%s/%s", out_dir, name);
			unlink(to.buf);
			if (link(from.buf, to.buf) < 0) {
				if (errno != EXDEV && errno != EPERM && errno != EMLINK) {
					rc = ftk_error_set(err, FTK_EIO, from.buf, 0, NULL,
							   "cannot link into '%s': %s", out_dir, strerror(errno));
					break;
				}
				if ((rc = copy_file(from.buf, to.buf, err)) < 0)
					break;
			}
			cJSON *o = cJSON_CreateObject();
			cJSON_AddStringToObject(o, "file", name);
			cJSON_AddNumberToObject(o, "sequences", ns->valuedouble);
			cJSON_AddNumberToObject(o, "tokens", nt->valuedouble);
			cJSON_AddItemToArray(list, o);
			seqs += ns->valuedouble;
		}
		const cJSON *v;
		if ((v = cJSON_GetObjectItemCaseSensitive(m[i], "tokens")) && cJSON_IsNumber(v))
			toks += v->valuedouble;
		if ((v = cJSON_GetObjectItemCaseSensitive(m[i], "masked_tokens")) && cJSON_IsNumber(v))
			masked += v->valuedouble;
	}
	if (rc < 0)
		goto out;
	if (next == 0) {
		rc = ftk_error_msg(err, FTK_EDATA, "the %d parts hold no sequences", n);
		goto out;
	}
	cJSON_AddNumberToObject(out, "sequences", seqs);
	cJSON_AddNumberToObject(out, "tokens", toks);
	cJSON_AddNumberToObject(out, "masked_tokens", masked);
	cJSON_AddItemToObject(out, "shards", list);
	list = NULL;
	/* last, and atomically (ftk_writer renames): a directory without it is unfinished */
	char *text = cJSON_Print(out);
	struct ftk_writer *w;
	strbuf_reset(&to);
	strbuf_addf(&to, "%s/manifest.json", out_dir);
	rc = ftk_writer_open(&w, to.buf, 0, err);
	if (rc == 0) {
		if (ftk_writer_line(w, text, strlen(text)) < 0) {
			ftk_writer_abort(w);
			rc = ftk_error_set(err, FTK_EIO, to.buf, 0, NULL, "cannot write");
		} else {
			rc = ftk_writer_close(w, err);
		}
	}
	cJSON_free(text);
out:
	for (int i = 0; i < n; i++)
		cJSON_Delete(m[i]);
	free(m);
	cJSON_Delete(out);
	cJSON_Delete(list);
	strbuf_release(&from);
	strbuf_release(&to);
	return rc;
}
