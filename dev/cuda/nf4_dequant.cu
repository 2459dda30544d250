/*
 * nf4_dequant.cu: NF4 decoding into an fp32 tile (what feeds cuBLAS in
 * backend_cuda.cu) against ops.h's ftk_nf4_decode on the CPU; bandwidth of
 * decoding a 4096 x 4096 weight.
 */
#include "common.cuh"
#include "model/ops.h"

__constant__ float d_code[16];

__global__ void nf4_v1(float *out, const uint8_t *packed, const float *absmax, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		out[i] = ftk_nf4_decode(packed, absmax, d_code, i);
}

int main(void)
{
	/* the NF4 code values (bitsandbytes), as in model/nf4.c */
	static const float code[16] = { -1.0f, -0.6961928f, -0.52507305f, -0.3949175f,
		-0.28444138f, -0.18477343f, -0.091050036f, 0.0f, 0.0795803f, 0.1609302f,
		0.2461123f, 0.33791524f, 0.44070983f, 0.562617f, 0.72295684f, 1.0f };
	size_t n = (size_t)4096 * 4096, nb = n / 64;
	uint8_t *packed = (uint8_t *)malloc(n / 2);
	for (size_t i = 0; i < n / 2; i++)
		packed[i] = (uint8_t)(i * 2654435761u >> 13);
	float *absmax = rand_host(nb, 0.1f, 3), *ref = (float *)malloc(n * sizeof(float));
	for (size_t i = 0; i < nb; i++)
		absmax[i] = fabsf(absmax[i]) + 0.01f;
	for (size_t i = 0; i < n; i++)
		ref[i] = ftk_nf4_decode(packed, absmax, code, i);
	CK(cudaMemcpyToSymbol(d_code, code, sizeof(code)));
	uint8_t *dp;
	float *da = to_device(absmax, nb), *dout;
	CK(cudaMalloc((void **)&dp, n / 2));
	CK(cudaMemcpy(dp, packed, n / 2, cudaMemcpyHostToDevice));
	CK(cudaMalloc((void **)&dout, n * sizeof(float)));
	nf4_v1<<<(unsigned)((n + 255) / 256), 256>>>(dout, dp, da, n);
	int ok = validate("nf4 decode v1", ref, dout, n, 0.0);
	float t = time_ms([&] { nf4_v1<<<(unsigned)((n + 255) / 256), 256>>>(dout, dp, da, n); }, 20);
	printf("v1 %.3f ms (%.0f GB/s written)\n", t, n * 4.0 / 1e9 / (t / 1e3));
	return ok ? 0 : 1;
}
