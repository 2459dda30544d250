/*
 * rng.c: xoshiro256** seeded by splitmix64 (see rng.h).
 *
 * The streams are part of ftk's reproducibility promise (the same seed
 * gives the same sample, the same LoRA init and the same epoch order as
 * before), so nothing here may change a single output: tests/unit/test_rng.c
 * pins the first outputs against the authors' reference values.
 */
#include "model/rng.h"

#include <stddef.h>
#include "model/ops.h"

uint64_t ftk_splitmix64(uint64_t *x)
{
	uint64_t z = *x;
	*x += 0x9e3779b97f4a7c15ull;
	return ftk_mix64(z);	/* the finaliser of z + the increment */
}

void ftk_rng_seed(struct ftk_rng *r, uint64_t seed)
{
	uint64_t x = seed;
	for (int i = 0; i < 4; i++)
		r->s[i] = ftk_splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t ftk_rng_next(struct ftk_rng *r)
{
	uint64_t *s = r->s, result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

double ftk_rng_uniform(struct ftk_rng *r)
{
	return (double)(ftk_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

uint64_t ftk_rng_below(struct ftk_rng *r, uint64_t n)
{
	uint64_t threshold = (0 - n) % n;
	for (;;) {
		__uint128_t m = (__uint128_t)ftk_rng_next(r) * n;
		if ((uint64_t)m >= threshold)
			return (uint64_t)(m >> 64);
	}
}
