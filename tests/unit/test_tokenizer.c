/*
 * test_tokenizer.c: token ids against transformers.js, which ftk did not write.
 *
 * tests/fixtures/tokref/texts.jsonl.zst (made by tools/ref/gen-tokref.mjs)
 * holds strings sampled from every dataset under datasets/ plus hard strings,
 * each with the ids transformers.js gives for the Qwen3, Llama 3, "llama2"
 * (Mistral-7B's vocabulary, see the report) and stories260K tokenizers; for
 * the hard strings also the ids with special tokens added and the decoded
 * text.  Every id must match.  The stories260K tokenizer must also give the
 * ids of the golden text (datasets/models/stories260K/reference.json).
 */
#include <string.h>
#include <sys/stat.h>
#include "testutil.h"
#include "lib/json.h"
#include "lib/stream.h"
#include "lib/tokenizer.h"

/* The parsed JSON of a file in the tree (a tokenizer.json to edit). */
static cJSON *read_json(const char *path)
{
	char *data;
	size_t len;
	cJSON *tj;
	ck_assert_int_eq(ftk_read_all(path, &data, &len, NULL), 0);
	ck_assert_int_eq(ftk_json_parse(data, len, &tj, NULL), 0);
	free(data);
	return tj;
}

static const char *const NAMES[] = { "qwen3", "llama3", "llama2", "stories260K" };
static const char *const DIRS[] = { "tests/fixtures/tokenizers/qwen3", "tests/fixtures/tokenizers/llama3",
				    "tests/fixtures/tokenizers/llama2", "datasets/models/stories260K" };

static struct ftk_tokenizer *load(int k)
{
	struct ftk_tokenizer *t = NULL;
	struct ftk_error e;
	char buf[1200];
	int rc = ftk_tokenizer_load(&t, src_path(DIRS[k]), &e);
	ck_assert_msg(rc == 0, "load %s: %s", NAMES[k], ftk_error_format(&e, buf, sizeof(buf)));
	return t;
}

static int same_ids(const cJSON *arr, const struct ftk_tokens *tk)
{
	if ((size_t)cJSON_GetArraySize(arr) != tk->n) return 0;
	size_t i = 0;
	const cJSON *x;
	cJSON_ArrayForEach(x, arr) if ((uint32_t)x->valuedouble != tk->ids[i++]) return 0;
	return 1;
}

static void print_ids(const char *what, const cJSON *arr, const struct ftk_tokens *tk)
{
	fprintf(stderr, "  %s want:", what);
	const cJSON *x;
	cJSON_ArrayForEach(x, arr) fprintf(stderr, " %d", x->valueint);
	fprintf(stderr, "\n  %s got: ", what);
	for (size_t i = 0; i < tk->n; i++) fprintf(stderr, " %u", tk->ids[i]);
	fprintf(stderr, "\n");
}

/*
 * ftk_tokenizer_encode_max against the whole encoding full of the same
 * text: for limits below, at and above its length, the count is
 * min(n, max + 1) and the ids (and offsets) are full's first ones.  Small
 * limits make split_piece check its spans before the end of most texts, so
 * its early stop is exercised too.  Returns the number of mismatches.
 */
static int check_limits(const struct ftk_tokenizer *t, const char *name, const char *s, size_t len, unsigned flags,
			const struct ftk_tokens *full)
{
	size_t n = full->n, maxes[] = { 0, 1, 2, 3, n / 2, n ? n - 1 : 0, n, n + 1 };
	struct ftk_tokens lim = FTK_TOKENS_INIT;
	int bad = 0;
	for (size_t i = 0; i < sizeof(maxes) / sizeof(maxes[0]); i++) {
		size_t max = maxes[i], want = n > max ? max + 1 : n;
		long got = ftk_tokenizer_encode_max(t, s, len, flags, max, &lim, NULL);
		/* an empty text leaves the arrays NULL: memcmp may not see them */
		int same = got == (long)want && lim.n == want && (!want || !memcmp(lim.ids, full->ids, want * 4));
		if (same && want && (flags & FTK_TOK_OFFSETS))
			same = !memcmp(lim.start, full->start, want * 4) && !memcmp(lim.end, full->end, want * 4);
		if (!same) {
			if (bad < 3)
				fprintf(stderr, "%s: limit %zu on a text of %zu ids: %ld ids, want %zu: '%.60s'\n", name, max,
					n, got, want, s);
			bad++;
		}
	}
	ftk_tokens_release(&lim);
	return bad;
}

