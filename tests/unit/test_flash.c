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
 *   3. The CUDA kernels' bodies (model/flash_kernels.h: a warp per row,
 *      the row's vectors split across 32 lanes by head dimension, dot
 *      products summed by a shuffle butterfly) emulated on the host: every
 *      block, every block phase for every thread number between the
 *      barriers, every warp phase for every warp (its 32 lanes a loop in
 *      the header, the shuffle the same butterfly over an array), shared
 *      memory a malloc of exactly the launch's size (AddressSanitizer under
 *      SAN=1) filled with NaN before each tile load, threads and warps once
 *      in order and once reversed (identical bits required: no phase may
 *      depend on another thread's writes of the same phase), against
 *      attention computed exactly in double here, within a tolerance taken
 *      from the CPU backend's own error in the same run (emu_tol); head_dim
 *      8 to 256, including 48 and 100 (not multiples of 32), T not a
 *      multiple of the tile, fewer rows than a block's warps, GQA.  The
 *      butterfly itself: every lane ends with the same bits, the sum.
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
	printf("  %-40s max_rel %.2e  tol %.1e\n", what, rel, tol);
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

/* Position i (of n) in the order a launch is emulated in. */
static int at(int i, int n, int reverse)
{
	return reverse ? n - 1 - i : i;
}

/* NaN over the tiles before each load, so a read of a slot the load did not fill shows. */
static void poison(float *sm, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sm[i] = NAN;
}

/*
 * The three kernels of backend_cuda.cu, one block at a time, phase by
 * phase: a block phase for every thread number, a warp phase for every
 * warp (the 32 lanes inside it, as flash_kernels.h runs them on the host).
 * reverse runs the threads and the warps backwards.
 */
static void emulate(struct grads *g, const struct inputs *in, int reverse)
{
	struct shape s = in->s;
	struct ftk_flash_dims d = ftk_flash_dims_make(s.B, s.T, s.NH, s.NKV, s.hd);
	size_t nsm = ftk_flash_smem_floats(&d), ntile = (size_t)2 * d.tile * d.hd + 2 * d.tile;
	float *Dbuf = malloc((size_t)s.B * s.NH * s.T * sizeof(float));
	int R = FTK_FLASH_ROWS, NT = FTK_FLASH_THREADS, L = FTK_FLASH_LANES;
	ck_assert_int_eq(L, FTK_FLASH_WARP);
	/* k_flash_fwd */
	struct ftk_flash_fwd_lane *ft = malloc((size_t)R * L * sizeof(*ft));
	for (int blk = 0; blk < (int)ftk_flash_q_blocks(&d); blk++) {
		float *sm = malloc(nsm * sizeof(float));
		int kb, ke;
		poison(sm, nsm);
		ftk_flash_q_starts(&d, blk, sm, in->doc);
		for (int i = 0; i < R; i++)
			ftk_flash_fwd_begin(&d, blk, at(i, R, reverse), ft + at(i, R, reverse) * L, in->q);
		ftk_flash_q_keys(&d, blk, sm, &kb, &ke);
		for (int k0 = kb; k0 < ke; k0 += d.tile) {
			poison(sm, ntile);
			for (int i = 0; i < NT; i++)
				ftk_flash_load_kv(&d, blk, at(i, NT, reverse), NT, k0, ke, sm, in->k, in->v);
			for (int i = 0; i < R; i++)
				ftk_flash_fwd_tile(&d, at(i, R, reverse), k0, ke, sm,
						   ft + at(i, R, reverse) * L);
		}
		for (int i = 0; i < R; i++)
			ftk_flash_fwd_end(&d, blk, at(i, R, reverse), ft + at(i, R, reverse) * L, g->out,
					  g->lse);
		free(sm);
	}
	free(ft);
	/* k_flash_dq */
	struct ftk_flash_dq_lane *qt = malloc((size_t)R * L * sizeof(*qt));
	for (int blk = 0; blk < (int)ftk_flash_q_blocks(&d); blk++) {
		float *sm = malloc(nsm * sizeof(float));
		int kb, ke;
		poison(sm, nsm);
		ftk_flash_q_starts(&d, blk, sm, in->doc);
		for (int i = 0; i < R; i++)
			ftk_flash_dq_begin(&d, blk, at(i, R, reverse), qt + at(i, R, reverse) * L, in->q,
					   in->dout, g->out, g->lse, Dbuf);
		ftk_flash_q_keys(&d, blk, sm, &kb, &ke);
		for (int k0 = kb; k0 < ke; k0 += d.tile) {
			poison(sm, ntile);
			for (int i = 0; i < NT; i++)
				ftk_flash_load_kv(&d, blk, at(i, NT, reverse), NT, k0, ke, sm, in->k, in->v);
			for (int i = 0; i < R; i++)
				ftk_flash_dq_tile(&d, at(i, R, reverse), k0, ke, sm,
						  qt + at(i, R, reverse) * L);
		}
		for (int i = 0; i < R; i++)
			ftk_flash_dq_end(&d, blk, at(i, R, reverse), qt + at(i, R, reverse) * L, g->dq);
		free(sm);
	}
	free(qt);
	/* k_flash_dkv */
	struct ftk_flash_kv_lane *kt = malloc((size_t)R * L * sizeof(*kt));
	for (int blk = 0; blk < (int)ftk_flash_kv_blocks(&d); blk++) {
		float *sm = malloc(nsm * sizeof(float));
		int qb, qe, b, kh, s0, gq = s.NH / s.NKV;
		poison(sm, nsm);
		ftk_flash_kv_ends(&d, blk, sm, in->doc);
		for (int i = 0; i < R; i++)
			ftk_flash_kv_begin(&d, blk, at(i, R, reverse), kt + at(i, R, reverse) * L, in->k,
					   in->v);
		ftk_flash_kv_queries(&d, blk, sm, &qb, &qe);
		ftk_flash_kvblock(&d, blk, &b, &kh, &s0);
		for (int h = kh * gq; h < (kh + 1) * gq; h++)
			for (int q0 = qb; q0 < qe; q0 += d.tile) {
				poison(sm, ntile);
				for (int i = 0; i < NT; i++)
					ftk_flash_load_qo(&d, blk, at(i, NT, reverse), NT, h, q0, qe, sm,
							  in->q, in->dout, g->lse, Dbuf);
				for (int i = 0; i < R; i++)
					ftk_flash_kv_tile(&d, at(i, R, reverse), q0, qe, sm,
							  kt + at(i, R, reverse) * L);
			}
		for (int i = 0; i < R; i++)
			ftk_flash_kv_end(&d, blk, at(i, R, reverse), kt + at(i, R, reverse) * L, g->dk,
					 g->dv);
		free(sm);
	}
	free(kt);
	free(Dbuf);
}

/* The butterfly leaves the same bits in every lane, and they are the sum. */
START_TEST(flash_warp_sum)
{
	float x[FTK_FLASH_WARP];
	double want = 0;
	ftk_rng_seed(&rng, 7);
	for (int l = 0; l < FTK_FLASH_WARP; l++) {
		x[l] = (float)(ftk_rng_uniform(&rng) - 0.5) * (float)(1 << (l % 7));
		want += x[l];
	}
	float got = ftk_flash_warp_sum(x);
	for (int l = 0; l < FTK_FLASH_WARP; l++)
		ck_assert_msg(memcmp(&x[l], &got, sizeof(float)) == 0, "lane %d holds %.9g, lane 0 %.9g",
			      l, x[l], got);
	/* 31 additions of terms at most 32 in size: |error| <= 31 * 2^-24 * sum |x| < 1e-4 */
	ck_assert_msg(fabs(got - want) < 1e-4, "warp sum %.9g, want %.9g", got, want);
}
END_TEST

/*
 * The exact attention in double, straight from the definitions (the mask:
 * query t sees keys [ftk_doc_start(t), t]), rounded to float at the end:
 * the forward out, and for dout the gradients dq, dk, dv.
 */
static void attn_double(struct grads *g, const struct inputs *in)
{
	struct shape s = in->s;
	int hd = s.hd, gq = s.NH / s.NKV;
	double scale = 1.0 / sqrt((double)hd);
	double *dk = calloc(in->nk, sizeof(double)), *dv = calloc(in->nk, sizeof(double));
	double *p = malloc((size_t)s.T * sizeof(double)), *o = malloc((size_t)hd * sizeof(double));
	double *dq = malloc((size_t)hd * sizeof(double));
	for (int b = 0; b < s.B; b++)
		for (int h = 0; h < s.NH; h++)
			for (int t = 0; t < s.T; t++) {
				int kh = h / gq, s0 = ftk_doc_start(in->doc + (size_t)b * s.T, t);
				size_t qrow = (((size_t)b * s.T + t) * s.NH + h) * hd;
				const float *qr = in->q + qrow, *dr = in->dout + qrow;
				double mx = -INFINITY, l = 0, D = 0;
				for (int j = s0; j <= t; j++) {
					const float *kr = in->k + (((size_t)b * s.T + j) * s.NKV + kh) * hd;
					double d = 0;
					for (int i = 0; i < hd; i++)
						d += (double)qr[i] * kr[i];
					p[j] = d * scale;
					mx = p[j] > mx ? p[j] : mx;
				}
				for (int j = s0; j <= t; j++)
					l += p[j] = exp(p[j] - mx);
				for (int i = 0; i < hd; i++)
					o[i] = dq[i] = 0;
				for (int j = s0; j <= t; j++) {
					const float *vr = in->v + (((size_t)b * s.T + j) * s.NKV + kh) * hd;
					p[j] /= l;
					for (int i = 0; i < hd; i++)
						o[i] += p[j] * vr[i];
				}
				for (int i = 0; i < hd; i++) {
					g->out[qrow + i] = (float)o[i];
					D += dr[i] * o[i];
				}
				for (int j = s0; j <= t; j++) {
					size_t krow = (((size_t)b * s.T + j) * s.NKV + kh) * hd;
					const float *kr = in->k + krow, *vr = in->v + krow;
					double dp = 0;
					for (int i = 0; i < hd; i++)
						dp += (double)dr[i] * vr[i];
					double ds = p[j] * (dp - D);
					for (int i = 0; i < hd; i++) {
						dq[i] += ds * kr[i] * scale;
						dk[krow + i] += ds * qr[i] * scale;
						dv[krow + i] += p[j] * dr[i];
					}
				}
				for (int i = 0; i < hd; i++)
					g->dq[qrow + i] = (float)dq[i];
			}
	for (size_t i = 0; i < in->nk; i++)
		g->dk[i] = (float)dk[i], g->dv[i] = (float)dv[i];
	free(dk), free(dv), free(p), free(o), free(dq);
}

/* max |a - b| / max |b| over n */
static double rel_err(const float *a, const float *b, size_t n)
{
	double md = 0, mb = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - b[i]);
		md = d > md || d != d ? d : md;
		mb = fabs(b[i]) > mb ? fabs(b[i]) : mb;
	}
	return md / (mb > 0 ? mb : 1);
}

