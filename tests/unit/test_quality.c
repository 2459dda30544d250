/*
 * test_quality.c: every Gopher, C4 and FineWeb rule, one text that passes it
 * and one that fails it, with the measured value checked where it can be
 * counted by hand.
 */
#include <math.h>
#include <string.h>
#include "testutil.h"
#include "prep/quality.h"

/* Passes every rule of every set (checked in all_rules_pass). */
static const char good[] =
	"The old harbour town wakes slowly in the winter, and the fishermen check their nets "
	"before the sun is up.\n"
	"Most of the boats have been repaired with wood that came from the forest to the north "
	"of the bay.\n"
	"Visitors often ask whether the lighthouse is still in use, and the answer is that it "
	"guides ships every night.\n"
	"A small museum near the church keeps photographs of storms, wrecks and rescues from the "
	"last two centuries.\n";

static struct ftk_quality *only(const char *rule)
{
	struct ftk_quality *q = ftk_quality_new();
	ck_assert_int_eq(ftk_quality_enable(q, rule, 1, NULL), 1);
	return q;
}

/* Check text against one rule: returns the number of failures (0 or 1). */
static int check1(const char *rule, const char *text, double *value)
{
	struct ftk_quality *q = only(rule);
	const struct ftk_quality_fail *f;
	int n = ftk_quality_check(q, text, strlen(text), &f);
	if (n)
		ck_assert_str_eq(f[0].rule, rule);
	if (value)
		*value = ftk_quality_value(q, rule);
	ftk_quality_free(q);
	return n;
}

static char *repeat(const char *piece, int times, const char *tail)
{
	struct strbuf sb = STRBUF_INIT;
	for (int i = 0; i < times; i++)
		strbuf_addstr(&sb, piece);
	strbuf_addstr(&sb, tail);
	return strbuf_detach(&sb, NULL);
}

START_TEST(all_rules_pass)
{
	struct ftk_quality *q = ftk_quality_new();
	const struct ftk_quality_fail *f;
	ck_assert_int_gt(ftk_quality_enable(q, "gopher", 1, NULL), 20);
	ck_assert_int_ge(ftk_quality_enable(q, "c4", 1, NULL), 8);
	ck_assert_int_eq(ftk_quality_enable(q, "fineweb", 1, NULL), 4);
	int n = ftk_quality_check(q, good, strlen(good), &f);
	if (n) {
		struct strbuf sb = STRBUF_INIT;
		ftk_quality_format(&f[0], &sb);
		ck_abort_msg("good text failed %d rules, first %s", n, sb.buf);
	}
	ck_assert_double_eq(ftk_quality_value(q, "gopher.word_count"), 78);
	ck_assert_double_eq(ftk_quality_value(q, "c4.sentences"), 4);
	ftk_quality_free(q);
}
END_TEST

START_TEST(word_count)
{
	double v;
	ck_assert_int_eq(check1("gopher.word_count", good, NULL), 0);
	/* punctuation-only words do not count */
	ck_assert_int_eq(check1("gopher.word_count", "The cat , sat on - the mat .", &v), 1);
	ck_assert_double_eq(v, 6);
	struct ftk_quality *q = only("gopher.word_count");
	ck_assert_int_eq(ftk_quality_set_bounds(q, "gopher.word_count", "50:60", NULL), 0);
	const struct ftk_quality_fail *f;
	ck_assert_int_eq(ftk_quality_check(q, good, strlen(good), &f), 1);
	ck_assert_int_eq(f[0].below, 0);
	ck_assert_double_eq(f[0].limit, 60);
	ftk_quality_free(q);
}
END_TEST

START_TEST(mean_word_length)
{
	double v;
	ck_assert_int_eq(check1("gopher.mean_word_length", good, NULL), 0);
	/* cores without the punctuation: "aaaa," is 4 characters, "bb." 2 */
	ck_assert_int_eq(check1("gopher.mean_word_length", "aaaa, bb.", &v), 0);
	ck_assert_double_eq(v, 3); /* (4 + 2) / 2: the bound itself passes */
	ck_assert_int_eq(check1("gopher.mean_word_length", "aa, b.", &v), 1);
	ck_assert_double_eq(v, 1.5);
	char *t = repeat("incomprehensibilities ", 60, "");
	ck_assert_int_eq(check1("gopher.mean_word_length", t, &v), 1);
	ck_assert_double_eq(v, 21);
	free(t);
	ck_assert_int_eq(check1("gopher.mean_word_length", "a b c d é f", &v), 1);
	ck_assert_double_eq(v, 1); /* é is one character, not two bytes */
}
END_TEST

