/*
 * test_flash.c: flash attention (issue 9) three ways.
 *
 *   1. The CPU backend's attn_fwd_flash / attn_bwd_flash against its
 *      attn_fwd / attn_bwd (the (T, T) path, itself checked by finite
 *      differences in test_grad.c) on random inputs: several documents per
 *      row (one row reuses a document id after another document, which must
 *      not join them), GQA, T not a multiple of the 64-row tiles, head_dim
 *      8 to 128.  The log-sum-exp is checked against one computed in double
 *      here.
 *   2. Both against PyTorch 1.13 (tests/fixtures/trainer/flash_attn_ref.json
 *      from tools/ref/flash_attn_ref.py: the masked softmax attention
 *      written out, autograd for the gradients).
 *   3. The CUDA kernels' bodies (model/flash_kernels.h) emulated on the
 *      host: every block, every phase run for every thread number between
 *      the barriers, shared memory a malloc of exactly the launch's size
 *      (AddressSanitizer under SAN=1), the threads once in order and once
 *      reversed (identical bits required: no phase may depend on another
 *      thread's writes of the same phase), against the CPU flash ops, up to
 *      head_dim 256.
 *
 * Each comparison prints its maximum difference relative to the largest
 * reference value and the tolerance.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "lib/err.h"
#include "lib/strbuf.h"
#include "testutil.h"
#include "model/backend.h"
#include "model/flash_kernels.h"
#include "model/ops.h"
#include "model/rng.h"

/* The CPU instance every test here computes on, made in each test's process. */
static struct ftk_backend *be;
static void be_new(void)
{
	be = ftk_backend_cpu_new();
}
static void be_free(void)
{
	ftk_backend_free(be);
}
static struct ftk_rng rng;

static float *rnd(size_t n, float scale)
{
	float *x = malloc(n * sizeof(float));
	for (size_t i = 0; i < n; i++)
		x[i] = (float)((2.0 * ftk_rng_uniform(&rng) - 1.0) * scale);
	return x;
}

/* max |a - b| / max |b| over n; prints and checks it against tol */
static double cmp(const char *what, const float *a, const float *b, size_t n, double tol)
{
	double md = 0, mb = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - b[i]);
		ck_assert_msg(d == d, "%s: NaN at %zu", what, i);
		md = d > md ? d : md;
		mb = fabs(b[i]) > mb ? fabs(b[i]) : mb;
	}
	double rel = md / (mb > 0 ? mb : 1);
	printf("  %-40s max_rel %.2e  tol %.0e\n", what, rel, tol);
	ck_assert_msg(rel <= tol, "%s: %g beyond %g", what, rel, tol);
	ck_assert(mb > 0);
	return rel;
}

struct shape {
	int B, T, NH, NKV, hd;
};

/* Document ids: row 0 several documents; row 1 ids 0,1,0 (the third document is not the first). */
static int32_t *make_docs(int B, int T)
{
	int32_t *doc = malloc((size_t)B * T * sizeof(int32_t));
	for (int b = 0; b < B; b++) {
		int id = 0, left = 1 + (int)(ftk_rng_uniform(&rng) * T / 2);
		for (int t = 0; t < T; t++) {
			if (left-- == 0) {
				id = b % 2 ? !id : id + 1;
				left = 1 + (int)(ftk_rng_uniform(&rng) * T / 2);
			}
			doc[(size_t)b * T + t] = id;
		}
	}
	return doc;
}

struct inputs {
	struct shape s;
	float *q, *k, *v, *dout;
	int32_t *doc;
	size_t nq, nk;
};

static void inputs_make(struct inputs *in, struct shape s, uint64_t seed)
{
	ftk_rng_seed(&rng, seed);
	in->s = s;
	in->nq = (size_t)s.B * s.T * s.NH * s.hd;
	in->nk = (size_t)s.B * s.T * s.NKV * s.hd;
	in->q = rnd(in->nq, 2.0f);
	in->k = rnd(in->nk, 2.0f);
	in->v = rnd(in->nk, 1.0f);
	in->dout = rnd(in->nq, 1.0f);
	in->doc = make_docs(s.B, s.T);
}

