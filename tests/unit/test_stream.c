/*
 * test_stream.c: the JSONL reader and writer.
 */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>
#include "testutil.h"
#include "lib/stream.h"
#include "lib/strbuf.h"

static void write_file(const char *path, const void *data, size_t n)
{
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(data, 1, n, f), n);
	fclose(f);
}

static void write_zstd(const char *path, const void *data, size_t n, size_t keep)
{
	size_t cap = ZSTD_compressBound(n);
	char *z = malloc(cap);
	size_t zn = ZSTD_compress(z, cap, data, n, 3);
	ck_assert(!ZSTD_isError(zn));
	write_file(path, z, keep && keep < zn ? keep : zn);
	free(z);
}

START_TEST(lines_crlf_bom_and_last_line)
{
	const char in[] = "\xEF\xBB\xBF{\"a\":1}\r\n\n{\"b\":2}\n{\"c\":3}";
	write_file("t.jsonl", in, sizeof(in) - 1);
	struct ftk_reader *r;
	struct ftk_line l;
	struct ftk_error e;
	ck_assert_int_eq(ftk_reader_open(&r, "t.jsonl", &e), 0);
	ck_assert_int_eq(ftk_reader_next(r, &l, &e), 1);
	ck_assert_str_eq(l.data, "{\"a\":1}");
	ck_assert_int_eq(l.lineno, 1);
	ck_assert_int_eq(l.had_cr, 1);
	ck_assert_int_eq(ftk_reader_next(r, &l, &e), 1);
	ck_assert_uint_eq(l.len, 0);
	ck_assert_int_eq(l.lineno, 2);
	ck_assert_int_eq(ftk_reader_next(r, &l, &e), 1);
	ck_assert_str_eq(l.data, "{\"b\":2}");
	ck_assert_int_eq(ftk_reader_next(r, &l, &e), 1);
	ck_assert_str_eq(l.data, "{\"c\":3}");
	ck_assert_int_eq(l.lineno, 4);
	ck_assert_int_eq(ftk_reader_next(r, &l, &e), 0);
	ftk_reader_close(r);
}
END_TEST

START_TEST(invalid_utf8_offset)
{
	const char in[] = "{\"a\":\"ok\"}\n{\"a\":\"\xC3\x28\"}\n{\"a\":\"\xED\xA0\x80\"}\n";
	write_file("u.jsonl", in, sizeof(in) - 1);
	struct ftk_reader *r;
	struct ftk_line l;
	ck_assert_int_eq(ftk_reader_open(&r, "u.jsonl", NULL), 0);
	ck_assert_int_eq(ftk_reader_next(r, &l, NULL), 1);
	ck_assert_int_eq(l.utf8_error, -1);
	ck_assert_int_eq(ftk_reader_next(r, &l, NULL), 1);
	ck_assert_int_eq(l.utf8_error, 6);
	ck_assert_int_eq(ftk_reader_next(r, &l, NULL), 1);
	ck_assert_int_eq(l.utf8_error, 6); /* a UTF-16 surrogate is not UTF-8 */
	ftk_reader_close(r);
}
END_TEST

START_TEST(line_of_64_mib)
{
	size_t n = 64u << 20;
	char *big = malloc(n + 16);
	memset(big, 'x', n);
	memcpy(big, "{\"t\":\"", 6);
	memcpy(big + n - 2, "\"}", 2);
	big[n] = '\n';
	memcpy(big + n + 1, "{}\n", 3);
	write_file("big.jsonl", big, n + 4);
	struct ftk_reader *r;
	struct ftk_line l;
	ck_assert_int_eq(ftk_reader_open(&r, "big.jsonl", NULL), 0);
	ck_assert_int_eq(ftk_reader_next(r, &l, NULL), 1);
	ck_assert_uint_eq(l.len, n);
	ck_assert_int_eq(memcmp(l.data, big, n), 0);
	ck_assert_int_eq(ftk_reader_next(r, &l, NULL), 1);
	ck_assert_str_eq(l.data, "{}");
	ck_assert_int_eq(l.lineno, 2);
	ftk_reader_close(r);
	free(big);
}
END_TEST