START_TEST(symbol_ratios)
{
	double v;
	char *t = repeat("#tag word ", 30, "");
	ck_assert_int_eq(check1("gopher.hash_ratio", good, NULL), 0);
	ck_assert_int_eq(check1("gopher.hash_ratio", t, &v), 1);
	ck_assert_double_eq(v, 0.5); /* 30 hashes over 60 words */
	free(t);
	t = repeat("and then... ", 20, "");
	ck_assert_int_eq(check1("gopher.ellipsis_ratio", good, NULL), 0);
	ck_assert_int_eq(check1("gopher.ellipsis_ratio", t, &v), 1);
	ck_assert_double_eq(v, 0.5);
	free(t);
	t = repeat("and then\xe2\x80\xa6 ", 20, "");
	ck_assert_int_eq(check1("gopher.ellipsis_ratio", t, &v), 1);
	free(t);
}
END_TEST

START_TEST(line_shapes)
{
	double v;
	char *t = repeat("- an item in a list of many items\n", 9, "A closing line.\n");
	ck_assert_int_eq(check1("gopher.bullet_lines", good, NULL), 0);
	ck_assert_int_eq(check1("gopher.bullet_lines", t, &v), 0); /* 9 of 10 is the limit */
	ck_assert_double_eq(v, 0.9);
	free(t);
	t = repeat("\xe2\x80\xa2 an item in a list of many items\n", 10, "");
	ck_assert_int_eq(check1("gopher.bullet_lines", t, &v), 1);
	ck_assert_double_eq(v, 1);
	free(t);
	t = repeat("and the story goes on...\nwith a plain line\n", 2, "");
	ck_assert_int_eq(check1("gopher.ellipsis_lines", good, NULL), 0);
	ck_assert_int_eq(check1("gopher.ellipsis_lines", t, &v), 1);
	ck_assert_double_eq(v, 0.5);
	free(t);
}
END_TEST

START_TEST(alpha_and_stop_words)
{
	double v;
	char *t = repeat("the 12 34 56 78 ", 15, "");
	ck_assert_int_eq(check1("gopher.alpha_words", good, NULL), 0);
	ck_assert_int_eq(check1("gopher.alpha_words", t, &v), 1);
	ck_assert_double_eq(v, 0.2);
	free(t);
	ck_assert_int_eq(check1("gopher.stop_words", good, NULL), 0);
	ck_assert_int_eq(check1("gopher.stop_words", "Cats eat fish. Dogs chase cats. THE end", &v),
			 1);
	ck_assert_double_eq(v, 1); /* "THE" counts: case is ignored */
	ck_assert_int_eq(check1("gopher.stop_words", "The cat, and dogs.", &v), 0);
	ck_assert_double_eq(v, 2);
}
END_TEST

START_TEST(duplicate_lines_and_paragraphs)
{
	double v;
	char *t = repeat("this line repeats itself\n", 3, "one\ntwo\n");
	ck_assert_int_eq(check1("gopher.dup_lines", good, NULL), 0);
	ck_assert_int_eq(check1("gopher.dup_lines", t, &v), 1);
	ck_assert_double_eq(v, 0.4); /* 2 duplicates of 5 lines */
	ck_assert_int_eq(check1("gopher.dup_line_chars", good, NULL), 0);
	ck_assert_int_eq(check1("gopher.dup_line_chars", t, &v), 1);
	ck_assert_double_eq(v, 48.0 / 78.0);
	free(t);
	t = repeat("a paragraph that comes back\nover two lines\n\n", 2, "another one\n\nand a third\n");
	ck_assert_int_eq(check1("gopher.dup_paragraphs", good, NULL), 0);
	ck_assert_int_eq(check1("gopher.dup_paragraphs", t, &v), 0); /* 1 of 4: 0.25 */
	ck_assert_double_eq(v, 0.25);
	free(t);
	t = repeat("a paragraph that comes back\nover two lines\n\n", 3, "another one\n");
	ck_assert_int_eq(check1("gopher.dup_paragraphs", t, &v), 1);
	ck_assert_double_eq(v, 0.5);
	ck_assert_int_eq(check1("gopher.dup_paragraph_chars", good, NULL), 0);
	ck_assert_int_eq(check1("gopher.dup_paragraph_chars", t, &v), 1);
	free(t);
}
END_TEST

