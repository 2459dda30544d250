/*
 * flash_kernels.h: the bodies of the CUDA flash-attention kernels, written
 * as FTK_HD "phase" functions so that the C compiler can run them too.
 *
 * A CUDA kernel here is a short driver (backend_cuda.cu): it calls one
 * phase, __syncthreads(), the next phase, and so on, with loops whose
 * bounds are the same for every thread of a block.  A block is
 * FTK_FLASH_ROWS warps; warp w owns one query row (forward, dQ) or one key
 * row (dK/dV), and its 32 lanes split that row's state by head dimension:
 * lane l holds dimensions l, l + 32, l + 64, ... (FTK_FLASH_LANE_DIMS
 * floats per vector, in registers).  A dot product is each lane's share
 * plus a butterfly of warp shuffles (ftk_flash_warp_sum), after which every
 * lane holds the same score, so the running max and sum are kept, equal,
 * in every lane.  No thread keeps a whole row: per-thread local memory is
 * nil (docs/gpu.md has ptxas's figures).
 *
 * Two kinds of phase:
 *   block phases  a function of (block, thread number, shared memory):
 *                 thread 0 writes the rows' document bounds, all threads
 *                 copy a tile of K and V (or Q and dout) rows into shared
 *                 memory.  tests/unit/test_flash.c runs them for every
 *                 thread number in turn, which is what the barrier that
 *                 follows guarantees, and once more in reverse order.
 *   warp phases   a function of (block, warp, its lanes' state): begin,
 *                 tile, end.  On the GPU each lane calls it with its own
 *                 state (FTK_FLASH_LANES = 1, the lane from threadIdx);
 *                 on the host one call runs all 32 lanes in a loop
 *                 (FTK_FLASH_LANES = 32), and the shuffle becomes the same
 *                 butterfly over an array of the 32 lanes' values
 *                 (ftk_flash_xor_add), step for step: lane l adds lane l ^ o's
 *                 value, for o = 16, 8, 4, 2, 1.  A warp phase's loops have
 *                 bounds that are the same for all 32 lanes (they depend on
 *                 the warp's row only), so every shuffle is full-mask with
 *                 all lanes taking part, as __shfl_xor_sync(0xffffffff)
 *                 requires.
 * The host emulation runs the same phase functions the kernels run; only
 * the shuffle's one line and the lane number differ between the two.
 *
 * Three kernels, no atomics:
 *
 *   forward   a block takes FTK_FLASH_ROWS query rows of one (b, head);
 *             warp w owns row r0 + w.  The block walks the keys its rows
 *             need (from the first row's document start to the last row) in
 *             tiles of d->tile keys: all threads copy the K and V rows of a
 *             tile into shared memory, then each warp takes the tile's keys
 *             its row may see one by one: score = q . k (lane shares, warp
 *             sum), then the online softmax folds it into the running max
 *             mx, sum l and output acc (one expf per key: when the score
 *             raises the max, the old state is rescaled by exp(mx - score)
 *             and the key's weight is 1; otherwise its weight is
 *             exp(score - mx)).  It writes out = acc / l and lse = mx + log l.
 *   dQ pass   the same blocks and tiles; each warp recomputes p = exp(s -
 *             lse) per key, ds = p (dout . v - D), and sums ds k into dq
 *             (two warp sums per key).  It also writes D = dout . out per
 *             row, which the next pass reads.
 *   dK/dV     a block takes FTK_FLASH_ROWS key rows of one (b, kv head);
 *             warp w owns key s0 + w.  For each query head of the group it
 *             walks the queries that see its keys (s0 to the end of the
 *             last key's document) in tiles of Q, dout, lse and D rows, and
 *             sums p dout into dv and ds q into dk.  Each dk/dv row has one
 *             writer.
 *
 * Shared memory per block: two tiles of d->tile rows of hd floats (K and
 * V, or Q and dout), d->tile lse and D values, and FTK_FLASH_ROWS ints (the
 * rows' document starts or ends): at most 32.6 KiB, under the 48 KiB a
 * launch gets without opting in.  A lane reads dimension l + 32 j of a
 * shared row: consecutive lanes, consecutive words, no bank conflicts.
 */
#ifndef FTK_MODEL_FLASH_KERNELS_H
#define FTK_MODEL_FLASH_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include "model/ops.h"

