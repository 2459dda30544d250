/*
 * minhash.c: shingles, MinHash, LSH banding, union-find (see minhash.h).
 *
 * The signature loop is the hot spot of near-duplicate detection: K
 * multiply-adds and minimums per shingle.  It is written as a plain loop over
 * the K hash functions so the compiler keeps it in registers and vectorizes
 * the minimum; hashing the shingle strings themselves costs far less.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include "minhash.h"

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

int ftk_minhash_init(struct ftk_minhash *m, int ngram, int bands, int rows, uint64_t seed,
		     struct ftk_error *err)
{
	memset(m, 0, sizeof(*m));
	if (ngram < 1)
		return ftk_error_msg(err, FTK_EUSAGE, "n-gram size must be at least 1, not %d", ngram);
	if (bands < 1 || rows < 1 || (long)bands * rows > FTK_MINHASH_MAX_PERM)
		return ftk_error_msg(err, FTK_EUSAGE,
				     "bands (%d) and rows (%d) must be at least 1 with at most %d hashes",
				     bands, rows, FTK_MINHASH_MAX_PERM);
	m->ngram = ngram;
	m->bands = bands;
	m->rows = rows;
	m->k = bands * rows;
	m->seed = seed;
	m->a = xmalloc(sizeof(uint64_t) * m->k);
	m->b = xmalloc(sizeof(uint64_t) * m->k);
	uint64_t st = seed;
	for (int i = 0; i < m->k; i++) {
		m->a[i] = splitmix64(&st) | 1;
		m->b[i] = splitmix64(&st);
	}
	return 0;
}

void ftk_minhash_release(struct ftk_minhash *m)
{
	if (!m)
		return;
	free(m->a);
	free(m->b);
	m->a = m->b = NULL;
}

void ftk_u64vec_release(struct ftk_u64vec *v)
{
	if (!v)
		return;
	free(v->v);
	v->v = NULL;
	v->n = v->alloc = 0;
}

uint64_t ftk_minhash_shingle_hash(const char *s, size_t len, uint64_t seed)
{
	return XXH3_64bits_withSeed(s, len, seed);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* LSD radix sort on 64-bit keys, 16 bits a pass; tmp has room for n. */
static void radix_u64(uint64_t *v, uint64_t *tmp, size_t n)
{
	static const int bits = 16;
	size_t *count = xcalloc((size_t)1 << bits, sizeof(size_t));
	for (int pass = 0; pass < 4; pass++) {
		int sh = pass * bits;
		memset(count, 0, sizeof(size_t) << bits);
		for (size_t i = 0; i < n; i++)
			count[(v[i] >> sh) & 0xffff]++;
		size_t sum = 0;
		for (size_t i = 0; i < ((size_t)1 << bits); i++) {
			size_t c = count[i];
			count[i] = sum;
			sum += c;
		}
		for (size_t i = 0; i < n; i++)
			tmp[count[(v[i] >> sh) & 0xffff]++] = v[i];
		memcpy(v, tmp, n * sizeof(*v));
	}
	free(count);
}

size_t ftk_minhash_shingles(const struct ftk_words *ws, int ngram, uint64_t seed,
			    struct ftk_u64vec *out)
{
	out->n = 0;
	if (!ws->n)
		return 0;
	size_t ns = ws->n >= (size_t)ngram ? ws->n - ngram + 1 : 1;
	size_t last = ws->n >= (size_t)ngram ? (size_t)ngram - 1 : ws->n - 1;
	FTK_ALLOC_GROW(out->v, ns, out->alloc);
	for (size_t i = 0; i < ns; i++) {
		const struct ftk_word *a = &ws->w[i], *z = &ws->w[i + last];
		out->v[i] = ftk_minhash_shingle_hash(ws->joined.buf + a->off,
						     z->off + z->len - a->off, seed);
	}
	if (ns > 4096) {
		uint64_t *tmp = xmalloc(ns * sizeof(uint64_t));
		radix_u64(out->v, tmp, ns);
		free(tmp);
	} else {
		qsort(out->v, ns, sizeof(uint64_t), cmp_u64);
	}
	size_t k = 1;
	for (size_t i = 1; i < ns; i++)
		if (out->v[i] != out->v[k - 1])
			out->v[k++] = out->v[i];
	out->n = k;
	return k;
}

