/*
 * blas.h: which BLAS this process computes with, and whether it computes right.
 *
 * Every product of the CPU backend is a cblas_sgemm call, so a BLAS that
 * computes wrong trains wrong, silently.  That happens: OpenBLAS chooses its
 * kernels by the CPU it finds, older builds choose kernels that compute wrong
 * results (or crash) on some newer CPUs, and machines of ours therefore set
 * OPENBLAS_CORETYPE to force a kernel family.  Two things follow:
 *
 *   - what "exact resume" means depends on the kernel: one kernel family and
 *     one thread count give bit-identical numbers run after run, but another
 *     family (or another slicing of the same products over threads) rounds
 *     differently.  A run's state records the library, its core name and the
 *     thread count (ftk_blas_identify), and a resume under others says so.
 *   - before a model is loaded, ftk_blas_check compares sgemm on odd shapes
 *     (all four transposes, edge tiles, K not a multiple of 8, several threads
 *     at once) with a plain double-precision loop, and refuses a BLAS that is
 *     wrong by more than rounding can be.
 */
#ifndef FTK_MODEL_BLAS_H
#define FTK_MODEL_BLAS_H

#include "lib/err.h"

struct ftk_blas_id {
	char library[128];	/* e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64" */
	char core[64];		/* openblas_get_corename(), e.g. "Haswell"; "unknown" elsewhere */
};

/* Fill *id for the BLAS this process is linked with.  Never fails. */
void ftk_blas_identify(struct ftk_blas_id *id);

/*
 * Check sgemm against a double-precision loop on odd shapes, from `threads`
 * threads at once (1 or more; each thread runs every shape).  Runs once per
 * process: later calls return the first call's result.  A few milliseconds.
 * Returns 0, or FTK_EDATA with a message naming the BLAS, its core, the shape
 * and the error, and how to choose another kernel (OPENBLAS_CORETYPE).
 */
int ftk_blas_check(int threads, struct ftk_error *err);

#endif
