/*
 * ops.h: the per-element and per-row arithmetic of the trainer, as static
 * inline functions that both the C compiler and nvcc compile.
 *
 * The CPU backend calls these in its loops; the CUDA kernels call the same
 * functions from device code (FTK_HD marks them __host__ __device__ under
 * nvcc), so the unit tests that check the CPU backend also check the
 * arithmetic the GPU runs.  Nothing here allocates, loops over more than one
 * row, or knows about threads: that is the backend's business.
 *
 * Plain C: no VLAs, no library calls but expf/logf/sqrtf/cosf/sinf (which
 * CUDA provides under the same names), float arithmetic unless noted.
 */
#ifndef FTK_MODEL_OPS_H
#define FTK_MODEL_OPS_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define FTK_HD __host__ __device__ __forceinline__
#else
#define FTK_HD static inline
#endif

/* ---------------------------------------------------------------- NF4 */

/*
 * Decode element i of an NF4 tensor: code table value of its nibble (even i
 * high nibble) times its block's recovered absmax.  code: the 16 NF4 values.
 */
FTK_HD float ftk_nf4_decode(const uint8_t *packed, const float *absmax, const float *code,
			    size_t i)
{
	uint8_t byte = packed[i >> 1];
	int c = (i & 1) ? (byte & 0x0f) : (byte >> 4);
	return code[c] * absmax[i / 64];
}

/* Recovered absmax of block i: dynmap[q] * nested[i/256] + offset, float32 each step. */
FTK_HD float ftk_nf4_absmax(const uint8_t *qabsmax, const float *nested, const float *dynmap,
			    float offset, size_t i)
{
	float v = dynmap[qabsmax[i]] * nested[i / 256];
	return v + offset;
}

/* ---------------------------------------------------------------- bf16 */

/*
 * bfloat16 is the top half of a float32: sign, the same 8-bit exponent and 7
 * mantissa bits.  Under --precision bf16 every matrix product takes its
 * operands rounded to bf16 and accumulates in float32; these three
 * functions are that rounding, shared by the CPU emulation and the CUDA
 * conversion kernels so both round identically.
 *
 * float32 -> bf16 rounds to nearest, ties to even, on the bit pattern:
 * adding 0x7fff plus the kept half's lowest bit and dropping the low 16
 * bits rounds subnormals correctly too, carries into the exponent when the
 * mantissa overflows, and turns values at or beyond bf16's largest finite
 * value plus half an ulp into Inf, as PyTorch's conversion does.  NaN is
 * tested first (the addition could carry it into Inf) and becomes the
 * canonical quiet NaN 0x7fc0; PyTorch's vectorised CPU conversion writes
 * 0xffff instead: both are NaN, and no arithmetic depends on the payload.
 * (safetensors.c's ftk_f32_to_bf16, for writing files, keeps a NaN's sign
 * and payload; the two agree on every other value.)
 */
FTK_HD uint16_t ftk_bf16_rne(float x)
{
	union {
		float f;
		uint32_t u;
	} v;
	v.f = x;
	if ((v.u & 0x7fffffffu) > 0x7f800000u)
		return 0x7fc0;
	return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}

/* bf16 bits -> float32: exact (the low 16 bits become zero). */
FTK_HD float ftk_bf16_float(uint16_t h)
{
	union {
		float f;
		uint32_t u;
	} v;
	v.u = (uint32_t)h << 16;
	return v.f;
}

/* x rounded to the nearest bf16, as a float32. */
FTK_HD float ftk_bf16_round(float x)
{
	return ftk_bf16_float(ftk_bf16_rne(x));
}

/* ---------------------------------------------------------------- RMSNorm */

/*
 * RMSNorm in pieces, as for cross-entropy below: the CPU runs each piece
 * over the whole row (start 0, stride 1); a CUDA warp runs lane l over
 * elements l, l + 32, ... and sums the lanes' parts with shuffles.
 */