/* Compare every fixture row for tokenizer k; returns the number of mismatches. */
static int check_texts(int k, int *n_rows, int *n_hard)
{
	struct ftk_tokenizer *t = load(k);
	struct ftk_reader *r;
	struct ftk_error e;
	struct ftk_line line;
	struct ftk_tokens tk = FTK_TOKENS_INIT;
	int bad = 0;
	ck_assert_int_eq(ftk_reader_open(&r, src_path("tests/fixtures/tokref/texts.jsonl.zst"), &e), 0);
	while (ftk_reader_next(r, &line, &e) > 0) {
		cJSON *row = cJSON_ParseWithLength(line.data, line.len);
		ck_assert_ptr_nonnull(row);
		const cJSON *text = cJSON_GetObjectItem(row, "text");
		const char *src = ftk_json_get_str(row, "src");
		size_t tl = strlen(text->valuestring);
		const cJSON *want = cJSON_GetObjectItem(cJSON_GetObjectItem(row, "ids"), NAMES[k]);
		struct strbuf sb = STRBUF_INIT;
		strbuf_add(&sb, text->valuestring, tl);	/* the fixture holds no U+0000 */
		ftk_tokenizer_encode(t, sb.buf, sb.len, 0, &tk, NULL);
		(*n_rows)++;
		bad += check_limits(t, NAMES[k], sb.buf, sb.len, 0, &tk);
		if (!same_ids(want, &tk)) {
			if (bad < 5) { fprintf(stderr, "%s: %s: ids differ\n", NAMES[k], src); print_ids("plain", want, &tk); }
			bad++;
		}
		const cJSON *wadd = cJSON_GetObjectItem(cJSON_GetObjectItem(row, "ids_add"), NAMES[k]);
		if (wadd) {
			(*n_hard)++;
			ftk_tokenizer_encode(t, sb.buf, sb.len, FTK_TOK_ADD_SPECIAL | FTK_TOK_OFFSETS, &tk, NULL);
			bad += check_limits(t, NAMES[k], sb.buf, sb.len, FTK_TOK_ADD_SPECIAL | FTK_TOK_OFFSETS, &tk);
			if (!same_ids(wadd, &tk)) {
				if (bad < 5) { fprintf(stderr, "%s: %s: ids with special tokens differ\n", NAMES[k], src); print_ids("add", wadd, &tk); }
				bad++;
			}
			const char *wdec = ftk_json_get_str(cJSON_GetObjectItem(row, "decoded"), NAMES[k]);
			struct strbuf d = STRBUF_INIT;
			uint32_t *ids = xmalloc((cJSON_GetArraySize(want) + 1) * 4);
			int n = 0;
			const cJSON *x;
			cJSON_ArrayForEach(x, want) ids[n++] = (uint32_t)x->valuedouble;
			ftk_tokenizer_decode(t, ids, n, 0, &d, NULL);
			/* transformers.js decodes bytes with TextDecoder, which drops a
			 * leading U+FEFF; Hugging Face's Rust and Python keep it, and so do we */
			int bom = sb.len >= 3 && !memcmp(sb.buf, "\xef\xbb\xbf", 3);
			if (wdec && !bom && (strlen(wdec) != d.len || memcmp(wdec, d.buf, d.len))) {
				if (bad < 5) fprintf(stderr, "%s: %s: decode differs: want '%s' got '%s'\n", NAMES[k], src, wdec, d.buf);
				bad++;
			}
			/* streaming decode, one id at a time, gives the same text */
			struct ftk_detok dt;
			struct strbuf st = STRBUF_INIT;
			ftk_detok_init(&dt, t, 0);
			for (int i = 0; i < n; i++) ftk_detok_push(&dt, ids[i], &st, NULL);
			ftk_detok_finish(&dt, &st);
			if (st.len != d.len || memcmp(st.buf, d.buf, d.len)) {
				if (bad < 5) fprintf(stderr, "%s: %s: streaming decode '%s' differs from '%s'\n", NAMES[k], src, st.buf, d.buf);
				bad++;
			}
			ftk_detok_release(&dt);
			strbuf_release(&st);
			free(ids);
			strbuf_release(&d);
		}
		strbuf_release(&sb);
		cJSON_Delete(row);
	}
	ftk_reader_close(r);
	ftk_tokens_release(&tk);
	ftk_tokenizer_free(t);
	return bad;
}

#define TEXT_TEST(name, k)                                                              \
	START_TEST(name)                                                                \
	{                                                                               \
		int rows = 0, hard = 0;                                                 \
		int bad = check_texts(k, &rows, &hard);                                 \
		fprintf(stderr, "%s: %d texts (%d hard), %d mismatches\n", NAMES[k], rows, hard, bad); \
		ck_assert_int_gt(rows, 3000);                                           \
		ck_assert_int_gt(hard, 50);                                             \
		ck_assert_int_eq(bad, 0);                                               \
	}                                                                               \
	END_TEST
TEXT_TEST(test_qwen3_ids, 0)
TEXT_TEST(test_llama3_ids, 1)
TEXT_TEST(test_llama2_ids, 2)
TEXT_TEST(test_stories_ids, 3)

/* The golden text's ids: reference.json tokens = BOS + the first 32 ids of
 * the greedy text, which is also llama2.c's encoding of it. */
START_TEST(test_stories_golden)
{
	struct ftk_tokenizer *t = load(3);
	char *data, *golden;
	size_t len, glen;
	cJSON *ref;
	struct ftk_tokens tk = FTK_TOKENS_INIT;
	ck_assert_int_eq(ftk_read_all(src_path("datasets/models/stories260K/reference.json"), &data, &len, NULL), 0);
	ck_assert_int_eq(ftk_json_parse(data, len, &ref, NULL), 0);
	ck_assert_int_eq(ftk_read_all(src_path("datasets/models/stories260K/expected_greedy_n256.txt"), &golden, &glen, NULL), 0);
	const cJSON *want = cJSON_GetObjectItem(ref, "tokens");
	int nw = cJSON_GetArraySize(want);
	ck_assert_int_eq(nw, 33);
	/* the golden text, decoded from ids, begins with the text of ids 1..32;
	 * encoding the whole text with BOS must reproduce those 33 ids first */
	while (glen && golden[glen - 1] == '\n') glen--;
	ck_assert_int_gt(ftk_tokenizer_encode(t, golden, glen, FTK_TOK_ADD_SPECIAL, &tk, NULL), 33);
	for (int i = 0; i < nw; i++)
		ck_assert_uint_eq(tk.ids[i], (uint32_t)cJSON_GetArrayItem(want, i)->valuedouble);
	/* and the greedy ids decode to the golden text */
	const cJSON *greedy = cJSON_GetObjectItem(ref, "greedy_ids_n256");
	uint32_t ids[300];
	int n = 0;
	const cJSON *x;
	cJSON_ArrayForEach(x, greedy) ids[n++] = (uint32_t)x->valuedouble;
	struct strbuf d = STRBUF_INIT;
	ck_assert_int_eq(ftk_tokenizer_decode(t, ids, n, 1, &d, NULL), 0);
	ck_assert_uint_eq(d.len, glen);
	ck_assert(!memcmp(d.buf, golden, glen));
	/* streaming decode gives the same text */
	struct ftk_detok dt;
	struct strbuf s = STRBUF_INIT;
	ftk_detok_init(&dt, t, 1);
	for (int i = 0; i < n; i++) ck_assert_int_eq(ftk_detok_push(&dt, ids[i], &s, NULL), 0);
	ftk_detok_finish(&dt, &s);
	ck_assert_str_eq(s.buf, d.buf);
	ftk_detok_release(&dt);
	strbuf_release(&s);
	strbuf_release(&d);
	free(data);
	free(golden);
	cJSON_Delete(ref);
	ftk_tokens_release(&tk);
	ftk_tokenizer_free(t);
}
END_TEST

