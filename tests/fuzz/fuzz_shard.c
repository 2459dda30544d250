/*
 * fuzz_shard.c: libFuzzer target for the token shard reader.  A shard
 * directory is made once with the writer (its manifest.json stays); each
 * input replaces the shard file (raw, or zstd when it starts with the
 * magic) and is read back with ftk_shard_next and ftk_shard_load_all.
 * Every sequence read must have its ids inside the vocabulary and offsets
 * that add up.  corpus_shard/ holds the writer's shard, decompressed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "lib/shard.h"

static char dir[64], file[96];

static void cleanup(void)
{
	char path[128];
	unlink(file);
	snprintf(path, sizeof(path), "%s/manifest.json", dir);
	unlink(path);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(dir, sizeof(dir), "/tmp/ftk-fuzz-shard.%d", (int)getpid());
	struct ftk_shard_info in;
	memset(&in, 0, sizeof(in));
	in.kind = FTK_SHARD_SFT;
	in.vocab_size = 1000;
	memcpy(in.tokenizer_hash, "0123456789abcdef0123456789abcdef", 33);
	strcpy(in.template_name, "fuzz");
	struct ftk_shard_writer *w;
	struct ftk_error e;
	uint32_t ids[3] = { 1, 2, 999 };
	uint8_t mask[3] = { 0, 1, 1 };
	if (ftk_shard_writer_open(&w, dir, &in, 0, &e) < 0 || ftk_shard_write(w, ids, mask, 3, &e) < 0 ||
	    ftk_shard_write(w, ids, mask, 0, &e) < 0 || ftk_shard_writer_close(w, &e) < 0)
		abort();
	snprintf(file, sizeof(file), "%s/shard-00000.ftks.zst", dir);
	atexit(cleanup);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *f = fopen(file, "wb");
	if (!f)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	struct ftk_shard_reader *r;
	struct ftk_error e;
	if (ftk_shard_open(&r, dir, &e) == 0) {
		struct ftk_seq s;
		uint32_t vocab = ftk_shard_info(r)->vocab_size;
		while (ftk_shard_next(r, &s, &e) == 1)
			for (uint32_t i = 0; i < s.len; i++)
				if (s.ids[i] >= vocab || s.mask[i] > 1)
					abort();
		ftk_shard_close(r);
	}
	uint32_t *ids;
	uint8_t *mask;
	uint64_t *off, ns;
	if (ftk_shard_load_all(dir, NULL, &ids, &mask, &off, &ns, &e) == 0) {
		for (uint64_t i = 0; i < ns; i++)
			if (off[i] > off[i + 1])
				abort();
		free(ids);
		free(mask);
		free(off);
	}
	return 0;
}