static void inputs_free(struct inputs *in)
{
	free(in->q), free(in->k), free(in->v), free(in->dout), free(in->doc);
}

/* The log-sum-exp of every row, in double, straight from the definition. */
static float *lse_double(const struct inputs *in)
{
	struct shape s = in->s;
	float *lse = malloc((size_t)s.B * s.NH * s.T * sizeof(float));
	double scale = 1.0 / sqrt((double)s.hd);
	for (int b = 0; b < s.B; b++)
		for (int h = 0; h < s.NH; h++)
			for (int t = 0; t < s.T; t++) {
				int kh = h / (s.NH / s.NKV);
				const int32_t *db = in->doc + (size_t)b * s.T;
				double mx = -INFINITY, sum = 0, sc[4096];
				int s0 = ftk_doc_start(db, t);
				for (int j = s0; j <= t; j++) {
					const float *qr = in->q + (((size_t)b * s.T + t) * s.NH + h) * s.hd;
					const float *kr = in->k + (((size_t)b * s.T + j) * s.NKV + kh) * s.hd;
					double d = 0;
					for (int i = 0; i < s.hd; i++)
						d += (double)qr[i] * kr[i];
					sc[j - s0] = d * scale;
					mx = fmax(mx, sc[j - s0]);
				}
				for (int j = s0; j <= t; j++)
					sum += exp(sc[j - s0] - mx);
				lse[((size_t)b * s.NH + h) * s.T + t] = (float)(mx + log(sum));
			}
	return lse;
}

struct grads {
	float *out, *lse, *dq, *dk, *dv;
};

static void grads_alloc(struct grads *g, const struct inputs *in)
{
	g->out = calloc(in->nq, sizeof(float));
	g->lse = calloc((size_t)in->s.B * in->s.NH * in->s.T, sizeof(float));
	g->dq = calloc(in->nq, sizeof(float));
	g->dk = calloc(in->nk, sizeof(float));
	g->dv = calloc(in->nk, sizeof(float));
}

static void grads_free(struct grads *g)
{
	free(g->out), free(g->lse), free(g->dq), free(g->dk), free(g->dv);
}

static void run_full(struct grads *g, const struct inputs *in)
{
	struct shape s = in->s;
	float *att = malloc((size_t)s.B * s.NH * s.T * s.T * sizeof(float));
	be->ops->attn_fwd(be, g->out, att, in->q, in->k, in->v, in->doc, s.B, s.T, s.NH, s.NKV,
			  s.hd);
	be->ops->attn_bwd(be, g->dq, g->dk, g->dv, in->dout, att, in->q, in->k, in->v, s.B, s.T,
			  s.NH, s.NKV, s.hd);
	free(att);
}

static void run_flash(struct grads *g, const struct inputs *in)
{
	struct shape s = in->s;
	be->ops->attn_fwd_flash(be, g->out, g->lse, in->q, in->k, in->v, in->doc, s.B, s.T, s.NH,
				s.NKV, s.hd);
	be->ops->attn_bwd_flash(be, g->dq, g->dk, g->dv, in->dout, g->out, g->lse, in->q, in->k,
				in->v, in->doc, s.B, s.T, s.NH, s.NKV, s.hd);
}

static const struct shape shapes[] = {
	{ 2, 77, 4, 2, 8 },	/* GQA 2:1, T = 64 + 13 */
	{ 1, 150, 6, 2, 16 },	/* GQA 3:1, three tiles of rows */
	{ 2, 64, 2, 2, 32 },	/* exactly one tile */
	{ 1, 131, 4, 1, 64 },	/* all heads on one kv head */
	{ 1, 97, 2, 1, 128 },
};

