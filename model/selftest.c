/*
 * selftest.c: a backend checked op by op against the CPU reference.
 *
 * Every op of backend.h runs twice on the same seeded inputs, once on the
 * CPU backend (host memory) and once on the backend under test (its own
 * memory, filled with upload and read back with download), and the largest
 * absolute difference and that difference relative to the largest
 * reference value are printed.  Shapes are small and odd on purpose (37,
 * 45, 70 ...) so that tails and partial tiles are exercised; attention
 * runs with two documents packed in one row, grouped-query heads, and
 * rows whose target is -1 appear in the cross-entropy.  Flash attention
 * (issue 9) is compared with the CPU's flash ops at head_dim 16 and 256.
 *
 * Tolerances: element-wise and per-row ops 1e-5 relative (CUDA's expf and
 * sqrtf differ from glibc's by an ulp or two, never more); products and
 * attention 1e-4 relative (cuBLAS sums in another order); the QLoRA step's
 * loss 1e-4 and gradients 1e-3 relative to their largest value (a whole
 * network of such sums).
 *
 * bf16 (--precision bf16): the same products with both backends switched
 * to bf16 operands (set_precision), against each other.  Both round every
 * operand with ops.h's ftk_bf16_rne and a product of two bf16 values is
 * exact in fp32, so the only difference left is again the order of the
 * fp32 additions: the product tolerance stays 1e-4.  A backend that
 * ignored the setting and multiplied fp32 values would be off by bf16's
 * rounding, about 4e-3 relative, and fail.  In the QLoRA step every
 * product's output is rounded again as the next product's input, so an
 * fp32 difference of one ulp occasionally moves a value across a bf16
 * rounding boundary (a 2^-8 relative jump of one element); the step's
 * tolerances, 1e-3 for the loss and 3e-2 for the gradients, allow for
 * that: test_selftest.c perturbs every product of a CPU table by up to 8
 * fp32 ulps (2^-21 relative), which moves the bf16 step's loss by 1.1e-4
 * and its gradients by up to 8.8e-3 under OpenBLAS's Haswell kernels and
 * 1.24e-2 under its SkylakeX ones (the flips land on other elements; the
 * fp32 step moves by 8e-8 and 1.4e-6).  1e-2 was under that; 3e-2 keeps a
 * 2.4x margin over the worst seen, still far below a wrong gradient.  The
 * step is therefore no test of whether bf16 is applied (fp32 products
 * differ from bf16 ones there by only 5e-5 and 5e-3); the op lines are.
 *
 * With --device cpu the CPU backend is compared with itself: every
 * difference must be exactly 0, which checks the harness, not a GPU
 * (tests/cli/selftest-nogpu; tests/unit/test_selftest.c plants a faulty
 * op and watches it fail).
 */
#include "model/selftest.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "model/device.h"
#include "model/model.h"
#include "model/nf4.h"
#include "model/ops.h"
#include "model/optim_ops.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static float frand(void)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (float)((double)(rng >> 40) / (double)(1 << 24) * 2.0 - 1.0);
}

static float *host_rand(size_t n, float scale)
{
	float *h = xmalloc(n * sizeof(float) + 1);
	for (size_t i = 0; i < n; i++)
		h[i] = frand() * scale;
	return h;
}

/*
 * The reference every check compares with: a CPU instance of the
 * selftest's own, made by the first entry point called (ref_init) and kept
 * for the process, so setting its precision never touches a caller's
 * instance.  Entry points leave it in fp32.
 */
static struct ftk_backend *cpu;

static void ref_init(void)
{
	if (!cpu)
		cpu = ftk_backend_cpu_new();
}

/* A buffer on a backend holding a copy of host data (n bytes). */
static void *put(struct ftk_backend *be, const void *h, size_t bytes)
{
	void *p = be->ops->alloc(be, bytes);
	be->ops->upload(be, p, h, bytes);
	return p;
}

struct diff {
	double abs, ref;	/* largest |dev - cpu|, largest |cpu| */
};

/*
 * Both sides downloaded: the reference too is the CPU backend's memory,
 * which FTK_CPU_GUARD keeps from the host (a host array given as ref is
 * copied the same way: the CPU's download is a memcpy).
 */
static void cmp_f(struct ftk_backend *dev, struct diff *d, const float *ref, const float *devbuf,
		  size_t n)
{
	float *h = xmalloc(n * sizeof(float) + 1), *c = xmalloc(n * sizeof(float) + 1);
	dev->ops->download(dev, h, devbuf, n * sizeof(float));
	cpu->ops->download(cpu, c, ref, n * sizeof(float));
	for (size_t i = 0; i < n; i++) {
		double a = fabs((double)h[i] - (double)c[i]);
		if (a > d->abs || isnan(a))
			d->abs = isnan(a) ? INFINITY : a;
		if (fabs((double)c[i]) > d->ref)
			d->ref = fabs((double)c[i]);
	}
	free(h);
	free(c);
}

static const char *suffix = "";	/* after each op's name: " bf16" in the bf16 lines */

static int report(FILE *out, const char *op, const struct diff *d, double tol)
{
	double rel = d->ref > 0 ? d->abs / d->ref : d->abs;
	int ok = rel <= tol;
	char name[64];
	snprintf(name, sizeof(name), "%s%s", op, suffix);
	fprintf(out, "  %-26s max_abs %.3e  max_rel %.3e  tol %.0e  %s\n", name, d->abs, rel, tol,
		ok ? "ok" : "FAIL");
	return !ok;
}

#define TOL_EW 1e-5
#define TOL_MM_FP32 1e-4
/*
 * TF32 products against the CPU's fp32 ones: TF32 keeps 10 of fp32's 23
 * mantissa bits, so each operand is off by up to 2^-11 relative (rounded)
 * or 2^-10 (truncated: cuBLAS does not say which, and truncation's bias
 * grows with the length of the sum).  test_selftest.c runs these lines
 * with a CPU table truncating every operand to TF32 and measures 7e-4 on
 * the short products and 1.3e-3 on the two-tile weight's (K = 4099); the
 * same table cutting to bf16's 7 bits gives 5.5e-3 and more, and must
 * fail.  4e-3 sits between.
 */
#define TOL_TF32 4e-3
static double tol_mm = TOL_MM_FP32;	/* products: TOL_TF32 in the tf32 lines */

/* Both backends' copies of one input. */
struct pair {
	void *c, *d;
};

static struct pair both(struct ftk_backend *dev, const void *h, size_t bytes)
{
	struct pair p = { put(cpu, h, bytes), put(dev, h, bytes) };
	return p;
}

