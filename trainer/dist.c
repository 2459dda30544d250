/*
 * dist.c: the data-parallel layer of dist.h, over MPI (host memory) or
 * NCCL (device memory, loaded with dlopen).
 *
 * Sums are done in place.  MPI_Allreduce with MPI_SUM on floats is not
 * guaranteed to add in rank order, but for two processes a + b == b + a
 * exactly, and OpenMPI's algorithms for small worlds are deterministic run
 * to run, which is what the equality test against one process needs (the
 * one-process run adds the same per-micro-batch contributions in another
 * order: equal within rounding, not bit for bit; see tests/cli/train-mpi).
 *
 * The NCCL transport is written against nccl.h's ABI (ncclUniqueId is 128
 * bytes, ncclFloat32 = 7, ncclFloat64 = 8, ncclInt32 = 2, ncclSum = 0,
 * ncclMax = 2) and resolves its functions from libnccl.so.2; the scalars
 * it reduces go through a small managed buffer from libcudart.  It has
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
#include "lib/err.h"
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
	int (*malloc_managed)(void **p, size_t n, unsigned flags);
	int (*sync)(void);
	int (*cuda_free)(void *p);
	int (*set_device)(int dev);
	int (*device_count)(int *n);
	void *comm;
	void *scratch;	/* 64 bytes of managed memory for scalars */
};

struct ftk_dist {
	enum transport t;
	int rank, world, local_rank;
	int mpi_started;
	struct nccl_api nc;
};

static const char *env(const char *a, const char *b)
{
	const char *v = getenv(a);
	if ((!v || !*v) && b)
		v = getenv(b);
	return v && *v ? v : NULL;
}

