/*
 * tokenizer.c: Hugging Face tokenizer.json, byte for byte.
 *
 * The pipeline is the `tokenizers` library's (see tokenizer.h).  What matters
 * for speed and what matters for exactness are kept apart:
 *
 *   - The vocabulary is stored as raw bytes.  For a byte-level model the
 *     GPT-2 "bytes to unicode" characters of tokenizer.json are decoded once at
 *     load, so BPE runs on the text's own bytes and no string is ever mapped
 *     to that alphabet while encoding.
 *   - Merges live in one open-addressing table keyed by the pair of ids, with
 *     the rank and the merged id as value.  A pre-token is merged with a
 *     binary heap of candidate pairs over a doubly linked list of symbols
 *     (lowest rank first, leftmost on ties, stale entries skipped), which is
 *     what `tokenizers` does and is O(n log n): SentencePiece-style models
 *     have no pre-tokenizer, so a 16-million-character document is one
 *     pre-token.
 *   - Short pre-tokens are looked up in a per-caller cache first (struct
 *     ftk_tokens carries it), which is what makes real text fast: most words
 *     repeat.
 *
 * Offsets (byte ranges of the input for every token) are computed only when
 * asked for: normalizers then carry, for every output byte, the input range
 * it came from.  NFC/NFKC align by runs that start at a character with
 * combining class 0; when that does not reproduce the whole-string result
 * (rare), the whole segment is one range.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>
#define XXH_INLINE_ALL
#include <xxhash.h>
#include "json.h"
#include "stream.h"
#include "tokenizer.h"

/* ------------------------------------------------------------ hash tables */

/* bytes -> id, open addressing.  Keys point into the tokenizer's string pool. */
struct strmap {
	uint32_t *slot;		/* id + 1, 0 empty */
	size_t mask;
};

struct vtok {
	const char *str;	/* as in tokenizer.json (NUL-terminated) */
	const char *raw;	/* model bytes (byte-level decoded) */
	uint32_t slen, rlen;
};

struct merge_ent {
	uint64_t key;		/* (left << 32) | right, UINT64_MAX empty */
	uint32_t rank, id;
};

enum { NORM_NFC = 1, NORM_NFKC, NORM_NFD, NORM_NFKD, NORM_PREPEND, NORM_REPLACE,
       NORM_LOWER, NORM_STRIP, NORM_SEQ };
struct norm {
	int type;
	char *a, *b;		/* prepend / pattern and content */
	size_t alen, blen;
	pcre2_code *re;		/* Replace with a Regex pattern */
	int left, right;	/* Strip */
	struct norm *sub;
	int nsub;
};

enum { PRE_SPLIT = 1, PRE_BYTELEVEL, PRE_METASPACE, PRE_DIGITS, PRE_WHITESPACE,
       PRE_WSSPLIT, PRE_PUNCT, PRE_SEQ };
enum { BEH_REMOVED, BEH_ISOLATED, BEH_MERGED_PREV, BEH_MERGED_NEXT, BEH_CONTIGUOUS };
struct pre {
	int type;
	pcre2_code *re;		/* Split (regex or escaped string), ByteLevel use_regex, ... */
	int behavior, invert;
	int add_prefix_space;	/* ByteLevel */
	char rep[8];		/* Metaspace replacement, UTF-8 */
	size_t rep_len;
	int prepend;		/* Metaspace: 0 never, 1 first, 2 always */
	int split;		/* Metaspace */
	int individual;		/* Digits */
	int local;		/* Split/ByteLevel: a pattern known to cut before " word" (encode_chunked) */
	struct pre *sub;
	int nsub;
};

enum { DEC_BYTELEVEL = 1, DEC_METASPACE, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP,
       DEC_SEQ };
struct dec {
	int type;
	char *a, *b;
	size_t alen, blen;
	int start, stop;	/* Strip */
	char rep[8];
	size_t rep_len;
	int prepend;		/* Metaspace: strip the first space unless never */
	struct dec *sub;
	int nsub;
};

struct added {
	char *content;
	size_t len;
	uint32_t id;
	int special, lstrip, rstrip, single_word, normalized;
};

struct tmpl_item {
	int is_seq;		/* 1: the sequence A; 0: special-token ids */
	uint32_t *ids;
	size_t n;
};

struct ftk_tokenizer {
	struct vtok *vocab;	/* by id; str NULL for holes */
	uint32_t n_vocab;	/* max id + 1 */
	struct strmap by_raw;	/* model vocab: raw bytes -> id */
	struct strmap by_str;	/* every token: tokenizer.json string -> id */
	struct merge_ent *merges;
	size_t merge_mask;
	int byte_level;
	int byte_fallback, fuse_unk, ignore_merges;
	int sp_split;		/* SentencePiece style: words can be merged one by one (see load) */
	long unk_id;
	uint32_t byte_id[256];	/* byte-level: id of each single byte; SP: id of <0xXX> */
	int has_byte_id[256];

	struct norm *norm;
	struct pre *pre;
	struct dec *dec;
	struct tmpl_item *post;	/* TemplateProcessing single; NULL when none */
	size_t n_post;

	struct added *added;
	size_t n_added;
	uint8_t added_first[256];	/* 1 when some added token starts with this byte */
	int added_one_first;		/* the only first byte when all share one (Llama 3: '<'), else -1 */
	uint8_t *is_special;	/* by id */

	cJSON *config;
	char *special_str[4];	/* bos, eos, unk, pad */
	long special_id[4];
	char *chat_template;
	char hash[33];
	char *dir;
	int add_bos_cfg;	/* add_bos_token in the config: -1 absent */
};

static const char *const special_names[4] = { "bos", "eos", "unk", "pad" };

static uint64_t hbytes(const void *p, size_t n) { return XXH3_64bits(p, n); }

static void strmap_init(struct strmap *m, size_t n)
{
	size_t cap = 16;
	while (cap < n * 2 + 16) cap <<= 1;
	m->slot = xcalloc(cap, sizeof(*m->slot));
	m->mask = cap - 1;
}

/* Look up bytes; the key of slot s is given by get(ctx, id). */
static long strmap_get(const struct strmap *m, const struct vtok *v, int raw, const void *p, size_t n)
{
	size_t i = hbytes(p, n) & m->mask;
	for (;;) {
		uint32_t s = m->slot[i];
		if (!s) return -1;
		const struct vtok *t = &v[s - 1];
		const char *k = raw ? t->raw : t->str;
		size_t kl = raw ? t->rlen : t->slen;
		if (kl == n && !memcmp(k, p, n)) return s - 1;
		i = (i + 1) & m->mask;
	}
}

/* Insert id (whose key is already in v[id]); an existing key keeps its first id. */
static void strmap_put(struct strmap *m, const struct vtok *v, int raw, uint32_t id)
{
	const char *k = raw ? v[id].raw : v[id].str;
	size_t n = raw ? v[id].rlen : v[id].slen;
	size_t i = hbytes(k, n) & m->mask;
	for (;;) {
		uint32_t s = m->slot[i];
		if (!s) { m->slot[i] = id + 1; return; }
		const struct vtok *t = &v[s - 1];
		const char *k2 = raw ? t->raw : t->str;
		size_t n2 = raw ? t->rlen : t->slen;
		if (n2 == n && !memcmp(k2, k, n)) return;
		i = (i + 1) & m->mask;
	}
}

static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL;
	return x ^ (x >> 33);
}

static inline const struct merge_ent *merge_get(const struct ftk_tokenizer *t, uint32_t a, uint32_t b)
{
	uint64_t key = ((uint64_t)a << 32) | b;
	size_t i = mix64(key) & t->merge_mask;
	for (;;) {
		const struct merge_ent *e = &t->merges[i];
		if (e->key == key) return e;
		if (e->key == UINT64_MAX) return NULL;
		i = (i + 1) & t->merge_mask;
	}
}

/* ------------------------------------------------------------ byte level */

static uint32_t b2u[256];	/* byte -> code point */
static int16_t u2b[324];	/* code point (< 324) -> byte, -1 */

static void bytes_to_unicode_fill(void)
{
	int n = 0;
	for (int i = 0; i < 324; i++) u2b[i] = -1;
	for (int b = 0; b < 256; b++) {
		if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
			b2u[b] = b;
		else
			b2u[b] = 256 + n++;
		u2b[b2u[b]] = b;
	}
}

static void bytes_to_unicode_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, bytes_to_unicode_fill);
}

/* Decode a byte-level string into raw bytes.  -1 when a character is outside the alphabet. */
static long bytelevel_decode(const char *s, size_t n, char *out)
{
	size_t i = 0, o = 0;
	while (i < n) {
		utf8proc_int32_t cp;
		utf8proc_ssize_t k = utf8proc_iterate((const uint8_t *)s + i, n - i, &cp);
		if (k <= 0 || cp < 0 || cp >= 324 || u2b[cp] < 0) return -1;
		out[o++] = (char)u2b[cp];
		i += k;
	}
	return (long)o;
}

/* ------------------------------------------------------------ loading */

static int err_at(struct ftk_error *e, int code, const char *file, const char *field,
		  const char *fmt, const char *arg)
{
	ftk_error_set(e, code, file, 0, field, fmt, arg);
	return code;
}

static pcre2_code *compile_re(const char *pat, size_t len, int literal, char *emsg, size_t emsz)
{
	int ec;
	PCRE2_SIZE eo;
	uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
	opts |= literal ? PCRE2_LITERAL : PCRE2_UCP;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, len, opts, &ec, &eo, NULL);
	if (!re) {
		PCRE2_UCHAR buf[256];
		pcre2_get_error_message(ec, buf, sizeof(buf));
		snprintf(emsg, emsz, "%s at offset %zu", (char *)buf, (size_t)eo);
		return NULL;
	}
	pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);	/* falls back to the interpreter */
	return re;
}

/* A {"String": s} or {"Regex": r} pattern. */
static pcre2_code *pattern_re(const cJSON *pat, const char *file, const char *field,
			      struct ftk_error *err, char **lit, size_t *litlen)
{
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(pat, "String");
	const cJSON *r = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
	char emsg[300];
	if (cJSON_IsString(s)) {
		if (lit) { *lit = xstrdup(s->valuestring); *litlen = strlen(s->valuestring); }
		pcre2_code *re = compile_re(s->valuestring, strlen(s->valuestring), 1, emsg, sizeof(emsg));
		if (!re) err_at(err, FTK_EDATA, file, field, "bad pattern: %s", emsg);
		return re;
	}
	if (cJSON_IsString(r)) {
		pcre2_code *re = compile_re(r->valuestring, strlen(r->valuestring), 0, emsg, sizeof(emsg));
		if (!re) err_at(err, FTK_EDATA, file, field, "bad regex: %s", emsg);
		return re;
	}
	err_at(err, FTK_EDATA, file, field, "%s: pattern must be {\"String\":...} or {\"Regex\":...}", "pattern");
	return NULL;
}

static const char *jstr(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jbool(const cJSON *o, const char *k, int dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
	return dflt;
}

static int parse_norm(struct norm *n, const cJSON *j, const char *file, const char *field,
		      struct ftk_error *err)
{
	const char *ty = jstr(j, "type");
	memset(n, 0, sizeof(*n));
	if (!ty) return err_at(err, FTK_EDATA, file, field, "%s: missing \"type\"", "normalizer");
	if (!strcmp(ty, "NFC")) n->type = NORM_NFC;
	else if (!strcmp(ty, "NFKC")) n->type = NORM_NFKC;
	else if (!strcmp(ty, "NFD")) n->type = NORM_NFD;
	else if (!strcmp(ty, "NFKD")) n->type = NORM_NFKD;
	else if (!strcmp(ty, "Lowercase")) n->type = NORM_LOWER;
	else if (!strcmp(ty, "Prepend")) {
		const char *p = jstr(j, "prepend");
		if (!p) return err_at(err, FTK_EDATA, file, field, "%s: missing \"prepend\"", "Prepend");
		n->type = NORM_PREPEND;
		n->a = xstrdup(p);
		n->alen = strlen(p);
	} else if (!strcmp(ty, "Replace")) {
		const char *c = jstr(j, "content");
		const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
		if (!c || !pat) return err_at(err, FTK_EDATA, file, field, "%s: needs pattern and content", "Replace");
		n->type = NORM_REPLACE;
		n->re = pattern_re(pat, file, field, err, &n->a, &n->alen);
		if (!n->re) return FTK_EDATA;
		n->b = xstrdup(c);
		n->blen = strlen(c);
	} else if (!strcmp(ty, "Strip")) {
		n->type = NORM_STRIP;
		n->left = jbool(j, "strip_left", 1);
		n->right = jbool(j, "strip_right", 1);
	} else if (!strcmp(ty, "Sequence")) {
		const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "normalizers");
		n->type = NORM_SEQ;
		n->nsub = cJSON_GetArraySize(arr);
		n->sub = xcalloc(n->nsub ? n->nsub : 1, sizeof(*n->sub));
		int i = 0;
		const cJSON *it;
		cJSON_ArrayForEach(it, arr) {
			char f[256];
			snprintf(f, sizeof(f), "%s.normalizers[%d]", field, i);
			int rc = parse_norm(&n->sub[i++], it, file, f, err);
			if (rc) return rc;
		}
	} else {
		return err_at(err, FTK_EUNSUPPORTED, file, field, "unsupported normalizer '%s'", ty);
	}
	return 0;
}

