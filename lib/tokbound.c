/*
 * tokbound.c: how many bytes of text one token can stand for at most (see
 * tokbound.h).
 *
 * A token covers at most as many input bytes as its vocabulary string has:
 * byte-level strings spell each byte as one character of one or two bytes,
 * Metaspace writes a space as the three-byte "\u2581", byte fallback's
 * "<0x41>" stands for one byte.  Only the normalizer can make the text the
 * model sees shorter than the input, so the bound is the longest string
 * times what the normalizer may shrink text by, and there is none when a
 * normalizer or pre-tokenizer may delete text outright.  The tokenizer is
 * read from its tokenizer.json again rather than from tokenizer.c's
 * structures, so this stays a reader of the format, not of the encoder.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "json.h"
#include "stream.h"
#include "tokbound.h"

/*
 * How many input bytes a normalizer may turn into one byte at most, or 0
 * when there is no bound (it may delete text).  Unicode normalization and
 * lowercasing shrink by 3 at most (a Hangul syllable composed from three
 * jamo, the Kelvin sign lowercased to "k"); Replace by its pattern's
 * length over its content's.
 */
static double norm_shrink(const cJSON *n)
{
	const char *type = ftk_json_get_str(n, "type");
	if (!n || cJSON_IsNull(n))
		return 1;
	if (!type)
		return 0;
	if (!strcmp(type, "Sequence")) {
		double f = 1;
		const cJSON *x;
		cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(n, "normalizers")) f *= norm_shrink(x);
		return f;
	}
	if (!strcmp(type, "NFC") || !strcmp(type, "NFD") || !strcmp(type, "NFKC") || !strcmp(type, "NFKD") ||
	    !strcmp(type, "Lowercase"))
		return 3;
	if (!strcmp(type, "Prepend"))
		return 1;
	if (!strcmp(type, "Replace")) {
		const char *pat = ftk_json_get_str(cJSON_GetObjectItemCaseSensitive(n, "pattern"), "String");
		const char *to = ftk_json_get_str(n, "content");
		if (!pat || !to || !*to)
			return 0;
		double f = (double)strlen(pat) / (double)strlen(to);
		return f > 1 ? f : 1;
	}
	return 0;	/* Strip, StripAccents, ...: may delete any amount */
}

/* 1 when a pre-tokenizer keeps every byte (none drops what it splits on). */
static int pre_keeps(const cJSON *p)
{
	const char *type = ftk_json_get_str(p, "type");
	if (!p || cJSON_IsNull(p))
		return 1;
	if (!type)
		return 0;
	if (!strcmp(type, "Sequence")) {
		const cJSON *x;
		cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(p, "pretokenizers"))
			if (!pre_keeps(x))
				return 0;
		return 1;
	}
	if (!strcmp(type, "Split")) {
		const char *b = ftk_json_get_str(p, "behavior");
		return b && strcmp(b, "Removed");
	}
	return !strcmp(type, "ByteLevel") || !strcmp(type, "Metaspace") || !strcmp(type, "Digits");
}

size_t ftk_tokenizer_bytes_per_token(const struct ftk_tokenizer *tok)
{
	const char *dir = ftk_tokenizer_dir(tok);
	struct strbuf path = STRBUF_INIT;
	char *data = NULL;
	size_t len = 0, longest = 1;
	cJSON *j = NULL;
	double shrink = 0;
	strbuf_addf(&path, "%s/tokenizer.json", dir);
	if (ftk_read_all(path.buf, &data, &len, NULL) == 0 && ftk_json_parse_object(data, len, &j, NULL) == 0) {
		const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
		/* fused unknowns: one unk token for a run of any length */
		int fuse = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "fuse_unk")) &&
			   !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback"));
		if (!fuse && pre_keeps(cJSON_GetObjectItemCaseSensitive(j, "pre_tokenizer")))
			shrink = norm_shrink(cJSON_GetObjectItemCaseSensitive(j, "normalizer"));
		const cJSON *a;
		cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(j, "added_tokens")) {
			const char *c = ftk_json_get_str(a, "content");
			if (c && strlen(c) > longest)
				longest = strlen(c);
		}
	}
	for (uint32_t id = 0, n = ftk_tokenizer_vocab_size(tok); id < n; id++) {
		const char *str = ftk_tokenizer_token_str(tok, id);
		if (str && strlen(str) > longest)
			longest = strlen(str);
	}
	cJSON_Delete(j);
	free(data);
	strbuf_release(&path);
	return shrink > 0 ? (size_t)ceil((double)longest * shrink) : 0;
}

