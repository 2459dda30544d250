/*
 * test_share.c: engines that share one copy of the weights (issue 20 item 9).
 *
 * What is asserted is the structure, not a memory figure: models made with
 * ftk_model_share point at the same weights (one identity, a use count that
 * rises and falls), the weights outlive the model they were loaded into and
 * go with the last user (ASan sees a use after free otherwise), a shared
 * model refuses to train or replace its LoRA, and engines on shared weights
 * answering on four threads at once give the answers one engine with its
 * own weights gives.  bench/eval_engines_memory.sh measures the memory.
 *
 * Exact comparisons are right here: every engine runs the same kernels with
 * the same thread count on the same inputs; only which engine (and thread)
 * runs them differs.  A difference would mean shared mutable state.
 */
#include <pthread.h>
#include <string.h>
#include "testutil.h"
#include "lib/tokenizer.h"
#include "model/infer.h"
#include "model/model.h"

#define STORIES "datasets/models/stories260K"
#define ADAPTER "tests/fixtures/stories260K-lora"

static const uint32_t prompt[] = { 1, 403, 407, 261, 378, 261, 429, 296, 312, 271 };
#define N_PROMPT ((int)(sizeof(prompt) / sizeof(*prompt)))

static void logits_of(struct ftk_model *m, float *out)
{
	struct ftk_error e;
	ck_assert_msg(ftk_model_decode(m, prompt, N_PROMPT, 0, out, &e) == 0, "%s", e.msg);
}

START_TEST(model_share_counts_and_outlives_the_original)
{
	struct ftk_error e;
	struct ftk_model *m;
	struct ftk_load_opts lo = { FTK_QUANT_NF4, NULL, 1, 0 };
	ck_assert_msg(ftk_model_load(&m, src_path(STORIES), &lo, &e) == 0, "%s", e.msg);
	struct ftk_lora_opts o = { FTK_LORA_ALL, 4, 8, 0, 0, 7 };
	ck_assert_int_eq(ftk_model_lora_init(m, &o, &e), 0);
	size_t n;
	float *p = ftk_model_lora_flat(m, &n);
	for (size_t i = 0; i < n; i++)	/* B is zero after init: make the LoRA matter */
		p[i] = 0.01f * (float)((i * 37) % 11) - 0.05f;
	int V = ftk_model_config(m)->vocab_size;
	float *want = malloc((size_t)V * sizeof(float)), *got = malloc((size_t)V * sizeof(float));
	logits_of(m, want);
	ck_assert_int_eq(ftk_model_shared_count(m), 1);

	struct ftk_model *c;
	ck_assert_int_eq(ftk_model_share(&c, m, &e), 0);
	ck_assert_ptr_eq(ftk_model_weights_id(c), ftk_model_weights_id(m));
	ck_assert_int_eq(ftk_model_shared_count(m), 2);
	ck_assert_int_eq(ftk_model_shared_count(c), 2);
	ck_assert_int_eq(ftk_model_kv_capacity(c), 0);	/* its own cache, not yet made */
	logits_of(c, got);
	ck_assert_mem_eq(got, want, (size_t)V * sizeof(float));

	/* while shared, neither trains nor replaces the LoRA the other reads */
	ck_assert_int_eq(ftk_model_lora_init(c, &o, &e), FTK_EUSAGE);
	ck_assert_str_eq(e.msg, "cannot create LoRA parameters: the weights are shared by 2 "
				"models (inference only)");
	ck_assert_int_eq(ftk_model_lora_init(m, &o, &e), FTK_EUSAGE);
	uint32_t ids[8] = { 1, 5, 9, 13, 17, 21, 25, 29 };
	struct ftk_batch b = { 1, 8, ids, NULL, NULL };
	double loss;
	ck_assert_int_eq(ftk_model_forward_backward(m, &b, 7.0, &loss, NULL, &e), FTK_EUSAGE);

	/* the original goes first: the weights stay for the other */
	ftk_model_free(m);
	ck_assert_int_eq(ftk_model_shared_count(c), 1);
	memset(got, 0, (size_t)V * sizeof(float));
	logits_of(c, got);
	ck_assert_mem_eq(got, want, (size_t)V * sizeof(float));
	/* alone again: it may train */
	ck_assert_int_eq(ftk_model_forward_backward(c, &b, 7.0, &loss, NULL, &e), 0);
	ftk_model_free(c);
	free(want);
	free(got);
}
END_TEST

/*
 * What an engine holds of its own grows linearly with the prompt it decodes
 * (KV cache, one layer of activations), with no (NH, T, T) attention matrix
 * and not L layers: 4x the prompt costs at most 5x the bytes (the KV cache
 * is rounded up to 16 positions).  With the matrix, stories260K's 8 heads
 * make it 8 T^2 floats, about 9x from 100 to 400 tokens.  A share costs
 * nothing until it runs.
 */
