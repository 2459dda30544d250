/*
 * test_minhash.c: shingles, MinHash, LSH banding and union-find, each
 * against a naive implementation written here from the definitions.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include "testutil.h"
#include "prep/minhash.h"

static uint64_t rng_state = 42;
static uint64_t rnd(void)
{
	/* xorshift64*, so the test does not depend on the libc's rand() */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

static int cmp64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Naive shingles: split at spaces with strtok, build each n-gram string, hash, sort, unique. */
static size_t naive_shingles(const char *text, int n, uint64_t seed, uint64_t *out)
{
	char *copy = strdup(text), *save = NULL, *w;
	char *words[4096];
	size_t nw = 0, k = 0;
	for (w = strtok_r(copy, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save))
		words[nw++] = w;
	if (nw) {
		size_t ns = nw >= (size_t)n ? nw - n + 1 : 1;
		size_t len = nw >= (size_t)n ? (size_t)n : nw;
		for (size_t i = 0; i < ns; i++) {
			char buf[8192] = "";
			for (size_t j = 0; j < len; j++) {
				if (j)
					strcat(buf, " ");
				strcat(buf, words[i + j]);
			}
			out[k++] = XXH3_64bits_withSeed(buf, strlen(buf), seed);
		}
		qsort(out, k, sizeof(*out), cmp64);
		size_t u = 1;
		for (size_t i = 1; i < k; i++)
			if (out[i] != out[u - 1])
				out[u++] = out[i];
		k = u;
	}
	free(copy);
	return k;
}

static const char *vocab[] = { "the", "cat", "sat", "on", "mat", "a", "dog", "ran",
			       "far", "away", "from", "home", "and", "then", "came", "back" };

static void random_text(char *buf, size_t nwords)
{
	buf[0] = 0;
	for (size_t i = 0; i < nwords; i++) {
		if (i)
			strcat(buf, (rnd() & 7) ? " " : "  \t");
		strcat(buf, vocab[rnd() % FTK_ARRAY_SIZE(vocab)]);
	}
}

START_TEST(shingles_match_naive)
{
	struct ftk_words ws;
	struct ftk_u64vec sh = { 0 };
	static uint64_t want[4096];
	static char text[65536];
	ftk_words_init(&ws);
	for (int trial = 0; trial < 200; trial++) {
		size_t nw = rnd() % 60;
		int n = 1 + (int)(rnd() % 6);
		random_text(text, nw);
		ftk_words_split(&ws, text, strlen(text));
		ftk_minhash_shingles(&ws, n, 7, &sh);
		size_t got = ftk_minhash_set(&sh);
		size_t exp = naive_shingles(text, n, 7, want);
		ck_assert_uint_eq(got, exp);
		if (got)
			ck_assert_int_eq(memcmp(sh.v, want, got * sizeof(uint64_t)), 0);
	}
	ftk_words_release(&ws);
	ftk_u64vec_release(&sh);
}
END_TEST

/*
 * ftk_minhash_shingles_joined over ftk_normalize's text (space
 * normalization on) gives exactly ftk_minhash_shingles over
 * ftk_normalize_words' word array, in order and with repeats: ftk-dedupe
 * --near signs long records the first way and short ones used to be signed
 * the second.  Texts mix the random words with Unicode spaces (NBSP,
 * ideographic space), controls, punctuation, case and a decomposed accent;
 * n runs past the word count and past the 64-word ring.
 */
