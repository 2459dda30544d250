/*
 * common.cuh: the validate-and-time helpers of dev/cuda (llm.c's dev/cuda
 * pattern): each kernel file builds inputs on the host, runs the ops.h
 * reference on the CPU, runs every version of its kernel, checks each
 * against the reference and then times it with CUDA events.
 */
#pragma once
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * FTK_DEV_QUICK=1 (make check-gpu): validation only, at the programs' small
 * sizes, each timed kernel run once instead of timed: seconds, not minutes.
 */
static inline int dev_quick(void)
{
	const char *q = getenv("FTK_DEV_QUICK");
	return q && *q && strcmp(q, "0") != 0;
}

#ifndef CK	/* a program that includes backend_cuda.cu first uses the backend's */
#define CK(call)                                                                        \
	do {                                                                            \
		cudaError_t e_ = (call);                                                \
		if (e_ != cudaSuccess) {                                                \
			fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__,              \
				cudaGetErrorString(e_));                                \
			exit(1);                                                        \
		}                                                                       \
	} while (0)
#endif

static inline float *rand_host(size_t n, float scale, unsigned seed)
{
	float *h = (float *)malloc(n * sizeof(float));
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1664525u + 1013904223u;
		h[i] = ((float)(seed >> 8) / (float)(1 << 24) * 2.0f - 1.0f) * scale;
	}
	return h;
}

static inline float *to_device(const float *h, size_t n)
{
	float *d;
	CK(cudaMalloc((void **)&d, n * sizeof(float)));
	CK(cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice));
	return d;
}

/* Largest |gpu - ref| relative to the largest |ref|; prints and returns pass/fail. */
static inline int validate(const char *name, const float *ref, const float *dev, size_t n,
			   double tol)
{
	float *h = (float *)malloc(n * sizeof(float));
	CK(cudaMemcpy(h, dev, n * sizeof(float), cudaMemcpyDeviceToHost));
	double mx = 0, worst = 0;
	for (size_t i = 0; i < n; i++) {
		mx = fmax(mx, fabs(ref[i]));
		double d = fabs((double)h[i] - ref[i]);
		worst = d > worst || isnan(d) ? (isnan(d) ? INFINITY : d) : worst;
	}
	free(h);
	double rel = mx > 0 ? worst / mx : worst;
	printf("%-28s max_rel %.3e  %s\n", name, rel, rel <= tol ? "ok" : "FAIL");
	return rel <= tol;
}

/* Mean milliseconds of `reps` launches of f (after one warm-up). */
template <class F> static inline float time_ms(F f, int reps)
{
	if (dev_quick()) {	/* run once, so a launch error still shows; no timing */
		f();
		CK(cudaDeviceSynchronize());
		return 0.0f;
	}
	cudaEvent_t a, b;
	CK(cudaEventCreate(&a));
	CK(cudaEventCreate(&b));
	f();
	CK(cudaEventRecord(a));
	for (int i = 0; i < reps; i++)
		f();
	CK(cudaEventRecord(b));
	CK(cudaEventSynchronize(b));
	float ms = 0;
	CK(cudaEventElapsedTime(&ms, a, b));
	return ms / reps;
}