static void drop(struct ftk_backend *dev, struct pair *p)
{
	cpu->ops->free(cpu, p->c);
	dev->ops->free(dev, p->d);
}

/*
 * A random NF4 weight (N, K) prepared on the CPU and on dev, and a bias
 * (N) on both; W keeps the float32 values it was quantized from.
 */
struct nf4_pair {
	struct ftk_weight c, d;
	float *W, *bias_h;
	struct pair bias;
};

static struct nf4_pair nf4_pair_make(struct ftk_backend *dev, int N, int K)
{
	struct nf4_pair p;
	p.W = host_rand((size_t)N * K, 0.1f);
	p.bias_h = host_rand((size_t)N, 0.5f);
	struct ftk_weight w = { N, K, FTK_QUANT_NF4, NULL, { 0 }, NULL };
	ftk_nf4_quantize(&w.nf4, p.W, (size_t)N * K, NULL);
	p.c = p.d = w;
	cpu->ops->weight_prepare(cpu, &p.c);
	dev->ops->weight_prepare(dev, &p.d);
	p.bias = both(dev, p.bias_h, (size_t)N * 4);
	return p;
}

static void nf4_pair_drop(struct ftk_backend *dev, struct nf4_pair *p)
{
	if (dev->ops->weight_release)
		dev->ops->weight_release(dev, &p->d);
	ftk_nf4_free(&p->c.nf4);
	drop(dev, &p->bias);
	free(p->W), free(p->bias_h);
}

static int t_gemm(struct ftk_backend *dev, FILE *out)
{
	int M = 37, N = 45, K = 70, fails = 0;
	for (int ta = 0; ta < 2; ta++)
		for (int tb = 0; tb < 2; tb++) {
			float *A = host_rand((size_t)M * K, 1), *B = host_rand((size_t)K * N, 1);
			float *C = host_rand((size_t)M * N, 1);
			struct pair a = both(dev, A, (size_t)M * K * 4), b = both(dev, B, (size_t)K * N * 4);
			struct pair c = both(dev, C, (size_t)M * N * 4);
			int lda = ta ? M : K, ldb = tb ? K : N;
			cpu->ops->gemm(cpu, ta, tb, M, N, K, 0.7f, a.c, lda, b.c, ldb, 0.5f, c.c,
				       N);
			dev->ops->gemm(dev, ta, tb, M, N, K, 0.7f, a.d, lda, b.d, ldb, 0.5f, c.d,
				       N);
			struct diff d = { 0, 0 };
			cmp_f(dev, &d, c.c, c.d, (size_t)M * N);
			char name[32];
			snprintf(name, sizeof(name), "gemm %c%c", ta ? 'T' : 'N', tb ? 'T' : 'N');
			fails += report(out, name, &d, tol_mm);
			drop(dev, &a), drop(dev, &b), drop(dev, &c);
			free(A), free(B), free(C);
		}
	/* gemm_batch: two independent products (the backend's own, or gemm when NULL) */
	float *A = host_rand((size_t)M * K, 1), *B = host_rand((size_t)K * N, 1);
	float *C = host_rand((size_t)2 * M * N, 1);
	struct pair a = both(dev, A, (size_t)M * K * 4), b = both(dev, B, (size_t)K * N * 4);
	struct pair c = both(dev, C, (size_t)2 * M * N * 4);
	for (int side = 0; side < 2; side++) {
		struct ftk_backend *be = side ? dev : cpu;
		float *cb = side ? c.d : c.c;
		const float *ab = side ? a.d : a.c, *bb = side ? b.d : b.c;
		struct ftk_gemm_args g[2] = {
			{ 0, 0, M, N, K, 1.0f, ab, K, bb, N, 0.0f, cb, N },
			{ 0, 0, M, N, K, -2.0f, ab, K, bb, N, 1.0f, cb + (size_t)M * N, N },
		};
		if (be->ops->gemm_batch)
			be->ops->gemm_batch(be, 2, g);
		else
			for (int i = 0; i < 2; i++)
				be->ops->gemm(be, g[i].ta, g[i].tb, g[i].M, g[i].N, g[i].K,
					      g[i].alpha, g[i].A, g[i].lda, g[i].B, g[i].ldb,
					      g[i].beta, g[i].C, g[i].ldc);
	}
	struct diff d = { 0, 0 };
	cmp_f(dev, &d, c.c, c.d, (size_t)2 * M * N);
	fails += report(out, "gemm_batch", &d, tol_mm);
	drop(dev, &a), drop(dev, &b), drop(dev, &c);
	free(A), free(B), free(C);
	return fails;
}

static int t_linear(struct ftk_backend *dev, FILE *out)
{
	int N = 128, K = 192, fails = 0;
	struct nf4_pair w = nf4_pair_make(dev, N, K);
	int Ms[2] = { 9, 3 };	/* CUDA by default: cuBLAS tiles, and the NF4 GEMV */
	for (int i = 0; i < 2; i++) {
		int M = Ms[i];
		float *X = host_rand((size_t)M * K, 1), *dY = host_rand((size_t)M * N, 1);
		float *dX = host_rand((size_t)M * K, 1);
		struct pair x = both(dev, X, (size_t)M * K * 4), y = both(dev, dY, (size_t)M * N * 4);
		struct pair o = both(dev, dY, (size_t)M * N * 4), dx = both(dev, dX, (size_t)M * K * 4);
		cpu->ops->linear_fwd(cpu, o.c, x.c, &w.c, w.bias.c, M);
		dev->ops->linear_fwd(dev, o.d, x.d, &w.d, w.bias.d, M);
		struct diff d = { 0, 0 };
		cmp_f(dev, &d, o.c, o.d, (size_t)M * N);
		fails += report(out, i ? "linear_fwd nf4 M=3" : "linear_fwd nf4", &d, tol_mm);
		cpu->ops->linear_bwd_inp(cpu, dx.c, y.c, &w.c, M);
		dev->ops->linear_bwd_inp(dev, dx.d, y.d, &w.d, M);
		struct diff e = { 0, 0 };
		cmp_f(dev, &e, dx.c, dx.d, (size_t)M * K);
		fails += report(out, i ? "linear_bwd_inp nf4 M=3" : "linear_bwd_inp nf4", &e, tol_mm);
		drop(dev, &x), drop(dev, &y), drop(dev, &o), drop(dev, &dx);
		free(X), free(dY), free(dX);
	}
	/* float32 weights (--quant none) */
	{
		int M = 11;
		struct pair wf = both(dev, w.W, (size_t)N * K * 4);
		struct ftk_weight fc = { N, K, FTK_QUANT_NONE, wf.c, { 0 }, NULL };
		struct ftk_weight fd = { N, K, FTK_QUANT_NONE, wf.d, { 0 }, NULL };
		float *X = host_rand((size_t)M * K, 1), *O = host_rand((size_t)M * N, 1);
		struct pair x = both(dev, X, (size_t)M * K * 4), o = both(dev, O, (size_t)M * N * 4);
		cpu->ops->linear_fwd(cpu, o.c, x.c, &fc, NULL, M);
		dev->ops->linear_fwd(dev, o.d, x.d, &fd, NULL, M);
		struct diff d = { 0, 0 };
		cmp_f(dev, &d, o.c, o.d, (size_t)M * N);
		fails += report(out, "linear_fwd f32", &d, tol_mm);
		drop(dev, &x), drop(dev, &o), drop(dev, &wf);
		free(X), free(O);
	}
	nf4_pair_drop(dev, &w);
	return fails;
}