START_TEST(test_accessors)
{
	struct ftk_tokenizer *q = load(0), *l2 = load(2), *l3 = load(1);
	ck_assert_uint_eq(ftk_tokenizer_vocab_size(q), 151669);
	ck_assert_uint_eq(ftk_tokenizer_vocab_size(l3), 128256);
	ck_assert_uint_eq(ftk_tokenizer_vocab_size(l2), 32000);
	ck_assert_int_eq(ftk_tokenizer_token_id(q, "<|im_end|>"), 151645);
	ck_assert_int_eq(ftk_tokenizer_eos_id(q), 151645);
	ck_assert_int_eq(ftk_tokenizer_bos_id(q), -1);
	ck_assert_int_eq(ftk_tokenizer_bos_id(l3), 128000);
	ck_assert_int_eq(ftk_tokenizer_bos_id(l2), 1);
	ck_assert_int_eq(ftk_tokenizer_eos_id(l2), 2);
	ck_assert(ftk_tokenizer_adds_bos(l2));
	ck_assert(!ftk_tokenizer_adds_bos(q));
	ck_assert(ftk_tokenizer_is_special(q, 151645));
	ck_assert(!ftk_tokenizer_is_special(q, 100));
	ck_assert_ptr_nonnull(ftk_tokenizer_chat_template(q));
	ck_assert_ptr_null(ftk_tokenizer_chat_template(l2));
	ck_assert_str_eq(ftk_tokenizer_special_str(l2, "unk"), "<unk>");
	ck_assert_int_eq(strlen(ftk_tokenizer_hash(q)), 32);
	ck_assert_str_ne(ftk_tokenizer_hash(q), ftk_tokenizer_hash(l3));
	/* special text is plain text when asked */
	struct ftk_tokens tk = FTK_TOKENS_INIT;
	ck_assert_int_eq(ftk_tokenizer_encode(q, "<|im_end|>", 10, 0, &tk, NULL), 1);
	ck_assert_int_gt(ftk_tokenizer_encode(q, "<|im_end|>", 10, FTK_TOK_SPLIT_NO_SPECIAL, &tk, NULL), 1);
	/* invalid UTF-8 goes through byte level and byte fallback, and decodes to U+FFFD */
	{
		const char bad8[] = "\xff\xfe ok \xc3";
		struct ftk_tokenizer *tt[2] = { l3, l2 };
		for (int k = 0; k < 2; k++) {
			ck_assert_int_gt(ftk_tokenizer_encode(tt[k], bad8, sizeof(bad8) - 1, 0, &tk, NULL), 3);
			struct strbuf d = STRBUF_INIT;
			ck_assert_int_eq(ftk_tokenizer_decode(tt[k], tk.ids, tk.n, 0, &d, NULL), 0);
			ck_assert_str_eq(d.buf, "\xef\xbf\xbd\xef\xbf\xbd ok \xef\xbf\xbd");
			strbuf_release(&d);
		}
	}
	/* out-of-range id */
	uint32_t bad = 999999;
	struct strbuf sb = STRBUF_INIT;
	struct ftk_error e;
	ck_assert_int_eq(ftk_tokenizer_decode(q, &bad, 1, 0, &sb, &e), FTK_ENOTFOUND);
	ck_assert_uint_eq(sb.len, 0);
	ftk_tokens_release(&tk);
	ftk_tokenizer_free(q);
	ftk_tokenizer_free(l2);
	ftk_tokenizer_free(l3);
}
END_TEST

/* Offsets cover the input exactly once for a byte-level and an SP model. */
START_TEST(test_offsets)
{
	const char *s = "Hello  world\n\n<|im_end|> 123 café e\xcc\x81 世界 <s> x";
	for (int k = 0; k < 4; k++) {
		struct ftk_tokenizer *t = load(k);
		struct ftk_tokens a = FTK_TOKENS_INIT, b = FTK_TOKENS_INIT;
		long n = ftk_tokenizer_encode(t, s, strlen(s), FTK_TOK_OFFSETS, &a, NULL);
		ck_assert_int_eq(ftk_tokenizer_encode(t, s, strlen(s), 0, &b, NULL), n);
		ck_assert(!memcmp(a.ids, b.ids, n * 4));
		uint32_t prev = 0;
		for (long i = 0; i < n; i++) {
			ck_assert_uint_le(a.start[i], a.end[i]);
			ck_assert_uint_ge(a.start[i], prev);	/* monotone, no overlap */
			prev = a.end[i] > prev ? a.end[i] : prev;
		}
		ck_assert_uint_eq(prev, strlen(s));
		ftk_tokens_release(&a);
		ftk_tokens_release(&b);
		ftk_tokenizer_free(t);
	}
}
END_TEST

START_TEST(test_errors)
{
	struct ftk_tokenizer *t = NULL;
	struct ftk_error e;
	FILE *f = fopen("tokenizer.json", "w");
	fputs("{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", f);
	fclose(f);
	ck_assert_int_eq(ftk_tokenizer_load(&t, ".", &e), FTK_EUNSUPPORTED);
	ck_assert_msg(strstr(e.msg, "Unigram"), "%s", e.msg);
	f = fopen("tokenizer.json", "w");
	fputs("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"normalizer\":{\"type\":\"Precompiled\"}}", f);
	fclose(f);
	ck_assert_int_eq(ftk_tokenizer_load(&t, "tokenizer.json", &e), FTK_EUNSUPPORTED);
	ck_assert_msg(strstr(e.msg, "normalizer 'Precompiled'"), "%s", e.msg);
	ck_assert_str_eq(e.file, "tokenizer.json");
	ck_assert_int_eq(ftk_tokenizer_load(&t, "nonexistent-dir", &e), FTK_ENOTFOUND);
	ck_assert_ptr_null(t);
}
END_TEST

