/*
 * backend_cpu.c: the reference backend.  OpenBLAS for matrix products,
 * ops.h's per-row arithmetic in plain loops, and a few threads for the rest.
 *
 * Threads.  OpenBLAS is kept single-threaded and all parallel work runs on
 * our own short-lived pthreads (par_run): a matrix product is cut into one
 * slice of its output per thread, the attention heads and the per-row ops
 * are spread the same way.  OpenBLAS's own threads spin between calls,
 * burning the second core while the first does element-wise work, and run
 * thin products (a LoRA rank on one side) about three times slower on two
 * threads than on one; slicing avoids both.  Thread creation costs tens of
 * microseconds, far below the work it splits, and keeps the code free of a
 * pool's state.
 *
 * NF4 weights are never dequantized whole: linear_fwd and linear_bwd_inp
 * decode a tile of rows (up to 1M values) in parallel into a scratch buffer
 * and run one sgemm per tile.  For one row (generation) a fused
 * dequantize-and-dot loop is used instead.
 *
 * Under set_precision(FTK_PREC_BF16) the products go through the bf16
 * functions at the end of the file instead: operands rounded to bf16 into
 * scratch, then the same sgemm, the exact reference for the CUDA backend's
 * bf16 tensor-core products.
 *
 * State.  What set_threads and set_precision set belongs to the instance
 * (struct cpu_state, be->ctx), so two instances compute side by side with
 * their own thread counts and precisions.  Scratch (dequantized tiles,
 * bf16 operands, the attention backward's buffer) belongs to the calling
 * thread (tls_buf), not to an instance: ops of one instance may run on
 * several threads at once, and instances never share a buffer mid-op.
 */
#include "model/backend.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/mman.h>
#include "lib/err.h"
#include "model/ops.h"

/* An instance's state (be->ctx): what set_threads and set_precision set. */
struct cpu_state {
	int threads;	/* par_run's workers, at least 1 */
	int precision;	/* enum ftk_precision */
};

static int threads_of(const struct ftk_backend *be)
{
	return ((const struct cpu_state *)be->ctx)->threads;
}

static int precision_of(const struct ftk_backend *be)
{
	return ((const struct cpu_state *)be->ctx)->precision;
}

/* bf16 products (the end of this file): operands rounded to bf16, then sgemm */
static void bf16_gemm(struct ftk_backend *be, int ta, int tb, int M, int N, int K, float alpha,
		      const float *A, int lda, const float *B, int ldb, float beta, float *C,
		      int ldc);
static void bf16_gemm_batch(struct ftk_backend *be, int n, const struct ftk_gemm_args *g);
static void bf16_linear(struct ftk_backend *be, float *y, const float *x,
			const struct ftk_weight *w, const float *bias, int M, int bwd);

static void cpu_set_threads(struct ftk_backend *be, int n)
{
	if (n <= 0) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);
		n = c > 0 ? (int)c : 1;
	}
	((struct cpu_state *)be->ctx)->threads = n;
	openblas_set_num_threads(1);	/* every product is sliced over our threads */
}

/* ---------------------------------------------------------------- threads */

struct par {
	void (*fn)(void *ctx, int task);
	void *ctx;
	int n_tasks;
	int next;	/* atomic */
	int workers;	/* atomic: hands out worker numbers */
};

/* The number (0 .. threads-1) of the par_run worker running the current task. */
static __thread int worker_id;

static void *par_worker(void *arg)
{
	struct par *p = arg;
	int t;
	worker_id = __atomic_fetch_add(&p->workers, 1, __ATOMIC_RELAXED);
	while ((t = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED)) < p->n_tasks)
		p->fn(p->ctx, t);
	return NULL;
}

/* Run fn(ctx, 0..n_tasks-1) on up to threads threads; OpenBLAS single-threaded inside. */
static void par_run(int threads, int n_tasks, void (*fn)(void *ctx, int task), void *ctx)
{
	int nt = threads < n_tasks ? threads : n_tasks;
	struct par p = { fn, ctx, n_tasks, 0, 0 };
	if (nt <= 1) {
		worker_id = 0;
		for (int t = 0; t < n_tasks; t++)
			fn(ctx, t);
		return;
	}
	pthread_t th[64];
	if (nt > 64)
		nt = 64;
	int started = 0;
	for (int i = 0; i < nt - 1; i++)
		if (!pthread_create(&th[started], NULL, par_worker, &p))
			started++;
	par_worker(&p);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	worker_id = 0;
}

/* Split [0, n) into chunks for par_run: task t covers [t*n/k, (t+1)*n/k). */
#define CHUNKS(threads, n) ((n) < 2 ? 1 : (threads) * 4 < (int)(n) ? (threads) * 4 : (int)(n))
#define RANGE(t, k, n, s, e)                          \
	size_t s = (size_t)(t) * (size_t)(n) / (size_t)(k); \
	size_t e = (size_t)((t) + 1) * (size_t)(n) / (size_t)(k)

/* ---------------------------------------------------------------- memory */

static void *cpu_alloc(struct ftk_backend *be, size_t n)
{
	void *p = NULL;
	if (posix_memalign(&p, 64, n ? n : 64))
		return xcalloc(1, n);	/* alignment is only a speed-up; xcalloc aborts on OOM */
	memset(p, 0, n);
	return p;
}

static void cpu_free(struct ftk_backend *be, void *p)
{
	free(p);
}

static void cpu_copy(struct ftk_backend *be, void *dst, const void *src, size_t n)
{
	memcpy(dst, src, n);
}

static void cpu_zero(struct ftk_backend *be, void *p, size_t n)
{
	memset(p, 0, n);
}

static void cpu_weight_prepare(struct ftk_backend *be, struct ftk_weight *w)
{
	(void)w;
}

/* ---------------------------------------------------------------- gemm */

struct gemm_ctx {
	int ta, tb, M, N, K, lda, ldb, ldc, k, by_rows;
	float alpha, beta;
	const float *A, *B;
	float *C;
};

/* One slice of C: a block of rows (op(A)'s rows) or of columns (op(B)'s columns). */
static void gemm_task(void *vctx, int t)
{
	struct gemm_ctx *c = vctx;
	const float *A = c->A, *B = c->B;
	float *C = c->C;
	int M = c->M, N = c->N;
	if (c->by_rows) {
		RANGE(t, c->k, c->M, s, e);
		A += c->ta ? s : s * (size_t)c->lda;
		C += s * (size_t)c->ldc;
		M = (int)(e - s);
	} else {
		RANGE(t, c->k, c->N, s, e);
		B += c->tb ? s * (size_t)c->ldb : s;
		C += s;
		N = (int)(e - s);
	}
	if (M > 0 && N > 0)
		cblas_sgemm(CblasRowMajor, c->ta ? CblasTrans : CblasNoTrans,
			    c->tb ? CblasTrans : CblasNoTrans, M, N, c->K, c->alpha, A, c->lda, B,
			    c->ldb, c->beta, C, c->ldc);
}

/*
 * OpenBLAS runs single-threaded; a product big enough to share is cut into
 * one slice of C per thread along its longer side, each slice an ordinary
 * sgemm.  OpenBLAS's own threads spin (sched_yield) between calls, which
 * burns the other core while ours do element-wise work.
 */
static void cpu_gemm(struct ftk_backend *be, int ta, int tb, int M, int N, int K, float alpha,
		     const float *A, int lda, const float *B, int ldb, float beta, float *C,
		     int ldc)
{
	int nt = threads_of(be);
	if (precision_of(be) == FTK_PREC_BF16) {
		bf16_gemm(be, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
		return;
	}
	struct gemm_ctx c = { ta, tb, M, N, K, lda, ldb, ldc, 1, M >= N, alpha, beta, A, B, C };
	double work = 2.0 * M * N * K;
	int thin = M < 64 || N < 64 || K < 64;
	/* thin products (a LoRA rank on one side) stay on one thread, as do
	 * small ones: their slices would cost more in thread start-up and
	 * waiting than they save (BENCH.md) */
	c.k = nt == 1 || work < 4e6 || (thin && work < 2e8) ? 1 : nt;
	if (c.k == 1) {
		cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
			    tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C,
			    ldc);
		return;
	}
	par_run(nt, c.k, gemm_task, &c);
}