/*
 * How many times longer a normalizer can make a text, at most, counting
 * Replace only: content in place of each shortest match of the pattern
 * (every position when the pattern can match empty), multiplied through a
 * Sequence.  Unicode forms and Lowercase grow a text by a bounded few
 * bytes per character and are left out.
 */
static double norm_growth(const struct norm *n)
{
	if (n->type == NORM_REPLACE) {
		uint32_t minlen = 0;
		pcre2_pattern_info(n->re, PCRE2_INFO_MINLENGTH, &minlen);
		double g = minlen ? (double)n->blen / minlen : (double)n->blen + 1;
		return g > 1 ? g : 1;
	}
	double g = 1;
	for (int i = 0; n->type == NORM_SEQ && i < n->nsub; i++) g *= norm_growth(&n->sub[i]);
	return g;
}

/* Real tokenizers: Llama 2 and Gemma replace ' ' by U+2581, 3-fold. */
#define MAX_NORM_GROWTH 64

/* Ids may leave holes (unused ids) in the vocabulary, but not millions. */
#define MAX_VOCAB_HOLES (1u << 20)

static int parse_behavior(const char *b)
{
	if (!b || !strcmp(b, "Isolated")) return BEH_ISOLATED;
	if (!strcmp(b, "Removed")) return BEH_REMOVED;
	if (!strcmp(b, "MergedWithPrevious")) return BEH_MERGED_PREV;
	if (!strcmp(b, "MergedWithNext")) return BEH_MERGED_NEXT;
	if (!strcmp(b, "Contiguous")) return BEH_CONTIGUOUS;
	return -1;
}

static const char GPT2_RE[] =
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/*
 * Split patterns of the GPT-2 family (GPT-2's own, Llama 3's, Qwen2/3's)
 * for which encode_chunked may cut a long text: in each, a letter is only
 * ever matched by a fixed contraction ending in it or by a greedy run of
 * letters, nothing looks behind, and the only look-ahead follows a run of
 * white space.  So the match holding a letter followed by a space ends
 * right there, whatever comes after, and matching from the space on does
 * not depend on what came before: the pieces of text[..p) and text[p..)
 * are the pieces of the whole.
 */
static const char *const LOCAL_RES[] = {
	GPT2_RE,
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};

static int local_re(const char *re)
{
	for (size_t i = 0; re && i < sizeof(LOCAL_RES) / sizeof(LOCAL_RES[0]); i++)
		if (!strcmp(re, LOCAL_RES[i])) return 1;
	return 0;
}

static int parse_pre(struct pre *p, const cJSON *j, const char *file, const char *field,
		     struct ftk_error *err)
{
	const char *ty = jstr(j, "type");
	char emsg[300];
	memset(p, 0, sizeof(*p));
	if (!ty) return err_at(err, FTK_EDATA, file, field, "%s: missing \"type\"", "pre_tokenizer");
	if (!strcmp(ty, "Split")) {
		const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
		p->type = PRE_SPLIT;
		p->behavior = parse_behavior(jstr(j, "behavior"));
		if (p->behavior < 0)
			return err_at(err, FTK_EUNSUPPORTED, file, field, "unsupported split behavior '%s'",
				      jstr(j, "behavior"));
		p->invert = jbool(j, "invert", 0);
		p->re = pattern_re(pat, file, field, err, NULL, NULL);
		if (!p->re) return FTK_EDATA;
		p->local = p->behavior == BEH_ISOLATED && !p->invert && local_re(jstr(pat, "Regex"));
	} else if (!strcmp(ty, "ByteLevel")) {
		p->type = PRE_BYTELEVEL;
		p->add_prefix_space = jbool(j, "add_prefix_space", 1);
		p->local = !p->add_prefix_space;
		if (jbool(j, "use_regex", 1)) {
			p->re = compile_re(GPT2_RE, sizeof(GPT2_RE) - 1, 0, emsg, sizeof(emsg));
			p->behavior = BEH_ISOLATED;
		}
	} else if (!strcmp(ty, "Metaspace")) {
		const char *rep = jstr(j, "replacement");
		const char *ps = jstr(j, "prepend_scheme");
		p->type = PRE_METASPACE;
		if (!rep) rep = "\xe2\x96\x81";
		p->rep_len = strlen(rep);
		if (p->rep_len >= sizeof(p->rep)) return err_at(err, FTK_EDATA, file, field, "%s: replacement too long", "Metaspace");
		memcpy(p->rep, rep, p->rep_len);
		if (ps) p->prepend = !strcmp(ps, "never") ? 0 : !strcmp(ps, "first") ? 1 : 2;
		else p->prepend = jbool(j, "add_prefix_space", 1) ? 2 : 0;
		p->split = jbool(j, "split", 1);
	} else if (!strcmp(ty, "Digits")) {
		p->type = PRE_DIGITS;
		p->individual = jbool(j, "individual_digits", 0);
		const char *re = p->individual ? "\\p{Nd}" : "\\p{Nd}+";
		p->re = compile_re(re, strlen(re), 0, emsg, sizeof(emsg));
		p->behavior = BEH_ISOLATED;
	} else if (!strcmp(ty, "Whitespace")) {
		p->type = PRE_WHITESPACE;
		p->re = compile_re("\\w+|[^\\w\\s]+", PCRE2_ZERO_TERMINATED, 0, emsg, sizeof(emsg));
		p->behavior = BEH_REMOVED;
		p->invert = 1;
	} else if (!strcmp(ty, "WhitespaceSplit")) {
		p->type = PRE_WSSPLIT;
		p->re = compile_re("\\s+", PCRE2_ZERO_TERMINATED, 0, emsg, sizeof(emsg));
		p->behavior = BEH_REMOVED;
	} else if (!strcmp(ty, "Punctuation")) {
		p->type = PRE_PUNCT;
		p->behavior = parse_behavior(jstr(j, "behavior"));
		if (p->behavior < 0) p->behavior = BEH_ISOLATED;
		p->re = compile_re("\\p{P}", PCRE2_ZERO_TERMINATED, 0, emsg, sizeof(emsg));
	} else if (!strcmp(ty, "Sequence")) {
		const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "pretokenizers");
		p->type = PRE_SEQ;
		p->nsub = cJSON_GetArraySize(arr);
		p->sub = xcalloc(p->nsub ? p->nsub : 1, sizeof(*p->sub));
		int i = 0;
		const cJSON *it;
		cJSON_ArrayForEach(it, arr) {
			char f[256];
			snprintf(f, sizeof(f), "%s.pretokenizers[%d]", field, i);
			int rc = parse_pre(&p->sub[i++], it, file, f, err);
			if (rc) return rc;
		}
	} else {
		return err_at(err, FTK_EUNSUPPORTED, file, field, "unsupported pre-tokenizer '%s'", ty);
	}
	return 0;
}

static int parse_dec(struct dec *d, const cJSON *j, const char *file, const char *field,
		     struct ftk_error *err)
{
	const char *ty = jstr(j, "type");
	memset(d, 0, sizeof(*d));
	if (!ty) return err_at(err, FTK_EDATA, file, field, "%s: missing \"type\"", "decoder");
	if (!strcmp(ty, "ByteLevel")) d->type = DEC_BYTELEVEL;
	else if (!strcmp(ty, "ByteFallback")) d->type = DEC_BYTEFALLBACK;
	else if (!strcmp(ty, "Fuse")) d->type = DEC_FUSE;
	else if (!strcmp(ty, "Strip")) {
		const char *c = jstr(j, "content");
		d->type = DEC_STRIP;
		d->a = xstrdup(c ? c : " ");
		d->alen = strlen(d->a);
		d->start = cJSON_GetObjectItemCaseSensitive(j, "start") ?
			cJSON_GetObjectItemCaseSensitive(j, "start")->valueint : 0;
		d->stop = cJSON_GetObjectItemCaseSensitive(j, "stop") ?
			cJSON_GetObjectItemCaseSensitive(j, "stop")->valueint : 0;
	} else if (!strcmp(ty, "Replace")) {
		const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
		const char *c = jstr(j, "content");
		const char *s = jstr(pat, "String");
		if (!s || !c)
			return err_at(err, FTK_EUNSUPPORTED, file, field, "unsupported decoder '%s' (only a String pattern)", "Replace");
		d->type = DEC_REPLACE;
		d->a = xstrdup(s); d->alen = strlen(s);
		d->b = xstrdup(c); d->blen = strlen(c);
	} else if (!strcmp(ty, "Metaspace")) {
		const char *rep = jstr(j, "replacement");
		const char *ps = jstr(j, "prepend_scheme");
		d->type = DEC_METASPACE;
		if (!rep) rep = "\xe2\x96\x81";
		d->rep_len = strlen(rep);
		if (d->rep_len >= sizeof(d->rep)) return err_at(err, FTK_EDATA, file, field, "%s: replacement too long", "Metaspace");
		memcpy(d->rep, rep, d->rep_len);
		if (ps) d->prepend = strcmp(ps, "never") != 0;
		else d->prepend = jbool(j, "add_prefix_space", 1);
	} else if (!strcmp(ty, "Sequence")) {
		const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "decoders");
		d->type = DEC_SEQ;
		d->nsub = cJSON_GetArraySize(arr);
		d->sub = xcalloc(d->nsub ? d->nsub : 1, sizeof(*d->sub));
		int i = 0;
		const cJSON *it;
		cJSON_ArrayForEach(it, arr) {
			char f[256];
			snprintf(f, sizeof(f), "%s.decoders[%d]", field, i);
			int rc = parse_dec(&d->sub[i++], it, file, f, err);
			if (rc) return rc;
		}
	} else {
		return err_at(err, FTK_EUNSUPPORTED, file, field, "unsupported decoder '%s'", ty);
	}
	return 0;
}

static void pre_free(struct pre *p)
{
	if (!p) return;
	if (p->re) pcre2_code_free(p->re);
	for (int i = 0; i < p->nsub; i++) pre_free(&p->sub[i]);
	free(p->sub);
}

static void dec_free(struct dec *d)
{
	if (!d) return;
	free(d->a); free(d->b);
	for (int i = 0; i < d->nsub; i++) dec_free(&d->sub[i]);
	free(d->sub);
}

static void norm_free2(struct norm *n)
{
	if (!n) return;
	free(n->a); free(n->b);
	if (n->re) pcre2_code_free(n->re);
	for (int i = 0; i < n->nsub; i++) norm_free2(&n->sub[i]);
	free(n->sub);
}

/* Does any pre-tokenizer in the tree do byte-level? */
static int pre_has_bytelevel(const struct pre *p)
{
	if (!p) return 0;
	if (p->type == PRE_BYTELEVEL) return 1;
	for (int i = 0; i < p->nsub; i++)
		if (pre_has_bytelevel(&p->sub[i])) return 1;
	return 0;
}

static int dec_has(const struct dec *d, int type)
{
	if (!d) return 0;
	if (d->type == type) return 1;
	for (int i = 0; i < d->nsub; i++)
		if (dec_has(&d->sub[i], type)) return 1;
	return 0;
}

static long lookup_str(const struct ftk_tokenizer *t, const char *s, size_t n)
{
	return strmap_get(&t->by_str, t->vocab, 0, s, n);
}

/* Add the special ids of a TemplateProcessing "single" list. */
static int parse_post(struct ftk_tokenizer *t, const cJSON *j, const char *file, struct ftk_error *err)
{
	const char *ty = jstr(j, "type");
	if (!ty) return err_at(err, FTK_EDATA, file, "post_processor", "%s: missing \"type\"", "post_processor");
	if (!strcmp(ty, "ByteLevel")) return 0;	/* offsets only */
	if (!strcmp(ty, "Sequence")) {
		const cJSON *it;
		cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "processors")) {
			int rc = parse_post(t, it, file, err);
			if (rc) return rc;
		}
		return 0;
	}
	if (strcmp(ty, "TemplateProcessing"))
		return err_at(err, FTK_EUNSUPPORTED, file, "post_processor", "unsupported post-processor '%s'", ty);
	if (t->post)
		return err_at(err, FTK_EUNSUPPORTED, file, "post_processor", "unsupported post-processor '%s'", "two TemplateProcessing");
	const cJSON *single = cJSON_GetObjectItemCaseSensitive(j, "single");
	const cJSON *specials = cJSON_GetObjectItemCaseSensitive(j, "special_tokens");
	t->n_post = cJSON_GetArraySize(single);
	t->post = xcalloc(t->n_post ? t->n_post : 1, sizeof(*t->post));
	int i = 0;
	const cJSON *it;
	cJSON_ArrayForEach(it, single) {
		struct tmpl_item *ti = &t->post[i++];
		const cJSON *st = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
		const cJSON *sq = cJSON_GetObjectItemCaseSensitive(it, "Sequence");
		if (sq) { ti->is_seq = 1; continue; }
		const char *name = jstr(st, "id");
		const cJSON *sp = name ? cJSON_GetObjectItemCaseSensitive(specials, name) : NULL;
		const cJSON *ids = cJSON_GetObjectItemCaseSensitive(sp, "ids");
		if (!cJSON_IsArray(ids))
			return err_at(err, FTK_EDATA, file, "post_processor.special_tokens", "special token '%s' has no ids",
				      name ? name : "?");
		ti->n = cJSON_GetArraySize(ids);
		ti->ids = xcalloc(ti->n ? ti->n : 1, sizeof(uint32_t));
		int k = 0;
		const cJSON *x;
		cJSON_ArrayForEach(x, ids) ti->ids[k++] = (uint32_t)x->valuedouble;
	}
	return 0;
}