START_TEST(flash_cpu_matches_full)
{
	be->ops->set_threads(be, 2);
	for (size_t i = 0; i < FTK_ARRAY_SIZE(shapes); i++) {
		struct inputs in;
		struct grads f, x;
		char what[96];
		inputs_make(&in, shapes[i], 100 + i);
		grads_alloc(&f, &in);
		grads_alloc(&x, &in);
		run_full(&f, &in);
		run_flash(&x, &in);
		float *lse = lse_double(&in);
		struct shape s = in.s;
		printf("B %d T %d NH %d NKV %d hd %d\n", s.B, s.T, s.NH, s.NKV, s.hd);
		snprintf(what, sizeof(what), "out (flash vs full)");
		cmp(what, x.out, f.out, in.nq, 2e-6);
		cmp("lse (flash vs double)", x.lse, lse, (size_t)s.B * s.NH * s.T, 2e-6);
		cmp("dq (flash vs full)", x.dq, f.dq, in.nq, 3e-6);
		cmp("dk (flash vs full)", x.dk, f.dk, in.nk, 3e-6);
		cmp("dv (flash vs full)", x.dv, f.dv, in.nk, 3e-6);
		free(lse);
		grads_free(&f);
		grads_free(&x);
		inputs_free(&in);
	}
}
END_TEST

/* ---------------------------------------------------------------- PyTorch */

static void vec(float *x, size_t n, double a, double b, double s)
{
	for (size_t i = 0; i < n; i++)
		x[i] = (float)(s * sin(a * (double)i + b));
}

static void ref_list(const cJSON *ref, const char *key, float *x, size_t n)
{
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(ref, key);
	ck_assert_msg(a != NULL, "%s missing from the fixture", key);
	ck_assert_int_eq(cJSON_GetArraySize(a), (int)n);
	for (size_t i = 0; i < n; i++)
		x[i] = (float)cJSON_GetArrayItem(a, (int)i)->valuedouble;
}

START_TEST(flash_matches_torch)
{
	struct strbuf sb = STRBUF_INIT;
	ck_assert_int_ge(strbuf_read_file(&sb, src_path("tests/fixtures/trainer/flash_attn_ref.json")),
			 0);
	cJSON *ref = cJSON_Parse(sb.buf);
	strbuf_release(&sb);
	ck_assert_ptr_nonnull(ref);
	struct inputs in;
	struct shape s;
	s.B = cJSON_GetObjectItem(ref, "B")->valueint;
	s.T = cJSON_GetObjectItem(ref, "T")->valueint;
	s.NH = cJSON_GetObjectItem(ref, "NH")->valueint;
	s.NKV = cJSON_GetObjectItem(ref, "NKV")->valueint;
	s.hd = cJSON_GetObjectItem(ref, "hd")->valueint;
	in.s = s;
	in.nq = (size_t)s.B * s.T * s.NH * s.hd;
	in.nk = (size_t)s.B * s.T * s.NKV * s.hd;
	in.q = malloc(in.nq * sizeof(float));
	in.k = malloc(in.nk * sizeof(float));
	in.v = malloc(in.nk * sizeof(float));
	in.dout = malloc(in.nq * sizeof(float));
	in.doc = malloc((size_t)s.B * s.T * sizeof(int32_t));
	/* the same formulas as the script */
	vec(in.q, in.nq, 0.37, 0.1, 1.5);
	vec(in.k, in.nk, 0.53, 0.7, 1.5);
	vec(in.v, in.nk, 0.29, 0.3, 1.0);
	vec(in.dout, in.nq, 0.71, 0.2, 1.0);
	const cJSON *jd = cJSON_GetObjectItem(ref, "doc");
	for (int i = 0; i < s.B * s.T; i++)
		in.doc[i] = cJSON_GetArrayItem(jd, i)->valueint;
	struct grads t, f, x;
	grads_alloc(&t, &in);
	grads_alloc(&f, &in);
	grads_alloc(&x, &in);
	ref_list(ref, "out", t.out, in.nq);
	ref_list(ref, "lse", t.lse, (size_t)s.B * s.NH * s.T);
	ref_list(ref, "dq", t.dq, in.nq);
	ref_list(ref, "dk", t.dk, in.nk);
	ref_list(ref, "dv", t.dv, in.nk);
	run_full(&f, &in);
	run_flash(&x, &in);
	printf("against torch: B %d T %d NH %d NKV %d hd %d\n", s.B, s.T, s.NH, s.NKV, s.hd);
	cmp("flash out", x.out, t.out, in.nq, 2e-6);
	cmp("flash lse", x.lse, t.lse, (size_t)s.B * s.NH * s.T, 2e-6);
	cmp("flash dq", x.dq, t.dq, in.nq, 3e-6);
	cmp("flash dk", x.dk, t.dk, in.nk, 3e-6);
	cmp("flash dv", x.dv, t.dv, in.nk, 3e-6);
	cmp("full out", f.out, t.out, in.nq, 2e-6);
	cmp("full dq", f.dq, t.dq, in.nq, 3e-6);
	cmp("full dk", f.dk, t.dk, in.nk, 3e-6);
	cmp("full dv", f.dv, t.dv, in.nk, 3e-6);
	grads_free(&t), grads_free(&f), grads_free(&x);
	inputs_free(&in);
	cJSON_Delete(ref);
}
END_TEST

