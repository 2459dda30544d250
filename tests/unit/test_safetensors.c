/*
 * test_safetensors.c: safetensors headers from hostile files.
 *
 * Model files come from downloads.  Every size in a header is checked
 * before it is used: a shape whose product overflows (a probe's
 * [2^32, 2^32, 1] reached signed overflow in st_add_file, and in a release
 * build its product wrapped to 0, which matched empty data_offsets and
 * loaded), fractional or non-numeric data offsets, and offsets past the
 * data are all refused with the tensor's name.
 */
#include <string.h>
#include "testutil.h"
#include "model/safetensors.h"

/* A safetensors file: the 8-byte little-endian header length, the header, data bytes. */
static void write_st(const char *path, const char *header, size_t data)
{
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	uint64_t n = strlen(header);
	for (int i = 0; i < 8; i++) fputc((int)(n >> (8 * i)) & 0xff, f);
	fputs(header, f);
	for (size_t i = 0; i < data; i++) fputc(0, f);
	fclose(f);
}

static void expect_refused(const char *header, size_t data, const char *msg)
{
	struct ftk_st *st = NULL;
	struct ftk_error e = { 0 };
	write_st("m.safetensors", header, data);
	int rc = ftk_st_open(&st, "m.safetensors", &e);
	ck_assert_msg(rc == FTK_EDATA, "%s: rc %d, want FTK_EDATA (%s)", header, rc, e.msg);
	ck_assert_msg(strstr(e.msg, msg), "%s: message '%s' lacks '%s'", header, e.msg, msg);
	ck_assert_ptr_null(st);
}

START_TEST(shape_overflow_refused)
{
	expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,1],\"data_offsets\":[0,0]}}", 0,
		       "tensor 'w' has a bad shape");
	expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[2097152,2097152,2097152],\"data_offsets\":[0,0]}}", 0,
		       "tensor 'w' has a bad shape");
	/* one dimension of zero still makes zero elements, whatever the others */
	struct ftk_st *st = NULL;
	write_st("z.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0,4294967296,4294967296],\"data_offsets\":[0,0]}}", 0);
	ck_assert_int_eq(ftk_st_open(&st, "z.safetensors", NULL), 0);
	ftk_st_close(st);
}
END_TEST

START_TEST(offsets_checked)
{
	expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0.5,4.5]}}", 8, "tensor 'w' has a bad shape");
	expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",4]}}", 8, "tensor 'w' has a bad shape");
	expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,12]}}", 8, "outside the 8 data bytes");
	expect_refused("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "holds 8 bytes, but F32 of 3 elements needs 12");
	/* and a good one loads */
	struct ftk_st *st = NULL;
	write_st("g.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
	ck_assert_int_eq(ftk_st_open(&st, "g.safetensors", NULL), 0);
	ftk_st_close(st);
}
END_TEST

/* Found by fuzz_safetensors in CI's 60 s run: a header of metadata alone
 * (no tensor) passed qsort a NULL array (UBSan nonnull).  It opens, empty. */
START_TEST(no_tensors_opens_empty)
{
	struct ftk_st *st = NULL;
	write_st("e.safetensors", "{\"__metadata__\":{\"format\":\"pt\"}}", 0);
	ck_assert_int_eq(ftk_st_open(&st, "e.safetensors", NULL), 0);
	ck_assert_uint_eq(ftk_st_count(st), 0);
	ftk_st_close(st);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("safetensors");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, shape_overflow_refused);
	tcase_add_test(tc, offsets_checked);
	tcase_add_test(tc, no_tensors_opens_empty);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(make_suite)
