/*
 * train_helpers.h: what the trainer's unit suites share: token shards made
 * from text with the stories260K tokenizer (so the tests do not depend on
 * ftk-tokenize), the small task they train on, and file comparison.
 */
#ifndef FTK_TEST_TRAIN_HELPERS_H
#define FTK_TEST_TRAIN_HELPERS_H

#include <stdio.h>
#include <string.h>
#include "testutil.h"
#include "lib/shard.h"
#include "lib/strbuf.h"
#include "lib/tokenizer.h"

#define STORIES "datasets/models/stories260K"

/*
 * Write a shard directory from texts, each encoded with BOS and learned
 * whole (mask 1 on every token).  kind: FTK_SHARD_SFT, or
 * FTK_SHARD_PREFERENCE with texts in (chosen, rejected) order.
 */
static inline void make_shards(const char *dir, const char *const *texts, int n, int kind)
{
	struct ftk_tokenizer *tok;
	struct ftk_tokens t = FTK_TOKENS_INIT;
	struct ftk_error e;
	const char *tj = src_path(STORIES "/tokenizer.json");
	ck_assert_msg(ftk_tokenizer_load(&tok, tj, &e) == 0, "%s", e.msg);
	struct ftk_shard_info info;
	memset(&info, 0, sizeof(info));
	info.kind = (uint32_t)kind;
	info.vocab_size = 512;
	ck_assert_int_eq(ftk_file_hash(tj, info.tokenizer_hash, &e), 0);
	strcpy(info.template_name, "raw");
	struct ftk_shard_writer *w;
	ck_assert_msg(ftk_shard_writer_open(&w, dir, &info, 0, &e) == 0, "%s", e.msg);
	for (int i = 0; i < n; i++) {
		long k = ftk_tokenizer_encode(tok, texts[i], strlen(texts[i]), FTK_TOK_ADD_SPECIAL, &t,
					      &e);
		ck_assert_int_gt(k, 1);
		uint8_t mask[1024];
		ck_assert_int_lt(k, 1024);
		memset(mask, 1, (size_t)k);
		mask[0] = 0;
		ck_assert_int_eq(ftk_shard_write(w, t.ids, mask, (uint32_t)k, &e), 0);
	}
	ck_assert_int_eq(ftk_shard_writer_close(w, &e), 0);
	ftk_tokens_release(&t);
	ftk_tokenizer_free(tok);
}

/* The small task: stories whose second sentence is always "... liked to sing." */
static const char *const task_names[] = { "Lily", "Tom", "Sue", "Ben", "Max", "Mia",
					  "Sam", "Anna", "Tim", "Lucy", "Bob", "Amy" };
static const char *const task_animals[] = { "cat", "dog", "bird", "frog", "fish" };

/* Texts i = 0..n-1 of the task, starting at variant `from` (train and val differ). */
static inline char **task_texts(int from, int n)
{
	char **v = calloc((size_t)n, sizeof(char *));
	for (int i = 0; i < n; i++) {
		int k = from + i;
		const char *name = task_names[k % 12], *animal = task_animals[(k / 12 + k) % 5];
		struct strbuf sb = STRBUF_INIT;
		strbuf_addf(&sb, "Once upon a time, there was a %s named %s. The %s liked to sing.",
			    animal, name, animal);
		v[i] = strbuf_detach(&sb, NULL);
	}
	return v;
}

static inline void free_texts(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static inline void read_all(const char *path, struct strbuf *sb)
{
	strbuf_reset(sb);
	ck_assert_msg(strbuf_read_file(sb, path) == 0, "cannot read %s", path);
}

#endif