#define FTK_FLASH_ROWS 8	/* warps per block: query rows, or key rows */
#define FTK_FLASH_WARP 32	/* lanes per warp */
#define FTK_FLASH_THREADS (FTK_FLASH_ROWS * FTK_FLASH_WARP)
#define FTK_FLASH_TILE_MAX 64	/* rows per shared-memory tile, at most */
#define FTK_FLASH_HD_MAX 256	/* = FTK_FLASH_MAX_HD of backend.h */
#define FTK_FLASH_LANE_DIMS (FTK_FLASH_HD_MAX / FTK_FLASH_WARP)	/* floats per lane per vector */

/*
 * Lanes one call of a warp phase runs: its own on the GPU, all 32 on the
 * host.  FTK_FLASH_UNROLL asks nvcc to unroll the constant-count loops over
 * a lane's dimensions, which keeps the lane's vectors in registers.
 */
#ifdef __CUDA_ARCH__
#define FTK_FLASH_LANES 1
#define FTK_FLASH_UNROLL _Pragma("unroll")
#else
#define FTK_FLASH_LANES FTK_FLASH_WARP
#define FTK_FLASH_UNROLL
#endif

/* The lane number of entry i of a warp phase's lane arrays. */
FTK_HD int ftk_flash_lane(int i)
{
#ifdef __CUDA_ARCH__
	(void)i;
	return (int)(threadIdx.x % FTK_FLASH_WARP);
#else
	return i;
#endif
}

/*
 * One butterfly step: every lane l adds lane (l ^ o)'s value to its own.
 * x holds the FTK_FLASH_LANES values of the calling lanes; all 32 lanes of
 * the warp must call it together (full mask).
 */
FTK_HD void ftk_flash_xor_add(float *x, int o)
{
#ifdef __CUDA_ARCH__
	x[0] += __shfl_xor_sync(0xffffffffu, x[0], o);
#else
	float y[FTK_FLASH_WARP];
	for (int l = 0; l < FTK_FLASH_WARP; l++)
		y[l] = x[l] + x[l ^ o];
	for (int l = 0; l < FTK_FLASH_WARP; l++)
		x[l] = y[l];
#endif
}

/*
 * The sum of the 32 lanes' x (overwritten): every lane ends with the same
 * bits (at each step lanes l and l ^ o add the same two numbers, and a
 * float sum does not depend on the order of its two terms).  Returns the
 * first entry's.
 */
FTK_HD float ftk_flash_warp_sum(float *x)
{
	for (int o = FTK_FLASH_WARP / 2; o > 0; o /= 2)
		ftk_flash_xor_add(x, o);
	return x[0];
}

/* A lane's share of a . b over hd: its dimensions l + 32 j of a (its registers) and of row b. */
FTK_HD float ftk_flash_lane_dot(const float *a, const float *b, int lane, int hd)
{
	float d = 0.0f;
	FTK_FLASH_UNROLL
	for (int j = 0; j < FTK_FLASH_LANE_DIMS; j++) {
		int c = lane + FTK_FLASH_WARP * j;
		if (c < hd)
			d += a[j] * b[c];
	}
	return d;
}

/* A lane's dimensions of row src into dst (zeros past hd). */
FTK_HD void ftk_flash_lane_load(float *dst, const float *src, int lane, int hd)
{
	FTK_FLASH_UNROLL
	for (int j = 0; j < FTK_FLASH_LANE_DIMS; j++) {
		int c = lane + FTK_FLASH_WARP * j;
		dst[j] = c < hd ? src[c] : 0.0f;
	}
}

/* A lane's dimensions of scale * src into row dst. */
FTK_HD void ftk_flash_lane_store(float *dst, const float *src, float scale, int lane, int hd)
{
	FTK_FLASH_UNROLL
	for (int j = 0; j < FTK_FLASH_LANE_DIMS; j++) {
		int c = lane + FTK_FLASH_WARP * j;
		if (c < hd)
			dst[c] = scale * src[j];
	}
}

/* acc = acc * c + p * row (a lane's dimensions). */
FTK_HD void ftk_flash_lane_axpby(float *acc, float c, float p, const float *row, int lane, int hd)
{
	FTK_FLASH_UNROLL
	for (int j = 0; j < FTK_FLASH_LANE_DIMS; j++) {
		int i = lane + FTK_FLASH_WARP * j;
		if (i < hd)
			acc[j] = acc[j] * c + p * row[i];
	}
}

