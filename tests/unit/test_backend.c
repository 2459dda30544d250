/*
 * test_backend.c: backend instances keep their own state (backend.h,
 * issue 22 item 4).  Two CPU instances, one fp32 on one thread and one
 * bf16 on two, run the same product from two threads at once; each must
 * give its own precision's result.  Then the same one level up: two models
 * in one process, one set to bf16, decode on two threads at once and each
 * gives what a model of its precision alone gives.
 *
 * The products are checked against double-precision references with a
 * bound derived from the arithmetic, not from a run: every entry of C is a
 * sum of K products, each exact in double (24 + 24 significant bits), and
 * float32 accumulation in any order (BLAS kernel, slicing over threads)
 * is within gamma_K = K u / (1 - K u), u = 2^-24, of the exact sum,
 * relative to the sum of the absolute products (Higham, Accuracy and
 * Stability of Numerical Algorithms, 2nd ed., eq. 3.5).  fp32 is checked
 * against the product of the operands as given; bf16 against the product
 * of the operands rounded to bf16 (ops.h's ftk_bf16_round, round to
 * nearest even), with the same bound.  The data are chosen so that the two
 * references differ by far more than the bound (checked too), so an
 * instance computing in the other's precision fails.
 *
 * The models compare exactly: one model alone and the same model beside
 * another run the same kernels on the same thread count and inputs (as in
 * test_share.c); only what the other instance does differs.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "model/backend.h"
#include "model/model.h"
#include "model/ops.h"
#include "model/rng.h"

/* 2 M N K = 4.9e6 flops: above 4e6, where the CPU backend slices a product over threads */
enum { M = 96, N = 80, K = 320, ROUNDS = 20 };

struct side {
	struct ftk_backend *be;
	int precision, threads;
	const float *A, *B;		/* (M, K), (K, N) */
	const double *ref, *bound;	/* (M, N): the exact product of this precision's operands */
	pthread_barrier_t *start;
	double worst;			/* max |C - ref| / bound over every round */
	int bad_rounds;
};

/* Set the instance up, wait for the other side, then multiply ROUNDS times. */
static void *run_side(void *arg)
{
	struct side *s = arg;
	s->be->ops->set_threads(s->be, s->threads);
	int rc = s->be->ops->set_precision(s->be, s->precision);
	pthread_barrier_wait(s->start);	/* both instances set before either multiplies */
	float *C = malloc(sizeof(float) * M * N);
	for (int r = 0; rc == 0 && r < ROUNDS; r++) {
		memset(C, 0, sizeof(float) * M * N);
		s->be->ops->gemm(s->be, 0, 0, M, N, K, 1.0f, s->A, K, s->B, N, 0.0f, C, N);
		double w = 0;
		for (int i = 0; i < M * N; i++)
			w = fmax(w, fabs((double)C[i] - s->ref[i]) / s->bound[i]);
		s->worst = fmax(s->worst, w);
		s->bad_rounds += w > 1.0;
	}
	if (rc != 0)
		s->bad_rounds = -1;
	free(C);
	return NULL;
}

/* ref = A B in double over the operands as given (round: 0) or rounded to bf16 (1). */
static void reference(const float *A, const float *B, int round, double *ref, double *bound)
{
	double u = ldexp(1.0, -24), gamma = K * u / (1.0 - K * u);
	for (int i = 0; i < M; i++)
		for (int j = 0; j < N; j++) {
			double s = 0, a = 0;
			for (int k = 0; k < K; k++) {
				float x = A[i * K + k], y = B[k * N + j];
				if (round)
					x = ftk_bf16_round(x), y = ftk_bf16_round(y);
				s += (double)x * (double)y;
				a += fabs((double)x * (double)y);
			}
			ref[i * N + j] = s;
			bound[i * N + j] = gamma * a;
		}
}