/*
 * The tolerance for the emulated kernels' error against the exact values:
 * the kernels compute the same fp32 formulas as the CPU backend in another
 * order, so their rounding errors have the same sources and the same size
 * as the CPU's, which this run measures (err_cpu, the CPU backend's (T, T)
 * attention against the exact values).  Per score the kernel rounds in
 * fewer steps (8 products per lane and a 5-level butterfly, against the
 * CPU's hd-long dot); per key it may round once more than the CPU (the
 * online rescale is per key, not per tile), at most doubling the rounding
 * count of each accumulated sum.  So the kernels' error may be twice the
 * CPU's, and twice that again for the spread between two maxima of such
 * errors: 4 err_cpu, plus 16 u (u = 2^-24, fp32's unit roundoff) for the
 * final float roundings of both and for err_cpu being small by chance.  A
 * fault in the thread logic (a lane's dimensions left out of a dot product,
 * a wrong reduction, a missed key or rescale) moves values by a sizeable
 * fraction of themselves: orders of magnitude beyond.
 */
static double emu_tol(const float *cpu, const float *exact, size_t n, const char *what)
{
	double e = rel_err(cpu, exact, n), u = 1.0 / (1 << 24);
	printf("  %-40s max_rel %.2e\n", what, e);
	/* the CPU backend agrees with PyTorch to 3e-6 (flash_matches_torch): else this reference is wrong */
	ck_assert_msg(e <= 1e-5, "%s: %g: the exact reference is not", what, e);
	return 4 * e + 16 * u;
}

