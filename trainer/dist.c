/*
 * dist.c: the data-parallel layer of dist.h, over MPI (host memory) or
 * NCCL (device memory, loaded with dlopen).
 *
 * Sums are done in place: in host memory under MPI (the trainer hands
 * it a host copy of the gradients, since Debian's OpenMPI is not built
 * CUDA-aware), in device memory under NCCL.  MPI_Allreduce with MPI_SUM on floats is not
 * guaranteed to add in rank order, but for two processes a + b == b + a
 * exactly, and OpenMPI's algorithms for small worlds are deterministic run
 * to run, which is what the equality test against one process needs (the
 * one-process run adds the same per-micro-batch contributions in another
 * order: equal within rounding, not bit for bit; see tests/cli/train-mpi).
 *
 * The NCCL transport is written against nccl.h's ABI (ncclUniqueId is 128
 * bytes, ncclFloat32 = 7, ncclFloat64 = 8, ncclInt32 = 2, ncclSum = 0,
 * ncclMax = 2) and resolves its functions from libnccl.so.2 (found as
 * ftk_dist_nccl_open says); the device, its memory and its copies are the
 * CUDA backend's (device.h), so NCCL and the kernels share one cudart and
 * one current GPU, and the scalars it reduces go through a small device
 * buffer of the backend's.  It has
 * not run in the session that wrote it (no GPU): docs/gpu.md says how to
 * check it.
 */
#include "trainer/dist.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include "lib/err.h"
#include "lib/strbuf.h"
#include "model/device.h"
#include "trainer/train.h"

#ifdef FTK_HAVE_MPI
#include <mpi.h>
#endif

enum transport { T_NONE, T_MPI, T_NCCL };

struct nccl_id_s {
	char b[128];	/* ncclUniqueId, passed by value */
};

struct nccl_api {
	int (*get_id)(void *id);
	int (*init_rank)(void **comm, int n, struct nccl_id_s id, int rank);
	int (*all_reduce)(const void *s, void *r, size_t n, int type, int op, void *comm,
			  void *stream);
	const char *(*error_string)(int rc);
	int (*destroy)(void *comm);
	void *comm;
	struct ftk_backend *be;	/* a CUDA instance of its own: device memory, copies */
	void *scratch;	/* 64 bytes of device memory for the scalars */
};

struct ftk_dist {
	enum transport t;
	int rank, world, local_rank;
	int mpi_started;
	int by_mpi;	/* ranks from MPI (the NCCL id goes by MPI_Bcast), else from the environment */
	struct nccl_api nc;
};

static const char *env(const char *a, const char *b)
{
	const char *v = getenv(a);
	if ((!v || !*v) && b)
		v = getenv(b);
	return v && *v ? v : NULL;
}

/* The launcher that started this process, from its variables: "mpirun", "pmix", or NULL. */
static const char *launcher(void)
{
	if (env("OMPI_COMM_WORLD_SIZE", NULL))
		return "mpirun";
	if (env("PMIX_RANK", NULL))
		return "pmix";
	return NULL;
}

/* The world size the launcher announces without MPI (1 when it says none). */
static int launcher_world(void)
{
	const char *w = env("OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS");
	return w ? atoi(w) : 1;
}

#ifdef FTK_HAVE_MPI
#define HAVE_MPI 1
#else
#define HAVE_MPI 0
#endif