/*
 * The CUDA backend's NF4 paths, each forced with FTK_CUDA_NF4 (other
 * backends ignore it): the GEMV kernel at M = 1 and 8, the tiled GEMM with
 * the decode fused into its operand load, forward and backward-input, at
 * M = 67.  W (150, 172): N and K not multiples of the tiles, and K not of
 * 64, so rows start inside a scale block.  FTK_CUDA_NF4 is restored after,
 * and so is the random stream, so that the checks after these see the
 * inputs they saw before these lines were added.
 */
static int t_linear_paths(struct ftk_backend *dev, FILE *out)
{
	static const struct {
		const char *path, *name;
		int M, bwd;
	} cases[] = {
		{ "gemv", "nf4 gemv fwd M=1", 1, 0 },
		{ "gemv", "nf4 gemv fwd M=8", 8, 0 },
		{ "fused", "nf4 fused fwd M=67", 67, 0 },
		{ "fused", "nf4 fused bwd_inp M=67", 67, 1 },
	};
	int N = 150, K = 172, fails = 0;
	uint64_t rng_was = rng;
	const char *was = getenv("FTK_CUDA_NF4");
	char *saved = was ? xstrdup(was) : NULL;
	struct nf4_pair w = nf4_pair_make(dev, N, K);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int M = cases[i].M;
		size_t ny = (size_t)M * (cases[i].bwd ? K : N), nx = (size_t)M * (cases[i].bwd ? N : K);
		float *X = host_rand(nx, 1), *Y = host_rand(ny, 1);
		struct pair x = both(dev, X, nx * 4), y = both(dev, Y, ny * 4);
		setenv("FTK_CUDA_NF4", cases[i].path, 1);
		if (cases[i].bwd) {
			cpu->ops->linear_bwd_inp(cpu, y.c, x.c, &w.c, M);
			dev->ops->linear_bwd_inp(dev, y.d, x.d, &w.d, M);
		} else {
			cpu->ops->linear_fwd(cpu, y.c, x.c, &w.c, w.bias.c, M);
			dev->ops->linear_fwd(dev, y.d, x.d, &w.d, w.bias.d, M);
		}
		struct diff d = { 0, 0 };
		cmp_f(dev, &d, y.c, y.d, ny);
		fails += report(out, cases[i].name, &d, tol_mm);
		drop(dev, &x), drop(dev, &y);
		free(X), free(Y);
	}
	if (saved)
		setenv("FTK_CUDA_NF4", saved, 1);
	else
		unsetenv("FTK_CUDA_NF4");
	free(saved);
	nf4_pair_drop(dev, &w);
	rng = rng_was;
	return fails;
}

/*
 * A weight past one dequantization tile: the CUDA backend dequantizes NF4
 * (and, under bf16, any weight) in tiles of at most 2^24 values, so W
 * (4099, 4100), 16.8M values, takes a full tile of 4092 rows and one of 7.
 * M = 9 is the default (cuBLAS on tiles) path, forward and backward-input.
 * The random stream is restored after, as in t_linear_paths.
 */
static int t_linear_tiles(struct ftk_backend *dev, FILE *out)
{
	int N = 4099, K = 4100, M = 9, fails = 0;
	uint64_t rng_was = rng;
	struct nf4_pair w = nf4_pair_make(dev, N, K);
	float *X = host_rand((size_t)M * K, 1), *Y = host_rand((size_t)M * N, 1);
	struct pair x = both(dev, X, (size_t)M * K * 4), y = both(dev, Y, (size_t)M * N * 4);
	struct pair dx = both(dev, X, (size_t)M * K * 4);
	cpu->ops->linear_fwd(cpu, y.c, x.c, &w.c, w.bias.c, M);
	dev->ops->linear_fwd(dev, y.d, x.d, &w.d, w.bias.d, M);
	struct diff d = { 0, 0 };
	cmp_f(dev, &d, y.c, y.d, (size_t)M * N);
	fails += report(out, "linear_fwd nf4 2 tiles", &d, tol_mm);
	cpu->ops->linear_bwd_inp(cpu, dx.c, y.c, &w.c, M);
	dev->ops->linear_bwd_inp(dev, dx.d, y.d, &w.d, M);
	struct diff e = { 0, 0 };
	cmp_f(dev, &e, dx.c, dx.d, (size_t)M * K);
	fails += report(out, "linear_bwd_inp nf4 2 tiles", &e, tol_mm);
	drop(dev, &x), drop(dev, &y), drop(dev, &dx);
	free(X), free(Y);
	nf4_pair_drop(dev, &w);
	rng = rng_was;
	return fails;
}