static char *dirname_of(const char *path)
{
	const char *sl = strrchr(path, '/');
	if (!sl) return xstrdup(".");
	if (sl == path) return xstrdup("/");
	return xstrndup(path, sl - path);
}

static int is_dir(const char *p)
{
	FILE *f = fopen(p, "r");
	if (!f) return 0;
	char c;
	errno = 0;
	size_t r = fread(&c, 1, 1, f);
	int d = (r == 0 && errno == EISDIR);
	fclose(f);
	return d;
}

static int load_config(struct ftk_tokenizer *t, struct ftk_error *err)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/tokenizer_config.json", t->dir);
	char *data;
	size_t len;
	struct ftk_error e2;
	ftk_error_clear(&e2);
	if (ftk_read_all(path, &data, &len, &e2) < 0) return 0;	/* optional */
	int rc = ftk_json_parse_object(data, len, &t->config, err);
	free(data);
	if (rc) { ftk_error_place(err, path, 0); return rc; }
	for (int i = 0; i < 4; i++) {
		char key[32];
		snprintf(key, sizeof(key), "%s_token", special_names[i]);
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(t->config, key);
		const char *s = cJSON_IsString(v) ? v->valuestring : jstr(v, "content");
		if (s) {
			t->special_str[i] = xstrdup(s);
			t->special_id[i] = lookup_str(t, s, strlen(s));
		}
	}
	const cJSON *ab = cJSON_GetObjectItemCaseSensitive(t->config, "add_bos_token");
	t->add_bos_cfg = cJSON_IsBool(ab) ? cJSON_IsTrue(ab) : -1;
	const cJSON *ct = cJSON_GetObjectItemCaseSensitive(t->config, "chat_template");
	if (cJSON_IsString(ct)) t->chat_template = xstrdup(ct->valuestring);
	else if (cJSON_IsArray(ct)) {
		const cJSON *it;
		cJSON_ArrayForEach(it, ct) {
			const char *n = jstr(it, "name"), *tm = jstr(it, "template");
			if (n && tm && !strcmp(n, "default")) t->chat_template = xstrdup(tm);
		}
	}
	return 0;
}

int ftk_tokenizer_load(struct ftk_tokenizer **out, const char *path, struct ftk_error *err)
{
	char file[4096];
	char *data = NULL;
	size_t len;
	cJSON *root = NULL;
	int rc;
	*out = NULL;
	bytes_to_unicode_init();
	if (is_dir(path)) snprintf(file, sizeof(file), "%s/tokenizer.json", path);
	else snprintf(file, sizeof(file), "%s", path);
	rc = ftk_read_all(file, &data, &len, err);
	if (rc < 0) {
		if (err && err->code == FTK_EIO)
			ftk_error_set(err, FTK_ENOTFOUND, file, 0, NULL, "cannot read tokenizer '%s': %s", file,
				      strerror(errno ? errno : ENOENT));
		return FTK_ENOTFOUND;
	}
	struct ftk_tokenizer *t = xcalloc(1, sizeof(*t));
	t->dir = dirname_of(file);
	t->unk_id = -1;
	t->add_bos_cfg = -1;
	for (int i = 0; i < 4; i++) t->special_id[i] = -1;
	{
		XXH128_hash_t h = XXH3_128bits(data, len);
		XXH128_canonical_t c;
		XXH128_canonicalFromHash(&c, h);
		for (int i = 0; i < 16; i++) snprintf(t->hash + 2 * i, 3, "%02x", c.digest[i]);
	}
	rc = ftk_json_parse_object(data, len, &root, err);
	free(data);
	if (rc) { ftk_error_place(err, file, 0); goto fail; }

	const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
	const char *mtype = jstr(model, "type");
	const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
	const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
	if (!cJSON_IsObject(model)) { rc = err_at(err, FTK_EDATA, file, "model", "%s: missing or not an object", "model"); goto fail; }
	if (!mtype && cJSON_IsArray(merges)) mtype = "BPE";
	if (!mtype || strcmp(mtype, "BPE")) {
		rc = err_at(err, FTK_EUNSUPPORTED, file, "model.type", "unsupported model '%s' (only BPE)", mtype ? mtype : "?");
		goto fail;
	}
	if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges)) {
		rc = err_at(err, FTK_EDATA, file, "model", "%s: needs vocab (object) and merges (array)", "BPE");
		goto fail;
	}
	const cJSON *drop = cJSON_GetObjectItemCaseSensitive(model, "dropout");
	if (cJSON_IsNumber(drop) && drop->valuedouble > 0) {
		rc = err_at(err, FTK_EUNSUPPORTED, file, "model.dropout", "unsupported BPE option '%s'", "dropout");
		goto fail;
	}
	const char *csp = jstr(model, "continuing_subword_prefix"), *eows = jstr(model, "end_of_word_suffix");
	if ((csp && *csp) || (eows && *eows)) {
		rc = err_at(err, FTK_EUNSUPPORTED, file, "model", "unsupported BPE option '%s'",
			    csp && *csp ? "continuing_subword_prefix" : "end_of_word_suffix");
		goto fail;
	}
	t->byte_fallback = jbool(model, "byte_fallback", 0);
	t->fuse_unk = jbool(model, "fuse_unk", 0);
	t->ignore_merges = jbool(model, "ignore_merges", 0);

	/* components first: byte-level mode decides how the vocabulary is stored */
	const cJSON *jn = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
	const cJSON *jp = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
	const cJSON *jd = cJSON_GetObjectItemCaseSensitive(root, "decoder");
	const cJSON *jpp = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
	if (cJSON_IsObject(jn)) {
		t->norm = xcalloc(1, sizeof(*t->norm));
		if ((rc = parse_norm(t->norm, jn, file, "normalizer", err))) goto fail;
		double g = norm_growth(t->norm);
		if (g > MAX_NORM_GROWTH) {
			rc = ftk_error_set(err, FTK_EDATA, file, 0, "normalizer",
					   "its Replace normalizers could make a text %.0f times longer (at most %d)", g,
					   MAX_NORM_GROWTH);
			goto fail;
		}
	}
	if (cJSON_IsObject(jp)) {
		t->pre = xcalloc(1, sizeof(*t->pre));
		if ((rc = parse_pre(t->pre, jp, file, "pre_tokenizer", err))) goto fail;
	}
	if (cJSON_IsObject(jd)) {
		t->dec = xcalloc(1, sizeof(*t->dec));
		if ((rc = parse_dec(t->dec, jd, file, "decoder", err))) goto fail;
	}
	t->byte_level = pre_has_bytelevel(t->pre) || dec_has(t->dec, DEC_BYTELEVEL);

	/* vocabulary: model vocab, then added tokens */
	uint32_t maxid = 0;
	const cJSON *it;
	cJSON_ArrayForEach(it, vocab) {
		if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 1e8 ||
		    it->valuedouble != floor(it->valuedouble)) {
			rc = err_at(err, FTK_EDATA, file, "model.vocab", "bad id for token '%s'", it->string);
			goto fail;
		}
		if ((uint32_t)it->valuedouble + 1 > maxid) maxid = (uint32_t)it->valuedouble + 1;
	}
	const cJSON *jadded = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
	cJSON_ArrayForEach(it, jadded) {
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
		if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 1e8 ||
		    id->valuedouble != floor(id->valuedouble) || !jstr(it, "content")) {
			rc = err_at(err, FTK_EDATA, file, "added_tokens", "%s: needs id and content", "added token");
			goto fail;
		}
		if ((uint32_t)id->valuedouble + 1 > maxid) maxid = (uint32_t)id->valuedouble + 1;
	}
	{
		/* an id of 99,999,999 among 300 tokens took 33 s to load (a 4 GB table walked) */
		size_t given = (size_t)cJSON_GetArraySize(vocab) + (size_t)cJSON_GetArraySize(jadded);
		if (maxid > given + MAX_VOCAB_HOLES) {
			rc = ftk_error_set(err, FTK_EDATA, file, 0, "added_tokens",
					   "ids go up to %u for %zu tokens: more than %u ids would be unused", maxid - 1,
					   given, MAX_VOCAB_HOLES);
			goto fail;
		}
	}
	t->n_vocab = maxid;
	t->vocab = xcalloc(maxid ? maxid : 1, sizeof(*t->vocab));
	t->is_special = xcalloc(maxid ? maxid : 1, 1);
	strmap_init(&t->by_raw, cJSON_GetArraySize(vocab));
	strmap_init(&t->by_str, maxid);
	cJSON_ArrayForEach(it, vocab) {
		uint32_t id = (uint32_t)it->valuedouble;
		struct vtok *v = &t->vocab[id];
		if (v->str) {
			rc = ftk_error_set(err, FTK_EDATA, file, 0, "model.vocab", "id %u is given to both '%s' and '%s'",
					   id, v->str, it->string);
			goto fail;
		}
		size_t sl = strlen(it->string);
		v->str = xstrdup(it->string);
		v->slen = sl;
		if (t->byte_level) {
			char *raw = xmalloc(sl + 1);
			long rl = bytelevel_decode(it->string, sl, raw);
			if (rl < 0) { memcpy(raw, it->string, sl); rl = (long)sl; }
			raw[rl] = 0;
			v->raw = raw;
			v->rlen = (uint32_t)rl;
		} else {
			v->raw = v->str;
			v->rlen = sl;
		}
	}
	for (uint32_t i = 0; i < maxid; i++) {
		if (!t->vocab[i].str) continue;
		strmap_put(&t->by_raw, t->vocab, 1, i);
		strmap_put(&t->by_str, t->vocab, 0, i);
	}
	t->n_added = cJSON_GetArraySize(jadded);
	t->added = xcalloc(t->n_added ? t->n_added : 1, sizeof(*t->added));
	size_t ai = 0;
	cJSON_ArrayForEach(it, jadded) {
		struct added *a = &t->added[ai++];
		const char *c = jstr(it, "content");
		a->content = xstrdup(c);
		a->len = strlen(c);
		a->id = (uint32_t)cJSON_GetObjectItemCaseSensitive(it, "id")->valuedouble;
		a->special = jbool(it, "special", 0);
		a->lstrip = jbool(it, "lstrip", 0);
		a->rstrip = jbool(it, "rstrip", 0);
		a->single_word = jbool(it, "single_word", 0);
		a->normalized = jbool(it, "normalized", !a->special);
		if (a->len) t->added_first[(uint8_t)c[0]] = 1;
		if (a->special) t->is_special[a->id] = 1;
		struct vtok *v = &t->vocab[a->id];
		if (!v->str) {
			v->str = xstrdup(c);
			v->slen = a->len;
			v->raw = v->str;
			v->rlen = a->len;
			strmap_put(&t->by_str, t->vocab, 0, a->id);
		}
	}

	{
		int nb = 0, last = -1;
		for (int b = 0; b < 256; b++)
			if (t->added_first[b]) { nb++; last = b; }
		t->added_one_first = nb == 1 ? last : -1;
	}
	const char *unk = jstr(model, "unk_token");
	if (unk) t->unk_id = lookup_str(t, unk, strlen(unk));
	for (int b = 0; b < 256; b++) {
		if (t->byte_level) {
			char c = (char)b;
			long id = strmap_get(&t->by_raw, t->vocab, 1, &c, 1);
			if (id >= 0) { t->byte_id[b] = (uint32_t)id; t->has_byte_id[b] = 1; }
		} else {
			char s[8];
			snprintf(s, sizeof(s), "<0x%02X>", b);
			long id = lookup_str(t, s, 6);
			if (id >= 0) { t->byte_id[b] = (uint32_t)id; t->has_byte_id[b] = 1; }
		}
	}

	/*
	 * A SentencePiece-style model has no pre-tokenizer, so a whole document
	 * would be one pre-token.  When no vocabulary entry holds "▁" after a
	 * character that is not "▁", no merge can cross the start of a "▁" run
	 * that follows such a character, so BPE on the pieces cut there gives the
	 * same ids as BPE on the whole text, and the pieces can be cached.
	 */
	if (!t->byte_level && !t->pre) {
		t->sp_split = 1;
		for (uint32_t i = 0; i < maxid && t->sp_split; i++) {
			const char *v = t->vocab[i].raw;
			if (!v) continue;
			size_t k = 0, n = t->vocab[i].rlen;
			while (k + 3 <= n && !memcmp(v + k, "\xe2\x96\x81", 3)) k += 3;
			if (k < n && memmem(v + k, n - k, "\xe2\x96\x81", 3)) t->sp_split = 0;
		}
	}

	/* merges */
	{
		size_t nm = cJSON_GetArraySize(merges), cap = 16;
		while (cap < nm * 2 + 16) cap <<= 1;
		t->merges = xmalloc(cap * sizeof(*t->merges));
		for (size_t i = 0; i < cap; i++) t->merges[i].key = UINT64_MAX;
		t->merge_mask = cap - 1;
		uint32_t rank = 0;
		struct strbuf cat = STRBUF_INIT;
		cJSON_ArrayForEach(it, merges) {
			const char *l, *r;
			size_t ll, rl;
			char *sp = NULL;
			if (cJSON_IsString(it)) {
				sp = strchr(it->valuestring, ' ');
				if (!sp) { rc = err_at(err, FTK_EDATA, file, "model.merges", "bad merge '%s'", it->valuestring); strbuf_release(&cat); goto fail; }
				l = it->valuestring; ll = sp - l; r = sp + 1; rl = strlen(r);
			} else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 &&
				   cJSON_IsString(cJSON_GetArrayItem(it, 0)) && cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
				l = cJSON_GetArrayItem(it, 0)->valuestring; ll = strlen(l);
				r = cJSON_GetArrayItem(it, 1)->valuestring; rl = strlen(r);
			} else {
				rc = err_at(err, FTK_EDATA, file, "model.merges", "%s: bad merge entry", "merges");
				strbuf_release(&cat);
				goto fail;
			}
			long a = strmap_get(&t->by_str, t->vocab, 0, l, ll);
			long b = strmap_get(&t->by_str, t->vocab, 0, r, rl);
			strbuf_reset(&cat);
			strbuf_add(&cat, l, ll);
			strbuf_add(&cat, r, rl);
			long m = strmap_get(&t->by_str, t->vocab, 0, cat.buf, cat.len);
			if (a < 0 || b < 0 || m < 0) {
				rc = err_at(err, FTK_EDATA, file, "model.merges", "merge '%s' names a token not in the vocabulary", cat.buf);
				strbuf_release(&cat);
				goto fail;
			}
			uint64_t key = ((uint64_t)a << 32) | (uint64_t)b;
			size_t i = mix64(key) & t->merge_mask;
			while (t->merges[i].key != UINT64_MAX && t->merges[i].key != key) i = (i + 1) & t->merge_mask;
			if (t->merges[i].key == UINT64_MAX) {	/* the first (best) rank wins */
				t->merges[i].key = key;
				t->merges[i].rank = rank;
				t->merges[i].id = (uint32_t)m;
			}
			rank++;
		}
		strbuf_release(&cat);
	}

	if (cJSON_IsObject(jpp) && (rc = parse_post(t, jpp, file, err))) goto fail;
	if ((rc = load_config(t, err))) goto fail;
	cJSON_Delete(root);
	*out = t;
	return 0;
