/*
 * rmsnorm_forward.cu: RMSNorm forward, two kernels against ops.h's
 * ftk_rmsnorm_row on the CPU.
 *   v1  one thread per row calling ftk_rmsnorm_row (what backend_cuda.cu runs)
 *   v2  one warp per row: a shuffle reduction of the sum of squares
 * Build: make -C dev/cuda rmsnorm_forward; run: ./rmsnorm_forward
 */
#include "common.cuh"
#include "model/ops.h"

__global__ void rmsnorm_v1(float *out, float *rstd, const float *x, const float *w, int M, int C,
			   float eps)
{
	int m = blockIdx.x * blockDim.x + threadIdx.x;
	if (m < M)
		rstd[m] = ftk_rmsnorm_row(out + (size_t)m * C, x + (size_t)m * C, w, C, eps);
}

__global__ void rmsnorm_v2(float *out, float *rstd, const float *x, const float *w, int M, int C,
			   float eps)
{
	int m = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
	if (m >= M)
		return;
	const float *r = x + (size_t)m * C;
	float ss = 0.0f;
	for (int i = lane; i < C; i += 32)
		ss += r[i] * r[i];
	for (int o = 16; o > 0; o /= 2)
		ss += __shfl_xor_sync(0xffffffffu, ss, o);
	float s = 1.0f / sqrtf(ss / (float)C + eps);
	for (int i = lane; i < C; i += 32)
		out[(size_t)m * C + i] = r[i] * s * w[i];
	if (lane == 0)
		rstd[m] = s;
}

int main(void)
{
	int M = 8 * 1024, C = 4096;
	float *x = rand_host((size_t)M * C, 2.0f, 1), *w = rand_host(C, 1.0f, 2);
	float *ref = (float *)malloc((size_t)M * C * sizeof(float));
	for (int m = 0; m < M; m++)
		ftk_rmsnorm_row(ref + (size_t)m * C, x + (size_t)m * C, w, C, 1e-5f);
	float *dx = to_device(x, (size_t)M * C), *dw = to_device(w, C), *dout, *drstd;
	CK(cudaMalloc((void **)&dout, (size_t)M * C * sizeof(float)));
	CK(cudaMalloc((void **)&drstd, (size_t)M * sizeof(float)));
	int ok = 1;
	rmsnorm_v1<<<(M + 127) / 128, 128>>>(dout, drstd, dx, dw, M, C, 1e-5f);
	ok &= validate("rmsnorm v1 (thread/row)", ref, dout, (size_t)M * C, 1e-5);
	float t1 = time_ms([&] { rmsnorm_v1<<<(M + 127) / 128, 128>>>(dout, drstd, dx, dw, M, C, 1e-5f); }, 20);
	rmsnorm_v2<<<(M + 7) / 8, 256>>>(dout, drstd, dx, dw, M, C, 1e-5f);
	ok &= validate("rmsnorm v2 (warp/row)", ref, dout, (size_t)M * C, 1e-5);
	float t2 = time_ms([&] { rmsnorm_v2<<<(M + 7) / 8, 256>>>(dout, drstd, dx, dw, M, C, 1e-5f); }, 20);
	double gb = 2.0 * M * C * sizeof(float) / 1e9;
	printf("v1 %.3f ms (%.0f GB/s)   v2 %.3f ms (%.0f GB/s)\n", t1, gb / (t1 / 1e3), t2,
	       gb / (t2 / 1e3));
	return ok ? 0 : 1;
}
