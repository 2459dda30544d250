/*
 * flash_kernels.h: the bodies of the CUDA flash-attention kernels, written
 * as FTK_HD "phase" functions so that the C compiler can run them too.
 *
 * A CUDA kernel here is a short driver (backend_cuda.cu): it calls one
 * phase, __syncthreads(), the next phase, and so on, with loops whose
 * bounds are the same for every thread of a block.  Each phase is a
 * function of (block number, thread number, the block's shared memory,
 * the thread's own state), so tests/unit/test_flash.c emulates a launch on
 * the host: for every block it runs a phase for every thread number in
 * turn, which is what a barrier guarantees, under AddressSanitizer (the
 * shared memory is a malloc of exactly the size the launch asks for), and
 * once more with the threads in reverse order, which must give identical
 * bits (a phase in which one thread reads what another writes would not).
 * That checks the block/thread/tile index arithmetic here, where no GPU
 * exists; the numbers on a GPU are checked by `ftk-train --selftest`.
 *
 * Three kernels, FTK_FLASH_ROWS threads per block, no atomics:
 *
 *   forward   a block takes FTK_FLASH_ROWS query rows of one (b, head);
 *             thread i owns row r0 + i.  The block walks the keys its rows
 *             need (from the first row's document start to the last row) in
 *             tiles of d->tile keys: all threads copy the K and V rows of a
 *             tile into shared memory, then each thread scores its query
 *             against the tile's keys it may see and folds them into its
 *             running max, sum and output (ops.h's ftk_flash_row_update).
 *             It writes out and the row's log-sum-exp.
 *   dQ pass   the same blocks and tiles; each thread recomputes p = exp(s -
 *             lse) for its row, ds = p (dout . v - D) and sums ds k into dq.
 *             It also writes D = dout . out per row, which the next pass
 *             reads.
 *   dK/dV     a block takes FTK_FLASH_ROWS key rows of one (b, kv head);
 *             thread i owns key s0 + i.  For each query head of the group
 *             it walks the queries that see its keys (s0 to the end of the
 *             last key's document) in tiles of Q, dout, lse and D rows, and
 *             sums p dout into dv and ds q into dk.  Each dk/dv row has one
 *             writer.
 *
 * Shared memory per block: two tiles of d->tile rows of hd floats (K and
 * V, or Q and dout), d->tile lse and D values, and FTK_FLASH_ROWS ints (the
 * rows' document starts or ends): at most 33.5 KiB, under the 48 KiB a
 * launch gets without opting in.  Thread state (a query, key or value row
 * and accumulators of FTK_FLASH_HD_MAX floats) lives in registers and
 * local memory.
 */
#ifndef FTK_MODEL_FLASH_KERNELS_H
#define FTK_MODEL_FLASH_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include "model/ops.h"

#define FTK_FLASH_ROWS 64	/* threads per block: query rows, or key rows */
#define FTK_FLASH_TILE_MAX 64	/* rows per shared-memory tile, at most */
#define FTK_FLASH_HD_MAX 256	/* = FTK_FLASH_MAX_HD of backend.h */

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

