/*
 * test_normalize.c: text normalization and word splitting.
 *
 * The NFC cases are the examples of Unicode Standard Annex #15 ("Unicode
 * Normalization Forms", figures 3 to 6), so the expected strings come from
 * the standard, not from this code.
 */
#include <string.h>
#include "testutil.h"
#include "lib/normalize.h"

static char *norm(const char *s, unsigned flags)
{
	static struct strbuf sb = STRBUF_INIT;
	strbuf_reset(&sb);
	ck_assert_int_eq(ftk_normalize(s, strlen(s), flags, &sb, NULL), 0);
	return sb.buf;
}

START_TEST(parse_and_name)
{
	unsigned f = 99;
	struct ftk_error e;
	char buf[64];
	ck_assert_int_eq(ftk_normalize_parse("case,space", &f, &e), 0);
	ck_assert_uint_eq(f, FTK_NORM_CASE | FTK_NORM_SPACE);
	ck_assert_str_eq(ftk_normalize_name(f, buf, sizeof(buf)), "case,space");
	ck_assert_int_eq(ftk_normalize_parse("none", &f, &e), 0);
	ck_assert_uint_eq(f, 0);
	ck_assert_str_eq(ftk_normalize_name(f, buf, sizeof(buf)), "none");
	ck_assert_int_eq(ftk_normalize_parse("all", &f, &e), 0);
	ck_assert_str_eq(ftk_normalize_name(f, buf, sizeof(buf)), "nfc,case,punct,space");
	ck_assert_int_eq(ftk_normalize_parse("case,lower", &f, &e), FTK_EUSAGE);
	ck_assert_str_eq(e.msg, "unknown normalization 'lower' (known: nfc, case, punct, space, all, none)");
}
END_TEST

START_TEST(each_step_alone)
{
	const char *s = "  Hello,\t\tWORLD!  ";
	ck_assert_str_eq(norm(s, 0), s);
	ck_assert_str_eq(norm(s, FTK_NORM_CASE), "  hello,\t\tworld!  ");
	ck_assert_str_eq(norm(s, FTK_NORM_PUNCT), "  Hello \t\tWORLD   ");
	ck_assert_str_eq(norm(s, FTK_NORM_SPACE), "Hello, WORLD!");
	ck_assert_str_eq(norm(s, FTK_NORM_ALL), "hello world");
	/* punctuation between words still separates them */
	ck_assert_str_eq(norm("end.Next", FTK_NORM_PUNCT | FTK_NORM_SPACE), "end Next");
}
END_TEST

START_TEST(nfc_uax15_examples)
{
	/* A + combining ring above -> U+00C5 */
	ck_assert_str_eq(norm("A\xCC\x8A", FTK_NORM_NFC), "\xC3\x85");
	/* ANGSTROM SIGN U+212B -> U+00C5 (a singleton) */
	ck_assert_str_eq(norm("\xE2\x84\xAB", FTK_NORM_NFC), "\xC3\x85");
	/* U+1E9B U+0323 stays as it is under NFC */
	ck_assert_str_eq(norm("\xE1\xBA\x9B\xCC\xA3", FTK_NORM_NFC), "\xE1\xBA\x9B\xCC\xA3");
	/* e + combining acute == U+00E9 only after NFC */
	ck_assert_str_ne(norm("e\xCC\x81", 0), "\xC3\xA9");
	ck_assert_str_eq(norm("e\xCC\x81", FTK_NORM_NFC), "\xC3\xA9");
}
END_TEST

START_TEST(unicode_case_punct_space)
{
	/* É C O L E -> école; Greek capital sigma -> small */
	ck_assert_str_eq(norm("\xC3\x89" "COLE \xCE\xA3", FTK_NORM_CASE), "\xC3\xA9" "cole \xCF\x83");
	/* guillemets (Pi/Pf) and the euro sign (Sc) are punctuation; NBSP and ideographic space are space */
	ck_assert_str_eq(norm("\xC2\xAB" "a\xC2\xA0\xC2\xA0" "b\xE3\x80\x80\xE2\x82\xAC" "c\xC2\xBB", FTK_NORM_ALL),
			 "a b c");
	/* CJK text keeps its characters */
	ck_assert_str_eq(norm("\xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x81", FTK_NORM_ALL), "\xE4\xBD\xA0\xE5\xA5\xBD");
}
END_TEST

