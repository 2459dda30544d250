/*
 * hll.h: HyperLogLog, an estimate of how many distinct items a stream holds.
 *
 * Flajolet, Fusy, Gandouet and Meunier (2007): 2^p one-byte registers; each
 * item's 64-bit hash picks a register with its top p bits and offers the
 * position of the first 1 in the rest; the harmonic mean of 2^-register
 * gives the estimate, with a relative standard error of 1.04 / sqrt(2^p)
 * (0.81% at p = 14, 16 KiB).  Small cardinalities use linear counting over
 * the empty registers, as the paper does; with 64-bit hashes there is no
 * large-range correction to make.  ftk-stats uses it for the duplicate rate
 * (1 - distinct / records) in constant memory.
 */
#ifndef FTK_HLL_H
#define FTK_HLL_H

#include <stdint.h>

struct ftk_hll {
	int p;			/* 4..18 */
	uint8_t *reg;		/* 2^p registers (owned) */
};

/* Set up with 2^p registers.  Returns 0, or FTK_EUSAGE for p outside 4..18. */
int ftk_hll_init(struct ftk_hll *h, int p);
/* Free the registers (the struct itself is the caller's). */
void ftk_hll_release(struct ftk_hll *h);
/* Add an item by its 64-bit hash (a good hash: xxHash, not the identity). */
void ftk_hll_add(struct ftk_hll *h, uint64_t hash);
/* Fold src into dst (same p).  Returns 0, or FTK_EMISMATCH. */
int ftk_hll_merge(struct ftk_hll *dst, const struct ftk_hll *src);
/* The estimated number of distinct items. */
double ftk_hll_estimate(const struct ftk_hll *h);
/* The relative standard error of the estimate, 1.04 / sqrt(2^p). */
double ftk_hll_rel_error(const struct ftk_hll *h);

#endif