START_TEST(top_ngrams)
{
	static const char *const rules[] = { "gopher.top_2gram", "gopher.top_3gram",
					     "gopher.top_4gram" };
	static const char *const pieces[] = { "hot dog ", "hot dog stand ", "hot dog stand owner " };
	for (int i = 0; i < 3; i++) {
		double v;
		ck_assert_int_eq(check1(rules[i], good, NULL), 0);
		char *t = repeat(pieces[i], 8, "and a few other different words to close this out");
		ck_assert_int_eq(check1(rules[i], t, &v), 1);
		ck_assert(v > 0.3);
		free(t);
	}
	/* the 2-gram "hot dog" twice in a longer text: 2 x 6 characters of 71 */
	double v;
	ck_assert_int_eq(check1("gopher.top_2gram",
				"hot dog one two three four five six seven eight nine ten "
				"eleven twelve thirteen hot dog",
				&v),
			 0);
	ck_assert_double_eq_tol(v, 12.0 / 71.0, 1e-9);
}
END_TEST

START_TEST(duplicate_ngrams)
{
	/*
	 * 10 words (39 characters) twice, then 6 other words (37): the scan
	 * counts a repeat and jumps past it, so for n = 5 both halves of the
	 * second copy count (39), for n = 6 only its first 6 words (22), since
	 * what follows the jump is new.
	 */
	static const double chars[11] = { [5] = 39, [6] = 22, [7] = 27, [8] = 32, [9] = 36,
					   [10] = 39 };
	char name[32];
	for (int n = 5; n <= 10; n++) {
		double v;
		snprintf(name, sizeof(name), "gopher.dup_%dgram", n);
		ck_assert_int_eq(check1(name, good, NULL), 0);
		char *t = repeat("one two three four five six seven eight nine ten ", 2,
				 "and then something else entirely different");
		ck_assert_int_eq(check1(name, t, &v), 1);
		ck_assert_double_eq_tol(v, chars[n] / 115.0, 1e-9);
		free(t);
	}
}
END_TEST

