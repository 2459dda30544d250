/*
 * minhash.h: word shingles, MinHash signatures, LSH banding and union-find,
 * the pieces of near-duplicate detection (ftk-dedupe).
 *
 * A text's shingles are its word n-grams (n = 5 by default), each hashed to
 * 64 bits: XXH3-64 of the n words joined by single spaces, with a seed.  A
 * text shorter than n words has one shingle, all its words.  Two texts are
 * near-duplicates when the Jaccard similarity of their shingle sets,
 * |A & B| / |A | B|, reaches a threshold.
 *
 * MinHash estimates that similarity from a fixed-size signature: for each of
 * K = bands x rows hash functions h_i(x) = a_i * x + b_i (mod 2^64, a_i odd,
 * a_i and b_i drawn from the seed), the signature keeps the smallest h_i over
 * the shingles.  Two signatures agree at position i with probability equal
 * to the Jaccard similarity, so the fraction of agreeing positions is an
 * estimate of it.
 *
 * LSH banding cuts the signature into `bands` groups of `rows` values and
 * hashes each group to one 64-bit band hash.  Two texts become a candidate
 * pair when any band hash is equal, which happens with probability
 * 1 - (1 - J^rows)^bands: a steep S-curve around (1/bands)^(1/rows).  The
 * defaults are datatrove's, 14 bands x 8 rows (112 hashes, the curve's
 * midpoint near 0.72).  Candidates are then verified (true Jaccard, or the
 * signature estimate), so the banding decides recall and the verification
 * decides precision.
 *
 * Only the band hashes of every record need to stay in memory; signatures
 * and shingle sets are needed for candidates only.
 */
#ifndef FTK_MINHASH_H
#define FTK_MINHASH_H

#include <stddef.h>
#include <stdint.h>
#include "lib/err.h"
#include "lib/normalize.h"

#define FTK_MINHASH_MAX_PERM 1024

struct ftk_minhash {
	int ngram, bands, rows, k;	/* k = bands * rows */
	uint64_t seed;
	uint64_t *a, *b;		/* (k) the hash functions */
};

/*
 * Set up the hash functions.  Returns 0, or FTK_EUSAGE when ngram < 1,
 * bands < 1, rows < 1 or bands * rows > FTK_MINHASH_MAX_PERM.  Release with
 * ftk_minhash_release().
 */
int ftk_minhash_init(struct ftk_minhash *m, int ngram, int bands, int rows, uint64_t seed,
		     struct ftk_error *err);
void ftk_minhash_release(struct ftk_minhash *m);

/* A growable array of 64-bit values. */
struct ftk_u64vec {
	uint64_t *v;
	size_t n, alloc;
};
void ftk_u64vec_release(struct ftk_u64vec *v);

/*
 * The shingles of a text already split into words: out is reset and gets
 * their 64-bit hashes in text order, repeats included (the signature does
 * not care, and sorting every record's shingles would cost more than
 * hashing them).  Returns their number (0 only for a text without words).
 */
size_t ftk_minhash_shingles(const struct ftk_words *ws, int ngram, uint64_t seed,
			    struct ftk_u64vec *out);

/*
 * The same shingles from a text in the joined form (words separated by
 * single spaces, no space at either end: what ftk_words_split builds, and
 * what ftk_normalize writes when its flags include FTK_NORM_SPACE), read
 * in one pass that keeps only the last n word starts: no array of words is
 * built, so a long text costs its shingles and nothing more.  Returns
 * their number (0 for an empty text).
 */
size_t ftk_minhash_shingles_joined(const char *joined, size_t len, int ngram, uint64_t seed,
				   struct ftk_u64vec *out);

/* Make v a set: sort and drop repeats in place.  Returns the new size. */
size_t ftk_minhash_set(struct ftk_u64vec *v);

/* The hash of one string as a shingle (what ftk_minhash_shingles uses). */
uint64_t ftk_minhash_shingle_hash(const char *s, size_t len, uint64_t seed);

/*
 * The signature (k values) of a shingle set of n hashes.  An empty set gives
 * all UINT64_MAX.
 */
void ftk_minhash_signature(const struct ftk_minhash *m, const uint64_t *sh, size_t n,
			   uint64_t *sig);

/* The band hashes (bands values) of a signature. */
void ftk_minhash_bands(const struct ftk_minhash *m, const uint64_t *sig, uint64_t *band);

/* The signature estimate of Jaccard: the fraction of equal positions of k. */
double ftk_minhash_estimate(const uint64_t *s1, const uint64_t *s2, int k);

/* True Jaccard of two sorted distinct sets (ftk_minhash_set); 1.0 when both are empty. */
double ftk_minhash_jaccard(const uint64_t *a, size_t na, const uint64_t *b, size_t nb);

/*
 * Choose bands and rows (bands * rows <= k) for a Jaccard threshold: among
 * the pairs that make a pair of exactly the threshold's similarity a
 * candidate with probability at least 0.9 (recall matters most: nothing
 * recovers a missed pair, while verification removes false candidates),
 * the one with the least false-positive area under the S-curve below the
 * threshold (the fewest candidates to verify).  Returns 0, or FTK_EUSAGE when the
 * threshold is not in (0, 1).
 */
int ftk_minhash_lsh_params(double threshold, int k, int *bands, int *rows,
			   struct ftk_error *err);

/* Probability that a pair of similarity s becomes a candidate. */
double ftk_minhash_candidate_prob(double s, int bands, int rows);

/*
 * Union-find over n elements (0..n-1), with path halving and union by size.
 */
struct ftk_uf {
	uint32_t *parent, *size;
	size_t n;
};
void ftk_uf_init(struct ftk_uf *u, size_t n);
void ftk_uf_release(struct ftk_uf *u);
/* The representative of x's set. */
uint32_t ftk_uf_find(struct ftk_uf *u, uint32_t x);
/* Join the sets of x and y.  Returns 1 when they were different sets, else 0. */
int ftk_uf_union(struct ftk_uf *u, uint32_t x, uint32_t y);

#endif