fail:
	cJSON_Delete(root);
	ftk_tokenizer_free(t);
	if (err && !err->file[0]) ftk_error_place(err, file, 0);
	return rc ? rc : FTK_EDATA;
}

void ftk_tokenizer_free(struct ftk_tokenizer *t)
{
	if (!t) return;
	for (uint32_t i = 0; i < t->n_vocab; i++) {
		if (t->vocab[i].raw != t->vocab[i].str) free((char *)t->vocab[i].raw);
		free((char *)t->vocab[i].str);
	}
	free(t->vocab);
	free(t->is_special);
	free(t->by_raw.slot);
	free(t->by_str.slot);
	free(t->merges);
	norm_free2(t->norm); free(t->norm);
	pre_free(t->pre); free(t->pre);
	dec_free(t->dec); free(t->dec);
	for (size_t i = 0; i < t->n_post; i++) free(t->post[i].ids);
	free(t->post);
	for (size_t i = 0; i < t->n_added; i++) free(t->added[i].content);
	free(t->added);
	cJSON_Delete(t->config);
	for (int i = 0; i < 4; i++) free(t->special_str[i]);
	free(t->chat_template);
	free(t->dir);
	free(t);
}

/* ------------------------------------------------------------ workspace */

struct piece { uint32_t off, len; };

struct cache_ent {
	uint64_t h;
	uint32_t koff, klen;	/* key bytes in kpool */
	uint32_t ioff, ilen;	/* ids in ipool */
};

/* The cache starts at 2^CACHE_MIN_BITS entries and doubles as it fills, up
 * to 2^CACHE_BITS (1.5 MB), where it is cleared when 70% full: a caller
 * that encodes a few prompts (an eval or serve engine, one per thread)
 * holds kilobytes, not the 1.5 MB a whole corpus earns. */
#define CACHE_BITS 16
#define CACHE_MIN_BITS 10
#define CACHE_MAX_KEY 48

struct sym { uint32_t id, start, len; int32_t prev, next; };
struct heap_ent { uint32_t rank, pos; };

struct ws {
	const struct ftk_tokenizer *tok;
	pcre2_match_data *md;
	pcre2_match_context *mctx;
	pcre2_jit_stack *jstack;
	/* normalized segment: bytes and, with offsets, input range per byte */
	char *s; size_t slen, salloc;
	uint32_t *a, *b; size_t aalloc;
	char *s2; size_t s2alloc;
	uint32_t *a2, *b2; size_t a2alloc;
	struct piece *pc, *pc2; size_t npc, pcalloc, npc2, pc2alloc;
	struct sym *sy; size_t syalloc;
	struct heap_ent *hp; size_t hpalloc;
	/* with a limit, the pieces that suffice: the segment needs at least one
	 * id per piece, so once pre-tokenization has this many, the rest of the
	 * text cannot change whether the limit is passed (0: no limit) */
	size_t want;
	/* offsets handed over as they are made (ftk_tokenizer_encode_each):
	 * out->start/end then hold those of ids[obase..n) only */
	ftk_tokens_each_fn each;
	void *each_arg;
	struct ftk_error *each_err;
	size_t obase;
	int each_rc;
	/* cache */
	struct cache_ent *ce;
	size_t ce_n;
	unsigned ce_bits;	/* ce has 2^ce_bits entries */
	char *kpool; size_t klen, kalloc;
	uint32_t *ipool; size_t ilen, ialloc;
};

static void ws_free(struct ws *w)
{
	if (!w) return;
	if (w->md) pcre2_match_data_free(w->md);
	if (w->mctx) pcre2_match_context_free(w->mctx);
	if (w->jstack) pcre2_jit_stack_free(w->jstack);
	free(w->s); free(w->a); free(w->b); free(w->s2); free(w->a2); free(w->b2);
	free(w->pc); free(w->pc2); free(w->sy); free(w->hp);
	free(w->ce); free(w->kpool); free(w->ipool);
	free(w);
}

static void cache_clear(struct ws *w)
{
	if (w->ce_n)
		memset(w->ce, 0, sizeof(*w->ce) << w->ce_bits);
	w->ce_n = 0;
	w->klen = w->ilen = 0;
}

/* Double the cache table, rehashing its entries (the pools stay). */
static void cache_grow(struct ws *w)
{
	size_t old = (size_t)1 << w->ce_bits, mask = old * 2 - 1;
	struct cache_ent *ce = xcalloc(old * 2, sizeof(*ce));
	for (size_t k = 0; k < old; k++) {
		if (!w->ce[k].h) continue;
		size_t i = w->ce[k].h & mask;
		while (ce[i].h) i = (i + 1) & mask;
		ce[i] = w->ce[k];
	}
	free(w->ce);
	w->ce = ce;
	w->ce_bits++;
}

static struct ws *ws_get(struct ftk_tokens *out, const struct ftk_tokenizer *tok)
{
	struct ws *w = out->ws;
	if (!w) {
		w = xcalloc(1, sizeof(*w));
		w->md = pcre2_match_data_create(4, NULL);
		w->mctx = pcre2_match_context_create(NULL);
		w->jstack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
		pcre2_jit_stack_assign(w->mctx, NULL, w->jstack);
		w->ce_bits = CACHE_MIN_BITS;
		w->ce = xcalloc((size_t)1 << w->ce_bits, sizeof(*w->ce));
		out->ws = w;
	}
	if (w->tok != tok) {
		cache_clear(w);
		w->tok = tok;
	}
	return w;
}

size_t ftk_tokens_bytes(const struct ftk_tokens *t)
{
	const struct ws *w = t->ws;
	size_t n = t->alloc * 4 + t->alloc_off * 8;
	if (w)
		n += sizeof(*w) + w->salloc + w->aalloc * 8 + w->s2alloc + w->a2alloc * 8 +
		     (w->pcalloc + w->pc2alloc) * sizeof(struct piece) + w->syalloc * sizeof(struct sym) +
		     w->hpalloc * sizeof(struct heap_ent) + (w->ce ? sizeof(*w->ce) << w->ce_bits : 0) + w->kalloc +
		     w->ialloc * 4;
	return n;
}

void ftk_tokens_release(struct ftk_tokens *t)
{
	if (!t) return;
	free(t->ids); free(t->start); free(t->end);
	ws_free(t->ws);
	memset(t, 0, sizeof(*t));
}

static void emit(struct ftk_tokens *o, int offs, uint32_t id, uint32_t s, uint32_t e)
{
	if (o->n + 1 > o->alloc) {
		size_t na = o->alloc ? o->alloc * 2 : 256;
		o->ids = xrealloc(o->ids, na * sizeof(uint32_t));
		o->alloc = na;
	}
	if (offs) {
		/* offsets handed over already are not kept (obase, with each) */
		size_t base = ((const struct ws *)o->ws)->obase, k = o->n - base;
		if (k + 1 > o->alloc_off) {
			size_t na = base ? (o->alloc_off ? o->alloc_off * 2 : 256) : o->alloc;
			o->start = xrealloc(o->start, na * sizeof(uint32_t));
			o->end = xrealloc(o->end, na * sizeof(uint32_t));
			o->alloc_off = na;
		}
		o->start[k] = s;
		o->end[k] = e;
	}
	o->ids[o->n] = id;
	o->n++;
}

/* Hand the ids made since the last call, with their offsets, to the
 * caller's each function (when there is one); the offsets' space is then
 * reused.  0, or the error each returned (kept: nothing more is handed). */
static int each_flush(struct ws *w, struct ftk_tokens *out)
{
	if (!w->each || w->each_rc || out->n == w->obase) return w->each_rc;
	w->each_rc = w->each(w->each_arg, w->obase, out->ids + w->obase, out->start, out->end, out->n - w->obase,
			     w->each_err);
	w->obase = out->n;
	return w->each_rc;
}

/* ------------------------------------------------------------ normalizers */

/* Ensure s2 (and a2/b2 when offs) can hold n bytes. */
static void s2_grow(struct ws *w, size_t n, int offs)
{
	if (n + 1 > w->s2alloc) { w->s2alloc = n + n / 2 + 64; w->s2 = xrealloc(w->s2, w->s2alloc); }
	if (offs && n + 1 > w->a2alloc) {
		w->a2alloc = n + n / 2 + 64;
		w->a2 = xrealloc(w->a2, w->a2alloc * 4);
		w->b2 = xrealloc(w->b2, w->a2alloc * 4);
	}
}

static void swap_s(struct ws *w, size_t newlen)
{
	char *t = w->s; w->s = w->s2; w->s2 = t;
	size_t ta = w->salloc; w->salloc = w->s2alloc; w->s2alloc = ta;
	uint32_t *x = w->a; w->a = w->a2; w->a2 = x;
	x = w->b; w->b = w->b2; w->b2 = x;
	ta = w->aalloc; w->aalloc = w->a2alloc; w->a2alloc = ta;
	w->slen = newlen;
}

/* Append bytes to s2 at *o, all mapped to input range [ra, rb). */
static void put2(struct ws *w, size_t *o, const char *p, size_t n, int offs, uint32_t ra, uint32_t rb)
{
	s2_grow(w, *o + n, offs);
	memcpy(w->s2 + *o, p, n);
	if (offs) for (size_t i = 0; i < n; i++) { w->a2[*o + i] = ra; w->b2[*o + i] = rb; }
	*o += n;
}

static size_t utf8_len_at(const char *s, size_t n, size_t i)
{
	utf8proc_int32_t cp;
	utf8proc_ssize_t k = utf8proc_iterate((const uint8_t *)s + i, n - i, &cp);
	return k > 0 ? (size_t)k : 1;
}

/* Normalize s[p..q) (one region) into s2 at *o.  With offsets, align by runs
 * that start at a character of combining class 0; when those runs do not
 * reproduce the region's normalization, the region is one range. */