START_TEST(zstd_by_magic_and_truncation)
{
	struct strbuf sb = STRBUF_INIT;
	for (int i = 0; i < 20000; i++)
		strbuf_addf(&sb, "{\"i\":%d,\"pad\":\"%08d\"}\n", i, i * 7);
	write_zstd("data.bin", sb.buf, sb.len, 0);
	struct ftk_reader *r;
	struct ftk_line l;
	struct ftk_error e;
	int n = 0, rc;
	ck_assert_int_eq(ftk_reader_open(&r, "data.bin", &e), 0);
	while ((rc = ftk_reader_next(r, &l, &e)) == 1) {
		char want[64];
		snprintf(want, sizeof(want), "{\"i\":%d,\"pad\":\"%08d\"}", n, n * 7);
		ck_assert_str_eq(l.data, want);
		n++;
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(n, 20000);
	ck_assert_int_eq(ftk_reader_is_zstd(r), 1);
	ftk_reader_close(r);

	/* the same data cut short must be an error, not a short file */
	write_zstd("cut.zst", sb.buf, sb.len, 1000);
	ck_assert_int_eq(ftk_reader_open(&r, "cut.zst", &e), 0);
	while ((rc = ftk_reader_next(r, &l, &e)) == 1)
		;
	ck_assert_int_eq(rc, FTK_ETRUNC);
	ck_assert_ptr_nonnull(strstr(e.msg, "truncated zstd"));
	ftk_reader_close(r);

	/* told to keep it, the reader hands out the cut record, then the error
	 * (cut after the first blocks, so that some lines decode) */
	struct stat st;
	ck_assert_int_eq(stat("data.bin", &st), 0);
	write_zstd("cut2.zst", sb.buf, sb.len, (size_t)st.st_size * 6 / 10);
	ck_assert_int_eq(ftk_reader_open(&r, "cut2.zst", &e), 0);
	ftk_reader_keep_partial(r);
	long last = 0;
	int cut = 0;
	n = 0;
	while ((rc = ftk_reader_next(r, &l, &e)) == 1) {
		char want[64];
		snprintf(want, sizeof(want), "{\"i\":%d,\"pad\":\"%08d\"}", n, n * 7);
		if (l.truncated) {
			/* a proper prefix of the record that was cut */
			ck_assert_int_lt(l.len, strlen(want));
			ck_assert_int_eq(memcmp(l.data, want, l.len), 0);
			cut++;
		} else {
			ck_assert_int_eq(cut, 0);
			ck_assert_str_eq(l.data, want);
		}
		last = l.lineno;
		n++;
	}
	ck_assert_int_eq(cut, 1);
	ck_assert_int_eq(rc, FTK_ETRUNC);
	ck_assert_int_eq(e.line, last);
	ck_assert_ptr_nonnull(strstr(e.msg, "truncated zstd"));
	ck_assert_int_eq(ftk_reader_next(r, &l, &e), 0);
	ftk_reader_close(r);
	strbuf_release(&sb);
}
END_TEST

/* A line over max_line is read through, not held: its first bytes and its
 * length come out, and the lines after it are intact, plain and zstd. */
START_TEST(oversize_line_is_not_held)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, "first\n");
	for (int i = 0; i < 3000000; i++)
		strbuf_addch(&sb, (char)('a' + i % 26));
	strbuf_addstr(&sb, "\r\nlast\n");
	write_file("long.txt", sb.buf, sb.len);
	write_zstd("long.zst", sb.buf, sb.len, 0);
	const char *files[] = { "long.txt", "long.zst" };
	for (int f = 0; f < 2; f++) {
		struct ftk_reader *r;
		struct ftk_line l;
		struct ftk_error e;
		ck_assert_int_eq(ftk_reader_open(&r, files[f], &e), 0);
		ftk_reader_set_max_line(r, 100000);
		ck_assert_int_eq(ftk_reader_next(r, &l, &e), 1);
		ck_assert_str_eq(l.data, "first");
		ck_assert_int_eq(l.oversize, 0);
		ck_assert_int_eq(ftk_reader_next(r, &l, &e), 1);
		ck_assert_int_eq(l.lineno, 2);
		ck_assert_int_eq(l.oversize, 3000000);
		ck_assert_int_eq(l.len, FTK_LINE_PREFIX);
		ck_assert_int_eq(memcmp(l.data, "abcdefghijklmnopqrstuvwxyzabc", 29), 0);
		ck_assert_int_eq(ftk_reader_next(r, &l, &e), 1);
		ck_assert_str_eq(l.data, "last");
		ck_assert_int_eq(l.lineno, 3);
		ck_assert_int_eq(ftk_reader_next(r, &l, &e), 0);
		ftk_reader_close(r);
	}
	strbuf_release(&sb);
}
END_TEST

