/*
 * adamw.cu: the AdamW update (optim_ops.h's ftk_adamw_update, as the
 * trainer runs it on the host) on the GPU, validated and timed over 64M
 * parameters.
 */
#include "common.cuh"
#include "model/optim_ops.h"

__global__ void adamw_v1(float *w, float *m, float *v, const float *g, size_t n,
			 struct ftk_adamw_consts c)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		ftk_adamw_update(&w[i], &m[i], &v[i], g[i], &c);
}

int main(void)
{
	size_t n = (size_t)64 << 20;
	float *w = rand_host(n, 1, 1), *m = rand_host(n, 0.1f, 2), *v = rand_host(n, 0.1f, 3);
	float *g = rand_host(n, 1, 4);
	for (size_t i = 0; i < n; i++)
		v[i] = fabsf(v[i]);
	struct ftk_adamw_consts c = { 0.9f, 0.1f, 0.999f, 0.001f, 1e-8f, 0.9999f, -1e-2f, 0.0316f };
	float *dw = to_device(w, n), *dm = to_device(m, n), *dv = to_device(v, n), *dg = to_device(g, n);
	for (size_t i = 0; i < n; i++)
		ftk_adamw_update(&w[i], &m[i], &v[i], g[i], &c);
	adamw_v1<<<(unsigned)((n + 255) / 256), 256>>>(dw, dm, dv, dg, n, c);
	int ok = validate("adamw v1 w", w, dw, n, 1e-6) & validate("adamw v1 m", m, dm, n, 1e-6) &
		 validate("adamw v1 v", v, dv, n, 1e-6);
	float t = time_ms([&] { adamw_v1<<<(unsigned)((n + 255) / 256), 256>>>(dw, dm, dv, dg, n, c); }, 10);
	printf("v1 %.3f ms (%.0f GB/s)\n", t, n * 28.0 / 1e9 / (t / 1e3));
	return ok ? 0 : 1;
}