START_TEST(c4_rules)
{
	double v;
	static const char internal[] =
		"The boats are old. The nets are new. The town is quiet and calm\n"
		"The museum is open. The church is closed. The harbour is full of boats\n";
	ck_assert_int_eq(check1("c4.sentences", good, &v), 0);
	ck_assert_int_eq(check1("c4.sentences", "The cat sat on the mat. The dog sat on the rug.",
				&v),
			 1);
	ck_assert_double_eq(v, 2);

	/* each line rule: on, the lines go and too few sentences are left; off, they stay */
	struct ftk_quality *q = ftk_quality_new();
	const struct ftk_quality_fail *f;
	ftk_quality_enable(q, "c4", 1, NULL);
	ck_assert_int_eq(ftk_quality_check(q, internal, strlen(internal), &f), 1);
	ck_assert_str_eq(f[0].rule, "c4.sentences");
	ck_assert_double_eq(ftk_quality_value(q, "c4.terminal_punct"), 2);
	ftk_quality_enable(q, "c4.terminal_punct", 0, NULL);
	ck_assert_int_eq(ftk_quality_check(q, internal, strlen(internal), NULL), 0);
	ck_assert_double_eq(ftk_quality_value(q, "c4.sentences"), 4);

	static const char short_lines[] = "Boats are old.\nNets are new.\nThe town is quiet.\n";
	ftk_quality_enable(q, "c4.terminal_punct", 1, NULL);
	ck_assert_int_eq(ftk_quality_check(q, short_lines, strlen(short_lines), NULL), 1);
	ck_assert_double_eq(ftk_quality_value(q, "c4.min_words_per_line"), 3);
	ftk_quality_enable(q, "c4.min_words_per_line", 0, NULL);
	ck_assert_int_eq(ftk_quality_check(q, short_lines, strlen(short_lines), NULL), 0);
	ftk_quality_enable(q, "c4.min_words_per_line", 1, NULL);

	char *js = repeat("Please enable JavaScript to view this page properly.\n", 3, "");
	ck_assert_int_eq(ftk_quality_check(q, js, strlen(js), NULL), 1);
	ck_assert_double_eq(ftk_quality_value(q, "c4.javascript"), 3);
	ftk_quality_enable(q, "c4.javascript", 0, NULL);
	ck_assert_int_eq(ftk_quality_check(q, js, strlen(js), NULL), 0);
	ftk_quality_enable(q, "c4.javascript", 1, NULL);
	free(js);

	char *pol = repeat("Read our privacy policy before you sign up here.\n", 3, "");
	ck_assert_int_eq(ftk_quality_check(q, pol, strlen(pol), NULL), 1);
	ck_assert_double_eq(ftk_quality_value(q, "c4.policy"), 3);
	ftk_quality_enable(q, "c4.policy", 0, NULL);
	ck_assert_int_eq(ftk_quality_check(q, pol, strlen(pol), NULL), 0);
	ftk_quality_enable(q, "c4.policy", 1, NULL);
	free(pol);

	struct strbuf big = STRBUF_INIT;
	strbuf_addstr(&big, good);
	for (int i = 0; i < 3; i++) {
		strbuf_addstr(&big, "This line has one very long word ");
		for (int k = 0; k < 1001; k++)
			strbuf_addch(&big, 'x');
		strbuf_addstr(&big, " in it.\n");
	}
	ck_assert_int_eq(ftk_quality_check(q, big.buf, big.len, NULL), 0);
	ck_assert_double_eq(ftk_quality_value(q, "c4.max_word_length"), 3);
	strbuf_release(&big);

	/* end marks as the reference reads them: citations dropped, "..." is none */
	static const char cites[] =
		"The harbour was built in the year 1820.[1]\n"
		"It was rebuilt after a great storm in 1901. [edit]\n"
		"Ships still use it every single day.[citation needed]\n";
	ck_assert_int_eq(ftk_quality_check(q, cites, strlen(cites), NULL), 0);
	ck_assert_double_eq(ftk_quality_value(q, "c4.terminal_punct"), 0);
	static const char dots[] =
		"The harbour was built in the year 1820...\n"
		"It was rebuilt after a great storm in 1901.\n"
		"Ships still use it every single day [note]\n"
		"The town is quiet and the sea is calm.\n";
	ck_assert_int_eq(ftk_quality_check(q, dots, strlen(dots), NULL), 1);
	ck_assert_double_eq(ftk_quality_value(q, "c4.terminal_punct"), 2);
	ck_assert_double_eq(ftk_quality_value(q, "c4.sentences"), 2);

	/* page-level rules, only in kept lines */
	char *lorem = repeat(good, 1, "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\n");
	ck_assert_int_eq(ftk_quality_check(q, lorem, strlen(lorem), &f), 1);
	ck_assert_str_eq(f[0].rule, "c4.lorem_ipsum");
	free(lorem);
	lorem = repeat(good, 1, "lorem ipsum dolor sit amet\n"); /* no end mark: line dropped first */
	ck_assert_int_eq(ftk_quality_check(q, lorem, strlen(lorem), NULL), 0);
	free(lorem);
	char *curly = repeat(good, 1, "Call the function with { and } around the body.\n");
	ck_assert_int_eq(ftk_quality_check(q, curly, strlen(curly), &f), 1);
	ck_assert_str_eq(f[0].rule, "c4.curly_bracket");
	free(curly);
	ftk_quality_free(q);
}
END_TEST

