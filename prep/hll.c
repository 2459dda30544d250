/*
 * hll.c: HyperLogLog (see hll.h).
 */
#include <math.h>
#include <stdlib.h>
#include "lib/err.h"
#include "prep/hll.h"

int ftk_hll_init(struct ftk_hll *h, int p)
{
	h->p = 0;
	h->reg = NULL;
	if (p < 4 || p > 18)
		return FTK_EUSAGE;
	h->p = p;
	h->reg = xcalloc((size_t)1 << p, 1);
	return 0;
}

void ftk_hll_release(struct ftk_hll *h)
{
	free(h->reg);
	h->reg = NULL;
}

void ftk_hll_add(struct ftk_hll *h, uint64_t hash)
{
	size_t idx = (size_t)(hash >> (64 - h->p));
	uint64_t rest = hash << h->p | (uint64_t)1 << (h->p - 1); /* a 1 bounds the count */
	uint8_t rho = (uint8_t)(__builtin_clzll(rest) + 1);
	if (rho > h->reg[idx])
		h->reg[idx] = rho;
}

int ftk_hll_merge(struct ftk_hll *dst, const struct ftk_hll *src)
{
	if (dst->p != src->p)
		return FTK_EMISMATCH;
	for (size_t i = 0; i < (size_t)1 << dst->p; i++)
		if (src->reg[i] > dst->reg[i])
			dst->reg[i] = src->reg[i];
	return 0;
}

double ftk_hll_estimate(const struct ftk_hll *h)
{
	size_t m = (size_t)1 << h->p, zeros = 0;
	double sum = 0;
	for (size_t i = 0; i < m; i++) {
		sum += ldexp(1.0, -h->reg[i]);
		zeros += h->reg[i] == 0;
	}
	double md = (double)m, alpha;
	if (m == 16)
		alpha = 0.673;
	else if (m == 32)
		alpha = 0.697;
	else if (m == 64)
		alpha = 0.709;
	else
		alpha = 0.7213 / (1 + 1.079 / md);
	double e = alpha * md * md / sum;
	if (e <= 2.5 * md && zeros)
		e = md * log(md / (double)zeros);
	return e;
}

double ftk_hll_rel_error(const struct ftk_hll *h)
{
	return 1.04 / sqrt((double)((size_t)1 << h->p));
}
