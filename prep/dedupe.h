/*
 * dedupe.h: the engine behind ftk-dedupe, shared by the single run and the
 * sharded mode (--signatures / --merge / --apply).
 *
 * A dedupe has three steps, and the sharded mode runs them as separate
 * programs:
 *
 *   sign     each record -> its key text (normalized) -> either a 128-bit
 *            XXH3 hash (exact mode) or, in near mode, its band hashes plus a
 *            payload for verification (the shingle hashes, or the whole
 *            MinHash signature with --fast).  Written to a signature file.
 *   resolve  all band hashes in memory (the payloads stay on disk and are
 *            read back only for candidate pairs), candidates from equal band
 *            hashes, verification, union-find clusters, one survivor per
 *            cluster.  The result: for every record, kept or "removed, a
 *            duplicate of record X with similarity s".
 *   apply    a pass over the inputs that writes the survivors as their
 *            original bytes and the removed records to --rejects.
 *
 * The single run writes its signature file to a temporary file and calls
 * the same resolve, so the sharded run and the single run cannot disagree:
 * given the same records in the same order they make the same decisions.
 *
 * Signature file: the line "FTKSIG2", a JSON line with the parameters and
 * the input file names, then one binary record per signed record (native
 * byte order: written and read on machines of one architecture):
 *	struct ftk_dd_sighdr, bands x uint64 (exact: 2, the 128-bit hash),
 *	the source name padded to 8 bytes, the record's origin (lib/record.h
 *	ftk_record_origin's JSON, empty when it has none) padded to 8 bytes,
 *	payload_n x uint64.
 * The origin is there for the "of" of a removed record: resolve never holds
 * it in memory, it reads it back (ftk_dd_index_origin) for the survivors
 * that have a duplicate, as it reads payloads for candidate pairs.
 *
 * Memory: resolve keeps, per record, its metadata (40 bytes) and its band
 * hashes (12 bytes a band: 168 bytes with 14 bands).  When the band hashes
 * pass the memory cap they are spilled to one temporary file per band and
 * read back one band at a time while candidates are collected.
 */
#ifndef FTK_DEDUPE_H
#define FTK_DEDUPE_H

#include <stdint.h>
#include <stdio.h>
#include <cjson/cJSON.h>
#include "lib/err.h"
#include "lib/normalize.h"
#include "lib/strbuf.h"
#include "minhash.h"

/* ---------------------------------------------------------------- keys */

/*
 * A key: a comma-separated list of items, each "@text" (the record's text,
 * lib/record.h), "@user", "@assistant", "@system" (that role's text), or a
 * field path ("instruction", "meta.source", "messages[0].content",
 * "messages[-1].content").  The key text is the items' values joined by
 * "\n"; items missing from a record contribute nothing, so one key can serve
 * several formats ("@user" is the first user turn of a one-turn chat and
 * instruction + input of an Alpaca record).
 */
struct ftk_dd_key;

/* Parse spec.  Returns 0 and a new key (free with ftk_dd_key_free), or FTK_EUSAGE. */
int ftk_dd_key_parse(const char *spec, struct ftk_dd_key **out, struct ftk_error *err);
void ftk_dd_key_free(struct ftk_dd_key *k);

/*
 * Append the key text of rec to out.  Returns the number of items that gave
 * text (0: the record has nothing for this key).
 */
int ftk_dd_key_text(const struct ftk_dd_key *k, const cJSON *rec, struct strbuf *out);

/*
 * Resolve a field path in rec.  Returns the value (borrowed) or NULL.
 */
const cJSON *ftk_dd_path(const cJSON *rec, const char *path);

/* ---------------------------------------------------------------- signing */

enum ftk_dd_keep { FTK_DD_KEEP_FIRST, FTK_DD_KEEP_LONGEST, FTK_DD_KEEP_FIELD };

struct ftk_dd_params {
	int near;		/* 0 exact, 1 near */
	int fast;		/* near: verify by signature estimate */
	int ngram, bands, rows;
	uint64_t seed;
	unsigned norm;		/* FTK_NORM_* */
	const char *key;	/* key spec, "@text" by default */
	const char *keep_field;	/* --keep FIELD, or NULL */
	const char *source_field;	/* --source-field, or NULL */
	int source_default;	/* source_field is meta.source because none was given:
				 * records without one are not counted as a source */
};

/* ---------------------------------------------------------------- a run's settings */

/* Which part of a dedupe one command runs: all of it, or one sharded step. */
enum ftk_dd_stage { FTK_DD_WHOLE = 0, FTK_DD_SIGNATURES, FTK_DD_MERGE, FTK_DD_APPLY };