/*
 * tokenizer.json comes with model downloads.  What a probe found accepted
 * (duplicate and fractional vocabulary ids, leaking the first token of a
 * duplicate), slow (an added token with id 99,999,999: 33 s to load) or
 * exhausting memory (eight stacked Replace normalizers, each 4-fold) is
 * refused with the field and the reason.
 */
static int load_json(const char *json, struct ftk_error *e)
{
	struct ftk_tokenizer *t = NULL;
	FILE *f = fopen("tokenizer.json", "w");
	fputs(json, f);
	fclose(f);
	int rc = ftk_tokenizer_load(&t, "tokenizer.json", e);
	ftk_tokenizer_free(t);
	return rc;
}

static void expect_refused(const char *json, const char *field, const char *msg)
{
	struct ftk_error e = { 0 };
	int rc = load_json(json, &e);
	ck_assert_msg(rc == FTK_EDATA, "%s: rc %d (%s)", json, rc, e.msg);
	ck_assert_str_eq(e.field, field);
	ck_assert_msg(strstr(e.msg, msg), "'%s' lacks '%s'", e.msg, msg);
}

#define BPE(vocab) "{\"model\":{\"type\":\"BPE\",\"vocab\":" vocab ",\"merges\":[]}"
#define REPL4 "{\"type\":\"Replace\",\"pattern\":{\"String\":\"a\"},\"content\":\"aaaa\"}"

START_TEST(test_hostile_files)
{
	expect_refused(BPE("{\"a\":0,\"b\":0}") "}", "model.vocab", "id 0 is given to both 'a' and 'b'");
	expect_refused(BPE("{\"a\":0.5}") "}", "model.vocab", "bad id for token 'a'");
	expect_refused(BPE("{\"a\":0}") ",\"added_tokens\":[{\"id\":1.5,\"content\":\"<x>\"}]}", "added_tokens",
		       "needs id and content");
	expect_refused(BPE("{\"a\":0}") ",\"added_tokens\":[{\"id\":99999999,\"content\":\"<x>\"}]}", "added_tokens",
		       "ids go up to 99999999 for 2 tokens");
	expect_refused(BPE("{\"a\":0}") ",\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[" REPL4 "," REPL4 ","
		       REPL4 "," REPL4 "," REPL4 "," REPL4 "," REPL4 "," REPL4 "]}}", "normalizer", "65536 times longer");
	/* an empty match grows at every position */
	expect_refused(BPE("{\"a\":0}") ",\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"x*\"},"
		       "\"content\":\"" "0123456789012345678901234567890123456789012345678901234567890123456789\"}}",
		       "normalizer", "times longer");
	/* the fuzzer's first find (tests/fuzz/fuzz_tokenizer.c): stories260K's file with a vocabulary
	 * key copied, so two entries "a" share id 412; before, the first one's string leaked */
	struct ftk_tokenizer *t = NULL;
	struct ftk_error fe = { 0 };
	ck_assert_int_eq(ftk_tokenizer_load(&t, src_path("tests/fixtures/fuzz/tokenizer-leak-dup-id.json"), &fe), FTK_EDATA);
	ck_assert_str_eq(fe.field, "model.vocab");
	ck_assert_msg(strstr(fe.msg, "id 412 is given to both 'a' and 'a'"), "%s", fe.msg);
	/* what real tokenizers do still loads: Llama 2's ' ' to U+2581 (3-fold), ids with a few holes */
	struct ftk_error e = { 0 };
	ck_assert_int_eq(load_json(BPE("{\"a\":0,\"b\":5}") ",\"added_tokens\":[{\"id\":9,\"content\":\"<x>\"}],"
				   "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":"
				   "\"\u2581\"},{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\u2581\"}]}}",
				   &e), 0);
}
END_TEST

/* Long pre-tokens: 1 MB without a space is one pre-token for every model
 * here (SentencePiece-style models have no pre-tokenizer at all).  A
 * quadratic merge loop would not finish within the test's timeout; this
 * one must, and must round-trip.  (Speed is measured in bench/tokenize.sh.) */
START_TEST(test_long_pretoken)
{
	size_t n = 1 << 20;
	char *s = xmalloc(n);
	const char *word = "thequickbrownfoxjumpsoverthelazydog";
	for (size_t i = 0; i < n; i++) s[i] = word[i % strlen(word)];
	for (int k = 0; k < 4; k++) {
		struct ftk_tokenizer *t = load(k);
		struct ftk_tokens tk = FTK_TOKENS_INIT;
		long got = ftk_tokenizer_encode(t, s, n, 0, &tk, NULL);
		ck_assert_int_gt(got, (long)(n / 40));
		struct strbuf d = STRBUF_INIT;
		ftk_tokenizer_decode(t, tk.ids, tk.n, 0, &d, NULL);
		ck_assert_uint_eq(d.len, n);
		ck_assert(!memcmp(d.buf, s, n));
		strbuf_release(&d);
		ftk_tokens_release(&tk);
		ftk_tokenizer_free(t);
	}
	free(s);
}
END_TEST

/* Components the four tokenizers do not use, on patched copies of them
 * (tests/fixtures/tokref/synthetic.jsonl.zst, tools/ref/gen-synthetic.mjs). */
static void write_file(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(data, 1, len, f), len);
	fclose(f);
}