START_TEST(decode_buffers_grow_linearly)
{
	struct ftk_error e;
	struct ftk_model *m, *c;
	struct ftk_load_opts lo = { FTK_QUANT_NONE, NULL, 1, 0 };
	ck_assert_msg(ftk_model_load(&m, src_path(STORIES), &lo, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(ftk_model_share(&c, m, &e), 0);
	ck_assert_uint_eq(ftk_model_buffer_bytes(c), 0);
	uint32_t ids[400];
	for (int i = 0; i < 400; i++)
		ids[i] = (uint32_t)(1 + (i * 7) % 500);
	int V = ftk_model_config(m)->vocab_size;
	float *logits = malloc((size_t)V * sizeof(float));
	ck_assert_int_eq(ftk_model_decode(m, ids, 100, 0, logits, &e), 0);
	ck_assert_int_eq(ftk_model_decode(c, ids, 400, 0, logits, &e), 0);
	size_t b1 = ftk_model_buffer_bytes(m), b4 = ftk_model_buffer_bytes(c);
	printf("engine buffers: %zu bytes for 100 tokens, %zu for 400 (x%.2f)\n", b1, b4,
	       (double)b4 / (double)b1);
	ck_assert_uint_gt(b1, 0);
	ck_assert_msg(b4 < 5 * b1, "%zu bytes for 400 tokens, %zu for 100", b4, b1);
	free(logits);
	ftk_model_free(c);
	ftk_model_free(m);
}
END_TEST

struct worker {
	struct ftk_infer *e;
	double lp[N_PROMPT];
	uint32_t top[N_PROMPT];
	int rc;
};

static void *score_worker(void *arg)
{
	struct worker *w = arg;
	struct ftk_error e;
	double top_lp[N_PROMPT];
	for (int round = 0; round < 20 && w->rc == 0; round++)
		w->rc = ftk_infer_score(w->e, prompt, N_PROMPT, 1 + round % 3, w->lp, w->top, top_lp,
					&e);
	/* the last round's context is 1 + 19 % 3 = 2 */
	return NULL;
}

START_TEST(engines_share_weights_and_answer_at_once)
{
	struct ftk_infer_opts o = { src_path(STORIES), src_path(ADAPTER), 0, 0, NULL };	/* as eval opens */
	struct ftk_error e;
	struct ftk_infer *es[4], *own;
	ck_assert_msg(ftk_infer_open_n(es, 4, &o, &e) == 0, "%s", e.msg);
	ck_assert_msg(ftk_infer_open(&own, &o, &e) == 0, "%s", e.msg);
	for (int i = 1; i < 4; i++) {
		ck_assert_ptr_eq(ftk_infer_weights_id(es[i]), ftk_infer_weights_id(es[0]));
		ck_assert_ptr_eq(ftk_infer_tokenizer(es[i]), ftk_infer_tokenizer(es[0]));
	}
	ck_assert_ptr_ne(ftk_infer_weights_id(own), ftk_infer_weights_id(es[0]));

	/* the reference: an engine with its own copy, alone */
	struct worker ref = { own, { 0 }, { 0 }, 0 };
	score_worker(&ref);
	ck_assert_int_eq(ref.rc, 0);

	struct worker w[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ es[i], { 0 }, { 0 }, 0 };
		ck_assert_int_eq(pthread_create(&th[i], NULL, score_worker, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(w[i].rc, 0);
		ck_assert_mem_eq(w[i].lp, ref.lp, (N_PROMPT - 2) * sizeof(double));
		ck_assert_mem_eq(w[i].top, ref.top, (N_PROMPT - 2) * sizeof(uint32_t));
	}
	/* freed in any order; the first engine (the one that loaded) first */
	ftk_infer_free(es[0]);
	struct worker again = { es[3], { 0 }, { 0 }, 0 };
	score_worker(&again);
	ck_assert_int_eq(again.rc, 0);
	ck_assert_mem_eq(again.lp, ref.lp, (N_PROMPT - 2) * sizeof(double));
	for (int i = 1; i < 4; i++)
		ftk_infer_free(es[i]);
	ftk_infer_free(own);
}
END_TEST

START_TEST(open_n_failure_leaves_nothing_open)
{
	struct ftk_infer_opts o = { "no-such-model", NULL, 0, 0, NULL };
	struct ftk_error e;
	struct ftk_infer *es[3] = { (void *)1, (void *)1, (void *)1 };
	ck_assert_int_lt(ftk_infer_open_n(es, 3, &o, &e), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_ptr_null(es[i]);
}
END_TEST

static Suite *share_suite(void)
{
	Suite *s = suite_create("share");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, model_share_counts_and_outlives_the_original);
	tcase_add_test(tc, engines_share_weights_and_answer_at_once);
	tcase_add_test(tc, decode_buffers_grow_linearly);
	tcase_add_test(tc, open_n_failure_leaves_nothing_open);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(share_suite)
