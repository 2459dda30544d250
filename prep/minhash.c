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
	size_t padded = ((size_t)m->k + 7) / 8 * 8;	/* whole vectors of eight */
	m->a = aligned_alloc(64, sizeof(uint64_t) * padded);
	m->b = aligned_alloc(64, sizeof(uint64_t) * padded);
	if (!m->a || !m->b)
		abort();
	uint64_t st = seed;
	for (size_t i = m->k; i < padded; i++)
		m->a[i] = m->b[i] = 0;
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

/* LSD radix sort of 64-bit keys, a byte a pass; tmp has room for n. */
static void radix_u64(uint64_t *v, uint64_t *tmp, size_t n)
{
	size_t count[256];
	uint64_t *src = v, *dst = tmp;
	for (int sh = 0; sh < 64; sh += 8) {
		memset(count, 0, sizeof(count));
		for (size_t i = 0; i < n; i++)
			count[(src[i] >> sh) & 0xff]++;
		size_t sum = 0;
		for (int i = 0; i < 256; i++) {
			size_t c = count[i];
			count[i] = sum;
			sum += c;
		}
		for (size_t i = 0; i < n; i++)
			dst[count[(src[i] >> sh) & 0xff]++] = src[i];
		uint64_t *t = src;
		src = dst;
		dst = t;
	}
	/* eight passes: the result is back in v */
}

/* Sort v[0..n) using v[n..2n) as scratch. */
static void sort_u64(uint64_t *v, size_t n)
{
	if (n <= 32) {
		for (size_t i = 1; i < n; i++) {
			uint64_t x = v[i];
			size_t j = i;
			for (; j > 0 && v[j - 1] > x; j--)
				v[j] = v[j - 1];
			v[j] = x;
		}
		return;
	}
	radix_u64(v, v + n, n);
}

size_t ftk_minhash_shingles(const struct ftk_words *ws, int ngram, uint64_t seed,
			    struct ftk_u64vec *out)
{
	out->n = 0;
	if (!ws->n)
		return 0;
	size_t ns = ws->n >= (size_t)ngram ? ws->n - ngram + 1 : 1;
	size_t last = ws->n >= (size_t)ngram ? (size_t)ngram - 1 : ws->n - 1;
	FTK_ALLOC_GROW(out->v, 2 * ns, out->alloc);	/* the upper half is scratch for ftk_minhash_set */
	for (size_t i = 0; i < ns; i++) {
		const struct ftk_word *a = &ws->w[i], *z = &ws->w[i + last];
		out->v[i] = ftk_minhash_shingle_hash(ws->joined.buf + a->off,
						     z->off + z->len - a->off, seed);
	}
	out->n = ns;
	return ns;
}

size_t ftk_minhash_shingles_joined(const char *s, size_t len, int ngram, uint64_t seed,
				   struct ftk_u64vec *out)
{
	out->n = 0;
	if (!len)
		return 0;
	/* words = spaces + 1; sized from that bound, never doubled */
	size_t words = 1;
	for (const char *p = s, *e = s + len; (p = memchr(p, ' ', (size_t)(e - p))) != NULL; p++)
		words++;
	size_t ns = words >= (size_t)ngram ? words - (size_t)ngram + 1 : 1;
	FTK_ALLOC_GROW(out->v, ns, out->alloc);
	if (words < (size_t)ngram) {	/* all the words are one shingle */
		out->v[0] = ftk_minhash_shingle_hash(s, len, seed);
		out->n = 1;
		return 1;
	}
	/* ring of the starts of the last ngram words */
	size_t ring[64], *start = ngram <= 64 ? ring : xmalloc(sizeof(size_t) * (size_t)ngram);
	size_t w = 0, pos = 0, n = 0;
	for (;;) {
		const char *sp = memchr(s + pos, ' ', len - pos);
		size_t end = sp ? (size_t)(sp - s) : len;	/* this word is [pos, end) */
		start[w % (size_t)ngram] = pos;
		w++;
		if (w >= (size_t)ngram) {
			size_t first = start[(w - (size_t)ngram) % (size_t)ngram];
			out->v[n++] = ftk_minhash_shingle_hash(s + first, end - first, seed);
		}
		if (!sp)
			break;
		pos = end + 1;
	}
	if (start != ring)
		free(start);
	out->n = n;
	return n;
}

size_t ftk_minhash_set(struct ftk_u64vec *v)
{
	if (!v->n)
		return 0;
	FTK_ALLOC_GROW(v->v, 2 * v->n, v->alloc);
	sort_u64(v->v, v->n);
	size_t k = 1;
	for (size_t i = 1; i < v->n; i++)
		if (v->v[i] != v->v[k - 1])
			v->v[k++] = v->v[i];
	v->n = k;
	return k;
}

/*
 * Eight hash functions at a time as one vector; with AVX-512 a vector is one
 * register, and the clone for it (chosen at load time) does eight multiply-
 * adds and unsigned minimums per instruction.  a and b are padded to a
 * multiple of eight and 64-byte aligned (ftk_minhash_init).
 */
typedef uint64_t v8u __attribute__((vector_size(64)));

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SIGNATURE_CLONES __attribute__((target_clones("arch=x86-64-v4", "default")))
#else
#define SIGNATURE_CLONES
#endif

SIGNATURE_CLONES
void ftk_minhash_signature(const struct ftk_minhash *m, const uint64_t *sh, size_t n,
			   uint64_t *sig)
{
	const int nv = (m->k + 7) / 8;
	const v8u *a = (const v8u *)m->a, *b = (const v8u *)m->b;
	v8u acc[FTK_MINHASH_MAX_PERM / 8];
	for (int i = 0; i < nv; i++)
		acc[i] = (v8u){ 0 } - 1;
	for (size_t j = 0; j < n; j++) {
		const uint64_t x = sh[j];
		for (int i = 0; i < nv; i++) {
			v8u v = a[i] * x + b[i];
			v8u lt = (v8u)(v < acc[i]);	/* all ones where v is smaller */
			acc[i] = (v & lt) | (acc[i] & ~lt);
		}
	}
	memcpy(sig, acc, sizeof(uint64_t) * m->k);
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