START_TEST(fineweb_rules)
{
	double v;
	char *t = repeat("a heading without an end mark here\n", 9, "A line that ends.\n");
	ck_assert_int_eq(check1("fineweb.line_punct", good, NULL), 0);
	ck_assert_int_eq(check1("fineweb.line_punct", t, &v), 1);
	ck_assert_double_eq_tol(v, 0.1, 1e-12);
	free(t);
	t = repeat("Short line.\n", 3, "This is a much longer line that is well over thirty characters.\n");
	ck_assert_int_eq(check1("fineweb.short_lines", good, NULL), 0);
	ck_assert_int_eq(check1("fineweb.short_lines", t, &v), 1);
	ck_assert_double_eq(v, 0.75);
	free(t);
	t = repeat(good, 1, "The old harbour town wakes slowly.\nThe old harbour town wakes slowly.\n");
	ck_assert_int_eq(check1("fineweb.dup_line_chars", good, NULL), 0);
	ck_assert_int_eq(check1("fineweb.dup_line_chars", t, &v), 1);
	ck_assert(v > 0.01 && v < 0.2);
	free(t);
	t = repeat("word\n", 20, "");
	ck_assert_int_eq(check1("fineweb.newline_ratio", good, NULL), 0);
	ck_assert_int_eq(check1("fineweb.newline_ratio", t, &v), 1);
	ck_assert_double_eq(v, 1);
	free(t);
}
END_TEST

START_TEST(switches_and_format)
{
	struct ftk_quality *q = ftk_quality_new();
	struct ftk_error e;
	ck_assert_int_eq(ftk_quality_enabled(q), 0);
	ck_assert_int_eq(ftk_quality_enable(q, "gopher.dup_*", 1, NULL), 10);
	ck_assert_int_eq(ftk_quality_enable(q, "gopher.nope", 1, &e), FTK_ENOTFOUND);
	ck_assert(strstr(e.msg, "gopher.nope") != NULL);
	ck_assert_int_eq(ftk_quality_set_bounds(q, "gopher.hash_ratio", "abc", &e), FTK_EUSAGE);
	ck_assert_int_eq(ftk_quality_set_bounds(q, "gopher.stop_words", "5", NULL), 0);
	ftk_quality_enable(q, "gopher.stop_words", 1, NULL);
	const struct ftk_quality_fail *f;
	ck_assert_int_eq(ftk_quality_check(q, "the be to of", 12, &f), 1);
	ck_assert_int_eq(f[0].below, 1);
	ck_assert_double_eq(f[0].limit, 5);
	struct strbuf sb = STRBUF_INIT;
	struct ftk_quality_fail x = { "gopher.mean_word_length", 11.2, 10, 0 };
	ftk_quality_format(&x, &sb);
	ck_assert_str_eq(sb.buf, "gopher.mean_word_length=11.2>10");
	strbuf_reset(&sb);
	struct ftk_quality_fail y = { "fineweb.line_punct", 1.0 / 3, 0.12, 1 };
	ftk_quality_format(&y, &sb);
	ck_assert_str_eq(sb.buf, "fineweb.line_punct=0.333<0.12");
	strbuf_release(&sb);
	ftk_quality_free(q);
}
END_TEST

START_TEST(empty_and_odd_text)
{
	struct ftk_quality *q = ftk_quality_new();
	ftk_quality_enable(q, "gopher", 1, NULL);
	ftk_quality_enable(q, "c4", 1, NULL);
	ftk_quality_enable(q, "fineweb", 1, NULL);
	const struct ftk_quality_fail *f;
	ck_assert_int_gt(ftk_quality_check(q, "", 0, &f), 0);
	ck_assert_str_eq(f[0].rule, "gopher.word_count");
	/* invalid UTF-8 and NULs must not crash or read past the end */
	static const char odd[] = "\xff\xfe abc \0 def \xe2\x82";
	ck_assert_int_gt(ftk_quality_check(q, odd, sizeof(odd) - 1, NULL), 0);
	ftk_quality_free(q);
}
END_TEST

static Suite *quality_suite(void)
{
	Suite *s = suite_create("quality");
	TCase *tc = tcase_create("rules");
	tcase_add_test(tc, all_rules_pass);
	tcase_add_test(tc, word_count);
	tcase_add_test(tc, mean_word_length);
	tcase_add_test(tc, symbol_ratios);
	tcase_add_test(tc, line_shapes);
	tcase_add_test(tc, alpha_and_stop_words);
	tcase_add_test(tc, duplicate_lines_and_paragraphs);
	tcase_add_test(tc, top_ngrams);
	tcase_add_test(tc, duplicate_ngrams);
	tcase_add_test(tc, c4_rules);
	tcase_add_test(tc, fineweb_rules);
	tcase_add_test(tc, switches_and_format);
	tcase_add_test(tc, empty_and_odd_text);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(quality_suite)