static void norm_region(struct ws *w, utf8proc_option_t opt, size_t p0, size_t q0, size_t *o, int offs)
{
	utf8proc_uint8_t *res = NULL;
	utf8proc_ssize_t rl = utf8proc_map((const uint8_t *)w->s + p0, (utf8proc_ssize_t)(q0 - p0), &res, opt);
	if (rl < 0) {	/* invalid UTF-8: left as it is */
		free(res);
		for (size_t i = p0; i < q0; i++) put2(w, o, w->s + i, 1, offs, offs ? w->a[i] : 0, offs ? w->b[i] : 0);
		return;
	}
	if ((size_t)rl == q0 - p0 && !memcmp(res, w->s + p0, rl)) {
		if (offs) for (size_t i = p0; i < q0; i++) put2(w, o, w->s + i, 1, 1, w->a[i], w->b[i]);
		else put2(w, o, w->s + p0, q0 - p0, 0, 0, 0);
		free(res);
		return;
	}
	if (!offs) { put2(w, o, (char *)res, rl, 0, 0, 0); free(res); return; }
	size_t start = *o, p = p0;
	while (p < q0) {
		size_t q = p + utf8_len_at(w->s, q0, p);
		while (q < q0) {
			utf8proc_int32_t cp;
			utf8proc_iterate((const uint8_t *)w->s + q, q0 - q, &cp);
			if (utf8proc_get_property(cp)->combining_class == 0) break;
			q += utf8_len_at(w->s, q0, q);
		}
		utf8proc_uint8_t *r2 = NULL;
		utf8proc_ssize_t l2 = utf8proc_map((const uint8_t *)w->s + p, (utf8proc_ssize_t)(q - p), &r2, opt);
		if (l2 < 0) { free(r2); *o = start; break; }
		put2(w, o, (char *)r2, l2, 1, w->a[p], w->b[q - 1]);
		free(r2);
		p = q;
	}
	if (*o - start != (size_t)rl || memcmp(w->s2 + start, res, rl)) {
		*o = start;
		put2(w, o, (char *)res, rl, 1, w->a[p0], w->b[q0 - 1]);
	}
	free(res);
}

/* Unicode normalization, region by region: no canonical or compatibility
 * composition has an ASCII character as its second part, so the text can be
 * cut before every ASCII byte, and only the regions holding non-ASCII
 * characters (with the character before them) need utf8proc. */
static void unicode_norm(struct ws *w, int type, int offs)
{
	utf8proc_option_t opt = UTF8PROC_STABLE;
	switch (type) {
	case NORM_NFC: opt |= UTF8PROC_COMPOSE; break;
	case NORM_NFKC: opt |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
	case NORM_NFD: opt |= UTF8PROC_DECOMPOSE; break;
	default: opt |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
	}
	size_t i = 0, o = 0, n = w->slen;
	while (i < n && (unsigned char)w->s[i] < 0x80) i++;
	if (i == n) return;	/* pure ASCII: every form leaves it as it is */
	size_t done = 0;
	while (i < n) {
		/* a region: the ASCII character before the first non-ASCII byte, up to the next ASCII byte */
		size_t r0 = i > done ? i - 1 : i, r1 = i;
		while (r1 < n && (unsigned char)w->s[r1] >= 0x80) r1++;
		if (offs) for (size_t k = done; k < r0; k++) put2(w, &o, w->s + k, 1, 1, w->a[k], w->b[k]);
		else put2(w, &o, w->s + done, r0 - done, 0, 0, 0);
		norm_region(w, opt, r0, r1, &o, offs);
		done = r1;
		i = r1;
		while (i < n && (unsigned char)w->s[i] < 0x80) i++;
	}
	if (offs) for (size_t k = done; k < n; k++) put2(w, &o, w->s + k, 1, 1, w->a[k], w->b[k]);
	else put2(w, &o, w->s + done, n - done, 0, 0, 0);
	swap_s(w, o);
}

/* Ensure s can hold n bytes, keeping its contents. */
static void s_grow(struct ws *w, size_t n)
{
	if (n + 1 > w->salloc) { w->salloc = n + n / 2 + 64; w->s = xrealloc(w->s, w->salloc); }
}

/* The last occurrence of pat[0..m) in s[0..end), or -1. */
static long last_match(const char *s, size_t end, const char *pat, size_t m)
{
	if (end < m) return -1;
	size_t p = end - m + 1;	/* candidates start below p */
	while (p > 0) {
		const char *c = memrchr(s, (unsigned char)pat[0], p);
		if (!c) return -1;
		p = (size_t)(c - s);
		if (!memcmp(c, pat, m)) return (long)p;
	}
	return -1;
}

/*
 * Replace a String pattern within s itself, without offsets, instead of
 * writing the result to s2: a long text is then held once, not twice, by
 * a Replace (and by a Prepend, see apply_norm), as a Llama 2 style
 * normalizer (Prepend "▁", Replace " " by "▁") would otherwise hold it.
 * Content no longer than the pattern is written forward over what has been
 * read.  Longer content is written backward from the end of the grown
 * text, which finds the matches the forward scan does only when no two
 * occurrences of the pattern can overlap (no proper prefix of it is also a
 * suffix: "ab", not "aa" or "aba"); otherwise 0 is returned and nothing is
 * changed.  Returns 1 when done.
 */
static int replace_in_place(struct ws *w, const struct norm *n)
{
	const char *a = n->a, *b = n->b;
	size_t al = n->alen, bl = n->blen;
	if (bl <= al) {
		size_t pos = 0, o = 0;
		while (pos < w->slen) {
			const char *hit = memmem(w->s + pos, w->slen - pos, a, al);
			size_t ms = hit ? (size_t)(hit - w->s) : w->slen;
			memmove(w->s + o, w->s + pos, ms - pos);
			o += ms - pos;
			if (!hit) break;
			memcpy(w->s + o, b, bl);
			o += bl;
			pos = ms + al;
		}
		w->slen = o;
		return 1;
	}
	for (size_t k = 1; k < al; k++)
		if (!memcmp(a, a + al - k, k)) return 0;
	size_t count = 0;
	for (const char *p = w->s, *e = w->s + w->slen; (p = memmem(p, (size_t)(e - p), a, al)); p += al) count++;
	if (!count) return 1;
	size_t r = w->slen, o = w->slen + count * (bl - al);
	s_grow(w, o);
	w->slen = o;
	long ms;
	while (count && (ms = last_match(w->s, r, a, al)) >= 0) {
		size_t tail = r - (size_t)ms - al;
		memmove(w->s + o - tail, w->s + ms + al, tail);
		o -= tail;
		memcpy(w->s + o - bl, b, bl);
		o -= bl;
		r = (size_t)ms;
		count--;
	}
	return 1;	/* what is left, s[0..r), is where it was (o == r) */
}

static void apply_norm(struct ws *w, const struct norm *n, int offs)
{
	size_t o = 0;
	switch (n->type) {
	case NORM_NFC: case NORM_NFKC: case NORM_NFD: case NORM_NFKD:
		unicode_norm(w, n->type, offs);
		return;
	case NORM_PREPEND:
		if (!w->slen) return;	/* HF prepends only to non-empty strings */
		if (!offs) {	/* in place: s is not held twice */
			s_grow(w, w->slen + n->alen);
			memmove(w->s + n->alen, w->s, w->slen);
			memcpy(w->s, n->a, n->alen);
			w->slen += n->alen;
			return;
		}
		put2(w, &o, n->a, n->alen, offs, offs ? w->a[0] : 0, offs ? w->a[0] : 0);
		s2_grow(w, o + w->slen, offs);
		memcpy(w->s2 + o, w->s, w->slen);
		if (offs) { memcpy(w->a2 + o, w->a, w->slen * 4); memcpy(w->b2 + o, w->b, w->slen * 4); }
		swap_s(w, o + w->slen);
		return;
	case NORM_REPLACE: {
		size_t pos = 0;
		if (n->a && n->alen && !offs && replace_in_place(w, n)) return;
		if (n->a && n->alen) {	/* a String pattern: no regex needed */
			while (pos < w->slen) {
				const char *hit = memmem(w->s + pos, w->slen - pos, n->a, n->alen);
				size_t ms = hit ? (size_t)(hit - w->s) : w->slen;
				if (offs) for (size_t i = pos; i < ms; i++) put2(w, &o, w->s + i, 1, 1, w->a[i], w->b[i]);
				else put2(w, &o, w->s + pos, ms - pos, 0, 0, 0);
				if (!hit) { pos = w->slen; break; }
				put2(w, &o, n->b, n->blen, offs, offs ? w->a[ms] : 0, offs ? w->b[ms + n->alen - 1] : 0);
				pos = ms + n->alen;
			}
			swap_s(w, o);
			return;
		}
		while (pos <= w->slen) {
			int rc = pcre2_match(n->re, (PCRE2_SPTR)w->s, w->slen, pos, PCRE2_NO_UTF_CHECK, w->md, NULL);
			if (rc < 0) break;
			PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
			size_t ms = ov[0], me = ov[1];
			for (size_t i = pos; i < ms; i++)
				put2(w, &o, w->s + i, 1, offs, offs ? w->a[i] : 0, offs ? w->b[i] : 0);
			if (me == ms) {	/* empty match: copy one char and go on */
				if (ms >= w->slen) { pos = ms; break; }
				size_t k = utf8_len_at(w->s, w->slen, ms);
				for (size_t i = ms; i < ms + k; i++)
					put2(w, &o, w->s + i, 1, offs, offs ? w->a[i] : 0, offs ? w->b[i] : 0);
				pos = ms + k;
				continue;
			}
			put2(w, &o, n->b, n->blen, offs, offs ? w->a[ms] : 0, offs ? w->b[me - 1] : 0);
			pos = me;
		}
		for (size_t i = pos; i < w->slen; i++)
			put2(w, &o, w->s + i, 1, offs, offs ? w->a[i] : 0, offs ? w->b[i] : 0);
		swap_s(w, o);
		return;
	}
	case NORM_LOWER: {
		size_t i = 0;
		while (i < w->slen) {
			utf8proc_int32_t cp;
			utf8proc_ssize_t k = utf8proc_iterate((const uint8_t *)w->s + i, w->slen - i, &cp);
			if (k <= 0) { put2(w, &o, w->s + i, 1, offs, offs ? w->a[i] : 0, offs ? w->b[i] : 0); i++; continue; }
			uint8_t buf[4];
			utf8proc_ssize_t bl = utf8proc_encode_char(utf8proc_tolower(cp), buf);
			put2(w, &o, (char *)buf, bl, offs, offs ? w->a[i] : 0, offs ? w->b[i + k - 1] : 0);
			i += k;
		}
		swap_s(w, o);
		return;
	}
	case NORM_STRIP: {
		size_t s = 0, e = w->slen;
		if (n->left) while (s < e && isspace((unsigned char)w->s[s])) s++;
		if (n->right) while (e > s && isspace((unsigned char)w->s[e - 1])) e--;
		for (size_t i = s; i < e; i++) put2(w, &o, w->s + i, 1, offs, offs ? w->a[i] : 0, offs ? w->b[i] : 0);
		swap_s(w, o);
		return;
	}
	case NORM_SEQ:
		for (int i = 0; i < n->nsub; i++) apply_norm(w, &n->sub[i], offs);
		return;
	}
}

/* ------------------------------------------------------------ pre-tokenizers */

static void pc2_push(struct ws *w, uint32_t off, uint32_t len)
{
	if (!len) return;
	if (w->npc2 + 1 > w->pc2alloc) {
		w->pc2alloc = w->pc2alloc ? w->pc2alloc * 2 : 256;
		w->pc2 = xrealloc(w->pc2, w->pc2alloc * sizeof(*w->pc2));
	}
	w->pc2[w->npc2].off = off;
	w->pc2[w->npc2].len = len;
	w->npc2++;
}

static void pc_swap(struct ws *w)
{
	struct piece *t = w->pc; w->pc = w->pc2; w->pc2 = t;
	size_t a = w->pcalloc; w->pcalloc = w->pc2alloc; w->pc2alloc = a;
	w->npc = w->npc2;
	w->npc2 = 0;
}

/* One span of a piece: [s, e) and whether the regex matched it. */
struct span { uint32_t s, e; int m; };

/* Push the pieces that spans sp[0..n) make under a behavior, for the piece at off. */
static void spans_emit(struct ws *w, const struct span *sp, size_t n, int behavior, int invert, uint32_t off)
{
	uint32_t pend_s = 0, pend_e = 0;	/* pending merged-with-next match */
	int have_pend = 0;
	for (size_t i = 0; i < n; i++) {
		uint32_t a = sp[i].s, e = sp[i].e;
		int m = sp[i].m ^ invert, prev_m = i > 0 ? sp[i - 1].m ^ invert : 0;
		switch (behavior) {
		case BEH_ISOLATED:
			pc2_push(w, off + a, e - a);
			break;
		case BEH_REMOVED:
			if (!m) pc2_push(w, off + a, e - a);
			break;
		case BEH_MERGED_PREV:
			if (m && w->npc2 && i > 0 && !prev_m)
				w->pc2[w->npc2 - 1].len += e - a;
			else
				pc2_push(w, off + a, e - a);
			break;
		case BEH_MERGED_NEXT:
			if (m) {
				if (have_pend) { pc2_push(w, off + pend_s, pend_e - pend_s); }
				pend_s = a; pend_e = e; have_pend = 1;
			} else if (have_pend) {
				pc2_push(w, off + pend_s, e - pend_s);
				have_pend = 0;
			} else {
				pc2_push(w, off + a, e - a);
			}
			break;
		case BEH_CONTIGUOUS:
			if (m && i > 0 && prev_m && w->npc2)
				w->pc2[w->npc2 - 1].len += e - a;
			else
				pc2_push(w, off + a, e - a);
			break;
		}
	}
	if (have_pend) pc2_push(w, off + pend_s, pend_e - pend_s);
}