FTK_HD float ftk_rmsnorm_part_ss(const float *x, int C, int start, int stride)
{
	float ss = 0.0f;
	for (int i = start; i < C; i += stride)
		ss += x[i] * x[i];
	return ss;
}

FTK_HD float ftk_rmsnorm_rstd(float ss, int C, float eps)
{
	return 1.0f / sqrtf(ss / (float)C + eps);
}

FTK_HD void ftk_rmsnorm_part_out(float *out, const float *x, const float *w, float rstd, int C,
				 int start, int stride)
{
	for (int i = start; i < C; i += stride)
		out[i] = x[i] * rstd * w[i];
}

/* The backward's dot product: sum of w * dy * x over the part. */
FTK_HD float ftk_rmsnorm_part_dot(const float *dy, const float *x, const float *w, int C,
				  int start, int stride)
{
	float dot = 0.0f;
	for (int i = start; i < C; i += stride)
		dot += w[i] * dy[i] * x[i];
	return dot;
}

/* dx += rstd * (w*dy - x * rstd^2 * dot / C) over the part, dot the whole row's. */
FTK_HD void ftk_rmsnorm_part_dx(float *dx, const float *dy, const float *x, const float *w,
				float rstd, float dot, int C, int start, int stride)
{
	float k = dot * rstd * rstd / (float)C;
	for (int i = start; i < C; i += stride)
		dx[i] += rstd * (w[i] * dy[i] - x[i] * k);
}

/* out = x * rstd * w over C; returns rstd = 1/sqrt(mean(x^2) + eps). */
FTK_HD float ftk_rmsnorm_row(float *out, const float *x, const float *w, int C, float eps)
{
	float rstd = ftk_rmsnorm_rstd(ftk_rmsnorm_part_ss(x, C, 0, 1), C, eps);
	ftk_rmsnorm_part_out(out, x, w, rstd, C, 0, 1);
	return rstd;
}

/*
 * Backward of one row: dx += rstd * (w*dy - x * rstd^2 * mean(w*dy*x)).
 */
FTK_HD void ftk_rmsnorm_row_bwd(float *dx, const float *dy, const float *x, const float *w,
				float rstd, int C)
{
	ftk_rmsnorm_part_dx(dx, dy, x, w, rstd, ftk_rmsnorm_part_dot(dy, x, w, C, 0, 1), C, 0, 1);
}

/* ---------------------------------------------------------------- RoPE */

/*
 * Rotate one head (hd values) in HF's rotate_half layout: for j < hd/2 the
 * pair (x[j], x[j + hd/2]) turns by angle pos * inv_freq[j]; sign -1 turns
 * back (the backward pass of a rotation is its inverse).
 */
/* One pair j < h = hd/2 of a head: what a CUDA thread does (consecutive threads, consecutive j). */
FTK_HD void ftk_rope_pair(float *x, int j, int h, int pos, const float *inv_freq, int sign)
{
	float a = (float)pos * inv_freq[j];
	float c = cosf(a), s = sinf(a) * (float)sign;
	float x0 = x[j], x1 = x[j + h];
	x[j] = x0 * c - x1 * s;
	x[j + h] = x1 * c + x0 * s;
}

FTK_HD void ftk_rope_head(float *x, int pos, const float *inv_freq, int hd, int sign)
{
	for (int j = 0; j < hd / 2; j++)
		ftk_rope_pair(x, j, hd / 2, pos, inv_freq, sign);
}

/*
 * inv_freq[j] for j < hd/2: theta^(-2j/hd), with Llama 3's rope_scaling when
 * factor > 0 (low/high frequency factors, original context length): long
 * wavelengths divided by factor, short ones kept, a smooth blend between.
 * Computed in double then rounded, as HF does in float32 from a float64-ish
 * power; callers compute this once per model.
 */