/*
 * A run's settings as ftk-dedupe's options give them.  ftk_dd_settings_init
 * sets the defaults; the options overwrite what they name; then
 * ftk_dd_settings_check refuses contradictions and works out the rest.
 */
struct ftk_dd_settings {
	struct ftk_dd_params p;	/* ngram 5, seed 1, key "@text"; exact; the rest as given */
	const char *normalize;	/* --normalize, "all" */
	enum ftk_dd_keep keep;	/* --keep (ftk_dd_settings_keep), first */
	double threshold;	/* --threshold, 0.8 */
	int threshold_given;
	int bands, rows;	/* --bands, --rows; 0: from the threshold (given) or 14 x 8 */
	enum ftk_dd_stage stage;	/* --signatures, --merge, --apply */
	const char *against;	/* --against FILE or NULL */
	const char *clusters;	/* --clusters FILE or NULL */
	const char *out;	/* -o FILE, NULL or "-" for standard output */
};

void ftk_dd_settings_init(struct ftk_dd_settings *s);

/* --keep ARG: "first", "longest", or a numeric field whose largest value survives. */
void ftk_dd_settings_keep(struct ftk_dd_settings *s, const char *arg);

/*
 * Check s and complete it: p.norm from normalize, and in near mode p.bands
 * and p.rows (--bands/--rows, else the LSH split whose S-curve crosses the
 * threshold, else 14 x 8).  Returns 0 with *key (ftk_dd_key_free) and, in
 * near mode, *mh (ftk_minhash_release; zeroed otherwise) made, or
 * FTK_EUSAGE saying what contradicts what: near-only options without near
 * mode (a merge takes them from its signature files), --against in a
 * sharded step, --signatures without -o FILE or to a .zst file, --clusters
 * with --signatures, a bad normalize list or key.
 */
int ftk_dd_settings_check(struct ftk_dd_settings *s, struct ftk_dd_key **key,
			  struct ftk_minhash *mh, struct ftk_error *err);

/*
 * Whether a whole run can be one streaming pass (exact mode, the first
 * record survives, no --clusters): a hash table of the keys seen, no index
 * and no second pass.
 */
int ftk_dd_settings_streaming(const struct ftk_dd_settings *s);

/* Everything one worker needs to sign records; one per thread. */
struct ftk_dd_signer {
	const struct ftk_dd_params *p;
	const struct ftk_dd_key *key;
	const struct ftk_minhash *mh;
	struct strbuf raw, norm;
	struct ftk_words words;
	struct ftk_u64vec shingles;
	uint64_t *sig;		/* (k) */
};

/* The signature of one record. */
struct ftk_dd_sig {
	int status;		/* 1 signed, 0 no key text */
	double len;		/* key length in bytes (for --keep longest) */
	double field;		/* --keep FIELD value, -HUGE_VAL when missing */
	uint64_t *band;		/* (ftk_dd_nbands) bands (near) or the 128-bit hash (exact) */
	struct strbuf source;	/* --source-field value ("" when none) */
	struct strbuf origin;	/* ftk_record_origin's JSON ("" when none) */
	struct ftk_u64vec payload;	/* near: shingles, or signature with --fast */
};

void ftk_dd_signer_init(struct ftk_dd_signer *s, const struct ftk_dd_params *p,
			const struct ftk_dd_key *key, const struct ftk_minhash *mh);
void ftk_dd_signer_release(struct ftk_dd_signer *s);
/* nbands: ftk_dd_nbands() of the parameters. */
void ftk_dd_sig_init(struct ftk_dd_sig *g, int nbands);
void ftk_dd_sig_release(struct ftk_dd_sig *g);

/*
 * Sign one parsed record into *g (its origin too, whether or not it has key
 * text).  Returns 1 when signed, 0 when the record has no key text
 * (g->status 0).
 */
int ftk_dd_sign(struct ftk_dd_signer *s, const cJSON *rec, struct ftk_dd_sig *g);

/* Number of band values a signature carries: bands (near) or 2 (exact). */
int ftk_dd_nbands(const struct ftk_dd_params *p);

/* ---------------------------------------------------------------- signature files */

struct ftk_dd_sighdr {
	uint32_t file, line;
	double len, field;
	uint32_t src_len, payload_n;
	uint32_t origin_len, reserved;	/* reserved: 0, keeps the header 8-byte aligned */
};

/*
 * Write the file header: magic and the parameters as a JSON line, with the
 * input names.  Returns 0 or FTK_EIO.
 */
