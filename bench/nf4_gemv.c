/*
 * nf4_gemv.c: the ftk side of bench/nf4_gemv.sh (built by that script
 * against the trainer and lib archives).
 *
 *   nf4_gemv N K ROUNDS
 *       For an NF4 weight (N, K) of random values and M = 1, 2, 4, 8 input
 *       rows, on one thread, times (best of ROUNDS, the three interleaved
 *       in every round):
 *         before   the CPU backend's few-rows loop as it was before the
 *                  fused GEMV work of issue 9 (every weight decoded with
 *                  ftk_nf4_decode inside the dot, once per input row),
 *                  copied here as the baseline;
 *         backend  the CPU backend's linear_fwd as it is now (for M = 1 the
 *                  fused loop that decodes each 64-block once, then the
 *                  dots; tiles and sgemm above);
 *         tiles    dequantize to a 1M-value tile, then sgemm (what the
 *                  backend does above 4 rows), called directly.
 *       and prints one line per M with the three times in ms, the ratios
 *       before/backend and tiles/backend, and the largest relative
 *       difference between the outputs (they must agree to rounding).
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "model/backend.h"
#include "model/nf4.h"
#include "model/ops.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void before(const struct ftk_nf4 *q, const float *x, float *out, int M, int N, int K)
{
	for (int n = 0; n < N; n++)
		for (int m = 0; m < M; m++) {
			const float *xr = x + (size_t)m * K;
			float acc = 0.0f;
			size_t base = (size_t)n * K;
			for (int k = 0; k < K; k++)
				acc += xr[k] * ftk_nf4_decode(q->packed, q->absmax, ftk_nf4_code, base + k);
			out[(size_t)m * N + n] = acc;
		}
}

static void tiles(const struct ftk_nf4 *q, const float *x, float *out, int M, int N, int K,
		  float *tile)
{
	size_t R = ((size_t)1 << 20) / (size_t)K;
	if (R < 1)
		R = 1;
	for (size_t r0 = 0; r0 < (size_t)N; r0 += R) {
		size_t r = (size_t)N - r0 < R ? (size_t)N - r0 : R;
		ftk_nf4_dequant(q, r0 * K, r * K, tile);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, (int)r, K, 1.0f, x, K, tile, K,
			    0.0f, out + r0, N);
	}
}

static double rel(const float *a, const float *b, size_t n)
{
	double md = 0, mr = 0;
	for (size_t i = 0; i < n; i++) {
		md = fmax(md, fabs((double)a[i] - b[i]));
		mr = fmax(mr, fabs((double)b[i]));
	}
	return mr > 0 ? md / mr : md;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: nf4_gemv N K ROUNDS\n");
		return 2;
	}
	int N = atoi(argv[1]), K = atoi(argv[2]), rounds = atoi(argv[3]);
	size_t nk = (size_t)N * K;
	float *W = malloc(nk * sizeof(float));
	srand(1);
	for (size_t i = 0; i < nk; i++)
		W[i] = ((float)rand() / (float)RAND_MAX - 0.5f) * 0.1f;
	struct ftk_weight w = { N, K, FTK_QUANT_NF4, NULL, { 0 }, NULL };
	ftk_nf4_quantize(&w.nf4, W, nk, NULL);
	struct ftk_backend *cpu = ftk_backend_cpu_new();	/* one thread */
	cpu->ops->weight_prepare(cpu, &w);
	size_t tile_n = (size_t)K > ((size_t)1 << 20) ? (size_t)K : (size_t)1 << 20;
	float *x = malloc((size_t)8 * K * sizeof(float)), *tile = malloc(tile_n * sizeof(float));
	float *o[3];
	for (int i = 0; i < 3; i++)
		o[i] = malloc((size_t)8 * N * sizeof(float));
	for (int i = 0; i < 8 * K; i++)
		x[i] = (float)rand() / (float)RAND_MAX - 0.5f;
	static const int Ms[] = { 1, 2, 4, 8 };
	for (int mi = 0; mi < 4; mi++) {
		int M = Ms[mi];
		double best[3] = { 1e30, 1e30, 1e30 };
		for (int r = 0; r < rounds; r++) {
			double t0 = now();
			before(&w.nf4, x, o[0], M, N, K);
			double t1 = now();
			cpu->ops->linear_fwd(cpu, o[1], x, &w, NULL, M);
			double t2 = now();
			tiles(&w.nf4, x, o[2], M, N, K, tile);
			double t3 = now();
			best[0] = fmin(best[0], t1 - t0);
			best[1] = fmin(best[1], t2 - t1);
			best[2] = fmin(best[2], t3 - t2);
		}
		double d = fmax(rel(o[0], o[2], (size_t)M * N), rel(o[1], o[2], (size_t)M * N));
		printf("N=%d K=%d M=%d  before %.2f ms  backend %.2f ms  tiles %.2f ms  "
		       "before/backend %.2f  tiles/backend %.2f  max_rel_diff %.1e\n",
		       N, K, M, best[0] * 1e3, best[1] * 1e3, best[2] * 1e3, best[0] / best[1],
		       best[2] / best[1], d);
	}
	ftk_nf4_free(&w.nf4);
	ftk_backend_free(cpu);
	free(W), free(x), free(tile);
	for (int i = 0; i < 3; i++)
		free(o[i]);
	return 0;
}
