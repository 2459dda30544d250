/*
 * checkpoint.c: checkpoints written so that a crash at any instant leaves a
 * complete one behind (see checkpoint.h for the layout and the order of
 * operations).  Removing old checkpoints happens last, and never touches the
 * one `latest` names, so running out of disk or being killed mid-cleanup
 * costs space, not the run.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "model/adapter.h"
#include "trainer/checkpoint.h"
#include "lib/json.h"
#include "lib/shard.h"
#include "lib/strbuf.h"

/* the two keys of state.json this module owns (the rest is the trainer's) */
#define KEY_FILES "files"
#define KEY_SELF "state_xxh3"
#define HASH_ZERO "00000000000000000000000000000000"	/* 32: xxh3-128 in hex */

int ftk_fsync_dir(const char *dir, struct ftk_error *err)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return ftk_error_set(err, FTK_EIO, dir, 0, NULL, "cannot open directory: %s",
				     strerror(errno));
	int rc = fsync(fd);
	int e = errno;
	close(fd);
	if (rc < 0 && e != EINVAL)	/* some file systems cannot fsync a directory */
		return ftk_error_set(err, FTK_EIO, dir, 0, NULL, "cannot fsync: %s", strerror(e));
	return 0;
}

int ftk_write_file_atomic(const char *path, const void *data, size_t len, struct ftk_error *err)
{
	struct strbuf tmp = STRBUF_INIT;
	strbuf_addf(&tmp, "%s.tmp.%ld", path, (long)getpid());
	int fd = open(tmp.buf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int rc = 0;
	if (fd < 0) {
		rc = ftk_error_set(err, FTK_EIO, path, 0, NULL, "cannot create: %s", strerror(errno));
		goto out;
	}
	const char *p = data;
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(fd, p + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			rc = ftk_error_set(err, FTK_EIO, path, 0, NULL, "cannot write: %s",
					   strerror(errno));
			close(fd);
			unlink(tmp.buf);
			goto out;
		}
		off += (size_t)w;
	}
	if (fsync(fd) < 0 || close(fd) < 0 || rename(tmp.buf, path) < 0) {
		rc = ftk_error_set(err, FTK_EIO, path, 0, NULL, "cannot write: %s", strerror(errno));
		unlink(tmp.buf);
	}
out:
	strbuf_release(&tmp);
	return rc;
}

/* rm -r of a directory we made (no symlinks followed, no deep trees). */
static int remove_tree(const char *path)
{
	DIR *dir = opendir(path);
	if (!dir)
		return errno == ENOENT ? 0 : -1;
	struct dirent *de;
	struct strbuf sb = STRBUF_INIT;
	int rc = 0;
	while ((de = readdir(dir))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		strbuf_reset(&sb);
		strbuf_addf(&sb, "%s/%s", path, de->d_name);
		struct stat st;
		if (lstat(sb.buf, &st) == 0 && S_ISDIR(st.st_mode))
			rc |= remove_tree(sb.buf);
		else if (unlink(sb.buf) < 0)
			rc = -1;
	}
	closedir(dir);
	strbuf_release(&sb);
	if (rmdir(path) < 0)
		rc = -1;
	return rc;
}

static int parse_step_name(const char *name, long *step)
{
	if (strncmp(name, "step-", 5) || name[5] < '0' || name[5] > '9')
		return -1;
	char *end;
	long s = strtol(name + 5, &end, 10);
	if (*end)
		return -1;
	*step = s;
	return 0;
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return (x > y) - (x < y);
}