FTK_HD float ftk_rope_inv_freq(int j, int hd, float theta, float factor, float low_ff,
			       float high_ff, int orig_max)
{
	double inv = 1.0 / pow((double)theta, (double)(2 * j) / (double)hd);
	if (factor > 0.0f) {
		double low_wl = (double)orig_max / low_ff;
		double high_wl = (double)orig_max / high_ff;
		double wl = 2.0 * M_PI / inv;
		if (wl > low_wl) {
			inv = inv / factor;
		} else if (wl >= high_wl) {
			double smooth = ((double)orig_max / wl - low_ff) / (high_ff - low_ff);
			inv = (1.0 - smooth) * inv / factor + smooth * inv;
		}
	}
	return (float)inv;
}

/* ---------------------------------------------------------------- softmax */

/* In place over n values: x = softmax(x).  Returns the max (for logsumexp). */
/*
 * Softmax of a row split among threads (the CUDA decode kernel: a block
 * over one row of scores), thread t taking elements t, t + stride, ...:
 * the parts' maximum, then each part exponentiated in place with its sum,
 * then each part scaled by 1 / (the sum of the sums).  ftk_softmax_row is
 * the one-part case, so the CPU runs the same expressions.
 */
FTK_HD float ftk_softmax_part_max(const float *x, int n, int start, int stride)
{
	float mx = -INFINITY;
	for (int i = start; i < n; i += stride)
		mx = x[i] > mx ? x[i] : mx;
	return mx;
}

FTK_HD float ftk_softmax_part_exp(float *x, int n, float mx, int start, int stride)
{
	float sum = 0.0f;
	for (int i = start; i < n; i += stride) {
		x[i] = expf(x[i] - mx);
		sum += x[i];
	}
	return sum;
}

FTK_HD void ftk_softmax_part_scale(float *x, int n, float inv, int start, int stride)
{
	for (int i = start; i < n; i += stride)
		x[i] *= inv;
}

FTK_HD float ftk_softmax_row(float *x, int n)
{
	float mx = ftk_softmax_part_max(x, n, 0, 1);
	float inv = 1.0f / ftk_softmax_part_exp(x, n, mx, 0, 1);
	ftk_softmax_part_scale(x, n, inv, 0, 1);
	return mx;
}

/* Softmax backward over one row: dx = p * (dp - sum(p * dp)). */
FTK_HD void ftk_softmax_row_bwd(float *dx, const float *p, const float *dp, int n)
{
	float dot = 0.0f;
	for (int i = 0; i < n; i++)
		dot += p[i] * dp[i];
	for (int i = 0; i < n; i++)
		dx[i] = p[i] * (dp[i] - dot);
}

/* ---------------------------------------------------------------- flash attention */

/*
 * The arithmetic of memory-efficient ("flash") attention, one query row at
 * a time (FlashAttention, Dao et al. 2022; the online softmax of Milakov and
 * Gimelshein 2018).  A row keeps a running maximum mx of the scores seen so
 * far, the running sum l of exp(score - mx) and acc = sum exp(score - mx) v
 * over the keys seen; a new tile of keys raises mx when it must and rescales
 * l and acc by exp(old mx - new mx).  At the end out = acc / l and the row's
 * log-sum-exp lse = mx + log l is all the backward pass keeps: it
 * recomputes p = exp(score - lse) tile by tile and, with D = dout . out,
 * ds = p (dp - D), where dp = dout . v (the softmax backward, since
 * sum_j p_j dp_j = dout . sum_j p_j v_j = dout . out).
 *
 * The mask is the trainer's: query t attends to keys [ftk_doc_start(t), t],
 * the run of equal document ids that ends at t; key s is attended by
 * queries [s, ftk_doc_end(s)).  Callers pass each row only its keys, so no
 * score is ever -inf and a row's first update sees at least one key.
 */

/* a . b over n floats */
FTK_HD float ftk_dot(const float *a, const float *b, int n)
{
	float d = 0.0f;
	for (int i = 0; i < n; i++)
		d += a[i] * b[i];
	return d;
}

/* First key of query t: the start of the run of equal doc ids ending at t. */
FTK_HD int ftk_doc_start(const int32_t *doc, int t)
{
	int s = t;
	while (s > 0 && doc[s - 1] == doc[t])
		s--;
	return s;
}

