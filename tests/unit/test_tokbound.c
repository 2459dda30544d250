/*
 * test_tokbound.c: lib/tokbound, the most bytes one token stands for.
 *
 * The bound must never be too tight: for every text of the tokenizer
 * fixture (tests/fixtures/tokref/texts.jsonl.zst, ids by transformers.js,
 * so not by the encoder under test) and each of the four tokenizers, the
 * text's length is at most the bound times its reference id count.  The
 * bound is loose (the densest fixture text has 5 bytes per stories260K
 * token against a bound of 9, 34 per Qwen3 token against 768), so this
 * catches a bound that forgets what a token can stand for, not one a
 * little too small: with the longest string divided by 4 planted, a
 * llama2 row fails (15 bytes in one token, bound 12); halved, only the
 * exact values of the second case fail.  Normalizers that can delete text
 * give no bound.
 */
#include <string.h>
#include <unistd.h>
#include "lib/json.h"
#include "lib/stream.h"
#include "lib/tokbound.h"
#include "testutil.h"

static const char *const NAMES[] = { "qwen3", "llama3", "llama2", "stories260K" };
static const char *const DIRS[] = { "tests/fixtures/tokenizers/qwen3", "tests/fixtures/tokenizers/llama3",
				    "tests/fixtures/tokenizers/llama2", "datasets/models/stories260K" };

START_TEST(never_too_tight)
{
	struct ftk_tokenizer *tok[4];
	size_t bound[4];
	double tightest[4] = { 0 };
	struct ftk_error e;
	for (int k = 0; k < 4; k++) {
		ck_assert_int_eq(ftk_tokenizer_load(&tok[k], src_path(DIRS[k]), &e), 0);
		bound[k] = ftk_tokenizer_bytes_per_token(tok[k]);
		ck_assert_msg(bound[k] > 0, "%s: no bound", NAMES[k]);
	}
	struct ftk_reader *r;
	struct ftk_line line;
	long rows = 0;
	ck_assert_int_eq(ftk_reader_open(&r, src_path("tests/fixtures/tokref/texts.jsonl.zst"), &e), 0);
	while (ftk_reader_next(r, &line, &e) > 0) {
		cJSON *row = cJSON_ParseWithLength(line.data, line.len);
		size_t len = strlen(ftk_json_get_str(row, "text"));
		for (int k = 0; k < 4; k++) {
			int n = cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(row, "ids"), NAMES[k]));
			ck_assert_msg(len <= bound[k] * (size_t)n, "%s: %zu bytes in %d tokens, bound %zu: %s",
				      NAMES[k], len, n, bound[k], ftk_json_get_str(row, "src"));
			if (n && (double)len / n > tightest[k])
				tightest[k] = (double)len / n;
		}
		cJSON_Delete(row);
		rows++;
	}
	ftk_reader_close(r);
	for (int k = 0; k < 4; k++) {
		printf("%s: bound %zu bytes per token, densest fixture text %.2f (%ld texts)\n", NAMES[k], bound[k],
		       tightest[k], rows);
		ftk_tokenizer_free(tok[k]);
	}
	ck_assert_int_gt(rows, 1000);
}
END_TEST

/* The bound of a tokenizer.json (written to a temporary directory) with normalizer (JSON) n. */
static size_t with_normalizer(const char *n)
{
	char dir[] = "tokbound-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	struct strbuf p = STRBUF_INIT;
	strbuf_addf(&p, "%s/tokenizer.json", dir);
	FILE *f = fopen(p.buf, "w");
	fprintf(f, "{\"version\":\"1.0\",\"added_tokens\":[],\"normalizer\":%s,\"pre_tokenizer\":null,"
		   "\"post_processor\":null,\"decoder\":null,\"model\":{\"type\":\"BPE\",\"byte_fallback\":false,"
		   "\"fuse_unk\":false,\"unk_token\":\"<unk>\",\"vocab\":{\"<unk>\":0,\"a\":1,\"b\":2,\"ab\":3},"
		   "\"merges\":[\"a b\"]}}", n);
	fclose(f);
	struct ftk_tokenizer *t = NULL;
	struct ftk_error e;
	int rc = ftk_tokenizer_load(&t, p.buf, &e);
	ck_assert_msg(rc == 0, "%s", e.msg);
	size_t b = ftk_tokenizer_bytes_per_token(t);
	ftk_tokenizer_free(t);
	unlink(p.buf);
	rmdir(dir);
	strbuf_release(&p);
	return b;
}

START_TEST(normalizers)
{
	static const struct {
		const char *norm;
		size_t want;
	} t[] = {
		{ "null", 5 },	/* "<unk>" */
		{ "{\"type\":\"NFC\"}", 15 },
		{ "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFKC\"},{\"type\":\"Lowercase\"}]}", 45 },
		{ "{\"type\":\"Replace\",\"pattern\":{\"String\":\"abcd\"},\"content\":\"x\"}", 20 },
		{ "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}", 5 },
		{ "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\"}", 0 },
		{ "{\"type\":\"Strip\",\"strip_left\":true,\"strip_right\":true}", 0 },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		size_t b = with_normalizer(t[i].norm);
		ck_assert_msg(b == t[i].want, "%s: %zu, want %zu", t[i].norm, b, t[i].want);
	}
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("tokbound");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, never_too_tight);
	tcase_add_test(tc, normalizers);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(make_suite)