int ftk_ckpt_list(const char *run_dir, long **steps, struct ftk_error *err)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addf(&sb, "%s/checkpoints", run_dir);
	*steps = NULL;
	DIR *dir = opendir(sb.buf);
	if (!dir) {
		int e = errno;
		int rc = e == ENOENT ? 0
				     : ftk_error_set(err, FTK_EIO, sb.buf, 0, NULL,
						     "cannot read directory: %s", strerror(e));
		strbuf_release(&sb);
		return rc;
	}
	size_t n = 0, alloc = 0;
	long *v = NULL;
	struct dirent *de;
	while ((de = readdir(dir))) {
		long s;
		if (parse_step_name(de->d_name, &s) == 0) {
			FTK_ALLOC_GROW(v, n + 1, alloc);
			v[n++] = s;
		}
	}
	closedir(dir);
	strbuf_release(&sb);
	if (n)
		qsort(v, n, sizeof(*v), cmp_long);
	*steps = v;
	return (int)n;
}

long ftk_ckpt_latest(const char *run_dir, char *buf, size_t n, struct ftk_error *err)
{
	struct strbuf link = STRBUF_INIT;
	char target[256];
	strbuf_addf(&link, "%s/checkpoints/latest", run_dir);
	ssize_t len = readlink(link.buf, target, sizeof(target) - 1);
	if (len < 0) {
		int e = errno;
		long rc = e == ENOENT ? ftk_error_set(err, FTK_ENOTFOUND, link.buf, 0, NULL,
						      "no checkpoint yet")
				      : ftk_error_set(err, FTK_EDATA, link.buf, 0, NULL,
						      "cannot read the latest pointer: %s", strerror(e));
		strbuf_release(&link);
		return rc;
	}
	target[len] = 0;
	long step;
	if (parse_step_name(target, &step) < 0) {
		ftk_error_set(err, FTK_EDATA, link.buf, 0, NULL,
			      "the latest pointer names '%s', not a step-N checkpoint", target);
		strbuf_release(&link);
		return FTK_EDATA;
	}
	strbuf_release(&link);
	snprintf(buf, n, "%s/checkpoints/%s", run_dir, target);
	return step;
}

