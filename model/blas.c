/*
 * blas.c: the BLAS's identity, and a check that it computes right (blas.h).
 *
 * The check is the reference-implementation test of llm.c's manner made into
 * a guard: every shape's product is recomputed in double, element by element,
 * and compared within the bound that rounding allows.  For C = op(A) op(B)
 * with K-term dot products in fp32, any summation order gives an element
 * within gamma_K * sum_k |a_k||b_k| of the exact value (Higham, Accuracy and
 * Stability of Numerical Algorithms, 3.1), gamma_K = K u / (1 - K u) with
 * u = 2^-24; the double loop is exact to far below that.  A kernel that is
 * wrong (a dropped edge tile, a bad transpose, a race between threads) is
 * off by whole terms, orders of magnitude beyond the bound.  We allow twice
 * the bound, so a BLAS that accumulates in another order or with FMA passes.
 *
 * The OpenBLAS entry points are weak: with another BLAS behind cblas.h the
 * identity says "unknown" and the check still runs.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include "lib/err.h"
#include "lib/strbuf.h"
#include "model/blas.h"

extern char *openblas_get_config(void) __attribute__((weak));
extern char *openblas_get_corename(void) __attribute__((weak));
extern void openblas_set_num_threads(int n) __attribute__((weak));

void ftk_blas_identify(struct ftk_blas_id *id)
{
	const char *lib = openblas_get_config ? openblas_get_config() : NULL;
	const char *core = openblas_get_corename ? openblas_get_corename() : NULL;
	snprintf(id->library, sizeof(id->library), "%s", lib && *lib ? lib : "unknown (not OpenBLAS)");
	snprintf(id->core, sizeof(id->core), "%s", core && *core ? core : "unknown");
	/* OpenBLAS pads its config string with a trailing space */
	size_t n = strlen(id->library);
	while (n > 0 && id->library[n - 1] == ' ')
		id->library[--n] = 0;
}

/* M, N, K, ta, tb: odd sizes, edge tiles of the usual 4/8/16-wide kernels,
 * K not a multiple of 8, a long thin one, and every transpose */
static const int shapes[][5] = {
	{ 1, 1, 1, 0, 0 },	{ 7, 13, 9, 0, 0 },	{ 33, 65, 17, 0, 1 },
	{ 17, 31, 129, 1, 0 },	{ 65, 23, 71, 1, 1 },	{ 129, 9, 67, 0, 1 },
	{ 3, 257, 33, 0, 0 },	{ 48, 48, 63, 1, 1 },	{ 97, 35, 5, 0, 1 },
};
#define NSHAPES (int)(sizeof(shapes) / sizeof(shapes[0]))

struct result {
	int shape;		/* the first shape that failed, -1: none */
	double err, bound;	/* there: the worst |C - exact| and its bound */
};

/* A deterministic fill in [-1, 1) with some structure (no zeros, mixed signs). */
static void fill(float *x, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		x[i] = (float)((double)(seed >> 40) / (double)(1ULL << 24) * 2.0 - 1.0);
	}
}

static void check_shape(int s, struct result *r)
{
	int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], ta = shapes[s][3], tb = shapes[s][4];
	/* row-major: op(A) is (M, K), stored (K, M) when transposed; op(B) (K, N) */
	int lda = ta ? M : K, ldb = tb ? K : N;
	float *A = malloc(sizeof(float) * (size_t)M * K), *B = malloc(sizeof(float) * (size_t)K * N);
	float *C = malloc(sizeof(float) * (size_t)M * N);
	if (!A || !B || !C) {
		free(A), free(B), free(C);
		r->shape = -2;	/* out of memory: reported as such */
		return;
	}
	fill(A, (size_t)M * K, 1000u + (unsigned)s);
	fill(B, (size_t)K * N, 2000u + (unsigned)s);
	for (size_t i = 0; i < (size_t)M * N; i++)
		C[i] = NAN;	/* beta = 0 must overwrite, not read */
	cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
		    M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
	double u = 0x1p-24, gK = K * u / (1 - K * u);
	for (int i = 0; i < M && r->shape == -1; i++)
		for (int j = 0; j < N; j++) {
			double exact = 0, mag = 0;
			for (int k = 0; k < K; k++) {
				double a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
				double b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
				exact += a * b;
				mag += fabs(a * b);
			}
			double e = fabs((double)C[(size_t)i * N + j] - exact), bound = 2 * gK * mag;
			if (!(e <= bound)) {	/* NaN fails too */
				r->shape = s, r->err = e, r->bound = bound;
				break;
			}
		}
	free(A), free(B), free(C);
}

static void *worker(void *arg)
{
	struct result *r = arg;
	for (int s = 0; s < NSHAPES && r->shape == -1; s++)
		check_shape(s, r);
	return NULL;
}

static pthread_mutex_t once_lock = PTHREAD_MUTEX_INITIALIZER;
static int done, verdict;
static char verdict_msg[512];

int ftk_blas_check(int threads, struct ftk_error *err)
{
	pthread_mutex_lock(&once_lock);
	if (!done) {
		/* as the CPU backend runs it: one BLAS thread inside each of ours */
		if (openblas_set_num_threads)
			openblas_set_num_threads(1);
		if (threads < 1)
			threads = 1;
		if (threads > 8)
			threads = 8;	/* enough to meet a race; the check stays cheap */
		struct result r[8];
		pthread_t th[8];
		int started = 0;
		for (int t = 0; t < threads; t++) {
			r[t].shape = -1;
			if (t == 0 || pthread_create(&th[t], NULL, worker, &r[t]) != 0)
				continue;
			started |= 1 << t;
		}
		worker(&r[0]);
		for (int t = 1; t < threads; t++)
			if (started & (1 << t))
				pthread_join(th[t], NULL);
		verdict = 0;
		for (int t = 0; t < threads && !verdict; t++) {
			if (r[t].shape == -1)
				continue;
			struct ftk_blas_id id;
			ftk_blas_identify(&id);
			if (r[t].shape == -2) {
				snprintf(verdict_msg, sizeof(verdict_msg),
					 "out of memory while checking the BLAS");
			} else {
				const int *s = shapes[r[t].shape];
				snprintf(verdict_msg, sizeof(verdict_msg),
					 "the BLAS computes wrong results: sgemm %c%c M=%d N=%d K=%d "
					 "(%d thread%s at once) is off by %.3g where rounding allows "
					 "%.3g; library '%s', core '%s': choose another kernel with "
					 "OPENBLAS_CORETYPE (e.g. Haswell, SkylakeX, Zen) or install "
					 "another BLAS",
					 s[3] ? 'T' : 'N', s[4] ? 'T' : 'N', s[0], s[1], s[2], threads,
					 threads == 1 ? "" : "s", r[t].err, r[t].bound, id.library, id.core);
			}
			verdict = FTK_EDATA;
		}
		done = 1;
	}
	int rc = verdict;
	pthread_mutex_unlock(&once_lock);
	if (rc)
		return ftk_error_msg(err, rc, "%s", verdict_msg);
	return 0;
}
