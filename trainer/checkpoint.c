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

#include "model/adapter.h"
#include "trainer/checkpoint.h"
#include "lib/json.h"
#include "lib/strbuf.h"

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
	js = cJSON_Print(state);
	strbuf_reset(&p);
	strbuf_addf(&p, "%s/state.json", tmp.buf);
	size_t jl = strlen(js);
	js[jl] = '\n';	/* cJSON's buffer has room: we replace the NUL */
	rc = ftk_write_file_atomic(p.buf, js, jl + 1, err);
	if (rc < 0)
		goto out;
	strbuf_reset(&p);
	strbuf_addf(&p, "%s/train_config.json", tmp.buf);
	rc = ftk_write_file_atomic(p.buf, config_json, strlen(config_json), err);
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
	/* latest -> step-N, by renaming a fresh symlink over it */
	strbuf_reset(&p);
	strbuf_addf(&p, "%s/.latest.tmp", ck.buf);
	unlink(p.buf);
	char target[64];
	snprintf(target, sizeof(target), "step-%ld", step);
	struct strbuf latest = STRBUF_INIT;
	strbuf_addf(&latest, "%s/latest", ck.buf);
	if (symlink(target, p.buf) < 0 || rename(p.buf, latest.buf) < 0) {
		rc = ftk_error_set(err, FTK_EIO, latest.buf, 0, NULL, "cannot update: %s",
				   strerror(errno));
		strbuf_release(&latest);
		goto out;
	}
	strbuf_release(&latest);
	if ((rc = ftk_fsync_dir(ck.buf, err)) < 0)
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
	if (rc < 0)
		ftk_error_place(err, p.buf, 0);
out:
	ftk_adapter_free(a);
	strbuf_release(&p);
	return rc;
}