/* Merge adjacent non-matches (made by empty matches) in place; returns the new count. */
static size_t spans_merge(struct span *sp, size_t n)
{
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		if (m && !sp[i].m && !sp[m - 1].m && sp[m - 1].e == sp[i].s) { sp[m - 1].e = sp[i].e; continue; }
		sp[m++] = sp[i];
	}
	return m;
}

/*
 * Split piece [off, off+len) by re with a behavior, pushing to pc2.  With
 * want > 0 it may stop early: when the spans matched so far already make
 * want + 2 pieces, all but the last of them are final (only the last piece
 * can still grow with the spans after it, and the last span may be a
 * shorter non-match than in the whole run), so the first want are kept and
 * 1 is returned without matching the rest.  The check runs when the span
 * count doubles, so a piece that does not stop costs O(n) more.
 */
static int split_piece(struct ws *w, pcre2_code *re, int behavior, int invert, uint32_t off, uint32_t len,
		       size_t want)
{
	size_t pos = 0;
	const char *s = w->s + off;
	/* the (start, end, matched) spans covering the piece, then the behavior */
	size_t cap = 16, n = 0, base = w->npc2, check = want ? 2 * want + 16 : SIZE_MAX;
	struct span stack_sp[16], *sp = stack_sp;
	int heap = 0, stopped = 0;
#define PUSH_SPAN(S, E, M) do { \
	if ((E) > (S)) { \
		if (n == cap) { \
			size_t nc = cap * 2; \
			if (!heap) { void *np = xmalloc(nc * sizeof(*sp)); memcpy(np, sp, n * sizeof(*sp)); sp = np; heap = 1; } \
			else sp = xrealloc(sp, nc * sizeof(*sp)); \
			cap = nc; \
		} \
		sp[n].s = (S); sp[n].e = (E); sp[n].m = (M); n++; \
	} } while (0)
	while (pos < len) {
		if (n >= check) {
			n = spans_merge(sp, n);
			spans_emit(w, sp, n, behavior, invert, off);
			if (w->npc2 - base >= want + 2) {
				w->npc2 = base + want;
				stopped = 1;
				break;
			}
			w->npc2 = base;
			check = 2 * n > check ? 2 * n : 2 * check;
		}
		int rc = pcre2_jit_match(re, (PCRE2_SPTR)s, len, pos, PCRE2_NO_UTF_CHECK, w->md, w->mctx);
		if (rc == PCRE2_ERROR_JIT_BADOPTION)	/* no JIT on this machine: the interpreter */
			rc = pcre2_match(re, (PCRE2_SPTR)s, len, pos, PCRE2_NO_UTF_CHECK, w->md, w->mctx);
		if (rc < 0) break;
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
		size_t ms = ov[0], me = ov[1];
		if (me == ms) {	/* empty match: skip a character */
			PUSH_SPAN(pos, ms, 0);
			size_t k = ms < len ? utf8_len_at(s, len, ms) : 1;
			PUSH_SPAN(ms, ms + k < len ? ms + k : len, 0);
			pos = ms + k;
			continue;
		}
		PUSH_SPAN(pos, ms, 0);
		PUSH_SPAN(ms, me, 1);
		pos = me;
	}
	if (!stopped) {
		PUSH_SPAN(pos, len, 0);
		n = spans_merge(sp, n);
		spans_emit(w, sp, n, behavior, invert, off);
	}
#undef PUSH_SPAN
	if (heap) free(sp);
	return stopped;
}

/* 1 when a limit is set and pc2 holds the pieces that suffice (then cut to them). */
static int enough(struct ws *w)
{
	if (!w->want || w->npc2 < w->want) return 0;
	w->npc2 = w->want;
	return 1;
}

static void split_all(struct ws *w, pcre2_code *re, int behavior, int invert)
{
	w->npc2 = 0;
	for (size_t i = 0; i < w->npc; i++)
		if (split_piece(w, re, behavior, invert, w->pc[i].off, w->pc[i].len, w->want ? w->want - w->npc2 : 0) ||
		    enough(w))
			break;
	pc_swap(w);
}

/* Rebuild s with every piece transformed: prefix bytes (when prefix != NULL
 * and the piece does not start with skip_if), and ' ' replaced by rep. */
static void rebuild(struct ws *w, const char *prefix, size_t plen, const char *skip_if, size_t skip_len,
		    const char *rep, size_t rep_len, int first_only, int seg_first, int offs)
{
	size_t o = 0;
	w->npc2 = 0;
	for (size_t i = 0; i < w->npc; i++) {
		uint32_t off = w->pc[i].off, len = w->pc[i].len;
		size_t start = o;
		int want = prefix && !(first_only && !(seg_first && off == 0));
		if (want) {
			int starts = 0;
			if (rep) starts = (len >= 1 && w->s[off] == ' ') || (len >= skip_len && !memcmp(w->s + off, skip_if, skip_len));
			else starts = len >= skip_len && !memcmp(w->s + off, skip_if, skip_len);
			if (!starts) put2(w, &o, prefix, plen, offs, offs ? w->a[off] : 0, offs ? w->a[off] : 0);
		}
		for (uint32_t k = off; k < off + len; k++) {
			if (rep && w->s[k] == ' ')
				put2(w, &o, rep, rep_len, offs, offs ? w->a[k] : 0, offs ? w->b[k] : 0);
			else
				put2(w, &o, w->s + k, 1, offs, offs ? w->a[k] : 0, offs ? w->b[k] : 0);
		}
		pc2_push(w, start, o - start);
	}
	swap_s(w, o);
	pc_swap(w);
}

/* Split before every occurrence of rep (Metaspace split, MergedWithNext). */
static void split_before(struct ws *w, const char *rep, size_t rl)
{
	w->npc2 = 0;
	for (size_t i = 0; i < w->npc; i++) {
		uint32_t off = w->pc[i].off, end = off + w->pc[i].len, st = off;
		for (uint32_t k = off + 1; k + rl <= end && !(w->want && w->npc2 >= w->want); k++) {
			if (!memcmp(w->s + k, rep, rl)) { pc2_push(w, st, k - st); st = k; }
		}
		if (enough(w)) break;	/* the pieces pushed are final: each ends where the next begins */
		pc2_push(w, st, end - st);
		if (enough(w)) break;
	}
	pc_swap(w);
}

static void apply_pre(struct ws *w, const struct pre *p, int seg_first, int offs)
{
	switch (p->type) {
	case PRE_SPLIT: case PRE_DIGITS: case PRE_WHITESPACE: case PRE_WSSPLIT: case PRE_PUNCT:
		split_all(w, p->re, p->behavior, p->invert);
		return;
	case PRE_BYTELEVEL:
		if (p->add_prefix_space) rebuild(w, " ", 1, " ", 1, NULL, 0, 0, seg_first, offs);
		if (p->re) split_all(w, p->re, BEH_ISOLATED, 0);
		return;
	case PRE_METASPACE:
		rebuild(w, p->prepend ? p->rep : NULL, p->rep_len, p->rep, p->rep_len, p->rep, p->rep_len,
			p->prepend == 1, seg_first, offs);
		if (p->split) split_before(w, p->rep, p->rep_len);
		return;
	case PRE_SEQ:
		for (int i = 0; i < p->nsub; i++) apply_pre(w, &p->sub[i], seg_first, offs);
		return;
	}
}

/* ------------------------------------------------------------ BPE */

static inline int heap_less(const struct heap_ent *x, const struct heap_ent *y)
{
	return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void heap_push(struct ws *w, size_t *n, uint32_t rank, uint32_t pos)
{
	if (*n + 1 > w->hpalloc) {
		w->hpalloc = w->hpalloc ? w->hpalloc * 2 : 256;
		w->hp = xrealloc(w->hp, w->hpalloc * sizeof(*w->hp));
	}
	size_t i = (*n)++;
	struct heap_ent e = { rank, pos };
	while (i) {
		size_t p = (i - 1) / 2;
		if (!heap_less(&e, &w->hp[p])) break;
		w->hp[i] = w->hp[p];
		i = p;
	}
	w->hp[i] = e;
}

static struct heap_ent heap_pop(struct ws *w, size_t *n)
{
	struct heap_ent top = w->hp[0];
	struct heap_ent last = w->hp[--(*n)];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= *n) break;
		if (c + 1 < *n && heap_less(&w->hp[c + 1], &w->hp[c])) c++;
		if (!heap_less(&w->hp[c], &last)) break;
		w->hp[i] = w->hp[c];
		i = c;
	}
	if (*n) w->hp[i] = last;
	return top;
}

/* Build the initial symbols of a piece.  Returns the count, or -1 for an
 * unrepresentable byte (no byte level, fallback or unk). */
static long initial_symbols(struct ws *w, const struct ftk_tokenizer *t, const char *p, uint32_t n)
{
	if (n + 1 > w->syalloc) {
		w->syalloc = n + n / 2 + 64;
		w->sy = xrealloc(w->sy, w->syalloc * sizeof(*w->sy));
	}
	long k = 0;
	if (t->byte_level) {
		for (uint32_t i = 0; i < n; i++) {
			uint8_t c = (uint8_t)p[i];
			if (!t->has_byte_id[c]) {
				if (t->unk_id < 0) return -1;
				w->sy[k++] = (struct sym){ (uint32_t)t->unk_id, i, 1, 0, 0 };
				continue;
			}
			w->sy[k++] = (struct sym){ t->byte_id[c], i, 1, 0, 0 };
		}
	} else {
		uint32_t i = 0;
		while (i < n) {
			utf8proc_int32_t cp;
			utf8proc_ssize_t cl = utf8proc_iterate((const uint8_t *)p + i, n - i, &cp);
			if (cl <= 0) cl = 1;
			long id = strmap_get(&t->by_raw, t->vocab, 1, p + i, cl);
			if (id >= 0) {
				w->sy[k++] = (struct sym){ (uint32_t)id, i, (uint32_t)cl, 0, 0 };
			} else {
				int all = t->byte_fallback;
				for (long b = 0; all && b < cl; b++) all = t->has_byte_id[(uint8_t)p[i + b]];
				if (all) {
					for (long b = 0; b < cl; b++)
						w->sy[k++] = (struct sym){ t->byte_id[(uint8_t)p[i + b]], i + (uint32_t)b, 1, 0, 0 };
				} else {
					if (t->unk_id < 0) return -1;
					if (t->fuse_unk && k && w->sy[k - 1].id == (uint32_t)t->unk_id &&
					    w->sy[k - 1].start + w->sy[k - 1].len == i)
						w->sy[k - 1].len += (uint32_t)cl;
					else
						w->sy[k++] = (struct sym){ (uint32_t)t->unk_id, i, (uint32_t)cl, 0, 0 };
				}
			}
			i += (uint32_t)cl;
		}
	}
	for (long i = 0; i < k; i++) { w->sy[i].prev = (int32_t)i - 1; w->sy[i].next = i + 1 < k ? (int32_t)i + 1 : -1; }
	return k;
}

/* BPE over one piece; the resulting symbols are w->sy linked from 0.  Returns
 * the number of symbols or -1. */
static long bpe(struct ws *w, const struct ftk_tokenizer *t, const char *p, uint32_t n)
{
	long k = initial_symbols(w, t, p, n);
	if (k <= 1) return k;
	size_t hn = 0;
	for (long i = 0; i + 1 < k; i++) {
		const struct merge_ent *m = merge_get(t, w->sy[i].id, w->sy[i + 1].id);
		if (m) heap_push(w, &hn, m->rank, (uint32_t)i);
	}
	long alive = k;
	while (hn) {
		struct heap_ent e = heap_pop(w, &hn);
		struct sym *l = &w->sy[e.pos];
		if (!l->len || l->next < 0) continue;	/* merged away */
		struct sym *r = &w->sy[l->next];
		const struct merge_ent *m = merge_get(t, l->id, r->id);
		if (!m || m->rank != e.rank) continue;	/* stale */
		l->id = m->id;
		l->len += r->len;
		r->len = 0;
		l->next = r->next;
		if (r->next >= 0) w->sy[r->next].prev = (int32_t)e.pos;
		alive--;
		if (l->prev >= 0) {
			const struct merge_ent *pm = merge_get(t, w->sy[l->prev].id, l->id);
			if (pm) heap_push(w, &hn, pm->rank, (uint32_t)l->prev);
		}
		if (l->next >= 0) {
			const struct merge_ent *nm = merge_get(t, l->id, w->sy[l->next].id);
			if (nm) heap_push(w, &hn, nm->rank, e.pos);
		}
	}
	return alive;
}