START_TEST(shingles_joined_match_word_array)
{
	static const char *extra[] = { "\xc2\xa0", "\xe3\x80\x80", "\x01", "\n", "!", "...",
				       "Cat", "CAF\x45\xcc\x81", "\xc3\xa9t\xc3\xa9", " ", "" };
	static const unsigned flags[] = { FTK_NORM_ALL, FTK_NORM_SPACE,
					  FTK_NORM_SPACE | FTK_NORM_CASE,
					  FTK_NORM_SPACE | FTK_NORM_PUNCT, FTK_NORM_SPACE | FTK_NORM_NFC };
	static char text[65536];
	struct ftk_words ws;
	struct ftk_u64vec a = { 0 }, b = { 0 };
	struct strbuf norm = STRBUF_INIT;
	ftk_words_init(&ws);
	for (int trial = 0; trial < 400; trial++) {
		size_t nw = rnd() % 90;
		text[0] = 0;
		for (size_t i = 0; i < nw; i++) {
			strcat(text, (rnd() & 3) ? " " : extra[rnd() % FTK_ARRAY_SIZE(extra)]);
			strcat(text, (rnd() & 3) ? vocab[rnd() % FTK_ARRAY_SIZE(vocab)]
						 : extra[rnd() % FTK_ARRAY_SIZE(extra)]);
		}
		int n = trial % 10 == 9 ? 70 : 1 + (int)(rnd() % 6);
		unsigned f = flags[rnd() % FTK_ARRAY_SIZE(flags)];
		strbuf_reset(&norm);
		ck_assert_int_eq(ftk_normalize(text, strlen(text), f, &norm, NULL), 0);
		ck_assert_int_ge(ftk_normalize_words(text, strlen(text), f, &ws, NULL), 0);
		ck_assert_uint_eq(norm.len, ws.joined.len);
		ck_assert_int_eq(memcmp(norm.buf, ws.joined.buf, norm.len), 0);
		size_t got = ftk_minhash_shingles_joined(norm.buf, norm.len, n, 7, &a);
		size_t want = ftk_minhash_shingles(&ws, n, 7, &b);
		ck_assert_uint_eq(got, want);
		ck_assert_uint_eq(a.n, got);
		if (got)
			ck_assert_int_eq(memcmp(a.v, b.v, got * sizeof(uint64_t)), 0);
	}
	ck_assert_uint_eq(ftk_minhash_shingles_joined("", 0, 5, 7, &a), 0);
	ftk_words_release(&ws);
	ftk_u64vec_release(&a);
	ftk_u64vec_release(&b);
	strbuf_release(&norm);
}
END_TEST

START_TEST(signature_matches_definition)
{
	struct ftk_minhash m;
	ck_assert_int_eq(ftk_minhash_init(&m, 5, 14, 8, 3, NULL), 0);
	uint64_t set[300], sig[112];
	for (int trial = 0; trial < 20; trial++) {
		size_t n = 1 + rnd() % 300;
		for (size_t i = 0; i < n; i++)
			set[i] = rnd();
		ftk_minhash_signature(&m, set, n, sig);
		for (int i = 0; i < m.k; i++) {
			uint64_t best = UINT64_MAX;
			for (size_t j = 0; j < n; j++) {
				uint64_t v = m.a[i] * set[j] + m.b[i];
				if (v < best)
					best = v;
			}
			ck_assert_uint_eq(sig[i], best);
		}
	}
	/* the hash functions are distinct and odd-multiplied */
	for (int i = 0; i < m.k; i++) {
		ck_assert(m.a[i] & 1);
		for (int j = 0; j < i; j++)
			ck_assert(m.a[i] != m.a[j]);
	}
	ftk_minhash_release(&m);
}
END_TEST

/* Two sets with a chosen overlap: |A & B| = inter, |A| = |B| = size. */
static void make_pair(uint64_t *a, uint64_t *b, size_t size, size_t inter)
{
	for (size_t i = 0; i < size; i++) {
		a[i] = rnd();
		b[i] = i < inter ? a[i] : rnd();
	}
	qsort(a, size, sizeof(*a), cmp64);
	qsort(b, size, sizeof(*b), cmp64);
}