/* ---------------------------------------------------------------- linear */

#define TILE_ELEMS ((size_t)1 << 20)	/* floats of dequantized weight per worker at a time */

/*
 * NF4 products.  Each worker dequantizes only the part of W its slice of the
 * output needs, in tiles of at most TILE_ELEMS floats, and multiplies it at
 * once while it is in its cache: forward slices W by rows (output columns),
 * the input gradient by 64-aligned column ranges (so it decodes whole
 * blocks).  The tiles belong to the calling thread, one per worker, kept
 * between calls.
 */
struct nf4_lin_ctx {
	const struct ftk_weight *w;
	/* fills tile with weights [start, start + n) of w (NF4 decoded; bf16: rounded) */
	void (*load)(const struct ftk_weight *w, size_t start, size_t n, float *tile);
	const float *x;		/* inp (M, K) forward, dout (M, N) backward */
	float *y;		/* out (M, N) forward, dinp (M, K) backward */
	float **tiles;
	size_t tile_elems;
	int M, k;
};

/*
 * Scratch kept per calling thread between calls (grown, never shrunk), so two
 * models in one process never share it: the NF4/bf16 tiles of each worker,
 * attention's (T, T) scratch, the two bf16-rounded operands.  Freed when the
 * thread exits, which ftk-serve's worker threads do; the main thread's stays
 * reachable until exit.
 */
enum { TLS_TILES = 0, TLS_ATTN = 64, TLS_BF16 = 65, TLS_N = 67 };
static __thread float *tls_ptr[TLS_N];
static __thread size_t tls_cap[TLS_N];
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void tls_release(void *unused)
{
	(void)unused;
	for (int i = 0; i < TLS_N; i++) {
		free(tls_ptr[i]);
		tls_ptr[i] = NULL;
		tls_cap[i] = 0;
	}
}

static void tls_key_make(void)
{
	pthread_key_create(&tls_key, tls_release);
}

/* This thread's buffer `slot`, at least n floats. */
static float *tls_buf(int slot, size_t n)
{
	if (tls_cap[slot] < n) {
		pthread_once(&tls_once, tls_key_make);
		pthread_setspecific(tls_key, &tls_key);	/* non-NULL: release at thread exit */
		free(tls_ptr[slot]);
		tls_ptr[slot] = xmalloc(n * sizeof(float));
		tls_cap[slot] = n;
	}
	return tls_ptr[slot];
}

/* k tiles of elems floats, one per worker of a par_run from this thread */
static float **worker_tiles(int k, size_t elems)
{
	for (int i = 0; i < k; i++)
		tls_buf(TLS_TILES + i, elems);
	return &tls_ptr[TLS_TILES];
}

static void tiled_fwd_task(void *vctx, int t)
{
	struct nf4_lin_ctx *c = vctx;
	int N = c->w->rows, K = c->w->cols;
	RANGE(t, c->k, N, s, e);
	float *tile = c->tiles[worker_id];
	size_t R = c->tile_elems / (size_t)K;
	if (R < 1)
		R = 1;
	for (size_t r0 = s; r0 < e; r0 += R) {
		size_t r = e - r0 < R ? e - r0 : R;
		c->load(c->w, r0 * K, r * K, tile);
		/* out[:, r0:r0+r] (M, r) = inp (M, K) @ tile^T (K, r) */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->M, (int)r, K, 1.0f, c->x, K,
			    tile, K, 0.0f, c->y + r0, N);
	}
}

static void tiled_bwd_task(void *vctx, int t)
{
	struct nf4_lin_ctx *c = vctx;
	int N = c->w->rows, K = c->w->cols;
	size_t nb = ((size_t)K + 63) / 64;
	size_t s = (size_t)t * nb / c->k * 64, e = (size_t)(t + 1) * nb / c->k * 64;
	if (e > (size_t)K)
		e = (size_t)K;
	if (s >= e)
		return;
	size_t width = e - s;
	float *tile = c->tiles[worker_id];
	size_t R = c->tile_elems / width;
	if (R < 1)
		R = 1;
	for (size_t r0 = 0; r0 < (size_t)N; r0 += R) {
		size_t r = (size_t)N - r0 < R ? (size_t)N - r0 : R;
		for (size_t i = 0; i < r; i++)
			c->load(c->w, (r0 + i) * K + s, width, tile + i * width);
		/* dinp[:, s:e] (M, width) += dout[:, r0:r0+r] (M, r) @ tile (r, width) */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->M, (int)width, (int)r, 1.0f,
			    c->x + r0, N, tile, (int)width, 1.0f, c->y + s, K);
	}
}

static void nf4_load(const struct ftk_weight *w, size_t start, size_t n, float *tile)
{
	ftk_nf4_dequant(&w->nf4, start, n, tile);
}

/* y = x @ W^T (forward) or y += x @ W (bwd), W loaded tile by tile by load. */
static void tiled_linear(struct ftk_backend *be, float *y, const float *x,
			 const struct ftk_weight *w, int M, int bwd,
			 void (*load)(const struct ftk_weight *, size_t, size_t, float *))
{
	int nt = threads_of(be);
	size_t NK = (size_t)w->rows * w->cols;
	struct nf4_lin_ctx c = { w, load, x, y, NULL, NK < TILE_ELEMS ? NK : TILE_ELEMS, M, 1 };
	double work = 2.0 * M * (double)NK;
	c.k = nt > 1 && work >= 4e6 ? nt : 1;
	if (bwd && c.k > (w->cols + 63) / 64)
		c.k = (w->cols + 63) / 64;
	if (c.k > 64)
		c.k = 64;
	c.tiles = worker_tiles(c.k, c.tile_elems);
	par_run(nt, c.k, bwd ? tiled_bwd_task : tiled_fwd_task, &c);
}

struct gemv_ctx {
	float *out;
	const float *inp;
	const struct ftk_weight *w;
	const float *bias;
	int M, k;
};

/*
 * Fused NF4 dequantize-and-dot for one input row (generation; it takes up
 * to 4): each 64-value scale block of a row of W is decoded once into a
 * buffer on the stack and dotted with every input row.  The loop before it
 * decoded every weight inside the dot, once per input row, and served
 * M <= 4; bench/nf4_gemv.sh measures both against tiles + sgemm.
 */
static void gemv_task(void *vctx, int t)
{
	struct gemv_ctx *c = vctx;
	int N = c->w->rows, K = c->w->cols;
	RANGE(t, c->k, N, s, e);
	const struct ftk_nf4 *q = &c->w->nf4;
	float buf[FTK_NF4_BLOCK];
	for (size_t n = s; n < e; n++) {
		float acc[4] = { 0.0f, 0.0f, 0.0f, 0.0f };
		size_t base = n * (size_t)K;
		for (int k0 = 0; k0 < K;) {
			/* up to the next block boundary of the flattened weight */
			int len = FTK_NF4_BLOCK - (int)((base + (size_t)k0) % FTK_NF4_BLOCK);
			if (len > K - k0)
				len = K - k0;
			ftk_nf4_dequant(q, base + (size_t)k0, (size_t)len, buf);
			for (int m = 0; m < c->M; m++) {
				const float *x = c->inp + (size_t)m * K + k0;
				float dot = 0.0f;
				for (int i = 0; i < len; i++)
					dot += x[i] * buf[i];
				acc[m] += dot;
			}
			k0 += len;
		}
		for (int m = 0; m < c->M; m++)
			c->out[(size_t)m * N + n] = acc[m] + (c->bias ? c->bias[n] : 0.0f);
	}
}

static void cpu_add_bias(float *out, const float *bias, int M, int N)
{
	for (int m = 0; m < M; m++)
		for (int n = 0; n < N; n++)
			out[(size_t)m * N + n] += bias[n];
}

