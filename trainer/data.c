/*
 * data.c: token shards to training batches (see data.h for the contract).
 *
 * The shuffle draws from model/rng.h (xoshiro256** seeded by splitmix64
 * from (seed, epoch)) so that the order of every epoch is a pure function
 * of (seed, epoch) on every platform, with an unbiased bounded draw
 * (ftk_rng_below) for Fisher-Yates.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/data.h"
#include "model/rng.h"

struct ftk_data {
	struct ftk_data_opts o;
	char *dir;
	struct ftk_shard_info info;
	uint32_t *ids;
	uint8_t *mask;
	uint64_t *off;
	uint64_t n_seqs;
	uint64_t *units;	/* usable sequence indices (SFT) or pair indices (preference) */
	uint64_t n_units;
	uint64_t *perm;		/* the current epoch's order of units */
	uint64_t perm_epoch;
	struct ftk_data_pos pos;
	uint64_t truncated, skipped, rows_epoch;
};

/* ---------------------------------------------------------------- order */

static void make_perm(struct ftk_data *d, uint64_t epoch)
{
	for (uint64_t i = 0; i < d->n_units; i++)
		d->perm[i] = d->units[i];
	d->perm_epoch = epoch;
	if (!d->o.shuffle)
		return;
	struct ftk_rng r;
	uint64_t x = d->o.seed ^ 0x6a09e667f3bcc908ULL;
	ftk_rng_seed(&r, ftk_splitmix64(&x) ^ (epoch + 1) * 0x9e3779b97f4a7c15ULL);
	for (uint64_t i = d->n_units; i > 1; i--) {
		uint64_t j = ftk_rng_below(&r, i);
		uint64_t t = d->perm[i - 1];
		d->perm[i - 1] = d->perm[j];
		d->perm[j] = t;
	}
}

/* ---------------------------------------------------------------- loading */

static uint32_t seq_len(const struct ftk_data *d, uint64_t s)
{
	return (uint32_t)(d->off[s + 1] - d->off[s]);
}

/* Does sequence s, cut to T, hold a target (mask 1 past its first token)? */
static int has_target(const struct ftk_data *d, uint64_t s)
{
	uint64_t n = seq_len(d, s);
	if (n > (uint64_t)d->o.seq_len)
		n = (uint64_t)d->o.seq_len;
	const uint8_t *m = d->mask + d->off[s];
	for (uint64_t i = 1; i < n; i++)
		if (m[i])
			return 1;
	return 0;
}

/*
 * Do chosen and rejected of pair p still differ once cut to T?  A pair whose
 * answers differ only after the cut (a long prompt) is the same sequence
 * twice: its DPO loss is log 2 and its gradient exactly zero, so it would
 * only cost time and hide that --seq-len is too short.
 */
static int pair_differs(const struct ftk_data *d, uint64_t p)
{
	uint64_t a = 2 * p, b = 2 * p + 1, T = (uint64_t)d->o.seq_len;
	uint64_t la = seq_len(d, a), lb = seq_len(d, b);
	la = la < T ? la : T;
	lb = lb < T ? lb : T;
	if (la != lb)
		return 1;
	return memcmp(d->ids + d->off[a], d->ids + d->off[b], la * sizeof(uint32_t)) ||
	       memcmp(d->mask + d->off[a], d->mask + d->off[b], la);
}

