/*
 * test_nf4_kernels.c: the CUDA backend's fused NF4 kernels run on the CPU.
 *
 * model/nf4_kernels.h holds each kernel's body as per-thread phase
 * functions; backend_cuda.cu calls them with blockIdx/threadIdx and puts
 * the barriers (or warp shuffles) between them.  Here an emulator runs
 * every phase for every thread id of every block in order, which is a
 * legal schedule of the real kernel since no phase reads what another
 * thread writes in the same phase.  Shared memory is a malloc of exactly
 * the kernel's size (ASan sees an index past it) poisoned with NaN before
 * each load phase; after the load every slot the accumulate phase reads
 * must hold exactly x, or exactly the dequantized weight, or 0 outside the
 * matrix.  The GEMV's shuffle reduction is emulated as the same xor
 * butterfly.
 *
 * References: dequantize-then-sgemm (ftk_nf4_dequant and OpenBLAS) on odd
 * shapes (N and K not multiples of the tiles, odd K, K not a multiple of
 * 64 so rows start inside a block), and bitsandbytes' own dequantized
 * weights (datasets/models/stories260K/nf4_reference.json, bitsandbytes'
 * packed bytes and recovered scales fed to the kernels): one-hot inputs
 * make every kernel output a single weight, which must equal bitsandbytes'
 * value bit for bit.
 *
 * Last, the CPU backend's own NF4 forward at generation sizes (M = 1 to 4)
 * against the same dequantize-then-sgemm.
 */
#include <cblas.h>
#include <math.h>
#include <string.h>
#include "testutil.h"
#include "nf4_ref.h"
#include "lib/json.h"
#include "lib/strbuf.h"
#include "model/backend.h"
#include "model/nf4.h"
#include "model/nf4_kernels.h"

static uint64_t rng = 12345;

static float frand(void)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (float)((double)(rng >> 40) / (double)(1 << 24) * 2.0 - 1.0);
}

static float *rand_buf(size_t n, float scale)
{
	float *p = malloc(n * sizeof(float) + 1);
	for (size_t i = 0; i < n; i++)
		p[i] = frand() * scale;
	return p;
}

/* ---------------------------------------------------------------- the emulator */

/* The GEMV kernel: blocks of WARPS warps, one output row per warp, xor-butterfly shuffles. */
static void emu_gemv(const struct ftk_nf4_view *w, const float *x, const float *bias, int M,
		     float *out)
{
	int blocks = (w->N + FTK_NF4_GEMV_WARPS - 1) / FTK_NF4_GEMV_WARPS;
	float lanes[FTK_NF4_WARP][FTK_NF4_GEMV_MAXM], next[FTK_NF4_WARP][FTK_NF4_GEMV_MAXM];
	for (int b = 0; b < blocks; b++)
		for (int wp = 0; wp < FTK_NF4_GEMV_WARPS; wp++) {
			int n = b * FTK_NF4_GEMV_WARPS + wp;
			if (n >= w->N)
				continue;
			for (int l = 0; l < FTK_NF4_WARP; l++)
				ftk_nf4_gemv_lane(w, x, M, n, l, lanes[l]);
			for (int off = FTK_NF4_WARP / 2; off > 0; off /= 2) {
				for (int l = 0; l < FTK_NF4_WARP; l++)
					for (int m = 0; m < FTK_NF4_GEMV_MAXM; m++)
						next[l][m] = lanes[l][m] + lanes[l ^ off][m];
				memcpy(lanes, next, sizeof(lanes));
			}
			ftk_nf4_gemv_store(out, bias, M, w->N, n, lanes[0]);
		}
}

/*
 * After a load phase: every slot the accumulate phase reads holds want(r, c)
 * exactly (rows r < TK, columns c < TM or TN; the padding column is never
 * read).  Returns the number of slots that do not.
 */