/* Encode one piece of s (normalized, pre-tokenized) into out. */
static int encode_piece(struct ws *w, const struct ftk_tokenizer *t, uint32_t off, uint32_t len,
			int offs, struct ftk_tokens *out)
{
	const char *p = w->s + off;
	struct cache_ent *ce = NULL;
	uint64_t h = 0;
	if (!offs && len <= CACHE_MAX_KEY) {
		h = hbytes(p, len) | 1;
		size_t mask = ((size_t)1 << w->ce_bits) - 1, i = h & mask;
		for (;;) {
			ce = &w->ce[i];
			if (!ce->h) break;
			if (ce->h == h && ce->klen == len && !memcmp(w->kpool + ce->koff, p, len)) {
				if (out->n + ce->ilen > out->alloc) {
					size_t na = (out->n + ce->ilen) * 2 + 256;
					out->ids = xrealloc(out->ids, na * sizeof(uint32_t));
					out->alloc = na;
				}
				memcpy(out->ids + out->n, w->ipool + ce->ioff, ce->ilen * sizeof(uint32_t));
				out->n += ce->ilen;
				return 0;
			}
			i = (i + 1) & mask;
		}
	}
	size_t first = out->n;
	long id = t->ignore_merges ? strmap_get(&t->by_raw, t->vocab, 1, p, len) : -1;
	if (id >= 0) {
		emit(out, offs, (uint32_t)id, offs ? w->a[off] : 0, offs ? w->b[off + len - 1] : 0);
	} else {
		long k = bpe(w, t, p, len);
		if (k < 0) return FTK_EUTF8;
		for (long i = 0; i >= 0 && k; i = w->sy[i].next) {
			struct sym *s = &w->sy[i];
			emit(out, offs, s->id, offs ? w->a[off + s->start] : 0, offs ? w->b[off + s->start + s->len - 1] : 0);
			if (s->next < 0) break;
		}
	}
	if (ce) {
		if (w->ce_n * 10 > ((size_t)7 << w->ce_bits)) {
			if (w->ce_bits == CACHE_BITS) { cache_clear(w); return 0; }
			cache_grow(w);
			return 0;	/* cached next time: ce points into the old table */
		}
		size_t nid = out->n - first;
		if (w->klen + len > w->kalloc) { w->kalloc = (w->klen + len) * 2 + 4096; w->kpool = xrealloc(w->kpool, w->kalloc); }
		if (w->ilen + nid > w->ialloc) { w->ialloc = (w->ilen + nid) * 2 + 1024; w->ipool = xrealloc(w->ipool, w->ialloc * 4); }
		memcpy(w->kpool + w->klen, p, len);
		memcpy(w->ipool + w->ilen, out->ids + first, nid * 4);
		ce->h = h; ce->koff = (uint32_t)w->klen; ce->klen = len; ce->ioff = (uint32_t)w->ilen; ce->ilen = (uint32_t)nid;
		w->klen += len; w->ilen += nid; w->ce_n++;
	}
	return 0;
}

/* Normalize, pre-tokenize and model text[s0..s1) (between added tokens). */
static int encode_segment(struct ws *w, const struct ftk_tokenizer *t, const char *text, size_t s0, size_t s1,
			  int seg_first, int offs, size_t max, struct ftk_tokens *out)
{
	size_t n = s1 - s0;
	if (!n) return 0;
	s_grow(w, n);
	memcpy(w->s, text + s0, n);
	w->slen = n;
	if (offs) {
		if (n + 1 > w->aalloc) {
			w->aalloc = n + n / 2 + 64;
			w->a = xrealloc(w->a, w->aalloc * 4);
			w->b = xrealloc(w->b, w->aalloc * 4);
		}
		for (size_t i = 0; i < n; i++) {
			w->a[i] = (uint32_t)(s0 + i);
			w->b[i] = (uint32_t)(s0 + i + 1);
		}
	}
	/* more than max ids in all: max + 1 - out->n more pieces suffice */
	w->want = max < SIZE_MAX ? max + 1 - out->n : 0;
	if (t->norm) apply_norm(w, t->norm, offs);
	w->npc = 0;
	if (w->slen) {
		if (!w->pcalloc) { w->pcalloc = 256; w->pc = xrealloc(w->pc, w->pcalloc * sizeof(*w->pc)); }
		w->pc[0].off = 0;
		w->pc[0].len = (uint32_t)w->slen;
		w->npc = 1;
	}
	if (t->pre) apply_pre(w, t->pre, seg_first, offs);
	if (t->sp_split && w->npc) {
		w->npc2 = 0;
		for (size_t i = 0; i < w->npc; i++) {
			uint32_t off = w->pc[i].off, end = off + w->pc[i].len, st = off;
			for (uint32_t k = off + 1; k + 3 <= end; k++)
				if (!memcmp(w->s + k, "\xe2\x96\x81", 3) &&
				    (k < off + 3 || memcmp(w->s + k - 3, "\xe2\x96\x81", 3))) {
					pc2_push(w, st, k - st);
					st = k;
					if (w->want && w->npc2 >= w->want) break;
				}
			if (enough(w)) break;
			pc2_push(w, st, end - st);
			if (enough(w)) break;
		}
		pc_swap(w);
	}
	for (size_t i = 0; i < w->npc && out->n <= max; i++) {
		int rc = encode_piece(w, t, w->pc[i].off, w->pc[i].len, offs, out);
		if (rc) return rc;
	}
	return 0;
}