void ftk_minhash_signature(const struct ftk_minhash *m, const uint64_t *sh, size_t n,
			   uint64_t *sig)
{
	const int k = m->k;
	const uint64_t *restrict a = m->a, *restrict b = m->b;
	for (int i = 0; i < k; i++)
		sig[i] = UINT64_MAX;
	for (size_t j = 0; j < n; j++) {
		const uint64_t x = sh[j];
		for (int i = 0; i < k; i++) {
			uint64_t v = a[i] * x + b[i];
			sig[i] = v < sig[i] ? v : sig[i];
		}
	}
}

void ftk_minhash_bands(const struct ftk_minhash *m, const uint64_t *sig, uint64_t *band)
{
	for (int i = 0; i < m->bands; i++)
		band[i] = XXH3_64bits_withSeed(sig + (size_t)i * m->rows,
					       sizeof(uint64_t) * m->rows, m->seed + i);
}

double ftk_minhash_estimate(const uint64_t *s1, const uint64_t *s2, int k)
{
	int eq = 0;
	for (int i = 0; i < k; i++)
		eq += s1[i] == s2[i];
	return k ? (double)eq / k : 0.0;
}

double ftk_minhash_jaccard(const uint64_t *a, size_t na, const uint64_t *b, size_t nb)
{
	size_t i = 0, j = 0, inter = 0;
	if (!na && !nb)
		return 1.0;
	while (i < na && j < nb) {
		if (a[i] == b[j]) {
			inter++;
			i++;
			j++;
		} else if (a[i] < b[j]) {
			i++;
		} else {
			j++;
		}
	}
	return (double)inter / (double)(na + nb - inter);
}

double ftk_minhash_candidate_prob(double s, int bands, int rows)
{
	return 1.0 - pow(1.0 - pow(s, rows), bands);
}

/* Area under the S-curve over [lo, hi] by the midpoint rule. */
static double area(double lo, double hi, int bands, int rows)
{
	const int steps = 200;
	double h = (hi - lo) / steps, sum = 0;
	for (int i = 0; i < steps; i++) {
		double p = ftk_minhash_candidate_prob(lo + (i + 0.5) * h, bands, rows);
		sum += p;
	}
	return sum * h;
}

int ftk_minhash_lsh_params(double threshold, int k, int *bands, int *rows,
			   struct ftk_error *err)
{
	if (!(threshold > 0 && threshold < 1))
		return ftk_error_msg(err, FTK_EUSAGE, "threshold must be between 0 and 1, not %g",
				     threshold);
	double best = INFINITY;
	*bands = k;
	*rows = 1;
	for (int b = 1; b <= k; b++) {
		for (int r = 1; b * r <= k; r++) {
			if (ftk_minhash_candidate_prob(threshold, b, r) < 0.9)
				continue;
			double fp = area(0, threshold, b, r);
			if (fp < best) {
				best = fp;
				*bands = b;
				*rows = r;
			}
		}
	}
	return 0;
}

void ftk_uf_init(struct ftk_uf *u, size_t n)
{
	u->n = n;
	u->parent = xmalloc(sizeof(uint32_t) * (n ? n : 1));
	u->size = xmalloc(sizeof(uint32_t) * (n ? n : 1));
	for (size_t i = 0; i < n; i++) {
		u->parent[i] = (uint32_t)i;
		u->size[i] = 1;
	}
}

void ftk_uf_release(struct ftk_uf *u)
{
	if (!u)
		return;
	free(u->parent);
	free(u->size);
	u->parent = u->size = NULL;
	u->n = 0;
}

uint32_t ftk_uf_find(struct ftk_uf *u, uint32_t x)
{
	while (u->parent[x] != x) {
		u->parent[x] = u->parent[u->parent[x]];
		x = u->parent[x];
	}
	return x;
}

int ftk_uf_union(struct ftk_uf *u, uint32_t x, uint32_t y)
{
	x = ftk_uf_find(u, x);
	y = ftk_uf_find(u, y);
	if (x == y)
		return 0;
	if (u->size[x] < u->size[y]) {
		uint32_t t = x;
		x = y;
		y = t;
	}
	u->parent[y] = x;
	u->size[x] += u->size[y];
	return 1;
}