START_TEST(invalid_utf8)
{
	struct strbuf sb = STRBUF_INIT;
	struct ftk_error e;
	strbuf_addstr(&sb, "kept");
	ck_assert_int_eq(ftk_normalize("ab\xC3(", 4, FTK_NORM_ALL, &sb, &e), FTK_EUTF8);
	ck_assert_str_eq(e.msg, "invalid UTF-8 at byte 3");
	ck_assert_str_eq(sb.buf, "kept");
	strbuf_release(&sb);
}
END_TEST

START_TEST(words)
{
	struct ftk_words ws;
	ftk_words_init(&ws);
	const char *s = "  one\ttwo \n three\xE3\x80\x80" "four ";
	ck_assert_uint_eq(ftk_words_split(&ws, s, strlen(s)), 4);
	ck_assert_str_eq(ws.joined.buf, "one two three four");
	ck_assert_uint_eq(ws.w[2].off, 8);
	ck_assert_uint_eq(ws.w[2].len, 5);
	ck_assert_uint_eq(ftk_words_split(&ws, "", 0), 0);
	ck_assert_str_eq(ws.joined.buf, "");
	ck_assert_uint_eq(ftk_words_split(&ws, "x", 1), 1);
	ck_assert_str_eq(ws.joined.buf, "x");
	ftk_words_release(&ws);
}
END_TEST

/* normalize-and-split in one pass equals ftk_normalize then ftk_words_split */
START_TEST(words_in_one_pass)
{
	static const char *parts[] = { "Hello", ",", " ", "  ", "\t", "WORLD", "e\xCC\x81", "\xC3\x89t\xC3\xA9",
				       "\xE2\x80\x9C", "quote\xE2\x80\x9D", "\xC2\xA0", "\xE3\x80\x80", "x", "!", "\n",
				       "\xE4\xBD\xA0\xE5\xA5\xBD", "a.b", "" };
	const unsigned flagsets[] = { FTK_NORM_ALL, FTK_NORM_SPACE, FTK_NORM_SPACE | FTK_NORM_PUNCT,
				      FTK_NORM_CASE, 0, FTK_NORM_NFC | FTK_NORM_SPACE };
	struct ftk_words a, b;
	struct strbuf sb = STRBUF_INIT;
	unsigned seed = 1;
	ftk_words_init(&a);
	ftk_words_init(&b);
	for (int t = 0; t < 3000; t++) {
		char text[512] = "";
		int np = (int)((seed = seed * 1103515245u + 12345u) >> 16) % 12;
		for (int i = 0; i < np; i++)
			strcat(text, parts[((seed = seed * 1103515245u + 12345u) >> 16) % FTK_ARRAY_SIZE(parts)]);
		unsigned f = flagsets[t % FTK_ARRAY_SIZE(flagsets)];
		strbuf_reset(&sb);
		ck_assert_int_eq(ftk_normalize(text, strlen(text), f, &sb, NULL), 0);
		ftk_words_split(&b, sb.buf, sb.len);
		ck_assert_int_eq(ftk_normalize_words(text, strlen(text), f, &a, NULL), (long)b.n);
		ck_assert_str_eq(a.joined.buf, b.joined.buf);
		for (size_t i = 0; i < a.n; i++) {
			ck_assert_uint_eq(a.w[i].off, b.w[i].off);
			ck_assert_uint_eq(a.w[i].len, b.w[i].len);
		}
	}
	ftk_words_release(&a);
	ftk_words_release(&b);
	strbuf_release(&sb);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("normalize");
	TCase *tc = tcase_create("normalize");
	tcase_add_test(tc, parse_and_name);
	tcase_add_test(tc, each_step_alone);
	tcase_add_test(tc, nfc_uax15_examples);
	tcase_add_test(tc, unicode_case_punct_space);
	tcase_add_test(tc, invalid_utf8);
	tcase_add_test(tc, words);
	tcase_add_test(tc, words_in_one_pass);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(make_suite)