static int launched_by_mpirun(void)
{
	return env("OMPI_COMM_WORLD_SIZE", "PMIX_RANK") != NULL;
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

/* Rank, world and local rank from FTK_* or Slurm's variables (no MPI). */
static int ranks_from_env(struct ftk_dist *d, struct ftk_error *err)
{
	const char *r = env("FTK_RANK", "SLURM_PROCID"), *w = env("FTK_WORLD_SIZE", "SLURM_NTASKS");
	const char *l = env("FTK_LOCAL_RANK", "SLURM_LOCALID");
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

static int start_nccl(struct ftk_dist *d, struct ftk_error *err)
{
	struct nccl_api *n = &d->nc;
	void *h = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		h = dlopen("libnccl.so", RTLD_NOW | RTLD_LOCAL);
	void *c = dlopen("libcudart.so.13", RTLD_NOW | RTLD_LOCAL);
	if (!c)
		c = dlopen("libcudart.so", RTLD_NOW | RTLD_LOCAL);
	if (!h || !c)
		return ftk_error_msg(err, FTK_EUNSUPPORTED, "nccl: cannot load %s: %s",
				     !h ? "libnccl.so.2" : "libcudart", dlerror());
	*(void **)&n->get_id = dlsym(h, "ncclGetUniqueId");
	*(void **)&n->init_rank = dlsym(h, "ncclCommInitRank");
	*(void **)&n->all_reduce = dlsym(h, "ncclAllReduce");
	*(void **)&n->error_string = dlsym(h, "ncclGetErrorString");
	*(void **)&n->destroy = dlsym(h, "ncclCommDestroy");
	*(void **)&n->malloc_managed = dlsym(c, "cudaMallocManaged");
	*(void **)&n->sync = dlsym(c, "cudaDeviceSynchronize");
	*(void **)&n->cuda_free = dlsym(c, "cudaFree");
	*(void **)&n->set_device = dlsym(c, "cudaSetDevice");
	*(void **)&n->device_count = dlsym(c, "cudaGetDeviceCount");
	if (!n->get_id || !n->init_rank || !n->all_reduce || !n->error_string || !n->destroy ||
	    !n->malloc_managed || !n->sync || !n->cuda_free || !n->set_device || !n->device_count)
		return ftk_error_msg(err, FTK_EUNSUPPORTED, "nccl: missing entry points");
	/* the communicator belongs to the GPU current now: this process's one (the CUDA
	 * backend, built with the shared cudart, sees the same choice) */
	int ndev = 0;
	if (n->device_count(&ndev) != 0 || ndev < 1 || n->set_device(d->local_rank % ndev) != 0)
		return ftk_error_msg(err, FTK_EUNSUPPORTED, "nccl: no usable CUDA device for rank %d",
				     d->rank);

	struct nccl_id_s id;
	memset(&id, 0, sizeof(id));
	int rc;
	if (d->rank == 0 && (rc = n->get_id(&id)) != 0)
		return ftk_error_msg(err, FTK_ENET, "ncclGetUniqueId: %s", n->error_string(rc));
	if (d->t == T_NCCL && d->mpi_started + launched_by_mpirun() > 0) {
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
	if (n->malloc_managed(&n->scratch, 64, 1) != 0)
		return ftk_error_msg(err, FTK_ENOMEM, "nccl: cudaMallocManaged failed");
	return 0;
}

int ftk_dist_start(struct ftk_dist **out, const char *transport, const char *device,
		   struct ftk_error *err)
{
	struct ftk_dist *d = xcalloc(1, sizeof(*d));
	int cuda = device && !strcmp(device, "cuda"), rc = 0;
	d->world = 1;
	*out = d;
	if (!transport || !strcmp(transport, "auto")) {
		if (launched_by_mpirun())
			d->t = cuda ? T_NCCL : T_MPI;
		else if (cuda && env("FTK_DIST_FILE", NULL))
			d->t = T_NCCL;
		else
			d->t = T_NONE;
	} else if (!strcmp(transport, "none")) {
		d->t = T_NONE;
	} else if (!strcmp(transport, "mpi")) {
		d->t = T_MPI;
	} else if (!strcmp(transport, "nccl")) {
		d->t = T_NCCL;
	} else {
		return ftk_error_msg(err, FTK_EUSAGE, "--dist must be auto, none, mpi or nccl, not '%s'",
				     transport);
	}
	if (d->t == T_NCCL && !cuda)
		return ftk_error_msg(err, FTK_EUSAGE, "--dist nccl needs --device cuda (on the CPU "
				     "use --dist mpi)");
	if (d->t == T_MPI)
		rc = start_mpi(d, err);
	else if (d->t == T_NCCL) {
		rc = launched_by_mpirun() ? start_mpi(d, err) : ranks_from_env(d, err);
		if (rc == 0)
			rc = start_nccl(d, err);
	}
	return rc;
}

void ftk_dist_abort(struct ftk_dist *d, int code)
{
	fflush(stdout);
	fflush(stderr);
#ifdef FTK_HAVE_MPI
	int inited = 0;
	if (d && d->world > 1 && MPI_Initialized(&inited) == MPI_SUCCESS && inited)
		MPI_Abort(MPI_COMM_WORLD, code);
#else
	(void)d;
#endif
	exit(code);
}

void ftk_dist_end(struct ftk_dist *d)
{
	if (!d)
		return;
	if (d->t == T_NCCL && d->nc.comm)
		d->nc.destroy(d->nc.comm);
	if (d->nc.scratch)
		d->nc.cuda_free(d->nc.scratch);
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
	if (rc == 0 && d->nc.sync() != 0)
		rc = -1;
	if (rc != 0)
		return ftk_error_msg(err, FTK_ENET, "ncclAllReduce: %s",
				     rc > 0 ? d->nc.error_string(rc) : "device synchronize failed");
	return 0;
}

/* Scalars live in host memory: through the managed scratch buffer. */
static int nccl_reduce_host(struct ftk_dist *d, void *x, size_t bytes, size_t n, int type, int op,
			    struct ftk_error *err)
{
	for (size_t off = 0; off < n * bytes; off += 64) {
		size_t len = n * bytes - off < 64 ? n * bytes - off : 64;
		memcpy(d->nc.scratch, (char *)x + off, len);
		int rc = nccl_reduce(d, d->nc.scratch, len / bytes, type, op, err);
		if (rc < 0)
			return rc;
		memcpy((char *)x + off, d->nc.scratch, len);
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
		o->reduce_max = hook_max;
		o->reduce_ctx = d;
	}
}