/* latest -> step-N, by renaming a fresh symlink over it; then fsync ck. */
static int point_latest(const char *ck, long step, struct ftk_error *err)
{
	struct strbuf tmp = STRBUF_INIT, latest = STRBUF_INIT;
	char target[64];
	int rc = 0;
	strbuf_addf(&tmp, "%s/.latest.tmp", ck);
	strbuf_addf(&latest, "%s/latest", ck);
	unlink(tmp.buf);
	snprintf(target, sizeof(target), "step-%ld", step);
	if (symlink(target, tmp.buf) < 0 || rename(tmp.buf, latest.buf) < 0)
		rc = ftk_error_set(err, FTK_EIO, latest.buf, 0, NULL, "cannot update: %s",
				   strerror(errno));
	else
		rc = ftk_fsync_dir(ck, err);
	strbuf_release(&tmp);
	strbuf_release(&latest);
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Where state.json's own checksum sits in its text: the 32 characters of
 * the value of the last "state_xxh3" key (save adds it last, so it is the
 * last in the text too), or NULL when the text has no such place.  The
 * checksum covers the whole file with those 32 characters as zeros, so
 * every byte of the file is covered, whatever JSON library formats it.
 */
static char *self_slot(char *text, size_t len)
{
	static const char key[] = "\"" KEY_SELF "\"";
	char *hit = NULL;
	for (char *p = text; (p = memmem(p, len - (size_t)(p - text), key, sizeof(key) - 1));
	     p++)
		hit = p;
	if (!hit)
		return NULL;
	char *p = hit + sizeof(key) - 1, *end = text + len;
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	if (p >= end || *p++ != ':')
		return NULL;
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	if (end - p < 34 || p[0] != '"' || p[33] != '"')
		return NULL;
	return p + 1;
}

static void hash_hex(const void *data, size_t len, char out[33])
{
	XXH128_hash_t h = XXH3_128bits(data, len);
	snprintf(out, 33, "%016llx%016llx", (unsigned long long)h.high64,
		 (unsigned long long)h.low64);
}

/*
 * The text of state.json for checkpoint directory dir: the trainer's state
 * plus "files" (the size and xxh3-128 of every other file in dir, which
 * are all written and fsynced by now) and "state_xxh3" (its own checksum).
 * *out: caller frees.  0 or FTK_EIO naming the file.
 */
static int state_text(const char *dir, const cJSON *state, char **out, struct ftk_error *err)
{
	cJSON *st = cJSON_Duplicate(state, 1);
	cJSON_DeleteItemFromObjectCaseSensitive(st, KEY_FILES);
	cJSON_DeleteItemFromObjectCaseSensitive(st, KEY_SELF);
	cJSON *files = cJSON_AddObjectToObject(st, KEY_FILES);
	struct strbuf p = STRBUF_INIT, text = STRBUF_INIT;
	char **names = NULL;
	size_t n = 0, alloc = 0;
	int rc = 0;
	*out = NULL;
	DIR *d = opendir(dir);
	if (!d) {
		rc = ftk_error_set(err, FTK_EIO, dir, 0, NULL, "cannot read directory: %s",
				   strerror(errno));
		goto out;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || !strcmp(de->d_name, "state.json"))
			continue;
		FTK_ALLOC_GROW(names, n + 1, alloc);
		names[n++] = xstrdup(de->d_name);
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i < n; i++) {
		char hex[33];
		struct stat sb;
		strbuf_reset(&p);
		strbuf_addf(&p, "%s/%s", dir, names[i]);
		if (stat(p.buf, &sb) < 0) {
			rc = ftk_error_set(err, FTK_EIO, p.buf, 0, NULL, "cannot stat: %s",
					   strerror(errno));
			goto out;
		}
		if (!S_ISREG(sb.st_mode))
			continue;
		if ((rc = ftk_file_hash(p.buf, hex, err)) < 0)
			goto out;
		cJSON *f = cJSON_AddObjectToObject(files, names[i]);
		cJSON_AddNumberToObject(f, "bytes", (double)sb.st_size);
		cJSON_AddStringToObject(f, "xxh3", hex);
	}
	cJSON_AddStringToObject(st, KEY_SELF, HASH_ZERO);
	char *js = cJSON_Print(st);
	strbuf_addstr(&text, js);
	strbuf_addch(&text, '\n');
	free(js);
	char *slot = self_slot(text.buf, text.len);
	char hex[33];
	hash_hex(text.buf, text.len, hex);	/* with the slot still zeros */
	memcpy(slot, hex, 32);
	*out = strbuf_detach(&text, NULL);
out:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	cJSON_Delete(st);
	strbuf_release(&p);
	strbuf_release(&text);
	return rc;
}

/* A damaged checkpoint file: FTK_EDATA naming it. */
#define DAMAGED(path, ...) ftk_error_set(err, FTK_EDATA, (path), 0, NULL, __VA_ARGS__)