/* One past the last query that attends key s (of T): the end of s's run. */
FTK_HD int ftk_doc_end(const int32_t *doc, int T, int s)
{
	int e = s + 1;
	while (e < T && doc[e] == doc[s])
		e++;
	return e;
}

/* Start a row: nothing seen (mx = -inf, l = 0, acc (hd) = 0). */
FTK_HD void ftk_flash_row_init(float *mx, float *l, float *acc, int hd)
{
	*mx = -INFINITY;
	*l = 0.0f;
	for (int i = 0; i < hd; i++)
		acc[i] = 0.0f;
}

/*
 * The first half of an update: n scores s (already scaled by 1/sqrt(hd))
 * become p = exp(s - mx') in place, mx' the new running max; l and acc (hd)
 * are rescaled to mx' and l gains sum p.  The caller then adds sum_j p_j v_j
 * to acc (ftk_flash_row_accum, or a matrix product for a block of rows).
 * n <= 0 leaves the row as it is.
 */
FTK_HD void ftk_flash_row_rescale(float *mx, float *l, float *acc, float *s, int n, int hd)
{
	if (n <= 0)
		return;
	float m = *mx;
	for (int j = 0; j < n; j++)
		m = s[j] > m ? s[j] : m;
	float c = expf(*mx - m);	/* 0 on the first update (mx = -inf, m finite) */
	float sum = *l * c;
	for (int i = 0; i < hd; i++)
		acc[i] *= c;
	for (int j = 0; j < n; j++) {
		s[j] = expf(s[j] - m);
		sum += s[j];
	}
	*mx = m;
	*l = sum;
}

/* The second half: acc (hd) += sum_j p[j] v_j, v the first value row, the next ldv floats on. */
FTK_HD void ftk_flash_row_accum(float *acc, const float *p, const float *v, size_t ldv, int n,
				int hd)
{
	for (int j = 0; j < n; j++) {
		const float *vr = v + (size_t)j * ldv;
		for (int i = 0; i < hd; i++)
			acc[i] += p[j] * vr[i];
	}
}

/*
 * Fold n keys into a row: s (n) their scores (overwritten with their
 * unnormalised probabilities), v the first key's value row (hd floats),
 * the next ldv floats on.  n <= 0 leaves the row as it is.
 */
FTK_HD void ftk_flash_row_update(float *mx, float *l, float *acc, float *s, const float *v,
				 size_t ldv, int n, int hd)
{
	ftk_flash_row_rescale(mx, l, acc, s, n, hd);
	ftk_flash_row_accum(acc, s, v, ldv, n, hd);
}

/* Finish a row: out (hd) = acc / l; returns the row's log-sum-exp mx + log l. */
FTK_HD float ftk_flash_row_finish(float *out, const float *acc, float mx, float l, int hd)
{
	float inv = 1.0f / l;
	for (int i = 0; i < hd; i++)
		out[i] = acc[i] * inv;
	return mx + logf(l);
}

/* Backward: the probability of a (scaled) score s in a row with log-sum-exp lse. */
FTK_HD float ftk_flash_p(float s, float lse)
{
	return expf(s - lse);
}

/* Backward: d(score) = p (dp - D), dp = dout . v, D = dout . out of the row. */
FTK_HD float ftk_flash_ds(float p, float dp, float D)
{
	return p * (dp - D);
}

/* ---------------------------------------------------------------- SwiGLU */

FTK_HD float ftk_silu(float x)
{
	return x / (1.0f + expf(-x));
}

/* out = silu(g) * u */
FTK_HD float ftk_swiglu(float g, float u)
{
	return ftk_silu(g) * u;
}

/* d/dg and d/du of silu(g) * u times dout. */
FTK_HD void ftk_swiglu_bwd(float g, float u, float dout, float *dg, float *du)
{
	float sig = 1.0f / (1.0f + expf(-g));
	*du = dout * g * sig;
	*dg = dout * u * sig * (1.0f + g * (1.0f - sig));
}