START_TEST(two_instances_two_precisions_at_once)
{
	float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N);
	struct ftk_rng rng;
	ftk_rng_seed(&rng, 22);
	/* full 24-bit mantissas, positive: bf16 rounding moves every operand and the
	 * sums do not cancel, so the two precisions' products differ visibly */
	for (int i = 0; i < M * K; i++)
		A[i] = (float)(0.5 + ftk_rng_uniform(&rng));
	for (int i = 0; i < K * N; i++)
		B[i] = (float)(0.5 + ftk_rng_uniform(&rng));
	double *ref32 = malloc(sizeof(double) * M * N), *b32 = malloc(sizeof(double) * M * N);
	double *ref16 = malloc(sizeof(double) * M * N), *b16 = malloc(sizeof(double) * M * N);
	reference(A, B, 0, ref32, b32);
	reference(A, B, 1, ref16, b16);
	/* the check can fail: somewhere the references are more than two bounds
	 * apart, so a product within one bound of either is outside the other's */
	double apart = 0;
	for (int i = 0; i < M * N; i++)
		apart = fmax(apart, fabs(ref32[i] - ref16[i]) / fmax(b32[i], b16[i]));
	printf("fp32 and bf16 references: up to %.1f bounds apart\n", apart);
	ck_assert(apart > 2.0);

	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, 2);
	struct side s[2] = {
		{ ftk_backend_cpu_new(), FTK_PREC_FP32, 1, A, B, ref32, b32, &start, 0, 0 },
		{ ftk_backend_cpu_new(), FTK_PREC_BF16, 2, A, B, ref16, b16, &start, 0, 0 },
	};
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, run_side, &s[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 2; i++) {
		printf("%s on %d thread(s): worst |C - ref| %.3f of the bound, %d of %d rounds "
		       "outside it\n",
		       ftk_precision_name(s[i].precision), s[i].threads, s[i].worst,
		       s[i].bad_rounds, ROUNDS);
		ck_assert_int_eq(s[i].bad_rounds, 0);
		ck_assert(s[i].worst <= 1.0);
		ftk_backend_free(s[i].be);
	}
	pthread_barrier_destroy(&start);
	free(A), free(B), free(ref32), free(b32), free(ref16), free(b16);
}
END_TEST

/* ---------------------------------------------------------------- models */

#define STORIES "datasets/models/stories260K"

static const uint32_t prompt[] = { 1, 403, 407, 261, 378, 261, 429, 296, 312, 271 };
#define N_PROMPT ((int)(sizeof(prompt) / sizeof(*prompt)))

struct decoder {
	struct ftk_model *m;
	float *logits;
	pthread_barrier_t *start;
	int rc;
};

static void *decode(void *arg)
{
	struct decoder *d = arg;
	struct ftk_error e;
	if (d->start)
		pthread_barrier_wait(d->start);
	d->rc = ftk_model_decode(d->m, prompt, N_PROMPT, 0, d->logits, &e);
	return NULL;
}

/* A model of its own CPU instance (load options give none), at precision p. */
static struct ftk_model *load_at(int p, int threads)
{
	struct ftk_error e;
	struct ftk_model *m;
	struct ftk_load_opts lo = { FTK_QUANT_NF4, NULL, threads, 0 };
	ck_assert_msg(ftk_model_load(&m, src_path(STORIES), &lo, &e) == 0, "%s", e.msg);
	ck_assert_msg(ftk_model_set_precision(m, p, &e) == 0, "%s", e.msg);
	return m;
}

START_TEST(two_models_two_precisions_at_once)
{
	int V;
	float *alone[2], *beside[2];
	/* each precision alone first */
	for (int p = 0; p < 2; p++) {
		struct ftk_model *m = load_at(p ? FTK_PREC_BF16 : FTK_PREC_FP32, p ? 2 : 1);
		V = ftk_model_config(m)->vocab_size;
		alone[p] = malloc(sizeof(float) * V);
		beside[p] = malloc(sizeof(float) * V);
		struct decoder d = { m, alone[p], NULL, -1 };
		decode(&d);
		ck_assert_int_eq(d.rc, 0);
		ftk_model_free(m);
	}
	/* the precision matters on this model: otherwise the test could not fail */
	double diff = 0;
	for (int i = 0; i < V; i++)
		diff = fmax(diff, fabs((double)alone[0][i] - alone[1][i]));
	printf("decode logits, fp32 against bf16 alone: max |diff| %.3e\n", diff);
	ck_assert(diff > 1e-4);
	/* then both loaded together, the bf16 one set last, decoding at once */
	struct ftk_model *m[2] = { load_at(FTK_PREC_FP32, 1), load_at(FTK_PREC_BF16, 2) };
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, 2);
	struct decoder d[2] = { { m[0], beside[0], &start, -1 }, { m[1], beside[1], &start, -1 } };
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, decode, &d[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	for (int p = 0; p < 2; p++) {
		ck_assert_int_eq(d[p].rc, 0);
		ck_assert_msg(memcmp(alone[p], beside[p], sizeof(float) * V) == 0,
			      "the %s model's logits changed beside the other",
			      ftk_precision_name(p ? FTK_PREC_BF16 : FTK_PREC_FP32));
		ftk_model_free(m[p]);
		free(alone[p]), free(beside[p]);
	}
	pthread_barrier_destroy(&start);
}
END_TEST

static Suite *backend_suite(void)
{
	Suite *s = suite_create("backend");
	TCase *tc = tcase_create("instances");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, two_instances_two_precisions_at_once);
	tcase_add_test(tc, two_models_two_precisions_at_once);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(backend_suite)
