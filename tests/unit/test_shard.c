/*
 * test_shard.c: token shards written and read back, split across files,
 * and corrupt input refused with a message.
 */
#include <string.h>
#include <unistd.h>
#include "testutil.h"
#include "lib/shard.h"

static struct ftk_shard_info info(void)
{
	struct ftk_shard_info in;
	memset(&in, 0, sizeof(in));
	in.kind = FTK_SHARD_SFT;
	in.vocab_size = 1000;
	memcpy(in.tokenizer_hash, "0123456789abcdef0123456789abcdef", 33);
	strcpy(in.template_name, "test");
	return in;
}

static void write_seqs(const char *dir, int n, uint64_t per_shard)
{
	struct ftk_shard_writer *w;
	struct ftk_error e;
	struct ftk_shard_info in = info();
	ck_assert_int_eq(ftk_shard_writer_open(&w, dir, &in, per_shard, &e), 0);
	for (int s = 0; s < n; s++) {
		uint32_t ids[64];
		uint8_t mask[64];
		uint32_t len = (uint32_t)(1 + s % 50);
		for (uint32_t i = 0; i < len; i++) {
			ids[i] = (uint32_t)(s * 7 + i) % 1000;
			mask[i] = (i + s) % 3 == 0;
		}
		ck_assert_int_eq(ftk_shard_write(w, ids, mask, len, &e), 0);
	}
	ck_assert_int_eq(ftk_shard_writer_close(w, &e), 0);
}

START_TEST(roundtrip_many_shards)
{
	write_seqs("sh", 500, 1000);
	struct ftk_shard_reader *r;
	struct ftk_seq s;
	struct ftk_error e;
	ck_assert_int_eq(ftk_shard_open(&r, "sh", &e), 0);
	ck_assert_uint_gt(ftk_shard_info(r)->n_shards, 5);
	ck_assert_uint_eq(ftk_shard_info(r)->sequences, 500);
	ck_assert_str_eq(ftk_shard_info(r)->template_name, "test");
	int n = 0, rc;
	uint64_t masked = 0;
	while ((rc = ftk_shard_next(r, &s, &e)) == 1) {
		ck_assert_uint_eq(s.len, 1 + n % 50);
		ck_assert_uint_eq(s.index, n);
		for (uint32_t i = 0; i < s.len; i++) {
			ck_assert_uint_eq(s.ids[i], (uint32_t)(n * 7 + i) % 1000);
			ck_assert_uint_eq(s.mask[i], (i + n) % 3 == 0);
			masked += s.mask[i];
		}
		n++;
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(n, 500);
	ck_assert_uint_eq(ftk_shard_info(r)->masked_tokens, masked);
	ck_assert_int_eq(ftk_shard_rewind(r, &e), 0);
	ck_assert_int_eq(ftk_shard_next(r, &s, &e), 1);
	ck_assert_uint_eq(s.index, 0);
	ftk_shard_close(r);

	struct ftk_shard_info in;
	uint32_t *ids;
	uint8_t *mask;
	uint64_t *off, ns;
	ck_assert_int_eq(ftk_shard_load_all("sh", &in, &ids, &mask, &off, &ns, &e), 0);
	ck_assert_uint_eq(ns, 500);
	ck_assert_uint_eq(off[3] - off[2], 3);
	ck_assert_uint_eq(ids[off[2]], 14);
	free(ids);
	free(mask);
	free(off);
}
END_TEST

/* An empty sequence (a probe put one first) loads: UBSan saw memcpy(NULL, NULL, 0) here. */
START_TEST(empty_first_sequence)
{
	struct ftk_shard_writer *w;
	struct ftk_error e;
	struct ftk_shard_info in = info();
	ck_assert_int_eq(ftk_shard_writer_open(&w, "em", &in, 0, &e), 0);
	uint32_t ids[2] = { 5, 6 };
	uint8_t mask[2] = { 0, 1 };
	ck_assert_int_eq(ftk_shard_write(w, ids, mask, 0, &e), 0);
	ck_assert_int_eq(ftk_shard_write(w, ids, mask, 2, &e), 0);
	ck_assert_int_eq(ftk_shard_writer_close(w, &e), 0);
	uint32_t *I;
	uint8_t *M;
	uint64_t *off, ns;
	ck_assert_int_eq(ftk_shard_load_all("em", NULL, &I, &M, &off, &ns, &e), 0);
	ck_assert_uint_eq(ns, 2);
	ck_assert_uint_eq(off[1], 0);
	ck_assert_uint_eq(off[2], 2);
	ck_assert_uint_eq(I[1], 6);
	ck_assert_uint_eq(M[1], 1);
	free(I);
	free(M);
	free(off);
}
END_TEST

/* A mask byte other than 0 or 1 (the trainer sums them to count targets) is refused. */
START_TEST(mask_bytes_checked)
{
	struct ftk_shard_writer *w;
	struct ftk_error e;
	struct ftk_shard_info in = info();
	ck_assert_int_eq(ftk_shard_writer_open(&w, "mk", &in, 0, &e), 0);
	uint32_t ids[2] = { 5, 6 };
	uint8_t mask[2] = { 0, 7 };
	ck_assert_int_eq(ftk_shard_write(w, ids, mask, 2, &e), 0);
	ck_assert_int_eq(ftk_shard_writer_close(w, &e), 0);
	struct ftk_shard_reader *r;
	struct ftk_seq s;
	ck_assert_int_eq(ftk_shard_open(&r, "mk", &e), 0);
	ck_assert_int_eq(ftk_shard_next(r, &s, &e), FTK_EDATA);
	ck_assert_ptr_nonnull(strstr(e.msg, "sequence 0: loss mask byte 1 is 7, not 0 or 1"));
	ftk_shard_close(r);
}
END_TEST

START_TEST(missing_manifest_and_corruption)
{
	struct ftk_shard_reader *r;
	struct ftk_error e;
	ck_assert_int_eq(ftk_shard_open(&r, "nowhere", &e), FTK_ENOTFOUND);
	ck_assert_ptr_nonnull(strstr(e.msg, "no manifest.json"));

	write_seqs("bad", 10, 0);
	/* replace the shard by garbage: the header check must catch it */
	FILE *f = fopen("bad/shard-00000.ftks.zst", "wb");
	fputs("hello", f);
	fclose(f);
	ck_assert_int_eq(ftk_shard_open(&r, "bad", &e), FTK_EDATA);
	ck_assert_str_eq(e.msg, "not an ftk token shard");
}
END_TEST

START_TEST(file_hash_is_xxh3_128)
{
	char h[33];
	struct ftk_error e;
	FILE *f = fopen("x.txt", "wb");
	fputs("abc", f);
	fclose(f);
	ck_assert_int_eq(ftk_file_hash("x.txt", h, &e), 0);
	/* XXH3_128bits("abc") as printed by `xxh128sum` from Debian's xxhash */
	ck_assert_str_eq(h, "06b05ab6733a618578af5f94892f3950");
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("shard");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, roundtrip_many_shards);
	tcase_add_test(tc, missing_manifest_and_corruption);
	tcase_add_test(tc, empty_first_sequence);
	tcase_add_test(tc, mask_bytes_checked);
	tcase_add_test(tc, file_hash_is_xxh3_128);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(suite)