START_TEST(test_synthetic)
{
	struct ftk_reader *r;
	struct ftk_line line;
	struct ftk_error e;
	int variants = 0, bad = 0, texts = 0;
	ck_assert_int_eq(ftk_reader_open(&r, src_path("tests/fixtures/tokref/synthetic.jsonl.zst"), &e), 0);
	while (ftk_reader_next(r, &line, &e) > 0) {
		cJSON *row = cJSON_ParseWithLength(line.data, line.len);
		const char *name = ftk_json_get_str(row, "name"), *base = ftk_json_get_str(row, "base");
		char path[600], *data;
		size_t len;
		cJSON *tj;
		snprintf(path, sizeof(path), "%s/tokenizer.json", base);
		tj = read_json(src_path(path));
		cJSON *p;
		cJSON_ArrayForEach(p, cJSON_GetObjectItem(row, "patch")) {
			if (!strcmp(p->string, "model")) {
				cJSON *m;
				cJSON_ArrayForEach(m, p)
					cJSON_ReplaceItemInObject(cJSON_GetObjectItem(tj, "model"), m->string, cJSON_Duplicate(m, 1));
			} else {
				cJSON_ReplaceItemInObject(tj, p->string, cJSON_Duplicate(p, 1));
			}
		}
		cJSON_ArrayForEach(p, cJSON_GetObjectItem(row, "added")) {
			cJSON *at = cJSON_GetObjectItem(tj, "added_tokens"), *x;
			int i = 0;
			cJSON_ArrayForEach(x, at) {
				if (cJSON_GetObjectItem(x, "id")->valueint == cJSON_GetObjectItem(p, "id")->valueint) break;
				i++;
			}
			cJSON_ReplaceItemInArray(at, i, cJSON_Duplicate(p, 1));
		}
		mkdir(name, 0777);
		snprintf(path, sizeof(path), "%s/tokenizer.json", name);
		char *out = cJSON_PrintUnformatted(tj);
		write_file(path, out, strlen(out));
		cJSON_free(out);
		cJSON_Delete(tj);
		snprintf(path, sizeof(path), "%s/tokenizer_config.json", base);
		ck_assert_int_eq(ftk_read_all(src_path(path), &data, &len, NULL), 0);
		snprintf(path, sizeof(path), "%s/tokenizer_config.json", name);
		write_file(path, data, len);
		free(data);

		struct ftk_tokenizer *t;
		char buf[1200];
		ck_assert_msg(ftk_tokenizer_load(&t, name, &e) == 0, "%s: %s", name, ftk_error_format(&e, buf, sizeof(buf)));
		struct ftk_tokens tk = FTK_TOKENS_INIT;
		const cJSON *tx = cJSON_GetObjectItem(row, "texts");
		for (int i = 0; i < cJSON_GetArraySize(tx); i++) {
			const char *s = cJSON_GetArrayItem(tx, i)->valuestring;
			for (int add = 0; add < 2; add++) {
				const cJSON *want = cJSON_GetArrayItem(cJSON_GetObjectItem(row, add ? "ids_add" : "ids"), i);
				ftk_tokenizer_encode(t, s, strlen(s), add ? FTK_TOK_ADD_SPECIAL : 0, &tk, NULL);
				bad += check_limits(t, name, s, strlen(s), add ? FTK_TOK_ADD_SPECIAL : 0, &tk);
				if (!same_ids(want, &tk)) {
					if (bad < 8) { fprintf(stderr, "%s: '%s'%s\n", name, s, add ? " (special tokens added)" : ""); print_ids("ids", want, &tk); }
					bad++;
				}
			}
			texts++;
		}
		ftk_tokens_release(&tk);
		ftk_tokenizer_free(t);
		cJSON_Delete(row);
		variants++;
	}
	ftk_reader_close(r);
	fprintf(stderr, "synthetic: %d variants, %d texts, %d mismatches\n", variants, texts, bad);
	ck_assert_int_ge(variants, 9);
	ck_assert_int_eq(bad, 0);
}
END_TEST

/*
 * The limited encode under every Split behavior, which the four real
 * tokenizers (all Isolated) do not reach: stories260K with a Split on
 * spaces, on a text of runs of one to three spaces, so that split_piece
 * stops mid-piece with pieces still open (MergedWithNext's pending space,
 * Contiguous's run).  The whole encode is the reference here; the test
 * is that stopping early changes nothing before the stop.
 */
START_TEST(test_limit_behaviors)
{
	static const char *const beh[] = { "Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous" };
	cJSON *tj;
	tj = read_json(src_path("datasets/models/stories260K/tokenizer.json"));
	struct strbuf text = STRBUF_INIT;
	for (int i = 0; i < 300; i++)
		strbuf_addf(&text, "%s%.*s", i % 7 ? "once" : "upon", 1 + i % 3, "   ");
	int bad = 0, runs = 0;
	mkdir("limit-split", 0777);
	for (size_t b = 0; b < sizeof(beh) / sizeof(beh[0]); b++)
		for (int inv = 0; inv < 2; inv++) {
			char pre[300];
			snprintf(pre, sizeof(pre), "{\"type\":\"Split\",\"pattern\":{\"String\":\" \"},\"behavior\":\"%s\","
				 "\"invert\":%s}", beh[b], inv ? "true" : "false");
			cJSON_ReplaceItemInObject(tj, "pre_tokenizer", cJSON_Parse(pre));
			cJSON_ReplaceItemInObject(tj, "normalizer", cJSON_CreateNull());
			char *out = cJSON_PrintUnformatted(tj);
			write_file("limit-split/tokenizer.json", out, strlen(out));
			cJSON_free(out);
			struct ftk_tokenizer *t;
			struct ftk_error e;
			ck_assert_int_eq(ftk_tokenizer_load(&t, "limit-split/tokenizer.json", &e), 0);
			struct ftk_tokens full = FTK_TOKENS_INIT;
			for (size_t cut = 40; cut <= text.len; cut += text.len / 5) {
				ck_assert_int_gt(ftk_tokenizer_encode(t, text.buf, cut, FTK_TOK_OFFSETS, &full, NULL), 0);
				bad += check_limits(t, beh[b], text.buf, cut, FTK_TOK_OFFSETS, &full);
				for (size_t max = 4; max < full.n; max += 13) {	/* the limits check_limits leaves out */
					struct ftk_tokens lim = FTK_TOKENS_INIT;
					long got = ftk_tokenizer_encode_max(t, text.buf, cut, 0, max, &lim, NULL);
					if (got != (long)max + 1 || memcmp(lim.ids, full.ids, (max + 1) * 4)) {
						if (bad < 3) fprintf(stderr, "%s%s: limit %zu of %zu: %ld\n", beh[b], inv ? " inverted" : "", max, full.n, got);
						bad++;
					}
					ftk_tokens_release(&lim);
					runs++;
				}
			}
			ftk_tokens_release(&full);
			ftk_tokenizer_free(t);
		}
	fprintf(stderr, "limits under Split behaviors: %d limited encodes, %d mismatches\n", runs, bad);
	ck_assert_int_gt(runs, 500);
	ck_assert_int_eq(bad, 0);
	cJSON_Delete(tj);
	strbuf_release(&text);
}
END_TEST