START_TEST(estimate_is_unbiased)
{
	struct ftk_minhash m;
	ck_assert_int_eq(ftk_minhash_init(&m, 5, 14, 8, 11, NULL), 0);
	static uint64_t a[200], b[200];
	uint64_t sa[112], sb[112];
	double sum_err = 0, sum_abs = 0;
	int trials = 400;
	for (int t = 0; t < trials; t++) {
		size_t inter = rnd() % 201;
		make_pair(a, b, 200, inter);
		double j = ftk_minhash_jaccard(a, 200, b, 200);
		ck_assert_double_eq_tol(j, (double)inter / (400 - inter), 1e-12);
		ftk_minhash_signature(&m, a, 200, sa);
		ftk_minhash_signature(&m, b, 200, sb);
		double e = ftk_minhash_estimate(sa, sb, m.k);
		sum_err += e - j;
		sum_abs += fabs(e - j);
	}
	/* standard error of one estimate is at most 0.5/sqrt(112) = 0.047 */
	printf("minhash estimate: mean error %.4f, mean |error| %.4f over %d pairs\n",
	       sum_err / trials, sum_abs / trials, trials);
	ck_assert(fabs(sum_err / trials) < 0.01);
	ck_assert(sum_abs / trials < 0.05);
	ftk_minhash_release(&m);
}
END_TEST

START_TEST(banding_follows_the_s_curve)
{
	struct ftk_minhash m;
	ck_assert_int_eq(ftk_minhash_init(&m, 5, 14, 8, 5, NULL), 0);
	static uint64_t a[100], b[100];
	uint64_t sa[112], sb[112], ba[14], bb[14];
	const size_t inters[] = { 30, 60, 75, 90 };	/* J = 0.176, 0.429, 0.6, 0.818 */
	for (size_t q = 0; q < FTK_ARRAY_SIZE(inters); q++) {
		int hits = 0, trials = 600;
		double j = (double)inters[q] / (200 - inters[q]);
		for (int t = 0; t < trials; t++) {
			make_pair(a, b, 100, inters[q]);
			ftk_minhash_signature(&m, a, 100, sa);
			ftk_minhash_signature(&m, b, 100, sb);
			ftk_minhash_bands(&m, sa, ba);
			ftk_minhash_bands(&m, sb, bb);
			int hit = 0;
			for (int i = 0; i < 14; i++) {
				/* naive: a band matches when all its rows match */
				int all = !memcmp(sa + i * 8, sb + i * 8, 8 * sizeof(uint64_t));
				ck_assert_int_eq(all, ba[i] == bb[i]);
				hit |= all;
			}
			hits += hit;
		}
		double p = ftk_minhash_candidate_prob(j, 14, 8), got = (double)hits / trials;
		printf("J=%.3f candidate rate %.3f, S-curve %.3f\n", j, got, p);
		ck_assert(fabs(got - p) < 4 * sqrt(p * (1 - p) / trials) + 0.01);
	}
	ftk_minhash_release(&m);
}
END_TEST

START_TEST(jaccard_matches_naive)
{
	uint64_t a[50], b[50];
	for (int t = 0; t < 200; t++) {
		size_t na = rnd() % 50, nb = rnd() % 50;
		for (size_t i = 0; i < na; i++)
			a[i] = rnd() % 60;
		for (size_t i = 0; i < nb; i++)
			b[i] = rnd() % 60;
		qsort(a, na, 8, cmp64);
		qsort(b, nb, 8, cmp64);
		size_t ua = 0, ub = 0;
		for (size_t i = 0; i < na; i++)
			if (!ua || a[i] != a[ua - 1])
				a[ua++] = a[i];
		for (size_t i = 0; i < nb; i++)
			if (!ub || b[i] != b[ub - 1])
				b[ub++] = b[i];
		/* naive: count membership over the value range */
		int inter = 0, uni = 0;
		for (uint64_t v = 0; v < 60; v++) {
			int ia = 0, ib = 0;
			for (size_t i = 0; i < ua; i++)
				ia |= a[i] == v;
			for (size_t i = 0; i < ub; i++)
				ib |= b[i] == v;
			inter += ia && ib;
			uni += ia || ib;
		}
		double want = uni ? (double)inter / uni : 1.0;
		ck_assert_double_eq_tol(ftk_minhash_jaccard(a, ua, b, ub), want, 1e-12);
	}
}
END_TEST

