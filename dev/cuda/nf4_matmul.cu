/*
 * nf4_matmul.cu: the three paths of an NF4 linear layer (backend_cuda.cu's
 * own code, included below), validated against a CPU loop over
 * ops.h's ftk_nf4_decode and timed per number of input rows M, so that
 * FTK_CUDA_NF4=auto's thresholds can be set from measurements:
 *   gemv    the fused dequantize-and-dot kernel (forward only)
 *   fused   the tiled GEMM that decodes NF4 in its operand load
 *   cublas  NF4 dequantized to fp32 tiles, each handed to cuBLAS
 * The weight is random codes with random block scales, and the 16-value
 * table is uniform in [-1, 1]: the kernels read both as data, so neither
 * the validation nor the timing depends on them being bitsandbytes' NF4.
 * Build: make -C dev/cuda; run: ./nf4_matmul [N K]   (default 4096 4096;
 * try 14336 4096 for a Llama 3 8B MLP projection)
 */
#include "model/backend_cuda.cu"
#include "common.cuh"

static float host_decode(const uint8_t *packed, const float *absmax, const float *code, size_t i)
{
	return ftk_nf4_decode(packed, absmax, code, i);
}

int main(int argc, char **argv)
{
	int N = argc > 2 ? atoi(argv[1]) : 4096, K = argc > 2 ? atoi(argv[2]) : 4096;
	size_t n = (size_t)N * K, nb = (n + 63) / 64;
	float code[16];
	for (int i = 0; i < 16; i++)
		code[i] = -1.0f + 2.0f * (float)i / 15.0f;
	struct ftk_backend *be = ftk_cuda_backend_new(code);
	uint8_t *packed = (uint8_t *)malloc((n + 1) / 2);
	unsigned s = 12345;
	for (size_t i = 0; i < (n + 1) / 2; i++) {
		s = s * 1664525u + 1013904223u;
		packed[i] = (uint8_t)(s >> 24);
	}
	float *absmax = rand_host(nb, 0.5f, 2);
	for (size_t i = 0; i < nb; i++)
		absmax[i] = 1.0f + absmax[i];	/* in [0.5, 1.5] */
	struct ftk_weight w;
	memset(&w, 0, sizeof(w));
	w.rows = N, w.cols = K, w.quant = FTK_QUANT_NF4;
	w.nf4.n = n, w.nf4.n_blocks = nb, w.nf4.packed = packed, w.nf4.absmax = absmax;
	be->ops->weight_prepare(be, &w);

	static const int Ms[] = { 1, 8, 64, 512, 4096 };
	static const char *paths[] = { "gemv", "fused", "cublas" };
	int ok = 1, R = 2;	/* output rows checked on the CPU */
	printf("W %d x %d NF4; ms per product (TFLOP/s); forward then backward-input\n", N, K);
	size_t nM = dev_quick() ? 3 : sizeof(Ms) / sizeof(Ms[0]);	/* quick: M = 1, 8, 64 */
	for (size_t mi = 0; mi < nM; mi++) {
		int M = Ms[mi], r = M < R ? M : R;
		float *x = rand_host((size_t)M * K, 1.0f, 3), *dy = rand_host((size_t)M * N, 1.0f, 4);
		float *ref = (float *)calloc((size_t)r * N, sizeof(float));
		float *refb = (float *)calloc((size_t)r * K, sizeof(float));
		for (int m = 0; m < r; m++)
			for (int o = 0; o < N; o++) {
				double acc = 0;
				for (int k = 0; k < K; k++) {
					float wv = host_decode(packed, absmax, code, (size_t)o * K + k);
					acc += (double)x[(size_t)m * K + k] * wv;
					refb[(size_t)m * K + k] += dy[(size_t)m * N + o] * wv;
				}
				ref[(size_t)m * N + o] = (float)acc;
			}
		float *dx = to_device(x, (size_t)M * K), *ddy = to_device(dy, (size_t)M * N), *dout,
		      *ddx;
		CK(cudaMalloc((void **)&dout, (size_t)M * N * sizeof(float)));
		CK(cudaMalloc((void **)&ddx, (size_t)M * K * sizeof(float)));
		double flop = 2.0 * M * (double)n;
		for (int p = 0; p < 3; p++) {
			char name[64];
			setenv("FTK_CUDA_NF4", paths[p], 1);
			be->ops->linear_fwd(be, dout, dx, &w, NULL, M);
			snprintf(name, sizeof(name), "M=%d %s fwd", M, paths[p]);
			ok &= validate(name, ref, dout, (size_t)r * N, 1e-4);
			float tf = time_ms([&] { be->ops->linear_fwd(be, dout, dx, &w, NULL, M); }, 10);
			float tb = -1;
			if (p > 0) {	/* the GEMV has no backward: "gemv" means cublas there */
				CK(cudaMemset(ddx, 0, (size_t)M * K * sizeof(float)));
				be->ops->linear_bwd_inp(be, ddx, ddy, &w, M);
				snprintf(name, sizeof(name), "M=%d %s bwd_inp", M, paths[p]);
				ok &= validate(name, refb, ddx, (size_t)r * K, 1e-4);
				tb = time_ms([&] { be->ops->linear_bwd_inp(be, ddx, ddy, &w, M); }, 10);
			}
			printf("  M=%-5d %-7s fwd %9.3f ms (%6.2f)", M, paths[p], tf, flop / tf / 1e9);
			if (tb >= 0)
				printf("   bwd_inp %9.3f ms (%6.2f)", tb, flop / tb / 1e9);
			printf("\n");
		}
		unsetenv("FTK_CUDA_NF4");
		CK(cudaFree(dx));
		CK(cudaFree(ddy));
		CK(cudaFree(dout));
		CK(cudaFree(ddx));
		free(x), free(dy), free(ref), free(refb);
	}
	be->ops->weight_release(be, &w);
	return ok ? 0 : 1;
}
