/*
 * test_dedupe.c: how ftk-dedupe's options become a run (prep/dedupe.h,
 * ftk_dd_settings_*), which used to live inside cmd_dedupe's main where
 * only the CLI cases reached it.
 *
 * The LSH split for a threshold is checked against ftk_minhash_lsh_params
 * and against its promise, computed here from the S-curve's formula: a pair
 * at the threshold becomes a candidate with probability at least 0.9.  The
 * CLI cases dedupe-* still run the same paths end to end.
 */
#include <math.h>
#include <string.h>
#include "testutil.h"
#include "lib/normalize.h"
#include "prep/dedupe.h"

static int check(struct ftk_dd_settings *s, struct ftk_error *e)
{
	struct ftk_dd_key *key;
	struct ftk_minhash mh;
	int rc = ftk_dd_settings_check(s, &key, &mh, e);
	if (rc == 0) {
		ck_assert_ptr_nonnull(key);
		ck_assert(s->p.near ? mh.a != NULL : mh.a == NULL);
	} else {
		ck_assert_ptr_null(key);
		ck_assert_ptr_null(mh.a);
	}
	ftk_dd_key_free(key);
	ftk_minhash_release(&mh);
	return rc;
}

START_TEST(defaults_are_one_exact_streaming_pass)
{
	struct ftk_dd_settings s;
	struct ftk_error e;
	unsigned all;
	ftk_dd_settings_init(&s);
	ck_assert_int_eq(check(&s, &e), 0);
	ck_assert_int_eq(ftk_normalize_parse("all", &all, NULL), 0);
	ck_assert_uint_eq(s.p.norm, all);
	ck_assert(!s.p.near && s.p.ngram == 5 && s.p.seed == 1 && !strcmp(s.p.key, "@text"));
	ck_assert(ftk_dd_settings_streaming(&s));
	/* anything that needs a second pass leaves the streaming path */
	ftk_dd_settings_keep(&s, "longest");
	ck_assert(s.keep == FTK_DD_KEEP_LONGEST && !ftk_dd_settings_streaming(&s));
	ftk_dd_settings_keep(&s, "meta.score");
	ck_assert(s.keep == FTK_DD_KEEP_FIELD && !strcmp(s.p.keep_field, "meta.score"));
	ftk_dd_settings_keep(&s, "first");
	ck_assert(s.keep == FTK_DD_KEEP_FIRST && !s.p.keep_field && ftk_dd_settings_streaming(&s));
	s.clusters = "c.jsonl";
	ck_assert(!ftk_dd_settings_streaming(&s));
	s.clusters = NULL;
	s.stage = FTK_DD_SIGNATURES;
	ck_assert(!ftk_dd_settings_streaming(&s));
}
END_TEST

START_TEST(near_bands_and_rows)
{
	struct ftk_dd_settings s;
	struct ftk_error e;
	/* near without a threshold: 14 bands of 8 rows */
	ftk_dd_settings_init(&s);
	s.p.near = 1;
	ck_assert_int_eq(check(&s, &e), 0);
	ck_assert(s.p.bands == 14 && s.p.rows == 8);
	/* a threshold picks the split whose S-curve crosses it, within 112 permutations */
	for (double t = 0.5; t < 0.96; t += 0.05) {
		int b, r;
		ftk_dd_settings_init(&s);
		s.p.near = 1;
		s.threshold = t;
		s.threshold_given = 1;
		ck_assert_int_eq(check(&s, &e), 0);
		ck_assert_int_eq(ftk_minhash_lsh_params(t, 112, &b, &r, NULL), 0);
		ck_assert(s.p.bands == b && s.p.rows == r && b * r <= 112);
		/* a pair at the threshold becomes a candidate with probability >= 0.9:
		 * 1 - (1 - t^r)^b, the S-curve, computed here rather than by minhash.c */
		double pc = 1.0 - pow(1.0 - pow(t, s.p.rows), s.p.bands);
		printf("threshold %.2f: %d x %d, candidate probability %.3f\n", t, b, r, pc);
		ck_assert(pc >= 0.9);
	}
	/* given bands or rows win over the threshold's split */
	ftk_dd_settings_init(&s);
	s.p.near = 1;
	s.threshold = 0.9;
	s.threshold_given = 1;
	s.bands = 20;
	ck_assert_int_eq(check(&s, &e), 0);
	ck_assert(s.p.bands == 20 && s.p.rows == 8);
}
END_TEST

static void refused(struct ftk_dd_settings *s, const char *msg)
{
	struct ftk_error e;
	ck_assert_int_eq(check(s, &e), FTK_EUSAGE);
	ck_assert_int_eq(e.code, FTK_EUSAGE);
	ck_assert_str_eq(e.msg, msg);
}

START_TEST(contradictions_are_refused)
{
	struct ftk_dd_settings s;
	struct ftk_error e;
	static const char *near_only = "--threshold, --bands, --rows and --fast need --mode near";
	ftk_dd_settings_init(&s);
	s.threshold_given = 1;
	refused(&s, near_only);
	ftk_dd_settings_init(&s);
	s.p.fast = 1;
	refused(&s, near_only);
	ftk_dd_settings_init(&s);
	s.rows = 4;
	refused(&s, near_only);
	/* a merge takes the mode from its signature files, so it may say --threshold */
	s.stage = FTK_DD_MERGE;
	ck_assert_int_eq(check(&s, &e), 0);

	ftk_dd_settings_init(&s);
	s.stage = FTK_DD_APPLY;
	s.against = "eval.jsonl";
	refused(&s, "--against does not combine with the sharded mode");
	ftk_dd_settings_init(&s);
	s.stage = FTK_DD_SIGNATURES;
	refused(&s, "--signatures needs -o FILE");
	s.out = "-";
	refused(&s, "--signatures needs -o FILE");
	s.out = "part1.sig.zst";
	refused(&s, "signature files cannot be compressed");
	s.out = "part1.sig";
	s.clusters = "c.jsonl";
	refused(&s, "--clusters belongs to --merge");
	s.clusters = NULL;
	ck_assert_int_eq(check(&s, &e), 0);

	/* the normalize list and the key are checked too, naming the bad word */
	ftk_dd_settings_init(&s);
	s.normalize = "nfc,shouting";
	ck_assert_int_eq(check(&s, &e), FTK_EUSAGE);
	ck_assert_ptr_nonnull(strstr(e.msg, "shouting"));
	ftk_dd_settings_init(&s);
	s.p.key = "@narrator";
	ck_assert_int_eq(check(&s, &e), FTK_EUSAGE);
	ck_assert_ptr_nonnull(strstr(e.msg, "@narrator"));
}
END_TEST

static Suite *dedupe_suite(void)
{
	Suite *s = suite_create("dedupe");
	TCase *tc = tcase_create("settings");
	tcase_add_test(tc, defaults_are_one_exact_streaming_pass);
	tcase_add_test(tc, near_bands_and_rows);
	tcase_add_test(tc, contradictions_are_refused);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(dedupe_suite)