int ftk_dd_sigfile_header(FILE *f, const struct ftk_dd_params *p, char **files, int n_files,
			  struct ftk_error *err);
/* Append one record's signature.  Returns 0 or FTK_EIO. */
int ftk_dd_sigfile_write(FILE *f, const struct ftk_dd_params *p, uint32_t file, uint32_t line,
			 const struct ftk_dd_sig *g, struct ftk_error *err);
/* The bytes ftk_dd_sigfile_write writes for g. */
uint64_t ftk_dd_sigfile_reclen(const struct ftk_dd_params *p, const struct ftk_dd_sig *g);

/*
 * A temporary file, already unlinked, in $TMPDIR (or /tmp), open for
 * reading and writing.  Returns NULL with errno set on failure.
 */
FILE *ftk_dd_tmpfile(void);

/* ---------------------------------------------------------------- resolve */

struct ftk_dd_index;

/*
 * A new, empty index for records signed with p.  mem_cap: bytes of band
 * hashes to hold before spilling to temporary files (0: never spill).
 */
struct ftk_dd_index *ftk_dd_index_new(const struct ftk_dd_params *p, size_t mem_cap);
void ftk_dd_index_free(struct ftk_dd_index *x);

/* Add a file name; returns its index (an existing name returns its old index). */
uint32_t ftk_dd_index_file(struct ftk_dd_index *x, const char *name);
/* Add a source name; returns its index. */
uint32_t ftk_dd_index_source(struct ftk_dd_index *x, const char *name, size_t len);

/*
 * Add one record: file and line, keep metric, source, whether it belongs to
 * the reference set (--against), its bands, and where its signature record
 * starts in sigfile (an open, readable file; borrowed, must outlive resolve).
 * Returns the record's id (ids count up from 0 in the order of adding), or
 * FTK_ELIMIT past 2^32 - 2 records.
 */
int64_t ftk_dd_index_add(struct ftk_dd_index *x, uint32_t file, uint32_t line, double metric,
			 uint32_t source, int ref, const uint64_t *band, int sigfd, uint64_t off);

/*
 * Read a signature file (from its header on) into the index: its files, its
 * records.  The parameters in the file must equal x's (FTK_EMISMATCH
 * otherwise).  fd stays open (the index reads payloads from it later).
 * Returns the number of records, or a negative code.
 */
int64_t ftk_dd_index_load(struct ftk_dd_index *x, int fd, const char *name,
			  struct ftk_error *err);

/*
 * Read only the header of a signature file into *p (strings are allocated
 * and leaked for the process's life: a few per run).  Returns 0 or a code.
 */
int ftk_dd_sigfile_params(int fd, const char *name, struct ftk_dd_params *p,
			  struct ftk_error *err);

struct ftk_dd_stats {
	uint64_t candidates, verified, clusters, removed;
	uint64_t spilled;	/* records whose band hashes went to disk */
};

/*
 * Find the duplicates.  threshold: the similarity at which a candidate pair
 * counts.  against: only pairs of a reference and a non-reference record
 * count, and a non-reference record that matches one is removed as that
 * reference's duplicate; otherwise clusters form and keep picks the
 * survivor.  threads: for verification.  Returns 0 or FTK_EIO.
 */
int ftk_dd_index_resolve(struct ftk_dd_index *x, double threshold, enum ftk_dd_keep keep,
			 int against, struct ftk_dd_stats *st, struct ftk_error *err);

/* Records in the index. */
uint32_t ftk_dd_index_count(const struct ftk_dd_index *x);

/* After resolve: the record it duplicates (UINT32_MAX when kept), and the similarity. */
uint32_t ftk_dd_index_of(const struct ftk_dd_index *x, uint32_t id, double *similarity);
/* A record's place. */
void ftk_dd_index_place(const struct ftk_dd_index *x, uint32_t id, const char **file,
			uint32_t *line, uint32_t *file_index);
/* A record's source name, or NULL without one. */
const char *ftk_dd_index_source_name(const struct ftk_dd_index *x, uint32_t id);
/*
 * Append a record's origin (the JSON object its signature holds) to out,
 * read back from its signature file.  Returns 1 when it appended one, 0 when
 * the record has none, FTK_EIO when the file cannot be read.
 */
int ftk_dd_index_origin(const struct ftk_dd_index *x, uint32_t id, struct strbuf *out);
int ftk_dd_index_is_ref(const struct ftk_dd_index *x, uint32_t id);
/* File names, in index order. */
uint32_t ftk_dd_index_nfiles(const struct ftk_dd_index *x);
const char *ftk_dd_index_file_name(const struct ftk_dd_index *x, uint32_t i);

#endif
