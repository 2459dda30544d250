/*
 * backend.c: what every backend instance shares (backend.h): freeing one.
 * Each kind of backend makes its own instances (ftk_backend_cpu_new,
 * libftkcuda.so's ftk_cuda_backend_new through device.c).
 */
#include "model/backend.h"

void ftk_backend_free(struct ftk_backend *be)
{
	if (be)
		be->ops->destroy(be);
}