static void cpu_linear_fwd(struct ftk_backend *be, float *out, const float *inp,
			   const struct ftk_weight *w, const float *bias, int M)
{
	int nt = threads_of(be);
	if (precision_of(be) == FTK_PREC_BF16) {
		bf16_linear(be, out, inp, w, bias, M, 0);
		return;
	}
	int N = w->rows, K = w->cols;
	if (w->quant == FTK_QUANT_NONE) {
		cpu_gemm(be, 0, 1, M, N, K, 1.0f, inp, K, w->f32, K, 0.0f, out, N);
	} else if (M == 1) {	/* tiles + sgemm are faster from M = 2 (bench/nf4_gemv.sh) */
		struct gemv_ctx c = { out, inp, w, bias, M, CHUNKS(nt, N) };
		par_run(nt, c.k, gemv_task, &c);
		return;
	} else {
		tiled_linear(be, out, inp, w, M, 0, nf4_load);
	}
	if (bias)
		cpu_add_bias(out, bias, M, N);
}

static void cpu_linear_bwd_inp(struct ftk_backend *be, float *dinp, const float *dout,
			       const struct ftk_weight *w, int M)
{
	if (precision_of(be) == FTK_PREC_BF16) {
		bf16_linear(be, dinp, dout, w, NULL, M, 1);
		return;
	}
	int N = w->rows, K = w->cols;
	if (w->quant == FTK_QUANT_NONE)
		cpu_gemm(be, 0, 0, M, K, N, 1.0f, dout, N, w->f32, K, 1.0f, dinp, K);
	else
		tiled_linear(be, dinp, dout, w, M, 1, nf4_load);
}

/* ---------------------------------------------------------------- rmsnorm */

struct rms_ctx {
	float *out, *rstd, *dinp;
	const float *inp, *weight, *dout, *crstd;
	int M, C, k;
	float eps;
};

static void rms_fwd_task(void *vctx, int t)
{
	struct rms_ctx *c = vctx;
	RANGE(t, c->k, c->M, s, e);
	for (size_t m = s; m < e; m++) {
		float r = ftk_rmsnorm_row(c->out + m * c->C, c->inp + m * c->C, c->weight, c->C, c->eps);
		if (c->rstd)
			c->rstd[m] = r;
	}
}

static void cpu_rmsnorm_fwd(struct ftk_backend *be, float *out, float *rstd, const float *inp,
			    const float *weight, int M, int C, float eps)
{
	int nt = threads_of(be);
	struct rms_ctx c = { .out = out, .rstd = rstd, .inp = inp, .weight = weight, .M = M, .C = C,
			     .eps = eps };
	c.k = (size_t)M * C < 32768 ? 1 : CHUNKS(nt, M);
	par_run(nt, c.k, rms_fwd_task, &c);
}

static void rms_bwd_task(void *vctx, int t)
{
	struct rms_ctx *c = vctx;
	RANGE(t, c->k, c->M, s, e);
	for (size_t m = s; m < e; m++)
		ftk_rmsnorm_row_bwd(c->dinp + m * c->C, c->dout + m * c->C, c->inp + m * c->C,
				    c->weight, c->crstd[m], c->C);
}

static void cpu_rmsnorm_bwd(struct ftk_backend *be, float *dinp, const float *dout,
			    const float *inp, const float *weight, const float *rstd, int M, int C)
{
	int nt = threads_of(be);
	struct rms_ctx c = { .dinp = dinp, .dout = dout, .inp = inp, .weight = weight, .crstd = rstd,
			     .M = M, .C = C };
	c.k = (size_t)M * C < 32768 ? 1 : CHUNKS(nt, M);
	par_run(nt, c.k, rms_bwd_task, &c);
}

/* ---------------------------------------------------------------- rope */

struct rope_ctx {
	float *x;
	const int32_t *pos;
	const float *inv_freq;
	int M, nh, hd, sign, k;
};

static void rope_task(void *vctx, int t)
{
	struct rope_ctx *c = vctx;
	RANGE(t, c->k, c->M, s, e);
	for (size_t m = s; m < e; m++)
		for (int h = 0; h < c->nh; h++)
			ftk_rope_head(c->x + (m * c->nh + h) * c->hd, c->pos[m], c->inv_freq, c->hd,
				      c->sign);
}

static void cpu_rope(struct ftk_backend *be, float *x, const int32_t *pos, const float *inv_freq,
		     int M, int nh, int hd, int sign)
{
	int nt = threads_of(be);
	struct rope_ctx c = { x, pos, inv_freq, M, nh, hd, sign, 1 };
	c.k = (size_t)M * nh * hd < 65536 ? 1 : nt;
	par_run(nt, c.k, rope_task, &c);
}

/* ---------------------------------------------------------------- attention */

struct attn_ctx {
	float *out, *att, *dq, *dk, *dv;
	const float *q, *k, *v, *dout, *catt;
	const int32_t *doc;
	int B, T, NH, NKV, hd;
	float *scratch;	/* per task (T, T) for backward */
};

/*
 * Task = (b, kv head): handles the q heads of that group, so dk/dv have one
 * writer.  Causality: rows [r0, r1) of a T x T product only need columns
 * [0, r1), so every product is done in row blocks of ATT_BLOCK and skips the
 * upper triangle (about 40% of the work at T = 256).
 */
#define ATT_BLOCK 64

static void attn_fwd_task(void *vctx, int task)
{
	struct attn_ctx *c = vctx;
	int T = c->T, NH = c->NH, NKV = c->NKV, hd = c->hd, g = NH / NKV;
	int b = task / NKV, kh = task % NKV;
	float scale = 1.0f / sqrtf((float)hd);
	const float *K = c->k + ((size_t)b * T * NKV + kh) * hd;	/* (T, hd) stride NKV*hd */
	const float *V = c->v + ((size_t)b * T * NKV + kh) * hd;
	const int32_t *doc = c->doc + (size_t)b * T;
	for (int h = kh * g; h < (kh + 1) * g; h++) {
		const float *Q = c->q + ((size_t)b * T * NH + h) * hd;
		float *P = c->att + ((size_t)b * NH + h) * T * T;	/* (T, T) */
		float *O = c->out + ((size_t)b * T * NH + h) * hd;
		for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
			int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T, nr = r1 - r0;
			/* P[r0:r1, 0:r1] = scale Q[r0:r1] K[0:r1]^T */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, r1, hd, scale,
				    Q + (size_t)r0 * NH * hd, NH * hd, K, NKV * hd, 0.0f,
				    P + (size_t)r0 * T, T);
			for (int t = r0; t < r1; t++) {
				float *row = P + (size_t)t * T;
				int s0 = t;
				while (s0 > 0 && doc[s0 - 1] == doc[t])
					s0--;
				for (int s = 0; s < s0; s++)
					row[s] = 0.0f;
				ftk_softmax_row(row + s0, t - s0 + 1);
				for (int s = t + 1; s < T; s++)
					row[s] = 0.0f;
			}
			/* O[r0:r1] = P[r0:r1, 0:r1] V[0:r1] */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, hd, r1, 1.0f,
				    P + (size_t)r0 * T, T, V, NKV * hd, 0.0f, O + (size_t)r0 * NH * hd,
				    NH * hd);
		}
	}
}

static void cpu_attn_fwd(struct ftk_backend *be, float *out, float *att, const float *q,
			 const float *k, const float *v, const int32_t *doc, int B, int T, int NH,
			 int NKV, int hd)
{
	struct attn_ctx c = { .out = out, .att = att, .q = q, .k = k, .v = v, .doc = doc, .B = B,
			      .T = T, .NH = NH, .NKV = NKV, .hd = hd };
	par_run(threads_of(be), B * NKV, attn_fwd_task, &c);
}

