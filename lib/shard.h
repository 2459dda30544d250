/*
 * shard.h: token shards, what ftk-tokenize writes and ftk-train reads.
 *
 * A shard directory holds manifest.json and files shard-NNNNN.ftks.zst.  Each
 * shard is one zstd stream of little-endian binary:
 *
 *   header (256 bytes):
 *     magic        8 bytes  "FTKSHRD\0"
 *     version      u32      1
 *     kind         u32      0 = sft (one sequence per example),
 *                           1 = preference (sequences in pairs: chosen, then rejected)
 *     vocab_size   u32      the tokenizer's vocabulary size, added tokens included
 *     reserved     u32      0
 *     tok_hash     33 bytes xxh3-128 of the tokenizer.json file, lowercase hex, NUL
 *     template     64 bytes the chat template's name ("qwen3", "raw", ...), NUL padded
 *     zero padding to 256 bytes
 *   then for each sequence:
 *     len          u32      number of tokens
 *     ids          u32[len] token ids
 *     mask         u8[len]  1 where the model learns the token, 0 elsewhere
 *
 * Loss-mask convention: mask[i] applies to token ids[i] as a *target*: the
 * loss at position i-1 (predicting ids[i]) counts when mask[i] is 1.  mask[0]
 * is therefore never used.
 *
 * manifest.json: {"format":"ftk-shards","version":1,"kind":"sft",
 *   "vocab_size":N,"tokenizer_hash":"...","template":"...",
 *   "sequences":N,"tokens":N,"masked_tokens":N,
 *   "shards":[{"file":"shard-00000.ftks.zst","sequences":N,"tokens":N}]}
 * The manifest is written last (atomically), so a directory without one is
 * an unfinished run.  Sequences are numbered 0.. across shards in order.
 */
#ifndef FTK_SHARD_H
#define FTK_SHARD_H

#include <stdint.h>
#include "err.h"

#define FTK_SHARD_MAGIC "FTKSHRD"
#define FTK_SHARD_VERSION 1
#define FTK_SHARD_HEADER_SIZE 256

enum { FTK_SHARD_SFT = 0, FTK_SHARD_PREFERENCE = 1 };

struct ftk_shard_info {
	uint32_t kind;
	uint32_t vocab_size;
	char tokenizer_hash[33];
	char template_name[64];
	/* totals; filled by the reader from the manifest, by the writer as it goes */
	uint64_t sequences, tokens, masked_tokens;
	uint32_t n_shards;
};

struct ftk_seq {
	const uint32_t *ids;	/* borrowed until the next call */
	const uint8_t *mask;	/* borrowed until the next call */
	uint32_t len;
	uint64_t index;		/* sequence number across the whole directory */
};

struct ftk_shard_writer;

/*
 * Create dir (and the folders above it, if needed) and start writing shards
 * into it.  A new shard is
 * begun after tokens_per_shard tokens (0: one shard).  info's kind,
 * vocab_size, tokenizer_hash and template_name are used.  Returns 0 or an
 * error (FTK_EIO).
 */
int ftk_shard_writer_open(struct ftk_shard_writer **out, const char *dir,
			  const struct ftk_shard_info *info, uint64_t tokens_per_shard,
			  struct ftk_error *err);
/*
 * Append one sequence (ids and mask borrowed).  Returns 0 or FTK_EIO with the
 * cause (the file and errno, e.g. No space left on device); after a failure
 * the writer stays failed: later writes and the close fail without writing,
 * and no manifest is written, so the directory reads as unfinished.
 */
int ftk_shard_write(struct ftk_shard_writer *w, const uint32_t *ids, const uint8_t *mask,
		    uint32_t len, struct ftk_error *err);
/* Finish the last shard and write manifest.json.  Frees w.  0 or FTK_EIO. */
int ftk_shard_writer_close(struct ftk_shard_writer *w, struct ftk_error *err);

/*
 * Join the shard directories dirs[0..n) into out_dir (created; it must not
 * hold a manifest yet): their shard files hard-linked (copied across file
 * systems) under consecutive names, in the order given, and one manifest, so
 * the sequences are numbered as if one writer had written the parts one
 * after the other.  The parts must agree on format, version, kind,
 * vocab_size, tokenizer_hash and template (FTK_EMISMATCH names the field);
 * parts without sequences add nothing.  Returns 0, FTK_ENOTFOUND (a part
 * without manifest.json), FTK_EDATA, FTK_EUSAGE (out_dir holds a set) or
 * FTK_EIO.
 */
int ftk_shard_join(const char *out_dir, const char *const *dirs, int n, struct ftk_error *err);

/*
 * Read dir/manifest.json as a JSON object, its members not checked (the
 * reader and the joiner check what each needs).  Returns 0 with *out
 * (caller frees), FTK_ENOTFOUND when there is none ("not a shard directory,
 * or ftk-tokenize did not finish"), FTK_EIO, or FTK_EDATA placed at the
 * manifest's path when it is not a JSON object.
 */
struct cJSON;
int ftk_shard_read_manifest(const char *dir, struct cJSON **out, struct ftk_error *err);

struct ftk_shard_reader;

/*
 * Open a shard directory: reads manifest.json and checks every shard's
 * header against it.  Returns 0, FTK_ENOTFOUND (no manifest: "not a shard
 * directory, or ftk-tokenize did not finish"), FTK_EDATA (a corrupt header).
 */
int ftk_shard_open(struct ftk_shard_reader **out, const char *dir, struct ftk_error *err);
const struct ftk_shard_info *ftk_shard_info(const struct ftk_shard_reader *r);
/* Next sequence.  1, 0 at the end, or a negative error (truncated, corrupt). */
int ftk_shard_next(struct ftk_shard_reader *r, struct ftk_seq *seq, struct ftk_error *err);
/* Go back to sequence 0. */
int ftk_shard_rewind(struct ftk_shard_reader *r, struct ftk_error *err);
void ftk_shard_close(struct ftk_shard_reader *r);

/*
 * Read every sequence of a directory into memory (the trainer shuffles by
 * index).  *ids, *mask: all tokens back to back; *offsets: n+1 entries, so
 * sequence i is [offsets[i], offsets[i+1]).  Caller frees all three.
 */
int ftk_shard_load_all(const char *dir, struct ftk_shard_info *info, uint32_t **ids,
		       uint8_t **mask, uint64_t **offsets, uint64_t *n_seqs,
		       struct ftk_error *err);

/* xxh3-128 of a file's bytes as 32 lowercase hex digits plus NUL. */
int ftk_file_hash(const char *path, char out[33], struct ftk_error *err);

#endif
