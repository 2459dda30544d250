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
 * A process started by mpirun is recognised by OMPI_COMM_WORLD_SIZE (or
 * PMIX_RANK); a process started alone is world 1 and never calls MPI_Init,
 * so the programs run as before without mpirun.
 */
#ifndef FTK_TRAINER_DIST_H
#define FTK_TRAINER_DIST_H

#include <stddef.h>
#include "lib/err.h"

struct ftk_train_opts;
struct ftk_dist;

/*
 * Start the data-parallel layer.  transport: "auto" (mpi when launched by
 * mpirun, else one process; nccl instead of mpi when device is "cuda"),
 * "none", "mpi" or "nccl".  Returns 0 and *out (free with ftk_dist_end),
 * FTK_EUNSUPPORTED when the transport is not available here (built
 * without MPI, NCCL not loadable), FTK_EUSAGE for an unknown transport or
 * inconsistent rank variables, FTK_ENET when a collective fails.
 */
int ftk_dist_start(struct ftk_dist **out, const char *transport, const char *device,
		   struct ftk_error *err);
/*
 * End every process of the job with status code (MPI_Abort; exit on one
 * process).  A rank that fails alone must call this: the others would wait
 * in their next collective for ever.
 */
void ftk_dist_abort(struct ftk_dist *d, int code);
/* Finish (MPI_Finalize when it was started); NULL is fine. */
void ftk_dist_end(struct ftk_dist *d);

int ftk_dist_rank(const struct ftk_dist *d);
int ftk_dist_world(const struct ftk_dist *d);
int ftk_dist_local_rank(const struct ftk_dist *d);	/* the GPU to use on this node */
const char *ftk_dist_transport(const struct ftk_dist *d);	/* "none", "mpi", "nccl" */

/* In-place sums over all processes; 0 or FTK_ENET.  Arrays may be device memory under nccl. */
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
