/*
 * test_hll.c: HyperLogLog estimates against exact counts.
 */
#include <math.h>
#include <xxhash.h>
#include "testutil.h"
#include "lib/err.h"
#include "prep/hll.h"

static void add_range(struct ftk_hll *h, uint64_t from, uint64_t to, int times)
{
	for (int t = 0; t < times; t++)
		for (uint64_t i = from; i < to; i++)
			ftk_hll_add(h, XXH3_64bits(&i, sizeof(i)));
}

START_TEST(estimates_within_error)
{
	static const uint64_t sizes[] = { 0, 1, 10, 1000, 20000, 300000 };
	for (size_t k = 0; k < FTK_ARRAY_SIZE(sizes); k++) {
		struct ftk_hll h;
		ck_assert_int_eq(ftk_hll_init(&h, 14), 0);
		add_range(&h, 0, sizes[k], 2); /* each item twice: duplicates must not count */
		double e = ftk_hll_estimate(&h), n = (double)sizes[k];
		double tol = 4 * ftk_hll_rel_error(&h) * n + 1; /* four standard errors */
		ck_assert_msg(fabs(e - n) <= tol, "n=%.0f estimate %.1f", n, e);
		ftk_hll_release(&h);
	}
}
END_TEST

START_TEST(merge_and_errors)
{
	struct ftk_hll a, b, c;
	ck_assert_int_eq(ftk_hll_init(&a, 12), 0);
	ck_assert_int_eq(ftk_hll_init(&b, 12), 0);
	ck_assert_int_eq(ftk_hll_init(&c, 10), 0);
	add_range(&a, 0, 50000, 1);
	add_range(&b, 25000, 75000, 1);
	ck_assert_int_eq(ftk_hll_merge(&a, &b), 0);
	double e = ftk_hll_estimate(&a);
	ck_assert_msg(fabs(e - 75000) < 4 * ftk_hll_rel_error(&a) * 75000, "union %.0f", e);
	ck_assert_int_eq(ftk_hll_merge(&a, &c), FTK_EMISMATCH);
	ck_assert_double_eq_tol(ftk_hll_rel_error(&a), 1.04 / 64, 1e-12);
	struct ftk_hll bad;
	ck_assert_int_eq(ftk_hll_init(&bad, 3), FTK_EUSAGE);
	ck_assert_int_eq(ftk_hll_init(&bad, 19), FTK_EUSAGE);
	ftk_hll_release(&a);
	ftk_hll_release(&b);
	ftk_hll_release(&c);
}
END_TEST

static Suite *hll_suite(void)
{
	Suite *s = suite_create("hll");
	TCase *tc = tcase_create("hll");
	tcase_add_test(tc, estimates_within_error);
	tcase_add_test(tc, merge_and_errors);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(hll_suite)
