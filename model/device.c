/*
 * device.c: --device cpu|cuda, and the dlopen of the CUDA backend.
 *
 * See device.h for why the CUDA backend is a separately loaded object.  The
 * loader resolves every symbol at once (RTLD_NOW), so a library that is
 * missing or an object built against another table fails here with
 * dlerror's text rather than later in the middle of a step.
 */
#include "model/device.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "model/nf4.h"

/*
 * dlopen path; on failure keep why in last.  A dependency the loader cannot
 * find (cudart, cuBLAS) is named as such: dlerror says "libX.so.N: cannot
 * open shared object file", which reads as if the backend itself were
 * missing.
 */
static void *try_open(const char *path, char *last, size_t cap)
{
	if (access(path, R_OK) != 0)
		return NULL;
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h)
		return h;
	const char *e = dlerror();
	const char *miss = strstr(e, ": cannot open shared object file");
	if (miss) {
		int n = (int)(miss - e);
		snprintf(last, cap,
			 "'%s' needs %.*s, which the loader cannot find (looked in the run path "
			 "recorded at build time, LD_LIBRARY_PATH and ld.so.cache): install the "
			 "CUDA runtime and cuBLAS of the CUDA version it was built with, or add "
			 "their folder to LD_LIBRARY_PATH",
			 path, n, e);
	} else {
		snprintf(last, cap, "%s", e);
	}
	return NULL;
}

/* The table size and ABI version the object was built with, against ours. */
static int check_abi(void *h, const char *path, struct ftk_error *err)
{
	unsigned (*abi)(size_t *table_bytes);
	*(void **)&abi = dlsym(h, "ftk_cuda_abi");
	if (!abi)
		return ftk_error_msg(err, FTK_EUNSUPPORTED,
				     "'%s' is a CUDA backend from before ftk_cuda_abi (a stale "
				     "build): rebuild it (make cuda)",
				     path);
	size_t bytes = 0;
	unsigned v = abi(&bytes);
	if (v != FTK_CUDA_ABI || bytes != sizeof(struct ftk_backend_ops))
		return ftk_error_msg(err, FTK_EUNSUPPORTED,
				     "'%s' is CUDA backend ABI %u with a %zu-byte table, this ftk "
				     "needs ABI %u with %zu bytes (a stale build?): rebuild it "
				     "(make cuda) or point FTK_CUDA_LIB at the matching one",
				     path, v, bytes, (unsigned)FTK_CUDA_ABI,
				     sizeof(struct ftk_backend_ops));
	return 0;
}

int ftk_cuda_load(struct ftk_cuda_api *api, struct ftk_error *err)
{
	static const char *rel[] = { "libftkcuda.so", "../build/model/libftkcuda.so",
				     "../model/libftkcuda.so", "../lib/ftk/libftkcuda.so" };
	char exe[PATH_MAX], dir[PATH_MAX], path[PATH_MAX + 64], last[2048] = "";
	void *h = NULL;
	memset(api, 0, sizeof(*api));
	const char *env = getenv("FTK_CUDA_LIB");
	if (env && *env) {
		snprintf(path, sizeof(path), "%s", env);
		h = try_open(path, last, sizeof(last));
		if (!h && !last[0])
			snprintf(last, sizeof(last), "FTK_CUDA_LIB='%s' does not exist", env);
	} else {
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		if (n > 0) {
			exe[n] = 0;
			snprintf(dir, sizeof(dir), "%s", exe);
			char *slash = strrchr(dir, '/');
			if (slash)
				*slash = 0;
			for (size_t i = 0; !h && i < sizeof(rel) / sizeof(rel[0]); i++) {
				snprintf(path, sizeof(path), "%s/%s", dir, rel[i]);
				h = try_open(path, last, sizeof(last));
			}
		}
	}
	if (!h) {
		if (last[0])
			return ftk_error_msg(err, FTK_EUNSUPPORTED,
					     "the CUDA backend could not be loaded: %s", last);
		return ftk_error_msg(err, FTK_EUNSUPPORTED,
				     "this ftk was built without the CUDA backend (no nvcc at build "
				     "time: libftkcuda.so not found)");
	}
	int rc = check_abi(h, path, err);
	if (rc < 0) {
		dlclose(h);
		return rc;
	}
	snprintf(api->path, sizeof(api->path), "%s", path);
	*(void **)&api->probe = dlsym(h, "ftk_cuda_probe");
	*(void **)&api->set_device = dlsym(h, "ftk_cuda_set_device");
	*(void **)&api->mem = dlsym(h, "ftk_cuda_mem");
	*(void **)&api->backend_new = dlsym(h, "ftk_cuda_backend_new");
	*(void **)&api->sync = dlsym(h, "ftk_cuda_sync");
	*(void **)&api->local_reserve = dlsym(h, "ftk_cuda_local_reserve");
	if (!api->probe || !api->set_device || !api->mem || !api->backend_new || !api->sync ||
	    !api->local_reserve)
		return ftk_error_msg(err, FTK_EUNSUPPORTED,
				     "'%s' lacks an entry point of the CUDA backend (stale build?)",
				     path);
	return 0;
}