static size_t tile_bad(const float *S, int ld, int cols, const float *src, int src_ld,
		       int r0, int rmax, int c0, int cmax, int transposed)
{
	size_t bad = 0;
	for (int r = 0; r < FTK_NF4_TK; r++)
		for (int c = 0; c < cols; c++) {
			int rr = r0 + r, cc = c0 + c;
			float want = 0.0f;
			if (rr < rmax && cc < cmax)
				want = transposed ? src[(size_t)cc * src_ld + rr]
						  : src[(size_t)rr * src_ld + cc];
			float got = S[r * ld + c];
			if (memcmp(&got, &want, 4) && !(got == 0.0f && want == 0.0f))
				bad++;
		}
	return bad;
}

struct emu {
	float *As, *Bs, *acc;	/* shared tiles of exactly the kernel's size; (THREADS, ACC) */
	size_t bad_tiles;	/* load-phase slots that were not exactly right */
};

static void emu_init(struct emu *e)
{
	e->As = malloc(FTK_NF4_AS_FLOATS * sizeof(float));
	e->Bs = malloc(FTK_NF4_BS_FLOATS * sizeof(float));
	e->acc = malloc((size_t)FTK_NF4_THREADS * FTK_NF4_ACC * sizeof(float));
	e->bad_tiles = 0;
}

static void emu_free(struct emu *e)
{
	free(e->As), free(e->Bs), free(e->acc);
}

static void poison(struct emu *e)
{
	for (int i = 0; i < FTK_NF4_AS_FLOATS; i++)
		e->As[i] = NAN;
	for (int i = 0; i < FTK_NF4_BS_FLOATS; i++)
		e->Bs[i] = NAN;
}

/* The forward GEMM kernel; deq (N, K) is the dequantized weight the tiles must hold. */
static void emu_fwd(struct emu *e, const struct ftk_nf4_view *w, const float *deq, const float *x,
		    const float *bias, int M, float *out)
{
	int N = w->N, K = w->K;
	for (int bm = 0; bm < (M + FTK_NF4_TM - 1) / FTK_NF4_TM; bm++)
		for (int bn = 0; bn < (N + FTK_NF4_TN - 1) / FTK_NF4_TN; bn++) {
			memset(e->acc, 0, (size_t)FTK_NF4_THREADS * FTK_NF4_ACC * sizeof(float));
			for (int k0 = 0; k0 < K; k0 += FTK_NF4_TK) {
				poison(e);
				for (int t = 0; t < FTK_NF4_THREADS; t++)
					ftk_nf4_fwd_load(w, x, M, bm, bn, k0, e->As, e->Bs, t);
				/* barrier */
				e->bad_tiles += tile_bad(e->As, FTK_NF4_LDA, FTK_NF4_TM, x, K, k0, K,
							 bm * FTK_NF4_TM, M, 1);
				e->bad_tiles += tile_bad(e->Bs, FTK_NF4_LDB, FTK_NF4_TN, deq, K, k0, K,
							 bn * FTK_NF4_TN, N, 1);
				for (int t = 0; t < FTK_NF4_THREADS; t++)
					ftk_nf4_tile_acc(e->As, e->Bs, e->acc + (size_t)t * FTK_NF4_ACC, t);
				/* barrier */
			}
			for (int t = 0; t < FTK_NF4_THREADS; t++)
				ftk_nf4_fwd_store(out, bias, M, N, bm, bn, e->acc + (size_t)t * FTK_NF4_ACC, t);
		}
}

/* The backward-input GEMM kernel. */
static void emu_bwd(struct emu *e, const struct ftk_nf4_view *w, const float *deq,
		    const float *dout, int M, float *dinp)
{
	int N = w->N, K = w->K;
	for (int bm = 0; bm < (M + FTK_NF4_TM - 1) / FTK_NF4_TM; bm++)
		for (int bk = 0; bk < (K + FTK_NF4_TN - 1) / FTK_NF4_TN; bk++) {
			memset(e->acc, 0, (size_t)FTK_NF4_THREADS * FTK_NF4_ACC * sizeof(float));
			for (int n0 = 0; n0 < N; n0 += FTK_NF4_TK) {
				poison(e);
				for (int t = 0; t < FTK_NF4_THREADS; t++)
					ftk_nf4_bwd_load(w, dout, M, bm, bk, n0, e->As, e->Bs, t);
				/* barrier */
				e->bad_tiles += tile_bad(e->As, FTK_NF4_LDA, FTK_NF4_TM, dout, N, n0, N,
							 bm * FTK_NF4_TM, M, 1);
				e->bad_tiles += tile_bad(e->Bs, FTK_NF4_LDB, FTK_NF4_TN, deq, K, n0, N,
							 bk * FTK_NF4_TN, K, 0);
				for (int t = 0; t < FTK_NF4_THREADS; t++)
					ftk_nf4_tile_acc(e->As, e->Bs, e->acc + (size_t)t * FTK_NF4_ACC, t);
				/* barrier */
			}
			for (int t = 0; t < FTK_NF4_THREADS; t++)
				ftk_nf4_bwd_store(dinp, M, K, bm, bk, e->acc + (size_t)t * FTK_NF4_ACC, t);
		}
}