static int is_word_byte(const char *s, size_t n, size_t i, int before)
{
	/* the character just before i (before=1) or at i */
	if (before) {
		if (!i) return 0;
		size_t j = i - 1;
		while (j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
		i = j;
	} else if (i >= n) return 0;
	utf8proc_int32_t cp;
	if (utf8proc_iterate((const uint8_t *)s + i, n - i, &cp) <= 0) return 0;
	utf8proc_category_t c = utf8proc_category(cp);
	return cp == '_' || (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
	       (c >= UTF8PROC_CATEGORY_MN && c <= UTF8PROC_CATEGORY_ME) ||
	       (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO);
}

static int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* Find the next added token at or after pos: leftmost, then longest. */
static const struct added *next_added(const struct ftk_tokenizer *t, const char *s, size_t n, size_t pos,
				      int no_special, size_t *ms, size_t *me)
{
	for (size_t i = pos; i < n; i++) {
		if (t->added_one_first >= 0) {	/* memchr is much faster than a byte loop */
			const char *p = memchr(s + i, t->added_one_first, n - i);
			if (!p) break;
			i = (size_t)(p - s);
		} else if (!t->added_first[(uint8_t)s[i]]) {
			continue;
		}
		const struct added *best = NULL;
		for (size_t k = 0; k < t->n_added; k++) {
			const struct added *a = &t->added[k];
			if (!a->len || a->len > n - i || (no_special && a->special)) continue;
			if (memcmp(s + i, a->content, a->len)) continue;
			if (a->single_word && (is_word_byte(s, n, i, 1) || is_word_byte(s, n, i + a->len, 0))) continue;
			if (!best || a->len > best->len) best = a;
		}
		if (best) {
			size_t a0 = i, a1 = i + best->len;
			if (best->lstrip) while (a0 > pos && is_ws((unsigned char)s[a0 - 1])) a0--;
			if (best->rstrip) while (a1 < n && is_ws((unsigned char)s[a1])) a1++;
			*ms = a0;
			*me = a1;
			return best;
		}
	}
	return NULL;
}

/* Normalizers that act on each character by itself and never join one
 * across an ASCII byte (unicode_norm cuts there itself). */
static int norm_local(const struct norm *n)
{
	if (!n) return 1;
	switch (n->type) {
	case NORM_NFC: case NORM_NFKC: case NORM_NFD: case NORM_NFKD: case NORM_LOWER:
		return 1;
	case NORM_SEQ:
		for (int i = 0; i < n->nsub; i++)
			if (!norm_local(&n->sub[i])) return 0;
		return 1;
	}
	return 0;
}

/* A pre-tokenizer made only of local Splits and plain ByteLevels, at least one Split. */
static int pre_local(const struct pre *p, int *splits)
{
	if (!p) return 0;
	if (p->type == PRE_SEQ) {
		for (int i = 0; i < p->nsub; i++)
			if (!pre_local(&p->sub[i], splits)) return 0;
		return 1;
	}
	if ((p->type != PRE_SPLIT && p->type != PRE_BYTELEVEL) || !p->local) return 0;
	*splits += p->re != NULL;
	return 1;
}

static int is_ascii_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* Where a segment may be cut: an ASCII letter, then ' ', then an ASCII letter. */
static int cut_ok(const char *s, size_t i) { return s[i] == ' ' && is_ascii_letter(s[i - 1]) && is_ascii_letter(s[i + 1]); }

#define ENCODE_CHUNK ((size_t)1 << 20)

/*
 * encode_segment over text[s0..s1), in pieces of about ENCODE_CHUNK bytes
 * when the tokenizer allows it, so that the scratch buffers (the segment's
 * bytes, 8 bytes of offsets per byte, the pieces and their spans) are those
 * of a chunk, not of a record of hundreds of megabytes.  A cut goes before
 * " word" after a letter (all ASCII), where the pieces of the whole end
 * (LOCAL_RES), with per-character normalizers only and no Metaspace or
 * prefix space (whose "first piece" would move), so the ids and offsets
 * are the whole segment's.  Without such a place, the segment is one piece.
 * Once out holds more than max ids, the chunks after are not encoded.
 */
static int encode_chunked(struct ws *w, const struct ftk_tokenizer *t, const char *text, size_t s0, size_t s1,
			  int seg_first, int offs, size_t max, struct ftk_tokens *out)
{
	int splits = 0;
	if (s1 - s0 > ENCODE_CHUNK && !t->sp_split && norm_local(t->norm) && pre_local(t->pre, &splits) && splits) {
		while (s1 - s0 > ENCODE_CHUNK) {
			size_t p = s0 + ENCODE_CHUNK - 1;	/* p + 1 < s1 */
			while (p > s0 + 1 && !cut_ok(text, p)) p--;
			if (p == s0 + 1)
				for (p = s0 + ENCODE_CHUNK; p + 1 < s1 && !cut_ok(text, p); p++) ;
			if (p + 1 >= s1) break;
			int rc = encode_segment(w, t, text, s0, p, seg_first, offs, max, out);
			if (rc || out->n > max || (rc = each_flush(w, out))) return rc;
			seg_first = 0;
			s0 = p;
		}
	}
	return encode_segment(w, t, text, s0, s1, seg_first, offs, max, out);
}

static long encode_text(const struct ftk_tokenizer *t, const char *text, size_t len, unsigned flags, size_t max,
			ftk_tokens_each_fn each, void *arg, struct ftk_tokens *out, struct ftk_error *err)
{
	int offs = !!(flags & FTK_TOK_OFFSETS);
	out->n = 0;
	if (len > 0x7fffffffu) {
		ftk_error_msg(err, FTK_ELIMIT, "text of %zu bytes is over the 2 GiB limit", len);
		return FTK_ELIMIT;
	}
	if (max > (size_t)LONG_MAX - 1) max = SIZE_MAX;
	struct ws *w = ws_get(out, t);
	w->each = each;
	w->each_arg = arg;
	w->each_err = err;
	w->obase = 0;
	w->each_rc = 0;
	size_t pos = 0;
	int seg_first = 1;
	size_t pre_n = 0;
	if ((flags & FTK_TOK_ADD_SPECIAL) && t->post) {
		for (size_t i = 0; i < t->n_post && !t->post[i].is_seq; i++)
			for (size_t k = 0; k < t->post[i].n; k++) emit(out, offs, t->post[i].ids[k], 0, 0);
		pre_n = out->n;
	}
	while (pos < len && out->n <= max) {
		size_t ms = len, me = len;
		const struct added *a = t->n_added ?
			next_added(t, text, len, pos, !!(flags & FTK_TOK_SPLIT_NO_SPECIAL), &ms, &me) : NULL;
		int rc = encode_chunked(w, t, text, pos, a ? ms : len, seg_first, offs, max, out);
		if (!rc) rc = each_flush(w, out);
		w->want = 0;
		if (rc) {
			if (!w->each_rc)	/* else each said why */
				ftk_error_msg(err, rc, "text holds bytes the tokenizer cannot represent (no byte fallback or unk)");
			return rc;
		}
		seg_first = 0;
		if (!a || out->n > max) break;
		emit(out, offs, a->id, (uint32_t)ms, (uint32_t)me);
		pos = me;
	}
	if (offs && pre_n)
		for (size_t i = w->obase; i < pre_n && i < out->n; i++) out->start[i - w->obase] = out->end[i - w->obase] = 0;
	if ((flags & FTK_TOK_ADD_SPECIAL) && t->post && out->n <= max) {
		size_t i = 0;
		while (i < t->n_post && !t->post[i].is_seq) i++;
		for (i = i + 1; i < t->n_post; i++)
			if (!t->post[i].is_seq)
				for (size_t k = 0; k < t->post[i].n; k++)
					emit(out, offs, t->post[i].ids[k], (uint32_t)len, (uint32_t)len);
	}
	if (out->n > max) out->n = max + 1;
	int rc = each_flush(w, out);
	return rc ? rc : (long)out->n;
}

long ftk_tokenizer_encode_max(const struct ftk_tokenizer *t, const char *text, size_t len, unsigned flags,
			      size_t max, struct ftk_tokens *out, struct ftk_error *err)
{
	return encode_text(t, text, len, flags, max, NULL, NULL, out, err);
}

long ftk_tokenizer_encode(const struct ftk_tokenizer *t, const char *text, size_t len, unsigned flags,
			  struct ftk_tokens *out, struct ftk_error *err)
{
	return encode_text(t, text, len, flags, SIZE_MAX, NULL, NULL, out, err);
}

long ftk_tokenizer_encode_each(const struct ftk_tokenizer *t, const char *text, size_t len, unsigned flags,
			       ftk_tokens_each_fn each, void *arg, struct ftk_tokens *out, struct ftk_error *err)
{
	return encode_text(t, text, len, flags | FTK_TOK_OFFSETS, SIZE_MAX, each, arg, out, err);
}

uint32_t *ftk_tokens_take_ids(struct ftk_tokens *t)
{
	uint32_t *ids = t->ids;
	t->ids = NULL;
	t->alloc = 0;
	t->n = 0;
	return ids;
}

/* ------------------------------------------------------------ decoding */

struct dtok { char *s; size_t n; int bytes_only; };

struct dlist { struct dtok *v; size_t n, alloc; };

static void dl_push(struct dlist *l, const char *s, size_t n)
{
	FTK_ALLOC_GROW(l->v, l->n + 1, l->alloc);
	l->v[l->n].s = xmalloc(n + 1);
	memcpy(l->v[l->n].s, s, n);
	l->v[l->n].s[n] = 0;
	l->v[l->n].n = n;
	l->v[l->n].bytes_only = 0;
	l->n++;
}

static void dl_free(struct dlist *l)
{
	for (size_t i = 0; i < l->n; i++) free(l->v[i].s);
	free(l->v);
	l->v = NULL; l->n = l->alloc = 0;
}

/* Replace invalid UTF-8 in s by U+FFFD, as String::from_utf8_lossy does. */
static void add_lossy(struct strbuf *sb, const char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		utf8proc_int32_t cp;
		utf8proc_ssize_t k = utf8proc_iterate((const uint8_t *)s + i, n - i, &cp);
		if (k > 0) { strbuf_add(sb, s + i, k); i += k; continue; }
		/* maximal invalid prefix: a valid lead followed by valid continuations */
		unsigned char c = (unsigned char)s[i];
		size_t need = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 1;
		size_t j = i + 1;
		if (need > 1) {
			/* second byte ranges as in the Unicode table of well-formed sequences */
			unsigned lo = 0x80, hi = 0xBF;
			if (c == 0xE0) lo = 0xA0;
			if (c == 0xED) hi = 0x9F;
			if (c == 0xF0) lo = 0x90;
			if (c == 0xF4) hi = 0x8F;
			if (j < n && (unsigned char)s[j] >= lo && (unsigned char)s[j] <= hi) {
				j++;
				while (j < i + need && j < n && ((unsigned char)s[j] & 0xC0) == 0x80) j++;
			}
		}
		strbuf_addstr(sb, "\xef\xbf\xbd");
		i = j;
	}
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	return -1;
}

static void dec_apply(const struct dec *d, struct dlist *l)
{
	switch (d->type) {
	case DEC_SEQ:
		for (int i = 0; i < d->nsub; i++) dec_apply(&d->sub[i], l);
		return;
	case DEC_REPLACE:
	case DEC_METASPACE: {
		const char *pat = d->type == DEC_REPLACE ? d->a : d->rep;
		size_t pl = d->type == DEC_REPLACE ? d->alen : d->rep_len;
		const char *rep = d->type == DEC_REPLACE ? d->b : " ";
		size_t rl = d->type == DEC_REPLACE ? d->blen : 1;
		for (size_t i = 0; i < l->n; i++) {
			struct strbuf sb = STRBUF_INIT;
			const char *s = l->v[i].s;
			size_t n = l->v[i].n, k = 0;
			while (k < n) {
				if (pl && k + pl <= n && !memcmp(s + k, pat, pl)) { strbuf_add(&sb, rep, rl); k += pl; }
				else strbuf_addch(&sb, s[k++]);
			}
			if (d->type == DEC_METASPACE && i == 0 && d->prepend && sb.len && sb.buf[0] == ' ') {
				memmove(sb.buf, sb.buf + 1, sb.len - 1);
				strbuf_setlen(&sb, sb.len - 1);
			}
			free(l->v[i].s);
			l->v[i].n = sb.len;
			l->v[i].s = strbuf_detach(&sb, NULL);
		}
		return;
	}
	case DEC_BYTEFALLBACK: {
		struct dlist o = { 0 };
		size_t i = 0;
		while (i < l->n) {
			size_t j = i;
			struct strbuf bytes = STRBUF_INIT;
			while (j < l->n && l->v[j].n == 6 && !memcmp(l->v[j].s, "<0x", 3) && l->v[j].s[5] == '>' &&
			       hexval(l->v[j].s[3]) >= 0 && hexval(l->v[j].s[4]) >= 0) {
				strbuf_addch(&bytes, hexval(l->v[j].s[3]) * 16 + hexval(l->v[j].s[4]));
				j++;
			}
			if (j == i) { dl_push(&o, l->v[i].s, l->v[i].n); i++; strbuf_release(&bytes); continue; }
			if (ftk_utf8_check(bytes.buf, bytes.len) < 0) dl_push(&o, bytes.buf, bytes.len);
			else for (size_t k = i; k < j; k++) dl_push(&o, "\xef\xbf\xbd", 3);
			strbuf_release(&bytes);
			i = j;
		}
		dl_free(l);
		*l = o;
		return;
	}
	case DEC_FUSE: {
		struct strbuf sb = STRBUF_INIT;
		for (size_t i = 0; i < l->n; i++) strbuf_add(&sb, l->v[i].s, l->v[i].n);
		dl_free(l);
		dl_push(l, sb.buf, sb.len);
		strbuf_release(&sb);
		return;
	}
	case DEC_STRIP:
		for (size_t i = 0; i < l->n; i++) {
			size_t s = 0, e = l->v[i].n;
			for (int k = 0; k < d->start && s + d->alen <= e && !memcmp(l->v[i].s + s, d->a, d->alen); k++) s += d->alen;
			for (int k = 0; k < d->stop && e >= s + d->alen && !memcmp(l->v[i].s + e - d->alen, d->a, d->alen); k++) e -= d->alen;
			memmove(l->v[i].s, l->v[i].s + s, e - s);
			l->v[i].n = e - s;
			l->v[i].s[e - s] = 0;
		}
		return;
	case DEC_BYTELEVEL: {
		struct strbuf sb = STRBUF_INIT;
		for (size_t i = 0; i < l->n; i++) {
			char *tmp = xmalloc(l->v[i].n + 1);
			long r = bytelevel_decode(l->v[i].s, l->v[i].n, tmp);
			if (r >= 0) strbuf_add(&sb, tmp, r);
			else {
				/* characters outside the alphabet pass through */
				size_t k = 0;
				while (k < l->v[i].n) {
					size_t cl = utf8_len_at(l->v[i].s, l->v[i].n, k);
					long r2 = bytelevel_decode(l->v[i].s + k, cl, tmp);
					if (r2 >= 0) strbuf_add(&sb, tmp, r2); else strbuf_add(&sb, l->v[i].s + k, cl);
					k += cl;
				}
			}
			free(tmp);
		}
		struct strbuf fixed = STRBUF_INIT;
		add_lossy(&fixed, sb.buf, sb.len);
		strbuf_release(&sb);
		dl_free(l);
		dl_push(l, fixed.buf, fixed.len);
		strbuf_release(&fixed);
		return;
	}
	}
}

int ftk_tokenizer_decode(const struct ftk_tokenizer *t, const uint32_t *ids, size_t n, int skip_special,
			 struct strbuf *out, struct ftk_error *err)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] >= t->n_vocab || !t->vocab[ids[i]].str)
			return ftk_error_msg(err, FTK_ENOTFOUND, "token id %u is not in the vocabulary (size %u)",
					     ids[i], t->n_vocab);
	struct dlist l = { 0 };
	for (size_t i = 0; i < n; i++) {
		if (skip_special && t->is_special[ids[i]]) continue;
		dl_push(&l, t->vocab[ids[i]].str, t->vocab[ids[i]].slen);
	}
	if (t->dec) dec_apply(t->dec, &l);
	struct strbuf sb = STRBUF_INIT;
	for (size_t i = 0; i < l.n; i++) strbuf_add(&sb, l.v[i].s, l.v[i].n);
	add_lossy(out, sb.buf, sb.len);
	strbuf_release(&sb);
	dl_free(&l);
	return 0;
}

/* ------------------------------------------------------------ streaming */

void ftk_detok_init(struct ftk_detok *d, const struct ftk_tokenizer *tok, int skip_special)
{
	memset(d, 0, sizeof(*d));
	d->tok = tok;
	d->skip_special = skip_special;
}

static int ends_incomplete(const struct strbuf *sb)
{
	return sb->len >= 3 && !memcmp(sb->buf + sb->len - 3, "\xef\xbf\xbd", 3);
}

/*
 * The text of ids[prefix..read) was printed last time.  Decoding the window
 * ids[prefix..n) and printing what it adds keeps every decoder rule that
 * looks at neighbours (byte fallback groups, "strip the first space": the
 * window starts one token back, so both decodes strip alike), and costs
 * O(window) per token instead of O(sequence).  Text ending in U+FFFD waits:
 * its UTF-8 character is not complete yet.
 */
int ftk_detok_push(struct ftk_detok *d, uint32_t id, struct strbuf *out, struct ftk_error *err)
{
	if (id >= d->tok->n_vocab || !d->tok->vocab[id].str)
		return ftk_error_msg(err, FTK_ENOTFOUND, "token id %u is not in the vocabulary (size %u)", id,
				     d->tok->n_vocab);
	FTK_ALLOC_GROW(d->ids, d->n + 1, d->alloc);
	d->ids[d->n++] = id;
	struct strbuf prev = STRBUF_INIT, cur = STRBUF_INIT;
	ftk_tokenizer_decode(d->tok, d->ids + d->prefix, d->read - d->prefix, d->skip_special, &prev, NULL);
	ftk_tokenizer_decode(d->tok, d->ids + d->prefix, d->n - d->prefix, d->skip_special, &cur, NULL);
	if (cur.len > prev.len && !memcmp(cur.buf, prev.buf, prev.len) && !ends_incomplete(&cur)) {
		strbuf_add(out, cur.buf + prev.len, cur.len - prev.len);
		d->prefix = d->read;
		d->read = d->n;
	}
	strbuf_release(&prev);
	strbuf_release(&cur);
	return 0;
}

void ftk_detok_finish(struct ftk_detok *d, struct strbuf *out)
{
	struct strbuf prev = STRBUF_INIT, cur = STRBUF_INIT;
	ftk_tokenizer_decode(d->tok, d->ids + d->prefix, d->read - d->prefix, d->skip_special, &prev, NULL);
	ftk_tokenizer_decode(d->tok, d->ids + d->prefix, d->n - d->prefix, d->skip_special, &cur, NULL);
	if (cur.len > prev.len && !memcmp(cur.buf, prev.buf, prev.len)) strbuf_add(out, cur.buf + prev.len, cur.len - prev.len);
	d->prefix = d->read = d->n;
	strbuf_release(&prev);
	strbuf_release(&cur);
}

void ftk_detok_release(struct ftk_detok *d)
{
	free(d->ids);
	d->ids = NULL;
	d->n = d->alloc = d->read = 0;
}

/* ------------------------------------------------------------ accessors */

uint32_t ftk_tokenizer_vocab_size(const struct ftk_tokenizer *t) { return t->n_vocab; }

long ftk_tokenizer_token_id(const struct ftk_tokenizer *t, const char *s)
{
	return lookup_str(t, s, strlen(s));
}

const char *ftk_tokenizer_token_str(const struct ftk_tokenizer *t, uint32_t id)
{
	return id < t->n_vocab ? t->vocab[id].str : NULL;
}

int ftk_tokenizer_is_special(const struct ftk_tokenizer *t, uint32_t id)
{
	return id < t->n_vocab && t->is_special[id];
}

static int special_index(const char *name)
{
	for (int i = 0; i < 4; i++) if (!strcmp(name, special_names[i])) return i;
	return -1;
}

const char *ftk_tokenizer_special_str(const struct ftk_tokenizer *t, const char *name)
{
	int i = special_index(name);
	return i < 0 ? NULL : t->special_str[i];
}

long ftk_tokenizer_special_id(const struct ftk_tokenizer *t, const char *name)
{
	int i = special_index(name);
	return i < 0 ? -1 : t->special_id[i];
}

int ftk_tokenizer_adds_bos(const struct ftk_tokenizer *t)
{
	long bos = t->special_id[0];
	if (!t->post || bos < 0) return 0;
	return !t->post[0].is_seq && t->post[0].n && t->post[0].ids[0] == (uint32_t)bos;
}

const char *ftk_tokenizer_chat_template(const struct ftk_tokenizer *t) { return t->chat_template; }
const cJSON *ftk_tokenizer_config(const struct ftk_tokenizer *t) { return t->config; }
const char *ftk_tokenizer_hash(const struct ftk_tokenizer *t) { return t->hash; }
const char *ftk_tokenizer_dir(const struct ftk_tokenizer *t) { return t->dir; }