int ftk_ckpt_verify(const char *ckpt_dir, struct ftk_error *err)
{
	struct strbuf p = STRBUF_INIT, text = STRBUF_INIT;
	cJSON *st = NULL;
	int rc;
	strbuf_addf(&p, "%s/state.json", ckpt_dir);
	rc = strbuf_read_file(&text, p.buf);
	if (rc < 0) {
		rc = rc == -ENOENT ? DAMAGED(p.buf, "missing")
				   : ftk_error_set(err, FTK_EIO, p.buf, 0, NULL, "cannot read: %s",
						   strerror(-rc));
		goto out;
	}
	st = cJSON_ParseWithLength(text.buf, text.len);
	if (!cJSON_IsObject(st)) {
		rc = DAMAGED(p.buf, "not a JSON object: damaged since it was written");
		goto out;
	}
	const cJSON *files = cJSON_GetObjectItemCaseSensitive(st, KEY_FILES);
	const cJSON *self = cJSON_GetObjectItemCaseSensitive(st, KEY_SELF);
	if (!files && !self) {	/* written before checkpoints had checksums */
		rc = 1;
		goto out;
	}
	if (!cJSON_IsObject(files) || !cJSON_IsString(self) || strlen(self->valuestring) != 32) {
		rc = DAMAGED(p.buf, "the checksums it holds are incomplete: damaged since it "
				    "was written");
		goto out;
	}
	char *slot = self_slot(text.buf, text.len);
	char hex[33];
	if (!slot || memcmp(slot, self->valuestring, 32)) {
		rc = DAMAGED(p.buf, "its own checksum is not where it was written: damaged");
		goto out;
	}
	memcpy(slot, HASH_ZERO, 32);
	hash_hex(text.buf, text.len, hex);
	if (strcmp(hex, self->valuestring)) {
		rc = DAMAGED(p.buf, "checksum mismatch (xxh3 %s, written as %s): damaged since "
				    "it was written", hex, self->valuestring);
		goto out;
	}
	for (const cJSON *f = files->child; f; f = f->next) {
		const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(f, "bytes");
		const cJSON *sum = cJSON_GetObjectItemCaseSensitive(f, "xxh3");
		strbuf_reset(&p);
		strbuf_addf(&p, "%s/%s", ckpt_dir, f->string);
		/* the self checksum matched, so these were written this way */
		if (!*f->string || strchr(f->string, '/') || f->string[0] == '.' ||
		    !cJSON_IsNumber(bytes) || !cJSON_IsString(sum)) {
			rc = DAMAGED(p.buf, "state.json lists it oddly");
			goto out;
		}
		struct stat sb;
		if (stat(p.buf, &sb) < 0) {
			rc = errno == ENOENT ? DAMAGED(p.buf, "missing")
					     : ftk_error_set(err, FTK_EIO, p.buf, 0, NULL,
							     "cannot stat: %s", strerror(errno));
			goto out;
		}
		if ((double)sb.st_size != bytes->valuedouble) {
			rc = DAMAGED(p.buf, "%lld bytes, written as %.0f: damaged since it was written",
				     (long long)sb.st_size, bytes->valuedouble);
			goto out;
		}
		if ((rc = ftk_file_hash(p.buf, hex, err)) < 0)
			goto out;
		if (strcmp(hex, sum->valuestring)) {
			rc = DAMAGED(p.buf, "checksum mismatch (xxh3 %s, written as %s): damaged since "
					    "it was written", hex, sum->valuestring);
			goto out;
		}
	}
	rc = 0;
out:
	cJSON_Delete(st);
	strbuf_release(&p);
	strbuf_release(&text);
	return rc;
}

void ftk_ckpt_pick_release(struct ftk_ckpt_pick *p)
{
	if (!p)
		return;
	free(p->damaged);
	p->damaged = NULL;
	p->n_damaged = p->alloc_damaged = 0;
}

int ftk_ckpt_pick(const char *run_dir, int strict, struct ftk_ckpt_pick *p,
		  struct ftk_error *err)
{
	char dir[sizeof(p->dir)];
	long *steps = NULL;
	memset(p, 0, sizeof(*p));
	p->step = -1;
	long latest = ftk_ckpt_latest(run_dir, dir, sizeof(dir), err);
	if (latest < 0)
		return (int)latest;
	int n = ftk_ckpt_list(run_dir, &steps, err);
	if (n < 0)
		return n;
	/* latest first, then the older ones, newest first */
	int rc = 0;
	for (int i = n; i >= 0; i--) {
		long s = i == n ? latest : steps[i];
		if (i < n && s >= latest)
			continue;
		snprintf(dir, sizeof(dir), "%s/checkpoints/step-%ld", run_dir, s);
		struct ftk_error e;
		ftk_error_clear(&e);
		int v = ftk_ckpt_verify(dir, &e);
		if (v >= 0) {
			p->step = s;
			p->unverified = v == 1;
			memcpy(p->dir, dir, sizeof(dir));
			goto out;
		}
		if (v != FTK_EDATA) {
			if (err)
				*err = e;
			rc = v;
			goto out;
		}
		FTK_ALLOC_GROW(p->damaged, (size_t)p->n_damaged + 1, p->alloc_damaged);
		p->damaged[p->n_damaged].step = s;
		p->damaged[p->n_damaged++].err = e;
		if (strict) {
			rc = ftk_error_set(err, FTK_EDATA, e.file, 0, NULL,
					   "checkpoint step-%ld is damaged: %s (--strict: not "
					   "falling back to an older checkpoint)", s, e.msg);
			goto out;
		}
	}
	rc = ftk_error_set(err, FTK_EDATA, p->damaged[0].err.file, 0, NULL,
			   "checkpoint step-%ld is damaged: %s; and no older checkpoint of '%s' "
			   "is intact", p->damaged[0].step, p->damaged[0].err.msg, run_dir);
out:
	free(steps);
	return rc;
}

