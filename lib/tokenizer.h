/*
 * tokenizer.h: Hugging Face tokenizer.json, with the same ids as Hugging Face.
 *
 * A tokenizer is loaded from a model directory (tokenizer.json and, beside it,
 * tokenizer_config.json) or from a tokenizer.json path.  It implements the
 * pipeline of the `tokenizers` library for the BPE models that open-weight
 * LLMs use: byte-level BPE (GPT-2, Llama 3, Qwen2/2.5/3) and
 * SentencePiece-style BPE with byte fallback (Llama 2, Mistral, stories260K):
 *
 *   added/special tokens split out of the raw text (lstrip, rstrip,
 *   single_word, normalized flags)  ->  normalizer (NFC, NFKC, Prepend,
 *   Replace, Lowercase, Strip, Sequence)  ->  pre-tokenizer (Split with the
 *   model's regex through PCRE2 JIT/UCP, ByteLevel, Metaspace, Digits,
 *   Whitespace, WhitespaceSplit, Sequence)  ->  BPE (heap-ordered merges, so
 *   a long pre-token is O(n log n), never quadratic; ignore_merges;
 *   byte_fallback; unk)  ->  post-processor (TemplateProcessing, ByteLevel)
 *
 * and the decoders (ByteLevel, Metaspace, Replace, ByteFallback, Fuse,
 * Strip, Sequence).  A component or option outside that list makes loading
 * fail with FTK_EUNSUPPORTED and a message naming it: a tokenizer that would
 * give different ids from Hugging Face is never used silently.
 *
 * Thread safety: a loaded tokenizer is immutable.  Any number of threads may
 * call encode/decode on it at once.
 *
 * Hugging Face behaviours kept on purpose: literal special-token text in the
 * input ("<|im_end|>", "<s>") becomes the special id (pass
 * FTK_TOK_SPLIT_NO_SPECIAL to encode it as plain text instead); the
 * normalizer and pre-tokenizer run on each piece of text between added
 * tokens separately (so Llama 2's Prepend("▁") applies after every special
 * token, as in HF's legacy mode); special tokens are added only by the
 * post-processor, only when FTK_TOK_ADD_SPECIAL is given; single_word
 * added tokens match only outside longer words (tokenizers.js ignores the
 * flag; the Rust library does not).
 *
 * Known limits: added tokens marked "normalized": true are matched on the
 * raw text, before the normalizer (none of the Llama, Mistral or Qwen
 * tokenizers has one); model types other than BPE (WordPiece, Unigram,
 * WordLevel) and the components not listed above are refused at load.
 */
#ifndef FTK_TOKENIZER_H
#define FTK_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "err.h"
#include "strbuf.h"

struct ftk_tokenizer;

/*
 * An encoding: n token ids and, when FTK_TOK_OFFSETS was asked for, the byte
 * range [start[i], end[i]) of the input text that token i came from (a token
 * made only by the normalizer or post-processor, such as a prepended "▁" or
 * an added BOS, has start == end).  Ownership: the struct owns its arrays;
 * ftk_tokens_release() frees them.  Encode functions reset n to 0 and reuse
 * the arrays, so one struct can serve many calls: keep one per thread and
 * reuse it, because it also holds a cache that makes repeated words cheap.
 * One ftk_tokens may be used with several tokenizers (the cache notices).
 */
struct ftk_tokens {
	uint32_t *ids;
	uint32_t *start, *end;	/* NULL unless offsets were asked for */
	size_t n, alloc, alloc_off;
	void *ws;		/* private: scratch space and a cache of pre-token ids */
};
#define FTK_TOKENS_INIT { NULL, NULL, NULL, 0, 0, 0, NULL }
void ftk_tokens_release(struct ftk_tokens *t);
/* Bytes of heap t holds: ids, offsets, scratch space and cache (PCRE2's
 * match data and JIT stack left out). */
size_t ftk_tokens_bytes(const struct ftk_tokens *t);