static void attn_bwd_task(void *vctx, int task)
{
	struct attn_ctx *c = vctx;
	int T = c->T, NH = c->NH, NKV = c->NKV, hd = c->hd, g = NH / NKV;
	int b = task / NKV, kh = task % NKV;
	float scale = 1.0f / sqrtf((float)hd);
	const float *K = c->k + ((size_t)b * T * NKV + kh) * hd;
	const float *V = c->v + ((size_t)b * T * NKV + kh) * hd;
	float *dK = c->dk + ((size_t)b * T * NKV + kh) * hd;
	float *dV = c->dv + ((size_t)b * T * NKV + kh) * hd;
	float *dP = c->scratch + (size_t)worker_id * T * T;	/* (T, T) this worker's */
	for (int t = 0; t < T; t++) {
		memset(dK + (size_t)t * NKV * hd, 0, hd * sizeof(float));
		memset(dV + (size_t)t * NKV * hd, 0, hd * sizeof(float));
	}
	for (int h = kh * g; h < (kh + 1) * g; h++) {
		const float *Q = c->q + ((size_t)b * T * NH + h) * hd;
		const float *dO = c->dout + ((size_t)b * T * NH + h) * hd;
		const float *P = c->catt + ((size_t)b * NH + h) * T * T;
		float *dQ = c->dq + ((size_t)b * T * NH + h) * hd;
		for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
			int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T, nr = r1 - r0;
			const float *Pb = P + (size_t)r0 * T, *dOb = dO + (size_t)r0 * NH * hd;
			const float *Qb = Q + (size_t)r0 * NH * hd;
			float *dPb = dP + (size_t)r0 * T;
			/* dV[0:r1] += P[r0:r1, 0:r1]^T dO[r0:r1] ; dP[r0:r1, 0:r1] = dO[r0:r1] V[0:r1]^T */
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1, hd, nr, 1.0f, Pb, T,
				    dOb, NH * hd, 1.0f, dV, NKV * hd);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, r1, hd, 1.0f, dOb,
				    NH * hd, V, NKV * hd, 0.0f, dPb, T);
			/* dS = softmax backward over each row's causal part (P is 0 elsewhere) */
			for (int t = r0; t < r1; t++) {
				float *row = dP + (size_t)t * T;
				ftk_softmax_row_bwd(row, P + (size_t)t * T, row, t + 1);
				for (int s = t + 1; s < r1; s++)
					row[s] = 0.0f;
			}
			/* dQ[r0:r1] = scale dS[r0:r1, 0:r1] K[0:r1] ; dK[0:r1] += scale dS^T Q[r0:r1] */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, hd, r1, scale, dPb, T,
				    K, NKV * hd, 0.0f, dQ + (size_t)r0 * NH * hd, NH * hd);
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1, hd, nr, scale, dPb, T,
				    Qb, NH * hd, 1.0f, dK, NKV * hd);
		}
	}
}

static void cpu_attn_bwd(struct ftk_backend *be, float *dq, float *dk, float *dv, const float *dout,
			 const float *att, const float *q, const float *k, const float *v, int B,
			 int T, int NH, int NKV, int hd)
{
	int nt = threads_of(be);
	/* one (T, T) scratch per worker */
	float *scratch = tls_buf(TLS_ATTN, (size_t)(nt < 64 ? nt : 64) * T * T);
	struct attn_ctx c = { .dq = dq, .dk = dk, .dv = dv, .dout = dout, .catt = att, .q = q,
			      .k = k, .v = v, .B = B, .T = T, .NH = NH, .NKV = NKV, .hd = hd,
			      .scratch = scratch };
	par_run(nt, B * NKV, attn_bwd_task, &c);
}

static void cpu_attn_decode(struct ftk_backend *be, float *out, const float *q, const float *kc,
			    const float *vc, int n, int NH, int NKV, int hd, float *scratch)
{
	int g = NH / NKV;
	float scale = 1.0f / sqrtf((float)hd);
	for (int h = 0; h < NH; h++) {
		int kh = h / g;
		const float *qh = q + (size_t)h * hd;
		for (int s = 0; s < n; s++) {
			const float *kr = kc + ((size_t)s * NKV + kh) * hd;
			float d = 0.0f;
			for (int i = 0; i < hd; i++)
				d += qh[i] * kr[i];
			scratch[s] = d * scale;
		}
		ftk_softmax_row(scratch, n);
		float *o = out + (size_t)h * hd;
		memset(o, 0, hd * sizeof(float));
		for (int s = 0; s < n; s++) {
			const float *vr = vc + ((size_t)s * NKV + kh) * hd;
			for (int i = 0; i < hd; i++)
				o[i] += scratch[s] * vr[i];
		}
	}
}

/*
 * Flash attention on the CPU: the same tasks as above (b, kv head), but no
 * (T, T) buffer.  A block of FLASH_BQ query rows meets the keys in tiles of
 * FLASH_BK: one sgemm gives the tile's scores, ops.h's online-softmax
 * rescale turns each row's visible scores into probabilities and rescales
 * its running sum and output, and a second sgemm adds P V to the outputs
 * (the two halves of ftk_flash_row_update, which the CUDA kernels call
 * per row).  Backward recomputes the same score tiles, turns them into p and
 * ds with ftk_flash_p / ftk_flash_ds and accumulates dQ, dK, dV with three
 * sgemms per tile.  Per task: the run starts (T ints) and a few tiles.
 */
#define FLASH_BQ 64
#define FLASH_BK 128	/* plan.c counts these tiles */

struct flash_ctx {
	float *out, *lse, *dq, *dk, *dv;
	const float *q, *k, *v, *dout, *cout, *clse;
	const int32_t *doc;
	int B, T, NH, NKV, hd;
};

/* start[t] = the first key of query t (ftk_doc_start), for one row of doc. */
static void flash_starts(int *start, const int32_t *doc, int T)
{
	for (int t = 0; t < T; t++)
		start[t] = t > 0 && doc[t] == doc[t - 1] ? start[t - 1] : t;
}

static void flash_fwd_task(void *vctx, int task)
{
	struct flash_ctx *c = vctx;
	int T = c->T, NH = c->NH, NKV = c->NKV, hd = c->hd, g = NH / NKV;
	int b = task / NKV, kh = task % NKV;
	size_t ldq = (size_t)NH * hd, ldk = (size_t)NKV * hd;
	float scale = 1.0f / sqrtf((float)hd);
	const float *K = c->k + ((size_t)b * T * NKV + kh) * hd;	/* (T, hd) stride ldk */
	const float *V = c->v + ((size_t)b * T * NKV + kh) * hd;
	int *start = xmalloc((size_t)T * sizeof(int));
	float *S = xmalloc((size_t)FLASH_BQ * FLASH_BK * sizeof(float));	/* scores */
	float *acc = xmalloc((size_t)FLASH_BQ * hd * sizeof(float));
	float mx[FLASH_BQ], l[FLASH_BQ];
	flash_starts(start, c->doc + (size_t)b * T, T);
	for (int h = kh * g; h < (kh + 1) * g; h++) {
		const float *Q = c->q + ((size_t)b * T * NH + h) * hd;
		float *O = c->out + ((size_t)b * T * NH + h) * hd;
		float *lse = c->lse + ((size_t)b * NH + h) * T;
		for (int r0 = 0; r0 < T; r0 += FLASH_BQ) {
			int r1 = r0 + FLASH_BQ < T ? r0 + FLASH_BQ : T, nr = r1 - r0;
			for (int i = 0; i < nr; i++)
				ftk_flash_row_init(&mx[i], &l[i], acc + (size_t)i * hd, hd);
			for (int k0 = start[r0]; k0 < r1; k0 += FLASH_BK) {
				int k1 = k0 + FLASH_BK < r1 ? k0 + FLASH_BK : r1, nk = k1 - k0;
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nk, hd, scale,
					    Q + r0 * ldq, (int)ldq, K + k0 * ldk, (int)ldk, 0.0f, S,
					    FLASH_BK);
				/* each row's visible scores become p (ops.h), the rest 0 */
				for (int i = 0; i < nr; i++) {
					int t = r0 + i;
					int lo = start[t] > k0 ? start[t] : k0, hi = t + 1 < k1 ? t + 1 : k1;
					float *row = S + (size_t)i * FLASH_BK;
					if (hi <= lo) {
						memset(row, 0, nk * sizeof(float));
						continue;
					}
					ftk_flash_row_rescale(&mx[i], &l[i], acc + (size_t)i * hd,
							      row + (lo - k0), hi - lo, hd);
					memset(row, 0, (lo - k0) * sizeof(float));
					memset(row + (hi - k0), 0, (k1 - hi) * sizeof(float));
				}
				/* acc += P V over the tile (the second half of the update) */
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, hd, nk, 1.0f,
					    S, FLASH_BK, V + k0 * ldk, (int)ldk, 1.0f, acc, hd);
			}
			for (int i = 0; i < nr; i++)
				lse[r0 + i] = ftk_flash_row_finish(O + (r0 + i) * ldq,
								   acc + (size_t)i * hd, mx[i], l[i], hd);
		}
	}
	free(acc);
	free(S);
	free(start);
}

