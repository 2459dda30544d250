/*
 * rows.cu: the backend's remaining per-row and per-element kernels (its own
 * code, included below) against ops.h's functions looped on the CPU, then
 * timed, on Llama 3 8B's shapes at 8 x 1024 tokens:
 *   rmsnorm_bwd  warp per row (ftk_rmsnorm_part_*)   against ftk_rmsnorm_row_bwd
 *   rope         thread per pair (ftk_rope_pair)     against ftk_rope_head, and back
 *   swiglu       thread per element                  against ftk_swiglu / ftk_swiglu_bwd
 * Build: make -C dev/cuda; run: ./rows
 */
#include "model/backend_cuda.cu"
#include "common.cuh"

int main(void)
{
	int M = 8 * 1024, C = 4096, NH = 32, hd = 128, H = 14336, ok = 1;
	float code[16] = { 0 };
	struct ftk_backend *be = ftk_cuda_backend_new(code);

	/* RMSNorm backward: dx += from dy, x, w and the forward's rstd */
	size_t n = (size_t)M * C;
	float *x = rand_host(n, 2.0f, 1), *w = rand_host(C, 1.0f, 2), *dy = rand_host(n, 1.0f, 3);
	float *y = (float *)malloc(n * sizeof(float)), *rstd = (float *)malloc(M * sizeof(float));
	float *dx = (float *)calloc(n, sizeof(float));
	for (int m = 0; m < M; m++) {
		rstd[m] = ftk_rmsnorm_row(y + (size_t)m * C, x + (size_t)m * C, w, C, 1e-5f);
		ftk_rmsnorm_row_bwd(dx + (size_t)m * C, dy + (size_t)m * C, x + (size_t)m * C, w,
				    rstd[m], C);
	}
	float *d_x = to_device(x, n), *d_w = to_device(w, C), *d_dy = to_device(dy, n);
	float *d_rstd = to_device(rstd, M), *d_dx;
	CK(cudaMalloc((void **)&d_dx, n * sizeof(float)));
	CK(cudaMemset(d_dx, 0, n * sizeof(float)));
	be->ops->rmsnorm_bwd(be, d_dx, d_dy, d_x, d_w, d_rstd, M, C);
	ok &= validate("rmsnorm_bwd (warp/row)", dx, d_dx, n, 1e-5);
	float t_rms = time_ms([&] { be->ops->rmsnorm_bwd(be, d_dx, d_dy, d_x, d_w, d_rstd, M, C); }, 20);

	/* RoPE forward on q (M, NH, hd), then back */
	size_t nq = (size_t)M * NH * hd;
	float *q = rand_host(nq, 1.0f, 4), *qr = (float *)malloc(nq * sizeof(float));
	float inv[64];
	for (int j = 0; j < hd / 2; j++)
		inv[j] = ftk_rope_inv_freq(j, hd, 500000.0f, 0.0f, 0.0f, 0.0f, 0);
	int32_t *pos = (int32_t *)malloc(M * sizeof(int32_t));
	for (int m = 0; m < M; m++)
		pos[m] = m % 1024;
	memcpy(qr, q, nq * sizeof(float));
	for (size_t i = 0; i < (size_t)M * NH; i++)
		ftk_rope_head(qr + i * hd, pos[i / NH], inv, hd, 1);
	float *d_q = to_device(q, nq), *d_inv = to_device(inv, hd / 2);
	int32_t *d_pos;
	CK(cudaMalloc((void **)&d_pos, M * sizeof(int32_t)));
	CK(cudaMemcpy(d_pos, pos, M * sizeof(int32_t), cudaMemcpyHostToDevice));
	be->ops->rope(be, d_q, d_pos, d_inv, M, NH, hd, 1);
	ok &= validate("rope (thread/pair)", qr, d_q, nq, 1e-5);
	be->ops->rope(be, d_q, d_pos, d_inv, M, NH, hd, -1);
	ok &= validate("rope and back", q, d_q, nq, 1e-5);
	float t_rope = time_ms([&] { be->ops->rope(be, d_q, d_pos, d_inv, M, NH, hd, 1); }, 20);

	/* SwiGLU forward and backward over (M, H) */
	size_t nh = (size_t)M * H;
	float *g = rand_host(nh, 3.0f, 5), *u = rand_host(nh, 1.0f, 6), *dout = rand_host(nh, 1.0f, 7);
	float *o = (float *)malloc(nh * sizeof(float)), *dg = (float *)malloc(nh * sizeof(float));
	float *du = (float *)malloc(nh * sizeof(float));
	for (size_t i = 0; i < nh; i++) {
		o[i] = ftk_swiglu(g[i], u[i]);
		ftk_swiglu_bwd(g[i], u[i], dout[i], &dg[i], &du[i]);
	}
	float *d_g = to_device(g, nh), *d_u = to_device(u, nh), *d_dout = to_device(dout, nh);
	float *d_o, *d_dg, *d_du;
	CK(cudaMalloc((void **)&d_o, nh * sizeof(float)));
	CK(cudaMalloc((void **)&d_dg, nh * sizeof(float)));
	CK(cudaMalloc((void **)&d_du, nh * sizeof(float)));
	be->ops->swiglu_fwd(be, d_o, d_g, d_u, nh);
	ok &= validate("swiglu_fwd", o, d_o, nh, 1e-5);
	be->ops->swiglu_bwd(be, d_dg, d_du, d_dout, d_g, d_u, nh);
	ok &= validate("swiglu_bwd dgate", dg, d_dg, nh, 1e-5);
	ok &= validate("swiglu_bwd dup", du, d_du, nh, 1e-5);
	float t_sf = time_ms([&] { be->ops->swiglu_fwd(be, d_o, d_g, d_u, nh); }, 20);
	float t_sb = time_ms([&] { be->ops->swiglu_bwd(be, d_dg, d_du, d_dout, d_g, d_u, nh); }, 20);

	printf("rmsnorm_bwd %.3f ms (%.0f GB/s)  rope %.3f ms (%.0f GB/s)\n", t_rms,
	       4.0 * n * 4 / 1e9 / (t_rms / 1e3), t_rope, 2.0 * nq * 4 / 1e9 / (t_rope / 1e3));
	printf("swiglu_fwd %.3f ms (%.0f GB/s)  swiglu_bwd %.3f ms (%.0f GB/s)\n", t_sf,
	       3.0 * nh * 4 / 1e9 / (t_sf / 1e3), t_sb, 5.0 * nh * 4 / 1e9 / (t_sb / 1e3));
	return ok ? 0 : 1;
}