/* Flags for ftk_tokenizer_encode. */
enum {
	FTK_TOK_ADD_SPECIAL = 1,	/* run the post-processor (BOS for Llama 2, ...) */
	FTK_TOK_OFFSETS = 2,		/* fill start/end */
	FTK_TOK_SPLIT_NO_SPECIAL = 4,	/* special-token text in the input is plain text */
};

/*
 * Load a tokenizer.  path is a directory holding tokenizer.json (and
 * optionally tokenizer_config.json), or the path of a tokenizer.json file
 * (tokenizer_config.json is then looked for in the same directory).
 * Returns 0 and *out (free with ftk_tokenizer_free), or FTK_ENOTFOUND (no
 * tokenizer.json), FTK_EDATA (malformed JSON or fields, with the field path),
 * FTK_EUNSUPPORTED (a component this implementation lacks, named in the
 * message).  err->file is the file at fault.
 */
int ftk_tokenizer_load(struct ftk_tokenizer **out, const char *path, struct ftk_error *err);
void ftk_tokenizer_free(struct ftk_tokenizer *tok);

/*
 * Encode text[0..len) (UTF-8; invalid bytes are encoded through byte-level or
 * byte fallback like any byte, or as unk) into out, replacing its contents.
 * flags: FTK_TOK_*.  Returns the number of ids (>= 0), or FTK_EUTF8 when the
 * model cannot represent invalid UTF-8 (no byte level, no byte fallback, no
 * unk), or FTK_ELIMIT for a text over 2 GiB.
 */
long ftk_tokenizer_encode(const struct ftk_tokenizer *tok, const char *text, size_t len,
			  unsigned flags, struct ftk_tokens *out, struct ftk_error *err);

/*
 * ftk_tokenizer_encode that stops once the text is known to take more than
 * max ids, for a caller with a context to fill: the work and memory then
 * grow with max, not with the text.  Returns the number of ids (<= max, out
 * as ftk_tokenizer_encode fills it), or max + 1 when the whole encoding
 * would have more than max ids: out then holds its first max + 1 ids (and
 * offsets), and the rest of the text is not tokenized.  Errors as for
 * ftk_tokenizer_encode.  It stops between pre-tokens (each gives at least
 * one id, so counting them is enough to stop), which leaves the
 * normalizer's one pass over the text between two added tokens; a
 * max of SIZE_MAX is no limit.
 */
long ftk_tokenizer_encode_max(const struct ftk_tokenizer *tok, const char *text, size_t len,
			      unsigned flags, size_t max, struct ftk_tokens *out, struct ftk_error *err);

/*
 * ftk_tokenizer_encode with offsets (FTK_TOK_OFFSETS is implied) that are
 * handed over as they are made instead of kept, for a caller that needs each
 * token's range once (a loss mask): the 8 bytes a token of offsets are then
 * those of one stretch of text (up to an added token, or a chunk of a long
 * segment), not of the whole text.  each(arg, first, ids, start, end, n, err)
 * gets tokens [first, first + n): every token once, in order, ids pointing
 * into out->ids and start/end into out's offsets (valid during the call).
 * It returns 0 to go on, or a negative error (err set) that stops the
 * encoding and is returned.  out gets the same ids as ftk_tokenizer_encode
 * gives; its start/end hold only the last stretch's offsets afterwards.
 */
typedef int (*ftk_tokens_each_fn)(void *arg, size_t first, const uint32_t *ids, const uint32_t *start,
				  const uint32_t *end, size_t n, struct ftk_error *err);
long ftk_tokenizer_encode_each(const struct ftk_tokenizer *tok, const char *text, size_t len, unsigned flags,
			       ftk_tokens_each_fn each, void *arg, struct ftk_tokens *out, struct ftk_error *err);

/*
 * Take t's ids (caller frees; NULL when it has none), leaving t without them
 * (n is 0; its offsets, scratch space and cache stay): a caller that keeps
 * the ids of a long text does not need a second copy of them.
 */
uint32_t *ftk_tokens_take_ids(struct ftk_tokens *t);