struct ftk_flash_dims {
	int B, T, NH, NKV, hd;
	int tile;	/* rows of K/V (query passes) or Q/dout (key pass) per tile */
	float scale;	/* 1 / sqrt(hd) */
};

/* The launch geometry of shape (B, T, NH, NKV, hd): tile rows keep 2 tiles within 8192 floats. */
FTK_HD struct ftk_flash_dims ftk_flash_dims_make(int B, int T, int NH, int NKV, int hd)
{
	struct ftk_flash_dims d;
	d.B = B, d.T = T, d.NH = NH, d.NKV = NKV, d.hd = hd;
	d.tile = 4096 / hd < FTK_FLASH_TILE_MAX ? 4096 / hd : FTK_FLASH_TILE_MAX;
	d.scale = 1.0f / sqrtf((float)hd);
	return d;
}

/* Shared floats one block uses (the launch's dynamic shared memory / 4). */
FTK_HD size_t ftk_flash_smem_floats(const struct ftk_flash_dims *d)
{
	return (size_t)2 * d->tile * d->hd + (size_t)2 * d->tile + FTK_FLASH_ROWS;
}

/* Blocks of the query passes (B * NH * ceil(T / ROWS)) and of the key pass (B * NKV * ...). */
FTK_HD size_t ftk_flash_q_blocks(const struct ftk_flash_dims *d)
{
	return (size_t)d->B * d->NH * ((d->T + FTK_FLASH_ROWS - 1) / FTK_FLASH_ROWS);
}

FTK_HD size_t ftk_flash_kv_blocks(const struct ftk_flash_dims *d)
{
	return (size_t)d->B * d->NKV * ((d->T + FTK_FLASH_ROWS - 1) / FTK_FLASH_ROWS);
}

/* Shared-memory regions: two row tiles A (K or Q) and B (V or dout), two value rows, ROWS ints. */
#define FTK_FLASH_SA(d, sm) (sm)
#define FTK_FLASH_SB(d, sm) ((sm) + (size_t)(d)->tile * (d)->hd)
#define FTK_FLASH_SLSE(d, sm) ((sm) + (size_t)2 * (d)->tile * (d)->hd)
#define FTK_FLASH_SD(d, sm) (FTK_FLASH_SLSE(d, sm) + (d)->tile)
#define FTK_FLASH_SIDX(d, sm) ((int *)(FTK_FLASH_SD(d, sm) + (d)->tile))

/* Query-pass block blk: batch *b, head *h, first row *r0. */
FTK_HD void ftk_flash_qblock(const struct ftk_flash_dims *d, int blk, int *b, int *h, int *r0)
{
	int nqb = (d->T + FTK_FLASH_ROWS - 1) / FTK_FLASH_ROWS;
	int bh = blk / nqb;
	*r0 = (blk % nqb) * FTK_FLASH_ROWS;
	*b = bh / d->NH;
	*h = bh % d->NH;
}

/* Key-pass block blk: batch *b, kv head *kh, first key *s0. */
FTK_HD void ftk_flash_kvblock(const struct ftk_flash_dims *d, int blk, int *b, int *kh, int *s0)
{
	int nkb = (d->T + FTK_FLASH_ROWS - 1) / FTK_FLASH_ROWS;
	int bk = blk / nkb;
	*s0 = (blk % nkb) * FTK_FLASH_ROWS;
	*b = bk / d->NKV;
	*kh = bk % d->NKV;
}

/* Block phase, thread 0 of a query-pass block: the document start of each of its rows into SIDX. */
FTK_HD void ftk_flash_q_starts(const struct ftk_flash_dims *d, int blk, float *sm,
			       const int32_t *doc)
{
	int b, h, r0;
	ftk_flash_qblock(d, blk, &b, &h, &r0);
	int *st = FTK_FLASH_SIDX(d, sm);
	const int32_t *db = doc + (size_t)b * d->T;
	for (int i = 0; i < FTK_FLASH_ROWS && r0 + i < d->T; i++) {
		int t = r0 + i;
		st[i] = i == 0 ? ftk_doc_start(db, t) : db[t] == db[t - 1] ? st[i - 1] : t;
	}
}

/* After the first barrier: the keys a query-pass block needs, [*kb, *ke). */
FTK_HD void ftk_flash_q_keys(const struct ftk_flash_dims *d, int blk, const float *sm, int *kb,
			     int *ke)
{
	int b, h, r0;
	ftk_flash_qblock(d, blk, &b, &h, &r0);
	*kb = FTK_FLASH_SIDX(d, (float *)sm)[0];
	*ke = r0 + FTK_FLASH_ROWS < d->T ? r0 + FTK_FLASH_ROWS : d->T;
}

