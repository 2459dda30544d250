/*
 * device.h: choosing the compute device, and loading the CUDA backend.
 *
 * The CUDA backend lives in its own shared object (libftkcuda.so, built by
 * the Makefile when nvcc is found) and is opened with dlopen only when a
 * program asks for it, so no ftk binary links cudart, cuBLAS or NCCL and
 * every one of them runs on a machine without a GPU or a driver.  Where the
 * object is looked for, in order: $FTK_CUDA_LIB; next to the program;
 * ../build/model/ and ../model/ from the program's directory (the
 * build tree: O/bin and O/build-san/bin); ../lib/ftk/ (an install).
 */
#ifndef FTK_MODEL_DEVICE_H
#define FTK_MODEL_DEVICE_H

#include <stddef.h>
#include "lib/err.h"
#include "model/backend.h"
#include "model/optim_ops.h"

/* The entry points libftkcuda.so exports (backend_cuda.cu). */
struct ftk_cuda_api {
	char path[4200];	/* the object that was opened */
	int (*probe)(char *why, size_t cap);
	int (*set_device)(int dev);
	int (*mem)(size_t *free_b, size_t *total_b);
	struct ftk_backend *(*backend_new)(const float *nf4_code);	/* an instance, or NULL */
	int (*sync)(char *why, size_t cap);	/* cudaDeviceSynchronize: 0, or -1 and why */
	int (*local_reserve)(size_t *bytes);	/* the flash kernels' local memory: 0 or -1 */
};

/*
 * Open libftkcuda.so and resolve its entry points (nothing is run on the
 * device).  Its ftk_cuda_abi() must return FTK_CUDA_ABI and the size of
 * this build's struct ftk_backend_ops, so a stale object is refused before its
 * table is read.  Returns 0 and fills *api (kept open for the life of the
 * process), or FTK_EUNSUPPORTED with a message saying why: the object was
 * not built (no nvcc at build time), could not be loaded (naming the CUDA
 * library the loader could not find), or is of another ABI (naming both).
 */
int ftk_cuda_load(struct ftk_cuda_api *api, struct ftk_error *err);

/*
 * A new backend instance for a --device name: "cpu", or "cuda" (loaded,
 * probed, and device number local_rank % device count selected).  Returns
 * 0 and *be (the caller frees it with ftk_backend_free, after the models
 * and memory that use it), FTK_EUSAGE for another name, or
 * FTK_EUNSUPPORTED saying why CUDA cannot be used here (not built,
 * libraries missing, no driver, no device).
 */
int ftk_device_backend(const char *name, int local_rank, struct ftk_backend **be,
		       struct ftk_error *err);

/*
 * Memory free for a run on device name: "cpu" MemAvailable, "cuda" the
 * free memory of the selected GPU (0 when CUDA cannot be loaded).  0 means
 * unknown.
 */
size_t ftk_device_free_bytes(const char *name);

/*
 * The local memory the driver reserves for the CUDA flash kernels on the
 * GPU local_rank would use (per-thread local bytes from
 * cudaFuncGetAttributes times the threads the GPU holds at once).  0 and
 * *bytes, or -1 when CUDA cannot be loaded or has no device.
 */
int ftk_device_local_reserve(size_t *bytes);

/*
 * Wait for the device's queued work (after ftk_device_backend chose it):
 * 0, or FTK_EIO when a kernel failed (cudart's words in err).  A no-op
 * returning 0 on "cpu".
 */
int ftk_device_sync(const char *name, struct ftk_error *err);

#endif