/* ---------------------------------------------------------------- comparisons */

/* max |got - want| / max |want| (NaN counts as infinitely wrong), printed. */
static double rel_diff(const char *what, const float *got, const float *want, size_t n)
{
	double md = 0, mr = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)got[i] - (double)want[i]);
		if (isnan(d) || d > md)
			md = isnan(d) ? INFINITY : d;
		mr = fmax(mr, fabs((double)want[i]));
	}
	double rel = mr > 0 ? md / mr : md;
	printf("  %-34s max_abs %.3e  max_rel %.3e  (tolerance 1e-5)\n", what, md, rel);
	return rel;
}

#define TOL 1e-5

/*
 * All three kernels on W (N, K) (view w, dequantized deq) at input rows M,
 * against dequantize-then-sgemm.  Returns the number of failed comparisons.
 */
static int check_all(const char *name, const struct ftk_nf4_view *w, const float *deq, int M)
{
	int N = w->N, K = w->K, fails = 0;
	char what[96];
	float *x = rand_buf((size_t)M * K, 1), *bias = rand_buf((size_t)N, 0.5f);
	float *dout = rand_buf((size_t)M * N, 1), *dinp0 = rand_buf((size_t)M * K, 1);
	float *ref = malloc((size_t)M * N * 4), *got = malloc((size_t)M * N * 4);
	float *dref = malloc((size_t)M * K * 4), *dgot = malloc((size_t)M * K * 4);
	/* forward reference: x @ deq^T + bias */
	for (int m = 0; m < M; m++)
		memcpy(ref + (size_t)m * N, bias, (size_t)N * 4);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, deq, K, 1.0f, ref, N);
	/* backward reference: dinp0 + dout @ deq */
	memcpy(dref, dinp0, (size_t)M * K * 4);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, dout, N, deq, K, 1.0f,
		    dref, K);
	struct emu e;
	emu_init(&e);
	if (M <= FTK_NF4_GEMV_MAXM) {
		for (size_t i = 0; i < (size_t)M * N; i++)
			got[i] = NAN;	/* every output must be written */
		emu_gemv(w, x, bias, M, got);
		snprintf(what, sizeof(what), "%s gemv M=%d", name, M);
		fails += rel_diff(what, got, ref, (size_t)M * N) > TOL;
	}
	for (size_t i = 0; i < (size_t)M * N; i++)
		got[i] = NAN;
	emu_fwd(&e, w, deq, x, bias, M, got);
	snprintf(what, sizeof(what), "%s fused fwd M=%d", name, M);
	fails += rel_diff(what, got, ref, (size_t)M * N) > TOL;
	memcpy(dgot, dinp0, (size_t)M * K * 4);
	emu_bwd(&e, w, deq, dout, M, dgot);
	snprintf(what, sizeof(what), "%s fused bwd_inp M=%d", name, M);
	fails += rel_diff(what, dgot, dref, (size_t)M * K) > TOL;
	if (e.bad_tiles)
		printf("  %s M=%d: %zu shared-tile slots not exactly x, W or 0 after a load\n", name, M,
		       e.bad_tiles);
	fails += e.bad_tiles != 0;
	emu_free(&e);
	free(x), free(bias), free(dout), free(dinp0), free(ref), free(got), free(dref), free(dgot);
	return fails;
}