/* Block phase, all threads: key rows [k0, min(k0 + tile, ke)) of the block's kv head into SA (K), SB (V). */
FTK_HD void ftk_flash_load_kv(const struct ftk_flash_dims *d, int blk, int tid, int nthreads,
			      int k0, int ke, float *sm, const float *k, const float *v)
{
	int b, h, r0;
	ftk_flash_qblock(d, blk, &b, &h, &r0);
	int kh = h / (d->NH / d->NKV), hd = d->hd;
	int n = ke - k0 < d->tile ? ke - k0 : d->tile;
	float *sk = FTK_FLASH_SA(d, sm), *sv = FTK_FLASH_SB(d, sm);
	for (int i = tid; i < n * hd; i += nthreads) {
		int j = i / hd, c = i % hd;
		size_t src = (((size_t)b * d->T + k0 + j) * d->NKV + kh) * hd + c;
		sk[i] = k[src];
		sv[i] = v[src];
	}
}

/* The query row of warp w of query-pass block blk (-1 past T); its batch row and head in *b, *h. */
FTK_HD int ftk_flash_q_row(const struct ftk_flash_dims *d, int blk, int w, int *b, int *h)
{
	int r0;
	ftk_flash_qblock(d, blk, b, h, &r0);
	return r0 + w < d->T ? r0 + w : -1;
}

/*
 * The keys of the tile at k0 (ending at ke) that query row t of warp w
 * sees: from its document's start (the starts thread 0 put in shared
 * memory) to t itself, as [*lo, *hi) (empty when *hi <= *lo, and for t < 0).
 */
FTK_HD void ftk_flash_visible(const struct ftk_flash_dims *d, int w, int k0, int ke,
			      const float *sm, int t, int *lo, int *hi)
{
	if (t < 0) {
		*lo = *hi = 0;
		return;
	}
	int k1 = k0 + d->tile < ke ? k0 + d->tile : ke;
	int start = FTK_FLASH_SIDX(d, (float *)sm)[w];
	*lo = start > k0 ? start : k0;
	*hi = t + 1 < k1 ? t + 1 : k1;
}

/* ------------------------------------------------------------ forward */

/* One lane's share of a forward row: mx and l are the same in all 32 lanes. */
struct ftk_flash_fwd_lane {
	int t;		/* the warp's query row, -1 past T */
	float mx, l;	/* running max and sum */
	float q[FTK_FLASH_LANE_DIMS], acc[FTK_FLASH_LANE_DIMS];	/* dimensions lane + 32 j */
};

/* Warp phase 1 (before the first barrier): load the row's query, start the row. */
FTK_HD void ftk_flash_fwd_begin(const struct ftk_flash_dims *d, int blk, int w,
				struct ftk_flash_fwd_lane *ln, const float *q)
{
	int b, h, t = ftk_flash_q_row(d, blk, w, &b, &h);
	for (int i = 0; i < FTK_FLASH_LANES; i++) {
		int lane = ftk_flash_lane(i);
		ln[i].t = t;
		ln[i].mx = -INFINITY;
		ln[i].l = 0.0f;
		ftk_flash_lane_load(ln[i].acc, q, lane, 0);	/* zeros */
		if (t >= 0)
			ftk_flash_lane_load(ln[i].q, q + (((size_t)b * d->T + t) * d->NH + h) * d->hd,
					    lane, d->hd);
	}
}

/*
 * Warp phase 2 (per tile, after the load and a barrier): fold the tile's
 * visible keys into the row, one key at a time (the online softmax with one
 * expf per key; see the top of the file).
 */