int ftk_ckpt_set_aside(const char *run_dir, const struct ftk_ckpt_pick *p,
		       struct ftk_error *err)
{
	struct strbuf ck = STRBUF_INIT, from = STRBUF_INIT, to = STRBUF_INIT;
	int rc = 0;
	strbuf_addf(&ck, "%s/checkpoints", run_dir);
	for (int i = 0; i < p->n_damaged; i++) {
		strbuf_reset(&from);
		strbuf_reset(&to);
		strbuf_addf(&from, "%s/step-%ld", ck.buf, p->damaged[i].step);
		strbuf_addf(&to, "%s/damaged-step-%ld", ck.buf, p->damaged[i].step);
		remove_tree(to.buf);
		if (rename(from.buf, to.buf) < 0 && errno != ENOENT) {
			rc = ftk_error_set(err, FTK_EIO, from.buf, 0, NULL, "cannot rename: %s",
					   strerror(errno));
			goto out;
		}
	}
	if (p->n_damaged)
		rc = point_latest(ck.buf, p->step, err);
out:
	strbuf_release(&ck);
	strbuf_release(&from);
	strbuf_release(&to);
	return rc;
}

int ftk_ckpt_save(const char *run_dir, long step, const struct ftk_model *m,
		  const char *base_model, const struct ftk_adamw *opt, const cJSON *state,
		  const char *config_json, int keep, struct ftk_error *err)
{
	struct strbuf ck = STRBUF_INIT, tmp = STRBUF_INIT, fin = STRBUF_INIT, p = STRBUF_INIT;
	char *js = NULL;
	long *steps = NULL;
	int rc = 0;

	strbuf_addf(&ck, "%s/checkpoints", run_dir);
	if ((mkdir(run_dir, 0777) < 0 && errno != EEXIST) ||
	    (mkdir(ck.buf, 0777) < 0 && errno != EEXIST)) {
		rc = ftk_error_set(err, FTK_EIO, ck.buf, 0, NULL, "cannot create directory: %s",
				   strerror(errno));
		goto out;
	}
	strbuf_addf(&tmp, "%s/.tmp-step-%ld", ck.buf, step);
	strbuf_addf(&fin, "%s/step-%ld", ck.buf, step);
	remove_tree(tmp.buf);	/* a leftover of a crash mid-save */
	if (mkdir(tmp.buf, 0777) < 0) {
		rc = ftk_error_set(err, FTK_EIO, tmp.buf, 0, NULL, "cannot create directory: %s",
				   strerror(errno));
		goto out;
	}
	rc = ftk_adapter_save_model(m, base_model, tmp.buf, err);
	if (rc < 0)
		goto out;
	strbuf_addf(&p, "%s/optimizer.safetensors", tmp.buf);
	rc = ftk_adamw_save(opt, p.buf, err);
	if (rc < 0)
		goto out;
	strbuf_reset(&p);
	strbuf_addf(&p, "%s/train_config.json", tmp.buf);
	rc = ftk_write_file_atomic(p.buf, config_json, strlen(config_json), err);
	if (rc < 0)
		goto out;
	/* state.json last: it holds the checksums of everything above, and its own */
	if ((rc = state_text(tmp.buf, state, &js, err)) < 0)
		goto out;
	strbuf_reset(&p);
	strbuf_addf(&p, "%s/state.json", tmp.buf);
	rc = ftk_write_file_atomic(p.buf, js, strlen(js), err);
	if (rc < 0)
		goto out;
	if ((rc = ftk_fsync_dir(tmp.buf, err)) < 0)
		goto out;
	/* The same step saved again (a resume that stopped at once): replace it. */
	struct stat st;
	if (lstat(fin.buf, &st) == 0) {
		strbuf_reset(&p);
		strbuf_addf(&p, "%s/.old-step-%ld", ck.buf, step);
		remove_tree(p.buf);
		if (rename(fin.buf, p.buf) < 0) {
			rc = ftk_error_set(err, FTK_EIO, fin.buf, 0, NULL, "cannot rename: %s",
					   strerror(errno));
			goto out;
		}
	}
	if (rename(tmp.buf, fin.buf) < 0) {
		rc = ftk_error_set(err, FTK_EIO, fin.buf, 0, NULL, "cannot rename: %s",
				   strerror(errno));
		goto out;
	}
	if ((rc = ftk_fsync_dir(ck.buf, err)) < 0)
		goto out;
	if ((rc = point_latest(ck.buf, step, err)) < 0)
		goto out;
	strbuf_reset(&p);
	strbuf_addf(&p, "%s/.old-step-%ld", ck.buf, step);
	remove_tree(p.buf);

	/* keep the newest `keep`; never the one just written */
	int n = ftk_ckpt_list(run_dir, &steps, NULL);
	if (keep > 0 && n > keep) {
		for (int i = 0; i < n - keep; i++) {
			if (steps[i] == step)
				continue;
			strbuf_reset(&p);
			strbuf_addf(&p, "%s/step-%ld", ck.buf, steps[i]);
			remove_tree(p.buf);
		}
	}
	rc = 0;
out:
	if (rc < 0)
		remove_tree(tmp.buf);
	free(js);
	free(steps);
	strbuf_release(&ck);
	strbuf_release(&tmp);
	strbuf_release(&fin);
	strbuf_release(&p);
	return rc;
}