static int t_rows(struct ftk_backend *dev, FILE *out)
{
	int fails = 0, M = 33, C = 96;
	float *X = host_rand((size_t)M * C, 2), *w = host_rand((size_t)C, 1);
	float *dY = host_rand((size_t)M * C, 1), *dX = host_rand((size_t)M * C, 1);
	struct pair x = both(dev, X, (size_t)M * C * 4), ww = both(dev, w, (size_t)C * 4);
	struct pair o = both(dev, dY, (size_t)M * C * 4), r = both(dev, dY, (size_t)M * 4);
	struct pair dy = both(dev, dY, (size_t)M * C * 4), dx = both(dev, dX, (size_t)M * C * 4);
	cpu->ops->rmsnorm_fwd(cpu, o.c, r.c, x.c, ww.c, M, C, 1e-5f);
	dev->ops->rmsnorm_fwd(dev, o.d, r.d, x.d, ww.d, M, C, 1e-5f);
	struct diff d = { 0, 0 };
	struct diff dr = { 0, 0 };
	cmp_f(dev, &d, o.c, o.d, (size_t)M * C);
	cmp_f(dev, &dr, r.c, r.d, (size_t)M);
	fails += report(out, "rmsnorm_fwd out", &d, TOL_EW);
	fails += report(out, "rmsnorm_fwd rstd", &dr, TOL_EW);
	cpu->ops->rmsnorm_bwd(cpu, dx.c, dy.c, x.c, ww.c, r.c, M, C);
	dev->ops->rmsnorm_bwd(dev, dx.d, dy.d, x.d, ww.d, r.c == NULL ? NULL : r.d, M, C);
	struct diff e = { 0, 0 };
	cmp_f(dev, &e, dx.c, dx.d, (size_t)M * C);
	fails += report(out, "rmsnorm_bwd", &e, TOL_EW);
	drop(dev, &x), drop(dev, &ww), drop(dev, &o), drop(dev, &r), drop(dev, &dy), drop(dev, &dx);
	free(X), free(w), free(dY), free(dX);

	/* RoPE forward and back */
	int Mr = 19, nh = 4, hd = 16;
	float *Q = host_rand((size_t)Mr * nh * hd, 1), inv[8];
	int32_t pos[19];
	for (int j = 0; j < hd / 2; j++)
		inv[j] = ftk_rope_inv_freq(j, hd, 10000.0f, 0, 0, 0, 0);
	for (int m = 0; m < Mr; m++)
		pos[m] = (m * 37) % 101;
	struct pair q = both(dev, Q, (size_t)Mr * nh * hd * 4), iv = both(dev, inv, sizeof(inv));
	struct pair ps = both(dev, pos, sizeof(pos));
	for (int sign = 1; sign >= -1; sign -= 2) {
		cpu->ops->rope(cpu, q.c, ps.c, iv.c, Mr, nh, hd, sign);
		dev->ops->rope(dev, q.d, ps.d, iv.d, Mr, nh, hd, sign);
		struct diff f = { 0, 0 };
		cmp_f(dev, &f, q.c, q.d, (size_t)Mr * nh * hd);
		fails += report(out, sign > 0 ? "rope" : "rope (backward)", &f, TOL_EW);
	}
	drop(dev, &q), drop(dev, &iv), drop(dev, &ps);
	free(Q);
	return fails;
}

static int t_attn(struct ftk_backend *dev, FILE *out)
{
	int B = 2, T = 23, NH = 4, NKV = 2, hd = 16, fails = 0;
	size_t nq = (size_t)B * T * NH * hd, nk = (size_t)B * T * NKV * hd, na = (size_t)B * NH * T * T;
	float *Q = host_rand(nq, 1), *K = host_rand(nk, 1), *V = host_rand(nk, 1);
	float *dO = host_rand(nq, 1), *zero = xcalloc(na > nq ? na : nq, sizeof(float));
	int32_t doc[46];
	for (int t = 0; t < B * T; t++)
		doc[t] = t < T ? 0 : (t - T < 9 ? 0 : 1);	/* row 1: two documents */
	struct pair q = both(dev, Q, nq * 4), k = both(dev, K, nk * 4), v = both(dev, V, nk * 4);
	struct pair dd = both(dev, doc, sizeof(doc)), o = both(dev, zero, nq * 4);
	struct pair a = both(dev, zero, na * 4), dout = both(dev, dO, nq * 4);
	struct pair dq = both(dev, zero, nq * 4), dk = both(dev, zero, nk * 4), dv = both(dev, zero, nk * 4);
	cpu->ops->attn_fwd(cpu, o.c, a.c, q.c, k.c, v.c, dd.c, B, T, NH, NKV, hd);
	dev->ops->attn_fwd(dev, o.d, a.d, q.d, k.d, v.d, dd.d, B, T, NH, NKV, hd);
	struct diff d = { 0, 0 }, p = { 0, 0 };
	cmp_f(dev, &d, o.c, o.d, nq);
	cmp_f(dev, &p, a.c, a.d, na);
	fails += report(out, "attn_fwd out", &d, tol_mm);
	fails += report(out, "attn_fwd probabilities", &p, tol_mm);
	cpu->ops->attn_bwd(cpu, dq.c, dk.c, dv.c, dout.c, a.c, q.c, k.c, v.c, B, T, NH, NKV, hd);
	dev->ops->attn_bwd(dev, dq.d, dk.d, dv.d, dout.d, a.d, q.d, k.d, v.d, B, T, NH, NKV, hd);
	struct diff gq = { 0, 0 }, gk = { 0, 0 }, gv = { 0, 0 };
	cmp_f(dev, &gq, dq.c, dq.d, nq);
	cmp_f(dev, &gk, dk.c, dk.d, nk);
	cmp_f(dev, &gv, dv.c, dv.d, nk);
	fails += report(out, "attn_bwd dq", &gq, tol_mm);
	fails += report(out, "attn_bwd dk", &gk, tol_mm);
	fails += report(out, "attn_bwd dv", &gv, tol_mm);
	/* decoding one query against a cache of n positions */
	int n = 29;
	float *q1 = host_rand((size_t)NH * hd, 1), *kc = host_rand((size_t)n * NKV * hd, 1);
	float *vc = host_rand((size_t)n * NKV * hd, 1);
	struct pair q1p = both(dev, q1, (size_t)NH * hd * 4), kcp = both(dev, kc, (size_t)n * NKV * hd * 4);
	struct pair vcp = both(dev, vc, (size_t)n * NKV * hd * 4), o1 = both(dev, zero, (size_t)NH * hd * 4);
	struct pair sc = both(dev, zero, (size_t)n * 4);
	cpu->ops->attn_decode(cpu, o1.c, q1p.c, kcp.c, vcp.c, n, NH, NKV, hd, sc.c);
	dev->ops->attn_decode(dev, o1.d, q1p.d, kcp.d, vcp.d, n, NH, NKV, hd, sc.d);
	struct diff h = { 0, 0 };
	cmp_f(dev, &h, o1.c, o1.d, (size_t)NH * hd);
	fails += report(out, "attn_decode", &h, tol_mm);
	struct pair *all[] = { &q, &k, &v, &dd, &o, &a, &dout, &dq, &dk, &dv, &q1p, &kcp, &vcp, &o1, &sc };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		drop(dev, all[i]);
	free(Q), free(K), free(V), free(dO), free(zero), free(q1), free(kc), free(vc);
	return fails;
}

