/*
 * ledger.c: atomic appends to the shared cost ledger (see ledger.h).
 *
 * Why flock and a single write: O_APPEND alone makes each write(2) land at
 * the end, but a line longer than a pipe buffer, or a file on NFS, can still
 * interleave, and the "does the file end in a newline?" check must not race
 * with another writer.  Under the lock, we look at the last byte, and write
 * the (possibly newline-prefixed) entry with one call.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "ledger.h"
#include "strbuf.h"

double ftk_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void ftk_time_rfc3339(double t, char *buf, size_t n)
{
	time_t s = (time_t)t;
	struct tm tm;
	gmtime_r(&s, &tm);
	strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

const char *ftk_ledger_path(const char *explicit_path)
{
	if (explicit_path && *explicit_path)
		return explicit_path;
	const char *e = getenv("FTK_LEDGER");
	return e && *e ? e : NULL;
}

int ftk_ledger_append(const char *path, const char *line, size_t len, struct ftk_error *err)
{
	if (memchr(line, '\n', len))
		return ftk_error_msg(err, FTK_EUSAGE, "a ledger entry must be one line");
	if (len > FTK_LEDGER_MAX_ENTRY)
		return ftk_error_set(err, FTK_ELIMIT, path, 0, NULL,
				     "a ledger entry of %zu bytes is over the %d-byte limit (a write that long can be torn)",
				     len, FTK_LEDGER_MAX_ENTRY);
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return ftk_error_set(err, FTK_EIO, path, 0, NULL, "cannot open ledger '%s': %s", path,
				     strerror(errno));
	while (flock(fd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			int e = errno;
			close(fd);
			return ftk_error_set(err, FTK_EIO, path, 0, NULL, "cannot lock ledger '%s': %s",
					     path, strerror(e));
		}
	}
	int need_nl = 0;
	struct stat st;
	if (fstat(fd, &st) == 0 && st.st_size > 0) {
		/* O_APPEND fds can still pread */
		int rfd = open(path, O_RDONLY | O_CLOEXEC);
		char last;
		if (rfd >= 0) {
			if (pread(rfd, &last, 1, st.st_size - 1) == 1 && last != '\n')
				need_nl = 1;
			close(rfd);
		}
	}
	char *buf = xmalloc(len + 2);
	size_t n = 0;
	if (need_nl)
		buf[n++] = '\n';
	memcpy(buf + n, line, len);
	n += len;
	buf[n++] = '\n';
	ssize_t k;
	do
		k = write(fd, buf, n);
	while (k < 0 && errno == EINTR);
	int rc = 0;
	if (k != (ssize_t)n)
		rc = ftk_error_set(err, FTK_EIO, path, 0, NULL, "cannot append to ledger '%s': %s",
				   path, k < 0 ? strerror(errno) : "short write");
	free(buf);
	flock(fd, LOCK_UN);
	close(fd);
	return rc;
}

/*
 * Under Slurm, which job (and which element of a job array) did the work, so
 * that one ledger shared by a whole pipeline of array jobs can be read back
 * job by job and checked against sacct.  The ids are kept as the strings
 * Slurm gives (they are names, not quantities); a variable that is unset or
 * empty is left out, and no "slurm" member is added outside Slurm.
 */
static void add_slurm_ids(cJSON *e)
{
	static const char *const vars[][2] = {
		{ "SLURM_JOB_ID", "job_id" },
		{ "SLURM_ARRAY_JOB_ID", "array_job_id" },
		{ "SLURM_ARRAY_TASK_ID", "array_task_id" },
	};
	cJSON *o = NULL;
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		const char *v = getenv(vars[i][0]);
		if (!v || !*v)
			continue;
		if (!o)
			o = cJSON_AddObjectToObject(e, "slurm");
		cJSON_AddStringToObject(o, vars[i][1], v);
	}
}

cJSON *ftk_ledger_entry_new(const char *run, const char *stage, const char *kind)
{
	char ts[32];
	cJSON *e = cJSON_CreateObject();
	ftk_time_rfc3339(ftk_now(), ts, sizeof(ts));
	cJSON_AddStringToObject(e, "ts", ts);
	if (!run)
		run = getenv("FTK_RUN");
	if (run && *run)
		cJSON_AddStringToObject(e, "run", run);
	if (stage)
		cJSON_AddStringToObject(e, "stage", stage);
	if (kind)
		cJSON_AddStringToObject(e, "kind", kind);
	add_slurm_ids(e);
	return e;
}

int ftk_ledger_append_entry(const char *path, const cJSON *entry, struct ftk_error *err)
{
	char *s = cJSON_PrintUnformatted(entry);
	if (!s)
		return ftk_error_msg(err, FTK_ENOMEM, "out of memory");
	int rc = ftk_ledger_append(path, s, strlen(s), err);
	cJSON_free(s);
	return rc;
}