/*
 * A limited encode stops early: 4 MB of prose with a limit of 100 ids gives
 * 101 ids and holds only what the normalizer's copy of the text and the
 * cache need, while the whole encode holds its ids and pre-tokens too
 * (about one id and one 8-byte piece per 4 bytes of this text, so at least
 * 3 bytes more per input byte).  Counted in ftk_tokens_bytes, not timed.
 */
START_TEST(test_limit_stops_early)
{
	struct strbuf text = STRBUF_INIT;
	while (text.len < (4u << 20)) strbuf_addstr(&text, "Once upon a time, there was a little girl. ");
	for (int k = 0; k < 4; k++) {
		struct ftk_tokenizer *t = load(k);
		struct ftk_tokens full = FTK_TOKENS_INIT, lim = FTK_TOKENS_INIT;
		long n = ftk_tokenizer_encode(t, text.buf, text.len, 0, &full, NULL);
		long m = ftk_tokenizer_encode_max(t, text.buf, text.len, 0, 100, &lim, NULL);
		size_t bf = ftk_tokens_bytes(&full), bl = ftk_tokens_bytes(&lim);
		fprintf(stderr, "%s: %zu bytes of text: %ld ids, %zu bytes held; limit 100: %ld ids, %zu bytes held\n",
			NAMES[k], text.len, n, bf, m, bl);
		ck_assert_int_gt(n, (long)(text.len / 8));
		ck_assert_int_eq(m, 101);
		ck_assert(!memcmp(lim.ids, full.ids, 101 * 4));
		ck_assert_uint_lt(bl + 3 * text.len, bf);
		ftk_tokens_release(&full);
		ftk_tokens_release(&lim);
		ftk_tokenizer_free(t);
	}
	strbuf_release(&text);
}
END_TEST

/* single_word, which tokenizers.js ignores, so there is no reference run:
 * the expectation is the Rust library's documented rule (the added token
 * matches only where it is not part of a longer word). */
START_TEST(test_single_word)
{
	cJSON *tj;
	tj = read_json(src_path("tests/fixtures/tokenizers/llama3/tokenizer.json"));
	cJSON *at = cJSON_GetObjectItem(tj, "added_tokens");
	cJSON_ReplaceItemInArray(at, 3, cJSON_Parse("{\"id\":128003,\"content\":\"zz\",\"single_word\":true,\"lstrip\":false,"
						  "\"rstrip\":false,\"normalized\":false,\"special\":false}"));
	char *out = cJSON_PrintUnformatted(tj);
	write_file("sw.json", out, strlen(out));
	cJSON_free(out);
	cJSON_Delete(tj);
	struct ftk_tokenizer *t;
	ck_assert_int_eq(ftk_tokenizer_load(&t, "sw.json", NULL), 0);
	struct ftk_tokens tk = FTK_TOKENS_INIT;
	const char *cases[][2] = { { "zz", "1" }, { "a zz b", "1" }, { "xzz", "0" }, { "zzx", "0" }, { "zz.", "1" }, { "_zz", "0" } };
	for (size_t i = 0; i < FTK_ARRAY_SIZE(cases); i++) {
		ftk_tokenizer_encode(t, cases[i][0], strlen(cases[i][0]), 0, &tk, NULL);
		int found = 0;
		for (size_t k = 0; k < tk.n; k++) found |= tk.ids[k] == 128003;
		ck_assert_msg(found == (cases[i][1][0] == '1'), "'%s'", cases[i][0]);
	}
	ftk_tokens_release(&tk);
	ftk_tokenizer_free(t);
}
END_TEST

/*
 * A text of a few MiB is encoded in chunks cut before " word"
 * (encode_chunked).  The reference is the same tokenizer with its Split
 * regex wrapped in "(?:...)": the same pattern to PCRE2, but not one the
 * chunker knows, so that text goes through encode_segment whole.  Ids and
 * offsets must be the same, for Qwen3 (NFC, one digit a piece) and Llama 3
 * (no normalizer, three digits), over words, contractions in both cases,
 * digits, punctuation, runs of spaces, tabs and newlines, precomposed and
 * decomposed accents, CJK and emoji.
 */
static size_t chunk_text(char *buf, size_t n)
{
	static const char *const bits[] = { "word", "Cat", "it's", "I'LL", "they've", "12345", "7", ",", ".",
					    "!?", "--", "   ", "\t", "\n", "\r\n", "\n\n  ", "caf\xc3\xa9",
					    "cafe\xcc\x81", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
					    "\xf0\x9f\x98\x80", "x", "Hello", "world", "a" };
	uint64_t st = 12345;
	size_t len = 0;
	while (len + 64 < n) {
		st = st * 6364136223846793005ull + 1442695040888963407ull;
		const char *b = bits[(st >> 33) % FTK_ARRAY_SIZE(bits)];
		size_t bl = strlen(b);
		memcpy(buf + len, b, bl);
		len += bl;
		if ((st >> 20) % 4)
			buf[len++] = ' ';
	}
	return len;
}