/*
 * Flash attention (attn_fwd_flash / attn_bwd_flash) against the CPU flash
 * ops: several documents per row, GQA, T = 150 (two full 64-row blocks and
 * a partial one) at head_dim 16, and T = 70 at head_dim 256 (16-row tiles).
 */
static int t_attn_flash(struct ftk_backend *dev, FILE *out)
{
	static const int shapes[2][5] = { { 2, 150, 4, 2, 16 }, { 1, 70, 2, 1, 256 } };
	int fails = 0;
	if (!dev->ops->attn_fwd_flash || !dev->ops->attn_bwd_flash) {
		fprintf(out, "  flash attention        not in this backend's table  FAIL\n");
		return 1;
	}
	for (int si = 0; si < 2; si++) {
		int B = shapes[si][0], T = shapes[si][1], NH = shapes[si][2], NKV = shapes[si][3],
		    hd = shapes[si][4];
		size_t nq = (size_t)B * T * NH * hd, nk = (size_t)B * T * NKV * hd, nl = (size_t)B * NH * T;
		float *Q = host_rand(nq, 2), *K = host_rand(nk, 2), *V = host_rand(nk, 1);
		float *dO = host_rand(nq, 1), *zero = xcalloc(nq, sizeof(float));
		int32_t *doc = xmalloc((size_t)B * T * sizeof(int32_t));
		for (int b = 0; b < B; b++)	/* documents of 40 positions, the last shorter */
			for (int t = 0; t < T; t++)
				doc[b * T + t] = t / (40 + 7 * b);
		struct pair q = both(dev, Q, nq * 4), k = both(dev, K, nk * 4), v = both(dev, V, nk * 4);
		struct pair dd = both(dev, doc, (size_t)B * T * 4), o = both(dev, zero, nq * 4);
		struct pair l = both(dev, zero, nl * 4), dout = both(dev, dO, nq * 4);
		struct pair dq = both(dev, zero, nq * 4), dk = both(dev, zero, nk * 4);
		struct pair dv = both(dev, zero, nk * 4);
		cpu->ops->attn_fwd_flash(cpu, o.c, l.c, q.c, k.c, v.c, dd.c, B, T, NH, NKV, hd);
		dev->ops->attn_fwd_flash(dev, o.d, l.d, q.d, k.d, v.d, dd.d, B, T, NH, NKV, hd);
		struct diff d = { 0, 0 }, e = { 0, 0 }, g[3] = { { 0, 0 }, { 0, 0 }, { 0, 0 } };
		char name[32];
		cmp_f(dev, &d, o.c, o.d, nq);
		cmp_f(dev, &e, l.c, l.d, nl);
		snprintf(name, sizeof(name), "flash fwd out hd=%d", hd);
		fails += report(out, name, &d, tol_mm);
		snprintf(name, sizeof(name), "flash fwd lse hd=%d", hd);
		fails += report(out, name, &e, tol_mm);
		/* both backward passes from the CPU's forward, so only the backward differs */
		dev->ops->upload(dev, o.d, o.c, nq * 4);
		dev->ops->upload(dev, l.d, l.c, nl * 4);
		cpu->ops->attn_bwd_flash(cpu, dq.c, dk.c, dv.c, dout.c, o.c, l.c, q.c, k.c, v.c,
					 dd.c, B, T, NH, NKV, hd);
		dev->ops->attn_bwd_flash(dev, dq.d, dk.d, dv.d, dout.d, o.d, l.d, q.d, k.d, v.d,
					 dd.d, B, T, NH, NKV, hd);
		cmp_f(dev, &g[0], dq.c, dq.d, nq);
		cmp_f(dev, &g[1], dk.c, dk.d, nk);
		cmp_f(dev, &g[2], dv.c, dv.d, nk);
		for (int gi = 0; gi < 3; gi++) {
			snprintf(name, sizeof(name), "flash bwd %s hd=%d", gi == 0 ? "dq" : gi == 1 ? "dk" : "dv",
				 hd);
			fails += report(out, name, &g[gi], tol_mm);
		}
		struct pair *all[] = { &q, &k, &v, &dd, &o, &l, &dout, &dq, &dk, &dv };
		for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
			drop(dev, all[i]);
		free(Q), free(K), free(V), free(dO), free(zero), free(doc);
	}
	return fails;
}