START_TEST(odd_shapes_against_sgemm)
{
	/* (N, K): partial tiles in both; K % 64 != 0 (rows start inside a block); odd K; tiny */
	static const int shapes[][2] = { { 150, 172 }, { 64, 64 }, { 100, 45 }, { 37, 200 },
					 { 70, 1 }, { 5, 33 } };
	static const int Ms[] = { 1, 3, 8, 67 };
	int fails = 0;
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
		int N = shapes[s][0], K = shapes[s][1];
		float *W = rand_buf((size_t)N * K, 0.1f), *deq = malloc((size_t)N * K * 4);
		struct ftk_nf4 q;
		ftk_nf4_quantize(&q, W, (size_t)N * K, NULL);
		ftk_nf4_dequant(&q, 0, (size_t)N * K, deq);
		struct ftk_nf4_view w = { q.packed, q.absmax, ftk_nf4_code, N, K };
		char name[32];
		snprintf(name, sizeof(name), "W %dx%d", N, K);
		for (size_t i = 0; i < sizeof(Ms) / sizeof(Ms[0]); i++)
			fails += check_all(name, &w, deq, Ms[i]);
		ftk_nf4_free(&q);
		free(W), free(deq);
	}
	ck_assert_int_eq(fails, 0);
}
END_TEST

/* ---------------------------------------------------------------- bitsandbytes */

static void floats_of(const cJSON *a, float *out, size_t n)
{
	ck_assert_int_eq(cJSON_GetArraySize(a), (int)n);
	for (size_t i = 0; i < n; i++)
		out[i] = (float)cJSON_GetArrayItem(a, (int)i)->valuedouble;
}

/* Outputs that are not bit for bit (up to the sign of 0) what they should be. */
static size_t n_unequal(const float *got, const float *want, size_t n)
{
	size_t bad = 0;
	for (size_t i = 0; i < n; i++)
		bad += !(got[i] == want[i]);
	return bad;
}

START_TEST(bitsandbytes_weights)
{
	cJSON *ref = nf4_ref_load();
	const cJSON *t;
	int fails = 0, seen = 0;
	cJSON_ArrayForEach(t, cJSON_GetObjectItem(ref, "tensors")) {
		const cJSON *shape = cJSON_GetObjectItem(t, "shape");
		int N = cJSON_GetArrayItem(shape, 0)->valueint, K = cJSON_GetArrayItem(shape, 1)->valueint;
		size_t n = (size_t)N * K, nb = (n + 63) / 64;
		uint8_t *packed = malloc((n + 1) / 2);
		float *absmax = malloc(nb * 4), *deq = malloc(n * 4), *code = malloc(16 * 4);
		ck_assert_uint_eq(nf4_ref_hex(ftk_json_get_str(t, "packed_hex"), packed, (n + 1) / 2),
				  (n + 1) / 2);
		floats_of(cJSON_GetObjectItem(t, "absmax_recovered"), absmax, nb);
		floats_of(cJSON_GetObjectItem(t, "dequantized"), deq, n);
		floats_of(cJSON_GetObjectItem(t, "nf4_code"), code, 16);
		/* bitsandbytes' bytes, scales and code table; nothing of ours but the kernels */
		struct ftk_nf4_view w = { packed, absmax, code, N, K };
		printf("%s (%d x %d), bitsandbytes' packed bytes and recovered absmax\n",
		       ftk_json_get_str(t, "name"), N, K);
		/* one-hot inputs: each output is one weight, which must be bitsandbytes' value */
		size_t bad_gemv = 0, bad_fwd = 0, bad_bwd = 0;
		float *x = calloc((size_t)FTK_NF4_GEMV_MAXM * K, 4);
		float *o = malloc((size_t)FTK_NF4_GEMV_MAXM * N * 4), *want = malloc((size_t)FTK_NF4_GEMV_MAXM * N * 4);
		struct emu e;
		emu_init(&e);
		for (int k0 = 0; k0 < K; k0 += FTK_NF4_GEMV_MAXM) {
			int M = K - k0 < FTK_NF4_GEMV_MAXM ? K - k0 : FTK_NF4_GEMV_MAXM;
			memset(x, 0, (size_t)FTK_NF4_GEMV_MAXM * K * 4);
			for (int m = 0; m < M; m++) {
				x[(size_t)m * K + k0 + m] = 1.0f;
				for (int r = 0; r < N; r++)
					want[(size_t)m * N + r] = deq[(size_t)r * K + k0 + m];
			}
			emu_gemv(&w, x, NULL, M, o);
			bad_gemv += n_unequal(o, want, (size_t)M * N);
			emu_fwd(&e, &w, deq, x, NULL, M, o);
			bad_fwd += n_unequal(o, want, (size_t)M * N);
		}
		/* backward: dout one-hot at row r gives dinp = W[r, :] */
		float *dout = calloc((size_t)N * N, 4), *dinp = calloc(n, 4);
		for (int r = 0; r < N; r++)
			dout[(size_t)r * N + r] = 1.0f;
		emu_bwd(&e, &w, deq, dout, N, dinp);
		bad_bwd = n_unequal(dinp, deq, n);
		printf("  one-hot: weights differing from bitsandbytes' dequantized value: "
		       "gemv %zu, fused fwd %zu, fused bwd_inp %zu of %zu each (tolerance: exact)\n",
		       bad_gemv, bad_fwd, bad_bwd, n);
		fails += bad_gemv != 0 || bad_fwd != 0 || bad_bwd != 0 || e.bad_tiles != 0;
		emu_free(&e);
		/* dense inputs against sgemm over bitsandbytes' dequantized weight */
		fails += check_all("bnb", &w, deq, 1) + check_all("bnb", &w, deq, 8) +
			 check_all("bnb", &w, deq, 67);
		free(x), free(o), free(want), free(dout), free(dinp);
		free(packed), free(absmax), free(deq), free(code);
		seen++;
	}
	ck_assert_int_eq(seen, 2);
	ck_assert_int_eq(fails, 0);
	cJSON_Delete(ref);
}
END_TEST

