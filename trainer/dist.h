/*
 * dist.h: data-parallel training across processes (issue 9).
 *
 * Every process holds the whole (NF4) base model and the LoRA weights; each
 * trains on its share of the global batch (train.h: rank r keeps the
 * micro-batches with index % world == r of one global stream), and after
 * the backward passes the LoRA gradients and the loss sum are summed over
 * processes, so clipping and AdamW run identically everywhere and every
 * process keeps the same weights.  The target count (the loss normaliser)
 * is summed before the backward passes.  Only rank 0 writes the run
 * directory (train.c).
 *
 * Two transports behind one interface:
 *   mpi   MPI_Allreduce over host memory (OpenMPI); the CPU backend's path,
 *         and the one tested here with `mpirun -np 2`.
 *   nccl  ncclAllReduce over the gradients in device (managed) memory, one
 *         process per GPU.  libnccl and libcudart are opened with dlopen,
 *         so nothing links them.  NCCL's unique id is exchanged over MPI
 *         when the processes were started by mpirun, or through a shared
 *         file (FTK_DIST_FILE, rank 0 writes it atomically, the others wait
 *         for it) for schedulers without MPI, with FTK_RANK, FTK_WORLD_SIZE
 *         and FTK_LOCAL_RANK (or Slurm's SLURM_PROCID, SLURM_NTASKS,
 *         SLURM_LOCALID) giving each process its place.
 *
 * The route (ftk_dist_route) is chosen by what the build has and what the
 * environment gives.  A process started by mpirun (OMPI_COMM_WORLD_SIZE) or
 * by a PMIx launcher (PMIX_RANK: srun --mpi=pmix) takes its rank from MPI
 * when the build has MPI; without MPI a GPU run takes it from the
 * launcher's variables and exchanges NCCL's id through FTK_DIST_FILE, and a
 * CPU run of several processes is refused by name.  A process started
 * alone is world 1 and never calls MPI_Init, so the programs run as before
 * without mpirun.
 */
#ifndef FTK_TRAINER_DIST_H
#define FTK_TRAINER_DIST_H

#include <stddef.h>
#include "lib/err.h"

struct ftk_train_opts;
struct ftk_dist;

/*
 * --dist: how the processes talk.  FTK_DIST_MODES lists the words in the
 * enum's order, so that ftk-train's option table (an FTK_OPT_CHOICE row,
 * which the --config file's "dist" key goes through too) refuses any other
 * word with this list, and the index it stores is the mode.
 */
#define FTK_DIST_MODES "auto|none|mpi|nccl"
enum ftk_dist_mode {
	FTK_DIST_MODE_AUTO = 0,	/* mpi or nccl when a launcher started several processes */
	FTK_DIST_MODE_NONE,	/* one process, whatever the environment says */
	FTK_DIST_MODE_MPI,
	FTK_DIST_MODE_NCCL,
};

/* Where a process's rank and world size come from. */
enum ftk_dist_ranks {
	FTK_DIST_ALONE = 0,	/* one process */
	FTK_DIST_BY_MPI,	/* MPI_Init under mpirun or PMIx; NCCL's id by MPI_Bcast */
	FTK_DIST_BY_ENV,	/* FTK_RANK/FTK_WORLD_SIZE, Slurm's or the launcher's variables;
				 * NCCL's id through FTK_DIST_FILE */
};

struct ftk_dist_route {
	const char *transport;	/* "none", "mpi", "nccl" (static strings) */
	enum ftk_dist_ranks ranks;
	const char *launcher;	/* "mpirun", "pmix" or "" (none seen) */
};

/*
 * Decide the route for --dist mode on device, given whether this
 * build has MPI (have_mpi; a parameter so both builds' decisions can be
 * tested in one) and the launcher's variables in the environment.  Starts
 * nothing.  Returns 0 and *r; FTK_EUSAGE for nccl off the GPU (or a mode
 * outside the enum); FTK_EUNSUPPORTED when the route needs MPI and the build has
 * none (--dist mpi, or a CPU run started as several processes by mpirun or
 * PMIx), the message naming the launcher's variable.
 */
int ftk_dist_route(enum ftk_dist_mode mode, const char *device, int have_mpi,
		   struct ftk_dist_route *r, struct ftk_error *err);

