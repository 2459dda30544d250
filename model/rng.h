/*
 * rng.h: the one seeded random generator of the model runtime and the
 * trainer.
 *
 * xoshiro256** (Blackman and Vigna, public domain), seeded with four
 * outputs of splitmix64, the seeding its authors recommend.  Everything
 * that draws random numbers in ftk's model code uses it, so a stream is a
 * pure function of its seed on every platform:
 *
 *   generate.c  sampling (temperature, top-k, top-p): seeded by --seed
 *   model.c     LoRA A initialisation: seeded by the LoRA seed
 *   data.c      the epoch order (Fisher-Yates with ftk_rng_below): seeded
 *               from (seed, epoch)
 *
 * LoRA dropout does not draw from a stream: each mask element is a hash of
 * (stream, index) (ftk_dropout_keep in ops.h), so the CUDA kernels draw the
 * same masks without sharing a state.  splitmix64 here is that hash's
 * finaliser (ftk_mix64) plus its counter.
 */
#ifndef FTK_MODEL_RNG_H
#define FTK_MODEL_RNG_H

#include <stdint.h>

struct ftk_rng {
	uint64_t s[4];
};

/* The next splitmix64 output; advances *x. */
uint64_t ftk_splitmix64(uint64_t *x);

/* Seed r from one integer: its four words are splitmix64's first four outputs. */
void ftk_rng_seed(struct ftk_rng *r, uint64_t seed);

/* The next 64 bits of xoshiro256**; advances r. */
uint64_t ftk_rng_next(struct ftk_rng *r);

/* A uniform double in [0, 1): the top 53 bits of the next output. */
double ftk_rng_uniform(struct ftk_rng *r);

/*
 * A uniform integer in [0, n) (n >= 1) without modulo bias (Lemire's
 * multiply-and-reject): draws one output, rarely more.
 */
uint64_t ftk_rng_below(struct ftk_rng *r, uint64_t n);

#endif