static const struct shape emu_shapes[] = {
	{ 2, 77, 4, 2, 8 },	/* GQA 2:1; lanes 8..31 hold no dimension */
	{ 1, 150, 6, 2, 16 },	/* GQA 3:1 */
	{ 2, 45, 2, 1, 48 },	/* 48 = 32 + 16: lanes 16..31 hold one dimension, 0..15 two */
	{ 1, 131, 4, 1, 64 },	/* T = 2 tiles + 3 */
	{ 1, 61, 4, 2, 100 },	/* 100 dims: 40-key tiles, 3 or 4 dims per lane */
	{ 1, 70, 2, 1, 256 },	/* the largest head_dim: 16-key tiles, 8 dims per lane */
	{ 1, 5, 2, 2, 32 },	/* fewer rows than warps */
};

START_TEST(flash_kernels_emulated)
{
	be->ops->set_threads(be, 2);
	for (size_t i = 0; i < FTK_ARRAY_SIZE(emu_shapes); i++) {
		struct inputs in;
		struct grads x, f, e, r;
		inputs_make(&in, emu_shapes[i], 200 + i);
		grads_alloc(&x, &in);
		grads_alloc(&f, &in);
		grads_alloc(&e, &in);
		grads_alloc(&r, &in);
		run_flash(&x, &in);
		run_full(&f, &in);
		emulate(&e, &in, 0);
		emulate(&r, &in, 1);
		struct shape s = in.s;
		size_t nl = (size_t)s.B * s.NH * s.T;
		float *lse = lse_double(&in);
		printf("emulated kernels: B %d T %d NH %d NKV %d hd %d (tile %d)\n", s.B, s.T, s.NH,
		       s.NKV, s.hd, ftk_flash_dims_make(s.B, s.T, s.NH, s.NKV, s.hd).tile);
		struct grads z;
		grads_alloc(&z, &in);
		attn_double(&z, &in);
		cmp("out (kernels vs exact)", e.out, z.out, in.nq,
		    emu_tol(f.out, z.out, in.nq, "out (cpu full vs exact)"));
		cmp("lse (kernels vs exact)", e.lse, lse, nl,
		    emu_tol(x.lse, lse, nl, "lse (cpu flash vs exact)"));
		cmp("dq (kernels vs exact)", e.dq, z.dq, in.nq,
		    emu_tol(f.dq, z.dq, in.nq, "dq (cpu full vs exact)"));
		cmp("dk (kernels vs exact)", e.dk, z.dk, in.nk,
		    emu_tol(f.dk, z.dk, in.nk, "dk (cpu full vs exact)"));
		cmp("dv (kernels vs exact)", e.dv, z.dv, in.nk,
		    emu_tol(f.dv, z.dv, in.nk, "dv (cpu full vs exact)"));
		grads_free(&z);
		ck_assert_msg(!memcmp(e.out, r.out, in.nq * 4) && !memcmp(e.lse, r.lse, nl * 4) &&
				      !memcmp(e.dq, r.dq, in.nq * 4) && !memcmp(e.dk, r.dk, in.nk * 4) &&
				      !memcmp(e.dv, r.dv, in.nk * 4),
			      "threads in reverse order give other bits");
		free(lse);
		grads_free(&x), grads_free(&f), grads_free(&e), grads_free(&r);
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
	tcase_add_test(tc, flash_warp_sum);
	tcase_add_test(tc, flash_kernels_emulated);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(make_suite)