START_TEST(test_chunked_encode)
{
	static const char *const which[] = { "tests/fixtures/tokenizers/qwen3/tokenizer.json",
					     "tests/fixtures/tokenizers/llama3/tokenizer.json" };
	size_t cap = (size_t)5 << 19;	/* 2.5 MiB: two cuts at 1 MiB chunks */
	char *text = xmalloc(cap);
	size_t tlen = chunk_text(text, cap);
	for (size_t k = 0; k < FTK_ARRAY_SIZE(which); k++) {
		cJSON *tj;
		tj = read_json(src_path(which[k]));
		cJSON *pat = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(
			cJSON_GetObjectItem(tj, "pre_tokenizer"), "pretokenizers"), 0), "pattern");
		cJSON *re = cJSON_GetObjectItem(pat, "Regex");
		ck_assert_ptr_nonnull(re);
		struct strbuf w = STRBUF_INIT;
		strbuf_addf(&w, "(?:%s)", re->valuestring);
		cJSON_ReplaceItemInObject(pat, "Regex", cJSON_CreateString(w.buf));
		strbuf_release(&w);
		char *out = cJSON_PrintUnformatted(tj);
		write_file("whole.json", out, strlen(out));
		cJSON_free(out);
		cJSON_Delete(tj);
		struct ftk_tokenizer *t, *ref;
		ck_assert_int_eq(ftk_tokenizer_load(&t, src_path(which[k]), NULL), 0);
		ck_assert_int_eq(ftk_tokenizer_load(&ref, "whole.json", NULL), 0);
		for (unsigned flags = 0; flags <= FTK_TOK_OFFSETS; flags += FTK_TOK_OFFSETS) {
			struct ftk_tokens a = FTK_TOKENS_INIT, b = FTK_TOKENS_INIT;
			long na = ftk_tokenizer_encode(t, text, tlen, flags, &a, NULL);
			long nb = ftk_tokenizer_encode(ref, text, tlen, flags, &b, NULL);
			ck_assert_int_gt(nb, 100000);
			ck_assert_int_eq(na, nb);
			for (long i = 0; i < na; i++) {
				ck_assert_msg(a.ids[i] == b.ids[i], "%s: id %ld: %u, whole %u", which[k], i, a.ids[i], b.ids[i]);
				if (flags)
					ck_assert_msg(a.start[i] == b.start[i] && a.end[i] == b.end[i],
						      "%s: token %ld at %u..%u, whole %u..%u", which[k], i,
						      a.start[i], a.end[i], b.start[i], b.end[i]);
			}
			ftk_tokens_release(&a);
			ftk_tokens_release(&b);
		}
		ftk_tokenizer_free(t);
		ftk_tokenizer_free(ref);
	}
	free(text);
}
END_TEST

/* What ftk_tokenizer_encode_each handed over, kept whole to compare. */
struct each_got {
	uint32_t *ids, *start, *end;
	size_t n, alloc, calls, biggest;
	int stop_after;		/* > 0: fail the call after this many */
};

static int each_keep(void *arg, size_t first, const uint32_t *ids, const uint32_t *start, const uint32_t *end,
		     size_t n, struct ftk_error *err)
{
	struct each_got *g = arg;
	ck_assert_uint_eq(first, g->n);	/* every token once, in order */
	ck_assert_uint_gt(n, 0);
	if (g->stop_after && g->calls == (size_t)g->stop_after)
		return ftk_error_msg(err, FTK_EDATA, "stopped after %zu calls", g->calls);
	g->calls++;
	if (n > g->biggest) g->biggest = n;
	if (g->n + n > g->alloc) {
		g->alloc = (g->n + n) * 2;
		g->ids = xrealloc(g->ids, g->alloc * 4);
		g->start = xrealloc(g->start, g->alloc * 4);
		g->end = xrealloc(g->end, g->alloc * 4);
	}
	memcpy(g->ids + g->n, ids, n * 4);
	memcpy(g->start + g->n, start, n * 4);
	memcpy(g->end + g->n, end, n * 4);
	g->n += n;
	return 0;
}

/*
 * ftk_tokenizer_encode_each hands over the ids and offsets that
 * ftk_tokenizer_encode gives with FTK_TOK_OFFSETS, each token once and in
 * order, and keeps only a stretch of offsets: for a long text that the
 * tokenizer cuts in 1 MiB chunks (Qwen3, Llama 3), the offsets it holds are
 * a chunk's, not the text's.  The same ftk_tokens is used with offsets kept
 * afterwards, which must not see the stretch's bookkeeping.  An error from
 * the function stops the encoding and is returned with its message.
 */
START_TEST(test_encode_each)
{
	size_t cap = (size_t)5 << 19;
	char *big = xmalloc(cap);
	size_t blen = chunk_text(big, cap);
	const char *small = "<|im_start|>user\nHello  world<|im_end|>\n<s> caf\xc3\xa9 e\xcc\x81 \xe4\xb8\x96 </s>x";
	for (int k = 0; k < 4; k++) {
		struct ftk_tokenizer *t = load(k);
		for (int which = 0; which < 2; which++) {
			const char *s = which ? big : small;
			size_t len = which ? blen : strlen(small);
			struct ftk_tokens a = FTK_TOKENS_INIT, b = FTK_TOKENS_INIT;
			struct each_got g = { 0 };
			long n = ftk_tokenizer_encode(t, s, len, FTK_TOK_OFFSETS, &a, NULL);
			ck_assert_int_gt(n, 0);
			ck_assert_int_eq(ftk_tokenizer_encode_each(t, s, len, 0, each_keep, &g, &b, NULL), n);
			ck_assert_uint_eq(g.n, (size_t)n);
			ck_assert(!memcmp(b.ids, a.ids, n * 4));
			ck_assert(!memcmp(g.ids, a.ids, n * 4));
			for (long i = 0; i < n; i++)
				ck_assert_msg(g.start[i] == a.start[i] && g.end[i] == a.end[i],
					      "%s: token %ld at %u..%u, kept %u..%u", NAMES[k], i, g.start[i], g.end[i],
					      a.start[i], a.end[i]);
			if (which && k < 2) {	/* chunked: a chunk's offsets at a time */
				ck_assert_uint_ge(g.calls, 3);
				ck_assert_msg(g.biggest < (size_t)n / 2 && b.alloc_off <= 2 * g.biggest,
					      "%s: %zu of %ld offsets held, stretches up to %zu", NAMES[k], b.alloc_off, n,
					      g.biggest);
			}
			/* the same ftk_tokens with offsets kept again */
			ck_assert_int_eq(ftk_tokenizer_encode(t, s, len, FTK_TOK_OFFSETS, &b, NULL), n);
			ck_assert(!memcmp(b.start, a.start, n * 4) && !memcmp(b.end, a.end, n * 4));
			/* a failing function stops the encoding */
			struct each_got stop = { .stop_after = 1 };
			struct ftk_error e;
			ftk_error_clear(&e);
			if (g.calls > 1) {
				ck_assert_int_eq(ftk_tokenizer_encode_each(t, s, len, 0, each_keep, &stop, &b, &e), FTK_EDATA);
				ck_assert_str_eq(e.msg, "stopped after 1 calls");
				ck_assert_uint_eq(stop.calls, 1);
			}
			free(g.ids); free(g.start); free(g.end);
			free(stop.ids); free(stop.start); free(stop.end);
			/* ftk_tokens_take_ids: the ids are the caller's, the struct goes on */
			uint32_t *mine = ftk_tokens_take_ids(&a);
			ck_assert_ptr_nonnull(mine);
			ck_assert_ptr_null(a.ids);
			ck_assert_int_eq(ftk_tokenizer_encode(t, s, len, 0, &a, NULL), n);
			ck_assert(!memcmp(mine, a.ids, n * 4));
			free(mine);
			ftk_tokens_release(&a);
			ftk_tokens_release(&b);
		}
		ftk_tokenizer_free(t);
	}
	free(big);
}
END_TEST

