/*
 * crossentropy.cu: cross-entropy forward and gradient over a Llama 3 sized
 * vocabulary, against ops.h's ftk_xent_row on the CPU.
 *   v1  one thread per row calling ftk_xent_row (the first backend version)
 *   v2  one block per row, the threads' strided parts combined in shared
 *       memory: backend_cuda.cu's own k_xent, included from the backend so
 *       this times exactly what ships
 * Build: make -C dev/cuda; run: ./crossentropy
 */
#include "model/backend_cuda.cu"
#include "common.cuh"

__global__ void xent_v1(float *loss, float *logits, const int32_t *target, int M, int V, float gs)
{
	int m = blockIdx.x * blockDim.x + threadIdx.x;
	if (m < M)
		loss[m] = ftk_xent_row(logits + (size_t)m * V, V, target[m], gs);
}

int main(void)
{
	int M = 1024, V = 128256;
	size_t n = (size_t)M * V;
	float *x = rand_host(n, 8.0f, 1), *ref = (float *)malloc(n * sizeof(float));
	float *lref = (float *)malloc(M * sizeof(float));
	int32_t *tgt = (int32_t *)malloc(M * sizeof(int32_t));
	for (int m = 0; m < M; m++)
		tgt[m] = (int32_t)(((unsigned)m * 2654435761u) % (unsigned)V);
	memcpy(ref, x, n * sizeof(float));
	for (int m = 0; m < M; m++)
		lref[m] = ftk_xent_row(ref + (size_t)m * V, V, tgt[m], 1.0f / M);
	float *dx = to_device(x, n), *dl, *dwork;
	int32_t *dt;
	CK(cudaMalloc((void **)&dl, M * sizeof(float)));
	CK(cudaMalloc((void **)&dwork, n * sizeof(float)));
	CK(cudaMalloc((void **)&dt, M * sizeof(int32_t)));
	CK(cudaMemcpy(dt, tgt, M * sizeof(int32_t), cudaMemcpyHostToDevice));
	int ok = 1;
	auto v1 = [&] { xent_v1<<<(M + 127) / 128, 128>>>(dl, dwork, dt, M, V, 1.0f / M); };
	auto v2 = [&] { k_xent<<<M, XENT_THREADS>>>(dl, dwork, dt, M, V, 1.0f / M); };
	CK(cudaMemcpy(dwork, dx, n * sizeof(float), cudaMemcpyDeviceToDevice));
	v1();
	ok &= validate("xent v1 loss", lref, dl, M, 1e-5);
	ok &= validate("xent v1 grad", ref, dwork, n, 1e-5);
	CK(cudaMemcpy(dwork, dx, n * sizeof(float), cudaMemcpyDeviceToDevice));
	v2();
	ok &= validate("xent v2 loss", lref, dl, M, 1e-5);
	ok &= validate("xent v2 grad", ref, dwork, n, 1e-5);
	/* timing overwrites the logits each time: the numbers are no longer checked */
	float t1 = time_ms(v1, 5), t2 = time_ms(v2, 20);
	double gb = 2.0 * n * sizeof(float) / 1e9;
	printf("v1 %.3f ms (%.0f GB/s)   v2 %.3f ms (%.0f GB/s)\n", t1, gb / (t1 / 1e3), t2,
	       gb / (t2 / 1e3));
	return ok ? 0 : 1;
}