int ftk_data_open(struct ftk_data **out, const struct ftk_data_opts *o, struct ftk_error *err)
{
	*out = NULL;
	if (o->seq_len < 2)
		return ftk_error_msg(err, FTK_EUSAGE, "sequence length must be at least 2, got %d",
				     o->seq_len);
	if (o->batch < 1)
		return ftk_error_msg(err, FTK_EUSAGE, "batch size must be at least 1, got %d",
				     o->batch);
	struct ftk_data *d = xcalloc(1, sizeof(*d));
	d->o = *o;
	d->dir = xstrdup(o->dir);
	d->o.dir = d->dir;
	d->o.tokenizer_json = NULL;
	int rc = ftk_shard_load_all(o->dir, &d->info, &d->ids, &d->mask, &d->off, &d->n_seqs, err);
	if (rc < 0)
		goto fail;
	if (o->tokenizer_json) {
		char hash[33];
		rc = ftk_file_hash(o->tokenizer_json, hash, err);
		if (rc < 0)
			goto fail;
		if (strcmp(hash, d->info.tokenizer_hash)) {
			rc = ftk_error_set(err, FTK_EMISMATCH, o->dir, 0, "tokenizer_hash",
					   "shards were made with tokenizer %s, but '%s' is %s: "
					   "run ftk-tokenize again with this model's tokenizer",
					   d->info.tokenizer_hash, o->tokenizer_json, hash);
			goto fail;
		}
	}
	if ((int)d->info.kind != o->kind) {
		rc = ftk_error_set(err, FTK_EMISMATCH, o->dir, 0, "kind",
				   o->kind == FTK_SHARD_PREFERENCE
					   ? "these are SFT shards; --objective dpo needs preference shards"
					   : "these are preference shards; use --objective dpo or SFT shards");
		goto fail;
	}
	if (o->vocab_size) {
		for (uint64_t s = 0; s < d->n_seqs; s++)
			for (uint64_t i = d->off[s]; i < d->off[s + 1]; i++)
				if (d->ids[i] >= o->vocab_size) {
					rc = ftk_error_set(err, FTK_EMISMATCH, o->dir, 0, NULL,
							   "sequence %llu: token id %u is outside the model's "
							   "vocabulary of %u",
							   (unsigned long long)s, d->ids[i], o->vocab_size);
					goto fail;
				}
	}
	d->units = xmalloc((d->n_seqs + 1) * sizeof(uint64_t));
	if (o->kind == FTK_SHARD_PREFERENCE) {
		if (d->n_seqs % 2) {
			rc = ftk_error_set(err, FTK_EDATA, o->dir, 0, NULL,
					   "preference shards hold an odd number of sequences (%llu)",
					   (unsigned long long)d->n_seqs);
			goto fail;
		}
		for (uint64_t p = 0; p < d->n_seqs / 2; p++) {
			if (has_target(d, 2 * p) && has_target(d, 2 * p + 1) && pair_differs(d, p))
				d->units[d->n_units++] = p;
			else
				d->skipped++;
			d->truncated += (seq_len(d, 2 * p) > (uint32_t)o->seq_len) +
					(seq_len(d, 2 * p + 1) > (uint32_t)o->seq_len);
		}
	} else {
		for (uint64_t s = 0; s < d->n_seqs; s++) {
			if (has_target(d, s))
				d->units[d->n_units++] = s;
			else
				d->skipped++;
			d->truncated += seq_len(d, s) > (uint32_t)o->seq_len;
		}
	}
	if (!d->n_seqs) {
		rc = ftk_error_set(err, FTK_EDATA, o->dir, 0, NULL,
				   "the shards hold no sequence: ftk-tokenize wrote none (every record "
				   "rejected, or an empty input); its summary line and --rejects say why");
		goto fail;
	}
	if (!d->n_units) {
		if (o->kind == FTK_SHARD_PREFERENCE)
			rc = ftk_error_set(err, FTK_EDATA, o->dir, 0, NULL,
					   "no preference pair has a token to learn in which chosen "
					   "and rejected differ within the first %d tokens: raise "
					   "--seq-len", o->seq_len);
		else
			rc = ftk_error_set(err, FTK_EDATA, o->dir, 0, NULL,
					   "none of the %llu sequences has a token to learn within "
					   "the first %d tokens (its loss mask is 0 there: no "
					   "assistant turn, or the answer comes later): raise --seq-len, "
					   "or tokenize with --train-on all to learn every token",
					   (unsigned long long)d->n_seqs, o->seq_len);
		goto fail;
	}
	d->perm = xmalloc(d->n_units * sizeof(uint64_t));
	/* rows of one epoch: pack epoch 0's order by lengths alone */
	make_perm(d, 0);
	if (o->kind == FTK_SHARD_PREFERENCE) {
		d->rows_epoch = 2 * d->n_units;
	} else {
		uint64_t rows = 0, used = 0;
		for (uint64_t i = 0; i < d->n_units; i++) {
			uint64_t L = seq_len(d, d->perm[i]);
			if (L > (uint64_t)o->seq_len)
				L = (uint64_t)o->seq_len;
			if (used && used + L > (uint64_t)o->seq_len) {
				rows++;
				used = 0;
			}
			used += L;
		}
		d->rows_epoch = rows + (used > 0);
	}
	*out = d;
	return 0;
fail:
	ftk_data_free(d);
	return rc;
}

void ftk_data_free(struct ftk_data *d)
{
	if (!d)
		return;
	free(d->dir);
	free(d->ids);
	free(d->mask);
	free(d->off);
	free(d->units);
	free(d->perm);
	free(d);
}

const struct ftk_shard_info *ftk_data_info(const struct ftk_data *d)
{
	return &d->info;
}

uint64_t ftk_data_units(const struct ftk_data *d)
{
	return d->n_units;
}

uint64_t ftk_data_rows_per_epoch(const struct ftk_data *d)
{
	return d->rows_epoch;
}

uint64_t ftk_data_truncated(const struct ftk_data *d)
{
	return d->truncated;
}