static void cpu_attn_fwd_flash(struct ftk_backend *be, float *out, float *lse, const float *q,
			       const float *k, const float *v, const int32_t *doc, int B, int T,
			       int NH, int NKV, int hd)
{
	struct flash_ctx c = { .out = out, .lse = lse, .q = q, .k = k, .v = v, .doc = doc, .B = B,
			       .T = T, .NH = NH, .NKV = NKV, .hd = hd };
	par_run(threads_of(be), B * NKV, flash_fwd_task, &c);
}

static void flash_bwd_task(void *vctx, int task)
{
	struct flash_ctx *c = vctx;
	int T = c->T, NH = c->NH, NKV = c->NKV, hd = c->hd, g = NH / NKV;
	int b = task / NKV, kh = task % NKV;
	size_t ldq = (size_t)NH * hd, ldk = (size_t)NKV * hd;
	float scale = 1.0f / sqrtf((float)hd);
	const float *K = c->k + ((size_t)b * T * NKV + kh) * hd;
	const float *V = c->v + ((size_t)b * T * NKV + kh) * hd;
	float *dK = c->dk + ((size_t)b * T * NKV + kh) * hd;
	float *dV = c->dv + ((size_t)b * T * NKV + kh) * hd;
	int *start = xmalloc((size_t)T * sizeof(int));
	float *P = xmalloc((size_t)FLASH_BQ * FLASH_BK * sizeof(float));	/* scores, then p */
	float *dS = xmalloc((size_t)FLASH_BQ * FLASH_BK * sizeof(float));	/* dp, then ds */
	float D[FLASH_BQ];
	flash_starts(start, c->doc + (size_t)b * T, T);
	for (int t = 0; t < T; t++) {
		memset(dK + t * ldk, 0, hd * sizeof(float));
		memset(dV + t * ldk, 0, hd * sizeof(float));
	}
	for (int h = kh * g; h < (kh + 1) * g; h++) {
		size_t row0 = ((size_t)b * T * NH + h) * hd;
		const float *Q = c->q + row0, *dO = c->dout + row0, *O = c->cout + row0;
		const float *lse = c->clse + ((size_t)b * NH + h) * T;
		float *dQ = c->dq + row0;
		for (int r0 = 0; r0 < T; r0 += FLASH_BQ) {
			int r1 = r0 + FLASH_BQ < T ? r0 + FLASH_BQ : T, nr = r1 - r0;
			const float *Qb = Q + r0 * ldq, *dOb = dO + r0 * ldq;
			for (int i = 0; i < nr; i++) {
				D[i] = ftk_dot(dO + (r0 + i) * ldq, O + (r0 + i) * ldq, hd);
				memset(dQ + (r0 + i) * ldq, 0, hd * sizeof(float));
			}
			for (int k0 = start[r0]; k0 < r1; k0 += FLASH_BK) {
				int k1 = k0 + FLASH_BK < r1 ? k0 + FLASH_BK : r1, nk = k1 - k0;
				/* P = scale Q K^T ; dS = dO V^T over the tile */
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nk, hd, scale,
					    Qb, (int)ldq, K + k0 * ldk, (int)ldk, 0.0f, P, FLASH_BK);
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nk, hd, 1.0f,
					    dOb, (int)ldq, V + k0 * ldk, (int)ldk, 0.0f, dS, FLASH_BK);
				for (int i = 0; i < nr; i++) {
					int t = r0 + i;
					float *pr = P + (size_t)i * FLASH_BK, *dr = dS + (size_t)i * FLASH_BK;
					for (int j = 0; j < nk; j++) {
						int s = k0 + j;
						if (s < start[t] || s > t) {
							pr[j] = dr[j] = 0.0f;
							continue;
						}
						pr[j] = ftk_flash_p(pr[j], lse[t]);
						dr[j] = ftk_flash_ds(pr[j], dr[j], D[i]);
					}
				}
				/* dV += P^T dO ; dK += scale dS^T Q ; dQ += scale dS K */
				cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, nr, 1.0f, P,
					    FLASH_BK, dOb, (int)ldq, 1.0f, dV + k0 * ldk, (int)ldk);
				cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, nr, scale, dS,
					    FLASH_BK, Qb, (int)ldq, 1.0f, dK + k0 * ldk, (int)ldk);
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, hd, nk, scale,
					    dS, FLASH_BK, K + k0 * ldk, (int)ldk, 1.0f, dQ + r0 * ldq,
					    (int)ldq);
			}
		}
	}
	free(dS);
	free(P);
	free(start);
}

static void cpu_attn_bwd_flash(struct ftk_backend *be, float *dq, float *dk, float *dv,
			       const float *dout, const float *out, const float *lse,
			       const float *q, const float *k, const float *v, const int32_t *doc,
			       int B, int T, int NH, int NKV, int hd)
{
	struct flash_ctx c = { .dq = dq, .dk = dk, .dv = dv, .dout = dout, .cout = out,
			       .clse = lse, .q = q, .k = k, .v = v, .doc = doc, .B = B, .T = T,
			       .NH = NH, .NKV = NKV, .hd = hd };
	par_run(threads_of(be), B * NKV, flash_bwd_task, &c);
}

/* ---------------------------------------------------------------- elementwise */

struct ew_ctx {
	float *a, *b;
	const float *x, *y, *z;
	const uint8_t *keep;
	float scale;
	size_t n;
	int k;
};

static void swiglu_fwd_task(void *vctx, int t)
{
	struct ew_ctx *c = vctx;
	RANGE(t, c->k, c->n, s, e);
	for (size_t i = s; i < e; i++)
		c->a[i] = ftk_swiglu(c->x[i], c->y[i]);
}

static void cpu_swiglu_fwd(struct ftk_backend *be, float *out, const float *gate, const float *up,
			   size_t n)
{
	int nt = threads_of(be);
	struct ew_ctx c = { .a = out, .x = gate, .y = up, .n = n, .k = n < 65536 ? 1 : nt };
	par_run(nt, c.k, swiglu_fwd_task, &c);
}

static void swiglu_bwd_task(void *vctx, int t)
{
	struct ew_ctx *c = vctx;
	RANGE(t, c->k, c->n, s, e);
	for (size_t i = s; i < e; i++)
		ftk_swiglu_bwd(c->x[i], c->y[i], c->z[i], &c->a[i], &c->b[i]);
}

static void cpu_swiglu_bwd(struct ftk_backend *be, float *dgate, float *dup, const float *dout,
			   const float *gate, const float *up, size_t n)
{
	int nt = threads_of(be);
	struct ew_ctx c = { .a = dgate, .b = dup, .x = gate, .y = up, .z = dout, .n = n,
			    .k = n < 65536 ? 1 : nt };
	par_run(nt, c.k, swiglu_bwd_task, &c);
}