static int t_elementwise(struct ftk_backend *dev, FILE *out)
{
	int fails = 0;
	size_t n = 1000;
	float *G = host_rand(n, 4), *U = host_rand(n, 2), *D = host_rand(n, 1);
	struct pair g = both(dev, G, n * 4), u = both(dev, U, n * 4), dd = both(dev, D, n * 4);
	struct pair o = both(dev, D, n * 4), o2 = both(dev, D, n * 4);
	cpu->ops->swiglu_fwd(cpu, o.c, g.c, u.c, n);
	dev->ops->swiglu_fwd(dev, o.d, g.d, u.d, n);
	struct diff d = { 0, 0 };
	cmp_f(dev, &d, o.c, o.d, n);
	fails += report(out, "swiglu_fwd", &d, TOL_EW);
	cpu->ops->swiglu_bwd(cpu, o.c, o2.c, dd.c, g.c, u.c, n);
	dev->ops->swiglu_bwd(dev, o.d, o2.d, dd.d, g.d, u.d, n);
	struct diff e = { 0, 0 }, e2 = { 0, 0 };
	cmp_f(dev, &e, o.c, o.d, n);
	cmp_f(dev, &e2, o2.c, o2.d, n);
	fails += report(out, "swiglu_bwd dgate", &e, TOL_EW);
	fails += report(out, "swiglu_bwd dup", &e2, TOL_EW);
	cpu->ops->add(cpu, o.c, g.c, n);
	dev->ops->add(dev, o.d, g.d, n);
	struct diff f = { 0, 0 };
	cmp_f(dev, &f, o.c, o.d, n);
	fails += report(out, "add", &f, TOL_EW);

	/* dropout masks must be identical bit for bit */
	uint8_t *kz = xcalloc(n, 1), *kh = xmalloc(n);
	struct pair keep = both(dev, kz, n);
	cpu->ops->dropout_mask(cpu, keep.c, 12345, 0.3f, n);
	dev->ops->dropout_mask(dev, keep.d, 12345, 0.3f, n);
	dev->ops->download(dev, kh, keep.d, n);
	cpu->ops->download(cpu, kz, keep.c, n);
	size_t differ = 0;
	for (size_t i = 0; i < n; i++)
		differ += kh[i] != kz[i];
	fprintf(out, "  %-26s %zu of %zu mask bytes differ  %s\n", "dropout_mask", differ, n,
		differ ? "FAIL" : "ok");
	fails += differ != 0;
	cpu->ops->dropout(cpu, o2.c, g.c, keep.c, 1.0f / 0.7f, n);
	dev->ops->dropout(dev, o2.d, g.d, keep.d, 1.0f / 0.7f, n);
	struct diff h = { 0, 0 };
	cmp_f(dev, &h, o2.c, o2.d, n);
	fails += report(out, "dropout", &h, TOL_EW);

	/* cross-entropy, loss only and with gradients; two rows without a target */
	int M = 11, V = 300;
	float *L = host_rand((size_t)M * V, 6), *zl = xcalloc((size_t)M, sizeof(float));
	int32_t tg[11];
	for (int m = 0; m < M; m++)
		tg[m] = m == 3 || m == 7 ? -1 : (m * 53) % V;
	struct pair lg = both(dev, L, (size_t)M * V * 4), t = both(dev, tg, sizeof(tg));
	struct pair ls = both(dev, zl, (size_t)M * 4);
	cpu->ops->xent(cpu, ls.c, lg.c, t.c, M, V, 0.0f);
	dev->ops->xent(dev, ls.d, lg.d, t.d, M, V, 0.0f);
	struct diff x = { 0, 0 };
	cmp_f(dev, &x, ls.c, ls.d, (size_t)M);
	fails += report(out, "xent loss", &x, TOL_EW);
	cpu->ops->xent(cpu, ls.c, lg.c, t.c, M, V, 1.0f / 7.0f);
	dev->ops->xent(dev, ls.d, lg.d, t.d, M, V, 1.0f / 7.0f);
	struct diff y = { 0, 0 }, y2 = { 0, 0 };
	cmp_f(dev, &y, ls.c, ls.d, (size_t)M);
	cmp_f(dev, &y2, lg.c, lg.d, (size_t)M * V);
	fails += report(out, "xent loss (with grad)", &y, TOL_EW);
	fails += report(out, "xent grad", &y2, TOL_EW);

	/* embedding rows and bias */
	int Vt = 50, C = 32, Me = 17;
	float *tab = host_rand((size_t)Vt * C, 1);
	uint32_t ids[17];
	for (int m = 0; m < Me; m++)
		ids[m] = (uint32_t)((m * 7) % Vt);
	struct pair tb = both(dev, tab, (size_t)Vt * C * 4), id = both(dev, ids, sizeof(ids));
	struct pair eo = both(dev, zl, 4 * (size_t)Me * C > (size_t)M * 4 ? 0 : 0);
	drop(dev, &eo);
	float *EZ = xcalloc((size_t)Me * C, sizeof(float));
	struct pair em = both(dev, EZ, (size_t)Me * C * 4);
	cpu->ops->embed(cpu, em.c, tb.c, id.c, Me, C);
	dev->ops->embed(dev, em.d, tb.d, id.d, Me, C);
	struct diff z = { 0, 0 };
	cmp_f(dev, &z, em.c, em.d, (size_t)Me * C);
	fails += report(out, "embed", &z, 0.0);
	struct pair *all[] = { &g, &u, &dd, &o, &o2, &keep, &lg, &t, &ls, &tb, &id, &em };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		drop(dev, all[i]);
	free(G), free(U), free(D), free(kz), free(kh), free(L), free(zl), free(tab), free(EZ);
	return fails;
}

/* Both backends to precision p; 0, or -1 when dev cannot (said on out). */
static int set_both(struct ftk_backend *dev, int p, FILE *out)
{
	cpu->ops->set_precision(cpu, p);
	if (!dev->ops->set_precision || dev->ops->set_precision(dev, p) < 0) {
		fprintf(out, "  %-26s the %s backend has no %s mode  FAIL\n", "set_precision",
			dev->ops->name, ftk_precision_name(p));
		return -1;
	}
	return 0;
}

int ftk_selftest_ops_bf16(struct ftk_backend *dev, FILE *out)
{
	ref_init();
	uint64_t saved = rng;	/* the QLoRA step after it draws what it drew before */
	rng = 0x9e3779b97f4a7c15ull;
	fprintf(out, "ops bf16: %s against cpu (operands rounded to bf16, fp32 accumulation)\n",
		dev->ops->name);
	if (set_both(dev, FTK_PREC_BF16, out) < 0) {
		cpu->ops->set_precision(cpu, FTK_PREC_FP32);
		rng = saved;
		return 1;
	}
	/* the fp32 lines' inputs and shapes, under the bf16 mode */
	suffix = " bf16";
	int fails = t_gemm(dev, out) + t_linear(dev, out) + t_linear_tiles(dev, out);
	suffix = "";
	rng = saved;
	cpu->ops->set_precision(cpu, FTK_PREC_FP32);
	dev->ops->set_precision(dev, FTK_PREC_FP32);
	return fails;
}

int ftk_selftest_ops_tf32(struct ftk_backend *dev, FILE *out)
{
	ref_init();
	if (!dev->ops->set_precision || dev->ops->set_precision(dev, FTK_PREC_TF32) < 0) {
		fprintf(out, "ops tf32: not run (the %s backend has no tf32 mode)\n",
			dev->ops->name);
		return 0;
	}
	uint64_t saved = rng;
	rng = 0x9e3779b97f4a7c15ull;
	fprintf(out,
		"ops tf32: %s against cpu fp32 (products on TF32 tensor cores, tolerance "
		"%.1e)\n",
		dev->ops->name, TOL_TF32);
	suffix = " tf32";
	tol_mm = TOL_TF32;
	int fails = t_gemm(dev, out) + t_linear(dev, out) + t_linear_tiles(dev, out);
	tol_mm = TOL_MM_FP32;
	suffix = "";
	rng = saved;
	dev->ops->set_precision(dev, FTK_PREC_FP32);
	return fails;
}

int ftk_selftest_ops(struct ftk_backend *dev, FILE *out)
{
	ref_init();
	rng = 0x9e3779b97f4a7c15ull;
	fprintf(out, "ops: %s against cpu\n", dev->ops->name);
	int fails = t_gemm(dev, out) + t_linear(dev, out) + t_rows(dev, out) + t_attn(dev, out) +
		    t_elementwise(dev, out);
	fails += t_linear_paths(dev, out) + t_linear_tiles(dev, out);
	uint64_t keep = rng;	/* the QLoRA step's inputs stay those of tables without flash */
	fails += t_attn_flash(dev, out);
	rng = keep;
	return fails;
}