/* ---------------------------------------------------------------- cross-entropy */

/*
 * Cross-entropy in pieces, so that one thread (the CPU, start 0 stride 1)
 * or a block of threads (CUDA: thread t takes elements t, t + stride, ...,
 * and the block combines the partial maxima and sums) run the same
 * arithmetic:
 *
 *     mx  = max over the row              ftk_xent_part_max, then the max of the parts
 *     sum = sum of exp(x - mx), in double ftk_xent_part_sum, then the sum of the parts
 *     loss = mx + log(sum) - x[target]    ftk_xent_loss
 *     x = grad_scale * (exp(x - mx) / sum - onehot)
 *
 * part_sum with keep != 0 leaves exp(x - mx) in x for the gradient, which
 * ftk_xent_part_grad then scales by grad_scale / sum.
 */
FTK_HD float ftk_xent_part_max(const float *x, int V, int start, int stride)
{
	float mx = -INFINITY;
	for (int i = start; i < V; i += stride)
		mx = x[i] > mx ? x[i] : mx;
	return mx;
}

FTK_HD double ftk_xent_part_sum(float *x, int V, float mx, int start, int stride, int keep)
{
	double sum = 0.0;
	for (int i = start; i < V; i += stride) {
		float e = expf(x[i] - mx);
		if (keep)
			x[i] = e;
		sum += (double)e;
	}
	return sum;
}

FTK_HD float ftk_xent_loss(float mx, double sum, float xt)
{
	return mx + (float)log(sum) - xt;
}

/* x holds exp(x - mx) (part_sum with keep): scale it into the gradient. */
FTK_HD void ftk_xent_part_grad(float *x, int V, int target, double sum, float grad_scale,
			       int start, int stride)
{
	float k = grad_scale / (float)sum;
	for (int i = start; i < V; i += stride) {
		x[i] *= k;
		if (i == target)
			x[i] -= grad_scale;
	}
}

/*
 * Cross-entropy of one row of logits (V) against target: returns
 * -log softmax(x)[target] (computed with the log-sum-exp in double for the
 * sum).  When grad_scale != 0, x becomes grad_scale * (softmax(x) - onehot).
 * One exp per element: the gradient pass reuses the exps part_sum kept.
 */
FTK_HD float ftk_xent_row(float *x, int V, int target, float grad_scale)
{
	float mx = ftk_xent_part_max(x, V, 0, 1);
	float xt = x[target];
	double sum = ftk_xent_part_sum(x, V, mx, 0, 1, grad_scale != 0.0f);
	if (grad_scale != 0.0f)
		ftk_xent_part_grad(x, V, target, sum, grad_scale, 0, 1);
	return ftk_xent_loss(mx, sum, xt);
}

/* ---------------------------------------------------------------- AdamW */

/*
 * One AdamW update of one parameter (decoupled weight decay, bias-corrected
 * moments, as torch.optim.AdamW): bc1 = 1 - beta1^t, bc2 = 1 - beta2^t.
 */
FTK_HD void ftk_adamw(float *p, float *m, float *v, float g, float lr, float beta1, float beta2,
		      float eps, float wd, float bc1, float bc2)
{
	*p -= lr * wd * *p;
	*m = beta1 * *m + (1.0f - beta1) * g;
	*v = beta2 * *v + (1.0f - beta2) * g * g;
	float mhat = *m / bc1, vhat = *v / bc2;
	*p -= lr * mhat / (sqrtf(vhat) + eps);
}

/* ---------------------------------------------------------------- dropout */

/* A 64-bit mix (splitmix64's finaliser): the dropout masks' hash. */
FTK_HD uint64_t ftk_mix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Keep element i of stream s with probability 1 - p (p in [0, 1)). */
FTK_HD int ftk_dropout_keep(uint64_t stream, uint64_t i, float p)
{
	uint64_t h = ftk_mix64(stream ^ ftk_mix64(i));
	double u = (double)(h >> 11) * (1.0 / 9007199254740992.0);
	return u >= (double)p;
}

#endif