struct xent_ctx {
	float *loss, *logits;
	const int32_t *target;
	int M, V, k;
	float gs;
};

static void xent_task(void *vctx, int t)
{
	struct xent_ctx *c = vctx;
	RANGE(t, c->k, c->M, s, e);
	for (size_t m = s; m < e; m++) {
		float *row = c->logits + m * (size_t)c->V;
		if (c->target[m] < 0) {
			c->loss[m] = 0.0f;
			if (c->gs != 0.0f)
				memset(row, 0, (size_t)c->V * sizeof(float));
			continue;
		}
		c->loss[m] = ftk_xent_row(row, c->V, c->target[m], c->gs);
	}
}

static void cpu_xent(struct ftk_backend *be, float *loss, float *logits, const int32_t *target,
		     int M, int V, float gs)
{
	int nt = threads_of(be);
	int k = (size_t)M * V < 65536 ? 1 : CHUNKS(nt, M);
	struct xent_ctx c = { loss, logits, target, M, V, k, gs };
	par_run(nt, c.k, xent_task, &c);
}

static void add_task(void *vctx, int t)
{
	struct ew_ctx *c = vctx;
	RANGE(t, c->k, c->n, s, e);
	for (size_t i = s; i < e; i++)
		c->a[i] += c->x[i];
}

static void cpu_add(struct ftk_backend *be, float *y, const float *x, size_t n)
{
	int nt = threads_of(be);
	struct ew_ctx c = { .a = y, .x = x, .n = n, .k = n < 262144 ? 1 : nt };
	par_run(nt, c.k, add_task, &c);
}

static void cpu_dropout(struct ftk_backend *be, float *y, const float *x, const uint8_t *keep,
			float scale, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] = keep[i] ? x[i] * scale : 0.0f;
}

static void cpu_dropout_mask(struct ftk_backend *be, uint8_t *keep, uint64_t stream, float p,
			     size_t n)
{
	for (size_t i = 0; i < n; i++)
		keep[i] = (uint8_t)ftk_dropout_keep(stream, i, p);
}

static void cpu_embed(struct ftk_backend *be, float *out, const float *table, const uint32_t *ids,
		      int M, int C)
{
	for (int m = 0; m < M; m++)
		memcpy(out + (size_t)m * C, table + (size_t)ids[m] * C, (size_t)C * sizeof(float));
}

struct gbatch_ctx {
	const struct ftk_gemm_args *g;
};

static void gbatch_task(void *vctx, int t)
{
	const struct ftk_gemm_args *a = ((struct gbatch_ctx *)vctx)->g + t;
	cblas_sgemm(CblasRowMajor, a->ta ? CblasTrans : CblasNoTrans,
		    a->tb ? CblasTrans : CblasNoTrans, a->M, a->N, a->K, a->alpha, a->A, a->lda, a->B,
		    a->ldb, a->beta, a->C, a->ldc);
}

static void cpu_gemm_batch(struct ftk_backend *be, int n, const struct ftk_gemm_args *g)
{
	if (precision_of(be) == FTK_PREC_BF16) {
		bf16_gemm_batch(be, n, g);
		return;
	}
	struct gbatch_ctx c = { g };
	par_run(threads_of(be), n, gbatch_task, &c);
}

/* ---------------------------------------------------------------- bf16 */

/*
 * --precision bf16, emulated exactly: the reference the CUDA backend's real
 * bf16 products are checked against.  Each operand of a product is rounded
 * to bf16 (ops.h's ftk_bf16_round, the function the CUDA conversion kernels
 * call) into float scratch, then the ordinary float32 sgemm runs on the
 * rounded values.  The product of two bf16 values is exact in float32 (8 +
 * 8 significant bits), so this is what a bf16 GEMM with float32
 * accumulation computes, up to the order of the additions.  Weights are
 * rounded tile by tile as linear_fwd dequantizes them (NF4: the decoded
 * float32 value, then rounded; float32 weights such as the head: copied,
 * then rounded), so no rounded copy of a whole weight is ever kept.  The
 * output and any accumulation into it (beta, the += of linear_bwd_inp)
 * stay float32, and so do biases.
 */

/* the two rounded operands, the calling thread's */
static float *bf_scratch(int i, size_t n)
{
	return tls_buf(TLS_BF16 + i, n);
}

/* dst (rows, cols), packed = src's rows (stride ld) rounded to bf16. */
static void bf16_rows(float *dst, const float *src, int rows, int cols, int ld)
{
	for (int r = 0; r < rows; r++)
		for (int c = 0; c < cols; c++)
			dst[(size_t)r * cols + c] = ftk_bf16_round(src[(size_t)r * ld + c]);
}

static void bf16_gemm(struct ftk_backend *be, int ta, int tb, int M, int N, int K, float alpha,
		      const float *A, int lda, const float *B, int ldb, float beta, float *C,
		      int ldc)
{
	int nt = threads_of(be);
	if (M <= 0 || N <= 0)
		return;
	/* as stored: A is (ta ? K : M) rows of (ta ? M : K), B (tb ? N : K) of (tb ? K : N) */
	int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
	float *a = bf_scratch(0, (size_t)ar * ac + 1), *b = bf_scratch(1, (size_t)br * bc + 1);
	bf16_rows(a, A, ar, ac, lda);
	bf16_rows(b, B, br, bc, ldb);
	lda = ac > 0 ? ac : 1;
	ldb = bc > 0 ? bc : 1;
	/* the same slicing as cpu_gemm */
	struct gemm_ctx c = { ta, tb, M, N, K, lda, ldb, ldc, 1, M >= N, alpha, beta, a, b, C };
	double work = 2.0 * M * N * K;
	int thin = M < 64 || N < 64 || K < 64;
	c.k = nt == 1 || work < 4e6 || (thin && work < 2e8) ? 1 : nt;
	par_run(nt, c.k, gemm_task, &c);
}

/* One after another: each product's rounded operands use the same scratch. */
static void bf16_gemm_batch(struct ftk_backend *be, int n, const struct ftk_gemm_args *g)
{
	for (int i = 0; i < n; i++)
		bf16_gemm(be, g[i].ta, g[i].tb, g[i].M, g[i].N, g[i].K, g[i].alpha, g[i].A,
			  g[i].lda, g[i].B, g[i].ldb, g[i].beta, g[i].C, g[i].ldc);
}

/* tile = elements [start, start + n) of W (row-major), rounded to bf16 */
static void bf16_weight(const struct ftk_weight *w, size_t start, size_t n, float *tile)
{
	if (w->quant == FTK_QUANT_NF4)
		ftk_nf4_dequant(&w->nf4, start, n, tile);
	else
		memcpy(tile, w->f32 + start, n * sizeof(float));
	for (size_t i = 0; i < n; i++)
		tile[i] = ftk_bf16_round(tile[i]);
}

static void bf16_linear(struct ftk_backend *be, float *y, const float *x,
			const struct ftk_weight *w, const float *bias, int M, int bwd)
{
	int N = w->rows, K = w->cols, in = bwd ? N : K;
	if (M <= 0)
		return;
	float *xr = bf_scratch(0, (size_t)M * in);
	bf16_rows(xr, x, M, in, in);
	tiled_linear(be, y, xr, w, M, bwd, bf16_weight);
	if (bias)
		cpu_add_bias(y, bias, M, N);
}

static int cpu_set_precision(struct ftk_backend *be, int p)
{
	if (p != FTK_PREC_FP32 && p != FTK_PREC_BF16)
		return -1;
	((struct cpu_state *)be->ctx)->precision = p;
	return 0;
}

/* The optimizer entries: optim_ops.h's loops over host memory. */
static double cpu_sumsq(struct ftk_backend *be, const float *x, size_t n)
{
	return ftk_sumsq_array(x, n);
}

static void cpu_scale(struct ftk_backend *be, float *x, float s, size_t n)
{
	ftk_scale_array(x, s, n);
}