int ftk_ckpt_load(const char *ckpt_dir, struct ftk_model *m, const struct ftk_lora_opts *lora,
		  struct ftk_adamw *opt, cJSON **state, struct ftk_error *err)
{
	struct ftk_adapter *a = NULL;
	struct strbuf p = STRBUF_INIT;
	*state = NULL;
	int rc = ftk_adapter_load(ckpt_dir, &a, err);
	if (rc < 0)
		goto out;
	rc = ftk_adapter_apply(m, a, lora, err);
	if (rc < 0)
		goto out;
	strbuf_addf(&p, "%s/optimizer.safetensors", ckpt_dir);
	rc = ftk_adamw_load(opt, p.buf, err);
	if (rc < 0)
		goto out;
	strbuf_reset(&p);
	strbuf_addf(&p, "%s/state.json", ckpt_dir);
	struct strbuf sb = STRBUF_INIT;
	rc = strbuf_read_file(&sb, p.buf);
	if (rc < 0) {
		rc = ftk_error_set(err, FTK_EIO, p.buf, 0, NULL, "cannot read: %s", strerror(-rc));
		strbuf_release(&sb);
		goto out;
	}
	rc = ftk_json_parse_object(sb.buf, sb.len, state, err);
	strbuf_release(&sb);
	if (rc < 0) {
		ftk_error_place(err, p.buf, 0);
		goto out;
	}
	/* the caller gets back the state it saved, without this module's keys */
	cJSON_DeleteItemFromObjectCaseSensitive(*state, KEY_FILES);
	cJSON_DeleteItemFromObjectCaseSensitive(*state, KEY_SELF);
out:
	ftk_adapter_free(a);
	strbuf_release(&p);
	return rc;
}