int ftk_dist_route(enum ftk_dist_mode mode, const char *device, int have_mpi,
		   struct ftk_dist_route *r, struct ftk_error *err)
{
	int cuda = device && !strcmp(device, "cuda");
	const char *by = launcher();
	memset(r, 0, sizeof(*r));
	r->transport = "none";
	r->ranks = FTK_DIST_ALONE;
	r->launcher = by ? by : "";
	switch (mode) {
	case FTK_DIST_MODE_AUTO:
		if (by && have_mpi) {
			r->transport = cuda ? "nccl" : "mpi";
			r->ranks = FTK_DIST_BY_MPI;
		} else if (by && cuda) {
			/* no MPI to start: the launcher's rank variables and the shared file */
			r->transport = "nccl";
			r->ranks = FTK_DIST_BY_ENV;
		} else if (by && launcher_world() > 1) {
			return ftk_error_msg(err, FTK_EUNSUPPORTED,
					     "started by %s (%s is set) as one of %d processes, but "
					     "this ftk was built without MPI, which the CPU's "
					     "data-parallel training needs: rebuild with OpenMPI "
					     "(make deps) or start one process",
					     by, !strcmp(by, "pmix") ? "PMIX_RANK" : "OMPI_COMM_WORLD_SIZE",
					     launcher_world());
		} else if (cuda && env("FTK_DIST_FILE", NULL)) {
			r->transport = "nccl";
			r->ranks = FTK_DIST_BY_ENV;
		}
		return 0;
	case FTK_DIST_MODE_NONE:
		return 0;
	case FTK_DIST_MODE_MPI:
		if (!have_mpi)
			return ftk_error_msg(err, FTK_EUNSUPPORTED, "this ftk was built without MPI "
					     "(install OpenMPI: make deps)");
		r->transport = "mpi";
		r->ranks = FTK_DIST_BY_MPI;
		return 0;
	case FTK_DIST_MODE_NCCL:
		if (!cuda)
			return ftk_error_msg(err, FTK_EUSAGE, "--dist nccl needs --device cuda (on "
					     "the CPU use --dist mpi)");
		r->transport = "nccl";
		r->ranks = by && have_mpi ? FTK_DIST_BY_MPI : FTK_DIST_BY_ENV;
		return 0;
	}
	/* the option table admits only FTK_DIST_MODES; a caller that casts is wrong */
	return ftk_error_msg(err, FTK_EUSAGE, "--dist: no mode %d (%s)", (int)mode, FTK_DIST_MODES);
}

#ifdef FTK_HAVE_MPI
static int mpi_fail(int rc, const char *what, struct ftk_error *err)
{
	char msg[MPI_MAX_ERROR_STRING];
	int len = 0;
	MPI_Error_string(rc, msg, &len);
	return ftk_error_msg(err, FTK_ENET, "%s: %s", what, msg);
}
#endif

static int start_mpi(struct ftk_dist *d, struct ftk_error *err)
{
#ifdef FTK_HAVE_MPI
	int inited = 0;
	MPI_Initialized(&inited);
	if (!inited) {
		int rc = MPI_Init(NULL, NULL);
		if (rc != MPI_SUCCESS)
			return mpi_fail(rc, "MPI_Init", err);
		d->mpi_started = 1;
	}
	d->by_mpi = 1;
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
	MPI_Comm_size(MPI_COMM_WORLD, &d->world);
	const char *lr = env("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID");
	d->local_rank = lr ? atoi(lr) : d->rank;
	return 0;
#else
	(void)d;
	return ftk_error_msg(err, FTK_EUNSUPPORTED,
			     "this ftk was built without MPI (install OpenMPI: make deps)");
#endif
}

/* The first of names[] that is set and not empty, or NULL. */
static const char *env_any(const char *const *names)
{
	for (; *names; names++) {
		const char *v = getenv(*names);
		if (v && *v)
			return v;
	}
	return NULL;
}

/*
 * Rank, world and local rank without MPI: ftk's own variables, else
 * Slurm's, else those OpenMPI's launcher or PMIx set (srun --mpi=pmix sets
 * Slurm's too).
 */
static int ranks_from_env(struct ftk_dist *d, struct ftk_error *err)
{
	static const char *const rn[] = { "FTK_RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK",
					   "PMIX_RANK", NULL };
	static const char *const wn[] = { "FTK_WORLD_SIZE", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE",
					   NULL };
	static const char *const ln[] = { "FTK_LOCAL_RANK", "SLURM_LOCALID",
					   "OMPI_COMM_WORLD_LOCAL_RANK", NULL };
	const char *r = env_any(rn), *w = env_any(wn), *l = env_any(ln);
	if (!r || !w)
		return ftk_error_msg(err, FTK_EUSAGE,
				     "nccl without mpirun needs FTK_RANK and FTK_WORLD_SIZE (or "
				     "Slurm's SLURM_PROCID and SLURM_NTASKS) and FTK_DIST_FILE");
	d->rank = atoi(r);
	d->world = atoi(w);
	d->local_rank = l ? atoi(l) : d->rank;
	if (d->world < 1 || d->rank < 0 || d->rank >= d->world)
		return ftk_error_msg(err, FTK_EUSAGE, "rank %d is not in a world of %d", d->rank,
				     d->world);
	return 0;
}