static void cpu_adamw(struct ftk_backend *be, float *w, float *m, float *v, const float *g,
		      size_t n, const struct ftk_adamw_consts *c)
{
	ftk_adamw_array(w, m, v, g, n, c);
}

static void cpu_destroy(struct ftk_backend *be)
{
	free(be->ctx);
	free(be);
}

static const struct ftk_backend_ops cpu_ops = {
	/* .name = */ "cpu",
	/* .destroy = */ cpu_destroy,
	/* .alloc = */ cpu_alloc,
	/* .free = */ cpu_free,
	/* .upload = */ cpu_copy,
	/* .download = */ cpu_copy,
	/* .copy = */ cpu_copy,
	/* .zero = */ cpu_zero,
	/* .weight_prepare = */ cpu_weight_prepare,
	/* .weight_release = */ cpu_weight_prepare,
	/* .set_threads = */ cpu_set_threads,
	/* .gemm = */ cpu_gemm,
	/* .linear_fwd = */ cpu_linear_fwd,
	/* .linear_bwd_inp = */ cpu_linear_bwd_inp,
	/* .rmsnorm_fwd = */ cpu_rmsnorm_fwd,
	/* .rmsnorm_bwd = */ cpu_rmsnorm_bwd,
	/* .rope = */ cpu_rope,
	/* .attn_fwd = */ cpu_attn_fwd,
	/* .attn_bwd = */ cpu_attn_bwd,
	/* .attn_decode = */ cpu_attn_decode,
	/* .swiglu_fwd = */ cpu_swiglu_fwd,
	/* .swiglu_bwd = */ cpu_swiglu_bwd,
	/* .xent = */ cpu_xent,
	/* .add = */ cpu_add,
	/* .dropout = */ cpu_dropout,
	/* .dropout_mask = */ cpu_dropout_mask,
	/* .embed = */ cpu_embed,
	/* .gemm_batch = */ cpu_gemm_batch,
	/* .sumsq = */ cpu_sumsq,
	/* .scale = */ cpu_scale,
	/* .adamw = */ cpu_adamw,
	/* .set_precision = */ cpu_set_precision,
	/* .attn_fwd_flash = */ cpu_attn_fwd_flash,
	/* .attn_bwd_flash = */ cpu_attn_bwd_flash,
	/* .sync = */ NULL,
};

/* ---------------------------------------------------------------- guard mode */

/*
 * FTK_CPU_GUARD=1 in the environment (read when an instance is made): a
 * test mode in which backend memory is not host memory between ops, as on
 * a GPU.  On the CPU, upload and download are memcpys of the very memory
 * the ops use, so host code that reads or writes backend memory in place
 * (a LoRA array without ftk_model_lora_download, say) gives the right
 * numbers here and wrong ones, or a crash, on CUDA.  In guard mode every
 * alloc comes from one arena of pages that are PROT_NONE except while an
 * op of the table runs (each entry below opens the arena, runs the CPU op
 * and closes it again), so such an access is a SIGSEGV at the line that
 * does it.  The copies and the arithmetic are the CPU backend's own, so a
 * guarded run computes the same numbers bit for bit.
 *
 * The arena is the process's, not the instance's: memory one instance
 * allocates may be used by any other (backend.h), so every guarded
 * instance shares it (the one exception to "no state in globals", for a
 * test mode).  Ops running on several threads at once keep it open until
 * the last one returns, so a host access on another thread meanwhile goes
 * unseen.  Two mprotect calls per op cost time in proportion to the pages
 * they change, so blocks are whole 2 MiB huge pages (MADV_HUGEPAGE: one
 * page-table entry each where the kernel gives transparent huge pages,
 * else slower, not wrong), and a freed block goes back to the kernel
 * (MADV_DONTNEED) and is reused by a later alloc that fits.  The arena
 * reserves FTK_GUARD_ARENA bytes of address space, far more than tests
 * allocate.  Tests only (docs/HACKING.md).
 */
#define FTK_GUARD_ARENA ((size_t)1 << 40)	/* address space, not memory */
#define FTK_GUARD_BLOCK ((size_t)2 << 20)	/* a huge page */

struct guard_block {
	char *p;
	size_t len;
	int live;	/* handed out (else free for reuse) */
};

static struct {
	pthread_mutex_t mu;
	char *base;		/* FTK_GUARD_ARENA bytes, PROT_NONE but while an op runs */
	size_t used;		/* bytes of it in blocks, FTK_GUARD_BLOCK-aligned */
	int depth;		/* ops running now: the arena is open while > 0 */
	struct guard_block *blocks;
	size_t n_blocks, cap_blocks;
} guard = { .mu = PTHREAD_MUTEX_INITIALIZER };

static void guard_protect(int open)
{
	if (guard.used &&
	    mprotect(guard.base, guard.used, open ? PROT_READ | PROT_WRITE : PROT_NONE)) {
		fprintf(stderr, "FTK_CPU_GUARD: mprotect failed\n");
		abort();
	}
}

static void guard_enter(void)
{
	pthread_mutex_lock(&guard.mu);
	if (guard.depth++ == 0)
		guard_protect(1);
	pthread_mutex_unlock(&guard.mu);
}

static void guard_leave(void)
{
	pthread_mutex_lock(&guard.mu);
	if (--guard.depth == 0)
		guard_protect(0);
	pthread_mutex_unlock(&guard.mu);
}

static void *guard_alloc(struct ftk_backend *be, size_t n)
{
	size_t len = (n + FTK_GUARD_BLOCK - 1) / FTK_GUARD_BLOCK * FTK_GUARD_BLOCK;
	if (!len)
		len = FTK_GUARD_BLOCK;
	pthread_mutex_lock(&guard.mu);
	if (!guard.base) {
		/* one block more, to align the start to a huge page */
		void *a = mmap(NULL, FTK_GUARD_ARENA + FTK_GUARD_BLOCK, PROT_NONE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (a == MAP_FAILED) {
			fprintf(stderr, "FTK_CPU_GUARD: cannot reserve the arena\n");
			abort();
		}
		uintptr_t u = ((uintptr_t)a + FTK_GUARD_BLOCK - 1) & ~(uintptr_t)(FTK_GUARD_BLOCK - 1);
		guard.base = (char *)u;
		madvise(guard.base, FTK_GUARD_ARENA, MADV_HUGEPAGE);	/* a hint: may fail */
	}
	char *p = NULL;
	for (size_t i = 0; i < guard.n_blocks && !p; i++) {	/* a freed block that fits */
		struct guard_block *b = &guard.blocks[i];
		if (b->live || b->len < len)
			continue;
		if (b->len > len) {	/* split: the rest stays free */
			FTK_ALLOC_GROW(guard.blocks, guard.n_blocks + 1, guard.cap_blocks);
			b = &guard.blocks[i];
			guard.blocks[guard.n_blocks++] =
				(struct guard_block){ b->p + len, b->len - len, 0 };
			b->len = len;
		}
		b->live = 1;
		p = b->p;	/* zero: its pages went back to the kernel when freed */
	}
	if (!p) {
		if (len > FTK_GUARD_ARENA - guard.used) {
			fprintf(stderr, "FTK_CPU_GUARD: arena spent\n");
			abort();
		}
		p = guard.base + guard.used;	/* fresh pages: zero */
		guard.used += len;
		FTK_ALLOC_GROW(guard.blocks, guard.n_blocks + 1, guard.cap_blocks);
		guard.blocks[guard.n_blocks++] = (struct guard_block){ p, len, 1 };
	}
	if (guard.depth > 0 && mprotect(p, len, PROT_READ | PROT_WRITE)) {
		fprintf(stderr, "FTK_CPU_GUARD: mprotect failed\n");
		abort();
	}
	pthread_mutex_unlock(&guard.mu);
	return p;
}

static void guard_free(struct ftk_backend *be, void *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&guard.mu);
	for (size_t i = 0; i < guard.n_blocks; i++)
		if (guard.blocks[i].p == p && guard.blocks[i].live) {
			madvise(p, guard.blocks[i].len, MADV_DONTNEED);	/* zero when reused */
			guard.blocks[i].live = 0;
			pthread_mutex_unlock(&guard.mu);
			return;
		}
	pthread_mutex_unlock(&guard.mu);
	fprintf(stderr, "FTK_CPU_GUARD: free of %p, not backend memory\n", p);
	abort();
}