/* ---------------------------------------------------------------- kernel emulation */

/* Thread number of position i in the order a launch is emulated in. */
static int tid_at(int i, int reverse)
{
	return reverse ? FTK_FLASH_ROWS - 1 - i : i;
}

/* The three kernels of backend_cuda.cu, one block at a time, phase by phase. */
static void emulate(struct grads *g, const struct inputs *in, int reverse)
{
	struct shape s = in->s;
	struct ftk_flash_dims d = ftk_flash_dims_make(s.B, s.T, s.NH, s.NKV, s.hd);
	size_t nsm = ftk_flash_smem_floats(&d);
	float *Dbuf = malloc((size_t)s.B * s.NH * s.T * sizeof(float));
	int R = FTK_FLASH_ROWS;
	/* k_flash_fwd */
	struct ftk_flash_fwd_thread *ft = malloc(R * sizeof(*ft));
	for (int blk = 0; blk < (int)ftk_flash_q_blocks(&d); blk++) {
		float *sm = malloc(nsm * sizeof(float));
		int kb, ke;
		for (int i = 0; i < R; i++)
			ftk_flash_fwd_begin(&d, blk, tid_at(i, reverse), sm, &ft[tid_at(i, reverse)],
					    in->q, in->doc);
		ftk_flash_q_keys(&d, blk, sm, &kb, &ke);
		for (int k0 = kb; k0 < ke; k0 += d.tile) {
			for (int i = 0; i < R; i++)
				ftk_flash_load_kv(&d, blk, tid_at(i, reverse), R, k0, ke, sm, in->k,
						  in->v);
			for (int i = 0; i < R; i++)
				ftk_flash_fwd_update(&d, tid_at(i, reverse), k0, ke, sm,
						     &ft[tid_at(i, reverse)]);
		}
		for (int i = 0; i < R; i++)
			ftk_flash_fwd_end(&d, blk, &ft[tid_at(i, reverse)], g->out, g->lse);
		free(sm);
	}
	free(ft);
	/* k_flash_dq */
	struct ftk_flash_dq_thread *qt = malloc(R * sizeof(*qt));
	for (int blk = 0; blk < (int)ftk_flash_q_blocks(&d); blk++) {
		float *sm = malloc(nsm * sizeof(float));
		int kb, ke;
		for (int i = 0; i < R; i++)
			ftk_flash_dq_begin(&d, blk, tid_at(i, reverse), sm, &qt[tid_at(i, reverse)],
					   in->q, in->dout, g->out, g->lse, Dbuf, in->doc);
		ftk_flash_q_keys(&d, blk, sm, &kb, &ke);
		for (int k0 = kb; k0 < ke; k0 += d.tile) {
			for (int i = 0; i < R; i++)
				ftk_flash_load_kv(&d, blk, tid_at(i, reverse), R, k0, ke, sm, in->k,
						  in->v);
			for (int i = 0; i < R; i++)
				ftk_flash_dq_update(&d, tid_at(i, reverse), k0, ke, sm,
						    &qt[tid_at(i, reverse)]);
		}
		for (int i = 0; i < R; i++)
			ftk_flash_dq_end(&d, blk, &qt[tid_at(i, reverse)], g->dq);
		free(sm);
	}
	free(qt);
	/* k_flash_dkv */
	struct ftk_flash_kv_thread *kt = malloc(R * sizeof(*kt));
	for (int blk = 0; blk < (int)ftk_flash_kv_blocks(&d); blk++) {
		float *sm = malloc(nsm * sizeof(float));
		int qb, qe, b, kh, s0, gq = s.NH / s.NKV;
		for (int i = 0; i < R; i++)
			ftk_flash_kv_begin(&d, blk, tid_at(i, reverse), sm, &kt[tid_at(i, reverse)],
					   in->k, in->v, in->doc);
		ftk_flash_kv_queries(&d, blk, sm, &qb, &qe);
		ftk_flash_kvblock(&d, blk, &b, &kh, &s0);
		for (int h = kh * gq; h < (kh + 1) * gq; h++)
			for (int q0 = qb; q0 < qe; q0 += d.tile) {
				for (int i = 0; i < R; i++)
					ftk_flash_load_qo(&d, blk, tid_at(i, reverse), R, h, q0, qe, sm,
							  in->q, in->dout, g->lse, Dbuf);
				for (int i = 0; i < R; i++)
					ftk_flash_kv_update(&d, tid_at(i, reverse), q0, qe, sm,
							    &kt[tid_at(i, reverse)]);
			}
		for (int i = 0; i < R; i++)
			ftk_flash_kv_end(&d, blk, &kt[tid_at(i, reverse)], g->dk, g->dv);
		free(sm);
	}
	free(kt);
	free(Dbuf);
}