START_TEST(writer_zst_roundtrip)
{
	struct ftk_writer *w;
	struct ftk_error e;
	ck_assert_int_eq(ftk_writer_open(&w, "out.jsonl.zst", 0, &e), 0);
	for (int i = 0; i < 1000; i++) {
		char buf[32];
		int k = snprintf(buf, sizeof(buf), "{\"n\":%d}", i);
		ck_assert_int_eq(ftk_writer_line(w, buf, (size_t)k), 0);
	}
	/* nothing under the real name until close */
	ck_assert_int_ne(access("out.jsonl.zst", F_OK), 0);
	ck_assert_int_eq(ftk_writer_close(w, &e), 0);
	struct ftk_reader *r;
	struct ftk_line l;
	int n = 0;
	ck_assert_int_eq(ftk_reader_open(&r, "out.jsonl.zst", &e), 0);
	while (ftk_reader_next(r, &l, &e) == 1) {
		char buf[32];
		snprintf(buf, sizeof(buf), "{\"n\":%d}", n++);
		ck_assert_str_eq(l.data, buf);
	}
	ck_assert_int_eq(n, 1000);
	ck_assert_int_eq(ftk_reader_is_zstd(r), 1);
	ftk_reader_close(r);
}
END_TEST

START_TEST(missing_file_message)
{
	struct ftk_reader *r;
	struct ftk_error e;
	ck_assert_int_eq(ftk_reader_open(&r, "nope.jsonl", &e), FTK_EIO);
	ck_assert_str_eq(e.msg, "cannot open 'nope.jsonl': No such file or directory");
}
END_TEST

START_TEST(json_string_escaping)
{
	struct strbuf sb = STRBUF_INIT;
	ck_assert_uint_eq(strbuf_add_json_str(&sb, "a\"b\\\n\x01\xC3\xA9", 8), 0);
	ck_assert_str_eq(sb.buf, "\"a\\\"b\\\\\\n\\u0001\xC3\xA9\"");
	strbuf_reset(&sb);
	ck_assert_uint_eq(strbuf_add_json_str(&sb, "x\xFFy", 3), 1);
	ck_assert_str_eq(sb.buf, "\"x\xEF\xBF\xBDy\"");
	strbuf_release(&sb);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("stream");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, lines_crlf_bom_and_last_line);
	tcase_add_test(tc, invalid_utf8_offset);
	tcase_add_test(tc, line_of_64_mib);
	tcase_add_test(tc, zstd_by_magic_and_truncation);
	tcase_add_test(tc, oversize_line_is_not_held);
	tcase_add_test(tc, writer_zst_roundtrip);
	tcase_add_test(tc, missing_file_message);
	tcase_add_test(tc, json_string_escaping);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(suite)