/*
 * Without offsets, Prepend and String Replace rewrite the text in place
 * (backward when the content is longer than the pattern, which needs a
 * pattern whose occurrences cannot overlap); with offsets they write a
 * second buffer as before.  Both must give the same ids, for patterns that
 * shrink, delete, grow, and overlap themselves ("aa", "aba": forward
 * matching takes the first of two overlapping occurrences), each alone
 * after the others in one Sequence, on texts full of overlaps.  The real
 * tokenizers' references (llama2, stories260K: Prepend, then " " by "▁")
 * go through the in-place path in the tests above.
 */
START_TEST(test_replace_in_place)
{
	static const char *const reps[][2] = {
		{ "aa", "a" }, { "#", "" }, { "ab", "XYZ" }, { "aba", "QQQQ" }, { " ", "\u2581" },
		{ "b", "bb" }, { "xyz", "x" }, { "\u00e9", "e\u0301!" },
	};
	static const char *const texts[] = {
		"aaaa aaa a b ababab abababa ## #a# b#b", "abaababa aabaa ba ab", "", "#", "##########",
		"caf\xc3\xa9 xyzxyz xyxyz \xc3\xa9\xc3\xa9", "a", "ab", "aba", " lead and trail ",
	};
	cJSON *tj;
	tj = read_json(src_path("datasets/models/stories260K/tokenizer.json"));
	int checked = 0;
	for (size_t only = 0; only <= FTK_ARRAY_SIZE(reps); only++) {
		/* one Replace after the model's own Prepend and Replace, or all of them */
		struct strbuf js = STRBUF_INIT;
		strbuf_addstr(&js, "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"}");
		for (size_t i = 0; i < FTK_ARRAY_SIZE(reps); i++)
			if (only == FTK_ARRAY_SIZE(reps) || i == only)
				strbuf_addf(&js, ",{\"type\":\"Replace\",\"pattern\":{\"String\":\"%s\"},\"content\":\"%s\"}",
					    reps[i][0], reps[i][1]);
		strbuf_addstr(&js, "]}");
		cJSON *norm = cJSON_Parse(js.buf);
		ck_assert_ptr_nonnull(norm);
		strbuf_release(&js);
		cJSON_ReplaceItemInObject(tj, "normalizer", norm);
		char *out = cJSON_PrintUnformatted(tj);
		write_file("inplace.json", out, strlen(out));
		cJSON_free(out);
		struct ftk_tokenizer *t;
		struct ftk_error e;
		char buf[1200];
		ck_assert_msg(ftk_tokenizer_load(&t, "inplace.json", &e) == 0, "%s", ftk_error_format(&e, buf, sizeof(buf)));
		struct ftk_tokens a = FTK_TOKENS_INIT, b = FTK_TOKENS_INIT;
		for (size_t k = 0; k < FTK_ARRAY_SIZE(texts); k++) {
			long na = ftk_tokenizer_encode(t, texts[k], strlen(texts[k]), 0, &a, NULL);
			long nb = ftk_tokenizer_encode(t, texts[k], strlen(texts[k]), FTK_TOK_OFFSETS, &b, NULL);
			ck_assert_msg(na == nb && (na <= 0 || !memcmp(a.ids, b.ids, na * 4)),
				      "replace %zu, text '%s': %ld ids in place, %ld with offsets", only, texts[k], na, nb);
			checked++;
		}
		ftk_tokens_release(&a);
		ftk_tokens_release(&b);
		ftk_tokenizer_free(t);
	}
	cJSON_Delete(tj);
	ck_assert_int_eq(checked, (int)((FTK_ARRAY_SIZE(reps) + 1) * FTK_ARRAY_SIZE(texts)));
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("tokenizer");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_qwen3_ids);
	tcase_add_test(tc, test_llama3_ids);
	tcase_add_test(tc, test_llama2_ids);
	tcase_add_test(tc, test_stories_ids);
	tcase_add_test(tc, test_stories_golden);
	tcase_add_test(tc, test_accessors);
	tcase_add_test(tc, test_offsets);
	tcase_add_test(tc, test_errors);
	tcase_add_test(tc, test_hostile_files);
	tcase_add_test(tc, test_long_pretoken);
	tcase_add_test(tc, test_synthetic);
	tcase_add_test(tc, test_single_word);
	tcase_add_test(tc, test_chunked_encode);
	tcase_add_test(tc, test_encode_each);
	tcase_add_test(tc, test_replace_in_place);
	tcase_add_test(tc, test_limit_behaviors);
	tcase_add_test(tc, test_limit_stops_early);
	suite_add_tcase(s, tc);
	return s;
}

FTK_TEST_MAIN(make_suite)