/*
 * The optimizer entries (sumsq, scale, adamw) over backend memory, as the
 * trainer calls them on the LoRA arrays, against optim_ops.h's host loops.
 */
static int t_optim(struct ftk_backend *dev, FILE *out)
{
	size_t n = 4099;
	float *w = host_rand(n, 1), *m = host_rand(n, 0.1f), *v = host_rand(n, 0.1f);
	float *g = host_rand(n, 1);
	for (size_t i = 0; i < n; i++)
		v[i] = fabsf(v[i]);
	struct ftk_adamw_consts c = { 0.9f, 0.1f, 0.999f, 0.001f, 1e-8f, 1.0f - 1e-3f * 0.01f,
				      -1e-3f / 0.1f, sqrtf(0.001f) };
	float *dw = put(dev, w, n * 4), *dm = put(dev, m, n * 4);
	float *dv = put(dev, v, n * 4), *dg = put(dev, g, n * 4);
	dev->ops->adamw(dev, dw, dm, dv, dg, n, &c);
	ftk_adamw_array(w, m, v, g, n, &c);
	struct diff d[3] = { { 0, 0 }, { 0, 0 }, { 0, 0 } };
	cmp_f(dev, &d[0], w, dw, n);
	cmp_f(dev, &d[1], m, dm, n);
	cmp_f(dev, &d[2], v, dv, n);
	int fails = report(out, "adamw w", &d[0], TOL_EW);
	fails += report(out, "adamw m", &d[1], TOL_EW);
	fails += report(out, "adamw v", &d[2], TOL_EW);
	double ss = ftk_sumsq_array(g, n), s2 = dev->ops->sumsq(dev, dg, n);
	struct diff e = { fabs(s2 - ss), ss };
	fails += report(out, "grad norm (sum sq)", &e, 1e-12);
	dev->ops->scale(dev, dg, 0.37f, n);
	ftk_scale_array(g, 0.37f, n);
	struct diff f = { 0, 0 };
	cmp_f(dev, &f, g, dg, n);
	fails += report(out, "clip (scale)", &f, TOL_EW);
	dev->ops->free(dev, dw), dev->ops->free(dev, dm), dev->ops->free(dev, dv),
		dev->ops->free(dev, dg);
	free(w), free(m), free(v), free(g);
	return fails;
}

static int step_at(struct ftk_backend *dev, const char *model_dir, int prec, int flash, FILE *out,
		   struct ftk_error *err);

/*
 * Every LoRA gradient tensor on its own scale, one line each: a layer's
 * gradients can be a hundredth of another's, and one maximum over all of
 * them let a tensor wrong by 7e-4 of its own size pass a line of 1e-5.
 */
int ftk_selftest_lora_grads(const struct ftk_model *ref, const struct ftk_model *dev, double tol,
			    FILE *out)
{
	int fails = 0;
	size_t nt = ftk_model_lora_count(ref);
	if (ftk_model_lora_count(dev) != nt) {
		fprintf(out, "  %-26s %zu tensors against %zu  FAIL\n", "LoRA tensors",
			ftk_model_lora_count(dev), nt);
		return 1;
	}
	/* the gradients are backend memory (device memory on a GPU): host copies */
	size_t n = 0;
	for (size_t ti = 0; ti < nt; ti++) {
		const struct ftk_lora_tensor *t = ftk_model_lora_tensor(ref, ti);
		size_t end = t->offset + (size_t)t->rows * t->cols;
		n = end > n ? end : n;
	}
	float *gc = xmalloc(n * sizeof(float) + 1), *gd = xmalloc(n * sizeof(float) + 1);
	ftk_model_lora_grad_download(ref, gc);
	ftk_model_lora_grad_download(dev, gd);
	for (size_t ti = 0; ti < nt; ti++) {
		const struct ftk_lora_tensor *tc = ftk_model_lora_tensor(ref, ti);
		const struct ftk_lora_tensor *td = ftk_model_lora_tensor(dev, ti);
		size_t cnt = (size_t)tc->rows * tc->cols;
		const float *c = gc + tc->offset, *d = gd + td->offset;
		struct diff g = { 0, 0 };
		for (size_t i = 0; i < cnt; i++) {
			double a = fabs((double)d[i] - (double)c[i]);
			g.abs = a > g.abs || isnan(a) ? (isnan(a) ? INFINITY : a) : g.abs;
			g.ref = fabs((double)c[i]) > g.ref ? fabs((double)c[i]) : g.ref;
		}
		char name[64];
		snprintf(name, sizeof(name), "grad L%d %s %s", tc->layer,
			 ftk_lora_target_name(tc->target), tc->is_b ? "B" : "A");
		fails += report(out, name, &g, tol);
	}
	free(gc);
	free(gd);
	return fails;
}

int ftk_selftest_step(struct ftk_backend *dev, const char *model_dir, FILE *out,
		      struct ftk_error *err)
{
	ref_init();
	return step_at(dev, model_dir, FTK_PREC_FP32, 0, out, err);
}

int ftk_selftest_step_bf16(struct ftk_backend *dev, const char *model_dir, FILE *out,
			   struct ftk_error *err)
{
	ref_init();
	int rc = step_at(dev, model_dir, FTK_PREC_BF16, 0, out, err);
	cpu->ops->set_precision(cpu, FTK_PREC_FP32);
	if (dev->ops->set_precision)
		dev->ops->set_precision(dev, FTK_PREC_FP32);
	return rc;
}

int ftk_selftest_step_flash(struct ftk_backend *dev, const char *model_dir, FILE *out,
			    struct ftk_error *err)
{
	ref_init();
	/* its own inputs, whichever steps ran before it */
	uint64_t keep = rng;
	rng = 0x2545f4914f6cdd1dull;
	int rc = step_at(dev, model_dir, FTK_PREC_FP32, 1, out, err);
	rng = keep;
	return rc;
}