START_TEST(lsh_params_fit_the_threshold)
{
	const double th[] = { 0.5, 0.7, 0.8, 0.9 };
	for (size_t i = 0; i < FTK_ARRAY_SIZE(th); i++) {
		int b = 0, r = 0;
		ck_assert_int_eq(ftk_minhash_lsh_params(th[i], 112, &b, &r, NULL), 0);
		ck_assert(b * r <= 112);
		double at = ftk_minhash_candidate_prob(th[i], b, r);
		double lo = ftk_minhash_candidate_prob(th[i] - 0.3, b, r);
		printf("threshold %.2f: %d bands x %d rows, P(J)=%.3f P(J-0.3)=%.3f\n", th[i], b, r,
		       at, lo);
		ck_assert(at >= 0.9);
		ck_assert(lo < 0.25);
		/* no other pair with P(J) >= 0.9 makes fewer candidates at J - 0.3 by much */
		for (int bb = 1; bb <= 112; bb++)
			for (int rr = 1; bb * rr <= 112; rr++)
				if (ftk_minhash_candidate_prob(th[i], bb, rr) >= 0.9)
					ck_assert(ftk_minhash_candidate_prob(th[i] - 0.3, bb, rr) > lo / 2);
	}
	int b, r;
	ck_assert_int_eq(ftk_minhash_lsh_params(1.0, 112, &b, &r, NULL), FTK_EUSAGE);
}
END_TEST

START_TEST(union_find_matches_naive)
{
	enum { N = 300 };
	for (int t = 0; t < 30; t++) {
		struct ftk_uf u;
		int label[N];
		ftk_uf_init(&u, N);
		for (int i = 0; i < N; i++)
			label[i] = i;
		int edges = (int)(rnd() % 400), joins = 0;
		int ea[400], eb[400];
		for (int e = 0; e < edges; e++) {
			ea[e] = (int)(rnd() % N);
			eb[e] = (int)(rnd() % N);
			joins += ftk_uf_union(&u, (uint32_t)ea[e], (uint32_t)eb[e]);
		}
		/* naive: propagate the smallest label along edges until nothing changes */
		for (int changed = 1; changed;) {
			changed = 0;
			for (int e = 0; e < edges; e++) {
				int m = label[ea[e]] < label[eb[e]] ? label[ea[e]] : label[eb[e]];
				if (label[ea[e]] != m || label[eb[e]] != m) {
					label[ea[e]] = label[eb[e]] = m;
					changed = 1;
				}
			}
		}
		int comps = 0;
		for (int i = 0; i < N; i++)
			comps += label[i] == i;
		ck_assert_int_eq(joins, N - comps);
		for (int i = 0; i < N; i++)
			for (int j = 0; j < N; j++)
				ck_assert_int_eq(ftk_uf_find(&u, (uint32_t)i) == ftk_uf_find(&u, (uint32_t)j),
						 label[i] == label[j]);
		ftk_uf_release(&u);
	}
}
END_TEST

START_TEST(init_rejects_bad_params)
{
	struct ftk_minhash m;
	struct ftk_error e;
	ck_assert_int_eq(ftk_minhash_init(&m, 0, 14, 8, 1, &e), FTK_EUSAGE);
	ck_assert_int_eq(ftk_minhash_init(&m, 5, 100, 100, 1, &e), FTK_EUSAGE);
	ck_assert_str_eq(e.msg, "bands (100) and rows (100) must be at least 1 with at most 1024 hashes");
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("minhash");
	TCase *tc = tcase_create("minhash");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, shingles_match_naive);
	tcase_add_test(tc, shingles_joined_match_word_array);
	tcase_add_test(tc, signature_matches_definition);
	tcase_add_test(tc, estimate_is_unbiased);
	tcase_add_test(tc, banding_follows_the_s_curve);
	tcase_add_test(tc, jaccard_matches_naive);
	tcase_add_test(tc, lsh_params_fit_the_threshold);
	tcase_add_test(tc, union_find_matches_naive);
	tcase_add_test(tc, init_rejects_bad_params);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(make_suite)