/* Each op of the table with the arena open while the CPU op runs. */
#define GUARDED(name, params, args)    \
	static void guard_##name params \
	{                               \
		guard_enter();          \
		cpu_##name args;        \
		guard_leave();          \
	}
GUARDED(copy, (struct ftk_backend *be, void *dst, const void *src, size_t n), (be, dst, src, n))
GUARDED(zero, (struct ftk_backend *be, void *p, size_t n), (be, p, n))
GUARDED(gemm,
	(struct ftk_backend *be, int ta, int tb, int M, int N, int K, float alpha, const float *A,
	 int lda, const float *B, int ldb, float beta, float *C, int ldc),
	(be, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
GUARDED(linear_fwd,
	(struct ftk_backend *be, float *out, const float *inp, const struct ftk_weight *w,
	 const float *bias, int M),
	(be, out, inp, w, bias, M))
GUARDED(linear_bwd_inp,
	(struct ftk_backend *be, float *dinp, const float *dout, const struct ftk_weight *w, int M),
	(be, dinp, dout, w, M))
GUARDED(rmsnorm_fwd,
	(struct ftk_backend *be, float *out, float *rstd, const float *inp, const float *weight,
	 int M, int C, float eps),
	(be, out, rstd, inp, weight, M, C, eps))
GUARDED(rmsnorm_bwd,
	(struct ftk_backend *be, float *dinp, const float *dout, const float *inp,
	 const float *weight, const float *rstd, int M, int C),
	(be, dinp, dout, inp, weight, rstd, M, C))
GUARDED(rope,
	(struct ftk_backend *be, float *x, const int32_t *pos, const float *inv_freq, int M,
	 int nh, int hd, int sign),
	(be, x, pos, inv_freq, M, nh, hd, sign))
GUARDED(attn_fwd,
	(struct ftk_backend *be, float *out, float *att, const float *q, const float *k,
	 const float *v, const int32_t *doc, int B, int T, int NH, int NKV, int hd),
	(be, out, att, q, k, v, doc, B, T, NH, NKV, hd))
GUARDED(attn_bwd,
	(struct ftk_backend *be, float *dq, float *dk, float *dv, const float *dout,
	 const float *att, const float *q, const float *k, const float *v, int B, int T, int NH,
	 int NKV, int hd),
	(be, dq, dk, dv, dout, att, q, k, v, B, T, NH, NKV, hd))
GUARDED(attn_decode,
	(struct ftk_backend *be, float *out, const float *q, const float *kc, const float *vc,
	 int n, int NH, int NKV, int hd, float *scratch),
	(be, out, q, kc, vc, n, NH, NKV, hd, scratch))
GUARDED(swiglu_fwd,
	(struct ftk_backend *be, float *out, const float *gate, const float *up, size_t n),
	(be, out, gate, up, n))
GUARDED(swiglu_bwd,
	(struct ftk_backend *be, float *dgate, float *dup, const float *dout, const float *gate,
	 const float *up, size_t n),
	(be, dgate, dup, dout, gate, up, n))
GUARDED(xent,
	(struct ftk_backend *be, float *loss, float *logits, const int32_t *target, int M, int V,
	 float gs),
	(be, loss, logits, target, M, V, gs))
GUARDED(add, (struct ftk_backend *be, float *y, const float *x, size_t n), (be, y, x, n))
GUARDED(dropout,
	(struct ftk_backend *be, float *y, const float *x, const uint8_t *keep, float scale,
	 size_t n),
	(be, y, x, keep, scale, n))
GUARDED(dropout_mask,
	(struct ftk_backend *be, uint8_t *keep, uint64_t stream, float p, size_t n),
	(be, keep, stream, p, n))
GUARDED(embed,
	(struct ftk_backend *be, float *out, const float *table, const uint32_t *ids, int M,
	 int C),
	(be, out, table, ids, M, C))
GUARDED(gemm_batch, (struct ftk_backend *be, int n, const struct ftk_gemm_args *g), (be, n, g))
GUARDED(scale, (struct ftk_backend *be, float *x, float s, size_t n), (be, x, s, n))
GUARDED(adamw,
	(struct ftk_backend *be, float *w, float *m, float *v, const float *g, size_t n,
	 const struct ftk_adamw_consts *c),
	(be, w, m, v, g, n, c))
GUARDED(attn_fwd_flash,
	(struct ftk_backend *be, float *out, float *lse, const float *q, const float *k,
	 const float *v, const int32_t *doc, int B, int T, int NH, int NKV, int hd),
	(be, out, lse, q, k, v, doc, B, T, NH, NKV, hd))
GUARDED(attn_bwd_flash,
	(struct ftk_backend *be, float *dq, float *dk, float *dv, const float *dout,
	 const float *out, const float *lse, const float *q, const float *k, const float *v,
	 const int32_t *doc, int B, int T, int NH, int NKV, int hd),
	(be, dq, dk, dv, dout, out, lse, q, k, v, doc, B, T, NH, NKV, hd))
#undef GUARDED

static double guard_sumsq(struct ftk_backend *be, const float *x, size_t n)
{
	guard_enter();
	double s = cpu_sumsq(be, x, n);
	guard_leave();
	return s;
}

static const struct ftk_backend_ops guard_ops = {
	/* .name = */ "cpu",
	/* .destroy = */ cpu_destroy,
	/* .alloc = */ guard_alloc,
	/* .free = */ guard_free,
	/* .upload = */ guard_copy,
	/* .download = */ guard_copy,
	/* .copy = */ guard_copy,
	/* .zero = */ guard_zero,
	/* .weight_prepare = */ cpu_weight_prepare,
	/* .weight_release = */ cpu_weight_prepare,
	/* .set_threads = */ cpu_set_threads,
	/* .gemm = */ guard_gemm,
	/* .linear_fwd = */ guard_linear_fwd,
	/* .linear_bwd_inp = */ guard_linear_bwd_inp,
	/* .rmsnorm_fwd = */ guard_rmsnorm_fwd,
	/* .rmsnorm_bwd = */ guard_rmsnorm_bwd,
	/* .rope = */ guard_rope,
	/* .attn_fwd = */ guard_attn_fwd,
	/* .attn_bwd = */ guard_attn_bwd,
	/* .attn_decode = */ guard_attn_decode,
	/* .swiglu_fwd = */ guard_swiglu_fwd,
	/* .swiglu_bwd = */ guard_swiglu_bwd,
	/* .xent = */ guard_xent,
	/* .add = */ guard_add,
	/* .dropout = */ guard_dropout,
	/* .dropout_mask = */ guard_dropout_mask,
	/* .embed = */ guard_embed,
	/* .gemm_batch = */ guard_gemm_batch,
	/* .sumsq = */ guard_sumsq,
	/* .scale = */ guard_scale,
	/* .adamw = */ guard_adamw,
	/* .set_precision = */ cpu_set_precision,
	/* .attn_fwd_flash = */ guard_attn_fwd_flash,
	/* .attn_bwd_flash = */ guard_attn_bwd_flash,
	/* .sync = */ NULL,
};

int ftk_backend_cpu_guarded(void)
{
	const char *g = getenv("FTK_CPU_GUARD");
	return g && *g && strcmp(g, "0") != 0;
}

struct ftk_backend *ftk_backend_cpu_new(void)
{
	struct ftk_backend *be = xcalloc(1, sizeof(*be));
	struct cpu_state *st = xcalloc(1, sizeof(*st));
	st->threads = 1;
	st->precision = FTK_PREC_FP32;
	be->ops = ftk_backend_cpu_guarded() ? &guard_ops : &cpu_ops;
	be->ctx = st;
	return be;
}
