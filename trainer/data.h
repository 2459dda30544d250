/*
 * data.h: token shards to training batches.
 *
 * A data set is a shard directory (lib/shard.h) read whole into memory: the
 * trainer needs random access to shuffle, and even a billion tokens are 5 GB
 * of ids and masks, which a machine that trains on them has.
 *
 * Before anything else the shards' tokenizer hash is compared with
 * ftk_file_hash() of the model's tokenizer.json: token ids made by another
 * tokenizer are a different language to the model, and training on them
 * silently ruins the run.  Every id is also checked against the vocabulary.
 *
 * SFT packing.  Sequences are taken in the epoch's order and packed greedily
 * into rows of seq_len positions: a sequence that does not fit in what is
 * left of a row starts the next row (the rest is padding), one longer than
 * seq_len is cut to seq_len (and counted).  Each row carries, per position,
 * the token id, the loss mask (shard convention: mask[i] = 1 makes ids[i] a
 * target) with every document's first position and all padding at 0, and a
 * document number, so the model's attention stays inside a document
 * (model.h).  A sequence without a single target is skipped (and counted).
 *
 * Order.  Epoch e visits the sequences in a permutation drawn from
 * (seed, e) alone (Fisher-Yates over a xoshiro256** stream), so the data
 * position of a run is two integers, (epoch, cursor = how many sequences of
 * that epoch's order are consumed), which a checkpoint saves and a resume
 * restores exactly.  Training data is an endless stream: a row may hold the
 * end of one epoch and the start of the next.  Validation data is read in
 * file order, once per evaluation, its last batch possibly short.
 *
 * Preference data (DPO) comes in pairs (chosen, rejected: sequences 2i and
 * 2i+1).  Pairs are shuffled as units and never packed: a batch of B pairs is
 * 2B rows, chosen then rejected, one sequence per row.  A pair whose two
 * sequences are identical once cut to seq_len (the answers lie past the cut)
 * teaches nothing and is skipped (and counted).
 */
#ifndef FTK_TRAINER_DATA_H
#define FTK_TRAINER_DATA_H

#include <stddef.h>
#include <stdint.h>
#include "lib/err.h"
#include "lib/shard.h"
#include "model/model.h"

struct ftk_data_opts {
	const char *dir;		/* the shard directory */
	const char *tokenizer_json;	/* the model's tokenizer.json; NULL skips the hash check */
	uint32_t vocab_size;		/* every id must be below it; 0: no check */
	int kind;			/* FTK_SHARD_SFT or FTK_SHARD_PREFERENCE, as the objective needs */
	int seq_len;			/* T */
	int batch;			/* B: rows (SFT) or pairs (preference) per micro-batch */
	uint64_t seed;
	int shuffle;			/* 1: training (shuffled, endless); 0: validation (one pass) */
};

/* Where the stream stands: epoch and sequences (or pairs) of it consumed. */
struct ftk_data_pos {
	uint64_t epoch;
	uint64_t cursor;
};

/* A micro-batch the caller owns (several of them for gradient accumulation). */
struct ftk_data_batch {
	struct ftk_batch b;	/* what the model takes; b.B is the rows filled */
	uint32_t *ids;		/* (rows, T) */
	uint8_t *mask;		/* (rows, T) */
	uint32_t *doc;		/* (rows, T) */
	uint64_t *seq;		/* (rows) the shard sequence index of each row's first sequence */
	int rows, T;		/* capacity */
	long targets;		/* positions whose loss counts */
	long tokens;		/* positions holding a real token (not padding) */
};

struct ftk_data;

/*
 * Load a shard directory and check it.  Returns 0 and *out (free with
 * ftk_data_free), or: FTK_ENOTFOUND/FTK_EDATA/FTK_EIO from the shards,
 * FTK_EMISMATCH when the tokenizer hash differs ("shards in DIR were made
 * with tokenizer <hash>, the model's tokenizer.json is <hash>: re-run
 * ftk-tokenize with this model"), the kind is not the one the objective
 * needs, or an id is outside the vocabulary (naming the sequence);
 * FTK_EDATA when there is no sequence with a target or an odd number of
 * preference sequences; FTK_EUSAGE for seq_len < 2 or batch < 1.
 */
int ftk_data_open(struct ftk_data **out, const struct ftk_data_opts *o, struct ftk_error *err);
void ftk_data_free(struct ftk_data *d);

const struct ftk_shard_info *ftk_data_info(const struct ftk_data *d);
/* Sequences usable for training (SFT) or pairs (preference). */
uint64_t ftk_data_units(const struct ftk_data *d);
/* Rows that one epoch packs into (epoch 0's order; other epochs differ by a row or so). */
uint64_t ftk_data_rows_per_epoch(const struct ftk_data *d);
/* Sequences cut to seq_len, and sequences (pairs) skipped for having no target
 * (or, for pairs, no difference) within seq_len. */
uint64_t ftk_data_truncated(const struct ftk_data *d);
uint64_t ftk_data_skipped(const struct ftk_data *d);

void ftk_data_batch_init(struct ftk_data_batch *db, const struct ftk_data *d);
void ftk_data_batch_release(struct ftk_data_batch *db);

/*
 * Fill db with the next micro-batch.  Returns the rows filled (B, or 2B
 * for pairs; fewer only at the end of a validation pass) or 0 when a
 * validation pass is over (call ftk_data_rewind to start another).
 */
int ftk_data_next(struct ftk_data *d, struct ftk_data_batch *db);

void ftk_data_get_pos(const struct ftk_data *d, struct ftk_data_pos *p);
/* Continue from p (a position from ftk_data_get_pos of the same data and seed). */
void ftk_data_set_pos(struct ftk_data *d, const struct ftk_data_pos *p);
void ftk_data_rewind(struct ftk_data *d);

#endif