/*
 * The shared-file rendezvous (dist.h).  The file holds the id's bytes and
 * then the job key, so a file left by an earlier job is told apart: a
 * reader takes only a file of exactly n + strlen(key) bytes ending in its
 * own key.  Rank 0 writes it to a temporary name and renames it into
 * place, so no reader ever sees half of it.
 */
int ftk_dist_file_id(const char *path, int rank, const char *key, char *id, size_t n,
		     int timeout_ms, struct ftk_error *err)
{
	size_t kl = key ? strlen(key) : 0;
	if (rank == 0) {
		char tmp[4200];
		snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
		int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int ok = fd >= 0 && write(fd, id, n) == (ssize_t)n &&
			 (kl == 0 || write(fd, key, kl) == (ssize_t)kl) && fsync(fd) == 0;
		if (fd >= 0 && close(fd) < 0)
			ok = 0;
		if (!ok || rename(tmp, path) < 0) {
			int e = errno;
			unlink(tmp);
			return ftk_error_set(err, FTK_EIO, path, 0, NULL, "writing the NCCL id: %s",
					     strerror(e));
		}
		return 0;
	}
	char *buf = xmalloc(n + kl + 1);
	int stale = 0;
	for (int waited = 0;; waited += 100) {
		int fd = open(path, O_RDONLY);
		if (fd >= 0) {
			ssize_t got = read(fd, buf, n + kl + 1);
			close(fd);
			if (got == (ssize_t)(n + kl) && !memcmp(buf + n, key ? key : "", kl)) {
				memcpy(id, buf, n);
				free(buf);
				return 0;
			}
			stale = 1;
		}
		if (waited >= timeout_ms)
			break;
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	free(buf);
	if (stale)
		return ftk_error_set(err, FTK_ENET, path, 0, NULL,
				     "holds no NCCL id for this job (key '%s') after %d s: left by "
				     "another run? use a new path for each job",
				     key ? key : "", timeout_ms / 1000);
	return ftk_error_set(err, FTK_ENET, path, 0, NULL, "no NCCL id from rank 0 after %d s",
			     timeout_ms / 1000);
}

/*
 * The folders a python3 on PATH imports from (sys.path), one per line, into
 * *dirs (caller frees); the count, 0 when there is no python3 or it fails.
 * NVIDIA's NCCL wheel (nvidia-nccl-cu12/cu13, a dependency of PyTorch's
 * CUDA builds) puts libnccl.so.2 in <site-packages>/nvidia/nccl/lib.
 */
static size_t python_paths(struct strbuf *dirs)
{
	FILE *p = popen("python3 -c 'import sys; print(\"\\n\".join(sys.path))' 2>/dev/null", "r");
	if (!p)
		return 0;
	char line[4096];
	size_t n = 0;
	while (fgets(line, sizeof(line), p)) {
		line[strcspn(line, "\n")] = 0;
		if (!line[0] || line[0] != '/')
			continue;
		strbuf_addstr(dirs, line);
		strbuf_addch(dirs, '\n');
		n++;
	}
	pclose(p);
	return n;
}

int ftk_dist_nccl_wheel(char *path, size_t cap, struct strbuf *looked)
{
	static const char *const sub[] = { "nvidia/nccl/lib/libnccl.so.2",
					   "nvidia/cu13/lib/libnccl.so.2" };
	struct strbuf dirs = STRBUF_INIT;
	size_t nd = python_paths(&dirs);
	int found = 0, listed = 0;
	for (char *dir = dirs.buf, *nl; !found && nd && *dir; dir = nl + 1) {
		nl = strchr(dir, '\n');
		*nl = 0;
		for (size_t i = 0; !found && i < sizeof(sub) / sizeof(sub[0]); i++) {
			snprintf(path, cap, "%s/%s", dir, sub[i]);
			found = access(path, R_OK) == 0;
		}
		if (!found && strstr(dir, "-packages")) {
			strbuf_addstr(looked, listed ? ", " : "nvidia/nccl/lib in python3's ");
			strbuf_addstr(looked, dir);
			listed = 1;
		}
	}
	if (!found && !nd)
		strbuf_addstr(looked, "no python3 on PATH to ask for its wheels");
	else if (!found && !listed)
		strbuf_addstr(looked, "python3 on PATH has no site-packages");
	strbuf_release(&dirs);
	return found;
}

void *ftk_dist_nccl_open(char *path, size_t cap, struct ftk_error *err)
{
	char first[1024] = "";
	void *h = NULL;
	const char *e = env("FTK_NCCL_LIB", NULL);
	if (e) {
		struct stat st;
		if (stat(e, &st) == 0 && S_ISDIR(st.st_mode))
			snprintf(path, cap, "%s/libnccl.so.2", e);
		else
			snprintf(path, cap, "%s", e);
		if (!(h = dlopen(path, RTLD_NOW | RTLD_LOCAL)))
			ftk_error_msg(err, FTK_EUNSUPPORTED, "nccl: FTK_NCCL_LIB='%s': %s", e,
				      dlerror());
		return h;
	}
	snprintf(path, cap, "libnccl.so.2");
	if ((h = dlopen(path, RTLD_NOW | RTLD_LOCAL)))
		return h;
	snprintf(first, sizeof(first), "%s", dlerror());
	struct strbuf looked = STRBUF_INIT;
	strbuf_addstr(&looked, "FTK_NCCL_LIB (unset), the loader's path (LD_LIBRARY_PATH, "
			       "ld.so.cache), ");
	if (ftk_dist_nccl_wheel(path, cap, &looked)) {
		if ((h = dlopen(path, RTLD_NOW | RTLD_LOCAL)))
			goto done;
		ftk_error_msg(err, FTK_EUNSUPPORTED, "nccl: cannot load '%s': %s", path, dlerror());
		goto done;
	}
	ftk_error_msg(err, FTK_EUNSUPPORTED,
		      "nccl: cannot load libnccl.so.2 (%s); looked in %s: install NCCL (Debian's "
		      "libnccl2, or pip's nvidia-nccl-cu13) or set FTK_NCCL_LIB to its path",
		      first, looked.buf);
done:
	strbuf_release(&looked);
	return h;
}

static int start_nccl(struct ftk_dist *d, struct ftk_error *err)
{
	struct nccl_api *n = &d->nc;
	char where[4200];
	void *h = ftk_dist_nccl_open(where, sizeof(where), err);
	if (!h)
		return FTK_EUNSUPPORTED;
	*(void **)&n->get_id = dlsym(h, "ncclGetUniqueId");
	*(void **)&n->init_rank = dlsym(h, "ncclCommInitRank");
	*(void **)&n->all_reduce = dlsym(h, "ncclAllReduce");
	*(void **)&n->error_string = dlsym(h, "ncclGetErrorString");
	*(void **)&n->destroy = dlsym(h, "ncclCommDestroy");
	if (!n->get_id || !n->init_rank || !n->all_reduce || !n->error_string || !n->destroy)
		return ftk_error_msg(err, FTK_EUNSUPPORTED, "nccl: '%s' lacks NCCL's entry points "
				     "(not libnccl.so.2?)", where);
	/*
	 * The communicator belongs to the GPU current when it is made: the
	 * backend's choice for this rank (local rank modulo the device count),
	 * through the same cudart the backend's kernels use.
	 */
	struct ftk_error de;
	int rc = ftk_device_backend("cuda", d->local_rank, &n->be, &de);
	if (rc < 0)
		return ftk_error_msg(err, rc, "nccl: %s", de.msg);

	struct nccl_id_s id;
	memset(&id, 0, sizeof(id));
	if (d->rank == 0 && (rc = n->get_id(&id)) != 0)
		return ftk_error_msg(err, FTK_ENET, "ncclGetUniqueId: %s", n->error_string(rc));
	if (d->by_mpi) {
#ifdef FTK_HAVE_MPI
		if ((rc = MPI_Bcast(id.b, 128, MPI_BYTE, 0, MPI_COMM_WORLD)) != MPI_SUCCESS)
			return mpi_fail(rc, "MPI_Bcast of the NCCL id", err);
#endif
	} else {
		const char *f = env("FTK_DIST_FILE", NULL);
		if (!f)
			return ftk_error_msg(err, FTK_EUSAGE,
					     "nccl without mpirun needs FTK_DIST_FILE, a path on a "
					     "file system every process sees");
		if ((rc = ftk_dist_file_id(f, d->rank, env("FTK_DIST_JOB", "SLURM_JOB_ID"), id.b,
					   sizeof(id.b), 10 * 60 * 1000, err)) < 0)
			return rc;
	}
	if ((rc = n->init_rank(&n->comm, d->world, id, d->rank)) != 0)
		return ftk_error_msg(err, FTK_ENET, "ncclCommInitRank: %s", n->error_string(rc));
	n->scratch = n->be->ops->alloc(n->be, 64);
	return 0;
}

int ftk_dist_start(struct ftk_dist **out, enum ftk_dist_mode mode, const char *device,
		   struct ftk_error *err)
{
	struct ftk_dist *d = xcalloc(1, sizeof(*d));
	struct ftk_dist_route r;
	d->world = 1;
	*out = d;
	int rc = ftk_dist_route(mode, device, HAVE_MPI, &r, err);
	if (rc < 0)
		return rc;
	d->t = !strcmp(r.transport, "mpi") ? T_MPI : !strcmp(r.transport, "nccl") ? T_NCCL : T_NONE;
	if (r.ranks == FTK_DIST_BY_MPI)
		rc = start_mpi(d, err);
	else if (r.ranks == FTK_DIST_BY_ENV)
		rc = ranks_from_env(d, err);
	if (rc == 0 && d->t == T_NCCL)
		rc = start_nccl(d, err);
	return rc;
}

void ftk_dist_abort(struct ftk_dist *d, int code)
{
#ifdef FTK_HAVE_MPI
	int inited = 0;
	if (d && d->world > 1 && d->by_mpi && MPI_Initialized(&inited) == MPI_SUCCESS && inited) {
		fflush(stdout);
		fflush(stderr);
		MPI_Abort(MPI_COMM_WORLD, code);
	}
#else
	(void)d;
#endif
	(void)code;
}

void ftk_dist_end(struct ftk_dist *d)
{
	if (!d)
		return;
	if (d->t == T_NCCL && d->nc.comm)
		d->nc.destroy(d->nc.comm);
	if (d->nc.scratch)
		d->nc.be->ops->free(d->nc.be, d->nc.scratch);
	ftk_backend_free(d->nc.be);
#ifdef FTK_HAVE_MPI
	if (d->mpi_started) {
		int fin = 0;
		MPI_Finalized(&fin);
		if (!fin)
			MPI_Finalize();
	}
#endif
	free(d);
}

int ftk_dist_rank(const struct ftk_dist *d)
{
	return d ? d->rank : 0;
}

int ftk_dist_world(const struct ftk_dist *d)
{
	return d ? d->world : 1;
}

int ftk_dist_local_rank(const struct ftk_dist *d)
{
	return d ? d->local_rank : 0;
}

const char *ftk_dist_transport(const struct ftk_dist *d)
{
	return !d || d->t == T_NONE ? "none" : d->t == T_MPI ? "mpi" : "nccl";
}

/* type: 7 float32, 8 float64, 2 int32; op: 0 sum, 2 max (nccl.h's values). */
static int nccl_reduce(struct ftk_dist *d, void *x, size_t n, int type, int op,
		       struct ftk_error *err)
{
	int rc = d->nc.all_reduce(x, x, n, type, op, d->nc.comm, NULL);
	if (rc != 0)
		return ftk_error_msg(err, FTK_ENET, "ncclAllReduce: %s", d->nc.error_string(rc));
	/* the default stream orders it before the kernels and copies after; this surfaces a failure */
	struct ftk_error se;
	if (ftk_device_sync("cuda", &se) < 0)
		return ftk_error_msg(err, FTK_ENET, "ncclAllReduce: %s", se.msg);
	return 0;
}

/* Scalars live in host memory: through the device scratch buffer. */
static int nccl_reduce_host(struct ftk_dist *d, void *x, size_t bytes, size_t n, int type, int op,
			    struct ftk_error *err)
{
	for (size_t off = 0; off < n * bytes; off += 64) {
		size_t len = n * bytes - off < 64 ? n * bytes - off : 64;
		d->nc.be->ops->upload(d->nc.be, d->nc.scratch, (char *)x + off, len);
		int rc = nccl_reduce(d, d->nc.scratch, len / bytes, type, op, err);
		if (rc < 0)
			return rc;
		d->nc.be->ops->download(d->nc.be, (char *)x + off, d->nc.scratch, len);
	}
	return 0;
}

int ftk_dist_sum_f32(struct ftk_dist *d, float *x, size_t n, struct ftk_error *err)
{
	if (!d || d->world <= 1 || n == 0)
		return 0;
	if (d->t == T_NCCL)
		return nccl_reduce(d, x, n, 7, 0, err);
#ifdef FTK_HAVE_MPI
	/* MPI counts are int: chunks of at most 2^30 */
	for (size_t off = 0; off < n; off += (size_t)1 << 30) {
		size_t len = n - off < ((size_t)1 << 30) ? n - off : (size_t)1 << 30;
		int rc = MPI_Allreduce(MPI_IN_PLACE, x + off, (int)len, MPI_FLOAT, MPI_SUM,
				       MPI_COMM_WORLD);
		if (rc != MPI_SUCCESS)
			return mpi_fail(rc, "MPI_Allreduce", err);
	}
#endif
	return 0;
}

int ftk_dist_sum_f64(struct ftk_dist *d, double *x, size_t n, struct ftk_error *err)
{
	if (!d || d->world <= 1 || n == 0)
		return 0;
	if (d->t == T_NCCL)
		return nccl_reduce_host(d, x, sizeof(double), n, 8, 0, err);
#ifdef FTK_HAVE_MPI
	int rc = MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
	if (rc != MPI_SUCCESS)
		return mpi_fail(rc, "MPI_Allreduce", err);
#endif
	return 0;
}

int ftk_dist_max_int(struct ftk_dist *d, int *x, struct ftk_error *err)
{
	if (!d || d->world <= 1)
		return 0;
	if (d->t == T_NCCL)
		return nccl_reduce_host(d, x, sizeof(int), 1, 2, 2, err);
#ifdef FTK_HAVE_MPI
	int rc = MPI_Allreduce(MPI_IN_PLACE, x, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
	if (rc != MPI_SUCCESS)
		return mpi_fail(rc, "MPI_Allreduce", err);
#endif
	return 0;
}

/* The train.h hooks. */
static int hook_count(void *ctx, long *count, struct ftk_error *err)
{
	double v = (double)*count;	/* exact: counts stay far below 2^53 */
	int rc = ftk_dist_sum_f64(ctx, &v, 1, err);
	*count = (long)v;
	return rc;
}

static int hook_grads(void *ctx, float *grads, size_t n, double *loss_sum, struct ftk_error *err)
{
	int rc = ftk_dist_sum_f32(ctx, grads, n, err);
	if (rc == 0)
		rc = ftk_dist_sum_f64(ctx, loss_sum, 1, err);
	return rc;
}

static int hook_max(void *ctx, int *flag, struct ftk_error *err)
{
	return ftk_dist_max_int(ctx, flag, err);
}

void ftk_dist_attach(struct ftk_dist *d, struct ftk_train_opts *o)
{
	o->rank = ftk_dist_rank(d);
	o->world = ftk_dist_world(d);
	if (o->world > 1) {
		o->reduce_count = hook_count;
		o->reduce_grads = hook_grads;
		/* NCCL sums device memory in place; MPI gets a host copy (train.h) */
		o->reduce_grads_device = d->t == T_NCCL;
		o->reduce_max = hook_max;
		o->reduce_ctx = d;
	}
}