uint64_t ftk_data_skipped(const struct ftk_data *d)
{
	return d->skipped;
}

/* ---------------------------------------------------------------- batches */

void ftk_data_batch_init(struct ftk_data_batch *db, const struct ftk_data *d)
{
	memset(db, 0, sizeof(*db));
	db->rows = d->o.kind == FTK_SHARD_PREFERENCE ? 2 * d->o.batch : d->o.batch;
	db->T = d->o.seq_len;
	size_t n = (size_t)db->rows * db->T;
	db->ids = xcalloc(n, sizeof(uint32_t));
	db->mask = xcalloc(n, 1);
	db->doc = xcalloc(n, sizeof(uint32_t));
	db->seq = xcalloc((size_t)db->rows, sizeof(uint64_t));
	db->b.ids = db->ids;
	db->b.mask = db->mask;
	db->b.doc = db->doc;
	db->b.T = db->T;
}

void ftk_data_batch_release(struct ftk_data_batch *db)
{
	free(db->ids);
	free(db->mask);
	free(db->doc);
	free(db->seq);
	memset(db, 0, sizeof(*db));
}

/*
 * The next unit of the stream, or -1 at the end of a validation pass.  A
 * training stream rolls over into the next epoch.
 */
static int64_t peek_unit(struct ftk_data *d)
{
	if (d->pos.cursor >= d->n_units) {
		if (!d->o.shuffle)
			return -1;
		d->pos.epoch++;
		d->pos.cursor = 0;
	}
	if (d->perm_epoch != d->pos.epoch)
		make_perm(d, d->pos.epoch);
	return (int64_t)d->perm[d->pos.cursor];
}

/* Copy sequence s (cut to T) into row at position at; its first position is no target. */
static uint32_t put_seq(struct ftk_data *d, struct ftk_data_batch *db, int row, uint32_t at,
			uint64_t s, uint32_t docno)
{
	uint32_t L = seq_len(d, s), T = (uint32_t)db->T;
	if (L > T - at)
		L = T - at;
	size_t base = (size_t)row * T + at;
	if (!at)
		db->seq[row] = s;
	memcpy(db->ids + base, d->ids + d->off[s], (size_t)L * sizeof(uint32_t));
	memcpy(db->mask + base, d->mask + d->off[s], L);
	db->mask[base] = 0;
	for (uint32_t i = 0; i < L; i++) {
		db->doc[base + i] = docno;
		db->targets += db->mask[base + i];
	}
	db->tokens += L;
	return L;
}

static void pad_row(struct ftk_data_batch *db, int row, uint32_t at, uint32_t docno)
{
	size_t base = (size_t)row * db->T;
	for (uint32_t i = at; i < (uint32_t)db->T; i++) {
		db->ids[base + i] = 0;
		db->mask[base + i] = 0;
		db->doc[base + i] = docno;
	}
}

int ftk_data_next(struct ftk_data *d, struct ftk_data_batch *db)
{
	int rows = 0;
	uint32_t T = (uint32_t)db->T;
	db->targets = 0;
	db->tokens = 0;
	if (d->o.kind == FTK_SHARD_PREFERENCE) {
		for (int p = 0; p < d->o.batch; p++) {
			int64_t u = peek_unit(d);
			if (u < 0)
				break;
			for (int k = 0; k < 2; k++) {
				uint32_t L = put_seq(d, db, rows, 0, 2 * (uint64_t)u + k, 0);
				pad_row(db, rows, L, 1);
				rows++;
			}
			d->pos.cursor++;
		}
	} else {
		for (int r = 0; r < d->o.batch; r++) {
			uint32_t used = 0, docno = 0;
			for (;;) {
				int64_t u = peek_unit(d);
				if (u < 0)
					break;
				uint32_t L = seq_len(d, (uint64_t)u);
				if (L > T)
					L = T;
				if (used && used + L > T)
					break;
				used += put_seq(d, db, r, used, (uint64_t)u, docno++);
				d->pos.cursor++;
			}
			if (!used)
				break;
			pad_row(db, r, used, docno);
			rows++;
		}
	}
	db->b.B = rows;
	db->b.T = db->T;
	return rows;
}

void ftk_data_get_pos(const struct ftk_data *d, struct ftk_data_pos *p)
{
	*p = d->pos;
}

void ftk_data_set_pos(struct ftk_data *d, const struct ftk_data_pos *p)
{
	d->pos = *p;
	make_perm(d, p->epoch);
}

void ftk_data_rewind(struct ftk_data *d)
{
	struct ftk_data_pos p = { 0, 0 };
	ftk_data_set_pos(d, &p);
}