static int step_at(struct ftk_backend *dev, const char *model_dir, int prec, int flash, FILE *out,
		   struct ftk_error *err)
{
	int bf = prec == FTK_PREC_BF16;
	double tol_loss = bf ? 1e-3 : 1e-4, tol_grad = bf ? 3e-2 : 1e-4;
	struct ftk_model *mc = NULL, *md = NULL;
	struct ftk_load_opts lc = { FTK_QUANT_NF4, cpu, 1, 64 };
	struct ftk_load_opts ld = { FTK_QUANT_NF4, dev, 1, 64 };
	struct ftk_lora_opts lo = { FTK_LORA_ALL, 4, 8.0f, 0, 0.0f, 7 };
	int rc = ftk_model_load(&mc, model_dir, &lc, err);
	if (rc == 0)
		rc = ftk_model_load(&md, model_dir, &ld, err);
	if (rc == 0)
		rc = ftk_model_set_precision(mc, prec, err);
	if (rc == 0)
		rc = ftk_model_set_precision(md, prec, err);
	if (rc == 0 && flash)
		rc = ftk_model_set_attention(mc, FTK_ATTN_FLASH, err);
	if (rc == 0 && flash)
		rc = ftk_model_set_attention(md, FTK_ATTN_FLASH, err);
	/* the head in chunks of 40 rows (96 rows: 40, 40, 16), as a large vocabulary splits it */
	if (rc == 0) {
		ftk_model_set_head_chunk(mc, 40);
		ftk_model_set_head_chunk(md, 40);
	}
	if (rc == 0)
		rc = ftk_model_lora_init(mc, &lo, err);
	if (rc == 0)
		rc = ftk_model_lora_init(md, &lo, err);
	if (rc < 0) {
		ftk_model_free(mc);
		ftk_model_free(md);
		return rc;
	}
	/* B is zero after init: give every LoRA weight a value so every gradient is non-zero */
	size_t n = 0;
	ftk_model_lora_flat(mc, &n);
	float *p = xmalloc(n * sizeof(float) + 1);
	for (size_t i = 0; i < n; i++)
		p[i] = frand() * 0.05f;
	ftk_model_lora_upload(mc, p);
	ftk_model_lora_upload(md, p);
	free(p);
	int Bn = 2, T = 48, V = ftk_model_config(mc)->vocab_size;
	uint32_t *ids = xmalloc((size_t)Bn * T * sizeof(uint32_t));
	uint32_t *docs = xmalloc((size_t)Bn * T * sizeof(uint32_t));
	for (int i = 0; i < Bn * T; i++) {
		ids[i] = (uint32_t)((i * 7919u + 13u) % (unsigned)V);
		docs[i] = (uint32_t)(i % T < 20 ? 0 : 1);
	}
	struct ftk_batch b = { Bn, T, ids, NULL, docs };
	double lsc = 0, lsd = 0;
	long ntc = 0, ntd = 0;
	double norm = (double)ftk_batch_count_targets(&b);
	rc = ftk_model_forward_backward(mc, &b, norm, &lsc, &ntc, err);
	if (rc == 0)
		rc = ftk_model_forward_backward(md, &b, norm, &lsd, &ntd, err);
	int fails = 0;
	if (rc == 0) {
		fprintf(out,
			"qlora step%s: %s against cpu (NF4 base, LoRA rank 4 on all targets, "
			"%d x %d tokens, two documents per row)\n",
			bf	? " bf16"
			: flash ? " flash"
				: "",
			dev->ops->name, Bn, T);
		struct diff d = { fabs(lsd - lsc), fabs(lsc) };
		fprintf(out, "  loss cpu %.7f  %s %.7f\n", lsc / norm, dev->ops->name, lsd / norm);
		fails += report(out, "loss", &d, tol_loss);
		fails += ftk_selftest_lora_grads(mc, md, tol_grad, out);
	}
	free(ids);
	free(docs);
	ftk_model_free(mc);
	ftk_model_free(md);
	return rc < 0 ? rc : fails;
}

int ftk_selftest_main(const char *device, const char *model_dir, FILE *out)
{
	return ftk_selftest_run(device, model_dir, -1, out);
}

int ftk_selftest_run(const char *device, const char *model_dir, int precision, FILE *out)
{
	ref_init();
	int fp32 = precision < 0 || precision == FTK_PREC_FP32;
	int bf16 = precision < 0 || precision == FTK_PREC_BF16;
	int tf32 = precision < 0 || precision == FTK_PREC_TF32;
	struct ftk_backend *dev = NULL;
	struct ftk_error err;
	int cuda = strcmp(device, "cpu") != 0;
	if (ftk_device_backend(device, 0, &dev, &err) < 0) {
		if (err.code == FTK_EUSAGE) {
			fprintf(out, "ftk-train --selftest: %s\n", err.msg);
			return 2;
		}
		fprintf(out, "ftk-train --selftest: %s\n", err.msg);
		fprintf(out, "nothing was checked: run it on a machine with an NVIDIA GPU "
			     "(docs/gpu.md); exit status %d\n",
			FTK_SELFTEST_NO_GPU);
		return FTK_SELFTEST_NO_GPU;
	}
	if (!cuda)
		fprintf(out, "note: --device cpu compares the CPU backend with itself (a check of "
			     "this harness, not of a GPU)\n");
	int fails = 0;
	if (fp32)
		fails += ftk_selftest_ops(dev, out);
	if (bf16)
		fails += ftk_selftest_ops_bf16(dev, out);
	if (tf32)
		fails += ftk_selftest_ops_tf32(dev, out);
	struct stat sb;
	const char *md = model_dir ? model_dir : "datasets/models/stories260K";
	if (stat(md, &sb) == 0) {
		for (int p = 0; p < 3; p++) {
			if (!(p == 1 ? bf16 : fp32))
				continue;
			int rc = p == 1 ? ftk_selftest_step_bf16(dev, md, out, &err)
				: p == 2 ? ftk_selftest_step_flash(dev, md, out, &err)
					 : ftk_selftest_step(dev, md, out, &err);
			if (rc < 0) {
				fprintf(out, "qlora step%s: %s: %s\n",
					p == 1 ? " bf16" : p == 2 ? " flash" : "", md, err.msg);
				fails++;
			} else {
				fails += rc;
			}
		}
	} else {
		fprintf(out, "qlora step: NOT RUN (no model at '%s': give --model DIR)\n", md);
		fails++;
	}
	if (fp32 && dev->ops->adamw && dev->ops->sumsq && dev->ops->scale) {
		fprintf(out, "optimizer: %s against the host loops\n", dev->ops->name);
		fails += t_optim(dev, out);
	}
	fprintf(out, "%s: %d check%s beyond tolerance\n", fails ? "FAIL" : "PASS", fails,
		fails == 1 ? "" : "s");
	ftk_backend_free(dev);
	return fails ? 1 : 0;
}