FTK_HD void ftk_flash_fwd_tile(const struct ftk_flash_dims *d, int w, int k0, int ke,
			       const float *sm, struct ftk_flash_fwd_lane *ln)
{
	int hd = d->hd, lo, hi;
	ftk_flash_visible(d, w, k0, ke, sm, ln[0].t, &lo, &hi);
	const float *sk = FTK_FLASH_SA(d, sm), *sv = FTK_FLASH_SB(d, sm);
	for (int s = lo; s < hi; s++) {
		const float *kr = sk + (size_t)(s - k0) * hd, *vr = sv + (size_t)(s - k0) * hd;
		float part[FTK_FLASH_LANES];
		for (int i = 0; i < FTK_FLASH_LANES; i++)
			part[i] = ftk_flash_lane_dot(ln[i].q, kr, ftk_flash_lane(i), hd);
		float sc = d->scale * ftk_flash_warp_sum(part);
		for (int i = 0; i < FTK_FLASH_LANES; i++) {
			struct ftk_flash_fwd_lane *x = &ln[i];
			if (sc > x->mx) {	/* a new max: rescale the old state; this key weighs 1 */
				float c = expf(x->mx - sc);	/* 0 on the first key (mx = -inf) */
				x->l = x->l * c + 1.0f;
				ftk_flash_lane_axpby(x->acc, c, 1.0f, vr, ftk_flash_lane(i), hd);
				x->mx = sc;
			} else {
				float p = expf(sc - x->mx);
				x->l += p;
				ftk_flash_lane_axpby(x->acc, 1.0f, p, vr, ftk_flash_lane(i), hd);
			}
		}
	}
}

/* Warp phase 3: write the row's output; lane 0 writes its log-sum-exp. */
FTK_HD void ftk_flash_fwd_end(const struct ftk_flash_dims *d, int blk, int w,
			      const struct ftk_flash_fwd_lane *ln, float *out, float *lse)
{
	int b, h, t = ftk_flash_q_row(d, blk, w, &b, &h);
	if (t < 0)
		return;
	for (int i = 0; i < FTK_FLASH_LANES; i++) {
		int lane = ftk_flash_lane(i);
		ftk_flash_lane_store(out + (((size_t)b * d->T + t) * d->NH + h) * d->hd, ln[i].acc,
				     1.0f / ln[i].l, lane, d->hd);
		if (lane == 0)
			lse[((size_t)b * d->NH + h) * d->T + t] = ln[i].mx + logf(ln[i].l);
	}
}

/* ------------------------------------------------------------ backward: dQ */

struct ftk_flash_dq_lane {
	int t;		/* the warp's query row, -1 past T */
	float lse, D;	/* the row's, the same in all lanes */
	float q[FTK_FLASH_LANE_DIMS], dout[FTK_FLASH_LANE_DIMS], dq[FTK_FLASH_LANE_DIMS];
};

/*
 * Warp phase 1: load q and dout, read lse, form D = dout . out (a warp sum)
 * and save it in Dbuf (B, NH, T) (lane 0).
 */
FTK_HD void ftk_flash_dq_begin(const struct ftk_flash_dims *d, int blk, int w,
			       struct ftk_flash_dq_lane *ln, const float *q, const float *dout,
			       const float *out, const float *lse, float *Dbuf)
{
	int b, h, t = ftk_flash_q_row(d, blk, w, &b, &h);
	size_t row = (((size_t)b * d->T + (t < 0 ? 0 : t)) * d->NH + h) * d->hd;
	size_t r = ((size_t)b * d->NH + h) * d->T + (t < 0 ? 0 : t);
	float part[FTK_FLASH_LANES];
	for (int i = 0; i < FTK_FLASH_LANES; i++) {
		int lane = ftk_flash_lane(i);
		ln[i].t = t;
		ftk_flash_lane_load(ln[i].dq, q, lane, 0);	/* zeros */
		if (t < 0)
			continue;
		ftk_flash_lane_load(ln[i].q, q + row, lane, d->hd);
		ftk_flash_lane_load(ln[i].dout, dout + row, lane, d->hd);
		ln[i].lse = lse[r];
		part[i] = ftk_flash_lane_dot(ln[i].dout, out + row, lane, d->hd);
	}
	if (t < 0)
		return;		/* the whole warp */
	float D = ftk_flash_warp_sum(part);
	for (int i = 0; i < FTK_FLASH_LANES; i++) {
		ln[i].D = D;
		if (ftk_flash_lane(i) == 0)
			Dbuf[r] = D;
	}
}