static struct ftk_cuda_api g_api;
static int g_api_loaded;

/* Bytes available on this machine for a CPU run (MemAvailable), 0 when unknown. */
static size_t host_available(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	size_t kb = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %zu kB", &kb) == 1)
			break;
	fclose(f);
	return kb * 1024;
}

size_t ftk_device_free_bytes(const char *name)
{
	if (!name || !strcmp(name, "cpu"))
		return host_available();
	struct ftk_error e;
	if (!g_api_loaded && ftk_cuda_load(&g_api, &e) < 0)
		return 0;
	g_api_loaded = 1;
	char why[256];
	size_t fb = 0, tb = 0;
	if (g_api.probe(why, sizeof(why)) <= 0 || g_api.mem(&fb, &tb) < 0)
		return 0;
	return fb;
}

int ftk_device_backend(const char *name, int local_rank, struct ftk_backend **be,
		       struct ftk_error *err)
{
	if (!name || !strcmp(name, "cpu")) {
		*be = ftk_backend_cpu_new();
		return 0;
	}
	if (strcmp(name, "cuda") != 0)
		return ftk_error_msg(err, FTK_EUSAGE, "--device must be cpu or cuda, not '%s'",
				     name);
	struct ftk_cuda_api *a = &g_api;
	if (!g_api_loaded) {
		int rc = ftk_cuda_load(a, err);
		if (rc < 0)
			return rc;
		g_api_loaded = 1;
	}
	char why[512] = "";
	int n = a->probe(why, sizeof(why));
	if (n <= 0)
		return ftk_error_msg(err, FTK_EUNSUPPORTED, "no usable CUDA device: %s", why);
	if (a->set_device(local_rank % n) < 0)
		return ftk_error_msg(err, FTK_EUNSUPPORTED, "cannot select CUDA device %d",
				     local_rank % n);
	if (!(*be = a->backend_new(ftk_nf4_code)))
		return ftk_error_msg(err, FTK_ENOMEM, "out of memory for a CUDA backend instance");
	return 0;
}

int ftk_device_sync(const char *name, struct ftk_error *err)
{
	char why[512] = "";
	if (!name || !strcmp(name, "cpu") || !g_api_loaded || g_api.sync(why, sizeof(why)) == 0)
		return 0;
	return ftk_error_msg(err, FTK_EIO, "the GPU failed: %s", why);
}

int ftk_device_local_reserve(size_t *bytes)
{
	struct ftk_error e;
	char why[256];
	if (!g_api_loaded && ftk_cuda_load(&g_api, &e) < 0)
		return -1;
	g_api_loaded = 1;
	if (g_api.probe(why, sizeof(why)) <= 0)
		return -1;
	return g_api.local_reserve(bytes);
}