/*
 * Open libnccl.so.2, looking in order at $FTK_NCCL_LIB (the library, or a
 * folder holding it), the loader's path, and the nvidia/nccl/lib folders
 * of the python3 on PATH (its sys.path: the NCCL wheel PyTorch installs).
 * Returns the dlopen handle and the path it took in path (cap bytes), or
 * NULL with FTK_EUNSUPPORTED in err, saying where it looked.
 */
void *ftk_dist_nccl_open(char *path, size_t cap, struct ftk_error *err);

struct strbuf;
/*
 * The wheel part of that search: asks the python3 on PATH for its sys.path
 * and looks for nvidia/nccl/lib/libnccl.so.2 (or nvidia/cu13/lib/) in each
 * folder.  Returns 1 with the file's path in path, or 0 with the folders it
 * looked in appended to looked (or why it could look nowhere).
 */
int ftk_dist_nccl_wheel(char *path, size_t cap, struct strbuf *looked);

/*
 * Start the data-parallel layer.  mode: FTK_DIST_MODE_AUTO (mpi when
 * launched by mpirun, else one process; nccl instead of mpi when device is
 * "cuda"), _NONE, _MPI or _NCCL.  Returns 0 and *out (free with
 * ftk_dist_end), FTK_EUNSUPPORTED when the transport is not available here
 * (built without MPI, NCCL not loadable), FTK_EUSAGE for nccl off the GPU or
 * inconsistent rank variables, FTK_ENET when a collective fails.
 */
int ftk_dist_start(struct ftk_dist **out, enum ftk_dist_mode mode, const char *device,
		   struct ftk_error *err);
/*
 * A rank that fails alone calls this before it returns its error, or the
 * others would wait in their next collective for ever: with ranks from MPI
 * and a world above 1 it ends every process of the job with status code
 * (MPI_Abort, which does not return).  Otherwise it returns, and the
 * program exits as usual (over NCCL without MPI nothing can end the others
 * from here: the launcher must, as srun --kill-on-bad-exit=1 does).
 */
void ftk_dist_abort(struct ftk_dist *d, int code);
/* Finish (MPI_Finalize when it was started); NULL is fine. */
void ftk_dist_end(struct ftk_dist *d);

int ftk_dist_rank(const struct ftk_dist *d);
int ftk_dist_world(const struct ftk_dist *d);
int ftk_dist_local_rank(const struct ftk_dist *d);	/* the GPU to use on this node */
const char *ftk_dist_transport(const struct ftk_dist *d);	/* "none", "mpi", "nccl" */

/*
 * In-place sums over all processes; 0 or FTK_ENET.  sum_f32's array is
 * host memory under mpi (not assumed CUDA-aware) and device memory under
 * nccl; sum_f64's (and max_int's) is host memory under both.
 */
int ftk_dist_sum_f32(struct ftk_dist *d, float *x, size_t n, struct ftk_error *err);
int ftk_dist_sum_f64(struct ftk_dist *d, double *x, size_t n, struct ftk_error *err);
/* Maximum of one int over processes (e.g. "any rank was told to stop"). */
int ftk_dist_max_int(struct ftk_dist *d, int *x, struct ftk_error *err);

/*
 * The NCCL id's rendezvous through a file on a shared file system, for
 * launchers without MPI (FTK_DIST_FILE).  Rank 0 writes id (n bytes)
 * followed by key to path, atomically (a temporary file renamed into
 * place); every other rank waits up to timeout_ms for a file that holds n
 * bytes and then exactly key, and copies the id.  key (FTK_DIST_JOB, else
 * Slurm's SLURM_JOB_ID; NULL or "" for none) tells a file left by an
 * earlier job from this job's.  Returns 0, FTK_EIO (rank 0 could not write
 * it) or FTK_ENET (timed out; the message says whether a file of another
 * job was there).
 */
int ftk_dist_file_id(const char *path, int rank, const char *key, char *id, size_t n,
		     int timeout_ms, struct ftk_error *err);

/*
 * Set o->rank, o->world and the reduce hooks (reduce_count, reduce_grads,
 * reduce_ctx) so ftk_train_run() trains data-parallel over d.  With world 1
 * the hooks stay NULL.
 */
void ftk_dist_attach(struct ftk_dist *d, struct ftk_train_opts *o);

#endif