/* ---------------------------------------------------------------- the CPU backend */

/*
 * The CPU backend's NF4 forward at the sizes generation uses (its fused
 * loop at M = 1, tiles above) on two threads, against dequantize-then-sgemm:
 * K = 172 (rows start inside a scale block), 45 (odd), 256.
 */
START_TEST(cpu_backend_few_rows)
{
	static const int Ks[] = { 172, 45, 256 };
	int N = 97, fails = 0;
	struct ftk_backend *cpu = ftk_backend_cpu_new();
	cpu->ops->set_threads(cpu, 2);
	for (size_t s = 0; s < sizeof(Ks) / sizeof(Ks[0]); s++) {
		int K = Ks[s];
		float *W = rand_buf((size_t)N * K, 0.1f), *deq = malloc((size_t)N * K * 4);
		struct ftk_weight w = { N, K, FTK_QUANT_NF4, NULL, { 0 }, NULL };
		ftk_nf4_quantize(&w.nf4, W, (size_t)N * K, NULL);
		ftk_nf4_dequant(&w.nf4, 0, (size_t)N * K, deq);
		for (int M = 1; M <= 4; M++) {
			float *x = rand_buf((size_t)M * K, 1), *bias = rand_buf((size_t)N, 0.5f);
			float *got = malloc((size_t)M * N * 4), *ref = malloc((size_t)M * N * 4);
			for (int m = 0; m < M; m++)
				memcpy(ref + (size_t)m * N, bias, (size_t)N * 4);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, deq, K,
				    1.0f, ref, N);
			for (size_t i = 0; i < (size_t)M * N; i++)
				got[i] = NAN;
			cpu->ops->linear_fwd(cpu, got, x, &w, bias, M);
			char what[64];
			snprintf(what, sizeof(what), "cpu linear_fwd W %dx%d M=%d", N, K, M);
			fails += rel_diff(what, got, ref, (size_t)M * N) > TOL;
			free(x), free(bias), free(got), free(ref);
		}
		ftk_nf4_free(&w.nf4);
		free(W), free(deq);
	}
	ftk_backend_free(cpu);
	ck_assert_int_eq(fails, 0);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("nf4_kernels");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, odd_shapes_against_sgemm);
	tcase_add_test(tc, bitsandbytes_weights);
	tcase_add_test(tc, cpu_backend_few_rows);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(make_suite)