static const struct shape emu_shapes[] = {
	{ 2, 77, 4, 2, 8 },
	{ 1, 150, 6, 2, 16 },
	{ 1, 131, 4, 1, 64 },
	{ 1, 70, 2, 1, 256 },	/* the largest head_dim: 16-row tiles */
	{ 1, 5, 2, 2, 32 },	/* fewer rows than threads */
};

START_TEST(flash_kernels_emulated)
{
	be->ops->set_threads(be, 2);
	for (size_t i = 0; i < FTK_ARRAY_SIZE(emu_shapes); i++) {
		struct inputs in;
		struct grads x, e, r;
		inputs_make(&in, emu_shapes[i], 200 + i);
		grads_alloc(&x, &in);
		grads_alloc(&e, &in);
		grads_alloc(&r, &in);
		run_flash(&x, &in);
		emulate(&e, &in, 0);
		emulate(&r, &in, 1);
		struct shape s = in.s;
		size_t nl = (size_t)s.B * s.NH * s.T;
		printf("emulated kernels: B %d T %d NH %d NKV %d hd %d (tile %d)\n", s.B, s.T, s.NH,
		       s.NKV, s.hd, ftk_flash_dims_make(s.B, s.T, s.NH, s.NKV, s.hd).tile);
		cmp("out (kernels vs cpu flash)", e.out, x.out, in.nq, 2e-6);
		cmp("lse", e.lse, x.lse, nl, 2e-6);
		cmp("dq", e.dq, x.dq, in.nq, 3e-6);
		cmp("dk", e.dk, x.dk, in.nk, 3e-6);
		cmp("dv", e.dv, x.dv, in.nk, 3e-6);
		ck_assert_msg(!memcmp(e.out, r.out, in.nq * 4) && !memcmp(e.lse, r.lse, nl * 4) &&
				      !memcmp(e.dq, r.dq, in.nq * 4) && !memcmp(e.dk, r.dk, in.nk * 4) &&
				      !memcmp(e.dv, r.dv, in.nk * 4),
			      "threads in reverse order give other bits");
		grads_free(&x), grads_free(&e), grads_free(&r);
		inputs_free(&in);
	}
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("flash");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, be_new, be_free);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, flash_cpu_matches_full);
	tcase_add_test(tc, flash_matches_torch);
	tcase_add_test(tc, flash_kernels_emulated);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(make_suite)