/*
 * Decode ids through the tokenizer's decoder and append the text to out.
 * Special tokens are left out when skip_special is non-zero.  Byte sequences
 * that are not valid UTF-8 become U+FFFD as Hugging Face does.  Returns 0, or
 * FTK_ENOTFOUND for an id outside the vocabulary (nothing appended).
 */
int ftk_tokenizer_decode(const struct ftk_tokenizer *tok, const uint32_t *ids, size_t n,
			 int skip_special, struct strbuf *out, struct ftk_error *err);

/*
 * Streaming decode, for printing tokens as they are generated: push ids one
 * at a time and get the text that became final (complete UTF-8, decoder rules
 * such as "strip the first space" applied as in a whole decode).  The
 * concatenation of everything appended equals ftk_tokenizer_decode of all
 * ids pushed, once ftk_detok_finish has been called.  The tokenizer is
 * borrowed and must outlive the stream.
 */
struct ftk_detok {
	const struct ftk_tokenizer *tok;
	uint32_t *ids;
	size_t n, alloc;
	size_t prefix;		/* ids[prefix..] are decoded together each time */
	size_t read;		/* ids[prefix..read) already produced text */
	int skip_special;
};
void ftk_detok_init(struct ftk_detok *d, const struct ftk_tokenizer *tok, int skip_special);
/* Append to out the text that id completes (possibly nothing).  0 or FTK_ENOTFOUND. */
int ftk_detok_push(struct ftk_detok *d, uint32_t id, struct strbuf *out, struct ftk_error *err);
/* Append whatever is still pending (incomplete UTF-8 as U+FFFD). */
void ftk_detok_finish(struct ftk_detok *d, struct strbuf *out);
void ftk_detok_release(struct ftk_detok *d);

/* Vocabulary size: the largest id + 1, added tokens included. */
uint32_t ftk_tokenizer_vocab_size(const struct ftk_tokenizer *tok);

/*
 * The id of a token given by its exact text (vocabulary string as written in
 * tokenizer.json, or an added token's content, e.g. "<|im_end|>").  Returns the
 * id (>= 0) or -1.
 */
long ftk_tokenizer_token_id(const struct ftk_tokenizer *tok, const char *s);

/* The vocabulary string of id (as in tokenizer.json), NULL when out of range. Borrowed. */
const char *ftk_tokenizer_token_str(const struct ftk_tokenizer *tok, uint32_t id);

/* 1 when id is an added token marked special (skipped by skip_special decodes). */
int ftk_tokenizer_is_special(const struct ftk_tokenizer *tok, uint32_t id);

/*
 * Special tokens from tokenizer_config.json (bos_token, eos_token, ... as a
 * string or an {"content":...} object): the text (borrowed, NULL when not
 * set) and id (-1 when not set or not in the vocabulary).  name is "bos",
 * "eos", "unk", "pad".
 */
const char *ftk_tokenizer_special_str(const struct ftk_tokenizer *tok, const char *name);
long ftk_tokenizer_special_id(const struct ftk_tokenizer *tok, const char *name);
#define ftk_tokenizer_bos_id(t) ftk_tokenizer_special_id((t), "bos")
#define ftk_tokenizer_eos_id(t) ftk_tokenizer_special_id((t), "eos")

/* 1 when encoding with FTK_TOK_ADD_SPECIAL puts a BOS first (post-processor). */
int ftk_tokenizer_adds_bos(const struct ftk_tokenizer *tok);

/* chat_template from tokenizer_config.json (the "default" one when it is a list), or NULL. Borrowed. */
const char *ftk_tokenizer_chat_template(const struct ftk_tokenizer *tok);

/* tokenizer_config.json as parsed (NULL when there was none).  Borrowed. */
const cJSON *ftk_tokenizer_config(const struct ftk_tokenizer *tok);

/* xxh3-128 of the tokenizer.json file, 32 lowercase hex digits.  Borrowed. */
const char *ftk_tokenizer_hash(const struct ftk_tokenizer *tok);

/* The directory the tokenizer was loaded from ("." for a bare file name).  Borrowed. */
const char *ftk_tokenizer_dir(const struct ftk_tokenizer *tok);

#endif