/* Warp phase 2 (per tile): dq += ds k over the tile's visible keys. */
FTK_HD void ftk_flash_dq_tile(const struct ftk_flash_dims *d, int w, int k0, int ke,
			      const float *sm, struct ftk_flash_dq_lane *ln)
{
	int hd = d->hd, lo, hi;
	ftk_flash_visible(d, w, k0, ke, sm, ln[0].t, &lo, &hi);
	const float *sk = FTK_FLASH_SA(d, sm), *sv = FTK_FLASH_SB(d, sm);
	for (int s = lo; s < hi; s++) {
		const float *kr = sk + (size_t)(s - k0) * hd, *vr = sv + (size_t)(s - k0) * hd;
		float qk[FTK_FLASH_LANES], dp[FTK_FLASH_LANES];
		for (int i = 0; i < FTK_FLASH_LANES; i++) {
			qk[i] = ftk_flash_lane_dot(ln[i].q, kr, ftk_flash_lane(i), hd);
			dp[i] = ftk_flash_lane_dot(ln[i].dout, vr, ftk_flash_lane(i), hd);
		}
		float sc = d->scale * ftk_flash_warp_sum(qk), dpv = ftk_flash_warp_sum(dp);
		for (int i = 0; i < FTK_FLASH_LANES; i++) {
			float ds = ftk_flash_ds(ftk_flash_p(sc, ln[i].lse), dpv, ln[i].D);
			ftk_flash_lane_axpby(ln[i].dq, 1.0f, ds, kr, ftk_flash_lane(i), hd);
		}
	}
}

/* Warp phase 3: dq row = scale * the sum. */
FTK_HD void ftk_flash_dq_end(const struct ftk_flash_dims *d, int blk, int w,
			     const struct ftk_flash_dq_lane *ln, float *dq)
{
	int b, h, t = ftk_flash_q_row(d, blk, w, &b, &h);
	if (t < 0)
		return;
	for (int i = 0; i < FTK_FLASH_LANES; i++)
		ftk_flash_lane_store(dq + (((size_t)b * d->T + t) * d->NH + h) * d->hd, ln[i].dq,
				     d->scale, ftk_flash_lane(i), d->hd);
}

/* ------------------------------------------------------------ backward: dK, dV */

struct ftk_flash_kv_lane {
	int s;		/* the warp's key row, -1 past T */
	float k[FTK_FLASH_LANE_DIMS], v[FTK_FLASH_LANE_DIMS], dk[FTK_FLASH_LANE_DIMS],
		dv[FTK_FLASH_LANE_DIMS];
};

/* Block phase, thread 0 of a key-pass block: each key's document end into SIDX. */
FTK_HD void ftk_flash_kv_ends(const struct ftk_flash_dims *d, int blk, float *sm,
			      const int32_t *doc)
{
	int b, kh, s0;
	ftk_flash_kvblock(d, blk, &b, &kh, &s0);
	int *en = FTK_FLASH_SIDX(d, sm);
	const int32_t *db = doc + (size_t)b * d->T;
	int last = (d->T - s0 < FTK_FLASH_ROWS ? d->T - s0 : FTK_FLASH_ROWS) - 1;
	en[last] = ftk_doc_end(db, d->T, s0 + last);
	for (int i = last - 1; i >= 0; i--)
		en[i] = db[s0 + i] == db[s0 + i + 1] ? en[i + 1] : s0 + i + 1;
}

/* Warp phase 1: load the key's k and v rows. */
FTK_HD void ftk_flash_kv_begin(const struct ftk_flash_dims *d, int blk, int w,
			       struct ftk_flash_kv_lane *ln, const float *k, const float *v)
{
	int b, kh, s0;
	ftk_flash_kvblock(d, blk, &b, &kh, &s0);
	int s = s0 + w < d->T ? s0 + w : -1;
	size_t row = (((size_t)b * d->T + (s < 0 ? 0 : s)) * d->NKV + kh) * d->hd;
	for (int i = 0; i < FTK_FLASH_LANES; i++) {
		int lane = ftk_flash_lane(i);
		ln[i].s = s;
		ftk_flash_lane_load(ln[i].dk, k, lane, 0);	/* zeros */
		ftk_flash_lane_load(ln[i].dv, k, lane, 0);
		if (s >= 0) {
			ftk_flash_lane_load(ln[i].k, k + row, lane, d->hd);
			ftk_flash_lane_load(ln[i].v, v + row, lane, d->hd);
		}
	}
}

/* After the first barrier: the queries that see any of the block's keys, [*qb, *qe). */
FTK_HD void ftk_flash_kv_queries(const struct ftk_flash_dims *d, int blk, const float *sm,
				 int *qb, int *qe)
{
	int b, kh, s0;
	ftk_flash_kvblock(d, blk, &b, &kh, &s0);
	int last = (d->T - s0 < FTK_FLASH_ROWS ? d->T - s0 : FTK_FLASH_ROWS) - 1;
	*qb = s0;
	*qe = FTK_FLASH_SIDX(d, (float *)sm)[last];
}