/* Thread 0 of a query-pass block: the document start of each of its rows into SIDX. */
FTK_HD void ftk_flash_q_starts(const struct ftk_flash_dims *d, int b, int r0, float *sm,
			       const int32_t *doc)
{
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

/* All threads: copy key rows [k0, min(k0 + tile, ke)) of the block's kv head into SA (K), SB (V). */
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

/*
 * The start of a query block's phase 1: block blk's batch row and head in
 * *b, *h; thread 0 writes the rows' document starts into sm; returns the
 * query row of thread tid, or -1 for a thread past T.
 */
FTK_HD int ftk_flash_row_begin(const struct ftk_flash_dims *d, int blk, int tid, float *sm,
			       const int32_t *doc, int *b, int *h)
{
	int r0;
	ftk_flash_qblock(d, blk, b, h, &r0);
	if (tid == 0)
		ftk_flash_q_starts(d, *b, r0, sm, doc);
	return r0 + tid < d->T ? r0 + tid : -1;
}

/* ------------------------------------------------------------ forward */

struct ftk_flash_fwd_thread {
	int t;		/* query row, -1 for a thread past T */
	float mx, l;	/* running max and sum */
	float q[FTK_FLASH_HD_MAX], acc[FTK_FLASH_HD_MAX];
};

/* Phase 1: thread 0 writes the rows' starts; each thread loads its query and starts its row. */
FTK_HD void ftk_flash_fwd_begin(const struct ftk_flash_dims *d, int blk, int tid, float *sm,
				struct ftk_flash_fwd_thread *st, const float *q, const int32_t *doc)
{
	int b, h;
	st->t = ftk_flash_row_begin(d, blk, tid, sm, doc, &b, &h);
	if (st->t < 0)
		return;
	const float *Q = q + (((size_t)b * d->T + st->t) * d->NH + h) * d->hd;
	for (int i = 0; i < d->hd; i++)
		st->q[i] = Q[i];
	ftk_flash_row_init(&st->mx, &st->l, st->acc, d->hd);
}

/*
 * The keys of the tile at k0 (ending at ke) that query row t of thread tid
 * sees: from its document's start (the starts phase 1 put in shared
 * memory) to t itself, as [*lo, *hi) (empty when *hi <= *lo).
 */
FTK_HD void ftk_flash_visible(const struct ftk_flash_dims *d, int tid, int k0, int ke,
			      const float *sm, int t, int *lo, int *hi)
{
	int k1 = k0 + d->tile < ke ? k0 + d->tile : ke;
	int start = FTK_FLASH_SIDX(d, (float *)sm)[tid];
	*lo = start > k0 ? start : k0;
	*hi = t + 1 < k1 ? t + 1 : k1;
}

/* Phase 2 (per tile, after the load and a barrier): fold the tile's visible keys into the row. */
FTK_HD void ftk_flash_fwd_update(const struct ftk_flash_dims *d, int tid, int k0, int ke,
				 const float *sm, struct ftk_flash_fwd_thread *st)
{
	if (st->t < 0)
		return;
	int hd = d->hd, lo, hi;
	ftk_flash_visible(d, tid, k0, ke, sm, st->t, &lo, &hi);
	if (hi <= lo)
		return;
	const float *sk = FTK_FLASH_SA(d, sm), *sv = FTK_FLASH_SB(d, sm);
	float sc[FTK_FLASH_TILE_MAX];
	for (int s = lo; s < hi; s++)
		sc[s - lo] = d->scale * ftk_dot(st->q, sk + (size_t)(s - k0) * hd, hd);
	ftk_flash_row_update(&st->mx, &st->l, st->acc, sc, sv + (size_t)(lo - k0) * hd, (size_t)hd,
			     hi - lo, hd);
}

/* Phase 3: write the row's output and log-sum-exp. */
FTK_HD void ftk_flash_fwd_end(const struct ftk_flash_dims *d, int blk,
			      const struct ftk_flash_fwd_thread *st, float *out, float *lse)
{
	if (st->t < 0)
		return;
	int b, h, r0;
	ftk_flash_qblock(d, blk, &b, &h, &r0);
	float *O = out + (((size_t)b * d->T + st->t) * d->NH + h) * d->hd;
	lse[((size_t)b * d->NH + h) * d->T + st->t] =
		ftk_flash_row_finish(O, st->acc, st->mx, st->l, d->hd);
}

/* ------------------------------------------------------------ backward: dQ */

struct ftk_flash_dq_thread {
	int t;		/* query row, -1 past T */
	float lse, D;
	float q[FTK_FLASH_HD_MAX], dout[FTK_FLASH_HD_MAX], dq[FTK_FLASH_HD_MAX];
};

/* Phase 1: starts (thread 0); each thread loads q, dout, lse, forms D = dout . out and saves it in Dbuf (B, NH, T). */
FTK_HD void ftk_flash_dq_begin(const struct ftk_flash_dims *d, int blk, int tid, float *sm,
			       struct ftk_flash_dq_thread *st, const float *q, const float *dout,
			       const float *out, const float *lse, float *Dbuf, const int32_t *doc)
{
	int b, h;
	st->t = ftk_flash_row_begin(d, blk, tid, sm, doc, &b, &h);
	if (st->t < 0)
		return;
	size_t row = (((size_t)b * d->T + st->t) * d->NH + h) * d->hd;
	size_t r = ((size_t)b * d->NH + h) * d->T + st->t;
	for (int i = 0; i < d->hd; i++) {
		st->q[i] = q[row + i];
		st->dout[i] = dout[row + i];
		st->dq[i] = 0.0f;
	}
	st->lse = lse[r];
	st->D = ftk_dot(st->dout, out + row, d->hd);
	Dbuf[r] = st->D;
}

/* Phase 2 (per tile): dq += ds k over the tile's visible keys. */
FTK_HD void ftk_flash_dq_update(const struct ftk_flash_dims *d, int tid, int k0, int ke,
				const float *sm, struct ftk_flash_dq_thread *st)
{
	if (st->t < 0)
		return;
	int hd = d->hd, lo, hi;
	ftk_flash_visible(d, tid, k0, ke, sm, st->t, &lo, &hi);
	const float *sk = FTK_FLASH_SA(d, sm), *sv = FTK_FLASH_SB(d, sm);
	for (int s = lo; s < hi; s++) {
		const float *kr = sk + (size_t)(s - k0) * hd, *vr = sv + (size_t)(s - k0) * hd;
		float p = ftk_flash_p(d->scale * ftk_dot(st->q, kr, hd), st->lse);
		float ds = ftk_flash_ds(p, ftk_dot(st->dout, vr, hd), st->D);
		for (int i = 0; i < hd; i++)
			st->dq[i] += ds * kr[i];
	}
}

/* Phase 3: dq row = scale * the sum. */
FTK_HD void ftk_flash_dq_end(const struct ftk_flash_dims *d, int blk,
			     const struct ftk_flash_dq_thread *st, float *dq)
{
	if (st->t < 0)
		return;
	int b, h, r0;
	ftk_flash_qblock(d, blk, &b, &h, &r0);
	float *o = dq + (((size_t)b * d->T + st->t) * d->NH + h) * d->hd;
	for (int i = 0; i < d->hd; i++)
		o[i] = d->scale * st->dq[i];
}

/* ------------------------------------------------------------ backward: dK, dV */

struct ftk_flash_kv_thread {
	int s;		/* key row, -1 past T */
	float k[FTK_FLASH_HD_MAX], v[FTK_FLASH_HD_MAX], dk[FTK_FLASH_HD_MAX],
		dv[FTK_FLASH_HD_MAX];
};

/* Phase 1: thread 0 writes each key's document end into SIDX; each thread loads its k, v row. */
FTK_HD void ftk_flash_kv_begin(const struct ftk_flash_dims *d, int blk, int tid, float *sm,
			       struct ftk_flash_kv_thread *st, const float *k, const float *v,
			       const int32_t *doc)
{
	int b, kh, s0;
	ftk_flash_kvblock(d, blk, &b, &kh, &s0);
	if (tid == 0) {
		int *en = FTK_FLASH_SIDX(d, sm);
		const int32_t *db = doc + (size_t)b * d->T;
		int last = (d->T - s0 < FTK_FLASH_ROWS ? d->T - s0 : FTK_FLASH_ROWS) - 1;
		en[last] = ftk_doc_end(db, d->T, s0 + last);
		for (int i = last - 1; i >= 0; i--)
			en[i] = db[s0 + i] == db[s0 + i + 1] ? en[i + 1] : s0 + i + 1;
	}
	st->s = s0 + tid < d->T ? s0 + tid : -1;
	if (st->s < 0)
		return;
	size_t row = (((size_t)b * d->T + st->s) * d->NKV + kh) * d->hd;
	for (int i = 0; i < d->hd; i++) {
		st->k[i] = k[row + i];
		st->v[i] = v[row + i];
		st->dk[i] = st->dv[i] = 0.0f;
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

/* All threads: copy query rows [q0, min(q0 + tile, qe)) of head h: SA (q), SB (dout), SLSE, SD. */
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

/* Phase 2 (per tile): dv += p dout, dk += ds q over the tile's queries that see this key. */
FTK_HD void ftk_flash_kv_update(const struct ftk_flash_dims *d, int tid, int q0, int qe,
				const float *sm, struct ftk_flash_kv_thread *st)
{
	if (st->s < 0)
		return;
	int hd = d->hd, q1 = q0 + d->tile < qe ? q0 + d->tile : qe;
	int end = FTK_FLASH_SIDX(d, (float *)sm)[tid];
	int lo = st->s > q0 ? st->s : q0, hi = end < q1 ? end : q1;
	const float *sq = FTK_FLASH_SA(d, sm), *so = FTK_FLASH_SB(d, sm);
	for (int t = lo; t < hi; t++) {
		const float *qr = sq + (size_t)(t - q0) * hd, *orow = so + (size_t)(t - q0) * hd;
		float p = ftk_flash_p(d->scale * ftk_dot(qr, st->k, hd), FTK_FLASH_SLSE(d, sm)[t - q0]);
		float ds = ftk_flash_ds(p, ftk_dot(orow, st->v, hd), FTK_FLASH_SD(d, sm)[t - q0]);
		for (int i = 0; i < hd; i++) {
			st->dv[i] += p * orow[i];
			st->dk[i] += ds * qr[i];
		}
	}
}

/* Phase 3: write dk (times scale) and dv rows (overwriting). */
FTK_HD void ftk_flash_kv_end(const struct ftk_flash_dims *d, int blk,
			     const struct ftk_flash_kv_thread *st, float *dk, float *dv)
{
	if (st->s < 0)
		return;
	int b, kh, s0;
	ftk_flash_kvblock(d, blk, &b, &kh, &s0);
	size_t row = (((size_t)b * d->T + st->s) * d->NKV + kh) * d->hd;
	for (int i = 0; i < d->hd; i++) {
		dk[row + i] = d->scale * st->dk[i];
		dv[row + i] = st->dv[i];
	}
}

#endif