/* Block phase, all threads: query rows [q0, min(q0 + tile, qe)) of head h: SA (q), SB (dout), SLSE, SD. */
FTK_HD void ftk_flash_load_qo(const struct ftk_flash_dims *d, int blk, int tid, int nthreads,
			      int h, int q0, int qe, float *sm, const float *q, const float *dout,
			      const float *lse, const float *Dbuf)
{
	int b, kh, s0;
	ftk_flash_kvblock(d, blk, &b, &kh, &s0);
	int hd = d->hd, n = qe - q0 < d->tile ? qe - q0 : d->tile;
	float *sq = FTK_FLASH_SA(d, sm), *so = FTK_FLASH_SB(d, sm);
	for (int i = tid; i < n * hd; i += nthreads) {
		int j = i / hd, c = i % hd;
		size_t src = (((size_t)b * d->T + q0 + j) * d->NH + h) * hd + c;
		sq[i] = q[src];
		so[i] = dout[src];
	}
	for (int j = tid; j < n; j += nthreads) {
		size_t r = ((size_t)b * d->NH + h) * d->T + q0 + j;
		FTK_FLASH_SLSE(d, sm)[j] = lse[r];
		FTK_FLASH_SD(d, sm)[j] = Dbuf[r];
	}
}

/* Warp phase 2 (per tile): dv += p dout, dk += ds q over the tile's queries that see this key. */
FTK_HD void ftk_flash_kv_tile(const struct ftk_flash_dims *d, int w, int q0, int qe,
			      const float *sm, struct ftk_flash_kv_lane *ln)
{
	int s = ln[0].s;
	if (s < 0)
		return;		/* the whole warp */
	int hd = d->hd, q1 = q0 + d->tile < qe ? q0 + d->tile : qe;
	int end = FTK_FLASH_SIDX(d, (float *)sm)[w];
	int lo = s > q0 ? s : q0, hi = end < q1 ? end : q1;
	const float *sq = FTK_FLASH_SA(d, sm), *so = FTK_FLASH_SB(d, sm);
	for (int t = lo; t < hi; t++) {
		const float *qr = sq + (size_t)(t - q0) * hd, *orow = so + (size_t)(t - q0) * hd;
		float qk[FTK_FLASH_LANES], dp[FTK_FLASH_LANES];
		for (int i = 0; i < FTK_FLASH_LANES; i++) {
			qk[i] = ftk_flash_lane_dot(ln[i].k, qr, ftk_flash_lane(i), hd);
			dp[i] = ftk_flash_lane_dot(ln[i].v, orow, ftk_flash_lane(i), hd);
		}
		float sc = d->scale * ftk_flash_warp_sum(qk), dpv = ftk_flash_warp_sum(dp);
		float p = ftk_flash_p(sc, FTK_FLASH_SLSE(d, sm)[t - q0]);
		float ds = ftk_flash_ds(p, dpv, FTK_FLASH_SD(d, sm)[t - q0]);
		for (int i = 0; i < FTK_FLASH_LANES; i++) {
			ftk_flash_lane_axpby(ln[i].dv, 1.0f, p, orow, ftk_flash_lane(i), hd);
			ftk_flash_lane_axpby(ln[i].dk, 1.0f, ds, qr, ftk_flash_lane(i), hd);
		}
	}
}

/* Warp phase 3: write dk (times scale) and dv rows (overwriting). */
FTK_HD void ftk_flash_kv_end(const struct ftk_flash_dims *d, int blk, int w,
			     const struct ftk_flash_kv_lane *ln, float *dk, float *dv)
{
	int b, kh, s0;
	ftk_flash_kvblock(d, blk, &b, &kh, &s0);
	if (s0 + w >= d->T)
		return;
	size_t row = (((size_t)b * d->T + s0 + w) * d->NKV + kh) * d->hd;
	for (int i = 0; i < FTK_FLASH_LANES; i++) {
		ftk_flash_lane_store(dk + row, ln[i].dk, d->scale, ftk_flash_lane(i), d->hd);
		ftk_flash_lane_store(dv + row, ln[i].dv, 1.0f, ftk_flash_lane(i), d->hd);
	}
}

#endif
